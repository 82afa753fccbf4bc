//! History events (docs/protocol.md, "The history") and their pairing into operations.
//!
//! An `Event` is one line of history.jsonl. `pair` turns the event stream into
//! `Op`s: one per invocation, with its completion (or none, when the history
//! ends while it is open, which counts as `info`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

use crate::error::{CheckError, Located};

/// Who performed an event: a client process number or the nemesis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Named(String),
}

impl Process {
    pub fn is_client(&self) -> bool {
        matches!(self, Process::Client(_))
    }
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(n) => write!(f, "{n}"),
            Process::Named(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One history line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    /// Nanoseconds since the test started (or a line number for formats that
    /// only record order).
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    #[serde(default)]
    pub value: Value,
    /// Free-form extras (error codes, node, latency...), kept for the report.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may take effect at any time after its invocation, or never.
    Info,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub process: Process,
    pub f: String,
    pub key: Option<String>,
    /// What was asked (the invoke line's value).
    pub input: Value,
    /// What came back (the completion's value); `Null` when unknown.
    pub output: Value,
    pub outcome: Outcome,
    pub invoke_index: u64,
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    /// `None` when the history ended with the op open or it ended `info`:
    /// its effect may land at any later time.
    pub complete_time: Option<u64>,
    /// When the completion line was written, whatever its type (`None`
    /// only for an op still open at the end): for drawing, not checking.
    pub returned_time: Option<u64>,
    /// Source line of the invocation (1-based) for error messages.
    pub line: usize,
    /// The node that answered (the completion's `node`), when recorded.
    pub node: Option<String>,
    /// One of the final reads after the faults healed (the invocation's
    /// `"final":true`, Jepsen's `:final?`): what the system kept.
    pub final_read: bool,
}

/// Whether any op is marked a final read: histories written before the
/// mark existed, or by tools that do not set it, have none, and checkers
/// then take each node's last read as its final one.
pub fn has_final_reads(ops: &[Op]) -> bool {
    ops.iter().any(|o| o.final_read)
}

/// Normalizes a JSON key to a string so `"k1"` and `1` partition consistently.
pub fn key_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An event together with the line it came from.
pub type LinedEvent = (usize, Event);

/// Pairs invocations with completions. Nemesis events are skipped. Errors name
/// the file and line.
pub fn pair(file: &str, events: &[LinedEvent]) -> Result<Vec<Op>, CheckError> {
    let mut ops: Vec<Op> = Vec::new();
    let mut open: HashMap<Process, usize> = HashMap::new();
    let err = |line: usize, msg: String| CheckError::Parse(Located::new(file, line, msg));
    for (line, ev) in events {
        if !ev.process.is_client() {
            continue;
        }
        match ev.kind {
            EventType::Invoke => {
                if let Some(&i) = open.get(&ev.process) {
                    return Err(err(
                        *line,
                        format!(
                            "process {} invokes {:?} while its op from line {} is still open",
                            ev.process, ev.f, ops[i].line
                        ),
                    ));
                }
                open.insert(ev.process.clone(), ops.len());
                ops.push(Op {
                    process: ev.process.clone(),
                    f: ev.f.clone(),
                    key: ev.key.as_ref().map(key_string),
                    input: ev.value.clone(),
                    output: Value::Null,
                    outcome: Outcome::Info,
                    invoke_index: ev.index,
                    complete_index: None,
                    invoke_time: ev.time,
                    complete_time: None,
                    returned_time: None,
                    line: *line,
                    node: None,
                    final_read: ev.extra.get("final").and_then(Value::as_bool) == Some(true),
                });
            }
            kind => {
                let Some(i) = open.remove(&ev.process) else {
                    return Err(err(
                        *line,
                        format!(
                            "completion for process {} which has no open invocation",
                            ev.process
                        ),
                    ));
                };
                let op = &mut ops[i];
                if op.f != ev.f {
                    return Err(err(
                        *line,
                        format!(
                            "completion f {:?} does not match invocation f {:?} (line {})",
                            ev.f, op.f, op.line
                        ),
                    ));
                }
                if ev.time < op.invoke_time {
                    return Err(err(
                        *line,
                        format!(
                            "completion time {} precedes its invocation time {}",
                            ev.time, op.invoke_time
                        ),
                    ));
                }
                op.complete_index = Some(ev.index);
                op.returned_time = Some(ev.time);
                op.node = ev
                    .extra
                    .get("node")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                op.output = ev.value.clone();
                op.outcome = match kind {
                    EventType::Ok => Outcome::Ok,
                    EventType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                // An info op's effect may land any time later: no upper bound.
                op.complete_time = if op.outcome == Outcome::Info {
                    None
                } else {
                    Some(ev.time)
                };
            }
        }
    }
    Ok(ops)
}
