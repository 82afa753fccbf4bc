//! The thin IO loop around the Raft core: stdin lines in (a reader thread),
//! ticks from a monotonic clock (a single-threaded tokio runtime, whose
//! timers wait with relative timeouts, so a wall clock skewed by
//! libfaketime cannot stall them), and for each batch of input one `Ready`
//! handled in order: persist and fsync, then send, then apply, answer
//! clients and emit trace events. Nothing leaves the node before the state
//! it depends on is durable.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::raft::{
    Bugs, Command, Config, Entry, Msg, NodeIx, Raft, ReadId, ReadMode, Snapshot, Trace,
};
use crate::storage::Storage;

mod members;
use members::ChangeWaiter;

/// Longest input line accepted.
const MAX_LINE_BYTES: usize = 4 << 20;
/// Most stdin lines handled before the core's output is processed.
const MAX_BATCH: usize = 1024;
/// Lines buffered between the reader thread and the loop.
const INPUT_QUEUE: usize = 16 * 1024;
/// Most reads waiting at once; more are refused with error 11.
const MAX_PENDING_READS: usize = 100_000;
/// How many times a request may be forwarded between nodes.
const MAX_HOPS: u64 = 3;
/// Most reads held while no leader is known.
const MAX_HELD_READS: usize = 4096;
/// How long a read waits for a leader (two longest election timeouts).
const HOLD_READ_TICKS: u64 = 60;

#[derive(Debug, Clone)]
pub struct Options {
    pub bugs: Bugs,
    pub read_mode: ReadMode,
    pub tick_ms: u64,
    pub snapshot_every: u64,
    pub data_dir: Option<PathBuf>,
}

pub const BUG_NAMES: [&str; 11] = [
    "vote-any",
    "volatile-vote",
    "commit-prior-term",
    "even-quorum",
    "local-read",
    "lease-no-bound",
    "no-checksum",
    "readindex-no-noop",
    "no-fsync",
    "txn-leader-read",
    "direct-config",
];

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        bugs: Bugs::default(),
        read_mode: ReadMode::ReadIndex,
        tick_ms: 10,
        snapshot_every: 10_000,
        data_dir: std::env::var_os("FAULTLINE_DATA_DIR").map(PathBuf::from),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--bug" => {
                let b = value("--bug")?;
                match b.as_str() {
                    "vote-any" => o.bugs.vote_any = true,
                    "volatile-vote" => o.bugs.volatile_vote = true,
                    "commit-prior-term" => {
                        o.bugs.commit_prior_term = true;
                        o.bugs.no_election_noop = true;
                    }
                    "even-quorum" => o.bugs.even_quorum = true,
                    "local-read" => o.bugs.local_read = true,
                    "lease-no-bound" => {
                        o.bugs.lease_no_bound = true;
                        o.read_mode = ReadMode::Lease;
                    }
                    "no-checksum" => o.bugs.no_checksum = true,
                    "readindex-no-noop" => o.bugs.readindex_no_noop = true,
                    "no-fsync" => o.bugs.no_fsync = true,
                    "txn-leader-read" => o.bugs.txn_leader_read = true,
                    "direct-config" => o.bugs.direct_config = true,
                    other => {
                        return Err(format!(
                            "unknown --bug {other:?} (known: {})",
                            BUG_NAMES.join(", ")
                        ))
                    }
                }
            }
            "--read-mode" => {
                o.read_mode = match value("--read-mode")?.as_str() {
                    "readindex" => ReadMode::ReadIndex,
                    "lease" => ReadMode::Lease,
                    other => {
                        return Err(format!(
                            "unknown --read-mode {other:?} (readindex or lease)"
                        ))
                    }
                }
            }
            "--tick-ms" => {
                o.tick_ms = value("--tick-ms")?
                    .parse()
                    .map_err(|_| "--tick-ms needs a number".to_string())?
            }
            "--snapshot-every" => {
                o.snapshot_every = value("--snapshot-every")?
                    .parse()
                    .map_err(|_| "--snapshot-every needs a number".to_string())?
            }
            "--data-dir" => o.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.tick_ms == 0 || o.snapshot_every == 0 {
        return Err("--tick-ms and --snapshot-every must be positive".into());
    }
    Ok(o)
}

