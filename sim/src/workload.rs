//! Simulated clients: appends with every expected-version mode, idempotent retries after
//! timeouts and errors, multi-stream transactions, id reuse that must be refused, and reads of
//! every kind, against hot streams or many streams.
//!
//! Each client is one task on its own executor node (so crashing a server node never kills
//! it), with its own seeded generator, and talks to one server node: through its
//! [`NodeSlot`] (calls on the node's `Db`), or with `transport = "resp"` through a
//! [`RespLink`] to the node's RESP3 server, the same operations as requests whose replies map
//! onto the same outcomes ([`crate::resp`]). It keeps a belief of each stream's version from what it saw, which goes stale
//! when other clients append: stale `exact` expectations are how contention is exercised.
//! Every operation goes into the [`HistoryLog`] as an invocation and a completion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use db::env::Env;
use db::model::{
    Event, EventId, ExpectedVersion, NewEvent, PartitionId, PartitionKey, PartitionSeq, StreamId,
    StreamVersion, Transaction, TransactionId,
};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::history::{Eid, Expected, HistoryLog, Input, Output, SeenEvent, SentEvent, StreamRef};
use crate::node::{NodeSlot, timeout};
use crate::resp::{RespLink, command, reply};
use crate::rt::SimEnv;
use crate::scenario::quantity::uniform;
use crate::scenario::{OpKind, WorkloadPlan};

/// The event name every workload event carries.
const EVENT_NAME: &str = "e";

/// The streams of a run: `s0..s<count>` for the workload, then one probe stream per node.
/// Streams sharing a partition key form a group (`k<g>`), so a transaction may span them.
pub struct Streams {
    pub count: u32,
    pub per_key: u32,
    ids: Vec<StreamId>,
    keys: Vec<PartitionKey>,
    partitions: Vec<u16>,
}

impl Streams {
    pub fn new(count: u32, per_key: u32, nodes: u32, partition_count: u16) -> Streams {
        let per_key = per_key.max(1);
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        for i in 0..count + nodes {
            ids.push(StreamId::new(&format!("s{i}")).expect("short ids are valid"));
            let key_name = if i < count {
                format!("k{}", i / per_key)
            } else {
                format!("probe{}", i - count)
            };
            let key_stream = StreamId::new(&key_name).expect("short ids are valid");
            keys.push(PartitionKey::for_stream(&key_stream));
        }
        let partitions = keys
            .iter()
            .map(|k| k.partition(partition_count).0)
            .collect();
        Streams {
            count,
            per_key,
            ids,
            keys,
            partitions,
        }
    }

    /// The stream a name like `s12` refers to.
    pub fn parse(name: &str) -> Option<StreamRef> {
        let digits = name.strip_prefix('s')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(StreamRef)
    }

    /// Every stream, probes included.
    pub fn all(&self) -> impl Iterator<Item = StreamRef> + '_ {
        (0..self.ids.len() as u32).map(StreamRef)
    }

    pub fn probe(&self, node: u32) -> StreamRef {
        StreamRef(self.count + node)
    }

    pub fn id(&self, s: StreamRef) -> &StreamId {
        &self.ids[s.0 as usize]
    }

    pub fn key(&self, s: StreamRef) -> PartitionKey {
        self.keys[s.0 as usize]
    }

    pub fn partition(&self, s: StreamRef) -> u16 {
        self.partitions[s.0 as usize]
    }

    pub fn contains(&self, s: StreamRef) -> bool {
        (s.0 as usize) < self.ids.len()
    }

    /// The workload streams sharing `s`'s partition key.
    fn group_of(&self, s: StreamRef) -> std::ops::Range<u32> {
        let first = s.0 / self.per_key * self.per_key;
        first..(first + self.per_key).min(self.count)
    }
}

