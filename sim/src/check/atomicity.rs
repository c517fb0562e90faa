//! **A transaction is visible whole or not at all.**
//!
//! In the final state, a transaction that is present holds exactly the events its append
//! sent, in one partition, at consecutive sequences in the order they were sent. Crashes
//! (torn frames), recovery and partial batches must never leave half a transaction behind.
//! Under corruption faults, events of a transaction may sit in unreadable positions; none may
//! be missing from a readable log.

use std::collections::BTreeMap;

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::{Eid, SeenEvent};

pub const CHECKER: Checker = Checker {
    name: "transactions-atomic",
    guarantee: "no half transaction is ever visible",
    run,
};

fn run(input: &CheckInput<'_>, facts: &Facts<'_>, f: &mut Findings) {
    let corruption = input.derived.check.corruption_allowed;
    for node in 0..input.derived.nodes {
        let Some((partitions, _)) = input.snapshot.node(node) else {
            continue;
        };
        let mut present: BTreeMap<Eid, Vec<&SeenEvent>> = BTreeMap::new();
        let mut unreadable = false;
        for log in partitions.values() {
            for slot in &log.slots {
                match slot.event() {
                    Some(e) => present.entry(e.txn).or_default().push(e),
                    None => unreadable = true,
                }
            }
        }
        for (txn, stored) in present {
            f.checked();
            let Some(sent) = facts.txns.get(&(node, txn)) else {
                // Stored but never sent: the outcomes checker reports phantoms.
                continue;
            };
            let ids: Vec<Eid> = stored.iter().map(|e| e.id).collect();
            let sent_ids: Vec<Eid> = sent.iter().map(|e| e.id).collect();
            if ids == sent_ids {
                let first = stored[0];
                let contiguous = stored
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.partition == first.partition && e.seq == first.seq + i as u64);
                if !contiguous {
                    f.violation(
                        Some(node),
                        vec![],
                        format!(
                            "transaction {txn}: its events are not at consecutive sequences of one partition: {:?}",
                            stored
                                .iter()
                                .map(|e| (e.id.to_string(), e.partition, e.seq))
                                .collect::<Vec<_>>()
                        ),
                    );
                }
                continue;
            }
            if corruption && unreadable && ids.iter().all(|id| sent_ids.contains(id)) {
                continue;
            }
            let writers: Vec<u64> = facts
                .carriers
                .get(&(node, sent[0].id))
                .map(|c| c.iter().map(|(op, _)| op.id).collect())
                .unwrap_or_default();
            f.violation(
                Some(node),
                writers,
                format!(
                    "transaction {txn} sent [{}] but the final state holds [{}] of it: half a transaction is visible",
                    sent_ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}
