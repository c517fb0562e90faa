//! One bucket: its readable view ([`BucketShared`]) and its single writer ([`BucketWriter`]).
//!
//! The writer owns the open segment's write position. It takes a batch of transactions,
//! checks each against the durable view plus the earlier transactions of the same batch,
//! writes their frames with one `write_at`, makes them durable with one `sync` (group commit),
//! and only then *publishes* them into the view. Readers see the view only, so a read never
//! returns an event a crash could take away (visibility ⊆ durability).
//!
//! Failures keep three outcomes apart:
//! - a write that fails (disk full, `EIO`) is cut back to the durable end and that cut synced:
//!   nothing of the batch exists, [`AppendError::Unavailable`], and the next batch may succeed;
//! - a sync that fails leaves the outcome unknown ([`AppendError::Indeterminate`]) and
//!   *poisons* the bucket: after a failed fsync the page cache can no longer be trusted, so
//!   the bucket refuses appends until it is reopened and recovered from what the disk holds;
//! - a seal that fails (writing the index or creating the next segment) leaves the durable
//!   data as it was and is retried by the next batch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use disk::{Disk, File, OpenMode};
use indexmap::Equivalent;
use tokio::sync::watch;

use crate::config::{StoreConfig, SyncPolicy};
use crate::error::{AppendError, StoreError};
use crate::model::{
    AppendOutcome, AppendedEvent, BucketId, CurrentVersion, Event, EventId, InvalidInput, NewEvent,
    PartitionId, PartitionKey, PartitionSeq, StreamVersion, Transaction, validate_event_name,
};
use crate::store::index::{
    FixedMap, Pos, Run, SealedEvents, SealedIndex, SealedRuns, SegmentIndex, StreamKey,
    StreamKeyRef, encode_index_file, event_hash, set_stream,
};
use crate::store::layout;
use crate::store::prealloc::{FillJob, Preallocation};
use crate::store::record::{
    EventRecord, FRAME_HEADER_BYTES, SEGMENT_HEADER_FRAME_BYTES, SegmentHeader, TransactionRecord,
    encode_segment_header,
};
use crate::store::segment::{READ_AHEAD_BYTES, READ_AHEAD_GAP_BYTES, ReadAhead, SegmentData};

/// A sealed segment: immutable data and its index.
pub struct SealedSegment<D: Disk> {
    pub id: u32,
    pub data: SegmentData<D>,
    pub index: SealedIndex,
}

/// The open segment, as far as it is durable.
pub struct OpenSegment<D: Disk> {
    pub id: u32,
    pub path: Arc<PathBuf>,
    pub file: Arc<D::File>,
    pub index: SegmentIndex,
    /// Offset just past the last durable (and published) frame.
    pub durable_end: u64,
}

impl<D: Disk> OpenSegment<D> {
    fn data(&self) -> SegmentData<D> {
        SegmentData::Open {
            path: self.path.clone(),
            file: self.file.clone(),
            end: self.durable_end,
        }
    }
}

/// What the bucket knows of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamState {
    pub partition_key: PartitionKey,
    pub last: StreamVersion,
}

/// Everything readers may see: durable and published only.
pub struct BucketView<D: Disk> {
    pub sealed: Vec<SealedSegment<D>>,
    /// Every sealed segment's event ids, for a lookup that skips them all at once.
    pub sealed_events: SealedEvents,
    /// Where each stream's and partition's runs are among the sealed segments, so a read
    /// visits only the segments that hold what it asks for.
    pub sealed_runs: SealedRuns,
    pub open: OpenSegment<D>,
    pub streams: FixedMap<StreamKey, StreamState>,
    /// The next sequence of each partition with events.
    pub partitions: BTreeMap<PartitionId, u64>,
}

/// Events to read, in order: where each one is and the version or sequence the index says it
/// has there, which the read checks.
pub type Positions<D> = Vec<(SegmentData<D>, Pos, u64)>;

impl<D: Disk> BucketView<D> {
    fn locate_event(&self, id: &EventId) -> Option<(SegmentData<D>, Pos)> {
        if let Some(pos) = self.open.index.events.get(id) {
            return Some((self.open.data(), *pos));
        }
        if !self.sealed_events.may_contain(id) {
            return None;
        }
        let hash = event_hash(id);
        self.sealed.iter().rev().find_map(|s| {
            s.index
                .event_hashed(id, hash)
                .map(|pos| (s.data.clone(), pos))
        })
    }

