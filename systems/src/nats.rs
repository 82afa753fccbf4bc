//! The built-in NATS JetStream client, for the `kafka` workload. Each key
//! `K` is a stream `kK` (subject `kK`) replicated on every node; a send is
//! a publish whose acknowledged stream sequence is the offset; a poll
//! reads messages in sequence order from an offset, one direct get
//! (`next_by_subj`) each, at most `POLL_PAGE` a key; committed offsets live
//! in the stream `offsets` (subject `offsets.kK`, one message kept per
//! subject), raised only: a commit reads the last one and publishes the
//! larger offset with `Nats-Expected-Last-Subject-Sequence`, so two
//! clients' commits never lower it.
//!
//! The NATS client protocol is spoken directly (text commands over TCP):
//! one connection per client, made on first use and made again after an
//! error. A request that never reached the server did not happen; one
//! sent whose answer was lost is indefinite; JetStream's own errors are
//! definite when they say nothing was stored (no stream, a wrong expected
//! sequence) and indefinite otherwise.

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::answer::{error, Answer, ErrorCode};
use crate::client::{self, BadSetting, Caller, ClientKind, ClientSettings, Endpoint};

/// `[client] adapter = "nats"`: streams replicated on every node.
pub struct Kind;

pub static KIND: Kind = Kind;

impl ClientKind for Kind {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn plan(&self, s: ClientSettings) -> Result<Arc<dyn Endpoint>, BadSetting> {
        Ok(Arc::new(NatsEndpoint {
            address: s.address,
            replicas: s.node_count.max(1),
        }))
    }
}

/// A NATS server's address and the replicas of each stream made there.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsEndpoint {
    pub address: String,
    pub replicas: usize,
}

impl Endpoint for NatsEndpoint {
    fn connect(&self, _: &Caller) -> Box<dyn client::Connection> {
        Box::new(NatsClient::new(self.address.clone(), self.replicas))
    }
}

impl client::Connection for NatsClient {
    fn call<'a>(&'a mut self, body: &'a Value, _: u64, timeout: Duration) -> BoxFuture<'a, Answer> {
        Box::pin(NatsClient::call(self, body, timeout))
    }
}

/// Messages one poll returns per key, at most (the workload reads on).
const POLL_PAGE: u64 = 20;
/// The longest protocol line or payload read.
const MAX_LINE_BYTES: usize = 64 << 10;
const MAX_PAYLOAD_BYTES: usize = 8 << 20;
/// How often a publish that found no stream tries again, and how long it
/// waits before each try.
const NO_RESPONDER_RETRIES: usize = 4;
const NO_RESPONDER_PAUSE: Duration = Duration::from_millis(100);
/// How often a commit retries after losing a race with another commit.
const MAX_COMMIT_RACES: usize = 8;
/// JetStream's "no message found" and "stream not found" error codes.
const NO_MESSAGE: u64 = 10037;
const NO_STREAM: u64 = 10059;
const STREAM_EXISTS: u64 = 10058;
const WRONG_LAST_SEQUENCE: u64 = 10071;

#[derive(Debug)]
pub struct NatsClient {
    pub address: String,
    /// Replicas of each stream it creates: the cluster's size.
    pub replicas: usize,
    conn: Option<Connection>,
    next_request: u64,
}

#[derive(Debug)]
struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    inbox: String,
}

/// One message the server delivered to us.
struct Delivery {
    subject: String,
    /// The status of a headers message (`NATS/1.0 503` for no responders).
    status: Option<u16>,
    payload: Vec<u8>,
}

/// How a request went wrong: before anything was sent, or after.
enum Failure {
    Unsent(String),
    Lost(String),
}

impl Failure {
    fn answer(self) -> Answer {
        match self {
            Failure::Unsent(e) => Answer::NotSent(e),
            Failure::Lost(e) => error(ErrorCode::INDEFINITE, e),
        }
    }
}

impl NatsClient {
    pub fn new(address: String, replicas: usize) -> NatsClient {
        NatsClient {
            address,
            replicas,
            conn: None,
            next_request: 0,
        }
    }

