//! From a scenario and a seed to one concrete run: [`Derived`].
//!
//! Every range is resolved to a point, swarm testing switches fault kinds off, and the random
//! fault generators are unrolled into an explicit, time-ordered schedule of [`FaultEvent`]s.
//! The run itself never draws a fault again, so shrinking can drop schedule entries one by one
//! and the rest of the run stays the same.
//!
//! Draws come from two named streams of the seed ([`crate::seeds`]): `derive` for the points
//! and `nemesis` for the schedule, each consumed in a fixed order, one draw per range even when
//! a range is a single value. Pinning a range to the point it produced therefore changes
//! nothing else, which is what lets `shrink` write a scenario that replays its seed.

use std::fmt;

use db::StoreConfig;
use disk::FaultConfig;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::quantity::{Range, jitter, uniform};
use super::{Action, Direction, Scenario, Transport};
use crate::seeds;

/// The kinds of operation a client performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// One event, expected version `any`.
    Append,
    /// One event with an expected version (`exact` from what the client last saw, sometimes
    /// stale or wrong on purpose, `empty` or `exists`).
    AppendExpected,
    /// Several events to one stream in one transaction.
    AppendBatch,
    /// Events to several streams sharing a partition key, in one transaction.
    Transaction,
    /// An event id the client already stored, sent again with other content (must be refused).
    Conflict,
    Get,
    ReadStream,
    ReadStreamBackward,
    ReadPartition,
    StreamVersion,
    PartitionSequence,
    /// The liveness probe after healing (not drawn by clients).
    Probe,
}

impl OpKind {
    pub const DRAWN: [OpKind; 11] = [
        OpKind::Append,
        OpKind::AppendExpected,
        OpKind::AppendBatch,
        OpKind::Transaction,
        OpKind::Conflict,
        OpKind::Get,
        OpKind::ReadStream,
        OpKind::ReadStreamBackward,
        OpKind::ReadPartition,
        OpKind::StreamVersion,
        OpKind::PartitionSequence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Append => "append",
            OpKind::AppendExpected => "append_expected",
            OpKind::AppendBatch => "append_batch",
            OpKind::Transaction => "transaction",
            OpKind::Conflict => "conflict",
            OpKind::Get => "get",
            OpKind::ReadStream => "read_stream",
            OpKind::ReadStreamBackward => "read_stream_backward",
            OpKind::ReadPartition => "read_partition",
            OpKind::StreamVersion => "stream_version",
            OpKind::PartitionSequence => "partition_sequence",
            OpKind::Probe => "probe",
        }
    }

    pub fn is_append(self) -> bool {
        matches!(
            self,
            OpKind::Append
                | OpKind::AppendExpected
                | OpKind::AppendBatch
                | OpKind::Transaction
                | OpKind::Conflict
                | OpKind::Probe
        )
    }
}

/// Relative weights of the operation kinds (they need not sum to 1).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub append: f64,
    pub append_expected: f64,
    pub append_batch: f64,
    pub transaction: f64,
    pub conflict: f64,
    pub get: f64,
    pub read_stream: f64,
    pub read_stream_backward: f64,
    pub read_partition: f64,
    pub stream_version: f64,
    pub partition_sequence: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            append: 3.0,
            append_expected: 3.0,
            append_batch: 1.0,
            transaction: 1.0,
            conflict: 0.2,
            get: 1.0,
            read_stream: 1.0,
            read_stream_backward: 0.5,
            read_partition: 0.5,
            stream_version: 0.5,
            partition_sequence: 0.3,
        }
    }
}

impl Mix {
    pub fn weight(&self, kind: OpKind) -> f64 {
        let w = match kind {
            OpKind::Append => self.append,
            OpKind::AppendExpected => self.append_expected,
            OpKind::AppendBatch => self.append_batch,
            OpKind::Transaction => self.transaction,
            OpKind::Conflict => self.conflict,
            OpKind::Get => self.get,
            OpKind::ReadStream => self.read_stream,
            OpKind::ReadStreamBackward => self.read_stream_backward,
            OpKind::ReadPartition => self.read_partition,
            OpKind::StreamVersion => self.stream_version,
            OpKind::PartitionSequence => self.partition_sequence,
            OpKind::Probe => 0.0,
        };
        w.max(0.0)
    }

