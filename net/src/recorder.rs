//! The recorder of what the network sees: each node's trace events
//! (traces.jsonl), the message journal (messages.jsonl), the newest
//! leader announced, and the protocol moments faults are aimed at. It
//! owns the runtime side of recording (a watch and a broadcast channel),
//! so the run-directory crate below it stays free of a runtime.

use faultline_checker::trace::{self, LeaderCommits, Parsed, TraceEvent};
use faultline_nemesis::Moment;
use faultline_rundir::record::{Clock, Sink};
use faultline_rundir::{self as rundir, JournalEntry, TraceLine};
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{broadcast, watch};

/// Buffered JSON-lines writer with a line budget.
struct Lines {
    name: &'static str,
    out: BufWriter<File>,
    written: u64,
    limit: u64,
}

/// How many protocol moments may wait for a slow nemesis before the
/// oldest are dropped (it then sees the newer ones: a trigger wants the
/// next moment, not every one).
const MOMENT_BACKLOG: usize = 1024;

/// How long a leader must have led before its commits are `on-lease`
/// moments: past its election's first rounds, a quorum has answered its
/// heartbeats, so a leader that keeps a lease holds one.
const LEASE_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// A protocol moment in a node's trace, as triggers see it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub moment: faultline_nemesis::Moment,
    pub node: String,
    pub term: Option<u64>,
    /// The trace line's time (ns since the run began).
    pub time_ns: u64,
    pub at: Instant,
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
    /// The newest (term, node) that announced leadership, for faults aimed
    /// at the leader.
    leader: watch::Sender<Option<(u64, String)>>,
    moments: broadcast::Sender<Seen>,
    /// Which commits are a leader's, by the rule every reader of traces
    /// uses.
    leader_commits: Mutex<LeaderCommits>,
    /// Per node, the newest term it was elected in and when.
    elected: Mutex<std::collections::HashMap<String, (u64, Instant)>>,
    /// The first failed write to traces or journal.
    write_error: Mutex<Option<String>>,
}

