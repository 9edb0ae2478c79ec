//! The record of one rescue: what this invocation knows of it — its identity, where it stands,
//! the volumes it must save and the snapshots that count for each — read from lifeboat's tags
//! (the snapshots' labels, or the instance's record before a set exists) and from EC2's answers.
//! No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::decision::VolumeProgress;
use super::{rescue_error, RescueError, Termination};
use crate::aws::{
    AwsError, InstanceFacts, SnapshotFacts, SnapshotQuery, SnapshotState, Tags, VolumeFacts,
};
use crate::ids::{ActionRef, ActionToken, InstanceId, ResourceId, SnapshotId, VolumeId};
use crate::report::{KeptVolume, Outcome, RescueReport, VolumeReport};
use crate::tags::{self, InstanceRecord, RescueState, SnapshotLabel, VolumeDescriptor};

/// How far EC2's clock (a snapshot's start time) and lifeboat's may disagree.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// One rescue as this invocation knows it: its label, its snapshots and what it learnt.
#[derive(Debug, Clone)]
pub struct Rescue {
    pub action: ActionRef,
    pub(super) token: Option<ActionToken>,
    pub(super) started_at: DateTime<Utc>,
    pub(super) action_started_at: Option<DateTime<Utc>>,
    pub state: RescueState,
    /// The volumes that need a completed snapshot, with what they looked like: `None` for a
    /// volume whose snapshot of this rescue does not say it (its descriptor tag went missing),
    /// which a restore cannot place until it is known.
    pub(super) volumes: BTreeMap<VolumeId, Option<VolumeDescriptor>>,
    pub(super) snapshots: BTreeMap<SnapshotId, SnapshotFacts>,
    pub(super) renewed_at: Option<DateTime<Utc>>,
    /// The instance as EC2 last described it (its boot device, its tags).
    pub(super) instance: Option<InstanceFacts>,
    /// The volumes attached to the instance, and when EC2 said so.
    pub(super) attached: Option<(DateTime<Utc>, Vec<VolumeFacts>)>,
    pub(super) instance_gone: bool,
    /// The instance carries this rescue's record (its tags): written, or read.
    pub(super) recorded_on_instance: bool,
    pub(super) instance_store_disks: Option<u32>,
    pub(super) kept: Vec<KeptVolume>,
    pub(super) override_rejected: Option<String>,
}

impl Rescue {
    pub(super) fn new(termination: &Termination, now: DateTime<Utc>) -> Self {
        // The hook's timer started when the instance began to wait.
        Self::blank(
            termination.action.clone(),
            termination.token.clone(),
            now,
            termination.started_at,
            RescueState::Pending,
            termination.started_at,
        )
    }

