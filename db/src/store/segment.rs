//! Reading one segment's frames: through a memory map when sealed, positional reads when open.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use disk::{Disk, File, Mapped};

use crate::error::StoreError;
use crate::store::record::{
    FRAME_HEADER_BYTES, LastStream, SEGMENT_HEADER_FRAME_BYTES, TransactionRecord, decode_frame,
};

/// Bytes read at once from the open segment: most frames fit.
const OPTIMISTIC_READ_BYTES: u64 = 4096;
/// Bytes a scan reads ahead from the open segment at most, so nearby frames cost one `pread`.
pub const READ_AHEAD_BYTES: u64 = 64 * 1024;
/// How far apart the starts of two wanted frames may be for one window to take both: the
/// bytes between them are read for nothing, which costs less than another `pread` of
/// [`OPTIMISTIC_READ_BYTES`] while the gap stays this small.
pub const READ_AHEAD_GAP_BYTES: u64 = 8 * 1024;

/// A window of the open segment read ahead by a scan. Decoded events share it (their payloads
/// are slices of it), so each refill reads into a new buffer.
#[derive(Default)]
pub struct ReadAhead {
    path: Option<Arc<PathBuf>>,
    start: u64,
    bytes: Bytes,
    /// The stream id decoded last, shared with the next event of the same stream.
    last_stream: LastStream,
}

impl ReadAhead {
    /// Where the whole frame at `offset` of `path` sits in the window, if it does.
    fn find(&self, path: &Arc<PathBuf>, offset: u64) -> Option<usize> {
        if !self.path.as_ref().is_some_and(|p| Arc::ptr_eq(p, path)) || offset < self.start {
            return None;
        }
        let at = usize::try_from(offset - self.start).ok()?;
        let header = self.bytes.get(at..at + FRAME_HEADER_BYTES as usize)?;
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        (at + FRAME_HEADER_BYTES as usize + len <= self.bytes.len()).then_some(at)
    }
}

/// The bytes of one segment, shareable with readers outside the bucket lock.
pub enum SegmentData<D: Disk> {
    /// A sealed segment: immutable, memory-mapped (see [`SegmentData::sealed`]). Every read
    /// still verifies the CRC, since a map shows whatever the disk now holds.
    Sealed { path: Arc<PathBuf>, map: Bytes },
    /// The open segment: read with `pread`, only below `end`, its durable end when this
    /// handle was taken.
    Open {
        path: Arc<PathBuf>,
        file: Arc<D::File>,
        end: u64,
    },
}

impl<D: Disk> Clone for SegmentData<D> {
    fn clone(&self) -> Self {
        match self {
            SegmentData::Sealed { path, map } => SegmentData::Sealed {
                path: path.clone(),
                map: map.clone(),
            },
            SegmentData::Open { path, file, end } => SegmentData::Open {
                path: path.clone(),
                file: file.clone(),
                end: *end,
            },
        }
    }
}

impl<D: Disk> SegmentData<D> {
    /// A sealed segment's data; events read from it share the map rather than copy out of it.
    pub fn sealed(path: Arc<PathBuf>, map: Mapped) -> Self {
        SegmentData::Sealed {
            path,
            map: Bytes::from_owner(map),
        }
    }

    pub fn path(&self) -> &PathBuf {
        match self {
            SegmentData::Sealed { path, .. } | SegmentData::Open { path, .. } => path,
        }
    }

    /// Reads and decodes the transaction frame at `offset`. Corruption is an error naming the
    /// file and offset, never a panic and never data.
    pub fn read_transaction(
        &self,
        offset: u64,
        max_body: u64,
    ) -> Result<TransactionRecord, StoreError> {
        self.read_transaction_after(offset, max_body, &mut LastStream::default())
    }

