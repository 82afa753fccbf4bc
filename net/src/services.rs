//! Maelstrom's services, reachable by node id as in Maelstrom: `lin-kv`
//! (a linearizable key-value store), `seq-kv` (sequentially consistent: a
//! read may return any state no older than what its caller last saw),
//! `lww-kv` (replicas that diverge and are merged by last write) and
//! `lin-tso` (strictly increasing timestamps). Many Gossip Glomers
//! solutions are built on them. Each request is answered at once; the
//! router delivers the reply like any message to the node.

use faultline_checker::ErrorCode;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The names nodes address them by.
pub const NAMES: [&str; 4] = ["lin-kv", "seq-kv", "lww-kv", "lin-tso"];

/// Most versions `seq-kv` keeps per key (older ones are no longer offered
/// to stale reads): a bound on memory, not on correctness.
const MAX_VERSIONS_PER_KEY: usize = 1_000;
/// `lww-kv`'s replicas.
const LWW_REPLICAS: usize = 3;
/// Most keys a store holds: a node that writes without bound gets errors,
/// not the harness's memory.
const MAX_KEYS: usize = 1_000_000;

#[derive(Default)]
pub struct Services {
    lin: Mutex<HashMap<String, Value>>,
    seq: Mutex<SeqKv>,
    lww: Mutex<LwwKv>,
    tso: Mutex<u64>,
}

fn error(code: ErrorCode, text: &str) -> Value {
    code.reply(text)
}

fn key_of(body: &Value) -> Option<String> {
    body.get("key").map(|k| k.to_string())
}

/// One operation on a plain map: read, write, or cas (with
/// `create_if_not_exists`).
fn apply(map: &mut HashMap<String, Value>, body: &Value) -> Value {
    let Some(key) = key_of(body) else {
        return error(ErrorCode::MALFORMED_REQUEST, "missing key");
    };
    match body["type"].as_str() {
        Some("read") => match map.get(&key) {
            Some(v) => json!({"type": "read_ok", "value": v}),
            None => error(ErrorCode::KEY_DOES_NOT_EXIST, "key does not exist"),
        },
        Some("write") if map.len() < MAX_KEYS || map.contains_key(&key) => {
            map.insert(key, body.get("value").cloned().unwrap_or(Value::Null));
            json!({"type": "write_ok"})
        }
        Some("cas") => {
            let create = body["create_if_not_exists"].as_bool().unwrap_or(false);
            match map.get(&key) {
                None if create && map.len() < MAX_KEYS => {
                    map.insert(key, body["to"].clone());
                    json!({"type": "cas_ok"})
                }
                None => error(ErrorCode::KEY_DOES_NOT_EXIST, "key does not exist"),
                Some(v) if *v == body["from"] => {
                    map.insert(key, body["to"].clone());
                    json!({"type": "cas_ok"})
                }
                Some(v) => error(
                    ErrorCode::PRECONDITION_FAILED,
                    &format!("expected {}, but had {v}", body["from"]),
                ),
            }
        }
        Some("write") => error(ErrorCode::TEMPORARILY_UNAVAILABLE, "too many keys"),
        _ => error(ErrorCode::NOT_SUPPORTED, "not supported"),
    }
}

/// Sequential consistency as Maelstrom's seq-kv offers it: writes apply in
/// one order, and a read may return the state at any point of that order
/// at or after the last point its caller observed.
#[derive(Default)]
struct SeqKv {
    /// The current state.
    now: HashMap<String, Value>,
    /// Per key: (sequence number, value from then on; `None`: absent).
    versions: HashMap<String, VecDeque<(u64, Option<Value>)>>,
    seq: u64,
    /// Per caller: the newest sequence number it observed.
    seen: HashMap<String, u64>,
    /// Keys whose oldest versions were dropped.
    trimmed: std::collections::HashSet<String>,
}

