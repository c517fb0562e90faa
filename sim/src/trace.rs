//! The run's trace: every history event as one JSON line, folded into a running XXH3-64
//! hash, and kept in memory only when asked for (`replay --trace FILE`).
//!
//! The hash covers the canonical JSON of each line (struct fields in declaration order, maps
//! sorted), never `DefaultHasher`, so it is the same on every machine and Rust release. The
//! executor keeps its own hash of every scheduling decision; [`Trace::finish`] folds that in,
//! so `replay` compares one number that covers both what was decided and what was observed.

use serde::Serialize;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = Fnv64::default();
    hash.write(bytes);
    hash.0
}

/// A running FNV-1a 64 hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv64(pub u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(FNV_OFFSET_BASIS)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }

    pub fn write_u64(&mut self, value: u64) {
        self.write(&value.to_le_bytes());
    }
}

/// The trace's running hash: XXH3-64 (`xxhash-rust`, default secret, streaming), a published
/// function whose value is the same on every machine. It replaced FNV-1a here, whose
/// multiplication per byte cost a twentieth of a seed's time (docs/simulation.md, Speed).
#[derive(Clone, Default)]
pub struct TraceHash(xxhash_rust::xxh3::Xxh3Default);

impl TraceHash {
    pub fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything written so far.
    pub fn value(&self) -> u64 {
        self.0.digest()
    }
}

impl std::fmt::Debug for TraceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceHash({:016x})", self.value())
    }
}

/// Feeds whatever is written into a running hash.
struct HashWriter<'a>(&'a mut TraceHash);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a run does with its trace lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceMode {
    /// Counts them and writes nothing: no JSON, no hash (the run's hash is then 0). For runs
    /// judged only by their checkers, such as a soak's seeds and a shrink's candidates; a line
    /// only records what already happened, so the run itself is the same, and its replay
    /// command hashes the trace again.
    Off,
    /// Hashes each line as it is written, keeping none (`run`).
    #[default]
    Hash,
    /// Hashes and keeps every line (`replay --trace FILE`); the hash is the same as `Hash`'s.
    Keep,
}

/// The running hash and, optionally, every line.
#[derive(Debug, Default)]
pub struct Trace {
    mode: TraceMode,
    hash: TraceHash,
    lines: Option<Vec<String>>,
    count: u64,
    /// Where [`Trace::record_written`] has its line written, kept between lines.
    scratch: Vec<u8>,
}

impl Trace {
    /// A trace that keeps its lines (for writing a trace file), only hashes them, or neither.
    pub fn new(mode: TraceMode) -> Trace {
        Trace {
            mode,
            hash: TraceHash::default(),
            lines: (mode == TraceMode::Keep).then(Vec::new),
            count: 0,
            scratch: Vec::new(),
        }
    }

    /// Folds one event into the hash (and keeps it as a line if asked to). Without kept
    /// lines the JSON is hashed as it is written, never held in a string.
    pub fn record(&mut self, event: &impl Serialize) {
        self.count += 1;
        if self.mode == TraceMode::Off {
            return;
        }
        match &mut self.lines {
            Some(lines) => {
                let line = serde_json::to_string(event).expect("trace events serialize");
                self.hash.write(line.as_bytes());
                lines.push(line);
            }
            None => serde_json::to_writer(HashWriter(&mut self.hash), event)
                .expect("trace events serialize"),
        }
        self.hash.write(b"\n");
    }

    /// [`Trace::record`] of a line that `write` writes as JSON itself: it must write exactly
    /// the bytes `serde_json` would (see `history::json`, whose tests compare them).
    pub fn record_written(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.count += 1;
        if self.mode == TraceMode::Off {
            return;
        }
        self.scratch.clear();
        write(&mut self.scratch);
        self.hash.write(&self.scratch);
        if let Some(lines) = &mut self.lines {
            lines.push(String::from_utf8(self.scratch.clone()).expect("JSON is UTF-8"));
        }
        self.hash.write(b"\n");
    }

    /// Lines recorded so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hash of the lines so far, without the executor's.
    pub fn hash(&self) -> u64 {
        self.hash.value()
    }

    /// The final hash: the lines' hash with the executor's folded in (0 when the trace is
    /// [`TraceMode::Off`]).
    pub fn finish(&self, executor_hash: u64) -> u64 {
        if self.mode == TraceMode::Off {
            return 0;
        }
        let mut hash = self.hash.clone();
        hash.write(&executor_hash.to_le_bytes());
        hash.value()
    }

    /// The kept lines (empty unless kept).
    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn trace_hash_is_xxh3_64() {
        // Published XXH3-64 values (default secret, seed 0), and a streamed input longer than
        // the hasher's internal buffer hashes as it would in one piece.
        assert_eq!(TraceHash::default().value(), 0x2d06_8005_38d3_94c2);
        let mut a = TraceHash::default();
        a.write(b"a");
        assert_eq!(a.value(), 0xe6c6_32b6_1e96_4e1f);
        let long: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut streamed = TraceHash::default();
        for piece in long.chunks(77) {
            streamed.write(piece);
        }
        assert_eq!(streamed.value(), xxhash_rust::xxh3::xxh3_64(&long));
    }

    #[test]
    fn the_hash_does_not_depend_on_keeping_lines() {
        let mut kept = Trace::new(TraceMode::Keep);
        let mut hashed = Trace::new(TraceMode::Hash);
        let mut off = Trace::new(TraceMode::Off);
        for i in 0..10u32 {
            kept.record(&("op", i));
            hashed.record(&("op", i));
            off.record(&("op", i));
            let written =
                |out: &mut Vec<u8>| out.extend_from_slice(format!("[\"w\",{i}]").as_bytes());
            kept.record_written(written);
            hashed.record_written(written);
            off.record_written(|_| panic!("an Off trace writes no line"));
        }
        assert_eq!(kept.finish(7), hashed.finish(7));
        assert_ne!(kept.finish(7), kept.finish(8));
        assert_eq!(kept.take_lines().len(), 20);
        assert!(hashed.take_lines().is_empty());
        assert_eq!((off.count(), off.finish(7)), (20, 0));
    }
}
