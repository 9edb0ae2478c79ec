//! Building the SDK clients: the standard environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, the
//! credentials chain), with retries tuned for EC2's and Auto Scaling's throttling.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};

use super::autoscaling::AutoScalingAdapter;
use super::budget::{Budget, BudgetShare};
use super::ec2::Ec2Adapter;
use super::events::EventsAdapter;
use crate::config::CopySettings;

/// Attempts per call. In a storm EC2 answers `RequestLimitExceeded` to many calls (and Auto
/// Scaling `Throttling`); both are throttling errors to the SDK, retried with exponential
/// backoff and full jitter, under the SDK's retry quota so that a failing service is not
/// hammered. Ten attempts with backoff up to 20 s outlast a throttling burst.
const MAX_ATTEMPTS: u32 = 10;

/// Retries for EC2's `RequestLimitExceeded` and Auto Scaling's `Throttling`, 5xx and timeouts.
///
/// Standard mode, not adaptive: adaptive mode adds a client-side rate limiter that, measured in
/// the fault campaign (20 % of calls throttled, 12 rescues), stretched the storm from 8 s to
/// 100 s — each Lambda container slows itself down for minutes after a few throttles, eating
/// the time a rescue has to heartbeat and release. Backoff with jitter spreads the retries of
/// concurrent invocations just as well.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(20))
}

/// HTTPS (and plain HTTP, for a local endpoint) over rustls with ring.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The shared SDK configuration, read from the standard environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    tuned(aws_config::defaults(BehaviorVersion::latest()))
        .load()
        .await
}

/// Lifeboat's retries and timeouts on a configuration loader (the standard one, or one a test
/// points at the local AWS).
pub fn tuned(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
        .http_client(https_client())
        .retry_config(retry_config())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(180))
                .build(),
        )
}

/// The adapters over clients built from one configuration.
pub struct AwsCloud {
    pub ec2: Ec2Adapter,
    pub autoscaling: AutoScalingAdapter,
    /// Publishes nothing until `announcing_to` names a bus.
    pub events: Option<EventsAdapter>,
    /// EC2 in the copy Region, this Region's name, and the key there (`copying_to`).
    pub copies: Option<CopyTarget>,
    budget: Arc<Budget>,
}

impl AwsCloud {
    /// Clients that do not pace their calls (tests of the requests, one-off commands).
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_clients(
            aws_sdk_ec2::Client::new(config),
            aws_sdk_autoscaling::Client::new(config),
        )
    }

    /// Clients that pace their calls to this environment's part of lifeboat's `share` of the
    /// account's budget (`budget`), on the configuration's clock and sleep.
    pub fn budgeted(config: &aws_config::SdkConfig, share: BudgetShare) -> Self {
        let budget = Arc::new(Budget::new(
            share,
            config.time_source().unwrap_or_default(),
            config
                .sleep_impl()
                .unwrap_or_else(|| SharedAsyncSleep::new(TokioSleep::new())),
        ));
        Self {
            ec2: Ec2Adapter::with_budget(aws_sdk_ec2::Client::new(config), budget.clone()),
            autoscaling: AutoScalingAdapter::with_budget(
                aws_sdk_autoscaling::Client::new(config),
                budget.clone(),
            ),
            events: None,
            copies: None,
            budget,
        }
    }

    pub fn from_clients(
        ec2: aws_sdk_ec2::Client,
        autoscaling: aws_sdk_autoscaling::Client,
    ) -> Self {
        Self {
            ec2: Ec2Adapter::new(ec2),
            autoscaling: AutoScalingAdapter::new(autoscaling),
            events: None,
            copies: None,
            budget: Arc::new(Budget::unlimited()),
        }
    }

    /// Publishes lifeboat's events onto `bus` (a name or ARN; `None`: publishes nothing).
    pub fn announcing_to(mut self, config: &aws_config::SdkConfig, bus: Option<String>) -> Self {
        self.events = Some(EventsAdapter::new(
            aws_sdk_eventbridge::Client::new(config),
            bus,
        ));
        self
    }

    /// Copies released sets to `copy`'s Region with a client for it (on the same budget: EC2's
    /// buckets are per account and Region, so this only paces, never shares wrongly).
    pub fn copying_to(
        mut self,
        config: &aws_config::SdkConfig,
        copy: Option<CopySettings>,
    ) -> Self {
        self.copies = copy.map(|settings| {
            let there = aws_sdk_ec2::config::Builder::from(config)
                .region(aws_config::Region::new(settings.region.clone()))
                .build();
            CopyTarget {
                ec2: Ec2Adapter::with_budget(
                    aws_sdk_ec2::Client::from_conf(there),
                    self.budget.clone(),
                ),
                source_region: config.region().map(ToString::to_string).unwrap_or_default(),
                kms_key: settings.kms_key,
            }
        });
        self
    }

    /// Reads the standard environment and builds the clients, paced to `share`, publishing
    /// lifeboat's events onto `bus` and copying to `copy`'s Region.
    pub async fn from_env(
        share: BudgetShare,
        bus: Option<String>,
        copy: Option<CopySettings>,
    ) -> Self {
        let config = sdk_config().await;
        Self::budgeted(&config, share)
            .announcing_to(&config, bus)
            .copying_to(&config, copy)
    }
}

/// Where copies go.
pub struct CopyTarget {
    pub ec2: Ec2Adapter,
    pub source_region: String,
    pub kms_key: Option<String>,
}

