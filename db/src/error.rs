//! Errors, in three classes kept apart: the caller's fault ([`AppendError::Invalid`],
//! [`AppendError::WrongExpectedVersion`], ...), an outcome that is unknown
//! ([`AppendError::Indeterminate`]), and storage faults ([`StoreError`]).

use std::io;
use std::path::PathBuf;

use crate::model::{
    BucketId, CurrentVersion, EventId, ExpectedVersion, InvalidInput, PartitionKey, StreamId,
};
use crate::store::record::FrameError;

/// A storage fault: I/O failed, or bytes on disk are not what they must be.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "disk full while writing {path}; stored data is intact, appends resume when space is freed"
    )]
    StorageFull { path: PathBuf },
    #[error(
        "cannot {op} {path}: {source} (read-only file system or no write permission); stored data is intact, appends resume once it is writable"
    )]
    NotWritable {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "{path}: {field} is {on_disk} on disk but {configured} in the configuration; a data directory keeps the layout it was created with"
    )]
    LayoutMismatch {
        path: PathBuf,
        field: &'static str,
        on_disk: String,
        configured: String,
    },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "bucket {bucket} stopped accepting appends after a failed sync ({reason}); restart the server to recover it"
    )]
    Poisoned { bucket: BucketId, reason: String },
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if disk::is_storage_full(&source) {
            return StoreError::StorageFull { path };
        }
        if disk::is_not_writable(&source) {
            return StoreError::NotWritable { op, path, source };
        }
        StoreError::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl ToString) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn frame(path: impl Into<PathBuf>, offset: u64, err: FrameError) -> Self {
        Self::corrupt(path, offset, err)
    }
}

/// Why an append did not happen (or may not have).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The request itself is invalid; retrying it unchanged fails the same way.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Optimistic concurrency: the stream is not at the expected version.
    #[error(
        "current stream version is {actual} but expected {expected} for partition key {partition_key} and stream id {stream}"
    )]
    WrongExpectedVersion {
        stream: StreamId,
        partition_key: PartitionKey,
        expected: ExpectedVersion,
        actual: CurrentVersion,
    },
    /// The stream exists under another partition key in the same partition.
    #[error(
        "partition key must be the same for all events in a stream: stream {stream} has {stored}, got {given}"
    )]
    PartitionKeyMismatch {
        stream: StreamId,
        stored: PartitionKey,
        given: PartitionKey,
    },
    /// The event id is already stored with different content (or only some of the
    /// transaction's ids are stored), so this is not a retry of the same append.
    #[error("event id {event_id} is already stored with different content")]
    EventIdConflict { event_id: EventId },
    /// Nothing was written: the store could not take the append (disk full, I/O error before
    /// any byte became durable). Retrying later is safe.
    #[error("append not written: {0}")]
    Unavailable(#[source] std::sync::Arc<StoreError>),
    /// The outcome is unknown: the append may or may not be durable (a sync failed). Retry
    /// with the same event ids; idempotency makes that safe.
    #[error("append outcome unknown: {0}")]
    Indeterminate(#[source] std::sync::Arc<StoreError>),
}

impl AppendError {
    /// Whether the caller may retry the same request and expect a different outcome.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AppendError::Unavailable(_) | AppendError::Indeterminate(_)
        )
    }
}
