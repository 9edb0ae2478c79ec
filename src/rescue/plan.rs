//! The plan of a rescue: which attached volumes to snapshot and which the settings exclude
//! (the boot volume, a volume with the skip tag), and how the one `CreateSnapshots` request is
//! tagged within AWS's 50-tags-per-resource limit — the first set, or one taken again.

use std::collections::BTreeSet;

use crate::aws::{InstanceFacts, SnapshotSetRequest, Tags, VolumeFacts};
use crate::config::RescueSettings;
use crate::ids::VolumeId;

use crate::tags::{MAX_TAGS_PER_RESOURCE, VOLUME_PREFIX};

/// "CreateSnapshots" (EC2 API Reference), InstanceSpecification: at most 40 volume ids in
/// `ExcludeDataVolumeIds` per request.
pub const MAX_EXCLUDED_DATA_VOLUMES: usize = 40;

/// Why a volume is not snapshotted. An excluded volume is kept instead: lifeboat sets its
/// `DeleteOnTermination` to false, so no volume dies without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    BootVolume,
    SkipTag(String),
    /// Not one of the rescue's volumes (a set taken again covers what the first one covered).
    OutsideTheRescue,
}

impl Exclusion {
    /// Why, in a few words (`boot volume`, `tag lifeboat:skip`).
    pub fn why(&self) -> String {
        match self {
            Self::BootVolume => "boot volume".into(),
            Self::SkipTag(tag) => format!("tag {tag}"),
            Self::OutsideTheRescue => "not one of the rescue's volumes".into(),
        }
    }
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "excluded: {}", self.why())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub snapshot: Vec<VolumeFacts>,
    pub excluded: Vec<(VolumeFacts, Exclusion)>,
    pub boot_volume: Option<VolumeId>,
}

pub fn plan(instance: &InstanceFacts, volumes: &[VolumeFacts], settings: &RescueSettings) -> Plan {
    let boot_volume = volumes
        .iter()
        .find(|v| Some(&v.device) == instance.root_device_name.as_ref())
        .map(|v| v.id.clone());
    let mut plan = Plan {
        snapshot: Vec::new(),
        excluded: Vec::new(),
        boot_volume: boot_volume.clone(),
    };
    for volume in volumes {
        let skip = settings.skip_tag.as_ref().filter(|key| {
            volume
                .tags
                .get(*key)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        });
        if let Some(key) = skip {
            plan.excluded
                .push((volume.clone(), Exclusion::SkipTag(key.clone())));
        } else if !settings.include_boot_volume && Some(&volume.id) == boot_volume.as_ref() {
            plan.excluded.push((volume.clone(), Exclusion::BootVolume));
        } else {
            plan.snapshot.push(volume.clone());
        }
    }
    plan
}

impl Plan {
    /// The plan of a set taken again: the rescue's own volumes among those attached now, the
    /// others left out.
    pub fn covering(
        instance: &InstanceFacts,
        attached: &[VolumeFacts],
        rescue_volumes: &BTreeSet<&VolumeId>,
    ) -> Plan {
        let boot_volume = attached
            .iter()
            .find(|v| Some(&v.device) == instance.root_device_name.as_ref())
            .map(|v| v.id.clone());
        let (snapshot, excluded): (Vec<VolumeFacts>, Vec<VolumeFacts>) = attached
            .iter()
            .cloned()
            .partition(|v| rescue_volumes.contains(&v.id));
        Plan {
            snapshot,
            excluded: excluded
                .into_iter()
                .map(|v| (v, Exclusion::OutsideTheRescue))
                .collect(),
            boot_volume,
        }
    }