impl super::SnapshotCopies for AwsCloud {
    async fn copy_snapshot(
        &self,
        source: &crate::ids::SnapshotId,
        tags: &super::Tags,
    ) -> Result<crate::ids::SnapshotId, super::AwsError> {
        let target = self.copy_target("CopySnapshot")?;
        let mut tags = tags.clone();
        tags.insert(
            crate::tags::COPY_SOURCE_REGION.into(),
            target.source_region.clone(),
        );
        target
            .ec2
            .copy_from(
                &target.source_region,
                source,
                target.kms_key.as_deref(),
                &tags,
            )
            .await
    }

    async fn find_copies(
        &self,
        ids: &[crate::ids::SnapshotId],
    ) -> Result<Vec<super::SnapshotFacts>, super::AwsError> {
        use super::SnapshotStore;
        let target = self.copy_target("DescribeSnapshots")?;
        target
            .ec2
            .find_snapshots(&super::SnapshotQuery::Ids(ids.to_vec()))
            .await
    }
}

impl AwsCloud {
    fn copy_target(&self, operation: &'static str) -> Result<&CopyTarget, super::AwsError> {
        self.copies.as_ref().ok_or_else(|| {
            super::AwsError::new(
                operation,
                super::AwsErrorKind::Rejected,
                "no copy Region is configured (LIFEBOAT_COPY_REGION)",
            )
        })
    }
}

// `AwsCloud` is the one `Cloud` the function runs on: each port goes to its adapter.

impl super::Inventory for AwsCloud {
    async fn describe_instance(
        &self,
        id: &crate::ids::InstanceId,
    ) -> Result<Option<super::InstanceFacts>, super::AwsError> {
        self.ec2.describe_instance(id).await
    }

    async fn attached_volumes(
        &self,
        id: &crate::ids::InstanceId,
    ) -> Result<Vec<super::VolumeFacts>, super::AwsError> {
        self.ec2.attached_volumes(id).await
    }

    async fn instance_store_disks(
        &self,
        instance_type: &str,
    ) -> Result<Option<u32>, super::AwsError> {
        self.ec2.instance_store_disks(instance_type).await
    }

    async fn set_delete_on_termination(
        &self,
        instance_id: &crate::ids::InstanceId,
        devices: &[String],
        delete_on_termination: bool,
    ) -> Result<(), super::AwsError> {
        self.ec2
            .set_delete_on_termination(instance_id, devices, delete_on_termination)
            .await
    }
}

impl super::SnapshotStore for AwsCloud {
    async fn find_snapshots(
        &self,
        query: &super::SnapshotQuery,
    ) -> Result<Vec<super::SnapshotFacts>, super::AwsError> {
        self.ec2.find_snapshots(query).await
    }

    async fn create_snapshot_set(
        &self,
        request: &super::SnapshotSetRequest,
    ) -> Result<Vec<super::SnapshotFacts>, super::AwsError> {
        self.ec2.create_snapshot_set(request).await
    }

    async fn create_snapshot(
        &self,
        request: &super::SnapshotRequest,
    ) -> Result<super::SnapshotFacts, super::AwsError> {
        self.ec2.create_snapshot(request).await
    }
}

impl super::SnapshotCare for AwsCloud {
    async fn tiering_under_way(
        &self,
    ) -> Result<std::collections::BTreeSet<crate::ids::SnapshotId>, super::AwsError> {
        self.ec2.tiering_under_way().await
    }

    async fn archive(&self, snapshot: &crate::ids::SnapshotId) -> Result<(), super::AwsError> {
        self.ec2.archive(snapshot).await
    }

    async fn delete(&self, snapshot: &crate::ids::SnapshotId) -> Result<(), super::AwsError> {
        self.ec2.delete(snapshot).await
    }
}

impl super::Announcer for AwsCloud {
    async fn announce(&self, notice: &crate::report::Notice) -> Result<(), super::AwsError> {
        match &self.events {
            // EventBridge's PutEvents quota is thousands a second per Region: no pacing.
            Some(events) => events.announce(notice).await,
            None => Ok(()),
        }
    }
}

impl super::Tagging for AwsCloud {
    async fn tag(
        &self,
        resources: &[crate::ids::ResourceId],
        tags: &super::Tags,
    ) -> Result<(), super::AwsError> {
        self.ec2.tag(resources, tags).await
    }
}

impl super::Lifecycle for AwsCloud {
    async fn heartbeat(&self, action: &super::ActionRef) -> Result<(), super::AwsError> {
        self.autoscaling.heartbeat(action).await
    }

    async fn complete(
        &self,
        action: &super::ActionRef,
        result: super::ActionResult,
    ) -> Result<(), super::AwsError> {
        self.autoscaling.complete(action, result).await
    }

    async fn hook_facts(
        &self,
        group: &crate::ids::GroupName,
        hook: &crate::ids::HookName,
    ) -> Result<Option<super::HookFacts>, super::AwsError> {
        self.autoscaling.hook_facts(group, hook).await
    }

    async fn waiting_instances(
        &self,
        scope: &super::GroupScope,
    ) -> Result<Vec<super::WaitingInstance>, super::AwsError> {
        self.autoscaling.waiting_instances(scope).await
    }
}

impl super::Pressure for AwsCloud {
    fn congested(&self) -> bool {
        self.budget.congested()
    }
}
