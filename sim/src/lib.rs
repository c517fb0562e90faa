//! # sim: deterministic simulation of SierraDB
//!
//! Runs the real `db` code from a single `u64` seed, on one thread, against a virtual clock,
//! so a failing seed replays bit for bit. It is a test harness, not a runtime for production:
//! nothing here touches real time, real threads or OS randomness. The `sierradb-sim` binary
//! (`bin/src/sim_main.rs`) is its command line; `docs/simulation.md` explains how to read it.
//!
//! | module | what it holds |
//! |---|---|
//! | [`rt`] | the executor: seeded choice among ready tasks, a virtual clock that jumps to the next timer, node tags for crashes, a trace hash; [`rt::SimEnv`] implements `db::env::Env` |
//! | [`scenario`] | scenario files (TOML): schema, ranges, and what a seed derives from them ([`scenario::Derived`]) |
//! | [`seeds`] | independent named random streams of one seed |
//! | [`node`] | a simulated node: its store slot, its disk latency as virtual time ([`node::NodeEnv`]) |
//! | [`workload`] | simulated clients: appends of every kind, retries, transactions, reads |
//! | [`subscriber`] | simulated subscribers: subscriptions with windows and acks, resubscribed after restarts |
//! | [`net`] | the simulated client network: byte streams split, delayed, reset and partitioned |
//! | [`resp`] | the RESP3 client the workload uses with `transport = "resp"`: requests, replies → history outcomes |
//! | [`history`] | the recorded operations, faults and recoveries |
//! | [`trace`] | the run's JSON-lines trace and its running XXH3-64 hash |
//! | [`snapshot`] | the final quiescent read of every node |
//! | [`world`] | one run: nodes, clients, the nemesis, the phases, the report |
//! | [`check`] | one checker per invariant |
//! | [`excerpt`] | the operations and faults around a violation, for failure reports |
//! | [`soak`] | many seeds, on several threads |
//! | [`shrink`] | searching for a smaller failing run |
//! | [`planted`] | naming the store's planted bugs (feature `planted-bugs`) |
//!
//! Invariants kept here:
//! - the same seed and the same code give the same trace hash ([`world::RunReport::trace_hash`]);
//! - independent random streams per concern (scheduler, each node, each client, each disk,
//!   each fault generator), so a change in one does not shift the others;
//! - virtual time advances only when no task can run, so idle time costs no wall time;
//! - one run is one thread; parallelism is only ever across seeds ([`soak`]).

pub mod check;
pub mod excerpt;
pub mod history;
pub mod net;
pub mod node;
pub mod planted;
pub mod resp;
pub mod rt;
pub mod scenario;
pub mod seeds;
pub mod shrink;
pub mod snapshot;
pub mod soak;
pub mod subscriber;
pub mod trace;
pub mod workload;
pub mod world;

pub use rt::{RunOutcome, Sim, SimEnv};
pub use scenario::Scenario;
pub use trace::TraceMode;
pub use world::{RunOptions, RunReport, run};
