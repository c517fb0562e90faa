//! The history: every client operation as an invocation and a completion, with virtual times,
//! plus the faults the nemesis injected and what recovery reported.
//!
//! It is the only thing the checkers see of the run besides the final snapshot
//! ([`crate::snapshot`]). Operations refer to streams and events by small typed numbers
//! ([`StreamRef`], [`Eid`]) so the history is cheap to keep and readable in a trace: event ids
//! are `c<client>.<n>`, the n-th id client `c` made, which the store stores as any other UUID.
//!
//! Every entry is also a line of the [`Trace`], so the trace hash covers what each operation
//! asked for and what it got back.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use db::error::{AppendError, StoreError};
use db::model::ExpectedVersion;
use serde::{Serialize, Serializer};

use crate::scenario::{FaultAction, OpKind};
use crate::trace::{Trace, TraceMode};

mod json;

pub(crate) use json::snapshot_line;

/// An event or transaction id the workload made: `(client + 1) << 64 | n`. Readable in traces
/// as `c<client>.<n>` and stored as the UUID with the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Eid(pub u128);

impl Eid {
    pub fn new(client: u32, n: u64) -> Eid {
        Eid(((u128::from(client) + 1) << 64) | u128::from(n))
    }

    pub fn uuid(self) -> uuid::Uuid {
        uuid::Uuid::from_u128(self.0)
    }

    pub fn from_uuid(id: uuid::Uuid) -> Eid {
        Eid(id.as_u128())
    }
}

impl Eid {
    /// The client, the id space (`""`, `"u"` or `"t"`) and the counter of a workload id;
    /// `None` for an id no client made.
    fn parts(self) -> Option<(u64, &'static str, u64)> {
        let client = (self.0 >> 64) as u64;
        let n = self.0 as u64;
        // Transaction ids set bit 63 of the counter, gets of unused ids bit 62.
        let (space, n) = match n >> 62 {
            0 => ("", n),
            1 => ("u", n & !(1 << 62)),
            _ => ("t", n & !(1 << 63)),
        };
        Some((client.checked_sub(1)?, space, n))
    }
}

impl fmt::Display for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            Some((c, space, n)) => write!(f, "c{c}.{space}{n}"),
            None => write!(f, "x{:x}", self.0),
        }
    }
}

/// Serialised as its [`Display`](fmt::Display) form, assembled on the stack: every trace line
/// holds ids, and `collect_str` would run them through `fmt` and escape each piece.
impl Serialize for Eid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.parts() {
            Some((c, space, n)) => {
                let mut text = ShortStr::default();
                text.push(b"c");
                text.push_u64(c);
                text.push(b".");
                text.push(space.as_bytes());
                text.push_u64(n);
                s.serialize_str(text.as_str())
            }
            None => s.collect_str(self),
        }
    }
}

/// A string of at most 48 bytes built on the stack, for trace fields that are short
/// renderings of numbers.
pub(crate) struct ShortStr {
    bytes: [u8; 48],
    len: usize,
}

