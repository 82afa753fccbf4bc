//! The checkers of Maelstrom's workloads on small written histories:
//! each anomaly found and named, and what eventual consistency allows
//! (stale reads, indeterminate adds) accepted.

use faultline_checker::compose::{Checker, Input};
use faultline_checker::counters::Counter;
use faultline_checker::ids::{Echo, UniqueIds};
use faultline_checker::kafka::Kafka;
use faultline_checker::sets::SetFull;
use faultline_checker::{formats, history, CheckerResult, Verdict};

/// `(process, type, f, value, node)` rows at times 0, 1, 2, ...; a node
/// written `n1*` marks the row a final read (`"final":true`).
fn check(c: &dyn Checker, rows: &[(u64, &str, &str, &str, &str)]) -> CheckerResult {
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (p, ty, f, v, node))| {
            let (node, mark) = match node.strip_suffix('*') {
                Some(n) => (n, ",\"final\":true"),
                None => (*node, ""),
            };
            format!(
                "{{\"index\":{i},\"time\":{},\"process\":{p},\"type\":\"{ty}\",\"f\":\"{f}\",\"key\":\"a\",\"value\":{v},\"node\":\"{node}\"{mark}}}\n",
                i * 1000
            )
        })
        .collect();
    let events = formats::parse_jsonl("h", &text).unwrap();
    let ops = history::pair("h", &events).unwrap();
    let input = Input {
        ops: &ops,
        traces: None,
        time_limit: None,
        consistency_model: None,
    };
    c.check(&input).unwrap().expect("something to judge")
}

#[test]
fn set_full_names_lost_and_unexpected_elements_and_allows_stale_reads() {
    let set = SetFull { add_f: "add" };
    let ok = check(
        &set,
        &[
            (0, "invoke", "add", "1", "n1"),
            (0, "ok", "add", "1", "n1"),
            (1, "invoke", "read", "null", "n2"),
            (1, "ok", "read", "[]", "n2"), // stale: allowed
            (2, "invoke", "add", "2", "n1"),
            (2, "info", "add", "2", "n1"), // indeterminate, never read
            (1, "invoke", "read", "null", "n2"),
            (1, "ok", "read", "[1]", "n2"),
            (0, "invoke", "read", "null", "n1"),
            (0, "ok", "read", "[1]", "n1"),
        ],
    );
    assert_eq!(ok.verdict, Verdict::Valid, "{}", ok.summary);
    assert_eq!(ok.detail::<usize>("stale_reads"), Ok(Some(1)));
    assert_eq!(ok.detail::<usize>("never_read"), Ok(Some(1)));
    let lost = check(
        &set,
        &[
            (0, "invoke", "add", "1", "n1"),
            (0, "ok", "add", "1", "n1"),
            (0, "invoke", "add", "2", "n1"),
            (0, "info", "add", "2", "n1"),
            (1, "invoke", "read", "null", "n1"),
            (1, "ok", "read", "[1,2]", "n1"),
            (1, "invoke", "read", "null", "n2"),
            (1, "ok", "read", "[2]", "n2"),
        ],
    );
    assert_eq!(lost.verdict, Verdict::Invalid);
    assert!(lost.summary.contains("n2 lacks 1"), "{}", lost.summary);
    let unexpected = check(
        &set,
        &[
            (1, "invoke", "read", "null", "n1"),
            (1, "ok", "read", "[7]", "n1"),
        ],
    );
    assert_eq!(unexpected.verdict, Verdict::Invalid);
    assert!(
        unexpected.summary.contains("nobody added"),
        "{}",
        unexpected.summary
    );
}

#[test]
fn counters_allow_any_subset_of_indeterminate_adds_and_nothing_else() {
    let rows = |final_value: &'static str| {
        vec![
            (0, "invoke", "add", "5", "n1"),
            (0, "ok", "add", "5", "n1"),
            (1, "invoke", "add", "-2", "n2"),
            (1, "info", "add", "-2", "n2"),
            (2, "invoke", "add", "3", "n1"),
            (2, "info", "add", "3", "n1"),
            (3, "invoke", "read", "null", "n1"),
            (3, "ok", "read", final_value, "n1"),
        ]
    };
    for v in ["3", "5", "6", "8"] {
        let r = check(&Counter, &rows(v));
        assert_eq!(r.verdict, Verdict::Valid, "{v}: {}", r.summary);
    }
    for v in ["2", "9", "\"x\""] {
        let r = check(&Counter, &rows(v));
        assert_eq!(r.verdict, Verdict::Invalid, "{v}: {}", r.summary);
    }
    // Mid-run, a read can only count adds already invoked.
    let early = check(
        &Counter,
        &[
            (3, "invoke", "read", "null", "n1"),
            (3, "ok", "read", "5", "n1"),
            (0, "invoke", "add", "5", "n1"),
            (0, "ok", "add", "5", "n1"),
            (3, "invoke", "read", "null", "n1"),
            (3, "ok", "read", "5", "n1"),
        ],
    );
    assert_eq!(early.verdict, Verdict::Invalid);
    assert!(
        early.summary.contains("no adds invoked so far"),
        "{}",
        early.summary
    );
}

