//! Request frames, as a Redis client sends them: arrays of blob strings.
//!
//! Appends carry everything the client decided (`EVENT_ID`, `PARTITION_KEY`,
//! `EXPECTED_VERSION`, `TIMESTAMP`, `PAYLOAD`), so the same transaction always makes the same
//! request and the store's idempotency can recognise a retry.

use bytes::Bytes;
use db::model::{NewEvent, Transaction};
use net::Frame;

use crate::history::{Input, SubFrom, SubTarget};
use crate::workload::Streams;

/// A request of plain words.
pub fn words(words: &[&str]) -> Frame {
    Frame::array(
        words
            .iter()
            .map(|w| Frame::bulk(Bytes::copy_from_slice(w.as_bytes())))
            .collect(),
    )
}

fn text(s: impl ToString) -> Frame {
    Frame::bulk(s.to_string().into_bytes())
}

/// The options of one event: its id, expected version, timestamp and payload (metadata is
/// left out: empty, the server's default).
fn event_options(event: &NewEvent, out: &mut Vec<Frame>) {
    out.push(text("EVENT_ID"));
    out.push(text(event.event_id.0));
    out.push(text("EXPECTED_VERSION"));
    out.push(text(event.expected_version));
    out.push(text("TIMESTAMP"));
    out.push(text(event.timestamp_ms));
    if !event.payload.is_empty() {
        out.push(text("PAYLOAD"));
        out.push(Frame::bulk(event.payload.clone()));
    }
    debug_assert!(event.metadata.is_empty(), "the workload sends no metadata");
}

/// `EAPPEND` for a transaction of one event, `EMAPPEND` for more.
pub fn append(txn: &Transaction) -> Frame {
    let mut out = Vec::new();
    if let [event] = txn.events.as_slice() {
        out.push(text("EAPPEND"));
        out.push(text(&event.stream_id));
        out.push(text(&event.event_name));
        out.push(text("PARTITION_KEY"));
        out.push(text(txn.partition_key.0));
        event_options(event, &mut out);
    } else {
        out.push(text("EMAPPEND"));
        out.push(text(txn.partition_key.0));
        for event in &txn.events {
            out.push(text(&event.stream_id));
            out.push(text(&event.event_name));
            event_options(event, &mut out);
        }
    }
    Frame::array(out)
}

/// The request for a read.
///
/// # Panics
/// If `input` is an append.
pub fn read(input: &Input, streams: &Streams) -> Frame {
    let mut out = Vec::new();
    match input {
        Input::Get { id } => {
            out.push(text("EGET"));
            out.push(text(id.uuid()));
        }
        Input::ReadStream {
            stream,
            from,
            to,
            limit,
            backward,
        } => {
            out.push(text("ESCAN"));
            out.push(text(streams.id(*stream)));
            out.push(text(from));
            out.push(match to {
                Some(to) => text(to),
                None => text("+"),
            });
            out.push(text("PARTITION_KEY"));
            out.push(text(streams.key(*stream).0));
            out.push(text("COUNT"));
            out.push(text(limit));
            if *backward {
                out.push(text("REV"));
            }
        }
        Input::ReadPartition {
            partition,
            from,
            limit,
        } => {
            out.push(text("EPSCAN"));
            out.push(text(partition));
            out.push(text(from));
            out.push(text("+"));
            out.push(text("COUNT"));
            out.push(text(limit));
        }
        Input::StreamVersion { stream } => {
            out.push(text("ESVER"));
            out.push(text(streams.id(*stream)));
            out.push(text("PARTITION_KEY"));
            out.push(text(streams.key(*stream).0));
        }
        Input::PartitionSequence { partition } => {
            out.push(text("EPSEQ"));
            out.push(text(partition));
        }
        Input::Append { .. } => panic!("appends are built from their transaction"),
    }
    Frame::array(out)
}

/// `ESUB` or `EPSUB` for `targets` (all streams or all partitions), each from where `from`
/// says, with `window`. Targets that start at the same position share `FROM <n>`; mixed starts
/// use `FROM MAP`, which leaves unlisted targets at `LATEST`; every partition is `*`.
///
/// # Panics
/// If `targets` is empty or mixes streams and partitions.
pub fn subscribe(
    targets: &[SubTarget],
    from: &[SubFrom],
    window: u64,
    streams: &Streams,
    partition_count: u16,
) -> Frame {
    assert!(!targets.is_empty(), "a subscription has targets");
    let mut out = Vec::new();
    let name = |target: &SubTarget| match target {
        SubTarget::Stream(s) => streams.id(*s).to_string(),
        SubTarget::Partition(p) => p.to_string(),
    };
    match targets[0] {
        SubTarget::Stream(_) => {
            out.push(text("ESUB"));
            for target in targets {
                let SubTarget::Stream(s) = target else {
                    panic!("a subscription reads streams or partitions, not both")
                };
                out.push(text(streams.id(*s)));
                out.push(text("PARTITION_KEY"));
                out.push(text(streams.key(*s).0));
            }
        }
        SubTarget::Partition(_) => {
            out.push(text("EPSUB"));
            let every = targets.len() == usize::from(partition_count)
                && targets
                    .iter()
                    .enumerate()
                    .all(|(i, t)| *t == SubTarget::Partition(i as u16));
            if every {
                out.push(text("*"));
            } else {
                let list: Vec<String> = targets.iter().map(name).collect();
                out.push(text(list.join(",")));
            }
        }
    }
    out.push(text("FROM"));
    match from {
        [SubFrom::Latest, rest @ ..] if rest.iter().all(|f| *f == SubFrom::Latest) => {
            out.push(text("LATEST"));
        }
        [SubFrom::At(n), rest @ ..] if rest.iter().all(|f| *f == SubFrom::At(*n)) => {
            out.push(text(n));
        }
        _ => {
            out.push(text("MAP"));
            for (target, from) in targets.iter().zip(from) {
                if let SubFrom::At(n) = from {
                    out.push(text(format!("{}={n}", name(target))));
                }
            }
        }
    }
    out.push(text("WINDOW"));
    out.push(text(window));
    Frame::array(out)
}

