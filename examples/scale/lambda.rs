//! Lambda as it runs lifeboat at scale, in one process, on the benchmark's emulated clock:
//! reserved concurrency (at most that many invocations at once, each in an execution
//! environment of its own that Lambda keeps warm and reuses), the function's timeout, and the
//! asynchronous event queue as "How Lambda handles errors and retries with asynchronous
//! invocation" (AWS Lambda Developer Guide) describes it:
//! - an event that finds no free concurrency is throttled and goes back to the queue, tried again
//!   after 1 s, then exponentially longer, at most 5 minutes apart;
//! - a function error (a timeout included) is retried twice, one minute and then two minutes
//!   later (the template's `MaximumRetryAttempts: 2`);
//! - an event older than `MaximumEventAgeInSeconds` is dropped (to the failed-events queue);
//! - the queue is eventually consistent: an event may be delivered twice (the harsher choice:
//!   1 % of them are).
//!
//! Billing follows "AWS Lambda pricing": each invocation's duration rounded up to the
//! millisecond, times the memory (GB-seconds), plus the requests.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use lifeboat::aws::client::AwsCloud;
use lifeboat::clock::Clock;
use lifeboat::handler::Lifeboat;

use super::clock::ScaledClock;

/// How the function is deployed (template.yaml).
#[derive(Debug, Clone)]
pub struct Deployment {
    pub reserved_concurrency: usize,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub max_event_age: Duration,
    pub max_retries: u32,
}

/// The longest pause between two tries of a throttled event.
const MAX_THROTTLE_BACKOFF: f64 = 300.0;
/// Share of the events the queue delivers twice.
const DUPLICATE_RATIO: f64 = 0.01;

struct Queued {
    at: f64,
    seq: u64,
    event: Value,
    received: f64,
    errors: u32,
    throttles: u32,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // A min-heap on the time an event is due.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.total_cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

/// What Lambda did, for the benchmark's figures.
#[derive(Debug, Default, Clone)]
pub struct LambdaStats {
    pub invocations: u64,
    pub throttled: u64,
    pub function_errors: u64,
    pub timeouts: u64,
    pub duplicates: u64,
    pub dropped_too_old: u64,
    pub dropped_retries_exhausted: u64,
    pub cold_starts: u64,
    pub peak_concurrency: usize,
    /// Billed milliseconds of every invocation, on the emulated clock.
    pub billed_ms: u64,
    /// The longest an event waited in the queue before an invocation took it (emulated s).
    pub longest_queue_wait: f64,
    /// What the invocations said: each rescue's outcome (and a fail-safe's reason), each error.
    pub said: std::collections::BTreeMap<String, u64>,
}

/// A short name for what an invocation said, to count alike ones together.
fn gist(text: &str) -> String {
    // Resource ids (`i-…`, `vol-…`, `snap-…`) and numbers differ from one rescue to the next.
    let words: Vec<String> = text
        .split(' ')
        .map(|word| {
            for prefix in ["i-", "vol-", "snap-"] {
                if let Some(rest) = word.strip_prefix(prefix) {
                    if rest.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
                        return format!("{prefix}…");
                    }
                }
            }
            word.chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect()
        })
        .collect();
    words.join(" ").chars().take(140).collect()
}

type Environment = Arc<Lifeboat<AwsCloud, ScaledClock>>;

/// One finished invocation.
struct Finished {
    environment: Option<Environment>,
    queued: Queued,
    outcome: Result<(), bool>,
    said: Vec<String>,
    billed_ms: u64,
}

/// Lambda, for one function.
pub struct Lambda {
    pub deployment: Deployment,
    clock: ScaledClock,
    make_environment: Box<dyn Fn() -> Environment>,
    queue: BinaryHeap<Queued>,
    idle: Vec<Environment>,
    busy: usize,
    seq: u64,
    rng: fastrand::Rng,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    pub stats: LambdaStats,
}

