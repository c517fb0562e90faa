//! Adapters that put SierraDB's production seams on turmoil's simulated world (Tier 2).
//!
//! turmoil and turmoil-fs are dev-dependencies of `sim`, so the adapters live here, next to the
//! tests that use them, rather than in `sim/src`.
//!
//! | seam | adapter | backed by |
//! |---|---|---|
//! | [`disk::Disk`] / [`disk::File`] | [`TurmoilDisk`] / [`TurmoilFile`] | turmoil-fs 0.1's `std::fs` shim: pending vs durable bytes, file vs directory fsync, prefix tears on crash |
//! | [`net::Listener`] | [`TurmoilListener`] | `turmoil::net::TcpListener` (simulated TCP, partitions, latency) |

mod disk;
mod listener;

pub use self::disk::TurmoilDisk;
pub use self::listener::TurmoilListener;
