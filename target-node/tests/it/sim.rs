//! Seeded simulation of a cluster of Raft cores: delays, drops, duplicates,
//! reordering, partitions, crashes and restarts from durable state, and
//! snapshots. Election safety, log matching, leader completeness and
//! state-machine safety are checked after every tick; failures print the
//! seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use target_node::raft::{
    Bugs, Change, Command, Config, Durable, Entry, Msg, Raft, Ready, Snapshot, Trace,
};

pub struct SimNode {
    pub raft: Raft,
    pub durable: Durable,
    pub applied: u64,
    pub up: bool,
    pub state: Vec<(u64, u64)>, // applied (index, term) sequence, as a digest of the state machine
}

pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: u64,
    pub partition_every: u64,
    pub crash_every: u64,
    pub snapshot_every: u64,
    /// Every so many ticks the leader is asked for a membership change
    /// (0: never): an add, a remove or a replace, keeping 3 to 5 voters.
    pub reconfigure_every: u64,
}

pub struct Sim {
    pub nodes: Vec<SimNode>,
    net: Vec<(u64, usize, usize, Msg)>,
    rng: ChaCha8Rng,
    pub time: u64,
    group: Vec<usize>,
    leaders: HashMap<u64, usize>,
    /// index -> (term, cmd) of every entry applied anywhere.
    applied: BTreeMap<u64, (u64, Command)>,
    faults: Faults,
    next_msg: u64,
    /// Membership changes asked for.
    pub changes: u64,
}

#[derive(Debug)]
pub struct Violation(pub String);

impl Sim {
    pub fn new(n: usize, seed: u64, bugs: Bugs, faults: Faults) -> Sim {
        Sim::with_members(n, n, seed, bugs, faults)
    }

    /// `n` nodes of which the first `members` are the bootstrap voters;
    /// the others wait to be added.
    pub fn with_members(n: usize, members: usize, seed: u64, bugs: Bugs, faults: Faults) -> Sim {
        let nodes = (0..n)
            .map(|i| {
                let mut cfg = Config::new(i, n);
                cfg.members = if i < members {
                    (0..members).collect()
                } else {
                    Vec::new()
                };
                cfg.seed = seed.wrapping_mul(31).wrapping_add(i as u64);
                cfg.bugs = bugs;
                cfg.max_batch = 4;
                SimNode {
                    raft: Raft::new(cfg, Durable::default()),
                    durable: Durable::default(),
                    applied: 0,
                    up: true,
                    state: Vec::new(),
                }
            })
            .collect();
        Sim {
            nodes,
            net: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            time: 0,
            group: vec![0; n],
            leaders: HashMap::new(),
            applied: BTreeMap::new(),
            faults,
            next_msg: 0,
            changes: 0,
        }
    }

    fn persist(node: &mut SimNode, rd: &Ready) {
        if let Some((t, v)) = rd.hard_state {
            node.durable.term = t;
            node.durable.vote = v;
        }
        if let Some(from) = rd.truncate_from {
            if from > node.durable.log.snap_index && from <= node.durable.log.last_index() {
                node.durable.log.truncate_from(from);
            }
        }
        for e in &rd.append {
            if e.index <= node.durable.log.snap_index {
                continue;
            }
            if e.index <= node.durable.log.last_index() {
                node.durable.log.truncate_from(e.index);
            }
            node.durable.log.push(e.clone());
        }
        if let Some(s) = &rd.install {
            node.durable.log.compact(s.index, s.term);
            node.durable.snapshot = Some(s.clone());
        }
    }

