//! **A subscription delivers every event of its targets from its start, once, in order, within
//! its window; a resumed subscription continues from the acknowledged position.**
//!
//! Judged from what each subscriber received and acknowledged ([`crate::history::Subscription`])
//! against the acknowledged appends and the final snapshot:
//!
//! 1. *Order, no gaps, no duplicates.* Within one subscription, the deliveries of each target
//!    have consecutive positions from the target's start; cursors count 0, 1, 2, … and every
//!    delivered event belongs to one of the targets.
//! 2. *Real events.* A delivered event was sent by an append (same id, content, transaction)
//!    and is in the final state at the position it was delivered at (publishing means
//!    durable, so a crash cannot take it away).
//! 3. *`FROM LATEST`.* It never delivers an event whose append was acknowledged before the
//!    subscribe call; its start is the store's head + 1 at that call.
//! 4. *Window.* Delivery `c` arrives only if `c < window`, or `c <= last_ack + window` for the
//!    last acknowledgement sent before it; every acknowledgement of a delivered cursor is taken.
//! 5. *Resumption.* After a restart or a failed feed, the next subscription of the chain starts
//!    each target at the last acknowledged position + 1 (or the original start): delivered but
//!    unacknowledged events may come again (at-least-once across restarts), acknowledged ones
//!    never do.
//! 6. *Liveness.* After healing, each chain catches up within its bound: `liveness_within`
//!    plus one worst acknowledgement round trip per window's worth of its backlog then
//!    ([`crate::subscriber::catch_up_bound_ns`]; the subscriber times it and records `Behind`
//!    when it passes). Its last subscription reports the store's heads, every acknowledged
//!    append to a target is at or below its head, and every event of the final state from the
//!    chain's original start up to the head was delivered by some subscription of the chain.
//!
//! A feed may stop on a read error only under faults that explain it (read errors, power cuts,
//! corruption).

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::{
    Eid, ErrorClass, Input, Output, SubFrom, SubTarget, Subscription, SubscriptionEnd,
};
use crate::scenario::OpKind;
use crate::snapshot::{Log, Slot};

pub const CHECKER: Checker = Checker {
    name: "subscriptions-deliver-exactly-once",
    guarantee: "a subscription delivers every event of its targets from its start, once, in order, within its window; a resumed one continues from the acknowledged position",
    run,
};

/// Per node and event: when its append was first acknowledged.
type AckTimes = BTreeMap<(u32, Eid), u64>;
/// Per node and target: acknowledged (workload) appends as (completion time, position).
type AckedPositions = BTreeMap<(u32, SubTarget), Vec<(u64, u64)>>;

fn acknowledged(input: &CheckInput<'_>) -> (AckTimes, AckedPositions) {
    let mut times = AckTimes::new();
    let mut positions = AckedPositions::new();
    for op in &input.history.ops {
        let (
            Some(Output::Appended {
                partition,
                positions: at,
                ..
            }),
            Some(done),
            Input::Append { events, .. },
        ) = (&op.output, op.complete_ns, &op.input)
        else {
            continue;
        };
        for (i, (id, version, seq)) in at.iter().enumerate() {
            let t = times.entry((op.node, *id)).or_insert(done);
            *t = (*t).min(done);
            if op.kind == OpKind::Probe {
                continue;
            }
            if let Some(sent) = events.get(i) {
                positions
                    .entry((op.node, SubTarget::Stream(sent.stream)))
                    .or_default()
                    .push((done, *version));
            }
            positions
                .entry((op.node, SubTarget::Partition(*partition)))
                .or_default()
                .push((done, *seq));
        }
    }
    (times, positions)
}

fn log_of<'a>(input: &CheckInput<'a>, node: u32, target: SubTarget) -> Option<&'a Log> {
    let (partitions, streams) = input.snapshot.node(node)?;
    match target {
        SubTarget::Stream(s) => streams.get(&s),
        SubTarget::Partition(p) => partitions.get(&p),
    }
}

fn run(input: &CheckInput<'_>, facts: &Facts<'_>, f: &mut Findings) {
    let subs = &input.history.subscriptions;
    if subs.is_empty() {
        return;
    }
    let (ack_times, acked_positions) = acknowledged(input);
    let corruption = input.derived.check.corruption_allowed;
    // As for reads: an armed power cut fails every disk operation until the node is crashed at
    // the next slice, so a feed's scan in that window fails with an I/O error too.
    let read_errors = input.derived.disk.read_error > 0.0
        || input
            .derived
            .schedule
            .iter()
            .any(|e| matches!(e.action, crate::scenario::FaultAction::PowerCut { .. }));
    for sub in subs {
        check_one(input, facts, f, sub, &ack_times, corruption, read_errors);
    }
    // Chains: a subscriber's subscriptions with one chain number, in the order made.
    let mut chains: BTreeMap<(u32, u32), Vec<&Subscription>> = BTreeMap::new();
    for sub in subs {
        chains
            .entry((sub.subscriber, sub.chain))
            .or_default()
            .push(sub);
    }
    for chain in chains.values() {
        check_chain(input, f, chain, &acked_positions, corruption);
    }
}