/// The content digest of an event: what idempotency compares, plus the timestamp. Two CRC-32s
/// with different initial values (hardware-accelerated; reads digest every event they return,
/// so this is on the hot path), each over every field with its length.
pub fn digest(stream: &str, name: &str, metadata: &[u8], payload: &[u8], timestamp_ms: u64) -> u64 {
    // The same bytes as one update per part would feed, gathered first: two CRC calls over
    // one buffer cost far less than eighteen over small pieces. The buffer is kept between
    // calls (a fresh one was zeroed each time), and so is a hasher to clone (a new one asks
    // the CPU for its features each time).
    DIGEST_SCRATCH.with_borrow_mut(|(bytes, low_hasher)| {
        bytes.clear();
        for part in [stream.as_bytes(), name.as_bytes(), metadata, payload] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(&timestamp_ms.to_le_bytes());
        let mut low = low_hasher.clone();
        low.update(bytes);
        let low = low.finalize();
        let high = match DIGEST_HIGH_XOR_LOW.get(bytes.len()) {
            // One CRC pass gives both halves (see `DIGEST_HIGH_XOR_LOW`).
            Some(difference) => low ^ difference,
            None => {
                let mut high = crc32fast::Hasher::new_with_initial(DIGEST_HIGH_INIT);
                high.update(bytes);
                high.finalize()
            }
        };
        u64::from(high) << 32 | u64::from(low)
    })
}

thread_local! {
    /// [`digest`]'s buffer and a hasher begun at [`DIGEST_LOW_INIT`], per thread (soak runs
    /// seeds on several). Scratch only: nothing in them outlives a call.
    static DIGEST_SCRATCH: std::cell::RefCell<(Vec<u8>, crc32fast::Hasher)> =
        std::cell::RefCell::new((
            Vec::with_capacity(512),
            crc32fast::Hasher::new_with_initial(DIGEST_LOW_INIT),
        ));
}

const DIGEST_LOW_INIT: u32 = 0x5157;
const DIGEST_HIGH_INIT: u32 = 0x9e37_79b9;

/// `DIGEST_HIGH_XOR_LOW[n]`: the CRC-32 of `n` bytes begun at [`DIGEST_HIGH_INIT`] XOR the
/// CRC-32 of the same bytes begun at [`DIGEST_LOW_INIT`], which is the same for all `n`
/// bytes. A CRC register is linear over GF(2) in its start and its input together, so the
/// two differ by the start difference carried through `n` zero bytes: `A^n (high ^ low)`,
/// where `A` advances the (reflected, polynomial `0xEDB88320`) register over one zero byte.
/// Covers lengths up to 512 bytes, those of almost every event the workloads write.
static DIGEST_HIGH_XOR_LOW: [u32; 513] = digest_high_xor_low();

const fn digest_high_xor_low() -> [u32; 513] {
    let mut out = [0u32; 513];
    let mut register = DIGEST_HIGH_INIT ^ DIGEST_LOW_INIT;
    let mut n = 0;
    while n < out.len() {
        out[n] = register;
        // One zero byte: eight shifts of the reflected register.
        let mut bit = 0;
        while bit < 8 {
            register = if register & 1 == 1 {
                (register >> 1) ^ 0xEDB8_8320
            } else {
                register >> 1
            };
            bit += 1;
        }
        n += 1;
    }
    out
}

/// What a read saw of a stored event.
pub fn seen(event: &Event) -> SeenEvent {
    SeenEvent {
        id: Eid::from_uuid(event.event_id.0),
        stream: Streams::parse(event.stream_id.as_str()),
        version: event.stream_version.0,
        partition: event.partition_id.0,
        seq: event.partition_sequence.0,
        txn: Eid::from_uuid(event.transaction_id.0),
        digest: digest(
            event.stream_id.as_str(),
            &event.event_name,
            &event.metadata,
            &event.payload,
            event.timestamp_ms,
        ),
    }
}

/// What a client remembers of a read's outcome (the outcome itself goes to the history).
enum ReadSummary {
    Position(Option<u64>),
    Events {
        last_version: Option<u64>,
        has_more: bool,
    },
    Other,
}

impl ReadSummary {
    fn of(out: &Output) -> ReadSummary {
        match out {
            Output::Position { last } => ReadSummary::Position(*last),
            Output::Events { events, has_more } => ReadSummary::Events {
                last_version: events.last().map(|e| e.version),
                has_more: *has_more,
            },
            _ => ReadSummary::Other,
        }
    }
}

/// A transaction ready to send (and resend, unchanged, on retry).
#[derive(Clone)]
struct Planned {
    txn: Transaction,
    partition: u16,
    sent: Vec<SentEvent>,
}

