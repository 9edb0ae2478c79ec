//! `scripts/bench scale`: a mass termination inside the account's real budget. One group of N
//! instances × 3 volumes is scaled in to zero at once against the local AWS with its throttling
//! on (a token bucket per EC2 API, one for Auto Scaling, other tenants drawing their share),
//! snapshots taking minutes, a share of the data volumes st1 with a Data Lifecycle Manager
//! snapshot already running, the EBS completion events delivered through Lambda's asynchronous
//! queue (some dropped), and the sweep on its schedule. Lambda itself is emulated (`lambda`):
//! the template's reserved concurrency, its timeout and retries. Time is emulated too
//! (`clock`). The figures go to docs/PERFORMANCE.md, between the scale markers.

#[path = "../../tests/support/mod.rs"]
mod support;

mod clock;
mod lambda;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    RequestLaunchTemplateData, VolumeType,
};
use serde_json::{json, Value};

use lifeboat::aws::client::{tuned, AwsCloud};
use lifeboat::config::Config;
use lifeboat::handler::Lifeboat;
use lifeboat::telemetry::{MetricSink, Metrics};

use clock::{ScaledClock, ScaledSleep, ScaledTime};
use lambda::{Deployment, Lambda};
use support::{BucketUsage, LocalAws};

const GROUP: &str = "storm";
const DEVICES: [&str; 3] = ["/dev/sda1", "/dev/sdf", "/dev/sdg"];
/// Lifeboat's signature: the local AWS counts its calls apart from the harness's.
const LIFEBOAT_KEY: &str = support::ACCESS_KEY_ID;
const HARNESS_KEY: &str = "AKIAHARNESSSETUP0000";
/// "AWS Lambda pricing", US East (N. Virginia), Arm: per GB-second and per request.
const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
const PRICE_PER_REQUEST: f64 = 0.000_000_2;

/// One storm and the world it happens in.
#[derive(Debug, Clone)]
struct Scenario {
    instances: usize,
    /// Share of the instances whose data volumes are st1, each with a DLM snapshot running.
    st1_share: f64,
    dlm_seconds: f64,
    /// Snapshot times of the other volumes, uniform between these (emulated seconds).
    snapshot_seconds: (f64, f64),
    st1_snapshot_seconds: f64,
    heartbeat_timeout: i32,
    completion_events_dropped: f64,
    other_tenants_share: f64,
    /// Emulated seconds per real second.
    scale: f64,
    deployment: Deployment,
    lifeboat_env: Vec<(&'static str, String)>,
}

#[derive(Debug, Default)]
struct Figures {
    scenario: String,
    emulated_seconds: f64,
    real_seconds: f64,
    released: usize,
    failed_safe: usize,
    other_endings: BTreeMap<String, usize>,
    holds_lapsed: usize,
    volumes_lost: usize,
    last_release: f64,
    /// When half, nine in ten and every one of the rescues were released.
    release_percentiles: [f64; 3],
    heartbeats: usize,
    buckets: Vec<BucketFigures>,
    lambda: lambda::LambdaStats,
    gb_seconds: f64,
    floor: (String, f64),
}

#[derive(Debug, Default, Clone)]
struct BucketFigures {
    name: String,
    refill: f64,
    calls: u64,
    throttled: u64,
    peak_share: f64,
    sustained_share: f64,
}

fn env_of(scenario: &Scenario) -> Vec<(String, String)> {
    scenario
        .lifeboat_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

async fn sdk(aws: &LocalAws, key: &str, sleep: Option<ScaledSleep>) -> aws_config::SdkConfig {
    let mut loader = tuned(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&aws.endpoint)
            .region(aws_config::Region::new(support::REGION))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                key, "secret", None, None, "scale",
            )),
    );
    if let Some(sleep) = sleep {
        loader = loader
            .time_source(ScaledTime(sleep.0.clone()))
            .sleep_impl(sleep);
    }
    loader.load().await
}

