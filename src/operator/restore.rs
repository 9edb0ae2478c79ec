//! `lifeboat restore`: from an instance's rescued set, volumes in the new instance's zone with
//! the original type, size, IOPS, throughput, encryption and KMS key, tagged with where they
//! came from, attached to the new instance at the original device names (or a device map).
//! Everything that can be refused is refused before the first change: an incomplete set, a
//! target in another state than running or stopped, a device name already taken.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::list::{encryption, rescued_sets, RescuedSet};
use super::{aws_error, table, OperatorError};
use crate::aws::operator::{InstanceView, NewVolume, OperatorAws, RescueScope};
use crate::aws::{InstanceState, SnapshotState, StorageTier, Tags};
use crate::ids::{InstanceId, SnapshotId, VolumeId};
use crate::tags::{self, MAX_TAGS_PER_RESOURCE};

pub const RESTORED_FROM_INSTANCE: &str = "lifeboat:restored-from-instance";
pub const RESTORED_FROM_VOLUME: &str = "lifeboat:restored-from-volume";
pub const RESTORED_FROM_SNAPSHOT: &str = "lifeboat:restored-from-snapshot";
pub const RESTORED_FROM_DEVICE: &str = "lifeboat:restored-from-device";
pub const RESTORED_AT: &str = "lifeboat:restored-at";

/// The boot devices AMIs use, for when EC2 no longer knows the old instance.
const USUAL_BOOT_DEVICES: &[&str] = &["/dev/xvda", "/dev/sda1"];

/// Where the volumes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Created in this instance's zone and attached to it.
    Instance(InstanceId),
    /// Created in this zone, not attached.
    Zone(String),
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub from: InstanceId,
    pub target: Target,
    /// Original device → device on the target.
    pub device_map: BTreeMap<String, String>,
    pub include_boot: bool,
    pub dry_run: bool,
    /// How often to look while volumes are created and attached, and for how long at most.
    pub poll: Duration,
    pub patience: Duration,
}

/// One volume of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedVolume {
    pub source_device: String,
    pub source_volume_id: VolumeId,
    pub snapshot_id: SnapshotId,
    /// The device on the target (`None` with `--zone`).
    pub device: Option<String>,
    pub size_gib: Option<i32>,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub tags: Tags,
    /// Filled once created.
    pub volume_id: Option<VolumeId>,
}

/// A volume of the set left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub device: String,
    pub volume_id: VolumeId,
    pub reason: String,
}

/// What a restore does (or did).
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub from: InstanceId,
    pub set_started_at: chrono::DateTime<Utc>,
    pub to: Option<InstanceId>,
    pub availability_zone: String,
    pub volumes: Vec<PlannedVolume>,
    pub skipped: Vec<Skipped>,
    pub dry_run: bool,
}

/// The target as EC2 knows it, when it is an instance.
pub struct TargetFacts<'a> {
    pub instance: Option<&'a InstanceView>,
    pub zone: Option<&'a str>,
    /// The old instance, when EC2 still knows it (its boot device).
    pub old: Option<&'a InstanceView>,
}

fn refused(reason: impl Into<String>) -> OperatorError {
    OperatorError::Refused(reason.into())
}

