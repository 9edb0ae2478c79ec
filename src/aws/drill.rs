//! What `lifeboat drill` reads and sends: the function's configuration (Lambda), the rules that
//! invoke it (EventBridge), its volumes' keys (KMS), a session as the function's own role (STS)
//! and, in that session, every EC2 and Auto Scaling call a rescue makes — with `DryRun` where EC2
//! has it, and where Auto Scaling has none, on an instance no lifecycle action holds, so that
//! the answer is IAM's and nothing changes. For `--live`: one termination through Auto Scaling.
//! Lifeboat's own types in and out; it decides nothing.

use std::collections::BTreeMap;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{InstanceSpecification, ResourceType};
use aws_smithy_runtime_api::client::result::SdkError;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::ec2::{deleted_on_termination, filter, sdk_tags, tagged_at_creation};
use super::{AwsError, AwsErrorKind, Tags};
use crate::ids::{GroupName, HookName, InstanceId, VolumeId};

/// The function as Lambda describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionView {
    pub arn: String,
    pub role_arn: String,
    /// `Active`, `Pending`, `Inactive`, `Failed`.
    pub state: String,
    pub environment: BTreeMap<String, String>,
}

/// An EventBridge rule that invokes the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub name: String,
    pub schedule: Option<String>,
    pub pattern: Option<String>,
    pub enabled: bool,
}

/// A KMS key as KMS describes it to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    pub arn: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`…
    pub state: String,
    /// `CUSTOMER` or `AWS`.
    pub manager: String,
}

/// What IAM said to one call the role would make.
#[derive(Debug)]
pub enum Probe {
    /// IAM allows it (EC2's `DryRunOperation`; for Auto Scaling, the call reached validation).
    Allowed,
    /// IAM refuses it: `UnauthorizedOperation` or `AccessDenied`.
    Refused(String),
    /// Something else went wrong: the check could not be made.
    Failed(AwsError),
}

/// The answer that means IAM allowed a dry run (EC2's `DryRunOperation`).
const DRY_RUN: Option<&str> = Some("DryRunOperation");
/// The answer that means IAM allowed a lifecycle call on an instance no action holds: Auto
/// Scaling has no DryRun, and such a call passes IAM, then fails validation ("No active
/// Lifecycle Action found").
const LIFECYCLE_PROBE: Option<&str> = Some("ValidationError");
/// A read: allowed when it answers.
const READ: Option<&str> = None;

impl Probe {
    /// What `answer` says of the role: allowed when it succeeded (a dry run that "succeeds" is a
    /// service that ignored DryRun: allowed all the same) or ended with `passes_with`; refused
    /// on a denial; failed otherwise.
    fn of<T, E, R>(
        operation: &'static str,
        answer: Result<T, SdkError<E, R>>,
        passes_with: Option<&str>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let err = match answer {
            Ok(_) => return Self::Allowed,
            Err(err) => AwsError::from_sdk(operation, err),
        };
        if passes_with.is_some() && err.code.as_deref() == passes_with {
            Self::Allowed
        } else if err.is(AwsErrorKind::AccessDenied) {
            Self::Refused(format!(
                "{} refused it ({})",
                operation,
                err.code.clone().unwrap_or_else(|| "AccessDenied".into())
            ))
        } else {
            Self::Failed(err)
        }
    }
}

/// An instance no lifecycle action can hold: well-formed, never issued by EC2 (its id is all
/// zeros), so a lifecycle call on it is answered by IAM, then refused by validation.
pub const NO_SUCH_INSTANCE: &str = "i-00000000000000000";

/// The operator's clients for the drill.
pub struct DrillAws {
    config: aws_config::SdkConfig,
    lambda: aws_sdk_lambda::Client,
    events: aws_sdk_eventbridge::Client,
    kms: aws_sdk_kms::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
}

