//! **After faults heal, writes make progress within a bound.**
//!
//! Once every fault stops and every node has crashed and recovered one last time, a probe
//! append on each node must succeed within the scenario's `liveness_within`; and every client
//! must have finished its last operation within the `drain` bound after the workload stopped
//! (no operation hangs forever). A node that refuses to open because corruption faults
//! damaged its disk is exempt from the probe in those scenarios (it reported the damage).

use super::{CheckInput, Checker, Facts, Findings};

pub const CHECKER: Checker = Checker {
    name: "progress-after-heal",
    guarantee: "after faults heal, writes make progress within a bound",
    run,
};

fn run(input: &CheckInput<'_>, _facts: &Facts<'_>, f: &mut Findings) {
    let within = input.derived.check.liveness_within_ns;
    for p in &input.history.probes {
        f.checked();
        if p.refused_corrupt && input.derived.check.corruption_allowed {
            continue;
        }
        match p.succeeded_after_ns {
            Some(ns) if ns <= within => {}
            Some(ns) => f.violation(
                Some(p.node),
                vec![],
                format!(
                    "the probe append succeeded only after {ns}ns ({} attempts), beyond the bound of {within}ns",
                    p.attempts
                ),
            ),
            None => f.violation(
                Some(p.node),
                vec![],
                format!(
                    "no probe append succeeded within {within}ns after healing ({} attempts)",
                    p.attempts
                ),
            ),
        }
    }
    f.checked();
    if input.hung_clients > 0 {
        let pending: Vec<u64> = input
            .history
            .ops
            .iter()
            .filter(|op| op.complete_ns.is_none())
            .map(|op| op.id)
            .take(10)
            .collect();
        f.violation(
            None,
            pending,
            format!(
                "{} client(s) were still inside an operation {}ns after the workload stopped",
                input.hung_clients, input.derived.check.drain_ns
            ),
        );
    }
}
