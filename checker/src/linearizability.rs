//! The linearizability checker: splits a history per key, runs the prepass
//! and the exact search on each partition in parallel, and explains the
//! first violation it finds.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::CheckError;
use crate::history::{Op, Outcome};
use crate::models::{self, HashedStringSpec, Interner, ModelKind, RegisterSpec, StringSpec};
use crate::search::{self, Budget, Stuck};
use crate::{prepass, unique, Verdict};

#[derive(Debug, Clone)]
pub struct Options {
    pub model: ModelKind,
    /// Wall-clock budget for the whole check; past it the verdict is unknown.
    pub time_limit: Option<Duration>,
    /// Memo entries per partition before giving up (a memory bound).
    pub max_memo_entries: Option<usize>,
    /// Try the unique-value fast path (`unique`) before the exact search.
    pub fast_path: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: ModelKind::LinKv,
            time_limit: None,
            max_memo_entries: Some(20_000_000),
            fast_path: true,
        }
    }
}

/// An op as shown in results.json and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpView {
    pub index: u64,
    pub complete_index: Option<u64>,
    pub process: String,
    pub f: String,
    pub key: Option<String>,
    pub input: Value,
    pub output: Value,
    pub outcome: Outcome,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
}

impl OpView {
    fn of(op: &Op) -> OpView {
        OpView {
            index: op.invoke_index,
            complete_index: op.complete_index,
            process: op.process.to_string(),
            f: op.f.clone(),
            key: op.key.clone(),
            input: op.input.clone(),
            output: op.output.clone(),
            outcome: op.outcome,
            invoke_time: op.invoke_time,
            complete_time: op.complete_time,
        }
    }

    /// `p3 cas [1,4] ok`, `p2 read → 7 ok`.
    pub fn describe(&self) -> String {
        let what = match (self.f.as_str(), self.outcome) {
            ("read" | "get", Outcome::Ok) => format!("{} → {}", self.f, self.output),
            (_, _) if self.input.is_null() => self.f.clone(),
            _ => format!("{} {}", self.f, self.input),
        };
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        format!("#{} p{} {what} ({outcome})", self.index, self.process)
    }
}

/// The smallest explanation of a violation we can give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub key: Option<String>,
    /// `stale-read`, `read-unwritten`, `read-from-future`,
    /// `absent-after-write` (proven by the prepass) or `no-linearization`.
    pub kind: String,
    pub summary: String,
    /// Why no order works.
    pub explanation: String,
    /// Every op involved, in invocation order.
    pub ops: Vec<OpView>,
    /// Model state before the op that cannot follow.
    pub state_before: Option<Value>,
    /// Length of the longest linearizable prefix found.
    pub linearized_prefix: Option<usize>,
    /// The last ops of that prefix (at most 8).
    pub prefix_tail: Vec<OpView>,
    /// The op that cannot follow.
    pub blocked: Option<OpView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnknownPartition {
    pub key: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checker: &'static str,
    pub model: &'static str,
    pub verdict: Verdict,
    pub ops: usize,
    pub partitions: usize,
    pub info_ops: usize,
    /// Indefinite ops the prepass removed or bounded.
    pub info_removed: usize,
    pub info_bounded: usize,
    /// Partitions the unique-value fast path decided (the rest went to the
    /// exact search).
    pub fast_path_partitions: usize,
    pub elapsed_ms: f64,
    pub anomaly: Option<Anomaly>,
    pub unknown: Vec<UnknownPartition>,
}

impl Anomaly {
    /// Every op involved, the blocked one included.
    pub fn all_ops(&self) -> impl Iterator<Item = &OpView> {
        self.ops.iter().chain(self.blocked.as_ref())
    }

    /// First invocation to last completion, in ns (an op that never
    /// completed counts at its invocation).
    pub fn span_ns(&self) -> (u64, u64) {
        let t0 = self.all_ops().map(|o| o.invoke_time).min().unwrap_or(0);
        let t1 = self
            .all_ops()
            .map(|o| o.complete_time.unwrap_or(o.invoke_time))
            .max()
            .unwrap_or(t0);
        (t0, t1)
    }
}

enum PartResult {
    Valid {
        removed: usize,
        bounded: usize,
        fast: bool,
    },
    Invalid(Box<Anomaly>),
    Unknown(String),
}

