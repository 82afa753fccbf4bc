//! faultline's checker: history types and importers, consistency models, the
//! linearizability checker and the Raft-invariant checker.
//!
//! Pure: no processes, no clock besides optional time budgets, no async.
//! Data comes in as text (a history, a trace file) and goes out as typed
//! reports that serialize straight into results.json.

pub mod codes;
pub mod compose;
pub mod counters;
pub mod edn;
pub mod error;
pub mod formats;
pub mod history;
pub mod ids;
pub mod kafka;
pub mod linearizability;
pub mod models;
pub mod names;
pub mod prepass;
pub mod raft;
pub mod search;
pub mod sets;
pub mod trace;
pub mod txn;
pub mod unique;

use serde::{Deserialize, Serialize};

pub use codes::ErrorCode;
pub use compose::{Checker, CheckerResult};
pub use error::CheckError;
pub use formats::Format;
pub use history::{Event, EventType, Op, Outcome, Process};
pub use models::ModelKind;

/// A run's verdict; its exit code is in docs/protocol.md, "Exit codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Unknown,
    Invalid,
}

impl Verdict {
    /// The process exit code for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }

    /// Combines verdicts: any invalid wins, then any unknown.
    pub fn combine(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Reads a history file in `format` (detected when `None`) and pairs it.
pub fn load_history(path: &str, format: Option<Format>) -> Result<(Format, Vec<Op>), CheckError> {
    let text = std::fs::read_to_string(path).map_err(|e| CheckError::Io {
        file: path.to_string(),
        source: e,
    })?;
    parse_history(path, &text, format)
}

pub fn parse_history(
    path: &str,
    text: &str,
    format: Option<Format>,
) -> Result<(Format, Vec<Op>), CheckError> {
    let format = format.unwrap_or_else(|| Format::detect(path, text));
    let events = formats::parse(path, text, format)?;
    Ok((format, history::pair(path, &events)?))
}
