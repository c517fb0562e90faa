//! The trace's most frequent lines, an operation's invocation and its completion, and its
//! largest, the final snapshot, written as JSON by hand: exactly the bytes
//! `serde_json::to_writer` writes for [`InvokeLine`], [`CompleteLine`] and
//! `("snapshot", &Snapshot)` (compact, fields in declaration order, internally tagged enums
//! with their tag first, externally tagged ones as `{"Variant":…}`, map keys as strings), since
//! the trace hash covers those bytes.
//!
//! Going through serde costs several times the hashing of the bytes it writes, and these
//! lines are nearly all of a trace. Variants that carry free text (error reasons, which may
//! need escaping) are rare and still go through serde; the tests compare every kind of line
//! with serde's output for many random values.

use super::{CompleteLine, Eid, Expected, Input, InvokeLine, Output, SeenEvent, TracedOutput};
use crate::snapshot::{Log, NodeState, Slot, Snapshot};
use db::model::ExpectedVersion;

/// Appends `line` as `serde_json::to_writer` would write it.
pub(super) fn invoke_line(out: &mut Vec<u8>, line: &InvokeLine<'_>) {
    out.extend_from_slice(b"{\"t\":");
    put_u64(out, line.t);
    out.extend_from_slice(b",\"e\":");
    put_str(out, line.e);
    out.extend_from_slice(b",\"id\":");
    put_u64(out, line.id);
    out.extend_from_slice(b",\"c\":");
    put_u64(out, u64::from(line.c));
    out.extend_from_slice(b",\"n\":");
    put_u64(out, u64::from(line.n));
    out.extend_from_slice(b",\"kind\":");
    put_str(out, line.kind);
    out.extend_from_slice(b",\"input\":");
    input(out, line.input);
    out.push(b'}');
}

/// Appends `line` as `serde_json::to_writer` would write it.
pub(super) fn complete_line(out: &mut Vec<u8>, line: &CompleteLine<'_>) {
    let start = out.len();
    out.extend_from_slice(b"{\"t\":");
    put_u64(out, line.t);
    out.extend_from_slice(b",\"e\":");
    put_str(out, line.e);
    out.extend_from_slice(b",\"id\":");
    put_u64(out, line.id);
    out.extend_from_slice(b",\"output\":");
    if !traced_output(out, &line.output) {
        out.truncate(start);
        serde_json::to_writer(&mut *out, line).expect("trace lines serialize");
        return;
    }
    out.push(b'}');
}

/// Appends `("snapshot", snapshot)` as `serde_json::to_writer` would write it.
pub(crate) fn snapshot_line(out: &mut Vec<u8>, snapshot: &Snapshot) {
    out.extend_from_slice(b"[\"snapshot\",{\"nodes\":[");
    for (i, node) in snapshot.nodes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match node {
            NodeState::Up {
                partitions,
                streams,
            } => {
                out.extend_from_slice(b"{\"Up\":{\"partitions\":{");
                for (i, (partition, log)) in partitions.iter().enumerate() {
                    put_key_log(out, i, u64::from(*partition), log);
                }
                out.extend_from_slice(b"},\"streams\":{");
                for (i, (stream, log)) in streams.iter().enumerate() {
                    put_key_log(out, i, u64::from(stream.0), log);
                }
                out.extend_from_slice(b"}}}");
            }
            down @ NodeState::Down { .. } => {
                serde_json::to_writer(&mut *out, down).expect("node states serialize");
            }
        }
    }
    out.extend_from_slice(b"]}]");
}

