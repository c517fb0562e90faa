//! # sim-madsim: the nightly madsim cross-check
//!
//! The production server wiring (`Db` + `db::server::serve` behind the `Env` and `Listener`
//! seams) on madsim 0.2.34's scheduler, clock and TCP, with the store on `disk::SimDisk`. Each
//! seed runs one server node, a writer and a subscriber; a nemesis kills and restarts the
//! server (the disk losing unsynced data each time) and clogs client links. See README.md and
//! docs/decisions/0004-tier2-turmoil-and-madsim.md.
//!
//! | module | what |
//! |---|---|
//! | [`env`] | `Env` over madsim: virtual clock and timers, tasks on the node, blocking work inline |
//! | [`listener`] | `Listener` over `madsim::net::TcpListener` |
//! | [`server`] | the server node: recover on every boot, then serve |
//! | [`client`], [`workload`], [`writer`], [`subscriber`] | RESP3 clients and their checks |
//! | [`nemesis`] | kills, restarts, clogs, drawn from the seed |
//! | [`scenario`] | one seed's run |
//! | [`transcript`] | what a run saw, hashed to compare runs |

#[cfg(not(madsim))]
compile_error!("sim-madsim builds only with RUSTFLAGS=\"--cfg madsim\": see README.md");

pub mod client;
pub mod env;
pub mod listener;
pub mod nemesis;
pub mod scenario;
pub mod server;
pub mod subscriber;
pub mod transcript;
pub mod workload;
pub mod writer;

pub use scenario::{Outcome, scenario};

/// splitmix64 of `seed` and `salt`: one independent random stream per purpose, so changing
/// how one part draws leaves the others' draws alone.
pub fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
