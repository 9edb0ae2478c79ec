//! `lifeboat drill`: proof, on the user's own account, that a rescue of one group would work —
//! first a preflight that changes nothing (the function, its schedule and rules, the hook, the
//! retention on abandon, and every call a rescue makes, sent as the function's own role with
//! DryRun where EC2 has it, and the volumes' keys), then with `--live` one real termination
//! through Auto Scaling, followed as it happens, and a verdict from EC2 itself: did every volume
//! have a completed snapshot before the instance was terminated?

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::audit::{self, AuditSettings, Concern, GroupFacts, Severity};
use super::list::{rescued_sets, SetResult};
use super::{aws_error, human, OperatorError};
use crate::aws::drill::{rescue_tags, DrillAws, FunctionView, Probe, RuleView};
use crate::aws::operator::{InstanceView, OperatorAws, RescueScope};
use crate::aws::{GroupScope, SnapshotFacts, SnapshotState};
use crate::config::Config;
use crate::ids::{GroupName, HookName, InstanceId, VolumeId};
use crate::tags;

/// What to drill.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub group: GroupName,
    /// The function's name or ARN (the stack's `FunctionName` output).
    pub function: String,
    /// The instance to check and, with `--live`, terminate; else the group's first InService one.
    pub instance: Option<InstanceId>,
}

/// One check: passed, or what is wrong and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The preflight's answer: every check, and what a live drill needs from it.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub group: GroupName,
    pub instance: Option<InstanceId>,
    pub checks: Vec<Check>,
    #[serde(skip)]
    pub devices: Vec<(String, VolumeId)>,
}