impl Default for ShortStr {
    fn default() -> Self {
        ShortStr {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl ShortStr {
    /// Appends ASCII `part`; panics past 48 bytes.
    pub(crate) fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    /// Appends `n` in decimal, as `Display` writes it.
    pub(crate) fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII pushed")
    }
}

/// Event ids to small numbers in O(1): the workload's ids (`c<client>.<n>`, [`Eid`]) are
/// dense per client, so a table per client indexed by `n` finds them without a search;
/// anything else (ids the workload never made, transaction and unused-id spaces) goes to a
/// map. Lookups only: nothing iterates it.
#[derive(Debug, Default)]
pub(crate) struct EidIndex {
    by_client: Vec<Vec<u32>>,
    other: BTreeMap<Eid, u32>,
}

impl EidIndex {
    const NONE: u32 = u32::MAX;
    /// Ids with a counter below this (and a client below `MAX_CLIENT`) go to the tables.
    const MAX_N: u64 = 1 << 24;
    const MAX_CLIENT: u64 = 1 << 16;

    fn dense(id: Eid) -> Option<(usize, usize)> {
        let client = (id.0 >> 64) as u64;
        let n = id.0 as u64;
        ((1..=Self::MAX_CLIENT).contains(&client) && n < Self::MAX_N)
            .then(|| ((client - 1) as usize, n as usize))
    }

    /// Sets `id`'s number unless it has one.
    pub(crate) fn insert_new(&mut self, id: Eid, value: u32) {
        match Self::dense(id) {
            Some((client, n)) => {
                if self.by_client.len() <= client {
                    self.by_client.resize_with(client + 1, Vec::new);
                }
                let table = &mut self.by_client[client];
                if table.len() <= n {
                    table.resize(n + 1, Self::NONE);
                }
                if table[n] == Self::NONE {
                    table[n] = value;
                }
            }
            None => {
                self.other.entry(id).or_insert(value);
            }
        }
    }

    pub(crate) fn get(&self, id: Eid) -> Option<u32> {
        let found = match Self::dense(id) {
            Some((client, n)) => *self.by_client.get(client)?.get(n)?,
            None => *self.other.get(&id)?,
        };
        (found != Self::NONE).then_some(found)
    }
}

/// A stream of the workload, by index (`s<i>`); probes use their own indexes above the
/// workload's (see [`crate::workload::Streams`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct StreamRef(pub u32);

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// An expected version as the trace shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected(pub ExpectedVersion);

/// Serialised as its `Display` form (`any`, `exists`, `empty` or the version), without `fmt`.
impl Serialize for Expected {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ExpectedVersion::Any => s.serialize_str("any"),
            ExpectedVersion::Exists => s.serialize_str("exists"),
            ExpectedVersion::Empty => s.serialize_str("empty"),
            ExpectedVersion::Exact(n) => {
                let mut text = ShortStr::default();
                text.push_u64(n);
                s.serialize_str(text.as_str())
            }
        }
    }
}

/// One event an append sent: its id, stream, expected version and a digest of its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentEvent {
    pub id: Eid,
    pub stream: StreamRef,
    pub expected: Expected,
    pub digest: u64,
}

/// One event a read returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeenEvent {
    pub id: Eid,
    /// `None` if the stored stream id is not one the workload uses.
    pub stream: Option<StreamRef>,
    pub version: u64,
    pub partition: u16,
    pub seq: u64,
    pub txn: Eid,
    pub digest: u64,
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Input {
    Append {
        txn: Eid,
        /// Which try of this transaction (0 first; retries send the same events).
        attempt: u32,
        partition: u16,
        events: Vec<SentEvent>,
    },
    Get {
        id: Eid,
    },
    ReadStream {
        stream: StreamRef,
        from: u64,
        to: Option<u64>,
        limit: u32,
        backward: bool,
    },
    ReadPartition {
        partition: u16,
        from: u64,
        limit: u32,
    },
    StreamVersion {
        stream: StreamRef,
    },
    PartitionSequence {
        partition: u16,
    },
}

/// A storage error, reduced to its class (the message goes to the trace only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Io,
    StorageFull,
    Corrupt,
    Poisoned,
    /// The node crashed while the request waited (its writer is gone).
    Closed,
    Other,
}

