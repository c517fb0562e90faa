//! `sierradb check`: verify a data directory without changing it, and repair only what is
//! derived data or what a crash explains, never deleting acknowledged events.
//!
//! # What is checked
//!
//! [`check`] reads `sierradb.layout` itself (partitions, buckets, segment size: no
//! configuration needed), then, in every bucket directory:
//!
//! 1. the entries: segment ids contiguous from 0 (a hole, or an index file of a segment past
//!    the last one, is [`Problem::SegmentMissing`]), leftover `*.idx.tmp` files, an index
//!    file of the open segment, unknown files;
//! 2. every segment: its header frame (magic, format, bucket and segment id), then every
//!    frame: framing (a claimed length no longer than a segment can hold), CRC, a body that
//!    decodes as a transaction, a partition that belongs in this bucket and matches the
//!    transaction's partition key, and event ids that do not repeat within the segment;
//! 3. continuity through the bucket, across segment boundaries: every partition sequence and
//!    every stream version continues its predecessor without a gap or a repeat, and a stream
//!    keeps its partition key;
//! 4. every sealed segment's index file: present, decodes (CRC, bounds), and equals what
//!    [`SealedIndex::build`] makes of the segment's frames (`data_end`, events, streams,
//!    partitions, bloom filters), which is what the writer wrote when it sealed the segment.
//!    A segment file shorter than its index's `data_end` has lost frames
//!    ([`Problem::SegmentTruncated`]): the index is the evidence, not the fault;
//! 5. the open (last) segment's end: an undecodable frame with no valid frame anywhere after
//!    it is a [`Problem::TornTail`], the unsynced end a crash tears. Damage with valid frames
//!    after it is a [`Problem::CorruptFrame`], and the scan resumes past it: at the damaged
//!    frame's claimed length if a valid frame sits there, else at the next offset where a
//!    whole frame decodes; what lies between is reported as unreadable.
//!
//! After damage or a missing segment the numbers that follow may jump forward once per
//! partition and stream without a gap being reported: the loss is already reported, and a
//! gap for every stream it touched would bury it.
//!
//! Without [`CheckOptions::repair`] nothing is modified: files are opened read-only, and
//! nothing is created, renamed, truncated or removed.
//!
//! # What repair may do, and what it may not
//!
//! - Rebuild a missing, corrupt or mismatching index file from its segment's frames, as the
//!   writer does when it seals (temporary file, sync, rename, directory sync), and only when
//!   every frame of the segment decodes: an index built from part of a segment would hide
//!   the rest from readers.
//! - Remove `*.idx.tmp` leftovers and an index file of the open segment, as recovery does.
//! - Cut a torn tail off the open segment, after first copying the cut bytes to
//!   `segment-N.log.torn-<offset>` beside it and syncing the copy and the directory, so even
//!   a wrong verdict loses nothing. A torn segment header (a crash while the segment was
//!   created) is cut the same way and the header written again.
//!
//! It never cuts, rewrites or deletes a frame that valid frames follow, nor anything of a
//! corrupt or truncated sealed segment (its index included), and it cuts no tail in a bucket
//! with missing segments, where which segment is the open one is itself in doubt: those may
//! hold acknowledged events, and the report says the directory needs manual attention or a
//! replica. After repairing, [`check`] checks the
//! directory again from scratch and reports what still stands, so
//! [`CheckReport::is_clean`] is a verdict on the directory as it now is.
//!
//! # What is not checked
//!
//! Event ids are checked for repeats within a segment, not across segments: that would need
//! every id of a bucket in memory at once. Run the check on a directory no server has open
//! (the binary holds the directory's `LOCK` file): segments are memory-mapped, and a
//! concurrent writer would change them under the check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use disk::{Disk, File, Mapped, OpenMode};

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::model::{
    BucketId, EventId, PartitionId, PartitionKey, PartitionSeq, StreamId, StreamVersion,
};
use crate::store::bucket::{create_segment, write_index_file};
use crate::store::index::{
    IndexFileError, SealedIndex, SegmentIndex, StreamKey, decode_index_file,
};
use crate::store::layout::{self, BucketEntry};
use crate::store::record::{
    FRAME_HEADER_BYTES, FrameError, KIND_TRANSACTION, SEGMENT_HEADER_FRAME_BYTES, TXN_FIXED_BYTES,
    TransactionRecord, decode_frame, decode_segment_header,
};
use crate::store::segment::read_open_segment;

/// How [`check`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Repair what can be repaired without losing data (see the module docs). Off, the
    /// check changes nothing on disk.
    pub repair: bool,
}

/// The layout a data directory records in `sierradb.layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub partition_count: u16,
    pub bucket_count: u16,
    pub segment_size_bytes: u64,
}

impl Layout {
    /// The longest frame body a segment of this layout can hold. The writer seals a segment
    /// before a frame would overflow it and the largest transaction must fit in an empty
    /// one, so no frame it wrote is longer. The configured maximum transaction size is not
    /// recorded on disk; any tighter guess could call a frame the writer wrote "too long",
    /// and in the open segment that verdict would cut it. The bound never sizes an
    /// allocation: segments are read whole and a claimed length is only compared with the
    /// bytes that are there.
    pub fn max_frame_body_bytes(&self) -> u64 {
        self.segment_size_bytes
            .saturating_sub(SEGMENT_HEADER_FRAME_BYTES + FRAME_HEADER_BYTES)
            .min(u64::from(u32::MAX))
    }

    /// Whether `partition` exists and lives in `bucket`.
    fn owns(&self, bucket: BucketId, partition: u16) -> bool {
        partition < self.partition_count && partition % self.bucket_count == bucket.0
    }
}

/// Why `sierradb.layout` could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutFault {
    Missing,
    Unreadable(String),
    TooLong {
        bytes: u64,
    },
    NotUtf8,
    NoChecksum,
    ChecksumMismatch,
    BadLine(String),
    MissingField(&'static str),
    BadValue {
        field: &'static str,
        value: String,
    },
    UnsupportedFormat(String),
    /// The values parse but no store could have been created with them.
    Impossible(String),
}

impl fmt::Display for LayoutFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutFault::Missing => write!(f, "missing"),
            LayoutFault::Unreadable(why) => write!(f, "cannot be read: {why}"),
            LayoutFault::TooLong { bytes } => write!(f, "{bytes} bytes long, too long"),
            LayoutFault::NotUtf8 => write!(f, "not UTF-8"),
            LayoutFault::NoChecksum => write!(f, "no checksum line"),
            LayoutFault::ChecksumMismatch => write!(f, "checksum mismatch"),
            LayoutFault::BadLine(line) => write!(f, "bad line {line:?}"),
            LayoutFault::MissingField(field) => write!(f, "no {field} line"),
            LayoutFault::BadValue { field, value } => write!(f, "bad {field} {value:?}"),
            LayoutFault::UnsupportedFormat(format) => write!(f, "unsupported format {format}"),
            LayoutFault::Impossible(why) => write!(f, "impossible layout: {why}"),
        }
    }
}

/// What is wrong with a segment header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderFault {
    /// The header frame does not decode, or decodes as something else than a header.
    Frame(FrameError),
    /// A valid header that names another bucket or segment: a file in the wrong place.
    Names { bucket: u16, segment: u32 },
}

impl HeaderFault {
    /// Whether the header frame may be torn (unfinished) rather than damaged: it does not
    /// decode at all. A frame whose CRC holds was written whole.
    fn may_be_torn(&self) -> bool {
        matches!(self, HeaderFault::Frame(err) if !matches!(err, FrameError::Malformed { .. }))
    }
}

impl fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderFault::Frame(err) => write!(f, "{err}"),
            HeaderFault::Names { bucket, segment } => {
                write!(f, "the header names bucket {bucket} segment {segment}")
            }
        }
    }
}

