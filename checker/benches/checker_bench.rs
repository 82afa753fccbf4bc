//! `cargo bench -p faultline-checker`: checks every history of
//! ../shared/bench/porcupine and a generated 1M-op, 1000-key history,
//! printing per-file and total times and peak heap memory.
//!
//! Peak memory is measured by a counting global allocator, so the figure is
//! the checker's own heap, not the process RSS.

use faultline_checker::{linearizability, load_history, Event, EventType, Process};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

#[path = "common/alloc.rs"]
mod alloc;
use alloc::{reset_peak, PEAK};

const REPS: usize = 5;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/porcupine");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .expect("../shared/bench/porcupine/MANIFEST.tsv must sit beside the repo");
    // (sum of medians, files, sum of medians without the fast path)
    let mut totals = [(0.0f64, 0usize, 0.0f64); 2];
    println!(
        "{:<34} {:>6} {:>9} {:>10} {:>10} {:>12}",
        "file", "ops", "verdict", "check_ms", "peak_MB", "no_fast_ms"
    );
    for row in manifest.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let path = dir.join(cols[0]);
        let (format, ops) = load_history(path.to_str().unwrap(), None).unwrap();
        let opts = linearizability::Options {
            model: format.default_model(),
            ..Default::default()
        };
        // Median of REPS runs: the machine is shared and noisy.
        let mut times = Vec::new();
        let mut verdict = None;
        let base = reset_peak();
        for _ in 0..REPS {
            let t = Instant::now();
            let r = linearizability::check(&ops, &opts).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            verdict = Some(r.verdict);
        }
        let peak_mb = (PEAK.load(Relaxed) - base) as f64 / 1e6;
        times.sort_by(f64::total_cmp);
        let med = times[REPS / 2];
        // The same file with the exact search alone, as before the fast path.
        let exact = linearizability::Options {
            fast_path: false,
            ..opts.clone()
        };
        let mut slow = Vec::new();
        for _ in 0..REPS {
            let t = Instant::now();
            linearizability::check(&ops, &exact).unwrap();
            slow.push(t.elapsed().as_secs_f64() * 1e3);
        }
        slow.sort_by(f64::total_cmp);
        let slot = usize::from(cols[1] == "kv");
        totals[slot].0 += med;
        totals[slot].1 += 1;
        totals[slot].2 += slow[REPS / 2];
        println!(
            "{:<34} {:>6} {:>9} {:>10.3} {:>10.2} {:>12.3}",
            cols[0],
            cols[2],
            verdict.unwrap().as_str(),
            med,
            peak_mb,
            slow[REPS / 2]
        );
    }
    println!();
    println!(
        "etcd: {} files, total {:.1} ms (sum of per-file medians; {:.1} without the fast path)",
        totals[0].1, totals[0].0, totals[0].2
    );
    println!(
        "kv:   {} files, total {:.1} ms (sum of per-file medians; {:.1} without the fast path)",
        totals[1].1, totals[1].0, totals[1].2
    );

    for (name, stale) in [
        ("500 ops, 400 info writes, valid", false),
        ("500 ops, 400 info writes, one stale read", true),
    ] {
        let h = info_heavy(stale);
        let paired = faultline_checker::history::pair("info-heavy", &h).unwrap();
        let t = Instant::now();
        let r = linearizability::check(&paired, &linearizability::Options::default()).unwrap();
        println!(
            "{name}: {} in {:.3} ms",
            r.verdict.as_str(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }

    let ops = generated(1_000_000, 1000, 10);
    let base = reset_peak();
    let t = Instant::now();
    let paired = faultline_checker::history::pair("generated", &ops).unwrap();
    let r = linearizability::check(&paired, &linearizability::Options::default()).unwrap();
    println!(
        "generated 1M ops / 1000 keys: {} in {:.2} s (pair + check), peak {:.0} MB",
        r.verdict.as_str(),
        t.elapsed().as_secs_f64(),
        (PEAK.load(Relaxed) - base) as f64 / 1e6
    );
}

/// A valid history from a simulated register per key: `procs` concurrent
/// processes, each op taking effect at a random point of its interval.
fn generated(n_ops: usize, keys: u64, procs: u64) -> Vec<(usize, Event)> {
    let mut rng: u64 = 42;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut state = vec![serde_json::Value::Null; keys as usize];
    let mut counter = vec![0u64; keys as usize];
    let mut out = Vec::with_capacity(n_ops * 2);
    let mut t = 0u64;
    let ev = |i: usize, t: u64, p: u64, kind, f: &str, k: u64, v: serde_json::Value| {
        (
            i + 1,
            Event {
                index: i as u64,
                time: t,
                process: Process::Client(p),
                kind,
                f: f.into(),
                key: Some(serde_json::json!(k)),
                value: v,
                extra: Default::default(),
            },
        )
    };
    // Ops are executed atomically in sequence but their intervals overlap
    // with neighbours: invoke all procs, apply in order, complete all.
    while out.len() < n_ops * 2 {
        let batch: Vec<(u64, u64, u64)> =
            (0..procs).map(|p| (p, next() % keys, next() % 3)).collect();
        for &(p, k, f) in &batch {
            t += 1;
            let (name, v) = match f {
                0 => ("read", serde_json::Value::Null),
                1 => {
                    counter[k as usize] += 1;
                    ("write", serde_json::json!(counter[k as usize]))
                }
                _ => ("read", serde_json::Value::Null),
            };
            out.push(ev(out.len(), t, p, EventType::Invoke, name, k, v));
        }
        for &(p, k, f) in &batch {
            t += 1;
            let i = out
                .iter()
                .rposition(|(_, e)| e.process == Process::Client(p))
                .unwrap();
            let inv = out[i].1.clone();
            let value = if f == 1 {
                state[k as usize] = inv.value.clone();
                inv.value.clone()
            } else {
                state[k as usize].clone()
            };
            out.push(ev(out.len(), t, p, EventType::Ok, &inv.f, k, value));
        }
    }
    out
}

/// The history shape that makes exhaustive search collapse: hundreds of
/// concurrent writes with unknown outcome, reads that observe some of
/// them, and (optionally) one stale read hidden among them.
fn info_heavy(stale: bool) -> Vec<(usize, Event)> {
    let mut spans: Vec<(
        u64,
        u64,
        u64,
        &str,
        serde_json::Value,
        serde_json::Value,
        EventType,
    )> = Vec::new();
    for i in 0..400u64 {
        spans.push((
            10 + i,
            1_000_000,
            i,
            "write",
            serde_json::json!(i),
            serde_json::Value::Null,
            EventType::Info,
        ));
    }
    for i in 0..97u64 {
        spans.push((
            1000 + 10 * i,
            1005 + 10 * i,
            1000 + i,
            "read",
            serde_json::Value::Null,
            serde_json::json!(i),
            EventType::Ok,
        ));
    }
    spans.push((
        500,
        501,
        2000,
        "write",
        serde_json::json!(-1),
        serde_json::json!(-1),
        EventType::Ok,
    ));
    spans.push((
        502,
        503,
        2001,
        "write",
        serde_json::json!(-2),
        serde_json::json!(-2),
        EventType::Ok,
    ));
    let seen = if stale {
        serde_json::json!(-1)
    } else {
        serde_json::json!(-2)
    };
    spans.push((
        504,
        505,
        2002,
        "read",
        serde_json::Value::Null,
        seen,
        EventType::Ok,
    ));
    let mut evs: Vec<(u64, bool, usize)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        evs.push((s.0, false, i));
        evs.push((s.1, true, i));
    }
    evs.sort();
    evs.iter()
        .enumerate()
        .map(|(idx, &(t, done, i))| {
            let s = &spans[i];
            let (kind, value) = if done {
                (s.6, s.5.clone())
            } else {
                (EventType::Invoke, s.4.clone())
            };
            (
                idx + 1,
                Event {
                    index: idx as u64,
                    time: t,
                    process: Process::Client(s.2),
                    kind,
                    f: s.3.into(),
                    key: Some(serde_json::json!("k")),
                    value,
                    extra: Default::default(),
                },
            )
        })
        .collect()
}
