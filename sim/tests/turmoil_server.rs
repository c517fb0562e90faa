//! # Tier 2: the production wiring under turmoil
//!
//! Tier 1 (`sim::rt`, `tests/net.rs`, `tests/scenarios.rs`) runs the store and the RESP3 server
//! on our own executor, with `SimEnv` (virtual clock, seeded scheduler, blocking work run
//! inline), `SimDisk` and in-memory byte pipes. What it cannot show is that the *production*
//! adapters behave: this file runs exactly what the `sierradb` binary runs, on turmoil 0.7.2's
//! simulated hosts:
//!
//! | piece | Tier 1 | here (Tier 2) |
//! |---|---|---|
//! | `Env` | `SimEnv` | [`TokioEnv`]: tokio timers (turmoil pauses and drives the clock), `Handle::spawn`, and the real **blocking pool** for group commit's write + fsync |
//! | client transport | `SimListener` byte pipes | turmoil's simulated **TCP** (`support::TurmoilListener`): latency, holds, partitions that drop segments and stall a stream, resets when a host dies |
//! | disk | `SimDisk` | turmoil-fs 0.1 (`support::TurmoilDisk`), a POSIX model: writes pending until `fsync`, entries until the directory fsync, prefix tears of 512-byte blocks on a crash |
//! | process faults | the executor's crash | `Sim::crash` + `Fs::crash` + `Sim::bounce`: the tokio runtime is dropped and rebuilt, the store recovers from what turmoil-fs kept |
//!
//! Each seed runs one scenario: a server host (`Db::open` + `db::server::serve`), a writer client
//! (HELLO 3, `EAPPEND`s with expected versions, some pipelined, server-generated and
//! client-chosen event ids, `ESCAN`, `EGET`) and a reader client (`ESUB` receiving history then
//! live events, resubscribing from the next version after a reconnect). Faults come from the
//! seed: per-link message latency re-drawn every few tens of milliseconds, a `hold`/`release` of
//! the writer's link, a `partition`/`repair` that loses an in-flight request or reply (the
//! writer times out, reconnects and retries with the same event ids, which the store answers
//! idempotently), and a crash of the server host at a seed-chosen moment around a pipelined
//! batch, followed by a restart after a seed-chosen downtime.
//!
//! Checked every run: every acknowledged append is readable after the restart with the version
//! and id it was acknowledged with (`ESCAN`, `EGET`); each stream holds exactly the intended
//! events, gapless; the subscriber saw every version of its stream exactly once, in order.
//!
//! # Determinism
//!
//! Every seed runs twice and the transcripts (every reply and push each client saw, in order,
//! what recovery reported on each boot, the latency schedule and the crash time) must hash the
//! same (FNV-1a). What makes that hold:
//! - a fixed `Builder::epoch` and `rng_seed(seed)` (turmoil otherwise uses the OS clock and
//!   entropy), turmoil-fs seeded from the seed, and `TokioEnv::new` seeded from the seed and
//!   the boot number (transaction, subscription and generated event ids);
//! - `biased;` in every `select!` of `db` (this file has none), so tokio's unseeded select RNG
//!   is never consulted; `--cfg tokio_unstable` (which lets turmoil seed it) is not needed;
//! - explicit `TIMESTAMP`s: `TokioEnv::wall_clock_ms` is the real `SystemTime` under turmoil,
//!   so server-chosen timestamps (and the time bits of generated ids) would differ run to run.
//!   `TokioEnv::now` is the real clock too; it only feeds metrics and `INFO` uptime, which no
//!   transcript includes;
//! - [`Latency::Scheduled`]: turmoil's default per-message latency draw is *not* repeatable
//!   here. Group commit's write + fsync runs on tokio's real blocking pool; its completion
//!   wakes the waiting task from another thread at a real-time-dependent point among the
//!   server's other ready tasks, so the order in which the writer's and the reader's
//!   connections send within one tick varies, and turmoil draws each segment's latency from
//!   one shared RNG in send order. (Measured: with the blocking work run inline instead, all 20
//!   seeds repeated; with the pool, typically 15–18 of 20. Virtual *time* is not the problem:
//!   tokio does not auto-advance paused time while a blocking task runs, so every fsync ends
//!   at the same virtual instant.) Fixed per-link latencies, re-drawn from the seed on a
//!   schedule, make the send order irrelevant. The per-message draw still runs, checking every
//!   invariant, in [`per_message_latency_keeps_acknowledged_appends_but_does_not_repeat`];
//! - one bucket, so one group-commit writer: two buckets mean two blocking fsyncs in flight
//!   at once, racing for turmoil-fs's RNG (with `sync_probability` on) and for the order of
//!   their replies and pushes.
//!
//! # Not covered here
//!
//! Torn writes: crashes happen between turmoil ticks, when the blocking pool has finished
//! every batch (write *and* fsync), so turmoil-fs never has pending writes to tear; the
//! `block_size` is set but the torn-tail recovery path is Tier 1's (`SimDisk`). Also not here:
//! I/O errors, `ENOSPC`, read corruption (turmoil-fs offers them; the server's reaction to them
//! is Tier 1's), more than one bucket, and `mmap` (turmoil-fs has none: `File::map` copies).

