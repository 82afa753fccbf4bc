//! Exposure windows: spans of a schedule in which a bug can only show if
//! the faults beside them leave the cluster able to show it (a stale
//! leader needs a successor that commits, a split needs whole sides, a
//! ring needs its leader lost and the rest up). `keep_windows_exposed`
//! moves, narrows or drops the faults that would hide a window; `ring`
//! moves a leader loss into each ring of majorities.

pub(crate) mod ring;

use crate::*;
use ring::lose_leaders_in_rings;

/// A window that exposes a bug only if the faults beside it leave the
/// cluster able to show it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Exposes {
    /// A leader stranded on a clock stepped back, or paused (SIGSTOP): a
    /// stale leader shows a bug only if it comes back alive to answer
    /// while the rest elected a successor that commits.
    Stranded,
    Paused,
    /// A partition into sides (`Shape::splits`): a split brain shows only
    /// if every side is whole to act on its own.
    Split,
    /// A stranding being armed: it fires at the next lease a leader
    /// takes, and with the leader paused that is its successor's.
    Armed,
    /// A ring of majorities (`Shape::lags`): a lagging node elected shows
    /// only if the leader is lost and every other node is up.
    Lagging,
}

/// (start ms, end ms, why) of every stale-leader window of `steps`.
pub(crate) fn stale_windows(steps: &[Step]) -> Vec<(u64, u64, Exposes)> {
    spans(steps, |a| matches!(a.kind(), Kind::Strand | Kind::Pause))
        .into_iter()
        .filter_map(|(s, e)| {
            // A stranding waiting for its moment may fire as late as its
            // latest: only from there on is the leader surely stranded.
            let (from, why) = match steps[s].action {
                Action::Strand { .. } => (steps[s].latest_ms(), Exposes::Stranded),
                Action::Pause {
                    target: Target::Leader,
                    ..
                } => (steps[s].at_ms, Exposes::Paused),
                _ => return None,
            };
            Some((from, steps[e].at_ms, why))
        })
        .collect()
}

/// (start ms, end ms, why) of every partition of `steps` into sides
/// (Split) or into a ring (Lagging).
pub(crate) fn partition_windows(steps: &[Step]) -> Vec<(u64, u64, Exposes)> {
    spans(steps, |a| a.kind() == Kind::Partition)
        .into_iter()
        .filter_map(|(s, e)| {
            let Action::StartPartition { shape, .. } = steps[s].action else {
                return None;
            };
            let why = if shape.splits() {
                Exposes::Split
            } else if shape.lags() {
                Exposes::Lagging
            } else {
                return None;
            };
            Some((steps[s].at_ms, steps[e].at_ms, why))
        })
        .collect()
}

/// The nodes a fault takes beside a window (from a stale leader's
/// would-be successors, or from the sides of a split):
/// those it names, and how many more it takes whose names resolve only
/// when it applies (the leader, the node of a moment, a random one cut
/// off). Faults that do not stop a node (messages, clocks, overload) take
/// none.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub(crate) struct Down {
    pub(crate) nodes: Vec<usize>,
    pub(crate) unnamed: usize,
}

