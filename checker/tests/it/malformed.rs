//! Malformed input gives an error with file, line and reason; never a panic.

use faultline_checker::{parse_history, CheckError, Format};
use proptest::prelude::*;

const SAMPLES: [(&str, Format); 4] = [
    ("{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"a\",\"value\":1}\n{\"index\":1,\"time\":2,\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"key\":\"a\",\"value\":1}\n", Format::Jsonl),
    ("INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\nINFO  jepsen.util - 2\t:ok\t:cas\t[3 0]\n", Format::PorcupineEtcd),
    ("{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x 0 0 y\"}\n{:process 0, :type :ok, :f :append, :key \"0\", :value \"x 0 0 y\"}\n", Format::PorcupineKv),
    ("{:type :invoke, :f :write, :value [k1 3], :process 0, :time 5}\n{:type :ok, :f :write, :value [k1 3], :process 0, :time 9}\n", Format::JepsenEdn),
];

fn check_all(text: &str, format: Format) {
    if let Ok((_, ops)) = parse_history("fuzz.txt", text, Some(format)) {
        for model in ["register", "lin-kv", "kv-string"] {
            let opts = faultline_checker::linearizability::Options {
                model: model.parse().unwrap(),
                ..Default::default()
            };
            let _ = faultline_checker::linearizability::check(&ops, &opts);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn mutated_histories_never_panic(which in 0usize..4, pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let (text, format) = SAMPLES[which];
        let mut bytes = text.as_bytes().to_vec();
        let p = pos.index(bytes.len());
        bytes[p] = byte;
        bytes.truncate(cut.index(bytes.len()) + 1);
        check_all(&String::from_utf8_lossy(&bytes), format);
    }

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}", which in 0usize..4) {
        check_all(&s, SAMPLES[which].1);
    }
}

#[test]
fn errors_name_file_line_and_reason() {
    let text = "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"a\",\"value\":null}\nnot json\n{}\n";
    let err = parse_history("h.jsonl", text, Some(Format::Jsonl)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CheckError::Parse(ref l) if l.line == 2 && l.file == "h.jsonl"),
        "{msg}"
    );
    assert!(msg.starts_with("h.jsonl:2: not a history event"), "{msg}");

    let etcd = "INFO  jepsen.util - 2\t:invoke\t:frob\t1\n";
    let msg = parse_history("e.log", etcd, Some(Format::PorcupineEtcd))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("e.log:1") && msg.contains("frob"), "{msg}");

    let twice =
        "INFO  jepsen.util - 2\t:invoke\t:read\tnil\nINFO  jepsen.util - 2\t:invoke\t:read\tnil\n";
    let msg = parse_history("e.log", twice, Some(Format::PorcupineEtcd))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("e.log:2") && msg.contains("still open"),
        "{msg}"
    );

    let orphan = "INFO  jepsen.util - 2\t:ok\t:read\t3\n";
    let msg = parse_history("e.log", orphan, Some(Format::PorcupineEtcd))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no open invocation"), "{msg}");
}

#[test]
fn a_torn_last_line_is_ignored() {
    let (_, text) = (0, concat!(
        "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"a\",\"value\":1}\n",
        "{\"index\":1,\"time\":2,\"process\":0,\"ty"
    ));
    let (_, ops) = parse_history("h.jsonl", text, Some(Format::Jsonl)).unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].outcome, faultline_checker::Outcome::Info);
}

#[test]
fn jepsen_edn_independent_and_plain_registers() {
    let independent = "[{:type :invoke, :f :write, :value [1 3], :process 0, :time 5}\n {:type :ok, :f :write, :value [1 3], :process 0, :time 9}\n {:type :invoke, :f :read, :value [1 nil], :process 1, :time 10}\n {:type :ok, :f :read, :value [1 4], :process 1, :time 12}\n {:type :info, :f :start, :process :nemesis, :time 13}]";
    let (format, ops) = parse_history("history.edn", independent, None).unwrap();
    assert_eq!(format, Format::JepsenEdn);
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].key.as_deref(), Some("1"));
    let opts = faultline_checker::linearizability::Options {
        model: "lin-kv".parse().unwrap(),
        ..Default::default()
    };
    let r = faultline_checker::linearizability::check(&ops, &opts).unwrap();
    assert_eq!(r.verdict, faultline_checker::Verdict::Invalid);

    let plain = "{:type :invoke, :f :cas, :value [nil 2], :process 0}\n{:type :fail, :f :cas, :value [nil 2], :process 0}\n{:type :invoke, :f :read, :value nil, :process 0}\n{:type :ok, :f :read, :value nil, :process 0}\n";
    let (_, ops) = parse_history("history.edn", plain, None).unwrap();
    assert!(ops.iter().all(|o| o.key.is_none()));
    let opts = faultline_checker::linearizability::Options {
        model: "register".parse().unwrap(),
        ..Default::default()
    };
    assert_eq!(
        faultline_checker::linearizability::check(&ops, &opts)
            .unwrap()
            .verdict,
        faultline_checker::Verdict::Valid
    );
}
