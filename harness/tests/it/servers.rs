//! Real servers over TCP: etcd (Debian's etcd-server) and a small Python
//! server of our own behind the generic adapter, each a cluster on
//! loopback whose peers talk through faultline's proxies. Without etcd
//! installed the etcd tests say so and pass, except in CI (`CI` set),
//! where `.ci/run` installs it.

use crate::support::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(240);

fn etcd_or_skip(test: &str) -> bool {
    let found = std::path::Path::new("/usr/bin/etcd").is_file();
    available_or_skip(test, found, "etcd (apt-get install etcd-server)")
}

fn system_test(results: &std::path::Path, system: &str, extra: &[&str]) -> Finished {
    let mut c = faultline_test(results);
    // Data directories (and any layer mounted on them) under the test's
    // own folder: `layers_left_under` looks there.
    c.env("TMPDIR", results);
    c.args([
        "--system",
        system,
        "--node-count",
        "3",
        "--rate",
        "100",
        "--seed",
        "1",
    ]);
    c.args(extra);
    run(&mut c, LIMIT)
}

/// `faultline test` of five etcd members at 100 ops/s.
fn five_etcd(results: &std::path::Path, seed: &str) -> std::process::Command {
    let mut c = faultline_test(results);
    c.args([
        "--system",
        "etcd",
        "--node-count",
        "5",
        "--rate",
        "100",
        "--seed",
        seed,
    ]);
    c
}

/// Three etcd members under `nemesis` (faults of 1.5 s) for `seconds`.
fn etcd_under(results: &std::path::Path, nemesis: &str, seconds: &str) -> Finished {
    let args = [
        "--time-limit",
        seconds,
        "--nemesis",
        nemesis,
        "--nemesis-interval",
        "1.5",
    ];
    system_test(results, "etcd", &args)
}

#[test]
fn etcd_stays_valid_under_partitions_and_kills_with_every_link_told_apart() {
    if !etcd_or_skip("etcd_stays_valid_under_partitions_and_kills") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = etcd_under(tmp.path(), "partition,kill,pause", "8");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let results = read_json(&dir.join("results.json"));
    assert!(results["ops"]["ok"].as_u64().unwrap() > 100, "{results}");
    let links = results["links"].as_array().unwrap();
    assert_eq!(links.len(), 6, "3 nodes: 6 directed links");
    for l in links {
        assert!(
            l["bytes"].as_u64().unwrap() > 0,
            "every link carried bytes: {l}"
        );
    }
    let nemesis = lines(&dir.join("history.jsonl"))
        .into_iter()
        .filter(|e| e["process"] == "nemesis")
        .count();
    assert!(nemesis >= 4, "faults applied");
    assert!(survivors(&node_pids(&dir), Duration::from_secs(5)).is_empty());
}

/// etcd's own `member add`/`member remove` (etcdctl), asked by the
/// membership nemesis: each change and etcd's answer in the history, the
/// reported membership agreeing with the harness's once settled, removed
/// members stopped, and the history still linearizable.
#[test]
fn etcd_changes_membership_through_etcdctl_and_stays_valid() {
    let found = faultline_process::clock::which("etcdctl").is_some();
    if !etcd_or_skip("etcd_changes_membership")
        || !available_or_skip("etcd_changes_membership", found, "etcdctl")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Changes alone: beside kills etcd refuses most of them, rightly
    // ("unhealthy cluster" while a member is down or just back; the
    // systems suite runs that composition).
    let args = [
        "--time-limit",
        "16",
        "--nemesis",
        "membership",
        "--nemesis-interval",
        "3",
    ];
    let f = system_test(tmp.path(), "etcd", &args);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let history = lines(&dir.join("history.jsonl"));
    let changes: Vec<&serde_json::Value> = history
        .iter()
        .filter(|e| e["f"].as_str().is_some_and(|f| f.starts_with("member-")))
        .collect();
    assert!(changes.len() >= 2, "{changes:#?}");
    let text = serde_json::to_string(&changes).unwrap();
    assert!(text.contains(r#""answer":"ok""#), "no change made: {text}");
    let settled: Vec<&serde_json::Value> = history
        .iter()
        .filter(|e| e["f"] == "membership-settled")
        .collect();
    assert!(
        settled.iter().any(|e| e["value"]["agree"] == true),
        "{settled:#?}"
    );
    let log = std::fs::read_to_string(dir.join("nodes/membership.log")).unwrap();
    assert!(log.contains("member list"), "{log}");
    assert!(survivors(&node_pids(&dir), Duration::from_secs(5)).is_empty());
}

#[test]
fn five_etcd_members_stay_valid_under_every_partition_shape() {
    if !etcd_or_skip("five_etcd_members_stay_valid_under_every_partition_shape") {
        return;
    }
    for shape in [
        "halves",
        "random-halves",
        "majorities-ring",
        "bridge",
        "isolate-one",
        "isolate-leader",
        "one-way",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = five_etcd(tmp.path(), "2");
        c.args([
            "--time-limit",
            "4",
            "--nemesis-interval",
            "1.5",
            "--recovery-time",
            "1",
        ]);
        c.arg("--nemesis").arg(format!("partition:{shape}"));
        let f = run(&mut c, LIMIT);
        assert_eq!(
            f.status.code(),
            Some(0),
            "{shape}: {}{}",
            f.stdout,
            f.stderr
        );
        let cut = lines(&latest(tmp.path()).join("history.jsonl"))
            .into_iter()
            .any(|e| e["f"] == "start-partition" && e["value"]["shape"] == shape);
        assert!(cut, "{shape} was applied");
    }
}

#[test]
fn etcd_serializable_reads_are_caught_when_a_member_is_cut_off() {
    if !etcd_or_skip("etcd_serializable_reads_are_caught") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--time-limit",
        "12",
        "--nemesis",
        "partition:isolate-one",
        "--nemesis-interval",
        "3",
        "--key-count",
        "2",
        "--timeout-ms",
        "500",
    ];
    let f = system_test(tmp.path(), "etcd-serializable", &args);
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stdout.contains("linearizability violated"),
        "{}",
        f.stdout
    );
}

