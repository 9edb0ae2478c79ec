//! The Lambda function: JSON logs, configuration from the environment, the SDK clients built
//! once, and every event handed to `Lifeboat::handle` with the invocation's deadline.

use chrono::DateTime;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use lifeboat::aws::client::AwsCloud;
use lifeboat::clock::SystemClock;
use lifeboat::config::Config;
use lifeboat::handler::Lifeboat;
use lifeboat::report::Report;
use lifeboat::telemetry::{init_tracing, LogFormat, MetricSink, Metrics};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing(LogFormat::Json, false);
    // A bad environment stops the function here, naming the variable.
    let config = Config::from_env()?;
    let lifeboat = Lifeboat {
        cloud: AwsCloud::from_env(config.budget, config.event_bus.clone(), config.copy.clone())
            .await,
        clock: SystemClock,
        metrics: Metrics::new(config.metrics_namespace.clone(), MetricSink::Stdout),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handle(&lifeboat, event)
    }))
    .await
}

async fn handle(
    lifeboat: &Lifeboat<AwsCloud, SystemClock>,
    event: LambdaEvent<Value>,
) -> Result<Report, Diagnostic> {
    let deadline = i64::try_from(event.context.deadline)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::seconds(60));
    // Boxed: the rescue's future is deep, and nesting it in the runtime's overflows layout queries.
    Ok(Box::pin(lifeboat.handle(event.payload, deadline)).await?)
}
