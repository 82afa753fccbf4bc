//! `faultline suite FILE.toml`: a matrix of tests, each entry over its
//! seeds, with an expected verdict. An entry takes every `faultline test`
//! option under the same name (`TestOptions`), merged over `[defaults]`,
//! and is validated when the file is loaded: a misspelt key or a bad value
//! fails at once, naming the entry and the key. Each run is a `faultline
//! test` subprocess in a run directory the suite prepares (so a crash of
//! one run cannot take the suite down), and its result is read back from
//! that directory's results.json.

pub mod shard;
mod summary;

use anyhow::{bail, Context};
use faultline_checker::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toml::{Table, Value};

use crate::options::{plain_name, OptionError, TestOptions};
use faultline_rundir::RunDir;
use faultline_rundir::TestConfig;
pub use summary::{detection, junit};

/// Longest a single run may take beyond its own time limit (start-up,
/// healing, liveness, checking) before the suite kills it.
const RUN_OVERHEAD_S: f64 = 180.0;
/// How long a run told to stop (SIGTERM) has to kill its nodes.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One entry of a suite, defaults applied and validated.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub expect: Verdict,
    pub seeds: Vec<u64>,
    pub options: TestOptions,
    pub bounds: Bounds,
    /// The keys the suite set (the entry's and `[defaults]`): a system
    /// file's defaults fill in the rest.
    pub given: crate::options::Given,
}

/// Limits on a run's figures, as the Gossip Glomers challenges set them
/// (broadcast on 25 nodes with 100 ms latency: under 30 messages per op,
/// median latency under 400 ms, maximum under 600 ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bounds {
    pub max_msgs_per_op: Option<f64>,
    pub max_latency_median_ms: Option<f64>,
    pub max_latency_ms: Option<f64>,
    pub min_availability: Option<f64>,
    pub max_stable_latency_median_ms: Option<f64>,
    pub max_stable_latency_ms: Option<f64>,
    /// Fewest acknowledged ops a run must have: a verdict on fewer says
    /// little.
    pub min_ok_ops: Option<f64>,
    /// Fewest leader changes its faults must cause (a run where nothing
    /// ever named a leader breaks it).
    pub min_leader_changes: Option<f64>,
    /// Fewest ops acknowledged while faults were on.
    pub min_ok_during_faults: Option<f64>,
}

impl Bounds {
    const KEYS: [&'static str; 9] = [
        "max_msgs_per_op",
        "max_latency_median_ms",
        "max_latency_ms",
        "min_availability",
        "max_stable_latency_median_ms",
        "max_stable_latency_ms",
        "min_ok_ops",
        "min_leader_changes",
        "min_ok_during_faults",
    ];

