//! `lifeboat`, the operator's command line, on the operator's own credentials and the standard
//! environment (profiles, `AWS_REGION`, `AWS_ENDPOINT_URL`): `replay` runs the Lambda's handler
//! in-process on one event file; `list`, `watch`, `restore` and `audit` find, follow, restore
//! and prevent rescues; `drill` proves a group's rescue would work. `list`, `watch`, `audit`
//! and `drill` take `--regions` to run in several Regions at once. Exit 0 when all is well, 1
//! on an error, 2 when the answer needs an operator (a high severity finding, a rescue that did
//! not release, a failed drill).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use lifeboat::aws::drill::DrillAws;
use lifeboat::aws::operator::OperatorAws;
use lifeboat::aws::GroupScope;
use lifeboat::ids::{GroupName, HookName, InstanceId};
use lifeboat::operator::audit::{self, AuditSettings, Severity};
use lifeboat::operator::drill::{self, DrillRequest, LiveOptions, Verdict};
use lifeboat::operator::list::{self, ListFilter, SetResult};
use lifeboat::operator::restore::{self, RestoreRequest, Target};
use lifeboat::operator::watch::{self, WatchOptions};
use lifeboat::operator::{parse_span, regions, table, OperatorError};
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
        /// These Regions at once (us-east-1,eu-west-1), or all: every Region enabled for the
        /// account. Each row says its Region.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// The rescues in flight, live, until they are all done (exit 2 if one did not release).
    Watch {
        #[arg(long)]
        instance: Option<String>,
        /// Seconds between looks.
        #[arg(long, default_value_t = 5)]
        interval_seconds: u64,
        /// These Regions at once, or all; each line says its Region.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
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
        /// These Regions at once, or all: where the story could still happen, account-wide.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// Prove a rescue of one group would work: checks everything it needs as the function's
    /// own role, changing nothing (exit 0 only when every check passes); with --live,
    /// terminates one instance through Auto Scaling, follows the rescue and judges it from EC2
    /// (exit 0 only on a verdict of held).
    Drill {
        #[arg(long)]
        group: String,
        /// The function's name or ARN (the stack's FunctionName output).
        #[arg(long, default_value = "lifeboat-lifeboat")]
        function: String,
        /// The instance to check and terminate (default: the group's first InService one).
        #[arg(long)]
        instance: Option<String>,
        /// Terminate the instance for real, after the preflight passes.
        #[arg(long)]
        live: bool,
        /// Do not ask before a live drill terminates the instance.
        #[arg(long)]
        yes: bool,
        /// How long a live drill follows the rescue before it calls it unproven: 30m, 6h.
        #[arg(long, default_value = "6h")]
        patience: String,
        /// Seconds between looks during a live drill.
        #[arg(long, default_value_t = 5)]
        interval_seconds: u64,
        #[arg(long)]
        json: bool,
        /// The preflight in these Regions at once, or all (a live drill runs in one Region).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
    },
}

/// What a command ends with.
enum Done {
    Ok,
    /// The command worked, and its answer needs an operator.
    Attention,
}

impl Done {
    /// Ok when all is well, else the answer needs an operator.
    fn all_well(well: bool) -> Self {
        if well {
            Self::Ok
        } else {
            Self::Attention
        }
    }
}

/// Every rescue followed was released.
fn all_released<'a>(sets: impl IntoIterator<Item = &'a list::RescuedSet>) -> bool {
    sets.into_iter().all(|s| s.result == SetResult::Released)
}