/// Rules 1–4 for one subscription.
fn check_one(
    input: &CheckInput<'_>,
    facts: &Facts<'_>,
    f: &mut Findings,
    sub: &Subscription,
    ack_times: &AckTimes,
    corruption: bool,
    read_errors: bool,
) {
    let name = format!(
        "subscription #{} (subscriber {}, chain {})",
        sub.id, sub.subscriber, sub.chain
    );
    let mut next: Vec<u64> = sub.targets.iter().map(|t| t.start).collect();
    // Only the first break of order per target is reported: later ones follow from it.
    let mut broken = vec![false; sub.targets.len()];
    let mut acks = sub.acks.iter().peekable();
    let mut last_ack: Option<u64> = None;
    for (k, d) in sub.deliveries.iter().enumerate() {
        f.checked();
        while let Some(a) = acks.next_if(|a| a.after_deliveries <= k as u64) {
            if a.accepted {
                last_ack = Some(last_ack.map_or(a.cursor, |l| l.max(a.cursor)));
            }
        }
        if d.cursor != k as u64 {
            f.violation_at(
                sub.node,
                d.at_ns,
                format!(
                    "{name}: delivery {k} carries cursor {} (cursors count from 0 without gaps)",
                    d.cursor
                ),
            );
        }
        let allowed_end = last_ack.map_or(sub.window, |l| l + 1 + sub.window);
        if d.cursor >= allowed_end {
            f.violation_at(
                sub.node,
                d.at_ns,
                format!(
                    "{name}: cursor {} delivered with window {} and last acknowledgement {:?}: more than the window outstanding",
                    d.cursor, sub.window, last_ack
                ),
            );
        }
        let e = &d.event;
        let Some((t, position)) = d.target.and_then(|t| {
            let target = sub.targets.get(t)?.target;
            Some((t, target.position_of(e)?))
        }) else {
            f.violation_at(
                sub.node,
                d.at_ns,
                format!(
                    "{name}: delivered {} (p{} #{}) which is on none of its targets",
                    e.id, e.partition, e.seq
                ),
            );
            continue;
        };
        let target = sub.targets[t];
        if position != next[t] && !broken[t] {
            broken[t] = true;
            let what = if position > next[t] {
                format!("skipped {}..{}", next[t], position)
            } else {
                format!("went back from {} (duplicate or reorder)", next[t])
            };
            f.violation_at(
                sub.node,
                d.at_ns,
                format!(
                    "{name}: target {} delivered position {position} ({}, cursor {}) but expected {}: {what}",
                    target.target, e.id, d.cursor, next[t]
                ),
            );
        }
        next[t] = position + 1;
        if target.from == SubFrom::Latest
            && let Some(&acked_at) = ack_times.get(&(sub.node, e.id))
            && acked_at < sub.at_ns
        {
            f.violation_at(
                sub.node,
                d.at_ns,
                format!(
                    "{name}: FROM LATEST on {} delivered {} at position {position}, acknowledged at {acked_at}ns, before the subscription at {}ns",
                    target.target, e.id, sub.at_ns
                ),
            );
        }
        if !facts.has_writer(sub.node, e) {
            f.violation_at(
                sub.node,
                d.at_ns,
                format!("{name}: delivered {} on {} at {position}, which no append sent with that content", e.id, target.target),
            );
        }
        match log_of(input, sub.node, target.target)
            .and_then(|log| log.slots.get(position as usize))
        {
            Some(Slot::Event(stored)) if stored.id == e.id && stored.digest == e.digest => {}
            Some(Slot::Unreadable(_)) | None if corruption => {}
            other => f.violation_at(
                sub.node,
                d.at_ns,
                format!(
                    "{name}: delivered {} on {} at {position}, but the final state holds {}",
                    e.id,
                    target.target,
                    match other {
                        Some(Slot::Event(s)) => format!("{} there", s.id),
                        Some(Slot::Unreadable(c)) => format!("an unreadable slot ({c:?})"),
                        None => "nothing".into(),
                    }
                ),
            ),
        }
    }
    for a in &sub.acks {
        f.checked();
        if !a.accepted && a.cursor < a.after_deliveries {
            f.violation_at(
                sub.node,
                a.at_ns,
                format!(
                    "{name}: acknowledging delivered cursor {} was refused",
                    a.cursor
                ),
            );
        }
    }
    match &sub.end {
        Some((at, SubscriptionEnd::Refused { reason })) => f.violation_at(
            sub.node,
            *at,
            format!("{name}: subscribe refused: {reason}"),
        ),
        Some((at, SubscriptionEnd::Failed { class, reason })) => {
            let explained = match class {
                ErrorClass::Io => read_errors || corruption,
                ErrorClass::Corrupt => corruption,
                _ => false,
            };
            if !explained {
                f.violation_at(
                    sub.node,
                    *at,
                    format!("{name}: the feed stopped on a read error ({class:?}: {reason}) no fault explains"),
                );
            }
        }
        _ => {}
    }
}

