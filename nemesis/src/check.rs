//! What every schedule must be, drawn or written by hand: sorted, its
//! nodes within the cluster, each kind alternating start and end.

use crate::*;

/// A schedule is sorted by time, every target and link is among `n`
/// nodes, and per kind the faults alternate start and end, so every fault
/// is closed. A recorded schedule (test.json) is checked with this before
/// it is replayed.
pub fn check_schedule(steps: &[Step], n: usize) -> Result<(), String> {
    if let Some(w) = steps.windows(2).find(|w| w[0].at_ms > w[1].at_ms) {
        return Err(format!(
            "not sorted: {} ms comes after {} ms",
            w[1].at_ms, w[0].at_ms
        ));
    }
    let mut open = std::collections::BTreeSet::new();
    for s in steps {
        let (nodes, cut) = s.action.named();
        let bad_link = cut.iter().any(|&(a, b)| a >= n || b >= n || a == b);
        if nodes.iter().any(|&i| i >= n) || bad_link {
            return Err(format!(
                "{} at {} ms names a node beyond the {n} nodes (by index 0 to {}, or by name as test.json names them), or cuts a node from itself",
                s.action.name(),
                s.at_ms,
                n.saturating_sub(1)
            ));
        }
        let fresh = match s.action.phase() {
            Phase::Start => open.insert(s.action.kind()),
            Phase::End => open.remove(&s.action.kind()),
        };
        if !fresh {
            return Err(format!(
                "{} at {} ms does not alternate start and end",
                s.action.name(),
                s.at_ms
            ));
        }
    }
    match open.first() {
        Some(k) => Err(format!("a {k} fault is never ended")),
        None => Ok(()),
    }
}

/// `check_schedule`, for schedules this crate drew itself.
pub fn assert_well_formed(steps: &[Step], n: usize) {
    if let Err(e) = check_schedule(steps, n) {
        panic!("drew a malformed schedule: {e}");
    }
}
