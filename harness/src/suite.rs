//! `faultline suite FILE.toml`: runs a matrix of tests (each entry over its
//! seeds) as `faultline test` subprocesses, compares every verdict with the
//! entry's expectation, prints a summary table and per-entry detection
//! figures, and writes JUnit XML and a JSON summary.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a single run may take beyond its own time limit (start-up,
/// healing, liveness, checking) before the suite kills it.
const RUN_OVERHEAD_S: f64 = 180.0;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: Option<String>,
    pub bin: Option<PathBuf>,
    pub args: Option<Vec<String>>,
    pub workload: Option<String>,
    pub nemesis: Option<String>,
    pub nemesis_interval: Option<f64>,
    pub node_count: Option<usize>,
    pub time_limit: Option<f64>,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub key_count: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub latency: Option<f64>,
    /// `constant`, `uniform` (jitter that reorders messages) or `exponential`.
    pub latency_dist: Option<String>,
    pub seeds: Option<Vec<u64>>,
    /// `valid`, `invalid` or `unknown`.
    pub expect: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    name: Option<String>,
    #[serde(default)]
    defaults: Entry,
    #[serde(rename = "run", default)]
    runs: Vec<Entry>,
}

macro_rules! merge {
    ($dst:ident, $src:ident, $($f:ident),*) => { $( if $dst.$f.is_none() { $dst.$f = $src.$f.clone(); } )* };
}

/// A parsed suite: entries with defaults applied, validated.
pub struct Suite {
    pub name: String,
    pub entries: Vec<Entry>,
}

pub fn load(path: &Path) -> anyhow::Result<Suite> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: SuiteFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid suite", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let name = file.name.unwrap_or_else(|| {
        path.file_stem()
            .map_or("suite".into(), |s| s.to_string_lossy().into_owned())
    });
    if file.runs.is_empty() {
        bail!("{}: no [[run]] entries", path.display());
    }
    let d = file.defaults;
    let mut entries = Vec::new();
    for (i, mut e) in file.runs.into_iter().enumerate() {
        merge!(
            e,
            d,
            bin,
            args,
            workload,
            nemesis,
            nemesis_interval,
            node_count,
            time_limit,
            rate,
            concurrency,
            key_count,
            timeout_ms,
            latency,
            latency_dist,
            seeds,
            expect
        );
        let Some(n) = &e.name else {
            bail!("{}: [[run]] number {} has no name", path.display(), i + 1)
        };
        if n.is_empty() || n.contains('/') {
            bail!("{}: run name {n:?} must be a plain name", path.display());
        }
        match e.expect.as_deref() {
            Some("valid" | "invalid" | "unknown") => {}
            other => bail!(
                "{}: run {n:?} must expect valid, invalid or unknown (got {other:?})",
                path.display()
            ),
        }
        if e.seeds.as_ref().is_some_and(|s| s.is_empty()) {
            bail!("{}: run {n:?} has an empty seed list", path.display());
        }
        // A relative binary is relative to the suite file.
        if let Some(b) = &e.bin {
            if b.is_relative() {
                e.bin = Some(base.join(b));
            }
        }
        entries.push(e);
    }
    Ok(Suite { name, entries })
}

/// The outcome of one (entry, seed) run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub entry: String,
    pub seed: u64,
    pub expect: String,
    /// `valid`, `invalid`, `unknown`, or `error` (the run itself failed).
    pub got: String,
    pub passed: bool,
    pub summary: String,
    pub run_dir: Option<PathBuf>,
    /// Seconds from test start until the anomaly was complete: its last op
    /// returned (the read that saw stale data), or the trace line that
    /// completed the first Raft violation. A run this long catches it.
    pub detect_s: Option<f64>,
    /// Seconds from test start to the first op of the anomaly (often a
    /// write long before the read that exposed it).
    pub anomaly_start_s: Option<f64>,
    pub wall_s: f64,
}

