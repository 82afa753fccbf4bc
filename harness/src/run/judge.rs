//! The check phase: the workload's checkers and the Raft-invariant checker
//! run over the run's files (read back from disk like any other history),
//! the liveness phase's result joins them, and their verdicts combine into
//! the run's verdict and one-line summary. `faultline check RUN_DIR` calls
//! the same function, so it gives the verdict the run gave.

use anyhow::Context;
use faultline_checker::compose::{self, Input, RaftInvariants};
use faultline_checker::{history, Checker, CheckerResult, Outcome, Verdict};
use std::time::Duration;

use faultline_rundir::TestConfig;
use faultline_rundir::{OpCounts, RunDir, TraceLine};

/// Every checker's result for the run in `dir`, then `liveness` (the one
/// result that cannot be recomputed from files), in that order.
pub fn check(
    dir: &RunDir,
    cfg: &TestConfig,
    liveness: Option<CheckerResult>,
) -> anyhow::Result<(OpCounts, Vec<CheckerResult>)> {
    let events = dir.load_history().context("reading back history.jsonl")?;
    let name = dir.file(faultline_rundir::HISTORY).display().to_string();
    let ops = history::pair(&name, &events)?;
    let traces = dir.load_traces_text()?;
    // Only node-sent events count: the harness's own start/exit lines are
    // there for every node, Raft or not.
    let traced = traces.lines().any(|l| {
        serde_json::from_str::<TraceLine>(l)
            .is_ok_and(|t| t.fields.get("source").and_then(|s| s.as_str()) != Some("harness"))
    });
    let traces_name = dir.file(faultline_rundir::TRACES).display().to_string();
    let input = Input {
        ops: &ops,
        traces: traced.then_some((traces_name.as_str(), traces.as_str())),
        time_limit: Some(Duration::from_secs_f64(cfg.check_time_limit_s)),
        consistency_model: cfg.consistency_model(),
    };
    let mut checkers: Vec<Box<dyn Checker>> = cfg.workload().checkers();
    checkers.push(Box::new(RaftInvariants));
    let mut results = compose::run(&checkers, &input)?;
    results.extend(liveness);
    let plain: Vec<faultline_checker::Event> = events.into_iter().map(|(_, e)| e).collect();
    Ok((counts(&ops, &plain, &traces), results))
}

fn counts(
    ops: &[faultline_checker::Op],
    events: &[faultline_checker::Event],
    traces: &str,
) -> OpCounts {
    let periods = faultline_nemesis::action::periods(events);
    let first_fault = periods.iter().map(|p| p.start.time).min();
    let leader_changes =
        first_fault.and_then(|t| faultline_checker::raft::leader_changes(traces, t));
    let spans: Vec<(u64, u64)> = periods
        .iter()
        .map(|p| (p.start.time, p.end.map_or(u64::MAX, |e| e.time)))
        .collect();
    let healed = spans.iter().map(|s| s.1).max();
    let acked = || {
        ops.iter()
            .filter_map(|o| o.complete_time.filter(|_| o.outcome == Outcome::Ok))
    };
    let during = acked()
        .filter(|t| spans.iter().any(|(a, b)| a <= t && t <= b))
        .count();
    let after = healed.map(|h| acked().filter(|t| *t > h).count());
    let n = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let mut latency_ms: Vec<f64> = ops
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .filter_map(|op| op.complete_time.map(|t| (t - op.invoke_time) as f64 / 1e6))
        .collect();
    latency_ms.sort_by(f64::total_cmp);
    let q = |q: f64| {
        latency_ms
            .get(((latency_ms.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    OpCounts {
        invoked: ops.len(),
        ok: n(Outcome::Ok),
        fail: n(Outcome::Fail),
        info: n(Outcome::Info),
        latency_ms_median: q(0.5),
        latency_ms_p99: q(0.99),
        latency_ms_max: q(1.0),
        ok_during_faults: healed.map(|_| during),
        ok_after_faults: after,
        leader_changes,
    }
}

/// The combined verdict and the summary of the checker that decided it:
/// the first invalid one, else the first unknown one, else the first.
pub fn verdict(results: &[CheckerResult]) -> (Verdict, String) {
    let verdict = compose::combined(results);
    let decisive = results
        .iter()
        .find(|r| r.verdict == verdict)
        .or(results.first());
    (
        verdict,
        decisive.map(|r| r.summary.clone()).unwrap_or_default(),
    )
}
