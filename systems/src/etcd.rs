//! The built-in etcd client: a lin-kv request (a Maelstrom body) becomes a
//! call on etcd's v3 JSON gateway, and etcd's answer becomes a Maelstrom
//! reply, so the workload's own mapping judges it like any node's. Keys are
//! `k<key>` and values their JSON text, base64-encoded as the gateway wants.
//!
//! Errors are mapped soundly: a request that could not be sent (connection
//! refused) did not happen; one whose answer was lost (a timeout, a 5xx, a
//! connection closed after sending) may have happened, and is indefinite.
//! Reads are linearizable unless the system asks for `serializable` ones.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer read from the gateway.
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// An indefinite error code (DESIGN §2: >= 1000 is info).
const INDEFINITE: i64 = 1000;

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// It never reached the server: it did not happen.
    NotSent(String),
    /// A Maelstrom reply body (`read_ok`, `error` with a code, ...).
    Reply(Value),
}

#[derive(Debug, Clone)]
pub struct EtcdClient {
    pub address: String,
    pub serializable: bool,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn error(code: i64, text: impl Into<String>) -> Answer {
    Answer::Reply(json!({"type": "error", "code": code, "text": text.into()}))
}

/// The value of the first key-value in a range answer, as JSON.
fn first_value(range: &Value) -> Option<Result<Value, String>> {
    let kv = range.get("kvs")?.as_array()?.first()?;
    let raw = kv.get("value").and_then(Value::as_str).unwrap_or("");
    Some(
        B64.decode(raw)
            .map_err(|e| format!("value is not base64: {e}"))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("value is not JSON: {e}"))
            }),
    )
}

impl EtcdClient {
    /// Performs one lin-kv request within `timeout`.
    pub async fn call(&self, body: &Value, timeout: Duration) -> Answer {
        let key = format!("k{}", body["key"]);
        let (path, request) = match body["type"].as_str().unwrap_or("") {
            "read" => (
                "/v3/kv/range",
                json!({"key": b64(&key), "serializable": self.serializable}),
            ),
            "write" => (
                "/v3/kv/put",
                json!({"key": b64(&key), "value": b64(&body["value"].to_string())}),
            ),
            "cas" => (
                "/v3/kv/txn",
                json!({
                    "compare": [{"result": "EQUAL", "target": "VALUE", "key": b64(&key), "value": b64(&body["from"].to_string())}],
                    "success": [{"request_put": {"key": b64(&key), "value": b64(&body["to"].to_string())}}],
                    "failure": [{"request_range": {"key": b64(&key)}}],
                }),
            ),
            other => return error(10, format!("the etcd client does not support {other:?}")),
        };
        match tokio::time::timeout(timeout, post(&self.address, path, &request)).await {
            Err(_) => error(0, format!("no answer within {} ms", timeout.as_millis())),
            Ok(Err(Unsent(e))) => Answer::NotSent(e),
            Ok(Ok(Err(e))) => error(INDEFINITE, e),
            Ok(Ok(Ok((status, answer)))) if !(200..300).contains(&status) => {
                error(INDEFINITE, format!("HTTP {status}: {answer}"))
            }
            Ok(Ok(Ok((_, answer)))) => reply(body["type"].as_str().unwrap_or(""), &answer),
        }
    }
}

/// etcd's 2xx answer as a Maelstrom reply.
fn reply(ty: &str, answer: &Value) -> Answer {
    match ty {
        "read" => match first_value(answer) {
            None => error(20, "key does not exist"),
            Some(Ok(v)) => Answer::Reply(json!({"type": "read_ok", "value": v})),
            Some(Err(e)) => error(INDEFINITE, e),
        },
        "write" => Answer::Reply(json!({"type": "write_ok"})),
        // proto3 JSON leaves out false: no `succeeded` means it failed,
        // and the failure branch's range tells absent from different.
        _ if answer.get("succeeded").and_then(Value::as_bool) == Some(true) => {
            Answer::Reply(json!({"type": "cas_ok"}))
        }
        _ => {
            let range = &answer["responses"][0]["response_range"];
            match first_value(range) {
                None => error(20, "key does not exist"),
                Some(_) => error(22, "value differs"),
            }
        }
    }
}

/// The request never left: it did not happen.
struct Unsent(String);

/// POSTs JSON over one HTTP/1.1 connection (closed after the answer).
/// Outer error: nothing was sent. Inner error: sent, but the answer was
/// lost or unreadable.
async fn post(
    address: &str,
    path: &str,
    body: &Value,
) -> Result<Result<(u16, Value), String>, Unsent> {
    let mut s = TcpStream::connect(address)
        .await
        .map_err(|e| Unsent(format!("cannot connect to {address}: {e}")))?;
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
fn parse_response(raw: &[u8]) -> Result<(u16, Value), String> {
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

    #[test]
    fn answers_map_to_lin_kv_replies() {
        let v = |s: &str| B64.encode(s);
        let range = json!({"kvs": [{"key": v("k1"), "value": v("7")}]});
        assert_eq!(
            reply("read", &range),
            Answer::Reply(json!({"type": "read_ok", "value": 7}))
        );
        assert!(
            matches!(reply("read", &json!({"header": {}})), Answer::Reply(r) if r["code"] == 20)
        );
        assert_eq!(
            reply("cas", &json!({"succeeded": true})),
            Answer::Reply(json!({"type": "cas_ok"}))
        );
        let differs = json!({"responses": [{"response_range": range}]});
        assert!(matches!(reply("cas", &differs), Answer::Reply(r) if r["code"] == 22));
        let absent = json!({"responses": [{"response_range": {}}]});
        assert!(matches!(reply("cas", &absent), Answer::Reply(r) if r["code"] == 20));
    }

    #[test]
    fn http_answers_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Ok((200, json!({}))));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((503, json!({"a": 1}))));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
