//! The nightly runner. Every seed of `MADSIM_SEEDS` (default `1-20`) runs twice, each run on a
//! fresh madsim runtime: both must pass every check and give the same transcript hash. Then
//! every seed of `MADSIM_CHECK_SEEDS` (default `1-3`) runs under madsim's own determinism
//! checker, which compares every random draw of two runs. Ends with
//! `madsim: N passed, M failed`, counting both kinds; exits 1 if anything failed.
//! `MADSIM_DUMP=DIR` writes each seed's transcript (both, for a seed whose runs differ).

#![expect(
    clippy::disallowed_methods,
    reason = "the runner measures real time and isolates each runtime on its own thread"
)]

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use madsim::Config;
use madsim::runtime::Runtime;
use sim_madsim::nemesis::Injected;
use sim_madsim::{Outcome, scenario};

/// Simulated time one run may take before it counts as hung.
const TIME_LIMIT: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let seeds = seed_range("MADSIM_SEEDS", 1..=20);
    let checks = seed_range("MADSIM_CHECK_SEEDS", 1..=3);
    let mut totals = Totals::default();
    for seed in seeds {
        let started = Instant::now();
        let result = double_run(seed);
        totals.record(seed, result, started.elapsed());
    }
    for seed in checks {
        totals.record_check(seed, check_determinism(seed));
    }
    totals.report();
    if totals.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `A-B` or a single seed `A`, from the environment variable `name`.
fn seed_range(name: &str, default: RangeInclusive<u64>) -> RangeInclusive<u64> {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name}={text}: want A-B or A"))
    };
    match text.split_once('-') {
        Some((from, to)) => parse(from)..=parse(to),
        None => parse(&text)..=parse(&text),
    }
}

/// One run of `seed` on a fresh runtime and thread (madsim keeps its context per thread).
fn run_once(seed: u64) -> Result<Outcome, String> {
    let run = std::thread::spawn(move || {
        let mut runtime = Runtime::with_seed_and_config(seed, Config::default());
        runtime.set_time_limit(TIME_LIMIT);
        runtime.block_on(scenario())
    });
    run.join().map_err(panic_text)
}

/// Two runs of `seed`: both must pass and their transcripts must be equal.
fn double_run(seed: u64) -> Result<Outcome, String> {
    let first = run_once(seed)?;
    dump(&first, "first");
    let second = run_once(seed)?;
    if first.hash == second.hash {
        return Ok(first);
    }
    dump(&second, "second");
    let at = (0..first.transcript.len().max(second.transcript.len()))
        .find(|&i| first.transcript.get(i) != second.transcript.get(i))
        .unwrap_or(0);
    Err(format!(
        "transcripts differ at line {at}:\n  first:  {:?}\n  second: {:?}",
        first.transcript.get(at),
        second.transcript.get(at)
    ))
}

/// With `MADSIM_DUMP=DIR`, writes the transcript of each seed's first run, and of its second
/// run too when the two differ, for reading and diffing.
fn dump(outcome: &Outcome, run: &str) {
    let Some(dir) = std::env::var_os("MADSIM_DUMP") else {
        return;
    };
    let path = Path::new(&dir).join(format!("seed-{}-{run}.txt", outcome.seed));
    if let Err(err) = std::fs::write(&path, outcome.transcript.join("\n")) {
        eprintln!("{}: {err}", path.display());
    }
}

/// madsim's checker: records every random draw of one run and panics at the first draw of a
/// second run that differs.
fn check_determinism(seed: u64) -> Result<(), String> {
    let check = std::thread::spawn(move || {
        Runtime::check_determinism(seed, Config::default(), scenario);
    });
    check.join().map_err(panic_text)
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// Counts across the seeds, for the closing report.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    seeds: u64,
    wall: Duration,
    sim_time: Duration,
    injected: Injected,
    retries: BTreeMap<String, u64>,
    seeds_with_retries: u64,
    reconnects: u64,
    torn_or_lost_writes: u64,
    events_checked: u64,
    checks_passed: u64,
}

impl Totals {
    fn record(&mut self, seed: u64, result: Result<Outcome, String>, wall: Duration) {
        self.seeds += 1;
        self.wall += wall;
        match result {
            Ok(outcome) => {
                println!("seed {seed}: ok, {}, {wall:.1?} wall", summary(&outcome));
                self.add(&outcome);
            }
            Err(why) => {
                self.failed += 1;
                println!("seed {seed}: FAILED (reproduce: MADSIM_SEEDS={seed}): {why}");
            }
        }
    }

    fn add(&mut self, outcome: &Outcome) {
        let faults = &outcome.injected;
        self.passed += 1;
        self.sim_time += outcome.sim_time;
        self.injected.kills += faults.kills;
        self.injected.clogs += faults.clogs;
        self.injected.power_cuts += faults.power_cuts;
        self.injected.power_cuts_struck += faults.power_cuts_struck;
        for (cause, count) in &outcome.retries {
            *self.retries.entry(cause.clone()).or_default() += count;
        }
        self.seeds_with_retries += u64::from(!outcome.retries.is_empty());
        self.reconnects += outcome.writer_reconnects + outcome.subscriber_reconnects;
        self.torn_or_lost_writes += outcome.torn_or_lost_writes;
        self.events_checked += outcome.events_checked;
    }

    fn record_check(&mut self, seed: u64, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                self.checks_passed += 1;
                println!("check_determinism seed {seed}: ok");
            }
            Err(why) => {
                self.failed += 1;
                println!("check_determinism seed {seed}: FAILED: {why}");
            }
        }
    }

    fn report(&self) {
        let per_seed = self.wall.checked_div(self.seeds as u32).unwrap_or_default();
        println!(
            "{} seeds run twice: {:.1?} wall ({per_seed:.1?} per seed for both runs), \
             {:.1?} simulated (one run of each)",
            self.seeds, self.wall, self.sim_time
        );
        let faults = &self.injected;
        println!(
            "faults over the passing seeds: {} kills (each with a disk crash; {} after an armed \
             power cut, {} of those struck first), {} clogs, {} torn/lost unsynced writes",
            faults.kills,
            faults.power_cuts,
            faults.power_cuts_struck,
            faults.clogs,
            self.torn_or_lost_writes,
        );
        println!(
            "writer retries {:?} on {} seeds, {} reconnects in all; {} events read back as \
             acknowledged; {} determinism checks passed",
            self.retries,
            self.seeds_with_retries,
            self.reconnects,
            self.events_checked,
            self.checks_passed,
        );
        println!("madsim: {} passed, {} failed", self.passed, self.failed);
    }
}

/// One seed's line: its hash and what it went through.
fn summary(outcome: &Outcome) -> String {
    let faults = &outcome.injected;
    format!(
        "hash {:016x} twice, {} kills ({} power cuts, {} struck), {} clogs, retries {:?}, \
         {}+{} reconnects, {} torn/lost writes, {:.2?} simulated",
        outcome.hash,
        faults.kills,
        faults.power_cuts,
        faults.power_cuts_struck,
        faults.clogs,
        outcome.retries,
        outcome.writer_reconnects,
        outcome.subscriber_reconnects,
        outcome.torn_or_lost_writes,
        outcome.sim_time,
    )
}