fn test_args(e: &Entry, seed: u64, results: &Path, suite: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "test".into(),
        "--results-dir".into(),
        results.display().to_string(),
    ];
    let mut opt = |flag: &str, v: Option<String>| {
        if let Some(v) = v {
            a.push(flag.into());
            a.push(v);
        }
    };
    opt(
        "--name",
        Some(format!("{suite}-{}", e.name.as_deref().unwrap_or("run"))),
    );
    opt("--seed", Some(seed.to_string()));
    opt("--bin", e.bin.as_ref().map(|b| b.display().to_string()));
    opt("--workload", e.workload.clone());
    opt("--nemesis", e.nemesis.clone());
    opt(
        "--nemesis-interval",
        e.nemesis_interval.map(|v| v.to_string()),
    );
    opt("--node-count", e.node_count.map(|v| v.to_string()));
    opt("--time-limit", e.time_limit.map(|v| v.to_string()));
    opt("--rate", e.rate.map(|v| v.to_string()));
    opt("--concurrency", e.concurrency.map(|v| v.to_string()));
    opt("--key-count", e.key_count.map(|v| v.to_string()));
    opt("--timeout-ms", e.timeout_ms.map(|v| v.to_string()));
    opt("--latency", e.latency.map(|v| v.to_string()));
    opt("--latency-dist", e.latency_dist.clone());
    if let Some(args) = &e.args {
        a.push("--".into());
        a.extend(args.iter().cloned());
    }
    a
}

