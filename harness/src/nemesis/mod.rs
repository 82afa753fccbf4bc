//! Executes the nemesis's actions. The executor is built from one options
//! struct and acts through narrow handles it is given: the `Links` between
//! nodes (partitions, message faults, slow links), the node `Processes`
//! (pause, kill, restart, throttle), the client `Load` (bursts), a watch on
//! the current leader (for faults aimed at it), and the clock files. It
//! records every action in the history as a `nemesis` op naming its exact
//! targets, and `heal` undoes whatever is still active.

pub mod clocks;
pub mod membership;
pub mod triggers;

use anyhow::Context;
use faultline_nemesis::effect::{CrashEffect, DiskEffect, LostFile};
use faultline_nemesis::seed::{derive, Stream};
use faultline_nemesis::{
    partition_cut, Action, DiskFault, Link, LossKind, MessageRates, Moment, Named, Scope, Shape,
    Target,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use crate::client::Load;
use clocks::Clocks;
use faultline_net::links::{LinkFaults, Links};
use faultline_process::clock::Skew;
use faultline_rundir::record::History;
pub use triggers::Fired;

/// A pause or kill's record, naming the process when it aimed at one.
fn with_process(mut v: Value, process: Option<&str>) -> Value {
    if let Some(p) = process {
        v["process"] = json!(p);
    }
    v
}

/// The processes a pause or kill reached, per node: the record names only
/// the nodes it reached, and is `Null` when it reached none.
#[derive(Default)]
struct Reached {
    nodes: Vec<String>,
    pids: serde_json::Map<String, Value>,
}

impl Reached {
    fn add(&mut self, node: &str, pids: Vec<u32>) {
        if !pids.is_empty() {
            self.nodes.push(node.to_string());
            self.pids.insert(node.to_string(), json!(pids));
        }
    }

    fn record(self, process: Option<&str>) -> Value {
        if self.nodes.is_empty() {
            return Value::Null;
        }
        with_process(json!({"nodes": self.nodes, "reached": self.pids}), process)
    }
}

/// The random choices of one fault on one node, from the seed the
/// schedule drew for it: a replay makes the same choices.
fn fault_rng(seed: u32, node: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(((seed as u64) << 16) | node as u64)
}

/// What the nemesis may do to node processes.
#[allow(async_fn_in_trait)]
pub trait Processes {
    /// Freeze a running node: every process of it at once, or the one
    /// named. Returns the processes frozen; an error when the freeze
    /// could not be made.
    fn pause(&mut self, node: usize, process: Option<&str>) -> anyhow::Result<Vec<u32>>;
    /// Thaw whatever of a node was paused.
    fn resume(&mut self, node: usize) -> anyhow::Result<()>;
    /// SIGKILL a node (every process of it, or the one named) and wait
    /// until it is reaped. Returns the processes killed.
    async fn kill(&mut self, node: usize, process: Option<&str>) -> Vec<u32>;
    /// Start killed nodes again on their data and wait until they are up.
    /// Returns those that refused to start (exited at once, as a node that
    /// finds its files corrupt must): a correct outcome, not a failure.
    async fn restart(&mut self, nodes: &[usize]) -> anyhow::Result<Vec<usize>>;
    /// A power loss: SIGKILL, then drop what the node never synced.
    /// Returns what it dropped and the processes killed.
    async fn crash(
        &mut self,
        node: usize,
        loss: faultline_durable::Loss,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<(faultline_durable::CrashReport, Vec<u32>)>;
    /// SIGKILL a node (if it runs) and damage one file of its data
    /// directory; `None` when it keeps no files.
    async fn damage(
        &mut self,
        node: usize,
        fault: faultline_durable::DiskFault,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Option<faultline_durable::Damage>>;
    /// Starts node `i` as a node joining `members` (membership changes;
    /// a server's `{join}` names them): afresh, its data wiped, or (`wipe`
    /// false) on the data it has, for a member the system kept that the
    /// harness had stopped.
    async fn join(&mut self, i: usize, members: &[usize], wipe: bool) -> anyhow::Result<()>;
    /// Whether a new node starts only once the cluster added it (etcd);
    /// else it starts first and is then added.
    fn starts_after_add(&self) -> bool;
    /// Stops node `i`, which left the cluster; its data stays.
    async fn leave(&mut self, i: usize);
    /// Sends node `i` one request (its `msg_id` is set here) and waits up
    /// to `timeout` for the answer; `None` without one.
    async fn ask(&mut self, i: usize, body: Value, timeout: std::time::Duration) -> Option<Value>;
    /// Give `nodes` `cpu_percent` of the CPU until `unthrottle`.
    /// Returns the processes of each node it throttles.
    fn throttle(&mut self, nodes: &BTreeSet<usize>, cpu_percent: u32) -> Vec<(usize, Vec<u32>)>;
    /// Full speed for everyone; returns whom that released.
    /// Also says how often the duty cycle failed to stop or continue a
    /// node, and the last failure.
    fn unthrottle(&mut self) -> (BTreeSet<usize>, Option<(u64, String)>);
}

/// Everything an executor is built from.
pub struct ExecutorOptions {
    pub node_ids: Vec<String>,
    pub seed: u64,
    pub links: Arc<dyn Links>,
    pub load: Arc<dyn Load>,
    /// (term, node id) of the newest leader, from the nodes' traces.
    pub leader: watch::Receiver<Option<(u64, String)>>,
    pub history: Arc<History>,
    /// The clock agent, when the clock nemesis is on.
    pub clock_agent: Option<Arc<faultline_process::clock_agent::Agent>>,
    /// Set when the membership nemesis changes who is in the cluster.
    pub membership: Option<membership::MembershipOptions>,
    /// With a leader probe: a fault that cuts the leader off or pauses it
    /// holds (at most this long) until another node is named leader.
    pub hold_for_failover: Option<std::time::Duration>,
}

/// A fault on the leader that holds until the system names another.
#[derive(Default)]
struct Holds {
    bound: Option<std::time::Duration>,
    /// The leader the active partition cut off from a majority.
    partitioned: Option<usize>,
    /// The leader the active pause froze.
    paused: Option<usize>,
    /// The schedule's end and cancellation: a hold never outlasts them.
    deadline: Option<std::time::Instant>,
    cancel: Option<tokio_util::sync::CancellationToken>,
    /// `heal` undoes at once: the load is over.
    healing: bool,
}

/// The link faults active now, from which every link's faults are rebuilt
/// so faults of different kinds compose.
#[derive(Default)]
struct ActiveLinkFaults {
    /// The partition's cut links, while one is on.
    cut: Option<Vec<Link>>,
    messages: Option<MessageRates>,
    /// Overloaded nodes: extra latency and a bandwidth cap on all their links.
    overload: Option<(BTreeSet<usize>, f64, u64)>,
    /// The stranded node and its clock's offset: every link touching it is
    /// cut.
    stranded: Option<(usize, i64)>,
}

pub struct Executor<P: Processes> {
    node_ids: Vec<String>,
    links: Arc<dyn Links>,
    load: Arc<dyn Load>,
    leader: watch::Receiver<Option<(u64, String)>>,
    history: Arc<History>,
    clocks: Option<Arc<Mutex<Clocks>>>,
    processes: P,
    paused: BTreeSet<usize>,
    down: BTreeSet<usize>,
    /// Down because their last start was refused (fail-stop).
    refused: BTreeSet<usize>,
    active: ActiveLinkFaults,
    rng: ChaCha8Rng,
    /// The moment that fired the action being applied, and the node whose
    /// trace event it was.
    moment: Option<(Moment, usize)>,
    /// The action being applied was aimed at the leader, and none was
    /// known: it hit a node drawn at random, which the history says.
    leader_unknown: bool,
    membership: Option<membership::MemberState>,
    holds: Holds,
    /// Steps that took longer than `SLOW_STEP` to apply.
    slow: SlowSteps,
}

/// A step the nemesis spent this long on holds up every step due after
/// it: faults land late, bunched together, or after the windows they were
/// placed for. Membership changes and restarts of real servers may take
/// seconds; 15 s stalls went unseen for a whole round (a member removed
/// while paused), so a run says when its nemesis fell behind.
pub const SLOW_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// How many steps were slow, and the slowest: (name, at ms, took ms).
#[derive(Default)]
struct SlowSteps {
    count: usize,
    total_ms: u64,
    slowest: Option<(&'static str, u64, u64)>,
    /// Time spent this step holding a fault for a failover, on purpose.
    held_ms: u64,
}

impl<P: Processes> Executor<P> {
    pub fn new(opts: ExecutorOptions, processes: P) -> Self {
        Executor {
            rng: ChaCha8Rng::seed_from_u64(derive(opts.seed, Stream::Executor)),
            leader_unknown: false,
            clocks: opts
                .clock_agent
                .map(|a| Clocks::start(a, opts.node_ids.clone())),
            node_ids: opts.node_ids,
            links: opts.links,
            load: opts.load,
            leader: opts.leader,
            history: opts.history,
            processes,
            paused: BTreeSet::new(),
            down: BTreeSet::new(),
            refused: BTreeSet::new(),
            active: ActiveLinkFaults::default(),
            moment: None,
            membership: opts.membership.map(membership::MemberState::new),
            holds: Holds {
                bound: opts.hold_for_failover,
                ..Holds::default()
            },
            slow: SlowSteps::default(),
        }
    }

    /// Notes how long applying `action` (begun `at_ms` into the run)
    /// took, less any deliberate hold for a failover.
    pub fn timed(&mut self, action: &Action, at_ms: u64, took: std::time::Duration) {
        let took_ms =
            (took.as_millis() as u64).saturating_sub(std::mem::take(&mut self.slow.held_ms));
        if took_ms < SLOW_STEP.as_millis() as u64 {
            return;
        }
        let s = &mut self.slow;
        s.count += 1;
        s.total_ms += took_ms;
        if s.slowest.is_none_or(|(_, _, ms)| took_ms > ms) {
            s.slowest = Some((action.name(), at_ms, took_ms));
        }
    }

    /// A warning when the nemesis fell behind its schedule.
    pub fn slow_warning(&self) -> Option<String> {
        let s = &self.slow;
        let (name, at_ms, took_ms) = s.slowest?;
        Some(format!(
            "the nemesis fell {:.1} s behind its schedule: {} step(s) took over {} s each (the slowest, {name} at {:.1} s, took {:.1} s); faults due meanwhile applied late",
            s.total_ms as f64 / 1e3,
            s.count,
            SLOW_STEP.as_secs(),
            at_ms as f64 / 1e3,
            took_ms as f64 / 1e3,
        ))
    }

    /// The schedule's end and its cancellation, which bound every hold.
    pub fn set_bounds(
        &mut self,
        deadline: std::time::Instant,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        self.holds.deadline = Some(deadline);
        self.holds.cancel = Some(cancel);
    }

    /// Waits (bounded) until a node other than `old` is named leader, and
    /// says how long that took and who it was.
    async fn await_failover(&mut self, old: usize) -> Value {
        let started = std::time::Instant::now();
        let mut bound = self.holds.bound.unwrap_or_default();
        if let Some(d) = self.holds.deadline {
            bound = bound.min(d.saturating_duration_since(started));
        }
        let old_id = self.node_ids[old].clone();
        let mut leader = self.leader.clone();
        let cancel = self.holds.cancel.clone().unwrap_or_default();
        let named = async {
            let r = leader
                .wait_for(|l| l.as_ref().is_some_and(|(_, id)| *id != old_id))
                .await;
            r.ok().and_then(|l| l.as_ref().map(|(_, id)| id.clone()))
        };
        let new_leader = tokio::select! {
            r = tokio::time::timeout(bound, named) => r.ok().flatten(),
            _ = cancel.cancelled() => None,
        };
        let waited_ms = started.elapsed().as_millis() as u64;
        self.slow.held_ms += waited_ms;
        json!({"from": old_id, "new_leader": new_leader,
            "waited_ms": waited_ms,
            "bound_ms": bound.as_millis() as u64})
    }

    /// Whether `leader` can reach no majority with the links in `cut`.
    fn cut_off(&self, leader: usize, cut: &[Link]) -> bool {
        let n = self.node_ids.len();
        let reached = (0..n)
            .filter(|&j| j != leader)
            .filter(|&j| !cut.contains(&(leader, j)) && !cut.contains(&(j, leader)))
            .count();
        (reached + 1) * 2 <= n
    }

    /// The processes back, once the nemesis is done.
    pub fn into_processes(self) -> P {
        self.processes
    }

    fn ids(&self, nodes: impl IntoIterator<Item = usize>) -> Vec<String> {
        nodes
            .into_iter()
            .map(|i| self.node_ids[i].clone())
            .collect()
    }

    fn record(&self, action: &Action, value: Value) -> anyhow::Result<()> {
        self.history
            .record_nemesis(action.name(), value)
            .map(|_| ())
            .context("writing history.jsonl")
    }

    pub async fn apply(&mut self, action: &Action) -> anyhow::Result<()> {
        self.apply_fired(action, None).await
    }

    /// Applies an action that a trigger fired (or that its wait ran out
    /// on): its targets resolve against the moment's node, and the history
    /// records what fired it.
    pub async fn apply_fired(
        &mut self,
        action: &Action,
        fired: Option<&Fired>,
    ) -> anyhow::Result<()> {
        self.moment = fired.and_then(|f| {
            let node = f.node.as_ref()?;
            Some((f.moment, self.node_ids.iter().position(|n| n == node)?))
        });
        self.leader_unknown = false;
        let value = self.act(action).await;
        self.moment = None;
        let mut value = value?;
        if value.is_null() {
            // It reached no process: a fault on nobody is not a fault.
            eprintln!(
                "faultline: {} reached no running process; not recorded ({action:?})",
                action.name()
            );
            return Ok(());
        }
        if let (Some(f), Some(v)) = (fired, value.as_object_mut()) {
            v.insert("moment".into(), f.to_json());
        }
        if let (true, Some(v)) = (
            std::mem::take(&mut self.leader_unknown),
            value.as_object_mut(),
        ) {
            v.insert(
                "leader".into(),
                json!("unknown (none traced or probed, or it is down): a node drawn at random was hit"),
            );
        }
        self.record(action, value)
    }

    async fn act(&mut self, action: &Action) -> anyhow::Result<Value> {
        Ok(match action {
            Action::StartPartition { shape, cut } => self.partition(*shape, cut),
            Action::StopPartition => {
                let held = match self.holds.partitioned.take() {
                    Some(l) if !self.holds.healing => Some(self.await_failover(l).await),
                    _ => None,
                };
                self.active.cut = None;
                self.refresh_links();
                match held {
                    Some(h) => json!({"held_for_failover": h}),
                    None => json!({}),
                }
            }
            Action::Pause { target, process } => self.pause(target, process.as_deref())?,
            Action::Resume { nodes } => {
                let held = match self.holds.paused {
                    Some(l) if !self.holds.healing && self.paused.contains(&l) => {
                        self.holds.paused = None;
                        Some(self.await_failover(l).await)
                    }
                    _ => None,
                };
                let mut v = self.resume(nodes)?;
                if let (Some(h), Some(o)) = (held, v.as_object_mut()) {
                    o.insert("held_for_failover".into(), h);
                }
                v
            }
            Action::Kill { target, process } => self.kill(target, process.as_deref()).await,
            Action::Restart { nodes } => self.restart(nodes).await?,
            Action::StartMessages { rates } => {
                self.active.messages = Some(*rates);
                self.refresh_links();
                serde_json::to_value(rates).context("a rate serializes")?
            }
            Action::StopMessages => {
                self.active.messages = None;
                self.refresh_links();
                json!({})
            }
            Action::ClockBump { target, delta_ms } => {
                let ms = *delta_ms;
                let detail = json!({"delta_ms": ms});
                self.skew(target, |_, _| Skew::Offset { ms }, detail)?
            }
            Action::ClockStrobe {
                target,
                delta_ms,
                period_ms,
            } => {
                let (delta_ms, period_ms) = (*delta_ms, *period_ms);
                let detail = json!({"delta_ms": delta_ms, "period_ms": period_ms});
                let strobe = |_: &Skew, since| Skew::Strobe {
                    delta_ms,
                    period_ms,
                    since,
                };
                self.skew(target, strobe, detail)?
            }
            Action::ClockDrift { target, rate } => {
                let rate = *rate;
                // A drift continues from wherever that node's clock is now.
                let drift = |current: &Skew, now| Skew::Drift {
                    rate: rate.clamp(0.01, 100.0),
                    base_ms: current.offset_ms(now),
                    since: now,
                };
                self.skew(target, drift, json!({"rate": rate}))?
            }
            Action::ResetClock => self.reset_clocks()?,
            Action::StartOverload {
                target,
                cpu_percent,
                latency_ms,
                bandwidth_bytes_per_s,
                burst,
            } => {
                let nodes = self.resolve(target);
                let detail = json!({"cpu_percent": cpu_percent, "latency_ms": latency_ms,
                    "bandwidth_bytes_per_s": bandwidth_bytes_per_s, "burst": burst});
                let set: BTreeSet<usize> = nodes.iter().copied().collect();
                let mut r = Reached::default();
                for (i, pids) in self.processes.throttle(&set, (*cpu_percent).clamp(1, 100)) {
                    r.add(&self.node_ids[i], pids);
                }
                let mut detail = detail;
                detail["reached"] = Value::Object(r.pids);
                self.active.overload = Some((set, *latency_ms, *bandwidth_bytes_per_s));
                self.refresh_links();
                self.load.set_burst(*burst);
                self.with_nodes(nodes, detail)
            }
            Action::Crash { target, loss, seed } => self.crash(target, loss.0, *seed).await?,
            Action::Recover { nodes } => self.restart(nodes).await?,
            Action::DamageDisk { nodes, fault, seed } => self.damage(nodes, fault.0, *seed).await?,
            Action::RestartDamaged { nodes } => self.restart(nodes).await?,
            Action::Strand { delta_ms } => self.strand(*delta_ms)?,
            Action::Unstrand => self.unstrand()?,
            Action::MemberAdd { .. }
            | Action::MemberRemove { .. }
            | Action::MemberReplace { .. } => self.change_membership(action).await?,
            Action::MembershipSettled => self.membership_settled().await?,
            Action::StopOverload => {
                let (nodes, failed) = self.processes.unthrottle();
                self.active.overload = None;
                self.refresh_links();
                self.load.set_burst(1.0);
                let mut v = json!({"nodes": self.ids(nodes)});
                if let Some((n, last)) = failed {
                    v["duty_cycle_failures"] = json!({"count": n, "last": last});
                }
                v
            }
        })
    }

    /// Rebuilds every link's faults from the active ones.
    fn refresh_links(&self) {
        let n = self.node_ids.len();
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                let mut f = LinkFaults {
                    hold: self.links.faults(a, b).hold,
                    cut: self
                        .active
                        .cut
                        .as_ref()
                        .is_some_and(|c| c.contains(&(a, b)))
                        || self.active.stranded.is_some_and(|(s, _)| s == a || s == b),
                    ..LinkFaults::HEALED
                };
                if let Some(m) = &self.active.messages {
                    f.drop_probability = m.drop_probability;
                    f.duplicate_probability = m.duplicate_probability;
                    f.corrupt_probability = m.corrupt_probability;
                    // Uniform jitter around the delay reorders messages.
                    f.delay_ms += m.delay_ms;
                    f.jitter = m.delay_ms > 0.0;
                }
                if let Some((nodes, latency_ms, bandwidth)) = &self.active.overload {
                    if nodes.contains(&a) || nodes.contains(&b) {
                        f.delay_ms += latency_ms;
                        f.bandwidth_bytes_per_s = *bandwidth as f64;
                    }
                }
                self.links.set_faults(a, b, f);
            }
        }
    }

    /// The current leader's index, from trace events: the node whose
    /// election or commit fired the action, else the newest leader, unless
    /// the nemesis has it down or paused (then none is known).
    fn current_leader(&self) -> Option<usize> {
        if let Some((Moment::Elect | Moment::Commit | Moment::Lease, node)) = self.moment {
            return Some(node);
        }
        let leader = self.leader.borrow();
        let (_, id) = leader.as_ref()?;
        let i = self.node_ids.iter().position(|n| n == id)?;
        (!self.down.contains(&i) && !self.paused.contains(&i)).then_some(i)
    }

    /// The nodes a target names now. No known leader (or moment node): a
    /// seeded random node.
    fn resolve(&mut self, target: &Target) -> Vec<usize> {
        match target {
            Target::Nodes(nodes) => self.place(nodes),
            Target::Moment => match self.moment {
                Some((_, node)) => vec![node],
                None => vec![self.random_node()],
            },
            Target::Leader => match self.current_leader() {
                Some(l) => vec![l],
                None => {
                    self.leader_unknown = true;
                    vec![self.random_node()]
                }
            },
        }
    }

    fn partition(&mut self, shape: Shape, cut: &[Link]) -> Value {
        if let Some(members) = self.moved_members() {
            return self.refit_partition(shape, &members);
        }
        let cut = if shape == Shape::IsolateLeader {
            let leader = self.current_leader();
            self.leader_unknown = leader.is_none();
            partition_cut(shape, self.node_ids.len(), &mut self.rng, leader)
        } else {
            self.place_links(cut)
        };
        let cut_ids: Vec<[String; 2]> = cut
            .iter()
            .map(|&(a, b)| [self.node_ids[a].clone(), self.node_ids[b].clone()])
            .collect();
        if self.holds.bound.is_some() {
            self.holds.partitioned = self.current_leader().filter(|&l| self.cut_off(l, &cut));
        }
        self.active.cut = Some(cut);
        self.refresh_links();
        json!({"shape": shape, "cut": cut_ids})
    }

    /// A partition drawn anew over the members at hand, once membership
    /// changes moved them from the places the schedule was drawn for: a
    /// ring of 5 places is no ring on 7 members. The record says so.
    fn refit_partition(&mut self, shape: Shape, members: &[usize]) -> Value {
        let leader = self.current_leader();
        if shape == Shape::IsolateLeader {
            self.leader_unknown = leader.is_none();
        }
        let rank = leader.and_then(|l| members.iter().position(|&m| m == l));
        let (fitted, ranks) =
            faultline_nemesis::refit_cut(shape, members.len(), &mut self.rng, rank);
        let cut: Vec<Link> = ranks
            .into_iter()
            .map(|(a, b)| (members[a], members[b]))
            .collect();
        let cut_ids: Vec<[String; 2]> = cut
            .iter()
            .map(|&(a, b)| [self.node_ids[a].clone(), self.node_ids[b].clone()])
            .collect();
        if self.holds.bound.is_some() {
            self.holds.partitioned = leader.filter(|&l| self.cut_off(l, &cut));
        }
        self.active.cut = Some(cut);
        self.refresh_links();
        json!({"shape": shape, "cut": cut_ids,
            "refit": {"members": self.ids(members.to_vec()), "shape": fitted}})
    }

    /// Pauses the live targets; `Null` when that froze no process.
    fn pause(&mut self, target: &Target, process: Option<&str>) -> anyhow::Result<Value> {
        let live: Vec<usize> = self
            .resolve(target)
            .into_iter()
            .filter(|i| !self.down.contains(i))
            .collect();
        if self.holds.bound.is_some() && process.is_none() {
            let leader = self.current_leader();
            self.holds.paused = leader.filter(|l| live.contains(l));
        }
        let mut reached = Reached::default();
        for &i in &live {
            let pids = self.processes.pause(i, process)?;
            self.paused.insert(i);
            reached.add(&self.node_ids[i], pids);
        }
        Ok(reached.record(process))
    }

    /// The nodes an undo reaches: those named, or every affected one.
    /// While membership changes, the nodes a schedule names are places in
    /// the cluster, not who holds them now: an undo reaches whom its fault
    /// affected.
    fn scope(&self, nodes: &Scope, affected: &BTreeSet<usize>) -> Vec<usize> {
        match nodes {
            Scope::Nodes(n) if self.membership.is_none() => n.clone(),
            _ => affected.iter().copied().collect(),
        }
    }

    fn resume(&mut self, nodes: &Scope) -> anyhow::Result<Value> {
        let nodes = self.scope(nodes, &self.paused);
        for &i in &nodes {
            if self.paused.remove(&i) {
                self.processes.resume(i)?;
            }
        }
        Ok(json!({"nodes": self.ids(nodes)}))
    }

    /// Kills the targets; `Null` when no process was running there.
    async fn kill(&mut self, target: &Target, process: Option<&str>) -> Value {
        let nodes = self.resolve(target);
        let mut reached = Reached::default();
        for &i in &nodes {
            // A kill of one process leaves a pause of the others to its
            // resume; a kill of all ends the pause (SIGKILL needs no SIGCONT).
            if process.is_none() {
                self.paused.remove(&i);
            }
            let pids = self.processes.kill(i, process).await;
            reached.add(&self.node_ids[i], pids);
            self.down.insert(i);
        }
        reached.record(process)
    }

    /// Crashes each target (killed, unsynced writes dropped) and records
    /// what each lost.
    async fn crash(&mut self, target: &Target, loss: LossKind, seed: u32) -> anyhow::Result<Value> {
        let nodes = self.resolve(target);
        let how = match loss {
            LossKind::Lose => faultline_durable::Loss::All,
            LossKind::Subset => faultline_durable::Loss::Subset,
            LossKind::Torn => faultline_durable::Loss::TornPrefix,
        };
        let mut lost: Vec<CrashEffect> = Vec::new();
        let mut reached = serde_json::Map::new();
        for &i in &nodes {
            self.paused.remove(&i);
            let (r, pids) = self
                .processes
                .crash(i, how, &mut fault_rng(seed, i))
                .await?;
            reached.insert(self.node_ids[i].clone(), json!(pids));
            self.down.insert(i);
            let path = |p: &std::path::PathBuf| p.to_string_lossy().into_owned();
            lost.push(CrashEffect {
                node: self.node_ids[i].clone(),
                lost: (r.lost.iter())
                    .map(|(f, bytes)| LostFile {
                        file: path(f),
                        bytes: *bytes,
                    })
                    .collect(),
                torn: r.torn.iter().map(path).collect(),
                undone: r.undone,
                not_undone: r.not_undone,
            });
        }
        // A power loss of a node that was not running still drops what it
        // never synced: recorded whatever it killed.
        Ok(
            json!({"nodes": self.ids(nodes), "loss": loss.name(), "effects": lost, "reached": reached}),
        )
    }

    /// Takes each node down and damages one of its files, each drawn from
    /// the fault's own seed (a replay damages the same way), and records
    /// exactly what was done.
    async fn damage(
        &mut self,
        nodes: &[usize],
        fault: DiskFault,
        seed: u32,
    ) -> anyhow::Result<Value> {
        let how = match fault {
            DiskFault::Flip => faultline_durable::DiskFault::Flip,
            DiskFault::Truncate => faultline_durable::DiskFault::Truncate,
            DiskFault::Zero => faultline_durable::DiskFault::Zero,
        };
        let mut effects: Vec<DiskEffect> = Vec::new();
        let nodes = self.place(nodes);
        for &i in &nodes {
            if self.refused.contains(&i) {
                // Its disk is known bad: damaging it again could destroy
                // the evidence it refused on (a checksum, a length) and
                // test nothing an operator would let happen.
                effects.push(DiskEffect::Spared {
                    node: self.node_ids[i].clone(),
                    spared: "refused to start after an earlier fault".into(),
                });
                continue;
            }
            self.paused.remove(&i);
            let d = self
                .processes
                .damage(i, how, &mut fault_rng(seed, i))
                .await?;
            self.down.insert(i);
            let node = self.node_ids[i].clone();
            effects.push(match d {
                Some(d) => DiskEffect::Damaged {
                    node,
                    file: d.file.to_string_lossy().into_owned(),
                    offset: d.offset,
                    length: d.length,
                    file_bytes: d.file_bytes,
                },
                None => DiskEffect::NoFiles { node, file: () },
            });
        }
        Ok(json!({"nodes": self.ids(nodes), "fault": fault.name(), "effects": effects}))
    }

    async fn restart(&mut self, nodes: &Scope) -> anyhow::Result<Value> {
        let restarted: Vec<usize> = self
            .scope(nodes, &self.down)
            .into_iter()
            .filter(|i| self.down.remove(i))
            .collect();
        let refused = self.processes.restart(&restarted).await?;
        // Down they stay: a later restart tries them again.
        self.down.extend(refused.iter().copied());
        for i in &restarted {
            if !refused.contains(i) {
                self.refused.remove(i);
            }
        }
        self.refused.extend(refused.iter().copied());
        Ok(json!({"nodes": self.ids(restarted), "refused_to_start": self.ids(refused)}))
    }

    /// `{"nodes": [ids], ...detail}`.
    fn with_nodes(&self, nodes: Vec<usize>, detail: Value) -> Value {
        let mut value = json!({"nodes": self.ids(nodes)});
        if let (Some(v), Value::Object(d)) = (value.as_object_mut(), detail) {
            v.extend(d);
        }
        value
    }

    /// Sets the skew of `target`'s clocks, each made from its current skew.
    fn skew(
        &mut self,
        target: &Target,
        make: impl Fn(&Skew, std::time::Instant) -> Skew,
        detail: Value,
    ) -> anyhow::Result<Value> {
        let nodes = self.resolve(target);
        self.skew_nodes(nodes, make, detail)
    }

    /// Sets the skew of these nodes' clocks (node indexes, not the places
    /// a schedule names: see `place`).
    fn skew_nodes(
        &mut self,
        nodes: Vec<usize>,
        make: impl Fn(&Skew, std::time::Instant) -> Skew,
        detail: Value,
    ) -> anyhow::Result<Value> {
        let Some(clocks) = &self.clocks else {
            anyhow::bail!("a clock fault was scheduled but the nodes were started without the clock agent (the clock nemesis is not enabled)");
        };
        let reached = {
            let mut c = clocks.lock().unwrap_or_else(|e| e.into_inner());
            for &i in &nodes {
                c.set(i, &make);
            }
            c.sync().map_err(anyhow::Error::msg)?
        };
        let mut value = self.with_nodes(nodes, detail);
        value["reached"] = json!(reached);
        Ok(value)
    }

    /// Cuts the leader off and sets its clock back at one instant: its
    /// peers elect a successor while its own clock says its lease (if it
    /// trusts one) has time left.
    fn strand(&mut self, delta_ms: i64) -> anyhow::Result<Value> {
        // The leader is a node, not a place: through `skew(Target::Nodes)`
        // it was mapped as a place once members moved, and the clock set
        // back was another member's while the leader was cut off with a
        // true clock (7 of 13 strandings of a 60 s lease-no-bound run).
        let leader = self.resolve(&Target::Leader);
        let detail = json!({"delta_ms": delta_ms});
        let offset = |_: &Skew, _| Skew::Offset { ms: delta_ms };
        let value = self.skew_nodes(leader.clone(), offset, detail)?;
        self.active.stranded = leader.first().map(|&l| (l, delta_ms));
        self.refresh_links();
        Ok(value)
    }

    fn unstrand(&mut self) -> anyhow::Result<Value> {
        let Some((node, _)) = self.active.stranded.take() else {
            return Ok(json!({"nodes": []}));
        };
        self.refresh_links();
        self.skew_nodes(vec![node], |_, _| Skew::True, json!({}))
    }

    /// Every clock the clock kind skewed back to true time; a stranded
    /// node keeps its offset until its own fault ends.
    fn reset_clocks(&mut self) -> anyhow::Result<Value> {
        let (mut reset, mut reached) = (Vec::new(), Default::default());
        if let Some(clocks) = &self.clocks {
            let mut c = clocks.lock().unwrap_or_else(|e| e.into_inner());
            reset = c.reset();
            if let Some((node, ms)) = self.active.stranded {
                c.set(node, |_, _| Skew::Offset { ms });
                reset.retain(|&i| i != node);
            }
            reached = c.sync().map_err(anyhow::Error::msg)?;
        }
        Ok(json!({"nodes": self.ids(reset), "reached": reached}))
    }

    /// Undoes every active fault: links healed, clocks reset, paused nodes
    /// resumed, killed nodes restarted.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        self.holds.healing = true;
        let skewed = self
            .clocks
            .as_ref()
            .is_some_and(|c| c.lock().unwrap_or_else(|e| e.into_inner()).any_skewed());
        let undo = [
            (self.active.cut.is_some(), Action::StopPartition),
            (self.active.messages.is_some(), Action::StopMessages),
            (self.active.overload.is_some(), Action::StopOverload),
            (self.active.stranded.is_some(), Action::Unstrand),
            (skewed, Action::ResetClock),
            (
                !self.paused.is_empty(),
                Action::Resume {
                    nodes: Scope::Affected,
                },
            ),
            (
                !self.down.is_empty(),
                Action::Restart {
                    nodes: Scope::Affected,
                },
            ),
        ];
        for (active, action) in undo {
            if active {
                self.apply(&action).await?;
            }
        }
        // Whatever else a link carries (a hold) is released too.
        self.links.heal();
        Ok(())
    }
}
