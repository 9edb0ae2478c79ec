//! The Auto Scaling adapter: `Lifecycle` over the AWS SDK's Auto Scaling client — heartbeats,
//! completions, hook timings and the instances held in `Terminating:Wait` (and, in a warm pool,
//! `Warmed:Terminating:Wait`). It decides nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{AutoScalingGroup, Instance, LifecycleState};

use super::budget::{Api, Budget};
use super::{ActionRef, ActionResult, AwsError, GroupScope, HookFacts, Lifecycle, WaitingInstance};
use crate::ids::{GroupName, HookName, InstanceId};

/// A hook's timings rarely change; ask again after this long.
const HOOK_FACTS_TTL: Duration = Duration::from_secs(300);
/// `DescribeAutoScalingGroups` takes at most this many names per request.
const GROUP_NAMES_PER_REQUEST: usize = 100;
/// AWS's ceiling on a hook's global timeout: 48 hours.
const GLOBAL_TIMEOUT_CEILING: Duration = Duration::from_secs(48 * 3600);

/// What `DescribeLifecycleHooks` said of a group's hook, and when it was asked.
type HookCache = HashMap<(GroupName, HookName), (Instant, Option<HookFacts>)>;

/// `Lifecycle` on a real Auto Scaling client.
pub struct AutoScalingAdapter {
    client: aws_sdk_autoscaling::Client,
    /// This environment's pace on Auto Scaling's one bucket.
    budget: Arc<Budget>,
    hooks: Mutex<HookCache>,
}

impl AutoScalingAdapter {
    /// Unpaced: for tests of the requests.
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        Self::with_budget(client, Arc::new(Budget::unlimited()))
    }

    pub fn with_budget(client: aws_sdk_autoscaling::Client, budget: Arc<Budget>) -> Self {
        Self {
            client,
            budget,
            hooks: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for this environment's turn on Auto Scaling's bucket.
    async fn turn(&self) {
        self.budget.take(Api::AutoScaling).await;
    }

    fn cached_hook(&self, key: &(GroupName, HookName)) -> Option<Option<HookFacts>> {
        let cache = self.hooks.lock().ok()?;
        let (at, facts) = cache.get(key)?;
        (at.elapsed() < HOOK_FACTS_TTL).then(|| facts.clone())
    }
}

/// The global timeout AWS applies: `GlobalTimeout` when reported, else min(48 h, 100 × heartbeat).
pub fn global_timeout(heartbeat: Duration, reported: Option<Duration>) -> Duration {
    reported.unwrap_or_else(|| (heartbeat * 100).min(GLOBAL_TIMEOUT_CEILING))
}

impl Lifecycle for AutoScalingAdapter {
    async fn heartbeat(&self, action: &ActionRef) -> Result<(), AwsError> {
        self.turn().await;
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(action.group.as_str())
            .lifecycle_hook_name(action.hook.as_str())
            .instance_id(action.instance_id.as_str())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("RecordLifecycleActionHeartbeat", err))?;
        Ok(())
    }

    async fn complete(&self, action: &ActionRef, result: ActionResult) -> Result<(), AwsError> {
        self.turn().await;
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(action.group.as_str())
            .lifecycle_hook_name(action.hook.as_str())
            .instance_id(action.instance_id.as_str())
            .lifecycle_action_result(result.as_str())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("CompleteLifecycleAction", err))?;
        Ok(())
    }

    async fn hook_facts(
        &self,
        group: &GroupName,
        hook: &HookName,
    ) -> Result<Option<HookFacts>, AwsError> {
        let key = (group.clone(), hook.clone());
        if let Some(known) = self.cached_hook(&key) {
            return Ok(known);
        }
        self.turn().await;
        let reply = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group.as_str())
            .lifecycle_hook_names(hook.as_str())
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeLifecycleHooks", err))?;
        let facts = reply
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_hook_name() == Some(hook.as_str()))
            .and_then(|h| {
                let heartbeat = Duration::from_secs(u64::try_from(h.heartbeat_timeout()?).ok()?);
                let reported = h
                    .global_timeout()
                    .and_then(|g| u64::try_from(g).ok())
                    .map(Duration::from_secs);
                Some(HookFacts {
                    heartbeat_timeout: heartbeat,
                    global_timeout: global_timeout(heartbeat, reported),
                    notification_metadata: h.notification_metadata().map(str::to_owned),
                })
            });
        if let Ok(mut cache) = self.hooks.lock() {
            cache.insert(key, (Instant::now(), facts.clone()));
        }
        Ok(facts)
    }

    async fn waiting_instances(
        &self,
        scope: &GroupScope,
    ) -> Result<Vec<WaitingInstance>, AwsError> {
        let mut waiting = Vec::new();
        for group in describe_groups(&self.client, &self.budget, scope).await? {
            let Some(group_name) = group
                .auto_scaling_group_name()
                .and_then(|n| GroupName::parse(n).ok())
            else {
                continue;
            };
            let held = |instance: &Instance, state: LifecycleState, from_warm_pool: bool| {
                (instance.lifecycle_state() == Some(&state))
                    .then(|| {
                        instance
                            .instance_id()
                            .and_then(|i| InstanceId::parse(i).ok())
                    })
                    .flatten()
                    .map(|instance_id| WaitingInstance {
                        group: group_name.clone(),
                        instance_id,
                        from_warm_pool,
                    })
            };
            waiting.extend(
                group
                    .instances()
                    .iter()
                    .filter_map(|i| held(i, LifecycleState::TerminatingWait, false)),
            );
            // A warm pool's instances are not the group's: DescribeWarmPool lists them, and one
            // being terminated waits in Warmed:Terminating:Wait ("Using lifecycle hooks with a
            // warm pool", Amazon EC2 Auto Scaling User Guide).
            if group.warm_pool_configuration().is_some() {
                for instance in self.warm_pool(&group_name).await? {
                    waiting.extend(held(&instance, LifecycleState::WarmedTerminatingWait, true));
                }
            }
        }
        Ok(waiting)
    }
}

