//! What a leader knows of each peer's log (etcd's `Progress`): how far it
//! matches, what to send next, how many appends are in flight, and whether
//! it answered within the current check-quorum period.

#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    pub(super) match_index: u64,
    pub(super) next: u64,
    pub(super) inflight: usize,
    /// Heard from within the current check-quorum period.
    pub(super) active: bool,
    /// Waiting for a snapshot to be acknowledged.
    pub(super) snapshotting: bool,
    /// Heartbeat answers since the follower last answered an append (or
    /// snapshot) while appends were in flight.
    pub(super) quiet_heartbeats: u8,
}

impl Progress {
    /// A new leader's view of a peer: nothing known to match, the next
    /// entry to send after the leader's last; the leader matches itself.
    pub(super) fn for_new_leader(last: u64, is_self: bool) -> Progress {
        Progress {
            match_index: if is_self { last } else { 0 },
            next: last + 1,
            inflight: 0,
            active: true,
            snapshotting: false,
            quiet_heartbeats: 0,
        }
    }

    /// An append answer arrived: on success the match moves forward, on a
    /// rejection `next` moves back to `next_on_reject` (within what the
    /// leader has) and the pipeline restarts from there.
    pub(super) fn on_append_resp(
        &mut self,
        success: bool,
        match_index: u64,
        next_on_reject: u64,
        last: u64,
    ) {
        self.active = true;
        self.inflight = self.inflight.saturating_sub(1);
        self.quiet_heartbeats = 0;
        if success {
            if match_index > self.match_index {
                self.match_index = match_index;
            }
            self.next = self.next.max(self.match_index + 1);
        } else {
            self.next = next_on_reject.max(self.match_index + 1).min(last + 1);
            self.inflight = 0;
        }
    }

    /// A heartbeat answer arrived. Links are FIFO unless jitter reorders
    /// them, so two heartbeat answers with no append answer between them,
    /// while appends are in flight, mean those appends (or their answers)
    /// were lost: appends are not retried otherwise, and an idle leader
    /// would never commit its no-op. Resend from what the follower has, or
    /// probe with the last entry when that is unknown. Any append answer (a
    /// rejection too) resets the count, so a catch-up in progress is never
    /// restarted.
    pub(super) fn on_heartbeat_resp(&mut self, last: u64) {
        self.active = true;
        if self.inflight > 0 && !self.snapshotting {
            self.quiet_heartbeats = self.quiet_heartbeats.saturating_add(1);
            if self.quiet_heartbeats >= 2 {
                self.quiet_heartbeats = 0;
                self.next = if self.match_index == 0 {
                    last
                } else {
                    self.match_index + 1
                };
                self.inflight = 0;
            }
        } else {
            self.quiet_heartbeats = 0;
        }
    }

    /// The peer installed a snapshot up to `match_index`.
    pub(super) fn on_snapshot_resp(&mut self, match_index: u64) {
        self.active = true;
        self.snapshotting = false;
        self.inflight = 0;
        self.quiet_heartbeats = 0;
        self.match_index = self.match_index.max(match_index);
        self.next = self.match_index + 1;
    }
}
