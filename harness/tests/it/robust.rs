//! faultline never lies about a run and never leaks: a bad path is refused
//! before anything starts, a closed pipe loses only output, a signal
//! during start-up stops within a second, histories with nothing to judge
//! are `unknown`, dead runs' data directories are removed by the next run,
//! and `check` survives whatever it is fed.

use crate::support::*;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn system_with_binary(dir: &Path, binary: &str) -> std::path::PathBuf {
    let file = dir.join("srv.toml");
    std::fs::write(
        &file,
        format!("name = \"srv\"\nbinary = \"{binary}\"\n[ports]\npeer = 7000\n[ready]\ntcp = \"{{ip}}:{{port.peer}}\"\n[client]\ncommand = [\"true\"]\n"),
    )
    .unwrap();
    file
}

#[test]
fn a_server_binary_path_that_does_not_exist_is_refused_before_a_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for binary in ["/nonexistent/bin/srv", "./relative/srv"] {
        let results = tmp.path().join("results");
        let f = run(
            faultline_test(&results)
                .current_dir(tmp.path())
                .arg("--system")
                .arg(system_with_binary(tmp.path(), binary)),
            LIMIT,
        );
        assert_eq!(f.status.code(), Some(254), "{binary}: {}", f.stderr);
        assert!(f.stderr.contains("does not exist"), "{}", f.stderr);
        assert!(
            f.stderr.contains("srv.toml:2"),
            "names the line: {}",
            f.stderr
        );
        assert!(!results.exists(), "{binary}: no run directory");
    }
}

#[test]
fn a_closed_stdout_loses_only_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = faultline_test(tmp.path())
        .args(["--time-limit", "2"])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // As `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("VALID"), "{first}");
    let status = wait_bounded(&mut child, LIMIT).expect("faultline ends");
    assert_eq!(
        status.code(),
        Some(0),
        "the verdict's code, not a panic's 101"
    );
    let dir = latest(tmp.path());
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    let history = lines(&dir.join("history.jsonl"));
    assert!(
        history.iter().any(|l| l["f"] == "load-end"),
        "the history is whole"
    );
}

#[test]
fn a_signal_during_start_up_stops_within_a_second_and_leaves_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    // A node that never answers init: start-up would wait 60 s.
    let mut child = faultline_test(tmp.path())
        .args([
            "--bin",
            "/bin/sleep",
            "--init-timeout-ms",
            "60000",
            "--",
            "1000",
        ])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: until the run directory exists (start-up has begun).
    let begun = Instant::now();
    while !tmp.path().join("latest").exists() && begun.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("faultline did not stop after SIGINT during start-up");
    });
    assert!(took < Duration::from_secs(2), "stopped in {took:?}");
    assert_eq!(status.code(), Some(255), "an interrupted run");
    let results = read_json(&latest(tmp.path()).join("results.json"));
    assert_eq!(results["interrupted"], true);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("faultline-data-")
        })
        .collect();
    assert!(left.is_empty(), "data directories left: {left:?}");
}