/// The same calls, signed as the function's role.
pub struct RoleSession {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

/// When EC2 says an instance was terminated: its state transition reason ends with the time,
/// to the second: "User initiated (2026-12-06 10:40:02 GMT)".
pub fn transition_time(reason: &str) -> Option<DateTime<Utc>> {
    let inside = reason.rsplit_once('(')?.1.split_once(')')?.0;
    let stamp = inside
        .trim_end_matches(" GMT")
        .trim_end_matches(" UTC")
        .trim();
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

impl DrillAws {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            lambda: aws_sdk_lambda::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
        }
    }

    /// The function by name or ARN; None when Lambda has no such function.
    pub async fn function(&self, name: &str) -> Result<Option<FunctionView>, AwsError> {
        const OP: &str = "GetFunctionConfiguration";
        let reply = match self
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
        {
            Ok(reply) => reply,
            Err(err) => {
                let err = AwsError::from_sdk(OP, err);
                return if err.code.as_deref() == Some("ResourceNotFoundException") {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
        };
        Ok(Some(FunctionView {
            arn: reply.function_arn().unwrap_or_default().to_owned(),
            role_arn: reply.role().unwrap_or_default().to_owned(),
            state: reply
                .state()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "Active".into()),
            environment: reply
                .environment()
                .and_then(|e| e.variables())
                .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }))
    }

    /// The EventBridge rules (on the default bus) whose targets include `function_arn`.
    pub async fn rules_invoking(&self, function_arn: &str) -> Result<Vec<RuleView>, AwsError> {
        let names = self
            .events
            .list_rule_names_by_target()
            .target_arn(function_arn)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("ListRuleNamesByTarget", err))?;
        let mut rules = Vec::new();
        for name in names.rule_names() {
            let rule = self
                .events
                .describe_rule()
                .name(name)
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DescribeRule", err))?;
            rules.push(RuleView {
                name: name.clone(),
                schedule: rule.schedule_expression().map(str::to_owned),
                pattern: rule.event_pattern().map(str::to_owned),
                enabled: rule.state().map(|s| s.as_str()) == Some("ENABLED"),
            });
        }
        Ok(rules)
    }

