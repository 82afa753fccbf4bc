//! The scheduler's properties, over many seeds and sizes.

use super::*;
use crate::windows::*;

#[test]
fn every_partition_at_every_size_cuts_something_or_is_not_drawn() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for n in 1..=9 {
        for &shape in Shape::ALL {
            if shape == Shape::IsolateLeader {
                continue; // its cut is the leader's, made when it applies
            }
            let cut = draw::partition_cut(shape, n, &mut rng, None);
            assert_eq!(!cut.is_empty(), shape.cuts_at(n), "{} on {n}", shape.name());
        }
        let (specs, left_out) = fit_to_size(parse_specs("all").unwrap(), n, |_| false).unwrap();
        assert_eq!(left_out.is_empty(), n >= 2, "{n}: {left_out:?}");
        for seed in 1..=10 {
            for step in schedule(&specs, n, seed, 1000, 30_000) {
                // No fault starts, or waits for its moment, past the
                // load phase.
                if step.action.undo().is_some() {
                    assert!(
                        step.latest_ms() < 30_000,
                        "{n} nodes, seed {seed}: {step:?}"
                    );
                }
                if let Action::StartPartition { shape, cut } = &step.action {
                    let cuts = !cut.is_empty() || *shape == Shape::IsolateLeader;
                    assert!(
                        cuts,
                        "{} on {n} nodes at seed {seed} cuts nothing",
                        shape.name()
                    );
                }
            }
        }
    }
    // Narrowed to a shape that cannot act at this size: refused, why said.
    let ring = parse_specs("partition:majorities-ring").unwrap();
    let e = fit_to_size(ring, 3, |_| true).unwrap_err();
    assert!(e.contains("cuts nothing") && e.contains("4 or more"), "{e}");
    let e = fit_to_size(parse_specs("partition").unwrap(), 1, |_| true).unwrap_err();
    assert!(e.contains("one node has no links"), "{e}");
}

/// A cluster that grew or shrank under membership changes: every shape,
/// re-drawn over the members at hand, still cuts something at every size
/// it passes through, and a ring is still a ring of majorities.
#[test]
fn partitions_refit_to_a_moved_cluster_cut_something_at_every_size() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for m in 2..=9 {
        for &shape in Shape::ALL {
            for seed in 0..5 {
                let leader = (seed % 2 == 0).then_some(seed as usize % m);
                let (fitted, cut) = draw::refit_cut(shape, m, &mut rng, leader);
                assert!(
                    !cut.is_empty(),
                    "{} refit to {m} cuts nothing",
                    shape.name()
                );
                assert!(cut.iter().all(|&(a, b)| a < m && b < m && a != b));
                assert_eq!(fitted == shape, shape.cuts_at(m), "{} on {m}", shape.name());
                if fitted == Shape::MajoritiesRing {
                    // Each member still hears a majority (itself included).
                    for i in 0..m {
                        let heard = (0..m).filter(|&j| j == i || !cut.contains(&(j, i))).count();
                        assert!(heard > m / 2, "ring on {m}: {i} hears {heard}");
                    }
                }
            }
        }
    }
    // Targets keep their meaning: 5 places, 7 members.
    assert_eq!(draw::refit_count(5, 5, 7), 7);
    assert_eq!(draw::refit_count(5, 3, 7), 4);
    assert_eq!(draw::refit_count(5, 2, 7), 3);
    assert_eq!(draw::refit_count(5, 1, 7), 1);
    assert_eq!(draw::refit_count(5, 3, 4), 3);
    assert_eq!(draw::refit_count(5, 2, 4), 1);
}

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
    let kinds = |l: &str| -> Vec<Kind> { parse_specs(l).unwrap().iter().map(|s| s.kind).collect() };
    assert_eq!(kinds("all"), Kind::IN_ALL.to_vec());
    assert_eq!(kinds("all,crash").len(), Kind::IN_ALL.len());
    assert_eq!(
        parse_specs("membership:replace").unwrap()[0].to_string(),
        "membership:replace"
    );
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
    assert_eq!(s.len(), Kind::IN_ALL.len());
    assert_eq!(s[4].to_string(), "clock:strobe+leader");
    // Specs travel in test.json as their text.
    let json = serde_json::to_string(&s[4]).unwrap();
    assert_eq!(json, "\"clock:strobe+leader\"");
    assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), s[4]);
    assert!(serde_json::from_str::<Spec>("\"clock:sideways\"").is_err());
}

