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
const MAX_POINTS: usize = 8_000;
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
    let closes = |f: &str| -> &'static [&'static str] {
        match f {
            "stop-partition" => &["start-partition"],
            "resume" => &["pause"],
            "restart" => &["kill"],
            "stop-messages" => &["start-messages"],
            "reset-clock" => &["clock-bump", "clock-strobe", "clock-drift"],
            "stop-overload" => &["start-overload"],
            _ => &[],
        }
    };
    for e in history.iter().filter(|e| e["process"] == "nemesis") {
        let f = e["f"].as_str().unwrap_or("");
        let t = e["time"].as_u64().unwrap_or(0);
        let openers = closes(f);
        if !openers.is_empty() {
            while let Some(i) = open
                .iter()
                .position(|(o, _, _)| openers.contains(&o.as_str()))
            {
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
    let (t0, t1) = anomaly_span_ns(anomaly);
    let t1 = t1.max(t0 + 1);
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

/// Everything the navigable charts draw, as compact JSON for the page's
/// script: per op `[start_ms, end_ms (-1: never), lane, kind (0 ok, 1 fail,
/// 2 info), history index, f (0 read, 1 write, 2 cas), key, value]`, the
/// fault bands, and the process names per lane. About 40 bytes an op, so a
/// 100k-op run stays a few MB; the script draws at most `MAX_POINTS` marks
/// per view, so it opens fast however long the run.
fn chart_data(ops: &[Op], bands: &[Band], end_ns: u64) -> String {
    let mut procs: Vec<&str> = ops.iter().map(|o| o.process.as_str()).collect();
    procs.sort();
    procs.dedup();
    let lane_of: std::collections::HashMap<&str, usize> =
        procs.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let ms = |ns: u64| (ns as f64 / 1e5).round() / 10.0;
    let mut s = String::with_capacity(ops.len() * 44 + 4096);
    let _ = write!(
        s,
        r#"{{"end_ms":{},"max_points":{MAX_POINTS},"lanes":"#,
        ms(end_ns)
    );
    s += &serde_json::to_string(
        &procs
            .iter()
            .map(|p| p.trim_matches('"'))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    s += r#","bands":["#;
    for (i, b) in bands.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "[{},{},{}]",
            ms(b.start),
            ms(b.end),
            serde_json::to_string(&b.label).unwrap_or_else(|_| "\"\"".into())
        );
    }
    s += r#"],"ops":["#;
    for (i, o) in ops.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let kind = match o.kind.as_str() {
            "ok" => 0,
            "fail" => 1,
            _ => 2,
        };
        let f = match o.f.as_str() {
            "read" => 0,
            "write" => 1,
            _ => 2,
        };
        let _ = write!(
            s,
            "[{},{},{},{kind},{},{f},{},{}]",
            ms(o.start),
            o.end.map_or(-1.0, ms),
            lane_of.get(o.process.as_str()).copied().unwrap_or(0),
            o.index,
            o.key,
            o.value
        );
    }
    s += "]}";
    // Inside <script>: no "</" may close the element early.
    s.replace("</", "<\\/")
}

/// A Lamport diagram of node-to-node messages around the anomaly: one lane
/// per node, an arrow per message from its send to its delivery (dropped
/// and cut messages end in a cross), and the anomaly's client ops as bars
/// on the lanes of the nodes that answered them.
fn lamport_svg(run_dir: &Path, anomaly: &Value, history: &[Value], node_count: usize) -> String {
    const MAX_ARROWS: usize = 400;
    const WINDOW_NS: u64 = 120_000_000;
    let ops = anomaly["ops"].as_array().cloned().unwrap_or_default();
    let focus = &anomaly["blocked"];
    let focus = if focus.is_null() {
        ops.last().unwrap_or(focus)
    } else {
        focus
    };
    let Some(end) = focus["complete_time"]
        .as_u64()
        .or(focus["invoke_time"].as_u64())
    else {
        return String::new();
    };
    let (t0, t1) = (end.saturating_sub(WINDOW_NS), end + WINDOW_NS / 6);
    // The journal can hold millions of lines: parse only those in the
    // window, telling by the leading `{"time":N` the recorder writes.
    let journal = std::fs::read_to_string(run_dir.join("messages.jsonl")).unwrap_or_default();
    let msgs: Vec<Value> = journal
        .lines()
        .filter(|l| {
            l.strip_prefix("{\"time\":")
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_none_or(|t| t >= t0 && t <= t1)
        })
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["time"].as_u64().is_some_and(|t| t >= t0 && t <= t1))
        .collect();
    let step = msgs.len().div_ceil(MAX_ARROWS).max(1);
    let nodes: Vec<String> = (1..=node_count.max(1)).map(|i| format!("n{i}")).collect();
    let lane_h = 36.0;
    let h = nodes.len() as f64 * lane_h + 40.0;
    let x = |t: u64| 60.0 + (t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64 * (WIDTH - 80.0);
    let y = |n: &str| {
        20.0 + nodes.iter().position(|x| x == n).unwrap_or(0) as f64 * lane_h + lane_h / 2.0
    };
    let mut s = format!(
        r##"<p>Node-to-node messages from {:.3} s to {:.3} s ({} messages{}); the anomaly's ops are bars on the node that answered them.</p><svg id="lamport" class="lamport" width="{WIDTH}" height="{h}" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L6,3L0,6z" fill="#555"/></marker></defs>"##,
        t0 as f64 / 1e9,
        t1 as f64 / 1e9,
        msgs.len(),
        if step > 1 {
            format!(", one in {step} drawn")
        } else {
            String::new()
        }
    );
    for n in &nodes {
        let _ = write!(
            s,
            r#"<line class="nodelane" x1="60" x2="{:.0}" y1="{y:.1}" y2="{y:.1}"/><text x="8" y="{:.1}" class="lane">{}</text>"#,
            WIDTH - 20.0,
            y(n) + 4.0,
            esc(n),
            y = y(n)
        );
    }
    // The anomaly's ops, on the lane of the node that answered.
    let node_of = |complete_index: Option<u64>| -> Option<String> {
        let i = complete_index? as usize;
        let e = history
            .get(i)
            .filter(|e| e["index"].as_u64() == Some(i as u64))?;
        e["node"].as_str().map(String::from)
    };
    for o in &ops {
        let Some(n) = node_of(o["complete_index"].as_u64()) else {
            continue;
        };
        let a = o["invoke_time"].as_u64().unwrap_or(t0);
        let b = o["complete_time"].as_u64().unwrap_or(t1);
        if b < t0 || a > t1 {
            continue;
        }
        let (x0, x1) = (x(a), x(b));
        let f = o["f"].as_str().unwrap_or("");
        let label = if f == "read" {
            format!("read → {}", o["output"])
        } else {
            format!("{f} {}", o["input"])
        };
        let cls = if o["index"] == anomaly["blocked"]["index"] {
            "blocked"
        } else {
            "ok"
        };
        let _ = write!(
            s,
            r#"<rect class="op {cls}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="10" opacity=".8"><title>#{} {}</title></rect><text class="oplabel" x="{x0:.1}" y="{:.1}">#{} {}</text>"#,
            y(&n) - 14.0,
            (x1 - x0).max(2.0),
            o["index"],
            esc(&label),
            y(&n) - 16.0,
            o["index"],
            esc(&label)
        );
    }
    for m in msgs.iter().step_by(step) {
        let (src, dest) = (
            m["src"].as_str().unwrap_or(""),
            m["dest"].as_str().unwrap_or(""),
        );
        let t = m["time"].as_u64().unwrap_or(t0);
        let fate = m["fate"].as_str().unwrap_or("");
        let delay_ns = m["delay_us"].as_u64().unwrap_or(0) * 1000;
        let (x0, y0, y1) = (x(t), y(src), y(dest));
        let title = format!(
            "{} → {} {} at {:.3} s: {fate}",
            src,
            dest,
            m["type"].as_str().unwrap_or("?"),
            t as f64 / 1e9
        );
        match fate {
            "delivered" | "corrupted" => {
                // At least a few pixels of slope, so arrows stay visible.
                let x1 = x(t + delay_ns).max(x0 + 3.0);
                let _ = write!(
                    s,
                    r#"<line class="msg {fate}" x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" marker-end="url(#arrow)"><title>{}</title></line>"#,
                    esc(&title)
                );
            }
            _ => {
                let (xm, ym) = (x0 + 6.0, (y0 + y1) / 2.0);
                let _ = write!(
                    s,
                    r#"<g class="msg lost"><title>{}</title><line x1="{x0:.1}" y1="{y0:.1}" x2="{xm:.1}" y2="{ym:.1}"/><path d="M{:.1},{:.1}l6,6m0,-6l-6,6"/></g>"#,
                    esc(&title),
                    xm - 3.0,
                    ym - 3.0
                );
            }
        }
    }
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

/// For a failing run: which node answered the op that cannot be ordered,
/// and when, e.g. " (answered by n3 at 12.41 s)".
fn where_and_when(results: &Value, history: &[Value]) -> String {
    let blocked = &results["checkers"]["linearizability"]["anomaly"]["blocked"];
    let Some(t) = blocked["complete_time"].as_u64() else {
        return String::new();
    };
    let node = blocked["complete_index"]
        .as_u64()
        .and_then(|i| history.get(i as usize))
        .filter(|e| e["index"] == blocked["complete_index"])
        .and_then(|e| e["node"].as_str())
        .map(|n| format!("answered by {n} "))
        .unwrap_or_default();
    format!(" ({node}at {:.2} s into the run)", t as f64 / 1e9)
}

/// The anomaly's ops span in ns: first invocation to last completion (an
/// op that never completed counts at its invocation).
fn anomaly_span_ns(anomaly: &Value) -> (u64, u64) {
    let ops = anomaly["ops"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let t0 = ops
        .iter()
        .filter_map(|o| o["invoke_time"].as_u64())
        .min()
        .unwrap_or(0);
    let t1 = ops
        .iter()
        .filter_map(|o| o["complete_time"].as_u64().or(o["invoke_time"].as_u64()))
        .max()
        .unwrap_or(t0);
    (t0, t1)
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
        r#"<div id="verdict" class="banner {verdict}">{}</div><p id="summary">{}{}. Seed {}, {} nodes, {} s of load{}.</p>"#,
        verdict.to_uppercase(),
        esc(summary),
        esc(&where_and_when(&results, &history)),
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
        // The span widened a little for context, for "show on the timeline".
        let (t0, t1) = anomaly_span_ns(anomaly);
        let pad = (t1 - t0) / 4 + 50_000_000;
        let (from_ms, to_ms) = (t0.saturating_sub(pad) / 1_000_000, (t1 + pad) / 1_000_000);
        let _ = write!(
            h,
            r##"<h2>The anomaly</h2><div id="anomaly"><p><b>{}</b></p><p>{}</p>{}{}<p><a href="#timeline" class="zoomto" data-from="{}" data-to="{}">show on the timeline</a></p></div><h2>Messages around the anomaly</h2>{}"##,
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
            anomaly_svg(anomaly),
            from_ms,
            to_ms,
            lamport_svg(
                run_dir,
                anomaly,
                &history,
                config["node_count"].as_u64().unwrap_or(1) as usize
            )
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

    // Timeline, latency, throughput: drawn by the page's script from the
    // embedded data, for whatever window the reader navigates to.
    let _ = write!(
        h,
        r#"<h2>Timeline</h2><p class="legend"><span class="ok">ok</span> <span class="fail">fail</span> <span class="info">info</span> <span class="bandkey">fault</span> — {} ops. <span class="nav"><button data-nav="all">whole run</button> <button data-nav="in">zoom in</button> <button data-nav="out">zoom out</button> <button data-nav="left">◀</button> <button data-nav="right">▶</button></span> <span id="view"></span></p><div id="timeline"></div><h2>Latency and throughput</h2><div id="latency"></div>"#,
        ops.len()
    );
    h += &table(&quantiles(&ops));
    let _ = write!(
        h,
        r#"<script id="chart-data" type="application/json">{}</script><script>{SCRIPT}</script>"#,
        chart_data(&ops, &bands, end_ns)
    );

    // Faults.
    if !bands.is_empty() {
        h += "<h2>Faults</h2><table id=\"faults\"><tr><th>from (s)</th><th>to (s)</th><th>fault</th></tr>";
        for b in &bands {
            let _ = write!(
                h,
                r##"<tr><td><a href="#timeline" class="zoomto" data-from="{}" data-to="{}">{:.2}</a></td><td>{:.2}</td><td>{}</td></tr>"##,
                b.start / 1_000_000,
                b.end / 1_000_000,
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

/// Draws the timeline and the latency/throughput chart for the current
/// view, and handles navigation. Errors are caught and shown on the page
/// (and counted in `data-script-errors`), so a broken chart never hides the
/// rest of the report; `data-ready` says drawing finished.
const SCRIPT: &str = r#"
(function(){
var body=document.body,errs=0;
window.addEventListener('error',function(e){errs++;body.setAttribute('data-script-errors',String(errs));});
var D=JSON.parse(document.getElementById('chart-data').textContent);
var W=1100,ops=D.ops,view=[0,Math.max(D.end_ms,1)];
var K=['ok','fail','info'],F=['read','write','cas'];
function esc(t){return String(t).replace(/&/g,'&amp;').replace(/</g,'&lt;');}
function bands(x,h){var s='';D.bands.forEach(function(b){if(b[1]<view[0]||b[0]>view[1])return;var a=x(Math.max(b[0],view[0])),c=x(Math.min(b[1],view[1]));s+='<rect class="band" x="'+a.toFixed(1)+'" y="0" width="'+Math.max(c-a,1).toFixed(1)+'" height="'+h+'"><title>'+esc(b[2])+'</title></rect>';});return s;}
function draw(){
var v0=view[0],v1=view[1],span=Math.max(v1-v0,1e-3),x=function(t){return (t-v0)/span*W;};
var inView=[];for(var i=0;i<ops.length;i++){var o=ops[i],e=o[1]<0?D.end_ms:o[1];if(e>=v0&&o[0]<=v1)inView.push(o);}
var step=Math.max(1,Math.ceil(inView.length/D.max_points));
var lanes=Math.max(1,Math.min(D.lanes.length,60)),lh=Math.min(14,Math.max(4,300/lanes)),h=lanes*lh+10;
var p=['<svg class="timeline" width="'+W+'" height="'+h.toFixed(0)+'" xmlns="http://www.w3.org/2000/svg">',bands(x,h)];
for(var j=0;j<inView.length;j+=step){var o=inView[j],e=o[1]<0?D.end_ms:o[1],a=x(Math.max(o[0],v0)),b=x(Math.min(e,v1));
p.push('<rect class="op '+K[o[3]]+'" x="'+a.toFixed(1)+'" y="'+(5+(o[2]%lanes)*lh).toFixed(1)+'" width="'+Math.max(b-a,1).toFixed(1)+'" height="'+Math.max(lh-1,1).toFixed(1)+'"><title>#'+o[4]+' p'+esc(D.lanes[o[2]])+' '+F[o[5]]+' '+esc(JSON.stringify(o[6]))+' '+esc(JSON.stringify(o[7]))+' ('+K[o[3]]+')</title></rect>');}
p.push('</svg>');document.getElementById('timeline').innerHTML=p.join('');
var H=220,maxl=1e-3,pts=[];for(var j=0;j<inView.length;j++){var o=inView[j];if(o[1]>=0&&o[0]>=v0){var l=o[1]-o[0];pts.push(o);if(l>maxl)maxl=l;}}
var lo=Math.log(0.01),hi=Math.log(Math.max(maxl,0.02)),y=function(l){return H-10-(Math.log(Math.max(l,0.01))-lo)/(hi-lo)*(H-20);};
var q=['<svg class="latency" width="'+W+'" height="'+H+'" xmlns="http://www.w3.org/2000/svg">',bands(x,H)];
var ps=Math.max(1,Math.ceil(pts.length/D.max_points));
for(var j=0;j<pts.length;j+=ps){var o=pts[j];q.push('<circle class="pt '+K[o[3]]+'" cx="'+x(o[0]).toFixed(1)+'" cy="'+y(o[1]-o[0]).toFixed(1)+'" r="1.6"/>');}
var nb=100,per=new Array(nb).fill(0);inView.forEach(function(o){if(o[1]>=v0&&o[1]<=v1)per[Math.min(nb-1,Math.floor((o[1]-v0)/span*nb))]++;});
var peak=Math.max.apply(null,per.concat([1])),rate=peak/(span/nb/1000);
q.push('<polyline class="tput" points="'+per.map(function(c,i){return ((i+0.5)/nb*W).toFixed(1)+','+(H-10-c/peak*(H-20)).toFixed(1);}).join(' ')+'"/>');
q.push('<text x="10" y="14" class="axis">latency up to '+maxl.toFixed(1)+' ms (log scale); line: completed ops/s, peak '+rate.toFixed(0)+'</text></svg>');
document.getElementById('latency').innerHTML=q.join('');
document.getElementById('view').textContent='showing '+(v0/1000).toFixed(2)+'–'+(v1/1000).toFixed(2)+' s: '+inView.length+' ops'+(step>1?', one in '+step+' drawn':'');
}
function setView(a,b){var end=Math.max(D.end_ms,1),w=Math.min(Math.max(b-a,1),end);a=Math.max(0,Math.min(a,end-w));view=[a,a+w];draw();}
document.querySelectorAll('[data-nav]').forEach(function(btn){btn.addEventListener('click',function(){var a=view[0],b=view[1],w=b-a,m=(a+b)/2,k=btn.getAttribute('data-nav');
if(k==='all')setView(0,D.end_ms);else if(k==='in')setView(m-w/4,m+w/4);else if(k==='out')setView(m-w,m+w);else if(k==='left')setView(a-w/2,b-w/2);else setView(a+w/2,b+w/2);});});
document.querySelectorAll('.zoomto').forEach(function(el){el.addEventListener('click',function(){setView(+el.getAttribute('data-from'),+el.getAttribute('data-to'));});});
draw();
body.setAttribute('data-draw-ms',performance.now().toFixed(0));
body.setAttribute('data-ready','yes');
})();
"#;

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1160px;color:#222}
.banner{font-size:28px;font-weight:700;padding:14px 18px;border-radius:6px;color:#fff}
.banner.valid{background:#2e7d32}.banner.invalid{background:#c62828}.banner.unknown{background:#ef6c00}
h2{margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
td.valid{color:#2e7d32;font-weight:700}td.invalid{color:#c62828;font-weight:700}td.unknown{color:#ef6c00;font-weight:700}
svg{border:1px solid #eee;background:#fff;display:block;margin:8px 0}
.op.ok,.pt.ok{fill:#43a047}.op.fail,.pt.fail{fill:#9e9e9e}.op.info,.pt.info{fill:#fb8c00}.op.blocked{fill:#d32f2f}
.band{fill:#c62828;opacity:.08}.nodelane{stroke:#bbb}.msg{stroke:#555;stroke-width:1}.msg.corrupted{stroke:#ef6c00}.msg.lost line,.msg.lost path{stroke:#d32f2f;stroke-width:1.2;fill:none}
.nav button{font-size:12px}#view{color:#555;font-size:12px}.tput{fill:none;stroke:#1e88e5;stroke-width:1.5}
.lane,.oplabel,.axis{font-size:11px;fill:#333}
.legend span{padding:1px 6px;border-radius:3px;color:#fff}.legend .ok{background:#43a047}.legend .fail{background:#9e9e9e}.legend .info{background:#fb8c00}.legend .bandkey{background:#f3d6d6;color:#333}
pre{white-space:pre-wrap;font-size:12px;margin:0}
"#;