#![expect(
    clippy::disallowed_methods,
    reason = "Tier 2 drives the production tokio wiring: clients use tokio's (turmoil-paused) \
              timers directly"
)]

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant as WallInstant, UNIX_EPOCH};

use bytes::BytesMut;
use db::env::TokioEnv;
use db::server::{ServerConfig, serve};
use db::{Db, StoreConfig};
use disk::{Disk, File, OpenMode};
use net::{Frame, Limits, Protocol};
use support::{TurmoilDisk, TurmoilListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;
use turmoil_fs::Fs;
use uuid::Uuid;

const PORT: u16 = 6379;
/// The fixed simulated wall clock: 2023-11-14T22:13:20Z.
const EPOCH_SECS: u64 = 1_700_000_000;
/// Every append carries this timestamp (see the module docs on determinism).
const TIMESTAMP: &str = "1700000000000";
/// How long the writer waits for a reply before treating the connection as lost.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the reader waits for a push before reconnecting.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Pause between connection attempts while the server is down.
const CONNECT_RETRY: Duration = Duration::from_millis(20);
const DATA_DIR: &str = "/data";

/// The subscribed stream and its final number of events (versions `0..ORDERS_EVENTS`).
const ORDERS: &str = "orders";
const ORDERS_EVENTS: u64 = 10;

// ------------------------------------------------------------------ seeds and knobs

/// splitmix64: the knobs of a seed, independent of every other random stream.
fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The faults and timings one seed picks.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    /// Upper bound of the one-way message latency (lower bound 1 ms).
    max_latency_ms: u64,
    /// With [`Latency::Scheduled`], how often each link's latency changes.
    latency_period_ms: u64,
    /// How long the writer's link is held (messages delayed, none lost).
    hold_ms: u64,
    /// Delay between sending the partitioned request and cutting the link: short loses the
    /// request, longer loses only the reply.
    partition_after_ms: u64,
    /// How long the link stays cut.
    partition_ms: u64,
    /// Delay between sending the crash batch and crashing the server.
    crash_after_ms: u64,
    /// How long the server stays down before it is restarted.
    downtime_ms: u64,
    /// When the reader subscribes (so some events are history and some live).
    reader_start_ms: u64,
    /// turmoil-fs's chance that a write is flushed early on its own.
    sync_probability: f64,
}

impl Knobs {
    fn of(seed: u64) -> Knobs {
        let pick = |salt: u64, lo: u64, hi: u64| lo + mix(seed, salt) % (hi - lo + 1);
        let max_latency_ms = pick(1, 2, 40);
        Knobs {
            max_latency_ms,
            latency_period_ms: pick(9, 20, 200),
            hold_ms: pick(2, 10, 80),
            partition_after_ms: pick(3, 0, 2 * max_latency_ms + 2),
            partition_ms: pick(4, 20, 200),
            crash_after_ms: pick(5, 0, max_latency_ms),
            downtime_ms: pick(6, 10, 150),
            reader_start_ms: pick(7, 5, 150),
            sync_probability: if mix(seed, 8).is_multiple_of(3) {
                0.2
            } else {
                0.0
            },
        }
    }

    /// The one-way latency of `link` (0: writer, 1: reader) during latency period `period`.
    fn link_latency(seed: u64, link: u64, period: u64) -> Duration {
        let knobs = Knobs::of(seed);
        Duration::from_millis(1 + mix(seed, 30_000 + 2 * period + link) % knobs.max_latency_ms)
    }
}