/// A high severity finding is among them.
fn any_high<'a>(findings: impl IntoIterator<Item = &'a audit::Finding>) -> bool {
    findings.into_iter().any(|f| f.severity == Severity::High)
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
            regions,
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
            if !regions.is_empty() {
                let regions = regions::resolve(&regions, region).await?;
                let answers = regions::each(&regions, |config, _| {
                    let filter = filter.clone();
                    async move { list::list(&OperatorAws::new(&config), &filter).await }
                })
                .await;
                let (answers, failed) = split_failures(answers);
                if json {
                    print_json(&in_regions(&answers))?;
                } else {
                    let rows: Vec<Vec<String>> = answers
                        .iter()
                        .flat_map(|(region, sets)| regions::marked(region, list::rows(sets)))
                        .collect();
                    print!("{}", table::render(&with_region(&list::HEADERS), &rows));
                }
                return failed.map_or(Ok(Done::Ok), Err);
            }
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
            regions,
        } => {
            let options = WatchOptions {
                instance: instance
                    .map(|i| parsed("--instance", &i, InstanceId::parse))
                    .transpose()?,
                interval: Duration::from_secs(interval_seconds.clamp(1, 3600)),
                terminal: std::io::stdout().is_terminal() && regions.is_empty(),
            };
            if !regions.is_empty() {
                let regions = regions::resolve(&regions, region).await?;
                let out = Arc::new(Mutex::new(std::io::stdout()));
                let answers = regions::each(&regions, |config, region| {
                    let (options, out) = (options.clone(), out.clone());
                    async move {
                        let mut marked = regions::Marked::new(&region, out);
                        watch::watch(&OperatorAws::new(&config), &options, &mut marked).await
                    }
                })
                .await;
                let (answers, failed) = split_failures(answers);
                if let Some(err) = failed {
                    return Err(err);
                }
                return Ok(Done::all_well(all_released(
                    answers.iter().flat_map(|(_, ended)| ended),
                )));
            }
            let mut out = std::io::stdout();
            let ended = watch::watch(
                &OperatorAws::in_region(region.clone()).await,
                &options,
                &mut out,
            )
            .await?;
            Ok(Done::all_well(all_released(&ended)))
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
            regions,
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
            if !regions.is_empty() {
                let regions = regions::resolve(&regions, region).await?;
                let answers = regions::each(&regions, |config, _| {
                    let (scope, settings) = (scope.clone(), settings.clone());
                    async move { audit::audit(&OperatorAws::new(&config), &scope, &settings).await }
                })
                .await;
                let (answers, failed) = split_failures(answers);
                let findings: Vec<(String, Vec<audit::Finding>)> = answers
                    .iter()
                    .map(|(region, (_, findings))| (region.clone(), findings.clone()))
                    .collect();
                if json {
                    print_json(&in_regions(&findings))?;
                } else {
                    let rows: Vec<Vec<String>> = findings
                        .iter()
                        .flat_map(|(region, found)| regions::marked(region, audit::rows(found)))
                        .collect();
                    if !rows.is_empty() {
                        print!("{}", table::render(&with_region(&audit::HEADERS), &rows));
                    }
                    let all: Vec<audit::Finding> =
                        findings.iter().flat_map(|(_, f)| f.clone()).collect();
                    let groups = answers.iter().map(|(_, (groups, _))| groups).sum();
                    print!("{}", audit::count(groups, &all));
                    println!("{} Region(s): {}", regions.len(), regions.join(", "));
                }
                if let Some(err) = failed {
                    return Err(err);
                }
                return Ok(Done::all_well(!any_high(
                    findings.iter().flat_map(|(_, f)| f),
                )));
            }
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
            Ok(Done::all_well(!any_high(&findings)))
        }
        Command::Drill {
            group,
            function,
            instance,
            live,
            yes,
            patience,
            interval_seconds,
            json,
            regions,
        } => {
            let request = DrillRequest {
                group: parsed("--group", &group, GroupName::parse)?,
                function,
                instance: instance
                    .map(|i| parsed("--instance", &i, InstanceId::parse))
                    .transpose()?,
            };
            let patience = parse_span("--patience", &patience)?
                .to_std()
                .map_err(|err| OperatorError::argument("--patience", "", err.to_string()))?;
            if !regions.is_empty() {
                if live {
                    return Err(OperatorError::argument(
                        "--regions",
                        &regions.join(","),
                        "a live drill terminates one instance: run it in one Region (--region)",
                    ));
                }
                let regions = regions::resolve(&regions, region).await?;
                let answers = regions::each(&regions, |config, _| {
                    let request = request.clone();
                    async move {
                        drill::preflight(
                            &OperatorAws::new(&config),
                            &DrillAws::new(&config),
                            &request,
                        )
                        .await
                    }
                })
                .await;
                let (answers, failed) = split_failures(answers);
                if json {
                    let each: Vec<InRegion<'_, drill::Preflight>> = answers
                        .iter()
                        .map(|(region, item)| InRegion { region, item })
                        .collect();
                    print_json(&each)?;
                } else {
                    let out = Arc::new(Mutex::new(std::io::stdout()));
                    for (region, preflight) in &answers {
                        let mut marked = regions::Marked::new(region, out.clone());
                        write!(marked, "{}", drill::render(preflight)).map_err(|err| {
                            OperatorError::argument("--regions", "", err.to_string())
                        })?;
                    }
                }
                if let Some(err) = failed {
                    return Err(err);
                }
                return Ok(Done::all_well(answers.iter().all(|(_, p)| p.passed())));
            }
            let config = OperatorAws::config_in(region).await;
            let (aws, drill_aws) = (OperatorAws::new(&config), DrillAws::new(&config));
            let preflight = drill::preflight(&aws, &drill_aws, &request).await?;
            if !json {
                print!("{}", drill::render(&preflight));
            }
            if !live || !preflight.passed() {
                if json {
                    print_json(&serde_json::json!({ "preflight": preflight }))?;
                }
                if live {
                    eprintln!("lifeboat drill: the preflight failed; the live drill did not start");
                }
                return Ok(Done::all_well(preflight.passed()));
            }
            let Some(target) = preflight.instance.clone() else {
                return Ok(Done::Attention);
            };
            if !yes && !confirmed(&target, &preflight.group)? {
                return Err(OperatorError::Refused(
                    "the live drill was not confirmed".into(),
                ));
            }
            let options = LiveOptions {
                poll: Duration::from_secs(interval_seconds.clamp(1, 3600)),
                patience,
            };
            let report = if json {
                drill::live(&aws, &drill_aws, &preflight, &options, &mut std::io::sink()).await?
            } else {
                println!("\nlive drill: {target} of {}", preflight.group);
                drill::live(
                    &aws,
                    &drill_aws,
                    &preflight,
                    &options,
                    &mut std::io::stdout(),
                )
                .await?
            };
            if json {
                print_json(&serde_json::json!({ "preflight": preflight, "live": report }))?;
            } else {
                print!("{}", drill::render_verdict(&report));
            }
            Ok(Done::all_well(report.verdict == Verdict::Held))
        }
    }
}

