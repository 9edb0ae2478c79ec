//! `scripts/bench`: lifeboat's costs, measured against the local AWS, written to
//! docs/PERFORMANCE.md — AWS calls per rescue by operation (1, 3 and 8 volumes), storms of
//! 10, 100 and 500 instances, the release after a completion event, the sweep's reads as the
//! rescues in flight grow, the simplest correct alternative side by side, and the release
//! Lambda binary's cold start, peak memory per invocation and size.
//!
//! Not a test: figures on a shared machine vary; the floors they show are checked by reading.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LifecycleState;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};

use lifeboat::report::Outcome;
use support::{Ledger, World};

const OPERATIONS: &[&str] = &[
    "ec2:DescribeSnapshots",
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
    "ec2:DescribeInstanceTypes",
    "ec2:CreateSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:ModifyInstanceAttribute",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLifecycleHooks",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "autoscaling:CompleteLifecycleAction",
    "ec2:DescribeSnapshotTierStatus",
    "ec2:ModifySnapshotTier",
    "ec2:DeleteSnapshot",
    "ec2:CopySnapshot",
    "events:PutEvents",
];

const DEVICES: [&str; 8] = [
    "/dev/sda1",
    "/dev/sdf",
    "/dev/sdg",
    "/dev/sdh",
    "/dev/sdi",
    "/dev/sdj",
    "/dev/sdk",
    "/dev/sdl",
];

/// How long a snapshot takes in the one-rescue figures: short enough that lifeboat's jittered
/// polls (pauses of 2.5-5 s, then 3.75-7.5 s) see it completed within 15 s of the hold's start,
/// whatever the jitter, so that the counts do not depend on chance.
const SNAPSHOT_SECONDS: f64 = 4.0;
/// A wait long enough to outlast half the shortest heartbeat timeout.
const LONG_SNAPSHOT_SECONDS: f64 = 40.0;

/// How many times each time figure is measured: the tables give the median and the spread.
const RUNS: usize = 5;
/// Cold starts are cheap to repeat: more runs.
const COLD_START_RUNS: usize = 21;

/// Repeated measurements of one time figure, in seconds.
#[derive(Debug, Clone, Default)]
struct Spread(Vec<f64>);

