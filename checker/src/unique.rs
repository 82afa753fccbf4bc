//! The fast path for register histories whose values are unique (each
//! value written by at most one op, never the initial one), as faultline's
//! workloads write them. Then a read names the write it read from, and the
//! question changes shape (Gibbons and Korach, "Testing shared memories",
//! 1997, the read-mapping case): order the *writes*, each with its readers
//! as one cluster, instead of every op.
//!
//! - A cluster is a value's writer and the reads of that value; the writer
//!   goes first, the reads after it in any order.
//! - A successful cas from `a` to `b` read state `a`, so it directly
//!   follows cluster `a` and writes cluster `b`: clusters joined by cas are
//!   one *unit*, in a fixed order (the chain constraint).
//! - An indeterminate (`info`) write or cas takes effect if some kept op
//!   depends on its value (a read of it, a cas from it) and is otherwise
//!   dropped: a write nobody observes can always be left out.
//! - A unit occupies a contiguous stretch of the linearization. With `F`
//!   its earliest completion and `S` its latest invocation, unit U may
//!   precede V only if `S(U) <= F(V)`. Sorting by `(min(F,S), max(F,S))`
//!   respects every such constraint whenever any order does (two units
//!   that must each precede the other are the only obstruction), so one
//!   sort and one pass decide the order.
//!
//! The fast path only ever answers "linearizable", with a witness that is
//! checked against the register before it is believed. Anything else
//! (values not unique, a value with two successors, an order that fails)
//! goes to the exact search, which decides it and explains a violation as
//! it always has.

use crate::models::RegOp;
use crate::search::{SearchOp, Spec};

/// The fast path's answer for one partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Fast {
    /// Linearizable: the kept ops in a legal order (dropped info ops left out).
    Valid(Vec<usize>),
    /// Not decided here, and why: the exact search decides.
    Undecided(&'static str),
}

/// The initial value's id (the absent value).
const INIT: u32 = 0;

/// A unit: its ops in the order they take effect.
struct Unit {
    /// The initial value's unit, which precedes every other.
    init: bool,
    seq: Vec<usize>,
    /// Earliest completion and latest invocation of any op in the unit.
    f: u64,
    s: u64,
}

/// Who writes and who reads each value, and which ops must take effect.
struct Graph {
    writer: Vec<Option<usize>>,
    readers: Vec<Vec<usize>>,
    /// The kept cas that reads each value (at most one may).
    next: Vec<Option<usize>>,
    kept: Vec<bool>,
}

fn build(ops: &[RegOp], times: &[SearchOp]) -> Result<Graph, &'static str> {
    let nvals = crate::models::value_count(ops);
    let mut writer = vec![None; nvals];
    let mut readers = vec![Vec::new(); nvals];
    for (i, op) in ops.iter().enumerate() {
        if let Some(v) = op.writes() {
            if v == INIT || writer[v as usize].replace(i).is_some() {
                return Err("values are not unique");
            }
        }
        if let RegOp::Read(v) = op {
            readers[*v as usize].push(i);
        }
    }
    // Kept: every definite op, and every op a kept op depends on (the
    // writer of a value read, or of a value a kept cas reads).
    let mut kept: Vec<bool> = times.iter().map(|t| !t.optional).collect();
    let mut work: Vec<usize> = (0..ops.len()).filter(|&i| kept[i]).collect();
    // Bounded: each op enters the worklist at most once.
    while let Some(i) = work.pop() {
        let needs = match ops[i] {
            RegOp::Read(v) | RegOp::Cas(v, _, _) => v,
            RegOp::Write(_) => continue,
        };
        if needs == INIT {
            continue;
        }
        match writer[needs as usize] {
            Some(w) if !kept[w] => {
                kept[w] = true;
                work.push(w);
            }
            Some(_) => {}
            None => return Err("a value is read that nothing writes"),
        }
    }
    let mut next = vec![None; nvals];
    for (i, op) in ops.iter().enumerate() {
        if let (RegOp::Cas(a, _, _), true) = (op, kept[i]) {
            if next[*a as usize].replace(i).is_some() {
                return Err("two kept cas ops read the same value");
            }
        }
    }
    Ok(Graph {
        writer,
        readers,
        next,
        kept,
    })
}

/// The units: each starts at the initial value or at a kept write, and
/// follows the cas chain from there.
fn units(ops: &[RegOp], times: &[SearchOp], g: &Graph) -> Result<Vec<Unit>, &'static str> {
    let mut heads: Vec<u32> = vec![INIT];
    for (i, op) in ops.iter().enumerate() {
        if let (RegOp::Write(v), true) = (op, g.kept[i]) {
            heads.push(*v);
        }
    }
    let mut placed = 0usize;
    let mut out = Vec::with_capacity(heads.len());
    for head in heads {
        // The initial value's unit starts with a virtual write at time 0.
        let (mut f, mut s) = if head == INIT { (0, 0) } else { (u64::MAX, 0) };
        let mut seq = Vec::new();
        let mut v = head;
        // Bounded: values are unique, so a chain visits each value once.
        for _ in 0..=ops.len() {
            if let Some(w) = g.writer[v as usize].filter(|_| v != INIT) {
                seq.push(w);
            }
            let mut reads = g.readers[v as usize].clone();
            // Earliest deadline first: the order that fits whenever any does.
            reads.sort_by_key(|&r| (times[r].ret, times[r].call));
            seq.extend(reads);
            match g.next[v as usize] {
                Some(c) => {
                    v = ops[c].writes().expect("a cas writes");
                }
                None => break,
            }
        }
        for &i in &seq {
            f = f.min(times[i].ret);
            s = s.max(times[i].call);
        }
        placed += seq.len();
        out.push(Unit {
            init: head == INIT,
            seq,
            f,
            s,
        });
    }
    if placed != g.kept.iter().filter(|&&k| k).count() {
        // A kept op outside every chain: a cas chain that loops back.
        return Err("a cas chain does not start at a write");
    }
    Ok(out)
}

