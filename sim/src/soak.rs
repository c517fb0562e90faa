//! Many seeds: run `i` uses scenario `i mod n` and seed `seed_base + i`, so every run is
//! replayable on its own (`sierradb-sim run SCENARIO --seed S`). Runs are independent and
//! spread over `jobs` threads; each run stays on one thread, so parallelism never touches
//! determinism.
//!
//! The caller supplies the stopping rule (a count, or a wall-clock budget the CLI measures:
//! simulated code never reads real time) and sees each result as it lands, for progress.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use disk::FaultCounts;

use crate::check::Violation;
use crate::scenario::Scenario;
use crate::trace::TraceMode;
use crate::world::{RunOptions, run};

/// How one seed ended.
#[derive(Clone, Debug)]
pub enum Verdict {
    Passed,
    /// The first violation found (all are in a full `run`).
    Failed(Violation),
    /// The run panicked: a bug in the store or the simulator, reported like a violation.
    Panicked(String),
}

/// The outcome of one seed, small enough to keep for thousands of seeds.
#[derive(Clone, Debug)]
pub struct SeedResult {
    pub index: u64,
    pub scenario: usize,
    pub seed: u64,
    pub verdict: Verdict,
    pub sim_ns: u64,
    pub ops: u64,
    pub events_acknowledged: u64,
    pub checks: u64,
    pub disk_faults: FaultCounts,
    pub nemesis_faults: u64,
    /// Faults the client network drew itself (resets on write; RESP runs only).
    pub network_faults: u64,
    /// Subscriptions made (resubscriptions included) and deliveries they received, all of
    /// which the subscription checker judged.
    pub subscriptions: u64,
    pub deliveries: u64,
}

impl SeedResult {
    pub fn failed(&self) -> bool {
        !matches!(self.verdict, Verdict::Passed)
    }
}

/// What to soak.
pub struct SoakPlan<'a> {
    pub scenarios: &'a [Scenario],
    pub seed_base: u64,
    /// Runs at most this many seeds in total (across scenarios).
    pub max_seeds: u64,
    pub jobs: usize,
    /// Stop handing out seeds after the first failure.
    pub stop_on_failure: bool,
}

/// Runs one seed, turning a panic into a verdict.
pub fn run_seed(scenario: &Scenario, seed: u64, index: u64, scenario_index: usize) -> SeedResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run(
            scenario,
            seed,
            &RunOptions {
                trace: TraceMode::Off,
            },
        )
    }));
    match outcome {
        Ok(report) => SeedResult {
            index,
            scenario: scenario_index,
            seed,
            verdict: match report.violations().next() {
                Some(v) => Verdict::Failed(v.clone()),
                None => Verdict::Passed,
            },
            sim_ns: report.sim_ns,
            ops: report.history.ops.len() as u64,
            events_acknowledged: report.events_acknowledged(),
            checks: report.checks_evaluated(),
            disk_faults: report.disk_faults,
            nemesis_faults: report.nemesis.values().sum(),
            network_faults: report.net_faults.map_or(0, |n| n.write_resets),
            subscriptions: report.history.subscriptions.len() as u64,
            deliveries: report
                .history
                .subscriptions
                .iter()
                .map(|s| s.deliveries.len() as u64)
                .sum(),
        },
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            SeedResult {
                index,
                scenario: scenario_index,
                seed,
                verdict: Verdict::Panicked(message),
                sim_ns: 0,
                ops: 0,
                events_acknowledged: 0,
                checks: 0,
                disk_faults: FaultCounts::default(),
                nemesis_faults: 0,
                network_faults: 0,
                subscriptions: 0,
                deliveries: 0,
            }
        }
    }
}

/// Runs seeds until `max_seeds`, `keep_going` says stop, or (if asked) the first failure.
/// Returns every result, in seed order.
pub fn soak(
    plan: &SoakPlan<'_>,
    keep_going: &(dyn Fn() -> bool + Sync),
    on_result: &(dyn Fn(&SeedResult) + Sync),
) -> Vec<SeedResult> {
    assert!(!plan.scenarios.is_empty(), "soak needs a scenario");
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let results = Mutex::new(Vec::new());
    let worker = || {
        loop {
            if stop.load(Ordering::SeqCst) || !keep_going() {
                break;
            }
            let index = next.fetch_add(1, Ordering::SeqCst);
            if index >= plan.max_seeds {
                break;
            }
            let scenario_index = (index % plan.scenarios.len() as u64) as usize;
            let seed = plan.seed_base.wrapping_add(index);
            let result = run_seed(&plan.scenarios[scenario_index], seed, index, scenario_index);
            if result.failed() && plan.stop_on_failure {
                stop.store(true, Ordering::SeqCst);
            }
            on_result(&result);
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(result);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..plan.jobs.max(1) {
            scope.spawn(worker);
        }
        worker();
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|r| r.index);
    results
}
