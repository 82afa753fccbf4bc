//! What a suite prints and writes about its runs: the summary table, the
//! per-bug detection figures, JUnit XML.

use serde_json::{json, Value};

use super::RunResult;

/// `[3/45] entry seed=2: INVALID (expected invalid) in 31.2 s`.
pub fn progress_line(r: &RunResult, done: usize, total: usize) -> String {
    format!(
        "[{done}/{total}] {} seed={}: {} (expected {}){} in {:.1} s",
        r.entry,
        r.seed,
        r.got.to_uppercase(),
        r.expect,
        if r.passed { "" } else { " FAIL" },
        r.wall_s
    )
}

/// The table of runs, the detection figures and the pass count.
pub fn print(results: &[RunResult]) {
    println!(
        "\n{:<28} {:>6} {:>8} {:>8} {:>6} {:>9}  summary",
        "entry", "seed", "expect", "got", "pass", "detect_s"
    );
    for r in results {
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
    print_figures(results);
    let det = detection(results);
    if !det.is_empty() {
        println!(
            "\n{:<28} {:>8} {:>10} {:>10} {:>16}",
            "bug entry", "caught", "median_s", "max_s", "named_median_s"
        );
        for d in &det {
            let f = |v: &Value| v.as_f64().map_or("-".into(), |t| format!("{t:.1}"));
            println!(
                "{:<28} {:>8} {:>10} {:>10} {:>16}",
                d["entry"].as_str().unwrap_or(""),
                format!("{}/{}", d["caught"], d["seeds"]),
                f(&d["median_detect_s"]),
                f(&d["max_detect_s"]),
                f(&d["median_named_detect_s"])
            );
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    println!("\n{} passed, {} failed", results.len() - failed, failed);
}

/// Messages per op, latency and availability per run: the figures the
/// Gossip Glomers challenges bound.
fn print_figures(results: &[RunResult]) {
    if results.iter().all(|r| r.figures.is_none()) {
        return;
    }
    println!(
        "\n{:<28} {:>6} {:>9} {:>10} {:>10} {:>7} {:>10}  bounds",
        "entry", "seed", "msgs/op", "median_ms", "max_ms", "avail", "stable_ms"
    );
    for r in results {
        let Some(f) = r.figures else { continue };
        println!(
            "{:<28} {:>6} {:>9.1} {:>10.1} {:>10.1} {:>6.1}% {:>10}  {}",
            r.entry,
            r.seed,
            f.msgs_per_op,
            f.latency_ms_median,
            f.latency_ms_max,
            f.availability * 100.0,
            f.stable_latency_ms_max
                .map_or("-".to_string(), |s| format!("{s:.0}")),
            if r.bounds_broken.is_empty() {
                "ok".to_string()
            } else {
                r.bounds_broken.join(", ")
            }
        );
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
            let named = sorted(|r| r.named_detect_s);
            let caught = runs.iter().filter(|r| r.got == "invalid").count();
            json!({
                "entry": n,
                "seeds": runs.len(),
                "caught": caught,
                "rate": caught as f64 / runs.len() as f64,
                "median_detect_s": times.get(times.len() / 2),
                "max_detect_s": times.last(),
                "median_named_detect_s": named.get(named.len() / 2),
                "median_anomaly_start_s": starts.get(starts.len() / 2),
            })
        })
        .collect()
}
