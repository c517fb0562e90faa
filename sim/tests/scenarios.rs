//! Every scenario in `scenarios/` loads, passes a seed, and replays bit for bit (the
//! determinism double-run); pinning a seed's choices into the scenario (what `shrink` writes)
//! replays the same run.

use std::path::Path;

use sim::scenario::Derived;
use sim::shrink::{pin, to_toml};
use sim::{RunOptions, Scenario, run};

fn scenarios() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Scenario::load_dir(&dir).expect("scenarios load")
}

#[test]
fn there_are_at_least_ten_scenarios_with_descriptions() {
    let all = scenarios();
    assert!(all.len() >= 10, "{} scenarios", all.len());
    for s in &all {
        assert!(
            !s.description.trim().is_empty(),
            "{} has no description",
            s.name
        );
    }
}

#[test]
fn every_scenario_passes_a_seed_and_replays_bit_for_bit() {
    for scenario in &scenarios() {
        let seed = 1;
        let a = run(scenario, seed, &RunOptions::default());
        for v in a.violations() {
            eprintln!("{}: {} {}", scenario.name, v.invariant, v.message);
        }
        assert!(!a.failed(), "{} seed {seed} failed", scenario.name);
        assert!(
            a.history.ops.len() > 100,
            "{}: only {} ops",
            scenario.name,
            a.history.ops.len()
        );
        // The second run keeps its trace lines: the hash must not depend on that.
        let b = run(scenario, seed, &RunOptions { keep_trace: true });
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "{} seed {seed} does not replay",
            scenario.name
        );
        assert_eq!(b.trace_lines.len() as u64, b.history.trace.count());
        eprintln!(
            "{}: {} ops, {} acked, {} steps, hash {:016x}",
            scenario.name,
            a.history.ops.len(),
            a.events_acknowledged(),
            a.steps,
            a.trace_hash
        );
    }
}

#[test]
fn different_seeds_run_differently() {
    let scenario = &scenarios()[0];
    let a = run(scenario, 5, &RunOptions::default());
    let b = run(scenario, 6, &RunOptions::default());
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn a_pinned_scenario_replays_its_seed() {
    for name in ["swarm", "disk_full", "clock_jump"] {
        let scenario = scenarios()
            .into_iter()
            .find(|s| s.name == name)
            .expect("scenario exists");
        let seed = 11;
        let mut derived = Derived::new(&scenario, seed);
        let pinned = pin(&scenario, &derived);
        // Through TOML and back, as `shrink` writes it.
        let text = to_toml(&pinned);
        let reread = Scenario::parse(&text, Path::new("pinned.toml")).expect("pinned parses");
        let again = Derived::new(&reread, seed);
        // Pinned scenarios have swarm off: the kinds it switched off are pinned to zero.
        derived.swarm_off.clear();
        assert_eq!(format!("{derived}"), format!("{again}"), "{name}");
        assert_eq!(derived.schedule, again.schedule, "{name}");
        let a = run(&scenario, seed, &RunOptions::default());
        let b = run(&reread, seed, &RunOptions::default());
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "{name}: pinning changed the run"
        );
    }
}
