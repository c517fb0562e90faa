//! **Expected-version appends and reads are linearizable per stream and per partition.**
//!
//! Linearizability is local (Herlihy–Wing), so each stream and each partition is checked
//! alone, against virtual (real) time. Versions and sequences reveal the order the store
//! chose, so no search is needed:
//!
//! - **Writes.** The final state orders the writes of a log (a transaction's events on it
//!   form one write). A write happened somewhere in its window: from the first invocation of
//!   an append that carried it to the first completion of one that was acknowledged (never,
//!   if none was). The order must fit the windows: a write acknowledged before another was
//!   invoked must come first. Checked greedily, giving each write its earliest possible point
//!   `E` and, from the end, its latest `L`.
//! - **Expected versions.** A fresh acknowledged append with `exact(n)` put its event at
//!   version `n + 1`; `empty` at 0; `exists` above 0. A `WrongExpectedVersion` reply must name a
//!   state the expectation really rejects.
//! - **Observations.** A wrong-expected-version reply, a stream version, a partition sequence
//!   or a scan that reached the end saw the log at one length `k`: some moment inside its
//!   window must lie after the write of position `k − 1` (`≥ E`) and before the write of
//!   position `k` (`≤ L`), and `k` must fall between writes, not inside one. Reads that saw
//!   some events show a lower bound on the length; empty reads from a position show an upper
//!   one.
//!
//! Each observation is checked against the bounds on its own, which is a necessary condition
//! for linearizability (a joint search over all observations could find more); in exchange it
//! is O(n log n) and reports the operations at fault by name. Logs with unreadable positions
//! (corruption) are skipped.

use std::collections::BTreeMap;

use db::model::ExpectedVersion;

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::{Eid, Input, Op, Output, SeenEvent, StreamRef, Written};
use crate::snapshot::{Log, Slot};

pub const CHECKER: Checker = Checker {
    name: "linearizable-per-stream",
    guarantee: "expected-version appends and reads are linearizable per stream and per partition",
    run,
};

/// One write of a log: positions `first..=last`, and when it could have happened.
struct Write {
    txn: Eid,
    first: u64,
    last: u64,
    lo: u64,
    hi: u64,
    ops: Vec<u64>,
    /// Earliest and latest points consistent with the order.
    earliest: u64,
    latest: u64,
}

/// What an operation saw of a log's length (number of positions).
#[derive(Clone, Copy, Debug)]
enum Seen {
    Exactly(u64),
    AtLeast(u64),
    AtMost(u64),
}

/// Which log an observation is about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum LogRef {
    Stream(StreamRef),
    Partition(u16),
}

fn run(input: &CheckInput<'_>, facts: &Facts<'_>, f: &mut Findings) {
    expected_versions(input, f);
    let observations = observations(input);
    for node in 0..input.derived.nodes {
        let Some((partitions, streams)) = input.snapshot.node(node) else {
            continue;
        };
        let logs = streams
            .iter()
            .map(|(s, log)| (LogRef::Stream(*s), log))
            .chain(
                partitions
                    .iter()
                    .map(|(p, log)| (LogRef::Partition(*p), log)),
            );
        for (log_ref, log) in logs {
            if log.slots.iter().any(|s| matches!(s, Slot::Unreadable(_))) {
                continue;
            }
            let Some(writes) = writes(node, log_ref, log, facts, f) else {
                continue;
            };
            let empty = Vec::new();
            let seen = observations.get(&(node, log_ref)).unwrap_or(&empty);
            check_observations(node, log_ref, &writes, seen, f);
        }
    }
}

fn describe(log: LogRef) -> String {
    match log {
        LogRef::Stream(s) => s.to_string(),
        LogRef::Partition(p) => format!("p{p}"),
    }
}

/// Position of an event on a log.
fn position(log: LogRef, e: &SeenEvent) -> u64 {
    match log {
        LogRef::Stream(_) => e.version,
        LogRef::Partition(_) => e.seq,
    }
}

