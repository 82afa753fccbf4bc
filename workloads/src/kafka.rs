//! Maelstrom's `kafka`: append-only logs per key. `send` appends a message
//! and returns its offset; `poll` returns, per key, messages from an offset
//! on; `commit_offsets` and `list_committed_offsets` keep consumer
//! positions. The generator polls from where the polls so far got to (it
//! observes completions), so polls keep reading new messages.

use faultline_checker::compose::Checker;
use faultline_checker::kafka::Kafka;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

use crate::{complete_plain, complete_with, Completion, Generator, Invocation, Outcome, Workload};

pub struct KafkaWorkload;

/// Most keys one poll or commit names.
const MAX_KEYS_PER_OP: usize = 2;

impl Workload for KafkaWorkload {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn generator(&self, seed: u64, key_count: u64) -> Box<dyn Generator> {
        use rand::SeedableRng;
        Box::new(KafkaGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys: (0..key_count.max(1)).map(|k| k.to_string()).collect(),
            next_msg: 0,
            polled_to: BTreeMap::new(),
        })
    }

    fn request(&self, inv: &Invocation) -> Value {
        match inv.f {
            "send" => json!({"type": "send", "key": inv.key, "msg": inv.value}),
            "poll" => json!({"type": "poll", "offsets": inv.value}),
            "commit_offsets" => json!({"type": "commit_offsets", "offsets": inv.value}),
            _ => json!({"type": "list_committed_offsets", "keys": inv.value}),
        }
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        match inv.f {
            "send" => complete_with(inv, reply, "offset"),
            "poll" => complete_with(inv, reply, "msgs"),
            "commit_offsets" => complete_plain(inv, reply),
            _ => complete_with(inv, reply, "offsets"),
        }
    }

    fn final_reads(&self, key_count: u64, _node_count: usize) -> Vec<Invocation> {
        // Every key from the start: each acknowledged message must be there.
        (0..key_count.max(1))
            .map(|k| Invocation::new("poll", Value::Null, json!({k.to_string(): 0})))
            .collect()
    }

    fn next_final_read(&self, done: &Invocation, value: &Value) -> Option<Invocation> {
        let (key, from) = done.value.as_object()?.iter().next()?;
        let from = from.as_u64()?;
        let top = value
            .get(key)?
            .as_array()?
            .iter()
            .filter_map(|p| p.get(0).and_then(Value::as_u64))
            .max()?;
        // A node that answers below what was asked makes no progress:
        // stop there rather than poll the same page forever.
        (top >= from)
            .then(|| Invocation::new("poll", Value::Null, json!({key.clone(): top + 1})).finally())
    }

    fn converges_eventually(&self) -> bool {
        true
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![Box::new(Kafka)]
    }
}

struct KafkaGen {
    rng: ChaCha8Rng,
    keys: Vec<String>,
    next_msg: u64,
    /// Per key, one past the highest offset a poll returned.
    polled_to: BTreeMap<String, u64>,
}

impl KafkaGen {
    fn some_keys(&mut self) -> Vec<String> {
        let n = self.rng.gen_range(1..=MAX_KEYS_PER_OP.min(self.keys.len()));
        let mut ks: Vec<String> = (0..n)
            .map(|_| self.keys[self.rng.gen_range(0..self.keys.len())].clone())
            .collect();
        ks.sort();
        ks.dedup();
        ks
    }

    /// Offsets to poll or commit from: where polls got to, sometimes a
    /// little before (re-reading is allowed and checks consistency).
    fn offsets(&mut self, back: bool) -> Value {
        let mut m = Map::new();
        for k in self.some_keys() {
            let to = self.polled_to.get(&k).copied().unwrap_or(0);
            let from = if back {
                to.saturating_sub(self.rng.gen_range(0..3))
            } else {
                to
            };
            m.insert(k, json!(from));
        }
        Value::Object(m)
    }
}

impl Generator for KafkaGen {
    fn next_op(&mut self) -> Invocation {
        match self.rng.gen_range(0..20) {
            0..=9 => {
                self.next_msg += 1;
                let k = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
                Invocation::new("send", json!(k), json!(self.next_msg))
            }
            10..=16 => Invocation::new("poll", Value::Null, self.offsets(true)),
            17..=18 => Invocation::new("commit_offsets", Value::Null, self.offsets(false)),
            _ => Invocation::new(
                "list_committed_offsets",
                Value::Null,
                json!(self.some_keys()),
            ),
        }
    }

    fn observe(&mut self, inv: &Invocation, c: &Completion) {
        if inv.f != "poll" || c.kind != Outcome::Ok {
            return;
        }
        let Some(msgs) = c.value.as_object() else {
            return;
        };
        for (k, pairs) in msgs {
            let top = pairs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.get(0).and_then(Value::as_u64))
                .max();
            if let Some(top) = top {
                let to = self.polled_to.entry(k.clone()).or_insert(0);
                *to = (*to).max(top + 1);
            }
        }
    }
}