/// Where the scan went on after a damaged frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resync {
    /// A valid frame sits right after the damaged frame's claimed length: only that frame
    /// is lost.
    ClaimedLength { next: u64 },
    /// The claimed length leads nowhere valid; the next offset where a whole frame decodes
    /// is `next`, and everything before it from the damage on is unreadable.
    Searched { next: u64 },
    /// No valid frame follows: the last `bytes` bytes of the segment are unreadable.
    Unreachable { bytes: u64 },
    /// The search for a valid frame after the damage was given up (it is bounded so that
    /// crafted bytes cannot make it quadratic): the `bytes` after the damage were not read,
    /// and may still hold frames.
    GaveUp { bytes: u64 },
}

/// Which part of an index file disagrees with the segment's frames (the first that does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexDifference {
    /// The index names another segment.
    SegmentId {
        stored: u32,
    },
    /// `data_end` differs from the end of the segment's last frame.
    DataEnd {
        stored: u64,
        actual: u64,
    },
    /// `data_end` lies before the first frame (checked when the frames cannot all be read;
    /// past the file's end is [`Problem::SegmentTruncated`]).
    DataEndOutOfBounds {
        stored: u64,
        file_bytes: u64,
    },
    Events {
        stored: usize,
        actual: usize,
    },
    Streams {
        stored: usize,
        actual: usize,
    },
    Partitions {
        stored: usize,
        actual: usize,
    },
    BloomFilters,
}

impl fmt::Display for IndexDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexDifference::SegmentId { stored } => write!(f, "it names segment {stored}"),
            IndexDifference::DataEnd { stored, actual } => {
                write!(f, "data_end is {stored}, the frames end at {actual}")
            }
            IndexDifference::DataEndOutOfBounds { stored, file_bytes } => write!(
                f,
                "data_end {stored} lies outside the segment's {file_bytes} bytes"
            ),
            IndexDifference::Events { stored, actual } => write!(
                f,
                "event entries differ ({stored} stored, {actual} in the frames)"
            ),
            IndexDifference::Streams { stored, actual } => write!(
                f,
                "stream entries differ ({stored} stored, {actual} in the frames)"
            ),
            IndexDifference::Partitions { stored, actual } => write!(
                f,
                "partition entries differ ({stored} stored, {actual} in the frames)"
            ),
            IndexDifference::BloomFilters => write!(f, "bloom filters differ"),
        }
    }
}

/// How much a problem matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, harmless to the store: it ignores the file.
    Notice,
    /// Derived data or a crash's leftovers: `--repair` fixes it without losing data.
    Repairable,
    /// Data is damaged or missing: needs manual attention (a replica or a backup).
    NeedsAttention,
}

/// One thing found wrong. Offsets are byte positions in the named segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `sierradb.layout` is missing or invalid; without it nothing else can be checked.
    LayoutInvalid { path: PathBuf, fault: LayoutFault },
    /// A bucket directory the layout promises is not there.
    BucketMissing { bucket: BucketId, path: PathBuf },
    /// A file or directory that is not part of the store.
    StrayFile { path: PathBuf },
    /// Bytes an earlier repair cut from a torn tail, kept beside the segment.
    SavedTail { path: PathBuf },
    /// A file or directory that exists but cannot be read.
    Unreadable { path: PathBuf, reason: String },
    /// Segment files that must exist and do not: ids are contiguous from 0, and an index
    /// file of a segment means the segment was sealed.
    SegmentMissing {
        bucket: BucketId,
        segments: RangeInclusive<u32>,
    },
    BadHeader {
        bucket: BucketId,
        segment: u32,
        fault: HeaderFault,
    },
    /// A frame that does not decode, in a sealed segment or followed by valid frames.
    CorruptFrame {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        reason: FrameError,
        resync: Resync,
    },
    /// The open segment ends in `bytes` bytes that hold no valid frame: an unfinished write.
    TornTail {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        bytes: u64,
    },
    /// A transaction whose partition is not its key's, or not in this bucket.
    MisroutedTransaction {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        partition: PartitionId,
        key_partition: PartitionId,
    },
    /// A partition sequence that does not continue its predecessor: a gap or a repeat.
    SequenceGap {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        partition: PartitionId,
        expected: PartitionSeq,
        found: PartitionSeq,
    },
    /// A stream version that does not continue its predecessor: a gap or a repeat.
    VersionGap {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        partition: PartitionId,
        stream: StreamId,
        expected: StreamVersion,
        found: StreamVersion,
    },
    PartitionKeyChanged {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        partition: PartitionId,
        stream: StreamId,
        stored: PartitionKey,
        found: PartitionKey,
    },
    DuplicateEventId {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        event_id: EventId,
    },
    /// A sealed segment file shorter than its index says its frames are: the index was
    /// written when the segment was sealed whole, so its last frames are lost. The index is
    /// not rebuilt over this evidence.
    SegmentTruncated {
        bucket: BucketId,
        segment: u32,
        file_bytes: u64,
        data_end: u64,
    },
    /// A sealed segment without its index file. Repair rebuilds it, unless the segment has
    /// corrupt frames too (then it stays, and the corrupt frames say why).
    IndexMissing { bucket: BucketId, segment: u32 },
    /// An index file that does not decode. Repaired as [`Problem::IndexMissing`] is.
    IndexCorrupt {
        bucket: BucketId,
        segment: u32,
        reason: IndexFileError,
    },
    /// An index file that decodes but disagrees with its segment's frames. Repaired as
    /// [`Problem::IndexMissing`] is.
    IndexMismatch {
        bucket: BucketId,
        segment: u32,
        detail: IndexDifference,
    },
    /// A leftover of a seal cut short.
    IndexTempFile { bucket: BucketId, path: PathBuf },
    /// An index file of the open segment: a seal whose next segment did not survive a crash.
    /// (A lost last segment looks the same; no file tells the two apart.)
    OpenSegmentIndex { bucket: BucketId, segment: u32 },
}

impl Problem {
    pub fn severity(&self) -> Severity {
        match self {
            Problem::StrayFile { .. } | Problem::SavedTail { .. } => Severity::Notice,
            Problem::TornTail { .. }
            | Problem::IndexMissing { .. }
            | Problem::IndexCorrupt { .. }
            | Problem::IndexMismatch { .. }
            | Problem::IndexTempFile { .. }
            | Problem::OpenSegmentIndex { .. } => Severity::Repairable,
            Problem::LayoutInvalid { .. }
            | Problem::BucketMissing { .. }
            | Problem::Unreadable { .. }
            | Problem::SegmentMissing { .. }
            | Problem::BadHeader { .. }
            | Problem::CorruptFrame { .. }
            | Problem::SegmentTruncated { .. }
            | Problem::MisroutedTransaction { .. }
            | Problem::SequenceGap { .. }
            | Problem::VersionGap { .. }
            | Problem::PartitionKeyChanged { .. }
            | Problem::DuplicateEventId { .. } => Severity::NeedsAttention,
        }
    }
}

