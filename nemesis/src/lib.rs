//! The fault vocabulary and seeded fault schedules.
//!
//! A schedule is a list of `Step`s (time offset, `Action`), drawn from a
//! ChaCha RNG seeded by the test seed, so the same seed and configuration
//! always give the same schedule (and `--replay` can reuse it verbatim).
//! Targets are node indices; `isolate-leader` is symbolic and resolved by
//! the executor from trace events at the moment it applies. The harness
//! executes actions against its router (links) and node processes
//! (signals, restarts) and records each one in the history.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A family of faults, as named on the command line. It travels only
/// inside a `Spec`'s text, so it needs no serde of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Partition,
    Pause,
    Kill,
    Messages,
    Clock,
    Overload,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Partition,
        Kind::Pause,
        Kind::Kill,
        Kind::Messages,
        Kind::Clock,
        Kind::Overload,
    ];
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!("unknown nemesis {s:?} (available: partition, pause, kill, messages, clock, overload, all, none)")
        })
    }
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Partition => "partition",
            Kind::Pause => "pause",
            Kind::Kill => "kill",
            Kind::Messages => "messages",
            Kind::Clock => "clock",
            Kind::Overload => "overload",
        }
    }

    /// The variants a spec can narrow this kind to, one list per
    /// independent dimension of its draw (what kind of fault; whom it hits).
    pub fn dimensions(self) -> &'static [&'static [&'static str]] {
        match self {
            Kind::Partition => &[&[
                "halves",
                "random-halves",
                "majorities-ring",
                "bridge",
                "isolate-one",
                "isolate-leader",
                "one-way",
            ]],
            Kind::Pause => &[&["leader", "one", "minority"]],
            // As Jepsen's db nemesis: the primary, one, a minority, a
            // majority, or the whole cluster (a power loss).
            Kind::Kill => &[&["leader", "one", "minority", "majority", "all"]],
            Kind::Messages => &[&["drop", "duplicate", "corrupt", "delay"]],
            Kind::Clock => &[
                &["bump", "strobe", "drift"],
                &["leader", "one", "minority", "all"],
            ],
            Kind::Overload => &[&["leader", "one"]],
        }
    }
}

/// One nemesis as named on the command line: a kind, optionally narrowed
/// to some of its variants, joined by `+` (`partition:isolate-leader`,
/// `kill:all`, `clock:strobe+leader`, `messages:corrupt`). A variant
/// narrows its own dimension of the draw; dimensions left unnamed are
/// drawn from all their options. Narrowing is how a test aims at the
/// fault that exposes a bug instead of waiting for a random draw of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Spec {
    pub kind: Kind,
    /// Chosen variants (names from `Kind::dimensions`); empty: all.
    pub only: Vec<&'static str>,
}

impl Spec {
    pub fn all_of(kind: Kind) -> Spec {
        Spec {
            kind,
            only: Vec::new(),
        }
    }

    /// The options left in dimension `dim` after narrowing.
    fn options(&self, dim: usize) -> Vec<&'static str> {
        let all = self.kind.dimensions()[dim];
        let chosen: Vec<&'static str> = all
            .iter()
            .copied()
            .filter(|v| self.only.contains(v))
            .collect();
        if chosen.is_empty() {
            all.to_vec()
        } else {
            chosen
        }
    }

    fn pick(&self, dim: usize, rng: &mut impl Rng) -> &'static str {
        *self
            .options(dim)
            .choose(rng)
            .expect("every dimension has options")
    }

    /// Whether the spec was narrowed in dimension `dim`.
    fn narrowed(&self, dim: usize) -> bool {
        self.kind.dimensions()[dim]
            .iter()
            .any(|v| self.only.contains(v))
    }
}

