//! The TCP proxy's cost (`cargo bench -p faultline --bench proxy`):
//! added latency per hop (p50/p99) and throughput of one link, against the
//! same traffic straight to the server; then, with etcd installed, a
//! 3-member etcd cluster's lin-kv ops/s through faultline's proxies against
//! the same cluster with its peers talking directly.

use faultline_net::links::{LinkFaults, Links};
use faultline_net::tcp::TcpLinks;
use hdrhistogram::Histogram;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUND_TRIPS: usize = 20_000;
const STREAM_BYTES: usize = 512 << 20;

/// An echo server (for round trips) on 127.0.1.2:port.
async fn echo(port: u16) {
    let l = TcpListener::bind(format!("127.0.1.2:{port}"))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            if s.write_all(&buf[..k]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Round trips of 64 bytes to `at`, as a latency histogram in µs.
async fn round_trips(at: &str) -> Histogram<u64> {
    let mut s = TcpStream::connect(at).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let (msg, mut back) = ([7u8; 64], [0u8; 64]);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        s.write_all(&msg).await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        h.record(t.elapsed().as_micros().max(1) as u64).unwrap();
    }
    h
}

/// MB/s of a one-way stream to `at` (the echo comes back and is drained).
async fn throughput(at: &str) -> f64 {
    let s = TcpStream::connect(at).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < STREAM_BYTES {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k,
            }
        }
    });
    let t = Instant::now();
    let chunk = vec![1u8; 256 * 1024];
    for _ in 0..STREAM_BYTES / chunk.len() {
        w.write_all(&chunk).await.unwrap();
    }
    drain.await.unwrap();
    STREAM_BYTES as f64 / 1e6 / t.elapsed().as_secs_f64()
}

async fn proxy_figures() {
    let probe = std::net::TcpListener::bind("127.0.1.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    echo(port).await;
    let node = |j: usize| format!("127.0.1.{}", j + 1);
    let proxy = |i: usize, j: usize| format!("127.{}.{}.1", 100 + i + 1, j + 1);
    let links = TcpLinks::start(
        vec!["n1".into(), "n2".into()],
        &[port],
        node,
        proxy,
        faultline_net::tcp::PeerSource::Node,
        1,
        None,
    )
    .await
    .unwrap();
    links.set_faults(0, 1, LinkFaults::HEALED);
    let direct_at = format!("127.0.1.2:{port}");
    let proxied_at = format!("127.101.2.1:{port}");
    let direct = round_trips(&direct_at).await;
    let proxied = round_trips(&proxied_at).await;
    // A round trip crosses the proxy twice (there and back): two hops.
    let added =
        |q: f64| (proxied.value_at_quantile(q) as f64 - direct.value_at_quantile(q) as f64) / 2.0;
    println!(
        "proxy: round trip of 64 B direct p50 {} µs p99 {} µs, proxied p50 {} µs p99 {} µs: added per hop p50 {:.0} µs, p99 {:.0} µs (target p99 <= 100 µs)",
        direct.value_at_quantile(0.5),
        direct.value_at_quantile(0.99),
        proxied.value_at_quantile(0.5),
        proxied.value_at_quantile(0.99),
        added(0.5),
        added(0.99)
    );
    let (d, p) = (throughput(&direct_at).await, throughput(&proxied_at).await);
    println!("proxy: one link's throughput {p:.0} MB/s through the proxy, {d:.0} MB/s direct (echoed both ways)");
}

/// ok ops/s of a `faultline test` on the given system file.
fn etcd_ops_per_s(system: &std::path::Path, results: &std::path::Path) -> Option<f64> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "test",
            "--node-count",
            "3",
            "--time-limit",
            "10",
            "--rate",
            "100000",
            "--concurrency",
            "64",
            "--seed",
            "1",
        ])
        .arg("--system")
        .arg(system)
        .arg("--results-dir")
        .arg(results)
        .output()
        .ok()?;
    let dir = std::fs::read_link(results.join("latest")).ok()?;
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join(dir).join("results.json")).ok()?)
            .ok()?;
    let ok = r["ops"]["ok"].as_f64()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Some(ok / 10.0)
}

fn etcd_figures() {
    if !std::path::Path::new("/usr/bin/etcd").is_file() {
        println!("etcd: not installed (apt-get install etcd-server): etcd throughput not measured");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = include_str!("../../systems/etcd.toml");
    // The same cluster with peers dialing each other's real addresses: no
    // proxy on the way.
    let direct = etcd
        .replace("http://{host}:{port.peer}", "http://{ip}:{port.peer}")
        .replace("peer_ports = [\"peer\"]", "peer_ports = []");
    let (through, straight) = (
        tmp.path().join("etcd.toml"),
        tmp.path().join("etcd-direct.toml"),
    );
    std::fs::write(&through, etcd).unwrap();
    std::fs::write(&straight, direct).unwrap();
    let a = etcd_ops_per_s(&through, &tmp.path().join("through"));
    let b = etcd_ops_per_s(&straight, &tmp.path().join("direct"));
    match (a, b) {
        (Some(a), Some(b)) => println!(
            "etcd: 3 members, 64 clients: {a:.0} ok ops/s with peers through faultline, {b:.0} with peers direct: {:.0}% (target >= 80%)",
            a / b * 100.0
        ),
        _ => println!("etcd: a run failed; figures not measured"),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(proxy_figures());
    drop(rt);
    etcd_figures();
}
