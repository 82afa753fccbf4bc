//! The cluster under test: the node processes of one run, started and
//! initialised, and the `Processes` the nemesis acts on (pause, kill,
//! restart on the same data directory, CPU throttling). Each node's data
//! directory lives in a temporary folder removed with the cluster.

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::nemesis::Processes;
use faultline_durable::{CrashReport, Damage, DiskFault, Layer, Loss};
use faultline_net::recorder::Recorder;
use faultline_net::router::Network;
use faultline_process::clock_agent::Agent as ClockAgent;
use faultline_process::contain::Cell;
use faultline_process::node::{self, NodeHandle, NodeSpec};
use faultline_rundir::record::Clock;
use faultline_rundir::ExitInfo;
use faultline_rundir::RunDir;
use faultline_rundir::TestConfig;
use faultline_systems::server::{self, ServerMode};
use faultline_systems::system::System;

/// One overload duty cycle: a throttled node runs `cpu_percent` of it.
const DUTY_PERIOD_MS: u64 = 100;

/// How the nodes of a run are started: programs, arguments, data and
/// clock files. Made before anything starts, so a clock nemesis that
/// cannot act is refused first.
pub struct Layout {
    pub specs: Vec<NodeSpec>,
    /// The clock agent, when the clock nemesis is on: every process of
    /// every node is patched so its wall clock can be skewed.
    pub clock_agent: Option<Arc<ClockAgent>>,
    /// A real server's readiness, stop and client details; `None` for
    /// stdio nodes.
    pub server: Option<ServerMode>,
    /// Each node's durability layer (mounted on its data directory), when
    /// a crash can drop what it never synced.
    pub layers: Vec<Option<Layer>>,
    /// How many nodes start (the first); the rest wait to be added.
    pub initial: usize,
    data_root: tempfile::TempDir,
}

/// What a run's data root is called: its faultline's pid and start time
/// (so a later run can tell a dead run's directory from a live one's), or
/// `faultline-kept-` for `--keep-data`, which nothing removes.
fn data_prefix(keep: bool) -> String {
    if keep {
        return "faultline-kept-".into();
    }
    let me = std::process::id();
    let ticks = faultline_process::contain::start_ticks(me).unwrap_or(0);
    format!("{DATA_PREFIX}{me}-{ticks}-")
}

const DATA_PREFIX: &str = "faultline-data-";

