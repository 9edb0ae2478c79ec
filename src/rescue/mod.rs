//! The rescue of one terminating instance, step by step, each step in a room of its own:
//!
//! 1. find or start (here): the instance, the rescue's record if an earlier invocation took it
//!    on, its snapshots if a set exists;
//! 2. keep first (`keep`): EC2 itself keeps every attached volume (`DeleteOnTermination=false`)
//!    before anything else can go wrong;
//! 3. take the snapshots (`take`): one crash-consistent `CreateSnapshots`, single volumes again
//!    when one fails; EC2's refusals sorted by what waiting can fix;
//! 4. hold (`hold`): heartbeats, the hook's timing, the fail-safe point;
//! 5. decide (`decision`, the only place that chooses) and act, in `drive`;
//! 6. end (`end`): release with CONTINUE only when every attached volume has a completed
//!    snapshot, fail safe (keep, then ABANDON), or record that the action ended without lifeboat.
//!
//! The record of a rescue (`record`) is what this invocation knows of it. State lives in tags
//! (`crate::tags`); AWS is reached only through the ports of `crate::aws`.

pub mod decision;
mod end;
mod hold;
mod keep;
pub mod plan;
mod record;
mod take;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn, Instrument};

use crate::aws::{AwsError, AwsErrorKind, Cloud, InstanceFacts, SnapshotState, VolumeFacts};
use crate::clock::Clock;
use crate::config::{Config, OverrideError, RescueSettings};
use crate::ids::{ActionRef, ActionToken, InstanceId, VolumeId};
use crate::report::{Notice, Outcome, RescueReport};
use crate::tags::{self, InstanceRecord, KeptReason};
use crate::telemetry::Metrics;

use decision::{decide, Decision, Facts, Hold};
use hold::HookContext;
use record::descriptor_of;
pub use record::{rescues_from, snapshots_of, Rescue, SavedVolume};
use take::Attempt;

/// Attached volumes read this recently are fresh enough to check the invariant before CONTINUE
/// (a read just before the call has a window too); older ones are read again.
const ATTACHMENTS_FRESH_FOR: Duration = Duration::from_secs(60);
/// Pauses before reading the attached volumes again when `DescribeVolumes` does not list a
/// volume `DescribeInstances` maps to the instance (EC2's API is eventually consistent: "Eventual
/// consistency in the Amazon EC2 API").
const VIEWS_DISAGREE_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// A bound on one invocation's decide-and-act steps: a safety net, never reached when the
/// decision and the release check agree (each step waits, creates a snapshot or finishes).
const MAX_STEPS: u32 = 1000;

/// A termination lifeboat is asked to rescue, from the lifecycle event or found by the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub action: ActionRef,
    pub token: Option<ActionToken>,
    /// When the instance entered `Terminating:Wait`, when known (the event's time).
    pub started_at: Option<DateTime<Utc>>,
}

/// A rescue could not move forward: an AWS call failed. Nothing unsafe was done; the next
/// event, Lambda's retry or the sweep picks it up again.
#[derive(Debug, thiserror::Error)]
#[error("rescue of {instance_id} (group {group}, hook {hook}): {source}")]
pub struct RescueError {
    pub instance_id: InstanceId,
    pub group: String,
    pub hook: String,
    #[source]
    pub source: AwsError,
}

/// The error of an AWS call made for `action`.
pub fn rescue_error(action: &ActionRef, source: AwsError) -> RescueError {
    RescueError {
        instance_id: action.instance_id.clone(),
        group: action.group.to_string(),
        hook: action.hook.to_string(),
        source,
    }
}

impl RescueError {
    /// Waiting (Lambda's retry, the next sweep) can fix it.
    pub fn waiting_can_fix(&self) -> bool {
        self.source.waiting_can_fix()
    }
}

/// Carries out rescues against a `Cloud`, on a `Clock`, with a `Config`.
pub struct Rescuer<'a, C, K> {
    pub cloud: &'a C,
    pub clock: &'a K,
    pub config: &'a Config,
    pub metrics: &'a Metrics,
}

