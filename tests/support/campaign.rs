//! The fault campaign: a storm of terminations through the local AWS while everything goes
//! wrong at once — throttled calls, duplicated and dropped events, snapshots in error,
//! invocations cut off at the deadline or killed mid-rescue — and the figures that say whether
//! the data survived. `examples/campaign.rs` runs it at full size; `tests/campaign.rs` small.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};

use lifeboat::aws::client::AwsCloud;
use lifeboat::clock::Clock;
use lifeboat::handler::Lifeboat;
use lifeboat::telemetry::{MetricSink, Metrics};

use super::{SharedClock, World};

/// The size and the faults of one storm.
#[derive(Debug, Clone)]
pub struct Storm {
    pub instances: usize,
    pub volumes_per_instance: usize,
    /// Share of every AWS call answered with RequestLimitExceeded / Throttling.
    pub throttled: f64,
    /// Share of EventBridge deliveries made twice (half of them at the same moment).
    pub duplicated: f64,
    /// Share of snapshot completion events never delivered.
    pub completion_dropped: f64,
    /// Share of volumes whose first snapshot ends in error.
    pub snapshot_errors: f64,
    /// Share of volumes whose snapshots always fail (at least one volume): their rescue must
    /// fail safe, keeping them.
    pub never_snapshot: f64,
    /// Share of invocations cut off: half at an early Lambda deadline, half killed mid-rescue.
    pub cut: f64,
    /// Share of the (st1) data volumes with a scheduled snapshot (Data Lifecycle Manager)
    /// still running when the storm comes: EC2 refuses lifeboat's set until it is done.
    pub busy_volumes: f64,
    /// How long those scheduled snapshots still run.
    pub busy_seconds: f64,
    /// Share of mutating calls whose response is lost after the call was applied.
    pub lost_responses: f64,
    /// Lambda instances running at once, each with its own SDK clients.
    pub concurrency: usize,
    pub seed: u64,
    pub give_up_after: Duration,
}

impl Storm {
    pub fn full() -> Self {
        Self {
            instances: 300,
            volumes_per_instance: 3,
            throttled: 0.2,
            duplicated: 0.2,
            completion_dropped: 0.2,
            snapshot_errors: 0.05,
            never_snapshot: 0.01,
            cut: 0.2,
            busy_volumes: 0.2,
            busy_seconds: 20.0,
            lost_responses: 0.05,
            concurrency: 32,
            seed: 2026,
            give_up_after: Duration::from_secs(1800),
        }
    }

    pub fn small() -> Self {
        Self {
            instances: 12,
            concurrency: 8,
            give_up_after: Duration::from_secs(300),
            ..Self::full()
        }
    }
}

/// What the storm did to the world.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub instances: usize,
    pub volumes: usize,
    pub rescues_started: usize,
    pub released: usize,
    pub failed_safe: usize,
    pub still_open: usize,
    pub timed_out: usize,
    pub snapshots: usize,
    pub volumes_with_duplicates: usize,
    pub most_snapshots_of_one_volume: usize,
    pub volumes_deleted_unsaved: usize,
    pub actions_completed_more_than_once: usize,
    /// Rescues whose snapshots' `lifeboat:state` contradicts what happened to the action
    /// (still pending, released when it was abandoned, failed when it was continued).
    pub records_wrong: usize,
    /// Rescues recorded as `ended` (the action found over, by whom unknown) although lifeboat
    /// completed it: an invocation killed between completing and tagging, or a duplicate racing.
    pub records_ended: usize,
    pub invocations: usize,
    pub duplicated_deliveries: usize,
    pub dropped_completions: usize,
    pub cut_at_deadline: usize,
    pub killed: usize,
    pub invocation_errors: usize,
    pub faults_injected: u64,
    pub busy_volumes: usize,
    pub responses_lost: u64,
    pub wall_time: Duration,
    pub calls_per_rescue: BTreeMap<String, f64>,
}