/// Writes "bucket B segment S offset O: " (as much of it as applies).
struct At(BucketId, u32, Option<u64>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bucket {} segment {}", self.0, self.1)?;
        if let Some(offset) = self.2 {
            write!(f, " offset {offset}")?;
        }
        write!(f, ": ")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::LayoutInvalid { path, fault } => write!(
                f,
                "{}: layout file {fault}; nothing else can be checked",
                path.display()
            ),
            Problem::BucketMissing { bucket, path } => write!(
                f,
                "bucket {bucket}: directory {} is missing (opening the store creates it empty)",
                path.display()
            ),
            Problem::StrayFile { path } => write!(
                f,
                "{}: not part of the store (the server ignores it)",
                path.display()
            ),
            Problem::SavedTail { path } => write!(
                f,
                "{}: bytes an earlier repair cut from a torn tail; delete it once they are not needed",
                path.display()
            ),
            Problem::Unreadable { path, reason } => {
                write!(f, "{}: cannot be read: {reason}", path.display())
            }
            Problem::SegmentMissing { bucket, segments } => {
                if segments.start() == segments.end() {
                    write!(
                        f,
                        "bucket {bucket}: segment {} is missing",
                        segments.start()
                    )
                } else {
                    write!(
                        f,
                        "bucket {bucket}: segments {} to {} are missing",
                        segments.start(),
                        segments.end()
                    )
                }
            }
            Problem::BadHeader {
                bucket,
                segment,
                fault,
            } => write!(
                f,
                "{}bad segment header: {fault}",
                At(*bucket, *segment, None)
            ),
            Problem::CorruptFrame {
                bucket,
                segment,
                offset,
                reason,
                resync,
            } => {
                write!(
                    f,
                    "{}corrupt frame ({reason}); ",
                    At(*bucket, *segment, Some(*offset))
                )?;
                match resync {
                    Resync::ClaimedLength { next } => {
                        write!(f, "the next frame, at offset {next}, is valid")
                    }
                    Resync::Searched { next } => write!(
                        f,
                        "its length cannot be trusted; the next valid frame is at offset {next}, {} byte(s) unreadable",
                        next.saturating_sub(*offset)
                    ),
                    Resync::Unreachable { bytes } => write!(
                        f,
                        "no valid frame follows: the last {bytes} byte(s) are unreadable"
                    ),
                    Resync::GaveUp { bytes } => write!(
                        f,
                        "the search for a valid frame in the {bytes} byte(s) after it was given up"
                    ),
                }
            }
            Problem::TornTail {
                bucket,
                segment,
                offset,
                bytes,
            } => write!(
                f,
                "{}torn tail of {bytes} byte(s): an unfinished write, no valid frame follows",
                At(*bucket, *segment, Some(*offset))
            ),
            Problem::MisroutedTransaction {
                bucket,
                segment,
                offset,
                partition,
                key_partition,
            } => write!(
                f,
                "{}transaction of partition {partition} (its key maps to partition {key_partition}) does not belong here",
                At(*bucket, *segment, Some(*offset))
            ),
            Problem::SequenceGap {
                bucket,
                segment,
                offset,
                partition,
                expected,
                found,
            } => write!(
                f,
                "{}partition {partition} continues at sequence {found} instead of {expected}",
                At(*bucket, *segment, Some(*offset))
            ),
            Problem::VersionGap {
                bucket,
                segment,
                offset,
                partition,
                stream,
                expected,
                found,
            } => write!(
                f,
                "{}stream {stream} (partition {partition}) continues at version {found} instead of {expected}",
                At(*bucket, *segment, Some(*offset))
            ),
            Problem::PartitionKeyChanged {
                bucket,
                segment,
                offset,
                partition,
                stream,
                stored,
                found,
            } => write!(
                f,
                "{}stream {stream} (partition {partition}) changes partition key from {stored} to {found}",
                At(*bucket, *segment, Some(*offset))
            ),
            Problem::DuplicateEventId {
                bucket,
                segment,
                offset,
                event_id,
            } => write!(
                f,
                "{}event id {event_id} appears twice in the segment",
                At(*bucket, *segment, Some(*offset))
            ),
            Problem::SegmentTruncated {
                bucket,
                segment,
                file_bytes,
                data_end,
            } => write!(
                f,
                "{}the sealed segment has {file_bytes} bytes but its index file says its frames end at {data_end}: its last frames are lost",
                At(*bucket, *segment, None)
            ),
            Problem::IndexMissing { bucket, segment } => {
                write!(f, "{}index file is missing", At(*bucket, *segment, None))
            }
            Problem::IndexCorrupt {
                bucket,
                segment,
                reason,
            } => write!(f, "{}{reason}", At(*bucket, *segment, None)),
            Problem::IndexMismatch {
                bucket,
                segment,
                detail,
            } => write!(
                f,
                "{}index file disagrees with the segment's frames: {detail}",
                At(*bucket, *segment, None)
            ),
            Problem::IndexTempFile { bucket, path } => write!(
                f,
                "bucket {bucket}: {} is left over from a seal cut short",
                path.display()
            ),
            Problem::OpenSegmentIndex { bucket, segment } => write!(
                f,
                "{}the open segment has an index file, left by a seal cut short (or the segment after it is lost: the two look alike)",
                At(*bucket, *segment, None)
            ),
        }
    }
}

/// One change `--repair` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    RemovedTempFile {
        bucket: BucketId,
        path: PathBuf,
    },
    RemovedOpenSegmentIndex {
        bucket: BucketId,
        segment: u32,
        path: PathBuf,
    },
    RebuiltIndex {
        bucket: BucketId,
        segment: u32,
        path: PathBuf,
    },
    /// `bytes` bytes from `offset` were cut off the open segment, after being copied
    /// (and synced) to `moved_to`.
    TruncatedTail {
        bucket: BucketId,
        segment: u32,
        offset: u64,
        bytes: u64,
        moved_to: PathBuf,
    },
    /// A torn segment header was written again.
    RewroteHeader {
        bucket: BucketId,
        segment: u32,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::RemovedTempFile { bucket, path } => {
                write!(f, "bucket {bucket}: removed {}", path.display())
            }
            Repair::RemovedOpenSegmentIndex {
                bucket,
                segment,
                path,
            } => write!(
                f,
                "{}removed the open segment's index file {}",
                At(*bucket, *segment, None),
                path.display()
            ),
            Repair::RebuiltIndex {
                bucket,
                segment,
                path,
            } => write!(
                f,
                "{}rebuilt {} from the segment's frames",
                At(*bucket, *segment, None),
                path.display()
            ),
            Repair::TruncatedTail {
                bucket,
                segment,
                offset,
                bytes,
                moved_to,
            } => write!(
                f,
                "{}cut {bytes} byte(s) of torn tail, saved to {}",
                At(*bucket, *segment, Some(*offset)),
                moved_to.display()
            ),
            Repair::RewroteHeader { bucket, segment } => write!(
                f,
                "{}wrote the segment header again",
                At(*bucket, *segment, None)
            ),
        }
    }
}

/// What was verified in one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSummary {
    pub bucket: BucketId,
    /// Segment files read, the open one included.
    pub segments: u32,
    pub sealed_segments: u32,
    /// Index files that decoded and equal what the segment's frames give.
    pub indexes_verified: u32,
    /// Transaction frames that decoded (CRC and body).
    pub transactions: u64,
    pub events: u64,
    pub bytes: u64,
    pub streams: u64,
    pub partitions: u64,
}

/// What [`check`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub root: PathBuf,
    /// Whether repairs were allowed.
    pub repair: bool,
    /// The layout the directory records, if it could be read.
    pub layout: Option<Layout>,
    pub buckets: Vec<BucketSummary>,
    /// What the check found, in the order found (before any repair).
    pub problems: Vec<Problem>,
    /// What repair changed, in order.
    pub repairs: Vec<Repair>,
    /// What a fresh check of the directory found after the repairs; the problems
    /// themselves when nothing was repaired.
    pub remaining: Vec<Problem>,
}

impl CheckReport {
    /// Whether the directory, as it now is, has nothing wrong beyond notices.
    pub fn is_clean(&self) -> bool {
        self.remaining
            .iter()
            .all(|p| p.severity() == Severity::Notice)
    }

    /// Events verified in all buckets.
    pub fn events(&self) -> u64 {
        self.buckets.iter().map(|b| b.events).sum()
    }

    /// Transactions verified in all buckets.
    pub fn transactions(&self) -> u64 {
        self.buckets.iter().map(|b| b.transactions).sum()
    }

