//! List-append inference: each key's version order is its longest read
//! (every other read must be a prefix of it); appends are unique per key,
//! so an element names the transaction that appended it. From the orders
//! come the anomalies no isolation level allows and the dependency edges.

use std::collections::HashMap;

use super::graph::{Graph, Why, RW, WR, WW};
use super::history::{Mop, Txn, TxnOutcome};
use super::Anomaly;

pub struct Inferred {
    pub graph: Graph,
    pub anomalies: Vec<Anomaly>,
}

/// Who appended (key, value): the transaction and whether that append is
/// its last to the key.
#[derive(Clone, Copy)]
struct Writer {
    txn: usize,
    last_to_key: bool,
}

/// Per key: the reads of committed transactions (txn, elements).
type Reads<'a> = HashMap<&'a str, Vec<(usize, &'a [i64])>>;

pub fn list_append(txns: &[Txn]) -> Inferred {
    let mut anomalies = Vec::new();
    let writers = writers(txns, &mut anomalies);
    let mut reads: Reads = HashMap::new();
    // Dependencies come from the reads that agree with what their
    // transaction read and appended before (Elle takes only the first
    // read of a key; a later read that agrees says the same and more). A
    // non-repeatable read is then `internal` alone, which read committed
    // allows, and not also a cycle through the value it saw change.
    let mut consistent: Reads = HashMap::new();
    for (i, t) in txns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.outcome == TxnOutcome::Ok)
    {
        let inconsistent = internal(t, &mut anomalies);
        for (p, m) in t.mops.iter().enumerate() {
            if let Mop::Read {
                key,
                value: Some(v),
            } = m
            {
                reads.entry(key).or_default().push((i, v));
                if !inconsistent.contains(&p) {
                    consistent.entry(key).or_default().push((i, v));
                }
            }
        }
    }
    let mut appends: HashMap<&str, Vec<(i64, usize)>> = HashMap::new();
    for ((k, v), w) in &writers {
        appends.entry(k).or_default().push((*v, w.txn));
    }
    lost_writes(txns, &appends, &mut anomalies);
    let mut keys: Vec<&str> = reads.keys().copied().collect();
    keys.sort_unstable();
    // Transactions that took part: committed ones, and unfinished ones
    // whose appends were read (their other appends happened too).
    let mut node: Vec<bool> = txns.iter().map(|t| t.outcome == TxnOutcome::Ok).collect();
    let mut longest: Vec<&[i64]> = Vec::new();
    for key in &keys {
        let l = version_order(key, &reads[key], txns, &mut anomalies);
        for v in l {
            if let Some(w) = writers.get(&(*key, *v)) {
                node[w.txn] |= txns[w.txn].outcome == TxnOutcome::Info;
            }
        }
        longest.push(l);
    }
    let mut graph = Graph::new(txns.len());
    for (key, l) in keys.into_iter().zip(longest) {
        let k = graph.keys.len() as u32;
        graph.keys.push(key.to_string());
        let rs = &reads[key];
        let (order, unread) = with_unread_appends(key, l, &appends, txns, &node);
        let order = &order[..];
        read_anomalies(key, rs, order, &writers, txns, &mut anomalies);
        let ext = consistent.get(key).map_or(&[][..], |v| &v[..]);
        edges(&mut graph, k, key, ext, order, &writers, txns);
        unread_edges(&mut graph, k, ext, order, &unread);
    }
    let nodes: Vec<usize> = (0..txns.len()).filter(|&i| node[i]).collect();
    graph.add_order(txns, &nodes);
    Inferred { graph, anomalies }
}

/// Most lost appends named per final read of a key.
const MAX_LOST_NAMED: usize = 8;