impl FromStr for Spec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, variants) = match s.split_once(':') {
            Some((k, v)) => (k.trim().parse::<Kind>()?, Some(v)),
            None => (s.trim().parse::<Kind>()?, None),
        };
        let mut only = Vec::new();
        for v in variants
            .into_iter()
            .flat_map(|v| v.split('+'))
            .map(str::trim)
        {
            let known = kind
                .dimensions()
                .iter()
                .flat_map(|d| d.iter())
                .find(|k| **k == v);
            match known {
                Some(k) if !only.contains(k) => only.push(*k),
                Some(_) => {}
                None => {
                    let names: Vec<&str> = kind
                        .dimensions()
                        .iter()
                        .flat_map(|d| d.iter().copied())
                        .collect();
                    return Err(format!(
                        "unknown {} variant {v:?} in {s:?} (available: {})",
                        kind.name(),
                        names.join(", ")
                    ));
                }
            }
        }
        Ok(Spec { kind, only })
    }
}

impl TryFrom<String> for Spec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Spec> for String {
    fn from(s: Spec) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.name())?;
        if !self.only.is_empty() {
            write!(f, ":{}", self.only.join("+"))?;
        }
        Ok(())
    }
}

/// Parses `--nemesis`: a comma list of specs, `all` or `none`. `all`
/// adds every kind not named otherwise (`all,partition:isolate-leader`).
pub fn parse_specs(list: &str) -> Result<Vec<Spec>, String> {
    let mut specs: Vec<Spec> = Vec::new();
    let mut every = false;
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match part {
            "none" => {}
            "all" => every = true,
            p => {
                let spec: Spec = p.parse()?;
                if let Some(old) = specs.iter().find(|s| s.kind == spec.kind) {
                    if *old != spec {
                        return Err(format!(
                            "{} is named twice ({old} and {spec}); join its variants with + instead (e.g. partition:halves+bridge)",
                            spec.kind.name()
                        ));
                    }
                    continue;
                }
                specs.push(spec);
            }
        }
    }
    if every {
        for kind in Kind::ALL {
            if !specs.iter().any(|s| s.kind == kind) {
                specs.push(Spec::all_of(kind));
            }
        }
    }
    specs.sort_by_key(|s| s.kind as u8);
    Ok(specs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    Halves,
    RandomHalves,
    MajoritiesRing,
    Bridge,
    IsolateOne,
    IsolateLeader,
    OneWay,
}

impl Shape {
    pub const ALL: [Shape; 7] = [
        Shape::Halves,
        Shape::RandomHalves,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::IsolateOne,
        Shape::IsolateLeader,
        Shape::OneWay,
    ];
}

/// One thing the nemesis does. `cut` lists directed links (from, to) that
/// carry nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Action {
    StartPartition {
        shape: Shape,
        cut: Vec<(usize, usize)>,
    },
    StopPartition,
    /// With `leader`, `nodes` is replaced by the current leader when the
    /// action applies (the history records whom it hit).
    Pause {
        nodes: Vec<usize>,
        #[serde(default)]
        leader: bool,
    },
    Resume {
        nodes: Vec<usize>,
    },
    Kill {
        nodes: Vec<usize>,
        #[serde(default)]
        leader: bool,
    },
    Restart {
        nodes: Vec<usize>,
    },
    StartMessages {
        drop: f64,
        duplicate: f64,
        corrupt: f64,
        delay_ms: f64,
    },
    StopMessages,
    /// Sets each node's wall clock `delta_ms` away from true time.
    ClockBump {
        nodes: Vec<usize>,
        delta_ms: i64,
        #[serde(default)]
        leader: bool,
    },
    /// Flips each node's wall clock between `delta_ms` off and true time
    /// every `period_ms`.
    ClockStrobe {
        nodes: Vec<usize>,
        delta_ms: i64,
        period_ms: u64,
        #[serde(default)]
        leader: bool,
    },
    /// Each node's wall clock runs at `rate` times true speed (0.5: half
    /// speed) from now on.
    ClockDrift {
        nodes: Vec<usize>,
        rate: f64,
        #[serde(default)]
        leader: bool,
    },
    /// Every skewed clock back to true time.
    ResetClock,
    /// The nodes get `cpu_percent` of the CPU (a SIGSTOP/SIGCONT duty
    /// cycle), their node-to-node links `latency_ms` more delay and at most
    /// `bandwidth_bytes_per_s`, while clients send at `burst` times the rate.
    StartOverload {
        nodes: Vec<usize>,
        cpu_percent: u32,
        latency_ms: f64,
        bandwidth_bytes_per_s: u64,
        burst: f64,
        #[serde(default)]
        leader: bool,
    },
    StopOverload,
}

