//! The writer: appends the seed's batches, retrying each on a new connection until every reply
//! arrives, then (after the final crash) reads everything back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use net::Frame;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::{Client, field, int, is_error, text};
use crate::mix;
use crate::transcript::Transcript;
use crate::workload::{self, Intended, STREAMS};

/// How long the writer waits for one reply before treating the connection as lost. Shorter
/// than most clogs, so a clog usually costs a retry.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(300);
/// Longest pause between two batches.
const MAX_THINK_MS: u64 = 30;

/// An acknowledged append: what the server said it stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub event_id: String,
    pub payload: String,
    pub timestamp: u64,
}

/// Per stream, the acknowledged events by version.
pub type Model = BTreeMap<&'static str, Vec<Acked>>;

pub struct WriterReport {
    pub model: Model,
    /// Batches sent again, by cause: the `io::ErrorKind` that ended the connection, or the
    /// error code of a retryable refusal.
    pub retries: BTreeMap<String, u64>,
    pub reconnects: u64,
}

/// Refusals that mean "try again": nothing was written (`TRYAGAIN`), or an fsync failed and
/// the append may or may not be durable (`UNKNOWNOUTCOME`). Both follow a power cut.
const RETRYABLE: [&str; 2] = ["TRYAGAIN", "UNKNOWNOUTCOME"];
/// Pause before sending a refused batch again (the server is powerless until it is killed).
const REFUSED_RETRY: Duration = Duration::from_millis(20);

