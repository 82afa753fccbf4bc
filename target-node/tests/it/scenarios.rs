//! Scripted scenarios that pin down the tricky cases.

use serde_json::json;
use target_node::raft::{Bugs, Command, Config, Durable, Entry, Msg, Raft, ReadMode, Role, Trace};

struct Cluster {
    nodes: Vec<Raft>,
    durable: Vec<Durable>,
    up: Vec<bool>,
    applied: Vec<Vec<Entry>>,
    traces: Vec<Vec<Trace>>,
    /// Reads each node said may be served.
    reads: Vec<Vec<u64>>,
}

impl Cluster {
    fn new(n: usize, bugs: Bugs, max_batch: usize) -> Cluster {
        let nodes = (0..n)
            .map(|i| {
                let mut c = Config::new(i, n);
                c.bugs = bugs;
                c.max_batch = max_batch;
                Raft::new(c, Durable::default())
            })
            .collect();
        Cluster {
            nodes,
            durable: vec![Durable::default(); n],
            up: vec![true; n],
            applied: vec![Vec::new(); n],
            traces: vec![Vec::new(); n],
            reads: vec![Vec::new(); n],
        }
    }

    /// Delivers messages until quiet; `allow(from, to, msg)` filters them.
    fn pump(&mut self, allow: &dyn Fn(usize, usize, &Msg) -> bool) {
        let mut queue: Vec<(usize, usize, Msg)> = Vec::new();
        for _round in 0..10_000 {
            for i in 0..self.nodes.len() {
                if !self.up[i] {
                    continue;
                }
                let rd = self.nodes[i].take_ready();
                if let Some((t, v)) = rd.hard_state {
                    self.durable[i].term = t;
                    self.durable[i].vote = v;
                }
                if let Some(f) = rd.truncate_from {
                    self.durable[i].log.truncate_from(f);
                }
                for e in rd.append {
                    if e.index <= self.durable[i].log.last_index() {
                        self.durable[i].log.truncate_from(e.index);
                    }
                    self.durable[i].log.push(e);
                }
                self.applied[i].extend(rd.committed);
                self.traces[i].extend(rd.traces);
                self.reads[i].extend(rd.reads.iter().map(|r| r.0));
                for (to, m) in rd.messages {
                    queue.push((i, to, m));
                }
            }
            if queue.is_empty() {
                return;
            }
            for (from, to, m) in std::mem::take(&mut queue) {
                if self.up[to] && allow(from, to, &m) {
                    self.nodes[to].step(from, m);
                }
            }
        }
        panic!("the cluster never went quiet");
    }

    /// Lets time pass on the (non-leader, up) voters so they stop trusting
    /// an old leader, then ticks `i` until it campaigns, and pumps.
    /// Steps `to` with one message and persists its output; returns what it
    /// sent, for the scenario to deliver (or not) by hand.
    fn deliver(&mut self, from: usize, to: usize, m: Msg) -> Vec<(usize, Msg)> {
        self.nodes[to].step(from, m);
        let mut out = Vec::new();
        self.drain(to, &mut out);
        out
    }

    fn drain(&mut self, i: usize, out: &mut Vec<(usize, Msg)>) {
        let rd = self.nodes[i].take_ready();
        if let Some((t, v)) = rd.hard_state {
            self.durable[i].term = t;
            self.durable[i].vote = v;
        }
        for e in rd.append {
            if e.index <= self.durable[i].log.last_index() {
                self.durable[i].log.truncate_from(e.index);
            }
            self.durable[i].log.push(e);
        }
        self.applied[i].extend(rd.committed);
        self.traces[i].extend(rd.traces);
        out.extend(rd.messages);
    }

    /// A campaign can fail once on a stale term (the candidate learns the
    /// newer one from the rejections), so try a few rounds.
    fn elect(&mut self, i: usize, allow: &dyn Fn(usize, usize, &Msg) -> bool) {
        for _round in 0..4 {
            self.campaign(i, allow);
            if self.nodes[i].is_leader() {
                return;
            }
        }
    }

    fn campaign(&mut self, i: usize, allow: &dyn Fn(usize, usize, &Msg) -> bool) {
        for v in 0..self.nodes.len() {
            if v == i
                || !self.up[v]
                || self.nodes[v].is_leader()
                || !allow(i, v, &Msg::TimeoutNow { term: 0 })
            {
                continue;
            }
            for _ in 0..self.nodes[v].cfg.election_ticks {
                self.nodes[v].tick();
            }
            // Their own pre-votes are lost; pre-votes change no durable state.
            let rd = self.nodes[v].take_ready();
            assert!(rd.hard_state.is_none() && rd.append.is_empty());
        }
        for _ in 0..1000 {
            self.nodes[i].tick();
            if self.nodes[i].role != Role::Follower {
                break;
            }
        }
        self.pump(allow);
    }

