//! Executes nemesis actions on real processes and links: partitions and
//! message faults through the router's link policies, pause/resume with
//! SIGSTOP/SIGCONT of a node's process group, kill with SIGKILL and restart
//! on the same data directory with a fresh `init`, wall-clock skew through
//! each node's libfaketime file (see `clock`), and overload: a SIGSTOP /
//! SIGCONT duty cycle, slow bandwidth-limited links and a client burst.
//! Every action is recorded in the history as a `nemesis` op naming its
//! exact targets.

use faultline_nemesis::{partition_cut, Action, Shape};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::client::Pacer;
use crate::clock::{write_offset, Skew};
use crate::net::{LatencyDist, LinkPolicy, Network};
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

/// How often moving clocks (strobe, drift) have their files rewritten.
const CLOCK_STEP: Duration = Duration::from_millis(5);
/// One overload duty cycle: the node runs `cpu_percent` of it.
const DUTY_PERIOD_MS: u64 = 100;

/// The skewed wall clocks, shared with the task that moves them.
struct Clocks {
    files: Vec<PathBuf>,
    skews: Vec<Skew>,
    /// Last offset written per node, in whole ms (writes only on change).
    written: Vec<i64>,
    error: Option<String>,
}

impl Clocks {
    fn sync(&mut self, now: Instant) {
        for i in 0..self.files.len() {
            let ms = self.skews[i].offset_ms(now).round() as i64;
            if ms != self.written[i] {
                match write_offset(&self.files[i], ms as f64) {
                    Ok(()) => self.written[i] = ms,
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
        }
    }
}

/// The overloaded nodes, shared with the duty-cycle task.
struct Throttle {
    targets: BTreeSet<usize>,
    cpu_percent: u32,
    /// Process-group ids, refreshed on restart.
    pgids: Vec<i32>,
    /// Paused or killed by another fault: the duty cycle leaves them be.
    held: BTreeSet<usize>,
}

impl Throttle {
    fn signal_targets(&self, sig: Signal) {
        for &i in self.targets.difference(&self.held) {
            let _ = killpg(Pid::from_raw(self.pgids[i]), sig);
        }
    }
}

/// The active link faults, from which every link policy is rebuilt.
#[derive(Default)]
struct LinkFaults {
    cut: Vec<(usize, usize)>,
    /// drop, duplicate, corrupt, delay_ms.
    messages: Option<(f64, f64, f64, f64)>,
    /// Overloaded nodes: extra latency and bandwidth on all their links.
    overload: Option<(BTreeSet<usize>, f64, f64)>,
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
    links: LinkFaults,
    partitioned: bool,
    clocks: Option<Arc<Mutex<Clocks>>>,
    throttle: Arc<Mutex<Throttle>>,
    pacer: Arc<Pacer>,
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
        clock_files: Option<Vec<PathBuf>>,
        pacer: Arc<Pacer>,
    ) -> Self {
        let n = specs.len();
        let clocks = clock_files.map(|files| {
            Arc::new(Mutex::new(Clocks {
                skews: vec![Skew::True; files.len()],
                written: vec![0; files.len()],
                files,
                error: None,
            }))
        });
        if let Some(c) = &clocks {
            spawn_clock_mover(Arc::downgrade(c));
        }
        let throttle = Arc::new(Mutex::new(Throttle {
            targets: BTreeSet::new(),
            cpu_percent: 100,
            pgids: nodes.iter().map(|h| h.pid).collect(),
            held: BTreeSet::new(),
        }));
        debug_assert_eq!(nodes.len(), n);
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
            links: LinkFaults::default(),
            partitioned: false,
            clocks,
            throttle,
            pacer,
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

    /// Rebuilds every node-to-node link's policy from the base and the
    /// active faults, so faults of different kinds compose.
    fn refresh_links(&self) {
        let n = self.n();
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                let mut p = self.base.clone();
                p.hold = self.net.link(a, b).hold;
                if let Some((drop, dup, corrupt, delay)) = self.links.messages {
                    p.drop = drop;
                    p.duplicate = dup;
                    p.corrupt = corrupt;
                    // Uniform jitter around the delay reorders messages.
                    p.latency_ms += delay;
                    if delay > 0.0 {
                        p.dist = LatencyDist::Uniform;
                    }
                }
                if let Some((nodes, latency_ms, bandwidth)) = &self.links.overload {
                    if nodes.contains(&a) || nodes.contains(&b) {
                        p.latency_ms += latency_ms;
                        p.bandwidth_bytes_per_s = *bandwidth;
                    }
                }
                p.cut = self.links.cut.contains(&(a, b));
                self.net.set_link(a, b, p);
            }
        }
    }

