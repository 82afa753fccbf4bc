//! Drawing one fault of a spec: the partition's cut, the targets, the
//! rates and offsets. The order of random draws is part of the contract
//! (`tests/schedules.rs`): a recorded seed must keep drawing the same faults.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::action::{Action, DiskFaultName, Link, LossKindName, MessageRates, Target, Trigger};
use crate::spec::{
    options, ClockFault, DiskFault, Kind, LossKind, MemberChange, MessageFault, Moment, Named,
    Shape, Spec, Who,
};

/// Every directed link between different components.
pub fn cut_between(components: &[Vec<usize>]) -> Vec<Link> {
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
pub fn isolate(node: usize, n: usize) -> Vec<Link> {
    let others: Vec<usize> = (0..n).filter(|&j| j != node).collect();
    cut_between(&[vec![node], others])
}

/// Each node hears a majority (itself and ring neighbours at both sides),
/// but no two nodes hear the same majority; where the ring allows, a bare
/// one (n/2 others: its nearest neighbours, and on an even ring whose half
/// is odd, the node across). Bare is what exposes a node that votes for a
/// stale log: the leader then commits with every node it hears, the rest
/// lag, and once it is lost only a lagging node reaches a majority. With
/// the nearest n/2 rounded up (all this did before), a ring of six heard
/// four others and an up-to-date node could win after the leader died;
/// under `all` membership changes make six members common. On 7, 11, ...
/// nodes a symmetric ring cannot be bare (n/2 is odd and there is no node
/// across), so each hears one more.
fn majorities_ring(n: usize) -> Vec<Link> {
    let half = n / 2;
    let heard = |d: usize| match (half % 2, n % 2) {
        (0, _) => d <= half / 2,
        (_, 0) => d <= (half - 1) / 2 || d == half,
        _ => d <= half.div_ceil(2),
    };
    let mut cut = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let d = (i + n - j) % n;
            if i != j && !heard(d.min(n - d)) {
                cut.push((i, j));
            }
        }
    }
    cut
}

