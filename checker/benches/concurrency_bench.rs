//! `cargo bench -p faultline-checker --bench concurrency_bench`: one
//! register, 20,000 read/write/cas ops from 10 to 1000 concurrent clients,
//! 5% of writes indeterminate, values unique, linearizable by construction;
//! and the same history with one planted stale read. Prints the check time
//! and peak heap of each, with the unique-value fast path and (for
//! comparison, capped) without it.

use faultline_checker::history::pair;
use faultline_checker::linearizability::{check, Options};
use faultline_checker::{EventType, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[path = "common/alloc.rs"]
mod alloc;
#[path = "../tests/it/sim.rs"]
mod sim;
use alloc::{reset_peak, PEAK};
use sim::{to_events, SimOp};

const OPS: usize = 20_000;
const CLIENTS: [u64; 5] = [10, 30, 100, 300, 1000];
/// How long the exact search alone may take before it is cut off.
const EXACT_CAP: Duration = Duration::from_secs(30);

/// Each client runs ops back to back (so `clients` ops are in flight at
/// once); each takes effect at a random point inside its interval, and
/// the register applies them in the order of those points.
fn generate(seed: u64, clients: u64) -> Vec<SimOp> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // (Reverse(free_at_ns), client): the client free earliest goes next.
    let mut free: BinaryHeap<(std::cmp::Reverse<u64>, u64)> =
        (0..clients).map(|c| (std::cmp::Reverse(0), c)).collect();
    let mut process: Vec<u64> = (0..clients).collect();
    let (mut ops, mut points) = (Vec::with_capacity(OPS), Vec::with_capacity(OPS));
    let mut fresh = 0u64;
    for _ in 0..OPS {
        let (std::cmp::Reverse(at), c) = free.pop().expect("clients");
        let call = at + rng.gen_range(1_000..50_000);
        let ret = call + rng.gen_range(100_000..5_000_000);
        let (f, input) = match rng.gen_range(0..10) {
            0..=3 => ("read", Value::Null),
            4..=7 => {
                fresh += 1;
                ("write", json!(fresh))
            }
            _ => {
                let from = fresh.saturating_sub(rng.gen_range(0..2));
                fresh += 1;
                ("cas", json!([from, fresh]))
            }
        };
        let info = f == "write" && rng.gen_bool(0.05);
        ops.push(SimOp {
            process: process[c as usize],
            f,
            key: 0,
            input,
            output: Value::Null,
            kind: if info { EventType::Info } else { EventType::Ok },
            call,
            ret,
        });
        if info {
            process[c as usize] += clients;
        }
        points.push((rng.gen_range(call..ret), ops.len() - 1));
        free.push((std::cmp::Reverse(ret), c));
    }
    points.sort_unstable();
    let mut state = json!(0);
    for (_, i) in points {
        let o = &mut ops[i];
        match o.f {
            "read" => o.output = state.clone(),
            "write" => {
                // An indeterminate write takes effect half the time.
                if o.kind == EventType::Ok || i % 2 == 0 {
                    state = o.input.clone();
                }
                o.output = o.input.clone();
            }
            _ => {
                o.output = o.input.clone();
                if state == o.input[0] {
                    state = o.input[1].clone();
                } else {
                    o.kind = EventType::Fail;
                }
            }
        }
    }
    // The register starts at 0, written before everyone.
    ops.insert(
        0,
        SimOp {
            process: u64::MAX,
            f: "write",
            key: 0,
            input: json!(0),
            output: json!(0),
            kind: EventType::Ok,
            call: 0,
            ret: 1,
        },
    );
    ops
}

/// A read, after two writes that followed each other, of the first one's
/// value: stale, whatever else happened.
fn plant_stale_read(ops: &mut Vec<SimOp>) {
    let writes: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].f == "write" && ops[i].kind == EventType::Ok)
        .collect();
    let a = writes[writes.len() / 2];
    let b = *writes
        .iter()
        .find(|&&b| ops[b].call > ops[a].ret)
        .expect("a later write");
    let t = ops[b].ret + 1;
    ops.push(SimOp {
        process: u64::MAX - 1,
        f: "read",
        key: 0,
        input: Value::Null,
        output: ops[a].input.clone(),
        kind: EventType::Ok,
        call: t,
        ret: t + 1_000,
    });
}

/// With `FAULTLINE_EXPORT_DIR` set, writes the history there as JSON lines
/// (`{client, f, input, output, call, ret, info}`), so another checker
/// (Porcupine) can be run on exactly the same ops.
fn export(ops: &[SimOp], name: &str) {
    let Some(dir) = std::env::var_os("FAULTLINE_EXPORT_DIR") else {
        return;
    };
    let lines: Vec<String> = ops
        .iter()
        .filter(|o| o.kind != EventType::Fail)
        .map(|o| {
            json!({"client": o.process, "f": o.f, "input": o.input, "output": o.output,
                "call": o.call, "ret": o.ret, "info": o.kind == EventType::Info})
            .to_string()
        })
        .collect();
    let path = std::path::Path::new(&dir).join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("writes the export");
}

/// Median time (ms) of `reps` checks, the peak heap (MB) and the verdict.
fn measure(ops: &[SimOp], opts: &Options, reps: usize) -> (f64, f64, Verdict) {
    let paired = pair("bench", &to_events(ops)).expect("pairs");
    let base = reset_peak();
    let mut times = Vec::new();
    let mut verdict = Verdict::Unknown;
    for _ in 0..reps {
        let t = Instant::now();
        verdict = check(&paired, opts).expect("checks").verdict;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let peak_mb = (PEAK.load(Relaxed) - base) as f64 / 1e6;
    times.sort_by(f64::total_cmp);
    (times[reps / 2], peak_mb, verdict)
}

fn main() {
    println!(
        "{:>7} {:>6} | {:>8} {:>9} {:>7} | {:>8} {:>9} {:>7} | {:>22}",
        "clients", "ops", "valid", "ms", "MB", "stale", "ms", "MB", "exact search alone, ms"
    );
    let fast = Options::default();
    let exact = Options {
        fast_path: false,
        time_limit: Some(EXACT_CAP),
        ..Default::default()
    };
    for clients in CLIENTS {
        let mut ops = generate(clients, clients);
        export(&ops, &format!("c{clients}-valid.jsonl"));
        let (ms, mb, v) = measure(&ops, &fast, 3);
        let (ems, _, ev) = measure(&ops, &exact, 1);
        let exact_alone = match ev {
            Verdict::Unknown => format!("unknown after {} s", EXACT_CAP.as_secs()),
            v => format!("{ems:.1} ({})", v.as_str()),
        };
        plant_stale_read(&mut ops);
        export(&ops, &format!("c{clients}-stale.jsonl"));
        let (sms, smb, sv) = measure(&ops, &fast, 3);
        println!(
            "{clients:>7} {:>6} | {:>8} {ms:>9.1} {mb:>7.1} | {:>8} {sms:>9.1} {smb:>7.1} | {exact_alone:>22}",
            ops.len() - 1,
            v.as_str(),
            sv.as_str()
        );
    }
}
