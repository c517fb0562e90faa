//! **Recovery accepts whatever crashes leave behind, and does what it reports.**
//!
//! A disk that only crashes touched (lost, torn or kept unsynced writes, unsynced directory
//! entries) must always open: refusing it as corrupt would turn a power cut into an outage. A
//! configuration or layout error is never acceptable. After healing, the final recovery must
//! succeed unless corruption faults damaged the disk, in which case it may refuse with a
//! corruption error, never with anything else.
//!
//! And the report must be true: a torn tail it says it cut is gone, durably, from the segment
//! file. A tail left in place is garbage the next writes land next to, and a second crash can
//! resurrect or misparse it.

use super::{CheckInput, Checker, Facts, Findings};
use crate::history::ErrorClass;

pub const CHECKER: Checker = Checker {
    name: "recovery-honest",
    guarantee: "recovery accepts what crashes leave and does what it reports",
    run,
};

fn run(input: &CheckInput<'_>, _facts: &Facts<'_>, f: &mut Findings) {
    let corruption = input.derived.check.corruption_allowed;
    let io_faults = input.derived.disk.read_error > 0.0
        || input.derived.disk.write_error > 0.0
        || input.derived.disk.sync_error > 0.0;
    for r in &input.history.recoveries {
        f.checked();
        for claim in &r.broken_claims {
            f.violation_at(
                r.node,
                r.at_ns,
                format!("recovery at {}ns: {claim}", r.at_ns),
            );
        }
        let Some((class, reason)) = &r.error else {
            continue;
        };
        let allowed = match class {
            ErrorClass::Corrupt => corruption,
            // Before healing, I/O faults and a full disk may fail an open; it is retried.
            ErrorClass::Io => !r.is_final && io_faults,
            ErrorClass::StorageFull => !r.is_final,
            _ => false,
        };
        if !allowed {
            f.violation_at(
                r.node,
                r.at_ns,
                format!(
                    "{}recovery at {}ns refused to open the store ({class:?}): {reason}",
                    if r.is_final { "final " } else { "" },
                    r.at_ns
                ),
            );
        }
    }
}