/// A map entry `"key":log`, after a comma unless it is the map's first (`i` 0).
fn put_key_log(out: &mut Vec<u8>, i: usize, key: u64, log: &Log) {
    if i > 0 {
        out.push(b',');
    }
    out.push(b'"');
    put_u64(out, key);
    out.extend_from_slice(b"\":{\"last\":");
    put_option(out, log.last);
    out.extend_from_slice(b",\"slots\":[");
    for (i, slot) in log.slots.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match slot {
            Slot::Event(event) => {
                out.extend_from_slice(b"{\"Event\":");
                seen_event(out, event);
                out.push(b'}');
            }
            unreadable @ Slot::Unreadable(_) => {
                serde_json::to_writer(&mut *out, unreadable).expect("slots serialize");
            }
        }
    }
    out.extend_from_slice(b"]}");
}

fn input(out: &mut Vec<u8>, input: &Input) {
    match input {
        Input::Append {
            txn,
            attempt,
            partition,
            events,
        } => {
            out.extend_from_slice(b"{\"op\":\"append\",\"txn\":");
            put_eid(out, *txn);
            out.extend_from_slice(b",\"attempt\":");
            put_u64(out, u64::from(*attempt));
            out.extend_from_slice(b",\"partition\":");
            put_u64(out, u64::from(*partition));
            out.extend_from_slice(b",\"events\":[");
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"id\":");
                put_eid(out, event.id);
                out.extend_from_slice(b",\"stream\":");
                put_u64(out, u64::from(event.stream.0));
                out.extend_from_slice(b",\"expected\":");
                put_expected(out, event.expected);
                out.extend_from_slice(b",\"digest\":");
                put_u64(out, event.digest);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        Input::Get { id } => {
            out.extend_from_slice(b"{\"op\":\"get\",\"id\":");
            put_eid(out, *id);
            out.push(b'}');
        }
        Input::ReadStream {
            stream,
            from,
            to,
            limit,
            backward,
        } => {
            out.extend_from_slice(b"{\"op\":\"read_stream\",\"stream\":");
            put_u64(out, u64::from(stream.0));
            out.extend_from_slice(b",\"from\":");
            put_u64(out, *from);
            out.extend_from_slice(b",\"to\":");
            put_option(out, *to);
            out.extend_from_slice(b",\"limit\":");
            put_u64(out, u64::from(*limit));
            out.extend_from_slice(b",\"backward\":");
            put_bool(out, *backward);
            out.push(b'}');
        }
        Input::ReadPartition {
            partition,
            from,
            limit,
        } => {
            out.extend_from_slice(b"{\"op\":\"read_partition\",\"partition\":");
            put_u64(out, u64::from(*partition));
            out.extend_from_slice(b",\"from\":");
            put_u64(out, *from);
            out.extend_from_slice(b",\"limit\":");
            put_u64(out, u64::from(*limit));
            out.push(b'}');
        }
        Input::StreamVersion { stream } => {
            out.extend_from_slice(b"{\"op\":\"stream_version\",\"stream\":");
            put_u64(out, u64::from(stream.0));
            out.push(b'}');
        }
        Input::PartitionSequence { partition } => {
            out.extend_from_slice(b"{\"op\":\"partition_sequence\",\"partition\":");
            put_u64(out, u64::from(*partition));
            out.push(b'}');
        }
    }
}