    pub fn total(&self) -> f64 {
        OpKind::DRAWN.iter().map(|&k| self.weight(k)).sum()
    }

    /// The kind a uniform `unit` in `[0, 1)` falls on.
    pub fn choose(&self, unit: f64) -> OpKind {
        let mut left = unit * self.total();
        for kind in OpKind::DRAWN {
            let w = self.weight(kind);
            if left < w {
                return kind;
            }
            left -= w;
        }
        // Rounding at the very top of the range.
        OpKind::DRAWN
            .into_iter()
            .rev()
            .find(|&k| self.weight(k) > 0.0)
            .expect("validated: some weight is positive")
    }
}

/// The workload, concrete.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadPlan {
    pub clients: u32,
    pub streams: u32,
    pub streams_per_key: u32,
    pub hot_streams: u32,
    pub hot_fraction: f64,
    pub think_mean_ns: u64,
    pub timeout_ns: u64,
    pub retries: u32,
    pub payload_bytes: (u64, u64),
    pub max_events: u32,
    pub max_ops_per_client: u64,
    pub mix: Mix,
    pub subscribers: SubscriberPlan,
}

/// The subscriber clients, concrete where a seed picks one value; the ranges each subscriber
/// draws from on its own stream.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriberPlan {
    pub count: u32,
    pub subscriptions: (u64, u64),
    pub window: (u64, u64),
    pub ack_delay_mean_ns: u64,
    pub stall: f64,
    pub stall_for_ns: u64,
}

/// The disk's faults and latency, concrete.
#[derive(Clone, Debug, Serialize)]
pub struct DiskPlan {
    pub sector_size: u64,
    pub unsynced_kept: f64,
    pub torn: f64,
    pub read_bit_flip: f64,
    pub misdirected_write: f64,
    pub read_error: f64,
    pub write_error: f64,
    pub sync_error: f64,
    pub latency_ns: u64,
    pub latency_tail: f64,
    pub latency_tail_extra_ns: u64,
}

impl DiskPlan {
    /// The `SimDisk` configuration while faults are on. Latency is not the disk's: the node's
    /// environment turns it into virtual time (see [`crate::world`]).
    pub fn fault_config(&self) -> FaultConfig {
        FaultConfig {
            sector_size: self.sector_size,
            unsynced_write_kept_probability: self.unsynced_kept,
            torn_write_probability: self.torn,
            read_bit_flip_probability: self.read_bit_flip,
            misdirected_write_probability: self.misdirected_write,
            read_error_probability: self.read_error,
            write_error_probability: self.write_error,
            sync_error_probability: self.sync_error,
            capacity_bytes: None,
            latency_ns: (0, 0),
        }
    }

    /// The configuration after `heal`: run-time faults off; what a crash does stays.
    pub fn healed_config(&self) -> FaultConfig {
        FaultConfig {
            sector_size: self.sector_size,
            unsynced_write_kept_probability: self.unsynced_kept,
            torn_write_probability: self.torn,
            ..FaultConfig::default()
        }
    }
}

/// The client network, concrete.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkPlan {
    pub transport: Transport,
    /// Typical one-way delay of a write (each uniform in ±50%).
    pub delay_ns: u64,
    /// The chance one read or write is cut short.
    pub split: f64,
    /// The chance one write resets its connection.
    pub reset: f64,
}

impl NetworkPlan {
    /// The network while faults are on.
    pub fn net_config(&self) -> crate::net::NetConfig {
        let delay = crate::net::DelayRange::between(
            std::time::Duration::from_nanos(self.delay_ns / 2),
            std::time::Duration::from_nanos(self.delay_ns + self.delay_ns / 2),
        );
        crate::net::NetConfig {
            split_reads: self.split > 0.0,
            split_writes: self.split > 0.0,
            split_chance: self.split,
            to_server_delay: delay,
            to_client_delay: delay,
            reset_on_write: self.reset,
            ..crate::net::NetConfig::default()
        }
    }

    /// The network after `heal`: resets stop; delays and splits, which lose nothing, stay.
    pub fn healed_config(&self) -> crate::net::NetConfig {
        crate::net::NetConfig {
            reset_on_write: 0.0,
            ..self.net_config()
        }
    }

