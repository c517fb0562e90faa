//! The world: nodes with their disks, clients, the nemesis that applies the fault schedule,
//! and the phases of one run.
//!
//! # Phases
//!
//! 1. **Workload** (`0..duration`): clients run; schedule entries apply at their times. A node
//!    whose armed power cut fired is crashed at the next slice boundary (every
//!    [`SLICE`] of virtual time), then restarted after its downtime.
//! 2. **Drain**: clients finish the operation in hand (no new ones, no more retries), within
//!    the scenario's `drain` bound; a client still busy after it counts as hung.
//! 3. **Heal**: every fault stops: disk faults off, space freed, power cuts disarmed, clocks
//!    corrected, down nodes restarted.
//!    Subscribers, if any, then catch up: each chain must be delivered every target up to the
//!    store's end within `liveness_within` plus the round trips its window forces on its
//!    backlog ([`crate::subscriber::catch_up_bound_ns`]).
//! 4. **Final crash**: every node loses power once more and recovers, so every acknowledged
//!    event must come back from what the disk made durable.
//! 5. **Probe**: one append per node must succeed within `liveness_within`.
//! 6. **Snapshot**: every partition and stream of every node is read in full.
//!
//! The checkers then run over the history and the snapshot ([`crate::check`]).
//!
//! # Over RESP
//!
//! With `transport = "resp"` the world also owns the client network ([`SimNetwork`]): every
//! time a node's store opens, its RESP3 server (`db::server::serve`) starts on the node's
//! executor node, listening on [`node_addr`]; clients, subscribers and probes connect to it
//! from their own hosts ([`Host`]). The nemesis applies the network's schedule entries (cuts,
//! heals, resets), healing mends every cut and stops resets on write, and after the snapshot
//! the server's transaction ids are renamed to the clients' for the checkers
//! ([`crate::resp::relabel_transactions`]).
//!
//! # Restarts
//!
//! A crash drops the node's tasks (`Sim::crash_node`: its group-commit writers die mid-wait),
//! empties its slot (clients see the node down), and cuts the disk's power (`SimDisk::crash`:
//! unsynced writes are kept, torn or lost). A restart reopens `Db` on the same disk with the
//! node's environment, which runs recovery; the report is recorded and its claims checked
//! against the disk. A failed open is retried every [`REOPEN_RETRY`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db::Db;
use db::env::Instant;
use db::store::layout;
use db::store::record::SEGMENT_HEADER_FRAME_BYTES;
use disk::{FaultCounts, SimDisk};

use crate::check::{self, CheckInput, CheckResult, Violation};
use crate::history::{ErrorClass, History, HistoryLog, Probe, Recovery};
use crate::net::SimNetwork;
use crate::node::{NodeEnv, NodeSlot};
use crate::resp::{Host, RespLink, node_addr};
use crate::rt::{Sim, SimEnv};
use crate::scenario::{Derived, FaultAction, Peer, Scenario, Transport};
use crate::seeds;
use crate::snapshot::{NodeState, Snapshot, read_node};
use crate::subscriber::Subscriber;
use crate::trace::TraceMode;
use crate::workload::{Client, Streams, probe};

/// How often the driver looks up from the executor to catch fired power cuts and due
/// restarts. Schedule entries apply at their exact times regardless.
pub const SLICE: Duration = Duration::from_millis(5);
/// Delay before trying again to open a store that failed to open.
pub const REOPEN_RETRY: Duration = Duration::from_millis(100);
/// Executor nodes of clients start here (server nodes are `0..count`).
const CLIENT_NODE_BASE: u32 = 1000;
/// Executor nodes (and client numbers) of the liveness probes start here.
const PROBE_NODE_BASE: u32 = 2000;
/// Executor nodes of subscribers start here.
const SUBSCRIBER_NODE_BASE: u32 = 3000;
/// The executor node whose clock times the client network's delays (it never crashes).
const NETWORK_NODE: u32 = 4000;
/// Extra time the world gives subscribers beyond their own catch-up bound before it stops them.
const SUBSCRIBER_GRACE: Duration = Duration::from_secs(1);
/// Where each node keeps its store on its disk.
const ROOT: &str = "/data/sierradb";

/// What a run may do besides running.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Hash the trace (the default), keep its lines too (for `replay --trace FILE`; the hash
    /// is the same), or neither (a soak's seeds; the report's hash is then 0).
    pub trace: TraceMode,
}

