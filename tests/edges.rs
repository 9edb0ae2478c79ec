//! AWS's hard edges, end to end: each test sets a scene where the local AWS is as unkind as
//! AWS documents it can be (`localaws/edges.py`, `localaws/patches.py`), lets lifeboat run
//! through the real SDK, and checks the world — above all that no volume died without a
//! completed snapshot started after its termination began. Each would have failed on the code
//! or the local AWS before keep-first and the hard edges.

mod support;

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ec2::types::VolumeType;
use serde_json::json;

use lifeboat::report::Outcome;
use support::{devices, snapshots_of, tag, World};

const DEVICES: [&str; 3] = ["/dev/sda1", "/dev/sdf", "/dev/sdg"];
/// Inline waits off: every step after the first goes through the sweep, as on AWS when the
/// rescue outlasts one invocation.
const SWEEP_DRIVEN: &[(&str, &str)] = &[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")];

fn is_kept(volume: &aws_sdk_ec2::types::Volume, instance: &str) -> bool {
    let by = volume
        .tags()
        .iter()
        .any(|t| t.key() == Some("lifeboat:kept-by") && t.value() == Some(instance));
    let attachment_keeps = volume
        .attachments()
        .iter()
        .all(|a| a.delete_on_termination() == Some(false));
    by && attachment_keeps
}

fn kept_reason(volume: &aws_sdk_ec2::types::Volume) -> String {
    volume
        .tags()
        .iter()
        .find(|t| t.key() == Some("lifeboat:kept-reason"))
        .and_then(|t| t.value())
        .unwrap_or_default()
        .to_owned()
}

/// The sweep every `step` seconds of emulated time until the rescue is no longer waiting, at
/// most `limit` seconds; the outcome and the time it took.
async fn sweep_until_settled(w: &World, step: u64, limit: u64) -> (Outcome, u64) {
    let mut elapsed = 0;
    loop {
        w.advance(step);
        elapsed += step;
        let report = w.sweep().await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let outcome = report
            .rescues
            .first()
            .map_or(Outcome::Waiting, |r| r.outcome);
        if outcome != Outcome::Waiting || elapsed >= limit {
            return (outcome, elapsed);
        }
    }
}

#[tokio::test]
async fn st1_data_volumes_with_a_scheduled_snapshot_running_are_kept_held_and_saved() {
    // GIVEN the story's instance with st1 data volumes, each with a Data Lifecycle Manager
    // snapshot still running for 40 minutes (EC2 allows one pending snapshot of an st1 volume)
    let w = World::new(SWEEP_DRIVEN).await;
    w.snapshots_take(120.0, &[]);
    let instance = w
        .group_of("api-db", 1, &DEVICES, VolumeType::St1, 300)
        .await
        .remove(0);
    let volumes = w.volumes_of(&instance).await;
    for (device, volume) in &volumes {
        let described = w.volume(volume).await.unwrap();
        assert_eq!(
            described.attachments()[0].delete_on_termination(),
            Some(true),
            "{device}: EC2 says DeleteOnTermination as the mapping has it"
        );
        if device != "/dev/sda1" {
            w.foreign_snapshot(volume, 2400.0);
        }
    }
    // WHEN the group terminates it and the event reaches lifeboat
    let events = w.terminate(&instance).await;
    let first = w.deliver(&events[0]).await.unwrap();
    // THEN EC2 refuses the set, and before anything else every volume is kept, the rescue's
    // record is on the instance, and the instance stays held
    assert_eq!(first.rescues[0].outcome, Outcome::Waiting);
    for (_, volume) in &volumes {
        assert!(is_kept(&w.volume(volume).await.unwrap(), &instance));
    }
    let record = w.instance_tags(&instance).await;
    assert_eq!(
        record.get("lifeboat:state").map(String::as_str),
        Some("pending")
    );
    // WHEN the sweep comes back every two minutes of a five-minute heartbeat timeout
    let (outcome, took) = sweep_until_settled(&w, 120, 4 * 3600).await;
    // THEN the hook never lapsed: the set was taken once the scheduled snapshots finished, and
    // the rescue released with every volume saved by its own snapshot
    assert_eq!(outcome, Outcome::Released, "after {took} s");
    assert!(
        took >= 2400,
        "released only after the scheduled snapshots ({took} s)"
    );
    let ledger = w.ledger();
    assert_eq!(
        ledger.completion(&instance),
        Some(("CONTINUE".into(), "api".into()))
    );
    assert!(ledger.entries("action-heartbeat").len() >= 8);
    for (device, volume) in &volumes {
        let ours: Vec<_> = snapshots_of(&w.ec2, volume)
            .await
            .into_iter()
            .filter(|(_, _, tags)| tag(tags, "lifeboat:state") == Some("released"))
            .collect();
        assert_eq!(ours.len(), 1, "{device}: one set");
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn five_pending_snapshots_refuse_the_set_for_hours_and_the_hold_outlasts_them() {
    // GIVEN a gp3 data volume with five AWS Backup snapshots pending for two hours (the most
    // EC2 allows), far longer than the hook's five-minute heartbeat timeout
    let w = World::new(SWEEP_DRIVEN).await;
    w.snapshots_take(60.0, &[]);
    let instance = w.group("api-db", 1, &DEVICES, 300).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    let data = &volumes[1].1;
    for n in 0..5 {
        w.advance(16); // EC2's 15 s between snapshots of a volume
        w.foreign_snapshot(data, 7200.0 - f64::from(n) * 16.0);
    }
    // WHEN the termination comes
    let events = w.terminate(&instance).await;
    assert_eq!(
        w.deliver(&events[0]).await.unwrap().rescues[0].outcome,
        Outcome::Waiting
    );
    // THEN for two hours lifeboat keeps and holds; then it takes the set and releases
    let (outcome, took) = sweep_until_settled(&w, 240, 4 * 3600).await;
    assert_eq!(outcome, Outcome::Released);
    assert!(took >= 7000, "{took}");
    assert!(w
        .ledger()
        .entries("action-completed")
        .iter()
        .all(|e| e["by"] == "api"));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn the_snapshot_quota_fails_safe_at_once_and_keeps_every_volume() {
    // GIVEN the account's snapshot quota is reached (a quota no wait lifts)
    let w = World::new(&[]).await;
    w.edges(&[], json!({"snapshot_quota": 2}));
    let instance = w.group("api-db", 1, &DEVICES, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    // WHEN the termination comes
    let events = w.terminate(&instance).await;
    let report = w.deliver(&events[0]).await.unwrap();
    // THEN lifeboat fails safe at once, saying why: the volumes kept, ABANDON
    let rescue = &report.rescues[0];
    assert_eq!(rescue.outcome, Outcome::FailedSafe);
    assert!(
        rescue
            .reason
            .as_deref()
            .unwrap()
            .contains("SnapshotLimitExceeded"),
        "{:?}",
        rescue.reason
    );
    assert_eq!(w.ledger().needed("ec2:CreateSnapshots"), 1, "one try");
    assert_eq!(
        w.ledger().completion(&instance),
        Some(("ABANDON".into(), "api".into()))
    );
    // AND every volume outlived the instance, saying why it is kept
    assert_eq!(w.instance_state(&instance).await, "terminated");
    for (_, volume) in &volumes {
        let kept = w.volume(volume).await.expect("kept");
        assert_eq!(kept.state().map(|s| s.as_str()), Some("available"));
        assert!(kept_reason(&kept).contains("SnapshotLimitExceeded"));
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_lost_response_to_complete_lifecycle_action_is_a_release_recorded_once() {
    // GIVEN CompleteLifecycleAction's response is lost: the CONTINUE is applied, the SDK sends
    // it again and hears "No active Lifecycle Action found"
    let w = World::new(&[]).await;
    w.snapshots_take(1.0, &[]);
    let instance = w.group("api-db", 1, &DEVICES, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    w.faults(json!([{"service": "autoscaling", "operation": "CompleteLifecycleAction", "kind": "lost", "count": 1}]));
    // WHEN the rescue runs
    let events = w.terminate(&instance).await;
    let report = w.deliver(&events[0]).await.unwrap();
    // THEN it is no error: the action was completed once, by lifeboat, and the record says the
    // data was saved
    assert!(matches!(
        report.rescues[0].outcome,
        Outcome::Released | Outcome::Ended
    ));
    let ledger = w.ledger();
    assert_eq!(ledger.lost("autoscaling:CompleteLifecycleAction"), 1);
    assert_eq!(
        ledger.completion(&instance),
        Some(("CONTINUE".into(), "api".into()))
    );
    w.until_ec2_lists_new_snapshots().await;
    for (_, volume) in &volumes {
        let snapshots = snapshots_of(&w.ec2, volume).await;
        assert_eq!(tag(&snapshots[0].2, "lifeboat:state"), Some("released"));
    }
    w.assert_no_data_lost();
}

/// A group with lifeboat's hook and a second termination hook of another tool.
async fn two_hooks(w: &World) -> String {
    let instance = w.group("api-db", 1, &DEVICES, 300).await.remove(0);
    w.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name("api-db")
        .lifecycle_hook_name("drain")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(600)
        .default_result("ABANDON")
        .send()
        .await
        .unwrap();
    instance
}

#[tokio::test]
async fn another_hooks_abandon_ends_the_action_and_the_kept_volumes_survive() {
    // GIVEN two termination hooks, lifeboat's and a drain tool's, and snapshots that take an hour
    let w = World::new(SWEEP_DRIVEN).await;
    w.snapshots_take(3600.0, &[]);
    let instance = two_hooks(&w).await;
    let volumes = w.volumes_of(&instance).await;
    let events = w.terminate(&instance).await;
    assert_eq!(events.len(), 2, "one lifecycle event per hook");
    let ours = events
        .iter()
        .find(|e| e["detail"]["LifecycleHookName"] == "lifeboat")
        .unwrap();
    assert_eq!(
        w.deliver(ours).await.unwrap().rescues[0].outcome,
        Outcome::Waiting
    );
    // WHEN the other tool completes its action with ABANDON (AWS: "abandon stops any remaining
    // actions, such as other lifecycle hooks")
    w.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("api-db")
        .lifecycle_hook_name("drain")
        .instance_id(&instance)
        .lifecycle_action_result("ABANDON")
        .send()
        .await
        .unwrap();
    // THEN the instance is terminated at once, but every volume outlives it, kept
    assert_eq!(w.instance_state(&instance).await, "terminated");
    for (_, volume) in &volumes {
        assert!(w.volume(volume).await.is_some(), "{volume} kept");
    }
    w.assert_no_data_lost();
    // AND the next sweep records the rescue as ended; the kept volumes say why
    w.advance(60);
    let report = w.sweep().await;
    assert_eq!(report.count(Outcome::Ended), 1, "{report:?}");
    for (_, volume) in &volumes {
        assert!(kept_reason(&w.volume(volume).await.unwrap()).starts_with("ended: "));
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn deleting_the_hook_continues_and_the_kept_volumes_survive() {
    // GIVEN a rescue waiting on hour-long snapshots
    let w = World::new(SWEEP_DRIVEN).await;
    w.snapshots_take(3600.0, &[]);
    let instance = w.group("api-db", 1, &DEVICES, 300).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    let events = w.terminate(&instance).await;
    w.deliver(&events[0]).await.unwrap();
    // WHEN someone deletes lifeboat's hook (AWS completes its actions with CONTINUE)
    w.asg
        .delete_lifecycle_hook()
        .auto_scaling_group_name("api-db")
        .lifecycle_hook_name("lifeboat")
        .send()
        .await
        .unwrap();
    // THEN the instance is terminated, and every volume outlives it
    assert_eq!(
        w.ledger().completion(&instance),
        Some(("CONTINUE".into(), "hook-deleted".into()))
    );
    assert_eq!(w.instance_state(&instance).await, "terminated");
    for (_, volume) in &volumes {
        assert!(w.volume(volume).await.is_some());
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn the_hook_timing_out_while_lifeboat_is_down_loses_nothing_even_with_continue() {
    // GIVEN a hook whose default result is CONTINUE, and a rescue left waiting
    let w = World::new(SWEEP_DRIVEN).await;
    w.snapshots_take(3600.0, &[]);
    let instance = w.group("api-db", 1, &DEVICES, 300).await.remove(0);
    w.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name("api-db")
        .lifecycle_hook_name("lifeboat")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .default_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let volumes = w.volumes_of(&instance).await;
    let events = w.terminate(&instance).await;
    w.deliver(&events[0]).await.unwrap();
    // WHEN lifeboat stops (crashed, throttled, its schedule off) past the heartbeat timeout
    w.advance(301);
    // THEN the hook CONTINUEs the termination, and EC2 keeps every volume all the same
    assert_eq!(
        w.ledger().completion(&instance),
        Some(("CONTINUE".into(), "heartbeat-timeout".into()))
    );
    for (_, volume) in &volumes {
        assert!(w.volume(volume).await.is_some());
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_duplicate_delivery_while_ec2_does_not_list_the_set_yet_takes_no_second_set() {
    // GIVEN a first delivery that took the set a moment ago (EC2 lists it 2 s after creation)
    let w = World::new(&[]).await;
    w.snapshots_take(4.0, &[]);
    let instance = w.group("api-db", 1, &DEVICES, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    let events = w.terminate(&instance).await;
    let first = w.deliver(&events[0]);
    // WHEN EventBridge delivers the event again at once
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        w.deliver(&events[0]).await
    };
    let (a, b) = tokio::join!(first, second);
    // THEN the duplicate found no set, was refused a second one (15 s between snapshots of a
    // volume), waited, found the first set and agreed on it: one set, one release
    let outcomes = [a.unwrap().rescues[0].outcome, b.unwrap().rescues[0].outcome];
    assert!(outcomes.contains(&Outcome::Released), "{outcomes:?}");
    for (_, volume) in &volumes {
        assert_eq!(snapshots_of(&w.ec2, volume).await.len(), 1, "one set");
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_set_stays_pending_until_its_last_snapshot_is_done() {
    // GIVEN the boot volume's snapshot is done in seconds, the data volumes' in ten minutes
    let w = World::new(SWEEP_DRIVEN).await;
    let instance = w.group("api-db", 1, &DEVICES, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    let pending: serde_json::Map<String, serde_json::Value> = volumes
        .iter()
        .map(|(d, v)| {
            let seconds = if d == "/dev/sda1" { 5.0 } else { 600.0 };
            (v.clone(), json!({ "pending_seconds": seconds }))
        })
        .collect();
    w.aws
        .control("snapshots", Some(json!({ "volumes": pending })));
    let events = w.terminate(&instance).await;
    w.deliver(&events[0]).await.unwrap();
    // WHEN a minute passes
    let (outcome, _) = sweep_until_settled(&w, 60, 60).await;
    // THEN the boot volume's snapshot is still pending, below 100 %: the set completes together
    assert_eq!(outcome, Outcome::Waiting);
    let boot = &snapshots_of(&w.ec2, &volumes[0].1).await[0];
    assert_eq!(boot.1, "pending");
    // AND once the last is done, the set completes and the rescue is released
    let (outcome, _) = sweep_until_settled(&w, 120, 1200).await;
    assert_eq!(outcome, Outcome::Released);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn the_sweep_rescues_a_warm_pool_instance_whose_event_was_lost() {
    // GIVEN a group with a warm pool of one stopped instance
    let w = World::new(SWEEP_DRIVEN).await;
    w.snapshots_take(30.0, &[]);
    w.group("api-db", 1, &DEVICES, 300).await;
    w.asg
        .put_warm_pool()
        .auto_scaling_group_name("api-db")
        .min_size(1)
        .send()
        .await
        .unwrap();
    let pool = w
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("api-db")
        .send()
        .await
        .unwrap();
    let warm = pool.instances()[0].instance_id().unwrap().to_owned();
    let volumes = w.volumes_of(&warm).await;
    // WHEN the group terminates the warm instance and its event is lost
    let events = w.terminate(&warm).await;
    assert_eq!(events[0]["detail"]["Origin"], "WarmPool");
    assert_eq!(events[0]["detail"]["Destination"], "EC2");
    let waiting = w
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("api-db")
        .send()
        .await
        .unwrap();
    assert_eq!(
        waiting.instances()[0].lifecycle_state(),
        Some(&LifecycleState::WarmedTerminatingWait)
    );
    // THEN the sweep finds it in Warmed:Terminating:Wait, rescues it and releases it saved
    let (outcome, _) = sweep_until_settled(&w, 60, 600).await;
    assert_eq!(outcome, Outcome::Released);
    assert_eq!(w.instance_state(&warm).await, "terminated");
    for (_, volume) in &volumes {
        assert_eq!(snapshots_of(&w.ec2, volume).await.len(), 1);
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_retained_instance_terminated_again_keeps_its_unsaved_volumes() {
    // GIVEN a group that retains on ABANDON, and a rescue that fails safe (the quota)
    let w = World::new(&[]).await;
    w.edges(&[], json!({"snapshot_quota": 0}));
    let instance = w.group("api-db", 1, &DEVICES, 300).await.remove(0);
    w.aws
        .control("retain-on-abandon", Some(json!({"group": "api-db"})));
    let volumes = w.volumes_of(&instance).await;
    let events = w.terminate(&instance).await;
    assert_eq!(
        w.deliver(&events[0]).await.unwrap().rescues[0].outcome,
        Outcome::FailedSafe
    );
    assert_eq!(
        w.instances("api-db", LifecycleState::TerminatingRetained)
            .await,
        std::slice::from_ref(&instance)
    );
    // WHEN the operator, done looking, sets the hook's default result to CONTINUE and terminates
    // the retained instance through the group: a new lifecycle action, left to time out
    w.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name("api-db")
        .lifecycle_hook_name("lifeboat")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .default_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let again = w.terminate(&instance).await;
    assert_eq!(again.len(), 1, "a new lifecycle action");
    w.deliver(&again[0]).await.unwrap();
    w.advance(301);
    // THEN the instance is gone and the unsaved volumes outlive it, kept
    assert_eq!(w.instance_state(&instance).await, "terminated");
    for (_, volume) in &volumes {
        assert!(w.volume(volume).await.is_some());
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn more_skipped_volumes_than_one_request_can_exclude_are_kept_and_the_rest_saved() {
    // GIVEN an instance of 44 volumes, 41 of them tagged to be skipped: more than the 40
    // volumes one CreateSnapshots may exclude
    let w = World::new(&[]).await;
    w.snapshots_take(1.0, &[]);
    let devices = devices(44);
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    let instance = w.group("scratch", 1, &devices, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    let (saved, skipped): (Vec<_>, Vec<_>) = volumes
        .iter()
        .partition(|(device, _)| ["/dev/sda1", "/dev/sdf", "/dev/sdg"].contains(&device.as_str()));
    assert_eq!(skipped.len(), 41);
    let mut tagging = w.ec2.create_tags().tags(
        aws_sdk_ec2::types::Tag::builder()
            .key("lifeboat:skip")
            .value("true")
            .build(),
    );
    for (_, volume) in &skipped {
        tagging = tagging.resources(volume);
    }
    tagging.send().await.unwrap();
    // WHEN the group terminates it
    let events = w.terminate(&instance).await;
    let report = w.deliver(&events[0]).await.unwrap();
    // THEN the three volumes to save are snapshotted one by one (no request excludes more than
    // 40), the rescue released, and every skipped volume outlives the instance, kept
    assert_eq!(report.rescues[0].outcome, Outcome::Released, "{report:?}");
    let ledger = w.ledger();
    assert_eq!(ledger.calls("ec2:CreateSnapshots"), 0);
    assert_eq!(ledger.needed("ec2:CreateSnapshot"), 3);
    for (device, volume) in &saved {
        let ours = snapshots_of(&w.ec2, volume).await;
        assert_eq!(ours.len(), 1, "{device}");
        assert_eq!(tag(&ours[0].2, "lifeboat:state"), Some("released"));
    }
    assert_eq!(w.instance_state(&instance).await, "terminated");
    for (device, volume) in &skipped {
        let kept = w
            .volume(volume)
            .await
            .unwrap_or_else(|| panic!("{device} kept"));
        assert_eq!(kept_reason(&kept), "excluded: tag lifeboat:skip");
        assert!(snapshots_of(&w.ec2, volume).await.is_empty(), "{device}");
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn ec2_refuses_to_keep_or_tag_what_went_with_a_terminated_instance() {
    // GIVEN an instance terminated outside any group, its volume deleted with it
    let w = World::new(&[]).await;
    let launched = w
        .ec2
        .run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name("/dev/sdf")
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .volume_size(10)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance = launched.instances()[0].instance_id().unwrap().to_owned();
    let volume = w
        .volumes_of(&instance)
        .await
        .into_iter()
        .find(|(device, _)| device == "/dev/sdf")
        .unwrap()
        .1;
    w.ec2
        .terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
    assert!(
        w.volume(&volume).await.is_none(),
        "deleted with the instance"
    );
    // WHEN a late invocation keeps and tags as if the instance were still there
    let keep = w
        .ec2
        .modify_instance_attribute()
        .instance_id(&instance)
        .block_device_mappings(
            aws_sdk_ec2::types::InstanceBlockDeviceMappingSpecification::builder()
                .device_name("/dev/sdf")
                .ebs(
                    aws_sdk_ec2::types::EbsInstanceBlockDeviceSpecification::builder()
                        .delete_on_termination(false)
                        .build(),
                )
                .build(),
        )
        .send()
        .await;
    let tagged = w
        .ec2
        .create_tags()
        .resources(&volume)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("lifeboat:kept-by")
                .value(&instance)
                .build(),
        )
        .send()
        .await;
    // THEN EC2 refuses both with the codes AWS documents (moto answered a 500 to the first and
    // tagged a deleted volume)
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    assert_eq!(keep.unwrap_err().code(), Some("IncorrectInstanceState"));
    assert_eq!(tagged.unwrap_err().code(), Some("InvalidVolume.NotFound"));
}

const DAY: u64 = 86_400;

/// The group terminates `instance` and lifeboat rescues it from its event.
async fn rescue(w: &World, instance: &str) -> Outcome {
    let events = w.terminate(instance).await;
    w.deliver(&events[0]).await.unwrap().rescues[0].outcome
}

async fn snapshot_ids_of(w: &World, instance: &str) -> Vec<String> {
    let reply = w
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:lifeboat:instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = reply
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn retention_archives_and_deletes_only_old_released_sets_and_keeps_the_newest() {
    // GIVEN retention that archives after 30 days, deletes after 150 and keeps the newest set,
    // and a group whose rescues over 300 days left: a released set (300 days old), a failed
    // one (300), a released set a restore is using (200), a released set (60), the newest (0)
    let w = World::new(&[
        ("LIFEBOAT_RETENTION_ARCHIVE_AFTER_DAYS", "30"),
        ("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS", "150"),
        ("LIFEBOAT_RETENTION_KEEP_LAST", "1"),
        ("LIFEBOAT_INLINE_WAIT_SECONDS", "60"),
    ])
    .await;
    let instances = w.group("api-db", 5, &DEVICES, 900).await;
    w.snapshots_take(0.5, &[]);
    assert_eq!(rescue(&w, &instances[0]).await, Outcome::Released);
    let failing = w.volumes_of(&instances[1]).await[1].1.clone();
    w.snapshots_take(0.5, &[(&failing, &["error", "error", "error"])]);
    assert_eq!(rescue(&w, &instances[1]).await, Outcome::FailedSafe);
    w.snapshots_take(0.5, &[]);
    w.advance(100 * DAY);
    assert_eq!(rescue(&w, &instances[2]).await, Outcome::Released);
    let in_use = snapshot_ids_of(&w, &instances[2]).await;
    w.ec2
        .create_tags()
        .resources(&in_use[0])
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("lifeboat:in-use-until")
                .value("2099-01-01T00:00:00Z")
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.advance(140 * DAY);
    assert_eq!(rescue(&w, &instances[3]).await, Outcome::Released);
    w.advance(60 * DAY);
    assert_eq!(rescue(&w, &instances[4]).await, Outcome::Released);
    let before: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for instance in &instances {
            all.push(snapshot_ids_of(&w, instance).await);
        }
        all
    };
    assert!(
        before.iter().all(|ids| !ids.is_empty()),
        "every rescue took snapshots"
    );
    // WHEN the aftercare schedule fires
    let event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_path("events/aftercare.json")).unwrap(),
    )
    .unwrap();
    let report = w.deliver(&event).await.unwrap();
    let done = report.aftercare.unwrap();
    // THEN the 300-day released set is deleted and the 60-day one archived; nothing else moved
    assert_eq!(done.released_sets, 4);
    assert_eq!(done.deleted.len(), 1);
    assert_eq!(done.deleted[0].instance_id, instances[0]);
    assert_eq!(done.archived.len(), 1);
    assert_eq!(done.archived[0].instance_id, instances[3]);
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    assert!(snapshot_ids_of(&w, &instances[0]).await.is_empty());
    for i in [1, 2, 3, 4] {
        assert_eq!(
            snapshot_ids_of(&w, &instances[i]).await,
            before[i],
            "set {i}"
        );
    }
    let ledger = w.ledger();
    let deleted = ledger.entries("snapshot-deleted");
    assert_eq!(deleted.len(), before[0].len());
    assert!(deleted.iter().all(|e| e["lifeboat_state"] == "released"));
    let expired: Vec<(String, String)> = ledger
        .events_published()
        .into_iter()
        .filter(|(kind, _)| kind == "Lifeboat Set Expired")
        .map(|(_, d)| {
            (
                d["change"].as_str().unwrap_or_default().to_owned(),
                d["instance_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        expired,
        [
            ("delete".to_owned(), instances[0].clone()),
            ("archive".to_owned(), instances[3].clone())
        ]
    );
    // AND once EC2 has archived it (up to 72 hours), the next runs leave everything as it is
    w.advance(3 * DAY + 3600);
    let archived = w
        .ec2
        .describe_snapshots()
        .set_snapshot_ids(Some(before[3].clone()))
        .send()
        .await
        .unwrap();
    assert!(archived
        .snapshots()
        .iter()
        .all(|s| s.storage_tier().map(|t| t.as_str()) == Some("archive")));
    let again = w.deliver(&event).await.unwrap().aftercare.unwrap();
    assert!(
        again.archived.is_empty() && again.deleted.is_empty(),
        "{again:?}"
    );
    w.assert_no_data_lost();
}

fn aftercare_event() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(support::repo_path("events/aftercare.json")).unwrap(),
    )
    .unwrap()
}

/// One aftercare run, as its schedule triggers it; what it did.
async fn aftercare(w: &World) -> lifeboat::aftercare::AftercareReport {
    w.deliver(&aftercare_event())
        .await
        .unwrap()
        .aftercare
        .unwrap()
}

/// EC2 in the copy Region the tests configure.
fn west(w: &World) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&w.sdk)
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .build(),
    )
}

async fn tags_of_snapshot(w: &World, id: &str) -> Vec<(String, String)> {
    let reply = w
        .ec2
        .describe_snapshots()
        .snapshot_ids(id)
        .send()
        .await
        .unwrap();
    reply.snapshots()[0]
        .tags()
        .iter()
        .map(support::tag_pair)
        .collect()
}

#[tokio::test]
async fn each_released_set_is_copied_to_the_other_region_and_a_failed_copy_is_retried_and_alarmed()
{
    // GIVEN copies to us-west-2, and two released sets; the copy of one snapshot will fail
    let w = World::new(&[("LIFEBOAT_COPY_REGION", "us-west-2")]).await;
    let instances = w.group("api-db", 2, &DEVICES, 900).await;
    w.snapshots_take(0.5, &[]);
    assert_eq!(rescue(&w, &instances[0]).await, Outcome::Released);
    assert_eq!(rescue(&w, &instances[1]).await, Outcome::Released);
    let first = snapshot_ids_of(&w, &instances[0]).await;
    let second = snapshot_ids_of(&w, &instances[1]).await;
    w.aws.control(
        "copies",
        Some(json!({"pending_seconds": 600, "fail": [second[0]]})),
    );
    // WHEN the aftercare runs: the copies start (the instances were released long before)
    let started = aftercare(&w).await;
    assert_eq!(started.copies_started, first.len() + second.len());
    assert!(started.copied.is_empty(), "a copy takes time");
    let source = tags_of_snapshot(&w, &first[0]).await;
    assert_eq!(tag(&source, "lifeboat:copy-state"), Some("pending"));
    // (the copy of second[0] already under way fails; any made from now on succeeds)
    w.aws
        .control("copies", Some(json!({"pending_seconds": 600, "fail": []})));
    let copy_id = tag(&source, "lifeboat:copy")
        .unwrap()
        .strip_prefix("us-west-2/")
        .unwrap()
        .to_owned();
    // AND once EC2 has copied them, the next run records it and says so on the bus
    w.advance(601);
    let after = aftercare(&w).await;
    assert_eq!(after.copied.len(), 1, "{after:?}");
    assert_eq!(after.copied[0].instance_id, instances[0]);
    assert_eq!(after.copy_failures, 1);
    assert_eq!(
        tag(
            &tags_of_snapshot(&w, &first[0]).await,
            "lifeboat:copy-state"
        ),
        Some("completed")
    );
    // The failed copy was made again at once (its source no longer fails).
    let retried = tags_of_snapshot(&w, &second[0]).await;
    assert_eq!(tag(&retried, "lifeboat:copy-state"), Some("pending"));
    assert_eq!(tag(&retried, "lifeboat:copy-attempts"), Some("2"));
    assert_eq!(after.copies_started, 1);
    assert!(w
        .lifeboat
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("CopiesFailed")));
    let told: Vec<String> = w
        .ledger()
        .events_published()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(told.iter().any(|k| k == "Lifeboat Set Copied"), "{told:?}");
    // The copy in us-west-2 carries the set's label, so the operator can list and restore it there.
    let west = west(&w);
    let copy = west
        .describe_snapshots()
        .snapshot_ids(&copy_id)
        .send()
        .await
        .unwrap();
    let copy_tags: Vec<(String, String)> = copy.snapshots()[0]
        .tags()
        .iter()
        .map(support::tag_pair)
        .collect();
    assert_eq!(tag(&copy_tags, "lifeboat:copy-of"), Some(first[0].as_str()));
    assert_eq!(
        tag(&copy_tags, "lifeboat:copy-source-region"),
        Some("us-east-1")
    );
    assert_eq!(tag(&copy_tags, "lifeboat:state"), Some("released"));
    assert_eq!(
        tag(&copy_tags, "lifeboat:instance-id"),
        Some(instances[0].as_str())
    );
    // EC2 gives a copy an arbitrary VolumeId; its record still places every volume there.
    assert_eq!(copy.snapshots()[0].volume_id(), Some("vol-ffffffff"));
    let west_aws = lifeboat::aws::operator::OperatorAws::new(
        &w.sdk
            .to_builder()
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .build(),
    );
    let there = lifeboat::operator::list::list(
        &west_aws,
        &lifeboat::operator::list::ListFilter {
            instance: Some(lifeboat::ids::InstanceId::parse(&instances[0]).unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(there.len(), 1);
    assert!(
        there[0].record_complete && there[0].is_complete(),
        "{there:?}"
    );
    assert_eq!(there[0].volumes.len(), first.len());
    // AND the set restores from its copy there
    let restored = lifeboat::operator::restore::restore(
        &west_aws,
        &lifeboat::operator::restore::RestoreRequest {
            from: lifeboat::ids::InstanceId::parse(&instances[0]).unwrap(),
            target: lifeboat::operator::restore::Target::Zone("us-west-2a".into()),
            device_map: Default::default(),
            include_boot: true,
            dry_run: false,
            poll: std::time::Duration::from_millis(200),
            patience: std::time::Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    assert_eq!(restored.volumes.len(), first.len());
    for volume in &restored.volumes {
        let id = volume.volume_id.as_ref().unwrap().to_string();
        let made = west
            .describe_volumes()
            .volume_ids(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(made.volumes()[0].availability_zone(), Some("us-west-2a"));
    }
    // AND the copy made again completes
    w.advance(601);
    let last = aftercare(&w).await;
    assert_eq!(last.copied.len(), 1);
    assert_eq!(last.copied[0].instance_id, instances[1]);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn no_more_than_twenty_copies_are_pending_into_one_region() {
    // GIVEN copies to us-west-2 and a released set of 24 volumes
    let w = World::new(&[("LIFEBOAT_COPY_REGION", "us-west-2")]).await;
    let device_names = devices(24);
    let names: Vec<&str> = device_names.iter().map(String::as_str).collect();
    let instance = w.group("wide", 1, &names, 900).await.remove(0);
    w.snapshots_take(0.5, &[]);
    assert_eq!(rescue(&w, &instance).await, Outcome::Released);
    // WHEN the aftercare runs: 20 copies start, as many as EC2 lets pend into one Region
    let first = aftercare(&w).await;
    assert_eq!(first.copies_started, 20);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    // THEN a run while they pend starts none (EC2 would refuse the 21st)
    let waiting = aftercare(&w).await;
    assert_eq!(waiting.copies_started, 0);
    // AND once they are done, the other four follow, and the set is copied whole
    w.advance(901);
    let rest = aftercare(&w).await;
    assert_eq!(rest.copies_started, 4);
    w.advance(901);
    let done = aftercare(&w).await;
    assert_eq!(done.copied.len(), 1);
    assert_eq!(done.copied[0].copies.len(), 24);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn restoring_an_archived_set_starts_its_restore_from_the_archive_then_restores_it() {
    // GIVEN a released set whose snapshots were archived
    let w = World::new(&[]).await;
    let instance = w.group("api-db", 1, &DEVICES, 900).await.remove(0);
    w.snapshots_take(0.5, &[]);
    assert_eq!(rescue(&w, &instance).await, Outcome::Released);
    let ids = snapshot_ids_of(&w, &instance).await;
    for id in &ids {
        w.ec2
            .modify_snapshot_tier()
            .snapshot_id(id)
            .storage_tier(aws_sdk_ec2::types::TargetStorageTier::Archive)
            .send()
            .await
            .unwrap();
    }
    w.advance(3 * DAY + 60);
    let aws = lifeboat::aws::operator::OperatorAws::new(&w.sdk);
    let request = lifeboat::operator::restore::RestoreRequest {
        from: lifeboat::ids::InstanceId::parse(&instance).unwrap(),
        target: lifeboat::operator::restore::Target::Zone("us-east-1a".into()),
        device_map: Default::default(),
        include_boot: true,
        dry_run: false,
        poll: std::time::Duration::from_millis(200),
        patience: std::time::Duration::from_secs(60),
    };
    // WHEN the operator restores it: EC2 makes no volume from an archived snapshot
    let not_yet = lifeboat::operator::restore::restore(&aws, &request)
        .await
        .unwrap_err();
    // THEN lifeboat starts each snapshot's restore from the archive, says it takes hours, and
    // creates nothing yet
    assert!(
        matches!(not_yet, lifeboat::operator::OperatorError::NotYet(_)),
        "{not_yet}"
    );
    assert!(not_yet.to_string().contains("72 hours"), "{not_yet}");
    assert_eq!(
        w.ledger().entries("snapshot-restore-started").len(),
        ids.len()
    );
    // AND once EC2 has restored them, the same command restores the set
    w.advance(3 * DAY + 60);
    let plan = lifeboat::operator::restore::restore(&aws, &request)
        .await
        .unwrap();
    assert_eq!(plan.volumes.len(), ids.len());
    assert!(plan.volumes.iter().all(|v| v.volume_id.is_some()));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_set_retention_deleted_is_recovered_from_the_recycle_bin_as_the_readme_says() {
    // GIVEN the stack's Recycle Bin rule (7 days for lifeboat's released snapshots), retention
    // that deletes after 30 days keeping the newest, and two released sets 31 days apart
    let w = World::new(&[
        ("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS", "30"),
        ("LIFEBOAT_RETENTION_KEEP_LAST", "1"),
    ])
    .await;
    w.aws.control(
        "recycle-bin-rule",
        Some(json!({"tags": {"lifeboat:state": "released"}, "days": 7})),
    );
    let instances = w.group("api-db", 2, &DEVICES, 900).await;
    w.snapshots_take(0.5, &[]);
    assert_eq!(rescue(&w, &instances[0]).await, Outcome::Released);
    w.advance(31 * DAY);
    assert_eq!(rescue(&w, &instances[1]).await, Outcome::Released);
    let old = snapshot_ids_of(&w, &instances[0]).await;
    let done = aftercare(&w).await;
    assert_eq!(done.deleted.len(), 1);
    assert!(snapshot_ids_of(&w, &instances[0]).await.is_empty());
    // WHEN the operator recovers it as the README says
    let binned = w.ec2.list_snapshots_in_recycle_bin().send().await.unwrap();
    let mut in_bin: Vec<String> = binned
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .collect();
    in_bin.sort();
    assert_eq!(in_bin, old);
    for id in &in_bin {
        w.ec2
            .restore_snapshot_from_recycle_bin()
            .snapshot_id(id)
            .send()
            .await
            .unwrap();
    }
    // THEN the set is back with its tags, and lifeboat list shows it again
    assert_eq!(snapshot_ids_of(&w, &instances[0]).await, old);
    let aws = lifeboat::aws::operator::OperatorAws::new(&w.sdk);
    let sets = lifeboat::operator::list::list(
        &aws,
        &lifeboat::operator::list::ListFilter {
            instance: Some(lifeboat::ids::InstanceId::parse(&instances[0]).unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sets.len(), 1);
    assert!(sets[0].is_complete());
    // AND a set left in the bin past its days is gone for good
    w.advance(DAY);
    let done = aftercare(&w).await;
    assert_eq!(
        done.deleted.len(),
        1,
        "the recovered set is old: retention deletes it again"
    );
    w.advance(8 * DAY);
    let binned = w.ec2.list_snapshots_in_recycle_bin().send().await.unwrap();
    assert!(binned.snapshots().is_empty());
    assert_eq!(w.ledger().entries("snapshot-purged").len(), old.len());
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_copy_deleted_in_the_other_region_is_failed_and_made_again() {
    // GIVEN a released set whose copies were started, one of them then deleted over there
    let w = World::new(&[("LIFEBOAT_COPY_REGION", "us-west-2")]).await;
    let instance = w.group("api-db", 1, &DEVICES, 900).await.remove(0);
    w.snapshots_take(0.5, &[]);
    assert_eq!(rescue(&w, &instance).await, Outcome::Released);
    let ids = snapshot_ids_of(&w, &instance).await;
    let first = aftercare(&w).await;
    assert_eq!(first.copies_started, ids.len());
    w.advance(901);
    let source = tags_of_snapshot(&w, &ids[0]).await;
    let copy_id = tag(&source, "lifeboat:copy")
        .unwrap()
        .strip_prefix("us-west-2/")
        .unwrap()
        .to_owned();
    let west = west(&w);
    west.delete_snapshot()
        .snapshot_id(&copy_id)
        .send()
        .await
        .unwrap();
    // WHEN the aftercare runs more than an hour after the copy began
    w.advance(3600);
    let run = aftercare(&w).await;
    // THEN the missing copy counts as failed and is made again; the others are done
    assert_eq!(run.copy_failures, 1, "{run:?}");
    assert_eq!(run.copies_started, 1);
    let source = tags_of_snapshot(&w, &ids[0]).await;
    assert_eq!(tag(&source, "lifeboat:copy-state"), Some("pending"));
    assert_eq!(tag(&source, "lifeboat:copy-attempts"), Some("2"));
    w.advance(901);
    let done = aftercare(&w).await;
    assert_eq!(done.copied.len(), 1);
    w.assert_no_data_lost();
}
