//! report.html: one self-contained file per run (inline CSS and SVG, no
//! scripts from anywhere else, readable offline), drawn from the run's own
//! files: results.json, test.json, history.jsonl, traces.jsonl and the node
//! logs. `faultline report RUN_DIR` regenerates it.

use anyhow::Context;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Ops drawn on the timeline and scatter; longer runs are sampled evenly so
/// the file stays small and opens fast.
const MAX_POINTS: usize = 20_000;
/// Log lines shown per node.
const LOG_TAIL_LINES: usize = 30;
const WIDTH: f64 = 1100.0;

/// HTML-escapes text for element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A fault period: [start, end) in ns, with a label.
struct Band {
    start: u64,
    end: u64,
    label: String,
}

fn fault_bands(history: &[Value], end_ns: u64) -> Vec<Band> {
    let mut open: Vec<(String, u64, String)> = Vec::new();
    let mut bands = Vec::new();
    let closes = |f: &str| -> Option<&'static str> {
        match f {
            "stop-partition" => Some("start-partition"),
            "resume" => Some("pause"),
            "restart" => Some("kill"),
            "stop-messages" => Some("start-messages"),
            _ => None,
        }
    };
    for e in history.iter().filter(|e| e["process"] == "nemesis") {
        let f = e["f"].as_str().unwrap_or("");
        let t = e["time"].as_u64().unwrap_or(0);
        if let Some(opener) = closes(f) {
            if let Some(i) = open.iter().position(|(o, _, _)| o == opener) {
                let (_, start, label) = open.remove(i);
                bands.push(Band {
                    start,
                    end: t,
                    label,
                });
            }
        } else {
            let label = format!("{f} {}", e["value"]);
            open.push((f.to_string(), t, label));
        }
    }
    for (_, start, label) in open {
        bands.push(Band {
            start,
            end: end_ns,
            label,
        });
    }
    bands
}

fn band_rects(bands: &[Band], x: &dyn Fn(u64) -> f64, height: f64) -> String {
    let mut s = String::new();
    for b in bands {
        let (x0, x1) = (x(b.start), x(b.end));
        let _ = write!(
            s,
            r#"<rect class="band" x="{x0:.1}" y="0" width="{:.1}" height="{height}"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            esc(&b.label)
        );
    }
    s
}

struct Op {
    process: String,
    f: String,
    key: String,
    value: String,
    kind: String,
    start: u64,
    end: Option<u64>,
    latency: Option<u64>,
    index: u64,
}

fn pair_ops(history: &[Value]) -> Vec<Op> {
    let mut open: std::collections::HashMap<String, usize> = Default::default();
    let mut ops: Vec<Op> = Vec::new();
    for e in history.iter().filter(|e| e["process"] != "nemesis") {
        let p = e["process"].to_string();
        if e["type"] == "invoke" {
            open.insert(p.clone(), ops.len());
            ops.push(Op {
                process: p,
                f: e["f"].as_str().unwrap_or("").into(),
                key: e["key"].to_string(),
                value: e["value"].to_string(),
                kind: "info".into(),
                start: e["time"].as_u64().unwrap_or(0),
                end: None,
                latency: None,
                index: e["index"].as_u64().unwrap_or(0),
            });
        } else if let Some(i) = open.remove(&p) {
            let o = &mut ops[i];
            o.kind = e["type"].as_str().unwrap_or("info").into();
            o.end = e["time"].as_u64();
            o.latency = e["latency_ns"].as_u64();
            if o.f == "read" {
                o.value = e["value"].to_string();
            }
        }
    }
    ops
}

fn table(rows: &[(String, String)]) -> String {
    let mut s = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    s + "</table>"
}

