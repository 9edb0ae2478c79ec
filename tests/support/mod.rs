//! The end-to-end tests' world: one local AWS per test binary (`python -m localaws` from the
//! project's virtualenv, on 127.0.0.1 and a free port), reset between tests and shared by
//! taking turns; lifeboat wired to it through the real SDK; and the checks every test makes on
//! the world itself (the ledger).

#![allow(dead_code)]

pub mod campaign;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, LifecycleState};
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    RequestLaunchTemplateData, VolumeType,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use lifeboat::aws::client::{tuned, AwsCloud};
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::handler::{Lifeboat, LifeboatError};
use lifeboat::report::Report;
use lifeboat::telemetry::{MetricSink, Metrics};

pub const REGION: &str = "us-east-1";
/// The credentials lifeboat signs its calls with in these tests: distinctive, so a test can
/// prove they never reach a log line.
pub const ACCESS_KEY_ID: &str = "AKIALIFEBOATE2ETESTS";
pub const SECRET_ACCESS_KEY: &str = "lifeboat-e2e-secret-never-logged-5e1f";
/// The customer managed key of the scenes' data volumes.
pub const DATA_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";

/// The local AWS this test binary started. It ends when the test process does: the server
/// watches its parent.
pub struct LocalAws {
    pub endpoint: String,
    _child: Child,
}

static LOCAL_AWS: OnceLock<LocalAws> = OnceLock::new();
/// Tests take turns on the one local AWS.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's virtualenv Python, made by `scripts/venv` (the test command runs it first).
pub fn python() -> PathBuf {
    std::env::var_os("LIFEBOAT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

impl LocalAws {
    pub fn get() -> &'static LocalAws {
        LOCAL_AWS.get_or_init(Self::start)
    }

    fn start() -> LocalAws {
        let python = python();
        assert!(
            python.exists(),
            "{} not found: run scripts/venv (the README's test command does) to create the local AWS's virtualenv",
            python.display()
        );
        let port_file =
            std::env::temp_dir().join(format!("lifeboat-localaws-{}.port", std::process::id()));
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(&python)
            .args(["-m", "localaws", "--port", "0", "--port-file"])
            .arg(&port_file)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start the local AWS with {}: {err}",
                    python.display()
                )
            });
        let started = Instant::now();
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the local AWS did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = std::fs::remove_file(&port_file);
        LocalAws {
            endpoint: format!("http://127.0.0.1:{}", port.trim()),
            _child: child,
        }
    }

    /// A call to the control API; `body` None is a GET.
    pub fn control(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_localaws/{path}", self.endpoint);
        let response = match body {
            Some(body) => ureq::post(&url).send_json(body),
            None => ureq::get(&url).call(),
        };
        let mut response = response.unwrap_or_else(|err| panic!("local AWS control {path}: {err}"));
        response
            .body_mut()
            .read_json()
            .unwrap_or_else(|err| panic!("local AWS control {path}: {err}"))
    }
}

/// Lifeboat's clock in these tests: the system's, moved forward with the emulator's when a test
/// lets hours pass.
#[derive(Debug, Clone, Default)]
pub struct SharedClock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock for SharedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

/// The SDK's idea of now (and so the pace of lifeboat's API budget) on the same clock: hours
/// a test lets pass refill the buckets as they do the local AWS's.
impl aws_smithy_async::time::TimeSource for SharedClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
            .checked_add(Duration::from_millis(
                self.offset_ms.load(Ordering::SeqCst).max(0) as u64,
            ))
            .unwrap_or_else(std::time::SystemTime::now)
    }
}

/// One test's world: the local AWS to itself (reset), SDK clients for setting the scene, and
/// lifeboat wired to it.
pub struct World {
    pub aws: &'static LocalAws,
    _turn: tokio::sync::MutexGuard<'static, ()>,
    pub ec2: aws_sdk_ec2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub lifeboat: Lifeboat<AwsCloud, SharedClock>,
    pub sdk: aws_config::SdkConfig,
}

