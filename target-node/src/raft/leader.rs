//! Leading: the leader's step function (answers to appends, heartbeats
//! and snapshots), replication to each peer by its `Progress`, and the
//! commit rule.

use super::{Msg, NodeIx, Raft, Role};

impl Raft {
    /// A leader's step function.
    pub(super) fn step_leader(&mut self, from: NodeIx, m: Msg) {
        match m {
            Msg::AppendResp {
                success,
                match_index,
                conflict_term,
                conflict_index,
                ..
            } => {
                let last = self.log.last_index();
                // Conflict-term backtracking: skip a whole term per round.
                let next_on_reject = match conflict_term {
                    Some(t) => self.log.last_of_term(t).map_or(conflict_index, |i| i + 1),
                    None => conflict_index,
                };
                self.progress[from].on_append_resp(success, match_index, next_on_reject, last);
                if success {
                    self.maybe_commit();
                    if let Some((target, _)) = self.transfer_to {
                        if target == from && self.progress[from].match_index == last {
                            let term = self.term;
                            self.send(from, Msg::TimeoutNow { term });
                        }
                    }
                }
                self.send_append(from);
            }
            Msg::HeartbeatResp { ctx, .. } => {
                self.confirm_reads(from, ctx);
                let last = self.log.last_index();
                self.progress[from].on_heartbeat_resp(last);
                if self.progress[from].match_index < last {
                    self.send_append(from);
                }
            }
            Msg::SnapshotResp { match_index, .. } => {
                self.progress[from].on_snapshot_resp(match_index);
                self.send_append(from);
            }
            // Another leader of this term: only the planted bugs allow one.
            m @ (Msg::Append { .. } | Msg::Heartbeat { .. } | Msg::Snapshot { .. }) => {
                self.follow(from, m)
            }
            _ => {}
        }
    }

    pub(super) fn broadcast_append(&mut self) {
        for to in self.peers() {
            self.send_append(to);
        }
    }

    /// Sends what `to` is missing: pipelined batches, or the snapshot.
    pub(super) fn send_append(&mut self, to: NodeIx) {
        let last = self.log.last_index();
        loop {
            let p = &self.progress[to];
            if p.snapshotting || p.inflight >= self.cfg.max_inflight {
                return;
            }
            let next = p.next;
            if next <= self.log.snap_index {
                if let Some(s) = self.snapshot.clone() {
                    let term = self.term;
                    self.progress[to].snapshotting = true;
                    self.send(to, Msg::Snapshot { term, snapshot: s });
                }
                return;
            }
            let prev_index = next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                return;
            };
            let entries = self.log.slice(next, last, self.cfg.max_batch);
            // An empty append only probes a follower whose position is not
            // confirmed, and only when nothing else is in flight.
            if entries.is_empty()
                && (self.progress[to].inflight > 0 || self.progress[to].match_index >= prev_index)
            {
                return;
            }
            let sent_to = prev_index + entries.len() as u64;
            let (term, commit) = (self.term, self.commit);
            let empty = entries.is_empty();
            self.send(
                to,
                Msg::Append {
                    term,
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                },
            );
            let p = &mut self.progress[to];
            p.inflight += 1;
            p.next = sent_to + 1;
            if empty || p.next > last {
                return;
            }
        }
    }

    pub(super) fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let candidate = self
            .conf
            .quorum_index(self.cfg.bugs.even_quorum, |i| self.progress[i].match_index);
        if candidate <= self.commit {
            return;
        }
        // Only entries of the current term commit by counting replicas
        // (Raft §5.4.2); earlier ones commit with them.
        let own_term = self.log.term(candidate) == Some(self.term);
        if own_term || self.cfg.bugs.commit_prior_term {
            self.advance_commit(candidate, Some(self.term));
            if !self.parked_reads.is_empty() && self.log.term(self.commit) == Some(self.term) {
                for id in std::mem::take(&mut self.parked_reads) {
                    self.read(id);
                }
            }
        }
    }
}
