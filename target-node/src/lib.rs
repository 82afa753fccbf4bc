//! target-node: the system faultline tests by default. It speaks the
//! protocol of DESIGN §2-3 over stdio like any foreign binary and depends on
//! no other crate of the workspace.
//!
//! This first version is a single-leader key-value store: the first node in
//! `node_ids` owns the data; every other node forwards client requests to
//! it, and the leader answers the client directly (replies are matched on
//! client and `in_reply_to`, not on who answers). It is linearizable while
//! the leader is up and the network is reliable. The Raft node (issue 4)
//! replaces it.

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, Write};

/// Longest input line accepted; longer lines are answered with error 12.
const MAX_LINE_BYTES: usize = 1 << 20;

pub struct Node {
    id: String,
    leader: String,
    next_msg_id: u64,
    data: HashMap<String, Value>,
}

fn key_of(v: &Value) -> String {
    v.to_string()
}

impl Node {
    fn new() -> Self {
        Node {
            id: String::new(),
            leader: String::new(),
            next_msg_id: 1,
            data: HashMap::new(),
        }
    }

    fn send(
        &mut self,
        out: &mut impl Write,
        dest: &str,
        mut body: Map<String, Value>,
    ) -> std::io::Result<()> {
        body.insert("msg_id".into(), json!(self.next_msg_id));
        self.next_msg_id += 1;
        let msg = json!({"src": self.id, "dest": dest, "body": body});
        writeln!(out, "{msg}")
    }

    fn reply(
        &mut self,
        out: &mut impl Write,
        dest: &str,
        in_reply_to: &Value,
        body: Value,
    ) -> std::io::Result<()> {
        let mut b = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        b.insert("in_reply_to".into(), in_reply_to.clone());
        self.send(out, dest, b)
    }

    fn error(code: u32, text: &str) -> Value {
        json!({"type": "error", "code": code, "text": text})
    }

    /// Applies a client request on the leader and returns the reply body.
    fn execute(&mut self, body: &Value) -> Value {
        let ty = body.get("type").and_then(Value::as_str).unwrap_or("");
        let Some(key) = body.get("key") else {
            return Self::error(12, "missing key");
        };
        let k = key_of(key);
        match ty {
            "read" => match self.data.get(&k) {
                Some(v) => json!({"type": "read_ok", "value": v}),
                None => Self::error(20, "key does not exist"),
            },
            "write" => {
                let Some(v) = body.get("value") else {
                    return Self::error(12, "missing value");
                };
                self.data.insert(k, v.clone());
                json!({"type": "write_ok"})
            }
            "cas" => {
                let (Some(from), Some(to)) = (body.get("from"), body.get("to")) else {
                    return Self::error(12, "cas needs from and to");
                };
                match self.data.get(&k) {
                    None => Self::error(20, "key does not exist"),
                    Some(cur) if cur != from => {
                        Self::error(22, &format!("expected {from}, found {cur}"))
                    }
                    Some(_) => {
                        self.data.insert(k, to.clone());
                        json!({"type": "cas_ok"})
                    }
                }
            }
            other => Self::error(10, &format!("unsupported request type {other:?}")),
        }
    }

    fn handle(&mut self, out: &mut impl Write, line: &str) -> std::io::Result<()> {
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("ignoring malformed message: {e}");
                return Ok(());
            }
        };
        let src = msg
            .get("src")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let body = msg.get("body").cloned().unwrap_or(Value::Null);
        let ty = body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let msg_id = body.get("msg_id").cloned().unwrap_or(Value::Null);
        match ty.as_str() {
            "init" => {
                self.id = body
                    .get("node_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ids: Vec<String> = body
                    .get("node_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                self.leader = ids.first().cloned().unwrap_or_else(|| self.id.clone());
                eprintln!("{} initialised; leader is {}", self.id, self.leader);
                self.reply(out, &src, &msg_id, json!({"type": "init_ok"}))
            }
            "read" | "write" | "cas" if !src.starts_with('n') => {
                if self.id == self.leader {
                    let r = self.execute(&body);
                    self.reply(out, &src, &msg_id, r)
                } else {
                    let mut fwd = Map::new();
                    fwd.insert("type".into(), json!("forward"));
                    fwd.insert("client".into(), json!(src));
                    fwd.insert("request".into(), body);
                    let leader = self.leader.clone();
                    self.send(out, &leader, fwd)
                }
            }
            "forward" if self.id == self.leader => {
                let client = body
                    .get("client")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let request = body.get("request").cloned().unwrap_or(Value::Null);
                let in_reply_to = request.get("msg_id").cloned().unwrap_or(Value::Null);
                let r = self.execute(&request);
                self.reply(out, &client, &in_reply_to, r)
            }
            _ if src.starts_with('n') => Ok(()),
            other => {
                let r = Self::error(10, &format!("unsupported message type {other:?}"));
                self.reply(out, &src, &msg_id, r)
            }
        }
    }
}

/// Runs the node until stdin closes.
pub fn run(mut input: impl BufRead, mut output: impl Write, args: &[String]) -> Result<(), String> {
    if let Some(a) = args.iter().find(|a| a.starts_with("--")) {
        return Err(format!(
            "unknown argument {a:?}: this node takes no options yet"
        ));
    }
    let mut node = Node::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut input, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("reading stdin: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() > MAX_LINE_BYTES {
            eprintln!("ignoring a line over {MAX_LINE_BYTES} bytes");
            // Skip the rest of the oversized line.
            let mut rest = Vec::new();
            let _ = input.read_until(b'\n', &mut rest);
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        node.handle(&mut output, line)
            .map_err(|e| format!("writing stdout: {e}"))?;
        output.flush().map_err(|e| format!("writing stdout: {e}"))?;
    }
}
