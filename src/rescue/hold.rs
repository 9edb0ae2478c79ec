//! Holding the instance: the hook's timing and the group's settings (read once, when needed),
//! the heartbeat that renews the hold, and the fail-safe point before the hook's global timeout.

use chrono::{DateTime, Utc};
use tracing::warn;

use super::record::Rescue;
use super::{to_chrono, RescueError, Rescuer};
use crate::aws::{AwsErrorKind, Cloud, HookFacts};
use crate::clock::Clock;
use crate::config::{Config, RescueSettings};
use crate::report::RescueReport;
use crate::tags;

/// The hook as far as one rescue needs it: its timing and the group's settings, looked up once
/// and only when needed.
#[derive(Default)]
pub(super) struct HookContext {
    /// `None`: not looked up yet; `Some(None)`: looked up, unknown.
    facts: Option<Option<HookFacts>>,
    settings: Option<RescueSettings>,
}

impl HookContext {
    /// The settings are known already (the event carried the hook's metadata).
    pub(super) fn with_settings(settings: RescueSettings) -> Self {
        Self {
            facts: None,
            settings: Some(settings),
        }
    }

    pub(super) fn facts(&self) -> Option<&HookFacts> {
        self.facts.as_ref().and_then(Option::as_ref)
    }

    pub(super) fn max_attempts(&self, config: &Config) -> u32 {
        self.settings
            .as_ref()
            .map_or(config.defaults.max_attempts, |s| s.max_attempts)
    }
}

impl<C: Cloud, K: Clock> Rescuer<'_, C, K> {
    /// Loads the hook's timing and the group's settings the first time they are needed.
    pub(super) async fn load_hook(&self, rescue: &mut Rescue, hook: &mut HookContext) {
        if hook.facts.is_none() {
            let facts = match self
                .cloud
                .hook_facts(&rescue.action.group, &rescue.action.hook)
                .await
            {
                Ok(Some(facts)) => Some(facts),
                Ok(None) => {
                    warn!("the group has no such lifecycle hook; its timeouts are unknown");
                    None
                }
                Err(err) => {
                    warn!(error = %err, "could not read the lifecycle hook; its timeouts are unknown");
                    None
                }
            };
            hook.facts = Some(facts);
        }
        if hook.settings.is_none() {
            let metadata = hook.facts().and_then(|f| f.notification_metadata.clone());
            let (settings, rejected) = self.config.settings_for(metadata.as_deref());
            if let Some(err) = rejected {
                self.reject_override(&rescue.action, &err);
                rescue.override_rejected = Some(err.to_string());
            }
            hook.settings = Some(settings);
        }
    }

    /// Heartbeat, and with `record` the renewal in the rescue's tags (on its snapshots, or on
    /// the instance before a set exists), so that later invocations know the hold is fresh and
    /// spare the account's Auto Scaling budget. `Some(report)` when the action turned out to be
    /// over.
    pub(super) async fn renew_hold(
        &self,
        rescue: &mut Rescue,
        record: bool,
    ) -> Result<Option<RescueReport>, RescueError> {
        match self.cloud.heartbeat(&rescue.action).await {
            Ok(()) => {
                let now = self.clock.now();
                rescue.renewed_at = Some(now);
                if record {
                    let resources = rescue.record_resources();
                    if let Err(err) = self.cloud.tag(&resources, &tags::renewal_tags(now)).await {
                        // Only a saving lost: the next invocation renews the hold again.
                        warn!(error = %err, "could not record the renewal of the hold");
                    }
                }
                Ok(None)
            }
            Err(err) if err.is(AwsErrorKind::NoActiveAction) => self.ended(rescue).await.map(Some),
            Err(err) => Err(rescue.error(err)),
        }
    }

    /// When to fail safe: the hook's global timeout from the action's start, less the margin
    /// (at most a quarter of the timeout). Without a known start, the rescue's own start less
    /// one sweep interval: the instance may have waited that long unseen.
    pub(super) fn fail_safe_at(&self, rescue: &Rescue, hook: &HookFacts) -> DateTime<Utc> {
        let start = rescue
            .action_started_at
            .unwrap_or(rescue.started_at - to_chrono(self.config.sweep_interval));
        let margin = self
            .config
            .global_timeout_margin
            .min(hook.global_timeout / 4);
        start + to_chrono(hook.global_timeout) - to_chrono(margin)
    }
}
