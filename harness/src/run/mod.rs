//! `faultline test`, in phases: set up the cluster, load it (clients and
//! nemesis), heal, check liveness, tear down, check, record. Each phase is
//! its own function or module; data flows one way, and the checkers read
//! history.jsonl back from disk like any other history.

pub mod cluster;
pub mod judge;
mod leader;
pub mod liveness;
pub mod load;

use anyhow::Context;
use faultline_checker::CheckerResult;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::client::Pacer;
use crate::nemesis::membership::{MemberView, MembershipOptions};
use crate::nemesis::{Executor, ExecutorOptions};
use cluster::{Cluster, Layout};
use faultline_net::links::Links;
use faultline_net::recorder::Recorder;
use faultline_net::router::{LinkPolicy, Network};
use faultline_net::tcp::TcpLinks;
use faultline_process::clock_agent::Agent as ClockAgent;
use faultline_rundir::record::{Clock, History};
use faultline_rundir::ExitInfo;
use faultline_rundir::TestConfig;
use faultline_rundir::{Results, RunDir};
use faultline_systems::client::Endpoint;
use faultline_systems::server::ServerMode;

/// The longest a fault on the leader of a probed system holds, waiting
/// for the system to name another (a failover takes seconds: a sentinel's
/// down-after plus a vote, an HA manager's TTL).
const FAILOVER_HOLD: Duration = Duration::from_secs(30);

/// How often buffered traces and journal lines are flushed, so a killed
/// harness loses at most this much of them.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Where a run's events go: the time base, history.jsonl, the recorder of
/// traces and messages, and the network that feeds it.
pub struct Recording {
    pub clock: Clock,
    pub history: Arc<History>,
    pub recorder: Arc<Recorder>,
    /// The stdio router (idle for a real server, whose clients use theirs).
    pub net: Arc<Network>,
    /// The links the nemesis acts on: the router's, or the TCP proxies'.
    pub links: Arc<dyn Links>,
    pub tcp: Option<Arc<TcpLinks>>,
    /// How clients reach each node of a real server.
    pub clients: Option<Vec<Arc<dyn Endpoint>>>,
    /// Where client adapters' stderr goes.
    pub adapter_logs: PathBuf,
}

