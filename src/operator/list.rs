//! `lifeboat list`: every rescued set, read back from lifeboat's snapshot tags — instance,
//! group, when, result, and per device the volume, the snapshot that stands for it, its state,
//! size and encryption. The tags are the only record, so this is what an operator has at 3 a.m.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{aws_error, table, OperatorError};
use crate::aws::operator::{OperatorAws, RescueScope};
use std::collections::{BTreeMap, BTreeSet};

use crate::aws::{SnapshotFacts, SnapshotState, StorageTier, Tags};
use crate::config::Retention;
use crate::ids::{GroupName, HookName, InstanceId, SnapshotId, VolumeId};
use crate::rescue::rescues_from;
use crate::tags::{self, RescueState};

/// How a rescue ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetResult {
    /// Every volume had a completed snapshot when the instance was let go.
    Released,
    /// Lifeboat kept the volumes without a completed snapshot and answered ABANDON.
    FailedSafe,
    /// Snapshots are being taken; the instance is held.
    InFlight,
    /// The action ended without lifeboat while a volume had no completed snapshot.
    Ended,
}

impl SetResult {
    fn of(state: RescueState) -> Self {
        match state {
            RescueState::Pending => Self::InFlight,
            RescueState::Released => Self::Released,
            RescueState::Failed => Self::FailedSafe,
            RescueState::Ended => Self::Ended,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::FailedSafe => "failed safe",
            Self::InFlight => "in flight",
            Self::Ended => "ended unsaved",
        }
    }
}

/// One rescued set: a rescue of one instance (for one hook), with every volume it covers.
#[derive(Debug, Clone, Serialize)]
pub struct RescuedSet {
    pub instance_id: InstanceId,
    pub group: GroupName,
    pub hook: HookName,
    pub started_at: DateTime<Utc>,
    /// When the instance began to wait, when lifeboat learnt it.
    pub held_since: Option<DateTime<Utc>>,
    pub result: SetResult,
    /// Every snapshot says which device its volume was at (its descriptor tag). A set whose
    /// record is incomplete cannot be restored by lifeboat as it stands.
    pub record_complete: bool,
    pub volumes: Vec<RescuedVolume>,
    /// What retention will do to the set and when (`expiries`).
    pub expiry: Option<String>,
}

impl RescuedSet {
    /// Every volume has a completed snapshot.
    pub fn is_complete(&self) -> bool {
        self.volumes
            .iter()
            .all(|v| v.state == Some(SnapshotState::Completed))
    }
}

/// A volume of a rescued set and the snapshot that stands for it.
#[derive(Debug, Clone, Serialize)]
pub struct RescuedVolume {
    /// The device the volume was attached at; `unknown` when the record does not say.
    pub device: String,
    /// The record says the device (and type) of this volume.
    pub placed: bool,
    pub volume_id: VolumeId,
    pub snapshot_id: Option<SnapshotId>,
    pub state: Option<SnapshotState>,
    pub progress: Option<String>,
    pub size_gib: Option<i32>,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// The volume's own tags, copied onto its snapshot when the rescue began.
    pub volume_tags: Tags,
    /// The snapshot's storage tier, and until when an archived one is restored.
    pub tier: StorageTier,
    pub restored_until: Option<DateTime<Utc>>,
    /// Its copy in another Region (`completed us-west-2`, `pending us-west-2`, …), or, when
    /// this snapshot is such a copy, what it copies.
    pub copy: Option<String>,
}

impl RescuedVolume {
    /// `standard`, `archive`, or `archive (restored until …)`.
    pub fn tier_text(&self) -> String {
        match (self.tier, self.restored_until) {
            (StorageTier::Archive, Some(until)) => {
                format!("archive (restored until {})", tags::timestamp(until))
            }
            (tier, _) => tier.as_str().to_owned(),
        }
    }
}

/// Which sets to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub group: Option<GroupName>,
    pub instance: Option<InstanceId>,
    /// Only sets started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The configuration whose retention says when each set expires (the stack's
    /// `LIFEBOAT_RETENTION_*`, read from the operator's environment); `None`: not shown.
    pub retention: Option<crate::config::Config>,
}

