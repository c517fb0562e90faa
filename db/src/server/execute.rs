//! The store commands: appends (`EAPPEND`, `EMAPPEND`) and reads (`EGET`, `ESCAN`, `ESVER`,
//! `EPSCAN`, `EPSEQ`). Each takes a parsed command and returns its reply frame or error; no
//! connection state is involved.
//!
//! An append fills in what the client left out before it reaches the store: the partition key
//! (UUIDv5 of the stream id), the timestamp (`Env::wall_clock_ms`, one value shared by all
//! events of an `EMAPPEND`), the event ids ([`generate_event_id`]), the transaction id
//! (`Env::new_uuid`) and the expected version (`any`, refused in strict mode). Retrying an
//! append with the same event ids and content returns the first result unchanged: the store
//! recognises the ids (`AppendOutcome::already_stored`).
//!
//! Reads run on the connection's task: the store serves them from its indexes and mapped or
//! positional file reads, without locks held across an await.

use disk::Disk;
use net::{Frame, Writer};

use super::Shared;
use super::command::{Append, EventSpec, MultiAppend, ScanPartition, ScanStream};
use super::errors::ServerError;
use super::id::generate_event_id;
use super::keys::PartitionKeys;
use super::reply;
use crate::env::Env;
use crate::model::{
    Event, EventId, ExpectedVersion, NewEvent, PartitionId, PartitionKey, PartitionSeq, StreamId,
    StreamVersion, Transaction, TransactionId,
};
use crate::store::{Scan, Store};

/// The expected version of an event, with strict versioning applied.
fn expected_version(spec: &EventSpec, strict: bool) -> Result<ExpectedVersion, ServerError> {
    let expected = spec.expected_version.unwrap_or(ExpectedVersion::Any);
    if strict && matches!(expected, ExpectedVersion::Any | ExpectedVersion::Exists) {
        return Err(ServerError::StrictVersioning { expected });
    }
    Ok(expected)
}

/// The events of one transaction, with the server's defaults filled in. Every event is checked
/// before any id is drawn, so a refused request leaves the generator untouched.
fn new_events<E: Env>(
    env: &E,
    specs: Vec<EventSpec>,
    partition_key: PartitionKey,
    strict: bool,
) -> Result<Vec<NewEvent>, ServerError> {
    let expected = specs
        .iter()
        .map(|spec| expected_version(spec, strict))
        .collect::<Result<Vec<_>, _>>()?;
    let now_ms = env.wall_clock_ms();
    Ok(specs
        .into_iter()
        .zip(expected)
        .map(|(spec, expected_version)| {
            let timestamp_ms = spec.timestamp_ms.unwrap_or(now_ms);
            NewEvent {
                event_id: spec
                    .event_id
                    .unwrap_or_else(|| generate_event_id(env, timestamp_ms, partition_key)),
                stream_id: spec.stream_id,
                event_name: spec.event_name,
                expected_version,
                timestamp_ms,
                metadata: spec.metadata,
                payload: spec.payload,
            }
        })
        .collect())
}

fn transaction<E: Env, D: Disk>(
    shared: &Shared<E, D>,
    partition_key: PartitionKey,
    specs: Vec<EventSpec>,
) -> Result<Transaction, ServerError> {
    let events = new_events(
        &shared.env,
        specs,
        partition_key,
        shared.config.strict_versioning,
    )?;
    Ok(Transaction {
        transaction_id: TransactionId(shared.env.new_uuid()),
        partition_key,
        events,
    })
}

/// Which reply shape an append gets once its outcome is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AppendKind {
    /// `EAPPEND`.
    Single,
    /// `EMAPPEND`.
    Multi,
}

/// The transaction of an `EAPPEND`, with the server's defaults filled in.
pub(super) fn prepare_append<E: Env, D: Disk>(
    shared: &Shared<E, D>,
    command: Append,
) -> Result<Transaction, ServerError> {
    let key = command
        .partition_key
        .unwrap_or_else(|| shared.keys.of(&command.event.stream_id));
    transaction(shared, key, vec![command.event])
}

/// The transaction of an `EMAPPEND`.
pub(super) fn prepare_multi_append<E: Env, D: Disk>(
    shared: &Shared<E, D>,
    command: MultiAppend,
) -> Result<Transaction, ServerError> {
    transaction(shared, command.partition_key, command.events)
}

