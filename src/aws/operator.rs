//! The operator's view of AWS, for the `lifeboat` command line: lifeboat's snapshots, whole
//! instances with their block devices, groups with their hooks and retention policy, the latest
//! snapshot of volumes, and the volumes a restore creates and attaches. Lifeboat's own types in
//! and out; it decides nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_autoscaling::types::RetentionAction;
use aws_sdk_ec2::types::{ResourceType, VolumeType};
use chrono::{DateTime, Utc};

use super::ec2::{
    filter, instance_state, sdk_tags, tagged_at_creation, Ec2Adapter, FILTER_VALUES_PER_REQUEST,
};
use super::{AwsError, AwsErrorKind, GroupScope, InstanceState, SnapshotFacts, Tags};
use crate::ids::{GroupName, HookName, InstanceId, SnapshotId, VolumeId};
use crate::tags;

/// Which of lifeboat's snapshots to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescueScope {
    All,
    Instances(Vec<InstanceId>),
    Group(GroupName),
    /// The snapshots of rescues still in flight.
    Pending,
}

/// An instance with its placement and block devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: InstanceId,
    pub state: InstanceState,
    pub availability_zone: String,
    pub root_device_name: Option<String>,
    pub devices: Vec<DeviceView>,
    /// Tagged `lifeboat:stateless=true`: nothing on it needs to survive.
    pub stateless: bool,
}

/// An EBS volume in an instance's block device mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    pub device: String,
    pub volume_id: VolumeId,
    pub delete_on_termination: bool,
}

/// An Auto Scaling group: its instances (with their life-cycle state), whether an abandoned
/// termination hook retains the instance, and whether it is tagged `lifeboat:protected=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: GroupName,
    pub instances: Vec<(InstanceId, String)>,
    pub retains_on_hook_abandon: bool,
    pub tagged_protected: bool,
}

/// A lifecycle hook of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookView {
    pub name: HookName,
    /// `autoscaling:EC2_INSTANCE_TERMINATING` or `…_LAUNCHING`.
    pub transition: String,
    pub heartbeat_timeout: Duration,
    pub global_timeout: Duration,
    pub default_result: String,
    pub notification_metadata: Option<String>,
}

/// A volume to create from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVolume {
    pub snapshot_id: String,
    pub availability_zone: String,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub tags: Tags,
}

/// A volume's state and, when attached, where: what a restore waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    pub id: VolumeId,
    /// `creating`, `available`, `in-use`, `error`…
    pub state: String,
    /// (instance, device, `attaching` / `attached` …)
    pub attachment: Option<(String, String, String)>,
    /// Tagged `lifeboat:stateless=true`: nothing on it needs to survive.
    pub stateless: bool,
}

