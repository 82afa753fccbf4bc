//! The server's handling of bad input, through `handle_line`.

use serde_json::{json, Value};
use target_node::server::{parse_args, Server};

fn server() -> Server<Vec<u8>> {
    let mut o = parse_args(&[]).unwrap();
    o.data_dir = None;
    Server::new(o, Vec::new())
}

fn replies(s: &mut Server<Vec<u8>>, lines: &[Value]) -> Vec<Value> {
    for l in lines {
        s.handle_line(&l.to_string()).unwrap();
    }
    s.process_ready().unwrap();
    Vec::new()
}

/// A one-node cluster that has had time to elect itself.
fn single_node_leader() -> Server<Vec<u8>> {
    let mut s = server();
    replies(
        &mut s,
        &[
            json!({"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}),
        ],
    );
    settle(&mut s, 100);
    s
}

fn settle(s: &mut Server<Vec<u8>>, ticks: usize) {
    for _ in 0..ticks {
        s.tick();
        s.process_ready().unwrap();
    }
}

fn output(s: Server<Vec<u8>>) -> Vec<Value> {
    let bytes = s.into_output();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bad_client_requests_get_error_12_and_unknown_types_10() {
    let mut s = server();
    replies(
        &mut s,
        &[
            json!({"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}),
            json!({"src":"c1","dest":"n1","body":{"type":"write","msg_id":2,"key":1}}),
            json!({"src":"c1","dest":"n1","body":{"type":"cas","msg_id":3,"key":1,"from":1}}),
            json!({"src":"c1","dest":"n1","body":{"type":"frob","msg_id":4}}),
            json!({"src":"c1","dest":"n1","body":{"msg_id":5}}),
        ],
    );
    s.handle_line("this is not json").unwrap();
    s.handle_line(
        "{\"src\":\"n2\",\"dest\":\"n1\",\"body\":{\"type\":\"raft\",\"crc\":1,\"m\":\"{}\"}}",
    )
    .unwrap();
    let out = output(s);
    let code = |id: u64| {
        out.iter()
            .find(|m| m["body"]["in_reply_to"] == id)
            .map(|m| m["body"]["code"].clone())
    };
    assert_eq!(out[0]["body"]["type"], "init_ok");
    assert_eq!(code(2), Some(json!(12)));
    assert_eq!(code(3), Some(json!(12)));
    assert_eq!(code(4), Some(json!(10)));
    assert_eq!(code(5), Some(json!(12)));
}

#[test]
fn a_single_node_serves_reads_and_writes() {
    let mut s = single_node_leader();
    // A read of an absent key, answered before anything is written.
    replies(
        &mut s,
        &[json!({"src":"c1","dest":"n1","body":{"type":"read","msg_id":2,"key":1}})],
    );
    for _ in 0..10 {
        s.tick();
        s.process_ready().unwrap();
    }
    replies(
        &mut s,
        &[
            json!({"src":"c1","dest":"n1","body":{"type":"write","msg_id":3,"key":1,"value":5}}),
            json!({"src":"c1","dest":"n1","body":{"type":"cas","msg_id":4,"key":1,"from":5,"to":6}}),
            json!({"src":"c1","dest":"n1","body":{"type":"cas","msg_id":5,"key":1,"from":5,"to":7}}),
            json!({"src":"c1","dest":"n1","body":{"type":"read","msg_id":6,"key":1}}),
        ],
    );
    for _ in 0..10 {
        s.tick();
        s.process_ready().unwrap();
    }
    let out = output(s);
    let body = |id: u64| {
        out.iter()
            .find(|m| m["body"]["in_reply_to"] == id)
            .map(|m| m["body"].clone())
            .unwrap()
    };
    assert_eq!(body(2)["code"], 20);
    assert_eq!(body(3)["type"], "write_ok");
    assert_eq!(body(4)["type"], "cas_ok");
    assert_eq!(body(5)["code"], 22);
    assert_eq!(body(6)["value"], 6);
    // It traced its election, commits and applies.
    let events: Vec<&str> = out
        .iter()
        .filter(|m| m["dest"] == "faultline")
        .filter_map(|m| m["body"]["event"].as_str())
        .collect();
    assert!(events.contains(&"leader") && events.contains(&"commit") && events.contains(&"apply"));
}

#[test]
fn unknown_bugs_and_arguments_are_refused() {
    assert!(parse_args(&["--bug".into(), "nope".into()])
        .unwrap_err()
        .contains("known:"));
    assert!(parse_args(&["--frob".into()]).is_err());
    assert!(parse_args(&["--bug".into()]).is_err());
}

#[test]
fn forwarded_requests_are_checksummed_like_every_peer_message() {
    let init = json!({"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1","n2","n3"]}});
    let text = json!({"client": "c7", "request": {"type":"write","key":1,"value":181,"msg_id":9}, "hops": 1}).to_string();
    let crc = crc32c_of(&text);
    // A bit flip (181 -> 180) in transit: dropped, never acted on.
    let corrupted = text.replace("181", "180");
    let mut s = server();
    replies(
        &mut s,
        &[
            init.clone(),
            json!({"src":"n2","dest":"n1","body":{"type":"forward","crc":crc,"m":corrupted}}),
        ],
    );
    assert!(
        output(s).iter().all(|m| m["dest"] != "c7"),
        "a corrupted forward was acted on"
    );
    // Intact: n1 is no leader and knows none. The request is a forwarded
    // copy (others may be in flight), so the refusal is indefinite: code 0.
    let mut s = server();
    replies(
        &mut s,
        &[
            init,
            json!({"src":"n2","dest":"n1","body":{"type":"forward","crc":crc,"m":text}}),
        ],
    );
    let out = output(s);
    let reply = out
        .iter()
        .find(|m| m["dest"] == "c7")
        .expect("the intact forward is handled");
    assert_eq!(reply["body"]["code"], 0);
    assert_eq!(reply["body"]["in_reply_to"], 9);
}

fn crc32c_of(s: &str) -> u32 {
    // CRC32C (Castagnoli), bitwise: the test must not trust the code under test.
    let mut crc = !0u32;
    for &b in s.as_bytes() {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_duplicated_request_executes_at_most_once() {
    let mut s = single_node_leader();
    let step = |s: &mut Server<Vec<u8>>, line: Value| {
        replies(s, &[line]);
        for _ in 0..5 {
            s.tick();
            s.process_ready().unwrap();
        }
    };
    step(
        &mut s,
        json!({"src":"c1","dest":"n1","body":{"type":"write","msg_id":2,"key":1,"value":1}}),
    );
    // c1's cas fails (the value is 1, not 2)...
    step(
        &mut s,
        json!({"src":"c1","dest":"n1","body":{"type":"cas","msg_id":3,"key":1,"from":2,"to":3}}),
    );
    step(
        &mut s,
        json!({"src":"c2","dest":"n1","body":{"type":"write","msg_id":4,"key":1,"value":2}}),
    );
    // ...and a duplicate of that cas arriving later must not succeed now.
    step(
        &mut s,
        json!({"src":"c1","dest":"n1","body":{"type":"cas","msg_id":3,"key":1,"from":2,"to":3}}),
    );
    step(
        &mut s,
        json!({"src":"c2","dest":"n1","body":{"type":"read","msg_id":5,"key":1}}),
    );
    let out = output(s);
    let to = |c: &str, id: u64| -> Vec<Value> {
        out.iter()
            .filter(|m| m["dest"] == c && m["body"]["in_reply_to"] == id)
            .map(|m| m["body"].clone())
            .collect()
    };
    let cas = to("c1", 3);
    assert_eq!(cas.len(), 2);
    assert!(cas.iter().all(|b| b["code"] == 22), "{cas:?}");
    assert_eq!(
        to("c2", 5)[0]["value"],
        2,
        "the duplicate cas did not execute"
    );
}

#[test]
fn reads_wait_out_an_election_and_writes_are_refused_at_once() {
    let init = |ids: Value| json!({"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":ids}});
    let read = json!({"src":"c1","dest":"n1","body":{"type":"read","msg_id":2,"key":1}});
    let write =
        json!({"src":"c1","dest":"n1","body":{"type":"write","msg_id":3,"key":1,"value":5}});
    let answer = |out: &[Value], id: u64| {
        out.iter()
            .find(|m| m["body"]["in_reply_to"] == id)
            .map(|m| m["body"].clone())
    };
    // One node, before it has elected itself: the write is refused (11),
    // the read is held and answered once it leads (the key is absent: 20).
    let mut s = server();
    replies(&mut s, &[init(json!(["n1"])), read.clone(), write.clone()]);
    settle(&mut s, 100);
    let out = output(s);
    assert_eq!(answer(&out, 3).unwrap()["code"], 11);
    assert_eq!(answer(&out, 2).unwrap()["code"], 20, "{out:?}");
    let at = |id: u64| out.iter().position(|m| m["body"]["in_reply_to"] == id);
    assert!(
        at(3) < at(2),
        "the write was refused before the read was served"
    );

    // Three nodes whose peers never answer: the read is refused (11) once
    // it has waited two election timeouts, not before.
    let mut s = server();
    replies(&mut s, &[init(json!(["n1", "n2", "n3"])), read]);
    settle(&mut s, 50);
    s.handle_line(&write.to_string()).unwrap();
    settle(&mut s, 20);
    let out = output(s);
    let (r, w) = (
        out.iter().position(|m| m["body"]["in_reply_to"] == 2),
        out.iter().position(|m| m["body"]["in_reply_to"] == 3),
    );
    assert!(w.is_some() && r.is_some() && w < r, "{out:?}");
    assert_eq!(answer(&out, 2).unwrap()["code"], 11);
}

/// The reply to `msg_id` among what the server wrote.
fn reply_to(out: &[Value], msg_id: u64) -> Value {
    out.iter()
        .find(|m| m["body"]["in_reply_to"] == json!(msg_id))
        .unwrap_or_else(|| panic!("no reply to {msg_id} in {out:?}"))["body"]
        .clone()
}

#[test]
fn membership_requests_are_refused_with_reasons_and_answered_once_committed() {
    // n1 alone is a member; n2 and n3 may be added later.
    let mut s = server();
    replies(
        &mut s,
        &[
            json!({"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1","n2","n3"],"members":["n1"]}}),
        ],
    );
    settle(&mut s, 100);
    let ask = |s: &mut Server<Vec<u8>>, body: Value| {
        replies(s, &[json!({"src":"faultline","dest":"n1","body":body})]);
    };
    ask(
        &mut s,
        json!({"type":"member_remove","msg_id":2,"node":"n1"}),
    );
    ask(&mut s, json!({"type":"member_add","msg_id":3,"node":"n9"}));
    ask(&mut s, json!({"type":"member_add","msg_id":4,"node":"n1"}));
    ask(&mut s, json!({"type":"member_add","msg_id":5}));
    ask(&mut s, json!({"type":"members","msg_id":6}));
    // A one-node cluster commits C-old,new only with n2 caught up: no
    // peer answers here, so the change stays under way and a second waits.
    ask(&mut s, json!({"type":"member_add","msg_id":7,"node":"n2"}));
    ask(&mut s, json!({"type":"member_add","msg_id":8,"node":"n3"}));
    ask(&mut s, json!({"type":"members","msg_id":9}));
    settle(&mut s, 1_100);
    let out = output(s);
    let last = reply_to(&out, 2);
    assert_eq!(
        (last["code"].clone(), last["text"].clone()),
        (json!(22), json!("the change would remove the last member"))
    );
    assert_eq!(reply_to(&out, 3)["code"], json!(22), "a node past node_ids");
    assert_eq!(reply_to(&out, 4)["code"], json!(22), "already a member");
    assert_eq!(reply_to(&out, 5)["code"], json!(12));
    let m = reply_to(&out, 6);
    assert_eq!(
        (m["type"].clone(), m["voters"].clone(), m["old"].clone()),
        (json!("members_ok"), json!(["n1"]), json!(null))
    );
    assert_eq!(reply_to(&out, 8)["code"], json!(11), "one change at a time");
    let joint = reply_to(&out, 9);
    assert_eq!(
        (joint["voters"].clone(), joint["old"].clone()),
        (json!(["n1", "n2"]), json!(["n1"]))
    );
    // n2 never answered: after the wait the add is indefinite, not failed.
    assert_eq!(reply_to(&out, 7)["code"], json!(0));
    let traced = out
        .iter()
        .find(|m| m["body"]["event"] == json!("config"))
        .expect("the leader traces the configuration it appends");
    assert_eq!(traced["body"]["from_voters"], json!(["n1"]));
}
