//! What clients ask: per-workload op generators (seeded), the mapping from an
//! op to a protocol request body and from a reply body back to a history
//! completion, and which checker model judges the workload.
//!
//! Only `lin-kv` exists so far (DESIGN §3).

use faultline_checker::ModelKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    LinKv,
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lin-kv" => Ok(Workload::LinKv),
            other => Err(format!("unknown workload {other:?} (available: lin-kv)")),
        }
    }
}

impl Workload {
    pub fn model(self) -> ModelKind {
        match self {
            Workload::LinKv => ModelKind::LinKv,
        }
    }
}

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
    /// `ok`, `fail` or `info`.
    pub kind: &'static str,
    pub value: Value,
    /// The error code and text when the node answered with an error.
    pub error: Option<(i64, String)>,
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
            0..=3 => Invocation {
                f: "read",
                key: json!(k),
                value: Value::Null,
            },
            4..=6 => {
                *last += 1;
                Invocation {
                    f: "write",
                    key: json!(k),
                    value: json!(*last),
                }
            }
            _ => {
                // Compare against a recent value so some cas ops succeed.
                let from = last.saturating_sub(self.rng.gen_range(0..3));
                *last += 1;
                Invocation {
                    f: "cas",
                    key: json!(k),
                    value: json!([from, *last]),
                }
            }
        }
    }

    /// A read of `key`, for the final phase.
    pub fn read(key: u64) -> Invocation {
        Invocation {
            f: "read",
            key: json!(key),
            value: Value::Null,
        }
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

/// Error codes that mean the operation did not happen (DESIGN §2).
pub fn is_definite_error(code: i64) -> bool {
    matches!(code, 1 | 10 | 11 | 12 | 14 | 20 | 21 | 22 | 30)
}

/// Maps a reply body to the op's completion.
pub fn complete(inv: &Invocation, reply: &Value) -> Completion {
    let ty = reply.get("type").and_then(Value::as_str).unwrap_or("");
    if ty == "error" {
        let code = reply.get("code").and_then(Value::as_i64).unwrap_or(-1);
        let text = reply
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // A read of an absent key is an observation, not a failure.
        if inv.f == "read" && code == 20 {
            return Completion {
                kind: "ok",
                value: Value::Null,
                error: None,
            };
        }
        let kind = if code >= 0 && is_definite_error(code) {
            "fail"
        } else {
            "info"
        };
        return Completion {
            kind,
            value: inv.value.clone(),
            error: Some((code, text)),
        };
    }
    let expected = format!("{}_ok", inv.f);
    if ty != expected {
        // An answer we cannot interpret says nothing about what happened.
        return Completion {
            kind: "info",
            value: inv.value.clone(),
            error: Some((
                -1,
                format!("unexpected reply type {ty:?} (expected {expected:?} or error)"),
            )),
        };
    }
    match inv.f {
        "read" => Completion {
            kind: "ok",
            value: reply.get("value").cloned().unwrap_or(Value::Null),
            error: None,
        },
        _ => Completion {
            kind: "ok",
            value: inv.value.clone(),
            error: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let write = Invocation {
            f: "write",
            key: json!(1),
            value: json!(5),
        };
        let c = complete(&read, &json!({"type":"error","code":20}));
        assert_eq!((c.kind, c.value), ("ok", Value::Null));
        assert_eq!(
            complete(&write, &json!({"type":"error","code":11})).kind,
            "fail"
        );
        assert_eq!(
            complete(&write, &json!({"type":"error","code":0})).kind,
            "info"
        );
        assert_eq!(
            complete(&write, &json!({"type":"error","code":13})).kind,
            "info"
        );
        assert_eq!(
            complete(&write, &json!({"type":"error","code":1001})).kind,
            "info"
        );
        assert_eq!(complete(&write, &json!({"type":"write_ok"})).kind, "ok");
        assert_eq!(complete(&write, &json!({"type":"bogus"})).kind, "info");
        assert_eq!(
            complete(&read, &json!({"type":"read_ok","value":3})).value,
            json!(3)
        );
    }
}
