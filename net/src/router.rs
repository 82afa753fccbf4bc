//! The stdio network: every message a node writes passes through here.
//! Node-to-node messages are routed over directed links, whose base
//! `LinkPolicy` (latency) and `LinkFaults` (cut, hold, drop, duplicate,
//! corrupt, delay, bandwidth) are applied in one place, `route_to_node`.
//! The nemesis acts on it through the `Links` seam. Messages to clients,
//! to the controller (`c0`) and trace events (`faultline`) are delivered
//! reliably. Anything malformed is counted, sampled and dropped.
//!
//! IO is generic (any `AsyncRead`/`AsyncWrite` pair per node) so the router
//! can be benchmarked without processes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

use crate::links::{LinkFaults, Links};
use faultline_nemesis::seed::{derive, Stream};

/// Longest line a node may write; longer lines are counted and skipped.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Messages queued for one node before further ones are dropped: a node
/// that stops reading (paused, wedged) must not grow the harness's memory.
pub const NODE_QUEUE_CAPACITY: usize = 16 * 1024;
/// Replies queued for one client before further ones are dropped.
pub const CLIENT_QUEUE_CAPACITY: usize = 1024;
/// Messages held on one link (`hold`) before further ones are dropped.
pub const HOLD_CAPACITY: usize = 10_000;
/// Longest queue on a bandwidth-limited link; later messages are dropped,
/// as a router with a finite buffer would.
pub const MAX_BACKLOG: Duration = Duration::from_secs(5);
/// How many malformed lines are kept as samples for results.json.
const SAMPLE_LIMIT: usize = 20;
const SAMPLE_BYTES: usize = 200;

use faultline_rundir::stats::LatencyDist;

/// The base behaviour of every node-to-node link (the run's configured
/// latency), before any fault.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkPolicy {
    /// Mean one-way latency.
    pub latency_ms: f64,
    pub dist: LatencyDist,
}

/// What one link does to a message now: its base policy with its faults.
#[derive(Debug, Clone, Copy)]
struct Effective {
    latency_ms: f64,
    dist: LatencyDist,
    faults: LinkFaults,
}

impl LinkPolicy {
    pub fn with_latency(latency_ms: f64, dist: LatencyDist) -> Self {
        LinkPolicy { latency_ms, dist }
    }

    fn with_faults(self, faults: LinkFaults) -> Effective {
        Effective {
            latency_ms: self.latency_ms + faults.delay_ms,
            dist: if faults.jitter {
                LatencyDist::Uniform
            } else {
                self.dist
            },
            faults,
        }
    }
}

impl Effective {
    fn sample_delay(&self, rng: &mut ChaCha8Rng) -> Duration {
        if self.latency_ms <= 0.0 {
            return Duration::ZERO;
        }
        let ms = match self.dist {
            LatencyDist::Constant => self.latency_ms,
            LatencyDist::Uniform => rng.gen_range(0.0..2.0 * self.latency_ms),
            LatencyDist::Exponential => -self.latency_ms * (1.0 - rng.gen::<f64>()).ln(),
        };
        Duration::from_secs_f64(ms.min(60_000.0) / 1e3)
    }
}

/// Counters shown in results.json.
#[derive(Debug, Default)]
pub struct Counters {
    pub node_lines: AtomicU64,
    pub routed: AtomicU64,
    pub delivered: AtomicU64,
    pub to_clients: AtomicU64,
    pub from_clients: AtomicU64,
    pub traces: AtomicU64,
    pub malformed: AtomicU64,
    pub oversize: AtomicU64,
    pub unknown_dest: AtomicU64,
    pub spoofed_src: AtomicU64,
    pub dropped: AtomicU64,
    pub cut: AtomicU64,
    pub held: AtomicU64,
    pub duplicated: AtomicU64,
    pub corrupted: AtomicU64,
    pub overflow: AtomicU64,
    /// Requests nodes sent to Maelstrom's services (lin-kv, seq-kv, ...).
    pub service_calls: AtomicU64,
}

use faultline_rundir::stats::NetStats;

/// A node incarnation's way in.
struct Outbox {
    /// Which incarnation: a late-finishing reader of a dead incarnation
    /// must not detach a new one.
    generation: u64,
    tx: mpsc::Sender<Outgoing>,
    /// Whether it answered `init`. Until then only the controller may
    /// write to it: a node must learn who it is before it hears from peers
    /// or clients (Maelstrom's contract). A restarted node that took a
    /// peer's message first has been seen to overwrite its durable state
    /// with it, before its `init` loaded that state.
    initialised: bool,
    /// Set while the node is paused: what peers and clients send it waits
    /// here rather than in its stdin, and on resume the clients' messages
    /// go first. A process back from a stall finds every connection
    /// readable and may serve a client before it reads the peer message
    /// that would have told it it was deposed; one shared stdin pipe would
    /// otherwise hand it everything in arrival order, an order no network
    /// promises across senders (Maelstrom's neither).
    paused: Option<Vec<(Writer, Outgoing)>>,
}

