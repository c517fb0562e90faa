//! Zeros written ahead of the open segment's frames, off the commit path.
//!
//! An fdatasync after a write that grows a file must also commit the file's new size (and any
//! newly allocated blocks) to the file system's journal. One after a write into space the file
//! already holds, written and synced before, flushes the data alone. On this project's ext4
//! disk that made a 4 KiB write + fdatasync 1.3–1.8x as fast, more while other processes wrote
//! to the same file system, and it let four files' syncs overlap instead of queueing behind
//! one journal commit (docs/performance.md, docs/decisions/0008-preallocated-segments.md).
//!
//! So a bucket keeps its open segment extended with zeros a little ahead of its frames: after
//! a batch, the writer asks for more ([`Preallocation::request`]) when less than half of
//! `preallocate_bytes` is left, and a background job ([`FillJob::run`]) writes the zeros and
//! syncs them while commits go on. A batch that ends inside the synced zeros is written
//! without taking any lock; one that outruns them takes the lock, so it never races a zero
//! write over the same bytes. The zeros are unused space to recovery and `sierradb check`
//! (docs/format.md), and a segment is cut back to its frames when it is sealed.
//!
//! Only speed depends on this. Every commit still ends with an fdatasync of the segment, which
//! makes durable whatever its data needs, allocated or not: a fill that failed, was never
//! synced, or was lost in a crash costs a slower sync, never a lost event.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use disk::{Disk, File, OpenMode};

/// The most zeros one locked write puts down: a batch that outruns the zeros waits for at
/// most one of these.
const ZEROS_PER_WRITE: u64 = 1 << 20;

/// The open segment's zeros, shared by its writer and the fill job in flight.
pub struct Preallocation<D: Disk> {
    inner: Arc<Inner<D>>,
    /// How far ahead of the frames to keep zeros; 0 turns preallocation off.
    ahead: u64,
}

struct Inner<D: Disk> {
    disk: D,
    state: Mutex<State>,
    /// Zeros written *and synced* up to here in the current segment: a write that ends at or
    /// before it needs no lock. Changed only under the lock; read without it by the writer.
    ready_end: AtomicU64,
}

struct State {
    /// Bumped whenever the file under the zeros changes (a seal, a cut): a job started before
    /// it must not write to, or vouch for, what is there now.
    generation: u64,
    /// The open segment.
    path: Arc<PathBuf>,
    /// How far a fill may go: the segment's size limit.
    limit: u64,
    /// The writer's frames end here as far as a fill must respect.
    frames_end: u64,
    /// Zeros (or frames written over them) reach here; not necessarily synced.
    zeroed_end: u64,
    /// A fill job is in flight: at most one at a time.
    filling: bool,
    /// After a failed fill, no new one until the frames pass here (a full disk would
    /// otherwise be asked again after every batch).
    retry_from: u64,
    /// A zero write failed: some of its zeros may have landed past `zeroed_end`.
    tail_unknown: bool,
}

/// Zeros to write and sync, in the background: on a blocking thread in production.
pub struct FillJob<D: Disk> {
    inner: Arc<Inner<D>>,
    generation: u64,
    target: u64,
    ahead: u64,
}

fn lock<D: Disk>(inner: &Inner<D>) -> MutexGuard<'_, State> {
    inner.state.lock().expect("preallocation lock poisoned")
}

impl<D: Disk> Preallocation<D> {
    /// The open segment at `path`, its frames ending at `frames_end` and the file at
    /// `file_len` (zeros a previous run wrote ahead, which recovery found after the frames).
    pub fn new(
        disk: D,
        path: Arc<PathBuf>,
        frames_end: u64,
        file_len: u64,
        limit: u64,
        ahead: u64,
    ) -> Self {
        let zeroed_end = file_len.max(frames_end);
        Preallocation {
            inner: Arc::new(Inner {
                disk,
                state: Mutex::new(State {
                    generation: 0,
                    path,
                    limit,
                    frames_end,
                    zeroed_end,
                    filling: false,
                    retry_from: 0,
                    tail_unknown: false,
                }),
                ready_end: AtomicU64::new(zeroed_end),
            }),
            ahead,
        }
    }

    /// Whether `end` falls inside zeros already synced, so a write ending there needs no lock.
    pub fn covers(&self, end: u64) -> bool {
        end <= self.inner.ready_end.load(Ordering::Acquire)
    }

    /// Runs `write`, of frames ending at `end`, while no fill can write: for a batch that
    /// outruns the synced zeros.
    pub fn write_locked(
        &self,
        end: u64,
        write: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut state = lock(&self.inner);
        write()?;
        state.frames_end = state.frames_end.max(end);
        state.zeroed_end = state.zeroed_end.max(end);
        Ok(())
    }