    /// Takes the bound keys out of an entry's table.
    fn take(t: &mut Table) -> Result<Bounds, String> {
        let mut num = |key: &str| -> Result<Option<f64>, String> {
            match t.remove(key) {
                None => Ok(None),
                Some(Value::Integer(i)) => Ok(Some(i as f64)),
                Some(Value::Float(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
                Some(other) => Err(format!(
                    "key {key:?}: must be a non-negative number, got {other}"
                )),
            }
        };
        Ok(Bounds {
            max_msgs_per_op: num(Self::KEYS[0])?,
            max_latency_median_ms: num(Self::KEYS[1])?,
            max_latency_ms: num(Self::KEYS[2])?,
            min_availability: num(Self::KEYS[3])?,
            max_stable_latency_median_ms: num(Self::KEYS[4])?,
            max_stable_latency_ms: num(Self::KEYS[5])?,
            min_ok_ops: num(Self::KEYS[6])?,
            min_leader_changes: num(Self::KEYS[7])?,
            min_ok_during_faults: num(Self::KEYS[8])?,
        })
    }

    /// Each bound the figures break, said plainly.
    pub fn broken(&self, f: &faultline_rundir::Figures) -> Vec<String> {
        let mut out = Vec::new();
        let mut over = |bound: Option<f64>, got: f64, what: &str| {
            if let Some(b) = bound.filter(|b| got > *b) {
                out.push(format!("{what} {got:.1} > {b}"));
            }
        };
        over(self.max_msgs_per_op, f.msgs_per_op, "messages per op");
        over(
            self.max_latency_median_ms,
            f.latency_ms_median,
            "median latency (ms)",
        );
        over(self.max_latency_ms, f.latency_ms_max, "max latency (ms)");
        // A set's propagation: unbounded (no set checker ran) breaks it.
        let stable = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
        over(
            self.max_stable_latency_median_ms,
            stable(f.stable_latency_ms_median),
            "median time to reach every node (ms)",
        );
        over(
            self.max_stable_latency_ms,
            stable(f.stable_latency_ms_max),
            "max time to reach every node (ms)",
        );
        if let Some(b) = self.min_availability.filter(|b| f.availability < *b) {
            out.push(format!("availability {:.3} < {b}", f.availability));
        }
        if let Some(b) = self.min_ok_ops.filter(|b| (f.ok_ops as f64) < *b) {
            out.push(format!("acknowledged ops {} < {b}", f.ok_ops));
        }
        if let Some(b) = self.min_leader_changes {
            match f.leader_changes {
                Some(n) if n as f64 >= b => {}
                Some(n) => out.push(format!("leader changes under faults {n} < {b}")),
                None => out.push(format!("leader changes: no leader was ever named (< {b})")),
            }
        }
        if let Some(b) = self.min_ok_during_faults {
            let got = f.ok_during_faults.unwrap_or(0);
            if (got as f64) < b {
                out.push(format!("ops acknowledged while faults were on {got} < {b}"));
            }
        }
        out
    }
}

/// A parsed suite.
pub struct Suite {
    pub name: String,
    pub entries: Vec<Entry>,
}

fn take_str(t: &mut Table, key: &str) -> Option<Result<String, String>> {
    t.remove(key).map(|v| match v {
        Value::String(s) => Ok(s),
        other => Err(format!("{key} must be a string, got {other}")),
    })
}

/// The test options in `t`, or the key that is wrong and why.
fn options_of(t: Table) -> Result<TestOptions, String> {
    match Value::Table(t.clone()).try_into::<TestOptions>() {
        Ok(o) => Ok(o),
        Err(whole) => {
            // Name the key: the first that fails on its own.
            for (k, v) in t {
                let one = Table::from_iter([(k.clone(), v)]);
                if let Err(e) = Value::Table(one).try_into::<TestOptions>() {
                    return Err(format!("key {k:?}: {}", e.message().trim()));
                }
            }
            Err(whole.message().trim().to_string())
        }
    }
}

/// Reads one `[[run]]` table merged over the defaults.
fn entry(mut t: Table, base: &Path) -> Result<Entry, String> {
    let name = match take_str(&mut t, "name") {
        Some(n) => n?,
        None => return Err("has no name".into()),
    };
    let expect = match take_str(&mut t, "expect").transpose()?.as_deref() {
        Some("valid") => Verdict::Valid,
        Some("invalid") => Verdict::Invalid,
        Some("unknown") => Verdict::Unknown,
        other => {
            return Err(format!(
                "must expect valid, invalid or unknown (got {other:?})"
            ))
        }
    };
    let seeds = match t.remove("seeds") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_integer().and_then(|i| u64::try_from(i).ok()))
                .collect::<Option<Vec<u64>>>()
                .ok_or("key \"seeds\": must be a list of non-negative integers")?,
        ),
        Some(other) => return Err(format!("key \"seeds\": must be a list, got {other}")),
    };
    let bounds = Bounds::take(&mut t)?;
    let given = t.keys().map(|k| (k.clone(), "suite".to_string())).collect();
    let mut options = options_of(t)?;
    options.resolve_bin(base);
    let seeds = seeds.unwrap_or_else(|| vec![options.seed.unwrap_or(1)]);
    if seeds.is_empty() {
        return Err("has an empty seed list".into());
    }
    let e = Entry {
        name,
        expect,
        seeds,
        options,
        bounds,
        given,
    };
    // Every value is checked now, not when its run comes up.
    e.config(e.seeds[0]).map_err(|e| e.to_string())?;
    Ok(e)
}

