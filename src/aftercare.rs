//! After the rescue: what becomes of the released sets. Retention (opt-in, per group) moves a
//! released set older than a number of days to the EBS snapshot archive tier, or deletes it, or
//! first one and later the other; the newest sets of each group are always kept. It never
//! touches a set that failed, ended or is still in flight (it reads only snapshots whose own
//! tags say `released`, and the role may change no other), a set a restore is using, or a
//! snapshot without lifeboat's record. It runs on its own schedule (the aftercare event) and
//! does a bounded amount of work: its reads — one paged `DescribeSnapshots` of the released
//! snapshots, one paged `DescribeSnapshotTierStatus` of the moves under way, one
//! `DescribeLifecycleHooks` per group with more than one set — then one call per snapshot it
//! changes (EC2 has no batch), at most `LIFEBOAT_RETENTION_MAX_CHANGES` a run, and one
//! `Lifeboat Set Expired` event per set changed. Then the copies to another Region (`copy`),
//! when one is configured.

pub mod copy;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::aws::{AwsError, Cloud, SnapshotFacts, SnapshotQuery, SnapshotState, StorageTier};
use crate::config::{Config, Retention};
use crate::ids::{GroupName, HookName, InstanceId, SnapshotId};
use crate::report::Notice;
use crate::tags::{self, RescueState, SnapshotLabel};
use crate::telemetry::Metrics;

/// A set a restore is using carries this tag until the time it says (`lifeboat restore` writes
/// it); retention leaves the set alone until then.
pub const IN_USE_UNTIL: &str = "lifeboat:in-use-until";

/// One released rescue's snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedSet {
    pub group: GroupName,
    pub instance_id: InstanceId,
    pub hook: HookName,
    /// When the rescue started: the set's age counts from here.
    pub taken_at: DateTime<Utc>,
    pub snapshots: Vec<SnapshotFacts>,
}

impl ReleasedSet {
    /// The released sets among these snapshots (each snapshot's own label says `released`;
    /// any other is left out).
    pub fn from_snapshots(snapshots: Vec<SnapshotFacts>) -> Vec<ReleasedSet> {
        let mut sets: BTreeMap<(InstanceId, HookName, DateTime<Utc>), ReleasedSet> =
            BTreeMap::new();
        for snapshot in snapshots {
            let Ok(Some(label)) = SnapshotLabel::read(&snapshot.tags) else {
                continue;
            };
            if label.state != RescueState::Released {
                continue;
            }
            let key = (
                label.instance_id.clone(),
                label.hook.clone(),
                label.started_at,
            );
            sets.entry(key)
                .or_insert_with(|| ReleasedSet {
                    group: label.group.clone(),
                    instance_id: label.instance_id.clone(),
                    hook: label.hook.clone(),
                    taken_at: label.started_at,
                    snapshots: Vec::new(),
                })
                .snapshots
                .push(snapshot);
        }
        sets.into_values().collect()
    }

    /// A restore uses the set: it says so in a tag, or a snapshot is restored from the archive
    /// for a while, or its move between tiers or its copy to another Region is under way.
    pub fn in_use(&self, now: DateTime<Utc>, moving: &BTreeSet<SnapshotId>) -> bool {
        self.snapshots.iter().any(|s| {
            let tagged = s
                .tags
                .get(IN_USE_UNTIL)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|until| until > now);
            let copying = s.tags.get(tags::COPY_STATE).map(String::as_str) == Some(copy::PENDING);
            tagged
                || copying
                || s.restore_expiry.is_some_and(|until| until > now)
                || moving.contains(&s.id)
        })
    }

    /// Every snapshot in the archive tier.
    pub fn archived(&self) -> bool {
        self.snapshots
            .iter()
            .all(|s| s.tier == StorageTier::Archive)
    }
}

/// What retention does to a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Archive,
    Delete,
}

/// What retention will do to a set, and from when, if it is not among its group's newest.
pub fn next_change(set: &ReleasedSet, retention: &Retention) -> Option<(Change, DateTime<Utc>)> {
    let at = |days: u32| set.taken_at + Duration::days(i64::from(days));
    if let Some(days) = retention.archive_after_days {
        if !set.archived() {
            return Some((Change::Archive, at(days)));
        }
    }
    retention
        .delete_after_days
        .map(|days| (Change::Delete, at(days)))
}