/// The cut for a partition shape (`isolate-leader` needs the leader; with
/// none known, a random node is isolated).
pub fn partition_cut(
    shape: Shape,
    n: usize,
    rng: &mut impl Rng,
    leader: Option<usize>,
) -> Vec<Link> {
    let all: Vec<usize> = (0..n).collect();
    match shape {
        Shape::Halves => cut_between(&[all[..n / 2].to_vec(), all[n / 2..].to_vec()]),
        Shape::RandomHalves => {
            let mut s = all.clone();
            s.shuffle(rng);
            cut_between(&[s[..n / 2].to_vec(), s[n / 2..].to_vec()])
        }
        Shape::MajoritiesRing => majorities_ring(n),
        Shape::Bridge => {
            // Two halves that can only talk through one bridge node, s[0],
            // which stays linked to everyone.
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

/// A partition's cut drawn anew over `m` members (ranks `0..m`), for a
/// cluster whose size or members moved since the schedule was drawn for
/// its starting places: the same shape where it cuts at `m`, else one
/// member isolated (a ring of majorities needs 4, a bridge 3), so a
/// partition never cuts nothing at any size the cluster passes through.
/// Returns the shape the cut has.
pub fn refit_cut(
    shape: Shape,
    m: usize,
    rng: &mut impl Rng,
    leader: Option<usize>,
) -> (Shape, Vec<Link>) {
    if shape.cuts_at(m) {
        (shape, partition_cut(shape, m, rng, leader))
    } else if m >= 2 {
        (Shape::IsolateOne, isolate(rng.gen_range(0..m), m))
    } else {
        (shape, Vec::new())
    }
}

/// How many of `m` members a target of `k` of `places` nodes names once
/// the cluster moved: all stays all, a majority stays a majority, one
/// stays one, a minority stays a minority (the schedule keeps the nodes,
/// not the `Who` they were drawn for, so it is read back from the count).
pub fn refit_count(places: usize, k: usize, m: usize) -> usize {
    if k >= places {
        m
    } else if k <= 1 {
        1
    } else if k > places / 2 {
        m / 2 + 1
    } else {
        ((m.saturating_sub(1)) / 2).max(1)
    }
}

fn pick_nodes(rng: &mut impl Rng, n: usize, count: usize) -> Vec<usize> {
    let mut s: Vec<usize> = (0..n).collect();
    s.shuffle(rng);
    let mut v = s[..count.min(n)].to_vec();
    v.sort_unstable();
    v
}

/// One option of `all` narrowed to `chosen`.
fn pick<T: Named>(all: &[T], chosen: &[T], rng: &mut impl Rng) -> T {
    *options(all, chosen)
        .choose(rng)
        .expect("every dimension has options")
}

/// The nodes `who` names among `n`.
fn target(who: Who, n: usize, rng: &mut impl Rng) -> Target {
    match who {
        Who::Leader => Target::Leader,
        Who::One => Target::Nodes(pick_nodes(rng, n, 1)),
        Who::Minority => Target::Nodes(pick_nodes(rng, n, ((n - 1) / 2).max(1))),
        Who::Majority => Target::Nodes(pick_nodes(rng, n, n / 2 + 1)),
        Who::All => Target::Nodes((0..n).collect()),
    }
}

fn draw_target(spec: &Spec, n: usize, rng: &mut impl Rng) -> Target {
    let who = if spec.whom.is_empty() {
        *spec
            .kind
            .whom_drawn()
            .choose(rng)
            .expect("every kind has targets")
    } else {
        pick(spec.kind.whom(), &spec.whom, rng)
    };
    target(who, n, rng)
}

/// One of `rates`, drawn.
fn one_of<T: Copy>(rng: &mut impl Rng, rates: &[T]) -> T {
    rates[rng.gen_range(0..rates.len())]
}

/// Unnarrowed: a random mix at moderate rates. Narrowed: exactly the named
/// faults, at rates high enough to bite within seconds.
fn draw_messages(spec: &Spec, rng: &mut impl Rng) -> MessageRates {
    if spec.messages.is_empty() {
        return MessageRates {
            drop_probability: one_of(rng, &[0.05, 0.2]),
            duplicate_probability: one_of(rng, &[0.0, 0.1]),
            // Always some: a node that trusts a corrupted message is a
            // bug no other fault shows. Only a changed digit gets past a
            // parser, and it must land on a value a client reads back: at
            // 5 or 10 % a one-second fault did so about one time in five
            // (no-checksum caught at 7 of 8 seeds in 30 s); at 10 or 20 %
            // a correct node just drops a few more messages.
            corrupt_probability: one_of(rng, &[0.1, 0.2]),
            delay_ms: one_of(rng, &[0.0, 5.0, 20.0]),
        };
    }
    let mut rate = |fault: MessageFault, rates: &[f64]| {
        if spec.messages.contains(&fault) {
            one_of(rng, rates)
        } else {
            0.0
        }
    };
    MessageRates {
        drop_probability: rate(MessageFault::Drop, &[0.2, 0.5]),
        duplicate_probability: rate(MessageFault::Duplicate, &[0.1, 0.3]),
        corrupt_probability: rate(MessageFault::Corrupt, &[0.1, 0.3]),
        delay_ms: rate(MessageFault::Delay, &[5.0, 20.0, 50.0]),
    }
}

/// Clock faults, as Jepsen's clock nemesis: a bump of up to ±2 minutes, a
/// strobe, or a drift, on the leader, one node, a minority or everyone.
/// Offsets are large next to election timeouts (hundreds of ms), so a node
/// that trusts its wall clock for anything time-bounded is exposed.
fn draw_clock(spec: &Spec, n: usize, rng: &mut impl Rng) -> Action {
    let what = pick(ClockFault::ALL, &spec.clocks, rng);
    let target = draw_target(spec, n, rng);
    let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
    let delta_ms = sign * one_of(rng, &[250, 2_000, 30_000, 120_000]);
    match what {
        ClockFault::Bump => Action::ClockBump { target, delta_ms },
        ClockFault::Strobe => Action::ClockStrobe {
            target,
            delta_ms,
            period_ms: one_of(rng, &[10, 100]),
        },
        ClockFault::Drift => Action::ClockDrift {
            target,
            rate: one_of(rng, &[0.5, 0.9, 1.1, 2.0]),
        },
    }
}

/// The nodes disk faults may damage in a run: a minority (one node of a
/// cluster of one or two).
pub fn disk_pool(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    pick_nodes(rng, n, ((n.saturating_sub(1)) / 2).max(1))
}

/// One disk fault on nodes of `pool`: one of them, or all (`minority`).
pub fn draw_disk(spec: &Spec, pool: &[usize], rng: &mut impl Rng) -> Action {
    let fault = pick(DiskFault::ALL, &spec.disks, rng);
    let nodes = match pick(spec.kind.whom(), &spec.whom, rng) {
        Who::Minority => pool.to_vec(),
        _ => vec![*pool.choose(rng).expect("a pool has a node")],
    };
    Action::DamageDisk {
        nodes,
        fault: DiskFaultName(fault),
        seed: rng.gen(),
    }
}

/// Draws one fault of `spec` for `n` nodes. Partition cuts are computed
/// here, except for `isolate-leader`, whose `cut` stays empty until the
/// executor resolves it.
pub fn draw(spec: &Spec, n: usize, rng: &mut impl Rng) -> Action {
    match spec.kind {
        Kind::Partition => {
            let shape = if spec.shapes.is_empty() {
                // `fit_to_size` leaves no partition where nothing cuts.
                *Shape::drawn_at(n)
                    .choose(rng)
                    .expect("a shape that cuts at this size")
            } else {
                pick(Shape::ALL, &spec.shapes, rng)
            };
            let cut = if shape == Shape::IsolateLeader {
                Vec::new()
            } else {
                partition_cut(shape, n, rng, None)
            };
            Action::StartPartition { shape, cut }
        }
        Kind::Pause => Action::Pause {
            target: draw_target(spec, n, rng),
            process: spec.process.clone(),
        },
        Kind::Kill => Action::Kill {
            target: draw_target(spec, n, rng),
            process: spec.process.clone(),
        },
        Kind::Messages => Action::StartMessages {
            rates: draw_messages(spec, rng),
        },
        Kind::Clock => draw_clock(spec, n, rng),
        Kind::Crash => Action::Crash {
            target: draw_target(spec, n, rng),
            loss: LossKindName(pick(LossKind::ALL, &spec.losses, rng)),
            seed: rng.gen(),
        },
        Kind::Disk => {
            let pool = disk_pool(n, rng);
            draw_disk(spec, &pool, rng)
        }
        // Only back: a lease measured on a wall clock outlives its real
        // length when the clock steps back; a step forward ends it early,
        // which is safe.
        Kind::Strand => Action::Strand {
            delta_ms: -one_of(rng, &[2_000, 30_000, 120_000]),
        },
        Kind::Membership => draw_membership(spec, rng),
        // One node (or the leader) starved and slowed while clients burst.
        Kind::Overload => Action::StartOverload {
            target: draw_target(spec, n, rng),
            cpu_percent: one_of(rng, &[10, 25, 50]),
            latency_ms: one_of(rng, &[10.0, 50.0]),
            bandwidth_bytes_per_s: one_of(rng, &[64 * 1024, 1024 * 1024]),
            burst: one_of(rng, &[1.0, 3.0]),
        },
    }
}

/// One membership change. Unnarrowed, half are replaces: swapping out a
/// server is the change operators make most, and the one that moves two
/// servers at once (only joint consensus keeps that safe); the other half
/// grow or shrink the cluster.
fn draw_membership(spec: &Spec, rng: &mut impl Rng) -> Action {
    const DRAWN: [MemberChange; 4] = [
        MemberChange::Add,
        MemberChange::Remove,
        MemberChange::Replace,
        MemberChange::Replace,
    ];
    let change = if spec.changes.is_empty() {
        *DRAWN.choose(rng).expect("not empty")
    } else {
        pick(MemberChange::ALL, &spec.changes, rng)
    };
    let seed = rng.gen();
    match change {
        MemberChange::Add => Action::MemberAdd { seed },
        MemberChange::Remove => Action::MemberRemove { seed },
        MemberChange::Replace => Action::MemberReplace { seed },
    }
}

/// The moment a fault of `spec` is aimed at. Unnarrowed, half the faults
/// keep to the clock and half wait for a moment, so a run meets both the
/// protocol's steady state and its transitions; a kind that cannot keep
/// to the clock (a stranding) always waits for its moment.
pub fn draw_moment(spec: &Spec, rng: &mut impl Rng) -> Moment {
    let moments = spec.kind.moments();
    if !spec.moments.is_empty() {
        return pick(moments, &spec.moments, rng);
    }
    let aimed: Vec<Moment> = moments
        .iter()
        .copied()
        .filter(|m| *m != Moment::Time)
        .collect();
    let timed = moments.contains(&Moment::Time);
    if aimed.is_empty() || (timed && rng.gen_bool(0.5)) {
        Moment::Time
    } else {
        *aimed.choose(rng).expect("not empty")
    }
}

/// `action` (drawn for `spec`) aimed at `moment`, waiting at most
/// `within_ms` for it. The fault hits the node of the moment: a fault drawn
/// for one node hits the leader just elected or committing, or the node
/// that just voted; and where `spec` leaves the choice open, a clock fault
/// aimed at a leader's moment skews that leader and a partition aimed at it
/// isolates it (a lease, a read or a commit of a leader is what the moment
/// exposes) when aimed at an election, and becomes a ring of majorities
/// (`n` nodes) when aimed at a commit. Why both: isolating a leader just
/// elected strands a stale leader beside its successor (what
/// `txn-leader-read` needs), while a ring cut in the middle of commits
/// leaves the nodes across it lagging, and a lagging node elected is what
/// `vote-any` needs; with every aimed partition isolating, a run met 1.7
/// rings in 60 s and `vote-any` waited for the first (median 10.5 s);
/// with commit-aimed rings, 3.8 rings a run (115 over 30 seeds of `all`).
pub fn aim(
    spec: &Spec,
    mut action: Action,
    moment: Moment,
    within_ms: u64,
    n: usize,
) -> (Action, Option<Trigger>) {
    if moment == Moment::Time {
        return (action, None);
    }
    let leaders = matches!(moment, Moment::Elect | Moment::Commit | Moment::Lease);
    let of_moment = if leaders {
        Target::Leader
    } else {
        Target::Moment
    };
    let open_whom = spec.whom.is_empty();
    match &mut action {
        Action::Pause { target, .. }
        | Action::Kill { target, .. }
        | Action::Crash { target, .. }
        | Action::StartOverload { target, .. } => {
            if matches!(&*target, Target::Nodes(v) if v.len() == 1) {
                *target = of_moment;
            }
        }
        Action::ClockBump { target, .. }
        | Action::ClockStrobe { target, .. }
        | Action::ClockDrift { target, .. } => {
            let one = matches!(&*target, Target::Nodes(v) if v.len() == 1);
            if one || (leaders && open_whom) {
                *target = of_moment;
            }
        }
        Action::StartPartition { shape, cut } if leaders && spec.shapes.is_empty() => {
            // Below 4 nodes the ring is the full mesh: isolate instead.
            if moment == Moment::Commit && Shape::MajoritiesRing.cuts_at(n) {
                *shape = Shape::MajoritiesRing;
                *cut = majorities_ring(n);
            } else {
                *shape = Shape::IsolateLeader;
                cut.clear();
            }
        }
        _ => {}
    }
    (action, Some(Trigger { moment, within_ms }))
}
