//! A node is every process it starts: a supervisor's database in a session
//! of its own, or a double-forked daemon, is frozen, killed and crashed with
//! its node, and nothing of a run is alive after it, also after SIGKILL of
//! faultline. What is tested is what /proc says of the processes, not what
//! the history says.

use crate::support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether faultline can make control groups here (root, cgroups mounted):
/// elsewhere nodes fall back to process groups, which a setsid child
/// escapes by design, and these tests have nothing to show.
fn cgroups_or_skip(test: &str) -> bool {
    let writable = nix::unistd::Uid::effective().is_root()
        && (Path::new("/sys/fs/cgroup/freezer").is_dir()
            || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            || Path::new("/sys/fs/cgroup/unified").is_dir());
    available_or_skip(test, writable, "writable control groups (root)")
}

/// A pause of n1 long enough to sample, then a kill of n2 and a restart.
const PAUSE_THEN_KILL: &str = r#"[
  {"at_ms": 1000, "action": {"f": "pause", "nodes": ["n1"]}},
  {"at_ms": 3000, "action": {"f": "resume", "nodes": ["n1"]}},
  {"at_ms": 3500, "action": {"f": "kill", "nodes": ["n2"]}},
  {"at_ms": 4500, "action": {"f": "restart", "nodes": ["n2"]}},
  {"at_ms": 5000, "action": {"f": "pause", "nodes": ["n3"]}},
  {"at_ms": 6500, "action": {"f": "resume", "nodes": ["n3"]}}
]"#;

fn supervised(results: &Path, mode: &str, nemesis: &str, secs: u32) -> std::process::Command {
    let mut c = faultline_test(results);
    c.arg("--system")
        .arg(fixture("pykv_supervised.toml"))
        .args(["--node-count", "3", "--nemesis", nemesis])
        .args(["--time-limit", &secs.to_string(), "--nemesis-interval", "1"])
        .args(["--var", &format!("mode={mode}"), "--seed", "1"])
        .arg("--var")
        .arg(format!("pids={}", results.join("db").display()))
        .env("TMPDIR", results);
    c
}

