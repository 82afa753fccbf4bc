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
//!
//! Laid out as etcd's raft is: this module holds the messages, the node's
//! state and its role changes; each role steps messages in its own module
//! (`leader`, `candidate`, `follower`), and the log, each peer's
//! replication `progress` and the `read_index` tracking have theirs.

mod candidate;
mod follower;
mod leader;
mod log;
pub mod membership;
mod progress;
mod read_index;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

pub use log::Log;
pub use membership::{Change, ChangeError, Membership};
use progress::Progress;
use read_index::PendingRead;

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
    /// A configuration (joint while `old` is set), in force once in the log.
    Config(Membership),
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
    /// The configuration at `index` (`None` in snapshots written before
    /// configurations were kept: the bootstrap one applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<Membership>,
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
    /// The WAL is written but never fsynced (storage.rs): a kill loses
    /// nothing (the kernel keeps the page cache), a power cut loses
    /// acknowledged writes.
    pub no_fsync: bool,
    /// Read-only transactions answered by a leader from what it has
    /// applied, without confirming it still leads (server.rs): a deposed
    /// leader serves a stale snapshot, under partitions only.
    pub txn_leader_read: bool,
    /// ReadIndex before the leader committed an entry of its term (the
    /// etcd/Raft-thesis §6.4 bug: a new leader's commit index may lag).
    pub readindex_no_noop: bool,
    /// A membership change switches straight from C-old to C-new, with no
    /// joint phase: when two servers move at once (a replace), a majority
    /// of C-old and one of C-new need not overlap.
    pub direct_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReadMode {
    ReadIndex,
    Lease,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeIx,
    /// Every node that may ever be a member (indices 0..nodes).
    pub nodes: usize,
    /// The voters before any configuration entry (the bootstrap
    /// configuration); a node that is to be added later starts with none.
    pub members: Vec<NodeIx>,
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
    /// Length of one tick in ms: a lease (lease mode) lasts
    /// `election_ticks` of them, measured on a clock.
    pub tick_ms: u64,
    pub seed: u64,
    pub bugs: Bugs,
}

