//! The decision: given the facts of one rescue at one moment, what lifeboat does next. This is
//! the only place that chooses between CONTINUE (release), ABANDON (fail safe), taking the
//! snapshot set, another attempt and waiting; it does no I/O and is tested as a table.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::aws::SnapshotState;
use crate::ids::VolumeId;

/// Time to spare after the next sweep is due: the schedule's jitter and the sweep's own run.
pub const HOLD_SLACK: Duration = Duration::from_secs(60);
/// The shortest heartbeat timeout AWS allows; assumed when the hook's own is unknown.
pub const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much hold a rescue left to the sweep must have left: until the sweep after next (one
/// sweep may be missed or late), with slack — or, when the hook's heartbeat timeout is too
/// short for that, until the next sweep.
pub fn renewal_margin(heartbeat_timeout: Duration, sweep_interval: Duration) -> Duration {
    let two_sweeps = sweep_interval * 2 + HOLD_SLACK;
    if heartbeat_timeout > two_sweeps {
        two_sweeps
    } else {
        sweep_interval + HOLD_SLACK
    }
}

/// A renewal is worth recording in the rescue's tags when it spares the next sweep a heartbeat:
/// the hold it gives outlasts the next sweep's margin.
pub fn renewal_worth_recording(heartbeat_timeout: Duration, sweep_interval: Duration) -> bool {
    heartbeat_timeout >= renewal_margin(heartbeat_timeout, sweep_interval) + sweep_interval
}

/// One volume the rescue must save, and the states of the snapshots taken of it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeProgress {
    pub volume_id: VolumeId,
    pub attempts: Vec<SnapshotState>,
}

impl VolumeProgress {
    fn saved(&self) -> bool {
        self.attempts.contains(&SnapshotState::Completed)
    }

    /// A snapshot is still running (or in a state EC2 may still finish).
    fn in_flight(&self) -> bool {
        self.attempts
            .iter()
            .any(|s| matches!(s, SnapshotState::Pending | SnapshotState::Other))
    }

    /// No snapshot is running or done: every attempt failed, or none was made.
    fn needs_attempt(&self) -> bool {
        !self.saved() && !self.in_flight()
    }

    fn failed_attempts(&self) -> u32 {
        self.attempts
            .iter()
            .filter(|s| **s == SnapshotState::Error)
            .count() as u32
    }
}

/// How the hook's hold on the instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// When the hold was last renewed (the action's start, or lifeboat's last heartbeat);
    /// `None` when unknown.
    pub renewed_at: Option<DateTime<Utc>>,
    /// The hook's heartbeat timeout; `None` when unknown.
    pub heartbeat_timeout: Option<Duration>,
}

/// Everything the decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// Every volume that must have a completed snapshot before CONTINUE.
    pub volumes: Vec<VolumeProgress>,
    pub max_attempts: u32,
    /// The instance is shutting down, terminated or unknown to EC2.
    pub instance_gone: bool,
    /// EC2 refused to snapshot for a reason waiting fixes (throttling, a volume with too many
    /// snapshots in flight): wait, within the hold, instead of trying again at once.
    pub blocked: bool,
    /// EC2 refused to snapshot for a reason no wait fixes (a quota, a denial, a bad
    /// parameter): its words.
    pub refused: Option<String>,
    /// Fail safe from this moment: the hook's global timeout minus the margin.
    pub fail_safe_at: Option<DateTime<Utc>>,
    pub hold: Hold,
    /// This invocation may wait inline until then.
    pub inline_until: DateTime<Utc>,
    /// The pause before the next check if lifeboat waits inline.
    pub next_pause: Duration,
    /// How soon the sweep comes back to a rescue left waiting.
    pub sweep_interval: Duration,
}

/// Why a rescue fails safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailSafeReason {
    /// The instance is gone (or going) before every volume was saved.
    InstanceGone,
    /// These volumes' snapshots failed `max_attempts` times.
    AttemptsExhausted(Vec<VolumeId>),
    /// The hook's global timeout is near.
    OutOfTime { fail_safe_at: DateTime<Utc> },
    /// The hook's heartbeat timeout is too short to hold the instance until the next sweep.
    CannotHold { heartbeat_timeout: Duration },
    /// EC2 refused the snapshots for a reason no wait fixes; its words.
    Refused(String),
}

