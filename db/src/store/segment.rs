//! Reading one segment's frames: through a memory map when sealed, positional reads when open.

use std::path::PathBuf;
use std::sync::Arc;

use disk::{Disk, File, Mapped};

use crate::error::StoreError;
use crate::store::record::{FRAME_HEADER_BYTES, TransactionRecord, decode_frame};

/// Bytes read at once from the open segment: most frames fit.
const OPTIMISTIC_READ_BYTES: u64 = 4096;

/// The bytes of one segment, shareable with readers outside the bucket lock.
pub enum SegmentData<D: Disk> {
    /// A sealed segment: immutable, memory-mapped. Every read still verifies the CRC, since a
    /// map shows whatever the disk now holds.
    Sealed { path: Arc<PathBuf>, map: Mapped },
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
        let path = self.path();
        let owned;
        let bytes: &[u8] = match self {
            SegmentData::Sealed { map, .. } => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                map.get(start..).ok_or_else(|| {
                    StoreError::corrupt(
                        path.as_path(),
                        offset,
                        "offset past the end of the segment",
                    )
                })?
            }
            SegmentData::Open { file, end, .. } => {
                // One read usually covers the whole frame; a second one fetches the rest of a
                // large frame.
                let available = end.saturating_sub(offset);
                let mut frame = vec![0u8; available.min(OPTIMISTIC_READ_BYTES) as usize];
                if frame.len() < FRAME_HEADER_BYTES as usize {
                    return Err(StoreError::corrupt(
                        path.as_path(),
                        offset,
                        "frame starts past the durable end",
                    ));
                }
                file.read_at(offset, &mut frame)
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
                owned = frame;
                &owned
            }
        };
        let frame = decode_frame(bytes, max_body)
            .map_err(|e| StoreError::frame(path.as_path(), offset, e))?;
        TransactionRecord::decode(&frame).map_err(|e| StoreError::frame(path.as_path(), offset, e))
    }
}
