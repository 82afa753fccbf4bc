//! What the report draws, loaded once through the typed run directory: the
//! configuration, the results, the history's events and its operations
//! (paired by the checker's own pairing), and the fault periods derived
//! from the nemesis vocabulary.

use anyhow::Context;
use faultline_checker::linearizability::Anomaly;
use faultline_checker::{history, Event, Op};
use faultline_nemesis::effect::{CrashEffect, DiskEffect};
use faultline_nemesis::Kind;
use serde::Deserialize;
use serde_json::Value;

use faultline_rundir::TestConfig;
use faultline_rundir::{Results, RunDir};

/// A fault period: [start, end) in ns, with a label (what was done) and
/// its effect (what a crash lost, what a disk fault damaged, who refused
/// to start afterwards).
pub struct Band {
    pub start: u64,
    pub end: u64,
    pub label: String,
    pub effect: String,
    pub kind: Kind,
    /// The protocol moment the fault was aimed at, if it was.
    pub moment: Option<MomentNote>,
}

/// How a fault aimed at a moment was fired.
pub struct MomentNote {
    /// By its trace event (else the clock fired it).
    pub fired_by_event: bool,
    /// `on-elect: n2 (term 4) after 130 ms` or `on-vote: by the clock (...)`.
    pub text: String,
}

impl MomentNote {
    fn from_value(v: &Value) -> Option<MomentNote> {
        let m = v.get("moment")?;
        let on = m.get("on").and_then(Value::as_str).unwrap_or("?");
        let waited = m.get("waited_ms").and_then(Value::as_u64).unwrap_or(0);
        let (fired_by_event, text) =
            match (m.get("node").and_then(Value::as_str), m.get("fallback")) {
                (Some(node), _) => {
                    let term = m.get("term").and_then(Value::as_u64);
                    let term = term.map_or(String::new(), |t| format!(" (term {t})"));
                    (true, format!("{on}: {node}{term} after {waited} ms"))
                }
                (None, why) => {
                    let why = why.and_then(Value::as_str).unwrap_or("");
                    (
                        false,
                        format!("{on}: by the clock after {waited} ms ({why})"),
                    )
                }
            };
        Some(MomentNote {
            fired_by_event,
            text,
        })
    }
}

pub struct ReportData {
    pub dir: RunDir,
    /// `None` for a test.json this version cannot read.
    pub config: Option<TestConfig>,
    pub results: Results,
    /// history.jsonl, by index (the history's indices are dense).
    pub events: Vec<Event>,
    pub ops: Vec<Op>,
    pub bands: Vec<Band>,
    pub anomaly: Option<Anomaly>,
    /// The Raft violations listed in results.json.
    pub raft_violations: Vec<faultline_checker::raft::Violation>,
    /// The last event's time.
    pub end_ns: u64,
    /// traces.jsonl ("" when the run wrote none), read once for the
    /// sections that quote or count it.
    pub traces: String,
}

impl ReportData {
    pub fn load(dir: &RunDir) -> anyhow::Result<ReportData> {
        let results = dir.load_results()?;
        let config = dir.read_config().ok();
        let lined = dir.load_history().unwrap_or_default();
        let name = dir.file(faultline_rundir::HISTORY).display().to_string();
        let ops = history::pair(&name, &lined).context("pairing history.jsonl")?;
        let events: Vec<Event> = lined.into_iter().map(|(_, e)| e).collect();
        let end_ns = events.iter().map(|e| e.time).max().unwrap_or(1);
        Ok(ReportData {
            dir: dir.clone(),
            bands: fault_bands(&events, end_ns),
            anomaly: results.anomaly().map_err(anyhow::Error::msg)?,
            raft_violations: results.raft_violations().map_err(anyhow::Error::msg)?,
            config,
            results,
            events,
            ops,
            end_ns,
            traces: dir.load_traces_text().unwrap_or_default(),
        })
    }

    /// The event at history index `i`.
    pub fn event(&self, i: u64) -> Option<&Event> {
        self.events.get(i as usize).filter(|e| e.index == i)
    }

    /// The node that answered the op completed at history index `i`: the
    /// one an adapter said served it (`served_by`, a primary after a
    /// failover), else the node the client asked.
    pub fn answered_by(&self, i: Option<u64>) -> Option<&str> {
        let extra = &self.event(i?)?.extra;
        extra.get("served_by").or(extra.get("node"))?.as_str()
    }

    pub fn node_count(&self) -> usize {
        self.config.as_ref().map_or(1, |c| c.node_count)
    }
}

