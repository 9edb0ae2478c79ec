//! Lifeboat's tag vocabulary: the only place a rescue's state lives, on the ground the domain,
//! the adapters and the operator's commands all stand on.
//!
//! - Every snapshot of a rescue carries its label: who it is for (instance, group, hook, action
//!   token), where the rescue stands (pending, released, failed, ended), when it started, which
//!   set and attempt made it, and a descriptor of every volume of the rescue (device, type, IOPS,
//!   throughput) so the set can be restored once the instance is gone.
//! - Before EC2 has accepted a snapshot set (it may refuse for hours), the instance itself carries
//!   the rescue's record: the same keys for group, hook, token, state and start times.
//! - Volumes lifeboat keeps (`DeleteOnTermination=false`) carry the `kept-*` tags: by which
//!   instance's rescue, why, and since when.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::ids::{ActionToken, GroupName, HookName, InstanceId, VolumeId};

pub const INSTANCE_ID: &str = "lifeboat:instance-id";
pub const GROUP: &str = "lifeboat:group";
pub const HOOK: &str = "lifeboat:hook";
pub const ACTION_TOKEN: &str = "lifeboat:action-token";
pub const STATE: &str = "lifeboat:state";
pub const STARTED_AT: &str = "lifeboat:started-at";
pub const ACTION_STARTED_AT: &str = "lifeboat:action-started-at";
/// When lifeboat last renewed the hook's hold (a heartbeat), where that spares the sweep the
/// next one: on the rescue's snapshots, or on the instance before a set exists.
pub const RENEWED_AT: &str = "lifeboat:renewed-at";
pub const SET: &str = "lifeboat:set";
pub const ATTEMPT: &str = "lifeboat:attempt";
/// `lifeboat:volume:<volume id>` → that volume's descriptor.
pub const VOLUME_PREFIX: &str = "lifeboat:volume:";

/// `true` on an Auto Scaling group whose lifecycle actions lifeboat's role may hold and complete
/// (the template's default `GroupScope=tagged`, when its `Groups` is empty).
pub const PROTECTED: &str = "lifeboat:protected";

/// `true` on an instance or a volume whose data nobody needs back: `lifeboat audit` does not
/// count it (the rescue still saves it; the skip tag is what leaves a volume out of a rescue).
pub const STATELESS: &str = "lifeboat:stateless";

/// A released snapshot's copy in another Region: `<region>/<snapshot id>`, how it stands
/// (`pending`, `completed`, `failed`), how many copies were started and when the last began.
pub const COPY: &str = "lifeboat:copy";
pub const COPY_STATE: &str = "lifeboat:copy-state";
pub const COPY_ATTEMPTS: &str = "lifeboat:copy-attempts";
pub const COPY_STARTED_AT: &str = "lifeboat:copy-started-at";
/// On a copy: the snapshot it copies, and that snapshot's Region.
pub const COPY_OF: &str = "lifeboat:copy-of";
pub const COPY_SOURCE_REGION: &str = "lifeboat:copy-source-region";
/// On a copy: the volume its source is a snapshot of (EC2 gives a copy an arbitrary VolumeId).
pub const COPY_VOLUME: &str = "lifeboat:copy-volume";

/// On a volume lifeboat kept (`DeleteOnTermination=false`): the instance it was kept from.
pub const KEPT_BY: &str = "lifeboat:kept-by";
/// Why it was kept: a [`KeptReason`].
pub const KEPT_REASON: &str = "lifeboat:kept-reason";
pub const KEPT_AT: &str = "lifeboat:kept-at";

/// Tags as key → value.
pub type Tags = BTreeMap<String, String>;

/// The number of tags AWS allows on one resource.
pub const MAX_TAGS_PER_RESOURCE: usize = 50;

/// Where a rescue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RescueState {
    /// Snapshots are being taken; the instance is held.
    Pending,
    /// Every volume had a completed snapshot when the action ended: lifeboat completed it with
    /// CONTINUE (or found it over with every volume saved).
    Released,
    /// Lifeboat kept the unsnapshotted volumes and completed the action with ABANDON.
    Failed,
    /// The action ended without lifeboat (timed out, completed by someone else) while a volume
    /// had no completed snapshot yet: an operator must look.
    Ended,
}

impl RescueState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Released => "released",
            Self::Failed => "failed",
            Self::Ended => "ended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "released" => Some(Self::Released),
            "failed" => Some(Self::Failed),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