impl FailSafeReason {
    /// A short name for the metric's `Reason` dimension.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InstanceGone => "InstanceGone",
            Self::AttemptsExhausted(_) => "AttemptsExhausted",
            Self::OutOfTime { .. } => "OutOfTime",
            Self::CannotHold { .. } => "CannotHold",
            Self::Refused(_) => "SnapshotRefused",
        }
    }
}

impl std::fmt::Display for FailSafeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InstanceGone => write!(
                f,
                "the instance is gone before every volume was snapshotted"
            ),
            Self::AttemptsExhausted(volumes) => {
                let names: Vec<&str> = volumes.iter().map(VolumeId::as_str).collect();
                write!(f, "snapshots of {} failed every attempt", names.join(" "))
            }
            Self::OutOfTime { fail_safe_at } => {
                write!(
                    f,
                    "the hook's global timeout is near (fail-safe point {fail_safe_at})"
                )
            }
            Self::CannotHold { heartbeat_timeout } => write!(
                f,
                "the hook's heartbeat timeout ({} s) cannot hold the instance until the next sweep",
                heartbeat_timeout.as_secs()
            ),
            Self::Refused(why) => write!(f, "EC2 refused the snapshots: {why}"),
        }
    }
}

/// While waiting: renew the hold first or not, then pause and check again, or return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub heartbeat: bool,
    /// `Some`: pause this long and check again. `None`: return; the completion event or the
    /// sweep resumes the rescue.
    pub pause: Option<Duration>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every volume has a completed snapshot: complete the action with CONTINUE.
    Release,
    /// No volume has a snapshot running or done: take the crash-consistent set of all of them
    /// (`CreateSnapshots`), the first time and after a whole set failed.
    TakeSet,
    /// Snapshot these volumes again, one by one.
    Retry(Vec<VolumeId>),
    /// Keep every volume without a completed snapshot, then complete the action with ABANDON.
    FailSafe(FailSafeReason),
    Wait(Wait),
}

/// The decision. Release comes first: once every volume is saved nothing else matters. Never
/// anything else than `Release` lets the instance go with CONTINUE.
pub fn decide(facts: &Facts) -> Decision {
    if facts.instance_gone && facts.volumes.is_empty() {
        // Gone before lifeboat saw a single volume: nothing is known to be saved.
        return Decision::FailSafe(FailSafeReason::InstanceGone);
    }
    if facts.volumes.iter().all(VolumeProgress::saved) {
        return Decision::Release;
    }
    if facts.instance_gone {
        return Decision::FailSafe(FailSafeReason::InstanceGone);
    }
    if let Some(why) = &facts.refused {
        return Decision::FailSafe(FailSafeReason::Refused(why.clone()));
    }
    let exhausted: Vec<VolumeId> = facts
        .volumes
        .iter()
        .filter(|v| v.needs_attempt() && v.failed_attempts() >= facts.max_attempts)
        .map(|v| v.volume_id.clone())
        .collect();
    if !exhausted.is_empty() {
        return Decision::FailSafe(FailSafeReason::AttemptsExhausted(exhausted));
    }
    if let Some(fail_safe_at) = facts.fail_safe_at {
        if facts.now >= fail_safe_at {
            return Decision::FailSafe(FailSafeReason::OutOfTime { fail_safe_at });
        }
    }
    let retry: Vec<VolumeId> = facts
        .volumes
        .iter()
        .filter(|v| v.needs_attempt())
        .map(|v| v.volume_id.clone())
        .collect();
    if !retry.is_empty() && !facts.blocked {
        if retry.len() == facts.volumes.len() {
            return Decision::TakeSet;
        }
        return Decision::Retry(retry);
    }
    wait(facts)
}

