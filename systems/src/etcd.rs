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
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::client::{BadSetting, Caller, ClientKind, ClientSettings, Connection, Endpoint};
use crate::http::{self, Unsent};

pub use crate::answer::Answer;
use crate::answer::{error, ErrorCode};

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

// The gateway is plain HTTP, one connection a request: a client holds
// nothing but where to go.
impl Endpoint for EtcdClient {
    fn connect(&self, _: &Caller) -> Box<dyn Connection> {
        Box::new(self.clone())
    }
}

impl Connection for EtcdClient {
    fn call<'a>(&'a mut self, body: &'a Value, _: u64, timeout: Duration) -> BoxFuture<'a, Answer> {
        Box::pin(EtcdClient::call(self, body, timeout))
    }
}

#[derive(Debug, Clone)]
pub struct EtcdClient {
    pub address: String,
    pub serializable: bool,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
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
            other => {
                return error(
                    ErrorCode::NOT_SUPPORTED,
                    format!("the etcd client does not support {other:?}"),
                )
            }
        };
        match tokio::time::timeout(
            timeout,
            http::call(&self.address, "POST", path, Some(&request)),
        )
        .await
        {
            Err(_) => error(
                ErrorCode::TIMEOUT,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
            Ok(Err(Unsent(e))) => Answer::NotSent(e),
            Ok(Ok(Err(e))) => error(ErrorCode::INDEFINITE, e),
            Ok(Ok(Ok((status, answer)))) if !(200..300).contains(&status) => {
                error(ErrorCode::INDEFINITE, format!("HTTP {status}: {answer}"))
            }
            Ok(Ok(Ok((_, answer)))) => reply(body["type"].as_str().unwrap_or(""), &answer),
        }
    }
}

/// etcd's 2xx answer as a Maelstrom reply.
fn reply(ty: &str, answer: &Value) -> Answer {
    match ty {
        "read" => match first_value(answer) {
            None => error(ErrorCode::KEY_DOES_NOT_EXIST, "key does not exist"),
            Some(Ok(v)) => Answer::Reply(json!({"type": "read_ok", "value": v})),
            Some(Err(e)) => error(ErrorCode::INDEFINITE, e),
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
                None => error(ErrorCode::KEY_DOES_NOT_EXIST, "key does not exist"),
                Some(_) => error(ErrorCode::PRECONDITION_FAILED, "value differs"),
            }
        }
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
            matches!(reply("read", &json!({"header": {}})), Answer::Reply(r) if ErrorCode::of_reply(&r) == Some(ErrorCode::KEY_DOES_NOT_EXIST))
        );
        assert_eq!(
            reply("cas", &json!({"succeeded": true})),
            Answer::Reply(json!({"type": "cas_ok"}))
        );
        let differs = json!({"responses": [{"response_range": range}]});
        assert!(
            matches!(reply("cas", &differs), Answer::Reply(r) if ErrorCode::of_reply(&r) == Some(ErrorCode::PRECONDITION_FAILED))
        );
        let absent = json!({"responses": [{"response_range": {}}]});
        assert!(
            matches!(reply("cas", &absent), Answer::Reply(r) if ErrorCode::of_reply(&r) == Some(ErrorCode::KEY_DOES_NOT_EXIST))
        );
    }
}
