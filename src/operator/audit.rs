//! `lifeboat audit`: the risks of the story, group by group — no termination hook that reaches
//! lifeboat, a heartbeat timeout lifeboat cannot hold, a default result that lets the
//! termination through, no retention on ABANDON, and volumes — the boot volume too — that die
//! with their instance and have no recent snapshot (unless marked `lifeboat:stateless`). Each
//! finding has a severity and a one-line fix.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{aws_error, human, table, OperatorError};
use crate::aws::operator::{GroupView, HookView, InstanceView, OperatorAws};
use crate::aws::GroupScope;
use crate::config::check_overrides;
use crate::ids::{HookName, InstanceId, VolumeId};
use crate::tags::{PROTECTED, STATELESS};

pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
/// The heartbeat timeout the fixes suggest: the template's default, the longest AWS allows, so
/// that a mass termination is held through Auto Scaling's budget without heartbeats (README, A
/// mass termination) and any sweep interval fits under it.
const HOOK_TIMEOUT_TO_SUGGEST: u32 = 7200;
/// A global limit under this is short for a first snapshot of a large volume.
const SHORT_GLOBAL_LIMIT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// What a finding is about, for the checks that group them (`lifeboat drill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concern {
    /// No termination hook, or none lifeboat serves.
    Hook,
    HeartbeatTimeout,
    DefaultResult,
    /// The hook's NotificationMetadata overrides.
    Overrides,
    GlobalLimit,
    /// The group is not tagged lifeboat:protected.
    GroupTag,
    RetainOnAbandon,
    /// Volumes that die with their instance.
    Volumes,
}

/// One risk found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub concern: Concern,
    pub severity: Severity,
    pub group: String,
    /// What it is about: the group, a hook, an instance.
    pub subject: String,
    pub finding: String,
    pub fix: String,
}

/// What the audit holds lifeboat's deployment to.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The hooks lifeboat serves (its `HookNames`).
    pub hook_names: Vec<HookName>,
    /// Lifeboat's sweep interval: a hook must hold an instance from one sweep to the next.
    pub sweep_interval: Duration,
    /// A data volume needs a completed snapshot this recent.
    pub snapshot_age: chrono::Duration,
}

/// Everything the audit reads of one group.
#[derive(Debug, Clone)]
pub struct GroupFacts {
    pub group: GroupView,
    pub hooks: Vec<HookView>,
    pub instances: Vec<InstanceView>,
    /// The start of the latest completed snapshot of each volume that has one.
    pub latest_snapshots: BTreeMap<VolumeId, DateTime<Utc>>,
    /// The volumes tagged `lifeboat:stateless=true`.
    pub stateless_volumes: BTreeSet<VolumeId>,
}