impl Recording {
    async fn create(
        cfg: &TestConfig,
        dir: &RunDir,
        server: Option<&ServerMode>,
    ) -> anyhow::Result<Recording> {
        let clock = Clock::new();
        let history = History::create(&dir.file(faultline_rundir::HISTORY), clock)
            .context("creating history.jsonl")?;
        let recorder = Arc::new(
            Recorder::create(dir.path(), clock, cfg.journal_limit)
                .context("creating traces/messages files")?,
        );
        let policy = LinkPolicy::with_latency(cfg.latency_ms, cfg.latency_dist);
        let ids = Layout::node_ids(cfg);
        let net = Network::new(
            ids.clone(),
            cfg.concurrency,
            policy,
            cfg.seed,
            recorder.clone(),
        );
        let tcp = match server {
            Some(m) => {
                let slot = m.slot;
                let node = move |j: usize| faultline_systems::system::System::node_ip(slot, j + 1);
                let proxy = move |i: usize, j: usize| {
                    faultline_systems::system::System::proxy_ip(slot, i + 1, j + 1)
                };
                let journal = Some((recorder.clone(), clock));
                Some(
                    TcpLinks::start(
                        ids,
                        &m.peer_ports,
                        node,
                        proxy,
                        m.peer_source,
                        cfg.seed,
                        journal,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let links: Arc<dyn Links> = match &tcp {
            Some(t) => t.clone(),
            None => net.clone(),
        };
        let clients = server.map(|m| m.clients.clone());
        let adapter_logs = dir.nodes_dir();
        Ok(Recording {
            clock,
            history: Arc::new(history),
            recorder,
            net,
            links,
            tcp,
            clients,
            adapter_logs,
        })
    }
}

/// Refuses what cannot work before anything starts: a clock nemesis needs
/// a host that lets faultline patch a process's clock (a prepared run's
/// test.json was judged on another host, maybe). Returns whether clocks
/// are skewed in this run.
pub fn preflight(cfg: &TestConfig) -> anyhow::Result<bool> {
    if !cfg.nemesis.iter().any(|s| s.kind.moves_clocks()) {
        return Ok(false);
    }
    faultline_process::clock::support()
        .map_err(|why| anyhow::anyhow!("the clock nemesis cannot act on this host: {why}"))?;
    Ok(true)
}

/// Runs the test in `dir` (whose test.json is `cfg`) and writes
/// results.json; `clocks` is what `preflight` found.
pub async fn run(
    cfg: &TestConfig,
    dir: &RunDir,
    clocks: bool,
    cancel: CancellationToken,
) -> anyhow::Result<Results> {
    let layout = Layout::new(cfg, dir, clocks)?;
    let clock_agent = layout.clock_agent.clone();
    let leader_probes = layout
        .server
        .as_ref()
        .and_then(|m| Some((m.leader.clone()?, m.ips.clone())));
    let rec = Recording::create(cfg, dir, layout.server.as_ref()).await?;
    let init_timeout = Duration::from_millis(cfg.init_timeout_ms);
    let restart_wait = Duration::from_secs_f64(cfg.nemesis_interval_s.max(1.0));
    let started = Cluster::start(
        layout,
        rec.net.clone(),
        rec.recorder.clone(),
        rec.clock,
        init_timeout,
        restart_wait,
        &cancel,
    )
    .await;
    let cluster = match started {
        Ok(c) => c,
        Err(e) if e.is::<cluster::Interrupted>() => {
            // Every node is stopped and its data gone: what there is of
            // the run is kept, marked interrupted.
            let _ = rec.recorder.finish();
            return record(cfg, dir, &rec, None, Vec::new(), (None, Vec::new()), true);
        }
        Err(e) => {
            rec.recorder.flush();
            return Err(e);
        }
    };
    eprintln!(
        "faultline: {} nodes up; running {} clients for {} s",
        cfg.node_count, cfg.concurrency, cfg.time_limit_s
    );
    // Lets the test suite prove that a panic of the harness kills the nodes.
    if std::env::var_os("FAULTLINE_PANIC_AFTER_INIT").is_some() {
        panic!(
            "FAULTLINE_PANIC_AFTER_INIT is set: panicking with {} nodes up",
            cluster.len()
        );
    }
    let flusher = spawn_flusher(rec.recorder.clone());
    let probe_stats = leader_probes.as_ref().map(|_| {
        Arc::new(std::sync::Mutex::new(
            faultline_rundir::ProbeStats::default(),
        ))
    });
    let prober = leader_probes
        .zip(probe_stats.clone())
        .map(|((probes, ips), stats)| {
            leader::spawn_poller(
                probes,
                Layout::node_ids(cfg),
                ips,
                rec.recorder.clone(),
                stats,
            )
        });
    let probed = probe_stats.is_some();
    let outcome = exercise(cfg, &rec, cluster, clock_agent.clone(), probed, &cancel).await;
    flusher.abort();
    if let Some(p) = prober {
        p.abort();
    }
    let (liveness, exits, healed, slow) = outcome?;
    let write_error = rec.recorder.finish();
    report_exits(dir, &exits, &rec.net);
    healed.context("the nemesis could not apply or heal a fault")?;
    if let Err(e) = write_error {
        anyhow::bail!("the run directory could not be written: {e}");
    }
    let probe = probe_stats.map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let mut more_warnings = clock_agent.map(|a| clock_warnings(&a)).unwrap_or_default();
    more_warnings.extend(slow);
    record(
        cfg,
        dir,
        &rec,
        liveness,
        exits,
        (probe, more_warnings),
        cancel.is_cancelled(),
    )
}

/// What the clock agent could not skew, as warnings: a clock fault that
/// missed a process did not land there.
fn clock_warnings(agent: &ClockAgent) -> Vec<String> {
    let failures = agent.failures.lock().unwrap_or_else(|e| e.into_inner());
    failures
        .iter()
        .map(|f| format!("a clock fault could not reach a process: {f}"))
        .collect()
}

/// Load, heal, liveness, teardown: everything with the nodes up.
async fn exercise(
    cfg: &TestConfig,
    rec: &Recording,
    cluster: Cluster,
    clock_agent: Option<Arc<ClockAgent>>,
    leader_probed: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<(
    Option<CheckerResult>,
    Vec<ExitInfo>,
    anyhow::Result<()>,
    Option<String>,
)> {
    let pacer = Arc::new(Pacer::new(cfg.rate));
    // With membership changes: who is in the cluster now, for the nemesis
    // to change and the clients to follow.
    let view: Option<MemberView> = cfg
        .cluster_size
        .map(|_| Arc::new(std::sync::RwLock::new((0..cfg.node_count).collect())));
    let membership = cfg.cluster_size.zip(view.clone()).map(|(range, view)| {
        MembershipOptions {
            view,
            range,
            places: cfg.node_count,
            // A change waits out an election or two, and a new server's
            // catch-up; never past one nemesis interval and a client timeout.
            timeout: Duration::from_secs_f64(cfg.nemesis_interval_s.max(1.0))
                + Duration::from_millis(cfg.timeout_ms),
        }
    });
    let executor = Executor::new(
        ExecutorOptions {
            node_ids: Layout::node_ids(cfg),
            seed: cfg.seed,
            links: rec.links.clone(),
            load: pacer.clone(),
            leader: rec.recorder.leader(),
            history: rec.history.clone(),
            clock_agent,
            membership,
            // A schedule the user wrote is kept to the millisecond.
            hold_for_failover: (leader_probed && !cfg.schedule_given).then_some(FAILOVER_HOLD),
        },
        cluster,
    );
    let loaded = load::run(cfg, rec, executor, pacer, view, cancel).await?;
    let mut executor = loaded.executor;
    let slow = executor.slow_warning();
    // Heal everything, let the system recover, then demand that the
    // workload's final reads succeed within a bound.
    let healed = match loaded.nemesis {
        Ok(()) if !cancel.is_cancelled() => executor.heal().await,
        other => other,
    };
    if let Err(e) = &healed {
        eprintln!("faultline: nemesis failed: {e:#}");
    }
    let mut liveness = None;
    if healed.is_ok() && !cancel.is_cancelled() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(recovery_s(cfg))) => {}
            _ = cancel.cancelled() => {}
        }
    }
    if healed.is_ok() && !cancel.is_cancelled() {
        liveness = Some(liveness::run(cfg, loaded.clients, loaded.final_reads, cancel).await?);
    }
    // Teardown: every node killed and reaped; its data goes with the cluster.
    let exits = executor.into_processes().stop_all().await;
    Ok((liveness, exits, healed, slow))
}

/// How long the system gets after healing before its final reads:
/// `--recovery-time` after faults or for eventually consistent workloads,
/// at least Maelstrom's 10 s for replicas that converge by gossip.
pub fn recovery_s(cfg: &TestConfig) -> f64 {
    let w = cfg.workload();
    let wait = if !cfg.nemesis.is_empty() || w.converges_eventually() {
        cfg.recovery_s
    } else {
        0.0
    };
    if w.converges_by_gossip() {
        wait.max(faultline_workloads::GOSSIP_RECOVERY_S)
    } else {
        wait
    }
}

fn spawn_flusher(recorder: Arc<Recorder>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            recorder.flush();
        }
    })
}

