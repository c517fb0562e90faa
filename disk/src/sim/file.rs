//! [`SimFile`]: a handle on one inode of a [`SimDisk`](super::SimDisk).

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::node::{Ino, PendingOp};
use super::state::{State, eio, lock};
use crate::{File, Mapped};

/// An open file of a [`SimDisk`](super::SimDisk): the shared state, an inode number and the
/// generation it was opened in (a crash makes it stale).
pub struct SimFile {
    state: Arc<Mutex<State>>,
    ino: Ino,
    generation: u64,
    writable: bool,
}

impl SimFile {
    pub(super) fn new(state: Arc<Mutex<State>>, ino: Ino, generation: u64, writable: bool) -> Self {
        SimFile {
            state,
            ino,
            generation,
            writable,
        }
    }

    /// Locks the state, failing if the handle outlived a crash.
    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = lock(&self.state);
        state.check_generation(self.generation)?;
        Ok(state)
    }

    /// A read of `len` bytes at `offset`: the faults a read draws (an `EIO`, then a bit flip
    /// in the copy), with `copy` making the copy from the file's bytes and handing it back to
    /// be flipped.
    fn read_with<'b>(
        &self,
        offset: u64,
        len: usize,
        copy: impl FnOnce(&[u8]) -> &'b mut [u8],
    ) -> io::Result<()> {
        let mut guard = self.lock()?;
        let state = &mut *guard;
        state.access()?;
        if state.chance(state.faults.read_error_probability) {
            state.counts.read_errors += 1;
            return Err(eio());
        }
        let written = state.file(self.ino).written();
        let copied = match span(offset, len) {
            Some((start, end)) if end <= written.len() => copy(&written[start..end]),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "failed to fill whole buffer",
                ));
            }
        };
        state.maybe_flip_bit(copied);
        Ok(())
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file was opened read-only",
            ))
        }
    }
}

/// `offset` as an index, if the span `offset..offset + len` fits in memory.
fn span(offset: u64, len: usize) -> Option<(usize, usize)> {
    let start = usize::try_from(offset).ok()?;
    Some((start, start.checked_add(len)?))
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        "offset too large for the simulated disk",
    )
}

impl State {
    /// With the configured chance, flips one random bit of `buf` (a copy: the stored bytes
    /// stay intact, like a transient error on the bus).
    fn maybe_flip_bit(&mut self, buf: &mut [u8]) {
        if let Some(bit) = self.bit_to_flip(buf.len()) {
            buf[bit / 8] ^= 1 << (bit % 8);
        }
    }

    /// With the configured chance, which bit of a read of `len` bytes to flip (counted as
    /// flipped).
    fn bit_to_flip(&mut self, len: usize) -> Option<usize> {
        if len == 0 || !self.chance(self.faults.read_bit_flip_probability) {
            return None;
        }
        let bit = self.below(len * 8);
        self.counts.bit_flips += 1;
        Some(bit)
    }

    /// Where a write of `len` bytes meant for `offset` lands in a file of `file_len` bytes.
    /// A misdirected write moves by whole sectors, never below 0, and when moved forward
    /// stays inside the file, so it never needs more space than the intended write would.
    /// If no such place exists the write lands where it was meant to.
    fn landing_offset(&mut self, offset: usize, len: usize, file_len: usize) -> usize {
        if !self.chance(self.faults.misdirected_write_probability) {
            return offset;
        }
        let sector = usize::try_from(self.faults.sector_size).unwrap_or(usize::MAX);
        let backward = offset / sector;
        let forward = file_len.saturating_sub(offset + len) / sector;
        if backward + forward == 0 {
            return offset;
        }
        self.counts.misdirected_writes += 1;
        let pick = self.below(backward + forward);
        if pick < backward {
            offset - (pick + 1) * sector
        } else {
            offset + (pick - backward + 1) * sector
        }
    }
}

impl File for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_with(offset, buf.len(), |bytes| {
            buf.copy_from_slice(bytes);
            buf
        })
    }

    fn read_vec_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_with(offset, len, |bytes| {
            out = bytes.to_vec();
            &mut out
        })?;
        Ok(out)
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock()?;
        state.mutate(
            |_| {},
            |state| {
                // `pwrite` of nothing is a no-op, like `write_all_at(&[])` on a real file.
                if bytes.is_empty() {
                    return Ok(());
                }
                self.check_writable()?;
                state.check_read_only()?;
                if state.chance(state.faults.write_error_probability) {
                    state.counts.write_errors += 1;
                    return Err(eio());
                }
                let (start, end) = span(offset, bytes.len()).ok_or_else(too_large)?;
                let file_len = state.file(self.ino).written().len();
                state.reserve(end.saturating_sub(file_len) as u64)?;
                let offset = state.landing_offset(start, bytes.len(), file_len);
                state.apply(
                    self.ino,
                    PendingOp::Write {
                        offset,
                        bytes: bytes.to_vec(),
                    },
                );
                Ok(())
            },
        )
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.lock()?;
        state.mutate(
            |state| state.persist_prefix(self.ino),
            |state| {
                if state.chance(state.faults.sync_error_probability) {
                    state.counts.sync_errors += 1;
                    return Err(eio());
                }
                state.persist_all(self.ino);
                Ok(())
            },
        )
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut state = self.lock()?;
        state.mutate(
            |_| {},
            |state| {
                self.check_writable()?;
                state.check_read_only()?;
                let len = usize::try_from(len).map_err(|_| too_large())?;
                let file_len = state.file(self.ino).written().len();
                state.reserve(len.saturating_sub(file_len) as u64)?;
                state.apply(self.ino, PendingOp::Truncate { len });
                Ok(())
            },
        )
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.lock()?;
        state.access()?;
        Ok(state.file(self.ino).written().len() as u64)
    }

    fn map(&self) -> io::Result<Mapped> {
        let mut state = self.lock()?;
        state.access()?;
        // A map reads the medium too, so it is subject to the same bit flips; callers verify
        // checksums on what they read through it. An unflipped map shares the file's bytes.
        let len = state.file(self.ino).written().len();
        match state.bit_to_flip(len) {
            Some(bit) => {
                let mut bytes = state.file(self.ino).written().clone();
                bytes[bit / 8] ^= 1 << (bit % 8);
                Ok(Mapped::from_bytes(bytes))
            }
            None => Ok(Mapped::from_bytes(state.file_mut(self.ino).mapped())),
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        // A stale handle's inode may be gone, or alive with counts reset by the crash.
        if state.generation != self.generation {
            return;
        }
        state.release(self.ino);
    }
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("ino", &self.ino)
            .field("generation", &self.generation)
            .field("writable", &self.writable)
            .finish()
    }
}
