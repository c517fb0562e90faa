//! The node log: one file whose fsync makes every bucket's appends durable at once.
//!
//! A bucket writes its batch's frames into its open segment (the page cache) without syncing
//! it; the node's commit loop (`store::group_commit`) then hands the frames of every bucket's
//! batch to [`NodeLog::commit`], which appends them, each with where it belongs, to the node
//! log and syncs that one file. So one fsync serves the appends of all buckets in flight,
//! where a sync per bucket file made four: on this project's disk several files' fsyncs
//! overlap only partly (docs/decisions/0011-node-log.md).
//!
//! Segments are synced only when the log moves on to its next file (a *checkpoint*: every
//! segment written since the last one), when a segment is sealed, and when the store opens.
//! Until then the log is what makes an acknowledged append durable, and opening the store
//! first replays every log record into its segment ([`replay`]): bytes already there are left
//! alone, missing or torn ones are written back, before the buckets recover as before.
//!
//! Two log files take turns: after a checkpoint the older one, no longer needed, is renamed to
//! the next generation and written over from its start, so the log's fsyncs write into space
//! the file already has (docs/decisions/0008-preallocated-segments.md says why that matters). Each record carries its
//! generation and its own offset under its CRC, so what is left of an earlier generation reads
//! as the end of the log. Byte layout: docs/format.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use disk::{Disk, File, OpenMode};

use crate::error::StoreError;
use crate::model::BucketId;
use crate::store::layout;

/// "SDBL", little-endian, first in every log record.
pub const LOG_MAGIC: u32 = u32::from_le_bytes(*b"SDBL");

/// magic u32, crc u32, length u32, bucket u16, reserved u16, generation u64, log offset u64,
/// segment u32, segment offset u64.
pub const LOG_HEADER_BYTES: usize = 44;

/// Where a log record's bytes belong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub bucket: u16,
    pub segment: u32,
    pub offset: u64,
}

/// A log record as read back.
#[derive(Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub place: Place,
    pub bytes: Vec<u8>,
}

/// Encodes a record header for `len` bytes at `place` with zeros where the generation, log
/// offset and CRC go ([`seal_record`] fills them in when the record's place in the log is
/// known).
fn push_header(buf: &mut Vec<u8>, place: Place, len: usize) {
    buf.extend_from_slice(&LOG_MAGIC.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(
        &u32::try_from(len)
            .expect("a batch under 4 GiB")
            .to_le_bytes(),
    );
    buf.extend_from_slice(&place.bucket.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    buf.extend_from_slice(&place.segment.to_le_bytes());
    buf.extend_from_slice(&place.offset.to_le_bytes());
}

/// Fills in the generation, log offset and CRC of the record that starts `record`.
fn seal_record(record: &mut [u8], generation: u64, log_offset: u64) {
    record[16..24].copy_from_slice(&generation.to_le_bytes());
    record[24..32].copy_from_slice(&log_offset.to_le_bytes());
    let crc = crc32fast::hash(&record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The record of generation `generation` that starts at `at` in `bytes`, with its length in
/// the log, if a whole and valid one does.
fn record_at(bytes: &[u8], at: usize, generation: u64) -> Option<(LogRecord, usize)> {
    let header = bytes.get(at..at + LOG_HEADER_BYTES)?;
    if u32_at(header, 0) != LOG_MAGIC
        || u64_at(header, 16) != generation
        || u64_at(header, 24) != at as u64
    {
        return None;
    }
    let len = u32_at(header, 8) as usize;
    let end = (at + LOG_HEADER_BYTES).checked_add(len)?;
    let record = bytes.get(at..end)?;
    if crc32fast::hash(&record[8..]) != u32_at(header, 4) {
        return None;
    }
    let place = Place {
        bucket: u16::from_le_bytes([header[12], header[13]]),
        segment: u32_at(header, 32),
        offset: u64_at(header, 36),
    };
    let bytes = record[LOG_HEADER_BYTES..].to_vec();
    Some((LogRecord { place, bytes }, end - at))
}

/// The records of one log file of generation `generation`, in order. The log ends at the
/// first place that holds no valid record of this generation (a torn write, zeros, or what an
/// earlier generation left); a valid record of this generation *after* that place means the
/// log was damaged, not torn, and is an error rather than a silent end.
pub fn read_records(
    bytes: &[u8],
    generation: u64,
    path: &Path,
) -> Result<Vec<LogRecord>, StoreError> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, len)) = record_at(bytes, at, generation) {
        records.push(record);
        at += len;
    }
    let magic = LOG_MAGIC.to_le_bytes();
    let mut probe = at + 1;
    while probe + LOG_HEADER_BYTES <= bytes.len() {
        if bytes[probe..probe + 4] == magic && record_at(bytes, probe, generation).is_some() {
            return Err(StoreError::corrupt(
                path,
                at as u64,
                format!("log record damaged: a valid record of this log follows at offset {probe}"),
            ));
        }
        probe += 1;
    }
    Ok(records)
}

/// Why a commit failed.
#[derive(Clone, Debug)]
pub enum LogFailure {
    /// Nothing of the commit is in the log: the write failed and was cut back.
    Unwritten(Arc<StoreError>),
    /// The commit may or may not be durable (a sync failed); the log takes no more commits.
    Unknown(Arc<StoreError>),
}

/// One file's worth of log: the file, its generation and where the next record goes.
struct Current<D: Disk> {
    file: D::File,
    path: PathBuf,
    generation: u64,
    write_pos: u64,
    len: u64,
}

/// What only the leader touches, while it writes.
struct Writer<D: Disk> {
    disk: D,
    root: PathBuf,
    current: Current<D>,
    /// The previous log file, whose records a checkpoint has made unnecessary once the log
    /// moves on: written over next.
    spare: Option<PathBuf>,
    /// Segments written since the last checkpoint, synced by the next one.
    dirty: BTreeMap<(u16, u32), Arc<dyn File>>,
    rotate_bytes: u64,
    ahead_bytes: u64,
    poisoned: Option<Arc<StoreError>>,
    syncs: u64,
    /// The records of a commit, reused from commit to commit.
    buf: Vec<u8>,
}

/// A batch's frames to make durable: where they are and the file they were written to.
pub struct LogWrite<'a> {
    pub place: Place,
    pub bytes: &'a [u8],
    pub file: Arc<dyn File>,
}

