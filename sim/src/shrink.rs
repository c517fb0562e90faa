//! Shrinking: from a failing seed to a smaller run that fails the same way.
//!
//! 1. **Pin.** The scenario is rewritten with every range set to the point the seed picked
//!    and every random fault generator unrolled into explicit schedule entries
//!    ([`pin`]). Since each range draws once whatever its width, the pinned scenario runs the
//!    same as the original with the same seed.
//! 2. **Stop earlier.** Bisect the duration: the shortest run that still fails.
//! 3. **Fewer faults.** Delta-debug (ddmin) the schedule: drop chunks of entries while the run
//!    still fails.
//! 4. **Fewer disk and network faults.** Switch each run-time disk fault probability off,
//!    and the network's resets on write and split reads and writes.
//! 5. **Fewer clients, fewer subscribers, fewer operations.** Drop clients from the end (each
//!    client has its own random stream, so the others do not change), then subscribers the
//!    same way, then bisect the per-client operation cap.
//!
//! "Fails the same way" means a violation of the same invariant. Every step only keeps a
//! change that still fails, so the result always reproduces: run the written scenario with
//! the same seed.

use crate::scenario::{
    Action, ByteSize, Count, Derived, FaultAction, FaultSpec, Nanos, Peer, Prob, Range, Scenario,
    ScheduleEntry, SignedNanos,
};
use crate::trace::TraceMode;
use crate::world::{RunOptions, run};

/// Candidates are judged by their violations alone, so they write no trace (a shrunk run's
/// `replay` command hashes it).
const UNTRACED: RunOptions = RunOptions {
    trace: TraceMode::Off,
};

/// Why shrinking could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("seed {seed} does not fail scenario {scenario}: nothing to shrink")]
    NotFailing { scenario: String, seed: u64 },
}

/// The size of a run, to show what shrinking achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSize {
    pub duration_ns: u64,
    pub faults: usize,
    pub clients: u32,
    pub subscribers: u32,
    pub ops: usize,
}

/// The smallest failing run found.
pub struct Shrunk {
    /// The pinned, minimised scenario; run it with `seed` to see the failure.
    pub scenario: Scenario,
    pub seed: u64,
    pub invariant: &'static str,
    pub original: RunSize,
    pub minimal: RunSize,
    /// Runs tried while shrinking.
    pub runs: u32,
}

/// The scenario `derived` came from, with every choice the seed made written out.
pub fn pin(scenario: &Scenario, derived: &Derived) -> Scenario {
    let mut pinned = scenario.clone();
    pinned.swarm = false;
    pinned.duration = Range::one(Nanos(derived.duration_ns));
    // The stretched duration is now written out: replaying the file needs no `--stretch`.
    pinned.stretch = None;
    let w = &derived.workload;
    let count = |n: u32| Range::one(Count(u64::from(n)));
    pinned.workload.clients = count(w.clients);
    pinned.workload.streams = count(w.streams);
    pinned.workload.streams_per_key = count(w.streams_per_key);
    pinned.workload.hot_streams = count(w.hot_streams);
    pinned.workload.hot_fraction = Range::one(Prob(w.hot_fraction));
    pinned.workload.think = Range::one(Nanos(w.think_mean_ns));
    pinned.workload.timeout = Range::one(Nanos(w.timeout_ns));
    pinned.workload.retries = count(w.retries);
    pinned.workload.max_events = count(w.max_events);
    let sub = &w.subscribers;
    pinned.workload.subscribers = count(sub.count);
    pinned.workload.subscriber_ack_delay = Range::one(Nanos(sub.ack_delay_mean_ns));
    pinned.workload.subscriber_stall = Range::one(Prob(sub.stall));
    pinned.workload.subscriber_stall_for = Range::one(Nanos(sub.stall_for_ns));
    let d = &derived.disk;
    let disk = &mut pinned.faults.disk;
    disk.sector_size = vec![d.sector_size];
    disk.unsynced_kept = Range::one(Prob(d.unsynced_kept));
    disk.torn = Range::one(Prob(d.torn));
    disk.read_bit_flip = Range::one(Prob(d.read_bit_flip));
    disk.misdirected_write = Range::one(Prob(d.misdirected_write));
    disk.read_error = Range::one(Prob(d.read_error));
    disk.write_error = Range::one(Prob(d.write_error));
    disk.sync_error = Range::one(Prob(d.sync_error));
    disk.latency = Range::one(Nanos(d.latency_ns));
    disk.latency_tail = Range::one(Prob(d.latency_tail));
    disk.latency_tail_extra = Range::one(Nanos(d.latency_tail_extra_ns));
    let n = &derived.network;
    pinned.network.transport = n.transport;
    pinned.network.delay = Range::one(Nanos(n.delay_ns));
    pinned.network.split = Range::one(Prob(n.split));
    pinned.network.reset = Range::one(Prob(n.reset));
    pinned.faults = FaultSpec {
        disk: pinned.faults.disk.clone(),
        ..FaultSpec::default()
    };
    pinned.schedule = derived.schedule.iter().map(entry).collect();
    pinned
}

