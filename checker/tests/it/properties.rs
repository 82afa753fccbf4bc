//! Property tests: histories from a simulated concurrent register are
//! valid; a planted stale read makes them invalid; and on small histories
//! the checker agrees with a brute-force oracle that tries every order.

use crate::sim::{to_events, SimOp};
use faultline_checker::history::pair;
use faultline_checker::linearizability::{check, Options};
use faultline_checker::{EventType, ModelKind, Verdict};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Simulates `procs` clients on `keys` registers. Each op takes effect (or
/// not) at a random point inside its interval; ops are applied in the order
/// of those points, so the history is linearizable by construction.
fn simulate(seed: u64, procs: u64, n_ops: usize, keys: u64) -> Vec<SimOp> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut free_at = vec![0u64; procs as usize];
    let mut next_process: Vec<u64> = (0..procs).collect();
    let mut planned: Vec<(u64, usize)> = Vec::new(); // (effect point, op)
    let mut ops = Vec::new();
    let mut fresh = 0u64;
    for _ in 0..n_ops {
        let slot = rng.gen_range(0..procs as usize);
        let call = free_at[slot] + rng.gen_range(0..20) * 10;
        let ret = call + 10 + rng.gen_range(0..50) * 10;
        let point = rng.gen_range(call + 1..ret);
        free_at[slot] = ret + 10;
        let key = rng.gen_range(0..keys);
        let (f, input) = match rng.gen_range(0..3) {
            0 => ("read", Value::Null),
            1 => {
                fresh += 1;
                ("write", json!(fresh))
            }
            _ => {
                fresh += 1;
                ("cas", json!([rng.gen_range(0..fresh), fresh]))
            }
        };
        ops.push(SimOp {
            process: next_process[slot],
            f,
            key,
            input,
            output: Value::Null,
            kind: EventType::Ok,
            call: call + 1 + (slot as u64),
            ret: ret + 1 + (slot as u64),
        });
        // The effect point moves with the op's offset (which keeps
        // processes' times distinct), so it stays inside the interval.
        planned.push(((point + 1 + slot as u64) * 100 + slot as u64, ops.len() - 1));
        // Decide now whether the op ends info, so the process number moves on.
        if rng.gen_bool(0.15) {
            ops.last_mut().unwrap().kind = EventType::Info;
            next_process[slot] += procs;
        }
    }
    planned.sort();
    let mut state = vec![Value::Null; keys as usize];
    for (_, i) in planned {
        let o = &mut ops[i];
        let s = &mut state[o.key as usize];
        let info = o.kind == EventType::Info;
        // An info op takes effect with probability 1/2.
        let takes_effect = !info || (o.call ^ o.ret) % 2 == 0;
        match o.f {
            "read" => {
                if info {
                    continue;
                }
                o.output = s.clone();
            }
            "write" => {
                if takes_effect {
                    *s = o.input.clone();
                }
                o.output = o.input.clone();
            }
            _ => {
                let (from, to) = (o.input[0].clone(), o.input[1].clone());
                o.output = o.input.clone();
                if *s == from {
                    if takes_effect {
                        *s = to;
                    }
                } else if !info {
                    o.kind = EventType::Fail;
                }
            }
        }
    }
    ops
}