impl fmt::Display for RescueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a volume looked like when its rescue started: enough to restore it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeDescriptor {
    pub device: String,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
}

impl VolumeDescriptor {
    /// `device=/dev/sdf type=gp3 iops=3000 throughput=125`: readable in the console, no commas.
    pub fn encode(&self) -> String {
        let mut text = format!("device={} type={}", self.device, self.volume_type);
        if let Some(iops) = self.iops {
            text.push_str(&format!(" iops={iops}"));
        }
        if let Some(throughput) = self.throughput {
            text.push_str(&format!(" throughput={throughput}"));
        }
        text
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for part in text.split_whitespace() {
            let (key, value) = part.split_once('=')?;
            fields.insert(key, value);
        }
        let number = |key: &str| fields.get(key).and_then(|v| v.parse().ok());
        Some(Self {
            device: (*fields.get("device")?).to_owned(),
            volume_type: fields.get("type").copied().unwrap_or_default().to_owned(),
            iops: number("iops"),
            throughput: number("throughput"),
        })
    }
}

pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What lifeboat's tags say of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLabel {
    pub instance_id: InstanceId,
    pub group: GroupName,
    pub hook: HookName,
    pub token: Option<ActionToken>,
    pub state: RescueState,
    pub started_at: DateTime<Utc>,
    pub action_started_at: Option<DateTime<Utc>>,
    pub set: String,
    pub attempt: u32,
    pub volumes: BTreeMap<VolumeId, VolumeDescriptor>,
}

/// A snapshot that carries lifeboat's instance tag but not a readable label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lifeboat tag {key} is missing or not valid")]
pub struct LabelError {
    pub key: &'static str,
}

impl SnapshotLabel {
    /// `Ok(None)`: not a lifeboat snapshot. `Err`: claims to be one but cannot be read.
    pub fn read(tags: &Tags) -> Result<Option<Self>, LabelError> {
        let Some(instance) = tags.get(INSTANCE_ID) else {
            return Ok(None);
        };
        let record = InstanceRecord::parse(tags)?;
        let volumes = tags
            .iter()
            .filter_map(|(key, value)| {
                let id = VolumeId::parse(key.strip_prefix(VOLUME_PREFIX)?).ok()?;
                Some((id, VolumeDescriptor::decode(value)?))
            })
            .collect();
        Ok(Some(Self {
            instance_id: InstanceId::parse(instance)
                .map_err(|_| LabelError { key: INSTANCE_ID })?,
            group: record.group,
            hook: record.hook,
            token: record.token,
            state: record.state,
            started_at: record.started_at,
            action_started_at: record.action_started_at,
            set: tags.get(SET).ok_or(LabelError { key: SET })?.to_owned(),
            attempt: tags.get(ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(1),
            volumes,
        }))
    }

    /// The tags that say this label: the rescue's record, and which instance, set, attempt and
    /// volumes the snapshot belongs to.
    pub fn tags(&self) -> Tags {
        let mut tags = InstanceRecord {
            group: self.group.clone(),
            hook: self.hook.clone(),
            token: self.token.clone(),
            state: self.state,
            started_at: self.started_at,
            action_started_at: self.action_started_at,
        }
        .tags();
        tags.insert(INSTANCE_ID.into(), self.instance_id.to_string());
        tags.insert(SET.into(), self.set.clone());
        tags.insert(ATTEMPT.into(), self.attempt.to_string());
        for (id, descriptor) in &self.volumes {
            tags.insert(format!("{VOLUME_PREFIX}{id}"), descriptor.encode());
        }
        tags
    }
}

/// The tag that records a renewal of the hold.
pub fn renewal_tags(at: DateTime<Utc>) -> Tags {
    Tags::from([(RENEWED_AT.to_owned(), timestamp(at))])
}

/// When the hold was last renewed, as these tags say (a snapshot's or an instance's).
pub fn renewed_at(tags: &Tags) -> Option<DateTime<Utc>> {
    tags.get(RENEWED_AT).and_then(|t| parse_time(t))
}

/// The tags that record a final state on every snapshot of a rescue.
pub fn state_tags(state: RescueState) -> Tags {
    Tags::from([(STATE.to_owned(), state.as_str().to_owned())])
}

/// Why lifeboat kept a volume, as `lifeboat:kept-reason` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptReason {
    /// Keep first: the rescue keeps every volume until its snapshot completes, and gives the
    /// volume back to its own `DeleteOnTermination=true` right before CONTINUE.
    First,
    /// The settings exclude the volume from the snapshots (boot volume, skip tag): kept instead.
    Excluded(String),
    /// The rescue failed safe before the volume had a completed snapshot.
    FailSafe(String),
    /// The lifecycle action ended without lifeboat before the volume had a completed snapshot.
    Ended,
}