    fn crash(&mut self, i: usize) {
        self.up[i] = false;
    }

    fn restart(&mut self, i: usize) {
        let cfg = self.nodes[i].cfg.clone();
        self.nodes[i] = Raft::new(cfg, self.durable[i].clone());
        self.applied[i].clear();
        self.up[i] = true;
    }
}

fn among(set: &'static [usize]) -> impl Fn(usize, usize, &Msg) -> bool {
    move |f, t, _| set.contains(&f) && set.contains(&t)
}

fn op(n: u64) -> Command {
    Command::Op {
        client: "c1".into(),
        msg_id: n,
        op: json!({"type": "write", "key": 0, "value": n}),
    }
}

/// Raft paper, Figure 8: an entry of an old term stored on a majority can
/// still be overwritten, so a leader must not commit it by counting.
fn figure_8(bugs: Bugs) -> (u64, Cluster) {
    let mut c = Cluster::new(5, bugs, 1);
    // S1 (n0) leads and commits its no-op everywhere.
    c.elect(0, &|_, _, _| true);
    assert!(c.nodes[0].is_leader());
    // (a) It replicates X at index 2 to S2 only, then crashes.
    c.nodes[0].propose(op(1));
    c.pump(&among(&[0, 1]));
    c.crash(0);
    // (b) S5 (n4) wins with S3, S4 and appends its no-op at index 2 (term
    // 3) locally only, then crashes.
    c.elect(4, &|f, t, m| {
        [2, 3, 4].contains(&f) && [2, 3, 4].contains(&t) && !matches!(m, Msg::Append { .. })
    });
    assert!(c.nodes[4].is_leader(), "S5 leads");
    c.crash(4);
    // (c) S1 restarts and wins with S2, S3 (vote traffic only), then
    // replicates index 2 (its old-term X) to S2 and S3 but not yet its own
    // no-op at index 3: index 2 is now on a majority.
    c.restart(0);
    c.elect(0, &|f, t, m| {
        [0, 1, 2].contains(&f)
            && [0, 1, 2].contains(&t)
            && !matches!(m, Msg::Append { .. } | Msg::Heartbeat { .. })
    });
    assert!(c.nodes[0].is_leader(), "S1 leads again");
    let term_c = c.nodes[0].term;
    let x = c.nodes[0].log.entry(2).cloned().expect("S1 holds X");
    for follower in [1, 2] {
        let append = Msg::Append {
            term: term_c,
            prev_index: 1,
            prev_term: 1,
            entries: vec![x.clone()],
            commit: 0,
        };
        for (to, reply) in c.deliver(0, follower, append) {
            assert_eq!(to, 0);
            c.deliver(follower, 0, reply);
        }
    }
    let commit_c = c.nodes[0].commit;
    // (d) S1 crashes; S5 restarts, wins with S2, S3, S4 (its last term is
    // higher) and overwrites index 2 everywhere.
    c.crash(0);
    c.restart(4);
    c.elect(4, &among(&[1, 2, 3, 4]));
    assert!(c.nodes[4].is_leader() && c.nodes[4].term > term_c);
    c.pump(&among(&[1, 2, 3, 4]));
    // Followers learn the new commit index from the next heartbeat.
    for _ in 0..c.nodes[4].cfg.heartbeat_ticks {
        c.nodes[4].tick();
    }
    c.pump(&among(&[1, 2, 3, 4]));
    (commit_c, c)
}

#[test]
fn figure_8_the_leader_does_not_commit_an_old_term_entry_by_counting() {
    let (commit_c, c) = figure_8(Bugs::default());
    assert!(
        commit_c < 2,
        "index 2 (an old-term entry) must not commit in (c): commit {commit_c}"
    );
    // Every node that applied index 2 applied S5's entry.
    for (i, a) in c.applied.iter().enumerate() {
        if let Some(e) = a.iter().find(|e| e.index == 2) {
            assert_eq!(e.cmd, Command::Noop, "n{i}");
        }
    }
}

