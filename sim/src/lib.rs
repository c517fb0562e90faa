//! # sim: deterministic simulation of SierraDB
//!
//! Runs the real `db` code from a single `u64` seed, on one thread, against a virtual clock,
//! so a failing seed replays bit for bit. It is a test harness, not a runtime for production:
//! nothing here touches real time, real threads or OS randomness.
//!
//! | module | what it holds |
//! |---|---|
//! | [`rt`] | the executor: seeded choice among ready tasks, a virtual clock that jumps to the next timer, node tags for crashes, a trace hash; [`rt::SimEnv`] implements `db::env::Env` |
//!
//! Invariants kept here:
//! - the same seed and the same code give the same trace hash ([`rt::Sim::trace_hash`]);
//! - independent random streams per concern (scheduler, each node), so a change in one does
//!   not shift the others;
//! - virtual time advances only when no task can run, so idle time costs no wall time.

pub mod rt;

pub use rt::{RunOutcome, Sim, SimEnv};