/// The digest of a command in apply trace events.
pub fn digest(cmd: &Command) -> String {
    format!(
        "{:08x}",
        crc32c::crc32c(&serde_json::to_vec(cmd).expect("commands serialize"))
    )
}

/// The key-value state machine with client sessions (Raft thesis §6.3):
/// the network may duplicate a forwarded request, so the same client
/// request can be committed twice; the second copy must not execute again
/// (a cas that failed the first time could succeed the second, after the
/// client was told it failed). Clients number their requests increasingly,
/// so a request at or below a client's last executed msg_id is a duplicate
/// and gets the recorded result.
/// A transaction's micro-ops `[f, k, v]`: `append`, `w` or `r`.
fn valid_txn(t: &Value) -> bool {
    t.as_array().is_some_and(|ops| {
        ops.len() <= 1024
            && ops.iter().all(|m| {
                m.as_array().is_some_and(|a| {
                    a.len() == 3 && matches!(a[0].as_str(), Some("append" | "w" | "r"))
                })
            })
    })
}

fn read_only(t: &Value) -> bool {
    t.as_array()
        .is_some_and(|ops| ops.iter().all(|m| m[0] == "r"))
}

/// Runs a transaction's micro-ops in order on `kv`; reads are filled in
/// (`null` for a key never written). A list-append key holds a list.
fn run_txn(kv: &mut BTreeMap<String, Value>, t: &Value) -> Value {
    let ops = t.as_array().map(Vec::as_slice).unwrap_or_default();
    let out: Vec<Value> = ops
        .iter()
        .map(|m| {
            let (f, k, v) = (&m[0], &m[1], &m[2]);
            let key = format!("txn:{k}");
            match f.as_str() {
                Some("append") => {
                    let list = kv.entry(key).or_insert_with(|| json!([]));
                    if let Some(l) = list.as_array_mut() {
                        l.push(v.clone());
                    }
                    m.clone()
                }
                Some("w") => {
                    kv.insert(key, v.clone());
                    m.clone()
                }
                _ => json!([f, k, kv.get(&key).cloned().unwrap_or(Value::Null)]),
            }
        })
        .collect();
    Value::Array(out)
}

#[derive(Debug, Default)]
struct StateMachine {
    kv: BTreeMap<String, Value>,
    sessions: BTreeMap<String, (u64, Value)>,
}

impl StateMachine {
    fn apply(&mut self, cmd: &Command) -> Option<Value> {
        let Command::Op { client, msg_id, op } = cmd else {
            return None;
        };
        if let Some((last, result)) = self.sessions.get(client) {
            if *msg_id <= *last {
                return Some(if msg_id == last {
                    result.clone()
                } else {
                    error_body(code::TEMPORARILY_UNAVAILABLE, "duplicate of an old request")
                });
            }
        }
        let key = op["key"].to_string();
        let result = match op["type"].as_str() {
            // All of a transaction in one log entry: strict serializable.
            Some("txn") => json!({"type": "txn_ok", "txn": run_txn(&mut self.kv, &op["txn"])}),
            Some("write") => {
                self.kv.insert(key, op["value"].clone());
                json!({"type": "write_ok"})
            }
            Some("cas") => match self.kv.get(&key) {
                None => error_body(code::KEY_DOES_NOT_EXIST, "key does not exist"),
                Some(cur) if *cur != op["from"] => error_body(
                    code::PRECONDITION_FAILED,
                    &format!("expected {}, found {cur}", op["from"]),
                ),
                Some(_) => {
                    self.kv.insert(key, op["to"].clone());
                    json!({"type": "cas_ok"})
                }
            },
            _ => error_body(code::MALFORMED_REQUEST, "unknown op"),
        };
        self.sessions
            .insert(client.clone(), (*msg_id, result.clone()));
        Some(result)
    }

