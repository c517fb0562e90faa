//! The run's trace: a running FNV-1a 64 hash over every scheduling decision, plus the last
//! few entries kept for failure reports.
//!
//! The hash covers a fixed little-endian encoding of each entry, never `DefaultHasher`, whose
//! algorithm may change between Rust releases. Entries are formatted only when asked for, so
//! a poll costs a few multiplications, not an allocation.

use std::collections::VecDeque;

use db::env::Instant;

use super::TaskId;

/// Entries kept for [`Trace::tail`].
const TAIL_LEN: usize = 64;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub(super) struct Trace {
    hash: u64,
    /// Whether entries are folded into `hash`.
    hashing: bool,
    tail: VecDeque<Entry>,
}

enum Entry {
    Poll {
        at: Instant,
        node: u32,
        task: TaskId,
        name: &'static str,
    },
    Crash {
        at: Instant,
        node: u32,
        dropped: usize,
    },
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            hash: FNV_OFFSET_BASIS,
            hashing: true,
            tail: VecDeque::with_capacity(TAIL_LEN),
        }
    }
}

impl Trace {
    pub(super) fn poll(&mut self, at: Instant, node: u32, task: TaskId, name: &'static str) {
        self.fold(&[0]);
        self.fold(&at.0.to_le_bytes());
        self.fold(&node.to_le_bytes());
        self.fold(&task.0.to_le_bytes());
        // The length keeps the encoding unambiguous between adjacent names.
        self.fold(&(name.len() as u64).to_le_bytes());
        self.fold(name.as_bytes());
        self.keep(Entry::Poll {
            at,
            node,
            task,
            name,
        });
    }

    pub(super) fn crash(&mut self, at: Instant, node: u32, dropped: usize) {
        self.fold(&[1]);
        self.fold(&at.0.to_le_bytes());
        self.fold(&node.to_le_bytes());
        self.fold(&(dropped as u64).to_le_bytes());
        self.keep(Entry::Crash { at, node, dropped });
    }

    pub(super) fn hash(&self) -> u64 {
        self.hash
    }

    pub(super) fn tail(&self) -> Vec<String> {
        self.tail.iter().map(Entry::render).collect()
    }

    pub(super) fn stop_hashing(&mut self) {
        self.hashing = false;
    }

    fn fold(&mut self, bytes: &[u8]) {
        if !self.hashing {
            return;
        }
        for &byte in bytes {
            self.hash = (self.hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }

    fn keep(&mut self, entry: Entry) {
        if self.tail.len() == TAIL_LEN {
            self.tail.pop_front();
        }
        self.tail.push_back(entry);
    }
}

impl Entry {
    fn render(&self) -> String {
        let time = |at: &Instant| format!("{}.{:09}s", at.0 / 1_000_000_000, at.0 % 1_000_000_000);
        match self {
            Entry::Poll {
                at,
                node,
                task,
                name,
            } => format!("t={} node={node} poll task={} {name}", time(at), task.0),
            Entry::Crash { at, node, dropped } => {
                format!("t={} node={node} crash dropped={dropped}", time(at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_matches_published_fnv1a_vectors() {
        let hash_of = |bytes: &[u8]| {
            let mut trace = Trace::default();
            trace.fold(bytes);
            trace.hash()
        };
        assert_eq!(hash_of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash_of(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn without_hashing_the_tail_is_kept_and_the_hash_stays() {
        let mut trace = Trace::default();
        trace.stop_hashing();
        trace.poll(Instant(1), 0, TaskId(7), "worker");
        trace.crash(Instant(2), 0, 1);
        assert_eq!(trace.hash(), FNV_OFFSET_BASIS);
        assert_eq!(trace.tail().len(), 2);
    }

    #[test]
    fn tail_keeps_the_latest_entries_in_order() {
        let mut trace = Trace::default();
        for i in 0..(TAIL_LEN as u64 + 3) {
            trace.poll(Instant(i * 1_500_000_000), 1, TaskId(i), "worker");
        }
        let tail = trace.tail();
        assert_eq!(tail.len(), TAIL_LEN);
        assert_eq!(tail[0], "t=4.500000000s node=1 poll task=3 worker");
    }
}