    /// A rescue known by these facts, before this invocation learnt anything more.
    fn blank(
        action: ActionRef,
        token: Option<ActionToken>,
        started_at: DateTime<Utc>,
        action_started_at: Option<DateTime<Utc>>,
        state: RescueState,
        renewed_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            action,
            token,
            started_at,
            action_started_at,
            state,
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            renewed_at,
            instance: None,
            attached: None,
            instance_gone: false,
            recorded_on_instance: false,
            instance_store_disks: None,
            kept: Vec::new(),
            override_rejected: None,
        }
    }

    /// Takes on what the instance's record says of a rescue started before, with no snapshot
    /// yet: when it began (its snapshots count from then), and the action's start and token.
    pub(super) fn adopt(&mut self, record: &InstanceRecord) {
        self.started_at = record.started_at;
        self.action_started_at = self.action_started_at.or(record.action_started_at);
        self.note_renewal(self.action_started_at);
        if self.token.is_none() {
            self.token = record.token.clone();
        }
        self.state = most_final(self.state, record.state);
        self.recorded_on_instance = true;
    }

    /// Takes over what `fresh` (this invocation's view, before it found this rescue's
    /// snapshots) learnt: the instance, its volumes, the event's start time, a rejected
    /// override.
    pub(super) fn take_over(&mut self, fresh: Rescue) {
        self.override_rejected = fresh.override_rejected;
        if self.action_started_at.is_none() {
            self.action_started_at = fresh.action_started_at;
        }
        self.note_renewal(fresh.renewed_at);
        if self.token.is_none() {
            self.token = fresh.token;
        }
        self.instance = fresh.instance;
        self.attached = fresh.attached;
        self.instance_gone |= fresh.instance_gone;
        self.recorded_on_instance |= fresh.recorded_on_instance;
    }

    /// Takes in a fresh view of snapshots: those of this rescue count, the others are ignored.
    pub(super) fn absorb_all(&mut self, snapshots: Vec<SnapshotFacts>) {
        for snapshot in snapshots {
            if let Ok(Some(label)) = SnapshotLabel::read(&snapshot.tags) {
                if self.key_matches(&label) {
                    self.absorb(snapshot, &label);
                }
            }
        }
    }

    /// The rescue's record, for the instance's tags.
    pub(super) fn record(&self) -> InstanceRecord {
        InstanceRecord {
            group: self.action.group.clone(),
            hook: self.action.hook.clone(),
            token: self.token.clone(),
            state: self.state,
            started_at: self.started_at,
            action_started_at: self.action_started_at,
        }
    }

    fn from_label(label: &SnapshotLabel) -> Self {
        Self::blank(
            ActionRef {
                group: label.group.clone(),
                hook: label.hook.clone(),
                instance_id: label.instance_id.clone(),
            },
            label.token.clone(),
            label.started_at,
            label.action_started_at,
            label.state,
            // The hold lasts from the action's start at least.
            label.action_started_at,
        )
    }

    /// Where the rescue's record lives: its snapshots, or its instance before a set exists.
    pub(super) fn record_resources(&self) -> Vec<ResourceId> {
        if self.snapshots.is_empty() {
            vec![ResourceId::Instance(self.action.instance_id.clone())]
        } else {
            self.snapshots
                .keys()
                .cloned()
                .map(ResourceId::Snapshot)
                .collect()
        }
    }

    /// When the hook's hold was last renewed, as far as this invocation knows (`None`: unknown,
    /// which sorts first).
    pub fn hold_renewed_at(&self) -> Option<DateTime<Utc>> {
        self.renewed_at
    }

    /// Nothing says the hold still stands (Auto Scaling no longer lists the instance as
    /// waiting): the next wait renews it, which tells whether the action is over.
    pub fn doubt_hold(&mut self) {
        self.renewed_at = None;
    }

    /// A renewal of the hold this invocation learnt of (a tag, a heartbeat): the latest counts.
    pub(super) fn note_renewal(&mut self, at: Option<DateTime<Utc>>) {
        self.renewed_at = self.renewed_at.max(at);
    }

    /// Takes in a snapshot of this rescue (new, or a fresher view of a known one).
    pub(super) fn absorb(&mut self, snapshot: SnapshotFacts, label: &SnapshotLabel) {
        // The latest start wins: a label claiming an earlier start (stale or forged) cannot
        // make an old snapshot count.
        self.started_at = self.started_at.max(label.started_at);
        self.action_started_at = self.action_started_at.max(label.action_started_at);
        self.note_renewal(label.action_started_at);
        self.note_renewal(tags::renewed_at(&snapshot.tags));
        if self.token.is_none() {
            self.token = label.token.clone();
        }
        self.state = most_final(self.state, label.state);
        for (id, descriptor) in &label.volumes {
            self.volumes
                .entry(id.clone())
                .or_default()
                .get_or_insert_with(|| descriptor.clone());
        }
        // A snapshot's own volume is one of the rescue's, described or not.
        if let Some(volume) = &snapshot.volume_id {
            self.volumes.entry(volume.clone()).or_default();
        }
        self.snapshots.insert(snapshot.id.clone(), snapshot);
    }

    pub(super) fn key_matches(&self, label: &SnapshotLabel) -> bool {
        label.instance_id == self.action.instance_id && label.hook == self.action.hook
    }

    /// The snapshots that count for `volume`: of that volume, started after this rescue began
    /// (less clock skew), oldest first. A snapshot that merely carries the tags — an old one,
    /// or one of another volume — never counts.
    pub(super) fn attempts(&self, volume: &VolumeId) -> Vec<&SnapshotFacts> {
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

    pub(super) fn saved(&self, volume: &VolumeId) -> bool {
        self.attempts(volume)
            .iter()
            .any(|s| s.state == SnapshotState::Completed)
    }

    /// Every volume of the rescue has a completed snapshot that counts.
    pub fn all_saved(&self) -> bool {
        self.volumes.keys().all(|v| self.saved(v))
    }

    pub(super) fn progress(&self) -> Vec<VolumeProgress> {
        self.volumes
            .keys()
            .map(|id| VolumeProgress {
                volume_id: id.clone(),
                attempts: self.attempts(id).iter().map(|s| s.state).collect(),
            })
            .collect()
    }

    /// Tags written on these snapshots, as EC2 now has them.
    pub(super) fn note_tags(&mut self, snapshots: &[ResourceId], tags: &Tags) {
        for id in snapshots {
            if let ResourceId::Snapshot(id) = id {
                if let Some(snapshot) = self.snapshots.get_mut(id) {
                    snapshot.tags.extend(tags.clone());
                }
            }
        }
    }

    /// The snapshots of this rescue that do not carry their own volume's descriptor, with the
    /// descriptor when this invocation knows it.
    pub(super) fn undescribed(&self) -> Vec<(SnapshotId, VolumeId, Option<VolumeDescriptor>)> {
        self.snapshots
            .values()
            .filter_map(|s| {
                let volume = s.volume_id.clone()?;
                let key = format!("{}{volume}", tags::VOLUME_PREFIX);
                if s.tags.contains_key(&key) {
                    return None;
                }
                let known = self.volumes.get(&volume).cloned().flatten().or_else(|| {
                    let (_, attached) = self.attached.as_ref()?;
                    attached.iter().find(|v| v.id == volume).map(descriptor_of)
                });
                Some((s.id.clone(), volume, known))
            })
            .collect()
    }

    /// The descriptors known, for a new snapshot's label.
    pub(super) fn descriptors(&self) -> BTreeMap<VolumeId, VolumeDescriptor> {
        self.volumes
            .iter()
            .filter_map(|(id, d)| Some((id.clone(), d.clone()?)))
            .collect()
    }

    /// The label of a new snapshot of this rescue.
    pub(super) fn label(
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

    pub(super) fn description(&self) -> String {
        format!(
            "lifeboat: {} of Auto Scaling group {} (hook {}) before termination",
            self.action.instance_id, self.action.group, self.action.hook
        )
        .chars()
        .take(255)
        .collect()
    }

    pub(super) fn error(&self, source: AwsError) -> RescueError {
        rescue_error(&self.action, source)
    }

    pub(super) fn span(&self) -> tracing::Span {
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
                    descriptor: descriptor.as_ref(),
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
                device: saved.device().to_owned(),
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
    /// `None` when no snapshot of the rescue describes the volume (its descriptor tag is
    /// missing): a restore cannot place it.
    pub descriptor: Option<&'a VolumeDescriptor>,
    /// `None` when no snapshot of this volume counts yet.
    pub snapshot: Option<&'a SnapshotFacts>,
    pub attempts: u32,
}

/// What stands in for the device of a volume whose descriptor is missing.
pub const UNKNOWN_DEVICE: &str = "unknown";

impl SavedVolume<'_> {
    /// The device the volume was attached at, or `unknown`.
    pub fn device(&self) -> &str {
        self.descriptor
            .map_or(UNKNOWN_DEVICE, |d| d.device.as_str())
    }
}

/// What a volume looked like when its rescue started: enough to restore it elsewhere.
pub(super) fn descriptor_of(volume: &VolumeFacts) -> VolumeDescriptor {
    VolumeDescriptor {
        device: volume.device.clone(),
        volume_type: volume.volume_type.clone(),
        iops: volume.iops,
        throughput: volume.throughput,
    }
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
        key: tags::INSTANCE_ID.into(),
        values: instances
            .into_iter()
            .map(|i| i.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}
