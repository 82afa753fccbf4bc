//! Whole runs: healthy, foreign node, misbehaving nodes, bad usage.

use crate::support::*;
use faultline_checker::{parse_history, Format, Outcome};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn test_cmd(results: &std::path::Path) -> std::process::Command {
    let mut c = faultline();
    c.arg("test").arg("--results-dir").arg(results).args([
        "--time-limit",
        "2",
        "--rate",
        "200",
        "--seed",
        "7",
    ]);
    c
}

#[test]
fn healthy_run_of_the_bundled_node_records_hundreds_of_ok_ops() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = test_cmd(tmp.path());
    // The nodes fsync every batch before they answer, so on a shared disk
    // (CI runs etcd and the durability tests beside this one) their
    // throughput is the disk's: three fsync-heavy neighbours cut this run
    // from 310 ok ops to 53. The node data goes on tmpfs where there is one,
    // so this test measures the harness, not the neighbours.
    if std::path::Path::new("/dev/shm").is_dir() {
        cmd.env("TMPDIR", "/dev/shm");
    }
    let f = run(&mut cmd, LIMIT);
    assert_eq!(
        f.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        f.stdout,
        f.stderr
    );
    assert!(f.stdout.starts_with("VALID"), "{}", f.stdout);
    // Not a terminal: progress comes as plain lines.
    assert!(
        f.stderr.contains("s: ") && f.stderr.contains(" ok, "),
        "{}",
        f.stderr
    );
    let dir = latest(tmp.path());
    for file in [
        "test.json",
        "history.jsonl",
        "traces.jsonl",
        "messages.jsonl",
        "results.json",
        "nodes/n1.log",
        "nodes/n5.log",
        "report.html",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let (_, ops) = parse_history("history.jsonl", &text, Some(Format::Jsonl)).unwrap();
    let ok = ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    assert!(ok >= 200, "only {ok} ok ops");
    // Indices are dense and times never go backwards.
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, w) in events.windows(2).enumerate() {
        assert_eq!(w[0]["index"], i as u64);
        assert!(w[0]["time"].as_u64() <= w[1]["time"].as_u64());
    }
    // The final phase read every key.
    let final_reads = ops.iter().rev().take(5).filter(|o| o.f == "read").count();
    assert_eq!(final_reads, 5);
    let config = read_json(&dir.join("test.json"));
    assert_eq!(config["seed"], 7);
    assert_eq!(config["node_count"], 5);
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    assert_eq!(results["checkers"]["linearizability"]["verdict"], "valid");
    assert!(
        results["network"]["routed"].as_u64().unwrap() > 0,
        "followers forward through the router"
    );
    assert!(survivors(&node_pids(&dir), Duration::from_secs(5)).is_empty());
    assert_eq!(node_pids(&dir).len(), 5);
}

#[test]
fn a_maelstrom_python_node_runs_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        test_cmd(tmp.path())
            .arg("--bin")
            .arg(fixture("linkv_node.py")),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let results = read_json(&latest(tmp.path()).join("results.json"));
    assert!(results["ops"]["ok"].as_u64().unwrap() >= 200, "{results}");
    assert_eq!(results["ops"]["info"], 0);
}