fn verdict(ops: &[SimOp]) -> Verdict {
    let paired = pair("sim", &to_events(ops)).unwrap();
    check(&paired, &Options::default()).unwrap().verdict
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn simulated_histories_are_valid(seed in any::<u64>(), procs in 1u64..8, n in 1usize..120, keys in 1u64..4) {
        let ops = simulate(seed, procs, n, keys);
        prop_assert_eq!(verdict(&ops), Verdict::Valid);
    }

    #[test]
    fn a_planted_stale_read_is_caught(seed in any::<u64>(), procs in 1u64..8, n in 1usize..120, at in 0u64..2000) {
        let mut ops = simulate(seed, procs, n, 2);
        // Hidden in time among the others (on a key of its own, so the
        // planted writes cannot invalidate simulated reads): write A, then
        // write B after A completed, then a read of A after B completed.
        let p = 10_000;
        let t = at * 10 + 3;
        ops.push(SimOp { process: p, f: "write", key: 7, input: json!(-1), output: json!(-1), kind: EventType::Ok, call: t, ret: t + 2 });
        ops.push(SimOp { process: p + 1, f: "write", key: 7, input: json!(-2), output: json!(-2), kind: EventType::Ok, call: t + 4, ret: t + 6 });
        ops.push(SimOp { process: p + 2, f: "read", key: 7, input: Value::Null, output: json!(-1), kind: EventType::Ok, call: t + 8, ret: t + 9 });
        let paired = pair("sim", &to_events(&ops)).unwrap();
        let report = check(&paired, &Options::default()).unwrap();
        prop_assert_eq!(report.verdict, Verdict::Invalid);
        let a = report.anomaly.unwrap();
        prop_assert_eq!(a.key.as_deref(), Some("k7"));
        prop_assert!(a.ops.iter().any(|o| o.f == "read" && o.output == json!(-1)));
    }

    /// Small histories over a tiny value domain (values repeat, so the
    /// prepass's uniqueness shortcuts rarely apply): the checker must agree
    /// with an oracle that enumerates every subset of info ops and every
    /// real-time-respecting order.
    #[test]
    fn agrees_with_brute_force(seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = rng.gen_range(1..7);
        let mut ops = Vec::new();
        let mut free_at = [0u64; 3];
        let mut proc_no = [0u64, 1, 2];
        for _ in 0..n {
            let s = rng.gen_range(0..3);
            let call = free_at[s] + rng.gen_range(0..4);
            let ret = call + 1 + rng.gen_range(0..6);
            free_at[s] = ret + 1;
            let (f, input, output) = match rng.gen_range(0..3) {
                0 => ("read", Value::Null, if rng.gen_bool(0.2) { Value::Null } else { json!(rng.gen_range(1..3)) }),
                1 => { let v = json!(rng.gen_range(1..3)); ("write", v.clone(), v) }
                _ => { let v = json!([rng.gen_range(1..3), rng.gen_range(1..3)]); ("cas", v.clone(), v) }
            };
            let kind = match rng.gen_range(0..10) { 0..=5 => EventType::Ok, 6 | 7 => EventType::Info, _ => EventType::Fail };
            ops.push(SimOp { process: proc_no[s], f, key: 0, input, output, kind, call: call * 3 + s as u64, ret: ret * 3 + s as u64 });
            if kind == EventType::Info { proc_no[s] += 3; }
        }
        let expected = if oracle(&ops) { Verdict::Valid } else { Verdict::Invalid };
        prop_assert_eq!(verdict(&ops), expected, "ops: {:?}", ops);
    }
}

/// Exhaustive: is there a subset of info ops and an order of the chosen ops
/// that respects real time and the register's rules?
fn oracle(ops: &[SimOp]) -> bool {
    let live: Vec<&SimOp> = ops
        .iter()
        .filter(|o| o.kind != EventType::Fail && !(o.f == "read" && o.kind != EventType::Ok))
        .collect();
    let infos: Vec<usize> = (0..live.len())
        .filter(|&i| live[i].kind == EventType::Info)
        .collect();
    for mask in 0..(1u32 << infos.len()) {
        let chosen: Vec<usize> = (0..live.len())
            .filter(|i| match infos.iter().position(|x| x == i) {
                Some(k) => mask & (1 << k) != 0,
                None => true,
            })
            .collect();
        if permute(
            &live,
            &chosen,
            &mut Vec::new(),
            &mut vec![false; chosen.len()],
        ) {
            return true;
        }
    }
    false
}

fn permute(ops: &[&SimOp], chosen: &[usize], order: &mut Vec<usize>, used: &mut Vec<bool>) -> bool {
    if order.len() == chosen.len() {
        let mut s = Value::Null;
        return order.iter().all(|&i| {
            let o = ops[i];
            let definite = o.kind == EventType::Ok;
            match o.f {
                "read" => o.output == s,
                "write" => {
                    s = o.input.clone();
                    true
                }
                _ => {
                    if s == o.input[0] {
                        s = o.input[1].clone();
                        true
                    } else {
                        !definite
                    }
                }
            }
        });
    }
    for k in 0..chosen.len() {
        if used[k] {
            continue;
        }
        let i = chosen[k];
        // Every unplaced chosen op that finished before i began must come first.
        let blocked = (0..chosen.len()).any(|m| {
            !used[m]
                && m != k
                && ops[chosen[m]].kind == EventType::Ok
                && ops[chosen[m]].ret < ops[i].call
        });
        if blocked {
            continue;
        }
        used[k] = true;
        order.push(i);
        if permute(ops, chosen, order, used) {
            return true;
        }
        order.pop();
        used[k] = false;
    }
    false
}

