//! Incoming JSON → one enum of what happened. Parse, don't validate: once an event is an
//! `Incoming`, every id in it is valid and every field lifeboat needs is there. A malformed
//! event is an `EventError` that names the field (`detail.EC2InstanceId`) and why.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::ids::{
    id_from_arn, one_line, ActionRef, ActionToken, GroupName, HookName, InstanceId, SnapshotId,
};

pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TEST_NOTIFICATION: &str = "autoscaling:TEST_NOTIFICATION";

const TERMINATE_DETAIL_TYPE: &str = "EC2 Instance-terminate Lifecycle Action";
const LAUNCH_DETAIL_TYPE: &str = "EC2 Instance-launch Lifecycle Action";
const MULTI_VOLUME_DETAIL_TYPE: &str = "EBS Multi-Volume Snapshots Completion Status";
const SNAPSHOT_DETAIL_TYPE: &str = "EBS Snapshot Notification";
const SCHEDULED_DETAIL_TYPE: &str = "Scheduled Event";
/// Lifeboat's own source: the aftercare schedule's input, and the rescue events it publishes.
pub const LIFEBOAT_SOURCE: &str = "lifeboat";
/// The aftercare schedule's input (the template's `AftercareSchedule`).
pub const AFTERCARE_DETAIL_TYPE: &str = "Lifeboat Aftercare";

/// A malformed event: the field (a path such as `detail.snapshots[1].snapshot_id`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event: field `{field}`: {reason}")]
pub struct EventError {
    pub field: String,
    pub reason: String,
}

/// Error texts end up in logs and in Lambda's error response: keep them one short line.
const MAX_ERROR_CHARS: usize = 300;

impl EventError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: one_line(&field.into(), MAX_ERROR_CHARS),
            reason: one_line(&reason.into(), MAX_ERROR_CHARS),
        }
    }
}

/// A termination (or warm-pool) lifecycle action, from EventBridge or an SNS/SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub action: ActionRef,
    pub token: Option<ActionToken>,
    /// When the action began (the event's time).
    pub time: Option<DateTime<Utc>>,
    pub metadata: Option<String>,
    pub origin: Option<String>,
    pub destination: Option<String>,
}

/// An EBS snapshot completion event, multi-volume (`createSnapshots`) or single (`createSnapshot`).
/// It names snapshots only: a multi-volume event lists their ARNs (in `resources` and in
/// `detail.snapshots`), not the instance's ("Amazon EventBridge events for Amazon EBS").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCompletion {
    pub succeeded: bool,
    pub snapshots: Vec<SnapshotId>,
    pub cause: Option<String>,
}

/// What happened, as lifeboat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An instance entered `Terminating:Wait`: rescue it.
    Termination(LifecycleAction),
    /// A scale-in into the warm pool: not a termination.
    WarmPoolScaleIn(LifecycleAction),
    /// A launch lifecycle action: not lifeboat's.
    Launch { group: String },
    /// Auto Scaling's test notification: acknowledge.
    TestNotification { group: String },
    /// Snapshots finished (or failed): re-check the rescues they belong to.
    SnapshotsCompleted(SnapshotCompletion),
    /// The scheduled sweep.
    Sweep,
    /// The aftercare schedule: retention over the released sets.
    Aftercare,
    /// A well-formed event lifeboat has no business with (another EBS snapshot event).
    Unrelated(String),
    /// SNS or SQS records, each an event of its own.
    Batch(Vec<Incoming>),
}

impl Incoming {
    /// Parses an event from the bytes Lambda (or a file) hands over.
    pub fn parse_slice(bytes: &[u8]) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|err| EventError::new("$", err.to_string()))?;
        Self::parse(value)
    }

    pub fn parse(value: Value) -> Result<Self, EventError> {
        let Value::Object(object) = &value else {
            return Err(EventError::new("$", "expected a JSON object"));
        };
        if object.contains_key("Records") {
            return parse_records(value);
        }
        if object.contains_key("detail-type") || object.contains_key("source") {
            return parse_eventbridge(value);
        }
        Err(EventError::new(
            "source",
            "missing: expected an EventBridge event (`source`, `detail-type`, `detail`) or SNS/SQS `Records`",
        ))
    }
}

