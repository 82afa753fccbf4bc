//! `faultline test`: start the nodes, initialise them, drive the clients,
//! read every key once more, tear everything down, check, and write the
//! results. Data flows one way: the checker reads history.jsonl back from
//! disk like any other history.

use anyhow::Context;
use faultline_checker::{linearizability, raft, Format, Outcome, Verdict};
use faultline_nemesis::{Kind, Spec, Step};
use faultline_workloads::{LinKvGen, Workload};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, Pacer};
use crate::nemesis::Executor;
use crate::net::{LatencyDist, LinkPolicy, Network};
use crate::node::{self, ExitInfo, NodeHandle, NodeSpec};
use crate::recorder::{Clock, History, Recorder};
use crate::results;

/// The full configuration of a run, written to test.json (and read back by
/// `--replay`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestConfig {
    pub name: String,
    /// `None`: the bundled target node.
    pub bin: Option<PathBuf>,
    pub args: Vec<String>,
    pub node_count: usize,
    pub workload: Workload,
    pub nemesis: Vec<Spec>,
    pub nemesis_interval_s: f64,
    /// Seconds between healing everything and the liveness reads.
    pub recovery_s: f64,
    /// Seconds the liveness phase may take to read every key.
    pub liveness_timeout_s: f64,
    /// The fault schedule, drawn from the seed (kept verbatim on replay).
    pub schedule: Vec<Step>,
    pub time_limit_s: f64,
    pub rate: f64,
    pub concurrency: usize,
    pub key_count: u64,
    pub seed: u64,
    pub latency_ms: f64,
    pub latency_dist: LatencyDist,
    pub timeout_ms: u64,
    pub init_timeout_ms: u64,
    /// How long the checker may take before answering `unknown`.
    pub check_time_limit_s: f64,
    pub results_dir: PathBuf,
    pub journal_limit: u64,
}

/// What `test` reports back to main.
pub struct RunOutcome {
    pub dir: PathBuf,
    /// `None` when the run was interrupted before it could be checked.
    pub verdict: Option<Verdict>,
    pub summary: String,
}

fn substitute(arg: &str, spec_id: &str, data_dir: &Path) -> String {
    arg.replace("{node_id}", spec_id)
        .replace("{data_dir}", &data_dir.display().to_string())
}

/// Kills every node and waits until each is reaped.
async fn stop_all(nodes: &mut [NodeHandle]) -> Vec<ExitInfo> {
    let mut exits = Vec::new();
    for n in nodes.iter_mut() {
        let was_running = n.is_running();
        if let Some(e) = n.kill().await {
            if was_running || !e.expected {
                exits.push(e);
            }
        }
    }
    exits
}