/// What one client needs; built by the world.
pub struct Client {
    pub index: u32,
    pub env: SimEnv,
    /// The node it talks to. With `resp` set, only for its id and its wall clock (event
    /// timestamps are the node's, as a server would stamp them, but the client sends them).
    pub slot: Arc<NodeSlot>,
    /// The RESP3 link to the node's server (`transport = "resp"`); `None`: calls on the node's
    /// `Db`.
    pub resp: Option<RespLink>,
    pub streams: Arc<Streams>,
    pub plan: Arc<WorkloadPlan>,
    pub log: HistoryLog,
    pub stop: Arc<AtomicBool>,
    pub rng: ChaCha8Rng,
    /// Decremented when the client finishes, so the world knows when draining is done.
    pub alive: Arc<AtomicUsize>,
}

/// A client's memory of what it did and saw.
#[derive(Default)]
struct Knowledge {
    next_id: u64,
    /// Last version seen per stream; absent: unknown.
    versions: BTreeMap<StreamRef, Option<u64>>,
    /// Last sequence seen per partition.
    sequences: BTreeMap<u16, u64>,
    /// Recently acknowledged events (for gets and id reuse).
    acked: Vec<(Eid, StreamRef)>,
    /// Recently attempted events whose outcome was not an acknowledgement.
    unsure: Vec<Eid>,
}

const KEEP_ACKED: usize = 64;
const KEEP_UNSURE: usize = 16;

fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize) {
    if list.len() == max {
        list.remove(0);
    }
    list.push(item);
}

struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Client {
    /// Runs until the world says stop or the operation budget is spent.
    pub async fn run(mut self) {
        let _alive = AliveGuard(self.alive.clone());
        let mut know = Knowledge::default();
        let mut ops = 0u64;
        let max_ops = self.plan.max_ops_per_client;
        while !self.stopping() && (max_ops == 0 || ops < max_ops) {
            let think = uniform(&mut self.rng, 0, self.plan.think_mean_ns.saturating_mul(2));
            self.env.sleep(Duration::from_nanos(think)).await;
            if self.stopping() {
                break;
            }
            let kind = self.plan.mix.choose(self.rng.random::<f64>());
            self.perform(kind, &mut know).await;
            ops += 1;
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.env.now().0
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            uniform(&mut self.rng, 0, n - 1)
        }
    }

    fn pick_stream(&mut self) -> StreamRef {
        let plan = &self.plan;
        let hot = plan.hot_streams.min(plan.streams);
        let (hot, fraction, all) = (hot, plan.hot_fraction, plan.streams);
        if hot > 0 && self.chance(fraction) {
            StreamRef(self.below(u64::from(hot)) as u32)
        } else {
            StreamRef(self.below(u64::from(all)) as u32)
        }
    }

    fn new_id(&mut self, know: &mut Knowledge) -> Eid {
        know.next_id += 1;
        Eid::new(self.index, know.next_id)
    }

    fn payload(&mut self) -> Bytes {
        let (low, high) = self.plan.payload_bytes;
        let len = uniform(&mut self.rng, low, high) as usize;
        let mut bytes = vec![0u8; len];
        self.rng.fill_bytes(&mut bytes);
        Bytes::from(bytes)
    }

    /// An expected version for an append to `stream`, from what the client believes.
    fn expectation(&mut self, stream: StreamRef, know: &Knowledge) -> ExpectedVersion {
        let draw = self.rng.random::<f64>();
        match know.versions.get(&stream) {
            Some(Some(v)) => match draw {
                d if d < 0.6 => ExpectedVersion::Exact(*v),
                d if d < 0.7 => ExpectedVersion::Exact(v + 1 + self.below(2)),
                d if d < 0.75 => ExpectedVersion::Exact(v.saturating_sub(1)),
                d if d < 0.9 => ExpectedVersion::Exists,
                _ => ExpectedVersion::Empty,
            },
            Some(None) => match draw {
                d if d < 0.7 => ExpectedVersion::Empty,
                d if d < 0.85 => ExpectedVersion::Exists,
                _ => ExpectedVersion::Exact(0),
            },
            None => match draw {
                d if d < 0.3 => ExpectedVersion::Empty,
                d if d < 0.6 => ExpectedVersion::Exists,
                _ => ExpectedVersion::Exact(self.below(4)),
            },
        }
    }

    fn plan_txn(
        &mut self,
        know: &mut Knowledge,
        events: Vec<(StreamRef, ExpectedVersion, Option<Eid>, Bytes)>,
    ) -> Planned {
        let key = self.streams.key(events[0].0);
        let partition = self.streams.partition(events[0].0);
        let timestamp_ms = self.slot.wall_clock_ms();
        let mut new_events = Vec::new();
        let mut sent = Vec::new();
        for (stream, expected, reuse, payload) in events {
            let id = match reuse {
                Some(id) => id,
                None => self.new_id(know),
            };
            let stream_id = self.streams.id(stream).clone();
            sent.push(SentEvent {
                id,
                stream,
                expected: Expected(expected),
                digest: digest(stream_id.as_str(), EVENT_NAME, &[], &payload, timestamp_ms),
            });
            new_events.push(NewEvent {
                event_id: EventId(id.uuid()),
                stream_id,
                event_name: EVENT_NAME.into(),
                expected_version: expected,
                timestamp_ms,
                metadata: Bytes::new(),
                payload,
            });
        }
        // Transaction ids live in their own number space: bit 63 of the counter.
        know.next_id += 1;
        let txn_id = Eid::new(self.index, know.next_id | 1 << 63);
        Planned {
            txn: Transaction {
                transaction_id: TransactionId(txn_id.uuid()),
                partition_key: key,
                events: new_events,
            },
            partition,
            sent,
        }
    }

    async fn perform(&mut self, kind: OpKind, know: &mut Knowledge) {
        match kind {
            OpKind::Append => {
                let stream = self.pick_stream();
                let payload = self.payload();
                let txn = self.plan_txn(know, vec![(stream, ExpectedVersion::Any, None, payload)]);
                self.append(kind, txn, know).await;
            }
            OpKind::AppendExpected => {
                let stream = self.pick_stream();
                let expected = self.expectation(stream, know);
                let payload = self.payload();
                let txn = self.plan_txn(know, vec![(stream, expected, None, payload)]);
                self.append(kind, txn, know).await;
            }
            OpKind::AppendBatch => {
                let stream = self.pick_stream();
                let count = 2 + self.below(u64::from(self.plan.max_events.max(2)) - 1) as usize;
                let mut events = Vec::new();
                for i in 0..count {
                    let expected = if i == 0 && self.chance(0.5) {
                        self.expectation(stream, know)
                    } else {
                        ExpectedVersion::Any
                    };
                    events.push((stream, expected, None, self.payload()));
                }
                let txn = self.plan_txn(know, events);
                self.append(kind, txn, know).await;
            }
            OpKind::Transaction => {
                let first = self.pick_stream();
                let group: Vec<u32> = self.streams.group_of(first).collect();
                let most = (self.plan.max_events as usize).min(group.len()).max(1);
                let count = 1 + self.below(most as u64) as usize;
                // A random subset of the group, in a random order.
                let mut members = group;
                for i in 0..members.len() {
                    let j = i + self.below((members.len() - i) as u64) as usize;
                    members.swap(i, j);
                }
                let mut events = Vec::new();
                for &s in members.iter().take(count) {
                    let stream = StreamRef(s);
                    let expected = if self.chance(0.3) {
                        self.expectation(stream, know)
                    } else {
                        ExpectedVersion::Any
                    };
                    events.push((stream, expected, None, self.payload()));
                }
                let txn = self.plan_txn(know, events);
                self.append(kind, txn, know).await;
            }
            OpKind::Conflict => {
                if know.acked.is_empty() {
                    return;
                }
                let (id, stream) = know.acked[self.below(know.acked.len() as u64) as usize];
                // Content that cannot equal any payload the workload makes by chance.
                let mut payload = b"conflict".to_vec();
                payload.extend_from_slice(&self.rng.next_u64().to_le_bytes());
                let txn = self.plan_txn(
                    know,
                    vec![(stream, ExpectedVersion::Any, Some(id), payload.into())],
                );
                self.append(kind, txn, know).await;
            }
            OpKind::Get => self.get(know).await,
            OpKind::ReadStream | OpKind::ReadStreamBackward => {
                self.read_stream(kind == OpKind::ReadStreamBackward, know)
                    .await;
            }
            OpKind::ReadPartition => self.read_partition(know).await,
            OpKind::StreamVersion => {
                let stream = self.pick_stream();
                let streams = self.streams.clone();
                let input = Input::StreamVersion { stream };
                let out = self
                    .read(kind, input, move |db| {
                        let last = db
                            .store()
                            .stream_version(streams.key(stream), streams.id(stream));
                        Output::Position {
                            last: last.map(|v| v.0),
                        }
                    })
                    .await;
                if let ReadSummary::Position(last) = out {
                    know.versions.insert(stream, last);
                }
            }
            OpKind::PartitionSequence => {
                let stream = self.pick_stream();
                let partition = self.streams.partition(stream);
                let input = Input::PartitionSequence { partition };
                let out = self
                    .read(kind, input, move |db| {
                        let last = db.store().partition_sequence(PartitionId(partition));
                        Output::Position {
                            last: last.map(|s| s.0),
                        }
                    })
                    .await;
                if let ReadSummary::Position(Some(s)) = out {
                    know.sequences.insert(partition, s);
                }
            }
            OpKind::Probe => {}
        }
    }

    /// Sends `planned`, retrying with the same events while the outcome is unknown or the
    /// store could not take it, up to the plan's retries.
    async fn append(&mut self, kind: OpKind, planned: Planned, know: &mut Knowledge) {
        let retries = self.plan.retries;
        for attempt in 0..=retries {
            let out = self.append_once(kind, &planned, attempt).await;
            match &out {
                Output::Appended { positions, .. } => {
                    for (i, (id, version, seq)) in positions.iter().enumerate() {
                        let stream = planned.sent[i].stream;
                        know.versions.insert(stream, Some(*version));
                        know.sequences.insert(planned.partition, *seq);
                        if kind != OpKind::Conflict {
                            push_bounded(&mut know.acked, (*id, stream), KEEP_ACKED);
                        }
                    }
                    return;
                }
                Output::WrongExpectedVersion { stream, actual } => {
                    know.versions.insert(*stream, *actual);
                    return;
                }
                Output::EventIdConflict { .. } | Output::Rejected { .. } => return,
                _ => {
                    for e in &planned.sent {
                        know.versions.remove(&e.stream);
                    }
                    if attempt == 0 {
                        for e in &planned.sent {
                            push_bounded(&mut know.unsure, e.id, KEEP_UNSURE);
                        }
                    }
                    if self.stopping() {
                        return;
                    }
                    let backoff = 1_000_000 * (1 + u64::from(attempt)) * (1 + self.below(20));
                    self.env.sleep(Duration::from_nanos(backoff)).await;
                }
            }
        }
    }

    async fn append_once(&mut self, kind: OpKind, planned: &Planned, attempt: u32) -> Output {
        let input = Input::Append {
            txn: Eid::from_uuid(planned.txn.transaction_id.0),
            attempt,
            partition: planned.partition,
            events: planned.sent.clone(),
        };
        let node = self.slot.id;
        let op = self.log.invoke(self.now(), self.index, node, kind, input);
        let limit = Duration::from_nanos(self.plan.timeout_ns);
        let out = if let Some(link) = &mut self.resp {
            append_resp(link, &planned.txn, limit).await
        } else {
            match self.slot.db() {
                None => Output::NodeDown,
                Some(db) => match timeout(&self.env, limit, db.append(planned.txn.clone())).await {
                    None => Output::TimedOut,
                    Some(result) => Output::of_append(result),
                },
            }
        };
        self.log.complete(op, self.now(), out.clone());
        out
    }

    /// A read: waits the disk's latency, then runs `read` on the node's store if it is up; or,
    /// over RESP, sends the request `input` describes (the server reads at once: its store's
    /// reads are synchronous).
    async fn read(
        &mut self,
        kind: OpKind,
        input: Input,
        read: impl FnOnce(&db::Db<disk::SimDisk>) -> Output,
    ) -> ReadSummary {
        let request = self
            .resp
            .as_ref()
            .map(|_| (command::read(&input, &self.streams), input.clone()));
        let op = self
            .log
            .invoke(self.now(), self.index, self.slot.id, kind, input);
        let out = match (&mut self.resp, request) {
            (Some(link), Some((request, input))) => {
                let limit = Duration::from_nanos(self.plan.timeout_ns);
                match link.request(&request, limit).await.failure() {
                    Ok(frame) => reply::read(&input, frame.root()),
                    Err(out) => out,
                }
            }
            _ => {
                self.env.sleep(self.slot.io_delay()).await;
                match self.slot.db() {
                    None => Output::NodeDown,
                    Some(db) => read(&db),
                }
            }
        };
        let summary = ReadSummary::of(&out);
        self.log.complete(op, self.now(), out);
        summary
    }

    async fn get(&mut self, know: &mut Knowledge) {
        let draw = self.rng.random::<f64>();
        let id = if draw < 0.7 && !know.acked.is_empty() {
            know.acked[self.below(know.acked.len() as u64) as usize].0
        } else if draw < 0.9 && !know.unsure.is_empty() {
            know.unsure[self.below(know.unsure.len() as u64) as usize]
        } else {
            // An id nobody ever used: bit 62 marks the space.
            Eid::new(self.index, 1 << 62 | self.below(1 << 20))
        };
        self.read(OpKind::Get, Input::Get { id }, move |db| {
            match db.store().get(&EventId(id.uuid())) {
                Ok(Some(event)) => Output::Events {
                    events: vec![seen(&event)],
                    has_more: false,
                },
                Ok(None) => Output::NotFound,
                Err(err) => Output::read_failed(&err),
            }
        })
        .await;
    }

    async fn read_stream(&mut self, backward: bool, know: &mut Knowledge) {
        let stream = self.pick_stream();
        let known = know.versions.get(&stream).copied().flatten();
        let top = known.map_or(0, |v| v + 1);
        // As for partitions (see `read_partition`): forward reads mostly start just before the
        // last version this client saw, so they reach the end; a backward read starts from the
        // end (or `to`) whatever `from` is, so `from` 0 lets it run down to the first version.
        let draw = self.rng.random::<f64>();
        let from = if backward || draw < 0.1 {
            0
        } else if draw < 0.6 {
            top.saturating_sub(1 + self.below(8))
        } else {
            self.below(top + 1)
        };
        let to = if self.chance(0.8) {
            None
        } else {
            Some(from + self.below(10))
        };
        let limit = if self.chance(0.1) {
            1000
        } else {
            1 + self.below(20) as u32
        };
        let kind = if backward {
            OpKind::ReadStreamBackward
        } else {
            OpKind::ReadStream
        };
        let input = Input::ReadStream {
            stream,
            from,
            to,
            limit,
            backward,
        };
        let streams = self.streams.clone();
        let out = self
            .read(kind, input, move |db| {
                let (key, id) = (streams.key(stream), streams.id(stream));
                let (from, to) = (StreamVersion(from), to.map(StreamVersion));
                let store = db.store();
                let scan = if backward {
                    store.scan_stream_backward(key, id, from, to, limit as usize)
                } else {
                    store.scan_stream(key, id, from, to, limit as usize)
                };
                match scan {
                    Ok(scan) => Output::Events {
                        events: scan.events.iter().map(seen).collect(),
                        has_more: scan.has_more,
                    },
                    Err(err) => Output::read_failed(&err),
                }
            })
            .await;
        // A forward read to the end shows the stream's version at that moment.
        if let ReadSummary::Events {
            last_version: Some(last),
            has_more: false,
        } = out
            && !backward
            && to.is_none()
        {
            know.versions.insert(stream, Some(last));
        }
    }

    async fn read_partition(&mut self, know: &mut Knowledge) {
        let stream = self.pick_stream();
        let partition = self.streams.partition(stream);
        let known = know.sequences.get(&partition).copied().unwrap_or(0);
        // Half the reads start just before the last sequence this client saw, so most of them
        // reach the partition's end (`has_more` false: an observation of its length, which
        // `linearizable-per-stream` catches stale reads with); the rest start anywhere, a few
        // at the beginning. Reads from 0 with a large limit return the same oldest events
        // every time, and were most of what reads returned, so they are kept rare.
        let draw = self.rng.random::<f64>();
        let from = if draw < 0.1 {
            0
        } else if draw < 0.6 {
            known.saturating_sub(self.below(8))
        } else {
            self.below(known + 2)
        };
        let limit = if self.chance(0.1) {
            1000
        } else {
            1 + self.below(30) as u32
        };
        let input = Input::ReadPartition {
            partition,
            from,
            limit,
        };
        self.read(OpKind::ReadPartition, input, move |db| {
            match db.store().scan_partition(
                PartitionId(partition),
                PartitionSeq(from),
                None,
                limit as usize,
            ) {
                Ok(scan) => Output::Events {
                    events: scan.events.iter().map(seen).collect(),
                    has_more: scan.has_more,
                },
                Err(err) => Output::read_failed(&err),
            }
        })
        .await;
    }
}

