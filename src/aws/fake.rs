//! An in-memory AWS for the rescue's unit tests: instances, volumes, snapshots that finish (or
//! fail) when the fake clock says so — the snapshots of one multi-volume set together, all in
//! error if one fails —, EC2's limit of pending snapshots per volume, lifecycle actions that
//! terminate the instance and delete its `DeleteOnTermination` volumes, injected errors, and a
//! record of every call. It follows AWS's semantics where the rescue depends on them; the
//! end-to-end tests use the real SDK against the local AWS instead.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    ActionResult, Announcer, AwsError, AwsErrorKind, GroupScope, HookFacts, InstanceFacts,
    InstanceState, Inventory, Lifecycle, Pressure, SnapshotCare, SnapshotCopies, SnapshotFacts,
    SnapshotQuery, SnapshotRequest, SnapshotSetRequest, SnapshotState, SnapshotStore, Tagging,
    Tags, VolumeFacts, WaitingInstance,
};
use crate::clock::{Clock, FakeClock};
use crate::ids::{ActionRef, GroupName, HookName, InstanceId, ResourceId, SnapshotId, VolumeId};
use crate::tags::KeptReason;

/// How a snapshot of a volume ends, and how long it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    pub end: SnapshotState,
    pub after: Duration,
}

impl Fate {
    pub fn completes_after(secs: u64) -> Self {
        Self {
            end: SnapshotState::Completed,
            after: Duration::from_secs(secs),
        }
    }