#[test]
fn figure_8_with_commit_prior_term_loses_a_committed_entry() {
    let (commit_c, c) = figure_8(Bugs {
        commit_prior_term: true,
        ..Default::default()
    });
    assert_eq!(commit_c, 2, "the bug commits index 2 in (c)");
    // S1 applied X at index 2, the new leader's cluster applied its no-op.
    let s1 = c.applied[0]
        .iter()
        .find(|e| e.index == 2)
        .expect("S1 applied index 2");
    let others = c.applied[1]
        .iter()
        .find(|e| e.index == 2)
        .expect("S2 applied index 2");
    assert_ne!(s1.cmd, others.cmd, "state machine safety is violated");
}

/// A new leader holds X (term 1) that the old leader never committed; what
/// it commits once its first Append reaches the one other live node.
fn new_leader_with_an_uncommitted_old_entry(bugs: Bugs) -> (u64, Vec<Trace>) {
    let mut c = Cluster::new(3, bugs, 64);
    c.elect(0, &|_, _, _| true);
    assert!(c.nodes[0].is_leader());
    c.nodes[0].propose(op(1));
    // X reaches n1, but n1's acknowledgement is lost: n0 never commits it.
    c.pump(&|f, t, m| f == 0 && t == 1 && matches!(m, Msg::Append { .. }));
    let x_index = c.nodes[1].log.last_index();
    assert!(c.nodes[1].commit < x_index, "n1 holds X uncommitted");
    c.crash(0);
    c.traces[1].clear();
    c.elect(1, &among(&[1, 2]));
    assert!(c.nodes[1].is_leader());
    (x_index, std::mem::take(&mut c.traces[1]))
}

#[test]
fn a_new_leader_commits_old_entries_only_with_one_of_its_own_term() {
    let (x, traces) = new_leader_with_an_uncommitted_old_entry(Bugs::default());
    let commits: Vec<_> = traces
        .iter()
        .filter_map(|t| match t {
            Trace::Commit {
                index,
                term,
                leader_term,
                ..
            } => Some((*index, *term, *leader_term)),
            _ => None,
        })
        .collect();
    assert!(!commits.is_empty(), "the no-op commits X with it");
    for (index, term, leader_term) in commits {
        assert!(index > x, "X commits with the no-op after it");
        assert_eq!(Some(term), leader_term, "only own-term entries by counting");
    }

    let (x, traces) = new_leader_with_an_uncommitted_old_entry(Bugs {
        commit_prior_term: true,
        no_election_noop: true,
        ..Default::default()
    });
    assert!(
        traces.iter().any(|t| matches!(t,
            Trace::Commit { index, term: 1, leader_term: Some(lt), .. } if *index == x && *lt > 1)),
        "the bug commits X (term 1) by counting: {traces:?}"
    );
}

#[test]
fn an_idle_leader_resends_a_lost_no_op_and_serves_reads() {
    let mut c = Cluster::new(3, Bugs::default(), 64);
    c.elect(0, &|_, _, m| !matches!(m, Msg::Append { .. }));
    assert!(c.nodes[0].is_leader());
    let noop = c.nodes[0].log.last_index();
    assert!(c.nodes[0].commit < noop, "the no-op's Appends were lost");
    c.nodes[0].read(5);
    for _tick in 0..4 * c.nodes[0].cfg.heartbeat_ticks {
        c.nodes[0].tick();
        c.pump(&|_, _, _| true);
    }
    assert!(
        c.nodes[0].commit >= noop,
        "the no-op was resent and committed"
    );
    assert_eq!(c.reads[0], vec![5], "the parked read was served");
}

#[test]
fn a_lease_is_measured_on_the_monotonic_clock_not_in_ticks() {
    let mut c = Cluster::new(3, Bugs::default(), 64);
    for n in &mut c.nodes {
        n.cfg.read_mode = ReadMode::Lease;
        n.set_monotonic_ms(1_000);
    }
    c.elect(0, &|_, _, _| true);
    assert!(c.nodes[0].is_leader());
    // A heartbeat round acknowledged by a majority grants the lease.
    for _ in 0..c.nodes[0].cfg.heartbeat_ticks {
        c.nodes[0].tick();
    }
    c.pump(&|_, _, _| true);
    c.nodes[0].read(1);
    let rd = c.nodes[0].take_ready();
    assert_eq!(rd.reads.len(), 1, "a read within the lease is local");
    assert!(rd.messages.is_empty(), "{:?}", rd.messages);
    // Stopped for a second: the process comes back to one late tick, but
    // its peers' timers ran, so the lease is over and a read needs a
    // round of acknowledgements.
    c.nodes[0].set_monotonic_ms(2_000);
    c.nodes[0].tick();
    c.nodes[0].take_ready();
    c.nodes[0].read(2);
    let rd = c.nodes[0].take_ready();
    assert!(rd.reads.is_empty(), "a lapsed lease served a read locally");
}

