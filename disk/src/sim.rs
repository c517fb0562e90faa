//! [`SimDisk`]: an in-memory [`Disk`] that keeps the durability contract honest, with faults
//! drawn from one seed.
//!
//! # The model: written vs durable
//!
//! Every file (an inode) has *written* bytes, what reads see, and *durable* bytes, what a
//! crash would find, plus the operations (writes as they landed, truncates) applied to the
//! written bytes since the last [`File::sync`](crate::File::sync), which replays them onto
//! the durable bytes.
//!
//! Every directory has *current* entries (name → inode), changed by `create_dir_all`, by
//! `open` creating a file, by `rename` and by `remove_file`, and *durable* entries, which
//! [`Disk::sync_dir`] sets to the current ones. Only `sync_dir` of the parent makes a new
//! directory durable; a crash before that drops it and everything under it.
//!
//! The first path the disk sees defines the world: its parent directory and that
//! directory's ancestors exist from the start and are durable (the place a program is
//! pointed at exists before it runs). Anything else must be created. Paths are normalised by
//! their components only; relative paths resolve from a simulated working directory.
//!
//! # What a crash does
//!
//! [`SimDisk::crash`] is a power loss followed by a reboot:
//!
//! - every directory's entries revert to its durable entries: files created and never
//!   `sync_dir`ed disappear, unsynced renames revert, unsynced removals come back;
//! - every file's bytes become its durable bytes plus, for each unsynced operation in order,
//!   a seeded choice. A write survives whole with `unsynced_write_kept_probability`; else it
//!   is torn with `torn_write_probability`, keeping a prefix of whole sectors counted from
//!   the write's start (uniformly 0 up to one sector fewer than the write covers); else it is
//!   lost. An unsynced truncate survives with probability ½;
//! - afterwards everything is durable, and handles opened before the crash fail every call
//!   (the process that held them died).
//!
//! [`SimDisk::crash_after_ops`] arms a power cut instead: after `n` more mutating operations
//! succeed, the next one fails, and so does every call after it (reads included) with
//! "simulated power loss", until `crash()`. If the failing operation is a `sync`, a seeded
//! in-order prefix of its pending operations becomes durable first (a crash mid-fsync); a
//! `sync_dir` there persists all its entries or none. The operation that fails this way
//! doesn't count as succeeding.
//!
//! # Run-time faults
//!
//! [`FaultConfig`] sets the chance of bit flips on reads (and maps), misdirected writes,
//! `EIO` on reads, writes and syncs (file and directory), a capacity (`ENOSPC`), and a
//! latency per operation added to [`SimDisk::io_time_ns`]. [`FaultCounts`] tallies them.
//!
//! # Determinism
//!
//! All randomness comes from one `ChaCha8Rng` seeded with the disk's seed; all maps are
//! `BTreeMap`s; there is no clock. The same seed and the same calls in the same order give
//! the same bytes and the same counts. Calls from several threads are serialised by one
//! mutex, so their interleaving is the caller's to make deterministic.

mod faults;
mod file;
mod node;
mod state;
mod tree;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use faults::{FaultConfig, FaultCounts};
pub use file::SimFile;

use crate::{Disk, OpenMode};
use node::Node;
use state::{Power, State, lock};
use tree::View;