impl SeqKv {
    fn handle(&mut self, caller: &str, body: &Value, rng: &mut ChaCha8Rng) -> Value {
        let floor = self.seen.get(caller).copied().unwrap_or(0);
        if body["type"] == "read" {
            if let Some(key) = key_of(body) {
                let (at, value) = self.read_at_or_after(&key, floor, rng);
                self.seen.insert(caller.to_string(), floor.max(at));
                return match value {
                    Some(v) => json!({"type": "read_ok", "value": v}),
                    None => error(ErrorCode::KEY_DOES_NOT_EXIST, "key does not exist"),
                };
            }
        }
        // Writes and cas act on the newest state; a caller that wrote (or
        // failed a cas) has seen it.
        let before = self.now.get(&key_of(body).unwrap_or_default()).cloned();
        let reply = apply(&mut self.now, body);
        if let Some(key) = key_of(body) {
            let after = self.now.get(&key).cloned();
            if after != before {
                self.seq += 1;
                let vs = self.versions.entry(key.clone()).or_default();
                vs.push_back((self.seq, after));
                if vs.len() > MAX_VERSIONS_PER_KEY {
                    vs.pop_front();
                    self.trimmed.insert(key);
                }
            }
        }
        self.seen.insert(caller.to_string(), self.seq);
        reply
    }

    /// The value of `key` at a random point from `floor` on, and the point.
    fn read_at_or_after(
        &self,
        key: &str,
        floor: u64,
        rng: &mut ChaCha8Rng,
    ) -> (u64, Option<Value>) {
        let Some(vs) = self.versions.get(key) else {
            return (floor, None);
        };
        let after = vs.partition_point(|(s, _)| *s <= floor);
        // The state at `floor` (if still kept), or any version since.
        let at_floor = match after {
            0 if self.trimmed.contains(key) => None,
            0 => Some(None),
            i => Some(vs[i - 1].1.clone()),
        };
        let offered = vs.len() - after + at_floor.is_some() as usize;
        let mut pick = rng.gen_range(0..offered.max(1));
        if let Some(v) = at_floor {
            if pick == 0 {
                return (floor, v);
            }
            pick -= 1;
        }
        match vs.get(after + pick) {
            Some((s, v)) => (*s, v.clone()),
            None => (floor, None),
        }
    }
}

/// Replicas each a map of key to (timestamp, value); a request reaches a
/// random replica, and replicas merge (newest timestamp wins) now and then,
/// so reads can be stale and concurrent writes resolve by last write.
struct LwwKv {
    replicas: Vec<HashMap<String, (u64, Value)>>,
    clock: u64,
}

impl Default for LwwKv {
    fn default() -> Self {
        LwwKv {
            replicas: vec![HashMap::new(); LWW_REPLICAS],
            clock: 0,
        }
    }
}

impl LwwKv {
    fn handle(&mut self, body: &Value, rng: &mut ChaCha8Rng) -> Value {
        if rng.gen_bool(0.3) {
            self.merge();
        }
        let r = rng.gen_range(0..self.replicas.len());
        let mut plain: HashMap<String, Value> = self.replicas[r]
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        let reply = apply(&mut plain, body);
        if let Some(key) = key_of(body) {
            let old = self.replicas[r].get(&key).map(|(_, v)| v);
            if let Some(new) = plain.get(&key).filter(|v| Some(*v) != old) {
                self.clock += 1;
                self.replicas[r].insert(key, (self.clock, new.clone()));
            }
        }
        reply
    }

    fn merge(&mut self) {
        let mut newest: HashMap<String, (u64, Value)> = HashMap::new();
        for r in &self.replicas {
            for (k, (t, v)) in r {
                if newest.get(k).is_none_or(|(nt, _)| nt < t) {
                    newest.insert(k.clone(), (*t, v.clone()));
                }
            }
        }
        for r in &mut self.replicas {
            r.clone_from(&newest);
        }
    }
}

