//! The rescue of one terminating instance: find or start its snapshot set, hold the instance,
//! check the set, and carry out what `decision::decide` chooses — release with CONTINUE only
//! when every attached volume has a completed snapshot, take a failed volume again, or fail
//! safe (keep the unsaved volumes, then ABANDON). State lives in the snapshots' tags (`label`);
//! AWS is reached only through the ports of `crate::aws`.

pub mod decision;
pub mod label;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn, Instrument};

use crate::aws::{
    ActionRef, ActionResult, AwsError, AwsErrorKind, Cloud, HookFacts, InstanceFacts,
    SnapshotFacts, SnapshotQuery, SnapshotRequest, SnapshotState, VolumeFacts,
};
use crate::clock::Clock;
use crate::config::{Config, OverrideError, RescueSettings};
use crate::ids::{ActionToken, InstanceId, SnapshotId, VolumeId};
use crate::report::{KeptVolume, Outcome, RescueReport, VolumeReport};
use crate::telemetry::Metrics;

use decision::{decide, Decision, Facts, FailSafeReason, Hold, VolumeProgress};
use label::{RescueState, SnapshotLabel, VolumeDescriptor};

/// How far EC2's clock (a snapshot's start time) and lifeboat's may disagree.
const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Attached volumes read this recently are fresh enough to check the invariant before CONTINUE
/// (a read just before the call has a window too); older ones are read again.
const ATTACHMENTS_FRESH_FOR: Duration = Duration::from_secs(60);
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
    pub fn is_transient(&self) -> bool {
        self.source.is_transient()
    }
}

/// One rescue as this invocation knows it: its label, its snapshots and what it learnt.
#[derive(Debug, Clone)]
pub struct Rescue {
    pub action: ActionRef,
    token: Option<ActionToken>,
    started_at: DateTime<Utc>,
    action_started_at: Option<DateTime<Utc>>,
    pub state: RescueState,
    /// The volumes that need a completed snapshot, with what they looked like.
    volumes: BTreeMap<VolumeId, VolumeDescriptor>,
    snapshots: BTreeMap<SnapshotId, SnapshotFacts>,
    renewed_at: Option<DateTime<Utc>>,
    /// The volumes attached to the instance, and when EC2 said so.
    attached: Option<(DateTime<Utc>, Vec<VolumeFacts>)>,
    instance_gone: bool,
    instance_store_disks: Option<u32>,
    kept: Vec<KeptVolume>,
    override_rejected: Option<String>,
}

impl Rescue {
    fn new(termination: &Termination, now: DateTime<Utc>) -> Self {
        Self {
            action: termination.action.clone(),
            token: termination.token.clone(),
            started_at: now,
            action_started_at: termination.started_at,
            state: RescueState::Pending,
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            // The hook's timer started when the instance began to wait.
            renewed_at: termination.started_at,
            attached: None,
            instance_gone: false,
            instance_store_disks: None,
            kept: Vec::new(),
            override_rejected: None,
        }
    }

    fn from_label(label: &SnapshotLabel) -> Self {
        Self {
            action: ActionRef {
                group: label.group.clone(),
                hook: label.hook.clone(),
                instance_id: label.instance_id.clone(),
            },
            token: label.token.clone(),
            started_at: label.started_at,
            action_started_at: label.action_started_at,
            state: label.state,
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            renewed_at: None,
            attached: None,
            instance_gone: false,
            instance_store_disks: None,
            kept: Vec::new(),
            override_rejected: None,
        }
    }

    /// Takes in a snapshot of this rescue (new, or a fresher view of a known one).
    fn absorb(&mut self, snapshot: SnapshotFacts, label: &SnapshotLabel) {
        // The latest start wins: a label claiming an earlier start (stale or forged) cannot
        // make an old snapshot count.
        self.started_at = self.started_at.max(label.started_at);
        self.action_started_at = self.action_started_at.max(label.action_started_at);
        if self.token.is_none() {
            self.token = label.token.clone();
        }
        self.state = most_final(self.state, label.state);
        for (id, descriptor) in &label.volumes {
            self.volumes
                .entry(id.clone())
                .or_insert_with(|| descriptor.clone());
        }
        self.snapshots.insert(snapshot.id.clone(), snapshot);
    }

