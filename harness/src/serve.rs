//! `faultline serve [RESULTS_DIR]`: a small read-only HTTP server for the
//! results directory. `/` lists runs newest first, coloured by verdict;
//! any other path serves a file *inside* the results directory. Paths are
//! percent-decoded, `..` and NUL are refused, and the canonical path must
//! stay under the canonical root, so symlinks cannot lead outside. Binds
//! 127.0.0.1 unless told otherwise.

use anyhow::Context;

use faultline_report::esc;
use faultline_rundir::{RunDir, CONFIG, REPORT};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request head longer than this is refused.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// A client has this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Files larger than this are not served (results are bounded anyway).
const MAX_FILE_BYTES: u64 = 512 << 20;

/// Percent-decodes a URL path; None for malformed escapes or non-UTF-8.
fn decode(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file under `root` a request path names, if it may be served.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let path = decode(url_path.split(['?', '#']).next()?)?;
    if path.contains('\0') || path.contains('\\') {
        return None;
    }
    let mut rel = PathBuf::new();
    for seg in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if seg == ".." {
            return None;
        }
        rel.push(seg);
    }
    let root = root.canonicalize().ok()?;
    let full = root.join(rel).canonicalize().ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

struct RunRow {
    href: String,
    name: String,
    stamp: String,
    verdict: String,
    summary: String,
    nemesis: String,
    duration: String,
}

fn list_runs(root: &Path) -> Vec<RunRow> {
    let mut rows = Vec::new();
    let Ok(names) = std::fs::read_dir(root) else {
        return rows;
    };
    for name in names.flatten() {
        let name_path = name.path();
        if !name_path.is_dir() || name.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(&name_path) else {
            continue;
        };
        for stamp in stamps.flatten() {
            let dir = stamp.path();
            if !dir.is_dir() || !dir.join(CONFIG).exists() {
                continue;
            }
            let run = RunDir::open(&dir);
            let (results, config) = (
                run.load_results().ok(),
                crate::options::load_config(&run).ok(),
            );
            let n = name.file_name().to_string_lossy().into_owned();
            let s = stamp.file_name().to_string_lossy().into_owned();
            let report = if dir.join(REPORT).exists() {
                REPORT
            } else {
                ""
            };
            rows.push(RunRow {
                href: format!("{n}/{s}/{report}"),
                name: n,
                stamp: s,
                verdict: match &results {
                    None => "incomplete".into(),
                    Some(r) => r.verdict.map_or("interrupted", |v| v.as_str()).into(),
                },
                summary: results.as_ref().map_or_else(
                    || "(no results yet: running, or stopped before checking)".into(),
                    |r| r.summary.clone(),
                ),
                nemesis: config
                    .map(|c| {
                        c.nemesis
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                duration: results
                    .map(|r| format!("{:.1} s", r.duration_s))
                    .unwrap_or_default(),
            });
        }
    }
    // Timestamps sort lexically; newest first.
    rows.sort_by(|a, b| b.stamp.cmp(&a.stamp).then(a.name.cmp(&b.name)));
    rows
}

pub fn listing(root: &Path) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>faultline runs</title><style>body{font:14px system-ui,sans-serif;margin:24px}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}.valid{background:#e8f5e9}.invalid{background:#ffebee}.unknown,.interrupted{background:#fff3e0}.incomplete{background:#eceff1}</style></head><body><h1>faultline runs</h1><table id=\"runs\"><tr><th>when</th><th>test</th><th>verdict</th><th>nemesis</th><th>duration</th><th>summary</th></tr>",
    );
    for r in list_runs(root) {
        let _ = write!(
            h,
            "<tr class=\"{v}\"><td><a href=\"/{}\">{}</a></td><td>{}</td><td>{v}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.href),
            esc(&r.stamp),
            esc(&r.name),
            esc(&r.nemesis),
            esc(&r.duration),
            esc(&r.summary),
            v = esc(&r.verdict)
        );
    }
    h + "</table></body></html>\n"
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("jsonl" | "log" | "txt" | "edn") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

async fn handle(mut stream: TcpStream, root: PathBuf) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Ok(false);
            }
        }
    })
    .await;
    if !matches!(read, Ok(Ok(true))) {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            false,
        )
        .await;
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            false,
        )
        .await;
    }
    if target == "/" || target.is_empty() {
        return respond(
            &mut stream,
            "200 OK",
            "text/html; charset=utf-8",
            listing(&root).as_bytes(),
            head_only,
        )
        .await;
    }
    // A run directory: its report if there is one.
    let target = if target.ends_with('/') {
        format!("{target}report.html")
    } else {
        target.to_string()
    };
    let small = |p: &PathBuf| {
        std::fs::metadata(p)
            .map(|m| m.len() <= MAX_FILE_BYTES)
            .unwrap_or(false)
    };
    let file = match resolve(&root, &target).filter(small) {
        Some(p) => tokio::fs::read(&p)
            .await
            .ok()
            .map(|bytes| (content_type(&p), bytes)),
        None => None,
    };
    match file {
        Some((ctype, bytes)) => respond(&mut stream, "200 OK", ctype, &bytes, head_only).await,
        None => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                head_only,
            )
            .await
        }
    }
}

pub async fn serve(root: PathBuf, bind: &str, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("binding {bind}:{port}"))?;
    let addr = listener.local_addr()?;
    println!("serving {} at http://{addr}/", root.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        let (stream, _) = listener.accept().await?;
        let root = root.clone();
        tokio::spawn(async move {
            let _ = handle(stream, root).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("results");
        std::fs::create_dir_all(root.join("t/1")).unwrap();
        std::fs::write(root.join("t/1/report.html"), "ok").unwrap();
        std::fs::write(tmp.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("t/1/link")).unwrap();
        assert!(resolve(&root, "/t/1/report.html").is_some());
        assert!(resolve(&root, "/t/1/report.html?x=1").is_some());
        for bad in [
            "/../secret",
            "/t/../../secret",
            "/%2e%2e/secret",
            "/t/%2E%2E/%2e%2e/secret",
            "/t/1/link",
            "/t/1/%00",
            "/t/1/..%2f..%2fsecret",
            "/%zz",
            "/t",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad} escaped");
        }
    }
}