/// Checks a paired history.
pub fn check(ops: &[Op], opts: &Options) -> Result<Report, CheckError> {
    let start = Instant::now();
    let deadline = opts.time_limit.map(|d| start + d);
    // Partition in first-appearance order so results are deterministic.
    let mut parts: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    let mut by_key: std::collections::HashMap<Option<String>, usize> = Default::default();
    for (i, op) in ops.iter().enumerate() {
        let key = if opts.model.partitioned() {
            op.key.clone()
        } else {
            None
        };
        let p = *by_key.entry(key.clone()).or_insert_with(|| {
            parts.push((key, Vec::new()));
            parts.len() - 1
        });
        parts[p].1.push(i);
    }
    let cancel = AtomicBool::new(false);
    let budget = Budget {
        deadline,
        max_cache_entries: opts.max_memo_entries,
        cancel: Some(&cancel),
    };
    let results: Vec<Result<PartResult, CheckError>> = parts
        .par_iter()
        .map(|(key, idx)| {
            let r = check_partition(ops, key, idx, opts, &budget)?;
            if matches!(r, PartResult::Invalid(_)) {
                cancel.store(true, Ordering::Relaxed);
            }
            Ok(r)
        })
        .collect();
    let mut anomaly: Option<Anomaly> = None;
    let mut unknown = Vec::new();
    let (mut removed, mut bounded, mut fast_path_partitions) = (0, 0, 0);
    for ((key, _), r) in parts.iter().zip(results) {
        match r? {
            PartResult::Valid {
                removed: r,
                bounded: b,
                fast,
            } => {
                removed += r;
                bounded += b;
                fast_path_partitions += usize::from(fast);
            }
            PartResult::Invalid(a) => {
                // Report the violation that shows up earliest in the history.
                let first = |a: &Anomaly| a.ops.iter().map(|o| o.index).min();
                if anomaly.as_ref().is_none_or(|cur| first(&a) < first(cur)) {
                    anomaly = Some(*a);
                }
            }
            PartResult::Unknown(reason) => unknown.push(UnknownPartition {
                key: key.clone(),
                reason,
            }),
        }
    }
    let verdict = if anomaly.is_some() {
        // Partitions cancelled because another failed are not unknowns.
        unknown.clear();
        Verdict::Invalid
    } else if !unknown.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(Report {
        checker: crate::names::LINEARIZABILITY,
        model: opts.model.name(),
        verdict,
        ops: ops.len(),
        partitions: parts.len(),
        info_ops: ops.iter().filter(|o| o.outcome == Outcome::Info).count(),
        info_removed: removed,
        info_bounded: bounded,
        fast_path_partitions,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        anomaly,
        unknown,
    })
}

fn check_partition(
    ops: &[Op],
    key: &Option<String>,
    idx: &[usize],
    opts: &Options,
    budget: &Budget,
) -> Result<PartResult, CheckError> {
    let model = opts.model;
    let model_err = |i: usize, m: String| {
        CheckError::Model(format!(
            "line {} (history index {}): {m}",
            ops[i].line, ops[i].invoke_index
        ))
    };
    match model {
        ModelKind::Register | ModelKind::LinKv => {
            let mut interner = Interner::new_with_null();
            let mut reg = Vec::new();
            let mut search_ops = Vec::new();
            let mut source = Vec::new();
            for &i in idx {
                if let Some(r) =
                    models::register_op(&ops[i], &mut interner).map_err(|m| model_err(i, m))?
                {
                    reg.push(r);
                    search_ops.push(models::search_op(&ops[i]));
                    source.push(i);
                }
            }
            let mut keep = vec![true; reg.len()];
            let describe = |v: u32| interner.values[v as usize].to_string();
            let stats = match prepass::run(&reg, &mut search_ops, &mut keep, &describe) {
                Ok(s) => s,
                Err(p) => {
                    let involved: Vec<usize> = p.ops.iter().map(|&l| source[l]).collect();
                    let culprit = &ops[*involved.last().expect("a proven anomaly names ops")];
                    return Ok(PartResult::Invalid(Box::new(Anomaly {
                        key: key.clone(),
                        kind: p.kind.to_string(),
                        summary: format!(
                            "{}{}: {}",
                            key.as_ref()
                                .map(|k| format!("key {k}: "))
                                .unwrap_or_default(),
                            p.kind,
                            OpView::of(culprit).describe()
                        ),
                        explanation: p.explanation,
                        ops: views(ops, involved),
                        state_before: None,
                        linearized_prefix: None,
                        prefix_tail: Vec::new(),
                        blocked: Some(OpView::of(culprit)),
                    })));
                }
            };
            let (reg, search_ops, source) = retain(reg, search_ops, source, &keep);
            let mut spec = RegisterSpec::new(reg.clone());
            if opts.fast_path {
                if let unique::Fast::Valid(_) = unique::decide(&reg, &search_ops, &mut spec) {
                    return Ok(PartResult::Valid {
                        removed: stats.removed,
                        bounded: stats.bounded,
                        fast: true,
                    });
                }
            }
            let state_of = |s: u32| interner.values[s as usize].clone();
            Ok(match search::check(&search_ops, &mut spec, budget) {
                search::Outcome::Linearizable(_) => PartResult::Valid {
                    removed: stats.removed,
                    bounded: stats.bounded,
                    fast: false,
                },
                search::Outcome::Unknown(r) => PartResult::Unknown(r),
                search::Outcome::Illegal(stuck) => {
                    let stuck = clearer_stuck(&search_ops, &mut spec, budget).unwrap_or(stuck);
                    PartResult::Invalid(Box::new(explain(
                        ops,
                        key,
                        &source,
                        &stuck,
                        state_of(stuck.state),
                    )))
                }
            })
        }
        ModelKind::KvString => {
            let mut str_ops = Vec::new();
            let mut search_ops = Vec::new();
            let mut source = Vec::new();
            for &i in idx {
                if let Some(s) = models::string_op(&ops[i]).map_err(|m| model_err(i, m))? {
                    str_ops.push(s);
                    search_ops.push(models::search_op(&ops[i]));
                    source.push(i);
                }
            }
            let mut hashed = HashedStringSpec::new(&str_ops);
            let mut exact = StringSpec::new(str_ops);
            // A valid verdict is certified by replaying its witness on exact
            // strings; should fingerprints ever collide, the replay fails and
            // the exact search decides. An invalid verdict rests on two
            // independent 61-bit fingerprints plus lengths agreeing for
            // different strings, odds below 2^-100 per comparison.
            let outcome = match search::check(&search_ops, &mut hashed, budget) {
                search::Outcome::Linearizable(w) if !exact.replay(&w) => {
                    search::check(&search_ops, &mut exact, budget)
                }
                search::Outcome::Illegal(mut stuck) => {
                    stuck.state = exact.state_after(&stuck.prefix);
                    search::Outcome::Illegal(stuck)
                }
                o => o,
            };
            Ok(match outcome {
                search::Outcome::Linearizable(_) => PartResult::Valid {
                    removed: 0,
                    bounded: 0,
                    fast: false,
                },
                search::Outcome::Unknown(r) => PartResult::Unknown(r),
                search::Outcome::Illegal(stuck) => {
                    let state = exact.state_value(stuck.state);
                    PartResult::Invalid(Box::new(explain(ops, key, &source, &stuck, state)))
                }
            })
        }
    }
}