impl ErrorClass {
    pub fn of(err: &StoreError) -> ErrorClass {
        match err {
            StoreError::Io { .. } => ErrorClass::Io,
            StoreError::StorageFull { .. } => ErrorClass::StorageFull,
            StoreError::Corrupt { .. } => ErrorClass::Corrupt,
            StoreError::Poisoned { .. } => ErrorClass::Poisoned,
            StoreError::Closed => ErrorClass::Closed,
            _ => ErrorClass::Other,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Output {
    /// The append is durable at these positions (or was already, for a retry).
    Appended {
        already_stored: bool,
        partition: u16,
        /// (event, stream version, partition sequence), in the transaction's order.
        positions: Vec<(Eid, u64, u64)>,
    },
    /// The stream was not at the expected version; `actual` is what the store says it was.
    WrongExpectedVersion {
        stream: StreamRef,
        actual: Option<u64>,
    },
    /// The event id is stored with other content.
    EventIdConflict { id: Eid },
    /// Refused as invalid or with a partition key mismatch: a workload bug.
    Rejected { reason: String },
    /// Not written: the store says so (disk full, I/O error cut back, poisoned, closed).
    Unavailable { class: ErrorClass, reason: String },
    /// The node was down; nothing was sent.
    NodeDown,
    /// Outcome unknown: the store said so (a failed sync).
    Indeterminate { class: ErrorClass, reason: String },
    /// Outcome unknown: the client stopped waiting.
    TimedOut,
    /// Not sent (RESP): the connection could not be made or greeted, or its first write
    /// failed; nothing of the request reached the server.
    NotSent { reason: String },
    /// Outcome unknown (RESP): the connection broke after the request was sent.
    ConnectionLost { reason: String },
    /// A read's events (scans and gets of one event).
    Events {
        events: Vec<SeenEvent>,
        has_more: bool,
    },
    /// `get`: nothing stored under the id.
    NotFound,
    /// `stream_version` / `partition_sequence`.
    Position { last: Option<u64> },
    /// A read failed.
    ReadFailed { class: ErrorClass, reason: String },
}

/// What an outcome says about whether an append was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    No,
    Maybe,
}

impl Output {
    pub fn written(&self) -> Written {
        match self {
            Output::Appended { .. } => Written::Yes,
            Output::Indeterminate { .. } | Output::TimedOut | Output::ConnectionLost { .. } => {
                Written::Maybe
            }
            _ => Written::No,
        }
    }

    /// Maps what `Db::append` returned to an outcome.
    pub fn of_append(result: Result<db::model::AppendOutcome, AppendError>) -> Output {
        match result {
            Ok(outcome) => Output::Appended {
                already_stored: outcome.already_stored,
                partition: outcome.partition_id.0,
                positions: outcome
                    .events
                    .iter()
                    .map(|e| {
                        (
                            Eid::from_uuid(e.event_id.0),
                            e.stream_version.0,
                            e.partition_sequence.0,
                        )
                    })
                    .collect(),
            },
            Err(err) => Output::of_append_error(&err),
        }
    }

    /// Maps an append error to an outcome.
    pub fn of_append_error(err: &AppendError) -> Output {
        match err {
            AppendError::WrongExpectedVersion { stream, actual, .. } => {
                Output::WrongExpectedVersion {
                    stream: crate::workload::Streams::parse(stream.as_str())
                        .unwrap_or(StreamRef(u32::MAX)),
                    actual: actual.0.map(|v| v.0),
                }
            }
            AppendError::EventIdConflict { event_id } => Output::EventIdConflict {
                id: Eid::from_uuid(event_id.0),
            },
            AppendError::Invalid(_) | AppendError::PartitionKeyMismatch { .. } => {
                Output::Rejected {
                    reason: err.to_string(),
                }
            }
            AppendError::Unavailable(e) => Output::Unavailable {
                class: ErrorClass::of(e),
                reason: e.to_string(),
            },
            AppendError::Indeterminate(e) => Output::Indeterminate {
                class: ErrorClass::of(e),
                reason: e.to_string(),
            },
        }
    }

    pub fn read_failed(err: &StoreError) -> Output {
        Output::ReadFailed {
            class: ErrorClass::of(err),
            reason: err.to_string(),
        }
    }
}

/// One operation: who, where, when, what, and how it ended (`None`: still pending when the
/// run ended, which counts as outcome unknown).
#[derive(Clone, Debug)]
pub struct Op {
    pub id: u64,
    pub client: u32,
    pub node: u32,
    pub kind: OpKind,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    pub input: Input,
    pub output: Option<Output>,
}

impl Op {
    /// The events an append sent (empty for reads).
    pub fn sent(&self) -> &[SentEvent] {
        match &self.input {
            Input::Append { events, .. } => events,
            _ => &[],
        }
    }

    pub fn written(&self) -> Written {
        self.output.as_ref().map_or(Written::Maybe, Output::written)
    }

    /// Completion time, or "never" for a pending operation.
    pub fn complete_or_max(&self) -> u64 {
        self.complete_ns.unwrap_or(u64::MAX)
    }

    /// One readable line, for failure excerpts.
    pub fn render(&self) -> String {
        let t = |ns: u64| format!("{}.{:06}s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000);
        let input = match &self.input {
            Input::Append {
                txn,
                attempt,
                partition,
                events,
            } => {
                let events: Vec<String> = events
                    .iter()
                    .map(|e| format!("{}@{} exp {}", e.id, e.stream, e.expected.0))
                    .collect();
                format!(
                    "txn {txn} try {attempt} p{partition} [{}]",
                    events.join(", ")
                )
            }
            Input::Get { id } => format!("get {id}"),
            Input::ReadStream {
                stream,
                from,
                to,
                limit,
                backward,
            } => format!(
                "{stream} from {from} to {} limit {limit}{}",
                to.map_or("end".into(), |t| t.to_string()),
                if *backward { " backward" } else { "" }
            ),
            Input::ReadPartition {
                partition,
                from,
                limit,
            } => format!("p{partition} from {from} limit {limit}"),
            Input::StreamVersion { stream } => format!("{stream}"),
            Input::PartitionSequence { partition } => format!("p{partition}"),
        };
        let output = match &self.output {
            None => "(pending)".to_string(),
            Some(Output::Appended {
                already_stored,
                partition,
                positions,
            }) => {
                let pos: Vec<String> = positions
                    .iter()
                    .map(|(id, v, s)| format!("{id} v{v} #{s}"))
                    .collect();
                format!(
                    "ok p{partition} [{}]{}",
                    pos.join(", "),
                    if *already_stored {
                        " (already stored)"
                    } else {
                        ""
                    }
                )
            }
            Some(Output::Events { events, has_more }) => {
                let evs: Vec<String> = events
                    .iter()
                    .take(8)
                    .map(|e| {
                        let stream = e.stream.map_or("?".into(), |s| s.to_string());
                        format!("{}@{stream} v{} #{}", e.id, e.version, e.seq)
                    })
                    .collect();
                let more = if events.len() > 8 { ", …" } else { "" };
                format!(
                    "{} event(s) [{}{more}]{}",
                    events.len(),
                    evs.join(", "),
                    if *has_more { " has_more" } else { "" }
                )
            }
            Some(other) => serde_json::to_string(other).unwrap_or_default(),
        };
        let end = self.complete_ns.map_or("…".into(), t);
        format!(
            "[{}..{}] c{} n{} #{} {} {input} -> {output}",
            t(self.invoke_ns),
            end,
            self.client,
            self.node,
            self.id,
            self.kind.name()
        )
    }
}

/// What recovery found when a node (re)opened its store.
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    pub at_ns: u64,
    pub node: u32,
    /// `None`: opened; else why it failed.
    pub error: Option<(ErrorClass, String)>,
    pub truncated_bytes: u64,
    pub rebuilt_indexes: usize,
    pub removed_files: usize,
    /// Claims of the recovery report the disk contradicts (a truncation it reports but did not
    /// make durable), checked right after opening.
    pub broken_claims: Vec<String>,
    /// Whether this was the final recovery after healing.
    pub is_final: bool,
}

/// The liveness probe of one node after healing.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub node: u32,
    /// When the first probe append succeeded, counted from the end of healing.
    pub succeeded_after_ns: Option<u64>,
    pub attempts: u32,
    /// The node refused to open with corruption, which corruption scenarios allow.
    pub refused_corrupt: bool,
}

#[derive(Serialize)]
struct InvokeLine<'a> {
    t: u64,
    e: &'static str,
    id: u64,
    c: u32,
    n: u32,
    kind: &'static str,
    input: &'a Input,
}

