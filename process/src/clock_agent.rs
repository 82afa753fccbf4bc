//! The clock agent: a process of faultline's own binary (`faultline
//! __clock-agent`) that patches every process of every node (see `vdso`)
//! and writes each node's wall-clock offset into them.
//!
//! Why a process of its own: a ptrace stop of a traced child is reported
//! to its parent's `waitpid`, and the harness's runtime would take a
//! node's stop for its exit. The agent is nobody's parent.
//!
//! It reads commands on stdin, one a line, and answers on stdout:
//! - `cell NODE DIR`: NODE's processes are those in control group DIR and
//!   below (polled every `POLL_MS`); `skip DIR`: not those below DIR (a
//!   process the system file keeps on true time).
//! - `pid NODE PID`: a process just started for NODE (attached at once).
//! - `lock FILE`: held (flock) while attaching, which the harness takes
//!   before it freezes a group: a process frozen half-patched would be
//!   left with our registers.
//! - `set NODE OFFSET_NS` → `set NODE PID,PID,…` (or `-`): every known
//!   process of NODE now reads that offset, and new ones start with it.
//! - events, unasked: `attached NODE PID fast|slow NAME`, `failed NODE
//!   PID REASON`.
//!
//! It exits when stdin closes (faultline ended, however it ended); a
//! tracer that exits detaches whatever it traced, so nothing stays traced.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::vdso;

/// How often node groups are listed for new processes.
const POLL_MS: u64 = 10;
/// Most processes known per node (a fork bomb must not grow us forever).
const MAX_PIDS_PER_NODE: usize = 4096;
/// Longest command line read.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How many times one process's attach is tried before it is given up.
const MAX_TRIES: u32 = 3;

#[derive(Default)]
struct Node {
    cells: Vec<PathBuf>,
    offset_ns: i64,
    /// pid → (start ticks, offset page address).
    patched: BTreeMap<u32, (u64, u64)>,
    /// Processes to attach as soon as possible.
    pending: BTreeSet<u32>,
    /// pid → (start ticks, failed tries).
    failed: BTreeMap<u32, (u64, u32)>,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Node>,
    skip: Vec<PathBuf>,
    lock: Option<std::fs::File>,
}

type Out = Arc<Mutex<std::io::Stdout>>;

fn say(out: &Out, line: &str) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// The agent's main loop: until stdin closes.
pub fn run() -> ! {
    let state = Arc::new(Mutex::new(State::default()));
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    {
        let (state, out) = (state.clone(), out.clone());
        std::thread::spawn(move || loop {
            poll(&state, &out);
            std::thread::sleep(Duration::from_millis(POLL_MS));
        });
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        let mut lock = stdin.lock();
        match (&mut lock).take(MAX_LINE_BYTES as u64).read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        drop(lock);
        if let Some(reply) = command(&state, line.trim()) {
            say(&out, &reply);
        }
    }
    // Let an attach under way finish (it holds the state), then go.
    drop(state.lock());
    std::process::exit(0)
}

fn command(state: &Mutex<State>, line: &str) -> Option<String> {
    let mut w = line.splitn(3, ' ');
    let (verb, a, b) = (w.next()?, w.next().unwrap_or(""), w.next().unwrap_or(""));
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    match verb {
        "cell" => s.nodes.entry(a.into()).or_default().cells.push(b.into()),
        "skip" => s.skip.push(a.into()),
        "lock" => s.lock = std::fs::File::open(a).ok(),
        "pid" => {
            if let Ok(pid) = b.parse() {
                s.nodes.entry(a.into()).or_default().pending.insert(pid);
            }
        }
        "set" => {
            let Ok(offset_ns) = b.parse::<i64>() else {
                return Some(format!("error bad offset {b:?}"));
            };
            let node = s.nodes.entry(a.into()).or_default();
            node.offset_ns = offset_ns;
            let mut reached = Vec::new();
            // A process gone, or one that exec'd since (the poller patches
            // its new image with this offset), is dropped here.
            node.patched.retain(|&pid, &mut (ticks, data)| {
                crate::contain::start_ticks(pid) == Some(ticks)
                    && vdso::set_offset(pid, data, offset_ns)
                        .map(|()| reached.push(pid.to_string()))
                        .is_ok()
            });
            let list = if reached.is_empty() {
                "-".to_string()
            } else {
                reached.join(",")
            };
            return Some(format!("set {a} {list}"));
        }
        _ => return Some(format!("error unknown command {verb:?}")),
    }
    None
}

/// Finds each node's new processes and patches them.
fn poll(state: &Mutex<State>, out: &Out) {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let skip = s.skip.clone();
    let names: Vec<String> = s.nodes.keys().cloned().collect();
    for name in names {
        let node = s.nodes.get_mut(&name).expect("listed");
        // Forget what exec'd (a new image, unpatched) or ended.
        node.patched
            .retain(|&pid, &mut (_, data)| vdso::still_patched(pid, data));
        let mut pids: BTreeSet<u32> = std::mem::take(&mut node.pending);
        for cell in &node.cells {
            collect(cell, &skip, &mut pids, 0);
        }
        let todo: Vec<u32> = pids
            .into_iter()
            .filter(|pid| !node.patched.contains_key(pid))
            .filter(|pid| {
                let ticks = crate::contain::start_ticks(*pid);
                node.failed
                    .get(pid)
                    .is_none_or(|&(t, tries)| Some(t) != ticks || tries < MAX_TRIES)
            })
            .take(MAX_PIDS_PER_NODE.saturating_sub(node.patched.len()))
            .collect();
        for pid in todo {
            attach_one(&mut s, &name, pid, out);
        }
    }
}

