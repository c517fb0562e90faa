//! # db: the SierraDB domain
//!
//! Events, streams and partitions ([`model`]), and the segment store that keeps them
//! ([`store`]): append-only segment files per bucket, one CRC-checked frame per transaction,
//! per-segment indexes with bloom filters, group-commit fsync, and crash recovery.
//!
//! It also holds the client-facing [`server`] (RESP3 commands over any `net::Listener`).
//!
//! What this crate is not: a runtime, a socket implementation or a process. It reaches time,
//! tasks and randomness only through [`env::Env`], files only through the `disk` crate's traits
//! and connections only through `net::Listener`, so the same code runs under tokio on real
//! files and sockets and inside the deterministic simulator.
//!
//! | module | what it holds |
//! |---|---|
//! | [`model`] | ids, stream ids, expected versions, events, transactions |
//! | [`config`] | store configuration and its defaults |
//! | [`error`] | caller faults, unknown outcomes and storage faults, kept apart |
//! | [`env`] | the `Env` trait and its tokio implementation |
//! | [`store`] | the segment store: layout, records, indexes, recovery, group commit |
//! | [`server`] | the RESP3 client server: command parsing, execution, replies, subscriptions |
//!
//! Invariants kept here, and checked by the crash tests and the simulator:
//! - an append is acknowledged only after an fsync covers it, and a read never returns an
//!   event that is not durable (visibility ⊆ durability);
//! - stream versions and partition sequences are gapless and unique, also after any crash;
//! - a transaction is one frame: after a crash it is wholly present or wholly absent;
//! - corrupt bytes are reported as errors naming file and offset, never served, never a panic.

pub mod config;
pub mod env;
pub mod error;
pub mod metrics;
pub mod model;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod server;
pub mod store;

pub use config::{StoreConfig, SyncPolicy};

/// Whether this build carries the simulator's planted bugs; a server must refuse to run then.
pub const PLANTED_BUGS_COMPILED: bool = cfg!(feature = "planted-bugs");
pub use error::{AppendError, StoreError};
pub use store::group_commit::Db;
