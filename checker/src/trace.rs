//! Trace events (docs/protocol.md, "Trace events"): the one type the
//! Raft-invariant checker, the recorder's moment triggers and the report's
//! coverage read a node's protocol state from, and the one rule for which
//! commits are a leader's.
//!
//! A line of traces.jsonl is `{"time":NS,"node":"n1","event":E,...}`. An
//! event faultline knows must carry its fields (a `commit` without a
//! numeric `index` is an error naming it); an event it does not know is
//! kept as `Unknown` with its name, to be counted rather than dropped.

use serde::Serialize;
use serde_json::{Map, Value};

/// The events faultline knows, by name.
pub const KNOWN: [&str; 9] = [
    "start", "exit", "vote", "leader", "commit", "apply", "truncate", "config", "snapshot",
];

/// One trace event of a known kind.
///
/// Written with serde (tagged by `event`); read by `event_of`, which names
/// the field that is missing or of the wrong type (a round-trip test keeps
/// the two in step).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TraceEvent {
    /// The harness (re)started the node: a new life, whose volatile state
    /// (commit and apply indexes) may restart; its votes may not.
    Start {},
    /// The harness saw the node's process end.
    Exit {},
    /// The node granted its vote in `term`.
    Vote { term: u64, candidate: String },
    /// The node became leader of `term`.
    Leader { term: u64 },
    /// The commit index advanced to `index` (an entry of `term`).
    Commit {
        index: u64,
        term: u64,
        /// Set when the node, as leader of that term, committed by
        /// counting replicas.
        leader_term: Option<u64>,
        /// Who had matched `index`, and the configuration counted in
        /// (joint while `old` is set).
        acks: Option<Vec<String>>,
        voters: Option<Vec<String>>,
        old: Option<Vec<String>>,
    },
    /// The entry at `index` was applied; `digest` names its command.
    Apply {
        index: u64,
        term: u64,
        digest: String,
    },
    /// The log was cut from `from` on.
    Truncate { from: u64, term: Option<u64> },
    /// A leader appended a configuration, replacing `from_*`.
    Config {
        index: u64,
        term: u64,
        voters: Vec<String>,
        old: Option<Vec<String>>,
        from_voters: Vec<String>,
        from_old: Option<Vec<String>>,
    },
    /// A snapshot was installed.
    Snapshot {
        index: Option<u64>,
        term: Option<u64>,
    },
}

/// An event, known or not.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Known(TraceEvent),
    /// A name faultline does not know: kept in the file, counted.
    Unknown(String),
}

/// One line of traces.jsonl, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Traced {
    pub time_ns: u64,
    pub node: String,
    pub event: Parsed,
}

/// Reads an event from a trace body or line (`event` and its fields).
/// Err names what is wrong: not an object, a missing or non-string
/// `event`, or a known event without its fields.
pub fn event_of(v: &Value) -> Result<Parsed, String> {
    match v.as_object() {
        Some(fields) => event_in(fields),
        None => Err("a trace event is not a JSON object".into()),
    }
}

/// `event_of` for the fields of a line already split out (a
/// `TraceLine`'s).
pub fn event_in(fields: &Map<String, Value>) -> Result<Parsed, String> {
    let name = match fields.get("event") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("trace event's \"event\" is not a string".into()),
        None => return Err("trace event lacks \"event\"".into()),
    };
    if !KNOWN.contains(&name) {
        return Ok(Parsed::Unknown(name.to_string()));
    }
    known(name, &Fields { name, v: fields }).map(Parsed::Known)
}

/// The fields of one event, read with errors that name the field.
struct Fields<'a> {
    name: &'a str,
    v: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn opt_num(&self, k: &str) -> Result<Option<u64>, String> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{} event's {k:?} is not a whole number: {x}", self.name)),
        }
    }

    fn num(&self, k: &str) -> Result<u64, String> {
        self.opt_num(k)?
            .ok_or_else(|| format!("{} event lacks a numeric {k:?}", self.name))
    }

    /// A name or digest: a number or object sent in its place is read as
    /// its text, which is what identifies it.
    fn text(&self, k: &str) -> Result<String, String> {
        match self.v.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(x) if !x.is_null() => Ok(x.to_string()),
            _ => Err(format!("{} event lacks {k:?}", self.name)),
        }
    }

    fn opt_list(&self, k: &str) -> Result<Option<Vec<String>>, String> {
        let bad = || format!("{} event's {k:?} is not a list of node ids", self.name);
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(String::from).ok_or_else(bad))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }

    fn list(&self, k: &str) -> Result<Vec<String>, String> {
        self.opt_list(k)?
            .ok_or_else(|| format!("{} event lacks {k:?}", self.name))
    }
}

fn known(name: &str, f: &Fields) -> Result<TraceEvent, String> {
    Ok(match name {
        "start" => TraceEvent::Start {},
        "exit" => TraceEvent::Exit {},
        "vote" => TraceEvent::Vote {
            term: f.num("term")?,
            candidate: f.text("candidate")?,
        },
        "leader" => TraceEvent::Leader {
            term: f.num("term")?,
        },
        "commit" => TraceEvent::Commit {
            index: f.num("index")?,
            term: f.num("term")?,
            leader_term: f.opt_num("leader_term")?,
            acks: f.opt_list("acks")?,
            voters: f.opt_list("voters")?,
            old: f.opt_list("old")?,
        },
        "apply" => TraceEvent::Apply {
            index: f.num("index")?,
            term: f.num("term")?,
            digest: f.text("digest")?,
        },
        "truncate" => TraceEvent::Truncate {
            from: f.num("from")?,
            term: f.opt_num("term")?,
        },
        "config" => TraceEvent::Config {
            index: f.num("index")?,
            term: f.num("term")?,
            voters: f.list("voters")?,
            old: f.opt_list("old")?,
            from_voters: f.list("from_voters")?,
            from_old: f.opt_list("from_old")?,
        },
        "snapshot" => TraceEvent::Snapshot {
            index: f.opt_num("index")?,
            term: f.opt_num("term")?,
        },
        other => unreachable!("{other} is in KNOWN but not read"),
    })
}