impl Recorder {
    pub fn create(dir: &Path, clock: Clock, journal_limit: u64) -> std::io::Result<Self> {
        let open = |name: &'static str, limit| -> std::io::Result<Mutex<Lines>> {
            Ok(Mutex::new(Lines {
                name,
                out: BufWriter::new(File::create(dir.join(name))?),
                written: 0,
                limit,
            }))
        };
        Ok(Recorder {
            clock,
            traces: open(rundir::TRACES, u64::MAX)?,
            journal: open(rundir::JOURNAL, journal_limit)?,
            write_error: Mutex::new(None),
            journal_skipped: AtomicU64::new(0),
            journal_full: std::sync::atomic::AtomicBool::new(false),
            trace_count: AtomicU64::new(0),
            leader: watch::channel(None).0,
            moments: broadcast::channel(MOMENT_BACKLOG).0,
            leader_commits: Mutex::new(LeaderCommits::default()),
            elected: Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn write(&self, lines: &Mutex<Lines>, v: &impl serde::Serialize) -> bool {
        let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.written >= l.limit {
            return false;
        }
        l.written += 1;
        let done = serde_json::to_writer(&mut l.out, v)
            .map_err(std::io::Error::from)
            .and_then(|()| l.out.write_all(b"\n"));
        if let Err(e) = done {
            self.failed(l.name, e);
        }
        true
    }

    /// Keeps the first write error to the run directory (here or in a
    /// node's log), reported when the run ends.
    pub fn failed(&self, file: &str, e: std::io::Error) {
        let mut first = self.write_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| format!("writing {file}: {e}"));
    }

    /// Flushes both files; the first error any write met, if one did.
    pub fn finish(&self) -> Result<(), String> {
        self.flush();
        match self
            .write_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A harness-side lifecycle event for a node (`start`, `exit`).
    pub fn node_event(&self, node: &str, event: &str, extra: Value) {
        let mut fields = Map::new();
        fields.insert("event".into(), json!(event));
        fields.insert("source".into(), json!("harness"));
        if let Value::Object(e) = extra {
            fields.extend(e);
        }
        let line = TraceLine {
            time: self.clock.now_ns(),
            node: node.to_string(),
            fields,
        };
        self.write(&self.traces, &line);
    }

    /// One journal line written as it is (a TCP proxy's connection events).
    pub fn journal_entry(&self, e: &JournalEntry) {
        if !self.write(&self.journal, e) {
            self.journal_skipped.fetch_add(1, Relaxed);
        }
    }

    /// A handle on the node that most recently announced leadership of
    /// the newest term (term, node id).
    pub fn leader(&self) -> watch::Receiver<Option<(u64, String)>> {
        self.leader.subscribe()
    }

    /// Every protocol moment traced from now on.
    pub fn moments(&self) -> broadcast::Receiver<Seen> {
        self.moments.subscribe()
    }

    /// The moments a trace event is: a leader elected, a vote granted, a
    /// commit by a leader (`LeaderCommits` says which), which is also
    /// `on-lease` once that leader, naming its term, has led for
    /// `LEASE_SETTLE`.
    fn moments_of(&self, node: &str, ev: &TraceEvent, leaders: bool) -> Vec<Moment> {
        match *ev {
            TraceEvent::Leader { .. } => vec![Moment::Elect],
            TraceEvent::Vote { .. } => vec![Moment::Vote],
            TraceEvent::Commit {
                leader_term: Some(led),
                ..
            } if leaders => {
                let e = self.elected.lock().unwrap_or_else(|e| e.into_inner());
                let settled = e
                    .get(node)
                    .is_some_and(|&(t, at)| t == led && at.elapsed() >= LEASE_SETTLE);
                match settled {
                    true => vec![Moment::Commit, Moment::Lease],
                    false => vec![Moment::Commit],
                }
            }
            TraceEvent::Commit { .. } if leaders => vec![Moment::Commit],
            _ => Vec::new(),
        }
    }

    /// A leader announces itself when elected and again with each commit
    /// it counts (`leader_term`): after a restart the newest announcement
    /// names the node leading now.
    fn follow_leader(&self, node: &str, ev: &TraceEvent) {
        let term = match *ev {
            TraceEvent::Leader { term } => {
                // When it was elected, for `on-lease`.
                let mut e = self.elected.lock().unwrap_or_else(|e| e.into_inner());
                e.insert(node.to_string(), (term, Instant::now()));
                term
            }
            TraceEvent::Commit {
                leader_term: Some(term),
                ..
            } => term,
            _ => return,
        };
        self.leader.send_if_modified(|l| {
            let newer = l
                .as_ref()
                .is_none_or(|(t, n)| term > *t || (term == *t && n != node));
            if newer {
                *l = Some((term, node.to_string()));
            }
            newer
        });
    }

    pub fn flush(&self) {
        for lines in [&self.traces, &self.journal] {
            let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = l.out.flush() {
                let name = l.name;
                drop(l);
                self.failed(name, e);
            }
        }
    }
}

impl Sink for Recorder {
    fn trace(&self, node: &str, body: &Value) {
        let mut fields = Map::new();
        if let Value::Object(b) = body {
            for (k, v) in b {
                if k != "type" && k != "node" && k != "time" {
                    fields.insert(k.clone(), v.clone());
                }
            }
        }
        let line = TraceLine {
            time: self.clock.now_ns(),
            node: node.to_string(),
            fields,
        };
        // Counted before any moment is sent: a trigger that sees no
        // traces yet falls back to the clock.
        self.trace_count.fetch_add(1, Relaxed);
        // A line the checker cannot read, or of a kind nobody knows, fires
        // nothing: the checker names the first and counts the second.
        let Ok(Parsed::Known(ev)) = trace::event_of(body) else {
            self.write(&self.traces, &line);
            return;
        };
        let leaders = self
            .leader_commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(node, &ev);
        self.follow_leader(node, &ev);
        // After the leader watch: a trigger fired by an election finds the
        // new leader there.
        if self.moments.receiver_count() > 0 {
            let term = match ev {
                TraceEvent::Leader { term }
                | TraceEvent::Vote { term, .. }
                | TraceEvent::Commit { term, .. } => Some(term),
                _ => None,
            };
            for moment in self.moments_of(node, &ev, leaders) {
                let _ = self.moments.send(Seen {
                    moment,
                    node: node.to_string(),
                    term,
                    time_ns: line.time,
                    at: Instant::now(),
                });
            }
        }
        self.write(&self.traces, &line);
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
        let v = JournalEntry {
            time: self.clock.now_ns(),
            src: from.to_string(),
            dest: to.to_string(),
            ty: head.ty.map(|t| t.into_owned()),
            msg_id: head.msg_id,
            in_reply_to: head.in_reply_to,
            fate: fate.to_string(),
            delay_us: delay.as_micros() as u64,
        };
        if !self.write(&self.journal, &v) {
            self.journal_full.store(true, Relaxed);
            self.journal_skipped.fetch_add(1, Relaxed);
        }
    }
}
