//! `lifeboat`, the operator's command line, on the operator's own credentials and the standard
//! environment (profiles, `AWS_REGION`, `AWS_ENDPOINT_URL`): `replay` runs the Lambda's handler
//! in-process on one event file; `list`, `watch`, `restore` and `audit` find, follow, restore
//! and prevent rescues. Exit 0 when all is well, 1 on an error, 2 when the answer needs an
//! operator (a high severity finding, a rescue that did not release).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use lifeboat::aws::operator::OperatorAws;
use lifeboat::aws::GroupScope;
use lifeboat::ids::{GroupName, HookName, InstanceId};
use lifeboat::operator::audit::{self, AuditSettings, Severity};
use lifeboat::operator::list::{self, ListFilter, SetResult};
use lifeboat::operator::restore::{self, RestoreRequest, Target};
use lifeboat::operator::watch::{self, WatchOptions};
use lifeboat::operator::{parse_span, OperatorError};
use lifeboat::telemetry::{init_tracing, LogFormat};

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Operate lifeboat: replay events, list, watch and restore rescues, audit groups"
)]
struct Cli {
    /// The Region to read and restore in (default: the standard environment's), for example
    /// the copy Region to list and restore the copies lifeboat made there.
    #[arg(long, global = true)]
    region: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Lambda's handler on one event file, against the AWS the standard environment
    /// names (AWS_REGION, AWS_ENDPOINT_URL, credentials); print the result as JSON.
    Replay {
        /// The event, as EventBridge (or SNS/SQS) would deliver it.
        event: PathBuf,
        /// Seconds the invocation has before its deadline, as Lambda's timeout would give.
        #[arg(long, default_value_t = 900)]
        deadline_seconds: u64,
    },
    /// Every rescued set: instance, group, when, result, and per device the volume, snapshot,
    /// state, size and encryption.
    List {
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        instance: Option<String>,
        /// Only sets started this recently: 90s, 30m, 12h, 7d, 2w.
        #[arg(long)]
        since: Option<String>,
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The rescues in flight, live, until they are all done (exit 2 if one did not release).
    Watch {
        #[arg(long)]
        instance: Option<String>,
        /// Seconds between looks.
        #[arg(long, default_value_t = 5)]
        interval_seconds: u64,
    },
    /// Restore an instance's rescued set: volumes in the target's zone, attached at the
    /// original devices. Refuses before changing anything when it cannot finish.
    Restore {
        /// The instance the set was rescued from.
        #[arg(long)]
        instance: String,
        /// The instance to attach the volumes to (stopped or running).
        #[arg(long, conflicts_with = "zone", required_unless_present = "zone")]
        to: Option<String>,
        /// Create the volumes in this availability zone without attaching them.
        #[arg(long)]
        zone: Option<String>,
        /// Attach a device elsewhere: /dev/sdf=/dev/sdm (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        device_map: Vec<String>,
        /// Restore the boot volume too (as a data volume).
        #[arg(long)]
        include_boot: bool,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The story's risks in each group; exit 2 when a high severity finding exists.
    Audit {
        /// Only these groups (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        group: Vec<String>,
        /// The hooks lifeboat serves (its HookNames parameter).
        #[arg(long, value_delimiter = ',', default_value = "lifeboat")]
        hook_names: Vec<String>,
        /// Lifeboat's sweep interval (its SweepIntervalSeconds parameter).
        #[arg(long, default_value_t = 300)]
        sweep_interval_seconds: u64,
        /// A data volume needs a completed snapshot this recent: 7d, 24h.
        #[arg(long, default_value = "7d")]
        snapshot_age: String,
        #[arg(long)]
        json: bool,
    },
}

/// What a command ends with.
enum Done {
    Ok,
    /// The command worked, and its answer needs an operator.
    Attention,
}

fn parsed<T, E: std::fmt::Display>(
    argument: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, OperatorError> {
    parse(value).map_err(|err| OperatorError::argument(argument, value, err.to_string()))
}

fn print_json(value: &impl Serialize) -> Result<(), OperatorError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| OperatorError::argument("--json", "", err.to_string()))?;
    println!("{text}");
    Ok(())
}

async fn run(command: Command, region: Option<String>) -> Result<Done, String> {
    match command {
        Command::Replay {
            event,
            deadline_seconds,
        } => {
            let report = lifeboat::replay::replay(&event, Duration::from_secs(deadline_seconds))
                .await
                .map_err(|err| err.to_string())?;
            let json = serde_json::to_string_pretty(&report)
                .map_err(|err| format!("cannot print the result: {err}"))?;
            println!("{json}");
            Ok(Done::Ok)
        }
        other => operate(other, region).await.map_err(|err| err.to_string()),
    }
}

async fn operate(command: Command, region: Option<String>) -> Result<Done, OperatorError> {
    match command {
        // `run` handles replay: its errors are the handler's, not an operator's.
        Command::Replay { .. } => Ok(Done::Ok),
        Command::List {
            group,
            instance,
            since,
            json,
        } => {
            let filter = ListFilter {
                group: group
                    .map(|g| parsed("--group", &g, GroupName::parse))
                    .transpose()?,
                instance: instance
                    .map(|i| parsed("--instance", &i, InstanceId::parse))
                    .transpose()?,
                since: since
                    .map(|s| parse_span("--since", &s).map(|span| chrono::Utc::now() - span))
                    .transpose()?,
                // Expiry shown when the operator's environment says the stack's retention.
                retention: if std::env::vars().any(|(k, _)| k.starts_with("LIFEBOAT_RETENTION_")) {
                    Some(lifeboat::config::Config::from_env().map_err(|err| {
                        OperatorError::Argument {
                            argument: err.name,
                            value: err.value.clone(),
                            reason: err.reason.clone(),
                        }
                    })?)
                } else {
                    None
                },
            };
            let sets = list::list(&OperatorAws::in_region(region.clone()).await, &filter).await?;
            if json {
                print_json(&sets)?;
            } else {
                print!("{}", list::render(&sets));
            }
            Ok(Done::Ok)
        }
        Command::Watch {
            instance,
            interval_seconds,
        } => {
            let options = WatchOptions {
                instance: instance
                    .map(|i| parsed("--instance", &i, InstanceId::parse))
                    .transpose()?,
                interval: Duration::from_secs(interval_seconds.clamp(1, 3600)),
                terminal: std::io::stdout().is_terminal(),
            };
            let mut out = std::io::stdout();
            let ended = watch::watch(
                &OperatorAws::in_region(region.clone()).await,
                &options,
                &mut out,
            )
            .await?;
            Ok(if ended.iter().all(|s| s.result == SetResult::Released) {
                Done::Ok
            } else {
                Done::Attention
            })
        }
        Command::Restore {
            instance,
            to,
            zone,
            device_map,
            include_boot,
            dry_run,
            json,
        } => {
            let mut map = BTreeMap::new();
            for entry in &device_map {
                let Some((from, to)) = entry.split_once('=') else {
                    return Err(OperatorError::argument(
                        "--device-map",
                        entry,
                        "expected FROM=TO, as /dev/sdf=/dev/sdm",
                    ));
                };
                for device in [from, to] {
                    if device.is_empty()
                        || device.len() > 32
                        || device.contains(char::is_whitespace)
                    {
                        return Err(OperatorError::argument(
                            "--device-map",
                            entry,
                            "not a device name",
                        ));
                    }
                }
                map.insert(from.to_owned(), to.to_owned());
            }
            let target = match (to, zone) {
                (Some(to), _) => Target::Instance(parsed("--to", &to, InstanceId::parse)?),
                (None, Some(zone)) => Target::Zone(zone),
                (None, None) => {
                    return Err(OperatorError::argument(
                        "--to",
                        "",
                        "give --to INSTANCE or --zone ZONE",
                    ))
                }
            };
            let request = RestoreRequest {
                from: parsed("--instance", &instance, InstanceId::parse)?,
                target,
                device_map: map,
                include_boot,
                dry_run,
                poll: Duration::from_secs(2),
                patience: Duration::from_secs(900),
            };
            let plan =
                restore::restore(&OperatorAws::in_region(region.clone()).await, &request).await?;
            if json {
                print_json(&plan)?;
            } else {
                print!("{}", restore::render(&plan));
            }
            Ok(Done::Ok)
        }
        Command::Audit {
            group,
            hook_names,
            sweep_interval_seconds,
            snapshot_age,
            json,
        } => {
            let scope = if group.is_empty() {
                GroupScope::All
            } else {
                GroupScope::Named(
                    group
                        .iter()
                        .map(|g| parsed("--group", g, GroupName::parse))
                        .collect::<Result<_, _>>()?,
                )
            };
            let settings = AuditSettings {
                hook_names: hook_names
                    .iter()
                    .map(|h| parsed("--hook-names", h, HookName::parse))
                    .collect::<Result<_, _>>()?,
                sweep_interval: Duration::from_secs(sweep_interval_seconds),
                snapshot_age: parse_span("--snapshot-age", &snapshot_age)?,
            };
            let (groups, findings) = audit::audit(
                &OperatorAws::in_region(region.clone()).await,
                &scope,
                &settings,
            )
            .await?;
            if json {
                print_json(&findings)?;
            } else {
                print!("{}", audit::render(groups, &findings));
            }
            Ok(if findings.iter().any(|f| f.severity == Severity::High) {
                Done::Attention
            } else {
                Done::Ok
            })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing(LogFormat::Text, true);
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Replay { .. } => "replay",
        Command::List { .. } => "list",
        Command::Watch { .. } => "watch",
        Command::Restore { .. } => "restore",
        Command::Audit { .. } => "audit",
    };
    match run(cli.command, cli.region).await {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Attention) => ExitCode::from(2),
        Err(err) => {
            eprintln!("lifeboat {name}: {err}");
            ExitCode::FAILURE
        }
    }
}
