//! Teeth: with each of the store's planted bugs switched on, a soak over every scenario must
//! report a violation within 200 seeds. This is a test of the simulator, not of the store:
//! a checker that stops catching its bug fails here. The bugs a client can see must also be
//! caught when the workload goes through the RESP server over the simulated network.
//!
//! Run with `cargo test -p sierradb-sim --features planted-bugs --test teeth`. The bug switch
//! is process-wide, so the tests take turns (one lock) and this file is its own test binary.

#![cfg(feature = "planted-bugs")]

use std::path::Path;
use std::sync::Mutex;

use sim::scenario::Transport;
use sim::soak::{SoakPlan, Verdict, soak};
use sim::{RunOptions, Scenario};

/// The window every planted bug must be caught in.
const SEEDS: u64 = 200;

static TURN: Mutex<()> = Mutex::new(());

fn scenarios() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Scenario::load_dir(&dir).expect("scenarios load")
}

/// The scenarios whose clients and subscribers speak RESP3 to the server.
fn resp_scenarios() -> Vec<Scenario> {
    let resp: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| s.network.transport == Transport::Resp)
        .collect();
    assert!(resp.len() >= 3, "{} RESP scenarios", resp.len());
    resp
}

/// Seeds run until the first violation (1-based), or `None` if none of `SEEDS` caught it.
fn seeds_to_detection(bug: &str) -> Option<u64> {
    seeds_to_detection_in(bug, &scenarios(), SEEDS)
}

fn seeds_to_detection_in(bug: &str, scenarios: &[Scenario], seeds: u64) -> Option<u64> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    sim::planted::plant(Some(bug)).expect("bug is compiled in");
    let plan = SoakPlan {
        scenarios,
        seed_base: 0,
        max_seeds: seeds,
        jobs: 2,
        stop_on_failure: true,
    };
    let results = soak(&plan, &|| true, &|_| {});
    sim::planted::plant(None).expect("switch off");
    let first = results.iter().find(|r| r.failed())?;
    let how = match &first.verdict {
        Verdict::Failed(v) => format!("{}: {}", v.invariant, v.message),
        Verdict::Panicked(m) => format!("panic: {m}"),
        Verdict::Passed => unreachable!(),
    };
    eprintln!(
        "{bug}: caught after {} seed(s) by {} seed {}: {how}",
        first.index + 1,
        scenarios[first.scenario].name,
        first.seed
    );
    Some(first.index + 1)
}

fn assert_caught(bug: &str) {
    let caught = seeds_to_detection(bug);
    assert!(
        caught.is_some(),
        "{bug} was not caught within {SEEDS} seeds"
    );
}

#[test]
fn ack_before_sync_is_caught() {
    assert_caught("ack-before-sync");
}

#[test]
fn skip_crc_check_is_caught() {
    assert_caught("skip-crc-check");
}

#[test]
fn recover_keeps_torn_tail_is_caught() {
    assert_caught("recover-keeps-torn-tail");
}

#[test]
fn version_check_off_by_one_is_caught() {
    assert_caught("version-check-off-by-one");
}

#[test]
fn idempotency_ignores_content_is_caught() {
    assert_caught("idempotency-ignores-content");
}

#[test]
fn subscription_skips_on_handover_is_caught() {
    assert_caught("subscription-skips-on-handover");
}

#[test]
fn fill_overwrites_frames_is_caught() {
    assert_caught("fill-overwrites-frames");
}

/// Over RESP, every bug a client can see is caught within this many seeds.
const RESP_SEEDS: u64 = 40;

fn assert_caught_over_resp(bug: &str) {
    let caught = seeds_to_detection_in(bug, &resp_scenarios(), RESP_SEEDS);
    assert!(
        caught.is_some(),
        "{bug} was not caught over RESP within {RESP_SEEDS} seeds"
    );
}

#[test]
fn ack_before_sync_is_caught_over_resp() {
    assert_caught_over_resp("ack-before-sync");
}

#[test]
fn idempotency_ignores_content_is_caught_over_resp() {
    assert_caught_over_resp("idempotency-ignores-content");
}

#[test]
fn version_check_off_by_one_is_caught_over_resp() {
    assert_caught_over_resp("version-check-off-by-one");
}

#[test]
fn subscription_skips_on_handover_is_caught_over_resp() {
    assert_caught_over_resp("subscription-skips-on-handover");
}

#[test]
fn every_planted_bug_has_a_teeth_test() {
    let tested = [
        "ack-before-sync",
        "skip-crc-check",
        "recover-keeps-torn-tail",
        "version-check-off-by-one",
        "idempotency-ignores-content",
        "subscription-skips-on-handover",
        "fill-overwrites-frames",
    ];
    for name in sim::planted::names() {
        assert!(
            tested.contains(&name),
            "planted bug {name} has no teeth test"
        );
    }
}

#[test]
fn shrinking_a_planted_failure_gives_a_smaller_run_that_still_fails() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    sim::planted::plant(Some("version-check-off-by-one")).expect("compiled in");
    let scenario = scenarios()
        .into_iter()
        .find(|s| s.name == "hot_stream_contention")
        .expect("scenario exists");
    let shrunk = sim::shrink::shrink(&scenario, 0, 60, &|_| {}).expect("seed 0 fails");
    let again = sim::run(&shrunk.scenario, shrunk.seed, &RunOptions::default());
    sim::planted::plant(None).expect("switch off");
    eprintln!(
        "shrunk {:?} -> {:?} in {} runs",
        shrunk.original, shrunk.minimal, shrunk.runs
    );
    assert!(again.violations().any(|v| v.invariant == shrunk.invariant));
    assert!(shrunk.minimal.ops < shrunk.original.ops);
    assert!(shrunk.minimal.duration_ns <= shrunk.original.duration_ns);
}
