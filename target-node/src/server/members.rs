//! Membership requests on a node (README, "Membership"): `member_add`,
//! `member_remove` and `member_replace` ask the leader for a change and are
//! answered once the new configuration is committed; `members` reports the
//! configuration this node has in force. `init` may carry `members`, the
//! bootstrap voters: a node not among them starts with no configuration
//! and waits to be added.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;

use super::{code, error_body, Server};
use crate::raft::{Change, ChangeError, Membership, NodeIx};

/// Most membership requests waiting at once; more are refused.
const MAX_WAITERS: usize = 16;
/// How long a request waits for its configuration to commit (ticks; 10 s
/// at the default tick), then is answered as indefinite.
const WAIT_TICKS: u64 = 1_000;

/// A membership request waiting for its configuration to commit.
pub(super) struct ChangeWaiter {
    client: String,
    msg_id: u64,
    ty: String,
    target: BTreeSet<NodeIx>,
    until_tick: u64,
}

/// The bootstrap voters from init's `members` (all of `node_ids` when
/// absent); none when this node is not among them.
pub(super) fn bootstrap(body: &Value, ids: &[String], me: NodeIx) -> Result<Vec<NodeIx>, String> {
    let Some(list) = body.get("members") else {
        return Ok((0..ids.len()).collect());
    };
    let Some(list) = list.as_array() else {
        return Err("init's members must be a list of node ids".into());
    };
    let mut out = Vec::new();
    for m in list {
        let name = m.as_str().unwrap_or_default();
        match ids.iter().position(|i| i == name) {
            Some(i) => out.push(i),
            None => {
                return Err(format!(
                    "init's members names {m}, which is not in node_ids"
                ))
            }
        }
    }
    Ok(if out.contains(&me) { out } else { Vec::new() })
}

/// Node indices as their ids.
pub(super) fn names(ids: &[String], nodes: impl IntoIterator<Item = NodeIx>) -> Value {
    nodes
        .into_iter()
        .map(|i| json!(ids.get(i).cloned().unwrap_or_else(|| format!("#{i}"))))
        .collect()
}

/// `{prefix}voters` and `{prefix}old` (null unless joint) into `e`.
pub(super) fn put_conf(e: &mut Value, prefix: &str, ids: &[String], conf: &Membership) {
    e[format!("{prefix}voters")] = names(ids, conf.voters.iter().copied());
    e[format!("{prefix}old")] = match &conf.old {
        Some(old) => names(ids, old.iter().copied()),
        None => Value::Null,
    };
}

impl<W: Write> Server<W> {
    /// `member_add {node}`, `member_remove {node}`, `member_replace
    /// {remove, add}`: proposed on the leader, answered once committed.
    pub(super) fn change_members(&mut self, src: &str, msg_id: u64, ty: &str, body: &Value) {
        let c = self.cluster.as_mut().expect("initialised");
        let node = |k: &str| -> Result<NodeIx, Value> {
            let name = body.get(k).and_then(Value::as_str).ok_or_else(|| {
                error_body(
                    code::MALFORMED_REQUEST,
                    &format!("{ty} needs {k:?}, a node id"),
                )
            })?;
            c.ids.iter().position(|i| i == name).ok_or_else(|| {
                error_body(code::PRECONDITION_FAILED, &format!("no such node {name:?}"))
            })
        };
        let change = match ty {
            "member_add" => node("node").map(Change::Add),
            "member_remove" => node("node").map(Change::Remove),
            _ => node("remove").and_then(|r| {
                Ok(Change::Replace {
                    remove: r,
                    add: node("add")?,
                })
            }),
        };
        let change = match change {
            Ok(ch) => ch,
            Err(e) => return self.reply(src, msg_id, e),
        };
        if c.changes.len() >= MAX_WAITERS {
            return self.reply(
                src,
                msg_id,
                error_body(
                    code::TEMPORARILY_UNAVAILABLE,
                    "too many membership requests waiting",
                ),
            );
        }
        match c.raft.propose_change(change) {
            Ok(_) => {
                let target = c.raft.conf.voters.clone();
                let until_tick = c.ticks + WAIT_TICKS;
                c.changes.push(ChangeWaiter {
                    client: src.to_string(),
                    msg_id,
                    ty: ty.to_string(),
                    target,
                    until_tick,
                });
            }
            Err(ChangeError::NotLeader) => {
                let leader = c.raft.leader.map(|l| c.ids[l].clone());
                let mut e = error_body(code::TEMPORARILY_UNAVAILABLE, "not the leader");
                e["leader"] = json!(leader);
                self.reply(src, msg_id, e);
            }
            Err(ChangeError::InProgress) => self.reply(
                src,
                msg_id,
                error_body(
                    code::TEMPORARILY_UNAVAILABLE,
                    "a membership change is in progress",
                ),
            ),
            Err(ChangeError::Invalid(why)) => {
                self.reply(src, msg_id, error_body(code::PRECONDITION_FAILED, &why))
            }
        }
    }

    /// The configuration this node has in force (not a linearizable read:
    /// ask the leader for the cluster's).
    pub(super) fn members(&mut self, src: &str, msg_id: u64) {
        let c = self.cluster.as_ref().expect("initialised");
        let r = &c.raft;
        let mut body = json!({
            "type": "members_ok",
            "leader": r.leader.map(|l| c.ids[l].clone()),
            "index": r.conf_index,
            "committed": r.conf_index <= r.commit,
        });
        put_conf(&mut body, "", &c.ids, &r.conf);
        self.reply(src, msg_id, body);
    }

    /// Answers the requests whose configuration is now committed.
    pub(super) fn answer_changes(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.changes.is_empty() || !c.raft.conf_settled() {
            return;
        }
        let voters = c.raft.conf.voters.clone();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut c.changes)
            .into_iter()
            .partition(|w| w.target == voters);
        c.changes = waiting;
        let list = names(&c.ids, voters.iter().copied());
        for w in done {
            let ty = format!("{}_ok", w.ty);
            self.reply(&w.client, w.msg_id, json!({"type": ty, "voters": list}));
        }
    }

    /// Requests that waited too long are answered as indefinite: the
    /// change may still commit.
    pub(super) fn expire_changes(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let now = c.ticks;
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut c.changes)
            .into_iter()
            .partition(|w| w.until_tick <= now);
        c.changes = waiting;
        for w in expired {
            let e = error_body(
                0,
                "the change did not commit in time; it may still take effect",
            );
            self.reply(&w.client, w.msg_id, e);
        }
    }
}
