//! The Raft core: a pure state machine. Messages, ticks and client
//! proposals go in; a `Ready` comes out with what to persist, what to send
//! (only after persisting), what is committed, which reads are ready, and
//! trace events. No IO, no clock, no threads: the simulation tests drive it
//! deterministically, and `server.rs` drives it over stdio.
//!
//! Implemented after the Raft paper and etcd-io/raft practice: randomized
//! election timeouts, pre-vote, check-quorum with leader stickiness, the
//! log up-to-date check, conflict-term backtracking, batched and pipelined
//! replication, commit of current-term entries only, ReadIndex reads (after
//! the leader commits an entry of its own term), an optional lease mode
//! with a clock-drift bound, snapshots with InstallSnapshot, and leadership
//! transfer by TimeoutNow. `Bugs` switches plant classic mistakes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

pub type NodeIx = usize;

/// A replicated command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub enum Command {
    /// Appended by a new leader so that it commits an entry of its term.
    Noop,
    /// A client write or cas, with who asked (for the reply).
    Op {
        client: String,
        msg_id: u64,
        op: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub cmd: Command,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    /// The state machine at `index`.
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    PreVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        term: u64,
        granted: bool,
    },
    Vote {
        term: u64,
        last_index: u64,
        last_term: u64,
        transfer: bool,
    },
    VoteResp {
        term: u64,
        granted: bool,
    },
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    AppendResp {
        term: u64,
        success: bool,
        match_index: u64,
        conflict_term: Option<u64>,
        conflict_index: u64,
    },
    Heartbeat {
        term: u64,
        commit: u64,
        ctx: u64,
    },
    HeartbeatResp {
        term: u64,
        ctx: u64,
    },
    Snapshot {
        term: u64,
        snapshot: Snapshot,
    },
    SnapshotResp {
        term: u64,
        match_index: u64,
    },
    TimeoutNow {
        term: u64,
    },
}

impl Msg {
    pub fn term(&self) -> u64 {
        match self {
            Msg::PreVote { term, .. }
            | Msg::PreVoteResp { term, .. }
            | Msg::Vote { term, .. }
            | Msg::VoteResp { term, .. }
            | Msg::Append { term, .. }
            | Msg::AppendResp { term, .. }
            | Msg::Heartbeat { term, .. }
            | Msg::HeartbeatResp { term, .. }
            | Msg::Snapshot { term, .. }
            | Msg::SnapshotResp { term, .. }
            | Msg::TimeoutNow { term } => *term,
        }
    }
}

/// Planted consensus mistakes (`--bug NAME`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bugs {
    /// Grant votes without the log up-to-date check.
    pub vote_any: bool,
    /// Term and vote are not persisted.
    pub volatile_vote: bool,
    /// Commit entries of earlier terms by counting replicas (Figure 8).
    pub commit_prior_term: bool,
    /// No no-op on election. `--bug commit-prior-term` sets it too: with the
    /// no-op, a new leader's earlier-term entries reach a follower in the
    /// same Append as the no-op, so counting them commits nothing the term
    /// rule would not (unless a batch splits at `max_batch`). Harmless alone:
    /// a read then appends the no-op it needs.
    pub no_election_noop: bool,
    /// n/2 acknowledgements make a quorum.
    pub even_quorum: bool,
    /// The leader serves reads from local state without ReadIndex.
    pub local_read: bool,
    /// Lease reads trust the local *wall* clock, from when the ack arrived,
    /// with no drift bound: a wall clock set back extends the lease.
    pub lease_no_bound: bool,
    /// Message checksums are not verified (server.rs).
    pub no_checksum: bool,
    /// ReadIndex before the leader committed an entry of its term (the
    /// etcd/Raft-thesis §6.4 bug: a new leader's commit index may lag).
    pub readindex_no_noop: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReadMode {
    ReadIndex,
    Lease,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeIx,
    pub nodes: usize,
    /// Election timeout is drawn from [election_ticks, 2 * election_ticks).
    pub election_ticks: u64,
    pub heartbeat_ticks: u64,
    /// Most entries in one Append.
    pub max_batch: usize,
    /// Most unacknowledged Appends per follower (pipelining).
    pub max_inflight: usize,
    pub read_mode: ReadMode,
    /// Assumed bound on clock drift between nodes, as a fraction (lease mode).
    pub max_drift: f64,
    /// Length of one tick on the wall clock (only the lease-no-bound bug
    /// converts ticks to wall-clock time).
    pub tick_ms: u64,
    pub seed: u64,
    pub bugs: Bugs,
}