    fn snapshot(&self) -> Value {
        json!({"kv": self.kv, "sessions": self.sessions})
    }

    fn restore(data: &Value) -> StateMachine {
        StateMachine {
            kv: serde_json::from_value(data["kv"].clone()).unwrap_or_default(),
            sessions: serde_json::from_value(data["sessions"].clone()).unwrap_or_default(),
        }
    }
}

struct Cluster {
    raft: Raft,
    storage: Option<Storage>,
    ids: Vec<String>,
    /// The replicated state machine: the key-value map plus client
    /// sessions for at-most-once execution.
    sm: StateMachine,
    applied: u64,
    /// Log index -> the client request proposed there by this node.
    proposals: HashMap<u64, (String, u64, u64)>,
    reads: HashMap<ReadId, (String, u64, Value)>,
    /// Confirmed reads waiting for the state machine to reach their index.
    waiting: Vec<(u64, ReadId)>,
    next_read: ReadId,
    /// Reads that arrived while no leader was known: (client, msg_id, body,
    /// hops, give up at tick). Like etcd's linearizable read loop, a read
    /// waits out an election instead of failing: reads are idempotent, so
    /// holding one costs nothing if its client gives up. Writes are refused
    /// at once instead: a held write whose client gave up would still
    /// take effect later.
    held_reads: VecDeque<(String, u64, Value, u64, u64)>,
    /// Membership requests waiting for their configuration to commit.
    changes: Vec<ChangeWaiter>,
    ticks: u64,
}

pub struct Server<W: Write> {
    opts: Options,
    me: String,
    next_msg_id: u64,
    out: W,
    cluster: Option<Cluster>,
    /// For the `clock` diagnostics request.
    started: Instant,
}

/// Milliseconds since the Unix epoch on this process's wall clock (what
/// libfaketime skews); 0 if the clock reads before the epoch.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The error for a request this node will not carry out. Straight from the
/// client (hops 0), it is definite (11: it did not happen): the client link
/// never duplicates. A forwarded request may have other copies in flight
/// (the network duplicates peer messages), one of which may still commit,
/// so the answer must be indefinite (0).
fn refusal(hops: u64, text: &str) -> Value {
    if hops == 0 {
        error_body(code::TEMPORARILY_UNAVAILABLE, text)
    } else {
        error_body(
            code::TIMEOUT,
            &format!("{text} (a forwarded copy; the request may still take effect)"),
        )
    }
}

/// The Maelstrom error codes this node answers with (docs/protocol.md,
/// "Error codes"). A system under test speaks the protocol on its own, so
/// it names them here rather than borrowing faultline's checker types.
pub(crate) mod code {
    /// Indefinite: it may yet take effect.
    pub const TIMEOUT: u32 = 0;
    /// Not the leader, not ready, too busy: it did not happen, retry.
    pub const TEMPORARILY_UNAVAILABLE: u32 = 11;
    pub const NOT_SUPPORTED: u32 = 10;
    pub const MALFORMED_REQUEST: u32 = 12;
    pub const KEY_DOES_NOT_EXIST: u32 = 20;
    pub const PRECONDITION_FAILED: u32 = 22;
}

fn error_body(code: u32, text: &str) -> Value {
    json!({"type": "error", "code": code, "text": text})
}

impl<W: Write> Server<W> {
    pub fn new(opts: Options, out: W) -> Self {
        Server {
            opts,
            me: String::new(),
            next_msg_id: 1,
            out,
            cluster: None,
            started: Instant::now(),
        }
    }

    fn emit(&mut self, dest: &str, mut body: Value) {
        body["msg_id"] = json!(self.next_msg_id);
        self.next_msg_id += 1;
        let line = json!({"src": self.me, "dest": dest, "body": body});
        // A closed stdout means the harness is gone; the reader sees EOF too.
        let _ = writeln!(self.out, "{line}");
    }

    fn reply(&mut self, dest: &str, in_reply_to: u64, mut body: Value) {
        body["in_reply_to"] = json!(in_reply_to);
        self.emit(dest, body);
    }

