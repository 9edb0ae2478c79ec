//! The EC2 adapter: `Inventory` and `SnapshotStore` over the AWS SDK's EC2 client. It turns
//! lifeboat's requests into API calls (filters, tags, pagination) and the replies back into
//! lifeboat's facts; it decides nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_ec2::types::{
    CopyTagsFromSource, EbsInstanceBlockDeviceSpecification, Filter,
    InstanceBlockDeviceMappingSpecification, InstanceSpecification, ResourceType, Snapshot,
    SnapshotInfo, Tag, TagSpecification, Volume,
};
use chrono::{DateTime, Utc};

use super::{
    AwsError, AwsErrorKind, InstanceFacts, InstanceState, Inventory, SnapshotFacts, SnapshotQuery,
    SnapshotRequest, SnapshotSetRequest, SnapshotState, SnapshotStore, Tags, VolumeFacts,
};
use crate::ids::{InstanceId, SnapshotId, VolumeId};

/// EC2 accepts at most 200 values in one filter.
const FILTER_VALUES_PER_REQUEST: usize = 200;
/// The largest page `DescribeSnapshots` returns.
const SNAPSHOT_PAGE_SIZE: i32 = 1000;

/// `Inventory` and `SnapshotStore` on a real EC2 client.
pub struct Ec2Adapter {
    client: aws_sdk_ec2::Client,
    /// Instance-store disks per instance type: a fact of the type, so asked once per process.
    instance_store: Mutex<HashMap<String, Option<u32>>>,
}

impl Ec2Adapter {
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Self {
            client,
            instance_store: Mutex::new(HashMap::new()),
        }
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
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

fn sdk_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn to_chrono(time: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
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
        volume_id: snapshot.volume_id().and_then(|v| VolumeId::parse(v).ok()),
        state: SnapshotState::parse(snapshot.state().map(|s| s.as_str()).unwrap_or_default()),
        progress: snapshot.progress().map(str::to_owned),
        start_time: snapshot.start_time().and_then(to_chrono),
        volume_size_gib: snapshot.volume_size(),
        encrypted: snapshot.encrypted().unwrap_or(false),
        tags: tags_of(snapshot.tags()),
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
        tags: tags_of(info.tags()),
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
        let reply = match self
            .client
            .describe_instances()
            .instance_ids(id.as_str())
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
            state: InstanceState::parse(
                instance
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str())
                    .unwrap_or_default(),
            ),
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            root_device_name: instance.root_device_name().map(str::to_owned),
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
        while let Some(page) = pages.next().await {
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
        if let Some(known) = self.cached_instance_store(instance_type) {
            return Ok(known);
        }
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

    async fn keep_volumes(
        &self,
        instance_id: &InstanceId,
        volumes: &[(VolumeId, String)],
        tags: &Tags,
    ) -> Result<(), AwsError> {
        if volumes.is_empty() {
            return Ok(());
        }
        let mut modify = self
            .client
            .modify_instance_attribute()
            .instance_id(instance_id.as_str());
        for (_, device) in volumes {
            modify = modify.block_device_mappings(
                InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(device)
                    .ebs(
                        EbsInstanceBlockDeviceSpecification::builder()
                            .delete_on_termination(false)
                            .build(),
                    )
                    .build(),
            );
        }
        modify
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("ModifyInstanceAttribute", err))?;
        self.client
            .create_tags()
            .set_resources(Some(volumes.iter().map(|(id, _)| id.to_string()).collect()))
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("CreateTags", err))?;
        Ok(())
    }
}

impl Ec2Adapter {
    fn cached_instance_store(&self, instance_type: &str) -> Option<Option<u32>> {
        self.instance_store.lock().ok()?.get(instance_type).copied()
    }

    async fn describe_snapshots(
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
        while let Some(page) = pages.next().await {
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
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(sdk_tags(&request.tags)))
                    .build(),
            );
        if request.copy_volume_tags {
            call = call.copy_tags_from_source(CopyTagsFromSource::Volume);
        }
        let reply = call
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("CreateSnapshots", err))?;
        reply.snapshots().iter().map(snapshot_info_facts).collect()
    }

    async fn create_snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotFacts, AwsError> {
        const OP: &str = "CreateSnapshot";
        let reply = self
            .client
            .create_snapshot()
            .volume_id(request.volume_id.as_str())
            .description(&request.description)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(sdk_tags(&request.tags)))
                    .build(),
            )
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
            tags: tags_of(reply.tags()),
        })
    }

    async fn tag_snapshots(&self, ids: &[SnapshotId], tags: &Tags) -> Result<(), AwsError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .create_tags()
            .set_resources(Some(ids.iter().map(|id| id.to_string()).collect()))
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("CreateTags", err))?;
        Ok(())
    }
}
