//! The main phase: clients invoke the workload's ops at the configured
//! rate while the nemesis applies the schedule, both until the time limit
//! (or cancellation). Progress is shown as it goes.

use anyhow::Context;
use faultline_nemesis::seed::{derive, Stream};
use faultline_nemesis::Step;
use faultline_workloads::Generator;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::Recording;
use crate::client::{Client, ClientSpec, Conn, Pacer};
use crate::nemesis::triggers::{self, MomentFeed};
use crate::nemesis::Executor;
use faultline_rundir::TestConfig;
use faultline_systems::client::Caller;

/// What the main phase leaves for the next ones.
pub struct Loaded {
    pub clients: Vec<Client>,
    pub executor: Executor<Cluster>,
    /// Whether every scheduled fault applied.
    pub nemesis: anyhow::Result<()>,
    /// The final reads of what the load touched, when its generator knows
    /// (the transaction workloads retire keys as they go).
    pub final_reads: Option<Vec<faultline_workloads::Invocation>>,
}

/// Runs clients and nemesis side by side until the time limit.
pub async fn run(
    cfg: &TestConfig,
    rec: &Recording,
    executor: Executor<Cluster>,
    pacer: Arc<Pacer>,
    members: Option<crate::nemesis::membership::MemberView>,
    cancel: &CancellationToken,
) -> anyhow::Result<Loaded> {
    let started_at = Instant::now();
    let deadline = started_at + Duration::from_secs_f64(cfg.time_limit_s);
    // The history's clock starts with the cluster; the load (and the
    // schedule's times) from here: said in the history, so a fault's
    // time can be read against both.
    mark(rec, "load-start", cfg)?;
    let ticker = spawn_progress(rec, started_at, cfg.time_limit_s.ceil() as u64);
    let nemesis = spawn_nemesis(
        cfg.schedule.clone(),
        executor,
        MomentFeed::new(rec.recorder.clone()),
        started_at,
        deadline,
        cancel.clone(),
    );
    let workload = cfg.workload();
    let seed = derive(cfg.seed, Stream::Workload);
    let gen: Arc<Mutex<Box<dyn Generator>>> =
        Arc::new(Mutex::new(workload.generator(seed, cfg.key_count)));
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let ids = super::cluster::Layout::node_ids(cfg);
    let mut tasks = Vec::new();
    for k in 1..=cfg.concurrency {
        let node = (k - 1) % cfg.node_count;
        let spec = ClientSpec {
            k,
            node,
            node_id: ids[node].clone(),
            concurrency: cfg.concurrency,
            workload,
            timeout,
        };
        let mut c = Client::new(spec, conn(rec, k, node, &ids[node]), rec.history.clone());
        c.members = members.clone();
        c.endpoints = rec.clients.clone();
        c.log_dir = rec.adapter_logs.clone();
        let (gen, pacer, cancel) = (gen.clone(), pacer.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.run(&gen, &pacer, deadline, &cancel).await;
            (c, r)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        let (c, r) = t.await.context("a client task panicked")?;
        r.context("writing history.jsonl")?;
        clients.push(c);
    }
    ticker.abort();
    let (executor, nemesis) = nemesis.await.context("the nemesis task panicked")?;
    mark(rec, "load-end", cfg)?;
    let final_reads = gen.lock().unwrap_or_else(|e| e.into_inner()).final_reads();
    Ok(Loaded {
        clients,
        executor,
        nemesis,
        final_reads,
    })
}

/// A `harness` line in the history marking where the load phase starts
/// or ends (no op: checkers pass over it).
fn mark(rec: &Recording, f: &str, cfg: &TestConfig) -> anyhow::Result<()> {
    let value = serde_json::json!({"time_limit_s": cfg.time_limit_s, "warmup_s": cfg.warmup_s});
    rec.history
        .record(
            faultline_checker::Process::Named("harness".into()),
            faultline_checker::EventType::Info,
            f,
            None,
            value,
            serde_json::Map::new(),
        )
        .map(|_| ())
        .context("writing history.jsonl")
}

/// How client `k` reaches `node`: the router, or the server's client.
fn conn(rec: &Recording, k: usize, node: usize, node_id: &str) -> Conn {
    match rec.clients.as_ref().map(|c| &c[node]) {
        Some(endpoint) => Conn::Server(endpoint.connect(&Caller {
            client: format!("c{k}"),
            node: node_id.to_string(),
            log_dir: rec.adapter_logs.clone(),
        })),
        None => Conn::stdio(rec.net.clone(), k),
    }
}

/// Applies each step at its time or moment, until the deadline or
/// cancellation.
fn spawn_nemesis(
    schedule: Vec<Step>,
    mut executor: Executor<Cluster>,
    feed: MomentFeed,
    started_at: Instant,
    deadline: Instant,
    cancel: CancellationToken,
) -> JoinHandle<(Executor<Cluster>, anyhow::Result<()>)> {
    tokio::spawn(async move {
        let r = triggers::run(schedule, &mut executor, feed, started_at, deadline, &cancel).await;
        (executor, r)
    })
}

/// A bar on a terminal, a line every few seconds otherwise.
fn spawn_progress(rec: &Recording, started_at: Instant, total_s: u64) -> JoinHandle<()> {
    let history = rec.history.clone();
    tokio::spawn(async move {
        let progress = crate::progress::Progress::new(total_s, false);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let elapsed = started_at.elapsed().as_secs().min(total_s);
            let n = |i: usize| history.completed[i].load(Relaxed);
            let line = format!(
                "{elapsed}/{total_s} s: {} ok, {} fail, {} info",
                n(0),
                n(1),
                n(2)
            );
            progress.set(elapsed, line);
            if elapsed >= total_s {
                progress.finish();
                return;
            }
        }
    })
}
