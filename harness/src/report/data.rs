//! What the report draws, loaded once through the typed run directory: the
//! configuration, the results, the history's events and its operations
//! (paired by the checker's own pairing), and the fault periods derived
//! from the nemesis vocabulary.

use anyhow::Context;
use faultline_checker::linearizability::Anomaly;
use faultline_checker::{history, Event, Op, Process};
use faultline_nemesis::{lookup, Kind, Phase};

use crate::options::TestConfig;
use crate::rundir::{Results, RunDir};

/// A fault period: [start, end) in ns, with a label.
pub struct Band {
    pub start: u64,
    pub end: u64,
    pub label: String,
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
    /// The last event's time.
    pub end_ns: u64,
}

impl ReportData {
    pub fn load(dir: &RunDir) -> anyhow::Result<ReportData> {
        let results = dir.load_results()?;
        let config = dir.load_config().ok();
        let lined = dir.load_history().unwrap_or_default();
        let name = dir.file(crate::rundir::HISTORY).display().to_string();
        let ops = history::pair(&name, &lined).context("pairing history.jsonl")?;
        let events: Vec<Event> = lined.into_iter().map(|(_, e)| e).collect();
        let end_ns = events.iter().map(|e| e.time).max().unwrap_or(1);
        Ok(ReportData {
            dir: dir.clone(),
            bands: fault_bands(&events, end_ns),
            anomaly: results.anomaly(),
            config,
            results,
            events,
            ops,
            end_ns,
        })
    }

    /// The event at history index `i`.
    pub fn event(&self, i: u64) -> Option<&Event> {
        self.events.get(i as usize).filter(|e| e.index == i)
    }

    /// The node that answered the op completed at history index `i`.
    pub fn answered_by(&self, i: Option<u64>) -> Option<&str> {
        self.event(i?)?.extra.get("node")?.as_str()
    }

    pub fn node_count(&self) -> usize {
        self.config.as_ref().map_or(1, |c| c.node_count)
    }
}

/// Fault periods from the nemesis's events: a fault of a kind starts with
/// a `Start` action and ends at the next `End` action of that kind.
fn fault_bands(events: &[Event], end_ns: u64) -> Vec<Band> {
    let mut open: Vec<(Kind, u64, String)> = Vec::new();
    let mut bands = Vec::new();
    let nemesis = Process::Named("nemesis".into());
    for e in events.iter().filter(|e| e.process == nemesis) {
        match lookup(&e.f) {
            Some((kind, Phase::Start)) => open.push((kind, e.time, format!("{} {}", e.f, e.value))),
            Some((kind, Phase::End)) => {
                while let Some(i) = open.iter().position(|(k, _, _)| *k == kind) {
                    let (_, start, label) = open.remove(i);
                    bands.push(Band {
                        start,
                        end: e.time,
                        label,
                    });
                }
            }
            None => {}
        }
    }
    bands.extend(open.into_iter().map(|(_, start, label)| Band {
        start,
        end: end_ns,
        label,
    }));
    bands
}
