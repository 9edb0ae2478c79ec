//! Configuration: the defaults from environment variables (validated once, at start-up; a bad
//! variable stops the function with an error naming it) and the per-group overrides a hook's
//! `NotificationMetadata` may carry (validated per rescue; a bad override never stops a rescue,
//! it falls back to the safest settings).

use std::time::Duration;

use serde::Deserialize;

use crate::aws::budget::BudgetShare;
use crate::ids::{one_line, GroupName, HookName, InvalidId};

/// One environment variable lifeboat reads: the README's configuration table and the SAM
/// template's parameters are checked against this list by the tests.
pub struct EnvVar {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: "LIFEBOAT_HOOK_NAMES",
        default: "lifeboat",
        meaning: "Comma-separated termination hook names lifeboat serves; events of other hooks are ignored.",
    },
    EnvVar {
        name: "LIFEBOAT_GROUPS",
        default: "",
        meaning: "Comma-separated Auto Scaling groups lifeboat serves; empty means every group that has one of the hooks.",
    },
    EnvVar {
        name: "LIFEBOAT_INCLUDE_BOOT_VOLUME",
        default: "true",
        meaning: "Snapshot the boot volume too. When false the boot volume is not snapshotted but kept (DeleteOnTermination=false).",
    },
    EnvVar {
        name: "LIFEBOAT_SKIP_TAG",
        default: "lifeboat:skip",
        meaning: "A volume carrying this tag key with value `true` is not snapshotted but kept (DeleteOnTermination=false). Empty disables.",
    },
    EnvVar {
        name: "LIFEBOAT_MAX_ATTEMPTS",
        default: "3",
        meaning: "Snapshot attempts per volume (1-10) before the rescue fails safe.",
    },
    EnvVar {
        name: "LIFEBOAT_INLINE_WAIT_SECONDS",
        default: "120",
        meaning: "How long one invocation waits for snapshots to complete (0-840) before leaving the rest to the completion event and the sweep.",
    },
    EnvVar {
        name: "LIFEBOAT_WARM_POOL_ACTION",
        default: "continue",
        meaning: "`continue`: complete a scale-in into the warm pool at once; `ignore`: leave it to its hook's timeout.",
    },
    EnvVar {
        name: "LIFEBOAT_DEADLINE_MARGIN_SECONDS",
        default: "30",
        meaning: "Stop waiting this long (5-300) before the Lambda deadline.",
    },
    EnvVar {
        name: "LIFEBOAT_GLOBAL_TIMEOUT_MARGIN_SECONDS",
        default: "900",
        meaning: "Fail safe this long (60-21600) before the hook's global timeout, at most a quarter of that timeout.",
    },
    EnvVar {
        name: "LIFEBOAT_SWEEP_INTERVAL_SECONDS",
        default: "300",
        meaning: "How often the sweep runs (60-3600); must match the schedule. A hook whose heartbeat timeout is shorter cannot be held between sweeps.",
    },
    EnvVar {
        name: "LIFEBOAT_POLL_INITIAL_SECONDS",
        default: "5",
        meaning: "First pause between two checks of a snapshot set (0-300); it grows by half each round, jittered.",
    },
    EnvVar {
        name: "LIFEBOAT_POLL_MAX_SECONDS",
        default: "30",
        meaning: "Longest pause between two checks of a snapshot set (0-600).",
    },
    EnvVar {
        name: "LIFEBOAT_SWEEP_CONCURRENCY",
        default: "8",
        meaning: "Rescues the sweep works on at once (1-64).",
    },
    EnvVar {
        name: "LIFEBOAT_METRICS_NAMESPACE",
        default: "Lifeboat",
        meaning: "CloudWatch namespace of the Embedded Metric Format lines.",
    },
    EnvVar {
        name: "LIFEBOAT_API_SHARE_PERCENT",
        default: "50",
        meaning: "The share (1-100 %) of every EC2 and Auto Scaling throttling bucket of the account lifeboat may draw, all its environments together; the account's other callers keep the rest.",
    },
    EnvVar {
        name: "LIFEBOAT_CONCURRENCY",
        default: "3",
        meaning: "The function's reserved concurrency (1-1000): each execution environment paces its calls to its part of the share.",
    },
    EnvVar {
        name: "LIFEBOAT_EVENT_BUS",
        default: "default",
        meaning: "The EventBridge bus (name or ARN) lifeboat publishes its rescue events to (source `lifeboat`); empty publishes none.",
    },
    EnvVar {
        name: "LIFEBOAT_COPY_REGION",
        default: "",
        meaning: "Copy each released set to this Region (for example us-west-2); empty copies nothing. The copy never holds the instance.",
    },
    EnvVar {
        name: "LIFEBOAT_COPY_KMS_KEY",
        default: "",
        meaning: "The KMS key (ARN) in the copy Region that encrypts copies of encrypted snapshots; empty uses that Region's default EBS key.",
    },
    EnvVar {
        name: "LIFEBOAT_ENCRYPTION_KEYS",
        default: "",
        meaning: "The customer managed KMS keys (ARNs, comma-separated) the function's role may use through EC2, as the template's EncryptionKeyArns: `lifeboat drill` checks each encrypted volume's key against them.",
    },
    EnvVar {
        name: "LIFEBOAT_RETENTION_ARCHIVE_AFTER_DAYS",
        default: "0",
        meaning: "Move a released set older than this many days to the EBS snapshot archive tier (0-36500; 0: never).",
    },
    EnvVar {
        name: "LIFEBOAT_RETENTION_DELETE_AFTER_DAYS",
        default: "0",
        meaning: "Delete a released set older than this many days (0-36500; 0: never); with archiving, at least 90 days after it (the archive tier's minimum).",
    },
    EnvVar {
        name: "LIFEBOAT_RETENTION_KEEP_LAST",
        default: "3",
        meaning: "The newest released sets of each group retention never touches (1-1000).",
    },
    EnvVar {
        name: "LIFEBOAT_RETENTION_MAX_CHANGES",
        default: "200",
        meaning: "Snapshots one aftercare run archives or deletes at most (1-10000); the rest wait for the next run.",
    },
];

