//! A copy of each released set in another Region (opt-in, `LIFEBOAT_COPY_REGION`). It never
//! holds an instance: the rescue was released when its local set completed, and the copy
//! follows in the next aftercare runs. Each source snapshot records its copy in tags
//! (`lifeboat:copy`, `lifeboat:copy-state`, `lifeboat:copy-attempts`); a copy that failed is
//! started again up to three times, then left failed — logged, counted (`CopiesFailed`, alarmed
//! by the template) and visible in `lifeboat list`. At most 20 copies are pending per destination
//! Region ("Amazon EBS endpoints and quotas"): a run starts no more than that leaves room for,
//! and stops at EC2's `ResourceLimitExceeded`. An archived snapshot is not copied (EC2 copies
//! only the standard tier).

use std::collections::BTreeSet;

use serde::Serialize;
use tracing::{error, info, warn};

use super::{AftercareReport, ReleasedSet};
use crate::aws::{AwsError, AwsErrorKind, Cloud, SnapshotFacts, SnapshotState, StorageTier, Tags};
use crate::config::Config;
use crate::ids::{ResourceId, SnapshotId};
use crate::report::Notice;
use crate::tags::{self, MAX_TAGS_PER_RESOURCE};
use crate::telemetry::Metrics;

pub const PENDING: &str = "pending";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";
const MAX_ATTEMPTS: u32 = 3;
/// "Amazon EBS endpoints and quotas" (AWS General Reference): concurrent snapshot copies per
/// destination Region.
pub const MAX_PENDING_PER_REGION: usize = 20;

/// A set whose copy is complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetCopied {
    pub group: String,
    pub instance_id: String,
    pub taken_at: String,
    pub region: String,
    /// (snapshot here, its copy there)
    pub copies: Vec<(String, String)>,
}

fn state_of(snapshot: &SnapshotFacts) -> Option<&str> {
    snapshot.tags.get(tags::COPY_STATE).map(String::as_str)
}