    pub fn fails_after(secs: u64) -> Self {
        Self {
            end: SnapshotState::Error,
            after: Duration::from_secs(secs),
        }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    group: GroupName,
    state: InstanceState,
    root_device: String,
    retain_on_abandon: bool,
    tags: Tags,
}

#[derive(Debug, Clone)]
struct Volume {
    facts: VolumeFacts,
    attached_to: Option<InstanceId>,
}

#[derive(Debug, Clone)]
struct Snapshot {
    facts: SnapshotFacts,
    ends_at: DateTime<Utc>,
    end: SnapshotState,
    /// The `CreateSnapshots` call it belongs to: a set completes together.
    set: Option<u64>,
}

/// What happened to a lifecycle action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub active: bool,
    pub result: Option<ActionResult>,
    pub heartbeats: u32,
    pub completions: u32,
    /// When the instance began to wait: only a snapshot started since saves today's data.
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct World {
    instances: BTreeMap<InstanceId, Instance>,
    volumes: BTreeMap<VolumeId, Volume>,
    snapshots: BTreeMap<SnapshotId, Snapshot>,
    actions: BTreeMap<InstanceId, ActionRecord>,
    hooks: BTreeMap<(GroupName, HookName), HookFacts>,
    fates: HashMap<VolumeId, VecDeque<Fate>>,
    default_fate: Option<Fate>,
    faults: HashMap<&'static str, VecDeque<AwsErrorKind>>,
    calls: Vec<&'static str>,
    deleted: Vec<VolumeId>,
    deleted_unsaved: Vec<VolumeId>,
    unsafe_continues: Vec<InstanceId>,
    held_by_another_hook: Vec<InstanceId>,
    /// `DescribeVolumes` lists no attached volume for the next this many reads (EC2's API is
    /// eventually consistent; `DescribeInstances` still maps them).
    volumes_unlisted_for: usize,
    /// Each call takes this long (a busy account: every call waits its turn on a bucket).
    latency: Option<Duration>,
    crash_after: Option<usize>,
    next_id: u64,
    /// Instances EC2 does not list for now (its API is eventually consistent).
    unlisted: BTreeSet<InstanceId>,
    /// An instance and its volumes as EC2 listed them a while ago: the next DescribeInstances
    /// and DescribeVolumes of it answer this older view (eventual consistency again).
    stale_view: Option<(InstanceFacts, Vec<VolumeFacts>)>,
    /// Snapshots whose archival is under way.
    archiving: BTreeSet<SnapshotId>,
    deleted_snapshots: Vec<SnapshotId>,
    notices: Vec<crate::report::Notice>,
    /// Copies in the other Region.
    copies: Vec<SnapshotFacts>,
}

/// The fake AWS; share it with `Arc` and keep a handle on its clock.
pub struct FakeCloud {
    world: Mutex<World>,
    pub clock: Arc<FakeClock>,
    /// What `Pressure::congested` answers: the account is busy.
    pub congested: std::sync::atomic::AtomicBool,
}

impl FakeCloud {
    pub fn new(clock: Arc<FakeClock>) -> Self {
        Self {
            world: Mutex::new(World {
                default_fate: Some(Fate::completes_after(30)),
                ..World::default()
            }),
            clock,
            congested: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    fn hex(world: &mut World) -> String {
        world.next_id += 1;
        format!("{:017x}", world.next_id)
    }

    /// A group with a termination hook (heartbeat `heartbeat_s`, global 100×).
    pub fn add_hook(&self, group: &str, hook: &str, heartbeat_s: u64, metadata: Option<&str>) {
        let heartbeat = Duration::from_secs(heartbeat_s);
        self.world().hooks.insert(
            (
                GroupName::parse(group).unwrap(),
                HookName::parse(hook).unwrap(),
            ),
            HookFacts {
                heartbeat_timeout: heartbeat,
                global_timeout: (heartbeat * 100).min(Duration::from_secs(172_800)),
                notification_metadata: metadata.map(str::to_owned),
            },
        );
    }

    /// An instance of `group` in `Terminating:Wait` with volumes at `devices` (the first is the
    /// boot volume); each volume gets `tags`. Returns the instance and its volumes.
    pub fn add_waiting_instance(
        &self,
        group: &str,
        devices: &[&str],
    ) -> (InstanceId, Vec<VolumeId>) {
        let now = self.clock.now();
        let mut world = self.world();
        let instance_id = InstanceId::parse(&format!("i-{}", Self::hex(&mut world))).unwrap();
        let mut volumes = Vec::new();
        for device in devices {
            let id = VolumeId::parse(&format!("vol-{}", Self::hex(&mut world))).unwrap();
            world.volumes.insert(
                id.clone(),
                Volume {
                    facts: VolumeFacts {
                        id: id.clone(),
                        device: (*device).to_owned(),
                        delete_on_termination: true,
                        size_gib: 100,
                        volume_type: "gp3".into(),
                        iops: Some(3000),
                        throughput: Some(125),
                        encrypted: true,
                        availability_zone: "us-east-1a".into(),
                        tags: Tags::from([("Name".into(), format!("data {device}"))]),
                    },
                    attached_to: Some(instance_id.clone()),
                },
            );
            volumes.push(id);
        }
        world.instances.insert(
            instance_id.clone(),
            Instance {
                group: GroupName::parse(group).unwrap(),
                state: InstanceState::Stopped,
                root_device: devices.first().copied().unwrap_or("/dev/xvda").to_owned(),
                retain_on_abandon: false,
                tags: Tags::new(),
            },
        );
        world.actions.insert(
            instance_id.clone(),
            ActionRecord {
                active: true,
                result: None,
                heartbeats: 0,
                completions: 0,
                started_at: now,
            },
        );
        (instance_id, volumes)
    }

    pub fn tag_volume(&self, volume: &VolumeId, key: &str, value: &str) {
        if let Some(v) = self.world().volumes.get_mut(volume) {
            v.facts.tags.insert(key.into(), value.into());
        }
    }

    pub fn set_delete_on_termination_of(&self, volume: &VolumeId, value: bool) {
        if let Some(v) = self.world().volumes.get_mut(volume) {
            v.facts.delete_on_termination = value;
        }
    }

    /// A volume's type (`st1` and `sc1` allow one pending snapshot, the others five).
    pub fn set_volume_type(&self, volume: &VolumeId, volume_type: &str) {
        if let Some(v) = self.world().volumes.get_mut(volume) {
            v.facts.volume_type = volume_type.into();
        }
    }

    /// Someone else (a Data Lifecycle Manager schedule) starts a snapshot of the volume, pending
    /// for `seconds`.
    pub fn start_foreign_snapshot(&self, volume: &VolumeId, seconds: u64) -> SnapshotId {
        let now = self.clock.now();
        let mut world = self.world();
        world
            .fates
            .entry(volume.clone())
            .or_default()
            .push_front(Fate::completes_after(seconds));
        let tags = Tags::from([("aws:dlm:lifecycle-policy-id".into(), "policy-1".into())]);
        Self::snapshot(&mut world, volume, tags, now, None).id
    }

    pub fn instance_tags(&self, instance: &InstanceId) -> Tags {
        self.world().instances[instance].tags.clone()
    }

    /// Attaches a new volume to a (waiting) instance, as an operator might.
    pub fn attach_new_volume(&self, instance: &InstanceId, device: &str) -> VolumeId {
        let mut world = self.world();
        let id = VolumeId::parse(&format!("vol-{}", Self::hex(&mut world))).unwrap();
        world.volumes.insert(
            id.clone(),
            Volume {
                facts: VolumeFacts {
                    id: id.clone(),
                    device: device.into(),
                    delete_on_termination: true,
                    size_gib: 10,
                    volume_type: "gp3".into(),
                    iops: None,
                    throughput: None,
                    encrypted: false,
                    availability_zone: "us-east-1a".into(),
                    tags: Tags::new(),
                },
                attached_to: Some(instance.clone()),
            },
        );
        id
    }

    /// The snapshots of `volume` end as these fates say, in order; later ones take the default.
    pub fn script(&self, volume: &VolumeId, fates: &[Fate]) {
        self.world()
            .fates
            .insert(volume.clone(), fates.iter().copied().collect());
    }

    pub fn set_default_fate(&self, fate: Fate) {
        self.world().default_fate = Some(fate);
    }

    /// The next `count` calls of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: AwsErrorKind, count: usize) {
        let mut world = self.world();
        let queue = world.faults.entry(operation).or_default();
        queue.extend(std::iter::repeat_n(kind, count));
    }

    /// From now on each call takes `latency` of the fake clock.
    pub fn slow_down(&self, latency: Duration) {
        self.world().latency = Some(latency);
    }

    /// The next `reads` `DescribeVolumes` list no attached volume (a lagging view of EC2).
    pub fn unlist_volumes(&self, reads: usize) {
        self.world().volumes_unlisted_for = reads;
    }

    /// The archivals under way end: those snapshots are in the archive tier.
    pub fn finish_archival(&self) {
        let mut world = self.world();
        for id in std::mem::take(&mut world.archiving) {
            if let Some(s) = world.snapshots.get_mut(&id) {
                s.facts.tier = crate::aws::StorageTier::Archive;
            }
        }
    }

    /// The events lifeboat published, in order: their detail types.
    pub fn notices(&self) -> Vec<&'static str> {
        self.world().notices.iter().map(|n| n.detail_type).collect()
    }

