//! Every history in ../shared/bench/porcupine gets its MANIFEST verdict.

use faultline_checker::{linearizability, load_history, Verdict};
use std::path::PathBuf;

fn bench_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/porcupine");
    dir.join("MANIFEST.tsv").exists().then_some(dir)
}

#[test]
fn every_manifest_history_gets_its_expected_verdict() {
    let Some(dir) = bench_dir() else {
        panic!("../shared/bench/porcupine/MANIFEST.tsv is missing: the benchmark set must sit beside the repo");
    };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for row in manifest.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (path, expected) = (cols[0], cols[3]);
        let file = dir.join(path);
        let (format, ops) = load_history(file.to_str().unwrap(), None).unwrap();
        let opts = linearizability::Options {
            model: format.default_model(),
            ..Default::default()
        };
        let report = linearizability::check(&ops, &opts).unwrap();
        let want = if expected == "linearizable" {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        if report.verdict != want {
            wrong.push(format!(
                "{path}: expected {expected}, got {:?}",
                report.verdict
            ));
        }
        if report.verdict == Verdict::Invalid {
            let a = report
                .anomaly
                .as_ref()
                .expect("invalid verdicts carry an anomaly");
            assert!(
                !a.ops.is_empty() && !a.explanation.is_empty(),
                "{path}: empty explanation"
            );
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, 109);
}
