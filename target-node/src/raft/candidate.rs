//! Elections: pre-vote and vote requests and their answers, the
//! candidate's step function, and the log up-to-date check.

use super::{Msg, NodeIx, Raft, Role, Trace};

impl Raft {
    /// A candidate's (or pre-candidate's) step function.
    pub(super) fn step_candidate(&mut self, from: NodeIx, m: Msg) {
        match m {
            Msg::PreVoteResp { term, granted } => {
                if self.role != Role::PreCandidate || (granted && term != self.term + 1) {
                    return;
                }
                match self.tally(from, granted) {
                    Some(true) => self.start_election(false),
                    Some(false) => self.become_follower(self.term, None),
                    None => {}
                }
            }
            Msg::VoteResp { granted, .. } => {
                if self.role != Role::Candidate {
                    return;
                }
                match self.tally(from, granted) {
                    Some(true) => self.become_leader(),
                    Some(false) => self.become_follower(self.term, None),
                    None => {}
                }
            }
            Msg::TimeoutNow { .. } => self.start_election(true),
            // A leader of this term exists: follow it.
            m @ (Msg::Append { .. } | Msg::Heartbeat { .. } | Msg::Snapshot { .. }) => {
                self.follow(from, m)
            }
            _ => {}
        }
    }

    /// Answers a pre-vote (any role): granted when the candidate's log is
    /// up to date, this node has not heard from a leader lately, and the
    /// proposed term is newer.
    pub(super) fn answer_pre_vote(
        &mut self,
        from: NodeIx,
        term: u64,
        last_index: u64,
        last_term: u64,
    ) {
        let ok = (self.cfg.bugs.vote_any || self.up_to_date(last_index, last_term))
            && !self.in_lease()
            && term > self.term;
        let t = if ok { term } else { self.term };
        self.send(
            from,
            Msg::PreVoteResp {
                term: t,
                granted: ok,
            },
        );
    }

    /// Answers a vote (any role), at most one candidate per term.
    pub(super) fn answer_vote(&mut self, from: NodeIx, term: u64, last_index: u64, last_term: u64) {
        let can_vote = self.vote.is_none_or(|v| v == from);
        let ok = can_vote && (self.cfg.bugs.vote_any || self.up_to_date(last_index, last_term));
        if ok {
            self.vote = Some(from);
            self.persist_hard_state();
            self.reset_election_timer();
            self.ready.traces.push(Trace::Vote {
                term,
                candidate: from,
            });
        }
        let t = self.term;
        self.send(
            from,
            Msg::VoteResp {
                term: t,
                granted: ok,
            },
        );
    }

    pub(super) fn start_pre_vote(&mut self) {
        self.reset_election_timer();
        let me = self.cfg.id;
        if self.has_quorum(|i| i == me) {
            self.start_election(false);
            return;
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = vec![None; self.cfg.nodes];
        self.votes[self.cfg.id] = Some(true);
        let (term, li, lt) = (self.term + 1, self.log.last_index(), self.log.last_term());
        for to in self.peers() {
            self.send(
                to,
                Msg::PreVote {
                    term,
                    last_index: li,
                    last_term: lt,
                },
            );
        }
    }

    pub(super) fn start_election(&mut self, transfer: bool) {
        self.reset_election_timer();
        self.role = Role::Candidate;
        self.leader = None;
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.persist_hard_state();
        self.votes = vec![None; self.cfg.nodes];
        self.votes[self.cfg.id] = Some(true);
        let me = self.cfg.id;
        if self.has_quorum(|i| i == me) {
            self.become_leader();
            return;
        }
        let (term, li, lt) = (self.term, self.log.last_index(), self.log.last_term());
        for to in self.peers() {
            self.send(
                to,
                Msg::Vote {
                    term,
                    last_index: li,
                    last_term: lt,
                    transfer,
                },
            );
        }
    }

    /// Records a (pre-)vote answer: Some(true) once a quorum granted,
    /// Some(false) once a quorum refused, None while undecided.
    fn tally(&mut self, from: NodeIx, granted: bool) -> Option<bool> {
        self.votes[from] = Some(granted);
        let votes = &self.votes;
        if self.has_quorum(|i| votes[i] == Some(true)) {
            Some(true)
        } else if !self.has_quorum(|i| votes[i] != Some(false)) {
            // No quorum can grant any more.
            Some(false)
        } else {
            None
        }
    }

    fn up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.log.last_term()
            || (last_term == self.log.last_term() && last_index >= self.log.last_index())
    }
}
