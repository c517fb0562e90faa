//! Reply frames → history outcomes ([`Output`]), by the reply shapes and error codes of
//! `docs/protocol.md`.
//!
//! Anything the protocol does not promise for a request (another shape, an unknown code, a
//! field missing) becomes an outcome the checkers flag: `Rejected` for an append (the
//! workload only sends valid appends), a read failed with class `Other` for a read.

use net::{FrameKind, FrameRef};

use crate::history::{Eid, ErrorClass, Input, Output, SeenEvent};
use crate::workload::{Streams, digest};

/// An integer field of a map reply.
pub fn field_int(frame: FrameRef<'_>, name: &str) -> Option<i64> {
    frame.field(name)?.as_integer()
}

fn field_u64(frame: FrameRef<'_>, name: &str) -> Option<u64> {
    u64::try_from(field_int(frame, name)?).ok()
}

fn field_uuid(frame: FrameRef<'_>, name: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(frame.field(name)?.as_str()?).ok()
}

/// A frame, short, for reasons in the history.
pub fn render(frame: FrameRef<'_>) -> String {
    let text = format!("{:?}", frame.to_frame());
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// An error reply split into its code and message.
fn error<'a>(frame: FrameRef<'a>) -> Option<(&'a str, &'a str)> {
    let text = std::str::from_utf8(frame.as_simple_error()?).ok()?;
    Some(text.split_once(' ').unwrap_or((text, "")))
}

/// The storage error class a message names (the store's `StoreError` wording).
fn class_of(message: &str) -> ErrorClass {
    if message.contains("disk full while writing") {
        ErrorClass::StorageFull
    } else if message.contains("corrupt data in") {
        ErrorClass::Corrupt
    } else if message.contains("stopped accepting appends after a failed sync") {
        ErrorClass::Poisoned
    } else if message.contains("the store is shut down") {
        ErrorClass::Closed
    } else {
        ErrorClass::Io
    }
}

/// What an append's reply says.
pub fn append(reply: FrameRef<'_>) -> Output {
    if let Some((code, message)) = error(reply) {
        return append_error(code, message);
    }
    let rejected = || Output::Rejected {
        reason: format!("unexpected append reply {}", render(reply)),
    };
    let Some(partition) = field_u64(reply, "partition_id").and_then(|p| u16::try_from(p).ok())
    else {
        return rejected();
    };
    // EMAPPEND: events listed, sequences from the first one.
    if let Some(events) = reply.field("events") {
        let (Some(events), Some(first)) = (
            events.items().filter(|_| events.kind() == FrameKind::Array),
            field_u64(reply, "first_partition_sequence"),
        ) else {
            return rejected();
        };
        let mut positions = Vec::new();
        for (i, e) in events.enumerate() {
            let (Some(id), Some(version)) =
                (field_uuid(e, "event_id"), field_u64(e, "stream_version"))
            else {
                return rejected();
            };
            positions.push((Eid::from_uuid(id), version, first + i as u64));
        }
        if field_u64(reply, "last_partition_sequence")
            != first
                .checked_add(positions.len() as u64)
                .and_then(|end| end.checked_sub(1))
        {
            return rejected();
        }
        return Output::Appended {
            already_stored: false,
            partition,
            positions,
        };
    }
    let (Some(id), Some(version), Some(seq)) = (
        field_uuid(reply, "event_id"),
        field_u64(reply, "stream_version"),
        field_u64(reply, "partition_sequence"),
    ) else {
        return rejected();
    };
    // The protocol answers a retry with the first result byte for byte, so whether the events
    // were stored already cannot be told: count it as an acknowledgement like any other.
    Output::Appended {
        already_stored: false,
        partition,
        positions: vec![(Eid::from_uuid(id), version, seq)],
    }
}

fn append_error(code: &str, message: &str) -> Output {
    match code {
        "WRONGVER" => wrong_version(message).unwrap_or_else(|| Output::Rejected {
            reason: format!("unparsable WRONGVER {message}"),
        }),
        "DBOPFAILED" => {
            let conflict = message
                .strip_prefix("database operation failed: event id ")
                .and_then(|rest| rest.strip_suffix(" is already stored with different content"))
                .and_then(|id| uuid::Uuid::parse_str(id).ok());
            match conflict {
                Some(id) => Output::EventIdConflict {
                    id: Eid::from_uuid(id),
                },
                None => Output::Rejected {
                    reason: format!("{code} {message}"),
                },
            }
        }
        "TRYAGAIN" => Output::Unavailable {
            class: class_of(message),
            reason: message.to_owned(),
        },
        "UNKNOWNOUTCOME" => Output::Indeterminate {
            class: class_of(message),
            reason: message.to_owned(),
        },
        _ => Output::Rejected {
            reason: format!("{code} {message}"),
        },
    }
}