#[test]
fn a_node_printing_garbage_is_counted_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        test_cmd(tmp.path())
            .arg("--bin")
            .arg(fixture("linkv_node.py"))
            .args(["--", "--garbage"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(f.stderr.contains("malformed lines"), "{}", f.stderr);
    let results = read_json(&latest(tmp.path()).join("results.json"));
    let net = &results["network"];
    assert!(net["malformed"].as_u64().unwrap() > 0);
    assert!(
        net["oversize"].as_u64().unwrap() >= 1,
        "2 MB lines are counted, not buffered"
    );
    assert!(
        f.stdout.contains("byte line limit, which were dropped"),
        "the verdict line names the limit: {}",
        f.stdout
    );
    assert!(net["unknown_dest"].as_u64().unwrap() > 0);
    assert!(!net["samples"].as_array().unwrap().is_empty());
    assert!(results["ops"]["ok"].as_u64().unwrap() >= 200);
}

#[test]
fn a_node_crashing_mid_run_ends_its_ops_info_and_the_run_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    // n1 holds the data; it dies after 40 requests (the fixture crashes
    // only the first node). Nothing restarts it, so after the run the keys
    // are unreadable: the liveness checker must say so.
    let f = run(
        test_cmd(tmp.path())
            .args(["--liveness-timeout", "1"])
            .arg("--bin")
            .arg(fixture("linkv_node.py"))
            .args(["--", "--crash-after", "40"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stderr
            .contains("node n1 crashed during the run (exit code 3"),
        "{}",
        f.stderr
    );
    assert!(
        f.stdout.contains("liveness violated") && f.stdout.contains("1 node crash(es)"),
        "{}",
        f.stdout
    );
    let dir = latest(tmp.path());
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["unexpected_exits"][0]["node"], "n1");
    assert_eq!(results["checkers"]["linearizability"]["verdict"], "valid");
    assert_eq!(results["checkers"]["liveness"]["verdict"], "invalid");
    assert!(
        results["ops"]["info"].as_u64().unwrap() >= 1,
        "the op in flight at the crash is info"
    );
    let log = std::fs::read_to_string(dir.join("nodes/n1.log")).unwrap();
    assert!(
        log.contains("crashing on purpose") && log.contains("ended: exit code 3"),
        "{log}"
    );
    // `faultline check RUN_DIR` gives the run's own verdict: its only
    // failure, liveness, is not in the history's checkers' reach, so it
    // must come from the run's record, not be dropped.
    let f = run(faultline().arg("check").arg(&dir), LIMIT);
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("[liveness]: invalid"), "{}", f.stdout);
    assert!(
        f.stdout.contains("[linearizability]: valid"),
        "{}",
        f.stdout
    );
    assert!(f.stdout.contains("overall: invalid"), "{}", f.stdout);
    let f = run(faultline().args(["check", "--json"]).arg(&dir), LIMIT);
    let v: serde_json::Value = serde_json::from_str(&f.stdout).unwrap();
    assert_eq!(v["verdict"], results["verdict"]);
}

#[test]
fn a_node_that_never_answers_init_is_named_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        test_cmd(tmp.path())
            .args(["--init-timeout-ms", "3000"])
            .arg("--bin")
            .arg(fixture("linkv_node.py"))
            .args(["--", "--silent-init"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(255));
    assert!(
        f.stderr.contains("did not answer init within 3000 ms"),
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("n1 up"),
        "the stderr tail is shown: {}",
        f.stderr
    );
    assert!(survivors(&node_pids(&latest(tmp.path())), Duration::from_secs(5)).is_empty());
}

#[test]
fn nodes_that_exit_or_cannot_start_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(test_cmd(tmp.path()).args(["--bin", "/bin/false"]), LIMIT);
    assert_eq!(f.status.code(), Some(255));
    assert!(
        f.stderr.contains("node n1") && f.stderr.contains("exit code 1"),
        "{}",
        f.stderr
    );

    let not_exec = tmp.path().join("plain.txt");
    std::fs::write(&not_exec, "hello").unwrap();
    let f = run(test_cmd(tmp.path()).arg("--bin").arg(&not_exec), LIMIT);
    assert_eq!(f.status.code(), Some(255));
    assert!(
        f.stderr.contains("cannot start node n1") && f.stderr.contains("Permission denied"),
        "{}",
        f.stderr
    );
}

#[test]
fn bad_usage_exits_254_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--node-count", "0"], "--node-count"),
        (vec!["--rate=0"], "--rate"),
        (vec!["--workload", "bank"], "--workload"),
        (vec!["--bin", "/no/such/binary"], "--bin"),
        (vec!["--frobnicate"], "--frobnicate"),
    ] {
        let f = run(test_cmd(tmp.path()).args(&args), LIMIT);
        assert_eq!(f.status.code(), Some(254), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains(needle), "{args:?}: {}", f.stderr);
    }
}