/// How message latency is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Latency {
    /// Each client link has one latency at a time, re-drawn from the seed every
    /// `latency_period_ms` by the driver (`Sim::set_link_latency`). Repeatable.
    Scheduled,
    /// turmoil's own per-message draw between 1 ms and `max_latency_ms`
    /// (`min/max_message_latency`). *Not* repeatable with the real blocking pool: see the
    /// module docs.
    PerMessage,
}

// ------------------------------------------------------------------ transcripts

/// Everything one run's clients saw, in order, per client.
#[derive(Default)]
struct Transcript {
    server: Vec<String>,
    writer: Vec<String>,
    reader: Vec<String>,
}

impl Transcript {
    /// FNV-1a over every line (a fixed algorithm, never `DefaultHasher`).
    fn hash(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for (tag, lines) in [
            ("server", &self.server),
            ("writer", &self.writer),
            ("reader", &self.reader),
        ] {
            for line in lines {
                for byte in tag.bytes().chain(line.bytes()).chain(*b"\n") {
                    hash ^= u64::from(byte);
                    hash = hash.wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        hash
    }
}

type Log = Rc<RefCell<Vec<String>>>;

/// What a run produced, for the double-run comparison and the report.
struct Outcome {
    hash: u64,
    transcript: Transcript,
    crashes: u32,
    boots: u64,
    sim_elapsed: Duration,
}

impl Outcome {
    /// The clients' closing summaries (retries by fault, reconnects).
    fn summary(&self) -> String {
        let last = |lines: &[String]| lines.last().cloned().unwrap_or_default();
        format!(
            "{}; {}",
            last(&self.transcript.writer),
            last(&self.transcript.reader)
        )
    }
}

// ------------------------------------------------------------------ RESP client

/// A request as RESP: an array of blob strings, encoded by the production codec.
fn request(args: &[&str]) -> Vec<u8> {
    let frame = Frame::array(
        args.iter()
            .map(|arg| Frame::bulk(arg.as_bytes().to_vec()))
            .collect(),
    );
    let mut out = BytesMut::new();
    net::encode(&frame, Protocol::Resp2, &mut out);
    out.to_vec()
}

fn field<'a>(frame: &'a Frame, name: &str) -> &'a Frame {
    frame
        .as_map()
        .unwrap_or_else(|| panic!("not a map: {frame:?}"))
        .iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no field {name} in {frame:?}"))
}

fn text(frame: &Frame) -> String {
    frame
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {frame:?}"))
        .to_owned()
}

fn int(frame: &Frame) -> i64 {
    frame
        .as_integer()
        .unwrap_or_else(|| panic!("not an integer: {frame:?}"))
}

/// One client's connection to the server, reconnecting (HELLO 3 each time) when it is lost.
struct Client {
    stream: Option<TcpStream>,
    buf: BytesMut,
    log: Log,
    reconnects: u32,
}

impl Client {
    fn new(log: Log) -> Client {
        Client {
            stream: None,
            buf: BytesMut::new(),
            log,
            reconnects: 0,
        }
    }

    fn note(&self, line: String) {
        self.log.borrow_mut().push(line);
    }

    /// Connects (retrying while the server is down or not yet listening) and switches to RESP3.
    async fn connect(&mut self) {
        loop {
            self.stream = None;
            self.buf.clear();
            match TcpStream::connect(("server", PORT)).await {
                Ok(stream) => self.stream = Some(stream),
                Err(_) => {
                    tokio::time::sleep(CONNECT_RETRY).await;
                    continue;
                }
            }
            if self.send(&request(&["HELLO", "3"])).await.is_err() {
                continue;
            }
            match self.read(REPLY_TIMEOUT).await {
                Ok(hello) => {
                    assert_eq!(int(field(&hello, "proto")), 3, "{hello:?}");
                    let line = format!(
                        "HELLO 3 -> proto 3, connection {}",
                        int(field(&hello, "id"))
                    );
                    self.note(line);
                    return;
                }
                Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
            }
        }
    }

    async fn ensure_connected(&mut self) {
        if self.stream.is_none() {
            self.connect().await;
        }
    }

    fn disconnect(&mut self, why: &str) {
        self.note(format!("disconnect: {why}"));
        self.stream = None;
        self.buf.clear();
        self.reconnects += 1;
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        stream.write_all(bytes).await?;
        stream.flush().await
    }