    /// Performs one kafka request within `timeout`.
    pub async fn call(&mut self, body: &Value, timeout: Duration) -> Answer {
        let answer = match tokio::time::timeout(timeout, self.perform(body)).await {
            Ok(Ok(a)) => a,
            Ok(Err(f)) => f.answer(),
            Err(_) => error(
                ErrorCode::TIMEOUT,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
        };
        // After anything unclear the connection may hold a stale answer.
        if !matches!(&answer, Answer::Reply(r) if r["type"] != "error") {
            self.conn = None;
        }
        answer
    }

    async fn perform(&mut self, body: &Value) -> Result<Answer, Failure> {
        match body["type"].as_str().unwrap_or("") {
            "send" => self.send(body).await,
            "poll" => self.poll(body).await,
            "commit_offsets" => self.commit(body).await,
            "list_committed_offsets" => self.list_committed(body).await,
            other => Ok(error(
                ErrorCode::NOT_SUPPORTED,
                format!("the NATS client does not support {other:?}"),
            )),
        }
    }

    async fn send(&mut self, body: &Value) -> Result<Answer, Failure> {
        let stream = stream_of(&body["key"]);
        let payload = body["msg"].to_string();
        for attempt in 0..NO_RESPONDER_RETRIES {
            let d = self.request(&stream, payload.as_bytes(), None).await?;
            if d.status == Some(503) {
                // No stream (yet: a new one takes a moment to answer):
                // nothing was stored. Make it, then publish again.
                if attempt == 0 {
                    self.create_stream(&stream, std::slice::from_ref(&stream), None)
                        .await?;
                }
                tokio::time::sleep(NO_RESPONDER_PAUSE).await;
                continue;
            }
            let ack = parse(&d)?;
            if let Some(seq) = ack["seq"].as_u64() {
                return Ok(Answer::Reply(json!({"type": "send_ok", "offset": seq})));
            }
            return Ok(js_error(&ack, "publish"));
        }
        Ok(error(
            ErrorCode::TEMPORARILY_UNAVAILABLE,
            format!("stream {stream} has no responders"),
        ))
    }

    async fn poll(&mut self, body: &Value) -> Result<Answer, Failure> {
        let mut msgs = Map::new();
        let offsets = body["offsets"].as_object().cloned().unwrap_or_default();
        for (key, from) in offsets {
            let stream = stream_of(&Value::String(key.clone()));
            let mut seq = from.as_u64().unwrap_or(0);
            let mut got = Vec::new();
            while (got.len() as u64) < POLL_PAGE {
                let ask = json!({"seq": seq, "next_by_subj": stream});
                let v = self
                    .api(&format!("$JS.API.STREAM.MSG.GET.{stream}"), &ask)
                    .await?;
                match (v["message"].as_object(), err_code(&v)) {
                    (Some(m), _) => {
                        let at = m.get("seq").and_then(Value::as_u64).unwrap_or(seq);
                        let data = decode_data(m.get("data"))?;
                        got.push(json!([at, data]));
                        seq = at + 1;
                    }
                    (None, Some(NO_MESSAGE | NO_STREAM)) => break,
                    (None, _) => return Ok(js_error(&v, "poll")),
                }
            }
            msgs.insert(key, Value::Array(got));
        }
        Ok(Answer::Reply(json!({"type": "poll_ok", "msgs": msgs})))
    }

    /// Raises each key's committed offset to at least the one given.
    async fn commit(&mut self, body: &Value) -> Result<Answer, Failure> {
        let offsets = body["offsets"].as_object().cloned().unwrap_or_default();
        for (key, offset) in offsets {
            let Some(offset) = offset.as_u64() else {
                continue;
            };
            let subject = format!("offsets.{}", stream_of(&Value::String(key)));
            if let Some(a) = self.raise(&subject, offset).await? {
                return Ok(a);
            }
        }
        Ok(Answer::Reply(json!({"type": "commit_offsets_ok"})))
    }

    /// Publishes `offset` on `subject` unless a larger one is there; an
    /// answer when it cannot say it did.
    async fn raise(&mut self, subject: &str, offset: u64) -> Result<Option<Answer>, Failure> {
        for _ in 0..MAX_COMMIT_RACES {
            let (current, last_seq) = match self.last_committed(subject).await? {
                Ok(c) => c,
                Err(a) => return Ok(Some(a)),
            };
            if current.is_some_and(|c| c >= offset) {
                return Ok(None);
            }
            let header = format!("Nats-Expected-Last-Subject-Sequence: {last_seq}");
            let d = self
                .request(subject, offset.to_string().as_bytes(), Some(&header))
                .await?;
            if d.status == Some(503) {
                self.create_offsets_stream().await?;
                tokio::time::sleep(NO_RESPONDER_PAUSE).await;
                continue;
            }
            let ack = parse(&d)?;
            if ack["seq"].as_u64().is_some() {
                return Ok(None);
            }
            if err_code(&ack) != Some(WRONG_LAST_SEQUENCE) {
                return Ok(Some(js_error(&ack, "commit")));
            }
        }
        Ok(Some(error(
            ErrorCode::TEMPORARILY_UNAVAILABLE,
            "lost every race to commit",
        )))
    }

    /// The committed offset on `subject` and its stream sequence (0: none).
    async fn last_committed(
        &mut self,
        subject: &str,
    ) -> Result<Result<(Option<u64>, u64), Answer>, Failure> {
        let ask = json!({"last_by_subj": subject});
        let v = self.api("$JS.API.STREAM.MSG.GET.offsets", &ask).await?;
        if let Some(m) = v["message"].as_object() {
            let seq = m.get("seq").and_then(Value::as_u64).unwrap_or(0);
            let offset = decode_data(m.get("data"))?.as_u64();
            return Ok(Ok((offset, seq)));
        }
        match err_code(&v) {
            Some(NO_MESSAGE | NO_STREAM) => Ok(Ok((None, 0))),
            _ => Ok(Err(js_error(&v, "read a committed offset"))),
        }
    }

    async fn list_committed(&mut self, body: &Value) -> Result<Answer, Failure> {
        let mut out = Map::new();
        for key in body["keys"].as_array().cloned().unwrap_or_default() {
            let name = key
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| key.to_string());
            let subject = format!("offsets.{}", stream_of(&key));
            match self.last_committed(&subject).await? {
                Ok((Some(offset), _)) => {
                    out.insert(name, json!(offset));
                }
                Ok((None, _)) => {}
                Err(a) => return Ok(a),
            }
        }
        Ok(Answer::Reply(
            json!({"type": "list_committed_offsets_ok", "offsets": out}),
        ))
    }