#[test]
fn a_pause_or_kill_may_aim_at_one_named_process() {
    let spec: Spec = "kill:minority+process=monitor".parse().unwrap();
    assert_eq!(spec.process.as_deref(), Some("monitor"));
    assert_eq!(spec.to_string(), "kill:minority+process=monitor");
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..20 {
        let Action::Kill { target, process } = draw(&spec, 5, &mut rng) else {
            panic!("a kill spec draws kills");
        };
        assert_eq!(process.as_deref(), Some("monitor"));
        let Target::Nodes(nodes) = target else {
            panic!("minority names nodes");
        };
        assert!((1..=2).contains(&nodes.len()), "{nodes:?}");
    }
    let pause: Spec = "pause:process=server".parse().unwrap();
    let Action::Pause { process, .. } = draw(&pause, 3, &mut rng) else {
        panic!("a pause spec draws pauses");
    };
    assert_eq!(process.as_deref(), Some("server"));
    // Unnamed, a fault hits every process of its nodes, and says nothing.
    let whole = draw(&Spec::all_of(Kind::Kill), 3, &mut rng);
    let json = serde_json::to_value(&whole).unwrap();
    assert!(json.get("process").is_none(), "{json}");
    // A power loss or a damaged disk is the machine's, not one process's.
    for bad in [
        "crash:process=monitor",
        "partition:process=x",
        "kill:process=",
    ] {
        let e = parse_specs(bad).unwrap_err();
        assert!(e.contains("unknown") && e.contains("variant"), "{bad}: {e}");
    }
    let e = parse_specs("kill:process=a+process=b").unwrap_err();
    assert!(e.contains("two processes"), "{e}");
    assert!(Kind::Kill.variant_names().contains(&"process=NAME"));
}