    /// The longest one write can take to become readable at the other end: the top of the
    /// delay range [`NetworkPlan::net_config`] draws from, in either direction. Nothing
    /// crosses a network with `transport = "api"`.
    pub fn one_way_delay_max_ns(&self) -> u64 {
        match self.transport {
            Transport::Api => 0,
            Transport::Resp => self.delay_ns + self.delay_ns / 2,
        }
    }
}

/// Whose connections a network fault touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// Every client and subscriber of the node.
    All,
    /// Workload client `j` (its node is `j mod nodes`).
    Client(u32),
    /// Subscriber `j` (its node is `j mod nodes`).
    Subscriber(u32),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::All => f.write_str("all"),
            Peer::Client(c) => write!(f, "c{c}"),
            Peer::Subscriber(s) => write!(f, "sub{s}"),
        }
    }
}

/// What the checkers are told.
#[derive(Clone, Debug, Serialize)]
pub struct CheckPlan {
    pub liveness_within_ns: u64,
    pub drain_ns: u64,
    /// Faults that damage stored bytes are on (read bit flips, misdirected writes, `corrupt`):
    /// acknowledged data may then be reported unreadable or be refused, never served wrong.
    pub corruption_allowed: bool,
}

/// One concrete fault at one time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    pub at_ns: u64,
    pub action: FaultAction,
}

/// A fault, with every parameter decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    Crash {
        node: u32,
        restart_after_ns: Option<u64>,
    },
    Restart {
        node: u32,
    },
    PowerCut {
        node: u32,
        after_ops: u64,
        restart_after_ns: u64,
    },
    DiskFull {
        node: u32,
        slack_bytes: u64,
    },
    DiskSpace {
        node: u32,
    },
    Heal,
    ClockJump {
        node: u32,
        by_ns: i64,
    },
    ClockSkew {
        node: u32,
        skew_ns: i64,
    },
    Corrupt {
        node: u32,
        pick: u64,
    },
    NetPartition {
        node: u32,
        peer: Peer,
        direction: Direction,
    },
    NetHeal {
        node: u32,
        peer: Peer,
    },
    NetReset {
        node: u32,
        peer: Peer,
    },
}

impl FaultAction {
    /// The name the summary counts this fault under.
    pub fn name(&self) -> &'static str {
        match self {
            FaultAction::Crash { .. } => "crash",
            FaultAction::Restart { .. } => "restart",
            FaultAction::PowerCut { .. } => "power_cut",
            FaultAction::DiskFull { .. } => "disk_full",
            FaultAction::DiskSpace { .. } => "disk_space",
            FaultAction::Heal => "heal",
            FaultAction::ClockJump { .. } => "clock_jump",
            FaultAction::ClockSkew { .. } => "clock_skew",
            FaultAction::Corrupt { .. } => "corrupt",
            FaultAction::NetPartition {
                direction: Direction::ToClient,
                ..
            } => "net_partition_one_way",
            FaultAction::NetPartition { .. } => "net_partition",
            FaultAction::NetHeal { .. } => "net_heal",
            FaultAction::NetReset { .. } => "net_reset",
        }
    }
}

/// A scenario resolved by one seed.
#[derive(Clone, Debug, Serialize)]
pub struct Derived {
    pub scenario: String,
    pub seed: u64,
    pub duration_ns: u64,
    pub nodes: u32,
    #[serde(skip)]
    pub store: StoreConfig,
    pub workload: WorkloadPlan,
    pub disk: DiskPlan,
    pub network: NetworkPlan,
    pub schedule: Vec<FaultEvent>,
    pub check: CheckPlan,
    /// Fault kinds this seed switched off (swarm testing).
    pub swarm_off: Vec<&'static str>,
}

/// Fault kinds swarm testing may switch off, in draw order.
const SWARM_KINDS: [&str; 10] = [
    "crash",
    "clock",
    "disk_full",
    "corrupt",
    "read_bit_flip",
    "misdirected_write",
    "read_error",
    "write_error",
    "sync_error",
    "latency_tail",
];

