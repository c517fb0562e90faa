//! Scenario files: one situation each, as data (TOML in `scenarios/`), and the concrete run a
//! seed derives from one ([`Derived`]).
//!
//! A scenario names the node(s), the workload mix, fault rates as ranges the seed picks a
//! point in (swarm testing: with `swarm = true` each seed also switches a random subset of
//! fault kinds off), an explicit fault schedule, and a duration. Every key is documented in
//! `docs/simulation.md`; unknown keys are an error, so a typo never silently disables a fault.

mod derive;
pub mod quantity;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::net::Direction;
pub use derive::{
    CheckPlan, Derived, DiskPlan, FaultAction, FaultEvent, Mix, NetworkPlan, OpKind, Peer,
    SubscriberPlan, WorkloadPlan,
};
pub use quantity::{ByteSize, Count, Nanos, Prob, Range, SignedNanos};

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A scenario as written in its file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Defaults to the file's stem.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Simulated time the workload runs; healing, the final crash and the checks follow.
    pub duration: Range<Nanos>,
    /// Each seed switches every fault kind off with probability ½ (explicit schedule entries
    /// stay), so seeds explore combinations rather than always everything at once.
    #[serde(default)]
    pub swarm: bool,
    #[serde(default)]
    pub node: NodeSpec,
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// How clients reach the nodes, and the client network's faults.
    #[serde(default, skip_serializing_if = "NetworkSpec::is_default")]
    pub network: NetworkSpec,
    #[serde(default)]
    pub faults: FaultSpec,
    #[serde(default)]
    pub schedule: Vec<ScheduleEntry>,
    #[serde(default)]
    pub check: CheckSpec,
    /// Where the scenario was read from (not a key in the file).
    #[serde(skip)]
    pub path: PathBuf,
    /// The factor [`Scenario::stretch`] multiplied `duration` by, if any (not a key in the
    /// file: the command line's `--stretch`, which a replay needs again).
    #[serde(skip)]
    pub stretch: Option<f64>,
}

/// The simulated node(s): each runs its own store on its own disk (no replication yet).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSpec {
    pub count: u32,
    pub partitions: u16,
    pub buckets: u16,
    pub segment_size: ByteSize,
    pub max_transaction_bytes: ByteSize,
    pub max_batch_transactions: usize,
    /// Zeros kept written ahead of each open segment's frames (`db::store::prealloc`); 0,
    /// the default, turns it off.
    #[serde(skip_serializing_if = "ByteSize::is_zero")]
    pub preallocate: ByteSize,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            count: 1,
            partitions: 8,
            buckets: 2,
            segment_size: ByteSize(64 * 1024),
            max_transaction_bytes: ByteSize(8 * 1024),
            max_batch_transactions: 256,
            preallocate: ByteSize(0),
        }
    }
}

