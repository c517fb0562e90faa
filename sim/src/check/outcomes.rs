//! **Nothing is stored that was not sent, and "not written" means not written.**
//!
//! Every event in the final state was sent by some append with the same id, content and
//! transaction, and at least one such append did not report a definite failure: an append
//! answered `Unavailable` (disk full, I/O error cut back, bucket poisoned, node gone while it
//! waited), node down, wrong expected version or id conflict must have written nothing. A
//! client relies on that to decide that a retry with new ids is safe.
//!
//! Also flags answers no correct store gives this workload: `Rejected` (the workload only sends
//! valid transactions with consistent partition keys) and an id conflict for an id that is
//! stored with exactly the content sent.

use super::{CheckInput, Checker, Facts, Findings, op_ids};
use crate::history::{Output, Written};

pub const CHECKER: Checker = Checker {
    name: "no-phantom-writes",
    guarantee: "nothing is stored that was not sent, and an append reported as not written wrote nothing",
    run,
};

fn run(input: &CheckInput<'_>, facts: &Facts<'_>, f: &mut Findings) {
    for node in 0..input.derived.nodes {
        for &(id, stored) in &facts.stored[node as usize] {
            f.checked();
            let mut writers = facts.writers(node, stored).peekable();
            if writers.peek().is_none() {
                let same_id: Vec<u64> = facts
                    .carriers
                    .get(&(node, id))
                    .map(|c| c.iter().map(|(op, _)| op.id).collect())
                    .unwrap_or_default();
                let why = if same_id.is_empty() {
                    "no append ever sent this id".to_string()
                } else {
                    "appends sent this id, but none with this content in this transaction"
                        .to_string()
                };
                f.violation(
                    Some(node),
                    same_id,
                    format!(
                        "{id} is stored (p{} #{} v{}) but {why}: phantom or corrupted data",
                        stored.partition, stored.seq, stored.version
                    ),
                );
                continue;
            }
            if writers.all(|op| op.written() == Written::No) {
                f.violation(
                    Some(node),
                    op_ids(facts.writers(node, stored)),
                    format!(
                        "{id} is stored (p{} #{}) but every append that sent it reported it was not written",
                        stored.partition, stored.seq
                    ),
                );
            }
        }
    }
    for op in &input.history.ops {
        match &op.output {
            Some(Output::Rejected { reason }) => {
                f.checked();
                f.violation(
                    Some(op.node),
                    vec![op.id],
                    format!("append #{} was rejected as invalid: {reason}", op.id),
                );
            }
            Some(Output::EventIdConflict { id }) => {
                f.checked();
                let Some(stored) = facts.stored_event(op.node, *id) else {
                    continue;
                };
                let same = op
                    .sent()
                    .iter()
                    .any(|s| s.id == *id && s.digest == stored.digest);
                if same {
                    f.violation(
                        Some(op.node),
                        vec![op.id],
                        format!(
                            "append #{} was refused as an id conflict on {id}, but {id} is stored with exactly the content it sent",
                            op.id
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}
