//! Client drivers: each client is one logical process that invokes ops on
//! its node, waits for the reply (matched on `in_reply_to`) or a timeout,
//! and records invoke and completion in the history. Nothing is retried
//! behind the history's back: an unknown outcome is recorded as `info`, and
//! the client continues under a new process number, as in Jepsen.

use faultline_checker::{EventType, Process};
use faultline_workloads::{Generator, Invocation, Workload};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::net::{Network, SendError};
use crate::recorder::History;

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

pub struct Client {
    /// 1-based: the client id is `c{k}`.
    pub k: usize,
    pub node: usize,
    process: u64,
    stride: u64,
    msg_id: u64,
    inbox: mpsc::Receiver<Value>,
    net: Arc<Network>,
    history: Arc<History>,
    workload: &'static dyn Workload,
    timeout: Duration,
}

impl Client {
    pub fn new(
        k: usize,
        node: usize,
        concurrency: usize,
        net: Arc<Network>,
        history: Arc<History>,
        workload: &'static dyn Workload,
        timeout: Duration,
    ) -> Self {
        let inbox = net.take_client_inbox(k);
        Client {
            k,
            node,
            process: (k - 1) as u64,
            stride: concurrency as u64,
            msg_id: 0,
            inbox,
            net,
            history,
            workload,
            timeout,
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

    /// Invokes one op and records it; returns the completion type.
    pub async fn invoke(&mut self, inv: &Invocation) -> std::io::Result<EventType> {
        self.msg_id += 1;
        let msg_id = self.msg_id;
        let mut body = self.workload.request(inv);
        body["msg_id"] = json!(msg_id);
        let node_id = self.net.node_ids()[self.node].clone();
        self.record(EventType::Invoke, inv, &inv.value, Map::new())?;
        let mut extra = Map::new();
        extra.insert("node".into(), json!(node_id));
        let started = Instant::now();
        let sent = self
            .net
            .send_to_node(&format!("c{}", self.k), self.node, &body);
        let (kind, value) = match sent {
            // Not delivered at all: it certainly did not happen.
            Err(e @ (SendError::NodeDown(_) | SendError::Full(_))) => {
                extra.insert("error".into(), json!([-1, e.to_string()]));
                (EventType::Fail, inv.value.clone())
            }
            Ok(()) => self.await_reply(inv, msg_id, &mut extra).await,
        };
        extra.insert(
            "latency_ns".into(),
            json!(started.elapsed().as_nanos() as u64),
        );
        self.record(kind, inv, &value, extra)?;
        if kind == EventType::Info {
            self.process += self.stride;
        }
        Ok(kind)
    }

    async fn await_reply(
        &mut self,
        inv: &Invocation,
        msg_id: u64,
        extra: &mut Map<String, Value>,
    ) -> (EventType, Value) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let wait = tokio::time::sleep(NODE_CHECK_INTERVAL);
            tokio::select! {
                m = self.inbox.recv() => {
                    let Some(reply) = m else {
                        extra.insert("error".into(), json!([-1, "client inbox closed"]));
                        return (EventType::Info, inv.value.clone());
                    };
                    // Late replies to earlier, timed-out requests are stale.
                    if reply.get("in_reply_to").and_then(Value::as_u64) != Some(msg_id) {
                        continue;
                    }
                    let c = self.workload.complete(inv, &reply);
                    if let Some((code, text)) = c.error {
                        extra.insert("error".into(), json!([code, text]));
                    }
                    return (completion_type(c.kind), c.value);
                }
                _ = wait => {
                    if !self.net.is_attached(self.node) {
                        extra.insert("error".into(), json!([13, "node crashed while the op was in flight"]));
                        return (EventType::Info, inv.value.clone());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        extra.insert("error".into(), json!([0, format!("client timeout after {} ms", self.timeout.as_millis())]));
                        return (EventType::Info, inv.value.clone());
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
            self.invoke(&inv).await?;
            // A client whose node is down reconnects at most once per
            // node check instead of failing op after op at once: those
            // instant failures would take most of the shared rate while a
            // node is killed, starving the clients of live nodes just when
            // the cluster is electing a new leader.
            while !self.net.is_attached(self.node)
                && !cancel.is_cancelled()
                && Instant::now() < deadline
            {
                tokio::select! {
                    _ = tokio::time::sleep(NODE_CHECK_INTERVAL) => {}
                    _ = cancel.cancelled() => {}
                }
            }
        }
        Ok(())
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