/// The simulated clients and what they do.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    pub clients: Range<Count>,
    pub streams: Range<Count>,
    /// Streams sharing one partition key (a multi-stream transaction picks from one group).
    pub streams_per_key: Range<Count>,
    /// The first `hot_streams` streams take `hot_fraction` of all stream picks.
    pub hot_streams: Range<Count>,
    pub hot_fraction: Range<Prob>,
    /// Mean pause between a client's operations (each pause is uniform in `[0, 2·mean]`).
    pub think: Range<Nanos>,
    /// How long a client waits for an append before giving up on it (outcome unknown).
    pub timeout: Range<Nanos>,
    /// Retries of an append whose outcome is unknown or that was not written, with the same
    /// event ids (idempotent).
    pub retries: Range<Count>,
    pub payload: Range<ByteSize>,
    /// Largest number of events in one append (batches and transactions).
    pub max_events: Range<Count>,
    /// Stop each client after this many operations (0: no limit).
    pub max_ops_per_client: Count,
    pub mix: Mix,
    /// Subscriber clients (besides `clients`): each holds a few subscriptions on one node,
    /// consumes and acknowledges deliveries, and resubscribes from its acknowledged positions
    /// after the node restarts. 0: none.
    pub subscribers: Range<Count>,
    /// Subscriptions each subscriber holds (drawn per subscriber).
    pub subscriptions_per_subscriber: Range<Count>,
    /// The window of each subscription (drawn per subscription; at least 1).
    pub subscriber_window: Range<Count>,
    /// Mean delay between a delivery and the acknowledgement that covers it (each delay uniform
    /// in `[0, 2·mean]`).
    pub subscriber_ack_delay: Range<Nanos>,
    /// The chance that a subscriber stops acknowledging a subscription for a while when an
    /// acknowledgement falls due, so the window binds.
    pub subscriber_stall: Range<Prob>,
    /// How long such a stall lasts (each uniform in ±50%).
    pub subscriber_stall_for: Range<Nanos>,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        let r = |s: &str| Range::parse(s).expect("valid default");
        WorkloadSpec {
            clients: r("4..8"),
            streams: r("8..32"),
            streams_per_key: r("1..4"),
            hot_streams: Range::parse("1").expect("valid default"),
            hot_fraction: Range::parse("0..0.3").expect("valid default"),
            think: Range::parse("2ms..8ms").expect("valid default"),
            timeout: Range::parse("200ms..1s").expect("valid default"),
            retries: Range::parse("2..5").expect("valid default"),
            payload: Range::parse("0..128").expect("valid default"),
            max_events: Range::parse("2..5").expect("valid default"),
            max_ops_per_client: Count(0),
            mix: Mix::default(),
            subscribers: Range::one(Count(0)),
            subscriptions_per_subscriber: Range::parse("1..3").expect("valid default"),
            subscriber_window: Range::parse("1..64").expect("valid default"),
            subscriber_ack_delay: Range::parse("0ms..10ms").expect("valid default"),
            subscriber_stall: Range::parse("0..0.2").expect("valid default"),
            subscriber_stall_for: Range::parse("20ms..300ms").expect("valid default"),
        }
    }
}

/// How the workload reaches a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Clients call the node's `db::Db` directly (no network).
    #[default]
    Api,
    /// Clients and subscribers speak RESP3 to each node's real server (`db::server::serve`)
    /// over the simulated client network ([`crate::net`]).
    Resp,
}

/// The client network: which transport, and its faults (with `transport = "resp"` only).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    pub transport: Transport,
    /// Typical one-way delay of each write (each is uniform in ±50% of it).
    pub delay: Range<Nanos>,
    /// The chance a read or write of a byte stream is cut short at a random point.
    pub split: Range<Prob>,
    /// The chance a write resets its connection instead of sending.
    pub reset: Range<Prob>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            transport: Transport::Api,
            delay: Range::one(Nanos(0)),
            split: Range::one(Prob(0.0)),
            reset: Range::one(Prob(0.0)),
        }
    }
}

impl NetworkSpec {
    fn is_default(&self) -> bool {
        let d = NetworkSpec::default();
        self.transport == d.transport
            && self.delay == d.delay
            && self.split == d.split
            && self.reset == d.reset
    }
}

/// Fault rates, each a range the seed picks a point in.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    pub disk: DiskFaultSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash: Option<CrashSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_full: Option<DiskFullSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_partition: Option<NetPartitionSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_reset: Option<NetResetSpec>,
}

/// `SimDisk` faults and the disk's latency.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskFaultSpec {
    /// Torn writes keep whole sectors; one size is picked per seed from this list.
    pub sector_size: Vec<u64>,
    /// At a crash, the chance one unsynced write survives whole.
    pub unsynced_kept: Range<Prob>,
    /// At a crash, the chance an unsynced write that was not kept whole keeps a torn prefix.
    pub torn: Range<Prob>,
    pub read_bit_flip: Range<Prob>,
    pub misdirected_write: Range<Prob>,
    pub read_error: Range<Prob>,
    pub write_error: Range<Prob>,
    pub sync_error: Range<Prob>,
    /// Typical latency of one batch write+sync or read (each is uniform in ±50% of it).
    pub latency: Range<Nanos>,
    /// The chance that one operation is slow, and by how much.
    pub latency_tail: Range<Prob>,
    pub latency_tail_extra: Range<Nanos>,
}

