//! The rescue's flow over the in-memory AWS: each test says GIVEN / WHEN / THEN and checks the
//! world (snapshots, volumes, the action's result, deleted volumes), not a script of calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::aws::fake::{FakeCloud, Fate};
use crate::aws::{
    ActionResult, AwsErrorKind, InstanceState, SnapshotRequest, SnapshotStore, Tagging, Tags,
};
use crate::clock::FakeClock;
use crate::ids::{GroupName, HookName, ResourceId};
use crate::tags::{self, InstanceRecord, KeptReason, RescueState, SnapshotLabel};
use crate::telemetry::MetricSink;

const GROUP: &str = "api-db";
const HOOK: &str = "lifeboat";

struct World {
    cloud: FakeCloud,
    clock: Arc<FakeClock>,
    config: Config,
    metrics: Metrics,
}

fn world() -> World {
    world_with(&[])
}

fn world_with(vars: &[(&str, &str)]) -> World {
    let clock = Arc::new(FakeClock::at(
        DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let cloud = FakeCloud::new(clock.clone());
    cloud.add_hook(GROUP, HOOK, 900, None);
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
    World {
        cloud,
        clock,
        config,
        metrics: Metrics::new("Lifeboat", MetricSink::Memory(Mutex::new(Vec::new()))),
    }
}

impl World {
    fn rescuer(&self) -> Rescuer<'_, FakeCloud, FakeClock> {
        Rescuer {
            cloud: &self.cloud,
            clock: &self.clock,
            config: &self.config,
            metrics: &self.metrics,
        }
    }

    fn termination(&self, instance: &InstanceId) -> Termination {
        Termination {
            action: ActionRef {
                group: GroupName::parse(GROUP).unwrap(),
                hook: HookName::parse(HOOK).unwrap(),
                instance_id: instance.clone(),
            },
            token: None,
            started_at: Some(self.clock.now()),
        }
    }

    /// The termination event arrives; the invocation may wait `inline_s` seconds.
    async fn deliver(
        &self,
        instance: &InstanceId,
        inline_s: u64,
    ) -> Result<RescueReport, RescueError> {
        self.deliver_with(instance, inline_s, None).await
    }

    async fn deliver_with(
        &self,
        instance: &InstanceId,
        inline_s: u64,
        metadata: Option<&str>,
    ) -> Result<RescueReport, RescueError> {
        let (settings, rejected) = self.config.settings_for(metadata);
        let until = self.clock.now() + to_chrono(Duration::from_secs(inline_s));
        self.rescuer()
            .on_termination(&self.termination(instance), settings, rejected, until)
            .await
    }

    /// A two-volume instance whose rescue its termination event started and left waiting (no
    /// inline wait): the instance and its volumes.
    async fn rescue_left_waiting(&self) -> (InstanceId, Vec<VolumeId>) {
        let (instance, volumes) = self
            .cloud
            .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
        assert_eq!(
            self.deliver(&instance, 0).await.unwrap().outcome,
            Outcome::Waiting
        );
        (instance, volumes)
    }

    /// A completion event (or the sweep) resumes every rescue of the instance.
    async fn resume(&self, instance: &InstanceId) -> Vec<RescueReport> {
        let found = self
            .cloud
            .find_snapshots(&snapshots_of([instance.clone()]))
            .await
            .unwrap();
        let mut reports = Vec::new();
        for rescue in rescues_from(found)
            .into_iter()
            .filter(|r| !r.state.is_final())
        {
            reports.push(self.rescuer().resume(rescue).await.unwrap());
        }
        reports
    }

    /// The scheduled sweep, as it runs in the function.
    async fn sweep(&self) -> crate::report::Report {
        let stop_at = self.clock.now() + chrono::Duration::seconds(600);
        crate::sweep::sweep(&self.rescuer(), stop_at).await.unwrap()
    }

    /// The invariant, on the world itself.
    fn assert_no_data_lost(&self) {
        assert!(
            self.cloud.deleted_unsaved().is_empty(),
            "deleted without a completed snapshot: {:?}",
            self.cloud.deleted_unsaved()
        );
        assert!(
            self.cloud.unsafe_continues().is_empty(),
            "CONTINUE with an unsaved volume: {:?}",
            self.cloud.unsafe_continues()
        );
    }

    fn snapshots_per_volume(&self, volumes: &[VolumeId]) -> Vec<usize> {
        volumes
            .iter()
            .map(|v| self.cloud.snapshots_of(v).len())
            .collect()
    }
}

#[tokio::test]
async fn fresh_start_snapshots_every_volume_once_and_releases_when_all_complete() {
    // GIVEN the story's instance: API, PostgreSQL and MongoDB on three volumes, held in Terminating:Wait
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
    // WHEN the termination event arrives and the snapshots take 30 s
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN one crash-consistent set was taken, and the instance released with CONTINUE
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.cloud.count("CreateSnapshots"), 1);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1, 1]);
    assert_eq!(
        w.cloud.action(&instance).result,
        Some(ActionResult::Continue)
    );
    w.assert_no_data_lost();
    // AND every snapshot carries the rescue's label, its device and the volume's own tags
    for volume in &volumes {
        let snapshot = &w.cloud.snapshots_of(volume)[0];
        let label = SnapshotLabel::read(&snapshot.tags).unwrap().unwrap();
        assert_eq!(label.instance_id, instance);
        assert_eq!(label.state, RescueState::Released);
        assert_eq!(label.volumes.len(), 3);
        assert!(snapshot.tags.contains_key("Name"), "volume tags copied");
        assert_eq!(
            report
                .volumes
                .iter()
                .find(|v| &v.volume_id == volume)
                .unwrap()
                .state,
            Some(SnapshotState::Completed)
        );
    }
    assert_eq!(w.cloud.instance_state(&instance), InstanceState::Terminated);
    assert!(w
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("RescuesReleased")));
}

