//! Validated identifiers: the AWS names lifeboat reads from events and tags and writes back into
//! API calls, tags and logs. Each is checked once, where it enters, so the rest of the code never
//! sees an id that could inject into a tag or a log line.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `text` as one printable line of at most `max` characters, for logs and error messages that
/// may quote outside input.
pub fn one_line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// Why a string is not a valid identifier of its kind; names the kind and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not valid: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    /// The offending value, shortened and with control characters escaped by `{:?}`.
    pub value: String,
    pub reason: &'static str,
}

impl InvalidId {
    pub fn new(kind: &'static str, value: &str, reason: &'static str) -> Self {
        let value: String = value.chars().take(80).collect();
        Self {
            kind,
            value,
            reason,
        }
    }
}

/// `prefix-` followed by 8 or 17 lowercase hex digits, as EC2 issues them.
fn check_ec2_id(kind: &'static str, prefix: &str, value: &str) -> Result<(), InvalidId> {
    let Some(hex) = value.strip_prefix(prefix) else {
        return Err(InvalidId::new(kind, value, "wrong prefix"));
    };
    if hex.len() != 8 && hex.len() != 17 {
        return Err(InvalidId::new(kind, value, "expected 8 or 17 hex digits"));
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(InvalidId::new(kind, value, "expected lowercase hex digits"));
    }
    Ok(())
}

/// A name from Auto Scaling: 1 to 255 characters, none of them a control character.
fn check_name(kind: &'static str, value: &str, max: usize) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId::new(kind, value, "empty"));
    }
    if value.chars().count() > max {
        return Err(InvalidId::new(kind, value, "too long"));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidId::new(kind, value, "contains a control character"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, |$v:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const KIND: &'static str = $kind;

            pub fn parse($v: &str) -> Result<Self, InvalidId> {
                $check?;
                Ok(Self($v.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// An EC2 instance id, `i-` and 8 or 17 hex digits.
    InstanceId,
    "instance id",
    |v| check_ec2_id("instance id", "i-", v)
);
id_type!(
    /// An EBS volume id, `vol-` and 8 or 17 hex digits.
    VolumeId,
    "volume id",
    |v| check_ec2_id("volume id", "vol-", v)
);
id_type!(
    /// An EBS snapshot id, `snap-` and 8 or 17 hex digits.
    SnapshotId,
    "snapshot id",
    |v| check_ec2_id("snapshot id", "snap-", v)
);
id_type!(
    /// An Auto Scaling group name.
    GroupName,
    "Auto Scaling group name",
    |v| check_name("Auto Scaling group name", v, 255)
);
id_type!(
    /// A lifecycle hook name: letters, digits, `-`, `_` and `/`, as Auto Scaling allows.
    HookName,
    "lifecycle hook name",
    |v| check_name("lifecycle hook name", v, 255).and_then(|()| {
        if v.chars().all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c)) {
            Ok(())
        } else {
            Err(InvalidId::new("lifecycle hook name", v, "only letters, digits, '-', '_' and '/' are allowed"))
        }
    })
);
id_type!(
    /// A lifecycle action token: 36 characters of hex digits and dashes.
    ActionToken,
    "lifecycle action token",
    |v| if v.len() == 36 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        Ok(())
    } else {
        Err(InvalidId::new("lifecycle action token", v, "expected 36 hex digits and dashes"))
    }
);

/// A lifecycle action, named as both lifecycle calls accept it: group, hook and instance. It is
/// also a rescue's identity (an instance is terminated once; one rescue per hook).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActionRef {
    pub group: GroupName,
    pub hook: HookName,
    pub instance_id: InstanceId,
}

/// An EC2 resource lifeboat tags: the instance (its rescue's record before a snapshot exists),
/// a volume (kept), a snapshot (the rescue's label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceId {
    Instance(InstanceId),
    Volume(VolumeId),
    Snapshot(SnapshotId),
}

impl ResourceId {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Instance(id) => id.as_str(),
            Self::Volume(id) => id.as_str(),
            Self::Snapshot(id) => id.as_str(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id at the end of an ARN: everything after the last `/`. EBS events name snapshots and
/// volumes by ARN in more than one form (`arn:aws:ec2::us-east-1:snapshot/snap-…` and
/// `arn:aws:ec2:us-east-1:123456789012:snapshot/snap-…`), and a bare id passes through.
pub fn id_from_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_ids_accept_both_lengths_and_reject_the_rest() {
        assert!(InstanceId::parse("i-0123456789abcdef0").is_ok());
        assert!(InstanceId::parse("i-01234567").is_ok());
        for bad in [
            "",
            "i-",
            "i-0123",
            "vol-0123456789abcdef0",
            "i-0123456789ABCDEF0",
            "i-0123456789abcdefg",
            "i-01234567\n",
        ] {
            let err = InstanceId::parse(bad).unwrap_err();
            assert_eq!(err.kind, "instance id", "{bad:?}");
        }
        assert!(VolumeId::parse("vol-0a1b2c3d").is_ok());
        assert!(SnapshotId::parse("snap-0a1b2c3d4e5f60718").is_ok());
        assert!(SnapshotId::parse("vol-0a1b2c3d").is_err());
    }

    #[test]
    fn names_reject_control_characters_and_empty_and_overlong() {
        assert!(GroupName::parse("api-db-fleet").is_ok());
        assert!(GroupName::parse("").is_err());
        assert!(GroupName::parse("evil\nname").is_err());
        assert!(GroupName::parse(&"g".repeat(256)).is_err());
        assert!(HookName::parse("lifeboat").is_ok());
        assert!(HookName::parse("lifeboat hook").is_err());
    }

    #[test]
    fn error_names_the_kind_and_value() {
        let err = VolumeId::parse("volume-1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume id \"volume-1\" is not valid: wrong prefix"
        );
    }

    #[test]
    fn id_from_arn_takes_the_part_after_the_last_slash() {
        assert_eq!(
            id_from_arn("arn:aws:ec2::us-east-1:snapshot/snap-01234567"),
            "snap-01234567"
        );
        assert_eq!(
            id_from_arn("arn:aws:ec2:us-east-1:123456789012:snapshot/snap-01234567"),
            "snap-01234567"
        );
        assert_eq!(id_from_arn("snap-01234567"), "snap-01234567");
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let ok: InstanceId = serde_json::from_str("\"i-0123456789abcdef0\"").unwrap();
        assert_eq!(ok.as_str(), "i-0123456789abcdef0");
        assert!(serde_json::from_str::<InstanceId>("\"i-nope\"").is_err());
    }
}
