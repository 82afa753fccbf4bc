//! The same seed gives the same fault schedule, across refactors of the
//! vocabulary too: schedules drawn now are compared with ones recorded in
//! `golden/schedules.json` (a run's test.json keeps its schedule verbatim,
//! but a suite's seeds are chosen because of what their schedules do).
//! `FAULTLINE_BLESS=1 cargo test -p faultline-nemesis` rewrites the file
//! after an intended change.

use faultline_nemesis::{parse_specs, schedule};
use serde_json::{json, Value};

const CASES: &[(&str, usize)] = &[
    ("all", 5),
    ("all", 3),
    ("partition", 5),
    ("partition:isolate-leader", 5),
    ("kill:all", 5),
    ("kill,partition", 5),
    ("kill:leader,messages:drop", 5),
    ("messages", 5),
    ("messages:corrupt", 5),
    ("clock:strobe+leader", 5),
    ("clock:minority", 5),
    ("overload:leader", 5),
    ("pause", 3),
    ("crash", 5),
    ("disk", 5),
    ("disk:flip+minority,kill", 3),
    ("strand", 5),
];

fn drawn() -> Value {
    let mut out = Vec::new();
    for (specs, n) in CASES {
        for seed in [1u64, 2, 42] {
            let s = schedule(&parse_specs(specs).unwrap(), *n, seed, 1000, 20_000);
            out.push(json!({"nemesis": specs, "nodes": n, "seed": seed, "schedule": s}));
        }
    }
    Value::Array(out)
}

#[test]
fn schedules_match_the_recorded_ones() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/schedules.json");
    let now = drawn();
    if std::env::var_os("FAULTLINE_BLESS").is_some() {
        // One case a line: small, and a diff names the case that moved.
        let lines: Vec<String> = now
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        std::fs::write(&path, format!("[\n{}\n]\n", lines.join(",\n"))).unwrap();
        return;
    }
    let recorded: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let (now, recorded) = (now.as_array().unwrap(), recorded.as_array().unwrap());
    assert_eq!(now.len(), recorded.len());
    for (a, b) in now.iter().zip(recorded) {
        assert_eq!(
            a, b,
            "schedule for {} at seed {} changed",
            b["nemesis"], b["seed"]
        );
    }
}
