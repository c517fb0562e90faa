//! Opening a bucket: verify what is on disk, repair only what a crash can leave behind, and
//! refuse what a crash cannot explain.
//!
//! For each bucket directory:
//! 1. Leftover `*.idx.tmp` files (a seal cut short) are removed.
//! 2. Segment ids must be contiguous; a missing segment is corruption.
//! 3. Every segment but the last is sealed. Its index file is loaded and checked (CRC, id,
//!    bounds); a missing or invalid index is rebuilt from the segment's frames and written
//!    back, never skipped. Versions and sequences must continue gaplessly from segment to
//!    segment.
//! 4. The last segment is open. It is scanned frame by frame: every CRC verified, every
//!    version and sequence checked to continue its predecessor. The first frame that does not
//!    decode ends the log: the torn tail is cut off, the cut is synced, and the report says
//!    how many bytes went. If a valid frame follows the damaged one, the damage is not a torn
//!    tail (a crash only tears the unsynced end) and opening fails instead of deleting data
//!    that may have been acknowledged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use disk::{Disk, File, OpenMode};

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::model::{BucketId, PartitionId};
use crate::store::bucket::{
    BucketShared, BucketView, BucketWriter, OpenSegment, SealedSegment, StreamState,
    create_segment, write_index_file,
};
use crate::store::index::{
    FixedMap, SealedEvents, SealedIndex, SealedRuns, SealedTables, SegmentIndex, decode_index_file,
};
use crate::store::layout::{self, BucketEntry};
use crate::store::record::{
    FRAME_HEADER_BYTES, FrameError, KIND_SEGMENT_HEADER, KIND_TRANSACTION,
    SEGMENT_HEADER_FRAME_BYTES, TransactionRecord, decode_frame, decode_segment_header,
};
use crate::store::segment::{SegmentData, read_open_segment};

/// Bytes cut from the end of an open segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub segment: u32,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

/// What opening one bucket found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketRecovery {
    pub bucket: u16,
    pub created: bool,
    pub segments: u32,
    /// Transactions found in the open segment.
    pub open_transactions: u64,
    pub truncated: Option<Truncation>,
    /// Sealed segments whose index file was missing or invalid and was rebuilt, with why.
    pub rebuilt_indexes: Vec<(u32, String)>,
    pub removed_files: Vec<String>,
}

/// What opening the store found and did, bucket by bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub buckets: Vec<BucketRecovery>,
}

impl RecoveryReport {
    pub fn truncated_bytes(&self) -> u64 {
        self.buckets
            .iter()
            .filter_map(|b| b.truncated.as_ref())
            .map(|t| t.bytes)
            .sum()
    }