/// The writes of one log in order, with their windows and earliest/latest points; `None`
/// (after reporting) if the order contradicts real time.
fn writes(
    node: u32,
    log_ref: LogRef,
    log: &Log,
    facts: &Facts<'_>,
    f: &mut Findings,
) -> Option<Vec<Write>> {
    let mut writes: Vec<Write> = Vec::new();
    for slot in &log.slots {
        let Slot::Event(e) = slot else { return None };
        let pos = position(log_ref, e);
        if let Some(w) = writes.last_mut()
            && w.txn == e.txn
            && w.last + 1 == pos
        {
            w.last = pos;
            continue;
        }
        let writers = facts.writers_of(node, e);
        let lo = writers.iter().map(|op| op.invoke_ns).min().unwrap_or(0);
        let hi = writers
            .iter()
            .filter(|op| op.written() == Written::Yes)
            .map(|op| op.complete_or_max())
            .min()
            .unwrap_or(u64::MAX);
        writes.push(Write {
            txn: e.txn,
            first: pos,
            last: pos,
            lo,
            hi,
            ops: writers.iter().map(|op| op.id).collect(),
            earliest: 0,
            latest: u64::MAX,
        });
    }
    // Forward: earliest points. The write that pushed the bound is remembered for reports.
    let mut bound = (0u64, usize::MAX);
    for i in 0..writes.len() {
        if writes[i].lo > bound.0 {
            bound = (writes[i].lo, i);
        }
        writes[i].earliest = bound.0;
        f.checked();
        if bound.0 > writes[i].hi {
            let j = bound.1;
            let (wj, wi) = (&writes[j], &writes[i]);
            let mut ops = wj.ops.clone();
            ops.extend(&wi.ops);
            f.violation(
                Some(node),
                ops,
                format!(
                    "{}: the write at {}..={} (ops {:?}) was acknowledged at {}ns, before the write at {}..={} (ops {:?}) was even invoked ({}ns), yet it comes later: real-time order broken",
                    describe(log_ref),
                    wi.first,
                    wi.last,
                    wi.ops,
                    wi.hi,
                    wj.first,
                    wj.last,
                    wj.ops,
                    wj.lo
                ),
            );
            return None;
        }
    }
    // Backward: latest points.
    let mut latest = u64::MAX;
    for w in writes.iter_mut().rev() {
        latest = latest.min(w.hi);
        w.latest = latest;
    }
    Some(writes)
}

fn check_observations(
    node: u32,
    log_ref: LogRef,
    writes: &[Write],
    seen: &[(&Op, Seen)],
    f: &mut Findings,
) {
    let total = writes.last().map_or(0, |w| w.last + 1);
    // The write holding position `pos`.
    let write_at = |pos: u64| -> Option<&Write> {
        let i = writes.partition_point(|w| w.last < pos);
        writes.get(i).filter(|w| w.first <= pos)
    };
    for &(op, seen) in seen {
        f.checked();
        let (inv, comp) = (op.invoke_ns, op.complete_or_max());
        let fail = |f: &mut Findings, what: String| {
            f.violation(
                Some(node),
                vec![op.id],
                format!(
                    "{}: {} #{} saw {what}, which no moment of its window [{}ns, {}ns] allows (the final log has {total} position(s))",
                    describe(log_ref),
                    op.kind.name(),
                    op.id,
                    inv,
                    comp
                ),
            )
        };
        match seen {
            Seen::Exactly(k) => {
                if k > total {
                    // Data that was there and is gone: durability and reads report it.
                    continue;
                }
                if k > 0
                    && k < total
                    && write_at(k - 1).map(|w| w.first) == write_at(k).map(|w| w.first)
                {
                    fail(f, format!("length {k}, which falls inside one write"));
                    continue;
                }
                let after = if k == 0 {
                    0
                } else {
                    write_at(k - 1).map_or(0, |w| w.earliest)
                };
                let before = if k == total {
                    u64::MAX
                } else {
                    write_at(k).map_or(u64::MAX, |w| w.latest)
                };
                if inv.max(after) > comp.min(before) {
                    fail(f, format!("length {k}"));
                }
            }
            Seen::AtLeast(k) => {
                if k == 0 || k > total {
                    continue;
                }
                let after = write_at(k - 1).map_or(0, |w| w.earliest);
                if after > comp {
                    fail(f, format!("at least {k} position(s)"));
                }
            }
            Seen::AtMost(k) => {
                if k >= total {
                    continue;
                }
                let before = write_at(k).map_or(u64::MAX, |w| w.latest);
                if inv > before {
                    fail(f, format!("at most {k} position(s)"));
                }
            }
        }
    }
}

