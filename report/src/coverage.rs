//! Which faults met which protocol states, counted from the nodes' trace
//! events: a fault "met" a state when the state held at some moment while
//! the fault was on. This is what a run exercised: a partition that never
//! overlapped an election tested nothing about elections.

use faultline_checker::trace::{self, LeaderCommits, Parsed, TraceEvent};
use faultline_nemesis::Kind;
use serde_json::Value;

use super::data::Band;
use faultline_rundir::TraceLine;

/// The protocol states counted, in column order.
pub const STATES: [&str; 4] = [
    "an election",
    "a new leader",
    "a leader committing",
    "a snapshot install",
];

/// The state a leader probe can see (the rest need trace events).
pub const PROBE_SEES: usize = 1;

/// How long an election with votes but no leader is taken to last.
const LEADERLESS_ELECTION_NS: u64 = 1_000_000_000;

/// Per fault kind: how many faults, how many were aimed at a moment (and
/// fired by it), and how many met each state.
pub struct Row {
    pub kind: Kind,
    pub faults: usize,
    pub aimed: usize,
    pub fired_by_event: usize,
    pub met: [usize; STATES.len()],
}

pub struct Coverage {
    pub rows: Vec<Row>,
    /// Whether the nodes emitted any protocol trace events at all.
    pub traced: bool,
    /// The only reports on the nodes came from a leader probe (a server
    /// without trace events): a new leader can be seen, nothing else.
    pub probed_only: bool,
    /// How often each state occurred in the run.
    pub occurred: [usize; STATES.len()],
}

/// The states as time spans: points are spans of length zero.
struct States {
    spans: [Vec<(u64, u64)>; STATES.len()],
}

impl States {
    fn from_traces(lines: &[TraceLine]) -> States {
        let mut spans: [Vec<(u64, u64)>; STATES.len()] = Default::default();
        let mut leader_commits = LeaderCommits::default();
        // Per term, when its first vote was granted (an election began).
        let mut voting: Vec<(u64, u64)> = Vec::new();
        for l in lines {
            // What the checker cannot read, or does not know, met nothing.
            let Ok(Parsed::Known(ev)) = trace::event_in(&l.fields) else {
                continue;
            };
            let leaders = leader_commits.observe(&l.node, &ev);
            match ev {
                TraceEvent::Vote { term: t, .. } if !voting.iter().any(|&(vt, _)| vt == t) => {
                    voting.push((t, l.time));
                }
                TraceEvent::Leader { term: t } => {
                    spans[1].push((l.time, l.time));
                    // Every election up to this term is over.
                    for (_, start) in voting.iter().filter(|&&(vt, _)| vt <= t) {
                        spans[0].push((*start, l.time));
                    }
                    voting.retain(|&(vt, _)| vt > t);
                }
                TraceEvent::Commit { .. } if leaders => spans[2].push((l.time, l.time)),
                TraceEvent::Snapshot { .. } => spans[3].push((l.time, l.time)),
                _ => {}
            }
        }
        for (_, start) in voting {
            spans[0].push((start, start + LEADERLESS_ELECTION_NS));
        }
        for s in &mut spans {
            s.sort_unstable();
        }
        States { spans }
    }

    /// Whether state `i` held at some time in [start, end].
    fn met(&self, i: usize, start: u64, end: u64) -> bool {
        let s = &self.spans[i];
        // Spans are sorted by start; only those starting by `end` can
        // overlap, and elections are short, so a bounded look back suffices.
        let upto = s.partition_point(|&(a, _)| a <= end);
        s[..upto].iter().rev().take(64).any(|&(_, b)| b >= start)
    }
}

/// How often each of `STATES` occurred in `traces`, read as every other
/// reader of traces reads them (`faultline_checker::trace`).
pub fn states_occurred(traces: &[TraceLine]) -> [usize; STATES.len()] {
    compute(&[], traces).occurred
}

