//! The figures a run's parts report into results.json: the router's
//! counts, each TCP link's, and how each node process ended.

use serde::{Deserialize, Serialize};

/// How the router delays a message beyond the configured mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyDist {
    Constant,
    Uniform,
    Exponential,
}

impl LatencyDist {
    pub const ALL: [LatencyDist; 3] = [
        LatencyDist::Constant,
        LatencyDist::Uniform,
        LatencyDist::Exponential,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LatencyDist::Constant => "constant",
            LatencyDist::Uniform => "uniform",
            LatencyDist::Exponential => "exponential",
        }
    }
}

impl std::fmt::Display for LatencyDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LatencyDist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        LatencyDist::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a latency distribution: constant, uniform or exponential")
            })
    }
}

/// What the stdio router saw and did, counted.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NetStats {
    pub node_lines: u64,
    pub routed: u64,
    pub delivered: u64,
    pub to_clients: u64,
    pub from_clients: u64,
    pub traces: u64,
    pub malformed: u64,
    pub oversize: u64,
    pub unknown_dest: u64,
    pub spoofed_src: u64,
    pub dropped: u64,
    pub cut: u64,
    pub held: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub overflow: u64,
    pub service_calls: u64,
    /// The first few malformed lines, by node, truncated.
    pub samples: Vec<(String, String)>,
}

/// One directed link's figures, for results.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    pub from: String,
    pub to: String,
    /// Connections whose dialer is `from`.
    pub connections: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub corrupted: u64,
    pub resets: u64,
}

/// How one incarnation of a node process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitInfo {
    pub node: String,
    pub pid: i32,
    pub time_ns: u64,
    pub status: String,
    /// The harness killed it (end of run, nemesis) rather than it dying.
    pub expected: bool,
    /// It exited at once when restarted, refusing to run on what its
    /// disk held (fail-stop): a correct outcome, not a crash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused_to_start: bool,
    /// Which of the node's processes it was, when not its server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}
