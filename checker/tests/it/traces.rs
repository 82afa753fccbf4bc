//! Each Raft invariant has a violating and a clean trace.

use faultline_checker::{raft, Verdict};

fn run(lines: &[&str]) -> raft::Report {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    raft::check("traces.jsonl", &text).unwrap()
}

fn violated(lines: &[&str], invariant: &str) -> raft::Violation {
    let r = run(lines);
    assert_eq!(r.verdict, Verdict::Invalid, "{lines:?}");
    let v = r
        .violations
        .into_iter()
        .find(|v| v.invariant == invariant)
        .expect(invariant);
    assert!(!v.lines.is_empty() && !v.nodes.is_empty());
    v
}

#[test]
fn election_safety() {
    let v = violated(
        &[
            r#"{"node":"n1","event":"leader","term":2}"#,
            r#"{"node":"n2","event":"leader","term":2}"#,
        ],
        "election-safety",
    );
    assert_eq!((v.terms, v.lines), (vec![2], vec![1, 2]));
    assert_eq!(
        run(&[
            r#"{"node":"n1","event":"leader","term":2}"#,
            r#"{"node":"n2","event":"leader","term":3}"#
        ])
        .verdict,
        Verdict::Valid
    );
}

#[test]
fn one_vote_per_term_across_restarts() {
    let v = violated(
        &[
            r#"{"node":"n1","event":"vote","term":4,"candidate":"n2"}"#,
            r#"{"node":"n1","event":"start"}"#,
            r#"{"node":"n1","event":"vote","term":4,"candidate":"n3"}"#,
        ],
        "one-vote-per-term",
    );
    assert_eq!(v.lines, vec![1, 3]);
    let clean = run(&[
        r#"{"node":"n1","event":"vote","term":4,"candidate":"n2"}"#,
        r#"{"node":"n1","event":"vote","term":4,"candidate":"n2"}"#,
        r#"{"node":"n1","event":"vote","term":5,"candidate":"n3"}"#,
    ]);
    assert_eq!(clean.verdict, Verdict::Valid);
}

#[test]
fn state_machine_safety() {
    violated(
        &[
            r#"{"node":"n1","event":"apply","index":3,"term":1,"digest":"aa"}"#,
            r#"{"node":"n2","event":"apply","index":3,"term":1,"digest":"bb"}"#,
        ],
        "state-machine-safety",
    );
    assert_eq!(
        run(&[
            r#"{"node":"n1","event":"apply","index":3,"term":1,"digest":"aa"}"#,
            r#"{"node":"n2","event":"apply","index":3,"term":1,"digest":"aa"}"#,
        ])
        .verdict,
        Verdict::Valid
    );
}

#[test]
fn commit_and_apply_never_go_backwards_within_a_life() {
    violated(
        &[
            r#"{"node":"n1","event":"commit","index":5,"term":1}"#,
            r#"{"node":"n1","event":"commit","index":4,"term":1}"#,
        ],
        "commit-monotonic",
    );
    violated(
        &[
            r#"{"node":"n1","event":"apply","index":5,"term":1,"digest":"a"}"#,
            r#"{"node":"n1","event":"apply","index":5,"term":1,"digest":"a"}"#,
        ],
        "apply-monotonic",
    );
    // A restart begins a new life: indices may start over.
    let clean = run(&[
        r#"{"node":"n1","event":"commit","index":5,"term":1}"#,
        r#"{"node":"n1","event":"apply","index":5,"term":1,"digest":"a"}"#,
        r#"{"node":"n1","event":"start"}"#,
        r#"{"node":"n1","event":"commit","index":2,"term":1}"#,
        r#"{"node":"n1","event":"apply","index":1,"term":1,"digest":"x"}"#,
    ]);
    assert_eq!(clean.verdict, Verdict::Valid, "{:?}", clean.violations);
}

#[test]
fn committed_entries_are_never_truncated() {
    violated(
        &[
            r#"{"node":"n1","event":"commit","index":5,"term":1}"#,
            r#"{"node":"n1","event":"truncate","from":3}"#,
        ],
        "committed-entry-truncated",
    );
    violated(
        &[
            r#"{"node":"n1","event":"commit","index":3,"term":2}"#,
            r#"{"node":"n2","event":"truncate","from":3,"term":2}"#,
        ],
        "committed-entry-truncated",
    );
    let clean = run(&[
        r#"{"node":"n1","event":"commit","index":3,"term":2}"#,
        r#"{"node":"n2","event":"truncate","from":4,"term":1}"#,
        r#"{"node":"n2","event":"truncate","from":3,"term":1}"#,
    ]);
    assert_eq!(clean.verdict, Verdict::Valid);
}

#[test]
fn a_leader_commits_only_its_own_terms_entries_by_counting() {
    let v = violated(
        &[
            r#"{"node":"n1","event":"leader","term":4}"#,
            r#"{"node":"n1","event":"commit","index":7,"term":2,"leader_term":4}"#,
        ],
        "leader-commits-own-term",
    );
    assert_eq!(
        (v.terms, v.indices, v.lines),
        (vec![4, 2], vec![7], vec![2])
    );
    // A follower learning the commit index may land on any term, and a
    // leader's own-term entry commits everything before it.
    let clean = run(&[
        r#"{"node":"n2","event":"commit","index":7,"term":2}"#,
        r#"{"node":"n1","event":"commit","index":9,"term":4,"leader_term":4}"#,
    ]);
    assert_eq!(clean.verdict, Verdict::Valid);
    let bad = raft::check(
        "t.jsonl",
        "{\"node\":\"n1\",\"event\":\"commit\",\"index\":7,\"term\":2,\"leader_term\":\"x\"}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("t.jsonl") && bad.contains("leader_term"),
        "{bad}"
    );
}