/// Coverage of the run's fault bands by the states in `traces`.
pub fn compute(bands: &[Band], traces: &[TraceLine]) -> Coverage {
    let states = States::from_traces(traces);
    let source = |l: &TraceLine| {
        l.fields
            .get("source")
            .and_then(Value::as_str)
            .map(String::from)
    };
    let traced = traces
        .iter()
        .any(|l| source(l).as_deref() != Some("harness"));
    let probed_only = traced
        && traces
            .iter()
            .all(|l| matches!(source(l).as_deref(), Some("harness" | "leader-probe")));
    let mut rows: Vec<Row> = Vec::new();
    for b in bands {
        let i = match rows.iter().position(|r| r.kind == b.kind) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    kind: b.kind,
                    faults: 0,
                    aimed: 0,
                    fired_by_event: 0,
                    met: [0; STATES.len()],
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.faults += 1;
        if let Some(m) = &b.moment {
            r.aimed += 1;
            r.fired_by_event += usize::from(m.fired_by_event);
        }
        for (s, met) in r.met.iter_mut().enumerate() {
            *met += usize::from(states.met(s, b.start, b.end));
        }
    }
    rows.sort_by_key(|r| r.kind);
    let occurred = std::array::from_fn(|i| states.spans[i].len());
    Coverage {
        rows,
        traced,
        probed_only,
        occurred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(time: u64, node: &str, fields: Value) -> TraceLine {
        TraceLine {
            time,
            node: node.into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    fn band(kind: Kind, start: u64, end: u64) -> Band {
        Band {
            start,
            end,
            label: String::new(),
            effect: String::new(),
            kind,
            moment: None,
        }
    }

    #[test]
    fn faults_meet_the_states_that_held_while_they_were_on() {
        let traces = vec![
            line(
                10,
                "n1",
                json!({"event": "vote", "term": 2, "candidate": "n2"}),
            ),
            line(20, "n2", json!({"event": "leader", "term": 2})),
            line(
                30,
                "n2",
                json!({"event": "commit", "index": 1, "term": 2, "leader_term": 2}),
            ),
            // A follower learning the commit index is not a leader committing.
            line(60, "n1", json!({"event": "commit", "index": 1, "term": 2})),
            line(
                70,
                "n3",
                json!({"event": "snapshot", "index": 1, "term": 2}),
            ),
        ];
        let bands = [
            band(Kind::Partition, 0, 15),  // during the election
            band(Kind::Partition, 15, 25), // election ends, leader elected
            band(Kind::Kill, 50, 65),      // nothing but a follower commit
            band(Kind::Pause, 25, 80),     // a commit and a snapshot
        ];
        let c = compute(&bands, &traces);
        assert!(c.traced);
        assert_eq!(c.occurred, [1, 1, 1, 1]);
        let row = |k| c.rows.iter().find(|r| r.kind == k).unwrap();
        assert_eq!(row(Kind::Partition).faults, 2);
        assert_eq!(row(Kind::Partition).met, [2, 1, 0, 0]);
        assert_eq!(row(Kind::Kill).met, [0, 0, 0, 0]);
        assert_eq!(row(Kind::Pause).met, [0, 0, 1, 1]);
        // No traces from the nodes: nothing is known to have been met.
        let harness_only = vec![line(
            5,
            "n1",
            json!({"event": "start", "source": "harness"}),
        )];
        let c = compute(&bands, &harness_only);
        assert!(!c.traced);
        assert!(!compute(&bands, &traces).probed_only);
        // A leader probe's elections: only new leaders can be seen.
        let probed = vec![
            harness_only[0].clone(),
            line(
                20,
                "n2",
                json!({"event": "leader", "term": 1, "source": "leader-probe"}),
            ),
        ];
        let p = compute(&bands, &probed);
        assert!(p.traced && p.probed_only);
        assert_eq!(p.occurred[PROBE_SEES], 1);
        assert_eq!(STATES[PROBE_SEES], "a new leader");
        assert!(c.rows.iter().all(|r| r.met == [0; 4]));
    }
}