/// Network fault kinds swarm testing may switch off (`transport = "resp"` only), in draw
/// order on their own stream.
const SWARM_NET_KINDS: [&str; 4] = [
    "net_split",
    "net_reset_on_write",
    "net_partition",
    "net_reset",
];

fn pick_u32(range: &Range<super::Count>, rng: &mut ChaCha8Rng) -> u32 {
    u32::try_from(range.pick(rng).0).unwrap_or(u32::MAX)
}

impl Derived {
    /// The longest one acknowledgement round trip of a subscription can take this seed: the
    /// delivery's way to the subscriber and the acknowledgement's way back, each at most the
    /// network's largest one-way delay, plus the largest delay a subscriber draws before
    /// acknowledging (uniform in `[0, 2·mean]`). A feed whose window is full waits exactly
    /// this long, at worst, before it may send the next delivery.
    pub fn ack_round_trip_max_ns(&self) -> u64 {
        let ack_delay_max_ns = self
            .workload
            .subscribers
            .ack_delay_mean_ns
            .saturating_mul(2);
        self.network
            .one_way_delay_max_ns()
            .saturating_mul(2)
            .saturating_add(ack_delay_max_ns)
    }

    /// Resolves `scenario` for `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Derived {
        let mut rng = seeds::rng(seed, "derive", 0);
        let rng = &mut rng;
        let duration_ns = scenario.duration.pick(rng).0;
        let w = &scenario.workload;
        let workload = WorkloadPlan {
            clients: pick_u32(&w.clients, rng),
            streams: pick_u32(&w.streams, rng),
            streams_per_key: pick_u32(&w.streams_per_key, rng),
            hot_streams: pick_u32(&w.hot_streams, rng),
            hot_fraction: w.hot_fraction.pick(rng).0,
            think_mean_ns: w.think.pick(rng).0,
            timeout_ns: w.timeout.pick(rng).0.max(1),
            retries: pick_u32(&w.retries, rng),
            payload_bytes: (w.payload.low.0, w.payload.high.0),
            max_events: pick_u32(&w.max_events, rng).max(1),
            max_ops_per_client: w.max_ops_per_client.0,
            mix: w.mix.clone(),
            subscribers: {
                // Its own stream: adding subscriber keys leaves every other draw where it was.
                let mut rng = seeds::rng(seed, "derive/subscribers", 0);
                let rng = &mut rng;
                SubscriberPlan {
                    count: pick_u32(&w.subscribers, rng),
                    subscriptions: (
                        w.subscriptions_per_subscriber.low.0.max(1),
                        w.subscriptions_per_subscriber.high.0.max(1),
                    ),
                    window: (
                        w.subscriber_window.low.0.max(1),
                        w.subscriber_window.high.0.max(1),
                    ),
                    ack_delay_mean_ns: w.subscriber_ack_delay.pick(rng).0,
                    stall: w.subscriber_stall.pick(rng).0,
                    stall_for_ns: w.subscriber_stall_for.pick(rng).0,
                }
            },
        };
        let d = &scenario.faults.disk;
        let sectors = &d.sector_size;
        let sector_size = sectors[uniform(rng, 0, sectors.len() as u64 - 1) as usize];
        let mut disk = DiskPlan {
            sector_size,
            unsynced_kept: d.unsynced_kept.pick(rng).0,
            torn: d.torn.pick(rng).0,
            read_bit_flip: d.read_bit_flip.pick(rng).0,
            misdirected_write: d.misdirected_write.pick(rng).0,
            read_error: d.read_error.pick(rng).0,
            write_error: d.write_error.pick(rng).0,
            sync_error: d.sync_error.pick(rng).0,
            latency_ns: d.latency.pick(rng).0,
            latency_tail: d.latency_tail.pick(rng).0,
            latency_tail_extra_ns: d.latency_tail_extra.pick(rng).0,
        };
        // Always drawn, so switching swarm on or off does not shift the draws after it.
        let draws: Vec<bool> = SWARM_KINDS
            .iter()
            .map(|_| rng.next_u64() & 1 == 1)
            .collect();
        let off = |kind: &str| {
            scenario.swarm
                && SWARM_KINDS
                    .iter()
                    .position(|k| *k == kind)
                    .is_some_and(|i| draws[i])
        };
        // The network's points and swarm draws come from their own stream, so scenarios without
        // a network draw exactly what they drew before it existed.
        let resp = scenario.network.transport == Transport::Resp;
        let mut net_rng = seeds::rng(seed, "derive/network", 0);
        let n = &scenario.network;
        let mut network = NetworkPlan {
            transport: n.transport,
            delay_ns: n.delay.pick(&mut net_rng).0,
            split: n.split.pick(&mut net_rng).0,
            reset: n.reset.pick(&mut net_rng).0,
        };
        let net_draws: Vec<bool> = SWARM_NET_KINDS
            .iter()
            .map(|_| net_rng.next_u64() & 1 == 1)
            .collect();
        let net_off = |kind: &str| {
            scenario.swarm
                && resp
                && SWARM_NET_KINDS
                    .iter()
                    .position(|k| *k == kind)
                    .is_some_and(|i| net_draws[i])
        };
        if net_off("net_split") {
            network.split = 0.0;
        }
        if net_off("net_reset_on_write") {
            network.reset = 0.0;
        }
        let off = |kind: &str| off(kind) || net_off(kind);
        let mut swarm_off: Vec<&'static str> =
            SWARM_KINDS.iter().copied().filter(|k| off(k)).collect();
        swarm_off.extend(SWARM_NET_KINDS.iter().copied().filter(|k| net_off(k)));
        for (kind, p) in [
            ("read_bit_flip", &mut disk.read_bit_flip),
            ("misdirected_write", &mut disk.misdirected_write),
            ("read_error", &mut disk.read_error),
            ("write_error", &mut disk.write_error),
            ("sync_error", &mut disk.sync_error),
            ("latency_tail", &mut disk.latency_tail),
        ] {
            if off(kind) {
                *p = 0.0;
            }
        }