/// (detected, started): when the first anomaly was complete, and when its
/// first op began. The linearizability anomaly is complete when the last of
/// its ops (the blocked op included) returned; a Raft violation when the
/// trace line that completed it was written. The earlier anomaly counts.
fn detection_time(run_dir: &Path, results: &Value) -> Option<(f64, f64)> {
    let anomaly = &results["checkers"]["linearizability"]["anomaly"];
    let ops: Vec<&Value> = anomaly["ops"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(anomaly.get("blocked").filter(|b| b.is_object()))
        .collect();
    let lin = ops
        .iter()
        .filter_map(|o| o["complete_time"].as_u64().or(o["invoke_time"].as_u64()))
        .max()
        .zip(ops.iter().filter_map(|o| o["invoke_time"].as_u64()).min());
    let raft = first_violation_ns(run_dir, results).map(|ns| (ns, ns));
    let (done, start) = match (lin, raft) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some((done as f64 / 1e9, start as f64 / 1e9))
}

fn first_violation_ns(run_dir: &Path, results: &Value) -> Option<u64> {
    let violations = results["checkers"]["raft-invariants"]["violations"].as_array()?;
    // A violation exists once its last line happened.
    let first = violations
        .iter()
        .filter_map(|v| {
            let lines = v["lines"].as_array()?;
            lines.iter().filter_map(Value::as_u64).max()
        })
        .min()?;
    let text = std::fs::read_to_string(run_dir.join("traces.jsonl")).ok()?;
    let line = text.lines().nth((first as usize).checked_sub(1)?)?;
    serde_json::from_str::<Value>(line).ok()?["time"].as_u64()
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

fn run_one(exe: &Path, e: &Entry, seed: u64, results: &Path, suite: &str) -> RunResult {
    let started = Instant::now();
    let expect = e.expect.clone().unwrap_or_default();
    let entry = e.name.clone().unwrap_or_default();
    let mut cmd = Command::new(exe);
    cmd.args(test_args(e, seed, results, suite))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = Duration::from_secs_f64(e.time_limit.unwrap_or(10.0) + RUN_OVERHEAD_S);
    let fail = |summary: String, run_dir: Option<PathBuf>| RunResult {
        entry: entry.clone(),
        seed,
        expect: expect.clone(),
        got: "error".into(),
        passed: false,
        summary,
        run_dir,
        detect_s: None,
        anomaly_start_s: None,
        wall_s: started.elapsed().as_secs_f64(),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => return fail(format!("cannot start {}: {err}", exe.display()), None),
    };
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                // SIGTERM lets it kill its nodes; SIGKILL if it will not go.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                std::thread::sleep(Duration::from_secs(5));
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let run_dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .map(PathBuf::from);
    let Some(status) = status else {
        return fail(format!("timed out after {} s", limit.as_secs()), run_dir);
    };
    let got = match status.code() {
        Some(0) => "valid",
        Some(1) => "invalid",
        Some(2) => "unknown",
        _ => {
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            return fail(format!("faultline test failed ({status}): {last}"), run_dir);
        }
    };
    let results: Value = run_dir
        .as_ref()
        .and_then(|d| std::fs::read(d.join("results.json")).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let summary = results["summary"].as_str().unwrap_or("").to_string();
    let (detect_s, anomaly_start_s) = if got == "invalid" {
        run_dir
            .as_ref()
            .and_then(|d| detection_time(d, &results))
            .unzip()
    } else {
        (None, None)
    };
    RunResult {
        passed: got == expect,
        got: got.into(),
        entry,
        seed,
        expect,
        summary,
        run_dir,
        detect_s,
        anomaly_start_s,
        wall_s: started.elapsed().as_secs_f64(),
    }
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c => c.to_string(),
        })
        .collect()
}

pub fn junit(suite: &str, results: &[RunResult]) -> String {
    let failures = results.iter().filter(|r| !r.passed).count();
    let total: f64 = results.iter().map(|r| r.wall_s).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x += &format!(
        "<testsuites tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">\n",
        results.len(),
        xml_escape(suite),
        results.len()
    );
    for r in results {
        // The report is named only when the run wrote one.
        let report = r
            .run_dir
            .as_ref()
            .map(|d| d.join("report.html"))
            .filter(|p| p.exists())
            .map(|p| format!("\nreport: {}", p.display()))
            .unwrap_or_default();
        x += &format!(
            "    <testcase classname=\"{}\" name=\"{} seed={}\" time=\"{:.3}\">\n",
            xml_escape(suite),
            xml_escape(&r.entry),
            r.seed,
            r.wall_s
        );
        if !r.passed {
            let msg = format!("expected {}, got {}: {}", r.expect, r.got, r.summary);
            x +=
                &format!(
                "      <failure message=\"{}\" type=\"verdict\">{}\nrun: {}{report}</failure>\n",
                xml_escape(&msg),
                xml_escape(&msg),
                xml_escape(&r.run_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default())
            );
        }
        if let Some(d) = &r.run_dir {
            x += &format!(
                "      <system-out>{}</system-out>\n",
                xml_escape(&d.display().to_string())
            );
        }
        x += "    </testcase>\n";
    }
    x += "  </testsuite>\n</testsuites>\n";
    x
}

/// Per entry: how often an `invalid` expectation was met and how fast.
pub fn detection(results: &[RunResult]) -> Vec<Value> {
    let mut names: Vec<&str> = results
        .iter()
        .filter(|r| r.expect == "invalid")
        .map(|r| r.entry.as_str())
        .collect();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            let runs: Vec<&RunResult> = results.iter().filter(|r| r.entry == n).collect();
            // One figure of every caught run, in ascending order.
            let sorted = |f: fn(&RunResult) -> Option<f64>| {
                let mut v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.got == "invalid")
                    .filter_map(|r| f(r))
                    .collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let times = sorted(|r| r.detect_s);
            let starts = sorted(|r| r.anomaly_start_s);
            let caught = runs.iter().filter(|r| r.got == "invalid").count();
            json!({
                "entry": n,
                "seeds": runs.len(),
                "caught": caught,
                "rate": caught as f64 / runs.len() as f64,
                "median_detect_s": times.get(times.len() / 2),
                "max_detect_s": times.last(),
                "median_anomaly_start_s": starts.get(starts.len() / 2),
            })
        })
        .collect()
}

pub struct Options {
    pub jobs: usize,
    pub junit: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub results_dir: PathBuf,
}