#[test]
fn five_etcd_members_under_every_fault() {
    if !etcd_or_skip("five_etcd_members_under_every_fault") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut c = five_etcd(tmp.path(), "3");
    c.args([
        "--time-limit",
        "10",
        "--nemesis",
        "all",
        "--nemesis-interval",
        "1.5",
    ]);
    let f = run(&mut c, LIMIT);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(
        !f.stderr.contains("left out of `all`: clock"),
        "{}",
        f.stderr
    );
    let dir = latest(tmp.path());
    let config = read_json(&dir.join("test.json"));
    // Crash joins `all` where FUSE mounts (etcd survives it: see below),
    // membership where etcdctl is installed.
    let crash = faultline_durable::probe().is_ok();
    let membership = faultline_process::clock::which("etcdctl").is_some();
    // Clock and strand (etcd is a Go program, skewed all the same).
    let kinds = 7 + usize::from(crash) + usize::from(membership);
    assert_eq!(
        config["nemesis"].as_array().unwrap().len(),
        kinds,
        "every kind"
    );
    // A replay draws nothing new: the same schedule, step for step.
    let f = run(faultline_test(tmp.path()).arg("--replay").arg(&dir), LIMIT);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let replayed = read_json(&latest(tmp.path()).join("test.json"));
    assert_eq!(replayed["schedule"], config["schedule"]);
}

#[test]
fn etcd_stays_valid_under_crashes_that_lose_what_it_never_synced() {
    let test = "etcd_stays_valid_under_crashes";
    if !etcd_or_skip(test) || !fuse_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = etcd_under(tmp.path(), "crash", "10");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let crashes = lines(&latest(tmp.path()).join("history.jsonl"))
        .into_iter()
        .filter(|e| e["f"] == "crash")
        .count();
    assert!(crashes >= 2, "crashes applied");
    assert_eq!(layers_left_under(tmp.path()), Vec::<String>::new());
}

/// etcd and NATS are Go programs: they read the clock through the vDSO,
/// never libc, and clock faults reach them all the same; each stays valid.
fn skewed_by_the_clock_nemesis(system: &str, time_limit: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let f = system_test(
        tmp.path(),
        system,
        &[
            "--time-limit",
            time_limit,
            "--nemesis",
            "clock",
            "--nemesis-interval",
            "1",
        ],
    );
    assert_eq!(
        f.status.code(),
        Some(0),
        "{system}: {}{}",
        f.stdout,
        f.stderr
    );
    let h = lines(&latest(tmp.path()).join("history.jsonl"));
    let skews: Vec<_> = h
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["f"].as_str().unwrap().starts_with("clock-"))
        .collect();
    assert!(!skews.is_empty(), "{system}: no clock fault applied");
    for e in skews {
        for n in e["value"]["nodes"].as_array().unwrap() {
            let pids = &e["value"]["reached"][n.as_str().unwrap()];
            assert!(
                pids.as_array().is_some_and(|p| !p.is_empty()),
                "{system}: {e}"
            );
        }
    }
}

