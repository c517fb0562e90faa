//! [`State`]: everything a [`SimDisk`](super::SimDisk) and its files share behind one mutex:
//! the tree, the seeded generator, the power switch, and the crash model.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::faults::{FaultConfig, FaultCounts};
use super::node::{DirNode, FileNode, Ino, Node, PendingOp, write_into};

/// The directory `/` resolves to.
pub(super) const ABSOLUTE_ROOT: Ino = 0;
/// The directory relative paths resolve from (the simulated working directory).
pub(super) const RELATIVE_ROOT: Ino = 1;

/// Whether the simulated machine still has power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Power {
    On,
    /// A cut is armed: `remaining` more mutating operations may succeed; the one after fails.
    Armed {
        remaining: u64,
    },
    /// The cut happened: everything fails until `crash()`.
    Off,
}

pub(super) struct State {
    /// The only source of randomness, so one seed decides every fault.
    rng: ChaCha8Rng,
    pub(super) faults: FaultConfig,
    pub(super) counts: FaultCounts,
    pub(super) power: Power,
    /// Bumped by every crash; handles from an older generation are stale.
    pub(super) generation: u64,
    pub(super) io_time_ns: u64,
    pub(super) nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    /// Sum of the written lengths of all live files, kept up to date so the capacity check
    /// is O(1) per write.
    pub(super) used_bytes: u64,
    /// Whether the first path was seen (its parent chain was made to exist, durably).
    pub(super) rooted: bool,
    /// Mounted read-only: every change fails with `EROFS`; reads and syncs still work.
    pub(super) read_only: bool,
}

/// Locks the state. A panic while holding the lock can only come from a failed assertion in
/// a test; recovering the guard keeps `Drop` of other handles from panicking again.
pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The error every operation returns while the power is off.
pub(super) fn power_loss() -> io::Error {
    io::Error::other("simulated power loss: the disk is off until SimDisk::crash()")
}

/// `EIO`, as a real disk reports a failed read, write or sync.
pub(super) fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    // Certain and impossible outcomes draw nothing, so switching a fault fully on or off does
    // not shift the rest of the run's random stream more than needed.
    p >= 1.0 || (p > 0.0 && rng.random_bool(p))
}

impl State {
    pub(super) fn new(seed: u64, faults: FaultConfig) -> State {
        faults.validate();
        let mut nodes = BTreeMap::new();
        nodes.insert(ABSOLUTE_ROOT, Node::Dir(DirNode::default()));
        nodes.insert(RELATIVE_ROOT, Node::Dir(DirNode::default()));
        State {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            counts: FaultCounts::default(),
            power: Power::On,
            generation: 0,
            io_time_ns: 0,
            nodes,
            next_ino: 2,
            used_bytes: 0,
            rooted: false,
            read_only: false,
        }
    }