    /// The next frame, or an error if the connection ends or nothing arrives for `timeout`.
    async fn read(&mut self, timeout: Duration) -> io::Result<Frame> {
        loop {
            if let Some(frame) = net::decode(&mut self.buf, &Limits::default())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?
            {
                return Ok(frame);
            }
            let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let read = tokio::time::timeout(timeout, stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(err),
            }
        }
    }
}

// ------------------------------------------------------------------ the writer

/// A fault applied to the first attempt of a batch.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// `hold` the link before sending, `release` it after this long.
    Hold(Duration),
    /// Cut the link this long after sending, for this long.
    Partition {
        after: Duration,
        cut: Duration,
    },
    /// Ask the driver to crash the server this long after sending.
    Crash(Duration),
}

/// Shared between the writer and the driver loop.
#[derive(Default)]
struct CrashControl {
    /// A crash the writer asks for, in ms from now.
    request: Cell<Option<u64>>,
    /// Crashes the driver has injected.
    done: Cell<u32>,
}

type CrashRequest = Rc<CrashControl>;

/// One append of the workload.
#[derive(Clone, Debug)]
struct Append {
    stream: &'static str,
    version: u64,
    /// `None`: the server generates the id (first attempt only; never retried after a fault).
    event_id: Option<Uuid>,
    payload: String,
}

impl Append {
    fn new(seed: u64, stream: &'static str, version: u64, explicit_id: bool) -> Append {
        let event_id = explicit_id.then(|| {
            let salt = stream
                .bytes()
                .fold(version, |acc, byte| mix(acc, u64::from(byte)));
            let hi = mix(seed, salt);
            let lo = mix(seed, salt ^ 0xFFFF);
            uuid::Builder::from_u128((u128::from(hi) << 64) | u128::from(lo)).into_uuid()
        });
        Append {
            stream,
            version,
            event_id,
            payload: format!("{stream}#{version}@{seed}"),
        }
    }

    fn request(&self) -> Vec<u8> {
        let expected = match self.version {
            0 => "empty".to_owned(),
            v => (v - 1).to_string(),
        };
        let id = self.event_id.map(|id| id.to_string());
        let mut args = vec![self.stream, "Happened"];
        if let Some(id) = &id {
            args.extend(["EVENT_ID", id]);
        }
        args.extend([
            "EXPECTED_VERSION",
            &expected,
            "TIMESTAMP",
            TIMESTAMP,
            "PAYLOAD",
            &self.payload,
        ]);
        let mut full = vec!["EAPPEND"];
        full.extend(args);
        request(&full)
    }
}

/// The writer's model of what the store must hold: per stream, `(event id, payload)` by version,
/// filled in only when an append is acknowledged.
type Model = BTreeMap<&'static str, Vec<(String, String)>>;

struct Writer {
    client: Client,
    crash: CrashRequest,
    model: Model,
    /// Batches that needed a retry, by the fault of their first attempt.
    retries: BTreeMap<&'static str, u32>,
}

impl Writer {
    /// Sends `appends` pipelined (one write), applying `fault` to the first attempt, and
    /// retries the whole batch on a new connection until every reply arrives. Retries are
    /// safe because explicit event ids make a repeated append return its first result.
    async fn batch(&mut self, appends: &[Append], fault: Fault) {
        let bytes: Vec<u8> = appends.iter().flat_map(Append::request).collect();
        let kind = match fault {
            Fault::None => "none",
            Fault::Hold(_) => "hold",
            Fault::Partition { .. } => "partition",
            Fault::Crash(_) => "crash",
        };
        let mut fault = fault;
        loop {
            self.client.ensure_connected().await;
            if let Fault::Hold(_) = fault {
                turmoil::hold("writer", "server");
            }
            let sent = self.client.send(&bytes).await;
            match std::mem::replace(&mut fault, Fault::None) {
                Fault::None => {}
                Fault::Hold(hold) => {
                    tokio::time::sleep(hold).await;
                    turmoil::release("writer", "server");
                    self.client.note(format!("fault: held link {hold:?}"));
                }
                Fault::Partition { after, cut } => {
                    tokio::time::sleep(after).await;
                    turmoil::partition("writer", "server");
                    tokio::time::sleep(cut).await;
                    turmoil::repair("writer", "server");
                    self.client
                        .note(format!("fault: partition after {after:?} for {cut:?}"));
                }
                Fault::Crash(after) => {
                    self.crash.request.set(Some(after.as_millis() as u64));
                    self.client.note(format!("fault: crash in {after:?}"));
                }
            }
            let mut replies = Vec::new();
            let mut failure = sent.err();
            while failure.is_none() && replies.len() < appends.len() {
                match self.client.read(REPLY_TIMEOUT).await {
                    Ok(frame) => replies.push(frame),
                    Err(err) => failure = Some(err),
                }
            }
            if let Some(err) = failure {
                self.client.disconnect(&format!(
                    "{:?} after {} of {} replies",
                    err.kind(),
                    replies.len(),
                    appends.len()
                ));
                assert!(
                    appends.iter().all(|a| a.event_id.is_some()),
                    "only appends with client-chosen ids are retried"
                );
                *self.retries.entry(kind).or_default() += 1;
                continue;
            }
            for (append, reply) in appends.iter().zip(&replies) {
                self.acknowledged(append, reply);
            }
            return;
        }
    }

