//! `faultline serve`: lists runs newest first by verdict, serves their
//! files, never anything outside the results directory, and copes with a
//! half-written run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

#[test]
fn serve_lists_runs_and_serves_only_inside_the_results_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("results");
    // A real configuration, as a run writes it.
    let options = faultline::options::TestOptions {
        nemesis: "partition".into(),
        seed: Some(1),
        ..Default::default()
    };
    let config = serde_json::to_string(&options.validate().unwrap()).unwrap();
    let mk = |name: &str, stamp: &str, results: Option<&str>| {
        let d = root.join(name).join(stamp);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("test.json"), &config).unwrap();
        if let Some(r) = results {
            std::fs::write(d.join("results.json"), r).unwrap();
            std::fs::write(d.join("report.html"), format!("<html>{name}</html>")).unwrap();
        }
    };
    mk(
        "lin-kv",
        "20261101T000000.000Z",
        Some(r#"{"verdict":"valid","summary":"old run","duration_s":3.0}"#),
    );
    mk(
        "bug",
        "20261102T000000.000Z",
        Some(r#"{"verdict":"invalid","summary":"stale read","duration_s":4.0}"#),
    );
    mk("half", "20261103T000000.000Z", None);
    std::fs::write(tmp.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(
        tmp.path().join("secret.txt"),
        root.join("bug/20261102T000000.000Z/leak.txt"),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["serve"])
        .arg(&root)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "binds loopback by default: {line}"
    );

    let checks = std::panic::catch_unwind(|| {
        let (code, page) = get(&addr, "/");
        assert_eq!(code, 200);
        let (half, bug, old) = (
            page.find("20261103").unwrap(),
            page.find("20261102").unwrap(),
            page.find("20261101").unwrap(),
        );
        assert!(half < bug && bug < old, "newest first");
        assert!(
            page.contains("class=\"invalid\"")
                && page.contains("class=\"valid\"")
                && page.contains("class=\"incomplete\"")
        );
        assert!(page.contains("stale read") && page.contains("partition"));
        let (code, body) = get(&addr, "/bug/20261102T000000.000Z/report.html");
        assert_eq!(code, 200);
        assert!(body.contains("<html>bug</html>"));
        assert_eq!(
            get(&addr, "/bug/20261102T000000.000Z/").0,
            200,
            "a run directory serves its report"
        );
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/bug/%2E%2E/%2e%2e/secret.txt",
            "/bug/20261102T000000.000Z/leak.txt",
            "/bug/..%2f..%2fsecret.txt",
            "/half/20261103T000000.000Z/results.json",
            "/nope",
        ] {
            let (code, body) = get(&addr, bad);
            assert_eq!(code, 404, "{bad}");
            assert!(!body.contains("top secret"), "{bad} leaked");
        }
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(s, "POST / HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
}