impl Figures {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| t.push_str(&format!("| {k} | {v} |\n"));
        row(
            "instances × volumes",
            format!(
                "{} × {}",
                self.instances,
                self.volumes / self.instances.max(1)
            ),
        );
        row("rescues started", self.rescues_started.to_string());
        row("released (CONTINUE)", self.released.to_string());
        row(
            "failed safe (ABANDON, volumes kept)",
            self.failed_safe.to_string(),
        );
        row("still open", self.still_open.to_string());
        row("ended by the hook's timeout", self.timed_out.to_string());
        row("snapshots taken", self.snapshots.to_string());
        row(
            "volumes with more than one snapshot",
            self.volumes_with_duplicates.to_string(),
        );
        row(
            "most snapshots of one volume",
            self.most_snapshots_of_one_volume.to_string(),
        );
        row(
            "**volumes deleted without a completed snapshot**",
            format!("**{}**", self.volumes_deleted_unsaved),
        );
        row(
            "**lifecycle actions completed more than once**",
            format!("**{}**", self.actions_completed_more_than_once),
        );
        row(
            "rescues whose tags contradict the outcome",
            self.records_wrong.to_string(),
        );
        row(
            "rescues recorded as `ended` (outcome not known to the recorder)",
            self.records_ended.to_string(),
        );
        row("invocations", self.invocations.to_string());
        row(
            "… duplicated deliveries",
            self.duplicated_deliveries.to_string(),
        );
        row(
            "… completion events dropped",
            self.dropped_completions.to_string(),
        );
        row(
            "… cut at an early deadline",
            self.cut_at_deadline.to_string(),
        );
        row("… killed mid-rescue", self.killed.to_string());
        row(
            "… ended in an error (retried by the next event or sweep)",
            self.invocation_errors.to_string(),
        );
        row(
            "AWS calls answered with throttling or 5xx",
            self.faults_injected.to_string(),
        );
        row(
            "st1 data volumes with a scheduled snapshot running (EC2 refuses the set meanwhile)",
            self.busy_volumes.to_string(),
        );
        row(
            "calls applied whose response was lost",
            self.responses_lost.to_string(),
        );
        row(
            "wall time",
            format!("{:.1} s", self.wall_time.as_secs_f64()),
        );
        t.push_str("\n| AWS calls per rescue, by operation (throttled attempts included) | calls |\n|---|---|\n");
        for (op, n) in &self.calls_per_rescue {
            t.push_str(&format!("| {op} | {n:.2} |\n"));
        }
        t
    }
}

/// One Lambda instance: lifeboat with its own SDK clients (its own retry and rate-limit state).
fn lambda_instance(w: &World, n: usize) -> Lifeboat<AwsCloud, SharedClock> {
    let partition = format!("lambda-{n}");
    let ec2 = aws_sdk_ec2::config::Builder::from(&w.sdk)
        .retry_partition(aws_sdk_ec2::config::retry::RetryPartition::new(
            partition.clone(),
        ))
        .build();
    let asg = aws_sdk_autoscaling::config::Builder::from(&w.sdk)
        .retry_partition(aws_sdk_autoscaling::config::retry::RetryPartition::new(
            partition,
        ))
        .build();
    Lifeboat {
        cloud: AwsCloud::from_clients(
            aws_sdk_ec2::Client::from_conf(ec2),
            aws_sdk_autoscaling::Client::from_conf(asg),
        ),
        clock: w.lifeboat.clock.clone(),
        config: w.lifeboat.config.clone(),
        metrics: Metrics::new(
            "Lifeboat",
            MetricSink::Memory(std::sync::Mutex::new(Vec::new())),
        ),
    }
}

enum Cut {
    None,
    Deadline(Duration),
    Kill(Duration),
}

