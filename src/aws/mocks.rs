//! Real SDK clients for the adapters' tests: lifeboat's own retry configuration, answers from
//! `aws-smithy-mocks` rules instead of the network.

use aws_sdk_ec2::config::{Credentials, Region};
use aws_smithy_mocks::{create_mock_http_client, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;

use super::client::retry_config;

fn interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |i, rule| i.with_rule(rule),
    )
}

pub fn ec2(rules: &[&Rule]) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(retry_config())
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

pub fn autoscaling(rules: &[&Rule]) -> aws_sdk_autoscaling::Client {
    let config = aws_sdk_autoscaling::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_autoscaling::config::Region::from_static(
            "us-east-1",
        ))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(retry_config())
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .build();
    aws_sdk_autoscaling::Client::from_conf(config)
}

/// An AWS error as the service would send it: a code and a message.
pub fn aws_error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}