    /// The snapshots deleted so far.
    pub fn deleted_snapshots(&self) -> Vec<SnapshotId> {
        self.world().deleted_snapshots.clone()
    }

    /// Tags one snapshot as a person (or another tool) would.
    pub fn tag_snapshot(&self, snapshot: &SnapshotId, key: &str, value: &str) {
        if let Some(s) = self.world().snapshots.get_mut(snapshot) {
            s.facts.tags.insert(key.into(), value.into());
        }
    }

    /// The instance and its attached volumes as EC2 lists them now.
    pub fn view_of(&self, instance: &InstanceId) -> Option<(InstanceFacts, Vec<VolumeFacts>)> {
        let world = self.world();
        Self::instance_facts(&world, instance)
            .map(|facts| (facts, Self::volume_facts(&world, instance)))
    }

    /// The next DescribeInstances and DescribeVolumes of the instance answer this older view:
    /// an invocation that read the instance before it went, and meets it gone afterwards.
    pub fn answer_stale(&self, view: Option<(InstanceFacts, Vec<VolumeFacts>)>) {
        self.world().stale_view = view;
    }

    /// The instance terminates on its own (the action is gone, DeleteOnTermination applies).
    pub fn terminate_now(&self, instance: &InstanceId) {
        let mut world = self.world();
        Self::terminate(&mut world, instance, false);
        if let Some(a) = world.actions.get_mut(instance) {
            a.active = false;
        }
    }

    /// The action times out or someone else completes it; the instance is left as it is.
    pub fn end_action(&self, instance: &InstanceId) {
        if let Some(a) = self.world().actions.get_mut(instance) {
            a.active = false;
        }
    }

    pub fn action(&self, instance: &InstanceId) -> ActionRecord {
        self.world().actions[instance].clone()
    }

    pub fn instance_state(&self, instance: &InstanceId) -> InstanceState {
        self.world().instances[instance].state.clone()
    }

    pub fn volume(&self, volume: &VolumeId) -> Option<VolumeFacts> {
        self.world().volumes.get(volume).map(|v| v.facts.clone())
    }

