//! Writes what happened: history.jsonl (one write per line, so every
//! completed line survives a SIGKILL of the harness), traces.jsonl and
//! messages.jsonl (buffered, flushed periodically and at the end; both
//! tolerate a torn tail).

use faultline_checker::{Event, EventType, Process};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where trace events and journal entries go.
pub trait Sink: Send + Sync {
    fn trace(&self, node: &str, body: &Value);
    /// One routed message and what happened to it.
    /// `delay`: from routing to the scheduled delivery (zero if not delivered).
    fn journal(&self, from: &str, to: &str, body: &RawValue, fate: &'static str, delay: Duration);
}

/// The run's monotonic time base: nanoseconds since the test started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// history.jsonl, written through the checker's `Event`. Index and time
/// are assigned under the same lock as the write, so file order, index
/// order and time order agree.
pub struct History {
    file: Mutex<HistoryFile>,
    clock: Clock,
    /// Completions so far: ok, fail, info (for progress display).
    pub completed: [AtomicU64; 3],
}

struct HistoryFile {
    out: File,
    next_index: u64,
    last_time: u64,
}

impl History {
    pub fn create(path: &Path, clock: Clock) -> std::io::Result<Self> {
        Ok(History {
            file: Mutex::new(HistoryFile {
                out: File::create(path)?,
                next_index: 0,
                last_time: 0,
            }),
            clock,
            completed: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// Appends one event (its index and time are filled in) and returns
    /// its index.
    pub fn record(
        &self,
        process: Process,
        kind: EventType,
        f: &str,
        key: Option<Value>,
        value: Value,
        extra: Map<String, Value>,
    ) -> std::io::Result<u64> {
        // Progress counts client ops, as the summary does: a nemesis
        // event is an `info` line too, but no op.
        let client = process.is_client();
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let time = self.clock.now_ns();
        // Invariant: history indices are dense and times never go back.
        assert!(time >= file.last_time, "history time went backwards");
        let ev = Event {
            index: file.next_index,
            time,
            process,
            kind,
            f: f.to_string(),
            key,
            value,
            extra,
        };
        let mut line = serde_json::to_vec(&ev).expect("an event serializes");
        line.push(b'\n');
        // One write call per line: no user-space buffer to lose.
        file.out.write_all(&line)?;
        file.next_index += 1;
        file.last_time = time;
        let slot = match kind {
            _ if !client => None,
            EventType::Invoke => None,
            EventType::Ok => Some(0),
            EventType::Fail => Some(1),
            EventType::Info => Some(2),
        };
        if let Some(i) = slot {
            self.completed[i].fetch_add(1, Relaxed);
        }
        Ok(ev.index)
    }

    /// A nemesis action: `info`, by the `nemesis` process.
    pub fn record_nemesis(&self, f: &str, value: Value) -> std::io::Result<u64> {
        let nemesis = Process::Named("nemesis".into());
        self.record(nemesis, EventType::Info, f, None, value, Map::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_client_completions_not_nemesis_events() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::create(&dir.path().join("history.jsonl"), Clock::new()).unwrap();
        let client = Process::Client(0);
        let op = |kind| h.record(client.clone(), kind, "read", None, Value::Null, Map::new());
        op(EventType::Invoke).unwrap();
        op(EventType::Info).unwrap();
        h.record_nemesis("kill", serde_json::json!({"nodes": ["n1"]}))
            .unwrap();
        let counts: Vec<u64> = h.completed.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(
            counts,
            [0, 0, 1],
            "one client op ended info; the kill is no op"
        );
    }
}