/// `current stream version is <v|empty> but expected <e> for partition key <k> and stream id
/// <s>`.
fn wrong_version(message: &str) -> Option<Output> {
    let rest = message.strip_prefix("current stream version is ")?;
    let (actual, rest) = rest.split_once(" but expected ")?;
    let (_, stream) = rest.split_once(" and stream id ")?;
    let actual = match actual {
        "empty" => None,
        n => Some(n.parse().ok()?),
    };
    Some(Output::WrongExpectedVersion {
        stream: Streams::parse(stream)?,
        actual,
    })
}

/// The fields of an event map [`event`] reads, in the order of its slots.
const EVENT_FIELDS: [&[u8]; 10] = [
    b"event_id",
    b"stream_id",
    b"event_name",
    b"timestamp",
    b"stream_version",
    b"partition_id",
    b"partition_sequence",
    b"transaction_id",
    b"metadata",
    b"payload",
];

/// An event map: what a read saw of a stored event. Reads the map once; as with
/// [`FrameRef::field`], the first pair with a field's name counts and other keys are ignored.
pub fn event(map: FrameRef<'_>) -> Option<SeenEvent> {
    let mut slots: [Option<FrameRef<'_>>; EVENT_FIELDS.len()] = [None; EVENT_FIELDS.len()];
    for (key, value) in map.pairs()? {
        let Some(key) = key.as_bytes() else {
            continue;
        };
        if let Some(slot) = EVENT_FIELDS.iter().position(|name| *name == key) {
            slots[slot].get_or_insert(value);
        }
    }
    let [
        id,
        stream_id,
        name,
        timestamp,
        version,
        partition,
        seq,
        txn,
        metadata,
        payload,
    ] = slots;
    let uuid = |f: Option<FrameRef<'_>>| uuid::Uuid::parse_str(f?.as_str()?).ok();
    let int = |f: Option<FrameRef<'_>>| u64::try_from(f?.as_integer()?).ok();
    let stream_id = std::str::from_utf8(stream_id?.as_bytes()?).ok()?;
    let name = std::str::from_utf8(name?.as_bytes()?).ok()?;
    Some(SeenEvent {
        id: Eid::from_uuid(uuid(id)?),
        stream: Streams::parse(stream_id),
        version: int(version)?,
        partition: u16::try_from(int(partition)?).ok()?,
        seq: int(seq)?,
        txn: Eid::from_uuid(uuid(txn)?),
        digest: digest(
            stream_id,
            name,
            metadata?.as_bytes()?,
            payload?.as_bytes()?,
            int(timestamp)?,
        ),
    })
}

/// What a read's reply says.
pub fn read(input: &Input, reply: FrameRef<'_>) -> Output {
    if let Some((code, message)) = error(reply) {
        let class = match code {
            "READERR" => class_of(message),
            _ => ErrorClass::Other,
        };
        return Output::ReadFailed {
            class,
            reason: format!("{code} {message}"),
        };
    }
    let parsed = match input {
        Input::Get { .. } if reply.is_null() => Some(Output::NotFound),
        Input::Get { .. } => event(reply).map(|e| Output::Events {
            events: vec![e],
            has_more: false,
        }),
        Input::ReadStream { .. } | Input::ReadPartition { .. } => scan(reply),
        Input::StreamVersion { .. } | Input::PartitionSequence { .. } => match reply.kind() {
            FrameKind::Null => Some(Output::Position { last: None }),
            FrameKind::Integer => reply
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .map(|n| Output::Position { last: Some(n) }),
            _ => None,
        },
        Input::Append { .. } => None,
    };
    parsed.unwrap_or_else(|| Output::ReadFailed {
        class: ErrorClass::Other,
        reason: format!("unexpected reply {}", render(reply)),
    })
}

/// A push of a subscription, as the subscriber needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Pushed {
    /// `message <id> <cursor> <event map>`.
    Message {
        subscription: uuid::Uuid,
        cursor: u64,
        event: SeenEvent,
    },
    /// `error <id> <error reply>`: the subscription stopped on a server-side error.
    Failed {
        subscription: uuid::Uuid,
        class: ErrorClass,
        reason: String,
    },
    /// `subscribe` and `unsubscribe`: counts of the connection's subscriptions.
    Count,
}