/// The plan for restoring `set` onto the target, or why not. Changes nothing.
pub fn plan(
    set: &RescuedSet,
    request: &RestoreRequest,
    target: &TargetFacts<'_>,
) -> Result<RestorePlan, OperatorError> {
    let incomplete: Vec<String> = set
        .volumes
        .iter()
        .filter(|v| v.state != Some(SnapshotState::Completed))
        .map(|v| {
            format!(
                "{} ({}) has {}",
                v.device,
                v.volume_id,
                match v.state {
                    Some(state) =>
                        format!("a snapshot in state {}", super::list::state_name(state)),
                    None => "no snapshot".into(),
                }
            )
        })
        .collect();
    if !incomplete.is_empty() {
        return Err(refused(format!(
            "the rescued set of {} is incomplete: {}; wait for it (lifeboat watch --instance {}) or restore from the volumes lifeboat kept",
            set.instance_id,
            incomplete.join(", "),
            set.instance_id
        )));
    }
    let unplaced: Vec<String> = set
        .volumes
        .iter()
        .filter(|v| !v.placed)
        .map(|v| {
            let snapshot = v
                .snapshot_id
                .as_ref()
                .map_or_else(|| "no snapshot".to_owned(), ToString::to_string);
            format!("{} ({snapshot})", v.volume_id)
        })
        .collect();
    if !unplaced.is_empty() {
        return Err(refused(format!(
            "the record of the rescued set of {} is incomplete: nothing says at which device these volumes were attached: {}; create a volume from each snapshot by hand (aws ec2 create-volume --snapshot-id ...) and attach it where it belongs",
            set.instance_id,
            unplaced.join(", ")
        )));
    }
    let devices: BTreeSet<&str> = set.volumes.iter().map(|v| v.device.as_str()).collect();
    for from in request.device_map.keys() {
        if !devices.contains(from.as_str()) {
            return Err(OperatorError::argument(
                "--device-map",
                from,
                format!(
                    "not a device of the rescued set ({})",
                    devices.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let (to, zone) = match (&request.target, target.instance) {
        (Target::Instance(id), Some(instance)) => {
            if !matches!(
                instance.state,
                InstanceState::Running | InstanceState::Stopped
            ) {
                return Err(refused(format!(
                    "{id} is {:?}, not running or stopped",
                    instance.state
                )));
            }
            (Some(id.clone()), instance.availability_zone.clone())
        }
        (Target::Instance(id), None) => {
            return Err(refused(format!("EC2 does not know the instance {id}")))
        }
        (Target::Zone(zone), _) => (None, target.zone.unwrap_or(zone).to_owned()),
    };
    let boot: BTreeSet<String> = match target.old.and_then(|o| o.root_device_name.clone()) {
        Some(root) => BTreeSet::from([root]),
        None => USUAL_BOOT_DEVICES
            .iter()
            .map(|d| d.to_string())
            .chain(target.instance.and_then(|i| i.root_device_name.clone()))
            .collect(),
    };
    let taken: BTreeMap<&str, &VolumeId> = target
        .instance
        .map(|i| {
            i.devices
                .iter()
                .map(|d| (d.device.as_str(), &d.volume_id))
                .collect()
        })
        .unwrap_or_default();
    let now = Utc::now();
    let mut volumes = Vec::new();
    let mut skipped = Vec::new();
    let mut targets: BTreeSet<String> = BTreeSet::new();
    for v in &set.volumes {
        if boot.contains(&v.device) && !request.include_boot {
            skipped.push(Skipped {
                device: v.device.clone(),
                volume_id: v.volume_id.clone(),
                reason: "boot volume (restore it with --include-boot)".into(),
            });
            continue;
        }
        let device = match &request.target {
            Target::Zone(_) => None,
            Target::Instance(_) => {
                let device = request
                    .device_map
                    .get(&v.device)
                    .cloned()
                    .unwrap_or_else(|| v.device.clone());
                if let Some(volume) = taken.get(device.as_str()) {
                    return Err(refused(format!(
                        "device {device} of {} is taken by {volume}; map {} elsewhere with --device-map {}=/dev/sdX",
                        to.as_ref().map(ToString::to_string).unwrap_or_default(),
                        v.device,
                        v.device
                    )));
                }
                if !targets.insert(device.clone()) {
                    return Err(OperatorError::argument(
                        "--device-map",
                        &device,
                        "two volumes would be attached at this device",
                    ));
                }
                Some(device)
            }
        };
        let Some(snapshot_id) = v.snapshot_id.clone() else {
            return Err(refused(format!("{} has no snapshot", v.device)));
        };
        let mut tags: Tags = v
            .volume_tags
            .iter()
            .take(MAX_TAGS_PER_RESOURCE - 5)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.insert(RESTORED_FROM_INSTANCE.into(), set.instance_id.to_string());
        tags.insert(RESTORED_FROM_VOLUME.into(), v.volume_id.to_string());
        tags.insert(RESTORED_FROM_SNAPSHOT.into(), snapshot_id.to_string());
        tags.insert(RESTORED_FROM_DEVICE.into(), v.device.clone());
        tags.insert(RESTORED_AT.into(), tags::timestamp(now));
        volumes.push(PlannedVolume {
            source_device: v.device.clone(),
            source_volume_id: v.volume_id.clone(),
            snapshot_id,
            device,
            size_gib: v.size_gib,
            volume_type: if v.volume_type.is_empty() {
                "gp3".into()
            } else {
                v.volume_type.clone()
            },
            iops: v.iops,
            throughput: v.throughput,
            encrypted: v.encrypted,
            kms_key_id: v.kms_key_id.clone(),
            tags,
            volume_id: None,
        });
    }
    if volumes.is_empty() {
        return Err(refused(format!(
            "nothing to restore: the set of {} holds only its boot volume (add --include-boot)",
            set.instance_id
        )));
    }
    Ok(RestorePlan {
        from: set.instance_id.clone(),
        set_started_at: set.started_at,
        to,
        availability_zone: zone,
        volumes,
        skipped,
        dry_run: request.dry_run,
    })
}

/// Creates the plan's volumes, waits until they are available, attaches them (to an instance
/// target) and waits until they are attached. A failure part-way says which volumes exist.
async fn carry_out(
    aws: &OperatorAws,
    plan: &mut RestorePlan,
    request: &RestoreRequest,
) -> Result<(), OperatorError> {
    let created = |plan: &RestorePlan| -> String {
        let ids: Vec<String> = plan
            .volumes
            .iter()
            .filter_map(|v| v.volume_id.as_ref().map(ToString::to_string))
            .collect();
        if ids.is_empty() {
            "no volume was created".into()
        } else {
            format!("created so far, and left in place: {}", ids.join(", "))
        }
    };
    // Retention leaves a set alone while a restore uses it: a day covers creating and
    // attaching the volumes (a volume does not need its snapshot once created).
    let snapshots: Vec<String> = plan
        .volumes
        .iter()
        .map(|v| v.snapshot_id.to_string())
        .collect();
    mark_in_use(aws, &snapshots, Utc::now() + chrono::Duration::days(1)).await;
    for i in 0..plan.volumes.len() {
        let v = &plan.volumes[i];
        let request_volume = NewVolume {
            snapshot_id: v.snapshot_id.to_string(),
            availability_zone: plan.availability_zone.clone(),
            volume_type: v.volume_type.clone(),
            iops: v
                .iops
                .filter(|_| matches!(v.volume_type.as_str(), "gp3" | "io1" | "io2")),
            throughput: v.throughput.filter(|_| v.volume_type == "gp3"),
            encrypted: v.encrypted,
            kms_key_id: v.kms_key_id.clone(),
            tags: v.tags.clone(),
        };
        match aws.create_volume(&request_volume).await {
            Ok(id) => plan.volumes[i].volume_id = Some(id),
            Err(source) => {
                return Err(OperatorError::Aws {
                    context: format!(
                        "creating the volume of {} ({})",
                        v.source_device,
                        created(plan)
                    ),
                    source,
                })
            }
        }
    }
    let ids: Vec<VolumeId> = plan
        .volumes
        .iter()
        .filter_map(|v| v.volume_id.clone())
        .collect();
    wait_for(aws, &ids, request, "available", |s| s.state == "available")
        .await
        .map_err(|err| match err {
            OperatorError::Aws { context, source } => OperatorError::Aws {
                context: format!("{context} ({})", created(plan)),
                source,
            },
            other => other,
        })?;
    let Some(instance) = plan.to.clone() else {
        return Ok(());
    };
    for v in &plan.volumes {
        let (Some(id), Some(device)) = (&v.volume_id, &v.device) else {
            continue;
        };
        aws.attach_volume(id, &instance, device)
            .await
            .map_err(aws_error(format!(
                "attaching {id} to {instance} at {device} ({})",
                created(plan)
            )))?;
    }
    wait_for(aws, &ids, request, "attached", |s| {
        s.attachment
            .as_ref()
            .is_some_and(|(i, _, state)| i == instance.as_str() && state == "attached")
    })
    .await
}

/// Polls the volumes until `ready` holds for each; a volume in `error` stops the wait.
async fn wait_for(
    aws: &OperatorAws,
    ids: &[VolumeId],
    request: &RestoreRequest,
    what: &str,
    ready: impl Fn(&crate::aws::operator::VolumeStatus) -> bool,
) -> Result<(), OperatorError> {
    let deadline = tokio::time::Instant::now() + request.patience;
    loop {
        let statuses = aws.volumes(ids).await.map_err(aws_error(format!(
            "reading the restored volumes while waiting for {what}"
        )))?;
        if let Some(failed) = statuses.iter().find(|s| s.state == "error") {
            return Err(refused(format!(
                "volume {} went into state error",
                failed.id
            )));
        }
        if statuses.len() == ids.len() && statuses.iter().all(&ready) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(refused(format!(
                "the volumes were not {what} after {} s; they exist: {}",
                request.patience.as_secs(),
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tokio::time::sleep(request.poll).await;
    }
}

/// Restores (or, with `dry_run`, only plans) the latest rescued set of `request.from`.
pub async fn restore(
    aws: &OperatorAws,
    request: &RestoreRequest,
) -> Result<RestorePlan, OperatorError> {
    if let Target::Instance(to) = &request.target {
        if to == &request.from {
            return Err(OperatorError::argument(
                "--to",
                to.as_str(),
                "the same instance as --instance",
            ));
        }
    }
    let snapshots = aws
        .rescue_snapshots(&RescueScope::Instances(vec![request.from.clone()]))
        .await
        .map_err(aws_error(format!(
            "reading the rescued set of {}",
            request.from
        )))?;
    let Some(set) = rescued_sets(snapshots).into_iter().next() else {
        return Err(refused(format!(
            "no rescued set of {} (lifeboat list shows the sets there are)",
            request.from
        )));
    };
    let mut ids = vec![request.from.clone()];
    if let Target::Instance(to) = &request.target {
        ids.push(to.clone());
    }
    let instances = aws
        .instances(&ids)
        .await
        .map_err(aws_error("reading the instances"))?;
    let find = |id: &InstanceId| instances.iter().find(|i| &i.id == id);
    let target = TargetFacts {
        instance: match &request.target {
            Target::Instance(to) => find(to),
            Target::Zone(_) => None,
        },
        zone: match &request.target {
            Target::Zone(zone) => Some(zone.as_str()),
            Target::Instance(_) => None,
        },
        old: find(&request.from),
    };
    let mut plan = plan(&set, request, &target)?;
    let archived: Vec<SnapshotId> = set
        .volumes
        .iter()
        .filter(|v| v.tier == StorageTier::Archive && v.restored_until.is_none())
        .filter_map(|v| v.snapshot_id.clone())
        .filter(|id| plan.volumes.iter().any(|p| &p.snapshot_id == id))
        .collect();
    if !archived.is_empty() {
        return from_the_archive(aws, &plan, &archived, request.dry_run).await;
    }
    if !request.dry_run {
        carry_out(aws, &mut plan, request).await?;
    }
    Ok(plan)
}

/// Tags the set's snapshots in use until `until`, so retention leaves them alone; a failure is
/// a warning (the restore goes on).
async fn mark_in_use(aws: &OperatorAws, snapshots: &[String], until: chrono::DateTime<Utc>) {
    if let Err(err) = aws.mark_in_use(snapshots, until).await {
        eprintln!("warning: could not tag the set as in use by this restore ({err}); retention may archive or delete it meanwhile");
    }
}

/// How long a snapshot restored from the archive stays restored: time for the operator to come
/// back after EC2's up to 72 hours.
const RESTORED_DAYS: i32 = 7;

/// Some of the set's snapshots are in the archive tier: EC2 makes no volume from them. Starts
/// their temporary restore (unless a dry run) and says to come back.
async fn from_the_archive(
    aws: &OperatorAws,
    plan: &RestorePlan,
    archived: &[SnapshotId],
    dry_run: bool,
) -> Result<RestorePlan, OperatorError> {
    let names: Vec<String> = archived.iter().map(ToString::to_string).collect();
    if dry_run {
        return Err(OperatorError::NotYet(format!(
            "{} of the set are in the archive tier; without --dry-run lifeboat restore starts their restore from the archive (EC2 takes up to 72 hours), then run it again",
            names.join(", ")
        )));
    }
    for id in archived {
        aws.restore_from_archive(id, RESTORED_DAYS)
            .await
            .map_err(aws_error(format!("restoring {id} from the archive")))?;
    }
    let all: Vec<String> = plan
        .volumes
        .iter()
        .map(|v| v.snapshot_id.to_string())
        .collect();
    let until = Utc::now() + chrono::Duration::days(i64::from(RESTORED_DAYS) + 3);
    mark_in_use(aws, &all, until).await;
    Err(OperatorError::NotYet(format!(
        "{} of the set are in the archive tier: their restore from the archive has started (EC2 takes up to 72 hours; they then stay restored {RESTORED_DAYS} days). Run this command again once lifeboat list shows them \"archive (restored until …)\"; nothing else was changed",
        names.join(", ")
    )))
}

/// The plan (or what was done) as text.
pub fn render(plan: &RestorePlan) -> String {
    let mut out = format!(
        "{} the rescued set of {} (started {}) {} in {}\n\n",
        if plan.dry_run {
            "Would restore"
        } else {
            "Restored"
        },
        plan.from,
        tags::timestamp(plan.set_started_at),
        match &plan.to {
            Some(to) => format!("onto {to}"),
            None => "as unattached volumes".into(),
        },
        plan.availability_zone
    );
    let rows: Vec<Vec<String>> = plan
        .volumes
        .iter()
        .map(|v| {
            vec![
                v.source_device.clone(),
                v.snapshot_id.to_string(),
                v.device.clone().unwrap_or_else(|| "-".into()),
                v.size_gib
                    .map(|g| format!("{g} GiB"))
                    .unwrap_or_else(|| "?".into()),
                format!(
                    "{}{}{}",
                    v.volume_type,
                    v.iops.map(|i| format!(" {i} IOPS")).unwrap_or_default(),
                    v.throughput
                        .map(|t| format!(" {t} MiB/s"))
                        .unwrap_or_default()
                ),
                encryption(v.encrypted, v.kms_key_id.as_deref()),
                v.volume_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "(not created)".into()),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "FROM",
            "SNAPSHOT",
            "ATTACH AT",
            "SIZE",
            "TYPE",
            "ENCRYPTED",
            "NEW VOLUME",
        ],
        &rows,
    ));
    for s in &plan.skipped {
        out.push_str(&format!(
            "skipped {} ({}): {}\n",
            s.device, s.volume_id, s.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests;