fn attach_one(s: &mut State, name: &str, pid: u32, out: &Out) {
    let Some(ticks) = crate::contain::start_ticks(pid) else {
        return;
    };
    let _held = s.lock.as_ref().map(Flock::new);
    // A frozen process cannot be stopped to patch: next round.
    if crate::contain::pid_frozen(pid) {
        return;
    }
    let node = s.nodes.get_mut(name).expect("known node");
    match vdso::attach(pid, node.offset_ns) {
        Ok(p) => {
            node.patched.insert(pid, (ticks, p.data));
            node.failed.remove(&pid);
            if p.new {
                let speed = if p.fast { "fast" } else { "slow" };
                say(out, &format!("attached {name} {pid} {speed} {}", comm(pid)));
            }
        }
        Err(vdso::AttachError::Gone { .. }) => {}
        Err(e) => {
            let tries = node.failed.entry(pid).or_insert((ticks, 0));
            if tries.0 != ticks {
                *tries = (ticks, 0);
            }
            tries.1 += 1;
            if tries.1 == MAX_TRIES {
                say(
                    out,
                    &format!("failed {name} {pid} {} ({}): {e}", comm(pid), MAX_TRIES),
                );
            }
        }
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().replace(' ', "_"))
        .unwrap_or_else(|_| "?".into())
}

fn collect(dir: &Path, skip: &[PathBuf], out: &mut BTreeSet<u32>, depth: usize) {
    if depth > 8 || skip.iter().any(|s| dir.starts_with(s)) {
        return;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&e.path(), skip, out, depth + 1);
        }
    }
}

/// An exclusive flock held until dropped.
struct Flock<'a>(&'a std::fs::File);

impl<'a> Flock<'a> {
    fn new(f: &'a std::fs::File) -> Flock<'a> {
        // SAFETY: flock on an fd we own.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        Flock(f)
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The harness's side: the agent process, its answers, and its news.
pub struct Agent {
    child: std::process::Child,
    stdin: Mutex<Option<std::process::ChildStdin>>,
    replies: Mutex<std::sync::mpsc::Receiver<String>>,
    /// What it could not patch, as it said (bounded).
    pub failures: Arc<Mutex<Vec<String>>>,
}

/// How long a `set` may take to be answered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most failure lines kept for the results.
const MAX_FAILURES_KEPT: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("starting the clock agent ({program}): {cause}")]
    Start {
        program: String,
        cause: std::io::Error,
    },
    #[error("the clock agent is gone ({0})")]
    Gone(String),
    #[error("the clock agent did not answer {0:?} within {ms} ms", ms = REPLY_TIMEOUT.as_millis())]
    Silent(String),
}

impl Agent {
    /// Starts `program __clock-agent`; `lock` is the freeze lock file.
    pub fn start(program: &Path, lock: &Path) -> Result<Agent, AgentError> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut child = std::process::Command::new(program)
            .arg("__clock-agent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own group: a ^C to faultline's group must not end it
            // before faultline has stopped using it.
            .process_group(0)
            .spawn()
            .map_err(|cause| AgentError::Start {
                program: program.display().to_string(),
                cause,
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let kept = failures.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(f) = line.strip_prefix("failed ") {
                    eprintln!("faultline: warning: a clock cannot be skewed: {f}");
                    let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
                    if k.len() < MAX_FAILURES_KEPT {
                        k.push(f.to_string());
                    }
                } else if !line.starts_with("attached ") && tx.send(line).is_err() {
                    return;
                }
            }
        });
        let agent = Agent {
            child,
            stdin: Mutex::new(Some(stdin)),
            replies: Mutex::new(rx),
            failures,
        };
        agent.send(&format!("lock {}", lock.display()))?;
        Ok(agent)
    }

    fn send(&self, line: &str) -> Result<(), AgentError> {
        let mut w = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let w = w
            .as_mut()
            .ok_or_else(|| AgentError::Gone("stopped".into()))?;
        writeln!(w, "{line}").map_err(|e| AgentError::Gone(e.to_string()))
    }

    /// NODE's processes live in control group `dir`.
    pub fn cell(&self, node: &str, dir: &Path) -> Result<(), AgentError> {
        self.send(&format!("cell {node} {}", dir.display()))
    }

    /// Processes below `dir` keep true time.
    pub fn skip(&self, dir: &Path) -> Result<(), AgentError> {
        self.send(&format!("skip {}", dir.display()))
    }

    /// A process just started for NODE.
    pub fn started(&self, node: &str, pid: u32) -> Result<(), AgentError> {
        self.send(&format!("pid {node} {pid}"))
    }

    /// Sets NODE's offset; returns the processes it is now in force in.
    pub fn set(&self, node: &str, offset_ns: i64) -> Result<Vec<u32>, AgentError> {
        let rx = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let ask = format!("set {node} {offset_ns}");
        self.send(&ask)?;
        let line = rx
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| AgentError::Silent(ask.clone()))?;
        let list = line
            .strip_prefix(&format!("set {node} "))
            .ok_or_else(|| AgentError::Gone(format!("answered {line:?} to {ask:?}")))?;
        Ok(list.split(',').filter_map(|p| p.parse().ok()).collect())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Closing its stdin ends it once an attach under way is done (a
        // signal could end it half-way, leaving a process with our
        // registers); bounded, then killed.
        drop(self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take());
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