    fn count(problems: &[Problem], severity: Severity) -> usize {
        problems.iter().filter(|p| p.severity() == severity).count()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checked {}", self.root.display())?;
        if let Some(layout) = &self.layout {
            write!(
                f,
                ": {} partition(s) in {} bucket(s), {}-byte segments",
                layout.partition_count, layout.bucket_count, layout.segment_size_bytes
            )?;
        }
        writeln!(f)?;
        for b in &self.buckets {
            writeln!(
                f,
                "bucket {}: {} segment(s) ({} sealed, {} index file(s) verified), {} transaction(s), {} event(s), {} stream(s), {} partition(s), {} byte(s)",
                b.bucket,
                b.segments,
                b.sealed_segments,
                b.indexes_verified,
                b.transactions,
                b.events,
                b.streams,
                b.partitions,
                b.bytes
            )?;
        }
        for p in &self.problems {
            let tag = match p.severity() {
                Severity::Notice => "notice",
                Severity::Repairable => "problem (repairable)",
                Severity::NeedsAttention => "problem (needs attention)",
            };
            writeln!(f, "{tag}: {p}")?;
        }
        for r in &self.repairs {
            writeln!(f, "repair: {r}")?;
        }
        if !self.repairs.is_empty() {
            for p in self
                .remaining
                .iter()
                .filter(|p| p.severity() != Severity::Notice)
            {
                writeln!(f, "still after repair: {p}")?;
            }
        }
        let attention = Self::count(&self.remaining, Severity::NeedsAttention);
        let repairable = Self::count(&self.remaining, Severity::Repairable);
        if self.is_clean() {
            let when = if self.repairs.is_empty() {
                ""
            } else {
                " after repair"
            };
            return writeln!(f, "clean{when}");
        }
        write!(f, "NOT CLEAN: {} problem(s)", attention + repairable)?;
        if repairable > 0 && !self.repair {
            write!(
                f,
                "; --repair rebuilds index files, removes leftovers and cuts torn tails (saving the bytes)"
            )?;
        }
        if attention > 0 {
            write!(
                f,
                "; {attention} need(s) manual attention: repair never deletes acknowledged data, so restore the damaged bucket from a replica or a backup"
            )?;
        }
        writeln!(f)
    }
}

/// Verifies the data directory `root`, and with `options.repair` repairs what can be
/// repaired without losing data (see the module docs for both).
///
/// Problems on disk are reported in the [`CheckReport`], never as `Err` and never as a
/// panic; without repair, `check` does not fail. `Err` means a repair's write failed: each
/// repair is ordered so that stopping between two of its steps loses nothing, and a later
/// check describes where it stopped.
pub fn check<D: Disk>(
    disk: &D,
    root: &Path,
    options: CheckOptions,
) -> Result<CheckReport, StoreError> {
    let first = run_pass(disk, root, options.repair)?;
    let remaining = if first.repairs.is_empty() {
        first.problems.clone()
    } else {
        // A fresh read-only pass: the verdict rests on what is on disk now, not on what the
        // repair code meant to do.
        run_pass(disk, root, false)?.problems
    };
    Ok(CheckReport {
        root: root.to_owned(),
        repair: options.repair,
        layout: first.layout,
        buckets: first.buckets,
        problems: first.problems,
        repairs: first.repairs,
        remaining,
    })
}

/// The name of the lock file the server holds in the data directory (`bin`'s `serve`).
const LOCK_FILE: &str = "LOCK";
/// Byte position of the partition id inside a transaction body: after the transaction id
/// and the partition key (docs/format.md).
const PARTITION_FIELD_OFFSET: usize = 16 + 16;
/// The search for a valid frame after damage CRCs at most this many bytes plus twice the
/// segment's length: real frames are found long before, and garbage crafted to pass the
/// cheap filters cannot make the search quadratic.
const SEARCH_BUDGET_BASE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Default)]
struct Pass {
    layout: Option<Layout>,
    buckets: Vec<BucketSummary>,
    problems: Vec<Problem>,
    repairs: Vec<Repair>,
}

fn run_pass<D: Disk>(disk: &D, root: &Path, repair: bool) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    let path = root.join(layout::LAYOUT_FILE);
    let layout = match read_layout(disk, &path) {
        Ok(layout) => layout,
        Err(fault) => {
            pass.problems.push(Problem::LayoutInvalid { path, fault });
            return Ok(pass);
        }
    };
    pass.layout = Some(layout);
    check_root_entries(disk, root, &layout, &mut pass.problems);
    for b in 0..layout.bucket_count {
        let mut bucket = BucketCheck::new(disk, root, layout, BucketId(b), repair);
        bucket.run()?;
        pass.buckets.push(bucket.summary);
        pass.problems.append(&mut bucket.problems);
        pass.repairs.append(&mut bucket.repairs);
    }
    Ok(pass)
}

/// Reads the whole file read-only: a memory map on a real disk.
fn read_all<D: Disk>(disk: &D, path: &Path) -> Result<Mapped, String> {
    let file = disk
        .open(path, OpenMode::Read)
        .map_err(|e| format!("open: {e}"))?;
    file.map().map_err(|e| format!("read: {e}"))
}

/// Parses and verifies `sierradb.layout` the way opening the store does (`layout.rs`), but
/// without a configuration to compare with, and without ever creating it.
fn read_layout<D: Disk>(disk: &D, path: &Path) -> Result<Layout, LayoutFault> {
    if !disk.exists(path) {
        return Err(LayoutFault::Missing);
    }
    let file = disk
        .open(path, OpenMode::Read)
        .map_err(|e| LayoutFault::Unreadable(e.to_string()))?;
    let len = file
        .len()
        .map_err(|e| LayoutFault::Unreadable(e.to_string()))?;
    // The store refuses longer layout files too; this also bounds the allocation.
    if len > 4096 {
        return Err(LayoutFault::TooLong { bytes: len });
    }
    let mut bytes = vec![0; len as usize];
    file.read_at(0, &mut bytes)
        .map_err(|e| LayoutFault::Unreadable(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| LayoutFault::NotUtf8)?;
    let (body, crc_line) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .ok_or(LayoutFault::NoChecksum)?;
    let body = format!("{body}\n");
    if crc_line != format!("crc = {:08x}", crc32fast::hash(body.as_bytes())) {
        return Err(LayoutFault::ChecksumMismatch);
    }
    let mut fields = BTreeMap::new();
    for line in body.lines() {
        let (key, value) = line
            .split_once(" = ")
            .ok_or_else(|| LayoutFault::BadLine(line.to_owned()))?;
        fields.insert(key, value);
    }
    let field = |key: &'static str| {
        fields
            .get(key)
            .copied()
            .ok_or(LayoutFault::MissingField(key))
    };
    let format = field("format")?;
    if format != layout::LAYOUT_FORMAT.to_string() {
        return Err(LayoutFault::UnsupportedFormat(format.to_owned()));
    }
    fn number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, LayoutFault> {
        value.parse().map_err(|_| LayoutFault::BadValue {
            field: key,
            value: value.to_owned(),
        })
    }
    let layout = Layout {
        partition_count: number("partitions", field("partitions")?)?,
        bucket_count: number("buckets", field("buckets")?)?,
        segment_size_bytes: number("segment_size_bytes", field("segment_size_bytes")?)?,
    };
    // The store validated these when it created the directory; the configuration's own
    // check says what is possible. The largest transaction guessed here is the largest a
    // segment can hold, which makes the check one of the segment size itself.
    let config = StoreConfig {
        partition_count: layout.partition_count,
        bucket_count: layout.bucket_count,
        segment_size_bytes: layout.segment_size_bytes,
        max_transaction_bytes: layout.max_frame_body_bytes(),
        ..StoreConfig::default()
    };
    config.validate().map_err(|e| match e {
        StoreError::InvalidConfig(why) => LayoutFault::Impossible(why),
        other => LayoutFault::Impossible(other.to_string()),
    })?;
    Ok(layout)
}

