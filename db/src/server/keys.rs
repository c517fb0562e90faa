//! The default partition keys of recently used streams.
//!
//! A stream's default key is the UUIDv5 of its id, a SHA-1: about a tenth of the server's
//! work on a small `EAPPEND`. Clients append to the same streams again and again, so the server
//! remembers the keys of the streams it saw last. The cache is a pure memo of a pure function:
//! a hit and a miss give the same key.

use std::sync::Mutex;

use crate::model::{PartitionKey, StreamId};
use crate::store::index::FixedMap;

/// Streams whose keys are remembered; past this the cache starts again empty. At most a few
/// MiB: each entry is a shared stream id and a 16-byte key.
const REMEMBERED: usize = 1 << 14;

#[derive(Default)]
pub(crate) struct PartitionKeys {
    known: Mutex<FixedMap<StreamId, PartitionKey>>,
}

impl PartitionKeys {
    /// The default partition key of `stream`.
    pub(crate) fn of(&self, stream: &StreamId) -> PartitionKey {
        if let Some(key) = self.lock().get(stream) {
            return *key;
        }
        let key = PartitionKey::for_stream(stream);
        let mut known = self.lock();
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(stream.clone(), key);
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FixedMap<StreamId, PartitionKey>> {
        self.known
            .lock()
            .expect("partition key cache lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_keys_are_the_computed_ones_also_past_the_limit() {
        let keys = PartitionKeys::default();
        for round in 0..2 {
            for n in 0..REMEMBERED + 10 {
                let stream = StreamId::new(&format!("s-{n}")).unwrap();
                assert_eq!(
                    keys.of(&stream),
                    PartitionKey::for_stream(&stream),
                    "round {round}"
                );
            }
            assert!(keys.lock().len() <= REMEMBERED);
        }
    }
}