/// The settings every end-to-end test starts from: quick polls, a short inline wait.
pub const FAST: &[(&str, &str)] = &[
    ("LIFEBOAT_POLL_INITIAL_SECONDS", "1"),
    ("LIFEBOAT_POLL_MAX_SECONDS", "1"),
    ("LIFEBOAT_INLINE_WAIT_SECONDS", "20"),
    ("LIFEBOAT_SWEEP_INTERVAL_SECONDS", "60"),
    // One process is the whole of lifeboat here: it paces itself to the whole of its share.
    ("LIFEBOAT_CONCURRENCY", "1"),
];

impl World {
    pub async fn new(vars: &[(&str, &str)]) -> World {
        let turn = TURN.lock().await;
        let aws = LocalAws::get();
        aws.control("reset", Some(json!({})));
        let clock = SharedClock::default();
        let sdk = tuned(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .time_source(clock.clone())
                .endpoint_url(&aws.endpoint)
                .region(aws_config::Region::new(REGION))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test", "test", None, None, "e2e",
                )),
        )
        .load()
        .await;
        let mut all: Vec<(String, String)> = FAST
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_lookup(|name| {
            all.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("test configuration");
        World {
            aws,
            _turn: turn,
            ec2: aws_sdk_ec2::Client::new(&sdk),
            asg: aws_sdk_autoscaling::Client::new(&sdk),
            lifeboat: Lifeboat {
                cloud: AwsCloud::budgeted(&sdk, config.budget)
                    .announcing_to(&sdk, config.event_bus.clone())
                    .copying_to(&sdk, config.copy.clone()),
                clock,
                config,
                metrics: Metrics::new("Lifeboat", MetricSink::Memory(Mutex::new(Vec::new()))),
            },
            sdk,
        }
    }

    /// A group of `size` instances from a launch template mapping `devices` (the first is the
    /// boot volume, /dev/sda1, as moto's instances have no AMI), each volume DeleteOnTermination
    /// (as AWS defaults it), with lifeboat's termination hook.
    pub async fn group(
        &self,
        name: &str,
        size: i32,
        devices: &[&str],
        heartbeat_timeout: i32,
    ) -> Vec<String> {
        self.group_of(name, size, devices, VolumeType::Gp3, heartbeat_timeout)
            .await
    }

    /// A group like `group`'s whose data volumes are of `data_type` (st1 for throughput HDD).
    pub async fn group_of(
        &self,
        name: &str,
        size: i32,
        devices: &[&str],
        data_type: VolumeType,
        heartbeat_timeout: i32,
    ) -> Vec<String> {
        self.group_in(
            REGION,
            name,
            size,
            devices,
            data_type,
            heartbeat_timeout,
            DATA_KEY,
        )
        .await
    }

    /// The SDK configuration of these tests, in another Region of the same local AWS.
    pub fn sdk_in(&self, region: &str) -> aws_config::SdkConfig {
        self.sdk
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .build()
    }

    /// A group like `group_of`'s, in `region` (its zone `<region>a`), its data volumes
    /// encrypted with `key`.
    #[allow(clippy::too_many_arguments)]
    pub async fn group_in(
        &self,
        region: &str,
        name: &str,
        size: i32,
        devices: &[&str],
        data_type: VolumeType,
        heartbeat_timeout: i32,
        key: &str,
    ) -> Vec<String> {
        let config = self.sdk_in(region);
        let (ec2, asg) = (
            aws_sdk_ec2::Client::new(&config),
            aws_sdk_autoscaling::Client::new(&config),
        );
        let mut data = RequestLaunchTemplateData::builder()
            .image_id("ami-0123456789abcdef0")
            .instance_type("m5.large".into());
        for (i, device) in devices.iter().enumerate() {
            data = data.block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(*device)
                    .ebs(
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            // st1 and sc1 volumes are 125 GiB at least.
                            .volume_size(match (i, &data_type) {
                                (0, _) => 8,
                                (_, VolumeType::St1 | VolumeType::Sc1) => 500,
                                _ => 20,
                            })
                            .volume_type(if i == 0 {
                                VolumeType::Gp3
                            } else {
                                data_type.clone()
                            })
                            .delete_on_termination(true)
                            // The data volumes are encrypted with a customer managed key.
                            .encrypted(i > 0)
                            .set_kms_key_id((i > 0).then(|| key.to_owned()))
                            .build(),
                    )
                    .build(),
            );
        }
        ec2.create_launch_template()
            .launch_template_name(format!("{name}-template"))
            .launch_template_data(data.build())
            .send()
            .await
            .expect("launch template");
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(format!("{name}-template"))
                    .build(),
            )
            .min_size(0)
            .max_size(size + 10)
            .desired_capacity(size)
            .availability_zones(format!("{region}a"))
            .send()
            .await
            .expect("group");
        asg.put_lifecycle_hook()
            .auto_scaling_group_name(name)
            .lifecycle_hook_name("lifeboat")
            .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
            .heartbeat_timeout(heartbeat_timeout)
            .default_result("ABANDON")
            .send()
            .await
            .expect("hook");
        instances_of(&asg, name, LifecycleState::InService).await
    }

    /// The group is tagged `lifeboat:protected=true`: in the role's default scope.
    pub async fn tag_protected(&self, group: &str) {
        self.asg
            .create_or_update_tags()
            .tags(
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(group)
                    .resource_type("auto-scaling-group")
                    .key("lifeboat:protected")
                    .value("true")
                    .propagate_at_launch(false)
                    .build(),
            )
            .send()
            .await
            .expect("tag the group protected");
    }

    /// The group's instance lifecycle policy retains an instance whose termination is
    /// abandoned (`TerminateHookAbandon=retain`).
    pub async fn retain_on_abandon(&self, group: &str) {
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .instance_lifecycle_policy(
                aws_sdk_autoscaling::types::InstanceLifecyclePolicy::builder()
                    .retention_triggers(
                        aws_sdk_autoscaling::types::RetentionTriggers::builder()
                            .terminate_hook_abandon(
                                aws_sdk_autoscaling::types::RetentionAction::Retain,
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("retain on abandon");
    }

    pub async fn instances(&self, group: &str, state: LifecycleState) -> Vec<String> {
        instances_of(&self.asg, group, state).await
    }

    /// One instance as EC2 describes it.
    pub async fn describe_instance(&self, instance: &str) -> aws_sdk_ec2::types::Instance {
        let reply = self
            .ec2
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .expect("describe instance");
        reply.reservations()[0].instances()[0].clone()
    }

    /// The volume ids of an instance's devices, in device order.
    pub async fn volumes_of(&self, instance: &str) -> Vec<(String, String)> {
        let mut volumes: Vec<(String, String)> = self
            .describe_instance(instance)
            .await
            .block_device_mappings()
            .iter()
            .map(|m| {
                (
                    m.device_name().unwrap_or_default().to_owned(),
                    m.ebs()
                        .and_then(|e| e.volume_id())
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        volumes.sort();
        volumes
    }

    pub async fn instance_state(&self, instance: &str) -> String {
        self.describe_instance(instance)
            .await
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default()
    }

    /// The group terminates `instance` (TerminateInstanceInAutoScalingGroup, capacity lowered):
    /// its hooks hold it; returns the lifecycle events EventBridge would deliver.
    pub async fn terminate(&self, instance: &str) -> Vec<Value> {
        self.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .expect("terminate in group");
        self.take_events_of("EC2 Instance-terminate Lifecycle Action")
    }

    /// One volume as EC2 describes it now; `None` once deleted.
    pub async fn volume(&self, id: &str) -> Option<aws_sdk_ec2::types::Volume> {
        let reply = self
            .ec2
            .describe_volumes()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("volume-id")
                    .values(id)
                    .build(),
            )
            .send()
            .await
            .expect("describe volume");
        reply.volumes().first().cloned()
    }

    /// An instance's tags, as key → value.
    pub async fn instance_tags(
        &self,
        instance: &str,
    ) -> std::collections::BTreeMap<String, String> {
        self.describe_instance(instance)
            .await
            .tags()
            .iter()
            .map(tag_pair)
            .collect()
    }

    /// Snapshots take `pending_seconds`; `fates` script how a volume's snapshots end.
    pub fn snapshots_take(&self, pending_seconds: f64, fates: &[(&str, &[&str])]) {
        let volumes: serde_json::Map<String, Value> = fates
            .iter()
            .map(|(volume, fates)| (volume.to_string(), json!({ "fates": fates })))
            .collect();
        self.aws.control(
            "snapshots",
            Some(json!({"pending_seconds": pending_seconds, "volumes": volumes})),
        );
    }

    pub fn faults(&self, rules: Value) {
        self.aws
            .control("faults", Some(json!({"seed": 11, "rules": rules})));
    }

    /// AWS's hard edges: all on unless a test turns one `off` to show the difference; `settings`
    /// such as `{"snapshot_quota": 3}`.
    pub fn edges(&self, off: &[&str], settings: Value) {
        let mut body = settings;
        body["off"] = json!(off);
        self.aws.control("edges", Some(body));
    }

    /// Someone else's snapshot of the volume (a Data Lifecycle Manager schedule), pending for
    /// `seconds`.
    pub fn foreign_snapshot(&self, volume: &str, seconds: f64) -> String {
        let reply = self.aws.control(
            "foreign-snapshot",
            Some(json!({"volume": volume, "seconds": seconds})),
        );
        reply["snapshot"].as_str().expect("snapshot id").to_owned()
    }

    /// The EventBridge events AWS would have sent since the last take.
    pub fn take_events(&self) -> Vec<Value> {
        let taken = self.aws.control("outbox/take", Some(json!({})));
        taken["events"].as_array().cloned().unwrap_or_default()
    }

    pub fn take_events_of(&self, detail_type: &str) -> Vec<Value> {
        self.take_events()
            .into_iter()
            .filter(|e| e["detail-type"] == detail_type)
            .collect()
    }

    /// EventBridge hands one event to the function, with 900 s before its deadline.
    pub async fn deliver(&self, event: &Value) -> Result<Report, LifeboatError> {
        let deadline = self.lifeboat.clock.now() + chrono::Duration::seconds(900);
        self.lifeboat.handle(event.clone(), deadline).await
    }

    pub async fn sweep(&self) -> Report {
        let event = json!({"version": "0", "id": "sweep", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": self.lifeboat.clock.now().to_rfc3339(), "region": REGION,
            "resources": [], "detail": {}});
        self.deliver(&event).await.expect("sweep")
    }

    /// Waits until EC2 lists the snapshots created until now: its API is eventually consistent,
    /// and the local AWS hides a new snapshot for 2 s (`localaws/edges.py`).
    pub async fn until_ec2_lists_new_snapshots(&self) {
        tokio::time::sleep(Duration::from_millis(2300)).await;
    }

    /// AWS's clock stands still from now on: only `advance` moves it. A test that counts what
    /// a token bucket admits then counts the same on a slow machine as on a fast one.
    pub fn stop_aws_clock(&self) {
        self.aws.control("clock", Some(json!({ "scale": 0 })));
    }

    /// Time passes for AWS and for lifeboat alike.
    pub fn advance(&self, seconds: u64) {
        self.aws
            .control("clock/advance", Some(json!({ "seconds": seconds })));
        self.lifeboat
            .clock
            .offset_ms
            .fetch_add(seconds as i64 * 1000, Ordering::SeqCst);
    }

    pub fn ledger(&self) -> Ledger {
        Ledger(self.aws.control("ledger", None))
    }

    /// Every test ends here: no volume died without a completed snapshot, no action was
    /// completed twice, no CONTINUE left an attached volume unsaved, and the local AWS never
    /// failed in its own code.
    pub fn assert_no_data_lost(&self) {
        let ledger = self.ledger();
        let lost = ledger.volumes_deleted_unsaved();
        assert!(
            lost.is_empty(),
            "volumes deleted without a completed snapshot: {lost:?}"
        );
        let unsafe_continues = ledger.unsafe_continues();
        assert!(
            unsafe_continues.is_empty(),
            "CONTINUE with unsaved volumes: {unsafe_continues:?}"
        );
        let twice = ledger.actions_completed_more_than_once();
        assert!(
            twice.is_empty(),
            "actions completed more than once: {twice:?}"
        );
        let bugs = ledger.entries("emulator-bug");
        assert!(
            bugs.is_empty(),
            "the local AWS failed in its own code, not as AWS does: {bugs:?}"
        );
    }
}

/// What the local AWS saw happen.
pub struct Ledger(pub Value);

impl Ledger {
    pub fn entries(&self, kind: &str) -> Vec<&Value> {
        self.0["entries"]
            .as_array()
            .map(|e| e.iter().filter(|e| e["kind"] == kind).collect())
            .unwrap_or_default()
    }

    /// The rescue events lifeboat published: (detail type, detail).
    pub fn events_published(&self) -> Vec<(String, Value)> {
        self.entries("event-published")
            .into_iter()
            .map(|e| {
                (
                    e["detail_type"].as_str().unwrap_or_default().to_owned(),
                    e["detail"].clone(),
                )
            })
            .collect()
    }

    pub fn volumes_deleted_unsaved(&self) -> Vec<String> {
        self.entries("volume-deleted")
            .into_iter()
            .filter(|e| e["had_completed_snapshot"] == false)
            .map(|e| e["volume"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// CONTINUEs by an API call (lifeboat's) while an attached volume had no completed snapshot
    /// started since the termination began. Keep-first's `DeleteOnTermination=false` does not
    /// excuse it (a safety net, not a release condition); only a volume the settings exclude,
    /// kept instead, may go without one.
    pub fn unsafe_continues(&self) -> Vec<String> {
        self.entries("action-completed")
            .into_iter()
            .filter(|e| e["result"] == "CONTINUE" && e["by"] == "api")
            .filter(|e| {
                e["volumes"].as_array().is_some_and(|v| {
                    v.iter().any(|v| {
                        let excluded_and_kept = v["delete_on_termination"] == false
                            && v["kept_reason"]
                                .as_str()
                                .is_some_and(|r| r.starts_with("excluded: "));
                        v["had_completed_snapshot"] == false && !excluded_and_kept
                    })
                })
            })
            .map(|e| e["instance"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn actions_completed_more_than_once(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for e in self.entries("action-completed") {
            *seen
                .entry(e["token"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(t, _)| t)
            .collect()
    }

    pub fn completion(&self, instance: &str) -> Option<(String, String)> {
        self.entries("action-completed")
            .into_iter()
            .find(|e| e["instance"] == instance)
            .map(|e| {
                (
                    e["result"].as_str().unwrap_or_default().to_owned(),
                    e["by"].as_str().unwrap_or_default().to_owned(),
                )
            })
    }

    /// Every request of `operation` the local AWS received, retried attempts included.
    pub fn calls(&self, operation: &str) -> u64 {
        self.0["calls"][operation].as_u64().unwrap_or(0)
    }

    /// The requests of `operation` that were applied and whose response was lost (the SDK sent
    /// them again).
    pub fn lost(&self, operation: &str) -> u64 {
        self.0["lost"][operation].as_u64().unwrap_or(0)
    }

    /// The calls lifeboat needed: its requests, less the attempts a lost response, a throttled
    /// request or an injected fault made it repeat.
    pub fn needed(&self, operation: &str) -> u64 {
        self.calls(operation)
            - self.lost(operation)
            - self.throttled(operation)
            - self.0["faults"][operation].as_u64().unwrap_or(0)
    }

    /// The requests of `operation` the local AWS refused because their bucket was empty.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.0["throttled"][operation].as_u64().unwrap_or(0)
    }

    pub fn faults_injected(&self) -> u64 {
        self.0["faults"]
            .as_object()
            .map_or(0, |f| f.values().filter_map(Value::as_u64).sum())
    }
}

/// Snapshots of a volume, as EC2 lists them: (id, state, tags).
/// The instances of `group` in `state`, through this Region's Auto Scaling client.
pub async fn instances_of(
    asg: &aws_sdk_autoscaling::Client,
    group: &str,
    state: LifecycleState,
) -> Vec<String> {
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe group");
    groups.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state() == Some(&state))
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect()
}

pub async fn snapshots_of(
    ec2: &aws_sdk_ec2::Client,
    volume: &str,
) -> Vec<(String, String, Vec<(String, String)>)> {
    let reply = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("volume-id")
                .values(volume)
                .build(),
        )
        .send()
        .await
        .expect("describe snapshots");
    reply
        .snapshots()
        .iter()
        .map(|s| {
            (
                s.snapshot_id().unwrap_or_default().to_owned(),
                s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                s.tags().iter().map(tag_pair).collect(),
            )
        })
        .collect()
}

/// Whether each snapshot of a volume is encrypted, and with which key.
pub async fn snapshot_encryption(
    ec2: &aws_sdk_ec2::Client,
    volume: &str,
) -> Vec<(bool, Option<String>)> {
    let reply = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("volume-id")
                .values(volume)
                .build(),
        )
        .send()
        .await
        .expect("describe snapshots");
    reply
        .snapshots()
        .iter()
        .map(|s| {
            (
                s.encrypted().unwrap_or(false),
                s.kms_key_id().map(str::to_owned),
            )
        })
        .collect()
}

/// `count` device names for a wide instance: the boot volume (/dev/sda1) first, then
/// /dev/sdf…/dev/sdz and /dev/xvdb…/dev/xvdz (at most 47).
pub fn devices(count: usize) -> Vec<String> {
    let letters = |from: u8| (from..=b'z').map(char::from);
    std::iter::once("/dev/sda1".to_owned())
        .chain(letters(b'f').map(|c| format!("/dev/sd{c}")))
        .chain(letters(b'b').map(|c| format!("/dev/xvd{c}")))
        .take(count)
        .collect()
}

/// An EC2 tag as (key, value).
pub fn tag_pair(t: &aws_sdk_ec2::types::Tag) -> (String, String) {
    (
        t.key().unwrap_or_default().to_owned(),
        t.value().unwrap_or_default().to_owned(),
    )
}

pub fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn repo_path(rel: &str) -> PathBuf {
    repo().join(Path::new(rel))
}

/// One caller's use of one of the local AWS's throttling buckets (`GET /_localaws/throttle`):
/// the calls it admitted, per emulated second, and those it refused.
#[derive(Debug, Default)]
pub struct BucketUsage {
    pub calls: u64,
    pub throttled: u64,
    pub by_second: std::collections::BTreeMap<i64, u64>,
}

impl BucketUsage {
    /// Every bucket `caller` (an access key id) drew from, by name, in the throttle report.
    pub fn of_caller(report: &Value, caller: &str) -> Vec<(String, BucketUsage)> {
        report["callers"][caller]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(bucket, usage)| {
                let by_second = usage["by_second"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(s, n)| (s.parse().unwrap_or(0), n.as_u64().unwrap_or(0)))
                    .collect();
                let usage = BucketUsage {
                    calls: usage["calls"].as_u64().unwrap_or(0),
                    throttled: usage["throttled"].as_u64().unwrap_or(0),
                    by_second,
                };
                (bucket.clone(), usage)
            })
            .collect()
    }

    /// The most calls admitted in any `seconds` consecutive seconds, and where that window began.
    pub fn busiest(&self, seconds: i64) -> (u64, i64) {
        self.by_second
            .keys()
            .map(|&start| {
                let calls = self
                    .by_second
                    .range(start..start + seconds)
                    .map(|(_, n)| n)
                    .sum();
                (calls, start)
            })
            .max()
            .unwrap_or_default()
    }
}

/// The machine a benchmark ran on, in a few words (for the figures it writes).
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem} GiB, Linux")
}
