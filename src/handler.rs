//! One event in, the right rescue operations, one `Report` out. The Lambda binary and
//! `lifeboat replay` both call `Lifeboat::handle`; this is where an event's kind meets the
//! configuration (which hooks and groups lifeboat serves) and where the invocation's deadline
//! becomes each rescue's inline wait.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::{error, info, warn};

use crate::aws::{ActionResult, AwsError, AwsErrorKind, Cloud};
use crate::clock::Clock;
use crate::config::{Config, WarmPoolAction};
use crate::event::{EventError, Incoming, LifecycleAction, SnapshotCompletion};
use crate::report::{EventKind, Outcome, Report};
use crate::rescue::{
    rescue_error, rescues_from, snapshots_of, to_chrono, Rescue, RescueError, Rescuer, Termination,
};
use crate::sweep::sweep;
use crate::telemetry::Metrics;

/// A termination event older than this has waited in Lambda's asynchronous queue: EventBridge
/// delivers within seconds, and a throttled event is tried again a second, then exponentially
/// longer, later ("How Lambda handles errors and retries with asynchronous invocation").
const QUEUED_EVENT_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Why an invocation failed. Each kind has a stable name for Lambda's `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum LifeboatError {
    /// The event is malformed; no AWS call that changes anything was made.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A rescue could not move forward; nothing unsafe was done, a retry resumes it.
    #[error(transparent)]
    Rescue(#[from] RescueError),
    /// A lookup before any rescue failed (the sweep's listing, a completion event's snapshots).
    #[error("{what}: {source}")]
    Lookup {
        what: &'static str,
        #[source]
        source: AwsError,
    },
}

impl LifeboatError {
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Event(_) => "Lifeboat.MalformedEvent",
            Self::Rescue(err) if err.waiting_can_fix() => "Lifeboat.RescueInterrupted",
            Self::Rescue(_) => "Lifeboat.RescueFailed",
            Self::Lookup { .. } => "Lifeboat.LookupFailed",
        }
    }
}

