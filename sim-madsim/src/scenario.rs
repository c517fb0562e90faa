//! One seed's run: the nodes, the clients, the nemesis, the final crash and the read-back.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use disk::{FaultConfig, SimDisk};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::TimeHandle;

use crate::nemesis::{Injected, Nemesis, Nodes, Plan};
use crate::server::{self, SERVER};
use crate::transcript::Transcript;
use crate::{mix, subscriber, writer};

/// When the clients start, so the server's first boot has bound its port (madsim picks the
/// order of same-time tasks at random; a refused connection would only cost a retry).
const CLIENTS_START: Duration = Duration::from_millis(5);

/// What one run did and saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    /// FNV-1a of the transcript: equal for two runs of one seed.
    pub hash: u64,
    pub transcript: Vec<String>,
    pub injected: Injected,
    pub boots: u64,
    /// Batches the writer sent again, by cause, and connections the clients gave up.
    pub retries: BTreeMap<String, u64>,
    pub writer_reconnects: u64,
    pub subscriber_reconnects: u64,
    /// Unsynced writes the disk tore or lost at the kills.
    pub torn_or_lost_writes: u64,
    /// Events read back and found as acknowledged.
    pub events_checked: u64,
    pub sim_time: Duration,
}

fn client_node(handle: &Handle, name: &str, last_octet: u8) -> NodeHandle {
    handle
        .create_node()
        .name(name)
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)))
        .build()
}

/// The run of the current madsim runtime's seed. A `fn`, as `Runtime::check_determinism`
/// wants; every invariant is asserted inside, so a violation panics the run.
pub async fn scenario() -> Outcome {
    let handle = Handle::current();
    let seed = handle.seed();
    let plan = Plan::of(seed);
    NetSim::current().update_config(|net| {
        net.send_latency = Duration::from_millis(1)..plan.max_latency;
        net.packet_loss_rate = plan.loss_rate;
    });
    let log = Transcript::default();
    log.note("supervisor", format!("seed {seed}: {plan:?}"));

    let disk = SimDisk::new(mix(seed, 400), FaultConfig::default());
    let boots = Arc::new(AtomicU64::new(0));
    let server = server::node(&handle, seed, disk.clone(), boots.clone(), log.clone());
    let writer_node = client_node(&handle, "writer", 2);
    let subscriber_node = client_node(&handle, "subscriber", 3);

    madsim::time::sleep(CLIENTS_START).await;
    let writing = writer_node.spawn(writer::run(seed, SERVER, log.clone()));
    let subscribing = subscriber_node.spawn(subscriber::run(seed, SERVER, log.clone()));
    let nemesis = Nemesis {
        handle: handle.clone(),
        nodes: Nodes {
            server,
            writer: writer_node.id(),
            subscriber: subscriber_node.id(),
        },
        disk: disk.clone(),
        log: log.clone(),
    };
    let mut injected = nemesis.run(&plan).await;
    let written = writing.await.expect("writer task");
    nemesis.final_crash().await;
    injected.kills += 1;
    let checking = writer_node.spawn(writer::verify(seed, SERVER, written.model, log.clone()));
    let events_checked = checking.await.expect("checker task");
    let subscribed = subscribing.await.expect("subscriber task");

    let counts = disk.fault_counts();
    log.note("supervisor", format!("disk: {counts:?}"));
    Outcome {
        seed,
        hash: log.hash(),
        transcript: log.lines(),
        injected,
        boots: boots.load(Ordering::Relaxed),
        retries: written.retries,
        writer_reconnects: written.reconnects,
        subscriber_reconnects: subscribed.reconnects,
        torn_or_lost_writes: counts.torn_writes + counts.lost_writes,
        events_checked,
        sim_time: TimeHandle::current().elapsed(),
    }
}