struct Writer {
    client: Client,
    model: Model,
    retries: BTreeMap<String, u64>,
    /// Acknowledgements received in attempts that failed later in their batch, by stream and
    /// version: the attempt that completes must acknowledge the same.
    early: BTreeMap<(&'static str, u64), Acked>,
}

pub async fn run(seed: u64, server: SocketAddr, log: Transcript) -> WriterReport {
    let mut writer = Writer {
        client: Client::new(server, "writer", log),
        model: Model::new(),
        retries: BTreeMap::new(),
        early: BTreeMap::new(),
    };
    let mut think = ChaCha8Rng::seed_from_u64(mix(seed, 200));
    for batch in workload::batches(seed) {
        let replies = writer.append_until_answered(&batch).await;
        for (intended, reply) in batch.iter().zip(&replies) {
            writer.acknowledge(intended, reply);
        }
        let pause = think.random_range(0..=MAX_THINK_MS);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
    let retries = writer.retries;
    writer.client.note(format!("done: retries {retries:?}"));
    WriterReport {
        model: writer.model,
        retries,
        reconnects: writer.client.reconnects,
    }
}

impl Writer {
    /// Sends `batch` pipelined (one write) until one attempt gets a success reply for every
    /// append. Each retry sends the whole batch with the same event ids: what the server
    /// already stored is answered idempotently.
    async fn append_until_answered(&mut self, batch: &[Intended]) -> Vec<Frame> {
        let bytes: Vec<u8> = batch.iter().flat_map(Intended::request).collect();
        loop {
            self.client.ensure_connected().await;
            let (replies, lost) = self.attempt(&bytes, batch.len()).await;
            // Replies that did arrive are acknowledgements even if the batch is sent again.
            self.remember_early(batch, &replies);
            if let Some(why) = lost {
                self.client.disconnect(&why);
                continue;
            }
            let Some(refusal) = replies.iter().find(|reply| is_error(reply)) else {
                return replies;
            };
            let code = error_code(refusal);
            assert!(
                RETRYABLE.contains(&code.as_str()),
                "{batch:?} refused: {refusal:?}"
            );
            self.client.note(format!("refused, retrying: {refusal:?}"));
            *self.retries.entry(code).or_default() += 1;
            madsim::time::sleep(REFUSED_RETRY).await;
        }
    }

    /// One send and the replies that arrived; if the connection was lost or went silent
    /// before the last one, also why (and the retry is counted).
    async fn attempt(&mut self, bytes: &[u8], count: usize) -> (Vec<Frame>, Option<String>) {
        let mut replies = Vec::new();
        let mut failure = self.client.send(bytes).await.err();
        while failure.is_none() && replies.len() < count {
            match self.client.read(REPLY_TIMEOUT).await {
                Ok(reply) => replies.push(reply),
                Err(err) => failure = Some(err),
            }
        }
        let lost = failure.map(|err| {
            *self.retries.entry(format!("{:?}", err.kind())).or_default() += 1;
            format!("{:?} after {}/{count} replies", err.kind(), replies.len())
        });
        (replies, lost)
    }

    fn remember_early(&mut self, batch: &[Intended], replies: &[Frame]) {
        for (intended, reply) in batch.iter().zip(replies) {
            if !is_error(reply) {
                let acked = read_ack(intended, reply);
                let key = (intended.stream, intended.version);
                let first = self.early.entry(key).or_insert_with(|| acked.clone());
                assert_eq!(*first, acked, "{key:?} acknowledged twice, differently");
            }
        }
    }

    /// Checks the reply is the intended event at the intended version and records it.
    fn acknowledge(&mut self, intended: &Intended, reply: &Frame) {
        let acked = read_ack(intended, reply);
        let key = (intended.stream, intended.version);
        if let Some(early) = self.early.get(&key) {
            assert_eq!(
                *early, acked,
                "{key:?}: the retry acknowledged something else"
            );
        }
        let events = self.model.entry(intended.stream).or_default();
        assert_eq!(
            events.len() as u64,
            intended.version,
            "{key:?} acknowledged out of order"
        );
        events.push(acked);
        let line = format!("ack {} v{}: {reply:?}", intended.stream, intended.version);
        self.client.note(line);
    }
}

/// The code of an error reply: its first word.
fn error_code(reply: &Frame) -> String {
    let text = match reply {
        Frame::SimpleError(bytes) | Frame::BlobError(bytes) => String::from_utf8_lossy(bytes),
        other => panic!("not an error: {other:?}"),
    };
    text.split(' ').next().unwrap_or_default().to_owned()
}

/// A success reply to `intended`, which must be for its id at its version.
fn read_ack(intended: &Intended, reply: &Frame) -> Acked {
    let what = format!("{} v{}", intended.stream, intended.version);
    assert!(!is_error(reply), "{what} refused: {reply:?}");
    assert_eq!(
        int(field(reply, "stream_version")),
        intended.version,
        "{what}: {reply:?}"
    );
    let event_id = text(field(reply, "event_id"));
    assert_eq!(event_id, intended.event_id.to_string(), "{what}: {reply:?}");
    Acked {
        event_id,
        payload: intended.payload.clone(),
        timestamp: int(field(reply, "timestamp")),
    }
}

/// Reads every stream back (`ESCAN`) and every event by id (`EGET`): each stream must hold
/// exactly the acknowledged events, gapless, as acknowledged. Returns the events checked.
pub async fn verify(seed: u64, server: SocketAddr, model: Model, log: Transcript) -> u64 {
    let mut client = Client::new(server, "checker", log);
    let mut checked = 0;
    for (stream, count) in STREAMS {
        let acked = model.get(stream).cloned().unwrap_or_default();
        assert_eq!(
            acked.len() as u64,
            count,
            "{stream}: not every append was acknowledged"
        );
        let intended = workload::stream_events(seed, stream);
        let stored = scan(&mut client, stream).await;
        assert_eq!(
            stored, acked,
            "{stream}: stored events differ from the acknowledged ones"
        );
        for (event, want) in acked.iter().zip(&intended) {
            assert_eq!(
                event.event_id,
                want.event_id.to_string(),
                "{stream}: not the intended id"
            );
            assert_eq!(
                event.payload, want.payload,
                "{stream}: not the intended payload"
            );
            let reply = client.call(&["EGET", &event.event_id], REPLY_TIMEOUT).await;
            assert_eq!(read_event(&reply), *event, "EGET {}", event.event_id);
            checked += 1;
        }
        client.note(format!("{stream}: {} events as acknowledged", acked.len()));
    }
    checked
}

/// The whole stream, checking versions run 0, 1, 2, … without gaps.
async fn scan(client: &mut Client, stream: &str) -> Vec<Acked> {
    let reply = client
        .call(&["ESCAN", stream, "-", "+"], REPLY_TIMEOUT)
        .await;
    assert!(!is_error(&reply), "ESCAN {stream}: {reply:?}");
    assert_eq!(
        field(&reply, "has_more"),
        &Frame::Boolean(false),
        "ESCAN {stream}: {reply:?}"
    );
    let events = field(&reply, "events")
        .as_array()
        .unwrap_or_else(|| panic!("ESCAN {stream}: {reply:?}"));
    for (version, event) in events.iter().enumerate() {
        assert_eq!(
            int(field(event, "stream_version")),
            version as u64,
            "{stream}: a gap"
        );
        assert_eq!(text(field(event, "stream_id")), stream);
    }
    events.iter().map(read_event).collect()
}

fn read_event(event: &Frame) -> Acked {
    Acked {
        event_id: text(field(event, "event_id")),
        payload: text(field(event, "payload")),
        timestamp: int(field(event, "timestamp")),
    }
}
