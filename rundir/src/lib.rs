//! A run directory (docs/report.md, "What a run writes"), typed: results/<test-name>/<timestamp>/ and
//! the results/latest link, and every file in it as a serde type with
//! `load` and `store`. The run writes through it; `check`, `report`,
//! `suite` and `serve` read through it. Facts derived from a run (its
//! verdict, exit code, when its anomaly was complete) are methods here,
//! computed in one place.
//!
//! The crate depends on nothing that runs (no processes, no network): it
//! is the contract between a run and its readers. `config` is test.json,
//! `stats` the figures results.json carries, `record` the writer a run
//! records history, traces and messages through.

pub mod config;
pub mod record;
pub mod stats;

use anyhow::Context;
use faultline_checker::compose::names;
use faultline_checker::linearizability::Anomaly;
use faultline_checker::raft::Violation;
use faultline_checker::{CheckerResult, Event, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::TestConfig;
pub use stats::{ExitInfo, NetStats};

/// Exit codes (docs/protocol.md) beyond a verdict's 0, 1 and 2.
pub const EXIT_USAGE: u8 = 254;
pub const EXIT_HARNESS: u8 = 255;

pub const CONFIG: &str = "test.json";
pub const HISTORY: &str = "history.jsonl";
pub const TRACES: &str = "traces.jsonl";
pub const JOURNAL: &str = "messages.jsonl";
pub const RESULTS: &str = "results.json";
pub const REPORT: &str = "report.html";

/// One run's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

/// `20261122T214500.123Z`, UTC, sortable.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not readable JSON of its kind", path.display()))
}

