//! The report's sections, one function each, in page order.

use faultline_checker::{Op, Outcome};
use serde_json::Value;
use std::fmt::Write as _;

use super::data::{Band, ReportData};
use super::{esc, svg};

/// Ops drawn on the timeline and scatter; longer runs are sampled evenly so
/// the file stays small and opens fast.
const MAX_POINTS: usize = 8_000;
/// Log lines shown per node.
const LOG_TAIL_LINES: usize = 30;
/// Raft violations listed.
const MAX_VIOLATIONS: usize = 20;

fn table(rows: &[(String, String)]) -> String {
    let mut s = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    s + "</table>"
}

fn verdict_str(d: &ReportData) -> &'static str {
    d.results.verdict.map_or("unknown", |v| v.as_str())
}

pub fn head(d: &ReportData) -> String {
    let name = d.config.as_ref().map_or("run", |c| c.name.as_str());
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>faultline: {} {}</title><style>{}</style></head><body>"#,
        esc(name),
        verdict_str(d),
        super::CSS
    )
}

/// For a failing run: which node answered the op that cannot be ordered,
/// and when, e.g. " (answered by n3 at 12.41 s into the run)".
fn where_and_when(d: &ReportData) -> String {
    let Some(blocked) = d.anomaly.as_ref().and_then(|a| a.blocked.as_ref()) else {
        return String::new();
    };
    let Some(t) = blocked.complete_time else {
        return String::new();
    };
    let node = d
        .answered_by(blocked.complete_index)
        .map(|n| format!("answered by {n} "))
        .unwrap_or_default();
    format!(" ({node}at {:.2} s into the run)", t as f64 / 1e9)
}

pub fn banner(d: &ReportData) -> String {
    let verdict = verdict_str(d);
    let setup = match &d.config {
        Some(c) => {
            let faults = if c.nemesis.is_empty() {
                " without faults".to_string()
            } else {
                let names: Vec<String> = c.nemesis.iter().map(|s| s.to_string()).collect();
                format!(" under {}", esc(&names.join(", ")))
            };
            format!(
                " Seed {}, {} nodes, {} s of load{faults}.",
                c.seed, c.node_count, c.time_limit_s
            )
        }
        None => String::new(),
    };
    format!(
        r#"<div id="verdict" class="banner {verdict}">{}</div><p id="summary">{}{}.{setup}</p>"#,
        verdict.to_uppercase(),
        esc(&d.results.summary),
        esc(&where_and_when(d)),
    )
}

pub fn checkers(d: &ReportData) -> String {
    let mut h = String::from("<h2>Checkers</h2><table id=\"checkers\">");
    for c in &d.results.checkers {
        let v = c.verdict.as_str();
        let _ = write!(
            h,
            r#"<tr><th>{}</th><td class="{v}">{v}</td><td>{}</td></tr>"#,
            esc(&c.name),
            esc(&c.summary)
        );
    }
    h + "</table>"
}

pub fn anomaly(d: &ReportData) -> String {
    let Some(a) = &d.anomaly else {
        return String::new();
    };
    // The span widened a little for context, for "show on the timeline".
    let (t0, t1) = a.span_ns();
    let pad = (t1 - t0) / 4 + 50_000_000;
    let (from_ms, to_ms) = (t0.saturating_sub(pad) / 1_000_000, (t1 + pad) / 1_000_000);
    // Proven by the prepass: there is no search state to show.
    let search = match (&a.linearized_prefix, &a.state_before) {
        (Some(prefix), state) => format!(
            "<p>State before: <code>{}</code>; longest linearizable prefix: {prefix} ops.</p>",
            esc(&serde_json::to_string(state).unwrap_or_default())
        ),
        (None, _) => String::new(),
    };
    format!(
        r##"<h2>The anomaly</h2><div id="anomaly"><p><b>{}</b> ({})</p><p>{}</p>{search}{}<p><a href="#timeline" class="zoomto" data-from="{from_ms}" data-to="{to_ms}">show on the timeline</a></p></div><h2>Messages around the anomaly</h2>{}"##,
        esc(&a.summary),
        esc(&a.kind),
        esc(&a.explanation),
        svg::anomaly(d, a),
        svg::lamport(d, a)
    )
}