#[derive(Serialize)]
struct CompleteLine<'a> {
    t: u64,
    e: &'static str,
    id: u64,
    output: TracedOutput<'a>,
}

/// An output as the trace shows it: long event lists are summarised (count, first, last and a
/// digest of every event's id, position and content), which keeps traces small and hashing
/// cheap while the hash still covers every event.
struct TracedOutput<'a>(&'a Output);

impl Serialize for TracedOutput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Output::Events { events, has_more } if events.len() > 2 => {
                use serde::ser::SerializeStruct;
                let digest = events_digest(events);
                let mut st = s.serialize_struct("Events", 6)?;
                st.serialize_field("result", "events")?;
                st.serialize_field("count", &events.len())?;
                st.serialize_field("has_more", has_more)?;
                st.serialize_field("first", &events[0])?;
                st.serialize_field("last", &events[events.len() - 1])?;
                st.serialize_field("digest", &format!("{digest:016x}"))?;
                st.end()
            }
            other => other.serialize(s),
        }
    }
}

/// The digest a trace line gives for the events a read returned, beyond its first and last.
fn events_digest(events: &[SeenEvent]) -> u64 {
    let mut digest = crate::trace::TraceHash::default();
    for e in events {
        let mut bytes = [0; 48];
        let fields = [
            e.id.0 as u64,
            (e.id.0 >> 64) as u64,
            e.version,
            e.seq,
            u64::from(e.partition),
            e.digest,
        ];
        for (chunk, field) in bytes.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        digest.write(&bytes);
    }
    digest.value()
}

#[derive(Serialize)]
struct FaultLine<'a> {
    t: u64,
    e: &'static str,
    fault: &'a FaultAction,
}