fn write_json(path: &Path, v: &impl Serialize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(v).context("serializing")?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

impl RunDir {
    /// Creates a fresh run directory with its nodes/ folder under
    /// `root/name`, and points `root/latest` at it. Two runs started in
    /// the same millisecond get distinct directories.
    pub fn create(root: &Path, name: &str) -> anyhow::Result<RunDir> {
        let base = root.join(name);
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let stamp = timestamp(SystemTime::now());
        for attempt in 0..1000 {
            let path = match attempt {
                0 => base.join(&stamp),
                n => base.join(format!("{stamp}-{n}")),
            };
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let dir = RunDir { path };
                    let nodes = dir.nodes_dir();
                    std::fs::create_dir(&nodes)
                        .with_context(|| format!("creating {}", nodes.display()))?;
                    // A stale `latest` does not make the run unusable: say so.
                    if let Err(e) = dir.update_latest(root) {
                        eprintln!("faultline: warning: {e:#}");
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        anyhow::bail!(
            "could not create a unique run directory under {}",
            base.display()
        )
    }

    /// Points root/latest at this run (relative link, replaced atomically).
    fn update_latest(&self, root: &Path) -> anyhow::Result<()> {
        let rel = self.path.strip_prefix(root).unwrap_or(&self.path);
        // Unique per call: a suite's workers create runs at the same time.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = root.join(format!(".latest-{}-{call}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(rel, &tmp)
            .and_then(|()| std::fs::rename(&tmp, root.join("latest")))
            .with_context(|| format!("pointing {} at the new run", root.join("latest").display()))
    }

    /// An existing run directory (nothing is read yet).
    pub fn open(path: &Path) -> RunDir {
        RunDir {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn nodes_dir(&self) -> PathBuf {
        self.path.join("nodes")
    }

    pub fn node_log(&self, id: &str) -> PathBuf {
        self.nodes_dir().join(format!("{id}.log"))
    }

    /// The log of a process a node runs beside its server.
    pub fn process_log(&self, id: &str, process: &str) -> PathBuf {
        self.nodes_dir().join(format!("{id}.{process}.log"))
    }

    pub fn store_config(&self, cfg: &TestConfig) -> anyhow::Result<()> {
        write_json(&self.file(CONFIG), cfg)
    }

    /// test.json as written; the harness checks it as the command line's
    /// options are (`faultline::options::load_config`).
    pub fn read_config(&self) -> anyhow::Result<TestConfig> {
        read_json(&self.file(CONFIG))
            .with_context(|| format!("{} is not a faultline run", self.path.display()))
    }

    pub fn store_results(&self, r: &Results) -> anyhow::Result<()> {
        write_json(&self.file(RESULTS), r)
    }

    pub fn load_results(&self) -> anyhow::Result<Results> {
        read_json(&self.file(RESULTS)).with_context(|| {
            format!(
                "{} has no readable results.json (a run still going, or one that failed to start)",
                self.path.display()
            )
        })
    }

    /// history.jsonl as the checker reads it, each event with its line.
    pub fn load_history(&self) -> anyhow::Result<Vec<(usize, Event)>> {
        let path = self.file(HISTORY);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let name = path.display().to_string();
        Ok(faultline_checker::formats::parse(
            &name,
            &text,
            faultline_checker::Format::Jsonl,
        )?)
    }

    /// traces.jsonl's text ("" when the run wrote none).
    pub fn load_traces_text(&self) -> anyhow::Result<String> {
        let path = self.file(TRACES);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Journal entries sent between `t0` and `t1` ns. The journal can hold
    /// millions of lines: only those in the window are parsed, told by the
    /// leading `{"time":N` the recorder writes.
    pub fn load_journal_window(&self, t0: u64, t1: u64) -> Vec<JournalEntry> {
        let text = std::fs::read_to_string(self.file(JOURNAL)).unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.strip_prefix("{\"time\":")
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_none_or(|t| t >= t0 && t <= t1)
            })
            .filter_map(|l| serde_json::from_str::<JournalEntry>(l).ok())
            .filter(|m| m.time >= t0 && m.time <= t1)
            .collect()
    }
}

/// One line of traces.jsonl: a node's trace event (or the harness's
/// `start` / `exit` of a node), timestamped by the recorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceLine {
    pub time: u64,
    pub node: String,
    /// The event's own fields (`event`, `term`, ...).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// One line of messages.jsonl: a routed message and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub time: u64,
    pub src: String,
    pub dest: String,
    #[serde(rename = "type", default)]
    pub ty: Option<String>,
    #[serde(default)]
    pub msg_id: Option<Value>,
    #[serde(default)]
    pub in_reply_to: Option<Value>,
    /// delivered, corrupted, dropped, cut, held, overflow.
    pub fate: String,
    /// From routing to the scheduled delivery.
    #[serde(default)]
    pub delay_us: u64,
}

/// Client operations by how they ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Latency of the ops that succeeded, invocation to answer.
    #[serde(default)]
    pub latency_ms_median: f64,
    #[serde(default)]
    pub latency_ms_p99: f64,
    #[serde(default)]
    pub latency_ms_max: f64,
    /// Ops acknowledged (ok) while some fault was on, and after the last
    /// fault healed (the final reads among them); `None` without faults.
    #[serde(default)]
    pub ok_during_faults: Option<usize>,
    #[serde(default)]
    pub ok_after_faults: Option<usize>,
    /// How many times leadership moved to another node once the first
    /// fault began (traces or the leader probe); `None` without faults or
    /// when nothing ever named a leader.
    #[serde(default)]
    pub leader_changes: Option<usize>,
}

/// Fewer acknowledged ops than this and a verdict rests on almost
/// nothing: the summary says so.
pub const FEW_OK_OPS: usize = 10;

impl OpCounts {
    /// How much the run exercised, in one line.
    pub fn exercised(&self) -> String {
        let mut s = format!("{} ops invoked, {} acknowledged", self.invoked, self.ok);
        if let (Some(during), Some(after)) = (self.ok_during_faults, self.ok_after_faults) {
            s += &format!(" ({during} while faults were on, {after} after the last healed)");
        }
        if let Some(n) = self.leader_changes {
            s += &format!("; {n} leader change(s) under faults");
        }
        s
    }

    /// What a run with faults did not exercise, said on its verdict line:
    /// its faults moved no leader, or few ops were acknowledged while
    /// they were on (a thin run). The verdict itself stands.
    pub fn thin(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.leader_changes == Some(0) {
            out.push("the faults caused no leader change".to_string());
        }
        if let Some(during) = self
            .ok_during_faults
            .filter(|&d| d < FEW_OK_OPS_DURING_FAULTS)
        {
            out.push(format!(
                "thin run: only {during} ops were acknowledged while faults were on"
            ));
        }
        out
    }
}

/// Fewer ops acknowledged while faults were on than this, and a run's
/// faults met almost no load: its verdict line says "thin run".
pub const FEW_OK_OPS_DURING_FAULTS: usize = 10;

/// The figures people compare runs by (Gossip Glomers' targets are in
/// these terms), and that a suite entry may bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Node-to-node messages per client op.
    pub msgs_per_op: f64,
    pub latency_ms_median: f64,
    pub latency_ms_max: f64,
    /// Ops that succeeded, of those invoked.
    pub availability: f64,
    /// Ops that succeeded.
    pub ok_ops: usize,
    /// Ops that succeeded while faults were on (`None`: no faults).
    #[serde(default)]
    pub ok_during_faults: Option<usize>,
    /// Leader changes once faults began (`None`: no leader known).
    #[serde(default)]
    pub leader_changes: Option<usize>,
    /// For sets (broadcast, g-set): how long after its acknowledgement
    /// each element was in every read, median and max (the propagation
    /// latency the Gossip Glomers challenges bound).
    pub stable_latency_ms_median: Option<f64>,
    pub stable_latency_ms_max: Option<f64>,
}

/// results.json: the verdict and everything that led to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    #[serde(default)]
    pub name: String,
    /// `None`: interrupted before it could be checked.
    pub verdict: Option<Verdict>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub ops: OpCounts,
    /// Each checker's result under its name, in the order they ran.
    #[serde(with = "by_name", default)]
    pub checkers: Vec<CheckerResult>,
    #[serde(default)]
    pub network: NetStats,
    /// A real server's node-to-node links through the TCP proxies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<stats::LinkStats>,
    #[serde(default)]
    pub journal_skipped: u64,
    #[serde(default)]
    pub unexpected_exits: Vec<ExitInfo>,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub interrupted: bool,
    /// What the run did not exercise or could not see (no leader change
    /// under faults, a thin run, a leader probe that never answered): on
    /// the verdict line too; the verdict stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How the system file's leader probe fared, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_probe: Option<ProbeStats>,
}

