//! The sweep, run on a schedule: it moves every rescue in flight forward (heartbeat, release,
//! retry, fail safe) and takes on every instance of a served group that waits for its
//! termination hook (`Terminating:Wait`, or `Warmed:Terminating:Wait` in a warm pool) with no
//! snapshot set — its lifecycle event was lost, or EC2 has refused the set so far (the rescue's
//! record then lives on the instance, and the sweep holds it). Its reads are batched: one
//! paginated `DescribeSnapshots` for all rescues in flight, one paginated
//! `DescribeAutoScalingGroups` (and `DescribeWarmPool` for groups with a warm pool), one batched
//! `DescribeSnapshots` for the waiting instances.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::aws::{AwsError, Cloud, GroupScope, SnapshotQuery, WaitingInstance};
use crate::clock::Clock;
use crate::ids::{ActionRef, GroupName, HookName, InstanceId};
use crate::report::{EventKind, Report, RescueReport};
use crate::rescue::{
    rescues_from, snapshots_of, to_chrono, Rescue, RescueError, Rescuer, Termination,
};
use crate::tags::{self, RescueState};

/// One unit of the sweep's work.
enum Work {
    Resume(Box<Rescue>),
    Start(Termination, Option<String>),
}

/// Runs one sweep; stops taking on new work at `stop_at` and leaves the rest to the next one.
pub async fn sweep<C: Cloud, K: Clock>(
    rescuer: &Rescuer<'_, C, K>,
    stop_at: DateTime<Utc>,
) -> Result<Report, AwsError> {
    let config = rescuer.config;
    // One sweep at a time: this one leaves new work to the next once three quarters of its
    // interval are gone, so two never start work on the same rescues at once (and spend the
    // account's budget twice).
    let stop_at = stop_at.min(rescuer.clock.now() + to_chrono(config.sweep_interval * 3 / 4));
    let in_flight: Vec<Rescue> = rescues_from(
        rescuer
            .cloud
            .find_snapshots(&SnapshotQuery::Tagged {
                key: tags::STATE.into(),
                values: vec![RescueState::Pending.as_str().into()],
            })
            .await?,
    )
    .into_iter()
    .filter(|r| config.serves_hook(&r.action.hook) && config.serves_group(&r.action.group))
    .collect();
    let waiting = waiting_instances(rescuer).await?;
    let orphans = orphans(rescuer, &in_flight, &waiting).await?;
    // A rescue whose instance Auto Scaling no longer lists as waiting: its action is over (or
    // the listing lags). Its hold cannot be taken as fresh: the heartbeat tells.
    let in_flight: Vec<Rescue> = in_flight
        .into_iter()
        .map(|mut rescue| {
            if !waiting
                .iter()
                .any(|w| w.instance_id == rescue.action.instance_id)
            {
                rescue.doubt_hold();
            }
            rescue
        })
        .collect();
    info!(
        in_flight = in_flight.len(),
        orphans = orphans.len(),
        "sweep"
    );

    // What is most at risk first, as a sweep may run out of time before the end of its work (a
    // mass termination): the waiting instances nobody has taken on (their volumes not kept,
    // their hold not renewed by lifeboat), then the rescues in flight, the oldest hold first.
    let mut in_flight = in_flight;
    in_flight.sort_by_key(Rescue::hold_renewed_at);
    let work = orphans
        .into_iter()
        .map(|(t, metadata)| Work::Start(t, metadata))
        .chain(in_flight.into_iter().map(|r| Work::Resume(Box::new(r))));
    let results: Vec<Result<Option<RescueReport>, RescueError>> = stream::iter(work)
        .map(|work| async move {
            if rescuer.clock.now() >= stop_at {
                return Ok(None);
            }
            match work {
                Work::Resume(rescue) => rescuer.resume(*rescue).await.map(Some),
                Work::Start(termination, metadata) => {
                    warn!(instance_id = %termination.action.instance_id, asg = %termination.action.group,
                        "instance waits for its termination hook with no snapshot set (its event was lost, or EC2 refused the set so far); starting or resuming its rescue");
                    let (settings, rejected) = config.settings_for(metadata.as_deref());
                    let now = rescuer.clock.now();
                    rescuer.on_termination(&termination, settings, rejected, now).await.map(Some)
                }
            }
        })
        .buffer_unordered(config.sweep_concurrency)
        .collect()
        .await;

    let mut report = Report::rescues(EventKind::Sweep, Vec::new());
    let mut deferred = 0;
    for result in results {
        match result {
            Ok(Some(rescue)) => report.rescues.push(rescue),
            Ok(None) => deferred += 1,
            Err(err) => {
                warn!(error = %err, "sweep could not move a rescue forward; the next sweep tries again");
                report.errors.push(err.to_string());
            }
        }
    }
    if deferred > 0 {
        report.note = Some(format!(
            "{deferred} rescues left to the next sweep (out of time)"
        ));
    }
    Ok(report)
}