    /// As [`SegmentData::read_transaction`], sharing the stream id with `last` when equal.
    fn read_transaction_after(
        &self,
        offset: u64,
        max_body: u64,
        last: &mut LastStream,
    ) -> Result<TransactionRecord, StoreError> {
        let path = self.path();
        let owned;
        let (owner, bytes): (&Bytes, &[u8]) = match self {
            SegmentData::Sealed { map, .. } => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let bytes = map.get(start..).ok_or_else(|| {
                    StoreError::corrupt(
                        path.as_path(),
                        offset,
                        "offset past the end of the segment",
                    )
                })?;
                (map, bytes)
            }
            SegmentData::Open { file, end, .. } => {
                // One read usually covers the whole frame; a second one fetches the rest of a
                // large frame.
                let available = end.saturating_sub(offset);
                let first = available.min(OPTIMISTIC_READ_BYTES) as usize;
                if first < FRAME_HEADER_BYTES as usize {
                    return Err(StoreError::corrupt(
                        path.as_path(),
                        offset,
                        "frame starts past the durable end",
                    ));
                }
                let mut frame = file
                    .read_vec_at(offset, first)
                    .map_err(|e| StoreError::io("read", path.as_path(), e))?;
                let len = u64::from(u32::from_le_bytes(frame[0..4].try_into().unwrap()));
                if len > max_body {
                    return Err(StoreError::corrupt(
                        path.as_path(),
                        offset,
                        format!("frame length {len} exceeds the maximum {max_body}"),
                    ));
                }
                let total = (FRAME_HEADER_BYTES + len).min(available) as usize;
                let have = frame.len();
                if total > have {
                    frame.resize(total, 0);
                    file.read_at(offset + have as u64, &mut frame[have..])
                        .map_err(|e| StoreError::io("read", path.as_path(), e))?;
                }
                owned = Bytes::from(frame);
                (&owned, &owned[..])
            }
        };
        let frame = decode_frame(bytes, max_body)
            .map_err(|e| StoreError::frame(path.as_path(), offset, e))?;
        TransactionRecord::decode_shared(&frame, owner, last)
            .map_err(|e| StoreError::frame(path.as_path(), offset, e))
    }

    /// As [`SegmentData::read_transaction`], but the open segment is read through `ahead`: a
    /// frame already in the window costs no read, and a miss refills the window from its
    /// offset up to one optimistic read past `until()`, the start of the last frame the scan
    /// wants from this window (asked only on a miss). Sealed segments are mapped and need no
    /// window.
    pub fn read_transaction_ahead(
        &self,
        offset: u64,
        max_body: u64,
        ahead: &mut ReadAhead,
        until: impl FnOnce() -> u64,
    ) -> Result<TransactionRecord, StoreError> {
        let SegmentData::Open { path, file, end } = self else {
            return self.read_transaction_after(offset, max_body, &mut ahead.last_stream);
        };
        let at = match ahead.find(path, offset) {
            Some(at) => at,
            None => {
                let wanted = until().saturating_sub(offset) + OPTIMISTIC_READ_BYTES;
                let want = end.saturating_sub(offset).min(READ_AHEAD_BYTES).min(wanted) as usize;
                let window = file
                    .read_vec_at(offset, want)
                    .map_err(|e| StoreError::io("read", path.as_path(), e))?;
                ahead.bytes = Bytes::from(window);
                ahead.path = Some(path.clone());
                ahead.start = offset;
                match ahead.find(path, offset) {
                    Some(at) => at,
                    // Larger than the window, or damaged: the one-frame path decides which.
                    None => {
                        return self.read_transaction_after(
                            offset,
                            max_body,
                            &mut ahead.last_stream,
                        );
                    }
                }
            }
        };
        let frame = decode_frame(&ahead.bytes[at..], max_body)
            .map_err(|e| StoreError::frame(path.as_path(), offset, e))?;
        TransactionRecord::decode_shared(&frame, &ahead.bytes, &mut ahead.last_stream)
            .map_err(|e| StoreError::frame(path.as_path(), offset, e))
    }
}

/// How many times the open segment is read when its frames end in something that is not a
/// frame: reads that return a flipped bit (a transient fault of the medium) must not be taken
/// for a torn tail, by recovery or by `sierradb check`, and cut acknowledged frames.
const OPEN_SEGMENT_READS: usize = 3;

/// The open segment's bytes, from up to [`OPEN_SEGMENT_READS`] calls of `read`: the first read
/// whose frames end cleanly (at the end of the file, or before zeros only), else the one whose
/// frames reach furthest. (A flip cannot make a frame valid.)
pub(crate) fn read_open_segment<E>(
    mut read: impl FnMut() -> Result<Mapped, E>,
    max_body: u64,
) -> Result<Mapped, E> {
    // Where the frames that decode end, and whether only zeros (or nothing) follow.
    let frames_end = |bytes: &[u8]| -> (u64, bool) {
        let mut offset = SEGMENT_HEADER_FRAME_BYTES;
        while let Some(rest) = bytes.get(offset as usize..).filter(|r| !r.is_empty()) {
            match decode_frame(rest, max_body) {
                Ok(frame) => offset += frame.encoded_len(),
                Err(_) => return (offset, rest.iter().all(|&b| b == 0)),
            }
        }
        (offset, true)
    };
    let mut best = read()?;
    let (mut best_end, clean) = frames_end(&best);
    if clean {
        return Ok(best);
    }
    for _ in 1..OPEN_SEGMENT_READS {
        let again = read()?;
        let (end, clean) = frames_end(&again);
        if clean {
            return Ok(again);
        }
        if end > best_end {
            (best, best_end) = (again, end);
        }
    }
    Ok(best)
}
