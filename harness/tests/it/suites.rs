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

/// Options with every field away from its default.
fn every_option_set(
    replay: &std::path::Path,
    schedule: &std::path::Path,
) -> faultline::options::TestOptions {
    faultline::options::TestOptions {
        bin: Some("/bin/true".into()),
        // With `replay` set, nothing else is checked (the recorded run is
        // rerun), so `system` and `bin` may both be given here.
        system: Some("etcd".into()),
        node_count: 3,
        cluster_size: Some("2..4".into()),
        workload: "lin-kv".into(),
        nemesis: "kill:all,partition,membership".into(),
        nemesis_interval: 0.5,
        recovery_time: 1.5,
        liveness_timeout: 7.0,
        replay: Some(replay.to_path_buf()),
        schedule: Some(schedule.to_path_buf()),
        time_limit: 4.0,
        rate: 250.0,
        concurrency: Some(9),
        key_count: 3,
        seed: Some(11),
        latency: 2.5,
        latency_dist: faultline_rundir::stats::LatencyDist::Uniform,
        timeout_ms: 300,
        init_timeout_ms: 4000,
        check_time_limit: 30.0,
        name: Some("everything".into()),
        journal_limit: 1000,
        topology: "tree3".into(),
        node_names: "n0".into(),
        consistency_model: "serializable".into(),
        warmup: 1.0,
        keep_data: true,
        var: vec!["level=strict".into()],
        args: vec!["--bug".into(), "local-read".into()],
    }
}

#[test]
fn a_suite_entry_can_set_every_test_option() {
    let tmp = tempfile::tempdir().unwrap();
    // `replay` needs a recorded run to replay.
    let recorded = faultline_rundir::RunDir::create(tmp.path(), "recorded").unwrap();
    let defaults = faultline::options::TestOptions::default();
    recorded
        .store_config(&defaults.validate().unwrap())
        .unwrap();
    let schedule = tmp.path().join("schedule.json");
    std::fs::write(&schedule, "[]").unwrap();
    let options = every_option_set(recorded.path(), &schedule);
    // Every key differs from its default, so a key the suite dropped or
    // misread could not pass unnoticed.
    let (set, plain) = (
        serde_json::to_value(&options).unwrap(),
        serde_json::to_value(&defaults).unwrap(),
    );
    for key in faultline::options::keys() {
        // lin-kv is the only workload so far: it is set, but to its default.
        if key != "workload" {
            assert_ne!(set[&key], plain[&key], "{key} is left at its default");
        }
    }
    let mut table = toml::Value::try_from(&options)
        .unwrap()
        .as_table()
        .unwrap()
        .clone();
    table.insert("expect".into(), "valid".into());
    let text = format!(
        "name = \"all-options\"\n[[run]]\n{}",
        toml::to_string(&table).unwrap()
    );
    let path = tmp.path().join("all.toml");
    std::fs::write(&path, &text).unwrap();
    let suite = faultline::suite::load(&path).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    let e = &suite.entries[0];
    // `name` names the entry, and so its runs' directory (SUITE-NAME).
    assert_eq!(e.name, "everything");
    let expected = faultline::options::TestOptions {
        name: None,
        ..options.clone()
    };
    assert_eq!(e.options, expected, "every key reached the test options");
    assert_eq!(
        e.seeds,
        vec![11],
        "`seed` is the entry's seed list when `seeds` is absent"
    );
    // The same options without replay validate into that configuration.
    let mut direct = options.clone();
    // Only the bundled node changes membership: no binary beside it.
    (direct.replay, direct.system, direct.var, direct.bin) = (None, None, Vec::new(), None);
    let cfg = direct.validate().unwrap();
    assert_eq!((cfg.node_count, cfg.concurrency, cfg.key_count), (3, 9, 3));
    assert_eq!(cfg.cluster_size, Some([2, 4]));
}

#[test]
fn a_misspelt_key_or_bad_value_is_refused_at_load_naming_entry_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("[[run]]\nname = \"first\"\nexpect = \"valid\"\n[[run]]\nname = \"second\"\nexpect = \"valid\"\nliveness_timout = 3\n", "run \"second\"", "liveness_timout"),
        ("[defaults]\nrate = \"fast\"\n[[run]]\nname = \"a\"\nexpect = \"valid\"\n", "run \"a\"", "rate"),
        ("[[run]]\nname = \"b\"\nexpect = \"valid\"\nnode_count = 0\n", "run \"b\"", "node_count"),
        ("[[run]]\nname = \"c\"\nexpect = \"valid\"\nnemesis = \"kill:sideways\"\n", "run \"c\"", "nemesis"),
        ("[[run]]\nname = \"d\"\nexpect = \"valid\"\nseeds = [\"x\"]\n", "run \"d\"", "seeds"),
    ];
    for (i, (text, entry, key)) in cases.into_iter().enumerate() {
        let p = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let e = format!(
            "{:#}",
            faultline::suite::load(&p)
                .err()
                .unwrap_or_else(|| panic!("{text} loaded"))
        );
        assert!(e.contains(entry) && e.contains(key), "{text}: {e}");
        assert!(e.contains(&format!("bad{i}.toml")), "{e}");
    }
}