impl Entry {
    /// The run's configuration at `seed`, named `{suite}-{entry}` later.
    pub fn config(&self, seed: u64) -> Result<TestConfig, OptionError> {
        let mut o = self.options.clone();
        o.seed = Some(seed);
        o.validate_given(Some(&self.given))
    }
}

/// The suites carried in the binary, by name, so an installed faultline
/// runs them from any directory (those that need only the bundled node
/// and systems; `maelstrom.toml` runs fixture programs of the checkout).
const BUNDLED: &[(&str, &str)] = &[
    ("smoke", include_str!("../../../suites/smoke.toml")),
    ("bugs", include_str!("../../../suites/bugs.toml")),
    (
        "nemesis-all",
        include_str!("../../../suites/nemesis-all.toml"),
    ),
    ("systems", include_str!("../../../suites/systems.toml")),
];

/// A suite file, or a bundled suite by name (`smoke`, `bugs`,
/// `nemesis-all`, `systems`) when no such file exists.
pub fn load(path: &Path) -> anyhow::Result<Suite> {
    let bundled = BUNDLED
        .iter()
        .find(|(n, _)| !path.exists() && path.as_os_str() == *n);
    if let Some((name, text)) = bundled {
        return parse(Path::new(&format!("bundled:{name}")), text, Path::new("."));
    }
    let text = std::fs::read_to_string(path).with_context(|| {
        let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
        format!(
            "reading {} (not a file, nor a bundled suite: {})",
            path.display(),
            names.join(", ")
        )
    })?;
    parse(path, &text, path.parent().unwrap_or(Path::new(".")))
}

/// A suite's text, `path` naming it in messages, relative paths in it
/// resolved against `base`.
fn parse(path: &Path, text: &str, base: &Path) -> anyhow::Result<Suite> {
    let mut doc: Table =
        toml::from_str(text).with_context(|| format!("{} is not a valid suite", path.display()))?;
    let at = path.display();
    let name = match take_str(&mut doc, "name")
        .transpose()
        .map_err(anyhow::Error::msg)?
    {
        Some(n) => n,
        None => path
            .file_stem()
            .map_or("suite".into(), |s| s.to_string_lossy().into_owned()),
    };
    let defaults = match doc.remove("defaults") {
        None => Table::new(),
        Some(Value::Table(t)) => t,
        Some(_) => bail!("{at}: [defaults] must be a table"),
    };
    let runs = match doc.remove("run") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => bail!("{at}: no [[run]] entries"),
    };
    if let Some(k) = doc.keys().next() {
        bail!("{at}: unknown top-level key {k:?} (a suite has name, [defaults] and [[run]])");
    }
    if let Some(k) = defaults.keys().find(|k| *k == "name") {
        bail!("{at}: [defaults] cannot set {k:?}: each run names itself");
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        let Value::Table(t) = run else {
            bail!("{at}: [[run]] number {} is not a table", i + 1)
        };
        let label = match t.get("name").and_then(Value::as_str) {
            Some(n) => format!("run {n:?}"),
            None => format!("[[run]] number {}", i + 1),
        };
        let mut merged = defaults.clone();
        merged.extend(t);
        let e = entry(merged, base).map_err(|e| anyhow::anyhow!("{at}: {label}: {e}"))?;
        if !plain_name(&e.name) || entries.iter().any(|o| o.name == e.name) {
            bail!("{at}: {label}: a run name must be a plain name, used once");
        }
        entries.push(e);
    }
    Ok(Suite { name, entries })
}