    pub fn snapshots_of(&self, volume: &VolumeId) -> Vec<SnapshotFacts> {
        let now = self.clock.now();
        let mut world = self.world();
        Self::advance(&mut world, now);
        world
            .snapshots
            .values()
            .filter(|s| s.facts.volume_id.as_ref() == Some(volume))
            .map(|s| s.facts.clone())
            .collect()
    }

    pub fn calls(&self) -> Vec<&'static str> {
        self.world().calls.clone()
    }

    pub fn count(&self, operation: &str) -> usize {
        self.world()
            .calls
            .iter()
            .filter(|c| **c == operation)
            .count()
    }

    pub fn deleted(&self) -> Vec<VolumeId> {
        self.world().deleted.clone()
    }

    /// Volumes deleted while no completed snapshot of them existed: must stay empty.
    pub fn deleted_unsaved(&self) -> Vec<VolumeId> {
        self.world().deleted_unsaved.clone()
    }

    /// Instances completed with CONTINUE while an attached volume had no completed snapshot
    /// and would die with the instance: must stay empty.
    pub fn unsafe_continues(&self) -> Vec<InstanceId> {
        self.world().unsafe_continues.clone()
    }

    /// Another hook also holds the instance: completing lifeboat's action leaves it waiting.
    /// EC2 stops (`true`) or starts again listing the instance in `DescribeInstances`.
    pub fn unlist(&self, instance: &InstanceId, unlisted: bool) {
        let mut world = self.world();
        if unlisted {
            world.unlisted.insert(instance.clone());
        } else {
            world.unlisted.remove(instance);
        }
    }

    pub fn hold_by_another_hook(&self, instance: &InstanceId) {
        self.world().held_by_another_hook.push(instance.clone());
    }

    /// The group's lifecycle policy retains an instance on ABANDON.
    pub fn retain_on_abandon(&self, instance: &InstanceId) {
        if let Some(i) = self.world().instances.get_mut(instance) {
            i.retain_on_abandon = true;
        }
    }

    /// The invocation dies after `calls` more AWS calls: every later call fails without effect,
    /// as if the process had been killed between two steps.
    pub fn crash_after(&self, calls: usize) {
        let mut world = self.world();
        world.crash_after = Some(world.calls.len() + calls);
    }

    /// A new invocation, in a new process.
    pub fn restart(&self) {
        self.world().crash_after = None;
    }