#[test]
fn an_entry_breaking_a_bound_on_its_figures_fails_and_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("bounds.toml");
    let node = fixture("maelstrom_node.py");
    std::fs::write(
        &suite,
        format!(
            r#"name = "bounds"
[defaults]
bin = "{}"
workload = "broadcast"
args = ["--workload", "broadcast"]
time_limit = 3
expect = "valid"

[[run]]
name = "within"
max_msgs_per_op = 1000
max_stable_latency_ms = 60000
min_availability = 0.5

[[run]]
name = "too-slow"
max_latency_ms = 0.000001
"#,
            node.display()
        ),
    )
    .unwrap();
    let f = run(
        faultline()
            .arg("suite")
            .arg(&suite)
            .arg("--results-dir")
            .arg(tmp.path()),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(1), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("1 passed, 1 failed"), "{}", f.stdout);
    let summary = read_json(&tmp.path().join("suite-bounds.json"));
    let runs = summary["runs"].as_array().unwrap();
    let within = runs.iter().find(|r| r["entry"] == "within").unwrap();
    assert_eq!(within["passed"], true, "{within}");
    assert!(
        within["figures"]["stable_latency_ms_max"]
            .as_f64()
            .is_some(),
        "{within}"
    );
    let slow = runs.iter().find(|r| r["entry"] == "too-slow").unwrap();
    assert_eq!(slow["got"], "valid");
    assert_eq!(slow["passed"], false);
    assert!(
        slow["bounds_broken"][0]
            .as_str()
            .unwrap()
            .contains("max latency"),
        "{slow}"
    );
    assert!(
        slow["summary"].as_str().unwrap().contains("out of bounds"),
        "{slow}"
    );
}