/// The anomaly's ops on per-process lanes, each an interval bar.
fn anomaly_svg(anomaly: &Value) -> String {
    let ops = anomaly["ops"].as_array().cloned().unwrap_or_default();
    if ops.is_empty() {
        return String::new();
    }
    let t0 = ops
        .iter()
        .filter_map(|o| o["invoke_time"].as_u64())
        .min()
        .unwrap_or(0);
    let t1 = ops
        .iter()
        .map(|o| {
            o["complete_time"]
                .as_u64()
                .unwrap_or(o["invoke_time"].as_u64().unwrap_or(0))
        })
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let mut lanes: Vec<String> = ops.iter().map(|o| o["process"].to_string()).collect();
    lanes.sort();
    lanes.dedup();
    let lane_h = 34.0;
    let h = lanes.len() as f64 * lane_h + 30.0;
    let x = |t: u64| 120.0 + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (WIDTH - 160.0);
    let blocked = anomaly["blocked"]["index"].as_u64();
    let mut s = format!(
        r#"<svg class="anomaly" width="{WIDTH}" height="{h}" xmlns="http://www.w3.org/2000/svg">"#
    );
    for (i, l) in lanes.iter().enumerate() {
        let y = 20.0 + i as f64 * lane_h;
        let _ = write!(
            s,
            r#"<text x="4" y="{:.0}" class="lane">process {}</text>"#,
            y + 16.0,
            esc(l.trim_matches('"'))
        );
    }
    for o in &ops {
        let lane = lanes
            .iter()
            .position(|l| *l == o["process"].to_string())
            .unwrap_or(0);
        let y = 20.0 + lane as f64 * lane_h;
        let start = o["invoke_time"].as_u64().unwrap_or(t0);
        let end = o["complete_time"].as_u64().unwrap_or(t1);
        let outcome = o["outcome"].as_str().unwrap_or("info");
        let cls = if Some(o["index"].as_u64().unwrap_or(u64::MAX)) == blocked {
            "blocked".to_string()
        } else {
            outcome.to_string()
        };
        let f = o["f"].as_str().unwrap_or("");
        let label = if f == "read" {
            format!("read → {}", o["output"])
        } else {
            format!("{f} {}", o["input"])
        };
        let (x0, x1) = (x(start), x(end));
        let _ = write!(
            s,
            r#"<rect class="op {cls}" x="{x0:.1}" y="{y:.0}" width="{:.1}" height="22"><title>#{} {}</title></rect><text x="{:.1}" y="{:.0}" class="oplabel" text-anchor="{}">#{} {}</text>"#,
            (x1 - x0).max(2.0),
            o["index"],
            esc(&label),
            // Near the right edge, the label goes to the left of the bar.
            if x0 > WIDTH - 220.0 {
                x0 - 3.0
            } else {
                x0 + 3.0
            },
            y + 15.0,
            if x0 > WIDTH - 220.0 { "end" } else { "start" },
            o["index"],
            esc(&label)
        );
    }
    s + "</svg>"
}

/// Every op as a short mark on a lane per process, coloured by outcome,
/// over shaded fault bands.
fn timeline_svg(ops: &[Op], bands: &[Band], end_ns: u64) -> String {
    let step = ops.len().div_ceil(MAX_POINTS).max(1);
    let mut procs: Vec<&str> = ops.iter().map(|o| o.process.as_str()).collect();
    procs.sort();
    procs.dedup();
    let lanes = procs.len().clamp(1, 60);
    let lane_h = (300.0 / lanes as f64).clamp(4.0, 14.0);
    let h = lanes as f64 * lane_h + 10.0;
    let x = |t: u64| t as f64 / end_ns.max(1) as f64 * WIDTH;
    let mut s = format!(
        r#"<svg class="timeline" width="{WIDTH}" height="{h:.0}" xmlns="http://www.w3.org/2000/svg">"#
    );
    s += &band_rects(bands, &x, h);
    for o in ops.iter().step_by(step) {
        let lane = procs.iter().position(|p| *p == o.process).unwrap_or(0) % lanes;
        let y = 5.0 + lane as f64 * lane_h;
        let (x0, x1) = (x(o.start), x(o.end.unwrap_or(end_ns)));
        let _ = write!(
            s,
            r#"<rect class="op {}" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><title>#{} p{} {} {} {} ({})</title></rect>"#,
            o.kind,
            (x1 - x0).max(1.0),
            (lane_h - 1.0).max(1.0),
            o.index,
            esc(o.process.trim_matches('"')),
            esc(&o.f),
            esc(&o.key),
            esc(&o.value),
            o.kind
        );
    }
    s + "</svg>"
}

