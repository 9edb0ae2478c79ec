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
        stateless: false,
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
            tagged_protected: true,
        },
        hooks,
        instances: vec![db],
        latest_snapshots: snapshot_days_ago
            .map(|days| {
                ["vol-0000000000000000a", "vol-0000000000000000b"]
                    .into_iter()
                    .map(|id| {
                        (
                            VolumeId::parse(id).unwrap(),
                            now - chrono::Duration::days(days),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        stateless_volumes: BTreeSet::new(),
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
                "volumes deleted on termination with no snapshot in the last 7d 00h"
            ),
            (
                Severity::Medium,
                "the instance lifecycle policy does not retain on abandon"
            ),
        ]
    );
    assert!(found[1].finding.contains("/dev/sdf vol-0000000000000000b"));
    assert!(
        found[1]
            .finding
            .contains("/dev/xvda vol-0000000000000000a (boot)"),
        "the boot volume dies with the instance too: {}",
        found[1].finding
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
            "volumes deleted on termination (a recent snapshot exists)"
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

#[test]
fn a_single_root_volume_instance_is_the_storys_risk_unless_marked_stateless() {
    // GIVEN the story's machine: API, PostgreSQL and MongoDB in containers on one root volume,
    // deleted on termination, never snapshotted, in a group with no hook
    let now = Utc::now();
    let mut facts = facts(vec![], true, None, now);
    facts.instances[0].devices.truncate(1);
    // THEN it is a high finding naming the boot volume
    let found = findings(&facts, &settings(), now);
    let risk = found
        .iter()
        .find(|f| f.subject == "i-0000000000000000a")
        .expect("the instance is flagged");
    assert_eq!(risk.severity, Severity::High);
    assert!(risk
        .finding
        .contains("/dev/xvda vol-0000000000000000a (boot)"));
    assert!(risk.fix.contains("Key=lifeboat:stateless,Value=true"));
    // WHEN the volume, or the whole instance, is marked stateless THEN it is not counted
    let mut volume_marked = facts.clone();
    volume_marked
        .stateless_volumes
        .insert(VolumeId::parse("vol-0000000000000000a").unwrap());
    let mut instance_marked = facts.clone();
    instance_marked.instances[0].stateless = true;
    for marked in [volume_marked, instance_marked] {
        let found = findings(&marked, &settings(), now);
        assert!(
            found.iter().all(|f| f.subject != "i-0000000000000000a"),
            "{found:?}"
        );
    }
}

#[test]
fn a_hooked_group_without_the_protected_tag_is_named() {
    // GIVEN a well-set group that is not tagged lifeboat:protected=true (the template's
    // default GroupScope lets the role complete only tagged groups' actions)
    let now = Utc::now();
    let mut untagged = facts(
        vec![hook("lifeboat", 900, "ABANDON", None)],
        true,
        Some(1),
        now,
    );
    untagged.group.tagged_protected = false;
    // THEN a medium finding says so, with the tag command
    let found = findings(&untagged, &settings(), now);
    let named = found
        .iter()
        .find(|f| f.finding.starts_with("not tagged lifeboat:protected=true"))
        .expect("named");
    assert_eq!(named.severity, Severity::Medium);
    assert!(named.fix.contains("Key=lifeboat:protected,Value=true"));
    // …and a group lifeboat's hook does not reach is not asked for the tag
    untagged.hooks.clear();
    let found = findings(&untagged, &settings(), now);
    assert!(found.iter().all(|f| !f.finding.starts_with("not tagged")));
}
