//! The set-full check of Maelstrom's `broadcast` and `g-set` workloads:
//! every element that was acknowledged (or that any read returned) must be
//! in every node's last read, and no read may return an element nobody
//! added. Reads that miss an acknowledged element earlier are stale, which
//! an eventually consistent set allows; how long each element took to be
//! seen everywhere is reported, not judged.

use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::compose::{Checker, CheckerResult, Input};
use crate::history::{Op, Outcome};
use crate::{CheckError, Verdict};

/// Elements are compared by their JSON text (`1` and `"1"` differ).
type Element = String;

/// Judges adds (`add_f`, the element in the input) against reads (`read`,
/// the elements in the output).
pub struct SetFull {
    pub add_f: &'static str,
}

/// Most elements listed per category in the report.
const MAX_LISTED: usize = 50;

#[derive(Debug, Serialize)]
struct Report {
    attempted: usize,
    acknowledged: usize,
    /// Per node, acknowledged or once-read elements its last read lacks.
    lost: BTreeMap<String, Vec<Value>>,
    lost_count: usize,
    /// Elements a read returned that no add ever asked for.
    unexpected: Vec<Value>,
    /// Reads (ok) that began after an element was acknowledged and lack it.
    stale_reads: usize,
    /// Adds that failed or timed out and were never read: allowed.
    never_read: usize,
    /// From acknowledgement to the end of the last read that missed it.
    stable_latency_ms_median: f64,
    stable_latency_ms_max: f64,
    /// Each node's last final read (its last read, in a history that
    /// marks none final): when it ended and how many elements it held.
    final_reads: BTreeMap<String, (f64, usize)>,
    /// Whether the history marks its final reads (`"final":true`).
    final_reads_marked: bool,
    /// Reads whose answer is not a list.
    malformed_reads: usize,
}

fn elements(v: &Value) -> Option<Vec<Element>> {
    v.as_array()
        .map(|a| a.iter().map(|e| e.to_string()).collect())
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

impl Checker for SetFull {
    fn name(&self) -> &'static str {
        crate::names::SET_FULL
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let adds: Vec<&Op> = input.ops.iter().filter(|o| o.f == self.add_f).collect();
        let ok_reads: Vec<&Op> = input
            .ops
            .iter()
            .filter(|o| o.f == "read" && o.outcome == Outcome::Ok)
            .collect();
        let reads: Vec<(&Op, Vec<Element>)> = ok_reads
            .iter()
            .filter_map(|o| elements(&o.output).map(|e| (*o, e)))
            .collect();
        let malformed_reads = ok_reads.len() - reads.len();
        if adds.is_empty() && reads.is_empty() {
            return Ok(None);
        }
        let mut acked: HashMap<Element, u64> = HashMap::new();
        let mut attempted: BTreeSet<Element> = BTreeSet::new();
        for a in &adds {
            let e = a.input.to_string();
            attempted.insert(e.clone());
            if let (Outcome::Ok, Some(t)) = (a.outcome, a.complete_time) {
                let at = acked.entry(e).or_insert(t);
                *at = (*at).min(t);
            }
        }
        let mut seen: BTreeSet<Element> = BTreeSet::new();
        let mut last: BTreeMap<String, (u64, &Vec<Element>)> = BTreeMap::new();
        let finals = crate::history::has_final_reads(input.ops);
        for (op, els) in &reads {
            seen.extend(els.iter().cloned());
            if finals && !op.final_read {
                continue;
            }
            let node = op.node.clone().unwrap_or_else(|| "?".into());
            let t = op.returned_time.unwrap_or(op.invoke_time);
            if last.get(&node).is_none_or(|(lt, _)| *lt <= t) {
                last.insert(node, (t, els));
            }
        }
        let must: BTreeSet<&Element> = acked.keys().chain(seen.iter()).collect();
        let mut lost: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut lost_count = 0;
        for (node, (_, els)) in &last {
            let have: BTreeSet<&Element> = els.iter().collect();
            let missing: Vec<Value> = must
                .iter()
                .filter(|e| !have.contains(**e))
                .map(|e| parse(e))
                .collect();
            if !missing.is_empty() {
                lost_count += missing.len();
                lost.insert(node.clone(), missing.into_iter().take(MAX_LISTED).collect());
            }
        }
        let unexpected: Vec<Value> = seen
            .iter()
            .filter(|e| !attempted.contains(*e))
            .take(MAX_LISTED)
            .map(|e| parse(e))
            .collect();
        let (stale_reads, latencies) = staleness(&acked, &reads);
        let never_read = attempted
            .iter()
            .filter(|e| !acked.contains_key(*e) && !seen.contains(*e))
            .count();
        let report = Report {
            attempted: attempted.len(),
            acknowledged: acked.len(),
            lost_count,
            lost,
            unexpected,
            stale_reads,
            never_read,
            stable_latency_ms_median: quantile(&latencies, 0.5),
            stable_latency_ms_max: quantile(&latencies, 1.0),
            final_reads: last
                .iter()
                .map(|(n, (t, els))| (n.clone(), (*t as f64 / 1e9, els.len())))
                .collect(),
            malformed_reads,
            final_reads_marked: finals,
        };
        Ok(Some(verdict(report)))
    }
}