/// Rules 5 and 6 for one chain of subscriptions.
fn check_chain(
    input: &CheckInput<'_>,
    f: &mut Findings,
    chain: &[&Subscription],
    acked_positions: &AckedPositions,
    corruption: bool,
) {
    let first = chain[0];
    let name = format!("subscriber {} chain {}", first.subscriber, first.chain);
    let origin: Vec<u64> = first.targets.iter().map(|t| t.start).collect();
    let mut resume: Vec<u64> = origin.clone();
    let mut delivered: BTreeSet<(usize, u64, Eid)> = BTreeSet::new();
    for sub in chain {
        f.checked();
        if sub.resumed {
            for (t, target) in sub.targets.iter().enumerate() {
                if resume.get(t) != Some(&target.start) {
                    f.violation_at(
                        sub.node,
                        sub.at_ns,
                        format!(
                            "{name}: resumed subscription #{} starts {} at {} but the acknowledged position says {:?}",
                            sub.id,
                            target.target,
                            target.start,
                            resume.get(t)
                        ),
                    );
                }
            }
        }
        let mut acked_cursor: Option<u64> = None;
        for a in sub.acks.iter().filter(|a| a.accepted) {
            acked_cursor = Some(acked_cursor.map_or(a.cursor, |c| c.max(a.cursor)));
        }
        for d in &sub.deliveries {
            let Some(t) = d.target else { continue };
            let Some(position) = sub
                .targets
                .get(t)
                .and_then(|x| x.target.position_of(&d.event))
            else {
                continue;
            };
            delivered.insert((t, position, d.event.id));
            if acked_cursor.is_some_and(|c| d.cursor <= c) && resume[t] <= position {
                resume[t] = position + 1;
            }
        }
    }
    let last = chain[chain.len() - 1];
    let Some((end_ns, end)) = &last.end else {
        f.violation(
            Some(last.node),
            vec![],
            format!(
                "{name}: its last subscription #{} never ended: the subscriber hung",
                last.id
            ),
        );
        return;
    };
    let heads = match end {
        SubscriptionEnd::CaughtUp { heads } => heads,
        SubscriptionEnd::NodeDown if corruption || input.snapshot.node(last.node).is_none() => {
            return;
        }
        SubscriptionEnd::Behind { backlog, bound_ns } => {
            f.violation_at(
                last.node,
                *end_ns,
                format!(
                    "{name}: not caught up within its bound of {bound_ns}ns after healing ({}ns, plus {} round trip(s) of at most {}ns for {backlog} event(s) behind through window {}; last subscription #{})",
                    input.derived.check.liveness_within_ns,
                    backlog.div_ceil(last.window.max(1)),
                    input.derived.ack_round_trip_max_ns(),
                    last.window,
                    last.id
                ),
            );
            return;
        }
        other => {
            f.violation_at(
                last.node,
                *end_ns,
                format!(
                    "{name}: not caught up after healing (last subscription #{} ended {other:?})",
                    last.id
                ),
            );
            return;
        }
    };
    for (t, target) in last.targets.iter().enumerate() {
        let head = heads.get(t).copied().flatten();
        if !corruption {
            for &(done, position) in acked_positions
                .get(&(last.node, target.target))
                .into_iter()
                .flatten()
            {
                f.checked();
                if done <= *end_ns && head.is_none_or(|h| position > h) {
                    f.violation_at(
                        last.node,
                        *end_ns,
                        format!(
                            "{name}: caught up on {} at head {head:?}, below acknowledged position {position}",
                            target.target
                        ),
                    );
                    break;
                }
            }
        }
        let Some(head) = head else { continue };
        let Some(log) = log_of(input, last.node, target.target) else {
            continue;
        };
        for position in origin[t]..=head {
            f.checked();
            let Some(Slot::Event(stored)) = log.slots.get(position as usize) else {
                continue;
            };
            if !delivered.contains(&(t, position, stored.id)) {
                f.violation_at(
                    last.node,
                    *end_ns,
                    format!(
                        "{name}: {} at position {position} of {} (start {}, caught up at {head}) was never delivered",
                        stored.id, target.target, origin[t]
                    ),
                );
                break;
            }
        }
    }
}