impl Config {
    pub fn new(id: NodeIx, nodes: usize) -> Self {
        Config {
            id,
            nodes,
            election_ticks: 15,
            heartbeat_ticks: 3,
            max_batch: 256,
            max_inflight: 16,
            read_mode: ReadMode::ReadIndex,
            max_drift: 0.1,
            tick_ms: 10,
            seed: id as u64 + 1,
            bugs: Bugs::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Trace events (DESIGN §2), emitted once the state they describe is durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    Vote {
        term: u64,
        candidate: NodeIx,
    },
    Leader {
        term: u64,
    },
    /// `leader_term` is set when a leader advanced its commit index by
    /// counting replicas, so the trace checker can hold it to §5.4.2.
    Commit {
        index: u64,
        term: u64,
        leader_term: Option<u64>,
    },
    Truncate {
        from: u64,
        term: u64,
    },
}

/// A read waiting for its index to be confirmed and applied.
pub type ReadId = u64;

/// Everything a step produced.
#[derive(Debug, Default)]
pub struct Ready {
    /// Persist (term, vote) before sending anything.
    pub hard_state: Option<(u64, Option<NodeIx>)>,
    /// Remove log entries from this index on, before appending.
    pub truncate_from: Option<u64>,
    pub append: Vec<Entry>,
    /// A snapshot received from the leader: persist it, reset the state
    /// machine to it.
    pub install: Option<Snapshot>,
    /// Send after persisting.
    pub messages: Vec<(NodeIx, Msg)>,
    /// Newly committed entries, to apply in order.
    pub committed: Vec<Entry>,
    /// Reads that may be served once the state machine has applied `index`.
    pub reads: Vec<(ReadId, u64)>,
    /// Reads that cannot be served here (not leader): the server should
    /// answer or forward them.
    pub rejected_reads: Vec<ReadId>,
    pub traces: Vec<Trace>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.append.is_empty()
            && self.install.is_none()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.rejected_reads.is_empty()
            && self.traces.is_empty()
    }
}

/// The in-memory log: entries after the last snapshot.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub snap_index: u64,
    pub snap_term: u64,
    pub entries: Vec<Entry>,
}