impl Down {
    pub(crate) fn unnamed(count: usize) -> Down {
        Down {
            nodes: Vec::new(),
            unnamed: count,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.nodes.len() + self.unnamed
    }

    /// Both together: a node named twice is down once.
    pub(crate) fn with(&self, other: &Down) -> Down {
        let mut nodes = self.nodes.clone();
        nodes.extend(other.nodes.iter().filter(|i| !self.nodes.contains(i)));
        Down {
            nodes,
            unnamed: self.unnamed + other.unnamed,
        }
    }
}

/// What `a` takes during a `why` window, or None when no budget makes it
/// safe: a partition that splits the rest; while the leader is paused, a
/// crash of every node (the paused process dies and never answers stale)
/// and any fault that stops or cuts off whoever leads (`hits_the_leader`):
/// that is the successor, whose commits the stale leader must be seen
/// against; and a leader pause at a stranding's arming (`Exposes::Armed`),
/// which would strand the successor. A fault on every node stays beside a
/// stranding and takes nothing: it
/// ends the stranding rather than faking one, and a power loss of the
/// whole cluster is the durability test too often to give up. Beside a
/// split it takes every node (no side is left to act), so it moves.
/// Beside a ring, losing the leader takes nothing: it is what the ring
/// waits for; nor does stopping every node, which loses the leader too.
pub(crate) fn takes(a: &Action, why: Exposes, n: usize) -> Option<Down> {
    let of = |target: &Target| match target {
        Target::Nodes(v) => Down {
            nodes: v.clone(),
            unnamed: 0,
        },
        Target::Leader | Target::Moment => Down::unnamed(1),
    };
    match (a, why) {
        // A membership change moves who can lead and who makes a
        // majority: beside a stale leader it may remove the leader or
        // its successor's quorum. It waits until the window is over.
        // (Kept out of splits and rings too, half the changes found no
        // room, and `direct-config` went uncaught at 3 of 8 seeds.)
        (a, Exposes::Stranded | Exposes::Paused) if a.kind() == Kind::Membership => None,
        // The window's own pause: one pause at a time.
        (Action::Pause { .. }, Exposes::Paused) => Some(Down::default()),
        (a, Exposes::Paused) if hits_the_leader(a) => None,
        (a, Exposes::Armed) => (!pauses_the_leader(a)).then(Down::default),
        // A kill or crash of the leader was refused above.
        (Action::Kill { target, .. } | Action::Crash { target, .. }, Exposes::Paused) => {
            match target {
                Target::Nodes(v) if v.len() >= n => None,
                t => Some(of(t)),
            }
        }
        // Every node down and back (a power loss) loses the leader too,
        // and the nodes come back into the ring still standing, the
        // lagging ones with it: the ring loses nothing, and a power loss
        // is what shows writes acknowledged before they were durable.
        (a, Exposes::Lagging)
            if loses_the_leader(a) || pauses_the_leader(a) || stops_every_node(a, n) =>
        {
            Some(Down::default())
        }
        (
            Action::Kill { target, .. }
            | Action::Crash { target, .. }
            | Action::Pause { target, .. },
            why,
        ) => match target {
            Target::Nodes(v) if v.len() >= n && why == Exposes::Stranded => Some(Down::default()),
            t => Some(of(t)),
        },
        // The window's own partition: one partition at a time.
        (Action::StartPartition { .. }, Exposes::Split | Exposes::Lagging) => Some(Down::default()),
        (Action::StartPartition { shape, .. }, _) => {
            matches!(shape, Shape::IsolateOne | Shape::IsolateLeader).then(|| Down::unnamed(1))
        }
        _ => Some(Down::default()),
    }
}

/// The windows of a schedule and the faults placed beside each so far,
/// with what they take and when.
pub(crate) struct Windows {
    pub(crate) spans: Vec<(u64, u64, Exposes)>,
    pub(crate) beside: Vec<Vec<(u64, u64, Down)>>,
    pub(crate) n: usize,
}

impl Windows {
    pub(crate) fn new(spans: Vec<(u64, u64, Exposes)>, n: usize) -> Windows {
        Windows {
            beside: vec![Vec::new(); spans.len()],
            spans,
            n,
        }
    }

    /// How many nodes the faults beside window `w` may take at once.
    /// Besides a stale leader, the rest must keep a majority up; a split
    /// shows a split brain only with every side whole, and a ring a
    /// lagging node elected only with every node but the leader up.
    pub(crate) fn spare(&self, w: usize) -> usize {
        match self.spans[w].2 {
            Exposes::Stranded | Exposes::Paused => (self.n - 1).saturating_sub(self.n / 2 + 1),
            Exposes::Split | Exposes::Lagging | Exposes::Armed => 0,
        }
    }

    /// Indexes of the windows overlapping [from, to).
    pub(crate) fn overlapping(&self, from: u64, to: u64) -> impl Iterator<Item = usize> + '_ {
        (0..self.spans.len()).filter(move |&w| from < self.spans[w].1 && to > self.spans[w].0)
    }

    /// The most the faults placed beside window `w` take at any one
    /// instant of [from, to). What is down only grows where a fault
    /// starts, so those instants are the ones to look at.
    pub(crate) fn down(&self, w: usize, from: u64, to: u64) -> Down {
        let beside = &self.beside[w];
        let at = |t: u64| {
            beside
                .iter()
                .filter(|(f, e, _)| *f <= t && t < *e)
                .fold(Down::default(), |all, (_, _, d)| all.with(d))
        };
        beside
            .iter()
            .map(|(f, _, _)| *f)
            .filter(|&f| from < f && f < to)
            .chain([from])
            .map(at)
            .max_by_key(Down::count)
            .unwrap_or_default()
    }