/// The findings for one group, most severe first.
pub fn findings(facts: &GroupFacts, settings: &AuditSettings, now: DateTime<Utc>) -> Vec<Finding> {
    let group = facts.group.name.as_str();
    let mut found = Vec::new();
    let mut add = |concern, severity, subject: String, finding: String, fix: String| {
        found.push(Finding {
            concern,
            severity,
            group: group.to_owned(),
            subject,
            finding,
            fix,
        })
    };
    let put_hook = |name: &str| {
        format!(
            "aws autoscaling put-lifecycle-hook --auto-scaling-group-name {group} --lifecycle-hook-name {name} \
             --lifecycle-transition {TERMINATING} --heartbeat-timeout {HOOK_TIMEOUT_TO_SUGGEST} --default-result ABANDON"
        )
    };
    let served_name = settings
        .hook_names
        .first()
        .map(|h| h.to_string())
        .unwrap_or_else(|| "lifeboat".into());
    let terminating: Vec<&HookView> = facts
        .hooks
        .iter()
        .filter(|h| h.transition == TERMINATING)
        .collect();
    let reaching: Vec<&HookView> = terminating
        .iter()
        .copied()
        .filter(|h| settings.hook_names.is_empty() || settings.hook_names.contains(&h.name))
        .collect();
    if terminating.is_empty() {
        add(
            Concern::Hook,
            Severity::High,
            "group".into(),
            "no termination lifecycle hook: a scale-in, health replacement or refresh deletes the instances' volumes at once".into(),
            put_hook(&served_name),
        );
    } else if reaching.is_empty() {
        let names: Vec<String> = terminating.iter().map(|h| h.name.to_string()).collect();
        add(
            Concern::Hook,
            Severity::High,
            format!("hook {}", names.join(", ")),
            format!(
                "no termination hook reaches lifeboat: it serves hooks named {}",
                settings
                    .hook_names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "{} (or add {} to lifeboat's HookNames parameter)",
                put_hook(&served_name),
                names.join(",")
            ),
        );
    }
    let mut protected = false;
    for hook in &reaching {
        let subject = format!("hook {}", hook.name);
        let needed = settings.sweep_interval + Duration::from_secs(60);
        let holds = hook.heartbeat_timeout >= needed;
        if !holds {
            add(
                Concern::HeartbeatTimeout,
                Severity::High,
                subject.clone(),
                format!(
                    "heartbeat timeout {} s is shorter than lifeboat's sweep interval plus a minute ({} s): lifeboat cannot hold a rescue and fails safe at once",
                    hook.heartbeat_timeout.as_secs(),
                    needed.as_secs()
                ),
                format!(
                    "aws autoscaling put-lifecycle-hook --auto-scaling-group-name {group} --lifecycle-hook-name {} --heartbeat-timeout {HOOK_TIMEOUT_TO_SUGGEST}",
                    hook.name
                ),
            );
        }
        let abandons = hook.default_result == "ABANDON";
        if !abandons {
            add(
                Concern::DefaultResult,
                Severity::High,
                subject.clone(),
                format!(
                    "default result {}: when lifeboat cannot answer, the hook's timeout lets the termination through and the volumes go",
                    hook.default_result
                ),
                format!(
                    "aws autoscaling put-lifecycle-hook --auto-scaling-group-name {group} --lifecycle-hook-name {} --default-result ABANDON",
                    hook.name
                ),
            );
        }
        if let Err(err) = check_overrides(hook.notification_metadata.as_deref()) {
            add(
                Concern::Overrides,
                Severity::Medium,
                subject.clone(),
                format!("{err}; lifeboat would ignore the group's overrides and rescue with the safest settings"),
                format!(
                    "correct the hook's NotificationMetadata (README, Configuration): aws autoscaling put-lifecycle-hook --auto-scaling-group-name {group} --lifecycle-hook-name {} --notification-metadata '{{…}}'",
                    hook.name
                ),
            );
        }
        if hook.global_timeout < SHORT_GLOBAL_LIMIT {
            add(
                Concern::GlobalLimit,
                Severity::Low,
                subject.clone(),
                format!(
                    "global limit {}: a first snapshot of a large volume can take longer, and lifeboat then fails safe (ABANDON) before it completes",
                    human(chrono::Duration::seconds(hook.global_timeout.as_secs() as i64))
                ),
                format!(
                    "raise the heartbeat timeout (the global limit is 100 times it, at most 48 h): aws autoscaling put-lifecycle-hook --auto-scaling-group-name {group} --lifecycle-hook-name {} --heartbeat-timeout {HOOK_TIMEOUT_TO_SUGGEST}",
                    hook.name
                ),
            );
        }
        protected |= holds && abandons;
    }
    if !reaching.is_empty() && !facts.group.tagged_protected {
        add(
            Concern::GroupTag,
            Severity::Medium,
            "group".into(),
            format!(
                "not tagged {PROTECTED}=true: unless lifeboat's stack names this group in its Groups parameter (or runs with GroupScope=all), its role may not hold or complete the group's terminations — the volumes are kept first, but the instance is neither held nor released"
            ),
            format!(
                "aws autoscaling create-or-update-tags --tags ResourceId={group},ResourceType=auto-scaling-group,Key={PROTECTED},Value=true,PropagateAtLaunch=false"
            ),
        );
    }
    if !facts.group.retains_on_hook_abandon {
        add(
            Concern::RetainOnAbandon,
            Severity::Medium,
            "group".into(),
            "the instance lifecycle policy does not retain on abandon: if lifeboat is down when the hook times out, ABANDON still terminates the instance and deletes its delete-on-termination volumes".into(),
            format!(
                "aws autoscaling update-auto-scaling-group --auto-scaling-group-name {group} --instance-lifecycle-policy 'RetentionTriggers={{TerminateHookAbandon=retain}}'"
            ),
        );
    }
    let member: BTreeMap<&InstanceId, &str> = facts
        .group
        .instances
        .iter()
        .map(|(id, state)| (id, state.as_str()))
        .collect();
    for instance in &facts.instances {
        if !member.contains_key(&instance.id) || instance.state.is_gone() || instance.stateless {
            continue;
        }
        // The boot volume counts: on a machine that runs its databases in containers, the
        // data lives there (the story's instance), and EC2 deletes it on termination by default.
        let doomed: Vec<_> = instance
            .devices
            .iter()
            .filter(|d| d.delete_on_termination)
            .filter(|d| !facts.stateless_volumes.contains(&d.volume_id))
            .collect();
        if doomed.is_empty() {
            continue;
        }
        let floor = now - settings.snapshot_age;
        let (stale, fresh): (Vec<_>, Vec<_>) = doomed.iter().partition(|d| {
            facts
                .latest_snapshots
                .get(&d.volume_id)
                .is_none_or(|at| *at < floor)
        });
        let boot = instance.root_device_name.as_deref();
        let describe = |devices: &[&&crate::aws::operator::DeviceView]| {
            devices
                .iter()
                .map(|d| {
                    let role = if Some(d.device.as_str()) == boot {
                        " (boot)"
                    } else {
                        ""
                    };
                    format!("{} {}{role}", d.device, d.volume_id)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !stale.is_empty() {
            add(
                Concern::Volumes,
                if protected { Severity::Medium } else { Severity::High },
                instance.id.to_string(),
                format!(
                    "volumes deleted on termination with no snapshot in the last {}: {}{}",
                    human(settings.snapshot_age),
                    describe(&stale),
                    if protected {
                        ""
                    } else {
                        " — and no working lifeboat hook: the story's exact risk"
                    }
                ),
                format!(
                    "take a copy now: aws ec2 create-snapshots --instance-specification InstanceId={id} --copy-tags-from-source volume; schedule them with Data Lifecycle Manager or AWS Backup (or, if nothing on it matters, tag it: aws ec2 create-tags --resources {id} --tags Key={STATELESS},Value=true)",
                    id = instance.id
                ),
            );
        }
        if !fresh.is_empty() {
            add(
                Concern::Volumes,
                Severity::Low,
                instance.id.to_string(),
                format!(
                    "volumes deleted on termination (a recent snapshot exists): {}",
                    describe(&fresh)
                ),
                format!(
                    "to keep them whatever happens: aws ec2 modify-instance-attribute --instance-id {} --block-device-mappings '[{{\"DeviceName\":\"{}\",\"Ebs\":{{\"DeleteOnTermination\":false}}}}]'",
                    instance.id, fresh[0].device
                ),
            );
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.severity));
    found
}

/// Audits the groups of `scope`: reads each group, its hooks, its instances and the latest
/// snapshot of their volumes; returns the findings, most severe first, and how many groups.
pub async fn audit(
    aws: &OperatorAws,
    scope: &GroupScope,
    settings: &AuditSettings,
) -> Result<(usize, Vec<Finding>), OperatorError> {
    let groups = aws
        .groups(scope)
        .await
        .map_err(aws_error("reading the Auto Scaling groups"))?;
    if let GroupScope::Named(names) = scope {
        if let Some(missing) = names.iter().find(|n| !groups.iter().any(|g| &g.name == *n)) {
            return Err(OperatorError::argument(
                "--group",
                missing.as_str(),
                "no such Auto Scaling group in this account and region",
            ));
        }
    }
    let now = Utc::now();
    let mut all = Vec::new();
    for group in &groups {
        let hooks = aws
            .hooks(&group.name)
            .await
            .map_err(aws_error(format!("reading the hooks of {}", group.name)))?;
        let ids: Vec<InstanceId> = group.instances.iter().map(|(id, _)| id.clone()).collect();
        let instances = if ids.is_empty() {
            Vec::new()
        } else {
            aws.instances(&ids).await.map_err(aws_error(format!(
                "reading the instances of {}",
                group.name
            )))?
        };
        let volumes: Vec<VolumeId> = instances
            .iter()
            .flat_map(|i| i.devices.iter().map(|d| d.volume_id.clone()))
            .collect();
        let stateless_volumes = if volumes.is_empty() {
            BTreeSet::new()
        } else {
            aws.volumes(&volumes)
                .await
                .map_err(aws_error(format!("reading the volumes of {}", group.name)))?
                .into_iter()
                .filter(|v| v.stateless)
                .map(|v| v.id)
                .collect()
        };
        let latest_snapshots = if volumes.is_empty() {
            BTreeMap::new()
        } else {
            aws.latest_completed_snapshots(&volumes)
                .await
                .map_err(aws_error(format!(
                    "reading the snapshots of {}'s volumes",
                    group.name
                )))?
        };
        let facts = GroupFacts {
            group: group.clone(),
            hooks,
            instances,
            latest_snapshots,
            stateless_volumes,
        };
        all.extend(findings(&facts, settings, now));
    }
    all.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.group.cmp(&b.group))
    });
    Ok((groups.len(), all))
}

/// The table's columns.
pub const HEADERS: [&str; 4] = ["SEVERITY", "GROUP", "SUBJECT", "FINDING"];

/// The findings as text: a table, each fix under its finding, and a count.
pub fn render(groups: usize, findings: &[Finding]) -> String {
    let mut out = if findings.is_empty() {
        String::new()
    } else {
        table::render(&HEADERS, &rows(findings))
    };
    out.push_str(&count(groups, findings));
    out
}

/// How many groups, and findings of each severity.
pub fn count(groups: usize, findings: &[Finding]) -> String {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    format!(
        "\n{groups} group(s) audited: {} high, {} medium, {} low\n",
        count(Severity::High),
        count(Severity::Medium),
        count(Severity::Low)
    )
}

/// The table's rows: each finding, and its fix on the row under it.
pub fn rows(findings: &[Finding]) -> Vec<Vec<String>> {
    findings
        .iter()
        .flat_map(|f| {
            [
                vec![
                    f.severity.as_str().to_uppercase(),
                    f.group.clone(),
                    f.subject.clone(),
                    f.finding.clone(),
                ],
                vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("fix: {}", f.fix),
                ],
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests;
