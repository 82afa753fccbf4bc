//! The exact linearizability search for one partition (one key).
//!
//! Wing & Gong's algorithm with Lowe's just-in-time linearization and a memo
//! of (linearized set, model state), as in Porcupine, plus one extension:
//! *optional* operations. An `info` operation may take effect at any time
//! after its invocation, or never. Its return entry is placed at a bound
//! (infinity, or a tighter bound the prepass proved) and when the search
//! reaches that entry with the op still unlinearized, the op is dropped
//! ("never happened") instead of forcing a backtrack.
//!
//! The model is abstract here: states are `u32` ids and a `Spec` steps them.

use hashbrown::HashTable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One operation as the search sees it.
#[derive(Debug, Clone, Copy)]
pub struct SearchOp {
    pub call: u64,
    /// `u64::MAX` when unbounded.
    pub ret: u64,
    /// May be dropped (it never took effect) when its return entry is reached.
    pub optional: bool,
}

/// The sequential specification, stepping interned states.
pub trait Spec {
    fn init(&mut self) -> u32;
    /// The state after applying `op` to `state`, or `None` when illegal.
    fn step(&mut self, state: u32, op: usize) -> Option<u32>;

    /// True for ops that leave every state unchanged (reads). A legal
    /// pending read can be linearized at once without loss of generality:
    /// it changes nothing, and every op that must precede it is already
    /// linearized (it is pending). So the search takes it without branching.
    fn read_only(&self, _op: usize) -> bool {
        false
    }

    /// Called when the search linearizes (or, with `dropped`, removes) `op`,
    /// moving from state `from` to `to`. Returning false declares the move a
    /// dead end (the spec has proven no completion exists), and the spec
    /// must then leave its bookkeeping as it was.
    fn enter(&mut self, _op: usize, _dropped: bool, _from: u32, _to: u32) -> bool {
        true
    }

    /// Undoes a successful `enter`, in LIFO order.
    fn exit(&mut self, _op: usize, _dropped: bool) {}
}

/// Forwards to a spec without its dead-end pruning, so that a failing
/// search gets stuck where a person would: at the op that cannot follow,
/// not at an earlier move the prune already knew was hopeless.
pub struct NoPrune<'a>(pub &'a mut dyn Spec);

impl Spec for NoPrune<'_> {
    fn init(&mut self) -> u32 {
        self.0.init()
    }
    fn step(&mut self, state: u32, op: usize) -> Option<u32> {
        self.0.step(state, op)
    }
    fn read_only(&self, op: usize) -> bool {
        self.0.read_only(op)
    }
}

/// Whether `order` is legal for `spec` from its initial state.
pub fn replays(spec: &mut dyn Spec, order: &[usize]) -> bool {
    let mut state = spec.init();
    for &op in order {
        match spec.step(state, op) {
            Some(s) => state = s,
            None => return false,
        }
    }
    true
}

/// Limits on one search; exceeding them yields `Outcome::Unknown`.
#[derive(Debug, Clone, Default)]
pub struct Budget<'a> {
    pub deadline: Option<Instant>,
    /// Most memo entries kept before giving up (a memory bound).
    pub max_cache_entries: Option<usize>,
    /// Set by another partition that already found a violation.
    pub cancel: Option<&'a AtomicBool>,
}

/// The deepest point the search reached before every order failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Stuck {
    /// Ops linearized, in order (dropped optional ops excluded).
    pub prefix: Vec<usize>,
    /// Model state after the prefix.
    pub state: u32,
    /// The op whose completion was reached while it could not be linearized.
    pub blocked: usize,
    /// Ops that were invoked (and not yet linearized) at that point: each
    /// was tried next and failed.
    pub candidates: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// With a witness: the linearized ops in order (dropped ones excluded).
    Linearizable(Vec<usize>),
    Illegal(Stuck),
    Unknown(String),
}

/// How an op left the pending window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Chosen among alternatives: on backtrack, try the next candidate.
    Chosen,
    /// A read taken greedily: no alternative at its level.
    Forced,
    /// An optional op removed at its bound: no alternative either.
    Dropped,
}

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

/// Entries of the doubly linked list of calls and returns.
struct Entries {
    next: Vec<u32>,
    prev: Vec<u32>,
    op: Vec<u32>,
    is_call: Vec<bool>,
    /// For a call, its return entry; for a return, its call entry.
    mate: Vec<u32>,
}

