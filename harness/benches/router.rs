//! `cargo bench -p faultline --bench router`: routed messages per second
//! and the latency the harness adds per hop, with 5 nodes.
//!
//! The nodes are in-process tasks on tokio duplex pipes, so the figures are
//! the harness's own cost (line framing, envelope parsing, link policy,
//! re-enveloping with an id, queueing, the journal) rather than process
//! scheduling. Each fake node forwards every message it receives to the
//! next node, stamping the send time; the receiver records the hop latency.
//! Two loads: a light one (one message in flight per node) for latency, and
//! a saturating one (many in flight) for throughput.

use faultline_net::recorder::Recorder;
use faultline_net::router::{LinkPolicy, Network};
use faultline_rundir::record::Clock;
use faultline_rundir::stats::{LatencyDist, NetStats};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const NODES: usize = 5;

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Pulls `"t":<digits>` out of a line without a full parse.
fn stamp(line: &str) -> Option<u64> {
    let i = line.find("\"t\":")? + 4;
    let digits: String = line[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn scenario(in_flight: usize, seconds: f64) -> (f64, Histogram<u64>, NetStats) {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::create(dir.path(), Clock::new(), 200_000).unwrap());
    let ids: Vec<String> = (1..=NODES).map(|i| format!("n{i}")).collect();
    let net = Network::new(
        ids.clone(),
        1,
        LinkPolicy::with_latency(0.0, LatencyDist::Constant),
        1,
        recorder,
    );
    let base = Instant::now();
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap(),
    ));
    let received = Arc::new(AtomicU64::new(0));
    let warmup_until = base + Duration::from_secs_f64(0.3);
    let stop = base + Duration::from_secs_f64(0.3 + seconds);
    let mut tasks = Vec::new();
    for i in 0..NODES {
        let (node_out, harness_in) = tokio::io::duplex(256 * 1024);
        let (harness_out, node_in) = tokio::io::duplex(256 * 1024);
        net.attach(i, harness_in, harness_out);
        let (hist, received, next) = (hist.clone(), received.clone(), ids[(i + 1) % NODES].clone());
        let me = ids[i].clone();
        tasks.push(tokio::spawn(async move {
            let mut out = node_out;
            let mut lines = BufReader::new(node_in).lines();
            let send = |t: u64| format!("{{\"src\":\"{me}\",\"dest\":\"{next}\",\"body\":{{\"type\":\"ping\",\"t\":{t}}}}}\n");
            for _ in 0..in_flight {
                out.write_all(send(now_ns(base)).as_bytes()).await.unwrap();
            }
            let mut local = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
            let mut n = 0u64;
            while let Ok(Some(line)) = lines.next_line().await {
                let now = Instant::now();
                if now >= stop {
                    break;
                }
                if now >= warmup_until {
                    if let Some(t) = stamp(&line) {
                        let _ = local.record(now_ns(base).saturating_sub(t).max(1));
                    }
                    n += 1;
                }
                out.write_all(send(now_ns(base)).as_bytes()).await.unwrap();
            }
            hist.lock().unwrap().add(&local).unwrap();
            received.fetch_add(n, Relaxed);
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs_f64(seconds + 5.0), t).await;
    }
    let rate = received.load(Relaxed) as f64 / seconds;
    let h = hist.lock().unwrap().clone();
    (rate, h, net.stats())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "router benchmark: {NODES} nodes in-process, tokio multi-thread runtime, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (label, in_flight) in [
        ("light load (1 in flight per node)", 1),
        ("moderate load (4 in flight per node)", 4),
        ("saturating (64 in flight per node)", 64),
    ] {
        let (rate, h, stats) = rt.block_on(scenario(in_flight, 3.0));
        println!(
            "{label}: {:.0} msgs/s routed; per-hop latency p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us; malformed {}, overflow {}",
            rate,
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3,
            stats.malformed,
            stats.overflow
        );
    }
}
