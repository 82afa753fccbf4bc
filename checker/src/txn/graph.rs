//! The dependency graph over transactions: typed edges (ww, wr, rw,
//! process, real-time), strongly connected components, and the most
//! specific cycle in each. Real-time order is kept linear in size: each
//! completion is a node on a time chain, a transaction points at its own
//! completion, and the last completion before a transaction's invocation
//! points at it, so T1 reaches T2 through the chain exactly when T1
//! completed before T2 began.

use std::collections::{HashMap, VecDeque};

use super::history::Txn;
use super::{Anomaly, Step};

pub const WW: u8 = 1;
pub const WR: u8 = 2;
pub const RW: u8 = 4;
pub const PROCESS: u8 = 8;
pub const REALTIME: u8 = 16;
/// ww and rw edges known only through real time (rw-register: a write
/// that completed before another began is the earlier version). They
/// count as ww and rw, but only in the real-time stages, so a cycle that
/// needs them is named `-realtime`.
pub const RT_WW: u8 = 32;
pub const RT_RW: u8 = 64;
pub const ALL: u8 = 127;
/// Edges that are anti-dependencies.
const ANY_RW: u8 = RW | RT_RW;

/// Why an edge exists, for the explanation.
#[derive(Debug, Clone, Copy)]
pub enum Why {
    /// `a` then `b` were appended to the key, in its version order.
    Ww {
        key: u32,
        a: i64,
        b: i64,
    },
    /// The read of the key ended in the append of `v`.
    Wr {
        key: u32,
        v: i64,
    },
    /// The read of the key ended at `last` (None: empty) and missed `next`.
    Rw {
        key: u32,
        last: Option<i64>,
        next: i64,
    },
    Process,
    Realtime,
}

#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub to: u32,
    pub kind: u8,
    pub why: Why,
}

pub struct Graph {
    /// Nodes `0..txns` are transactions (indices into the checked slice);
    /// the rest are time-chain nodes.
    pub txns: usize,
    pub adj: Vec<Vec<Edge>>,
    pub keys: Vec<String>,
    /// Edges visited by cycle searches: the budget's meter.
    pub work: u64,
    /// rw-register transactions (writes), not list-append ones (appends):
    /// only the wording of explanations differs.
    pub registers: bool,
}

/// Most edge visits the cycle searches of one check may make before the
/// answer becomes `unknown`.
pub const WORK_LIMIT: u64 = 2_000_000_000;

/// A cycle-search stage: the class it names, the edges it may use, and
/// whether it needs exactly one rw edge (`single`) or at least one (`rw`).
struct Stage {
    class: &'static str,
    mask: u8,
    need: Need,
}

#[derive(PartialEq)]
enum Need {
    Any,
    SingleRw,
    /// At least two rw edges, no two of them adjacent.
    NonadjacentRw,
    SomeRw,
}

/// Most specific first: G0 (write cycles), G1c (write-read), G-single (one
/// anti-dependency), G2-item (several); first on data edges alone, then
/// with process order, then with real-time order too.
const STAGES: [Stage; 15] = {
    const fn s(class: &'static str, mask: u8, need: Need) -> Stage {
        Stage { class, mask, need }
    }
    const P: u8 = PROCESS;
    const R: u8 = PROCESS | REALTIME | RT_WW;
    [
        s("G0", WW, Need::Any),
        s("G1c", WW | WR, Need::Any),
        s("G-single-item", WW | WR, Need::SingleRw),
        s("G-nonadjacent-item", WW | WR | RW, Need::NonadjacentRw),
        s("G2-item", WW | WR | RW, Need::SomeRw),
        s("G0-process", WW | P, Need::Any),
        s("G1c-process", WW | WR | P, Need::Any),
        s("G-single-item-process", WW | WR | P, Need::SingleRw),
        s(
            "G-nonadjacent-item-process",
            WW | WR | RW | P,
            Need::NonadjacentRw,
        ),
        s("G2-item-process", WW | WR | RW | P, Need::SomeRw),
        s("G0-realtime", WW | R, Need::Any),
        s("G1c-realtime", WW | WR | R, Need::Any),
        s("G-single-item-realtime", WW | WR | R, Need::SingleRw),
        s("G-nonadjacent-item-realtime", ALL, Need::NonadjacentRw),
        s("G2-item-realtime", ALL, Need::SomeRw),
    ]
};

impl Graph {
    pub fn new(txns: usize) -> Graph {
        Graph {
            txns,
            adj: vec![Vec::new(); txns],
            keys: Vec::new(),
            work: 0,
            registers: false,
        }
    }