/// How long the explanation pass may take: the verdict is already known.
const EXPLAIN_BUDGET: Duration = Duration::from_millis(500);

/// Re-runs a failed search without dead-end pruning (bounded in time) for a
/// stuck point that names the op that really cannot follow.
fn clearer_stuck(
    search_ops: &[search::SearchOp],
    spec: &mut dyn search::Spec,
    budget: &Budget,
) -> Option<Stuck> {
    let deadline = Instant::now() + EXPLAIN_BUDGET;
    let b = Budget {
        deadline: Some(budget.deadline.map_or(deadline, |d| d.min(deadline))),
        ..budget.clone()
    };
    match search::check(search_ops, &mut search::NoPrune(spec), &b) {
        search::Outcome::Illegal(stuck) => Some(stuck),
        _ => None,
    }
}

fn retain<A, B>(
    a: Vec<A>,
    b: Vec<B>,
    c: Vec<usize>,
    keep: &[bool],
) -> (Vec<A>, Vec<B>, Vec<usize>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (((a, b), c), &k) in a.into_iter().zip(b).zip(c).zip(keep) {
        if k {
            out.0.push(a);
            out.1.push(b);
            out.2.push(c);
        }
    }
    out
}

fn views(ops: &[Op], mut idx: Vec<usize>) -> Vec<OpView> {
    idx.sort_by_key(|&i| ops[i].invoke_index);
    idx.dedup();
    idx.into_iter().map(|i| OpView::of(&ops[i])).collect()
}

fn explain(
    ops: &[Op],
    key: &Option<String>,
    source: &[usize],
    stuck: &Stuck,
    state: Value,
) -> Anomaly {
    const TAIL: usize = 8;
    let blocked = OpView::of(&ops[source[stuck.blocked]]);
    let tail_idx: Vec<usize> = stuck
        .prefix
        .iter()
        .rev()
        .take(TAIL)
        .rev()
        .map(|&l| source[l])
        .collect();
    let cand: Vec<usize> = stuck.candidates.iter().map(|&l| source[l]).collect();
    let mut involved = tail_idx.clone();
    involved.extend(cand.iter().copied());
    involved.push(source[stuck.blocked]);
    let cand_text = if cand.is_empty() {
        "no other op was pending".to_string()
    } else {
        format!(
            "none of the pending ops [{}] can go next either",
            cand.iter()
                .map(|&i| OpView::of(&ops[i]).describe())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Anomaly {
        key: key.clone(),
        kind: "no-linearization".to_string(),
        summary: format!(
            "{}no linearization: {} cannot take effect in state {}",
            key.as_ref().map(|k| format!("key {k}: ")).unwrap_or_default(),
            blocked.describe(),
            state
        ),
        explanation: format!(
            "the longest linearizable prefix has {} ops and leaves the state at {}; {} must take effect before it completes, but it is illegal in that state, and {}. Every other order was tried.",
            stuck.prefix.len(),
            state,
            blocked.describe(),
            cand_text
        ),
        ops: views(ops, involved),
        state_before: Some(state),
        linearized_prefix: Some(stuck.prefix.len()),
        prefix_tail: tail_idx.iter().map(|&i| OpView::of(&ops[i])).collect(),
        blocked: Some(blocked),
    }
}
