//! Each fault takes effect on real processes, and a replay has the same
//! schedule as its original.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn nemesis_run(results: &std::path::Path, nemesis: &str, seed: &str) -> Finished {
    let mut c = faultline();
    c.arg("test").arg("--results-dir").arg(results);
    c.args([
        "--time-limit",
        "8",
        "--rate",
        "200",
        "--nemesis",
        nemesis,
        "--nemesis-interval",
        "1.5",
        "--seed",
        seed,
    ]);
    c.args(["--recovery-time", "1", "--timeout-ms", "1000"]);
    run(&mut c, LIMIT)
}

fn nemesis_ops(history: &[Value]) -> Vec<&Value> {
    history
        .iter()
        .filter(|e| e["process"] == "nemesis")
        .collect()
}

#[test]
fn a_paused_node_answers_nothing_until_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let f = nemesis_run(tmp.path(), "pause", "3");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let h = lines(&dir.join("history.jsonl"));
    let nem = nemesis_ops(&h);
    assert!(nem.iter().any(|e| e["f"] == "pause"), "{nem:?}");
    let mut checked = 0;
    for pair in nem.windows(2) {
        let (p, r) = (pair[0], pair[1]);
        if p["f"] != "pause" || r["f"] != "resume" {
            continue;
        }
        let (t0, t1) = (p["time"].as_u64().unwrap(), r["time"].as_u64().unwrap());
        let paused: Vec<&Value> = p["value"]["nodes"].as_array().unwrap().iter().collect();
        // Completions from a paused node inside the pause window: none,
        // except for ops it answered before it was stopped (sent earlier).
        for e in &h {
            let t = e["time"].as_u64().unwrap_or(0);
            if e["type"] == "ok" && paused.contains(&&e["node"]) && t > t0 + 50_000_000 && t < t1 {
                let latency = e["latency_ns"].as_u64().unwrap();
                assert!(
                    t - latency < t0,
                    "a paused node answered an op sent during its pause: {e}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 0);
    assert_eq!(
        read_json(&dir.join("results.json"))["checkers"]["liveness"]["verdict"],
        "valid"
    );
}

#[test]
fn partitioned_links_carry_nothing_while_the_others_do() {
    let tmp = tempfile::tempdir().unwrap();
    let f = nemesis_run(tmp.path(), "partition", "5");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let h = lines(&dir.join("history.jsonl"));
    let start = h
        .iter()
        .find(|e| e["f"] == "start-partition")
        .expect("a partition started");
    let stop = h
        .iter()
        .find(|e| e["f"] == "stop-partition" && e["index"].as_u64() > start["index"].as_u64())
        .unwrap();
    let cut: Vec<(String, String)> = start["value"]["cut"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!cut.is_empty());
    let (t0, t1) = (
        start["time"].as_u64().unwrap(),
        stop["time"].as_u64().unwrap(),
    );
    let journal = lines(&dir.join("messages.jsonl"));
    let (mut blocked, mut carried) = (0, 0);
    for m in journal
        .iter()
        .filter(|m| (t0..t1).contains(&m["time"].as_u64().unwrap()))
    {
        let link = (
            m["src"].as_str().unwrap().to_string(),
            m["dest"].as_str().unwrap().to_string(),
        );
        if cut.contains(&link) {
            assert_eq!(m["fate"], "cut", "a cut link delivered {m}");
            blocked += 1;
        } else if m["fate"] == "delivered" {
            carried += 1;
        }
    }
    assert!(
        blocked > 0 && carried > 0,
        "blocked {blocked}, carried {carried}"
    );
}

#[test]
fn a_killed_node_restarts_on_its_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let f = nemesis_run(tmp.path(), "kill", "7");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let h = lines(&dir.join("history.jsonl"));
    let killed = h
        .iter()
        .find(|e| e["f"] == "kill")
        .expect("a kill happened");
    let victim = killed["value"]["nodes"][0].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(dir.join(format!("nodes/{victim}.log"))).unwrap();
    assert!(log.matches("started as pid").count() >= 2, "{log}");
    assert!(log.contains("killed by signal 9"), "{log}");
    // The restarted incarnation recovered a non-empty log from its data dir.
    let restarts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" starting: term "))
        .collect();
    assert!(restarts.len() >= 2);
    assert!(
        !restarts[1].contains("term 0,"),
        "the restart recovered its term: {}",
        restarts[1]
    );
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid", "{}", f.stdout);
    assert!(
        results["unexpected_exits"].as_array().unwrap().is_empty(),
        "nemesis kills are expected"
    );
    assert!(survivors(&node_pids(&dir), Duration::from_secs(5)).is_empty());
}

#[test]
fn message_faults_drop_duplicate_and_corrupt_and_the_node_survives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let f = nemesis_run(tmp.path(), "messages", "11");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let results = read_json(&latest(tmp.path()).join("results.json"));
    let net = &results["network"];
    assert!(net["dropped"].as_u64().unwrap() > 0, "{net}");
    assert_eq!(results["verdict"], "valid");
}

