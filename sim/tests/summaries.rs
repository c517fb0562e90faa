//! Golden summaries: fixed seeds of a few scenarios, their whole summary (derived
//! configuration, operations, faults, invariants) and trace hash pinned as `insta` snapshots.
//! Any change in what the simulator or the code under it does shows up here as a diff to
//! review: accept it (`cargo insta review`) only when the change of behaviour is meant.

use std::path::Path;

use sim::{RunOptions, Scenario, run};

fn scenario(name: &str) -> Scenario {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Scenario::load_dir(&dir)
        .expect("scenarios load")
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists")
}

/// What `sierradb-sim run` prints, less the wall time.
fn golden(name: &str, seed: u64) -> String {
    let report = run(&scenario(name), seed, &RunOptions::default());
    assert!(!report.failed(), "{name} seed {seed} failed");
    format!(
        "{}\n\n{}\nsimulated {:.3}s, {} steps, {} trace lines\ntrace hash {:016x}\n",
        report.derived,
        report.summary(),
        report.sim_ns as f64 / 1e9,
        report.steps,
        report.history.trace.count(),
        report.trace_hash
    )
}

#[test]
fn crash_during_group_commit_seed_1() {
    insta::assert_snapshot!(golden("crash_during_group_commit", 1));
}

#[test]
fn torn_write_tail_seed_2() {
    insta::assert_snapshot!(golden("torn_write_tail", 2));
}

#[test]
fn subscriptions_over_resp_seed_3() {
    insta::assert_snapshot!(golden("subscriptions_over_resp", 3));
}

#[test]
fn client_partition_heal_seed_4() {
    insta::assert_snapshot!(golden("client_partition_heal", 4));
}
