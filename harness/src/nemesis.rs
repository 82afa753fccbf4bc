//! Executes nemesis actions on real processes and links: partitions and
//! message faults through the router's link policies, pause/resume with
//! SIGSTOP/SIGCONT of a node's process group, kill with SIGKILL and restart
//! on the same data directory with a fresh `init`. Every action is recorded
//! in the history as a `nemesis` op naming its exact targets.

use faultline_nemesis::{partition_cut, Action, Shape};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::net::{LinkPolicy, Network};
use crate::node::{self, ExitInfo, NodeHandle, NodeSpec};
use crate::recorder::{Clock, History, Recorder};

/// An empty target list (undoing a leader-targeted fault, or healing)
/// means every node currently in `set`.
fn or_all(nodes: &[usize], set: &BTreeSet<usize>) -> Vec<usize> {
    if nodes.is_empty() {
        set.iter().copied().collect()
    } else {
        nodes.to_vec()
    }
}

pub struct Executor {
    net: Arc<Network>,
    pub nodes: Vec<NodeHandle>,
    specs: Vec<NodeSpec>,
    inboxes: Vec<mpsc::Receiver<Value>>,
    recorder: Arc<Recorder>,
    history: Arc<History>,
    clock: Clock,
    base: LinkPolicy,
    init_timeout: Duration,
    paused: BTreeSet<usize>,
    down: BTreeSet<usize>,
    partitioned: bool,
    message_faults: bool,
    rng: ChaCha8Rng,
    /// Exits of replaced incarnations that the nemesis did not cause.
    pub crashes: Vec<ExitInfo>,
}