impl Spread {
    fn push(&mut self, seconds: f64) {
        self.0.push(seconds);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    fn median(&self) -> f64 {
        let sorted = self.sorted();
        match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// "7.0 s (6.2–7.9 s over 5 runs)", in `unit` ("s" or "ms").
    fn show(&self, unit: &str) -> String {
        let factor = if unit == "ms" { 1000.0 } else { 1.0 };
        let sorted = self.sorted();
        let (low, high) = (
            sorted.first().copied().unwrap_or(0.0),
            sorted.last().copied().unwrap_or(0.0),
        );
        format!(
            "{:.1} {unit} ({:.1}–{:.1} {unit} over {} runs)",
            self.median() * factor,
            low * factor,
            high * factor,
            sorted.len()
        )
    }
}

/// Production settings, but for the sweep interval the tests use.
const PRODUCTION: &[(&str, &str)] = &[
    ("LIFEBOAT_POLL_INITIAL_SECONDS", "5"),
    ("LIFEBOAT_POLL_MAX_SECONDS", "30"),
    ("LIFEBOAT_INLINE_WAIT_SECONDS", "120"),
];

/// The calls lifeboat needed between two readings of the ledger: a request the SDK repeated
/// because the local AWS lost its response (one mutating call in a hundred, as AWS may) counts
/// once; the repeats are counted apart, in `repeated`.
fn calls(before: &Ledger, after: &Ledger) -> BTreeMap<&'static str, u64> {
    OPERATIONS
        .iter()
        .map(|op| (*op, after.needed(op) - before.needed(op)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The requests repeated because their response was lost or a fault was injected.
fn repeated(before: &Ledger, after: &Ledger) -> u64 {
    OPERATIONS
        .iter()
        .map(|op| (after.calls(op) - before.calls(op)) - (after.needed(op) - before.needed(op)))
        .sum()
}

fn short(op: &str) -> &str {
    op.split(':').nth(1).unwrap_or(op)
}

fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn terminate_one(w: &World, group: &str, volumes: usize, pending: f64) -> Value {
    w.snapshots_take(pending, &[]);
    let instances = w.group(group, 1, &DEVICES[..volumes], 900).await;
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&instances[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("terminate");
    w.take_events_of("EC2 Instance-terminate Lifecycle Action")
        .remove(0)
}

/// Two rescues, one after the other, in one group of instances with `volumes` volumes whose
/// snapshots take `snapshot_seconds`, production poll schedule, one function process: the
/// first in a fresh process (cold), the second after it (warm: whatever the first read of the
/// hook is cached for 5 minutes, as in a storm). The calls of each and their times to release.
async fn two_rescues(
    volumes: usize,
    snapshot_seconds: f64,
) -> [(BTreeMap<&'static str, u64>, Duration); 2] {
    let w = World::new(PRODUCTION).await;
    w.snapshots_take(snapshot_seconds, &[]);
    let instances = w.group("bench", 2, &DEVICES[..volumes], 900).await;
    let mut measured = Vec::new();
    for instance in &instances {
        w.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .expect("terminate");
        let event = w
            .take_events_of("EC2 Instance-terminate Lifecycle Action")
            .remove(0);
        let before = w.ledger();
        let started = Instant::now();
        let report = w.deliver(&event).await.expect("rescue");
        assert_eq!(report.rescues[0].outcome, Outcome::Released);
        measured.push((calls(&before, &w.ledger()), started.elapsed()));
        // The completion events of this rescue find it released: not counted.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for event in w.take_events() {
            let _ = w.deliver(&event).await;
        }
    }
    let warm = measured.pop().expect("two rescues");
    let cold = measured.pop().expect("two rescues");
    [cold, warm]
}

/// One rescue as deployed: the termination event's invocation waits inline while EventBridge
/// delivers the snapshot completion event to a second invocation as soon as EBS emits it. The
/// calls of both, and the time from the termination event to `CompleteLifecycleAction`.
async fn deployed_rescue(volumes: usize) -> (BTreeMap<&'static str, u64>, Duration) {
    let w = World::new(PRODUCTION).await;
    let event = terminate_one(&w, "deployed", volumes, SNAPSHOT_SECONDS).await;
    let before = w.ledger();
    let started = chrono::Utc::now();
    let termination = w.deliver(&event);
    let completion = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(event) = w
                .take_events_of("EBS Multi-Volume Snapshots Completion Status")
                .pop()
            {
                return w.deliver(&event).await;
            }
        }
    };
    let (by_termination, by_completion) = tokio::join!(termination, completion);
    // The invocation that comes second finds the rescue finished: an already-finished report,
    // or (the completion event's, when the termination's inline poll released it first) none.
    let outcomes = [by_termination, by_completion]
        .map(|r| r.expect("rescue").rescues.first().map(|r| r.outcome));
    assert!(outcomes.contains(&Some(Outcome::Released)), "{outcomes:?}");
    let after = w.ledger();
    let completed_at = after.entries("action-completed")[0]["time"]
        .as_f64()
        .unwrap();
    let seconds = completed_at - started.timestamp_millis() as f64 / 1000.0;
    (
        calls(&before, &after),
        Duration::from_secs_f64(seconds.max(0.0)),
    )
}

/// The simplest correct alternative a team would write: one CreateSnapshot per volume, then a
/// DescribeSnapshots per snapshot every 5 s until all are completed, then CONTINUE.
async fn naive_rescue(volumes: usize) -> (BTreeMap<&'static str, u64>, Duration) {
    let w = World::new(PRODUCTION).await;
    let event = terminate_one(&w, "naive", volumes, SNAPSHOT_SECONDS).await;
    let before = w.ledger();
    let started = Instant::now();
    let instance = event["detail"]["EC2InstanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let described = w
        .ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
    let mut snapshots = Vec::new();
    for mapping in described.reservations()[0].instances()[0].block_device_mappings() {
        let volume = mapping.ebs().and_then(|e| e.volume_id()).unwrap();
        let created = w
            .ec2
            .create_snapshot()
            .volume_id(volume)
            .send()
            .await
            .unwrap();
        snapshots.push(created.snapshot_id().unwrap().to_owned());
    }
    loop {
        let mut done = true;
        for id in &snapshots {
            // Just after its creation EC2 may not know the snapshot yet (InvalidSnapshot.NotFound:
            // its API is eventually consistent): not done.
            done &= match w.ec2.describe_snapshots().snapshot_ids(id).send().await {
                Ok(reply) => reply.snapshots()[0].state().map(|s| s.as_str()) == Some("completed"),
                Err(_) => false,
            };
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    w.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("naive")
        .lifecycle_hook_name("lifeboat")
        .instance_id(&instance)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    (calls(&before, &w.ledger()), started.elapsed())
}

/// A storm of `instances` terminations at once, no faults, 32 concurrent invocations.
async fn storm(instances: usize) -> (Duration, BTreeMap<&'static str, u64>, u64, u64) {
    // The budget is the scale benchmark's: no throttling, every bucket lifeboat's. (32
    // invocations in one environment paced to a third of half of ModifyInstanceAttribute's
    // refill take 20 minutes for 500 instances; with the whole bucket, 5 calls a second after
    // a burst of 50, about 3.)
    let mut settings = PRODUCTION.to_vec();
    settings.extend([
        ("LIFEBOAT_API_SHARE_PERCENT", "100"),
        ("LIFEBOAT_CONCURRENCY", "1"),
    ]);
    let w = World::new(&settings).await;
    w.edges(&["throttling"], json!({}));
    w.snapshots_take(3.0, &[]);
    w.group("storm", instances as i32, &DEVICES[..3], 900).await;
    let before = w.ledger();
    let started = Instant::now();
    w.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name("storm")
        .desired_capacity(0)
        .send()
        .await
        .unwrap();
    let semaphore = tokio::sync::Semaphore::new(32);
    let mut inflight = FuturesUnordered::new();
    let mut last_check = Instant::now();
    loop {
        for event in w.take_events() {
            let semaphore = &semaphore;
            let w = &w;
            inflight.push(async move {
                let _permit = semaphore.acquire().await.unwrap();
                let _ = w.deliver(&event).await;
            });
        }
        tokio::select! {
            Some(()) = inflight.next() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            // Read through the local AWS's ledger, not an AWS call: the counts stay lifeboat's.
            if w.ledger().entries("action-completed").len() >= instances && inflight.is_empty() {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let all = w.ledger();
    let needed = calls(&before, &all);
    let total = needed.values().sum();
    (elapsed, needed, total, repeated(&before, &all))
}

/// Release after the completion event: the calls made and the milliseconds from the event's
/// delivery to CompleteLifecycleAction.
async fn release_after_event() -> (BTreeMap<&'static str, u64>, f64) {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    let event = terminate_one(&w, "bench", 3, 1.0).await;
    let report = w.deliver(&event).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Waiting);
    // The snapshots complete in 1 s; EC2 lists them 2 s after their creation.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let completion = w
        .take_events_of("EBS Multi-Volume Snapshots Completion Status")
        .remove(0);
    let before = w.ledger();
    let delivered = chrono::Utc::now();
    let report = w.deliver(&completion).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);
    let after = w.ledger();
    let completed_at = after.entries("action-completed")[0]["time"]
        .as_f64()
        .unwrap();
    let delay_ms = (completed_at - delivered.timestamp_millis() as f64 / 1000.0) * 1000.0;
    (calls(&before, &after), delay_ms)
}

/// The sweep's calls with `n` rescues in flight (snapshots that never complete).
async fn sweep_cost(n: usize) -> BTreeMap<&'static str, u64> {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    w.aws
        .control("snapshots", Some(json!({"pending_seconds": 86_400})));
    w.group("inflight", n as i32, &DEVICES[..3], 900).await;
    w.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name("inflight")
        .desired_capacity(0)
        .send()
        .await
        .unwrap();
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let mut inflight: FuturesUnordered<_> = events.iter().map(|e| w.deliver(e)).collect();
    while inflight.next().await.is_some() {}
    w.until_ec2_lists_new_snapshots().await;
    // A first sweep warms the function's cache of the hook, as a running Lambda's is.
    w.sweep().await;
    let before = w.ledger();
    let report = w.sweep().await;
    assert_eq!(report.count(Outcome::Waiting), n);
    calls(&before, &w.ledger())
}

/// One aftercare run over `n` released sets of 3 volumes, every one past its days (retention
/// deletes after 30 days and keeps the newest 3), copies to another Region configured: its calls,
/// its time, the sets deleted and the copies started.
async fn aftercare_cost(n: usize) -> (BTreeMap<&'static str, u64>, Duration, usize, usize) {
    let w = World::new(&[
        ("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS", "30"),
        ("LIFEBOAT_RETENTION_KEEP_LAST", "3"),
        ("LIFEBOAT_RETENTION_MAX_CHANGES", "10000"),
        ("LIFEBOAT_COPY_REGION", "us-west-2"),
    ])
    .await;
    w.aws
        .control("snapshots", Some(json!({"pending_seconds": 1})));
    w.group("aftercare", n as i32, &DEVICES[..3], 900).await;
    w.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name("aftercare")
        .desired_capacity(0)
        .send()
        .await
        .unwrap();
    let events = w.take_events_of("EC2 Instance-terminate Lifecycle Action");
    let mut rescues: FuturesUnordered<_> = events.iter().map(|e| w.deliver(e)).collect();
    while rescues.next().await.is_some() {}
    // Those the inline wait left waiting are released by their completion events and the sweep.
    for _ in 0..60 {
        let waiting = w
            .instances("aftercare", LifecycleState::TerminatingWait)
            .await;
        if waiting.is_empty() {
            break;
        }
        for event in w.take_events_of("EBS Multi-Volume Snapshots Completion Status") {
            let _ = w.deliver(&event).await;
        }
        w.advance(60);
        w.sweep().await;
    }
    assert!(w
        .instances("aftercare", LifecycleState::TerminatingWait)
        .await
        .is_empty());
    w.advance(31 * 86_400);
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_path("events/aftercare.json")).unwrap(),
    )
    .unwrap();
    let before = w.ledger();
    let started = Instant::now();
    let done = w.deliver(&event).await.unwrap().aftercare.unwrap();
    let took = started.elapsed();
    (
        calls(&before, &w.ledger()),
        took,
        done.deleted.len(),
        done.copies_started,
    )
}

/// A minimal Lambda runtime API on 127.0.0.1: hands out `events` one by one and records when
/// the function first asked for work and each response.
fn runtime_api(events: Vec<Value>) -> (u16, mpsc::Receiver<(Instant, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut events = events.into_iter().enumerate();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap_or(0);
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send((Instant::now(), request_line.clone()));
            if request_line.starts_with("GET") && request_line.contains("/invocation/next") {
                let Some((n, event)) = events.next() else {
                    // No more work: keep the function waiting until it is killed.
                    std::thread::sleep(Duration::from_secs(3600));
                    continue;
                };
                let body = event.to_string();
                let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{n}\r\n\
                     Lambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:lifeboat\r\n\
                     Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            } else {
                let _ = write!(
                    stream,
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
    });
    (port, rx)
}

/// The release Lambda binary, started as Lambda starts it, under the runtime API on `port`.
fn start_function(binary: &PathBuf, port: u16, endpoint: &str) -> std::process::Child {
    Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "lifeboat")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/lifeboat")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", support::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", support::SECRET_ACCESS_KEY)
        .env("LIFEBOAT_POLL_INITIAL_SECONDS", "1")
        .env("LIFEBOAT_POLL_MAX_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release Lambda binary")
}

/// Cold start and peak memory of the release Lambda binary. The cold start, measured
/// `COLD_START_RUNS` times, runs from the `exec` of a fresh process to its first request for
/// work (`GET /runtime/invocation/next`): loading the binary, the Rust and tokio runtimes,
/// reading and checking the configuration, and building the AWS SDK's clients (credentials
/// from the environment: no network). Lambda's own part of an init (starting the execution
/// environment, fetching the code) is not in it. Then one process is handed a termination
/// event (and then a sweep), its peak RSS read after each.
async fn lambda_binary(binary: &PathBuf) -> (Spread, u64, u64) {
    let w = World::new(&[]).await;
    let mut cold = Spread::default();
    for _ in 0..COLD_START_RUNS {
        let (port, requests) = runtime_api(Vec::new());
        let started = Instant::now();
        let mut child = start_function(binary, port, &w.aws.endpoint);
        let (first_ask, _) = requests
            .recv_timeout(Duration::from_secs(30))
            .expect("the function asks for work");
        cold.push((first_ask - started).as_secs_f64());
        let _ = child.kill();
        let _ = child.wait();
    }
    let event = terminate_one(&w, "cold", 3, 1.0).await;
    let sweep = json!({"version": "0", "id": "s", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": chrono::Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [], "detail": {}});
    let (port, requests) = runtime_api(vec![event, sweep]);
    let mut child = start_function(binary, port, &w.aws.endpoint);
    let pid = child.id().to_string();
    requests
        .recv_timeout(Duration::from_secs(30))
        .expect("the function asks for work");
    let mut peaks = Vec::new();
    while peaks.len() < 2 {
        let (_, line) = requests
            .recv_timeout(Duration::from_secs(120))
            .expect("the function answers");
        if line.starts_with("POST") {
            peaks.push(peak_rss_kib(&pid));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (cold, peaks[0], peaks[1])
}

fn table_of_calls(rows: &[(String, BTreeMap<&'static str, u64>)]) -> String {
    let mut ops: Vec<&str> = OPERATIONS.to_vec();
    ops.retain(|op| rows.iter().any(|(_, c)| c.contains_key(op)));
    let mut t = String::from("| |");
    for op in &ops {
        let _ = write!(t, " {} |", short(op));
    }
    t.push_str(" all |\n|---|");
    for _ in &ops {
        t.push_str("---|");
    }
    t.push_str("---|\n");
    for (name, calls) in rows {
        let _ = write!(t, "| {name} |");
        for op in &ops {
            let _ = write!(t, " {} |", calls.get(op).copied().unwrap_or(0));
        }
        let _ = writeln!(t, " {} |", calls.values().sum::<u64>());
    }
    t
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = PathBuf::from(
        std::env::var("LIFEBOAT_LAMBDA_BINARY")
            .expect("LIFEBOAT_LAMBDA_BINARY: the release Lambda binary"),
    );
    let mut doc = String::new();
    let _ = writeln!(doc, "# lifeboat — performance\n");
    let _ = writeln!(
        doc,
        "Measured by `scripts/bench` on {} against the local AWS (moto 5.2.5 with the project's harness, on 127.0.0.1), {}. \
         Counts of AWS calls are exact and repeatable; times depend on the machine and on the emulator (each of its calls \
         takes a few milliseconds), not on AWS.\n",
        support::machine(),
        chrono::Utc::now().format("%Y-%m-%d")
    );

    eprintln!("bench: rescues of 1, 3 and 8 volumes, a long wait, the naive alternative");
    let mut rows = Vec::new();
    let mut times = Vec::new();
    for volumes in [1, 3, 8] {
        let mut time = Spread::default();
        let mut first = None;
        for _ in 0..RUNS {
            let [(calls, elapsed), _] = two_rescues(volumes, SNAPSHOT_SECONDS).await;
            time.push(elapsed.as_secs_f64());
            first.get_or_insert(calls);
        }
        rows.push((
            format!(
                "lifeboat, {volumes} volume{}",
                if volumes == 1 { "" } else { "s" }
            ),
            first.unwrap_or_default(),
        ));
        times.push(time);
    }
    let [(long_cold, _), (long_warm, _)] = two_rescues(3, LONG_SNAPSHOT_SECONDS).await;
    let (mut naive_time, mut deployed_time) = (Spread::default(), Spread::default());
    let (mut naive_calls, mut deployed_calls) = (BTreeMap::new(), BTreeMap::new());
    for run in 0..RUNS {
        let (calls, elapsed) = naive_rescue(3).await;
        naive_time.push(elapsed.as_secs_f64());
        if run == 0 {
            naive_calls = calls;
        }
        let (calls, elapsed) = deployed_rescue(3).await;
        deployed_time.push(elapsed.as_secs_f64());
        if run == 0 {
            deployed_calls = calls;
        }
    }
    let _ = writeln!(doc, "## One rescue: AWS calls by operation\n");
    let _ = writeln!(
        doc,
        "A termination event handled by a fresh function process, for an instance whose snapshots take {SNAPSHOT_SECONDS} s, \
         production settings (first poll after 2.5-5 s, growing by half), every hard edge of the local AWS on (EC2 lists \
         a new snapshot 2 s after its creation; one mutating call in a hundred has its response lost, and the SDK's \
         repeat of it is not counted here). `DescribeSnapshots` counts the polls only (one per round, whatever the \
         number of volumes): with nothing kept on the instance's volumes, no earlier invocation took the termination \
         on and no set can exist, so there is nothing to look up. Keep first costs three calls (`CreateTags` and \
         `ModifyInstanceAttribute` before the set, `ModifyInstanceAttribute` to give the volumes back right before \
         CONTINUE) and saves the look-up: the floor moved from 6 calls besides the polls to 8, the price of no path \
         deleting an unsaved volume — not a crash, a throttled hour, a refused `CreateSnapshots`, another hook's \
         ABANDON nor a deleted hook. Two `PutEvents` tell the account's bus the rescue started and ended (the rescue \
         events); they come after the work they announce and hold nothing up.\n"
    );
    doc.push_str(&table_of_calls(&rows));
    let _ = writeln!(
        doc,
        "\nA wait that outlasts 15 s (half the shortest heartbeat timeout AWS allows) makes a fresh process read the \
         hook's timing once (`DescribeLifecycleHooks`); the process keeps it for 5 minutes, so the group's next rescues \
         do without. Snapshots of {LONG_SNAPSHOT_SECONDS} s, 3 volumes:\n"
    );
    doc.push_str(&table_of_calls(&[
        (
            "first rescue of the group in a fresh process".into(),
            long_cold,
        ),
        ("the group's next rescue".into(), long_warm),
    ]));
    let _ = writeln!(doc);
    for ((name, c), t) in rows.iter().zip(&times) {
        let polls = c.get("ec2:DescribeSnapshots").copied().unwrap_or(0);
        let besides = c.values().sum::<u64>() - polls;
        let _ = writeln!(
            doc,
            "- {name}: {besides} calls besides its {polls} poll(s) (the first run's counts), released {} after the event.",
            t.show("s")
        );
    }

    let _ = writeln!(doc, "\n## Against the simplest correct alternative\n");
    let _ = writeln!(
        doc,
        "The same 3-volume instance, same local AWS, same run: one `CreateSnapshot` per volume, a `DescribeSnapshots` per \
         snapshot every 5 s until all are completed, then `CompleteLifecycleAction`. (It has no tags, no crash safety, no \
         duplicate detection, no heartbeat and no fail-safe.)\n"
    );
    doc.push_str(&table_of_calls(&[
        ("lifeboat, 3 volumes, polls only".into(), rows[1].1.clone()),
        (
            "lifeboat, 3 volumes, as deployed (the completion event too)".into(),
            deployed_calls.clone(),
        ),
        (
            "per-volume snapshots, per-snapshot polls".into(),
            naive_calls.clone(),
        ),
    ]));
    let _ = writeln!(
        doc,
        "\nTime from the termination event to the release, for snapshots that take {SNAPSHOT_SECONDS} s (median, and the \
         range of the runs): lifeboat on its polls alone {} (its pauses grow by half from 5 s, each jittered down to \
         half, to spare calls on long waits and spread a storm), lifeboat as deployed {} \
         (the completion event releases it within milliseconds of EBS's news; the waiting invocation then stops at its \
         next poll), the alternative {}. Polls grow with the volumes for the alternative ({} here) and stay one \
         per round for lifeboat.",
        times[1].show("s"),
        deployed_time.show("s"),
        naive_time.show("s"),
        naive_calls.get("ec2:DescribeSnapshots").copied().unwrap_or(0)
    );

    eprintln!("bench: release after the completion event");
    let mut delay = Spread::default();
    let mut event_calls = BTreeMap::new();
    for run in 0..RUNS {
        let (calls, delay_ms) = release_after_event().await;
        delay.push(delay_ms / 1000.0);
        if run == 0 {
            event_calls = calls;
        }
    }
    let _ = writeln!(doc, "\n## Release after the completion event\n");
    doc.push_str(&table_of_calls(&[(
        "completion event → CONTINUE".into(),
        event_calls.clone(),
    )]));
    let _ = writeln!(
        doc,
        "\n{} calls before `CompleteLifecycleAction` (the event's snapshots, read by id — they save every volume, so no \
         second look-up —, a fresh read of the attached volumes — the invariant is checked against EC2 at that moment —, \
         and the kept-first volumes given back their DeleteOnTermination), {} from delivery to the completion; the \
         state tag and the released event are written after. Fewer would be possible only by trusting the volumes attached when the set started \
         (a volume attached during the hold would be let go unsaved) or by leaving the kept volumes behind the \
         instance (billed, orphaned).",
        event_calls.iter().filter(|(op, _)| !matches!(**op, "ec2:CreateTags" | "autoscaling:CompleteLifecycleAction" | "events:PutEvents")).map(|(_, n)| n).sum::<u64>(),
        delay.show("ms")
    );

    eprintln!("bench: the sweep's reads");
    let mut sweep_rows = Vec::new();
    for n in [10, 100, 500] {
        sweep_rows.push((
            format!("sweep over {n} rescues in flight"),
            sweep_cost(n).await,
        ));
    }
    let _ = writeln!(doc, "\n## The sweep\n");
    let _ = writeln!(
        doc,
        "One sweep with N rescues in flight (snapshots still running), after a first sweep filled the function's hook cache. \
         Its reads are one paginated `DescribeSnapshots` (1,000 per page) and one paginated `DescribeAutoScalingGroups`; \
         a heartbeat (one call per rescue, which AWS offers no batch for) is sent only for a hold that could lapse before the sweep after next, so these freshly held rescues need none.\n"
    );
    doc.push_str(&table_of_calls(&sweep_rows));

    eprintln!("bench: aftercare");
    let _ = writeln!(doc, "\n## Aftercare: retention and copies\n");
    let _ = writeln!(
        doc,
        "One hourly aftercare run over N released sets of 3 volumes each, all 31 days old, retention deleting after 30 days \
         and keeping each group's newest 3, a copy Region configured. Its reads: the released snapshots (one paginated \
         `DescribeSnapshots`), the group's hook (one `DescribeLifecycleHooks`, none while the function's 5-minute hook cache holds it, as in the second row), the moves between tiers under way (one \
         `DescribeSnapshotTierStatus`). Then one call per snapshot it deletes (EC2 has no batch delete), one expiry event \
         per set, and the copies of the sets it keeps: one `CopySnapshot` and one `CreateTags` (its record) per snapshot, \
         at most 20 pending into the copy Region. Its time is the account's budget: lifeboat paces its mutating calls to its \
         share (`LIFEBOAT_API_SHARE_PERCENT`, 50 %) of EC2's bucket (50 calls, 5 a second), so past the first 25 \
         deletions it deletes about 2.5 snapshots a second — `RetentionMaxChanges` (200 by default) bounds a run to about \
         a minute and a half, far inside Lambda's 15.\n"
    );
    let _ = writeln!(doc, "| released sets | sets deleted | copies started | AWS calls | of which reads | time of the run |\n|---|---|---|---|---|---|");
    for n in [10, 100] {
        let (made, took, deleted, copies) = aftercare_cost(n).await;
        let total: u64 = made.values().sum();
        let reads: u64 = made
            .iter()
            .filter(|(op, _)| op.contains(":Describe"))
            .map(|(_, c)| c)
            .sum();
        let _ = writeln!(
            doc,
            "| {n} | {deleted} | {copies} | {total} | {reads} | {:.1} s |",
            took.as_secs_f64()
        );
    }

    eprintln!("bench: storms");
    let mut storm_rows = Vec::new();
    let _ = writeln!(doc, "\n## Storms\n");
    let _ = writeln!(
        doc,
        "N instances × 3 volumes terminated at once (the group scales in to zero), snapshots taking 3 s, no injected \
         faults beyond the local AWS's default lost responses, \
         production settings, 32 concurrent invocations sharing one process (peak RSS is the benchmark process's, \
         local AWS clients and all), every event (terminations and snapshot completions) delivered as it comes. The \
         account's budget is the scale benchmark's subject (below): here the local AWS does not throttle and the one \
         process may use every bucket whole (`LIFEBOAT_API_SHARE_PERCENT=100`, `LIFEBOAT_CONCURRENCY=1`), so the figures \
         are lifeboat's calls and the local AWS's pace.\n"
    );
    let _ = writeln!(doc, "| instances | wall time to the last release (median, range) | AWS calls needed | calls per rescue | requests repeated (lost responses) | peak RSS of the process |\n|---|---|---|---|---|---|");
    for n in [10, 100, 500] {
        let mut wall = Spread::default();
        let mut first = None;
        for _ in 0..3 {
            let (elapsed, c, total, repeats) = storm(n).await;
            wall.push(elapsed.as_secs_f64());
            first.get_or_insert((c, total, repeats));
        }
        let (c, total, repeats) = first.unwrap_or_default();
        let _ = writeln!(
            doc,
            "| {n} | {} | {total} | {:.1} | {repeats} | {} MiB |",
            wall.show("s"),
            total as f64 / n as f64,
            peak_rss_kib("self") / 1024
        );
        storm_rows.push((format!("{n} instances, per rescue ×{n} (first run)"), c));
    }
    let _ = writeln!(doc, "\nBy operation:\n");
    doc.push_str(&table_of_calls(&storm_rows));

    eprintln!("bench: the release Lambda binary");
    let (cold, peak_rescue, peak_sweep) = lambda_binary(&binary).await;
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let arm64 = root.join(".aws-sam/build/Function/bootstrap");
    let _ = writeln!(doc, "\n## The Lambda binary\n");
    let _ = writeln!(doc, "| figure | value |\n|---|---|");
    let _ = writeln!(doc, "| cold start: from `exec` of the binary to its first request for work from the runtime API | {} |", cold.show("ms"));
    let _ = writeln!(
        doc,
        "| peak RSS after a rescue (3 volumes) | {:.1} MiB |",
        peak_rescue as f64 / 1024.0
    );
    let _ = writeln!(
        doc,
        "| peak RSS after a rescue and a sweep | {:.1} MiB |",
        peak_sweep as f64 / 1024.0
    );
    let _ = writeln!(
        doc,
        "| release binary, x86_64, stripped | {:.1} MB |",
        size as f64 / 1e6
    );
    if let Ok(meta) = std::fs::metadata(&arm64) {
        let _ = writeln!(
            doc,
            "| release binary, arm64 (`sam build`), stripped | {:.1} MB |",
            meta.len() as f64 / 1e6
        );
    }
    let _ = writeln!(
        doc,
        "\nThe binary runs under a minimal runtime API the benchmark serves on 127.0.0.1; the function talks to the local \
         AWS over HTTP. The release profile (Cargo.toml) optimises for size (`opt-level = \"s\"`, fat LTO, 16 codegen \
         units (LTO merges them anyway; 16 keeps the build parallel), symbols stripped, `panic = \"abort\"` as cargo-lambda sets it): the function waits on AWS, so size and \
         start-up matter more than instruction speed. TLS is rustls with ring.\n"
    );
    let out = root.join("docs/PERFORMANCE.md");
    // The scale benchmark's part (`scripts/bench scale`, between its markers) stays as it is.
    let previous = std::fs::read_to_string(&out).unwrap_or_default();
    if let Some(begin) = previous.find("<!-- scale benchmark: begin -->") {
        let _ = writeln!(doc);
        doc.push_str(&previous[begin..]);
    }
    std::fs::write(&out, &doc).expect("docs/PERFORMANCE.md");
    println!("{doc}");
    eprintln!("bench: wrote {}", out.display());
}