/// Everything a run produced.
pub struct RunReport {
    pub derived: Derived,
    pub history: History,
    pub snapshot: Snapshot,
    pub checks: Vec<CheckResult>,
    /// Disk faults injected, summed over nodes.
    pub disk_faults: FaultCounts,
    /// Faults the nemesis applied, by kind (including power cuts that fired).
    pub nemesis: BTreeMap<&'static str, u64>,
    /// What the client network injected (`transport = "resp"` only).
    pub net_faults: Option<crate::net::FaultCounts>,
    pub sim_ns: u64,
    pub steps: u64,
    /// The trace hash: every history line and the executor's own hash (0 when the run's
    /// [`RunOptions::trace`] was [`TraceMode::Off`]).
    pub trace_hash: u64,
    /// The executor's last scheduling decisions.
    pub executor_tail: Vec<String>,
    /// Every trace line, if kept.
    pub trace_lines: Vec<String>,
    /// Clients still busy when the drain bound passed.
    pub hung_clients: usize,
}

impl RunReport {
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.checks.iter().flat_map(|c| c.violations.iter())
    }

    pub fn failed(&self) -> bool {
        self.violations().next().is_some()
    }

    /// Operations by kind, then by outcome (`ok`, `unknown`, `done`, `pending`).
    pub fn ops_by_kind(&self) -> BTreeMap<&'static str, [u64; 4]> {
        let mut out: BTreeMap<&'static str, [u64; 4]> = BTreeMap::new();
        for op in &self.history.ops {
            let row = out.entry(op.kind.name()).or_default();
            let col = match op.output.as_ref().map(|o| o.written()) {
                Some(crate::history::Written::Yes) => 0,
                Some(crate::history::Written::Maybe) => 1,
                Some(crate::history::Written::No) => 2,
                None => 3,
            };
            row[col] += 1;
        }
        out
    }

    /// Events acknowledged by fresh (not repeated) appends, each counted once: over RESP a
    /// retry answered "already stored" looks like a fresh acknowledgement (the reply is the
    /// same byte for byte), so events are counted by id.
    pub fn events_acknowledged(&self) -> u64 {
        let mut acknowledged = std::collections::BTreeSet::new();
        for op in &self.history.ops {
            if let Some(crate::history::Output::Appended {
                already_stored: false,
                positions,
                ..
            }) = &op.output
            {
                for (id, _, _) in positions {
                    acknowledged.insert((op.node, *id));
                }
            }
        }
        acknowledged.len() as u64
    }

    pub fn checks_evaluated(&self) -> u64 {
        self.checks.iter().map(|c| c.checked).sum()
    }

    /// What the run did, as `sierradb-sim run` prints it after the derived configuration:
    /// operations by kind and outcome, acknowledged events, faults by kind, subscriptions,
    /// recoveries and each invariant's verdict. The same seed and code give the same text.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>8} {:>8} {:>8}",
            "ops by kind", "ok", "unknown", "done", "pending"
        );
        let mut totals = [0u64; 4];
        for (kind, row) in self.ops_by_kind() {
            let _ = writeln!(
                out,
                "  {kind:<20} {:>8} {:>8} {:>8} {:>8}",
                row[0], row[1], row[2], row[3]
            );
            for (t, v) in totals.iter_mut().zip(row) {
                *t += v;
            }
        }
        let _ = writeln!(
            out,
            "  {:<20} {:>8} {:>8} {:>8} {:>8}",
            "total", totals[0], totals[1], totals[2], totals[3]
        );
        let _ = writeln!(out, "events acknowledged    {}", self.events_acknowledged());
        let d = &self.disk_faults;
        let _ = writeln!(
            out,
            "disk faults            torn_writes {} lost_writes {} bit_flips {} misdirected_writes {} read_errors {} write_errors {} sync_errors {} storage_full {} crashes {}",
            d.torn_writes,
            d.lost_writes,
            d.bit_flips,
            d.misdirected_writes,
            d.read_errors,
            d.write_errors,
            d.sync_errors,
            d.storage_full,
            d.crashes
        );
        let nemesis: Vec<String> = self
            .nemesis
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "nemesis                {}", nemesis.join(" "));
        if let Some(n) = &self.net_faults {
            let _ = writeln!(
                out,
                "network faults         split_reads {} split_writes {} delayed_writes {} resets {} (on write {}) partitions {} refused_connects {}",
                n.split_reads,
                n.split_writes,
                n.delayed_writes,
                n.resets,
                n.write_resets,
                n.partitions,
                n.refused_connects
            );
        }
        let subs = &self.history.subscriptions;
        if !subs.is_empty() {
            let resumed = subs.iter().filter(|s| s.resumed).count();
            let deliveries: usize = subs.iter().map(|s| s.deliveries.len()).sum();
            let acks: usize = subs.iter().map(|s| s.acks.len()).sum();
            let _ = writeln!(
                out,
                "subscriptions          {} made ({resumed} resumed), {deliveries} deliveries, {acks} acknowledgements",
                subs.len()
            );
        }
        let recoveries = &self.history.recoveries;
        let truncated = recoveries.iter().filter(|r| r.truncated_bytes > 0).count();
        let failed = recoveries.iter().filter(|r| r.error.is_some()).count();
        let rebuilt: usize = recoveries.iter().map(|r| r.rebuilt_indexes).sum();
        let _ = writeln!(
            out,
            "recoveries             {} (torn tails cut {truncated}, indexes rebuilt {rebuilt}, failed opens {failed})",
            recoveries.len()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<30} {:>10}  result", "invariants checked", "facts");
        for check in &self.checks {
            let verdict = if check.violations.is_empty() {
                "ok".to_string()
            } else {
                format!("VIOLATED ({})", check.violations.len() as u64 + check.more)
            };
            let _ = writeln!(out, "  {:<28} {:>10}  {verdict}", check.name, check.checked);
        }
        out
    }

    /// The trace file: a header (scenario, seed, planted bug, derived configuration), every
    /// kept trace line, the violations, and a summary with the hash. JSON lines.
    pub fn trace_file_lines(&self, scenario: &Scenario, planted: Option<&str>) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.trace_lines.len() + 2);
        let header = serde_json::json!({
            "v": 1,
            "e": "header",
            "scenario": scenario.name,
            "scenario_path": scenario.path,
            "seed": self.derived.seed,
            "planted_bug": planted,
            "derived": self.derived,
        });
        lines.push(header.to_string());
        lines.extend(self.trace_lines.iter().cloned());
        for v in self.violations() {
            lines.push(serde_json::json!({"e": "violation", "violation": v}).to_string());
        }
        let summary = serde_json::json!({
            "e": "summary",
            "hash": format!("{:016x}", self.trace_hash),
            "ops": self.history.ops.len(),
            "events_acknowledged": self.events_acknowledged(),
            "steps": self.steps,
            "sim_ns": self.sim_ns,
            "violations": self.violations().count(),
            "executor_tail": self.executor_tail,
        });
        lines.push(summary.to_string());
        lines
    }
}

