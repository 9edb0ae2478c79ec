//! The EC2 adapter: `Inventory`, `SnapshotStore` and `Tagging` over the AWS SDK's EC2 client. It turns
//! lifeboat's requests into API calls (filters, tags, pagination) and the replies back into
//! lifeboat's facts; it decides nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{
    AttachmentStatus, CopyTagsFromSource, DeviceType, EbsInstanceBlockDeviceSpecification, Filter,
    InstanceBlockDeviceMappingSpecification, InstanceSpecification, ResourceType, Snapshot,
    SnapshotInfo, Tag, TagSpecification, Volume,
};
use chrono::{DateTime, Utc};

use super::budget::{Api, Budget};
use super::{
    AwsError, AwsErrorKind, InstanceFacts, InstanceState, Inventory, SnapshotCare, SnapshotFacts,
    SnapshotQuery, SnapshotRequest, SnapshotSetRequest, SnapshotState, SnapshotStore, StorageTier,
    Tagging, Tags, VolumeFacts,
};
use crate::ids::{InstanceId, ResourceId, SnapshotId, VolumeId};

/// EC2 accepts at most 200 values in one filter.
pub(super) const FILTER_VALUES_PER_REQUEST: usize = 200;
/// The largest page `DescribeSnapshots` returns.
const SNAPSHOT_PAGE_SIZE: i32 = 1000;

/// Instance families without instance-store disks in any size (current generations that have a
/// `d` variant for local disks). A type of another family is asked about, once per process.
const EBS_ONLY_FAMILIES: &[&str] = &[
    "t2", "t3", "t3a", "t4g", "m4", "m5", "m5a", "m5n", "m6a", "m6g", "m6i", "m7a", "m7g", "m7i",
    "m8g", "c4", "c5", "c5a", "c5n", "c6a", "c6g", "c6i", "c7a", "c7g", "c7i", "c8g", "r4", "r5",
    "r5a", "r5n", "r6a", "r6g", "r6i", "r7a", "r7g", "r7i", "r8g",
];

/// `Inventory` and `SnapshotStore` on a real EC2 client.
pub struct Ec2Adapter {
    client: aws_sdk_ec2::Client,
    /// This environment's pace on each of EC2's buckets.
    budget: Arc<Budget>,
    /// Instance-store disks per instance type: a fact of the type, so asked once per process.
    instance_store: Mutex<HashMap<String, Option<u32>>>,
}

impl Ec2Adapter {
    /// Unpaced: for tests of the requests.
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Self::with_budget(client, Arc::new(Budget::unlimited()))
    }

    pub fn with_budget(client: aws_sdk_ec2::Client, budget: Arc<Budget>) -> Self {
        Self {
            client,
            budget,
            instance_store: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for this environment's turn on the action's bucket.
    async fn turn(&self, action: &'static str) {
        self.budget.take(Api::Ec2(action)).await;
    }
}

pub(super) fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    let mut builder = Filter::builder().name(name);
    for value in values {
        builder = builder.values(value);
    }
    builder.build()
}

fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// A device of an instance, to be deleted with it or not (`ModifyInstanceAttribute`).
pub(super) fn deleted_on_termination(
    device: &str,
    delete: bool,
) -> InstanceBlockDeviceMappingSpecification {
    InstanceBlockDeviceMappingSpecification::builder()
        .device_name(device)
        .ebs(
            EbsInstanceBlockDeviceSpecification::builder()
                .delete_on_termination(delete)
                .build(),
        )
        .build()
}

/// Tags that a create call puts on the new resource of `kind` as it creates it.
pub(super) fn tagged_at_creation(kind: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(sdk_tags(tags)))
        .build()
}

pub(super) fn sdk_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn to_chrono(time: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// An instance's life-cycle state, from a `DescribeInstances` reply.
pub(super) fn instance_state(instance: &aws_sdk_ec2::types::Instance) -> InstanceState {
    InstanceState::parse(
        instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str())
            .unwrap_or_default(),
    )
}

/// An id EC2 returned; a reply without one, or with a malformed one, is not usable.
fn returned_id<T>(
    operation: &'static str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, crate::ids::InvalidId>,
) -> Result<T, AwsError> {
    let value = value
        .ok_or_else(|| AwsError::new(operation, AwsErrorKind::Rejected, "reply without an id"))?;
    parse(value).map_err(|err| AwsError::new(operation, AwsErrorKind::Rejected, err.to_string()))
}

