//! The report of a long run: a synthetic 100k-op run (5 nodes, 10 clients,
//! 100 s, a fault every 2 s, 300k journal lines, a stale read near the end)
//! is written to a temporary run directory; we time `report::write`,
//! measure the file, and, where Chromium is installed, time how long the
//! page takes to open and draw (the script's own `data-draw-ms`, measured
//! from navigation start). Targets: under 10 MB, open in under 2 s.
//!
//! `cargo bench -p faultline --bench report`

use serde_json::json;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;

const OPS: u64 = 100_000;
const CLIENTS: u64 = 10;
const RUN_NS: u64 = 100_000_000_000;

fn synthesize(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("nodes")).unwrap();
    let mut h = String::new();
    let mut index = 0u64;
    let per_client = OPS / CLIENTS;
    let slot = RUN_NS / per_client;
    let mut lines: Vec<(u64, String)> = Vec::new();
    for c in 0..CLIENTS {
        for i in 0..per_client {
            let t = i * slot + c * 997;
            let key = (i + c) % 5;
            let (f, v) = if i % 3 == 0 {
                ("write", json!(i))
            } else {
                ("read", json!(null))
            };
            lines.push((
                t,
                json!({"process": c, "type": "invoke", "f": f, "key": key, "value": v}).to_string(),
            ));
            let kind = if i % 50 == 0 {
                "info"
            } else if i % 20 == 0 {
                "fail"
            } else {
                "ok"
            };
            if kind != "info" {
                let lat = 300_000 + (i * 7919 % 5_000_000);
                let out = if f == "read" {
                    json!(i.saturating_sub(2))
                } else {
                    v
                };
                lines.push((
                    t + lat,
                    json!({"process": c, "type": kind, "f": f, "key": key, "value": out,
                           "node": format!("n{}", c % 5 + 1), "latency_ns": lat})
                    .to_string(),
                ));
            }
        }
    }
    let mut t = 1_000_000_000;
    while t < RUN_NS {
        lines.push((t, json!({"process": "nemesis", "type": "info", "f": "start-partition", "value": {"shape": "halves", "cut": [["n1","n3"],["n3","n1"]]}}).to_string()));
        lines.push((
            t + 1_000_000_000,
            json!({"process": "nemesis", "type": "info", "f": "stop-partition", "value": {}})
                .to_string(),
        ));
        t += 2_000_000_000;
    }
    lines.sort_by_key(|l| l.0);
    for (t, l) in &lines {
        // Splice index and time in front of the other fields.
        let _ = writeln!(h, r#"{{"index":{index},"time":{t},{}"#, &l[1..]);
        index += 1;
    }
    std::fs::write(dir.join("history.jsonl"), h).unwrap();
    let mut m = std::io::BufWriter::new(std::fs::File::create(dir.join("messages.jsonl")).unwrap());
    for i in 0..300_000u64 {
        let (a, b) = (i % 5 + 1, (i / 5) % 5 + 1);
        let _ = writeln!(
            m,
            r#"{{"time":{},"src":"n{a}","dest":"n{b}","type":"raft","msg_id":null,"in_reply_to":null,"fate":"{}","delay_us":{}}}"#,
            i * (RUN_NS / 300_000),
            if i % 17 == 0 { "cut" } else { "delivered" },
            200 + i % 900
        );
    }
    m.flush().unwrap();
    let t_read = RUN_NS - 5_000_000_000;
    let op = |i: u64, f: &str, v: u64, t: u64| json!({"index": i, "complete_index": i + 1, "process": "3", "f": f, "key": "2", "input": v, "output": v, "outcome": "ok", "invoke_time": t, "complete_time": t + 1_000_000});
    let results = json!({
        "verdict": "invalid",
        "summary": "linearizability violated: key 2: stale-read",
        "checkers": {"linearizability": {"verdict": "invalid", "ops": OPS, "partitions": 5, "elapsed_ms": 12.0,
            "anomaly": {"key": "2", "kind": "stale-read", "summary": "key 2: stale-read", "explanation": "synthetic",
                "ops": [op(10, "write", 1, t_read - 60_000_000), op(20, "write", 2, t_read - 30_000_000), op(30, "read", 1, t_read)],
                "state_before": null, "linearized_prefix": null, "prefix_tail": [],
                "blocked": op(30, "read", 1, t_read)}}},
        "ops": {"invoked": OPS, "ok": OPS * 9 / 10, "fail": OPS / 20, "info": OPS / 50},
        "network": {"routed": 300_000},
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec(&results).unwrap(),
    )
    .unwrap();
    let options = faultline::options::TestOptions {
        name: Some("bench".into()),
        seed: Some(1),
        time_limit: 100.0,
        nemesis: "partition".into(),
        ..Default::default()
    };
    let run = faultline_rundir::RunDir::open(dir);
    run.store_config(&options.validate().unwrap()).unwrap();
    for n in 1..=5 {
        let mut log = String::new();
        for i in 0..1000 {
            let _ = writeln!(log, "n{n} line {i}");
        }
        std::fs::write(dir.join(format!("nodes/n{n}.log")), log).unwrap();
    }
}

fn chromium_draw_ms(page: &std::path::Path) -> Option<(u64, f64)> {
    use std::os::unix::process::CommandExt;
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let profile = tempfile::tempdir().ok()?;
    let started = Instant::now();
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let pgid = child.id() as i32;
    let out = child.stdout.take()?;
    let reader = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().ok()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    let dom = reader.join().ok()?;
    let at = dom.find("data-draw-ms=\"")? + "data-draw-ms=\"".len();
    let ms: u64 = dom[at..].split('"').next()?.parse().ok()?;
    Some((ms, wall))
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    synthesize(&dir);
    let t = Instant::now();
    faultline_report::write(&faultline_rundir::RunDir::open(&dir)).unwrap();
    let gen_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(dir.join("report.html")).unwrap().len();
    println!(
        "report of a {OPS}-op run: written in {gen_s:.2} s, {:.2} MB (target < 10 MB)",
        size as f64 / 1e6
    );
    for round in 1..=3 {
        match chromium_draw_ms(&dir.join("report.html")) {
            Some((ms, wall)) => println!(
                "  open #{round} in headless Chromium: drawn {ms} ms after navigation start (target < 2000 ms); whole browser run {wall:.2} s"
            ),
            None => {
                println!("  chromium not installed or the page did not draw: open time not measured");
                break;
            }
        }
    }
}