/// A bad environment variable: names it, its value and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is not valid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// What a warm-pool scale-in (a terminate action whose destination is the warm pool) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmPoolAction {
    /// Complete the action with CONTINUE at once: the instance is not terminated.
    Continue,
    /// Do nothing; the hook's timeout applies its default result.
    Ignore,
}

/// The settings that shape one rescue; the defaults come from the environment, a group may
/// override them through its hook's `NotificationMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueSettings {
    pub include_boot_volume: bool,
    /// Tag key that marks a volume not to snapshot; `None` snapshots every volume.
    pub skip_tag: Option<String>,
    pub max_attempts: u32,
    pub inline_wait: Duration,
    pub warm_pool: WarmPoolAction,
    /// What becomes of the group's released sets.
    pub retention: Retention,
}

/// What becomes of a group's released sets: archived, deleted, or first one and then the
/// other, once older than a number of days; the newest `keep_last` are never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub archive_after_days: Option<u32>,
    pub delete_after_days: Option<u32>,
    pub keep_last: u32,
}

/// "Archive Amazon EBS snapshots" (Amazon EBS User Guide): an archived snapshot is billed for at
/// least 90 days.
pub const ARCHIVE_MINIMUM_DAYS: u32 = 90;

impl Retention {
    /// Touches nothing: what a group whose retention override is rejected gets.
    pub const OFF: Retention = Retention {
        archive_after_days: None,
        delete_after_days: None,
        keep_last: 3,
    };

    pub fn is_off(&self) -> bool {
        self.archive_after_days.is_none() && self.delete_after_days.is_none()
    }

    /// Why these settings cannot be used (the key names the setting), if they cannot.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.keep_last < 1 || self.keep_last > 1000 {
            return Err(("retention_keep_last", "must be between 1 and 1000".into()));
        }
        if let (Some(archive), Some(delete)) = (self.archive_after_days, self.delete_after_days) {
            if delete < archive.saturating_add(ARCHIVE_MINIMUM_DAYS) {
                return Err((
                    "retention_delete_after_days",
                    format!("with archiving after {archive} days, deleting before day {} pays for days the archive tier bills anyway (at least {ARCHIVE_MINIMUM_DAYS}); delete later or do not archive", archive + ARCHIVE_MINIMUM_DAYS),
                ));
            }
        }
        Ok(())
    }
}

impl RescueSettings {
    /// The settings used when a group's override is rejected: every volume, boot included,
    /// skip tags ignored. The rest keeps the environment's defaults.
    pub fn safest(&self) -> Self {
        Self {
            include_boot_volume: true,
            skip_tag: None,
            retention: Retention::OFF,
            ..self.clone()
        }
    }
}