/// Every observation in the history, by node and log.
fn observations<'a>(input: &CheckInput<'a>) -> BTreeMap<(u32, LogRef), Vec<(&'a Op, Seen)>> {
    let mut out: BTreeMap<(u32, LogRef), Vec<(&Op, Seen)>> = BTreeMap::new();
    let streams = input.streams;
    for op in &input.history.ops {
        let Some(output) = &op.output else { continue };
        let mut add =
            |log: LogRef, seen: Seen| out.entry((op.node, log)).or_default().push((op, seen));
        match (&op.input, output) {
            (_, Output::WrongExpectedVersion { stream, actual }) => {
                add(
                    LogRef::Stream(*stream),
                    Seen::Exactly(actual.map_or(0, |v| v + 1)),
                );
            }
            (
                Input::Append { .. },
                Output::Appended {
                    already_stored: true,
                    partition,
                    positions,
                },
            ) => {
                for (sent, &(_, version, seq)) in op.sent().iter().zip(positions) {
                    add(LogRef::Stream(sent.stream), Seen::AtLeast(version + 1));
                    add(LogRef::Partition(*partition), Seen::AtLeast(seq + 1));
                }
            }
            (Input::StreamVersion { stream }, Output::Position { last }) => {
                add(
                    LogRef::Stream(*stream),
                    Seen::Exactly(last.map_or(0, |v| v + 1)),
                );
            }
            (Input::PartitionSequence { partition }, Output::Position { last }) => {
                add(
                    LogRef::Partition(*partition),
                    Seen::Exactly(last.map_or(0, |s| s + 1)),
                );
            }
            (Input::Get { .. }, Output::Events { events, .. }) => {
                for e in events {
                    if let Some(s) = e.stream.filter(|s| streams.contains(*s)) {
                        add(LogRef::Stream(s), Seen::AtLeast(e.version + 1));
                    }
                    add(LogRef::Partition(e.partition), Seen::AtLeast(e.seq + 1));
                }
            }
            (
                Input::ReadStream {
                    stream,
                    from,
                    to,
                    backward,
                    ..
                },
                Output::Events { events, has_more },
            ) => {
                let log = LogRef::Stream(*stream);
                let top = events.iter().map(|e| e.version).max();
                match top {
                    Some(top) if to.is_none() && (*backward || !has_more) => {
                        add(log, Seen::Exactly(top + 1));
                    }
                    Some(top) => add(log, Seen::AtLeast(top + 1)),
                    None if *from == 0 && to.is_none() => add(log, Seen::Exactly(0)),
                    None => add(log, Seen::AtMost(*from)),
                }
            }
            (
                Input::ReadPartition {
                    partition, from, ..
                },
                Output::Events { events, has_more },
            ) => {
                let log = LogRef::Partition(*partition);
                match events.iter().map(|e| e.seq).max() {
                    Some(top) if !has_more => add(log, Seen::Exactly(top + 1)),
                    Some(top) => add(log, Seen::AtLeast(top + 1)),
                    None if *from == 0 => add(log, Seen::Exactly(0)),
                    None => add(log, Seen::AtMost(*from)),
                }
            }
            _ => {}
        }
    }
    out
}

/// A fresh acknowledged append put each event where its expected version said, and a refusal
/// names a state its expectation really rejects.
fn expected_versions(input: &CheckInput<'_>, f: &mut Findings) {
    for op in &input.history.ops {
        match &op.output {
            Some(Output::Appended {
                already_stored: false,
                positions,
                ..
            }) => {
                for (sent, &(id, version, _)) in op.sent().iter().zip(positions) {
                    let ok = match sent.expected.0 {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::Exists => version > 0,
                        ExpectedVersion::Empty => version == 0,
                        ExpectedVersion::Exact(n) => version == n + 1,
                    };
                    f.checked();
                    if !ok {
                        f.violation(
                            Some(op.node),
                            vec![op.id],
                            format!(
                                "append #{} of {id} to {} expected version {} but landed at v{version}: the stream was not in the expected state when it was written",
                                op.id, sent.stream, sent.expected.0
                            ),
                        );
                    }
                }
            }
            Some(Output::WrongExpectedVersion { stream, actual }) => {
                f.checked();
                let Some(sent) = op.sent().iter().find(|s| s.stream == *stream) else {
                    f.violation(
                        Some(op.node),
                        vec![op.id],
                        format!(
                            "append #{} was refused for a wrong expected version of {stream}, a stream it did not write",
                            op.id
                        ),
                    );
                    continue;
                };
                // Only the stream's first event in a transaction is judged against the store;
                // later ones chain through it.
                let first = op.sent().iter().position(|s| s.stream == *stream);
                let is_first = first == op.sent().iter().position(|s| std::ptr::eq(s, sent));
                let current = actual.map(db::model::StreamVersion);
                if is_first && sent.expected.0.accepts(current) {
                    f.violation(
                        Some(op.node),
                        vec![op.id],
                        format!(
                            "append #{} to {stream} was refused: expected {} but the store says it was at {:?}, which that expectation accepts",
                            op.id, sent.expected.0, actual
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}