    async fn create_offsets_stream(&mut self) -> Result<(), Failure> {
        let subjects = ["offsets.>".to_string()];
        self.create_stream("offsets", &subjects, Some(1)).await
    }

    /// Creates a file-backed stream on every node; one that exists is fine.
    async fn create_stream(
        &mut self,
        name: &str,
        subjects: &[String],
        per_subject: Option<u64>,
    ) -> Result<(), Failure> {
        let mut config = json!({"name": name, "subjects": subjects, "num_replicas": self.replicas,
            "storage": "file", "retention": "limits"});
        if let Some(n) = per_subject {
            config["max_msgs_per_subject"] = json!(n);
        }
        let v = self
            .api(&format!("$JS.API.STREAM.CREATE.{name}"), &config)
            .await?;
        match err_code(&v) {
            None | Some(STREAM_EXISTS) => Ok(()),
            Some(_) => Err(Failure::Lost(format!("creating stream {name}: {v}"))),
        }
    }

    /// A JetStream API call: a JSON request, a JSON answer.
    async fn api(&mut self, subject: &str, body: &Value) -> Result<Value, Failure> {
        let d = self
            .request(subject, body.to_string().as_bytes(), None)
            .await?;
        parse(&d)
    }

    /// Publishes `payload` to `subject` and waits for the answer to it.
    async fn request(
        &mut self,
        subject: &str,
        payload: &[u8],
        header: Option<&str>,
    ) -> Result<Delivery, Failure> {
        if self.conn.is_none() {
            self.conn = Some(Connection::open(&self.address).await?);
        }
        self.next_request += 1;
        let conn = self.conn.as_mut().expect("just opened");
        let reply = format!("{}.{}", conn.inbox, self.next_request);
        let frame = match header {
            Some(h) => {
                let head = format!("NATS/1.0\r\n{h}\r\n\r\n");
                let mut f = format!(
                    "HPUB {subject} {reply} {} {}\r\n{head}",
                    head.len(),
                    head.len() + payload.len()
                )
                .into_bytes();
                f.extend_from_slice(payload);
                f
            }
            None => {
                let mut f = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
                f.extend_from_slice(payload);
                f
            }
        };
        let mut frame = frame;
        frame.extend_from_slice(b"\r\n");
        if let Err(e) = conn.writer.write_all(&frame).await {
            self.conn = None;
            return Err(Failure::Lost(format!("sending to {}: {e}", self.address)));
        }
        loop {
            let d = conn.next().await.map_err(Failure::Lost)?;
            if d.subject == reply {
                return Ok(d);
            }
        }
    }
}