    /// Positions of versions `from..=to` of a stream, at most `limit`, ascending or descending,
    /// and whether more remained.
    fn stream_positions(
        &self,
        key: &StreamKey,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> (Positions<D>, bool) {
        let sealed = self
            .sealed_runs
            .stream(key, from, to)
            .iter()
            .filter_map(|at| {
                let segment = &self.sealed[at.sealed as usize];
                let run = &segment.index.index.streams.get(key)?.run;
                Some((segment.data.clone(), run))
            });
        let open = self
            .open
            .index
            .streams
            .get(key)
            .map(|s| (self.open.data(), &s.run));
        if reverse {
            collect_runs(open.into_iter().chain(sealed.rev()), from, to, limit, true)
        } else {
            collect_runs(sealed.chain(open), from, to, limit, false)
        }
    }

    fn partition_positions(
        &self,
        partition: PartitionId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> (Positions<D>, bool) {
        let sealed = self
            .sealed_runs
            .partition(partition, from, to)
            .iter()
            .filter_map(|at| {
                let segment = &self.sealed[at.sealed as usize];
                let run = segment.index.index.partitions.get(&partition)?;
                Some((segment.data.clone(), run))
            });
        let open = self
            .open
            .index
            .partitions
            .get(&partition)
            .map(|run| (self.open.data(), run));
        collect_runs(sealed.chain(open), from, to, limit, false)
    }
}

/// The positions of numbers `from..=to` in `runs` (one stream's or partition's, segment by
/// segment, in the order to read them), at most `limit`, and whether more remained. Runs are
/// taken one at a time, so a read that reaches its limit clones no segment past it.
fn collect_runs<'a, D: Disk + 'a>(
    runs: impl Iterator<Item = (SegmentData<D>, &'a Run)>,
    from: u64,
    to: u64,
    limit: usize,
    reverse: bool,
) -> (Positions<D>, bool) {
    let mut out = Vec::new();
    if from > to {
        return (out, false);
    }
    for (data, run) in runs {
        let lo = from.max(run.first);
        let hi = to.min(run.end().saturating_sub(1));
        if run.positions.is_empty() || lo > hi {
            continue;
        }
        let numbers: Box<dyn Iterator<Item = u64>> = if reverse {
            Box::new((lo..=hi).rev())
        } else {
            Box::new(lo..=hi)
        };
        for n in numbers {
            if out.len() == limit {
                return (out, true);
            }
            out.push((data.clone(), run.get(n).expect("inside the run"), n));
        }
    }
    (out, false)
}

/// Where a window read for the frame of `positions[0]` should stop: the start of the last
/// frame that the following positions want from the same segment in ascending file order,
/// each within [`READ_AHEAD_GAP_BYTES`] of the one before and all within [`READ_AHEAD_BYTES`]
/// of the first. A scan of scattered frames (one stream among many, a backward scan) then
/// reads each frame alone instead of a whole window per frame.
fn read_ahead_until<D: Disk>(positions: &[(SegmentData<D>, Pos, u64)]) -> u64 {
    let Some((first, pos, _)) = positions.first() else {
        return 0;
    };
    let start = pos.offset;
    let mut last = start;
    for (data, pos, _) in &positions[1..] {
        let same_segment = std::ptr::eq(data.path(), first.path()) || data.path() == first.path();
        if !same_segment
            || pos.offset < last
            || pos.offset - last > READ_AHEAD_GAP_BYTES
            || pos.offset - start >= READ_AHEAD_BYTES
        {
            break;
        }
        last = pos.offset;
    }
    last
}

/// The transaction frame a read decoded last, whose events it moves out one by one.
struct CachedFrame {
    path: PathBuf,
    offset: u64,
    record: TransactionRecord,
    /// The slots below 128 already moved out.
    taken: u128,
}

impl CachedFrame {
    /// Whether this frame can still give the event at `slot`: the same frame, and that event
    /// not yet moved out (a read asks for each event once, but a repeat must not get an empty
    /// one, so it decodes the frame again).
    fn holds(&self, path: &PathBuf, offset: u64, slot: usize) -> bool {
        self.offset == offset
            && self.path == *path
            && (slot >= 128 || self.taken & (1 << slot) == 0)
    }

    fn take(&mut self, slot: usize) -> Event {
        if slot < 128 {
            self.taken |= 1 << slot;
            self.record.take_event(slot)
        } else {
            self.record.event(slot)
        }
    }
}

/// Counters of a bucket's writes, for benchmarks and `INFO`.
#[derive(Debug, Default)]
pub struct BucketStats {
    /// Batches written (one `write_at` each, several when a batch seals a segment).
    pub batches: AtomicU64,
    /// fsyncs of segment data that covered appends.
    pub syncs: AtomicU64,
    pub transactions: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub seals: AtomicU64,
}

/// A copy of [`BucketStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub batches: u64,
    pub syncs: u64,
    pub transactions: u64,
    pub events: u64,
    pub bytes: u64,
    pub seals: u64,
}

impl BucketStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            seals: self.seals.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Add for StatsSnapshot {
    type Output = StatsSnapshot;
    fn add(self, o: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            batches: self.batches + o.batches,
            syncs: self.syncs + o.syncs,
            transactions: self.transactions + o.transactions,
            events: self.events + o.events,
            bytes: self.bytes + o.bytes,
            seals: self.seals + o.seals,
        }
    }
}

/// The shared, readable side of a bucket.
pub struct BucketShared<D: Disk> {
    pub id: BucketId,
    pub dir: PathBuf,
    pub(crate) view: RwLock<BucketView<D>>,
    max_body: u64,
    published: watch::Sender<u64>,
    pub stats: BucketStats,
}

impl<D: Disk> BucketShared<D> {
    pub(crate) fn new(id: BucketId, dir: PathBuf, view: BucketView<D>, max_body: u64) -> Self {
        BucketShared {
            id,
            dir,
            view: RwLock::new(view),
            max_body,
            published: watch::Sender::new(0),
            stats: BucketStats::default(),
        }
    }

    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, BucketView<D>> {
        self.view.read().expect("bucket view lock poisoned")
    }

    /// Segment files of this bucket (sealed and open).
    pub fn segment_count(&self) -> usize {
        self.read_view().sealed.len() + 1
    }

    /// A receiver that changes whenever new events become visible in this bucket.
    pub fn subscribe_published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    pub fn get_event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let located = self.read_view().locate_event(id);
        let Some((data, pos)) = located else {
            return Ok(None);
        };
        let event = self.read_positions(&[(data.clone(), pos, 0)])?.remove(0);
        if event.event_id != *id {
            return Err(StoreError::corrupt(
                data.path().as_path(),
                pos.offset,
                format!(
                    "index says event {id} but the record holds {}",
                    event.event_id
                ),
            ));
        }
        Ok(Some(event))
    }

    pub fn stream_version(&self, key: &StreamKey) -> Option<StreamVersion> {
        self.read_view().streams.get(key).map(|s| s.last)
    }

    pub fn stream_state(&self, key: &StreamKey) -> Option<StreamState> {
        self.read_view().streams.get(key).copied()
    }

    /// The last sequence of `partition`, if it has events.
    pub fn partition_last(&self, partition: PartitionId) -> Option<PartitionSeq> {
        self.read_view()
            .partitions
            .get(&partition)
            .map(|next| PartitionSeq(next - 1))
    }