async fn launch_template(ec2: &aws_sdk_ec2::Client, name: &str, data: VolumeType) {
    let mut template = RequestLaunchTemplateData::builder()
        .image_id("ami-0123456789abcdef0")
        .instance_type("m5.large".into());
    for (i, device) in DEVICES.iter().enumerate() {
        let hdd = i > 0 && data == VolumeType::St1;
        template = template.block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(*device)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(if i == 0 {
                            8
                        } else if hdd {
                            500
                        } else {
                            100
                        })
                        .volume_type(if i == 0 {
                            VolumeType::Gp3
                        } else {
                            data.clone()
                        })
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    }
    ec2.create_launch_template()
        .launch_template_name(name)
        .launch_template_data(template.build())
        .send()
        .await
        .expect("launch template");
}

/// The group: its gp3 instances first, then its st1 ones (a new template, capacity raised),
/// and lifeboat's hook. Returns every volume with its type.
async fn build_world(aws: &LocalAws, scenario: &Scenario) -> Vec<(String, String)> {
    let config = sdk(aws, HARNESS_KEY, None).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let asg = aws_sdk_autoscaling::Client::new(&config);
    launch_template(&ec2, "storm-gp3", VolumeType::Gp3).await;
    launch_template(&ec2, "storm-st1", VolumeType::St1).await;
    let st1 = (scenario.instances as f64 * scenario.st1_share).round() as i32;
    let gp3 = scenario.instances as i32 - st1;
    let spec = |name: &str| {
        LaunchTemplateSpecification::builder()
            .launch_template_name(name)
            .build()
    };
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(GROUP)
        .launch_template(spec("storm-gp3"))
        .min_size(0)
        .max_size(scenario.instances as i32 + 10)
        .desired_capacity(gp3)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("group");
    if st1 > 0 {
        asg.update_auto_scaling_group()
            .auto_scaling_group_name(GROUP)
            .launch_template(spec("storm-st1"))
            .desired_capacity(gp3 + st1)
            .send()
            .await
            .expect("st1 instances");
    }
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(GROUP)
        .lifecycle_hook_name("lifeboat")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(scenario.heartbeat_timeout)
        .default_result("ABANDON")
        .send()
        .await
        .expect("hook");
    let mut volumes = Vec::new();
    let mut pages = ec2.describe_volumes().into_paginator().send();
    while let Some(page) = pages.next().await {
        for volume in page.expect("volumes").volumes() {
            volumes.push((
                volume.volume_id().unwrap_or_default().to_owned(),
                volume
                    .volume_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
            ));
        }
    }
    assert_eq!(volumes.len(), scenario.instances * DEVICES.len());
    volumes
}

/// How long each volume's snapshots take, and the DLM snapshots already running on st1.
fn plan_snapshots(aws: &LocalAws, scenario: &Scenario, volumes: &[(String, String)]) {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut plan = serde_json::Map::new();
    for (volume, kind) in volumes {
        let seconds = if kind == "st1" {
            scenario.st1_snapshot_seconds
        } else {
            let (low, high) = scenario.snapshot_seconds;
            low + rng.f64() * (high - low)
        };
        plan.insert(volume.clone(), json!({ "pending_seconds": seconds }));
    }
    aws.control("snapshots", Some(json!({ "volumes": plan })));
    for (volume, kind) in volumes {
        if kind == "st1" {
            aws.control(
                "foreign-snapshot",
                Some(json!({"volume": volume, "seconds": scenario.dlm_seconds})),
            );
        }
    }
}

fn scheduled_event(clock: &ScaledClock) -> Value {
    use lifeboat::clock::Clock;
    json!({"version": "0", "id": format!("sweep-{}", clock.seconds() as u64), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": clock.now().to_rfc3339(),
        "region": support::REGION, "resources": ["arn:aws:events:us-east-1:123456789012:rule/lifeboat-sweep"], "detail": {}})
}