/// A suite split three ways and merged gives the unsharded run's runs,
/// verdicts and detection table; merge refuses a missing, duplicated or
/// foreign shard.
#[test]
fn a_suite_sharded_three_ways_and_merged_is_the_whole_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("split.toml");
    std::fs::write(
        &suite,
        "name = \"split\"\n[defaults]\ntime_limit = 2\nrate = 200\nnemesis_interval = 0.5\nseeds = [1, 2]\n\
         [[run]]\nname = \"correct\"\nexpect = \"valid\"\n\
         [[run]]\nname = \"correct-kill\"\nnemesis = \"kill\"\ntime_limit = 3\nexpect = \"valid\"\n\
         [[run]]\nname = \"bug-volatile-vote\"\nnemesis = \"kill:all\"\nargs = [\"--bug\", \"volatile-vote\"]\ntime_limit = 4\nexpect = \"invalid\"\n",
    )
    .unwrap();
    let suite_run = |dir: &str, extra: &[&str]| {
        let out = tmp.path().join(dir);
        let f = run(
            faultline()
                .arg("suite")
                .arg(&suite)
                .args(extra)
                .arg("--results-dir")
                .arg(&out),
            Duration::from_secs(600),
        );
        assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
        out.join("suite-split.json")
    };
    let whole = read_json(&suite_run("whole", &[]));
    let shards: Vec<PathBuf> = (1..=3)
        .map(|k| suite_run(&format!("shard{k}"), &["--shard", &format!("{k}/3")]))
        .collect();
    let sizes: Vec<usize> = shards
        .iter()
        .map(|p| read_json(p)["runs"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 6, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n >= 1), "balanced: {sizes:?}");
    let merged_json = tmp.path().join("merged.json");
    let junit = tmp.path().join("merged.xml");
    let f = run(
        faultline()
            .args(["suite", "merge"])
            .args(&shards)
            .arg("--json")
            .arg(&merged_json)
            .arg("--junit")
            .arg(&junit)
            .arg("--results-dir")
            .arg(tmp.path()),
        Duration::from_secs(60),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("6 passed, 0 failed"), "{}", f.stdout);
    let merged = read_json(&merged_json);
    let verdicts = |d: &serde_json::Value| -> Vec<(String, u64, String, bool)> {
        d["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["entry"].as_str().unwrap().to_string(),
                    r["seed"].as_u64().unwrap(),
                    r["got"].as_str().unwrap().to_string(),
                    r["passed"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(verdicts(&merged), verdicts(&whole));
    let caught = |d: &serde_json::Value| {
        d["detection"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["entry"].clone(), e["caught"].clone(), e["seeds"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(caught(&merged), caught(&whole));
    assert!(!caught(&merged).is_empty(), "the bug entry is in the table");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase").count(), 6, "{xml}");
    // Refusals: a missing shard, one given twice, another suite's.
    let refused = |files: &[&PathBuf], says: &str| {
        let f = run(
            faultline()
                .args(["suite", "merge"])
                .args(files)
                .arg("--results-dir")
                .arg(tmp.path().join("refused")),
            Duration::from_secs(60),
        );
        assert_eq!(f.status.code(), Some(254), "{}{}", f.stdout, f.stderr);
        assert!(f.stderr.contains(says), "{says}: {}", f.stderr);
    };
    refused(&[&shards[0], &shards[1]], "missing shard(s) 3/3");
    refused(&[&shards[0], &shards[0], &shards[1]], "given twice");
    let other = tmp.path().join("other.json");
    let mut doc = read_json(&shards[2]);
    doc["suite"] = "another".into();
    std::fs::write(&other, doc.to_string()).unwrap();
    refused(&[&shards[0], &shards[1], &other], "does not belong");
    refused(&[&whole_path(&tmp)], "not run as a shard");
}

fn whole_path(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("whole").join("suite-split.json")
}

/// The binary alone, copied out of the build (where `cargo install`
/// puts it) and run from an empty directory: the target node, systems and
/// suites it needs are in it, not in a checkout.
#[test]
fn the_binary_alone_runs_a_test_and_a_bundled_suite_from_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin").join("faultline");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_faultline"), &bin).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let installed = || {
        let mut c = std::process::Command::new(&bin);
        c.current_dir(&empty);
        c
    };
    let f = run(
        installed().args(["test", "--time-limit", "2"]),
        Duration::from_secs(120),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(
        empty.join("results").is_dir(),
        "results in the working directory"
    );
    // One run of the bundled smoke suite (a twelfth of it).
    let f = run(
        installed().args(["suite", "smoke", "--shard", "1/12"]),
        Duration::from_secs(300),
    );
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("1 passed, 0 failed"), "{}", f.stdout);
    assert!(empty.join("results/suite-smoke.json").is_file());
    let f = run(
        installed().args(["suite", "no-such-suite"]),
        Duration::from_secs(30),
    );
    assert_eq!(f.status.code(), Some(254), "{}{}", f.stdout, f.stderr);
    assert!(
        f.stderr
            .contains("nor a bundled suite: smoke, bugs, nemesis-all, systems"),
        "{}",
        f.stderr
    );
}

/// The CI examples in docs/ci pass real validators (check-jsonschema's
/// vendored GitHub workflow schema, kubernetes-validate's Kubernetes
/// schemas), which also refuse a broken copy of each.
#[test]
fn the_ci_examples_pass_their_validators() {
    let dir = std::env::var_os("FAULTLINE_VALIDATORS").map(PathBuf::from);
    let found = dir.as_ref().is_some_and(|d| {
        d.join("check-jsonschema").is_file() && d.join("kubernetes-validate").is_file()
    });
    if !available_or_skip(
        "ci examples",
        found,
        "check-jsonschema and kubernetes-validate in FAULTLINE_VALIDATORS (.ci/run installs them)",
    ) {
        return;
    }
    let dir = dir.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let workflow = repo().join("docs/ci/github-actions.yml");
    let job = repo().join("docs/ci/kubernetes-job.yaml");
    let check = |file: &std::path::Path| {
        let mut c = std::process::Command::new(dir.join("check-jsonschema"));
        c.args(["--builtin-schema", "vendor.github-workflows"])
            .arg(file);
        run(&mut c, Duration::from_secs(120))
    };
    let validate = |file: &std::path::Path| {
        let mut c = std::process::Command::new(dir.join("kubernetes-validate"));
        c.arg(file);
        run(&mut c, Duration::from_secs(120))
    };
    let f = check(&workflow);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    let f = validate(&job);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    // Broken copies: a job without runs-on, a Job whose completions is text.
    let bad_workflow = tmp.path().join("bad.yml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    std::fs::write(
        &bad_workflow,
        text.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"),
    )
    .unwrap();
    assert_ne!(check(&bad_workflow).status.code(), Some(0));
    let bad_job = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &bad_job,
        text.replace("completions: 4", "completions: four"),
    )
    .unwrap();
    assert_ne!(validate(&bad_job).status.code(), Some(0));
}
