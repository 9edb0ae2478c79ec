//! End to end: lifeboat through the real AWS SDK, over HTTP, against the local AWS (moto with
//! the harness's Terminating:Wait, lifecycle calls, snapshots that take time, faults, outbox and
//! ledger). Each test sets a scene, lets AWS's events reach lifeboat, and checks the world.

mod support;

use aws_sdk_autoscaling::types::LifecycleState;
use serde_json::json;

use lifeboat::report::Outcome;
use support::{snapshot_encryption, snapshots_of, tag, World};

const STORY_DEVICES: [&str; 3] = ["/dev/sda1", "/dev/sdf", "/dev/sdg"];

/// GIVEN the story: one instance running the API (boot volume), PostgreSQL (/dev/sdf) and
/// MongoDB (/dev/sdg); it is stopped; the group's health check replaces it.
async fn the_story(w: &World) -> (String, Vec<(String, String)>) {
    let instances = w.group("api-db", 1, &STORY_DEVICES, 900).await;
    let original = instances[0].clone();
    let volumes = w.volumes_of(&original).await;
    w.ec2
        .stop_instances()
        .instance_ids(&original)
        .send()
        .await
        .unwrap();
    let replaced = w.aws.control("health-check", Some(json!({})));
    assert_eq!(replaced["replaced"][0], original.as_str());
    (original, volumes)
}

#[tokio::test]
async fn the_story_ends_with_every_volume_snapshotted_before_the_instance_goes() {
    let w = World::new(&[]).await;
    w.snapshots_take(2.0, &[]);
    let (original, volumes) = the_story(&w).await;
    // The group holds the original in Terminating:Wait and has launched its replacement.
    assert_eq!(
        w.instances("api-db", LifecycleState::TerminatingWait).await,
        std::slice::from_ref(&original)
    );
    assert_eq!(
        w.instances("api-db", LifecycleState::InService).await.len(),
        1
    );
    // WHEN EventBridge delivers the termination event
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    assert_eq!(events.len(), 1);
    let report = w.deliver(&events[0]).await.unwrap();
    // THEN lifeboat released it, after every volume had a completed snapshot
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    assert_eq!(w.instance_state(&original).await, "terminated");
    for (device, volume) in &volumes {
        let snapshots = snapshots_of(&w.ec2, volume).await;
        assert_eq!(snapshots.len(), 1, "{device}");
        let (_, state, tags) = &snapshots[0];
        assert_eq!(state, "completed");
        assert_eq!(tag(tags, "lifeboat:instance-id"), Some(original.as_str()));
        assert_eq!(tag(tags, "lifeboat:state"), Some("released"));
        let descriptor = tag(tags, &format!("lifeboat:volume:{volume}")).unwrap();
        assert!(
            descriptor.starts_with(&format!("device={device} ")),
            "{descriptor}"
        );
    }
    assert_eq!(
        w.ledger().calls("ec2:CreateSnapshots"),
        1,
        "one crash-consistent set"
    );
    // Encryption is preserved: the data volumes' snapshots carry their customer managed key.
    for (device, volume) in volumes.iter().filter(|(d, _)| d != "/dev/sda1") {
        let encryption = snapshot_encryption(&w.ec2, volume).await;
        assert_eq!(
            encryption,
            [(true, Some(support::DATA_KEY.to_owned()))],
            "{device}"
        );
    }
    // AND the account's bus heard the rescue start and end, with its instance, group, volumes
    // and snapshots
    let told = w.ledger().events_published();
    let kinds: Vec<&str> = told.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["Lifeboat Rescue Started", "Lifeboat Rescue Released"]
    );
    let released = &told[1].1;
    assert_eq!(released["instance_id"], original.as_str());
    assert_eq!(released["group"], "api-db");
    assert_eq!(released["volumes"].as_array().unwrap().len(), volumes.len());
    assert!(released["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["snapshot_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("snap-"))));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_scale_in_of_several_instances_rescues_each_of_them() {
    let w = World::new(&[]).await;
    w.snapshots_take(1.0, &[]);
    let instances = w.group("workers", 4, &["/dev/sda1", "/dev/sdf"], 900).await;
    w.asg
        .set_desired_capacity()
        .auto_scaling_group_name("workers")
        .desired_capacity(1)
        .send()
        .await
        .unwrap();
    let waiting = w
        .instances("workers", LifecycleState::TerminatingWait)
        .await;
    assert_eq!(waiting.len(), 3);
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let reports = futures_util::future::join_all(events.iter().map(|e| w.deliver(e))).await;
    for report in reports {
        assert_eq!(report.unwrap().rescues[0].outcome, Outcome::Released);
    }
    for instance in &waiting {
        assert_eq!(w.instance_state(instance).await, "terminated");
    }
    assert_eq!(
        w.instances("workers", LifecycleState::InService)
            .await
            .len(),
        1
    );
    assert!(instances.len() == 4);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn snapshots_pending_beyond_the_inline_wait_are_released_by_the_completion_event() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    w.snapshots_take(3.0, &[]);
    let (original, _) = the_story(&w).await;
    let termination = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let report = w.deliver(&termination[0]).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Waiting);
    assert_eq!(w.instance_state(&original).await, "stopped", "still held");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let completions = w.take_events_of("EBS Multi-Volume Snapshots Completion Status");
    assert_eq!(completions.len(), 1);
    let report = w.deliver(&completions[0]).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    assert_eq!(w.instance_state(&original).await, "terminated");
    w.assert_no_data_lost();
}

