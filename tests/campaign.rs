//! The fault campaign at a small size: a storm of terminations with every fault at once must
//! lose no volume and complete no action twice. `scripts/campaign` runs it at full size.

mod support;

use support::campaign::{run, Storm};
use support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_storm_with_every_fault_loses_nothing() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "5")]).await;
    let storm = Storm::small();
    let figures = run(&w, &storm).await;
    println!("{}", figures.table());
    assert_eq!(figures.volumes_deleted_unsaved, 0);
    assert_eq!(figures.actions_completed_more_than_once, 0);
    assert_eq!(figures.records_wrong, 0, "the tags say what happened");
    assert_eq!(figures.still_open, 0, "every rescue finished");
    assert_eq!(
        figures.released + figures.failed_safe,
        storm.instances,
        "each action completed by lifeboat"
    );
    assert!(
        figures.faults_injected > 0 && figures.killed + figures.cut_at_deadline > 0
            || storm.cut == 0.0
    );
    w.assert_no_data_lost();
}