const KEPT_FIRST_TEXT: &str = "kept first: no completed snapshot of this rescue yet";
const ENDED_TEXT: &str =
    "ended: the lifecycle action ended before this volume had a completed snapshot";

impl KeptReason {
    pub fn text(&self) -> String {
        let text = match self {
            Self::First => KEPT_FIRST_TEXT.to_owned(),
            Self::Excluded(why) => format!("excluded: {why}"),
            Self::FailSafe(why) => format!("fail-safe: {why}"),
            Self::Ended => ENDED_TEXT.to_owned(),
        };
        // A tag value holds at most 256 characters.
        text.chars().take(256).collect()
    }

    pub fn parse(text: &str) -> Option<Self> {
        if text == KEPT_FIRST_TEXT {
            Some(Self::First)
        } else if text == ENDED_TEXT {
            Some(Self::Ended)
        } else if let Some(why) = text.strip_prefix("excluded: ") {
            Some(Self::Excluded(why.to_owned()))
        } else {
            text.strip_prefix("fail-safe: ")
                .map(|why| Self::FailSafe(why.to_owned()))
        }
    }

    /// What a volume's tags say: why `instance` kept it, if lifeboat kept it for that instance.
    pub fn of(tags: &Tags, instance: &InstanceId) -> Option<Self> {
        if tags.get(KEPT_BY).map(String::as_str) != Some(instance.as_str()) {
            return None;
        }
        tags.get(KEPT_REASON).and_then(|r| Self::parse(r))
    }
}

/// The tags on a volume lifeboat kept.
pub fn kept_tags(instance_id: &InstanceId, reason: &KeptReason, at: DateTime<Utc>) -> Tags {
    Tags::from([
        (KEPT_BY.to_owned(), instance_id.to_string()),
        (KEPT_REASON.to_owned(), reason.text()),
        (KEPT_AT.to_owned(), timestamp(at)),
    ])
}

/// A rescue's record on its instance: where it stands and when it started, for the time before
/// a snapshot set exists to carry its label (EC2 may refuse `CreateSnapshots` for hours). The
/// same keys as a snapshot's label; one rescue per instance (an instance held by two of
/// lifeboat's hooks keeps the record of the last one to write it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub group: GroupName,
    pub hook: HookName,
    pub token: Option<ActionToken>,
    pub state: RescueState,
    pub started_at: DateTime<Utc>,
    pub action_started_at: Option<DateTime<Utc>>,
}

impl InstanceRecord {
    /// `Ok(None)`: the instance carries no record. `Err`: a record that cannot be read.
    pub fn read(tags: &Tags) -> Result<Option<Self>, LabelError> {
        if !tags.contains_key(HOOK) {
            return Ok(None);
        }
        Self::parse(tags).map(Some)
    }

    /// The record's keys, on an instance or within a snapshot's label.
    fn parse(tags: &Tags) -> Result<Self, LabelError> {
        let required =
            |key: &'static str| tags.get(key).map(String::as_str).ok_or(LabelError { key });
        Ok(Self {
            group: GroupName::parse(required(GROUP)?).map_err(|_| LabelError { key: GROUP })?,
            hook: HookName::parse(required(HOOK)?).map_err(|_| LabelError { key: HOOK })?,
            token: tags
                .get(ACTION_TOKEN)
                .and_then(|t| ActionToken::parse(t).ok()),
            state: RescueState::parse(required(STATE)?).ok_or(LabelError { key: STATE })?,
            started_at: parse_time(required(STARTED_AT)?).ok_or(LabelError { key: STARTED_AT })?,
            action_started_at: tags.get(ACTION_STARTED_AT).and_then(|t| parse_time(t)),
        })
    }

    pub fn tags(&self) -> Tags {
        let mut tags = Tags::new();
        tags.insert(GROUP.into(), self.group.to_string());
        tags.insert(HOOK.into(), self.hook.to_string());
        if let Some(token) = &self.token {
            tags.insert(ACTION_TOKEN.into(), token.to_string());
        }
        tags.insert(STATE.into(), self.state.as_str().into());
        tags.insert(STARTED_AT.into(), timestamp(self.started_at));
        if let Some(at) = self.action_started_at {
            tags.insert(ACTION_STARTED_AT.into(), timestamp(at));
        }
        tags
    }
}