    fn acknowledged(&mut self, append: &Append, reply: &Frame) {
        assert!(
            !matches!(reply, Frame::SimpleError(_) | Frame::BlobError(_)),
            "{append:?}: {reply:?}"
        );
        let version = int(field(reply, "stream_version"));
        assert_eq!(version as u64, append.version, "{append:?}: {reply:?}");
        let id = text(field(reply, "event_id"));
        if let Some(expected) = append.event_id {
            assert_eq!(id, expected.to_string());
        }
        let events = self.model.entry(append.stream).or_default();
        assert_eq!(
            events.len() as u64,
            append.version,
            "acknowledged out of order"
        );
        events.push((id, append.payload.clone()));
        self.client.note(format!(
            "EAPPEND {} v{} -> {reply:?}",
            append.stream, append.version
        ));
    }

    /// Reads every stream back and checks it holds exactly the acknowledged events.
    async fn verify(&mut self) {
        let model = self.model.clone();
        for (stream, expected) in &model {
            let reply = self.call(&["ESCAN", stream, "-", "+"]).await;
            let events = field(&reply, "events")
                .as_array()
                .unwrap_or_else(|| panic!("ESCAN {stream}: {reply:?}"));
            let got: Vec<(i64, String, String)> = events
                .iter()
                .map(|event| {
                    (
                        int(field(event, "stream_version")),
                        text(field(event, "event_id")),
                        String::from_utf8_lossy(field(event, "payload").as_bytes().unwrap())
                            .into_owned(),
                    )
                })
                .collect();
            let want: Vec<(i64, String, String)> = expected
                .iter()
                .enumerate()
                .map(|(v, (id, payload))| (v as i64, id.clone(), payload.clone()))
                .collect();
            assert_eq!(got, want, "stream {stream} after the restart");
            self.client.note(format!(
                "ESCAN {stream} - + -> {} events {reply:?}",
                got.len()
            ));
        }
        // Every server-generated id and one client-chosen id, by id.
        let mut ids: Vec<String> = model.values().map(|events| events[0].0.clone()).collect();
        ids.push(model[ORDERS][ORDERS_EVENTS as usize - 1].0.clone());
        for id in ids {
            let reply = self.call(&["EGET", &id]).await;
            assert_eq!(text(field(&reply, "event_id")), id, "EGET {id}: {reply:?}");
            self.client.note(format!("EGET {id} -> {reply:?}"));
        }
    }

    /// A read request, retried on a new connection until answered.
    async fn call(&mut self, args: &[&str]) -> Frame {
        loop {
            self.client.ensure_connected().await;
            if self.client.send(&request(args)).await.is_ok()
                && let Ok(frame) = self.client.read(REPLY_TIMEOUT).await
            {
                return frame;
            }
            self.client.disconnect(&format!("{} unanswered", args[0]));
        }
    }
}