impl Log {
    pub fn last_index(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snap_term, |e| e.term)
    }
    /// The term at `i`, if known (compacted entries are unknown except the
    /// snapshot's own index).
    pub fn term(&self, i: u64) -> Option<u64> {
        if i == self.snap_index {
            return Some(self.snap_term);
        }
        if i < self.snap_index || i > self.last_index() {
            return None;
        }
        Some(self.entries[(i - self.snap_index - 1) as usize].term)
    }
    pub fn entry(&self, i: u64) -> Option<&Entry> {
        if i <= self.snap_index || i > self.last_index() {
            return None;
        }
        Some(&self.entries[(i - self.snap_index - 1) as usize])
    }
    /// Entries [from, to], at most `max`.
    pub fn slice(&self, from: u64, to: u64, max: usize) -> Vec<Entry> {
        if from > to || from <= self.snap_index {
            return Vec::new();
        }
        let lo = (from - self.snap_index - 1) as usize;
        let hi = ((to - self.snap_index) as usize)
            .min(self.entries.len())
            .min(lo.saturating_add(max));
        self.entries[lo..hi].to_vec()
    }
    pub fn truncate_from(&mut self, i: u64) {
        assert!(i > self.snap_index, "cannot truncate into the snapshot");
        self.entries.truncate((i - self.snap_index - 1) as usize);
    }
    pub fn push(&mut self, e: Entry) {
        assert_eq!(e.index, self.last_index() + 1, "log entries are contiguous");
        self.entries.push(e);
    }
    /// Drops entries up to `index` (which has `term`), keeping later ones if
    /// they follow it.
    pub fn compact(&mut self, index: u64, term: u64) {
        if index <= self.snap_index {
            return;
        }
        if self.term(index) == Some(term) {
            let keep = (index - self.snap_index) as usize;
            self.entries.drain(..keep);
        } else {
            self.entries.clear();
        }
        self.snap_index = index;
        self.snap_term = term;
    }
    /// First index of the run of entries with `term` that contains `i`.
    fn first_of_term(&self, mut i: u64) -> u64 {
        let t = self.term(i);
        while i > self.snap_index + 1 && self.term(i - 1) == t {
            i -= 1;
        }
        i
    }
    /// Last index whose term is `t`, if any.
    fn last_of_term(&self, t: u64) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == t)
            .map(|e| e.index)
    }
}

#[derive(Debug, Clone, Default)]
struct Progress {
    match_index: u64,
    next: u64,
    inflight: usize,
    /// Heard from within the current check-quorum period.
    active: bool,
    /// Waiting for a snapshot to be acknowledged.
    snapshotting: bool,
    /// Heartbeat answers since the follower last answered an append (or
    /// snapshot) while appends were in flight.
    quiet_heartbeats: u8,
}

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    index: u64,
    acks: Vec<bool>,
    ids: Vec<ReadId>,
}

/// State that must survive a restart.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    pub term: u64,
    pub vote: Option<NodeIx>,
    pub log: Log,
    pub snapshot: Option<Snapshot>,
}

pub struct Raft {
    pub cfg: Config,
    pub term: u64,
    pub vote: Option<NodeIx>,
    pub log: Log,
    pub snapshot: Option<Snapshot>,
    pub commit: u64,
    pub role: Role,
    pub leader: Option<NodeIx>,
    election_elapsed: u64,
    election_timeout: u64,
    heartbeat_elapsed: u64,
    /// Ticks since this node last heard from a current leader.
    since_leader: u64,
    votes: Vec<Option<bool>>,
    progress: Vec<Progress>,
    read_ctx: u64,
    pending_reads: VecDeque<PendingRead>,
    /// Reads waiting for the leader to commit an entry of its term.
    parked_reads: Vec<ReadId>,
    /// Lease mode: the tick until which this leader may serve reads locally.
    lease_until: u64,
    /// lease-no-bound: the wall-clock time (ms) until which reads are local.
    lease_until_wall_ms: u64,
    /// The wall clock as last given by the IO loop (`set_wall_clock_ms`).
    wall_ms: u64,
    /// Heartbeat ctx -> the tick it was sent at.
    ctx_sent_at: BTreeMap<u64, u64>,
    /// Lease mode: heartbeat ctx -> who acknowledged it.
    ctx_acks: BTreeMap<u64, Vec<bool>>,
    /// Reads joined a confirmation round that is not broadcast yet.
    read_round_due: bool,
    ticks: u64,
    transfer_to: Option<(NodeIx, u64)>,
    rng: u64,
    ready: Ready,
}