#[test]
fn etcd_is_skewed_by_the_clock_nemesis() {
    if etcd_or_skip("etcd_is_skewed_by_the_clock_nemesis") {
        skewed_by_the_clock_nemesis("etcd", "6");
    }
}

#[test]
fn nats_is_skewed_by_the_clock_nemesis() {
    let found = faultline_process::clock::which("nats-server").is_some();
    if available_or_skip(
        "nats_is_skewed",
        found,
        "nats-server (apt-get install nats-server)",
    ) {
        skewed_by_the_clock_nemesis("nats", "10");
    }
}

#[test]
fn a_users_own_tcp_server_runs_through_the_generic_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let correct = fixture("pykv.toml").display().to_string();
    let args = [
        "--time-limit",
        "5",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "1",
    ];
    let f = system_test(tmp.path(), &correct, &args);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let results = read_json(&latest(tmp.path()).join("results.json"));
    assert!(results["ops"]["ok"].as_u64().unwrap() > 100, "{results}");
    let stale = fixture("pykv_stale.toml").display().to_string();
    let f = system_test(tmp.path(), &stale, &["--time-limit", "5"]);
    assert_eq!(
        f.status.code(),
        Some(1),
        "stale reads are caught: {}{}",
        f.stdout,
        f.stderr
    );
}

#[test]
fn an_adapter_finds_every_node_and_says_which_served_each_op() {
    // The adapter reads the cluster from {nodes} and talks to the
    // primary, n1, whatever its home node, naming it in served_by.
    let tmp = tempfile::tempdir().unwrap();
    let system = fixture("pykv_primary.toml").display().to_string();
    let f = system_test(tmp.path(), &system, &["--time-limit", "3"]);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let history = lines(&dir.join("history.jsonl"));
    let done: Vec<&serde_json::Value> = history
        .iter()
        .filter(|e| e["type"] == "ok" && e["node"] != "n1")
        .collect();
    assert!(done.len() > 50, "ops asked of n2 and n3: {}", done.len());
    assert!(done.iter().all(|e| e["served_by"] == "n1"), "{:?}", done[0]);
}

#[test]
fn a_bad_system_file_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(fixture("pykv.toml"))
        .unwrap()
        .replace("{port.peer}", "{port.per}");
    std::fs::write(&bad, text).unwrap();
    let f = run(
        faultline_test(tmp.path()).args(["--system"]).arg(&bad),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(
        f.stderr.contains("bad.toml:") && f.stderr.contains("{port.per}"),
        "{}",
        f.stderr
    );
}

/// The `started as pid` header lines of one log: one per incarnation.
fn starts(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(" started as pid ")
        .count()
}

/// The times of a pykv monitor's beats, and whether it saw its server down.
fn beats(log: &std::path::Path) -> (Vec<f64>, bool) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut times = Vec::new();
    let mut down = false;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let ["beat", t, state] = w[..] {
            times.extend(t.parse::<f64>().ok());
            down |= state == "down";
        }
    }
    (times, down)
}

#[test]
fn a_fault_aimed_at_one_process_of_a_node_leaves_the_other_running() {
    let tmp = tempfile::tempdir().unwrap();
    let schedule = tmp.path().join("schedule.json");
    std::fs::write(
        &schedule,
        r#"[
  {"at_ms": 1000, "action": {"f": "kill", "nodes": ["n1"], "process": "monitor"}},
  {"at_ms": 1000, "action": {"f": "pause", "nodes": ["n3"], "process": "monitor"}},
  {"at_ms": 2000, "action": {"f": "restart", "nodes": ["n1"]}},
  {"at_ms": 2300, "action": {"f": "resume", "nodes": ["n3"]}},
  {"at_ms": 2500, "action": {"f": "kill", "nodes": ["n2"], "process": "server"}},
  {"at_ms": 3500, "action": {"f": "restart", "nodes": ["n2"]}}
]"#,
    )
    .unwrap();
    let system = fixture("pykv_monitored.toml").display().to_string();
    let mut args = vec!["--time-limit", "5", "--schedule"];
    args.push(schedule.to_str().unwrap());
    let f = system_test(tmp.path(), &system, &args);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let nodes = latest(tmp.path()).join("nodes");
    // Killing n1's monitor restarted only the monitor.
    assert_eq!(starts(&nodes.join("n1.log")), 1);
    assert_eq!(starts(&nodes.join("n1.monitor.log")), 2);
    // Killing n2's server left its monitor running, watching it go down.
    assert_eq!(starts(&nodes.join("n2.log")), 2);
    assert_eq!(starts(&nodes.join("n2.monitor.log")), 1);
    let (_, saw_down) = beats(&nodes.join("n2.monitor.log"));
    assert!(saw_down, "n2's monitor beat on while its server was down");
    // Pausing n3's monitor stopped its beats for the pause, and only its.
    let (times, _) = beats(&nodes.join("n3.monitor.log"));
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!((1.0..3.0).contains(&gap), "longest beat gap {gap} s");
    let (times, _) = beats(&nodes.join("n1.monitor.log"));
    assert!(times.len() > 20, "n1's monitor beat after its restart");
    assert_eq!(starts(&nodes.join("n3.log")), 1);
    let history = lines(&latest(tmp.path()).join("history.jsonl"));
    let aimed: Vec<_> = history
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["type"] == "info")
        .filter_map(|e| e["value"]["process"].as_str())
        .collect();
    assert_eq!(aimed, ["monitor", "monitor", "server"], "{aimed:?}");
}

