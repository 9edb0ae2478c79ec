//! Taking the snapshots: the crash-consistent set of the rescue's volumes (`CreateSnapshots`),
//! the first time and again when a whole set failed, and single volumes again when one of
//! theirs failed (`CreateSnapshot`). EC2's refusals are sorted by what waiting can fix: a
//! throttled call or a busy volume (another tool's snapshot still pending) is waited out within
//! the hold; a quota, a denial or a bad parameter fails safe at once.

use std::collections::BTreeSet;

use tracing::{debug, error, warn};

use super::plan::{Plan, MAX_EXCLUDED_DATA_VOLUMES};
use super::record::Rescue;
use super::{RescueError, Rescuer, ATTACHMENTS_FRESH_FOR};
use crate::aws::{AwsError, Cloud, InstanceFacts, SnapshotRequest};
use crate::clock::Clock;
use crate::ids::{ResourceId, VolumeId};
use crate::tags;

/// How an attempt to snapshot went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Snapshots were started (or the instance turned out to be gone): decide again.
    Made,
    /// EC2 refused for a reason waiting fixes: wait, within the hold, and try again.
    Blocked,
    /// EC2 refused for a reason no wait fixes: fail safe. Its words.
    Refused(String),
}

impl<C: Cloud, K: Clock> Rescuer<'_, C, K> {
    /// One `CreateSnapshots` for every volume of the rescue attached now (the others left out).
    pub(super) async fn take_set(&self, rescue: &mut Rescue) -> Result<Attempt, RescueError> {
        let instance = match rescue.instance.clone() {
            Some(instance) => instance,
            None => match self.instance_now(rescue).await? {
                Some(instance) => instance,
                None => return Ok(Attempt::Made),
            },
        };
        let attached = self.attached_volumes(rescue, ATTACHMENTS_FRESH_FOR).await?;
        let wanted: BTreeSet<&VolumeId> = rescue.volumes.keys().collect();
        let plan = Plan::covering(&instance, &attached, &wanted);
        if plan.snapshot.is_empty() {
            // None of the rescue's volumes is attached any more: the instance is going, or they
            // were detached. A set of nothing saves nothing; see which it is.
            if self.instance_now(rescue).await?.is_none() {
                return Ok(Attempt::Made);
            }
            let volumes: Vec<VolumeId> = rescue.volumes.keys().cloned().collect();
            return self.retry(rescue, &volumes).await;
        }
        let attempt = rescue
            .volumes
            .keys()
            .map(|v| rescue.attempts(v).len() as u32)
            .max()
            .unwrap_or(0)
            + 1;
        let label = rescue.label(
            tags::new_set_id(self.clock.now()),
            attempt,
            rescue.descriptors(),
        );
        let (request, one_by_one) = plan.request(&instance, label.tags(), rescue.description());
        if request.exclude_data_volumes.len() > MAX_EXCLUDED_DATA_VOLUMES {
            // EC2 takes at most 40 excluded volumes in one CreateSnapshots: snapshot the
            // rescue's volumes one by one instead (each crash-consistent on its own, not across
            // volumes); the volumes left out are kept all the same.
            warn!(
                excluded = request.exclude_data_volumes.len(),
                "more volumes left out than one CreateSnapshots can exclude; snapshotting the rescue's volumes one by one (not crash-consistent across volumes)"
            );
            let volumes: Vec<VolumeId> = plan.snapshot.iter().map(|v| v.id.clone()).collect();
            return self
                .snapshot_each(rescue, &volumes, "snapshotting the volume on its own")
                .await;
        }
        let created = match self.cloud.create_snapshot_set(&request).await {
            Ok(created) => created,
            Err(err) => return Ok(self.refusal(rescue, err)),
        };
        if attempt > 1 {
            warn!(attempt, "the whole set failed; taking it again");
        }
        let now = self.clock.now();
        for mut snapshot in created {
            snapshot.start_time.get_or_insert(now);
            rescue.absorb(snapshot, &label);
        }
        for (volume_id, tags) in one_by_one {
            let ids: Vec<ResourceId> = rescue
                .snapshots
                .values()
                .filter(|s| s.volume_id.as_ref() == Some(&volume_id))
                .map(|s| ResourceId::Snapshot(s.id.clone()))
                .collect();
            match self.cloud.tag(&ids, &tags).await {
                Ok(()) => rescue.note_tags(&ids, &tags),
                // Often EC2 does not see a snapshot this young yet: the descriptor is written
                // when the rescue's state is (see `finish`).
                Err(err) => {
                    debug!(error = %err, volume_id = %volume_id, "could not tag a snapshot with its volume's descriptor yet")
                }
            }
        }
        Ok(Attempt::Made)
    }

    /// The instance as EC2 describes it now, remembered; `None` (and the rescue knows it) when
    /// it is shutting down, terminated or unknown.
    async fn instance_now(
        &self,
        rescue: &mut Rescue,
    ) -> Result<Option<InstanceFacts>, RescueError> {
        let described = self
            .cloud
            .describe_instance(&rescue.action.instance_id)
            .await
            .map_err(|err| rescue.error(err))?;
        match described {
            Some(instance) if !instance.state.is_gone() => {
                rescue.instance = Some(instance.clone());
                Ok(Some(instance))
            }
            _ => {
                rescue.instance_gone = true;
                Ok(None)
            }
        }
    }

    /// Snapshots these volumes again, one `CreateSnapshot` each.
    pub(super) async fn retry(
        &self,
        rescue: &mut Rescue,
        volumes: &[VolumeId],
    ) -> Result<Attempt, RescueError> {
        self.snapshot_each(rescue, volumes, "snapshotting the volume again")
            .await
    }

    /// One `CreateSnapshot` for each of these volumes, `why` in the log.
    async fn snapshot_each(
        &self,
        rescue: &mut Rescue,
        volumes: &[VolumeId],
        why: &str,
    ) -> Result<Attempt, RescueError> {
        for volume_id in volumes {
            let attempt = rescue.attempts(volume_id).len() as u32 + 1;
            let descriptor = rescue.volumes.get(volume_id).cloned().flatten();
            let label = rescue.label(
                tags::new_set_id(self.clock.now()),
                attempt,
                descriptor
                    .into_iter()
                    .map(|d| (volume_id.clone(), d))
                    .collect(),
            );
            let request = SnapshotRequest {
                volume_id: volume_id.clone(),
                description: rescue.description(),
                tags: label.tags(),
            };
            match self.cloud.create_snapshot(&request).await {
                Ok(mut snapshot) => {
                    warn!(volume_id = %volume_id, attempt, snapshot_id = %snapshot.id, "{why}");
                    snapshot.start_time.get_or_insert(self.clock.now());
                    rescue.absorb(snapshot, &label);
                }
                Err(err) => return Ok(self.refusal(rescue, err)),
            }
        }
        Ok(Attempt::Made)
    }

    /// What a refused snapshot call means for the rescue.
    fn refusal(&self, rescue: &mut Rescue, err: AwsError) -> Attempt {
        // CreateSnapshots refuses an instance shutting down or terminated.
        if err.says_instance_gone() {
            rescue.instance_gone = true;
            return Attempt::Made;
        }
        if err.waiting_can_fix() {
            warn!(error = %err, "EC2 refused the snapshots for now; waiting it out within the hold");
            return Attempt::Blocked;
        }
        error!(error = %err, "EC2 refused the snapshots for a reason no wait fixes");
        Attempt::Refused(err.to_string())
    }
}
