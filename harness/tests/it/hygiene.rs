//! Signals to the harness never leave a node process alive, and a killed
//! harness leaves a history that parses up to its last line.

use crate::support::*;
use faultline_checker::{parse_history, Format};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

fn long_run(results: &std::path::Path) -> std::process::Command {
    let mut c = faultline();
    c.arg("test")
        .arg("--results-dir")
        .arg(results)
        .args(["--time-limit", "60", "--rate", "300"])
        // The nodes' data directories go under the test's own temporary
        // directory: a harness killed by SIGKILL cannot remove them.
        .env("TMPDIR", results);
    c
}

fn signal_leaves_no_survivors(sig: Signal, expect_clean_exit: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, _lines) =
        start_until_nodes_up(&mut long_run(tmp.path()), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let dir = latest(tmp.path());
    let pids = node_pids(&dir);
    assert_eq!(pids.len(), 5, "five nodes started");
    assert!(pids.iter().all(|&p| alive(p)));
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let left = survivors(&pids, Duration::from_secs(5));
    reap(&left);
    assert!(left.is_empty(), "nodes {left:?} survived {sig}");
    let status = status.unwrap_or_else(|| panic!("harness did not exit after {sig}"));
    if expect_clean_exit {
        assert_eq!(status.code(), Some(255), "interrupted runs exit 255");
        let results = read_json(&dir.join("results.json"));
        assert_eq!(results["interrupted"], true);
    }
    // Whatever the signal, every complete history line parses.
    let text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let (_, ops) = parse_history("history.jsonl", &text, Some(Format::Jsonl)).unwrap();
    assert!(!ops.is_empty());
}

#[test]
fn sigint_leaves_no_node_alive() {
    signal_leaves_no_survivors(Signal::SIGINT, true);
}

#[test]
fn sigterm_leaves_no_node_alive() {
    signal_leaves_no_survivors(Signal::SIGTERM, true);
}

#[test]
fn sigkill_of_the_harness_leaves_no_node_alive_and_a_parseable_history() {
    signal_leaves_no_survivors(Signal::SIGKILL, false);
}

#[test]
fn a_panic_in_the_harness_leaves_no_node_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        long_run(tmp.path()).env("FAULTLINE_PANIC_AFTER_INIT", "1"),
        Duration::from_secs(60),
    );
    assert!(!f.status.success());
    assert!(
        f.stderr.contains("panicking with 5 nodes up"),
        "{}",
        f.stderr
    );
    let pids = node_pids(&latest(tmp.path()));
    assert_eq!(pids.len(), 5);
    let left = survivors(&pids, Duration::from_secs(5));
    reap(&left);
    assert!(left.is_empty(), "nodes {left:?} survived a panic");
}

/// `faultline doctor` says what this host offers; with an empty PATH, and
/// under `strace -f` (which takes ptrace, so clocks cannot be skewed), it
/// names what each missing thing leaves out and how to get it (nothing is
/// uninstalled to test it).
#[test]
fn doctor_names_what_a_missing_prerequisite_leaves_out() {
    let f = run(faultline().arg("doctor"), Duration::from_secs(60));
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    for line in [
        "clock skew",
        "FUSE mount",
        "unshare",
        "loopback addresses",
        "--system etcd",
        "--system galera",
    ] {
        assert!(f.stdout.contains(line), "{line}: {}", f.stdout);
    }
    let empty = tempfile::tempdir().unwrap();
    assert!(f.stdout.contains("ok       clock skew"), "{}", f.stdout);
    let f = run(
        faultline().arg("doctor").env("PATH", empty.path()),
        Duration::from_secs(60),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let out = &f.stdout;
    assert!(out.contains("MISSING  unshare"), "{out}");
    assert!(out.contains("get it: apt-get install util-linux"), "{out}");
    assert!(out.contains("MISSING  --system nats"), "{out}");
    assert!(out.contains("get it: apt-get install nats-server"), "{out}");
    assert!(out.contains("ok       loopback addresses"), "{out}");
    let strace = std::path::Path::new("/usr/bin/strace");
    if available_or_skip("doctor_names_what_a_missing", strace.exists(), "strace") {
        let f = run(
            std::process::Command::new(strace)
                .args(["-f", "-qq", "-e", "trace=none", "-o", "/dev/null"])
                .arg(env!("CARGO_BIN_EXE_faultline"))
                .arg("doctor"),
            Duration::from_secs(60),
        );
        let out = &f.stdout;
        assert!(out.contains("MISSING  clock skew"), "{out}");
        assert!(out.contains("PTRACE_SEIZE"), "{out}");
        assert!(out.contains("leaves out: the clock nemesis"), "{out}");
    }
}