#[test]
fn a_fault_aimed_at_a_process_no_node_runs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let system = fixture("pykv_monitored.toml").display().to_string();
    let f = run(
        faultline_test(tmp.path()).args(["--system", &system, "--nemesis", "kill:process=monitr"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(
        f.stderr.contains("process=monitr") && f.stderr.contains("server, monitor"),
        "{}",
        f.stderr
    );
    let f = run(
        faultline_test(tmp.path()).args(["--nemesis", "pause:process=monitor"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(f.stderr.contains("only a system's nodes"), "{}", f.stderr);
    assert!(!tmp.path().join("latest").exists(), "no run directory");
}

#[test]
fn a_system_file_sets_up_its_nodes_defaults_its_options_and_names_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let schedule = tmp.path().join("schedule.json");
    std::fs::write(
        &schedule,
        r#"[
  {"at_ms": 500, "action": {"f": "damage-disk", "nodes": ["n2", "n3"], "fault": "flip", "seed": 1}},
  {"at_ms": 1200, "action": {"f": "restart-damaged", "nodes": ["n2", "n3"]}},
  {"at_ms": 2000, "action": {"f": "damage-disk", "nodes": ["n2", "n3"], "fault": "truncate", "seed": 2}},
  {"at_ms": 2700, "action": {"f": "restart-damaged", "nodes": ["n2", "n3"]}}
]"#,
    )
    .unwrap();
    let system = fixture("pykv_setup.toml").display().to_string();
    let f = run(
        faultline_test(tmp.path())
            .args(["--system", &system, "--node-count", "3", "--seed", "1"])
            .args(["--time-limit", "4", "--rate", "60", "--var", "level=strict"])
            .arg("--schedule")
            .arg(&schedule),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    // Defaults from the system file, overridden from the command line,
    // and where each came from.
    let config = read_json(&dir.join("test.json"));
    assert_eq!(config["timeout_ms"], 1500);
    assert_eq!(config["nemesis_interval_s"], 2.0);
    assert_eq!(config["rate"], 60.0);
    assert_eq!(config["sources"]["timeout_ms"], "system file");
    assert_eq!(config["sources"]["rate"], "command line");
    let sources = config["sources"].as_object().unwrap();
    assert!(
        !sources.contains_key("results_dir"),
        "only test options: {sources:?}"
    );
    assert_eq!(config["vars"]["level"], "strict");
    assert_eq!(config["vars"]["greeting"], "hello");
    // Setup once, with every placeholder; init once per node, before its
    // first start only (n2 and n3 restarted twice).
    let setup = std::fs::read_to_string(dir.join("nodes/setup.log")).unwrap();
    assert_eq!(setup.matches("setup nodes=n1=").count(), 1, "{setup}");
    assert!(setup.contains("timeout=1500 level=strict"), "{setup}");
    for n in ["n1", "n2", "n3"] {
        let init = std::fs::read_to_string(dir.join(format!("nodes/{n}.init.log"))).unwrap();
        assert_eq!(init.matches(&format!("init {n}")).count(), 1, "{n}: {init}");
    }
    // Disk faults chose only the named data files.
    let history = lines(&dir.join("history.jsonl"));
    let files: Vec<String> = history
        .iter()
        .filter(|e| e["f"] == "damage-disk")
        .flat_map(|e| {
            e["value"]["effects"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|e| e["file"].as_str().unwrap_or("none").to_string())
        .collect();
    assert_eq!(files, ["data.blk"; 4], "{files:?}");
}

#[test]
fn a_failing_setup_step_stops_the_run_with_its_command_and_output() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("pykv_setup.toml"))
        .unwrap()
        .replace("{system_dir}", &fixture("").display().to_string())
        .replace(
            "echo setup nodes=",
            "echo cannot create the table >&2; exit 3; echo ",
        );
    let bad = tmp.path().join("bad_setup.toml");
    std::fs::write(&bad, text).unwrap();
    let f = run(
        faultline_test(tmp.path()).args(["--system", bad.to_str().unwrap(), "--node-count", "3"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(255), "{}", f.stderr);
    assert!(
        f.stderr.contains("setup step") && f.stderr.contains("exited with code 3"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("cannot create the table"), "{}", f.stderr);
    let f = run(
        faultline_test(tmp.path()).args(["--system", bad.to_str().unwrap(), "--var", "levl=x"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(
        f.stderr.contains("no variable \"levl\"") && f.stderr.contains("greeting, level"),
        "{}",
        f.stderr
    );
    let misspelt = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("timeout_ms = 1500", "timout_ms = 1500");
    std::fs::write(&bad, misspelt).unwrap();
    let f = run(
        faultline_test(tmp.path()).args(["--system", bad.to_str().unwrap()]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(
        f.stderr.contains("bad_setup.toml:") && f.stderr.contains("cannot set \"timout_ms\""),
        "{}",
        f.stderr
    );
}

/// Three pauses of the leader, by schedule, of pykv under `system`; the
/// nemesis ops of the run.
fn pause_the_leader_thrice(results: &std::path::Path, system: &str) -> Vec<serde_json::Value> {
    let schedule = results.join("leader.json");
    let pause = r#"{"f": "pause", "nodes": [], "leader": true}"#;
    let resume = r#"{"f": "resume", "nodes": []}"#;
    let steps: Vec<String> = [800, 1800, 2800]
        .iter()
        .flat_map(|at| {
            [
                format!(r#"{{"at_ms": {at}, "action": {pause}}}"#),
                format!(r#"{{"at_ms": {}, "action": {resume}}}"#, at + 500),
            ]
        })
        .collect();
    std::fs::write(&schedule, format!("[{}]", steps.join(","))).unwrap();
    let f = run(
        faultline_test(results)
            .args(["--system", system, "--node-count", "3", "--seed", "4"])
            .args(["--time-limit", "4", "--timeout-ms", "300", "--schedule"])
            .arg(&schedule),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    lines(&latest(results).join("history.jsonl"))
        .into_iter()
        .filter(|e| e["process"] == "nemesis" && e["f"] == "pause")
        .collect()
}

#[test]
fn a_leader_probe_aims_leader_faults_at_the_leader_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let probed = pause_the_leader_thrice(
        tmp.path(),
        &fixture("pykv_setup.toml").display().to_string(),
    );
    assert_eq!(probed.len(), 3);
    for p in &probed {
        assert_eq!(p["value"]["nodes"], serde_json::json!(["n1"]), "{p}");
        assert!(p["value"].get("leader").is_none(), "{p}");
    }
    let traces = lines(&latest(tmp.path()).join("traces.jsonl"));
    assert!(
        traces
            .iter()
            .any(|t| t["event"] == "leader" && t["node"] == "n1" && t["source"] == "leader-probe"),
        "the probe's answer is traced as an election"
    );
    // Without a probe, no leader is known, and the history says so.
    let tmp = tempfile::tempdir().unwrap();
    let blind = pause_the_leader_thrice(tmp.path(), &fixture("pykv.toml").display().to_string());
    assert!(
        blind.iter().all(|p| p["value"]["leader"]
            .as_str()
            .is_some_and(|l| l.starts_with("unknown"))),
        "{blind:?}"
    );
}

#[test]
fn a_server_runs_as_its_own_user_and_survives_a_crash_as_it() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: only root can run a server as another user");
        return;
    }
    if !fuse_or_skip("a_server_runs_as_its_own_user") {
        return;
    }
    // The system's user must read the scripts: a world-readable copy.
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    for dir in [tmp.path(), scripts.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["pykv_server.py", "pykv_adapter.py", "pykv_user.toml"] {
        std::fs::copy(fixture(f), scripts.join(f)).unwrap();
    }
    let schedule = tmp.path().join("crash.json");
    std::fs::write(
        &schedule,
        r#"[
  {"at_ms": 1500, "action": {"f": "crash", "nodes": ["n2"], "loss": "lose", "seed": 1}},
  {"at_ms": 2300, "action": {"f": "recover", "nodes": ["n2"]}}
]"#,
    )
    .unwrap();
    let results = tmp.path().join("results");
    let system = scripts.join("pykv_user.toml");
    let f = run(
        faultline_test(&results)
            .env("TMPDIR", tmp.path())
            .args(["--system", system.to_str().unwrap(), "--node-count", "3"])
            .args(["--time-limit", "3", "--nemesis", "crash", "--schedule"])
            .arg(&schedule),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(&results);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    // Its init step wrote into its data directory (through the
    // durability layer) as the system's user, and so did the server.
    let init = std::fs::read_to_string(dir.join("nodes/n2.init.log")).unwrap();
    assert!(init.contains(&format!("init n2 uid {nobody}")), "{init}");
    let log = std::fs::read_to_string(dir.join("nodes/n2.log")).unwrap();
    assert_eq!(
        log.matches(&format!("pykv n2 runs as uid {nobody}"))
            .count(),
        2,
        "started and recovered as its user: {log}"
    );
    let crash = lines(&dir.join("history.jsonl"))
        .into_iter()
        .find(|e| e["f"] == "crash")
        .expect("the crash applied");
    let lost: Vec<&str> = crash["value"]["effects"][0]["lost"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["file"].as_str())
        .collect();
    // What the server wrote and never synced is lost; what its init step
    // wrote was made durable before the first fault.
    assert!(
        lost.contains(&"writes.txt"),
        "its unsynced file was lost: {crash}"
    );
    for init in ["init.txt", "data.blk", "meta.idx"] {
        assert!(
            !lost.contains(&init),
            "{init} survived the power loss: {crash}"
        );
    }
    // Nothing left behind: no process, no mount.
    let pids = node_pids(&dir);
    let left = survivors(&pids, Duration::from_secs(5));
    reap(&left);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert_eq!(layers_left_under(tmp.path()), Vec::<String>::new());
}

/// A server run as its own user gets a PATH it can use: a shim in a
/// directory only root can enter (a pyenv shim under /root) is passed
/// over for the next python3 on PATH, and a binary the user may not
/// execute is refused when the file is read, naming the user.
#[test]
fn a_server_of_its_own_user_finds_binaries_it_can_execute() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: only root can run a server as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    let private = tmp.path().join("private");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let shim = private.join("python3");
    // Root's clients run it; the system's user cannot enter its directory.
    std::fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["pykv_server.py", "pykv_adapter.py"] {
        std::fs::copy(fixture(f), scripts.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(fixture("pykv_user.toml"))
        .unwrap()
        .replace("binary = \"/usr/bin/python3\"", "binary = \"python3\"");
    std::fs::write(scripts.join("user.toml"), &text).unwrap();
    let path = format!("{}:{}", private.display(), std::env::var("PATH").unwrap());
    let results = tmp.path().join("results");
    let f = run(
        faultline_test(&results)
            .env("TMPDIR", tmp.path())
            .env("PATH", &path)
            .args(["--system", scripts.join("user.toml").to_str().unwrap()])
            .args([
                "--node-count",
                "3",
                "--time-limit",
                "2",
                "--nemesis",
                "none",
            ]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let log = std::fs::read_to_string(latest(&results).join("nodes/n1.log")).unwrap();
    assert!(log.contains("pykv n1 runs as uid"), "{log}");
    // Named by its path, the shim is refused before anything starts.
    let named = text.replace(
        "binary = \"python3\"",
        &format!("binary = {:?}", shim.display().to_string()),
    );
    std::fs::write(scripts.join("shim.toml"), named).unwrap();
    let results = tmp.path().join("refused");
    let f = run(
        faultline_test(&results)
            .env("TMPDIR", tmp.path())
            .args(["--system", scripts.join("shim.toml").to_str().unwrap()]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stderr.contains("cannot run as user nobody"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("cannot enter"), "{}", f.stderr);
    assert!(!results.exists(), "no run directory for a refused file");
}

#[test]
fn nats_jetstream_keeps_every_acknowledged_message_under_partitions_and_kills() {
    let found = faultline_process::clock::which("nats-server").is_some();
    if !available_or_skip(
        "nats_jetstream",
        found,
        "nats-server (apt-get install nats-server)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A partition, a kill of one node and one of the leader (asked of the
    // monitoring endpoint), each healed before the next.
    let schedule = tmp.path().join("schedule.json");
    std::fs::write(
        &schedule,
        r#"[
  {"at_ms": 2000, "action": {"f": "start-partition", "shape": "isolate-one", "cut": [[0, 1], [1, 0], [2, 1], [1, 2]]}},
  {"at_ms": 6000, "action": {"f": "stop-partition"}},
  {"at_ms": 8000, "action": {"f": "kill", "nodes": ["n2"]}},
  {"at_ms": 12000, "action": {"f": "restart", "nodes": ["n2"]}},
  {"at_ms": 14000, "action": {"f": "kill", "nodes": [], "leader": true}},
  {"at_ms": 18000, "action": {"f": "restart", "nodes": []}}
]"#,
    )
    .unwrap();
    // The bundled system's defaults: kafka, 5 s timeouts and intervals.
    let args = [
        "--time-limit",
        "20",
        "--schedule",
        schedule.to_str().unwrap(),
    ];
    let f = system_test(tmp.path(), "nats", &args);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let config = read_json(&dir.join("test.json"));
    assert_eq!(config["workload"], "kafka");
    assert_eq!(config["sources"]["timeout_ms"], "system file");
    let results = read_json(&dir.join("results.json"));
    assert!(results["ops"]["ok"].as_u64().unwrap() > 50, "{results}");
    let history = lines(&dir.join("history.jsonl"));
    let faults: Vec<&str> = history
        .iter()
        .filter(|e| e["process"] == "nemesis")
        .filter_map(|e| e["f"].as_str())
        .collect();
    assert_eq!(faults.len(), 6, "{faults:?}");
    // Its leader comes from the monitoring endpoint, and the leader kill
    // hit the one it named.
    let traces = lines(&dir.join("traces.jsonl"));
    assert!(traces.iter().any(|t| t["source"] == "leader-probe"));
    let kill = history
        .iter()
        .filter(|e| e["f"] == "kill")
        .nth(1)
        .expect("the leader kill");
    assert!(
        kill["value"].get("leader").is_none(),
        "a leader was known: {kill}"
    );
}

/// With `target_session_attrs = "read-write"` the built-in SQL client
/// uses whichever server accepts writes, whatever its home node, and says
/// which in `served_by`; without it, the clients of the read-only server
/// fail there.
#[test]
fn the_sql_client_follows_the_server_that_accepts_writes() {
    let found = std::path::Path::new("/usr/lib/postgresql/15/bin/postgres").is_file();
    if !available_or_skip(
        "postgres_pair",
        found,
        "postgresql 15 (apt-get install postgresql)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pair = |dir: &str, text: &str| {
        let file = tmp.path().join(format!("{dir}.toml"));
        std::fs::write(&file, text).unwrap();
        let results = tmp.path().join(dir);
        let f = run(
            faultline_test(&results)
                .env("TMPDIR", tmp.path())
                .arg("--system")
                .arg(&file)
                .args(["--time-limit", "3"]),
            LIMIT,
        );
        (f, lines(&latest(&results).join("history.jsonl")))
    };
    let text = std::fs::read_to_string(fixture("postgres_pair.toml")).unwrap();
    let (f, history) = pair("follow", &text);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let ok: Vec<&serde_json::Value> = history.iter().filter(|l| l["type"] == "ok").collect();
    assert!(ok.len() > 20, "{}", f.stdout);
    assert!(
        ok.iter().all(|l| l["served_by"] == "n2"),
        "every commit on n2"
    );
    assert!(
        ok.iter().any(|l| l["node"] == "n1"),
        "n1's clients were served by n2"
    );
    let (f, history) = pair(
        "any",
        &text.replace("target_session_attrs = \"read-write\"\n", ""),
    );
    // Two separate databases seen through two homes: whatever the verdict
    // (n1's final reads find its empty table), the run itself completes.
    assert!(
        matches!(f.status.code(), Some(0..=2)),
        "{}{}",
        f.stdout,
        f.stderr
    );
    let appends = |l: &&serde_json::Value| {
        l["value"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op[0] == "append"))
    };
    let on_n1 = |t: &str| {
        history
            .iter()
            .filter(|l| l["type"] == t && l["node"] == "n1")
            .filter(appends)
            .count()
    };
    assert_eq!(on_n1("ok"), 0, "a read-only server commits no write");
    assert!(on_n1("fail") > 0, "n1's writes were refused there");
}

#[test]
fn postgres_gives_each_isolation_level_its_documented_verdict() {
    let found = std::path::Path::new("/usr/lib/postgresql/15/bin/postgres").is_file();
    if !available_or_skip(
        "postgres",
        found,
        "postgresql 15 (apt-get install postgresql)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // (isolation, model, nemesis): SERIALIZABLE is strict-serializable on
    // one node even under kills and power losses; REPEATABLE READ is
    // snapshot isolation; READ COMMITTED is read committed.
    let mut cases = vec![
        ("serializable", "strict-serializable", "kill"),
        ("repeatable-read", "snapshot-isolation", "none"),
        ("read-committed", "read-committed", "none"),
    ];
    if std::path::Path::new("/dev/fuse").exists() {
        cases.push(("serializable", "strict-serializable", "crash"));
    }
    for (level, model, nemesis) in cases {
        let var = format!("isolation={level}");
        let args = [
            "--time-limit",
            "8",
            "--rate",
            "150",
            "--var",
            &var,
            "--consistency-model",
            model,
            "--nemesis",
            nemesis,
        ];
        // One node: three would be three unrelated databases.
        let f = run(
            faultline_test(tmp.path())
                .env("TMPDIR", tmp.path())
                .args(["--system", "postgres", "--node-count", "1", "--seed", "1"])
                .args(args),
            LIMIT,
        );
        assert_eq!(
            f.status.code(),
            Some(0),
            "{level} under {nemesis}: {}{}",
            f.stdout,
            f.stderr
        );
        let results = read_json(&latest(tmp.path()).join("results.json"));
        assert!(
            results["ops"]["ok"].as_u64().unwrap() > 100,
            "{level}: {results}"
        );
    }
    let dir = latest(tmp.path());
    let init = std::fs::read_to_string(dir.join("nodes/n1.init.log")).unwrap();
    assert!(init.contains("initialised n1"), "{init}");
}

/// A three-node MariaDB Galera cluster formed through faultline's network
/// (state transfer to the joiners included), under kills: valid under
/// read committed (its repeatable read is weaker than snapshot isolation),
/// with group traffic on every directed link.
#[test]
fn galera_forms_through_the_proxies_and_keeps_read_committed_under_kills() {
    let found = std::path::Path::new("/usr/sbin/mariadbd").is_file()
        && std::path::Path::new("/usr/lib/galera/libgalera_smm.so").is_file();
    if !available_or_skip(
        "galera",
        found,
        "mariadb-server and galera-4 (apt-get install mariadb-server galera-4 rsync)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        faultline_test(tmp.path())
            .env("TMPDIR", tmp.path())
            .args(["--system", "galera", "--seed", "1", "--time-limit", "12"])
            .args(["--nemesis", "kill", "--consistency-model", "read-committed"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let results = read_json(&dir.join("results.json"));
    assert!(results["ops"]["ok"].as_u64().unwrap() > 50, "{results}");
    let links = results["links"].as_array().unwrap();
    assert_eq!(links.len(), 6, "{results}");
    for l in links {
        assert!(l["bytes"].as_u64().unwrap() > 0, "a silent link: {l}");
    }
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.contains("\"f\":\"kill\""), "a node was killed");
    let init = std::fs::read_to_string(dir.join("nodes/n1.init.log")).unwrap();
    assert!(init.contains("initialised n1"), "{init}");
    assert!(
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| !e
                .file_name()
                .to_string_lossy()
                .starts_with("faultline-data")),
        "the nodes' data directories are gone"
    );
}

/// A clock fault reaches every process of a node, sidecars too, unless the
/// system file keeps one on true time (`clock_exempt`).
#[test]
fn clock_faults_reach_sidecars_unless_exempt() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["pykv_server.py", "pykv_monitor.py", "pykv_adapter.py"] {
        std::fs::copy(fixture(f), tmp.path().join(f)).unwrap();
    }
    let base = std::fs::read_to_string(fixture("pykv_monitored.toml")).unwrap();
    let schedule = tmp.path().join("bump.json");
    std::fs::write(
        &schedule,
        r#"[{"at_ms": 1000, "action": {"f": "clock-bump", "nodes": ["n1"], "delta_ms": 2000}},
            {"at_ms": 2000, "action": {"f": "reset-clock"}}]"#,
    )
    .unwrap();
    let reached = |text: String, name: &str| {
        let system = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&system, text).unwrap();
        let results = tmp.path().join(name);
        let args = ["--time-limit", "3", "--nemesis", "clock", "--schedule"];
        let mut args = args.to_vec();
        args.push(schedule.to_str().unwrap());
        let f = system_test(&results, system.to_str().unwrap(), &args);
        assert_eq!(f.status.code(), Some(0), "{name}: {}{}", f.stdout, f.stderr);
        let h = lines(&latest(&results).join("history.jsonl"));
        let bump = h.iter().find(|e| e["f"] == "clock-bump").expect("a bump");
        bump["value"]["reached"]["n1"].as_array().unwrap().len()
    };
    assert_eq!(
        reached(base.clone(), "all"),
        2,
        "the server and its monitor"
    );
    let exempt = format!("clock_exempt = [\"monitor\"]\n{base}");
    assert_eq!(reached(exempt, "exempt"), 1, "the server alone");
}