/// The node log. Its one writer is the node's commit loop (`store::group_commit`), which
/// commits the batches of every bucket together.
pub struct NodeLog<D: Disk> {
    writer: Mutex<Writer<D>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("node log lock poisoned")
}

impl<D: Disk> NodeLog<D> {
    /// Starts the log of generation `generation` in `root`, writing over `reuse` (a log file
    /// whose records are no longer needed) when given, else in a new file. Syncs the directory.
    pub fn start(
        disk: &D,
        root: &Path,
        generation: u64,
        reuse: Option<PathBuf>,
        rotate_bytes: u64,
        ahead_bytes: u64,
    ) -> Result<Self, StoreError> {
        let current = next_file(disk, root, generation, reuse)?;
        Ok(NodeLog {
            writer: Mutex::new(Writer {
                disk: disk.clone(),
                root: root.to_owned(),
                current,
                spare: None,
                dirty: BTreeMap::new(),
                rotate_bytes,
                ahead_bytes,
                poisoned: None,
                syncs: 0,
                buf: Vec::new(),
            }),
        })
    }

    /// fsyncs of the log so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.writer).syncs
    }

    /// A clean stop: syncs every segment the log covers, then removes the log files, so the
    /// next open has nothing to replay. Commits after this fail.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut writer = lock(&self.writer);
        if writer.poisoned.is_some() {
            // What the log holds may be all that is durable: it stays for the next open.
            return Ok(());
        }
        writer.checkpoint()?;
        writer.poisoned = Some(Arc::new(StoreError::Closed));
        let writer = &mut *writer;
        for path in writer
            .spare
            .take()
            .into_iter()
            .chain([writer.current.path.clone()])
        {
            writer
                .disk
                .remove_file(&path)
                .map_err(|e| StoreError::io("remove", &path, e))?;
        }
        writer
            .disk
            .sync_dir(&writer.root)
            .map_err(|e| StoreError::io("sync directory", &writer.root, e))
    }

    /// Makes `writes`, already written to their segments, durable: appends one record for
    /// each to the log and syncs it once. On failure no record is durable
    /// ([`LogFailure::Unwritten`]) or that is unknown ([`LogFailure::Unknown`], and the log
    /// takes no more commits).
    pub fn commit(&self, writes: &[LogWrite<'_>]) -> Result<(), LogFailure> {
        lock(&self.writer).write(writes)
    }
}