#[derive(Serialize)]
struct RecoveryLine<'a> {
    t: u64,
    e: &'static str,
    recovery: &'a Recovery,
}

/// A delivery's trace line. Its fields are in sorted order, as `serde_json::json!` (a sorted
/// map) wrote them before this struct replaced it, so the line and the hash are unchanged;
/// the struct saves building a map per delivery.
#[derive(Serialize)]
struct DeliverLine<'a> {
    cursor: u64,
    e: &'static str,
    event: SortedSeenEvent<'a>,
    sub: u64,
    t: u64,
}

/// An acknowledgement's trace line, fields sorted as in [`DeliverLine`].
#[derive(Serialize)]
struct AckLine {
    accepted: bool,
    cursor: u64,
    e: &'static str,
    sub: u64,
    t: u64,
}

/// A [`SeenEvent`] with its fields in sorted order (as a `serde_json::Value` map holds them).
struct SortedSeenEvent<'a>(&'a SeenEvent);

impl Serialize for SortedSeenEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let e = self.0;
        let mut st = s.serialize_struct("SeenEvent", 7)?;
        st.serialize_field("digest", &e.digest)?;
        st.serialize_field("id", &e.id)?;
        st.serialize_field("partition", &e.partition)?;
        st.serialize_field("seq", &e.seq)?;
        st.serialize_field("stream", &e.stream)?;
        st.serialize_field("txn", &e.txn)?;
        st.serialize_field("version", &e.version)?;
        st.end()
    }
}

/// A fault as it happened (the schedule says what was planned; a power cut fires later).
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub at_ns: u64,
    pub action: FaultAction,
}

/// What a subscription reads: a stream (positions are versions) or a partition (positions
/// are sequences).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubTarget {
    Stream(StreamRef),
    Partition(u16),
}

impl SubTarget {
    /// The position `event` has on this target, if it belongs to it.
    pub fn position_of(self, event: &SeenEvent) -> Option<u64> {
        match self {
            SubTarget::Stream(s) => (event.stream == Some(s)).then_some(event.version),
            SubTarget::Partition(p) => (event.partition == p).then_some(event.seq),
        }
    }
}

impl fmt::Display for SubTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubTarget::Stream(s) => write!(f, "{s}"),
            SubTarget::Partition(p) => write!(f, "p{p}"),
        }
    }
}

/// Where a subscription was asked to start a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubFrom {
    /// `FROM LATEST`: only events stored after the subscription was made.
    Latest,
    /// `FROM <position>`, inclusive.
    At(u64),
}

/// One target of a subscription: where it was asked to start and where that is. For `Latest`
/// the start is the store's head + 1 read in the same instant as the subscribe call (nothing
/// runs in between on the one-threaded executor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SubscribedTarget {
    pub target: SubTarget,
    pub from: SubFrom,
    pub start: u64,
}

/// One delivery as the subscriber received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Delivered {
    pub at_ns: u64,
    pub cursor: u64,
    /// Which target of the subscription the event belongs to (`None`: none of them).
    pub target: Option<usize>,
    pub event: SeenEvent,
}

/// One acknowledgement the subscriber sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Acked {
    pub at_ns: u64,
    pub cursor: u64,
    /// Deliveries received before this acknowledgement (orders it among them exactly).
    pub after_deliveries: u64,
    /// Whether the server took it (it must: only delivered cursors are acknowledged).
    pub accepted: bool,
}

/// How a subscription ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum SubscriptionEnd {
    /// The node crashed or restarted: the connection and its subscriptions are gone.
    Disconnected,
    /// The server refused the subscribe call.
    Refused { reason: String },
    /// The feed stopped on a read error.
    Failed { class: ErrorClass, reason: String },
    /// After the workload, every target was delivered up to the store's last position,
    /// `heads` (per target), within the liveness bound.
    CaughtUp { heads: Vec<Option<u64>> },
    /// The chain's catch-up bound, `bound_ns` after the subscriber saw the heal, passed with
    /// targets still behind the store; `backlog` is the number of events the chain had yet to
    /// be delivered then (see [`crate::subscriber::catch_up_bound_ns`]).
    Behind { backlog: u64, bound_ns: u64 },
    /// The liveness bound passed with the node down.
    NodeDown,
}

