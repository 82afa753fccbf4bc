//! What clients ask. A `Workload` owns its op generator (seeded), the
//! mapping from an op to a protocol request and from a reply back to a
//! history completion, the final reads that show the system still answers
//! after healing, and the checkers that judge it. The harness knows no
//! workload by name: adding one is a module plus a line in `WORKLOADS`.

pub mod counters;
pub mod ids;
pub mod kafka;
pub mod lin_kv;
pub mod sets;
pub mod txn;

use faultline_checker::compose::Checker;
pub use faultline_checker::ErrorCode;
pub use faultline_checker::Outcome;
use serde_json::Value;

/// One operation a client will invoke: the history's `f`, `key`, `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub f: &'static str,
    pub key: Value,
    pub value: Value,
    /// The node it must be asked of (a final read of each node's view),
    /// rather than the client's own.
    pub node: Option<usize>,
    /// One of the final reads after healing: recorded with `"final":true`
    /// (Jepsen's `:final?`), so checkers judge what was kept by them.
    pub final_read: bool,
}

impl Invocation {
    pub fn new(f: &'static str, key: Value, value: Value) -> Self {
        Invocation {
            f,
            key,
            value,
            node: None,
            final_read: false,
        }
    }

    /// This op, as a final read.
    pub fn finally(mut self) -> Self {
        self.final_read = true;
        self
    }

    /// This op, asked of node `node`.
    pub fn on(mut self, node: usize) -> Self {
        self.node = Some(node);
        self
    }
}

/// How an op completed, for the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub kind: Outcome,
    pub value: Value,
    /// The error code and text when the node answered with an error.
    pub error: Option<(ErrorCode, String)>,
}

/// A seeded stream of ops, shared by every client of a run.
pub trait Generator: Send {
    fn next_op(&mut self) -> Invocation;
    /// What became of an op it generated (kafka polls on from where
    /// earlier polls got to).
    fn observe(&mut self, _inv: &Invocation, _completion: &Completion) {}
    /// The final reads of what it generated, when the workload's own
    /// (`Workload::final_reads`, by key count) would miss some.
    fn final_reads(&self) -> Option<Vec<Invocation>> {
        None
    }
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
    fn final_reads(&self, key_count: u64, node_count: usize) -> Vec<Invocation>;
    /// The final read that must follow `done`, which succeeded with
    /// `value`: a read that returns a page at a time reads on from where
    /// it stopped, so the final reads are complete (kafka's polls).
    fn next_final_read(&self, _done: &Invocation, _value: &Value) -> Option<Invocation> {
        None
    }
    /// Whether replicas converge by gossip (sets, counters): then the final
    /// reads wait at least `GOSSIP_RECOVERY_S`, as long as Maelstrom
    /// waits, so a node that gossips every few seconds is judged once it
    /// has.
    fn converges_by_gossip(&self) -> bool {
        false
    }
    /// Whether replicas only converge eventually: then the final reads
    /// wait the recovery time even when no fault was injected.
    fn converges_eventually(&self) -> bool {
        false
    }
    /// The message each node gets once it has answered `init` (after
    /// every restart too), answered by `{type}_ok`: broadcast's topology.
    fn setup(&self, _node: &str, _node_ids: &[String], _topology: &str) -> Option<Value> {
        None
    }
    /// The checkers that judge its history.
    fn checkers(&self) -> Vec<Box<dyn Checker>>;
}

/// How long final reads of gossiping replicas wait after healing, at
/// least: Maelstrom sleeps 10 s before its final reads. The wait is
/// passive, and each node is read once: reading again until the nodes
/// agree would let a node converge because it was asked (a counter read
/// through seq-kv catches up with every read), not because time passed.
pub const GOSSIP_RECOVERY_S: f64 = 10.0;

/// Every workload faultline knows.
pub static WORKLOADS: &[&dyn Workload] = &[
    &lin_kv::LinKv,
    &ids::Echo,
    &ids::UniqueIds,
    &sets::BROADCAST,
    &sets::G_SET,
    &counters::G_COUNTER,
    &counters::PN_COUNTER,
    &kafka::KafkaWorkload,
    &txn::LIST_APPEND,
    &txn::RW_REGISTER,
];

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

/// The completion of a `{f}_ok` reply whose value is `field` (absent:
/// `null`, for the checker to count), or of an error.
pub fn complete_with(inv: &Invocation, reply: &Value, field: &str) -> Completion {
    definite_outcome(inv, reply).unwrap_or_else(|ok| Completion {
        kind: Outcome::Ok,
        value: ok.get(field).cloned().unwrap_or(Value::Null),
        error: None,
    })
}

/// The completion of a `{f}_ok` reply that carries nothing: the op's
/// own value.
pub fn complete_plain(inv: &Invocation, reply: &Value) -> Completion {
    definite_outcome(inv, reply).unwrap_or_else(|_| Completion {
        kind: Outcome::Ok,
        value: inv.value.clone(),
        error: None,
    })
}

/// A seeded generator from a function of the rng and a counter (1, 2, ...).
pub struct FnGen<F> {
    rng: rand_chacha::ChaCha8Rng,
    n: u64,
    f: F,
}

impl<F> FnGen<F>
where
    F: FnMut(&mut rand_chacha::ChaCha8Rng, u64) -> Invocation + Send + 'static,
{
    pub fn boxed(seed: u64, f: F) -> Box<dyn Generator> {
        use rand::SeedableRng;
        Box::new(FnGen {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            n: 0,
            f,
        })
    }
}

impl<F> Generator for FnGen<F>
where
    F: FnMut(&mut rand_chacha::ChaCha8Rng, u64) -> Invocation + Send,
{
    fn next_op(&mut self) -> Invocation {
        self.n += 1;
        (self.f)(&mut self.rng, self.n)
    }
}

/// One op of `f` per node, each asked of that node.
pub fn on_every_node(f: &'static str, node_count: usize) -> Vec<Invocation> {
    (0..node_count)
        .map(|n| Invocation::new(f, Value::Null, Value::Null).on(n))
        .collect()
}

/// The completion of an error reply or of a reply of the wrong type;
/// `Err(reply)` when the reply is `{f}_ok`, for the workload to read.
pub fn definite_outcome<'a>(inv: &Invocation, reply: &'a Value) -> Result<Completion, &'a Value> {
    let ty = reply.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(code) = ErrorCode::of_reply(reply) {
        let text = reply
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = if code.is_definite() {
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
                ErrorCode::NO_CODE,
                format!("unexpected reply type {ty:?} (expected {expected:?} or error)"),
            )),
        });
    }
    Err(reply)
}