/// Appends the output as [`TracedOutput`] serialises it; false (with `out` partly written)
/// for the variants left to serde.
fn traced_output(out: &mut Vec<u8>, output: &TracedOutput<'_>) -> bool {
    match output.0 {
        Output::Events { events, has_more } if events.len() > 2 => {
            let digest = super::events_digest(events);
            out.extend_from_slice(b"{\"result\":\"events\",\"count\":");
            put_u64(out, events.len() as u64);
            out.extend_from_slice(b",\"has_more\":");
            put_bool(out, *has_more);
            out.extend_from_slice(b",\"first\":");
            seen_event(out, &events[0]);
            out.extend_from_slice(b",\"last\":");
            seen_event(out, &events[events.len() - 1]);
            out.extend_from_slice(b",\"digest\":\"");
            put_hex16(out, digest);
            out.extend_from_slice(b"\"}");
        }
        Output::Events { events, has_more } => {
            out.extend_from_slice(b"{\"result\":\"events\",\"events\":[");
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                seen_event(out, event);
            }
            out.extend_from_slice(b"],\"has_more\":");
            put_bool(out, *has_more);
            out.push(b'}');
        }
        Output::Appended {
            already_stored,
            partition,
            positions,
        } => {
            out.extend_from_slice(b"{\"result\":\"appended\",\"already_stored\":");
            put_bool(out, *already_stored);
            out.extend_from_slice(b",\"partition\":");
            put_u64(out, u64::from(*partition));
            out.extend_from_slice(b",\"positions\":[");
            for (i, (id, version, seq)) in positions.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                put_eid(out, *id);
                out.push(b',');
                put_u64(out, *version);
                out.push(b',');
                put_u64(out, *seq);
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        Output::WrongExpectedVersion { stream, actual } => {
            out.extend_from_slice(b"{\"result\":\"wrong_expected_version\",\"stream\":");
            put_u64(out, u64::from(stream.0));
            out.extend_from_slice(b",\"actual\":");
            put_option(out, *actual);
            out.push(b'}');
        }
        Output::EventIdConflict { id } => {
            out.extend_from_slice(b"{\"result\":\"event_id_conflict\",\"id\":");
            put_eid(out, *id);
            out.push(b'}');
        }
        Output::NodeDown => out.extend_from_slice(b"{\"result\":\"node_down\"}"),
        Output::TimedOut => out.extend_from_slice(b"{\"result\":\"timed_out\"}"),
        Output::NotFound => out.extend_from_slice(b"{\"result\":\"not_found\"}"),
        Output::Position { last } => {
            out.extend_from_slice(b"{\"result\":\"position\",\"last\":");
            put_option(out, *last);
            out.push(b'}');
        }
        Output::Rejected { .. }
        | Output::Unavailable { .. }
        | Output::Indeterminate { .. }
        | Output::NotSent { .. }
        | Output::ConnectionLost { .. }
        | Output::ReadFailed { .. } => return false,
    }
    true
}

fn seen_event(out: &mut Vec<u8>, e: &SeenEvent) {
    out.extend_from_slice(b"{\"id\":");
    put_eid(out, e.id);
    out.extend_from_slice(b",\"stream\":");
    put_option(out, e.stream.map(|s| u64::from(s.0)));
    out.extend_from_slice(b",\"version\":");
    put_u64(out, e.version);
    out.extend_from_slice(b",\"partition\":");
    put_u64(out, u64::from(e.partition));
    out.extend_from_slice(b",\"seq\":");
    put_u64(out, e.seq);
    out.extend_from_slice(b",\"txn\":");
    put_eid(out, e.txn);
    out.extend_from_slice(b",\"digest\":");
    put_u64(out, e.digest);
    out.push(b'}');
}

/// `n` in decimal, as `itoa` (and `Display`) write it: two digits per division, from a table.
fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[at..]);
}

fn put_option(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => put_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// `n` as 16 lower-case hex digits (`{:016x}`), the line's only hex field.
fn put_hex16(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

/// A JSON string. The texts written here are names and ids without quotes, backslashes or
/// control characters; anything else goes through serde_json's escaping.
fn put_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("strings serialize");
    }
}

/// An id as its `Serialize` writes it (`c<client>.<space><n>`).
fn put_eid(out: &mut Vec<u8>, id: Eid) {
    match id.parts() {
        Some((c, space, n)) => {
            out.extend_from_slice(b"\"c");
            put_u64(out, c);
            out.push(b'.');
            out.extend_from_slice(space.as_bytes());
            put_u64(out, n);
            out.push(b'"');
        }
        None => serde_json::to_writer(&mut *out, &id).expect("ids serialize"),
    }
}

