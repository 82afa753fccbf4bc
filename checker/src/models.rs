//! Consistency models: how a history's ops become a partition of search ops
//! plus a sequential specification.
//!
//! - `register`: one read/write/cas register for the whole history (key
//!   ignored); the initial state is absent (`null`).
//! - `lin-kv`: independent registers, one per key (P-compositionality).
//! - `kv-string`: Porcupine's kv model, independent string registers with
//!   get / put / append, each starting as `""`.

use rustc_hash::FxHashMap as HashMap;
use serde_json::Value;
use std::str::FromStr;

use crate::history::{Op, Outcome};
use crate::search::{SearchOp, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Register,
    LinKv,
    KvString,
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" | "cas-register" => Ok(ModelKind::Register),
            "lin-kv" | "kv" => Ok(ModelKind::LinKv),
            "kv-string" | "porcupine-kv" => Ok(ModelKind::KvString),
            other => Err(format!(
                "unknown model {other:?} (expected register, lin-kv or kv-string)"
            )),
        }
    }
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::LinKv => "lin-kv",
            ModelKind::KvString => "kv-string",
        }
    }

    pub fn partitioned(self) -> bool {
        !matches!(self, ModelKind::Register)
    }
}

/// Interns JSON values of one partition as small ids; id 0 is `null`
/// (absent).
#[derive(Default)]
pub struct Interner {
    ids: HashMap<String, u32>,
    pub values: Vec<Value>,
}

