//! [`SimDisk`]: placeholder API; the implementation lands next (see the helper's task).

use std::io;
use std::path::Path;

use crate::{Disk, File, Mapped, OpenMode};

/// Which faults a [`SimDisk`] injects, each drawn from its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Sector size for torn writes: a torn write keeps a prefix that is a multiple of it.
    pub sector_size: u64,
    /// At `crash()`, the chance that one unsynced write survives whole (else it is torn or lost).
    pub unsynced_write_kept_probability: f64,
    /// At `crash()`, the chance that one unsynced write that was not kept whole keeps a prefix.
    pub torn_write_probability: f64,
    /// Chance that a read returns one flipped bit (the stored bytes stay intact).
    pub read_bit_flip_probability: f64,
    /// Chance that a write lands at the wrong offset (shifted by whole sectors) in its file.
    pub misdirected_write_probability: f64,
    /// Chance of `EIO` on a read.
    pub read_error_probability: f64,
    /// Chance of `EIO` on a write.
    pub write_error_probability: f64,
    /// Chance of `EIO` on a sync (the unsynced bytes then stay unsynced).
    pub sync_error_probability: f64,
    /// Total bytes the disk holds; writes past it fail with `ENOSPC`. `None`: unlimited.
    pub capacity_bytes: Option<u64>,
    /// Latency of one operation, drawn uniformly from this range (nanoseconds), added to
    /// [`SimDisk::io_time_ns`].
    pub latency_ns: (u64, u64),
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            sector_size: 512,
            unsynced_write_kept_probability: 0.5,
            torn_write_probability: 0.5,
            read_bit_flip_probability: 0.0,
            misdirected_write_probability: 0.0,
            read_error_probability: 0.0,
            write_error_probability: 0.0,
            sync_error_probability: 0.0,
            capacity_bytes: None,
            latency_ns: (0, 0),
        }
    }
}

/// How many faults of each kind a [`SimDisk`] injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub torn_writes: u64,
    pub lost_writes: u64,
    pub bit_flips: u64,
    pub misdirected_writes: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub sync_errors: u64,
    pub storage_full: u64,
    pub crashes: u64,
}

/// An in-memory disk. Placeholder until the implementation lands.
#[derive(Clone, Debug)]
pub struct SimDisk;

#[derive(Debug)]
pub struct SimFile;

impl SimDisk {
    pub fn new(_seed: u64, _faults: FaultConfig) -> Self {
        todo!()
    }
}

impl Disk for SimDisk {
    type File = SimFile;
    fn open(&self, _path: &Path, _mode: OpenMode) -> io::Result<SimFile> {
        todo!()
    }
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        todo!()
    }
    fn list_dir(&self, _dir: &Path) -> io::Result<Vec<String>> {
        todo!()
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        todo!()
    }
    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        todo!()
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        todo!()
    }
    fn exists(&self, _path: &Path) -> bool {
        todo!()
    }
}

impl File for SimFile {
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<()> {
        todo!()
    }
    fn write_at(&self, _offset: u64, _bytes: &[u8]) -> io::Result<()> {
        todo!()
    }
    fn sync(&self) -> io::Result<()> {
        todo!()
    }
    fn truncate(&self, _len: u64) -> io::Result<()> {
        todo!()
    }
    fn len(&self) -> io::Result<u64> {
        todo!()
    }
    fn map(&self) -> io::Result<Mapped> {
        todo!()
    }
}