    /// The earliest start and latest end of the windows `a` over
    /// [from, to) would leave nothing to show, with what is already placed
    /// beside them.
    pub(crate) fn blocked(&self, a: &Action, from: u64, to: u64) -> Option<(u64, u64)> {
        self.overlapping(from, to)
            .filter(|&w| {
                let (_, _, why) = self.spans[w];
                takes(a, why, self.n)
                    .is_none_or(|d| self.down(w, from, to).with(&d).count() > self.spare(w))
            })
            .map(|w| (self.spans[w].0, self.spans[w].1))
            .reduce(|(s, e), (s2, e2)| (s.min(s2), e.max(e2)))
    }

    /// How many more nodes a fault over [from, to) may take.
    pub(crate) fn room(&self, from: u64, to: u64) -> usize {
        self.overlapping(from, to)
            .map(|w| self.spare(w).saturating_sub(self.down(w, from, to).count()))
            .min()
            .unwrap_or(usize::MAX)
    }

    /// These windows but those exposing `why`.
    pub(crate) fn without(self, why: Exposes) -> Windows {
        let (spans, beside) = (self.spans.into_iter().zip(self.beside))
            .filter(|(span, _)| span.2 != why)
            .unzip();
        Windows {
            spans,
            beside,
            n: self.n,
        }
    }

    /// A window whose own fault was settled after the others' windows:
    /// only such faults were placed yet, and none overlaps another of its
    /// kind, so nothing is down beside it yet.
    pub(crate) fn add(&mut self, span: (u64, u64, Exposes)) {
        self.spans.push(span);
        self.beside.push(Vec::new());
    }

    /// Records what `a` over [from, to) takes beside the strandings it
    /// overlaps. Beside a leader pause each fault is judged alone, so
    /// nothing is recorded there: counted together there too, a fifth of
    /// a run's kills and crashes were dropped (leader pauses come every
    /// few seconds) and vote-any went from a median of 9 to 17 s; a pause
    /// lasts one interval, and a stranding, which lasts two, is where
    /// piled-up faults had left no quorum.
    pub(crate) fn place(&mut self, a: &Action, from: u64, to: u64) {
        let hit: Vec<usize> = self
            .overlapping(from, to)
            .filter(|&w| self.spans[w].2 == Exposes::Stranded)
            .collect();
        for w in hit {
            let d = takes(a, self.spans[w].2, self.n).expect("placed faults are not blocked");
            self.beside[w].push((from, to, d));
        }
    }
}

/// Moves the faults of other kinds that would leave a window nothing to
/// show to just after it, or before it (see `Settle::each`). A stale
/// leader that still answers while a successor commits is what exposes a
/// lease or a leader-local read; with no successor, or killed while
/// paused, it shows nothing: under `all` half the strandings of a 60 s run
/// met a majority killed or crashed, a quarter of the leader pauses of a
/// txn-leader-read run ended in a crash of the paused leader, and
/// single-node faults piled up (one node paused, one killed, one cut off)
/// left a stranded leader's successors without a quorum for its whole
/// window. So what the faults beside a stranding take is counted
/// together: the rest keep a majority up (beside a pause, each fault alone
/// must leave them one). Likewise a partition into sides shows a split
/// brain only if each side is whole, so nothing beside it stops a node:
/// under `all`, of the 1.9 s a 60 s run spent split, 0.1 s had every side
/// whole. A ring of majorities likewise stops no node but its leader,
/// whose loss it waits for (`lose_leaders_in_rings`). Leader pauses are
/// settled first, beside the strandings and clear of their arming (see
/// `Exposes::Armed`), since each is a window itself;
/// then the partitions beside both; then every other fault beside all of
/// them; last a leader loss moves into each ring. No random draw is made
/// here, so every other fault stays as drawn; with no window, nothing
/// moves.
pub(crate) fn keep_windows_exposed(
    steps: Vec<Step>,
    n: usize,
    first_ms: u64,
    duration_ms: u64,
) -> Vec<Step> {
    let is_partition = |a: &Action| a.kind() == Kind::Partition;
    // A stranding armed while the leader is paused would strand the
    // successor; armed before, it has fired (a healthy leader takes a lease
    // within milliseconds), and a pause beside it is judged as before.
    let armed = spans(&steps, |a| a.kind() == Kind::Strand)
        .into_iter()
        .map(|(s, _)| (steps[s].at_ms, steps[s].at_ms + 1, Exposes::Armed));
    let strandings = stale_windows(&steps)
        .into_iter()
        .filter(|w| w.2 == Exposes::Stranded);
    let mut windows = Windows::new(strandings.chain(armed).collect(), n);
    let mut settle = Settle::new(steps, first_ms, duration_ms);
    settle.each(&mut windows, |s| pauses_the_leader(&s.action));
    let steps = settle.finish();
    let mut windows = windows.without(Exposes::Armed);
    for w in stale_windows(&steps) {
        if w.2 == Exposes::Paused {
            windows.add(w);
        }
    }
    let mut settle = Settle::new(steps, first_ms, duration_ms);
    settle.each(&mut windows, |s| is_partition(&s.action));
    let steps = settle.finish();
    for w in partition_windows(&steps) {
        windows.add(w);
    }
    let mut settle = Settle::new(steps, first_ms, duration_ms);
    settle.each(&mut windows, |s| {
        !pauses_the_leader(&s.action) && !is_partition(&s.action)
    });
    lose_leaders_in_rings(settle.finish(), &windows)
}