/// A realised fault as an explicit schedule entry.
fn entry(event: &crate::scenario::FaultEvent) -> ScheduleEntry {
    let mut e = ScheduleEntry {
        at: Range::one(Nanos(event.at_ns)),
        action: Action::Heal,
        node: None,
        restart_after: None,
        after_ops: None,
        by: None,
        slack: None,
        pick: None,
        client: None,
        subscriber: None,
        direction: None,
    };
    let peer = |e: &mut ScheduleEntry, node: u32, peer: Peer| match peer {
        Peer::All => e.node = Some(node),
        Peer::Client(c) => e.client = Some(c),
        Peer::Subscriber(s) => e.subscriber = Some(s),
    };
    match event.action {
        FaultAction::Crash {
            node,
            restart_after_ns,
        } => {
            e.action = Action::Crash;
            e.node = Some(node);
            e.restart_after = restart_after_ns.map(|ns| Range::one(Nanos(ns)));
        }
        FaultAction::Restart { node } => {
            e.action = Action::Restart;
            e.node = Some(node);
        }
        FaultAction::PowerCut {
            node,
            after_ops,
            restart_after_ns,
        } => {
            e.action = Action::PowerCut;
            e.node = Some(node);
            e.after_ops = Some(Range::one(Count(after_ops)));
            e.restart_after = Some(Range::one(Nanos(restart_after_ns)));
        }
        FaultAction::DiskFull { node, slack_bytes } => {
            e.action = Action::DiskFull;
            e.node = Some(node);
            e.slack = Some(Range::one(ByteSize(slack_bytes)));
        }
        FaultAction::DiskSpace { node } => {
            e.action = Action::DiskSpace;
            e.node = Some(node);
        }
        FaultAction::Heal => {}
        FaultAction::ClockJump { node, by_ns } => {
            e.action = Action::ClockJump;
            e.node = Some(node);
            e.by = Some(Range::one(SignedNanos(by_ns)));
        }
        FaultAction::ClockSkew { node, skew_ns } => {
            e.action = Action::ClockSkew;
            e.node = Some(node);
            e.by = Some(Range::one(SignedNanos(skew_ns)));
        }
        FaultAction::Corrupt { node, pick } => {
            e.action = Action::Corrupt;
            e.node = Some(node);
            e.pick = Some(Range::one(Count(pick)));
        }
        FaultAction::NetPartition {
            node,
            peer: p,
            direction,
        } => {
            e.action = Action::NetPartition;
            peer(&mut e, node, p);
            e.direction = Some(direction);
        }
        FaultAction::NetHeal { node, peer: p } => {
            e.action = Action::NetHeal;
            peer(&mut e, node, p);
        }
        FaultAction::NetReset { node, peer: p } => {
            e.action = Action::NetReset;
            peer(&mut e, node, p);
        }
    }
    e
}

struct Search<'a> {
    seed: u64,
    invariant: &'static str,
    runs: u32,
    max_runs: u32,
    progress: &'a dyn Fn(&str),
}

impl Search<'_> {
    /// Whether `candidate` still fails with the same invariant (false once the budget is spent).
    fn fails(&mut self, candidate: &Scenario) -> Option<RunSize> {
        if self.runs >= self.max_runs {
            return None;
        }
        self.runs += 1;
        let report = run(candidate, self.seed, &UNTRACED);
        let same = report.violations().any(|v| v.invariant == self.invariant);
        same.then(|| size(&report))
    }
}

fn size(report: &crate::world::RunReport) -> RunSize {
    RunSize {
        duration_ns: report.derived.duration_ns,
        faults: report.derived.schedule.len(),
        clients: report.derived.workload.clients,
        subscribers: report.derived.workload.subscribers.count,
        ops: report.history.ops.len(),
    }
}

fn with_duration(s: &Scenario, ns: u64) -> Scenario {
    let mut c = s.clone();
    c.duration = Range::one(Nanos(ns));
    c.schedule.retain(|e| e.at.low.0 < ns);
    c
}