pub fn raft(d: &ReportData) -> String {
    let violations = &d.raft_violations;
    if violations.is_empty() {
        return String::new();
    }
    let traces: Vec<&str> = d.traces.lines().collect();
    let count = d
        .results
        .checker(faultline_checker::compose::names::RAFT_INVARIANTS)
        .and_then(|c| c.detail::<u64>("violation_count").ok().flatten())
        .unwrap_or(violations.len() as u64);
    let mut h = format!(
        "<h2>Raft invariant violations</h2><p>The first {} of {count}.</p><table id=\"raft\"><tr><th>invariant</th><th>what</th><th>trace lines</th></tr>",
        violations.len().min(MAX_VIOLATIONS),
    );
    for v in violations.iter().take(MAX_VIOLATIONS) {
        let lines: Vec<String> = v
            .lines
            .iter()
            .map(|&l| {
                format!(
                    "{l}: {}",
                    l.checked_sub(1).and_then(|i| traces.get(i)).unwrap_or(&"")
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            esc(&v.invariant),
            esc(&v.summary),
            esc(&lines.join("\n"))
        );
    }
    h + "</table>"
}

/// Latency quantiles of the ok ops.
fn quantiles(ops: &[Op]) -> Vec<(String, String)> {
    let mut l: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| Some(o.returned_time? - o.invoke_time))
        .collect();
    l.sort_unstable();
    if l.is_empty() {
        return Vec::new();
    }
    let q = |p: f64| l[((l.len() - 1) as f64 * p) as usize] as f64 / 1e6;
    let text = format!(
        "p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    vec![("ok latency (ms)".into(), text)]
}

/// Timeline, latency and throughput: drawn by the page's script from the
/// embedded data, for whatever window the reader navigates to.
pub fn timeline(d: &ReportData) -> String {
    let mut h = format!(
        r#"<h2>Timeline</h2><p class="legend"><span class="ok">ok</span> <span class="fail">fail</span> <span class="info">info</span> <span class="bandkey">fault</span> — {} ops. <span class="nav"><button data-nav="all">whole run</button> <button data-nav="in">zoom in</button> <button data-nav="out">zoom out</button> <button data-nav="left">◀</button> <button data-nav="right">▶</button></span> <span id="view"></span></p><div id="timeline"></div><h2>Latency and throughput</h2><div id="latency"></div>"#,
        d.ops.len()
    );
    h += &table(&quantiles(&d.ops));
    let _ = write!(
        h,
        r#"<script id="chart-data" type="application/json">{}</script><script>{}</script>"#,
        chart_data(d),
        super::SCRIPT
    );
    h
}

/// Everything the navigable charts draw, as compact JSON for the page's
/// script: per op `[start_ms, end_ms (-1: never), lane, kind (0 ok, 1 fail,
/// 2 info), history index, f (an index into `fs`), key, value]`, the fault
/// bands, the process names per lane and the workload's op names. About 40 bytes an op, so a
/// 100k-op run stays a few MB; the script draws at most `MAX_POINTS` marks
/// per view, so it opens fast however long the run.
fn chart_data(d: &ReportData) -> String {
    let mut procs: Vec<String> = d.ops.iter().map(|o| o.process.to_string()).collect();
    procs.sort();
    procs.dedup();
    let lane_of: std::collections::HashMap<&str, usize> = procs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let mut fs: Vec<&str> = d.ops.iter().map(|o| o.f.as_str()).collect();
    fs.sort_unstable();
    fs.dedup();
    let ms = |ns: u64| (ns as f64 / 1e5).round() / 10.0;
    let mut s = String::with_capacity(d.ops.len() * 44 + 4096);
    let _ = write!(
        s,
        r#"{{"end_ms":{},"max_points":{MAX_POINTS},"lanes":{},"fs":{}"#,
        ms(d.end_ns),
        json(&procs),
        json(&fs)
    );
    s += r#","bands":["#;
    for (i, b) in d.bands.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let title = join_effect(&b.label, &b.effect);
        let _ = write!(s, "{sep}[{},{},{}]", ms(b.start), ms(b.end), json(&title));
    }
    s += r#"],"ops":["#;
    for (i, o) in d.ops.iter().enumerate() {
        let kind = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        };
        let f = fs.binary_search(&o.f.as_str()).unwrap_or(0);
        let key = d
            .event(o.invoke_index)
            .and_then(|e| e.key.clone())
            .unwrap_or_default();
        // What came back when something did (a read's value), else what
        // was asked.
        let value = if o.output.is_null() {
            &o.input
        } else {
            &o.output
        };
        let lane = lane_of
            .get(o.process.to_string().as_str())
            .copied()
            .unwrap_or(0);
        let sep = if i > 0 { "," } else { "" };
        let end = o.returned_time.map_or(-1.0, ms);
        let _ = write!(
            s,
            "{sep}[{},{end},{lane},{kind},{},{f},{key},{value}]",
            ms(o.invoke_time),
            o.invoke_index
        );
    }
    s += "]}";
    // Inside <script>: no "</" may close the element early.
    s.replace("</", "<\\/")
}