impl Config {
    pub fn new(id: NodeIx, nodes: usize) -> Self {
        Config {
            id,
            nodes,
            members: (0..nodes).collect(),
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
        /// A leader's commit: who had matched the index, and the
        /// configuration the quorum was counted in.
        quorum: Option<(Vec<NodeIx>, Membership)>,
    },
    /// A leader appended a configuration entry, changing from `from`.
    Config {
        index: u64,
        term: u64,
        conf: Membership,
        from: Membership,
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
    /// The configuration in force: the latest in the log.
    pub conf: Membership,
    /// The index of its entry (0: from the snapshot or the bootstrap).
    pub conf_index: u64,
    bootstrap: Membership,
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
    /// Lease mode: the monotonic time (ms) until which this leader may
    /// serve reads locally.
    lease_until_mono_ms: u64,
    /// lease-no-bound: the wall-clock time (ms) until which reads are local.
    lease_until_wall_ms: u64,
    /// The wall clock as last given by the IO loop (`set_wall_clock_ms`).
    wall_ms: u64,
    /// The monotonic clock as last given by the IO loop
    /// (`set_monotonic_ms`).
    mono_ms: u64,
    /// Heartbeat ctx -> the monotonic time (ms) it was sent at.
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
            conf: Membership::default(),
            conf_index: 0,
            bootstrap: Membership::of(cfg.members.iter().copied()),
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            since_leader: u64::MAX / 2,
            votes: vec![None; n],
            progress: vec![Progress::default(); n],
            read_ctx: 0,
            pending_reads: VecDeque::new(),
            parked_reads: Vec::new(),
            lease_until_mono_ms: 0,
            lease_until_wall_ms: 0,
            wall_ms: 0,
            mono_ms: 0,
            ctx_sent_at: BTreeMap::new(),
            ctx_acks: BTreeMap::new(),
            read_round_due: false,
            ticks: 0,
            transfer_to: None,
            ready: Ready::default(),
            cfg,
        };
        r.refresh_conf();
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
                // Only a voter campaigns: a node still to be added, or
                // removed, waits to hear from a leader.
                if self.election_elapsed >= self.election_timeout {
                    if self.is_voter() {
                        self.start_pre_vote();
                    } else {
                        self.reset_election_timer();
                    }
                }
            }
        }
    }

    fn check_quorum(&mut self) {
        let me = self.cfg.id;
        let active = self.has_quorum(|i| i == me || self.progress[i].active);
        for (i, p) in self.progress.iter_mut().enumerate() {
            if i != me {
                p.active = false;
            }
        }
        // lease-no-bound: a leader that believes its wall-clock lease also
        // believes it is still leader, whatever check-quorum says.
        let leased = self.cfg.bugs.lease_no_bound && self.wall_ms < self.lease_until_wall_ms;
        if !active && !leased {
            // Cannot reach a majority: step down rather than serve stale.
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// The wall clock (ms since the epoch), an input like ticks: only the
    /// lease-no-bound bug reads it; the correct node measures its lease on
    /// the monotonic clock.
    pub fn set_wall_clock_ms(&mut self, ms: u64) {
        self.wall_ms = ms;
    }

    /// A monotonic clock (ms since any fixed point), an input like ticks.
    /// A lease is measured on it, not in ticks: a process stopped for a
    /// second (SIGSTOP, a GC pause) comes back to one late tick, while its
    /// peers' election timers ran the whole second.
    pub fn set_monotonic_ms(&mut self, ms: u64) {
        debug_assert!(ms >= self.mono_ms, "the monotonic clock went back");
        self.mono_ms = self.mono_ms.max(ms);
    }

    /// Heard from a live leader recently: refuse to help depose it.
    fn in_lease(&self) -> bool {
        self.leader.is_some() && self.since_leader < self.cfg.election_ticks
    }

    pub(super) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.lease_until_mono_ms = 0;
        self.lease_until_wall_ms = 0;
        self.transfer_to = None;
        let last = self.log.last_index();
        let me = self.cfg.id;
        for (i, p) in self.progress.iter_mut().enumerate() {
            *p = Progress::for_new_leader(last, i == me);
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

    /// Starts a leadership transfer to `target` (TimeoutNow once caught up).
    pub fn transfer_leadership(&mut self, target: NodeIx) {
        if self.role != Role::Leader || target == self.cfg.id || !self.conf.voters.contains(&target)
        {
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
        let quorum = leader_term.map(|_| {
            let acks = (0..self.cfg.nodes)
                .filter(|&i| self.progress[i].match_index >= to && self.conf.contains(i))
                .collect();
            (acks, self.conf.clone())
        });
        self.ready.traces.push(Trace::Commit {
            index: to,
            term,
            leader_term,
            quorum,
        });
        self.after_commit_conf();
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
        self.refresh_conf();
    }

    /// Steps one message from peer `from`: Raft's term rules first, then
    /// vote requests (any role), then the step function of this node's
    /// role, as etcd's raft swaps `step` on every role change.
    pub fn step(&mut self, from: NodeIx, m: Msg) {
        if from >= self.cfg.nodes || from == self.cfg.id {
            return;
        }
        if !self.step_term(from, &m) {
            return;
        }
        match m {
            Msg::PreVote {
                term,
                last_index,
                last_term,
            } => self.answer_pre_vote(from, term, last_index, last_term),
            Msg::Vote {
                term,
                last_index,
                last_term,
                ..
            } => self.answer_vote(from, term, last_index, last_term),
            m => match self.role {
                Role::Leader => self.step_leader(from, m),
                Role::PreCandidate | Role::Candidate => self.step_candidate(from, m),
                Role::Follower => self.step_follower(from, m),
            },
        }
    }

    /// A newer term makes this node a follower (not for pre-votes, nor for
    /// a vote that would depose a leader heard from lately); an older one
    /// is answered with the current term. False: the message goes no
    /// further.
    fn step_term(&mut self, from: NodeIx, m: &Msg) -> bool {
        let mterm = m.term();
        match m {
            Msg::PreVote { .. } => {}
            Msg::PreVoteResp { granted: true, .. } => {}
            Msg::Vote { transfer, .. } if mterm > self.term => {
                if self.in_lease() && !transfer {
                    // Leader stickiness: ignore a disruptive candidate.
                    return false;
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
                    let next = self.log.last_index() + 1;
                    self.reject_append(from, None, next);
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
            return false;
        }
        true
    }
}