    /// Sets the skew of `nodes` (leader-resolved), each made from that
    /// node's current skew, and records it.
    fn skew(
        &mut self,
        f: &str,
        nodes: &[usize],
        leader: bool,
        make: impl Fn(&Skew, Instant) -> Skew,
        detail: Value,
    ) -> anyhow::Result<()> {
        let nodes = self.targets(nodes, leader);
        let Some(clocks) = &self.clocks else {
            anyhow::bail!("a clock fault was scheduled but the nodes were started without libfaketime (the clock nemesis is not enabled)");
        };
        {
            let mut c = clocks.lock().unwrap();
            let now = Instant::now();
            for &i in &nodes {
                c.skews[i] = make(&c.skews[i], now);
            }
            c.sync(now);
            if let Some(e) = c.error.take() {
                anyhow::bail!(e);
            }
        }
        let mut value = json!({"nodes": self.ids(&nodes)});
        if let (Some(v), Value::Object(d)) = (value.as_object_mut(), detail) {
            v.extend(d);
        }
        self.record(f, value);
        Ok(())
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
                self.links.cut = cut.clone();
                self.refresh_links();
                self.partitioned = true;
                let cut_ids: Vec<[String; 2]> =
                    cut.iter().map(|&(a, b)| [self.id(a), self.id(b)]).collect();
                self.record("start-partition", json!({"shape": shape, "cut": cut_ids}));
            }
            Action::StopPartition => {
                self.links.cut.clear();
                self.refresh_links();
                self.partitioned = false;
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
                    self.throttle.lock().unwrap().held.insert(i);
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
                    self.throttle.lock().unwrap().held.insert(i);
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
                self.links.messages = Some((*drop, *duplicate, *corrupt, *delay_ms));
                self.refresh_links();
                self.record(
                    "start-messages",
                    json!({"drop": drop, "duplicate": duplicate, "corrupt": corrupt, "delay_ms": delay_ms}),
                );
            }
            Action::StopMessages => {
                self.links.messages = None;
                self.refresh_links();
                self.record("stop-messages", json!({}));
            }
            Action::ClockBump {
                nodes,
                delta_ms,
                leader,
            } => self.skew(
                "clock-bump",
                nodes,
                *leader,
                |_, _| Skew::Offset { ms: *delta_ms },
                json!({"delta_ms": delta_ms}),
            )?,
            Action::ClockStrobe {
                nodes,
                delta_ms,
                period_ms,
                leader,
            } => self.skew(
                "clock-strobe",
                nodes,
                *leader,
                |_, now| Skew::Strobe {
                    delta_ms: *delta_ms,
                    period_ms: *period_ms,
                    since: now,
                },
                json!({"delta_ms": delta_ms, "period_ms": period_ms}),
            )?,
            Action::ClockDrift {
                nodes,
                rate,
                leader,
            } => self.skew(
                "clock-drift",
                nodes,
                *leader,
                // A drift continues from wherever that node's clock is now.
                |current, now| Skew::Drift {
                    rate: rate.clamp(0.01, 100.0),
                    base_ms: current.offset_ms(now),
                    since: now,
                },
                json!({"rate": rate}),
            )?,
            Action::ResetClock => {
                let mut reset = Vec::new();
                if let Some(clocks) = &self.clocks {
                    let mut c = clocks.lock().unwrap();
                    for i in 0..c.skews.len() {
                        if c.skews[i] != Skew::True {
                            c.skews[i] = Skew::True;
                            reset.push(i);
                        }
                    }
                    c.sync(Instant::now());
                }
                self.record("reset-clock", json!({"nodes": self.ids(&reset)}));
            }
            Action::StartOverload {
                nodes,
                cpu_percent,
                latency_ms,
                bandwidth_bytes_per_s,
                burst,
                leader,
            } => {
                let nodes = self.targets(nodes, *leader);
                let set: BTreeSet<usize> = nodes.iter().copied().collect();
                // The duty cycle runs only in runs that overload something.
                if Arc::weak_count(&self.throttle) == 0 {
                    spawn_duty_cycle(Arc::downgrade(&self.throttle));
                }
                {
                    let mut t = self.throttle.lock().unwrap();
                    t.cpu_percent = (*cpu_percent).clamp(1, 100);
                    t.targets = set.clone();
                }
                self.links.overload = Some((set, *latency_ms, *bandwidth_bytes_per_s as f64));
                self.refresh_links();
                self.pacer.set_burst(*burst);
                self.record(
                    "start-overload",
                    json!({"nodes": self.ids(&nodes), "cpu_percent": cpu_percent,
                           "latency_ms": latency_ms, "bandwidth_bytes_per_s": bandwidth_bytes_per_s,
                           "burst": burst}),
                );
            }
            Action::StopOverload => {
                let nodes: Vec<usize> = {
                    let mut t = self.throttle.lock().unwrap();
                    t.signal_targets(Signal::SIGCONT);
                    std::mem::take(&mut t.targets).into_iter().collect()
                };
                self.links.overload = None;
                self.refresh_links();
                self.pacer.set_burst(1.0);
                self.record("stop-overload", json!({"nodes": self.ids(&nodes)}));
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
            self.throttle.lock().unwrap().held.remove(&i);
            let _ = killpg(Pid::from_raw(self.nodes[i].pid), Signal::SIGCONT);
        }
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
        {
            let mut t = self.throttle.lock().unwrap();
            t.pgids[i] = handle.pid;
            t.held.remove(&i);
        }
        self.nodes[i] = handle;
        Ok(())
    }

    /// Undoes every active fault: links healed, paused nodes resumed,
    /// killed nodes restarted.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        if self.partitioned {
            self.apply(&Action::StopPartition).await?;
        }
        if self.links.messages.is_some() {
            self.apply(&Action::StopMessages).await?;
        }
        if self.links.overload.is_some() {
            self.apply(&Action::StopOverload).await?;
        }
        let skewed = self
            .clocks
            .as_ref()
            .is_some_and(|c| c.lock().unwrap().skews.iter().any(|s| *s != Skew::True));
        if skewed {
            self.apply(&Action::ResetClock).await?;
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
        {
            let mut t = self.throttle.lock().unwrap();
            t.held.extend(0..self.specs.len());
            t.targets.clear();
        }
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

/// Rewrites the files of moving clocks until the executor is gone.
fn spawn_clock_mover(clocks: Weak<Mutex<Clocks>>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CLOCK_STEP).await;
            let Some(c) = clocks.upgrade() else { return };
            let mut c = c.lock().unwrap();
            if c.skews.iter().any(Skew::moves) {
                c.sync(Instant::now());
            }
        }
    });
}

/// Overload's CPU share: each period, the targets run for `cpu_percent`
/// of it and are stopped for the rest. Runs until the executor is gone.
fn spawn_duty_cycle(throttle: Weak<Mutex<Throttle>>) {
    tokio::spawn(async move {
        loop {
            let on_ms = {
                let Some(t) = throttle.upgrade() else { return };
                let t = t.lock().unwrap();
                t.signal_targets(Signal::SIGCONT);
                if t.targets.is_empty() {
                    DUTY_PERIOD_MS
                } else {
                    DUTY_PERIOD_MS * t.cpu_percent as u64 / 100
                }
            };
            tokio::time::sleep(Duration::from_millis(on_ms)).await;
            if on_ms >= DUTY_PERIOD_MS {
                continue;
            }
            {
                let Some(t) = throttle.upgrade() else { return };
                t.lock().unwrap().signal_targets(Signal::SIGSTOP);
            }
            tokio::time::sleep(Duration::from_millis(DUTY_PERIOD_MS - on_ms)).await;
        }
    });
}
