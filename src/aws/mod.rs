//! The ports to AWS: small traits in lifeboat's own types, one per capability, and the facts
//! they return. `ec2` and `autoscaling` adapt them to the AWS SDK; `client` builds the SDK
//! clients from the standard environment. Nothing outside this module sees an SDK type.

pub mod autoscaling;
pub mod budget;
pub mod client;
pub mod drill;
pub mod ec2;
mod error;
pub mod events;
#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod mocks;
pub mod operator;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use error::{AwsError, AwsErrorKind};

use crate::ids::{ActionRef, GroupName, HookName, InstanceId, ResourceId, SnapshotId, VolumeId};

pub use crate::tags::Tags;

/// An instance's life-cycle state as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    Other(String),
}

impl InstanceState {
    pub fn parse(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Shutting down or terminated: its volumes are going or gone, nothing can be snapshotted.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }
}

/// What lifeboat needs to know of an instance to plan its rescue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub id: InstanceId,
    pub state: InstanceState,
    pub instance_type: String,
    /// The device of the boot volume (`/dev/xvda`, `/dev/sda1`).
    pub root_device_name: Option<String>,
    /// The boot volume is an EBS volume (`RootDeviceType` is not `instance-store`): the
    /// instance has at least one EBS volume, whatever a lagging `DescribeVolumes` says.
    pub ebs_backed: bool,
    /// The EBS volumes the instance's block device mapping names (not detached): each must be
    /// among its attached volumes before lifeboat trusts that list.
    pub mapped_volumes: Vec<VolumeId>,
    /// The instance's tags: a rescue's record lives there before its snapshots exist.
    pub tags: Tags,
}

/// An EBS volume attached to the instance being rescued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFacts {
    pub id: VolumeId,
    pub device: String,
    pub delete_on_termination: bool,
    pub size_gib: i32,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
    pub availability_zone: String,
    pub tags: Tags,
}

/// A snapshot's state as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    /// A state lifeboat does not know (`recoverable`, `recovering`): neither done nor failed.
    Other,
}

impl SnapshotState {
    pub fn parse(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "error" => Self::Error,
            _ => Self::Other,
        }
    }
}

/// A snapshot as EC2 reports it, with its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFacts {
    pub id: SnapshotId,
    pub volume_id: Option<VolumeId>,
    pub state: SnapshotState,
    /// `"42%"` as EC2 reports it.
    pub progress: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub volume_size_gib: Option<i32>,
    pub encrypted: bool,
    /// The KMS key an encrypted snapshot is encrypted with (a key id or ARN, as EC2 says).
    pub kms_key_id: Option<String>,
    pub tags: Tags,
    /// The storage tier: `standard`, or `archive` (restored for a while when `restore_expiry`
    /// is set).
    pub tier: StorageTier,
    pub restore_expiry: Option<DateTime<Utc>>,
    /// When EC2 says the snapshot completed (`CompletionTime`); none while it is pending.
    pub completed_at: Option<DateTime<Utc>>,
}

/// An EBS snapshot's storage tier ("Archive Amazon EBS snapshots", Amazon EBS User Guide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageTier {
    #[default]
    Standard,
    Archive,
}

impl StorageTier {
    pub fn parse(text: &str) -> Self {
        if text == "archive" {
            Self::Archive
        } else {
            Self::Standard
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Archive => "archive",
        }
    }
}

/// After the rescue: moving released snapshots to the archive tier, and deleting them (EC2).
pub trait SnapshotCare: Send + Sync {
    /// The snapshots whose move between tiers (archival, restore) is under way
    /// (`DescribeSnapshotTierStatus`).
    fn tiering_under_way(
        &self,
    ) -> impl Future<Output = Result<BTreeSet<SnapshotId>, AwsError>> + Send;
    /// `ModifySnapshotTier` to the archive tier.
    fn archive(&self, snapshot: &SnapshotId) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// `DeleteSnapshot`.
    fn delete(&self, snapshot: &SnapshotId) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Copies of released snapshots in another Region (EC2 there).
pub trait SnapshotCopies: Send + Sync {
    /// `CopySnapshot`, sent to the copy Region: a copy of `source` (in this Region), tagged at
    /// creation; its id.
    fn copy_snapshot(
        &self,
        source: &SnapshotId,
        tags: &Tags,
    ) -> impl Future<Output = Result<SnapshotId, AwsError>> + Send;
    /// The copies as the copy Region lists them (`DescribeSnapshots` there).
    fn find_copies(
        &self,
        ids: &[SnapshotId],
    ) -> impl Future<Output = Result<Vec<SnapshotFacts>, AwsError>> + Send;
}

/// Lifeboat's own events onto the account's EventBridge bus (`PutEvents`). A failure to
/// publish never changes a rescue.
pub trait Announcer: Send + Sync {
    fn announce(
        &self,
        notice: &crate::report::Notice,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Which snapshots to look up. Every query is one paginated `DescribeSnapshots` of the
/// account's own snapshots (split into requests of at most 200 filter values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotQuery {
    /// The snapshots whose tag `key` has one of `values`.
    Tagged { key: String, values: Vec<String> },
    /// These snapshots, by id; ids EC2 does not know are left out, not an error.
    Ids(Vec<SnapshotId>),
}

/// One `CreateSnapshots` call: every attached EBS volume of the instance but the excluded ones,
/// crash-consistent across volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSetRequest {
    pub instance_id: InstanceId,
    pub exclude_boot_volume: bool,
    pub exclude_data_volumes: Vec<VolumeId>,
    pub copy_volume_tags: bool,
    pub description: String,
    pub tags: Tags,
}

/// One `CreateSnapshot` call, for a volume whose snapshot failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub volume_id: VolumeId,
    pub description: String,
    pub tags: Tags,
}