/// Opens the log file of `generation`: `reuse` renamed, or a new file. Syncs the directory.
fn next_file<D: Disk>(
    disk: &D,
    root: &Path,
    generation: u64,
    reuse: Option<PathBuf>,
) -> Result<Current<D>, StoreError> {
    let path = layout::log_file(root, generation);
    let file = match reuse {
        Some(old) => {
            disk.rename(&old, &path)
                .map_err(|e| StoreError::io("rename", &old, e))?;
            disk.open(&path, OpenMode::ReadWrite)
                .map_err(|e| StoreError::io("open", &path, e))?
        }
        None => disk
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| StoreError::io("create", &path, e))?,
    };
    disk.sync_dir(root)
        .map_err(|e| StoreError::io("sync directory", root, e))?;
    let len = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
    Ok(Current {
        file,
        path,
        generation,
        write_pos: 0,
        len,
    })
}

impl<D: Disk> Writer<D> {
    fn write(&mut self, writes: &[LogWrite<'_>]) -> Result<(), LogFailure> {
        if let Some(err) = &self.poisoned {
            return Err(LogFailure::Unwritten(err.clone()));
        }
        let len: usize = writes
            .iter()
            .map(|w| LOG_HEADER_BYTES + w.bytes.len())
            .sum();
        let len = len as u64;
        if self.current.write_pos > 0 && self.current.write_pos + len > self.rotate_bytes {
            self.rotate().map_err(|err| self.poison(err))?;
        }
        let pos = self.current.write_pos;
        let mut records = std::mem::take(&mut self.buf);
        records.clear();
        for write in writes {
            let start = records.len();
            push_header(&mut records, write.place, write.bytes.len());
            records.extend_from_slice(write.bytes);
            seal_record(
                &mut records[start..],
                self.current.generation,
                pos + start as u64,
            );
        }
        let result = self.write_records(pos, &records);
        if records.capacity() <= 4 << 20 {
            self.buf = records;
        }
        result?;
        for write in writes {
            let key = (write.place.bucket, write.place.segment);
            self.dirty.entry(key).or_insert_with(|| write.file.clone());
        }
        Ok(())
    }

    fn write_records(&mut self, pos: u64, records: &[u8]) -> Result<(), LogFailure> {
        let len = records.len() as u64;
        let file = &self.current.file;
        let path = &self.current.path;
        let mut written = Ok(());
        if pos + len > self.current.len {
            // Zeros ahead, in the same sync as the records: the syncs after it then write
            // into space the file has.
            let target = (pos + len + self.ahead_bytes).min(self.rotate_bytes.max(pos + len));
            let zeros = vec![0u8; (target - pos - len) as usize];
            written = file.write_at(pos + len, &zeros);
            if written.is_ok() {
                self.current.len = target;
            }
        }
        let written = written.and_then(|()| file.write_at(pos, records));
        if let Err(err) = written {
            let err = Arc::new(StoreError::io("write", path, err));
            // Cut back what may have landed, so that a crash cannot bring back records whose
            // commits were told they failed.
            let cut = file.truncate(pos).and_then(|()| file.sync());
            self.current.len = pos;
            return Err(match cut {
                Ok(()) => LogFailure::Unwritten(err),
                Err(cut) => self.poison(StoreError::io("truncate after failed write", path, cut)),
            });
        }
        if let Err(err) = file.sync() {
            let err = StoreError::io("sync", path, err);
            return Err(self.poison(err));
        }
        self.syncs += 1;
        self.current.write_pos = pos + len;
        Ok(())
    }

    fn poison(&mut self, err: StoreError) -> LogFailure {
        let err = Arc::new(err);
        self.poisoned = Some(err.clone());
        LogFailure::Unknown(err)
    }

    /// Syncs every segment written since the last checkpoint.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        #[cfg(feature = "planted-bugs")]
        if crate::planted::active(crate::planted::PlantedBug::CheckpointSkipsSync) {
            self.dirty.clear();
            return Ok(());
        }
        for ((bucket, segment), file) in std::mem::take(&mut self.dirty) {
            file.sync().map_err(|e| {
                let dir = layout::bucket_dir(&self.root, bucket);
                StoreError::io("sync", layout::segment_file(&dir, segment), e)
            })?;
        }
        Ok(())
    }

