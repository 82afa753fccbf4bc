//! Faults aimed at protocol moments, on real processes: a trigger fires
//! soon after the trace event it waits for and hits the node it names; it
//! falls back to the clock, saying so, for nodes that emit no traces; and
//! the Raft paper's Figure 8 is played through triggers to the data loss
//! it describes.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(150);
/// How long after its trace event a fired fault may be applied. It is
/// about a millisecond here; the bound leaves room for a loaded machine.
const FIRE_BOUND_NS: u64 = 500_000_000;

fn write_schedule(dir: &Path, steps: &Value) -> std::path::PathBuf {
    let file = dir.join("schedule.json");
    std::fs::write(&file, serde_json::to_string_pretty(steps).unwrap()).unwrap();
    file
}

fn nemesis_ops(dir: &Path) -> Vec<Value> {
    lines(&dir.join("history.jsonl"))
        .into_iter()
        .filter(|e| e["process"] == "nemesis")
        .collect()
}

/// Pause the leader by the clock and kill the first node that votes in
/// the election that follows; then kill the leader by the clock and pause
/// whoever wins the next election the moment it does.
fn moment_schedule() -> Value {
    let on = |moment: &str| json!({"moment": moment, "within_ms": 3000});
    json!([
        {"at_ms": 1000, "action": {"f": "pause", "nodes": [], "leader": true}},
        {"at_ms": 1001, "action": {"f": "kill", "nodes": [], "leader": false, "moment": true}, "on": on("on-vote")},
        {"at_ms": 1500, "action": {"f": "restart", "nodes": []}},
        {"at_ms": 1600, "action": {"f": "resume", "nodes": []}},
        {"at_ms": 2500, "action": {"f": "kill", "nodes": [], "leader": true}},
        {"at_ms": 2501, "action": {"f": "pause", "nodes": [], "leader": true}, "on": on("on-elect")},
        {"at_ms": 4000, "action": {"f": "restart", "nodes": []}},
        {"at_ms": 4100, "action": {"f": "resume", "nodes": []}},
    ])
}

#[test]
fn a_trigger_fires_soon_after_its_moment_and_hits_its_node() {
    let tmp = tempfile::tempdir().unwrap();
    let schedule = write_schedule(tmp.path(), &moment_schedule());
    let mut c = faultline_test(tmp.path());
    c.args(["--time-limit", "7", "--seed", "5", "--timeout-ms", "500"])
        .arg("--schedule")
        .arg(&schedule);
    let f = run(&mut c, LIMIT);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let dir = latest(tmp.path());
    let nem = nemesis_ops(&dir);
    let fired: Vec<&Value> = nem
        .iter()
        .filter(|e| e["value"]["moment"].is_object())
        .collect();
    assert_eq!(fired.len(), 2, "{nem:#?}");
    for e in &fired {
        let m = &e["value"]["moment"];
        assert!(m["fallback"].is_null(), "fired by the clock: {e}");
        let lag = e["time"].as_u64().unwrap() - m["event_ns"].as_u64().unwrap();
        assert!(lag < FIRE_BOUND_NS, "applied {lag} ns after its event: {e}");
        // The paused leader is the one just elected; the killed node is
        // the one that just voted.
        assert_eq!(e["value"]["nodes"], json!([m["node"]]), "{e}");
    }
    assert_eq!(fired[0]["f"], "kill");
    assert_eq!(fired[0]["value"]["moment"]["event"], "vote");
    assert_eq!(fired[1]["f"], "pause");
    assert_eq!(fired[1]["value"]["moment"]["event"], "leader");
    // The triggers travel in test.json, so a replay arms them again.
    let cfg = read_json(&dir.join("test.json"));
    assert_eq!(cfg["schedule"][1]["on"]["moment"], "on-vote");
    let again = tempfile::tempdir().unwrap();
    let mut r = faultline_test(again.path());
    r.arg("--replay").arg(&dir);
    let f = run(&mut r, LIMIT);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let replayed = nemesis_ops(&latest(again.path()));
    let events: Vec<&Value> = replayed
        .iter()
        .filter_map(|e| e["value"]["moment"]["event"].as_str().map(|_| &e["f"]))
        .collect();
    assert_eq!(events, [&json!("kill"), &json!("pause")], "{replayed:#?}");
}

