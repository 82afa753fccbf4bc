//! Maelstrom's `echo` (every reply carries what its request sent) and
//! `unique-ids` (no id is ever handed out twice, across nodes and
//! restarts).

use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

use crate::compose::{Checker, CheckerResult, Input};
use crate::history::Outcome;
use crate::{CheckError, Verdict};

/// Most examples listed.
const MAX_LISTED: usize = 20;

pub struct Echo;

#[derive(Debug, Serialize)]
struct Mismatch {
    node: Option<String>,
    sent: Value,
    got: Value,
}

#[derive(Debug, Serialize)]
struct EchoReport {
    ok: usize,
    mismatched: usize,
    examples: Vec<Mismatch>,
}

impl Checker for Echo {
    fn name(&self) -> &'static str {
        crate::names::ECHO
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let ok: Vec<_> = input
            .ops
            .iter()
            .filter(|o| o.f == "echo" && o.outcome == Outcome::Ok)
            .collect();
        if ok.is_empty() {
            return Ok(None);
        }
        let bad: Vec<Mismatch> = ok
            .iter()
            .filter(|o| o.input != o.output)
            .map(|o| Mismatch {
                node: o.node.clone(),
                sent: o.input.clone(),
                got: o.output.clone(),
            })
            .collect();
        let r = EchoReport {
            ok: ok.len(),
            mismatched: bad.len(),
            examples: bad.into_iter().take(MAX_LISTED).collect(),
        };
        let (verdict, summary) = match r.examples.first() {
            Some(m) => (
                Verdict::Invalid,
                format!(
                    "{} of {} echoes came back different: sent {}, got {}",
                    r.mismatched, r.ok, m.sent, m.got
                ),
            ),
            None => (
                Verdict::Valid,
                format!("all {} echoes came back unchanged", r.ok),
            ),
        };
        Ok(Some(CheckerResult::new(
            crate::names::ECHO,
            verdict,
            summary,
            &r,
        )))
    }
}

pub struct UniqueIds;

#[derive(Debug, Serialize)]
struct Duplicate {
    id: Value,
    /// Which nodes handed it out, once per time.
    nodes: Vec<Option<String>>,
}

#[derive(Debug, Serialize)]
struct IdsReport {
    generated: usize,
    distinct: usize,
    duplicated_ids: usize,
    examples: Vec<Duplicate>,
    /// Replies without an id.
    missing: usize,
}

impl Checker for UniqueIds {
    fn name(&self) -> &'static str {
        crate::names::UNIQUE_IDS
    }

    fn check(&self, input: &Input) -> Result<Option<CheckerResult>, CheckError> {
        let ok: Vec<_> = input
            .ops
            .iter()
            .filter(|o| o.f == "generate" && o.outcome == Outcome::Ok)
            .collect();
        if ok.is_empty() {
            return Ok(None);
        }
        let mut by_id: HashMap<String, (Value, Vec<Option<String>>)> = HashMap::new();
        let mut missing = 0;
        for o in &ok {
            if o.output.is_null() {
                missing += 1;
                continue;
            }
            by_id
                .entry(o.output.to_string())
                .or_insert_with(|| (o.output.clone(), Vec::new()))
                .1
                .push(o.node.clone());
        }
        let mut dups: Vec<Duplicate> = by_id
            .values()
            .filter(|(_, nodes)| nodes.len() > 1)
            .map(|(id, nodes)| Duplicate {
                id: id.clone(),
                nodes: nodes.clone(),
            })
            .collect();
        dups.sort_by_key(|d| d.id.to_string());
        let r = IdsReport {
            generated: ok.len(),
            distinct: by_id.len(),
            duplicated_ids: dups.len(),
            examples: dups.into_iter().take(MAX_LISTED).collect(),
            missing,
        };
        let (verdict, summary) = if let Some(d) = r.examples.first() {
            (
                Verdict::Invalid,
                format!(
                    "{} id(s) handed out more than once, e.g. {} ({} times)",
                    r.duplicated_ids,
                    d.id,
                    d.nodes.len()
                ),
            )
        } else if r.missing > 0 {
            (
                Verdict::Invalid,
                format!("{} generate_ok reply(ies) carried no id", r.missing),
            )
        } else {
            (
                Verdict::Valid,
                format!("all {} generated ids distinct", r.generated),
            )
        };
        Ok(Some(CheckerResult::new(
            crate::names::UNIQUE_IDS,
            verdict,
            summary,
            &r,
        )))
    }
}