    fn key_matches(&self, label: &SnapshotLabel) -> bool {
        label.instance_id == self.action.instance_id && label.hook == self.action.hook
    }

    /// The snapshots that count for `volume`: of that volume, started after this rescue began
    /// (less clock skew), oldest first. A snapshot that merely carries the tags — an old one,
    /// or one of another volume — never counts.
    fn attempts(&self, volume: &VolumeId) -> Vec<&SnapshotFacts> {
        let floor = self.started_at - chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        let mut attempts: Vec<&SnapshotFacts> = self
            .snapshots
            .values()
            .filter(|s| s.volume_id.as_ref() == Some(volume))
            .filter(|s| s.start_time.is_some_and(|t| t >= floor))
            .collect();
        attempts.sort_by_key(|s| (s.start_time, s.id.clone()));
        attempts
    }

    fn saved(&self, volume: &VolumeId) -> bool {
        self.attempts(volume)
            .iter()
            .any(|s| s.state == SnapshotState::Completed)
    }

    fn progress(&self) -> Vec<VolumeProgress> {
        self.volumes
            .keys()
            .map(|id| VolumeProgress {
                volume_id: id.clone(),
                attempts: self.attempts(id).iter().map(|s| s.state).collect(),
            })
            .collect()
    }

    /// The label of a new snapshot of this rescue.
    fn label(
        &self,
        set: String,
        attempt: u32,
        volumes: BTreeMap<VolumeId, VolumeDescriptor>,
    ) -> SnapshotLabel {
        SnapshotLabel {
            instance_id: self.action.instance_id.clone(),
            group: self.action.group.clone(),
            hook: self.action.hook.clone(),
            token: self.token.clone(),
            state: RescueState::Pending,
            started_at: self.started_at,
            action_started_at: self.action_started_at,
            set,
            attempt,
            volumes,
        }
    }

    fn description(&self) -> String {
        format!(
            "lifeboat: {} of Auto Scaling group {} (hook {}) before termination",
            self.action.instance_id, self.action.group, self.action.hook
        )
        .chars()
        .take(255)
        .collect()
    }

    fn error(&self, source: AwsError) -> RescueError {
        rescue_error(&self.action, source)
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "rescue",
            instance_id = %self.action.instance_id,
            asg = %self.action.group,
            hook = %self.action.hook,
            action = %self.token.as_ref().map(ToString::to_string).unwrap_or_default(),
        )
    }

    /// When this rescue began (its snapshots count from then on).
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// When the instance began to wait in `Terminating:Wait`, when an event said so.
    pub fn action_started_at(&self) -> Option<DateTime<Utc>> {
        self.action_started_at
    }

    /// Every volume of the rescue with the snapshot that stands for it: completed over running
    /// over failed, the latest of a kind; only snapshots that count (see `attempts`).
    pub fn saved_volumes(&self) -> Vec<SavedVolume<'_>> {
        self.volumes
            .iter()
            .map(|(id, descriptor)| {
                let attempts = self.attempts(id);
                let best = attempts.iter().copied().max_by_key(|s| {
                    let rank = match s.state {
                        SnapshotState::Completed => 3,
                        SnapshotState::Pending | SnapshotState::Other => 2,
                        SnapshotState::Error => 1,
                    };
                    (rank, s.start_time)
                });
                SavedVolume {
                    volume_id: id,
                    descriptor,
                    snapshot: best,
                    attempts: attempts.len() as u32,
                }
            })
            .collect()
    }

    pub fn report(&self, outcome: Outcome, reason: Option<String>) -> RescueReport {
        let volumes = self
            .saved_volumes()
            .into_iter()
            .map(|saved| VolumeReport {
                device: saved.descriptor.device.clone(),
                volume_id: saved.volume_id.clone(),
                snapshot_id: saved.snapshot.map(|s| s.id.clone()),
                state: saved.snapshot.map(|s| s.state),
                progress: saved.snapshot.and_then(|s| s.progress.clone()),
                attempts: saved.attempts,
            })
            .collect();
        RescueReport {
            instance_id: self.action.instance_id.clone(),
            group: self.action.group.clone(),
            hook: self.action.hook.clone(),
            outcome,
            state: self.state,
            reason,
            volumes,
            kept_volumes: self.kept.clone(),
            instance_store_disks: self.instance_store_disks,
            seconds_to_release: None,
            override_rejected: self.override_rejected.clone(),
        }
    }
}