/// Per node: how long the probe took to succeed (if it did) and how many attempts it made.
type ProbeResults = BTreeMap<u32, (Option<u64>, u32)>;

struct NodeRt {
    slot: Arc<NodeSlot>,
    disk: SimDisk,
    /// When a down node should try to start again.
    restart_at: Option<u64>,
    /// Downtime after an armed power cut fires.
    cut_restart_after: u64,
    last_error: Option<(ErrorClass, String)>,
}

struct World {
    sim: Sim,
    derived: Derived,
    nodes: Vec<NodeRt>,
    log: HistoryLog,
    streams: Arc<Streams>,
    root: PathBuf,
    nemesis: BTreeMap<&'static str, u64>,
    /// The client network, with `transport = "resp"`: each node's server listens on it.
    net: Option<SimNetwork>,
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> RunReport {
    run_derived(Derived::new(scenario, seed), options)
}

/// Runs an already derived configuration.
pub fn run_derived(derived: Derived, options: &RunOptions) -> RunReport {
    let seed = derived.seed;
    let mut sim = Sim::new(seed).with_max_steps(u64::MAX);
    if options.trace == TraceMode::Off {
        sim = sim.without_trace_hash();
    }
    let log = HistoryLog::new(options.trace);
    let streams = Arc::new(Streams::new(
        derived.workload.streams,
        derived.workload.streams_per_key,
        derived.nodes,
        derived.store.partition_count,
    ));
    let nodes = (0..derived.nodes)
        .map(|n| {
            let disk_seed = seeds::derive_u64(seed, "disk", u64::from(n));
            let disk = SimDisk::new(disk_seed, derived.disk.fault_config());
            let slot = Arc::new(NodeSlot::new(
                n,
                sim.env_for_node(n),
                derived.disk.latency_ns,
                derived.disk.latency_tail,
                derived.disk.latency_tail_extra_ns,
                seeds::rng(seed, "latency", u64::from(n)),
            ));
            NodeRt {
                slot,
                disk,
                restart_at: None,
                cut_restart_after: 0,
                last_error: None,
            }
        })
        .collect();
    // Only a RESP run has a network, so `Db`-level runs draw and schedule as they always did.
    let net = (derived.network.transport == Transport::Resp).then(|| {
        SimNetwork::new(
            sim.env_for_node(NETWORK_NODE),
            seed,
            derived.network.net_config(),
        )
    });
    let world = World {
        sim,
        derived,
        nodes,
        log,
        streams,
        root: PathBuf::from(ROOT),
        nemesis: BTreeMap::new(),
        net,
    };
    world.run()
}

impl World {
    fn now(&self) -> u64 {
        self.sim.now().0
    }

