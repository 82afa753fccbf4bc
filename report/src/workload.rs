//! The workload's own section, drawn where people would rather look than
//! read: for sets, each node's last read and the elements it lost; for
//! counters, every read against the band of values the adds allowed; for
//! kafka, each key's offsets as each poll saw them, lost writes marked.

use faultline_checker::compose::names;
use faultline_checker::{CheckerResult, Op, Outcome};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::data::ReportData;
use super::esc;

/// Most points per chart: longer runs are sampled evenly.
const MAX_POINTS: usize = 3_000;
const W: f64 = 1000.0;
const H: f64 = 220.0;
/// Most kafka keys drawn.
const MAX_KEYS: usize = 6;

pub fn section(d: &ReportData) -> String {
    let find = |name: &str| d.results.checkers.iter().find(|c| c.name == name);
    let mut h = String::new();
    if let Some(c) = find(names::SET_FULL) {
        h += &sets(c);
    }
    if let Some(c) = find(names::COUNTER) {
        h += &counters(d, c);
    }
    if let Some(c) = find(names::KAFKA) {
        h += &kafka(d, c);
    }
    if let Some(c) = find(names::TRANSACTIONS) {
        h += &transactions(d, c);
    }
    h
}

/// A detail a section is drawn from (its default when the checker did
/// not write it); Err, for the page, when it is there but unreadable.
fn read<T: serde::de::DeserializeOwned + Default>(
    c: &CheckerResult,
    key: &str,
) -> Result<T, String> {
    Ok(c.detail(key)?.unwrap_or_default())
}

/// What a section shows in place of a detail it could not read.
fn unreadable(e: &str) -> String {
    format!("<p class=\"error\">{}</p>", esc(e))
}

/// Each anomaly with its explanation; the first cycle drawn as a ring of
/// its transactions with each edge's kind, and those transactions' ops.
fn transactions(d: &ReportData, c: &CheckerResult) -> String {
    let anomalies: Vec<Value> = match read(c, "anomalies") {
        Ok(a) => a,
        Err(e) => return unreadable(&e),
    };
    if anomalies.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Transactions</h2><table id=\"txn-anomalies\"><tr><th>class</th><th>transactions</th><th>why</th></tr>");
    for a in &anomalies {
        let txns: Vec<String> = a["txns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("T{t}"))
            .collect();
        let _ = write!(
            h,
            r#"<tr><td class="invalid">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(a["class"].as_str().unwrap_or("?")),
            esc(&txns.join(" ")),
            esc(a["explanation"].as_str().unwrap_or(""))
        );
    }
    h += "</table>";
    if let Some(cycle) = anomalies
        .iter()
        .find(|a| a["steps"].as_array().is_some_and(|s| !s.is_empty()))
    {
        h += &cycle_ring(cycle);
        h += &cycle_ops(d, cycle);
    }
    h
}

/// The cycle's transactions on a ring, each step an arrow labelled with
/// its kind (ww, wr, rw, process, realtime).
fn cycle_ring(a: &Value) -> String {
    let steps: Vec<&Value> = a["steps"].as_array().into_iter().flatten().collect();
    let n = steps.len().max(1) as f64;
    let (cx, cy, r) = (200.0, 150.0, 110.0);
    let at = |k: usize| {
        let angle = std::f64::consts::TAU * k as f64 / n - std::f64::consts::FRAC_PI_2;
        (cx + r * angle.cos(), cy + r * angle.sin())
    };
    let mut s = String::from(
        r##"<svg id="txn-cycle" width="400" height="300" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>"##,
    );
    for (k, step) in steps.iter().enumerate() {
        let ((x0, y0), (x1, y1)) = (at(k), at((k + 1) % steps.len()));
        let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let kind = step["kind"].as_str().unwrap_or("?");
        let class = if kind == "rw" { "edge rw" } else { "edge" };
        let _ = write!(
            s,
            r#"<line class="{class}" x1="{x0:.1}" y1="{y0:.1}" x2="{:.1}" y2="{:.1}" marker-end="url(#arr)"><title>{}</title></line><text class="axis" x="{mx:.1}" y="{my:.1}">{kind}</text>"#,
            x0 + (x1 - x0) * 0.85,
            y0 + (y1 - y0) * 0.85,
            esc(step["why"].as_str().unwrap_or(""))
        );
        let _ = write!(
            s,
            r#"<circle class="txn" cx="{x0:.1}" cy="{y0:.1}" r="16"/><text class="lane" x="{:.1}" y="{:.1}">T{}</text>"#,
            x0 - 12.0,
            y0 + 4.0,
            step["from"]
        );
    }
    s + "</svg>"
}