#[test]
fn unnarrowed_crashes_lean_to_a_quorum_and_partitions_to_sides() {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let draws = 4000;
    // Shares of (the leader, a quorum of 3 or 5 of 5) among `draws`.
    let mut shares = |kind: &str| {
        let spec: Spec = kind.parse().unwrap();
        let (mut leader, mut quorum) = (0, 0);
        for _ in 0..draws {
            let (Action::Crash { target, .. }
            | Action::Pause { target, .. }
            | Action::Kill { target, .. }) = draw(&spec, 5, &mut rng)
            else {
                panic!("{kind} draws a {kind}");
            };
            match target {
                Target::Leader => leader += 1,
                Target::Nodes(v) if v.len() >= 3 => quorum += 1,
                _ => {}
            }
        }
        (leader as f64 / draws as f64, quorum as f64 / draws as f64)
    };
    let near = |got: f64, want: f64| (got - want).abs() < 0.03;
    let (leader, quorum) = shares("crash");
    assert!(
        near(quorum, 5.0 / 8.0) && near(leader, 1.0 / 8.0),
        "crash {leader} {quorum}"
    );
    let (leader, quorum) = shares("pause");
    assert!(
        near(leader, 1.0 / 3.0) && quorum == 0.0,
        "pause {leader} {quorum}"
    );
    let (leader, quorum) = shares("kill");
    assert!(
        near(leader, 0.2) && near(quorum, 0.4),
        "kill {leader} {quorum}"
    );
    // Partitions: into sides 8 in 11, each other shape 1 in 11.
    let spec: Spec = "partition".parse().unwrap();
    let mut shapes = std::collections::BTreeMap::new();
    for _ in 0..draws {
        let Action::StartPartition { shape, .. } = draw(&spec, 5, &mut rng) else {
            panic!("partition draws a partition");
        };
        *shapes.entry(shape).or_insert(0) += 1;
    }
    assert_eq!(shapes.len(), Shape::ALL.len(), "every shape drawn");
    for (shape, count) in shapes {
        let want = if shape.splits() || shape.lags() {
            2.0
        } else {
            1.0
        } / 11.0;
        let got = count as f64 / draws as f64;
        assert!(near(got, want), "{shape:?} {got}");
    }
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
            Action::Kill { target, .. } => assert_eq!(target, Target::Nodes(vec![0, 1, 2, 3, 4])),
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
        if let Action::Kill { target, .. } = draw(&Spec::all_of(Kind::Kill), 5, &mut rng) {
            seen.insert(match target {
                Target::Leader | Target::Moment => 0,
                Target::Nodes(v) => v.len(),
            });
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
}

#[test]
fn a_partition_aimed_at_an_election_isolates_the_leader_and_at_a_commit_rings_it() {
    let open: Spec = "partition".parse().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for shape in Shape::ALL.iter().copied() {
        let cut = partition_cut(shape, 5, &mut rng, None);
        let drawn = Action::StartPartition { shape, cut };
        for moment in [Moment::Elect, Moment::Commit, Moment::Vote] {
            let (aimed, on) = aim(&open, drawn.clone(), moment, 1000, 5);
            assert_eq!(on.map(|t| t.moment), Some(moment));
            match (moment, aimed) {
                (Moment::Elect, Action::StartPartition { shape: got, cut }) => {
                    assert_eq!(got, Shape::IsolateLeader, "{shape} at {moment}");
                    assert!(cut.is_empty(), "the leader is cut when it is known");
                }
                (Moment::Commit, Action::StartPartition { shape: got, cut }) => {
                    assert_eq!(got, Shape::MajoritiesRing, "{shape} at {moment}");
                    let ring = partition_cut(Shape::MajoritiesRing, 5, &mut rng, None);
                    assert_eq!(cut, ring, "{shape} at {moment}");
                }
                (_, a) => assert_eq!(a, drawn, "{shape} at {moment}"),
            }
        }
    }
    // Narrowed to shapes, a partition keeps the shape it was drawn with.
    let narrowed: Spec = "partition:halves".parse().unwrap();
    let drawn = Action::StartPartition {
        shape: Shape::Halves,
        cut: partition_cut(Shape::Halves, 5, &mut rng, None),
    };
    for moment in [Moment::Elect, Moment::Commit] {
        assert_eq!(aim(&narrowed, drawn.clone(), moment, 1000, 5).0, drawn);
    }
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
            Action::Kill { target, .. } => {
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
                process: None,
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

/// A fault beside a window: when it runs and what it does.
type Beside = Vec<(u64, u64, Action)>;

/// Over 30 seeds of `all`: every `why` window, with the faults of
/// other kinds overlapping it and its seed.
fn beside(why: Exposes) -> Vec<(u64, Beside)> {
    let all = parse_specs("all").unwrap();
    let mut out = Vec::new();
    for seed in 0..30 {
        let steps = schedule(&all, 5, seed, 1000, 60_000);
        let faults = spans(&steps, |a| a.kind() != Kind::Strand);
        let windows = [stale_windows(&steps), partition_windows(&steps)].concat();
        for (ws, we, _) in windows.into_iter().filter(|w| w.2 == why) {
            let beside: Beside = faults
                .iter()
                .map(|&(s, e)| (steps[s].at_ms, steps[e].at_ms, steps[s].action.clone()))
                .filter(|(from, to, a)| {
                    // A window's own pause or partition is not beside
                    // it (faults of one kind never overlap).
                    let own = match why {
                        Exposes::Paused => a.kind() == Kind::Pause,
                        Exposes::Split | Exposes::Lagging => a.kind() == Kind::Partition,
                        Exposes::Stranded | Exposes::Armed => false,
                    };
                    *from < we && *to > ws && !own
                })
                .collect();
            out.push((seed, beside));
        }
    }
    out
}

/// How many of the stale leader's peers are down at once, at most,
/// by the faults beside its window: named nodes counted once, a fault
/// on the leader or a moment's node or one cut off counting one. A
/// fault on every node is left out: beside a stranding it ends the
/// stranding (beside a pause it is refused on its own).
fn most_down(seed: u64, beside: &[(u64, u64, Action)]) -> usize {
    let takes = |a: &Action| -> (Vec<usize>, usize) {
        match a {
            Action::Kill { target, .. }
            | Action::Crash { target, .. }
            | Action::Pause { target, .. } => match target {
                Target::Nodes(v) if v.len() == 5 => (Vec::new(), 0),
                Target::Nodes(v) => (v.clone(), 0),
                _ => (Vec::new(), 1),
            },
            Action::StartPartition { shape, .. } => {
                assert!(
                    matches!(shape, Shape::IsolateOne | Shape::IsolateLeader),
                    "seed {seed}: {shape:?} beside a stale leader"
                );
                (Vec::new(), 1)
            }
            _ => (Vec::new(), 0),
        }
    };
    let at = |t: u64| {
        let mut named = std::collections::BTreeSet::new();
        let mut unnamed = 0;
        for (_, _, a) in beside.iter().filter(|(f, e, _)| *f <= t && t < *e) {
            let (v, u) = takes(a);
            named.extend(v);
            unnamed += u;
        }
        named.len() + unnamed
    };
    beside.iter().map(|(f, _, _)| at(*f)).max().unwrap_or(0)
}

#[test]
fn while_a_leader_is_stranded_the_rest_keep_a_majority() {
    let windows = beside(Exposes::Stranded);
    assert!(windows.len() >= 30 * 8, "{} strandings", windows.len());
    let crowded = windows.iter().filter(|(_, b)| b.len() >= 2).count();
    assert!(
        crowded >= windows.len() / 2,
        "faults are not moved away wholesale"
    );
    for (seed, beside) in &windows {
        let down = most_down(*seed, beside);
        assert!(
            down <= 1,
            "seed {seed}: {down} peers down beside a stranding: {beside:?}"
        );
    }
}

#[test]
fn while_the_cluster_is_split_every_side_stays_whole() {
    let windows = beside(Exposes::Split);
    assert!(windows.len() >= 30 * 5, "{} splits", windows.len());
    for (seed, beside) in &windows {
        for (_, _, a) in beside {
            assert!(
                !matches!(a.kind(), Kind::Kill | Kind::Crash | Kind::Pause),
                "seed {seed}: {a:?} while the cluster is split"
            );
        }
    }
    // Moved, not dropped wholesale: splits and rings cost at most
    // three tenths of the kills and crashes a schedule of partitions
    // that cut off one node keeps. (A fifth before partitions aimed at
    // a commit became rings: 115 rings over these 30 seeds instead of
    // 50, each keeping every node but the leader up, keep 1452 of 1940
    // where 1568 were kept with every aimed partition isolating.)
    let all = parse_specs("all").unwrap();
    let unsplit: Vec<Spec> = all
        .iter()
        .cloned()
        .map(|mut s| {
            if s.kind == Kind::Partition {
                s.shapes = vec![Shape::IsolateOne];
            }
            s
        })
        .collect();
    let stops = |specs: &[Spec]| {
        (0..30)
            .flat_map(|seed| schedule(specs, 5, seed, 1000, 60_000))
            .filter(|s| matches!(s.action.kind(), Kind::Kill | Kind::Crash))
            .count()
    };
    let (split, not) = (stops(&all), stops(&unsplit));
    assert!(
        split * 10 >= not * 7,
        "{split} kills and crashes, {not} unsplit"
    );
}

#[test]
fn a_fault_moves_after_the_split_it_would_harm_or_else_before_it() {
    // Kills of one node over these spans beside a split over
    // [2000, 3000) ms, settled: where the kills end up.
    let settle = |spans_ms: &[(u64, u64)]| -> Vec<(u64, u64)> {
        let cut = partition_cut(Shape::Halves, 5, &mut ChaCha8Rng::seed_from_u64(0), None);
        let shape = Shape::Halves;
        let mut steps = vec![
            Step::at(2000, Action::StartPartition { shape, cut }),
            Step::at(3000, Action::StopPartition),
        ];
        for &(from, to) in spans_ms {
            let target = Target::Nodes(vec![1]);
            let nodes = Scope::Affected;
            steps.extend([
                Step::at(
                    from,
                    Action::Kill {
                        target,
                        process: None,
                    },
                ),
                Step::at(to, Action::Restart { nodes }),
            ]);
        }
        steps.sort_by_key(|s| s.at_ms);
        let steps = keep_windows_exposed(steps, 5, 500, 60_000);
        spans(&steps, |a| a.kind() == Kind::Kill)
            .into_iter()
            .map(|(s, e)| (steps[s].at_ms, steps[e].at_ms))
            .collect()
    };
    // Room after the split (to the next kill at 4000): moved there.
    let got = settle(&[(2500, 3500), (4000, 5000)]);
    assert_eq!(got, [(3001, 3999), (4000, 5000)]);
    // The next kill at 3200 leaves no room after (less than half the
    // kill's second): moved just before, after the last kill's end.
    let got = settle(&[(100, 1200), (2500, 3500), (3200, 4200)]);
    assert_eq!(got, [(100, 1200), (1201, 1999), (3200, 4200)]);
    // Room neither after nor before: dropped (a split spares none).
    let got = settle(&[(1500, 1900), (2500, 3500), (3200, 4200)]);
    assert_eq!(got, [(1500, 1900), (3200, 4200)]);
}

#[test]
fn a_paused_leader_is_not_killed_and_the_rest_keep_a_majority() {
    let windows = beside(Exposes::Paused);
    assert!(windows.len() >= 30 * 6, "{} leader pauses", windows.len());
    for (seed, beside) in &windows {
        for (_, _, a) in beside {
            // Nothing stops, slows or cuts off the successor.
            assert!(
                !hits_the_leader(a),
                "seed {seed}: {a:?} beside a leader pause"
            );
            if let Action::Kill { target, .. } | Action::Crash { target, .. } = a {
                assert!(
                    !matches!(target, Target::Nodes(v) if v.len() == 5),
                    "seed {seed}: {a:?} while the leader is paused"
                );
            }
        }
        // Each fault alone leaves the rest a majority.
        for one in beside {
            let down = most_down(*seed, std::slice::from_ref(one));
            assert!(down <= 1, "seed {seed}: {one:?} beside a paused leader");
        }
    }
}

#[test]
fn no_stranding_is_armed_while_the_leader_is_paused() {
    let all = parse_specs("all").unwrap();
    let mut near = 0;
    for seed in 0..30 {
        let steps = schedule(&all, 5, seed, 1000, 60_000);
        let pauses = stale_windows(&steps);
        let pauses = pauses.iter().filter(|w| w.2 == Exposes::Paused);
        for (from, to, _) in pauses {
            let strandings = steps
                .iter()
                .filter(|s| matches!(s.action, Action::Strand { .. }));
            for s in strandings {
                let armed = s.at_ms;
                assert!(
                    !(*from <= armed && armed < *to),
                    "seed {seed}: a stranding armed at {armed} ms beside a leader paused over [{from}, {to})"
                );
                near += (armed < *from && *from - armed < 200) as usize;
            }
        }
    }
    // Moved clear of the arming, not dropped: some pauses start just
    // after a stranding was armed (and has fired).
    assert!(near >= 5, "{near} leader pauses just after an arming");
}

#[test]
fn a_ring_of_majorities_loses_its_leader_and_only_its_leader() {
    let windows = beside(Exposes::Lagging);
    assert!(windows.len() >= 30, "{} rings over 30 seeds", windows.len());
    let (mut lost, mut powered_off) = (0, 0);
    for (seed, beside) in &windows {
        let stops = |a: &Action| matches!(a.kind(), Kind::Kill | Kind::Crash | Kind::Pause);
        // A power loss stops the leader with the rest, who come back
        // into the ring.
        let every = |a: &Action| stops_every_node(a, 5);
        for (_, _, a) in beside.iter().filter(|(_, _, a)| stops(a)) {
            let leader = loses_the_leader(a) || pauses_the_leader(a) || every(a);
            assert!(leader, "seed {seed}: {a:?} beside a ring");
        }
        lost += beside.iter().any(|(_, _, a)| loses_the_leader(a)) as usize;
        powered_off += beside.iter().filter(|(_, _, a)| every(a)).count();
    }
    // Power losses are not moved out of rings: a crash of every node
    // shows writes acknowledged before they were durable (`no-fsync`),
    // and rings are many since partitions aimed at a commit make them.
    // (67 over these 30 seeds; none when they were moved out.)
    assert!(powered_off >= 30, "{powered_off} power losses beside rings");
    // Met by chance, 2 of 48 rings did (the pass turned off); moving only
    // losses that fire at once, 72 % of rings over 300 seeds; re-aiming
    // one that waited for an election when none fires at once, 85 %
    // (99 of 115 over these 30).
    assert!(
        lost * 5 >= windows.len() * 4,
        "{lost} of {} rings lose their leader",
        windows.len()
    );
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

/// Under `all`, no membership change overlaps a stale leader's window (a
/// stranding or a leader pause); placed as drawn, 87% of them overlapped
/// some window (a stale leader's, a split or a ring). Splits and rings are not kept clear of them:
/// that halved the changes (to about 5 in 30 s) and a 30 s suite caught
/// `direct-config` at 5 of 8 seeds. They still happen: at least 15 in
/// every 60 s (16 to 21 over these seeds; 18 to 22 placed as drawn).
#[test]
fn membership_changes_wait_out_stale_leader_windows() {
    let all = parse_specs("all").unwrap();
    let mut total = 0;
    for seed in 0..30 {
        let steps = schedule(&all, 5, seed, 1000, 60_000);
        let changes = spans(&steps, |a| a.kind() == Kind::Membership);
        assert!(
            changes.len() >= 15,
            "seed {seed}: {} changes",
            changes.len()
        );
        total += changes.len();
        let windows = stale_windows(&steps);
        for &(s, e) in &changes {
            let (from, to) = (steps[s].at_ms, steps[e].at_ms);
            let hit = windows.iter().find(|w| from < w.1 && to > w.0);
            assert!(
                hit.is_none(),
                "seed {seed}: a change over [{from}, {to}) ms overlaps {hit:?}"
            );
        }
    }
    assert!(total >= 30 * 18, "{total} changes over 30 runs");
}

/// A ring whose only leader loss waits for an election (which a standing
/// ring never holds) gets that loss a quarter of the way in, re-aimed at
/// the leader's next commit, and ended by the ring's heal.
#[test]
fn a_leader_loss_aimed_at_an_election_moves_into_a_ring_at_a_commit() {
    let ring = partition_cut(
        Shape::MajoritiesRing,
        5,
        &mut ChaCha8Rng::seed_from_u64(1),
        None,
    );
    let steps: Vec<Step> = serde_json::from_value(serde_json::json!([
        {"at_ms": 2000, "action": {"f": "start-partition", "shape": "majorities-ring", "cut": ring},
         "on": {"moment": "on-commit", "within_ms": 1000}},
        {"at_ms": 5000, "action": {"f": "stop-partition"}},
        {"at_ms": 12000, "action": {"f": "kill", "nodes": [], "leader": true},
         "on": {"moment": "on-elect", "within_ms": 1000}},
        {"at_ms": 14000, "action": {"f": "restart", "nodes": []}},
    ]))
    .unwrap();
    let out = crate::windows::keep_windows_exposed(steps, 5, 500, 30_000);
    let kill = out
        .iter()
        .find(|s| matches!(s.action, Action::Kill { .. }))
        .unwrap();
    // Surely standing from 3000 ms (its latest start) to 5000 ms.
    assert_eq!(kill.at_ms, 3500, "{out:?}");
    assert_eq!(kill.on.map(|t| t.moment), Some(Moment::Commit), "{out:?}");
    let restart = out
        .iter()
        .find(|s| matches!(s.action, Action::Restart { .. }))
        .unwrap();
    assert_eq!(restart.at_ms, 5000, "{out:?}");
}

/// A ring of majorities exposes a node that votes for a stale log: the
/// leader commits only with nodes it hears; lose it, and no node that
/// heard it (up to date) reaches a majority of the living, while one that
/// did not (lagging) does. Symmetric rings can be bare on 4, 5, 6, 8, 9
/// and 10 nodes (not on 7, where n/2 is odd and no node is across).
#[test]
fn a_bare_ring_lets_only_a_lagging_node_win_once_the_leader_is_lost() {
    for n in [4, 5, 6, 8, 9, 10] {
        let cut = partition_cut(
            Shape::MajoritiesRing,
            n,
            &mut ChaCha8Rng::seed_from_u64(1),
            None,
        );
        let hears =
            |a: usize, b: usize| a == b || (!cut.contains(&(a, b)) && !cut.contains(&(b, a)));
        for leader in 0..n {
            for node in (0..n).filter(|&x| x != leader) {
                let votes = (0..n).filter(|&v| v != leader && hears(node, v)).count();
                let lagging = !hears(leader, node);
                assert_eq!(
                    votes > n / 2,
                    lagging,
                    "ring on {n}, leader {leader} lost: node {node} (lagging: {lagging}) reaches {votes}"
                );
            }
        }
    }
}
