//! `scripts/campaign [INSTANCES]`: the fault campaign at full size (300 instances × 3 volumes by
//! default) against the local AWS; prints the figures as a Markdown table and exits non-zero if
//! a volume was deleted without a completed snapshot or an action was completed twice.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;

use support::campaign::{run, Storm};
use support::World;

#[tokio::main]
async fn main() -> ExitCode {
    let mut storm = Storm::full();
    if let Some(n) = std::env::args().nth(1) {
        match n.parse() {
            Ok(n) => storm.instances = n,
            Err(_) => {
                eprintln!("usage: campaign [INSTANCES]");
                return ExitCode::FAILURE;
            }
        }
    }
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "5")]).await;
    eprintln!("campaign: {storm:?}");
    let figures = run(&w, &storm).await;
    println!("{}", figures.table());
    if figures.volumes_deleted_unsaved == 0 && figures.actions_completed_more_than_once == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