    /// The open segment now ends at `end` (cut back after a failed write, or about to be
    /// sealed), or a new segment at `path` starts there: no job in flight may write to it or
    /// vouch for zeros in it any more. Returns once any zero write in progress has finished,
    /// with whether the file may hold bytes this bucket put after `end`: zeros written ahead
    /// (by this run or, as recovery found, an earlier one), or frames over them.
    pub fn reset(&self, path: Option<Arc<PathBuf>>, end: u64) -> bool {
        let mut state = lock(&self.inner);
        let past_end = state.zeroed_end > end || state.tail_unknown;
        state.generation += 1;
        if let Some(path) = path {
            state.path = path;
            state.retry_from = 0;
        }
        state.frames_end = end;
        state.zeroed_end = end;
        state.tail_unknown = false;
        self.inner.ready_end.store(end, Ordering::Release);
        past_end
    }

    /// A job to extend the zeros, if the frames (ending at `frames_end`) have eaten into
    /// more than half of them and no job is in flight.
    pub fn request(&self, frames_end: u64) -> Option<FillJob<D>> {
        let ready = self.inner.ready_end.load(Ordering::Acquire);
        if self.ahead == 0 || frames_end + self.ahead / 2 <= ready {
            return None;
        }
        let mut state = lock(&self.inner);
        state.frames_end = state.frames_end.max(frames_end);
        let target = (state.frames_end + self.ahead).min(state.limit);
        if state.filling || state.frames_end < state.retry_from || target <= state.frames_end {
            return None;
        }
        state.filling = true;
        Some(FillJob {
            inner: self.inner.clone(),
            generation: state.generation,
            target,
            ahead: self.ahead,
        })
    }
}

impl<D: Disk> FillJob<D> {
    /// Writes zeros up to the target, syncs them, and publishes them as ready. A failure
    /// (a full disk, an I/O error) is logged and only delays the next fill.
    ///
    /// The job writes and syncs through a handle of its own. A failed fsync is reported once
    /// per open file: through the writer's handle, it could be the fill that saw the error
    /// and the writer's next fsync that succeeded, over frames whose write-back was lost.
    /// With two handles, each one's next fsync reports it.
    pub fn run(self) {
        let path = {
            let mut state = lock(&self.inner);
            if state.generation != self.generation {
                state.filling = false;
                return;
            }
            state.path.clone()
        };
        let file = match self.inner.disk.open(&path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(err) => return self.failed("open", &err),
        };
        let zeros = vec![0u8; ZEROS_PER_WRITE.min(self.ahead) as usize];
        let mut first = true;
        loop {
            let mut state = lock(&self.inner);
            if state.generation != self.generation {
                state.filling = false;
                return;
            }
            let mut start = state.zeroed_end.max(state.frames_end);
            if first {
                start = planted_fill_start(&self.inner, start);
                first = false;
            }
            if start >= self.target {
                break;
            }
            let len = (self.target - start).min(zeros.len() as u64);
            if let Err(err) = file.write_at(start, &zeros[..len as usize]) {
                state.tail_unknown = true;
                drop(state);
                return self.failed("write", &err);
            }
            state.zeroed_end = start + len;
            // The lock is let go between writes, so a batch that outran the zeros waits for
            // one write at most.
        }
        // Synced without the lock: the writer goes on meanwhile, in front of these zeros.
        if let Err(err) = file.sync() {
            return self.failed("sync", &err);
        }
        let mut state = lock(&self.inner);
        if state.generation == self.generation {
            let ready = self
                .inner
                .ready_end
                .load(Ordering::Relaxed)
                .max(self.target);
            self.inner.ready_end.store(ready, Ordering::Release);
        }
        state.filling = false;
    }

    fn failed(&self, what: &'static str, err: &std::io::Error) {
        let mut state = lock(&self.inner);
        tracing::warn!(
            path = %state.path.display(),
            error = %err,
            "{what} of preallocated segment space failed"
        );
        state.filling = false;
        state.retry_from = state.frames_end + self.ahead;
    }
}

/// Where a fill starts, with its planted bug: from the synced zeros' end, over any frames a
/// batch wrote past them.
#[cfg(feature = "planted-bugs")]
fn planted_fill_start<D: Disk>(inner: &Inner<D>, start: u64) -> u64 {
    if crate::planted::active(crate::planted::PlantedBug::FillOverwritesFrames) {
        return inner.ready_end.load(Ordering::Acquire);
    }
    start
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_fill_start<D: Disk>(_inner: &Inner<D>, start: u64) -> u64 {
    start
}
