//! How a rescue ends, and how it is recorded. Release: CONTINUE only after a fresh look at the
//! attached volumes finds each saved (or excluded and kept), with the kept-first volumes given
//! back their own setting. Fail safe: every unsaved volume kept, then ABANDON. Ended: the action
//! was over without lifeboat; the unsaved volumes stay kept. The state is written where the
//! rescue's record lives: its snapshots, or the instance while no snapshot exists.

use std::time::Duration;

use tracing::{error, info, warn};

use super::decision::FailSafeReason;
use super::record::{descriptor_of, Rescue};
use super::{RescueError, Rescuer, ATTACHMENTS_FRESH_FOR};
use crate::aws::{ActionResult, AwsError, AwsErrorKind, Cloud, Tags, VolumeFacts};
use crate::clock::Clock;
use crate::ids::{InstanceId, ResourceId, VolumeId};
use crate::report::{KeptVolume, Notice, Outcome, RescueReport};
use crate::tags::{self, KeptReason, RescueState};

/// Pauses before tagging a snapshot again when EC2 does not see it yet (its API is eventually
/// consistent: a snapshot just created may refuse `CreateTags` for a while).
const NOT_VISIBLE_YET_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// A volume the settings exclude from the snapshots, and that lifeboat kept instead: the only
/// kind of volume that may go without a snapshot at CONTINUE.
fn excluded_and_kept(volume: &VolumeFacts, instance: &InstanceId) -> bool {
    !volume.delete_on_termination
        && matches!(
            KeptReason::of(&volume.tags, instance),
            Some(KeptReason::Excluded(_))
        )
}