/// The pauses between two checks of a snapshot set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    pub initial: Duration,
    pub max: Duration,
}

impl PollSchedule {
    /// The pause before check number `round` (0-based): grows by half each round up to `max`,
    /// then takes a random 50-100 % of it so that many rescues do not poll in step.
    pub fn pause(&self, round: u32) -> Duration {
        let grown = self.initial.as_secs_f64() * 1.5f64.powi(round.min(30) as i32);
        let capped = grown.min(self.max.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
    }
}

/// Everything lifeboat is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub hooks: Vec<HookName>,
    /// Empty: every group that has one of `hooks`.
    pub groups: Vec<GroupName>,
    pub defaults: RescueSettings,
    pub deadline_margin: Duration,
    pub global_timeout_margin: Duration,
    pub sweep_interval: Duration,
    pub poll: PollSchedule,
    pub sweep_concurrency: usize,
    pub metrics_namespace: String,
    /// Lifeboat's share of the account's API budget, and how many environments split it.
    pub budget: BudgetShare,
    /// Snapshots one aftercare run changes at most.
    pub retention_max_changes: usize,
    /// Where lifeboat's events go; `None`: nowhere.
    pub event_bus: Option<String>,
    /// The Region released sets are copied to, and the key there for encrypted ones.
    pub copy: Option<CopySettings>,
    /// The customer managed keys the role may use through EC2 (`EncryptionKeyArns`): what
    /// `lifeboat drill` checks volumes' keys against; a rescue does not read it.
    pub encryption_keys: Vec<String>,
}

/// Where released sets are copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySettings {
    pub region: String,
    pub kms_key: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable that is unset gets its default).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = |name: &'static str| -> Var {
            let default = ENV_VARS
                .iter()
                .find(|v| v.name == name)
                .map(|v| v.default)
                .unwrap_or("");
            Var {
                name,
                value: lookup(name).unwrap_or_else(|| default.to_owned()),
            }
        };
        let poll = PollSchedule {
            initial: read("LIFEBOAT_POLL_INITIAL_SECONDS").seconds(0, 300)?,
            max: read("LIFEBOAT_POLL_MAX_SECONDS").seconds(0, 600)?,
        };
        if poll.max < poll.initial {
            return Err(ConfigError {
                name: "LIFEBOAT_POLL_MAX_SECONDS",
                value: poll.max.as_secs().to_string(),
                reason: "must not be less than LIFEBOAT_POLL_INITIAL_SECONDS".into(),
            });
        }
        let hooks = read("LIFEBOAT_HOOK_NAMES").list(HookName::parse)?;
        if hooks.is_empty() {
            return Err(ConfigError {
                name: "LIFEBOAT_HOOK_NAMES",
                value: String::new(),
                reason: "name at least one termination hook".into(),
            });
        }
        let skip_tag = read("LIFEBOAT_SKIP_TAG");
        let days = |name: &'static str| -> Result<Option<u32>, ConfigError> {
            Ok(Some(read(name).integer(0, 36_500)? as u32).filter(|d| *d > 0))
        };
        let retention = Retention {
            archive_after_days: days("LIFEBOAT_RETENTION_ARCHIVE_AFTER_DAYS")?,
            delete_after_days: days("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS")?,
            keep_last: read("LIFEBOAT_RETENTION_KEEP_LAST").integer(1, 1000)? as u32,
        };
        retention
            .check()
            .map_err(|(_, reason)| read("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS").error(reason))?;
        Ok(Self {
            hooks,
            groups: read("LIFEBOAT_GROUPS").list(GroupName::parse)?,
            defaults: RescueSettings {
                include_boot_volume: read("LIFEBOAT_INCLUDE_BOOT_VOLUME").boolean()?,
                skip_tag: check_skip_tag(&skip_tag.value)
                    .map_err(|reason| skip_tag.error(reason))?,
                max_attempts: read("LIFEBOAT_MAX_ATTEMPTS").integer(1, 10)? as u32,
                inline_wait: read("LIFEBOAT_INLINE_WAIT_SECONDS").seconds(0, 840)?,
                warm_pool: read("LIFEBOAT_WARM_POOL_ACTION").warm_pool()?,
                retention,
            },
            deadline_margin: read("LIFEBOAT_DEADLINE_MARGIN_SECONDS").seconds(5, 300)?,
            global_timeout_margin: read("LIFEBOAT_GLOBAL_TIMEOUT_MARGIN_SECONDS")
                .seconds(60, 21_600)?,
            sweep_interval: read("LIFEBOAT_SWEEP_INTERVAL_SECONDS").seconds(60, 3600)?,
            poll,
            sweep_concurrency: read("LIFEBOAT_SWEEP_CONCURRENCY").integer(1, 64)? as usize,
            metrics_namespace: read("LIFEBOAT_METRICS_NAMESPACE").text(1, 255)?,
            budget: BudgetShare {
                share: read("LIFEBOAT_API_SHARE_PERCENT").integer(1, 100)? as f64 / 100.0,
                concurrency: read("LIFEBOAT_CONCURRENCY").integer(1, 1000)? as u32,
            },
            retention_max_changes: read("LIFEBOAT_RETENTION_MAX_CHANGES").integer(1, 10_000)?
                as usize,
            event_bus: Some(read("LIFEBOAT_EVENT_BUS").text(0, 1600)?)
                .filter(|bus| !bus.trim().is_empty()),
            copy: copy_settings(read("LIFEBOAT_COPY_REGION"), read("LIFEBOAT_COPY_KMS_KEY"))?,
            encryption_keys: read("LIFEBOAT_ENCRYPTION_KEYS").list(key_arn)?,
        })
    }

    pub fn serves_hook(&self, hook: &HookName) -> bool {
        self.hooks.contains(hook)
    }

    pub fn serves_group(&self, group: &GroupName) -> bool {
        self.groups.is_empty() || self.groups.contains(group)
    }

    /// The settings for one rescue: the defaults, overridden by the hook's metadata when that
    /// is valid; the safest settings and the reason when it is not.
    pub fn settings_for(&self, metadata: Option<&str>) -> (RescueSettings, Option<OverrideError>) {
        let checked = GroupOverrides::parse(metadata).and_then(|overrides| {
            overrides.retention(&self.defaults.retention)?;
            Ok(overrides)
        });
        match checked {
            Ok(overrides) => (overrides.apply(&self.defaults), None),
            Err(err) => (self.defaults.safest(), Some(err)),
        }
    }
}