fn snapshot_facts(snapshot: &Snapshot) -> Result<SnapshotFacts, AwsError> {
    Ok(SnapshotFacts {
        id: returned_id(
            "DescribeSnapshots",
            snapshot.snapshot_id(),
            SnapshotId::parse,
        )?,
        // A copy's VolumeId is arbitrary (CopySnapshot, EC2 API Reference): the volume it
        // stands for is the one its tag names.
        volume_id: snapshot
            .tags()
            .iter()
            .find(|t| t.key() == Some(crate::tags::COPY_VOLUME))
            .and_then(|t| t.value())
            .or(snapshot.volume_id())
            .and_then(|v| VolumeId::parse(v).ok()),
        state: SnapshotState::parse(snapshot.state().map(|s| s.as_str()).unwrap_or_default()),
        progress: snapshot.progress().map(str::to_owned),
        start_time: snapshot.start_time().and_then(to_chrono),
        volume_size_gib: snapshot.volume_size(),
        encrypted: snapshot.encrypted().unwrap_or(false),
        kms_key_id: snapshot.kms_key_id().map(str::to_owned),
        tags: tags_of(snapshot.tags()),
        tier: StorageTier::parse(
            snapshot
                .storage_tier()
                .map(|t| t.as_str())
                .unwrap_or_default(),
        ),
        restore_expiry: snapshot.restore_expiry_time().and_then(to_chrono),
        completed_at: snapshot.completion_time().and_then(to_chrono),
    })
}

fn snapshot_info_facts(info: &SnapshotInfo) -> Result<SnapshotFacts, AwsError> {
    Ok(SnapshotFacts {
        id: returned_id("CreateSnapshots", info.snapshot_id(), SnapshotId::parse)?,
        volume_id: info.volume_id().and_then(|v| VolumeId::parse(v).ok()),
        state: SnapshotState::parse(info.state().map(|s| s.as_str()).unwrap_or("pending")),
        progress: info.progress().map(str::to_owned),
        start_time: info.start_time().and_then(to_chrono),
        volume_size_gib: info.volume_size(),
        encrypted: info.encrypted().unwrap_or(false),
        kms_key_id: None,
        tags: tags_of(info.tags()),
        tier: StorageTier::Standard,
        restore_expiry: None,
        completed_at: None,
    })
}

fn volume_facts(
    instance_id: &InstanceId,
    volume: &Volume,
) -> Result<Option<VolumeFacts>, AwsError> {
    // A multi-attach volume has one attachment per instance: take ours.
    let Some(attachment) = volume
        .attachments()
        .iter()
        .find(|a| a.instance_id() == Some(instance_id.as_str()))
    else {
        return Ok(None);
    };
    Ok(Some(VolumeFacts {
        id: returned_id("DescribeVolumes", volume.volume_id(), VolumeId::parse)?,
        device: attachment.device().unwrap_or_default().to_owned(),
        delete_on_termination: attachment.delete_on_termination().unwrap_or(false),
        size_gib: volume.size().unwrap_or_default(),
        volume_type: volume
            .volume_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        iops: volume.iops(),
        throughput: volume.throughput(),
        encrypted: volume.encrypted().unwrap_or(false),
        availability_zone: volume.availability_zone().unwrap_or_default().to_owned(),
        tags: tags_of(volume.tags()),
    }))
}