impl<C: Cloud, K: Clock> Rescuer<'_, C, K> {
    /// Release, after checking the invariant against the world: every EBS volume attached now
    /// has a completed snapshot of this rescue, or is one the settings exclude and lifeboat
    /// kept. `None` when a volume is not covered yet: it is kept first, joins the rescue and the
    /// loop goes on.
    pub(super) async fn release(
        &self,
        rescue: &mut Rescue,
    ) -> Result<Option<RescueReport>, RescueError> {
        let attached = self.attached_volumes(rescue, ATTACHMENTS_FRESH_FOR).await?;
        let instance = rescue.action.instance_id.clone();
        let uncovered: Vec<(VolumeFacts, KeptReason)> = attached
            .iter()
            .filter(|v| !rescue.saved(&v.id) && !excluded_and_kept(v, &instance))
            .map(|v| (v.clone(), KeptReason::First))
            .collect();
        if !uncovered.is_empty() {
            for (volume, _) in &uncovered {
                warn!(volume_id = %volume.id, device = volume.device, "an attached volume has no snapshot in this rescue yet; keeping it and taking one before release");
                rescue
                    .volumes
                    .insert(volume.id.clone(), Some(descriptor_of(volume)));
            }
            // A safety net for the newcomer, not a condition: it needs its snapshot anyway.
            if let Err(err) = self.keep(rescue, &uncovered).await {
                warn!(error = %err, "could not keep the newly attached volume; it is snapshotted before release all the same");
            }
            return Ok(None);
        }
        self.give_back(rescue, &attached).await?;
        match self
            .cloud
            .complete(&rescue.action, ActionResult::Continue)
            .await
        {
            Ok(()) => {}
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => {
                return self.ended(rescue).await.map(Some)
            }
            Err(err) => return Err(rescue.error(err)),
        }
        let seconds = (self.clock.now() - rescue.started_at).num_milliseconds() as f64 / 1000.0;
        self.finish(rescue, RescueState::Released).await;
        self.metrics.rescue_released(&rescue.action.group, seconds);
        info!(
            seconds_to_release = seconds,
            "released with CONTINUE: every volume has a completed snapshot"
        );
        let mut report = rescue.report(Outcome::Released, None);
        report.seconds_to_release = Some(seconds);
        self.announce(Notice::RELEASED, &report).await;
        Ok(Some(report))
    }

    /// Fail safe: every attached volume without a completed snapshot is kept
    /// (`DeleteOnTermination=false`, `lifeboat:kept-reason` saying why), and only then is the
    /// action completed with ABANDON. If keeping fails, nothing is abandoned.
    pub(super) async fn fail_safe(
        &self,
        rescue: &mut Rescue,
        reason: FailSafeReason,
    ) -> Result<RescueReport, RescueError> {
        let attached = self.attached_volumes(rescue, Duration::ZERO).await?;
        let why = reason.to_string();
        let kept_reason = KeptReason::FailSafe(why.clone());
        let unsaved: Vec<(VolumeFacts, KeptReason)> = attached
            .iter()
            .filter(|v| !rescue.saved(&v.id))
            .map(|v| (v.clone(), kept_reason.clone()))
            .collect();
        self.keep(rescue, &unsaved).await?;
        rescue
            .kept
            .retain(|k| !unsaved.iter().any(|(v, _)| v.id == k.volume_id));
        rescue
            .kept
            .extend(unsaved.iter().map(|(volume, reason)| KeptVolume {
                volume_id: volume.id.clone(),
                device: volume.device.clone(),
                reason: reason.text(),
            }));
        match self
            .cloud
            .complete(&rescue.action, ActionResult::Abandon)
            .await
        {
            Ok(()) => {}
            // Over already: another invocation may have released it a moment ago (its record
            // stands), or it ended without lifeboat. The unsaved volumes stay kept either way.
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => {
                return self.ended(rescue).await;
            }
            Err(err) => return Err(rescue.error(err)),
        }
        self.finish(rescue, RescueState::Failed).await;
        self.metrics
            .rescue_failed_safe(&rescue.action.group, reason.code());
        let kept: Vec<String> = unsaved
            .iter()
            .map(|(v, _)| format!("{} ({})", v.id, v.device))
            .collect();
        error!(
            reason = why,
            reason_code = reason.code(),
            kept_volumes = ?kept,
            "FAILED SAFE: completed with ABANDON; volumes without a completed snapshot were kept with DeleteOnTermination=false and tagged lifeboat:kept-by"
        );
        let report = rescue.report(Outcome::FailedSafe, Some(why));
        self.announce(Notice::FAILED_SAFE, &report).await;
        Ok(report)
    }

    /// The action is over without lifeboat: record it, and say loudly if data was at risk. The
    /// volumes kept first stay kept; the unsaved ones say why.
    pub(super) async fn ended(&self, rescue: &mut Rescue) -> Result<RescueReport, RescueError> {
        // Another invocation of lifeboat (a duplicate delivery) may have completed the action
        // a moment ago: its record stands.
        self.refresh(rescue).await?;
        if matches!(rescue.state, RescueState::Released | RescueState::Failed) {
            info!(state = %rescue.state, "another invocation finished this rescue");
            self.heal_record(rescue).await;
            return Ok(rescue.report(Outcome::AlreadyFinished, None));
        }
        let unsaved: Vec<VolumeId> = rescue
            .volumes
            .keys()
            .filter(|v| !rescue.saved(v))
            .cloned()
            .collect();
        let reason =
            "no active lifecycle action: it timed out or was completed by someone else".to_owned();
        if unsaved.is_empty() {
            // Every volume is saved and the action is over: the data is safe, whoever ended it
            // (often this rescue itself, in an invocation stopped before it could record it).
            warn!("the lifecycle action was already over; every volume has a completed snapshot");
            self.finish(rescue, RescueState::Released).await;
            let report = rescue.report(Outcome::Ended, Some(reason.clone()));
            self.announce(Notice::RELEASED, &report).await;
            return Ok(report);
        } else {
            error!(
                unsaved_volumes = ?unsaved.iter().map(VolumeId::as_str).collect::<Vec<_>>(),
                "the lifecycle action ended before every volume had a completed snapshot; they were kept first and running snapshots go on"
            );
            let resources: Vec<ResourceId> =
                unsaved.iter().cloned().map(ResourceId::Volume).collect();
            let kept = tags::kept_tags(
                &rescue.action.instance_id,
                &KeptReason::Ended,
                self.clock.now(),
            );
            if let Err(err) = self.cloud.tag(&resources, &kept).await {
                warn!(error = %err, "could not say on the kept volumes why they are kept");
            }
            self.finish(rescue, RescueState::Ended).await;
            self.metrics.rescue_ended(&rescue.action.group);
        }
        let report = rescue.report(Outcome::Ended, Some(reason));
        self.announce(Notice::ENDED, &report).await;
        Ok(report)
    }

    /// A finished rescue whose record is partly `pending` (a set created by a duplicate
    /// invocation after the other one finished) gets its final state everywhere, so the sweep
    /// does not come back to it.
    pub(super) async fn heal_record(&self, rescue: &mut Rescue) {
        let stragglers = rescue.snapshots.values().any(|s| {
            s.tags.get(tags::STATE).map(String::as_str) == Some(RescueState::Pending.as_str())
        });
        if stragglers {
            self.finish(rescue, rescue.state).await;
        }
    }

    /// Before a snapshot set exists (EC2 refuses it for now), the instance carries the
    /// rescue's record, so that the sweep and later invocations know when it began.
    pub(super) async fn record_on_instance(&self, rescue: &mut Rescue) {
        if !rescue.snapshots.is_empty() || rescue.recorded_on_instance || rescue.instance_gone {
            return;
        }
        let resources = [ResourceId::Instance(rescue.action.instance_id.clone())];
        match self.cloud.tag(&resources, &rescue.record().tags()).await {
            Ok(()) => rescue.recorded_on_instance = true,
            Err(err) => {
                warn!(error = %err, "could not record the rescue on its instance; the sweep will find it waiting anyway")
            }
        }
    }

    /// Records a final state where the rescue's record lives: on every snapshot of the rescue,
    /// or, while it has none, on the instance; and completes the record: each snapshot says
    /// which volume it is of (device, type), so the set can be restored. The action is already
    /// completed: a failure here is logged, not retried (the sweep's heartbeat will find the
    /// action over), and an incomplete record stays visible (`lifeboat list`).
    pub(super) async fn finish(&self, rescue: &mut Rescue, state: RescueState) {
        rescue.state = state;
        let (resources, tags): (Vec<ResourceId>, Tags) = if rescue.snapshots.is_empty() {
            (
                vec![ResourceId::Instance(rescue.action.instance_id.clone())],
                rescue.record().tags(),
            )
        } else {
            (
                rescue
                    .snapshots
                    .keys()
                    .cloned()
                    .map(ResourceId::Snapshot)
                    .collect(),
                tags::state_tags(state),
            )
        };
        if let Err(err) = self.tag_when_visible(&resources, &tags).await {
            warn!(error = %err, state = %state, "could not record the rescue's state");
        }
        self.describe_each_snapshot(rescue).await;
    }

    /// Writes each snapshot's own volume descriptor where it is missing (it did not fit in the
    /// set's tags, or EC2 did not see the snapshot yet when it was written).
    async fn describe_each_snapshot(&self, rescue: &mut Rescue) {
        for (snapshot, volume, descriptor) in rescue.undescribed() {
            let Some(descriptor) = descriptor else {
                error!(snapshot_id = %snapshot, volume_id = %volume, "the rescued set's record is incomplete: nothing says which device this volume was; lifeboat restore cannot place it");
                continue;
            };
            let resources = [ResourceId::Snapshot(snapshot.clone())];
            let tags = Tags::from([(
                format!("{}{volume}", tags::VOLUME_PREFIX),
                descriptor.encode(),
            )]);
            match self.tag_when_visible(&resources, &tags).await {
                Ok(()) => rescue.note_tags(&resources, &tags),
                Err(err) => {
                    error!(error = %err, snapshot_id = %snapshot, volume_id = %volume, "the rescued set's record is incomplete: could not say which device this volume was; lifeboat list marks it")
                }
            }
        }
    }

    /// `CreateTags`, again after a pause while EC2 does not see a resource yet (its API is
    /// eventually consistent).
    async fn tag_when_visible(
        &self,
        resources: &[ResourceId],
        tags: &Tags,
    ) -> Result<(), AwsError> {
        let mut pauses = NOT_VISIBLE_YET_PAUSES.iter();
        loop {
            match self.cloud.tag(resources, tags).await {
                Err(err) if err.is(AwsErrorKind::NotFound) => match pauses.next() {
                    Some(pause) => self.clock.sleep(*pause).await,
                    None => return Err(err),
                },
                result => return result,
            }
        }
    }
}
