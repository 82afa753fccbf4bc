//! The generic client adapter: a program the user writes, in any language,
//! that speaks Maelstrom's client protocol on stdin/stdout (docs/protocol.md:
//! the lin-kv messages, one JSON envelope a line) and talks to their server in
//! the server's own protocol. One adapter process per client, started on
//! its first request with the node's address in its arguments, kept for
//! the run and started again if it dies. Its stderr goes to the node's log
//! folder as `adapter-cK.log`.

use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::answer::{error, Answer, ErrorCode};
use crate::client::{Caller, Connection, Endpoint};
use faultline_process::hygiene;

/// The longest line an adapter may write.
const MAX_LINE_BYTES: usize = 1 << 20;

struct Running {
    child: Child,
    pid: i32,
    stdin: ChildStdin,
    lines: FramedRead<ChildStdout, LinesCodec>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.start_kill();
        hygiene::unregister(self.pid);
    }
}

/// `[client] command`: the user's adapter program and its arguments,
/// this node's placeholders filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterEndpoint {
    pub argv: Vec<String>,
}

impl Endpoint for AdapterEndpoint {
    fn connect(&self, caller: &Caller) -> Box<dyn Connection> {
        let log = caller
            .log_dir
            .join(format!("adapter-{}.log", caller.client));
        Box::new(Adapter::new(
            self.argv.clone(),
            caller.client.clone(),
            caller.node.clone(),
            log,
        ))
    }
}

impl Connection for Adapter {
    fn call<'a>(
        &'a mut self,
        body: &'a Value,
        msg_id: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Answer> {
        Box::pin(Adapter::call(self, body, msg_id, timeout))
    }
}

/// One client's adapter process.
pub struct Adapter {
    argv: Vec<String>,
    client: String,
    node: String,
    log: PathBuf,
    running: Option<Running>,
}

impl Adapter {
    pub fn new(argv: Vec<String>, client: String, node: String, log: PathBuf) -> Adapter {
        Adapter {
            argv,
            client,
            node,
            log,
            running: None,
        }
    }

    fn start(&mut self) -> Result<&mut Running, String> {
        if self.running.is_none() {
            let (program, args) = self
                .argv
                .split_first()
                .ok_or("the adapter command is empty")?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
            let mut cmd = Command::new(program);
            cmd.args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log);
            faultline_process::node::supervise(&mut cmd);
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start the adapter {program}: {e}"))?;
            let pid = child.id().unwrap_or(0) as i32;
            hygiene::register(pid);
            let stdin = child.stdin.take().ok_or("adapter stdin")?;
            let stdout = child.stdout.take().ok_or("adapter stdout")?;
            let lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
            self.running = Some(Running {
                child,
                pid,
                stdin,
                lines,
            });
        }
        Ok(self.running.as_mut().expect("just started"))
    }

    /// Sends one request and waits for the answer to `msg_id`.
    pub async fn call(&mut self, body: &Value, msg_id: u64, timeout: Duration) -> Answer {
        let envelope = json!({"src": self.client, "dest": self.node, "body": body});
        let r = match self.start() {
            Ok(r) => r,
            Err(e) => return Answer::NotSent(e),
        };
        let line = format!("{envelope}\n");
        if let Err(e) = r.stdin.write_all(line.as_bytes()).await {
            // It died before taking the request: nothing was sent.
            self.running = None;
            return Answer::NotSent(format!("the adapter did not take the request: {e}"));
        }
        let answer = tokio::time::timeout(timeout, Self::reply(r, msg_id)).await;
        match answer {
            Err(_) => error(
                ErrorCode::TIMEOUT,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
            Ok(Ok(reply)) => Answer::Reply(reply),
            Ok(Err(e)) => {
                self.running = None;
                error(ErrorCode::CRASH, e)
            }
        }
    }

    /// Reads lines until the reply to `msg_id` (late replies to earlier,
    /// timed-out requests are skipped).
    async fn reply(r: &mut Running, msg_id: u64) -> Result<Value, String> {
        loop {
            let line = match r.lines.next().await {
                None => return Err("the adapter exited with the request in flight".into()),
                Some(Err(e)) => return Err(format!("the adapter wrote an unreadable line: {e}")),
                Some(Ok(l)) => l,
            };
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let body = msg.get("body").cloned().unwrap_or(Value::Null);
            if body.get("in_reply_to").and_then(Value::as_u64) == Some(msg_id) {
                return Ok(body);
            }
        }
    }
}