#[test]
fn a_partitioned_leader_steps_down_and_cannot_serve_reads() {
    let mut c = Cluster::new(5, Bugs::default(), 64);
    c.elect(0, &|_, _, _| true);
    assert!(c.nodes[0].is_leader());
    // Isolate the leader; the majority elects someone else.
    let majority = |f: usize, t: usize, _: &Msg| f != 0 && t != 0;
    c.elect(1, &majority);
    assert!(c.nodes[1].is_leader());
    // The old leader still thinks it leads until check-quorum fires, but a
    // ReadIndex read there is never confirmed.
    c.nodes[0].read(7);
    c.pump(&|f, t, _| f == 0 && t == 0);
    let rd = c.nodes[0].take_ready();
    assert!(rd.reads.is_empty(), "an isolated leader confirmed a read");
    for _ in 0..2 * c.nodes[0].cfg.election_ticks {
        c.nodes[0].tick();
    }
    assert_eq!(
        c.nodes[0].role,
        Role::Follower,
        "check-quorum steps the isolated leader down"
    );
    let rd = c.nodes[0].take_ready();
    assert!(
        rd.rejected_reads.contains(&7),
        "its pending read is handed back"
    );
    // After healing it follows the new term and logs converge.
    c.nodes[1].propose(op(9));
    c.pump(&|_, _, _| true);
    for _ in 0..c.nodes[1].cfg.heartbeat_ticks {
        c.nodes[1].tick();
    }
    c.pump(&|_, _, _| true);
    assert_eq!(c.nodes[0].leader, Some(1));
    assert_eq!(c.nodes[0].log.last_index(), c.nodes[1].log.last_index());
}

#[test]
fn a_candidate_restarted_mid_election_keeps_its_term_and_vote() {
    let mut c = Cluster::new(3, Bugs::default(), 64);
    // n0 becomes a candidate (past pre-vote) but its vote requests are lost.
    c.elect(0, &|_, _, m| {
        matches!(m, Msg::PreVote { .. } | Msg::PreVoteResp { .. })
    });
    assert_eq!(c.nodes[0].role, Role::Candidate);
    let term = c.nodes[0].term;
    c.crash(0);
    c.restart(0);
    assert_eq!(
        (c.nodes[0].term, c.nodes[0].vote),
        (term, Some(0)),
        "term and self-vote survive the restart"
    );
    // In that term it must refuse n1.
    c.nodes[0].step(
        1,
        Msg::Vote {
            term,
            last_index: 10,
            last_term: 10,
            transfer: false,
        },
    );
    let rd = c.nodes[0].take_ready();
    assert!(rd
        .messages
        .iter()
        .any(|(_, m)| matches!(m, Msg::VoteResp { granted: false, .. })));
    // With the volatile-vote bug, the restarted node forgets and votes again.
    let mut c = Cluster::new(
        3,
        Bugs {
            volatile_vote: true,
            ..Default::default()
        },
        64,
    );
    c.elect(0, &|_, _, m| {
        matches!(m, Msg::PreVote { .. } | Msg::PreVoteResp { .. })
    });
    let term = c.nodes[0].term;
    c.crash(0);
    c.restart(0);
    c.nodes[0].step(
        1,
        Msg::Vote {
            term,
            last_index: 10,
            last_term: 10,
            transfer: false,
        },
    );
    let rd = c.nodes[0].take_ready();
    assert!(
        rd.messages
            .iter()
            .any(|(_, m)| matches!(m, Msg::VoteResp { granted: true, .. })),
        "the bug double-votes"
    );
}

#[test]
fn leadership_transfer_hands_over_without_losing_entries() {
    let mut c = Cluster::new(3, Bugs::default(), 64);
    c.elect(0, &|_, _, _| true);
    c.nodes[0].propose(op(1));
    c.pump(&|_, _, _| true);
    c.nodes[0].transfer_leadership(2);
    c.pump(&|_, _, _| true);
    assert!(c.nodes[2].is_leader(), "n2 took over via TimeoutNow");
    assert!(!c.nodes[0].is_leader());
    assert!(c.nodes[2].log.last_index() >= 2);
    assert!(
        c.nodes[0].propose(op(2)).is_none(),
        "the old leader refuses proposals"
    );
}