fn attempts_of(snapshot: &SnapshotFacts) -> u32 {
    snapshot
        .tags
        .get(tags::COPY_ATTEMPTS)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// The copy a source snapshot records, if it is in `region`.
fn copy_of(snapshot: &SnapshotFacts, region: &str) -> Option<SnapshotId> {
    let (there, id) = snapshot.tags.get(tags::COPY)?.split_once('/')?;
    (there == region)
        .then(|| SnapshotId::parse(id).ok())
        .flatten()
}

/// The tags a copy carries: the source's lifeboat label (so `lifeboat list --region` and
/// `lifeboat restore --region` find the set there), and what it copies (the adapter adds the
/// source's Region); within EC2's 50.
pub fn copy_tags(source: &SnapshotFacts) -> Tags {
    let mut tags: Tags = source
        .tags
        .iter()
        .filter(|(k, _)| k.starts_with("lifeboat:") && !k.starts_with(tags::COPY))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.insert(tags::COPY_OF.into(), source.id.to_string());
    if let Some(volume) = &source.volume_id {
        tags.insert(tags::COPY_VOLUME.into(), volume.to_string());
    }
    // Room for the Region the adapter adds.
    if tags.len() + 1 > MAX_TAGS_PER_RESOURCE {
        let own = source
            .volume_id
            .as_ref()
            .map(|v| format!("{}{v}", tags::VOLUME_PREFIX));
        tags.retain(|k, _| !k.starts_with(tags::VOLUME_PREFIX) || Some(k) == own.as_ref());
    }
    tags
}

/// One run's copy work: first how the copies under way stand, then new copies.
pub(super) async fn copy_sets<C: Cloud>(
    cloud: &C,
    config: &Config,
    sets: &[ReleasedSet],
    changed: &BTreeSet<usize>,
    metrics: &Metrics,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut AftercareReport,
) -> Result<(), AwsError> {
    let Some(copy) = &config.copy else {
        return Ok(());
    };
    let region = copy.region.as_str();
    let under_way: Vec<(usize, &SnapshotFacts, SnapshotId)> = sets
        .iter()
        .enumerate()
        .flat_map(|(i, set)| set.snapshots.iter().map(move |s| (i, s)))
        .filter(|(_, s)| state_of(s) == Some(PENDING))
        .filter_map(|(i, s)| copy_of(s, region).map(|c| (i, s, c)))
        .collect();
    let mut in_flight = 0;
    let mut done_now: BTreeSet<usize> = BTreeSet::new();
    let mut completed: BTreeSet<SnapshotId> = BTreeSet::new();
    // Failed this run: made again in this run's starts, as any failed copy.
    let mut failed_now: BTreeSet<SnapshotId> = BTreeSet::new();
    if !under_way.is_empty() {
        let ids: Vec<SnapshotId> = under_way.iter().map(|(_, _, c)| c.clone()).collect();
        let found = cloud.find_copies(&ids).await?;
        for (i, source, copy_id) in &under_way {
            let state = found.iter().find(|f| f.id == *copy_id).map(|f| f.state);
            let started_at = source
                .tags
                .get(tags::COPY_STARTED_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            // Not listed an hour after it started: not EC2's lag (seconds) but a copy gone.
            let gone = state.is_none()
                && started_at.is_none_or(|at| {
                    now - at.with_timezone(&chrono::Utc) > chrono::Duration::hours(1)
                });
            let settled = match state {
                Some(SnapshotState::Completed) => COMPLETED,
                Some(SnapshotState::Error) => FAILED,
                None if gone => FAILED,
                // Pending, or not listed yet (EC2's eventual consistency): still under way.
                _ => {
                    in_flight += 1;
                    continue;
                }
            };
            let mark = Tags::from([(tags::COPY_STATE.to_owned(), settled.to_owned())]);
            if let Err(err) = cloud
                .tag(&[ResourceId::Snapshot(source.id.clone())], &mark)
                .await
            {
                warn!(snapshot_id = %source.id, error = %err, "could not record how the copy stands; the next run looks again");
                continue;
            }
            if settled == COMPLETED {
                completed.insert(source.id.clone());
                done_now.insert(*i);
            } else {
                failed_now.insert(source.id.clone());
                error!(snapshot_id = %source.id, copy_id = %copy_id, region, attempts = attempts_of(source), "the copy to the other Region failed; it is started again while attempts remain");
                metrics.copy_failed(&sets[*i].group);
                report.copy_failures += 1;
            }
        }
    }
    for i in done_now {
        let set = &sets[i];
        let all_copied = set
            .snapshots
            .iter()
            .all(|s| state_of(s) == Some(COMPLETED) || completed.contains(&s.id));
        if !all_copied {
            continue;
        }
        let copied = SetCopied {
            group: set.group.to_string(),
            instance_id: set.instance_id.to_string(),
            taken_at: tags::timestamp(set.taken_at),
            region: region.to_owned(),
            copies: set
                .snapshots
                .iter()
                .filter_map(|s| copy_of(s, region).map(|c| (s.id.to_string(), c.to_string())))
                .collect(),
        };
        info!(asg = %set.group, instance_id = %set.instance_id, region, "the set's copy in the other Region is complete");
        if let Err(err) = cloud.announce(&Notice::of_copy(&copied)).await {
            warn!(error = %err, "could not publish the set's copy event");
        }
        report.copied.push(copied);
    }

    // New copies, the newest sets first (the likeliest to be needed), whole sets at a time.
    let mut order: Vec<usize> = (0..sets.len()).filter(|i| !changed.contains(i)).collect();
    order.sort_by_key(|i| std::cmp::Reverse(sets[*i].taken_at));
    let mut budget = config.retention_max_changes;
    'sets: for i in order {
        let set = &sets[i];
        let copyable = set
            .snapshots
            .iter()
            .all(|s| s.state == SnapshotState::Completed && s.tier == StorageTier::Standard);
        if !copyable {
            continue;
        }
        let wanted: Vec<&SnapshotFacts> = set
            .snapshots
            .iter()
            .filter(|s| {
                let state = if failed_now.contains(&s.id) {
                    Some(FAILED)
                } else {
                    state_of(s)
                };
                match state {
                    None => true,
                    Some(FAILED) => attempts_of(s) < MAX_ATTEMPTS,
                    Some(_) => false,
                }
            })
            .collect();
        for source in wanted {
            if in_flight >= MAX_PENDING_PER_REGION || budget == 0 {
                break 'sets;
            }
            let attempt = attempts_of(source) + 1;
            let mark = match cloud.copy_snapshot(&source.id, &copy_tags(source)).await {
                Ok(copy_id) => {
                    in_flight += 1;
                    budget -= 1;
                    report.copies_started += 1;
                    Tags::from([
                        (tags::COPY.to_owned(), format!("{region}/{copy_id}")),
                        (tags::COPY_STATE.to_owned(), PENDING.to_owned()),
                        (tags::COPY_ATTEMPTS.to_owned(), attempt.to_string()),
                        (tags::COPY_STARTED_AT.to_owned(), tags::timestamp(now)),
                    ])
                }
                Err(err) if err.is(AwsErrorKind::QuotaExceeded) || err.waiting_can_fix() => {
                    warn!(error = %err, region, "EC2 takes no more copies for now; the next run goes on");
                    break 'sets;
                }
                Err(err) => {
                    error!(snapshot_id = %source.id, error = %err, region, attempt, "EC2 refused the copy to the other Region");
                    metrics.copy_failed(&set.group);
                    report.copy_failures += 1;
                    report.errors.push(err.to_string());
                    Tags::from([
                        (tags::COPY_STATE.to_owned(), FAILED.to_owned()),
                        (tags::COPY_ATTEMPTS.to_owned(), attempt.to_string()),
                    ])
                }
            };
            if let Err(err) = cloud
                .tag(&[ResourceId::Snapshot(source.id.clone())], &mark)
                .await
            {
                warn!(snapshot_id = %source.id, error = %err, "could not record the copy on its source; the next run may start another");
            }
        }
    }
    Ok(())
}
