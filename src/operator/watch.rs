//! `lifeboat watch`: the rescues in flight, live — each snapshot's progress, how long the
//! instance has been held, and when the hook's limits fall — redrawn in place on a terminal,
//! as plain lines (only what changed) otherwise; done when every rescue watched has ended.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::list::{rescued_sets, RescuedSet, SetResult};
use super::{aws_error, human, OperatorError};
use crate::aws::operator::{HookView, OperatorAws, RescueScope};
use crate::aws::SnapshotState;
use crate::ids::{GroupName, HookName, InstanceId};
use crate::tags;

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub instance: Option<InstanceId>,
    pub interval: Duration,
    /// Redraw in place with progress bars (a terminal) or print plain lines.
    pub terminal: bool,
}

/// A rescue in flight with its hook's limits.
#[derive(Debug, Clone)]
pub struct Watched {
    pub set: RescuedSet,
    pub hook: Option<HookView>,
}

impl Watched {
    fn held_since(&self) -> DateTime<Utc> {
        self.set.held_since.unwrap_or(self.set.started_at)
    }

    /// When the hook's global timeout ends the action whatever lifeboat does.
    pub fn global_limit(&self) -> Option<DateTime<Utc>> {
        let hook = self.hook.as_ref()?;
        Some(self.held_since() + chrono::Duration::from_std(hook.global_timeout).ok()?)
    }

    /// The lines that describe this rescue at `now`: a heading, then one per device.
    pub fn lines(&self, now: DateTime<Utc>, bars: bool) -> Vec<String> {
        let set = &self.set;
        let limits = match (&self.hook, self.global_limit()) {
            (Some(hook), Some(limit)) => format!(
                "heartbeat timeout {} (lifeboat renews it), global limit {} (in {})",
                human(chrono::Duration::seconds(
                    hook.heartbeat_timeout.as_secs() as i64
                )),
                tags::timestamp(limit),
                human(limit - now)
            ),
            _ => "hook not found: the action is no longer held".into(),
        };
        let mut lines = vec![format!(
            "{} ({}, hook {}): {}, held {}; {}",
            set.instance_id,
            set.group,
            set.hook,
            set.result.as_str(),
            human(now - self.held_since()),
            limits
        )];
        for v in &set.volumes {
            let percent = v
                .progress
                .as_deref()
                .and_then(|p| p.trim_end_matches('%').parse::<u32>().ok())
                .unwrap_or(0)
                .min(100);
            let state = match v.state {
                Some(SnapshotState::Completed) => "completed".to_owned(),
                Some(SnapshotState::Pending) => format!("pending {percent}%"),
                Some(SnapshotState::Error) => "error".into(),
                Some(SnapshotState::Other) => "other".into(),
                None => "no snapshot yet".into(),
            };
            let bar = if bars {
                let filled = (percent / 5) as usize;
                format!("[{}{}] ", "#".repeat(filled), "-".repeat(20 - filled))
            } else {
                String::new()
            };
            lines.push(format!(
                "  {} {} {} {bar}{state}",
                v.device,
                v.volume_id,
                v.snapshot_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "-".into()),
            ));
        }
        lines
    }
}

/// The rescues of interest now: those in flight (or the one instance's), with their hooks.
async fn look(
    aws: &OperatorAws,
    options: &WatchOptions,
    tracked: &BTreeSet<InstanceId>,
    hooks: &mut BTreeMap<(GroupName, HookName), Option<HookView>>,
) -> Result<Vec<Watched>, OperatorError> {
    let mut snapshots = Vec::new();
    let mut instances: BTreeSet<InstanceId> = tracked.clone();
    match &options.instance {
        Some(instance) => {
            instances.insert(instance.clone());
        }
        None => snapshots.extend(
            aws.rescue_snapshots(&RescueScope::Pending)
                .await
                .map_err(aws_error("reading the rescues in flight"))?,
        ),
    }
    if !instances.is_empty() {
        snapshots.extend(
            aws.rescue_snapshots(&RescueScope::Instances(instances.into_iter().collect()))
                .await
                .map_err(aws_error("reading the rescues watched"))?,
        );
    }
    let mut seen = BTreeSet::new();
    snapshots.retain(|s| seen.insert(s.id.clone()));
    let mut watched = Vec::new();
    for set in rescued_sets(snapshots) {
        let key = (set.group.clone(), set.hook.clone());
        if !hooks.contains_key(&key) {
            let found = aws.hooks(&set.group).await.map_err(aws_error(format!(
                "reading the hooks of group {}",
                set.group
            )))?;
            hooks.insert(key.clone(), found.into_iter().find(|h| h.name == set.hook));
        }
        let hook = hooks.get(&key).cloned().flatten();
        watched.push(Watched { set, hook });
    }
    Ok(watched)
}

