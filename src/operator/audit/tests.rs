//! The audit's findings as a table of groups: each risk found where it is, and only there.

use super::*;
use crate::aws::operator::DeviceView;
use crate::aws::InstanceState;
use crate::ids::GroupName;

fn settings() -> AuditSettings {
    AuditSettings {
        hook_names: vec![HookName::parse("lifeboat").unwrap()],
        sweep_interval: Duration::from_secs(300),
        snapshot_age: chrono::Duration::days(7),
    }
}

fn hook(name: &str, heartbeat: u64, default_result: &str, metadata: Option<&str>) -> HookView {
    HookView {
        name: HookName::parse(name).unwrap(),
        transition: TERMINATING.into(),
        heartbeat_timeout: Duration::from_secs(heartbeat),
        global_timeout: Duration::from_secs((heartbeat * 100).min(172_800)),
        default_result: default_result.into(),
        notification_metadata: metadata.map(str::to_owned),
    }
}

fn instance(id: &str) -> InstanceView {
    InstanceView {
        id: InstanceId::parse(id).unwrap(),
        state: InstanceState::Running,
        availability_zone: "us-east-1a".into(),
        root_device_name: Some("/dev/xvda".into()),
        devices: vec![
            DeviceView {
                device: "/dev/xvda".into(),
                volume_id: VolumeId::parse("vol-0000000000000000a").unwrap(),
                delete_on_termination: true,
            },
            DeviceView {
                device: "/dev/sdf".into(),
                volume_id: VolumeId::parse("vol-0000000000000000b").unwrap(),
                delete_on_termination: true,
            },
        ],
    }
}

fn facts(
    hooks: Vec<HookView>,
    retains: bool,
    snapshot_days_ago: Option<i64>,
    now: DateTime<Utc>,
) -> GroupFacts {
    let db = instance("i-0000000000000000a");
    GroupFacts {
        group: GroupView {
            name: GroupName::parse("api-db").unwrap(),
            instances: vec![(db.id.clone(), "InService".into())],
            retains_on_hook_abandon: retains,
        },
        hooks,
        instances: vec![db],
        latest_snapshots: snapshot_days_ago
            .map(|days| {
                BTreeMap::from([(
                    VolumeId::parse("vol-0000000000000000b").unwrap(),
                    now - chrono::Duration::days(days),
                )])
            })
            .unwrap_or_default(),
    }
}

fn summary(found: &[Finding]) -> Vec<(Severity, &str)> {
    found
        .iter()
        .map(|f| (f.severity, f.finding.split(':').next().unwrap_or_default()))
        .collect()
}

#[test]
fn the_storys_group_has_every_high_risk() {
    // GIVEN no hook, no retention, a data volume deleted on termination, never snapshotted
    let now = Utc::now();
    let found = findings(&facts(vec![], false, None, now), &settings(), now);
    // THEN the missing hook and the unsaved volume are high, the policy medium
    assert_eq!(
        summary(&found),
        [
            (Severity::High, "no termination lifecycle hook"),
            (
                Severity::High,
                "data volumes deleted on termination with no snapshot in the last 7d 00h"
            ),
            (
                Severity::Medium,
                "the instance lifecycle policy does not retain on abandon"
            ),
        ]
    );
    assert!(found[1].finding.contains("/dev/sdf vol-0000000000000000b"));
    assert!(
        !found[1].finding.contains("/dev/xvda"),
        "the boot volume is not a data volume"
    );
    assert!(found[0].fix.contains("--default-result ABANDON"));
}

#[test]
fn a_well_set_group_has_only_the_low_note_of_its_data_volume() {
    let now = Utc::now();
    let found = findings(
        &facts(
            vec![hook("lifeboat", 900, "ABANDON", None)],
            true,
            Some(1),
            now,
        ),
        &settings(),
        now,
    );
    assert_eq!(
        summary(&found),
        [(
            Severity::Low,
            "data volumes deleted on termination (a recent snapshot exists)"
        )]
    );
}

#[test]
fn each_bad_hook_setting_is_found_and_an_old_snapshot_is_medium_under_a_working_hook() {
    let now = Utc::now();
    let cases = [
        (
            hook("lifeboat", 120, "ABANDON", None),
            Severity::High,
            "heartbeat timeout 120 s is shorter",
        ),
        (
            hook("lifeboat", 900, "CONTINUE", None),
            Severity::High,
            "default result CONTINUE",
        ),
        (
            hook("lifeboat", 900, "ABANDON", Some("{\"exclude_boot\": 3}")),
            Severity::Medium,
            "NotificationMetadata override",
        ),
        (
            hook("other", 900, "ABANDON", None),
            Severity::High,
            "no termination hook reaches lifeboat",
        ),
    ];
    for (hook, severity, start) in cases {
        let found = findings(&facts(vec![hook], true, Some(30), now), &settings(), now);
        assert!(
            found
                .iter()
                .any(|f| f.severity == severity && f.finding.starts_with(start)),
            "{start}: {found:#?}"
        );
    }
    let found = findings(
        &facts(
            vec![hook("lifeboat", 900, "ABANDON", None)],
            true,
            Some(30),
            now,
        ),
        &settings(),
        now,
    );
    assert_eq!(summary(&found)[0].0, Severity::Medium, "{found:#?}");
}

#[test]
fn a_short_global_limit_is_a_low_note() {
    // GIVEN a sweep every minute, so a 150 s heartbeat holds, but its global limit is 4 h
    let now = Utc::now();
    let every_minute = AuditSettings {
        sweep_interval: Duration::from_secs(60),
        ..settings()
    };
    let found = findings(
        &facts(
            vec![hook("lifeboat", 150, "ABANDON", None)],
            true,
            Some(1),
            now,
        ),
        &every_minute,
        now,
    );
    assert!(
        found
            .iter()
            .any(|f| f.severity == Severity::Low && f.finding.starts_with("global limit 4h 10m")),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.severity > Severity::Low),
        "{found:#?}"
    );
}