impl Default for DiskFaultSpec {
    fn default() -> Self {
        DiskFaultSpec {
            sector_size: vec![8, 64, 512],
            unsynced_kept: Range::parse("0.2..0.6").expect("valid default"),
            torn: Range::parse("0.5..1").expect("valid default"),
            read_bit_flip: Range::one(Prob(0.0)),
            misdirected_write: Range::one(Prob(0.0)),
            read_error: Range::one(Prob(0.0)),
            write_error: Range::one(Prob(0.0)),
            sync_error: Range::one(Prob(0.0)),
            latency: Range::parse("50us..500us").expect("valid default"),
            latency_tail: Range::one(Prob(0.0)),
            latency_tail_extra: Range::parse("10ms..100ms").expect("valid default"),
        }
    }
}

/// Random process crashes: the node dies and its disk loses power.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrashSpec {
    /// Mean gap between crashes (each gap uniform in ±50%).
    pub every: Range<Nanos>,
    /// Downtime before the node restarts.
    #[serde(default = "default_restart_after")]
    pub restart_after: Range<Nanos>,
    /// The chance that a crash is an armed power cut (`SimDisk::crash_after_ops`): the disk
    /// dies in the middle of whatever operation comes `power_cut_ops` operations later.
    #[serde(default)]
    pub power_cut: Range<Prob>,
    #[serde(default = "default_power_cut_ops")]
    pub power_cut_ops: Range<Count>,
}

fn default_restart_after() -> Range<Nanos> {
    Range::parse("0ms..200ms").expect("valid default")
}

fn default_power_cut_ops() -> Range<Count> {
    Range::parse("0..30").expect("valid default")
}

/// Wall-clock faults (virtual time itself never jumps).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    /// Constant skew per node, picked once.
    #[serde(default)]
    pub skew: Option<Range<SignedNanos>>,
    /// Mean gap between jumps; each jump moves one node's wall clock by a draw from `jump_by`.
    pub jump_every: Range<Nanos>,
    pub jump_by: Range<SignedNanos>,
}

/// The disk fills up (`ENOSPC`) for a while, then space is freed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFullSpec {
    pub every: Range<Nanos>,
    #[serde(rename = "for")]
    pub lasting: Range<Nanos>,
    /// Bytes still free when the disk is declared full.
    #[serde(default)]
    pub slack: Range<ByteSize>,
}

/// Persistent damage: one bit of a segment file flipped on the medium.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorruptSpec {
    pub every: Range<Nanos>,
}

/// A client cut off from its node for a while, then healed (`transport = "resp"`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetPartitionSpec {
    /// Mean gap between the end of one partition and the start of the next.
    pub every: Range<Nanos>,
    /// How long each lasts (±50%).
    #[serde(rename = "for")]
    pub lasting: Range<Nanos>,
    /// The chance a partition is one-way: replies stall, requests still arrive.
    #[serde(default)]
    pub one_way: Range<Prob>,
    /// The chance a partition cuts the node off from every client, not just one.
    #[serde(default)]
    pub whole_node: Range<Prob>,
}

/// A client's connections reset now and then (`transport = "resp"`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetResetSpec {
    pub every: Range<Nanos>,
}

/// One explicit fault at a fixed time.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    pub at: Range<Nanos>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// `crash`, `power_cut`: downtime before the restart (absent on `crash`: stays down until
    /// a `restart` or `heal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after: Option<Range<Nanos>>,
    /// `power_cut`: operations that still succeed before the power fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ops: Option<Range<Count>>,
    /// `clock_jump`, `clock_skew`: by how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Range<SignedNanos>>,
    /// `disk_full`: bytes still free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<Range<ByteSize>>,
    /// `corrupt`: which file and byte (a number the run maps onto the files present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<Range<Count>>,
    /// `net_partition`, `net_heal`, `net_reset`: only this workload client's connections
    /// (absent, and no `subscriber`: every client of the node). Its node is the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<u32>,
    /// As `client`, for a subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<u32>,
    /// `net_partition`: which way bytes stop (default `both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

