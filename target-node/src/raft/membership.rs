//! Cluster membership by joint consensus (Raft §6): who votes, how a
//! quorum is counted in a configuration, and the leader's side of a change.
//!
//! A configuration is a log entry, in force on a node from the moment it
//! is in its log (committed or not; undone if truncated). A change from
//! C-old to C-new goes through C-old,new, in which every decision (an
//! election, a commit, a read's confirmation, check-quorum) needs a
//! majority of C-old *and* of C-new, so no moment exists at which C-old
//! and C-new can each decide alone. Once C-old,new commits, the leader
//! appends C-new; a leader not in C-new steps down once C-new commits. One
//! change at a time: a change is refused while the latest configuration
//! is joint or not yet committed.
//!
//! New servers are not added as learners first: C-old,new names them at
//! once, so a commit needs them caught up (a snapshot at most), which
//! costs a little availability on a change, never safety.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::{Command, NodeIx, Raft, Role, Trace};

/// The voters of a configuration; joint (C-old,new) while `old` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeIx>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<BTreeSet<NodeIx>>,
}

/// A change a leader is asked to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add(NodeIx),
    Remove(NodeIx),
    /// Remove one server and add another in one change (two servers move:
    /// only joint consensus makes that safe).
    Replace {
        remove: NodeIx,
        add: NodeIx,
    },
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// Not the leader (or transferring leadership): ask the leader.
    NotLeader,
    /// A change is under way (joint, or the latest one not committed).
    InProgress,
    /// The change makes no sense in the current configuration.
    Invalid(String),
}