fn latency_svg(ops: &[Op], bands: &[Band], end_ns: u64) -> String {
    let pts: Vec<(u64, u64, &str)> = ops
        .iter()
        .filter_map(|o| Some((o.start, o.latency?, o.kind.as_str())))
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let step = pts.len().div_ceil(MAX_POINTS).max(1);
    let max_lat = pts.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let h = 220.0;
    let x = |t: u64| t as f64 / end_ns.max(1) as f64 * WIDTH;
    // Log scale from 10 µs to the slowest op.
    let y = |l: u64| {
        let lo = 1e4f64.ln();
        let v = ((l.max(10_000)) as f64).ln();
        h - 10.0 - (v - lo) / (max_lat.ln() - lo).max(1e-9) * (h - 20.0)
    };
    let mut s = format!(
        r#"<svg class="latency" width="{WIDTH}" height="{h}" xmlns="http://www.w3.org/2000/svg">"#
    );
    s += &band_rects(bands, &x, h);
    for (t, l, k) in pts.iter().step_by(step) {
        let _ = write!(
            s,
            r#"<circle class="pt {k}" cx="{:.1}" cy="{:.1}" r="1.6"/>"#,
            x(*t),
            y(*l)
        );
    }
    // Throughput: completed ops per second as a line.
    let secs = (end_ns / 1_000_000_000 + 1) as usize;
    let mut per = vec![0u64; secs];
    for o in ops {
        if let Some(e) = o.end {
            per[((e / 1_000_000_000) as usize).min(secs - 1)] += 1;
        }
    }
    let peak = *per.iter().max().unwrap_or(&1).max(&1) as f64;
    let line: Vec<String> = per
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{:.1},{:.1}",
                x(i as u64 * 1_000_000_000 + 500_000_000),
                h - 10.0 - *c as f64 / peak * (h - 20.0)
            )
        })
        .collect();
    let _ = write!(s, r#"<polyline class="tput" points="{}"/>"#, line.join(" "));
    let _ = write!(
        s,
        r#"<text x="{:.0}" y="14" class="axis">latency up to {:.1} ms (log); line: ops/s, peak {peak}</text>"#,
        10.0,
        max_lat / 1e6
    );
    s + "</svg>"
}