/// A leader probe's answers over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeStats {
    /// Rounds of asking every node.
    pub rounds: u64,
    /// Answers (a name, or "nobody leads now").
    pub answers: u64,
    /// The last error or unusable answer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Results {
    pub fn figures(&self) -> Figures {
        let invoked = self.ops.invoked.max(1) as f64;
        Figures {
            msgs_per_op: self.network.routed as f64 / invoked,
            latency_ms_median: self.ops.latency_ms_median,
            latency_ms_max: self.ops.latency_ms_max,
            availability: self.ops.ok as f64 / invoked,
            ok_ops: self.ops.ok,
            ok_during_faults: self.ops.ok_during_faults,
            leader_changes: self.ops.leader_changes,
            stable_latency_ms_median: self.set_detail("stable_latency_ms_median"),
            stable_latency_ms_max: self.set_detail("stable_latency_ms_max"),
        }
    }

    /// A figure of the set checker's; the figures are a summary, so one
    /// that cannot be read is left out (the report reads it strictly).
    fn set_detail(&self, key: &str) -> Option<f64> {
        self.checker(names::SET_FULL)?.detail(key).ok().flatten()
    }
}

/// When a run's first anomaly was complete, and when it began, in seconds
/// from the test start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub complete_s: f64,
    pub start_s: f64,
}

impl Results {
    /// The exit code (docs/protocol.md); an interrupted run is a harness failure.
    pub fn exit_code(&self) -> u8 {
        self.verdict.map_or(EXIT_HARNESS, |v| v.exit_code() as u8)
    }