    fn call(&self, operation: &'static str) -> Result<std::sync::MutexGuard<'_, World>, AwsError> {
        let mut world = self.world();
        if let Some(latency) = world.latency {
            self.clock.advance(latency);
        }
        let now = self.clock.now();
        if world
            .crash_after
            .is_some_and(|limit| world.calls.len() >= limit)
        {
            return Err(AwsError::new(
                operation,
                AwsErrorKind::Unavailable,
                "the invocation was killed",
            ));
        }
        world.calls.push(operation);
        Self::advance(&mut world, now);
        if let Some(kind) = world
            .faults
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
        {
            return Err(AwsError::new(operation, kind, "injected"));
        }
        Ok(world)
    }

    /// Ends the snapshots whose time has come. The snapshots of one set end together, when the
    /// last is done, and all in error if one fails ("Create Amazon EBS snapshots", Amazon EBS
    /// User Guide).
    fn advance(world: &mut World, now: DateTime<Utc>) {
        let mut sets: HashMap<u64, (bool, bool)> = HashMap::new(); // set -> (all done, one failed)
        for snapshot in world.snapshots.values() {
            if let Some(set) = snapshot.set {
                let entry = sets.entry(set).or_insert((true, false));
                entry.0 &= now >= snapshot.ends_at && snapshot.end != SnapshotState::Pending;
                entry.1 |= snapshot.end == SnapshotState::Error;
            }
        }
        for snapshot in world.snapshots.values_mut() {
            if snapshot.facts.state != SnapshotState::Pending {
                continue;
            }
            let end = match snapshot.set.map(|set| sets[&set]) {
                Some((false, _)) => continue,
                Some((true, true)) => SnapshotState::Error,
                Some((true, false)) => SnapshotState::Completed,
                None if now >= snapshot.ends_at && snapshot.end != SnapshotState::Pending => {
                    snapshot.end
                }
                None => continue,
            };
            snapshot.facts.state = end;
            snapshot.facts.progress = Some(
                if end == SnapshotState::Completed {
                    "100%"
                } else {
                    "0%"
                }
                .into(),
            );
        }
    }

    /// A completed snapshot of the volume, started since its instance began to wait: an older
    /// snapshot does not save today's data.
    fn saved(world: &World, instance: &InstanceId, volume: &VolumeId) -> bool {
        let since = world.actions.get(instance).map(|a| a.started_at);
        world.snapshots.values().any(|s| {
            s.facts.volume_id.as_ref() == Some(volume)
                && s.facts.state == SnapshotState::Completed
                && since.is_none_or(|since| s.facts.start_time.is_some_and(|t| t >= since))
        })
    }

    /// EC2's limit of pending snapshots per volume: one for st1 and sc1, five for the others.
    fn volume_busy(world: &World, volume: &VolumeId) -> bool {
        let limit = match world
            .volumes
            .get(volume)
            .map(|v| v.facts.volume_type.as_str())
        {
            Some("st1" | "sc1") => 1,
            _ => 5,
        };
        let pending = world
            .snapshots
            .values()
            .filter(|s| {
                s.facts.volume_id.as_ref() == Some(volume)
                    && s.facts.state == SnapshotState::Pending
            })
            .count();
        pending >= limit
    }

    fn snapshot(
        world: &mut World,
        volume: &VolumeId,
        tags: Tags,
        now: DateTime<Utc>,
        set: Option<u64>,
    ) -> SnapshotFacts {
        let fate = world
            .fates
            .get_mut(volume)
            .and_then(VecDeque::pop_front)
            .or(world.default_fate)
            .unwrap_or(Fate::completes_after(0));
        let id = SnapshotId::parse(&format!("snap-{}", Self::hex(world))).unwrap();
        let facts = SnapshotFacts {
            id: id.clone(),
            volume_id: Some(volume.clone()),
            state: SnapshotState::Pending,
            progress: Some("0%".into()),
            start_time: Some(now),
            volume_size_gib: Some(100),
            encrypted: true,
            kms_key_id: None,
            tags,
            tier: crate::aws::StorageTier::Standard,
            restore_expiry: None,
            completed_at: None,
        };
        world.snapshots.insert(
            id,
            Snapshot {
                facts: facts.clone(),
                ends_at: now + chrono::Duration::from_std(fate.after).unwrap(),
                end: fate.end,
                set,
            },
        );
        facts
    }

    fn instance_facts(world: &World, id: &InstanceId) -> Option<InstanceFacts> {
        world.instances.get(id).map(|i| InstanceFacts {
            id: id.clone(),
            state: i.state.clone(),
            instance_type: "m5.large".into(),
            root_device_name: Some(i.root_device.clone()),
            ebs_backed: true,
            mapped_volumes: world
                .volumes
                .iter()
                .filter(|(_, v)| v.attached_to.as_ref() == Some(id))
                .map(|(volume_id, _)| volume_id.clone())
                .collect(),
            tags: i.tags.clone(),
        })
    }

    fn volume_facts(world: &World, id: &InstanceId) -> Vec<VolumeFacts> {
        world
            .volumes
            .values()
            .filter(|v| v.attached_to.as_ref() == Some(id))
            .map(|v| v.facts.clone())
            .collect()
    }

    /// Calls EC2 refuses on an instance shutting down or terminated (`IncorrectInstanceState`).
    fn refuse_if_gone(
        world: &World,
        operation: &'static str,
        id: &InstanceId,
    ) -> Result<(), AwsError> {
        match world.instances.get(id) {
            Some(i) if i.state.is_gone() => Err(AwsError {
                code: Some(crate::aws::error::INCORRECT_INSTANCE_STATE.into()),
                ..AwsError::new(
                    operation,
                    AwsErrorKind::Rejected,
                    "the instance is not in a state for this call",
                )
            }),
            _ => Ok(()),
        }
    }

    fn terminate(world: &mut World, instance: &InstanceId, retain: bool) {
        if retain {
            return;
        }
        if let Some(i) = world.instances.get_mut(instance) {
            i.state = InstanceState::Terminated;
        }
        let attached: Vec<VolumeId> = world
            .volumes
            .iter()
            .filter(|(_, v)| v.attached_to.as_ref() == Some(instance))
            .map(|(id, _)| id.clone())
            .collect();
        for id in attached {
            let delete = world.volumes[&id].facts.delete_on_termination;
            if delete {
                let saved = Self::saved(world, instance, &id);
                world.volumes.remove(&id);
                world.deleted.push(id.clone());
                if !saved {
                    world.deleted_unsaved.push(id);
                }
            } else if let Some(v) = world.volumes.get_mut(&id) {
                v.attached_to = None;
            }
        }
    }
}

impl Inventory for FakeCloud {
    async fn describe_instance(&self, id: &InstanceId) -> Result<Option<InstanceFacts>, AwsError> {
        let world = self.call("DescribeInstances")?;
        if world.unlisted.contains(id) {
            return Ok(None);
        }
        if let Some((instance, _)) = world.stale_view.as_ref().filter(|(i, _)| i.id == *id) {
            return Ok(Some(instance.clone()));
        }
        Ok(Self::instance_facts(&world, id))
    }

