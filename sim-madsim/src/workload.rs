//! What the writer means to append, fixed by the seed before the run starts.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::client::request;
use crate::mix;

/// The streams and how many events each ends with (versions `0..count`).
pub const STREAMS: [(&str, u64); 3] = [("orders", 30), ("users", 20), ("audit", 14)];
/// The stream the subscriber follows.
pub const SUBSCRIBED: &str = "orders";
/// Most appends sent in one write (pipelined) before reading their replies.
const MAX_BATCH: usize = 4;

/// One append the writer means to make: this id and payload at this version of this stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intended {
    pub stream: &'static str,
    pub version: u64,
    /// Chosen by the client, so a retry of a lost reply is answered idempotently.
    pub event_id: Uuid,
    pub payload: String,
}

impl Intended {
    fn new(seed: u64, stream: &'static str, version: u64) -> Intended {
        let salt = stream
            .bytes()
            .fold(version, |acc, byte| mix(acc, u64::from(byte)));
        let bits = (u128::from(mix(seed, salt)) << 64) | u128::from(mix(seed, !salt));
        Intended {
            stream,
            version,
            event_id: uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid(),
            payload: format!("{stream}#{version}@{seed}"),
        }
    }

    /// `EAPPEND` with the expected version the writer knows, and no `TIMESTAMP`: the server
    /// takes madsim's simulated wall clock.
    pub fn request(&self) -> Vec<u8> {
        let expected = match self.version {
            0 => "empty".to_owned(),
            v => (v - 1).to_string(),
        };
        let id = self.event_id.to_string();
        request(&[
            "EAPPEND",
            self.stream,
            "Happened",
            "EVENT_ID",
            &id,
            "EXPECTED_VERSION",
            &expected,
            "PAYLOAD",
            &self.payload,
        ])
    }
}

/// Every intended event of `stream`, by version.
pub fn stream_events(seed: u64, stream: &'static str) -> Vec<Intended> {
    let count = STREAMS
        .iter()
        .find(|(name, _)| *name == stream)
        .map(|(_, count)| *count)
        .expect("a workload stream");
    (0..count)
        .map(|version| Intended::new(seed, stream, version))
        .collect()
}

/// The writer's plan: every intended event, streams interleaved at random but each in version
/// order, cut into pipelined batches of 1 to [`MAX_BATCH`].
pub fn batches(seed: u64) -> Vec<Vec<Intended>> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 100));
    let mut next = [0u64; STREAMS.len()];
    let mut order = Vec::new();
    loop {
        let open: Vec<usize> = (0..STREAMS.len())
            .filter(|&i| next[i] < STREAMS[i].1)
            .collect();
        let Some(&i) = open.choose(&mut rng) else {
            break;
        };
        order.push(Intended::new(seed, STREAMS[i].0, next[i]));
        next[i] += 1;
    }
    let mut batches = Vec::new();
    while !order.is_empty() {
        let size = rng.random_range(1..=MAX_BATCH).min(order.len());
        batches.push(order.drain(..size).collect());
    }
    batches
}