/// Whether `a` stops, slows or cuts off whoever leads when it applies.
/// Under `all`, of 21 leader pauses in the first seconds of eight
/// txn-leader-read runs, 6 saw their successor stranded, overloaded or
/// cut off, and 5 caught the bug (8 of 12 with pauses alone).
pub(crate) fn hits_the_leader(a: &Action) -> bool {
    match a {
        Action::Kill { target, .. }
        | Action::Crash { target, .. }
        | Action::Pause { target, .. }
        | Action::StartOverload { target, .. } => *target == Target::Leader,
        Action::StartPartition { shape, .. } => *shape == Shape::IsolateLeader,
        Action::Strand { .. } => true,
        _ => false,
    }
}

/// Whether `a` pauses whoever leads when it applies.
pub(crate) fn pauses_the_leader(a: &Action) -> bool {
    matches!(
        a,
        Action::Pause {
            target: Target::Leader,
            ..
        }
    )
}

/// Whether `a` kills or crashes whoever leads when it applies.
pub(crate) fn loses_the_leader(a: &Action) -> bool {
    matches!(
        a,
        Action::Kill {
            target: Target::Leader,
            ..
        } | Action::Crash {
            target: Target::Leader,
            ..
        }
    )
}

/// Whether `a` kills or crashes every one of the `n` nodes.
pub(crate) fn stops_every_node(a: &Action, n: usize) -> bool {
    match a {
        Action::Kill { target, .. } | Action::Crash { target, .. } => {
            matches!(target, Target::Nodes(v) if v.len() >= n)
        }
        _ => false,
    }
}

/// One pass of `keep_windows_exposed` over a schedule's faults.
pub(crate) struct Settle {
    pub(crate) steps: Vec<Step>,
    /// (start, end) step indexes of every fault but the strandings.
    pub(crate) faults: Vec<(usize, usize)>,
    pub(crate) dropped: Vec<bool>,
    /// No fault moves before this: the first a kind's timeline draws,
    /// while the cluster may still be electing its first leader.
    pub(crate) first_ms: u64,
    pub(crate) duration_ms: u64,
}

impl Settle {
    pub(crate) fn new(steps: Vec<Step>, first_ms: u64, duration_ms: u64) -> Settle {
        Settle {
            faults: spans(&steps, |a| a.kind() != Kind::Strand),
            dropped: vec![false; steps.len()],
            steps,
            first_ms,
            duration_ms,
        }
    }