    /// Events of a stream with versions in `from..=to`, at most `limit`; `reverse` walks from
    /// `to` down. Returns the events and whether more matched.
    pub fn scan_stream(
        &self,
        key: &StreamKey,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let (positions, more) = self
            .read_view()
            .stream_positions(key, from, to, limit, reverse);
        let events = self.read_positions(&positions)?;
        // A misdirected write can leave a valid frame where the index points: serve only the
        // event the index promised.
        for ((data, pos, version), event) in positions.iter().zip(&events) {
            if event.stream_id != key.1
                || event.partition_id != key.0
                || event.stream_version.0 != *version
            {
                return Err(StoreError::corrupt(
                    data.path().as_path(),
                    pos.offset,
                    format!(
                        "index says stream {} version {version} but the record holds {} version {}",
                        key.1, event.stream_id, event.stream_version
                    ),
                ));
            }
        }
        Ok((events, more))
    }

    pub fn scan_partition(
        &self,
        partition: PartitionId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let (positions, more) = self
            .read_view()
            .partition_positions(partition, from, to, limit);
        let events = self.read_positions(&positions)?;
        for ((data, pos, sequence), event) in positions.iter().zip(&events) {
            if event.partition_id != partition || event.partition_sequence.0 != *sequence {
                return Err(StoreError::corrupt(
                    data.path().as_path(),
                    pos.offset,
                    format!(
                        "index says partition {partition} sequence {sequence} but the record holds partition {} sequence {}",
                        event.partition_id, event.partition_sequence
                    ),
                ));
            }
        }
        Ok((events, more))
    }

    /// Reads events at positions, decoding each transaction frame once even when several of
    /// its events are wanted in a row.
    fn read_positions(
        &self,
        positions: &[(SegmentData<D>, Pos, u64)],
    ) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(positions.len());
        let mut cached: Option<CachedFrame> = None;
        let mut ahead = ReadAhead::default();
        for (i, (data, pos, _)) in positions.iter().enumerate() {
            let slot = pos.slot as usize;
            let hit = cached
                .as_ref()
                .is_some_and(|c| c.holds(data.path(), pos.offset, slot));
            if !hit {
                let record = if positions.len() > 1 {
                    let until = || read_ahead_until(&positions[i..]);
                    data.read_transaction_ahead(pos.offset, self.max_body, &mut ahead, until)?
                } else {
                    data.read_transaction(pos.offset, self.max_body)?
                };
                cached = Some(CachedFrame {
                    path: data.path().clone(),
                    offset: pos.offset,
                    record,
                    taken: 0,
                });
            }
            let frame = cached.as_mut().expect("filled above");
            if slot >= frame.record.events.len() {
                return Err(StoreError::corrupt(
                    data.path().as_path(),
                    pos.offset,
                    "index slot past the transaction's events",
                ));
            }
            out.push(frame.take(slot));
        }
        Ok(out)
    }

    /// Every event of the bucket in file order, read from the data rather than the indexes
    /// (used by tests and `check` to compare the two).
    pub fn scan_all_frames(&self) -> Result<Vec<(u32, u64, TransactionRecord)>, StoreError> {
        let (segments, open_end) = {
            let view = self.read_view();
            let mut segments: Vec<(u32, SegmentData<D>, u64)> = view
                .sealed
                .iter()
                .map(|s| (s.id, s.data.clone(), s.index.data_end))
                .collect();
            segments.push((view.open.id, view.open.data(), view.open.durable_end));
            (segments, view.open.durable_end)
        };
        let _ = open_end;
        let mut out = Vec::new();
        for (id, data, end) in segments {
            let mut offset = SEGMENT_HEADER_FRAME_BYTES;
            while offset < end {
                let record = data.read_transaction(offset, self.max_body)?;
                let len = FRAME_HEADER_BYTES + record.body_len();
                out.push((id, offset, record));
                offset += len;
            }
        }
        Ok(out)
    }

    fn publish(&self, records: &[(u64, &TransactionRecord)], durable_end: u64) {
        let mut view = self.view.write().expect("bucket view lock poisoned");
        for (offset, record) in records {
            view.open.index.insert(*offset, record);
            for event in &record.events {
                let state = StreamState {
                    partition_key: record.partition_key,
                    last: event.stream_version,
                };
                set_stream(
                    &mut view.streams,
                    record.partition_id,
                    &event.stream_id,
                    state,
                );
            }
            view.partitions.insert(
                record.partition_id,
                record.first_sequence.0 + record.events.len() as u64,
            );
        }
        view.open.durable_end = durable_end;
        drop(view);
        self.published.send_modify(|n| *n += 1);
    }
}

/// Creates segment `id` with its header, synced. The caller syncs the directory.
pub(crate) fn create_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    bucket: BucketId,
    id: u32,
) -> Result<(PathBuf, D::File), StoreError> {
    let path = layout::segment_file(dir, id);
    let file = disk
        .open(&path, OpenMode::CreateOrOpen)
        .map_err(|e| StoreError::io("create", &path, e))?;
    let mut header = Vec::new();
    encode_segment_header(
        SegmentHeader {
            bucket: bucket.0,
            segment: id,
        },
        &mut header,
    );
    file.truncate(0)
        .and_then(|()| file.write_at(0, &header))
        .and_then(|()| file.sync())
        .map_err(|e| StoreError::io("write segment header", &path, e))?;
    Ok((path, file))
}

/// Writes a sealed segment's index to its temporary name, synced; returns that name.
pub(crate) fn write_index_temp<D: Disk>(
    disk: &D,
    dir: &Path,
    sealed: &SealedIndex,
) -> Result<PathBuf, StoreError> {
    let temp = layout::index_temp_file(dir, sealed.segment);
    let bytes = encode_index_file(sealed);
    let file = disk
        .open(&temp, OpenMode::CreateOrOpen)
        .map_err(|e| StoreError::io("create", &temp, e))?;
    file.truncate(0)
        .and_then(|()| file.write_at(0, &bytes))
        .and_then(|()| file.sync())
        .map_err(|e| StoreError::io("write index", &temp, e))?;
    Ok(temp)
}

