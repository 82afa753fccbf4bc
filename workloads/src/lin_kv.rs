//! `lin-kv` (docs/maelstrom.md): independent keys, each a register; clients read,
//! write and cas, and the linearizability checker judges them per key.

use faultline_checker::compose::{Checker, Linearizability};
use faultline_checker::{ModelKind, Outcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::{definite_outcome, Completion, ErrorCode, Generator, Invocation, Workload};

pub struct LinKv;

impl Workload for LinKv {
    fn name(&self) -> &'static str {
        "lin-kv"
    }

    fn generator(&self, seed: u64, key_count: u64) -> Box<dyn Generator> {
        Box::new(LinKvGen::new(seed, key_count))
    }

    fn request(&self, inv: &Invocation) -> Value {
        match inv.f {
            "read" => json!({"type": "read", "key": inv.key}),
            "write" => json!({"type": "write", "key": inv.key, "value": inv.value}),
            "cas" => {
                json!({"type": "cas", "key": inv.key, "from": inv.value[0], "to": inv.value[1]})
            }
            other => unreachable!("lin-kv generates no {other} op"),
        }
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        complete(inv, reply)
    }

    fn final_reads(&self, key_count: u64, _node_count: usize) -> Vec<Invocation> {
        (0..key_count).map(LinKvGen::read).collect()
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![Box::new(Linearizability {
            model: ModelKind::LinKv,
        })]
    }
}

/// Seeded lin-kv generator: reads, writes and cas over `key_count` integer
/// keys; every written value is unique per key (a per-key counter), which
/// lets the checker's prepass prove stale reads outright.
pub struct LinKvGen {
    rng: ChaCha8Rng,
    key_count: u64,
    /// Highest value handed out per key.
    last: Vec<u64>,
}

impl LinKvGen {
    pub fn new(seed: u64, key_count: u64) -> Self {
        assert!(key_count > 0, "key_count must be positive");
        LinKvGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            key_count,
            last: vec![0; key_count as usize],
        }
    }

    pub fn next_op(&mut self) -> Invocation {
        let k = self.rng.gen_range(0..self.key_count);
        let last = &mut self.last[k as usize];
        match self.rng.gen_range(0..10) {
            0..=3 => Invocation::new("read", json!(k), Value::Null),
            4..=6 => {
                *last += 1;
                Invocation::new("write", json!(k), json!(*last))
            }
            _ => {
                // Compare against a recent value so some cas ops succeed.
                let from = last.saturating_sub(self.rng.gen_range(0..3));
                *last += 1;
                Invocation::new("cas", json!(k), json!([from, *last]))
            }
        }
    }

    /// A read of `key`, for the final phase.
    pub fn read(key: u64) -> Invocation {
        Invocation::new("read", json!(key), Value::Null)
    }
}

/// The request body for an invocation (without `msg_id`).
pub fn request_body(inv: &Invocation) -> Value {
    match inv.f {
        "read" => json!({"type": "read", "key": inv.key}),
        "write" => json!({"type": "write", "key": inv.key, "value": inv.value}),
        "cas" => json!({"type": "cas", "key": inv.key, "from": inv.value[0], "to": inv.value[1]}),
        other => unreachable!("lin-kv has no op {other}"),
    }
}

impl Generator for LinKvGen {
    fn next_op(&mut self) -> Invocation {
        LinKvGen::next_op(self)
    }
}

/// Maps a lin-kv reply body to the op's completion.
pub fn complete(inv: &Invocation, reply: &Value) -> Completion {
    // A read of an absent key is an observation, not a failure.
    if inv.f == "read" && ErrorCode::of_reply(reply) == Some(ErrorCode::KEY_DOES_NOT_EXIST) {
        return Completion {
            kind: Outcome::Ok,
            value: Value::Null,
            error: None,
        };
    }
    definite_outcome(inv, reply).unwrap_or_else(|ok| match inv.f {
        "read" => Completion {
            kind: Outcome::Ok,
            value: ok.get("value").cloned().unwrap_or(Value::Null),
            error: None,
        },
        _ => Completion {
            kind: Outcome::Ok,
            value: inv.value.clone(),
            error: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Invocation;

    #[test]
    fn generator_is_seeded_and_values_unique_per_key() {
        let a: Vec<_> = {
            let mut g = LinKvGen::new(7, 3);
            (0..200).map(|_| g.next_op()).collect()
        };
        let b: Vec<_> = {
            let mut g = LinKvGen::new(7, 3);
            (0..200).map(|_| g.next_op()).collect()
        };
        assert_eq!(a, b);
        let mut seen = std::collections::HashSet::new();
        for op in &a {
            let written = match op.f {
                "write" => op.value.clone(),
                "cas" => op.value[1].clone(),
                _ => continue,
            };
            assert!(
                seen.insert((op.key.to_string(), written.to_string())),
                "duplicate {op:?}"
            );
        }
    }

    #[test]
    fn error_codes_map_to_outcomes() {
        let read = LinKvGen::read(1);
        let write = Invocation::new("write", json!(1), json!(5));
        let c = complete(&read, &json!({"type":"error","code":20}));
        assert_eq!((c.kind, c.value), (Outcome::Ok, Value::Null));
        assert_eq!(
            complete(&write, &json!({"type":"error","code":11})).kind,
            Outcome::Fail
        );
        assert_eq!(
            complete(&write, &json!({"type":"error","code":0})).kind,
            Outcome::Info
        );
        assert_eq!(
            complete(&write, &json!({"type":"error","code":13})).kind,
            Outcome::Info
        );
        assert_eq!(
            complete(&write, &json!({"type":"error","code":1001})).kind,
            Outcome::Info
        );
        assert_eq!(
            complete(&write, &json!({"type":"write_ok"})).kind,
            Outcome::Ok
        );
        assert_eq!(
            complete(&write, &json!({"type":"bogus"})).kind,
            Outcome::Info
        );
        assert_eq!(
            complete(&read, &json!({"type":"read_ok","value":3})).value,
            json!(3)
        );
    }
}
