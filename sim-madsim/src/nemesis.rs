//! The nemesis: server kills (with a power loss of the disk) and clogged links, on a timeline
//! drawn from the seed and run by the supervisor while the clients work.

use std::time::Duration;

use disk::SimDisk;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::mix;
use crate::transcript::Transcript;

/// Which way a clog stops traffic between a client and the server.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    ToServer,
    FromServer,
    Both,
}

/// Which client's link a clog cuts.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    Writer,
    Subscriber,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    /// Arm a power cut of the disk after this many more mutating operations: from then on
    /// every disk call fails until the kill's crash, so the cut can land between a group
    /// commit's write and its fsync, or inside the fsync.
    CutPower(u64),
    /// Kill the server node, then lose the disk's unsynced data.
    Kill,
    Restart,
    Clog(Client, Direction),
    Unclog(Client, Direction),
}

/// The seed's network and fault timeline.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Upper bound of madsim's one-way message latency (lower bound 1 ms).
    pub max_latency: Duration,
    /// madsim's chance that a TCP segment must wait and be sent again.
    pub loss_rate: f64,
    /// Actions by time since the clients started, in time order.
    steps: Vec<(Duration, Action)>,
}

/// Draws in ms from `rng`, as a `Duration`.
fn ms(rng: &mut ChaCha8Rng, range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}

impl Plan {
    pub fn of(seed: u64) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 300));
        let max_latency = ms(&mut rng, 2..=20);
        let loss_rate = [0.0, 0.0, 0.01, 0.05][rng.random_range(0..4)];
        let mut steps = kills(&mut rng);
        steps.extend(clogs(&mut rng));
        // Stable: at equal times, kills come before clogs, as drawn.
        steps.sort_by_key(|(at, _)| *at);
        Plan {
            max_latency,
            loss_rate,
            steps,
        }
    }
}

/// 1 to 3 kills, one after another: each restarts before the next kill (two kills of one boot
/// would restart a node that never recovered). Half of them follow a power cut by 0-150 ms.
fn kills(rng: &mut ChaCha8Rng) -> Vec<(Duration, Action)> {
    let mut steps = Vec::new();
    let mut at = ms(rng, 20..=300);
    for _ in 0..rng.random_range(1..=3) {
        if rng.random_bool(0.5) {
            steps.push((at, Action::CutPower(rng.random_range(0..=10))));
            at += ms(rng, 0..=150);
        }
        let downtime = ms(rng, 5..=300);
        steps.push((at, Action::Kill));
        steps.push((at + downtime, Action::Restart));
        at += downtime + ms(rng, 20..=300);
    }
    steps
}

/// 0 to 3 clogs, one after another, each of one client's link in one or both directions,
/// mostly the writer's and mostly longer than its reply timeout.
fn clogs(rng: &mut ChaCha8Rng) -> Vec<(Duration, Action)> {
    let mut steps = Vec::new();
    let mut at = Duration::ZERO;
    for _ in 0..rng.random_range(0..=3) {
        at += ms(rng, 10..=400);
        let client = if rng.random_bool(0.7) {
            Client::Writer
        } else {
            Client::Subscriber
        };
        let direction =
            [Direction::ToServer, Direction::FromServer, Direction::Both][rng.random_range(0..3)];
        let length = ms(rng, 50..=800);
        steps.push((at, Action::Clog(client, direction)));
        steps.push((at + length, Action::Unclog(client, direction)));
        at += length;
    }
    steps
}

/// What the nemesis did, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Injected {
    pub kills: u64,
    pub clogs: u64,
    /// Power cuts armed, and those that struck (the disk was off when the kill came).
    pub power_cuts: u64,
    pub power_cuts_struck: u64,
}

/// The nodes the nemesis acts on.
pub struct Nodes {
    pub server: NodeHandle,
    pub writer: NodeId,
    pub subscriber: NodeId,
}

pub struct Nemesis {
    pub handle: Handle,
    pub nodes: Nodes,
    pub disk: SimDisk,
    pub log: Transcript,
}

impl Nemesis {
    /// Runs `plan`'s timeline from now.
    pub async fn run(&self, plan: &Plan) -> Injected {
        let start = TimeHandle::current().now_instant();
        let mut injected = Injected::default();
        for &(at, action) in &plan.steps {
            madsim::time::sleep_until(start + at).await;
            match action {
                Action::Kill => {
                    injected.kills += 1;
                    injected.power_cuts_struck += u64::from(self.disk.is_powered_off());
                }
                Action::CutPower(_) => injected.power_cuts += 1,
                Action::Clog(..) => injected.clogs += 1,
                Action::Restart | Action::Unclog(..) => {}
            }
            self.apply(action);
        }
        injected
    }

    /// Kill, lose the unsynced data, restart after a short downtime: run before reading back,
    /// so every acknowledged append must have been durable, not only in memory.
    pub async fn final_crash(&self) {
        self.apply(Action::Kill);
        madsim::time::sleep(Duration::from_millis(10)).await;
        self.apply(Action::Restart);
    }

    fn apply(&self, action: Action) {
        self.log.note("nemesis", format!("{action:?}"));
        let server = self.nodes.server.id();
        match action {
            Action::CutPower(ops) => self.disk.crash_after_ops(ops),
            Action::Kill => {
                self.handle.kill(server);
                // The node's tasks are gone (dropped when next scheduled); the disk now loses
                // what they wrote and never synced.
                self.disk.crash();
            }
            Action::Restart => self.handle.restart(server),
            Action::Clog(client, direction) => {
                for (from, to) in self.links(client, direction) {
                    NetSim::current().clog_link(from, to);
                }
            }
            Action::Unclog(client, direction) => {
                for (from, to) in self.links(client, direction) {
                    NetSim::current().unclog_link(from, to);
                }
            }
        }
    }

    /// The directed links `(from, to)` a clog of `client` in `direction` cuts.
    fn links(&self, client: Client, direction: Direction) -> Vec<(NodeId, NodeId)> {
        let server = self.nodes.server.id();
        let client = match client {
            Client::Writer => self.nodes.writer,
            Client::Subscriber => self.nodes.subscriber,
        };
        match direction {
            Direction::ToServer => vec![(client, server)],
            Direction::FromServer => vec![(server, client)],
            Direction::Both => vec![(client, server), (server, client)],
        }
    }
}
