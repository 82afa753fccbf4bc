//! The built-in NATS JetStream client, for the `kafka` workload, on NATS's
//! own Rust client (`async-nats`). Each key `K` is a stream `kK` (subject
//! `kK`) replicated on every node; a send is a publish whose acknowledged
//! stream sequence is the offset; a poll reads messages in sequence order
//! from an offset, one get (`next_by_subj`) each, at most `POLL_PAGE` a
//! key; committed offsets live in the stream `offsets` (subject
//! `offsets.kK`, one message kept per subject), raised only: a commit
//! reads the last one and publishes the larger offset with an expected
//! last subject sequence, so two clients' commits never lower it.
//!
//! One connection per client, to its own node only (servers the cluster
//! advertises are ignored, and a lost connection is not re-established
//! behind the client's back: it is dropped and made again on the next
//! request). Outcomes are mapped soundly (`publish_stored` and the tests
//! below say it kind by kind): a request on a connection that could not
//! be made never happened; once connected, the library queues a request
//! before it is written, so whether a lost one reached the server is
//! unknown and it is indefinite; JetStream's own errors are definite when
//! they say nothing was stored (no stream, a wrong expected sequence) and
//! indefinite otherwise.

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::answer::{error, Answer, ErrorCode};
use crate::client::{self, BadSetting, Caller, ClientKind, ClientSettings, Endpoint};

/// Messages one poll returns per key, at most (the workload reads on).
const POLL_PAGE: u64 = 20;
/// How often a publish that found no stream tries again, and how long it
/// waits before each try.
const NO_RESPONDER_RETRIES: usize = 4;
const NO_RESPONDER_PAUSE: Duration = Duration::from_millis(100);
/// How often a commit retries after losing a race with another commit.
const MAX_COMMIT_RACES: usize = 8;
/// How long making a connection may take; the request's own timeout
/// bounds it too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// JetStream's "stream not found" and "stream name in use" error codes.
const NO_STREAM: u64 = 10059;
const STREAM_EXISTS: u64 = 10058;

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

pub struct NatsClient {
    pub address: String,
    /// Replicas of each stream it creates: the cluster's size.
    pub replicas: usize,
    conn: Option<jetstream::Context>,
}

impl std::fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NatsClient({}, {} replicas)",
            self.address, self.replicas
        )
    }
}

/// How a request went wrong: before anything was sent, or after.
#[derive(Debug)]
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

/// What a failed publish says about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Not stored: the subject has no stream (no responders).
    NoStream,
    /// Not stored: the expected last sequence differed (a race lost).
    Raced,
    /// Not stored: refused before it was queued.
    Refused,
    /// Unknown: queued, and its acknowledgement never came.
    Maybe,
}

/// Whether a publish that failed this way may have been stored.
fn publish_stored(kind: &PublishErrorKind) -> Stored {
    match kind {
        PublishErrorKind::StreamNotFound => Stored::NoStream,
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => Stored::Raced,
        // Checked before the message is queued.
        PublishErrorKind::MaxAckPending | PublishErrorKind::MaxPayloadExceeded => Stored::Refused,
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::Other => {
            Stored::Maybe
        }
        // A kind added in a later version: assume the worst.
        #[allow(unreachable_patterns)]
        _ => Stored::Maybe,
    }
}

