//! The fault vocabulary and seeded fault schedules.
//!
//! `spec` is what a user names (`kill:all`, `clock:strobe+leader`), `action`
//! what the nemesis does step by step (typed targets and units, one name
//! table), `draw` how a spec becomes one action, and `schedule` below lays
//! every spec's faults on its own seeded timeline. The same seed and
//! configuration always give the same schedule, and `--replay` reuses a
//! recorded one verbatim. `seed` derives every random stream of a run from
//! the test seed. The harness executes actions against its network (links)
//! and node processes (signals, restarts) and records each in the history.

pub mod action;
pub mod draw;
pub mod seed;
pub mod spec;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use action::{
    lookup, Action, DiskFaultName, Link, LossKindName, MessageRates, Phase, Scope, Step, Target,
    Trigger, ACTIONS,
};
pub use draw::{aim, cut_between, disk_pool, draw, draw_disk, draw_moment, isolate, partition_cut};
pub use spec::{
    parse_specs, ClockFault, DiskFault, Kind, LossKind, MessageFault, Moment, Named, Shape, Spec,
    Who,
};

/// The whole fault schedule for a run. Each kind runs on its own timeline
/// (faults of one kind never overlap; each lasts `interval_ms`, a
/// stranding two (`Kind::intervals`), followed by a calm of 0.5 to 1.5
/// times `interval_ms`, longer when more than four kinds run, starting at
/// a seeded offset), and the timelines are merged, so different kinds
/// compose: a partition can be under way when a pause begins, as with
/// Jepsen's composed nemeses. A fault aimed at a protocol moment is armed
/// at its time and waits up to `interval_ms` for the moment; it lasts from
/// the latest it can start. Every fault is closed by its undo within
/// `duration_ms`.
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
    let mut rng = ChaCha8Rng::seed_from_u64(seed::derive(seed, seed::Stream::Schedule));
    // Many kinds at once leave a cluster few moments with a working
    // majority, and a bug that needs one (a successor committing while a
    // stale leader answers) is then rarely exposed: past four kinds, each
    // kind's calms lengthen so about four are active at a time.
    let quiet = (specs.len() as u64).div_ceil(4).max(1);
    for spec in specs {
        // Disk faults damage only nodes of one minority over the whole run:
        // a correct node stays down on a damaged disk.
        let pool = (spec.kind == Kind::Disk).then(|| disk_pool(n, &mut rng));
        let mut t = interval_ms / 2 + rng.gen_range(0..=interval_ms);
        while t < duration_ms {
            let action = match &pool {
                Some(pool) => draw_disk(spec, pool, &mut rng),
                None => draw(spec, n, &mut rng),
            };
            // The wait for a moment leaves the fault time to act before the
            // run ends.
            let within_ms = interval_ms.min(duration_ms.saturating_sub(t) / 2);
            let (action, on) = aim(spec, action, draw_moment(spec, &mut rng), within_ms);
            let undo = action.undo().expect("drawn actions start a fault");
            let step = Step {
                at_ms: t,
                action,
                on,
            };
            let end = (step.latest_ms() + interval_ms * spec.kind.intervals()).min(duration_ms);
            steps.push(step);
            steps.push(Step::at(end, undo));
            // A calm of random length (mean `interval_ms`): with a fixed
            // calm every kind would repeat with the same period, so two
            // kinds would keep one phase for the whole run and, at some
            // seeds, never be active together.
            t = end + quiet * rng.gen_range(interval_ms / 2..=interval_ms + interval_ms / 2);
        }
    }
    // Stable: a fault and its undo keep their order at equal times.
    steps.sort_by_key(|s| s.at_ms);
    let steps = spare_a_successor(steps, n, duration_ms);
    assert_well_formed(&steps, n);
    steps
}

/// A window in which a leader is stale: stranded on a clock stepped back,
/// or paused (SIGSTOP). It shows a bug only if it comes back alive to
/// answer while the rest elected a successor that commits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stale {
    Stranded,
    Paused,
}

/// (start ms, end ms, why) of every stale-leader window of `steps`.
fn stale_windows(steps: &[Step]) -> Vec<(u64, u64, Stale)> {
    spans(steps, |a| matches!(a.kind(), Kind::Strand | Kind::Pause))
        .into_iter()
        .filter_map(|(s, e)| {
            let why = match steps[s].action {
                Action::Strand { .. } => Stale::Stranded,
                Action::Pause {
                    target: Target::Leader,
                } => Stale::Paused,
                _ => return None,
            };
            Some((steps[s].at_ms, steps[e].at_ms, why))
        })
        .collect()
}