    async fn attached_volumes(&self, id: &InstanceId) -> Result<Vec<VolumeFacts>, AwsError> {
        let mut world = self.call("DescribeVolumes")?;
        if world.volumes_unlisted_for > 0 {
            world.volumes_unlisted_for -= 1;
            return Ok(Vec::new());
        }
        if world.stale_view.as_ref().is_some_and(|(i, _)| i.id == *id) {
            if let Some((_, volumes)) = world.stale_view.take() {
                return Ok(volumes);
            }
        }
        Ok(Self::volume_facts(&world, id))
    }

    async fn instance_store_disks(&self, _instance_type: &str) -> Result<Option<u32>, AwsError> {
        let _world = self.call("DescribeInstanceTypes")?;
        Ok(Some(0))
    }

    async fn set_delete_on_termination(
        &self,
        instance_id: &InstanceId,
        devices: &[String],
        delete_on_termination: bool,
    ) -> Result<(), AwsError> {
        let mut world = self.call("ModifyInstanceAttribute")?;
        Self::refuse_if_gone(&world, "ModifyInstanceAttribute", instance_id)?;
        let attached = |v: &Volume, device: &String| {
            v.attached_to.as_ref() == Some(instance_id) && v.facts.device == *device
        };
        if !devices
            .iter()
            .all(|d| world.volumes.values().any(|v| attached(v, d)))
        {
            return Err(AwsError::new(
                "ModifyInstanceAttribute",
                AwsErrorKind::Rejected,
                "no such device",
            ));
        }
        for volume in world.volumes.values_mut() {
            if devices.iter().any(|d| attached(volume, d)) {
                volume.facts.delete_on_termination = delete_on_termination;
            }
        }
        Ok(())
    }
}

impl Tagging for FakeCloud {
    async fn tag(&self, resources: &[ResourceId], tags: &Tags) -> Result<(), AwsError> {
        let mut world = self.call("CreateTags")?;
        // EC2 refuses the whole call when it does not know one of the resources.
        let known = |resource: &ResourceId| match resource {
            ResourceId::Instance(id) => world.instances.contains_key(id),
            ResourceId::Volume(id) => world.volumes.contains_key(id),
            ResourceId::Snapshot(id) => world.snapshots.contains_key(id),
        };
        if let Some(unknown) = resources.iter().find(|r| !known(r)) {
            let kind = match unknown {
                ResourceId::Instance(_) => AwsErrorKind::InstanceNotFound,
                _ => AwsErrorKind::NotFound,
            };
            return Err(AwsError::new(
                "CreateTags",
                kind,
                format!("{unknown:?} does not exist"),
            ));
        }
        for resource in resources {
            let target = match resource {
                ResourceId::Instance(id) => world.instances.get_mut(id).map(|i| &mut i.tags),
                ResourceId::Volume(id) => world.volumes.get_mut(id).map(|v| &mut v.facts.tags),
                ResourceId::Snapshot(id) => world.snapshots.get_mut(id).map(|s| &mut s.facts.tags),
            };
            if let Some(target) = target {
                target.extend(tags.clone());
            }
        }
        Ok(())
    }
}

impl SnapshotCopies for FakeCloud {
    /// A copy is completed at once (the local AWS models its time and limits).
    async fn copy_snapshot(
        &self,
        source: &SnapshotId,
        tags: &Tags,
    ) -> Result<SnapshotId, AwsError> {
        let mut world = self.call("CopySnapshot")?;
        if !world.snapshots.contains_key(source) {
            return Err(AwsError::new(
                "CopySnapshot",
                AwsErrorKind::NotFound,
                "no such snapshot",
            ));
        }
        let id = SnapshotId::parse(&format!("snap-{}", Self::hex(&mut world))).unwrap();
        let mut facts = world.snapshots[source].facts.clone();
        facts.id = id.clone();
        facts.tags = tags.clone();
        world.copies.push(facts);
        Ok(id)
    }