/// Shrinks the failing run of `scenario` with `seed`, trying at most `max_runs` runs.
/// `progress` hears one line per kept step.
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    max_runs: u32,
    progress: &dyn Fn(&str),
) -> Result<Shrunk, ShrinkError> {
    let first = run(scenario, seed, &UNTRACED);
    let Some(violation) = first.violations().next() else {
        return Err(ShrinkError::NotFailing {
            scenario: scenario.name.clone(),
            seed,
        });
    };
    let invariant = violation.invariant;
    let original = size(&first);
    let mut search = Search {
        seed,
        invariant,
        runs: 0,
        max_runs,
        progress,
    };
    let mut best = pin(scenario, &first.derived);
    let Some(mut best_size) = search.fails(&best) else {
        // Pinning changed the run (it should not); shrink nothing rather than mislead.
        (search.progress)("the pinned scenario no longer fails; keeping the original");
        return Ok(Shrunk {
            scenario: scenario.clone(),
            seed,
            invariant,
            original,
            minimal: original,
            runs: search.runs,
        });
    };

    // Stop earlier.
    let step = (best_size.duration_ns / 64).max(10_000_000);
    let (mut lo, mut hi) = (0u64, best_size.duration_ns);
    while hi - lo > step {
        let mid = lo + (hi - lo) / 2;
        let candidate = with_duration(&best, mid);
        match search.fails(&candidate) {
            Some(s) => {
                hi = mid;
                best = candidate;
                best_size = s;
                (search.progress)(&format!("duration {mid}ns still fails"));
            }
            None => lo = mid,
        }
    }

    // Fewer faults: ddmin over the schedule.
    let mut chunks = 2usize;
    while !best.schedule.is_empty() && search.runs < search.max_runs {
        let len = best.schedule.len();
        let chunk = len.div_ceil(chunks);
        let mut removed_any = false;
        let mut start = 0;
        while start < best.schedule.len() {
            let mut candidate = best.clone();
            let end = (start + chunk).min(candidate.schedule.len());
            candidate.schedule.drain(start..end);
            match search.fails(&candidate) {
                Some(s) => {
                    best = candidate;
                    best_size = s;
                    removed_any = true;
                    (search.progress)(&format!("{} fault(s) still fail", best.schedule.len()));
                }
                None => start += chunk,
            }
        }
        if !removed_any {
            if chunk <= 1 {
                break;
            }
            chunks = (chunks * 2).min(best.schedule.len().max(1));
        }
    }

    // Fewer disk faults: switch each run-time fault probability off if the failure stays.
    type Field = fn(&mut Scenario) -> &mut Range<Prob>;
    let fields: [(&str, Field); 8] = [
        ("read_bit_flip", |s| &mut s.faults.disk.read_bit_flip),
        ("misdirected_write", |s| {
            &mut s.faults.disk.misdirected_write
        }),
        ("read_error", |s| &mut s.faults.disk.read_error),
        ("write_error", |s| &mut s.faults.disk.write_error),
        ("sync_error", |s| &mut s.faults.disk.sync_error),
        ("latency_tail", |s| &mut s.faults.disk.latency_tail),
        ("network reset", |s| &mut s.network.reset),
        ("network split", |s| &mut s.network.split),
    ];
    for (name, field) in fields {
        let mut candidate = best.clone();
        if field(&mut candidate).low.0 == 0.0 {
            continue;
        }
        *field(&mut candidate) = Range::one(Prob(0.0));
        if let Some(s) = search.fails(&candidate) {
            best = candidate;
            best_size = s;
            (search.progress)(&format!("still fails without {name} faults"));
        }
    }

    // Fewer clients.
    while best_size.clients > 1 && search.runs < search.max_runs {
        let mut candidate = best.clone();
        candidate.workload.clients = Range::one(Count(u64::from(best_size.clients - 1)));
        match search.fails(&candidate) {
            Some(s) => {
                best = candidate;
                best_size = s;
                (search.progress)(&format!("{} client(s) still fail", s.clients));
            }
            None => break,
        }
    }

    // Fewer subscribers.
    while best_size.subscribers > 0 && search.runs < search.max_runs {
        let mut candidate = best.clone();
        candidate.workload.subscribers = Range::one(Count(u64::from(best_size.subscribers - 1)));
        match search.fails(&candidate) {
            Some(s) => {
                best = candidate;
                best_size = s;
                (search.progress)(&format!("{} subscriber(s) still fail", s.subscribers));
            }
            None => break,
        }
    }

    // Fewer operations per client.
    let per_client = best_size.ops as u64 / u64::from(best_size.clients.max(1)) + 1;
    let (mut lo, mut hi) = (0u64, per_client.max(1) * 2);
    while hi - lo > 1 && search.runs < search.max_runs {
        let mid = lo + (hi - lo) / 2;
        let mut candidate = best.clone();
        candidate.workload.max_ops_per_client = Count(mid);
        match search.fails(&candidate) {
            Some(s) => {
                hi = mid;
                best = candidate;
                best_size = s;
                (search.progress)(&format!("{mid} operation(s) per client still fail"));
            }
            None => lo = mid,
        }
    }

    best.name = format!("{}-shrunk-{seed}", scenario.name);
    best.description = format!(
        "Shrunk from {} seed {seed}: fails {invariant}.",
        scenario.name
    );
    Ok(Shrunk {
        scenario: best,
        seed,
        invariant,
        original,
        minimal: best_size,
        runs: search.runs,
    })
}

/// The scenario as TOML, ready to save and run.
pub fn to_toml(scenario: &Scenario) -> String {
    toml::to_string(scenario).expect("scenarios serialize")
}