/// Tags that say `lifeboat:stateless=true`.
fn marked_stateless(tags: &[aws_sdk_ec2::types::Tag]) -> bool {
    tags.iter().any(|t| {
        t.key() == Some(crate::tags::STATELESS)
            && t.value().is_some_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// The AWS calls of the operator's commands, on the operator's own credentials.
pub struct OperatorAws {
    snapshots: Ec2Adapter,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

fn seconds(value: Option<i32>) -> Duration {
    Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

impl OperatorAws {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let ec2 = aws_sdk_ec2::Client::new(config);
        Self {
            snapshots: Ec2Adapter::new(ec2.clone()),
            ec2,
            autoscaling: aws_sdk_autoscaling::Client::new(config),
        }
    }

    /// Reads the standard environment (profiles, `AWS_REGION`, `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> Self {
        Self::new(&super::client::sdk_config().await)
    }

    /// The standard environment, in `region` when one is given.
    pub async fn in_region(region: Option<String>) -> Self {
        Self::new(&Self::config_in(region).await)
    }

    /// The standard environment's SDK configuration, in `region` when one is given.
    pub async fn config_in(region: Option<String>) -> aws_config::SdkConfig {
        let loader =
            super::client::tuned(aws_config::defaults(aws_config::BehaviorVersion::latest()));
        let loader = match region {
            Some(region) => loader.region(aws_config::Region::new(region)),
            None => loader,
        };
        loader.load().await
    }

    /// The Regions enabled for the account (`DescribeRegions` without AllRegions: those that
    /// need no opt-in and those opted in), sorted.
    pub async fn enabled_regions(&self) -> Result<Vec<String>, AwsError> {
        let reply = self
            .ec2
            .describe_regions()
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeRegions", err))?;
        let mut names: Vec<String> = reply
            .regions()
            .iter()
            .filter(|r| r.opt_in_status().is_none_or(|s| s != "not-opted-in"))
            .filter_map(|r| r.region_name().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Lifeboat's snapshots in `scope`, as one paginated `DescribeSnapshots` per 200 values.
    pub async fn rescue_snapshots(
        &self,
        scope: &RescueScope,
    ) -> Result<Vec<SnapshotFacts>, AwsError> {
        let tag = |key: &str| format!("tag:{key}");
        match scope {
            RescueScope::All => {
                self.snapshots
                    .describe_snapshots(vec![filter("tag-key", [tags::INSTANCE_ID])])
                    .await
            }
            RescueScope::Group(group) => {
                self.snapshots
                    .describe_snapshots(vec![filter(&tag(tags::GROUP), [group.as_str()])])
                    .await
            }
            RescueScope::Pending => {
                self.snapshots
                    .describe_snapshots(vec![filter(
                        &tag(tags::STATE),
                        [tags::RescueState::Pending.as_str()],
                    )])
                    .await
            }
            RescueScope::Instances(ids) => {
                let mut found = Vec::new();
                for chunk in ids.chunks(FILTER_VALUES_PER_REQUEST) {
                    let values = chunk.iter().map(|i| i.to_string());
                    found.extend(
                        self.snapshots
                            .describe_snapshots(vec![filter(&tag(tags::INSTANCE_ID), values)])
                            .await?,
                    );
                }
                Ok(found)
            }
        }
    }

    /// The latest completed snapshot's start of each of `volumes` that has one.
    pub async fn latest_completed_snapshots(
        &self,
        volumes: &[VolumeId],
    ) -> Result<BTreeMap<VolumeId, DateTime<Utc>>, AwsError> {
        let mut latest: BTreeMap<VolumeId, DateTime<Utc>> = BTreeMap::new();
        for chunk in volumes.chunks(FILTER_VALUES_PER_REQUEST) {
            let found = self
                .snapshots
                .describe_snapshots(vec![
                    filter("volume-id", chunk.iter().map(|v| v.to_string())),
                    filter("status", ["completed"]),
                ])
                .await?;
            for snapshot in found {
                let (Some(volume), Some(start)) = (snapshot.volume_id, snapshot.start_time) else {
                    continue;
                };
                let entry = latest.entry(volume).or_insert(start);
                *entry = (*entry).max(start);
            }
        }
        Ok(latest)
    }

    /// These instances, as EC2 knows them; ids it does not know are left out.
    pub async fn instances(&self, ids: &[InstanceId]) -> Result<Vec<InstanceView>, AwsError> {
        const OP: &str = "DescribeInstances";
        let mut views = Vec::new();
        for chunk in ids.chunks(FILTER_VALUES_PER_REQUEST) {
            let mut pages = self
                .ec2
                .describe_instances()
                .filters(filter("instance-id", chunk.iter().map(|i| i.to_string())))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| AwsError::from_sdk(OP, err))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    let Some(id) = instance
                        .instance_id()
                        .and_then(|i| InstanceId::parse(i).ok())
                    else {
                        continue;
                    };
                    let devices = instance
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| {
                            let ebs = m.ebs()?;
                            Some(DeviceView {
                                device: m.device_name()?.to_owned(),
                                volume_id: VolumeId::parse(ebs.volume_id()?).ok()?,
                                delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                            })
                        })
                        .collect();
                    views.push(InstanceView {
                        id,
                        state: instance_state(instance),
                        availability_zone: instance
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .unwrap_or_default()
                            .to_owned(),
                        root_device_name: instance.root_device_name().map(str::to_owned),
                        devices,
                        stateless: marked_stateless(instance.tags()),
                    });
                }
            }
        }
        Ok(views)
    }

    /// The groups of `scope` (every group of the account and region for `All`).
    pub async fn groups(&self, scope: &GroupScope) -> Result<Vec<GroupView>, AwsError> {
        let mut groups = Vec::new();
        for group in super::autoscaling::describe_groups(
            &self.autoscaling,
            &super::budget::Budget::unlimited(),
            scope,
        )
        .await?
        {
            let Some(name) = group
                .auto_scaling_group_name()
                .and_then(|n| GroupName::parse(n).ok())
            else {
                continue;
            };
            let instances = group
                .instances()
                .iter()
                .filter_map(|i| {
                    Some((
                        InstanceId::parse(i.instance_id()?).ok()?,
                        i.lifecycle_state()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                    ))
                })
                .collect();
            let retains_on_hook_abandon = group
                .instance_lifecycle_policy()
                .and_then(|p| p.retention_triggers())
                .and_then(|t| t.terminate_hook_abandon())
                == Some(&RetentionAction::Retain);
            let tagged_protected = group.tags().iter().any(|t| {
                t.key() == Some(crate::tags::PROTECTED)
                    && t.value().is_some_and(|v| v.eq_ignore_ascii_case("true"))
            });
            groups.push(GroupView {
                name,
                instances,
                retains_on_hook_abandon,
                tagged_protected,
            });
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// Every lifecycle hook of `group`.
    pub async fn hooks(&self, group: &GroupName) -> Result<Vec<HookView>, AwsError> {
        let reply = self
            .autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group.as_str())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeLifecycleHooks", err))?;
        let mut hooks: Vec<HookView> = reply
            .lifecycle_hooks()
            .iter()
            .filter_map(|h| {
                let heartbeat = seconds(h.heartbeat_timeout());
                Some(HookView {
                    name: HookName::parse(h.lifecycle_hook_name()?).ok()?,
                    transition: h.lifecycle_transition().unwrap_or_default().to_owned(),
                    heartbeat_timeout: heartbeat,
                    global_timeout: super::autoscaling::global_timeout(
                        heartbeat,
                        h.global_timeout().map(|g| seconds(Some(g))),
                    ),
                    default_result: h.default_result().unwrap_or("ABANDON").to_owned(),
                    notification_metadata: h.notification_metadata().map(str::to_owned),
                })
            })
            .collect();
        hooks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hooks)
    }

    /// Starts a temporary restore of an archived snapshot for `days` (`RestoreSnapshotTier`);
    /// one already under way or done is left as it is.
    pub async fn restore_from_archive(
        &self,
        snapshot: &SnapshotId,
        days: i32,
    ) -> Result<(), AwsError> {
        const OP: &str = "RestoreSnapshotTier";
        match self
            .ec2
            .restore_snapshot_tier()
            .snapshot_id(snapshot.as_str())
            .temporary_restore_days(days)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = AwsError::from_sdk(OP, err);
                if err.code.as_deref() == Some("IncorrectState") {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Tags snapshots as in use by a restore until `until`: retention leaves their set alone.
    pub async fn mark_in_use(
        &self,
        snapshots: &[String],
        until: DateTime<Utc>,
    ) -> Result<(), AwsError> {
        const OP: &str = "CreateTags";
        if snapshots.is_empty() {
            return Ok(());
        }
        let tags = Tags::from([(
            crate::aftercare::IN_USE_UNTIL.to_owned(),
            tags::timestamp(until),
        )]);
        self.ec2
            .create_tags()
            .set_resources(Some(snapshots.to_vec()))
            .set_tags(Some(sdk_tags(&tags)))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        Ok(())
    }

    /// Creates a volume from a snapshot, tagged at creation.
    pub async fn create_volume(&self, volume: &NewVolume) -> Result<VolumeId, AwsError> {
        const OP: &str = "CreateVolume";
        let mut call = self
            .ec2
            .create_volume()
            .snapshot_id(&volume.snapshot_id)
            .availability_zone(&volume.availability_zone)
            .volume_type(VolumeType::from(volume.volume_type.as_str()))
            .set_iops(volume.iops)
            .set_throughput(volume.throughput)
            .tag_specifications(tagged_at_creation(ResourceType::Volume, &volume.tags));
        if volume.encrypted {
            call = call
                .encrypted(true)
                .set_kms_key_id(volume.kms_key_id.clone());
        }
        let reply = call
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        let id = reply
            .volume_id()
            .ok_or_else(|| AwsError::new(OP, AwsErrorKind::Rejected, "reply without an id"))?;
        VolumeId::parse(id)
            .map_err(|err| AwsError::new(OP, AwsErrorKind::Rejected, err.to_string()))
    }

    pub async fn attach_volume(
        &self,
        volume: &VolumeId,
        instance: &InstanceId,
        device: &str,
    ) -> Result<(), AwsError> {
        self.ec2
            .attach_volume()
            .volume_id(volume.as_str())
            .instance_id(instance.as_str())
            .device(device)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("AttachVolume", err))?;
        Ok(())
    }

    /// These volumes' states and attachments, in one paginated `DescribeVolumes` per 200 ids.
    pub async fn volumes(&self, ids: &[VolumeId]) -> Result<Vec<VolumeStatus>, AwsError> {
        const OP: &str = "DescribeVolumes";
        let mut found = Vec::new();
        for chunk in ids.chunks(FILTER_VALUES_PER_REQUEST) {
            let mut pages = self
                .ec2
                .describe_volumes()
                .filters(filter("volume-id", chunk.iter().map(|v| v.to_string())))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| AwsError::from_sdk(OP, err))?;
                for volume in page.volumes() {
                    let Some(id) = volume.volume_id().and_then(|v| VolumeId::parse(v).ok()) else {
                        continue;
                    };
                    let attachment = volume.attachments().first().map(|a| {
                        (
                            a.instance_id().unwrap_or_default().to_owned(),
                            a.device().unwrap_or_default().to_owned(),
                            a.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                        )
                    });
                    found.push(VolumeStatus {
                        id,
                        state: volume
                            .state()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        attachment,
                        stateless: marked_stateless(volume.tags()),
                    });
                }
            }
        }
        Ok(found)
    }
}