/// Points in time for `seq` in order, each no earlier than the last and
/// inside its op's interval: possible iff no op is invoked after a later
/// one has returned.
fn fits(seq: &[usize], times: &[SearchOp], mut latest_call: u64) -> Option<u64> {
    for &i in seq {
        latest_call = latest_call.max(times[i].call);
        if latest_call > times[i].ret {
            return None;
        }
    }
    Some(latest_call)
}

/// Decides `ops` (with their times, after the prepass) if it can; a valid
/// answer carries a witness replayed on `spec`.
pub fn decide(ops: &[RegOp], times: &[SearchOp], spec: &mut dyn Spec) -> Fast {
    let g = match build(ops, times) {
        Ok(g) => g,
        Err(why) => return Fast::Undecided(why),
    };
    let mut units = match units(ops, times, &g) {
        Ok(u) => u,
        Err(why) => return Fast::Undecided(why),
    };
    units.sort_by_key(|u| (!u.init, u.f.min(u.s), u.f.max(u.s)));
    let mut latest_call = 0;
    let mut witness = Vec::with_capacity(ops.len());
    for u in &units {
        match fits(&u.seq, times, latest_call) {
            Some(t) => latest_call = t,
            None => return Fast::Undecided("no order of the writes fits"),
        }
        witness.extend_from_slice(&u.seq);
    }
    if !crate::search::replays(spec, &witness) {
        return Fast::Undecided("the witness does not replay");
    }
    Fast::Valid(witness)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::RegisterSpec;

    fn t(call: u64, ret: u64) -> SearchOp {
        SearchOp {
            call,
            ret,
            optional: false,
        }
    }

    fn info(call: u64) -> SearchOp {
        SearchOp {
            call,
            ret: u64::MAX,
            optional: true,
        }
    }

    fn decide_ops(ops: &[RegOp], times: &[SearchOp]) -> Fast {
        let mut spec = RegisterSpec::new(ops.to_vec());
        decide(ops, times, &mut spec)
    }

    #[test]
    fn concurrent_writes_are_ordered_by_their_readers() {
        use RegOp::*;
        // w1 and w2 overlap; a read of 2 and then a read of 1, both while
        // the writes are under way, put w2 first.
        let ops = [Write(1), Write(2), Read(2), Read(1)];
        let times = [t(0, 10), t(0, 10), t(1, 3), t(5, 8)];
        assert_eq!(decide_ops(&ops, &times), Fast::Valid(vec![1, 2, 0, 3]));
        // Once both writes have completed the value is settled: reading 2
        // and then 1 after that has no order, and is left to the exact
        // search (which explains it).
        let times = [t(0, 10), t(0, 10), t(11, 12), t(13, 14)];
        assert!(matches!(decide_ops(&ops, &times), Fast::Undecided(_)));
    }

    #[test]
    fn cas_chains_keep_their_order_and_info_ops_are_kept_only_when_observed() {
        use RegOp::*;
        // w1, then cas 1->2 (ok), a read of 2; an info write of 3 nobody
        // read is dropped; an info cas 2->4 read by someone takes effect.
        let ops = [
            Write(1),
            Cas(1, 2, true),
            Read(2),
            Write(3),
            Cas(2, 4, false),
            Read(4),
        ];
        let times = [t(0, 5), t(6, 9), t(10, 12), info(7), info(11), t(20, 21)];
        match decide_ops(&ops, &times) {
            Fast::Valid(w) => assert_eq!(w, vec![0, 1, 2, 4, 5]),
            u => panic!("{u:?}"),
        }
        // Two successful cas from the same value cannot both happen.
        let ops = [Write(1), Cas(1, 2, true), Cas(1, 3, true)];
        let times = [t(0, 1), t(2, 3), t(4, 5)];
        assert!(matches!(decide_ops(&ops, &times), Fast::Undecided(_)));
        // A value written twice is not for the fast path.
        let ops = [Write(1), Write(1)];
        let times = [t(0, 1), t(2, 3)];
        assert_eq!(
            decide_ops(&ops, &times),
            Fast::Undecided("values are not unique")
        );
        // Reads of the initial value come first.
        let ops = [Read(0), Write(1), Read(1)];
        let times = [t(5, 6), t(0, 10), t(11, 12)];
        assert_eq!(decide_ops(&ops, &times), Fast::Valid(vec![0, 1, 2]));
        let times = [t(11, 12), t(0, 10), t(5, 6)];
        assert!(matches!(decide_ops(&ops, &times), Fast::Undecided(_)));
    }
}
