//! Following a leader: the follower's step function, and what any role
//! does with a message from the leader of its term (appends, heartbeats,
//! snapshots), which makes it a follower first.

use super::{Bugs, Command, Entry, Msg, NodeIx, Raft, Role, Trace};

impl Raft {
    /// A follower's step function.
    pub(super) fn step_follower(&mut self, from: NodeIx, m: Msg) {
        match m {
            Msg::TimeoutNow { .. } => self.start_election(true),
            m => self.follow(from, m),
        }
    }

    /// A message only a leader sends: follow its sender.
    pub(super) fn follow(&mut self, from: NodeIx, m: Msg) {
        match m {
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
            Msg::Heartbeat { term, commit, ctx } => {
                self.heard_from_leader(from, term);
                if commit > self.commit && self.log.term(commit).is_some() {
                    self.advance_commit(commit.min(self.log.last_index()), None);
                }
                let t = self.term;
                self.send(from, Msg::HeartbeatResp { term: t, ctx });
            }
            Msg::Snapshot { term, snapshot } => {
                self.heard_from_leader(from, term);
                let idx = snapshot.index;
                if idx > self.commit {
                    self.log.compact(idx, snapshot.term);
                    self.commit = idx;
                    self.snapshot = Some(snapshot.clone());
                    self.ready.install = Some(snapshot);
                    self.refresh_conf();
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
            _ => {}
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
                self.reject_append(from, conflict_term, conflict_index);
                return;
            }
        }
        let last_new = prev_index + entries.len() as u64;
        // A configuration is in force once in the log, and no longer once
        // truncated away.
        let mut conf_changed = false;
        for e in entries {
            conf_changed |= matches!(e.cmd, Command::Config(_));
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
                    conf_changed = true;
                    self.log.push(e.clone());
                    self.ready.append.push(e);
                }
                None => {
                    self.log.push(e.clone());
                    self.ready.append.push(e);
                }
            }
        }
        if conf_changed {
            self.refresh_conf();
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

    /// Answers an append this node cannot take, saying where its log
    /// diverges (the current term tells a stale leader it is one).
    pub(super) fn reject_append(
        &mut self,
        to: NodeIx,
        conflict_term: Option<u64>,
        conflict_index: u64,
    ) {
        let term = self.term;
        let resp = Msg::AppendResp {
            term,
            success: false,
            match_index: 0,
            conflict_term,
            conflict_index,
        };
        self.send(to, resp);
    }
}