fn verdict(r: Report) -> CheckerResult {
    let (verdict, summary) = if !r.unexpected.is_empty() {
        (
            Verdict::Invalid,
            format!(
                "reads returned {} element(s) nobody added, e.g. {}",
                r.unexpected.len(),
                r.unexpected[0]
            ),
        )
    } else if r.lost_count > 0 {
        let (node, els) = r.lost.iter().next().expect("lost is non-empty");
        (
            Verdict::Invalid,
            format!(
                "{} lost element(s): acknowledged or read, then missing from a node's final read (e.g. {node} lacks {})",
                r.lost_count, els[0]
            ),
        )
    } else if r.malformed_reads > 0 {
        (
            Verdict::Invalid,
            format!(
                "{} read(s) answered with something other than a list",
                r.malformed_reads
            ),
        )
    } else if r.final_reads.is_empty() {
        (
            Verdict::Unknown,
            "no successful final read: what the nodes kept is not known".to_string(),
        )
    } else if r.acknowledged == 0 && r.final_reads.values().all(|(_, n)| *n == 0) {
        (
            Verdict::Unknown,
            format!(
                "no add was acknowledged ({} attempted) and no read held an element: nothing could have been lost",
                r.attempted
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "all {} acknowledged element(s) in every node's final read ({} stale read(s); stable after {:.0} ms median, {:.0} ms max)",
                r.acknowledged, r.stale_reads, r.stable_latency_ms_median, r.stable_latency_ms_max
            ),
        )
    };
    CheckerResult::new(crate::names::SET_FULL, verdict, summary, &r)
}

/// How many reads began after an element was acknowledged and lack it,
/// and per acknowledged element the time from its acknowledgement to the
/// end of the last read that missed it (0 when none did), in ms.
fn staleness(acked: &HashMap<Element, u64>, reads: &[(&Op, Vec<Element>)]) -> (usize, Vec<f64>) {
    let mut stale = 0;
    let mut until: HashMap<&Element, u64> = HashMap::new();
    for (op, els) in reads {
        let have: BTreeSet<&Element> = els.iter().collect();
        let end = op.returned_time.unwrap_or(op.invoke_time);
        let mut missed = false;
        for (e, &at) in acked {
            if at < op.invoke_time && !have.contains(e) {
                missed = true;
                let u = until.entry(e).or_insert(at);
                *u = (*u).max(end);
            }
        }
        stale += missed as usize;
    }
    let latencies = acked
        .iter()
        .map(|(e, at)| (until.get(e).copied().unwrap_or(*at) - at) as f64 / 1e6)
        .collect();
    (stale, latencies)
}

/// The q-quantile of `xs` (0 for none).
pub(crate) fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}