/// The outcome of one (entry, seed) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub entry: String,
    pub seed: u64,
    pub expect: String,
    /// `valid`, `invalid`, `unknown`, or `error` (the run itself failed).
    pub got: String,
    pub passed: bool,
    pub summary: String,
    pub run_dir: Option<PathBuf>,
    /// Seconds from test start until the run had failed: the end of the
    /// shortest prefix of its history the checkers find invalid (the
    /// completion of the read that saw stale data), or the trace line
    /// that completed the first Raft violation. A run this long catches
    /// it (`detect`).
    pub detect_s: Option<f64>,
    /// The same for the anomaly the checkers named (the last op of it to
    /// return): never earlier, often later, as a checker names whichever
    /// anomaly its search meets first.
    pub named_detect_s: Option<f64>,
    /// Seconds from test start to the first op of the anomaly (often a
    /// write long before the read that exposed it).
    pub anomaly_start_s: Option<f64>,
    pub wall_s: f64,
    /// The run's figures, when it finished.
    pub figures: Option<faultline_rundir::Figures>,
    /// The entry's bounds that the figures broke.
    pub bounds_broken: Vec<String>,
}

/// Reads a child's pipe to the end on its own thread, so neither pipe can
/// fill up and stall the child while the other is being read.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut b = String::new();
        let _ = pipe.read_to_string(&mut b);
        b
    })
}

/// A run directory for `cfg` under `root`, its test.json written.
pub(crate) fn prepare(root: &Path, cfg: &TestConfig) -> Result<RunDir, String> {
    let dir = RunDir::create(root, &cfg.name).map_err(|e| format!("{e:#}"))?;
    dir.store_config(cfg).map_err(|e| format!("{e:#}"))?;
    Ok(dir)
}

/// How long a run of `cfg` may take in all.
fn run_limit(cfg: &TestConfig) -> Duration {
    Duration::from_secs_f64(cfg.time_limit_s + RUN_OVERHEAD_S)
}

/// Runs a prepared directory as a child within `run_limit`: whether it
/// finished, and its stderr.
pub(crate) fn run_prepared(
    exe: &Path,
    dir: &RunDir,
    cfg: &TestConfig,
) -> Result<(bool, String), String> {
    run_child(exe, dir, run_limit(cfg))
}

/// Runs `faultline test --prepared DIR` until it exits or `limit` passes
/// (then SIGTERM, so it can kill its nodes, and SIGKILL if it will not go).
/// Returns whether it finished, and its stderr.
pub(crate) fn run_child(
    exe: &Path,
    dir: &RunDir,
    limit: Duration,
) -> Result<(bool, String), String> {
    let mut child = Command::new(exe)
        .arg("test")
        .arg("--prepared")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + limit;
    let finished = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                std::thread::sleep(STOP_GRACE);
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    Ok((
        finished,
        err.and_then(|h| h.join().ok()).unwrap_or_default(),
    ))
}

fn run_one(exe: &Path, e: &Entry, seed: u64, results: &Path, suite: &str) -> RunResult {
    let started = Instant::now();
    let mut r = RunResult {
        entry: e.name.clone(),
        seed,
        expect: e.expect.as_str().into(),
        got: "error".into(),
        passed: false,
        summary: String::new(),
        run_dir: None,
        detect_s: None,
        named_detect_s: None,
        anomaly_start_s: None,
        wall_s: 0.0,
        figures: None,
        bounds_broken: Vec::new(),
    };
    if let Err(msg) = run_and_read(exe, e, seed, results, suite, &mut r) {
        r.summary = msg;
    }
    r.wall_s = started.elapsed().as_secs_f64();
    r
}

