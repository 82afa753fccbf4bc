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
use std::collections::{BTreeMap, HashMap};

use crate::error::{CheckError, Located};
use crate::trace::{self, Parsed, TraceEvent, Traced};
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
    /// Events of kinds faultline does not know, by name: kept, counted,
    /// never checked (a misspelled `comit` shows here).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_events: BTreeMap<String, usize>,
    pub violation_count: usize,
    pub violations: Vec<Violation>,
}

/// A configuration as traced: its voters, and the old half while joint.
#[derive(Debug, Clone, PartialEq)]
struct Conf {
    voters: Vec<String>,
    old: Option<Vec<String>>,
}

impl Conf {
    fn new(voters: &[String], old: Option<&Vec<String>>) -> Conf {
        let sorted = |l: &[String]| {
            let mut l = l.to_vec();
            l.sort();
            l
        };
        Conf {
            voters: sorted(voters),
            old: old.map(|o| sorted(o)),
        }
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
                let gone = self.voters.iter().filter(|v| !next.voters.contains(v));
                let new = next.voters.iter().filter(|v| !self.voters.contains(v));
                gone.count() + new.count() <= 1
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

fn parse_line(file: &str, n: usize, line: &str) -> Result<Traced, CheckError> {
    trace::parse_line(line).map_err(|m| CheckError::Parse(Located::new(file, n, m)))
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
    for line in text.lines() {
        let Ok(t) = trace::parse_line(line) else {
            continue;
        };
        if !matches!(t.event, Parsed::Known(TraceEvent::Leader { .. })) {
            continue;
        }
        if current.as_deref() != Some(t.node.as_str()) {
            if t.time_ns >= since_ns && current.is_some() {
                changes += 1;
            }
            current = Some(t.node);
        }
    }
    current.map(|_| changes)
}

/// Where an event is: its node and traces.jsonl line.
struct At<'a> {
    node: &'a str,
    line: usize,
}

/// One invariant, checked event by event: each keeps the state it needs.
trait Invariant {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found);
}

/// The violations found so far: all counted, the first `MAX_LISTED` kept.
#[derive(Default)]
struct Found {
    count: usize,
    listed: Vec<Violation>,
}

impl Found {
    /// A violation by this event alone: its node, its line.
    fn here(
        &mut self,
        invariant: &'static str,
        at: &At,
        summary: String,
        terms: Vec<u64>,
        indices: Vec<u64>,
    ) {
        let (nodes, lines) = (vec![at.node.to_string()], vec![at.line]);
        self.push(invariant, summary, nodes, terms, indices, lines);
    }

    fn push(
        &mut self,
        invariant: &'static str,
        summary: String,
        nodes: Vec<String>,
        terms: Vec<u64>,
        indices: Vec<u64>,
        lines: Vec<usize>,
    ) {
        self.count += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(Violation {
                invariant: invariant.into(),
                summary,
                nodes,
                terms,
                indices,
                lines,
            });
        }
    }
}

/// At most one leader per term.
#[derive(Default)]
struct ElectionSafety {
    leaders: HashMap<u64, (String, usize)>,
}

impl Invariant for ElectionSafety {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Leader { term } = *ev else {
            return;
        };
        let (node, n) = (at.node, at.line);
        match self.leaders.get(&term) {
            Some((other, l)) if other != node => found.push(
                "election-safety",
                format!("two leaders in term {term}: {other} (line {l}) and {node} (line {n})"),
                vec![other.clone(), node.to_string()],
                vec![term],
                vec![],
                vec![*l, n],
            ),
            Some(_) => {}
            None => {
                self.leaders.insert(term, (node.to_string(), n));
            }
        }
    }
}

/// A node votes for one candidate per term, across restarts.
#[derive(Default)]
struct OneVotePerTerm {
    votes: HashMap<(String, u64), (String, usize)>,
}

impl Invariant for OneVotePerTerm {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Vote { term, candidate } = ev else {
            return;
        };
        let (node, n, term) = (at.node, at.line, *term);
        match self.votes.get(&(node.to_string(), term)) {
            Some((prev, l)) if prev != candidate => found.push(
                "one-vote-per-term",
                format!("{node} voted twice in term {term}: for {prev} (line {l}) and for {candidate} (line {n})"),
                vec![node.to_string(), prev.clone(), candidate.clone()],
                vec![term],
                vec![],
                vec![*l, n],
            ),
            Some(_) => {}
            None => {
                self.votes
                    .insert((node.to_string(), term), (candidate.clone(), n));
            }
        }
    }
}

/// A configuration changes into a joint one, out of one, or by one server.
#[derive(Default)]
struct ConfigChangeSafe;

