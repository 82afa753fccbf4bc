//! `cargo bench -p faultline-checker --bench txn_bench`: the transaction
//! checker on generated list-append histories of 10k, 100k and 1M
//! transactions (50 concurrent processes, 1-4 micro-ops each, 20 keys in
//! use at a time, each retired after 32 appends, 1% failed and 1% unknown
//! outcomes), valid (a store that applies each transaction when it
//! completes) and with one planted stale read; strict serializable, real
//! time included. Prints time and peak heap.

#[path = "common/alloc.rs"]
mod alloc;
use alloc::{reset_peak, PEAK};

use faultline_checker::txn::{self, ConsistencyModel, Mop, Txn, TxnOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

const PROCESSES: usize = 50;
const ACTIVE_KEYS: u64 = 20;
const APPENDS_PER_KEY: usize = 32;

fn generate(n: usize, seed: u64) -> Vec<Txn> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut state: HashMap<u64, Vec<i64>> = HashMap::new();
    let mut next_key = ACTIVE_KEYS;
    let mut active: Vec<u64> = (0..ACTIVE_KEYS).collect();
    let mut open: Vec<Option<usize>> = vec![None; PROCESSES];
    let mut generation = vec![0usize; PROCESSES];
    let mut out: Vec<Txn> = Vec::with_capacity(n);
    let (mut time, mut value) = (0u64, 0i64);
    while out.len() < n || open.iter().any(Option::is_some) {
        time += 1;
        let p = rng.gen_range(0..PROCESSES);
        match open[p] {
            None if out.len() < n => {
                let mops = (0..rng.gen_range(1..=4))
                    .map(|_| {
                        let key = active[rng.gen_range(0..active.len())].to_string();
                        if rng.gen_bool(0.5) {
                            value += 1;
                            Mop::Append { key, value }
                        } else {
                            Mop::Read { key, value: None }
                        }
                    })
                    .collect();
                out.push(Txn {
                    index: out.len() as u64,
                    process: format!("{}", p + PROCESSES * generation[p]),
                    outcome: TxnOutcome::Info,
                    invoke_time: time,
                    complete_time: None,
                    mops,
                    final_read: false,
                });
                open[p] = Some(out.len() - 1);
            }
            None => {}
            Some(i) => {
                open[p] = None;
                let roll = rng.gen_range(0..100);
                let t = &mut out[i];
                if roll == 0 {
                    t.outcome = TxnOutcome::Fail;
                    t.complete_time = Some(time);
                    continue;
                }
                for m in t.mops.iter_mut() {
                    match m {
                        Mop::Append { key, value } => {
                            let k: u64 = key.parse().unwrap();
                            let list = state.entry(k).or_default();
                            list.push(*value);
                            if list.len() >= APPENDS_PER_KEY {
                                // Retire it: later transactions use a new key.
                                if let Some(slot) = active.iter_mut().find(|a| **a == k) {
                                    *slot = next_key;
                                    next_key += 1;
                                }
                            }
                        }
                        Mop::Read { key, value } => {
                            *value = Some(
                                state
                                    .get(&key.parse().unwrap())
                                    .cloned()
                                    .unwrap_or_default(),
                            );
                        }
                        // The generator makes list-append transactions only.
                        Mop::Write { .. } | Mop::ReadRegister { .. } => {}
                    }
                }
                if roll == 1 {
                    for m in t.mops.iter_mut() {
                        if let Mop::Read { value, .. } = m {
                            *value = None;
                        }
                    }
                    generation[p] += 1;
                } else {
                    t.outcome = TxnOutcome::Ok;
                    t.complete_time = Some(time);
                }
            }
        }
    }
    out
}

/// Drops the last element of a late read whose writer completed before
/// the reader began.
fn plant_stale_read(h: &mut [Txn]) {
    let writer: HashMap<(String, i64), usize> = h
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.mops.iter().filter_map(move |m| match m {
                Mop::Append { key, value } => Some(((key.clone(), *value), i)),
                _ => None,
            })
        })
        .collect();
    for i in (h.len() / 2..h.len()).rev() {
        for j in 0..h[i].mops.len() {
            let Mop::Read {
                key,
                value: Some(v),
            } = h[i].mops[j].clone()
            else {
                continue;
            };
            let Some(&last) = v.last() else { continue };
            let w = writer[&(key.clone(), last)];
            if w != i
                && h[w]
                    .complete_time
                    .is_some_and(|c| c + 10 < h[i].invoke_time)
            {
                h[i].mops[j] = Mop::Read {
                    key,
                    value: Some(v[..v.len() - 1].to_vec()),
                };
                return;
            }
        }
    }
}

fn main() {
    println!(
        "{:>10} {:>8} {:>10} {:>9} {:>8}  anomalies",
        "txns", "history", "verdict", "check_ms", "peak_MB"
    );
    for n in [10_000, 100_000, 1_000_000] {
        for stale in [false, true] {
            let mut h = generate(n, 42);
            if stale {
                plant_stale_read(&mut h);
            }
            let base = reset_peak();
            let started = Instant::now();
            let r = txn::check_list_append(&h, ConsistencyModel::StrictSerializable, None);
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let peak_mb = (PEAK.load(Relaxed) - base) as f64 / 1e6;
            println!(
                "{:>10} {:>8} {:>10} {:>9.0} {:>8.0}  {}",
                n,
                if stale { "stale" } else { "valid" },
                r.verdict.as_str(),
                ms,
                peak_mb,
                r.anomaly_types.join(",")
            );
        }
    }
}
