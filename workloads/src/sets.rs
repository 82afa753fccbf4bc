//! Maelstrom's `broadcast` (a `topology` message first, then
//! `{"type":"broadcast","message":M}` and `{"type":"read"}` answered with
//! `messages`) and `g-set` (`{"type":"add","element":E}`, reads answered
//! with `value`), both judged by the set-full checker.

use faultline_checker::compose::Checker;
use faultline_checker::sets::SetFull;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::{
    complete_plain, complete_with, on_every_node, Completion, FnGen, Generator, Invocation,
    Workload,
};

pub struct SetWorkload {
    name: &'static str,
    /// The history's `f` and the request's type for adding an element.
    add_f: &'static str,
    /// The request field that carries the element.
    element_field: &'static str,
    /// The read reply's field that lists the elements.
    read_field: &'static str,
    /// Whether nodes are told a topology first.
    topology: bool,
}

pub static BROADCAST: SetWorkload = SetWorkload {
    name: "broadcast",
    add_f: "broadcast",
    element_field: "message",
    read_field: "messages",
    topology: true,
};

pub static G_SET: SetWorkload = SetWorkload {
    name: "g-set",
    add_f: "add",
    element_field: "element",
    read_field: "value",
    topology: false,
};

impl Workload for SetWorkload {
    fn name(&self) -> &'static str {
        self.name
    }

    fn generator(&self, seed: u64, _key_count: u64) -> Box<dyn Generator> {
        let add_f = self.add_f;
        // Elements are unique: the counter, so a lost one is named.
        FnGen::boxed(seed, move |rng, n| {
            if rng.gen_bool(0.5) {
                Invocation::new(add_f, Value::Null, json!(n))
            } else {
                Invocation::new("read", Value::Null, Value::Null)
            }
        })
    }

    fn request(&self, inv: &Invocation) -> Value {
        if inv.f == "read" {
            return json!({"type": "read"});
        }
        let mut body = Map::new();
        body.insert("type".into(), json!(self.add_f));
        body.insert(self.element_field.into(), inv.value.clone());
        Value::Object(body)
    }

    fn complete(&self, inv: &Invocation, reply: &Value) -> Completion {
        if inv.f == "read" {
            complete_with(inv, reply, self.read_field)
        } else {
            complete_plain(inv, reply)
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

    fn setup(&self, _node: &str, node_ids: &[String], topology_name: &str) -> Option<Value> {
        let t = Topology::parse(topology_name).unwrap_or(Topology::Grid);
        self.topology
            .then(|| json!({"type": "topology", "topology": topology(t, node_ids)}))
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![Box::new(SetFull { add_f: self.add_f })]
    }
}

/// Maelstrom's topologies: who each node is told its neighbours are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A square-ish grid, each node linked to its 4 neighbours.
    Grid,
    /// A chain.
    Line,
    /// A tree where each node has up to `k` children.
    Tree(usize),
    /// Everyone is everyone's neighbour.
    Total,
}

impl Topology {
    /// Maelstrom's spelling: grid, line, tree2, tree3, tree4, total.
    pub fn parse(name: &str) -> Result<Topology, String> {
        match name {
            "grid" => Ok(Topology::Grid),
            "line" => Ok(Topology::Line),
            "total" => Ok(Topology::Total),
            "tree2" => Ok(Topology::Tree(2)),
            "tree3" => Ok(Topology::Tree(3)),
            "tree4" => Ok(Topology::Tree(4)),
            other => Err(format!(
                "unknown topology {other:?} (available: grid, line, tree2, tree3, tree4, total)"
            )),
        }
    }
}

/// The `topology` field: each node id to its neighbours' ids.
pub fn topology(t: Topology, ids: &[String]) -> Map<String, Value> {
    let n = ids.len();
    let mut links: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut link = |a: usize, b: usize| {
        if a != b && !links[a].contains(&b) {
            links[a].push(b);
            links[b].push(a);
        }
    };
    match t {
        Topology::Grid => {
            let side = (n as f64).sqrt().ceil().max(1.0) as usize;
            for i in 0..n {
                if (i + 1) % side != 0 && i + 1 < n {
                    link(i, i + 1);
                }
                if i + side < n {
                    link(i, i + side);
                }
            }
        }
        Topology::Line => (1..n).for_each(|i| link(i - 1, i)),
        Topology::Tree(k) => (1..n).for_each(|i| link(i, (i - 1) / k.max(1))),
        Topology::Total => (0..n).for_each(|a| (0..n).for_each(|b| link(a, b))),
    }
    ids.iter()
        .zip(links)
        .map(|(id, mut ns)| {
            ns.sort_unstable();
            (
                id.clone(),
                json!(ns.iter().map(|&j| &ids[j]).collect::<Vec<_>>()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn connected(t: &Map<String, Value>) -> bool {
        let mut seen = std::collections::BTreeSet::from(["n1".to_string()]);
        let mut todo = vec!["n1".to_string()];
        while let Some(x) = todo.pop() {
            for y in t[&x].as_array().unwrap() {
                let y = y.as_str().unwrap().to_string();
                if seen.insert(y.clone()) {
                    todo.push(y);
                }
            }
        }
        seen.len() == t.len()
    }

    #[test]
    fn every_topology_is_connected_and_symmetric() {
        for n in 1..=25 {
            for t in [
                Topology::Grid,
                Topology::Line,
                Topology::Tree(2),
                Topology::Tree(4),
                Topology::Total,
            ] {
                let map = topology(t, &ids(n));
                assert_eq!(map.len(), n);
                assert!(connected(&map), "{t:?} with {n} nodes");
                for (a, ns) in &map {
                    for b in ns.as_array().unwrap() {
                        let back = map[b.as_str().unwrap()].as_array().unwrap();
                        assert!(back.contains(&json!(a)), "{t:?}: {a} -> {b} one way");
                    }
                }
            }
        }
        // 25 nodes in a 5x5 grid: corners have 2 neighbours, the middle 4.
        let g = topology(Topology::Grid, &ids(25));
        assert_eq!(g["n1"], json!(["n2", "n6"]));
        assert_eq!(g["n13"].as_array().unwrap().len(), 4);
    }
}