    /// Places each fault whose start `which` selects beside the windows:
    /// where it was drawn if the windows can spare what it takes, else
    /// just after the windows it would harm (keeping its length, or cut to
    /// no less than half of it to end before the next fault of its kind),
    /// else likewise just before them, if the windows there can spare it,
    /// else narrowed to the room there is (its first nodes, or one node
    /// cut off), else dropped.
    pub(crate) fn each(&mut self, windows: &mut Windows, which: impl Fn(&Step) -> bool) {
        for k in 0..self.faults.len() {
            let (start, end) = self.faults[k];
            if which(&self.steps[start]) && self.settle(windows, k) {
                let s = &self.steps;
                windows.place(&s[start].action, s[start].at_ms, s[end].at_ms);
            }
        }
    }

    /// Where fault `k` goes; false when it is dropped.
    pub(crate) fn settle(&mut self, windows: &Windows, k: usize) -> bool {
        let (start, end) = self.faults[k];
        let (from, to) = (self.steps[start].at_ms, self.steps[end].at_ms);
        let action = &self.steps[start].action;
        let Some((window_start, window_end)) = windows.blocked(action, from, to) else {
            return true;
        };
        let kind = action.kind();
        let of_kind = |&&(s, _): &&(usize, usize)| self.steps[s].action.kind() == kind;
        let next_of_kind = self.faults[k + 1..]
            .iter()
            .find(of_kind)
            .map_or(self.duration_ms, |&(s, _)| self.steps[s].at_ms);
        let last_of_kind = self.faults[..k]
            .iter()
            .rev()
            .find(of_kind)
            .map_or(self.first_ms, |&(_, e)| self.steps[e].at_ms + 1);
        // After the window, cut short if need be to end before the next
        // fault of its kind, but to no less than half its length; else
        // likewise just before it, after the last fault of its kind.
        let len = to - from;
        let after_from = window_end + 1;
        let after = (
            after_from,
            (after_from + len).min(next_of_kind.saturating_sub(1)),
        );
        let before_to = window_start.saturating_sub(1);
        let before = (before_to.saturating_sub(len).max(last_of_kind), before_to);
        for (new_from, new_to) in [after, before] {
            let long_enough = new_to >= new_from + len.div_ceil(2);
            if long_enough && windows.blocked(action, new_from, new_to).is_none() {
                self.steps[start].at_ms = new_from;
                self.steps[end].at_ms = new_to;
                return true;
            }
        }
        let mut narrowed = action.clone();
        if narrow(&mut narrowed, windows.n, windows.room(from, to))
            && windows.blocked(&narrowed, from, to).is_none()
        {
            self.steps[end].action = narrowed.undo().expect("a fault's start");
            self.steps[start].action = narrowed;
            return true;
        }
        self.dropped[start] = true;
        self.dropped[end] = true;
        false
    }

    /// The schedule without what was dropped, sorted again by time.
    pub(crate) fn finish(self) -> Vec<Step> {
        let mut kept: Vec<Step> = self
            .steps
            .into_iter()
            .zip(self.dropped)
            .filter_map(|(s, d)| (!d).then_some(s))
            .collect();
        kept.sort_by_key(|s| s.at_ms);
        kept
    }
}

/// Narrows a fault to what `room` nodes can take: its first `room` nodes,
/// or one node cut off. False if there is no room or the fault is aimed at
/// the leader.
pub(crate) fn narrow(action: &mut Action, n: usize, room: usize) -> bool {
    if room == 0 {
        return false;
    }
    match action {
        Action::Kill { target, .. }
        | Action::Crash { target, .. }
        | Action::Pause { target, .. } => {
            // The leader cannot be narrowed to fewer nodes.
            let Target::Nodes(v) = target else {
                return false;
            };
            v.truncate(room);
        }
        Action::StartPartition { shape, cut } => {
            let node = cut.first().map_or(0, |l| l.0);
            *shape = Shape::IsolateOne;
            *cut = isolate(node, n);
        }
        _ => {}
    }
    true
}

/// (start, end) indexes of every fault among `steps` whose action `of`
/// selects: each start paired with the next end of its kind.
pub(crate) fn spans(steps: &[Step], of: impl Fn(&Action) -> bool) -> Vec<(usize, usize)> {
    let mut open: Vec<(Kind, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate().filter(|(_, s)| of(&s.action)) {
        let kind = s.action.kind();
        match s.action.phase() {
            Phase::Start => open.push((kind, i)),
            Phase::End => {
                if let Some(p) = open.iter().position(|(k, _)| *k == kind) {
                    out.push((open.remove(p).1, i));
                }
            }
        }
    }
    out
}
