//! The operator's commands of the `lifeboat` binary — `list`, `watch`, `restore`, `audit` — as
//! library code: each reads (and for `restore`, changes) AWS through
//! [`crate::aws::operator::OperatorAws`] with the operator's own credentials, and returns what
//! it found in lifeboat's types for the binary to print as a table or as JSON.

pub mod audit;
pub mod drill;
pub mod list;
pub mod regions;
pub mod restore;
pub mod table;
pub mod watch;

use crate::aws::AwsError;

/// Why an operator's command stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An argument the operator gave, named, with what is wrong with it.
    #[error("{argument} {value:?}: {reason}")]
    Argument {
        argument: &'static str,
        value: String,
        reason: String,
    },
    /// The command refused before changing anything.
    #[error("refused, nothing was changed: {0}")]
    Refused(String),
    /// The command started what must come first, and is to be run again later.
    #[error("not yet: {0}")]
    NotYet(String),
    /// AWS answered with an error.
    #[error("{context}: {source}")]
    Aws {
        context: String,
        #[source]
        source: AwsError,
    },
}

impl OperatorError {
    pub fn argument(argument: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::Argument {
            argument,
            value: value.chars().take(200).collect(),
            reason: reason.into(),
        }
    }
}

/// Wraps an AWS error with what the command was doing.
pub fn aws_error(context: impl Into<String>) -> impl FnOnce(AwsError) -> OperatorError {
    let context = context.into();
    move |source| OperatorError::Aws { context, source }
}

/// `90s`, `30m`, `12h`, `7d`, `2w`: a span of time for `--since` and friends.
pub fn parse_span(argument: &'static str, text: &str) -> Result<chrono::Duration, OperatorError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: i64 = number.parse().map_err(|_| {
        OperatorError::argument(
            argument,
            text,
            "expected a number and a unit: 90s, 30m, 12h, 7d, 2w",
        )
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(OperatorError::argument(
                argument,
                text,
                "unknown unit; use s, m, h, d or w",
            ))
        }
    };
    amount
        .checked_mul(seconds)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(chrono::Duration::seconds)
        .ok_or_else(|| OperatorError::argument(argument, text, "too long"))
}

/// `3h 05m`, `12m 30s`, `45s`: a duration as an operator reads it.
pub fn human(duration: chrono::Duration) -> String {
    let total = duration.num_seconds().max(0);
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_every_unit_and_name_the_bad_value() {
        assert_eq!(parse_span("--since", "90s").unwrap().num_seconds(), 90);
        assert_eq!(parse_span("--since", "30m").unwrap().num_seconds(), 1800);
        assert_eq!(parse_span("--since", "12h").unwrap().num_seconds(), 43_200);
        assert_eq!(parse_span("--since", "7d").unwrap().num_seconds(), 604_800);
        assert_eq!(
            parse_span("--since", "2w").unwrap().num_seconds(),
            1_209_600
        );
        for bad in ["", "h", "12", "12y", "-3d", "99999999999999999999d"] {
            let err = parse_span("--since", bad).unwrap_err().to_string();
            assert!(err.starts_with("--since"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_read_as_an_operator_would() {
        assert_eq!(human(chrono::Duration::seconds(45)), "45s");
        assert_eq!(human(chrono::Duration::seconds(750)), "12m 30s");
        assert_eq!(human(chrono::Duration::seconds(11_100)), "3h 05m");
        assert_eq!(human(chrono::Duration::seconds(-5)), "0s");
        assert_eq!(human(chrono::Duration::seconds(90_000)), "1d 01h");
    }
}