    /// Whether recovery changed anything on disk beyond creating new buckets.
    pub fn repaired_anything(&self) -> bool {
        self.buckets.iter().any(|b| {
            b.truncated.is_some() || !b.rebuilt_indexes.is_empty() || !b.removed_files.is_empty()
        })
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.buckets {
            write!(
                f,
                "bucket {}: {} segment(s), {} transaction(s) in the open segment",
                b.bucket, b.segments, b.open_transactions
            )?;
            if b.created {
                write!(f, ", created")?;
            }
            if let Some(t) = &b.truncated {
                write!(
                    f,
                    ", truncated {} byte(s) of segment {} at offset {} ({})",
                    t.bytes, t.segment, t.offset, t.reason
                )?;
            }
            for (segment, why) in &b.rebuilt_indexes {
                write!(f, ", rebuilt index of segment {segment} ({why})")?;
            }
            for name in &b.removed_files {
                write!(f, ", removed {name}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Versions and sequences so far, checked as each segment or frame is added.
#[derive(Default)]
struct Continuity {
    streams: FixedMap<crate::store::index::StreamKey, StreamState>,
    partitions: BTreeMap<PartitionId, u64>,
}

impl Continuity {
    fn add_sealed(&mut self, index: &SealedTables) -> Result<(), String> {
        for (key, s) in &index.streams {
            // One lookup per stream: recovery adds every sealed segment at each start.
            let known = self.streams.get_mut(key);
            let expected = known.as_ref().map_or(0, |st| st.last.0 + 1);
            if let Some(st) = &known
                && st.partition_key != s.partition_key
            {
                return Err(format!("stream {} changes partition key", key.1));
            }
            if s.run.first != expected || s.run.positions.is_empty() {
                return Err(format!(
                    "stream {} resumes at version {} instead of {expected}",
                    key.1, s.run.first
                ));
            }
            let state = StreamState {
                partition_key: s.partition_key,
                last: crate::model::StreamVersion(s.run.end() - 1),
            };
            match known {
                Some(st) => *st = state,
                None => {
                    self.streams.insert(key.clone(), state);
                }
            }
        }
        for (partition, run) in &index.partitions {
            let expected = self.partitions.get(partition).copied().unwrap_or(0);
            if run.first != expected || run.positions.is_empty() {
                return Err(format!(
                    "partition {partition} resumes at sequence {} instead of {expected}",
                    run.first
                ));
            }
            self.partitions.insert(*partition, run.end());
        }
        Ok(())
    }

    fn add_record(&mut self, record: &TransactionRecord) -> Result<(), String> {
        let expected = self
            .partitions
            .get(&record.partition_id)
            .copied()
            .unwrap_or(0);
        if record.first_sequence.0 != expected {
            return Err(format!(
                "partition {} continues at sequence {} instead of {expected}",
                record.partition_id, record.first_sequence
            ));
        }
        let mut local = BTreeMap::new();
        for event in &record.events {
            let key = (record.partition_id, event.stream_id.clone());
            let prev = local.get(&key).or_else(|| self.streams.get(&key)).copied();
            if let Some(prev) = prev
                && prev.partition_key != record.partition_key
            {
                return Err(format!("stream {} changes partition key", event.stream_id));
            }
            let expected = prev.map_or(0, |p| p.last.0 + 1);
            if event.stream_version.0 != expected {
                return Err(format!(
                    "stream {} continues at version {} instead of {expected}",
                    event.stream_id, event.stream_version
                ));
            }
            local.insert(
                key,
                StreamState {
                    partition_key: record.partition_key,
                    last: event.stream_version,
                },
            );
        }
        self.streams.extend(local);
        self.partitions.insert(
            record.partition_id,
            record.first_sequence.0 + record.events.len() as u64,
        );
        Ok(())
    }
}

/// Scans the frames of a segment's bytes after its header. Returns the index, the offset
/// just past the last good frame, and the error that stopped the scan (if not the end).
fn scan_frames(
    bytes: &[u8],
    max_body: u64,
    mut on_record: impl FnMut(u64, &TransactionRecord) -> Result<(), String>,
) -> Result<(SegmentIndex, u64, Option<FrameError>), (u64, String)> {
    let mut index = SegmentIndex::default();
    let mut offset = SEGMENT_HEADER_FRAME_BYTES;
    while offset < bytes.len() as u64 {
        let frame = match decode_frame(&bytes[offset as usize..], max_body) {
            Ok(frame) => frame,
            Err(err) => return Ok((index, offset, Some(err))),
        };
        let record = TransactionRecord::decode(&frame).map_err(|e| (offset, e.to_string()))?;
        on_record(offset, &record).map_err(|e| (offset, e))?;
        index.insert(offset, &record);
        offset += frame.encoded_len();
    }
    Ok((index, offset, None))
}

fn check_header(bytes: &[u8], bucket: BucketId, id: u32) -> Result<(), String> {
    let frame = decode_frame(bytes, 64).map_err(|e| format!("segment header: {e}"))?;
    let header = decode_segment_header(&frame).map_err(|e| e.to_string())?;
    if header.bucket != bucket.0 || header.segment != id {
        return Err(format!(
            "header names bucket {} segment {}",
            header.bucket, header.segment
        ));
    }
    Ok(())
}

type OpenedBucket<D> = (Arc<BucketShared<D>>, BucketWriter<D>, BucketRecovery);

/// Opens (creating if needed) and recovers one bucket.
pub(crate) fn open_bucket<D: Disk>(
    disk: &D,
    root: &Path,
    bucket: BucketId,
    config: &StoreConfig,
) -> Result<OpenedBucket<D>, StoreError> {
    let dir = layout::bucket_dir(root, bucket.0);
    let max_body = config.max_transaction_bytes;
    let mut report = BucketRecovery {
        bucket: bucket.0,
        ..Default::default()
    };
    if !disk.exists(&dir) {
        disk.create_dir_all(&dir)
            .map_err(|e| StoreError::io("create directory", &dir, e))?;
        report.created = true;
    }
    // Synced on every open: an earlier open may have created the directory and failed before
    // making it durable.
    disk.sync_dir(root)
        .map_err(|e| StoreError::io("sync directory", root, e))?;
    let names = disk
        .list_dir(&dir)
        .map_err(|e| StoreError::io("list", &dir, e))?;
    let mut segments = Vec::new();
    let mut indexes = Vec::new();
    for name in names {
        match layout::parse_bucket_entry(&name) {
            BucketEntry::Segment(id) => segments.push(id),
            BucketEntry::Index(id) => indexes.push(id),
            BucketEntry::IndexTemp(_) => {
                let path = dir.join(&name);
                disk.remove_file(&path)
                    .map_err(|e| StoreError::io("remove", &path, e))?;
                report.removed_files.push(name);
            }
            BucketEntry::Unknown(name) => {
                tracing::warn!(bucket = bucket.0, file = %name, "ignoring unknown file in bucket directory");
            }
        }
    }
    segments.sort_unstable();
    for pair in segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(StoreError::corrupt(
                layout::segment_file(&dir, pair[0] + 1),
                0,
                "segment file is missing between its neighbours",
            ));
        }
    }
    if segments.is_empty() {
        create_segment(disk, &dir, bucket, 0)?;
        segments.push(0);
    }
    let open_id = *segments.last().expect("at least one segment");
    if let Some(&id) = indexes.iter().find(|&&id| id >= open_id) {
        // A seal creates segment N+1 and syncs the directory before it renames N's index into
        // place, so an index at or past the last segment means segments were lost, not that a
        // seal was interrupted.
        return Err(StoreError::corrupt(
            layout::index_file(&dir, id),
            0,
            format!(
                "index file of segment {id} exists but segment {} is missing",
                id + 1
            ),
        ));
    }

    let mut continuity = Continuity::default();
    let mut sealed = Vec::new();
    for &id in &segments[..segments.len() - 1] {
        let path = layout::segment_file(&dir, id);
        let file = disk
            .open(&path, OpenMode::Read)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let map = file.map().map_err(|e| StoreError::io("map", &path, e))?;
        check_header(&map, bucket, id).map_err(|e| StoreError::corrupt(&path, 0, e))?;
        let index = match load_index(disk, &dir, id, map.len() as u64) {
            Ok(index) => index,
            Err(IndexProblem::DataLost(why)) => {
                return Err(StoreError::corrupt(&path, map.len() as u64, why));
            }
            Err(IndexProblem::Invalid(why)) => {
                let (index, end, stop) = scan_frames(&map, max_body, |_, _| Ok(()))
                    .map_err(|(offset, e)| StoreError::corrupt(&path, offset, e))?;
                if let Some(
                    err @ (FrameError::BadCrc { .. }
                    | FrameError::BadKind(_)
                    | FrameError::TooLong { .. }
                    | FrameError::Malformed { .. }),
                ) = stop
                {
                    return Err(StoreError::corrupt(
                        &path,
                        end,
                        format!("sealed segment: {err}"),
                    ));
                }
                let sealed_index = SealedIndex::build(id, end, index);
                write_index_file(disk, &dir, &sealed_index)?;
                disk.sync_dir(&dir)
                    .map_err(|e| StoreError::io("sync directory", &dir, e))?;
                report.rebuilt_indexes.push((id, why));
                sealed_index
            }
        };
        continuity
            .add_sealed(&index.index)
            .map_err(|e| StoreError::corrupt(&path, 0, e))?;
        sealed.push(SealedSegment {
            id,
            data: SegmentData::sealed(Arc::new(path), map),
            index,
        });
    }

    let path = layout::segment_file(&dir, open_id);
    let file = disk
        .open(&path, OpenMode::ReadWrite)
        .map_err(|e| StoreError::io("open", &path, e))?;
    let bytes = read_open_segment(
        || file.map().map_err(|e| StoreError::io("read", &path, e)),
        max_body,
    )?;
    let len = bytes.len() as u64;
    let (index, end, file_len, file) = if let Err(why) = check_header(&bytes, bucket, open_id) {
        // A segment's header is synced before the directory entry that names the segment, and
        // no frame is written before that, so a torn header can only be a short file. A bad
        // header with bytes after it is damage: refuse rather than wipe what follows.
        if len > SEGMENT_HEADER_FRAME_BYTES {
            return Err(StoreError::corrupt(
                &path,
                0,
                format!("{why}, with {len} bytes in the segment; run `sierradb check`"),
            ));
        }
        // The header itself is torn: the segment was being created when the crash came, so
        // nothing after it can have been acknowledged.
        drop(bytes);
        drop(file);
        let (_, file) = create_segment(disk, &dir, bucket, open_id)?;
        report.truncated = Some(Truncation {
            segment: open_id,
            offset: 0,
            bytes: len,
            reason: why,
        });
        let end = SEGMENT_HEADER_FRAME_BYTES;
        (SegmentIndex::default(), end, end, file)
    } else {
        let (index, end, stop) =
            scan_frames(&bytes, max_body, |_, record| continuity.add_record(record))
                .map_err(|(offset, e)| StoreError::corrupt(&path, offset, e))?;
        report.open_transactions = index
            .partitions
            .values()
            .flat_map(|r| r.positions.iter().map(|p| p.offset))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        // Zeros after the last frame are space the writer extended the segment by ahead of
        // its frames (docs/format.md): the log ends there, and nothing is cut. They stay, to
        // be written over.
        let stop = stop.filter(|_| bytes[end as usize..].iter().any(|&b| b != 0));
        let mut file_len = len;
        if let Some(err) = stop {
            if valid_frame_follows(&bytes, end, max_body) {
                return Err(StoreError::corrupt(
                    &path,
                    end,
                    format!(
                        "{err}, and valid frames follow it: this is damage, not a torn tail; run `sierradb check`"
                    ),
                ));
            }
            #[cfg(feature = "planted-bugs")]
            let keep_tail =
                crate::planted::active(crate::planted::PlantedBug::RecoverKeepsTornTail);
            #[cfg(not(feature = "planted-bugs"))]
            let keep_tail = false;
            if !keep_tail {
                file.truncate(end)
                    .and_then(|()| file.sync())
                    .map_err(|e| StoreError::io("truncate torn tail", &path, e))?;
                file_len = end;
            }
            report.truncated = Some(Truncation {
                segment: open_id,
                offset: end,
                bytes: len - end,
                reason: err.to_string(),
            });
        }
        (index, end, file_len, file)
    };
    disk.sync_dir(&dir)
        .map_err(|e| StoreError::io("sync directory", &dir, e))?;
    report.segments = segments.len() as u32;

    let open = OpenSegment {
        id: open_id,
        path: Arc::new(path),
        file: Arc::new(file),
        index,
        durable_end: end,
    };
    let view = BucketView {
        sealed_events: SealedEvents::build(sealed.iter().map(|s| &s.index)),
        sealed_runs: SealedRuns::build(sealed.iter().map(|s| &s.index)),
        sealed,
        open,
        streams: continuity.streams,
        partitions: continuity.partitions,
    };
    let shared = Arc::new(BucketShared::new(bucket, dir, view, max_body));
    let writer = BucketWriter::new(shared.clone(), disk.clone(), config.clone(), end, file_len);
    Ok((shared, writer, report))
}

/// Whether any frame decodes after the damaged one at `offset`. A torn tail has nothing valid
/// after it; damage in the middle (a flipped bit, even in a length field) does. Every later
/// offset is tried, so a corrupt length cannot hide the frames that follow it.
fn valid_frame_follows(bytes: &[u8], offset: u64, max_body: u64) -> bool {
    let header = FRAME_HEADER_BYTES as usize;
    (offset as usize + 1..bytes.len().saturating_sub(header)).any(|at| {
        let rest = &bytes[at..];
        let kind = rest[8];
        let len = u64::from(u32::from_le_bytes(rest[0..4].try_into().unwrap()));
        // Cheap filters first; the CRC only for candidates that could be frames.
        (kind == KIND_TRANSACTION || kind == KIND_SEGMENT_HEADER)
            && len <= max_body
            && (header as u64 + len) <= rest.len() as u64
            && decode_frame(rest, max_body).is_ok()
    })
}

/// Why a sealed segment's index file was not used.
enum IndexProblem {
    /// Missing or invalid: rebuild it from the data.
    Invalid(String),
    /// Valid, but it covers more data than the segment holds: frames were lost, and a rebuilt
    /// index would hide that.
    DataLost(String),
}

fn load_index<D: Disk>(
    disk: &D,
    dir: &Path,
    id: u32,
    data_len: u64,
) -> Result<SealedIndex, IndexProblem> {
    let path = layout::index_file(dir, id);
    if !disk.exists(&path) {
        return Err(IndexProblem::Invalid("missing".into()));
    }
    let file = disk
        .open(&path, OpenMode::Read)
        .map_err(|e| IndexProblem::Invalid(format!("open: {e}")))?;
    let bytes = file
        .map()
        .map_err(|e| IndexProblem::Invalid(format!("read: {e}")))?;
    let index = decode_index_file(&bytes).map_err(|e| IndexProblem::Invalid(e.to_string()))?;
    if index.segment != id {
        return Err(IndexProblem::Invalid(format!(
            "names segment {}",
            index.segment
        )));
    }
    if index.data_end < SEGMENT_HEADER_FRAME_BYTES {
        return Err(IndexProblem::Invalid(format!(
            "covers {} bytes",
            index.data_end
        )));
    }
    if index.data_end > data_len {
        return Err(IndexProblem::DataLost(format!(
            "sealed segment has {data_len} bytes but its index covers {}: frames were lost",
            index.data_end
        )));
    }
    Ok(index)
}