impl Membership {
    pub fn of(voters: impl IntoIterator<Item = NodeIx>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            old: None,
        }
    }

    pub fn is_joint(&self) -> bool {
        self.old.is_some()
    }

    /// Every voter of either half.
    pub fn ids(&self) -> BTreeSet<NodeIx> {
        let mut all = self.voters.clone();
        all.extend(self.old.iter().flatten().copied());
        all
    }

    pub fn contains(&self, i: NodeIx) -> bool {
        self.voters.contains(&i) || self.old.as_ref().is_some_and(|o| o.contains(&i))
    }

    /// Each half's voters: one set, or C-new and C-old while joint.
    fn halves(&self) -> impl Iterator<Item = &BTreeSet<NodeIx>> {
        std::iter::once(&self.voters).chain(self.old.as_ref())
    }

    /// Acknowledgements a set needs: a majority (n/2 with the even-quorum
    /// bug). An empty set never decides anything.
    fn needed(set: &BTreeSet<NodeIx>, even_quorum: bool) -> usize {
        if set.is_empty() {
            return usize::MAX;
        }
        if even_quorum {
            (set.len() / 2).max(1)
        } else {
            set.len() / 2 + 1
        }
    }

    /// Whether the nodes for which `yes` holds are a quorum: a majority of
    /// each half.
    pub fn has_quorum(&self, even_quorum: bool, yes: impl Fn(NodeIx) -> bool) -> bool {
        self.halves()
            .all(|set| set.iter().filter(|&&i| yes(i)).count() >= Self::needed(set, even_quorum))
    }

    /// The highest index a quorum has matched (`matched` per node).
    pub fn quorum_index(&self, even_quorum: bool, matched: impl Fn(NodeIx) -> u64) -> u64 {
        self.halves()
            .map(|set| {
                let mut m: Vec<u64> = set.iter().map(|&i| matched(i)).collect();
                m.sort_unstable_by(|a, b| b.cmp(a));
                m.get(Self::needed(set, even_quorum).saturating_sub(1))
                    .copied()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    }
}

impl Raft {
    /// The configuration at `index`: the latest configuration entry at or
    /// before it in the log, else the snapshot's, else the bootstrap one.
    pub fn conf_at(&self, index: u64) -> Membership {
        let last = index.min(self.log.last_index());
        for e in self.log.entries.iter().rev() {
            if e.index > last {
                continue;
            }
            if let Command::Config(m) = &e.cmd {
                return m.clone();
            }
        }
        self.snapshot
            .as_ref()
            .and_then(|s| s.conf.clone())
            .unwrap_or_else(|| self.bootstrap.clone())
    }

    /// Re-reads the configuration in force from the log (after entries
    /// were appended or truncated, or a snapshot installed).
    pub(super) fn refresh_conf(&mut self) {
        let (mut index, mut conf) = (0, None);
        for e in self.log.entries.iter().rev() {
            if let Command::Config(m) = &e.cmd {
                (index, conf) = (e.index, Some(m.clone()));
                break;
            }
        }
        self.conf = conf.unwrap_or_else(|| self.conf_at(0));
        self.conf_index = index;
    }

    /// Whether the latest configuration is committed and not joint: the
    /// only time a change may begin.
    pub fn conf_settled(&self) -> bool {
        !self.conf.is_joint() && self.conf_index <= self.commit
    }

    /// Whether this node votes in the configuration in force.
    pub fn is_voter(&self) -> bool {
        self.conf.contains(self.cfg.id)
    }

    /// Every node a leader replicates to, and a candidate asks: the voters
    /// of either half, less itself.
    pub(super) fn peers(&self) -> Vec<NodeIx> {
        let me = self.cfg.id;
        self.conf.ids().into_iter().filter(|&i| i != me).collect()
    }

    pub(super) fn has_quorum(&self, yes: impl Fn(NodeIx) -> bool) -> bool {
        self.conf.has_quorum(self.cfg.bugs.even_quorum, yes)
    }

    /// Begins a membership change on the leader: C-old,new is appended
    /// (with the direct-config bug, C-new at once). Returns its index.
    pub fn propose_change(&mut self, change: Change) -> Result<u64, ChangeError> {
        if self.role != Role::Leader || self.transfer_to.is_some() {
            return Err(ChangeError::NotLeader);
        }
        if !self.conf_settled() {
            return Err(ChangeError::InProgress);
        }
        let current = self.conf.voters.clone();
        let known = |i: NodeIx| i < self.cfg.nodes;
        let mut next = current.clone();
        let (add, remove) = match change {
            Change::Add(a) => (Some(a), None),
            Change::Remove(r) => (None, Some(r)),
            Change::Replace { remove, add } => (Some(add), Some(remove)),
        };
        if let Some(r) = remove {
            if !next.remove(&r) {
                return Err(ChangeError::Invalid(format!("node {r} is not a member")));
            }
        }
        if let Some(a) = add {
            if !known(a) {
                return Err(ChangeError::Invalid(format!(
                    "node {a} is not a known node"
                )));
            }
            if current.contains(&a) || !next.insert(a) {
                return Err(ChangeError::Invalid(format!(
                    "node {a} is already a member"
                )));
            }
        }
        if next.is_empty() {
            return Err(ChangeError::Invalid(
                "the change would remove the last member".into(),
            ));
        }
        let conf = Membership {
            voters: next,
            old: (!self.cfg.bugs.direct_config).then_some(current),
        };
        Ok(self.append_conf(conf))
    }

    /// Appends a configuration entry as leader; it is in force at once.
    fn append_conf(&mut self, conf: Membership) -> u64 {
        let from = self.conf.clone();
        let index = self.log.last_index() + 1;
        // A server new to the configuration is known to match nothing: it
        // may be a wiped one coming back under its old name, whose old
        // progress would count entries it no longer has.
        let known = from.ids();
        for i in conf.ids().difference(&known) {
            self.progress[*i] = super::progress::Progress::for_new_leader(index - 1, false);
        }
        self.ready.traces.push(Trace::Config {
            index,
            term: self.term,
            conf: conf.clone(),
            from,
        });
        // In force before the commit check that appending runs.
        self.conf = conf.clone();
        self.conf_index = index;
        let appended = self.append_local(Command::Config(conf));
        debug_assert_eq!(appended, index);
        self.broadcast_append();
        index
    }

    /// After the commit index moved on a leader: a committed C-old,new is
    /// followed by C-new; a committed C-new that leaves this leader out
    /// ends its leadership.
    pub(super) fn after_commit_conf(&mut self) {
        if self.role != Role::Leader || self.conf_index > self.commit {
            return;
        }
        if self.conf.is_joint() {
            let new = Membership {
                voters: self.conf.voters.clone(),
                old: None,
            };
            self.append_conf(new);
        } else if !self.conf.voters.contains(&self.cfg.id) {
            let term = self.term;
            self.become_follower(term, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joint_quorum_needs_a_majority_of_each_half() {
        let joint = Membership {
            voters: [0, 1, 3].into(),
            old: Some([0, 1, 2].into()),
        };
        // {1, 3}: a majority of C-new only.
        assert!(!joint.has_quorum(false, |i| i == 1 || i == 3));
        assert!(joint.has_quorum(false, |i| i == 0 || i == 1));
        assert!(joint.has_quorum(false, |i| i != 2));
        assert_eq!(joint.quorum_index(false, |i| [5, 4, 9, 7][i]), 5);
        // The even-quorum bug counts half.
        assert!(Membership::of([0, 1, 2, 3]).has_quorum(true, |i| i < 2));
        assert!(!Membership::of([0, 1, 2, 3]).has_quorum(false, |i| i < 2));
        // Nothing is decided by an empty configuration.
        assert!(!Membership::default().has_quorum(false, |_| true));
    }
}