/// One change to make: the set (an index into the sets given) and its snapshots to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub set: usize,
    pub change: Change,
    pub snapshots: Vec<SnapshotId>,
}

/// The changes due now, oldest sets first, at most `max_changes` snapshots (whole sets; a set
/// larger than the bound goes alone). Per group the newest `keep_last` sets are kept.
pub fn plan(
    sets: &[ReleasedSet],
    retention_of: impl Fn(&GroupName) -> Retention,
    moving: &BTreeSet<SnapshotId>,
    now: DateTime<Utc>,
    max_changes: usize,
) -> Vec<Planned> {
    within(due(sets, retention_of, moving, now), max_changes).0
}

/// Every change due now, oldest sets first.
fn due(
    sets: &[ReleasedSet],
    retention_of: impl Fn(&GroupName) -> Retention,
    moving: &BTreeSet<SnapshotId>,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let mut by_group: BTreeMap<&GroupName, Vec<usize>> = BTreeMap::new();
    for (i, set) in sets.iter().enumerate() {
        by_group.entry(&set.group).or_default().push(i);
    }
    let mut due: Vec<Planned> = Vec::new();
    for (group, mut members) in by_group {
        let retention = retention_of(group);
        if retention.is_off() {
            continue;
        }
        members.sort_by_key(|i| std::cmp::Reverse(sets[*i].taken_at));
        for &i in members.iter().skip(retention.keep_last as usize) {
            let set = &sets[i];
            if set.in_use(now, moving) {
                continue;
            }
            let Some((change, at)) = next_change(set, &retention) else {
                continue;
            };
            // Deleting supersedes archiving once its day has come.
            let change = match retention.delete_after_days {
                Some(days) if now >= set.taken_at + Duration::days(i64::from(days)) => {
                    Change::Delete
                }
                _ if now >= at => change,
                _ => continue,
            };
            let snapshots: Vec<SnapshotId> = set
                .snapshots
                .iter()
                .filter(|s| match change {
                    Change::Delete => true,
                    Change::Archive => {
                        s.tier == StorageTier::Standard && s.state == SnapshotState::Completed
                    }
                })
                .map(|s| s.id.clone())
                .collect();
            if !snapshots.is_empty() {
                due.push(Planned {
                    set: i,
                    change,
                    snapshots,
                });
            }
        }
    }
    due.sort_by_key(|p| sets[p.set].taken_at);
    due
}

/// The changes of `due` one run makes, at most `max_changes` snapshots, and how many it leaves
/// to the next run.
fn within(due: Vec<Planned>, max_changes: usize) -> (Vec<Planned>, usize) {
    let mut budget = max_changes;
    let mut chosen = Vec::new();
    let mut deferred = 0;
    for planned in due {
        if planned.snapshots.len() > budget && !(chosen.is_empty() && budget == max_changes) {
            deferred += 1;
            continue;
        }
        budget = budget.saturating_sub(planned.snapshots.len());
        chosen.push(planned);
    }
    (chosen, deferred)
}

/// What one aftercare run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AftercareReport {
    pub released_sets: usize,
    pub archived: Vec<SetChange>,
    pub deleted: Vec<SetChange>,
    /// Sets due but left to the next run (the bound on one run's work).
    pub deferred: usize,
    /// Copies to the other Region this run started, and the sets whose copy it found complete.
    pub copies_started: usize,
    pub copied: Vec<copy::SetCopied>,
    /// Copies that failed (or EC2 refused) this run.
    pub copy_failures: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One set retention changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetChange {
    pub change: Change,
    pub group: String,
    pub instance_id: String,
    pub taken_at: String,
    pub snapshots: Vec<String>,
}