fn quantiles(ops: &[Op]) -> Vec<(String, String)> {
    let mut l: Vec<u64> = ops
        .iter()
        .filter(|o| o.kind == "ok")
        .filter_map(|o| o.latency)
        .collect();
    l.sort_unstable();
    if l.is_empty() {
        return Vec::new();
    }
    let q = |p: f64| l[((l.len() - 1) as f64 * p) as usize] as f64 / 1e6;
    vec![(
        "ok latency (ms)".into(),
        format!(
            "p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        ),
    )]
}

/// Writes RUN_DIR/report.html.
pub fn write(run_dir: &Path) -> anyhow::Result<()> {
    let results: Value = std::fs::read(run_dir.join("results.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .with_context(|| {
            format!(
                "{} has no readable results.json (a run still going, or one that failed to start)",
                run_dir.display()
            )
        })?;
    let config: Value = std::fs::read(run_dir.join("test.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let history = read_lines(&run_dir.join("history.jsonl"));
    let end_ns = history
        .iter()
        .filter_map(|e| e["time"].as_u64())
        .max()
        .unwrap_or(1);
    let ops = pair_ops(&history);
    let bands = fault_bands(&history, end_ns);
    let verdict = results["verdict"].as_str().unwrap_or("unknown");
    let summary = results["summary"].as_str().unwrap_or("");

    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>faultline: {} {}</title><style>{CSS}</style></head><body>"#,
        esc(config["name"].as_str().unwrap_or("run")),
        verdict
    );
    let _ = write!(
        h,
        r#"<div id="verdict" class="banner {verdict}">{}</div><p id="summary">{}. Seed {}, {} nodes, {} s of load{}.</p>"#,
        verdict.to_uppercase(),
        esc(summary),
        config["seed"],
        config["node_count"],
        config["time_limit_s"],
        match config["nemesis"].as_array() {
            Some(n) if !n.is_empty() => format!(
                " under {}",
                esc(&n
                    .iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join(", "))
            ),
            _ => " without faults".into(),
        }
    );

    // Checkers.
    h += "<h2>Checkers</h2><table id=\"checkers\">";
    if let Some(m) = results["checkers"].as_object() {
        for (name, c) in m {
            if c.is_null() {
                continue;
            }
            let v = c["verdict"].as_str().unwrap_or("?");
            let detail = match name.as_str() {
                "linearizability" => format!(
                    "{} ops in {} partitions, {:.1} ms",
                    c["ops"],
                    c["partitions"],
                    c["elapsed_ms"].as_f64().unwrap_or(0.0)
                ),
                "raft-invariants" => format!(
                    "{} trace events, {} violations",
                    c["events"], c["violation_count"]
                ),
                "liveness" => format!(
                    "unreadable keys {} (bound {} s)",
                    c["unreadable_keys"], c["bound_s"]
                ),
                _ => String::new(),
            };
            let _ = write!(
                h,
                r#"<tr><th>{}</th><td class="{v}">{v}</td><td>{}</td></tr>"#,
                esc(name),
                esc(&detail)
            );
        }
    }
    h += "</table>";

    // The anomaly.
    let anomaly = &results["checkers"]["linearizability"]["anomaly"];
    if !anomaly.is_null() {
        let _ = write!(
            h,
            r#"<h2>The anomaly</h2><div id="anomaly"><p><b>{}</b></p><p>{}</p>{}{}</div>"#,
            esc(anomaly["summary"].as_str().unwrap_or("")),
            esc(anomaly["explanation"].as_str().unwrap_or("")),
            // Proven by the prepass: there is no search state to show.
            if anomaly["linearized_prefix"].is_null() {
                String::new()
            } else {
                format!(
                    "<p>State before: <code>{}</code>; longest linearizable prefix: {} ops.</p>",
                    esc(&anomaly["state_before"].to_string()),
                    anomaly["linearized_prefix"]
                )
            },
            anomaly_svg(anomaly)
        );
    }

    // Raft violations with their trace lines.
    let violations = results["checkers"]["raft-invariants"]["violations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !violations.is_empty() {
        let traces: Vec<String> = std::fs::read_to_string(run_dir.join("traces.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        let _ = write!(
            h,
            "<h2>Raft invariant violations</h2><p>The first {} of {}.</p><table id=\"raft\"><tr><th>invariant</th><th>what</th><th>trace lines</th></tr>",
            violations.len().min(20),
            results["checkers"]["raft-invariants"]["violation_count"]
        );
        for v in violations.iter().take(20) {
            let lines: Vec<String> = v["lines"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|l| l.as_u64())
                .map(|l| {
                    format!(
                        "{l}: {}",
                        traces.get(l as usize - 1).map(String::as_str).unwrap_or("")
                    )
                })
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                esc(v["invariant"].as_str().unwrap_or("")),
                esc(v["summary"].as_str().unwrap_or("")),
                esc(&lines.join("\n"))
            );
        }
        h += "</table>";
    }

    // Timeline, latency, throughput.
    let _ = write!(
        h,
        r#"<h2>Timeline</h2><p class="legend"><span class="ok">ok</span> <span class="fail">fail</span> <span class="info">info</span> <span class="bandkey">fault</span> — {} ops{}</p>{}"#,
        ops.len(),
        if ops.len() > MAX_POINTS {
            format!(", one in {} drawn", ops.len().div_ceil(MAX_POINTS))
        } else {
            String::new()
        },
        timeline_svg(&ops, &bands, end_ns)
    );
    let _ = write!(
        h,
        "<h2>Latency and throughput</h2>{}",
        latency_svg(&ops, &bands, end_ns)
    );
    h += &table(&quantiles(&ops));

    // Faults.
    if !bands.is_empty() {
        h += "<h2>Faults</h2><table id=\"faults\"><tr><th>from (s)</th><th>to (s)</th><th>fault</th></tr>";
        for b in &bands {
            let _ = write!(
                h,
                "<tr><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                b.start as f64 / 1e9,
                b.end as f64 / 1e9,
                esc(&b.label)
            );
        }
        h += "</table>";
    }

    // Network and availability.
    let net = &results["network"];
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(m) = net.as_object() {
        for (k, v) in m {
            if k != "samples" {
                rows.push((k.clone(), v.to_string()));
            }
        }
    }
    let invoked = results["ops"]["invoked"].as_u64().unwrap_or(0).max(1);
    rows.push((
        "node-to-node messages per op".into(),
        format!(
            "{:.1}",
            net["routed"].as_f64().unwrap_or(0.0) / invoked as f64
        ),
    ));
    rows.push((
        "availability (ok / invoked)".into(),
        format!(
            "{:.1}%",
            results["ops"]["ok"].as_f64().unwrap_or(0.0) / invoked as f64 * 100.0
        ),
    ));
    h += "<h2>Network and availability</h2>";
    h += &table(&rows);

    // Configuration.
    let mut cfg_rows: Vec<(String, String)> = Vec::new();
    if let Some(m) = config.as_object() {
        for (k, v) in m {
            if k != "schedule" {
                cfg_rows.push((k.clone(), v.to_string()));
            }
        }
    }
    h += "<h2>Configuration</h2>";
    h += &table(&cfg_rows);

    // Node logs.
    h += "<h2>Node logs</h2>";
    let mut logs: Vec<_> = std::fs::read_dir(run_dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    logs.sort();
    for p in logs {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        let _ = write!(
            h,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(&p.file_name().unwrap_or_default().to_string_lossy()),
            esc(&tail)
        );
    }
    h += "</body></html>\n";
    std::fs::write(run_dir.join("report.html"), h)
        .with_context(|| format!("writing {}", run_dir.join("report.html").display()))
}

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1160px;color:#222}
.banner{font-size:28px;font-weight:700;padding:14px 18px;border-radius:6px;color:#fff}
.banner.valid{background:#2e7d32}.banner.invalid{background:#c62828}.banner.unknown{background:#ef6c00}
h2{margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
td.valid{color:#2e7d32;font-weight:700}td.invalid{color:#c62828;font-weight:700}td.unknown{color:#ef6c00;font-weight:700}
svg{border:1px solid #eee;background:#fff;display:block;margin:8px 0}
.op.ok,.pt.ok{fill:#43a047}.op.fail,.pt.fail{fill:#9e9e9e}.op.info,.pt.info{fill:#fb8c00}.op.blocked{fill:#d32f2f}
.band{fill:#c62828;opacity:.08}.tput{fill:none;stroke:#1e88e5;stroke-width:1.5}
.lane,.oplabel,.axis{font-size:11px;fill:#333}
.legend span{padding:1px 6px;border-radius:3px;color:#fff}.legend .ok{background:#43a047}.legend .fail{background:#9e9e9e}.legend .info{background:#fb8c00}.legend .bandkey{background:#f3d6d6;color:#333}
pre{white-space:pre-wrap;font-size:12px;margin:0}
"#;
