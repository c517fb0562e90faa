//! The inodes of the simulated tree: files with written and durable bytes, and directories
//! with current and durable entries.

use std::collections::{BTreeMap, BTreeSet};

/// An inode number. Never reused, so a stale number can only miss, never alias.
pub(super) type Ino = u64;

pub(super) enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// A file's bytes as readers see them now (`written`) and as a crash would find them
/// (`durable`), with what happened in between.
///
/// Invariant: applying `pending` in order to `durable` gives `written`. `sync` and
/// `crash` rely on it to persist or replay operations without copying whole files.
#[derive(Default)]
pub(super) struct FileNode {
    written: Vec<u8>,
    pub(super) durable: Vec<u8>,
    pub(super) pending: Vec<PendingOp>,
    /// Handles of the current generation that point here; they keep an unlinked file alive,
    /// as on POSIX.
    pub(super) open_handles: u64,
    /// Directory entries, current or durable, that name this file, counted over every
    /// directory present. Exact after each full garbage collection and kept so in between
    /// (see [`State::release`](super::state::State::release)), so closing the last handle
    /// can tell in O(1) whether the file is still reachable.
    pub(super) links: u64,
    /// `written` as the last `map` shared it, while it is unchanged: mapping a sealed segment
    /// or an index (every one of them at each recovery) then costs no copy. Cleared by every
    /// change of `written`, which goes through [`FileNode::written_mut`].
    mapped: Option<std::sync::Arc<[u8]>>,
}

impl FileNode {
    /// An empty file named by `links` directory entries.
    pub(super) fn with_links(links: u64) -> FileNode {
        FileNode {
            links,
            ..FileNode::default()
        }
    }

    /// The bytes reads see now.
    pub(super) fn written(&self) -> &Vec<u8> {
        &self.written
    }

    /// `written`, to change: forgets the shared copy of it.
    pub(super) fn written_mut(&mut self) -> &mut Vec<u8> {
        self.mapped = None;
        &mut self.written
    }

    /// `written` as shared bytes, copied only when it changed since the last call.
    pub(super) fn mapped(&mut self) -> std::sync::Arc<[u8]> {
        let written = &self.written;
        self.mapped
            .get_or_insert_with(|| std::sync::Arc::from(written.as_slice()))
            .clone()
    }

    /// XORs the byte at `offset` with `xor` wherever it is stored: written, durable, and the
    /// pending writes that cover it (so replaying them keeps the damage). `false`, changing
    /// nothing, if `offset` is past both the written and the durable end.
    pub(super) fn corrupt(&mut self, offset: usize, xor: u8) -> bool {
        if offset >= self.written.len() && offset >= self.durable.len() {
            return false;
        }
        self.mapped = None;
        for bytes in [&mut self.written, &mut self.durable] {
            if let Some(byte) = bytes.get_mut(offset) {
                *byte ^= xor;
            }
        }
        for op in &mut self.pending {
            if let PendingOp::Write {
                offset: start,
                bytes,
            } = op
                && let Some(byte) = offset.checked_sub(*start).and_then(|i| bytes.get_mut(i))
            {
                *byte ^= xor;
            }
        }
        true
    }
}

/// A directory's entries now, and as the last `sync_dir` left them.
#[derive(Default)]
pub(super) struct DirNode {
    pub(super) entries: BTreeMap<String, Ino>,
    pub(super) durable: BTreeMap<String, Ino>,
    /// Names whose current entry may differ from the durable one: what the next `sync_dir`
    /// compares, instead of every entry of a directory that may hold hundreds of segments.
    changed: BTreeSet<String>,
}

impl DirNode {
    /// Names `ino` as `name` (current, not durable).
    pub(super) fn insert(&mut self, name: String, ino: Ino) {
        self.entries.insert(name.clone(), ino);
        self.changed.insert(name);
    }

    /// Removes the current entry `name`.
    pub(super) fn remove(&mut self, name: &str) {
        if self.entries.remove(name).is_some() {
            self.changed.insert(name.to_owned());
        }
    }

    /// Back to the durable entries, as a crash leaves them.
    pub(super) fn restore(&mut self) {
        self.entries = self.durable.clone();
        self.changed.clear();
    }

    /// Makes the current entries durable. Returns the files named anew (`gained`) and the
    /// ones only the old durable entries named (`lost`), by name order.
    pub(super) fn persist(&mut self) -> (Vec<Ino>, Vec<Ino>) {
        let mut gained = Vec::new();
        let mut lost = Vec::new();
        for name in std::mem::take(&mut self.changed) {
            let now = self.entries.get(&name).copied();
            let before = match now {
                Some(child) => self.durable.insert(name, child),
                None => self.durable.remove(&name),
            };
            if before != now {
                gained.extend(now);
                lost.extend(before);
            }
        }
        (gained, lost)
    }
}

/// One change to a file since its last sync, in the order it happened.
pub(super) enum PendingOp {
    /// The bytes as they landed (after any misdirection), at `offset`. Never empty.
    Write {
        offset: usize,
        bytes: Vec<u8>,
    },
    Truncate {
        len: usize,
    },
}

impl PendingOp {
    /// Applies the whole operation to `content`.
    pub(super) fn apply_to(&self, content: &mut Vec<u8>) {
        match self {
            PendingOp::Write { offset, bytes } => write_into(content, *offset, bytes),
            PendingOp::Truncate { len } => content.resize(*len, 0),
        }
    }
}

/// Writes `bytes` at `offset`, zero-filling any gap past the end, like `pwrite`. An empty
/// `bytes` changes nothing, not even the length (a torn write that kept no sector).
pub(super) fn write_into(content: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let end = offset + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[offset..end].copy_from_slice(bytes);
}
