//! `faultline check PATH...`: a verdict per checker and file, and overall.
//! A path may be a history in any supported format (linearizability), a
//! traces.jsonl file (Raft invariants), or a run directory, which is judged
//! by the run's own check phase (`run::judge`) with the liveness result the
//! run recorded, so it gives exactly the verdict the run gave, unless
//! `--consistency-model` or `--time-limit` ask for another judgement (said
//! on the output). Flags that only mean something for a history file are
//! refused for a run directory, never ignored.

use clap::Args;
use faultline_checker::compose::{self, names, Input, Linearizability, RaftInvariants};
use faultline_checker::txn::ConsistencyModel;
use faultline_checker::{CheckerResult, Format, ModelKind, Verdict};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::run::judge;
use faultline_rundir::RunDir;

#[derive(Args)]
pub struct CheckArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// register, lin-kv or kv-string (default: from the format).
    #[arg(long)]
    model: Option<String>,
    /// jsonl, porcupine-etcd, porcupine-kv or jepsen-edn (default: detected).
    #[arg(long)]
    format: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds per file before the verdict is `unknown`.
    #[arg(long)]
    time_limit: Option<f64>,
    /// For transaction histories: strict-serializable (default),
    /// serializable, snapshot-isolation, repeatable-read, read-committed,
    /// read-uncommitted, or a strong / strong-session form.
    #[arg(long)]
    consistency_model: Option<String>,
}

/// How files are read and judged, from the flags.
struct Settings {
    format: Option<Format>,
    model: Option<ModelKind>,
    time_limit: Option<Duration>,
    consistency_model: Option<ConsistencyModel>,
}

/// Whether a history file holds transactions (`:f :txn`, `"f":"txn"`).
fn is_txn_history(path: &Path) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    head.contains(":f :txn") || head.contains("\"f\":\"txn\"") || head.contains("[:append ")
}

/// A transaction history (EDN or faultline JSONL), judged for isolation.
fn check_txn_history(path: &Path, s: &Settings) -> Result<CheckerResult, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let is_edn =
        name.ends_with(".edn") || text.trim_start().starts_with('{') && text.contains(":type");
    let txns = if is_edn {
        faultline_checker::txn::history::from_edn(&name, &text).map_err(|e| e.to_string())?
    } else {
        let (_, ops) =
            faultline_checker::load_history(&name, s.format).map_err(|e| e.to_string())?;
        faultline_checker::txn::history::from_ops(&ops).map_err(|e| format!("{name}: {e}"))?
    };
    let model = s
        .consistency_model
        .unwrap_or(ConsistencyModel::StrictSerializable);
    let r = faultline_checker::txn::check(&txns, model, s.time_limit);
    if r.committed == 0 && r.anomalies.is_empty() {
        return Ok(CheckerResult::new(
            names::TRANSACTIONS,
            Verdict::Unknown,
            format!("{name}: no transaction committed: nothing that could have failed, so nothing to judge"),
            &r,
        ));
    }
    Ok(CheckerResult::new(
        names::TRANSACTIONS,
        r.verdict,
        r.summary(),
        &r,
    ))
}

fn check_history(path: &Path, s: &Settings) -> Result<CheckerResult, String> {
    if is_txn_history(path) {
        return check_txn_history(path, s);
    }
    let name = path.display().to_string();
    let (format, ops) =
        faultline_checker::load_history(&name, s.format).map_err(|e| e.to_string())?;
    let checker = Linearizability {
        model: s.model.unwrap_or(format.default_model()),
    };
    let input = Input {
        ops: &ops,
        traces: None,
        time_limit: s.time_limit,
        consistency_model: s.consistency_model,
    };
    only(compose::run(&[Box::new(checker)], &input), &name)
}

fn check_traces(path: &Path) -> Result<CheckerResult, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let input = Input {
        ops: &[],
        traces: Some((&name, &text)),
        time_limit: None,
        consistency_model: None,
    };
    only(compose::run(&[Box::new(RaftInvariants)], &input), &name)
}

fn only(
    r: Result<Vec<CheckerResult>, faultline_checker::CheckError>,
    name: &str,
) -> Result<CheckerResult, String> {
    let results = r.map_err(|e| e.to_string())?;
    results
        .into_iter()
        .next()
        .ok_or_else(|| format!("{name}: nothing to check"))
}