/// The rescued sets these snapshots make, newest first.
pub fn rescued_sets(snapshots: Vec<SnapshotFacts>) -> Vec<RescuedSet> {
    let mut sets: Vec<RescuedSet> = rescues_from(snapshots)
        .iter()
        .map(|rescue| RescuedSet {
            instance_id: rescue.action.instance_id.clone(),
            group: rescue.action.group.clone(),
            hook: rescue.action.hook.clone(),
            started_at: rescue.started_at(),
            held_since: rescue.action_started_at(),
            result: SetResult::of(rescue.state),
            record_complete: rescue
                .saved_volumes()
                .iter()
                .all(|v| v.descriptor.is_some()),
            volumes: rescue
                .saved_volumes()
                .into_iter()
                .map(|saved| RescuedVolume {
                    device: saved.device().to_owned(),
                    placed: saved.descriptor.is_some(),
                    volume_id: saved.volume_id.clone(),
                    snapshot_id: saved.snapshot.map(|s| s.id.clone()),
                    state: saved.snapshot.map(|s| s.state),
                    progress: saved.snapshot.and_then(|s| s.progress.clone()),
                    size_gib: saved.snapshot.and_then(|s| s.volume_size_gib),
                    volume_type: saved
                        .descriptor
                        .map(|d| d.volume_type.clone())
                        .unwrap_or_default(),
                    iops: saved.descriptor.and_then(|d| d.iops),
                    throughput: saved.descriptor.and_then(|d| d.throughput),
                    encrypted: saved.snapshot.is_some_and(|s| s.encrypted),
                    kms_key_id: saved.snapshot.and_then(|s| s.kms_key_id.clone()),
                    volume_tags: saved
                        .snapshot
                        .map(|s| {
                            s.tags
                                .iter()
                                .filter(|(k, _)| {
                                    !k.starts_with("lifeboat:") && !k.starts_with("aws:")
                                })
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    copy: saved.snapshot.and_then(copy_text),
                    tier: saved.snapshot.map(|s| s.tier).unwrap_or_default(),
                    restored_until: saved.snapshot.and_then(|s| s.restore_expiry),
                })
                .collect(),
            expiry: None,
        })
        .collect();
    for set in &mut sets {
        set.volumes.sort_by(|a, b| a.device.cmp(&b.device));
    }
    sets.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    sets
}

/// What a snapshot's tags say of its copy in another Region, or of what it copies.
fn copy_text(snapshot: &SnapshotFacts) -> Option<String> {
    if let Some(source) = snapshot.tags.get(tags::COPY_OF) {
        let region = snapshot
            .tags
            .get(tags::COPY_SOURCE_REGION)
            .map(String::as_str)
            .unwrap_or("?");
        return Some(format!("copy of {source} ({region})"));
    }
    let state = snapshot.tags.get(tags::COPY_STATE)?;
    let region = snapshot
        .tags
        .get(tags::COPY)
        .and_then(|c| c.split_once('/'))
        .map(|(region, _)| region)
        .unwrap_or("?");
    Some(format!("{state} {region}"))
}

/// What retention will do to each released set, by the retention `retention_of` gives its
/// group: `archive 2027-01-05`, `delete 2027-03-01`, `kept (newest 3)`; nothing when off.
pub fn expiries(sets: &mut [RescuedSet], retention_of: impl Fn(&GroupName) -> Retention) {
    let mut rank: BTreeMap<GroupName, u32> = BTreeMap::new();
    // Newest first already: the first `keep_last` released sets of a group are kept.
    for set in sets.iter_mut() {
        if set.result != SetResult::Released {
            continue;
        }
        let retention = retention_of(&set.group);
        if retention.is_off() {
            continue;
        }
        let n = rank.entry(set.group.clone()).or_default();
        *n += 1;
        if *n <= retention.keep_last {
            set.expiry = Some(format!("kept (newest {})", retention.keep_last));
            continue;
        }
        let archived = set.volumes.iter().all(|v| v.tier == StorageTier::Archive);
        let at = |days: u32| set.started_at + chrono::Duration::days(i64::from(days));
        set.expiry = match (retention.archive_after_days, retention.delete_after_days) {
            (Some(days), _) if !archived => {
                Some(format!("archive {}", at(days).format("%Y-%m-%d")))
            }
            (_, Some(days)) => Some(format!("delete {}", at(days).format("%Y-%m-%d"))),
            _ => None,
        };
    }
}

/// The rescued sets `filter` asks for, read from AWS.
pub async fn list(
    aws: &OperatorAws,
    filter: &ListFilter,
) -> Result<Vec<RescuedSet>, OperatorError> {
    let scope = match (&filter.instance, &filter.group) {
        (Some(instance), _) => RescueScope::Instances(vec![instance.clone()]),
        (None, Some(group)) => RescueScope::Group(group.clone()),
        (None, None) => RescueScope::All,
    };
    let snapshots = aws
        .rescue_snapshots(&scope)
        .await
        .map_err(aws_error("reading lifeboat's snapshots"))?;
    let mut sets: Vec<RescuedSet> = rescued_sets(snapshots)
        .into_iter()
        .filter(|set| filter.group.as_ref().is_none_or(|g| &set.group == g))
        .collect();
    if let Some(config) = &filter.retention {
        // Each group's retention: the configuration's, with its hook's overrides.
        let mut of_group: BTreeMap<GroupName, Retention> = BTreeMap::new();
        let groups: BTreeSet<GroupName> = sets.iter().map(|s| s.group.clone()).collect();
        for group in groups {
            let metadata = aws.hooks(&group).await.ok().and_then(|hooks| {
                hooks
                    .into_iter()
                    .find(|h| config.serves_hook(&h.name))
                    .and_then(|h| h.notification_metadata)
            });
            of_group.insert(group, config.settings_for(metadata.as_deref()).0.retention);
        }
        expiries(&mut sets, |g| {
            of_group.get(g).copied().unwrap_or(Retention::OFF)
        });
    }
    Ok(sets
        .into_iter()
        .filter(|set| filter.since.is_none_or(|since| set.started_at >= since))
        .collect())
}

/// `5 GiB`, or `?` when EC2 did not say.
fn size(gib: Option<i32>) -> String {
    gib.map(|g| format!("{g} GiB"))
        .unwrap_or_else(|| "?".into())
}

/// `kms:alias/…`-style short encryption note.
pub fn encryption(encrypted: bool, kms_key_id: Option<&str>) -> String {
    match (encrypted, kms_key_id) {
        (false, _) => "no".into(),
        (true, None) => "yes".into(),
        (true, Some(key)) => format!("yes ({})", key.rsplit('/').next().unwrap_or(key)),
    }
}

/// The table's columns.
pub const HEADERS: [&str; 13] = [
    "INSTANCE",
    "GROUP",
    "STARTED",
    "RESULT",
    "DEVICE",
    "VOLUME",
    "SNAPSHOT",
    "STATE",
    "SIZE",
    "TIER",
    "COPY",
    "EXPIRES",
    "ENCRYPTED",
];

/// The sets as a table: one line per device, the set's columns on each.
pub fn render(sets: &[RescuedSet]) -> String {
    if sets.is_empty() {
        return "no rescued sets\n".into();
    }
    table::render(&HEADERS, &rows(sets))
}

/// The table's rows: one per device of each set.
pub fn rows(sets: &[RescuedSet]) -> Vec<Vec<String>> {
    sets.iter()
        .flat_map(|set| {
            set.volumes.iter().map(move |v| {
                vec![
                    set.instance_id.to_string(),
                    set.group.to_string(),
                    tags::timestamp(set.started_at),
                    if set.record_complete {
                        set.result.as_str().to_owned()
                    } else {
                        format!("{} (record incomplete)", set.result.as_str())
                    },
                    v.device.clone(),
                    v.volume_id.to_string(),
                    v.snapshot_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "-".into()),
                    match (v.state, &v.progress) {
                        (Some(SnapshotState::Pending), Some(p)) => format!("pending {p}"),
                        (Some(state), _) => state_name(state),
                        (None, _) => "none".into(),
                    },
                    size(v.size_gib),
                    v.tier_text(),
                    v.copy.clone().unwrap_or_else(|| "-".into()),
                    set.expiry.clone().unwrap_or_else(|| "-".into()),
                    encryption(v.encrypted, v.kms_key_id.as_deref()),
                ]
            })
        })
        .collect()
}

/// A snapshot state as its snake-case name.
pub fn state_name(state: SnapshotState) -> String {
    match state {
        SnapshotState::Pending => "pending",
        SnapshotState::Completed => "completed",
        SnapshotState::Error => "error",
        SnapshotState::Other => "other",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{SnapshotLabel, VolumeDescriptor};
    use std::collections::BTreeMap;

    fn snapshot(
        id: &str,
        volume: &str,
        state: SnapshotState,
        label: &SnapshotLabel,
    ) -> SnapshotFacts {
        let mut tags = label.tags();
        tags.insert("Name".into(), format!("data of {volume}"));
        SnapshotFacts {
            id: SnapshotId::parse(id).unwrap(),
            volume_id: Some(VolumeId::parse(volume).unwrap()),
            state,
            progress: Some(
                if state == SnapshotState::Completed {
                    "100%"
                } else {
                    "40%"
                }
                .into(),
            ),
            start_time: Some(label.started_at + chrono::Duration::seconds(1)),
            volume_size_gib: Some(20),
            encrypted: true,
            kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/abcd".into()),
            tags,
            tier: crate::aws::StorageTier::Standard,
            restore_expiry: None,
            completed_at: None,
        }
    }

    fn label(
        instance: &str,
        state: RescueState,
        started: &str,
        volumes: &[(&str, &str)],
    ) -> SnapshotLabel {
        SnapshotLabel {
            instance_id: InstanceId::parse(instance).unwrap(),
            group: GroupName::parse("api-db").unwrap(),
            hook: HookName::parse("lifeboat").unwrap(),
            token: None,
            state,
            started_at: started.parse().unwrap(),
            action_started_at: None,
            set: "s1".into(),
            attempt: 1,
            volumes: volumes
                .iter()
                .map(|(id, device)| {
                    (
                        VolumeId::parse(id).unwrap(),
                        VolumeDescriptor {
                            device: (*device).into(),
                            volume_type: "gp3".into(),
                            iops: Some(3000),
                            throughput: Some(125),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn sets_come_from_the_tags_newest_first_with_each_device() {
        // GIVEN a released rescue of two volumes and a newer one in flight
        let old = label(
            "i-0000000000000000a",
            RescueState::Released,
            "2026-11-20T10:00:00Z",
            &[
                ("vol-0000000000000000a", "/dev/sdf"),
                ("vol-0000000000000000b", "/dev/sda1"),
            ],
        );
        let new = label(
            "i-0000000000000000b",
            RescueState::Pending,
            "2026-11-21T10:00:00Z",
            &[("vol-0000000000000000c", "/dev/sdf")],
        );
        let snapshots = vec![
            snapshot(
                "snap-0000000000000000a",
                "vol-0000000000000000a",
                SnapshotState::Completed,
                &old,
            ),
            snapshot(
                "snap-0000000000000000b",
                "vol-0000000000000000b",
                SnapshotState::Completed,
                &old,
            ),
            snapshot(
                "snap-0000000000000000c",
                "vol-0000000000000000c",
                SnapshotState::Pending,
                &new,
            ),
        ];
        // WHEN they are read as sets
        let sets = rescued_sets(snapshots);
        // THEN the newest comes first, each device is there with its snapshot
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].result, SetResult::InFlight);
        assert!(!sets[0].is_complete());
        assert_eq!(sets[1].result, SetResult::Released);
        assert!(sets[1].is_complete());
        let devices: Vec<&str> = sets[1].volumes.iter().map(|v| v.device.as_str()).collect();
        assert_eq!(devices, ["/dev/sda1", "/dev/sdf"]);
        assert_eq!(
            sets[1].volumes[1]
                .volume_tags
                .get("Name")
                .map(String::as_str),
            Some("data of vol-0000000000000000a")
        );
        assert!(!sets[1].volumes[1]
            .volume_tags
            .keys()
            .any(|k| k.starts_with("lifeboat:")));
        let text = render(&sets);
        assert!(
            text.contains("in flight") && text.contains("pending 40%"),
            "{text}"
        );
        assert!(text.contains("yes (abcd)"), "{text}");
    }

    #[test]
    fn each_snapshots_tier_is_shown_and_a_restore_from_the_archive_says_until_when() {
        let set = label(
            "i-0000000000000000a",
            RescueState::Released,
            "2026-11-20T10:00:00Z",
            &[
                ("vol-0000000000000000a", "/dev/sdf"),
                ("vol-0000000000000000b", "/dev/sdg"),
            ],
        );
        let mut archived = snapshot(
            "snap-0000000000000000a",
            "vol-0000000000000000a",
            SnapshotState::Completed,
            &set,
        );
        archived.tier = StorageTier::Archive;
        let mut restored = snapshot(
            "snap-0000000000000000b",
            "vol-0000000000000000b",
            SnapshotState::Completed,
            &set,
        );
        restored.tier = StorageTier::Archive;
        restored.restore_expiry = Some(set.started_at + chrono::Duration::days(30));
        let text = render(&rescued_sets(vec![archived, restored]));
        assert!(text.contains("TIER"), "{text}");
        assert!(
            text.contains("archive (restored until 2026-12-20T10:00:00Z)"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("/dev/sdf") && l.contains("archive")),
            "{text}"
        );
    }

    #[test]
    fn each_set_says_its_copy_and_when_retention_takes_it() {
        let old = label(
            "i-0000000000000000a",
            RescueState::Released,
            "2026-09-01T10:00:00Z",
            &[("vol-0000000000000000a", "/dev/sdf")],
        );
        let new = label(
            "i-0000000000000000b",
            RescueState::Released,
            "2026-11-21T10:00:00Z",
            &[("vol-0000000000000000b", "/dev/sdf")],
        );
        let mut copied = snapshot(
            "snap-0000000000000000a",
            "vol-0000000000000000a",
            SnapshotState::Completed,
            &old,
        );
        copied
            .tags
            .insert(tags::COPY.into(), "us-west-2/snap-0000000000000000f".into());
        copied
            .tags
            .insert(tags::COPY_STATE.into(), "completed".into());
        let newest = snapshot(
            "snap-0000000000000000b",
            "vol-0000000000000000b",
            SnapshotState::Completed,
            &new,
        );
        let mut sets = rescued_sets(vec![copied, newest]);
        expiries(&mut sets, |_| Retention {
            archive_after_days: Some(30),
            delete_after_days: Some(365),
            keep_last: 1,
        });
        assert_eq!(sets[0].expiry.as_deref(), Some("kept (newest 1)"));
        assert_eq!(sets[1].expiry.as_deref(), Some("archive 2026-10-01"));
        assert_eq!(
            sets[1].volumes[0].copy.as_deref(),
            Some("completed us-west-2")
        );
        assert_eq!(sets[0].volumes[0].copy, None);
        let text = render(&sets);
        assert!(text.contains("COPY") && text.contains("EXPIRES"), "{text}");
        assert!(
            text.contains("completed us-west-2") && text.contains("archive 2026-10-01"),
            "{text}"
        );
    }

    #[test]
    fn a_volume_without_a_snapshot_shows_none_and_keeps_the_set_incomplete() {
        let rescue = label(
            "i-0000000000000000a",
            RescueState::Failed,
            "2026-11-20T10:00:00Z",
            &[
                ("vol-0000000000000000a", "/dev/sdf"),
                ("vol-0000000000000000b", "/dev/sdg"),
            ],
        );
        let sets = rescued_sets(vec![snapshot(
            "snap-0000000000000000a",
            "vol-0000000000000000a",
            SnapshotState::Completed,
            &rescue,
        )]);
        assert_eq!(sets[0].result, SetResult::FailedSafe);
        assert!(!sets[0].is_complete());
        assert!(render(&sets).contains("none"));
    }

    #[test]
    fn a_snapshot_that_does_not_say_its_device_is_shown_and_marks_the_record_incomplete() {
        // GIVEN a released set of three volumes whose descriptors went one by one: the third
        // snapshot's own descriptor never got written
        let of = |volume: &str, device: &str| {
            label(
                "i-0000000000000000a",
                RescueState::Released,
                "2026-11-20T10:00:00Z",
                &[(volume, device)],
            )
        };
        let sets = rescued_sets(vec![
            snapshot(
                "snap-0000000000000000a",
                "vol-0000000000000000a",
                SnapshotState::Completed,
                &of("vol-0000000000000000a", "/dev/sdf"),
            ),
            snapshot(
                "snap-0000000000000000b",
                "vol-0000000000000000b",
                SnapshotState::Completed,
                &of("vol-0000000000000000b", "/dev/sdg"),
            ),
            snapshot(
                "snap-0000000000000000c",
                "vol-0000000000000000c",
                SnapshotState::Completed,
                &label(
                    "i-0000000000000000a",
                    RescueState::Released,
                    "2026-11-20T10:00:00Z",
                    &[],
                ),
            ),
        ]);
        // THEN the volume is listed, at an unknown device, and the record is incomplete
        assert_eq!(sets[0].volumes.len(), 3);
        assert!(!sets[0].record_complete);
        let unplaced: Vec<_> = sets[0].volumes.iter().filter(|v| !v.placed).collect();
        assert_eq!(unplaced.len(), 1);
        assert_eq!(unplaced[0].volume_id.as_str(), "vol-0000000000000000c");
        assert_eq!(unplaced[0].device, "unknown");
        assert!(render(&sets).contains("released (record incomplete)"));
    }
}