/// An expected version as its `Serialize` writes it.
fn put_expected(out: &mut Vec<u8>, expected: Expected) {
    match expected.0 {
        ExpectedVersion::Any => out.extend_from_slice(b"\"any\""),
        ExpectedVersion::Exists => out.extend_from_slice(b"\"exists\""),
        ExpectedVersion::Empty => out.extend_from_slice(b"\"empty\""),
        ExpectedVersion::Exact(n) => {
            out.push(b'"');
            put_u64(out, n);
            out.push(b'"');
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::history::{ErrorClass, SentEvent, StreamRef};

    /// Serialises through serde, for the comparison.
    fn by_serde(value: &impl serde::Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    fn number(rng: &mut ChaCha8Rng) -> u64 {
        match rng.random_range(0..6) {
            0 => 0,
            1 => u64::MAX,
            2 => rng.random_range(0..10),
            3 => 10u64.pow(rng.random_range(0..20)) - rng.random_range(0..2),
            _ => rng.random(),
        }
    }

    fn eid(rng: &mut ChaCha8Rng) -> Eid {
        match rng.random_range(0..5) {
            // Client 0's bits are the "no client" ids, written in hex.
            0 => Eid(u128::from(number(rng))),
            1 => Eid(rng.random()),
            _ => Eid::new(rng.random_range(0..40), number(rng)),
        }
    }

    fn text(rng: &mut ChaCha8Rng) -> String {
        let pieces = [
            "plain", " ", "\"", "\\", "\n", "\u{1}", "é", "💥", "\t", "/",
        ];
        (0..rng.random_range(0..6))
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect()
    }

    fn seen(rng: &mut ChaCha8Rng) -> SeenEvent {
        SeenEvent {
            id: eid(rng),
            stream: rng.random_bool(0.8).then(|| StreamRef(number(rng) as u32)),
            version: number(rng),
            partition: number(rng) as u16,
            seq: number(rng),
            txn: eid(rng),
            digest: number(rng),
        }
    }

    fn input(rng: &mut ChaCha8Rng) -> Input {
        match rng.random_range(0..6) {
            0 => Input::Append {
                txn: eid(rng),
                attempt: number(rng) as u32,
                partition: number(rng) as u16,
                events: (0..rng.random_range(0..4))
                    .map(|_| SentEvent {
                        id: eid(rng),
                        stream: StreamRef(number(rng) as u32),
                        expected: Expected(match rng.random_range(0..4) {
                            0 => ExpectedVersion::Any,
                            1 => ExpectedVersion::Exists,
                            2 => ExpectedVersion::Empty,
                            _ => ExpectedVersion::Exact(number(rng)),
                        }),
                        digest: number(rng),
                    })
                    .collect(),
            },
            1 => Input::Get { id: eid(rng) },
            2 => Input::ReadStream {
                stream: StreamRef(number(rng) as u32),
                from: number(rng),
                to: rng.random_bool(0.5).then(|| number(rng)),
                limit: number(rng) as u32,
                backward: rng.random(),
            },
            3 => Input::ReadPartition {
                partition: number(rng) as u16,
                from: number(rng),
                limit: number(rng) as u32,
            },
            4 => Input::StreamVersion {
                stream: StreamRef(number(rng) as u32),
            },
            _ => Input::PartitionSequence {
                partition: number(rng) as u16,
            },
        }
    }

    fn output(rng: &mut ChaCha8Rng) -> Output {
        let class = [
            ErrorClass::Io,
            ErrorClass::StorageFull,
            ErrorClass::Corrupt,
            ErrorClass::Poisoned,
            ErrorClass::Closed,
            ErrorClass::Other,
        ][rng.random_range(0..6)];
        match rng.random_range(0..15) {
            0 => Output::Appended {
                already_stored: rng.random(),
                partition: number(rng) as u16,
                positions: (0..rng.random_range(0..4))
                    .map(|_| (eid(rng), number(rng), number(rng)))
                    .collect(),
            },
            1 => Output::WrongExpectedVersion {
                stream: StreamRef(number(rng) as u32),
                actual: rng.random_bool(0.5).then(|| number(rng)),
            },
            2 => Output::EventIdConflict { id: eid(rng) },
            3 => Output::Rejected { reason: text(rng) },
            4 => Output::Unavailable {
                class,
                reason: text(rng),
            },
            5 => Output::NodeDown,
            6 => Output::Indeterminate {
                class,
                reason: text(rng),
            },
            7 => Output::TimedOut,
            8 => Output::NotSent { reason: text(rng) },
            9 => Output::ConnectionLost { reason: text(rng) },
            10 | 11 => Output::Events {
                events: (0..rng.random_range(0..8)).map(|_| seen(rng)).collect(),
                has_more: rng.random(),
            },
            12 => Output::NotFound,
            13 => Output::Position {
                last: rng.random_bool(0.5).then(|| number(rng)),
            },
            _ => Output::ReadFailed {
                class,
                reason: text(rng),
            },
        }
    }

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let edges = (0..20).flat_map(|p| {
            let n = 10u64.pow(p);
            [n - 1, n, n + 1]
        });
        for n in edges
            .chain([u64::MAX])
            .chain((0..100_000).map(|_| number(&mut rng)))
        {
            let mut out = Vec::new();
            put_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    fn log(rng: &mut ChaCha8Rng) -> Log {
        Log {
            last: rng.random_bool(0.8).then(|| number(rng)),
            slots: (0..rng.random_range(0..5))
                .map(|_| {
                    if rng.random_bool(0.9) {
                        Slot::Event(seen(rng))
                    } else {
                        Slot::Unreadable(ErrorClass::Corrupt)
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn snapshot_lines_are_serdes_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..2_000 {
            let snapshot = Snapshot {
                nodes: (0..rng.random_range(0..4))
                    .map(|_| {
                        if rng.random_bool(0.8) {
                            NodeState::Up {
                                partitions: (0..rng.random_range(0..4))
                                    .map(|_| (number(&mut rng) as u16, log(&mut rng)))
                                    .collect(),
                                streams: (0..rng.random_range(0..4))
                                    .map(|_| (StreamRef(number(&mut rng) as u32), log(&mut rng)))
                                    .collect(),
                            }
                        } else {
                            NodeState::Down {
                                class: ErrorClass::Io,
                                reason: text(&mut rng),
                            }
                        }
                    })
                    .collect(),
            };
            let mut out = b"before".to_vec();
            snapshot_line(&mut out, &snapshot);
            assert_eq!(
                std::str::from_utf8(&out[6..]).unwrap(),
                by_serde(&("snapshot", &snapshot)),
            );
        }
    }

    #[test]
    fn invoke_lines_are_serdes_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let kinds = ["append", "get", "read_stream", "odd \"kind\"\n"];
        for _ in 0..20_000 {
            let input = input(&mut rng);
            let line = InvokeLine {
                t: number(&mut rng),
                e: "invoke",
                id: number(&mut rng),
                c: number(&mut rng) as u32,
                n: number(&mut rng) as u32,
                kind: kinds[rng.random_range(0..kinds.len())],
                input: &input,
            };
            let mut out = b"before".to_vec();
            invoke_line(&mut out, &line);
            assert_eq!(
                std::str::from_utf8(&out[6..]).unwrap(),
                by_serde(&line),
                "{input:?}"
            );
        }
    }

    #[test]
    fn complete_lines_are_serdes_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..20_000 {
            let output = output(&mut rng);
            let line = CompleteLine {
                t: number(&mut rng),
                e: ["ok", "unknown", "done"][rng.random_range(0..3)],
                id: number(&mut rng),
                output: TracedOutput(&output),
            };
            let mut out = b"before".to_vec();
            complete_line(&mut out, &line);
            assert_eq!(
                std::str::from_utf8(&out[6..]).unwrap(),
                by_serde(&line),
                "{output:?}"
            );
        }
    }
}