impl Preflight {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

const REDEPLOY: &str = "redeploy the stack from this version's template.yaml (sam deploy)";

/// The checks the hook and group findings of `lifeboat audit` answer, in the drill's words;
/// all but the hook's own and retention are about a hook lifeboat serves, and said only when
/// there is one.
const GROUP_CHECKS: [(Concern, &str, &str); 6] = [
    (Concern::Hook, "hook", "a termination hook lifeboat serves"),
    (
        Concern::HeartbeatTimeout,
        "hook heartbeat timeout",
        "outlasts the sweep interval plus a minute",
    ),
    (Concern::DefaultResult, "hook default result", "ABANDON"),
    (
        Concern::Overrides,
        "hook metadata",
        "the function accepts the group's overrides",
    ),
    (
        Concern::RetainOnAbandon,
        "retain on abandon",
        "the group's instance lifecycle policy retains an abandoned instance",
    ),
    (
        Concern::GlobalLimit,
        "hook global limit",
        "long enough for a first snapshot of a large volume",
    ),
];

/// Checks everything a rescue of `request.group` needs, changing nothing.
pub async fn preflight(
    aws: &OperatorAws,
    drill: &DrillAws,
    request: &DrillRequest,
) -> Result<Preflight, OperatorError> {
    let mut checks = Vec::new();
    let function = drill
        .function(&request.function)
        .await
        .map_err(aws_error("reading the function"))?;
    let config = function_checks(drill, &request.function, function.as_ref(), &mut checks).await?;
    let served_hooks = config.hooks.clone();

    let groups = aws
        .groups(&GroupScope::Named(vec![request.group.clone()]))
        .await
        .map_err(aws_error("reading the group"))?;
    let Some(group) = groups.into_iter().find(|g| g.name == request.group) else {
        return Err(OperatorError::argument(
            "--group",
            request.group.as_str(),
            "no such Auto Scaling group in this account and Region",
        ));
    };
    let hooks = aws
        .hooks(&group.name)
        .await
        .map_err(aws_error(format!("reading the hooks of {}", group.name)))?;
    let settings = AuditSettings {
        hook_names: served_hooks.clone(),
        sweep_interval: config.sweep_interval,
        snapshot_age: chrono::Duration::days(7),
    };
    let hook: Option<HookName> = hooks
        .iter()
        .find(|h| h.transition == audit::TERMINATING && served_hooks.contains(&h.name))
        .map(|h| h.name.clone());
    let facts = GroupFacts {
        group: group.clone(),
        hooks,
        instances: Vec::new(),
        latest_snapshots: BTreeMap::new(),
        stateless_volumes: BTreeSet::new(),
    };
    let findings = audit::findings(&facts, &settings, Utc::now());
    for (concern, name, good) in GROUP_CHECKS {
        let about: Vec<_> = findings.iter().filter(|f| f.concern == concern).collect();
        match about.first() {
            // A low severity finding (a short global limit) is said, and passes.
            Some(f) if f.severity > Severity::Low => {
                checks.push(Check::fail(name, f.finding.clone(), f.fix.clone()))
            }
            Some(f) => checks.push(Check::ok(name, format!("warning: {}", f.finding))),
            None if hook.is_none()
                && !matches!(concern, Concern::Hook | Concern::RetainOnAbandon) => {}
            None => checks.push(Check::ok(name, good)),
        }
    }
    checks.push(if config.groups.contains(&group.name) {
        Check::ok("group scope", "named in the stack's Groups")
    } else if !config.groups.is_empty() {
        Check::fail(
            "group scope",
            "not in the stack's Groups: the role may not hold or complete its terminations",
            format!(
                "sam deploy --parameter-overrides Groups={},{}",
                config
                    .groups
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                group.name
            ),
        )
    } else if group.tagged_protected {
        Check::ok("group scope", format!("tagged {}=true", tags::PROTECTED))
    } else {
        // Under GroupScope=all the role would reach it untagged; the tag costs nothing and
        // keeps the group served if the stack goes back to the default scope.
        Check::fail(
            "group scope",
            format!(
                "not tagged {}=true: under the template's default GroupScope=tagged the role may not hold or complete its terminations",
                tags::PROTECTED
            ),
            format!(
                "aws autoscaling create-or-update-tags --tags ResourceId={},ResourceType=auto-scaling-group,Key={},Value=true,PropagateAtLaunch=false",
                group.name,
                tags::PROTECTED
            ),
        )
    });

    let instance = match &request.instance {
        Some(id) => Some(id.clone()),
        None => group
            .instances
            .iter()
            .find(|(_, state)| state == "InService")
            .map(|(id, _)| id.clone()),
    };
    let Some(instance_id) = instance else {
        checks.push(Check::fail(
            "instance",
            "the group has no InService instance to check the calls on",
            format!(
                "aws autoscaling set-desired-capacity --auto-scaling-group-name {} --desired-capacity 1",
                group.name
            ),
        ));
        return Ok(Preflight {
            group: group.name,
            instance: None,
            checks,
            devices: Vec::new(),
        });
    };
    if !group.instances.iter().any(|(id, _)| id == &instance_id) {
        return Err(OperatorError::argument(
            "--instance",
            instance_id.as_str(),
            format!("not an instance of group {}", group.name),
        ));
    }
    let view = aws
        .instances(std::slice::from_ref(&instance_id))
        .await
        .map_err(aws_error("reading the instance"))?
        .into_iter()
        .next();
    let Some(view) = view else {
        return Err(OperatorError::argument(
            "--instance",
            instance_id.as_str(),
            "EC2 does not know this instance",
        ));
    };
    checks.push(Check::ok(
        "instance",
        format!("{} with {} EBS volume(s)", view.id, view.devices.len()),
    ));
    let devices: Vec<(String, VolumeId)> = view
        .devices
        .iter()
        .map(|d| (d.device.clone(), d.volume_id.clone()))
        .collect();

    if let Some(function) = &function {
        role_checks(
            drill,
            function,
            &group.name,
            hook.as_ref().or(served_hooks.first()),
            &view,
            &mut checks,
        )
        .await;
    }
    key_checks(drill, &config, &devices, &mut checks).await?;
    Ok(Preflight {
        group: group.name,
        instance: Some(instance_id),
        checks,
        devices,
    })
}

/// The function, its configuration and the rules that invoke it; returns the configuration the
/// function runs with (the defaults when it cannot be read).
async fn function_checks(
    drill: &DrillAws,
    name: &str,
    function: Option<&FunctionView>,
    checks: &mut Vec<Check>,
) -> Result<Config, OperatorError> {
    let defaults = || Config::from_lookup(|_| None);
    let Some(function) = function else {
        checks.push(Check::fail(
            "function",
            format!("no Lambda function {name:?} in this Region"),
            "sam deploy (README, Quick start), or name the stack's function with --function",
        ));
        return defaults().map_err(|err| OperatorError::Refused(err.to_string()));
    };
    checks.push(if function.state == "Active" {
        Check::ok("function", format!("{} ({})", function.arn, function.state))
    } else {
        Check::fail(
            "function",
            format!("{} is {}", function.arn, function.state),
            format!("aws lambda get-function-configuration --function-name {name} (its StateReason says why)"),
        )
    });
    let config = match Config::from_lookup(|key| function.environment.get(key).cloned()) {
        Ok(config) => {
            checks.push(Check::ok(
                "configuration",
                format!(
                    "hooks {}, sweep every {} s",
                    config
                        .hooks
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    config.sweep_interval.as_secs()
                ),
            ));
            config
        }
        Err(err) => {
            checks.push(Check::fail(
                "configuration",
                format!("the function would refuse to start: {err}"),
                REDEPLOY,
            ));
            defaults().map_err(|err| OperatorError::Refused(err.to_string()))?
        }
    };
    let rules = drill
        .rules_invoking(&function.arn)
        .await
        .map_err(aws_error("reading the rules that invoke the function"))?;
    let schedule = rules.iter().find(|r| r.schedule.is_some());
    checks.push(rule_check(
        "sweep schedule",
        schedule,
        "a rescue outliving one invocation is never resumed",
        "no schedule invokes the function",
    ));
    let lifecycle = rules.iter().find(|r| {
        r.pattern
            .as_deref()
            .is_some_and(|p| p.contains("EC2 Instance-terminate Lifecycle Action"))
    });
    checks.push(rule_check(
        "termination rule",
        lifecycle,
        "no termination reaches the function",
        "no EventBridge rule sends it termination lifecycle actions",
    ));
    Ok(config)
}

/// An EventBridge rule the function needs: there and enabled; `without` is what its absence
/// or a disabled rule costs, `missing` how the absence reads.
fn rule_check(name: &str, rule: Option<&RuleView>, without: &str, missing: &str) -> Check {
    match rule {
        Some(rule) if rule.enabled => Check::ok(
            name,
            match &rule.schedule {
                Some(schedule) => format!("{} {schedule}", rule.name),
                None => rule.name.clone(),
            },
        ),
        Some(rule) => Check::fail(
            name,
            format!("rule {} is disabled: {without}", rule.name),
            format!("aws events enable-rule --name {}", rule.name),
        ),
        None => Check::fail(name, format!("{missing}: {without}"), REDEPLOY),
    }
}

/// Every call a rescue makes, as the function's role.
async fn role_checks(
    drill: &DrillAws,
    function: &FunctionView,
    group: &GroupName,
    hook: Option<&HookName>,
    instance: &InstanceView,
    checks: &mut Vec<Check>,
) {
    let session = match drill.as_role(&function.role_arn).await {
        Ok(session) => {
            checks.push(Check::ok("role", function.role_arn.clone()));
            session
        }
        Err(err) => {
            checks.push(Check::fail(
                "role",
                format!("cannot act as the function's role {}: {err}", function.role_arn),
                "redeploy with DrillPrincipalArn set to your own IAM role's ARN (the role trusts only Lambda otherwise), then run the drill with that role",
            ));
            return;
        }
    };
    // The configuration always names a hook; the probes need one.
    let Some(hook) = hook.cloned() else {
        return;
    };
    let volumes: Vec<VolumeId> = instance
        .devices
        .iter()
        .map(|d| d.volume_id.clone())
        .collect();
    let devices: Vec<String> = instance.devices.iter().map(|d| d.device.clone()).collect();
    let snapshot_tags = rescue_tags(&instance.id, group, &hook);
    let instance_tags = tags::Tags::from([
        (tags::GROUP.to_owned(), group.to_string()),
        (tags::HOOK.to_owned(), hook.to_string()),
        (
            tags::STATE.to_owned(),
            tags::RescueState::Pending.as_str().to_owned(),
        ),
    ]);
    let kept_tags = tags::Tags::from([
        (tags::KEPT_BY.to_owned(), "lifeboat".to_owned()),
        (tags::KEPT_REASON.to_owned(), "drill".to_owned()),
        (tags::KEPT_AT.to_owned(), tags::timestamp(Utc::now())),
    ]);
    let mut probes = vec![
        (
            "read the instance",
            session.describe_instances(&instance.id).await,
        ),
        ("read its volumes", session.describe_volumes(&volumes).await),
        ("read snapshots", session.describe_snapshots().await),
        (
            "keep the volumes",
            session.keep_volumes(&instance.id, &devices).await,
        ),
        (
            "record the rescue on the instance",
            session.tag(instance.id.as_str(), &instance_tags).await,
        ),
        (
            "snapshot the instance",
            session
                .snapshot_instance(&instance.id, &snapshot_tags)
                .await,
        ),
        ("read the group", session.describe_group(group).await),
        ("read the hooks", session.describe_hooks(group).await),
        ("renew the hold", session.heartbeat(group, &hook).await),
        ("complete the action", session.complete(group, &hook).await),
    ];
    if let Some(volume) = volumes.first() {
        probes.insert(
            6,
            (
                "snapshot one volume",
                session.snapshot_volume(volume, &snapshot_tags).await,
            ),
        );
        probes.insert(
            4,
            (
                "tag a kept volume",
                session.tag(volume.as_str(), &kept_tags).await,
            ),
        );
    }
    for (what, probe) in probes {
        let name = format!("role may {what}");
        checks.push(match probe {
            Probe::Allowed => Check::ok(name, "allowed"),
            Probe::Refused(why) => Check::fail(
                name,
                why,
                format!(
                    "{REDEPLOY}; if it is, a permissions boundary or an SCP refuses it: aws iam simulate-principal-policy --policy-source-arn {} --action-names <the call>",
                    function.role_arn
                ),
            ),
            Probe::Failed(err) => Check::fail(
                name,
                format!("could not be checked: {err}"),
                "run the drill again; if it persists, the error says what AWS refused",
            ),
        });
    }
}

/// The keys of the instance's encrypted volumes: known, enabled, and usable by the role.
async fn key_checks(
    drill: &DrillAws,
    config: &Config,
    devices: &[(String, VolumeId)],
    checks: &mut Vec<Check>,
) -> Result<(), OperatorError> {
    let volumes: Vec<VolumeId> = devices.iter().map(|(_, v)| v.clone()).collect();
    if volumes.is_empty() {
        return Ok(());
    }
    let keys = drill
        .volume_keys(&volumes)
        .await
        .map_err(aws_error("reading the volumes' keys"))?;
    if keys.is_empty() {
        checks.push(Check::ok("keys", "no encrypted volume"));
        return Ok(());
    }
    let distinct: BTreeSet<&String> = keys.values().collect();
    for key in distinct {
        let name = format!("key {key}");
        let used_by: Vec<String> = keys
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(v, _)| v.to_string())
            .collect();
        let view = drill
            .key(key)
            .await
            .map_err(aws_error(format!("describing key {key}")))?;
        let Some(view) = view else {
            checks.push(Check::fail(
                name,
                format!("KMS does not know it (volumes {}): EC2 cannot snapshot them", used_by.join(", ")),
                "aws kms list-keys; the key may be in another account, whose key policy must allow this one",
            ));
            continue;
        };
        let listed = config
            .encryption_keys
            .iter()
            .any(|k| k == &view.arn || k.ends_with(&format!("/{key}")) || k == key);
        checks.push(if view.state != "Enabled" {
            Check::fail(
                name,
                format!("{} is {}: EC2 cannot use it to snapshot {}", view.arn, view.state, used_by.join(", ")),
                if view.state == "PendingDeletion" {
                    format!("aws kms cancel-key-deletion --key-id {} && aws kms enable-key --key-id {}", view.arn, view.arn)
                } else {
                    format!("aws kms enable-key --key-id {}", view.arn)
                },
            )
        } else if view.manager == "CUSTOMER" && !listed {
            Check::fail(
                name,
                format!(
                    "customer managed key {} is not in the stack's EncryptionKeyArns: the role may not let EC2 use it",
                    view.arn
                ),
                format!("sam deploy --parameter-overrides EncryptionKeyArns=<the keys listed>,{}", view.arn),
            )
        } else {
            Check::ok(name, format!("{} {} ({})", view.arn, view.state, view.manager))
        });
    }
    Ok(())
}