/// Says which nodes died on their own, and what nodes wrote that could not
/// be routed.
fn report_exits(dir: &RunDir, exits: &[ExitInfo], net: &Network) {
    for e in exits {
        let what = if e.refused_to_start {
            "refused to start (fail-stop)"
        } else {
            "crashed during the run"
        };
        eprintln!(
            "faultline: node {}{} {what} ({} at {:.2} s); see {}",
            e.node,
            e.process
                .as_ref()
                .map(|p| format!("'s {p}"))
                .unwrap_or_default(),
            e.status,
            e.time_ns as f64 / 1e9,
            match &e.process {
                Some(p) => dir.process_log(&e.node, p),
                None => dir.node_log(&e.node),
            }
            .display()
        );
    }
    let stats = net.stats();
    if stats.malformed + stats.oversize + stats.unknown_dest > 0 {
        eprintln!(
            "faultline: nodes wrote {} malformed lines, {} oversized lines and {} messages to unknown destinations (see results.json)",
            stats.malformed, stats.oversize, stats.unknown_dest
        );
    }
}

/// Checks the run (unless it was interrupted) and writes results.json and
/// the report.
fn record(
    cfg: &TestConfig,
    dir: &RunDir,
    rec: &Recording,
    liveness: Option<CheckerResult>,
    exits: Vec<ExitInfo>,
    (probe, more_warnings): (Option<faultline_rundir::ProbeStats>, Vec<String>),
    interrupted: bool,
) -> anyhow::Result<Results> {
    let mut results = Results {
        name: cfg.name.clone(),
        verdict: None,
        summary: "interrupted before checking".into(),
        ops: Default::default(),
        checkers: Vec::new(),
        network: rec.net.stats(),
        links: rec.tcp.as_ref().map(|t| t.stats()).unwrap_or_default(),
        journal_skipped: rec
            .recorder
            .journal_skipped
            .load(std::sync::atomic::Ordering::Relaxed),
        unexpected_exits: exits,
        duration_s: 0.0,
        interrupted,
        warnings: Vec::new(),
        leader_probe: probe.clone(),
    };
    if !interrupted {
        let (ops, checkers) = judge::check(dir, cfg, liveness)?;
        let (verdict, summary) = judge::verdict(&checkers);
        results.verdict = Some(verdict);
        results.warnings = warnings(cfg, &ops, probe.as_ref());
        results.warnings.extend(more_warnings);
        if results.network.oversize > 0 {
            results.warnings.push(format!(
                "nodes wrote {} line(s) over the {} byte line limit, which were dropped (docs/maelstrom.md)",
                results.network.oversize,
                faultline_net::router::MAX_LINE_BYTES
            ));
        }
        let summary = with_exercise(with_crashes(summary, &results.unexpected_exits), &ops);
        results.summary = with_warnings(summary, &results.warnings);
        (results.ops, results.checkers) = (ops, checkers);
    }
    results.duration_s = rec.clock.now_ns() as f64 / 1e9;
    dir.store_results(&results)?;
    if !interrupted {
        // The report is a view of the files above; a failure to draw it
        // must not hide the verdict.
        if let Err(e) = faultline_report::write(dir) {
            eprintln!("faultline: could not write report.html: {e:#}");
        }
    }
    Ok(results)
}