/// The field serde names in a "missing field `x`" or "unknown field `x`" message: serde's
/// path stops at the object that lacks (or has too many) fields. An empty name is shown as `""`.
pub(crate) fn field_named_in(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    let name = rest.split('`').next()?;
    Some(if name.is_empty() {
        "\"\"".to_owned()
    } else {
        name.to_owned()
    })
}

/// Deserializes `value` as `T`, naming the failing field under `prefix`.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, EventError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let reason = err.inner().to_string();
        let mut parts: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            parts.push(prefix.to_owned());
        }
        let path = err.path().to_string();
        if path != "." && !path.is_empty() {
            parts.push(path);
        }
        if let Some(field) = field_named_in(&reason) {
            parts.push(field);
        }
        let field = if parts.is_empty() {
            "$".to_owned()
        } else {
            parts.join(".")
        };
        EventError::new(field, reason)
    })
}

fn parse_eventbridge(value: Value) -> Result<Incoming, EventError> {
    let envelope: aws_lambda_events::event::eventbridge::EventBridgeEvent<Value> =
        typed(value, "")?;
    let source = envelope.source.as_str();
    let detail_type = envelope.detail_type.as_str();
    match (source, detail_type) {
        ("aws.autoscaling", _)
            if envelope.detail.get("Event").and_then(Value::as_str) == Some(TEST_NOTIFICATION) =>
        {
            Ok(Incoming::TestNotification {
                group: group_name_of(&envelope.detail),
            })
        }
        ("aws.autoscaling", TERMINATE_DETAIL_TYPE) => {
            let detail: LifecycleDetail = typed(envelope.detail, "detail")?;
            lifecycle(detail, envelope.time, "detail.")
        }
        ("aws.autoscaling", LAUNCH_DETAIL_TYPE) => Ok(Incoming::Launch {
            group: group_name_of(&envelope.detail),
        }),
        ("aws.ec2", MULTI_VOLUME_DETAIL_TYPE) => {
            let detail: MultiVolumeDetail = typed(envelope.detail, "detail")?;
            multi_volume(detail)
        }
        ("aws.ec2", SNAPSHOT_DETAIL_TYPE) => {
            let detail: SnapshotDetail = typed(envelope.detail, "detail")?;
            single_snapshot(detail)
        }
        ("aws.events", SCHEDULED_DETAIL_TYPE) => Ok(Incoming::Sweep),
        (LIFEBOAT_SOURCE, AFTERCARE_DETAIL_TYPE) => Ok(Incoming::Aftercare),
        // Lifeboat's own rescue events, routed back to it by mistake: not work.
        (LIFEBOAT_SOURCE, other) => Ok(Incoming::Unrelated(format!("lifeboat event {other:?}"))),
        ("aws.autoscaling" | "aws.ec2" | "aws.events", other) => Err(EventError::new(
            "detail-type",
            format!("{other:?} is not an event lifeboat handles for source {source:?}"),
        )),
        (other, _) => Err(EventError::new(
            "source",
            format!("{other:?} is not aws.autoscaling, aws.ec2, aws.events or lifeboat"),
        )),
    }
}

