//! Client drivers: each client is one logical process that invokes ops on
//! its node, waits for the reply (matched on `in_reply_to`) or a timeout,
//! and records invoke and completion in the history. Nothing is retried
//! behind the history's back: an unknown outcome is recorded as `info`, and
//! the client continues under a new process number, as in Jepsen.

use faultline_checker::{ErrorCode, EventType, Process};
use faultline_workloads::{Completion, Generator, Invocation, Workload};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use faultline_net::router::Network;
use faultline_rundir::record::History;
use faultline_systems::client::{Answer, Caller, Connection, Endpoint};

/// The one thing the nemesis may do to the client load: make it burst.
pub trait Load: Send + Sync {
    /// Clients send at `factor` times the configured rate until reset to 1.
    fn set_burst(&self, factor: f64);
}

/// Spaces invocations across all clients to a total rate, times a burst
/// factor the overload nemesis sets.
pub struct Pacer {
    next: Mutex<Instant>,
    interval: Duration,
    /// f64 bits; 1.0 outside bursts.
    burst: AtomicU64,
}

impl Pacer {
    pub fn new(rate_per_s: f64) -> Self {
        Pacer {
            next: Mutex::new(Instant::now()),
            interval: Duration::from_secs_f64(1.0 / rate_per_s),
            burst: AtomicU64::new(1.0f64.to_bits()),
        }
    }

    /// Waits for this client's next slot; false when it falls past `deadline`.
    pub async fn wait(&self, deadline: Instant) -> bool {
        let slot = {
            let mut next = self.next.lock().unwrap();
            let slot = (*next).max(Instant::now());
            *next = slot
                + self
                    .interval
                    .div_f64(f64::from_bits(self.burst.load(Relaxed)));
            slot
        };
        if slot >= deadline {
            return false;
        }
        tokio::time::sleep_until(slot.into()).await;
        true
    }
}

impl Load for Pacer {
    fn set_burst(&self, factor: f64) {
        let factor = if factor.is_finite() {
            factor.clamp(1.0, 100.0)
        } else {
            1.0
        };
        self.burst.store(factor.to_bits(), Relaxed);
    }
}

/// How often a waiting client checks whether its node died.
const NODE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// How a client's requests reach its node and its answers come back.
pub enum Conn {
    /// Through the stdio router; replies arrive in the client's inbox.
    Stdio {
        net: Arc<Network>,
        inbox: mpsc::Receiver<Value>,
    },
    /// A real server's client (built in, or the user's adapter).
    Server(Box<dyn Connection>),
}

impl Conn {
    /// Client `k`'s connection through the stdio router.
    pub fn stdio(net: Arc<Network>, k: usize) -> Conn {
        let inbox = net.take_client_inbox(k);
        Conn::Stdio { net, inbox }
    }
}

pub struct Client {
    /// 1-based: the client id is `c{k}`.
    pub k: usize,
    pub node: usize,
    node_id: String,
    process: u64,
    stride: u64,
    msg_id: u64,
    conn: Conn,
    /// The last request could not reach the node: wait before the next.
    node_unreachable: bool,
    history: Arc<History>,
    workload: &'static dyn Workload,
    timeout: Duration,
    /// With membership changes: the members now. A client whose node left
    /// asks a member instead.
    pub members: Option<crate::nemesis::membership::MemberView>,
    /// A real server's endpoint of each node, for following a member when
    /// this client's own node left; and the node `conn` talks to now.
    pub endpoints: Option<Vec<Arc<dyn Endpoint>>>,
    conn_node: usize,
    /// Where a client's own log goes (an adapter's stderr).
    pub log_dir: std::path::PathBuf,
}

/// Who a client is and what it asks; how it connects is its `Conn`.
pub struct ClientSpec {
    /// 1-based.
    pub k: usize,
    pub node: usize,
    pub node_id: String,
    pub concurrency: usize,
    pub workload: &'static dyn Workload,
    pub timeout: Duration,
}

impl Client {
    pub fn new(spec: ClientSpec, conn: Conn, history: Arc<History>) -> Self {
        Client {
            k: spec.k,
            node: spec.node,
            node_id: spec.node_id,
            process: (spec.k - 1) as u64,
            stride: spec.concurrency as u64,
            msg_id: 0,
            conn,
            node_unreachable: false,
            history,
            workload: spec.workload,
            timeout: spec.timeout,
            members: None,
            endpoints: None,
            conn_node: spec.node,
            log_dir: std::path::PathBuf::new(),
        }
    }

