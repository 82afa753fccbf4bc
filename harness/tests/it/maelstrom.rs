//! Maelstrom's workloads with a Maelstrom node written outside faultline
//! (`fixtures/maelstrom_node.py`): the correct node passes every fault of
//! `all`, and each planted bug is caught with its anomaly named.

use std::time::Duration;

use crate::support::*;

/// One run of the fixture on `workload`; returns (exit code, results.json).
fn go(workload: &str, nemesis: &str, bug: Option<&str>) -> (Option<i32>, serde_json::Value) {
    go_with(workload, nemesis, bug, &[], &[]).0
}

/// `go`, with more arguments for faultline and for the node; also returns
/// the run directory's files' names under nodes/.
fn go_with(
    workload: &str,
    nemesis: &str,
    bug: Option<&str>,
    node_args: &[&str],
    harness_args: &[&str],
) -> ((Option<i32>, serde_json::Value), Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = faultline_test(tmp.path());
    c.args(["--workload", workload, "--time-limit", "6", "--rate", "100"])
        .args(harness_args)
        .args([
            "--nemesis",
            nemesis,
            "--nemesis-interval",
            "1",
            "--seed",
            "1",
        ])
        .arg("--bin")
        .arg(fixture("maelstrom_node.py"))
        .args(["--", "--workload", workload, "--data", "{data_dir}"])
        .args(node_args);
    if let Some(b) = bug {
        c.args(["--bug", b]);
    }
    let f = run(&mut c, Duration::from_secs(120));
    let dir = latest(tmp.path());
    let results = read_json(&dir.join("results.json"));
    assert!(
        !f.stderr.contains("panicked"),
        "{workload}: {}{}",
        f.stdout,
        f.stderr
    );
    let mut logs: Vec<String> = std::fs::read_dir(dir.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    logs.sort();
    // The report draws the workload's own section when it has one.
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap_or_default();
    let section = match workload {
        "broadcast" | "g-set" => Some("<h2>Set</h2>"),
        "g-counter" | "pn-counter" => Some("<h2>Counter</h2>"),
        "kafka" => Some("<h2>Kafka</h2>"),
        // A transaction anomaly is drawn as its cycle.
        "txn-list-append" | "txn-rw-register" if results["verdict"] == "invalid" => {
            Some("id=\"txn-cycle\"")
        }
        _ => None,
    };
    if let Some(h) = section {
        assert!(report.contains(h), "{workload}: the report has no {h}");
    }
    ((f.status.code(), results), logs)
}

/// Runs `cases` three at a time (each is five Python nodes).
fn in_parallel<T: Send>(cases: Vec<T>, each: impl Fn(T) + Sync) {
    let each = &each;
    let mut cases = cases.into_iter();
    loop {
        let batch: Vec<T> = cases.by_ref().take(3).collect();
        if batch.is_empty() {
            return;
        }
        std::thread::scope(|s| {
            for c in batch {
                s.spawn(move || each(c));
            }
        });
    }
}

#[test]
fn a_correct_maelstrom_node_passes_every_fault_on_every_workload() {
    let workloads = vec![
        "echo",
        "unique-ids",
        "broadcast",
        "g-set",
        "g-counter",
        "pn-counter",
    ];
    in_parallel(workloads, |w| {
        let (code, r) = go(w, "all", None);
        assert_eq!(code, Some(0), "{w}: {}", r["summary"]);
        assert!(r["ops"]["ok"].as_u64().unwrap() > 100, "{w}: {}", r["ops"]);
    });
}

#[test]
fn planted_bugs_in_maelstrom_workloads_are_caught_and_named() {
    // (workload, nemesis, bug, checker, detail that names the anomaly)
    let cases = vec![
        ("echo", "none", "echo-truncate", "echo", "mismatched"),
        (
            "unique-ids",
            "none",
            "dup-ids",
            "unique-ids",
            "duplicated_ids",
        ),
        (
            "broadcast",
            "partition",
            "gossip-once",
            "set-full",
            "lost_count",
        ),
        (
            "g-set",
            "messages:drop",
            "gossip-once",
            "set-full",
            "lost_count",
        ),
        (
            "g-counter",
            "messages:drop",
            "gossip-once",
            "counter",
            "final_out_of_bounds",
        ),
        (
            "pn-counter",
            "none",
            "drop-negative",
            "counter",
            "final_out_of_bounds",
        ),
    ];
    in_parallel(cases, |(w, nemesis, bug, checker, detail)| {
        let (code, r) = go(w, nemesis, Some(bug));
        assert_eq!(code, Some(1), "{w} --bug {bug}: {}", r["summary"]);
        let c = &r["checkers"][checker];
        assert_eq!(c["verdict"], "invalid", "{w}: {c}");
        let named = &c[detail];
        if detail == "anomalies" {
            assert!(named["inconsistent-offsets"][0].as_u64() > Some(0), "{c}");
        }
        assert!(
            named.as_u64().is_some_and(|n| n > 0)
                || named.as_array().is_some_and(|a| !a.is_empty()),
            "{w} --bug {bug}: {detail} is {named}"
        );
    });
}

#[test]
fn a_node_that_forgets_on_restart_is_caught_by_kill_with_what_it_lost_named() {
    // (workload, checker): each keeps acknowledged writes durably when
    // correct; with --bug wipe-on-restart a killed node forgets them. On
    // three nodes, so the kills of a 6 s run reach the node that holds
    // the kafka logs (at seed 1 on five they miss it).
    let cases = vec![
        ("kafka", "kafka"),
        ("g-set", "set-full"),
        ("pn-counter", "counter"),
        ("txn-list-append", "transactions"),
    ];
    let three = ["--node-count", "3"];
    in_parallel(cases, |(w, checker)| {
        let ((code, r), _) = go_with(w, "kill", Some("wipe-on-restart"), &[], &three);
        assert_eq!(code, Some(1), "{w} --bug wipe-on-restart: {}", r["summary"]);
        let c = &r["checkers"][checker];
        assert_eq!(c["verdict"], "invalid", "{w}: {c}");
        match w {
            // The lost messages are named: key, offset, message, when.
            "kafka" => {
                let lost = &c["anomalies"]["lost-write"];
                assert!(lost[0].as_u64() > Some(0), "{c}");
                let e = &lost[1][0];
                for field in ["key", "offset", "message", "acknowledged_s"] {
                    assert!(!e[field].is_null(), "{field} missing in {e}");
                }
            }
            "g-set" => assert!(c["lost_count"].as_u64() > Some(0), "{c}"),
            "pn-counter" => assert!(
                !c["final_out_of_bounds"].as_array().unwrap().is_empty(),
                "{c}"
            ),
            _ => assert!(!c["anomaly_types"].as_array().unwrap().is_empty(), "{c}"),
        }
        // The same seed and faults, the node correct: valid.
        let ((code, r), _) = go_with(w, "kill", None, &[], &three);
        assert_eq!(code, Some(0), "{w} correct: {}", r["summary"]);
    });
}

#[test]
fn a_crdt_that_gossips_every_five_seconds_is_judged_once_it_has_converged() {
    // Maelstrom's CRDT demos gossip every 5 s: after a partition heals,
    // the final reads wait Maelstrom's 10 s (the 2 s default had it
    // judged before it converged).
    // (workload, nemesis, node arguments, bug, expected exit code)
    type Case<'a> = (&'a str, &'a str, &'a [&'a str], Option<&'a str>, i32);
    let cases: Vec<Case> = vec![
        ("pn-counter", "partition", &["--gossip-every", "5"], None, 0),
        // Pushes each delta once and never gossips again: apart for good.
        ("pn-counter", "partition", &[], Some("gossip-once"), 1),
        // A counter read straight from seq-kv: each read may be stale, and
        // waiting does not help (only asking again would), so it is caught.
        ("g-counter", "none", &["--store", "seq-kv"], None, 1),
    ];
    in_parallel(cases, |(w, nemesis, node_args, bug, expected)| {
        let ((code, r), _) = go_with(w, nemesis, bug, node_args, &[]);
        assert_eq!(
            code,
            Some(expected),
            "{node_args:?} {bug:?}: {}",
            r["summary"]
        );
        assert_eq!(
            r["checkers"]["liveness"]["waited_after_healing_s"], 10.0,
            "{}",
            r["checkers"]["liveness"]
        );
    });
}

#[test]
fn services_and_forwarded_client_requests_work_as_under_maelstrom() {
    // A counter kept in the lin-kv service by read and cas.
    let ((code, r), _) = go_with("g-counter", "all", None, &["--store", "lin-kv"], &[]);
    assert_eq!(code, Some(0), "{}", r["summary"]);
    assert!(
        r["network"]["service_calls"].as_u64().unwrap() > 100,
        "{}",
        r["network"]
    );
    // Nodes that pass a client's request on with the client's src: the
    // first node answers the client directly.
    let ((code, r), _) = go_with("echo", "none", None, &["--forward"], &[]);
    assert_eq!(code, Some(0), "{}", r["summary"]);
    assert_eq!(r["ops"]["info"], 0, "{}", r["ops"]);
    assert_eq!(r["network"]["spoofed_src"], 0);
}

#[test]
fn nodes_can_be_named_from_n0_and_told_any_of_maelstroms_topologies() {
    let harness = [
        "--node-names",
        "n0",
        "--topology",
        "tree2",
        "--node-count",
        "4",
    ];
    let ((code, r), logs) = go_with("broadcast", "partition", None, &[], &harness);
    assert_eq!(code, Some(0), "{}", r["summary"]);
    assert_eq!(logs, ["n0.log", "n1.log", "n2.log", "n3.log"]);
    let finals = r["checkers"]["set-full"]["final_reads"]
        .as_object()
        .unwrap();
    assert!(
        finals.contains_key("n0") && !finals.contains_key("n4"),
        "{finals:?}"
    );
}
