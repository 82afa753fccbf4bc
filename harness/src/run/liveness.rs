//! After healing: the workload's final reads must each succeed within a
//! bound, or the system did not recover (the `liveness` checker). Each
//! attempt is an op in the history, so a stale final read is caught too.

use anyhow::Context;
use faultline_checker::{CheckerResult, EventType, Verdict};
use faultline_workloads::Invocation;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::options::TestConfig;

/// Pause between attempts at one final read.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The final reads still to succeed: each client's own share first, then
/// those that failed, which any client takes next (so a read whose node is
/// down is tried through another).
struct Work {
    own: Vec<VecDeque<Invocation>>,
    retry: VecDeque<Invocation>,
    /// Reads not yet succeeded, in flight included.
    pending: usize,
}

/// Client k's share is every concurrency-th read (as before any fails);
/// each read is retried, by whichever client is free, until it succeeds or
/// time is up.
pub async fn run(
    cfg: &TestConfig,
    clients: Vec<Client>,
    cancel: &CancellationToken,
) -> anyhow::Result<CheckerResult> {
    let reads = cfg.workload().final_reads(cfg.key_count, cfg.node_count);
    let ids = super::cluster::Layout::node_ids(cfg);
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
    }));
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(read_all(
            c,
            work.clone(),
            until,
            cancel.clone(),
        )));
    }
    for t in tasks {
        t.await
            .context("a client task panicked")?
            .context("writing history.jsonl")?;
    }
    let w = work.lock().unwrap_or_else(|e| e.into_inner());
    let mut unreadable: Vec<serde_json::Value> = w
        .own
        .iter()
        .flatten()
        .chain(w.retry.iter())
        .map(|r| match r.node {
            // A read of one node's view: name the node.
            Some(n) => json!(format!("{} on {}", r.f, ids[n])),
            None => r.key.clone(),
        })
        .collect();
    drop(w);
    // Numeric keys in numeric order, then the rest as text.
    unreadable.sort_by_key(|k| {
        k.as_u64()
            .map_or((1, 0, k.to_string()), |n| (0, n, String::new()))
    });
    let verdict = if unreadable.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid
    };
    let summary = if unreadable.is_empty() {
        format!(
            "every key readable {:.1} s after healing",
            started.elapsed().as_secs_f64()
        )
    } else {
        format!(
            "liveness violated: keys {} were not readable within {} s after healing",
            json!(unreadable),
            cfg.liveness_timeout_s
        )
    };
    let details = json!({
        "checker": "liveness",
        "keys": reads.len(),
        "unreadable_keys": unreadable,
        "seconds_to_read_all": started.elapsed().as_secs_f64(),
        "bound_s": cfg.liveness_timeout_s,
    });
    Ok(CheckerResult::new("liveness", verdict, summary, &details))
}

/// Takes reads (its own first, then failed ones) until none is pending
/// or time is up; a failed read goes back for any client.
async fn read_all(
    mut c: Client,
    work: Arc<Mutex<Work>>,
    until: Instant,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let me = c.k - 1;
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
        let ok = c.invoke(&read).await? == EventType::Ok;
        {
            let mut w = work.lock().unwrap_or_else(|e| e.into_inner());
            if ok {
                w.pending -= 1;
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
