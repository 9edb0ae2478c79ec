//! `AwsError`: one error type for every AWS call, classified into the few kinds the rescue
//! decides on — above all, whether waiting can fix it — with the SDK's error kept as the source.

use std::error::Error as StdError;
use std::fmt;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an AWS call met, as far as the rescue's decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// `RequestLimitExceeded`, `Throttling`: slow down and try again.
    Throttled,
    /// `ConcurrentSnapshotLimitExceeded` (five pending snapshots of a volume, one for st1 and
    /// sc1, whoever started them), `SnapshotCreationPerVolumeRateExceeded` (snapshots of one
    /// volume too close together): the volume is busy; waiting fixes it, it is not a failure.
    SnapshotBusy,
    /// `SnapshotLimitExceeded`, `ResourceLimitExceeded`: an account quota is reached. No amount
    /// of waiting fixes it.
    QuotaExceeded,
    /// `InvalidSnapshot.NotFound`, `InvalidVolume.NotFound`: EC2 does not know the resource —
    /// gone, or (just after its creation) not yet visible: EC2's API is eventually consistent.
    NotFound,
    /// `InvalidInstanceID.NotFound`: the instance does not exist (any more).
    InstanceNotFound,
    /// `ValidationError: No active Lifecycle Action found`: the action is over.
    NoActiveAction,
    /// Access denied: the function's role lacks a permission.
    AccessDenied,
    /// A 5xx, a timeout or a broken connection: try again later.
    Unavailable,
    /// Anything else AWS refused.
    Rejected,
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Throttled => "throttled",
            Self::SnapshotBusy => "the volume has too many snapshots in flight",
            Self::QuotaExceeded => "account quota reached",
            Self::NotFound => "not found",
            Self::InstanceNotFound => "instance not found",
            Self::NoActiveAction => "no active lifecycle action",
            Self::AccessDenied => "access denied",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
        })
    }
}

/// A failed AWS call: the operation, the kind, AWS's code and message, and the SDK error.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {kind}{}", code_and_message(.code, .message))]
pub struct AwsError {
    pub operation: &'static str,
    pub kind: AwsErrorKind,
    pub code: Option<String>,
    pub message: Option<String>,
    #[source]
    pub source: Option<Box<dyn StdError + Send + Sync>>,
}

fn code_and_message(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

impl AwsError {
    /// An error that did not come from the SDK (a reply lifeboat cannot use).
    pub fn new(operation: &'static str, kind: AwsErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            code: None,
            message: Some(message.into()),
            source: None,
        }
    }

    /// Classifies an SDK error of any operation.
    pub fn from_sdk<E, R>(
        operation: &'static str,
        err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        use aws_smithy_runtime_api::client::result::SdkError;
        let (code, message) = (
            err.code().map(str::to_owned),
            err.message().map(str::to_owned),
        );
        let kind = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => AwsErrorKind::Unavailable,
            SdkError::ResponseError(_) => AwsErrorKind::Unavailable,
            SdkError::ServiceError(service) => {
                let status = service.raw_http_status();
                classify(code.as_deref(), message.as_deref(), status)
            }
            _ => classify(code.as_deref(), message.as_deref(), None),
        };
        Self {
            operation,
            kind,
            code,
            message,
            source: Some(Box::new(err)),
        }
    }

    pub fn is(&self, kind: AwsErrorKind) -> bool {
        self.kind == kind
    }

    /// The instance is gone or going: EC2 does not know it (`InvalidInstanceID.NotFound`), or
    /// refuses the call for the instance's state (`IncorrectInstanceState`, "Error codes for the
    /// Amazon EC2 API"). Lifeboat calls EC2 on an instance only to keep or snapshot its volumes,
    /// which EC2 allows on a running or stopped instance: the state refused is shutting-down
    /// or terminated.
    pub fn says_instance_gone(&self) -> bool {
        self.is(AwsErrorKind::InstanceNotFound)
            || self.code.as_deref() == Some(INCORRECT_INSTANCE_STATE)
    }

    /// Waiting can fix it: throttling, a busy volume, a service hiccup. Nothing is wrong with
    /// the request itself; a quota, a denial or a bad parameter stays as it is however long
    /// lifeboat waits.
    pub fn waiting_can_fix(&self) -> bool {
        matches!(
            self.kind,
            AwsErrorKind::Throttled | AwsErrorKind::SnapshotBusy | AwsErrorKind::Unavailable
        )
    }

    /// AWS's error code, or the kind when AWS gave none: short, for a metric or a tag.
    pub fn code_or_kind(&self) -> String {
        self.code.clone().unwrap_or_else(|| self.kind.to_string())
    }
}

/// Small trait so `from_sdk` can read the HTTP status of a service error without naming the
/// SDK's response type.
trait RawStatus {
    fn raw_http_status(&self) -> Option<u16>;
}