/// Fault periods from the nemesis's events: a fault of a kind starts with
/// a `Start` action and ends at the next `End` action of that kind.
fn fault_bands(events: &[Event], end_ns: u64) -> Vec<Band> {
    faultline_nemesis::action::periods(events)
        .into_iter()
        .map(|p| {
            let (e, end) = (p.start, p.end);
            let effect = match end {
                Some(x) => join(&effects(&e.value), &refusals(&x.value)),
                None => effects(&e.value),
            };
            Band {
                start: e.time,
                end: end.map_or(end_ns, |x| x.time),
                label: label(&e.f, &e.value),
                effect,
                kind: p.kind,
                moment: MomentNote::from_value(&e.value),
            }
        })
        .collect()
}

/// `crash nodes=n2,n3 loss=torn`: the action and its fields, but not
/// its effects.
fn label(f: &str, value: &Value) -> String {
    let mut out = f.to_string();
    if let Value::Object(m) = value {
        for (k, v) in m.iter().filter(|(k, _)| *k != "effects" && *k != "moment") {
            let v = match v {
                Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(","),
                v => plain(v),
            };
            out += &format!(" {k}={v}");
        }
    }
    out
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, _) => b.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// Per node, what a crash dropped or what a disk fault damaged:
/// `n2 lost wal 4096 B (torn: wal)`, `n3 wal bytes [1024, 1032) flip`. A
/// record that does not read as its kind's effects says so on the band.
fn effects(value: &Value) -> String {
    let Some(list) = value.get("effects") else {
        return String::new();
    };
    let parts: Result<Vec<String>, serde_json::Error> = match value.get("fault") {
        Some(fault) => {
            let fault = plain(fault);
            Vec::<DiskEffect>::deserialize(list)
                .map(|l| l.iter().map(|e| disk_effect(e, &fault)).collect())
        }
        None => Vec::<CrashEffect>::deserialize(list).map(|l| l.iter().map(crash_effect).collect()),
    };
    match parts {
        Ok(parts) => parts.join("; "),
        Err(e) => format!("effects unreadable ({e})"),
    }
}

fn disk_effect(e: &DiskEffect, fault: &str) -> String {
    let what = match e {
        DiskEffect::Spared { spared, .. } => format!("spared ({spared})"),
        DiskEffect::NoFiles { .. } => "has no files to damage".into(),
        DiskEffect::Damaged {
            file,
            offset,
            length,
            ..
        } if fault == "truncate" => {
            format!("{file} cut to {offset} bytes (lost the last {length})")
        }
        DiskEffect::Damaged {
            file,
            offset,
            length,
            ..
        } => format!("{file} bytes [{offset}, {}) {fault}", offset + length),
    };
    format!("{} {what}", e.node())
}

fn crash_effect(e: &CrashEffect) -> String {
    let lost: Vec<String> = (e.lost.iter())
        .map(|l| format!("{} {} B", l.file, l.bytes))
        .collect();
    let mut out = match lost.is_empty() {
        true => "lost nothing".to_string(),
        false => format!("lost {}", lost.join(", ")),
    };
    for (list, what) in [
        (&e.torn, "torn"),
        (&e.undone, "undone"),
        (&e.not_undone, "kept"),
    ] {
        if !list.is_empty() {
            out += &format!(" ({what}: {})", list.join(", "));
        }
    }
    format!("{} {out}", e.node)
}

/// `refused to start: n2` from an undo's record.
fn refusals(value: &Value) -> String {
    match value.get("refused_to_start").and_then(Value::as_array) {
        Some(ids) if !ids.is_empty() => {
            let ids: Vec<String> = ids.iter().map(plain).collect();
            format!("refused to start (fail-stop): {}", ids.join(","))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history with every effect kind (a crash's lost, torn, undone and
    /// kept; a disk fault's damaged, truncated, spared and file-less
    /// nodes; a refusal to start) and one record whose effects were
    /// renamed: each band says what its typed record says, and the
    /// renamed one says it could not be read.
    #[test]
    fn every_effect_kind_is_drawn_from_its_typed_record() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../nemesis/tests/golden/effects-history.jsonl"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let bands = fault_bands(&events, 9_000_000_000);
        let effects: Vec<&str> = bands.iter().map(|b| b.effect.as_str()).collect();
        assert_eq!(
            effects,
            [
                "n1 lost wal 4096 B (torn: wal) (undone: create snap.tmp); n2 lost nothing (kept: rename x: gone); refused to start (fail-stop): n1",
                "n3 wal bytes [1024, 1032) flip; n4 has no files to damage; n1 spared (refused to start after an earlier fault)",
                "n5 snap cut to 100 bytes (lost the last 60)",
                "effects unreadable (missing field `lost`)",
            ]
        );
    }
}