/// Runs one storm on a fresh world and reads the figures off it.
pub async fn run(w: &World, storm: &Storm) -> Figures {
    let mut rng = fastrand::Rng::with_seed(storm.seed);
    let devices: Vec<String> = [
        "/dev/sda1",
        "/dev/sdf",
        "/dev/sdg",
        "/dev/sdh",
        "/dev/sdi",
        "/dev/sdj",
        "/dev/sdk",
        "/dev/sdl",
    ][..storm.volumes_per_instance]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let device_refs: Vec<&str> = devices.iter().map(String::as_str).collect();
    let mut figures_busy = 0;
    let instances = w
        .group_of(
            "storm",
            storm.instances as i32,
            &device_refs,
            aws_sdk_ec2::types::VolumeType::St1,
            900,
        )
        .await;
    let described = w.ec2.describe_volumes().send().await.expect("volumes");
    let volumes: Vec<String> = described
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_owned))
        .collect();
    for volume in described.volumes() {
        let st1 = volume.volume_type() == Some(&aws_sdk_ec2::types::VolumeType::St1);
        if st1 && rng.f64() < storm.busy_volumes {
            w.foreign_snapshot(volume.volume_id().unwrap_or_default(), storm.busy_seconds);
            figures_busy += 1;
        }
    }
    w.edges(&[], json!({"lost_response_ratio": storm.lost_responses}));
    let mut erring: Vec<(String, Value)> = Vec::new();
    for (n, volume) in volumes.iter().enumerate() {
        let draw = rng.f64();
        if draw < storm.never_snapshot || (n == 0 && storm.never_snapshot > 0.0) {
            erring.push((volume.clone(), json!({"fates": vec!["error"; 10]})));
        } else if draw < storm.never_snapshot + storm.snapshot_errors {
            erring.push((volume.clone(), json!({"fates": ["error", "completed"]})));
        }
    }
    w.aws.control(
        "snapshots",
        Some(json!({"pending_seconds": 3.0, "volumes": erring.into_iter().collect::<serde_json::Map<_, _>>()})),
    );
    let pool: Vec<Lifeboat<AwsCloud, SharedClock>> = (0..storm.concurrency)
        .map(|n| lambda_instance(w, n))
        .collect();
    let (free_tx, free_rx) = async_channel_pair(storm.concurrency);
    let baseline = w.ledger();
    w.faults(
        json!([{"service": "*", "operation": "*", "kind": "throttle", "ratio": storm.throttled}]),
    );

    let started = Instant::now();
    // The storm: the group scales in to nothing, every instance is held by the hook at once.
    w.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name("storm")
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await
        .expect("scale in");

    let mut figures = Figures {
        instances: instances.len(),
        volumes: volumes.len(),
        busy_volumes: figures_busy,
        ..Figures::default()
    };
    let mut inflight = FuturesUnordered::new();
    let mut last_sweep = Instant::now();
    let mut last_check = Instant::now();
    let invoke = |event: Value, cut: Cut, delay: Duration| {
        let free_rx = free_rx.clone();
        let free_tx = free_tx.clone();
        let pool = &pool;
        async move {
            tokio::time::sleep(delay).await;
            let slot = free_rx.recv().await.expect("pool");
            let lifeboat = &pool[slot];
            let now = lifeboat.clock.now();
            let outcome = match cut {
                Cut::None => Some(
                    lifeboat
                        .handle(event, now + chrono::Duration::seconds(900))
                        .await
                        .is_ok(),
                ),
                Cut::Deadline(left) => Some(
                    lifeboat
                        .handle(event, now + chrono::Duration::from_std(left).unwrap())
                        .await
                        .is_ok(),
                ),
                Cut::Kill(after) => tokio::time::timeout(
                    after,
                    lifeboat.handle(event, now + chrono::Duration::seconds(900)),
                )
                .await
                .ok()
                .map(|r| r.is_ok()),
            };
            free_tx.send(slot).await.expect("pool");
            outcome
        }
    };
    loop {
        for event in w.take_events() {
            let completion = event["source"] == "aws.ec2";
            if completion && rng.f64() < storm.completion_dropped {
                figures.dropped_completions += 1;
                continue;
            }
            let copies = if rng.f64() < storm.duplicated { 2 } else { 1 };
            if copies == 2 {
                figures.duplicated_deliveries += 1;
            }
            for copy in 0..copies {
                let cut = if rng.f64() < storm.cut {
                    if rng.bool() {
                        figures.cut_at_deadline += 1;
                        // Lifeboat's margin (30 s) plus a few seconds: it must leave early.
                        Cut::Deadline(Duration::from_millis(30_000 + rng.u64(0..4000)))
                    } else {
                        figures.killed += 1;
                        Cut::Kill(Duration::from_millis(rng.u64(0..3000)))
                    }
                } else {
                    Cut::None
                };
                // A duplicate arrives at the same moment or up to ten seconds later.
                let delay = if copy == 1 && rng.bool() {
                    Duration::from_millis(rng.u64(0..10_000))
                } else {
                    Duration::ZERO
                };
                figures.invocations += 1;
                inflight.push(invoke(event.clone(), cut, delay));
            }
        }
        if last_sweep.elapsed() > Duration::from_secs(10) {
            last_sweep = Instant::now();
            figures.invocations += 1;
            inflight.push(invoke(sweep_event(w), Cut::None, Duration::ZERO));
        }
        tokio::select! {
            Some(outcome) = inflight.next() => {
                if outcome == Some(false) {
                    figures.invocation_errors += 1;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if last_check.elapsed() > Duration::from_secs(2) {
            last_check = Instant::now();
            let open = open_actions(&w.ledger());
            if open == 0 || started.elapsed() > storm.give_up_after {
                break;
            }
        }
    }
    while let Some(outcome) = inflight.next().await {
        if outcome == Some(false) {
            figures.invocation_errors += 1;
        }
    }
    figures.wall_time = started.elapsed();
    w.faults(json!([]));
    read_figures(w, &baseline, figures).await
}

fn sweep_event(w: &World) -> Value {
    json!({"version": "0", "id": "sweep", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": w.lifeboat.clock.now().to_rfc3339(), "region": super::REGION,
        "resources": [], "detail": {}})
}

fn open_actions(ledger: &super::Ledger) -> usize {
    let started = ledger.entries("action-started").len();
    let mut done = std::collections::BTreeSet::new();
    for e in ledger.entries("action-completed") {
        done.insert(e["token"].as_str().unwrap_or_default().to_owned());
    }
    started - done.len()
}

async fn read_figures(w: &World, baseline: &super::Ledger, mut figures: Figures) -> Figures {
    let ledger = w.ledger();
    figures.volumes_deleted_unsaved = ledger.volumes_deleted_unsaved().len();
    figures.actions_completed_more_than_once = ledger.actions_completed_more_than_once().len();
    figures.still_open = open_actions(&ledger);
    for e in ledger.entries("action-completed") {
        match (e["result"].as_str(), e["by"].as_str()) {
            (Some("CONTINUE"), Some("api")) => figures.released += 1,
            (Some("ABANDON"), Some("api")) => figures.failed_safe += 1,
            _ => figures.timed_out += 1,
        }
    }
    figures.faults_injected = ledger.faults_injected() - baseline.faults_injected();
    let lost_total = |l: &super::Ledger| -> u64 {
        l.0["lost"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    };
    figures.responses_lost = lost_total(&ledger) - lost_total(baseline);
    let mut per_volume: BTreeMap<String, usize> = BTreeMap::new();
    let mut instances = std::collections::BTreeSet::new();
    let mut states: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut pages = w
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for s in page.expect("snapshots").snapshots() {
            *per_volume
                .entry(s.volume_id().unwrap_or_default().to_owned())
                .or_default() += 1;
            if let Some(tag) = s
                .tags()
                .iter()
                .find(|t| t.key() == Some("lifeboat:instance-id"))
            {
                let instance = tag.value().unwrap_or_default().to_owned();
                instances.insert(instance.clone());
                if let Some(state) = s.tags().iter().find(|t| t.key() == Some("lifeboat:state")) {
                    states
                        .entry(instance)
                        .or_default()
                        .insert(state.value().unwrap_or_default().to_owned());
                }
            }
        }
    }
    figures.rescues_started = instances.len();
    for e in ledger.entries("action-completed") {
        let expected = match (e["result"].as_str(), e["by"].as_str()) {
            (Some("CONTINUE"), Some("api")) => "released",
            (Some("ABANDON"), Some("api")) => "failed",
            _ => continue,
        };
        let instance = e["instance"].as_str().unwrap_or_default();
        let recorded = states.get(instance).cloned().unwrap_or_default();
        let contradicting = recorded.iter().any(|s| s != expected && s != "ended");
        if recorded.is_empty() || contradicting {
            figures.records_wrong += 1;
        } else if !recorded.contains(expected) {
            figures.records_ended += 1;
        }
    }
    figures.snapshots = per_volume.values().sum();
    figures.volumes_with_duplicates = per_volume.values().filter(|n| **n > 1).count();
    figures.most_snapshots_of_one_volume = per_volume.values().copied().max().unwrap_or(0);
    let rescues = figures.instances.max(1) as f64;
    for (op, n) in ledger.0["calls"].as_object().into_iter().flatten() {
        let before = baseline.calls(op);
        let n = n.as_u64().unwrap_or(0).saturating_sub(before);
        if n > 0 {
            figures
                .calls_per_rescue
                .insert(op.clone(), n as f64 / rescues);
        }
    }
    figures
}

/// A pool of free Lambda instances: a bounded channel of their indices.
fn async_channel_pair(size: usize) -> (tokio::sync::mpsc::Sender<usize>, SharedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(size);
    for n in 0..size {
        tx.try_send(n).expect("pool");
    }
    (
        tx,
        SharedReceiver(std::sync::Arc::new(tokio::sync::Mutex::new(rx))),
    )
}

#[derive(Clone)]
struct SharedReceiver(std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<usize>>>);

impl SharedReceiver {
    async fn recv(&self) -> Option<usize> {
        self.0.lock().await.recv().await
    }
}