#[tokio::test]
async fn with_the_completion_event_dropped_the_sweep_releases_the_rescue() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    w.snapshots_take(2.0, &[]);
    let (original, _) = the_story(&w).await;
    let termination = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    assert_eq!(
        w.deliver(&termination[0]).await.unwrap().rescues[0].outcome,
        Outcome::Waiting
    );
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    // The completion event is lost.
    assert_eq!(
        w.take_events_of("EBS Multi-Volume Snapshots Completion Status")
            .len(),
        1
    );
    let report = w.sweep().await;
    assert_eq!(report.count(Outcome::Released), 1);
    assert_eq!(w.instance_state(&original).await, "terminated");
    w.assert_no_data_lost();
}

#[tokio::test]
async fn with_the_termination_event_lost_the_sweep_starts_the_rescue() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    w.snapshots_take(0.5, &[]);
    let (original, volumes) = the_story(&w).await;
    // The lifecycle event never reaches lifeboat.
    w.take_events();
    let first = w.sweep().await;
    assert_eq!(first.rescues.len(), 1, "{first:?}");
    // The snapshots complete in 0.5 s; EC2 lists them 2 s after their creation (eventual
    // consistency), and the next sweep comes after that.
    tokio::time::sleep(std::time::Duration::from_millis(2700)).await;
    let second = w.sweep().await;
    assert_eq!(second.count(Outcome::Released), 1);
    assert_eq!(w.instance_state(&original).await, "terminated");
    for (_, volume) in &volumes {
        assert_eq!(snapshots_of(&w.ec2, volume).await.len(), 1);
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_snapshot_in_error_is_taken_again() {
    let w = World::new(&[]).await;
    let instances = w.group("api-db", 1, &STORY_DEVICES, 900).await;
    let volumes = w.volumes_of(&instances[0]).await;
    let postgres = volumes
        .iter()
        .find(|(d, _)| d == "/dev/sdf")
        .unwrap()
        .1
        .clone();
    w.snapshots_take(1.0, &[(&postgres, &["error", "completed"])]);
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&instances[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let report = w.deliver(&events[0]).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    let snapshots = snapshots_of(&w.ec2, &postgres).await;
    assert_eq!(snapshots.len(), 2);
    assert!(
        snapshots
            .iter()
            .any(|(_, state, tags)| state == "completed"
                && tag(tags, "lifeboat:attempt") == Some("2"))
    );
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_volume_that_never_snapshots_fails_safe_and_is_kept() {
    // Three sets, each failing whole, each taken again no sooner than EC2's 15 s between
    // snapshots of a volume allow: a minute inline.
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "60")]).await;
    let instances = w.group("api-db", 1, &STORY_DEVICES, 900).await;
    let volumes = w.volumes_of(&instances[0]).await;
    let mongo = volumes
        .iter()
        .find(|(d, _)| d == "/dev/sdg")
        .unwrap()
        .1
        .clone();
    w.snapshots_take(0.5, &[(&mongo, &["error", "error", "error"])]);
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&instances[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let report = w.deliver(&events[0]).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::FailedSafe);
    assert_eq!(
        w.ledger().completion(&instances[0]),
        Some(("ABANDON".into(), "api".into()))
    );
    // The unsaved volume survived the termination, tagged for the operator.
    let kept = w
        .ec2
        .describe_volumes()
        .volume_ids(&mongo)
        .send()
        .await
        .unwrap();
    let kept = &kept.volumes()[0];
    assert_eq!(kept.state().map(|s| s.as_str()), Some("available"));
    assert!(kept
        .tags()
        .iter()
        .any(|t| t.key() == Some("lifeboat:kept-by") && t.value() == Some(instances[0].as_str())));
    // AND the bus heard the fail-safe, with its reason and the kept volume
    let told = w.ledger().events_published();
    let (kind, detail) = told.last().unwrap();
    assert_eq!(kind, "Lifeboat Rescue Failed Safe");
    assert!(detail["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(detail["kept_volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["volume_id"] == mongo.as_str()));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_volume_stuck_pending_fails_safe_before_the_global_timeout_and_retain_keeps_the_instance()
{
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    let instances = w.group("api-db", 1, &STORY_DEVICES, 300).await;
    w.aws
        .control("retain-on-abandon", Some(json!({"group": "api-db"})));
    let volumes = w.volumes_of(&instances[0]).await;
    let mongo = volumes
        .iter()
        .find(|(d, _)| d == "/dev/sdg")
        .unwrap()
        .1
        .clone();
    w.snapshots_take(0.0, &[(&mongo, &["never"])]);
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&instances[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    assert_eq!(
        w.deliver(&events[0]).await.unwrap().rescues[0].outcome,
        Outcome::Waiting
    );
    // Hours pass, with a sweep every four minutes (the hook's global timeout is 100 × 300 s).
    let mut outcome = Outcome::Waiting;
    let mut hours = 0.0;
    while outcome == Outcome::Waiting {
        w.advance(240);
        hours += 240.0 / 3600.0;
        outcome = w.sweep().await.rescues[0].outcome;
        assert!(hours < 8.4, "still waiting after the global timeout");
    }
    assert_eq!(outcome, Outcome::FailedSafe);
    assert!(hours > 7.5, "failed safe only near the end ({hours:.1} h)");
    assert_eq!(
        w.ledger().completion(&instances[0]),
        Some(("ABANDON".into(), "api".into()))
    );
    assert_eq!(
        w.instances("api-db", LifecycleState::TerminatingRetained)
            .await,
        [instances[0].clone()]
    );
    w.assert_no_data_lost();
}

#[tokio::test]
async fn throttling_on_every_operation_does_not_stop_the_rescue() {
    let w = World::new(&[]).await;
    w.snapshots_take(1.0, &[]);
    let (original, _) = the_story(&w).await;
    w.faults(json!([{"service": "*", "operation": "*", "kind": "throttle", "ratio": 0.3}]));
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let report = w.deliver(&events[0]).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    w.faults(json!([]));
    let ledger = w.ledger();
    assert!(ledger.faults_injected() > 0, "faults were injected");
    assert_eq!(w.instance_state(&original).await, "terminated");
    w.assert_no_data_lost();
}

#[tokio::test]
async fn the_same_event_delivered_three_times_at_once_releases_once() {
    let w = World::new(&[]).await;
    w.snapshots_take(1.0, &[]);
    let (original, volumes) = the_story(&w).await;
    let event = w
        .take_events_of("EC2 Instance-terminate Lifecycle Action")
        .remove(0);
    let (a, b, c) = tokio::join!(w.deliver(&event), w.deliver(&event), w.deliver(&event));
    let outcomes: Vec<Outcome> = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap().rescues[0].outcome)
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Released).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Outcome::Released | Outcome::Ended | Outcome::AlreadyFinished
    )));
    assert_eq!(
        w.ledger().completion(&original),
        Some(("CONTINUE".into(), "api".into()))
    );
    for (_, volume) in &volumes {
        let snapshots = snapshots_of(&w.ec2, volume).await;
        assert!((1..=3).contains(&snapshots.len()));
        assert!(snapshots.iter().any(|(_, state, _)| state == "completed"));
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn an_action_that_expired_is_recorded_as_ended_not_retried() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    w.snapshots_take(0.5, &[]);
    let (original, volumes) = the_story(&w).await;
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    assert_eq!(
        w.deliver(&events[0]).await.unwrap().rescues[0].outcome,
        Outcome::Waiting
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // Nothing reaches lifeboat for longer than the hook's heartbeat timeout: the hook's default
    // result (ABANDON) applies and the instance is terminated.
    w.advance(901);
    assert_eq!(
        w.ledger().completion(&original),
        Some(("ABANDON".into(), "heartbeat-timeout".into()))
    );
    let completion = w.take_events_of("EBS Multi-Volume Snapshots Completion Status");
    let report = w.deliver(&completion[0]).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Ended);
    // Every snapshot had completed before the hook timed out: the data is safe, and the record
    // says so.
    for (_, volume) in &volumes {
        let snapshots = snapshots_of(&w.ec2, volume).await;
        assert_eq!(tag(&snapshots[0].2, "lifeboat:state"), Some("released"));
    }
    // The next sweep has nothing left to do for it.
    assert!(w.sweep().await.rescues.is_empty());
    w.assert_no_data_lost();
}

