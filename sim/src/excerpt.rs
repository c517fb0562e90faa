//! The readable part of a failure report: the operations around a violation, on the same
//! streams and partitions, interleaved with the faults of that time.

use std::collections::BTreeSet;

use crate::check::Violation;
use crate::history::{History, Input, Op, Output};

/// Operations shown before and after each operation a violation names.
const BEFORE: usize = 8;
const AFTER: usize = 4;
/// Faults within this much virtual time of the shown operations are shown too.
const FAULT_MARGIN_NS: u64 = 200_000_000;

/// What an operation touches: streams and partitions, as `s<i>` / `p<n>` keys.
fn keys(op: &Op) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    match &op.input {
        Input::Append {
            partition, events, ..
        } => {
            keys.insert(format!("p{partition}"));
            for e in events {
                keys.insert(e.stream.to_string());
            }
        }
        Input::Get { .. } => {}
        Input::ReadStream { stream, .. } | Input::StreamVersion { stream } => {
            keys.insert(stream.to_string());
        }
        Input::ReadPartition { partition, .. } | Input::PartitionSequence { partition } => {
            keys.insert(format!("p{partition}"));
        }
    }
    if let Some(Output::Events { events, .. }) = &op.output {
        for e in events {
            keys.insert(format!("p{}", e.partition));
            if let Some(s) = e.stream {
                keys.insert(s.to_string());
            }
        }
    }
    keys
}

fn time(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
}

/// Lines around `violation`, oldest first; operations it names are marked `>>`.
pub fn excerpt(history: &History, violation: &Violation) -> Vec<String> {
    let named: BTreeSet<u64> = violation.ops.iter().copied().collect();
    let mut lines: Vec<(u64, String)> = Vec::new();
    if named.is_empty() {
        // Nothing to centre on but a moment (or the end): show faults and recoveries then.
        let at = violation
            .at_ns
            .or_else(|| history.faults.last().map(|f| f.at_ns))
            .unwrap_or(0);
        let near = |t: u64| t + 2 * FAULT_MARGIN_NS >= at && t <= at + FAULT_MARGIN_NS;
        for r in history.recoveries.iter().filter(|r| near(r.at_ns)) {
            lines.push((r.at_ns, recovery_line(r)));
        }
        for f in history.faults.iter().filter(|f| near(f.at_ns)) {
            lines.push((f.at_ns, fault_line(f)));
        }
        let ops: Vec<&Op> = history.ops.iter().filter(|op| near(op.invoke_ns)).collect();
        for op in &ops[ops.len().saturating_sub(6)..] {
            lines.push((op.invoke_ns, format!("   {}", op.render())));
        }
        lines.sort_by_key(|(t, _)| *t);
        return lines.into_iter().map(|(_, l)| l).collect();
    }
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut node = None;
    for id in &named {
        if let Some(op) = history.ops.get(*id as usize) {
            wanted.extend(keys(op));
            node = Some(op.node);
        }
    }
    let related: Vec<&Op> = history
        .ops
        .iter()
        .filter(|op| {
            named.contains(&op.id)
                || (Some(op.node) == node && keys(op).iter().any(|k| wanted.contains(k)))
        })
        .collect();
    let mut shown = BTreeSet::new();
    for (i, op) in related.iter().enumerate() {
        if named.contains(&op.id) {
            let from = i.saturating_sub(BEFORE);
            let to = (i + AFTER + 1).min(related.len());
            shown.extend(from..to);
        }
    }
    let (mut first, mut last) = (u64::MAX, 0);
    for &i in &shown {
        let op = related[i];
        first = first.min(op.invoke_ns);
        last = last.max(op.complete_ns.unwrap_or(op.invoke_ns));
        let mark = if named.contains(&op.id) { ">> " } else { "   " };
        lines.push((op.invoke_ns, format!("{mark}{}", op.render())));
    }
    for f in &history.faults {
        if f.at_ns + FAULT_MARGIN_NS >= first && f.at_ns <= last + FAULT_MARGIN_NS {
            lines.push((f.at_ns, fault_line(f)));
        }
    }
    for r in &history.recoveries {
        if r.at_ns + FAULT_MARGIN_NS >= first && r.at_ns <= last + FAULT_MARGIN_NS {
            lines.push((r.at_ns, recovery_line(r)));
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    lines.into_iter().map(|(_, l)| l).collect()
}

fn fault_line(f: &crate::history::FaultRecord) -> String {
    format!(
        "   [{}] fault {}",
        time(f.at_ns),
        serde_json::to_string(&f.action).unwrap_or_default()
    )
}

fn recovery_line(r: &crate::history::Recovery) -> String {
    let what = match &r.error {
        None => format!(
            "opened, cut {} torn byte(s), rebuilt {} index(es){}",
            r.truncated_bytes,
            r.rebuilt_indexes,
            if r.broken_claims.is_empty() {
                String::new()
            } else {
                format!("; broken claims: {}", r.broken_claims.join("; "))
            }
        ),
        Some((class, reason)) => format!("failed ({class:?}): {reason}"),
    };
    let last = if r.is_final { " (final)" } else { "" };
    format!(
        "   [{}] recovery node {}{last}: {what}",
        time(r.at_ns),
        r.node
    )
}