/// Whether `a` during a `why` window leaves no successor to expose the
/// stale leader: kills, crashes and pauses of more nodes than the rest can
/// spare, partitions that split the rest, and, while the leader is paused,
/// a kill or crash that takes the paused leader itself (a crash of every
/// node included: the paused process dies and never answers stale). A
/// fault on every node stays beside a stranding: it ends the stranding
/// rather than faking one, and a power loss of the whole cluster is the
/// durability test too often to give up.
fn harmful(a: &Action, why: Stale, n: usize, spare: usize) -> bool {
    match (a, why) {
        (Action::Pause { .. }, Stale::Paused) => false,
        (Action::Kill { target } | Action::Crash { target, .. }, Stale::Paused) => match target {
            Target::Nodes(v) => v.len() > spare,
            Target::Leader => true,
            Target::Moment => spare == 0,
        },
        (
            Action::Kill { target } | Action::Crash { target, .. } | Action::Pause { target },
            Stale::Stranded,
        ) => match target {
            Target::Nodes(v) => v.len() > spare && v.len() < n,
            Target::Leader | Target::Moment => spare == 0,
        },
        (Action::StartPartition { shape, .. }, _) => {
            spare == 0 || !matches!(shape, Shape::IsolateOne | Shape::IsolateLeader)
        }
        _ => false,
    }
}

/// Moves the faults of other kinds that would leave a stale leader
/// nothing to show (`harmful`) to just after its window. A stale leader
/// that still answers while a successor commits is what exposes a lease or
/// a leader-local read; with no successor, or killed while paused, it
/// shows nothing: under `all` half the strandings of a 60 s run met a
/// majority killed or crashed, and after crashes hit a quorum 5 times in
/// 8, a quarter of the leader pauses of a txn-leader-read run ended in a
/// crash of the paused leader. A moved fault keeps its length; one that no
/// longer fits before the next fault of its kind, another window or the
/// end of the run is narrowed instead (one node, or one node cut off), so
/// the run keeps as many faults. No random draw is made here, so every
/// other fault of the schedule stays as drawn.
fn spare_a_successor(mut steps: Vec<Step>, n: usize, duration_ms: u64) -> Vec<Step> {
    let windows = stale_windows(&steps);
    if windows.is_empty() {
        return steps;
    }
    // Besides the stale leader, the rest must keep a majority up.
    let spare = (n - 1).saturating_sub(n / 2 + 1);
    // The latest end of the windows `a` would harm between `from` and `to`.
    let blocked = |a: &Action, from: u64, to: u64| {
        windows
            .iter()
            .filter(|&&(ws, we, why)| from < we && to > ws && harmful(a, why, n, spare))
            .map(|&(_, we, _)| we)
            .max()
    };
    let faults = spans(&steps, |a| a.kind() != Kind::Strand);
    let mut dropped = vec![false; steps.len()];
    for (k, &(start, end)) in faults.iter().enumerate() {
        let (from, to) = (steps[start].at_ms, steps[end].at_ms);
        let Some(window_end) = blocked(&steps[start].action, from, to) else {
            continue;
        };
        let kind = steps[start].action.kind();
        let next_of_kind = faults[k + 1..]
            .iter()
            .find(|&&(s, _)| steps[s].action.kind() == kind)
            .map_or(duration_ms, |&(s, _)| steps[s].at_ms);
        let (new_from, new_to) = (window_end + 1, window_end + 1 + (to - from));
        if new_to < next_of_kind && blocked(&steps[start].action, new_from, new_to).is_none() {
            steps[start].at_ms = new_from;
            steps[end].at_ms = new_to;
        } else if narrow(&mut steps[start].action, n, spare) {
            steps[end].action = steps[start].action.undo().expect("a fault's start");
        } else {
            dropped[start] = true;
            dropped[end] = true;
        }
    }
    let mut kept: Vec<Step> = steps
        .into_iter()
        .zip(dropped)
        .filter_map(|(s, d)| (!d).then_some(s))
        .collect();
    kept.sort_by_key(|s| s.at_ms);
    kept
}