/// Every database pid the supervisors started, from their pid files.
fn database_pids(results: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for node in ["n1", "n2", "n3"] {
        let text = std::fs::read_to_string(results.join(format!("db.{node}"))).unwrap_or_default();
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    pids
}

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn reached(op: &serde_json::Value) -> BTreeSet<i32> {
    op["value"]["reached"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_i64().map(|p| p as i32))
        .collect()
}

/// Samples /proc while a run pauses nodes: each time a supervisor is seen
/// frozen (state D or T), its database must be frozen too. Returns how
/// many samples saw a whole node frozen.
fn watch_freezes(
    results: &Path,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, Vec<String>)> {
    let results = results.to_path_buf();
    std::thread::spawn(move || {
        let (mut whole, mut split) = (0u32, Vec::new());
        // Bounded: at most 60 s of 10 ms samples.
        for _ in 0..6000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let dirs = std::fs::read_dir(results.join("lin-kv"))
                .into_iter()
                .flatten()
                .flatten();
            for run in dirs {
                for (node, sup) in node_pids_by_node(&run.path()) {
                    let dbs = std::fs::read_to_string(results.join(format!("db.{node}")))
                        .unwrap_or_default();
                    let Some(db) = dbs.lines().last().and_then(|l| l.trim().parse().ok()) else {
                        continue;
                    };
                    if db == sup {
                        continue; // a pid reused by a later incarnation
                    }
                    // D or T in /proc (cgroup v1's freezer, SIGSTOP); under
                    // cgroup2 a frozen task shows S, and its group says so.
                    let frozen = |p: i32, s: Option<char>| {
                        matches!(s, Some('D') | Some('T')) || group_settled_frozen(p)
                    };
                    // The database is read before and after the supervisor:
                    // a freeze or thaw between two reads is not a split.
                    let (before, s, after) = (state(db), state(sup), state(db));
                    // While a freeze is under way tasks stop one by one:
                    // only a settled freeze must hold every process.
                    if !group_settled_frozen(sup) {
                        continue;
                    }
                    match (frozen(sup, s), frozen(db, before) || frozen(db, after), alive(db)) {
                        (true, true, _) => whole += 1,
                        (true, false, true) => split.push(format!(
                            "{node}: supervisor {sup} frozen, database {db} {before:?} then {after:?}"
                        )),
                        _ => {}
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (whole, split)
    })
}

/// Whether the kernel says `pid`'s control group has settled frozen (v1
/// freezer `FROZEN`, or cgroup2 `frozen 1`); `false` while it is still
/// freezing, when tasks are stopped one by one.
fn group_settled_frozen(pid: i32) -> bool {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(c), Some(path)) = (controllers, path) else {
            continue;
        };
        if c.split(',').any(|c| c == "freezer") {
            let state = format!("/sys/fs/cgroup/freezer{path}/freezer.state");
            return std::fs::read_to_string(state).is_ok_and(|s| s.trim() == "FROZEN");
        }
        if c.is_empty() {
            let events = format!("/sys/fs/cgroup/unified{path}/cgroup.events");
            if std::fs::read_to_string(events).is_ok_and(|s| s.contains("frozen 1")) {
                return true;
            }
        }
    }
    false
}

/// Each node's newest server pid, from its log's header lines.
fn node_pids_by_node(run_dir: &Path) -> Vec<(String, i32)> {
    ["n1", "n2", "n3"]
        .iter()
        .filter_map(|n| {
            let text = std::fs::read_to_string(run_dir.join(format!("nodes/{n}.log"))).ok()?;
            let pid = text
                .lines()
                // The harness's header lines only (the supervisor's own
                // "database started as pid" lines are not the node).
                .filter(|l| l.starts_with("=== faultline: "))
                .filter_map(|l| {
                    l.split_once(" started as pid ")?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .next_back()?;
            Some((n.to_string(), pid))
        })
        .collect()
}

fn assert_nothing_left(results: &Path, run_dir: &Path) {
    let mut pids = database_pids(results);
    pids.extend(node_pids(run_dir));
    let left = survivors(&pids, Duration::from_secs(5));
    reap(&left);
    assert!(left.is_empty(), "processes {left:?} outlived the run");
}

/// A finished run: nothing of it alive, a verdict given; its directory
/// and every database pid its supervisors started.
fn finished(results: &Path, f: &Finished) -> (std::path::PathBuf, BTreeSet<i32>) {
    let dir = latest(results);
    assert_nothing_left(results, &dir);
    assert!(
        matches!(f.status.code(), Some(0) | Some(1)),
        "{}{}",
        f.stdout,
        f.stderr
    );
    (dir, database_pids(results).into_iter().collect())
}

#[test]
fn a_database_in_its_own_session_is_paused_and_killed_with_its_node() {
    if !cgroups_or_skip("a_database_in_its_own_session_is_paused_and_killed_with_its_node") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_freezes(tmp.path(), stop.clone());
    let schedule = tmp.path().join("schedule.json");
    std::fs::write(&schedule, PAUSE_THEN_KILL).unwrap();
    let f = run(
        supervised(tmp.path(), "setsid", "pause,kill", 7)
            .arg("--schedule")
            .arg(&schedule),
        Duration::from_secs(120),
    );
    stop.store(true, Ordering::SeqCst);
    let (whole, split) = watcher.join().unwrap();
    let (dir, dbs) = finished(tmp.path(), &f);
    assert!(
        split.is_empty(),
        "a supervisor froze without its database: {split:?}"
    );
    assert!(
        whole > 0,
        "no sample saw a paused node frozen whole\n{}",
        f.stderr
    );
    let pauses = nemesis_ops(&dir, "pause");
    assert!(!pauses.is_empty(), "{}", f.stderr);
    for p in &pauses {
        assert!(
            reached(p).intersection(&dbs).next().is_some(),
            "a pause missed the database: {p}"
        );
    }
    let kills = nemesis_ops(&dir, "kill");
    assert!(!kills.is_empty(), "{}", f.stderr);
    for k in &kills {
        let hit = reached(k);
        assert!(
            hit.intersection(&dbs).next().is_some(),
            "a kill missed the database: {k}"
        );
    }
    // Each kill ended a database, and the supervisors started new ones.
    assert!(dbs.len() > 3, "no database was ever restarted: {dbs:?}");
}

#[test]
fn a_double_forked_daemon_is_crashed_with_its_node() {
    if !cgroups_or_skip("a_double_forked_daemon_is_crashed_with_its_node")
        || !fuse_or_skip("a_double_forked_daemon_is_crashed_with_its_node")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = run(
        &mut supervised(tmp.path(), "daemon", "crash", 8),
        Duration::from_secs(120),
    );
    let (dir, dbs) = finished(tmp.path(), &f);
    let crashes = nemesis_ops(&dir, "crash");
    assert!(!crashes.is_empty(), "{}", f.stderr);
    for c in &crashes {
        assert!(
            reached(c).intersection(&dbs).next().is_some(),
            "a crash missed the daemon: {c}"
        );
    }
    assert!(
        dbs.len() > 3,
        "no daemon was restarted after a crash: {dbs:?}"
    );
}

#[test]
fn sigkill_of_faultline_leaves_no_database_alive() {
    if !cgroups_or_skip("sigkill_of_faultline_leaves_no_database_alive") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = supervised(tmp.path(), "setsid", "none", 60);
    let (mut child, _lines) = start_until_nodes_up(&mut cmd, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let dbs = database_pids(tmp.path());
    assert_eq!(dbs.len(), 3, "three databases started");
    assert!(dbs.iter().all(|&p| alive(p)));
    let _ = child.kill();
    let _ = child.wait();
    // The nodes die with their parent; the databases, in sessions of their
    // own, are ended by the reaper.
    let left = survivors(&dbs, Duration::from_secs(10));
    reap(&left);
    assert!(
        left.is_empty(),
        "databases {left:?} outlived a SIGKILLed faultline"
    );
    assert_nothing_left(tmp.path(), &latest(tmp.path()));
}

/// A kill of a paused node (its group frozen) ends it at once: a frozen
/// task cannot die under cgroup v1 until it is thawed, and a process's
/// group cannot thaw while its node's is frozen, so such a kill used to
/// wait out its 5 s bound and leave the node's processes behind. A kill of
/// one process of a paused node leaves the rest of it paused.
#[test]
fn a_paused_node_is_killed_at_once() {
    if !cgroups_or_skip("a_paused_node_is_killed_at_once") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let schedule = schedule_file(
        tmp.path(),
        r#"[{"at_ms":1000,"action":{"f":"pause","nodes":["n1"]}},
            {"at_ms":1500,"action":{"f":"kill","nodes":["n1"]}},
            {"at_ms":2400,"action":{"f":"resume","nodes":["n1"]}},
            {"at_ms":2500,"action":{"f":"restart","nodes":["n1"]}}]"#,
    );
    let f = run(
        faultline_test(tmp.path())
            .args(["--time-limit", "4", "--nemesis", "pause,kill", "--schedule"])
            .arg(&schedule),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(!f.stderr.contains("did not settle"), "{}", f.stderr);
    let kills = nemesis_ops(&latest(tmp.path()), "kill");
    assert_eq!(kills.len(), 1, "{kills:?}");
    // A frozen kill waits out its 5 s bound (done at 6.5 s); one that
    // thaws first is done within moments, up to ~0.7 s on a loaded CI
    // machine (2.15 s once), so the line is drawn between the two.
    let at_ms = kills[0]["time"].as_u64().unwrap() / 1_000_000;
    assert!(at_ms < 4_500, "the kill took until {at_ms} ms");
    assert_nothing_left(tmp.path(), &latest(tmp.path()));
}

/// A member removed (and added back) while paused leaves and comes back at
/// once. It used to be killed frozen, and each of the two stalled the
/// nemesis 15 s: under `all`, 62 of 104 runs met such stalls and lost
/// their faults' timing. Seed 1 picks n2, one of the paused nodes.
#[test]
fn a_paused_member_is_removed_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let schedule = schedule_file(
        tmp.path(),
        r#"[{"at_ms":1000,"action":{"f":"pause","nodes":["n1","n2"]}},
            {"at_ms":1500,"action":{"f":"member-remove","seed":1}},
            {"at_ms":2500,"action":{"f":"membership-settled"}},
            {"at_ms":3000,"action":{"f":"resume","nodes":["n1","n2"]}}]"#,
    );
    let f = run(
        faultline_test(tmp.path())
            .args(["--time-limit", "4", "--nemesis", "pause,membership"])
            .arg("--schedule")
            .arg(&schedule),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let run_dir = latest(tmp.path());
    let changes = nemesis_ops(&run_dir, "member-remove");
    assert_eq!(changes.len(), 1, "{changes:?}");
    let v = &changes[0]["value"];
    assert_eq!(v["remove"]["node"], "n2", "seed 1 no longer picks n2: {v}");
    assert_eq!(v["remove"]["answer"], "ok", "{v}");
    let at_ms = changes[0]["time"].as_u64().unwrap() / 1_000_000;
    assert!(at_ms < 2_500, "the change took until {at_ms} ms: {v}");
    assert_eq!(nemesis_ops(&run_dir, "membership-settled").len(), 1);
    assert_nothing_left(tmp.path(), &run_dir);
}