#[tokio::test]
async fn volumes_ec2_does_not_list_yet_are_read_again_never_taken_for_none() {
    // GIVEN the story's instance, whose volumes a lagging DescribeVolumes does not list for
    // its first two reads (DescribeInstances maps them)
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
    w.cloud.unlist_volumes(2);
    // WHEN the termination event arrives
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN lifeboat read them again and released only once every one of them was saved
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1, 1]);
    assert_eq!(w.cloud.count("DescribeVolumes"), 3);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn volumes_ec2_does_not_list_for_long_hold_the_instance_untouched() {
    // GIVEN an instance whose volumes DescribeVolumes does not list for ten reads
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud.unlist_volumes(10);
    // WHEN the termination event arrives
    let err = w.deliver(&instance, 120).await.unwrap_err();
    // THEN the invocation fails for a reason waiting fixes, having changed nothing: no
    // snapshot, no CONTINUE (a list of no volume is not a rescue with nothing to save)
    assert!(err.waiting_can_fix(), "{err}");
    assert!(err.to_string().contains("does not list vol-"), "{err}");
    assert!(w.cloud.action(&instance).active);
    assert_eq!(w.cloud.count("CreateSnapshots"), 0);
    // WHEN EC2 lists them again and the event is delivered once more (Lambda's retry)
    w.cloud.unlist_volumes(0);
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN the rescue saves both and releases
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_sweep_short_of_time_takes_on_the_instances_nobody_kept_before_the_rescues_in_flight() {
    // GIVEN twelve rescues in flight on hour-long snapshots, and one waiting instance whose event
    // never came (nothing kept, nobody holding it), in an account so busy that each call takes
    // 20 s and the sweep, one rescue at a time, gets through a few of them only
    let w = world_with(&[("LIFEBOAT_SWEEP_CONCURRENCY", "1")]);
    w.cloud.set_default_fate(Fate::completes_after(3600));
    for _ in 0..12 {
        w.rescue_left_waiting().await;
    }
    let (orphan, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud.slow_down(Duration::from_secs(20));
    // WHEN the sweep runs out of time
    let report = w.sweep().await;
    assert!(report
        .note
        .is_some_and(|n| n.contains("left to the next sweep")));
    // THEN the orphan was taken on first: its volumes are kept and its snapshots started
    for volume in &volumes {
        assert!(!w.cloud.volume(volume).unwrap().delete_on_termination);
    }
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    assert_eq!(
        w.cloud.action(&orphan).heartbeats,
        1,
        "held: its start is unknown"
    );
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_repeated_event_never_snapshots_twice() {
    // GIVEN a rescue already started by a first delivery that left it waiting
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(3600));
    let (instance, volumes) = w.rescue_left_waiting().await;
    // WHEN the same event is delivered twice more
    for _ in 0..2 {
        assert_eq!(
            w.deliver(&instance, 0).await.unwrap().outcome,
            Outcome::Waiting
        );
    }
    // THEN there is still one snapshot per volume and the action is still held
    assert_eq!(w.cloud.count("CreateSnapshots"), 1);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    assert!(w.cloud.action(&instance).active);
    // AND after release, a late duplicate finds the rescue finished and changes nothing
    w.clock.advance(Duration::from_secs(3600));
    assert_eq!(w.resume(&instance).await[0].outcome, Outcome::Released);
    assert_eq!(
        w.deliver(&instance, 0).await.unwrap().outcome,
        Outcome::AlreadyFinished
    );
    assert_eq!(w.cloud.action(&instance).completions, 1);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_duplicate_that_read_the_instance_before_another_released_it_finds_the_release() {
    // GIVEN a duplicate delivery that read the instance and its volumes while they were still
    // there, and meets them only after the first delivery released the instance (its volumes
    // deleted with it, each with a completed snapshot)
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    let before = w.cloud.view_of(&instance);
    assert_eq!(
        w.deliver(&instance, 120).await.unwrap().outcome,
        Outcome::Released
    );
    w.cloud.answer_stale(before);
    // WHEN the duplicate goes on: EC2 refuses to tag volumes that are gone
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN it finds the release and changes nothing
    assert_eq!(report.outcome, Outcome::AlreadyFinished);
    assert_eq!(w.cloud.count("CreateSnapshots"), 1);
    assert_eq!(w.cloud.action(&instance).completions, 1);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn an_instance_that_went_between_the_read_and_the_keep_ends_the_rescue_without_an_error() {
    // GIVEN an invocation that read the instance while it waited, and meets it terminated
    // without lifeboat (its owner had kept both volumes meanwhile)
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    let before = w.cloud.view_of(&instance);
    for volume in &volumes {
        w.cloud.set_delete_on_termination_of(volume, false);
    }
    w.cloud.terminate_now(&instance);
    w.cloud.answer_stale(before);
    // WHEN it keeps the volumes first: EC2 refuses ModifyInstanceAttribute on a terminated
    // instance (IncorrectInstanceState)
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN the rescue sees the instance gone and ends; nothing is snapshotted or completed
    assert_eq!(report.outcome, Outcome::Ended);
    assert_eq!(w.cloud.count("CreateSnapshots"), 0);
    assert_eq!(w.cloud.action(&instance).completions, 0);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn pending_beyond_the_inline_wait_is_released_by_the_resume() {
    // GIVEN snapshots that take two hours
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(7200));
    let (instance, _) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    // WHEN the event's invocation waits its 120 s inline
    let first = w.deliver(&instance, 120).await.unwrap();
    // THEN it leaves the rescue waiting, the instance held
    assert_eq!(first.outcome, Outcome::Waiting);
    assert!(w.cloud.action(&instance).active);
    // WHEN the sweep comes back every five minutes until the snapshots complete
    let mut outcome = Outcome::Waiting;
    while outcome == Outcome::Waiting {
        w.clock.advance(Duration::from_secs(300));
        outcome = w.resume(&instance).await[0].outcome;
    }
    // THEN the rescue is released, and the hold was renewed along the way
    assert_eq!(outcome, Outcome::Released);
    assert!(w.cloud.action(&instance).heartbeats >= 8);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_snapshot_in_error_is_taken_again_and_then_released() {
    // GIVEN the data volume's first snapshot ends in error
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud.script(
        &volumes[1],
        &[Fate::fails_after(20), Fate::completes_after(40)],
    );
    // WHEN the event arrives
    let report = w.deliver(&instance, 300).await.unwrap();
    // THEN the whole set failed with it (EC2 fails a multi-volume set together), and the set
    // was taken again, crash-consistent, and the rescue released
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [2, 2]);
    assert_eq!(w.cloud.count("CreateSnapshots"), 2);
    assert_eq!(w.cloud.count("CreateSnapshot"), 0);
    let retried = w.cloud.snapshots_of(&volumes[1]);
    assert!(retried
        .iter()
        .any(|s| s.tags.get(tags::ATTEMPT).map(String::as_str) == Some("2")));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn attempts_exhausted_fail_safe_keeps_the_volumes_and_abandons() {
    // GIVEN a volume whose snapshots always fail
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
    w.cloud.script(&volumes[2], &[Fate::fails_after(10); 5]);
    // WHEN the rescue runs
    let report = w.deliver(&instance, 600).await.unwrap();
    // THEN after three sets (each failing whole with that volume) it fails safe: ABANDON,
    // never CONTINUE
    assert_eq!(report.outcome, Outcome::FailedSafe);
    assert_eq!(w.snapshots_per_volume(&volumes), [3, 3, 3]);
    assert_eq!(
        w.cloud.action(&instance).result,
        Some(ActionResult::Abandon)
    );
    // AND the unsaved volume survived the termination, tagged for the operator
    let kept = w
        .cloud
        .volume(&volumes[2])
        .expect("the unsaved volume still exists");
    assert!(!kept.delete_on_termination);
    assert_eq!(kept.tags.get(tags::KEPT_BY), Some(&instance.to_string()));
    assert!(kept.tags[tags::KEPT_REASON].starts_with("fail-safe: "));
    assert_eq!(
        report.kept_volumes.len(),
        3,
        "no volume has a completed snapshot"
    );
    // AND the saved ones were deleted only after their snapshots completed
    w.assert_no_data_lost();
    assert!(w
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("RescuesFailedSafe")));
    let label = SnapshotLabel::read(&w.cloud.snapshots_of(&volumes[0])[0].tags)
        .unwrap()
        .unwrap();
    assert_eq!(label.state, RescueState::Failed);
}

#[tokio::test]
async fn an_instance_already_gone_is_recorded_as_ended_without_snapshotting() {
    // GIVEN an instance terminated (its action over) before lifeboat got the event
    let w = world();
    let (instance, _) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    w.cloud.terminate_now(&instance);
    // WHEN the event arrives
    let report = w.deliver(&instance, 60).await.unwrap();
    // THEN nothing is snapshotted and nothing is CONTINUEd: lifeboat would fail safe, finds the
    // action over, and records that it ended without lifeboat
    assert_eq!(report.outcome, Outcome::Ended);
    assert_eq!(w.cloud.count("CreateSnapshots"), 0);
    assert_eq!(w.cloud.count("CreateSnapshot"), 0);
    assert_eq!(w.cloud.action(&instance).result, None);
    assert!(w.cloud.unsafe_continues().is_empty());
}

#[tokio::test]
async fn an_instance_ec2_does_not_list_while_its_action_is_held_is_held_not_abandoned() {
    // GIVEN a waiting instance that EC2's eventually consistent API does not list for now
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud.unlist(&instance, true);
    // WHEN its event arrives
    let report = w.deliver(&instance, 60).await.unwrap();
    // THEN lifeboat does not take that for the instance's end: no ABANDON (which would
    // terminate it with volumes nobody kept), the hold renewed, the rescue left to the sweep
    assert_eq!(report.outcome, Outcome::Waiting);
    let action = w.cloud.action(&instance);
    assert!(action.active);
    assert_eq!(action.result, None);
    assert_eq!(action.heartbeats, 1);
    // WHEN EC2 lists it again and the sweep comes by THEN it is rescued and released
    w.cloud.unlist(&instance, false);
    w.clock.advance(Duration::from_secs(60));
    w.sweep().await;
    w.clock.advance(Duration::from_secs(60));
    w.sweep().await;
    assert_eq!(
        w.cloud.action(&instance).result,
        Some(ActionResult::Continue)
    );
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn an_action_already_over_is_recorded_not_retried_forever() {
    // GIVEN a rescue waiting on slow snapshots
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(3600));
    let (instance, volumes) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    assert_eq!(
        w.deliver(&instance, 0).await.unwrap().outcome,
        Outcome::Waiting
    );
    // WHEN the action times out (someone else completed it)
    w.cloud.end_action(&instance);
    w.clock.advance(Duration::from_secs(300));
    let reports = w.resume(&instance).await;
    // THEN the rescue records it as ended, once
    assert_eq!(reports[0].outcome, Outcome::Ended);
    let label = SnapshotLabel::read(&w.cloud.snapshots_of(&volumes[0])[0].tags)
        .unwrap()
        .unwrap();
    assert_eq!(label.state, RescueState::Ended);
    // AND a later sweep has nothing left to do for it
    w.clock.advance(Duration::from_secs(300));
    assert!(w.resume(&instance).await.is_empty());
    assert_eq!(w.cloud.action(&instance).completions, 0);
}

#[tokio::test]
async fn a_volume_attached_while_waiting_is_snapshotted_before_release() {
    // GIVEN a rescue waiting on its snapshots
    let w = world();
    let (instance, _) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    assert_eq!(
        w.deliver(&instance, 0).await.unwrap().outcome,
        Outcome::Waiting
    );
    // WHEN an operator attaches another volume before the snapshots complete
    let late = w.cloud.attach_new_volume(&instance, "/dev/sdz");
    w.clock.advance(Duration::from_secs(60));
    let first = w.resume(&instance).await;
    // THEN the rescue takes it too instead of releasing
    assert_eq!(first[0].outcome, Outcome::Waiting);
    assert_eq!(w.cloud.snapshots_of(&late).len(), 1);
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(w.resume(&instance).await[0].outcome, Outcome::Released);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn an_excluded_boot_volume_is_kept_instead_of_snapshotted() {
    // GIVEN the group's hook says not to snapshot the boot volume, and a data volume has the skip tag
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf", "/dev/sdg"]);
    w.cloud.tag_volume(&volumes[2], "lifeboat:skip", "true");
    // WHEN the rescue runs
    let report = w
        .deliver_with(&instance, 120, Some(r#"{"include_boot_volume": false}"#))
        .await
        .unwrap();
    // THEN only the data volume is snapshotted, and the excluded ones survive the termination
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [0, 1, 0]);
    for kept in [&volumes[0], &volumes[2]] {
        let v = w.cloud.volume(kept).expect("kept");
        assert!(!v.delete_on_termination);
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_bad_override_rescues_every_volume_with_the_safest_settings() {
    // GIVEN a hook whose metadata is wrong, and a volume with the skip tag
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud.tag_volume(&volumes[1], "lifeboat:skip", "true");
    // WHEN the rescue runs with that metadata
    let report = w
        .deliver_with(&instance, 120, Some(r#"{"include_boot_volume": "no"}"#))
        .await
        .unwrap();
    // THEN the override is rejected by name and every volume is snapshotted anyway
    assert!(report
        .override_rejected
        .unwrap()
        .contains("include_boot_volume"));
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    assert_eq!(report.outcome, Outcome::Released);
    assert!(w
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("OverridesRejected")));
}

#[tokio::test]
async fn the_snapshot_limit_is_waited_out_not_counted_as_a_failure() {
    // GIVEN EC2 refuses the first two CreateSnapshots for the concurrent snapshot limit
    let w = world();
    let (instance, volumes) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    w.cloud
        .fail_next("CreateSnapshots", AwsErrorKind::SnapshotBusy, 2);
    // WHEN the event arrives
    let report = w.deliver(&instance, 300).await.unwrap();
    // THEN lifeboat waited and tried again, and released
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.cloud.count("CreateSnapshots"), 3);
    assert_eq!(w.snapshots_per_volume(&volumes), [1]);
}

#[tokio::test]
async fn a_failed_aws_call_changes_nothing_unsafe_and_the_next_delivery_finishes() {
    // GIVEN DescribeVolumes fails outright on the first delivery
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud
        .fail_next("DescribeVolumes", AwsErrorKind::Unavailable, 1);
    // WHEN the event arrives, then is retried
    let err = w.deliver(&instance, 120).await.unwrap_err();
    assert!(err.waiting_can_fix());
    assert!(err.to_string().contains("DescribeVolumes"));
    assert_eq!(w.cloud.count("CreateSnapshots"), 0);
    assert!(w.cloud.action(&instance).active);
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN the retry does the whole rescue
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
}

#[tokio::test]
async fn a_forged_snapshot_does_not_release_the_instance() {
    // GIVEN an old snapshot of the volume, re-tagged to look like this rescue's, completed
    let w = world();
    let (instance, volumes) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    w.cloud.set_default_fate(Fate::completes_after(0));
    let old = w
        .cloud
        .create_snapshot(&SnapshotRequest {
            volume_id: volumes[0].clone(),
            description: "old".into(),
            tags: Tags::new(),
        })
        .await
        .unwrap();
    w.clock.advance(Duration::from_secs(86_400));
    w.cloud.set_default_fate(Fate::completes_after(3600));
    // WHEN the rescue starts, and someone then copies its label onto the old snapshot
    assert_eq!(
        w.deliver(&instance, 0).await.unwrap().outcome,
        Outcome::Waiting
    );
    let genuine = w
        .cloud
        .snapshots_of(&volumes[0])
        .into_iter()
        .find(|s| s.id != old.id)
        .unwrap();
    w.cloud
        .tag(&[ResourceId::Snapshot(old.id.clone())], &genuine.tags)
        .await
        .unwrap();
    w.clock.advance(Duration::from_secs(60));
    // THEN the rescue keeps waiting for its own snapshot
    assert_eq!(w.resume(&instance).await[0].outcome, Outcome::Waiting);
    assert!(w.cloud.action(&instance).active);
}

#[tokio::test]
async fn a_hook_too_short_to_hold_until_the_next_sweep_fails_safe_before_leaving() {
    // GIVEN a hook with a 120 s heartbeat timeout, shorter than the 300 s sweep interval
    let w = world();
    w.cloud.add_hook(GROUP, HOOK, 120, None);
    w.cloud.set_default_fate(Fate::completes_after(3600));
    let (instance, volumes) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    // WHEN the inline wait ends with the snapshot still running
    let report = w.deliver(&instance, 60).await.unwrap();
    // THEN lifeboat keeps the volume and abandons rather than let the hook time out
    assert_eq!(report.outcome, Outcome::FailedSafe);
    assert!(!w.cloud.volume(&volumes[0]).unwrap().delete_on_termination);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn near_the_global_timeout_the_rescue_fails_safe() {
    // GIVEN snapshots that would outlast the hook's global timeout (100 × 900 s = 25 h)
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(200_000));
    let (instance, volumes) = w.rescue_left_waiting().await;
    // WHEN the sweep keeps coming back
    let mut outcome = Outcome::Waiting;
    let mut sweeps = 0;
    while outcome == Outcome::Waiting {
        w.clock.advance(Duration::from_secs(300));
        outcome = w.resume(&instance).await[0].outcome;
        sweeps += 1;
    }
    // THEN it fails safe before the global timeout (90 000 s), keeping both volumes
    assert_eq!(outcome, Outcome::FailedSafe);
    assert!(sweeps * 300 < 90_000);
    assert!(sweeps * 300 >= 90_000 - 900 - 300);
    for v in &volumes {
        assert!(!w.cloud.volume(v).unwrap().delete_on_termination);
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn every_volume_is_kept_first_and_given_back_only_once_saved() {
    // GIVEN an instance whose data volume is DeleteOnTermination (as AWS defaults the boot
    // volume), and one whose owner turned it off
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(600));
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    let own = w.cloud.attach_new_volume(&instance, "/dev/sdg");
    w.cloud.set_delete_on_termination_of(&own, false);
    // WHEN the termination event arrives and the snapshots take ten minutes
    assert_eq!(
        w.deliver(&instance, 0).await.unwrap().outcome,
        Outcome::Waiting
    );
    // THEN before any snapshot completed, EC2 itself keeps every volume it would delete
    for v in &volumes {
        let kept = w.cloud.volume(v).unwrap();
        assert!(!kept.delete_on_termination, "{v} kept first");
        assert_eq!(
            KeptReason::of(&kept.tags, &instance),
            Some(KeptReason::First)
        );
    }
    assert!(
        !w.cloud
            .volume(&own)
            .unwrap()
            .tags
            .contains_key(tags::KEPT_BY),
        "the owner's own setting is left alone"
    );
    // WHEN the snapshots complete and the rescue is released
    w.clock.advance(Duration::from_secs(600));
    assert_eq!(w.resume(&instance).await[0].outcome, Outcome::Released);
    // THEN the kept-first volumes were given back their DeleteOnTermination and went with the
    // instance, saved; the owner's volume outlives it, as it would have without lifeboat
    assert!(volumes.iter().all(|v| w.cloud.volume(v).is_none()));
    assert!(w.cloud.volume(&own).is_some());
    w.assert_no_data_lost();
}

#[tokio::test]
async fn create_snapshots_refused_for_hours_keeps_and_holds_then_releases() {
    // GIVEN an st1 data volume whose scheduled snapshot (Data Lifecycle Manager) still runs for
    // three hours: EC2 allows one pending snapshot of an st1 volume
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(60));
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud.set_volume_type(&volumes[1], "st1");
    w.cloud.start_foreign_snapshot(&volumes[1], 3 * 3600);
    // WHEN the termination event arrives
    let first = w.deliver(&instance, 120).await.unwrap();
    // THEN no set could be taken, but the volumes are kept, the hold renewed and the rescue's
    // record written on the instance
    assert_eq!(first.outcome, Outcome::Waiting);
    assert_eq!(w.cloud.count("CreateSnapshot"), 0);
    assert!(
        w.cloud.count("CreateSnapshots") >= 2,
        "tried again while waiting"
    );
    assert!(volumes
        .iter()
        .all(|v| !w.cloud.volume(v).unwrap().delete_on_termination));
    let record = InstanceRecord::read(&w.cloud.instance_tags(&instance))
        .unwrap()
        .expect("the instance carries the rescue's record");
    assert_eq!(record.state, RescueState::Pending);
    // WHEN the sweep comes back every five minutes (it finds the instance waiting with no set)
    let mut outcome = Outcome::Waiting;
    let mut sweeps = 0;
    while outcome == Outcome::Waiting {
        w.clock.advance(Duration::from_secs(300));
        sweeps += 1;
        let report = w.sweep().await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        outcome = report.rescues[0].outcome;
        assert!(w.cloud.action(&instance).active || outcome == Outcome::Released);
    }
    // THEN the hold never lapsed, the set was taken once the foreign snapshot finished, and the
    // rescue released with every volume saved; its start is the one on the instance's record
    assert_eq!(outcome, Outcome::Released);
    assert!(sweeps >= 36, "three hours of sweeps ({sweeps})");
    // The 900 s hook needs a heartbeat at least every 900 s: twelve in three hours.
    assert!(
        w.cloud.action(&instance).heartbeats >= 12,
        "{:?}",
        w.cloud.action(&instance)
    );
    assert_eq!(
        w.cloud.action(&instance).result,
        Some(ActionResult::Continue)
    );
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_quota_error_fails_safe_at_once_with_the_reason_everywhere() {
    // GIVEN the account's snapshot quota is reached: no amount of waiting fixes it
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud
        .fail_next("CreateSnapshots", AwsErrorKind::QuotaExceeded, 1);
    // WHEN the event arrives
    let report = w.deliver(&instance, 600).await.unwrap();
    // THEN lifeboat fails safe at once: one attempt, the volumes kept saying why, ABANDON
    assert_eq!(report.outcome, Outcome::FailedSafe);
    assert_eq!(w.cloud.count("CreateSnapshots"), 1);
    assert!(report.reason.unwrap().contains("quota"));
    assert_eq!(
        w.cloud.action(&instance).result,
        Some(ActionResult::Abandon)
    );
    for v in &volumes {
        let kept = w.cloud.volume(v).expect("kept");
        assert!(!kept.delete_on_termination);
        assert!(
            kept.tags[tags::KEPT_REASON].contains("quota"),
            "{:?}",
            kept.tags
        );
    }
    // AND the metric names the reason, and the instance (no snapshot exists) records it
    assert!(w
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("RescuesFailedSafe") && l.contains("SnapshotRefused")));
    let record = InstanceRecord::read(&w.cloud.instance_tags(&instance))
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RescueState::Failed);
    // AND a later delivery (the sweep, another hook still holding it) finds it finished
    assert_eq!(
        w.deliver(&instance, 0).await.unwrap().outcome,
        Outcome::AlreadyFinished
    );
    w.assert_no_data_lost();
}

#[tokio::test]
async fn the_hook_ending_before_the_first_snapshot_completes_loses_nothing() {
    // GIVEN a rescue whose snapshots run for an hour
    let w = world();
    w.cloud.set_default_fate(Fate::completes_after(3600));
    let (instance, volumes) = w.rescue_left_waiting().await;
    // WHEN the hook times out (or another hook ABANDONs, or the hook is deleted: AWS then
    // CONTINUEs) and the instance is terminated without lifeboat
    w.cloud.terminate_now(&instance);
    // THEN every volume outlives the instance: EC2 kept them
    assert!(volumes.iter().all(|v| w.cloud.volume(v).is_some()));
    w.assert_no_data_lost();
    // AND the next sweep records the rescue as ended, each volume saying why it is kept
    w.clock.advance(Duration::from_secs(300));
    assert_eq!(w.resume(&instance).await[0].outcome, Outcome::Ended);
    assert_eq!(
        w.cloud.notices().last(),
        Some(&crate::report::Notice::ENDED)
    );
    for v in &volumes {
        assert_eq!(
            KeptReason::of(&w.cloud.volume(v).unwrap().tags, &instance),
            Some(KeptReason::Ended)
        );
    }
}

#[tokio::test]
async fn a_denied_keep_first_is_loud_and_the_rescue_goes_on_holding() {
    // GIVEN an SCP that denies ModifyInstanceAttribute to lifeboat's role
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud
        .fail_next("ModifyInstanceAttribute", AwsErrorKind::AccessDenied, 1);
    // WHEN the termination event arrives
    let report = w.deliver(&instance, 120).await.unwrap();
    // THEN the rescue still snapshots, holds and releases only once every volume is saved,
    // and says loudly that it ran without its safety net
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    assert!(w
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("KeepFirstFailed")));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_throttled_keep_first_holds_the_instance_and_is_tried_again() {
    // GIVEN ModifyInstanceAttribute throttled past the SDK's retries on the first delivery
    let w = world();
    let (instance, volumes) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    w.cloud
        .fail_next("ModifyInstanceAttribute", AwsErrorKind::Throttled, 1);
    // WHEN the event arrives
    let err = w.deliver(&instance, 120).await.unwrap_err();
    // THEN nothing was snapshotted yet, but the hold was renewed for the retry
    assert!(err.waiting_can_fix());
    assert_eq!(w.cloud.count("CreateSnapshots"), 0);
    assert_eq!(w.cloud.action(&instance).heartbeats, 1);
    // AND Lambda's retry keeps the volume first and rescues it
    let report = w.deliver(&instance, 120).await.unwrap();
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [1]);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn each_rescue_tells_the_bus_it_started_and_how_it_ended() {
    let w = world();
    let (instance, _) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    assert_eq!(
        w.deliver(&instance, 120).await.unwrap().outcome,
        Outcome::Released
    );
    assert_eq!(
        w.cloud.notices(),
        [
            crate::report::Notice::STARTED,
            crate::report::Notice::RELEASED
        ]
    );
    // A fail-safe says so too.
    let w = world();
    let (instance, _) = w.cloud.add_waiting_instance(GROUP, &["/dev/xvda"]);
    w.cloud
        .fail_next("CreateSnapshots", AwsErrorKind::QuotaExceeded, 1);
    assert_eq!(
        w.deliver(&instance, 120).await.unwrap().outcome,
        Outcome::FailedSafe
    );
    assert_eq!(
        w.cloud.notices(),
        [
            crate::report::Notice::STARTED,
            crate::report::Notice::FAILED_SAFE
        ]
    );
}

#[tokio::test]
async fn a_bus_that_refuses_the_events_changes_nothing_in_the_rescue() {
    let w = world();
    let (instance, volumes) = w
        .cloud
        .add_waiting_instance(GROUP, &["/dev/xvda", "/dev/sdf"]);
    w.cloud
        .fail_next("PutEvents", AwsErrorKind::Unavailable, 10);
    let report = w.deliver(&instance, 120).await.unwrap();
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(w.snapshots_per_volume(&volumes), [1, 1]);
    assert!(w
        .metrics
        .lines()
        .iter()
        .any(|l| l.contains("EventsNotPublished")));
    w.assert_no_data_lost();
}