#[test]
fn check_reads_every_format_and_exits_by_verdict() {
    let bench = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/bench/porcupine/test_data");
    let f = run(
        faultline()
            .arg("check")
            .arg(bench.join("jepsen/etcd_002.log"))
            .arg(bench.join("kv/c10-ok.txt")),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("overall: valid"));
    let f = run(
        faultline()
            .args(["check", "--json"])
            .arg(bench.join("jepsen/etcd_000.log")),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&f.stdout).unwrap();
    assert_eq!(v["verdict"], "invalid");
    assert!(
        v["files"][0]["report"]["anomaly"]["explanation"]
            .as_str()
            .unwrap()
            .len()
            > 20
    );

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("h.jsonl");
    std::fs::write(&bad, "{\"index\":0}\n{}\n").unwrap();
    let f = run(faultline().arg("check").arg(&bad), LIMIT);
    assert_eq!(f.status.code(), Some(254));
    assert!(f.stderr.contains("h.jsonl:1:"), "{}", f.stderr);
    let f = run(
        faultline().args(["check", "--model", "bogus"]).arg(&bad),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254));
}

#[test]
fn check_of_a_run_directory_rejudges_under_the_model_asked_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        test_cmd(tmp.path())
            .args(["--workload", "txn-list-append"])
            .arg("--bin")
            .arg(fixture("maelstrom_node.py"))
            .args(["--", "--workload", "txn-list-append"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    // The run's history replaced by a non-repeatable read (as PostgreSQL
    // gives at READ COMMITTED): T1 reads key 1 as [1], then as [1, 2].
    let txn = |i: u64, p: u64, ty: &str, v: &str| {
        format!("{{\"index\":{i},\"time\":{},\"process\":{p},\"type\":\"{ty}\",\"f\":\"txn\",\"value\":{v}}}\n", i * 10)
    };
    let history = [
        txn(0, 0, "invoke", "[[\"append\",1,1]]"),
        txn(1, 0, "ok", "[[\"append\",1,1]]"),
        txn(
            2,
            1,
            "invoke",
            "[[\"r\",1,null],[\"append\",2,1],[\"r\",1,null]]",
        ),
        txn(3, 2, "invoke", "[[\"append\",1,2]]"),
        txn(4, 2, "ok", "[[\"append\",1,2]]"),
        txn(
            5,
            1,
            "ok",
            "[[\"r\",1,[1]],[\"append\",2,1],[\"r\",1,[1,2]]]",
        ),
    ]
    .concat();
    std::fs::write(dir.join("history.jsonl"), history).unwrap();
    let f = run(faultline().arg("check").arg(&dir), LIMIT);
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stdout.contains("internal under strict-serializable"),
        "{}",
        f.stdout
    );
    let f = run(
        faultline()
            .args(["check", "--consistency-model", "read-committed"])
            .arg(&dir),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stdout.contains("judged under --consistency-model read-committed (the run was recorded under strict-serializable)"),
        "{}",
        f.stdout
    );
    // Flags that only mean something for a history file are refused.
    let f = run(
        faultline().args(["check", "--model", "register"]).arg(&dir),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(254), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stderr
            .contains("--format and --model apply to a history file"),
        "{}",
        f.stderr
    );
}

