//! rw-register inference, as Elle's: writes are unique per key, so a read
//! value names its writer (wr). The version order is only partly known:
//! the initial nil precedes every write, and a transaction that read `a`
//! and then wrote `b` to a key put `b` after `a` (writes follow reads).
//! A reader of a version precedes every writer of a later one (rw); the
//! writer of a version precedes the writer of the next (ww). Aborted,
//! intermediate and garbage reads and internal inconsistency are named.

use std::collections::HashMap;

use super::graph::{Graph, Why, RT_RW, RT_WW, RW, WR, WW};
use super::history::{Mop, Txn, TxnOutcome};
use super::infer::Inferred;
use super::Anomaly;

/// Most later-version writers a read is ordered before: a bound on edges
/// that costs completeness only.
const MAX_RW_EDGES: usize = 64;

/// Who wrote (key, value), and whether it was that transaction's last
/// write to the key (else a read of it is intermediate).
struct Written {
    txn: usize,
    last: bool,
}

pub fn rw_register(txns: &[Txn]) -> Inferred {
    let mut anomalies = Vec::new();
    let mut writers: HashMap<(&str, i64), Written> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for (p, m) in t.mops.iter().enumerate() {
            if let Mop::Write { key, value } = m {
                let last = !t.mops[p + 1..]
                    .iter()
                    .any(|n| matches!(n, Mop::Write { key: k, .. } if k == key));
                writers.insert((key, *value), Written { txn: i, last });
            }
        }
    }
    // Per key: external reads (txn, value) of committed transactions, and
    // version-order pairs (earlier, later) from writes that follow reads.
    let mut reads: HashMap<&str, Vec<(usize, Option<i64>)>> = HashMap::new();
    let mut follows: HashMap<&str, Vec<(Option<i64>, i64)>> = HashMap::new();
    for (i, t) in txns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.outcome == TxnOutcome::Ok)
    {
        let mut mine: HashMap<&str, Option<i64>> = HashMap::new();
        let mut read: HashMap<&str, Option<i64>> = HashMap::new();
        for m in &t.mops {
            match m {
                Mop::Write { key, value } => {
                    if let Some(&before) = read.get(key.as_str()) {
                        if !mine.contains_key(key.as_str()) {
                            follows.entry(key).or_default().push((before, *value));
                        }
                    }
                    mine.insert(key, Some(*value));
                }
                Mop::ReadRegister {
                    key,
                    value: Some(v),
                } => {
                    match mine.get(key.as_str()) {
                        // It must see its own write.
                        Some(own) if own != v => anomalies.push(Anomaly::plain(
                            "internal",
                            vec![t.index],
                            format!(
                                "T{} wrote {own:?} to key {key} and then read {v:?}",
                                t.index
                            ),
                        )),
                        Some(_) => {}
                        None => match read.get(key.as_str()) {
                            Some(prev) if prev != v => anomalies.push(Anomaly::plain(
                                "internal",
                                vec![t.index],
                                format!("T{} read key {key} twice, as {prev:?} and {v:?}", t.index),
                            )),
                            Some(_) => {}
                            None => {
                                read.insert(key, *v);
                                reads.entry(key).or_default().push((i, *v));
                            }
                        },
                    }
                }
                _ => {}
            }
        }
    }
    let mut graph = Graph::new(txns.len());
    graph.registers = true;
    let mut keys: Vec<&str> = reads.keys().chain(follows.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    // Committed writes per key, grouped once: (value, txn, last to key).
    let mut committed: HashMap<&str, Vec<(i64, usize, bool)>> = HashMap::new();
    for (&(key, v), w) in &writers {
        if txns[w.txn].outcome == TxnOutcome::Ok {
            committed.entry(key).or_default().push((v, w.txn, w.last));
        }
    }
    for list in committed.values_mut() {
        list.sort_unstable();
    }
    for key in keys {
        let k = graph.keys.len() as u32;
        graph.keys.push(key.to_string());
        let rs = reads.get(key).map(Vec::as_slice).unwrap_or_default();
        let fs = follows.get(key).map(Vec::as_slice).unwrap_or_default();
        let ws = committed.get(key).map(Vec::as_slice).unwrap_or_default();
        read_anomalies(key, rs, &writers, txns, &mut anomalies);
        key_edges(&mut graph, k, rs, fs, ws);
        realtime_edges(&mut graph, k, rs, ws, txns);
    }
    let nodes: Vec<usize> = (0..txns.len())
        .filter(|&i| txns[i].outcome == TxnOutcome::Ok)
        .collect();
    graph.add_order(txns, &nodes);
    Inferred { graph, anomalies }
}

