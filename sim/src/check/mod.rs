//! Checkers: one file per invariant, each naming the guarantee it defends.
//!
//! Every checker reads the same [`CheckInput`] (the derived scenario, the recorded history,
//! the final snapshot) and reports how many facts it checked and which it found violated.
//! None of them looks inside the store: they judge it only by what clients were told and what
//! a final read finds, as a user would.
//!
//! | file | invariant |
//! |---|---|
//! | [`durability`] | no acknowledged event is ever lost or changed |
//! | [`positions`] | stream versions and partition sequences are unique and gapless |
//! | [`atomicity`] | a transaction is visible whole or not at all |
//! | [`outcomes`] | nothing is stored that was not sent; "not written" means not written |
//! | [`linearizable`] | expected-version appends and reads are linearizable per stream and partition |
//! | [`reads`] | every read returns data consistent with the acknowledged history |
//! | [`recovery`] | recovery accepts what crashes leave and does what it reports |
//! | [`liveness`] | after faults heal, writes make progress within a bound |
//! | [`subscriptions`] | subscriptions deliver every event from their start, once, in order, within their window |
//!
//! # Corruption
//!
//! Faults that damage stored bytes (read bit flips, misdirected writes, `corrupt`) can make a
//! single-node store lose or refuse acknowledged data: there is no second copy. In scenarios
//! with such faults ([`crate::scenario::CheckPlan::corruption_allowed`]) an acknowledged
//! event may be missing or unreadable and a node may refuse to open with a corruption error;
//! an event served with the wrong content, at the wrong position or out of nowhere is still a
//! violation. Everywhere else, every one of these is a violation.

pub mod atomicity;
pub mod durability;
pub mod linearizable;
pub mod liveness;
pub mod outcomes;
pub mod positions;
pub mod reads;
pub mod recovery;
pub mod subscriptions;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{Eid, EidIndex, History, Op, SeenEvent, SentEvent};
use crate::scenario::Derived;
use crate::snapshot::Snapshot;
use crate::workload::Streams;

/// What every checker reads.
pub struct CheckInput<'a> {
    pub derived: &'a Derived,
    pub history: &'a History,
    pub snapshot: &'a Snapshot,
    pub streams: &'a Streams,
    pub hung_clients: usize,
}

/// One broken promise, with the operations that show it.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    pub node: Option<u32>,
    pub message: String,
    /// History operations involved, for the trace excerpt.
    pub ops: Vec<u64>,
    /// When it happened, if no operation shows it (recoveries), for the trace excerpt.
    pub at_ns: Option<u64>,
}

/// What one checker found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub guarantee: &'static str,
    /// Facts evaluated (each acknowledged event, each read, each position, ...).
    pub checked: u64,
    pub violations: Vec<Violation>,
    /// Violations found beyond the ones kept.
    pub more: u64,
}

/// Violations kept per checker; the count of the rest is reported.
const KEEP: usize = 10;

/// A checker's running tally.
pub struct Findings {
    name: &'static str,
    checked: u64,
    violations: Vec<Violation>,
    more: u64,
}

impl Findings {
    fn new(name: &'static str) -> Findings {
        Findings {
            name,
            checked: 0,
            violations: Vec::new(),
            more: 0,
        }
    }

    /// Counts one fact.
    pub fn checked(&mut self) {
        self.checked += 1;
    }

    /// Records a violation shown by operations.
    pub fn violation(&mut self, node: Option<u32>, ops: Vec<u64>, message: String) {
        self.push(Violation {
            invariant: self.name,
            node,
            message,
            ops,
            at_ns: None,
        });
    }

    /// Records a violation at a moment rather than in an operation.
    pub fn violation_at(&mut self, node: u32, at_ns: u64, message: String) {
        self.push(Violation {
            invariant: self.name,
            node: Some(node),
            message,
            ops: Vec::new(),
            at_ns: Some(at_ns),
        });
    }

    fn push(&mut self, violation: Violation) {
        if self.violations.len() < KEEP {
            self.violations.push(violation);
        } else {
            self.more += 1;
        }
    }
}

/// One checker: its name, the guarantee it defends, and its function.
pub struct Checker {
    pub name: &'static str,
    pub guarantee: &'static str,
    pub run: fn(&CheckInput<'_>, &Facts<'_>, &mut Findings),
}

/// Every checker, in the order they run and print.
pub const ALL: [Checker; 9] = [
    durability::CHECKER,
    positions::CHECKER,
    atomicity::CHECKER,
    outcomes::CHECKER,
    linearizable::CHECKER,
    reads::CHECKER,
    recovery::CHECKER,
    liveness::CHECKER,
    subscriptions::CHECKER,
];

/// Runs every checker.
pub fn run_all(input: &CheckInput<'_>) -> Vec<CheckResult> {
    let facts = Facts::new(input);
    ALL.iter()
        .map(|checker| {
            let mut findings = Findings::new(checker.name);
            (checker.run)(input, &facts, &mut findings);
            CheckResult {
                name: checker.name,
                guarantee: checker.guarantee,
                checked: findings.checked,
                violations: findings.violations,
                more: findings.more,
            }
        })
        .collect()
}

/// One node's stored events, found by id in O(1), each with whether an append could have
/// stored it as it is (computed once: reads and deliveries return the same events again and
/// again).
#[derive(Default)]
struct StoredIndex<'a> {
    ids: EidIndex,
    events: Vec<(&'a SeenEvent, bool)>,
}

