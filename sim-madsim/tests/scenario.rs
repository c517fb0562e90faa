//! `cargo test` entry points. The nightly runner is `src/main.rs`; these take madsim's own
//! variables: `MADSIM_TEST_SEED` (default: the clock), `MADSIM_TEST_NUM` (seeds from it) and
//! `MADSIM_TEST_CHECK_DETERMINISM=1` (run the seed twice, comparing every random draw).

use sim_madsim::scenario;
use sim_madsim::workload::STREAMS;

/// Every check of the scenario passes (they assert inside), and every event was read back.
#[madsim::test]
async fn acknowledged_appends_survive_kills_and_clogs() {
    let outcome = scenario().await;
    let events: u64 = STREAMS.iter().map(|(_, count)| count).sum();
    assert_eq!(outcome.events_checked, events);
    assert!(
        outcome.injected.kills >= 2,
        "the plan's kill and the final one"
    );
    assert_eq!(outcome.boots, outcome.injected.kills + 1);
}