/// A volume of a rescue, what it looked like, and the snapshot that stands for it.
#[derive(Debug, Clone, Copy)]
pub struct SavedVolume<'a> {
    pub volume_id: &'a VolumeId,
    pub descriptor: &'a VolumeDescriptor,
    /// `None` when no snapshot of this volume counts yet.
    pub snapshot: Option<&'a SnapshotFacts>,
    pub attempts: u32,
}

/// Of two states seen on one rescue's snapshots, the one that says more: a final state beats
/// pending, failed beats released beats ended.
fn most_final(a: RescueState, b: RescueState) -> RescueState {
    let rank = |s: RescueState| match s {
        RescueState::Pending => 0,
        RescueState::Ended => 1,
        RescueState::Released => 2,
        RescueState::Failed => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Groups snapshots into the rescues their labels name. Snapshots without lifeboat's label are
/// left out; a damaged label is logged and left out.
pub fn rescues_from(snapshots: Vec<SnapshotFacts>) -> Vec<Rescue> {
    let mut rescues: Vec<Rescue> = Vec::new();
    for snapshot in snapshots {
        let label = match SnapshotLabel::read(&snapshot.tags) {
            Ok(Some(label)) => label,
            Ok(None) => continue,
            Err(err) => {
                warn!(snapshot_id = %snapshot.id, error = %err, "snapshot carries a damaged lifeboat label; it does not count");
                continue;
            }
        };
        match rescues.iter_mut().find(|r| r.key_matches(&label)) {
            Some(rescue) => rescue.absorb(snapshot, &label),
            None => {
                let mut rescue = Rescue::from_label(&label);
                rescue.absorb(snapshot, &label);
                rescues.push(rescue);
            }
        }
    }
    rescues
}

/// The query for every snapshot of these instances' rescues.
pub fn snapshots_of(instances: impl IntoIterator<Item = InstanceId>) -> SnapshotQuery {
    SnapshotQuery::Tagged {
        key: label::INSTANCE_ID.into(),
        values: instances
            .into_iter()
            .map(|i| i.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}

/// The hook as far as one rescue needs it: its timing and the group's settings, looked up once
/// and only when needed.
struct HookContext {
    facts: Option<Option<HookFacts>>,
    settings: Option<RescueSettings>,
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
    /// if its snapshots exist, start it if not. Waits inline up to `inline_until`.
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
            let found = self
                .cloud
                .find_snapshots(&snapshots_of([termination.action.instance_id.clone()]))
                .await
                .map_err(|err| rescue.error(err))?;
            let existing = rescues_from(found)
                .into_iter()
                .find(|r| r.action.hook == termination.action.hook);
            let mut hook = HookContext {
                facts: None,
                settings: Some(settings.clone()),
            };
            match existing {
                Some(mut found) if found.state.is_final() => {
                    info!(state = %found.state, "rescue already finished; nothing to do");
                    self.heal_record(&mut found).await;
                    Ok(found.report(Outcome::AlreadyFinished, None))
                }
                Some(mut found) => {
                    info!(
                        snapshots = found.snapshots.len(),
                        "rescue already started; resuming it"
                    );
                    found.override_rejected = rescue.override_rejected.take();
                    if found.action_started_at.is_none() {
                        found.action_started_at = termination.started_at;
                    }
                    self.drive(&mut found, &mut hook, inline_until).await
                }
                None => {
                    self.start(&mut rescue, &settings, &mut hook, inline_until)
                        .await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Moves an in-flight rescue forward without waiting inline (completion events, sweep).
    pub async fn resume(&self, mut rescue: Rescue) -> Result<RescueReport, RescueError> {
        let span = rescue.span();
        async {
            let mut hook = HookContext {
                facts: None,
                settings: None,
            };
            let now = self.clock.now();
            self.drive(&mut rescue, &mut hook, now).await
        }
        .instrument(span)
        .await
    }

    async fn start(
        &self,
        rescue: &mut Rescue,
        settings: &RescueSettings,
        hook: &mut HookContext,
        inline_until: DateTime<Utc>,
    ) -> Result<RescueReport, RescueError> {
        let instance_id = rescue.action.instance_id.clone();
        let instance = self
            .cloud
            .describe_instance(&instance_id)
            .await
            .map_err(|err| rescue.error(err))?;
        let instance = match instance {
            Some(instance) if !instance.state.is_gone() => instance,
            other => {
                warn!(state = ?other.map(|i| i.state), "instance is gone before its rescue could start");
                rescue.instance_gone = true;
                return self.drive(rescue, hook, inline_until).await;
            }
        };
        let volumes = self.attached_volumes(rescue, Duration::ZERO).await?;
        self.note_instance_store(rescue, &instance).await;
        let plan = plan::plan(&instance, &volumes, settings);
        rescue.volumes = plan
            .snapshot
            .iter()
            .map(|v| (v.id.clone(), VolumeDescriptor::of(v)))
            .collect();
        if !plan.snapshot.is_empty() {
            let label = rescue.label(
                label::new_set_id(self.clock.now()),
                1,
                rescue.volumes.clone(),
            );
            let (request, one_by_one) = plan.request(&instance, label.tags(), rescue.description());
            let created = self.create_set(rescue, &request, inline_until).await?;
            for mut snapshot in created {
                snapshot.start_time.get_or_insert(rescue.started_at);
                rescue.absorb(snapshot, &label);
            }
            for (volume_id, tags) in one_by_one {
                let ids: Vec<SnapshotId> = rescue
                    .snapshots
                    .values()
                    .filter(|s| s.volume_id.as_ref() == Some(&volume_id))
                    .map(|s| s.id.clone())
                    .collect();
                if let Err(err) = self.cloud.tag_snapshots(&ids, &tags).await {
                    warn!(error = %err, volume_id = %volume_id, "could not tag a snapshot with its volume's descriptor");
                }
            }
        }
        for (reason, volumes) in group_exclusions(&plan.excluded) {
            let tags = label::kept_tags(&instance_id, &reason, self.clock.now());
            self.cloud
                .keep_volumes(&instance_id, &volumes, &tags)
                .await
                .map_err(|err| rescue.error(err))?;
            // What EC2 said of these volumes no longer holds.
            rescue.attached = None;
            for (volume_id, device) in volumes {
                info!(volume_id = %volume_id, device, reason, "volume not snapshotted, kept instead (DeleteOnTermination=false)");
                rescue.kept.push(KeptVolume {
                    volume_id,
                    device,
                    reason: reason.clone(),
                });
            }
        }
        self.metrics.rescue_started(&rescue.action.group);
        info!(
            snapshots = rescue.snapshots.len(),
            volumes = ?rescue.volumes.keys().map(VolumeId::as_str).collect::<Vec<_>>(),
            "rescue started: one crash-consistent snapshot set of the instance's volumes"
        );
        self.drive(rescue, hook, inline_until).await
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
        let volumes = self
            .cloud
            .attached_volumes(&rescue.action.instance_id)
            .await
            .map_err(|err| rescue.error(err))?;
        rescue.attached = Some((now, volumes.clone()));
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

    /// `CreateSnapshots`, tried again while EC2's snapshot limits refuse it and time allows.
    async fn create_set(
        &self,
        rescue: &Rescue,
        request: &crate::aws::SnapshotSetRequest,
        inline_until: DateTime<Utc>,
    ) -> Result<Vec<SnapshotFacts>, RescueError> {
        let mut round = 0;
        loop {
            match self.cloud.create_snapshot_set(request).await {
                Ok(created) => return Ok(created),
                Err(err) if err.is(AwsErrorKind::SnapshotLimit) => {
                    let pause = self.config.poll.pause(round);
                    if self.clock.now() + to_chrono(pause) > inline_until {
                        return Err(rescue.error(err));
                    }
                    warn!(error = %err, pause_s = pause.as_secs_f64(), "snapshot limit reached; trying again");
                    self.clock.sleep(pause).await;
                    round += 1;
                }
                Err(err) => return Err(rescue.error(err)),
            }
        }
    }

    /// Loads the hook's timing and the group's settings the first time they are needed.
    async fn load_hook(&self, rescue: &mut Rescue, hook: &mut HookContext) {
        if hook.facts.is_none() {
            let facts = match self
                .cloud
                .hook_facts(&rescue.action.group, &rescue.action.hook)
                .await
            {
                Ok(Some(facts)) => Some(facts),
                Ok(None) => {
                    warn!("the group has no such lifecycle hook; its timeouts are unknown");
                    None
                }
                Err(err) => {
                    warn!(error = %err, "could not read the lifecycle hook; its timeouts are unknown");
                    None
                }
            };
            hook.facts = Some(facts);
        }
        if hook.settings.is_none() {
            let metadata = hook
                .facts
                .as_ref()
                .and_then(|f| f.as_ref()?.notification_metadata.clone());
            let (settings, rejected) = self.config.settings_for(metadata.as_deref());
            if let Some(err) = rejected {
                self.reject_override(&rescue.action, &err);
                rescue.override_rejected = Some(err.to_string());
            }
            hook.settings = Some(settings);
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
        let mut retry_blocked = false;
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
            let hook_facts = hook.facts.clone().flatten();
            let max_attempts = hook
                .settings
                .as_ref()
                .map_or(self.config.defaults.max_attempts, |s| s.max_attempts);
            let facts = Facts {
                now,
                volumes: progress,
                max_attempts,
                instance_gone: rescue.instance_gone,
                retry_blocked,
                fail_safe_at: hook_facts.as_ref().map(|h| self.fail_safe_at(rescue, h)),
                hold: Hold {
                    renewed_at: rescue.renewed_at,
                    heartbeat_timeout: hook_facts.as_ref().map(|h| h.heartbeat_timeout),
                },
                inline_until,
                next_pause,
                sweep_interval: self.config.sweep_interval,
            };
            match decide(&facts) {
                Decision::Release => {
                    if let Some(report) = self.release(rescue).await? {
                        return Ok(report);
                    }
                }
                Decision::Retry(volumes) => retry_blocked = self.retry(rescue, &volumes).await?,
                Decision::FailSafe(reason) => return self.fail_safe(rescue, reason).await,
                Decision::Wait(wait) => {
                    if wait.heartbeat {
                        if let Some(report) = self.renew_hold(rescue).await? {
                            return Ok(report);
                        }
                    }
                    let Some(pause) = wait.pause else {
                        info!("snapshots still running; the completion event or the sweep resumes the rescue");
                        return Ok(rescue.report(Outcome::Waiting, None));
                    };
                    self.clock.sleep(pause).await;
                    round += 1;
                    retry_blocked = false;
                    self.refresh(rescue).await?;
                }
            }
        }
        error!("the rescue made no progress in {MAX_STEPS} steps; leaving it to the sweep");
        Ok(rescue.report(
            Outcome::Waiting,
            Some("no progress in this invocation".into()),
        ))
    }

    /// When to fail safe: the hook's global timeout from the action's start, less the margin
    /// (at most a quarter of the timeout). Without a known start, the rescue's own start less
    /// one sweep interval: the instance may have waited that long unseen.
    fn fail_safe_at(&self, rescue: &Rescue, hook: &HookFacts) -> DateTime<Utc> {
        let start = rescue
            .action_started_at
            .unwrap_or(rescue.started_at - to_chrono(self.config.sweep_interval));
        let margin = self
            .config
            .global_timeout_margin
            .min(hook.global_timeout / 4);
        start + to_chrono(hook.global_timeout) - to_chrono(margin)
    }

    /// One `DescribeSnapshots` for the whole rescue, however many volumes.
    async fn refresh(&self, rescue: &mut Rescue) -> Result<(), RescueError> {
        let found = self
            .cloud
            .find_snapshots(&snapshots_of([rescue.action.instance_id.clone()]))
            .await
            .map_err(|err| rescue.error(err))?;
        for snapshot in found {
            if let Ok(Some(label)) = SnapshotLabel::read(&snapshot.tags) {
                if rescue.key_matches(&label) {
                    rescue.absorb(snapshot, &label);
                }
            }
        }
        Ok(())
    }

    /// Heartbeat. `Some(report)` when the action turned out to be over.
    async fn renew_hold(&self, rescue: &mut Rescue) -> Result<Option<RescueReport>, RescueError> {
        match self.cloud.heartbeat(&rescue.action).await {
            Ok(()) => {
                rescue.renewed_at = Some(self.clock.now());
                Ok(None)
            }
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => self.ended(rescue).await.map(Some),
            Err(err) => Err(rescue.error(err)),
        }
    }

    /// Release, after checking the invariant against the world: every EBS volume attached now
    /// has a completed snapshot of this rescue, or was kept by lifeboat. `None` when a volume
    /// is not covered yet: it joins the rescue and the loop goes on.
    async fn release(&self, rescue: &mut Rescue) -> Result<Option<RescueReport>, RescueError> {
        let attached = self.attached_volumes(rescue, ATTACHMENTS_FRESH_FOR).await?;
        let uncovered: Vec<&VolumeFacts> = attached
            .iter()
            .filter(|v| !rescue.saved(&v.id) && !kept_by(v, &rescue.action.instance_id))
            .collect();
        if !uncovered.is_empty() {
            for volume in uncovered {
                warn!(volume_id = %volume.id, device = volume.device, "an attached volume has no snapshot in this rescue yet; taking one before release");
                rescue
                    .volumes
                    .insert(volume.id.clone(), VolumeDescriptor::of(volume));
            }
            return Ok(None);
        }
        match self
            .cloud
            .complete(&rescue.action, ActionResult::Continue)
            .await
        {
            Ok(()) => {}
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => {
                return self.ended(rescue).await.map(Some)
            }
            Err(err) => return Err(rescue.error(err)),
        }
        let seconds = (self.clock.now() - rescue.started_at).num_milliseconds() as f64 / 1000.0;
        self.finish(rescue, RescueState::Released).await;
        self.metrics.rescue_released(&rescue.action.group, seconds);
        info!(
            seconds_to_release = seconds,
            "released with CONTINUE: every volume has a completed snapshot"
        );
        let mut report = rescue.report(Outcome::Released, None);
        report.seconds_to_release = Some(seconds);
        Ok(Some(report))
    }

    /// Snapshots these volumes again, one `CreateSnapshot` each. `Ok(true)` when EC2's snapshot
    /// limits refused: not a failed attempt, wait and try later.
    async fn retry(&self, rescue: &mut Rescue, volumes: &[VolumeId]) -> Result<bool, RescueError> {
        for volume_id in volumes {
            let attempt = rescue.attempts(volume_id).len() as u32 + 1;
            let descriptor = rescue.volumes.get(volume_id).cloned();
            let label = rescue.label(
                label::new_set_id(self.clock.now()),
                attempt,
                descriptor
                    .into_iter()
                    .map(|d| (volume_id.clone(), d))
                    .collect(),
            );
            let request = SnapshotRequest {
                volume_id: volume_id.clone(),
                description: rescue.description(),
                tags: label.tags(),
            };
            match self.cloud.create_snapshot(&request).await {
                Ok(mut snapshot) => {
                    warn!(volume_id = %volume_id, attempt, snapshot_id = %snapshot.id, "snapshotting the volume again");
                    snapshot.start_time.get_or_insert(self.clock.now());
                    rescue.absorb(snapshot, &label);
                }
                Err(err) if err.is(AwsErrorKind::SnapshotLimit) => {
                    warn!(volume_id = %volume_id, error = %err, "snapshot limit reached; will try the volume again later");
                    return Ok(true);
                }
                Err(err) => return Err(rescue.error(err)),
            }
        }
        Ok(false)
    }

    /// Fail safe: every attached volume without a completed snapshot gets
    /// `DeleteOnTermination=false` and lifeboat's `kept` tags, and only then is the action
    /// completed with ABANDON. If keeping fails, nothing is abandoned.
    async fn fail_safe(
        &self,
        rescue: &mut Rescue,
        reason: FailSafeReason,
    ) -> Result<RescueReport, RescueError> {
        let attached = self.attached_volumes(rescue, Duration::ZERO).await?;
        let unsaved: Vec<(VolumeId, String)> = attached
            .iter()
            .filter(|v| !rescue.saved(&v.id))
            .map(|v| (v.id.clone(), v.device.clone()))
            .collect();
        let why = reason.to_string();
        if !unsaved.is_empty() {
            let tags = label::kept_tags(
                &rescue.action.instance_id,
                &format!("fail-safe: {why}"),
                self.clock.now(),
            );
            self.cloud
                .keep_volumes(&rescue.action.instance_id, &unsaved, &tags)
                .await
                .map_err(|err| rescue.error(err))?;
            rescue
                .kept
                .retain(|k| !unsaved.iter().any(|(id, _)| *id == k.volume_id));
            rescue
                .kept
                .extend(unsaved.iter().map(|(volume_id, device)| KeptVolume {
                    volume_id: volume_id.clone(),
                    device: device.clone(),
                    reason: format!("fail-safe: {why}"),
                }));
        }
        let action_was_over = match self
            .cloud
            .complete(&rescue.action, ActionResult::Abandon)
            .await
        {
            Ok(()) => false,
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => true,
            Err(err) => return Err(rescue.error(err)),
        };
        self.finish(rescue, RescueState::Failed).await;
        self.metrics.rescue_failed_safe(&rescue.action.group);
        let kept: Vec<String> = unsaved
            .iter()
            .map(|(id, device)| format!("{id} ({device})"))
            .collect();
        error!(
            reason = why,
            kept_volumes = ?kept,
            action_was_over,
            "FAILED SAFE: completed with ABANDON; volumes without a completed snapshot were kept with DeleteOnTermination=false and tagged lifeboat:kept-by"
        );
        Ok(rescue.report(Outcome::FailedSafe, Some(why)))
    }

    /// The action is over without lifeboat: record it, and say loudly if data was at risk.
    async fn ended(&self, rescue: &mut Rescue) -> Result<RescueReport, RescueError> {
        // Another invocation of lifeboat (a duplicate delivery) may have completed the action
        // a moment ago: its record stands.
        self.refresh(rescue).await?;
        if matches!(rescue.state, RescueState::Released | RescueState::Failed) {
            info!(state = %rescue.state, "another invocation finished this rescue");
            self.heal_record(rescue).await;
            return Ok(rescue.report(Outcome::AlreadyFinished, None));
        }
        let unsaved: Vec<String> = rescue
            .volumes
            .keys()
            .filter(|v| !rescue.saved(v))
            .map(ToString::to_string)
            .collect();
        let reason =
            "no active lifecycle action: it timed out or was completed by someone else".to_owned();
        if unsaved.is_empty() {
            // Every volume is saved and the action is over: the data is safe, whoever ended it
            // (often this rescue itself, in an invocation stopped before it could record it).
            warn!("the lifecycle action was already over; every volume has a completed snapshot");
            self.finish(rescue, RescueState::Released).await;
        } else {
            error!(
                unsaved_volumes = ?unsaved,
                "the lifecycle action ended before every volume had a completed snapshot; running snapshots go on"
            );
            self.finish(rescue, RescueState::Ended).await;
            self.metrics.rescue_ended(&rescue.action.group);
        }
        Ok(rescue.report(Outcome::Ended, Some(reason)))
    }

    /// A finished rescue whose record is partly `pending` (a set created by a duplicate
    /// invocation after the other one finished) gets its final state everywhere, so the sweep
    /// does not come back to it.
    async fn heal_record(&self, rescue: &mut Rescue) {
        let stragglers = rescue.snapshots.values().any(|s| {
            s.tags.get(label::STATE).map(String::as_str) == Some(RescueState::Pending.as_str())
        });
        if stragglers {
            self.finish(rescue, rescue.state).await;
        }
    }

    /// Records a final state on every snapshot of the rescue. The action is already completed:
    /// a failure here is logged, not retried (the sweep's heartbeat will find the action over).
    async fn finish(&self, rescue: &mut Rescue, state: RescueState) {
        rescue.state = state;
        let ids: Vec<SnapshotId> = rescue.snapshots.keys().cloned().collect();
        if let Err(err) = self
            .cloud
            .tag_snapshots(&ids, &label::state_tags(state))
            .await
        {
            warn!(error = %err, state = %state, "could not record the rescue's state on its snapshots");
        }
    }
}

/// A volume lifeboat itself kept for this instance.
fn kept_by(volume: &VolumeFacts, instance: &InstanceId) -> bool {
    !volume.delete_on_termination
        && volume.tags.get(label::KEPT_BY).map(String::as_str) == Some(instance.as_str())
}

fn group_exclusions(
    excluded: &[(VolumeFacts, plan::Exclusion)],
) -> BTreeMap<String, Vec<(VolumeId, String)>> {
    let mut groups: BTreeMap<String, Vec<(VolumeId, String)>> = BTreeMap::new();
    for (volume, why) in excluded {
        groups
            .entry(why.to_string())
            .or_default()
            .push((volume.id.clone(), volume.device.clone()));
    }
    groups
}

pub fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests;