impl Invariant for ConfigChangeSafe {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Config {
            index,
            term,
            voters,
            old,
            from_voters,
            from_old,
        } = ev
        else {
            return;
        };
        let (conf, from) = (
            Conf::new(voters, old.as_ref()),
            Conf::new(from_voters, from_old.as_ref()),
        );
        if !from.steps_safely_to(&conf) {
            found.here(
                "config-change-unsafe",
                at,
                format!(
                    "{}, leader of term {term}, changed the configuration at index {index} from {} straight to {} (line {}): a majority of each can decide without the other; Raft goes through a joint configuration, or moves one server at a time (§6)",
                    at.node,
                    from.show(),
                    conf.show(),
                    at.line
                ),
                vec![*term],
                vec![*index],
            );
        }
    }
}

/// A commit that names who had matched it holds a majority of each half
/// of the configuration it counted in.
#[derive(Default)]
struct CommitQuorum;

impl Invariant for CommitQuorum {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Commit {
            index,
            term,
            acks: Some(acks),
            voters: Some(voters),
            old,
            ..
        } = ev
        else {
            return;
        };
        let conf = Conf::new(voters, old.as_ref());
        if !conf.counts(acks) {
            found.here(
                "commit-without-quorum",
                at,
                format!(
                    "{} committed index {index} (line {}) with only {{{}}} holding it: not a majority of each half of the configuration {} in force",
                    at.node,
                    at.line,
                    acks.join(","),
                    conf.show()
                ),
                vec![*term],
                vec![*index],
            );
        }
    }
}

/// The commit rule itself (the guard of AdvanceCommitIndex in the Raft
/// TLA+ spec): an earlier term's entry counted onto a majority can still
/// be overwritten (Figure 8), so checking the rule catches the mistake
/// without waiting for the rare three-leader chain that turns it into
/// lost data.
#[derive(Default)]
struct LeaderCommitsOwnTerm;

impl Invariant for LeaderCommitsOwnTerm {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Commit {
            index,
            term,
            leader_term: Some(lt),
            ..
        } = *ev
        else {
            return;
        };
        if lt != term {
            found.here(
                "leader-commits-own-term",
                at,
                format!(
                    "{}, leader of term {lt}, committed index {index} of term {term} by counting replicas (line {}); only entries of the leader's own term commit that way (Raft §5.4.2)",
                    at.node, at.line
                ),
                vec![lt, term],
                vec![index],
            );
        }
    }
}

/// Within one life of a node (from a `start` on), an index that only
/// grows: the commit index, or the last applied one.
struct Monotonic {
    /// The applied index (else the commit index).
    applying: bool,
    /// Per node: the highest index of this life, and its line.
    lives: HashMap<String, (u64, usize)>,
}

impl Monotonic {
    fn new(applying: bool) -> Monotonic {
        Monotonic {
            applying,
            lives: HashMap::new(),
        }
    }
}

impl Invariant for Monotonic {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let (node, n) = (at.node, at.line);
        let applying = self.applying;
        let (index, term) = match (applying, ev) {
            (_, TraceEvent::Start {}) => {
                self.lives.remove(node);
                return;
            }
            (false, TraceEvent::Commit { index, term, .. }) => (*index, *term),
            (true, TraceEvent::Apply { index, term, .. }) => (*index, *term),
            _ => return,
        };
        if let Some(&(prev, l)) = self.lives.get(node) {
            // A commit may repeat its index; an apply may not.
            if index < prev || (applying && index == prev) {
                let summary = match applying {
                    true => format!("{node} applied index {index} (line {n}) after already applying {prev} (line {l})"),
                    false => format!("{node}'s commit index went back from {prev} (line {l}) to {index} (line {n})"),
                };
                let lines = vec![l, n];
                let invariant = match applying {
                    true => "apply-monotonic",
                    false => "commit-monotonic",
                };
                found.push(
                    invariant,
                    summary,
                    vec![node.to_string()],
                    vec![term],
                    vec![prev, index],
                    lines,
                );
            }
        }
        let high = self.lives.get(node).map_or(0, |h| h.0).max(index);
        self.lives.insert(node.to_string(), (high, n));
    }
}

/// An index committed with one term is committed with that term on
/// every node.
#[derive(Default)]
struct CommitAgreement {
    committed: HashMap<u64, (u64, String, usize)>,
}

impl Invariant for CommitAgreement {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Commit { index, term, .. } = *ev else {
            return;
        };
        let (node, n) = (at.node, at.line);
        match self.committed.get(&index) {
            Some((t, other, l)) if *t != term => found.push(
                "commit-agreement",
                format!("index {index} committed with term {t} on {other} (line {l}) but term {term} on {node} (line {n})"),
                vec![other.clone(), node.to_string()],
                vec![*t, term],
                vec![index],
                vec![*l, n],
            ),
            Some(_) => {}
            None => {
                self.committed.insert(index, (term, node.to_string(), n));
            }
        }
    }
}

