//! The final quiescent read: after healing and a last crash and recovery, every partition and
//! every stream of every node, read in full.
//!
//! A read that fails is retried event by event, so one corrupt frame costs only the events it
//! holds: each position is either an event or the error reading it gave ([`Slot`]). The
//! checkers compare this ground truth with the history.

use std::collections::BTreeMap;

use db::Db;
use db::model::{PartitionId, PartitionSeq, StreamVersion};
use disk::SimDisk;
use serde::Serialize;

use crate::history::{ErrorClass, SeenEvent, StreamRef};
use crate::workload::{Streams, seen};

/// One position of a partition or stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Slot {
    Event(SeenEvent),
    /// Reading this position failed (corruption, in the scenarios that allow it).
    Unreadable(ErrorClass),
}

impl Slot {
    pub fn event(&self) -> Option<&SeenEvent> {
        match self {
            Slot::Event(e) => Some(e),
            Slot::Unreadable(_) => None,
        }
    }
}

/// A partition or stream, read from its first position.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Log {
    /// What the store says the last position is.
    pub last: Option<u64>,
    /// Positions 0, 1, … as read (a correct store returns exactly `last + 1` of them).
    pub slots: Vec<Slot>,
}

/// What the final read found on one node.
#[derive(Clone, Debug, Serialize)]
pub enum NodeState {
    Up {
        partitions: BTreeMap<u16, Log>,
        streams: BTreeMap<StreamRef, Log>,
    },
    /// The store refused to open after healing; the error.
    Down { class: ErrorClass, reason: String },
}

/// One node's logs: partitions by id, streams by reference.
pub type NodeLogs<'a> = (&'a BTreeMap<u16, Log>, &'a BTreeMap<StreamRef, Log>);

/// The final state of every node.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub nodes: Vec<NodeState>,
}

impl Snapshot {
    /// The partitions and streams of `node`, if it is up.
    pub fn node(&self, node: u32) -> Option<NodeLogs<'_>> {
        match self.nodes.get(node as usize)? {
            NodeState::Up {
                partitions,
                streams,
            } => Some((partitions, streams)),
            NodeState::Down { .. } => None,
        }
    }
}

/// Reads everything `db` holds.
pub fn read_node(db: &Db<SimDisk>, streams: &Streams) -> NodeState {
    let store = db.store();
    let mut partitions = BTreeMap::new();
    for p in 0..store.config().partition_count {
        let partition = PartitionId(p);
        let last = store.partition_sequence(partition).map(|s| s.0);
        let slots: Vec<Slot> =
            match store.scan_partition(partition, PartitionSeq(0), None, usize::MAX) {
                Ok(scan) => scan.events.iter().map(|e| Slot::Event(seen(e))).collect(),
                Err(_) => (0..last.map_or(0, |l| l + 1))
                    .map(|s| {
                        match store.scan_partition(
                            partition,
                            PartitionSeq(s),
                            Some(PartitionSeq(s)),
                            1,
                        ) {
                            Ok(scan) => scan
                                .events
                                .first()
                                .map_or(Slot::Unreadable(ErrorClass::Other), |e| {
                                    Slot::Event(seen(e))
                                }),
                            Err(err) => Slot::Unreadable(ErrorClass::of(&err)),
                        }
                    })
                    .collect(),
            };
        if last.is_some() || !slots.is_empty() {
            partitions.insert(p, Log { last, slots });
        }
    }
    let mut by_stream = BTreeMap::new();
    for stream in streams.all() {
        let (key, id) = (streams.key(stream), streams.id(stream));
        let last = store.stream_version(key, id).map(|v| v.0);
        let slots: Vec<Slot> = match store.scan_stream(key, id, StreamVersion(0), None, usize::MAX)
        {
            Ok(scan) => scan.events.iter().map(|e| Slot::Event(seen(e))).collect(),
            Err(_) => (0..last.map_or(0, |l| l + 1))
                .map(|v| {
                    let v = StreamVersion(v);
                    match store.scan_stream(key, id, v, Some(v), 1) {
                        Ok(scan) => scan
                            .events
                            .first()
                            .map_or(Slot::Unreadable(ErrorClass::Other), |e| {
                                Slot::Event(seen(e))
                            }),
                        Err(err) => Slot::Unreadable(ErrorClass::of(&err)),
                    }
                })
                .collect(),
        };
        if last.is_some() || !slots.is_empty() {
            by_stream.insert(stream, Log { last, slots });
        }
    }
    NodeState::Up {
        partitions,
        streams: by_stream,
    }
}