/// Reads one line of traces.jsonl.
pub fn parse_line(line: &str) -> Result<Traced, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not a trace event: {e}"))?;
    let node = v
        .get("node")
        .and_then(Value::as_str)
        .ok_or("trace event lacks \"node\"")?
        .to_string();
    Ok(Traced {
        time_ns: v.get("time").and_then(Value::as_u64).unwrap_or(0),
        event: event_of(&v)?,
        node,
    })
}

/// Which commits are a leader's, by one rule for every reader. A commit
/// with `leader_term` is its leader's. Once any commit of the run has
/// named its leader so, a commit without it is a follower's learning the
/// index, even on a node that led before it restarted; until then (nodes
/// that never say), a commit of the node that last announced leadership
/// of the newest term is taken as the leader's.
#[derive(Debug, Default, Clone)]
pub struct LeaderCommits {
    named: bool,
    leader: Option<(u64, String)>,
}

impl LeaderCommits {
    /// Feeds the next event of `node`; true when it is a leader's commit.
    pub fn observe(&mut self, node: &str, event: &TraceEvent) -> bool {
        match event {
            TraceEvent::Leader { term } => {
                if self.leader.as_ref().is_none_or(|(t, _)| term >= t) {
                    self.leader = Some((*term, node.to_string()));
                }
                false
            }
            TraceEvent::Commit {
                leader_term: Some(_),
                ..
            } => {
                self.named = true;
                true
            }
            TraceEvent::Commit { .. } => {
                !self.named && self.leader.as_ref().is_some_and(|(_, l)| l == node)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_events_need_their_fields_and_unknown_ones_keep_their_name() {
        let commit = json!({"event": "commit", "index": 3, "term": 2, "leader_term": 2});
        assert!(matches!(
            event_of(&commit),
            Ok(Parsed::Known(TraceEvent::Commit {
                index: 3,
                leader_term: Some(2),
                ..
            }))
        ));
        let bad = event_of(&json!({"event": "commit", "term": 2})).unwrap_err();
        assert!(
            bad.contains("commit event") && bad.contains("index"),
            "{bad}"
        );
        let bad = event_of(&json!({"event": "commit", "index": 1, "term": 2, "leader_term": "x"}));
        assert!(bad.unwrap_err().contains("\"leader_term\""));
        let odd = json!({"event": "comit", "index": 3});
        assert_eq!(event_of(&odd), Ok(Parsed::Unknown("comit".into())));
        assert!(event_of(&json!({"term": 1})).is_err());
        // A number where a name is expected is read as its text.
        let vote = event_of(&json!({"event": "vote", "term": 1, "candidate": 2})).unwrap();
        assert_eq!(
            vote,
            Parsed::Known(TraceEvent::Vote {
                term: 1,
                candidate: "2".into()
            })
        );
        // The harness's own lines carry fields of their own.
        let start = json!({"event": "start", "source": "harness", "pid": 7});
        assert_eq!(event_of(&start), Ok(Parsed::Known(TraceEvent::Start {})));
    }

    /// Every kind, written with serde and read back: the writer and the
    /// reader agree on every field.
    #[test]
    fn every_event_reads_back_as_written() {
        let ids = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = [
            TraceEvent::Start {},
            TraceEvent::Exit {},
            TraceEvent::Vote {
                term: 2,
                candidate: "n3".into(),
            },
            TraceEvent::Leader { term: 2 },
            TraceEvent::Commit {
                index: 5,
                term: 2,
                leader_term: Some(2),
                acks: Some(ids(&["n1", "n2"])),
                voters: Some(ids(&["n1", "n2", "n3"])),
                old: Some(ids(&["n1"])),
            },
            TraceEvent::Apply {
                index: 5,
                term: 2,
                digest: "w 1 2".into(),
            },
            TraceEvent::Truncate {
                from: 4,
                term: Some(1),
            },
            TraceEvent::Config {
                index: 6,
                term: 2,
                voters: ids(&["n1", "n2"]),
                old: None,
                from_voters: ids(&["n1", "n2", "n3"]),
                from_old: None,
            },
            TraceEvent::Snapshot {
                index: Some(9),
                term: None,
            },
        ];
        assert_eq!(all.len(), KNOWN.len());
        for ev in all {
            let v = serde_json::to_value(&ev).unwrap();
            assert_eq!(event_of(&v), Ok(Parsed::Known(ev)), "{v}");
        }
    }

    #[test]
    fn a_commit_is_a_leaders_by_one_rule() {
        let leader = |term| TraceEvent::Leader { term };
        let commit = |leader_term| TraceEvent::Commit {
            index: 1,
            term: 1,
            leader_term,
            acks: None,
            voters: None,
            old: None,
        };
        let mut c = LeaderCommits::default();
        assert!(!c.observe("n1", &leader(1)));
        // Nodes that never name the leader: the last leader's commits.
        assert!(c.observe("n1", &commit(None)));
        assert!(!c.observe("n2", &commit(None)));
        // An older term's announcement does not take leadership back.
        c.observe("n2", &leader(2));
        c.observe("n1", &leader(1));
        assert!(c.observe("n2", &commit(None)));
        // Once commits name their leader, an unnamed one is a follower's.
        assert!(c.observe("n3", &commit(Some(3))));
        assert!(!c.observe("n2", &commit(None)));
    }
}