/// The cycle's transactions: process, when, and what they did.
fn cycle_ops(d: &ReportData, a: &Value) -> String {
    let mut h = String::from("<table id=\"txn-ops\"><tr><th>txn</th><th>process</th><th>from (s)</th><th>to (s)</th><th>micro-ops</th></tr>");
    for t in a["txns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
    {
        let Some(op) = d.ops.iter().find(|o| o.invoke_index == t) else {
            continue;
        };
        let done = if op.outcome == Outcome::Ok {
            &op.output
        } else {
            &op.input
        };
        let _ = write!(
            h,
            "<tr><td>T{t}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            esc(&op.process.to_string()),
            op.invoke_time as f64 / 1e9,
            op.returned_time
                .map_or("-".into(), |r| format!("{:.3}", r as f64 / 1e9)),
            esc(&done.to_string())
        );
    }
    h + "</table>"
}

fn sets(c: &CheckerResult) -> String {
    let finals: BTreeMap<String, (f64, usize)> = match read(c, "final_reads") {
        Ok(f) => f,
        Err(e) => return unreadable(&e),
    };
    let lost: BTreeMap<String, Vec<Value>> = match read(c, "lost") {
        Ok(l) => l,
        Err(e) => return unreadable(&e),
    };
    let mut h = String::from(
        "<h2>Set</h2><table id=\"set-nodes\"><tr><th>node</th><th>final read at (s)</th><th>elements</th><th>lost</th></tr>",
    );
    for (node, (t, n)) in &finals {
        let missing = lost.get(node).map_or(String::new(), |l| {
            l.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        });
        let class = if missing.is_empty() {
            "valid"
        } else {
            "invalid"
        };
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{t:.2}</td><td>{n}</td><td class="{class}">{}</td></tr>"#,
            esc(node),
            if missing.is_empty() {
                "none".into()
            } else {
                esc(&missing)
            }
        );
    }
    let num = |k: &str| c.details.get(k).cloned().unwrap_or(Value::Null);
    let _ = write!(
        h,
        "</table><p>{} stale read(s); each acknowledged element was in every read after {} ms (median), {} ms (max).</p>",
        num("stale_reads"),
        num("stable_latency_ms_median"),
        num("stable_latency_ms_max")
    );
    h
}

fn every_nth<T>(v: Vec<T>) -> Vec<T> {
    let step = v.len().div_ceil(MAX_POINTS).max(1);
    v.into_iter().step_by(step).collect()
}

/// Every read, and the band a read ending then could lie in (any subset
/// of the adds invoked by then), against time.
fn counters(d: &ReportData, c: &CheckerResult) -> String {
    let mut adds: Vec<(u64, i64)> = d
        .ops
        .iter()
        .filter(|o| o.f == "add" && o.outcome != Outcome::Fail)
        .filter_map(|o| o.input.as_i64().map(|v| (o.invoke_time, v)))
        .collect();
    adds.sort_unstable();
    let (mut lo, mut hi) = (vec![(0u64, 0i64)], vec![(0u64, 0i64)]);
    for &(t, v) in &adds {
        lo.push((t, lo.last().unwrap().1 + v.min(0)));
        hi.push((t, hi.last().unwrap().1 + v.max(0)));
    }
    let reads: Vec<(u64, i64, bool)> = every_nth(
        d.ops
            .iter()
            .filter(|o| o.f == "read" && o.outcome == Outcome::Ok)
            .filter_map(|o| {
                let t = o.returned_time.unwrap_or(o.invoke_time);
                let v = o.output.as_i64()?;
                let n = adds.partition_point(|(at, _)| *at <= t);
                Some((t, v, v < lo[n].1 || v > hi[n].1))
            })
            .collect(),
    );
    let (vmin, vmax) = reads
        .iter()
        .map(|r| r.1)
        .chain(lo.iter().map(|p| p.1))
        .chain(hi.iter().map(|p| p.1))
        .fold((0i64, 1i64), |(a, b), v| (a.min(v), b.max(v)));
    let end = d.end_ns.max(1) as f64;
    let x = |t: u64| 40.0 + t as f64 / end * (W - 50.0);
    let y = |v: i64| H - 20.0 - (v - vmin) as f64 / (vmax - vmin).max(1) as f64 * (H - 30.0);
    let path = |pts: &[(u64, i64)]| {
        let mut p = String::new();
        for (i, (t, v)) in every_nth(pts.to_vec()).iter().enumerate() {
            let _ = write!(
                p,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x(*t),
                y(*v)
            );
        }
        p
    };
    let mut s = format!(
        r#"<h2>Counter</h2><p>{}</p><svg id="counter" width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg"><path d="{}" class="bound"/><path d="{}" class="bound"/>"#,
        esc(&c.summary),
        path(&lo),
        path(&hi)
    );
    for (t, v, bad) in reads {
        let class = if bad { "pt bad" } else { "pt ok" };
        let _ = write!(
            s,
            r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="2"/>"#,
            x(t),
            y(v)
        );
    }
    // Each node's last read must lie in the final band.
    let bounds = (c.detail::<i64>("lower"), c.detail::<i64>("upper"));
    if let (Ok(Some(lower)), Ok(Some(upper))) = bounds {
        let _ = write!(
            s,
            r#"<rect class="finalband" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>final reads must lie in {lower}..={upper}</title></rect>"#,
            W - 60.0,
            y(upper) - 3.0,
            50.0,
            (y(lower) - y(upper)) + 6.0
        );
    }
    let bad: Vec<Value> = match read(c, "final_out_of_bounds") {
        Ok(b) => b,
        Err(e) => return s + &unreadable(&e),
    };
    for b in bad {
        let (Some(t), Some(v)) = (b["time_s"].as_f64(), b["value"].as_i64()) else {
            continue;
        };
        let _ = write!(
            s,
            r#"<circle class="pt bad" cx="{:.1}" cy="{:.1}" r="4"><title>{} ended at {v}</title></circle>"#,
            x((t * 1e9) as u64),
            y(v),
            esc(b["node"].as_str().unwrap_or("?"))
        );
    }
    let _ = write!(
        s,
        r#"<text class="axis" x="2" y="12">{vmax}</text><text class="axis" x="2" y="{}">{vmin}</text></svg><p class="legend">lines: the least and most the adds invoked so far allow; dots: reads (red: outside); the shaded box at the right: where every node's final read must lie.</p>"#,
        H - 22.0
    );
    s
}