    /// Checkpoint and move on: syncs every segment written since the last checkpoint, so that
    /// the records of the current file are no longer needed, then writes over the spare.
    fn rotate(&mut self) -> Result<(), StoreError> {
        self.checkpoint()?;
        let next = next_file(
            &self.disk,
            &self.root,
            self.current.generation + 1,
            self.spare.take(),
        )?;
        let old = std::mem::replace(&mut self.current, next);
        self.spare = Some(old.path);
        Ok(())
    }
}

/// How many times [`read_log`] reads a log file.
const LOG_READS: usize = 3;

/// The records of the log file at `path`, read [`LOG_READS`] times: a read that returns a
/// flipped bit (a transient fault of the medium) ends the log early at the record it hits, or
/// makes the records after it look like damage, and the log is the only copy of what the
/// segments lost. A flip cannot make a record valid, so the read with the most records wins;
/// damage that every read shows is an error.
fn read_log<D: Disk>(disk: &D, path: &Path, generation: u64) -> Result<Vec<LogRecord>, StoreError> {
    let file = disk
        .open(path, OpenMode::Read)
        .map_err(|e| StoreError::io("open", path, e))?;
    let len = file.len().map_err(|e| StoreError::io("stat", path, e))?;
    let mut best: Option<Result<Vec<LogRecord>, StoreError>> = None;
    for _ in 0..LOG_READS {
        let read = file
            .read_vec_at(0, len as usize)
            .map_err(|e| StoreError::io("read", path, e))
            .and_then(|bytes| read_records(&bytes, generation, path));
        best = Some(match (best, read) {
            (None, read) => read,
            (Some(Ok(a)), Ok(b)) => Ok(if b.len() > a.len() { b } else { a }),
            (Some(Ok(a)), Err(_)) | (Some(Err(_)), Ok(a)) => Ok(a),
            (Some(Err(a)), Err(_)) => Err(a),
        });
    }
    best.expect("read at least once")
}

/// What [`replay`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogReplay {
    /// Log files read, by generation.
    pub files: Vec<(u64, PathBuf)>,
    /// Valid records read.
    pub records: u64,
    /// Records whose bytes were missing from their segment and were written back.
    pub rewritten: u64,
    /// Bytes written back.
    pub rewritten_bytes: u64,
}

impl LogReplay {
    /// The generation the next log starts at.
    pub fn next_generation(&self) -> u64 {
        self.files.last().map_or(0, |(g, _)| g + 1)
    }
}

/// Writes every record of every log file in `root` into its segment where the segment does
/// not hold its bytes already, then syncs every segment the log names: after this the
/// segments hold everything the log made durable, and the log files may be written over.
/// With `dry_run`, only counts what it would write (`sierradb check` without repair).
pub fn replay<D: Disk>(
    disk: &D,
    root: &Path,
    bucket_count: u16,
    dry_run: bool,
) -> Result<LogReplay, StoreError> {
    let names = disk
        .list_dir(root)
        .map_err(|e| StoreError::io("list", root, e))?;
    let mut files: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|n| layout::parse_log_file(n).map(|g| (g, root.join(n))))
        .collect();
    files.sort();
    let mut report = LogReplay {
        files,
        ..LogReplay::default()
    };
    let mut segments: BTreeMap<(u16, u32), (PathBuf, D::File)> = BTreeMap::new();
    for (generation, path) in &report.files {
        for record in read_log(disk, path, *generation)? {
            report.records += 1;
            let Place {
                bucket,
                segment,
                offset,
            } = record.place;
            if bucket >= bucket_count {
                return Err(StoreError::corrupt(
                    path,
                    0,
                    format!("log names bucket {bucket} of {bucket_count}"),
                ));
            }
            let (seg_path, seg) = match segments.entry((bucket, segment)) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let dir = layout::bucket_dir(root, bucket);
                    let seg_path = layout::segment_file(&dir, segment);
                    let mode = if dry_run {
                        OpenMode::Read
                    } else {
                        OpenMode::ReadWrite
                    };
                    let seg = disk.open(&seg_path, mode).map_err(|e| {
                        StoreError::io("open segment named by the log", &seg_path, e)
                    })?;
                    e.insert((seg_path, seg))
                }
            };
            let seg_len = seg
                .len()
                .map_err(|e| StoreError::io("stat", &*seg_path, e))?;
            let end = offset + record.bytes.len() as u64;
            let present = end <= seg_len
                && seg
                    .read_vec_at(offset, record.bytes.len())
                    .is_ok_and(|b| b == record.bytes);
            if !present {
                if !dry_run {
                    seg.write_at(offset, &record.bytes)
                        .map_err(|e| StoreError::io("write back from the log", &*seg_path, e))?;
                }
                report.rewritten += 1;
                report.rewritten_bytes += record.bytes.len() as u64;
            }
        }
    }
    if !dry_run {
        for (path, seg) in segments.values() {
            seg.sync().map_err(|e| StoreError::io("sync", path, e))?;
        }
    }
    Ok(report)
}