    pub fn add(&mut self, from: usize, to: usize, kind: u8, why: Why) {
        if from != to {
            self.adj[from].push(Edge {
                to: to as u32,
                kind,
                why,
            });
        }
    }

    /// Memory the adjacency lists take.
    pub fn bytes(&self) -> u64 {
        let edges: usize = self.adj.iter().map(Vec::capacity).sum();
        (edges * std::mem::size_of::<Edge>() + self.adj.len() * std::mem::size_of::<Vec<Edge>>())
            as u64
    }

    /// Adds real-time order (see the module doc) and process order.
    pub fn add_order(&mut self, txns: &[Txn], nodes: &[usize]) {
        let mut by_process: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        for &i in nodes {
            by_process.entry(&txns[i].process).or_default().push(i);
        }
        for list in by_process.values_mut() {
            list.sort_by_key(|&i| txns[i].invoke_time);
            for w in list.windows(2) {
                self.add(w[0], w[1], PROCESS, Why::Process);
            }
        }
        let mut completions: Vec<(u64, usize)> = nodes
            .iter()
            .filter_map(|&i| txns[i].complete_time.map(|t| (t, i)))
            .collect();
        completions.sort_unstable();
        let first_time_node = self.adj.len();
        for (k, &(_, i)) in completions.iter().enumerate() {
            self.adj.push(Vec::new());
            let node = first_time_node + k;
            self.add(i, node, REALTIME, Why::Realtime);
            if k > 0 {
                self.add(node - 1, node, REALTIME, Why::Realtime);
            }
        }
        for &j in nodes {
            let before = completions.partition_point(|(t, _)| *t < txns[j].invoke_time);
            if before > 0 {
                self.add(first_time_node + before - 1, j, REALTIME, Why::Realtime);
            }
        }
    }