/// An in-memory disk with written vs durable state and seeded faults. Cheap to clone; clones
/// share the same tree, generator and counters.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk whose every random choice derives from `seed`.
    ///
    /// # Panics
    ///
    /// If `faults` holds a probability outside `[0, 1]`, a zero sector size or an empty
    /// latency range.
    pub fn new(seed: u64, faults: FaultConfig) -> Self {
        SimDisk {
            state: Arc::new(Mutex::new(State::new(seed, faults))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Replaces the fault configuration; takes effect from the next operation.
    ///
    /// # Panics
    ///
    /// As [`SimDisk::new`], on an invalid configuration.
    pub fn set_faults(&self, faults: FaultConfig) {
        faults.validate();
        self.lock().faults = faults;
    }

    pub fn faults(&self) -> FaultConfig {
        self.lock().faults.clone()
    }

    pub fn fault_counts(&self) -> FaultCounts {
        self.lock().counts
    }

    /// Loses power now and reboots: see the module docs. Disarms a pending cut and powers the
    /// disk back on; handles opened before are stale from now on.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Arms a power cut: `n` more mutating operations (`write_at`, `sync`, `truncate`,
    /// `rename`, `remove_file`, `sync_dir`, `create_dir_all`, `open` in a creating mode) may
    /// succeed; the one after fails, and every call after it fails too until
    /// [`SimDisk::crash`]. `n = 0` cuts the very next mutating operation. Re-arming replaces
    /// the count; arming while the power is already off does nothing (only a crash brings it
    /// back).
    pub fn crash_after_ops(&self, n: u64) {
        let mut state = self.lock();
        if state.power != Power::Off {
            state.power = Power::Armed { remaining: n };
        }
    }

    /// Cancels an armed power cut. A cut that already happened stays: call
    /// [`SimDisk::crash`].
    pub fn disarm(&self) {
        let mut state = self.lock();
        if let Power::Armed { .. } = state.power {
            state.power = Power::On;
        }
    }

    /// Whether an armed cut happened and `crash()` was not called since.
    pub fn is_powered_off(&self) -> bool {
        self.lock().power == Power::Off
    }

    /// Changes the capacity at run time (`None`: unlimited). Lowering it below
    /// [`SimDisk::used_bytes`] loses nothing; only growth is refused.
    pub fn set_capacity(&self, capacity_bytes: Option<u64>) {
        self.lock().faults.capacity_bytes = capacity_bytes;
    }

    /// Mounts the disk read-only (`true`) or writable again: while read-only, creating,
    /// writing, truncating, renaming and removing fail with `EROFS` (as does opening a file
    /// for writing); reads and syncs work.
    pub fn set_read_only(&self, read_only: bool) {
        self.lock().read_only = read_only;
    }

    /// The sum of the latencies drawn so far, in nanoseconds.
    pub fn io_time_ns(&self) -> u64 {
        self.lock().io_time_ns
    }

    /// XORs the byte at `offset` of `path` with `xor`, in the written and the durable bytes
    /// (and in pending writes that cover it), so the damage survives syncs and crashes, like
    /// a bad sector. For tests: it injects no latency and works with the power off.
    ///
    /// `NotFound` if `path` is not a file now; `InvalidInput` if `offset` is past both the
    /// written and the durable end.
    pub fn corrupt(&self, path: &Path, offset: u64, xor: u8) -> io::Result<()> {
        let mut state = self.lock();
        let path = state.path(path)?;
        let ino = state.lookup(&path, View::Current)?;
        let Some(Node::File(file)) = state.nodes.get_mut(&ino) else {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{path}: is a directory"),
            ));
        };
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        if !file.corrupt(offset, xor) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: offset {offset} is past the end of the file"),
            ));
        }
        Ok(())
    }

    /// The durable bytes of the file `path` names in the durable tree (`None` if a crash now
    /// would leave no file there). Pending writes may still survive a crash on top of them.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let mut state = self.lock();
        let path = state.path(path).ok()?;
        Some(state.lookup_file(&path, View::Durable)?.durable.clone())
    }

    /// The written bytes of the file `path` names now (`None` if there is none), without
    /// faults or latency.
    pub fn written_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let mut state = self.lock();
        let path = state.path(path).ok()?;
        Some(state.lookup_file(&path, View::Current)?.written().clone())
    }

    /// The sum of all live files' written lengths: the figure the capacity limits. A removed
    /// file counts until its removal is durable and no handle holds it.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let mut state = self.lock();
        let path = state.path(path)?;
        let ino = match mode {
            OpenMode::Read | OpenMode::ReadWrite => {
                state.access()?;
                if mode == OpenMode::ReadWrite {
                    state.check_read_only()?;
                }
                state.open_existing(&path)?
            }
            OpenMode::CreateNew | OpenMode::CreateOrOpen => state.mutate(
                |_| {},
                |state| {
                    state.check_read_only()?;
                    state.open_creating(&path, mode == OpenMode::CreateNew)
                },
            )?,
        };
        state.file_mut(ino).open_handles += 1;
        Ok(SimFile::new(
            self.state.clone(),
            ino,
            state.generation,
            mode != OpenMode::Read,
        ))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let path = state.path(path)?;
        state.mutate(
            |_| {},
            |state| {
                // Like `mkdir -p` on a read-only mount: fine if there is nothing to create.
                if state.read_only && state.lookup_dir(&path).is_err() {
                    state.check_read_only()?;
                }
                state.create_dirs(&path)
            },
        )
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.lock();
        let dir = state.path(dir)?;
        state.access()?;
        state.list(&dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let from = state.path(from)?;
        let to = state.path(to)?;
        state.mutate(
            |_| {},
            |state| {
                state.check_read_only()?;
                state.rename(&from, &to)
            },
        )
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let path = state.path(path)?;
        state.mutate(
            |_| {},
            |state| {
                state.check_read_only()?;
                state.remove(&path)
            },
        )
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let dir = state.path(dir)?;
        state.mutate(
            |state| {
                // A directory's changes commit as one journal transaction: all or nothing.
                if let Ok(ino) = state.lookup_dir(&dir)
                    && state.chance(0.5)
                {
                    state.persist_dir(ino);
                }
            },
            |state| {
                let ino = state.lookup_dir(&dir)?;
                if state.chance(state.faults.sync_error_probability) {
                    state.counts.sync_errors += 1;
                    return Err(state::eio());
                }
                state.persist_dir(ino);
                Ok(())
            },
        )
    }

    fn exists(&self, path: &Path) -> bool {
        let mut state = self.lock();
        let Ok(path) = state.path(path) else {
            return false;
        };
        // A machine without power sees nothing.
        state.access().is_ok() && state.lookup(&path, View::Current).is_ok()
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimDisk")
            .field("power", &state.power)
            .field("generation", &state.generation)
            .field("used_bytes", &state.used_bytes)
            .field("counts", &state.counts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::File;

    /// A map shows the bytes as they were when it was taken, however the file changes after
    /// (writes, truncations, crashes, corruption), though unchanged files share one copy.
    #[test]
    fn maps_show_the_bytes_of_their_moment() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let disk = SimDisk::new(seed, FaultConfig::default());
            disk.create_dir_all(Path::new("/db")).unwrap();
            let path = PathBuf::from("/db/f");
            let mut file = disk.open(&path, OpenMode::CreateOrOpen).unwrap();
            disk.sync_dir(Path::new("/")).unwrap();
            disk.sync_dir(Path::new("/db")).unwrap();
            let mut maps = Vec::new();
            for _ in 0..200 {
                match rng.random_range(0..8) {
                    0 | 1 => {
                        let offset = rng.random_range(0..300);
                        let len = rng.random_range(1..50);
                        file.write_at(offset, &vec![rng.random(); len]).unwrap();
                    }
                    2 => file.truncate(rng.random_range(0..300)).unwrap(),
                    3 => file.sync().unwrap(),
                    4 => {
                        disk.crash();
                        file = disk.open(&path, OpenMode::CreateOrOpen).unwrap();
                    }
                    5 => {
                        let _ = disk.corrupt(&path, rng.random_range(0..300), 0x10);
                    }
                    _ => {
                        let map = file.map().unwrap();
                        let again = file.map().unwrap();
                        assert_eq!(map.as_ptr(), again.as_ptr(), "unchanged: one copy");
                        maps.push((map, disk.written_contents(&path).unwrap()));
                    }
                }
                assert_eq!(&*file.map().unwrap(), disk.written_contents(&path).unwrap());
                for (map, then) in &maps {
                    assert_eq!(&**map, then.as_slice());
                }
            }
        }
    }

    /// Random creations, writes, renames (over files and onto new names, of files and
    /// directories), removals, directory syncs, closes and crashes: after each one the state
    /// must be what a full garbage collection leaves, though closes, removals, renames and
    /// syncs only collect what they may have freed.
    #[test]
    fn incremental_collection_matches_the_tree_walk() {
        for seed in 0..40 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let disk = SimDisk::new(seed, FaultConfig::default());
            let dirs = [
                PathBuf::from("/db"),
                PathBuf::from("/db/a"),
                PathBuf::from("/db/b"),
            ];
            disk.create_dir_all(&dirs[0]).unwrap();
            let mut handles = Vec::new();
            for _ in 0..400 {
                let dir = &dirs[rng.random_range(0..dirs.len())];
                let name = |rng: &mut ChaCha8Rng| dir.join(format!("f{}", rng.random_range(0..6)));
                match rng.random_range(0..10) {
                    0 => {
                        let _ = disk.create_dir_all(dir);
                    }
                    1 | 2 => {
                        if let Ok(file) = disk.open(&name(&mut rng), OpenMode::CreateOrOpen) {
                            let _ = file.write_at(0, &[7; 100][..rng.random_range(1..100)]);
                            handles.push(file);
                        }
                    }
                    3 => {
                        let (from, to) = (name(&mut rng), name(&mut rng));
                        let _ = disk.rename(&from, &to);
                    }
                    4 => {
                        let _ = disk.rename(&dirs[1], &dirs[2]);
                    }
                    5 => {
                        let _ = disk.remove_file(&name(&mut rng));
                    }
                    6 | 7 => {
                        let _ = disk.sync_dir(dir);
                    }
                    8 if !handles.is_empty() => {
                        let i = rng.random_range(0..handles.len());
                        drop(handles.swap_remove(i));
                    }
                    8 => {}
                    _ if rng.random_bool(0.2) => disk.crash(),
                    _ => {
                        let _ = disk.open(&name(&mut rng), OpenMode::Read);
                    }
                }
                disk.lock().assert_collected();
            }
        }
    }
}