/// How a lifecycle action is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionResult {
    Continue,
    Abandon,
}

impl ActionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "CONTINUE",
            Self::Abandon => "ABANDON",
        }
    }
}

/// A termination hook as `DescribeLifecycleHooks` reports it: its timing and the metadata that
/// may carry the group's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFacts {
    pub heartbeat_timeout: Duration,
    pub global_timeout: Duration,
    pub notification_metadata: Option<String>,
}

/// An instance an Auto Scaling group holds for its termination hooks: `Terminating:Wait`, or
/// `Warmed:Terminating:Wait` for an instance of the group's warm pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingInstance {
    pub group: GroupName,
    pub instance_id: InstanceId,
    pub from_warm_pool: bool,
}

/// Which groups a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupScope {
    All,
    Named(Vec<GroupName>),
}

/// Reading and protecting instances and their volumes (EC2).
pub trait Inventory: Send + Sync {
    /// `Ok(None)` when EC2 does not know the instance.
    fn describe_instance(
        &self,
        id: &InstanceId,
    ) -> impl Future<Output = Result<Option<InstanceFacts>, AwsError>> + Send;

    /// The EBS volumes attached to the instance now.
    fn attached_volumes(
        &self,
        id: &InstanceId,
    ) -> impl Future<Output = Result<Vec<VolumeFacts>, AwsError>> + Send;

    /// How many instance-store disks the instance type has; `None` when EC2 does not say.
    fn instance_store_disks(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<Option<u32>, AwsError>> + Send;

    /// Sets `DeleteOnTermination` on these devices of the instance: one `ModifyInstanceAttribute`.
    fn set_delete_on_termination(
        &self,
        instance_id: &InstanceId,
        devices: &[String],
        delete_on_termination: bool,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Tagging instances, volumes and snapshots (EC2): one `CreateTags` for all `resources`.
pub trait Tagging: Send + Sync {
    fn tag(
        &self,
        resources: &[ResourceId],
        tags: &Tags,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Finding, creating and tagging snapshots (EC2).
pub trait SnapshotStore: Send + Sync {
    fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> impl Future<Output = Result<Vec<SnapshotFacts>, AwsError>> + Send;

    fn create_snapshot_set(
        &self,
        request: &SnapshotSetRequest,
    ) -> impl Future<Output = Result<Vec<SnapshotFacts>, AwsError>> + Send;

    fn create_snapshot(
        &self,
        request: &SnapshotRequest,
    ) -> impl Future<Output = Result<SnapshotFacts, AwsError>> + Send;
}

/// Holding and completing lifecycle actions, and finding the instances held (Auto Scaling).
pub trait Lifecycle: Send + Sync {
    fn heartbeat(&self, action: &ActionRef) -> impl Future<Output = Result<(), AwsError>> + Send;

    fn complete(
        &self,
        action: &ActionRef,
        result: ActionResult,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `Ok(None)` when the group has no such hook.
    fn hook_facts(
        &self,
        group: &GroupName,
        hook: &HookName,
    ) -> impl Future<Output = Result<Option<HookFacts>, AwsError>> + Send;

    /// Every instance in `Terminating:Wait` (or, in a warm pool, `Warmed:Terminating:Wait`) in
    /// the groups of `scope`.
    fn waiting_instances(
        &self,
        scope: &GroupScope,
    ) -> impl Future<Output = Result<Vec<WaitingInstance>, AwsError>> + Send;
}

/// How busy the account's API budget is for this environment.
pub trait Pressure: Send + Sync {
    /// A call had to wait for its turn lately (`budget`): the account is busy, and an
    /// invocation should not hold on waiting for snapshots it can leave to the completion
    /// event and the sweep.
    fn congested(&self) -> bool {
        false
    }
}

/// Everything a rescue needs from AWS.
pub trait Cloud:
    Inventory
    + SnapshotStore
    + SnapshotCare
    + SnapshotCopies
    + Tagging
    + Lifecycle
    + Pressure
    + Announcer
{
}

impl<
        T: Inventory
            + SnapshotStore
            + SnapshotCare
            + SnapshotCopies
            + Tagging
            + Lifecycle
            + Pressure
            + Announcer,
    > Cloud for T
{
}
