//! `faultline shrink RUN_DIR`: from a failing run, search for a smaller
//! configuration that still fails the same way (an invalid verdict from a
//! checker that found the original invalid). In order, as each is cheap
//! to try and makes the next tries cheaper: a time limit just past the
//! anomaly, fewer faults (delta debugging over the recorded faults, each
//! a start with its undo), fewer clients, fewer keys, fewer nodes. Runs
//! are not fully deterministic, so each candidate gets a bounded number of
//! tries; the whole search has a time budget. It ends by printing the
//! smallest failing configuration as one command line (its schedule in a
//! file beside it) and the run directory where it failed.

use anyhow::{bail, Context};
use faultline_checker::Verdict;
use faultline_nemesis::{Phase, Step};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::options::{ConfigExt, TestOptions};
use faultline_rundir::RunDir;
use faultline_rundir::TestConfig;

pub struct ShrinkOptions {
    pub run_dir: PathBuf,
    pub tries: usize,
    pub budget: Duration,
    pub results_dir: PathBuf,
}

/// One fault of a schedule: the indexes of its start and of its undo.
type Fault = (usize, Option<usize>);

/// The faults of a schedule, each start paired with the next end of its
/// kind (a schedule alternates them per kind).
fn faults(schedule: &[Step]) -> Vec<Fault> {
    let mut out: Vec<Fault> = Vec::new();
    for (i, s) in schedule.iter().enumerate() {
        match s.action.phase() {
            Phase::Start => out.push((i, None)),
            Phase::End => {
                let k = s.action.kind();
                if let Some(f) = out
                    .iter_mut()
                    .find(|(st, e)| e.is_none() && schedule[*st].action.kind() == k)
                {
                    f.1 = Some(i);
                }
            }
        }
    }
    out
}

/// The schedule made of these faults only, in time order.
fn keep(schedule: &[Step], faults: &[Fault]) -> Vec<Step> {
    let mut idx: Vec<usize> = faults
        .iter()
        .flat_map(|&(s, e)| std::iter::once(s).chain(e))
        .collect();
    idx.sort_unstable();
    idx.into_iter().map(|i| schedule[i].clone()).collect()
}

/// What failed: the checkers that found the run invalid.
fn failing_checkers(dir: &RunDir) -> anyhow::Result<BTreeSet<String>> {
    let r = dir.load_results()?;
    Ok(r.checkers
        .iter()
        .filter(|c| c.verdict == Verdict::Invalid)
        .map(|c| c.name.clone())
        .collect())
}

struct Shrinker {
    exe: PathBuf,
    opts: ShrinkOptions,
    /// The checkers whose invalid verdict is "the same failure".
    signature: BTreeSet<String>,
    deadline: Instant,
    best: TestConfig,
    best_dir: PathBuf,
    candidates: usize,
    runs: usize,
    removed: Vec<String>,
}

impl Shrinker {
    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Runs `cfg` up to `tries` times; the run directory of the first run
    /// that fails the same way.
    fn fails(&mut self, cfg: &TestConfig, what: &str) -> anyhow::Result<Option<PathBuf>> {
        self.candidates += 1;
        for t in 1..=self.opts.tries {
            if self.out_of_time() {
                return Ok(None);
            }
            self.runs += 1;
            let started = Instant::now();
            let dir =
                crate::suite::prepare(&self.opts.results_dir, cfg).map_err(anyhow::Error::msg)?;
            let (finished, _) =
                crate::suite::run_prepared(&self.exe, &dir, cfg).map_err(anyhow::Error::msg)?;
            let failing = failing_checkers(&dir);
            let same = finished
                && failing
                    .as_ref()
                    .is_ok_and(|f| !f.is_disjoint(&self.signature));
            let outcome = match (same, finished, failing.is_ok()) {
                (true, _, _) => "fails the same way",
                (_, false, _) => "timed out",
                (_, _, false) => "could not run",
                _ => "passes",
            };
            eprintln!(
                "shrink: [{} left] {what} (try {t}/{}): {outcome} in {:.0} s",
                fmt_left(self.deadline),
                self.opts.tries,
                started.elapsed().as_secs_f64()
            );
            if same {
                return Ok(Some(dir.path().to_path_buf()));
            }
        }
        Ok(None)
    }