/// What a schedule entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The node's process dies and its disk loses power now.
    Crash,
    /// A crashed node starts again (recovery runs).
    Restart,
    /// Arms a power cut `after_ops` disk operations from now; the node crashes when it fires.
    PowerCut,
    /// The disk is full from now on (`slack` bytes remain).
    DiskFull,
    /// Space is freed again.
    DiskSpace,
    /// All faults stop: disk faults off, space freed, clocks corrected, nodes restarted.
    Heal,
    /// The node's wall clock jumps by `by`.
    ClockJump,
    /// The node's wall clock runs `by` off true time from now.
    ClockSkew,
    /// One bit of a segment file flips on the medium (persistent).
    Corrupt,
    /// Client connections to the node stall (`client`/`subscriber`: only that one's) and new
    /// connects are refused, until a `net_heal` or `heal`.
    NetPartition,
    /// Ends a `net_partition` of the same node and client.
    NetHeal,
    /// Client connections to the node are reset (`client`/`subscriber`: only that one's).
    NetReset,
}

/// What the checkers are told about the scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckSpec {
    /// After healing, a probe append must succeed on every node within this.
    pub liveness_within: Nanos,
    /// How long in-flight operations may take to finish after the workload stops.
    pub drain: Nanos,
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            liveness_within: Nanos(5_000_000_000),
            drain: Nanos(10_000_000_000),
        }
    }
}

impl Scenario {
    /// Reads and validates a scenario file.
    /// Multiplies the workload's duration (both ends of its range) by `factor`, so a soak can
    /// run longer seeds of the same situations: the fault generators keep their rates and run
    /// for longer; explicit schedule entries keep their times. A factor of 1 changes nothing
    /// (the same seed gives the same run and hash). Panics unless `factor` is finite and
    /// positive.
    pub fn stretch(&mut self, factor: f64) {
        assert!(
            factor.is_finite() && factor > 0.0,
            "stretch factor must be positive, got {factor}"
        );
        if factor == 1.0 {
            return;
        }
        let scale = |n: Nanos| Nanos((n.0 as f64 * factor).round() as u64);
        self.duration = Range {
            low: scale(self.duration.low),
            high: scale(self.duration.high),
        };
        self.stretch = Some(self.stretch.unwrap_or(1.0) * factor);
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses scenario text; `path` names it in errors and gives the default name.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|source| ScenarioError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        if scenario.name.is_empty() {
            scenario.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unnamed".into());
        }
        scenario.path = path.to_owned();
        scenario
            .validate()
            .map_err(|reason| ScenarioError::Invalid {
                path: path.to_owned(),
                reason,
            })?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), String> {
        let node = &self.node;
        if node.count == 0 || node.count > 16 {
            return Err(format!("node.count must be 1..=16, got {}", node.count));
        }
        if self.workload.clients.low.0 == 0 {
            return Err("workload.clients must be at least 1".into());
        }
        if self.workload.streams.low.0 == 0 || self.workload.streams_per_key.low.0 == 0 {
            return Err("workload.streams and streams_per_key must be at least 1".into());
        }
        if self.faults.disk.sector_size.is_empty() || self.faults.disk.sector_size.contains(&0) {
            return Err("faults.disk.sector_size must list sizes above 0".into());
        }
        if self.workload.subscriber_window.low.0 == 0 {
            return Err("workload.subscriber_window must be at least 1".into());
        }
        if self.workload.mix.total() <= 0.0 {
            return Err("workload.mix needs at least one positive weight".into());
        }
        let resp = self.network.transport == Transport::Resp;
        let net_faults = self.faults.net_partition.is_some()
            || self.faults.net_reset.is_some()
            || self.network.delay.high.0 > 0
            || self.network.split.high.0 > 0.0
            || self.network.reset.high.0 > 0.0
            || self.schedule.iter().any(|e| {
                matches!(
                    e.action,
                    Action::NetPartition | Action::NetHeal | Action::NetReset
                )
            });
        if net_faults && !resp {
            return Err(
                "network faults need network.transport = \"resp\" (with \"api\" there is no network)"
                    .into(),
            );
        }
        for entry in &self.schedule {
            if entry.client.is_some() && entry.subscriber.is_some() {
                return Err(format!(
                    "schedule entry at {} names both a client and a subscriber",
                    entry.at.render()
                ));
            }
            if let Some(n) = entry.node
                && n >= node.count
            {
                return Err(format!(
                    "schedule entry at {} names node {n}, but there are {}",
                    entry.at.render(),
                    node.count
                ));
            }
        }
        db::StoreConfig {
            partition_count: node.partitions,
            bucket_count: node.buckets,
            segment_size_bytes: node.segment_size.0,
            max_transaction_bytes: node.max_transaction_bytes.0,
            max_batch_transactions: node.max_batch_transactions,
            preallocate_bytes: node.preallocate.0,
            ..db::StoreConfig::default()
        }
        .validate()
        .map_err(|e| format!("node: {e}"))
    }