impl AutoScalingAdapter {
    /// The instances of a group's warm pool, across pages.
    async fn warm_pool(&self, group: &GroupName) -> Result<Vec<Instance>, AwsError> {
        let mut instances = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            self.turn().await;
            let page = self
                .client
                .describe_warm_pool()
                .auto_scaling_group_name(group.as_str())
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DescribeWarmPool", err))?;
            instances.extend(page.instances().iter().cloned());
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(instances),
            }
        }
    }
}

/// Every group of `scope`, as `DescribeAutoScalingGroups` pages them (100 names a request).
pub(super) async fn describe_groups(
    client: &aws_sdk_autoscaling::Client,
    budget: &Budget,
    scope: &GroupScope,
) -> Result<Vec<AutoScalingGroup>, AwsError> {
    let requests: Vec<Option<&[GroupName]>> = match scope {
        GroupScope::All => vec![None],
        GroupScope::Named(names) => names.chunks(GROUP_NAMES_PER_REQUEST).map(Some).collect(),
    };
    let mut groups = Vec::new();
    for names in requests {
        let mut call = client.describe_auto_scaling_groups();
        for name in names.unwrap_or_default() {
            call = call.auto_scaling_group_names(name.as_str());
        }
        let mut pages = call.into_paginator().send();
        while let Some(page) = {
            budget.take(Api::AutoScaling).await;
            pages.next().await
        } {
            let page = page.map_err(|err| AwsError::from_sdk("DescribeAutoScalingGroups", err))?;
            groups.extend(page.auto_scaling_groups().iter().cloned());
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_timeout_is_reported_or_a_hundred_heartbeats_capped_at_48_hours() {
        let hb = Duration::from_secs(300);
        assert_eq!(global_timeout(hb, None), Duration::from_secs(30_000));
        assert_eq!(
            global_timeout(Duration::from_secs(7200), None),
            GLOBAL_TIMEOUT_CEILING
        );
        assert_eq!(
            global_timeout(hb, Some(Duration::from_secs(1000))),
            Duration::from_secs(1000)
        );
    }
}

#[cfg(test)]
mod adapter_tests {
    use aws_sdk_autoscaling::operation::complete_lifecycle_action::{
        CompleteLifecycleActionError, CompleteLifecycleActionOutput,
    };
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_autoscaling::operation::describe_lifecycle_hooks::DescribeLifecycleHooksOutput;
    use aws_sdk_autoscaling::operation::describe_warm_pool::DescribeWarmPoolOutput;
    use aws_sdk_autoscaling::operation::record_lifecycle_action_heartbeat::{
        RecordLifecycleActionHeartbeatError, RecordLifecycleActionHeartbeatOutput,
    };
    use aws_sdk_autoscaling::types::{
        AutoScalingGroup, Instance, LifecycleHook, WarmPoolConfiguration,
    };
    use aws_sdk_autoscaling::Client;
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::aws::mocks::{autoscaling, aws_error};
    use crate::aws::AwsErrorKind;

    fn action() -> ActionRef {
        ActionRef {
            group: GroupName::parse("api-db").unwrap(),
            hook: HookName::parse("lifeboat").unwrap(),
            instance_id: InstanceId::parse("i-0123456789abcdef0").unwrap(),
        }
    }

    #[tokio::test]
    async fn complete_names_group_hook_instance_and_result() {
        for (result, name) in [
            (ActionResult::Continue, "CONTINUE"),
            (ActionResult::Abandon, "ABANDON"),
        ] {
            let rule = mock!(Client::complete_lifecycle_action)
                .match_requests(move |r| {
                    r.auto_scaling_group_name() == Some("api-db")
                        && r.lifecycle_hook_name() == Some("lifeboat")
                        && r.instance_id() == Some("i-0123456789abcdef0")
                        && r.lifecycle_action_result() == Some(name)
                })
                .then_output(|| CompleteLifecycleActionOutput::builder().build());
            AutoScalingAdapter::new(autoscaling(&[&rule]))
                .complete(&action(), result)
                .await
                .unwrap();
            assert_eq!(rule.num_calls(), 1);
        }
    }

    #[tokio::test]
    async fn no_active_lifecycle_action_is_its_own_kind() {
        let rule = mock!(Client::complete_lifecycle_action).then_error(|| {
            CompleteLifecycleActionError::generic(aws_error(
                "ValidationError",
                "No active Lifecycle Action found with instance ID i-0123456789abcdef0",
            ))
        });
        let err = AutoScalingAdapter::new(autoscaling(&[&rule]))
            .complete(&action(), ActionResult::Continue)
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NoActiveAction);
        assert_eq!(rule.num_calls(), 1, "not retried");
        let heartbeat = mock!(Client::record_lifecycle_action_heartbeat).then_error(|| {
            RecordLifecycleActionHeartbeatError::generic(aws_error(
                "ValidationError",
                "No active Lifecycle Action found with instance ID i-0123456789abcdef0",
            ))
        });
        let err = AutoScalingAdapter::new(autoscaling(&[&heartbeat]))
            .heartbeat(&action())
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NoActiveAction);
    }

    // Paused time: the SDK's backoff sleeps pass at once.
    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_by_the_sdk() {
        let rule = mock!(Client::record_lifecycle_action_heartbeat)
            .sequence()
            .error(|| {
                RecordLifecycleActionHeartbeatError::generic(aws_error(
                    "Throttling",
                    "Rate exceeded",
                ))
            })
            .times(3)
            .output(|| RecordLifecycleActionHeartbeatOutput::builder().build())
            .build();
        AutoScalingAdapter::new(autoscaling(&[&rule]))
            .heartbeat(&action())
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 4);
    }

    #[tokio::test]
    async fn hook_facts_are_read_once_and_cached() {
        let rule = mock!(Client::describe_lifecycle_hooks)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some("api-db")
                    && r.lifecycle_hook_names() == ["lifeboat"]
            })
            .then_output(|| {
                DescribeLifecycleHooksOutput::builder()
                    .lifecycle_hooks(
                        LifecycleHook::builder()
                            .lifecycle_hook_name("lifeboat")
                            .heartbeat_timeout(900)
                            .global_timeout(90_000)
                            .notification_metadata(r#"{"max_attempts": 5}"#)
                            .build(),
                    )
                    .build()
            });
        let adapter = AutoScalingAdapter::new(autoscaling(&[&rule]));
        for _ in 0..3 {
            let facts = adapter
                .hook_facts(&action().group, &action().hook)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(facts.heartbeat_timeout, Duration::from_secs(900));
            assert_eq!(facts.global_timeout, Duration::from_secs(90_000));
            assert_eq!(
                facts.notification_metadata.as_deref(),
                Some(r#"{"max_attempts": 5}"#)
            );
        }
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn waiting_instances_are_the_ones_in_terminating_wait_and_the_warm_pools_own() {
        let instance = |id: &str, state: LifecycleState| {
            Instance::builder()
                .instance_id(id)
                .lifecycle_state(state)
                .build()
        };
        let groups = mock!(Client::describe_auto_scaling_groups)
            .match_requests(|r| r.auto_scaling_group_names() == ["api-db", "workers"])
            .then_output(move || {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(
                        AutoScalingGroup::builder()
                            .auto_scaling_group_name("api-db")
                            .instances(instance("i-00000001", LifecycleState::InService))
                            .instances(instance("i-00000002", LifecycleState::TerminatingWait))
                            .instances(instance("i-00000003", LifecycleState::TerminatingProceed))
                            .build(),
                    )
                    .auto_scaling_groups(
                        AutoScalingGroup::builder()
                            .auto_scaling_group_name("workers")
                            .warm_pool_configuration(
                                WarmPoolConfiguration::builder().min_size(2).build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let warm = mock!(Client::describe_warm_pool)
            .match_requests(|r| r.auto_scaling_group_name() == Some("workers"))
            .then_output(move || {
                DescribeWarmPoolOutput::builder()
                    .instances(instance("i-00000004", LifecycleState::WarmedStopped))
                    .instances(instance(
                        "i-00000005",
                        LifecycleState::WarmedTerminatingWait,
                    ))
                    .build()
            });
        let waiting = AutoScalingAdapter::new(autoscaling(&[&groups, &warm]))
            .waiting_instances(&GroupScope::Named(vec![
                GroupName::parse("api-db").unwrap(),
                GroupName::parse("workers").unwrap(),
            ]))
            .await
            .unwrap();
        let found: Vec<(&str, &str, bool)> = waiting
            .iter()
            .map(|w| (w.group.as_str(), w.instance_id.as_str(), w.from_warm_pool))
            .collect();
        assert_eq!(
            found,
            [
                ("api-db", "i-00000002", false),
                ("workers", "i-00000005", true)
            ]
        );
        assert_eq!(
            warm.num_calls(),
            1,
            "only the group with a warm pool is asked"
        );
    }
}