/// `EACK <subscription> <cursor>`.
pub fn ack(subscription: uuid::Uuid, cursor: u64) -> Frame {
    Frame::array(vec![text("EACK"), text(subscription), text(cursor)])
}

#[cfg(test)]
mod tests {
    use db::model::{EventId, ExpectedVersion, PartitionKey, StreamId, TransactionId};

    use super::*;
    use crate::history::StreamRef;

    fn render(frame: &Frame) -> String {
        frame
            .as_array()
            .unwrap()
            .iter()
            .map(|f| String::from_utf8_lossy(f.as_bytes().unwrap()).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn event(stream: &str, expected: ExpectedVersion, payload: &'static [u8]) -> NewEvent {
        NewEvent {
            event_id: EventId(uuid::Uuid::from_u128(7)),
            stream_id: StreamId::new(stream).unwrap(),
            event_name: "e".into(),
            expected_version: expected,
            timestamp_ms: 1_700_000_000_123,
            metadata: Bytes::new(),
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn appends_carry_every_choice_the_client_made() {
        let key = PartitionKey(uuid::Uuid::from_u128(9));
        let one = Transaction {
            transaction_id: TransactionId(uuid::Uuid::from_u128(1)),
            partition_key: key,
            events: vec![event("s1", ExpectedVersion::Exact(4), b"xy")],
        };
        assert_eq!(
            render(&append(&one)),
            "EAPPEND s1 e PARTITION_KEY 00000000-0000-0000-0000-000000000009 EVENT_ID 00000000-0000-0000-0000-000000000007 EXPECTED_VERSION 4 TIMESTAMP 1700000000123 PAYLOAD xy"
        );
        let two = Transaction {
            events: vec![
                event("s1", ExpectedVersion::Empty, b""),
                event("s2", ExpectedVersion::Any, b"z"),
            ],
            ..one
        };
        assert_eq!(
            render(&append(&two)),
            "EMAPPEND 00000000-0000-0000-0000-000000000009 s1 e EVENT_ID 00000000-0000-0000-0000-000000000007 EXPECTED_VERSION empty TIMESTAMP 1700000000123 s2 e EVENT_ID 00000000-0000-0000-0000-000000000007 EXPECTED_VERSION any TIMESTAMP 1700000000123 PAYLOAD z"
        );
    }

    #[test]
    fn reads_name_the_stream_with_its_partition_key() {
        let streams = Streams::new(4, 2, 1, 8);
        let scan = read(
            &Input::ReadStream {
                stream: StreamRef(3),
                from: 2,
                to: None,
                limit: 10,
                backward: true,
            },
            &streams,
        );
        let key = streams.key(StreamRef(3)).0;
        assert_eq!(
            render(&scan),
            format!("ESCAN s3 2 + PARTITION_KEY {key} COUNT 10 REV")
        );
        let seq = read(&Input::PartitionSequence { partition: 5 }, &streams);
        assert_eq!(render(&seq), "EPSEQ 5");
    }

    #[test]
    fn subscriptions_say_where_each_target_starts() {
        let streams = Streams::new(4, 1, 1, 4);
        let (s1, s2) = (StreamRef(1), StreamRef(2));
        let both = [SubTarget::Stream(s1), SubTarget::Stream(s2)];
        let (k1, k2) = (streams.key(s1).0, streams.key(s2).0);
        let latest = subscribe(&both, &[SubFrom::Latest; 2], 8, &streams, 4);
        assert_eq!(
            render(&latest),
            format!("ESUB s1 PARTITION_KEY {k1} s2 PARTITION_KEY {k2} FROM LATEST WINDOW 8")
        );
        let mixed = subscribe(&both, &[SubFrom::Latest, SubFrom::At(3)], 8, &streams, 4);
        assert!(render(&mixed).ends_with("FROM MAP s2=3 WINDOW 8"));
        let every: Vec<SubTarget> = (0..4).map(SubTarget::Partition).collect();
        let all = subscribe(&every, &[SubFrom::At(0); 4], 1, &streams, 4);
        assert_eq!(render(&all), "EPSUB * FROM 0 WINDOW 1");
        let some = [SubTarget::Partition(3), SubTarget::Partition(1)];
        let two = subscribe(&some, &[SubFrom::At(2), SubFrom::At(5)], 1, &streams, 4);
        assert_eq!(render(&two), "EPSUB 3,1 FROM MAP 3=2 1=5 WINDOW 1");
    }
}