impl Executor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: Arc<Network>,
        nodes: Vec<NodeHandle>,
        specs: Vec<NodeSpec>,
        inboxes: Vec<mpsc::Receiver<Value>>,
        recorder: Arc<Recorder>,
        history: Arc<History>,
        clock: Clock,
        base: LinkPolicy,
        init_timeout: Duration,
        seed: u64,
    ) -> Self {
        Executor {
            net,
            nodes,
            specs,
            inboxes,
            recorder,
            history,
            clock,
            base,
            init_timeout,
            paused: BTreeSet::new(),
            down: BTreeSet::new(),
            partitioned: false,
            message_faults: false,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5EED),
            crashes: Vec::new(),
        }
    }

    fn id(&self, i: usize) -> String {
        self.specs[i].id.clone()
    }

    fn ids(&self, nodes: &[usize]) -> Vec<String> {
        nodes.iter().map(|&i| self.id(i)).collect()
    }

    fn record(&self, f: &str, value: Value) {
        let _ = self
            .history
            .record(json!("nemesis"), "info", f, None, &value, Map::new());
    }

    fn n(&self) -> usize {
        self.specs.len()
    }

    /// Sets every link's policy from the base plus the active faults.
    fn set_links(&self, cut: &[(usize, usize)], faults: Option<(f64, f64, f64, f64)>) {
        let n = self.n();
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                let mut p = self.net.link(a, b);
                if let Some((drop, dup, corrupt, delay)) = faults {
                    p.drop = drop;
                    p.duplicate = dup;
                    p.corrupt = corrupt;
                    // Uniform jitter around the delay reorders messages.
                    p.latency_ms = self.base.latency_ms + delay;
                    p.dist = if delay > 0.0 {
                        crate::net::LatencyDist::Uniform
                    } else {
                        self.base.dist
                    };
                }
                if !cut.is_empty() {
                    p.cut = cut.contains(&(a, b));
                }
                self.net.set_link(a, b, p);
            }
        }
    }

    pub async fn apply(&mut self, action: &Action) -> anyhow::Result<()> {
        let n = self.n();
        match action {
            Action::StartPartition { shape, cut } => {
                let cut = if *shape == Shape::IsolateLeader {
                    let leader = self
                        .recorder
                        .current_leader()
                        .and_then(|l| self.specs.iter().position(|s| s.id == l));
                    partition_cut(Shape::IsolateLeader, n, &mut self.rng, leader)
                } else {
                    cut.clone()
                };
                for a in 0..n {
                    for b in 0..n {
                        if a != b {
                            let mut p = self.net.link(a, b);
                            p.cut = cut.contains(&(a, b));
                            self.net.set_link(a, b, p);
                        }
                    }
                }
                self.partitioned = true;
                let cut_ids: Vec<[String; 2]> =
                    cut.iter().map(|&(a, b)| [self.id(a), self.id(b)]).collect();
                self.record("start-partition", json!({"shape": shape, "cut": cut_ids}));
            }
            Action::StopPartition => {
                self.heal_links();
                self.record("stop-partition", json!({}));
            }
            Action::Pause { nodes, leader } => {
                let nodes = self.targets(nodes, *leader);
                let live: Vec<usize> = nodes
                    .iter()
                    .copied()
                    .filter(|i| !self.down.contains(i))
                    .collect();
                for &i in &live {
                    let _ = killpg(Pid::from_raw(self.nodes[i].pid), Signal::SIGSTOP);
                    self.paused.insert(i);
                }
                self.record("pause", json!({"nodes": self.ids(&live)}));
            }
            Action::Resume { nodes } => {
                let nodes = or_all(nodes, &self.paused);
                for &i in &nodes {
                    self.resume(i);
                }
                self.record("resume", json!({"nodes": self.ids(&nodes)}));
            }
            Action::Kill { nodes, leader } => {
                let nodes = self.targets(nodes, *leader);
                for &i in &nodes {
                    self.paused.remove(&i);
                    self.nodes[i].kill().await;
                    self.down.insert(i);
                }
                self.record("kill", json!({"nodes": self.ids(&nodes)}));
            }
            Action::Restart { nodes } => {
                let nodes = or_all(nodes, &self.down);
                let mut restarted = Vec::new();
                for &i in &nodes {
                    if self.down.remove(&i) {
                        self.restart(i).await?;
                        restarted.push(i);
                    }
                }
                self.record("restart", json!({"nodes": self.ids(&restarted)}));
            }
            Action::StartMessages {
                drop,
                duplicate,
                corrupt,
                delay_ms,
            } => {
                self.set_links(&[], Some((*drop, *duplicate, *corrupt, *delay_ms)));
                self.message_faults = true;
                self.record(
                    "start-messages",
                    json!({"drop": drop, "duplicate": duplicate, "corrupt": corrupt, "delay_ms": delay_ms}),
                );
            }
            Action::StopMessages => {
                self.set_links(&[], Some((0.0, 0.0, 0.0, 0.0)));
                self.message_faults = false;
                self.record("stop-messages", json!({}));
            }
        }
        Ok(())
    }

    /// The nodes an action hits: the current leader (from trace events)
    /// when targeted at it, else the scheduled nodes. No known leader: a
    /// seeded random node.
    fn targets(&mut self, nodes: &[usize], leader: bool) -> Vec<usize> {
        if !leader {
            return nodes.to_vec();
        }
        match self
            .recorder
            .current_leader()
            .and_then(|l| self.specs.iter().position(|s| s.id == l))
        {
            Some(l) => vec![l],
            None => {
                let n = self.n();
                vec![rand::Rng::gen_range(&mut self.rng, 0..n)]
            }
        }
    }

    fn resume(&mut self, i: usize) {
        if self.paused.remove(&i) {
            let _ = killpg(Pid::from_raw(self.nodes[i].pid), Signal::SIGCONT);
        }
    }

    fn heal_links(&mut self) {
        let n = self.n();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    let mut p = self.net.link(a, b);
                    p.cut = false;
                    self.net.set_link(a, b, p);
                }
            }
        }
        self.partitioned = false;
    }

    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let old = &self.nodes[i];
        if let Some(e) = old.exit.borrow().clone() {
            if !e.expected {
                self.crashes.push(e);
            }
        }
        let mut handle = node::spawn(&self.specs[i], &self.net, &self.recorder, self.clock)?;
        // A stale init_ok from an earlier incarnation must not count.
        while self.inboxes[i].try_recv().is_ok() {}
        node::init(
            &self.net,
            &mut self.inboxes[i],
            &mut handle,
            self.init_timeout,
        )
        .await?;
        self.nodes[i] = handle;
        Ok(())
    }

    /// Undoes every active fault: links healed, paused nodes resumed,
    /// killed nodes restarted.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        if self.partitioned {
            self.apply(&Action::StopPartition).await?;
        }
        if self.message_faults {
            self.apply(&Action::StopMessages).await?;
        }
        if !self.paused.is_empty() {
            self.apply(&Action::Resume { nodes: Vec::new() }).await?;
        }
        if !self.down.is_empty() {
            self.apply(&Action::Restart { nodes: Vec::new() }).await?;
        }
        Ok(())
    }

    /// Resumes (so SIGKILL is not needed on stopped processes... it is
    /// delivered anyway) and kills every node, waiting until each is reaped.
    pub async fn stop_all(&mut self) -> Vec<ExitInfo> {
        for i in 0..self.n() {
            self.resume(i);
        }
        let mut crashed = std::mem::take(&mut self.crashes);
        for n in self.nodes.iter_mut() {
            if let Some(e) = n.exit.borrow().clone() {
                if !e.expected {
                    crashed.push(e);
                }
            }
            n.kill().await;
        }
        crashed
    }
}