    pub fn checker(&self, name: &str) -> Option<&CheckerResult> {
        self.checkers.iter().find(|c| c.name == name)
    }

    /// The linearizability anomaly, if one was found.
    pub fn anomaly(&self) -> Result<Option<Anomaly>, String> {
        match self.checker(names::LINEARIZABILITY) {
            Some(c) => c.detail("anomaly"),
            None => Ok(None),
        }
    }

    /// The Raft violations listed (the first hundred at most).
    pub fn raft_violations(&self) -> Result<Vec<Violation>, String> {
        match self.checker(names::RAFT_INVARIANTS) {
            Some(c) => Ok(c.detail("violations")?.unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }

    /// When the first anomaly was complete: the linearizability anomaly
    /// when its last op returned (usually the read that saw stale data), a
    /// Raft violation when the trace line that completed it was written.
    /// The earlier counts. A run this long would have caught it.
    /// Err when a checker's result cannot be read back as it was written.
    pub fn detection(&self, dir: &RunDir) -> Result<Option<Detection>, String> {
        let lin = self.anomaly()?.map(|a| {
            let (start, _) = a.span_ns();
            let done = a
                .all_ops()
                .map(|o| o.complete_time.unwrap_or(o.invoke_time))
                .max()
                .unwrap_or(start);
            (done, start)
        });
        let raft = self.first_violation_ns(dir)?.map(|ns| (ns, ns));
        let txn = self.first_txn_anomaly_ns(dir)?;
        let first = [lin, raft, txn].into_iter().flatten().min();
        Ok(first.map(|(done, start)| Detection {
            complete_s: done as f64 / 1e9,
            start_s: start as f64 / 1e9,
        }))
    }

    /// (complete, start) of the transaction anomaly completed first: when
    /// the last of its transactions returned, and when the first began.
    fn first_txn_anomaly_ns(&self, dir: &RunDir) -> Result<Option<(u64, u64)>, String> {
        /// Of an anomaly, only which transactions it involves.
        #[derive(Deserialize)]
        struct Involved {
            txns: Vec<u64>,
        }
        let Some(c) = self.checker(names::TRANSACTIONS) else {
            return Ok(None);
        };
        let anomalies: Vec<Involved> = c.detail("anomalies")?.unwrap_or_default();
        if anomalies.is_empty() {
            return Ok(None);
        }
        let events = dir.load_history().map_err(|e| e.to_string())?;
        let ops =
            faultline_checker::history::pair("history", &events).map_err(|e| e.to_string())?;
        let times: std::collections::HashMap<u64, (u64, u64)> = ops
            .iter()
            .map(|o| {
                let done = o.complete_time.unwrap_or(o.invoke_time);
                (o.invoke_index, (done, o.invoke_time))
            })
            .collect();
        anomalies
            .iter()
            .filter_map(|a| {
                let spans: Vec<(u64, u64)> = a
                    .txns
                    .iter()
                    .filter_map(|i| times.get(i).copied())
                    .collect();
                let done = spans.iter().map(|s| s.0).max()?;
                let start = spans.iter().map(|s| s.1).min()?;
                Some((done, start))
            })
            .min()
            .map_or(Ok(None), |first| Ok(Some(first)))
    }

    /// The time of the trace line that completed the earliest violation.
    /// Err when the violation names a line traces.jsonl does not have.
    pub fn first_violation_ns(&self, dir: &RunDir) -> Result<Option<u64>, String> {
        let first = self
            .raft_violations()?
            .iter()
            .filter_map(|v| v.lines.iter().copied().max())
            .min();
        let Some(first) = first else {
            return Ok(None);
        };
        let text = dir.load_traces_text().map_err(|e| e.to_string())?;
        let line = (first.checked_sub(1))
            .and_then(|i| text.lines().nth(i))
            .ok_or_else(|| {
                format!("a Raft violation names traces.jsonl line {first}, which it does not have")
            })?;
        let t = serde_json::from_str::<TraceLine>(line)
            .map_err(|e| format!("traces.jsonl line {first}: {e}"))?;
        Ok(Some(t.time))
    }
}

/// Checker results stored as an object keyed by checker name (the order
/// kept), so `checkers.linearizability.verdict` reads naturally.
mod by_name {
    use faultline_checker::CheckerResult;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[CheckerResult], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for c in v {
            m.serialize_entry(&c.name, c)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CheckerResult>, D::Error> {
        let m = serde_json::Map::deserialize(d)?;
        let mut out = Vec::new();
        for (name, v) in m {
            // A checker that did not run was stored as null by older runs.
            if v.is_null() {
                continue;
            }
            let mut c: CheckerResult =
                serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            c.name = name;
            out.push(c);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_383_900_123);
        assert_eq!(timestamp(t), "20261122T214500.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..8], "20000229");
    }

    fn results_with(checkers: Value) -> Results {
        serde_json::from_value(serde_json::json!({
            "name": "t", "verdict": "invalid", "summary": "", "checkers": checkers
        }))
        .unwrap()
    }

    #[test]
    fn an_anomaly_is_detected_when_its_last_op_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::open(tmp.path());
        let traces = "{\"time\":9000000000,\"node\":\"n1\",\"event\":\"leader\",\"term\":2}\n\
                      {\"time\":7000000000,\"node\":\"n2\",\"event\":\"leader\",\"term\":2}\n";
        std::fs::write(dir.file(TRACES), traces).unwrap();
        let op = |index: u64, invoke: u64, complete: u64| {
            serde_json::json!({"index": index, "complete_index": null, "process": "1", "f": "read",
                "key": "1", "input": null, "output": null, "outcome": "ok",
                "invoke_time": invoke, "complete_time": complete})
        };
        let anomaly = serde_json::json!({
            "key": "1", "kind": "stale-read", "summary": "", "explanation": "",
            "ops": [op(1, 1_000_000_000, 1_100_000_000)], "state_before": null,
            "linearized_prefix": null, "prefix_tail": [],
            "blocked": op(2, 5_000_000_000, 5_200_000_000)
        });
        let lin = serde_json::json!({"verdict": "invalid", "anomaly": anomaly});
        let at = |r: &Results| {
            r.detection(&dir)
                .unwrap()
                .map(|d| (d.complete_s, d.start_s))
        };
        assert_eq!(
            at(&results_with(serde_json::json!({"linearizability": lin}))),
            Some((5.2, 1.0))
        );
        // A Raft violation completed (line 2, at 7 s) later than the stale
        // read: the read counts. Earlier, the violation would.
        let v = serde_json::json!({"invariant": "x", "summary": "", "nodes": [], "terms": [], "indices": [], "lines": [1, 2]});
        let raft = serde_json::json!({"verdict": "invalid", "violations": [v]});
        let both =
            results_with(serde_json::json!({"linearizability": lin, "raft-invariants": raft}));
        assert_eq!(at(&both), Some((5.2, 1.0)));
        let only_raft = results_with(serde_json::json!({"raft-invariants": raft}));
        assert_eq!(at(&only_raft), Some((7.0, 7.0)));
        assert_eq!(at(&results_with(serde_json::json!({}))), None);
        // A detail that is there but not of its type is an error that
        // names it, not "no anomaly".
        let renamed = serde_json::json!({"verdict": "invalid", "anomaly": {"key": "1"}});
        let err = results_with(serde_json::json!({"linearizability": renamed}))
            .detection(&dir)
            .unwrap_err();
        assert!(
            err.contains("\"linearizability\"") && err.contains("\"anomaly\""),
            "{err}"
        );
        // Checkers keep their names and order through a store and load.
        std::fs::create_dir_all(dir.nodes_dir()).unwrap();
        dir.store_results(&both).unwrap();
        let back = dir.load_results().unwrap();
        let names: Vec<&str> = back.checkers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["linearizability", "raft-invariants"]);
        assert_eq!(back.exit_code(), 1);
    }
}
