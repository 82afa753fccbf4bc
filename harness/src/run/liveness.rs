//! After healing: the workload's final reads must each succeed within a
//! bound, or the system did not recover (the `liveness` checker). Each
//! attempt is an op in the history, so a stale final read is caught too.

use anyhow::Context;
use faultline_checker::{CheckerResult, EventType, Verdict};
use faultline_workloads::Invocation;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::options::TestConfig;

/// Pause between attempts at one final read.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Splits the final reads over the clients (client k takes every
/// concurrency-th read) and retries each until it succeeds or time is up.
pub async fn run(
    cfg: &TestConfig,
    clients: Vec<Client>,
    cancel: &CancellationToken,
) -> anyhow::Result<CheckerResult> {
    let reads = cfg.workload().final_reads(cfg.key_count);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(cfg.liveness_timeout_s);
    let mut tasks = Vec::new();
    for c in clients {
        let mine: Vec<Invocation> = reads
            .iter()
            .enumerate()
            .filter(|(i, _)| i % cfg.concurrency == c.k - 1)
            .map(|(_, r)| r.clone())
            .collect();
        tasks.push(tokio::spawn(read_all(c, mine, until, cancel.clone())));
    }
    let mut unreadable = Vec::new();
    for t in tasks {
        let failed = t
            .await
            .context("a client task panicked")?
            .context("writing history.jsonl")?;
        unreadable.extend(failed);
    }
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

/// The keys of the reads that never succeeded.
async fn read_all(
    mut c: Client,
    reads: Vec<Invocation>,
    until: Instant,
    cancel: CancellationToken,
) -> std::io::Result<Vec<serde_json::Value>> {
    let mut unreadable = Vec::new();
    for read in reads {
        loop {
            if cancel.is_cancelled() || Instant::now() >= until {
                unreadable.push(read.key.clone());
                break;
            }
            if c.invoke(&read).await? == EventType::Ok {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(unreadable)
}