/// One aftercare run: retention over every served group's released sets.
pub async fn run<C: Cloud>(
    cloud: &C,
    config: &Config,
    metrics: &Metrics,
    now: DateTime<Utc>,
) -> Result<AftercareReport, AwsError> {
    let sets: Vec<ReleasedSet> = ReleasedSet::from_snapshots(
        cloud
            .find_snapshots(&SnapshotQuery::Tagged {
                key: tags::STATE.into(),
                values: vec![RescueState::Released.as_str().into()],
            })
            .await?,
    )
    .into_iter()
    .filter(|s| config.serves_hook(&s.hook) && config.serves_group(&s.group))
    .collect();
    let mut report = AftercareReport {
        released_sets: sets.len(),
        ..AftercareReport::default()
    };
    let changed = retain(cloud, config, &sets, now, &mut report).await?;
    copy::copy_sets(cloud, config, &sets, &changed, metrics, now, &mut report).await?;
    Ok(report)
}

/// Retention over the sets; the indices of the sets it changed.
async fn retain<C: Cloud>(
    cloud: &C,
    config: &Config,
    sets: &[ReleasedSet],
    now: DateTime<Utc>,
    report: &mut AftercareReport,
) -> Result<BTreeSet<usize>, AwsError> {
    let mut changed = BTreeSet::new();
    // The groups' own settings, read only for groups with more sets than the defaults keep
    // (an override may keep fewer, so any group with a set past one).
    let mut counts: BTreeMap<&GroupName, usize> = BTreeMap::new();
    for set in sets {
        *counts.entry(&set.group).or_default() += 1;
    }
    let mut retention_of: BTreeMap<GroupName, Retention> = BTreeMap::new();
    for (group, count) in counts {
        if count <= 1 {
            continue;
        }
        retention_of.insert(group.clone(), group_retention(cloud, config, group).await);
    }
    if retention_of.values().all(Retention::is_off) {
        return Ok(changed);
    }
    let moving = cloud.tiering_under_way().await?;
    let retention = |g: &GroupName| retention_of.get(g).copied().unwrap_or(Retention::OFF);
    let (planned, deferred) = within(
        due(sets, retention, &moving, now),
        config.retention_max_changes,
    );
    report.deferred = deferred;
    for change in planned {
        let set = &sets[change.set];
        changed.insert(change.set);
        let mut done = Vec::new();
        for snapshot in &change.snapshots {
            let result = match change.change {
                Change::Archive => cloud.archive(snapshot).await,
                Change::Delete => cloud.delete(snapshot).await,
            };
            match result {
                Ok(()) => done.push(snapshot.to_string()),
                Err(err) => {
                    warn!(snapshot_id = %snapshot, error = %err, change = ?change.change, "retention could not change a snapshot; the next run tries again");
                    report.errors.push(err.to_string());
                }
            }
        }
        if done.is_empty() {
            continue;
        }
        info!(asg = %set.group, instance_id = %set.instance_id, change = ?change.change, snapshots = done.len(), "retention");
        let entry = SetChange {
            change: change.change,
            group: set.group.to_string(),
            instance_id: set.instance_id.to_string(),
            taken_at: tags::timestamp(set.taken_at),
            snapshots: done,
        };
        if let Err(err) = cloud.announce(&Notice::of_expiry(&entry)).await {
            warn!(error = %err, "could not publish the set's expiry event");
        }
        match change.change {
            Change::Archive => report.archived.push(entry),
            Change::Delete => report.deleted.push(entry),
        }
    }
    Ok(changed)
}

