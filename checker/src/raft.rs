//! Raft invariants checked from trace events (traces.jsonl, docs/protocol.md).
//!
//! Each line is `{"time":NS,"node":"n1","event":E,...}`. The harness adds
//! `{"event":"start"}` each time it (re)starts a node, which begins a new
//! "life" of that node: volatile state (commit and apply indices) may reset
//! there, persistent state (votes) may not.
//!
//! A `commit` event may carry `leader_term`: the node, as
//! leader of that term, advanced its commit index by counting replicas.
//! Such a commit must land on an entry of that term (Raft §5.4.2).
//!
//! Across membership changes: a leader's `commit` may also carry `acks`
//! (who had matched the index) and `voters`/`old` (the configuration it
//! counted in, joint while `old` is set); the acks must be a majority of
//! each half. A `config` event (a leader appended a configuration, with
//! `from_voters`/`from_old`, the one it replaced) must be a safe step: into
//! a joint configuration of the old voters and the new, out of one to its
//! new half, or a single server added or removed; any other switch lets a
//! majority of the old configuration and one of the new decide apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

use crate::error::{CheckError, Located};
use crate::Verdict;

/// More violations than this are counted but not listed.
const MAX_LISTED: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: std::borrow::Cow<'static, str>,
    pub summary: String,
    pub nodes: Vec<String>,
    pub terms: Vec<u64>,
    pub indices: Vec<u64>,
    /// traces.jsonl line numbers (1-based) of the events involved.
    pub lines: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checker: &'static str,
    pub verdict: Verdict,
    pub events: usize,
    pub violation_count: usize,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone)]
enum Ev {
    Start,
    Vote {
        term: u64,
        candidate: String,
    },
    Leader {
        term: u64,
    },
    Commit {
        index: u64,
        term: u64,
        /// Set when a leader advanced its commit index by counting replicas.
        leader_term: Option<u64>,
        /// Who had matched the index, and the configuration counted in.
        quorum: Option<(Vec<String>, Conf)>,
    },
    Apply {
        index: u64,
        term: u64,
        digest: String,
    },
    Truncate {
        from: u64,
        term: Option<u64>,
    },
    Config {
        index: u64,
        term: u64,
        conf: Conf,
        from: Conf,
    },
    Other,
}

/// A configuration as traced: its voters, and the old half while joint.
#[derive(Debug, Clone, PartialEq)]
struct Conf {
    voters: Vec<String>,
    old: Option<Vec<String>>,
}

impl Conf {
    fn parse(v: &Value, prefix: &str) -> Option<Conf> {
        let list = |k: &str| -> Option<Vec<String>> {
            let mut l: Vec<String> = v
                .get(k)?
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            l.sort();
            Some(l)
        };
        Some(Conf {
            voters: list(&format!("{prefix}voters"))?,
            old: list(&format!("{prefix}old")),
        })
    }

    fn halves(&self) -> impl Iterator<Item = &Vec<String>> {
        std::iter::once(&self.voters).chain(self.old.as_ref())
    }

    /// Whether `acks` hold a majority of each half.
    fn counts(&self, acks: &[String]) -> bool {
        self.halves()
            .all(|h| 2 * h.iter().filter(|v| acks.contains(v)).count() > h.len())
    }

    /// Whether every majority of `self` meets every majority of `next`
    /// along the step (Raft §6: joint consensus, or one server at a time).
    fn steps_safely_to(&self, next: &Conf) -> bool {
        match (&self.old, &next.old) {
            (None, Some(old)) => *old == self.voters,
            (Some(_), None) => next.voters == self.voters,
            (None, None) => {
                let moved = self
                    .voters
                    .iter()
                    .filter(|v| !next.voters.contains(v))
                    .count()
                    + next
                        .voters
                        .iter()
                        .filter(|v| !self.voters.contains(v))
                        .count();
                moved <= 1
            }
            (Some(_), Some(_)) => self == next,
        }
    }

    fn show(&self) -> String {
        match &self.old {
            Some(old) => format!("{{{}}} with {{{}}}", self.voters.join(","), old.join(",")),
            None => format!("{{{}}}", self.voters.join(",")),
        }
    }
}

