//! Transactional consistency, in the manner of Elle: from a history of
//! list-append transactions, recover each key's version order (every read
//! is a prefix of the longest), find what no isolation level allows
//! (aborted and intermediate reads, internal inconsistency, garbage and
//! duplicate elements, incompatible orders, dirty updates), build the
//! dependency graph (ww, wr, rw; process and real-time order for the
//! session and strict models), and name the most specific cycle in each
//! strongly connected component (G0, G1c, G-single, G2-item and their
//! `-process` / `-realtime` forms). `model` says which of them a
//! consistency model forbids.
//!
//! `history` reads transactions from faultline ops or Jepsen EDN,
//! `infer` recovers version orders and the non-cycle anomalies and edges,
//! `graph` holds the typed graph and finds cycles, `model` maps anomalies
//! to consistency models.

pub mod graph;
pub mod history;
pub mod infer;
pub mod lattice;
pub mod model;
pub mod register;

use serde::Serialize;
use std::time::{Duration, Instant};

pub use history::{Mop, Txn, TxnOutcome};
pub use model::ConsistencyModel;

use crate::Verdict;

/// One edge of an explained cycle: `from` precedes `to` because `why`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// History indices of the invocations.
    pub from: u64,
    pub to: u64,
    /// ww, wr, rw, process or realtime.
    pub kind: &'static str,
    pub why: String,
}

/// One anomaly: its class, the transactions involved (history indices of
/// their invocations), and for a cycle each edge with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub class: String,
    pub txns: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    pub explanation: String,
}

impl Anomaly {
    /// An anomaly outside any cycle: its transactions and why.
    pub fn plain(class: &str, txns: Vec<u64>, explanation: String) -> Anomaly {
        Anomaly {
            class: class.to_string(),
            txns,
            steps: Vec::new(),
            explanation,
        }
    }
}

/// What the transaction checker found.
#[derive(Debug, Clone, Serialize)]
pub struct TxnReport {
    pub verdict: Verdict,
    pub model: String,
    pub txns: usize,
    pub committed: usize,
    /// Every class found, each once, most serious first.
    pub anomaly_types: Vec<String>,
    /// Up to a few anomalies of each class.
    pub anomalies: Vec<Anomaly>,
    /// The consistency models the history is not allowed under.
    pub not: Vec<String>,
    /// Why the answer is `unknown`, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_because: Option<String>,
    pub scc_count: usize,
    pub largest_scc: usize,
    pub elapsed_ms: f64,
}

/// Most anomalies kept per class.
const MAX_PER_CLASS: usize = 8;

/// The most memory the dependency graph may take (estimated before it is
/// built): past it the answer is `unknown`, never an out-of-memory kill.
pub const MAX_GRAPH_BYTES: u64 = 3 << 30;

/// The graph's likely size, known before it is built: per read, its wr
/// and rw edges and a few to unread appends; per append, a ww edge; per
/// transaction, its process and real-time edges and a time node.
fn graph_bytes_bound(txns: &[Txn]) -> u64 {
    let (mut reads, mut writes) = (0u64, 0u64);
    for m in txns.iter().flat_map(|t| &t.mops) {
        match m {
            Mop::Read { .. } | Mop::ReadRegister { .. } => reads += 1,
            _ => writes += 1,
        }
    }
    let edges = reads * 8 + writes + 4 * txns.len() as u64;
    let nodes = 2 * txns.len() as u64;
    edges * std::mem::size_of::<graph::Edge>() as u64 + nodes * 64
}

/// Checks list-append transactions against `model`, giving up with
/// `unknown` past `time_limit`.
pub fn check_list_append(
    txns: &[Txn],
    model: ConsistencyModel,
    time_limit: Option<Duration>,
) -> TxnReport {
    check_inferred(txns, model, time_limit, infer::list_append)
}

/// Checks rw-register transactions against `model`.
pub fn check_rw_register(
    txns: &[Txn],
    model: ConsistencyModel,
    time_limit: Option<Duration>,
) -> TxnReport {
    check_inferred(txns, model, time_limit, register::rw_register)
}

/// Either model, told apart by the micro-ops.
pub fn check(txns: &[Txn], model: ConsistencyModel, time_limit: Option<Duration>) -> TxnReport {
    if history::are_registers(txns) {
        check_rw_register(txns, model, time_limit)
    } else {
        check_list_append(txns, model, time_limit)
    }
}

