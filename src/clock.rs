//! Time: what time it is and how to wait. The rescue asks its `Clock`, never the system, so
//! tests can run hours of waiting in no time.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Waits without blocking the runtime.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// The system's clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

/// A clock that only moves when somebody sleeps on it, or when a test moves it.
#[cfg(test)]
#[derive(Debug)]
pub struct FakeClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

#[cfg(test)]
impl FakeClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now: std::sync::Mutex::new(now),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        self.advance(duration);
        tokio::task::yield_now()
    }
}

#[cfg(test)]
impl Clock for std::sync::Arc<FakeClock> {
    fn now(&self) -> DateTime<Utc> {
        self.as_ref().now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        self.as_ref().sleep(duration)
    }
}