#[test]
fn nodes_without_traces_fire_by_the_clock_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let on = json!({"moment": "on-elect", "within_ms": 3000});
    let steps = json!([
        {"at_ms": 500, "action": {"f": "kill", "nodes": [], "leader": true}, "on": on},
        {"at_ms": 1500, "action": {"f": "restart", "nodes": []}},
    ]);
    let schedule = write_schedule(tmp.path(), &steps);
    let mut c = faultline_test(tmp.path());
    c.args([
        "--workload",
        "g-set",
        "--time-limit",
        "3",
        "--node-count",
        "3",
    ])
    .arg("--schedule")
    .arg(&schedule)
    .arg("--bin")
    .arg(fixture("maelstrom_node.py"))
    .args(["--", "--workload", "g-set", "--data", "{data_dir}"]);
    let f = run(&mut c, LIMIT);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let nem = nemesis_ops(&latest(tmp.path()));
    let kill = nem
        .iter()
        .find(|e| e["f"] == "kill")
        .expect("the kill applied");
    let m = &kill["value"]["moment"];
    assert!(
        m["fallback"].as_str().unwrap().contains("no trace events"),
        "{kill}"
    );
    // Not held back waiting for a moment that cannot come.
    assert!(m["waited_ms"].as_u64().unwrap() < 500, "{kill}");
}

/// Figure 8 on three nodes, with `--bug commit-prior-term` (which also
/// drops the election no-op): isolate the leader L1 while it holds
/// uncommitted entries; the moment the others elect L2, isolate L2 and
/// reconnect L1, so L1 (with the longest log) wins again and commits its
/// old-term entries by counting replicas; the moment it commits, kill it
/// and reconnect L2, whose newer last term wins it the next election, and
/// it overwrites what L1 committed and applied. Returns the run directory.
fn figure8(results: &Path, bug: Option<&str>) -> std::path::PathBuf {
    let schedule = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/scenarios/figure8.json");
    let mut c = faultline_test(results);
    c.args(["--node-count", "3", "--time-limit", "30", "--seed", "1"])
        .args(["--timeout-ms", "300"])
        .arg("--schedule")
        .arg(&schedule);
    if let Some(b) = bug {
        c.args(["--", "--bug", b]);
    }
    let f = run(&mut c, LIMIT);
    assert!(!f.stderr.contains("panicked"), "{}{}", f.stdout, f.stderr);
    latest(results)
}

/// The trace line a moment fired on: (node, time) to the line.
fn traced(dir: &Path, node: &Value, time: &Value) -> Value {
    lines(&dir.join("traces.jsonl"))
        .into_iter()
        .find(|l| &l["node"] == node && &l["time"] == time)
        .unwrap_or_else(|| panic!("no trace line of {node} at {time}"))
}