/// Per key: each poll's returned offsets at the poll's time; acknowledged
/// sends as ticks; lost writes as red lines across.
fn kafka(d: &ReportData, c: &CheckerResult) -> String {
    let mut per_key: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for o in d
        .ops
        .iter()
        .filter(|o| o.f == "poll" && o.outcome == Outcome::Ok)
    {
        for (k, pairs) in o.output.as_object().into_iter().flatten() {
            let t = o.returned_time.unwrap_or(o.invoke_time);
            for off in pairs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.get(0)?.as_u64())
            {
                per_key.entry(k.clone()).or_default().push((t, off));
            }
        }
    }
    let lost: Vec<(String, u64)> = c
        .details
        .get("anomalies")
        .and_then(|a| a.get("lost-write"))
        .and_then(|l| l.get(1))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e.get("key")?.as_str()?.to_string(),
                e.get("offset")?.as_u64()?,
            ))
        })
        .collect();
    let mut h = format!("<h2>Kafka</h2><p>{}</p>", esc(&c.summary));
    for (key, pts) in per_key.into_iter().take(MAX_KEYS) {
        h += &kafka_key(d, &key, pts, &lost, sends_of(&d.ops, &key));
    }
    h
}

fn sends_of(ops: &[Op], key: &str) -> Vec<(u64, u64)> {
    ops.iter()
        .filter(|o| o.f == "send" && o.outcome == Outcome::Ok && o.key.as_deref() == Some(key))
        .filter_map(|o| Some((o.complete_time?, o.output.as_u64()?)))
        .collect()
}

fn kafka_key(
    d: &ReportData,
    key: &str,
    polls: Vec<(u64, u64)>,
    lost: &[(String, u64)],
    sends: Vec<(u64, u64)>,
) -> String {
    let top = polls
        .iter()
        .chain(&sends)
        .map(|p| p.1)
        .max()
        .unwrap_or(1)
        .max(1);
    let end = d.end_ns.max(1) as f64;
    let x = |t: u64| 40.0 + t as f64 / end * (W - 50.0);
    let y = |off: u64| H - 20.0 - off as f64 / top as f64 * (H - 30.0);
    let mut s = format!(
        r#"<h3>key {}</h3><svg class="kafka" width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(key)
    );
    for (_, off) in lost.iter().filter(|(k, _)| k == key) {
        let _ = write!(
            s,
            r#"<line class="lostline" x1="40" x2="{W}" y1="{0:.1}" y2="{0:.1}"><title>lost write at offset {off}</title></line>"#,
            y(*off)
        );
    }
    for (t, off) in every_nth(sends) {
        let _ = write!(
            s,
            r#"<rect class="pt info" x="{:.1}" y="{:.1}" width="2" height="2"/>"#,
            x(t),
            y(off)
        );
    }
    for (t, off) in every_nth(polls) {
        let _ = write!(
            s,
            r#"<circle class="pt ok" cx="{:.1}" cy="{:.1}" r="1.5"/>"#,
            x(t),
            y(off)
        );
    }
    let _ = write!(
        s,
        r#"<text class="axis" x="2" y="12">{top}</text><text class="axis" x="2" y="{}">0</text></svg>"#,
        H - 22.0
    );
    s
}
