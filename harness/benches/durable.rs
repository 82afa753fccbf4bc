//! The durability layer's cost (`cargo bench -p faultline --bench durable`):
//! fsync-heavy appends through the layer against the plain directory, then
//! the bundled target node's lin-kv throughput with every data directory
//! behind a layer against without. Needs FUSE (root, or fusermount3).

use faultline_durable::Layer;
use std::io::Write;
use std::time::Instant;

const APPENDS: usize = 3000;
const RECORD_BYTES: usize = 512;

/// Appends with an fdatasync after each, as a WAL does: appends per second.
fn appends_per_s(dir: &std::path::Path) -> f64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("wal"))
        .unwrap();
    let record = vec![7u8; RECORD_BYTES];
    let t = Instant::now();
    for _ in 0..APPENDS {
        f.write_all(&record).unwrap();
        f.sync_data().unwrap();
    }
    APPENDS as f64 / t.elapsed().as_secs_f64()
}

/// ok ops/s of a 10 s `faultline test` of the bundled node; `crash` puts
/// every data directory behind a layer (the crash itself is scheduled
/// after the run ends, so only the layer's cost is measured).
fn node_ops_per_s(crash: bool, results: &std::path::Path) -> Option<f64> {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    c.args([
        "test",
        "--time-limit",
        "10",
        "--rate",
        "100000",
        "--concurrency",
        "32",
        "--seed",
        "1",
    ]);
    if crash {
        c.args(["--nemesis", "crash", "--nemesis-interval", "3600"]);
    }
    let out = c.arg("--results-dir").arg(results).output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let dir = std::fs::read_link(results.join("latest")).ok()?;
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join(dir).join("results.json")).ok()?)
            .ok()?;
    Some(r["ops"]["ok"].as_f64()? / 10.0)
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain, backing, mnt) = (
        tmp.path().join("plain"),
        tmp.path().join("backing"),
        tmp.path().join("mnt"),
    );
    for d in [&plain, &backing, &mnt] {
        std::fs::create_dir_all(d).unwrap();
    }
    let layer = match Layer::mount(&backing, &mnt, 64 << 20) {
        Ok(l) => l,
        Err(e) => {
            println!("durable: {e}: not measured");
            return;
        }
    };
    let (p, l) = (appends_per_s(&plain), appends_per_s(&mnt));
    drop(layer);
    println!(
        "durable: {RECORD_BYTES} B appends with fdatasync each: {l:.0}/s through the layer, {p:.0}/s on the plain directory ({:.0}%)",
        l / p * 100.0
    );
    let (with, without) = (
        node_ops_per_s(true, &tmp.path().join("with")),
        node_ops_per_s(false, &tmp.path().join("without")),
    );
    match (with, without) {
        (Some(a), Some(b)) => println!(
            "durable: target node lin-kv, 32 clients: {a:.0} ok ops/s with every data directory behind a layer, {b:.0} without: {:.0}% (target >= 50%)",
            a / b * 100.0
        ),
        _ => println!("durable: a run failed; end-to-end figures not measured"),
    }
}
