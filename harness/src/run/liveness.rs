//! After healing: the workload's final reads must each succeed within a
//! bound, or the system did not recover (the `liveness` checker). Each
//! attempt is an op in the history, marked `"final":true`, so the checkers
//! judge what the system kept by them (and a stale final read is caught).
//!
//! Final reads are complete: a read answered a page at a time reads on
//! from where the page ended (kafka's polls) until a page comes back
//! empty. How long the system had before them (`super::recovery_s`) is
//! reported beside the result.

use anyhow::Context;
use faultline_checker::compose::names;
use faultline_checker::{CheckerResult, Verdict};
use faultline_workloads::{Invocation, Outcome, Workload};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use faultline_rundir::TestConfig;

/// Pause between attempts at one final read.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Most follow-up reads (further pages) in one run: a node that keeps
/// answering pages must not keep the phase going past its bound anyway.
const MAX_FOLLOW_UPS: usize = 100_000;

/// The final reads still to succeed: each client's own share first, then
/// those that failed, which any client takes next (so a read whose node is
/// down is tried through another).
struct Work {
    own: Vec<VecDeque<Invocation>>,
    retry: VecDeque<Invocation>,
    /// Reads not yet succeeded, in flight included.
    pending: usize,
    follow_ups: usize,
}

impl Work {
    /// Records a successful read; queues the page that must follow it.
    fn done(&mut self, workload: &dyn Workload, read: &Invocation, value: &Value) {
        self.pending -= 1;
        if let Some(next) = workload.next_final_read(read, value) {
            if self.follow_ups < MAX_FOLLOW_UPS {
                self.follow_ups += 1;
                self.pending += 1;
                self.retry.push_back(next);
            }
        }
    }
}

/// Client k's share is every concurrency-th read (as before any fails);
/// each read is retried, by whichever client is free, until it succeeds or
/// time is up.
pub async fn run(
    cfg: &TestConfig,
    clients: Vec<Client>,
    reads: Option<Vec<Invocation>>,
    cancel: &CancellationToken,
) -> anyhow::Result<CheckerResult> {
    let workload = cfg.workload();
    let reads: Vec<Invocation> = reads
        .unwrap_or_else(|| workload.final_reads(cfg.key_count, cfg.node_count))
        .into_iter()
        .map(Invocation::finally)
        .collect();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(cfg.liveness_timeout_s);
    let mut own = vec![VecDeque::new(); cfg.concurrency];
    for (i, r) in reads.iter().enumerate() {
        own[i % cfg.concurrency].push_back(r.clone());
    }
    let work = Arc::new(Mutex::new(Work {
        own,
        retry: VecDeque::new(),
        pending: reads.len(),
        follow_ups: 0,
    }));
    let mut tasks = Vec::new();
    for c in clients {
        let (work, cancel) = (work.clone(), cancel.clone());
        tasks.push(tokio::spawn(read_all(c, work, until, cancel)));
    }
    for t in tasks {
        t.await
            .context("a client task panicked")?
            .context("writing history.jsonl")?;
    }
    let w = work.lock().unwrap_or_else(|e| e.into_inner());
    Ok(verdict(cfg, &reads, &w, started))
}

/// The liveness result: which final reads never succeeded.
fn verdict(cfg: &TestConfig, reads: &[Invocation], w: &Work, started: Instant) -> CheckerResult {
    let ids = super::cluster::Layout::node_ids(cfg);
    let mut unreadable: Vec<Value> = w
        .own
        .iter()
        .flatten()
        .chain(w.retry.iter())
        .map(|r| match r.node {
            // A read of one node's view: name the node.
            Some(n) => json!(format!("{} on {}", r.f, ids[n])),
            None => key_of(r),
        })
        .collect();
    // Numeric keys in numeric order, then the rest as text.
    unreadable.sort_by_key(|k| {
        k.as_u64()
            .map_or((1, 0, k.to_string()), |n| (0, n, String::new()))
    });
    unreadable.dedup();
    let elapsed_s = started.elapsed().as_secs_f64();
    let waited_s = super::recovery_s(cfg);
    let (verdict, summary) = if unreadable.is_empty() {
        (
            Verdict::Valid,
            format!("every key readable {elapsed_s:.1} s after the {waited_s} s wait that followed healing"),
        )
    } else {
        (
            Verdict::Invalid,
            format!(
                "liveness violated: keys {} were not readable within {} s after healing",
                json!(unreadable),
                cfg.liveness_timeout_s
            ),
        )
    };
    let details = json!({
        "checker": names::LIVENESS,
        "keys": reads.len(),
        "unreadable_keys": unreadable,
        "seconds_to_read_all": elapsed_s,
        "bound_s": cfg.liveness_timeout_s,
        "waited_after_healing_s": waited_s,
        "pages_read_on": w.follow_ups,
    });
    CheckerResult::new(names::LIVENESS, verdict, summary, &details)
}

/// What a read without a node reads: its key, or for a read named by its
/// value (kafka's `{"key": offset}`, a transaction's `[["r", k, null]]`),
/// the keys it names.
fn key_of(r: &Invocation) -> Value {
    if let (Value::Null, Some(ops)) = (&r.key, r.value.as_array()) {
        let keys: Vec<&Value> = ops.iter().filter_map(|op| op.get(1)).collect();
        return match keys.as_slice() {
            [one] => (*one).clone(),
            _ => json!(keys),
        };
    }
    match (&r.key, r.value.as_object()) {
        (Value::Null, Some(m)) if m.len() == 1 => json!(m.keys().next()),
        (Value::Null, Some(m)) => json!(m.keys().collect::<Vec<_>>()),
        (k, _) => k.clone(),
    }
}

/// Takes reads (its own first, then failed ones and follow-ups) until none
/// is pending or time is up; a failed read goes back for any client.
async fn read_all(
    mut c: Client,
    work: Arc<Mutex<Work>>,
    until: Instant,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let me = c.k - 1;
    let workload = c.workload();
    while !cancel.is_cancelled() && Instant::now() < until {
        let next = {
            let mut w = work.lock().unwrap_or_else(|e| e.into_inner());
            if w.pending == 0 {
                return Ok(());
            }
            w.own[me].pop_front().or_else(|| w.retry.pop_front())
        };
        let Some(read) = next else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let done = c.invoke_for(&read).await?;
        let ok = done.kind == Outcome::Ok;
        {
            let mut w = work.lock().unwrap_or_else(|e| e.into_inner());
            if ok {
                w.done(workload, &read, &done.value);
            } else {
                w.retry.push_back(read);
            }
        }
        if !ok {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_named_by_its_value_is_named_by_the_keys_it_reads() {
        // Kafka's final poll has no key of its own: `{"3": 0}` reads key 3.
        let poll = Invocation::new("poll", Value::Null, json!({"3": 0}));
        assert_eq!(key_of(&poll), json!("3"));
        let read = Invocation::new("read", json!(7), Value::Null);
        assert_eq!(key_of(&read), json!(7));
        // A transaction's final read names its keys (it once said `null`).
        let txn = Invocation::new("txn", Value::Null, json!([["r", 4, null]]));
        assert_eq!(key_of(&txn), json!(4));
        let two = Invocation::new("txn", Value::Null, json!([["r", 1, null], ["r", 2, null]]));
        assert_eq!(key_of(&two), json!([1, 2]));
    }
}
