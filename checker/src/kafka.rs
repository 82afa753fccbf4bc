//! Maelstrom's `kafka` checks. Every observation of (key, offset, message)
//! comes from an acknowledged `send` (its offset) or a `poll`; from them:
//! - inconsistent offsets: one offset of a key holding two messages;
//! - duplicates: one message at two offsets;
//! - lost writes: an acknowledged message at an offset that polls read
//!   past (a poll returned a later offset of its key) but never returned;
//! - poll skips: a poll that, between its start and the offsets it
//!   returned, jumped over an offset known to hold a message;
//! - non-monotonic polls: offsets within one poll's answer not increasing;
//! - non-monotonic sends: one process's sends to a key getting offsets
//!   that go back;
//! - committed offsets going back: a `list_committed_offsets` answer below
//!   a commit acknowledged before it was asked.
//!   Wrongly shaped answers are counted, not trusted.

use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::compose::{Checker, CheckerResult, Input};
use crate::history::{Op, Outcome, Process};
use crate::{CheckError, Verdict};

pub struct Kafka;

/// Most examples kept per anomaly.
const MAX_LISTED: usize = 10;

#[derive(Debug, Default, Serialize)]
struct Report {
    sends_ok: usize,
    polls_ok: usize,
    /// Each anomaly: how many, and a few examples.
    anomalies: BTreeMap<&'static str, (usize, Vec<Value>)>,
    /// Answers of the wrong shape (an offset that is not a number...).
    malformed_answers: usize,
}

impl Report {
    fn add(&mut self, anomaly: &'static str, example: Value) {
        let (n, ex) = self.anomalies.entry(anomaly).or_default();
        *n += 1;
        if ex.len() < MAX_LISTED {
            ex.push(example);
        }
    }
}

/// What one key's log was seen to hold.
#[derive(Default)]
struct KeyLog {
    /// offset -> messages seen there (more than one: inconsistent).
    at: BTreeMap<u64, BTreeSet<String>>,
    /// Acknowledged sends: (offset, message).
    acked: Vec<(u64, String)>,
    /// Highest offset any poll returned.
    polled_max: Option<u64>,
    /// Every (offset) a poll returned, with its message.
    polled: BTreeSet<(u64, String)>,
}

type Pairs = Vec<(u64, String)>;

/// A poll answer's `msgs` as key -> [(offset, message)]; `None` if malformed.
fn poll_msgs(v: &Value) -> Option<BTreeMap<String, Pairs>> {
    let mut out = BTreeMap::new();
    for (k, pairs) in v.as_object()? {
        let mut ps = Vec::new();
        for p in pairs.as_array()? {
            let a = p.as_array()?;
            ps.push((a.first()?.as_u64()?, a.get(1)?.to_string()));
        }
        out.insert(k.clone(), ps);
    }
    Some(out)
}

impl Checker for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let ok = |f: &str| -> Vec<&Op> {
            input
                .ops
                .iter()
                .filter(|o| o.f == f && o.outcome == Outcome::Ok)
                .collect()
        };
        let (sends, polls) = (ok("send"), ok("poll"));
        if sends.is_empty() && polls.is_empty() {
            return Ok(None);
        }
        let mut r = Report {
            sends_ok: sends.len(),
            polls_ok: polls.len(),
            ..Report::default()
        };
        let mut logs: HashMap<String, KeyLog> = HashMap::new();
        record_sends(&sends, &mut logs, &mut r);
        let parsed = record_polls(&polls, &mut logs, &mut r);
        judge_logs(&logs, &mut r);
        poll_skips(&parsed, &logs, &mut r);
        committed_offsets(input.ops, &mut r);
        Ok(Some(verdict(r)))
    }
}

fn record_sends(sends: &[&Op], logs: &mut HashMap<String, KeyLog>, r: &mut Report) {
    // Per (process, key): the last offset its sends got.
    let mut last: HashMap<(&Process, String), u64> = HashMap::new();
    let mut by_time: Vec<&&Op> = sends.iter().collect();
    by_time.sort_by_key(|o| o.invoke_time);
    for o in by_time {
        let (Some(key), Some(offset)) = (o.key.clone(), o.output.as_u64()) else {
            r.malformed_answers += 1;
            continue;
        };
        let msg = o.input.to_string();
        let log = logs.entry(key.clone()).or_default();
        log.at.entry(offset).or_default().insert(msg.clone());
        log.acked.push((offset, msg.clone()));
        if let Some(prev) = last.insert((&o.process, key.clone()), offset) {
            if offset <= prev {
                r.add(
                    "nonmonotonic-send",
                    serde_json::json!({"key": key, "process": o.process.to_string(), "offsets": [prev, offset]}),
                );
            }
        }
    }
}

