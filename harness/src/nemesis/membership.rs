//! The membership nemesis: servers added, removed and replaced through the
//! system's own requests (`member_add`, `member_remove`, `member_replace`,
//! `members`; README, "Membership"), the cluster kept within its size
//! range. Each change is recorded with what the system answered and the
//! membership it reports afterwards.
//!
//! While membership changes, the nodes a schedule names are places in the
//! cluster: place `p` is the member of rank `p` (by node index), and a
//! member past the last place stands in for place `rank % places`, so a
//! partition drawn for the starting size still splits a grown cluster.
//! Nodes out of the cluster get no faults and no client traffic (clients
//! read the shared `MemberView`).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{fault_rng, Executor, Processes};
use faultline_checker::ErrorCode;
use faultline_nemesis::{Action, Link};
use rand::seq::SliceRandom;
use rand::Rng;

/// The members now, by node index, shared with the clients.
pub type MemberView = Arc<RwLock<Vec<usize>>>;

/// Most requests one change sends before it gives up (each to the leader
/// named by the last answer, else the next member).
const MAX_ASKS: usize = 8;

pub struct MembershipOptions {
    pub view: MemberView,
    /// The fewest and most members.
    pub range: [usize; 2],
    /// How many places the schedule was drawn for (the starting size).
    pub places: usize,
    /// How long one change may take, all its requests together.
    pub timeout: Duration,
}

pub struct MemberState {
    opts: MembershipOptions,
    members: BTreeSet<usize>,
}

impl MemberState {
    pub fn new(opts: MembershipOptions) -> MemberState {
        let members = opts
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        MemberState { opts, members }
    }

    fn publish(&self) {
        *self.opts.view.write().unwrap_or_else(|e| e.into_inner()) =
            self.members.iter().copied().collect();
    }
}

/// A refusal after an ask that went unanswered leaves the change open.
fn open_after(answer: Answer, unanswered: &Option<String>) -> Answer {
    match (answer, unanswered) {
        (Answer::Refused(r), Some(why)) => Answer::Indefinite(format!(
            "refused ({}: {}) after {why}, which may have taken effect",
            r["code"], r["text"]
        )),
        (a, _) => a,
    }
}

/// How a system answered one change.
enum Answer {
    Ok,
    /// A definite refusal: the change did not happen.
    Refused(Value),
    /// No answer, or one that leaves the outcome open.
    Indefinite(String),
    /// No member was up to ask: nothing happened.
    NotAsked(String),
}

impl Answer {
    fn record(&self) -> Value {
        match self {
            Answer::Ok => json!("ok"),
            Answer::Refused(e) => json!({"refused": [e["code"], e["text"]]}),
            Answer::Indefinite(why) => json!({"indefinite": why}),
            Answer::NotAsked(why) => json!({"not_asked": why}),
        }
    }
}

impl<P: Processes> Executor<P> {
    /// The members by rank, or every node without membership changes.
    fn ranked(&self) -> Vec<usize> {
        match &self.membership {
            Some(m) => m.members.iter().copied().collect(),
            None => (0..self.node_ids.len()).collect(),
        }
    }

    /// The members by rank once they moved from the starting places
    /// (`None`: no membership changes, or none yet).
    pub(super) fn moved_members(&self) -> Option<Vec<usize>> {
        let m = self.membership.as_ref()?;
        let members = self.ranked();
        (members != (0..m.opts.places).collect::<Vec<_>>()).then_some(members)
    }