    fn trace(&mut self, mut body: Value) {
        body["type"] = json!("trace");
        let line = json!({"src": self.me, "dest": "faultline", "body": body});
        let _ = writeln!(self.out, "{line}");
    }

    /// Handles one input line; `Err` means the node must stop.
    pub fn handle_line(&mut self, line: &str) -> Result<(), String> {
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!(
                    "ignoring malformed input ({e}): {}",
                    &line[..line.len().min(200)]
                );
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
        let msg_id = body.get("msg_id").and_then(Value::as_u64);
        let from_node = self
            .cluster
            .as_ref()
            .and_then(|c| c.ids.iter().position(|i| *i == src));
        if ty == "init" {
            return self.init(&src, &body, msg_id.unwrap_or(0));
        }
        if let Some(from) = from_node {
            match ty.as_str() {
                "raft" => {
                    if let Some(m) = self.unseal(from, &body) {
                        match serde_json::from_str::<Msg>(&m) {
                            Ok(msg) => self
                                .cluster
                                .as_mut()
                                .expect("peers are known after init")
                                .raft
                                .step(from, msg),
                            Err(e) => eprintln!("dropping an undecodable raft message: {e}"),
                        }
                    }
                }
                "forward" => {
                    let Some(m) = self.unseal(from, &body) else {
                        return Ok(());
                    };
                    let Ok(fwd) = serde_json::from_str::<Value>(&m) else {
                        eprintln!("dropping an undecodable forward from n{}", from + 1);
                        return Ok(());
                    };
                    let client = fwd
                        .get("client")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let hops = fwd.get("hops").and_then(Value::as_u64).unwrap_or(MAX_HOPS);
                    let req = fwd.get("request").cloned().unwrap_or(Value::Null);
                    if let Some(id) = req.get("msg_id").and_then(Value::as_u64) {
                        self.client_request(&client, id, req, hops);
                    }
                }
                // Anything else from a peer is ignored, never a crash.
                _ => {}
            }
            return Ok(());
        }
        let Some(msg_id) = msg_id else {
            eprintln!("ignoring a {ty:?} message from {src:?} without msg_id");
            return Ok(());
        };
        if self.cluster.is_none() {
            self.reply(
                &src,
                msg_id,
                error_body(code::TEMPORARILY_UNAVAILABLE, "not initialised"),
            );
            return Ok(());
        }
        match ty.as_str() {
            "read" | "write" | "cas" | "txn" => self.client_request(&src, msg_id, body, 0),
            // Diagnostics: the node's clocks as it reads them, so a test can
            // see that a clock fault really reaches the process.
            "clock" => {
                let wall_ms = wall_clock_ms();
                let mono_ms = self.started.elapsed().as_millis() as u64;
                self.reply(
                    &src,
                    msg_id,
                    json!({"type": "clock_ok", "wall_ms": wall_ms, "monotonic_ms": mono_ms}),
                );
            }
            "member_add" | "member_remove" | "member_replace" => {
                self.change_members(&src, msg_id, &ty, &body)
            }
            "members" => self.members(&src, msg_id),
            "transfer_leader" => {
                let c = self.cluster.as_mut().expect("initialised");
                let target = body
                    .get("to")
                    .and_then(Value::as_str)
                    .and_then(|t| c.ids.iter().position(|i| i == t));
                match target {
                    Some(t) if c.raft.is_leader() => {
                        c.raft.transfer_leadership(t);
                        self.reply(&src, msg_id, json!({"type": "transfer_leader_ok"}));
                    }
                    _ => self.reply(
                        &src,
                        msg_id,
                        error_body(
                            code::TEMPORARILY_UNAVAILABLE,
                            "not the leader, or no such node",
                        ),
                    ),
                }
            }
            "" => self.reply(
                &src,
                msg_id,
                error_body(code::MALFORMED_REQUEST, "missing body.type"),
            ),
            other => self.reply(
                &src,
                msg_id,
                error_body(
                    code::NOT_SUPPORTED,
                    &format!("unsupported request type {other:?}"),
                ),
            ),
        }
        Ok(())
    }

