//! Lifeboat's share of the account's API budget. EC2 throttles every caller of an account with a
//! token bucket per API ("Request throttling for the Amazon EC2 API", Amazon EC2 Developer
//! Guide), Auto Scaling with one bucket for all of its API ("Why are my Auto Scaling API calls
//! throttled?", AWS knowledge center; AWS publishes no figures: the sizes here are the same
//! assumption as the local AWS's, `localaws/throttle.py`). The same buckets serve every other
//! tool, pipeline and console user of the account, so a mass termination must not drain them.
//!
//! Each execution environment paces its own calls: at most `share × refill ÷ concurrency` per
//! second from each bucket, with a burst of `share × capacity ÷ concurrency` (at least one). With
//! at most `concurrency` environments at once (the function's reserved concurrency), lifeboat as a
//! whole draws at most `share` of every bucket, bursts included, without any state shared
//! between environments. A call that has to wait for its turn marks the environment congested,
//! which is how a rescue knows the account is busy (it then leaves the waiting to the completion
//! event and the sweep instead of holding an invocation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_smithy_async::rt::sleep::{AsyncSleep, SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};

/// A bucket's size: (capacity, refill per second).
type Size = (f64, f64);

/// EC2's sizes for the calls lifeboat makes (the developer guide's tables).
fn ec2_size(action: &str) -> Size {
    match action {
        "CreateSnapshot" | "CreateSnapshots" => (100.0, 5.0),
        "CreateTags" => (100.0, 10.0),
        // Filtered or paginated non-mutating actions (lifeboat always filters or pages).
        a if a.starts_with("Describe") => (100.0, 20.0),
        // ModifyInstanceAttribute and every other mutating action.
        _ => (50.0, 5.0),
    }
}

/// The assumption for Auto Scaling's one shared bucket.
const AUTOSCALING_SIZE: Size = (50.0, 5.0);

/// Which bucket a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Ec2(&'static str),
    AutoScaling,
}

impl Api {
    fn size(self) -> Size {
        match self {
            Self::Ec2(action) => ec2_size(action),
            Self::AutoScaling => AUTOSCALING_SIZE,
        }
    }
}

/// How much of the account's budget lifeboat may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetShare {
    /// The share of every bucket lifeboat as a whole may draw (0 < share ≤ 1).
    pub share: f64,
    /// At most this many environments run at once: the function's reserved concurrency.
    pub concurrency: u32,
}

/// One bucket's pacing, as a generic cell rate: the theoretical time of the next call.
#[derive(Debug)]
struct Pace {
    next: SystemTime,
    interval: Duration,
    tolerance: Duration,
}

/// An environment's pacing of its AWS calls. `unlimited` for the operator's commands and for
/// tests of the adapters.
#[derive(Debug)]
pub struct Budget {
    share: Option<BudgetShare>,
    paces: Mutex<HashMap<Api, Pace>>,
    congested_until: Mutex<Option<SystemTime>>,
    time: SharedTimeSource,
    sleep: SharedAsyncSleep,
}

/// How long one wait for a turn counts as congestion.
const CONGESTION_MEMORY: Duration = Duration::from_secs(60);

impl Budget {
    pub fn new(share: BudgetShare, time: SharedTimeSource, sleep: SharedAsyncSleep) -> Self {
        Self {
            share: Some(share),
            paces: Mutex::new(HashMap::new()),
            congested_until: Mutex::new(None),
            time,
            sleep,
        }
    }

    /// No pacing at all.
    pub fn unlimited() -> Self {
        Self {
            share: None,
            paces: Mutex::new(HashMap::new()),
            congested_until: Mutex::new(None),
            time: SharedTimeSource::new(SystemTimeSource::new()),
            sleep: SharedAsyncSleep::new(TokioSleep::new()),
        }
    }

    /// The calls per second and the burst this environment may make on `api`.
    pub fn allowance(&self, api: Api) -> Option<(f64, f64)> {
        let share = self.share?;
        let (capacity, refill) = api.size();
        let environments = f64::from(share.concurrency.max(1));
        Some((
            share.share * refill / environments,
            (share.share * capacity / environments).max(1.0),
        ))
    }