/// A run directory, judged as the run judged itself, or under the
/// consistency model or time limit the flags name instead (said in the
/// returned notes). Flags that only mean something for a history file
/// are refused rather than ignored.
fn check_run_dir(path: &Path, s: &Settings) -> Result<(Vec<CheckerResult>, Vec<String>), String> {
    let name = path.display();
    if s.format.is_some() || s.model.is_some() {
        return Err(format!(
            "{name}: --format and --model apply to a history file; a run directory is judged by its workload's checkers (point check at {name}/history.jsonl to use them)"
        ));
    }
    let dir = RunDir::open(path);
    let mut cfg = crate::options::load_config(&dir).map_err(|e| format!("{e:#}"))?;
    let stored = dir.load_results().map_err(|e| format!("{e:#}"))?;
    let mut notes = Vec::new();
    if let Some(m) = s.consistency_model {
        if m.name() != cfg.consistency_model {
            notes.push(format!(
                "{name}: judged under --consistency-model {} (the run was recorded under {})",
                m.name(),
                cfg.consistency_model
            ));
        }
        cfg.consistency_model = m.name().to_string();
    }
    if let Some(t) = s.time_limit {
        notes.push(format!(
            "{name}: each checker given --time-limit {} s (the run gave {} s)",
            t.as_secs_f64(),
            cfg.check_time_limit_s
        ));
        cfg.check_time_limit_s = t.as_secs_f64();
    }
    let liveness = stored.checker(names::LIVENESS).cloned();
    let (_, mut results) = judge::check(&dir, &cfg, liveness).map_err(|e| format!("{e:#}"))?;
    if stored.interrupted {
        // What it recorded may still show a violation (they only grow),
        // but a clean prefix proves nothing: no final reads, no liveness.
        let at = stored.duration_s;
        results.push(CheckerResult::new(
            "interrupted",
            Verdict::Unknown,
            format!("interrupted at {at:.1} s: no final reads or liveness check were done"),
            &json!({"interrupted_at_s": at}),
        ));
    }
    Ok((results, notes))
}

/// Every (file, result) for one path, and notes on how it was judged.
fn check_path(
    f: &Path,
    s: &Settings,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, CheckerResult)>, String> {
    let name = f.display().to_string();
    let results = if f.is_dir() {
        let (results, said) = check_run_dir(f, s)?;
        notes.extend(said);
        results
    } else if f
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with("traces.jsonl"))
    {
        vec![check_traces(f)?]
    } else {
        vec![check_history(f, s)?]
    };
    Ok(results.into_iter().map(|r| (name.clone(), r)).collect())
}

/// For each failing run directory: how far into the run it had failed.
fn print_first_failures(files: &[std::path::PathBuf]) {
    for f in files.iter().filter(|f| f.is_dir()) {
        let dir = RunDir::open(f);
        let Ok(stored) = dir.load_results() else {
            continue;
        };
        if stored.verdict != Some(Verdict::Invalid) {
            continue;
        }
        match crate::detect::first_failure_s(&dir, &stored) {
            Ok(Some(s)) => println!(
                "{}: failed {s:.1} s into the run (its shortest invalid history prefix, or its first Raft violation)",
                f.display()
            ),
            Ok(None) => {}
            Err(e) => eprintln!("{}: when it first failed is unknown: {e:#}", f.display()),
        }
    }
}

pub fn run(a: CheckArgs) -> ExitCode {
    let format = match a.format.as_deref().map(str::parse::<Format>).transpose() {
        Ok(f) => f,
        Err(e) => return crate::usage(format!("--format: {e}")),
    };
    let model = match a.model.as_deref().map(str::parse::<ModelKind>).transpose() {
        Ok(m) => m,
        Err(e) => return crate::usage(format!("--model: {e}")),
    };
    let consistency_model = match a
        .consistency_model
        .as_deref()
        .map(ConsistencyModel::parse)
        .transpose()
    {
        Ok(m) => m,
        Err(e) => return crate::usage(format!("--consistency-model: {e}")),
    };
    let settings = Settings {
        format,
        model,
        time_limit: a.time_limit.map(Duration::from_secs_f64),
        consistency_model,
    };
    let (mut reports, mut errors, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for f in &a.files {
        match check_path(f, &settings, &mut notes) {
            Ok(r) => reports.extend(r),
            Err(e) => errors.push(e),
        }
    }
    let overall = reports
        .iter()
        .map(|(_, r)| r.verdict)
        .fold(Verdict::Valid, Verdict::combine);
    if a.json {
        let files: Vec<_> = reports
            .iter()
            .map(|(file, r)| json!({"file": file, "checker": r.name, "report": r}))
            .collect();
        let verdict = errors.is_empty().then_some(overall);
        println!(
            "{}",
            json!({"verdict": verdict, "files": files, "errors": errors, "notes": notes})
        );
    } else {
        for n in &notes {
            println!("{n}");
        }
        for (file, r) in &reports {
            println!(
                "{file} [{}]: {} ({})",
                r.name,
                r.verdict.as_str(),
                r.summary
            );
        }
        for e in &errors {
            eprintln!("faultline: error: {e}");
        }
        print_first_failures(&a.files);
        if errors.is_empty() {
            println!("overall: {}", overall.as_str());
        }
    }
    if !errors.is_empty() {
        // Unreadable or malformed input is the caller's to fix.
        return ExitCode::from(crate::EXIT_USAGE);
    }
    ExitCode::from(overall.exit_code() as u8)
}