impl Connection {
    /// Connects, reads INFO, says CONNECT (headers on, no-responders on)
    /// and subscribes to its inbox; a PING's PONG proves the server heard.
    async fn open(address: &str) -> Result<Connection, Failure> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| Failure::Unsent(format!("cannot connect to {address}: {e}")))?;
        let (r, w) = stream.into_split();
        let inbox = format!("_INBOX.fl{}", rand::random::<u64>());
        let mut c = Connection {
            reader: BufReader::new(r),
            writer: w,
            inbox,
        };
        let unsent = |e: String| Failure::Unsent(format!("{address}: {e}"));
        let info = c.line().await.map_err(unsent)?;
        if !info.starts_with("INFO ") {
            return Err(unsent(format!("not a NATS server: {info:?}")));
        }
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"lang\":\"faultline\",\"version\":\"0\"}}\r\nSUB {}.* 1\r\nPING\r\n",
            c.inbox
        );
        c.writer
            .write_all(hello.as_bytes())
            .await
            .map_err(|e| unsent(e.to_string()))?;
        loop {
            match c.line().await.map_err(unsent)?.as_str() {
                "PONG" => return Ok(c),
                "+OK" => {}
                l if l.starts_with("-ERR") => return Err(unsent(l.to_string())),
                l if l.starts_with("INFO ") => {}
                other => return Err(unsent(format!("unexpected {other:?}"))),
            }
        }
    }

    /// One protocol line, without its CRLF.
    async fn line(&mut self) -> Result<String, String> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if !buf.ends_with(b"\n") {
            return Err(format!("a protocol line over {MAX_LINE_BYTES} bytes"));
        }
        Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
    }

    /// The next message for us, answering the server's PINGs meanwhile.
    async fn next(&mut self) -> Result<Delivery, String> {
        loop {
            let line = self.line().await?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["PING"] => self
                    .writer
                    .write_all(b"PONG\r\n")
                    .await
                    .map_err(|e| e.to_string())?,
                ["MSG", subject, _sid, .., len] => {
                    let payload = self.payload(len).await?;
                    let subject = subject.to_string();
                    return Ok(Delivery {
                        subject,
                        status: None,
                        payload,
                    });
                }
                ["HMSG", subject, _sid, .., head_len, total] => {
                    let subject = subject.to_string();
                    let all = self.payload(total).await?;
                    let head_len = head_len.parse::<usize>().map_err(|e| e.to_string())?;
                    let (head, payload) = all.split_at(head_len.min(all.len()));
                    let status = String::from_utf8_lossy(head)
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
                    return Ok(Delivery {
                        subject,
                        status,
                        payload: payload.to_vec(),
                    });
                }
                [w, ..] if w.starts_with("-ERR") => return Err(line),
                _ => {} // +OK, PONG, INFO updates
            }
        }
    }

    async fn payload(&mut self, len: &str) -> Result<Vec<u8>, String> {
        let len: usize = len
            .parse()
            .map_err(|e| format!("payload length {len:?}: {e}"))?;
        if len > MAX_PAYLOAD_BYTES {
            return Err(format!("a payload of {len} bytes"));
        }
        let mut buf = vec![0u8; len + 2];
        self.reader
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        buf.truncate(len);
        Ok(buf)
    }
}

/// The stream of a workload key (`"3"` -> `k3`).
fn stream_of(key: &Value) -> String {
    match key {
        Value::String(s) => format!("k{s}"),
        other => format!("k{other}"),
    }
}

/// A JetStream answer as JSON.
fn parse(d: &Delivery) -> Result<Value, Failure> {
    if let (Some(status), true) = (d.status, d.payload.is_empty()) {
        return Err(Failure::Lost(format!("NATS status {status} and no answer")));
    }
    serde_json::from_slice(&d.payload).map_err(|e| {
        Failure::Lost(format!(
            "an answer that is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&d.payload)
        ))
    })
}

/// A message's data (base64 of the JSON the workload sent).
fn decode_data(data: Option<&Value>) -> Result<Value, Failure> {
    use base64::Engine as _;
    let raw = data.and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| Failure::Lost(format!("message data is not base64: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::Lost(format!("message is not JSON: {e}")))
}

/// JetStream's `err_code`, when the answer is an error.
fn err_code(v: &Value) -> Option<u64> {
    let e = v.get("error")?;
    Some(e["err_code"].as_u64().unwrap_or(0))
}

/// A JetStream error as a reply: definite when it says nothing was
/// stored, indefinite otherwise (a timeout inside the cluster may still
/// have committed).
fn js_error(v: &Value, what: &str) -> Answer {
    let text = format!("{what}: {}", v.get("error").unwrap_or(v));
    match err_code(v) {
        Some(NO_STREAM | WRONG_LAST_SEQUENCE) => error(ErrorCode::TEMPORARILY_UNAVAILABLE, text),
        _ => error(ErrorCode::INDEFINITE, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_streams_and_errors_say_what_happened() {
        assert_eq!(stream_of(&json!("3")), "k3");
        assert_eq!(stream_of(&json!(3)), "k3");
        let gone = json!({"error": {"code": 404, "err_code": NO_STREAM, "description": "stream not found"}});
        assert!(
            matches!(js_error(&gone, "x"), Answer::Reply(r) if ErrorCode::of_reply(&r) == Some(ErrorCode::TEMPORARILY_UNAVAILABLE))
        );
        let busy = json!({"error": {"code": 503, "err_code": 10008, "description": "timeout"}});
        assert!(
            matches!(js_error(&busy, "x"), Answer::Reply(r) if ErrorCode::of_reply(&r) == Some(ErrorCode::INDEFINITE))
        );
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode("17");
        assert_eq!(decode_data(Some(&json!(data))).ok(), Some(json!(17)));
    }
}
