//! `sierradb-sim`: the deterministic simulator's command line.
//!
//! `run` one seed of a scenario and print its summary; `replay` it and prove the trace hash
//! repeats (optionally writing the full trace); `soak` many seeds on several threads; `shrink`
//! a failing seed to a smaller run. How to read every column: `docs/simulation.md`.
//!
//! All the simulating happens in the `sim` crate; this file parses arguments, measures wall
//! time (which simulated code never sees), and prints.

mod alloc;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sim::soak::{SeedResult, SoakPlan, Verdict};
use sim::{RunOptions, RunReport, Scenario, TraceMode};

/// mimalloc instead of the system allocator: a seed allocates and frees millions of small
/// objects (events read, decoded and recorded), about a sixth of its instructions under
/// glibc's malloc. Nothing simulated sees an address, so the trace is the same under either
/// (docs/decisions/0007-mimalloc.md).
#[global_allocator]
static ALLOCATOR: alloc::MiMalloc = alloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (`mimalloc.h`), from the library `libmimalloc-sys` links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` of `mimalloc.h` (the same in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed memory for reuse instead of returning it to the OS after 10 ms: a seed frees
/// and allocates again the same sizes all the time (segment maps, read windows), and with
/// purging on, the page faults of touching returned memory again made system time 4-5 times
/// as large. Memory stays at the peak of the largest seed per thread.
fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's options, which takes any value at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[derive(Parser, Debug)]
#[command(
    name = "sierradb-sim",
    version,
    about = "Deterministic simulation of SierraDB: run, replay, soak and shrink seeds",
    long_about = "Deterministic simulation of SierraDB. Every run is derived from a scenario file and one u64 seed, and replays bit for bit. See docs/simulation.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one seed of a scenario and print its summary.
    Run(RunArgs),
    /// Run a seed again, check that it reproduces bit for bit, optionally write its trace.
    Replay(ReplayArgs),
    /// Run many seeds (all scenarios by default) and print a table per scenario.
    Soak(SoakArgs),
    /// Search for a smaller failing run of a failing seed.
    Shrink(ShrinkArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Directory that scenario names are looked up in.
    #[arg(long, env = "SIERRADB_SCENARIOS", default_value = "scenarios")]
    scenarios_dir: PathBuf,
    /// Switch on one of the store's planted bugs (needs `--features planted-bugs`).
    #[arg(long, value_name = "NAME")]
    planted_bug: Option<String>,
    /// Multiply every scenario's workload duration by this factor (e.g. 2 for seeds twice as
    /// long); replay commands repeat it. 1 leaves every run and hash as it is.
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_stretch)]
    stretch: f64,
}

fn parse_stretch(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!(
            "{text:?}: expected a positive factor, e.g. 2 or 1.5"
        )),
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A scenario file, or the name of one in the scenarios directory.
    scenario: String,
    #[arg(long)]
    seed: u64,
    /// Also write the full trace (JSON lines) here.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    scenario: String,
    #[arg(long)]
    seed: u64,
    /// Write the full trace (JSON lines) here.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Fail unless the trace hash equals this (hex), e.g. from an earlier run or CI log.
    #[arg(long, value_name = "HEX")]
    expect_hash: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct SoakArgs {
    /// Scenario files or names; all of the scenarios directory if none.
    scenarios: Vec<String>,
    /// Seeds to run in total, round-robin over the scenarios.
    #[arg(long, conflicts_with = "duration")]
    seeds: Option<u64>,
    /// Wall-clock budget instead of a seed count, e.g. "10m", "300s".
    #[arg(long, value_parser = parse_wall_duration)]
    duration: Option<Duration>,
    /// Parallel runs (each run stays on one thread).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Seed of run 0; run i uses seed-base + i.
    #[arg(long, default_value_t = 0)]
    seed_base: u64,
    /// Stop at the first failing seed.
    #[arg(long)]
    stop_on_failure: bool,
    /// No progress bar (for logs).
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct ShrinkArgs {
    scenario: String,
    #[arg(long)]
    seed: u64,
    /// Most runs to try.
    #[arg(long, default_value_t = 300)]
    max_runs: u32,
    /// Where to write the minimised scenario.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

fn parse_wall_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 300s, 10m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Replay(args) => cmd_replay(args),
        Command::Soak(args) => cmd_soak(args),
        Command::Shrink(args) => cmd_shrink(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sierradb-sim: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn plant(common: &Common) -> anyhow::Result<()> {
    sim::planted::plant(common.planted_bug.as_deref())?;
    Ok(())
}

/// A scenario by path, or by name in the scenarios directory.
fn load(name: &str, common: &Common) -> anyhow::Result<Scenario> {
    let direct = Path::new(name);
    let path = if direct.is_file() {
        direct.to_path_buf()
    } else {
        let stem = name.trim_end_matches(".toml");
        common.scenarios_dir.join(format!("{stem}.toml"))
    };
    let mut scenario = Scenario::load(&path)?;
    scenario.stretch(common.stretch);
    Ok(scenario)
}

fn replay_command(scenario: &Scenario, seed: u64, planted: Option<&str>) -> String {
    let (features, bug) = match planted {
        Some(b) => (" --features planted-bugs", format!(" --planted-bug {b}")),
        None => ("", String::new()),
    };
    let stretch = scenario
        .stretch
        .map_or(String::new(), |f| format!(" --stretch {f}"));
    format!(
        "cargo run --release -p sierradb-bin --bin sierradb-sim{features} -- replay {} --seed {seed}{bug}{stretch} --trace {}-{seed}.jsonl",
        scenario.path.display(),
        scenario.name
    )
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    plant(&args.common)?;
    let scenario = load(&args.scenario, &args.common)?;
    let started = Instant::now();
    let options = RunOptions {
        trace: if args.trace.is_some() {
            TraceMode::Keep
        } else {
            TraceMode::Hash
        },
    };
    let report = sim::run(&scenario, args.seed, &options);
    let wall = started.elapsed();
    if let Some(path) = &args.trace {
        write_trace(path, &scenario, &report, args.common.planted_bug.as_deref())?;
    }
    print_summary(&scenario, &report, wall, args.common.planted_bug.as_deref());
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(scenario: &Scenario, report: &RunReport, wall: Duration, planted: Option<&str>) {
    println!("{}", report.derived);
    if let Some(bug) = planted {
        println!("  planted bug: {bug}");
    }
    println!();
    print!("{}", report.summary());
    let ratio = secs(report.sim_ns) / wall.as_secs_f64().max(1e-9);
    println!();
    println!(
        "simulated {:.3}s in {:.3}s wall ({ratio:.0}x), {} steps, {} trace lines",
        secs(report.sim_ns),
        wall.as_secs_f64(),
        report.steps,
        report.history.trace.count()
    );
    if let Some(v) = report.violations().next() {
        println!();
        let node = v.node.map_or(String::new(), |n| format!(" on node {n}"));
        println!("VIOLATION of {}{node}: {}", v.invariant, v.message);
        println!("guarantee: {}", guarantee_of(report, v.invariant));
        let lines = sim::excerpt::excerpt(&report.history, v);
        if !lines.is_empty() {
            println!("trace excerpt:");
            for line in lines {
                println!("  {line}");
            }
        }
        let others = report.violations().count() - 1;
        if others > 0 {
            println!("({others} more violation(s) listed by `replay`)");
        }
        println!(
            "replay: {}",
            replay_command(scenario, report.derived.seed, planted)
        );
    }
    println!("trace hash {:016x}", report.trace_hash);
}

fn guarantee_of(report: &RunReport, invariant: &str) -> &'static str {
    report
        .checks
        .iter()
        .find(|c| c.name == invariant)
        .map_or("", |c| c.guarantee)
}

fn write_trace(
    path: &Path,
    scenario: &Scenario,
    report: &RunReport,
    planted: Option<&str>,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for line in report.trace_file_lines(scenario, planted) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn cmd_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    plant(&args.common)?;
    let scenario = load(&args.scenario, &args.common)?;
    let started = Instant::now();
    let first = sim::run(&scenario, args.seed, &RunOptions::default());
    let second = sim::run(
        &scenario,
        args.seed,
        &RunOptions {
            trace: TraceMode::Keep,
        },
    );
    let wall = started.elapsed() / 2;
    if let Some(path) = &args.trace {
        write_trace(path, &scenario, &second, args.common.planted_bug.as_deref())?;
        println!("trace written to {}", path.display());
    }
    print_summary(&scenario, &second, wall, args.common.planted_bug.as_deref());
    for v in second.violations().skip(1) {
        println!("also: {} {}", v.invariant, v.message);
    }
    if first.trace_hash != second.trace_hash {
        println!(
            "NOT DETERMINISTIC: two runs of seed {} gave {:016x} and {:016x}",
            args.seed, first.trace_hash, second.trace_hash
        );
        return Ok(ExitCode::from(3));
    }
    if let Some(expected) = &args.expect_hash {
        let expected = u64::from_str_radix(expected.trim_start_matches("0x"), 16)
            .context("--expect-hash takes 16 hex digits")?;
        if expected != second.trace_hash {
            println!(
                "HASH MISMATCH: expected {expected:016x}, got {:016x} (code or platform changed the run)",
                second.trace_hash
            );
            return Ok(ExitCode::from(3));
        }
    }
    println!("replayed bit for bit: {:016x}", second.trace_hash);
    Ok(if second.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Per-scenario totals for the soak table.
#[derive(Default, Clone)]
struct Row {
    seeds: u64,
    failed: u64,
    ops: u64,
    acked: u64,
    checks: u64,
    sim_ns: u64,
    faults: u64,
    subscriptions: u64,
    deliveries: u64,
}

fn cmd_soak(args: SoakArgs) -> anyhow::Result<ExitCode> {
    plant(&args.common)?;
    let scenarios = if args.scenarios.is_empty() {
        let mut all = Scenario::load_dir(&args.common.scenarios_dir)?;
        all.iter_mut().for_each(|s| s.stretch(args.common.stretch));
        all
    } else {
        args.scenarios
            .iter()
            .map(|s| load(s, &args.common))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if scenarios.is_empty() {
        bail!("no scenarios in {}", args.common.scenarios_dir.display());
    }
    let budget = args.duration;
    let max_seeds = match (args.seeds, budget) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 100,
    };
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else if max_seeds == u64::MAX {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(max_seeds)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} seeds {per_sec} {msg}",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let failures = Mutex::new(0u64);
    let keep_going = || budget.is_none_or(|b| started.elapsed() < b);
    let on_result = |r: &SeedResult| {
        bar.inc(1);
        if r.failed() {
            let mut f = failures.lock().expect("failure count");
            *f += 1;
            bar.set_message(format!("{} FAILED", *f));
            let line = format!(
                "FAIL {} seed {}: {}",
                scenarios[r.scenario].name,
                r.seed,
                describe(&r.verdict)
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    let plan = SoakPlan {
        scenarios: &scenarios,
        seed_base: args.seed_base,
        max_seeds,
        jobs: args.jobs,
        stop_on_failure: args.stop_on_failure,
    };
    let results = sim::soak::soak(&plan, &keep_going, &on_result);
    bar.finish_and_clear();
    let wall = started.elapsed();

    let mut rows = vec![Row::default(); scenarios.len()];
    for r in &results {
        let row = &mut rows[r.scenario];
        row.seeds += 1;
        row.failed += u64::from(r.failed());
        row.ops += r.ops;
        row.acked += r.events_acknowledged;
        row.checks += r.checks;
        row.sim_ns += r.sim_ns;
        row.subscriptions += r.subscriptions;
        row.deliveries += r.deliveries;
        row.faults += r.nemesis_faults
            + r.network_faults
            + r.disk_faults.torn_writes
            + r.disk_faults.lost_writes
            + r.disk_faults.bit_flips
            + r.disk_faults.misdirected_writes
            + r.disk_faults.read_errors
            + r.disk_faults.write_errors
            + r.disk_faults.sync_errors
            + r.disk_faults.storage_full;
    }
    println!(
        "{:<32} {:>6} {:>6} {:>10} {:>10} {:>8} {:>11} {:>9} {:>9} {:>11}",
        "scenario",
        "seeds",
        "failed",
        "ops/seed",
        "acked/seed",
        "faults/s",
        "checks/seed",
        "sim s/seed",
        "subs/seed",
        "deliv/seed"
    );
    let mut total = Row::default();
    for (scenario, row) in scenarios.iter().zip(&rows) {
        let per = |x: u64| x.checked_div(row.seeds).unwrap_or(0);
        let faults_per_sim_s = if row.sim_ns == 0 {
            0.0
        } else {
            row.faults as f64 / secs(row.sim_ns)
        };
        println!(
            "{:<32} {:>6} {:>6} {:>10} {:>10} {:>8.1} {:>11} {:>9.2} {:>9} {:>11}",
            scenario.name,
            row.seeds,
            row.failed,
            per(row.ops),
            per(row.acked),
            faults_per_sim_s,
            per(row.checks),
            secs(per(row.sim_ns)),
            per(row.subscriptions),
            per(row.deliveries)
        );
        total.seeds += row.seeds;
        total.failed += row.failed;
        total.sim_ns += row.sim_ns;
        total.ops += row.ops;
    }
    let failing: Vec<&SeedResult> = results.iter().filter(|r| r.failed()).collect();
    if !failing.is_empty() {
        println!();
        println!("failing seeds:");
        for r in &failing {
            let scenario = &scenarios[r.scenario];
            println!(
                "  {} --seed {}: {}",
                scenario.name,
                r.seed,
                describe(&r.verdict)
            );
            println!(
                "    replay: {}",
                replay_command(scenario, r.seed, args.common.planted_bug.as_deref())
            );
        }
        if let Some(first) = failing.first() {
            println!("first failure after {} seed(s)", first.index + 1);
        }
    }
    let wall_s = wall.as_secs_f64().max(1e-9);
    println!();
    println!(
        "throughput: {:.1} seeds/s, {:.0} ops/s, simulated/wall {:.0}x ({} jobs, {:.1}s wall, {:.1}s simulated)",
        total.seeds as f64 / wall_s,
        total.ops as f64 / wall_s,
        secs(total.sim_ns) / wall_s,
        args.jobs.max(1),
        wall_s,
        secs(total.sim_ns)
    );
    println!(
        "soak: {} passed, {} failed",
        total.seeds - total.failed,
        total.failed
    );
    Ok(if total.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Passed => "passed".into(),
        Verdict::Failed(v) => format!("{}: {}", v.invariant, v.message),
        Verdict::Panicked(msg) => format!("panicked: {msg}"),
    }
}

fn cmd_shrink(args: ShrinkArgs) -> anyhow::Result<ExitCode> {
    plant(&args.common)?;
    let scenario = load(&args.scenario, &args.common)?;
    let started = Instant::now();
    let progress = |line: &str| println!("  {line}");
    let shrunk = sim::shrink::shrink(&scenario, args.seed, args.max_runs, &progress)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.toml", shrunk.scenario.name)));
    std::fs::write(&out, sim::shrink::to_toml(&shrunk.scenario))
        .with_context(|| format!("writing {}", out.display()))?;
    let (o, m) = (shrunk.original, shrunk.minimal);
    println!(
        "shrunk {} seed {} ({}) in {} run(s), {:.1}s:",
        scenario.name,
        args.seed,
        shrunk.invariant,
        shrunk.runs,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  duration {:.3}s -> {:.3}s, faults {} -> {}, clients {} -> {}, subscribers {} -> {}, operations {} -> {}",
        secs(o.duration_ns),
        secs(m.duration_ns),
        o.faults,
        m.faults,
        o.clients,
        m.clients,
        o.subscribers,
        m.subscribers,
        o.ops,
        m.ops
    );
    println!("smallest failing scenario written to {}", out.display());
    let planted = args
        .common
        .planted_bug
        .as_deref()
        .map_or(String::new(), |b| format!(" --planted-bug {b}"));
    println!(
        "run it: sierradb-sim run {} --seed {}{planted}",
        out.display(),
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