async fn writer(seed: u64, knobs: Knobs, log: Log, crash: CrashRequest) -> turmoil::Result {
    let mut w = Writer {
        client: Client::new(log),
        crash,
        model: Model::new(),
        retries: BTreeMap::new(),
    };
    let a = |stream, version, explicit| Append::new(seed, stream, version, explicit);
    let ms = Duration::from_millis;
    w.client.connect().await;
    // Server-generated ids (timestamps are explicit, so the ids come from the seeded Env).
    for stream in [ORDERS, "users", "audit"] {
        w.batch(&[a(stream, 0, false)], Fault::None).await;
    }
    // Pipelined, client-chosen ids.
    let batch: Vec<_> = (1..=4).map(|v| a(ORDERS, v, true)).collect();
    w.batch(&batch, Fault::None).await;
    // A held link: replies arrive late, nothing is lost.
    let batch: Vec<_> = (1..=3).map(|v| a("users", v, true)).collect();
    w.batch(&batch, Fault::Hold(ms(knobs.hold_ms))).await;
    // A partition: the request or its reply is dropped, the stream stalls, the writer times
    // out and retries on a new connection.
    let fault = Fault::Partition {
        after: ms(knobs.partition_after_ms),
        cut: ms(knobs.partition_ms),
    };
    w.batch(&[a(ORDERS, 5, true)], fault).await;
    // A crash of the server somewhere in a pipelined batch.
    let batch = vec![
        a(ORDERS, 6, true),
        a("users", 4, true),
        a(ORDERS, 7, true),
        a("audit", 1, true),
        a(ORDERS, 8, true),
        a("audit", 2, true),
    ];
    w.batch(&batch, Fault::Crash(ms(knobs.crash_after_ms)))
        .await;
    // The crash may come after every reply did; the next phase starts once it happened.
    while w.crash.done.get() == 0 {
        tokio::time::sleep(ms(1)).await;
    }
    // After the restart.
    w.batch(&[a(ORDERS, 9, true), a("users", 5, true)], Fault::None)
        .await;
    w.verify().await;
    let summary = format!(
        "writer done: retries {:?}, {} reconnects",
        w.retries, w.client.reconnects
    );
    w.client.note(summary);
    Ok(())
}

// ------------------------------------------------------------------ the reader

/// Subscribes to [`ORDERS`] from version 0 and reads until it has every version, once each, in
/// order; after losing the connection it subscribes again from the next version.
async fn reader(knobs: Knobs, log: Log) -> turmoil::Result {
    let mut client = Client::new(log);
    tokio::time::sleep(Duration::from_millis(knobs.reader_start_ms)).await;
    let mut next = 0u64;
    'subscribe: while next < ORDERS_EVENTS {
        client.ensure_connected().await;
        let from = next.to_string();
        if client
            .send(&request(&["ESUB", ORDERS, "FROM", &from]))
            .await
            .is_err()
        {
            client.disconnect("ESUB not sent");
            continue;
        }
        while next < ORDERS_EVENTS {
            let frame = match client.read(IDLE_TIMEOUT).await {
                Ok(frame) => frame,
                Err(err) => {
                    client.disconnect(&format!("{:?} at version {next}", err.kind()));
                    continue 'subscribe;
                }
            };
            let line = format!("{frame:?}");
            if let Frame::Push(items) = &frame
                && items[0].as_str() == Some("message")
            {
                let event = &items[3];
                let version = int(field(event, "stream_version")) as u64;
                assert_eq!(version, next, "subscription skipped or repeated: {frame:?}");
                next += 1;
            }
            client.note(line);
        }
    }
    let summary = format!("reader done: {} reconnects", client.reconnects);
    client.note(summary);
    Ok(())
}

// ------------------------------------------------------------------ the server host

fn store_config() -> StoreConfig {
    StoreConfig {
        partition_count: 8,
        bucket_count: 1,
        segment_size_bytes: 64 * 1024,
        max_transaction_bytes: 16 * 1024,
        ..StoreConfig::default()
    }
}