/// Removes the data roots of runs whose faultline is gone (SIGKILLed, or
/// forced out by a second signal), as stale mounts are removed: call after
/// `faultline_durable::remove_stale_mounts`. Returns what it removed.
pub fn remove_stale_data_roots() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let tmp = std::env::temp_dir();
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(DATA_PREFIX) else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(Ok(pid)), Some(Ok(ticks))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue; // not named by this scheme: not ours to judge
        };
        if faultline_process::contain::start_ticks(pid) == Some(ticks) {
            continue; // its faultline still runs
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

fn substitute(arg: &str, node_id: &str, data_dir: &Path) -> String {
    arg.replace("{node_id}", node_id)
        .replace("{data_dir}", &data_dir.display().to_string())
}

/// The node program and its leading arguments: the given binary, or this
/// binary's hidden `__target-node` command.
fn node_program(cfg: &TestConfig) -> anyhow::Result<(PathBuf, Vec<String>)> {
    Ok(match &cfg.bin {
        Some(p) => (p.clone(), Vec::new()),
        None => (
            std::env::current_exe().context("locating the faultline binary")?,
            vec!["__target-node".to_string()],
        ),
    })
}

impl Layout {
    /// The node ids of a run: n1..nN, or n0..nN-1 as Maelstrom names them.
    pub fn node_ids(cfg: &TestConfig) -> Vec<String> {
        cfg.node_ids()
    }

    /// Lays out every node; with `clocks` (the clock nemesis is on) a
    /// clock agent starts, to patch every process of every node.
    pub fn new(cfg: &TestConfig, run_dir: &RunDir, clocks: bool) -> anyhow::Result<Layout> {
        let data_root = tempfile::Builder::new()
            .prefix(&data_prefix(cfg.keep_data))
            .disable_cleanup(cfg.keep_data)
            .tempdir()
            .context("creating node data directories")?;
        if cfg.keep_data {
            eprintln!(
                "faultline: keeping each node's data directory under {} (--keep-data)",
                data_root.path().display()
            );
        }
        let (specs, server) = match &cfg.system {
            Some(name) => {
                let sys = System::load(name)?;
                let settings = faultline_systems::system::RunSettings {
                    vars: cfg.vars.clone(),
                    timeout_ms: cfg.timeout_ms,
                    members: cfg.cluster_size.map(|_| cfg.node_count),
                };
                let (specs, mode) = faultline_systems::server::layout(
                    &sys,
                    cfg.universe(),
                    run_dir,
                    data_root.path(),
                    &settings,
                )?;
                (specs, Some(mode))
            }
            None => (Self::stdio_specs(cfg, run_dir, data_root.path())?, None),
        };
        let clock_agent = if clocks {
            let log = run_dir.nodes_dir().join("clock-agent.log");
            Some(Arc::new(start_clock_agent(data_root.path(), &log)?))
        } else {
            None
        };
        let crashes = cfg
            .nemesis
            .iter()
            .any(|s| s.kind == faultline_nemesis::Kind::Crash);
        let layers = if crashes {
            let run_as = server.as_ref().and_then(|m| m.run_as);
            mount_layers(&specs, &data_root.path().join(".durable"), run_as)?
        } else {
            specs.iter().map(|_| None).collect()
        };
        Ok(Layout {
            specs,
            clock_agent,
            server,
            layers,
            initial: cfg.node_count,
            data_root,
        })
    }

    /// Nodes that speak the node protocol on stdio, through the router.
    fn stdio_specs(
        cfg: &TestConfig,
        run_dir: &RunDir,
        data_root: &Path,
    ) -> anyhow::Result<Vec<NodeSpec>> {
        let (program, mut base_args) = node_program(cfg)?;
        base_args.extend(cfg.args.iter().cloned());
        let mut specs = Vec::new();
        let ids = Self::node_ids(cfg);
        for (index, id) in ids.iter().cloned().enumerate() {
            let data_dir = data_root.join(&id);
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            specs.push(NodeSpec {
                args: base_args
                    .iter()
                    .map(|a| substitute(a, &id, &data_dir))
                    .collect(),
                log_path: run_dir.node_log(&id),
                program: program.clone(),
                data_dir,
                env: Vec::new(),
                routed: true,
                process: None,
                setup: cfg.workload().setup(&id, &ids, &cfg.topology),
                // With membership changes, init names the starting members:
                // the other nodes wait to be added.
                members: cfg.cluster_size.map(|_| ids[..cfg.node_count].to_vec()),
                cell: None,
                index,
                id,
            });
        }
        Ok(specs)
    }
}

/// Start-up was cancelled by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted while the nodes were starting")]
pub struct Interrupted;

/// The most a node's layer holds unsynced before writing the oldest back.
const MAX_UNSYNCED_BYTES: usize = 64 << 20;

/// Serves every node's data directory through a durability layer whose
/// backing folder (what survives a power cut) is under `root`.
fn mount_layers(
    specs: &[NodeSpec],
    root: &Path,
    run_as: Option<faultline_systems::system::RunAs>,
) -> anyhow::Result<Vec<Option<Layer>>> {
    let mut layers = Vec::new();
    for s in specs {
        let backing = root.join(&s.id);
        std::fs::create_dir_all(&backing)
            .with_context(|| format!("creating {}", backing.display()))?;
        // The layer shows its backing folder's owner and mode as the data
        // directory's: a server running as its own user must own it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&backing, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", backing.display()))?;
        faultline_systems::server::give(&backing, run_as)?;
        let layer = Layer::mount(&backing, &s.data_dir, MAX_UNSYNCED_BYTES)?;
        layers.push(Some(layer));
    }
    Ok(layers)
}

/// Starts the clock agent, with the lock every freeze takes while it
/// patches a process (under the run's data root).
fn start_clock_agent(data_root: &Path, log: &Path) -> anyhow::Result<ClockAgent> {
    let lock = data_root.join(".clock.lock");
    faultline_process::contain::set_freeze_lock(&lock)
        .with_context(|| format!("creating {}", lock.display()))?;
    let exe = std::env::current_exe().context("locating the faultline binary")?;
    Ok(ClockAgent::start(&exe, &lock, log)?)
}

/// The overloaded nodes, shared with the duty-cycle task.
struct Throttle {
    targets: BTreeSet<usize>,
    cpu_percent: u32,
    /// Each node's process groups (its server and sidecars), refreshed on
    /// restart; unused where each node has a control group.
    pgids: Vec<Vec<i32>>,
    /// Each node's control group: frozen and thawed whole.
    cells: Option<Vec<Cell>>,
    /// Stops or continues that failed, and the last failure.
    failures: Option<(u64, String)>,
    /// Paused or killed by another fault: the duty cycle leaves them be.
    held: BTreeSet<usize>,
}

impl Throttle {
    /// Stops (`run` false) or continues the targets that no other fault
    /// holds. A duty cycle does not wait for a freeze to settle.
    fn set_running(&mut self, run: bool) {
        let targets: Vec<usize> = self.targets.difference(&self.held).copied().collect();
        for i in targets {
            let done = match &self.cells {
                Some(cells) => cells[i].set_frozen(!run).map_err(|e| e.to_string()),
                None => {
                    let sig = if run {
                        Signal::SIGCONT
                    } else {
                        Signal::SIGSTOP
                    };
                    self.pgids[i]
                        .iter()
                        .try_for_each(|&pgid| killpg(Pid::from_raw(pgid), sig))
                        .map_err(|e| format!("{sig} to node {}: {e}", i + 1))
                }
            };
            if let Err(e) = done {
                let n = self.failures.as_ref().map_or(0, |f| f.0);
                self.failures = Some((n + 1, e));
            }
        }
    }
}

/// The running nodes of one run.
pub struct Cluster {
    specs: Vec<NodeSpec>,
    /// Each node's current incarnation; `None` for a node never started
    /// (out of the cluster since the start, with membership changes).
    nodes: Vec<Option<NodeHandle>>,
    /// How many nodes start (the first ones); the rest wait to be added.
    initial: usize,
    /// The last msg_id of a request the harness sent a node itself.
    next_ask: u64,
    /// Nodes that left the cluster: however their process ended (etcd
    /// stops a member once it learns it was removed), the harness meant it.
    departed: BTreeSet<usize>,
    /// Each node's sidecars, as `server.sidecars` lists them (started once
    /// the servers are up).
    sidecars: Vec<Vec<NodeHandle>>,
    inboxes: Vec<mpsc::Receiver<Value>>,
    net: Arc<Network>,
    recorder: Arc<Recorder>,
    clock: Clock,
    init_timeout: Duration,
    /// How long a restart waits for a server to listen before the schedule
    /// goes on (see `restart`).
    restart_wait: Duration,
    throttle: Arc<Mutex<Throttle>>,
    /// Exits of replaced incarnations that the harness did not cause.
    crashes: Vec<ExitInfo>,
    /// Nodes whose current incarnation refused to start.
    refused: BTreeSet<usize>,
    server: Option<ServerMode>,
    layers: Vec<Option<Layer>>,
    /// The cluster's control group and each node's (`contain`); `None`
    /// where processes are contained by process group only.
    cells: Option<(Cell, Vec<Cell>)>,
    /// Removed (with every node's data) when the cluster is dropped.
    /// Patches every process of every node, when clocks are skewed.
    clock_agent: Option<Arc<ClockAgent>>,
    _data_root: tempfile::TempDir,
}

impl Cluster {
    /// Starts and initialises every node; on any failure, kills what
    /// started and reports which node failed and why.
    pub async fn start(
        layout: Layout,
        net: Arc<Network>,
        recorder: Arc<Recorder>,
        clock: Clock,
        init_timeout: Duration,
        restart_wait: Duration,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Cluster> {
        let inboxes = (0..layout.specs.len())
            .map(|i| net.take_controller_inbox(i))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            initial: layout.initial,
            next_ask: 1_000,
            departed: BTreeSet::new(),
            sidecars: layout.specs.iter().map(|_| Vec::new()).collect(),
            throttle: Arc::new(Mutex::new(Throttle {
                targets: BTreeSet::new(),
                cpu_percent: 100,
                pgids: Vec::new(),
                cells: None,
                failures: None,
                held: BTreeSet::new(),
            })),
            crashes: Vec::new(),
            refused: BTreeSet::new(),
            server: layout.server,
            layers: layout.layers,
            cells: None,
            specs: layout.specs,
            clock_agent: layout.clock_agent,
            _data_root: layout.data_root,
            inboxes,
            net,
            recorder,
            clock,
            init_timeout,
            restart_wait,
        };
        if let Err(e) = cluster.contain() {
            cluster.stop_all().await;
            return Err(e);
        }
        // A signal during start-up (a slow init, a server that never gets
        // ready) stops at once rather than after the timeouts.
        let started = tokio::select! {
            r = cluster.start_all() => r,
            _ = cancel.cancelled() => Err(anyhow::Error::new(Interrupted)),
        };
        if let Err(e) = started {
            cluster.stop_all().await;
            return Err(e);
        }
        Ok(cluster)
    }

    /// Gives every node a control group and each of its processes a
    /// group inside it, so a fault reaches whatever they start.
    fn contain(&mut self) -> anyhow::Result<()> {
        let Some(session) = faultline_process::contain::Session::current() else {
            return Ok(());
        };
        let cluster = session
            .cluster()
            .context("making the cluster's control group")?;
        let mut cells = Vec::new();
        for (i, spec) in self.specs.iter_mut().enumerate() {
            let node = cluster.child(&spec.id)?;
            let name = match &self.server {
                Some(m) => m.process_name.clone(),
                None => "node".to_string(),
            };
            spec.cell = Some(node.child(&name)?);
            for car in self
                .server
                .iter_mut()
                .flat_map(|m| m.sidecars[i].iter_mut())
            {
                let name = car.spec.process.clone().unwrap_or_default();
                car.spec.cell = Some(node.child(&name)?);
            }
            cells.push(node);
        }
        if let Some(agent) = &self.clock_agent {
            for (spec, cell) in self.specs.iter().zip(&cells) {
                agent.cell(&spec.id, &cell.path)?;
            }
            for name in self.server.iter().flat_map(|m| &m.clock_exempt) {
                for cell in &cells {
                    agent.skip(&cell.path.join(name))?;
                }
            }
        }
        self.cells = Some((cluster, cells));
        Ok(())
    }

    /// Starts a node's process (its server, a sidecar); with clocks
    /// skewed, the program it runs is patched before its first
    /// instruction (what it starts later, the agent finds by its group).
    fn spawn(&self, spec: &NodeSpec) -> anyhow::Result<NodeHandle> {
        let exempt = spec.process.as_ref().is_some_and(|p| {
            self.server
                .as_ref()
                .is_some_and(|m| m.clock_exempt.contains(p))
        });
        let agent = self.clock_agent.as_ref().filter(|_| !exempt);
        Ok(node::spawn(
            spec,
            &self.net,
            &self.recorder,
            self.clock,
            agent,
        )?)
    }

    /// Node `i`'s control group, if processes are contained by one.
    fn cell(&self, i: usize) -> Option<&Cell> {
        self.cells.as_ref().map(|(_, c)| &c[i])
    }

    async fn start_all(&mut self) -> anyhow::Result<()> {
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cells = self.cells.as_ref().map(|(_, c)| c.clone());
        self.run_init().await?;
        for (i, s) in self.specs.iter().enumerate() {
            self.nodes.push(if i < self.initial {
                Some(self.spawn(s)?)
            } else {
                None
            });
        }
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pgids = self
            .nodes
            .iter()
            .map(|h| h.iter().map(|h| h.pid).collect())
            .collect();
        let (net, server, timeout) = (&self.net, self.server.as_ref(), self.init_timeout);
        let ups = self
            .nodes
            .iter_mut()
            .zip(self.inboxes.iter_mut())
            .enumerate()
            .filter_map(|(i, (n, inbox))| Some((i, n.as_mut()?, inbox)))
            .map(|(i, n, inbox)| up(n, inbox, net, server, i, timeout));
        for r in futures::future::join_all(ups).await {
            r?;
        }
        let all: Vec<usize> = (0..self.initial).collect();
        for r in self.start_sidecars(&all, false).await {
            r?;
        }
        for i in all {
            self.rejoin(i);
        }
        // Once, with every node ready: what the system needs before load.
        let setup = match &self.cells {
            Some((c, _)) if self.server.as_ref().is_some_and(|m| !m.setup.is_empty()) => {
                Some(c.child("setup")?)
            }
            _ => None,
        };
        for step in self.server.iter().flat_map(|m| &m.setup) {
            server::run_step(step, &[], setup.as_ref()).await?;
        }
        if setup.is_some() {
            self.sync_layers()?;
        }
        Ok(())
    }

    /// What init and setup steps wrote is durable before the first fault,
    /// as files an operator wrote before starting a server would be.
    fn sync_layers(&self) -> anyhow::Result<()> {
        for (layer, spec) in self.layers.iter().zip(&self.specs) {
            if let Some(l) = layer {
                l.sync_all()
                    .with_context(|| format!("syncing {}'s data directory", spec.id))?;
            }
        }
        Ok(())
    }

    /// Each node's steps before its first start (initdb), nodes at once
    /// and each node's steps in order; a failing step fails the run.
    async fn run_init(&self) -> anyhow::Result<()> {
        let Some(m) = &self.server else {
            return Ok(());
        };
        let mut cells = Vec::new();
        for i in 0..self.specs.len() {
            cells.push(match self.cell(i) {
                Some(c) if !m.init[i].is_empty() => Some(c.child("init")?),
                _ => None,
            });
        }
        let nodes =
            m.init
                .iter()
                .zip(&self.specs)
                .zip(&cells)
                .map(|((steps, spec), cell)| async move {
                    for step in steps {
                        server::run_step(step, &spec.env, cell.as_ref())
                            .await
                            .with_context(|| format!("initialising {}", spec.id))?;
                    }
                    anyhow::Ok(())
                });
        for r in futures::future::join_all(nodes).await {
            r?;
        }
        self.sync_layers()
    }

    /// Starts the sidecars of `nodes` that are not running (all of them at
    /// first; after a fault, those it took down) and waits for their
    /// probes: whole at first, only listening after a restart.
    async fn start_sidecars(&mut self, nodes: &[usize], restart: bool) -> Vec<anyhow::Result<()>> {
        let Some(server) = self.server.clone() else {
            return Vec::new();
        };
        let mut started = Vec::new();
        for &i in nodes {
            for (k, plan) in server.sidecars[i].iter().enumerate() {
                if self.sidecars[i].get(k).is_some_and(NodeHandle::is_running) {
                    continue;
                }
                if let Err(e) = self.thaw_for_start(i) {
                    return vec![Err(e)];
                }
                let h = match self.spawn(&plan.spec) {
                    Ok(h) => h,
                    Err(e) => return vec![Err(e)],
                };
                match self.sidecars[i].get_mut(k) {
                    Some(old) => {
                        let old = std::mem::replace(old, h);
                        self.crashes.extend(unexpected(&old, false));
                    }
                    None => self.sidecars[i].push(h),
                }
                started.push((i, k));
            }
        }
        let waits = self
            .sidecars
            .iter_mut()
            .enumerate()
            .flat_map(|(i, hs)| hs.iter_mut().enumerate().map(move |(k, h)| (i, k, h)))
            .filter(|(i, k, _)| started.contains(&(*i, *k)))
            .map(|(i, k, h)| {
                let plan = &server.sidecars[i][k];
                let probe =
                    plan.ready
                        .as_ref()
                        .map(|r| if restart { r.listening() } else { r.clone() });
                async move {
                    match probe {
                        Some(r) => server::wait_ready(h, &r, plan.ready_timeout).await,
                        None => Ok(()),
                    }
                }
            });
        futures::future::join_all(waits).await
    }

    /// The processes of node `i` a fault aims at: every one (the server
    /// first), or the one named.
    fn aimed(&mut self, i: usize, process: Option<&str>) -> Vec<&mut NodeHandle> {
        let server = self.server.as_ref().map(|m| m.process_name.as_str());
        let mut out = Vec::new();
        if process.is_none() || process == server {
            out.extend(self.nodes[i].as_mut());
        }
        for h in &mut self.sidecars[i] {
            if process.is_none() || process == h.spec.process.as_deref() {
                out.push(h);
            }
        }
        out
    }

    /// Whether node `i`'s server runs (a node never started does not).
    fn is_running(&self, i: usize) -> bool {
        self.nodes[i].as_ref().is_some_and(NodeHandle::is_running)
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    fn hold(&self, i: usize, held: bool) {
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if held {
            t.held.insert(i);
        } else {
            t.held.remove(&i);
        }
    }

    /// Thaws node `i`'s group before a process of it starts: a process
    /// joins its group before it executes, and one joining a frozen group
    /// (a pause or an overload's duty cycle left it so when the node was
    /// killed) would freeze before exec, with the spawn waiting on it.
    fn thaw_for_start(&self, i: usize) -> anyhow::Result<()> {
        if let Some(cell) = self.cell(i) {
            cell.thaw()
                .with_context(|| format!("thawing {} to start it", self.specs[i].id))?;
        }
        Ok(())
    }

    /// Starts node `i` again on its data directory (the new incarnation
    /// is not yet initialised or ready).
    fn respawn(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(e) = self.unexpected_exit(i) {
            self.crashes.push(e);
        }
        self.thaw_for_start(i)?;
        let handle = self.spawn(&self.specs[i])?;
        // A stale init_ok from an earlier incarnation must not count.
        while self.inboxes[i].try_recv().is_ok() {}
        self.nodes[i] = Some(handle);
        Ok(())
    }

    /// How node `i`'s current incarnation ended, if the harness did not
    /// end it: refusing to start, or a crash.
    fn unexpected_exit(&mut self, i: usize) -> Option<ExitInfo> {
        let refused = self.refused.remove(&i);
        if self.departed.remove(&i) {
            return None;
        }
        unexpected(self.nodes[i].as_ref()?, refused)
    }

    /// Node `i`'s new incarnation takes its place in overload's duty cycle.
    fn rejoin(&mut self, i: usize) {
        let pgids = self.nodes[i]
            .iter()
            .chain(&self.sidecars[i])
            .map(|h| h.pid)
            .collect();
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pgids[i] = pgids;
        self.hold(i, false);
    }

    /// Kills every node (stopped ones too) and waits until each is reaped;
    /// returns the exits the harness did not cause.
    pub async fn stop_all(&mut self) -> Vec<ExitInfo> {
        {
            let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
            t.held.extend(0..self.specs.len());
            t.targets.clear();
        }
        let mut crashed = std::mem::take(&mut self.crashes);
        for i in 0..self.nodes.len() {
            // A frozen process hears no signal: a node still paused (a
            // run cut short) is thawed to stop as its file says.
            if let Some(Err(e)) = self.cell(i).map(|c| c.thaw()) {
                eprintln!(
                    "faultline: warning: thawing {} to stop it: {e}",
                    self.specs[i].id
                );
            }
            crashed.extend(self.stop_sidecars(i).await);
            crashed.extend(self.unexpected_exit(i));
            let Some(n) = self.nodes[i].as_mut() else {
                continue;
            };
            match &self.server {
                // A server stops as it says it does, then is killed.
                Some(m) => n.stop(m.stop_signal, m.stop_grace).await,
                // SIGKILL needs no SIGCONT, even for a stopped process.
                None => n.kill().await,
            };
        }
        // Whatever a node left (a daemon in a session of its own) ends
        // before its data is removed.
        if let Some((cluster, _)) = self.cells.take() {
            let left = cluster.pids().len();
            let removed = tokio::task::spawn_blocking(move || cluster.remove()).await;
            match removed {
                Ok(Err(e)) => eprintln!("faultline: warning: ending the nodes' processes: {e}"),
                _ if left > 0 => eprintln!(
                    "faultline: ended {left} processes the nodes left running after they stopped"
                ),
                _ => {}
            }
        }
        crashed.dedup();
        crashed
    }

    /// Stops node `i`'s sidecars, each as its file says; returns the exits
    /// the harness did not cause.
    async fn stop_sidecars(&mut self, i: usize) -> Vec<ExitInfo> {
        let mut crashed = Vec::new();
        let plans = self
            .server
            .as_ref()
            .map(|m| m.sidecars[i].clone())
            .unwrap_or_default();
        for (h, plan) in self.sidecars[i].iter_mut().zip(&plans) {
            crashed.extend(unexpected(h, false));
            h.stop(plan.stop_signal, plan.stop_grace).await;
        }
        crashed
    }

    /// Starts server `i` afresh to join `members`, planned as a joiner
    /// (`{join}` names them and it; `{cluster_state}` is `existing`), and
    /// waits (bounded) until it listens.
    async fn join_server(
        &mut self,
        m: &ServerMode,
        i: usize,
        members: &[usize],
    ) -> anyhow::Result<()> {
        self.specs[i] = server::joiner_spec(m, i, members, &self.specs[i])?;
        self.respawn(i)?;
        let listening = m.ready[i].listening();
        let wait = m.ready_timeout.min(self.restart_wait);
        let node = self.nodes[i].as_mut().expect("respawned");
        if let Err(e) = server::wait_ready(node, &listening, wait).await {
            eprintln!("faultline: warning: a joining server: {e:#}");
        }
        self.rejoin(i);
        Ok(())
    }

    /// Kills every process of node `i` (a power loss, a damaged disk);
    /// returns who was killed.
    async fn kill_all(&mut self, i: usize) -> Vec<u32> {
        self.kill(i, None).await
    }
}

/// How a process's incarnation ended, if the harness did not end it.
fn unexpected(h: &NodeHandle, refused: bool) -> Option<ExitInfo> {
    let mut e = h.exit.borrow().clone()?;
    e.refused_to_start = refused;
    (!e.expected).then_some(e)
}

impl Processes for Cluster {
    fn pause(&mut self, i: usize, process: Option<&str>) -> anyhow::Result<Vec<u32>> {
        self.hold(i, true);
        if process.is_none() {
            self.net.pause(i);
        }
        // The whole node at once, as a frozen machine: its group, else
        // each process group of it.
        let whole = process.is_none().then(|| self.cell(i).cloned()).flatten();
        if let Some(cell) = whole {
            return cell
                .freeze()
                .with_context(|| format!("pausing {}", self.specs[i].id));
        }
        let mut reached = Vec::new();
        for h in self.aimed(i, process) {
            match h.spec.cell.clone() {
                Some(cell) => reached.extend(
                    cell.freeze()
                        .with_context(|| format!("pausing {}", h.spec.label()))?,
                ),
                None => {
                    reached.extend(h.processes());
                    killpg(Pid::from_raw(h.pid), Signal::SIGSTOP)
                        .with_context(|| format!("pausing {} (SIGSTOP)", h.spec.label()))?;
                }
            }
        }
        Ok(reached)
    }

    fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.hold(i, false);
        // Running first, then fed: what waited is read as soon as it runs.
        // Thawing (or SIGCONT to) what was not stopped does nothing, so
        // the whole node is continued whatever the pause aimed at.
        if let Some(cell) = self.cell(i).cloned() {
            cell.thaw()
                .with_context(|| format!("resuming {}", self.specs[i].id))?;
        }
        for h in self.aimed(i, None) {
            // A process that exited meanwhile has no group left to continue.
            if h.is_running() && h.spec.cell.is_none() {
                killpg(Pid::from_raw(h.pid), Signal::SIGCONT)
                    .with_context(|| format!("resuming {} (SIGCONT)", h.spec.label()))?;
            }
        }
        self.net.resume(i);
        Ok(())
    }

    async fn kill(&mut self, i: usize, process: Option<&str>) -> Vec<u32> {
        self.hold(i, true);
        // A frozen task cannot die under cgroup v1 until it is thawed, and
        // a process's group cannot thaw while its node's is frozen (a
        // pause): the kill waited out its 5 s bound and left the node
        // behind. A kill of the whole node ends its pause; a kill of one
        // process of a paused node thaws the node for the kill and freezes
        // it again.
        let cell = self.cell(i).cloned();
        let refreeze = cell
            .as_ref()
            .is_some_and(|c| process.is_some() && c.is_frozen());
        if let Some(c) = &cell {
            if let Err(e) = c.thaw() {
                eprintln!(
                    "faultline: warning: thawing {} to kill it: {e}",
                    self.specs[i].id
                );
            }
        }
        let mut reached = Vec::new();
        for h in self.aimed(i, process) {
            reached.extend(h.processes());
            h.kill().await;
        }
        if let Some(c) = cell.filter(|_| refreeze) {
            if let Err(e) = c.freeze() {
                eprintln!(
                    "faultline: warning: pausing {} again: {e}",
                    self.specs[i].id
                );
            }
        }
        reached
    }

    async fn restart(&mut self, nodes: &[usize]) -> anyhow::Result<Vec<usize>> {
        let mut refused = Vec::new();
        let Some(server) = self.server.clone() else {
            // Stdio nodes, one at a time: each must answer init, or have
            // exited refusing to start. One already running (membership
            // started it meanwhile) is up: a second incarnation would
            // orphan the first.
            for &i in nodes {
                if self.is_running(i) {
                    continue;
                }
                self.respawn(i)?;
                let node = self.nodes[i].as_mut().expect("respawned");
                let inbox = &mut self.inboxes[i];
                match node::init(&self.net, inbox, node, self.init_timeout).await {
                    Ok(()) => self.rejoin(i),
                    Err(e) if !self.is_running(i) => {
                        eprintln!(
                            "faultline: {} refused to start (fail-stop): {e:#}",
                            self.specs[i].id
                        );
                        refused.push(i);
                    }
                    Err(e) => return Err(e),
                }
            }
            self.refused.extend(refused.iter().copied());
            return Ok(refused);
        };
        // Servers all at once, each waited for only until it listens: a
        // member may only be healthy (etcd's /health wants a leader) once
        // enough of the others are back and the other faults have healed.
        // Some listen only then (a Galera node opens its SQL port once it
        // has joined a primary component), so the wait is bounded by one
        // nemesis interval too: the schedule goes on, and its next step
        // may heal what keeps the node from coming up.
        let wait = server.ready_timeout.min(self.restart_wait);
        // A server a fault left running (it aimed at a sidecar) stays.
        let respawned: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|&i| !self.is_running(i))
            .collect();
        for &i in &respawned {
            self.respawn(i)?;
        }
        let waits = self
            .nodes
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| respawned.contains(i))
            .filter_map(|(i, n)| Some((i, n.as_mut()?)))
            .map(|(i, n)| {
                let listening = server.ready[i].listening();
                async move { (i, server::wait_ready(n, &listening, wait).await) }
            });
        for (i, r) in futures::future::join_all(waits).await {
            // Not ready in time is the system's business, which the
            // liveness check judges, not a failure of the harness.
            if let Err(e) = r {
                eprintln!("faultline: warning: after a restart, {e:#}");
                if !self.is_running(i) {
                    refused.push(i);
                }
            }
        }
        for r in self.start_sidecars(nodes, true).await {
            if let Err(e) = r {
                eprintln!("faultline: warning: after a restart, {e:#}");
            }
        }
        for &i in nodes {
            self.rejoin(i);
        }
        self.refused.extend(refused.iter().copied());
        Ok(refused)
    }

    async fn crash(
        &mut self,
        i: usize,
        loss: Loss,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> anyhow::Result<(CrashReport, Vec<u32>)> {
        let reached = self.kill_all(i).await;
        let Some(layer) = self.layers[i].as_mut() else {
            anyhow::bail!(
                "a crash was scheduled but {} has no durability layer",
                self.specs[i].id
            );
        };
        Ok((layer.crash(loss, rng)?, reached))
    }

    async fn damage(
        &mut self,
        i: usize,
        fault: DiskFault,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> anyhow::Result<Option<Damage>> {
        self.kill_all(i).await;
        let dir = &self.specs[i].data_dir;
        let named = self
            .server
            .as_ref()
            .map(|m| m.data_files.clone())
            .unwrap_or_default();
        faultline_durable::damage_matching(dir, &named, fault, rng).with_context(|| {
            format!(
                "damaging a file of {} in {}",
                self.specs[i].id,
                dir.display()
            )
        })
    }

    fn starts_after_add(&self) -> bool {
        let server = self.server.as_ref();
        server.is_some_and(|m| m.membership.as_ref().is_some_and(|x| x.start_after_add()))
    }

    async fn join(&mut self, i: usize, members: &[usize], fresh: bool) -> anyhow::Result<()> {
        // Through `kill`, which thaws a paused node first: a frozen
        // process killed directly waited out 15 s of bounds, and the
        // nemesis with it.
        if self.nodes[i].is_some() {
            let server = self.server.as_ref().map(|m| m.process_name.clone());
            self.kill(i, server.as_deref()).await;
        }
        if fresh {
            wipe(&self.specs[i].data_dir)?;
        }
        if let Some(m) = self.server.clone() {
            return self.join_server(&m, i, members).await;
        }
        // However it began, it now waits to be added.
        self.specs[i].members = Some(Vec::new());
        self.respawn(i)?;
        let node = self.nodes[i].as_mut().expect("respawned");
        if let Err(e) = node::init(&self.net, &mut self.inboxes[i], node, self.init_timeout).await {
            node.kill().await;
            return Err(e);
        }
        self.rejoin(i);
        Ok(())
    }

    async fn leave(&mut self, i: usize) {
        self.departed.insert(i);
        // A member removed while paused (or frozen by overload's duty
        // cycle) must be thawed to die: killed frozen, each removal
        // stalled the nemesis 15 s (62 of 104 runs of `all` met one).
        self.kill(i, None).await;
    }

    async fn ask(&mut self, i: usize, mut body: Value, timeout: Duration) -> Option<Value> {
        if let Some(m) = &self.server {
            let members = m.membership.as_ref()?;
            let ids: Vec<String> = self.specs.iter().map(|s| s.id.clone()).collect();
            let answer = members.answer(m.slot, i, &body, &ids);
            return tokio::time::timeout(timeout, answer).await.ok().flatten();
        }
        self.next_ask += 1;
        body["msg_id"] = serde_json::json!(self.next_ask);
        let node = self.nodes[i].as_ref()?;
        node::request(&self.net, &mut self.inboxes[i], node, &body, timeout).await
    }

    fn throttle(&mut self, nodes: &BTreeSet<usize>, cpu_percent: u32) -> Vec<(usize, Vec<u32>)> {
        // The duty cycle runs only in runs that overload something.
        if Arc::weak_count(&self.throttle) == 0 {
            spawn_duty_cycle(Arc::downgrade(&self.throttle));
        }
        {
            let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
            t.cpu_percent = cpu_percent;
            t.targets = nodes.clone();
            t.failures = None;
        }
        nodes
            .iter()
            .map(|&i| {
                let pids = match self.cell(i) {
                    Some(c) => c.pids(),
                    None => self
                        .aimed(i, None)
                        .iter()
                        .flat_map(|h| h.processes())
                        .collect(),
                };
                (i, pids)
            })
            .collect()
    }

    fn unthrottle(&mut self) -> (BTreeSet<usize>, Option<(u64, String)>) {
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        t.set_running(true);
        (std::mem::take(&mut t.targets), t.failures.take())
    }
}

/// Empties a node's data directory (a server replaced under its own name
/// comes back with nothing).
fn wipe(dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in entries {
        let path = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("wiping {}", path.display()))?;
    }
    // Durable, as a replaced disk is: a power loss must not bring the old
    // files back under the durability layer.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Brings a just-started node up: `init` for a stdio node, its readiness
/// probe for a server.
async fn up(
    node: &mut NodeHandle,
    inbox: &mut mpsc::Receiver<Value>,
    net: &Network,
    server: Option<&ServerMode>,
    i: usize,
    init_timeout: Duration,
) -> anyhow::Result<()> {
    match server {
        Some(m) => server::wait_ready(node, &m.ready[i], m.ready_timeout).await,
        None => node::init(net, inbox, node, init_timeout).await,
    }
}

/// Overload's CPU share: each period, the targets run for `cpu_percent`
/// of it and are stopped for the rest. Runs until the cluster is gone.
fn spawn_duty_cycle(throttle: Weak<Mutex<Throttle>>) {
    tokio::spawn(async move {
        loop {
            let on_ms = {
                let Some(t) = throttle.upgrade() else { return };
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                t.set_running(true);
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
                t.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_running(false);
            }
            tokio::time::sleep(Duration::from_millis(DUTY_PERIOD_MS - on_ms)).await;
        }
    });
}