/// Prepares the run directory, runs the child, and fills `r` from the
/// results it wrote.
fn run_and_read(
    exe: &Path,
    e: &Entry,
    seed: u64,
    results: &Path,
    suite: &str,
    r: &mut RunResult,
) -> Result<(), String> {
    let mut cfg = e.config(seed).map_err(|e| e.to_string())?;
    cfg.name = format!("{suite}-{}", e.name);
    let dir = prepare(results, &cfg)?;
    r.run_dir = Some(dir.path().to_path_buf());
    let (finished, stderr) = run_prepared(exe, &dir, &cfg)?;
    if !finished {
        return Err(format!("timed out after {} s", run_limit(&cfg).as_secs()));
    }
    let last_line = || {
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string()
    };
    let results = dir
        .load_results()
        .map_err(|_| format!("faultline test failed: {}", last_line()))?;
    let Some(verdict) = results.verdict else {
        return Err(format!("faultline test was interrupted: {}", last_line()));
    };
    r.got = verdict.as_str().into();
    r.figures = Some(results.figures());
    r.bounds_broken = e.bounds.broken(&results.figures());
    r.passed = verdict == e.expect && r.bounds_broken.is_empty();
    r.summary = results.summary.clone();
    if !r.bounds_broken.is_empty() {
        r.summary = format!(
            "{}; out of bounds: {}",
            r.summary,
            r.bounds_broken.join(", ")
        );
    }
    if verdict == Verdict::Invalid {
        let named = results.detection(&dir)?;
        r.named_detect_s = named.map(|d| d.complete_s);
        r.anomaly_start_s = named.map(|d| d.start_s);
        r.detect_s =
            crate::detect::first_failure_s(&dir, &results).map_err(|e| format!("{e:#}"))?;
    }
    Ok(())
}

pub struct Options {
    pub jobs: usize,
    pub junit: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub results_dir: PathBuf,
    /// Run only this shard's part of the suite.
    pub shard: Option<shard::Shard>,
}

/// Every (entry, seed) of the suite, in order: what an unsharded run does.
fn planned(suite: &Suite) -> Vec<(&Entry, u64)> {
    suite
        .entries
        .iter()
        .flat_map(|e| e.seeds.iter().map(move |&s| (e, s)))
        .collect()
}

/// A run's expected seconds, for balancing shards: its load, the recovery
/// wait and final reads, and a few seconds to start and check.
fn expected_s(e: &Entry, seed: u64) -> f64 {
    const START_AND_CHECK_S: f64 = 5.0;
    e.config(seed).map_or(RUN_OVERHEAD_S, |c| {
        c.time_limit_s + c.recovery_s + START_AND_CHECK_S
    })
}

/// The runs this invocation does: all, or its shard's.
fn runs_of(suite: &Suite, shard: Option<shard::Shard>) -> Vec<(Entry, u64)> {
    let all = planned(suite);
    let costs: Vec<f64> = all.iter().map(|(e, s)| expected_s(e, *s)).collect();
    let mine = shard.map(|s| (s.index - 1, shard::assign(&costs, s.count)));
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| mine.as_ref().is_none_or(|(k, of)| of[*i] == *k))
        .map(|(_, (e, s))| (e.clone(), s))
        .collect()
}

