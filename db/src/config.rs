//! Store configuration, with the defaults SierraDB's server uses.

use crate::error::StoreError;
use crate::store::record::{FRAME_HEADER_BYTES, SEGMENT_HEADER_FRAME_BYTES};

/// When appends are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append is acknowledged only after an fsync covers it (group commit shares one
    /// fsync among the appends waiting for it). The default.
    Always,
    /// UNSAFE: never fsync. Acknowledged appends may be lost on power failure or crash of the
    /// machine. Exists to measure CPU cost per event.
    NeverUnsafe,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Partitions (units of ordering). Recorded on disk at creation.
    pub partition_count: u16,
    /// Buckets (units of storage: one segment log each); partition `p` lives in bucket
    /// `p % bucket_count`. Recorded on disk at creation.
    pub bucket_count: u16,
    /// A segment is sealed when the next transaction would not fit. Recorded on disk.
    pub segment_size_bytes: u64,
    /// Largest encoded transaction (all its events), in bytes.
    pub max_transaction_bytes: u64,
    /// Most events in one transaction.
    pub max_transaction_events: usize,
    /// Most transactions written together under one fsync.
    pub max_batch_transactions: usize,
    pub sync: SyncPolicy,
    /// How far ahead of its frames the open segment is kept extended with zeros, written and
    /// synced in the background, so that commits overwrite space the file already has and
    /// their fdatasync needs no journal commit (`store::prealloc`). 0 turns it off, and so
    /// does `SyncPolicy::NeverUnsafe` (no fsync to save). Not recorded on disk: it changes
    /// speed, never what is stored.
    pub preallocate_bytes: u64,
}

/// Zeros kept ahead of the open segment's frames by default: a fill of about 512 KiB every
/// few thousand events. 4 MiB was as fast but gave a worse p99, since a commit's fsync waits
/// for the zeros of a fill in progress (docs/decisions/0008-preallocated-segments.md).
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 1 << 20;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            partition_count: 32,
            bucket_count: 4,
            segment_size_bytes: 256 * 1024 * 1024,
            max_transaction_bytes: 64 * 1024 * 1024,
            max_transaction_events: 10_000,
            max_batch_transactions: 4096,
            sync: SyncPolicy::Always,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |msg: String| Err(StoreError::InvalidConfig(msg));
        if self.partition_count == 0 {
            return bad("partition count must be at least 1".into());
        }
        if self.bucket_count == 0 || self.bucket_count > self.partition_count {
            return bad(format!(
                "bucket count must be between 1 and the partition count ({}), got {}",
                self.partition_count, self.bucket_count
            ));
        }
        if self.max_transaction_events == 0 || self.max_batch_transactions == 0 {
            return bad("transaction and batch limits must be at least 1".into());
        }
        if self.max_transaction_bytes > u64::from(u32::MAX) {
            return bad("max transaction bytes must fit in 32 bits".into());
        }
        let needed = SEGMENT_HEADER_FRAME_BYTES + FRAME_HEADER_BYTES + self.max_transaction_bytes;
        if self.segment_size_bytes < needed {
            return bad(format!(
                "segment size {} cannot hold the largest transaction ({} bytes) plus headers ({needed} bytes needed)",
                self.segment_size_bytes, self.max_transaction_bytes
            ));
        }
        Ok(())
    }

    /// The bucket that stores `partition`.
    pub fn bucket_of(&self, partition: u16) -> u16 {
        partition % self.bucket_count
    }
}