#[test]
fn a_run_that_acknowledged_almost_nothing_says_so_and_is_not_valid() {
    let tmp = tempfile::tempdir().unwrap();
    // Every write refused (error 11), every read finds nothing: nothing
    // could have been lost, so nothing is judged.
    let f = run(
        test_cmd(tmp.path())
            .arg("--bin")
            .arg(fixture("linkv_node.py"))
            .args(["--", "--refuse-writes"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(2), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("UNKNOWN: none of"), "{}", f.stdout);
    assert!(f.stdout.contains("\nexercised: "), "{}", f.stdout);
    // Every request refused: the verdict line says the run exercised
    // almost nothing (liveness fails too: no final read succeeds).
    let f = run(
        test_cmd(tmp.path())
            .args(["--liveness-timeout", "1"])
            .arg("--bin")
            .arg(fixture("linkv_node.py"))
            .args(["--", "--refuse-all"]),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stdout.contains("only 0 of") && f.stdout.contains("this run exercised almost nothing"),
        "{}",
        f.stdout
    );
    let r = read_json(&latest(tmp.path()).join("results.json"));
    assert_eq!(r["ops"]["ok"], 0, "{}", r["ops"]);
}

#[test]
fn hand_written_schedules_name_nodes_as_the_history_does() {
    let tmp = tempfile::tempdir().unwrap();
    let schedule = tmp.path().join("s.json");
    std::fs::write(
        &schedule,
        r#"[{"at_ms":300,"action":{"f":"start-partition","shape":"isolate-one","cut":[["n1","n2"],["n2","n1"]]}},
            {"at_ms":900,"action":{"f":"stop-partition"}},
            {"at_ms":1000,"action":{"f":"kill","nodes":["n3"],"leader":false}},
            {"at_ms":1500,"action":{"f":"restart","nodes":["n3"]}}]"#,
    )
    .unwrap();
    let f = run(test_cmd(tmp.path()).arg("--schedule").arg(&schedule), LIMIT);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let history = std::fs::read_to_string(latest(tmp.path()).join("history.jsonl")).unwrap();
    assert!(
        history.contains(r#""f":"kill","value":{"nodes":["n3"],"reached":{"n3":["#),
        "{history}"
    );
    // A name that is no node's says which there are.
    std::fs::write(
        &schedule,
        r#"[{"at_ms":300,"action":{"f":"kill","nodes":["n9"],"leader":false}}]"#,
    )
    .unwrap();
    let f = run(test_cmd(tmp.path()).arg("--schedule").arg(&schedule), LIMIT);
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(
        f.stderr
            .contains(r#""n9" is not a node: nodes are n1, n2, n3, n4, n5"#),
        "{}",
        f.stderr
    );
}

#[test]
fn a_missing_server_binary_is_bad_usage_and_leaves_no_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let system = tmp.path().join("gone.toml");
    std::fs::write(
        &system,
        "name = \"gone\"\nbinary = \"faultline-no-such-server\"\n[ports]\npeer = 7000\n[ready]\ntcp = \"{ip}:{port.peer}\"\n[client]\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let results = tmp.path().join("results");
    let f = run(faultline_test(&results).arg("--system").arg(&system), LIMIT);
    assert_eq!(f.status.code(), Some(254), "{}", f.stderr);
    assert!(
        f.stderr
            .contains("binary \"faultline-no-such-server\" not found on PATH"),
        "{}",
        f.stderr
    );
    assert!(
        !f.stderr.contains("etcd"),
        "no other server's install hint: {}",
        f.stderr
    );
    assert!(
        !results.exists(),
        "no run directory for a run that never started"
    );
}

#[test]
fn warmup_holds_faults_back_and_keep_data_keeps_the_nodes_files() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        test_cmd(tmp.path())
            .args([
                "--workload",
                "g-set",
                "--nemesis",
                "kill",
                "--nemesis-interval",
                "0.3",
            ])
            .args(["--warmup", "1.2", "--keep-data"])
            .arg("--bin")
            .arg(fixture("maelstrom_node.py"))
            .args(["--", "--workload", "g-set", "--data", "{data_dir}"]),
        LIMIT,
    );
    let kept = f
        .stderr
        .lines()
        .find_map(|l| l.split("data directory under ").nth(1))
        .map(|p| std::path::PathBuf::from(p.trim_end_matches(" (--keep-data)")));
    let kept = kept.unwrap_or_else(|| panic!("the kept path is said: {}", f.stderr));
    let state = kept.join("n1/state.json");
    let kept_ok = state.exists();
    std::fs::remove_dir_all(&kept).unwrap();
    assert!(kept_ok, "{} was kept", state.display());
    // History times count from the cluster's start; the load's own
    // start and end are marked in it.
    let history = lines(&latest(tmp.path()).join("history.jsonl"));
    let at = |f: &str| {
        let e = history
            .iter()
            .find(|e| e["process"] == "harness" && e["f"] == f);
        e.unwrap_or_else(|| panic!("no {f} line"))["time"]
            .as_f64()
            .unwrap()
            / 1e9
    };
    let (start, end) = (at("load-start"), at("load-end"));
    let faults: Vec<f64> = history
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["f"] == "kill")
        .map(|e| e["time"].as_f64().unwrap() / 1e9 - start)
        .collect();
    assert!(!faults.is_empty(), "the kills ran");
    let within = |t: &f64| *t >= 1.2 && *t < end - start;
    assert!(
        faults.iter().all(within),
        "after the warm-up, within the load ({start:.2}..{end:.2} s): {faults:?}"
    );
}
