//! Starting, watching and killing node processes.
//!
//! Each node runs in its own process group (so a pause or kill reaches any
//! children it starts), with a parent-death signal (so a SIGKILLed harness
//! leaves nothing behind), its `FAULTLINE_*` environment, and no shell in
//! between. stderr goes to nodes/<id>.log, appended across restarts.

use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use anyhow::anyhow;
use serde_json::{json, Value};
use std::time::Duration;

use crate::contain::Cell;
use crate::hygiene;
use faultline_net::recorder::Recorder;
use faultline_net::router::Network;
use faultline_rundir::record::Clock;

/// A node's stderr log stops growing past this (a flooding node must not
/// fill the disk); what is cut is counted in the log's last line.
pub const LOG_CAP_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct NodeSpec {
    pub id: String,
    pub index: usize,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Extra environment (the system file's `env`, a user's HOME).
    pub env: Vec<(String, String)>,
    /// Its stdio is the node protocol, through the router; otherwise (a
    /// real server) stdout goes to its log with stderr.
    pub routed: bool,
    /// What the workload tells it once it answered init, after every
    /// start (broadcast's topology), answered by `{type}_ok`.
    pub setup: Option<Value>,
    /// A sidecar's name (a process a server node runs beside its server);
    /// `None` for the node's own process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The bootstrap members `init` names (membership changes only); a
    /// node not among them starts with no configuration and waits to be
    /// added. `None`: init is Maelstrom's, without `members`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// The control group its processes live in (`contain`), set by the
    /// cluster; `None`: its process group only.
    #[serde(skip)]
    pub cell: Option<Cell>,
}

impl NodeSpec {
    /// How logs and messages name it: `n1`, or `n1.monitor` for a sidecar.
    pub fn label(&self) -> String {
        match &self.process {
            Some(p) => format!("{}.{p}", self.id),
            None => self.id.clone(),
        }
    }
}

use faultline_rundir::stats::ExitInfo;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    // The io error is part of the message rather than a `source`, so that
    // anyhow's error chain does not print it twice.
    #[error("cannot start node {node}: {program}: {cause}")]
    Spawn {
        node: String,
        program: String,
        cause: std::io::Error,
    },
    #[error("cannot open log {path}: {cause}")]
    Log { path: String, cause: std::io::Error },
}

pub struct NodeHandle {
    pub spec: NodeSpec,
    pub pid: i32,
    pub exit: watch::Receiver<Option<ExitInfo>>,
    expected: Arc<std::sync::atomic::AtomicBool>,
}

pub fn describe_status(s: std::process::ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown");
            format!("killed by signal {sig} ({name})")
        }
        _ => "unknown status".to_string(),
    }
}

/// The last `max_lines` lines of a log, for error messages.
pub fn log_tail(path: &Path, max_lines: usize) -> String {
    const MAX_BYTES: u64 = 4096;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    use std::io::{Read, Seek, SeekFrom};
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// Every child the harness starts: its own process group (a signal
/// reaches whatever it starts), killed when its handle is dropped, and
/// when the harness dies, however it dies.
pub fn supervise(cmd: &mut tokio::process::Command) {
    cmd.process_group(0).kill_on_drop(true);
    die_with_parent(cmd);
}

/// Makes the child SIGKILLed when the harness dies, however it dies (a
/// SIGKILL of the harness included).
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The death signal fires when the thread that forked exits; the
            // harness forks from tokio worker threads, which live as long as
            // the runtime, i.e. until every node is already killed.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The harness may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// The command for one node: its own process group (so a pause or kill
/// reaches any children it starts), its `FAULTLINE_*` environment, no
/// shell, and a parent-death signal (so a SIGKILLed harness leaves nothing
/// behind).
fn command(spec: &NodeSpec) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env("FAULTLINE_NODE_ID", &spec.id)
        .env("FAULTLINE_DATA_DIR", &spec.data_dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.routed {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    supervise(&mut cmd);
    if let Some(cell) = &spec.cell {
        crate::contain::join_before_exec(&mut cmd, cell);
    }
    cmd
}

/// Copies a node's stderr (or a server's stdout) into its log, up to
/// `LOG_CAP_BYTES`; what is cut is counted in the log's last line. Returns
/// the log when the stream closes.
fn spawn_log_copier(
    mut stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut log: std::fs::File,
    log_path: PathBuf,
    recorder: Arc<Recorder>,
) -> tokio::task::JoinHandle<std::fs::File> {
    tokio::spawn(async move {
        let name = log_path.display().to_string();
        let mut written = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut dropped = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) if written + n as u64 <= LOG_CAP_BYTES => {
                    if let Err(e) = log.write_all(&buf[..n]) {
                        recorder.failed(&name, e);
                    }
                    written += n as u64;
                }
                Ok(n) => dropped += n as u64,
            }
        }
        if dropped > 0 {
            let note = format!("\n=== faultline: {dropped} bytes of stderr dropped: {name} is capped at {LOG_CAP_BYTES} bytes ===");
            if let Err(e) = writeln!(log, "{note}") {
                recorder.failed(&name, e);
            }
        }
        log
    })
}