    /// Adopts `cfg` when it still fails.
    fn attempt(&mut self, cfg: TestConfig, what: String) -> anyhow::Result<bool> {
        match self.fails(&cfg, &what)? {
            Some(dir) => {
                self.best = cfg;
                self.best_dir = dir;
                self.removed.push(what);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn with_schedule(&self, schedule: Vec<Step>) -> TestConfig {
        TestConfig {
            schedule,
            ..self.best.clone()
        }
    }

    /// A time limit just past the moment the original failure was
    /// complete (or half the limit when that moment is unknown).
    fn shorter(&mut self, detect_s: Option<f64>) -> anyhow::Result<()> {
        let limit = self.best.time_limit_s;
        let target = match detect_s {
            Some(t) => (t + 2.0).ceil(),
            None => (limit / 2.0).ceil(),
        };
        if target >= limit || target < 1.0 {
            return Ok(());
        }
        let ms = (target * 1000.0) as u64;
        let fs = faults(&self.best.schedule);
        let kept: Vec<Fault> = fs
            .into_iter()
            .filter(|&(s, _)| self.best.schedule[s].at_ms < ms)
            .collect();
        let mut cfg = self.with_schedule(keep(&self.best.schedule, &kept));
        cfg.time_limit_s = target;
        self.attempt(cfg, format!("time limit {limit} s -> {target} s"))?;
        Ok(())
    }

    /// Delta debugging (Zeller's ddmin) over the faults: try subsets and
    /// complements at ever finer granularity, keeping any that still fail.
    fn fewer_faults(&mut self) -> anyhow::Result<()> {
        let mut n = 2;
        loop {
            let fs = faults(&self.best.schedule);
            if fs.is_empty() || self.out_of_time() {
                return Ok(());
            }
            if fs.len() == 1 {
                let cfg = self.with_schedule(Vec::new());
                self.attempt(cfg, "the last fault removed".into())?;
                return Ok(());
            }
            n = n.min(fs.len());
            let chunk = fs.len().div_ceil(n);
            let parts: Vec<Vec<Fault>> = fs.chunks(chunk).map(<[Fault]>::to_vec).collect();
            let mut reduced = false;
            for (i, part) in parts.iter().enumerate() {
                let rest: Vec<Fault> = parts
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect();
                // Complements first: with few faults needed, each removes
                // only a part, which fails far more often than keeping one
                // part alone; both shrink.
                for (set, label) in [(&rest, "without"), (part, "only")] {
                    if set.is_empty() || set.len() == fs.len() {
                        continue;
                    }
                    let cfg = self.with_schedule(keep(&self.best.schedule, set));
                    let what = format!(
                        "{} of {} faults ({label} part {}/{})",
                        set.len(),
                        fs.len(),
                        i + 1,
                        parts.len()
                    );
                    if self.attempt(cfg, what)? {
                        n = if label == "only" { 2 } else { (n - 1).max(2) };
                        reduced = true;
                        break;
                    }
                }
                if reduced || self.out_of_time() {
                    break;
                }
            }
            if !reduced {
                if n >= fs.len() {
                    return Ok(());
                }
                n = (2 * n).min(fs.len());
            }
        }
    }

    /// Halves a count while the run keeps failing.
    fn halve(
        &mut self,
        name: &str,
        get: fn(&TestConfig) -> usize,
        set: fn(&mut TestConfig, usize),
        floor: usize,
    ) -> anyhow::Result<()> {
        loop {
            let now = get(&self.best);
            let next = (now / 2).max(floor);
            if next >= now || self.out_of_time() {
                return Ok(());
            }
            let mut cfg = self.best.clone();
            set(&mut cfg, next);
            if !self.attempt(cfg, format!("{name} {now} -> {next}"))? {
                return Ok(());
            }
        }
    }

    /// Fewer nodes: the smallest odd cluster down to three, dropping the
    /// faults that name a node it no longer has.
    fn fewer_nodes(&mut self) -> anyhow::Result<()> {
        let n = self.best.node_count;
        for fewer in (3..n).step_by(2) {
            if self.out_of_time() {
                return Ok(());
            }
            let kept: Vec<Fault> = faults(&self.best.schedule)
                .into_iter()
                .filter(|&(s, e)| {
                    std::iter::once(s).chain(e).all(|i| {
                        let (nodes, cut) = self.best.schedule[i].action.named();
                        let mut ends = cut.iter().flat_map(|&(a, b)| [a, b]);
                        nodes.iter().all(|&x| x < fewer) && ends.all(|x| x < fewer)
                    })
                })
                .collect();
            let mut cfg = self.with_schedule(keep(&self.best.schedule, &kept));
            cfg.node_count = fewer;
            cfg.concurrency = cfg.concurrency.max(1);
            if self.attempt(cfg, format!("nodes {n} -> {fewer}"))? {
                return Ok(());
            }
        }
        Ok(())
    }
}

fn fmt_left(deadline: Instant) -> String {
    let s = deadline.saturating_duration_since(Instant::now()).as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// The command line that runs `cfg` again, its schedule read from
/// `schedule_file`.
pub fn command_line(cfg: &TestConfig, schedule_file: &Path) -> String {
    let o = cfg.options();
    let set = serde_json::to_value(&o).expect("options serialize");
    let plain = serde_json::to_value(TestOptions::default()).expect("options serialize");
    let mut words = vec!["faultline".to_string(), "test".to_string()];
    for (key, v) in set.as_object().expect("an object") {
        if key == "args" || key == "schedule" || v.is_null() || plain.get(key) == Some(v) {
            continue;
        }
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        words.push(format!("--{}", key.replace('_', "-")));
        words.push(shell_word(&value));
    }
    words.push("--schedule".into());
    words.push(shell_word(&schedule_file.display().to_string()));
    if !o.args.is_empty() {
        words.push("--".into());
        words.extend(o.args.iter().map(|a| shell_word(a)));
    }
    words.join(" ")
}

fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@{}".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Shrinks the failing run at `opts.run_dir`; prints and returns the
/// directory of the smallest failing run.
pub fn run(opts: ShrinkOptions) -> anyhow::Result<PathBuf> {
    if opts.tries == 0 {
        bail!("--tries must be at least 1");
    }
    let original = RunDir::open(&opts.run_dir);
    let cfg = crate::options::load_config(&original)
        .with_context(|| format!("reading the run at {}", opts.run_dir.display()))?;
    let results = original
        .load_results()
        .with_context(|| format!("reading the results of {}", opts.run_dir.display()))?;
    let signature = failing_checkers(&original)?;
    if results.verdict != Some(Verdict::Invalid) || signature.is_empty() {
        bail!(
            "{} did not fail (verdict {}): there is nothing to shrink",
            opts.run_dir.display(),
            results.verdict.map_or("none", |v| v.as_str())
        );
    }
    let detect_s = (results.detection(&original))
        .map_err(anyhow::Error::msg)?
        .map(|d| d.complete_s);
    let mut best = cfg.clone();
    best.name = format!("{}-shrunk", cfg.name);
    let exe = std::env::current_exe().context("locating the faultline binary")?;
    let faults_before = faults(&cfg.schedule).len();
    eprintln!(
        "shrink: {} failed ({}); {} faults, {} s, {} clients, {} keys, {} nodes; budget {} s, {} tries a candidate",
        opts.run_dir.display(),
        signature.iter().cloned().collect::<Vec<_>>().join(", "),
        faults_before,
        cfg.time_limit_s,
        cfg.concurrency,
        cfg.key_count,
        cfg.node_count,
        opts.budget.as_secs(),
        opts.tries
    );
    let mut s = Shrinker {
        exe,
        deadline: Instant::now() + opts.budget,
        opts,
        signature,
        best,
        best_dir: PathBuf::new(),
        candidates: 0,
        runs: 0,
        removed: Vec::new(),
    };
    s.shorter(detect_s)?;
    s.fewer_faults()?;
    s.halve("clients", |c| c.concurrency, |c, v| c.concurrency = v, 1)?;
    s.halve(
        "keys",
        |c| c.key_count as usize,
        |c, v| c.key_count = v as u64,
        1,
    )?;
    s.fewer_nodes()?;
    finish(s, &cfg, faults_before)
}

/// Writes the smallest failing configuration's schedule and summary into
/// its run directory and prints the command line.
fn finish(s: Shrinker, original: &TestConfig, faults_before: usize) -> anyhow::Result<PathBuf> {
    if s.best_dir.as_os_str().is_empty() {
        bail!(
            "no smaller configuration failed the same way within the budget ({} candidates, {} runs); the original stands",
            s.candidates,
            s.runs
        );
    }
    let dir = s.best_dir.clone();
    let schedule_file = dir.join("schedule.json");
    let text = serde_json::to_string_pretty(&s.best.schedule).context("a schedule serializes")?;
    std::fs::write(&schedule_file, text)
        .with_context(|| format!("writing {}", schedule_file.display()))?;
    let faults_after = faults(&s.best.schedule).len();
    let line = command_line(&s.best, &schedule_file);
    let summary = serde_json::json!({
        "original": original_summary(original),
        "shrunk": original_summary(&s.best),
        "removed": s.removed,
        "candidates": s.candidates,
        "runs": s.runs,
        "command": line,
    });
    std::fs::write(
        dir.join("shrink.json"),
        serde_json::to_string_pretty(&summary).context("a summary serializes")?,
    )
    .with_context(|| format!("writing {}/shrink.json", dir.display()))?;
    println!(
        "shrunk: {} -> {} faults, {} -> {} s, {} -> {} clients, {} -> {} keys, {} -> {} nodes ({} candidates, {} runs)",
        faults_before,
        faults_after,
        original.time_limit_s,
        s.best.time_limit_s,
        original.concurrency,
        s.best.concurrency,
        original.key_count,
        s.best.key_count,
        original.node_count,
        s.best.node_count,
        s.candidates,
        s.runs
    );
    for r in &s.removed {
        println!("  kept: {r}");
    }
    println!("run directory: {}", dir.display());
    println!("{line}");
    Ok(dir)
}

fn original_summary(c: &TestConfig) -> serde_json::Value {
    serde_json::json!({
        "faults": faults(&c.schedule).len(),
        "time_limit_s": c.time_limit_s,
        "concurrency": c.concurrency,
        "key_count": c.key_count,
        "node_count": c.node_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_pair_each_start_with_its_kinds_next_end() {
        let specs = faultline_nemesis::parse_specs("kill,partition,pause").unwrap();
        let s = faultline_nemesis::schedule(&specs, 5, 9, 1000, 20_000);
        let fs = faults(&s);
        assert_eq!(fs.len() * 2, s.len());
        for &(st, e) in &fs {
            let e = e.expect("every fault is closed");
            assert!(st < e);
            assert_eq!(s[st].action.kind(), s[e].action.kind());
        }
        // Any subset of faults is a well-formed schedule.
        let some: Vec<Fault> = fs.iter().copied().step_by(3).collect();
        faultline_nemesis::check_schedule(&keep(&s, &some), 5).unwrap();
    }

    #[test]
    fn the_command_line_names_what_differs_from_the_defaults() {
        let o = TestOptions {
            seed: Some(4),
            nemesis: "kill,partition".into(),
            concurrency: Some(3),
            args: vec!["--bug".into(), "local-read".into()],
            ..Default::default()
        };
        let cfg = o.validate().unwrap();
        let line = command_line(&cfg, Path::new("/tmp/a b/schedule.json"));
        assert!(line.starts_with("faultline test "), "{line}");
        for part in [
            "--seed 4",
            "--nemesis partition,kill",
            "--concurrency 3",
            "--schedule '/tmp/a b/schedule.json'",
            "-- --bug local-read",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(!line.contains("--rate"), "{line}");
    }
}