fn parse_line(file: &str, n: usize, line: &str) -> Result<(String, Ev), CheckError> {
    let err = |m: String| CheckError::Parse(Located::new(file, n, m));
    let v: Value =
        serde_json::from_str(line).map_err(|e| err(format!("not a trace event: {e}")))?;
    let node = v
        .get("node")
        .and_then(Value::as_str)
        .ok_or_else(|| err("trace event lacks \"node\"".into()))?;
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| err("trace event lacks \"event\"".into()))?;
    let num = |k: &str| -> Result<u64, CheckError> {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| err(format!("{event} event lacks a numeric {k:?}")))
    };
    let text = |k: &str| -> Result<String, CheckError> {
        match v.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) if !other.is_null() => Ok(other.to_string()),
            _ => Err(err(format!("{event} event lacks {k:?}"))),
        }
    };
    let ev = match event {
        "start" => Ev::Start,
        "vote" => Ev::Vote {
            term: num("term")?,
            candidate: text("candidate")?,
        },
        "leader" => Ev::Leader { term: num("term")? },
        "commit" => Ev::Commit {
            index: num("index")?,
            term: num("term")?,
            leader_term: match v.get("leader_term") {
                None | Some(Value::Null) => None,
                Some(_) => Some(num("leader_term")?),
            },
            quorum: match (v.get("acks").and_then(Value::as_array), Conf::parse(&v, "")) {
                (Some(acks), Some(conf)) => Some((
                    acks.iter()
                        .filter_map(|a| a.as_str().map(String::from))
                        .collect(),
                    conf,
                )),
                _ => None,
            },
        },
        "apply" => Ev::Apply {
            index: num("index")?,
            term: num("term")?,
            digest: text("digest")?,
        },
        "truncate" => Ev::Truncate {
            from: num("from")?,
            term: v.get("term").and_then(Value::as_u64),
        },
        "config" => Ev::Config {
            index: num("index")?,
            term: num("term")?,
            conf: Conf::parse(&v, "").ok_or_else(|| err("config event lacks \"voters\"".into()))?,
            from: Conf::parse(&v, "from_")
                .ok_or_else(|| err("config event lacks \"from_voters\"".into()))?,
        },
        _ => Ev::Other,
    };
    Ok((node.to_string(), ev))
}

/// How many times leadership moved to another node at or after
/// `since_ns` in a traces.jsonl text (the first leader seen then counts
/// only if it differs from the one before `since_ns`); `None` when no
/// node ever said it leads: a system with no leader, or one nobody asks.
/// Lines that do not parse are passed over: the invariant check reports
/// them.
pub fn leader_changes(text: &str, since_ns: u64) -> Option<usize> {
    let mut current: Option<String> = None;
    let mut changes = 0;
    for (n, line) in text.lines().enumerate() {
        let Ok((node, Ev::Leader { .. })) = parse_line("traces", n + 1, line) else {
            continue;
        };
        let time = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("time")?.as_u64())
            .unwrap_or(0);
        if current.as_deref() != Some(node.as_str()) {
            if time >= since_ns && current.is_some() {
                changes += 1;
            }
            current = Some(node);
        }
    }
    current.map(|_| changes)
}

#[derive(Default)]
struct Life {
    commit: Option<(u64, usize)>,
    apply: Option<(u64, usize)>,
}