#[test]
fn figure8_through_triggers_runs_its_steps_in_order_and_catches_what_it_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = figure8(tmp.path(), Some("commit-prior-term"));
    let nem = nemesis_ops(&dir);
    let mut prior_term_commits = 0;
    let mut cycles = 0;
    for (i, e) in nem.iter().enumerate() {
        let m = &e["value"]["moment"];
        if m["fallback"].is_string() {
            continue;
        }
        match (e["f"].as_str(), m["on"].as_str()) {
            // The newly elected leader is the one isolated next.
            (Some("stop-partition"), Some("on-elect")) => {
                let next = &nem[i + 1];
                assert_eq!(next["f"], "start-partition", "{next}");
                let cut = next["value"]["cut"].as_array().unwrap();
                assert!(
                    cut.iter().all(|l| l[0] == m["node"] || l[1] == m["node"]),
                    "{next}"
                );
                cycles += 1;
            }
            // The leader that committed is the one killed, and the
            // partition heals on the same commit.
            (Some("kill"), Some("on-commit")) => {
                assert_eq!(e["value"]["nodes"], json!([m["node"]]), "{e}");
                assert_eq!(nem[i + 1]["f"], "stop-partition");
                assert_eq!(nem[i + 1]["value"]["moment"]["event_ns"], m["event_ns"]);
                let line = traced(&dir, &m["node"], &m["event_ns"]);
                if line["leader_term"].as_u64() > line["term"].as_u64() {
                    prior_term_commits += 1;
                }
            }
            _ => {}
        }
    }
    assert!(cycles >= 3, "{nem:#?}");
    // Whether a cycle reaches an old-term commit depends on a race no
    // trigger controls (a read held at L1 while no leader was known is
    // served the moment L1 is elected and appends an entry of its new
    // term); every cycle that does is caught.
    let results = read_json(&dir.join("results.json"));
    if prior_term_commits > 0 {
        assert_eq!(results["verdict"], "invalid", "{results:#}");
    }
    let good = read_json(&figure8(tmp.path(), None).join("results.json"));
    assert_eq!(good["verdict"], "valid", "{good:#}");
}

/// `faultline shrink` on a real failing run: it finds a smaller failing
/// configuration, writes it down, and its command line parses.
#[test]
fn shrink_finds_a_smaller_failing_run_and_prints_its_command() {
    let tmp = tempfile::tempdir().unwrap();
    // The precondition is a real failing run. Whether an 8 s run catches
    // the bug depends on timing the seed does not fix (CI once ran seed 3
    // VALID beside other tests), so up to three seeds are tried.
    let mut outputs = Vec::new();
    let mut caught = false;
    for seed in ["3", "4", "5"] {
        let mut c = faultline_test(tmp.path());
        // Ten clients, as the run this was tuned on had (four per node
        // is the default now); shrink halves them from there.
        c.args(["--time-limit", "8", "--seed", seed, "--rate", "300"])
            .args(["--concurrency", "10"])
            .args([
                "--nemesis",
                "partition:isolate-leader,pause",
                "--nemesis-interval",
                "0.5",
            ])
            .args(["--timeout-ms", "100", "--", "--bug", "local-read"]);
        let f = run(&mut c, LIMIT);
        outputs.push(format!("seed {seed}: {}{}", f.stdout, f.stderr));
        if f.status.code() == Some(1) {
            caught = true;
            break;
        }
        assert_eq!(f.status.code(), Some(0), "{}", outputs.join("\n"));
    }
    assert!(
        caught,
        "the bug is caught at one of three seeds: {}",
        outputs.join("\n")
    );
    let original = latest(tmp.path());
    let faults_before = read_json(&original.join("test.json"))["schedule"]
        .as_array()
        .unwrap()
        .len()
        / 2;
    let shrunk_root = tmp.path().join("shrunk");
    let mut s = faultline();
    s.arg("shrink")
        .arg(&original)
        .args(["--tries", "2", "--time-budget", "120", "--results-dir"])
        .arg(&shrunk_root);
    let f = run(&mut s, Duration::from_secs(400));
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stderr.contains("shrink: ["),
        "progress is shown: {}",
        f.stderr
    );
    let command = f
        .stdout
        .lines()
        .find(|l| l.starts_with("faultline test "))
        .unwrap_or_else(|| panic!("no command line in {}", f.stdout));
    let dir_line = f
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .unwrap();
    let dir = std::path::Path::new(dir_line);
    let summary = read_json(&dir.join("shrink.json"));
    assert_eq!(summary["command"], command);
    let after = summary["shrunk"]["faults"].as_u64().unwrap() as usize;
    assert!(
        after < faults_before || summary["shrunk"]["time_limit_s"].as_f64() < Some(8.0),
        "{summary:#}"
    );
    assert_eq!(read_json(&dir.join("results.json"))["verdict"], "invalid");
    assert!(
        command.contains("--schedule") && command.ends_with("-- --bug local-read"),
        "{command}"
    );
}
