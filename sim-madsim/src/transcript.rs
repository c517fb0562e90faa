//! [`Transcript`]: everything one run's nodes saw, in the order madsim ran it, hashed to compare
//! runs of the same seed.

use std::sync::{Arc, Mutex};

use madsim::time::TimeHandle;

/// One run's log, shared by every node (madsim runs one task at a time, so the interleaving of
/// lines is itself part of what must repeat). Clones share the lines.
#[derive(Clone, Default)]
pub struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Transcript {
    /// Appends `line`, stamped with the virtual time and who wrote it.
    pub fn note(&self, who: &str, line: impl AsRef<str>) {
        let at = TimeHandle::current().elapsed();
        let stamped = format!(
            "{:>10.3}ms {who}: {}",
            at.as_secs_f64() * 1e3,
            line.as_ref()
        );
        self.lines.lock().expect("transcript lock").push(stamped);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("transcript lock").clone()
    }

    /// FNV-1a over every line: a fixed algorithm, so hashes also compare across processes.
    pub fn hash(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for line in self.lines.lock().expect("transcript lock").iter() {
            for byte in line.bytes().chain(*b"\n") {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}