/// Writes a sealed segment's index file: temporary name, sync, rename. The caller syncs the
/// directory.
pub(crate) fn write_index_file<D: Disk>(
    disk: &D,
    dir: &Path,
    sealed: &SealedIndex,
) -> Result<(), StoreError> {
    let temp = write_index_temp(disk, dir, sealed)?;
    let path = layout::index_file(dir, sealed.segment);
    disk.rename(&temp, &path)
        .map_err(|e| StoreError::io("rename", &temp, e))
}

/// The transactions a batch will write, and the state they leave behind, before any of it is
/// durable.
#[derive(Default)]
struct Overlay {
    streams: FixedMap<StreamKey, StreamState>,
    partitions: BTreeMap<PartitionId, u64>,
    /// Event id → (index into the batch's plans, slot).
    events: FixedMap<EventId, (usize, usize)>,
}

impl Overlay {
    fn clear(&mut self) {
        self.streams.clear();
        self.partitions.clear();
        self.events.clear();
    }
}

/// The streams a transaction has touched so far, with their state after it. Most transactions
/// touch one or two streams: a list, which turns into a map past a few entries.
#[derive(Default)]
struct TxnStreams {
    few: Vec<(StreamKey, StreamState)>,
    many: FixedMap<StreamKey, StreamState>,
}

impl TxnStreams {
    const FEW: usize = 8;

    fn get(&self, key: &StreamKeyRef<'_>) -> Option<&StreamState> {
        if self.many.is_empty() {
            self.few
                .iter()
                .find(|(k, _)| key.equivalent(k))
                .map(|(_, s)| s)
        } else {
            self.many.get(key)
        }
    }

    fn insert(&mut self, key: &StreamKeyRef<'_>, state: StreamState) {
        if !self.many.is_empty() {
            set_stream(&mut self.many, key.0, key.1, state);
        } else if let Some(slot) = self.few.iter_mut().find(|(k, _)| key.equivalent(k)) {
            slot.1 = state;
        } else if self.few.len() < Self::FEW {
            self.few.push(((key.0, key.1.clone()), state));
        } else {
            self.many.extend(self.few.drain(..));
            set_stream(&mut self.many, key.0, key.1, state);
        }
    }
}

enum Planned {
    Write(TransactionRecord, AppendOutcome),
    AlreadyStored(AppendOutcome),
}

/// The single writer of a bucket.
pub struct BucketWriter<D: Disk> {
    shared: Arc<BucketShared<D>>,
    disk: D,
    config: StoreConfig,
    /// Where the next frame goes in the open segment. Equals the view's durable end between
    /// batches.
    write_end: u64,
    poisoned: Option<String>,
    /// The frame buffer, reused from batch to batch.
    buf: Vec<u8>,
    /// The batch overlay, reused from batch to batch.
    overlay: Overlay,
    /// Zeros written ahead of the open segment's frames ([`crate::store::prealloc`]).
    prealloc: Preallocation<D>,
}

/// The largest frame buffer a writer keeps between batches.
const KEPT_BUFFER_BYTES: usize = 4 << 20;

type BatchResult = Result<AppendOutcome, AppendError>;

impl<D: Disk> BucketWriter<D> {
    /// The writer of the open segment, whose frames end at `write_end` and whose file is
    /// `file_len` long (longer when zeros were written ahead of the frames).
    pub(crate) fn new(
        shared: Arc<BucketShared<D>>,
        disk: D,
        config: StoreConfig,
        write_end: u64,
        file_len: u64,
    ) -> Self {
        let path = shared.read_view().open.path.clone();
        // Without fsyncs there is no journal commit to save, only zeros to write.
        let ahead = match config.sync {
            SyncPolicy::Always => config.preallocate_bytes,
            SyncPolicy::NeverUnsafe => 0,
        };
        let prealloc = Preallocation::new(
            disk.clone(),
            path,
            write_end,
            file_len,
            config.segment_size_bytes,
            ahead,
        );
        BucketWriter {
            shared,
            disk,
            config,
            write_end,
            poisoned: None,
            buf: Vec::new(),
            overlay: Overlay::default(),
            prealloc,
        }
    }

    /// Zeros to write ahead of the open segment's frames, off the commit path, when they are
    /// running out: run the job on a blocking thread ([`crate::store::prealloc`]).
    pub fn preallocation_job(&self) -> Option<FillJob<D>> {
        if self.poisoned.is_some() {
            return None;
        }
        self.prealloc.request(self.write_end)
    }

    pub fn shared(&self) -> &Arc<BucketShared<D>> {
        &self.shared
    }