    fn handle_ready(&mut self, i: usize) -> Result<(), Violation> {
        for _ in 0..64 {
            let rd = self.nodes[i].raft.take_ready();
            if rd.is_empty() {
                return Ok(());
            }
            Self::persist(&mut self.nodes[i], &rd);
            if let Some(s) = &rd.install {
                let node = &mut self.nodes[i];
                node.applied = s.index;
                node.state = serde_json::from_value(s.data.clone()).unwrap_or_default();
            }
            for (to, m) in rd.messages {
                if self.rng.gen_bool(self.faults.drop) {
                    continue;
                }
                let copies = if self.rng.gen_bool(self.faults.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let at = self.time + self.rng.gen_range(0..=self.faults.max_delay);
                    self.net.push((at, i, to, m.clone()));
                }
            }
            for t in &rd.traces {
                if let Trace::Leader { term } = t {
                    if let Some(&other) = self.leaders.get(term) {
                        if other != i {
                            return Err(Violation(format!(
                                "election safety: n{other} and n{i} both led term {term}"
                            )));
                        }
                    }
                    self.leaders.insert(*term, i);
                    // Leader completeness: it holds every entry applied anywhere.
                    let log = &self.nodes[i].raft.log;
                    for (&idx, (term_applied, _)) in &self.applied {
                        if idx > log.snap_index && log.term(idx) != Some(*term_applied) {
                            return Err(Violation(format!(
                                "leader completeness: n{i} leads term {term} without applied entry {idx} (term {term_applied})"
                            )));
                        }
                    }
                }
            }
            for e in rd.committed {
                self.apply(i, e)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, e: Entry) -> Result<(), Violation> {
        let node = &mut self.nodes[i];
        if e.index <= node.applied {
            return Ok(());
        }
        if e.index != node.applied + 1 {
            return Err(Violation(format!(
                "n{i} applied {} after {}",
                e.index, node.applied
            )));
        }
        node.applied = e.index;
        node.state.push((e.index, e.term));
        match self.applied.get(&e.index) {
            Some((t, c)) if *t != e.term || *c != e.cmd => {
                return Err(Violation(format!(
                "state machine safety: index {} applied as term {t} elsewhere but term {} on n{i}",
                e.index, e.term
            )))
            }
            Some(_) => {}
            None => {
                self.applied.insert(e.index, (e.term, e.cmd.clone()));
            }
        }
        if self.faults.snapshot_every > 0
            && node.applied.is_multiple_of(self.faults.snapshot_every)
            && node.applied <= node.raft.commit
        {
            let term = node.raft.log.term(node.applied).unwrap();
            let snap = Snapshot {
                index: node.applied,
                term,
                data: json!(node.state),
                conf: Some(node.raft.conf_at(node.applied)),
            };
            node.durable.log.compact(snap.index, snap.term);
            node.durable.snapshot = Some(snap.clone());
            node.raft.compact(snap);
        }
        Ok(())
    }

    fn check_log_matching(&self) -> Result<(), Violation> {
        let up: Vec<usize> = (0..self.nodes.len()).collect();
        for (a, &x) in up.iter().enumerate() {
            for &y in &up[a + 1..] {
                let (lx, ly) = (&self.nodes[x].raft.log, &self.nodes[y].raft.log);
                let lo = lx.snap_index.max(ly.snap_index) + 1;
                let hi = lx.last_index().min(ly.last_index());
                // Find the highest index where both have the same term...
                let Some(top) = (lo..=hi).rev().find(|&i| lx.term(i) == ly.term(i)) else {
                    continue;
                };
                // ...then everything before it must be identical.
                for i in lo..=top {
                    if lx.entry(i) != ly.entry(i) {
                        return Err(Violation(format!(
                            "log matching: n{x} and n{y} agree at {top} but differ at {i}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cfg = node.raft.cfg.clone();
        cfg.seed = cfg.seed.wrapping_add(self.time);
        node.raft = Raft::new(cfg, node.durable.clone());
        node.applied = node.durable.snapshot.as_ref().map_or(0, |s| s.index);
        node.state = node
            .durable
            .snapshot
            .as_ref()
            .map(|s| serde_json::from_value(s.data.clone()).unwrap())
            .unwrap_or_default();
        node.up = true;
        // Messages in flight to it are lost with its sockets.
        self.net.retain(|m| m.2 != i);
    }

    pub fn step(&mut self) -> Result<(), Violation> {
        self.time += 1;
        let n = self.nodes.len();
        // Faults.
        if self.faults.partition_every > 0 && self.time.is_multiple_of(self.faults.partition_every)
        {
            if self.rng.gen_bool(0.5) {
                self.group = (0..n).map(|_| self.rng.gen_range(0..2)).collect();
            } else {
                self.group = vec![0; n];
            }
        }
        if self.faults.crash_every > 0 && self.time.is_multiple_of(self.faults.crash_every) {
            let i = self.rng.gen_range(0..n);
            if self.nodes[i].up {
                self.nodes[i].up = false;
            } else {
                self.restart(i);
            }
        }
        if self.time.is_multiple_of(97) {
            // Bring everyone back now and then so progress is possible.
            for i in 0..n {
                if !self.nodes[i].up {
                    self.restart(i);
                }
            }
        }
        if self.faults.reconfigure_every > 0
            && self.time.is_multiple_of(self.faults.reconfigure_every)
        {
            self.reconfigure();
        }
        // Client load: propose at whoever believes it leads.
        for i in 0..n {
            if self.nodes[i].up && self.nodes[i].raft.is_leader() && self.rng.gen_bool(0.3) {
                self.next_msg += 1;
                let cmd = Command::Op {
                    client: "c1".into(),
                    msg_id: self.next_msg,
                    op: json!({"type": "write", "key": 1, "value": self.next_msg}),
                };
                self.nodes[i].raft.propose(cmd);
            }
        }
        for i in 0..n {
            if self.nodes[i].up {
                self.nodes[i].raft.tick();
                self.handle_ready(i)?;
            }
        }
        // Deliver what is due, in random order (reordering).
        let mut due: Vec<(u64, usize, usize, Msg)> = Vec::new();
        let mut later = Vec::new();
        for m in self.net.drain(..) {
            if m.0 <= self.time {
                due.push(m);
            } else {
                later.push(m);
            }
        }
        self.net = later;
        for k in (1..due.len()).rev() {
            let j = self.rng.gen_range(0..=k);
            due.swap(k, j);
        }
        for (_, from, to, m) in due {
            if !self.nodes[to].up || self.group[from] != self.group[to] {
                continue;
            }
            self.nodes[to].raft.step(from, m);
            self.handle_ready(to)?;
        }
        self.check_log_matching()
    }

    /// Asks a leader that is up for an add, a remove or a replace, within
    /// 3 to 5 voters (refusals, a change under way, are fine).
    fn reconfigure(&mut self) {
        let n = self.nodes.len();
        let Some(l) = (0..n).find(|&i| self.nodes[i].up && self.nodes[i].raft.is_leader()) else {
            return;
        };
        let voters: Vec<usize> = self.nodes[l].raft.conf.voters.iter().copied().collect();
        let spare: Vec<usize> = (0..n).filter(|i| !voters.contains(i)).collect();
        let pick = |rng: &mut ChaCha8Rng, v: &[usize]| v[rng.gen_range(0..v.len())];
        let change = match self.rng.gen_range(0..3) {
            0 if voters.len() < 5 && !spare.is_empty() => Change::Add(pick(&mut self.rng, &spare)),
            1 if voters.len() > 3 => Change::Remove(pick(&mut self.rng, &voters)),
            _ if !spare.is_empty() => Change::Replace {
                remove: pick(&mut self.rng, &voters),
                add: pick(&mut self.rng, &spare),
            },
            _ => return,
        };
        let _ = self.nodes[l].raft.propose_change(change);
        self.changes += 1;
    }

    pub fn run(&mut self, ticks: u64) -> Result<(), Violation> {
        for _ in 0..ticks {
            self.step()?;
        }
        Ok(())
    }

    pub fn max_commit(&self) -> u64 {
        self.nodes.iter().map(|n| n.raft.commit).max().unwrap_or(0)
    }
}

pub fn harsh() -> Faults {
    Faults {
        drop: 0.1,
        duplicate: 0.05,
        max_delay: 4,
        partition_every: 60,
        crash_every: 45,
        snapshot_every: 25,
        reconfigure_every: 0,
    }
}

#[test]
fn the_correct_core_keeps_every_invariant_under_every_fault() {
    let mut total_commits = 0;
    for seed in 0..40 {
        let mut sim = Sim::new(5, seed, Bugs::default(), harsh());
        if let Err(v) = sim.run(2_000) {
            panic!("seed {seed}: {} (at tick {})", v.0, sim.time);
        }
        total_commits += sim.max_commit();
    }
    // Faults must not stop progress altogether.
    assert!(
        total_commits > 40 * 50,
        "only {total_commits} commits over 40 seeds"
    );
}

#[test]
fn three_node_clusters_with_message_faults_only_make_steady_progress() {
    for seed in 0..20 {
        let faults = Faults {
            drop: 0.05,
            duplicate: 0.1,
            max_delay: 3,
            partition_every: 0,
            crash_every: 0,
            snapshot_every: 50,
            reconfigure_every: 0,
        };
        let mut sim = Sim::new(3, seed, Bugs::default(), faults);
        sim.run(1_000)
            .unwrap_or_else(|v| panic!("seed {seed}: {}", v.0));
        assert!(
            sim.max_commit() > 100,
            "seed {seed}: commit {}",
            sim.max_commit()
        );
    }
}

/// Runs seeds until the bug shows as an invariant violation.
fn caught(bugs: Bugs, faults: impl Fn() -> Faults, seeds: u64) -> Option<(u64, String)> {
    for seed in 0..seeds {
        let mut sim = Sim::new(5, seed, bugs, faults());
        if let Err(v) = sim.run(3_000) {
            return Some((seed, v.0));
        }
    }
    None
}

#[test]
fn volatile_votes_are_caught_by_restarts() {
    let bugs = Bugs {
        volatile_vote: true,
        ..Default::default()
    };
    let faults = || Faults {
        drop: 0.05,
        duplicate: 0.0,
        max_delay: 3,
        partition_every: 0,
        crash_every: 7,
        snapshot_every: 0,
        reconfigure_every: 0,
    };
    let (seed, v) = caught(bugs, faults, 50).expect("volatile-vote was never caught");
    println!("volatile-vote caught at seed {seed}: {v}");
}

#[test]
fn an_even_quorum_is_caught_by_partitions() {
    let bugs = Bugs {
        even_quorum: true,
        ..Default::default()
    };
    let faults = || Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: 2,
        partition_every: 30,
        crash_every: 0,
        snapshot_every: 0,
        reconfigure_every: 0,
    };
    let (seed, v) = caught(bugs, faults, 50).expect("even-quorum was never caught");
    println!("even-quorum caught at seed {seed}: {v}");
}

#[test]
fn voting_without_the_log_check_is_caught() {
    let bugs = Bugs {
        vote_any: true,
        ..Default::default()
    };
    let (seed, v) = caught(bugs, harsh, 80).expect("vote-any was never caught");
    println!("vote-any caught at seed {seed}: {v}");
}

fn reconfiguring() -> Faults {
    Faults {
        reconfigure_every: 40,
        ..harsh()
    }
}

#[test]
fn the_correct_core_keeps_every_invariant_while_membership_changes() {
    let (mut commits, mut changes, mut sizes) = (0, 0, std::collections::BTreeSet::new());
    for seed in 0..40 {
        let mut sim = Sim::with_members(7, 3, seed, Bugs::default(), reconfiguring());
        if let Err(v) = sim.run(3_000) {
            panic!("seed {seed}: {} (at tick {})", v.0, sim.time);
        }
        commits += sim.max_commit();
        changes += sim.changes;
        let leader = sim.nodes.iter().find(|n| n.raft.is_leader());
        sizes.extend(leader.map(|n| n.raft.conf.voters.len()));
    }
    assert!(commits > 40 * 50, "only {commits} commits over 40 seeds");
    assert!(changes > 40 * 20, "only {changes} changes asked for");
    // The configurations really moved: leaders ended at several sizes.
    assert!(sizes.len() >= 2, "every run ended at sizes {sizes:?}");
}

#[test]
fn switching_configurations_without_a_joint_phase_is_caught() {
    let bugs = Bugs {
        direct_config: true,
        ..Default::default()
    };
    let mut found = None;
    for seed in 0..200 {
        let mut sim = Sim::with_members(7, 3, seed, bugs, reconfiguring());
        if let Err(v) = sim.run(3_000) {
            found = Some((seed, v.0));
            break;
        }
    }
    let (seed, v) = found.expect("direct-config was never caught");
    println!("direct-config caught at seed {seed}: {v}");
}
