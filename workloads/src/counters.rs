//! Maelstrom's `g-counter` (adds of positive deltas) and `pn-counter`
//! (deltas of either sign): `{"type":"add","delta":D}` and
//! `{"type":"read"}` answered by `read_ok` with an integer `value`.

use faultline_checker::compose::Checker;
use faultline_checker::counters::Counter;
use rand::Rng;
use serde_json::{json, Value};

use crate::{
    complete_plain, complete_with, on_every_node, Completion, FnGen, Generator, Invocation,
    Workload,
};

pub struct CounterWorkload {
    name: &'static str,
    /// Deltas are drawn from this range.
    min_delta: i64,
    max_delta: i64,
}

pub static G_COUNTER: CounterWorkload = CounterWorkload {
    name: "g-counter",
    min_delta: 1,
    max_delta: 5,
};

pub static PN_COUNTER: CounterWorkload = CounterWorkload {
    name: "pn-counter",
    min_delta: -5,
    max_delta: 5,
};

impl Workload for CounterWorkload {
    fn name(&self) -> &'static str {
        self.name
    }

    fn generator(&self, seed: u64, _key_count: u64) -> Box<dyn Generator> {
        let (lo, hi) = (self.min_delta, self.max_delta);
        FnGen::boxed(seed, move |rng, _| {
            if rng.gen_bool(0.5) {
                Invocation::new("add", Value::Null, json!(rng.gen_range(lo..=hi)))
            } else {
                Invocation::new("read", Value::Null, Value::Null)
            }
        })
    }

    fn request(&self, inv: &Invocation) -> Value {
        match inv.f {
            "add" => json!({"type": "add", "delta": inv.value}),
            _ => json!({"type": "read"}),
        }
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        match inv.f {
            "add" => complete_plain(inv, reply),
            _ => complete_with(inv, reply, "value"),
        }
    }

    fn final_reads(&self, _key_count: u64, node_count: usize) -> Vec<Invocation> {
        on_every_node("read", node_count)
    }

    fn converges_by_gossip(&self) -> bool {
        true
    }

    fn converges_eventually(&self) -> bool {
        true
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![Box::new(Counter)]
    }
}