/// Narrows a fault to what `spare` nodes can take: the first of its
/// nodes, or that node cut off. False if nothing can be spared or the
/// fault is aimed at the leader.
fn narrow(action: &mut Action, n: usize, spare: usize) -> bool {
    if spare == 0 {
        return false;
    }
    match action {
        Action::Kill { target } | Action::Crash { target, .. } | Action::Pause { target } => {
            // The leader cannot be narrowed to fewer nodes.
            let Target::Nodes(v) = target else {
                return false;
            };
            v.truncate(spare);
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
fn spans(steps: &[Step], of: impl Fn(&Action) -> bool) -> Vec<(usize, usize)> {
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

/// A schedule is sorted by time, every target and link is among `n`
/// nodes, and per kind the faults alternate start and end, so every fault
/// is closed. A recorded schedule (test.json) is checked with this before
/// it is replayed.
pub fn check_schedule(steps: &[Step], n: usize) -> Result<(), String> {
    if let Some(w) = steps.windows(2).find(|w| w[0].at_ms > w[1].at_ms) {
        return Err(format!(
            "not sorted: {} ms comes after {} ms",
            w[1].at_ms, w[0].at_ms
        ));
    }
    let mut open = std::collections::BTreeSet::new();
    for s in steps {
        let (nodes, cut) = s.action.named();
        let bad_link = cut.iter().any(|&(a, b)| a >= n || b >= n || a == b);
        if nodes.iter().any(|&i| i >= n) || bad_link {
            return Err(format!(
                "{} at {} ms names a node beyond the {n} nodes",
                s.action.name(),
                s.at_ms
            ));
        }
        let fresh = match s.action.phase() {
            Phase::Start => open.insert(s.action.kind()),
            Phase::End => open.remove(&s.action.kind()),
        };
        if !fresh {
            return Err(format!(
                "{} at {} ms does not alternate start and end",
                s.action.name(),
                s.at_ms
            ));
        }
    }
    match open.first() {
        Some(k) => Err(format!("a {k} fault is never ended")),
        None => Ok(()),
    }
}

/// `check_schedule`, for schedules this crate drew itself.
pub fn assert_well_formed(steps: &[Step], n: usize) {
    if let Err(e) = check_schedule(steps, n) {
        panic!("drew a malformed schedule: {e}");
    }
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
        for &kind in Kind::IN_ALL {
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

    #[test]
    fn disk_faults_damage_one_minority_over_a_whole_run() {
        let specs = parse_specs("disk").unwrap();
        let mut seen_one = false;
        for (n, seed) in (0..40).map(|s| (3 + 2 * (s % 3) as usize, s)) {
            let steps = schedule(&specs, n, seed, 300, 30_000);
            let mut damaged = std::collections::BTreeSet::new();
            for s in &steps {
                if let Action::DamageDisk { nodes, .. } = &s.action {
                    damaged.extend(nodes.iter().copied());
                    seen_one |= nodes.len() == 1;
                }
            }
            assert!(!damaged.is_empty(), "seed {seed}: no disk fault");
            assert!(
                damaged.len() <= (n - 1) / 2,
                "seed {seed}: {damaged:?} of {n} nodes damaged"
            );
        }
        assert!(seen_one);
    }

    fn kind_of(a: &Action) -> Kind {
        a.kind()
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
        assert_eq!(kinds("all"), Kind::IN_ALL.to_vec());
        assert_eq!(kinds("all,crash").len(), 8);
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
        assert_eq!(s.len(), 8);
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
                Action::Kill { target } => assert_eq!(target, Target::Nodes(vec![0, 1, 2, 3, 4])),
                a => panic!("{a:?}"),
            }
            match draw(&spec("messages:corrupt"), 5, &mut rng) {
                Action::StartMessages { rates } => {
                    assert!(rates.corrupt_probability >= 0.1);
                    let others = (
                        rates.drop_probability,
                        rates.duplicate_probability,
                        rates.delay_ms,
                    );
                    assert_eq!(others, (0.0, 0.0, 0.0));
                }
                a => panic!("{a:?}"),
            }
            // Two dimensions: the type and the targets, each narrowed.
            match draw(&spec("clock:strobe+leader"), 5, &mut rng) {
                Action::ClockStrobe { target, .. } => assert_eq!(target, Target::Leader),
                a => panic!("{a:?}"),
            }
            // Narrowing one dimension leaves the other whole.
            match draw(&spec("clock:minority"), 5, &mut rng) {
                Action::ClockBump { target, .. }
                | Action::ClockStrobe { target, .. }
                | Action::ClockDrift { target, .. } => {
                    assert!(matches!(target, Target::Nodes(v) if v.len() == 2))
                }
                a => panic!("{a:?}"),
            }
        }
        // Unnarrowed kills reach every target, the whole cluster included.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            if let Action::Kill { target } = draw(&Spec::all_of(Kind::Kill), 5, &mut rng) {
                seen.insert(match target {
                    Target::Leader | Target::Moment => 0,
                    Target::Nodes(v) => v.len(),
                });
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn faults_aim_at_the_moments_they_are_narrowed_to() {
        let specs = parse_specs("kill:one+on-vote,partition:on-elect+on-commit").unwrap();
        let steps = schedule(&specs, 5, 3, 1000, 30_000);
        let mut seen = std::collections::BTreeSet::new();
        for s in steps.iter().filter(|s| s.action.phase() == Phase::Start) {
            let on = s.on.expect("every fault is aimed");
            assert!(on.within_ms > 0 && on.within_ms <= 1000, "{s:?}");
            match &s.action {
                Action::Kill { target } => {
                    assert_eq!(on.moment, Moment::Vote);
                    // The node that voted is the one killed.
                    assert_eq!(*target, Target::Moment);
                }
                Action::StartPartition { .. } => {
                    assert!(matches!(on.moment, Moment::Elect | Moment::Commit))
                }
                a => panic!("{a:?}"),
            }
            seen.insert(on.moment.name());
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        // The undo of a fault aimed at a moment lasts a whole interval
        // after the latest it can fire.
        for pair in steps.windows(2) {
            if let (Some(on), Phase::End) = (pair[0].on, pair[1].action.phase()) {
                if pair[0].action.kind() == pair[1].action.kind() && pair[1].at_ms < 30_000 {
                    assert!(pair[1].at_ms >= pair[0].at_ms + on.within_ms, "{pair:?}");
                }
            }
        }
        // Unnarrowed, some faults wait for a moment and some keep time.
        let all = schedule(&parse_specs("all").unwrap(), 5, 3, 1000, 60_000);
        let aimed = all.iter().filter(|s| s.on.is_some()).count();
        let starts = all
            .iter()
            .filter(|s| s.action.phase() == Phase::Start)
            .count();
        assert!(
            aimed > starts / 5 && aimed < starts * 4 / 5,
            "{aimed} of {starts}"
        );
        // Moments a kind cannot meet are refused by name.
        let e = parse_specs("disk:on-vote").unwrap_err();
        assert!(e.contains("unknown disk variant"), "{e}");
        assert!(parse_specs("messages:drop+on-vote").is_ok());
    }

    #[test]
    fn malformed_schedules_are_refused_with_a_reason() {
        let kill = |at_ms, v: Vec<usize>| {
            Step::at(
                at_ms,
                Action::Kill {
                    target: Target::Nodes(v),
                },
            )
        };
        let restart = |at_ms| {
            Step::at(
                at_ms,
                Action::Restart {
                    nodes: Scope::Affected,
                },
            )
        };
        assert_eq!(check_schedule(&[kill(1, vec![0]), restart(2)], 3), Ok(()));
        let e = check_schedule(&[restart(2), kill(1, vec![0])], 3).unwrap_err();
        assert!(e.contains("not sorted"), "{e}");
        let e = check_schedule(&[kill(1, vec![0])], 3).unwrap_err();
        assert!(e.contains("never ended"), "{e}");
        let e = check_schedule(&[kill(1, vec![3]), restart(2)], 3).unwrap_err();
        assert!(e.contains("beyond the 3 nodes"), "{e}");
        let e = check_schedule(&[kill(1, vec![0]), kill(2, vec![1])], 3).unwrap_err();
        assert!(e.contains("alternate"), "{e}");
        let cut = Step::at(
            1,
            Action::StartPartition {
                shape: Shape::Halves,
                cut: vec![(1, 1)],
            },
        );
        assert!(check_schedule(&[cut, Step::at(2, Action::StopPartition)], 3).is_err());
    }

    #[test]
    fn a_stranding_waits_for_a_settled_leader_and_lasts_two_intervals() {
        let specs = parse_specs("strand").unwrap();
        for seed in 0..20 {
            let steps = schedule(&specs, 5, seed, 1000, 30_000);
            assert!(steps.len() >= 10, "seed {seed}: {} steps", steps.len());
            for pair in steps.chunks(2) {
                let Action::Strand { delta_ms } = pair[0].action else {
                    panic!("seed {seed}: {:?} is not a stranding", pair[0].action);
                };
                assert!(delta_ms < 0, "clocks step back, not {delta_ms}");
                let on = pair[0].on.expect("aimed");
                assert_eq!(on.moment, Moment::Lease);
                assert_eq!(pair[1].action, Action::Unstrand);
                let lasts = pair[1].at_ms - pair[0].latest_ms();
                assert!(lasts == 2000 || pair[1].at_ms == 30_000, "lasts {lasts} ms");
            }
        }
    }

    /// Over 30 seeds of `all`: how many `why` windows there were, and each
    /// fault of another kind overlapping one, with its seed.
    fn beside_stale(why: Stale) -> (usize, Vec<(u64, Action)>) {
        let all = parse_specs("all").unwrap();
        let (mut windows_seen, mut beside) = (0, Vec::new());
        for seed in 0..30 {
            let steps = schedule(&all, 5, seed, 1000, 60_000);
            let windows: Vec<(u64, u64)> = stale_windows(&steps)
                .into_iter()
                .filter(|w| w.2 == why)
                .map(|(s, e, _)| (s, e))
                .collect();
            windows_seen += windows.len();
            for (start, end) in spans(&steps, |a| a.kind() != Kind::Strand) {
                let (from, to) = (steps[start].at_ms, steps[end].at_ms);
                if windows.iter().any(|&(ws, we)| from < we && to > ws) {
                    beside.push((seed, steps[start].action.clone()));
                }
            }
        }
        assert!(beside.len() >= windows_seen, "{beside:?} beside {why:?}");
        (windows_seen, beside)
    }

    fn keeps_the_rest_connected(seed: u64, a: &Action) {
        if let Action::StartPartition { shape, .. } = a {
            assert!(
                matches!(shape, Shape::IsolateOne | Shape::IsolateLeader),
                "seed {seed}: {shape:?} beside a stale leader"
            );
        }
    }

    #[test]
    fn while_a_leader_is_stranded_the_rest_keep_a_majority() {
        let (strandings, beside) = beside_stale(Stale::Stranded);
        assert!(strandings >= 30 * 8, "{strandings} strandings");
        for (seed, a) in &beside {
            if let Action::Kill { target }
            | Action::Crash { target, .. }
            | Action::Pause { target } = a
            {
                assert!(
                    !matches!(target, Target::Nodes(v) if v.len() > 1 && v.len() < 5),
                    "seed {seed}: {a:?} during a stranding"
                );
            }
            keeps_the_rest_connected(*seed, a);
        }
    }

    #[test]
    fn a_paused_leader_is_not_killed_and_the_rest_keep_a_majority() {
        let (pauses, beside) = beside_stale(Stale::Paused);
        assert!(pauses >= 30 * 3, "{pauses} leader pauses");
        for (seed, a) in &beside {
            if let Action::Kill { target } | Action::Crash { target, .. } = a {
                assert!(
                    matches!(target, Target::Moment)
                        || matches!(target, Target::Nodes(v) if v.len() == 1),
                    "seed {seed}: {a:?} while the leader is paused"
                );
            }
            keeps_the_rest_connected(*seed, a);
        }
    }

    /// The mean number of faults active at once over a schedule.
    fn mean_active(steps: &[Step], duration_ms: u64) -> f64 {
        let mut active_ms = 0;
        let mut open: Vec<(Kind, u64)> = Vec::new();
        for s in steps {
            match s.action.phase() {
                Phase::Start => open.push((s.action.kind(), s.at_ms)),
                Phase::End => {
                    let i = open.iter().position(|(k, _)| *k == s.action.kind());
                    let (_, from) = open.remove(i.expect("a fault ends after it starts"));
                    active_ms += s.at_ms - from;
                }
            }
        }
        active_ms as f64 / duration_ms as f64
    }

    #[test]
    fn many_kinds_keep_about_four_active_at_a_time() {
        let all = parse_specs("all").unwrap();
        let few = parse_specs("kill,partition").unwrap();
        for seed in 0..20 {
            let busy = mean_active(&schedule(&all, 5, seed, 1000, 60_000), 60_000);
            assert!(
                (2.5..=4.5).contains(&busy),
                "seed {seed}: all keeps {busy:.1} active"
            );
            let calm = mean_active(&schedule(&few, 5, seed, 1000, 60_000), 60_000);
            assert!(
                (0.7..=1.3).contains(&calm),
                "seed {seed}: two kinds keep {calm:.1}"
            );
        }
    }
}
