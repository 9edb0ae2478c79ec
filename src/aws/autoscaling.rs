//! The Auto Scaling adapter: `Lifecycle` over the AWS SDK's Auto Scaling client — heartbeats,
//! completions, hook timings and the instances held in `Terminating:Wait`. It decides nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LifecycleState;

use super::{ActionRef, ActionResult, AwsError, GroupScope, HookFacts, Lifecycle, WaitingInstance};
use crate::ids::{GroupName, HookName, InstanceId};

/// A hook's timings rarely change; ask again after this long.
const HOOK_FACTS_TTL: Duration = Duration::from_secs(300);
/// `DescribeAutoScalingGroups` takes at most this many names per request.
const GROUP_NAMES_PER_REQUEST: usize = 100;
/// AWS's ceiling on a hook's global timeout: 48 hours.
const GLOBAL_TIMEOUT_CEILING: Duration = Duration::from_secs(48 * 3600);

/// `Lifecycle` on a real Auto Scaling client.
pub struct AutoScalingAdapter {
    client: aws_sdk_autoscaling::Client,
    hooks: Mutex<HashMap<(GroupName, HookName), (Instant, Option<HookFacts>)>>,
}

impl AutoScalingAdapter {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        Self {
            client,
            hooks: Mutex::new(HashMap::new()),
        }
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
        let requests: Vec<Option<&[GroupName]>> = match scope {
            GroupScope::All => vec![None],
            GroupScope::Named(names) => names.chunks(GROUP_NAMES_PER_REQUEST).map(Some).collect(),
        };
        let mut waiting = Vec::new();
        for names in requests {
            let mut call = self.client.describe_auto_scaling_groups();
            for name in names.unwrap_or_default() {
                call = call.auto_scaling_group_names(name.as_str());
            }
            let mut pages = call.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|err| AwsError::from_sdk("DescribeAutoScalingGroups", err))?;
                for group in page.auto_scaling_groups() {
                    let Some(group_name) = group
                        .auto_scaling_group_name()
                        .and_then(|n| GroupName::parse(n).ok())
                    else {
                        continue;
                    };
                    for instance in group.instances() {
                        if instance.lifecycle_state() != Some(&LifecycleState::TerminatingWait) {
                            continue;
                        }
                        if let Some(id) = instance
                            .instance_id()
                            .and_then(|i| InstanceId::parse(i).ok())
                        {
                            waiting.push(WaitingInstance {
                                group: group_name.clone(),
                                instance_id: id,
                            });
                        }
                    }
                }
            }
        }
        Ok(waiting)
    }
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