        let nodes = scenario.node.count;
        let peers = (workload.clients, workload.subscribers.count);
        let schedule = build_schedule(scenario, seed, duration_ns, nodes, peers, &off);
        let corruption_allowed = disk.read_bit_flip > 0.0
            || disk.misdirected_write > 0.0
            || schedule
                .iter()
                .any(|e| matches!(e.action, FaultAction::Corrupt { .. }));
        let n = &scenario.node;
        Derived {
            scenario: scenario.name.clone(),
            seed,
            duration_ns,
            nodes,
            store: StoreConfig {
                partition_count: n.partitions,
                bucket_count: n.buckets,
                segment_size_bytes: n.segment_size.0,
                max_transaction_bytes: n.max_transaction_bytes.0,
                max_batch_transactions: n.max_batch_transactions,
                preallocate_bytes: n.preallocate.0,
                ..StoreConfig::default()
            },
            workload,
            disk,
            network,
            schedule,
            check: CheckPlan {
                liveness_within_ns: scenario.check.liveness_within.0,
                drain_ns: scenario.check.drain.0,
                corruption_allowed,
            },
            swarm_off,
        }
    }
}

/// Unrolls explicit entries and the random generators into one time-ordered list.
fn build_schedule(
    scenario: &Scenario,
    seed: u64,
    duration_ns: u64,
    nodes: u32,
    (clients, subscribers): (u32, u32),
    off: &dyn Fn(&str) -> bool,
) -> Vec<FaultEvent> {
    let mut rng = seeds::rng(seed, "nemesis", 0);
    let rng = &mut rng;
    let mut events = Vec::new();
    for entry in &scenario.schedule {
        let at_ns = entry.at.pick(rng).0;
        let node = entry.node.unwrap_or(0);
        let restart_after = entry.restart_after.map(|r| r.pick(rng).0);
        let action = match entry.action {
            Action::Crash => FaultAction::Crash {
                node,
                restart_after_ns: restart_after,
            },
            Action::Restart => FaultAction::Restart { node },
            Action::PowerCut => FaultAction::PowerCut {
                node,
                after_ops: entry.after_ops.map_or(0, |r| r.pick(rng).0),
                restart_after_ns: restart_after.unwrap_or(0),
            },
            Action::DiskFull => FaultAction::DiskFull {
                node,
                slack_bytes: entry.slack.map_or(0, |r| r.pick(rng).0),
            },
            Action::DiskSpace => FaultAction::DiskSpace { node },
            Action::Heal => FaultAction::Heal,
            Action::ClockJump => FaultAction::ClockJump {
                node,
                by_ns: entry.by.map_or(0, |r| r.pick(rng).0),
            },
            Action::ClockSkew => FaultAction::ClockSkew {
                node,
                skew_ns: entry.by.map_or(0, |r| r.pick(rng).0),
            },
            Action::Corrupt => FaultAction::Corrupt {
                node,
                pick: match entry.pick {
                    Some(r) => r.pick(rng).0,
                    None => rng.next_u64(),
                },
            },
            Action::NetPartition => {
                let (node, peer) = entry_peer(entry, nodes);
                FaultAction::NetPartition {
                    node,
                    peer,
                    direction: entry.direction.unwrap_or(Direction::Both),
                }
            }
            Action::NetHeal => {
                let (node, peer) = entry_peer(entry, nodes);
                FaultAction::NetHeal { node, peer }
            }
            Action::NetReset => {
                let (node, peer) = entry_peer(entry, nodes);
                FaultAction::NetReset { node, peer }
            }
        };
        events.push(FaultEvent { at_ns, action });
    }
    let pick_node = |rng: &mut ChaCha8Rng| uniform(rng, 0, u64::from(nodes) - 1) as u32;
    // Each generator has its own stream, so switching one off leaves the others' times alone.
    if let Some(crash) = &scenario.faults.crash {
        let mut rng = seeds::rng(seed, "nemesis/crash", 0);
        let every = crash.every.pick(&mut rng).0.max(1);
        let restart = crash.restart_after.pick(&mut rng).0;
        let power_cut = crash.power_cut.pick(&mut rng).0;
        let mut t = jitter(&mut rng, every);
        while t < duration_ns && !off("crash") {
            let node = pick_node(&mut rng);
            let restart_after_ns = jitter(&mut rng, restart);
            let is_cut = (uniform(&mut rng, 0, 1 << 20) as f64) < power_cut * f64::from(1 << 20);
            let after_ops = crash.power_cut_ops.pick(&mut rng).0;
            let action = if is_cut {
                FaultAction::PowerCut {
                    node,
                    after_ops,
                    restart_after_ns,
                }
            } else {
                FaultAction::Crash {
                    node,
                    restart_after_ns: Some(restart_after_ns),
                }
            };
            events.push(FaultEvent { at_ns: t, action });
            t += jitter(&mut rng, every).max(1);
        }
    }
    if let Some(clock) = &scenario.faults.clock
        && !off("clock")
    {
        let mut rng = seeds::rng(seed, "nemesis/clock", 0);
        if let Some(skew) = &clock.skew {
            for node in 0..nodes {
                let skew_ns = skew.pick(&mut rng).0;
                events.push(FaultEvent {
                    at_ns: 0,
                    action: FaultAction::ClockSkew { node, skew_ns },
                });
            }
        }
        let every = clock.jump_every.pick(&mut rng).0.max(1);
        let mut t = jitter(&mut rng, every);
        while t < duration_ns {
            let node = pick_node(&mut rng);
            let by_ns = clock.jump_by.pick(&mut rng).0;
            events.push(FaultEvent {
                at_ns: t,
                action: FaultAction::ClockJump { node, by_ns },
            });
            t += jitter(&mut rng, every).max(1);
        }
    }
    if let Some(full) = &scenario.faults.disk_full
        && !off("disk_full")
    {
        let mut rng = seeds::rng(seed, "nemesis/disk_full", 0);
        let every = full.every.pick(&mut rng).0.max(1);
        let lasting = full.lasting.pick(&mut rng).0;
        let mut t = jitter(&mut rng, every);
        while t < duration_ns {
            let node = pick_node(&mut rng);
            let slack_bytes = full.slack.pick(&mut rng).0;
            let end = t + jitter(&mut rng, lasting);
            events.push(FaultEvent {
                at_ns: t,
                action: FaultAction::DiskFull { node, slack_bytes },
            });
            events.push(FaultEvent {
                at_ns: end,
                action: FaultAction::DiskSpace { node },
            });
            t = end + jitter(&mut rng, every).max(1);
        }
    }
    if let Some(corrupt) = &scenario.faults.corrupt
        && !off("corrupt")
    {
        let mut rng = seeds::rng(seed, "nemesis/corrupt", 0);
        let every = corrupt.every.pick(&mut rng).0.max(1);
        let mut t = jitter(&mut rng, every);
        while t < duration_ns {
            let node = pick_node(&mut rng);
            events.push(FaultEvent {
                at_ns: t,
                action: FaultAction::Corrupt {
                    node,
                    pick: rng.next_u64(),
                },
            });
            t += jitter(&mut rng, every).max(1);
        }
    }
    // A random client or subscriber, and its node.
    let pick_peer = |rng: &mut ChaCha8Rng| -> (u32, Peer) {
        let j = uniform(rng, 0, u64::from(clients + subscribers).max(1) - 1) as u32;
        if j < clients {
            (j % nodes, Peer::Client(j))
        } else {
            let s = j - clients;
            (s % nodes, Peer::Subscriber(s))
        }
    };
    if let Some(cut) = &scenario.faults.net_partition
        && !off("net_partition")
    {
        let mut rng = seeds::rng(seed, "nemesis/net_partition", 0);
        let every = cut.every.pick(&mut rng).0.max(1);
        let lasting = cut.lasting.pick(&mut rng).0;
        let one_way = cut.one_way.pick(&mut rng).0;
        let whole_node = cut.whole_node.pick(&mut rng).0;
        let mut t = jitter(&mut rng, every);
        while t < duration_ns {
            let (node, peer) = if chance(&mut rng, whole_node) {
                (pick_node(&mut rng), Peer::All)
            } else {
                pick_peer(&mut rng)
            };
            let direction = if chance(&mut rng, one_way) {
                Direction::ToClient
            } else {
                Direction::Both
            };
            let end = t + jitter(&mut rng, lasting);
            events.push(FaultEvent {
                at_ns: t,
                action: FaultAction::NetPartition {
                    node,
                    peer,
                    direction,
                },
            });
            events.push(FaultEvent {
                at_ns: end,
                action: FaultAction::NetHeal { node, peer },
            });
            t = end + jitter(&mut rng, every).max(1);
        }
    }
    if let Some(reset) = &scenario.faults.net_reset
        && !off("net_reset")
    {
        let mut rng = seeds::rng(seed, "nemesis/net_reset", 0);
        let every = reset.every.pick(&mut rng).0.max(1);
        let mut t = jitter(&mut rng, every);
        while t < duration_ns {
            let (node, peer) = pick_peer(&mut rng);
            events.push(FaultEvent {
                at_ns: t,
                action: FaultAction::NetReset { node, peer },
            });
            t += jitter(&mut rng, every).max(1);
        }
    }
    // Stable: entries at the same time keep their order (explicit ones first).
    events.sort_by_key(|e| e.at_ns);
    events
}