    fn init(&mut self, src: &str, body: &Value, msg_id: u64) -> Result<(), String> {
        let me = body.get("node_id").and_then(Value::as_str);
        let ids: Option<Vec<String>> = body.get("node_ids").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        });
        let (Some(me), Some(ids)) = (me, ids) else {
            self.reply(
                src,
                msg_id,
                error_body(code::MALFORMED_REQUEST, "init needs node_id and node_ids"),
            );
            return Ok(());
        };
        let Some(ix) = ids.iter().position(|i| i == me) else {
            self.reply(
                src,
                msg_id,
                error_body(code::MALFORMED_REQUEST, "node_id is not in node_ids"),
            );
            return Ok(());
        };
        self.me = me.to_string();
        let (storage, durable) = match &self.opts.data_dir {
            Some(dir) => {
                let (mut s, d) = Storage::open(&dir.join(me)).map_err(|e| e.to_string())?;
                s.skip_fsync = self.opts.bugs.no_fsync;
                if s.recovered_torn_bytes > 0 {
                    eprintln!(
                        "recovered the WAL: cut {} bytes of torn tail",
                        s.recovered_torn_bytes
                    );
                }
                (Some(s), d)
            }
            None => {
                eprintln!("warning: no FAULTLINE_DATA_DIR or --data-dir: state is not durable");
                (None, Default::default())
            }
        };
        let mut sm = StateMachine::default();
        let mut applied = 0;
        if let Some(s) = &durable.snapshot {
            sm = StateMachine::restore(&s.data);
            applied = s.index;
        }
        eprintln!(
            "{me} starting: term {}, log {}..={}, snapshot at {applied}, bugs {:?}, read mode {:?}",
            durable.term,
            durable.log.snap_index + 1,
            durable.log.last_index(),
            self.opts.bugs,
            self.opts.read_mode
        );
        let mut cfg = Config::new(ix, ids.len());
        match members::bootstrap(body, &ids, ix) {
            Ok(m) => cfg.members = m,
            Err(e) => {
                self.reply(src, msg_id, error_body(code::MALFORMED_REQUEST, &e));
                return Ok(());
            }
        }
        cfg.bugs = self.opts.bugs;
        cfg.read_mode = self.opts.read_mode;
        cfg.tick_ms = self.opts.tick_ms;
        cfg.seed = std::process::id() as u64 ^ (ix as u64) << 32;
        self.cluster = Some(Cluster {
            raft: Raft::new(cfg, durable),
            storage,
            ids,
            sm,
            applied,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            waiting: Vec::new(),
            next_read: 1,
            held_reads: VecDeque::new(),
            changes: Vec::new(),
            ticks: 0,
        });
        self.reply(src, msg_id, json!({"type": "init_ok"}));
        Ok(())
    }

    /// Every peer message travels as `{"type":T,"crc":C,"m":TEXT}` where C
    /// is the CRC32C of TEXT: a message corrupted on the way is dropped
    /// here (unless the no-checksum bug is planted), never acted on.
    fn unseal(&self, from: NodeIx, body: &Value) -> Option<String> {
        let (Some(m), Some(crc)) = (
            body.get("m").and_then(Value::as_str),
            body.get("crc").and_then(Value::as_u64),
        ) else {
            eprintln!("dropping a malformed peer message from n{}", from + 1);
            return None;
        };
        if !self.opts.bugs.no_checksum && crc32c::crc32c(m.as_bytes()) as u64 != crc {
            eprintln!(
                "dropping a peer message from n{} with a bad checksum",
                from + 1
            );
            return None;
        }
        Some(m.to_string())
    }

    fn client_request(&mut self, client: &str, msg_id: u64, body: Value, hops: u64) {
        let ty = body.get("type").and_then(Value::as_str).unwrap_or("");
        let valid = match ty {
            "read" => body.get("key").is_some(),
            "write" => body.get("key").is_some() && body.get("value").is_some(),
            "cas" => {
                body.get("key").is_some() && body.get("from").is_some() && body.get("to").is_some()
            }
            "txn" => body.get("txn").is_some_and(valid_txn),
            _ => false,
        };
        if !valid {
            self.reply(
                client,
                msg_id,
                error_body(
                    code::MALFORMED_REQUEST,
                    &format!("malformed {ty:?} request: missing fields"),
                ),
            );
            return;
        }
        let c = self.cluster.as_mut().expect("initialised");
        if c.raft.is_leader()
            && ty == "txn"
            && self.opts.bugs.txn_leader_read
            && read_only(&body["txn"])
        {
            // The bug: a leader that has not confirmed it still leads
            // answers from what it has applied.
            let result = run_txn(&mut c.sm.kv.clone(), &body["txn"]);
            self.reply(client, msg_id, json!({"type": "txn_ok", "txn": result}));
            return;
        }
        if c.raft.is_leader() {
            if ty == "read" {
                if c.reads.len() >= MAX_PENDING_READS {
                    self.reply(
                        client,
                        msg_id,
                        error_body(code::TEMPORARILY_UNAVAILABLE, "too many pending reads"),
                    );
                    return;
                }
                let id = c.next_read;
                c.next_read += 1;
                c.reads
                    .insert(id, (client.to_string(), msg_id, body["key"].clone()));
                c.raft.read(id);
            } else {
                let cmd = Command::Op {
                    client: client.to_string(),
                    msg_id,
                    op: body.clone(),
                };
                match c.raft.propose(cmd) {
                    Some(index) => {
                        c.proposals
                            .insert(index, (client.to_string(), msg_id, hops));
                    }
                    None => self.reply(
                        client,
                        msg_id,
                        refusal(hops, "leadership transfer in progress"),
                    ),
                }
            }
            return;
        }
        self.forward(client, msg_id, body, hops);
    }

    /// Sends a client request to the leader, or refuses it (see `refusal`)
    /// when there is no leader or it has bounced too often.
    fn forward(&mut self, client: &str, msg_id: u64, mut body: Value, hops: u64) {
        let c = self.cluster.as_mut().expect("initialised");
        if c.raft.leader.is_none()
            && body.get("type").and_then(Value::as_str) == Some("read")
            && c.held_reads.len() < MAX_HELD_READS
        {
            let until = c.ticks + HOLD_READ_TICKS;
            c.held_reads
                .push_back((client.to_string(), msg_id, body, hops, until));
            return;
        }
        match c.raft.leader {
            Some(l) if l != c.raft.cfg.id && hops < MAX_HOPS => {
                let leader = c.ids[l].clone();
                body["msg_id"] = json!(msg_id);
                let text = json!({"client": client, "request": body, "hops": hops + 1}).to_string();
                let crc = crc32c::crc32c(text.as_bytes());
                self.emit(&leader, json!({"type": "forward", "crc": crc, "m": text}));
            }
            _ => self.reply(client, msg_id, refusal(hops, "no leader known")),
        }
    }

    fn apply(&mut self, e: Entry) {
        let c = self.cluster.as_mut().expect("initialised");
        if e.index <= c.applied {
            return;
        }
        assert_eq!(e.index, c.applied + 1, "entries apply in order");
        c.applied = e.index;
        let result = c.sm.apply(&e.cmd);
        let proposal = c.proposals.remove(&e.index);
        let d = digest(&e.cmd);
        self.trace(json!({"event": "apply", "index": e.index, "term": e.term, "digest": d}));
        if let Some((client, msg_id, hops)) = proposal {
            match (&e.cmd, result) {
                (
                    Command::Op {
                        client: cc,
                        msg_id: mm,
                        ..
                    },
                    Some(r),
                ) if *cc == client && *mm == msg_id => {
                    self.reply(&client, msg_id, r);
                }
                // Another leader's entry won this index: this copy never
                // commits (another copy of a forwarded request still might).
                _ => self.reply(
                    &client,
                    msg_id,
                    refusal(hops, "proposal lost to a leader change"),
                ),
            }
        }
    }

    fn serve_reads(&mut self) {
        let c = self.cluster.as_mut().expect("initialised");
        let applied = c.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            c.waiting.drain(..).partition(|(i, _)| *i <= applied);
        c.waiting = waiting;
        for (_, id) in ready {
            let c = self.cluster.as_mut().expect("initialised");
            if let Some((client, msg_id, key)) = c.reads.remove(&id) {
                let body = match c.sm.kv.get(&key.to_string()) {
                    Some(v) => json!({"type": "read_ok", "value": v}),
                    None => error_body(code::KEY_DOES_NOT_EXIST, "key does not exist"),
                };
                self.reply(&client, msg_id, body);
            }
        }
    }

    /// Once a leader is known, held reads go to it (or to this node's own
    /// read path); without one, those held too long are refused.
    fn release_held_reads(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.held_reads.is_empty() {
            return;
        }
        if c.raft.leader.is_some() {
            let held = std::mem::take(&mut c.held_reads);
            for (client, msg_id, body, hops, _) in held {
                self.client_request(&client, msg_id, body, hops);
            }
            return;
        }
        let now = c.ticks;
        let mut expired = Vec::new();
        while c.held_reads.front().is_some_and(|h| h.4 <= now) {
            expired.extend(c.held_reads.pop_front());
        }
        for (client, msg_id, _, hops, _) in expired {
            self.reply(&client, msg_id, refusal(hops, "no leader known"));
        }
    }

    /// Drains the core's output until it has nothing more to say.
    pub fn process_ready(&mut self) -> Result<(), String> {
        self.release_held_reads();
        for _round in 0..64 {
            let Some(c) = self.cluster.as_mut() else {
                return Ok(());
            };
            let rd = c.raft.take_ready();
            if rd.is_empty() {
                break;
            }
            // 1. Persist, one fsync for the whole batch.
            if let Some(st) = c.storage.as_mut() {
                st.write(&rd).map_err(|e| e.to_string())?;
                if let Some(s) = &rd.install {
                    let entries = c.raft.log.entries.clone();
                    st.save_snapshot(s, c.raft.term, c.raft.vote, &entries)
                        .map_err(|e| e.to_string())?;
                }
                st.sync().map_err(|e| e.to_string())?;
            }
            let installed = rd.install.as_ref().map(|s| (s.index, s.term));
            if let Some(s) = &rd.install {
                c.sm = StateMachine::restore(&s.data);
                c.applied = s.index;
            }

            // 2. Send.
            let ids = c.ids.clone();
            for (to, m) in rd.messages {
                let text = serde_json::to_string(&m).expect("messages serialize");
                let crc = crc32c::crc32c(text.as_bytes());
                let line = json!({"src": self.me, "dest": ids[to], "body": {"type": "raft", "crc": crc, "m": text}});
                let _ = writeln!(self.out, "{line}");
            }
            for t in rd.traces {
                let body = match t {
                    Trace::Vote { term, candidate } => {
                        json!({"event": "vote", "term": term, "candidate": ids[candidate]})
                    }
                    Trace::Leader { term } => json!({"event": "leader", "term": term}),
                    Trace::Commit {
                        index,
                        term,
                        leader_term,
                        quorum,
                    } => {
                        let mut e = json!({"event": "commit", "index": index, "term": term});
                        if let Some(lt) = leader_term {
                            e["leader_term"] = json!(lt);
                        }
                        if let Some((acks, conf)) = quorum {
                            e["acks"] = members::names(&ids, acks.iter().copied());
                            members::put_conf(&mut e, "", &ids, &conf);
                        }
                        e
                    }
                    Trace::Config {
                        index,
                        term,
                        conf,
                        from,
                    } => {
                        let mut e = json!({"event": "config", "index": index, "term": term});
                        members::put_conf(&mut e, "", &ids, &conf);
                        members::put_conf(&mut e, "from_", &ids, &from);
                        e
                    }
                    Trace::Truncate { from, term } => {
                        json!({"event": "truncate", "from": from, "term": term})
                    }
                };
                self.trace(body);
            }
            if let Some((index, term)) = installed {
                // Not a Raft invariant event: it shows which faults met a
                // snapshot install (the report's coverage).
                self.trace(json!({"event": "snapshot", "index": index, "term": term}));
            }
            // 3. Apply, answer, serve reads.
            for e in rd.committed {
                self.apply(e);
            }
            let c = self.cluster.as_mut().expect("initialised");
            c.waiting
                .extend(rd.reads.into_iter().map(|(id, idx)| (idx, id)));
            for id in rd.rejected_reads {
                let c = self.cluster.as_mut().expect("initialised");
                if let Some((client, msg_id, key)) = c.reads.remove(&id) {
                    self.forward(&client, msg_id, json!({"type": "read", "key": key}), 0);
                }
            }
            self.serve_reads();
            self.answer_changes();
            self.maybe_snapshot()?;
        }
        self.out.flush().map_err(|e| format!("writing stdout: {e}"))
    }

    fn maybe_snapshot(&mut self) -> Result<(), String> {
        let c = self.cluster.as_mut().expect("initialised");
        if c.applied < c.raft.log.snap_index + self.opts.snapshot_every || c.applied > c.raft.commit
        {
            return Ok(());
        }
        let term = c
            .raft
            .log
            .term(c.applied)
            .expect("applied entries are in the log");
        let data = c.sm.snapshot();
        let snap = Snapshot {
            index: c.applied,
            term,
            data,
            conf: Some(c.raft.conf_at(c.applied)),
        };
        if let Some(st) = c.storage.as_mut() {
            let entries = c.raft.log.entries.clone();
            st.save_snapshot(&snap, c.raft.term, c.raft.vote, &entries)
                .map_err(|e| e.to_string())?;
        }
        c.raft.compact(snap);
        Ok(())
    }

    /// The writer, for tests that inspect what the node wrote.
    pub fn into_output(self) -> W {
        self.out
    }

    pub fn tick(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            c.ticks += 1;
            c.raft.tick();
        }
        self.expire_changes();
    }

    /// Gives the core the clocks (inputs like ticks), before every tick
    /// and every batch of messages: after a stall the first thing the core
    /// sees is how late it is.
    pub fn observe_clocks(&mut self) {
        let mono_ms = self.started.elapsed().as_millis() as u64;
        if let Some(c) = self.cluster.as_mut() {
            c.raft.set_wall_clock_ms(wall_clock_ms());
            c.raft.set_monotonic_ms(mono_ms);
        }
    }
}

