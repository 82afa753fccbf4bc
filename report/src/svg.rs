//! The report's drawings that are made on the server side: the anomaly on
//! per-process lanes, and a Lamport diagram of the node-to-node messages
//! around it.

use faultline_checker::linearizability::{Anomaly, OpView};
use faultline_checker::Outcome;
use std::fmt::Write as _;

use super::data::ReportData;
use super::esc;
use faultline_rundir::JournalEntry;

pub const WIDTH: f64 = 1100.0;
/// Most message arrows in the Lamport diagram; more are sampled.
const MAX_ARROWS: usize = 400;
/// How far before the anomaly's end the Lamport diagram reaches.
const WINDOW_NS: u64 = 120_000_000;

/// `read → 7` (what came back, when it differs from what was asked) or
/// `cas [1,2]`.
fn op_label(o: &OpView) -> String {
    if o.output.is_null() || o.output == o.input {
        format!("{} {}", o.f, o.input)
    } else {
        format!("{} → {}", o.f, o.output)
    }
}

fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
    }
}

/// The anomaly's ops on per-process lanes, each an interval bar; the op
/// that cannot follow in red.
pub fn anomaly(data: &ReportData, anomaly: &Anomaly) -> String {
    let ops: Vec<&OpView> = anomaly.ops.iter().collect();
    if ops.is_empty() {
        return String::new();
    }
    let (t0, t1) = anomaly.span_ns();
    let t1 = t1.max(t0 + 1);
    let mut lanes: Vec<&str> = ops.iter().map(|o| o.process.as_str()).collect();
    lanes.sort();
    lanes.dedup();
    let lane_h = 34.0;
    let h = lanes.len() as f64 * lane_h + 30.0;
    let x = |t: u64| 120.0 + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (WIDTH - 160.0);
    let blocked = anomaly.blocked.as_ref().map(|b| b.index);
    let mut s = format!(
        r#"<svg class="anomaly" width="{WIDTH}" height="{h}" xmlns="http://www.w3.org/2000/svg">"#
    );
    for (i, l) in lanes.iter().enumerate() {
        let y = 20.0 + i as f64 * lane_h;
        let _ = write!(
            s,
            r#"<text x="4" y="{:.0}" class="lane">process {}</text>"#,
            y + 16.0,
            esc(l)
        );
    }
    for o in ops {
        let lane = lanes.iter().position(|l| *l == o.process).unwrap_or(0);
        let y = 20.0 + lane as f64 * lane_h;
        let cls = if Some(o.index) == blocked {
            "blocked"
        } else {
            outcome_class(o.outcome)
        };
        let (x0, x1) = (x(o.invoke_time), x(o.complete_time.unwrap_or(t1)));
        let label = esc(&op_label(o));
        // Which node answered: the one the adapter named, or the one asked.
        let by = data
            .answered_by(o.complete_index)
            .map(|n| format!(" (answered by {})", esc(n)))
            .unwrap_or_default();
        // Near the right edge, the label goes to the left of the bar.
        let (lx, anchor) = if x0 > WIDTH - 220.0 {
            (x0 - 3.0, "end")
        } else {
            (x0 + 3.0, "start")
        };
        let _ = write!(
            s,
            r#"<rect class="op {cls}" x="{x0:.1}" y="{y:.0}" width="{:.1}" height="22"><title>#{} {label}{by}</title></rect><text x="{lx:.1}" y="{:.0}" class="oplabel" text-anchor="{anchor}">#{} {label}</text>"#,
            (x1 - x0).max(2.0),
            o.index,
            y + 15.0,
            o.index,
        );
    }
    s + "</svg>"
}