impl Lambda {
    pub fn new(
        deployment: Deployment,
        clock: ScaledClock,
        make_environment: Box<dyn Fn() -> Environment>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            deployment,
            clock,
            make_environment,
            queue: BinaryHeap::new(),
            idle: Vec::new(),
            busy: 0,
            seq: 0,
            rng: fastrand::Rng::with_seed(17),
            done_tx,
            done_rx,
            stats: LambdaStats::default(),
        }
    }

    fn now(&self) -> f64 {
        self.clock.seconds()
    }

    /// An asynchronous invocation (EventBridge's): the event joins the queue.
    pub fn invoke_async(&mut self, event: Value) {
        let now = self.now();
        let copies = if self.rng.f64() < DUPLICATE_RATIO {
            self.stats.duplicates += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.seq += 1;
            self.queue.push(Queued {
                at: now,
                seq: self.seq,
                event: event.clone(),
                received: now,
                errors: 0,
                throttles: 0,
            });
        }
    }

    /// Invocations in flight, and events waiting in the queue.
    pub fn busy(&self) -> usize {
        self.busy
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Collects the invocations that finished and starts those the queue has due, as far as
    /// the reserved concurrency allows; throttles the rest.
    pub fn step(&mut self) {
        while let Ok(finished) = self.done_rx.try_recv() {
            self.finish(finished);
        }
        let now = self.now();
        while self.queue.peek().is_some_and(|q| q.at <= now) {
            let Some(mut queued) = self.queue.pop() else {
                break;
            };
            if now - queued.received > self.deployment.max_event_age.as_secs_f64() {
                self.stats.dropped_too_old += 1;
                continue;
            }
            if self.busy >= self.deployment.reserved_concurrency {
                // Throttled: back to the queue, tried again exponentially later.
                self.stats.throttled += 1;
                let backoff =
                    (2f64.powi(queued.throttles.min(16) as i32)).min(MAX_THROTTLE_BACKOFF);
                queued.throttles += 1;
                queued.at = now + backoff * (0.5 + self.rng.f64() / 2.0);
                self.queue.push(queued);
                continue;
            }
            self.start(queued, now);
        }
    }

    fn start(&mut self, queued: Queued, now: f64) {
        let environment = match self.idle.pop() {
            Some(environment) => environment,
            None => {
                self.stats.cold_starts += 1;
                (self.make_environment)()
            }
        };
        self.busy += 1;
        self.stats.invocations += 1;
        self.stats.peak_concurrency = self.stats.peak_concurrency.max(self.busy);
        self.stats.longest_queue_wait = self.stats.longest_queue_wait.max(now - queued.received);
        let clock = self.clock.clone();
        let timeout = self.deployment.timeout;
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let started = clock.now();
            let deadline = started + chrono::Duration::from_std(timeout).unwrap_or_default();
            let run = environment.handle(queued.event.clone(), deadline);
            let mut said = Vec::new();
            let outcome = match tokio::time::timeout(clock.real(timeout), run).await {
                Ok(Ok(report)) => {
                    for rescue in &report.rescues {
                        said.push(match (&rescue.outcome, &rescue.reason) {
                            (outcome, Some(reason)) => gist(&format!("{outcome:?}: {reason}")),
                            (outcome, None) => format!("{outcome:?}"),
                        });
                    }
                    said.extend(
                        report
                            .errors
                            .iter()
                            .map(|e| gist(&format!("error in a sweep: {e}"))),
                    );
                    Ok(())
                }
                Ok(Err(err)) => {
                    said.push(gist(&format!("error: {err}")));
                    Err(false)
                }
                // Lambda stops the invocation at its timeout: a function error, and the
                // environment is not reused.
                Err(_) => Err(true),
            };
            let elapsed = (clock.now() - started).num_milliseconds().max(1) as u64;
            let _ = done.send(Finished {
                environment: outcome
                    .err()
                    .is_none_or(|timed_out| !timed_out)
                    .then_some(environment),
                queued,
                outcome,
                said,
                billed_ms: elapsed.min(timeout.as_millis() as u64),
            });
        });
    }

    fn finish(&mut self, finished: Finished) {
        self.busy -= 1;
        self.stats.billed_ms += finished.billed_ms;
        for said in finished.said {
            *self.stats.said.entry(said).or_default() += 1;
        }
        if let Some(environment) = finished.environment {
            self.idle.push(environment);
        }
        let Err(timed_out) = finished.outcome else {
            return;
        };
        self.stats.function_errors += 1;
        if timed_out {
            self.stats.timeouts += 1;
        }
        let mut queued = finished.queued;
        if queued.errors >= self.deployment.max_retries {
            self.stats.dropped_retries_exhausted += 1;
            return;
        }
        queued.errors += 1;
        // One minute before the first retry, two before the second.
        queued.at = self.now() + 60.0 * f64::from(queued.errors);
        self.queue.push(queued);
    }

    /// GB-seconds billed so far.
    pub fn gb_seconds(&self) -> f64 {
        self.stats.billed_ms as f64 / 1000.0 * f64::from(self.deployment.memory_mb) / 1024.0
    }
}