impl<C: Cloud, K: Clock> Rescuer<'_, C, K> {
    /// The termination hook fired (or the sweep found the instance waiting): resume the rescue
    /// if an earlier invocation took it on, start it if not. Waits inline up to `inline_until`.
    pub async fn on_termination(
        &self,
        termination: &Termination,
        settings: RescueSettings,
        override_rejected: Option<OverrideError>,
        inline_until: DateTime<Utc>,
    ) -> Result<RescueReport, RescueError> {
        let mut rescue = Rescue::new(termination, self.clock.now());
        let span = rescue.span();
        async {
            if let Some(err) = &override_rejected {
                self.reject_override(&rescue.action, err);
                rescue.override_rejected = Some(err.to_string());
            }
            let mut hook = HookContext::with_settings(settings.clone());
            let instance_id = rescue.action.instance_id.clone();
            let described = self
                .cloud
                .describe_instance(&instance_id)
                .await
                .map_err(|err| rescue.error(err))?;
            let record = described.as_ref().and_then(|i| self.record_of(&rescue, i));
            if let Some(record) = &record {
                rescue.adopt(record);
                rescue.note_renewal(described.as_ref().and_then(|i| tags::renewed_at(&i.tags)));
                if rescue.state.is_final() {
                    info!(state = %rescue.state, "rescue already finished (the instance's record says so); nothing to do");
                    return Ok(rescue.report(Outcome::AlreadyFinished, None));
                }
            }
            let instance = match described {
                Some(instance) if !instance.state.is_gone() => instance,
                other => {
                    warn!(state = ?other.as_ref().map(|i| &i.state), "instance is gone (or going)");
                    return self
                        .gone(&mut rescue, other.is_some(), &mut hook, inline_until)
                        .await;
                }
            };
            rescue.instance = Some(instance.clone());
            let volumes = self.attached_volumes(&mut rescue, Duration::ZERO).await?;
            // An earlier invocation took this termination on if the instance carries its
            // record or a volume carries its keep: only then can a snapshot set exist (keep
            // first comes before any snapshot), and only then is it worth a look.
            let taken_on_before = record.is_some()
                || volumes
                    .iter()
                    .any(|v| KeptReason::of(&v.tags, &instance_id).is_some());
            if taken_on_before {
                if let Some(found) = self.existing(&mut rescue).await? {
                    return self.carry_on(found, rescue, &mut hook, inline_until).await;
                }
            }
            self.start(
                &mut rescue,
                &instance,
                &volumes,
                &settings,
                !taken_on_before,
                &mut hook,
                inline_until,
            )
            .await
        }
        .instrument(span)
        .await
    }

    /// EC2 does not list the instance, and no snapshot of this rescue exists. Its API is
    /// eventually consistent, so that is no proof the instance is gone: completing the action
    /// now (ABANDON terminates it too) could let volumes die that nobody has read, let alone
    /// kept. A heartbeat tells: an action still held means the instance is there — hold it and
    /// leave the rescue to the sweep; no action means it is over.
    async fn unlisted(&self, rescue: &mut Rescue) -> Result<RescueReport, RescueError> {
        match self.cloud.heartbeat(&rescue.action).await {
            Ok(()) => {
                rescue.renewed_at = Some(self.clock.now());
                warn!("EC2 does not list the instance although its lifecycle action is held; holding it and leaving the rescue to the sweep");
                Ok(rescue.report(
                    Outcome::Waiting,
                    Some("EC2 does not list the instance yet".into()),
                ))
            }
            Err(err) if err.is(crate::aws::AwsErrorKind::NoActiveAction) => {
                self.ended(rescue).await
            }
            Err(err) => Err(rescue.error(err)),
        }
    }

    /// Moves an in-flight rescue forward without waiting inline (completion events, sweep).
    pub async fn resume(&self, mut rescue: Rescue) -> Result<RescueReport, RescueError> {
        let span = rescue.span();
        async {
            let mut hook = HookContext::default();
            let now = self.clock.now();
            self.drive(&mut rescue, &mut hook, now).await
        }
        .instrument(span)
        .await
    }

    /// This rescue as its snapshots' labels tell it, if a set exists (one `DescribeSnapshots`).
    async fn existing(&self, rescue: &mut Rescue) -> Result<Option<Rescue>, RescueError> {
        let found = self
            .cloud
            .find_snapshots(&snapshots_of([rescue.action.instance_id.clone()]))
            .await
            .map_err(|err| rescue.error(err))?;
        Ok(rescues_from(found)
            .into_iter()
            .find(|r| r.action.hook == rescue.action.hook))
    }

    /// Goes on with a rescue whose snapshots exist: nothing to do when it finished, else
    /// `drive` it with what this invocation learnt (`fresh`).
    async fn carry_on(
        &self,
        mut found: Rescue,
        fresh: Rescue,
        hook: &mut HookContext,
        inline_until: DateTime<Utc>,
    ) -> Result<RescueReport, RescueError> {
        if found.state.is_final() {
            info!(state = %found.state, "rescue already finished; nothing to do");
            self.heal_record(&mut found).await;
            return Ok(found.report(Outcome::AlreadyFinished, None));
        }
        info!(
            snapshots = found.snapshots.len(),
            "rescue already started; resuming it"
        );
        found.take_over(fresh);
        self.drive(&mut found, hook, inline_until).await
    }

    /// The instance's record of this rescue, if it carries one (a damaged one is logged and
    /// left out: the rescue starts afresh, which is safe).
    fn record_of(&self, rescue: &Rescue, instance: &InstanceFacts) -> Option<InstanceRecord> {
        match InstanceRecord::read(&instance.tags) {
            Ok(Some(record)) if record.hook == rescue.action.hook => Some(record),
            Ok(_) => None,
            Err(err) => {
                warn!(error = %err, "the instance carries a damaged lifeboat record; starting afresh");
                None
            }
        }
    }

    /// Plans the rescue, keeps every volume first, then lets `drive` take the set and see it
    /// through. `first_time`: no earlier invocation took this termination on.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        rescue: &mut Rescue,
        instance: &InstanceFacts,
        volumes: &[VolumeFacts],
        settings: &RescueSettings,
        first_time: bool,
        hook: &mut HookContext,
        inline_until: DateTime<Utc>,
    ) -> Result<RescueReport, RescueError> {
        if first_time {
            self.note_instance_store(rescue, instance).await;
        }
        let plan = plan::plan(instance, volumes, settings);
        rescue.volumes = plan
            .snapshot
            .iter()
            .map(|v| (v.id.clone(), Some(descriptor_of(v))))
            .collect();
        if let Err(err) = self.keep_first(rescue, &plan).await {
            if err.source.says_instance_gone() || err.source.is(AwsErrorKind::NotFound) {
                if let Some(report) = self.gone_meanwhile(rescue, hook, inline_until).await? {
                    return Ok(report);
                }
            }
            if err.waiting_can_fix() {
                // Nothing is started yet: hold the instance while Lambda's retry and the
                // sweep come back to keep and snapshot it.
                if let Err(hold) = self.cloud.heartbeat(&rescue.action).await {
                    warn!(error = %hold, "could not renew the hold either");
                }
                return Err(err);
            }
            error!(error = %err, "KEEP FIRST FAILED: the volumes are not kept; the rescue goes on, holding the instance until every snapshot completes");
            self.metrics.keep_first_failed(&rescue.action.group);
        }
        if first_time {
            self.metrics.rescue_started(&rescue.action.group);
            self.announce(Notice::STARTED, &rescue.report(Outcome::Waiting, None))
                .await;
        }
        info!(
            volumes = ?rescue.volumes.keys().map(VolumeId::as_str).collect::<Vec<_>>(),
            kept = rescue.kept.len(),
            "rescue started: every volume kept first; one crash-consistent snapshot set next"
        );
        self.drive(rescue, hook, inline_until).await
    }

    /// Publishes one of the rescue's events; a failure is logged and counted, never more.
    pub(super) async fn announce(&self, detail_type: &'static str, report: &RescueReport) {
        if let Err(err) = self
            .cloud
            .announce(&Notice::of_rescue(detail_type, report))
            .await
        {
            warn!(error = %err, detail_type, "could not publish the rescue's event; the rescue is not affected");
            self.metrics.event_not_published(&report.group);
        }
    }

    /// Keep-first met the instance gone, or a volume EC2 no longer knows: the instance may have
    /// gone since this invocation read it — most often another delivery of the same event
    /// released it a moment ago, and its set and record say so. EC2 is asked again; `None`
    /// when the instance is still there (the refusal stands).
    async fn gone_meanwhile(
        &self,
        rescue: &mut Rescue,
        hook: &mut HookContext,
        inline_until: DateTime<Utc>,
    ) -> Result<Option<RescueReport>, RescueError> {
        let now = self
            .cloud
            .describe_instance(&rescue.action.instance_id)
            .await
            .map_err(|err| rescue.error(err))?;
        if now.as_ref().is_some_and(|i| !i.state.is_gone()) {
            return Ok(None);
        }
        warn!(state = ?now.as_ref().map(|i| &i.state), "the instance went while the rescue was starting");
        rescue.attached = None;
        self.gone(rescue, now.is_some(), hook, inline_until)
            .await
            .map(Some)
    }

    /// The instance is gone or going (`listed`: EC2 still lists it, shutting down or
    /// terminated). Gone after an earlier invocation released it, most often: its set says.
    async fn gone(
        &self,
        rescue: &mut Rescue,
        listed: bool,
        hook: &mut HookContext,
        inline_until: DateTime<Utc>,
    ) -> Result<RescueReport, RescueError> {
        rescue.instance_gone = true;
        match self.existing(rescue).await? {
            Some(found) => {
                self.carry_on(found, rescue.clone(), hook, inline_until)
                    .await
            }
            None if !listed => self.unlisted(rescue).await,
            None => self.drive(rescue, hook, inline_until).await,
        }
    }

    /// The volumes attached now, read again unless the last read is younger than `max_age`.
    async fn attached_volumes(
        &self,
        rescue: &mut Rescue,
        max_age: Duration,
    ) -> Result<Vec<VolumeFacts>, RescueError> {
        if rescue.instance_gone {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        if let Some((at, volumes)) = &rescue.attached {
            if now - *at <= to_chrono(max_age) {
                return Ok(volumes.clone());
            }
        }
        let mut pauses = VIEWS_DISAGREE_PAUSES.iter();
        let volumes = loop {
            let volumes = self
                .cloud
                .attached_volumes(&rescue.action.instance_id)
                .await
                .map_err(|err| rescue.error(err))?;
            let Some(unseen) = rescue
                .instance
                .as_ref()
                .and_then(|instance| unseen_volumes(instance, &volumes))
            else {
                break volumes;
            };
            let Some(pause) = pauses.next() else {
                // Nothing is decided on a list that may lack a volume: Lambda's retry and the
                // sweep come back, holding the instance meanwhile.
                return Err(rescue.error(AwsError::new(
                    "DescribeVolumes",
                    AwsErrorKind::Unavailable,
                    unseen,
                )));
            };
            warn!(
                unseen,
                "EC2's views of the instance's volumes disagree; reading them again"
            );
            self.clock.sleep(*pause).await;
        };
        rescue.attached = Some((self.clock.now(), volumes.clone()));
        Ok(volumes)
    }

    async fn note_instance_store(&self, rescue: &mut Rescue, instance: &InstanceFacts) {
        match self
            .cloud
            .instance_store_disks(&instance.instance_type)
            .await
        {
            Ok(disks) => {
                rescue.instance_store_disks = disks;
                if let Some(n) = disks.filter(|n| *n > 0) {
                    warn!(
                        instance_type = instance.instance_type,
                        disks = n,
                        "instance-store disks cannot be snapshotted; their data ends with the instance"
                    );
                }
            }
            Err(err) => {
                warn!(error = %err, "could not learn whether the instance type has instance-store disks")
            }
        }
    }

    fn reject_override(&self, action: &ActionRef, err: &OverrideError) {
        error!(
            key = err.key,
            error = %err,
            "per-group override rejected; rescuing with the safest settings (every volume, boot volume included)"
        );
        self.metrics.override_rejected(&action.group);
    }

    /// The rescue's loop: check, decide, act, until released, failed safe, ended, or time to
    /// leave the rest to the completion event and the sweep.
    async fn drive(
        &self,
        rescue: &mut Rescue,
        hook: &mut HookContext,
        inline_until: DateTime<Utc>,
    ) -> Result<RescueReport, RescueError> {
        let mut round = 0u32;
        let mut blocked = false;
        let mut refused: Option<String> = None;
        for _ in 0..MAX_STEPS {
            if rescue.state.is_final() {
                // Another invocation (the completion event's, most often) finished it meanwhile.
                info!(state = %rescue.state, "rescue finished by another invocation");
                return Ok(rescue.report(Outcome::AlreadyFinished, None));
            }
            let progress = rescue.progress();
            let releasable = !rescue.instance_gone
                && progress
                    .iter()
                    .all(|v| v.attempts.contains(&SnapshotState::Completed));
            let now = self.clock.now();
            // When the account's API budget is busy (this environment had to wait for a
            // turn), an invocation does not hold on waiting for snapshots: the completion event
            // and the sweep see them through, and the concurrency goes to other rescues.
            let inline_until = if self.cloud.congested() {
                inline_until.min(now)
            } else {
                inline_until
            };
            let next_pause = self.config.poll.pause(round);
            // The hook's timing matters only when the hold could lapse under the shortest
            // timeout AWS allows, or when this invocation leaves the rescue to others.
            let leaving = now + to_chrono(next_pause) > inline_until;
            let hold_is_fresh = rescue.renewed_at.is_some_and(|renewed| {
                now + to_chrono(next_pause) - renewed
                    < to_chrono(decision::MIN_HEARTBEAT_TIMEOUT / 2)
            });
            if !releasable && (leaving || !hold_is_fresh) {
                self.load_hook(rescue, hook).await;
            }
            let hook_facts = hook.facts();
            let facts = Facts {
                now,
                volumes: progress,
                max_attempts: hook.max_attempts(self.config),
                instance_gone: rescue.instance_gone,
                blocked,
                refused: refused.clone(),
                fail_safe_at: hook_facts.map(|h| self.fail_safe_at(rescue, h)),
                hold: Hold {
                    renewed_at: rescue.renewed_at,
                    heartbeat_timeout: hook_facts.map(|h| h.heartbeat_timeout),
                },
                inline_until,
                next_pause,
                sweep_interval: self.config.sweep_interval,
            };
            let attempt = match decide(&facts) {
                Decision::Release => {
                    if let Some(report) = self.release(rescue).await? {
                        return Ok(report);
                    }
                    continue;
                }
                Decision::TakeSet => self.take_set(rescue).await?,
                Decision::Retry(volumes) => self.retry(rescue, &volumes).await?,
                Decision::FailSafe(reason) => return self.fail_safe(rescue, reason).await,
                Decision::Wait(wait) => {
                    if wait.heartbeat {
                        let record = hook_facts.is_some_and(|h| {
                            decision::renewal_worth_recording(
                                h.heartbeat_timeout,
                                self.config.sweep_interval,
                            )
                        });
                        if let Some(report) = self.renew_hold(rescue, record).await? {
                            return Ok(report);
                        }
                    }
                    let Some(pause) = wait.pause else {
                        info!(
                            set_taken = !rescue.snapshots.is_empty(),
                            "leaving the rest to the completion event and the sweep; the hold lasts until the sweep is back"
                        );
                        return Ok(rescue.report(Outcome::Waiting, None));
                    };
                    self.clock.sleep(pause).await;
                    round += 1;
                    blocked = false;
                    self.refresh(rescue).await?;
                    continue;
                }
            };
            match attempt {
                Attempt::Made => {}
                Attempt::Blocked => {
                    blocked = true;
                    self.record_on_instance(rescue).await;
                }
                Attempt::Refused(why) => refused = Some(why),
            }
        }
        error!("the rescue made no progress in {MAX_STEPS} steps; leaving it to the sweep");
        Ok(rescue.report(
            Outcome::Waiting,
            Some("no progress in this invocation".into()),
        ))
    }

    /// One `DescribeSnapshots` for the whole rescue, however many volumes.
    async fn refresh(&self, rescue: &mut Rescue) -> Result<(), RescueError> {
        let found = self
            .cloud
            .find_snapshots(&snapshots_of([rescue.action.instance_id.clone()]))
            .await
            .map_err(|err| rescue.error(err))?;
        rescue.absorb_all(found);
        Ok(())
    }
}

/// What `DescribeVolumes` (`attached`) leaves out of the instance as `DescribeInstances` saw it,
/// in words; `None` when the two agree. A rescue decided on a list lacking a volume could
/// release the instance with that volume unsaved, and an EBS-backed instance without a single
/// attached volume is such a list.
fn unseen_volumes(instance: &InstanceFacts, attached: &[VolumeFacts]) -> Option<String> {
    let unseen: Vec<&str> = instance
        .mapped_volumes
        .iter()
        .filter(|mapped| !attached.iter().any(|v| &v.id == *mapped))
        .map(VolumeId::as_str)
        .collect();
    if !unseen.is_empty() {
        return Some(format!(
            "DescribeVolumes does not list {}, which the instance's block device mapping names",
            unseen.join(" ")
        ));
    }
    (instance.ebs_backed && attached.is_empty())
        .then(|| "DescribeVolumes lists no volume attached to an EBS-backed instance".to_owned())
}

pub fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests;