/// Watches until every rescue seen in flight has ended; returns how each ended. With no
/// rescue in flight it says so and returns at once.
pub async fn watch(
    aws: &OperatorAws,
    options: &WatchOptions,
    out: &mut (dyn Write + Send),
) -> Result<Vec<RescuedSet>, OperatorError> {
    let mut tracked: BTreeSet<InstanceId> = BTreeSet::new();
    let mut hooks = BTreeMap::new();
    let mut last_lines: BTreeMap<String, String> = BTreeMap::new();
    let mut ended: BTreeMap<InstanceId, RescuedSet> = BTreeMap::new();
    let mut ended_lines: Vec<String> = Vec::new();
    let mut first = true;
    loop {
        let now = Utc::now();
        let watched = look(aws, options, &tracked, &mut hooks).await?;
        let (in_flight, done): (Vec<Watched>, Vec<Watched>) = watched
            .into_iter()
            .partition(|w| w.set.result == SetResult::InFlight);
        for w in &done {
            // A rescue ends for us once we have seen it in flight, or when it was asked for.
            let asked = options.instance.as_ref() == Some(&w.set.instance_id);
            if (tracked.remove(&w.set.instance_id) || (first && asked))
                && !ended.contains_key(&w.set.instance_id)
            {
                let line = format!(
                    "{} {} ({}): {}",
                    tags::timestamp(now),
                    w.set.instance_id,
                    w.set.group,
                    w.set.result.as_str()
                );
                if !options.terminal {
                    let _ = writeln!(out, "{line}");
                }
                ended_lines.push(line);
                ended.insert(w.set.instance_id.clone(), w.set.clone());
            }
        }
        for w in &in_flight {
            tracked.insert(w.set.instance_id.clone());
        }
        if options.terminal {
            let _ = write!(out, "\x1b[H\x1b[2J");
            let _ = writeln!(
                out,
                "lifeboat watch — {} rescue(s) in flight, {}",
                in_flight.len(),
                tags::timestamp(now)
            );
            for w in &in_flight {
                for line in w.lines(now, true) {
                    let _ = writeln!(out, "{line}");
                }
            }
            // What has ended stays on screen under what is still in flight.
            for line in &ended_lines {
                let _ = writeln!(out, "{line}");
            }
        } else {
            for w in &in_flight {
                let lines = w.lines(now, false);
                let heading = format!("{} heading", w.set.instance_id);
                if let std::collections::btree_map::Entry::Vacant(entry) = last_lines.entry(heading)
                {
                    let _ = writeln!(out, "{} {}", tags::timestamp(now), lines[0]);
                    entry.insert(lines[0].clone());
                }
                // Then only what changed: a device line when its snapshot moved.
                for line in lines.iter().skip(1) {
                    let device = line.split_whitespace().next().unwrap_or_default();
                    let key = format!("{} {device}", w.set.instance_id);
                    if last_lines.get(&key) != Some(line) {
                        let _ = writeln!(
                            out,
                            "{} {} {}",
                            tags::timestamp(now),
                            w.set.instance_id,
                            line.trim()
                        );
                        last_lines.insert(key, line.clone());
                    }
                }
            }
        }
        let _ = out.flush();
        if in_flight.is_empty() {
            if first && ended.is_empty() {
                let _ = writeln!(out, "no rescue in flight");
            }
            return Ok(ended.into_values().collect());
        }
        first = false;
        tokio::time::sleep(options.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Tags;
    use crate::ids::{SnapshotId, VolumeId};
    use crate::operator::list::RescuedVolume;

    fn watched(hook: Option<HookView>) -> Watched {
        let started: DateTime<Utc> = "2026-11-25T10:00:00Z".parse().unwrap();
        Watched {
            set: RescuedSet {
                instance_id: InstanceId::parse("i-0000000000000000a").unwrap(),
                group: GroupName::parse("api-db").unwrap(),
                hook: HookName::parse("lifeboat").unwrap(),
                started_at: started,
                held_since: Some(started - chrono::Duration::seconds(30)),
                result: SetResult::InFlight,
                record_complete: true,
                expiry: None,
                volumes: vec![RescuedVolume {
                    device: "/dev/sdf".into(),
                    placed: true,
                    volume_id: VolumeId::parse("vol-0000000000000000a").unwrap(),
                    snapshot_id: Some(SnapshotId::parse("snap-0000000000000000a").unwrap()),
                    state: Some(SnapshotState::Pending),
                    progress: Some("42%".into()),
                    size_gib: Some(20),
                    volume_type: "gp3".into(),
                    iops: None,
                    throughput: None,
                    encrypted: false,
                    kms_key_id: None,
                    volume_tags: Tags::new(),
                    tier: crate::aws::StorageTier::Standard,
                    restored_until: None,
                    copy: None,
                }],
            },
            hook,
        }
    }

    #[test]
    fn a_rescue_in_flight_shows_its_hold_its_limits_and_each_snapshots_progress() {
        let hook = HookView {
            name: HookName::parse("lifeboat").unwrap(),
            transition: crate::operator::audit::TERMINATING.into(),
            heartbeat_timeout: Duration::from_secs(900),
            global_timeout: Duration::from_secs(90_000),
            default_result: "ABANDON".into(),
            notification_metadata: None,
        };
        let now: DateTime<Utc> = "2026-11-25T10:10:00Z".parse().unwrap();
        let lines = watched(Some(hook)).lines(now, true);
        assert_eq!(
            lines[0],
            "i-0000000000000000a (api-db, hook lifeboat): in flight, held 10m 30s; heartbeat timeout \
             15m 00s (lifeboat renews it), global limit 2026-11-26T10:59:30Z (in 1d 00h)"
        );
        assert_eq!(
            lines[1],
            "  /dev/sdf vol-0000000000000000a snap-0000000000000000a [########------------] pending 42%"
        );
        let plain = watched(None).lines(now, false);
        assert!(
            plain[0].ends_with("hook not found: the action is no longer held"),
            "{}",
            plain[0]
        );
        assert!(
            plain[1].ends_with("snap-0000000000000000a pending 42%"),
            "{}",
            plain[1]
        );
    }
}