#[test]
fn malformed_traces_are_errors_with_lines() {
    let err = raft::check("t.jsonl", "{\"node\":\"n1\",\"event\":\"vote\"}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.jsonl:1:") && err.contains("term"),
        "{err}"
    );
    let err = raft::check("t.jsonl", "{}\n[\n").unwrap_err().to_string();
    assert!(err.starts_with("t.jsonl:1:"), "{err}");
}

#[test]
fn a_configuration_change_must_be_joint_or_one_server() {
    let v = violated(
        &[
            r#"{"node":"n1","event":"config","index":9,"term":3,"voters":["n1","n2","n4"],"old":null,"from_voters":["n1","n2","n3"],"from_old":null}"#,
        ],
        "config-change-unsafe",
    );
    assert!(
        v.summary.contains("{n1,n2,n3} straight to {n1,n2,n4}"),
        "{}",
        v.summary
    );
    let safe = run(&[
        // Into the joint configuration, out to its new half.
        r#"{"node":"n1","event":"config","index":9,"term":3,"voters":["n1","n2","n4"],"old":["n1","n2","n3"],"from_voters":["n1","n2","n3"],"from_old":null}"#,
        r#"{"node":"n1","event":"config","index":11,"term":3,"voters":["n1","n2","n4"],"old":null,"from_voters":["n1","n2","n4"],"from_old":["n1","n2","n3"]}"#,
        // One server at a time needs no joint phase.
        r#"{"node":"n2","event":"config","index":14,"term":4,"voters":["n1","n2","n4","n5"],"old":null,"from_voters":["n1","n2","n4"],"from_old":null}"#,
    ]);
    assert_eq!(safe.verdict, Verdict::Valid, "{:?}", safe.violations);
    // Leaving a joint configuration for anything but its new half.
    violated(
        &[
            r#"{"node":"n1","event":"config","index":11,"term":3,"voters":["n1","n2","n3"],"old":null,"from_voters":["n1","n2","n4"],"from_old":["n1","n2","n3"]}"#,
        ],
        "config-change-unsafe",
    );
}

#[test]
fn a_commit_needs_a_majority_of_each_half_of_the_configuration() {
    // {n1, n4} is a majority of C-new {n1,n4,n5}, but of C-old only n1.
    let v = violated(
        &[
            r#"{"node":"n4","event":"commit","index":12,"term":5,"leader_term":5,"acks":["n4","n1"],"voters":["n1","n4","n5"],"old":["n1","n2","n3"]}"#,
        ],
        "commit-without-quorum",
    );
    assert!(
        v.summary.contains("{n1,n4,n5} with {n1,n2,n3}"),
        "{}",
        v.summary
    );
    // Two of four is no majority (the even-quorum mistake).
    violated(
        &[
            r#"{"node":"n1","event":"commit","index":3,"term":1,"leader_term":1,"acks":["n1","n2"],"voters":["n1","n2","n3","n4"],"old":null}"#,
        ],
        "commit-without-quorum",
    );
    let fine = run(&[
        r#"{"node":"n1","event":"commit","index":12,"term":5,"leader_term":5,"acks":["n1","n2","n4"],"voters":["n1","n2","n4"],"old":["n1","n2","n3"]}"#,
        // A leader outside C-new manages the joint configuration without counting itself there.
        r#"{"node":"n3","event":"commit","index":13,"term":6,"leader_term":6,"acks":["n3","n1","n4"],"voters":["n1","n4","n5"],"old":["n1","n2","n3"]}"#,
    ]);
    assert_eq!(fine.verdict, Verdict::Valid, "{:?}", fine.violations);
}

#[test]
fn leader_changes_count_moves_to_another_node_once_faults_began() {
    let text = [
        r#"{"time":10,"node":"n1","event":"leader","term":1}"#,
        r#"{"time":20,"node":"n1","event":"commit","index":1,"term":1}"#,
        // Re-elected in a later term: not a change of leader.
        r#"{"time":30,"node":"n1","event":"leader","term":2}"#,
        r#"{"time":40,"node":"n2","event":"leader","term":3}"#,
        r#"{"time":50,"node":"n3","event":"leader","term":4}"#,
        "not json",
    ]
    .join("\n");
    assert_eq!(raft::leader_changes(&text, 0), Some(2));
    // Only what happened from the first fault on counts.
    assert_eq!(raft::leader_changes(&text, 45), Some(1));
    assert_eq!(raft::leader_changes(&text, 100), Some(0));
    // Nothing ever named a leader: unknown, not zero.
    let leaderless = r#"{"time":10,"node":"n1","event":"start"}"#;
    assert_eq!(raft::leader_changes(leaderless, 0), None);
}

#[test]
fn events_of_unknown_kinds_are_counted_not_checked() {
    let r = run(&[
        r#"{"node":"n1","event":"leader","term":1}"#,
        r#"{"node":"n1","event":"comit","index":1,"term":1}"#,
        r#"{"node":"n2","event":"comit","index":1,"term":1}"#,
        r#"{"node":"n2","event":"heartbeat"}"#,
    ]);
    assert_eq!(r.verdict, Verdict::Valid);
    assert_eq!(r.events, 4);
    let unknown: Vec<(&str, usize)> = (r.unknown_events.iter())
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(unknown, [("comit", 2), ("heartbeat", 1)]);
}