#[test]
fn duplicate_ids_and_altered_echoes_are_named() {
    let ids = check(
        &UniqueIds,
        &[
            (0, "invoke", "generate", "null", "n1"),
            (0, "ok", "generate", "1", "n1"),
            (1, "invoke", "generate", "null", "n2"),
            (1, "ok", "generate", "\"n2-a\"", "n2"),
            (2, "invoke", "generate", "null", "n3"),
            (2, "ok", "generate", "1", "n3"),
        ],
    );
    assert_eq!(ids.verdict, Verdict::Invalid);
    assert!(ids.summary.contains("e.g. 1 (2 times)"), "{}", ids.summary);
    let echo = check(
        &Echo,
        &[
            (0, "invoke", "echo", "\"hello\"", "n1"),
            (0, "ok", "echo", "\"hell\"", "n1"),
        ],
    );
    assert_eq!(echo.verdict, Verdict::Invalid);
    assert!(echo.summary.contains("got \"hell\""), "{}", echo.summary);
}

#[test]
fn kafka_anomalies_are_each_named() {
    let r = check(
        &Kafka,
        &[
            // Two messages at offset 0 of key "a": inconsistent.
            (0, "invoke", "send", "1", "n1"),
            (0, "ok", "send", "0", "n1"),
            (1, "invoke", "send", "2", "n2"),
            (1, "ok", "send", "0", "n2"),
            // Message 3 acknowledged at offset 1, polled past, never seen.
            (0, "invoke", "send", "3", "n1"),
            (0, "ok", "send", "1", "n1"),
            (0, "invoke", "send", "4", "n1"),
            (0, "ok", "send", "2", "n1"),
            (2, "invoke", "poll", "{\"a\":0}", "n1"),
            (2, "ok", "poll", "{\"a\":[[0,1],[2,4]]}", "n1"),
        ],
    );
    assert_eq!(r.verdict, Verdict::Invalid);
    let anomalies = r.details["anomalies"].as_object().unwrap();
    for a in ["inconsistent-offsets", "lost-write", "poll-skip"] {
        assert!(anomalies.contains_key(a), "{a} missing: {}", r.summary);
    }
    let ok = check(
        &Kafka,
        &[
            (0, "invoke", "send", "1", "n1"),
            (0, "ok", "send", "0", "n1"),
            (0, "invoke", "send", "2", "n1"),
            (0, "info", "send", "2", "n1"),
            (2, "invoke", "poll", "{\"a\":0}", "n1*"),
            (2, "ok", "poll", "{\"a\":[[0,1],[3,2]]}", "n1*"),
            (2, "invoke", "poll", "{\"a\":4}", "n1*"),
            (2, "ok", "poll", "{\"a\":[]}", "n1*"),
        ],
    );
    assert_eq!(ok.verdict, Verdict::Valid, "{}", ok.summary);
}

#[test]
fn kafka_messages_missing_from_the_final_polls_are_lost() {
    let sends = [
        (0, "invoke", "send", "1", "n1"),
        (0, "ok", "send", "0", "n1"),
        (0, "invoke", "send", "2", "n1"),
        (0, "ok", "send", "1", "n1"),
    ];
    // A log wiped whole: the final poll from 0 is empty, so no poll ever
    // returned a later offset, and both messages are lost all the same.
    let mut wiped = sends.to_vec();
    wiped.extend([
        (1, "invoke", "poll", "{\"a\":0}", "n2*"),
        (1, "ok", "poll", "{}", "n2*"),
    ]);
    let r = check(&Kafka, &wiped);
    assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
    let (n, examples) = &r.details["anomalies"]["lost-write"]
        .as_array()
        .map(|a| (a[0].clone(), a[1].clone()))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(examples[0]["offset"], 0);
    assert_eq!(examples[0]["message"], "1");
    assert_eq!(examples[1]["acknowledged_s"], 3e-6);
    assert!(examples[0]["why"].as_str().unwrap().contains("final polls"));
    // Read a page at a time: [0] from 0, nothing from 1. Message 2 at
    // offset 1 is missing from the pages, which reached the log's end.
    let mut paged = sends.to_vec();
    paged.extend([
        (1, "invoke", "poll", "{\"a\":0}", "n2*"),
        (1, "ok", "poll", "{\"a\":[[0,1]]}", "n2*"),
        (1, "invoke", "poll", "{\"a\":1}", "n2*"),
        (1, "ok", "poll", "{\"a\":[]}", "n2*"),
    ]);
    let r = check(&Kafka, &paged);
    assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
    assert_eq!(r.details["anomalies"]["lost-write"][0], 1, "{}", r.summary);
    // The same pages, the second holding offset 1: valid.
    paged[7] = (1, "ok", "poll", "{\"a\":[[1,2]]}", "n2*");
    paged.extend([
        (1, "invoke", "poll", "{\"a\":2}", "n2*"),
        (1, "ok", "poll", "{\"a\":[]}", "n2*"),
    ]);
    let r = check(&Kafka, &paged);
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
}