/// Per (node, event id): the appends that sent an event with that id, and which one, in
/// history order. Found in O(1) (the workload's ids are dense per client, see [`EidIndex`]):
/// the checkers ask for every event the final state holds. Lookups only.
#[derive(Default)]
pub struct Carriers<'a> {
    /// Per node: id -> place in `lists`.
    index: Vec<EidIndex>,
    lists: Vec<Vec<(&'a Op, &'a SentEvent)>>,
}

impl<'a> Carriers<'a> {
    fn push(&mut self, node: u32, id: Eid, carrier: (&'a Op, &'a SentEvent)) {
        let node = node as usize;
        if self.index.len() <= node {
            self.index.resize_with(node + 1, EidIndex::default);
        }
        match self.index[node].get(id) {
            Some(list) => self.lists[list as usize].push(carrier),
            None => {
                let list = u32::try_from(self.lists.len()).expect("fewer than 2^32 ids");
                self.index[node].insert_new(id, list);
                self.lists.push(vec![carrier]);
            }
        }
    }

    /// The appends that sent an event with id `id` to `node`.
    pub fn get(&self, &(node, id): &(u32, Eid)) -> Option<&Vec<(&'a Op, &'a SentEvent)>> {
        let list = self.index.get(node as usize)?.get(id)?;
        Some(&self.lists[list as usize])
    }
}

/// Indexes over the history and snapshot that several checkers share.
pub struct Facts<'a> {
    /// Per node: every event the final snapshot holds, in id order (the first one the
    /// snapshot lists where an id repeats).
    pub stored: Vec<Vec<(Eid, &'a SeenEvent)>>,
    /// The same, per node, for lookups in O(1).
    stored_index: Vec<StoredIndex<'a>>,
    /// Per (node, event id): the appends that sent an event with that id, and which one.
    pub carriers: Carriers<'a>,
    /// Per (node, transaction id): the events the transaction sent.
    pub txns: BTreeMap<(u32, Eid), &'a [SentEvent]>,
}

impl<'a> Facts<'a> {
    fn new(input: &CheckInput<'a>) -> Facts<'a> {
        let mut stored = Vec::new();
        for n in 0..input.derived.nodes {
            let mut events = Vec::new();
            if let Some((partitions, _)) = input.snapshot.node(n) {
                for log in partitions.values() {
                    for slot in &log.slots {
                        if let Some(e) = slot.event() {
                            events.push((e.id, e));
                        }
                    }
                }
            }
            // A stable sort keeps repeats of an id in snapshot order, and `dedup` keeps the
            // first: what a map filled with `entry().or_insert()` holds, for a sort's cost.
            events.sort_by_key(|&(id, _)| id);
            events.dedup_by_key(|&mut (id, _)| id);
            stored.push(events);
        }
        let mut carriers = Carriers::default();
        let mut txns = BTreeMap::new();
        for op in &input.history.ops {
            if let crate::history::Input::Append { txn, events, .. } = &op.input {
                txns.entry((op.node, *txn)).or_insert(events.as_slice());
                for sent in events {
                    carriers.push(op.node, sent.id, (op, sent));
                }
            }
        }
        let mut facts = Facts {
            stored,
            stored_index: Vec::new(),
            carriers,
            txns,
        };
        facts.stored_index = (0..input.derived.nodes)
            .map(|n| {
                let mut index = StoredIndex::default();
                for &(id, e) in &facts.stored[n as usize] {
                    let has_writer = facts.writers(n, e).next().is_some();
                    index.ids.insert_new(id, index.events.len() as u32);
                    index.events.push((e, has_writer));
                }
                index
            })
            .collect();
        facts
    }

    /// The event the final snapshot of `node` holds under `id` (as [`Facts::stored`], in
    /// O(1)).
    pub fn stored_event(&self, node: u32, id: Eid) -> Option<&'a SeenEvent> {
        let index = self.stored_index.get(node as usize)?;
        Some(index.events[index.ids.get(id)? as usize].0)
    }

    /// The appends that could have stored `event`: same id, same content, same transaction.
    pub fn writers_of(&self, node: u32, event: &SeenEvent) -> Vec<&'a Op> {
        self.writers(node, event).collect()
    }

    /// Whether any append could have stored `event` (no allocation: reads check every event;
    /// an event as the final state holds it is answered from the index).
    pub fn has_writer(&self, node: u32, event: &SeenEvent) -> bool {
        if let Some(index) = self.stored_index.get(node as usize)
            && let Some(i) = index.ids.get(event.id)
            && let (stored, has_writer) = index.events[i as usize]
            && stored == event
        {
            return has_writer;
        }
        self.writers(node, event).next().is_some()
    }

    /// [`Facts::writers_of`], without collecting them.
    pub fn writers(&self, node: u32, event: &SeenEvent) -> impl Iterator<Item = &'a Op> + '_ {
        let event = *event;
        self.carriers
            .get(&(node, event.id))
            .into_iter()
            .flatten()
            .filter(move |(op, sent)| {
                sent.digest == event.digest
                    && matches!(&op.input, crate::history::Input::Append { txn, .. } if *txn == event.txn)
            })
            .map(|(op, _)| *op)
    }
}

/// Ops of a list, for violation reports.
pub fn op_ids<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Vec<u64> {
    ops.into_iter().map(|op| op.id).collect()
}