fn read_anomalies(
    key: &str,
    rs: &[(usize, Option<i64>)],
    writers: &HashMap<(&str, i64), Written>,
    txns: &[Txn],
    anomalies: &mut Vec<Anomaly>,
) {
    for &(r, v) in rs {
        let Some(v) = v else { continue };
        let t = txns[r].index;
        match writers.get(&(key, v)) {
            None => anomalies.push(Anomaly::plain("garbage-read", vec![t], format!("T{t} read {v} from key {key}, which nobody wrote"))),
            Some(w) if txns[w.txn].outcome == TxnOutcome::Fail => anomalies.push(Anomaly::plain(
                "G1a",
                vec![txns[w.txn].index, t],
                format!("T{t} read key {key} = {v}, written by T{} which failed (aborted read)", txns[w.txn].index),
            )),
            Some(w) if !w.last && w.txn != r => anomalies.push(Anomaly::plain(
                "G1b",
                vec![txns[w.txn].index, t],
                format!("T{t} read key {key} = {v}, which T{} overwrote before committing (intermediate read)", txns[w.txn].index),
            )),
            _ => {}
        }
    }
}

/// Version order through real time: a committed write that completed
/// before another began wrote the earlier version, in any history that
/// respects real time. Each write is ordered after the last write to
/// complete before it began (RT_WW), and that version's readers before it
/// (RT_RW); these edges count only where a model promises real time.
fn realtime_edges(
    graph: &mut Graph,
    k: u32,
    rs: &[(usize, Option<i64>)],
    committed: &[(i64, usize, bool)],
    txns: &[Txn],
) {
    let mut writes: Vec<(u64, u64, i64, usize)> = committed
        .iter()
        .filter(|(_, _, last)| *last)
        .filter_map(|&(v, w, _)| {
            let t = &txns[w];
            t.complete_time.map(|c| (c, t.invoke_time, v, w))
        })
        .collect();
    writes.sort_unstable();
    let mut readers: HashMap<i64, Vec<usize>> = HashMap::new();
    for &(r, v) in rs {
        if let Some(v) = v {
            readers.entry(v).or_default().push(r);
        }
    }
    for &(_, invoked, after, w2) in &writes {
        let before = writes.partition_point(|(c, ..)| *c < invoked);
        let Some(&(_, _, v1, w1)) = before.checked_sub(1).map(|i| &writes[i]) else {
            continue;
        };
        graph.add(
            w1,
            w2,
            RT_WW,
            Why::Ww {
                key: k,
                a: v1,
                b: after,
            },
        );
        for &r in readers.get(&v1).map(Vec::as_slice).unwrap_or_default() {
            graph.add(
                r,
                w2,
                RT_RW,
                Why::Rw {
                    key: k,
                    last: Some(v1),
                    next: after,
                },
            );
        }
    }
}

/// wr from each value's writer to its readers; ww and rw along the known
/// version order: nil before every write, and each (read, then write)
/// pair of a transaction.
fn key_edges(
    graph: &mut Graph,
    k: u32,
    rs: &[(usize, Option<i64>)],
    fs: &[(Option<i64>, i64)],
    committed: &[(i64, usize, bool)],
) {
    let writer_of: HashMap<i64, usize> = committed.iter().map(|&(v, w, _)| (v, w)).collect();
    let writer = |v: i64| writer_of.get(&v).copied();
    let mut readers: HashMap<Option<i64>, Vec<usize>> = HashMap::new();
    for &(r, v) in rs {
        readers.entry(v).or_default().push(r);
        if let Some(w) = v.and_then(writer) {
            graph.add(
                w,
                r,
                WR,
                Why::Wr {
                    key: k,
                    v: v.unwrap_or_default(),
                },
            );
        }
    }
    // Readers of the initial value precede every committed writer.
    for &r in readers.get(&None).map(Vec::as_slice).unwrap_or_default() {
        for &(v, w, _) in committed.iter().take(MAX_RW_EDGES) {
            graph.add(
                r,
                w,
                RW,
                Why::Rw {
                    key: k,
                    last: None,
                    next: v,
                },
            );
        }
    }
    for &(before, after) in fs {
        let Some(w_after) = writer(after) else {
            continue;
        };
        if let Some(w_before) = before.and_then(writer) {
            graph.add(
                w_before,
                w_after,
                WW,
                Why::Ww {
                    key: k,
                    a: before.unwrap_or_default(),
                    b: after,
                },
            );
        }
        for &r in readers.get(&before).map(Vec::as_slice).unwrap_or_default() {
            graph.add(
                r,
                w_after,
                RW,
                Why::Rw {
                    key: k,
                    last: before,
                    next: after,
                },
            );
        }
    }
}
