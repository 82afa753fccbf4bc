//! Helpers: run the binary with a hard deadline, find a run's node pids,
//! tell whether a pid is still alive.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// `faultline test` writing its runs under `results`.
pub fn faultline_test(results: &Path) -> Command {
    let mut c = faultline();
    c.arg("test").arg("--results-dir").arg(results);
    c
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs to completion or panics after `limit` (killing the child first).
pub fn run(cmd: &mut Command, limit: Duration) -> Finished {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("faultline did not finish within {limit:?}");
    });
    Finished {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn drain(r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(r), &mut s);
        s
    })
}

pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Starts faultline and returns once its stderr says the nodes are up.
pub fn start_until_nodes_up(cmd: &mut Command, limit: Duration) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("nodes up") => return (child, rx),
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nodes did not come up within {limit:?}");
            }
        }
    }
}

/// The only run directory under `results` (following results/latest).
pub fn latest(results: &Path) -> PathBuf {
    std::fs::canonicalize(results.join("latest")).expect("results/latest exists")
}

/// Pids of every node incarnation a run started, from the header lines the
/// harness writes (unbuffered) into nodes/<id>.log before anything else.
pub fn node_pids(run_dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(run_dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(rest) = line.split_once(" started as pid ").map(|(_, r)| r) {
                if let Some(pid) = rest.split_whitespace().next().and_then(|p| p.parse().ok()) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// Alive means the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Waits (bounded) until none of `pids` is alive; returns the survivors.
pub fn survivors(pids: &[i32], limit: Duration) -> Vec<i32> {
    let end = Instant::now() + limit;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills survivors so a failing test does not leak processes.
pub fn reap(pids: &[i32]) {
    for &p in pids {
        if alive(p) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The JSON lines of a file (history, journal), skipping any that do not parse.
pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether a test's outside requirement is here; without it the test says
/// so and passes, except in CI (`CI` set), where `.ci/run` installs it.
pub fn available_or_skip(test: &str, found: bool, what: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {what} is missing in CI"
        );
        eprintln!("SKIPPED {test}: {what} is missing");
    }
    found
}

/// FUSE for the durability layer (root mounts it directly).
pub fn fuse_or_skip(test: &str) -> bool {
    available_or_skip(test, Path::new("/dev/fuse").exists(), "/dev/fuse")
}

/// Durability layers still mounted under `dir` (a test's runs keep their
/// data there with `TMPDIR=dir`; other tests' mounts are not counted).
pub fn layers_left_under(dir: &Path) -> Vec<String> {
    let ours = dir.display().to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("faultline-durable") && l.contains(&ours))
        .map(String::from)
        .collect()
}

/// A hand-written schedule (`--schedule`) saved as `dir/schedule.json`.
pub fn schedule_file(dir: &Path, steps_json: &str) -> PathBuf {
    let file = dir.join("schedule.json");
    std::fs::write(&file, steps_json).unwrap();
    file
}

/// The nemesis records named `f` in a run's history.
pub fn nemesis_ops(run_dir: &Path, f: &str) -> Vec<serde_json::Value> {
    lines(&run_dir.join("history.jsonl"))
        .into_iter()
        .filter(|l| l["process"] == "nemesis" && l["f"] == f)
        .collect()
}