/// A reply to write: most are frames; those that carry events are written in place (see
/// [`reply::event`]).
pub(super) enum Reply {
    Frame(Frame),
    /// `EGET`.
    Found(Option<Event>),
    /// `ESCAN`, `EPSCAN`.
    Scan(Scan),
}

impl From<Frame> for Reply {
    fn from(frame: Frame) -> Self {
        Reply::Frame(frame)
    }
}

impl Reply {
    pub(super) fn write(&self, w: &mut Writer<'_>) {
        match self {
            Reply::Frame(frame) => w.frame(frame),
            Reply::Found(found) => reply::found_event(w, found.as_ref()),
            Reply::Scan(scan) => reply::scan(w, scan),
        }
    }
}

/// Writes the reply to an append, from its outcome.
pub(super) fn write_append_reply(
    w: &mut Writer<'_>,
    kind: AppendKind,
    outcome: Result<crate::model::AppendOutcome, crate::error::AppendError>,
) -> Result<(), ServerError> {
    let outcome = outcome?;
    match kind {
        AppendKind::Single => reply::append(w, &outcome),
        AppendKind::Multi => reply::multi_append(w, &outcome),
    }
    Ok(())
}

/// `EGET`.
pub(super) fn get<D: Disk>(store: &Store<D>, id: EventId) -> Result<Reply, ServerError> {
    Ok(Reply::Found(store.get(&id)?))
}

/// `ESCAN`.
pub(super) fn scan_stream<D: Disk>(
    store: &Store<D>,
    keys: &PartitionKeys,
    command: &ScanStream,
) -> Result<Reply, ServerError> {
    let key = command
        .partition_key
        .unwrap_or_else(|| keys.of(&command.stream_id));
    let from = StreamVersion(command.start);
    let to = command.end.map(StreamVersion);
    let scan = if command.reverse {
        store.scan_stream_backward(key, &command.stream_id, from, to, command.count)?
    } else {
        store.scan_stream(key, &command.stream_id, from, to, command.count)?
    };
    Ok(Reply::Scan(scan))
}

/// `ESVER`.
pub(super) fn stream_version<D: Disk>(
    store: &Store<D>,
    keys: &PartitionKeys,
    stream_id: &StreamId,
    partition_key: Option<PartitionKey>,
) -> Frame {
    let key = partition_key.unwrap_or_else(|| keys.of(stream_id));
    reply::position(store.stream_version(key, stream_id).map(|v| v.0))
}

/// `EPSCAN`.
pub(super) fn scan_partition<D: Disk>(
    store: &Store<D>,
    command: &ScanPartition,
) -> Result<Reply, ServerError> {
    let scan = store.scan_partition(
        command.partition,
        PartitionSeq(command.start),
        command.end.map(PartitionSeq),
        command.count,
    )?;
    Ok(Reply::Scan(scan))
}

/// `EPSEQ`.
pub(super) fn partition_sequence<D: Disk>(store: &Store<D>, partition: PartitionId) -> Frame {
    reply::position(store.partition_sequence(partition).map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn spec(expected: Option<ExpectedVersion>) -> EventSpec {
        EventSpec {
            stream_id: StreamId::new("s").unwrap(),
            event_name: "E".into(),
            event_id: None,
            expected_version: expected,
            timestamp_ms: None,
            payload: Bytes::new(),
            metadata: Bytes::new(),
        }
    }

    #[test]
    fn missing_expected_version_means_any() {
        assert_eq!(
            expected_version(&spec(None), false).unwrap(),
            ExpectedVersion::Any
        );
    }

    #[test]
    fn strict_mode_refuses_any_exists_and_missing() {
        for (given, reported) in [
            (None, ExpectedVersion::Any),
            (Some(ExpectedVersion::Any), ExpectedVersion::Any),
            (Some(ExpectedVersion::Exists), ExpectedVersion::Exists),
        ] {
            match expected_version(&spec(given), true) {
                Err(ServerError::StrictVersioning { expected }) => assert_eq!(expected, reported),
                other => panic!("expected a strict versioning error, got {other:?}"),
            }
        }
        for allowed in [ExpectedVersion::Empty, ExpectedVersion::Exact(3)] {
            assert_eq!(
                expected_version(&spec(Some(allowed)), true).unwrap(),
                allowed
            );
        }
    }
}
