//! `faultline check HISTORY...`: a verdict per file and overall. A path may
//! be a run directory (its history.jsonl and traces.jsonl are checked) or a
//! traces.jsonl file (Raft invariants).

use clap::Args;
use faultline_checker::{linearizability, raft, Format, ModelKind, Verdict};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
}

fn check_history(
    path: &Path,
    format: Option<Format>,
    model: Option<ModelKind>,
    limit: Option<Duration>,
) -> Result<Value, String> {
    let name = path.display().to_string();
    let (format, ops) =
        faultline_checker::load_history(&name, format).map_err(|e| e.to_string())?;
    let opts = linearizability::Options {
        model: model.unwrap_or(format.default_model()),
        time_limit: limit,
        ..Default::default()
    };
    let r = linearizability::check(&ops, &opts).map_err(|e| format!("{name}: {e}"))?;
    Ok(json!({"file": name, "report": r}))
}

fn check_traces(path: &Path) -> Result<Value, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let r = raft::check(&name, &text).map_err(|e| e.to_string())?;
    Ok(json!({"file": name, "report": r}))
}

fn line_for(v: &Value) -> String {
    let r = &v["report"];
    let verdict = r["verdict"].as_str().unwrap_or("?");
    let detail = if r["checker"] == "raft-invariants" {
        match r["violations"].as_array().and_then(|a| a.first()) {
            Some(first) => format!(
                "{} violation(s); first: {}",
                r["violation_count"],
                first["summary"].as_str().unwrap_or("")
            ),
            None => format!("{} trace events", r["events"]),
        }
    } else {
        let base = format!(
            "{}, {} ops, {:.1} ms",
            r["model"].as_str().unwrap_or(""),
            r["ops"],
            r["elapsed_ms"].as_f64().unwrap_or(0.0)
        );
        match r["anomaly"].get("summary").and_then(Value::as_str) {
            Some(s) => format!("{base}: {s}"),
            None => base,
        }
    };
    format!("{}: {verdict} ({detail})", v["file"].as_str().unwrap_or(""))
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
    let limit = a.time_limit.map(Duration::from_secs_f64);
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for f in &a.files {
        let jobs: Vec<(PathBuf, bool)> = if f.is_dir() {
            let mut j = vec![(f.join("history.jsonl"), false)];
            let traces = f.join("traces.jsonl");
            if traces.exists() {
                j.push((traces, true));
            }
            j
        } else {
            let is_traces = f
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("traces.jsonl"));
            vec![(f.clone(), is_traces)]
        };
        for (path, traces) in jobs {
            let r = if traces {
                check_traces(&path)
            } else {
                check_history(&path, format, model, limit)
            };
            match r {
                Ok(v) => reports.push(v),
                Err(e) => errors.push(e),
            }
        }
    }
    let overall = reports
        .iter()
        .map(|r| {
            serde_json::from_value::<Verdict>(r["report"]["verdict"].clone())
                .unwrap_or(Verdict::Unknown)
        })
        .fold(Verdict::Valid, Verdict::combine);
    if a.json {
        println!(
            "{}",
            json!({"verdict": if errors.is_empty() { json!(overall) } else { Value::Null }, "files": reports, "errors": errors})
        );
    } else {
        for r in &reports {
            println!("{}", line_for(r));
        }
        for e in &errors {
            eprintln!("faultline: error: {e}");
        }
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