#[test]
fn a_replay_has_the_same_schedule_as_its_original() {
    let tmp = tempfile::tempdir().unwrap();
    let f = nemesis_run(tmp.path(), "partition,kill", "13");
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let first = latest(tmp.path());
    let f = run(
        faultline()
            .arg("test")
            .arg("--results-dir")
            .arg(tmp.path())
            .arg("--replay")
            .arg(&first),
        LIMIT,
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let second = latest(tmp.path());
    assert_ne!(first, second);
    let (a, b) = (
        read_json(&first.join("test.json")),
        read_json(&second.join("test.json")),
    );
    assert_eq!(a["schedule"], b["schedule"]);
    assert_eq!(a["seed"], b["seed"]);
    assert!(!a["schedule"].as_array().unwrap().is_empty());
    let fs = |d: &std::path::Path| -> Vec<String> {
        lines(&d.join("history.jsonl"))
            .iter()
            .filter(|e| e["process"] == "nemesis")
            .map(|e| e["f"].to_string())
            .collect()
    };
    assert_eq!(fs(&first), fs(&second));
}

#[test]
fn a_crash_loses_what_a_kill_keeps_and_no_fsync_is_caught_by_it() {
    if !fuse_or_skip("a_crash_loses_what_a_kill_keeps") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Its runs keep their data under the test's own folder, so a mount
    // another test's killed harness left elsewhere is not counted here.
    let go = |nemesis: &str, bug: bool| {
        let mut c = faultline_test(tmp.path());
        c.env("TMPDIR", tmp.path());
        c.args([
            "--time-limit",
            "10",
            "--nemesis-interval",
            "1",
            "--seed",
            "1",
            "--nemesis",
            nemesis,
        ]);
        if bug {
            c.args(["--", "--bug", "no-fsync"]);
        }
        run(&mut c, Duration::from_secs(120))
    };
    // The correct node syncs what it acknowledges: a crash costs it nothing.
    let f = go("crash,partition", false);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    // A node that never fsyncs survives kills (the kernel keeps its page
    // cache) and is caught by crashes.
    let f = go("kill", true);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let f = go("crash:majority+all", true);
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let lost = lines(&dir.join("history.jsonl"))
        .into_iter()
        .filter(|e| e["f"] == "crash")
        .flat_map(|e| {
            e["value"]["effects"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .any(|n| n["lost"].as_array().is_some_and(|l| !l.is_empty()));
    assert!(lost, "the history names what a crash lost");
    let left = layers_left_under(tmp.path());
    assert!(left.is_empty(), "every layer unmounted: {left:?}");
}

#[test]
fn disk_faults_name_the_damage_and_the_correct_node_fails_stop_and_stays_valid() {
    // No FUSE needed: the node is down while its file is damaged.
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        faultline_test(tmp.path()).args([
            "--time-limit",
            "8",
            "--nemesis-interval",
            "1",
            "--seed",
            "1",
            "--nemesis",
            "disk:flip+minority",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stdout.contains("refusal(s) to start (fail-stop)"),
        "{}",
        f.stdout
    );
    assert!(
        !f.stdout.contains("crash(es)"),
        "a refusal is not a crash: {}",
        f.stdout
    );
    let dir = latest(tmp.path());
    let history = lines(&dir.join("history.jsonl"));
    let damaged: Vec<&serde_json::Value> = history
        .iter()
        .filter(|e| e["f"] == "damage-disk")
        .flat_map(|e| e["value"]["effects"].as_array().unwrap())
        .filter(|e| e.get("file").is_some())
        .collect();
    assert!(!damaged.is_empty(), "no file was damaged");
    for d in &damaged {
        assert!(d["file"].as_str().is_some_and(|f| !f.is_empty()), "{d}");
        assert!(
            d["offset"].as_u64().unwrap() < d["file_bytes"].as_u64().unwrap(),
            "{d}"
        );
        assert!((1..=8).contains(&d["length"].as_u64().unwrap()), "{d}");
    }
    let refused = history
        .iter()
        .filter(|e| e["f"] == "restart-damaged")
        .any(|e| {
            e["value"]["refused_to_start"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        });
    assert!(refused, "a node with a flipped WAL refuses to start");
    let log = (1..=5)
        .map(|i| std::fs::read_to_string(dir.join(format!("nodes/n{i}.log"))).unwrap())
        .collect::<String>();
    assert!(log.contains("refusing to start rather than serve wrong data"));
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("refused to start (fail-stop)") && report.contains(" flip"));
}

#[test]
fn the_target_node_runs_transactions_strict_serializably_under_every_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        faultline_test(tmp.path()).args([
            "--workload",
            "txn-list-append",
            "--time-limit",
            "8",
            "--nemesis",
            "all",
            "--nemesis-interval",
            "1",
            "--seed",
            "3",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let r = read_json(&latest(tmp.path()).join("results.json"));
    let t = &r["checkers"]["transactions"];
    assert_eq!(t["verdict"], "valid", "{t}");
    assert!(t["committed"].as_u64().unwrap() > 100, "{t}");
}

#[test]
fn faultline_check_names_a_transaction_cycle_edge_by_edge() {
    // Read skew, written by hand in Jepsen's EDN.
    let f = run(
        faultline()
            .arg("check")
            .arg("--json")
            .arg(fixture("read_skew.edn")),
        Duration::from_secs(30),
    );
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    let out: serde_json::Value = serde_json::from_str(&f.stdout).unwrap();
    let report = &out["files"][0]["report"];
    assert_eq!(report["anomaly_types"][0], "G-single-item", "{report}");
    let steps = report["anomalies"][0]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["kind"] == "rw") && steps.iter().any(|s| s["kind"] == "wr"));
}

/// The membership nemesis changes who is in the cluster through the
/// node's own requests, records each change with the system's answer and
/// the membership it reports, stops removed nodes, and keeps the correct
/// node valid; switching configurations with no joint phase is caught.
#[test]
fn membership_changes_are_recorded_and_a_direct_switch_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let r = nemesis_run(dir.path(), "membership", "3");
    assert!(r.status.success(), "{}\n{}", r.stdout, r.stderr);
    let run_dir = latest(dir.path());
    let history = lines(&run_dir.join("history.jsonl"));
    let changes: Vec<&Value> = nemesis_ops(&history)
        .into_iter()
        .filter(|e| e["f"].as_str().unwrap().starts_with("member-"))
        .collect();
    assert!(changes.len() >= 2, "{changes:?}");
    for c in &changes {
        let v = &c["value"];
        assert!(
            v["members"].is_array() && v.get("reported").is_some(),
            "{c}"
        );
    }
    assert!(
        changes.iter().any(|c| c["value"]["answer"] == "ok"),
        "no change was made: {changes:?}"
    );
    let settled: Vec<&Value> = history
        .iter()
        .filter(|e| e["f"] == "membership-settled")
        .collect();
    assert!(
        settled.iter().any(|e| e["value"]["agree"] == true),
        "{settled:?}"
    );
    let test = read_json(&run_dir.join("test.json"));
    assert_eq!(test["cluster_size"], serde_json::json!([5, 7]));
    let traces = std::fs::read_to_string(run_dir.join("traces.jsonl")).unwrap();
    assert!(traces.contains(r#""event":"config""#));
    let report = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(report.contains("<h2>Membership</h2>"));

    // The planted bug: a replace switches straight to the new configuration.
    let mut c = faultline_test(dir.path());
    c.args([
        "--time-limit",
        "8",
        "--nemesis",
        "membership:replace",
        "--seed",
        "1",
    ]);
    c.args(["--nemesis-interval", "1.5", "--", "--bug", "direct-config"]);
    let r = run(&mut c, LIMIT);
    assert_eq!(r.status.code(), Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("straight to"), "{}", r.stdout);

    // A node not known to change membership is refused when it is named.
    let mut c = faultline_test(dir.path());
    c.args(["--nemesis", "membership", "--bin"])
        .arg(fixture("maelstrom_node.py"));
    let r = run(&mut c, LIMIT);
    assert_eq!(r.status.code(), Some(254), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("membership refused"), "{}", r.stderr);
}

/// Once membership changes moved the cluster off the places the schedule
/// was drawn for, each partition is drawn anew over the members at hand:
/// it cuts something, only between members, and a ring of majorities is
/// still one; the correct node stays valid.
#[test]
fn partitions_are_refit_to_a_cluster_that_grew_or_shrank() {
    let dir = tempfile::tempdir().unwrap();
    let mut refits = 0;
    for seed in ["2", "5"] {
        let mut c = faultline_test(dir.path());
        c.args(["--time-limit", "12", "--rate", "100", "--seed", seed])
            .args([
                "--nemesis",
                "membership,partition",
                "--nemesis-interval",
                "1",
            ])
            .args(["--recovery-time", "1", "--timeout-ms", "1000"]);
        let r = run(&mut c, LIMIT);
        assert_eq!(r.status.code(), Some(0), "{}\n{}", r.stdout, r.stderr);
        let history = lines(&latest(dir.path()).join("history.jsonl"));
        for p in nemesis_ops(&history)
            .into_iter()
            .filter(|e| e["f"] == "start-partition" && e["value"]["refit"].is_object())
        {
            refits += 1;
            let v = &p["value"];
            let members: Vec<&str> = v["refit"]["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            let cut: Vec<(&str, &str)> = v["cut"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l[0].as_str().unwrap(), l[1].as_str().unwrap()))
                .collect();
            assert!(!cut.is_empty(), "a refit partition cut nothing: {p}");
            assert!(
                cut.iter()
                    .all(|(a, b)| members.contains(a) && members.contains(b)),
                "{p}"
            );
            if v["refit"]["shape"] == "majorities-ring" {
                for m in &members {
                    let heard = members
                        .iter()
                        .filter(|j| *j == m || !cut.contains(&(**j, *m)))
                        .count();
                    assert!(heard > members.len() / 2, "{m} hears {heard}: {p}");
                }
            }
        }
    }
    assert!(refits >= 2, "only {refits} partitions came after a change");
}