/// Starts the log after [`replay`]: the newest old file is written over as the next
/// generation, the others are removed.
pub fn start_after_replay<D: Disk>(
    disk: &D,
    root: &Path,
    replayed: &LogReplay,
    rotate_bytes: u64,
    ahead_bytes: u64,
) -> Result<NodeLog<D>, StoreError> {
    let mut files = replayed
        .files
        .iter()
        .map(|(_, p)| p.clone())
        .collect::<Vec<_>>();
    let reuse = files.pop();
    for path in files {
        disk.remove_file(&path)
            .map_err(|e| StoreError::io("remove", &path, e))?;
    }
    NodeLog::start(
        disk,
        root,
        replayed.next_generation(),
        reuse,
        rotate_bytes,
        ahead_bytes,
    )
}

/// The bucket of a log record's place, for callers that hold a [`BucketId`].
pub fn place(bucket: BucketId, segment: u32, offset: u64) -> Place {
    Place {
        bucket: bucket.0,
        segment,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(records: &[(Place, &[u8])], generation: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for (place, bytes) in records {
            starts.push(buf.len());
            push_header(&mut buf, *place, bytes.len());
            buf.extend_from_slice(bytes);
        }
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(buf.len());
            seal_record(&mut buf[start..end], generation, start as u64);
        }
        buf
    }

    fn at(bucket: u16, segment: u32, offset: u64) -> Place {
        Place {
            bucket,
            segment,
            offset,
        }
    }

    #[test]
    fn records_read_back_in_order() {
        let bytes = encoded(&[(at(1, 2, 30), b"abc"), (at(0, 0, 9), b"")], 7);
        let records = read_records(&bytes, 7, Path::new("log")).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].place, at(1, 2, 30));
        assert_eq!(records[0].bytes, b"abc");
        assert_eq!(records[1].place, at(0, 0, 9));
    }

    #[test]
    fn every_cut_ends_the_log_at_a_record_boundary() {
        let bytes = encoded(&[(at(0, 0, 0), b"first"), (at(0, 0, 5), b"second")], 3);
        let first_len = LOG_HEADER_BYTES + 5;
        for cut in 0..bytes.len() {
            let records = read_records(&bytes[..cut], 3, Path::new("log")).unwrap();
            let expected = usize::from(cut >= first_len);
            assert_eq!(records.len(), expected, "cut at {cut}");
        }
    }

    #[test]
    fn another_generation_ends_the_log() {
        let old = encoded(&[(at(0, 0, 0), b"old"), (at(0, 0, 3), b"older")], 4);
        let mut bytes = encoded(&[(at(0, 1, 0), b"new")], 5);
        let len = bytes.len();
        bytes.extend_from_slice(&old[len..]);
        let records = read_records(&bytes, 5, Path::new("log")).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].bytes, b"new");
    }

    #[test]
    fn a_damaged_record_before_valid_ones_is_an_error() {
        let mut bytes = encoded(&[(at(0, 0, 0), b"one"), (at(0, 0, 3), b"two")], 1);
        bytes[LOG_HEADER_BYTES] ^= 1;
        let err = read_records(&bytes, 1, Path::new("log")).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { offset: 0, .. }),
            "{err}"
        );
    }
}