    /// Waits for this environment's turn on `api`'s bucket, then lets the call go.
    pub async fn take(&self, api: Api) {
        let Some((rate, burst)) = self.allowance(api) else {
            return;
        };
        let now = self.time.now();
        let wait = {
            let Ok(mut paces) = self.paces.lock() else {
                return;
            };
            let interval = Duration::from_secs_f64(1.0 / rate);
            let pace = paces.entry(api).or_insert_with(|| Pace {
                next: now,
                interval,
                tolerance: interval.mul_f64(burst - 1.0),
            });
            let next = pace.next.max(now);
            let allowed_at = next.checked_sub(pace.tolerance).unwrap_or(now);
            pace.next = next + pace.interval;
            allowed_at.duration_since(now).unwrap_or(Duration::ZERO)
        };
        if wait > Duration::ZERO {
            if let Ok(mut until) = self.congested_until.lock() {
                *until = Some(now + wait + CONGESTION_MEMORY);
            }
            self.sleep.sleep(wait).await;
        }
    }

    /// A call of this environment had to wait for its turn within the last minute.
    pub fn congested(&self) -> bool {
        let now = self.time.now();
        self.congested_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_async::test_util::{instant_time_and_sleep, ManualTimeSource};
    use aws_smithy_async::time::TimeSource;

    fn paced(share: f64, concurrency: u32) -> (Budget, ManualTimeSource) {
        let (time, sleep) = instant_time_and_sleep(SystemTime::UNIX_EPOCH);
        let budget = Budget::new(
            BudgetShare { share, concurrency },
            SharedTimeSource::new(time.clone()),
            SharedAsyncSleep::new(sleep),
        );
        (budget, time)
    }

    #[test]
    fn each_environment_gets_its_share_of_every_bucket() {
        let (budget, _) = paced(0.5, 10);
        // CreateSnapshots: 100 tokens, 5 per second; half of it across ten environments.
        assert_eq!(
            budget.allowance(Api::Ec2("CreateSnapshots")),
            Some((0.25, 5.0))
        );
        assert_eq!(
            budget.allowance(Api::Ec2("ModifyInstanceAttribute")),
            Some((0.25, 2.5))
        );
        assert_eq!(
            budget.allowance(Api::Ec2("DescribeSnapshots")),
            Some((1.0, 5.0))
        );
        assert_eq!(budget.allowance(Api::AutoScaling), Some((0.25, 2.5)));
        // The burst is never below one call.
        let (small, _) = paced(0.5, 100);
        assert_eq!(small.allowance(Api::AutoScaling).unwrap().1, 1.0);
        assert_eq!(Budget::unlimited().allowance(Api::AutoScaling), None);
    }

    #[tokio::test]
    async fn the_burst_goes_at_once_then_calls_are_paced_and_the_environment_is_congested() {
        // GIVEN an environment allowed 0.25 CreateSnapshots per second, 5 at once
        let (budget, time) = paced(0.5, 10);
        let api = Api::Ec2("CreateSnapshots");
        let start = time.now();
        // WHEN it makes 5 calls THEN they go at once, uncongested
        for _ in 0..5 {
            budget.take(api).await;
        }
        assert_eq!(time.now(), start);
        assert!(!budget.congested());
        // WHEN it makes 3 more THEN each waits its 4 s turn, and the environment is congested
        for _ in 0..3 {
            budget.take(api).await;
        }
        assert_eq!(
            time.now().duration_since(start).unwrap(),
            Duration::from_secs(12)
        );
        assert!(budget.congested());
        // …and a minute after its last wait it is not any more
        time.advance(Duration::from_secs(61));
        assert!(!budget.congested());
        // Another bucket is not paced by this one's calls.
        let before = time.now();
        budget.take(Api::AutoScaling).await;
        assert_eq!(time.now(), before);
    }

    #[tokio::test]
    async fn an_unlimited_budget_never_waits() {
        let budget = Budget::unlimited();
        for _ in 0..1000 {
            budget.take(Api::AutoScaling).await;
        }
        assert!(!budget.congested());
    }
}
