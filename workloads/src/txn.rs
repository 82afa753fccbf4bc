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
/// Writes a key takes before a fresh key replaces it, as Elle's generators
/// do: reads stay short (a list-append read returns the whole list), so
/// histories stay small and version orders well observed.
const MAX_WRITES_PER_KEY: u64 = 32;
/// Keys the final reads cover, the most recent first: every key of a run
/// at ordinary rates (a key takes 32 writes), bounded for long ones.
const MAX_FINAL_KEYS: u64 = 4096;
/// Keys one final read transaction reads.
const FINAL_KEYS_PER_TXN: u64 = 8;

impl Workload for TxnWorkload {
    fn name(&self) -> &'static str {
        self.name
    }

    fn generator(&self, seed: u64, key_count: u64) -> Box<dyn Generator> {
        use rand::SeedableRng;
        Box::new(TxnGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            write: self.write,
            active: (0..key_count.max(1)).map(|k| (k, 0)).collect(),
            next_key: key_count.max(1),
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
    /// The keys in use: (key, last value written to it).
    active: Vec<(u64, u64)>,
    next_key: u64,
}

impl Generator for TxnGen {
    fn next_op(&mut self) -> Invocation {
        let len = self.rng.gen_range(1..=MAX_TXN_LEN);
        let mut ops: Vec<Value> = Vec::with_capacity(len);
        for _ in 0..len {
            let slot = self.rng.gen_range(0..self.active.len());
            let (k, last) = self.active[slot];
            if self.rng.gen_bool(0.5) {
                ops.push(json!(["r", k, null]));
            } else {
                ops.push(json!([self.write, k, last + 1]));
                self.active[slot].1 = last + 1;
                if last + 1 >= MAX_WRITES_PER_KEY {
                    self.active[slot] = (self.next_key, 0);
                    self.next_key += 1;
                }
            }
        }
        Invocation::new("txn", Value::Null, json!(ops))
    }

    /// Every key it used (they retire as the run goes, and a write just
    /// before a power loss is often to a key no later op reads), a few
    /// keys a transaction.
    fn final_reads(&self) -> Option<Vec<Invocation>> {
        let first = self.next_key.saturating_sub(MAX_FINAL_KEYS);
        let keys: Vec<u64> = (first..self.next_key).collect();
        Some(
            keys.chunks(FINAL_KEYS_PER_TXN as usize)
                .map(|ks| {
                    let reads: Vec<Value> = ks.iter().map(|k| json!(["r", k, null])).collect();
                    Invocation::new("txn", Value::Null, json!(reads))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_retire_after_a_bounded_number_of_writes_and_values_stay_unique() {
        let mut g = LIST_APPEND.generator(3, 5);
        let mut per_key: std::collections::HashMap<u64, Vec<u64>> = Default::default();
        for _ in 0..5_000 {
            for m in g.next_op().value.as_array().unwrap() {
                if m[0] == "append" {
                    per_key
                        .entry(m[1].as_u64().unwrap())
                        .or_default()
                        .push(m[2].as_u64().unwrap());
                }
            }
        }
        assert!(per_key.len() > 50, "keys rotate: {}", per_key.len());
        for (k, vs) in per_key {
            assert!(
                vs.len() as u64 <= MAX_WRITES_PER_KEY,
                "key {k}: {}",
                vs.len()
            );
            let mut sorted = vs.clone();
            sorted.dedup();
            assert_eq!(sorted, vs, "key {k}: values unique and increasing");
        }
    }

    #[test]
    fn final_reads_cover_every_key_the_load_used() {
        let mut g = LIST_APPEND.generator(5, 5);
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            for m in g.next_op().value.as_array().unwrap() {
                used.insert(m[1].as_u64().unwrap());
            }
        }
        let reads = g.final_reads().expect("the generator knows its keys");
        let mut read = std::collections::BTreeSet::new();
        for inv in &reads {
            let ops = inv.value.as_array().unwrap();
            assert!(ops.len() as u64 <= FINAL_KEYS_PER_TXN);
            for m in ops {
                assert_eq!(m[0], "r");
                read.insert(m[1].as_u64().unwrap());
            }
        }
        assert!(used.len() > 50, "keys rotated: {}", used.len());
        assert!(
            used.is_subset(&read),
            "unread: {:?}",
            used.difference(&read)
        );
    }
}