impl Inventory for Ec2Adapter {
    async fn describe_instance(&self, id: &InstanceId) -> Result<Option<InstanceFacts>, AwsError> {
        const OP: &str = "DescribeInstances";
        // A filter, not InstanceIds: EC2 charges an unfiltered, unpaginated DescribeInstances
        // to a bucket half the size.
        self.turn(OP).await;
        let reply = match self
            .client
            .describe_instances()
            .filters(filter("instance-id", [id.as_str()]))
            .send()
            .await
        {
            Ok(reply) => reply,
            Err(err) => {
                let err = AwsError::from_sdk(OP, err);
                return if err.is(AwsErrorKind::InstanceNotFound) {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
        };
        let Some(instance) = reply
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id.as_str()))
        else {
            return Ok(None);
        };
        Ok(Some(InstanceFacts {
            id: id.clone(),
            state: instance_state(instance),
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            root_device_name: instance.root_device_name().map(str::to_owned),
            // Unknown counts as EBS-backed: the harsher reading (a volume is expected).
            ebs_backed: instance.root_device_type() != Some(&DeviceType::InstanceStore),
            mapped_volumes: instance
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs())
                .filter(|ebs| ebs.status() != Some(&AttachmentStatus::Detached))
                .map(|ebs| returned_id(OP, ebs.volume_id(), VolumeId::parse))
                .collect::<Result<_, _>>()?,
            tags: tags_of(instance.tags()),
        }))
    }

    async fn attached_volumes(&self, id: &InstanceId) -> Result<Vec<VolumeFacts>, AwsError> {
        const OP: &str = "DescribeVolumes";
        let mut pages = self
            .client
            .describe_volumes()
            .filters(filter("attachment.instance-id", [id.as_str()]))
            .into_paginator()
            .send();
        let mut volumes = Vec::new();
        while let Some(page) = {
            self.turn(OP).await;
            pages.next().await
        } {
            let page = page.map_err(|err| AwsError::from_sdk(OP, err))?;
            for volume in page.volumes() {
                if let Some(facts) = volume_facts(id, volume)? {
                    volumes.push(facts);
                }
            }
        }
        volumes.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(volumes)
    }

    async fn instance_store_disks(&self, instance_type: &str) -> Result<Option<u32>, AwsError> {
        let family = instance_type.split('.').next().unwrap_or_default();
        if EBS_ONLY_FAMILIES.contains(&family) {
            return Ok(Some(0));
        }
        if let Some(known) = self.cached_instance_store(instance_type) {
            return Ok(known);
        }
        self.turn("DescribeInstanceTypes").await;
        let reply = self
            .client
            .describe_instance_types()
            .instance_types(instance_type.into())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeInstanceTypes", err))?;
        let disks = reply.instance_types().first().map(|info| {
            info.instance_storage_info()
                .map(|storage| {
                    storage
                        .disks()
                        .iter()
                        .map(|d| d.count().unwrap_or(0).max(0) as u32)
                        .sum()
                })
                .unwrap_or(0)
        });
        if let Ok(mut cache) = self.instance_store.lock() {
            cache.insert(instance_type.to_owned(), disks);
        }
        Ok(disks)
    }

    async fn set_delete_on_termination(
        &self,
        instance_id: &InstanceId,
        devices: &[String],
        delete_on_termination: bool,
    ) -> Result<(), AwsError> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut modify = self
            .client
            .modify_instance_attribute()
            .instance_id(instance_id.as_str());
        for device in devices {
            modify =
                modify.block_device_mappings(deleted_on_termination(device, delete_on_termination));
        }
        self.turn("ModifyInstanceAttribute").await;
        modify
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("ModifyInstanceAttribute", err))?;
        Ok(())
    }
}

impl Ec2Adapter {
    fn cached_instance_store(&self, instance_type: &str) -> Option<Option<u32>> {
        self.instance_store.lock().ok()?.get(instance_type).copied()
    }

    /// Every snapshot of the account that matches all `filters`, across pages.
    pub(super) async fn describe_snapshots(
        &self,
        filters: Vec<Filter>,
    ) -> Result<Vec<SnapshotFacts>, AwsError> {
        const OP: &str = "DescribeSnapshots";
        let mut pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters))
            .max_results(SNAPSHOT_PAGE_SIZE)
            .into_paginator()
            .send();
        let mut snapshots = Vec::new();
        while let Some(page) = {
            self.turn(OP).await;
            pages.next().await
        } {
            let page = page.map_err(|err| AwsError::from_sdk(OP, err))?;
            for snapshot in page.snapshots() {
                snapshots.push(snapshot_facts(snapshot)?);
            }
        }
        Ok(snapshots)
    }
}

impl SnapshotStore for Ec2Adapter {
    async fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<SnapshotFacts>, AwsError> {
        let (name, values): (String, Vec<String>) = match query {
            SnapshotQuery::Tagged { key, values } => (format!("tag:{key}"), values.clone()),
            SnapshotQuery::Ids(ids) => (
                "snapshot-id".into(),
                ids.iter().map(|id| id.to_string()).collect(),
            ),
        };
        let mut found = Vec::new();
        for chunk in values.chunks(FILTER_VALUES_PER_REQUEST) {
            found.extend(
                self.describe_snapshots(vec![filter(&name, chunk.iter().cloned())])
                    .await?,
            );
        }
        Ok(found)
    }

