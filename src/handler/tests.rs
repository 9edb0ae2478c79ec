//! Every row of DESIGN's event table, through `Lifeboat::handle` over the in-memory AWS:
//! GIVEN a world, WHEN an event (from `events/` where one fits) arrives, THEN the world.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;
use crate::aws::fake::{FakeCloud, Fate};
use crate::aws::SnapshotStore;
use crate::clock::FakeClock;
use crate::ids::InstanceId;
use crate::telemetry::MetricSink;

const GROUP: &str = "api-db";

fn lifeboat() -> Lifeboat<FakeCloud, Arc<FakeClock>> {
    let clock = Arc::new(FakeClock::at(
        DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let cloud = FakeCloud::new(clock.clone());
    cloud.add_hook(GROUP, "lifeboat", 900, None);
    Lifeboat {
        cloud,
        clock,
        config: Config::from_lookup(|_| None).unwrap(),
        metrics: Metrics::new("Lifeboat", MetricSink::Memory(Mutex::new(Vec::new()))),
    }
}

fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A sample lifecycle event, pointed at `instance`, sent now.
fn lifecycle_event(
    lb: &Lifeboat<FakeCloud, Arc<FakeClock>>,
    name: &str,
    instance: &InstanceId,
) -> Value {
    let mut event = sample(name);
    event["detail"]["EC2InstanceId"] = json!(instance.as_str());
    event["detail"]["NotificationMetadata"] = json!("");
    event["time"] = json!(lb.clock.now().to_rfc3339());
    event
}

fn deadline(lb: &Lifeboat<FakeCloud, Arc<FakeClock>>) -> DateTime<Utc> {
    lb.clock.now() + chrono::Duration::seconds(900)
}

#[tokio::test]
async fn the_termination_event_rescues_the_instance() {
    let lb = lifeboat();
    let (instance, volumes) = lb
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
    let report = lb
        .handle(
            lifecycle_event(&lb, "termination.json", &instance),
            deadline(&lb),
        )
        .await
        .unwrap();
    assert_eq!(report.event, EventKind::Termination);
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    for v in &volumes {
        assert_eq!(lb.cloud.snapshots_of(v).len(), 1);
    }
    assert!(lb.cloud.deleted_unsaved().is_empty());
}

#[tokio::test]
async fn a_termination_of_a_hook_lifeboat_does_not_serve_is_ignored_without_a_call() {
    let lb = lifeboat();
    let (instance, _) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    let mut event = lifecycle_event(&lb, "termination.json", &instance);
    event["detail"]["LifecycleHookName"] = json!("drain-connections");
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert!(report.note.unwrap().contains("LIFEBOAT_HOOK_NAMES"));
    assert!(lb.cloud.calls().is_empty());
}

#[tokio::test]
async fn a_warm_pool_scale_in_is_continued_at_once_without_a_snapshot() {
    let lb = lifeboat();
    let (instance, volumes) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    let event = lifecycle_event(&lb, "warm-pool-scale-in.json", &instance);
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert_eq!(report.event, EventKind::WarmPoolScaleIn);
    assert_eq!(lb.cloud.calls(), ["CompleteLifecycleAction"]);
    assert!(lb.cloud.snapshots_of(&volumes[0]).is_empty());
}

#[tokio::test]
async fn a_termination_out_of_the_warm_pool_is_rescued() {
    let lb = lifeboat();
    let (instance, volumes) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    let event = lifecycle_event(&lb, "termination-from-warm-pool.json", &instance);
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    assert_eq!(lb.cloud.snapshots_of(&volumes[0]).len(), 1);
}

#[tokio::test]
async fn launch_hooks_and_test_notifications_touch_nothing() {
    for name in [
        "launch.json",
        "test-notification.json",
        "test-notification-sns.json",
        "test-notification-sqs.json",
        "snapshot-copied.json",
    ] {
        let lb = lifeboat();
        let report = lb.handle(sample(name), deadline(&lb)).await.unwrap();
        assert!(report.note.is_some(), "{name}");
        assert!(
            lb.cloud.calls().is_empty(),
            "{name} made calls: {:?}",
            lb.cloud.calls()
        );
    }
}

#[tokio::test]
async fn malformed_events_are_errors_naming_the_field_and_change_nothing() {
    for name in [
        "malformed-missing-instance-id.json",
        "malformed-injected-instance-id.json",
        "malformed-wrong-transition.json",
        "malformed-unknown-source.json",
        "malformed-snapshot-arn.json",
        "malformed-not-an-object.json",
        "malformed-sqs-body.json",
    ] {
        let lb = lifeboat();
        let err = lb.handle(sample(name), deadline(&lb)).await.unwrap_err();
        assert_eq!(err.error_type(), "Lifeboat.MalformedEvent", "{name}");
        assert!(err.to_string().contains("field `"), "{name}: {err}");
        assert!(lb.cloud.calls().is_empty(), "{name} made calls");
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "Lifeboat.MalformedEvent");
    }
}

#[tokio::test]
async fn a_termination_through_sqs_is_rescued_like_one_from_eventbridge() {
    let lb = lifeboat();
    let (instance, volumes) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    let mut event = sample("termination-sqs.json");
    let mut message: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    message["EC2InstanceId"] = json!(instance.as_str());
    message["Time"] = json!(lb.clock.now().to_rfc3339());
    event["Records"][0]["body"] = json!(message.to_string());
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    assert_eq!(lb.cloud.snapshots_of(&volumes[0]).len(), 1);
}

/// GIVEN a rescue left waiting by its termination event (snapshots take an hour).
async fn waiting_rescue(
    lb: &Lifeboat<FakeCloud, Arc<FakeClock>>,
) -> (InstanceId, Vec<crate::ids::VolumeId>) {
    lb.cloud.set_default_fate(Fate::completes_after(3600));
    let (instance, volumes) = lb
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    let mut event = lifecycle_event(lb, "termination.json", &instance);
    event["detail"]["NotificationMetadata"] = json!(r#"{"inline_wait_seconds": 0}"#);
    let report = lb.handle(event, deadline(lb)).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Waiting);
    (instance, volumes)
}

#[tokio::test]
async fn the_multi_volume_completion_event_releases_the_rescue() {
    let lb = lifeboat();
    let (instance, volumes) = waiting_rescue(&lb).await;
    lb.clock.advance(Duration::from_secs(3600));
    let mut event = sample("multi-volume-snapshots-completed.json");
    let arns: Vec<String> = volumes
        .iter()
        .map(|v| {
            format!(
                "arn:aws:ec2::us-east-1:snapshot/{}",
                lb.cloud.snapshots_of(v)[0].id
            )
        })
        .collect();
    event["resources"] = json!(arns);
    let snapshots: Vec<Value> = volumes
        .iter()
        .map(|v| json!({"snapshot_id": format!("arn:aws:ec2::us-east-1:snapshot/{}", lb.cloud.snapshots_of(v)[0].id), "source": "", "status": "completed"}))
        .collect();
    event["detail"]["snapshots"] = json!(snapshots);
    let before = lb.cloud.calls().len();
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    // Released in four calls: the event's snapshots (they save every volume: no second
    // look-up), the attached volumes, the kept-first volumes given back, CompleteLifecycleAction;
    // then the record, and the released event on the bus.
    let calls = lb.cloud.calls()[before..].to_vec();
    assert_eq!(
        calls,
        [
            "DescribeSnapshots",
            "DescribeVolumes",
            "ModifyInstanceAttribute",
            "CompleteLifecycleAction",
            "CreateTags",
            "PutEvents"
        ]
    );
    assert_eq!(
        lb.cloud.action(&instance).result,
        Some(crate::aws::ActionResult::Continue)
    );
    assert!(
        volumes.iter().all(|v| lb.cloud.volume(v).is_none()),
        "given back their DeleteOnTermination, the saved volumes went with the instance"
    );
    assert!(lb.cloud.deleted_unsaved().is_empty());
}

#[tokio::test]
async fn a_single_snapshot_event_in_another_arn_form_finds_its_rescue() {
    let lb = lifeboat();
    let (instance, volumes) = waiting_rescue(&lb).await;
    lb.clock.advance(Duration::from_secs(3600));
    let mut event = sample("snapshot-completed.json");
    let id = lb.cloud.snapshots_of(&volumes[1])[0].id.clone();
    event["detail"]["snapshot_id"] =
        json!(format!("arn:aws:ec2:us-east-1:123456789012:snapshot/{id}"));
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert_eq!(report.rescues[0].instance_id, instance);
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
}

#[tokio::test]
async fn a_failed_snapshot_event_takes_the_volume_again() {
    let lb = lifeboat();
    lb.cloud.set_default_fate(Fate::completes_after(3600));
    let (instance, volumes) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    lb.cloud.script(&volumes[0], &[Fate::fails_after(60)]);
    let mut event = lifecycle_event(&lb, "termination.json", &instance);
    event["detail"]["NotificationMetadata"] = json!(r#"{"inline_wait_seconds": 0}"#);
    lb.handle(event, deadline(&lb)).await.unwrap();
    lb.clock.advance(Duration::from_secs(61));
    let mut failed = sample("snapshot-failed.json");
    failed["detail"]["snapshot_id"] = json!(format!(
        "arn:aws:ec2::us-east-1:snapshot/{}",
        lb.cloud.snapshots_of(&volumes[0])[0].id
    ));
    let report = lb.handle(failed, deadline(&lb)).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Waiting);
    assert_eq!(lb.cloud.snapshots_of(&volumes[0]).len(), 2);
}

#[tokio::test]
async fn completion_events_for_snapshots_that_are_not_lifeboats_change_nothing() {
    let lb = lifeboat();
    let report = lb
        .handle(sample("snapshot-completed.json"), deadline(&lb))
        .await
        .unwrap();
    assert!(report.rescues.is_empty());
    assert_eq!(lb.cloud.calls(), ["DescribeSnapshots"]);
}

#[tokio::test]
async fn the_sweep_starts_the_rescue_whose_event_was_lost_and_holds_those_in_flight() {
    // GIVEN one rescue in flight and one instance waiting whose event never arrived
    let lb = lifeboat();
    let (in_flight, _) = waiting_rescue(&lb).await;
    let (lost, lost_volumes) = lb
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    lb.clock.advance(Duration::from_secs(600));
    let heartbeats = lb.cloud.action(&in_flight).heartbeats;
    // WHEN the sweep runs
    let report = lb
        .handle(sample("scheduled-sweep.json"), deadline(&lb))
        .await
        .unwrap();
    // THEN the lost one is rescued (started), the other held
    assert_eq!(report.rescues.len(), 2);
    for v in &lost_volumes {
        assert_eq!(lb.cloud.snapshots_of(v).len(), 1);
    }
    assert!(lb.cloud.action(&in_flight).heartbeats > heartbeats);
    assert!(lb.cloud.action(&lost).active);
    // AND a second sweep starts nothing twice
    lb.handle(sample("scheduled-sweep.json"), deadline(&lb))
        .await
        .unwrap();
    for v in &lost_volumes {
        assert_eq!(lb.cloud.snapshots_of(v).len(), 1);
    }
    // AND once the snapshots complete the sweep releases both
    lb.clock.advance(Duration::from_secs(3600));
    let report = lb
        .handle(sample("scheduled-sweep.json"), deadline(&lb))
        .await
        .unwrap();
    assert_eq!(report.count(Outcome::Released), 2);
    assert!(lb.cloud.deleted_unsaved().is_empty());
    assert!(lb.cloud.unsafe_continues().is_empty());
}

#[tokio::test]
async fn the_sweeps_reads_are_batched_not_one_per_rescue() {
    // GIVEN twenty rescues in flight
    let lb = lifeboat();
    lb.cloud.set_default_fate(Fate::completes_after(3600));
    for _ in 0..20 {
        let (instance, _) = lb
            .cloud
            .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
        let mut event = lifecycle_event(&lb, "termination.json", &instance);
        event["detail"]["NotificationMetadata"] = json!(r#"{"inline_wait_seconds": 0}"#);
        lb.handle(event, deadline(&lb)).await.unwrap();
    }
    lb.clock.advance(Duration::from_secs(300));
    let before = lb.cloud.calls().len();
    // WHEN the sweep runs
    lb.handle(sample("scheduled-sweep.json"), deadline(&lb))
        .await
        .unwrap();
    // THEN it reads with two DescribeSnapshots and one DescribeAutoScalingGroups in all
    let calls = lb.cloud.calls()[before..].to_vec();
    let count = |op: &str| calls.iter().filter(|c| **c == op).count();
    assert_eq!(count("DescribeSnapshots"), 1, "{calls:?}");
    assert_eq!(count("DescribeAutoScalingGroups"), 1);
    assert_eq!(
        count("RecordLifecycleActionHeartbeat"),
        20,
        "one heartbeat per rescue is AWS's unit"
    );
}

#[tokio::test]
async fn a_sweep_leaves_a_finished_rescue_alone_while_another_hook_holds_the_instance() {
    let lb = lifeboat();
    let (instance, volumes) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    // Another team's hook holds the instance too: it stays in Terminating:Wait after lifeboat's release.
    lb.cloud.hold_by_another_hook(&instance);
    let report = lb
        .handle(
            lifecycle_event(&lb, "termination.json", &instance),
            deadline(&lb),
        )
        .await
        .unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    lb.handle(sample("scheduled-sweep.json"), deadline(&lb))
        .await
        .unwrap();
    assert_eq!(lb.cloud.snapshots_of(&volumes[0]).len(), 1);
}

/// Crash safety: the invocation is killed after each step of a rescue in turn (any number of
/// AWS calls in); the retried event and the sweep then finish the rescue with one snapshot set,
/// no volume lost, and the action completed once.
#[tokio::test]
async fn a_rescue_killed_after_any_step_is_finished_without_a_duplicate_set() {
    let clean_run_calls = {
        let lb = lifeboat();
        let (instance, _) = lb
            .cloud
            .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
        lb.handle(
            lifecycle_event(&lb, "termination.json", &instance),
            deadline(&lb),
        )
        .await
        .unwrap();
        lb.cloud.calls().len()
    };
    assert!(clean_run_calls >= 6, "{clean_run_calls}");
    println!("a clean rescue makes {clean_run_calls} AWS calls; killing it after each of them");
    for killed_after in 0..clean_run_calls {
        // GIVEN a rescue whose first invocation dies after `killed_after` AWS calls
        let lb = lifeboat();
        let (instance, volumes) = lb
            .cloud
            .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
        let event = lifecycle_event(&lb, "termination.json", &instance);
        lb.cloud.crash_after(killed_after);
        let _ = lb.handle(event.clone(), deadline(&lb)).await;
        lb.cloud.restart();
        // WHEN Lambda retries the event a minute later, and the sweep comes round
        lb.clock.advance(Duration::from_secs(60));
        let _ = lb.handle(event, deadline(&lb)).await;
        for _ in 0..3 {
            lb.clock.advance(Duration::from_secs(300));
            lb.handle(sample("scheduled-sweep.json"), deadline(&lb))
                .await
                .unwrap();
        }
        // THEN one snapshot per volume, released once, nothing lost
        for v in &volumes {
            assert_eq!(
                lb.cloud.snapshots_of(v).len(),
                1,
                "killed after {killed_after} calls: duplicate snapshot"
            );
        }
        let action = lb.cloud.action(&instance);
        assert_eq!(
            action.result,
            Some(ActionResult::Continue),
            "killed after {killed_after} calls"
        );
        assert_eq!(action.completions, 1);
        assert!(
            lb.cloud.deleted_unsaved().is_empty(),
            "killed after {killed_after} calls"
        );
        assert!(lb.cloud.unsafe_continues().is_empty());
    }
}

#[tokio::test]
async fn a_duplicate_that_finds_the_action_over_leaves_the_release_on_record() {
    // GIVEN a rescue released by one invocation
    let lb = lifeboat();
    let (instance, volumes) = lb.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    let event = lifecycle_event(&lb, "termination.json", &instance);
    let report = lb.handle(event, deadline(&lb)).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    // WHEN a duplicate still holding the pending view reaches CompleteLifecycleAction
    let found = lb
        .cloud
        .find_snapshots(&crate::rescue::snapshots_of([instance.clone()]))
        .await
        .unwrap();
    let mut stale = crate::rescue::rescues_from(found).remove(0);
    stale.state = crate::tags::RescueState::Pending;
    let report = crate::rescue::Rescuer {
        cloud: &lb.cloud,
        clock: &lb.clock,
        config: &lb.config,
        metrics: &lb.metrics,
    }
    .resume(stale)
    .await
    .unwrap();
    // THEN it reports the rescue finished and the record still says released
    assert_eq!(report.outcome, Outcome::AlreadyFinished);
    let label = crate::tags::SnapshotLabel::read(&lb.cloud.snapshots_of(&volumes[0])[0].tags)
        .unwrap()
        .unwrap();
    assert_eq!(label.state, crate::tags::RescueState::Released);
}