/// Reports entries of the data directory that are not the store's. Notices only.
fn check_root_entries<D: Disk>(
    disk: &D,
    root: &Path,
    layout: &Layout,
    problems: &mut Vec<Problem>,
) {
    let names = match disk.list_dir(root) {
        Ok(names) => names,
        Err(e) => {
            problems.push(Problem::Unreadable {
                path: root.to_owned(),
                reason: e.to_string(),
            });
            return;
        }
    };
    let buckets: BTreeSet<PathBuf> = (0..layout.bucket_count)
        .map(|b| layout::bucket_dir(root, b))
        .collect();
    for name in names {
        let path = root.join(&name);
        if name != layout::LAYOUT_FILE && name != LOCK_FILE && !buckets.contains(&path) {
            problems.push(Problem::StrayFile { path });
        }
    }
}

/// Whether `name` is a copy of a torn tail an earlier repair saved.
fn is_saved_tail(name: &str) -> bool {
    name.starts_with("segment-") && name.contains(".log.torn-")
}

/// Which numbers come next in a bucket, checked frame by frame in order.
#[derive(Default)]
struct Continuity {
    /// The next sequence of each partition. Wide, so no stored number can overflow it.
    partitions: BTreeMap<PartitionId, u128>,
    /// Each stream's partition key and next version.
    streams: BTreeMap<StreamKey, (PartitionKey, u128)>,
    /// Set once data could not be read (a damaged frame, a missing or unreadable segment):
    /// what it held is unknown, so each partition and stream may jump forward once before
    /// it is held to gaplessness again. The loss is already reported.
    lost_track: bool,
    settled_partitions: BTreeSet<PartitionId>,
    settled_streams: BTreeSet<StreamKey>,
}

/// Where a record sits, for the problems it raises.
#[derive(Clone, Copy)]
struct Loc {
    bucket: BucketId,
    segment: u32,
    offset: u64,
}