/// Asks the operator, on a terminal, to type the instance's id before a live drill ends it.
fn confirmed(instance: &InstanceId, group: &GroupName) -> Result<bool, OperatorError> {
    if !std::io::stdin().is_terminal() {
        return Err(OperatorError::argument(
            "--live",
            instance.as_str(),
            "a live drill terminates an instance: confirm on a terminal, or pass --yes",
        ));
    }
    print!(
        "A live drill terminates {instance} through Auto Scaling; group {group} launches a replacement.\nType the instance id to go on: "
    );
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|err| OperatorError::argument("--live", "", err.to_string()))?;
    Ok(answer.trim() == instance.as_str())
}

/// The Regions that answered, and the first failure (each one said on stderr).
fn split_failures<T>(
    answers: Vec<(String, Result<T, OperatorError>)>,
) -> (Vec<(String, T)>, Option<OperatorError>) {
    let mut ok = Vec::new();
    let mut failed = None;
    for (region, answer) in answers {
        match answer {
            Ok(value) => ok.push((region, value)),
            Err(err) => {
                eprintln!("lifeboat: {region}: {err}");
                failed.get_or_insert(err);
            }
        }
    }
    (ok, failed)
}

/// An item with its Region, for JSON.
#[derive(Serialize)]
struct InRegion<'a, T: Serialize> {
    region: &'a str,
    #[serde(flatten)]
    item: &'a T,
}

/// Every item of every Region, each with its Region.
fn in_regions<T: Serialize, C>(answers: &[(String, C)]) -> Vec<InRegion<'_, T>>
where
    for<'a> &'a C: IntoIterator<Item = &'a T>,
{
    answers
        .iter()
        .flat_map(|(region, items)| {
            items.into_iter().map(move |item| InRegion {
                region: region.as_str(),
                item,
            })
        })
        .collect()
}

/// A table's headers with REGION first.
fn with_region(headers: &[&'static str]) -> Vec<&'static str> {
    std::iter::once("REGION")
        .chain(headers.iter().copied())
        .collect()
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
        Command::Drill { .. } => "drill",
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