    /// The `CreateSnapshots` request for this plan, tagged with `label_tags` (the rescue's
    /// label, descriptors of every volume included). Returns the request and, when the
    /// descriptors did not fit in AWS's tag limit, the descriptors left to tag one by one.
    pub fn request(
        &self,
        instance: &InstanceFacts,
        label_tags: Tags,
        description: String,
    ) -> (SnapshotSetRequest, Vec<(VolumeId, Tags)>) {
        let boot_excluded = self
            .excluded
            .iter()
            .any(|(v, _)| Some(&v.id) == self.boot_volume.as_ref());
        let exclude_data_volumes = self
            .excluded
            .iter()
            .filter(|(v, _)| Some(&v.id) != self.boot_volume.as_ref())
            .map(|(v, _)| v.id.clone())
            .collect();
        let (mut tags, descriptors): (Tags, Tags) = label_tags
            .into_iter()
            .partition(|(key, _)| !key.starts_with(VOLUME_PREFIX));
        let mut one_by_one = Vec::new();
        if tags.len() + descriptors.len() <= MAX_TAGS_PER_RESOURCE {
            tags.extend(descriptors);
        } else {
            for (key, value) in descriptors {
                if let Some(id) = key
                    .strip_prefix(VOLUME_PREFIX)
                    .and_then(|id| VolumeId::parse(id).ok())
                {
                    one_by_one.push((id, Tags::from([(key, value)])));
                }
            }
        }
        // Copying the volumes' own tags must not push a snapshot past the limit (leaving room
        // for its own descriptor when the descriptors go one by one), and must not copy a
        // lifeboat label key over the one lifeboat writes.
        let own_descriptor = usize::from(!one_by_one.is_empty());
        let most_volume_tags = self
            .snapshot
            .iter()
            .map(|v| v.tags.keys().filter(|k| !k.starts_with("aws:")).count())
            .max()
            .unwrap_or(0);
        let label_key_on_a_volume = self
            .snapshot
            .iter()
            .any(|v| v.tags.keys().any(|k| tags.contains_key(k)));
        let copy_volume_tags = !label_key_on_a_volume
            && tags.len() + own_descriptor + most_volume_tags <= MAX_TAGS_PER_RESOURCE;
        let request = SnapshotSetRequest {
            instance_id: instance.id.clone(),
            exclude_boot_volume: boot_excluded,
            exclude_data_volumes,
            copy_volume_tags,
            description,
            tags,
        };
        (request, one_by_one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::InstanceState;
    use crate::ids::InstanceId;
    use std::time::Duration;

    fn volume(n: u8, device: &str, tags: &[(&str, &str)]) -> VolumeFacts {
        VolumeFacts {
            id: VolumeId::parse(&format!("vol-0000000{n}")).unwrap(),
            device: device.into(),
            delete_on_termination: true,
            size_gib: 8,
            volume_type: "gp3".into(),
            iops: Some(3000),
            throughput: Some(125),
            encrypted: true,
            availability_zone: "us-east-1a".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn instance() -> InstanceFacts {
        InstanceFacts {
            id: InstanceId::parse("i-0123456789abcdef0").unwrap(),
            state: InstanceState::Stopped,
            instance_type: "m5.large".into(),
            root_device_name: Some("/dev/xvda".into()),
            ebs_backed: true,
            mapped_volumes: Vec::new(),
            tags: Tags::new(),
        }
    }

    fn settings(include_boot_volume: bool) -> RescueSettings {
        RescueSettings {
            include_boot_volume,
            skip_tag: Some("lifeboat:skip".into()),
            max_attempts: 3,
            inline_wait: Duration::from_secs(60),
            retention: crate::config::Retention::OFF,
            warm_pool: crate::config::WarmPoolAction::Continue,
        }
    }

    #[test]
    fn every_volume_by_default() {
        let volumes = [
            volume(1, "/dev/xvda", &[]),
            volume(2, "/dev/sdf", &[]),
            volume(3, "/dev/sdg", &[]),
        ];
        let p = plan(&instance(), &volumes, &settings(true));
        assert_eq!(p.snapshot.len(), 3);
        assert!(p.excluded.is_empty());
        let (request, one_by_one) = p.request(&instance(), Tags::new(), "d".into());
        assert!(!request.exclude_boot_volume);
        assert!(request.exclude_data_volumes.is_empty());
        assert!(request.copy_volume_tags);
        assert!(one_by_one.is_empty());
    }

    #[test]
    fn boot_volume_out_and_a_skipped_data_volume() {
        let volumes = [
            volume(1, "/dev/xvda", &[]),
            volume(2, "/dev/sdf", &[("lifeboat:skip", "true")]),
            volume(3, "/dev/sdg", &[("lifeboat:skip", "no")]),
        ];
        let p = plan(&instance(), &volumes, &settings(false));
        assert_eq!(
            p.snapshot
                .iter()
                .map(|v| v.device.as_str())
                .collect::<Vec<_>>(),
            ["/dev/sdg"]
        );
        assert_eq!(p.excluded.len(), 2);
        let (request, _) = p.request(&instance(), Tags::new(), "d".into());
        assert!(request.exclude_boot_volume);
        assert_eq!(request.exclude_data_volumes, vec![volumes[1].id.clone()]);
    }

    #[test]
    fn a_skip_tag_on_the_boot_volume_excludes_it_through_exclude_boot_volume() {
        let volumes = [
            volume(1, "/dev/xvda", &[("lifeboat:skip", "TRUE")]),
            volume(2, "/dev/sdf", &[]),
        ];
        let p = plan(&instance(), &volumes, &settings(true));
        let (request, _) = p.request(&instance(), Tags::new(), "d".into());
        assert!(request.exclude_boot_volume);
        assert!(request.exclude_data_volumes.is_empty());
    }

    #[test]
    fn the_safest_settings_ignore_the_skip_tag() {
        let volumes = [
            volume(1, "/dev/xvda", &[]),
            volume(2, "/dev/sdf", &[("lifeboat:skip", "true")]),
        ];
        let p = plan(&instance(), &volumes, &settings(false).safest());
        assert_eq!(p.snapshot.len(), 2);
    }

    #[test]
    fn tags_stay_within_fifty_per_snapshot() {
        let many: Vec<(String, String)> = (0..45)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let many_refs: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let volumes = [volume(1, "/dev/xvda", &many_refs)];
        let p = plan(&instance(), &volumes, &settings(true));
        let label: Tags = (0..10)
            .map(|i| (format!("lifeboat:x{i}"), "v".to_string()))
            .collect();
        let (request, _) = p.request(&instance(), label, "d".into());
        assert!(
            !request.copy_volume_tags,
            "10 label tags + 45 copied would exceed 50"
        );

        let label: Tags = (0..9)
            .map(|i| (format!("lifeboat:x{i}"), "v".to_string()))
            .chain((10..55).map(|i| {
                (
                    format!("{VOLUME_PREFIX}vol-000000{i}"),
                    "device=/dev/sdx type=gp3".to_string(),
                )
            }))
            .collect();
        let (request, one_by_one) =
            plan(&instance(), &[], &settings(true)).request(&instance(), label, "d".into());
        assert_eq!(request.tags.len(), 9);
        assert_eq!(one_by_one.len(), 45);
    }

    #[test]
    fn copied_tags_leave_room_for_the_descriptor_written_after_creation() {
        // 9 label tags, descriptors that do not fit (so each snapshot gets its own afterwards)
        // and a volume with 41 tags of its own: 9 + 41 fit, 9 + 41 + 1 do not.
        let own: Vec<(String, String)> = (0..41)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let label = |volumes: &[VolumeFacts]| -> Tags {
            (0..9)
                .map(|i| (format!("lifeboat:x{i}"), "v".to_string()))
                .chain((0..42).map(|i| {
                    let id = volumes
                        .get(i)
                        .map_or(format!("vol-1{i:07}"), |v| v.id.to_string());
                    (
                        format!("{VOLUME_PREFIX}{id}"),
                        "device=/dev/sdx type=gp3".into(),
                    )
                }))
                .collect()
        };
        let volumes = [
            volume(1, "/dev/xvda", &[]),
            volume(2, "/dev/sdf", &own[..40]),
        ];
        let (request, one_by_one) = plan(&instance(), &volumes, &settings(true)).request(
            &instance(),
            label(&volumes),
            "d".into(),
        );
        assert_eq!(one_by_one.len(), 42);
        assert!(request.copy_volume_tags, "9 + 40 + 1 fit in 50");
        let volumes = [volume(1, "/dev/xvda", &[]), volume(2, "/dev/sdf", &own)];
        let (request, _) = plan(&instance(), &volumes, &settings(true)).request(
            &instance(),
            label(&volumes),
            "d".into(),
        );
        assert!(!request.copy_volume_tags, "9 + 41 + 1 would be 51");
    }

    #[test]
    fn a_set_taken_again_covers_the_rescues_volumes_and_leaves_out_the_rest() {
        let volumes = [
            volume(1, "/dev/xvda", &[]),
            volume(2, "/dev/sdf", &[]),
            volume(3, "/dev/sdg", &[]),
        ];
        let wanted: BTreeSet<&VolumeId> = [&volumes[1].id].into_iter().collect();
        let p = Plan::covering(&instance(), &volumes, &wanted);
        let (request, _) = p.request(&instance(), Tags::new(), "d".into());
        assert!(request.exclude_boot_volume);
        assert_eq!(request.exclude_data_volumes, vec![volumes[2].id.clone()]);
        let everything: BTreeSet<&VolumeId> = volumes.iter().map(|v| &v.id).collect();
        let (request, _) = Plan::covering(&instance(), &volumes, &everything).request(
            &instance(),
            Tags::new(),
            "d".into(),
        );
        assert!(!request.exclude_boot_volume && request.exclude_data_volumes.is_empty());
    }

    #[test]
    fn a_label_key_on_a_volume_is_not_copied_over_lifeboats_own() {
        let volumes = [volume(1, "/dev/xvda", &[("lifeboat:state", "failed")])];
        let p = plan(&instance(), &volumes, &settings(true));
        let label = Tags::from([("lifeboat:state".to_string(), "pending".to_string())]);
        let (request, _) = p.request(&instance(), label, "d".into());
        assert!(!request.copy_volume_tags);
    }
}