async fn run(scenario: &Scenario, name: &str) -> Figures {
    let aws = LocalAws::get();
    aws.control("reset", Some(json!({})));
    aws.control(
        "edges",
        Some(json!({"other_tenants_share": scenario.other_tenants_share})),
    );
    let setup = Instant::now();
    let volumes = build_world(aws, scenario).await;
    plan_snapshots(aws, scenario, &volumes);
    eprintln!(
        "scale: {name}: {} instances built in {:.0} s",
        scenario.instances,
        setup.elapsed().as_secs_f64()
    );

    let origin = aws.control("clock", Some(json!({"scale": scenario.scale})))["now"]
        .as_f64()
        .expect("the emulator's time");
    let clock = ScaledClock::new(origin, scenario.scale);
    let lifeboat_sdk = sdk(aws, LIFEBOAT_KEY, Some(ScaledSleep(clock.clone()))).await;
    let mut env = env_of(scenario);
    env.push((
        "LIFEBOAT_CONCURRENCY".into(),
        scenario.deployment.reserved_concurrency.to_string(),
    ));
    let config =
        Config::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("lifeboat's configuration");
    let environment_clock = clock.clone();
    let make = Box::new(move || {
        Arc::new(Lifeboat {
            cloud: AwsCloud::budgeted(&lifeboat_sdk, config.budget),
            clock: environment_clock.clone(),
            config: config.clone(),
            metrics: Metrics::new("Lifeboat", MetricSink::Memory(Mutex::new(Vec::new()))),
        })
    });
    let mut lambda = Lambda::new(scenario.deployment.clone(), clock.clone(), make);
    let harness = sdk(aws, HARNESS_KEY, None).await;
    let asg = aws_sdk_autoscaling::Client::new(&harness);

    // The storm: the group scales in to zero.
    let started = clock.seconds();
    let real_start = Instant::now();
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(GROUP)
        .desired_capacity(0)
        .min_size(0)
        .send()
        .await
        .expect("scale in");
    let interval: f64 = scenario
        .lifeboat_env
        .iter()
        .find(|(k, _)| *k == "LIFEBOAT_SWEEP_INTERVAL_SECONDS")
        .map_or(300.0, |(_, v)| v.parse().unwrap_or(300.0));
    let mut next_sweep = started + interval * fastrand::f64();
    let mut drop_rng = fastrand::Rng::with_seed(23);
    let mut last_look = Instant::now();
    let mut last_print = Instant::now();
    let deadline = started + 6.0 * 3600.0;
    loop {
        for event in aws.control("outbox/take", Some(json!({})))["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let completion = event["source"] == "aws.ec2";
            if completion && drop_rng.f64() < scenario.completion_events_dropped {
                continue;
            }
            lambda.invoke_async(event);
        }
        if clock.seconds() >= next_sweep {
            lambda.invoke_async(scheduled_event(&clock));
            next_sweep += interval;
        }
        lambda.step();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_look.elapsed() >= Duration::from_secs(1) {
            last_look = Instant::now();
            let summary = aws.control("summary", Some(json!({})));
            let completed = summary["kinds"]["action-completed"].as_u64().unwrap_or(0) as usize;
            if last_print.elapsed() >= Duration::from_secs(30) {
                last_print = Instant::now();
                eprintln!(
                    "scale: {name}: t+{:.0} s emulated, {completed}/{} actions completed, {} invocations running, {} queued",
                    clock.seconds() - started,
                    scenario.instances,
                    lambda.busy(),
                    lambda.queued()
                );
            }
            if completed >= scenario.instances || clock.seconds() > deadline {
                break;
            }
        }
    }
    let emulated = clock.seconds() - started;
    let real = real_start.elapsed().as_secs_f64();
    // Let the invocations in flight end (their last tags), as a deployed function would.
    let settle = Instant::now();
    while lambda.busy() > 0 && settle.elapsed() < clock.real(Duration::from_secs(900)) {
        lambda.step();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(path) = std::env::var("SCALE_LEDGER") {
        let _ = std::fs::write(path, aws.control("ledger", None).to_string());
    }
    figures(aws, scenario, name, &lambda, started, emulated, real)
}

fn figures(
    aws: &LocalAws,
    scenario: &Scenario,
    name: &str,
    lambda: &Lambda,
    started: f64,
    emulated: f64,
    real: f64,
) -> Figures {
    let summary = aws.control(
        "summary",
        Some(json!({"kinds": ["action-completed", "volume-deleted"]})),
    );
    let mut f = Figures {
        scenario: name.to_owned(),
        emulated_seconds: emulated,
        real_seconds: real,
        lambda: lambda.stats.clone(),
        gb_seconds: lambda.gb_seconds(),
        ..Figures::default()
    };
    f.heartbeats = summary["kinds"]["action-heartbeat"].as_u64().unwrap_or(0) as usize;
    let mut releases: Vec<f64> = Vec::new();
    for entry in summary["entries"].as_array().into_iter().flatten() {
        match entry["kind"].as_str() {
            Some("action-completed") => {
                let by = entry["by"].as_str().unwrap_or_default();
                let result = entry["result"].as_str().unwrap_or_default();
                let at = entry["time"].as_f64().unwrap_or(started) - started;
                match (by, result) {
                    ("api", "CONTINUE") => {
                        f.released += 1;
                        f.last_release = f.last_release.max(at);
                        releases.push(at);
                    }
                    ("api", "ABANDON") => f.failed_safe += 1,
                    ("heartbeat-timeout" | "global-timeout", _) => {
                        f.holds_lapsed += 1;
                        *f.other_endings
                            .entry(format!("{by} → {result}"))
                            .or_default() += 1;
                    }
                    _ => {
                        *f.other_endings
                            .entry(format!("{by} → {result}"))
                            .or_default() += 1
                    }
                }
            }
            Some("volume-deleted") if entry["had_completed_snapshot"] == false => {
                f.volumes_lost += 1
            }
            _ => {}
        }
    }
    releases.sort_by(f64::total_cmp);
    let at = |q: f64| {
        releases
            .get(((releases.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    f.release_percentiles = [at(0.5), at(0.9), at(1.0)];
    let throttle = aws.control("throttle", None);
    let buckets = throttle["buckets"].as_object().cloned().unwrap_or_default();
    let span = f.last_release.max(1.0);
    for (bucket, usage) in BucketUsage::of_caller(&throttle, LIFEBOAT_KEY) {
        let refill = buckets
            .get(&bucket)
            .and_then(|b| b["refill"].as_f64())
            .unwrap_or(1.0);
        let (peak, _) = usage.busiest(10);
        f.buckets.push(BucketFigures {
            name: bucket,
            refill,
            calls: usage.calls,
            throttled: usage.throttled,
            peak_share: peak as f64 / 10.0 / refill,
            sustained_share: usage.calls as f64 / span / refill,
        });
    }
    let share = 0.5;
    f.floor = f
        .buckets
        .iter()
        .map(|b| (b.name.clone(), b.calls as f64 / (share * b.refill)))
        .fold((String::new(), 0.0), |best, next| {
            if next.1 > best.1 {
                next
            } else {
                best
            }
        });
    let _ = scenario;
    f
}

fn table(figures: &[Figures]) -> String {
    let mut doc = String::new();
    let _ = writeln!(
        doc,
        "| | {} |",
        figures
            .iter()
            .map(|f| f.scenario.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(doc, "|---|{}", "---|".repeat(figures.len()));
    let row = |doc: &mut String, label: &str, cell: &dyn Fn(&Figures) -> String| {
        let _ = writeln!(
            doc,
            "| {label} | {} |",
            figures.iter().map(cell).collect::<Vec<_>>().join(" | ")
        );
    };
    row(&mut doc, "time to the last release", &|f| {
        format!("{:.0} s", f.last_release)
    });
    row(&mut doc, "half, nine in ten released by", &|f| {
        format!(
            "{:.0} s, {:.0} s",
            f.release_percentiles[0], f.release_percentiles[1]
        )
    });
    row(
        &mut doc,
        "floor: the tightest bucket at half its refill",
        &|f| format!("{:.0} s ({})", f.floor.1, f.floor.0),
    );
    row(
        &mut doc,
        "released (CONTINUE after every volume saved)",
        &|f| f.released.to_string(),
    );
    row(&mut doc, "failed safe (kept, ABANDON)", &|f| {
        f.failed_safe.to_string()
    });
    row(&mut doc, "holds lapsed", &|f| f.holds_lapsed.to_string());
    row(&mut doc, "volumes lost", &|f| f.volumes_lost.to_string());
    row(&mut doc, "heartbeats", &|f| f.heartbeats.to_string());
    row(&mut doc, "peak Lambda concurrency", &|f| {
        f.lambda.peak_concurrency.to_string()
    });
    row(&mut doc, "invocations (throttled by Lambda)", &|f| {
        format!("{} ({})", f.lambda.invocations, f.lambda.throttled)
    });
    row(&mut doc, "function errors (timeouts)", &|f| {
        format!("{} ({})", f.lambda.function_errors, f.lambda.timeouts)
    });
    row(&mut doc, "events dropped (too old / retries spent)", &|f| {
        format!(
            "{} / {}",
            f.lambda.dropped_too_old, f.lambda.dropped_retries_exhausted
        )
    });
    row(&mut doc, "longest wait in Lambda's queue", &|f| {
        format!("{:.0} s", f.lambda.longest_queue_wait)
    });
    row(&mut doc, "GB-seconds", &|f| format!("{:.0}", f.gb_seconds));
    row(&mut doc, "Lambda cost per rescue", &|f| {
        let cost =
            f.gb_seconds * PRICE_PER_GB_SECOND + f.lambda.invocations as f64 * PRICE_PER_REQUEST;
        format!("${:.6}", cost / (f.released + f.failed_safe).max(1) as f64)
    });
    row(&mut doc, "emulated time of the run (real)", &|f| {
        format!("{:.0} s ({:.0} s)", f.emulated_seconds, f.real_seconds)
    });
    doc
}

fn bucket_table(f: &Figures) -> String {
    let mut doc = String::from("| bucket | refill/s | lifeboat's calls | throttled | peak (10 s) ÷ refill | sustained ÷ refill |\n|---|---|---|---|---|---|\n");
    let mut buckets = f.buckets.clone();
    buckets.sort_by(|a, b| b.sustained_share.total_cmp(&a.sustained_share));
    for b in buckets {
        let _ = writeln!(
            doc,
            "| {} | {} | {} | {} | {:.0} % | {:.0} % |",
            b.name,
            b.refill,
            b.calls,
            b.throttled,
            b.peak_share * 100.0,
            b.sustained_share * 100.0
        );
    }
    doc
}

fn scenario(instances: usize, scale: f64) -> Scenario {
    Scenario {
        instances,
        st1_share: std::env::var("SCALE_ST1_SHARE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.2),
        dlm_seconds: 900.0,
        snapshot_seconds: (120.0, 480.0),
        st1_snapshot_seconds: 600.0,
        heartbeat_timeout: std::env::var("SCALE_HEARTBEAT_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(900),
        completion_events_dropped: 0.05,
        other_tenants_share: 0.5,
        scale,
        deployment: Deployment {
            reserved_concurrency: std::env::var("SCALE_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10),
            timeout: Duration::from_secs(900),
            memory_mb: 256,
            max_event_age: Duration::from_secs(
                std::env::var("SCALE_MAX_EVENT_AGE")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3600),
            ),
            max_retries: 2,
        },
        lifeboat_env: vec![("LIFEBOAT_SWEEP_INTERVAL_SECONDS", "300".into())],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 5000]);
    let scale: f64 = std::env::var("SCALE_TIME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let mut all = Vec::new();
    for n in sizes {
        let s = scenario(n, scale);
        let f = run(&s, &format!("{n} instances")).await;
        eprintln!("{}", table(std::slice::from_ref(&f)));
        eprintln!("{}", bucket_table(&f));
        for (said, n) in &f.lambda.said {
            eprintln!("{n:>7}  {said}");
        }
        all.push(f);
    }
    let mut doc = String::new();
    doc.push_str(&table(&all));
    for f in &all {
        let _ = writeln!(doc, "\n{}:\n\n{}", f.scenario, bucket_table(f));
    }
    println!("{doc}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target-scale.md");
    let _ = std::fs::write(out, &doc);
}