/// A group's retention: the defaults with the overrides of its hook's metadata. A group whose
/// hook is gone gets the defaults; one whose overrides are rejected gets none (nothing touched).
async fn group_retention<C: Cloud>(cloud: &C, config: &Config, group: &GroupName) -> Retention {
    let mut metadata = None;
    for hook in &config.hooks {
        match cloud.hook_facts(group, hook).await {
            Ok(Some(facts)) => {
                metadata = facts.notification_metadata;
                break;
            }
            Ok(None) => {}
            Err(err) => {
                warn!(asg = %group, error = %err, "could not read the group's hook; its sets are left as they are this run");
                return Retention::OFF;
            }
        }
    }
    let (settings, rejected) = config.settings_for(metadata.as_deref());
    if let Some(err) = rejected {
        warn!(asg = %group, error = %err, "the group's overrides are rejected; retention leaves its sets alone");
    }
    settings.retention
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VolumeId;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    /// A set of `volumes` snapshots of `instance` in `group`, taken `days` ago, in `state`.
    fn snapshots(
        group: &str,
        instance: &str,
        days: i64,
        volumes: usize,
        state: RescueState,
    ) -> Vec<SnapshotFacts> {
        let taken_at = now() - Duration::days(days);
        let label = SnapshotLabel {
            instance_id: InstanceId::parse(instance).unwrap(),
            group: GroupName::parse(group).unwrap(),
            hook: HookName::parse("lifeboat").unwrap(),
            token: None,
            state,
            started_at: taken_at,
            action_started_at: None,
            set: "s".into(),
            attempt: 1,
            volumes: BTreeMap::new(),
        };
        (0..volumes)
            .map(|v| SnapshotFacts {
                id: SnapshotId::parse(&format!("snap-{:08x}{v:09x}", days as u32)).unwrap(),
                volume_id: Some(VolumeId::parse(&format!("vol-{v:017x}")).unwrap()),
                state: SnapshotState::Completed,
                progress: Some("100%".into()),
                start_time: Some(taken_at),
                volume_size_gib: Some(10),
                encrypted: true,
                kms_key_id: None,
                tags: label.tags(),
                tier: StorageTier::Standard,
                restore_expiry: None,
                completed_at: None,
            })
            .collect()
    }

    fn released(days: &[i64]) -> Vec<ReleasedSet> {
        ReleasedSet::from_snapshots(
            days.iter()
                .enumerate()
                .flat_map(|(i, d)| {
                    snapshots(
                        "api-db",
                        &format!("i-{i:017x}"),
                        *d,
                        2,
                        RescueState::Released,
                    )
                })
                .collect(),
        )
    }

    fn retention(archive: Option<u32>, delete: Option<u32>, keep_last: u32) -> Retention {
        Retention {
            archive_after_days: archive,
            delete_after_days: delete,
            keep_last,
        }
    }

    fn ages(sets: &[ReleasedSet], planned: &[Planned], change: Change) -> Vec<i64> {
        let mut ages: Vec<i64> = planned
            .iter()
            .filter(|p| p.change == change)
            .map(|p| (now() - sets[p.set].taken_at).num_days())
            .collect();
        ages.sort_unstable();
        ages
    }

    #[test]
    fn the_newest_sets_of_each_group_are_kept_however_old() {
        let sets = released(&[400, 300, 200]);
        let planned = plan(
            &sets,
            |_| retention(None, Some(30), 3),
            &BTreeSet::new(),
            now(),
            100,
        );
        assert!(planned.is_empty());
        let planned = plan(
            &sets,
            |_| retention(None, Some(30), 1),
            &BTreeSet::new(),
            now(),
            100,
        );
        assert_eq!(ages(&sets, &planned, Change::Delete), [300, 400]);
        assert!(planned.iter().all(|p| p.snapshots.len() == 2));
    }

    #[test]
    fn sets_are_archived_then_deleted_as_their_days_come() {
        let sets = released(&[10, 40, 200, 1]);
        let planned = plan(
            &sets,
            |_| retention(Some(30), Some(120), 1),
            &BTreeSet::new(),
            now(),
            100,
        );
        assert_eq!(ages(&sets, &planned, Change::Archive), [40]);
        assert_eq!(ages(&sets, &planned, Change::Delete), [200]);
    }

    #[test]
    fn retention_off_touches_nothing() {
        let sets = released(&[1000, 900, 800, 700]);
        assert!(plan(&sets, |_| Retention::OFF, &BTreeSet::new(), now(), 100).is_empty());
    }

    #[test]
    fn only_released_snapshots_make_a_set_failed_and_ended_ones_never() {
        let mut all = snapshots("api-db", "i-00000000000000001", 400, 2, RescueState::Failed);
        all.extend(snapshots(
            "api-db",
            "i-00000000000000002",
            400,
            2,
            RescueState::Ended,
        ));
        all.extend(snapshots(
            "api-db",
            "i-00000000000000003",
            400,
            2,
            RescueState::Pending,
        ));
        all.extend(snapshots(
            "api-db",
            "i-00000000000000004",
            300,
            2,
            RescueState::Released,
        ));
        // A snapshot without lifeboat's record at all.
        let mut stranger = snapshots(
            "api-db",
            "i-00000000000000005",
            300,
            1,
            RescueState::Released,
        );
        stranger[0].tags.clear();
        all.extend(stranger);
        let sets = ReleasedSet::from_snapshots(all);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].instance_id.as_str(), "i-00000000000000004");
    }

    #[test]
    fn a_set_a_restore_uses_is_never_touched() {
        let mut sets = released(&[400, 300, 200, 1]);
        // A restore tagged the oldest set in use for another day; the next is restored from the
        // archive for a while; the third is moving between tiers.
        sets[0].snapshots[1].tags.insert(
            IN_USE_UNTIL.into(),
            tags::timestamp(now() + Duration::days(1)),
        );
        let restored = sets
            .iter()
            .position(|s| (now() - s.taken_at).num_days() == 300)
            .unwrap();
        sets[restored].snapshots[0].restore_expiry = Some(now() + Duration::hours(5));
        let moving_set = sets
            .iter()
            .position(|s| (now() - s.taken_at).num_days() == 200)
            .unwrap();
        let moving: BTreeSet<SnapshotId> = [sets[moving_set].snapshots[0].id.clone()].into();
        let planned = plan(&sets, |_| retention(None, Some(30), 1), &moving, now(), 100);
        assert!(planned.is_empty(), "{planned:?}");
        // Once the tag's time has passed, the set is retention's again.
        sets[0].snapshots[1].tags.insert(
            IN_USE_UNTIL.into(),
            tags::timestamp(now() - Duration::days(1)),
        );
        let planned = plan(&sets, |_| retention(None, Some(30), 1), &moving, now(), 100);
        assert_eq!(ages(&sets, &planned, Change::Delete), [400]);
    }

    #[test]
    fn one_run_changes_at_most_the_bound_oldest_first_and_whole_sets() {
        let sets = released(&[500, 400, 300, 200, 100, 1]);
        let planned = plan(
            &sets,
            |_| retention(None, Some(30), 1),
            &BTreeSet::new(),
            now(),
            5,
        );
        assert_eq!(ages(&sets, &planned, Change::Delete), [400, 500]);
        // A set larger than the bound goes alone rather than never.
        let planned = plan(
            &sets,
            |_| retention(None, Some(30), 1),
            &BTreeSet::new(),
            now(),
            1,
        );
        assert_eq!(ages(&sets, &planned, Change::Delete), [500]);
    }

    #[test]
    fn an_archived_set_is_not_archived_again_and_is_deleted_on_its_day() {
        let mut sets = released(&[100, 200, 1]);
        for set in &mut sets {
            if (now() - set.taken_at).num_days() >= 100 {
                for s in &mut set.snapshots {
                    s.tier = StorageTier::Archive;
                }
            }
        }
        let planned = plan(
            &sets,
            |_| retention(Some(30), Some(150), 1),
            &BTreeSet::new(),
            now(),
            100,
        );
        assert_eq!(ages(&sets, &planned, Change::Archive), Vec::<i64>::new());
        assert_eq!(ages(&sets, &planned, Change::Delete), [200]);
        let (change, at) = next_change(&sets[0], &retention(Some(30), Some(150), 1)).unwrap();
        assert_eq!(change, Change::Delete);
        assert!(at > sets[0].taken_at);
    }

    #[test]
    fn each_group_has_its_own_retention() {
        let mut all: Vec<SnapshotFacts> = Vec::new();
        for (i, d) in [400, 300, 200].iter().enumerate() {
            all.extend(snapshots(
                "api-db",
                &format!("i-{i:017x}"),
                *d,
                1,
                RescueState::Released,
            ));
            all.extend(snapshots(
                "web",
                &format!("i-{:017x}", i + 10),
                *d,
                1,
                RescueState::Released,
            ));
        }
        let sets = ReleasedSet::from_snapshots(all);
        let planned = plan(
            &sets,
            |g| {
                if g.as_str() == "web" {
                    retention(None, Some(30), 1)
                } else {
                    Retention::OFF
                }
            },
            &BTreeSet::new(),
            now(),
            100,
        );
        assert_eq!(planned.len(), 2);
        assert!(planned.iter().all(|p| sets[p.set].group.as_str() == "web"));
    }
}