impl Services {
    /// The reply (without `in_reply_to`) to `body` sent by node `caller`
    /// to `service`; `None` when `service` names none.
    pub fn handle(
        &self,
        service: &str,
        caller: &str,
        body: &Value,
        rng: &mut ChaCha8Rng,
    ) -> Option<Value> {
        let reply = match service {
            "lin-kv" => apply(&mut self.lin.lock().unwrap(), body),
            "seq-kv" => self.seq.lock().unwrap().handle(caller, body, rng),
            "lww-kv" => self.lww.lock().unwrap().handle(body, rng),
            "lin-tso" if body["type"] == "ts" => {
                let mut t = self.tso.lock().unwrap();
                *t += 1;
                json!({"type": "ts_ok", "ts": *t})
            }
            "lin-tso" => error(ErrorCode::NOT_SUPPORTED, "not supported"),
            _ => return None,
        };
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    fn call(s: &Services, service: &str, caller: &str, body: Value) -> Value {
        s.handle(service, caller, &body, &mut rng()).unwrap()
    }

    #[test]
    fn lin_kv_reads_writes_and_cas_with_create() {
        let s = Services::default();
        let r = |b| call(&s, "lin-kv", "n1", b);
        assert_eq!(r(json!({"type":"read","key":"x"}))["code"], 20);
        assert_eq!(
            r(json!({"type":"cas","key":"x","from":1,"to":2}))["code"],
            20
        );
        assert_eq!(
            r(json!({"type":"cas","key":"x","from":1,"to":2,"create_if_not_exists":true}))["type"],
            "cas_ok"
        );
        assert_eq!(r(json!({"type":"read","key":"x"}))["value"], 2);
        assert_eq!(
            r(json!({"type":"cas","key":"x","from":1,"to":3}))["code"],
            22
        );
        assert_eq!(
            r(json!({"type":"write","key":"x","value":5}))["type"],
            "write_ok"
        );
        assert_eq!(r(json!({"type":"read","key":"x"}))["value"], 5);
        assert_eq!(r(json!({"type":"frob"}))["code"], 12);
        assert_eq!(r(json!({"type":"frob","key":1}))["code"], 10);
        assert!(s.handle("nope", "n1", &json!({}), &mut rng()).is_none());
    }

    #[test]
    fn seq_kv_reads_may_be_stale_but_never_older_than_what_the_caller_saw() {
        let s = Services::default();
        let mut rng = rng();
        for v in 1..=20 {
            s.handle(
                "seq-kv",
                "writer",
                &json!({"type":"write","key":"k","value":v}),
                &mut rng,
            );
        }
        // A node that has seen nothing may read any of the 21 states.
        let mut got = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let fresh = Services::default();
            for v in 1..=20 {
                fresh.handle(
                    "seq-kv",
                    "writer",
                    &json!({"type":"write","key":"k","value":v}),
                    &mut rng,
                );
            }
            let r = fresh.handle(
                "seq-kv",
                "reader",
                &json!({"type":"read","key":"k"}),
                &mut rng,
            );
            // Absent (error 20) is the state before the first write.
            got.insert(r.unwrap()["value"].as_i64().unwrap_or(0));
        }
        assert!(
            got.len() > 5 && got.contains(&0) && got.contains(&20),
            "{got:?}"
        );
        // Reads by one caller never go back.
        let mut last = 0;
        for _ in 0..100 {
            let r = s.handle(
                "seq-kv",
                "reader",
                &json!({"type":"read","key":"k"}),
                &mut rng,
            );
            let v = r.unwrap()["value"].as_i64().unwrap();
            assert!(v >= last, "{v} after {last}");
            last = v;
        }
        // The writer sees its own write at once.
        let r = s.handle(
            "seq-kv",
            "writer",
            &json!({"type":"read","key":"k"}),
            &mut rng,
        );
        assert_eq!(r.unwrap()["value"], 20);
        // A cas acts on the newest state.
        let r = s.handle(
            "seq-kv",
            "other",
            &json!({"type":"cas","key":"k","from":20,"to":21}),
            &mut rng,
        );
        assert_eq!(r.unwrap()["type"], "cas_ok");
    }

    #[test]
    fn lww_kv_converges_on_the_last_write_and_tso_increases() {
        let s = Services::default();
        let mut rng = rng();
        for v in 1..=10 {
            s.handle(
                "lww-kv",
                "n1",
                &json!({"type":"write","key":"k","value":v}),
                &mut rng,
            );
        }
        s.lww.lock().unwrap().merge();
        for _ in 0..10 {
            let r = s.handle("lww-kv", "n2", &json!({"type":"read","key":"k"}), &mut rng);
            assert_eq!(r.unwrap()["value"], 10);
        }
        let t1 = call(&s, "lin-tso", "n1", json!({"type":"ts"}))["ts"]
            .as_u64()
            .unwrap();
        let t2 = call(&s, "lin-tso", "n2", json!({"type":"ts"}))["ts"]
            .as_u64()
            .unwrap();
        assert!(t2 > t1);
    }
}