/// What a push frame says; `Err` with the frame rendered if it is not one the protocol
/// sends.
pub fn push(frame: FrameRef<'_>) -> Result<Pushed, String> {
    let bad = || format!("unexpected push {}", render(frame));
    let Some(items) = frame.items().filter(|_| frame.kind() == FrameKind::Push) else {
        return Err(bad());
    };
    let items: Vec<FrameRef<'_>> = items.collect();
    let kind = items.first().and_then(|f| f.as_str()).ok_or_else(bad)?;
    let id = || {
        items
            .get(1)
            .and_then(|f| f.as_str())
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
    };
    match (kind, items.len()) {
        ("message", 4) => {
            let cursor = items[2].as_integer().and_then(|c| u64::try_from(c).ok());
            match (id(), cursor, event(items[3])) {
                (Some(subscription), Some(cursor), Some(event)) => Ok(Pushed::Message {
                    subscription,
                    cursor,
                    event,
                }),
                _ => Err(bad()),
            }
        }
        ("error", 3) => {
            let message = items[2].as_str().ok_or_else(bad)?;
            let (code, rest) = message.split_once(' ').unwrap_or((message, ""));
            Ok(Pushed::Failed {
                subscription: id().ok_or_else(bad)?,
                class: if code == "READERR" {
                    class_of(rest)
                } else {
                    ErrorClass::Other
                },
                reason: message.to_owned(),
            })
        }
        ("subscribe" | "unsubscribe", 3) => Ok(Pushed::Count),
        _ => Err(bad()),
    }
}

/// `{has_more, events}`.
fn scan(reply: FrameRef<'_>) -> Option<Output> {
    let has_more = reply.field("has_more")?.as_bool()?;
    let events = reply.field("events")?;
    if events.kind() != FrameKind::Array {
        return None;
    }
    let events = events.items()?.map(event).collect::<Option<Vec<_>>>()?;
    Some(Output::Events { events, has_more })
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::{FlatFrame, Frame};

    fn flat(frame: &Frame) -> FlatFrame {
        FlatFrame::from_frame(frame)
    }

    fn map(pairs: Vec<(&str, Frame)>) -> Frame {
        Frame::map(
            pairs
                .into_iter()
                .map(|(k, v)| (Frame::simple(k.to_owned()), v))
                .collect(),
        )
    }

    #[test]
    fn error_codes_map_to_outcomes() {
        let wrong = Frame::error(
            "WRONGVER",
            "current stream version is empty but expected 5 for partition key 4a5bf0d6-0000-0000-0000-000000000000 and stream id s3",
        );
        assert_eq!(
            append(flat(&wrong).root()),
            Output::WrongExpectedVersion {
                stream: crate::history::StreamRef(3),
                actual: None
            }
        );
        let id = Eid::new(2, 9);
        let conflict = Frame::error(
            "DBOPFAILED",
            format!(
                "database operation failed: event id {} is already stored with different content",
                id.uuid()
            ),
        );
        assert_eq!(
            append(flat(&conflict).root()),
            Output::EventIdConflict { id }
        );
        let full = Frame::error(
            "TRYAGAIN",
            "append not written, retry later: disk full while writing /x; stored data is intact",
        );
        assert!(matches!(
            append(flat(&full).root()),
            Output::Unavailable {
                class: ErrorClass::StorageFull,
                ..
            }
        ));
        assert!(matches!(
            append(
                flat(&Frame::error(
                    "UNKNOWNOUTCOME",
                    "append outcome unknown, it may or may not be durable: sync /x: EIO"
                ))
                .root()
            ),
            Output::Indeterminate {
                class: ErrorClass::Io,
                ..
            }
        ));
        assert!(matches!(
            append(flat(&Frame::error("INVALIDARG", "nope")).root()),
            Output::Rejected { .. }
        ));
    }

    #[test]
    fn append_maps_give_positions() {
        let id = Eid::new(0, 1);
        let single = map(vec![
            ("event_id", Frame::simple(id.uuid().to_string())),
            ("partition_id", Frame::int(3)),
            ("partition_sequence", Frame::int(7)),
            ("stream_version", Frame::int(2)),
        ]);
        assert_eq!(
            append(flat(&single).root()),
            Output::Appended {
                already_stored: false,
                partition: 3,
                positions: vec![(id, 2, 7)]
            }
        );
        let multi = map(vec![
            ("partition_id", Frame::int(3)),
            ("first_partition_sequence", Frame::int(7)),
            ("last_partition_sequence", Frame::int(8)),
            (
                "events",
                Frame::array(vec![
                    map(vec![
                        ("event_id", Frame::simple(id.uuid().to_string())),
                        ("stream_version", Frame::int(0)),
                    ]),
                    map(vec![
                        ("event_id", Frame::simple(id.uuid().to_string())),
                        ("stream_version", Frame::int(4)),
                    ]),
                ]),
            ),
        ]);
        assert_eq!(
            append(flat(&multi).root()),
            Output::Appended {
                already_stored: false,
                partition: 3,
                positions: vec![(id, 0, 7), (id, 4, 8)]
            }
        );
        let short = map(vec![
            ("partition_id", Frame::int(3)),
            ("first_partition_sequence", Frame::int(7)),
            ("last_partition_sequence", Frame::int(9)),
            ("events", Frame::array(vec![])),
        ]);
        assert!(matches!(
            append(flat(&short).root()),
            Output::Rejected { .. }
        ));
    }
}
