//! # disk: files with explicit durability
//!
//! The storage engine in `db` never touches `std::fs` directly. It talks to a [`Disk`] (a
//! directory tree) and its [`File`]s, whose contract makes durability explicit:
//!
//! - bytes given to [`File::write_at`] are *written*: visible to reads, but a crash may lose
//!   them, tear them (keep a sector-aligned prefix) or keep some writes and not others;
//! - they become *durable* only when a later [`File::sync`] returns `Ok`;
//! - a file created, renamed or removed is durable in its directory only after
//!   [`Disk::sync_dir`] of that directory returns `Ok`;
//! - an `Err` from `sync` means the unsynced bytes may be lost *and* that the caller must not
//!   assume a retry fixes it (the page cache may have dropped them: "fsyncgate").
//!
//! Two implementations keep the contract honest:
//!
//! | type | what it is | used by |
//! |---|---|---|
//! | [`RealDisk`] | `std::fs` with positional I/O; [`File::map`] is a `memmap2` read-only map | the server |
//! | [`SimDisk`] | in memory, seeded: tracks written vs durable bytes and directory entries, and injects torn writes, bit flips, misdirected writes, `ENOSPC`, `EIO` and latency from one seed | tests and the simulator |
//!
//! The conformance suite (`tests/conformance.rs`) runs one body of tests against both.
//!
//! This crate knows nothing of events, segments or records.

use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

mod real;
mod sim;

pub use real::{RealDisk, RealFile};
pub use sim::{FaultConfig, FaultCounts, SimDisk, SimFile};

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; the file must not exist yet (`EEXIST` otherwise). Its directory entry is
    /// durable only after [`Disk::sync_dir`].
    CreateNew,
    /// Read and write; created empty if missing, kept as is otherwise.
    CreateOrOpen,
}

/// A directory tree of files. Cheap to clone; clones share the same tree.
pub trait Disk: Clone + Send + Sync + 'static {
    type File: File;

    /// Opens `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Creates `path` and its missing parents. Each new directory is durable in its parent
    /// only after `sync_dir` of the parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries of `dir`, sorted, so callers iterate
    /// deterministically.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Atomically replaces `to` with `from`. Durable only after `sync_dir` of the directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Durable only after `sync_dir` of its directory.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the current entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` exists (as the written, not necessarily durable, state says).
    fn exists(&self, path: &Path) -> bool;
}

/// One open file. All methods take `&self` so one writer and many readers can share it
/// through an `Arc`; the caller orders writes against reads of the same bytes.
pub trait File: Send + Sync + 'static {
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file ends first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// [`File::read_at`] of `len` bytes into a new vector. The default zeroes the vector and
    /// reads into it; an implementation that can copy its bytes out directly (the simulated
    /// disk) skips the zeroing, with the same faults.
    fn read_vec_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }
    /// Writes all of `bytes` at `offset`, extending the file if needed. The bytes are written,
    /// not durable: see [`File::sync`].
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written to this file before the call durable once it returns `Ok`
    /// (data and the size, like `fdatasync`). After an `Err`, unsynced data may be lost.
    fn sync(&self) -> io::Result<()>;
    /// Sets the length, cutting or zero-extending. Durable only after [`File::sync`].
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// The current (written) length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// A read-only view of the whole file as it is now. Meant for sealed files that no longer
    /// change; bytes written after the call may or may not show. Callers still verify
    /// checksums on what they read through it.
    fn map(&self) -> io::Result<Mapped>;
}

/// Read-only bytes of a whole file: a `memmap2` map on a real disk, a copy in simulation.
#[derive(Clone)]
pub struct Mapped(MappedInner);

#[derive(Clone)]
enum MappedInner {
    Mmap(Arc<memmap2::Mmap>),
    Bytes(Arc<[u8]>),
}

impl Mapped {
    /// Wraps owned bytes (used by [`SimDisk`] and for empty files, which cannot be mapped).
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Mapped(MappedInner::Bytes(bytes.into()))
    }

    fn from_mmap(map: memmap2::Mmap) -> Self {
        Mapped(MappedInner::Mmap(Arc::new(map)))
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            MappedInner::Mmap(m) => m,
            MappedInner::Bytes(b) => b,
        }
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped").field("len", &self.len()).finish()
    }
}

/// The error a full disk gives (`ENOSPC`), so both implementations report it the same way.
pub fn storage_full() -> io::Error {
    io::Error::from_raw_os_error(28)
}

/// Whether `err` means the disk is full.
pub fn is_storage_full(err: &io::Error) -> bool {
    err.raw_os_error() == Some(28) || err.kind() == io::ErrorKind::StorageFull
}

/// Whether `err` means the place cannot be written at all: a read-only file system
/// (`EROFS`) or a directory or file without write permission (`EACCES`, `EPERM`).
pub fn is_not_writable(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(1 | 13 | 30))
        || matches!(
            err.kind(),
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
        )
}