/// Runs the suite; Ok(true) when every expectation held.
pub fn run(path: &Path, opts: &Options) -> anyhow::Result<bool> {
    let suite = load(path)?;
    let exe = std::env::current_exe().context("locating the faultline binary")?;
    let mut queue: VecDeque<(Entry, u64)> = VecDeque::new();
    for e in &suite.entries {
        for &s in e.seeds.as_deref().unwrap_or(&[1]) {
            queue.push_back((e.clone(), s));
        }
    }
    let total = queue.len();
    println!(
        "suite {}: {} runs of {} entries, {} at a time",
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
            let (queue, done, exe, results, name) = (
                queue.clone(),
                done.clone(),
                exe.clone(),
                opts.results_dir.clone(),
                suite.name.clone(),
            );
            let progress = progress.clone();
            std::thread::spawn(move || loop {
                let Some((e, seed)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let r = run_one(&exe, &e, seed, &results, &name);
                let mut d = done.lock().unwrap();
                d.push(r.clone());
                progress.println(&format!(
                    "[{}/{}] {} seed={}: {} (expected {}){} in {:.1} s",
                    d.len(),
                    total,
                    r.entry,
                    r.seed,
                    r.got.to_uppercase(),
                    r.expect,
                    if r.passed { "" } else { " FAIL" },
                    r.wall_s
                ));
                progress.inc();
                let _ = std::io::stdout().flush();
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    progress.finish();
    let mut results = Arc::try_unwrap(done)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default();
    let order: Vec<&str> = suite
        .entries
        .iter()
        .filter_map(|e| e.name.as_deref())
        .collect();
    results.sort_by_key(|r| (order.iter().position(|n| *n == r.entry), r.seed));

    println!(
        "\n{:<28} {:>6} {:>8} {:>8} {:>6} {:>9}  summary",
        "entry", "seed", "expect", "got", "pass", "detect_s"
    );
    for r in &results {
        println!(
            "{:<28} {:>6} {:>8} {:>8} {:>6} {:>9}  {}",
            r.entry,
            r.seed,
            r.expect,
            r.got,
            if r.passed { "ok" } else { "FAIL" },
            r.detect_s.map_or("-".into(), |t| format!("{t:.1}")),
            r.summary.chars().take(90).collect::<String>()
        );
    }
    let det = detection(&results);
    if !det.is_empty() {
        println!(
            "\n{:<28} {:>8} {:>10} {:>10}",
            "bug entry", "caught", "median_s", "max_s"
        );
        for d in &det {
            let f = |v: &Value| v.as_f64().map_or("-".into(), |t| format!("{t:.1}"));
            println!(
                "{:<28} {:>8} {:>10} {:>10}",
                d["entry"].as_str().unwrap_or(""),
                format!("{}/{}", d["caught"], d["seeds"]),
                f(&d["median_detect_s"]),
                f(&d["max_detect_s"])
            );
        }
    }
    let passed = results.iter().all(|r| r.passed);
    let failed = results.iter().filter(|r| !r.passed).count();
    println!("\n{} passed, {} failed", results.len() - failed, failed);
    if let Some(p) = &opts.junit {
        std::fs::write(p, junit(&suite.name, &results))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let summary = json!({"suite": suite.name, "passed": passed, "runs": results, "detection": det});
    let json_path = opts
        .json
        .clone()
        .unwrap_or_else(|| opts.results_dir.join(format!("suite-{}.json", suite.name)));
    std::fs::create_dir_all(&opts.results_dir).ok();
    std::fs::write(&json_path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::detection_time;
    use serde_json::json;

    #[test]
    fn an_anomaly_is_detected_when_its_last_op_returned() {
        let dir = tempfile::tempdir().unwrap();
        let traces = "{\"time\":9000000000,\"node\":\"n1\",\"event\":\"leader\",\"term\":2}\n\
                      {\"time\":7000000000,\"node\":\"n2\",\"event\":\"leader\",\"term\":2}\n";
        std::fs::write(dir.path().join("traces.jsonl"), traces).unwrap();
        let lin = json!({"anomaly": {
            "ops": [{"invoke_time": 1_000_000_000u64, "complete_time": 1_100_000_000u64}],
            "blocked": {"invoke_time": 5_000_000_000u64, "complete_time": 5_200_000_000u64}
        }});
        let results = json!({"checkers": {"linearizability": lin}});
        assert_eq!(detection_time(dir.path(), &results), Some((5.2, 1.0)));
        // A Raft violation completed (line 2, at 7 s) later than the stale
        // read: the read counts. Earlier, the violation would.
        let raft = json!({"violations": [{"lines": [1, 2]}]});
        let results = json!({"checkers": {"linearizability": lin, "raft-invariants": raft}});
        assert_eq!(detection_time(dir.path(), &results), Some((5.2, 1.0)));
        let results = json!({"checkers": {"raft-invariants": raft}});
        assert_eq!(detection_time(dir.path(), &results), Some((7.0, 7.0)));
        assert_eq!(detection_time(dir.path(), &json!({})), None);
    }
}
