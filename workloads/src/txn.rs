//! Maelstrom's transaction workloads, `txn-list-append` and
//! `txn-rw-register`: `{"type":"txn","txn":[["r",K,null],["append",K,V]]}`
//! answered by `txn_ok` with the reads filled in. Appended and written
//! values are unique per key, as Elle needs to infer dependencies.
//! List-append is judged by the transaction checker (`--consistency-model`);
//! rw-register's inference is still to come, and until then the run says
//! plainly that isolation was not checked.

use faultline_checker::compose::{Checker, CheckerResult, Input};
use faultline_checker::history::Outcome;
use faultline_checker::{CheckError, Verdict};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::{complete_with, Completion, Generator, Invocation, Workload};

pub struct TxnWorkload {
    name: &'static str,
    /// The write micro-op: `append` or `w`.
    write: &'static str,
}

pub static LIST_APPEND: TxnWorkload = TxnWorkload {
    name: "txn-list-append",
    write: "append",
};

pub static RW_REGISTER: TxnWorkload = TxnWorkload {
    name: "txn-rw-register",
    write: "w",
};

/// Most micro-ops in one transaction.
const MAX_TXN_LEN: usize = 4;

impl Workload for TxnWorkload {
    fn name(&self) -> &'static str {
        self.name
    }

    fn generator(&self, seed: u64, key_count: u64) -> Box<dyn Generator> {
        use rand::SeedableRng;
        Box::new(TxnGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            write: self.write,
            next: vec![0; key_count.max(1) as usize],
        })
    }

    fn request(&self, inv: &Invocation) -> Value {
        json!({"type": "txn", "txn": inv.value})
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        complete_with(inv, reply, "txn")
    }

    fn final_reads(&self, key_count: u64, _node_count: usize) -> Vec<Invocation> {
        (0..key_count.max(1))
            .map(|k| Invocation::new("txn", Value::Null, json!([["r", k, null]])))
            .collect()
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        if self.write == "append" {
            return vec![Box::new(faultline_checker::compose::Transactions)];
        }
        vec![Box::new(NotYetChecked { write: self.write })]
    }
}

struct TxnGen {
    rng: ChaCha8Rng,
    write: &'static str,
    /// Per key, the last value written or appended.
    next: Vec<u64>,
}

impl Generator for TxnGen {
    fn next_op(&mut self) -> Invocation {
        let len = self.rng.gen_range(1..=MAX_TXN_LEN);
        let ops: Vec<Value> = (0..len)
            .map(|_| {
                let k = self.rng.gen_range(0..self.next.len());
                if self.rng.gen_bool(0.5) {
                    json!(["r", k, null])
                } else {
                    self.next[k] += 1;
                    json!([self.write, k, self.next[k]])
                }
            })
            .collect();
        Invocation::new("txn", Value::Null, json!(ops))
    }
}

/// Says that transactional isolation was not judged, and checks only the
/// shape of each answer: the same micro-ops, reads filled with a list
/// (append) or a value (register).
struct NotYetChecked {
    write: &'static str,
}

impl Checker for NotYetChecked {
    fn name(&self) -> &'static str {
        "transactions"
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let ok: Vec<_> = input
            .ops
            .iter()
            .filter(|o| o.f == "txn" && o.outcome == Outcome::Ok)
            .collect();
        let malformed = ok
            .iter()
            .filter(|o| !same_shape(&o.input, &o.output, self.write))
            .count();
        let (verdict, summary) = if malformed > 0 {
            (
                Verdict::Invalid,
                format!("{malformed} of {} txn_ok answers do not match their request (micro-ops changed, or reads not filled)", ok.len()),
            )
        } else {
            (
                Verdict::Unknown,
                format!(
                    "{} transactions recorded; isolation is not checked yet (the transaction checker is still to be built)",
                    ok.len()
                ),
            )
        };
        let details = json!({"committed": ok.len(), "malformed": malformed});
        Ok(Some(CheckerResult::new(
            "transactions",
            verdict,
            summary,
            &details,
        )))
    }
}

fn same_shape(asked: &Value, got: &Value, write: &str) -> bool {
    let (Some(a), Some(g)) = (asked.as_array(), got.as_array()) else {
        return false;
    };
    a.len() == g.len()
        && a.iter().zip(g).all(|(a, g)| {
            a.get(0) == g.get(0)
                && a.get(1) == g.get(1)
                && match a.get(0).and_then(Value::as_str) {
                    Some("r") if write == "append" => {
                        g.get(2).is_some_and(|v| v.is_array() || v.is_null())
                    }
                    Some("r") => g.get(2).is_some(),
                    _ => a.get(2) == g.get(2),
                }
        })
}