/// A Lamport diagram of node-to-node messages around the anomaly: one lane
/// per node, an arrow per message from its send to its delivery (dropped
/// and cut messages end in a cross), and the anomaly's client ops as bars
/// on the lanes of the nodes that answered them.
pub fn lamport(data: &ReportData, anomaly: &Anomaly) -> String {
    let Some(focus) = anomaly.blocked.as_ref().or(anomaly.ops.last()) else {
        return String::new();
    };
    let end = focus.complete_time.unwrap_or(focus.invoke_time);
    let (t0, t1) = (end.saturating_sub(WINDOW_NS), end + WINDOW_NS / 6);
    let msgs = data.dir.load_journal_window(t0, t1);
    let step = msgs.len().div_ceil(MAX_ARROWS).max(1);
    let nodes: Vec<String> = match &data.config {
        Some(cfg) => cfg.node_ids(),
        None => (1..=data.node_count().max(1))
            .map(|i| format!("n{i}"))
            .collect(),
    };
    let lane_h = 36.0;
    let h = nodes.len() as f64 * lane_h + 40.0;
    let frame = Frame {
        t0,
        t1,
        nodes: &nodes,
        lane_h,
    };
    let sampled = if step > 1 {
        format!(", one in {step} drawn")
    } else {
        String::new()
    };
    let mut s = format!(
        r##"<p>Node-to-node messages from {:.3} s to {:.3} s ({} messages{sampled}); the anomaly's ops are bars on the node that answered them.</p><svg id="lamport" class="lamport" width="{WIDTH}" height="{h}" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L6,3L0,6z" fill="#555"/></marker></defs>"##,
        t0 as f64 / 1e9,
        t1 as f64 / 1e9,
        msgs.len(),
    );
    for n in &nodes {
        let y = frame.y(n);
        let _ = write!(
            s,
            r#"<line class="nodelane" x1="60" x2="{:.0}" y1="{y:.1}" y2="{y:.1}"/><text x="8" y="{:.1}" class="lane">{}</text>"#,
            WIDTH - 20.0,
            y + 4.0,
            esc(n),
        );
    }
    for o in &anomaly.ops {
        if let Some(n) = data.answered_by(o.complete_index) {
            s += &frame.op_bar(o, n, anomaly);
        }
    }
    for m in msgs.iter().step_by(step) {
        s += &frame.arrow(m);
    }
    s + "</svg>"
}

/// The Lamport diagram's coordinates.
struct Frame<'a> {
    t0: u64,
    t1: u64,
    nodes: &'a [String],
    lane_h: f64,
}

impl Frame<'_> {
    fn x(&self, t: u64) -> f64 {
        60.0 + (t.clamp(self.t0, self.t1) - self.t0) as f64 / (self.t1 - self.t0) as f64
            * (WIDTH - 80.0)
    }

    fn y(&self, node: &str) -> f64 {
        let lane = self.nodes.iter().position(|x| x == node).unwrap_or(0);
        20.0 + lane as f64 * self.lane_h + self.lane_h / 2.0
    }

    /// An op of the anomaly on the lane of the node that answered it.
    fn op_bar(&self, o: &OpView, node: &str, anomaly: &Anomaly) -> String {
        let (a, b) = (o.invoke_time, o.complete_time.unwrap_or(self.t1));
        if b < self.t0 || a > self.t1 {
            return String::new();
        }
        let (x0, x1, y) = (self.x(a), self.x(b), self.y(node));
        let cls = if anomaly
            .blocked
            .as_ref()
            .is_some_and(|bl| bl.index == o.index)
        {
            "blocked"
        } else {
            "ok"
        };
        let label = esc(&op_label(o));
        format!(
            r#"<rect class="op {cls}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="10" opacity=".8"><title>#{} {label}</title></rect><text class="oplabel" x="{x0:.1}" y="{:.1}">#{} {label}</text>"#,
            y - 14.0,
            (x1 - x0).max(2.0),
            o.index,
            y - 16.0,
            o.index,
        )
    }

    /// A delivered message as an arrow, a lost one as a short line ending
    /// in a cross.
    fn arrow(&self, m: &JournalEntry) -> String {
        let (x0, y0, y1) = (self.x(m.time), self.y(&m.src), self.y(&m.dest));
        let title = esc(&format!(
            "{} → {} {} at {:.3} s: {}",
            m.src,
            m.dest,
            m.ty.as_deref().unwrap_or("?"),
            m.time as f64 / 1e9,
            m.fate
        ));
        if m.fate == "delivered" || m.fate == "corrupted" {
            // At least a few pixels of slope, so arrows stay visible.
            let x1 = self.x(m.time + m.delay_us * 1000).max(x0 + 3.0);
            return format!(
                r#"<line class="msg {}" x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" marker-end="url(#arrow)"><title>{title}</title></line>"#,
                m.fate
            );
        }
        let (xm, ym) = (x0 + 6.0, (y0 + y1) / 2.0);
        format!(
            r#"<g class="msg lost"><title>{title}</title><line x1="{x0:.1}" y1="{y0:.1}" x2="{xm:.1}" y2="{ym:.1}"/><path d="M{:.1},{:.1}l6,6m0,-6l-6,6"/></g>"#,
            xm - 3.0,
            ym - 3.0
        )
    }
}