/// A new set id: the time and a random suffix, unique enough to tell two sets of one rescue
/// apart (two invocations racing on one event).
pub fn new_set_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        fastrand::u32(..0x100_0000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> SnapshotLabel {
        SnapshotLabel {
            instance_id: InstanceId::parse("i-0123456789abcdef0").unwrap(),
            group: GroupName::parse("api-db").unwrap(),
            hook: HookName::parse("lifeboat").unwrap(),
            token: Some(ActionToken::parse("87654321-4321-4321-4321-210987654321").unwrap()),
            state: RescueState::Pending,
            started_at: parse_time("2026-11-25T10:00:00Z").unwrap(),
            action_started_at: parse_time("2026-11-25T09:59:58Z"),
            set: "20261125T100000Z-00abcd".into(),
            attempt: 1,
            volumes: BTreeMap::from([(
                VolumeId::parse("vol-0123456789abcdef0").unwrap(),
                VolumeDescriptor {
                    device: "/dev/sdf".into(),
                    volume_type: "gp3".into(),
                    iops: Some(3000),
                    throughput: Some(125),
                },
            )]),
        }
    }

    #[test]
    fn a_label_survives_a_round_trip_through_tags() {
        let tags = label().tags();
        assert_eq!(
            tags["lifeboat:volume:vol-0123456789abcdef0"],
            "device=/dev/sdf type=gp3 iops=3000 throughput=125"
        );
        assert_eq!(SnapshotLabel::read(&tags).unwrap(), Some(label()));
    }

    #[test]
    fn a_snapshot_without_the_instance_tag_is_not_ours() {
        assert_eq!(
            SnapshotLabel::read(&Tags::from([("Name".into(), "x".into())])).unwrap(),
            None
        );
    }

    #[test]
    fn a_damaged_label_names_the_tag() {
        let mut tags = label().tags();
        tags.insert(STATE.into(), "maybe".into());
        assert_eq!(SnapshotLabel::read(&tags).unwrap_err().key, STATE);
        let mut tags = label().tags();
        tags.remove(HOOK);
        assert_eq!(SnapshotLabel::read(&tags).unwrap_err().key, HOOK);
    }

    #[test]
    fn kept_reasons_round_trip_and_name_the_instance() {
        let instance = InstanceId::parse("i-0123456789abcdef0").unwrap();
        let other = InstanceId::parse("i-0fffffffffffffff0").unwrap();
        for reason in [
            KeptReason::First,
            KeptReason::Excluded("boot volume".into()),
            KeptReason::FailSafe("snapshots of vol-1 failed every attempt".into()),
            KeptReason::Ended,
        ] {
            let tags = kept_tags(
                &instance,
                &reason,
                parse_time("2026-11-25T10:00:00Z").unwrap(),
            );
            assert_eq!(KeptReason::of(&tags, &instance), Some(reason.clone()));
            assert_eq!(
                KeptReason::of(&tags, &other),
                None,
                "kept for another instance"
            );
        }
        assert_eq!(KeptReason::parse("someone else's words"), None);
        assert!(KeptReason::FailSafe("x".repeat(400)).text().chars().count() <= 256);
    }

    #[test]
    fn an_instance_record_round_trips_and_a_bare_instance_has_none() {
        let record = InstanceRecord {
            group: GroupName::parse("api-db").unwrap(),
            hook: HookName::parse("lifeboat").unwrap(),
            token: None,
            state: RescueState::Pending,
            started_at: parse_time("2026-11-25T10:00:00Z").unwrap(),
            action_started_at: parse_time("2026-11-25T09:59:58Z"),
        };
        assert_eq!(
            InstanceRecord::read(&record.tags()).unwrap(),
            Some(record.clone())
        );
        let bare = Tags::from([("Name".into(), "api".into())]);
        assert_eq!(InstanceRecord::read(&bare).unwrap(), None);
        let mut damaged = record.tags();
        damaged.insert(STATE.into(), "perhaps".into());
        assert_eq!(InstanceRecord::read(&damaged).unwrap_err().key, STATE);
    }

    #[test]
    fn descriptors_without_iops_round_trip() {
        let d = VolumeDescriptor {
            device: "/dev/xvda".into(),
            volume_type: "standard".into(),
            iops: None,
            throughput: None,
        };
        assert_eq!(VolumeDescriptor::decode(&d.encode()), Some(d));
        assert_eq!(VolumeDescriptor::decode("type=gp3"), None);
    }
}
