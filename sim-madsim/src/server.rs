//! The server node: `Db` on a [`SimDisk`] that outlives every boot, served by the production
//! `db::server::serve`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use db::server::{ServerConfig, serve};
use db::{Db, StoreConfig};
use disk::SimDisk;
use madsim::runtime::{Handle, NodeHandle};

use crate::env::MadsimEnv;
use crate::listener::MadsimListener;
use crate::mix;
use crate::transcript::Transcript;

pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
pub const SERVER: SocketAddr = SocketAddr::new(SERVER_IP, 6379);
const DATA_DIR: &str = "/data";

/// Small segments, so a run seals several and recovery has more than one to read; two
/// buckets, so two group-commit writers run at once (Tier 2 keeps one; madsim's blocking work
/// is inline, so two stay repeatable here).
fn store_config() -> StoreConfig {
    StoreConfig {
        partition_count: 8,
        bucket_count: 2,
        segment_size_bytes: 2048,
        max_transaction_bytes: 512,
        ..StoreConfig::default()
    }
}

/// Creates the node. Its init task runs again on every `restart`, recovering from whatever
/// the disk kept; `boots` counts them.
pub fn node(
    handle: &Handle,
    seed: u64,
    disk: SimDisk,
    boots: Arc<AtomicU64>,
    log: Transcript,
) -> NodeHandle {
    handle
        .create_node()
        .name("server")
        .ip(SERVER_IP)
        .init(move || {
            let boot = boots.fetch_add(1, Ordering::Relaxed);
            boot_and_serve(seed, boot, disk.clone(), log.clone())
        })
        .build()
}

/// One boot: open (recovering) the store, then serve until the node is killed.
async fn boot_and_serve(seed: u64, boot: u64, disk: SimDisk, log: Transcript) {
    let env = MadsimEnv::new(mix(seed, 1_000 + boot));
    let opened = Db::open(&env, &disk, Path::new(DATA_DIR), store_config());
    let (db, report) = opened.unwrap_or_else(|err| panic!("boot {boot}: recovery failed: {err}"));
    log.note("server", format!("boot {boot}: {report:?}"));
    let listener = MadsimListener::bind(SERVER)
        .await
        .unwrap_or_else(|err| panic!("boot {boot}: bind: {err}"));
    let served = serve(
        listener,
        env,
        db,
        ServerConfig::default(),
        std::future::pending(),
    )
    .await;
    panic!("boot {boot}: serve returned {served:?}");
}