/// Runs every (entry, seed) of the run's part on `jobs` worker threads,
/// in entry order.
fn run_all(suite: &Suite, opts: &Options) -> anyhow::Result<Vec<RunResult>> {
    let exe = std::env::current_exe().context("locating the faultline binary")?;
    let queue: VecDeque<(Entry, u64)> = runs_of(suite, opts.shard).into();
    let total = queue.len();
    let part = opts.shard.map_or(String::new(), |s| {
        format!(
            " (shard {}/{} of {} runs)",
            s.index,
            s.count,
            planned(suite).len()
        )
    });
    println!(
        "suite {}: {} runs of {} entries{part}, {} at a time",
        suite.name,
        total,
        suite.entries.len(),
        opts.jobs
    );
    let queue = Arc::new(Mutex::new(queue));
    let progress = Arc::new(crate::progress::Progress::new(total as u64, true));
    let done: Arc<Mutex<Vec<RunResult>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..opts.jobs.max(1))
        .map(|_| {
            let (queue, done, exe, progress) =
                (queue.clone(), done.clone(), exe.clone(), progress.clone());
            let (results, name) = (opts.results_dir.clone(), suite.name.clone());
            std::thread::spawn(move || loop {
                let Some((e, seed)) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                else {
                    return;
                };
                let r = run_one(&exe, &e, seed, &results, &name);
                let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
                d.push(r.clone());
                progress.println(&summary::progress_line(&r, d.len(), total));
                progress.inc();
                let _ = std::io::stdout().flush();
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    progress.finish();
    let mut results = std::mem::take(&mut *done.lock().unwrap_or_else(|e| e.into_inner()));
    let order: Vec<&str> = suite.entries.iter().map(|e| e.name.as_str()).collect();
    results.sort_by_key(|r| (order.iter().position(|n| *n == r.entry), r.seed));
    Ok(results)
}

/// Runs the suite (or its shard); Ok(true) when every expectation held.
pub fn run(suite: &Suite, opts: &Options) -> anyhow::Result<bool> {
    let results = run_all(suite, opts)?;
    let mut extra = serde_json::Map::new();
    if let Some(s) = opts.shard {
        let plan: Vec<(String, u64)> = planned(suite)
            .into_iter()
            .map(|(e, seed)| (e.name.clone(), seed))
            .collect();
        extra.insert(
            "shard".into(),
            serde_json::json!({"index": s.index, "count": s.count}),
        );
        extra.insert("planned".into(), serde_json::json!(plan));
    }
    report(&suite.name, &results, opts, extra)
}

/// Merges shards' JSON summaries (`faultline suite merge`) and reports
/// them as one run of the whole suite; Ok(true) when every expectation
/// held.
pub fn merge(files: &[PathBuf], opts: &Options) -> anyhow::Result<Result<bool, String>> {
    let mut docs = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        match serde_json::from_str(&text) {
            Ok(v) => docs.push((f.display().to_string(), v)),
            Err(e) => return Ok(Err(format!("{}: not JSON: {e}", f.display()))),
        }
    }
    let (name, results) = match shard::merge(&docs) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let mut extra = serde_json::Map::new();
    extra.insert("merged_from".into(), serde_json::json!(docs.len()));
    report(&name, &results, opts, extra).map(Ok)
}

/// Prints the table and writes the JUnit and JSON summaries.
fn report(
    name: &str,
    results: &[RunResult],
    opts: &Options,
    extra: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<bool> {
    summary::print(results);
    let passed = results.iter().all(|r| r.passed);
    if let Some(p) = &opts.junit {
        std::fs::write(p, junit(name, results))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut doc = serde_json::json!({"suite": name, "passed": passed, "runs": results, "detection": detection(results)});
    doc.as_object_mut().expect("an object").extend(extra);
    let json_path = opts
        .json
        .clone()
        .unwrap_or_else(|| opts.results_dir.join(format!("suite-{name}.json")));
    std::fs::create_dir_all(&opts.results_dir)
        .with_context(|| format!("creating {}", opts.results_dir.display()))?;
    std::fs::write(&json_path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(leader_changes: Option<usize>, during: Option<usize>) -> faultline_rundir::Figures {
        faultline_rundir::Figures {
            msgs_per_op: 0.0,
            latency_ms_median: 0.0,
            latency_ms_max: 0.0,
            availability: 1.0,
            ok_ops: 100,
            ok_during_faults: during,
            leader_changes,
            stable_latency_ms_median: None,
            stable_latency_ms_max: None,
        }
    }

    #[test]
    fn leader_changes_and_ops_under_faults_can_be_bounded() {
        let mut t: Table =
            toml::from_str("min_leader_changes = 1\nmin_ok_during_faults = 20").unwrap();
        let b = Bounds::take(&mut t).unwrap();
        assert!(t.is_empty(), "both keys are bounds");
        assert!(b.broken(&figures(Some(2), Some(50))).is_empty());
        assert_eq!(
            b.broken(&figures(Some(0), Some(5))),
            vec![
                "leader changes under faults 0 < 1".to_string(),
                "ops acknowledged while faults were on 5 < 20".to_string()
            ]
        );
        // A run where nothing named a leader cannot show a change.
        let none = b.broken(&figures(None, None));
        assert!(none[0].contains("no leader was ever named"), "{none:?}");
        assert!(none[1].contains("0 < 20"), "{none:?}");
    }
}
