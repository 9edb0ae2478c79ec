//! The restore plan: what it refuses before changing anything, and what it carries over.

use super::*;
use crate::aws::operator::DeviceView;
use crate::ids::{GroupName, HookName};
use crate::operator::list::{RescuedVolume, SetResult};

fn volume(device: &str, id: &str, state: Option<SnapshotState>) -> RescuedVolume {
    RescuedVolume {
        device: device.into(),
        placed: true,
        volume_id: VolumeId::parse(id).unwrap(),
        snapshot_id: state.map(|_| SnapshotId::parse(&id.replace("vol-", "snap-")).unwrap()),
        state,
        progress: None,
        size_gib: Some(20),
        volume_type: "io2".into(),
        iops: Some(4000),
        throughput: None,
        encrypted: true,
        kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/k1".into()),
        volume_tags: Tags::from([("Name".into(), "postgres".into())]),
        tier: crate::aws::StorageTier::Standard,
        restored_until: None,
        copy: None,
    }
}

fn set(volumes: Vec<RescuedVolume>) -> RescuedSet {
    RescuedSet {
        instance_id: InstanceId::parse("i-0000000000000000a").unwrap(),
        group: GroupName::parse("api-db").unwrap(),
        hook: HookName::parse("lifeboat").unwrap(),
        started_at: Utc::now(),
        held_since: None,
        result: SetResult::Released,
        record_complete: true,
        expiry: None,
        volumes,
    }
}

fn new_instance(state: InstanceState, devices: &[&str]) -> InstanceView {
    InstanceView {
        id: InstanceId::parse("i-0000000000000000b").unwrap(),
        state,
        availability_zone: "us-east-1b".into(),
        root_device_name: Some("/dev/xvda".into()),
        devices: devices
            .iter()
            .enumerate()
            .map(|(i, d)| DeviceView {
                device: (*d).into(),
                volume_id: VolumeId::parse(&format!("vol-0000000000000001{i}")).unwrap(),
                delete_on_termination: true,
            })
            .collect(),
        stateless: false,
    }
}

fn request(map: &[(&str, &str)]) -> RestoreRequest {
    RestoreRequest {
        from: InstanceId::parse("i-0000000000000000a").unwrap(),
        target: Target::Instance(InstanceId::parse("i-0000000000000000b").unwrap()),
        device_map: map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        include_boot: false,
        dry_run: true,
        poll: Duration::from_millis(10),
        patience: Duration::from_secs(1),
    }
}

fn complete() -> RescuedSet {
    set(vec![
        volume(
            "/dev/xvda",
            "vol-0000000000000000a",
            Some(SnapshotState::Completed),
        ),
        volume(
            "/dev/sdf",
            "vol-0000000000000000b",
            Some(SnapshotState::Completed),
        ),
    ])
}

#[test]
fn a_complete_set_plans_its_data_volumes_in_the_targets_zone_as_they_were() {
    let target = new_instance(InstanceState::Stopped, &["/dev/xvda"]);
    let facts = TargetFacts {
        instance: Some(&target),
        zone: None,
        old: None,
    };
    let plan = plan(&complete(), &request(&[]), &facts).unwrap();
    assert_eq!(plan.availability_zone, "us-east-1b");
    assert_eq!(plan.volumes.len(), 1, "the boot volume is left out");
    assert_eq!(plan.skipped[0].device, "/dev/xvda");
    let v = &plan.volumes[0];
    assert_eq!(v.device.as_deref(), Some("/dev/sdf"));
    assert_eq!(
        (v.volume_type.as_str(), v.iops, v.encrypted),
        ("io2", Some(4000), true)
    );
    assert_eq!(
        v.kms_key_id.as_deref(),
        Some("arn:aws:kms:us-east-1:123456789012:key/k1")
    );
    assert_eq!(v.tags.get("Name").map(String::as_str), Some("postgres"));
    assert_eq!(
        v.tags.get(RESTORED_FROM_VOLUME).map(String::as_str),
        Some("vol-0000000000000000b")
    );
}

#[test]
fn refusals_come_before_any_change_and_say_what_to_do() {
    let running = new_instance(InstanceState::Running, &["/dev/xvda", "/dev/sdf"]);
    let stopping = new_instance(InstanceState::Stopping, &["/dev/xvda"]);
    let free = new_instance(InstanceState::Running, &["/dev/xvda"]);
    let incomplete = set(vec![
        volume(
            "/dev/sdf",
            "vol-0000000000000000b",
            Some(SnapshotState::Completed),
        ),
        volume(
            "/dev/sdg",
            "vol-0000000000000000c",
            Some(SnapshotState::Pending),
        ),
    ]);
    let on = |t: &'static InstanceView| TargetFacts {
        instance: Some(t),
        zone: None,
        old: None,
    };
    let running: &'static InstanceView = Box::leak(Box::new(running));
    let stopping: &'static InstanceView = Box::leak(Box::new(stopping));
    let free: &'static InstanceView = Box::leak(Box::new(free));
    let mut unplaced = complete();
    unplaced.volumes[1].placed = false;
    unplaced.volumes[1].device = "unknown".into();
    unplaced.record_complete = false;
    let cases: Vec<(RescuedSet, RestoreRequest, TargetFacts<'_>, &str)> = vec![
        (
            unplaced,
            request(&[]),
            on(free),
            "record of the rescued set of i-0000000000000000a is incomplete: nothing says at which device these volumes were attached: vol-",
        ),
        (
            incomplete,
            request(&[]),
            on(free),
            "is incomplete: /dev/sdg (vol-0000000000000000c) has a snapshot in state pending",
        ),
        (
            complete(),
            request(&[]),
            on(stopping),
            "not running or stopped",
        ),
        (
            complete(),
            request(&[]),
            on(running),
            "device /dev/sdf of i-0000000000000000b is taken by vol-00000000000000011",
        ),
        (
            complete(),
            request(&[("/dev/sdz", "/dev/sdm")]),
            on(free),
            "--device-map \"/dev/sdz\": not a device of the rescued set",
        ),
        (
            complete(),
            request(&[]),
            TargetFacts {
                instance: None,
                zone: None,
                old: None,
            },
            "EC2 does not know the instance",
        ),
    ];
    for (set, request, facts, expected) in cases {
        let err = plan(&set, &request, &facts).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // A device map moves a volume off a taken device.
    let plan = plan(
        &complete(),
        &request(&[("/dev/sdf", "/dev/sdm")]),
        &on(running),
    )
    .unwrap();
    assert_eq!(plan.volumes[0].device.as_deref(), Some("/dev/sdm"));
}

#[test]
fn the_boot_volume_comes_only_when_asked_and_a_zone_target_attaches_nothing() {
    let mut asked = request(&[]);
    asked.include_boot = true;
    asked.target = Target::Zone("us-east-1c".into());
    let plan = plan(
        &complete(),
        &asked,
        &TargetFacts {
            instance: None,
            zone: Some("us-east-1c"),
            old: None,
        },
    )
    .unwrap();
    assert_eq!(plan.volumes.len(), 2);
    assert!(plan.volumes.iter().all(|v| v.device.is_none()));
    assert_eq!(plan.availability_zone, "us-east-1c");
    assert!(plan.to.is_none());
}