#[test]
fn a_stale_read_among_hundreds_of_info_writes_is_found() {
    // 500 ops: 400 concurrent info writes with unique values, reads that see
    // them, and one read of a value certainly overwritten.
    let mut ops = Vec::new();
    for i in 0..400u64 {
        ops.push(SimOp {
            process: i,
            f: "write",
            key: 0,
            input: json!(i),
            output: Value::Null,
            kind: EventType::Info,
            call: 10 + i,
            ret: 100_000,
        });
    }
    for i in 0..99u64 {
        ops.push(SimOp {
            process: 1000 + i,
            f: "read",
            key: 0,
            input: Value::Null,
            output: json!(i),
            kind: EventType::Ok,
            call: 1000 + 10 * i,
            ret: 1005 + 10 * i,
        });
    }
    let valid = pair("sim", &to_events(&ops)).unwrap();
    let r = check(&valid, &Options::default()).unwrap();
    assert_eq!(r.verdict, Verdict::Valid);
    assert!(
        r.info_removed >= 300,
        "unobserved info writes are removed: {}",
        r.info_removed
    );
    ops.push(SimOp {
        process: 5000,
        f: "write",
        key: 0,
        input: json!(-7),
        output: json!(-7),
        kind: EventType::Ok,
        call: 5000,
        ret: 5001,
    });
    ops.push(SimOp {
        process: 5001,
        f: "write",
        key: 0,
        input: json!(-8),
        output: json!(-8),
        kind: EventType::Ok,
        call: 5002,
        ret: 5003,
    });
    ops.push(SimOp {
        process: 5002,
        f: "read",
        key: 0,
        input: Value::Null,
        output: json!(-7),
        kind: EventType::Ok,
        call: 5004,
        ret: 5005,
    });
    let invalid = pair("sim", &to_events(&ops)).unwrap();
    let r = check(&invalid, &Options::default()).unwrap();
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.anomaly.unwrap().kind, "stale-read");
}