    async fn create_snapshot_set(
        &self,
        request: &SnapshotSetRequest,
    ) -> Result<Vec<SnapshotFacts>, AwsError> {
        let mut instance = InstanceSpecification::builder()
            .instance_id(request.instance_id.as_str())
            .exclude_boot_volume(request.exclude_boot_volume);
        for volume in &request.exclude_data_volumes {
            instance = instance.exclude_data_volume_ids(volume.as_str());
        }
        let mut call = self
            .client
            .create_snapshots()
            .instance_specification(instance.build())
            .description(&request.description)
            .tag_specifications(tagged_at_creation(ResourceType::Snapshot, &request.tags));
        if request.copy_volume_tags {
            call = call.copy_tags_from_source(CopyTagsFromSource::Volume);
        }
        self.turn("CreateSnapshots").await;
        let reply = call
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("CreateSnapshots", err))?;
        reply.snapshots().iter().map(snapshot_info_facts).collect()
    }

    async fn create_snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotFacts, AwsError> {
        const OP: &str = "CreateSnapshot";
        self.turn(OP).await;
        let reply = self
            .client
            .create_snapshot()
            .volume_id(request.volume_id.as_str())
            .description(&request.description)
            .tag_specifications(tagged_at_creation(ResourceType::Snapshot, &request.tags))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        Ok(SnapshotFacts {
            id: returned_id(OP, reply.snapshot_id(), SnapshotId::parse)?,
            volume_id: Some(request.volume_id.clone()),
            state: SnapshotState::parse(reply.state().map(|s| s.as_str()).unwrap_or("pending")),
            progress: reply.progress().map(str::to_owned),
            start_time: reply.start_time().and_then(to_chrono),
            volume_size_gib: reply.volume_size(),
            encrypted: reply.encrypted().unwrap_or(false),
            kms_key_id: reply.kms_key_id().map(str::to_owned),
            tags: tags_of(reply.tags()),
            tier: StorageTier::Standard,
            restore_expiry: None,
            completed_at: None,
        })
    }
}

/// The tiering operations still under way ("DescribeSnapshotTierStatus", EC2 API Reference,
/// `last-tiering-operation`).
const TIERING_UNDER_WAY: [&str; 3] = [
    "archival-in-progress",
    "temporary-restore-in-progress",
    "permanent-restore-in-progress",
];

impl SnapshotCare for Ec2Adapter {
    async fn tiering_under_way(&self) -> Result<BTreeSet<SnapshotId>, AwsError> {
        const OP: &str = "DescribeSnapshotTierStatus";
        let mut pages = self
            .client
            .describe_snapshot_tier_status()
            .filters(filter(
                "last-tiering-operation",
                TIERING_UNDER_WAY.map(String::from),
            ))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut under_way = BTreeSet::new();
        while let Some(page) = {
            self.turn(OP).await;
            pages.next().await
        } {
            let page = page.map_err(|err| AwsError::from_sdk(OP, err))?;
            for status in page.snapshot_tier_statuses() {
                under_way.insert(returned_id(OP, status.snapshot_id(), SnapshotId::parse)?);
            }
        }
        Ok(under_way)
    }

    async fn archive(&self, snapshot: &SnapshotId) -> Result<(), AwsError> {
        const OP: &str = "ModifySnapshotTier";
        self.turn(OP).await;
        self.client
            .modify_snapshot_tier()
            .snapshot_id(snapshot.as_str())
            .storage_tier(aws_sdk_ec2::types::TargetStorageTier::Archive)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        Ok(())
    }

    async fn delete(&self, snapshot: &SnapshotId) -> Result<(), AwsError> {
        const OP: &str = "DeleteSnapshot";
        self.turn(OP).await;
        self.client
            .delete_snapshot()
            .snapshot_id(snapshot.as_str())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        Ok(())
    }
}

