//! The segment store: buckets of partitions, each bucket one append-only log of segments.
//!
//! ```text
//!            Store (reads)                       BucketWriter (one per bucket, one owner)
//!   get / scan / versions ──► BucketShared ◄── publish ── append_batch: check → frame →
//!                              (RwLock<view>)               write_at → sync → publish
//! ```
//!
//! [`open`] recovers every bucket ([`recovery`]) and returns the read side ([`Store`]) and one
//! [`BucketWriter`] per bucket. A writer appends batches synchronously (tests and the
//! simulator drive it directly); [`group_commit`] runs each writer as a task that drains its
//! queue into batches, so concurrent appends share one fsync and different buckets sync in
//! parallel. Directory layout: [`layout`]; frame bytes: [`record`]; indexes: [`index`].

pub mod bucket;
pub mod check;
pub mod group_commit;
pub mod index;
pub mod layout;
pub mod prealloc;
pub mod record;
pub mod recovery;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use disk::Disk;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::model::{
    BucketId, Event, EventId, InvalidInput, PartitionId, PartitionKey, PartitionSeq, StreamId,
    StreamVersion,
};
pub use bucket::{BucketShared, BucketWriter};
pub use recovery::{BucketRecovery, RecoveryReport, Truncation};

/// Events a scan returned, and whether more matched beyond its count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub events: Vec<Event>,
    pub has_more: bool,
}

/// The read side of the store. Cheap to clone.
pub struct Store<D: Disk> {
    config: StoreConfig,
    root: PathBuf,
    buckets: Arc<[Arc<BucketShared<D>>]>,
}

impl<D: Disk> Clone for Store<D> {
    fn clone(&self) -> Self {
        Store {
            config: self.config.clone(),
            root: self.root.clone(),
            buckets: self.buckets.clone(),
        }
    }
}

/// What [`open`] returns: the read side, one writer per bucket, and the recovery report.
pub type Opened<D> = (Store<D>, Vec<BucketWriter<D>>, RecoveryReport);

/// Opens (or creates) the store in `root`: checks the recorded layout against `config`,
/// recovers every bucket, and returns the read side, one writer per bucket (index = bucket
/// id), and what recovery found.
pub fn open<D: Disk>(disk: &D, root: &Path, config: StoreConfig) -> Result<Opened<D>, StoreError> {
    config.validate()?;
    layout::ensure_layout(disk, root, &config)?;
    let mut buckets = Vec::new();
    let mut writers = Vec::new();
    let mut report = RecoveryReport::default();
    for b in 0..config.bucket_count {
        let (shared, writer, recovery) = recovery::open_bucket(disk, root, BucketId(b), &config)?;
        buckets.push(shared);
        writers.push(writer);
        report.buckets.push(recovery);
    }
    let store = Store {
        config,
        root: root.to_owned(),
        buckets: buckets.into(),
    };
    Ok((store, writers, report))
}

impl<D: Disk> Store<D> {
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn buckets(&self) -> &[Arc<BucketShared<D>>] {
        &self.buckets
    }

    /// Write counters summed over all buckets.
    pub fn stats(&self) -> bucket::StatsSnapshot {
        self.buckets
            .iter()
            .map(|b| b.stats.snapshot())
            .fold(bucket::StatsSnapshot::default(), |a, b| a + b)
    }

    /// A partition id given by number, checked against the partition count.
    pub fn partition(&self, id: u16) -> Result<PartitionId, InvalidInput> {
        if id >= self.config.partition_count {
            return Err(InvalidInput::NoSuchPartition {
                partition: id,
                count: self.config.partition_count,
            });
        }
        Ok(PartitionId(id))
    }

    pub fn partition_of(&self, key: PartitionKey) -> PartitionId {
        key.partition(self.config.partition_count)
    }

    pub fn bucket_of(&self, partition: PartitionId) -> &Arc<BucketShared<D>> {
        &self.buckets[usize::from(self.config.bucket_of(partition.0))]
    }

    /// The event with this id, searching every bucket (ids need not embed their partition).
    pub fn get(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        for bucket in self.buckets.iter() {
            if let Some(event) = bucket.get_event(id)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The last version of a stream, `None` if it has no events.
    pub fn stream_version(&self, key: PartitionKey, stream: &StreamId) -> Option<StreamVersion> {
        let partition = self.partition_of(key);
        self.bucket_of(partition)
            .stream_version(&(partition, stream.clone()))
    }

    /// Versions `from..=to` of a stream (ascending), at most `limit` events.
    pub fn scan_stream(
        &self,
        key: PartitionKey,
        stream: &StreamId,
        from: StreamVersion,
        to: Option<StreamVersion>,
        limit: usize,
    ) -> Result<Scan, StoreError> {
        self.scan_stream_dir(key, stream, from, to, limit, false)
    }

    /// Versions `from..=to` of a stream walking down from `to` (or the end), at most `limit`.
    pub fn scan_stream_backward(
        &self,
        key: PartitionKey,
        stream: &StreamId,
        from: StreamVersion,
        to: Option<StreamVersion>,
        limit: usize,
    ) -> Result<Scan, StoreError> {
        self.scan_stream_dir(key, stream, from, to, limit, true)
    }

    fn scan_stream_dir(
        &self,
        key: PartitionKey,
        stream: &StreamId,
        from: StreamVersion,
        to: Option<StreamVersion>,
        limit: usize,
        reverse: bool,
    ) -> Result<Scan, StoreError> {
        let partition = self.partition_of(key);
        let (events, has_more) = self.bucket_of(partition).scan_stream(
            &(partition, stream.clone()),
            from.0,
            to.map_or(u64::MAX, |v| v.0),
            limit,
            reverse,
        )?;
        Ok(Scan { events, has_more })
    }

    /// Sequences `from..=to` of a partition (ascending), at most `limit` events.
    pub fn scan_partition(
        &self,
        partition: PartitionId,
        from: PartitionSeq,
        to: Option<PartitionSeq>,
        limit: usize,
    ) -> Result<Scan, StoreError> {
        let (events, has_more) = self.bucket_of(partition).scan_partition(
            partition,
            from.0,
            to.map_or(u64::MAX, |s| s.0),
            limit,
        )?;
        Ok(Scan { events, has_more })
    }

    /// The last sequence of a partition, `None` if it has no events.
    pub fn partition_sequence(&self, partition: PartitionId) -> Option<PartitionSeq> {
        self.bucket_of(partition).partition_last(partition)
    }
}
