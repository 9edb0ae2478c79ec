//! `lifeboat`, the operator's command line. `lifeboat replay EVENT.json` runs the Lambda's
//! handler in-process on one event file and prints what it did as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use lifeboat::telemetry::{init_tracing, LogFormat};

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Operate lifeboat: replay events against AWS"
)]
struct Cli {
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
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing(LogFormat::Text, true);
    let cli = Cli::parse();
    match cli.command {
        Command::Replay {
            event,
            deadline_seconds,
        } => match lifeboat::replay::replay(&event, Duration::from_secs(deadline_seconds)).await {
            Ok(report) => match serde_json::to_string_pretty(&report) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("lifeboat replay: cannot print the result: {err}");
                    ExitCode::FAILURE
                }
            },
            Err(err) => {
                eprintln!("lifeboat replay: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