    /// Appends a batch of transactions under one sync, returning one result per transaction in
    /// order. Transactions are checked in order, each against the durable state plus the
    /// batch's earlier transactions.
    pub fn append_batch(&mut self, txns: Vec<Transaction>) -> Vec<BatchResult> {
        let count = txns.len();
        if let Some(reason) = &self.poisoned {
            let err = Arc::new(StoreError::Poisoned {
                bucket: self.shared.id,
                reason: reason.clone(),
            });
            return (0..count)
                .map(|_| Err(AppendError::Unavailable(err.clone())))
                .collect();
        }
        let mut results: Vec<Option<BatchResult>> = (0..count).map(|_| None).collect();
        let mut plans: Vec<(usize, TransactionRecord, AppendOutcome)> = Vec::with_capacity(count);
        {
            let view = self.shared.read_view();
            // The overlay's maps keep their capacity from batch to batch.
            let mut overlay = std::mem::take(&mut self.overlay);
            for (i, txn) in txns.into_iter().enumerate() {
                match self.plan(&view, &overlay, &plans, txn) {
                    Ok(Planned::Write(record, outcome)) => {
                        for (slot, event) in record.events.iter().enumerate() {
                            overlay.events.insert(event.event_id, (plans.len(), slot));
                            let state = StreamState {
                                partition_key: record.partition_key,
                                last: event.stream_version,
                            };
                            set_stream(
                                &mut overlay.streams,
                                record.partition_id,
                                &event.stream_id,
                                state,
                            );
                        }
                        overlay.partitions.insert(
                            record.partition_id,
                            record.first_sequence.0 + record.events.len() as u64,
                        );
                        plans.push((i, record, outcome));
                    }
                    Ok(Planned::AlreadyStored(outcome)) => results[i] = Some(Ok(outcome)),
                    Err(err) => results[i] = Some(Err(err)),
                }
            }
            overlay.clear();
            self.overlay = overlay;
        }
        match self.write_plans(&plans) {
            Ok(()) => {
                for (i, _, outcome) in plans {
                    results[i] = Some(Ok(outcome));
                }
            }
            Err((published, err)) => {
                // Published transactions are durable and visible: they succeeded. Every other
                // answer of this batch may rest on state that never became durable, so it
                // becomes the failure.
                let err = Arc::new(err);
                let mut published_ids = vec![false; count];
                for (i, _, outcome) in plans.into_iter().take(published) {
                    published_ids[i] = true;
                    results[i] = Some(Ok(outcome));
                }
                let indeterminate = self.poisoned.is_some();
                for (i, result) in results.iter_mut().enumerate() {
                    if !published_ids[i] {
                        *result = Some(Err(if indeterminate {
                            AppendError::Indeterminate(err.clone())
                        } else {
                            AppendError::Unavailable(err.clone())
                        }));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every transaction answered"))
            .collect()
    }

    fn validate(&self, txn: &Transaction) -> Result<PartitionId, AppendError> {
        let len = txn.events.len();
        if len == 0 {
            return Err(InvalidInput::EmptyTransaction.into());
        }
        if len > self.config.max_transaction_events {
            return Err(InvalidInput::TooManyEvents {
                len,
                max: self.config.max_transaction_events,
            }
            .into());
        }
        for event in &txn.events {
            validate_event_name(&event.event_name)?;
        }
        // Most transactions hold a few events: comparing pairs beats building a set there.
        let duplicate = if len <= 16 {
            let ids = || txn.events.iter().map(|e| e.event_id).enumerate();
            ids()
                .find(|&(i, id)| txn.events[..i].iter().any(|e| e.event_id == id))
                .map(|(_, id)| id)
        } else {
            let mut seen = FixedMap::default();
            txn.events
                .iter()
                .map(|e| e.event_id)
                .find(|id| seen.insert(*id, ()).is_some())
        };
        if let Some(id) = duplicate {
            return Err(InvalidInput::DuplicateEventId(id).into());
        }
        let partition = txn.partition_key.partition(self.config.partition_count);
        assert_eq!(
            self.config.bucket_of(partition.0),
            self.shared.id.0,
            "transactions are routed to the bucket of their partition"
        );
        Ok(partition)
    }

    fn plan(
        &self,
        view: &BucketView<D>,
        overlay: &Overlay,
        plans: &[(usize, TransactionRecord, AppendOutcome)],
        txn: Transaction,
    ) -> Result<Planned, AppendError> {
        let partition = self.validate(&txn)?;

        // Idempotency: a retry of an append that is already stored returns its first result.
        let mut stored = Vec::new();
        for new in &txn.events {
            let existing = match overlay.events.get(&new.event_id) {
                Some(&(plan, slot)) => Some(plans[plan].1.event(slot)),
                None => match view.locate_event(&new.event_id) {
                    Some((data, pos)) => {
                        let record = data
                            .read_transaction(pos.offset, self.shared.max_body)
                            .map_err(|e| AppendError::Unavailable(Arc::new(e)))?;
                        Some(record.event(pos.slot as usize))
                    }
                    None => None,
                },
            };
            if let Some(existing) = existing {
                if !same_content(&existing, txn.partition_key, new) {
                    return Err(AppendError::EventIdConflict {
                        event_id: new.event_id,
                    });
                }
                stored.push(existing);
            }
        }
        if !stored.is_empty() {
            if stored.len() != txn.events.len() {
                return Err(AppendError::EventIdConflict {
                    event_id: stored[0].event_id,
                });
            }
            return Ok(Planned::AlreadyStored(AppendOutcome {
                transaction_id: stored[0].transaction_id,
                partition_key: stored[0].partition_key,
                partition_id: stored[0].partition_id,
                events: stored
                    .iter()
                    .map(|e| AppendedEvent {
                        event_id: e.event_id,
                        stream_id: e.stream_id.clone(),
                        stream_version: e.stream_version,
                        partition_sequence: e.partition_sequence,
                        timestamp_ms: e.timestamp_ms,
                    })
                    .collect(),
                already_stored: true,
            }));
        }

        // Expected versions, chaining through repeated streams of this transaction.
        let first_sequence = overlay
            .partitions
            .get(&partition)
            .or_else(|| view.partitions.get(&partition))
            .copied()
            .unwrap_or(0);
        let mut local = TxnStreams::default();
        let mut events = Vec::with_capacity(txn.events.len());
        let mut appended = Vec::with_capacity(txn.events.len());
        for (slot, new) in txn.events.into_iter().enumerate() {
            let key = StreamKeyRef(partition, &new.stream_id);
            let current = local
                .get(&key)
                .or_else(|| overlay.streams.get(&key))
                .or_else(|| view.streams.get(&key))
                .copied();
            if let Some(state) = current
                && state.partition_key != txn.partition_key
            {
                return Err(AppendError::PartitionKeyMismatch {
                    stream: new.stream_id,
                    stored: state.partition_key,
                    given: txn.partition_key,
                });
            }
            let last = current.map(|s| s.last);
            if !version_check_accepts(new.expected_version, last) {
                return Err(AppendError::WrongExpectedVersion {
                    stream: new.stream_id,
                    partition_key: txn.partition_key,
                    expected: new.expected_version,
                    actual: CurrentVersion(last),
                });
            }
            let version = StreamVersion(last.map_or(0, |v| v.0 + 1));
            local.insert(
                &key,
                StreamState {
                    partition_key: txn.partition_key,
                    last: version,
                },
            );
            appended.push(AppendedEvent {
                event_id: new.event_id,
                stream_id: new.stream_id.clone(),
                stream_version: version,
                partition_sequence: PartitionSeq(first_sequence + slot as u64),
                timestamp_ms: new.timestamp_ms,
            });
            events.push(EventRecord {
                event_id: new.event_id,
                stream_id: new.stream_id,
                stream_version: version,
                event_name: new.event_name,
                timestamp_ms: new.timestamp_ms,
                metadata: new.metadata,
                payload: new.payload,
            });
        }
        let record = TransactionRecord {
            transaction_id: txn.transaction_id,
            partition_key: txn.partition_key,
            partition_id: partition,
            first_sequence: PartitionSeq(first_sequence),
            events,
        };
        let len = record.body_len();
        if len > self.config.max_transaction_bytes {
            return Err(InvalidInput::TransactionTooLarge {
                len,
                max: self.config.max_transaction_bytes,
            }
            .into());
        }
        let outcome = AppendOutcome {
            transaction_id: record.transaction_id,
            partition_key: record.partition_key,
            partition_id: partition,
            events: appended,
            already_stored: false,
        };
        Ok(Planned::Write(record, outcome))
    }

    /// Writes the planned transactions, sealing segments as they fill. On failure, returns
    /// how many plans were published (durable and visible) before it.
    fn write_plans(
        &mut self,
        plans: &[(usize, TransactionRecord, AppendOutcome)],
    ) -> Result<(), (usize, StoreError)> {
        // Sized for the whole batch up front; the writer keeps the buffer between batches.
        let frames: u64 = plans
            .iter()
            .map(|(_, r, _)| FRAME_HEADER_BYTES + r.body_len())
            .sum();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(usize::try_from(frames).unwrap_or(usize::MAX));
        let mut pending: Vec<(u64, &TransactionRecord)> = Vec::with_capacity(plans.len());
        let mut published = 0;
        for (k, (_, record, _)) in plans.iter().enumerate() {
            let frame_len = FRAME_HEADER_BYTES + record.body_len();
            let mut offset = self.write_end + buf.len() as u64;
            if offset + frame_len > self.config.segment_size_bytes
                && offset > SEGMENT_HEADER_FRAME_BYTES
            {
                self.flush(&mut buf, &mut pending)
                    .map_err(|e| (published, e))?;
                published = k;
                self.seal().map_err(|e| (published, e))?;
                offset = self.write_end;
            }
            record.encode(&mut buf);
            pending.push((offset, record));
        }
        let result = self
            .flush(&mut buf, &mut pending)
            .map_err(|e| (published, e));
        // Keep a modest buffer for the next batch; a huge one would pin memory.
        if buf.capacity() <= KEPT_BUFFER_BYTES {
            self.buf = buf;
        }
        result
    }

    /// Writes `buf` at the write end, syncs it, and publishes `pending`.
    fn flush(
        &mut self,
        buf: &mut Vec<u8>,
        pending: &mut Vec<(u64, &TransactionRecord)>,
    ) -> Result<(), StoreError> {
        if pending.is_empty() {
            return Ok(());
        }
        let (file, path) = {
            let view = self.shared.read_view();
            (view.open.file.clone(), view.open.path.clone())
        };
        let end = self.write_end + buf.len() as u64;
        // Inside zeros written and synced ahead, no fill can be writing; past them, the write
        // waits for any zero write in progress.
        let written = if self.prealloc.covers(end) {
            file.write_at(self.write_end, buf)
        } else {
            self.prealloc
                .write_locked(end, || file.write_at(self.write_end, buf))
        };
        if let Err(err) = written {
            // A read-only file system refuses the whole write, and then refuses the cut too:
            // when the file shows that nothing landed, there is nothing to cut, and the bucket
            // takes appends again once the file system is writable.
            let nothing_landed = disk::is_not_writable(&err) && self.untouched(&*file, end);
            if !nothing_landed {
                self.cut_back(&*file, &path)?;
            }
            return Err(StoreError::io("write", path.as_ref(), err));
        }
        if self.config.sync == SyncPolicy::Always
            && !self.planted_ack_before_sync()
            && let Err(err) = file.sync()
        {
            let err = StoreError::io("sync", path.as_ref(), err);
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        let stats = &self.shared.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if self.config.sync == SyncPolicy::Always {
            stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .transactions
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        let events: usize = pending.iter().map(|(_, r)| r.events.len()).sum();
        stats.events.fetch_add(events as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.shared.publish(pending, end);
        self.write_end = end;
        buf.clear();
        pending.clear();
        Ok(())
    }

    #[cfg(feature = "planted-bugs")]
    fn planted_ack_before_sync(&self) -> bool {
        crate::planted::active(crate::planted::PlantedBug::AckBeforeSync)
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn planted_ack_before_sync(&self) -> bool {
        false
    }

    /// Whether the file shows nothing of a failed write of frames from the write end to `end`:
    /// it ends at the write end, or every byte the write targeted still reads as the zeros
    /// written ahead, so whatever landed (if anything) changed nothing.
    fn untouched(&self, file: &D::File, end: u64) -> bool {
        let Ok(len) = file.len() else {
            return false;
        };
        if len <= self.write_end {
            return len == self.write_end;
        }
        let mut bytes = vec![0u8; (end.min(len) - self.write_end) as usize];
        file.read_at(self.write_end, &mut bytes).is_ok() && bytes.iter().all(|&b| b == 0)
    }

    /// After a failed write, removes whatever part of it reached the file and makes that
    /// durable, so a crash cannot resurrect a frame whose append was reported as not written.
    /// Zeros written ahead go with it (a fill in progress is stopped first).
    fn cut_back(&mut self, file: &D::File, path: &Path) -> Result<(), StoreError> {
        // Whatever was past the write end is cut below, known or not.
        let _ = self.prealloc.reset(None, self.write_end);
        let result = file.truncate(self.write_end).and_then(|()| file.sync());
        if let Err(err) = result {
            let err = StoreError::io("truncate after failed write", path, err);
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        Ok(())
    }

    /// Seals the open segment (all of it durable and published) and opens the next one.
    fn seal(&mut self) -> Result<(), StoreError> {
        let (old_id, old_file, old_path, index) = {
            let view = self.shared.read_view();
            (
                view.open.id,
                view.open.file.clone(),
                view.open.path.clone(),
                view.open.index.clone(),
            )
        };
        let dir = self.shared.dir.clone();
        // A sealed segment holds its frames and nothing after them: zeros written ahead go
        // (any fill is stopped first, so none lands after the cut).
        if self.prealloc.reset(None, self.write_end) {
            old_file
                .truncate(self.write_end)
                .and_then(|()| old_file.sync())
                .map_err(|e| StoreError::io("cut preallocated space", old_path.as_ref(), e))?;
        }
        let sealed = SealedIndex::build(old_id, self.write_end, index);
        // Order matters for recovery: the next segment is created and made durable before the
        // index is renamed into place, so an index file always has a successor segment, and
        // an index without one means lost data rather than an interrupted seal.
        let temp = write_index_temp(&self.disk, &dir, &sealed)?;
        let new_id = old_id + 1;
        let (new_path, new_file) = create_segment(&self.disk, &dir, self.shared.id, new_id)?;
        self.disk
            .sync_dir(&dir)
            .map_err(|e| StoreError::io("sync directory", &dir, e))?;
        let index_path = layout::index_file(&dir, old_id);
        self.disk
            .rename(&temp, &index_path)
            .map_err(|e| StoreError::io("rename", &temp, e))?;
        self.disk
            .sync_dir(&dir)
            .map_err(|e| StoreError::io("sync directory", &dir, e))?;
        let map = old_file
            .map()
            .map_err(|e| StoreError::io("map", old_path.as_ref(), e))?;
        let mut view = self.shared.view.write().expect("bucket view lock poisoned");
        view.sealed.push(SealedSegment {
            id: old_id,
            data: SegmentData::sealed(old_path, map),
            index: sealed,
        });
        let BucketView {
            sealed,
            sealed_events,
            sealed_runs,
            ..
        } = &mut *view;
        let indexes = sealed.iter().map(|s| &s.index);
        sealed_events.add(&sealed.last().expect("just sealed").index, indexes);
        sealed_runs.add(sealed.len() - 1, &sealed.last().expect("just sealed").index);
        let new_path = Arc::new(new_path);
        view.open = OpenSegment {
            id: new_id,
            path: new_path.clone(),
            file: Arc::new(new_file),
            index: SegmentIndex::default(),
            durable_end: SEGMENT_HEADER_FRAME_BYTES,
        };
        drop(view);
        self.prealloc
            .reset(Some(new_path), SEGMENT_HEADER_FRAME_BYTES);
        self.write_end = SEGMENT_HEADER_FRAME_BYTES;
        self.shared.stats.seals.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            bucket = self.shared.id.0,
            segment = old_id,
            "sealed segment"
        );
        Ok(())
    }
}

/// The expected-version check, with its planted off-by-one for the simulator's teeth.
fn version_check_accepts(
    expected: crate::model::ExpectedVersion,
    last: Option<StreamVersion>,
) -> bool {
    #[cfg(feature = "planted-bugs")]
    if crate::planted::active(crate::planted::PlantedBug::VersionCheckOffByOne)
        && let (crate::model::ExpectedVersion::Exact(n), Some(v)) = (expected, last)
    {
        return n == v.0 || n + 1 == v.0;
    }
    expected.accepts(last)
}

/// Whether a stored event is the same append as `new` (content, not position or timestamp).
fn same_content(existing: &Event, key: PartitionKey, new: &NewEvent) -> bool {
    #[cfg(feature = "planted-bugs")]
    if crate::planted::active(crate::planted::PlantedBug::IdempotencyIgnoresContent) {
        return true;
    }
    existing.partition_key == key
        && existing.stream_id == new.stream_id
        && existing.event_name == new.event_name
        && existing.metadata == new.metadata
        && existing.payload == new.payload
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use disk::{FaultConfig, SimDisk};
    use uuid::Uuid;

    use super::*;
    use crate::model::{ExpectedVersion, StreamId, TransactionId};

    #[test]
    fn a_window_reaches_only_the_nearby_frames_that_follow() {
        let segment = |name: &str| -> SegmentData<SimDisk> {
            SegmentData::Sealed {
                path: Arc::new(PathBuf::from(name)),
                map: Bytes::new(),
            }
        };
        let (a, b) = (segment("a"), segment("b"));
        let at = |data: &SegmentData<SimDisk>, offsets: &[u64]| -> Vec<_> {
            offsets
                .iter()
                .map(|&offset| (data.clone(), Pos { offset, slot: 0 }, 0))
                .collect()
        };
        // Adjacent frames (and two events of one frame) come in one window.
        assert_eq!(read_ahead_until(&at(&a, &[100, 400, 400, 900])), 900);
        // A gap wider than READ_AHEAD_GAP_BYTES ends it.
        let far = 900 + READ_AHEAD_GAP_BYTES + 1;
        assert_eq!(read_ahead_until(&at(&a, &[100, 900, far])), 900);
        // A backward scan reads each frame alone.
        assert_eq!(read_ahead_until(&at(&a, &[900, 400, 100])), 900);
        // So does the last frame of a segment before the next one.
        let mut across = at(&a, &[100]);
        across.extend(at(&b, &[200]));
        assert_eq!(read_ahead_until(&across), 100);
        // Never more than READ_AHEAD_BYTES, however dense the frames.
        let dense: Vec<u64> = (0..100).map(|i| i * 1024).collect();
        let until = read_ahead_until(&at(&a, &dense));
        assert!(
            until < READ_AHEAD_BYTES && until + 1024 >= READ_AHEAD_BYTES,
            "{until}"
        );
        assert_eq!(read_ahead_until::<SimDisk>(&[]), 0);
    }

    /// A key's positions in `from..=to` found the plain way: every run of every segment
    /// (sealed in order, then the open one), flattened, reversed for a backward read.
    fn scan_every_segment(
        runs: Vec<(PathBuf, &Run)>,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> (Vec<(PathBuf, Pos, u64)>, bool) {
        let mut all = Vec::new();
        for (path, run) in runs {
            for (i, pos) in run.positions.iter().enumerate() {
                let n = run.first + i as u64;
                if (from..=to).contains(&n) {
                    all.push((path.clone(), *pos, n));
                }
            }
        }
        if reverse {
            all.reverse();
        }
        let more = all.len() > limit;
        all.truncate(limit);
        (all, more)
    }

    fn plain(positions: (Positions<SimDisk>, bool)) -> (Vec<(PathBuf, Pos, u64)>, bool) {
        let (positions, more) = positions;
        let positions = positions
            .into_iter()
            .map(|(data, pos, n)| (data.path().clone(), pos, n))
            .collect();
        (positions, more)
    }

    /// Every stream and partition read, over ranges inside, across and past the segments,
    /// finds through [`SealedRuns`] exactly what asking every segment finds.
    fn assert_runs_match_every_segment(view: &BucketView<SimDisk>) {
        let ranges = [
            (0, u64::MAX, usize::MAX),
            (0, u64::MAX, 7),
            (3, 40, 1000),
            (25, 26, 1),
            (13, u64::MAX, 0),
            (50, 20, 10),
            (200, u64::MAX, 5),
        ];
        let keys: Vec<StreamKey> = view.streams.keys().cloned().collect();
        for key in &keys {
            for (from, to, limit) in ranges {
                for reverse in [false, true] {
                    let mut runs: Vec<(PathBuf, &Run)> = view
                        .sealed
                        .iter()
                        .filter_map(|s| {
                            let run = &s.index.index.streams.get(key)?.run;
                            Some((s.data.path().clone(), run))
                        })
                        .collect();
                    if let Some(s) = view.open.index.streams.get(key) {
                        runs.push((view.open.path.as_ref().clone(), &s.run));
                    }
                    assert_eq!(
                        plain(view.stream_positions(key, from, to, limit, reverse)),
                        scan_every_segment(runs, from, to, limit, reverse),
                        "{key:?} {from}..={to} limit {limit} reverse {reverse}"
                    );
                }
            }
        }
        for &partition in view.partitions.keys() {
            for (from, to, limit) in ranges {
                let mut runs: Vec<(PathBuf, &Run)> = view
                    .sealed
                    .iter()
                    .filter_map(|s| {
                        let run = s.index.index.partitions.get(&partition)?;
                        Some((s.data.path().clone(), run))
                    })
                    .collect();
                if let Some(run) = view.open.index.partitions.get(&partition) {
                    runs.push((view.open.path.as_ref().clone(), run));
                }
                assert_eq!(
                    plain(view.partition_positions(partition, from, to, limit)),
                    scan_every_segment(runs, from, to, limit, false),
                    "p{partition:?} {from}..={to} limit {limit}"
                );
            }
        }
    }

    #[test]
    fn sealed_runs_find_what_every_segment_holds_after_seals_and_recovery() {
        let disk = SimDisk::new(7, FaultConfig::default());
        let root = Path::new("/db");
        let config = StoreConfig {
            partition_count: 4,
            bucket_count: 1,
            segment_size_bytes: 1024,
            max_transaction_bytes: 512,
            ..StoreConfig::default()
        };
        let streams: Vec<StreamId> = (0..6)
            .map(|i| StreamId::new(&format!("stream-{i}")).unwrap())
            .collect();
        {
            let (_store, mut writers, _) = crate::store::open(&disk, root, config.clone()).unwrap();
            for n in 0..300u128 {
                // Streams 2k and 2k + 1 share a partition key; every third transaction
                // appends to both.
                let i = (n % 6) as usize;
                let mut names = vec![streams[i].clone()];
                if n % 3 == 0 {
                    names.push(streams[i ^ 1].clone());
                }
                let txn = Transaction {
                    transaction_id: TransactionId(Uuid::from_u128(n + (1 << 100))),
                    partition_key: PartitionKey::for_stream(&streams[i & !1]),
                    events: names
                        .into_iter()
                        .enumerate()
                        .map(|(i, stream_id)| NewEvent {
                            event_id: EventId(Uuid::from_u128(n * 2 + i as u128 + 1)),
                            stream_id,
                            event_name: "Happened".into(),
                            expected_version: ExpectedVersion::Any,
                            timestamp_ms: 0,
                            metadata: Bytes::new(),
                            payload: Bytes::from_static(b"0123456789"),
                        })
                        .collect(),
                };
                let results = writers[0].append_batch(vec![txn]);
                assert!(results[0].is_ok(), "{:?}", results[0]);
                if n % 50 == 0 {
                    assert_runs_match_every_segment(&writers[0].shared().read_view());
                }
            }
            let view = writers[0].shared().read_view();
            assert!(view.sealed.len() >= 10, "{} sealed", view.sealed.len());
            assert_runs_match_every_segment(&view);
        }
        let (_store, writers, _) = crate::store::open(&disk, root, config).unwrap();
        let view = writers[0].shared().read_view();
        assert!(view.sealed.len() >= 10, "{} sealed", view.sealed.len());
        assert_runs_match_every_segment(&view);
    }
}
