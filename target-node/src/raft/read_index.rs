//! Linearizable reads on the leader: ReadIndex (a read waits for a round
//! of heartbeats a quorum answers, then for its index to be applied),
//! parked until the leader has committed an entry of its own term, and the
//! optional lease mode with its clock-drift bound.

use super::{Command, Msg, NodeIx, Raft, ReadId, ReadMode, Role};

#[derive(Debug)]
pub(super) struct PendingRead {
    pub(super) ctx: u64,
    pub(super) index: u64,
    pub(super) acks: Vec<bool>,
    pub(super) ids: Vec<ReadId>,
}

impl Raft {
    /// Asks for a linearizable read. The answer comes in `Ready::reads`
    /// (serve once applied up to the index) or `Ready::rejected_reads`.
    pub fn read(&mut self, id: ReadId) {
        if self.role != Role::Leader {
            self.ready.rejected_reads.push(id);
            return;
        }
        if self.cfg.bugs.local_read {
            self.ready.reads.push((id, self.commit));
            return;
        }
        let committed_own_term = self.log.term(self.commit) == Some(self.term);
        if !committed_own_term && !self.cfg.bugs.readindex_no_noop {
            // Without an election no-op (`no_election_noop`) a read on an
            // idle leader would wait forever: append one now.
            if self.log.term(self.log.last_index()) != Some(self.term) {
                self.append_local(Command::Noop);
                self.broadcast_append();
            }
            self.parked_reads.push(id);
            return;
        }
        let leased = if self.cfg.bugs.lease_no_bound {
            self.wall_ms < self.lease_until_wall_ms
        } else {
            self.mono_ms < self.lease_until_mono_ms
        };
        if self.cfg.read_mode == ReadMode::Lease && leased {
            self.ready.reads.push((id, self.commit));
            return;
        }
        let me = self.cfg.id;
        if self.has_quorum(|i| i == me) {
            self.ready.reads.push((id, self.commit));
            return;
        }
        // Reads join the round that the next heartbeat broadcast confirms.
        let ctx = self.read_ctx + 1;
        match self.pending_reads.back_mut() {
            Some(p) if p.ctx == ctx && p.index == self.commit => p.ids.push(id),
            _ => {
                let mut acks = vec![false; self.cfg.nodes];
                acks[self.cfg.id] = true;
                self.pending_reads.push_back(PendingRead {
                    ctx,
                    index: self.commit,
                    acks,
                    ids: vec![id],
                });
            }
        }
        self.read_round_due = true;
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        self.read_ctx += 1;
        let ctx = self.read_ctx;
        self.ctx_sent_at.insert(ctx, self.mono_ms);
        while self.ctx_sent_at.len() > 64 {
            self.ctx_sent_at.pop_first();
        }
        for to in self.peers() {
            let commit = self.commit.min(self.progress[to].match_index);
            let term = self.term;
            self.send(to, Msg::Heartbeat { term, commit, ctx });
        }
    }

    pub(super) fn confirm_reads(&mut self, from: NodeIx, ctx: u64) {
        if self.cfg.read_mode == ReadMode::Lease {
            if let Some(&sent) = self.ctx_sent_at.get(&ctx) {
                self.lease_acks(from, ctx, sent);
            }
        }
        while let Some(p) = self.pending_reads.front_mut() {
            if p.ctx > ctx {
                break;
            }
            p.acks[from] = true;
            let acks = &p.acks;
            if !self.conf.has_quorum(self.cfg.bugs.even_quorum, |i| acks[i]) {
                break;
            }
            let p = self.pending_reads.pop_front().expect("front exists");
            for id in p.ids {
                self.ready.reads.push((id, p.index));
            }
        }
    }

    /// Lease mode: a majority acknowledged a heartbeat sent at `sent`
    /// (monotonic ms), so no other leader can be elected before an election
    /// timeout after it (followers in lease refuse votes) measured on
    /// *their* clocks, which only run slow (a stalled follower ticks late);
    /// ours may run fast by `max_drift`, hence the margin.
    fn lease_acks(&mut self, from: NodeIx, ctx: u64, sent: u64) {
        let acks = self
            .ctx_acks
            .entry(ctx)
            .or_insert_with(|| vec![false; self.cfg.nodes]);
        acks[from] = true;
        acks[self.cfg.id] = true;
        let acked = acks.clone();
        if self.conf.has_quorum(false, |i| acked[i]) {
            if self.cfg.bugs.lease_no_bound {
                // Trusts the wall clock fully, from when the ack arrived.
                let until = self.wall_ms + self.cfg.election_ticks * self.cfg.tick_ms;
                self.lease_until_wall_ms = self.lease_until_wall_ms.max(until);
            } else {
                let lease_ms = (self.cfg.election_ticks * self.cfg.tick_ms) as f64;
                let until = sent + (lease_ms * (1.0 - self.cfg.max_drift)).floor() as u64;
                self.lease_until_mono_ms = self.lease_until_mono_ms.max(until);
            }
        }
        while self.ctx_acks.len() > 64 {
            self.ctx_acks.pop_first();
        }
    }
}