/// The checks as text, one line each; a count at the end.
pub fn render(preflight: &Preflight) -> String {
    let mut out = String::new();
    for check in &preflight.checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        match &check.fix {
            Some(fix) if !check.ok => out.push_str(&format!(
                "{mark}  {}: {} — fix: {fix}\n",
                check.check, check.detail
            )),
            _ => out.push_str(&format!("{mark}  {}: {}\n", check.check, check.detail)),
        }
    }
    let failed = preflight.checks.iter().filter(|c| !c.ok).count();
    out.push_str(&format!(
        "\n{} check(s), {} failed: {}\n",
        preflight.checks.len(),
        failed,
        if failed == 0 {
            format!("a rescue of {} has what it needs", preflight.group)
        } else {
            format!("a rescue of {} would not hold", preflight.group)
        }
    ));
    out
}

/// The verdict of a live drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every volume had a completed snapshot before the instance was terminated.
    Held,
    /// The instance was terminated (or kept) without that.
    NotHeld,
    /// The drill ended before the rescue did.
    Unproven,
}

/// One moment of a live drill.
#[derive(Debug, Clone, Serialize)]
pub struct Moment {
    pub at: DateTime<Utc>,
    pub seconds: f64,
    pub what: String,
}

/// What EC2 says of one volume after the fact.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeProof {
    pub device: String,
    pub volume_id: VolumeId,
    pub snapshot_id: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The volume still exists after the termination (kept).
    pub kept: bool,
    pub saved_in_time: bool,
}