#[test]
fn search_finds_violations_the_prepass_cannot_prove() {
    // Values repeat, so no prepass rule applies: w1, w2, then r->1 twice
    // around a write of 2 that completed between them.
    let mk = |p, f, input: Value, output: Value, call, ret| SimOp {
        process: p,
        f,
        key: 0,
        input,
        output,
        kind: EventType::Ok,
        call,
        ret,
    };
    let ops = vec![
        mk(0, "write", json!(1), json!(1), 0, 10),
        mk(1, "write", json!(1), json!(1), 0, 10),
        mk(0, "write", json!(2), json!(2), 20, 30),
        mk(1, "read", Value::Null, json!(1), 40, 50),
    ];
    let r = check(
        &pair("sim", &to_events(&ops)).unwrap(),
        &Options {
            model: ModelKind::LinKv,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.verdict, Verdict::Invalid);
    let a = r.anomaly.unwrap();
    assert_eq!(a.kind, "no-linearization");
    assert_eq!(a.state_before, Some(json!(2)));
    assert_eq!(a.blocked.unwrap().output, json!(1));
}

#[test]
fn budgets_end_in_unknown_never_a_wrong_verdict() {
    // Enough ops that the search takes more steps than one budget check
    // interval, so the zero budgets must bite.
    let ops = simulate(7, 8, 20_000, 1);
    let paired = pair("sim", &to_events(&ops)).unwrap();
    let opts = Options {
        time_limit: Some(std::time::Duration::ZERO),
        max_memo_entries: Some(1),
        // The exact search is what the budgets bound.
        fast_path: false,
        ..Default::default()
    };
    let r = check(&paired, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(!r.unknown.is_empty() && r.anomaly.is_none());
}

/// The checker's report with the fast path on or off.
fn report_with(ops: &[SimOp], fast_path: bool) -> faultline_checker::linearizability::Report {
    let paired = pair("sim", &to_events(ops)).unwrap();
    let opts = Options {
        fast_path,
        ..Default::default()
    };
    check(&paired, &opts).unwrap()
}

/// A small history over unique values with arbitrary times and outcomes:
/// often not linearizable, so both answers are exercised.
fn unique_small(seed: u64) -> Vec<SimOp> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.gen_range(1..7);
    let mut ops = Vec::new();
    let mut free_at = [0u64; 3];
    let mut proc_no = [0u64, 1, 2];
    let mut fresh = 0;
    for _ in 0..n {
        let s = rng.gen_range(0..3);
        let call = free_at[s] + rng.gen_range(0..4);
        let ret = call + 1 + rng.gen_range(0..6);
        free_at[s] = ret + 1;
        let read_value = |rng: &mut ChaCha8Rng, fresh: u64| {
            if fresh == 0 || rng.gen_bool(0.2) {
                Value::Null
            } else {
                json!(rng.gen_range(1..=fresh))
            }
        };
        let (f, input, output) = match rng.gen_range(0..3) {
            0 => ("read", Value::Null, read_value(&mut rng, fresh + 1)),
            1 => {
                fresh += 1;
                ("write", json!(fresh), json!(fresh))
            }
            _ => {
                let from = read_value(&mut rng, fresh);
                fresh += 1;
                let v = json!([from, fresh]);
                ("cas", v.clone(), v)
            }
        };
        let kind = match rng.gen_range(0..10) {
            0..=5 => EventType::Ok,
            6 | 7 => EventType::Info,
            _ => EventType::Fail,
        };
        ops.push(SimOp {
            process: proc_no[s],
            f,
            key: 0,
            input,
            output,
            kind,
            call: call * 3 + s as u64,
            ret: ret * 3 + s as u64,
        });
        if kind == EventType::Info {
            proc_no[s] += 3;
        }
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Valid by construction, with unique values: the fast path decides
    /// every partition, and says what the exact search says.
    #[test]
    fn the_fast_path_decides_valid_unique_histories(seed in any::<u64>(), procs in 1u64..30, n in 1usize..400, keys in 1u64..3) {
        let ops = simulate(seed, procs, n, keys);
        let fast = report_with(&ops, true);
        prop_assert_eq!(fast.verdict, Verdict::Valid);
        prop_assert_eq!(fast.fast_path_partitions, fast.partitions);
        prop_assert_eq!(report_with(&ops, false).verdict, Verdict::Valid);
    }

    /// Simulated histories with reads rewired to other values (mostly not
    /// linearizable any more): with and without the fast path, one verdict.
    #[test]
    fn the_fast_path_agrees_with_the_exact_search(seed in any::<u64>(), procs in 1u64..12, n in 1usize..300, rewire in 0usize..4) {
        let mut ops = simulate(seed, procs, n, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let written: Vec<Value> = ops.iter().filter(|o| o.f == "write").map(|o| o.input.clone()).collect();
        for _ in 0..rewire {
            let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].f == "read" && ops[i].kind == EventType::Ok).collect();
            if let (Some(&r), false) = (reads.get(rng.gen_range(0..reads.len().max(1))), written.is_empty()) {
                ops[r].output = written[rng.gen_range(0..written.len())].clone();
            }
        }
        prop_assert_eq!(report_with(&ops, true).verdict, report_with(&ops, false).verdict);
    }

    /// Small unique-value histories of any shape: with the fast path and
    /// without, the checker agrees with the brute-force oracle.
    #[test]
    fn unique_values_agree_with_brute_force(seed in any::<u64>()) {
        let ops = unique_small(seed);
        let expected = if oracle(&ops) { Verdict::Valid } else { Verdict::Invalid };
        prop_assert_eq!(report_with(&ops, true).verdict, expected, "ops: {:?}", ops);
        prop_assert_eq!(report_with(&ops, false).verdict, expected, "ops: {:?}", ops);
    }
}