impl Action {
    /// The history's `f` for this action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::StartPartition { .. } => "start-partition",
            Action::StopPartition => "stop-partition",
            Action::Pause { .. } => "pause",
            Action::Resume { .. } => "resume",
            Action::Kill { .. } => "kill",
            Action::Restart { .. } => "restart",
            Action::StartMessages { .. } => "start-messages",
            Action::StopMessages => "stop-messages",
            Action::ClockBump { .. } => "clock-bump",
            Action::ClockStrobe { .. } => "clock-strobe",
            Action::ClockDrift { .. } => "clock-drift",
            Action::ResetClock => "reset-clock",
            Action::StartOverload { .. } => "start-overload",
            Action::StopOverload => "stop-overload",
        }
    }

    /// The action that undoes this one, if it starts a fault.
    pub fn undo(&self) -> Option<Action> {
        match self {
            Action::StartPartition { .. } => Some(Action::StopPartition),
            // Undoing a leader-targeted fault resumes / restarts whoever
            // is paused / down (empty list): the executor knows whom it hit.
            Action::Pause { nodes, leader } => Some(Action::Resume {
                nodes: if *leader { Vec::new() } else { nodes.clone() },
            }),
            Action::Kill { nodes, leader } => Some(Action::Restart {
                nodes: if *leader { Vec::new() } else { nodes.clone() },
            }),
            Action::StartMessages { .. } => Some(Action::StopMessages),
            Action::ClockBump { .. } | Action::ClockStrobe { .. } | Action::ClockDrift { .. } => {
                Some(Action::ResetClock)
            }
            Action::StartOverload { .. } => Some(Action::StopOverload),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at_ms: u64,
    pub action: Action,
}

/// Every directed link between different components.
pub fn cut_between(components: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut cut = Vec::new();
    for (a, ca) in components.iter().enumerate() {
        for (b, cb) in components.iter().enumerate() {
            if a != b {
                for &x in ca {
                    for &y in cb {
                        cut.push((x, y));
                    }
                }
            }
        }
    }
    cut.sort_unstable();
    cut
}

/// Every link touching `node`, both directions.
pub fn isolate(node: usize, n: usize) -> Vec<(usize, usize)> {
    let others: Vec<usize> = (0..n).filter(|&j| j != node).collect();
    cut_between(&[vec![node], others])
}

/// The cut for a partition shape (`isolate-leader` needs the leader).
pub fn partition_cut(
    shape: Shape,
    n: usize,
    rng: &mut impl Rng,
    leader: Option<usize>,
) -> Vec<(usize, usize)> {
    let all: Vec<usize> = (0..n).collect();
    match shape {
        Shape::Halves => cut_between(&[all[..n / 2].to_vec(), all[n / 2..].to_vec()]),
        Shape::RandomHalves => {
            let mut s = all.clone();
            s.shuffle(rng);
            cut_between(&[s[..n / 2].to_vec(), s[n / 2..].to_vec()])
        }
        Shape::MajoritiesRing => {
            // Each node sees a majority (itself and its ring neighbours), but
            // no two nodes see the same majority.
            // A majority is n/2 + 1: itself plus n/2 others, half each side.
            let reach = (n / 2).div_ceil(2);
            let mut cut = Vec::new();
            for i in 0..n {
                for j in 0..n {
                    let d = (i + n - j) % n;
                    let ring = d.min(n - d);
                    if i != j && ring > reach {
                        cut.push((i, j));
                    }
                }
            }
            cut
        }
        Shape::Bridge => {
            // Two halves that can only talk through one bridge node.
            // s[0] is the bridge: it stays linked to everyone.
            let mut s = all.clone();
            s.shuffle(rng);
            let (a, b) = s[1..].split_at((n - 1) / 2);
            cut_between(&[a.to_vec(), b.to_vec()])
        }
        Shape::IsolateOne => isolate(rng.gen_range(0..n), n),
        Shape::IsolateLeader => {
            leader.map_or_else(|| isolate(rng.gen_range(0..n), n), |l| isolate(l, n))
        }
        Shape::OneWay => {
            // Everyone hears nothing from A; A still hears everyone.
            let a = rng.gen_range(0..n);
            (0..n).filter(|&j| j != a).map(|j| (a, j)).collect()
        }
    }
}

fn pick(rng: &mut impl Rng, n: usize, count: usize) -> Vec<usize> {
    let mut s: Vec<usize> = (0..n).collect();
    s.shuffle(rng);
    let mut v = s[..count.min(n)].to_vec();
    v.sort_unstable();
    v
}

impl Shape {
    fn from_name(name: &str) -> Shape {
        match name {
            "halves" => Shape::Halves,
            "random-halves" => Shape::RandomHalves,
            "majorities-ring" => Shape::MajoritiesRing,
            "bridge" => Shape::Bridge,
            "isolate-one" => Shape::IsolateOne,
            "isolate-leader" => Shape::IsolateLeader,
            "one-way" => Shape::OneWay,
            other => unreachable!("not a partition shape: {other}"),
        }
    }
}

/// Targets named by a variant; `None` for the leader, which the executor
/// resolves when the action applies.
fn targets(variant: &str, n: usize, rng: &mut impl Rng) -> Option<Vec<usize>> {
    match variant {
        "leader" => None,
        "one" => Some(pick(rng, n, 1)),
        "minority" => Some(pick(rng, n, ((n - 1) / 2).max(1))),
        "majority" => Some(pick(rng, n, n / 2 + 1)),
        "all" => Some((0..n).collect()),
        other => unreachable!("not a target: {other}"),
    }
}

/// Draws one fault of `spec` for `n` nodes. Partition cuts are computed
/// here, except for `isolate-leader`, whose `cut` stays empty until the
/// executor resolves it.
pub fn draw(spec: &Spec, n: usize, rng: &mut impl Rng) -> Action {
    match spec.kind {
        Kind::Partition => {
            let shape = Shape::from_name(spec.pick(0, rng));
            let cut = if shape == Shape::IsolateLeader {
                Vec::new()
            } else {
                partition_cut(shape, n, rng, None)
            };
            Action::StartPartition { shape, cut }
        }
        Kind::Pause => {
            let who = targets(spec.pick(0, rng), n, rng);
            Action::Pause {
                leader: who.is_none(),
                nodes: who.unwrap_or_default(),
            }
        }
        Kind::Kill => {
            let who = targets(spec.pick(0, rng), n, rng);
            Action::Kill {
                leader: who.is_none(),
                nodes: who.unwrap_or_default(),
            }
        }
        // Unnarrowed: a random mix at moderate rates. Narrowed: exactly the
        // named faults, at rates high enough to bite within seconds.
        Kind::Messages if !spec.narrowed(0) => Action::StartMessages {
            drop: [0.05, 0.2][rng.gen_range(0..2)],
            duplicate: [0.0, 0.1][rng.gen_range(0..2)],
            corrupt: [0.0, 0.05][rng.gen_range(0..2)],
            delay_ms: [0.0, 5.0, 20.0][rng.gen_range(0..3)],
        },
        Kind::Messages => {
            let on = |v: &str| spec.only.contains(&v);
            let mut rate = |on: bool, rates: &[f64]| {
                if on {
                    rates[rng.gen_range(0..rates.len())]
                } else {
                    0.0
                }
            };
            Action::StartMessages {
                drop: rate(on("drop"), &[0.2, 0.5]),
                duplicate: rate(on("duplicate"), &[0.1, 0.3]),
                corrupt: rate(on("corrupt"), &[0.1, 0.3]),
                delay_ms: rate(on("delay"), &[5.0, 20.0, 50.0]),
            }
        }
        Kind::Clock => draw_clock(spec, n, rng),
        // One node (or the leader) starved and slowed while clients burst.
        Kind::Overload => {
            let who = targets(spec.pick(0, rng), n, rng);
            Action::StartOverload {
                leader: who.is_none(),
                nodes: who.unwrap_or_default(),
                cpu_percent: [10, 25, 50][rng.gen_range(0..3)],
                latency_ms: [10.0, 50.0][rng.gen_range(0..2)],
                bandwidth_bytes_per_s: [64 * 1024, 1024 * 1024][rng.gen_range(0..2)],
                burst: [1.0, 3.0][rng.gen_range(0..2)],
            }
        }
    }
}

/// Clock faults, as Jepsen's clock nemesis: a bump of up to ±2 minutes, a
/// strobe, or a drift, on the leader, one node, a minority or everyone.
/// Offsets are large next to election timeouts (hundreds of ms), so a node
/// that trusts its wall clock for anything time-bounded is exposed.
fn draw_clock(spec: &Spec, n: usize, rng: &mut impl Rng) -> Action {
    let what = spec.pick(0, rng);
    let who = targets(spec.pick(1, rng), n, rng);
    let leader = who.is_none();
    let nodes = who.unwrap_or_default();
    let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
    let delta_ms = sign * [250, 2_000, 30_000, 120_000][rng.gen_range(0..4)];
    match what {
        "bump" => Action::ClockBump {
            nodes,
            delta_ms,
            leader,
        },
        "strobe" => Action::ClockStrobe {
            nodes,
            delta_ms,
            period_ms: [10, 100][rng.gen_range(0..2)],
            leader,
        },
        _ => Action::ClockDrift {
            nodes,
            rate: [0.5, 0.9, 1.1, 2.0][rng.gen_range(0..4)],
            leader,
        },
    }
}

/// The whole fault schedule for a run. Each kind runs on its own timeline
/// (faults of one kind never overlap; each lasts `interval_ms`, followed by
/// a calm of 0.5 to 1.5 times `interval_ms`, starting at a seeded offset), and the timelines
/// are merged, so different kinds compose: a partition can be under way
/// when a pause begins, as with Jepsen's composed nemeses. The harness heals
/// whatever is still active at the end.
pub fn schedule(
    specs: &[Spec],
    n: usize,
    seed: u64,
    interval_ms: u64,
    duration_ms: u64,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if specs.is_empty() || interval_ms == 0 {
        return steps;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6E65_6D65_7369_7321);
    for spec in specs {
        let mut t = interval_ms / 2 + rng.gen_range(0..=interval_ms);
        while t < duration_ms {
            let action = draw(spec, n, &mut rng);
            let undo = action.undo().expect("drawn actions start a fault");
            steps.push(Step { at_ms: t, action });
            let end = (t + interval_ms).min(duration_ms);
            steps.push(Step {
                at_ms: end,
                action: undo,
            });
            // A calm of random length (mean `interval_ms`): with a fixed
            // calm every kind would repeat with the same period, so two
            // kinds would keep one phase for the whole run and, at some
            // seeds, never be active together.
            t = end + rng.gen_range(interval_ms / 2..=interval_ms + interval_ms / 2);
        }
    }
    // Stable: a fault and its undo keep their order at equal times.
    steps.sort_by_key(|s| s.at_ms);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_reproducible_from_the_seed() {
        let all = parse_specs("all").unwrap();
        let a = schedule(&all, 5, 42, 1000, 30_000);
        assert_eq!(a, schedule(&all, 5, 42, 1000, 30_000));
        assert_ne!(a, schedule(&all, 5, 43, 1000, 30_000));
        assert!(a.len() >= 20);
        // Per kind, faults are undone in order, one at a time; kinds overlap.
        for kind in Kind::ALL {
            let mine: Vec<&Step> = a.iter().filter(|s| kind_of(&s.action) == kind).collect();
            assert!(!mine.is_empty(), "{kind:?} is scheduled");
            for pair in mine.chunks(2) {
                assert_eq!(pair[0].action.undo(), Some(pair[1].action.clone()));
                assert!(pair[0].at_ms < pair[1].at_ms);
            }
        }
        let overlapping = a
            .windows(2)
            .any(|w| w[0].action.undo().is_some() && w[1].action.undo().is_some());
        assert!(overlapping, "kinds compose");
    }

    #[test]
    fn kinds_meet_in_every_alignment_at_every_seed() {
        // With a fixed calm, two kinds at one interval keep one phase for a
        // whole run: at some seeds a kill would never meet a message fault.
        let specs = parse_specs("kill:leader,messages:drop").unwrap();
        for seed in 0..50 {
            let steps = schedule(&specs, 5, seed, 500, 30_000);
            let mut lossy = false;
            let (mut during, mut outside) = (0, 0);
            for s in &steps {
                match s.action {
                    Action::StartMessages { .. } => lossy = true,
                    Action::StopMessages => lossy = false,
                    Action::Kill { .. } if lossy => during += 1,
                    Action::Kill { .. } => outside += 1,
                    _ => {}
                }
            }
            assert!(
                during >= 3 && outside >= 3,
                "seed {seed}: {during} kills during message faults, {outside} outside"
            );
        }
    }

    fn kind_of(a: &Action) -> Kind {
        match a {
            Action::StartPartition { .. } | Action::StopPartition => Kind::Partition,
            Action::Pause { .. } | Action::Resume { .. } => Kind::Pause,
            Action::Kill { .. } | Action::Restart { .. } => Kind::Kill,
            Action::StartMessages { .. } | Action::StopMessages => Kind::Messages,
            Action::ClockBump { .. }
            | Action::ClockStrobe { .. }
            | Action::ClockDrift { .. }
            | Action::ResetClock => Kind::Clock,
            Action::StartOverload { .. } | Action::StopOverload => Kind::Overload,
        }
    }

    #[test]
    fn partition_shapes_cut_what_they_say() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let halves = partition_cut(Shape::Halves, 5, &mut rng, None);
        assert_eq!(halves.len(), 2 * 2 * 3);
        assert!(halves.contains(&(0, 4)) && halves.contains(&(4, 0)) && !halves.contains(&(0, 1)));
        // Majorities ring: everyone keeps exactly a majority (itself + 2).
        let ring = partition_cut(Shape::MajoritiesRing, 5, &mut rng, None);
        for i in 0..5 {
            let reachable = 5 - ring.iter().filter(|(a, _)| *a == i).count();
            assert_eq!(reachable, 3, "node {i}");
        }
        // One-way: A's messages are cut, messages to A are not.
        let one = partition_cut(Shape::OneWay, 5, &mut rng, None);
        let a = one[0].0;
        assert!(one.iter().all(|(f, t)| *f == a && *t != a));
        assert_eq!(one.len(), 4);
        // Isolating the leader cuts exactly its links.
        let iso = partition_cut(Shape::IsolateLeader, 5, &mut rng, Some(3));
        assert_eq!(iso.len(), 8);
        assert!(iso.iter().all(|(f, t)| *f == 3 || *t == 3));
        // The bridge node reaches both sides; the sides do not reach each other.
        let bridge = partition_cut(Shape::Bridge, 5, &mut rng, None);
        let touched: std::collections::BTreeSet<usize> =
            bridge.iter().flat_map(|&(a, b)| [a, b]).collect();
        assert_eq!(touched.len(), 4);
    }

    #[test]
    fn specs_parse_print_and_refuse_unknown_names() {
        let kinds =
            |l: &str| -> Vec<Kind> { parse_specs(l).unwrap().iter().map(|s| s.kind).collect() };
        assert_eq!(kinds("all"), Kind::ALL.to_vec());
        assert_eq!(kinds("none"), vec![]);
        assert_eq!(kinds("kill, partition"), vec![Kind::Partition, Kind::Kill]);
        assert_eq!(kinds("overload,clock"), vec![Kind::Clock, Kind::Overload]);
        let e = parse_specs("frobnicate").unwrap_err();
        assert!(e.contains("unknown nemesis"), "{e}");
        let e = parse_specs("partition:isolate-leeder").unwrap_err();
        assert!(
            e.contains("unknown partition variant \"isolate-leeder\"") && e.contains("one-way"),
            "{e}"
        );
        let e = parse_specs("kill:all,kill:one").unwrap_err();
        assert!(e.contains("named twice"), "{e}");
        // `all` fills in what is not named; a narrowed spec stands.
        let s = parse_specs("all,clock:strobe+leader").unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[4].to_string(), "clock:strobe+leader");
        // Specs travel in test.json as their text.
        let json = serde_json::to_string(&s[4]).unwrap();
        assert_eq!(json, "\"clock:strobe+leader\"");
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), s[4]);
        assert!(serde_json::from_str::<Spec>("\"clock:sideways\"").is_err());
    }

    #[test]
    fn narrowed_specs_draw_only_their_variants() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let spec = |t: &str| t.parse::<Spec>().unwrap();
        for _ in 0..200 {
            match draw(&spec("partition:isolate-leader"), 5, &mut rng) {
                Action::StartPartition { shape, cut } => {
                    assert_eq!(shape, Shape::IsolateLeader);
                    assert!(cut.is_empty(), "resolved when applied");
                }
                a => panic!("{a:?}"),
            }
            match draw(&spec("kill:all"), 5, &mut rng) {
                Action::Kill { nodes, leader } => {
                    assert_eq!((nodes, leader), (vec![0, 1, 2, 3, 4], false))
                }
                a => panic!("{a:?}"),
            }
            match draw(&spec("messages:corrupt"), 5, &mut rng) {
                Action::StartMessages {
                    drop,
                    duplicate,
                    corrupt,
                    delay_ms,
                } => {
                    assert!(corrupt >= 0.1);
                    assert_eq!((drop, duplicate, delay_ms), (0.0, 0.0, 0.0));
                }
                a => panic!("{a:?}"),
            }
            // Two dimensions: the type and the targets, each narrowed.
            match draw(&spec("clock:strobe+leader"), 5, &mut rng) {
                Action::ClockStrobe { nodes, leader, .. } => assert!(nodes.is_empty() && leader),
                a => panic!("{a:?}"),
            }
            // Narrowing one dimension leaves the other whole.
            match draw(&spec("clock:minority"), 5, &mut rng) {
                Action::ClockBump { nodes, leader, .. }
                | Action::ClockStrobe { nodes, leader, .. }
                | Action::ClockDrift { nodes, leader, .. } => {
                    assert!(nodes.len() == 2 && !leader)
                }
                a => panic!("{a:?}"),
            }
        }
        // Unnarrowed kills reach every target, the whole cluster included.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            if let Action::Kill { nodes, leader } = draw(&Spec::all_of(Kind::Kill), 5, &mut rng) {
                seen.insert((nodes.len(), leader));
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }
}
