//! Maelstrom's `echo` and `unique-ids`: the first workloads of the Gossip
//! Glomers, with Maelstrom's message shapes.

use faultline_checker::compose::Checker;
use faultline_checker::ids;
use rand::Rng;
use serde_json::{json, Value};

use crate::{complete_with, on_every_node, Completion, FnGen, Generator, Invocation, Workload};

/// `{"type":"echo","echo":S}` answered by `echo_ok` with the same `echo`.
pub struct Echo;

impl Workload for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn generator(&self, seed: u64, _key_count: u64) -> Box<dyn Generator> {
        FnGen::boxed(seed, |rng, n| {
            let text = format!("please echo {}", rng.gen_range(0..1_000_000) + n);
            Invocation::new("echo", Value::Null, json!(text))
        })
    }

    fn request(&self, inv: &Invocation) -> Value {
        json!({"type": "echo", "echo": inv.value})
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        complete_with(inv, reply, "echo")
    }

    fn final_reads(&self, _key_count: u64, node_count: usize) -> Vec<Invocation> {
        on_every_node("echo", node_count)
            .into_iter()
            .enumerate()
            .map(|(i, mut inv)| {
                inv.value = json!(format!("final echo from node {i}"));
                inv
            })
            .collect()
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![Box::new(ids::Echo)]
    }
}

/// `{"type":"generate"}` answered by `generate_ok` with an `id` of any
/// JSON type; no id may ever come back twice.
pub struct UniqueIds;

impl Workload for UniqueIds {
    fn name(&self) -> &'static str {
        "unique-ids"
    }

    fn generator(&self, seed: u64, _key_count: u64) -> Box<dyn Generator> {
        FnGen::boxed(seed, |_, _| {
            Invocation::new("generate", Value::Null, Value::Null)
        })
    }

    fn request(&self, _inv: &Invocation) -> Value {
        json!({"type": "generate"})
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        complete_with(inv, reply, "id")
    }

    fn final_reads(&self, _key_count: u64, node_count: usize) -> Vec<Invocation> {
        on_every_node("generate", node_count)
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![Box::new(ids::UniqueIds)]
    }
}
