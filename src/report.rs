//! What an invocation did, as one JSON document: the Lambda's response, `lifeboat replay`'s
//! output and the source of the one summary log line per invocation.

use serde::Serialize;

use crate::aws::SnapshotState;
use crate::ids::{GroupName, HookName, InstanceId, SnapshotId, VolumeId};
use crate::tags::RescueState;

/// How a rescue stands at the end of this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every volume had a completed snapshot; the action was completed with CONTINUE.
    Released,
    /// Snapshots still running; the completion event or the sweep resumes the rescue.
    Waiting,
    /// Volumes without a completed snapshot were kept and the action completed with ABANDON.
    FailedSafe,
    /// The lifecycle action was over before lifeboat could complete it.
    Ended,
    /// The rescue had already finished before this invocation.
    AlreadyFinished,
}

/// One volume of a rescue: its best snapshot so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeReport {
    pub device: String,
    pub volume_id: VolumeId,
    pub snapshot_id: Option<SnapshotId>,
    pub state: Option<SnapshotState>,
    pub progress: Option<String>,
    pub attempts: u32,
}

/// A volume lifeboat kept (`DeleteOnTermination=false`) instead of letting it die unsaved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptVolume {
    pub volume_id: VolumeId,
    pub device: String,
    pub reason: String,
}

/// One rescue's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RescueReport {
    pub instance_id: InstanceId,
    pub group: GroupName,
    pub hook: HookName,
    pub outcome: Outcome,
    pub state: RescueState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub volumes: Vec<VolumeReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_volumes: Vec<KeptVolume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_store_disks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_to_release: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_rejected: Option<String>,
}

/// Which kind of event an invocation handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Termination,
    WarmPoolScaleIn,
    Launch,
    TestNotification,
    SnapshotCompletion,
    Sweep,
    Aftercare,
    Batch,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub event: EventKind,
    /// What lifeboat made of the event when it started no rescue (ignored, acknowledged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub rescues: Vec<RescueReport>,
    /// Rescues this invocation could not move forward; the next event or sweep retries them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// What the aftercare run did to released sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aftercare: Option<crate::aftercare::AftercareReport>,
}

impl Report {
    pub fn note(event: EventKind, note: impl Into<String>) -> Self {
        Self {
            event,
            note: Some(note.into()),
            rescues: Vec::new(),
            errors: Vec::new(),
            aftercare: None,
        }
    }

    pub fn rescues(event: EventKind, rescues: Vec<RescueReport>) -> Self {
        Self {
            event,
            note: None,
            rescues,
            errors: Vec::new(),
            aftercare: None,
        }
    }

    /// How many rescues ended the invocation with each outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.rescues.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// One of lifeboat's own events for the account's EventBridge bus (source `lifeboat`): a rescue
/// started, released, failed safe, ended without lifeboat; a released set copied or expired. Its detail
/// carries the group, instance, volumes, snapshots and reason, for a rule to route to SNS, chat
/// or a ticket (samples in `events/lifeboat-*.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub detail_type: &'static str,
    pub detail: serde_json::Value,
}

impl Notice {
    pub const STARTED: &'static str = "Lifeboat Rescue Started";
    pub const RELEASED: &'static str = "Lifeboat Rescue Released";
    pub const FAILED_SAFE: &'static str = "Lifeboat Rescue Failed Safe";
    pub const ENDED: &'static str = "Lifeboat Rescue Ended";
    pub const EXPIRED: &'static str = "Lifeboat Set Expired";
    pub const COPIED: &'static str = "Lifeboat Set Copied";

    /// A rescue's event: its report is the detail.
    pub fn of_rescue(detail_type: &'static str, report: &RescueReport) -> Self {
        Self {
            detail_type,
            detail: serde_json::to_value(report).unwrap_or_default(),
        }
    }

    /// A released set whose copy in the other Region is complete.
    pub fn of_copy(copied: &crate::aftercare::copy::SetCopied) -> Self {
        Self {
            detail_type: Self::COPIED,
            detail: serde_json::to_value(copied).unwrap_or_default(),
        }
    }

    /// A released set archived or deleted by retention.
    pub fn of_expiry(change: &crate::aftercare::SetChange) -> Self {
        Self {
            detail_type: Self::EXPIRED,
            detail: serde_json::to_value(change).unwrap_or_default(),
        }
    }
}