/// Records what each poll returned; returns each well-formed poll's asked
/// offsets and answer, for the skip check.
fn record_polls<'a>(
    polls: &[&'a Op],
    logs: &mut HashMap<String, KeyLog>,
    r: &mut Report,
) -> Vec<(&'a Op, BTreeMap<String, Pairs>)> {
    let mut out = Vec::new();
    for o in polls {
        let Some(msgs) = poll_msgs(&o.output) else {
            r.malformed_answers += 1;
            continue;
        };
        for (key, pairs) in &msgs {
            let log = logs.entry(key.clone()).or_default();
            for w in pairs.windows(2) {
                if w[1].0 <= w[0].0 {
                    r.add(
                        "nonmonotonic-poll",
                        serde_json::json!({"key": key, "offsets": [w[0].0, w[1].0]}),
                    );
                }
            }
            for (offset, msg) in pairs {
                log.at.entry(*offset).or_default().insert(msg.clone());
                log.polled.insert((*offset, msg.clone()));
                log.polled_max = log.polled_max.max(Some(*offset));
            }
        }
        out.push((*o, msgs));
    }
    out
}

fn judge_logs(logs: &HashMap<String, KeyLog>, r: &mut Report) {
    let mut keys: Vec<&String> = logs.keys().collect();
    keys.sort();
    for key in keys {
        let log = &logs[key];
        let mut where_msg: HashMap<&String, BTreeSet<u64>> = HashMap::new();
        for (offset, msgs) in &log.at {
            if msgs.len() > 1 {
                r.add(
                    "inconsistent-offsets",
                    serde_json::json!({"key": key, "offset": offset, "messages": msgs}),
                );
            }
            for m in msgs {
                where_msg.entry(m).or_default().insert(*offset);
            }
        }
        for (m, offsets) in where_msg.iter().filter(|(_, o)| o.len() > 1) {
            r.add(
                "duplicate",
                serde_json::json!({"key": key, "message": m, "offsets": offsets}),
            );
        }
        for (offset, msg) in &log.acked {
            let read_past = log.polled_max.is_some_and(|m| m > *offset);
            if read_past && !log.polled.contains(&(*offset, msg.clone())) {
                r.add(
                    "lost-write",
                    serde_json::json!({"key": key, "offset": offset, "message": msg}),
                );
            }
        }
    }
}

/// A poll from offset `p` returning offsets q1 < q2 < ... skipped any
/// offset known to hold a message in [p, q_last] that it did not return.
fn poll_skips(
    polls: &[(&Op, BTreeMap<String, Pairs>)],
    logs: &HashMap<String, KeyLog>,
    r: &mut Report,
) {
    for (o, msgs) in polls {
        for (key, pairs) in msgs {
            let Some(from) = o.input.get(key).and_then(Value::as_u64) else {
                continue;
            };
            let (Some(last), Some(log)) = (pairs.last(), logs.get(key)) else {
                continue;
            };
            let returned: BTreeSet<u64> = pairs.iter().map(|p| p.0).collect();
            if let Some(skipped) = log
                .at
                .range(from..=last.0)
                .map(|(off, _)| *off)
                .find(|off| !returned.contains(off))
            {
                r.add(
                    "poll-skip",
                    serde_json::json!({"key": key, "from": from, "skipped": skipped, "returned_up_to": last.0}),
                );
            }
        }
    }
}

/// A committed offset, once acknowledged, never reads back lower.
fn committed_offsets(ops: &[Op], r: &mut Report) {
    let mut commits: Vec<(u64, &str, u64)> = Vec::new();
    for o in ops
        .iter()
        .filter(|o| o.f == "commit_offsets" && o.outcome == Outcome::Ok)
    {
        for (k, v) in o.input.as_object().into_iter().flatten() {
            if let (Some(v), Some(t)) = (v.as_u64(), o.complete_time) {
                commits.push((t, k, v));
            }
        }
    }
    for o in ops
        .iter()
        .filter(|o| o.f == "list_committed_offsets" && o.outcome == Outcome::Ok)
    {
        let Some(listed) = o.output.as_object() else {
            r.malformed_answers += 1;
            continue;
        };
        for (k, v) in listed {
            let floor = commits
                .iter()
                .filter(|(t, ck, _)| *t < o.invoke_time && ck == k)
                .map(|c| c.2)
                .max();
            if let (Some(floor), Some(v)) = (floor, v.as_u64()) {
                if v < floor {
                    r.add(
                        "committed-offset-went-back",
                        serde_json::json!({"key": k, "committed": floor, "listed": v}),
                    );
                }
            }
        }
    }
}

fn verdict(r: Report) -> CheckerResult {
    let (verdict, summary) = if let Some((name, (_, ex))) = r.anomalies.iter().next() {
        let all: Vec<String> = r
            .anomalies
            .iter()
            .map(|(a, (n, _))| format!("{a} ×{n}"))
            .collect();
        (
            Verdict::Invalid,
            format!("{}; e.g. {name}: {}", all.join(", "), ex[0]),
        )
    } else if r.malformed_answers > 0 {
        (
            Verdict::Invalid,
            format!(
                "{} answer(s) of the wrong shape (an offset that is not a number, msgs that are not [offset, message] pairs)",
                r.malformed_answers
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "{} acknowledged sends and {} polls consistent: no lost, skipped, duplicated or reordered messages",
                r.sends_ok, r.polls_ok
            ),
        )
    };
    let summary = if r.malformed_answers > 0 {
        format!(
            "{summary} ({} malformed answer(s) ignored)",
            r.malformed_answers
        )
    } else {
        summary
    };
    CheckerResult::new("kafka", verdict, summary, &r)
}
