//! `cargo bench -p faultline --bench throughput`: end-to-end lin-kv
//! throughput through faultline with 5 bundled Raft nodes writing durably
//! (fsync-batched WAL in each node's data dir), at two client counts.

use std::process::Command;

fn main() {
    let seconds = 8;
    for clients in [50, 200] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "test",
                "--time-limit",
                &seconds.to_string(),
                "--rate",
                "50000",
                "--key-count",
                "100",
                "--timeout-ms",
                "5000",
            ])
            .args([
                "--concurrency",
                &clients.to_string(),
                "--seed",
                "1",
                "--results-dir",
            ])
            .arg(dir.path())
            .output()
            .expect("faultline runs");
        let results: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("latest/results.json")).expect("results.json"),
        )
        .unwrap();
        let ops = &results["ops"];
        let done = ops["ok"].as_u64().unwrap() + ops["fail"].as_u64().unwrap();
        println!(
            "{clients:>3} clients: {:.0} completed ops/s ({:.0} ok/s), verdict {}, checker {:.0} ms for {} ops (exit {:?})",
            done as f64 / seconds as f64,
            ops["ok"].as_u64().unwrap() as f64 / seconds as f64,
            results["verdict"],
            results["checkers"]["linearizability"]["elapsed_ms"].as_f64().unwrap_or(0.0),
            ops["invoked"],
            out.status.code()
        );
    }
}
