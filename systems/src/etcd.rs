//! The built-in etcd client, on etcd's own Rust client (`etcd-client`,
//! etcd's v3 gRPC API): a lin-kv request (a Maelstrom body) becomes a
//! range, a put or a compare-and-swap transaction, and etcd's answer
//! becomes a Maelstrom reply, so the workload's own mapping judges it like
//! any node's. Keys are `k<key>` and values their JSON text. Reads are
//! linearizable unless the system asks for `serializable` ones.
//!
//! Errors are mapped soundly (`status_is_definite` and the tests below say
//! it code by code). etcd-client's own connect makes a balanced channel
//! that connects lazily and holds a request while no server is ready, so
//! a request to a node that is down would wait out its timeout and be
//! indefinite. Instead each client connects its channel itself
//! (`raw-channel`), eagerly: a connection that cannot be made means the
//! request never left (not sent, it did not happen); once connected, a
//! request whose answer is lost (a timeout, a broken connection, etcd's
//! "request timed out") may have happened and is indefinite, and the
//! connection is made again for the next request.

use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};
use tonic::Code;

use crate::client::{BadSetting, Caller, ClientKind, ClientSettings, Connection, Endpoint};

pub use crate::answer::Answer;
use crate::answer::{error, ErrorCode};

/// How long making a connection may take; the request's own timeout
/// bounds it too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `[client] adapter = "etcd"`.
pub struct Kind;

pub static KIND: Kind = Kind;

impl ClientKind for Kind {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn plan(&self, s: ClientSettings) -> Result<Arc<dyn Endpoint>, BadSetting> {
        Ok(Arc::new(EtcdClient {
            address: s.address,
            serializable: s.serializable_reads,
        }))
    }
}

/// Where an etcd node's clients connect, and how they read.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdClient {
    pub address: String,
    pub serializable: bool,
}

impl Endpoint for EtcdClient {
    fn connect(&self, _: &Caller) -> Box<dyn Connection> {
        Box::new(EtcdConn {
            endpoint: self.clone(),
            kv: None,
        })
    }
}

/// One client's connection to one etcd node, made on first use.
struct EtcdConn {
    endpoint: EtcdClient,
    kv: Option<KvClient>,
}

impl Connection for EtcdConn {
    fn call<'a>(&'a mut self, body: &'a Value, _: u64, timeout: Duration) -> BoxFuture<'a, Answer> {
        Box::pin(self.call(body, timeout))
    }
}

/// A lin-kv request as etcd sees it.
enum Request {
    Read,
    Write(String),
    Cas { from: String, to: String },
}