    async fn find_copies(&self, ids: &[SnapshotId]) -> Result<Vec<SnapshotFacts>, AwsError> {
        let world = self.call("DescribeSnapshots")?;
        Ok(world
            .copies
            .iter()
            .filter(|c| ids.contains(&c.id))
            .cloned()
            .collect())
    }
}

impl Announcer for FakeCloud {
    async fn announce(&self, notice: &crate::report::Notice) -> Result<(), AwsError> {
        let mut world = self.call("PutEvents")?;
        world.notices.push(notice.clone());
        Ok(())
    }
}

impl SnapshotCare for FakeCloud {
    async fn tiering_under_way(&self) -> Result<BTreeSet<SnapshotId>, AwsError> {
        let world = self.call("DescribeSnapshotTierStatus")?;
        Ok(world.archiving.clone())
    }

    /// Archival is under way until `finish_archival`.
    async fn archive(&self, snapshot: &SnapshotId) -> Result<(), AwsError> {
        let mut world = self.call("ModifySnapshotTier")?;
        match world.snapshots.get(snapshot) {
            None => Err(AwsError::new(
                "ModifySnapshotTier",
                AwsErrorKind::NotFound,
                "no such snapshot",
            )),
            Some(s)
                if s.facts.state != SnapshotState::Completed
                    || world.archiving.contains(snapshot) =>
            {
                Err(AwsError::new(
                    "ModifySnapshotTier",
                    AwsErrorKind::Rejected,
                    "only a completed snapshot not already moving can be archived",
                ))
            }
            Some(_) => {
                world.archiving.insert(snapshot.clone());
                Ok(())
            }
        }
    }

    async fn delete(&self, snapshot: &SnapshotId) -> Result<(), AwsError> {
        let mut world = self.call("DeleteSnapshot")?;
        match world.snapshots.remove(snapshot) {
            Some(_) => {
                world.deleted_snapshots.push(snapshot.clone());
                Ok(())
            }
            None => Err(AwsError::new(
                "DeleteSnapshot",
                AwsErrorKind::NotFound,
                "no such snapshot",
            )),
        }
    }
}

impl SnapshotStore for FakeCloud {
    async fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<SnapshotFacts>, AwsError> {
        let world = self.call("DescribeSnapshots")?;
        Ok(world
            .snapshots
            .values()
            .filter(|s| match query {
                SnapshotQuery::Tagged { key, values } => {
                    s.facts.tags.get(key).is_some_and(|v| values.contains(v))
                }
                SnapshotQuery::Ids(ids) => ids.contains(&s.facts.id),
            })
            .map(|s| s.facts.clone())
            .collect())
    }

