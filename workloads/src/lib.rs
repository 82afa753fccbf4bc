//! What clients ask. A `Workload` owns its op generator (seeded), the
//! mapping from an op to a protocol request and from a reply back to a
//! history completion, the final reads that show the system still answers
//! after healing, and the checkers that judge it. The harness knows no
//! workload by name: adding one is a module plus a line in `WORKLOADS`.

pub mod lin_kv;

use faultline_checker::compose::Checker;
pub use faultline_checker::Outcome;
use serde_json::Value;

/// One operation a client will invoke: the history's `f`, `key`, `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub f: &'static str,
    pub key: Value,
    pub value: Value,
}

/// How an op completed, for the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub kind: Outcome,
    pub value: Value,
    /// The error code and text when the node answered with an error.
    pub error: Option<(i64, String)>,
}

/// A seeded stream of ops, shared by every client of a run.
pub trait Generator: Send {
    fn next_op(&mut self) -> Invocation;
}

/// A workload: what clients ask and how the answers are judged.
pub trait Workload: Send + Sync {
    /// Its name on the command line and in test.json.
    fn name(&self) -> &'static str;
    fn generator(&self, seed: u64, key_count: u64) -> Box<dyn Generator>;
    /// The request body for an invocation (without `msg_id`).
    fn request(&self, inv: &Invocation) -> Value;
    /// Maps a reply body to the op's completion.
    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion;
    /// Ops that must each succeed once after the faults are healed (the
    /// liveness phase retries each until it does or time runs out).
    fn final_reads(&self, key_count: u64) -> Vec<Invocation>;
    /// The checkers that judge its history.
    fn checkers(&self) -> Vec<Box<dyn Checker>>;
}

/// Every workload faultline knows.
pub static WORKLOADS: &[&dyn Workload] = &[&lin_kv::LinKv];

/// The workload named `name`.
pub fn find(name: &str) -> Result<&'static dyn Workload, String> {
    WORKLOADS
        .iter()
        .copied()
        .find(|w| w.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name()).collect();
            format!(
                "unknown workload {name:?} (available: {})",
                names.join(", ")
            )
        })
}

/// Error codes that mean the operation did not happen (DESIGN §2).
pub fn is_definite_error(code: i64) -> bool {
    matches!(code, 1 | 10 | 11 | 12 | 14 | 20 | 21 | 22 | 30)
}

/// The completion of an error reply or of a reply of the wrong type;
/// `Err(reply)` when the reply is `{f}_ok`, for the workload to read.
pub fn definite_outcome<'a>(inv: &Invocation, reply: &'a Value) -> Result<Completion, &'a Value> {
    let ty = reply.get("type").and_then(Value::as_str).unwrap_or("");
    if ty == "error" {
        let code = reply.get("code").and_then(Value::as_i64).unwrap_or(-1);
        let text = reply
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = if code >= 0 && is_definite_error(code) {
            Outcome::Fail
        } else {
            Outcome::Info
        };
        return Ok(Completion {
            kind,
            value: inv.value.clone(),
            error: Some((code, text)),
        });
    }
    let expected = format!("{}_ok", inv.f);
    if ty != expected {
        // An answer we cannot interpret says nothing about what happened.
        return Ok(Completion {
            kind: Outcome::Info,
            value: inv.value.clone(),
            error: Some((
                -1,
                format!("unexpected reply type {ty:?} (expected {expected:?} or error)"),
            )),
        });
    }
    Err(reply)
}
