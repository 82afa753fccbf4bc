//! `cargo bench -p target-node --bench core`: commits per second of the
//! Raft core in simulation (5 nodes, in-process message passing, no IO),
//! i.e. the cost of consensus logic alone.

use serde_json::json;
use std::time::Instant;
use target_node::raft::{Command, Config, Durable, Raft, Role};

fn main() {
    let n = 5;
    let mut nodes: Vec<Raft> = (0..n)
        .map(|i| Raft::new(Config::new(i, n), Durable::default()))
        .collect();
    // Elect n0.
    let mut queue = Vec::new();
    for _ in 0..1000 {
        nodes[0].tick();
        if nodes[0].role != Role::Follower {
            break;
        }
    }
    let pump =
        |nodes: &mut Vec<Raft>, queue: &mut Vec<(usize, usize, target_node::raft::Msg)>| -> u64 {
            let mut committed = 0;
            for _ in 0..10_000 {
                for (i, node) in nodes.iter_mut().enumerate() {
                    let rd = node.take_ready();
                    if i == 0 {
                        committed += rd.committed.len() as u64;
                    }
                    queue.extend(rd.messages.into_iter().map(|(to, m)| (i, to, m)));
                }
                if queue.is_empty() {
                    break;
                }
                for (from, to, m) in std::mem::take(queue) {
                    nodes[to].step(from, m);
                }
            }
            committed
        };
    pump(&mut nodes, &mut queue);
    assert!(nodes[0].is_leader());
    for (batch, rounds) in [(1usize, 100_000u64), (16, 20_000), (256, 2_000)] {
        let start = Instant::now();
        let mut committed = 0;
        let mut id = 0u64;
        for _ in 0..rounds {
            for _ in 0..batch {
                id += 1;
                nodes[0].propose(Command::Op {
                    client: "c1".into(),
                    msg_id: id,
                    op: json!({"type": "write", "key": id % 100, "value": id}),
                });
            }
            committed += pump(&mut nodes, &mut queue);
            // Keep memory bounded: compact what everyone has applied.
            if id % 4096 < batch as u64 {
                let c = nodes.iter().map(|r| r.commit).min().unwrap();
                for r in nodes.iter_mut() {
                    let term = r.log.term(c).unwrap();
                    r.compact(target_node::raft::Snapshot {
                        index: c,
                        term,
                        data: json!({}),
                        conf: None,
                    });
                }
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "proposals in batches of {batch:>3}: {:.0} commits/s ({committed} commits in {s:.2} s)",
            committed as f64 / s
        );
    }
}
