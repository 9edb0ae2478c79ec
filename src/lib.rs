//! lifeboat: an AWS Lambda function that stands between an EC2 Auto Scaling group and the loss
//! of data. A termination lifecycle hook holds the doomed instance; lifeboat snapshots every
//! attached EBS volume, waits until every snapshot is complete, and only then lets the instance
//! go. When it cannot, it keeps the volumes and does not wave the termination through.
//!
//! The crate's map:
//! - [`event`]: incoming JSON → one enum of what happened.
//! - [`config`]: defaults from the environment, per-group overrides, validated once.
//! - [`ids`] and [`tags`]: the ground everything stands on — validated identifiers, the lifecycle
//!   action's name, and lifeboat's tag vocabulary (where a rescue's state lives).
//! - [`rescue`]: the domain — keep first, plan, start, check, [`rescue::decision`], fail safe. No
//!   SDK types.
//! - [`sweep`]: the scheduled pass that resumes, holds and starts rescues.
//! - [`aftercare`]: what becomes of released sets (retention: archive, delete).
//! - [`handler`]: one event in, the right rescue operations, one [`report::Report`] out.
//! - [`aws`]: the ports (small traits in lifeboat's types) and their AWS SDK adapters.
//! - [`clock`], [`telemetry`], [`report`]: time, logs and metrics, the invocation's result.
//! - [`replay`]: `lifeboat replay EVENT.json`, the handler run in-process on one file.
//! - [`operator`]: `lifeboat list`, `watch`, `restore`, `audit`: the operator's commands.

pub mod aftercare;
pub mod aws;
pub mod clock;
pub mod config;
pub mod event;
#[cfg(test)]
mod fuzz;
pub mod handler;
pub mod ids;
pub mod operator;
pub mod replay;
pub mod report;
pub mod rescue;
pub mod sweep;
pub mod tags;
pub mod telemetry;