impl Entries {
    fn build(ops: &[SearchOp]) -> Entries {
        // Sort key: time, then calls before returns (equal times are
        // concurrent, the permissive reading), then optional returns last so
        // an op is dropped only after every definite return at that instant.
        let mut order: Vec<(u64, u8, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            assert!(o.ret >= o.call, "op {i} returns before it is called");
            order.push((o.call, 0, i as u32));
            order.push((o.ret, if o.optional { 2 } else { 1 }, i as u32));
        }
        order.sort_unstable();
        let n = order.len() + 1;
        let mut e = Entries {
            next: vec![NIL; n],
            prev: vec![NIL; n],
            op: vec![NIL; n],
            is_call: vec![false; n],
            mate: vec![NIL; n],
        };
        let mut call_at = vec![NIL; ops.len()];
        for (pos, &(_, kind, op)) in order.iter().enumerate() {
            let idx = (pos + 1) as u32;
            e.op[idx as usize] = op;
            e.is_call[idx as usize] = kind == 0;
            e.prev[idx as usize] = idx - 1;
            e.next[(idx - 1) as usize] = idx;
            if kind == 0 {
                call_at[op as usize] = idx;
            } else {
                let c = call_at[op as usize];
                e.mate[idx as usize] = c;
                e.mate[c as usize] = idx;
            }
        }
        e
    }

