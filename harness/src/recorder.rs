//! Writes what happened: history.jsonl (one write per line, so every
//! completed line survives a SIGKILL of the harness), traces.jsonl and
//! messages.jsonl (buffered, flushed periodically and at the end; both
//! tolerate a torn tail).

use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use crate::net::Sink;

/// The run's monotonic time base: nanoseconds since the test started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
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

/// history.jsonl. Index and time are assigned under the same lock as the
/// write, so file order, index order and time order agree.
pub struct History {
    file: Mutex<(File, u64)>,
    clock: Clock,
    /// Completions so far: ok, fail, info (for progress display).
    pub completed: [AtomicU64; 3],
}

impl History {
    pub fn create(path: &Path, clock: Clock) -> std::io::Result<Self> {
        Ok(History {
            file: Mutex::new((File::create(path)?, 0)),
            clock,
            completed: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// Appends one event and returns its index.
    pub fn record(
        &self,
        process: Value,
        kind: &str,
        f: &str,
        key: Option<&Value>,
        value: &Value,
        extra: Map<String, Value>,
    ) -> std::io::Result<u64> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let index = guard.1;
        let mut ev = Map::new();
        ev.insert("index".into(), json!(index));
        ev.insert("time".into(), json!(self.clock.now_ns()));
        ev.insert("process".into(), process);
        ev.insert("type".into(), json!(kind));
        ev.insert("f".into(), json!(f));
        if let Some(k) = key {
            ev.insert("key".into(), k.clone());
        }
        ev.insert("value".into(), value.clone());
        ev.extend(extra);
        let mut line = serde_json::to_vec(&Value::Object(ev)).expect("a JSON value serializes");
        line.push(b'\n');
        // One write call per line: no user-space buffer to lose.
        guard.0.write_all(&line)?;
        guard.1 += 1;
        match kind {
            "ok" => self.completed[0].fetch_add(1, Relaxed),
            "fail" => self.completed[1].fetch_add(1, Relaxed),
            "info" => self.completed[2].fetch_add(1, Relaxed),
            _ => 0,
        };
        Ok(index)
    }
}

/// Buffered JSON-lines writer with a line budget.
struct Lines {
    out: BufWriter<File>,
    written: u64,
    limit: u64,
}

/// Receives trace events and the message journal from the network.
pub struct Recorder {
    clock: Clock,
    traces: Mutex<Lines>,
    journal: Mutex<Lines>,
    pub journal_skipped: AtomicU64,
    /// Set once the journal hit its line budget: later messages skip it
    /// without being parsed.
    journal_full: std::sync::atomic::AtomicBool,
    pub trace_count: AtomicU64,
    /// The newest (term, node) that announced leadership, for the nemesis's
    /// isolate-leader.
    leader: Mutex<Option<(u64, String)>>,
}

impl Recorder {
    pub fn create(dir: &Path, clock: Clock, journal_limit: u64) -> std::io::Result<Self> {
        let open = |name: &str, limit| -> std::io::Result<Mutex<Lines>> {
            Ok(Mutex::new(Lines {
                out: BufWriter::new(File::create(dir.join(name))?),
                written: 0,
                limit,
            }))
        };
        Ok(Recorder {
            clock,
            traces: open("traces.jsonl", u64::MAX)?,
            journal: open("messages.jsonl", journal_limit)?,
            journal_skipped: AtomicU64::new(0),
            journal_full: std::sync::atomic::AtomicBool::new(false),
            trace_count: AtomicU64::new(0),
            leader: Mutex::new(None),
        })
    }

    fn write(lines: &Mutex<Lines>, v: &Value) -> bool {
        let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.written >= l.limit {
            return false;
        }
        l.written += 1;
        let _ = serde_json::to_writer(&mut l.out, v);
        let _ = l.out.write_all(b"\n");
        true
    }

    /// A harness-side lifecycle event for a node (`start`, `exit`).
    pub fn node_event(&self, node: &str, event: &str, extra: Value) {
        let mut m = Map::new();
        m.insert("time".into(), json!(self.clock.now_ns()));
        m.insert("node".into(), json!(node));
        m.insert("event".into(), json!(event));
        m.insert("source".into(), json!("harness"));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Self::write(&self.traces, &Value::Object(m));
    }

    /// The node that most recently announced leadership of the newest term.
    pub fn current_leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, n)| n.clone())
    }

    pub fn flush(&self) {
        for l in [&self.traces, &self.journal] {
            let _ = l.lock().unwrap_or_else(|e| e.into_inner()).out.flush();
        }
    }
}

impl Sink for Recorder {
    fn trace(&self, node: &str, body: &Value) {
        let mut m = Map::new();
        m.insert("time".into(), json!(self.clock.now_ns()));
        m.insert("node".into(), json!(node));
        if let Value::Object(b) = body {
            for (k, v) in b {
                if k != "type" && k != "node" && k != "time" {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        self.trace_count.fetch_add(1, Relaxed);
        if body.get("event").and_then(Value::as_str) == Some("leader") {
            if let Some(term) = body.get("term").and_then(Value::as_u64) {
                let mut l = self.leader.lock().unwrap_or_else(|e| e.into_inner());
                if l.as_ref().is_none_or(|(t, _)| term >= *t) {
                    *l = Some((term, node.to_string()));
                }
            }
        }
        Self::write(&self.traces, &Value::Object(m));
    }

    fn journal(
        &self,
        from: &str,
        to: &str,
        body: &serde_json::value::RawValue,
        fate: &'static str,
        delay: std::time::Duration,
    ) {
        // Only the head of the body: the journal is for diagrams, not replay.
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow, rename = "type", default)]
            ty: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            msg_id: Option<Value>,
            #[serde(default)]
            in_reply_to: Option<Value>,
        }
        let head: Head = serde_json::from_str(body.get()).unwrap_or(Head {
            ty: None,
            msg_id: None,
            in_reply_to: None,
        });
        let v = json!({
            "time": self.clock.now_ns(), "src": from, "dest": to, "type": head.ty,
            "msg_id": head.msg_id, "in_reply_to": head.in_reply_to, "fate": fate,
            "delay_us": delay.as_micros() as u64,
        });
        if !Self::write(&self.journal, &v) {
            self.journal_full.store(true, Relaxed);
            self.journal_skipped.fetch_add(1, Relaxed);
        }
    }
}