/// Who is writing to a node, which decides whether it must have answered
/// `init` first and where its messages go while the node is paused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Writer {
    /// The controller (init, setup) and services answering the node.
    Controller,
    Client,
    Peer,
}

/// One message queued for a node: deliver at `at`.
struct Outgoing {
    at: Instant,
    line: Vec<u8>,
}

use faultline_rundir::record::Sink;

/// A message held on a cut link: its sender and body, delivered on heal.
type Held = (String, Box<RawValue>);

pub struct Network {
    node_ids: Vec<String>,
    index: HashMap<String, usize>,
    base: LinkPolicy,
    links: RwLock<Vec<LinkFaults>>,
    held: Mutex<Vec<Vec<Held>>>,
    /// Per directed link: when a bandwidth-limited link is free again.
    busy_until: Mutex<Vec<Instant>>,
    /// The current incarnation's queue, if one is attached.
    outboxes: Vec<Mutex<Option<Outbox>>>,
    generation: AtomicU64,
    clients: Vec<mpsc::Sender<Value>>,
    client_inboxes: Mutex<Vec<Option<mpsc::Receiver<Value>>>>,
    controller: Vec<mpsc::Sender<Value>>,
    controller_inboxes: Mutex<Vec<Option<mpsc::Receiver<Value>>>>,
    next_id: AtomicU64,
    pub counters: Counters,
    samples: Mutex<Vec<(String, String)>>,
    sink: Arc<dyn Sink>,
    seed: u64,
    services: crate::services::Services,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    src: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dest: Cow<'a, str>,
    #[serde(borrow)]
    body: &'a RawValue,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("node {0} is down")]
    NodeDown(String),
    #[error("node {0} has not answered init")]
    NotInitialised(String),
    #[error("node {0}'s queue is full")]
    Full(String),
}

impl Network {
    pub fn new(
        node_ids: Vec<String>,
        clients: usize,
        policy: LinkPolicy,
        seed: u64,
        sink: Arc<dyn Sink>,
    ) -> Arc<Self> {
        let n = node_ids.len();
        let index = node_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let (ctx, crx): (Vec<_>, Vec<_>) = (0..clients)
            .map(|_| mpsc::channel(CLIENT_QUEUE_CAPACITY))
            .unzip();
        let (ktx, krx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(16)).unzip();
        Arc::new(Network {
            node_ids,
            index,
            base: policy,
            links: RwLock::new(vec![LinkFaults::HEALED; n * n]),
            held: Mutex::new(vec![Vec::new(); n * n]),
            busy_until: Mutex::new(vec![Instant::now(); n * n]),
            outboxes: (0..n).map(|_| Mutex::new(None)).collect(),
            clients: ctx,
            client_inboxes: Mutex::new(crx.into_iter().map(Some).collect()),
            controller: ktx,
            controller_inboxes: Mutex::new(krx.into_iter().map(Some).collect()),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(1),
            counters: Counters::default(),
            samples: Mutex::new(Vec::new()),
            sink,
            seed,
            services: Default::default(),
        })
    }

    pub fn node_ids(&self) -> &[String] {
        &self.node_ids
    }

    /// Client `k` (1-based) takes its inbox once.
    pub fn take_client_inbox(&self, k: usize) -> mpsc::Receiver<Value> {
        self.client_inboxes.lock().unwrap()[k - 1]
            .take()
            .expect("each client inbox is taken once")
    }

    pub fn take_controller_inbox(&self, node: usize) -> mpsc::Receiver<Value> {
        self.controller_inboxes.lock().unwrap()[node]
            .take()
            .expect("each controller inbox is taken once")
    }

    /// The index of the directed link from `from` to `to` (a node may
    /// message itself: that link is never faulted).
    fn link_index(&self, from: usize, to: usize) -> usize {
        let n = self.node_ids.len();
        assert!(from < n && to < n, "no link {from} -> {to} among {n} nodes");
        from * n + to
    }