impl Interner {
    pub fn new_with_null() -> Interner {
        let mut i = Interner::default();
        i.intern(&Value::Null);
        i
    }
    pub fn intern(&mut self, v: &Value) -> u32 {
        let k = v.to_string();
        if let Some(&id) = self.ids.get(&k) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(k, id);
        id
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOp {
    Read(u32),
    Write(u32),
    /// from, to, definite (`ok`); an indefinite cas is a no-op when the
    /// compare fails.
    Cas(u32, u32, bool),
}

impl RegOp {
    /// The value this op may install, if any.
    pub fn writes(self) -> Option<u32> {
        match self {
            RegOp::Write(v) | RegOp::Cas(_, v, _) => Some(v),
            RegOp::Read(_) => None,
        }
    }
}

/// How many value ids `ops` mention (ids are dense from 0, the absent value).
pub fn value_count(ops: &[RegOp]) -> usize {
    ops.iter()
        .flat_map(|o| match *o {
            RegOp::Read(v) | RegOp::Write(v) => [v, 0],
            RegOp::Cas(a, b, _) => [a, b],
        })
        .max()
        .map_or(1, |m| m as usize + 1)
}

/// The register with a "dead value" prune: when the state leaves value v
/// (or a potential writer of v is used up) while some unlinearized definite
/// op still needs state v (a read of v, an ok cas from v) and no
/// unlinearized op can install v any more, that op can never be linearized.
pub struct RegisterSpec {
    pub ops: Vec<RegOp>,
    /// Unlinearized definite ops that need the state to be v.
    readers_left: Vec<u32>,
    /// Unlinearized, undropped ops that may install v.
    writers_left: Vec<u32>,
}

impl RegisterSpec {
    pub fn new(ops: Vec<RegOp>) -> Self {
        let nvals = value_count(&ops);
        let mut s = RegisterSpec {
            ops,
            readers_left: vec![0; nvals],
            writers_left: vec![0; nvals],
        };
        for i in 0..s.ops.len() {
            s.count(i, 1);
        }
        s
    }

    /// Adds `d` (+1 or -1 as wrapping u32) to the counters op `i` holds.
    fn count(&mut self, i: usize, d: u32) {
        match self.ops[i] {
            RegOp::Read(v) => {
                self.readers_left[v as usize] = self.readers_left[v as usize].wrapping_add(d)
            }
            RegOp::Write(v) => {
                self.writers_left[v as usize] = self.writers_left[v as usize].wrapping_add(d)
            }
            RegOp::Cas(a, b, definite) => {
                if definite {
                    self.readers_left[a as usize] = self.readers_left[a as usize].wrapping_add(d);
                }
                self.writers_left[b as usize] = self.writers_left[b as usize].wrapping_add(d);
            }
        }
    }

    fn starved(&self, v: u32, state: u32) -> bool {
        state != v && self.writers_left[v as usize] == 0 && self.readers_left[v as usize] > 0
    }
}

impl Spec for RegisterSpec {
    fn init(&mut self) -> u32 {
        0
    }
    fn step(&mut self, s: u32, op: usize) -> Option<u32> {
        match self.ops[op] {
            RegOp::Read(v) => (s == v).then_some(s),
            RegOp::Write(v) => Some(v),
            RegOp::Cas(a, b, true) => (s == a).then_some(b),
            RegOp::Cas(a, b, false) => Some(if s == a { b } else { s }),
        }
    }
    fn read_only(&self, op: usize) -> bool {
        matches!(self.ops[op], RegOp::Read(_))
    }
    fn enter(&mut self, op: usize, _dropped: bool, from: u32, to: u32) -> bool {
        self.count(op, u32::MAX);
        let left_behind = self.starved(from, to);
        let unwritten = self.ops[op].writes().is_some_and(|w| self.starved(w, to));
        if left_behind || unwritten {
            self.count(op, 1);
            return false;
        }
        true
    }
    fn exit(&mut self, op: usize, _dropped: bool) {
        self.count(op, 1);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrOp {
    Get(String),
    Put(String),
    Append(String),
}

/// String register with append, states interned as exact strings. Used to
/// replay a witness and as the fallback when hashed states collide.
pub struct StringSpec {
    pub ops: Vec<StrOp>,
    states: Vec<String>,
    ids: HashMap<String, u32>,
    appended: HashMap<(u32, u32), u32>,
}

impl StringSpec {
    pub fn new(ops: Vec<StrOp>) -> Self {
        let mut s = StringSpec {
            ops,
            states: Vec::new(),
            ids: HashMap::default(),
            appended: HashMap::default(),
        };
        s.intern(String::new());
        s
    }
    fn intern(&mut self, v: String) -> u32 {
        if let Some(&id) = self.ids.get(&v) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(v.clone());
        self.ids.insert(v, id);
        id
    }
    pub fn state_value(&self, s: u32) -> Value {
        Value::String(self.states[s as usize].clone())
    }

    /// The exact state after applying a legal `order`; the initial state if
    /// some step is illegal (only witnesses from the search are replayed).
    pub fn state_after(&mut self, order: &[usize]) -> u32 {
        let mut s = self.init();
        for &op in order {
            match self.step(s, op) {
                Some(n) => s = n,
                None => return 0,
            }
        }
        s
    }

    /// Applies `order` from the initial state; true when every step is legal.
    pub fn replay(&mut self, order: &[usize]) -> bool {
        crate::search::replays(self, order)
    }
}

impl Spec for StringSpec {
    fn init(&mut self) -> u32 {
        0
    }
    fn read_only(&self, op: usize) -> bool {
        matches!(self.ops[op], StrOp::Get(_))
    }
    fn step(&mut self, s: u32, op: usize) -> Option<u32> {
        match &self.ops[op] {
            StrOp::Get(v) => (self.states[s as usize] == *v).then_some(s),
            StrOp::Put(v) => {
                let v = v.clone();
                Some(self.intern(v))
            }
            StrOp::Append(v) => {
                if let Some(&n) = self.appended.get(&(s, op as u32)) {
                    return Some(n);
                }
                let joined = format!("{}{}", self.states[s as usize], v);
                let n = self.intern(joined);
                self.appended.insert((s, op as u32), n);
                Some(n)
            }
        }
    }
}

const P61: u64 = (1 << 61) - 1;
const BASES: [u64; 2] = [0x1F3D_5B79_A2C4_E681 % P61, 0x0B5A_D4EC_EDA1_CE2B % P61];

fn mulmod(a: u64, b: u64) -> u64 {
    let r = (a as u128) * (b as u128);
    let lo = (r as u64) & P61;
    let hi = (r >> 61) as u64;
    let s = lo + hi;
    if s >= P61 {
        s - P61
    } else {
        s
    }
}

/// A string's fingerprint: its length and two polynomial hashes modulo
/// 2^61-1, plus base^len for concatenation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Sig {
    len: u64,
    h: [u64; 2],
}

fn sig_of(s: &str) -> (Sig, [u64; 2]) {
    let mut h = [0u64; 2];
    let mut p = [1u64; 2];
    for &b in s.as_bytes() {
        for k in 0..2 {
            h[k] = (mulmod(h[k], BASES[k]) + b as u64 + 1) % P61;
            p[k] = mulmod(p[k], BASES[k]);
        }
    }
    (
        Sig {
            len: s.len() as u64,
            h,
        },
        p,
    )
}

/// The string register with states as fingerprints: a step is O(1) however
/// long the strings grow. Fingerprints could in principle collide, so a
/// `valid` answer is confirmed by replaying its witness on exact strings
/// (`StringSpec::replay`) and an `invalid` one is re-run exactly.
pub struct HashedStringSpec {
    kinds: Vec<(u8, Sig, [u64; 2])>,
    states: Vec<Sig>,
    ids: HashMap<Sig, u32>,
    appended: HashMap<(u32, u32), u32>,
}

impl HashedStringSpec {
    fn is_get(&self, op: usize) -> bool {
        self.kinds[op].0 == 0
    }

    pub fn new(ops: &[StrOp]) -> Self {
        let kinds = ops
            .iter()
            .map(|o| {
                let (k, v) = match o {
                    StrOp::Get(v) => (0, v),
                    StrOp::Put(v) => (1, v),
                    StrOp::Append(v) => (2, v),
                };
                let (sig, pow) = sig_of(v);
                (k, sig, pow)
            })
            .collect();
        let mut s = HashedStringSpec {
            kinds,
            states: Vec::new(),
            ids: HashMap::default(),
            appended: HashMap::default(),
        };
        s.intern(sig_of("").0);
        s
    }
    fn intern(&mut self, sig: Sig) -> u32 {
        let next = self.states.len() as u32;
        let id = *self.ids.entry(sig).or_insert(next);
        if id == next {
            self.states.push(sig);
        }
        id
    }
}

impl Spec for HashedStringSpec {
    fn init(&mut self) -> u32 {
        0
    }
    fn read_only(&self, op: usize) -> bool {
        self.is_get(op)
    }
    fn step(&mut self, s: u32, op: usize) -> Option<u32> {
        let (kind, sig, pow) = self.kinds[op];
        match kind {
            0 => (self.states[s as usize] == sig).then_some(s),
            1 => Some(self.intern(sig)),
            _ => {
                if let Some(&n) = self.appended.get(&(s, op as u32)) {
                    return Some(n);
                }
                let cur = self.states[s as usize];
                let mut h = [0u64; 2];
                for k in 0..2 {
                    h[k] = (mulmod(cur.h[k], pow[k]) + sig.h[k]) % P61;
                }
                let n = self.intern(Sig {
                    len: cur.len + sig.len,
                    h,
                });
                self.appended.insert((s, op as u32), n);
                Some(n)
            }
        }
    }
}

/// Time bounds of an op for the search: `fail` ops never reach here.
pub fn search_op(op: &Op) -> SearchOp {
    match (op.outcome, op.complete_time) {
        (Outcome::Ok, Some(t)) => SearchOp {
            call: op.invoke_time,
            ret: t,
            optional: false,
        },
        _ => SearchOp {
            call: op.invoke_time,
            ret: u64::MAX,
            optional: true,
        },
    }
}

/// Reads a register op from a history op. `Ok(None)` means the op
/// constrains nothing and is left out (a `fail`, an unknown read).
pub fn register_op(op: &Op, interner: &mut Interner) -> Result<Option<RegOp>, String> {
    if op.outcome == Outcome::Fail {
        return Ok(None);
    }
    match op.f.as_str() {
        "read" | "get" => {
            if op.outcome != Outcome::Ok {
                return Ok(None);
            }
            Ok(Some(RegOp::Read(interner.intern(&op.output))))
        }
        "write" | "put" => Ok(Some(RegOp::Write(interner.intern(&op.input)))),
        "cas" => match op.input.as_array().map(|a| a.as_slice()) {
            Some([a, b]) => Ok(Some(RegOp::Cas(
                interner.intern(a),
                interner.intern(b),
                op.outcome == Outcome::Ok,
            ))),
            _ => Err(format!("cas value must be [from, to], got {}", op.input)),
        },
        other => Err(format!(
            "the register model has no operation {other:?} (expected read, write or cas)"
        )),
    }
}

/// Reads a string-kv op. Unknown gets constrain nothing.
pub fn string_op(op: &Op) -> Result<Option<StrOp>, String> {
    if op.outcome == Outcome::Fail {
        return Ok(None);
    }
    let text = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            other => Err(format!("kv-string values are strings, got {other}")),
        }
    };
    match op.f.as_str() {
        "get" | "read" => {
            if op.outcome != Outcome::Ok {
                return Ok(None);
            }
            Ok(Some(StrOp::Get(text(&op.output)?)))
        }
        "put" | "write" => Ok(Some(StrOp::Put(text(&op.input)?))),
        "append" => Ok(Some(StrOp::Append(text(&op.input)?))),
        other => Err(format!(
            "the kv-string model has no operation {other:?} (expected get, put or append)"
        )),
    }
}