    /// Strongly connected components over edges in `mask`, among nodes
    /// where `member` holds (iterative Tarjan).
    fn sccs_within(&self, mask: u8, member: &dyn Fn(usize) -> bool) -> Vec<Vec<usize>> {
        let n = self.adj.len();
        let (mut index, mut low) = (vec![u32::MAX; n], vec![0u32; n]);
        let mut on_stack = vec![false; n];
        let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0u32);
        for root in (0..n).filter(|&r| member(r)) {
            if index[root] != u32::MAX {
                continue;
            }
            let mut call: Vec<(usize, usize)> = vec![(root, 0)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut ei)) = call.last_mut() {
                if let Some(e) = self.adj[v].get(*ei) {
                    *ei += 1;
                    let w = e.to as usize;
                    if e.kind & mask == 0 || !member(w) {
                        continue;
                    }
                    if index[w] == u32::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        call.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(comp);
                }
            }
        }
        out
    }

    /// Components over `mask` edges with more than one transaction (time
    /// nodes included).
    pub fn sccs(&self, mask: u8) -> Vec<Vec<usize>> {
        self.sccs_within(mask, &|_| true)
            .into_iter()
            .filter(|c| c.iter().filter(|&&v| v < self.txns).count() > 1)
            .collect()
    }

    /// The transactions of a component.
    pub fn txns_of(&self, scc: &[usize]) -> usize {
        scc.iter().filter(|&&v| v < self.txns).count()
    }

    /// The most specific cycle in `scc` (a component over all edges),
    /// explained.
    pub fn most_specific_cycle(&mut self, scc: &[usize], txns: &[Txn]) -> Option<Anomaly> {
        let mut member = vec![false; self.adj.len()];
        for &v in scc {
            member[v] = true;
        }
        for stage in &STAGES {
            if self.work > WORK_LIMIT {
                return None;
            }
            let found = match stage.need {
                Need::SingleRw => self.single_rw_cycle(stage.mask, &member),
                Need::NonadjacentRw => self.nonadjacent_rw_cycle(stage.mask, &member),
                _ => self.cycle_with(stage.mask, stage.need == Need::SomeRw, &member),
            };
            if let Some(cycle) = found {
                return Some(self.explain(stage.class, &cycle, txns));
            }
        }
        None
    }

    /// Components over `mask` edges among members, and each node's
    /// component (`usize::MAX` for non-members).
    fn components(&self, mask: u8, member: &[bool]) -> (Vec<Vec<usize>>, Vec<usize>) {
        let comps = self.sccs_within(mask, &|v| member[v]);
        let mut comp_of = vec![usize::MAX; self.adj.len()];
        for (c, vs) in comps.iter().enumerate() {
            for &v in vs {
                comp_of[v] = c;
            }
        }
        (comps, comp_of)
    }

    /// A cycle over `mask` edges (with an rw edge when `rw`), as the list
    /// of edges (from, edge).
    fn cycle_with(&mut self, mask: u8, rw: bool, member: &[bool]) -> Option<Vec<(usize, Edge)>> {
        let (_, comp_of) = self.components(mask, member);
        for (u, edges) in self.adj.iter().enumerate().filter(|(u, _)| member[*u]) {
            for e in edges {
                let v = e.to as usize;
                let kind_ok = if rw {
                    e.kind & ANY_RW & mask != 0
                } else {
                    e.kind & mask != 0
                };
                if kind_ok && comp_of[u] != usize::MAX && comp_of[u] == comp_of[v] {
                    let (u, e) = (u, *e);
                    let path = self.path(v, u, mask, member)?;
                    return Some(std::iter::once((u, e)).chain(path).collect());
                }
            }
        }
        None
    }

    /// A cycle of exactly one rw edge u -> v closed by a path v ~> u over
    /// `mask` edges (which exclude rw). Targets are grouped by the
    /// component they sit in, so each component is searched from once.
    fn single_rw_cycle(&mut self, mask: u8, member: &[bool]) -> Option<Vec<(usize, Edge)>> {
        // Anti-dependencies known only through real time count in the
        // real-time stages.
        let rw_kinds = if mask & REALTIME != 0 { ANY_RW } else { RW };
        let (comps, comp_of) = self.components(mask, member);
        let mut by_target: Vec<Vec<(usize, Edge)>> = vec![Vec::new(); comps.len()];
        for (u, edges) in self.adj.iter().enumerate().filter(|(u, _)| member[*u]) {
            for e in edges
                .iter()
                .filter(|e| e.kind & ANY_RW & rw_kinds != 0 && member[e.to as usize])
            {
                by_target[comp_of[e.to as usize]].push((u, *e));
            }
        }
        let mut seen = vec![u32::MAX; self.adj.len()];
        for (c, rws) in by_target.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let start = comps[c][0];
            self.reach(start, mask, member, &mut seen, c as u32);
            if let Some(&(u, e)) = rws.iter().find(|(u, _)| seen[*u] == c as u32) {
                let path = self.path(e.to as usize, u, mask, member)?;
                return Some(std::iter::once((u, e)).chain(path).collect());
            }
        }
        None
    }

    /// A cycle whose rw edges (two or more, as no single-rw cycle exists
    /// once this runs) are never adjacent: from an rw edge u -> v, a
    /// search over (node, came by rw) states back to u, never taking an
    /// rw edge right after one, and arriving by a non-rw edge.
    fn nonadjacent_rw_cycle(&mut self, mask: u8, member: &[bool]) -> Option<Vec<(usize, Edge)>> {
        // Only rw edges on some cycle of `mask` edges can start one.
        let (_, comp_of) = self.components(mask, member);
        let starts: Vec<(usize, Edge)> = self
            .adj
            .iter()
            .enumerate()
            .filter(|(u, _)| member[*u])
            .flat_map(|(u, es)| {
                let comp_of = &comp_of;
                es.iter()
                    .filter(move |e| {
                        e.kind & ANY_RW & mask != 0 && comp_of[e.to as usize] == comp_of[u]
                    })
                    .map(move |e| (u, *e))
            })
            .collect();
        let n = self.adj.len();
        for (u, first) in starts {
            if self.work > WORK_LIMIT {
                return None;
            }
            // State s = node * 2 + (1 if entered by an rw edge).
            let mut prev: HashMap<usize, (usize, Edge)> = HashMap::new();
            let start = first.to as usize * 2 + 1;
            let mut q = VecDeque::from([start]);
            let mut seen = std::collections::HashSet::from([start]);
            let goal = u * 2;
            while let Some(st) = q.pop_front() {
                if st == goal {
                    let mut path = Vec::new();
                    let mut at = goal;
                    while let Some(&(p, e)) = prev.get(&at) {
                        path.push((p / 2, e));
                        at = p;
                    }
                    path.reverse();
                    return Some(std::iter::once((u, first)).chain(path).collect());
                }
                let (v, by_rw) = (st / 2, st % 2 == 1);
                for e in &self.adj[v] {
                    self.work += 1;
                    let w = e.to as usize;
                    let rw = e.kind & ANY_RW != 0;
                    if e.kind & mask == 0 || !member[w] || (rw && by_rw) {
                        continue;
                    }
                    let next = w * 2 + usize::from(rw);
                    if next < 2 * n && seen.insert(next) {
                        prev.insert(next, (st, *e));
                        q.push_back(next);
                    }
                }
            }
        }
        None
    }

    /// Marks with `stamp` every node reachable from `start` over `mask`.
    fn reach(&mut self, start: usize, mask: u8, member: &[bool], seen: &mut [u32], stamp: u32) {
        let mut todo = vec![start];
        seen[start] = stamp;
        while let Some(v) = todo.pop() {
            for e in &self.adj[v] {
                self.work += 1;
                let w = e.to as usize;
                if e.kind & mask != 0 && member[w] && seen[w] != stamp {
                    seen[w] = stamp;
                    todo.push(w);
                }
            }
        }
    }

    /// The shortest path from `from` to `to` over `mask` edges (BFS).
    fn path(
        &mut self,
        from: usize,
        to: usize,
        mask: u8,
        member: &[bool],
    ) -> Option<Vec<(usize, Edge)>> {
        let mut prev: Vec<Option<(usize, Edge)>> = vec![None; self.adj.len()];
        let mut seen = vec![false; self.adj.len()];
        let mut q = VecDeque::from([from]);
        seen[from] = true;
        while let Some(v) = q.pop_front() {
            if v == to {
                let mut out = Vec::new();
                let mut at = to;
                while let Some((p, e)) = prev[at] {
                    out.push((p, e));
                    at = p;
                }
                out.reverse();
                return Some(out);
            }
            for e in &self.adj[v] {
                self.work += 1;
                let w = e.to as usize;
                if e.kind & mask != 0 && member[w] && !seen[w] {
                    seen[w] = true;
                    prev[w] = Some((v, *e));
                    q.push_back(w);
                }
            }
        }
        None
    }

    /// The cycle as steps between transactions (time-chain hops folded
    /// into one real-time step), each with its reason.
    fn explain(&self, class: &str, cycle: &[(usize, Edge)], txns: &[Txn]) -> Anomaly {
        let mut steps: Vec<Step> = Vec::new();
        let mut from_txn: Option<usize> = None;
        for &(u, e) in cycle {
            if u < self.txns {
                from_txn = Some(u);
            }
            let v = e.to as usize;
            if v >= self.txns {
                continue;
            }
            let Some(f) = from_txn else { continue };
            steps.push(self.step(f, v, e, txns));
        }
        let names: Vec<u64> = steps.iter().map(|s| s.from).collect();
        let explanation = format!(
            "{class}: {}",
            steps
                .iter()
                .map(|s| format!("{} ({})", s.why, s.kind))
                .collect::<Vec<_>>()
                .join("; ")
        );
        Anomaly {
            class: class.to_string(),
            txns: names,
            steps,
            explanation,
        }
    }

    fn step(&self, from: usize, to: usize, e: Edge, txns: &[Txn]) -> Step {
        let (a, b) = (&txns[from], &txns[to]);
        let key = |k: u32| self.keys.get(k as usize).map_or("?", String::as_str);
        let (kind, why) = match e.why {
            Why::Ww { key: k, a: x, b: y } => (
                "ww",
                format!(
                    "T{} appended {x} to key {}, and T{} appended {y} right after it",
                    a.index,
                    key(k),
                    b.index
                ),
            ),
            Why::Wr { key: k, v } => (
                "wr",
                format!(
                    "T{} read key {} ending in T{}'s append of {v}",
                    b.index,
                    key(k),
                    a.index
                ),
            ),
            Why::Rw { key: k, last, next } => (
                "rw",
                format!(
                    "T{} read key {} {}, missing T{}'s append of {next}, the next version",
                    a.index,
                    key(k),
                    last.map_or("empty".to_string(), |l| format!("up to {l}")),
                    b.index
                ),
            ),
            Why::Process => (
                "process",
                format!("T{} then T{} on process {}", a.index, b.index, a.process),
            ),
            Why::Realtime => (
                "realtime",
                format!("T{} completed before T{} was invoked", a.index, b.index),
            ),
        };
        // Version order known only through real time says so.
        let (kind, why) = match e.kind {
            RT_WW => (
                "ww (realtime)",
                format!("{why} (a write that completed before the other began)"),
            ),
            RT_RW => (
                "rw (realtime)",
                format!("{why} (a write that completed before the other began)"),
            ),
            _ => (kind, why),
        };
        Step {
            from: a.index,
            to: b.index,
            kind,
            why,
        }
    }
}