/// Checks a traces.jsonl text. A torn last line (no newline) is ignored.
pub fn check(file: &str, text: &str) -> Result<Report, CheckError> {
    let mut violations: Vec<Violation> = Vec::new();
    let mut count = 0usize;
    let mut push = |v: Violation| {
        count += 1;
        if violations.len() < MAX_LISTED {
            violations.push(v);
        }
    };
    let mut leaders: HashMap<u64, (String, usize)> = HashMap::new();
    let mut votes: HashMap<(String, u64), (String, usize)> = HashMap::new();
    let mut applied: HashMap<u64, (u64, String, String, usize)> = HashMap::new();
    let mut committed: HashMap<u64, (u64, String, usize)> = HashMap::new();
    let mut lives: HashMap<String, Life> = HashMap::new();
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let total = text.lines().count();
    let mut events = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (node, ev) = match parse_line(file, n, line) {
            Ok(x) => x,
            Err(_) if torn_tail && n == total => break,
            Err(e) => return Err(e),
        };
        events += 1;
        match ev {
            Ev::Start => {
                lives.insert(node, Life::default());
            }
            Ev::Leader { term } => match leaders.get(&term) {
                Some((other, l)) if *other != node => push(Violation {
                    invariant: "election-safety".into(),
                    summary: format!("two leaders in term {term}: {other} (line {l}) and {node} (line {n})"),
                    nodes: vec![other.clone(), node.clone()],
                    terms: vec![term],
                    indices: vec![],
                    lines: vec![*l, n],
                }),
                Some(_) => {}
                None => {
                    leaders.insert(term, (node, n));
                }
            },
            Ev::Vote { term, candidate } => match votes.get(&(node.clone(), term)) {
                Some((prev, l)) if *prev != candidate => push(Violation {
                    invariant: "one-vote-per-term".into(),
                    summary: format!(
                        "{node} voted twice in term {term}: for {prev} (line {l}) and for {candidate} (line {n})"
                    ),
                    nodes: vec![node.clone(), prev.clone(), candidate.clone()],
                    terms: vec![term],
                    indices: vec![],
                    lines: vec![*l, n],
                }),
                Some(_) => {}
                None => {
                    votes.insert((node, term), (candidate, n));
                }
            },
            Ev::Config {
                index,
                term,
                conf,
                from,
            } => {
                if !from.steps_safely_to(&conf) {
                    push(Violation {
                        invariant: "config-change-unsafe".into(),
                        summary: format!(
                            "{node}, leader of term {term}, changed the configuration at index {index} from {} straight to {} (line {n}): a majority of each can decide without the other; Raft goes through a joint configuration, or moves one server at a time (§6)",
                            from.show(),
                            conf.show()
                        ),
                        nodes: vec![node.clone()],
                        terms: vec![term],
                        indices: vec![index],
                        lines: vec![n],
                    });
                }
            }
            Ev::Commit {
                index,
                term,
                leader_term,
                quorum,
            } => {
                if let Some((acks, conf)) = quorum {
                    if !conf.counts(&acks) {
                        push(Violation {
                            invariant: "commit-without-quorum".into(),
                            summary: format!(
                                "{node} committed index {index} (line {n}) with only {{{}}} holding it: not a majority of each half of the configuration {} in force",
                                acks.join(","),
                                conf.show()
                            ),
                            nodes: vec![node.clone()],
                            terms: vec![term],
                            indices: vec![index],
                            lines: vec![n],
                        });
                    }
                }
                // The commit rule itself (the guard of AdvanceCommitIndex in
                // the Raft TLA+ spec): an earlier term's entry counted onto a
                // majority can still be overwritten (Figure 8), so checking
                // the rule catches the mistake without waiting for the rare
                // three-leader chain that turns it into lost data.
                if let Some(lt) = leader_term {
                    if lt != term {
                        push(Violation {
                            invariant: "leader-commits-own-term".into(),
                            summary: format!(
                                "{node}, leader of term {lt}, committed index {index} of term {term} by counting replicas (line {n}); only entries of the leader's own term commit that way (Raft §5.4.2)"
                            ),
                            nodes: vec![node.clone()],
                            terms: vec![lt, term],
                            indices: vec![index],
                            lines: vec![n],
                        });
                    }
                }
                let life = lives.entry(node.clone()).or_default();
                if let Some((prev, l)) = life.commit {
                    if index < prev {
                        push(Violation {
                            invariant: "commit-monotonic".into(),
                            summary: format!("{node}'s commit index went back from {prev} (line {l}) to {index} (line {n})"),
                            nodes: vec![node.clone()],
                            terms: vec![term],
                            indices: vec![prev, index],
                            lines: vec![l, n],
                        });
                    }
                }
                life.commit = Some((index.max(life.commit.map_or(0, |c| c.0)), n));
                match committed.get(&index) {
                    Some((t, other, l)) if *t != term => push(Violation {
                        invariant: "commit-agreement".into(),
                        summary: format!(
                            "index {index} committed with term {t} on {other} (line {l}) but term {term} on {node} (line {n})"
                        ),
                        nodes: vec![other.clone(), node.clone()],
                        terms: vec![*t, term],
                        indices: vec![index],
                        lines: vec![*l, n],
                    }),
                    Some(_) => {}
                    None => {
                        committed.insert(index, (term, node, n));
                    }
                }
            }
            Ev::Apply { index, term, digest } => {
                let life = lives.entry(node.clone()).or_default();
                if let Some((prev, l)) = life.apply {
                    if index <= prev {
                        push(Violation {
                            invariant: "apply-monotonic".into(),
                            summary: format!(
                                "{node} applied index {index} (line {n}) after already applying {prev} (line {l})"
                            ),
                            nodes: vec![node.clone()],
                            terms: vec![term],
                            indices: vec![prev, index],
                            lines: vec![l, n],
                        });
                    }
                }
                life.apply = Some((index.max(life.apply.map_or(0, |a| a.0)), n));
                match applied.get(&index) {
                    Some((t, d, other, l)) if *t != term || *d != digest => push(Violation {
                        invariant: "state-machine-safety".into(),
                        summary: format!(
                            "index {index}: {other} applied term {t} digest {d} (line {l}) but {node} applied term {term} digest {digest} (line {n})"
                        ),
                        nodes: vec![other.clone(), node.clone()],
                        terms: vec![*t, term],
                        indices: vec![index],
                        lines: vec![*l, n],
                    }),
                    Some(_) => {}
                    None => {
                        applied.insert(index, (term, digest, node, n));
                    }
                }
            }
            Ev::Truncate { from, term } => {
                let life = lives.entry(node.clone()).or_default();
                if let Some((c, l)) = life.commit {
                    if from <= c {
                        push(Violation {
                            invariant: "committed-entry-truncated".into(),
                            summary: format!(
                                "{node} truncated its log from index {from} (line {n}) although it had committed up to {c} (line {l})"
                            ),
                            nodes: vec![node.clone()],
                            terms: vec![],
                            indices: vec![from, c],
                            lines: vec![l, n],
                        });
                        continue;
                    }
                }
                if let (Some(t), Some((ct, other, l))) = (term, committed.get(&from)) {
                    if *ct == t {
                        push(Violation {
                            invariant: "committed-entry-truncated".into(),
                            summary: format!(
                                "{node} truncated index {from} of term {t} (line {n}), an entry {other} had committed (line {l})"
                            ),
                            nodes: vec![other.clone(), node.clone()],
                            terms: vec![t],
                            indices: vec![from],
                            lines: vec![*l, n],
                        });
                    }
                }
            }
            Ev::Other => {}
        }
    }
    Ok(Report {
        checker: "raft-invariants",
        verdict: if count == 0 {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        events,
        violation_count: count,
        violations,
    })
}
