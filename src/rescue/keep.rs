//! Keep first: before anything else can go wrong, EC2 itself keeps every attached EBS volume
//! (`DeleteOnTermination=false`, the volume tagged as kept by this rescue and why), so that no
//! path — lifeboat crashing or throttled for hours, `CreateSnapshots` refused, the hook timing
//! out, another hook's ABANDON, the hook deleted (which CONTINUEs) — deletes a volume that has no
//! completed snapshot. A volume is given back its own `DeleteOnTermination=true` only right
//! before CONTINUE, and only once its snapshot completed. Keep-first is a safety net, not a
//! release condition. The same keeping serves the volumes the settings exclude, the fail safe
//! and an action that ended without lifeboat.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::plan::Plan;
use super::record::Rescue;
use super::{RescueError, Rescuer};
use crate::aws::{Cloud, VolumeFacts};
use crate::clock::Clock;
use crate::ids::ResourceId;
use crate::report::KeptVolume;
use crate::tags::{self, KeptReason};

impl<C: Cloud, K: Clock> Rescuer<'_, C, K> {
    /// Keeps every volume of the plan: those to snapshot until their snapshot completes, the
    /// excluded ones for good. Costs nothing when an earlier invocation kept them already.
    pub(super) async fn keep_first(
        &self,
        rescue: &mut Rescue,
        plan: &Plan,
    ) -> Result<(), RescueError> {
        let mut wanted: Vec<(VolumeFacts, KeptReason)> = plan
            .snapshot
            .iter()
            // A volume EC2 would not delete anyway is the owner's to keep; lifeboat leaves its
            // setting alone (and so never has to give it back).
            .filter(|v| v.delete_on_termination)
            .map(|v| (v.clone(), KeptReason::First))
            .collect();
        for (volume, exclusion) in &plan.excluded {
            let reason = KeptReason::Excluded(exclusion.why());
            rescue.kept.retain(|k| k.volume_id != volume.id);
            rescue.kept.push(KeptVolume {
                volume_id: volume.id.clone(),
                device: volume.device.clone(),
                reason: reason.text(),
            });
            wanted.push((volume.clone(), reason));
        }
        let instance = &rescue.action.instance_id;
        wanted.retain(|(v, reason)| {
            v.delete_on_termination || KeptReason::of(&v.tags, instance).as_ref() != Some(reason)
        });
        self.keep(rescue, &wanted).await
    }

    /// Keeps these volumes: each tagged with why (one `CreateTags` per reason), then
    /// `DeleteOnTermination=false` for those EC2 would delete (one `ModifyInstanceAttribute`).
    /// Tags first: a rescue killed between the two calls leaves volumes marked as meant to be
    /// kept, which the next invocation keeps; never a volume kept with no word of why.
    pub(super) async fn keep(
        &self,
        rescue: &mut Rescue,
        volumes: &[(VolumeFacts, KeptReason)],
    ) -> Result<(), RescueError> {
        if volumes.is_empty() {
            return Ok(());
        }
        let instance = rescue.action.instance_id.clone();
        let now = self.clock.now();
        let mut by_reason: BTreeMap<String, (KeptReason, Vec<ResourceId>)> = BTreeMap::new();
        for (volume, reason) in volumes {
            by_reason
                .entry(reason.text())
                .or_insert_with(|| (reason.clone(), Vec::new()))
                .1
                .push(ResourceId::Volume(volume.id.clone()));
        }
        for (reason, resources) in by_reason.values() {
            self.cloud
                .tag(resources, &tags::kept_tags(&instance, reason, now))
                .await
                .map_err(|err| rescue.error(err))?;
        }
        let devices: Vec<String> = volumes
            .iter()
            .filter(|(v, _)| v.delete_on_termination)
            .map(|(v, _)| v.device.clone())
            .collect();
        self.cloud
            .set_delete_on_termination(&instance, &devices, false)
            .await
            .map_err(|err| rescue.error(err))?;
        for (volume, reason) in volumes {
            info!(volume_id = %volume.id, device = volume.device, reason = reason.text(), "volume kept (DeleteOnTermination=false)");
        }
        // What EC2 said of these volumes no longer holds: update it.
        if let Some((_, attached)) = &mut rescue.attached {
            for (volume, reason) in volumes {
                if let Some(known) = attached.iter_mut().find(|v| v.id == volume.id) {
                    known.delete_on_termination = false;
                    known.tags.extend(tags::kept_tags(&instance, reason, now));
                }
            }
        }
        Ok(())
    }

    /// Right before CONTINUE: every volume kept first by this rescue gets its own
    /// `DeleteOnTermination=true` back, once it has a completed snapshot of this rescue (the
    /// release checks that every one has). A refusal that waiting fixes holds the release back;
    /// any other leaves the volume kept — it outlives the instance, tagged — and releases.
    pub(super) async fn give_back(
        &self,
        rescue: &mut Rescue,
        attached: &[VolumeFacts],
    ) -> Result<(), RescueError> {
        let instance = rescue.action.instance_id.clone();
        let devices: Vec<String> = attached
            .iter()
            .filter(|v| {
                !v.delete_on_termination
                    && KeptReason::of(&v.tags, &instance) == Some(KeptReason::First)
                    && rescue.saved(&v.id)
            })
            .map(|v| v.device.clone())
            .collect();
        if devices.is_empty() {
            return Ok(());
        }
        match self
            .cloud
            .set_delete_on_termination(&instance, &devices, true)
            .await
        {
            Ok(()) => {
                info!(devices = ?devices, "kept-first volumes given back DeleteOnTermination=true: each has a completed snapshot");
                if let Some((_, known)) = &mut rescue.attached {
                    for v in known.iter_mut().filter(|v| devices.contains(&v.device)) {
                        v.delete_on_termination = true;
                    }
                }
                Ok(())
            }
            Err(err) if err.waiting_can_fix() => Err(rescue.error(err)),
            Err(err) => {
                warn!(error = %err, devices = ?devices, "could not give the volumes back their DeleteOnTermination; they outlive the instance, kept and tagged (each has a completed snapshot)");
                Ok(())
            }
        }
    }
}
