//! What lifeboat tells the people who run it: `tracing` set up for JSON lines in Lambda (text
//! for a terminal), and CloudWatch Embedded Metric Format lines for rescues started, released,
//! failed safe and ended, and the time from start to release.

use std::io::Write;
use std::sync::Mutex;

use chrono::Utc;
use serde_json::json;

use crate::ids::GroupName;

/// Where log lines go and how they look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, as CloudWatch Logs and Lambda's JSON log format expect.
    Json,
    /// Human-readable lines.
    Text,
}

/// Sets up `tracing` for the process: `RUST_LOG` filters (default `info`), lines go to stderr
/// when `stderr` is set (so stdout can carry a command's result) and to stdout otherwise.
pub fn init_tracing(format: LogFormat, stderr: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(format == LogFormat::Text && stderr);
    // A second initialisation (tests, replay inside a test) keeps the first; that is fine.
    let _ = match (format, stderr) {
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .without_time()
            .try_init(),
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Text, false) => builder.try_init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Where metric lines go.
#[derive(Debug)]
pub enum MetricSink {
    /// Lambda: stdout is the log stream CloudWatch reads EMF from.
    Stdout,
    /// A command whose stdout is its result.
    Stderr,
    /// Kept for a test to read.
    Memory(Mutex<Vec<String>>),
}

/// Emits lifeboat's metrics as EMF lines, each under the group's name and in the aggregate.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    sink: MetricSink,
}

impl Metrics {
    pub fn new(namespace: impl Into<String>, sink: MetricSink) -> Self {
        Self {
            namespace: namespace.into(),
            sink,
        }
    }

    pub fn rescue_started(&self, group: &GroupName) {
        self.emit(group, "RescuesStarted", 1.0, "Count");
    }

    pub fn rescue_released(&self, group: &GroupName, seconds_since_start: f64) {
        self.emit(group, "RescuesReleased", 1.0, "Count");
        self.emit(group, "SecondsToRelease", seconds_since_start, "Seconds");
    }

    /// A rescue failed safe; `reason` (a short code: `SnapshotRefused`, `OutOfTime`, …) is a
    /// dimension of its own, so an alarm or a dashboard can tell a quota from a stuck snapshot.
    pub fn rescue_failed_safe(&self, group: &GroupName, reason: &str) {
        self.emit_line(emf_line(
            &self.namespace,
            group,
            Some(reason),
            "RescuesFailedSafe",
            1.0,
            "Count",
            Utc::now().timestamp_millis(),
        ));
    }

    /// Keep first could not be done (the role or an SCP denies `ModifyInstanceAttribute`, …):
    /// the rescue goes on, but without its safety net.
    pub fn keep_first_failed(&self, group: &GroupName) {
        self.emit(group, "KeepFirstFailed", 1.0, "Count");
    }

    pub fn rescue_ended(&self, group: &GroupName) {
        self.emit(group, "RescuesEnded", 1.0, "Count");
    }

    pub fn override_rejected(&self, group: &GroupName) {
        self.emit(group, "OverridesRejected", 1.0, "Count");
    }

    /// A copy of a released snapshot to the other Region failed or was refused.
    pub fn copy_failed(&self, group: &GroupName) {
        self.emit(group, "CopiesFailed", 1.0, "Count");
    }

    /// A rescue event could not be published (the rescue itself is not affected).
    pub fn event_not_published(&self, group: &GroupName) {
        self.emit(group, "EventsNotPublished", 1.0, "Count");
    }

    /// The lines emitted so far, when the sink is `Memory`.
    pub fn lines(&self) -> Vec<String> {
        match &self.sink {
            MetricSink::Memory(lines) => lines.lock().map(|l| l.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn emit(&self, group: &GroupName, name: &str, value: f64, unit: &str) {
        self.emit_line(emf_line(
            &self.namespace,
            group,
            None,
            name,
            value,
            unit,
            Utc::now().timestamp_millis(),
        ));
    }

    fn emit_line(&self, line: String) {
        match &self.sink {
            MetricSink::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            MetricSink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            MetricSink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        }
    }
}

/// One metric in CloudWatch Embedded Metric Format, by group, by reason when there is one, and
/// in the aggregate.
pub fn emf_line(
    namespace: &str,
    group: &GroupName,
    reason: Option<&str>,
    name: &str,
    value: f64,
    unit: &str,
    timestamp_ms: i64,
) -> String {
    let mut dimensions = vec![json!(["AutoScalingGroupName"])];
    if reason.is_some() {
        dimensions.push(json!(["Reason"]));
    }
    dimensions.push(json!([]));
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
        "AutoScalingGroupName": group.as_str(),
        name: value,
    });
    if let Some(reason) = reason {
        line["Reason"] = json!(reason);
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_carry_namespace_dimensions_and_value() {
        let group = GroupName::parse("api-db").unwrap();
        let line = emf_line(
            "Lifeboat",
            &group,
            Some("SnapshotRefused"),
            "RescuesFailedSafe",
            1.0,
            "Count",
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Lifeboat");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "RescuesFailedSafe"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "AutoScalingGroupName"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["AutoScalingGroupName"], ["Reason"], []])
        );
        assert_eq!(v["AutoScalingGroupName"], "api-db");
        assert_eq!(v["Reason"], "SnapshotRefused");
        assert_eq!(v["RescuesFailedSafe"], 1.0);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn memory_sink_keeps_every_line() {
        let m = Metrics::new("Lifeboat", MetricSink::Memory(Mutex::new(Vec::new())));
        let group = GroupName::parse("g").unwrap();
        m.rescue_started(&group);
        m.rescue_released(&group, 42.0);
        let lines = m.lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].contains("SecondsToRelease"));
    }
}