/// An append over RESP: the request the transaction makes, its reply as an outcome.
async fn append_resp(link: &mut RespLink, txn: &Transaction, limit: Duration) -> Output {
    match link.request(&command::append(txn), limit).await.failure() {
        Ok(frame) => reply::append(frame.root()),
        Err(out) => out,
    }
}

/// The liveness probe: appends to the node's probe stream (through `resp` if given) until one
/// succeeds or `within` passes. Returns how long it took and how many attempts it made.
pub async fn probe(
    env: SimEnv,
    slot: Arc<NodeSlot>,
    mut resp: Option<RespLink>,
    streams: Arc<Streams>,
    log: HistoryLog,
    client: u32,
    within: Duration,
) -> (Option<u64>, u32) {
    let start = env.now().0;
    let stream = streams.probe(slot.id);
    let mut attempts = 0;
    while env.now().0 - start <= within.as_nanos() as u64 {
        attempts += 1;
        let id = Eid::new(client, u64::from(attempts));
        let txn_id = Eid::new(client, u64::from(attempts) | 1 << 63);
        let timestamp_ms = slot.wall_clock_ms();
        let payload = Bytes::from_static(b"probe");
        let stream_id = streams.id(stream).clone();
        let sent = SentEvent {
            id,
            stream,
            expected: Expected(ExpectedVersion::Any),
            digest: digest(stream_id.as_str(), EVENT_NAME, &[], &payload, timestamp_ms),
        };
        let txn = Transaction {
            transaction_id: TransactionId(txn_id.uuid()),
            partition_key: streams.key(stream),
            events: vec![NewEvent {
                event_id: EventId(id.uuid()),
                stream_id,
                event_name: EVENT_NAME.into(),
                expected_version: ExpectedVersion::Any,
                timestamp_ms,
                metadata: Bytes::new(),
                payload,
            }],
        };
        let input = Input::Append {
            txn: txn_id,
            attempt: 0,
            partition: streams.partition(stream),
            events: vec![sent],
        };
        let op = log.invoke(env.now().0, client, slot.id, OpKind::Probe, input);
        let limit = Duration::from_secs(1);
        let out = if let Some(link) = &mut resp {
            append_resp(link, &txn, limit).await
        } else {
            match slot.db() {
                None => Output::NodeDown,
                Some(db) => match timeout(&env, limit, db.append(txn)).await {
                    None => Output::TimedOut,
                    Some(result) => Output::of_append(result),
                },
            }
        };
        let ok = matches!(out, Output::Appended { .. });
        log.complete(op, env.now().0, out);
        if ok {
            return (Some(env.now().0 - start), attempts);
        }
        env.sleep(Duration::from_millis(50)).await;
    }
    (None, attempts)
}