impl<E, R: fmt::Debug> RawStatus for aws_smithy_runtime_api::client::result::ServiceError<E, R> {
    fn raw_http_status(&self) -> Option<u16> {
        // The raw response type is generic; its Debug form is all that is known to exist.
        // Service errors are classified by code first, so the status only breaks ties for 5xx.
        let debug = format!("{:?}", self.raw());
        debug
            .split("StatusCode(")
            .nth(1)
            .and_then(|rest| rest.get(..3))
            .and_then(|digits| digits.parse().ok())
    }
}

/// EC2's code for a call the instance's state does not allow.
pub const INCORRECT_INSTANCE_STATE: &str = "IncorrectInstanceState";

/// The classification rules, on AWS's error code and message.
pub(crate) fn classify(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> AwsErrorKind {
    let message = message.unwrap_or_default();
    match code.unwrap_or_default() {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException" => AwsErrorKind::Throttled,
        "ConcurrentSnapshotLimitExceeded" | "SnapshotCreationPerVolumeRateExceeded" => {
            AwsErrorKind::SnapshotBusy
        }
        "SnapshotLimitExceeded" | "ResourceLimitExceeded" => AwsErrorKind::QuotaExceeded,
        "InvalidSnapshot.NotFound" | "InvalidVolume.NotFound" => AwsErrorKind::NotFound,
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => {
            AwsErrorKind::InstanceNotFound
        }
        "ValidationError" if message.contains("No active Lifecycle Action found") => {
            AwsErrorKind::NoActiveAction
        }
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            AwsErrorKind::AccessDenied
        }
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            AwsErrorKind::Unavailable
        }
        _ if status.is_some_and(|s| s >= 500) => AwsErrorKind::Unavailable,
        _ => AwsErrorKind::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_kinds_the_rescue_decides_on() {
        let cases = [
            (
                Some("RequestLimitExceeded"),
                None,
                None,
                AwsErrorKind::Throttled,
            ),
            (
                Some("Throttling"),
                Some("Rate exceeded"),
                None,
                AwsErrorKind::Throttled,
            ),
            (
                Some("ConcurrentSnapshotLimitExceeded"),
                None,
                None,
                AwsErrorKind::SnapshotBusy,
            ),
            (
                Some("SnapshotCreationPerVolumeRateExceeded"),
                None,
                None,
                AwsErrorKind::SnapshotBusy,
            ),
            (
                Some("SnapshotLimitExceeded"),
                None,
                None,
                AwsErrorKind::QuotaExceeded,
            ),
            (
                Some("InvalidSnapshot.NotFound"),
                None,
                None,
                AwsErrorKind::NotFound,
            ),
            (
                Some("InvalidInstanceID.NotFound"),
                None,
                None,
                AwsErrorKind::InstanceNotFound,
            ),
            (
                Some("ValidationError"),
                Some("No active Lifecycle Action found with instance ID i-0123456789abcdef0"),
                None,
                AwsErrorKind::NoActiveAction,
            ),
            (
                Some("ValidationError"),
                Some("something else"),
                None,
                AwsErrorKind::Rejected,
            ),
            (
                Some("UnauthorizedOperation"),
                None,
                None,
                AwsErrorKind::AccessDenied,
            ),
            (
                Some("InternalError"),
                None,
                Some(500),
                AwsErrorKind::Unavailable,
            ),
            (None, None, Some(503), AwsErrorKind::Unavailable),
            (
                Some("InvalidParameterValue"),
                None,
                Some(400),
                AwsErrorKind::Rejected,
            ),
        ];
        for (code, message, status, kind) in cases {
            assert_eq!(
                classify(code, message, status),
                kind,
                "{code:?} {message:?}"
            );
        }
    }

    #[test]
    fn display_carries_operation_kind_code_and_message() {
        let err = AwsError {
            operation: "CreateSnapshots",
            kind: AwsErrorKind::SnapshotBusy,
            code: Some("ConcurrentSnapshotLimitExceeded".into()),
            message: Some("too many".into()),
            source: None,
        };
        assert_eq!(
            err.to_string(),
            "CreateSnapshots: the volume has too many snapshots in flight (ConcurrentSnapshotLimitExceeded: too many)"
        );
        assert!(err.waiting_can_fix());
    }

    #[test]
    fn waiting_fixes_throttling_busy_volumes_and_hiccups_never_quotas_or_denials() {
        let waitable = [
            "RequestLimitExceeded",
            "ConcurrentSnapshotLimitExceeded",
            "SnapshotCreationPerVolumeRateExceeded",
            "InternalError",
        ];
        let permanent = [
            "SnapshotLimitExceeded",
            "UnauthorizedOperation",
            "InvalidParameterValue",
            "IncorrectState",
        ];
        for (codes, expected) in [(&waitable, true), (&permanent, false)] {
            for code in codes.iter() {
                let err = AwsError {
                    operation: "CreateSnapshots",
                    kind: classify(Some(code), None, Some(400)),
                    code: Some((*code).into()),
                    message: None,
                    source: None,
                };
                assert_eq!(err.waiting_can_fix(), expected, "{code}");
            }
        }
    }
}
