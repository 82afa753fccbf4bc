//! The configuration of a run as test.json holds it: every setting,
//! validated by the harness before it is written, and read back by every
//! reader of a run directory (a replay, a report, a suite summary).

use faultline_nemesis::{Spec, Step};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::stats::LatencyDist;

/// The defaults, one constant each (clap shows them in `--help`).
pub mod defaults {
    pub const NODE_COUNT: usize = 5;
    pub const WORKLOAD: &str = "lin-kv";
    pub const NEMESIS: &str = "none";
    pub const NEMESIS_INTERVAL_S: f64 = 1.0;
    pub const RECOVERY_TIME_S: f64 = 2.0;
    pub const LIVENESS_TIMEOUT_S: f64 = 15.0;
    pub const TIME_LIMIT_S: f64 = 10.0;
    pub const RATE: f64 = 100.0;
    pub const KEY_COUNT: u64 = 5;
    pub const LATENCY_MS: f64 = 0.0;
    pub const TIMEOUT_MS: u64 = 500;
    pub const INIT_TIMEOUT_MS: u64 = 10_000;
    pub const CHECK_TIME_LIMIT_S: f64 = 60.0;
    pub const JOURNAL_LIMIT: u64 = 200_000;
    pub const TOPOLOGY: &str = "grid";
    pub const NODE_NAMES: &str = "n1";
    pub const CONSISTENCY_MODEL: &str = "strict-serializable";
}

fn topology() -> String {
    defaults::TOPOLOGY.into()
}

fn node_names() -> String {
    defaults::NODE_NAMES.into()
}

fn consistency_model() -> String {
    defaults::CONSISTENCY_MODEL.into()
}

/// The full configuration of a run, written to test.json (and read back by
/// `--replay` and by every reader of a run directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestConfig {
    pub name: String,
    /// `None`: the bundled target node (or a system).
    pub bin: Option<PathBuf>,
    /// A real server's system description (a bundled name or a path).
    #[serde(default)]
    pub system: Option<String>,
    pub args: Vec<String>,
    /// Nodes at the start (the members, when membership changes).
    pub node_count: usize,
    /// With the membership nemesis: the fewest and most members the
    /// cluster keeps. One node id more than the most is laid out, so a
    /// replace can always bring in a new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<[usize; 2]>,
    /// A name from `faultline_workloads::WORKLOADS`.
    pub workload: String,
    pub nemesis: Vec<Spec>,
    /// Faults `all` asked for that this system cannot feel, with why.
    #[serde(default)]
    pub nemesis_refused: Vec<String>,
    pub nemesis_interval_s: f64,
    /// Seconds between healing everything and the liveness reads.
    pub recovery_s: f64,
    /// Seconds the liveness phase may take to read every key.
    pub liveness_timeout_s: f64,
    /// The fault schedule, drawn from the seed (kept verbatim on replay).
    pub schedule: Vec<Step>,
    /// The schedule came from a file the user wrote (`--schedule`): its
    /// times are kept exactly, and faults on the leader do not hold until
    /// a failover.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schedule_given: bool,
    pub time_limit_s: f64,
    pub rate: f64,
    pub concurrency: usize,
    pub key_count: u64,
    pub seed: u64,
    pub latency_ms: f64,
    pub latency_dist: LatencyDist,
    pub timeout_ms: u64,
    pub init_timeout_ms: u64,
    /// How long the checker may take before answering `unknown`.
    pub check_time_limit_s: f64,
    pub journal_limit: u64,
    #[serde(default = "topology")]
    pub topology: String,
    #[serde(default = "node_names")]
    pub node_names: String,
    #[serde(default = "consistency_model")]
    pub consistency_model: String,
    /// Seconds of load before the first fault.
    #[serde(default)]
    pub warmup_s: f64,
    #[serde(default)]
    pub keep_data: bool,
    /// The system file's variables as this run set them (its defaults,
    /// then `--var`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Where each option not left at faultline's own default came from:
    /// `command line`, `suite` or `system file`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
}

impl TestConfig {
    /// The node ids of this run: every node that may ever be a member.
    pub fn node_ids(&self) -> Vec<String> {
        node_ids(&self.node_names, self.universe())
    }

    /// How many nodes are laid out: the starting members, and with
    /// membership changes one more than the most members.
    pub fn universe(&self) -> usize {
        self.cluster_size
            .map_or(self.node_count, |[_, max]| (max + 1).max(self.node_count))
    }

    /// The consistency model transactions are held to; `check` made sure
    /// it parses.
    pub fn consistency_model(&self) -> Option<faultline_checker::txn::ConsistencyModel> {
        faultline_checker::txn::ConsistencyModel::parse(&self.consistency_model).ok()
    }

    /// The workload; `check` made sure it exists.
    pub fn workload(&self) -> &'static dyn faultline_workloads::Workload {
        faultline_workloads::find(&self.workload)
            .expect("a checked configuration names a known workload")
    }
}

/// The node ids of a run: n1..nN, or n0..nN-1 as Maelstrom names them
/// (`node_names` "n0").
pub fn node_ids(node_names: &str, node_count: usize) -> Vec<String> {
    let first = usize::from(node_names != "n0");
    (first..first + node_count)
        .map(|i| format!("n{i}"))
        .collect()
}
