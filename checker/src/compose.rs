//! Checkers composed through one interface, as Maelstrom's
//! `checker/compose`: each has a name and turns a run's data into a
//! verdict, a one-line summary and details (its full report). A workload
//! names the checkers that judge it; the harness runs whichever apply and
//! combines their verdicts, so a new checker plugs in without touching the
//! run.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

use crate::history::{Op, Outcome};
use crate::{linearizability, raft, CheckError, ModelKind, Verdict};

pub use crate::names;

/// What a checker may look at.
pub struct Input<'a> {
    /// The client operations, paired.
    pub ops: &'a [Op],
    /// traces.jsonl (its name for error messages, and its text), if any
    /// node wrote trace events.
    pub traces: Option<(&'a str, &'a str)>,
    /// Past this the checker answers `unknown`.
    pub time_limit: Option<Duration>,
    /// What transactions are held to (default strict-serializable).
    pub consistency_model: Option<crate::txn::ConsistencyModel>,
}

/// One checker's result: what results.json holds under its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerResult {
    /// Set from the key it is stored under.
    #[serde(skip)]
    pub name: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub summary: String,
    /// The checker's own report, field by field.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl CheckerResult {
    /// A result whose details are `report`'s fields. A report that is not
    /// a struct (no fields) is kept whole under `report`; one that cannot
    /// be written says so in the summary and under `details_error`,
    /// rather than vanishing.
    pub fn new(name: &str, verdict: Verdict, summary: String, report: &impl Serialize) -> Self {
        let mut summary = summary;
        let mut details = match serde_json::to_value(report) {
            Ok(Value::Object(m)) => m,
            Ok(other) => Map::from_iter([("report".to_string(), other)]),
            Err(e) => {
                summary += &format!(" (its details could not be recorded: {e})");
                Map::from_iter([("details_error".to_string(), Value::from(e.to_string()))])
            }
        };
        // Verdict and summary are the interface's own fields.
        details.remove("verdict");
        details.remove("summary");
        CheckerResult {
            name: name.to_string(),
            verdict,
            summary,
            details,
        }
    }

    /// One detail, typed: `None` when the checker did not write it (or
    /// wrote `null`), an error naming the checker and the key when it is
    /// there but not of the type asked for (a renamed field must not read
    /// as "nothing found").
    pub fn detail<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        // A checker writes `null` for what it did not find (no anomaly).
        let Some(v) = self.details.get(key).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        T::deserialize(v)
            .map(Some)
            .map_err(|e| format!("results.json: checker {:?}, detail {key:?}: {e}", self.name))
    }
}

/// A checker of a run's data.
pub trait Checker: Send + Sync {
    fn name(&self) -> &'static str;
    /// `None` when there is nothing for it to judge (no traces, say).
    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError>;
}

/// Runs every checker; the first error stops the composition.
pub fn run(checkers: &[Box<dyn Checker>], input: &Input) -> Result<Vec<CheckerResult>, CheckError> {
    let mut out = Vec::new();
    for c in checkers {
        if let Some(r) = c.check(input)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Any invalid wins, then any unknown; no checker at all is valid.
pub fn combined(results: &[CheckerResult]) -> Verdict {
    results
        .iter()
        .map(|r| r.verdict)
        .fold(Verdict::Valid, Verdict::combine)
}

/// `unknown` for a history in which nothing was acknowledged: no
/// operation succeeded, so none could show what the system did.
fn nothing_acknowledged(name: &str, ops: usize, report: &impl Serialize) -> CheckerResult {
    CheckerResult::new(
        name,
        Verdict::Unknown,
        format!("none of {ops} operation(s) acknowledged a write or read a value: nothing that could have failed, so nothing to judge"),
        report,
    )
}

/// Linearizability of the client operations under `model`.
pub struct Linearizability {
    pub model: ModelKind,
}

impl Checker for Linearizability {
    fn name(&self) -> &'static str {
        names::LINEARIZABILITY
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let opts = linearizability::Options {
            model: self.model,
            time_limit: input.time_limit,
            ..Default::default()
        };
        let r = linearizability::check(input.ops, &opts)?;
        // A read that found a value, or any acknowledged op other than a
        // read, could have shown a lost or wrong value; reads that all
        // found nothing, of writes that all failed, could not.
        let telling = |o: &Op| o.outcome == Outcome::Ok && (o.f != "read" || !o.output.is_null());
        // No client operation at all (an empty history, blank lines, only
        // the nemesis's lines) is nothing to judge either.
        if r.anomaly.is_none() && !input.ops.iter().any(telling) {
            return Ok(Some(nothing_acknowledged(self.name(), input.ops.len(), &r)));
        }
        let summary = match (&r.anomaly, r.unknown.first()) {
            (Some(a), _) => format!("linearizability violated: {}", a.summary),
            (None, Some(u)) => format!("the checker gave up: {}", u.reason),
            (None, None) => {
                let n = |o: Outcome| input.ops.iter().filter(|op| op.outcome == o).count();
                format!(
                    "{} ops ({} ok, {} fail, {} info) linearizable",
                    input.ops.len(),
                    n(Outcome::Ok),
                    n(Outcome::Fail),
                    n(Outcome::Info)
                )
            }
        };
        Ok(Some(CheckerResult::new(
            self.name(),
            r.verdict,
            summary,
            &r,
        )))
    }
}

/// Raft's safety invariants, from the nodes' trace events.
pub struct RaftInvariants;

impl Checker for RaftInvariants {
    fn name(&self) -> &'static str {
        names::RAFT_INVARIANTS
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let Some((file, text)) = input.traces else {
            return Ok(None);
        };
        let r = raft::check(file, text)?;
        let mut summary = match r.violations.first() {
            Some(v) => format!("Raft invariant violated: {}", v.summary),
            None => format!("{} trace events, no violation", r.events),
        };
        if !r.unknown_events.is_empty() {
            let kinds: Vec<String> = (r.unknown_events.iter())
                .map(|(name, n)| format!("{name:?} ×{n}"))
                .collect();
            summary += &format!(
                "; events of unknown kinds not checked: {}",
                kinds.join(", ")
            );
        }
        Ok(Some(CheckerResult::new(
            self.name(),
            r.verdict,
            summary,
            &r,
        )))
    }
}

/// Isolation of list-append or rw-register transactions (`crate::txn`),
/// against the input's consistency model.
pub struct Transactions;

impl Checker for Transactions {
    fn name(&self) -> &'static str {
        names::TRANSACTIONS
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let txns = match crate::txn::history::from_ops(input.ops) {
            Ok(t) if t.is_empty() => return Ok(None),
            Ok(t) => t,
            Err(e) => {
                return Ok(Some(CheckerResult::new(
                    names::TRANSACTIONS,
                    Verdict::Invalid,
                    format!("a transaction of the wrong shape: {e}"),
                    &serde_json::json!({"malformed": e}),
                )))
            }
        };
        let model = input
            .consistency_model
            .unwrap_or(crate::txn::ConsistencyModel::StrictSerializable);
        let r = crate::txn::check(&txns, model, input.time_limit);
        if r.committed == 0 && r.anomalies.is_empty() {
            return Ok(Some(nothing_acknowledged(names::TRANSACTIONS, r.txns, &r)));
        }
        Ok(Some(CheckerResult::new(
            names::TRANSACTIONS,
            r.verdict,
            r.summary(),
            &r,
        )))
    }
}