#[test]
fn histories_with_nothing_to_judge_and_interrupted_runs_are_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let nemesis_only = r#"{"index":0,"time":1,"process":"nemesis","type":"info","f":"pause","value":{"nodes":["n1"]}}"#;
    for (name, text) in [
        ("empty", ""),
        ("blank", "\n\n  \n"),
        ("nemesis", nemesis_only),
    ] {
        let file = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let f = run(faultline().arg("check").arg(&file), LIMIT);
        assert_eq!(f.status.code(), Some(2), "{name}: {}{}", f.stdout, f.stderr);
        assert!(
            f.stdout.contains("overall: unknown"),
            "{name}: {}",
            f.stdout
        );
    }
    // A run interrupted before its final reads: its prefix is valid, and
    // that proves nothing.
    let results = tmp.path().join("results");
    let mut child = faultline_test(&results)
        .args(["--time-limit", "30"])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines_seen = BufReader::new(child.stderr.take().unwrap()).lines();
    // Bounded by the child's own end: stderr closes when it exits.
    for line in lines_seen.by_ref().map_while(Result::ok) {
        if line.contains("1/30 s") {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    std::thread::spawn(move || lines_seen.for_each(drop));
    assert_eq!(
        wait_bounded(&mut child, LIMIT).and_then(|s| s.code()),
        Some(255)
    );
    let f = run(faultline().arg("check").arg(latest(&results)), LIMIT);
    assert_eq!(f.status.code(), Some(2), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("interrupted at"), "{}", f.stdout);
    assert!(f.stdout.contains("no final reads"), "{}", f.stdout);
}

#[test]
fn a_dead_runs_data_directory_is_removed_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Named as a run of pid 1 that started at a tick pid 1 never had.
    let dead = tmp.path().join("faultline-data-1-999999999999-AbCdEf");
    std::fs::create_dir_all(dead.join("n1")).unwrap();
    std::fs::write(dead.join("n1/raft.log"), b"old").unwrap();
    let kept = tmp.path().join("faultline-kept-AbCdEf");
    std::fs::create_dir_all(&kept).unwrap();
    let f = run(
        faultline_test(&tmp.path().join("results"))
            .args(["--time-limit", "1"])
            .env("TMPDIR", tmp.path()),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(!dead.exists(), "{}", f.stderr);
    assert!(
        f.stderr.contains("removed a dead run's data directory"),
        "{}",
        f.stderr
    );
    assert!(kept.exists(), "--keep-data directories stay");
}

#[test]
fn empty_fault_lists_and_bad_values_are_refused_naming_the_flag() {
    for list in ["", ",,,", " , "] {
        let f = run(faultline().args(["test", "--nemesis", list]), LIMIT);
        assert_eq!(f.status.code(), Some(254), "{list:?}: {}", f.stderr);
        assert!(
            f.stderr.contains("say `none` for no faults"),
            "{}",
            f.stderr
        );
    }
    let f = run(faultline().args(["test", "--time-limit", "0"]), LIMIT);
    assert_eq!(f.status.code(), Some(254));
    assert!(f.stderr.contains("--time-limit"), "{}", f.stderr);
    assert!(!f.stderr.contains("warmup"), "{}", f.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad_ready.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nbinary = \"/bin/sleep\"\n[ports]\np = 7000\n[ready]\nhttp_get = \"{ip}:{port.p}/health\"\n[client]\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let f = run(faultline().arg("test").arg("--system").arg(&bad), LIMIT);
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(f.stderr.contains("bad_ready.toml:6"), "{}", f.stderr);
    assert!(f.stderr.contains("http://"), "{}", f.stderr);
}

/// Mutations of real histories in every format `check` reads: whatever it
/// is fed, it answers with a verdict (0, 1, 2) or a clear error (254 with
/// the file named), within its time limit, and never panics.
#[test]
fn check_survives_mutated_histories_in_every_format() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench");
    let mut seeds: Vec<(String, String)> = Vec::new();
    for (file, ext) in [
        ("porcupine/test_data/jepsen/etcd_000.log", "log"),
        ("elle/paper-example.edn", "edn"),
    ] {
        if let Ok(t) = std::fs::read_to_string(shared.join(file)) {
            seeds.push((t, ext.into()));
        }
    }
    let jsonl = (0..200)
        .flat_map(|i| {
            let (k, v) = (i % 5, i);
            [
                format!(r#"{{"index":{},"time":{},"process":{},"type":"invoke","f":"write","key":{k},"value":{v}}}"#, 2 * i, 10 * i, i % 7),
                format!(r#"{{"index":{},"time":{},"process":{},"type":"ok","f":"write","key":{k},"value":{v}}}"#, 2 * i + 1, 10 * i + 5, i % 7),
            ]
        })
        .collect::<Vec<_>>()
        .join("\n");
    seeds.push((jsonl, "jsonl".into()));
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(45);
    let (mut cases, mut largest) = (0, 0);
    for case in 0..90 {
        let (text, ext) = &seeds[case % seeds.len()];
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        for _ in 0..rng.gen_range(1..6) {
            if lines.is_empty() {
                break;
            }
            let i = rng.gen_range(0..lines.len());
            match rng.gen_range(0..5) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    lines.insert(rng.gen_range(0..lines.len()), l);
                }
                2 => {
                    let mut b = lines[i].clone().into_bytes();
                    if !b.is_empty() {
                        let at = rng.gen_range(0..b.len());
                        b[at] = rng.gen();
                    }
                    lines[i] = String::from_utf8_lossy(&b).into_owned();
                }
                3 => lines.truncate(i),
                _ => lines[i] = lines[i].repeat(rng.gen_range(2..50)),
            }
        }
        let body = lines.join("\n");
        largest = largest.max(body.len());
        let file = tmp.path().join(format!("case{case}.{ext}"));
        std::fs::write(&file, &body).unwrap();
        let started = Instant::now();
        let f = run(
            faultline().args(["check", "--time-limit", "5"]).arg(&file),
            Duration::from_secs(60),
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "case {case} took {:?}",
            started.elapsed()
        );
        match f.status.code() {
            Some(0..=2) => {}
            Some(254) | Some(255) => assert!(
                f.stderr.contains(&format!("case{case}"))
                    || f.stdout.contains(&format!("case{case}")),
                "case {case}: an error names the file: {}{}",
                f.stdout,
                f.stderr
            ),
            other => panic!("case {case}: exit {other:?}: {}{}", f.stdout, f.stderr),
        }
        cases += 1;
    }
    // The largest resident set of any child this test binary reaped: a
    // bound on every `check` above (and on whatever else ran beside it).
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let max_rss_mb = usage.ru_maxrss / 1024;
    assert!(max_rss_mb < 1024, "a child reached {max_rss_mb} MiB");
    eprintln!(
        "check fuzz: {cases} cases, largest input {largest} bytes, largest child {max_rss_mb} MiB"
    );
}