    async fn create_snapshot_set(
        &self,
        request: &SnapshotSetRequest,
    ) -> Result<Vec<SnapshotFacts>, AwsError> {
        let now = self.clock.now();
        let mut world = self.call("CreateSnapshots")?;
        Self::refuse_if_gone(&world, "CreateSnapshots", &request.instance_id)?;
        let Some(instance) = world.instances.get(&request.instance_id).cloned() else {
            return Err(AwsError::new(
                "CreateSnapshots",
                AwsErrorKind::InstanceNotFound,
                "no such instance",
            ));
        };
        let volumes: Vec<VolumeFacts> = world
            .volumes
            .values()
            .filter(|v| v.attached_to.as_ref() == Some(&request.instance_id))
            .filter(|v| !(request.exclude_boot_volume && v.facts.device == instance.root_device))
            .filter(|v| !request.exclude_data_volumes.contains(&v.facts.id))
            .map(|v| v.facts.clone())
            .collect();
        if volumes.iter().any(|v| Self::volume_busy(&world, &v.id)) {
            return Err(busy("CreateSnapshots"));
        }
        world.next_id += 1;
        let set = Some(world.next_id);
        let mut created = Vec::new();
        for volume in volumes {
            let mut tags = request.tags.clone();
            if request.copy_volume_tags {
                for (k, v) in &volume.tags {
                    tags.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            created.push(Self::snapshot(&mut world, &volume.id, tags, now, set));
        }
        Ok(created)
    }

    async fn create_snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotFacts, AwsError> {
        let now = self.clock.now();
        let mut world = self.call("CreateSnapshot")?;
        if !world.volumes.contains_key(&request.volume_id) {
            return Err(AwsError::new(
                "CreateSnapshot",
                AwsErrorKind::Rejected,
                "no such volume",
            ));
        }
        if Self::volume_busy(&world, &request.volume_id) {
            return Err(busy("CreateSnapshot"));
        }
        Ok(Self::snapshot(
            &mut world,
            &request.volume_id,
            request.tags.clone(),
            now,
            None,
        ))
    }
}

impl Pressure for FakeCloud {
    fn congested(&self) -> bool {
        self.congested.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Lifecycle for FakeCloud {
    async fn heartbeat(&self, action: &ActionRef) -> Result<(), AwsError> {
        let mut world = self.call("RecordLifecycleActionHeartbeat")?;
        match world.actions.get_mut(&action.instance_id) {
            Some(a) if a.active => {
                a.heartbeats += 1;
                Ok(())
            }
            _ => Err(no_active_action("RecordLifecycleActionHeartbeat")),
        }
    }

    async fn complete(&self, action: &ActionRef, result: ActionResult) -> Result<(), AwsError> {
        let mut world = self.call("CompleteLifecycleAction")?;
        match world.actions.get_mut(&action.instance_id) {
            Some(a) if a.active => {
                a.active = false;
                a.result = Some(result);
                a.completions += 1;
            }
            _ => return Err(no_active_action("CompleteLifecycleAction")),
        }
        if result == ActionResult::Continue {
            // Only a volume the settings exclude may go without a snapshot, and only kept.
            let unsaved = world.volumes.values().any(|v| {
                v.attached_to.as_ref() == Some(&action.instance_id)
                    && !Self::saved(&world, &action.instance_id, &v.facts.id)
                    && (v.facts.delete_on_termination
                        || !matches!(
                            KeptReason::of(&v.facts.tags, &action.instance_id),
                            Some(KeptReason::Excluded(_))
                        ))
            });
            if unsaved {
                world.unsafe_continues.push(action.instance_id.clone());
            }
        }
        if world.held_by_another_hook.contains(&action.instance_id) {
            return Ok(());
        }
        let retain = result == ActionResult::Abandon
            && world
                .instances
                .get(&action.instance_id)
                .is_some_and(|i| i.retain_on_abandon);
        Self::terminate(&mut world, &action.instance_id, retain);
        Ok(())
    }

    async fn hook_facts(
        &self,
        group: &GroupName,
        hook: &HookName,
    ) -> Result<Option<HookFacts>, AwsError> {
        let world = self.call("DescribeLifecycleHooks")?;
        Ok(world.hooks.get(&(group.clone(), hook.clone())).cloned())
    }

    async fn waiting_instances(
        &self,
        scope: &GroupScope,
    ) -> Result<Vec<WaitingInstance>, AwsError> {
        let world = self.call("DescribeAutoScalingGroups")?;
        Ok(world
            .instances
            .iter()
            .filter(|(id, _)| {
                world.actions.get(*id).is_some_and(|a| a.active)
                    || world.held_by_another_hook.contains(id)
            })
            .filter(|(_, i)| match scope {
                GroupScope::All => true,
                GroupScope::Named(names) => names.contains(&i.group),
            })
            .map(|(id, i)| WaitingInstance {
                group: i.group.clone(),
                instance_id: id.clone(),
                from_warm_pool: false,
            })
            .collect())
    }
}

fn busy(operation: &'static str) -> AwsError {
    AwsError {
        operation,
        kind: AwsErrorKind::SnapshotBusy,
        code: Some("ConcurrentSnapshotLimitExceeded".into()),
        message: Some("Too many pending snapshots of the volume".into()),
        source: None,
    }
}

fn no_active_action(operation: &'static str) -> AwsError {
    AwsError {
        operation,
        kind: AwsErrorKind::NoActiveAction,
        code: Some("ValidationError".into()),
        message: Some("No active Lifecycle Action found".into()),
        source: None,
    }
}
