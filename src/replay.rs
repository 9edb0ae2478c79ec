//! `lifeboat replay EVENT.json`: the Lambda's handler, run in-process on one event file against
//! whatever AWS the standard environment points at, with the result as one JSON document.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::aws::client::AwsCloud;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::handler::{Lifeboat, LifeboatError};
use crate::report::Report;
use crate::rescue::to_chrono;
use crate::telemetry::{MetricSink, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read event file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event file {path} is not JSON: {source}")]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lifeboat(#[from] LifeboatError),
}

/// Replays one event file as the Lambda would handle it with `budget` left before its deadline.
pub async fn replay(path: &Path, budget: Duration) -> Result<Report, ReplayError> {
    let bytes = std::fs::read(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    let event = serde_json::from_slice(&bytes).map_err(|source| ReplayError::NotJson {
        path: path.to_owned(),
        source,
    })?;
    let config = Config::from_env()?;
    let lifeboat = Lifeboat {
        cloud: AwsCloud::from_env(config.budget, config.event_bus.clone(), config.copy.clone())
            .await,
        clock: SystemClock,
        metrics: Metrics::new(config.metrics_namespace.clone(), MetricSink::Stderr),
        config,
    };
    let deadline = lifeboat.clock.now() + to_chrono(budget);
    Ok(lifeboat.handle(event, deadline).await?)
}