    fn unlink(&mut self, i: u32) {
        let (p, n) = (self.prev[i as usize], self.next[i as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, i: u32) {
        let (p, n) = (self.prev[i as usize], self.next[i as usize]);
        self.next[p as usize] = i;
        if n != NIL {
            self.prev[n as usize] = i;
        }
    }

    /// Removes a call entry and its return from the list.
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        self.unlink(self.mate[call as usize]);
    }

    /// Exact inverse of `lift`, valid in LIFO order.
    fn unlift(&mut self, call: u32) {
        self.relink(self.mate[call as usize]);
        self.relink(call);
    }
}

/// The memo of visited (linearized set, state) configurations. Bitsets live
/// in one arena so that a lookup allocates nothing and an entry costs two
/// words plus the bitset.
struct Memo {
    table: HashTable<(u64, u32, u32)>, // (hash, state, arena offset / words)
    arena: Vec<u64>,
    words: usize,
}

impl Memo {
    fn new(words: usize) -> Memo {
        Memo {
            table: HashTable::new(),
            arena: Vec::new(),
            words,
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// Inserts the configuration; false when it was already there.
    fn insert(&mut self, hash: u64, state: u32, bits: &[u64]) -> bool {
        let (arena, w) = (&self.arena, self.words);
        let found = self
            .table
            .find(hash, |&(h, s, off)| {
                h == hash && s == state && &arena[off as usize * w..off as usize * w + w] == bits
            })
            .is_some();
        if found {
            return false;
        }
        let off = (self.arena.len() / w) as u32;
        self.arena.extend_from_slice(bits);
        self.table
            .insert_unique(hash, (hash, state, off), |&(h, _, _)| h);
        true
    }
}

/// splitmix64: a fixed, well-mixed sequence for Zobrist hashing.
fn zobrist(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

fn mix_state(h: u64, state: u32) -> u64 {
    h ^ (state as u64)
        .wrapping_mul(0xD6E8_FEB8_6659_FD93)
        .rotate_left(17)
}

/// Decides whether `ops` are linearizable with respect to `spec`.
pub fn check(ops: &[SearchOp], spec: &mut dyn Spec, budget: &Budget) -> Outcome {
    let n = ops.len();
    if n == 0 {
        return Outcome::Linearizable(Vec::new());
    }
    assert!(n < (u32::MAX / 2 - 1) as usize, "partition too large");
    let mut list = Entries::build(ops);
    let z = zobrist(n);
    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut hash: u64 = 0;
    let mut state = spec.init();
    // (call entry, state before, move kind)
    let mut stack: Vec<(u32, u32, Move)> = Vec::with_capacity(n);
    let mut memo = Memo::new(bits.len());
    let mut best: Option<Stuck> = None;
    let mut best_depth: usize = 0;
    let mut linearized_depth: usize = 0;
    let mut cursor = list.next[HEAD as usize];
    let mut steps: u64 = 0;

    macro_rules! try_enter {
        ($op:expr, $new_state:expr) => {{
            let op = $op as usize;
            bits[op / 64] |= 1 << (op % 64);
            hash ^= z[op];
            if memo.insert(mix_state(hash, $new_state), $new_state, &bits) {
                true
            } else {
                bits[op / 64] &= !(1 << (op % 64));
                hash ^= z[op];
                false
            }
        }};
    }

    macro_rules! untry {
        ($op:expr) => {{
            let op = $op as usize;
            bits[op / 64] &= !(1 << (op % 64));
            hash ^= z[op];
        }};
    }

    loop {
        if list.next[HEAD as usize] == NIL {
            return Outcome::Linearizable(
                stack
                    .iter()
                    .filter(|s| s.2 != Move::Dropped)
                    .map(|s| list.op[s.0 as usize] as usize)
                    .collect(),
            );
        }
        steps += 1;
        if steps & 0xFFF == 0 {
            if let Some(c) = budget.cancel {
                if c.load(Ordering::Relaxed) {
                    return Outcome::Unknown("cancelled: another partition already failed".into());
                }
            }
            if let Some(d) = budget.deadline {
                if Instant::now() >= d {
                    return Outcome::Unknown(format!("time budget exhausted after {steps} steps"));
                }
            }
            if let Some(m) = budget.max_cache_entries {
                if memo.len() > m {
                    return Outcome::Unknown(format!(
                        "memory budget exhausted: {} memo entries",
                        memo.len()
                    ));
                }
            }
        }
        debug_assert!(cursor != NIL, "the list always ends in a return entry");
        let mut dead = false;
        if cursor == list.next[HEAD as usize] {
            // A fresh configuration: take a legal pending read first. If
            // that fails (memo hit or dead end), so does this configuration.
            let mut forced = false;
            let mut c = cursor;
            while c != NIL && list.is_call[c as usize] {
                let op = list.op[c as usize] as usize;
                if spec.read_only(op) && spec.step(state, op) == Some(state) {
                    if try_enter!(op, state) {
                        if spec.enter(op, false, state, state) {
                            stack.push((c, state, Move::Forced));
                            linearized_depth += 1;
                            list.lift(c);
                            forced = true;
                        } else {
                            untry!(op);
                        }
                    }
                    dead = !forced;
                    break;
                }
                c = list.next[c as usize];
            }
            if forced {
                cursor = list.next[HEAD as usize];
                continue;
            }
        }
        if !dead {
            let e = cursor;
            let op = list.op[e as usize];
            if list.is_call[e as usize] {
                if let Some(ns) = spec.step(state, op as usize) {
                    if try_enter!(op, ns) {
                        if spec.enter(op as usize, false, state, ns) {
                            stack.push((e, state, Move::Chosen));
                            linearized_depth += 1;
                            state = ns;
                            list.lift(e);
                            cursor = list.next[HEAD as usize];
                            continue;
                        }
                        // Dead end: the memo keeps the configuration as
                        // visited; the search stays where it was.
                        untry!(op);
                    }
                }
                cursor = list.next[e as usize];
                continue;
            }
            // A return entry: its op must be linearized by now.
            if ops[op as usize].optional {
                if try_enter!(op, state) {
                    if spec.enter(op as usize, true, state, state) {
                        let call = list.mate[e as usize];
                        stack.push((call, state, Move::Dropped));
                        list.lift(call);
                        cursor = list.next[HEAD as usize];
                        continue;
                    }
                    untry!(op);
                }
            } else if best.is_none() || linearized_depth > best_depth {
                best_depth = linearized_depth;
                let mut candidates = Vec::new();
                let mut c = list.next[HEAD as usize];
                while c != NIL && c != e {
                    if list.is_call[c as usize] {
                        candidates.push(list.op[c as usize] as usize);
                    }
                    c = list.next[c as usize];
                }
                best = Some(Stuck {
                    prefix: stack
                        .iter()
                        .filter(|s| s.2 != Move::Dropped)
                        .map(|s| list.op[s.0 as usize] as usize)
                        .collect(),
                    state,
                    blocked: op as usize,
                    candidates,
                });
            }
        }
        // Backtrack to the most recent choice that has an alternative.
        loop {
            let Some((call, prev_state, how)) = stack.pop() else {
                return Outcome::Illegal(
                    best.expect("a failing search records where it got stuck"),
                );
            };
            let pop = list.op[call as usize] as usize;
            untry!(pop);
            state = prev_state;
            list.unlift(call);
            spec.exit(pop, how == Move::Dropped);
            if how != Move::Dropped {
                linearized_depth -= 1;
            }
            if how == Move::Chosen {
                cursor = list.next[call as usize];
                break;
            }
            // A forced read or a drop had no alternative: keep unwinding.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Register: op = (kind, a, b): 0 read a, 1 write a, 2 cas a->b.
    struct Reg(Vec<(u8, u32, u32)>);
    impl Spec for Reg {
        fn init(&mut self) -> u32 {
            0
        }
        fn step(&mut self, s: u32, op: usize) -> Option<u32> {
            let (k, a, b) = self.0[op];
            match k {
                0 => (s == a).then_some(s),
                1 => Some(a),
                _ => (s == a).then_some(b),
            }
        }
    }

    fn op(call: u64, ret: u64) -> SearchOp {
        SearchOp {
            call,
            ret,
            optional: false,
        }
    }

    #[test]
    fn sequential_history() {
        let ops = [op(0, 1), op(2, 3)];
        let mut spec = Reg(vec![(1, 5, 0), (0, 5, 0)]);
        assert!(matches!(
            check(&ops, &mut spec, &Budget::default()),
            Outcome::Linearizable(_)
        ));
    }

    #[test]
    fn stale_read_is_illegal_and_stuck_names_it() {
        // write 1; then write 2; then read 1.
        let ops = [op(0, 1), op(2, 3), op(4, 5)];
        let mut spec = Reg(vec![(1, 1, 0), (1, 2, 0), (0, 1, 0)]);
        match check(&ops, &mut spec, &Budget::default()) {
            Outcome::Illegal(s) => {
                assert_eq!(s.blocked, 2);
                assert_eq!(s.prefix, vec![0, 1]);
                assert_eq!(s.state, 2);
            }
            o => panic!("expected illegal, got {o:?}"),
        }
    }

    #[test]
    fn concurrent_ops_may_reorder() {
        // write 1 [0,10] concurrent with read 0 [1,2] -> read first.
        let ops = [op(0, 10), op(1, 2)];
        let mut spec = Reg(vec![(1, 1, 0), (0, 0, 0)]);
        assert!(matches!(
            check(&ops, &mut spec, &Budget::default()),
            Outcome::Linearizable(_)
        ));
    }

    #[test]
    fn optional_op_may_never_happen_or_happen_late() {
        // info write 1 at [0, inf); read 0 at [1,2]; read 1 at [3,4].
        let ops = [
            SearchOp {
                call: 0,
                ret: u64::MAX,
                optional: true,
            },
            op(1, 2),
            op(3, 4),
        ];
        let mut spec = Reg(vec![(1, 1, 0), (0, 0, 0), (0, 1, 0)]);
        assert!(matches!(
            check(&ops, &mut spec, &Budget::default()),
            Outcome::Linearizable(_)
        ));
        // read 1 then read 0: the write cannot be undone.
        let mut spec = Reg(vec![(1, 1, 0), (0, 1, 0), (0, 0, 0)]);
        assert!(matches!(
            check(&ops, &mut spec, &Budget::default()),
            Outcome::Illegal(_)
        ));
        // never happening is fine when nobody reads it.
        let ops = [
            SearchOp {
                call: 0,
                ret: u64::MAX,
                optional: true,
            },
            op(1, 2),
        ];
        let mut spec = Reg(vec![(1, 1, 0), (0, 0, 0)]);
        assert!(matches!(
            check(&ops, &mut spec, &Budget::default()),
            Outcome::Linearizable(_)
        ));
    }

    #[test]
    fn bounded_optional_op_is_dropped_at_its_bound() {
        // optional write 1 bounded at 2; read 0 at [3,4]: drop it.
        let ops = [
            SearchOp {
                call: 0,
                ret: 2,
                optional: true,
            },
            op(3, 4),
        ];
        let mut spec = Reg(vec![(1, 1, 0), (0, 0, 0)]);
        assert!(matches!(
            check(&ops, &mut spec, &Budget::default()),
            Outcome::Linearizable(_)
        ));
    }
}