    /// The key, as the operator may see it; None when KMS does not know it.
    pub async fn key(&self, id: &str) -> Result<Option<KeyView>, AwsError> {
        match self.kms.describe_key().key_id(id).send().await {
            Ok(reply) => Ok(reply.key_metadata().map(|k| KeyView {
                arn: k.arn().unwrap_or(id).to_owned(),
                state: k
                    .key_state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                manager: k
                    .key_manager()
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default(),
            })),
            Err(err) => {
                let err = AwsError::from_sdk("DescribeKey", err);
                if err.code.as_deref() == Some("NotFoundException") {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The KMS keys of these volumes that are encrypted: volume → key (id or ARN, as EC2 says).
    pub async fn volume_keys(
        &self,
        volumes: &[VolumeId],
    ) -> Result<BTreeMap<VolumeId, String>, AwsError> {
        let reply = self
            .ec2
            .describe_volumes()
            .filters(filter("volume-id", volumes.iter().map(|v| v.to_string())))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeVolumes", err))?;
        Ok(reply
            .volumes()
            .iter()
            .filter(|v| v.encrypted().unwrap_or(false))
            .filter_map(|v| {
                Some((
                    VolumeId::parse(v.volume_id()?).ok()?,
                    v.kms_key_id().unwrap_or("alias/aws/ebs").to_owned(),
                ))
            })
            .collect())
    }

    /// A session as `role_arn` (`sts:AssumeRole`): refused unless the role's trust policy lets
    /// the operator assume it.
    pub async fn as_role(&self, role_arn: &str) -> Result<RoleSession, AwsError> {
        const OP: &str = "AssumeRole";
        let sts = aws_sdk_sts::Client::new(&self.config);
        let reply = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name("lifeboat-drill")
            .duration_seconds(900)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        let credentials = reply.credentials().ok_or_else(|| {
            AwsError::new(OP, AwsErrorKind::Rejected, "reply without credentials")
        })?;
        let provider = aws_sdk_ec2::config::Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            None,
            "lifeboat-drill",
        );
        let config = self
            .config
            .to_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
        Ok(RoleSession {
            ec2: aws_sdk_ec2::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
        })
    }

    /// Terminates the instance through its group, which launches a replacement
    /// (`TerminateInstanceInAutoScalingGroup`, desired capacity kept).
    pub async fn terminate_in_group(&self, instance: &InstanceId) -> Result<(), AwsError> {
        self.autoscaling
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance.as_str())
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("TerminateInstanceInAutoScalingGroup", err))?;
        Ok(())
    }

    /// The instance's life-cycle state in its group (`Terminating:Wait`…); None once it has
    /// left the group.
    pub async fn lifecycle_state(&self, instance: &InstanceId) -> Result<Option<String>, AwsError> {
        let reply = self
            .autoscaling
            .describe_auto_scaling_instances()
            .instance_ids(instance.as_str())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeAutoScalingInstances", err))?;
        Ok(reply
            .auto_scaling_instances()
            .first()
            .and_then(|i| i.lifecycle_state())
            .map(|s| s.to_owned()))
    }

    /// The instance's EC2 state and, once it is shutting down or terminated, when (from its
    /// state transition reason, to the second).
    pub async fn ec2_state(
        &self,
        instance: &InstanceId,
    ) -> Result<(String, Option<DateTime<Utc>>), AwsError> {
        let reply = self
            .ec2
            .describe_instances()
            .filters(filter("instance-id", [instance.as_str()]))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeInstances", err))?;
        let Some(found) = reply
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
        else {
            return Ok(("unknown".into(), None));
        };
        let state = found
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let when = if state == "shutting-down" || state == "terminated" {
            found.state_transition_reason().and_then(transition_time)
        } else {
            None
        };
        Ok((state, when))
    }
}

/// The tags a rescue's snapshots carry at creation, as the role's conditions read them.
pub fn rescue_tags(instance: &InstanceId, group: &GroupName, hook: &HookName) -> Tags {
    Tags::from([
        (crate::tags::INSTANCE_ID.to_owned(), instance.to_string()),
        (crate::tags::GROUP.to_owned(), group.to_string()),
        (crate::tags::HOOK.to_owned(), hook.to_string()),
        (
            crate::tags::STATE.to_owned(),
            crate::tags::RescueState::Pending.as_str().to_owned(),
        ),
        (
            crate::tags::STARTED_AT.to_owned(),
            crate::tags::timestamp(Utc::now()),
        ),
    ])
}

impl RoleSession {
    pub async fn describe_instances(&self, instance: &InstanceId) -> Probe {
        const OP: &str = "ec2:DescribeInstances";
        Probe::of(
            OP,
            self.ec2
                .describe_instances()
                .instance_ids(instance.as_str())
                .dry_run(true)
                .send()
                .await,
            DRY_RUN,
        )
    }

    pub async fn describe_volumes(&self, volumes: &[VolumeId]) -> Probe {
        const OP: &str = "ec2:DescribeVolumes";
        Probe::of(
            OP,
            self.ec2
                .describe_volumes()
                .set_volume_ids(Some(volumes.iter().map(|v| v.to_string()).collect()))
                .dry_run(true)
                .send()
                .await,
            DRY_RUN,
        )
    }

    pub async fn describe_snapshots(&self) -> Probe {
        const OP: &str = "ec2:DescribeSnapshots";
        Probe::of(
            OP,
            self.ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(filter("tag-key", [crate::tags::INSTANCE_ID]))
                .dry_run(true)
                .send()
                .await,
            DRY_RUN,
        )
    }

    /// Keep-first: every device's DeleteOnTermination to false.
    pub async fn keep_volumes(&self, instance: &InstanceId, devices: &[String]) -> Probe {
        const OP: &str = "ec2:ModifyInstanceAttribute";
        let mut call = self
            .ec2
            .modify_instance_attribute()
            .instance_id(instance.as_str())
            .dry_run(true);
        for device in devices {
            call = call.block_device_mappings(deleted_on_termination(device, false));
        }
        Probe::of(OP, call.send().await, DRY_RUN)
    }