impl EtcdConn {
    /// Performs one lin-kv request within `timeout`.
    async fn call(&mut self, body: &Value, timeout: Duration) -> Answer {
        let key = format!("k{}", body["key"]);
        let request = match body["type"].as_str().unwrap_or("") {
            "read" => Request::Read,
            "write" => Request::Write(body["value"].to_string()),
            "cas" => Request::Cas {
                from: body["from"].to_string(),
                to: body["to"].to_string(),
            },
            other => {
                return error(
                    ErrorCode::NOT_SUPPORTED,
                    format!("the etcd client does not support {other:?}"),
                )
            }
        };
        let answer = match tokio::time::timeout(timeout, self.perform(&key, request)).await {
            Ok(a) => a,
            Err(_) => error(
                ErrorCode::TIMEOUT,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
        };
        // After anything unclear, connect afresh: a node that went down
        // then fails the next request as not sent.
        if !matches!(&answer, Answer::Reply(r) if ErrorCode::of_reply(r).is_none_or(|c| c.is_definite()))
        {
            self.kv = None;
        }
        answer
    }

    async fn perform(&mut self, key: &str, request: Request) -> Answer {
        let mut kv = match self.kv().await {
            Ok(kv) => kv,
            Err(unsent) => return Answer::NotSent(unsent),
        };
        let serializable = self.endpoint.serializable;
        let read = || {
            let o = GetOptions::new();
            Some(if serializable {
                o.with_serializable()
            } else {
                o
            })
        };
        let done = match request {
            Request::Read => kv
                .get(key, read())
                .await
                .map(|r| read_reply(first_value(r.kvs()))),
            Request::Write(v) => kv
                .put(key, v, None)
                .await
                .map(|_| json!({"type": "write_ok"})),
            Request::Cas { from, to } => {
                let txn = Txn::new()
                    .when([Compare::value(key, CompareOp::Equal, from)])
                    .and_then([TxnOp::put(key, to, None)])
                    .or_else([TxnOp::get(key, None)]);
                kv.txn(txn).await.map(|r| {
                    let current = r.op_responses().into_iter().find_map(|op| match op {
                        TxnOpResponse::Get(g) => Some(first_value(g.kvs()).is_some()),
                        _ => None,
                    });
                    cas_reply(r.succeeded(), current.unwrap_or(false))
                })
            }
        };
        match done {
            Ok(reply) => Answer::Reply(reply),
            Err(e) => failed(e),
        }
    }

    /// This connection's KV client, connecting first if need be; `Err`
    /// says why no request could be sent.
    async fn kv(&mut self) -> Result<KvClient, String> {
        if let Some(kv) = &self.kv {
            return Ok(kv.clone());
        }
        let address = &self.endpoint.address;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("etcd address {address:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let client = etcd_client::Client::from_channel(etcd_client::Channel::Tonic(channel), None)
            .await
            .map_err(|e| format!("cannot set up an etcd client for {address}: {e}"))?;
        let kv = client.kv_client();
        self.kv = Some(kv.clone());
        Ok(kv)
    }
}

/// The value of the first key-value of a range: absent, or its JSON.
fn first_value(kvs: &[etcd_client::KeyValue]) -> Option<Result<Value, String>> {
    let kv = kvs.first()?;
    Some(serde_json::from_slice(kv.value()).map_err(|e| format!("value is not JSON: {e}")))
}

/// A range's first value as a read's reply.
fn read_reply(value: Option<Result<Value, String>>) -> Value {
    match value {
        None => ErrorCode::KEY_DOES_NOT_EXIST.reply("key does not exist"),
        Some(Ok(v)) => json!({"type": "read_ok", "value": v}),
        Some(Err(e)) => ErrorCode::INDEFINITE.reply(e),
    }
}

/// A compare-and-swap's reply: done, or why not (the failure branch's
/// range tells absent from different).
fn cas_reply(succeeded: bool, present: bool) -> Value {
    match (succeeded, present) {
        (true, _) => json!({"type": "cas_ok"}),
        (false, false) => ErrorCode::KEY_DOES_NOT_EXIST.reply("key does not exist"),
        (false, true) => ErrorCode::PRECONDITION_FAILED.reply("value differs"),
    }
}

/// A request that failed once sent, as a reply.
fn failed(e: etcd_client::Error) -> Answer {
    match &e {
        etcd_client::Error::GRpcStatus(s) if status_is_definite(s.code()) => error(
            ErrorCode::TEMPORARILY_UNAVAILABLE,
            format!("etcd refused: {e}"),
        ),
        _ => error(ErrorCode::INDEFINITE, e.to_string()),
    }
}

/// Whether a request etcd answered with this gRPC status certainly did
/// not take effect: refused before it was proposed (a malformed or
/// unauthorized request, a method it lacks, a request too large). Every
/// other status may come after a proposal (etcd's "request timed out" and
/// "leader changed" are `Unavailable`; a lost stream is `Unknown` or
/// `Internal`), or from the transport after the request left.
fn status_is_definite(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::Unimplemented
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::OutOfRange
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_lin_kv_replies() {
        assert_eq!(
            read_reply(Some(Ok(json!(7)))),
            json!({"type": "read_ok", "value": 7})
        );
        let code = |v: &Value| ErrorCode::of_reply(v);
        assert_eq!(code(&read_reply(None)), Some(ErrorCode::KEY_DOES_NOT_EXIST));
        assert_eq!(
            code(&read_reply(Some(Err("bad".into())))),
            Some(ErrorCode::INDEFINITE)
        );
        assert_eq!(cas_reply(true, true), json!({"type": "cas_ok"}));
        assert_eq!(
            code(&cas_reply(false, true)),
            Some(ErrorCode::PRECONDITION_FAILED)
        );
        assert_eq!(
            code(&cas_reply(false, false)),
            Some(ErrorCode::KEY_DOES_NOT_EXIST)
        );
    }

    /// Every gRPC status, and whether a request answered with it may
    /// have taken effect.
    #[test]
    fn each_grpc_status_is_definite_or_not() {
        let definite = [
            Code::InvalidArgument,
            Code::Unimplemented,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::OutOfRange,
        ];
        let indefinite = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
        ];
        for c in definite {
            assert!(status_is_definite(c), "{c:?}");
            let a = failed(etcd_client::Error::GRpcStatus(tonic::Status::new(c, "x")));
            assert!(
                matches!(&a, Answer::Reply(r) if ErrorCode::of_reply(r) == Some(ErrorCode::TEMPORARILY_UNAVAILABLE)),
                "{c:?}: {a:?}"
            );
        }
        for c in indefinite {
            assert!(!status_is_definite(c), "{c:?}");
            let a = failed(etcd_client::Error::GRpcStatus(tonic::Status::new(c, "x")));
            assert!(
                matches!(&a, Answer::Reply(r) if ErrorCode::of_reply(r) == Some(ErrorCode::INDEFINITE)),
                "{c:?}: {a:?}"
            );
        }
        assert_eq!(definite.len() + indefinite.len(), 17, "every gRPC code");
        // The transport failing after the request left: indefinite.
        let io = etcd_client::Error::IoError(std::io::Error::other("reset"));
        assert!(
            matches!(failed(io), Answer::Reply(r) if ErrorCode::of_reply(&r) == Some(ErrorCode::INDEFINITE))
        );
    }

    /// No server there: the connection is refused before any request
    /// left, so the request did not happen (`NotSent`) and quickly, not
    /// after its timeout.
    #[tokio::test]
    async fn a_request_to_no_server_is_not_sent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let endpoint = EtcdClient {
            address: format!("127.0.0.1:{port}"),
            serializable: false,
        };
        let mut conn = EtcdConn { endpoint, kv: None };
        let read = json!({"type": "read", "key": 1});
        let a = conn.call(&read, Duration::from_secs(30)).await;
        assert!(
            matches!(&a, Answer::NotSent(e) if e.contains("cannot connect")),
            "{a:?}"
        );
        assert!(conn.kv.is_none());
    }
}
