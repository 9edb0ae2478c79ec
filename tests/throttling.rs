//! The account's API budget, end to end: the local AWS throttles as EC2 and Auto Scaling do
//! (`localaws/throttle.py`), and lifeboat keeps to its share of every bucket (`src/aws/budget.rs`)
//! — whatever the size of the storm.

mod support;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use serde_json::json;

use lifeboat::report::Outcome;
use support::{BucketUsage, World};

/// Clients of the world's local AWS that never retry: each refusal is seen.
async fn unretried(w: &World) -> (aws_sdk_ec2::Client, aws_sdk_autoscaling::Client) {
    let config = w
        .sdk
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    (
        aws_sdk_ec2::Client::new(&config),
        aws_sdk_autoscaling::Client::new(&config),
    )
}

fn error_code<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn each_ec2_api_has_its_bucket_and_auto_scaling_one_for_all() {
    let w = World::new(&[]).await;
    let instance = w.group("burst", 1, &["/dev/sda1"], 900).await.remove(0);
    // (Every refusal here is the bucket's: no response lost. AWS's clock stands still, so no
    // bucket refills while the calls go, however slow the machine; a minute first fills them.)
    w.edges(&["lost-responses"], json!({}));
    w.stop_aws_clock();
    w.advance(60);
    let (ec2, asg) = unretried(&w).await;
    // WHEN 130 CreateTags go at once THEN its bucket (100 tokens, 10 a second) admits 100 and
    // refuses the rest with RequestLimitExceeded
    let mut refused = 0;
    for n in 0..130 {
        let reply = ec2
            .create_tags()
            .resources(&instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("n")
                    .value(n.to_string())
                    .build(),
            )
            .send()
            .await;
        if let Err(err) = reply {
            assert_eq!(error_code(&err), "RequestLimitExceeded");
            refused += 1;
        }
    }
    assert_eq!(refused, 30);
    // …while another API's bucket is untouched: a DescribeInstances with a filter draws from
    // its 100 tokens, one naming InstanceIds from the unfiltered bucket of 50
    let mut unfiltered_refused = 0;
    for _ in 0..60 {
        if ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .is_err()
        {
            unfiltered_refused += 1;
        }
    }
    assert_eq!(unfiltered_refused, 10);
    for _ in 0..60 {
        ec2.describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .values(&instance)
                    .build(),
            )
            .send()
            .await
            .expect("the filtered bucket is another one");
    }
    // WHEN Auto Scaling's calls of different actions add up past 50 THEN they are throttled
    // together: one bucket for the account
    let mut throttled = 0;
    for n in 0..60 {
        let code = if n % 2 == 0 {
            asg.describe_auto_scaling_groups()
                .send()
                .await
                .err()
                .map(|err| error_code(&err))
        } else {
            asg.describe_lifecycle_hooks()
                .auto_scaling_group_name("burst")
                .send()
                .await
                .err()
                .map(|err| error_code(&err))
        };
        if let Some(code) = code {
            assert_eq!(code, "Throttling");
            throttled += 1;
        }
    }
    assert_eq!(throttled, 10);
}

#[tokio::test]
async fn other_tenants_draw_their_share_of_every_refill() {
    let w = World::new(&[]).await;
    let instance = w.group("tenants", 1, &["/dev/sda1"], 900).await.remove(0);
    // (Every refusal here is the bucket's: no response lost. AWS's clock moves only when the
    // test moves it.)
    w.edges(&["lost-responses"], json!({"other_tenants_share": 0.5}));
    w.stop_aws_clock();
    let (ec2, _) = unretried(&w).await;
    let tag = |n: usize| {
        ec2.create_tags()
            .resources(&instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("n")
                    .value(n.to_string())
                    .build(),
            )
            .send()
    };
    // GIVEN the CreateTags bucket emptied
    let mut n = 0;
    while tag(n).await.is_ok() {
        n += 1;
    }
    // WHEN ten seconds pass THEN it has refilled by half of 10 a second: 50 tokens, not 100,
    // and the one call that reads them takes one
    w.advance(10);
    tag(n).await.expect("a token");
    let report = w.aws.control("throttle", None);
    let tokens = report["buckets"]["ec2:CreateTags"]["tokens"]
        .as_f64()
        .unwrap_or(-1.0);
    assert_eq!(tokens, 49.0, "{report}");
}

/// Lifeboat's use of one bucket, as the local AWS counted it (lifeboat signs as `test`).
fn lifeboats_calls(w: &World, bucket: &str) -> BucketUsage {
    BucketUsage::of_caller(&w.aws.control("throttle", None), "test")
        .into_iter()
        .find(|(name, _)| name == bucket)
        .map(|(_, usage)| usage)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_storm_keeps_to_lifeboats_share_of_the_smallest_bucket() {
    // GIVEN lifeboat allowed a tenth of every bucket: ModifyInstanceAttribute (50 tokens, 5 a
    // second) then gives it bursts of 5 calls and half a call a second; the other tenants take
    // half of every refill
    let w = World::new(&[("LIFEBOAT_API_SHARE_PERCENT", "10")]).await;
    // (No response lost: each call is counted once.)
    w.edges(&["lost-responses"], json!({"other_tenants_share": 0.5}));
    w.snapshots_take(1.0, &[]);
    let instances = w.group("storm", 6, &["/dev/sda1", "/dev/sdf"], 900).await;
    // WHEN six instances are terminated at once and their events delivered together
    let mut events = Vec::new();
    for instance in &instances {
        events.extend(w.terminate(instance).await);
    }
    let deliveries = events.iter().map(|e| w.deliver(e));
    let reports = futures_util::future::join_all(deliveries).await;
    // THEN every rescue is released (those left waiting by a busy account, by the completion
    // events)…
    let mut released = reports
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|r| r.rescues[0].outcome == Outcome::Released)
        })
        .count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for event in w.take_events_of("EBS Multi-Volume Snapshots Completion Status") {
        if let Ok(report) = w.deliver(&event).await {
            released += report.count(Outcome::Released);
        }
    }
    assert_eq!(released, 6);
    // …and every call waited for its turn — keep first and the give-back, twelve calls, in
    // bursts of at most five and then one every two seconds —: nothing was throttled by AWS
    let usage = lifeboats_calls(&w, "ec2:ModifyInstanceAttribute");
    assert_eq!(usage.throttled, 0);
    assert_eq!(usage.calls, 12);
    let (window, second) = usage.busiest(10);
    assert!(
        window <= 5 + 5 + 1,
        "{window} calls in 10 s from {second}: {:?}",
        usage.by_second
    );
    w.assert_no_data_lost();
}