impl From<LifeboatError> for lambda_runtime::Diagnostic {
    fn from(err: LifeboatError) -> Self {
        Self {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// Lifeboat, wired: the AWS it talks to, its clock, its configuration and its metrics.
pub struct Lifeboat<C, K> {
    pub cloud: C,
    pub clock: K,
    pub config: Config,
    pub metrics: Metrics,
}

impl<C: Cloud, K: Clock> Lifeboat<C, K> {
    fn rescuer(&self) -> Rescuer<'_, C, K> {
        Rescuer {
            cloud: &self.cloud,
            clock: &self.clock,
            config: &self.config,
            metrics: &self.metrics,
        }
    }

    /// Handles one event. `deadline` is when the invocation is cut off (Lambda's deadline);
    /// lifeboat stops waiting a margin before it.
    pub async fn handle(
        &self,
        event: Value,
        deadline: DateTime<Utc>,
    ) -> Result<Report, LifeboatError> {
        let incoming = match Incoming::parse(event) {
            Ok(incoming) => incoming,
            Err(err) => {
                error!(field = err.field, error = %err, "malformed event rejected; nothing was changed");
                return Err(err.into());
            }
        };
        let stop_at = deadline - to_chrono(self.config.deadline_margin);
        let report = self.dispatch(incoming, stop_at).await;
        match &report {
            Ok(report) => info!(
                event = ?report.event,
                rescues = report.rescues.len(),
                released = report.count(Outcome::Released),
                waiting = report.count(Outcome::Waiting),
                failed_safe = report.count(Outcome::FailedSafe),
                ended = report.count(Outcome::Ended),
                errors = report.errors.len(),
                note = report.note.as_deref().unwrap_or_default(),
                "invocation summary"
            ),
            Err(err) => {
                error!(error = %err, error_type = err.error_type(), "invocation failed; it will be retried")
            }
        }
        report
    }

    async fn dispatch(
        &self,
        incoming: Incoming,
        stop_at: DateTime<Utc>,
    ) -> Result<Report, LifeboatError> {
        match incoming {
            Incoming::Termination(action) => self.termination(action, stop_at).await,
            Incoming::WarmPoolScaleIn(action) => self.warm_pool(action).await,
            Incoming::Launch { group } => {
                info!(
                    asg = group,
                    "launch lifecycle action: not lifeboat's, ignored"
                );
                Ok(Report::note(
                    EventKind::Launch,
                    "launch lifecycle action ignored",
                ))
            }
            Incoming::TestNotification { group } => {
                info!(asg = group, "Auto Scaling test notification acknowledged");
                Ok(Report::note(
                    EventKind::TestNotification,
                    "test notification acknowledged",
                ))
            }
            Incoming::SnapshotsCompleted(completion) => self.completion(completion).await,
            Incoming::Sweep => {
                sweep(&self.rescuer(), stop_at)
                    .await
                    .map_err(|source| LifeboatError::Lookup {
                        what: "sweep",
                        source,
                    })
            }
            Incoming::Aftercare => {
                let now = self.clock.now();
                let done = crate::aftercare::run(&self.cloud, &self.config, &self.metrics, now)
                    .await
                    .map_err(|source| LifeboatError::Lookup {
                        what: "aftercare",
                        source,
                    })?;
                let mut report = Report::rescues(EventKind::Aftercare, Vec::new());
                report.errors = done.errors.clone();
                report.aftercare = Some(done);
                Ok(report)
            }
            Incoming::Unrelated(what) => {
                info!(what, "event not lifeboat's business, ignored");
                Ok(Report::note(
                    EventKind::SnapshotCompletion,
                    format!("{what} ignored"),
                ))
            }
            Incoming::Batch(items) => {
                let mut batch = Report::rescues(EventKind::Batch, Vec::new());
                let mut first_error = None;
                for item in items {
                    match Box::pin(self.dispatch(item, stop_at)).await {
                        Ok(report) => {
                            batch.rescues.extend(report.rescues);
                            batch.note = batch.note.or(report.note);
                        }
                        Err(err) => {
                            batch.errors.push(err.to_string());
                            first_error.get_or_insert(err);
                        }
                    }
                }
                // Every record was tried; a failure fails the batch so it is delivered again
                // (each record is safe to handle twice).
                first_error.map_or(Ok(batch), Err)
            }
        }
    }

    /// Why lifeboat does not serve this action, if it does not.
    fn not_served(&self, action: &LifecycleAction) -> Option<String> {
        if !self.config.serves_hook(&action.action.hook) {
            return Some(format!(
                "hook {} is not in LIFEBOAT_HOOK_NAMES",
                action.action.hook
            ));
        }
        if !self.config.serves_group(&action.action.group) {
            return Some(format!(
                "group {} is not in LIFEBOAT_GROUPS",
                action.action.group
            ));
        }
        None
    }

    async fn termination(
        &self,
        action: LifecycleAction,
        stop_at: DateTime<Utc>,
    ) -> Result<Report, LifeboatError> {
        if let Some(why) = self.not_served(&action) {
            warn!(instance_id = %action.action.instance_id, asg = %action.action.group, "termination not served: {why}");
            return Ok(Report::note(
                EventKind::Termination,
                format!("ignored: {why}"),
            ));
        }
        let (settings, rejected) = self.config.settings_for(action.metadata.as_deref());
        let now = self.clock.now();
        // An event that waited in Lambda's queue (throttled by the reserved concurrency: a
        // mass termination) does not wait inline either: others are queued behind it.
        let backlog = action
            .time
            .is_some_and(|began| now - began > to_chrono(QUEUED_EVENT_AGE));
        let inline_wait = if backlog {
            std::time::Duration::ZERO
        } else {
            settings.inline_wait
        };
        let inline_until = stop_at.min(now + to_chrono(inline_wait));
        let termination = Termination {
            action: action.action,
            token: action.token,
            started_at: action.time,
        };
        let report = self
            .rescuer()
            .on_termination(&termination, settings, rejected, inline_until)
            .await?;
        Ok(Report::rescues(EventKind::Termination, vec![report]))
    }

    /// A scale-in into the warm pool is not a termination: the instance and its volumes live
    /// on, stopped or hibernated. Complete it at once (or leave it, as configured).
    async fn warm_pool(&self, action: LifecycleAction) -> Result<Report, LifeboatError> {
        if let Some(why) = self.not_served(&action) {
            return Ok(Report::note(
                EventKind::WarmPoolScaleIn,
                format!("ignored: {why}"),
            ));
        }
        let (settings, _) = self.config.settings_for(action.metadata.as_deref());
        if settings.warm_pool == WarmPoolAction::Ignore {
            return Ok(Report::note(
                EventKind::WarmPoolScaleIn,
                "warm-pool scale-in left to its hook",
            ));
        }
        let note = match self
            .cloud
            .complete(&action.action, ActionResult::Continue)
            .await
        {
            Ok(()) => "warm-pool scale-in completed with CONTINUE; no snapshot needed".to_owned(),
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => {
                "warm-pool scale-in already completed".to_owned()
            }
            Err(err) => return Err(rescue_error(&action.action, err).into()),
        };
        info!(instance_id = %action.action.instance_id, asg = %action.action.group, "{note}");
        Ok(Report::note(EventKind::WarmPoolScaleIn, note))
    }

    /// Snapshots finished or failed: find the rescues they belong to and move them forward,
    /// without waiting inline. The event names snapshots only (a multi-volume event lists their
    /// ARNs, not the instance's): one look-up by their ids. A rescue whose every volume is saved
    /// by those snapshots goes straight to its release; any other is read whole first (one
    /// look-up by its instance), so a retry or another set is not missed.
    async fn completion(&self, completion: SnapshotCompletion) -> Result<Report, LifeboatError> {
        let lookup = |source| LifeboatError::Lookup {
            what: "finding the rescue of a completed snapshot",
            source,
        };
        let named = rescues_from(
            self.cloud
                .find_snapshots(&crate::aws::SnapshotQuery::Ids(
                    completion.snapshots.clone(),
                ))
                .await
                .map_err(lookup)?,
        );
        if named.is_empty() {
            info!(snapshots = ?completion.snapshots, "completed snapshots carry no lifeboat label (or EC2 does not list them yet); not ours, the sweep covers the rest");
            return Ok(Report::note(
                EventKind::SnapshotCompletion,
                "snapshots are not lifeboat's",
            ));
        }
        if !completion.succeeded {
            warn!(
                cause = completion.cause.as_deref().unwrap_or_default(),
                "a snapshot failed; re-checking its rescue"
            );
        }
        let served = |rescue: &Rescue| {
            !rescue.state.is_final()
                && self.config.serves_hook(&rescue.action.hook)
                && self.config.serves_group(&rescue.action.group)
        };
        let (ready, partial): (Vec<Rescue>, Vec<Rescue>) = named
            .into_iter()
            .filter(|r| served(r))
            .partition(Rescue::all_saved);
        let mut rescues = ready;
        if !partial.is_empty() {
            rescues.extend(
                rescues_from(
                    self.cloud
                        .find_snapshots(&snapshots_of(
                            partial.into_iter().map(|r| r.action.instance_id),
                        ))
                        .await
                        .map_err(lookup)?,
                )
                .into_iter()
                .filter(|r| served(r)),
            );
        }
        let mut reports = Vec::new();
        for rescue in rescues {
            reports.push(self.rescuer().resume(rescue).await?);
        }
        Ok(Report::rescues(EventKind::SnapshotCompletion, reports))
    }
}

#[cfg(test)]
mod tests;