fn narrow(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Continuity {
    fn lose_track(&mut self) {
        self.lost_track = true;
        self.settled_partitions.clear();
        self.settled_streams.clear();
    }

    /// Whether `found` may follow when `expected` is due.
    fn accepts(lost_track: bool, settled: bool, expected: u128, found: u128) -> bool {
        found == expected || (lost_track && !settled && found > expected)
    }

    fn add(&mut self, at: Loc, record: &TransactionRecord, problems: &mut Vec<Problem>) {
        let partition = record.partition_id;
        let expected = self.partitions.get(&partition).copied().unwrap_or(0);
        let first = u128::from(record.first_sequence.0);
        let settled = self.settled_partitions.contains(&partition);
        if !Self::accepts(self.lost_track, settled, expected, first) {
            problems.push(Problem::SequenceGap {
                bucket: at.bucket,
                segment: at.segment,
                offset: at.offset,
                partition,
                expected: PartitionSeq(narrow(expected)),
                found: record.first_sequence,
            });
        }
        // Carry on from what is there, so one gap is reported once, not at every frame.
        self.partitions
            .insert(partition, first + record.events.len() as u128);
        if self.lost_track {
            self.settled_partitions.insert(partition);
        }
        for event in &record.events {
            let key = (partition, event.stream_id.clone());
            let (expected, stored_key) = match self.streams.get(&key) {
                Some(&(stored_key, next)) => (next, Some(stored_key)),
                None => (0, None),
            };
            if let Some(stored) = stored_key
                && stored != record.partition_key
            {
                problems.push(Problem::PartitionKeyChanged {
                    bucket: at.bucket,
                    segment: at.segment,
                    offset: at.offset,
                    partition,
                    stream: event.stream_id.clone(),
                    stored,
                    found: record.partition_key,
                });
            }
            let found = u128::from(event.stream_version.0);
            let settled = self.settled_streams.contains(&key);
            if !Self::accepts(self.lost_track, settled, expected, found) {
                problems.push(Problem::VersionGap {
                    bucket: at.bucket,
                    segment: at.segment,
                    offset: at.offset,
                    partition,
                    stream: event.stream_id.clone(),
                    expected: StreamVersion(narrow(expected)),
                    found: event.stream_version,
                });
            }
            if self.lost_track {
                self.settled_streams.insert(key.clone());
            }
            self.streams.insert(key, (record.partition_key, found + 1));
        }
    }
}

/// Whether `record` can go into `index` as the writer would have put it: every stream and
/// partition run it touches continues, and no event id repeats. [`SegmentIndex::insert`]
/// asserts the runs, so anything else must stay out of it.
fn extends_runs(index: &SegmentIndex, record: &TransactionRecord) -> bool {
    let next_of = |first: u64, len: usize| u128::from(first) + len as u128;
    if let Some(run) = index.partitions.get(&record.partition_id)
        && next_of(run.first, run.positions.len()) != u128::from(record.first_sequence.0)
    {
        return false;
    }
    let mut local: BTreeMap<&StreamId, u128> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for event in &record.events {
        if index.events.contains_key(&event.event_id) || !ids.insert(event.event_id) {
            return false;
        }
        let key = (record.partition_id, event.stream_id.clone());
        let next = local.get(&event.stream_id).copied().or_else(|| {
            index
                .streams
                .get(&key)
                .map(|s| next_of(s.run.first, s.run.positions.len()))
        });
        let version = u128::from(event.stream_version.0);
        if next.is_some_and(|next| next != version) {
            return false;
        }
        local.insert(&event.stream_id, version + 1);
    }
    true
}

/// The ids of events that appear twice, within the record or already in `index`.
fn repeated_ids(index: &SegmentIndex, record: &TransactionRecord) -> Vec<EventId> {
    let mut seen = BTreeSet::new();
    record
        .events
        .iter()
        .filter(|e| !seen.insert(e.event_id) || index.events.contains_key(&e.event_id))
        .map(|e| e.event_id)
        .collect()
}

/// What the scan needs to judge frames of one bucket.
#[derive(Clone, Copy)]
struct FrameFilter {
    layout: Layout,
    bucket: BucketId,
    max_body: u64,
}

/// A frame that did not decode, and where the scan went on.
struct Damage {
    offset: u64,
    reason: FrameError,
    resync: Resync,
}

enum Search {
    Found(u64),
    NotFound,
    GaveUp,
}

/// The first offset at or after `from` where a whole transaction frame of this bucket
/// decodes. Cheap tests (kind, length, partition) come before the CRC, so garbage is passed
/// over at a few comparisons a byte.
fn search_frame(bytes: &[u8], from: u64, filter: &FrameFilter) -> Search {
    let header = FRAME_HEADER_BYTES as usize;
    let min_body = TXN_FIXED_BYTES as u64;
    let mut budget = SEARCH_BUDGET_BASE_BYTES.saturating_add(2 * bytes.len() as u64);
    let mut at = usize::try_from(from).unwrap_or(usize::MAX);
    while at.saturating_add(header) <= bytes.len() {
        let rest = &bytes[at..];
        let len = u64::from(u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")));
        let candidate = rest[8] == KIND_TRANSACTION
            && len >= min_body
            && len <= filter.max_body
            && FRAME_HEADER_BYTES + len <= rest.len() as u64
            && {
                let p = header + PARTITION_FIELD_OFFSET;
                let partition = u16::from_le_bytes([rest[p], rest[p + 1]]);
                filter.layout.owns(filter.bucket, partition)
            };
        if candidate {
            if budget < len {
                return Search::GaveUp;
            }
            budget -= len;
            if decode_frame(rest, filter.max_body).is_ok() {
                return Search::Found(at as u64);
            }
        }
        at += 1;
    }
    Search::NotFound
}

/// Where to go on after the frame at `offset` failed to decode.
fn resync_after(bytes: &[u8], offset: u64, filter: &FrameFilter) -> Resync {
    let total = bytes.len() as u64;
    // The claimed length first, as recovery does: a frame whose body is damaged but whose
    // length is intact loses only itself.
    if let Some(len) = bytes
        .get(offset as usize..offset as usize + 4)
        .map(|b| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes"))))
        && len <= filter.max_body
    {
        let next = offset + FRAME_HEADER_BYTES + len;
        if next < total && decode_frame(&bytes[next as usize..], filter.max_body).is_ok() {
            return Resync::ClaimedLength { next };
        }
    }
    // A damaged length field: look for the next whole frame anywhere after it, so valid
    // frames behind bad bytes are never mistaken for a torn tail.
    match search_frame(bytes, offset + 1, filter) {
        Search::Found(next) => Resync::Searched { next },
        Search::NotFound => Resync::Unreachable {
            bytes: total - offset,
        },
        Search::GaveUp => Resync::GaveUp {
            bytes: total - offset,
        },
    }
}

/// One step of a walk through a segment's frames.
enum Step<'r> {
    Record(u64, &'r TransactionRecord),
    Damage(Damage),
}

/// Decodes the frames of a segment from `from`, handing each transaction and each damaged
/// frame to `visit` in offset order, and returns the offset just past the last transaction
/// that decoded. Never allocates from a claimed length.
fn walk_frames(
    bytes: &[u8],
    from: u64,
    filter: &FrameFilter,
    mut visit: impl FnMut(Step<'_>),
) -> u64 {
    let total = bytes.len() as u64;
    let mut offset = from;
    let mut end = from;
    while offset < total {
        match decode_frame(&bytes[offset as usize..], filter.max_body) {
            Ok(frame) => {
                let next = offset + frame.encoded_len();
                match TransactionRecord::decode(&frame) {
                    Ok(record) => {
                        visit(Step::Record(offset, &record));
                        end = next;
                    }
                    // The CRC holds, so the frame was written whole and its length is
                    // right: the scan goes on after it whatever follows.
                    Err(reason) => visit(Step::Damage(Damage {
                        offset,
                        reason,
                        resync: Resync::ClaimedLength { next },
                    })),
                }
                offset = next;
            }
            Err(reason) => {
                let resync = resync_after(bytes, offset, filter);
                let next = match resync {
                    Resync::ClaimedLength { next } | Resync::Searched { next } => Some(next),
                    Resync::Unreachable { .. } | Resync::GaveUp { .. } => None,
                };
                visit(Step::Damage(Damage {
                    offset,
                    reason,
                    resync,
                }));
                match next {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
    }
    end
}

/// Checks a segment's header frame.
fn header_fault(bytes: &[u8], bucket: BucketId, segment: u32) -> Option<HeaderFault> {
    let max_body = SEGMENT_HEADER_FRAME_BYTES - FRAME_HEADER_BYTES;
    let header = decode_frame(bytes, max_body)
        .and_then(|frame| decode_segment_header(&frame))
        .map_err(HeaderFault::Frame);
    match header {
        Err(fault) => Some(fault),
        Ok(h) if h.bucket != bucket.0 || h.segment != segment => Some(HeaderFault::Names {
            bucket: h.bucket,
            segment: h.segment,
        }),
        Ok(_) => None,
    }
}

/// The first index-file field that differs from what the frames give (`built`), or, when
/// the frames could not all be read, the bounds the store itself checks on open.
fn index_difference(
    stored: &SealedIndex,
    segment: u32,
    file_bytes: u64,
    built: Option<&SealedIndex>,
) -> Option<IndexDifference> {
    if stored.segment != segment {
        return Some(IndexDifference::SegmentId {
            stored: stored.segment,
        });
    }
    let Some(built) = built else {
        let in_bounds = (SEGMENT_HEADER_FRAME_BYTES..=file_bytes).contains(&stored.data_end);
        return (!in_bounds).then_some(IndexDifference::DataEndOutOfBounds {
            stored: stored.data_end,
            file_bytes,
        });
    };
    let (s, b) = (&stored.index, &built.index);
    if stored.data_end != built.data_end {
        Some(IndexDifference::DataEnd {
            stored: stored.data_end,
            actual: built.data_end,
        })
    } else if s.events != b.events {
        Some(IndexDifference::Events {
            stored: s.events.len(),
            actual: b.events.len(),
        })
    } else if s.streams != b.streams {
        Some(IndexDifference::Streams {
            stored: s.streams.len(),
            actual: b.streams.len(),
        })
    } else if s.partitions != b.partitions {
        Some(IndexDifference::Partitions {
            stored: s.partitions.len(),
            actual: b.partitions.len(),
        })
    } else if stored.event_bloom != built.event_bloom || stored.stream_bloom != built.stream_bloom {
        Some(IndexDifference::BloomFilters)
    } else {
        None
    }
}

/// The check (and repair) of one bucket directory.
struct BucketCheck<'a, D: Disk> {
    disk: &'a D,
    filter: FrameFilter,
    bucket: BucketId,
    dir: PathBuf,
    repair: bool,
    /// Whether a repair changed the directory's entries, which then need a `sync_dir`.
    dir_changed: bool,
    /// Set when segments are missing: which one is open is then in doubt, and repairs
    /// that touch segments are not made.
    segments_missing: bool,
    continuity: Continuity,
    summary: BucketSummary,
    problems: Vec<Problem>,
    repairs: Vec<Repair>,
}

/// What scanning one segment's frames gave.
struct SegmentScan {
    /// The index the writer would have built, if every record fitted one.
    index: Option<SegmentIndex>,
    /// Just past the last frame that decoded.
    end: u64,
    /// Where the open segment's torn tail starts, if it has one.
    torn: Option<u64>,
}

impl<'a, D: Disk> BucketCheck<'a, D> {
    fn new(disk: &'a D, root: &Path, layout: Layout, bucket: BucketId, repair: bool) -> Self {
        BucketCheck {
            disk,
            filter: FrameFilter {
                layout,
                bucket,
                max_body: layout.max_frame_body_bytes(),
            },
            bucket,
            dir: layout::bucket_dir(root, bucket.0),
            repair,
            dir_changed: false,
            segments_missing: false,
            continuity: Continuity::default(),
            summary: BucketSummary {
                bucket,
                segments: 0,
                sealed_segments: 0,
                indexes_verified: 0,
                transactions: 0,
                events: 0,
                bytes: 0,
                streams: 0,
                partitions: 0,
            },
            problems: Vec::new(),
            repairs: Vec::new(),
        }
    }

    fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
        move |e| StoreError::io(op, path, e)
    }

    fn run(&mut self) -> Result<(), StoreError> {
        if !self.disk.exists(&self.dir) {
            self.problems.push(Problem::BucketMissing {
                bucket: self.bucket,
                path: self.dir.clone(),
            });
            return Ok(());
        }
        let names = match self.disk.list_dir(&self.dir) {
            Ok(names) => names,
            Err(e) => {
                self.problems.push(Problem::Unreadable {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        let mut segments = BTreeSet::new();
        let mut indexes = BTreeSet::new();
        for name in names {
            let path = self.dir.join(&name);
            match layout::parse_bucket_entry(&name) {
                BucketEntry::Segment(id) => {
                    segments.insert(id);
                }
                BucketEntry::Index(id) => {
                    indexes.insert(id);
                }
                BucketEntry::IndexTemp(_) => {
                    self.problems.push(Problem::IndexTempFile {
                        bucket: self.bucket,
                        path: path.clone(),
                    });
                    if self.repair {
                        self.disk
                            .remove_file(&path)
                            .map_err(Self::io("remove", &path))?;
                        self.dir_changed = true;
                        self.repairs.push(Repair::RemovedTempFile {
                            bucket: self.bucket,
                            path,
                        });
                    }
                }
                BucketEntry::Unknown(name) if is_saved_tail(&name) => {
                    self.problems.push(Problem::SavedTail { path });
                }
                BucketEntry::Unknown(_) => self.problems.push(Problem::StrayFile { path }),
            }
        }
        let open = segments.last().copied();
        self.check_missing(&segments, &indexes);
        if let Some(open) = open
            && indexes.contains(&open)
            && indexes.last() == Some(&open)
        {
            self.problems.push(Problem::OpenSegmentIndex {
                bucket: self.bucket,
                segment: open,
            });
            if self.repair && !self.segments_missing {
                let path = layout::index_file(&self.dir, open);
                self.disk
                    .remove_file(&path)
                    .map_err(Self::io("remove", &path))?;
                self.dir_changed = true;
                self.repairs.push(Repair::RemovedOpenSegmentIndex {
                    bucket: self.bucket,
                    segment: open,
                    path,
                });
            }
        }

        let mut expected_id = 0;
        for &id in &segments {
            if id != expected_id {
                self.continuity.lose_track();
            }
            expected_id = id.saturating_add(1);
            let path = layout::segment_file(&self.dir, id);
            let read = if Some(id) == open {
                // As recovery reads it: a flipped bit on read is not a torn tail.
                read_open_segment(|| read_all(self.disk, &path), self.filter.max_body)
            } else {
                read_all(self.disk, &path)
            };
            let bytes = match read {
                Ok(bytes) => bytes,
                Err(reason) => {
                    self.problems.push(Problem::Unreadable { path, reason });
                    self.continuity.lose_track();
                    continue;
                }
            };
            self.summary.segments += 1;
            self.summary.bytes += bytes.len() as u64;
            if Some(id) == open {
                self.check_open(id, &path, bytes)?;
            } else {
                self.summary.sealed_segments += 1;
                self.check_sealed(id, &bytes)?;
            }
        }
        self.summary.streams = self.continuity.streams.len() as u64;
        self.summary.partitions = self.continuity.partitions.len() as u64;
        if self.dir_changed {
            self.disk
                .sync_dir(&self.dir)
                .map_err(Self::io("sync directory", &self.dir))?;
        }
        Ok(())
    }

    /// Reports segment files that must exist and do not, as ranges (a crafted file name
    /// cannot make this list long).
    fn check_missing(&mut self, segments: &BTreeSet<u32>, indexes: &BTreeSet<u32>) {
        let last_needed = segments
            .last()
            .copied()
            .max(indexes.last().copied())
            .unwrap_or(0);
        let mut next = 0u32;
        let mut present = segments.iter().copied().peekable();
        loop {
            let upto = match present.next() {
                Some(id) => id,
                None if next <= last_needed => {
                    // Nothing left on disk, but segment 0 (or a sealed one an index file
                    // names) must exist.
                    self.push_missing(next..=last_needed);
                    break;
                }
                None => break,
            };
            if upto > next {
                self.push_missing(next..=upto - 1);
            }
            match upto.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
    }

    fn push_missing(&mut self, segments: RangeInclusive<u32>) {
        self.segments_missing = true;
        self.problems.push(Problem::SegmentMissing {
            bucket: self.bucket,
            segments,
        });
    }

    /// Walks a segment's frames from just after the header, checking each transaction and
    /// the bucket's continuity. Damage is a corrupt frame, except at the end of the open
    /// segment, where damage that no valid frame follows is its torn tail.
    fn scan(&mut self, segment: u32, bytes: &[u8], open: bool) -> SegmentScan {
        let bucket = self.bucket;
        let layout = self.filter.layout;
        let segment_bytes = bytes;
        let mut index = Some(SegmentIndex::default());
        let mut torn = None;
        let (continuity, problems, summary) =
            (&mut self.continuity, &mut self.problems, &mut self.summary);
        let end = walk_frames(bytes, SEGMENT_HEADER_FRAME_BYTES, &self.filter, |step| {
            let (offset, record) = match step {
                Step::Record(offset, record) => (offset, record),
                Step::Damage(Damage {
                    offset,
                    resync: Resync::Unreachable { bytes },
                    ..
                }) if open => {
                    // Zeros after the last frame are space the writer extended the segment
                    // by ahead of its frames (docs/format.md), not a torn write.
                    if segment_bytes[offset as usize..].iter().all(|&b| b == 0) {
                        return;
                    }
                    problems.push(Problem::TornTail {
                        bucket,
                        segment,
                        offset,
                        bytes,
                    });
                    torn = Some(offset);
                    return;
                }
                Step::Damage(damage) => {
                    problems.push(Problem::CorruptFrame {
                        bucket,
                        segment,
                        offset: damage.offset,
                        reason: damage.reason,
                        resync: damage.resync,
                    });
                    // Whatever the lost frame held is unknown from here on, and an index
                    // of the rest would hide it.
                    continuity.lose_track();
                    index = None;
                    return;
                }
            };
            let at = Loc {
                bucket,
                segment,
                offset,
            };
            summary.transactions += 1;
            summary.events += record.events.len() as u64;
            let key_partition = record.partition_key.partition(layout.partition_count);
            if key_partition != record.partition_id || !layout.owns(bucket, record.partition_id.0) {
                problems.push(Problem::MisroutedTransaction {
                    bucket,
                    segment,
                    offset,
                    partition: record.partition_id,
                    key_partition,
                });
            }
            continuity.add(at, record, problems);
            let mut fits = true;
            if let Some(built) = &index {
                for event_id in repeated_ids(built, record) {
                    problems.push(Problem::DuplicateEventId {
                        bucket,
                        segment,
                        offset,
                        event_id,
                    });
                    fits = false;
                }
                fits &= extends_runs(built, record);
            }
            match (&mut index, fits) {
                (Some(built), true) => built.insert(offset, record),
                _ => index = None,
            }
        });
        SegmentScan { index, end, torn }
    }

    fn check_sealed(&mut self, segment: u32, bytes: &[u8]) -> Result<(), StoreError> {
        let header = header_fault(bytes, self.bucket, segment);
        let header_ok = header.is_none();
        if let Some(fault) = header {
            self.problems.push(Problem::BadHeader {
                bucket: self.bucket,
                segment,
                fault,
            });
        }
        let scan = self.scan(segment, bytes, false);
        // Only a segment whose every frame decodes gives the index the writer made.
        let built = scan
            .index
            .filter(|_| header_ok)
            .map(|index| SealedIndex::build(segment, scan.end, index));
        self.check_index(segment, bytes.len() as u64, built)
    }

    fn check_index(
        &mut self,
        segment: u32,
        file_bytes: u64,
        built: Option<SealedIndex>,
    ) -> Result<(), StoreError> {
        let path = layout::index_file(&self.dir, segment);
        let bucket = self.bucket;
        let problem = if !self.disk.exists(&path) {
            Some(Problem::IndexMissing { bucket, segment })
        } else {
            let bytes = match read_all(self.disk, &path) {
                Ok(bytes) => bytes,
                Err(reason) => {
                    // Perhaps a passing I/O error: nothing is rebuilt over the file.
                    self.problems.push(Problem::Unreadable { path, reason });
                    return Ok(());
                }
            };
            match decode_index_file(&bytes) {
                Err(reason) => Some(Problem::IndexCorrupt {
                    bucket,
                    segment,
                    reason,
                }),
                Ok(stored) if stored.segment == segment && stored.data_end > file_bytes => {
                    self.problems.push(Problem::SegmentTruncated {
                        bucket,
                        segment,
                        file_bytes,
                        data_end: stored.data_end,
                    });
                    return Ok(());
                }
                Ok(stored) => {
                    let difference = index_difference(&stored, segment, file_bytes, built.as_ref());
                    if difference.is_none() && built.is_some() {
                        self.summary.indexes_verified += 1;
                    }
                    difference.map(|detail| Problem::IndexMismatch {
                        bucket,
                        segment,
                        detail,
                    })
                }
            }
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        self.problems.push(problem);
        if self.repair
            && let Some(built) = built
        {
            // As the writer seals: temporary file, sync, rename; the directory is synced
            // when the bucket is done.
            write_index_file(self.disk, &self.dir, &built)?;
            self.dir_changed = true;
            self.repairs.push(Repair::RebuiltIndex {
                bucket,
                segment,
                path,
            });
        }
        Ok(())
    }

    fn check_open(&mut self, segment: u32, path: &Path, bytes: Mapped) -> Result<(), StoreError> {
        let total = bytes.len() as u64;
        if let Some(fault) = header_fault(&bytes, self.bucket, segment) {
            // A header that does not decode, with no valid frame after it, is a segment
            // whose creation a crash cut short: nothing in it was ever acknowledged.
            let frames_follow = !matches!(
                search_frame(&bytes, SEGMENT_HEADER_FRAME_BYTES, &self.filter),
                Search::NotFound
            );
            if fault.may_be_torn() && !frames_follow {
                self.problems.push(Problem::TornTail {
                    bucket: self.bucket,
                    segment,
                    offset: 0,
                    bytes: total,
                });
                if self.repair && !self.segments_missing {
                    self.cut_tail(segment, path, bytes, 0)?;
                }
                return Ok(());
            }
            self.problems.push(Problem::BadHeader {
                bucket: self.bucket,
                segment,
                fault,
            });
        }
        if let Some(offset) = self.scan(segment, &bytes, true).torn
            && self.repair
            && !self.segments_missing
        {
            self.cut_tail(segment, path, bytes, offset)?;
        }
        Ok(())
    }

    /// Cuts the open segment at `offset`, first saving the cut bytes durably beside it. At
    /// offset 0 (a torn header) the header is written again.
    fn cut_tail(
        &mut self,
        segment: u32,
        path: &Path,
        bytes: Mapped,
        offset: u64,
    ) -> Result<(), StoreError> {
        let cut = bytes[offset as usize..].to_vec();
        // The map must be gone before the file shrinks under it (a read past the new end
        // of a real map is a SIGBUS).
        drop(bytes);
        if !cut.is_empty() {
            let moved_to = self.save_tail(path, offset, &cut)?;
            if offset >= SEGMENT_HEADER_FRAME_BYTES {
                let file = self
                    .disk
                    .open(path, OpenMode::ReadWrite)
                    .map_err(Self::io("open", path))?;
                file.truncate(offset)
                    .and_then(|()| file.sync())
                    .map_err(Self::io("truncate torn tail", path))?;
            }
            self.repairs.push(Repair::TruncatedTail {
                bucket: self.bucket,
                segment,
                offset,
                bytes: cut.len() as u64,
                moved_to,
            });
        }
        if offset < SEGMENT_HEADER_FRAME_BYTES {
            create_segment(self.disk, &self.dir, self.bucket, segment)?;
            self.repairs.push(Repair::RewroteHeader {
                bucket: self.bucket,
                segment,
            });
        }
        Ok(())
    }

    /// Writes `cut` to `segment-N.log.torn-<offset>` (or `.torn-<offset>.K` if an earlier
    /// repair left different bytes under that name), synced with its directory entry, and
    /// returns its path. A copy with the same bytes, left by a repair that stopped before
    /// its cut, is reused.
    fn save_tail(
        &mut self,
        segment_path: &Path,
        offset: u64,
        cut: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let name = segment_path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("segment file names are ASCII");
        let base = format!("{name}.torn-{offset}");
        for attempt in 0..1000u32 {
            let name = match attempt {
                0 => base.clone(),
                k => format!("{base}.{k}"),
            };
            let path = self.dir.join(name);
            let file = if self.disk.exists(&path) {
                if read_all(self.disk, &path).is_ok_and(|saved| *saved == *cut) {
                    self.disk
                        .open(&path, OpenMode::ReadWrite)
                        .map_err(Self::io("open", &path))?
                } else {
                    continue;
                }
            } else {
                let file = self
                    .disk
                    .open(&path, OpenMode::CreateNew)
                    .map_err(Self::io("create", &path))?;
                file.write_at(0, cut).map_err(Self::io("write", &path))?;
                file
            };
            file.sync().map_err(Self::io("sync", &path))?;
            self.disk
                .sync_dir(&self.dir)
                .map_err(Self::io("sync directory", &self.dir))?;
            return Ok(path);
        }
        Err(StoreError::io(
            "save torn tail",
            self.dir.join(base),
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "1000 earlier copies of torn tails at this offset; remove some",
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TransactionId;
    use crate::store::record::EventRecord;
    use uuid::Uuid;

    fn filter() -> FrameFilter {
        let layout = Layout {
            partition_count: 4,
            bucket_count: 2,
            segment_size_bytes: 4096,
        };
        FrameFilter {
            layout,
            bucket: BucketId(0),
            max_body: layout.max_frame_body_bytes(),
        }
    }

    /// A transaction of partition 0 (a key whose partition out of 4 is 0).
    fn frame(seq: u64) -> Vec<u8> {
        let key = PartitionKey(Uuid::from_u128(0));
        assert_eq!(key.partition(4), PartitionId(0));
        let record = TransactionRecord {
            transaction_id: TransactionId(Uuid::from_u128(u128::from(seq))),
            partition_key: key,
            partition_id: PartitionId(0),
            first_sequence: PartitionSeq(seq),
            events: vec![EventRecord {
                event_id: EventId(Uuid::from_u128(1000 + u128::from(seq))),
                stream_id: StreamId::new("s").unwrap(),
                stream_version: StreamVersion(seq),
                event_name: "E".into(),
                timestamp_ms: 0,
                metadata: Default::default(),
                payload: bytes::Bytes::from_static(b"payload"),
            }],
        };
        let mut out = Vec::new();
        record.encode(&mut out);
        out
    }

    /// The offsets of the records a walk visits, and the damage it meets.
    fn walk(bytes: &[u8]) -> (Vec<u64>, Vec<Damage>) {
        let (mut seen, mut damages) = (Vec::new(), Vec::new());
        walk_frames(
            bytes,
            SEGMENT_HEADER_FRAME_BYTES,
            &filter(),
            |step| match step {
                Step::Record(offset, _) => seen.push(offset),
                Step::Damage(damage) => damages.push(damage),
            },
        );
        (seen, damages)
    }

    #[test]
    fn a_damaged_length_is_resynced_by_search_not_taken_for_a_torn_tail() {
        let mut bytes = vec![0u8; SEGMENT_HEADER_FRAME_BYTES as usize];
        let second = bytes.len() + frame(0).len();
        for seq in 0..3 {
            bytes.extend(frame(seq));
        }
        bytes[second + 1] ^= 0x40;
        let (seen, damages) = walk(&bytes);
        assert_eq!(damages.len(), 1);
        assert_eq!(damages[0].offset, second as u64);
        let third = (second + frame(1).len()) as u64;
        assert_eq!(damages[0].resync, Resync::Searched { next: third });
        assert_eq!(seen, [SEGMENT_HEADER_FRAME_BYTES, third]);
    }

    #[test]
    fn garbage_after_the_last_frame_is_unreachable() {
        let mut bytes = vec![0u8; SEGMENT_HEADER_FRAME_BYTES as usize];
        bytes.extend(frame(0));
        let end = bytes.len() as u64;
        bytes.extend([0xab; 50]);
        let (seen, damages) = walk(&bytes);
        assert_eq!(seen, [SEGMENT_HEADER_FRAME_BYTES]);
        assert_eq!(
            walk_frames(&bytes, SEGMENT_HEADER_FRAME_BYTES, &filter(), |_| {}),
            end
        );
        assert_eq!(damages.len(), 1);
        assert_eq!(damages[0].resync, Resync::Unreachable { bytes: 50 });
    }

    #[test]
    fn continuity_reports_gaps_once_and_forgives_one_jump_after_lost_data() {
        let decode = |seq| {
            let bytes = frame(seq);
            TransactionRecord::decode(&decode_frame(&bytes, 4096).unwrap()).unwrap()
        };
        let at = Loc {
            bucket: BucketId(0),
            segment: 0,
            offset: 25,
        };
        let mut c = Continuity::default();
        let mut problems = Vec::new();
        c.add(at, &decode(0), &mut problems);
        c.add(at, &decode(2), &mut problems);
        c.add(at, &decode(3), &mut problems);
        // One jump: one sequence gap and one version gap.
        assert_eq!(problems.len(), 2, "{problems:?}");
        c.lose_track();
        c.add(at, &decode(7), &mut problems);
        c.add(at, &decode(8), &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        c.add(at, &decode(10), &mut problems);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
