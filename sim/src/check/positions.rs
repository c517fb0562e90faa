//! **Stream versions and partition sequences are unique and gapless.**
//!
//! Two acknowledgements never name the same stream version or partition sequence for
//! different events. In the final state every partition holds sequences `0..=last` and every
//! stream versions `0..=last`, each position exactly once, event ids are unique, and the
//! stream index agrees with the partition log (same event, version and sequence).
//!
//! Catches positions handed out twice (an acknowledged event lost at a crash, its position
//! reused by a later append), holes left by recovery, and indexes that disagree with the data.

use std::collections::BTreeMap;

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::{Eid, Output};
use crate::snapshot::Slot;

pub const CHECKER: Checker = Checker {
    name: "unique-gapless-positions",
    guarantee: "stream versions and partition sequences are unique and gapless",
    run,
};

fn run(input: &CheckInput<'_>, facts: &Facts<'_>, f: &mut Findings) {
    // Acknowledgements never share a position.
    let mut by_seq: BTreeMap<(u32, u16, u64), (Eid, u64)> = BTreeMap::new();
    let mut by_version: BTreeMap<(u32, u32, u64), (Eid, u64)> = BTreeMap::new();
    for op in &input.history.ops {
        let Some(Output::Appended {
            partition,
            positions,
            ..
        }) = &op.output
        else {
            continue;
        };
        for (sent, &(id, version, seq)) in op.sent().iter().zip(positions) {
            f.checked();
            if let Some(&(other, other_op)) = by_seq.get(&(op.node, *partition, seq))
                && other != id
            {
                f.violation(
                    Some(op.node),
                    vec![other_op, op.id],
                    format!(
                        "p{partition} #{seq} was acknowledged for {other} (append #{other_op}) and for {id} (append #{}): a partition sequence handed out twice",
                        op.id
                    ),
                );
            }
            by_seq.insert((op.node, *partition, seq), (id, op.id));
            if let Some(&(other, other_op)) = by_version.get(&(op.node, sent.stream.0, version))
                && other != id
            {
                f.violation(
                    Some(op.node),
                    vec![other_op, op.id],
                    format!(
                        "{} v{version} was acknowledged for {other} (append #{other_op}) and for {id} (append #{}): a stream version handed out twice",
                        sent.stream, op.id
                    ),
                );
            }
            by_version.insert((op.node, sent.stream.0, version), (id, op.id));
        }
    }

    // The final state is gapless, unique, and its two indexes agree.
    for node in 0..input.derived.nodes {
        let Some((partitions, streams)) = input.snapshot.node(node) else {
            continue;
        };
        let mut seen_ids: BTreeMap<Eid, (u16, usize)> = BTreeMap::new();
        for (&p, log) in partitions {
            let expected = log.last.map_or(0, |l| l + 1);
            f.checked();
            if log.slots.len() as u64 != expected {
                f.violation(
                    Some(node),
                    vec![],
                    format!(
                        "p{p}: the store says the last sequence is {:?}, but a full scan returns {} event(s)",
                        log.last,
                        log.slots.len()
                    ),
                );
            }
            for (i, slot) in log.slots.iter().enumerate() {
                let Slot::Event(e) = slot else { continue };
                f.checked();
                if e.seq != i as u64 || e.partition != p {
                    f.violation(
                        Some(node),
                        vec![],
                        format!(
                            "p{p}: position {i} of a full scan holds {} at p{} #{}: a gap or a misplaced event",
                            e.id, e.partition, e.seq
                        ),
                    );
                }
                if let Some((other_p, other_i)) = seen_ids.insert(e.id, (p, i)) {
                    f.violation(
                        Some(node),
                        vec![],
                        format!(
                            "{} is stored twice: p{other_p} #{other_i} and p{p} #{i}",
                            e.id
                        ),
                    );
                }
            }
        }
        for (&stream, log) in streams {
            let expected = log.last.map_or(0, |l| l + 1);
            f.checked();
            if log.slots.len() as u64 != expected {
                f.violation(
                    Some(node),
                    vec![],
                    format!(
                        "{stream}: the store says the last version is {:?}, but a full scan returns {} event(s)",
                        log.last,
                        log.slots.len()
                    ),
                );
            }
            for (i, slot) in log.slots.iter().enumerate() {
                let Slot::Event(e) = slot else { continue };
                f.checked();
                if e.version != i as u64 || e.stream != Some(stream) {
                    f.violation(
                        Some(node),
                        vec![],
                        format!(
                            "{stream}: position {i} of a full scan holds {} at {} v{}: a gap or a misplaced event",
                            e.id,
                            e.stream.map_or("?".into(), |s| s.to_string()),
                            e.version
                        ),
                    );
                }
                match facts.stored_event(node, e.id) {
                    Some(in_partition) if in_partition == e => {}
                    Some(in_partition) => f.violation(
                        Some(node),
                        vec![],
                        format!(
                            "{}: the stream index says {stream} v{} p{} #{}, the partition log says v{} p{} #{}",
                            e.id,
                            e.version,
                            e.partition,
                            e.seq,
                            in_partition.version,
                            in_partition.partition,
                            in_partition.seq
                        ),
                    ),
                    None => f.violation(
                        Some(node),
                        vec![],
                        format!(
                            "{}: {stream} v{} lists it, but no partition holds it",
                            e.id, e.version
                        ),
                    ),
                }
            }
        }
    }
}