fn check_inferred(
    txns: &[Txn],
    model: ConsistencyModel,
    time_limit: Option<Duration>,
    infer: fn(&[Txn]) -> infer::Inferred,
) -> TxnReport {
    check_within(txns, model, time_limit, infer, MAX_GRAPH_BYTES)
}

/// `check_inferred` with a memory budget for the graph.
pub fn check_within(
    txns: &[Txn],
    model: ConsistencyModel,
    time_limit: Option<Duration>,
    infer: fn(&[Txn]) -> infer::Inferred,
    max_graph_bytes: u64,
) -> TxnReport {
    let started = Instant::now();
    let bound = graph_bytes_bound(txns);
    if bound > max_graph_bytes {
        let why = format!(
            "its dependency graph could take {} MB, over the {} MB budget",
            bound >> 20,
            max_graph_bytes >> 20
        );
        return report(txns, model, Vec::new(), &[], Some(why), started);
    }
    let deadline = time_limit.map(|t| started + t);
    let inferred = infer(txns);
    let mut anomalies = inferred.anomalies;
    let mut g = inferred.graph;
    let sccs = g.sccs(graph::ALL);
    let sizes: Vec<usize> = sccs.iter().map(|s| g.txns_of(s)).collect();
    let mut unknown_because = None;
    for scc in &sccs {
        if deadline.is_some_and(|d| Instant::now() > d) {
            unknown_because = Some(format!(
                "the cycle search ran out of its {:.0} s budget",
                time_limit.unwrap_or_default().as_secs_f64()
            ));
            break;
        }
        match g.most_specific_cycle(scc, txns) {
            Some(a) => anomalies.push(a),
            None if g.work > graph::WORK_LIMIT => {
                unknown_because = Some("the cycle search exceeded its work limit".into());
                break;
            }
            None => {}
        }
    }
    report(txns, model, anomalies, &sizes, unknown_because, started)
}

fn report(
    txns: &[Txn],
    model: ConsistencyModel,
    mut anomalies: Vec<Anomaly>,
    sccs: &[usize],
    unknown_because: Option<String>,
    started: Instant,
) -> TxnReport {
    anomalies.sort_by_key(|a| model::rank(&a.class));
    let mut types: Vec<String> = Vec::new();
    let mut kept: Vec<Anomaly> = Vec::new();
    for a in anomalies {
        if !types.contains(&a.class) {
            types.push(a.class.clone());
        }
        if kept.iter().filter(|k| k.class == a.class).count() < MAX_PER_CLASS {
            kept.push(a);
        }
    }
    let forbidden = types.iter().any(|t| model.forbids(t));
    let verdict = match (forbidden, &unknown_because) {
        (true, _) => Verdict::Invalid,
        (false, Some(_)) => Verdict::Unknown,
        (false, None) => Verdict::Valid,
    };
    TxnReport {
        verdict,
        model: model.name().to_string(),
        txns: txns.len(),
        committed: txns.iter().filter(|t| t.outcome == TxnOutcome::Ok).count(),
        not: model::violated(&types),
        anomaly_types: types,
        anomalies: kept,
        unknown_because,
        scc_count: sccs.len(),
        largest_scc: sccs.iter().copied().max().unwrap_or(0),
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

impl TxnReport {
    /// One line: the verdict's reason.
    pub fn summary(&self) -> String {
        match (self.verdict, self.anomalies.first()) {
            (Verdict::Invalid, Some(a)) => format!(
                "{} under {}: {}",
                self.anomaly_types.join(", "),
                self.model,
                a.explanation
                    .strip_prefix(&format!("{}: ", a.class))
                    .unwrap_or(&a.explanation)
            ),
            (Verdict::Unknown, _) => format!(
                "{} transactions: {}",
                self.txns,
                self.unknown_because.as_deref().unwrap_or("undecided")
            ),
            _ => format!(
                "{} committed transactions {}{}",
                self.committed,
                self.model,
                if self.anomaly_types.is_empty() {
                    String::new()
                } else {
                    format!(" (allowed: {})", self.anomaly_types.join(", "))
                }
            ),
        }
    }
}