/// A band's tooltip on the timeline: the fault and, below, its effect.
fn join_effect(label: &str, effect: &str) -> String {
    if effect.is_empty() {
        label.to_string()
    } else {
        format!("{label}\n{effect}")
    }
}

/// JSON text of a value, for the chart data.
fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Membership over time (the membership nemesis): each change, what the
/// system answered, the members as the harness has them and as the system
/// reports them.
pub fn membership(d: &ReportData) -> String {
    let changes: Vec<&faultline_checker::Event> = d
        .events
        .iter()
        .filter(|e| {
            e.process == faultline_checker::Process::Named("nemesis".into())
                && faultline_nemesis::lookup(&e.f)
                    .is_some_and(|(k, _)| k == faultline_nemesis::Kind::Membership)
        })
        .collect();
    if changes.is_empty() {
        return String::new();
    }
    let names = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                let n: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                n.join(" ")
            })
            .unwrap_or_else(|| "?".into())
    };
    let mut h = String::from("<h2>Membership</h2><table id=\"membership\"><tr><th>at (s)</th><th>change</th><th>answer</th><th>members (harness)</th><th>voters (reported)</th></tr>");
    for e in changes {
        let v = &e.value;
        let mut change = v.clone();
        for k in ["members", "reported", "agree"] {
            if let Some(o) = change.as_object_mut() {
                o.remove(k);
            }
        }
        let answer = v.get("answer").map(|a| a.to_string()).unwrap_or_default();
        let reported = &v["reported"];
        let mut voters = names(&reported["voters"]);
        if reported["old"].is_array() {
            voters += &format!(" (joint with {})", names(&reported["old"]));
        }
        let _ = write!(
            h,
            "<tr><td>{:.2}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.time as f64 / 1e9,
            esc(&e.f),
            esc(&change.to_string()),
            esc(&answer),
            esc(&names(&v["members"])),
            esc(&voters)
        );
    }
    h + "</table>"
}

pub fn faults(bands: &[Band]) -> String {
    if bands.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Faults</h2><table id=\"faults\"><tr><th>from (s)</th><th>to (s)</th><th>fault</th><th>aimed at</th><th>effect</th></tr>");
    for b in bands {
        let moment = b.moment.as_ref().map_or("", |m| m.text.as_str());
        let _ = write!(
            h,
            r##"<tr><td><a href="#timeline" class="zoomto" data-from="{}" data-to="{}">{:.2}</a></td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>"##,
            b.start / 1_000_000,
            b.end / 1_000_000,
            b.start as f64 / 1e9,
            b.end as f64 / 1e9,
            esc(&b.label),
            esc(moment),
            esc(&b.effect)
        );
    }
    h + "</table>"
}

pub fn network(d: &ReportData) -> String {
    let r = &d.results;
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&r.network) {
        rows.extend(
            m.into_iter()
                .filter(|(k, _)| k != "samples")
                .map(|(k, v)| (k, v.to_string())),
        );
    }
    let invoked = r.ops.invoked.max(1) as f64;
    rows.push((
        "node-to-node messages per op".into(),
        format!("{:.1}", r.network.routed as f64 / invoked),
    ));
    rows.push((
        "availability (ok / invoked)".into(),
        format!("{:.1}%", r.ops.ok as f64 / invoked * 100.0),
    ));
    format!(
        "<h2>Network and availability</h2>{}{}",
        table(&rows),
        tcp_links(d)
    )
}