#[cfg(test)]
mod tests {
    use super::{DIGEST_HIGH_INIT, DIGEST_HIGH_XOR_LOW, DIGEST_LOW_INIT, digest};

    /// The digest as first written: one CRC update per piece.
    fn piecewise(stream: &str, name: &str, metadata: &[u8], payload: &[u8], ts: u64) -> u64 {
        let mut low = crc32fast::Hasher::new_with_initial(0x5157_u32);
        let mut high = crc32fast::Hasher::new_with_initial(0x9e37_79b9);
        for part in [stream.as_bytes(), name.as_bytes(), metadata, payload] {
            let len = (part.len() as u64).to_le_bytes();
            low.update(&len);
            low.update(part);
            high.update(&len);
            high.update(part);
        }
        low.update(&ts.to_le_bytes());
        high.update(&ts.to_le_bytes());
        u64::from(high.finalize()) << 32 | u64::from(low.finalize())
    }

    #[test]
    fn one_crc_pass_gives_both_digest_halves() {
        let bytes: Vec<u8> = (0..DIGEST_HIGH_XOR_LOW.len() as u32)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        for (len, difference) in DIGEST_HIGH_XOR_LOW.iter().enumerate() {
            let crc = |init| {
                let mut h = crc32fast::Hasher::new_with_initial(init);
                h.update(&bytes[..len]);
                h.finalize()
            };
            assert_eq!(crc(DIGEST_HIGH_INIT), crc(DIGEST_LOW_INIT) ^ difference);
        }
    }

    #[test]
    fn digest_is_the_piecewise_crc() {
        let big = vec![7u8; 2000];
        for payload in [&b""[..], b"probe", &big[..100], &big[..]] {
            for meta in [&b""[..], b"m", &big[..600]] {
                assert_eq!(
                    digest("s12", "event", meta, payload, 1_700_000_000_123),
                    piecewise("s12", "event", meta, payload, 1_700_000_000_123)
                );
            }
        }
    }
}