impl NatsClient {
    pub fn new(address: String, replicas: usize) -> NatsClient {
        NatsClient {
            address,
            replicas,
            conn: None,
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
        // After anything unclear the connection may deliver a stale
        // answer or a queued request later: start afresh.
        if !matches!(&answer, Answer::Reply(r) if r["type"] != "error") {
            self.conn = None;
        }
        answer
    }

    /// The JetStream context of this client's connection, made if need be.
    async fn js(&mut self) -> Result<jetstream::Context, Failure> {
        if let Some(js) = &self.conn {
            return Ok(js.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .ignore_discovered_servers()
            .max_reconnects(1)
            .connect(self.address.as_str())
            .await
            .map_err(|e| Failure::Unsent(format!("cannot connect to {}: {e}", self.address)))?;
        let js = jetstream::new(client);
        self.conn = Some(js.clone());
        Ok(js)
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
            let js = self.js().await?;
            match publish(&js, &stream, &payload, None).await {
                Ok(seq) => return Ok(Answer::Reply(json!({"type": "send_ok", "offset": seq}))),
                // No stream (yet: a new one takes a moment to answer):
                // nothing was stored. Make it, then publish again.
                Err((Stored::NoStream, _)) => {
                    if attempt == 0 {
                        self.create_stream(&stream, std::slice::from_ref(&stream), None)
                            .await?;
                    }
                    tokio::time::sleep(NO_RESPONDER_PAUSE).await;
                }
                Err((Stored::Maybe, e)) => return Err(Failure::Lost(format!("publish: {e}"))),
                Err((Stored::Raced | Stored::Refused, e)) => {
                    return Ok(error(
                        ErrorCode::TEMPORARILY_UNAVAILABLE,
                        format!("publish: {e}"),
                    ))
                }
            }
        }
        Ok(error(
            ErrorCode::TEMPORARILY_UNAVAILABLE,
            format!("stream {stream} has no responders"),
        ))
    }

    async fn poll(&mut self, body: &Value) -> Result<Answer, Failure> {
        let js = self.js().await?;
        let mut msgs = Map::new();
        let offsets = body["offsets"].as_object().cloned().unwrap_or_default();
        for (key, from) in offsets {
            let name = stream_of(&Value::String(key.clone()));
            let stream = js
                .get_stream_no_info(&name)
                .await
                .map_err(|e| Failure::Lost(format!("stream {name}: {e}")))?;
            let mut seq = from.as_u64().unwrap_or(0);
            let mut got = Vec::new();
            while (got.len() as u64) < POLL_PAGE {
                match stream.get_first_raw_message_by_subject(&name, seq).await {
                    Ok(m) => {
                        got.push(json!([m.sequence, message_value(&m.payload)?]));
                        seq = m.sequence + 1;
                    }
                    Err(e) => match read_gap(e.kind()) {
                        Ok(()) => break,
                        Err(code) => return Ok(js_error(code, format!("poll: {e}"))),
                    },
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
            let js = self.js().await?;
            match publish(&js, subject, &offset.to_string(), Some(last_seq)).await {
                Ok(_) => return Ok(None),
                Err((Stored::NoStream, _)) => {
                    self.create_offsets_stream().await?;
                    tokio::time::sleep(NO_RESPONDER_PAUSE).await;
                }
                Err((Stored::Raced, _)) => {}
                Err((Stored::Refused, e)) => {
                    return Ok(Some(error(
                        ErrorCode::TEMPORARILY_UNAVAILABLE,
                        format!("commit: {e}"),
                    )))
                }
                Err((Stored::Maybe, e)) => return Err(Failure::Lost(format!("commit: {e}"))),
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
        let js = self.js().await?;
        let stream = js
            .get_stream_no_info("offsets")
            .await
            .map_err(|e| Failure::Lost(format!("stream offsets: {e}")))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Ok((message_value(&m.payload)?.as_u64(), m.sequence))),
            Err(e) => match read_gap(e.kind()) {
                Ok(()) => Ok(Ok((None, 0))),
                Err(code) => Ok(Err(js_error(code, format!("read a committed offset: {e}")))),
            },
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
        per_subject: Option<i64>,
    ) -> Result<(), Failure> {
        let config = stream::Config {
            name: name.to_string(),
            subjects: subjects.to_vec(),
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_messages_per_subject: per_subject.unwrap_or(-1),
            ..Default::default()
        };
        let js = self.js().await?;
        match js.create_stream(config).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                jetstream::context::CreateStreamErrorKind::JetStream(j)
                    if j.error_code().0 == STREAM_EXISTS =>
                {
                    Ok(())
                }
                _ => Err(Failure::Lost(format!("creating stream {name}: {e}"))),
            },
        }
    }
}

/// Publishes and waits for the acknowledgement: the stream sequence, or
/// whether a failed publish may have been stored, and why it failed.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    payload: &str,
    expected_last: Option<u64>,
) -> Result<u64, (Stored, String)> {
    let mut message =
        jetstream::message::PublishMessage::build().payload(payload.to_string().into());
    if let Some(seq) = expected_last {
        message = message.expected_last_subject_sequence(seq);
    }
    let fail = |e: jetstream::context::PublishError| (publish_stored(&e.kind()), e.to_string());
    let ack = js
        .send_publish(subject.to_string(), message)
        .await
        .map_err(fail)?;
    Ok(ack.await.map_err(fail)?.sequence)
}

/// A get by subject (the next from a sequence, or the last) that found
/// nothing (`Ok`), or the JetStream error code of one that failed
/// otherwise. (The library's two error kinds are one type.)
fn read_gap(kind: stream::LastRawMessageErrorKind) -> Result<(), Option<u64>> {
    use stream::LastRawMessageErrorKind as K;
    match kind {
        K::NoMessageFound => Ok(()),
        K::JetStream(j) if j.error_code().0 == NO_STREAM => Ok(()),
        K::JetStream(j) => Err(Some(j.error_code().0)),
        _ => Err(None),
    }
}

/// The stream of a workload key (`"3"` -> `k3`).
fn stream_of(key: &Value) -> String {
    match key {
        Value::String(s) => format!("k{s}"),
        other => format!("k{other}"),
    }
}

/// A stored message's payload: the JSON the workload sent.
fn message_value(payload: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(payload).map_err(|e| Failure::Lost(format!("message is not JSON: {e}")))
}

/// A JetStream error as a reply: definite when it says nothing was
/// stored, indefinite otherwise (a timeout inside the cluster may still
/// have committed).
fn js_error(code: Option<u64>, text: String) -> Answer {
    match code {
        Some(NO_STREAM) => error(ErrorCode::TEMPORARILY_UNAVAILABLE, text),
        _ => error(ErrorCode::INDEFINITE, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::context::PublishError;

    #[test]
    fn keys_are_streams_and_json_errors_say_what_happened() {
        assert_eq!(stream_of(&json!("3")), "k3");
        assert_eq!(stream_of(&json!(3)), "k3");
        let code = |a: Answer| match a {
            Answer::Reply(r) => ErrorCode::of_reply(&r),
            Answer::NotSent(_) => None,
        };
        assert_eq!(
            code(js_error(Some(NO_STREAM), "x".into())),
            Some(ErrorCode::TEMPORARILY_UNAVAILABLE)
        );
        // A JetStream timeout (10008) or no code at all: maybe stored.
        assert_eq!(
            code(js_error(Some(10008), "x".into())),
            Some(ErrorCode::INDEFINITE)
        );
        assert_eq!(
            code(js_error(None, "x".into())),
            Some(ErrorCode::INDEFINITE)
        );
        assert_eq!(message_value(b"17").ok(), Some(json!(17)));
        assert!(message_value(b"not json").is_err());
    }

    /// Every way a publish fails, and whether its message may be stored:
    /// only a publish that never got an acknowledgement is indefinite.
    #[test]
    fn each_publish_error_kind_is_definite_or_not() {
        let cases = [
            (PublishErrorKind::StreamNotFound, Stored::NoStream),
            (PublishErrorKind::WrongLastSequence, Stored::Raced),
            (PublishErrorKind::WrongLastMessageId, Stored::Raced),
            (PublishErrorKind::MaxAckPending, Stored::Refused),
            (PublishErrorKind::MaxPayloadExceeded, Stored::Refused),
            (PublishErrorKind::TimedOut, Stored::Maybe),
            (PublishErrorKind::BrokenPipe, Stored::Maybe),
            (PublishErrorKind::Other, Stored::Maybe),
        ];
        for (kind, stored) in cases {
            let e = PublishError::new(kind);
            assert_eq!(publish_stored(&e.kind()), stored, "{e}");
        }
    }

    /// Every way a get by subject fails: found nothing (no message, no
    /// stream yet), or failed, with JetStream's code when it gave one.
    #[test]
    fn each_get_error_kind_is_a_gap_or_a_failure() {
        use stream::LastRawMessageErrorKind as K;
        let js = |err_code: u64| -> jetstream::Error {
            serde_json::from_value(json!({"code": 404, "err_code": err_code, "description": "x"}))
                .unwrap()
        };
        assert_eq!(read_gap(K::NoMessageFound), Ok(()));
        assert_eq!(read_gap(K::JetStream(js(NO_STREAM))), Ok(()));
        assert_eq!(read_gap(K::JetStream(js(10008))), Err(Some(10008)));
        assert_eq!(read_gap(K::InvalidSubject), Err(None));
        assert_eq!(read_gap(K::Other), Err(None));
    }

    /// A server that is not there: the request never left, so it did not
    /// happen (`NotSent`), and the next request connects afresh.
    #[tokio::test]
    async fn a_request_to_no_server_is_not_sent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = NatsClient::new(format!("127.0.0.1:{port}"), 1);
        let send = json!({"type": "send", "key": "1", "msg": 5});
        let a = c.call(&send, Duration::from_secs(5)).await;
        assert!(
            matches!(a, Answer::NotSent(ref e) if e.contains("cannot connect")),
            "{a:?}"
        );
        assert!(c.conn.is_none());
    }
}