fn group_name_of(detail: &Value) -> String {
    detail
        .get("AutoScalingGroupName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect()
}

/// The lifecycle action's fields, as EventBridge's `detail` and the SNS/SQS message spell them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleDetail {
    lifecycle_action_token: ActionToken,
    auto_scaling_group_name: GroupName,
    lifecycle_hook_name: HookName,
    #[serde(rename = "EC2InstanceId")]
    ec2_instance_id: InstanceId,
    lifecycle_transition: String,
    #[serde(default)]
    notification_metadata: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    destination: Option<String>,
    /// Only in the SNS/SQS message; EventBridge has the envelope's `time`.
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

fn lifecycle(
    detail: LifecycleDetail,
    time: Option<DateTime<Utc>>,
    prefix: &str,
) -> Result<Incoming, EventError> {
    let action = LifecycleAction {
        action: ActionRef {
            group: detail.auto_scaling_group_name,
            hook: detail.lifecycle_hook_name,
            instance_id: detail.ec2_instance_id,
        },
        token: Some(detail.lifecycle_action_token),
        time: time.or(detail.time),
        metadata: detail.notification_metadata,
        origin: detail.origin,
        destination: detail.destination,
    };
    match detail.lifecycle_transition.as_str() {
        TERMINATING if action.destination.as_deref() == Some("WarmPool") => {
            Ok(Incoming::WarmPoolScaleIn(action))
        }
        TERMINATING => Ok(Incoming::Termination(action)),
        LAUNCHING => Ok(Incoming::Launch {
            group: action.action.group.to_string(),
        }),
        other => Err(EventError::new(
            format!("{prefix}LifecycleTransition"),
            format!(
                "{:?} is not {TERMINATING}",
                other.chars().take(80).collect::<String>()
            ),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct MultiVolumeDetail {
    event: String,
    result: String,
    #[serde(default)]
    cause: Option<String>,
    snapshots: Vec<SnapshotEntry>,
}

#[derive(Debug, Deserialize)]
struct SnapshotEntry {
    snapshot_id: String,
}

#[derive(Debug, Deserialize)]
struct SnapshotDetail {
    event: String,
    result: String,
    #[serde(default)]
    cause: Option<String>,
    snapshot_id: String,
}

fn snapshot_id(arn: &str, field: String) -> Result<SnapshotId, EventError> {
    SnapshotId::parse(id_from_arn(arn)).map_err(|err| EventError::new(field, err.to_string()))
}

fn result_succeeded(result: &str) -> Result<bool, EventError> {
    match result {
        "succeeded" => Ok(true),
        "failed" => Ok(false),
        other => Err(EventError::new(
            "detail.result",
            format!(
                "{:?} is not succeeded or failed",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

fn non_empty(cause: Option<String>) -> Option<String> {
    cause
        .map(|c| {
            c.chars()
                .filter(|ch| !ch.is_control())
                .take(500)
                .collect::<String>()
        })
        .filter(|c| !c.is_empty())
}

fn multi_volume(detail: MultiVolumeDetail) -> Result<Incoming, EventError> {
    if detail.event != "createSnapshots" {
        return Ok(Incoming::Unrelated(format!(
            "EBS multi-volume event {:?}",
            detail.event
        )));
    }
    let succeeded = result_succeeded(&detail.result)?;
    let snapshots = detail
        .snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| snapshot_id(&s.snapshot_id, format!("detail.snapshots[{i}].snapshot_id")))
        .collect::<Result<Vec<_>, _>>()?;
    if snapshots.is_empty() {
        return Err(EventError::new("detail.snapshots", "no snapshots listed"));
    }
    Ok(Incoming::SnapshotsCompleted(SnapshotCompletion {
        succeeded,
        snapshots,
        cause: non_empty(detail.cause),
    }))
}

fn single_snapshot(detail: SnapshotDetail) -> Result<Incoming, EventError> {
    if detail.event != "createSnapshot" {
        return Ok(Incoming::Unrelated(format!(
            "EBS snapshot event {:?}",
            detail.event
        )));
    }
    Ok(Incoming::SnapshotsCompleted(SnapshotCompletion {
        succeeded: result_succeeded(&detail.result)?,
        snapshots: vec![snapshot_id(
            &detail.snapshot_id,
            "detail.snapshot_id".into(),
        )?],
        cause: non_empty(detail.cause),
    }))
}

/// SNS or SQS records: each message is an Auto Scaling notification (a test, or a lifecycle
/// action when the hook's target is a topic or queue lifeboat subscribes to).
fn parse_records(value: Value) -> Result<Incoming, EventError> {
    let source = value
        .pointer("/Records/0/EventSource")
        .or_else(|| value.pointer("/Records/0/eventSource"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let messages: Vec<(String, Option<String>)> = match source.as_str() {
        "aws:sns" => {
            let event: aws_lambda_events::event::sns::SnsEvent = typed(value, "")?;
            event
                .records
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("Records[{i}].Sns.Message"), Some(r.sns.message)))
                .collect()
        }
        "aws:sqs" => {
            let event: aws_lambda_events::event::sqs::SqsEvent = typed(value, "")?;
            event
                .records
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("Records[{i}].body"), r.body))
                .collect()
        }
        other => {
            return Err(EventError::new(
                "Records[0].EventSource",
                format!("{other:?} is not aws:sns or aws:sqs"),
            ))
        }
    };
    if messages.is_empty() {
        return Err(EventError::new("Records", "no records"));
    }
    let items = messages
        .into_iter()
        .map(|(field, body)| parse_message(&field, body.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Incoming::Batch(items))
}

fn parse_message(field: &str, body: Option<&str>) -> Result<Incoming, EventError> {
    let body = body.ok_or_else(|| EventError::new(field, "missing"))?;
    let message: Value =
        serde_json::from_str(body).map_err(|err| EventError::new(field, err.to_string()))?;
    if message.get("Event").and_then(Value::as_str) == Some(TEST_NOTIFICATION) {
        return Ok(Incoming::TestNotification {
            group: group_name_of(&message),
        });
    }
    if message.get("LifecycleTransition").is_none() {
        return Err(EventError::new(
            format!("{field}.LifecycleTransition"),
            "missing: the message is neither a lifecycle action nor a test notification",
        ));
    }
    let detail: LifecycleDetail = typed(message, field)?;
    lifecycle(detail, None, &format!("{field}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_file(name: &str) -> Result<Incoming, EventError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("events")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        Incoming::parse_slice(&bytes)
    }

    #[test]
    fn the_aftercare_schedules_input_in_the_template_is_aftercare() {
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"))
                .unwrap();
        let input = template
            .lines()
            .find_map(|l| l.trim().strip_prefix("Input: '"))
            .and_then(|l| l.strip_suffix('\''))
            .unwrap();
        assert_eq!(
            Incoming::parse_slice(input.as_bytes()),
            Ok(Incoming::Aftercare)
        );
    }

    fn termination(name: &str) -> LifecycleAction {
        match parse_file(name) {
            Ok(Incoming::Termination(action)) => action,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Every file in `events/` is listed here with what it must parse to; a file that is not
    /// listed fails the test, so every sample is used.
    #[test]
    fn every_sample_event_parses_as_expected() {
        type Check = fn(Result<Incoming, EventError>);
        let expectations: Vec<(&str, Check)> = vec![
            ("termination.json", |r| {
                assert!(matches!(r, Ok(Incoming::Termination(_))))
            }),
            ("termination-from-warm-pool.json", |r| {
                assert!(matches!(r, Ok(Incoming::Termination(_))))
            }),
            ("termination-sqs.json", |r| match r {
                Ok(Incoming::Batch(items)) => {
                    assert!(matches!(items[..], [Incoming::Termination(_)]))
                }
                other => panic!("{other:?}"),
            }),
            ("warm-pool-scale-in.json", |r| {
                assert!(matches!(r, Ok(Incoming::WarmPoolScaleIn(_))))
            }),
            ("launch.json", |r| {
                assert!(matches!(r, Ok(Incoming::Launch { .. })))
            }),
            ("test-notification.json", |r| {
                assert!(matches!(r, Ok(Incoming::TestNotification { .. })))
            }),
            ("test-notification-sns.json", |r| match r {
                Ok(Incoming::Batch(items)) => {
                    assert!(matches!(items[..], [Incoming::TestNotification { .. }]))
                }
                other => panic!("{other:?}"),
            }),
            ("test-notification-sqs.json", |r| match r {
                Ok(Incoming::Batch(items)) => {
                    assert!(matches!(items[..], [Incoming::TestNotification { .. }]))
                }
                other => panic!("{other:?}"),
            }),
            ("multi-volume-snapshots-completed.json", |r| match r {
                Ok(Incoming::SnapshotsCompleted(c)) => {
                    assert!(c.succeeded);
                    assert_eq!(c.snapshots.len(), 3);
                }
                other => panic!("{other:?}"),
            }),
            ("multi-volume-snapshots-failed.json", |r| match r {
                Ok(Incoming::SnapshotsCompleted(c)) => {
                    assert!(!c.succeeded);
                    assert!(c.cause.is_some());
                    assert_eq!(c.snapshots[0].as_str(), "snap-0c0c0c0c0c0c0c0c1");
                }
                other => panic!("{other:?}"),
            }),
            ("snapshot-completed.json", |r| match r {
                Ok(Incoming::SnapshotsCompleted(c)) => {
                    assert!(c.succeeded && c.snapshots.len() == 1)
                }
                other => panic!("{other:?}"),
            }),
            ("snapshot-failed.json", |r| match r {
                Ok(Incoming::SnapshotsCompleted(c)) => assert!(!c.succeeded),
                other => panic!("{other:?}"),
            }),
            ("snapshot-copied.json", |r| {
                assert!(matches!(r, Ok(Incoming::Unrelated(_))))
            }),
            ("scheduled-sweep.json", |r| {
                assert_eq!(r, Ok(Incoming::Sweep))
            }),
            ("aftercare.json", |r| assert_eq!(r, Ok(Incoming::Aftercare))),
            // Lifeboat's own events, routed back to it by mistake, are not work.
            ("lifeboat-rescue-released.json", |r| {
                assert!(matches!(r, Ok(Incoming::Unrelated(_))))
            }),
            ("lifeboat-rescue-failed-safe.json", |r| {
                assert!(matches!(r, Ok(Incoming::Unrelated(_))))
            }),
            ("lifeboat-set-expired.json", |r| {
                assert!(matches!(r, Ok(Incoming::Unrelated(_))))
            }),
            ("malformed-missing-instance-id.json", |r| {
                assert_eq!(r.unwrap_err().field, "detail.EC2InstanceId")
            }),
            ("malformed-injected-instance-id.json", |r| {
                let err = r.unwrap_err();
                assert_eq!(err.field, "detail.EC2InstanceId");
                assert!(!err.to_string().contains('\n'));
            }),
            ("malformed-wrong-transition.json", |r| {
                assert_eq!(r.unwrap_err().field, "detail.LifecycleTransition")
            }),
            ("malformed-unknown-source.json", |r| {
                assert_eq!(r.unwrap_err().field, "source")
            }),
            ("malformed-snapshot-arn.json", |r| {
                assert_eq!(r.unwrap_err().field, "detail.snapshots[1].snapshot_id")
            }),
            ("malformed-not-an-object.json", |r| {
                assert_eq!(r.unwrap_err().field, "$")
            }),
            ("malformed-sqs-body.json", |r| {
                assert_eq!(r.unwrap_err().field, "Records[0].body")
            }),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        files.sort();
        for file in &files {
            let (_, check) = expectations
                .iter()
                .find(|(name, _)| name == file)
                .unwrap_or_else(|| panic!("events/{file} has no expectation in this test"));
            check(parse_file(file));
        }
        assert_eq!(
            files.len(),
            expectations.len(),
            "an expectation names a file that does not exist"
        );
    }

    #[test]
    fn a_termination_carries_everything_the_rescue_needs() {
        let action = termination("termination.json");
        assert_eq!(action.action.group.as_str(), "api-db");
        assert_eq!(action.action.hook.as_str(), "lifeboat");
        assert_eq!(action.action.instance_id.as_str(), "i-0a1b2c3d4e5f60718");
        assert!(action.token.is_some());
        assert!(action.time.is_some());
    }

    #[test]
    fn both_arn_forms_and_bare_ids_name_the_same_snapshot() {
        for arn in [
            "arn:aws:ec2::us-east-1:snapshot/snap-0123456789abcdef0",
            "arn:aws:ec2:us-east-1:123456789012:snapshot/snap-0123456789abcdef0",
            "snap-0123456789abcdef0",
        ] {
            assert_eq!(
                snapshot_id(arn, "f".into()).unwrap().as_str(),
                "snap-0123456789abcdef0"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_naming_a_field_never_a_panic() {
        for bytes in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"Records\": []}",
            b"{\"source\": 3}",
            b"\xff\xfe",
        ] {
            let err = Incoming::parse_slice(bytes).unwrap_err();
            assert!(!err.field.is_empty(), "{bytes:?}");
        }
    }
}