/// A live drill's record.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub group: GroupName,
    pub instance: InstanceId,
    pub timeline: Vec<Moment>,
    pub terminated_at: Option<DateTime<Utc>>,
    pub volumes: Vec<VolumeProof>,
    pub verdict: Verdict,
    pub reason: String,
}

/// How patiently to follow.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub poll: Duration,
    pub patience: Duration,
}

struct Timeline<'a> {
    started: DateTime<Utc>,
    moments: Vec<Moment>,
    out: &'a mut dyn Write,
}

impl Timeline<'_> {
    fn say(&mut self, what: String) {
        let at = Utc::now();
        let seconds = (at - self.started).num_milliseconds() as f64 / 1000.0;
        // The timeline is also returned whole; a closed output only loses the live copy.
        let _ = writeln!(self.out, "  {seconds:7.1}s  {what}");
        let _ = self.out.flush();
        self.moments.push(Moment { at, seconds, what });
    }
}

/// Terminates `preflight.instance` through its group, follows the rescue, and judges it from
/// EC2: held only when every volume's snapshot completed before EC2 terminated the instance.
pub async fn live(
    aws: &OperatorAws,
    drill: &DrillAws,
    preflight: &Preflight,
    options: &LiveOptions,
    out: &mut dyn Write,
) -> Result<LiveReport, OperatorError> {
    let Some(instance) = preflight.instance.clone() else {
        return Err(OperatorError::Refused(
            "the preflight found no instance to terminate".into(),
        ));
    };
    let mut timeline = Timeline {
        started: Utc::now(),
        moments: Vec::new(),
        out,
    };
    drill
        .terminate_in_group(&instance)
        .await
        .map_err(aws_error(format!(
            "terminating {instance} through its group"
        )))?;
    timeline.say(format!(
        "terminate {instance} through Auto Scaling (the group launches a replacement)"
    ));

    let mut seen_lifecycle = None;
    let mut seen_kept = false;
    let mut seen_set = false;
    let mut seen_renewal = None;
    let mut seen_progress: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_result = None;
    let mut ec2_state = String::new();
    let deadline = tokio::time::Instant::now() + options.patience;
    loop {
        let snapshots = aws
            .rescue_snapshots(&RescueScope::Instances(vec![instance.clone()]))
            .await
            .map_err(aws_error("reading the rescue's snapshots"))?;
        let lifecycle = drill
            .lifecycle_state(&instance)
            .await
            .map_err(aws_error("reading the instance's life-cycle state"))?;
        let (state, _) = drill
            .ec2_state(&instance)
            .await
            .map_err(aws_error("reading the instance"))?;
        if lifecycle != seen_lifecycle {
            timeline.say(match &lifecycle {
                Some(l) if l == "Terminating:Wait" => {
                    "Auto Scaling: Terminating:Wait — the hook holds the instance".into()
                }
                Some(l) => format!("Auto Scaling: {l}"),
                None => "Auto Scaling: the instance has left the group".into(),
            });
            seen_lifecycle = lifecycle.clone();
        }
        if !seen_kept && !state.is_empty() && state != "terminated" {
            let views = aws
                .instances(std::slice::from_ref(&instance))
                .await
                .map_err(aws_error("reading the instance's volumes"))?;
            if views.first().is_some_and(|v| {
                !v.devices.is_empty() && v.devices.iter().all(|d| !d.delete_on_termination)
            }) {
                timeline.say(
                    "event received: lifeboat kept every volume (DeleteOnTermination=false)".into(),
                );
                seen_kept = true;
            }
        }
        if !snapshots.is_empty() && !seen_set {
            let ids: Vec<String> = snapshots.iter().map(|s| s.id.to_string()).collect();
            timeline.say(format!("set created: {}", ids.join(", ")));
            seen_set = true;
        }
        let renewed = snapshots
            .iter()
            .filter_map(|s| s.tags.get(tags::RENEWED_AT).cloned())
            .max();
        if renewed.is_some() && renewed != seen_renewal {
            timeline.say(format!(
                "hold renewed ({})",
                renewed.clone().unwrap_or_default()
            ));
            seen_renewal = renewed;
        }
        for snapshot in &snapshots {
            let progress = match snapshot.state {
                SnapshotState::Completed => "completed".to_owned(),
                SnapshotState::Error => "error".to_owned(),
                _ => snapshot.progress.clone().unwrap_or_else(|| "0%".into()),
            };
            if seen_progress.get(snapshot.id.as_str()) != Some(&progress) {
                timeline.say(format!(
                    "{} of {}: {progress}",
                    snapshot.id,
                    snapshot
                        .volume_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ));
                seen_progress.insert(snapshot.id.to_string(), progress);
            }
        }
        let result = rescued_sets(snapshots.clone())
            .into_iter()
            .last()
            .map(|s| s.result);
        if result != seen_result {
            if let Some(result) = result {
                timeline.say(match result {
                    SetResult::Released => {
                        "released: every snapshot completed, lifeboat completed the action".into()
                    }
                    SetResult::FailedSafe => {
                        "failed safe: lifeboat answered ABANDON and kept the volumes".into()
                    }
                    SetResult::InFlight => "rescue in flight".into(),
                    other => format!("rescue {}", other.as_str()),
                });
            }
            seen_result = result;
        }
        if state != ec2_state {
            if state == "shutting-down" || state == "terminated" {
                timeline.say(format!("EC2: instance {state}"));
            }
            ec2_state = state.clone();
        }
        let over = state == "terminated"
            || lifecycle.as_deref() == Some("Terminating:Retained")
            || (lifecycle.is_none() && state != "running" && state != "stopped");
        if over || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(options.poll).await;
    }
    let failed_safe = seen_result == Some(SetResult::FailedSafe)
        || seen_lifecycle.as_deref() == Some("Terminating:Retained");
    judge(
        aws,
        drill,
        preflight,
        &instance,
        timeline.moments,
        failed_safe,
    )
    .await
}