/// What a run did not exercise or could not see: no leader change under
/// its faults, a thin run, a leader probe that never answered.
fn warnings(
    cfg: &TestConfig,
    ops: &faultline_rundir::OpCounts,
    probe: Option<&faultline_rundir::ProbeStats>,
) -> Vec<String> {
    let mut out = ops.thin();
    // A real server that names no leader: whether its faults moved one
    // cannot be known, and a user who expected a failover should hear so.
    if cfg.system.is_some() && ops.ok_during_faults.is_some() && ops.leader_changes.is_none() {
        out.push(
            "no leader change seen: nothing names a leader (no trace events, no [leader] probe in the system file)"
                .into(),
        );
    }
    if let Some(p) = probe.filter(|p| p.answers == 0) {
        let why = p.last_error.as_deref().unwrap_or("no round finished");
        out.push(format!(
            "the leader probe never answered in {} rounds (last error: {why})",
            p.rounds
        ));
    }
    out
}

/// A summary with the run's warnings after it.
pub fn with_warnings(summary: String, warnings: &[String]) -> String {
    warnings
        .iter()
        .fold(summary, |s, w| format!("{s}; warning: {w}"))
}

/// A run's summary, saying plainly when it rests on a handful of
/// acknowledged ops: a system that was down or refusing all run long
/// passes no check by that.
pub fn with_exercise(summary: String, ops: &faultline_rundir::OpCounts) -> String {
    if ops.ok >= faultline_rundir::FEW_OK_OPS {
        return summary;
    }
    format!(
        "{summary}; only {} of {} ops were acknowledged: this run exercised almost nothing",
        ops.ok, ops.invoked
    )
}

/// A run's summary, with how many nodes crashed on their own and how
/// many times one refused to start on what its disk held.
pub fn with_crashes(mut summary: String, exits: &[ExitInfo]) -> String {
    let refusals = exits.iter().filter(|e| e.refused_to_start).count();
    let crashes = exits.len() - refusals;
    if crashes > 0 {
        summary += &format!("; {crashes} node crash(es) during the run");
    }
    if refusals > 0 {
        summary += &format!("; {refusals} refusal(s) to start (fail-stop)");
    }
    summary
}