impl Ec2Adapter {
    /// `CopySnapshot` of `source` in `source_region` to this client's Region, encrypted with
    /// `kms_key` when given, tagged at creation.
    pub async fn copy_from(
        &self,
        source_region: &str,
        source: &SnapshotId,
        kms_key: Option<&str>,
        tags: &Tags,
    ) -> Result<SnapshotId, AwsError> {
        const OP: &str = "CopySnapshot";
        self.turn(OP).await;
        let reply = self
            .client
            .copy_snapshot()
            .source_region(source_region)
            .source_snapshot_id(source.as_str())
            .description(format!("lifeboat: copy of {source} from {source_region}"))
            .set_encrypted(kms_key.map(|_| true))
            .set_kms_key_id(kms_key.map(str::to_owned))
            .tag_specifications(tagged_at_creation(ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        returned_id(OP, reply.snapshot_id(), SnapshotId::parse)
    }
}

impl Tagging for Ec2Adapter {
    async fn tag(&self, resources: &[ResourceId], tags: &Tags) -> Result<(), AwsError> {
        if resources.is_empty() || tags.is_empty() {
            return Ok(());
        }
        self.turn("CreateTags").await;
        self.client
            .create_tags()
            .set_resources(Some(resources.iter().map(|id| id.to_string()).collect()))
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("CreateTags", err))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::create_snapshot::{CreateSnapshotError, CreateSnapshotOutput};
    use aws_sdk_ec2::operation::create_snapshots::{CreateSnapshotsError, CreateSnapshotsOutput};
    use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
    use aws_sdk_ec2::operation::describe_instances::{
        DescribeInstancesError, DescribeInstancesOutput,
    };
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsError, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
    use aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeOutput;
    use aws_sdk_ec2::types::{
        EbsInstanceBlockDevice, Instance, InstanceBlockDeviceMapping, InstanceStateName,
        Reservation, SnapshotState as Ec2SnapshotState, VolumeAttachment,
    };
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::aws::mocks::{aws_error, ec2};

    fn instance() -> InstanceId {
        InstanceId::parse("i-0123456789abcdef0").unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn has_tag(tags: &[Tag], key: &str, value: &str) -> bool {
        tags.iter()
            .any(|t| t.key() == Some(key) && t.value() == Some(value))
    }

    #[tokio::test]
    async fn find_snapshots_filters_on_the_tag_of_our_own_snapshots() {
        let rule = mock!(Client::describe_snapshots)
            .match_requests(|r| {
                r.owner_ids() == ["self"]
                    && r.max_results() == Some(1000)
                    && r.filters().len() == 1
                    && r.filters()[0].name() == Some("tag:lifeboat:instance-id")
                    && r.filters()[0].values() == ["i-0123456789abcdef0"]
            })
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(
                        Snapshot::builder()
                            .snapshot_id("snap-0123456789abcdef0")
                            .volume_id("vol-0123456789abcdef0")
                            .state(Ec2SnapshotState::Completed)
                            .progress("100%")
                            .start_time(aws_smithy_types::DateTime::from_secs(1_800_000_000))
                            .tags(
                                Tag::builder()
                                    .key("lifeboat:instance-id")
                                    .value("i-0123456789abcdef0")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let found = adapter
            .find_snapshots(&SnapshotQuery::Tagged {
                key: "lifeboat:instance-id".into(),
                values: vec![instance().to_string()],
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].state, SnapshotState::Completed);
        assert_eq!(
            found[0].volume_id.as_ref().unwrap().as_str(),
            "vol-0123456789abcdef0"
        );
        assert_eq!(found[0].tags["lifeboat:instance-id"], "i-0123456789abcdef0");
        assert_eq!(found[0].start_time.unwrap().timestamp(), 1_800_000_000);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn find_snapshots_splits_many_values_into_requests_of_two_hundred() {
        let rule = mock!(Client::describe_snapshots)
            .match_requests(|r| r.filters()[0].values().len() <= 200)
            .then_output(|| DescribeSnapshotsOutput::builder().build());
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let ids: Vec<SnapshotId> = (0..450)
            .map(|i| SnapshotId::parse(&format!("snap-{i:08x}")).unwrap())
            .collect();
        adapter
            .find_snapshots(&SnapshotQuery::Ids(ids))
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn create_snapshot_set_is_one_multi_volume_call_with_tags_exclusions_and_copied_volume_tags(
    ) {
        let rule = mock!(Client::create_snapshots)
            .match_requests(|r| {
                let spec = r.instance_specification().unwrap();
                let tag_spec = &r.tag_specifications()[0];
                spec.instance_id() == Some("i-0123456789abcdef0")
                    && spec.exclude_boot_volume() == Some(true)
                    && spec.exclude_data_volume_ids() == ["vol-0000000a"]
                    && r.copy_tags_from_source() == Some(&CopyTagsFromSource::Volume)
                    && tag_spec.resource_type() == Some(&ResourceType::Snapshot)
                    && has_tag(tag_spec.tags(), "lifeboat:state", "pending")
                    && has_tag(
                        tag_spec.tags(),
                        "lifeboat:volume:vol-0000000b",
                        "device=/dev/sdf type=gp3",
                    )
            })
            .then_output(|| {
                CreateSnapshotsOutput::builder()
                    .snapshots(
                        SnapshotInfo::builder()
                            .snapshot_id("snap-0000000b")
                            .volume_id("vol-0000000b")
                            .state(Ec2SnapshotState::Pending)
                            .build(),
                    )
                    .build()
            });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let created = adapter
            .create_snapshot_set(&SnapshotSetRequest {
                instance_id: instance(),
                exclude_boot_volume: true,
                exclude_data_volumes: vec![VolumeId::parse("vol-0000000a").unwrap()],
                copy_volume_tags: true,
                description: "lifeboat".into(),
                tags: tags(&[
                    ("lifeboat:state", "pending"),
                    ("lifeboat:volume:vol-0000000b", "device=/dev/sdf type=gp3"),
                ]),
            })
            .await
            .unwrap();
        assert_eq!(created[0].id.as_str(), "snap-0000000b");
        assert_eq!(created[0].state, SnapshotState::Pending);
        assert_eq!(rule.num_calls(), 1);
    }

    /// A set of every volume of the instance.
    fn whole_instance() -> SnapshotSetRequest {
        SnapshotSetRequest {
            instance_id: instance(),
            exclude_boot_volume: false,
            exclude_data_volumes: vec![],
            copy_volume_tags: true,
            description: "d".into(),
            tags: Tags::new(),
        }
    }

    #[tokio::test]
    async fn a_busy_volume_maps_to_snapshot_busy_and_the_quota_to_quota_exceeded() {
        for code in [
            "ConcurrentSnapshotLimitExceeded",
            "SnapshotCreationPerVolumeRateExceeded",
        ] {
            let rule = mock!(Client::create_snapshots).then_error(move || {
                CreateSnapshotsError::generic(aws_error(code, "too many snapshots in flight"))
            });
            let adapter = Ec2Adapter::new(ec2(&[&rule]));
            let err = adapter
                .create_snapshot_set(&whole_instance())
                .await
                .unwrap_err();
            assert_eq!(err.kind, AwsErrorKind::SnapshotBusy, "{code}");
            assert_eq!(err.code.as_deref(), Some(code));
            assert!(
                std::error::Error::source(&err).is_some(),
                "the SDK error is kept as the source"
            );
            assert!(err.waiting_can_fix());
        }
        let rule = mock!(Client::create_snapshots).then_error(|| {
            CreateSnapshotsError::generic(aws_error(
                "SnapshotLimitExceeded",
                "The maximum number of snapshots has been reached.",
            ))
        });
        let err = Ec2Adapter::new(ec2(&[&rule]))
            .create_snapshot_set(&whole_instance())
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::QuotaExceeded);
        assert!(!err.waiting_can_fix(), "no amount of waiting fixes a quota");
    }

    // Paused time: the SDK's backoff sleeps pass at once.
    #[tokio::test(start_paused = true)]
    async fn request_limit_exceeded_is_retried_by_the_sdk_then_succeeds() {
        let rule = mock!(Client::describe_snapshots)
            .sequence()
            .error(|| {
                DescribeSnapshotsError::generic(aws_error(
                    "RequestLimitExceeded",
                    "Request limit exceeded.",
                ))
            })
            .times(2)
            .output(|| DescribeSnapshotsOutput::builder().build())
            .build();
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let found = adapter.find_snapshots(&SnapshotQuery::Ids(vec![])).await;
        // No values: nothing to ask.
        assert!(found.unwrap().is_empty());
        adapter
            .find_snapshots(&SnapshotQuery::Ids(vec![SnapshotId::parse(
                "snap-00000001",
            )
            .unwrap()]))
            .await
            .unwrap();
        assert_eq!(
            rule.num_calls(),
            3,
            "two throttled attempts, then the answer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_limit_exceeded_that_never_ends_is_reported_as_throttled() {
        let rule = mock!(Client::describe_snapshots)
            .sequence()
            .error(|| {
                DescribeSnapshotsError::generic(aws_error(
                    "RequestLimitExceeded",
                    "Request limit exceeded.",
                ))
            })
            .repeatedly()
            .build();
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let err = adapter
            .find_snapshots(&SnapshotQuery::Ids(vec![SnapshotId::parse(
                "snap-00000001",
            )
            .unwrap()]))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Throttled);
        assert_eq!(
            rule.num_calls(),
            10,
            "every attempt of the retry budget was used"
        );
    }

    #[tokio::test]
    async fn instance_store_is_asked_once_per_type_and_never_for_ebs_only_families() {
        let rule = mock!(Client::describe_instance_types)
            .match_requests(|r| r.instance_types().iter().map(|t| t.as_str()).eq(["m5d.large"]))
            .then_output(|| {
                aws_sdk_ec2::operation::describe_instance_types::DescribeInstanceTypesOutput::builder()
                    .instance_types(
                        aws_sdk_ec2::types::InstanceTypeInfo::builder()
                            .instance_storage_info(
                                aws_sdk_ec2::types::InstanceStorageInfo::builder()
                                    .disks(aws_sdk_ec2::types::DiskInfo::builder().count(1).size_in_gb(75).build())
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        assert_eq!(
            adapter.instance_store_disks("m5.large").await.unwrap(),
            Some(0)
        );
        for _ in 0..3 {
            assert_eq!(
                adapter.instance_store_disks("m5d.large").await.unwrap(),
                Some(1)
            );
        }
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_unknown_instance_is_none_not_an_error() {
        let rule = mock!(Client::describe_instances).then_error(|| {
            DescribeInstancesError::generic(aws_error(
                "InvalidInstanceID.NotFound",
                "The instance ID 'i-0123456789abcdef0' does not exist",
            ))
        });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        assert_eq!(adapter.describe_instance(&instance()).await.unwrap(), None);
    }

    fn mapped(device: &str, volume: &str, status: AttachmentStatus) -> InstanceBlockDeviceMapping {
        InstanceBlockDeviceMapping::builder()
            .device_name(device)
            .ebs(
                EbsInstanceBlockDevice::builder()
                    .volume_id(volume)
                    .status(status)
                    .build(),
            )
            .build()
    }

    #[tokio::test]
    async fn describe_instance_reads_state_type_and_root_device() {
        let rule = mock!(Client::describe_instances)
            // A filter, so that EC2 charges the larger of DescribeInstances' buckets.
            .match_requests(|r| {
                r.instance_ids().is_empty()
                    && r.filters().iter().any(|f| {
                        f.name() == Some("instance-id") && f.values() == ["i-0123456789abcdef0"]
                    })
            })
            .then_output(|| {
                DescribeInstancesOutput::builder()
                    .reservations(
                        Reservation::builder()
                            .instances(
                                Instance::builder()
                                    .instance_id("i-0123456789abcdef0")
                                    .instance_type("m5d.large".into())
                                    .root_device_name("/dev/xvda")
                                    .root_device_type(DeviceType::Ebs)
                                    .block_device_mappings(mapped(
                                        "/dev/xvda",
                                        "vol-0000000a",
                                        AttachmentStatus::Attached,
                                    ))
                                    .block_device_mappings(mapped(
                                        "/dev/sdf",
                                        "vol-0000000b",
                                        AttachmentStatus::Attaching,
                                    ))
                                    .block_device_mappings(mapped(
                                        "/dev/sdg",
                                        "vol-0000000c",
                                        AttachmentStatus::Detached,
                                    ))
                                    .tags(
                                        Tag::builder()
                                            .key("lifeboat:hook")
                                            .value("lifeboat")
                                            .build(),
                                    )
                                    .state(
                                        aws_sdk_ec2::types::InstanceState::builder()
                                            .name(InstanceStateName::Stopped)
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let facts = adapter
            .describe_instance(&instance())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(facts.state, InstanceState::Stopped);
        assert_eq!(facts.instance_type, "m5d.large");
        assert_eq!(facts.root_device_name.as_deref(), Some("/dev/xvda"));
        assert!(facts.ebs_backed);
        assert_eq!(
            facts.mapped_volumes,
            [
                VolumeId::parse("vol-0000000a").unwrap(),
                VolumeId::parse("vol-0000000b").unwrap()
            ],
            "the volumes mapped to the instance, a detached one left out"
        );
        assert_eq!(
            facts.tags["lifeboat:hook"], "lifeboat",
            "the instance's record is read"
        );
    }

    #[tokio::test]
    async fn attached_volumes_reads_our_attachment_of_each_volume() {
        let rule = mock!(Client::describe_volumes)
            .match_requests(|r| {
                r.filters()[0].name() == Some("attachment.instance-id")
                    && r.filters()[0].values() == ["i-0123456789abcdef0"]
            })
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-0000000b")
                            .size(100)
                            .volume_type("gp3".into())
                            .iops(3000)
                            .encrypted(true)
                            .attachments(
                                VolumeAttachment::builder()
                                    .instance_id("i-0fffffffffffffff0")
                                    .device("/dev/sdz")
                                    .build(),
                            )
                            .attachments(
                                VolumeAttachment::builder()
                                    .instance_id("i-0123456789abcdef0")
                                    .device("/dev/sdf")
                                    .delete_on_termination(true)
                                    .build(),
                            )
                            .tags(Tag::builder().key("lifeboat:skip").value("true").build())
                            .build(),
                    )
                    .build()
            });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let volumes = adapter.attached_volumes(&instance()).await.unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].device, "/dev/sdf");
        assert!(volumes[0].delete_on_termination);
        assert_eq!(volumes[0].tags["lifeboat:skip"], "true");
        assert_eq!(volumes[0].volume_type, "gp3");
    }

    #[tokio::test]
    async fn delete_on_termination_is_set_for_every_device_in_one_call() {
        for value in [false, true] {
            let modify = mock!(Client::modify_instance_attribute)
                .match_requests(move |r| {
                    r.instance_id() == Some("i-0123456789abcdef0")
                        && r.block_device_mappings().len() == 2
                        && r.block_device_mappings()
                            .iter()
                            .all(|m| m.ebs().and_then(|e| e.delete_on_termination()) == Some(value))
                        && r.block_device_mappings()[1].device_name() == Some("/dev/sdg")
                })
                .then_output(|| ModifyInstanceAttributeOutput::builder().build());
            let adapter = Ec2Adapter::new(ec2(&[&modify]));
            adapter
                .set_delete_on_termination(
                    &instance(),
                    &["/dev/sdf".into(), "/dev/sdg".into()],
                    value,
                )
                .await
                .unwrap();
            adapter
                .set_delete_on_termination(&instance(), &[], value)
                .await
                .unwrap();
            assert_eq!(modify.num_calls(), 1, "nothing to change, no call");
        }
    }

    #[tokio::test]
    async fn a_denied_modify_is_access_denied() {
        let modify = mock!(Client::modify_instance_attribute).then_error(|| {
            aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeError::generic(aws_error(
                "UnauthorizedOperation",
                "You are not authorized",
            ))
        });
        let adapter = Ec2Adapter::new(ec2(&[&modify]));
        let err = adapter
            .set_delete_on_termination(&instance(), &["/dev/sdf".into()], false)
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::AccessDenied);
        assert!(!err.waiting_can_fix());
    }

    #[tokio::test]
    async fn create_snapshot_of_one_volume_carries_its_label() {
        let rule = mock!(Client::create_snapshot)
            .match_requests(|r| {
                r.volume_id() == Some("vol-0000000b")
                    && has_tag(r.tag_specifications()[0].tags(), "lifeboat:attempt", "2")
            })
            .then_output(|| {
                CreateSnapshotOutput::builder()
                    .snapshot_id("snap-0000000c")
                    .state(Ec2SnapshotState::Pending)
                    .build()
            });
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let created = adapter
            .create_snapshot(&SnapshotRequest {
                volume_id: VolumeId::parse("vol-0000000b").unwrap(),
                description: "d".into(),
                tags: tags(&[("lifeboat:attempt", "2")]),
            })
            .await
            .unwrap();
        assert_eq!(created.volume_id.unwrap().as_str(), "vol-0000000b");
        let limited = mock!(Client::create_snapshot).then_error(|| {
            CreateSnapshotError::generic(aws_error(
                "SnapshotCreationPerVolumeRateExceeded",
                "slow down",
            ))
        });
        let err = Ec2Adapter::new(ec2(&[&limited]))
            .create_snapshot(&SnapshotRequest {
                volume_id: VolumeId::parse("vol-0000000b").unwrap(),
                description: "d".into(),
                tags: Tags::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::SnapshotBusy);
    }

    #[tokio::test]
    async fn tag_tags_every_resource_in_one_call() {
        let rule = mock!(Client::create_tags)
            .match_requests(|r| {
                r.resources() == ["snap-00000001", "snap-00000002", "i-0123456789abcdef0"]
                    && has_tag(r.tags(), "lifeboat:state", "released")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let adapter = Ec2Adapter::new(ec2(&[&rule]));
        let mut resources: Vec<ResourceId> = (1..=2)
            .map(|i| ResourceId::Snapshot(SnapshotId::parse(&format!("snap-0000000{i}")).unwrap()))
            .collect();
        resources.push(ResourceId::Instance(instance()));
        adapter
            .tag(&resources, &tags(&[("lifeboat:state", "released")]))
            .await
            .unwrap();
        adapter.tag(&[], &tags(&[("k", "v")])).await.unwrap();
        adapter.tag(&resources, &Tags::new()).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }
}