    /// `EROFS` while the disk is read-only.
    pub(super) fn check_read_only(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(30));
        }
        Ok(())
    }

    /// Draws `true` with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        chance(&mut self.rng, p)
    }

    /// Draws uniformly from `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// Gate for operations that change nothing (reads, `len`, `list_dir`, ...).
    pub(super) fn access(&mut self) -> io::Result<()> {
        if self.power == Power::Off {
            return Err(power_loss());
        }
        self.add_latency();
        Ok(())
    }

    /// Gate for mutating operations: runs `op`, and counts it towards an armed power cut if
    /// it succeeds. The operation that finds the cut due does not run: `at_cut` applies the
    /// part of it that may reach the disk as the power fails (for syncs), then it fails and
    /// the power stays off.
    pub(super) fn mutate<T>(
        &mut self,
        at_cut: impl FnOnce(&mut State),
        op: impl FnOnce(&mut State) -> io::Result<T>,
    ) -> io::Result<T> {
        match self.power {
            Power::Off => return Err(power_loss()),
            Power::Armed { remaining: 0 } => {
                at_cut(self);
                self.power = Power::Off;
                return Err(power_loss());
            }
            Power::On | Power::Armed { .. } => {}
        }
        self.add_latency();
        let result = op(self);
        if let (Ok(_), Power::Armed { remaining }) = (&result, &mut self.power) {
            *remaining -= 1;
        }
        result
    }

    fn add_latency(&mut self) {
        let (low, high) = self.faults.latency_ns;
        let ns = if high > low {
            self.rng.random_range(low..=high)
        } else {
            low
        };
        self.io_time_ns = self.io_time_ns.saturating_add(ns);
    }

    /// Fails if a handle of `generation` outlived a crash.
    pub(super) fn check_generation(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(io::Error::other(
                "stale file handle: opened before a simulated crash, by a process that died",
            ))
        }
    }

    pub(super) fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    /// The file `ino`. Callers hold a live handle or just resolved a path, both of which keep
    /// the inode alive, so a miss is a bug in the simulator.
    pub(super) fn file(&self, ino: Ino) -> &FileNode {
        match self.nodes.get(&ino) {
            Some(Node::File(file)) => file,
            _ => panic!("SimDisk: inode {ino} is not a live file"),
        }
    }

    pub(super) fn file_mut(&mut self, ino: Ino) -> &mut FileNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => file,
            _ => panic!("SimDisk: inode {ino} is not a live file"),
        }
    }

    /// Checks that growing the disk by `growth` bytes fits the capacity.
    pub(super) fn reserve(&mut self, growth: u64) -> io::Result<()> {
        if let Some(capacity) = self.faults.capacity_bytes
            && self.used_bytes.saturating_add(growth) > capacity
        {
            self.counts.storage_full += 1;
            return Err(crate::storage_full());
        }
        Ok(())
    }

    /// Applies `op` to the written bytes of `ino` and remembers it as pending.
    pub(super) fn apply(&mut self, ino: Ino, op: PendingOp) {
        let file = self.file_mut(ino);
        let before = file.written().len() as u64;
        op.apply_to(file.written_mut());
        let after = file.written().len() as u64;
        file.pending.push(op);
        self.used_bytes = self.used_bytes + after - before;
    }

    /// `sync` of `ino`: every pending operation becomes durable.
    pub(super) fn persist_all(&mut self, ino: Ino) {
        let file = self.file_mut(ino);
        for op in file.pending.drain(..) {
            op.apply_to(&mut file.durable);
        }
    }

    /// A `sync` of `ino` cut by the power: a seeded number of its pending operations, in
    /// order, made it to the platter before the power failed (possibly none, possibly all).
    pub(super) fn persist_prefix(&mut self, ino: Ino) {
        let n = self.file(ino).pending.len();
        let keep = self.below(n + 1);
        let file = self.file_mut(ino);
        for op in file.pending.drain(..keep) {
            op.apply_to(&mut file.durable);
        }
    }

    /// Drops the inodes nothing can reach any more: not linked from the current or the
    /// durable tree, and (files) not held open. This is when a removed file's space is freed.
    pub(super) fn collect_garbage(&mut self) {
        let mut live = BTreeSet::new();
        let mut stack = vec![ABSOLUTE_ROOT, RELATIVE_ROOT];
        for (&ino, node) in &self.nodes {
            if matches!(node, Node::File(file) if file.open_handles > 0) {
                stack.push(ino);
            }
        }
        while let Some(ino) = stack.pop() {
            if !live.insert(ino) {
                continue;
            }
            if let Some(Node::Dir(dir)) = self.nodes.get(&ino) {
                stack.extend(dir.entries.values().chain(dir.durable.values()));
            }
        }
        let used_bytes = &mut self.used_bytes;
        self.nodes.retain(|ino, node| {
            let keep = live.contains(ino);
            if let (false, Node::File(file)) = (keep, node) {
                *used_bytes -= file.written().len() as u64;
            }
            keep
        });
        self.count_links();
    }

    /// Recounts every file's [`links`](FileNode::links) from the directories present.
    fn count_links(&mut self) {
        let mut links = BTreeMap::new();
        for node in self.nodes.values() {
            if let Node::Dir(dir) = node {
                for &ino in dir.entries.values().chain(dir.durable.values()) {
                    *links.entry(ino).or_insert(0) += 1;
                }
            }
        }
        for (ino, node) in &mut self.nodes {
            if let Node::File(file) = node {
                file.links = links.get(ino).copied().unwrap_or(0);
            }
        }
    }

    /// Closes one handle of the file `ino`, dropping the file if that was the last handle and
    /// no directory entry names it any more.
    ///
    /// This and [`unlink_file`](State::unlink_file) do what a full
    /// [`collect_garbage`](State::collect_garbage) would, in O(log n), thanks to an invariant
    /// kept between operations: every inode present is live, and every file's `links` is
    /// exact. Only handles and entries naming files change outside the tree walk (a crash, and
    /// an entry lost that named a directory, walk the tree), handles keep files and never
    /// directories alive, and every directory present is reachable; so a file is live exactly
    /// when it is open or some directory names it, and no other inode's liveness changes.
    pub(super) fn release(&mut self, ino: Ino) {
        let Some(Node::File(file)) = self.nodes.get_mut(&ino) else {
            return;
        };
        file.open_handles -= 1;
        self.drop_if_unreachable(ino);
    }

    /// Counts one directory entry naming the file `ino` as gone, dropping the file if that was
    /// its last link and no handle holds it (see [`release`](State::release)).
    pub(super) fn unlink_file(&mut self, ino: Ino) {
        let Some(Node::File(file)) = self.nodes.get_mut(&ino) else {
            return;
        };
        file.links -= 1;
        self.drop_if_unreachable(ino);
    }

    fn drop_if_unreachable(&mut self, ino: Ino) {
        if let Some(Node::File(file)) = self.nodes.get(&ino)
            && file.open_handles == 0
            && file.links == 0
        {
            self.used_bytes -= file.written().len() as u64;
            self.nodes.remove(&ino);
        }
    }

    /// Power loss, then reboot: see the module docs of [`super`] for the model.
    pub(super) fn crash(&mut self) {
        self.power = Power::On;
        self.generation += 1;
        self.counts.crashes += 1;
        // The process died, so no handle holds a file open any more.
        for node in self.nodes.values_mut() {
            match node {
                Node::Dir(dir) => dir.restore(),
                Node::File(file) => file.open_handles = 0,
            }
        }
        self.collect_garbage();

        let sector_size = usize::try_from(self.faults.sector_size).unwrap_or(usize::MAX);
        let kept_p = self.faults.unsynced_write_kept_probability;
        let torn_p = self.faults.torn_write_probability;
        let rng = &mut self.rng;
        let counts = &mut self.counts;
        let mut used_bytes = 0;
        // BTreeMap order: inode order, so the draws happen in the same order for one seed.
        for node in self.nodes.values_mut() {
            let Node::File(file) = node else { continue };
            if file.pending.is_empty() {
                // Nothing to draw: the file becomes its durable bytes. Those normally equal
                // the written ones (`corrupt` of a byte only the written ones hold can leave
                // them apart), so usually nothing is copied and the file keeps its shared
                // map.
                if file.written() != &file.durable {
                    *file.written_mut() = file.durable.clone();
                }
                used_bytes += file.durable.len() as u64;
                continue;
            }
            let mut content = std::mem::take(&mut file.durable);
            for op in file.pending.drain(..) {
                match &op {
                    PendingOp::Write { offset, bytes } => {
                        if chance(rng, kept_p) {
                            op.apply_to(&mut content);
                        } else if chance(rng, torn_p) {
                            // Whole sectors from the write's start, strictly fewer than the
                            // write covers, so a torn write never equals a kept one.
                            let sectors = bytes.len().div_ceil(sector_size);
                            let keep = rng.random_range(0..sectors) * sector_size;
                            write_into(&mut content, *offset, &bytes[..keep]);
                            counts.torn_writes += 1;
                        } else {
                            counts.lost_writes += 1;
                        }
                    }
                    PendingOp::Truncate { .. } => {
                        if chance(rng, 0.5) {
                            op.apply_to(&mut content);
                        }
                    }
                }
            }
            used_bytes += content.len() as u64;
            *file.written_mut() = content.clone();
            file.durable = content;
        }
        self.used_bytes = used_bytes;
    }
}

