//! Maelstrom's `kafka` checks. Every observation of (key, offset, message)
//! comes from an acknowledged `send` (its offset) or a `poll`; from them:
//! - inconsistent offsets: one offset of a key holding two messages;
//! - duplicates: one message at two offsets;
//! - lost writes: an acknowledged message at an offset that polls read
//!   past (a poll returned a later offset of its key) but never returned,
//!   or that the final polls (which read each key from offset 0, page by
//!   page, until a page comes back empty) do not hold: a log that vanished
//!   whole shows no later offset, and is lost all the same;
//! - poll skips: a poll that, between its start and the offsets it
//!   returned, jumped over an offset known to hold a message;
//! - non-monotonic polls: offsets within one poll's answer not increasing;
//! - non-monotonic sends: one process's sends to a key getting offsets
//!   that go back;
//! - committed offsets going back: a `list_committed_offsets` answer below
//!   a commit acknowledged before it was asked.
//!
//! Wrongly shaped answers are counted, not trusted. With no acknowledged
//! send, or a key with acknowledged sends that no final poll read to its
//! end, nothing says what was kept: `unknown`, with the keys named.

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
    /// Keys whose final polls read the log to its end, and how many
    /// messages they held in all.
    keys_read_to_end: usize,
    final_messages: usize,
    /// Keys with acknowledged sends that no final poll read to the end.
    keys_not_read_to_end: Vec<String>,
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
    /// Acknowledged sends: (offset, message, when acknowledged in ns).
    acked: Vec<(u64, String, Option<u64>)>,
    /// Highest offset any poll returned.
    polled_max: Option<u64>,
    /// Every (offset) a poll returned, with its message.
    polled: BTreeSet<(u64, String)>,
    /// What the final polls held, when they read the log to its end.
    final_read: Option<BTreeSet<(u64, String)>>,
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
        crate::names::KAFKA
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
        final_reads(&parsed, &mut logs);
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
        log.acked.push((offset, msg.clone(), o.complete_time));
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
        lost_writes(key, log, r);
    }
}

/// An acknowledged message is lost when polls read past its offset
/// without it, or when the final polls read its key to the end without it.
fn lost_writes(key: &str, log: &KeyLog, r: &mut Report) {
    match &log.final_read {
        Some(kept) => {
            r.keys_read_to_end += 1;
            r.final_messages += kept.len();
        }
        None if !log.acked.is_empty() => r.keys_not_read_to_end.push(key.to_string()),
        None => {}
    }
    for (offset, msg, at_ns) in &log.acked {
        let pair = (*offset, msg.clone());
        let read_past = log.polled_max.is_some_and(|m| m > *offset) && !log.polled.contains(&pair);
        let not_kept = log
            .final_read
            .as_ref()
            .is_some_and(|kept| !kept.contains(&pair));
        if !(read_past || not_kept) {
            continue;
        }
        let why = if not_kept {
            "absent from the final polls, which read the key from offset 0 to its end"
        } else {
            "polls read past its offset and never returned it"
        };
        let at_s = at_ns.map(|t| t as f64 / 1e9);
        r.add(
            "lost-write",
            serde_json::json!({"key": key, "offset": offset, "message": msg, "acknowledged_s": at_s, "why": why}),
        );
    }
}

/// Follows each key's final polls from offset 0, page to next page; a key
/// whose chain ends in an empty page was read to its end.
fn final_reads(polls: &[(&Op, BTreeMap<String, Pairs>)], logs: &mut HashMap<String, KeyLog>) {
    // Per key: the last final page asked from each offset.
    let mut pages: HashMap<&str, BTreeMap<u64, &Pairs>> = HashMap::new();
    let mut by_time: Vec<&(&Op, BTreeMap<String, Pairs>)> =
        polls.iter().filter(|(o, _)| o.final_read).collect();
    by_time.sort_by_key(|(o, _)| o.invoke_time);
    const EMPTY: &Pairs = &Vec::new();
    for (o, msgs) in by_time {
        for (key, from) in o.input.as_object().into_iter().flatten() {
            let Some(from) = from.as_u64() else {
                continue;
            };
            let page = msgs.get(key).unwrap_or(EMPTY);
            pages.entry(key).or_default().insert(from, page);
        }
    }
    for (key, pages) in pages {
        let Some(log) = logs.get_mut(key) else {
            // A key nobody sent to, read empty: nothing to keep.
            continue;
        };
        let mut kept = BTreeSet::new();
        let mut at = 0;
        // Each step moves past a page's last offset, so there are at most
        // as many steps as pages.
        for _ in 0..=pages.len() {
            let Some(page) = pages.get(&at) else {
                break;
            };
            let Some(top) = page.iter().map(|p| p.0).max().filter(|t| *t >= at) else {
                if page.is_empty() {
                    log.final_read = Some(std::mem::take(&mut kept));
                }
                break;
            };
            kept.extend(page.iter().cloned());
            at = top + 1;
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
        // Every key asked: one committed before and missing from the
        // answer went back as surely as one listed lower.
        let asked = o
            .input
            .as_array()
            .into_iter()
            .flatten()
            .map(crate::history::key_string);
        for k in asked {
            let floor = commits
                .iter()
                .filter(|(t, ck, _)| *t < o.invoke_time && *ck == k)
                .map(|c| c.2)
                .max();
            let listed_v = match listed.get(&k) {
                Some(v) if !v.is_u64() => continue, // counted as malformed below
                v => v.and_then(Value::as_u64),
            };
            if let Some(floor) = floor.filter(|f| listed_v.is_none_or(|v| v < *f)) {
                r.add(
                    "committed-offset-went-back",
                    serde_json::json!({"key": k, "committed": floor, "listed": listed_v}),
                );
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
    } else if r.sends_ok == 0 {
        (
            Verdict::Unknown,
            format!(
                "no send was acknowledged ({} polls): nothing could have been lost",
                r.polls_ok
            ),
        )
    } else if !r.keys_not_read_to_end.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "the final polls did not read keys {:?} to their end (none succeeded, or a page never came back empty): what those keys kept of their acknowledged sends is not known",
                r.keys_not_read_to_end
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "{} acknowledged sends and {} polls consistent, every one of them in the final polls ({} messages over {} keys): no lost, skipped, duplicated or reordered messages",
                r.sends_ok, r.polls_ok, r.final_messages, r.keys_read_to_end
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
    CheckerResult::new(crate::names::KAFKA, verdict, summary, &r)
}