    /// Every `*.toml` in `dir`, sorted by file name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ScenarioError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Scenario::load(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_scenario_takes_defaults() {
        let s = Scenario::parse("duration = \"2s\"", Path::new("x/minimal.toml")).unwrap();
        assert_eq!(s.name, "minimal");
        assert_eq!(s.node.count, 1);
        assert_eq!(s.duration.low, Nanos(2_000_000_000));
        let mut longer = s.clone();
        longer.stretch(1.0);
        assert_eq!((longer.duration, longer.stretch), (s.duration, None));
        longer.stretch(2.5);
        assert_eq!(longer.duration.high, Nanos(5_000_000_000));
        assert_eq!(longer.stretch, Some(2.5));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let typo = Scenario::parse("duration = \"2s\"\nswrm = true", Path::new("t.toml"));
        assert!(typo.unwrap_err().to_string().contains("swrm"));
        let bad = Scenario::parse(
            "duration = \"2s\"\n[faults.disk]\nread_bit_flip = \"0..2\"",
            Path::new("t.toml"),
        );
        assert!(bad.is_err());
        let node = Scenario::parse(
            "duration = \"2s\"\n[[schedule]]\nat = \"1s\"\naction = \"crash\"\nnode = 3",
            Path::new("t.toml"),
        );
        assert!(node.unwrap_err().to_string().contains("node 3"));
    }

    #[test]
    fn network_faults_need_the_resp_transport() {
        let api = Scenario::parse(
            "duration = \"2s\"\n[faults.net_reset]\nevery = \"1s\"",
            Path::new("t.toml"),
        );
        assert!(api.unwrap_err().to_string().contains("transport"));
        let split = Scenario::parse(
            "duration = \"2s\"\n[network]\nsplit = \"0.5\"",
            Path::new("t.toml"),
        );
        assert!(split.unwrap_err().to_string().contains("transport"));
        let resp = Scenario::parse(
            "duration = \"2s\"\n[network]\ntransport = \"resp\"\nreset = \"0..0.01\"\n\
             [faults.net_partition]\nevery = \"1s\"\nfor = \"100ms\"\none_way = \"0.5\"\n\
             [[schedule]]\nat = \"1s\"\naction = \"net_partition\"\nclient = 2\ndirection = \"to_client\"",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(resp.network.transport, Transport::Resp);
        assert_eq!(resp.schedule[0].direction, Some(Direction::ToClient));
        let both = Scenario::parse(
            "duration = \"2s\"\n[network]\ntransport = \"resp\"\n\
             [[schedule]]\nat = \"1s\"\naction = \"net_reset\"\nclient = 1\nsubscriber = 0",
            Path::new("t.toml"),
        );
        assert!(both.unwrap_err().to_string().contains("both"));
    }
}