/// Whether a hook's `NotificationMetadata` holds overrides lifeboat accepts (what `audit`
/// checks before a termination finds out).
pub fn check_overrides(metadata: Option<&str>) -> Result<(), OverrideError> {
    GroupOverrides::parse(metadata).map(|_| ())
}

/// A variable's name and value (set or default), with the typed readers.
struct Var {
    name: &'static str,
    value: String,
}

impl Var {
    fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            name: self.name,
            value: self.value.chars().take(200).collect(),
            reason: reason.into(),
        }
    }

    fn integer(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n: u64 = self
            .value
            .trim()
            .parse()
            .map_err(|_| self.error("expected a whole number"))?;
        if n < min || n > max {
            return Err(self.error(format!("must be between {min} and {max}")));
        }
        Ok(n)
    }

    fn seconds(&self, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.integer(min, max).map(Duration::from_secs)
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.error("expected true or false")),
        }
    }

    fn text(&self, min: usize, max: usize) -> Result<String, ConfigError> {
        let len = self.value.chars().count();
        if len < min || len > max || self.value.chars().any(char::is_control) {
            return Err(self.error(format!("expected {min} to {max} printable characters")));
        }
        Ok(self.value.clone())
    }

    fn warm_pool(&self) -> Result<WarmPoolAction, ConfigError> {
        match self.value.trim() {
            "continue" => Ok(WarmPoolAction::Continue),
            "ignore" => Ok(WarmPoolAction::Ignore),
            _ => Err(self.error("expected continue or ignore")),
        }
    }

    fn list<T>(&self, parse: impl Fn(&str) -> Result<T, InvalidId>) -> Result<Vec<T>, ConfigError> {
        self.value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| parse(item).map_err(|err| self.error(err.to_string())))
            .collect()
    }
}

/// A KMS key ARN: `arn:<partition>:kms:<region>:<account>:key/<id>`.
fn key_arn(text: &str) -> Result<String, InvalidId> {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    if parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "kms"
        && parts[5].starts_with("key/")
        && parts[5].len() > 4
        && !text.contains(char::is_whitespace)
    {
        Ok(text.to_owned())
    } else {
        Err(InvalidId::new(
            "KMS key ARN",
            text,
            "expected arn:aws:kms:REGION:ACCOUNT:key/ID",
        ))
    }
}

