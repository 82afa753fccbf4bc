//! Maelstrom's `g-counter` and `pn-counter`: a read can only return a sum
//! of adds that were invoked before it ended, and each node's last read
//! (after healing) must lie between the acknowledged adds plus every
//! negative indeterminate one and the acknowledged adds plus every positive
//! indeterminate one: any subset of the adds that may have happened.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::compose::{Checker, CheckerResult, Input};
use crate::history::{Op, Outcome};
use crate::{CheckError, Verdict};

pub struct Counter;

/// Most out-of-bounds reads listed.
const MAX_LISTED: usize = 20;

#[derive(Debug, Serialize)]
struct BadRead {
    node: Option<String>,
    time_s: f64,
    value: i64,
    lower: i64,
    upper: i64,
}

#[derive(Debug, Serialize)]
struct Report {
    adds_ok: usize,
    adds_indeterminate: usize,
    /// The band every final read must lie in.
    lower: i64,
    upper: i64,
    acknowledged_sum: i64,
    /// Each node's last read.
    final_reads: BTreeMap<String, i64>,
    /// Final reads outside [lower, upper].
    final_out_of_bounds: Vec<BadRead>,
    /// Reads during the run that no subset of the adds invoked so far
    /// could produce.
    impossible_reads: Vec<BadRead>,
    impossible_count: usize,
    /// Reads whose value is not an integer.
    malformed_reads: usize,
    /// Whether the history marks its final reads (`"final":true`); when it
    /// does, only they are held to the band.
    final_reads_marked: bool,
}

fn delta(op: &Op) -> Option<i64> {
    op.input.as_i64()
}

impl Checker for Counter {
    fn name(&self) -> &'static str {
        crate::names::COUNTER
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let adds: Vec<&Op> = input
            .ops
            .iter()
            .filter(|o| o.f == "add" && o.outcome != Outcome::Fail)
            .collect();
        let reads: Vec<&Op> = input
            .ops
            .iter()
            .filter(|o| o.f == "read" && o.outcome == Outcome::Ok)
            .collect();
        if reads.is_empty() && adds.is_empty() {
            return Ok(None);
        }
        let ok_sum: i64 = adds
            .iter()
            .filter(|a| a.outcome == Outcome::Ok)
            .filter_map(|a| delta(a))
            .sum();
        let maybe: Vec<i64> = adds
            .iter()
            .filter(|a| a.outcome == Outcome::Info)
            .filter_map(|a| delta(a))
            .collect();
        let lower = ok_sum + maybe.iter().filter(|d| **d < 0).sum::<i64>();
        let upper = ok_sum + maybe.iter().filter(|d| **d > 0).sum::<i64>();
        let mut report = Report {
            adds_ok: adds.len() - maybe.len(),
            adds_indeterminate: maybe.len(),
            lower,
            upper,
            acknowledged_sum: ok_sum,
            final_reads: BTreeMap::new(),
            final_out_of_bounds: Vec::new(),
            impossible_reads: Vec::new(),
            impossible_count: 0,
            malformed_reads: 0,
            final_reads_marked: crate::history::has_final_reads(input.ops),
        };
        judge_reads(&adds, &reads, &mut report);
        Ok(Some(verdict(report)))
    }
}

/// Fills the final reads and the impossible ones. Reads during the run
/// are bounded by the adds invoked before they ended: at most the
/// positives, at least the negatives.
fn judge_reads(adds: &[&Op], reads: &[&Op], r: &mut Report) {
    // Prefix sums over adds by invocation time.
    let mut by_invoke: Vec<(u64, i64)> = adds
        .iter()
        .filter_map(|a| delta(a).map(|d| (a.invoke_time, d)))
        .collect();
    by_invoke.sort_unstable();
    let (mut pos, mut neg) = (vec![0i64], vec![0i64]);
    for (_, d) in &by_invoke {
        pos.push(pos.last().unwrap() + d.max(&0));
        neg.push(neg.last().unwrap() + d.min(&0));
    }
    let mut last: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for op in reads {
        let Some(v) = op.output.as_i64() else {
            r.malformed_reads += 1;
            continue;
        };
        let end = op.returned_time.unwrap_or(op.invoke_time);
        let n = by_invoke.partition_point(|(t, _)| *t <= end);
        let (lo, hi) = (neg[n], pos[n]);
        if v < lo || v > hi {
            r.impossible_count += 1;
            if r.impossible_reads.len() < MAX_LISTED {
                r.impossible_reads.push(bad(op, v, lo, hi));
            }
        }
        if r.final_reads_marked && !op.final_read {
            continue;
        }
        let node = op.node.clone().unwrap_or_else(|| "?".into());
        if last.get(&node).is_none_or(|(t, _)| *t <= end) {
            last.insert(node, (end, v));
        }
    }
    for (node, (end, v)) in last {
        r.final_reads.insert(node.clone(), v);
        if v < r.lower || v > r.upper {
            r.final_out_of_bounds.push(BadRead {
                node: Some(node),
                time_s: end as f64 / 1e9,
                value: v,
                lower: r.lower,
                upper: r.upper,
            });
        }
    }
}

fn bad(op: &Op, value: i64, lower: i64, upper: i64) -> BadRead {
    BadRead {
        node: op.node.clone(),
        time_s: op.returned_time.unwrap_or(op.invoke_time) as f64 / 1e9,
        value,
        lower,
        upper,
    }
}

fn verdict(r: Report) -> CheckerResult {
    let (verdict, summary) = if let Some(b) = r.final_out_of_bounds.first() {
        (
            Verdict::Invalid,
            format!(
                "{} node(s) ended with a value no subset of the adds gives: {} read {} (allowed {}..={})",
                r.final_out_of_bounds.len(),
                b.node.as_deref().unwrap_or("?"),
                b.value,
                b.lower,
                b.upper
            ),
        )
    } else if let Some(b) = r.impossible_reads.first() {
        (
            Verdict::Invalid,
            format!(
                "{} read(s) returned a value no adds invoked so far give: {} at {:.2} s (allowed {}..={})",
                r.impossible_count, b.value, b.time_s, b.lower, b.upper
            ),
        )
    } else if r.malformed_reads > 0 {
        (
            Verdict::Invalid,
            format!(
                "{} read(s) returned a value that is not an integer",
                r.malformed_reads
            ),
        )
    } else if r.final_reads.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "no successful final read ({} acknowledged add(s)): what the nodes kept is not known",
                r.adds_ok
            ),
        )
    } else if r.adds_ok == 0 && r.adds_indeterminate == 0 {
        (
            Verdict::Unknown,
            "no add was acknowledged or left indeterminate: every read of 0 is right, and nothing could have been lost".to_string(),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "every node's final read within {}..={} ({} acknowledged, {} indeterminate add(s))",
                r.lower, r.upper, r.adds_ok, r.adds_indeterminate
            ),
        )
    };
    CheckerResult::new(crate::names::COUNTER, verdict, summary, &r)
}
