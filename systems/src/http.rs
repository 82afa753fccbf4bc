//! The little HTTP/1.1 the readiness and leader probes need: one request
//! per connection, a JSON body, an answer read to its end (plain or
//! chunked) and bounded in size.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer read.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The request never left: it did not happen.
#[derive(Debug)]
pub struct Unsent(pub String);

/// `http://HOST:PORT/PATH` as (address, path).
pub fn split_url(url: &str) -> (&str, String) {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")))
}

/// One request over one HTTP/1.1 connection (closed after the answer),
/// with a JSON body when given. Outer error: nothing was sent. Inner
/// error: sent, but the answer was lost or unreadable.
pub async fn call(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Result<(u16, Value), String>, Unsent> {
    let mut s = TcpStream::connect(address)
        .await
        .map_err(|e| Unsent(format!("cannot connect to {address}: {e}")))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if let Err(e) = s.write_all(format!("{head}{body}").as_bytes()).await {
        // Part of it may have left: the outcome is unknown.
        return Ok(Err(format!("sending to {address}: {e}")));
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(k) if raw.len() + k <= MAX_RESPONSE_BYTES => raw.extend_from_slice(&buf[..k]),
            Ok(_) => return Ok(Err(format!("answer over {MAX_RESPONSE_BYTES} bytes"))),
            Err(e) => return Ok(Err(format!("reading from {address}: {e}"))),
        }
    }
    Ok(parse_response(&raw))
}

/// An HTTP/1.1 response read to its end: status and JSON body (plain or
/// chunked).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Value), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("connection closed before a complete answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body).ok_or("a malformed chunked body")?;
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Value::Null));
    }
    let v = serde_json::from_slice(&body)
        .map_err(|e| format!("HTTP {status} with a body that is not JSON: {e}"))?;
    Ok((status, v))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_answers_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Ok((200, json!({}))));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((503, json!({"a": 1}))));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8222/jsz?leader-only=true"),
            ("127.0.0.1:8222", "/jsz?leader-only=true".to_string())
        );
        assert_eq!(split_url("http://h:1"), ("h:1", "/".to_string()));
    }
}
