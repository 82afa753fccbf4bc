//! A polynomial pass over one register partition, run before the search.
//!
//! It proves common anomalies outright (so the search never runs on them)
//! and tightens `info` operations so the search has fewer choices:
//!
//! - a read of a value no operation ever wrote;
//! - a read of a value whose every possible writer began after the read ended;
//! - a read of "absent" after a write had certainly completed (no deletes);
//! - a stale read: a value with a single writer W, certainly overwritten by
//!   a definite write W2 (W ended before W2 began, W2 ended before the read
//!   began), cannot be read afterwards. Needs values unique per key only in
//!   the sense that W is the *only* writer of that value, which is checked.
//!
//! Bounding `info` writes: an indefinite op O that installs value v and is
//! linearized after the return of every op that *observes* v (reads of v,
//! cas from v) could be removed from the linearization without changing any
//! other op's legality (the ops between O and the next write can only be
//! no-op indefinite cases, which can be moved to the end). So O may be given
//! the return bound T = max(observer returns) and dropped when the search
//! reaches T; with no observer (or T before O began) O is removed. This
//! turns the "hundreds of concurrent info writes" that make exhaustive search
//! explode into a handful of short-lived optional ops.

use crate::models::RegOp;
use crate::search::SearchOp;

/// An anomaly proven without search; op indices are partition-local.
#[derive(Debug, Clone, PartialEq)]
pub struct Proven {
    pub kind: &'static str,
    pub ops: Vec<usize>,
    pub explanation: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepassStats {
    /// Indefinite ops removed because no one could observe them.
    pub removed: usize,
    /// Indefinite ops given a finite bound.
    pub bounded: usize,
}

/// `describe(v)` renders a value id for explanations.
pub fn run(
    ops: &[RegOp],
    search: &mut [SearchOp],
    keep: &mut [bool],
    describe: &dyn Fn(u32) -> String,
) -> Result<PrepassStats, Proven> {
    let n = ops.len();
    let nvals = crate::models::value_count(ops);
    let mut writers: Vec<Vec<usize>> = vec![Vec::new(); nvals];
    for (i, o) in ops.iter().enumerate() {
        if let Some(v) = o.writes() {
            writers[v as usize].push(i);
        }
    }
    let definite = |i: usize| !search[i].optional;

    // Definite writers of a non-null value, sorted by call, with the suffix
    // minimum of their returns: "the earliest a definite write that began
    // after t has certainly finished".
    let mut def_writers: Vec<usize> = (0..n)
        .filter(|&i| definite(i) && ops[i].writes().is_some_and(|v| v != 0))
        .collect();
    def_writers.sort_by_key(|&i| search[i].call);
    let mut suffix_min: Vec<(u64, usize)> = vec![(u64::MAX, usize::MAX); def_writers.len() + 1];
    for k in (0..def_writers.len()).rev() {
        let w = def_writers[k];
        suffix_min[k] = suffix_min[k + 1].min((search[w].ret, w));
    }
    let first_done_after = |t: u64| -> (u64, usize) {
        let k = def_writers.partition_point(|&w| search[w].call <= t);
        suffix_min[k]
    };
    let earliest_done = suffix_min[0];

    for (r, o) in ops.iter().enumerate() {
        let RegOp::Read(v) = *o else { continue };
        debug_assert!(definite(r), "only ok reads reach the checker");
        let (rc, rr) = (search[r].call, search[r].ret);
        if v == 0 {
            if earliest_done.0 < rc {
                let w = earliest_done.1;
                return Err(Proven {
                    kind: "absent-after-write",
                    ops: vec![w, r],
                    explanation: format!(
                        "the read found the key absent, but a write of {} had already completed before the read began, and nothing deletes keys",
                        describe(ops[w].writes().unwrap_or(0))
                    ),
                });
            }
            continue;
        }
        let ws = &writers[v as usize];
        if ws.is_empty() {
            return Err(Proven {
                kind: "read-unwritten",
                ops: vec![r],
                explanation: format!(
                    "the read returned {}, a value no operation ever wrote",
                    describe(v)
                ),
            });
        }
        if ws.iter().all(|&w| search[w].call > rr) {
            return Err(Proven {
                kind: "read-from-future",
                ops: vec![r, ws[0]],
                explanation: format!(
                    "the read returned {}, but every write of that value began after the read had ended",
                    describe(v)
                ),
            });
        }
        if let [w] = ws[..] {
            if definite(w) {
                let (done, w2) = first_done_after(search[w].ret);
                if done < rc {
                    return Err(Proven {
                        kind: "stale-read",
                        ops: vec![w, w2, r],
                        explanation: format!(
                            "the read returned {}, but that value's only write had completed before a write of {} began, which completed before the read began: the value was certainly overwritten",
                            describe(v),
                            describe(ops[w2].writes().unwrap_or(0))
                        ),
                    });
                }
            }
        }
    }

    // Bound or remove indefinite writers.
    let mut latest_observer: Vec<u64> = vec![0; nvals];
    let mut has_observer = vec![false; nvals];
    for (i, o) in ops.iter().enumerate() {
        let v = match *o {
            RegOp::Read(v) => v,
            RegOp::Cas(a, _, _) => a,
            RegOp::Write(_) => continue,
        };
        has_observer[v as usize] = true;
        latest_observer[v as usize] = latest_observer[v as usize].max(search[i].ret);
    }
    let mut stats = PrepassStats::default();
    for i in 0..n {
        if !search[i].optional {
            continue;
        }
        let Some(v) = ops[i].writes() else { continue };
        let v = v as usize;
        if !has_observer[v] || latest_observer[v] < search[i].call {
            keep[i] = false;
            stats.removed += 1;
        } else if latest_observer[v] < search[i].ret {
            search[i].ret = latest_observer[v];
            stats.bounded += 1;
        }
    }
    Ok(stats)
}