/// The verdict, from what EC2 says now of the instance, its volumes and their snapshots.
async fn judge(
    aws: &OperatorAws,
    drill: &DrillAws,
    preflight: &Preflight,
    instance: &InstanceId,
    timeline: Vec<Moment>,
    failed_safe: bool,
) -> Result<LiveReport, OperatorError> {
    let (state, terminated_at) = drill
        .ec2_state(instance)
        .await
        .map_err(aws_error("reading the instance"))?;
    let snapshots: Vec<SnapshotFacts> = aws
        .rescue_snapshots(&RescueScope::Instances(vec![instance.clone()]))
        .await
        .map_err(aws_error("reading the rescue's snapshots"))?;
    let volume_ids: Vec<VolumeId> = preflight.devices.iter().map(|(_, v)| v.clone()).collect();
    let existing: BTreeSet<VolumeId> = aws
        .volumes(&volume_ids)
        .await
        .map_err(aws_error("reading the volumes"))?
        .into_iter()
        .map(|v| v.id)
        .collect();
    let mut volumes = Vec::new();
    for (device, volume) in &preflight.devices {
        let snapshot = snapshots
            .iter()
            .filter(|s| s.volume_id.as_ref() == Some(volume))
            .max_by_key(|s| s.completed_at);
        let completed_at = snapshot
            .filter(|s| s.state == SnapshotState::Completed)
            .and_then(|s| s.completed_at);
        // EC2 says the termination to the second: a completion within that second counts.
        let saved_in_time = match (completed_at, terminated_at) {
            (Some(done), Some(gone)) => done.timestamp() <= gone.timestamp(),
            _ => false,
        };
        volumes.push(VolumeProof {
            device: device.clone(),
            volume_id: volume.clone(),
            snapshot_id: snapshot.map(|s| s.id.to_string()),
            completed_at,
            kept: existing.contains(volume),
            saved_in_time,
        });
    }
    let (verdict, reason) = if state != "terminated" && state != "shutting-down" {
        let kept = volumes.iter().filter(|v| v.kept).count();
        if failed_safe {
            (
                Verdict::NotHeld,
                format!(
                    "lifeboat failed safe (ABANDON): the instance is {state} and retained, {kept} of {} volume(s) kept, not every one snapshotted; see lifeboat list --instance {instance} and the function's log",
                    volumes.len()
                ),
            )
        } else {
            (
                Verdict::Unproven,
                format!("the instance is still {state}: the rescue has not ended (run the drill with more --patience, or lifeboat watch --instance {instance})"),
            )
        }
    } else if terminated_at.is_none() {
        (
            Verdict::Unproven,
            "EC2 does not say when the instance was terminated".into(),
        )
    } else if let Some(missing) = volumes.iter().find(|v| !v.saved_in_time) {
        (
            Verdict::NotHeld,
            format!(
                "{} ({}) had no completed snapshot when EC2 terminated the instance{}",
                missing.volume_id,
                missing.device,
                if missing.kept {
                    "; the volume was kept"
                } else {
                    ""
                }
            ),
        )
    } else {
        let last = volumes
            .iter()
            .filter_map(|v| v.completed_at)
            .max()
            .unwrap_or_else(Utc::now);
        (
            Verdict::Held,
            format!(
                "every volume's snapshot completed before EC2 terminated the instance ({} before)",
                human(terminated_at.unwrap_or(last) - last)
            ),
        )
    };
    Ok(LiveReport {
        group: preflight.group.clone(),
        instance: instance.clone(),
        timeline,
        terminated_at,
        volumes,
        verdict,
        reason,
    })
}

