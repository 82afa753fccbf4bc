//! Maelstrom's transaction workloads, `txn-list-append` and
//! `txn-rw-register`: `{"type":"txn","txn":[["r",K,null],["append",K,V]]}`
//! answered by `txn_ok` with the reads filled in. Appended and written
//! values are unique per key, as Elle needs to infer dependencies. Both
//! are judged by the transaction checker against `--consistency-model`.

use faultline_checker::compose::Checker;
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
        vec![Box::new(faultline_checker::compose::Transactions)]
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
