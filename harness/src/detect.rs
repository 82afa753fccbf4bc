//! When a failing run first failed: the shortest prefix of its history
//! that the workload's checkers already find invalid.
//!
//! A checker names one anomaly per key, or a handful of cycles of one
//! strongly connected component, and which ones it names is an accident
//! of its search order: a run whose first stale read came at 3 s can be
//! reported by a cycle completed at 40 s. How long a run had to last to
//! fail is a property of the history, so it is measured on the history:
//! cut it after each op's completion and bisect for the first cut the
//! checkers reject. Safety violations only accumulate (an op added to a
//! history cannot explain away an anomaly before it), so the cuts are
//! monotone; a cut whose check runs out of time counts as not failing.

use faultline_checker::compose::{self, Input};
use faultline_checker::history::{self, EventType, LinedEvent};
use faultline_checker::Verdict;
use std::time::Duration;

use faultline_rundir::TestConfig;
use faultline_rundir::{Results, RunDir};

/// Bisection over cut points takes about log2(ops) checks; this bounds
/// them whatever the history's size.
const MAX_CHECKS: usize = 40;

/// When a failing run first failed, in seconds from its start: the
/// earlier of its shortest invalid prefix and its first Raft violation.
/// Falls back to the anomalies its checkers named when the history
/// cannot be read back.
/// Err when a checker's result cannot be read back as it was written.
pub fn first_failure_s(dir: &RunDir, results: &Results) -> anyhow::Result<Option<f64>> {
    let prefix = crate::options::load_config(dir)
        .ok()
        .and_then(|cfg| first_invalid_prefix_ns(dir, &cfg).ok().flatten());
    let violation = results
        .first_violation_ns(dir)
        .map_err(anyhow::Error::msg)?;
    let exact = [prefix, violation].into_iter().flatten().min();
    if let Some(ns) = exact {
        return Ok(Some(ns as f64 / 1e9));
    }
    let named = results.detection(dir).map_err(anyhow::Error::msg)?;
    Ok(named.map(|d| d.complete_s))
}

/// The time (ns since the run started) of the op completion that ends the
/// shortest invalid prefix of the run's history, by the workload's own
/// checkers (not the Raft invariants: their first violation is already
/// exact, its trace line). None if even the whole history is not invalid.
pub fn first_invalid_prefix_ns(dir: &RunDir, cfg: &TestConfig) -> anyhow::Result<Option<u64>> {
    let events = dir.load_history()?;
    let checkers = cfg.workload().checkers();
    let time_limit = Duration::from_secs_f64(cfg.check_time_limit_s);
    let invalid = |end: usize| -> anyhow::Result<bool> {
        let ops = history::pair("history", &events[..end])?;
        let input = Input {
            ops: &ops,
            traces: None,
            time_limit: Some(time_limit),
            consistency_model: cfg.consistency_model(),
        };
        let results = compose::run(&checkers, &input)?;
        Ok(results.iter().any(|r| r.verdict == Verdict::Invalid))
    };
    Ok(bisect(&events, invalid, MAX_CHECKS)?.map(|end| events[end - 1].1.time))
}

/// The shortest prefix `events[..end]`, ending just after a client's
/// completion, for which `invalid(end)` holds, found with at most
/// `max_checks` calls. None if the whole history is not invalid.
fn bisect(
    events: &[LinedEvent],
    mut invalid: impl FnMut(usize) -> anyhow::Result<bool>,
    max_checks: usize,
) -> anyhow::Result<Option<usize>> {
    let cuts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, (_, e))| e.process.is_client() && e.kind != EventType::Invoke)
        .map(|(i, _)| i + 1)
        .collect();
    if cuts.is_empty() || !invalid(events.len())? {
        return Ok(None);
    }
    // Invariant: cuts[hi] is invalid, every cut below lo is not.
    let (mut lo, mut hi) = (0, cuts.len() - 1);
    for _ in 1..max_checks {
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        if invalid(cuts[mid])? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(cuts[hi]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<LinedEvent> {
        (0..n)
            .map(|i| {
                let kind = if i % 2 == 0 { "invoke" } else { "ok" };
                let line = format!(
                    r#"{{"index":{i},"time":{},"process":1,"type":"{kind}","f":"read","value":null}}"#,
                    i * 10
                );
                (i + 1, serde_json::from_str(&line).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_first_failing_cut_is_found_in_logarithmic_checks() {
        let ev = events(2000);
        let mut checks = 0;
        // Invalid from the completion at index 701 on.
        let found = bisect(
            &ev,
            |end| {
                checks += 1;
                Ok(end > 701)
            },
            40,
        )
        .unwrap();
        assert_eq!(found, Some(702), "the prefix ends just after index 701");
        assert!(checks <= 12, "{checks} checks");
        assert_eq!(bisect(&ev, |_| Ok(false), 40).unwrap(), None);
        // Invalid from the start: the first completion.
        assert_eq!(bisect(&ev, |_| Ok(true), 40).unwrap(), Some(2));
        assert_eq!(bisect(&[], |_| Ok(true), 40).unwrap(), None);
    }
}