/// What the exit watcher of one incarnation needs.
struct Watch {
    id: String,
    process: Option<String>,
    log_name: String,
    index: usize,
    pid: i32,
    /// The router's attachment, for a routed node.
    generation: Option<u64>,
    cell: Option<Cell>,
    expected: Arc<std::sync::atomic::AtomicBool>,
    net: Arc<Network>,
    recorder: Arc<Recorder>,
    clock: Clock,
}

/// Waits for the node to exit; then kills what it left in its group,
/// detaches it, lets its last output drain, and announces the exit.
fn spawn_exit_watcher(
    mut child: tokio::process::Child,
    w: Watch,
    reader: tokio::task::JoinHandle<()>,
    log: tokio::task::JoinHandle<std::fs::File>,
    tx: watch::Sender<Option<ExitInfo>>,
) {
    tokio::spawn(async move {
        let status = child.wait().await;
        // What it started ends with it (in sessions of their own too, with
        // a group): the next incarnation must not find its predecessor's
        // daemon running. The group alone, as in `kill`.
        match w.cell.clone() {
            Some(cell) => {
                let killed = tokio::task::spawn_blocking(move || cell.kill()).await;
                // Not a write of the run directory: a warning. A group
                // already removed (teardown) has nothing left to end.
                if let Ok(Err(e)) = killed {
                    if !e.is_gone() {
                        eprintln!("faultline: warning: ending what {} left: {e}", w.id);
                    }
                }
            }
            None => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(w.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        hygiene::unregister(w.pid);
        if let Some(generation) = w.generation {
            w.net.detach(w.index, generation);
        }
        let status = status
            .map(describe_status)
            .unwrap_or_else(|e| format!("wait failed: {e}"));
        let info = ExitInfo {
            node: w.id.clone(),
            pid: w.pid,
            time_ns: w.clock.now_ns(),
            status: status.clone(),
            expected: w.expected.load(std::sync::atomic::Ordering::SeqCst),
            refused_to_start: false,
            process: w.process.clone(),
        };
        // Let the last stdout lines and stderr bytes drain before reporting.
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        if let Ok(Ok(mut log)) = tokio::time::timeout(Duration::from_secs(2), log).await {
            let who = match &w.process {
                Some(p) => format!("{}.{p}", w.id),
                None => w.id.clone(),
            };
            let ended = format!("=== faultline: {who} (pid {}) ended: {status} ===", w.pid);
            if let Err(e) = writeln!(log, "{ended}") {
                w.recorder.failed(&w.log_name, e);
            }
        }
        let mut exit = json!({"pid": w.pid, "status": status, "expected": info.expected});
        if let Some(p) = &w.process {
            exit["process"] = json!(p);
        }
        w.recorder.node_event(&w.id, "exit", exit);
        let _ = tx.send(Some(info));
    });
}

/// Starts one incarnation of a node and attaches it to the network; with
/// the clock agent, its program's clock is patched before it runs.
pub fn spawn(
    spec: &NodeSpec,
    net: &Arc<Network>,
    recorder: &Arc<Recorder>,
    clock: Clock,
    clock_agent: Option<&Arc<crate::clock_agent::Agent>>,
) -> Result<NodeHandle, NodeError> {
    let log_err = |cause| NodeError::Log {
        path: spec.log_path.display().to_string(),
        cause,
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(log_err)?;
    let spawn_err = |cause| NodeError::Spawn {
        node: spec.id.clone(),
        program: spec.program.display().to_string(),
        cause,
    };
    let mut cmd = command(spec);
    let gate = clock_agent
        .map(|a| a.gate(&mut cmd, &spec.id))
        .transpose()
        .map_err(spawn_err)?;
    let spawned = cmd.spawn();
    drop(gate);
    let mut child = spawned.map_err(spawn_err)?;
    let pid = child.id().expect("a just-spawned child has a pid") as i32;
    hygiene::register(pid);
    let started_ms = clock.now_ns() / 1_000_000;
    if let Err(e) = writeln!(
        log,
        "=== faultline: {} started as pid {pid} at {started_ms} ms ===",
        spec.label()
    ) {
        recorder.failed(&spec.log_path.display().to_string(), e);
    }
    let mut start = json!({"pid": pid});
    if let Some(p) = &spec.process {
        start["process"] = json!(p);
    }
    recorder.node_event(&spec.id, "start", start);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (generation, reader) = if spec.routed {
        let stdin = child.stdin.take().expect("stdin is piped");
        let (generation, reader) = net.attach(spec.index, stdout, stdin);
        (Some(generation), reader)
    } else {
        let out = log.try_clone().map_err(log_err)?;
        let copier = spawn_log_copier(stdout, out, spec.log_path.clone(), recorder.clone());
        (None, tokio::spawn(async move { drop(copier.await) }))
    };
    let log = spawn_log_copier(stderr, log, spec.log_path.clone(), recorder.clone());
    let (tx, rx) = watch::channel(None);
    let expected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = Watch {
        id: spec.id.clone(),
        process: spec.process.clone(),
        log_name: spec.log_path.display().to_string(),
        index: spec.index,
        pid,
        generation,
        cell: spec.cell.clone(),
        expected: expected.clone(),
        net: net.clone(),
        recorder: recorder.clone(),
        clock,
    };
    spawn_exit_watcher(child, w, reader, log, tx);
    Ok(NodeHandle {
        spec: spec.clone(),
        pid,
        exit: rx,
        expected,
    })
}

impl NodeHandle {
    pub fn is_running(&self) -> bool {
        self.exit.borrow().is_none()
    }

    /// SIGKILLs every process of it (its control group, else its process
    /// group) and waits (bounded) until it is reaped.
    pub async fn kill(&mut self) -> Option<ExitInfo> {
        self.expected
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match self.spec.cell.clone() {
            // The group at once: a process group killed first would leave
            // exiting tasks that hold up the group's freeze.
            Some(cell) => {
                let killed = tokio::task::spawn_blocking(move || cell.kill()).await;
                if let Ok(Err(e)) = killed {
                    eprintln!("faultline: warning: killing {}: {e}", self.spec.label());
                }
            }
            None => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(self.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.wait_exit(std::time::Duration::from_secs(10)).await
    }

    /// Every live process of this incarnation: its control group's
    /// members, else its process group's.
    pub fn processes(&self) -> Vec<u32> {
        if !self.is_running() {
            return Vec::new();
        }
        match &self.spec.cell {
            Some(cell) => cell.pids(),
            None => group_members(self.pid),
        }
    }

    /// Asks the node to stop with `signal`, then SIGKILLs it if it has not
    /// within `grace`; waits until it is reaped.
    pub async fn stop(
        &mut self,
        signal: nix::sys::signal::Signal,
        grace: Duration,
    ) -> Option<ExitInfo> {
        self.expected
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), signal);
        // A stopped process cannot act on the signal until continued.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGCONT,
        );
        if self.wait_exit(grace).await.is_some() {
            return self.exit.borrow().clone();
        }
        self.kill().await
    }

    pub async fn wait_exit(&mut self, limit: std::time::Duration) -> Option<ExitInfo> {
        let _ = tokio::time::timeout(limit, self.exit.wait_for(|e| e.is_some())).await;
        self.exit.borrow().clone()
    }
}

/// The processes of process group `pgid`, from /proc (bounded by what
/// /proc lists).
pub fn group_members(pgid: i32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Fields after the command's closing ')': state ppid pgrp ...
        let pgrp = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(2)?.parse::<i32>().ok());
        if pgrp == Some(pgid) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// The last lines of a node's stderr, for an error message about it.
pub fn tail_note(n: &NodeHandle) -> String {
    let t = log_tail(&n.spec.log_path, 20);
    if t.trim().is_empty() {
        format!("(its stderr, {}, is empty)", n.spec.log_path.display())
    } else {
        format!(
            "Last lines of its stderr ({}):\n{t}",
            n.spec.log_path.display()
        )
    }
}

/// Sends `init` and waits (bounded) for `init_ok`; errors name the node
/// and show the tail of its stderr.
pub async fn init(
    net: &Network,
    inbox: &mut tokio::sync::mpsc::Receiver<Value>,
    node: &mut NodeHandle,
    timeout: Duration,
) -> anyhow::Result<()> {
    let id = node.spec.id.clone();
    let mut body = json!({"type": "init", "msg_id": 1, "node_id": id, "node_ids": net.node_ids()});
    if let Some(m) = &node.spec.members {
        body["members"] = json!(m);
    }
    ask(net, inbox, node, &body, timeout).await?;
    net.initialised(node.spec.index);
    if let Some(setup) = node.spec.setup.clone() {
        let mut body = setup;
        body["msg_id"] = json!(2);
        ask(net, inbox, node, &body, timeout).await?;
    }
    Ok(())
}

/// Sends `body` (with its `msg_id`) from the controller and waits up to
/// `timeout` for the node's answer to it, whatever its type; `None` when
/// the node cannot be reached or says nothing in time.
pub async fn request(
    net: &Network,
    inbox: &mut tokio::sync::mpsc::Receiver<Value>,
    node: &NodeHandle,
    body: &Value,
    timeout: Duration,
) -> Option<Value> {
    let id = body.get("msg_id").and_then(Value::as_u64)?;
    if !node.is_running() {
        return None;
    }
    net.send_from_controller(node.spec.index, body).ok()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        tokio::select! {
            m = inbox.recv() => {
                let reply = m?;
                if reply.get("in_reply_to").and_then(Value::as_u64) == Some(id) {
                    return Some(reply);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// Sends `body` from the controller and waits for its `{type}_ok`; an
/// error reply, an exit or silence past `timeout` is an error naming the
/// node and the tail of its log.
async fn ask(
    net: &Network,
    inbox: &mut tokio::sync::mpsc::Receiver<Value>,
    node: &mut NodeHandle,
    body: &Value,
    timeout: Duration,
) -> anyhow::Result<()> {
    let id = node.spec.id.clone();
    let ty = body["type"].as_str().unwrap_or("?").to_string();
    let want = format!("{ty}_ok");
    let tail = tail_note;
    if let Err(e) = net.send_from_controller(node.spec.index, body) {
        let exit = node.wait_exit(Duration::from_millis(500)).await;
        let how = exit.map(|e| e.status).unwrap_or_else(|| e.to_string());
        return Err(anyhow!(
            "node {id} could not receive {ty} ({how}). {}",
            tail(node)
        ));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut exit = node.exit.clone();
        tokio::select! {
            m = inbox.recv() => {
                let Some(reply) = m else { return Err(anyhow!("node {id}: controller inbox closed")) };
                match reply.get("type").and_then(Value::as_str) {
                    Some(t) if t == want => return Ok(()),
                    Some("error") => return Err(anyhow!("node {id} answered {ty} with an error: {reply}. {}", tail(node))),
                    _ => continue,
                }
            }
            // The watch guard is not Send: drop it inside the future.
            _ = async { let _ = exit.wait_for(|e| e.is_some()).await; } => {
                let status = node.exit.borrow().as_ref().map(|e| e.status.clone()).unwrap_or_default();
                // Give its stderr a moment to land in the log.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(anyhow!("node {id} exited ({status}) before answering {ty}. {}", tail(node)));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(anyhow!(
                    "node {id} did not answer {ty} within {} ms (it is still running). {}",
                    timeout.as_millis(), tail(node)
                ));
            }
        }
    }
}