    pub fn stats(&self) -> NetStats {
        let c = &self.counters;
        NetStats {
            node_lines: c.node_lines.load(Relaxed),
            routed: c.routed.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            to_clients: c.to_clients.load(Relaxed),
            from_clients: c.from_clients.load(Relaxed),
            traces: c.traces.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            oversize: c.oversize.load(Relaxed),
            unknown_dest: c.unknown_dest.load(Relaxed),
            spoofed_src: c.spoofed_src.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            cut: c.cut.load(Relaxed),
            held: c.held.load(Relaxed),
            duplicated: c.duplicated.load(Relaxed),
            corrupted: c.corrupted.load(Relaxed),
            overflow: c.overflow.load(Relaxed),
            service_calls: c.service_calls.load(Relaxed),
            samples: self.samples.lock().unwrap().clone(),
        }
    }

    fn sample(&self, node: usize, what: &str, line: &[u8]) {
        let mut s = self.samples.lock().unwrap();
        if s.len() < SAMPLE_LIMIT {
            let text = String::from_utf8_lossy(&line[..line.len().min(SAMPLE_BYTES)]);
            s.push((self.node_ids[node].clone(), format!("{what}: {text}")));
        }
    }

    fn envelope(&self, src: &str, dest: &str, body: &str) -> Vec<u8> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let mut out = Vec::with_capacity(body.len() + src.len() + dest.len() + 48);
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(b",\"src\":");
        serde_json::to_writer(&mut out, src).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"dest\":");
        serde_json::to_writer(&mut out, dest).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"body\":");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b"}\n");
        out
    }

    fn enqueue(
        &self,
        to: usize,
        at: Instant,
        line: Vec<u8>,
        writer: Writer,
    ) -> Result<(), SendError> {
        let mut guard = self.outboxes[to].lock().unwrap();
        let Some(outbox) = guard.as_mut() else {
            return Err(SendError::NodeDown(self.node_ids[to].clone()));
        };
        if writer != Writer::Controller {
            if !outbox.initialised {
                return Err(SendError::NotInitialised(self.node_ids[to].clone()));
            }
            if let Some(held) = outbox.paused.as_mut() {
                if held.len() >= NODE_QUEUE_CAPACITY {
                    self.counters.overflow.fetch_add(1, Relaxed);
                    return Err(SendError::Full(self.node_ids[to].clone()));
                }
                held.push((writer, Outgoing { at, line }));
                return Ok(());
            }
        }
        match outbox.tx.try_send(Outgoing { at, line }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.overflow.fetch_add(1, Relaxed);
                Err(SendError::Full(self.node_ids[to].clone()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(SendError::NodeDown(self.node_ids[to].clone()))
            }
        }
    }

    /// A controller message to a node (`init` and what follows it):
    /// reliable, no added latency.
    pub fn send_from_controller(&self, to: usize, body: &Value) -> Result<(), SendError> {
        self.send_direct("c0", to, body, Writer::Controller)
    }

    /// A client message to a node: reliable, no added latency, and only
    /// once the node has answered `init`.
    pub fn send_to_node(&self, src: &str, to: usize, body: &Value) -> Result<(), SendError> {
        self.send_direct(src, to, body, Writer::Client)
    }

    /// Past the link faults: the controller and clients are not nodes.
    fn send_direct(
        &self,
        src: &str,
        to: usize,
        body: &Value,
        writer: Writer,
    ) -> Result<(), SendError> {
        let line = self.envelope(src, &self.node_ids[to], &body.to_string());
        self.counters.from_clients.fetch_add(1, Relaxed);
        self.enqueue(to, Instant::now(), line, writer)
    }

    /// The one place where link faults act on node-to-node messages.
    fn route_to_node(
        &self,
        from: usize,
        to: usize,
        src: &str,
        body: &RawValue,
        rng: &mut ChaCha8Rng,
    ) {
        let link = self.link_index(from, to);
        // Held until the message is journaled: a fault set (a cut) waits
        // for routing decided before it, so no journal entry timed after
        // the history's record of a fault was decided without it. Unheld,
        // a router thread descheduled between the two let a cut link
        // deliver in the journal (seen on a loaded machine).
        let links = self.links.read().unwrap();
        let policy = self.base.with_faults(links[link]);
        let faults = policy.faults;
        let dest = &self.node_ids[to];
        self.counters.routed.fetch_add(1, Relaxed);
        if faults.cut {
            self.counters.cut.fetch_add(1, Relaxed);
            self.sink.journal(src, dest, body, "cut", Duration::ZERO);
            return;
        }
        if faults.hold {
            let mut held = self.held.lock().unwrap();
            if held[link].len() < HOLD_CAPACITY {
                held[link].push((src.to_string(), body.to_owned()));
                self.counters.held.fetch_add(1, Relaxed);
                self.sink.journal(src, dest, body, "held", Duration::ZERO);
            } else {
                self.counters.dropped.fetch_add(1, Relaxed);
                self.sink
                    .journal(src, dest, body, "dropped", Duration::ZERO);
            }
            return;
        }
        let chance = |p: f64, rng: &mut ChaCha8Rng| p > 0.0 && rng.gen_bool(p.min(1.0));
        if chance(faults.drop_probability, rng) {
            self.counters.dropped.fetch_add(1, Relaxed);
            self.sink
                .journal(src, dest, body, "dropped", Duration::ZERO);
            return;
        }
        let copies = if chance(faults.duplicate_probability, rng) {
            self.counters.duplicated.fetch_add(1, Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut line = self.envelope(src, dest, body.get());
            let mut fate = "delivered";
            if chance(faults.corrupt_probability, rng) {
                corrupt(&mut line, rng);
                self.counters.corrupted.fetch_add(1, Relaxed);
                fate = "corrupted";
            }
            let now = Instant::now();
            let mut at = now;
            if faults.bandwidth_bytes_per_s > 0.0 {
                let mut busy = self.busy_until.lock().unwrap();
                let start = busy[link].max(at);
                if start > at + MAX_BACKLOG {
                    self.counters.dropped.fetch_add(1, Relaxed);
                    self.sink
                        .journal(src, dest, body, "dropped", Duration::ZERO);
                    continue;
                }
                let wire =
                    Duration::from_secs_f64(line.len() as f64 / faults.bandwidth_bytes_per_s);
                busy[link] = start + wire;
                at = start + wire;
            }
            at += policy.sample_delay(rng);
            match self.enqueue(to, at, line, Writer::Peer) {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Relaxed);
                }
                Err(SendError::Full(_)) => fate = "overflow",
                Err(SendError::NodeDown(_) | SendError::NotInitialised(_)) => fate = "down",
            }
            self.sink
                .journal(src, dest, body, fate, at.saturating_duration_since(now));
        }
    }

    /// Handles one line a node wrote on stdout.
    fn on_node_line(&self, from: usize, line: &[u8], rng: &mut ChaCha8Rng) {
        self.counters.node_lines.fetch_add(1, Relaxed);
        let Ok(text) = std::str::from_utf8(line) else {
            self.counters.malformed.fetch_add(1, Relaxed);
            self.sample(from, "not UTF-8", line);
            return;
        };
        if text.trim().is_empty() {
            return;
        }
        let env: Envelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Relaxed);
                self.sample(from, &format!("not a message ({e})"), line);
                return;
            }
        };
        let me = &self.node_ids[from];
        // A node may pass a client's request on with the client's `src`
        // (Maelstrom allows it: the node it reaches answers the client
        // directly); it cannot speak for another node.
        let src: &str = match env.src.as_deref() {
            Some(s) if s != me && self.is_client(s) => s,
            Some(s) if s != me => {
                self.counters.spoofed_src.fetch_add(1, Relaxed);
                me
            }
            _ => me,
        };
        let dest: &str = &env.dest;
        if dest == "faultline" {
            match serde_json::from_str::<Value>(env.body.get()) {
                Ok(body) if body.get("type").and_then(Value::as_str) == Some("trace") => {
                    self.counters.traces.fetch_add(1, Relaxed);
                    self.sink.trace(me, &body);
                }
                _ => {
                    self.counters.malformed.fetch_add(1, Relaxed);
                    self.sample(
                        from,
                        "a message to faultline that is not a trace event",
                        line,
                    );
                }
            }
            return;
        }
        if let Some(&to) = self.index.get(dest) {
            self.route_to_node(from, to, src, env.body, rng);
            return;
        }
        let client = dest.strip_prefix('c').and_then(|k| k.parse::<usize>().ok());
        let Ok(body) = serde_json::from_str::<Value>(env.body.get()) else {
            self.counters.malformed.fetch_add(1, Relaxed);
            self.sample(from, "body is not JSON", line);
            return;
        };
        if let Some(reply) = self.services.handle(dest, me, &body, rng) {
            self.answer_from_service(from, dest, &body, reply, rng);
            return;
        }
        match client {
            Some(0) => {
                let _ = self.controller[from].try_send(body);
            }
            Some(k) if k <= self.clients.len() => {
                self.counters.to_clients.fetch_add(1, Relaxed);
                if self.clients[k - 1].try_send(body).is_err() {
                    self.counters.overflow.fetch_add(1, Relaxed);
                }
            }
            _ => {
                self.counters.unknown_dest.fetch_add(1, Relaxed);
                self.sample(from, &format!("unknown destination {dest:?}"), line);
            }
        }
    }

    /// Whether `id` names one of this run's clients (`c1`..).
    fn is_client(&self, id: &str) -> bool {
        id.strip_prefix('c')
            .and_then(|k| k.parse::<usize>().ok())
            .is_some_and(|k| k >= 1 && k <= self.clients.len())
    }

    /// Delivers a service's reply to the node that asked, after the
    /// configured link latency (a service is a node of the network).
    fn answer_from_service(
        &self,
        to: usize,
        service: &str,
        request: &Value,
        mut reply: Value,
        rng: &mut ChaCha8Rng,
    ) {
        self.counters.service_calls.fetch_add(1, Relaxed);
        if let Some(id) = request.get("msg_id") {
            reply["in_reply_to"] = id.clone();
        }
        let line = self.envelope(service, &self.node_ids[to], &reply.to_string());
        let at = Instant::now() + self.base.with_faults(LinkFaults::HEALED).sample_delay(rng);
        let _ = self.enqueue(to, at, line, Writer::Controller);
    }

    /// Connects a (re)started node: spawns its writer and reader tasks. The
    /// returned handle finishes when the node's stdout closes.
    pub fn attach<R, W>(
        self: &Arc<Self>,
        node: usize,
        stdout: R,
        stdin: W,
    ) -> (u64, tokio::task::JoinHandle<()>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(NODE_QUEUE_CAPACITY);
        let generation = self.generation.fetch_add(1, Relaxed);
        *self.outboxes[node].lock().unwrap() = Some(Outbox {
            generation,
            tx,
            initialised: false,
            paused: None,
        });
        tokio::spawn(write_node(rx, stdin));
        let net = self.clone();
        let seed = derive(self.seed, Stream::NodeReader { node, generation });
        let reader = tokio::spawn(async move {
            read_node(&net, node, stdout, seed).await;
            net.detach(node, generation);
        });
        (generation, reader)
    }

    /// Incarnation `generation` of the node is gone: messages to it are not
    /// delivered (a later incarnation is left alone).
    pub fn detach(&self, node: usize, generation: u64) {
        let mut slot = self.outboxes[node].lock().unwrap();
        if slot.as_ref().is_some_and(|o| o.generation == generation) {
            *slot = None;
        }
    }

    /// The node's current incarnation answered `init`: peers and clients
    /// may now write to it.
    pub fn initialised(&self, node: usize) {
        if let Some(o) = self.outboxes[node].lock().unwrap().as_mut() {
            o.initialised = true;
        }
    }

    /// The node was stopped: peers' and clients' messages wait in the
    /// harness until `resume`.
    pub fn pause(&self, node: usize) {
        if let Some(o) = self.outboxes[node].lock().unwrap().as_mut() {
            o.paused.get_or_insert_with(Vec::new);
        }
    }

    /// The node runs again: what waited is delivered, the clients'
    /// messages before the peers' (each in the order sent), none earlier
    /// than its link's delay.
    pub fn resume(&self, node: usize) {
        let mut slot = self.outboxes[node].lock().unwrap();
        let Some(o) = slot.as_mut() else { return };
        let Some(mut held) = o.paused.take() else {
            return;
        };
        held.sort_by_key(|(writer, _)| *writer);
        let now = Instant::now();
        for (_, m) in held {
            let m = Outgoing {
                at: m.at.max(now),
                line: m.line,
            };
            if o.tx.try_send(m).is_err() {
                self.counters.overflow.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn is_attached(&self, node: usize) -> bool {
        self.outboxes[node].lock().unwrap().is_some()
    }
}

impl Links for Network {
    fn node_count(&self) -> usize {
        self.node_ids.len()
    }

    fn faults(&self, from: usize, to: usize) -> LinkFaults {
        self.links.read().unwrap()[self.link_index(from, to)]
    }

    fn set_faults(&self, from: usize, to: usize, faults: LinkFaults) {
        faults.assert_valid();
        let link = self.link_index(from, to);
        let released = {
            let mut links = self.links.write().unwrap();
            let was_held = links[link].hold;
            links[link] = faults;
            was_held && !faults.hold
        };
        if released {
            let msgs = std::mem::take(&mut self.held.lock().unwrap()[link]);
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive(self.seed, Stream::HeldLink { index: link }));
            for (src, body) in msgs {
                self.route_to_node(from, to, &src, &body, &mut rng);
            }
        }
    }
}

/// Alters the body of a delivered line: half the time one digit becomes
/// another (the line stays valid JSON with a changed number: a term, an
/// index, a value), otherwise one or two bits flip anywhere in the body
/// (usually garbage). A node that parses its messages rejects garbage
/// without any checksum; only a checksum catches a changed number, so
/// that case must be common enough to meet within seconds. The line
/// never gains or loses a newline, so framing survives.
pub fn corrupt(line: &mut [u8], rng: &mut ChaCha8Rng) {
    let body_start = line
        .windows(7)
        .position(|w| w == b"\"body\":")
        .map_or(0, |p| p + 7);
    let end = line.len().saturating_sub(2); // keep the closing brace and newline
    if end <= body_start {
        return;
    }
    if rng.gen_bool(0.5) && change_a_digit(&mut line[body_start..end], rng) {
        return;
    }
    flip_bits(&mut line[body_start..end], rng);
}

/// Replaces one digit of `body` with another, never giving a number a
/// leading zero. False if `body` has no digit.
fn change_a_digit(body: &mut [u8], rng: &mut ChaCha8Rng) -> bool {
    let digits: Vec<usize> = (0..body.len())
        .filter(|&i| body[i].is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return false;
    }
    let i = digits[rng.gen_range(0..digits.len())];
    let leads = i == 0 || !body[i - 1].is_ascii_digit();
    let more = body.get(i + 1).is_some_and(u8::is_ascii_digit);
    let lowest = if leads && more { b'1' } else { b'0' };
    let choices: Vec<u8> = (lowest..=b'9').filter(|&d| d != body[i]).collect();
    body[i] = choices[rng.gen_range(0..choices.len())];
    true
}

/// Flips one or two low bits at distinct places in `body`.
fn flip_bits(body: &mut [u8], rng: &mut ChaCha8Rng) {
    let flips = rng.gen_range(1..=2).min(body.len());
    let mut used: [usize; 2] = [usize::MAX; 2];
    for f in 0..flips {
        for _attempt in 0..8 {
            let i = rng.gen_range(0..body.len());
            let flipped = body[i] ^ (1 << rng.gen_range(0..3));
            // Distinct positions, so a second flip never undoes the first.
            if !used.contains(&i) && flipped != b'\n' && flipped != b'\r' {
                body[i] = flipped;
                used[f] = i;
                break;
            }
        }
    }
}

async fn read_node<R: AsyncRead + Unpin>(net: &Network, node: usize, stdout: R, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line: Vec<u8> = Vec::new();
    let mut discarding = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(b) => b,
        };
        let (chunk, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !discarding {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                discarding = true;
                net.counters.oversize.fetch_add(1, Relaxed);
                net.sample(node, &format!("line over {MAX_LINE_BYTES} bytes"), &line);
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        match complete {
            Some(n) => {
                reader.consume(n);
                if !discarding {
                    net.on_node_line(node, &line, &mut rng);
                }
                line.clear();
                discarding = false;
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due(std::cmp::Reverse<(Instant, u64)>, Vec<u8>);

async fn write_node<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Outgoing>, stdin: W) {
    let mut w = BufWriter::with_capacity(64 * 1024, stdin);
    let mut heap: BinaryHeap<Due> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        let mut wrote = false;
        while heap.peek().is_some_and(|d| d.0 .0 .0 <= now) {
            let Due(_, line) = heap.pop().expect("peeked");
            if w.write_all(&line).await.is_err() {
                return;
            }
            wrote = true;
        }
        if wrote && w.flush().await.is_err() {
            return;
        }
        let next_due = heap.peek().map(|d| d.0 .0 .0);
        let msg = match next_due {
            Some(at) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(at.into()) => continue,
            },
            None => rx.recv().await,
        };
        let Some(mut m) = msg else { return };
        // Take everything already queued before flushing once.
        loop {
            if m.at <= Instant::now() {
                if w.write_all(&m.line).await.is_err() {
                    return;
                }
            } else {
                seq += 1;
                heap.push(Due(std::cmp::Reverse((m.at, seq)), m.line));
            }
            match rx.try_recv() {
                Ok(next) => m = next,
                Err(_) => break,
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    struct NoSink;
    impl Sink for NoSink {
        fn trace(&self, _: &str, _: &Value) {}
        fn journal(&self, _: &str, _: &str, _: &RawValue, _: &'static str, _: Duration) {}
    }

    /// Two nodes, n1 and n2, on a router with no latency.
    fn test_net() -> Arc<Network> {
        Network::new(
            vec!["n1".into(), "n2".into()],
            1,
            LinkPolicy::with_latency(0.0, LatencyDist::Constant),
            1,
            Arc::new(NoSink),
        )
    }

    /// Attaches an in-process node `i`; returns its ends: what it writes
    /// (its stdout) and what it reads (its stdin).
    fn plug(net: &Arc<Network>, i: usize) -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        let (node_out, harness_in) = tokio::io::duplex(1 << 16);
        let (harness_out, node_in) = tokio::io::duplex(1 << 16);
        net.attach(i, harness_in, harness_out);
        (node_out, node_in)
    }

    /// Two in-process nodes on the router; returns what each receives.
    async fn two_nodes(
        policy_ab: LinkFaults,
        policy_ba: LinkFaults,
        sends: usize,
    ) -> (Vec<String>, Vec<String>) {
        let net = test_net();
        net.set_faults(0, 1, policy_ab);
        net.set_faults(1, 0, policy_ba);
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for i in 0..2 {
            let (mut node_out, node_in) = plug(&net, i);
            net.initialised(i);
            let other = if i == 0 { "n2" } else { "n1" };
            let me = if i == 0 { "n1" } else { "n2" };
            for k in 0..sends {
                let line = format!("{{\"src\":\"{me}\",\"dest\":\"{other}\",\"body\":{{\"type\":\"x\",\"value\":{k}}}}}\n");
                node_out.write_all(line.as_bytes()).await.unwrap();
            }
            writers.push(node_out);
            readers.push(tokio::io::BufReader::new(node_in).lines());
        }
        let mut got = [Vec::new(), Vec::new()];
        for (i, r) in readers.iter_mut().enumerate() {
            while let Ok(Ok(Some(l))) =
                tokio::time::timeout(std::time::Duration::from_millis(300), r.next_line()).await
            {
                got[i].push(l);
            }
        }
        drop(writers);
        (got[0].clone(), got[1].clone())
    }

    #[tokio::test]
    async fn a_one_way_cut_blocks_one_direction_only() {
        let open = LinkFaults::HEALED;
        let cut = LinkFaults { cut: true, ..open };
        let (at_n1, at_n2) = two_nodes(cut, open, 20).await;
        assert!(at_n2.is_empty(), "n1 -> n2 is cut");
        assert_eq!(at_n1.len(), 20, "n2 -> n1 still carries");
    }

    #[tokio::test]
    async fn corrupted_messages_arrive_altered_and_drops_and_duplicates_happen() {
        let open = LinkFaults::HEALED;
        let corrupt = LinkFaults {
            corrupt_probability: 1.0,
            ..open
        };
        let (_, at_n2) = two_nodes(corrupt, open, 50).await;
        assert_eq!(at_n2.len(), 50);
        let intact = (0..50)
            .filter(|k| {
                at_n2
                    .iter()
                    .any(|l| l.ends_with(&format!("\"body\":{{\"type\":\"x\",\"value\":{k}}}}}")))
            })
            .count();
        assert!(
            intact < 50,
            "every message was corrupted, so not all arrive intact"
        );
        let lossy = LinkFaults {
            drop_probability: 0.5,
            duplicate_probability: 0.5,
            ..open
        };
        let (_, at_n2) = two_nodes(lossy, open, 200).await;
        assert!(
            at_n2.len() != 200 && !at_n2.is_empty(),
            "{} delivered",
            at_n2.len()
        );
    }

    #[tokio::test]
    async fn held_messages_are_delivered_when_released() {
        let open = LinkFaults::HEALED;
        let net = test_net();
        net.set_faults(0, 1, LinkFaults { hold: true, ..open });
        let (mut n1_out, _n1_in) = plug(&net, 0);
        net.initialised(0);
        let (_n2_out, n2_in) = plug(&net, 1);
        net.initialised(1);
        n1_out
            .write_all(b"{\"src\":\"n1\",\"dest\":\"n2\",\"body\":{\"type\":\"x\"}}\n")
            .await
            .unwrap();
        let mut lines = tokio::io::BufReader::new(n2_in).lines();
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(200), lines.next_line()).await;
        assert!(early.is_err(), "a held message is not delivered");
        net.set_faults(0, 1, open);
        let late = tokio::time::timeout(std::time::Duration::from_secs(2), lines.next_line())
            .await
            .unwrap()
            .unwrap();
        assert!(late.unwrap().contains("\"type\":\"x\""));
    }

    /// A paused node's messages wait in the harness; on resume the
    /// clients' come first, each sender's in its order, and the
    /// controller's are never held.
    #[tokio::test]
    async fn a_resumed_node_reads_its_clients_before_its_peers() {
        let net = test_net();
        let (mut n1_out, _n1_in) = plug(&net, 0);
        net.initialised(0);
        let (_n2_out, n2_in) = plug(&net, 1);
        net.initialised(1);
        net.pause(1);
        for k in 0..3 {
            let gossip = format!(
                "{{\"src\":\"n1\",\"dest\":\"n2\",\"body\":{{\"type\":\"peer\",\"k\":{k}}}}}\n"
            );
            n1_out.write_all(gossip.as_bytes()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for k in 0..3 {
            net.send_to_node("c1", 1, &serde_json::json!({"type": "client", "k": k}))
                .unwrap();
        }
        net.send_from_controller(1, &serde_json::json!({"type": "controller"}))
            .unwrap();
        let mut lines = tokio::io::BufReader::new(n2_in).lines();
        let wait = Duration::from_millis(300);
        let first = tokio::time::timeout(wait, lines.next_line()).await;
        assert!(first.unwrap().unwrap().unwrap().contains("\"controller\""));
        let early = tokio::time::timeout(wait, lines.next_line()).await;
        assert!(early.is_err(), "nothing else reaches a paused node");
        net.resume(1);
        let mut order = Vec::new();
        for _ in 0..6 {
            let l = tokio::time::timeout(wait, lines.next_line()).await;
            let v: Value = serde_json::from_str(&l.unwrap().unwrap().unwrap()).unwrap();
            order.push(format!(
                "{}{}",
                v["body"]["type"].as_str().unwrap(),
                v["body"]["k"]
            ));
        }
        assert_eq!(
            order,
            ["client0", "client1", "client2", "peer0", "peer1", "peer2"]
        );
    }

    /// A (re)started node hears from no peer and no client before it has
    /// answered `init`; the controller's init gets through.
    #[tokio::test]
    async fn a_node_hears_only_the_controller_until_it_is_initialised() {
        let net = test_net();
        let (mut n1_out, _n1_in) = plug(&net, 0);
        net.initialised(0);
        let (_n2_out, n2_in) = plug(&net, 1);
        let gossip = b"{\"src\":\"n1\",\"dest\":\"n2\",\"body\":{\"type\":\"gossip\"}}\n";
        n1_out.write_all(gossip).await.unwrap();
        let from_client = net.send_to_node("c1", 1, &serde_json::json!({"type": "read"}));
        assert!(
            matches!(from_client, Err(SendError::NotInitialised(ref n)) if n == "n2"),
            "{from_client:?}"
        );
        net.send_from_controller(1, &serde_json::json!({"type": "init"}))
            .unwrap();
        let mut lines = tokio::io::BufReader::new(n2_in).lines();
        let wait = std::time::Duration::from_millis(300);
        let first = tokio::time::timeout(wait, lines.next_line()).await;
        assert!(first.unwrap().unwrap().unwrap().contains("\"init\""));
        let more = tokio::time::timeout(wait, lines.next_line()).await;
        assert!(
            more.is_err(),
            "the peer's message before init was not delivered"
        );
        net.initialised(1);
        n1_out.write_all(gossip).await.unwrap();
        let after = tokio::time::timeout(wait, lines.next_line()).await;
        assert!(after.unwrap().unwrap().unwrap().contains("\"gossip\""));
    }

    #[test]
    fn corruption_keeps_line_framing() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let mut line =
                br#"{"id":1,"src":"n1","dest":"n2","body":{"type":"append","term":3}}"#.to_vec();
            line.push(b'\n');
            let orig = line.clone();
            corrupt(&mut line, &mut rng);
            assert_ne!(line, orig);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(
                &line[..38],
                &orig[..38],
                "the envelope before the body is untouched"
            );
        }
    }

    #[test]
    fn half_the_corruptions_change_a_number_and_stay_valid_json() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let orig =
            br#"{"id":1,"src":"n1","dest":"n2","body":{"type":"append","term":30,"index":7}}"#;
        let (mut renumbered, mut garbage) = (0, 0);
        for _ in 0..1000 {
            let mut line = orig.to_vec();
            line.push(b'\n');
            corrupt(&mut line, &mut rng);
            match serde_json::from_slice::<Value>(&line) {
                Ok(v) => {
                    let b = &v["body"];
                    let (term, index) = (b["term"].as_u64(), b["index"].as_u64());
                    if b["type"] == "append" && (term, index) != (Some(30), Some(7)) {
                        renumbered += usize::from(term.is_some() && index.is_some());
                    }
                }
                Err(_) => garbage += 1,
            }
        }
        assert!(renumbered >= 400, "{renumbered} of 1000 changed a number");
        assert!(garbage >= 100, "{garbage} of 1000 were garbage");
    }
}