#[tokio::test]
async fn lifeboat_replay_runs_the_handler_on_an_event_file() {
    let w = World::new(&[]).await;
    w.snapshots_take(0.5, &[]);
    let (original, _) = the_story(&w).await;
    let event = w
        .take_events_of("EC2 Instance-terminate Lifecycle Action")
        .remove(0);
    let file = std::env::temp_dir().join(format!("lifeboat-replay-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&event).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["replay"])
        .arg(&file)
        .env("AWS_ENDPOINT_URL", &w.aws.endpoint)
        .env("AWS_REGION", support::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("LIFEBOAT_POLL_INITIAL_SECONDS", "1")
        .env("LIFEBOAT_POLL_MAX_SECONDS", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document on stdout");
    assert_eq!(report["rescues"][0]["outcome"], "released");
    assert_eq!(report["rescues"][0]["instance_id"], original.as_str());
    // A malformed event: non-zero, and the message names the field.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["replay"])
        .arg(support::repo_path(
            "events/malformed-missing-instance-id.json",
        ))
        .env("AWS_ENDPOINT_URL", &w.aws.endpoint)
        .env("AWS_REGION", support::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("detail.EC2InstanceId"));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn the_happy_path_costs_eight_calls_besides_the_polls() {
    let w = World::new(&[]).await;
    w.snapshots_take(2.5, &[]);
    let instances = w.group("api-db", 1, &STORY_DEVICES, 900).await;
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&instances[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let event = w
        .take_events_of("EC2 Instance-terminate Lifecycle Action")
        .remove(0);
    let before = w.ledger();
    let report = w.deliver(&event).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    let after = w.ledger();
    // What lifeboat needed: a request repeated because its response was lost (the local AWS
    // loses one in a hundred) is counted once.
    let delta = |op: &str| after.needed(op) - before.needed(op);
    let polls = delta("ec2:DescribeSnapshots");
    let calls: Vec<(&str, u64)> = [
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
        "ec2:DescribeInstanceTypes",
        "ec2:CreateSnapshots",
        "ec2:CreateSnapshot",
        "ec2:CreateTags",
        "ec2:ModifyInstanceAttribute",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:DescribeLifecycleHooks",
    ]
    .into_iter()
    .map(|op| (op, delta(op)))
    .filter(|(_, n)| *n > 0)
    .collect();
    let others: u64 = calls.iter().map(|(_, n)| n).sum();
    // DescribeInstances, DescribeVolumes; keep first: CreateTags, ModifyInstanceAttribute;
    // CreateSnapshots; the polls; give back: ModifyInstanceAttribute; CompleteLifecycleAction;
    // the record: CreateTags. No look-up of earlier snapshots: nothing was kept before, so none
    // can exist.
    assert!(
        others <= 8,
        "{others} calls besides {polls} polls: {calls:?}"
    );
    assert_eq!(
        delta("ec2:ModifyInstanceAttribute"),
        2,
        "keep, then give back"
    );
    // Pauses of 1 s are jittered down to 0.5 s: a 2.5 s snapshot, visible 2 s after its
    // creation, takes 3 to 6 rounds, one poll each for the three volumes together (polling per
    // volume would make 9 or more).
    assert!(
        (1..=6).contains(&polls),
        "{polls} polls for a 2.5 s snapshot with pauses of 0.5-1 s"
    );
    w.assert_no_data_lost();
}