#[derive(Serialize, Default)]
struct OpCounts {
    invoked: usize,
    ok: usize,
    fail: usize,
    info: usize,
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

pub async fn run(cfg: TestConfig, cancel: CancellationToken) -> anyhow::Result<RunOutcome> {
    let (program, mut base_args) = node_program(&cfg)?;
    // Refuse a clock nemesis that cannot act before anything starts.
    let faketime = if cfg.nemesis.iter().any(|s| s.kind == Kind::Clock) {
        let library = crate::clock::find_library()?;
        crate::clock::check_preloadable(&program)?;
        Some(library)
    } else {
        None
    };
    let run_dir = results::create_run_dir(&cfg.results_dir, &cfg.name).with_context(|| {
        format!(
            "creating a run directory under {}",
            cfg.results_dir.display()
        )
    })?;
    std::fs::write(run_dir.join("test.json"), serde_json::to_vec_pretty(&cfg)?)
        .with_context(|| format!("writing {}", run_dir.join("test.json").display()))?;
    let _ = results::update_latest(&cfg.results_dir, &run_dir);
    eprintln!("faultline: run directory {}", run_dir.display());

    let clock = Clock::new();
    let history = Arc::new(
        History::create(&run_dir.join("history.jsonl"), clock).context("creating history.jsonl")?,
    );
    let recorder = Arc::new(
        Recorder::create(&run_dir, clock, cfg.journal_limit)
            .context("creating traces/messages files")?,
    );
    let data_root = tempfile::Builder::new()
        .prefix("faultline-data-")
        .tempdir()
        .context("creating node data directories")?;

    base_args.extend(cfg.args.iter().cloned());
    let ids: Vec<String> = (1..=cfg.node_count).map(|i| format!("n{i}")).collect();
    let mut specs: Vec<NodeSpec> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let data_dir = data_root.path().join(id);
            NodeSpec {
                id: id.clone(),
                index: i,
                program: program.clone(),
                args: base_args
                    .iter()
                    .map(|a| substitute(a, id, &data_dir))
                    .collect(),
                log_path: run_dir.join("nodes").join(format!("{id}.log")),
                data_dir,
                env: Vec::new(),
            }
        })
        .collect();
    for s in &specs {
        std::fs::create_dir_all(&s.data_dir)
            .with_context(|| format!("creating {}", s.data_dir.display()))?;
    }
    // The clock nemesis: each node preloads libfaketime and reads its own
    // offset file, which starts at true time.
    let clock_files = if let Some(library) = &faketime {
        let dir = data_root.path().join("clocks");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = Vec::new();
        for s in specs.iter_mut() {
            let file = dir.join(format!("{}.faketime", s.id));
            crate::clock::write_offset(&file, 0.0)?;
            s.env = crate::clock::preload_env(library, &file);
            files.push(file);
        }
        Some(files)
    } else {
        None
    };

    let policy = LinkPolicy::with_latency(cfg.latency_ms, cfg.latency_dist);
    let net = Network::new(
        ids.clone(),
        cfg.concurrency,
        policy.clone(),
        cfg.seed,
        recorder.clone(),
    );
    let mut nodes: Vec<NodeHandle> = Vec::new();
    let mut controller_inboxes: Vec<_> = (0..ids.len())
        .map(|i| net.take_controller_inbox(i))
        .collect();

    // Start and initialise every node; any failure tears down what started.
    let started: anyhow::Result<()> = async {
        for s in &specs {
            nodes.push(node::spawn(s, &net, &recorder, clock)?);
        }
        let timeout = Duration::from_millis(cfg.init_timeout_ms);
        let inits = nodes
            .iter_mut()
            .zip(controller_inboxes.iter_mut())
            .map(|(n, inbox)| node::init(&net, inbox, n, timeout));
        for r in futures::future::join_all(inits).await {
            r?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = started {
        stop_all(&mut nodes).await;
        recorder.flush();
        return Err(e);
    }
    eprintln!(
        "faultline: {} nodes up; running {} clients for {} s",
        nodes.len(),
        cfg.concurrency,
        cfg.time_limit_s
    );
    // Lets the test suite prove that a panic of the harness kills the nodes.
    if std::env::var_os("FAULTLINE_PANIC_AFTER_INIT").is_some() {
        panic!(
            "FAULTLINE_PANIC_AFTER_INIT is set: panicking with {} nodes up",
            nodes.len()
        );
    }
    // Traces and the journal are buffered; flush them often so a killed
    // harness loses at most a fraction of a second of them.
    let flusher = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                recorder.flush();
            }
        })
    };

    // Main phase: clients and the nemesis run side by side.
    let gen = Arc::new(Mutex::new(LinKvGen::new(cfg.seed, cfg.key_count)));
    let pacer = Arc::new(Pacer::new(cfg.rate));
    let started_at = Instant::now();
    let deadline = started_at + Duration::from_secs_f64(cfg.time_limit_s);
    let mut executor = Executor::new(
        net.clone(),
        std::mem::take(&mut nodes),
        specs.clone(),
        std::mem::take(&mut controller_inboxes),
        recorder.clone(),
        history.clone(),
        clock,
        policy.clone(),
        Duration::from_millis(cfg.init_timeout_ms),
        cfg.seed,
        clock_files,
        pacer.clone(),
    );
    // Progress: a bar on a terminal, a line every few seconds otherwise.
    let ticker = {
        let history = history.clone();
        let total_s = cfg.time_limit_s.ceil() as u64;
        tokio::spawn(async move {
            let progress = crate::progress::Progress::new(total_s, false);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let elapsed = started_at.elapsed().as_secs().min(total_s);
                let n = |i: usize| history.completed[i].load(std::sync::atomic::Ordering::Relaxed);
                progress.set(
                    elapsed,
                    format!(
                        "{elapsed}/{total_s} s: {} ok, {} fail, {} info",
                        n(0),
                        n(1),
                        n(2)
                    ),
                );
                if elapsed >= total_s {
                    progress.finish();
                    return;
                }
            }
        })
    };
    let nemesis_task = {
        let (schedule, cancel) = (cfg.schedule.clone(), cancel.clone());
        tokio::spawn(async move {
            for step in schedule {
                let at = started_at + Duration::from_millis(step.at_ms);
                if at >= deadline {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = cancel.cancelled() => break,
                }
                if let Err(e) = executor.apply(&step.action).await {
                    return (executor, Err(e));
                }
            }
            (executor, Ok(()))
        })
    };
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut tasks = Vec::new();
    for k in 1..=cfg.concurrency {
        let mut c = Client::new(
            k,
            (k - 1) % cfg.node_count,
            cfg.concurrency,
            net.clone(),
            history.clone(),
            timeout,
        );
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
    let (mut executor, nemesis_result) = nemesis_task.await.context("the nemesis task panicked")?;

    // Heal everything, let the system recover, then demand that every key
    // is readable again within a bound (the liveness check).
    let mut liveness = json!(null);
    let healed = match nemesis_result {
        Ok(()) if !cancel.is_cancelled() => executor.heal().await,
        other => other,
    };
    if let Err(e) = &healed {
        eprintln!("faultline: nemesis failed: {e:#}");
    }
    if healed.is_ok() && !cancel.is_cancelled() {
        if !cfg.nemesis.is_empty() {
            tokio::time::sleep(Duration::from_secs_f64(cfg.recovery_s)).await;
        }
        let phase_start = Instant::now();
        let until = phase_start + Duration::from_secs_f64(cfg.liveness_timeout_s);
        let mut tasks = Vec::new();
        for mut c in clients.drain(..) {
            let keys: Vec<u64> = (0..cfg.key_count)
                .filter(|k| (*k as usize) % cfg.concurrency == c.k - 1)
                .collect();
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let mut unreadable = Vec::new();
                for k in keys {
                    // Retry (each attempt is an op in the history) until ok.
                    loop {
                        if cancel.is_cancelled() || Instant::now() >= until {
                            unreadable.push(k);
                            break;
                        }
                        if c.invoke(&LinKvGen::read(k)).await? == "ok" {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Ok::<_, std::io::Error>(unreadable)
            }));
        }
        let mut unreadable = Vec::new();
        for t in tasks {
            unreadable.extend(
                t.await
                    .context("a client task panicked")?
                    .context("writing history.jsonl")?,
            );
        }
        unreadable.sort_unstable();
        let verdict = if unreadable.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        liveness = json!({
            "checker": "liveness",
            "verdict": verdict,
            "keys": cfg.key_count,
            "unreadable_keys": unreadable,
            "seconds_to_read_all": phase_start.elapsed().as_secs_f64(),
            "bound_s": cfg.liveness_timeout_s,
        });
    }

    // Teardown: every node killed and reaped, then the data removed.
    let unexpected: Vec<ExitInfo> = {
        let mut crashed = executor.stop_all().await;
        crashed.dedup();
        crashed
    };
    flusher.abort();
    recorder.flush();
    drop(data_root);
    let stats = net.stats();
    for e in &unexpected {
        eprintln!(
            "faultline: node {} crashed during the run ({} at {:.2} s); see {}",
            e.node,
            e.status,
            e.time_ns as f64 / 1e9,
            run_dir
                .join("nodes")
                .join(format!("{}.log", e.node))
                .display()
        );
    }
    if stats.malformed + stats.oversize + stats.unknown_dest > 0 {
        eprintln!(
            "faultline: nodes wrote {} malformed lines, {} oversized lines and {} messages to unknown destinations (see results.json)",
            stats.malformed, stats.oversize, stats.unknown_dest
        );
    }
    healed.context("the nemesis could not apply or heal a fault")?;
    if cancel.is_cancelled() {
        let results = json!({"verdict": null, "interrupted": true, "network": stats, "unexpected_exits": unexpected});
        std::fs::write(
            run_dir.join("results.json"),
            serde_json::to_vec_pretty(&results)?,
        )?;
        return Ok(RunOutcome {
            dir: run_dir,
            verdict: None,
            summary: "interrupted before checking".into(),
        });
    }

    // Check.
    let history_path = run_dir.join("history.jsonl");
    let (_, ops) =
        faultline_checker::load_history(&history_path.display().to_string(), Some(Format::Jsonl))
            .context("reading back history.jsonl")?;
    let mut counts = OpCounts {
        invoked: ops.len(),
        ..Default::default()
    };
    for o in &ops {
        match o.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Fail => counts.fail += 1,
            Outcome::Info => counts.info += 1,
        }
    }
    let opts = linearizability::Options {
        model: cfg.workload.model(),
        time_limit: Some(Duration::from_secs_f64(cfg.check_time_limit_s)),
        ..Default::default()
    };
    let lin = linearizability::check(&ops, &opts).context("checking linearizability")?;
    let traces_path = run_dir.join("traces.jsonl");
    let raft_report = if recorder
        .trace_count
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        let text = std::fs::read_to_string(&traces_path).context("reading traces.jsonl")?;
        Some(
            raft::check(&traces_path.display().to_string(), &text)
                .context("checking Raft invariants")?,
        )
    } else {
        None
    };
    let mut verdict = lin.verdict;
    if let Some(r) = &raft_report {
        verdict = verdict.combine(r.verdict);
    }
    let liveness_verdict: Option<Verdict> =
        serde_json::from_value(liveness["verdict"].clone()).ok();
    if let Some(v) = liveness_verdict {
        verdict = verdict.combine(v);
    }
    let mut summary = match (&lin.anomaly, &raft_report) {
        (Some(a), _) => format!("linearizability violated: {}", a.summary),
        (None, Some(r)) if r.verdict == Verdict::Invalid => {
            format!(
                "Raft invariant violated: {}",
                r.violations
                    .first()
                    .map(|v| v.summary.clone())
                    .unwrap_or_default()
            )
        }
        _ if liveness_verdict == Some(Verdict::Invalid) => {
            format!(
                "liveness violated: keys {} were not readable within {} s after healing",
                liveness["unreadable_keys"], cfg.liveness_timeout_s
            )
        }
        _ if verdict == Verdict::Unknown => {
            format!(
                "the checker gave up: {}",
                lin.unknown
                    .first()
                    .map(|u| u.reason.clone())
                    .unwrap_or_default()
            )
        }
        _ => format!(
            "{} ops ({} ok, {} fail, {} info) linearizable",
            counts.invoked, counts.ok, counts.fail, counts.info
        ),
    };
    if !unexpected.is_empty() {
        summary.push_str(&format!(
            "; {} node crash(es) during the run",
            unexpected.len()
        ));
    }
    let results = json!({
        "name": cfg.name,
        "verdict": verdict,
        "summary": summary,
        "ops": counts,
        "checkers": {"linearizability": lin, "raft-invariants": raft_report, "liveness": liveness},
        "network": stats,
        "journal_skipped": recorder.journal_skipped.load(std::sync::atomic::Ordering::Relaxed),
        "unexpected_exits": unexpected,
        "duration_s": clock.now_ns() as f64 / 1e9,
    });
    std::fs::write(
        run_dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )
    .context("writing results.json")?;
    // The report is a view of the files above; a failure to draw it must not
    // hide the verdict.
    if let Err(e) = crate::report::write(&run_dir) {
        eprintln!("faultline: could not write report.html: {e:#}");
    }
    Ok(RunOutcome {
        dir: run_dir,
        verdict: Some(verdict),
        summary,
    })
}