/// One boot of the server: open (recovering) the store on the host's turmoil-fs disk and serve
/// until the host is crashed.
async fn server(seed: u64, boot: u64, fs: Fs, log: Log) -> turmoil::Result {
    let env = TokioEnv::new(mix(seed, 10_000 + boot));
    let disk = TurmoilDisk::new(fs);
    let (db, report) = Db::open(&env, &disk, Path::new(DATA_DIR), store_config())?;
    log.borrow_mut().push(format!("boot {boot}: {report:?}"));
    let listener = TurmoilListener::bind(PORT).await?;
    serve(
        listener,
        env,
        db,
        ServerConfig::default(),
        std::future::pending(),
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ the driver

fn run(seed: u64, latency: Latency) -> Outcome {
    let knobs = Knobs::of(seed);
    let mut sim = turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(match latency {
            Latency::Scheduled => Duration::from_millis(1),
            Latency::PerMessage => Duration::from_millis(knobs.max_latency_ms),
        })
        .build();
    let fs = Fs::builder()
        .seed(mix(seed, 20_000))
        .block_size(512)
        .sync_probability(knobs.sync_probability)
        .build();
    let server_log: Log = Rc::default();
    let writer_log: Log = Rc::default();
    let reader_log: Log = Rc::default();
    let crash: CrashRequest = Rc::default();
    let boots = Rc::new(Cell::new(0u64));

    {
        let (fs, log, boots) = (fs.clone(), server_log.clone(), boots.clone());
        sim.host("server", move || {
            let boot = boots.get();
            boots.set(boot + 1);
            server(seed, boot, fs.clone(), log.clone())
        });
    }
    sim.client(
        "writer",
        writer(seed, knobs, writer_log.clone(), crash.clone()),
    );
    sim.client("reader", reader(knobs, reader_log.clone()));

    let mut latency_period = None;
    let mut crash_at = None;
    let mut restart_at = None;
    let mut crashes = 0;
    loop {
        let period = sim.elapsed().as_millis() as u64 / knobs.latency_period_ms;
        if latency == Latency::Scheduled && latency_period != Some(period) {
            latency_period = Some(period);
            let writer = Knobs::link_latency(seed, 0, period);
            let reader = Knobs::link_latency(seed, 1, period);
            sim.set_link_latency("writer", "server", writer);
            sim.set_link_latency("reader", "server", reader);
            server_log.borrow_mut().push(format!(
                "latency period {period}: writer {writer:?}, reader {reader:?}"
            ));
        }
        fs.set_now(sim.elapsed());
        if sim
            .step()
            .unwrap_or_else(|err| panic!("seed {seed}: {err}"))
        {
            break;
        }
        let now = sim.elapsed();
        if let Some(after) = crash.request.take() {
            crash_at = Some(now + Duration::from_millis(after));
        }
        if crash_at.is_some_and(|at| now >= at) {
            crash_at = None;
            // The runtime is dropped first (its blocking pool joined), then the disk loses what
            // was never synced.
            sim.crash("server");
            fs.crash();
            crashes += 1;
            crash.done.set(crashes);
            server_log.borrow_mut().push(format!("crash at {now:?}"));
            restart_at = Some(now + Duration::from_millis(knobs.downtime_ms));
        }
        if restart_at.is_some_and(|at| now >= at) {
            restart_at = None;
            sim.bounce("server");
        }
    }
    let transcript = Transcript {
        server: server_log.take(),
        writer: writer_log.take(),
        reader: reader_log.take(),
    };
    Outcome {
        hash: transcript.hash(),
        transcript,
        crashes,
        boots: boots.get(),
        sim_elapsed: sim.elapsed(),
    }
}

/// Runs each seed twice and requires identical transcripts.
fn double_run(seeds: std::ops::RangeInclusive<u64>) {
    for seed in seeds {
        let started = WallInstant::now();
        let first = run(seed, Latency::Scheduled);
        let second = run(seed, Latency::Scheduled);
        for (name, a, b) in [
            (
                "server",
                &first.transcript.server,
                &second.transcript.server,
            ),
            (
                "writer",
                &first.transcript.writer,
                &second.transcript.writer,
            ),
            (
                "reader",
                &first.transcript.reader,
                &second.transcript.reader,
            ),
        ] {
            if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
                if let Some(dir) = std::env::var_os("TIER2_DUMP") {
                    for (run, lines) in [("first", a), ("second", b)] {
                        let path = Path::new(&dir).join(format!("seed-{seed}-{name}-{run}.txt"));
                        std::fs::write(path, lines.join("\n")).unwrap();
                    }
                }
                panic!(
                    "seed {seed}: the {name} transcripts differ at line {i}:\n  first:  {:?}\n  second: {:?}",
                    a.get(i),
                    b.get(i)
                );
            }
        }
        assert_eq!(first.hash, second.hash, "seed {seed}");
        assert_eq!(first.crashes, 1, "seed {seed}: the crash was not injected");
        eprintln!(
            "seed {seed:2}: hash {:016x} (equal twice), {} crash, {} boots, {:?} simulated, \
             {:?} wall for both runs; {}",
            first.hash,
            first.crashes,
            first.boots,
            first.sim_elapsed,
            started.elapsed(),
            first.summary(),
        );
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn seeds_1_to_5_run_identically_twice() {
    double_run(1..=5);
}

#[test]
fn seeds_6_to_10_run_identically_twice() {
    double_run(6..=10);
}

#[test]
fn seeds_11_to_15_run_identically_twice() {
    double_run(11..=15);
}

#[test]
fn seeds_16_to_20_run_identically_twice() {
    double_run(16..=20);
}

/// Different seeds take different paths (otherwise "equal twice" would prove nothing).
#[test]
fn different_seeds_give_different_transcripts() {
    assert_ne!(
        run(1, Latency::Scheduled).hash,
        run(2, Latency::Scheduled).hash
    );
}

/// The faults land where they are meant to on enough seeds: every seed crashes the server once;
/// on some the partition loses a request or reply and on some the crash lands before the
/// batch's replies, so the writer retries after each.
#[test]
fn faults_are_exercised_across_the_seeds() {
    let (mut partition, mut crash) = (0, 0);
    for seed in 1..=20 {
        let outcome = run(seed, Latency::Scheduled);
        assert_eq!(outcome.crashes, 1, "seed {seed}");
        assert_eq!(outcome.boots, 2, "seed {seed}");
        let summary = outcome.summary();
        partition += u32::from(summary.contains("\"partition\""));
        crash += u32::from(summary.contains("\"crash\""));
    }
    eprintln!("retries after a partition on {partition} seeds, after a crash on {crash} seeds");
    assert!(partition >= 4 && crash >= 2, "{partition} {crash}");
}

/// turmoil's per-message latency draw (`min/max_message_latency`): every invariant still holds
/// on every seed (each run checks them), but runs are not repeatable, because the order in
/// which the server's connections send within a tick depends on when tokio's blocking pool
/// finishes an fsync (real time), and each segment draws its latency from one shared RNG in
/// send order. Reports how many seeds happened to repeat; asserts nothing about it.
#[test]
fn per_message_latency_keeps_acknowledged_appends_but_does_not_repeat() {
    let mut repeated = 0;
    for seed in 1..=20 {
        let first = run(seed, Latency::PerMessage);
        let second = run(seed, Latency::PerMessage);
        assert_eq!((first.crashes, second.crashes), (1, 1), "seed {seed}");
        if first.hash == second.hash {
            repeated += 1;
        }
    }
    eprintln!("per-message latency: {repeated} of 20 seeds gave the same transcript twice");
}

/// The adapter really routes through turmoil-fs's durability model: what was fsynced (data and
/// directory entry) survives a crash, what was only written does not.
#[test]
fn turmoil_disk_keeps_synced_data_and_loses_the_rest() {
    let fs = Fs::builder().seed(7).build();
    let disk = TurmoilDisk::new(fs.clone());
    let dir = Path::new("/d");
    disk.create_dir_all(dir).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
    {
        let synced = disk.open(&dir.join("synced"), OpenMode::CreateNew).unwrap();
        synced.write_at(0, b"durable").unwrap();
        synced.sync().unwrap();
        synced.write_at(7, b" and not").unwrap();
        let unsynced_entry = disk
            .open(&dir.join("no-entry"), OpenMode::CreateNew)
            .unwrap();
        unsynced_entry.write_at(0, b"x").unwrap();
        disk.sync_dir(dir).unwrap();
        let late = disk.open(&dir.join("late"), OpenMode::CreateNew).unwrap();
        late.write_at(0, b"y").unwrap();
        late.sync().unwrap();
        assert_eq!(synced.len().unwrap(), 15);
        assert_eq!(&*synced.map().unwrap(), b"durable and not");
    }
    fs.crash();
    assert_eq!(disk.list_dir(dir).unwrap(), ["no-entry", "synced"]);
    let synced = disk.open(&dir.join("synced"), OpenMode::Read).unwrap();
    let mut buf = [0; 7];
    synced.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"durable");
    assert_eq!(synced.len().unwrap(), 7);
    // The entry was synced, its data never was.
    let no_entry = disk.open(&dir.join("no-entry"), OpenMode::Read).unwrap();
    assert_eq!(no_entry.len().unwrap(), 0);
    assert!(!disk.exists(&dir.join("late")));
}