/// Whether a draw falls under probability `p` (the crash generator's resolution).
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    (uniform(rng, 0, 1 << 20) as f64) < p * f64::from(1 << 20)
}

/// The node and peer a network schedule entry names: a client's or subscriber's own node, or
/// every client of `node`.
fn entry_peer(entry: &super::ScheduleEntry, nodes: u32) -> (u32, Peer) {
    match (entry.client, entry.subscriber) {
        (Some(c), _) => (c % nodes, Peer::Client(c)),
        (None, Some(s)) => (s % nodes, Peer::Subscriber(s)),
        (None, None) => (entry.node.unwrap_or(0), Peer::All),
    }
}

impl fmt::Display for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.workload;
        let d = &self.disk;
        let s = &self.store;
        writeln!(
            f,
            "scenario {} seed {} duration {}",
            self.scenario,
            self.seed,
            secs(self.duration_ns)
        )?;
        writeln!(
            f,
            "  nodes {} × partitions {} buckets {} segment {}B max txn {}B",
            self.nodes,
            s.partition_count,
            s.bucket_count,
            s.segment_size_bytes,
            s.max_transaction_bytes
        )?;
        if s.preallocate_bytes > 0 {
            writeln!(
                f,
                "  zeros written ahead of each open segment: {}B",
                s.preallocate_bytes
            )?;
        }
        writeln!(
            f,
            "  workload: clients {} streams {} ({} per key, {} hot taking {:.0}%) think {} timeout {} retries {} payload {}..{}B max events {}",
            w.clients,
            w.streams,
            w.streams_per_key,
            w.hot_streams,
            w.hot_fraction * 100.0,
            secs(w.think_mean_ns),
            secs(w.timeout_ns),
            w.retries,
            w.payload_bytes.0,
            w.payload_bytes.1,
            w.max_events
        )?;
        let sub = &w.subscribers;
        if sub.count > 0 {
            writeln!(
                f,
                "  subscribers: {} with {}..{} subscription(s), window {}..{}, ack delay {} stall {:.2} for {}",
                sub.count,
                sub.subscriptions.0,
                sub.subscriptions.1,
                sub.window.0,
                sub.window.1,
                secs(sub.ack_delay_mean_ns),
                sub.stall,
                secs(sub.stall_for_ns)
            )?;
        }
        writeln!(
            f,
            "  disk: sector {}B kept {:.2} torn {:.2} flip {:.1e} misdirect {:.1e} eio r/w/s {:.1e}/{:.1e}/{:.1e} latency {} tail {:.1e}+{}",
            d.sector_size,
            d.unsynced_kept,
            d.torn,
            d.read_bit_flip,
            d.misdirected_write,
            d.read_error,
            d.write_error,
            d.sync_error,
            secs(d.latency_ns),
            d.latency_tail,
            secs(d.latency_tail_extra_ns)
        )?;
        let n = &self.network;
        if n.transport == Transport::Resp {
            writeln!(
                f,
                "  network: resp, delay {}us split {:.2} reset {:.1e}",
                n.delay_ns / 1000,
                n.split,
                n.reset
            )?;
        }
        let mut counts = std::collections::BTreeMap::new();
        for e in &self.schedule {
            *counts.entry(e.action.name()).or_insert(0u32) += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(
            f,
            "  schedule: {} event(s) [{}]; swarm off [{}]; corruption allowed: {}",
            self.schedule.len(),
            counts.join(", "),
            self.swarm_off.join(", "),
            self.check.corruption_allowed
        )
    }
}

