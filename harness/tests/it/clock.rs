//! Clock skew reaches a real tokio node (the bundled target node) through
//! its patched vDSO, the clock nemesis records what it did and whom it
//! reached, a host that cannot skew refuses plainly, and an overloaded
//! node answers slowly.

use crate::support::*;
use faultline_process::vdso;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One bundled node, driven over stdin/stdout.
struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl Node {
    fn start(data_dir: &std::path::Path) -> Node {
        let mut child = faultline()
            .args(["__target-node", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            stdin,
            lines,
            next_id: 1,
        }
    }

    /// Sends `body` from client c1 and waits (bounded) for its reply.
    fn call(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["msg_id"] = json!(id);
        let msg = json!({"src": "c1", "dest": "n1", "body": body});
        writeln!(self.stdin, "{msg}").unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["dest"] == "c1" && v["body"]["in_reply_to"] == id {
                return v["body"].clone();
            }
        }
        panic!("no reply to {body} within 10 s");
    }

    /// The node's wall clock minus ours, and its monotonic reading.
    fn skew_ms(&mut self) -> (i64, i64) {
        let before = now_ms();
        let r = self.call(json!({"type": "clock"}));
        let after = now_ms();
        assert_eq!(r["type"], "clock_ok", "{r}");
        let wall = r["wall_ms"].as_i64().unwrap();
        (
            wall - (before + after) / 2,
            r["monotonic_ms"].as_i64().unwrap(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_tokio_node_reads_the_skewed_wall_clock_and_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(tmp.path());
    let r = node.call(json!({"type": "init", "node_id": "n1", "node_ids": ["n1"]}));
    assert_eq!(r["type"], "init_ok");
    let pid = node.child.id();
    let data = vdso::attach(pid, 0).unwrap().data;

    let (d0, m0) = node.skew_ms();
    assert!(d0.abs() < 500, "unskewed clock is {d0} ms off");
    // A bump forward, then back: each read reflects the offset at once.
    vdso::set_offset(pid, data, 120_000_000_000).unwrap();
    let (d1, _) = node.skew_ms();
    assert!(
        (d1 - 120_000).abs() < 500,
        "bumped +120 s, node is {d1} ms off"
    );
    vdso::set_offset(pid, data, -30_000_000_000).unwrap();
    let (d2, m2) = node.skew_ms();
    assert!(
        (d2 + 30_000).abs() < 500,
        "bumped -30 s, node is {d2} ms off"
    );
    // Only the wall clock moves: monotonic time went forward, by about the
    // real time elapsed, not by the skew.
    assert!(m2 >= m0 && m2 - m0 < 10_000, "monotonic {m0} -> {m2}");
    // Its timers still run (the single node elects itself, commits, reads).
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let w = node.call(json!({"type": "write", "key": 1, "value": 7}));
        if w["type"] == "write_ok" {
            break;
        }
        assert!(Instant::now() < end, "no write succeeded under skew: {w}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = node.call(json!({"type": "read", "key": 1}));
    assert_eq!(r["value"], 7, "{r}");
    vdso::set_offset(pid, data, 0).unwrap();
    assert!(node.skew_ms().0.abs() < 500);
}

#[test]
fn the_clock_nemesis_skews_named_nodes_and_the_correct_node_stays_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        faultline_test(tmp.path()).args([
            "--time-limit",
            "8",
            "--rate",
            "200",
            "--nemesis",
            "clock",
            "--nemesis-interval",
            "1",
            "--seed",
            "4",
            "--recovery-time",
            "1",
        ]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let h = lines(&latest(tmp.path()).join("history.jsonl"));
    let clock_ops: Vec<&Value> = h
        .iter()
        .filter(|e| e["process"] == "nemesis")
        .filter(|e| e["f"].as_str().unwrap().contains("clock"))
        .collect();
    assert!(clock_ops.len() >= 4, "{clock_ops:?}");
    for op in &clock_ops {
        let nodes = op["value"]["nodes"].as_array().unwrap();
        assert!(!nodes.is_empty(), "every clock fault names its nodes: {op}");
        match op["f"].as_str().unwrap() {
            "clock-bump" | "clock-strobe" => assert!(op["value"]["delta_ms"].is_i64()),
            "clock-drift" => assert!(op["value"]["rate"].is_f64()),
            "reset-clock" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(clock_ops.last().unwrap()["f"], "reset-clock");
    // Each fault says which processes of its nodes it reached: every node
    // runs one process, and each skewed node's was reached.
    for op in clock_ops.iter().filter(|op| op["f"] != "reset-clock") {
        for n in op["value"]["nodes"].as_array().unwrap() {
            let pids = &op["value"]["reached"][n.as_str().unwrap()];
            assert_eq!(pids.as_array().map(Vec::len), Some(1), "{op}");
        }
    }
    // Nothing is left traced, stopped or running.
    let pids = node_pids(&latest(tmp.path()));
    assert!(!pids.is_empty());
    assert!(survivors(&pids, Duration::from_secs(5)).is_empty());
}

/// The nodes' trace events of a run, as (time ns, node, event, term).
fn leader_traces(dir: &std::path::Path) -> Vec<(u64, String, u64)> {
    lines(&dir.join("traces.jsonl"))
        .into_iter()
        .filter(|t| t["event"] == "leader")
        .map(|t| {
            let time = t["time"].as_u64().unwrap();
            (
                time,
                t["node"].as_str().unwrap().to_string(),
                t["term"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A stranding fires at an `on-lease` moment and cuts off that moment's
/// leader, one elected at least 200 ms before, while its clock is set
/// back. A leader whose lease trusts its wall clock (`lease-no-bound`)
/// then answers stale reads; the correct lease node, which measures its
/// lease on a monotonic clock, stays valid under the same faults.
#[test]
fn a_stranded_leader_is_a_settled_one_and_a_wall_clock_lease_is_caught() {
    let strand = |bug_or_mode: [&str; 2], results: &std::path::Path| {
        let mut c = faultline_test(results);
        c.args(["--time-limit", "12", "--nemesis", "strand", "--seed", "2"])
            .args(["--recovery-time", "1", "--"])
            .args(bug_or_mode);
        run(&mut c, LIMIT)
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = strand(["--bug", "lease-no-bound"], tmp.path());
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("stale-read"), "{}", f.stdout);
    let dir = latest(tmp.path());
    let h = lines(&dir.join("history.jsonl"));
    let leaders = leader_traces(&dir);
    let strands: Vec<&Value> = h.iter().filter(|e| e["f"] == "strand").collect();
    assert!(!strands.is_empty(), "a stranding applied");
    for e in &strands {
        let v = &e["value"];
        assert!(
            v["delta_ms"].as_i64().unwrap() < 0,
            "the clock steps back: {e}"
        );
        let m = &v["moment"];
        if !m["fallback"].is_null() {
            continue;
        }
        assert_eq!(m["on"], "on-lease", "{e}");
        assert_eq!(v["nodes"], json!([m["node"]]), "the moment's leader: {e}");
        let (node, term) = (m["node"].as_str().unwrap(), m["term"].as_u64());
        let fired_ns = m["event_ns"].as_u64().unwrap();
        let elected = leaders
            .iter()
            .rev()
            .find(|(t, n, _)| n == node && *t <= fired_ns)
            .expect("the stranded leader was elected first");
        assert!(
            fired_ns - elected.0 >= 200_000_000,
            "{node} had led {} ms (term {term:?}): {e}",
            (fired_ns - elected.0) / 1_000_000
        );
    }
    let ends = h.iter().filter(|e| e["f"] == "unstrand").count();
    assert!(
        ends >= strands.len().saturating_sub(1),
        "each stranding ends"
    );
    let tmp = tempfile::tempdir().unwrap();
    let f = strand(["--read-mode", "lease"], tmp.path());
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
}

/// Once a member was replaced, the places a schedule names are held by
/// other nodes, but a stranding's leader is a node: its own clock is set
/// back, not the clock of whoever holds the place with its index. (Seed
/// 17's replace puts n6 in n1's place, so every member's index names
/// another member's place; the leader used to stay on true time, cut
/// off, and its lease ran out before anyone read from it.)
#[test]
fn a_stranding_after_a_member_left_sets_back_the_leaders_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let strand = |at_ms: u64| {
        format!(
            r#"{{"at_ms":{at_ms},"action":{{"f":"strand","delta_ms":-30000}},"on":{{"moment":"on-lease","within_ms":1000}}}},
               {{"at_ms":{},"action":{{"f":"unstrand"}}}}"#,
            at_ms + 2500
        )
    };
    let schedule = schedule_file(
        tmp.path(),
        &format!(
            r#"[{{"at_ms":1000,"action":{{"f":"member-replace","seed":17}}}},
                {{"at_ms":2000,"action":{{"f":"membership-settled"}}}},
                {},{},{}]"#,
            strand(3000),
            strand(6000),
            strand(9000)
        ),
    );
    let f = run(
        faultline_test(tmp.path())
            .args(["--time-limit", "12", "--nemesis", "strand,membership"])
            .args(["--recovery-time", "1", "--schedule"])
            .arg(&schedule)
            .args(["--", "--bug", "lease-no-bound"]),
        LIMIT,
    );
    let dir = latest(tmp.path());
    let replaced = nemesis_ops(&dir, "member-replace");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    let members = &replaced[0]["value"]["members"];
    assert_eq!(
        members,
        &json!(["n2", "n3", "n4", "n5", "n6"]),
        "{replaced:?}"
    );
    let strands = nemesis_ops(&dir, "strand");
    let aimed: Vec<&Value> = strands
        .iter()
        .filter(|e| e["value"]["moment"]["fallback"].is_null())
        .collect();
    assert!(
        !aimed.is_empty(),
        "no stranding met its moment: {strands:?}"
    );
    for e in &aimed {
        let (v, leader) = (&e["value"], &e["value"]["moment"]["node"]);
        assert_eq!(v["nodes"], json!([leader]), "the moment's leader: {e}");
        let pids = &v["reached"][leader.as_str().unwrap()];
        assert!(pids.as_array().is_some_and(|p| !p.is_empty()), "{e}");
    }
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("stale-read"), "{}", f.stdout);
}

/// Where ptrace is not allowed (here: faultline itself runs under
/// `strace -f`, which traces every process it starts, so nobody else may)
/// a named clock fault is refused before anything starts, and `all`
/// leaves clock out and says why in test.json.
#[test]
fn a_host_that_cannot_skew_refuses_plainly() {
    let strace = std::path::Path::new("/usr/bin/strace");
    if !available_or_skip(
        "a_host_that_cannot_skew_refuses_plainly",
        strace.exists(),
        "strace",
    ) {
        return;
    }
    let under_strace = |results: &std::path::Path, nemesis: &str| {
        let mut c = Command::new(strace);
        c.args(["-f", "-qq", "-e", "trace=none", "-o", "/dev/null"])
            .arg(env!("CARGO_BIN_EXE_faultline"))
            .args(["test", "--results-dir"])
            .arg(results)
            .args([
                "--time-limit",
                "2",
                "--nemesis",
                nemesis,
                "--node-count",
                "3",
            ]);
        run(&mut c, LIMIT)
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = under_strace(tmp.path(), "clock");
    assert_eq!(f.status.code(), Some(254), "{}{}", f.stdout, f.stderr);
    assert!(f.stderr.contains("clock refused"), "{}", f.stderr);
    assert!(f.stderr.contains("PTRACE_SEIZE"), "{}", f.stderr);
    assert!(!tmp.path().join("latest").exists(), "no run was started");
    let f = under_strace(tmp.path(), "all");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let config = read_json(&latest(tmp.path()).join("test.json"));
    let refused = config["nemesis_refused"].to_string();
    assert!(
        refused.contains("clock") && refused.contains("PTRACE_SEIZE"),
        "{refused}"
    );
    let kinds = config["nemesis"].to_string();
    assert!(!kinds.contains("\"clock\""), "{kinds}");
}

#[test]
fn an_overloaded_node_answers_slowly() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        faultline_test(tmp.path()).args([
            "--time-limit",
            "10",
            "--rate",
            "200",
            "--nemesis",
            "overload",
            "--nemesis-interval",
            "2",
            "--seed",
            "2",
            "--recovery-time",
            "1",
            "--timeout-ms",
            "3000",
        ]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let h = lines(&latest(tmp.path()).join("history.jsonl"));
    // Windows of overload, with their nodes.
    let mut windows = Vec::new();
    let mut open: Option<(u64, Vec<Value>)> = None;
    for e in h.iter().filter(|e| e["process"] == "nemesis") {
        let t = e["time"].as_u64().unwrap();
        match e["f"].as_str().unwrap() {
            "start-overload" => {
                let v = &e["value"];
                assert!(v["cpu_percent"].as_u64().unwrap() <= 100);
                assert!(v["bandwidth_bytes_per_s"].as_u64().unwrap() > 0);
                open = Some((t, v["nodes"].as_array().unwrap().clone()));
            }
            "stop-overload" => {
                let (t0, nodes) = open.take().expect("stop follows start");
                windows.push((t0, t, nodes));
            }
            _ => {}
        }
    }
    assert!(!windows.is_empty());
    // Latency of completed ops on an overloaded node, inside its windows
    // against outside them.
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for e in h.iter().filter(|e| e["type"] == "ok") {
        let (t, lat) = (
            e["time"].as_u64().unwrap(),
            e["latency_ns"].as_u64().unwrap(),
        );
        let sent = t - lat;
        let hit = windows
            .iter()
            .any(|(t0, t1, nodes)| sent >= *t0 && t <= *t1 && nodes.contains(&e["node"]));
        let some_node = windows.iter().any(|(_, _, n)| n.contains(&e["node"]));
        if hit {
            inside.push(lat);
        } else if some_node && !windows.iter().any(|(t0, t1, _)| t >= *t0 && sent <= *t1) {
            outside.push(lat);
        }
    }
    inside.sort_unstable();
    outside.sort_unstable();
    assert!(
        inside.len() >= 10 && outside.len() >= 10,
        "{} / {}",
        inside.len(),
        outside.len()
    );
    let (mi, mo) = (inside[inside.len() / 2], outside[outside.len() / 2]);
    eprintln!("median latency: overloaded {mi} ns, normal {mo} ns");
    assert!(
        mi > 3 * mo && mi > 5_000_000,
        "median latency overloaded {mi} ns vs normal {mo} ns"
    );
}

/// The pids whose command line has `word`, among the children of `parent`.
fn children_running(parent: u32, word: &str) -> Vec<i32> {
    faultline_process::contain::children(parent)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(word)
        })
        .map(|pid| pid as i32)
        .collect()
}

/// Who traces `pid` (0: nobody), from /proc.
fn tracer(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:")?.trim().parse().ok())
        .unwrap_or(0)
}

/// While a clock run goes on, no node process is left traced (each is
/// patched and let go); a SIGKILL of faultline ends the clock agent too
/// (its stdin closes).
#[test]
fn nothing_stays_traced_and_the_agent_ends_with_faultline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = faultline_test(tmp.path());
    cmd.args([
        "--time-limit",
        "60",
        "--nemesis",
        "clock",
        "--nemesis-interval",
        "0.5",
    ]);
    let (mut child, _lines) = start_until_nodes_up(&mut cmd, LIMIT);
    std::thread::sleep(Duration::from_secs(2));
    let agents = children_running(child.id(), "__clock-agent");
    assert_eq!(agents.len(), 1, "one clock agent: {agents:?}");
    let nodes = node_pids(&latest(tmp.path()));
    assert_eq!(nodes.len(), 5);
    for &pid in &nodes {
        assert_eq!(tracer(pid), 0, "node process {pid} is still traced");
    }
    let _ = child.kill();
    let _ = child.wait();
    let left = survivors(&agents, Duration::from_secs(5));
    reap(&left);
    assert!(left.is_empty(), "the clock agent outlived faultline");
    let left = survivors(&nodes, Duration::from_secs(5));
    reap(&left);
    assert!(left.is_empty(), "nodes {left:?} outlived faultline");
}
