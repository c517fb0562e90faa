//! [`FaultConfig`] (which faults to inject) and [`FaultCounts`] (which were injected).

/// Which faults a [`SimDisk`](super::SimDisk) injects, each drawn from its seed.
///
/// The default injects nothing at run time; only `crash()` loses data, following
/// `unsynced_write_kept_probability` and `torn_write_probability`.
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
    /// [`SimDisk::io_time_ns`](super::SimDisk::io_time_ns).
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

impl FaultConfig {
    /// Panics on a configuration that cannot be drawn from: it is a bug in the test that
    /// built it, and failing at `set_faults` points at it better than failing mid-run.
    pub(super) fn validate(&self) {
        assert!(self.sector_size > 0, "FaultConfig: sector_size must be > 0");
        for (name, p) in [
            (
                "unsynced_write_kept_probability",
                self.unsynced_write_kept_probability,
            ),
            ("torn_write_probability", self.torn_write_probability),
            ("read_bit_flip_probability", self.read_bit_flip_probability),
            (
                "misdirected_write_probability",
                self.misdirected_write_probability,
            ),
            ("read_error_probability", self.read_error_probability),
            ("write_error_probability", self.write_error_probability),
            ("sync_error_probability", self.sync_error_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "FaultConfig: {name} must be in [0, 1], got {p}"
            );
        }
        let (low, high) = self.latency_ns;
        assert!(
            low <= high,
            "FaultConfig: latency_ns range is empty ({low} > {high})"
        );
    }
}

/// How many faults of each kind a [`SimDisk`](super::SimDisk) injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Unsynced writes that kept only a sector-multiple prefix (possibly empty) at a crash.
    pub torn_writes: u64,
    /// Unsynced writes that vanished at a crash.
    pub lost_writes: u64,
    /// Reads (and maps) that returned one flipped bit.
    pub bit_flips: u64,
    /// Writes that landed whole sectors away from their offset.
    pub misdirected_writes: u64,
    /// Reads that failed with `EIO`.
    pub read_errors: u64,
    /// Writes that failed with `EIO`.
    pub write_errors: u64,
    /// File and directory syncs that failed with `EIO`.
    pub sync_errors: u64,
    /// Writes and truncates refused with `ENOSPC`.
    pub storage_full: u64,
    /// Calls to `crash()`.
    pub crashes: u64,
}
