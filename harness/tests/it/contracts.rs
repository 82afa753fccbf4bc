//! Golden files that every reader of a contract must read alike
//! (docs/protocol.md): a traces file with every event kind, read by the
//! Raft checker, the recorder that fires faults at protocol moments, and
//! the report's coverage.

use faultline_checker::raft;
use faultline_nemesis::Moment;
use faultline_net::recorder::Recorder;
use faultline_rundir::record::{Clock, Sink};
use faultline_rundir::TraceLine;
use serde_json::Value;
use std::path::Path;

fn golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../checker/tests/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// In the file: 2 leaders (4 votes in 2 elections), 3 commits that are a
/// leader's (n1's before any commit named its leader, n1's and n2's that
/// name it; n1's unnamed repeat after that is a follower's by the one
/// rule, which the report used to count), 1 snapshot, and one event of a
/// kind nobody knows.
#[test]
fn every_reader_of_a_traces_file_agrees() {
    let text = golden("traces-every-event.jsonl");
    let r = raft::check("traces-every-event.jsonl", &text).unwrap();
    assert_eq!(r.verdict, faultline_checker::Verdict::Valid, "{r:?}");
    assert_eq!(r.events, text.lines().count());
    assert_eq!(
        r.unknown_events.into_iter().collect::<Vec<_>>(),
        [("gossip".to_string(), 1)]
    );

    let lines: Vec<TraceLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [elections, leaders, leader_commits, snapshots] = faultline_report::states_occurred(&lines);
    assert_eq!(
        (elections, leaders, leader_commits, snapshots),
        (2, 2, 3, 1)
    );

    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::create(dir.path(), Clock::new(), 1000).unwrap();
    let mut moments = recorder.moments();
    for l in lines.iter().filter(|l| l.fields.get("source").is_none()) {
        let mut body = l.fields.clone();
        body.insert("type".into(), Value::from("trace"));
        recorder.trace(&l.node, &Value::Object(body));
    }
    let mut seen = Vec::new();
    while let Ok(s) = moments.try_recv() {
        seen.push(s.moment);
    }
    let count = |m: Moment| seen.iter().filter(|&&s| s == m).count();
    assert_eq!(count(Moment::Elect), leaders);
    assert_eq!(count(Moment::Commit), leader_commits);
    assert_eq!(count(Moment::Vote), 4);
}