#[cfg(test)]
impl State {
    /// Panics unless the state is what a full [`collect_garbage`](State::collect_garbage)
    /// would leave: every inode live, every file's `links` exact, `used_bytes` their sum.
    pub(super) fn assert_collected(&self) {
        let mut live = BTreeSet::new();
        let mut stack = vec![ABSOLUTE_ROOT, RELATIVE_ROOT];
        let mut links: BTreeMap<Ino, u64> = BTreeMap::new();
        for (&ino, node) in &self.nodes {
            match node {
                Node::File(file) if file.open_handles > 0 => stack.push(ino),
                Node::File(_) => {}
                Node::Dir(dir) => {
                    for &child in dir.entries.values().chain(dir.durable.values()) {
                        *links.entry(child).or_insert(0) += 1;
                    }
                }
            }
        }
        while let Some(ino) = stack.pop() {
            if live.insert(ino)
                && let Some(Node::Dir(dir)) = self.nodes.get(&ino)
            {
                stack.extend(dir.entries.values().chain(dir.durable.values()));
            }
        }
        let mut used_bytes = 0;
        for (ino, node) in &self.nodes {
            assert!(live.contains(ino), "inode {ino} is garbage but present");
            if let Node::File(file) = node {
                assert_eq!(
                    file.links,
                    links.get(ino).copied().unwrap_or(0),
                    "links of {ino}"
                );
                used_bytes += file.written().len() as u64;
            }
        }
        assert_eq!(self.used_bytes, used_bytes, "used bytes");
    }
}