/// Committed appends missing from a final read of their key. Final reads
/// follow healing and the recovery wait, after every op of the load has
/// completed: what they return is what the system kept, so a committed
/// append absent from one was lost (a power loss took an acknowledged
/// commit, or a failover dropped it), whatever the isolation level.
fn lost_writes(
    txns: &[Txn],
    appends: &HashMap<&str, Vec<(i64, usize)>>,
    anomalies: &mut Vec<Anomaly>,
) {
    for t in txns
        .iter()
        .filter(|t| t.final_read && t.outcome == TxnOutcome::Ok)
    {
        for m in &t.mops {
            let Mop::Read {
                key,
                value: Some(kept),
            } = m
            else {
                continue;
            };
            let mut lost: Vec<(i64, &Txn)> = appends
                .get(key.as_str())
                .into_iter()
                .flatten()
                .map(|&(v, w)| (v, &txns[w]))
                .filter(|(v, w)| {
                    w.outcome == TxnOutcome::Ok
                        && w.complete_time.is_some_and(|c| c <= t.invoke_time)
                        && !kept.contains(v)
                })
                .collect();
            if lost.is_empty() {
                continue;
            }
            lost.sort_by_key(|(v, _)| *v);
            let named: Vec<String> = lost
                .iter()
                .take(MAX_LOST_NAMED)
                .map(|(v, w)| format!("T{}'s append of {v}", w.index))
                .collect();
            let more = lost.len().saturating_sub(MAX_LOST_NAMED);
            let mut ids: Vec<u64> = lost.iter().map(|(_, w)| w.index).collect();
            ids.dedup();
            ids.push(t.index);
            anomalies.push(Anomaly::plain(
                "lost-write",
                ids,
                format!(
                    "final read T{} of key {key} = {kept:?} lacks {} committed append(s): {}{}",
                    t.index,
                    lost.len(),
                    named.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
    }
}

/// Every append, by (key, value); an element appended twice is flagged,
/// since the version order could not name its writer.
fn writers<'a>(txns: &'a [Txn], anomalies: &mut Vec<Anomaly>) -> HashMap<(&'a str, i64), Writer> {
    let mut w: HashMap<(&str, i64), Writer> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for (p, m) in t.mops.iter().enumerate() {
            let Mop::Append { key, value } = m else {
                continue;
            };
            let last = !t.mops[p + 1..]
                .iter()
                .any(|n| matches!(n, Mop::Append { key: k2, .. } if k2 == key));
            if let Some(prev) = w.insert(
                (key, *value),
                Writer {
                    txn: i,
                    last_to_key: last,
                },
            ) {
                if prev.txn != i {
                    anomalies.push(Anomaly::plain(
                        "duplicate-appends",
                        vec![txns[prev.txn].index, t.index],
                        format!("T{} and T{} both appended {value} to key {key}: elements must be unique per key", txns[prev.txn].index, t.index),
                    ));
                }
            }
        }
    }
    w
}

/// A transaction's reads must show its own earlier appends: after reading
/// `l` and appending x, the next read of the key is `l ++ [x]`; with no
/// earlier read, it ends in the appends. Returns the positions of the
/// reads that do not.
fn internal(t: &Txn, anomalies: &mut Vec<Anomaly>) -> Vec<usize> {
    let mut state: HashMap<&str, (Option<Vec<i64>>, Vec<i64>)> = HashMap::new();
    let mut inconsistent = Vec::new();
    for (p, m) in t.mops.iter().enumerate() {
        match m {
            Mop::Append { key, value } => state.entry(key).or_default().1.push(*value),
            Mop::Read {
                key,
                value: Some(got),
            } => {
                let (known, mine) = state.entry(key).or_default();
                let ok = match known {
                    Some(k) => {
                        got.len() == k.len() + mine.len()
                            && got.starts_with(k)
                            && got.ends_with(mine)
                    }
                    None => got.ends_with(mine),
                };
                if !ok {
                    inconsistent.push(p);
                    anomalies.push(Anomaly::plain(
                        "internal",
                        vec![t.index],
                        format!(
                            "T{} read key {key} = {got:?}, which does not show {}",
                            t.index,
                            match known {
                                Some(k) => format!(
                                    "its earlier read {k:?} followed by its own appends {mine:?}"
                                ),
                                None => format!("its own appends {mine:?} at the end"),
                            }
                        ),
                    ));
                }
                *known = Some(got.clone());
                mine.clear();
            }
            _ => {}
        }
    }
    inconsistent
}

/// The longest read, extended by the one committed append no read saw
/// when there is exactly one (and no unfinished append that might also
/// have landed): the final state holds every committed append and every
/// read is a prefix of it, so that append comes right after. Also the
/// appends that happened and are still not in the order.
fn with_unread_appends(
    key: &str,
    longest: &[i64],
    appends: &HashMap<&str, Vec<(i64, usize)>>,
    txns: &[Txn],
    happened: &[bool],
) -> (Vec<i64>, Vec<(i64, usize)>) {
    let mut order = longest.to_vec();
    let seen: std::collections::HashSet<i64> = longest.iter().copied().collect();
    let unread: Vec<(i64, usize)> = appends
        .get(key)
        .into_iter()
        .flatten()
        .filter(|(v, w)| !seen.contains(v) && txns[*w].outcome != TxnOutcome::Fail)
        .copied()
        .collect();
    if let [(v, w)] = unread[..] {
        if happened[w] {
            order.push(v);
            return (order, Vec::new());
        }
    }
    let unread = unread.into_iter().filter(|(_, w)| happened[*w]).collect();
    (order, unread)
}

/// The longest read; any read that is not a prefix of it is an
/// incompatible order.
fn version_order<'a>(
    key: &str,
    rs: &[(usize, &'a [i64])],
    txns: &[Txn],
    anomalies: &mut Vec<Anomaly>,
) -> &'a [i64] {
    let (li, longest) = rs
        .iter()
        .max_by_key(|(_, r)| r.len())
        .map(|&(i, r)| (i, r))
        .unwrap_or((0, &[]));
    if let Some(&(i, bad)) = rs.iter().find(|(_, r)| !longest.starts_with(r)) {
        anomalies.push(Anomaly::plain(
            "incompatible-order",
            vec![txns[i].index, txns[li].index],
            format!(
                "T{} read key {key} = {bad:?} and T{} read {longest:?}: neither is a prefix of the other",
                txns[i].index, txns[li].index
            ),
        ));
    }
    longest
}

/// Per read: elements never appended (garbage), appended twice in the
/// read (duplicates), appended by a failed transaction (G1a), or not the
/// writer's last append to the key (G1b); in the order: a committed append
/// after a failed one (dirty update).
fn read_anomalies(
    key: &str,
    rs: &[(usize, &[i64])],
    order: &[i64],
    writers: &HashMap<(&str, i64), Writer>,
    txns: &[Txn],
    anomalies: &mut Vec<Anomaly>,
) {
    for &(r, els) in rs {
        let t = txns[r].index;
        let mut seen = std::collections::HashSet::new();
        for v in els {
            if !seen.insert(v) {
                anomalies.push(Anomaly::plain(
                    "duplicate-elements",
                    vec![t],
                    format!("T{t} read key {key} = {els:?}, with {v} twice"),
                ));
            }
            match writers.get(&(key, *v)) {
                None => anomalies.push(Anomaly::plain("garbage-read", vec![t], format!("T{t} read {v} in key {key}, which nobody appended"))),
                Some(w) if txns[w.txn].outcome == TxnOutcome::Fail => anomalies.push(Anomaly::plain(
                    "G1a",
                    vec![txns[w.txn].index, t],
                    format!("T{t} read key {key} = {els:?}, including {v}, appended by T{} which failed (aborted read)", txns[w.txn].index),
                )),
                _ => {}
            }
        }
        if let Some(w) = els.last().and_then(|v| writers.get(&(key, *v))) {
            if !w.last_to_key && w.txn != r {
                let wi = txns[w.txn].index;
                anomalies.push(Anomaly::plain(
                    "G1b",
                    vec![wi, t],
                    format!("T{t} read key {key} = {els:?}, ending in an append T{wi} followed with another (intermediate read)"),
                ));
            }
        }
    }
    // One transaction's appends to a key land together, in the order it
    // made them: what the order holds of them is a prefix of them.
    // (An order with an element twice is already flagged as such.)
    let mut seen_of: HashMap<usize, Vec<i64>> = HashMap::new();
    let distinct: std::collections::HashSet<&i64> = order.iter().collect();
    for v in order.iter().filter(|_| distinct.len() == order.len()) {
        if let Some(w) = writers.get(&(key, *v)) {
            seen_of.entry(w.txn).or_default().push(*v);
        }
    }
    let mut by_txn: Vec<(&usize, &Vec<i64>)> = seen_of.iter().collect();
    by_txn.sort();
    for (&w, seen) in by_txn {
        let own: Vec<i64> = txns[w]
            .mops
            .iter()
            .filter_map(|m| match m {
                Mop::Append { key: k, value } if k == key => Some(*value),
                _ => None,
            })
            .collect();
        if !own.starts_with(seen) {
            let t = txns[w].index;
            anomalies.push(Anomaly::plain(
                "out-of-order-appends",
                vec![t],
                format!("key {key}'s order {order:?} holds T{t}'s appends as {seen:?}, but T{t} appended {own:?}"),
            ));
        }
    }
    let mut aborted_before: Option<i64> = None;
    for v in order {
        match writers.get(&(key, *v)).map(|w| txns[w.txn].outcome) {
            Some(TxnOutcome::Fail) => aborted_before = aborted_before.or(Some(*v)),
            Some(TxnOutcome::Ok) if aborted_before.is_some() => {
                let w = writers[&(key, *v)].txn;
                anomalies.push(Anomaly::plain(
                    "dirty-update",
                    vec![txns[w].index],
                    format!(
                        "key {key}: T{} appended {v} after {}, an append of a failed transaction",
                        txns[w].index,
                        aborted_before.unwrap_or_default()
                    ),
                ));
                break;
            }
            _ => {}
        }
    }
}

/// Most committed-but-unread appends of a key that each read is ordered
/// before: a bound on edges, at the cost of completeness only.
const MAX_UNREAD_EDGES: usize = 64;

/// A committed append no read saw is in the key's final state, after
/// everything any read saw: so every reader of the key precedes its
/// writer (an anti-dependency through versions nobody observed).
fn unread_edges(
    graph: &mut Graph,
    k: u32,
    rs: &[(usize, &[i64])],
    order: &[i64],
    unread: &[(i64, usize)],
) {
    let unread = &unread[..unread.len().min(MAX_UNREAD_EDGES)];
    for &(r, els) in rs {
        if !order.starts_with(els) {
            continue;
        }
        for &(v, w) in unread {
            graph.add(
                r,
                w,
                RW,
                Why::Rw {
                    key: k,
                    last: els.last().copied(),
                    next: v,
                },
            );
        }
    }
}

/// ww between consecutive versions' writers; wr from the writer of a
/// read's last element to the reader; rw from a reader to the writer of
/// the version after what it read.
fn edges(
    graph: &mut Graph,
    k: u32,
    key: &str,
    rs: &[(usize, &[i64])],
    order: &[i64],
    writers: &HashMap<(&str, i64), Writer>,
    txns: &[Txn],
) {
    // A failed transaction never happened: it orders nothing.
    let writer = |v: &i64| {
        writers
            .get(&(key, *v))
            .map(|w| w.txn)
            .filter(|&w| txns[w].outcome != TxnOutcome::Fail)
    };
    for pair in order.windows(2) {
        if let (Some(a), Some(b)) = (writer(&pair[0]), writer(&pair[1])) {
            graph.add(
                a,
                b,
                WW,
                Why::Ww {
                    key: k,
                    a: pair[0],
                    b: pair[1],
                },
            );
        }
    }
    for &(r, els) in rs {
        // A read that is not a prefix of the order gives no edges.
        if !order.starts_with(els) {
            continue;
        }
        if let Some(w) = els.last().and_then(writer) {
            graph.add(
                w,
                r,
                WR,
                Why::Wr {
                    key: k,
                    v: *els.last().expect("non-empty"),
                },
            );
        }
        if let Some(next) = order.get(els.len()) {
            if let Some(w) = writer(next) {
                graph.add(
                    r,
                    w,
                    RW,
                    Why::Rw {
                        key: k,
                        last: els.last().copied(),
                        next: *next,
                    },
                );
            }
        }
    }
}
