//! **Every read returns data consistent with the acknowledged history.**
//!
//! Each event a read returns was sent by an append with the same id, content and
//! transaction (never garbage, never another event's bytes), sits where the final state has
//! it (no reads of data that was visible and then lost: visibility ⊆ durability), and the read
//! is well-formed: a stream scan returns consecutive versions of that stream from where it
//! started, within its bounds and limit; a partition scan likewise with sequences; a `get`
//! returns the id it asked for, and finds every event acknowledged before it was invoked.
//!
//! Catches serving frames whose checksum was not verified (a flipped bit is served as data),
//! publishing events before their fsync (a read sees an event the next crash takes away), and
//! index bugs. Reads failing with a corruption error are allowed only under corruption faults,
//! and with an I/O error only under read-error faults or power cuts; stale or too-new lengths are the
//! linearizability checker's.

use std::collections::BTreeMap;

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::{Eid, ErrorClass, Input, Op, Output, SeenEvent};

pub const CHECKER: Checker = Checker {
    name: "reads-consistent",
    guarantee: "every read returns a state consistent with the acknowledged history",
    run,
};

fn run(input: &CheckInput<'_>, facts: &Facts<'_>, f: &mut Findings) {
    let corruption = input.derived.check.corruption_allowed;
    // A power cut fails every disk operation until the node is crashed (at the next slice),
    // so reads in that window fail with I/O errors too.
    let read_errors = input.derived.disk.read_error > 0.0
        || input
            .derived
            .schedule
            .iter()
            .any(|e| matches!(e.action, crate::scenario::FaultAction::PowerCut { .. }));
    // Earliest acknowledgement of each event id, per node.
    let mut acked_at: BTreeMap<(u32, Eid), u64> = BTreeMap::new();
    for op in &input.history.ops {
        if let (Some(Output::Appended { positions, .. }), Some(done)) = (&op.output, op.complete_ns)
        {
            for (id, _, _) in positions {
                let at = acked_at.entry((op.node, *id)).or_insert(done);
                *at = (*at).min(done);
            }
        }
    }
    for op in &input.history.ops {
        let Some(output) = &op.output else { continue };
        match output {
            Output::ReadFailed { class, reason } => {
                f.checked();
                let allowed = match class {
                    ErrorClass::Corrupt => corruption,
                    // A damaged length field can send a read past the end of the file, which
                    // the store reports as an I/O error.
                    ErrorClass::Io => read_errors || corruption,
                    _ => false,
                };
                if !allowed {
                    f.violation(
                        Some(op.node),
                        vec![op.id],
                        format!(
                            "{} #{} failed ({class:?}: {reason}) in a scenario without faults that explain it",
                            op.kind.name(),
                            op.id
                        ),
                    );
                }
            }
            Output::Events { events, has_more } => {
                shape(op, events, *has_more, f);
                for e in events {
                    event(op, e, facts, corruption, f);
                }
            }
            Output::NotFound => {
                let Input::Get { id } = &op.input else {
                    continue;
                };
                f.checked();
                if let Some(&at) = acked_at.get(&(op.node, *id))
                    && at <= op.invoke_ns
                    && !corruption
                {
                    f.violation(
                        Some(op.node),
                        vec![op.id],
                        format!(
                            "get #{} of {id} found nothing, but {id} was acknowledged at {at}ns, before the get began",
                            op.id
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

/// One returned event: real, and where the final state has it.
fn event(op: &Op, e: &SeenEvent, facts: &Facts<'_>, corruption: bool, f: &mut Findings) {
    f.checked();
    if !facts.has_writer(op.node, e) {
        f.violation(
            Some(op.node),
            vec![op.id],
            format!(
                "{} #{} returned {} at p{} #{} v{} with content no append sent in transaction {}: wrong data served",
                op.kind.name(),
                op.id,
                e.id,
                e.partition,
                e.seq,
                e.version,
                e.txn
            ),
        );
        return;
    }
    match facts.stored_event(op.node, e.id) {
        Some(stored) if stored == e => {}
        Some(stored) => f.violation(
            Some(op.node),
            vec![op.id],
            format!(
                "{} #{} returned {} at p{} #{} v{}, but the final state has it at p{} #{} v{}",
                op.kind.name(),
                op.id,
                e.id,
                e.partition,
                e.seq,
                e.version,
                stored.partition,
                stored.seq,
                stored.version
            ),
        ),
        None if corruption => {}
        None => f.violation(
            Some(op.node),
            vec![op.id],
            format!(
                "{} #{} returned {} (p{} #{}), which the final state no longer holds: a read saw data a crash took away",
                op.kind.name(),
                op.id,
                e.id,
                e.partition,
                e.seq
            ),
        ),
    }
}

/// The read returned what it asked for, in order, without holes.
fn shape(op: &Op, events: &[SeenEvent], has_more: bool, f: &mut Findings) {
    f.checked();
    let bad = |f: &mut Findings, why: &str| {
        f.violation(
            Some(op.node),
            vec![op.id],
            format!(
                "{} #{} returned a malformed result: {why}",
                op.kind.name(),
                op.id
            ),
        )
    };
    match &op.input {
        Input::Get { id } if events.len() != 1 || events[0].id != *id => {
            bad(f, &format!("asked for {id}, got {} event(s)", events.len()));
        }
        Input::ReadStream {
            stream,
            from,
            to,
            limit,
            backward,
        } => {
            let to = to.unwrap_or(u64::MAX);
            if events.len() > *limit as usize || (has_more && events.len() != *limit as usize) {
                bad(
                    f,
                    &format!(
                        "{} event(s) for limit {limit} (has_more {has_more})",
                        events.len()
                    ),
                );
            }
            for (i, e) in events.iter().enumerate() {
                if e.stream != Some(*stream) || e.version < *from || e.version > to {
                    bad(
                        f,
                        &format!(
                            "{} at v{} is outside {stream} v{from}..=v{to}",
                            e.id, e.version
                        ),
                    );
                    return;
                }
                let expected = if *backward {
                    events[0].version.checked_sub(i as u64)
                } else {
                    Some(from + i as u64)
                };
                if Some(e.version) != expected {
                    let expected = expected.map_or("nothing".into(), |v| format!("v{v}"));
                    bad(
                        f,
                        &format!(
                            "position {i} holds {} at v{} where {expected} belongs: versions skip or repeat",
                            e.id, e.version
                        ),
                    );
                    return;
                }
            }
        }
        Input::ReadPartition {
            partition,
            from,
            limit,
        } => {
            if events.len() > *limit as usize || (has_more && events.len() != *limit as usize) {
                bad(
                    f,
                    &format!(
                        "{} event(s) for limit {limit} (has_more {has_more})",
                        events.len()
                    ),
                );
            }
            for (i, e) in events.iter().enumerate() {
                if e.partition != *partition || e.seq != from + i as u64 {
                    bad(
                        f,
                        &format!(
                            "position {i} holds {} at p{} #{} where p{partition} #{} belongs",
                            e.id,
                            e.partition,
                            e.seq,
                            from + i as u64
                        ),
                    );
                    return;
                }
            }
        }
        _ => {}
    }
}