/// A real server's directed links through the proxies.
fn tcp_links(d: &ReportData) -> String {
    if d.results.links.is_empty() {
        return String::new();
    }
    let mut h = String::from("<table id=\"links\"><tr><th>link</th><th>connections</th><th>bytes</th><th>chunks</th><th>corrupted</th><th>resets</th></tr>");
    for l in &d.results.links {
        let _ = write!(
            h,
            "<tr><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.from),
            esc(&l.to),
            l.connections,
            l.bytes,
            l.chunks,
            l.corrupted,
            l.resets
        );
    }
    h + "</table>"
}

pub fn configuration(d: &ReportData) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(Ok(serde_json::Value::Object(m))) = d.config.as_ref().map(serde_json::to_value) {
        rows.extend(
            m.into_iter()
                .filter(|(k, _)| k != "schedule")
                .map(|(k, v)| (k, v.to_string())),
        );
    }
    format!("<h2>Configuration</h2>{}", table(&rows))
}

pub fn logs(d: &ReportData) -> String {
    let mut h = String::from("<h2>Node logs</h2>");
    let mut logs: Vec<_> = std::fs::read_dir(d.dir.nodes_dir())
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
    h
}

/// Which faults met which protocol states (counted from the traces), and
/// which pairs never met: what the run did and did not exercise.
pub fn coverage(d: &ReportData) -> String {
    use super::coverage::{compute, PROBE_SEES, STATES};
    if d.bands.is_empty() {
        return String::new();
    }
    let traces: Vec<faultline_rundir::TraceLine> = d
        .traces
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let c = compute(&d.bands, &traces);
    let mut h = String::from("<h2>Coverage</h2>");
    if !c.traced {
        h += "<p>The nodes emitted no trace events: which protocol states the faults met is unknown, and faults aimed at protocol moments fired by the clock.</p>";
    }
    // Which states this run could see at all.
    let seeable = |i: usize| c.traced && (!c.probed_only || i == PROBE_SEES);
    if c.probed_only {
        let unseen: Vec<&str> = (0..STATES.len())
            .filter(|&i| !seeable(i))
            .map(|i| STATES[i])
            .collect();
        let _ = write!(
            h,
            "<p>Only the system file's leader probe reported on the nodes: {} can be seen; {} cannot, so faults aimed at them fired by the clock.</p>",
            esc(STATES[PROBE_SEES]),
            esc(&unseen.join(", "))
        );
    }
    h += "<table id=\"coverage\"><tr><th>fault</th><th>count</th><th>aimed at a moment (fired by it)</th>";
    for (s, n) in STATES.iter().zip(c.occurred) {
        let _ = write!(h, "<th>met {} <small>({n} in the run)</small></th>", esc(s));
    }
    h += "</tr>";
    let mut never = Vec::new();
    for r in &c.rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td>",
            r.kind, r.faults, r.aimed, r.fired_by_event
        );
        for (i, met) in r.met.iter().enumerate() {
            let class = if *met == 0 { " class=\"never\"" } else { "" };
            let _ = write!(h, "<td{class}>{met}</td>");
            if *met == 0 && seeable(i) && c.occurred[i] > 0 {
                never.push(format!("{} × {}", r.kind, STATES[i]));
            }
        }
        h += "</tr>";
    }
    h += "</table>";
    let absent: Vec<&str> = STATES
        .iter()
        .zip(c.occurred)
        .enumerate()
        .filter(|&(i, (_, n))| n == 0 && seeable(i))
        .map(|(_, (s, _))| *s)
        .collect();
    if !absent.is_empty() {
        let _ = write!(
            h,
            "<p>Never happened in this run, so no fault met it: {}.</p>",
            esc(&absent.join(", "))
        );
    }
    if !never.is_empty() {
        let _ = write!(h, "<p>Never exercised: {}.</p>", esc(&never.join(", ")));
    }
    h
}