/// One subscription of a subscriber: what it asked for, what it got, what it acknowledged.
#[derive(Clone, Debug, Serialize)]
pub struct Subscription {
    pub id: u64,
    pub subscriber: u32,
    /// Which of the subscriber's subscriptions this is; a resubscription continues its chain.
    pub chain: u32,
    pub node: u32,
    pub at_ns: u64,
    pub window: u64,
    /// Made after an earlier subscription of the chain ended (from its acknowledged positions).
    pub resumed: bool,
    pub targets: Vec<SubscribedTarget>,
    pub deliveries: Vec<Delivered>,
    pub acks: Vec<Acked>,
    pub end: Option<(u64, SubscriptionEnd)>,
}

/// The recorded history, shared by the clients and the world through [`HistoryLog`].
#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub faults: Vec<FaultRecord>,
    pub recoveries: Vec<Recovery>,
    pub probes: Vec<Probe>,
    pub subscriptions: Vec<Subscription>,
    pub trace: Trace,
}

/// A cheap handle on the shared [`History`].
#[derive(Clone, Default)]
pub struct HistoryLog(Arc<Mutex<History>>);

impl HistoryLog {
    pub fn new(trace: TraceMode) -> HistoryLog {
        HistoryLog(Arc::new(Mutex::new(History {
            trace: Trace::new(trace),
            ..History::default()
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, History> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an invocation; returns its id for [`HistoryLog::complete`].
    pub fn invoke(&self, at_ns: u64, client: u32, node: u32, kind: OpKind, input: Input) -> u64 {
        let mut h = self.lock();
        let id = h.ops.len() as u64;
        let line = InvokeLine {
            t: at_ns,
            e: "invoke",
            id,
            c: client,
            n: node,
            kind: kind.name(),
            input: &input,
        };
        h.trace.record_written(|out| json::invoke_line(out, &line));
        h.ops.push(Op {
            id,
            client,
            node,
            kind,
            invoke_ns: at_ns,
            complete_ns: None,
            input,
            output: None,
        });
        id
    }

    pub fn complete(&self, id: u64, at_ns: u64, output: Output) {
        let mut h = self.lock();
        let e = match output.written() {
            Written::Yes => "ok",
            Written::Maybe => "unknown",
            Written::No => "done",
        };
        let line = CompleteLine {
            t: at_ns,
            e,
            id,
            output: TracedOutput(&output),
        };
        h.trace
            .record_written(|out| json::complete_line(out, &line));
        let op = &mut h.ops[id as usize];
        op.complete_ns = Some(at_ns);
        op.output = Some(output);
    }

    pub fn fault(&self, at_ns: u64, action: FaultAction) {
        let mut h = self.lock();
        h.trace.record(&FaultLine {
            t: at_ns,
            e: "fault",
            fault: &action,
        });
        h.faults.push(FaultRecord { at_ns, action });
    }

    pub fn recovery(&self, recovery: Recovery) {
        let mut h = self.lock();
        h.trace.record(&RecoveryLine {
            t: recovery.at_ns,
            e: "recover",
            recovery: &recovery,
        });
        h.recoveries.push(recovery);
    }

    pub fn probe(&self, probe: Probe) {
        let mut h = self.lock();
        h.trace.record(&("probe", &probe));
        h.probes.push(probe);
    }

    /// Records a new subscription; returns its id for the calls below.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; each field is recorded"
    )]
    pub fn subscribe(
        &self,
        at_ns: u64,
        subscriber: u32,
        chain: u32,
        node: u32,
        window: u64,
        resumed: bool,
        targets: Vec<SubscribedTarget>,
    ) -> u64 {
        let mut h = self.lock();
        let id = h.subscriptions.len() as u64;
        h.trace.record(&serde_json::json!({
            "t": at_ns, "e": "subscribe", "sub": id, "c": subscriber, "chain": chain,
            "n": node, "window": window, "resumed": resumed, "targets": targets,
        }));
        h.subscriptions.push(Subscription {
            id,
            subscriber,
            chain,
            node,
            at_ns,
            window,
            resumed,
            targets,
            deliveries: Vec::new(),
            acks: Vec::new(),
            end: None,
        });
        id
    }

    pub fn deliver(&self, sub: u64, delivered: Delivered) {
        let mut h = self.lock();
        h.trace.record(&DeliverLine {
            cursor: delivered.cursor,
            e: "deliver",
            event: SortedSeenEvent(&delivered.event),
            sub,
            t: delivered.at_ns,
        });
        h.subscriptions[sub as usize].deliveries.push(delivered);
    }

    pub fn ack(&self, sub: u64, acked: Acked) {
        let mut h = self.lock();
        h.trace.record(&AckLine {
            accepted: acked.accepted,
            cursor: acked.cursor,
            e: "ack",
            sub,
            t: acked.at_ns,
        });
        h.subscriptions[sub as usize].acks.push(acked);
    }

    /// Corrects where a target of a subscription started, once a delivery showed it (a RESP
    /// subscription `FROM LATEST` whose start the reply left open).
    pub fn resolve_start(&self, sub: u64, target: usize, start: u64, at_ns: u64) {
        let mut h = self.lock();
        h.trace.record(&serde_json::json!({
            "t": at_ns, "e": "start", "sub": sub, "target": target, "start": start,
        }));
        h.subscriptions[sub as usize].targets[target].start = start;
    }

    pub fn end_subscription(&self, sub: u64, at_ns: u64, end: SubscriptionEnd) {
        let mut h = self.lock();
        h.trace.record(&serde_json::json!({
            "t": at_ns, "e": "sub_end", "sub": sub, "end": end,
        }));
        h.subscriptions[sub as usize].end = Some((at_ns, end));
    }

    /// Takes the history out (the run is over; clients are gone).
    pub fn take(&self) -> History {
        std::mem::take(&mut *self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_read_as_client_and_number() {
        let id = Eid::new(3, 17);
        assert_eq!(id.to_string(), "c3.17");
        assert_eq!(Eid::from_uuid(id.uuid()), id);
    }

    #[test]
    fn ids_and_expected_versions_serialise_as_they_display() {
        let counters = [
            0,
            1,
            9,
            10,
            12_345,
            u64::MAX >> 2,
            1 << 62 | 7,
            1 << 63 | 99,
            u64::MAX,
        ];
        for client in [0, 1, 41, u32::MAX - 1] {
            for n in counters {
                let id = Eid::new(client, n);
                let json = serde_json::to_string(&id).unwrap();
                assert_eq!(json, format!("\"{id}\""));
            }
        }
        for raw in [0u128, 5, u128::from(u64::MAX)] {
            let id = Eid(raw);
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        }
        for expected in [
            ExpectedVersion::Any,
            ExpectedVersion::Exists,
            ExpectedVersion::Empty,
            ExpectedVersion::Exact(0),
            ExpectedVersion::Exact(907),
            ExpectedVersion::Exact(u64::MAX),
        ] {
            let json = serde_json::to_string(&Expected(expected)).unwrap();
            assert_eq!(json, format!("\"{expected}\""));
        }
    }

    #[test]
    fn delivery_and_ack_lines_match_the_sorted_map_form() {
        for (stream, digest) in [(Some(StreamRef(3)), 0x1234_5678_9abc_def0), (None, 0)] {
            let event = SeenEvent {
                id: Eid::new(2, 9),
                stream,
                version: 4,
                partition: 7,
                seq: 11,
                txn: Eid::new(2, 10 | 1 << 63),
                digest,
            };
            let line = serde_json::to_string(&DeliverLine {
                cursor: 5,
                e: "deliver",
                event: SortedSeenEvent(&event),
                sub: 3,
                t: 99,
            })
            .unwrap();
            let map = serde_json::json!({
                "t": 99, "e": "deliver", "sub": 3, "cursor": 5, "event": event,
            });
            assert_eq!(line, map.to_string());
        }
        for accepted in [true, false] {
            let line = serde_json::to_string(&AckLine {
                accepted,
                cursor: 8,
                e: "ack",
                sub: 1,
                t: 1_000_000_007,
            })
            .unwrap();
            let map = serde_json::json!({
                "t": 1_000_000_007u64, "e": "ack", "sub": 1, "cursor": 8, "accepted": accepted,
            });
            assert_eq!(line, map.to_string());
        }
    }

    #[test]
    fn invoke_and_complete_change_the_hash() {
        let log = HistoryLog::new(TraceMode::Keep);
        let before = log.lock().trace.hash();
        let id = log.invoke(5, 0, 0, OpKind::Get, Input::Get { id: Eid::new(0, 1) });
        log.complete(id, 9, Output::NotFound);
        let mut h = log.take();
        assert_ne!(h.trace.hash(), before);
        let lines = h.trace.take_lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("\"c0.1\""), "{}", lines[0]);
        assert_eq!(h.ops[0].complete_ns, Some(9));
        assert!(h.ops[0].render().contains("get c0.1"));
    }
}