/// Nanoseconds as seconds with millisecond precision, for summaries.
pub fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const TEXT: &str = r#"
duration = "1s..3s"
swarm = true
[faults.crash]
every = "200ms..400ms"
power_cut = "0.5"
[faults.clock]
skew = "-1s..1s"
jump_every = "300ms"
jump_by = "-2s..2s"
[[schedule]]
at = "500ms"
action = "disk_full"
slack = "0..1KiB"
"#;

    #[test]
    fn a_seed_derives_the_same_run_every_time() {
        let scenario = Scenario::parse(TEXT, Path::new("d.toml")).unwrap();
        let a = Derived::new(&scenario, 9);
        let b = Derived::new(&scenario, 9);
        assert_eq!(format!("{a}"), format!("{b}"));
        assert_eq!(a.schedule, b.schedule);
        let c = Derived::new(&scenario, 10);
        assert_ne!(a.schedule, c.schedule);
    }

    #[test]
    fn schedules_are_time_ordered_and_inside_the_run() {
        let scenario = Scenario::parse(TEXT, Path::new("d.toml")).unwrap();
        for seed in 0..50 {
            let d = Derived::new(&scenario, seed);
            assert!(d.schedule.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
            assert!(
                d.schedule
                    .iter()
                    .any(|e| matches!(e.action, FaultAction::DiskFull { .. })),
                "explicit entries survive swarm"
            );
        }
    }

    #[test]
    fn mix_choices_follow_the_weights() {
        let mix = Mix {
            append: 1.0,
            get: 1.0,
            ..Mix {
                append: 0.0,
                append_expected: 0.0,
                append_batch: 0.0,
                transaction: 0.0,
                conflict: 0.0,
                get: 0.0,
                read_stream: 0.0,
                read_stream_backward: 0.0,
                read_partition: 0.0,
                stream_version: 0.0,
                partition_sequence: 0.0,
            }
        };
        assert_eq!(mix.choose(0.1), OpKind::Append);
        assert_eq!(mix.choose(0.9), OpKind::Get);
        assert_eq!(mix.choose(0.999_999_999), OpKind::Get);
    }
}
