//! Clock faults reach servers of every runtime, without a preload: a Go
//! program, a C program linked statically, one linked with jemalloc, a
//! JVM program and a Python one (tests/fixtures/clockkv), each a one-node
//! key-value server that prints its wall and monotonic clocks every 20 ms.
//! Under hand-written clock bumps each stays available, its wall clock
//! moves by the offset the history records (within 10 ms) and back after
//! the heal, and its monotonic clock never moves.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);
/// How far a reading may be from an offset the history records.
const WITHIN_NS: i64 = 10_000_000;

/// Offsets per node in the schedule: distinct, so a reading can only
/// match its own node's.
const BUMPS_MS: [(&str, i64); 3] = [("n1", 3_000), ("n2", -1_500), ("n3", 700)];

fn source(name: &str) -> PathBuf {
    fixture("clockkv").join(name)
}

/// Runs a build command; `None` (with a note) when its tool is missing.
fn build(test: &str, tool: &str, cmd: &mut Command) -> Option<()> {
    let found = faultline_process::clock::which(tool).is_some();
    if !available_or_skip(test, found, tool) {
        return None;
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

/// The server's command (program, leading args) built into `dir`.
fn server(kind: &str, dir: &Path) -> Option<(String, Vec<String>)> {
    let test = format!("clock_runtimes::{kind}");
    let c = source("clockkv.c");
    let out = |n: &str| dir.join(n).display().to_string();
    match kind {
        "c-static" => {
            build(
                &test,
                "gcc",
                Command::new("gcc")
                    .args(["-O2", "-static", "-o"])
                    .arg(out("kv-static"))
                    .arg(&c),
            )?;
            Some((out("kv-static"), vec![]))
        }
        "c-jemalloc" => {
            let jemalloc = Path::new("/usr/lib/x86_64-linux-gnu/libjemalloc.so");
            if !available_or_skip(&test, jemalloc.exists(), "libjemalloc-dev") {
                return None;
            }
            build(
                &test,
                "gcc",
                Command::new("gcc")
                    .args(["-O2", "-o"])
                    .arg(out("kv-jemalloc"))
                    .arg(&c)
                    .arg("-ljemalloc"),
            )?;
            Some((out("kv-jemalloc"), vec![]))
        }
        "go" => {
            let src = dir.join("go");
            std::fs::create_dir_all(&src).unwrap();
            for f in ["main.go", "empty.s", "go.mod"] {
                std::fs::copy(source(f), src.join(f)).unwrap();
            }
            build(
                &test,
                "go",
                Command::new("go")
                    .args(["build", "-o"])
                    .arg(out("kv-go"))
                    .arg(".")
                    .current_dir(&src)
                    .env("CGO_ENABLED", "0")
                    .env("GOCACHE", dir.join("gocache"))
                    .env("GOPATH", dir.join("gopath"))
                    .env("GOFLAGS", "-mod=mod"),
            )?;
            Some((out("kv-go"), vec![]))
        }
        "jvm" => {
            build(
                &test,
                "javac",
                Command::new("javac")
                    .arg("-d")
                    .arg(dir)
                    .arg(source("ClockKv.java")),
            )?;
            let java = "java".to_string();
            let args = ["-Xshare:auto", "-XX:TieredStopAtLevel=1", "-Xmx128m", "-cp"];
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.extend([dir.display().to_string(), "ClockKv".into()]);
            Some((java, a))
        }
        "python" => Some((
            "python3".into(),
            vec![source("clockkv.py").display().to_string()],
        )),
        _ => unreachable!("{kind}"),
    }
}

/// A system file for the server, written beside it; `user` runs it as
/// another user.
fn system_file(
    dir: &Path,
    kind: &str,
    (program, lead): (String, Vec<String>),
    user: Option<&str>,
) -> PathBuf {
    let mut args: Vec<String> = lead.into_iter().map(|a| format!("{a:?}")).collect();
    args.extend(["\"{ip}\"".into(), "\"{port.client}\"".into()]);
    let adapter = fixture("pykv_adapter.py").display().to_string();
    let user = user.map(|u| format!("user = {u:?}\n")).unwrap_or_default();
    let text = format!(
        r#"name = "clockkv-{kind}"
binary = {program:?}
args = [{args}]
{user}
[ports]
client = 7300

[ready]
tcp = "{{ip}}:{{port.client}}"
timeout_ms = 30000

[client]
command = ["python3", {adapter:?}, "{{ip}}:{{port.client}}", "--to-primary", "{{nodes}}", "{{port.client}}"]

[stop]
signal = "KILL"
"#,
        args = args.join(", ")
    );
    let path = dir.join(format!("clockkv-{kind}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn schedule(dir: &Path) -> PathBuf {
    // One node at a time: a bump ends (reset-clock) before the next.
    let mut steps = Vec::new();
    for (k, (n, ms)) in BUMPS_MS.iter().enumerate() {
        let at = 1_000 + 1_300 * k as u64;
        steps.push(format!(
            r#"{{"at_ms":{at},"action":{{"f":"clock-bump","nodes":["{n}"],"delta_ms":{ms}}}}}"#
        ));
        steps.push(format!(
            r#"{{"at_ms":{},"action":{{"f":"reset-clock"}}}}"#,
            at + 1_000
        ));
    }
    let path = dir.join("bumps.json");
    std::fs::write(&path, format!("[{}]", steps.join(","))).unwrap();
    path
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC here: the same for every process of
/// the machine while nobody steps the clock.
fn realtime_minus_monotonic_ns() -> i64 {
    let read = |c| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime into a local.
        unsafe { libc::clock_gettime(c, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

/// Each `clock WALL MONO` line of a log: (wall - mono - base, mono).
fn readings(log: &Path, base: i64) -> Vec<(i64, i64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("clock ")?.split_whitespace();
            let wall: i64 = w.next()?.parse().ok()?;
            let mono: i64 = w.next()?.parse().ok()?;
            Some((wall - mono - base, mono))
        })
        .collect()
}

fn runs_skewed(kind: &str, user: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(cmd) = server(kind, tmp.path()) else {
        return;
    };
    if user.is_some() {
        // The other user must reach the built server.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("a+rX")
            .arg(tmp.path())
            .status();
    }
    let system = system_file(tmp.path(), kind, cmd, user);
    let results = tmp.path().join("results");
    let base_before = realtime_minus_monotonic_ns();
    let mono_before = mono_now();
    let f = run(
        faultline_test(&results)
            .env("TMPDIR", tmp.path())
            .arg("--system")
            .arg(&system)
            .args(["--node-count", "3", "--time-limit", "6", "--rate", "50"])
            .args(["--recovery-time", "1", "--nemesis", "clock", "--schedule"])
            .arg(schedule(tmp.path())),
        LIMIT,
    );
    let mono_after = mono_now();
    assert_eq!(f.status.code(), Some(0), "{kind}: {}{}", f.stdout, f.stderr);
    let base = realtime_minus_monotonic_ns();
    assert!(
        (base - base_before).abs() < 5_000_000,
        "the machine's clock was stepped meanwhile"
    );
    let dir = latest(&results);
    let h = lines(&dir.join("history.jsonl"));
    let ok = h.iter().filter(|e| e["type"] == "ok").count();
    assert!(ok >= 50, "{kind}: only {ok} ops acknowledged");
    for (node, ms) in BUMPS_MS {
        let bump = h
            .iter()
            .find(|e| e["f"] == "clock-bump" && e["value"]["nodes"][0] == node)
            .unwrap_or_else(|| panic!("{kind}: no bump of {node}"));
        assert_eq!(bump["value"]["delta_ms"], ms);
        let reached = &bump["value"]["reached"][node];
        assert!(
            reached.as_array().is_some_and(|a| !a.is_empty()),
            "{kind}: the bump of {node} reached no process: {bump}"
        );
        let r = readings(&dir.join("nodes").join(format!("{node}.log")), base);
        assert!(r.len() >= 100, "{kind} {node}: {} readings", r.len());
        let offset = ms * 1_000_000;
        for &(d, mono) in &r {
            assert!(
                d.abs() <= WITHIN_NS || (d - offset).abs() <= WITHIN_NS,
                "{kind} {node}: wall clock {d} ns off, neither 0 nor the recorded {offset}"
            );
            assert!(
                (mono_before..=mono_after).contains(&mono),
                "{kind} {node}: monotonic {mono} outside the run"
            );
        }
        assert!(
            r.iter().any(|&(d, _)| (d - offset).abs() <= WITHIN_NS),
            "{kind} {node}: never skewed"
        );
        assert!(
            r.first().unwrap().0.abs() <= WITHIN_NS,
            "{kind} {node}: skewed from the start"
        );
        assert!(
            r.last().unwrap().0.abs() <= WITHIN_NS,
            "{kind} {node}: not back after the heal"
        );
        // Monotonic readings only go forward, in small steps: no skew moved them.
        for w in r.windows(2) {
            let step = w[1].1 - w[0].1;
            assert!(
                (0..1_000_000_000).contains(&step),
                "{kind} {node}: monotonic stepped {step} ns"
            );
        }
    }
    assert!(h.iter().any(|e| e["f"] == "reset-clock"));
    if let Some(u) = user {
        let log = std::fs::read_to_string(dir.join("nodes").join("n1.log")).unwrap();
        assert!(!log.is_empty(), "{kind} as {u}");
    }
    no_traced_or_stopped_leftovers(&dir);
}

fn mono_now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// After the run, none of its processes is left, traced or not.
fn no_traced_or_stopped_leftovers(dir: &Path) {
    let pids = node_pids(dir);
    assert!(
        survivors(&pids, Duration::from_secs(5)).is_empty(),
        "node processes outlived the run"
    );
}

#[test]
fn a_go_server_is_skewed() {
    runs_skewed("go", None);
}

#[test]
fn a_static_c_server_is_skewed() {
    runs_skewed("c-static", None);
}

#[test]
fn a_jemalloc_server_is_skewed_as_its_own_user() {
    runs_skewed("c-jemalloc", Some("nobody"));
}

#[test]
fn a_jvm_server_is_skewed() {
    runs_skewed("jvm", None);
}

#[test]
fn a_python_server_is_skewed() {
    runs_skewed("python", None);
}

/// A node restarted while its clock is skewed reads the skewed clock from
/// its first read on: the program (behind faultline's `unshare` wrapper)
/// is patched before its first instruction.
#[test]
fn a_restarted_server_is_skewed_from_its_first_read() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(cmd) = server("c-static", tmp.path()) else {
        return;
    };
    let system = system_file(tmp.path(), "c-static", cmd, None);
    let schedule = tmp.path().join("restart.json");
    std::fs::write(
        &schedule,
        r#"[{"at_ms":1000,"action":{"f":"clock-bump","nodes":["n2"],"delta_ms":5000}},
            {"at_ms":1500,"action":{"f":"kill","nodes":["n2"]}},
            {"at_ms":2000,"action":{"f":"restart","nodes":["n2"]}},
            {"at_ms":3500,"action":{"f":"reset-clock"}}]"#,
    )
    .unwrap();
    let results = tmp.path().join("results");
    let f = run(
        faultline_test(&results)
            .env("TMPDIR", tmp.path())
            .arg("--system")
            .arg(&system)
            .args(["--node-count", "3", "--time-limit", "5", "--rate", "50"])
            .args([
                "--recovery-time",
                "1",
                "--nemesis",
                "clock,kill",
                "--schedule",
            ])
            .arg(&schedule),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    // The agent's log says so: each image patched at its exec.
    let agent_log =
        std::fs::read_to_string(latest(&results).join("nodes").join("clock-agent.log")).unwrap();
    let at_exec = agent_log
        .lines()
        .filter(|l| l.starts_with("attached n2 ") && l.ends_with("kv-static at-exec"));
    assert_eq!(at_exec.count(), 2, "{agent_log}");
    let base = realtime_minus_monotonic_ns();
    let log = std::fs::read_to_string(latest(&results).join("nodes").join("n2.log")).unwrap();
    let second = log
        .match_indices("=== faultline:")
        .nth(1)
        .map(|(i, _)| i)
        .expect("n2 was restarted");
    let path = tmp.path().join("second.log");
    std::fs::write(&path, &log[second..]).unwrap();
    let r = readings(&path, base);
    assert!(r.len() >= 10, "{} readings after the restart", r.len());
    let first = r[0].0;
    assert!(
        (first - 5_000_000_000).abs() <= WITHIN_NS,
        "the restarted server's first wall clock read was {first} ns off, not the +5 s in force"
    );
}