    /// The nodes holding the places `nodes` name (themselves without
    /// membership changes). Once the cluster moved, as many members as
    /// the target means at its size now (a majority of 5 places is 4 of 7
    /// members; see `refit_count`): the places' holders first, then the
    /// next members by rank.
    pub(super) fn place(&self, nodes: &[usize]) -> Vec<usize> {
        let Some(members) = self.moved_members() else {
            return nodes.to_vec();
        };
        if members.is_empty() {
            return Vec::new();
        }
        let places = self.membership.as_ref().map_or(1, |m| m.opts.places.max(1));
        let want = faultline_nemesis::refit_count(places, nodes.len(), members.len());
        let mut out: Vec<usize> = Vec::new();
        for &p in nodes {
            let m = members[p % members.len()];
            if !out.contains(&m) {
                out.push(m);
            }
        }
        let start = nodes.last().map_or(0, |&p| p + 1);
        for k in 0..members.len() {
            if out.len() >= want {
                break;
            }
            let m = members[(start + k) % members.len()];
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out.truncate(want);
        out.sort_unstable();
        out
    }

    /// The links between the members holding the places a cut names.
    pub(super) fn place_links(&self, cut: &[Link]) -> Vec<Link> {
        let Some(m) = &self.membership else {
            return cut.to_vec();
        };
        let places = m.opts.places.max(1);
        let members = self.ranked();
        let holders = |p: usize| {
            members
                .iter()
                .enumerate()
                .filter(move |(rank, _)| rank % places == p)
                .map(|(_, &i)| i)
        };
        let mut out: Vec<Link> = cut
            .iter()
            .flat_map(|&(a, b)| holders(a).flat_map(move |x| holders(b).map(move |y| (x, y))))
            .filter(|(x, y)| x != y)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A node drawn at random: a member, while membership changes.
    pub(super) fn random_node(&mut self) -> usize {
        if self.membership.is_none() {
            // The draw recorded seeds replay with.
            return self.rng.gen_range(0..self.node_ids.len());
        }
        let members = self.ranked();
        *members.choose(&mut self.rng).unwrap_or(&0)
    }

    /// Applies a drawn change: an add past the most members, or a remove
    /// below the fewest, becomes a replace.
    pub(super) async fn change_membership(&mut self, action: &Action) -> anyhow::Result<Value> {
        let Some(m) = &self.membership else {
            anyhow::bail!("a membership change was scheduled but the run has no size range (the membership nemesis is not enabled)");
        };
        let seed = match action {
            Action::MemberAdd { seed }
            | Action::MemberRemove { seed }
            | Action::MemberReplace { seed } => *seed,
            _ => 0,
        };
        let [min, max] = m.opts.range;
        let members: Vec<usize> = m.members.iter().copied().collect();
        if members.is_empty() {
            let skipped = json!({"skipped": "the harness knows no member to ask"});
            return Ok(self.with_reported(skipped).await);
        }
        let spare: Vec<usize> = (0..self.node_ids.len())
            .filter(|i| !m.members.contains(i))
            .collect();
        let mut rng = fault_rng(seed, 0);
        let one = |rng: &mut rand_chacha::ChaCha8Rng, v: &[usize]| v.choose(rng).copied();
        let value = match action {
            Action::MemberAdd { .. } if members.len() < max => match one(&mut rng, &spare) {
                Some(node) => self.add(node).await?,
                None => json!({"change": "add", "skipped": "no node is out of the cluster"}),
            },
            Action::MemberRemove { .. } if members.len() > min => {
                let node = one(&mut rng, &members).expect("more members than the fewest");
                self.remove(node).await
            }
            _ => {
                let old = one(&mut rng, &members).expect("a cluster has a member");
                match one(&mut rng, &spare) {
                    // A third of replaces bring the server back under its
                    // own name, wiped: two changes, one server each.
                    Some(new) if !rng.gen_bool(1.0 / 3.0) => self.replace(old, new).await?,
                    _ => {
                        let removed = self.remove(old).await;
                        let added = match removed["answer"] == json!("ok") {
                            true => self.add(old).await?,
                            false => json!({"skipped": "the remove did not happen"}),
                        };
                        json!({"change": "replace", "same_name": true, "remove": removed, "add": added})
                    }
                }
            }
        };
        Ok(self.with_reported(value).await)
    }

    /// Starts `node` afresh and asks the cluster to add it (or, for a
    /// system that wants it so, asks first and starts it once added).
    async fn add(&mut self, node: usize) -> anyhow::Result<Value> {
        let id = self.node_ids[node].clone();
        let members = self.ranked();
        let after = self.processes.starts_after_add();
        if !after {
            if let Err(e) = self.start_member(node, &members, true).await {
                let answer = json!({"not_started": format!("{e:#}")});
                return Ok(json!({"change": "add", "node": id, "answer": answer}));
            }
        }
        let answer = self
            .ask_change(json!({"type": "member_add", "node": id}))
            .await;
        let joined = match &answer {
            Answer::Ok => true,
            Answer::Refused(_) | Answer::NotAsked(_) => false,
            // Unknown stays unknown until the membership settles.
            Answer::Indefinite(_) => self
                .reported_voters()
                .await
                .is_some_and(|v| v.contains(&node)),
        };
        let mut value = json!({"change": "add", "node": id, "answer": answer.record()});
        if joined && after {
            if let Err(e) = self.start_member(node, &members, true).await {
                // A member that never came up: the cluster has it, so the
                // harness does too (the liveness check judges the rest).
                value["not_started"] = json!(format!("{e:#}"));
            }
        }
        if joined {
            self.enter(node);
        } else if !after {
            self.stop_outsider(node).await;
        }
        Ok(value)
    }

    /// Asks the cluster to remove `node`, and stops it once out.
    async fn remove(&mut self, node: usize) -> Value {
        let id = self.node_ids[node].clone();
        let answer = self
            .ask_change(json!({"type": "member_remove", "node": id}))
            .await;
        let left = match &answer {
            Answer::Ok => true,
            Answer::Refused(_) | Answer::NotAsked(_) => false,
            Answer::Indefinite(_) => self
                .reported_voters()
                .await
                .is_some_and(|v| !v.contains(&node)),
        };
        if left {
            self.exit(node).await;
        }
        json!({"change": "remove", "node": id, "answer": answer.record()})
    }

    /// One change that removes `old` and adds `new` (started afresh).
    async fn replace(&mut self, old: usize, new: usize) -> anyhow::Result<Value> {
        let (old_id, new_id) = (self.node_ids[old].clone(), self.node_ids[new].clone());
        if self.processes.starts_after_add() {
            // Such a system adds one server at a time: out, then in.
            let removed = self.remove(old).await;
            let added = match removed["answer"] == json!("ok") {
                true => self.add(new).await?,
                false => json!({"skipped": "the remove did not happen"}),
            };
            return Ok(json!({"change": "replace", "remove": removed, "add": added}));
        }
        let mut value = json!({"change": "replace", "remove": old_id, "add": new_id});
        let members = self.ranked();
        if let Err(e) = self.start_member(new, &members, true).await {
            value["answer"] = json!({"not_started": format!("{e:#}")});
            return Ok(value);
        }
        let body = json!({"type": "member_replace", "remove": old_id, "add": new_id});
        let answer = self.ask_change(body).await;
        let voters = match &answer {
            Answer::Ok => [new].into(),
            Answer::Refused(_) | Answer::NotAsked(_) => [old].into(),
            Answer::Indefinite(_) => self.reported_voters().await.unwrap_or([old].into()),
        };
        if voters.contains(&new) {
            self.enter(new);
        } else {
            self.stop_outsider(new).await;
        }
        if !voters.contains(&old) {
            self.exit(old).await;
        }
        value["answer"] = answer.record();
        Ok(value)
    }

    /// Starts `node` to join: once running it is neither down nor
    /// paused, so no later restart of a fault's scope starts it twice (a
    /// crash's recover used to respawn a node membership had just started,
    /// orphaning the first process, whose exit failed the run).
    async fn start_member(
        &mut self,
        node: usize,
        members: &[usize],
        fresh: bool,
    ) -> anyhow::Result<()> {
        self.processes.join(node, members, fresh).await?;
        self.down.remove(&node);
        self.paused.remove(&node);
        self.refused.remove(&node);
        Ok(())
    }

    /// Stops a node started to join that did not: not a member, so no
    /// fault's undo restarts or resumes it.
    async fn stop_outsider(&mut self, node: usize) {
        self.down.remove(&node);
        self.paused.remove(&node);
        self.processes.leave(node).await;
    }

    fn enter(&mut self, node: usize) {
        if let Some(m) = &mut self.membership {
            m.members.insert(node);
            m.publish();
        }
    }

    /// `node` left the cluster: out of the view first (no client picks
    /// it), then stopped, and no fault holds it any more.
    async fn exit(&mut self, node: usize) {
        if let Some(m) = &mut self.membership {
            m.members.remove(&node);
            m.publish();
        }
        self.paused.remove(&node);
        self.down.remove(&node);
        self.refused.remove(&node);
        self.processes.leave(node).await;
    }

    /// Sends a change to the leader (as the last answer names it, else the
    /// newest traced, else each member in turn) until one answers it.
    async fn ask_change(&mut self, body: Value) -> Answer {
        let Some(m) = &self.membership else {
            return Answer::Indefinite("membership changes are off".into());
        };
        let timeout = m.opts.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        // A paused or down member cannot answer; nor can one cut off, so
        // no one ask may take more than half the change's time: a leader
        // cut off used to spend all of it and leave the change undecided.
        let per_ask = timeout / 2;
        let up = |i: &usize| !self.down.contains(i) && !self.paused.contains(i);
        let leader = self.current_leader();
        let mut order: Vec<usize> = leader.into_iter().collect();
        order.extend(
            m.members
                .iter()
                .copied()
                .filter(up)
                .filter(|&i| Some(i) != leader),
        );
        let mut last = Answer::NotAsked("no member was up to ask".into());
        // An ask that went unanswered may still take effect: a refusal
        // after it ("already a member") says nothing of the change. A
        // definite refusal of one copy read as "not added" once stopped a
        // node the cluster had added and even elected.
        let mut unanswered: Option<String> = None;
        // The leader an answer named is asked next, then the turn goes on.
        let (mut turn, mut named) = (0, None);
        for _ in 0..MAX_ASKS {
            let via = match named.take() {
                Some(l) => l,
                None if order.is_empty() => break,
                None => {
                    turn += 1;
                    order[(turn - 1) % order.len()]
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(reply) = self
                .processes
                .ask(via, body.clone(), left.min(per_ask))
                .await
            else {
                let why = format!("no answer from {}", self.node_ids[via]);
                unanswered.get_or_insert_with(|| why.clone());
                last = Answer::Indefinite(why);
                continue;
            };
            match reply["type"].as_str() {
                Some(t) if t.ends_with("_ok") => return Answer::Ok,
                _ => {}
            }
            match ErrorCode::of_reply(&reply) {
                // Not the leader (it may name it), or a change under way.
                Some(ErrorCode::TEMPORARILY_UNAVAILABLE) => {
                    let hint = reply["leader"].as_str();
                    named = hint.and_then(|l| self.node_ids.iter().position(|n| n == l));
                    if named.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    last = Answer::Refused(reply);
                }
                // By the rule every client op is recorded by: timeout,
                // crash, a node's own codes and unassigned ones leave the
                // change open, and whether it happened is asked afterwards.
                Some(c) if !c.is_definite() => {
                    return Answer::Indefinite(format!("code {c}: {}", reply["text"]))
                }
                Some(_) => return open_after(Answer::Refused(reply), &unanswered),
                None => return Answer::Indefinite(format!("an unexpected reply: {reply}")),
            }
        }
        open_after(last, &unanswered)
    }

    /// The voters the system reports (the new half while joint), asked of
    /// the leader or else any member; empty when none answers.
    async fn reported(&mut self) -> Option<Value> {
        let members: Vec<usize> = self.ranked();
        let mut order: Vec<usize> = self.current_leader().into_iter().collect();
        order.extend(members.iter().copied().filter(|i| !self.down.contains(i)));
        for via in order.into_iter().take(MAX_ASKS) {
            let timeout = Duration::from_millis(500);
            if let Some(r) = self
                .processes
                .ask(via, json!({"type": "members"}), timeout)
                .await
            {
                if r["type"] == "members_ok" {
                    let mut r = r;
                    r["from"] = json!(self.node_ids[via]);
                    return Some(r);
                }
            }
        }
        None
    }

    /// The voters the system reports; `None` when no member answered.
    async fn reported_voters(&mut self) -> Option<BTreeSet<usize>> {
        let r = self.reported().await?;
        Some(self.voters_of(&r))
    }

    fn voters_of(&self, reported: &Value) -> BTreeSet<usize> {
        reported["voters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                self.node_ids
                    .iter()
                    .position(|n| Some(n.as_str()) == v.as_str())
            })
            .collect()
    }

    /// `value` with the harness's members and what the system reports.
    async fn with_reported(&mut self, value: Value) -> Value {
        let reported = self.reported().await;
        self.describe(value, reported.as_ref())
    }

    fn describe(&self, mut value: Value, reported: Option<&Value>) -> Value {
        value["members"] = json!(self.ids(self.ranked()));
        value["reported"] = match reported {
            Some(r) => {
                json!({"voters": r["voters"], "old": r["old"], "leader": r["leader"], "from": r["from"]})
            }
            None => json!(null),
        };
        value
    }

    /// An interval after a change: the membership the system reports.
    /// Where a change's outcome was left open (no answer in time) the
    /// harness follows the system: a node it reports but the harness left
    /// out is started to join, one the harness has but it does not report
    /// is stopped. Then whether the two agree.
    pub(super) async fn membership_settled(&mut self) -> anyhow::Result<Value> {
        let reported = self.reported().await;
        let mut value = json!({});
        if let Some(r) = reported.as_ref().filter(|r| r["old"].is_null()) {
            let voters = self.voters_of(r);
            let members: BTreeSet<usize> = self.ranked().into_iter().collect();
            if !voters.is_empty() && voters != members {
                for &node in members.difference(&voters) {
                    self.exit(node).await;
                }
                let staying: Vec<usize> = members.intersection(&voters).copied().collect();
                let mut started = Vec::new();
                for &node in voters.difference(&members) {
                    match self.start_member(node, &staying, false).await {
                        Ok(()) => started.push(node),
                        Err(e) => eprintln!("faultline: warning: a member the system reports could not start: {e:#}"),
                    }
                    self.enter(node);
                }
                value["followed"] = json!({
                    "stopped": self.ids(members.difference(&voters).copied()),
                    "started": self.ids(started),
                });
            }
        }
        let mut value = self.describe(value, reported.as_ref());
        // Unknown when no member answered (all down or cut off).
        let agree = reported.as_ref().map(|_| {
            value["reported"]["voters"] == value["members"] && value["reported"]["old"].is_null()
        });
        value["agree"] = json!(agree);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::{open_after, Answer};
    use serde_json::json;

    /// A refusal of one copy after another copy went unanswered is no
    /// refusal of the change: "already a member" means the first took.
    #[test]
    fn a_refusal_after_an_unanswered_ask_leaves_the_change_open() {
        let refused = || Answer::Refused(json!({"code": 22, "text": "node 4 is already a member"}));
        let why = Some("no answer from n5".to_string());
        match open_after(refused(), &why) {
            Answer::Indefinite(w) => {
                assert!(w.contains("already a member") && w.contains("n5"), "{w}")
            }
            _ => panic!("still a refusal"),
        }
        assert!(matches!(open_after(refused(), &None), Answer::Refused(_)));
        assert!(matches!(open_after(Answer::Ok, &why), Answer::Ok));
    }
}
