//! `faultline suite`: the shipped smoke suite passes; a wrong expectation
//! fails with a readable JUnit file; a bad suite file is a usage error.

use crate::support::*;
use std::path::PathBuf;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_smoke_suite_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("smoke.xml");
    let f = run(
        faultline()
            .arg("suite")
            .arg(repo().join("suites/smoke.toml"))
            .arg("--results-dir")
            .arg(tmp.path())
            .arg("--junit")
            .arg(&junit),
        Duration::from_secs(600),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains(" passed, 0 failed"), "{}", f.stdout);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"0\"") && !xml.contains("<failure"),
        "{xml}"
    );
    let summary = read_json(&tmp.path().join("suite-smoke.json"));
    assert_eq!(summary["passed"], true);
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_junit_file() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("wrong.toml");
    std::fs::write(
        &suite,
        "name = \"wrong\"\n[[run]]\nname = \"healthy-but-expected-invalid\"\ntime_limit = 2\nexpect = \"invalid\"\n\n[[run]]\nname = \"healthy\"\ntime_limit = 2\nexpect = \"valid\"\n",
    )
    .unwrap();
    let junit = tmp.path().join("out.xml");
    let f = run(
        faultline()
            .arg("suite")
            .arg(&suite)
            .arg("--results-dir")
            .arg(tmp.path())
            .arg("--junit")
            .arg(&junit),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("1 passed, 1 failed"), "{}", f.stdout);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"));
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"wrong\" name=\"healthy-but-expected-invalid seed=1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"expected invalid, got valid: "),
        "{xml}"
    );
    assert!(
        xml.contains("linearizable"),
        "the failure message carries the run summary: {xml}"
    );
    assert_eq!(xml.matches("<failure").count(), 1);
    let summary = read_json(&tmp.path().join("suite-wrong.json"));
    assert_eq!(summary["detection"][0]["caught"], 0);
}

#[test]
fn a_bad_suite_file_is_a_usage_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("no-runs.toml", "name = \"x\"\n", "no [[run]] entries"),
        ("no-expect.toml", "[[run]]\nname = \"a\"\n", "must expect"),
        (
            "typo.toml",
            "[[run]]\nname = \"a\"\nexpect = \"valid\"\nnemisis = \"kill\"\n",
            "nemisis",
        ),
        ("garbage.toml", "[[run\n", "not a valid suite"),
    ];
    for (file, text, needle) in cases {
        let p = tmp.path().join(file);
        std::fs::write(&p, text).unwrap();
        let f = run(faultline().arg("suite").arg(&p), Duration::from_secs(30));
        assert_eq!(f.status.code(), Some(254), "{file}: {}", f.stderr);
        assert!(
            f.stderr.contains(file) || f.stderr.contains(needle),
            "{file}: {}",
            f.stderr
        );
        assert!(f.stderr.contains(needle), "{file}: {}", f.stderr);
    }
}