    fn count(&mut self, what: &'static str) {
        *self.nemesis.entry(what).or_default() += 1;
    }

    fn run(mut self) -> RunReport {
        for n in 0..self.derived.nodes {
            if !self.open(n, false) {
                self.nodes[n as usize].restart_at =
                    Some(self.now() + REOPEN_RETRY.as_nanos() as u64);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(AtomicUsize::new(0));
        self.spawn_clients(&stop, &alive);
        let finish = Arc::new(AtomicBool::new(false));
        let subscribers_alive = Arc::new(AtomicUsize::new(0));
        let catch_up_until = Arc::new(AtomicU64::new(0));
        self.spawn_subscribers(&finish, &subscribers_alive, &catch_up_until);

        // 1. Workload.
        let end = self.derived.duration_ns;
        let schedule = self.derived.schedule.clone();
        let mut next = 0;
        loop {
            let now = self.now();
            while next < schedule.len() && schedule[next].at_ns <= now {
                self.apply(&schedule[next].action);
                next += 1;
            }
            self.watch_nodes();
            if now >= end {
                break;
            }
            let mut deadline = (now + SLICE.as_nanos() as u64).min(end);
            if let Some(event) = schedule.get(next) {
                deadline = deadline.min(event.at_ns);
            }
            self.sim.run_until(Instant(deadline.max(now + 1)));
        }

        // 2. Drain.
        stop.store(true, Ordering::SeqCst);
        let drain_end = end + self.derived.check.drain_ns;
        while alive.load(Ordering::SeqCst) > 0 && self.now() < drain_end {
            self.watch_nodes();
            let deadline = (self.now() + SLICE.as_nanos() as u64).min(drain_end);
            self.sim.run_until(Instant(deadline.max(self.now() + 1)));
        }
        let hung_clients = alive.load(Ordering::SeqCst);

        // 3. Heal.
        self.heal();

        // 3½. Subscribers catch up (only when there are any, so runs without them are
        // unchanged): every target delivered to the store's end within its chain's bound,
        // `liveness_within` or more for a chain with a backlog behind a small window.
        if self.derived.workload.subscribers.count > 0 {
            finish.store(true, Ordering::SeqCst);
            // Each subscriber raises `catch_up_until` to its last deadline when it sees `finish`.
            let at_least = self.now() + self.derived.check.liveness_within_ns;
            let give_up = || {
                at_least.max(catch_up_until.load(Ordering::SeqCst))
                    + SUBSCRIBER_GRACE.as_nanos() as u64
            };
            while subscribers_alive.load(Ordering::SeqCst) > 0 && self.now() < give_up() {
                self.watch_nodes();
                let deadline = self.now() + SLICE.as_nanos() as u64;
                self.sim.run_until(Instant(deadline));
            }
            for index in 0..self.derived.workload.subscribers.count {
                self.sim.crash_node(SUBSCRIBER_NODE_BASE + index);
            }
        }

        // 4. Final crash and recovery.
        for n in 0..self.derived.nodes {
            self.crash(n);
            self.count("final_crash");
            self.log.fault(
                self.now(),
                FaultAction::Crash {
                    node: n,
                    restart_after_ns: Some(0),
                },
            );
            self.open(n, true);
        }

        // 5. Liveness probes.
        self.probe_all();

        // 6. Snapshot.
        let snapshot = Snapshot {
            nodes: (0..self.derived.nodes)
                .map(|n| {
                    let node = &self.nodes[n as usize];
                    match node.slot.db() {
                        Some(db) => read_node(&db, &self.streams),
                        None => {
                            let (class, reason) = node
                                .last_error
                                .clone()
                                .unwrap_or((ErrorClass::Other, "down".into()));
                            NodeState::Down { class, reason }
                        }
                    }
                })
                .collect(),
        };
        self.log
            .lock()
            .trace
            .record_written(|out| crate::history::snapshot_line(out, &snapshot));

        // Stop every task, so nothing outlives the run.
        for n in 0..self.derived.nodes {
            self.sim.crash_node(n);
            self.nodes[n as usize].slot.set_db(None);
        }
        let mut disk_faults = FaultCounts::default();
        for node in &self.nodes {
            add_counts(&mut disk_faults, &node.disk.fault_counts());
        }
        let net_faults = self.net.as_ref().map(SimNetwork::faults);
        if let Some(counts) = &net_faults {
            self.log.lock().trace.record(&NetFaultsLine::new(counts));
        }
        let mut history = self.log.take();
        let trace_hash = history.trace.finish(self.sim.trace_hash());
        let trace_lines = history.trace.take_lines();
        let mut snapshot = snapshot;
        if self.net.is_some() {
            crate::resp::relabel_transactions(&mut history, &mut snapshot);
        }
        let checks = check::run_all(&CheckInput {
            derived: &self.derived,
            history: &history,
            snapshot: &snapshot,
            streams: &self.streams,
            hung_clients,
        });
        RunReport {
            derived: self.derived.clone(),
            history,
            snapshot,
            checks,
            disk_faults,
            nemesis: self.nemesis.clone(),
            net_faults,
            sim_ns: self.now(),
            steps: self.sim.steps(),
            trace_hash,
            executor_tail: self.sim.trace_tail(),
            trace_lines,
            hung_clients,
        }
    }

    fn spawn_clients(&mut self, stop: &Arc<AtomicBool>, alive: &Arc<AtomicUsize>) {
        let plan = Arc::new(self.derived.workload.clone());
        for index in 0..self.derived.workload.clients {
            let env = self.sim.env_for_node(CLIENT_NODE_BASE + index);
            let node = index % self.derived.nodes;
            let resp = self
                .net
                .as_ref()
                .map(|net| RespLink::new(net.clone(), env.clone(), Host::Client(index), node));
            let client = Client {
                index,
                env: env.clone(),
                slot: self.nodes[node as usize].slot.clone(),
                resp,
                streams: self.streams.clone(),
                plan: plan.clone(),
                log: self.log.clone(),
                stop: stop.clone(),
                rng: seeds::rng(self.derived.seed, "client", u64::from(index)),
                alive: alive.clone(),
            };
            alive.fetch_add(1, Ordering::SeqCst);
            db::env::Env::spawn(&env, "client", Box::pin(client.run()));
        }
    }

    fn spawn_subscribers(
        &mut self,
        finish: &Arc<AtomicBool>,
        alive: &Arc<AtomicUsize>,
        catch_up_until: &Arc<AtomicU64>,
    ) {
        let plan = Arc::new(self.derived.workload.clone());
        for index in 0..self.derived.workload.subscribers.count {
            let env = self.sim.env_for_node(SUBSCRIBER_NODE_BASE + index);
            let node = index % self.derived.nodes;
            let subscriber = Subscriber {
                index,
                env: env.clone(),
                slot: self.nodes[node as usize].slot.clone(),
                streams: self.streams.clone(),
                plan: plan.clone(),
                partition_count: self.derived.store.partition_count,
                duration_ns: self.derived.duration_ns,
                log: self.log.clone(),
                finish: finish.clone(),
                within_ns: self.derived.check.liveness_within_ns,
                round_trip_max_ns: self.derived.ack_round_trip_max_ns(),
                catch_up_until: catch_up_until.clone(),
                rng: seeds::rng(self.derived.seed, "subscriber", u64::from(index)),
                alive: alive.clone(),
                resp: self.net.as_ref().map(|net| {
                    let limit = Duration::from_nanos(self.derived.workload.timeout_ns);
                    (net.clone(), limit)
                }),
            };
            alive.fetch_add(1, Ordering::SeqCst);
            db::env::Env::spawn(&env, "subscriber", Box::pin(subscriber.run()));
        }
    }

    /// Opens node `n`'s store (recovery runs); records what recovery reported.
    fn open(&mut self, n: u32, is_final: bool) -> bool {
        let at_ns = self.now();
        let node = &mut self.nodes[n as usize];
        let env = NodeEnv::new(self.sim.env_for_node(n), node.slot.clone());
        let result = Db::open(&env, &node.disk, &self.root, self.derived.store.clone());
        let (ok, recovery) = match result {
            Ok((db, report)) => {
                let broken_claims = check_claims(&node.disk, &self.root, &report);
                if let Some(net) = &self.net {
                    serve_on(net, n, &env, db.clone());
                }
                node.slot.set_db(Some(db));
                node.restart_at = None;
                node.last_error = None;
                let recovery = Recovery {
                    at_ns,
                    node: n,
                    error: None,
                    truncated_bytes: report.truncated_bytes(),
                    rebuilt_indexes: report.buckets.iter().map(|b| b.rebuilt_indexes.len()).sum(),
                    removed_files: report.buckets.iter().map(|b| b.removed_files.len()).sum(),
                    broken_claims,
                    is_final,
                };
                (true, recovery)
            }
            Err(err) => {
                let error = (ErrorClass::of(&err), err.to_string());
                node.last_error = Some(error.clone());
                let recovery = Recovery {
                    at_ns,
                    node: n,
                    error: Some(error),
                    truncated_bytes: 0,
                    rebuilt_indexes: 0,
                    removed_files: 0,
                    broken_claims: Vec::new(),
                    is_final,
                };
                (false, recovery)
            }
        };
        self.log.recovery(recovery);
        self.count(if ok { "restart" } else { "restart_failed" });
        ok
    }

    /// The process dies and the disk loses power.
    fn crash(&mut self, n: u32) {
        self.sim.crash_node(n);
        let node = &mut self.nodes[n as usize];
        node.slot.set_db(None);
        node.disk.crash();
    }

    /// Crashes nodes whose armed power cut fired and restarts nodes whose downtime is over.
    fn watch_nodes(&mut self) {
        let now = self.now();
        for n in 0..self.derived.nodes {
            let node = &self.nodes[n as usize];
            if node.slot.is_up() && node.disk.is_powered_off() {
                let restart_at = now + node.cut_restart_after;
                self.crash(n);
                self.count("power_cut_fired");
                self.nodes[n as usize].restart_at = Some(restart_at);
            }
            let node = &self.nodes[n as usize];
            if !node.slot.is_up()
                && let Some(at) = node.restart_at
                && at <= now
                && !self.open(n, false)
            {
                self.nodes[n as usize].restart_at = Some(now + REOPEN_RETRY.as_nanos() as u64);
            }
        }
    }

    fn apply(&mut self, action: &FaultAction) {
        let now = self.now();
        self.log.fault(now, action.clone());
        self.count(action.name());
        match *action {
            FaultAction::Crash {
                node,
                restart_after_ns,
            } => {
                if self.nodes[node as usize].slot.is_up() {
                    self.crash(node);
                }
                self.nodes[node as usize].restart_at = restart_after_ns.map(|d| now + d);
            }
            FaultAction::Restart { node } => {
                if !self.nodes[node as usize].slot.is_up() {
                    self.nodes[node as usize].restart_at = Some(now);
                    self.watch_nodes();
                }
            }
            FaultAction::PowerCut {
                node,
                after_ops,
                restart_after_ns,
            } => {
                let rt = &mut self.nodes[node as usize];
                if rt.slot.is_up() {
                    rt.cut_restart_after = restart_after_ns;
                    rt.disk.crash_after_ops(after_ops);
                }
            }
            FaultAction::DiskFull { node, slack_bytes } => {
                let disk = &self.nodes[node as usize].disk;
                disk.set_capacity(Some(disk.used_bytes() + slack_bytes));
            }
            FaultAction::DiskSpace { node } => {
                self.nodes[node as usize].disk.set_capacity(None);
            }
            FaultAction::Heal => self.heal_faults(),
            FaultAction::ClockJump { node, by_ns } => {
                self.sim.jump_wall_clock(node, by_ns / 1_000_000);
            }
            FaultAction::ClockSkew { node, skew_ns } => {
                self.sim.set_clock_skew(node, skew_ns / 1_000_000);
            }
            FaultAction::Corrupt { node, pick } => {
                let hit = corrupt_segment(&self.nodes[node as usize].disk, &self.root, pick);
                if !hit {
                    self.count("corrupt_missed");
                }
            }
            FaultAction::NetPartition {
                node,
                peer,
                direction,
            } => {
                if let Some(net) = &self.net {
                    for host in self.hosts_of(node, peer) {
                        net.partition_link(host.ip(), node_addr(node), direction);
                    }
                }
            }
            FaultAction::NetHeal { node, peer } => {
                if let Some(net) = &self.net {
                    for host in self.hosts_of(node, peer) {
                        net.heal_link(host.ip(), node_addr(node));
                    }
                }
            }
            FaultAction::NetReset { node, peer } => {
                if let Some(net) = &self.net {
                    let hosts = self.hosts_of(node, peer);
                    let reset: usize = hosts
                        .iter()
                        .map(|host| net.reset_link(host.ip(), node_addr(node)))
                        .sum();
                    if reset == 0 {
                        self.count("net_reset_idle");
                    }
                }
            }
        }
    }

    /// The client hosts a network fault on `node` touches: one client or subscriber, or every
    /// one of the node's (those that exist: a shrunk run may have fewer).
    fn hosts_of(&self, node: u32, peer: Peer) -> Vec<Host> {
        let nodes = self.derived.nodes;
        let (clients, subscribers) = (
            self.derived.workload.clients,
            self.derived.workload.subscribers.count,
        );
        match peer {
            Peer::Client(c) if c < clients => vec![Host::Client(c)],
            Peer::Subscriber(s) if s < subscribers => vec![Host::Subscriber(s)],
            Peer::Client(_) | Peer::Subscriber(_) => Vec::new(),
            Peer::All => (0..clients)
                .filter(|c| c % nodes == node)
                .map(Host::Client)
                .chain(
                    (0..subscribers)
                        .filter(|s| s % nodes == node)
                        .map(Host::Subscriber),
                )
                .collect(),
        }
    }

    /// Every fault stops; down nodes start again.
    fn heal_faults(&mut self) {
        if let Some(net) = &self.net {
            net.heal_everything();
            net.set_config(self.derived.network.healed_config());
        }
        for n in 0..self.derived.nodes {
            let node = &self.nodes[n as usize];
            node.disk.disarm();
            node.disk.set_faults(self.derived.disk.healed_config());
            node.slot.heal_latency();
            self.sim.set_clock_skew(n, 0);
            if node.disk.is_powered_off() {
                self.crash(n);
            }
            if !self.nodes[n as usize].slot.is_up() {
                self.nodes[n as usize].restart_at = Some(self.now());
            }
        }
        self.watch_nodes();
    }

    /// The end-of-run heal, recorded as a fault like a scheduled one.
    fn heal(&mut self) {
        self.log.fault(self.now(), FaultAction::Heal);
        self.count("final_heal");
        self.heal_faults();
    }

    fn probe_all(&mut self) {
        let within = Duration::from_nanos(self.derived.check.liveness_within_ns);
        let results: Arc<Mutex<ProbeResults>> = Arc::default();
        for n in 0..self.derived.nodes {
            let env: SimEnv = self.sim.env_for_node(PROBE_NODE_BASE + n);
            let (slot, streams, log) = (
                self.nodes[n as usize].slot.clone(),
                self.streams.clone(),
                self.log.clone(),
            );
            let resp = self
                .net
                .as_ref()
                .map(|net| RespLink::new(net.clone(), env.clone(), Host::Probe(n), n));
            let results = results.clone();
            let task_env = env.clone();
            db::env::Env::spawn(
                &env,
                "probe",
                Box::pin(async move {
                    let client = PROBE_NODE_BASE + n;
                    let result = probe(task_env, slot, resp, streams, log, client, within).await;
                    results.lock().expect("probe results").insert(n, result);
                }),
            );
        }
        let give_up = self.now() + within.as_nanos() as u64 + 2 * 1_000_000_000;
        while results.lock().expect("probe results").len() < self.derived.nodes as usize
            && self.now() < give_up
        {
            let deadline = self.now() + SLICE.as_nanos() as u64;
            self.sim.run_until(Instant(deadline));
        }
        let results = results.lock().expect("probe results").clone();
        for n in 0..self.derived.nodes {
            let (succeeded_after_ns, attempts) = results.get(&n).copied().unwrap_or((None, 0));
            let refused_corrupt = matches!(
                self.nodes[n as usize].last_error,
                Some((ErrorClass::Corrupt, _))
            );
            self.log.probe(Probe {
                node: n,
                succeeded_after_ns,
                attempts,
                refused_corrupt,
            });
        }
        // Probes that gave up leave nothing behind; kill any stragglers.
        for n in 0..self.derived.nodes {
            self.sim.crash_node(PROBE_NODE_BASE + n);
        }
    }
}

/// Binds node `n`'s address and serves it with the real RESP3 server on the node's executor
/// node, so a crash of the node ends the server, its connections and its subscriptions.
fn serve_on(net: &SimNetwork, n: u32, env: &NodeEnv, db: Db<SimDisk>) {
    // The listener of the previous incarnation died with its task, so the address is free.
    let listener = net
        .bind(node_addr(n))
        .expect("a node's address is free once its last server died");
    let config = db::server::ServerConfig {
        peer_id: format!("n{n}"),
        ..db::server::ServerConfig::default()
    };
    let task_env = env.clone();
    db::env::Env::spawn(
        env,
        "serve",
        Box::pin(async move {
            // Only a crash stops it (the task is dropped), as `kill -9` stops a server.
            let _ = db::server::serve(listener, task_env, db, config, std::future::pending()).await;
        }),
    );
}

/// The trace line of what the client network injected.
#[derive(serde::Serialize)]
struct NetFaultsLine {
    e: &'static str,
    split_reads: u64,
    split_writes: u64,
    delayed_writes: u64,
    resets: u64,
    write_resets: u64,
    partitions: u64,
    refused_connects: u64,
}

impl NetFaultsLine {
    fn new(c: &crate::net::FaultCounts) -> NetFaultsLine {
        NetFaultsLine {
            e: "net_faults",
            split_reads: c.split_reads,
            split_writes: c.split_writes,
            delayed_writes: c.delayed_writes,
            resets: c.resets,
            write_resets: c.write_resets,
            partitions: c.partitions,
            refused_connects: c.refused_connects,
        }
    }
}

fn add_counts(total: &mut FaultCounts, c: &FaultCounts) {
    total.torn_writes += c.torn_writes;
    total.lost_writes += c.lost_writes;
    total.bit_flips += c.bit_flips;
    total.misdirected_writes += c.misdirected_writes;
    total.read_errors += c.read_errors;
    total.write_errors += c.write_errors;
    total.sync_errors += c.sync_errors;
    total.storage_full += c.storage_full;
    total.crashes += c.crashes;
}

/// Checks what a recovery report claims against the disk: a torn tail it reports cut must be
/// gone, durably. Returns the claims the disk contradicts.
fn check_claims(disk: &SimDisk, root: &Path, report: &db::store::RecoveryReport) -> Vec<String> {
    let mut broken = Vec::new();
    for bucket in &report.buckets {
        let Some(cut) = &bucket.truncated else {
            continue;
        };
        let path = layout::segment_file(&layout::bucket_dir(root, bucket.bucket), cut.segment);
        // A torn segment header means the segment is recreated with a fresh header.
        let expected = if cut.offset == 0 {
            SEGMENT_HEADER_FRAME_BYTES
        } else {
            cut.offset
        } as usize;
        let written = disk.written_contents(&path).map(|b| b.len());
        let durable = disk.durable_contents(&path).map(|b| b.len());
        if written != Some(expected) || durable != Some(expected) {
            broken.push(format!(
                "bucket {} segment {}: report says the tail was cut at {} ({} bytes, {}), but the file holds {:?} bytes ({:?} durable)",
                bucket.bucket,
                cut.segment,
                cut.offset,
                cut.bytes,
                cut.reason,
                written,
                durable
            ));
        }
    }
    broken
}

/// Flips one bit of one segment file on the medium: the file and offset come from `pick`.
/// Returns false if the node has no segment bytes to damage yet.
fn corrupt_segment(disk: &SimDisk, root: &Path, pick: u64) -> bool {
    let mut files = Vec::new();
    let Ok(buckets) = disk::Disk::list_dir(disk, root) else {
        return false;
    };
    for bucket in buckets {
        let dir = root.join(&bucket);
        if let Ok(names) = disk::Disk::list_dir(disk, &dir) {
            files.extend(
                names
                    .into_iter()
                    .filter(|n| n.ends_with(".log"))
                    .map(|n| dir.join(n)),
            );
        }
    }
    if files.is_empty() {
        return false;
    }
    let path = &files[(pick % files.len() as u64) as usize];
    let len = disk.durable_contents(path).map_or(0, |b| b.len() as u64);
    // Past the segment header, so the damage lands in event data.
    if len <= SEGMENT_HEADER_FRAME_BYTES {
        return false;
    }
    let offset = SEGMENT_HEADER_FRAME_BYTES + (pick >> 20) % (len - SEGMENT_HEADER_FRAME_BYTES);
    let xor = 1u8 << ((pick >> 8) & 7);
    disk.corrupt(path, offset, xor).is_ok()
}
