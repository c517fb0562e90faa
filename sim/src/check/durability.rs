//! **No acknowledged event is ever lost or changed.**
//!
//! Every append that returned OK (fresh or "already stored") must, after every crash
//! including the final one, be stored at the partition sequence and stream version it
//! reported, with the id, stream and content it sent. An acknowledgement is a promise of
//! durability; the group-commit fsync is what keeps it.
//!
//! Catches acknowledging before the fsync (the event vanishes at the next crash), recovery
//! that cuts acknowledged frames, and an idempotency check that answers "already stored" for
//! different content (the stored content is not what the acknowledged append sent). With
//! corruption faults on, a missing or unreadable acknowledged event is tolerated (see
//! [`crate::check`]); wrong content never is.

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::Output;
use crate::snapshot::Slot;

pub const CHECKER: Checker = Checker {
    name: "acknowledged-events-durable",
    guarantee: "no acknowledged event is ever lost or changed",
    run,
};

fn run(input: &CheckInput<'_>, _facts: &Facts<'_>, f: &mut Findings) {
    let tolerate_loss = input.derived.check.corruption_allowed;
    for op in &input.history.ops {
        let Some(Output::Appended {
            partition,
            positions,
            already_stored,
        }) = &op.output
        else {
            continue;
        };
        let Some((partitions, _)) = input.snapshot.node(op.node) else {
            // A node that never came back is the recovery and liveness checkers' finding.
            continue;
        };
        let sent = op.sent();
        if positions.len() != sent.len() {
            f.violation(
                Some(op.node),
                vec![op.id],
                format!(
                    "append #{} sent {} event(s) but the acknowledgement lists {}",
                    op.id,
                    sent.len(),
                    positions.len()
                ),
            );
            continue;
        }
        for (sent, &(id, version, seq)) in sent.iter().zip(positions) {
            f.checked();
            if id != sent.id {
                f.violation(
                    Some(op.node),
                    vec![op.id],
                    format!(
                        "append #{} sent {} but was acknowledged for {id}",
                        op.id, sent.id
                    ),
                );
                continue;
            }
            let slot = partitions
                .get(partition)
                .and_then(|log| log.slots.get(seq as usize));
            let what = if *already_stored {
                "acknowledged (as already stored)"
            } else {
                "acknowledged"
            };
            match slot {
                None if tolerate_loss => {}
                None => f.violation(
                    Some(op.node),
                    vec![op.id],
                    format!(
                        "{id} was {what} at p{partition} #{seq} ({} v{version}) by append #{}, but the final state has no event there: acknowledged event lost",
                        sent.stream, op.id
                    ),
                ),
                Some(Slot::Unreadable(class)) => {
                    if !tolerate_loss {
                        f.violation(
                            Some(op.node),
                            vec![op.id],
                            format!(
                                "{id} was {what} at p{partition} #{seq} by append #{}, but reading it now fails ({class:?}) in a scenario without corruption faults",
                                op.id
                            ),
                        );
                    }
                }
                Some(Slot::Event(stored)) => {
                    let same = stored.id == id
                        && stored.stream == Some(sent.stream)
                        && stored.version == version
                        && stored.partition == *partition
                        && stored.digest == sent.digest;
                    if !same {
                        let content = if stored.id == id && stored.digest != sent.digest {
                            " with other content"
                        } else {
                            ""
                        };
                        f.violation(
                            Some(op.node),
                            vec![op.id],
                            format!(
                                "{id} was {what} by append #{} at p{partition} #{seq} {} v{version}, but the final state holds {}{content} at {} v{} there: acknowledged event changed",
                                op.id,
                                sent.stream,
                                stored.id,
                                stored.stream.map_or("?".into(), |s| s.to_string()),
                                stored.version
                            ),
                        );
                    }
                }
            }
        }
    }
}