/// The verdict as text: each volume, then the verdict.
pub fn render_verdict(report: &LiveReport) -> String {
    let mut out = String::from("\n");
    for v in &report.volumes {
        out.push_str(&format!(
            "  {:<12} {}  {}  {}\n",
            v.device,
            v.volume_id,
            v.snapshot_id.as_deref().unwrap_or("no snapshot"),
            match (v.completed_at, v.saved_in_time) {
                (Some(at), true) =>
                    format!("completed {} — before the termination", tags::timestamp(at)),
                (Some(at), false) =>
                    format!("completed {} — after the termination", tags::timestamp(at)),
                (None, _) => "not completed".into(),
            }
        ));
    }
    out.push_str(&format!(
        "\nverdict: {} — {}\n",
        match report.verdict {
            Verdict::Held => "HELD",
            Verdict::NotHeld => "NOT HELD",
            Verdict::Unproven => "UNPROVEN",
        },
        report.reason
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(schedule: Option<&str>, enabled: bool) -> RuleView {
        RuleView {
            name: "lifeboat-sweep".into(),
            schedule: schedule.map(str::to_owned),
            pattern: None,
            enabled,
        }
    }

    #[test]
    fn a_rule_is_there_and_enabled_or_named_with_its_fix() {
        let on = rule(Some("rate(5 minutes)"), true);
        let check = rule_check("sweep schedule", Some(&on), "never resumed", "no schedule");
        assert!(check.ok);
        assert_eq!(check.detail, "lifeboat-sweep rate(5 minutes)");
        let off = rule(None, false);
        let check = rule_check("termination rule", Some(&off), "nothing arrives", "none");
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            "rule lifeboat-sweep is disabled: nothing arrives"
        );
        assert_eq!(
            check.fix.as_deref(),
            Some("aws events enable-rule --name lifeboat-sweep")
        );
        let check = rule_check("sweep schedule", None, "never resumed", "no schedule");
        assert!(!check.ok);
        assert_eq!(check.detail, "no schedule: never resumed");
        assert_eq!(check.fix.as_deref(), Some(REDEPLOY));
    }
}