    /// Tags, as a rescue writes them on the instance or a kept volume.
    pub async fn tag(&self, resource: &str, tags: &Tags) -> Probe {
        const OP: &str = "ec2:CreateTags";
        Probe::of(
            OP,
            self.ec2
                .create_tags()
                .resources(resource)
                .set_tags(Some(sdk_tags(tags)))
                .dry_run(true)
                .send()
                .await,
            DRY_RUN,
        )
    }

    /// The rescue's one crash-consistent call.
    pub async fn snapshot_instance(&self, instance: &InstanceId, tags: &Tags) -> Probe {
        const OP: &str = "ec2:CreateSnapshots";
        Probe::of(
            OP,
            self.ec2
                .create_snapshots()
                .instance_specification(
                    InstanceSpecification::builder()
                        .instance_id(instance.as_str())
                        .build(),
                )
                .tag_specifications(tagged_at_creation(ResourceType::Snapshot, tags))
                .dry_run(true)
                .send()
                .await,
            DRY_RUN,
        )
    }

    /// The per-volume path (a retry, or more than 40 volumes left out).
    pub async fn snapshot_volume(&self, volume: &VolumeId, tags: &Tags) -> Probe {
        const OP: &str = "ec2:CreateSnapshot";
        Probe::of(
            OP,
            self.ec2
                .create_snapshot()
                .volume_id(volume.as_str())
                .tag_specifications(tagged_at_creation(ResourceType::Snapshot, tags))
                .dry_run(true)
                .send()
                .await,
            DRY_RUN,
        )
    }

    pub async fn describe_group(&self, group: &GroupName) -> Probe {
        const OP: &str = "autoscaling:DescribeAutoScalingGroups";
        Probe::of(
            OP,
            self.autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group.as_str())
                .send()
                .await,
            READ,
        )
    }

    pub async fn describe_hooks(&self, group: &GroupName) -> Probe {
        const OP: &str = "autoscaling:DescribeLifecycleHooks";
        Probe::of(
            OP,
            self.autoscaling
                .describe_lifecycle_hooks()
                .auto_scaling_group_name(group.as_str())
                .send()
                .await,
            READ,
        )
    }

    /// Renewing the hold, on an instance no action holds.
    pub async fn heartbeat(&self, group: &GroupName, hook: &HookName) -> Probe {
        const OP: &str = "autoscaling:RecordLifecycleActionHeartbeat";
        Probe::of(
            OP,
            self.autoscaling
                .record_lifecycle_action_heartbeat()
                .auto_scaling_group_name(group.as_str())
                .lifecycle_hook_name(hook.as_str())
                .instance_id(NO_SUCH_INSTANCE)
                .send()
                .await,
            LIFECYCLE_PROBE,
        )
    }

    /// Completing an action, on an instance no action holds — and with ABANDON: even a probe
    /// never says CONTINUE.
    pub async fn complete(&self, group: &GroupName, hook: &HookName) -> Probe {
        const OP: &str = "autoscaling:CompleteLifecycleAction";
        Probe::of(
            OP,
            self.autoscaling
                .complete_lifecycle_action()
                .auto_scaling_group_name(group.as_str())
                .lifecycle_hook_name(hook.as_str())
                .instance_id(NO_SUCH_INSTANCE)
                .lifecycle_action_result("ABANDON")
                .send()
                .await,
            LIFECYCLE_PROBE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termination_time_is_read_from_the_state_transition_reason() {
        let at = transition_time("User initiated (2026-12-06 10:40:02 GMT)").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-06T10:40:02+00:00");
        assert!(transition_time("Service initiated (2026-12-06 10:40:02 UTC)").is_some());
        assert_eq!(transition_time(""), None);
        assert_eq!(transition_time("User initiated"), None);
        assert_eq!(transition_time("(not a time)"), None);
    }
}
