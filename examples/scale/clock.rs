//! The benchmark's emulated time: the local AWS's clock runs `scale` times as fast as real time
//! (`POST /_localaws/clock`), and so does everything on lifeboat's side — its clock, its pauses,
//! the AWS SDK's retry backoff and timeouts (a scaled `AsyncSleep`), Lambda's deadlines and
//! queue. An hour of a storm takes six minutes at a scale of ten; every figure in emulated
//! seconds is what AWS would see.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
use aws_smithy_async::time::TimeSource;
use chrono::{DateTime, Utc};

use lifeboat::clock::Clock;

/// Emulated time: `origin` (emulated, seconds since the epoch) at `real_origin`, then `scale`
/// emulated seconds per real second.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: f64,
    real_origin: Instant,
    scale: f64,
}

impl ScaledClock {
    pub fn new(origin: f64, scale: f64) -> Self {
        Self {
            inner: Arc::new(Inner {
                origin,
                real_origin: Instant::now(),
                scale,
            }),
        }
    }

    /// Emulated seconds since the epoch.
    pub fn seconds(&self) -> f64 {
        self.inner.origin + self.inner.real_origin.elapsed().as_secs_f64() * self.inner.scale
    }

    /// The real time that `emulated` takes.
    pub fn real(&self, emulated: Duration) -> Duration {
        emulated.div_f64(self.inner.scale)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let seconds = self.seconds();
        DateTime::from_timestamp(seconds.floor() as i64, (seconds.fract() * 1e9) as u32)
            .unwrap_or_default()
    }

    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep(self.real(duration))
    }
}

/// The SDK's sleeps (retry backoff, timeouts) on the emulated clock.
#[derive(Debug, Clone)]
pub struct ScaledSleep(pub ScaledClock);

impl AsyncSleep for ScaledSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(tokio::time::sleep(self.0.real(duration)))
    }
}

/// The SDK's (and lifeboat's budget's) idea of now, on the emulated clock.
#[derive(Debug, Clone)]
pub struct ScaledTime(pub ScaledClock);

impl TimeSource for ScaledTime {
    fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs_f64(self.0.seconds())
    }
}