fn wait(facts: &Facts) -> Decision {
    let timeout = facts
        .hold
        .heartbeat_timeout
        .unwrap_or(MIN_HEARTBEAT_TIMEOUT);
    let elapsed_by = |moment: DateTime<Utc>| -> Option<Duration> {
        facts
            .hold
            .renewed_at
            .map(|renewed| (moment - renewed).to_std().unwrap_or(Duration::ZERO))
    };
    let pause_ends =
        facts.now + chrono::Duration::from_std(facts.next_pause).unwrap_or(chrono::TimeDelta::MAX);
    if pause_ends <= facts.inline_until {
        // Renew when more than half the timeout would have passed by the end of the pause.
        let heartbeat = elapsed_by(pause_ends).is_none_or(|elapsed| elapsed >= timeout / 2);
        return Decision::Wait(Wait {
            heartbeat,
            pause: Some(facts.next_pause),
        });
    }
    // Leaving: the hold must last until the sweep is back.
    let needed = facts.sweep_interval + HOLD_SLACK;
    if let Some(known) = facts.hold.heartbeat_timeout {
        if known < needed {
            return Decision::FailSafe(FailSafeReason::CannotHold {
                heartbeat_timeout: known,
            });
        }
    }
    let margin = renewal_margin(timeout, facts.sweep_interval);
    let renewed_recently = elapsed_by(facts.now).is_some_and(|elapsed| elapsed + margin <= timeout);
    Decision::Wait(Wait {
        heartbeat: facts.hold.heartbeat_timeout.is_none() || !renewed_recently,
        pause: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use SnapshotState::{Completed as C, Error as E, Other as O, Pending as P};

    fn vol(n: u8) -> VolumeId {
        VolumeId::parse(&format!("vol-0000000{n}")).unwrap()
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// A rescue at t=1000 s, started at t=0, hook heartbeat 900 s renewed at t=900, global
    /// fail-safe point far away, inline until t=1100, pause 10 s, sweep every 300 s.
    fn facts(volumes: &[&[SnapshotState]]) -> Facts {
        Facts {
            now: t(1000),
            volumes: volumes
                .iter()
                .enumerate()
                .map(|(i, attempts)| VolumeProgress {
                    volume_id: vol(i as u8 + 1),
                    attempts: attempts.to_vec(),
                })
                .collect(),
            max_attempts: 3,
            instance_gone: false,
            blocked: false,
            refused: None,
            fail_safe_at: Some(t(100_000)),
            hold: Hold {
                renewed_at: Some(t(900)),
                heartbeat_timeout: Some(Duration::from_secs(900)),
            },
            inline_until: t(1100),
            next_pause: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(300),
        }
    }

    fn pause(heartbeat: bool) -> Decision {
        Decision::Wait(Wait {
            heartbeat,
            pause: Some(Duration::from_secs(10)),
        })
    }

    fn leave(heartbeat: bool) -> Decision {
        Decision::Wait(Wait {
            heartbeat,
            pause: None,
        })
    }

    #[test]
    fn the_decision_table() {
        let gone = |mut f: Facts| {
            f.instance_gone = true;
            f
        };
        let late = |mut f: Facts| {
            f.fail_safe_at = Some(t(999));
            f
        };
        let no_inline_time = |mut f: Facts| {
            f.inline_until = t(1005);
            f
        };
        let stale_hold = |mut f: Facts| {
            f.hold.renewed_at = Some(t(100));
            f
        };
        let unknown_hook = |mut f: Facts| {
            f.hold.heartbeat_timeout = None;
            f
        };
        let short_hook = |mut f: Facts| {
            f.hold.heartbeat_timeout = Some(Duration::from_secs(300));
            f
        };
        let blocked = |mut f: Facts| {
            f.blocked = true;
            f
        };
        let refused = |mut f: Facts| {
            f.refused = Some("SnapshotLimitExceeded: quota reached".into());
            f
        };
        let one_attempt = |mut f: Facts| {
            f.max_attempts = 1;
            f
        };
        let cases: Vec<(&str, Facts, Decision)> = vec![
            (
                "all completed",
                facts(&[&[C], &[C], &[C]]),
                Decision::Release,
            ),
            (
                "completed after a failed attempt",
                facts(&[&[E, C], &[C]]),
                Decision::Release,
            ),
            (
                "completed even if the instance is gone",
                gone(facts(&[&[C]])),
                Decision::Release,
            ),
            (
                "completed even if out of time",
                late(facts(&[&[C]])),
                Decision::Release,
            ),
            ("no EBS volumes at all", facts(&[]), Decision::Release),
            (
                "instance gone before any volume was seen",
                gone(facts(&[])),
                Decision::FailSafe(FailSafeReason::InstanceGone),
            ),
            ("one pending", facts(&[&[C], &[P]]), pause(false)),
            (
                "one in an unknown state",
                facts(&[&[C], &[O]]),
                pause(false),
            ),
            (
                "pending with a stale hold",
                stale_hold(facts(&[&[P]])),
                pause(true),
            ),
            (
                "pending with the hook unknown",
                unknown_hook(facts(&[&[P]])),
                pause(true),
            ),
            (
                "pending, no inline time left",
                no_inline_time(facts(&[&[P]])),
                leave(false),
            ),
            (
                "pending, no inline time, stale hold",
                no_inline_time(stale_hold(facts(&[&[P]]))),
                leave(true),
            ),
            (
                "pending, no inline time, hook unknown",
                no_inline_time(unknown_hook(facts(&[&[P]]))),
                leave(true),
            ),
            (
                "pending, no inline time, hook shorter than a sweep",
                no_inline_time(short_hook(facts(&[&[P]]))),
                Decision::FailSafe(FailSafeReason::CannotHold {
                    heartbeat_timeout: Duration::from_secs(300),
                }),
            ),
            (
                "first attempt failed",
                facts(&[&[C], &[E]]),
                Decision::Retry(vec![vol(2)]),
            ),
            (
                "the whole set failed: a new set",
                facts(&[&[E, E], &[E]]),
                Decision::TakeSet,
            ),
            (
                "no snapshot yet: the set",
                facts(&[&[], &[]]),
                Decision::TakeSet,
            ),
            (
                "no set yet, EC2 busy: wait within the hold",
                blocked(facts(&[&[], &[]])),
                pause(false),
            ),
            (
                "no set yet, stale hold: renew it while waiting",
                blocked(stale_hold(facts(&[&[], &[]]))),
                pause(true),
            ),
            (
                "refused for a reason no wait fixes",
                refused(facts(&[&[], &[]])),
                Decision::FailSafe(FailSafeReason::Refused(
                    "SnapshotLimitExceeded: quota reached".into(),
                )),
            ),
            (
                "refused a retry while another volume runs",
                refused(facts(&[&[P], &[E]])),
                Decision::FailSafe(FailSafeReason::Refused(
                    "SnapshotLimitExceeded: quota reached".into(),
                )),
            ),
            (
                "refused, but every volume is saved already",
                refused(facts(&[&[C], &[E, C]])),
                Decision::Release,
            ),
            (
                "a volume never snapshotted",
                facts(&[&[C], &[]]),
                Decision::Retry(vec![vol(2)]),
            ),
            (
                "attempts exhausted",
                facts(&[&[C], &[E, E, E]]),
                Decision::FailSafe(FailSafeReason::AttemptsExhausted(vec![vol(2)])),
            ),
            (
                "exhausted while another is pending",
                facts(&[&[P], &[E, E, E]]),
                Decision::FailSafe(FailSafeReason::AttemptsExhausted(vec![vol(2)])),
            ),
            (
                "one attempt allowed, it failed",
                one_attempt(facts(&[&[E]])),
                Decision::FailSafe(FailSafeReason::AttemptsExhausted(vec![vol(1)])),
            ),
            (
                "failed attempt but a retry is pending",
                facts(&[&[E, E, E, P]]),
                pause(false),
            ),
            (
                "a retry blocked by EC2's snapshot limit waits",
                blocked(facts(&[&[C], &[E]])),
                pause(false),
            ),
            (
                "instance gone while pending",
                gone(facts(&[&[P]])),
                Decision::FailSafe(FailSafeReason::InstanceGone),
            ),
            (
                "out of time while pending",
                late(facts(&[&[C], &[P]])),
                Decision::FailSafe(FailSafeReason::OutOfTime {
                    fail_safe_at: t(999),
                }),
            ),
            (
                "out of time beats a new set",
                late(facts(&[&[E]])),
                Decision::FailSafe(FailSafeReason::OutOfTime {
                    fail_safe_at: t(999),
                }),
            ),
        ];
        for (name, facts, expected) in cases {
            assert_eq!(decide(&facts), expected, "{name}");
        }
    }

    #[test]
    fn nothing_but_completed_snapshots_of_every_volume_releases() {
        // Every combination of up to three attempts on two volumes: Release exactly when both
        // volumes have a completed attempt.
        let states = [P, C, E, O];
        let mut histories: Vec<Vec<SnapshotState>> = vec![vec![]];
        for len in 1..=3 {
            let mut next = Vec::new();
            for h in histories.iter().filter(|h| h.len() == len - 1) {
                for s in states {
                    let mut h = h.clone();
                    h.push(s);
                    next.push(h);
                }
            }
            histories.extend(next);
        }
        for a in &histories {
            for b in &histories {
                for gone in [false, true] {
                    let mut f = facts(&[a, b]);
                    f.instance_gone = gone;
                    let released = decide(&f) == Decision::Release;
                    assert_eq!(released, a.contains(&C) && b.contains(&C), "{a:?} {b:?}");
                }
            }
        }
    }
}