/// A Region name (`us-west-2`, `ap-southeast-1`, `us-gov-west-1`) and, if any, a key ARN.
fn copy_settings(region: Var, key: Var) -> Result<Option<CopySettings>, ConfigError> {
    let name = region.value.trim();
    if name.is_empty() {
        if !key.value.trim().is_empty() {
            return Err(key.error("set LIFEBOAT_COPY_REGION too, or leave this empty"));
        }
        return Ok(None);
    }
    let parts: Vec<&str> = name.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Err(region.error("expected a Region name such as us-west-2"));
    }
    let kms_key = Some(key.value.trim().to_owned()).filter(|k| !k.is_empty());
    if let Some(k) = &kms_key {
        if !k.starts_with("arn:") || !k.contains(&format!(":kms:{name}:")) {
            return Err(key.error(format!("expected the ARN of a KMS key in {name}")));
        }
    }
    Ok(Some(CopySettings {
        region: name.to_owned(),
        kms_key,
    }))
}

fn check_skip_tag(value: &str) -> Result<Option<String>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > 128 || value.chars().any(char::is_control) {
        return Err("a tag key is 1 to 128 printable characters".into());
    }
    if value.starts_with("aws:") {
        return Err("tag keys starting with aws: are reserved".into());
    }
    Ok(Some(value.to_owned()))
}

/// A rejected per-group override: the key (or `NotificationMetadata` itself) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NotificationMetadata override {key:?} rejected: {reason}")]
pub struct OverrideError {
    pub key: String,
    pub reason: String,
}

impl OverrideError {
    /// The metadata comes from outside: its key and the reason are kept short and printable.
    fn new(key: &str, reason: &str) -> Self {
        Self {
            key: one_line(key, 128),
            reason: one_line(reason, 300),
        }
    }
}

/// The per-group overrides, as the hook's `NotificationMetadata` JSON object spells them: the
/// environment variable's name without `LIFEBOAT_`, in lower case.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct GroupOverrides {
    include_boot_volume: Option<bool>,
    skip_tag: Option<String>,
    max_attempts: Option<u32>,
    inline_wait_seconds: Option<u64>,
    warm_pool_action: Option<WarmPoolAction>,
    retention_archive_after_days: Option<u32>,
    retention_delete_after_days: Option<u32>,
    retention_keep_last: Option<u32>,
}

/// AWS allows up to 4000 characters of metadata; anything longer did not come from AWS.
const METADATA_MAX_CHARS: usize = 4000;