/// Every node applies the same command (term and digest) at an index.
#[derive(Default)]
struct StateMachineSafety {
    applied: HashMap<u64, (u64, String, String, usize)>,
}

impl Invariant for StateMachineSafety {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let TraceEvent::Apply {
            index,
            term,
            digest,
        } = ev
        else {
            return;
        };
        let (node, n, index, term) = (at.node, at.line, *index, *term);
        match self.applied.get(&index) {
            Some((t, d, other, l)) if *t != term || d != digest => found.push(
                "state-machine-safety",
                format!("index {index}: {other} applied term {t} digest {d} (line {l}) but {node} applied term {term} digest {digest} (line {n})"),
                vec![other.clone(), node.to_string()],
                vec![*t, term],
                vec![index],
                vec![*l, n],
            ),
            Some(_) => {}
            None => {
                self.applied
                    .insert(index, (term, digest.clone(), node.to_string(), n));
            }
        }
    }
}

/// Nothing committed is truncated: not on the node that committed it
/// (in this life), nor an entry another node committed with that term.
#[derive(Default)]
struct CommittedNotTruncated {
    /// Per node: the highest commit index of this life, and its line.
    lives: HashMap<String, (u64, usize)>,
    committed: HashMap<u64, (u64, String, usize)>,
}

impl Invariant for CommittedNotTruncated {
    fn observe(&mut self, at: &At, ev: &TraceEvent, found: &mut Found) {
        let (node, n) = (at.node, at.line);
        match *ev {
            TraceEvent::Start {} => {
                self.lives.remove(node);
            }
            TraceEvent::Commit { index, term, .. } => {
                let high = self.lives.get(node).map_or(0, |h| h.0).max(index);
                self.lives.insert(node.to_string(), (high, n));
                self.committed
                    .entry(index)
                    .or_insert_with(|| (term, node.to_string(), n));
            }
            TraceEvent::Truncate { from, term } => {
                if let Some(&(c, l)) = self.lives.get(node).filter(|(c, _)| from <= *c) {
                    found.push(
                        "committed-entry-truncated",
                        format!("{node} truncated its log from index {from} (line {n}) although it had committed up to {c} (line {l})"),
                        vec![node.to_string()],
                        vec![],
                        vec![from, c],
                        vec![l, n],
                    );
                    return;
                }
                let Some((t, (ct, other, l))) = term.zip(self.committed.get(&from)) else {
                    return;
                };
                if *ct == t {
                    found.push(
                        "committed-entry-truncated",
                        format!("{node} truncated index {from} of term {t} (line {n}), an entry {other} had committed (line {l})"),
                        vec![other.clone(), node.to_string()],
                        vec![t],
                        vec![from],
                        vec![*l, n],
                    );
                }
            }
            _ => {}
        }
    }
}

/// Every invariant checked, in the order their violations are listed.
fn invariants() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(ElectionSafety::default()),
        Box::new(OneVotePerTerm::default()),
        Box::new(ConfigChangeSafe),
        Box::new(CommitQuorum),
        Box::new(LeaderCommitsOwnTerm),
        Box::new(Monotonic::new(false)),
        Box::new(CommitAgreement::default()),
        Box::new(Monotonic::new(true)),
        Box::new(StateMachineSafety::default()),
        Box::new(CommittedNotTruncated::default()),
    ]
}

/// Checks a traces.jsonl text. A torn last line (no newline) is ignored.
pub fn check(file: &str, text: &str) -> Result<Report, CheckError> {
    let mut found = Found::default();
    let mut invariants = invariants();
    let mut unknown_events: BTreeMap<String, usize> = BTreeMap::new();
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let total = text.lines().count();
    let mut events = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let t = match parse_line(file, n, line) {
            Ok(t) => t,
            Err(_) if torn_tail && n == total => break,
            Err(e) => return Err(e),
        };
        events += 1;
        let ev = match t.event {
            Parsed::Known(ev) => ev,
            Parsed::Unknown(name) => {
                *unknown_events.entry(name).or_default() += 1;
                continue;
            }
        };
        let at = At {
            node: &t.node,
            line: n,
        };
        for inv in &mut invariants {
            inv.observe(&at, &ev, &mut found);
        }
    }
    Ok(Report {
        checker: crate::names::RAFT_INVARIANTS,
        verdict: if found.count == 0 {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        events,
        unknown_events,
        violation_count: found.count,
        violations: found.listed,
    })
}