impl Raft {
    pub fn new(cfg: Config, durable: Durable) -> Raft {
        let n = cfg.nodes;
        assert!(cfg.id < n, "node index out of range");
        let mut r = Raft {
            rng: cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            term: durable.term,
            vote: durable.vote,
            commit: durable.log.snap_index,
            log: durable.log,
            snapshot: durable.snapshot,
            role: Role::Follower,
            leader: None,
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            since_leader: u64::MAX / 2,
            votes: vec![None; n],
            progress: vec![Progress::default(); n],
            read_ctx: 0,
            pending_reads: VecDeque::new(),
            parked_reads: Vec::new(),
            lease_until: 0,
            lease_until_wall_ms: 0,
            wall_ms: 0,
            ctx_sent_at: BTreeMap::new(),
            ctx_acks: BTreeMap::new(),
            read_round_due: false,
            ticks: 0,
            transfer_to: None,
            ready: Ready::default(),
            cfg,
        };
        r.reset_election_timer();
        r
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, so simulations replay.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let e = self.cfg.election_ticks;
        self.election_timeout = e + self.rand() % e;
    }

    pub fn quorum(&self) -> usize {
        if self.cfg.bugs.even_quorum {
            (self.cfg.nodes / 2).max(1)
        } else {
            self.cfg.nodes / 2 + 1
        }
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Everything produced since the last call. Reads that arrived since
    /// then share one heartbeat round.
    pub fn take_ready(&mut self) -> Ready {
        if self.read_round_due {
            self.read_round_due = false;
            if self.role == Role::Leader {
                self.broadcast_heartbeat();
            }
        }
        std::mem::take(&mut self.ready)
    }

    fn send(&mut self, to: NodeIx, m: Msg) {
        debug_assert!(to != self.cfg.id);
        self.ready.messages.push((to, m));
    }

    fn persist_hard_state(&mut self) {
        if !self.cfg.bugs.volatile_vote {
            self.ready.hard_state = Some((self.term, self.vote));
        }
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeIx>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.persist_hard_state();
        }
        if self.role == Role::Leader || !self.parked_reads.is_empty() {
            // Reads in flight cannot be confirmed any more.
            let ids: Vec<ReadId> = self.pending_reads.drain(..).flat_map(|p| p.ids).collect();
            self.ready.rejected_reads.extend(ids);
            self.ready.rejected_reads.append(&mut self.parked_reads);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.transfer_to = None;
        self.reset_election_timer();
    }

    pub fn tick(&mut self) {
        self.ticks += 1;
        self.since_leader = self.since_leader.saturating_add(1);
        match self.role {
            Role::Leader => {
                self.heartbeat_elapsed += 1;
                self.election_elapsed += 1;
                if self.election_elapsed >= self.cfg.election_ticks {
                    self.election_elapsed = 0;
                    self.check_quorum();
                    if self.role != Role::Leader {
                        return;
                    }
                    if let Some((_, started)) = self.transfer_to {
                        if self.ticks - started > self.cfg.election_ticks {
                            self.transfer_to = None;
                        }
                    }
                }
                if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    self.broadcast_heartbeat();
                }
            }
            _ => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.election_timeout {
                    self.start_pre_vote();
                }
            }
        }
    }

    fn check_quorum(&mut self) {
        let me = self.cfg.id;
        let active = (0..self.cfg.nodes)
            .filter(|&i| i == me || self.progress[i].active)
            .count();
        for (i, p) in self.progress.iter_mut().enumerate() {
            if i != me {
                p.active = false;
            }
        }
        // lease-no-bound: a leader that believes its wall-clock lease also
        // believes it is still leader, whatever check-quorum says.
        let leased = self.cfg.bugs.lease_no_bound && self.wall_ms < self.lease_until_wall_ms;
        if active < self.quorum() && !leased {
            // Cannot reach a majority: step down rather than serve stale.
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    fn up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.log.last_term()
            || (last_term == self.log.last_term() && last_index >= self.log.last_index())
    }

    /// The wall clock (ms since the epoch), an input like ticks: only the
    /// lease-no-bound bug reads it; the correct node measures time in ticks
    /// of a monotonic clock.
    pub fn set_wall_clock_ms(&mut self, ms: u64) {
        self.wall_ms = ms;
    }

    /// Heard from a live leader recently: refuse to help depose it.
    fn in_lease(&self) -> bool {
        self.leader.is_some() && self.since_leader < self.cfg.election_ticks
    }

    fn start_pre_vote(&mut self) {
        self.reset_election_timer();
        if self.cfg.nodes == 1 {
            self.start_election(false);
            return;
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = vec![None; self.cfg.nodes];
        self.votes[self.cfg.id] = Some(true);
        let (term, li, lt) = (self.term + 1, self.log.last_index(), self.log.last_term());
        for to in 0..self.cfg.nodes {
            if to != self.cfg.id {
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
    }

    fn start_election(&mut self, transfer: bool) {
        self.reset_election_timer();
        self.role = Role::Candidate;
        self.leader = None;
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.persist_hard_state();
        self.votes = vec![None; self.cfg.nodes];
        self.votes[self.cfg.id] = Some(true);
        if self.quorum() <= 1 {
            self.become_leader();
            return;
        }
        let (term, li, lt) = (self.term, self.log.last_index(), self.log.last_term());
        for to in 0..self.cfg.nodes {
            if to != self.cfg.id {
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
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.lease_until = 0;
        self.lease_until_wall_ms = 0;
        self.transfer_to = None;
        let last = self.log.last_index();
        for (i, p) in self.progress.iter_mut().enumerate() {
            *p = Progress {
                match_index: 0,
                next: last + 1,
                inflight: 0,
                active: true,
                snapshotting: false,
                quiet_heartbeats: 0,
            };
            if i == self.cfg.id {
                p.match_index = last;
            }
        }
        self.ready.traces.push(Trace::Leader { term: self.term });
        // Commit an entry of this term, which also commits everything before.
        if !self.cfg.bugs.no_election_noop {
            self.append_local(Command::Noop);
        }
        self.broadcast_append();
    }

    fn append_local(&mut self, cmd: Command) -> u64 {
        let e = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            cmd,
        };
        let index = e.index;
        self.log.push(e.clone());
        self.ready.append.push(e);
        self.progress[self.cfg.id].match_index = index;
        self.progress[self.cfg.id].next = index + 1;
        self.maybe_commit();
        index
    }

    /// Proposes a command; `None` when this node is not a leader that may
    /// accept it (the server then forwards or answers error 11).
    pub fn propose(&mut self, cmd: Command) -> Option<u64> {
        if self.role != Role::Leader || self.transfer_to.is_some() {
            return None;
        }
        let index = self.append_local(cmd);
        self.broadcast_append();
        Some(index)
    }

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
            self.ticks < self.lease_until
        };
        if self.cfg.read_mode == ReadMode::Lease && leased {
            self.ready.reads.push((id, self.commit));
            return;
        }
        if self.quorum() <= 1 {
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

    /// Starts a leadership transfer to `target` (TimeoutNow once caught up).
    pub fn transfer_leadership(&mut self, target: NodeIx) {
        if self.role != Role::Leader || target == self.cfg.id || target >= self.cfg.nodes {
            return;
        }
        self.transfer_to = Some((target, self.ticks));
        if self.progress[target].match_index == self.log.last_index() {
            let term = self.term;
            self.send(target, Msg::TimeoutNow { term });
        } else {
            self.send_append(target);
        }
    }

    fn broadcast_heartbeat(&mut self) {
        self.read_ctx += 1;
        let ctx = self.read_ctx;
        self.ctx_sent_at.insert(ctx, self.ticks);
        while self.ctx_sent_at.len() > 64 {
            self.ctx_sent_at.pop_first();
        }
        for to in 0..self.cfg.nodes {
            if to != self.cfg.id {
                let commit = self.commit.min(self.progress[to].match_index);
                let term = self.term;
                self.send(to, Msg::Heartbeat { term, commit, ctx });
            }
        }
    }

    fn broadcast_append(&mut self) {
        for to in 0..self.cfg.nodes {
            if to != self.cfg.id {
                self.send_append(to);
            }
        }
    }

    /// Sends what `to` is missing: pipelined batches, or the snapshot.
    fn send_append(&mut self, to: NodeIx) {
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

    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut matches: Vec<u64> = self.progress.iter().map(|p| p.match_index).collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.quorum() - 1];
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

    /// `leader_term`: the leader's term when it commits by counting
    /// replicas; `None` when a follower learns the commit index.
    fn advance_commit(&mut self, to: u64, leader_term: Option<u64>) {
        let to = to.min(self.log.last_index());
        if to <= self.commit {
            return;
        }
        let from = self.commit + 1;
        self.ready
            .committed
            .extend(self.log.slice(from, to, usize::MAX));
        self.commit = to;
        let term = self.log.term(to).expect("committed entries are in the log");
        self.ready.traces.push(Trace::Commit {
            index: to,
            term,
            leader_term,
        });
    }

    /// The server persisted a snapshot of the state machine at `index`:
    /// compact the log up to it.
    pub fn compact(&mut self, snapshot: Snapshot) {
        assert!(
            snapshot.index <= self.commit,
            "only committed state is snapshotted"
        );
        self.log.compact(snapshot.index, snapshot.term);
        self.snapshot = Some(snapshot);
    }

    pub fn step(&mut self, from: NodeIx, m: Msg) {
        if from >= self.cfg.nodes || from == self.cfg.id {
            return;
        }
        let mterm = m.term();
        match &m {
            Msg::PreVote { .. } => {}
            Msg::PreVoteResp { granted: true, .. } => {}
            Msg::Vote { transfer, .. } if mterm > self.term => {
                if self.in_lease() && !transfer {
                    // Leader stickiness: ignore a disruptive candidate.
                    return;
                }
                self.become_follower(mterm, None);
            }
            _ if mterm > self.term => {
                let leader = matches!(
                    m,
                    Msg::Append { .. } | Msg::Heartbeat { .. } | Msg::Snapshot { .. }
                )
                .then_some(from);
                self.become_follower(mterm, leader);
            }
            _ => {}
        }
        if mterm < self.term {
            // Stale: tell old leaders and candidates the current term.
            match m {
                Msg::Append { .. } | Msg::Heartbeat { .. } | Msg::Snapshot { .. } => {
                    let term = self.term;
                    let li = self.log.last_index();
                    self.send(
                        from,
                        Msg::AppendResp {
                            term,
                            success: false,
                            match_index: 0,
                            conflict_term: None,
                            conflict_index: li + 1,
                        },
                    );
                }
                Msg::PreVote { .. } => {
                    let term = self.term;
                    self.send(
                        from,
                        Msg::PreVoteResp {
                            term,
                            granted: false,
                        },
                    );
                }
                Msg::Vote { .. } => {
                    let term = self.term;
                    self.send(
                        from,
                        Msg::VoteResp {
                            term,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return;
        }
        match m {
            Msg::PreVote {
                term,
                last_index,
                last_term,
            } => {
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
            Msg::Vote {
                term,
                last_index,
                last_term,
                ..
            } => {
                let can_vote = self.vote.is_none_or(|v| v == from);
                let ok =
                    can_vote && (self.cfg.bugs.vote_any || self.up_to_date(last_index, last_term));
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
            Msg::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.heard_from_leader(from, term);
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            Msg::AppendResp {
                success,
                match_index,
                conflict_term,
                conflict_index,
                ..
            } => {
                if self.role != Role::Leader {
                    return;
                }
                self.progress[from].active = true;
                let last = self.log.last_index();
                let p = &mut self.progress[from];
                p.inflight = p.inflight.saturating_sub(1);
                p.quiet_heartbeats = 0;
                if success {
                    if match_index > p.match_index {
                        p.match_index = match_index;
                    }
                    p.next = p.next.max(p.match_index + 1);
                    self.maybe_commit();
                    if let Some((target, _)) = self.transfer_to {
                        if target == from && self.progress[from].match_index == last {
                            let term = self.term;
                            self.send(from, Msg::TimeoutNow { term });
                        }
                    }
                } else {
                    // Conflict-term backtracking: skip a whole term per round.
                    let next = match conflict_term {
                        Some(t) => self.log.last_of_term(t).map_or(conflict_index, |i| i + 1),
                        None => conflict_index,
                    };
                    let p = &mut self.progress[from];
                    p.next = next.max(p.match_index + 1).min(last + 1);
                    p.inflight = 0;
                }
                self.send_append(from);
            }
            Msg::Heartbeat { term, commit, ctx } => {
                self.heard_from_leader(from, term);
                if commit > self.commit && self.log.term(commit).is_some() {
                    self.advance_commit(commit.min(self.log.last_index()), None);
                }
                let t = self.term;
                self.send(from, Msg::HeartbeatResp { term: t, ctx });
            }
            Msg::HeartbeatResp { ctx, .. } => {
                if self.role != Role::Leader {
                    return;
                }
                self.progress[from].active = true;
                self.confirm_reads(from, ctx);
                let last = self.log.last_index();
                let p = &mut self.progress[from];
                // Links are FIFO unless jitter reorders them, so two heartbeat
                // answers with no append answer between them, while appends
                // are in flight, mean those appends (or their answers) were
                // lost: appends are not retried otherwise, and an idle leader
                // would never commit its no-op. Resend from what the follower
                // has, or probe with the last entry when that is unknown.
                // Any append answer (a rejection too) resets the count, so a
                // catch-up in progress is never restarted.
                if p.inflight > 0 && !p.snapshotting {
                    p.quiet_heartbeats = p.quiet_heartbeats.saturating_add(1);
                    if p.quiet_heartbeats >= 2 {
                        p.quiet_heartbeats = 0;
                        p.next = if p.match_index == 0 {
                            last
                        } else {
                            p.match_index + 1
                        };
                        p.inflight = 0;
                    }
                } else {
                    p.quiet_heartbeats = 0;
                }
                if p.match_index < last {
                    self.send_append(from);
                }
            }
            Msg::Snapshot { term, snapshot } => {
                self.heard_from_leader(from, term);
                let idx = snapshot.index;
                if idx > self.commit {
                    self.log.compact(idx, snapshot.term);
                    self.commit = idx;
                    self.snapshot = Some(snapshot.clone());
                    self.ready.install = Some(snapshot);
                }
                let (t, m) = (self.term, self.commit.max(idx));
                self.send(
                    from,
                    Msg::SnapshotResp {
                        term: t,
                        match_index: m,
                    },
                );
            }
            Msg::SnapshotResp { match_index, .. } => {
                if self.role != Role::Leader {
                    return;
                }
                let p = &mut self.progress[from];
                p.active = true;
                p.snapshotting = false;
                p.inflight = 0;
                p.quiet_heartbeats = 0;
                p.match_index = p.match_index.max(match_index);
                p.next = p.match_index + 1;
                self.send_append(from);
            }
            Msg::TimeoutNow { .. } => {
                if self.role != Role::Leader {
                    self.start_election(true);
                }
            }
        }
    }

    fn heard_from_leader(&mut self, from: NodeIx, term: u64) {
        debug_assert_eq!(term, self.term);
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(term, Some(from));
        }
        self.since_leader = 0;
        self.election_elapsed = 0;
    }

    /// Records a (pre-)vote answer: Some(true) once a quorum granted,
    /// Some(false) once a quorum refused, None while undecided.
    fn tally(&mut self, from: NodeIx, granted: bool) -> Option<bool> {
        self.votes[from] = Some(granted);
        if self.count_votes(true) >= self.quorum() {
            Some(true)
        } else if self.count_votes(false) >= self.quorum() {
            Some(false)
        } else {
            None
        }
    }

    fn count_votes(&self, granted: bool) -> usize {
        self.votes.iter().filter(|v| **v == Some(granted)).count()
    }

    fn handle_append(
        &mut self,
        from: NodeIx,
        mut prev_index: u64,
        mut prev_term: u64,
        mut entries: Vec<Entry>,
        commit: u64,
    ) {
        let term = self.term;
        // Entries already covered by our snapshot are committed: skip them.
        if prev_index < self.log.snap_index {
            let skip = (self.log.snap_index - prev_index) as usize;
            if skip >= entries.len() {
                let m = self.log.snap_index;
                self.send(
                    from,
                    Msg::AppendResp {
                        term,
                        success: true,
                        match_index: m,
                        conflict_term: None,
                        conflict_index: 0,
                    },
                );
                return;
            }
            entries.drain(..skip);
            prev_index = self.log.snap_index;
            prev_term = self.log.snap_term;
        }
        match self.log.term(prev_index) {
            Some(t) if t == prev_term => {}
            found => {
                let (conflict_term, conflict_index) = match found {
                    None => (None, self.log.last_index() + 1),
                    Some(t) => (Some(t), self.log.first_of_term(prev_index)),
                };
                self.send(
                    from,
                    Msg::AppendResp {
                        term,
                        success: false,
                        match_index: 0,
                        conflict_term,
                        conflict_index,
                    },
                );
                return;
            }
        }
        let last_new = prev_index + entries.len() as u64;
        for e in entries {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(t) => {
                    // An invariant of correct Raft; the planted bugs can break
                    // it, and then the trace checker should see it, not a crash.
                    if self.cfg.bugs == Bugs::default() {
                        assert!(
                            e.index > self.commit,
                            "a committed entry is never truncated (index {}, commit {})",
                            e.index,
                            self.commit
                        );
                    }
                    self.log.truncate_from(e.index);
                    self.ready.truncate_from =
                        Some(self.ready.truncate_from.map_or(e.index, |f| f.min(e.index)));
                    self.ready.append.retain(|a| a.index < e.index);
                    self.ready.traces.push(Trace::Truncate {
                        from: e.index,
                        term: t,
                    });
                    self.log.push(e.clone());
                    self.ready.append.push(e);
                }
                None => {
                    self.log.push(e.clone());
                    self.ready.append.push(e);
                }
            }
        }
        if commit > self.commit {
            self.advance_commit(commit.min(last_new), None);
        }
        self.send(
            from,
            Msg::AppendResp {
                term,
                success: true,
                match_index: last_new,
                conflict_term: None,
                conflict_index: 0,
            },
        );
    }

    fn confirm_reads(&mut self, from: NodeIx, ctx: u64) {
        let quorum = self.quorum();
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
            if p.acks.iter().filter(|a| **a).count() < quorum {
                break;
            }
            let p = self.pending_reads.pop_front().expect("front exists");
            for id in p.ids {
                self.ready.reads.push((id, p.index));
            }
        }
    }

    /// Lease mode: a majority acknowledged a heartbeat sent at tick `sent`,
    /// so no other leader can be elected before `sent + election_ticks`
    /// (followers in lease refuse votes) measured on *their* clocks; ours
    /// may run slow by `max_drift`, hence the margin.
    fn lease_acks(&mut self, from: NodeIx, ctx: u64, sent: u64) {
        let acks = self
            .ctx_acks
            .entry(ctx)
            .or_insert_with(|| vec![false; self.cfg.nodes]);
        acks[from] = true;
        acks[self.cfg.id] = true;
        if acks.iter().filter(|a| **a).count() >= self.cfg.nodes / 2 + 1 {
            if self.cfg.bugs.lease_no_bound {
                // Trusts the wall clock fully, from when the ack arrived.
                let until = self.wall_ms + self.cfg.election_ticks * self.cfg.tick_ms;
                self.lease_until_wall_ms = self.lease_until_wall_ms.max(until);
            } else {
                let until = sent
                    + ((self.cfg.election_ticks as f64) * (1.0 - self.cfg.max_drift)).floor()
                        as u64;
                self.lease_until = self.lease_until.max(until);
            }
        }
        while self.ctx_acks.len() > 64 {
            self.ctx_acks.pop_first();
        }
    }
}