/// The instances the served groups hold for their termination hooks.
async fn waiting_instances<C: Cloud, K: Clock>(
    rescuer: &Rescuer<'_, C, K>,
) -> Result<Vec<WaitingInstance>, AwsError> {
    let config = rescuer.config;
    let scope = if config.groups.is_empty() {
        GroupScope::All
    } else {
        GroupScope::Named(config.groups.clone())
    };
    Ok(rescuer
        .cloud
        .waiting_instances(&scope)
        .await?
        .into_iter()
        .filter(|w| config.serves_group(&w.group))
        .collect())
}

/// The waiting instances of served groups that have one of lifeboat's hooks and no rescue,
/// with the hook's metadata (the group's overrides).
async fn orphans<C: Cloud, K: Clock>(
    rescuer: &Rescuer<'_, C, K>,
    in_flight: &[Rescue],
    waiting: &[WaitingInstance],
) -> Result<Vec<(Termination, Option<String>)>, AwsError> {
    let config = rescuer.config;
    let known: BTreeSet<(&InstanceId, &HookName)> = in_flight
        .iter()
        .map(|r| (&r.action.instance_id, &r.action.hook))
        .collect();
    let mut candidates: Vec<(GroupName, InstanceId, HookName, Option<String>)> = Vec::new();
    let mut hooks_of_group: BTreeMap<GroupName, Vec<(HookName, Option<String>)>> = BTreeMap::new();
    for waiting in waiting {
        if !hooks_of_group.contains_key(&waiting.group) {
            let mut ours = Vec::new();
            for hook in &config.hooks {
                if let Some(facts) = rescuer.cloud.hook_facts(&waiting.group, hook).await? {
                    ours.push((hook.clone(), facts.notification_metadata));
                }
            }
            hooks_of_group.insert(waiting.group.clone(), ours);
        }
        for (hook, metadata) in &hooks_of_group[&waiting.group] {
            if !known.contains(&(&waiting.instance_id, hook)) {
                candidates.push((
                    waiting.group.clone(),
                    waiting.instance_id.clone(),
                    hook.clone(),
                    metadata.clone(),
                ));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // A rescue that finished (released, failed, ended) while another hook still holds the
    // instance is not an orphan: one batched look at the candidates' snapshots.
    let finished: BTreeSet<(InstanceId, HookName)> = rescues_from(
        rescuer
            .cloud
            .find_snapshots(&snapshots_of(candidates.iter().map(|c| c.1.clone())))
            .await?,
    )
    .into_iter()
    .map(|r| (r.action.instance_id, r.action.hook))
    .collect();
    Ok(candidates
        .into_iter()
        .filter(|(_, instance, hook, _)| !finished.contains(&(instance.clone(), hook.clone())))
        .map(|(group, instance_id, hook, metadata)| {
            (
                Termination {
                    action: ActionRef {
                        group,
                        hook,
                        instance_id,
                    },
                    token: None,
                    started_at: None,
                },
                metadata,
            )
        })
        .collect())
}