#[test]
fn a_committed_offset_missing_from_a_later_listing_went_back() {
    let r = check(
        &Kafka,
        &[
            (0, "invoke", "send", "1", "n1"),
            (0, "ok", "send", "0", "n1"),
            (0, "invoke", "commit_offsets", "{\"a\":1}", "n1"),
            (0, "ok", "commit_offsets", "{\"a\":1}", "n1"),
            (1, "invoke", "list_committed_offsets", "[\"a\"]", "n2"),
            (1, "ok", "list_committed_offsets", "{}", "n2"),
        ],
    );
    assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
    let e = &r.details["anomalies"]["committed-offset-went-back"][1][0];
    assert_eq!(e["committed"], 1, "{e}");
    assert!(e["listed"].is_null(), "{e}");
}

#[test]
fn kafka_with_nothing_acknowledged_or_nothing_read_to_the_end_is_unknown() {
    let nothing_sent = check(
        &Kafka,
        &[
            (0, "invoke", "send", "1", "n1"),
            (0, "info", "send", "1", "n1"),
            (1, "invoke", "poll", "{\"a\":0}", "n2*"),
            (1, "ok", "poll", "{}", "n2*"),
        ],
    );
    assert_eq!(
        nothing_sent.verdict,
        Verdict::Unknown,
        "{}",
        nothing_sent.summary
    );
    assert!(
        nothing_sent.summary.contains("no send was acknowledged"),
        "{}",
        nothing_sent.summary
    );
    // Sends acknowledged, but every final poll failed: a poll during the
    // run saw the message, which says nothing of what was kept.
    let unread = check(
        &Kafka,
        &[
            (0, "invoke", "send", "1", "n1"),
            (0, "ok", "send", "0", "n1"),
            (1, "invoke", "poll", "{\"a\":0}", "n2"),
            (1, "ok", "poll", "{\"a\":[[0,1]]}", "n2"),
            (1, "invoke", "poll", "{\"a\":0}", "n2*"),
            (1, "fail", "poll", "{\"a\":0}", "n2*"),
        ],
    );
    assert_eq!(unread.verdict, Verdict::Unknown, "{}", unread.summary);
    assert!(unread.summary.contains("[\"a\"]"), "{}", unread.summary);
}

#[test]
fn sets_and_counters_judge_the_final_reads_and_nothing_acknowledged_is_unknown() {
    // n2's last read during the run is stale; its final read is whole.
    let whole = check(
        &SetFull { add_f: "add" },
        &[
            (0, "invoke", "add", "1", "n1"),
            (0, "ok", "add", "1", "n1"),
            (1, "invoke", "read", "null", "n2*"),
            (1, "ok", "read", "[1]", "n2*"),
            (2, "invoke", "read", "null", "n2"),
            (2, "ok", "read", "[]", "n2"),
            (0, "invoke", "read", "null", "n1*"),
            (0, "ok", "read", "[1]", "n1*"),
        ],
    );
    assert_eq!(whole.verdict, Verdict::Valid, "{}", whole.summary);
    // One add, then n2's final read: (checker, added, how the add
    // ended, how the read ended, what it read, verdict).
    let set = SetFull { add_f: "add" };
    let cases: [(&dyn Checker, &str, &str, &str, &str, Verdict); 4] = [
        // The acknowledged element lost.
        (&set, "1", "ok", "ok", "[]", Verdict::Invalid),
        // Nothing acknowledged: nothing could have been lost.
        (&set, "1", "fail", "ok", "[]", Verdict::Unknown),
        // The acknowledged add lost.
        (&Counter, "3", "ok", "ok", "0", Verdict::Invalid),
        // No final read succeeded: what was kept is not known.
        (&Counter, "3", "ok", "fail", "null", Verdict::Unknown),
    ];
    for (c, v, added, read, got, verdict) in cases {
        let r = check(
            c,
            &[
                (0, "invoke", "add", v, "n1"),
                (0, added, "add", v, "n1"),
                (1, "invoke", "read", "null", "n2*"),
                (1, read, "read", got, "n2*"),
            ],
        );
        assert_eq!(
            r.verdict,
            verdict,
            "{} {added} {read} {got}: {}",
            c.name(),
            r.summary
        );
    }
}

/// A detail written as `null` (nothing found) reads as absent; one of the
/// wrong type is an error naming the checker and the key.
#[test]
fn details_read_back_strictly() {
    let r = CheckerResult::new(
        "linearizability",
        Verdict::Valid,
        String::new(),
        &serde_json::json!({"anomaly": null, "ops": "many"}),
    );
    assert_eq!(r.detail::<u64>("anomaly"), Ok(None));
    assert_eq!(r.detail::<u64>("absent"), Ok(None));
    let err = r.detail::<u64>("ops").unwrap_err();
    assert!(
        err.contains("\"linearizability\"") && err.contains("\"ops\""),
        "{err}"
    );
}