    fn record(
        &self,
        kind: EventType,
        inv: &Invocation,
        value: &Value,
        extra: Map<String, Value>,
    ) -> std::io::Result<()> {
        let process = Process::Client(self.process);
        let key = Some(inv.key.clone());
        self.history
            .record(process, kind, inv.f, key, value.clone(), extra)
            .map(|_| ())
    }

    /// The workload this client asks.
    pub fn workload(&self) -> &'static dyn Workload {
        self.workload
    }

    /// Invokes one op and records it; returns the completion type.
    pub async fn invoke(&mut self, inv: &Invocation) -> std::io::Result<EventType> {
        Ok(completion_type(self.invoke_for(inv).await?.kind))
    }

    /// Invokes one op and records it; returns how it completed.
    pub async fn invoke_for(&mut self, inv: &Invocation) -> std::io::Result<Completion> {
        self.follow_home();
        self.msg_id += 1;
        let msg_id = self.msg_id;
        let mut body = self.workload.request(inv);
        body["msg_id"] = json!(msg_id);
        let mut marks = Map::new();
        if inv.final_read {
            marks.insert("final".into(), json!(true));
        }
        self.record(EventType::Invoke, inv, &inv.value, marks)?;
        let mut extra = Map::new();
        // A stdio client can ask any node; a server's client only its own.
        let (node, node_id) = match (&self.conn, inv.node) {
            (Conn::Stdio { net, .. }, Some(n)) if n < net.node_ids().len() => {
                (n, net.node_ids()[n].clone())
            }
            (Conn::Stdio { net, .. }, _) if self.home() != self.node => {
                (self.home(), net.node_ids()[self.home()].clone())
            }
            (Conn::Server(_), _) if self.conn_node != self.node => {
                (self.conn_node, format!("n{}", self.conn_node + 1))
            }
            _ => (self.node, self.node_id.clone()),
        };
        extra.insert("node".into(), json!(node_id));
        let started = Instant::now();
        // Some(completion) when the answer is already here; None when it
        // will arrive in the stdio inbox.
        let reply: Result<Option<Completion>, String> = match &mut self.conn {
            Conn::Stdio { net, .. } => net
                .send_to_node(&format!("c{}", self.k), node, &body)
                .map(|()| None)
                .map_err(|e| e.to_string()),
            Conn::Server(c) => {
                let answer = c.call(&body, msg_id, self.timeout).await;
                if let Some(n) = served_by(&answer) {
                    extra.insert("served_by".into(), json!(n));
                }
                answered(answer, self.workload, inv)
            }
        };
        self.node_unreachable = reply.is_err();
        let (kind, value) = match reply {
            // Not delivered at all: it certainly did not happen.
            Err(e) => {
                extra.insert("error".into(), json!([ErrorCode::NO_CODE, e]));
                (EventType::Fail, inv.value.clone())
            }
            Ok(Some(c)) => self.completed(c, &mut extra),
            Ok(None) => match self.await_reply(inv, msg_id, node).await {
                Ok(c) => self.completed(c, &mut extra),
                Err(lost) => {
                    extra.insert("error".into(), lost);
                    (EventType::Info, inv.value.clone())
                }
            },
        };
        extra.insert(
            "latency_ns".into(),
            json!(started.elapsed().as_nanos() as u64),
        );
        self.record(kind, inv, &value, extra)?;
        if kind == EventType::Info {
            self.process += self.stride;
        }
        Ok(Completion {
            kind: match kind {
                EventType::Ok => faultline_workloads::Outcome::Ok,
                EventType::Fail => faultline_workloads::Outcome::Fail,
                _ => faultline_workloads::Outcome::Info,
            },
            value,
            error: None,
        })
    }

    /// The history's type and value for a completion, its error noted.
    fn completed(&self, c: Completion, extra: &mut Map<String, Value>) -> (EventType, Value) {
        if let Some((code, text)) = c.error {
            extra.insert("error".into(), json!([code, text]));
        }
        (completion_type(c.kind), c.value)
    }

    /// A server's client whose node left the cluster talks to the member
    /// that stands in for it (and back to its own once it is in again),
    /// through a new connection to that member's endpoint.
    fn follow_home(&mut self) {
        let home = self.home();
        if home == self.conn_node || !matches!(self.conn, Conn::Server(_)) {
            return;
        }
        let Some(endpoint) = self.endpoints.as_ref().and_then(|e| e.get(home)) else {
            return;
        };
        let caller = Caller {
            client: format!("c{}", self.k),
            node: format!("n{}", home + 1),
            log_dir: self.log_dir.clone(),
        };
        self.conn = Conn::Server(endpoint.connect(&caller));
        self.conn_node = home;
    }

    /// The node this client asks: its own, or while it is out of the
    /// cluster a member (the same one for the same membership).
    fn home(&self) -> usize {
        let Some(view) = &self.members else {
            return self.node;
        };
        let members = view.read().unwrap_or_else(|e| e.into_inner());
        if members.contains(&self.node) || members.is_empty() {
            self.node
        } else {
            members[(self.k - 1) % members.len()]
        }
    }

    /// Whether the node can be reached at all (a stdio node is attached; a
    /// server is assumed up until a connection to it is refused).
    fn node_up(&self) -> bool {
        match &self.conn {
            Conn::Stdio { net, .. } => net.is_attached(self.home()),
            Conn::Server(_) => !self.node_unreachable,
        }
    }

    /// Waits for the reply to `msg_id` in the stdio inbox; the error to
    /// record when none came (the node died, or time ran out).
    async fn await_reply(
        &mut self,
        inv: &Invocation,
        msg_id: u64,
        node: usize,
    ) -> Result<Completion, Value> {
        let Conn::Stdio { net, inbox } = &mut self.conn else {
            return Err(json!([
                ErrorCode::NO_CODE,
                "no stdio connection to wait on"
            ]));
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let wait = tokio::time::sleep(NODE_CHECK_INTERVAL);
            tokio::select! {
                m = inbox.recv() => {
                    let Some(reply) = m else {
                        return Err(json!([ErrorCode::NO_CODE, "client inbox closed"]));
                    };
                    // Late replies to earlier, timed-out requests are stale.
                    if reply.get("in_reply_to").and_then(Value::as_u64) == Some(msg_id) {
                        return Ok(self.workload.complete(inv, &reply));
                    }
                }
                _ = wait => {
                    if !net.is_attached(node) {
                        return Err(json!([ErrorCode::CRASH, "node crashed while the op was in flight"]));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(json!([ErrorCode::TIMEOUT, format!("client timeout after {} ms", self.timeout.as_millis())]));
                    }
                }
            }
        }
    }

    /// The main phase: paced random ops until the deadline or cancellation.
    pub async fn run(
        &mut self,
        gen: &Mutex<Box<dyn Generator>>,
        pacer: &Pacer,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> std::io::Result<()> {
        while !cancel.is_cancelled() && Instant::now() < deadline {
            let ok = tokio::select! {
                ok = pacer.wait(deadline) => ok,
                _ = cancel.cancelled() => false,
            };
            if !ok {
                break;
            }
            let inv = gen.lock().unwrap_or_else(|e| e.into_inner()).next_op();
            let done = self.invoke_for(&inv).await?;
            gen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(&inv, &done);
            // A client whose node is down reconnects at most once per
            // node check instead of failing op after op at once: those
            // instant failures would take most of the shared rate while a
            // node is killed, starving the clients of live nodes just when
            // the cluster is electing a new leader.
            while !self.node_up() && !cancel.is_cancelled() && Instant::now() < deadline {
                tokio::select! {
                    _ = tokio::time::sleep(NODE_CHECK_INTERVAL) => {}
                    _ = cancel.cancelled() => {}
                }
                // A server is tried again after one wait.
                self.node_unreachable = false;
            }
        }
        Ok(())
    }
}

/// The node an adapter's reply says served it (`served_by`), if any: a
/// client that follows a primary elsewhere is not answered by its home.
fn served_by(a: &Answer) -> Option<&str> {
    match a {
        Answer::Reply(r) => r.get("served_by").and_then(Value::as_str),
        Answer::NotSent(_) => None,
    }
}

/// A server's answer as a completion; `Err` when it never reached it.
fn answered(
    a: Answer,
    workload: &dyn Workload,
    inv: &Invocation,
) -> Result<Option<Completion>, String> {
    match a {
        Answer::NotSent(e) => Err(e),
        Answer::Reply(r) => Ok(Some(workload.complete(inv, &r))),
    }
}

/// A completion as a history event type.
fn completion_type(outcome: faultline_workloads::Outcome) -> EventType {
    match outcome {
        faultline_workloads::Outcome::Ok => EventType::Ok,
        faultline_workloads::Outcome::Fail => EventType::Fail,
        faultline_workloads::Outcome::Info => EventType::Info,
    }
}