impl GroupOverrides {
    fn parse(metadata: Option<&str>) -> Result<Self, OverrideError> {
        let Some(text) = metadata.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self::default());
        };
        let whole = |reason: String| OverrideError::new("NotificationMetadata", &reason);
        if text.chars().count() > METADATA_MAX_CHARS {
            return Err(whole(format!(
                "longer than {METADATA_MAX_CHARS} characters"
            )));
        }
        if !text.starts_with('{') {
            return Err(whole("expected a JSON object".into()));
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let overrides: Self =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let inner = err.inner().to_string();
                let key = match err.path().to_string() {
                    path if path != "." && !path.is_empty() => path,
                    _ => crate::event::field_named_in(&inner)
                        .unwrap_or_else(|| "NotificationMetadata".into()),
                };
                OverrideError::new(&key, &inner)
            })?;
        deserializer.end().map_err(|err| whole(err.to_string()))?;
        overrides.validate()?;
        Ok(overrides)
    }

    fn validate(&self) -> Result<(), OverrideError> {
        let bad = |key: &str, reason: &str| OverrideError::new(key, reason);
        if let Some(n) = self.max_attempts {
            if !(1..=10).contains(&n) {
                return Err(bad("max_attempts", "must be between 1 and 10"));
            }
        }
        if let Some(s) = self.inline_wait_seconds {
            if s > 840 {
                return Err(bad("inline_wait_seconds", "must be between 0 and 840"));
            }
        }
        if let Some(tag) = &self.skip_tag {
            check_skip_tag(tag).map_err(|reason| bad("skip_tag", &reason))?;
        }
        for (key, days) in [
            (
                "retention_archive_after_days",
                self.retention_archive_after_days,
            ),
            (
                "retention_delete_after_days",
                self.retention_delete_after_days,
            ),
        ] {
            if days.is_some_and(|d| d > 36_500) {
                return Err(bad(key, "must be between 0 and 36500"));
            }
        }
        Ok(())
    }

    /// The group's retention: the defaults with its overrides, checked as a whole; rejected
    /// (touch nothing) when the combination cannot be used.
    fn retention(&self, defaults: &Retention) -> Result<Retention, OverrideError> {
        let days = |value: Option<u32>, default: Option<u32>| match value {
            Some(0) => None,
            Some(d) => Some(d),
            None => default,
        };
        let retention = Retention {
            archive_after_days: days(
                self.retention_archive_after_days,
                defaults.archive_after_days,
            ),
            delete_after_days: days(self.retention_delete_after_days, defaults.delete_after_days),
            keep_last: self.retention_keep_last.unwrap_or(defaults.keep_last),
        };
        retention
            .check()
            .map_err(|(key, reason)| OverrideError::new(key, &reason))?;
        Ok(retention)
    }

    fn apply(self, defaults: &RescueSettings) -> RescueSettings {
        let retention = self
            .retention(&defaults.retention)
            .unwrap_or(Retention::OFF);
        RescueSettings {
            include_boot_volume: self
                .include_boot_volume
                .unwrap_or(defaults.include_boot_volume),
            skip_tag: match self.skip_tag {
                Some(tag) => check_skip_tag(&tag).ok().flatten(),
                None => defaults.skip_tag.clone(),
            },
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            inline_wait: self
                .inline_wait_seconds
                .map(Duration::from_secs)
                .unwrap_or(defaults.inline_wait),
            warm_pool: self.warm_pool_action.unwrap_or(defaults.warm_pool),
            retention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_safe() {
        let c = config(&[]).unwrap();
        assert_eq!(c.hooks, vec![HookName::parse("lifeboat").unwrap()]);
        assert!(c.groups.is_empty());
        assert!(c.defaults.include_boot_volume);
        assert_eq!(c.defaults.skip_tag.as_deref(), Some("lifeboat:skip"));
        assert_eq!(c.defaults.max_attempts, 3);
        assert_eq!(c.defaults.inline_wait, Duration::from_secs(120));
        assert_eq!(c.sweep_interval, Duration::from_secs(300));
    }

    #[test]
    fn every_bad_variable_is_named() {
        let cases = [
            ("LIFEBOAT_MAX_ATTEMPTS", "0"),
            ("LIFEBOAT_MAX_ATTEMPTS", "three"),
            ("LIFEBOAT_INLINE_WAIT_SECONDS", "900"),
            ("LIFEBOAT_INCLUDE_BOOT_VOLUME", "yes"),
            ("LIFEBOAT_HOOK_NAMES", "bad hook"),
            ("LIFEBOAT_HOOK_NAMES", " , "),
            ("LIFEBOAT_GROUPS", "ok,bad\u{7}"),
            ("LIFEBOAT_WARM_POOL_ACTION", "abandon"),
            ("LIFEBOAT_SKIP_TAG", "aws:skip"),
            ("LIFEBOAT_POLL_MAX_SECONDS", "1"),
            ("LIFEBOAT_SWEEP_INTERVAL_SECONDS", "10"),
            ("LIFEBOAT_RETENTION_ARCHIVE_AFTER_DAYS", "-1"),
            ("LIFEBOAT_RETENTION_KEEP_LAST", "0"),
            ("LIFEBOAT_RETENTION_MAX_CHANGES", "0"),
            ("LIFEBOAT_COPY_REGION", "Oregon"),
            (
                "LIFEBOAT_COPY_KMS_KEY",
                "arn:aws:kms:us-west-2:123456789012:key/x",
            ),
        ];
        for (name, value) in cases {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{name}={value}");
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn retention_is_off_by_default_and_a_bad_combination_is_named() {
        assert!(config(&[]).unwrap().defaults.retention.is_off());
        let err = config(&[
            ("LIFEBOAT_RETENTION_ARCHIVE_AFTER_DAYS", "30"),
            ("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS", "60"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "LIFEBOAT_RETENTION_DELETE_AFTER_DAYS");
        let c = config(&[("LIFEBOAT_RETENTION_DELETE_AFTER_DAYS", "30")]).unwrap();
        // A group's override: its own days, 0 turning a default off; a combination that cannot
        // work is rejected, and that group's sets are left alone.
        let (settings, rejected) = c.settings_for(Some(
            r#"{"retention_archive_after_days": 7, "retention_delete_after_days": 0, "retention_keep_last": 5}"#,
        ));
        assert!(rejected.is_none());
        assert_eq!(
            settings.retention,
            Retention {
                archive_after_days: Some(7),
                delete_after_days: None,
                keep_last: 5
            }
        );
        let (settings, rejected) = c.settings_for(Some(r#"{"retention_archive_after_days": 7}"#));
        assert_eq!(rejected.unwrap().key, "retention_delete_after_days");
        assert!(settings.retention.is_off());
    }

    #[test]
    fn lists_are_trimmed_and_may_name_several() {
        let c = config(&[
            ("LIFEBOAT_HOOK_NAMES", "a, b"),
            ("LIFEBOAT_GROUPS", "g1,,g2 "),
        ])
        .unwrap();
        assert_eq!(c.hooks.len(), 2);
        assert_eq!(c.groups.len(), 2);
        assert!(c.serves_group(&GroupName::parse("g2").unwrap()));
        assert!(!c.serves_group(&GroupName::parse("g3").unwrap()));
    }

    #[test]
    fn valid_overrides_apply_key_by_key() {
        let c = config(&[]).unwrap();
        let (s, err) = c.settings_for(Some(r#"{"include_boot_volume": false, "max_attempts": 5}"#));
        assert!(err.is_none());
        assert!(!s.include_boot_volume);
        assert_eq!(s.max_attempts, 5);
        assert_eq!(s.skip_tag, c.defaults.skip_tag);
        let (s, err) = c.settings_for(Some("   "));
        assert!(err.is_none());
        assert_eq!(s, c.defaults);
    }

    #[test]
    fn bad_overrides_name_the_key_and_fall_back_to_the_safest_settings() {
        let c = config(&[("LIFEBOAT_INCLUDE_BOOT_VOLUME", "false")]).unwrap();
        let long = format!("{{\"skip_tag\": \"{}\"}}", "x".repeat(5000));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let cases: Vec<(String, &str)> = vec![
            (r#"{"max_attempts": "five"}"#.into(), "max_attempts"),
            (r#"{"max_attempts": 50}"#.into(), "max_attempts"),
            (
                r#"{"include_boot_volume": 1}"#.into(),
                "include_boot_volume",
            ),
            (
                r#"{"snapshot_everything": true}"#.into(),
                "snapshot_everything",
            ),
            (r#"{"skip_tag": "aws:x"}"#.into(), "skip_tag"),
            (
                r#"{"inline_wait_seconds": -1}"#.into(),
                "inline_wait_seconds",
            ),
            ("team=payments".into(), "NotificationMetadata"),
            (
                r#"{"max_attempts": 2} trailing"#.into(),
                "NotificationMetadata",
            ),
            (long, "NotificationMetadata"),
            (deep, "NotificationMetadata"),
        ];
        for (metadata, key) in cases {
            let (s, err) = c.settings_for(Some(&metadata));
            let err = err.unwrap_or_else(|| panic!("accepted {metadata:.60}"));
            assert_eq!(err.key, key, "{metadata:.60}");
            assert!(
                s.include_boot_volume,
                "safest settings snapshot the boot volume"
            );
            assert_eq!(s.skip_tag, None, "safest settings ignore skip tags");
        }
    }

    #[test]
    fn poll_pauses_grow_and_stay_within_bounds() {
        let p = PollSchedule {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(30),
        };
        for round in 0..40 {
            let pause = p.pause(round);
            assert!(pause <= Duration::from_secs(30));
            assert!(pause >= Duration::from_secs(2));
        }
        assert!(p.pause(0) <= Duration::from_secs(4));
    }
}

#[cfg(test)]
mod readme_tests {
    use super::ENV_VARS;

    /// The README's configuration table names every variable with its default.
    #[test]
    fn the_readme_documents_every_variable_and_its_default() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for var in ENV_VARS {
            let default = if var.default.is_empty() {
                "(empty)".to_owned()
            } else {
                format!("`{}`", var.default)
            };
            let row = format!("| `{}` | {} |", var.name, default);
            assert!(readme.contains(&row), "README.md lacks the row {row}");
        }
    }
}