/// Runs the node until stdin closes.
pub fn run(
    input: impl BufRead + Send + 'static,
    output: impl Write,
    args: &[String],
) -> Result<(), String> {
    let opts = parse_args(args)?;
    let tick = Duration::from_millis(opts.tick_ms);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(INPUT_QUEUE);
    // Blocking stdin reads stay on their own thread, with a bounded line.
    std::thread::spawn(move || {
        let mut input = input;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match std::io::Read::take(&mut input, MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if buf.len() > MAX_LINE_BYTES {
                eprintln!("ignoring a line over {MAX_LINE_BYTES} bytes");
                let mut rest = Vec::new();
                let _ = input.read_until(b'\n', &mut rest);
                continue;
            }
            let line = String::from_utf8_lossy(&buf).trim().to_string();
            if !line.is_empty() && tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("starting the IO runtime: {e}"))?;
    let mut server = Server::new(opts, output);
    runtime.block_on(async move {
        let mut ticks = tokio::time::interval(tick);
        // After a long stall (a SIGSTOP), tick once, not a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = ticks.tick() => {
                    server.observe_clocks();
                    server.tick();
                }
                line = rx.recv() => {
                    let Some(line) = line else {
                        server.process_ready()?;
                        return Ok(());
                    };
                    server.observe_clocks();
                    server.handle_line(&line)?;
                    for _ in 1..MAX_BATCH {
                        match rx.try_recv() {
                            Ok(line) => server.handle_line(&line)?,
                            Err(_) => break,
                        }
                    }
                }
            }
            server.process_ready()?;
        }
    })
}
