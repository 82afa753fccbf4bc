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
//! - `exec NODE PID` → `seized PID` (or `unseized PID REASON`): PID is
//!   waiting to exec (see `Agent::gate`); it is seized with
//!   PTRACE_O_TRACEEXEC, and each image it execs is patched before its
//!   first instruction, through wrappers (`unshare`, `setpriv`, ...) until
//!   the program itself, then let go.
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
    /// pid → (start ticks, failed tries).
    failed: BTreeMap<u32, (u64, u32)>,
    /// Processes a follower holds (between their gate and their exec).
    following: BTreeSet<u32>,
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
        if let Some(reply) = command(&state, &out, line.trim()) {
            say(&out, &reply);
        }
    }
    // Let an attach under way finish (it holds the state), then go.
    drop(state.lock());
    std::process::exit(0)
}

fn command(state: &Arc<Mutex<State>>, out: &Out, line: &str) -> Option<String> {
    let mut w = line.splitn(3, ' ');
    let (verb, a, b) = (w.next()?, w.next().unwrap_or(""), w.next().unwrap_or(""));
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    match verb {
        "exec" => {
            let Ok(pid) = b.parse::<u32>() else {
                return Some(format!("error bad pid {b:?}"));
            };
            s.nodes.entry(a.into()).or_default().following.insert(pid);
            let (state, out, node) = (state.clone(), out.clone(), a.to_string());
            std::thread::spawn(move || follow(&state, &out, &node, pid));
        }
        "cell" => s.nodes.entry(a.into()).or_default().cells.push(b.into()),
        "skip" => s.skip.push(a.into()),
        "lock" => s.lock = std::fs::File::open(a).ok(),
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
    vdso::release_stuck();
    let skip = s.skip.clone();
    let names: Vec<String> = s.nodes.keys().cloned().collect();
    for name in names {
        let node = s.nodes.get_mut(&name).expect("listed");
        // Forget what exec'd (a new image, unpatched) or ended.
        node.patched
            .retain(|&pid, &mut (_, data)| vdso::still_patched(pid, data));
        let mut pids = BTreeSet::new();
        for cell in &node.cells {
            collect(cell, &skip, &mut pids, 0);
        }
        let todo: Vec<u32> = pids
            .into_iter()
            .filter(|pid| !node.patched.contains_key(pid) && !node.following.contains(pid))
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

/// Programs that exec another: a gated process is followed through them
/// (faultline's own start of a server is `unshare`, then `sh` that
/// mounts the node's /etc/hosts and execs it). A shell that never execs
/// is let go after `FOLLOW_MS`.
const WRAPPERS: &[&str] = &[
    "unshare", "setpriv", "env", "nsenter", "chroot", "setsid", "runuser", "su", "sudo", "nice",
    "ionice", "taskset", "stdbuf", "chrt", "prlimit", "sh", "dash", "bash",
];
/// Most execs followed, and for how long, before a process is let go.
const MAX_EXECS: usize = 8;
const FOLLOW_MS: u64 = 10_000;

/// Holds a gated process from its gate through each exec it makes until
/// it runs a program that is no wrapper, patching each new image before
/// its first instruction; then lets it go.
fn follow(state: &Mutex<State>, out: &Out, node: &str, pid: u32) {
    use ptrace_follow::*;
    let seized = seize_for_exec(pid);
    say(
        out,
        &match &seized {
            Ok(()) => format!("seized {pid}"),
            Err(e) => format!("unseized {pid} {e}"),
        },
    );
    if seized.is_ok() {
        let end = std::time::Instant::now() + Duration::from_millis(FOLLOW_MS);
        let mut execs = 0;
        loop {
            match next_stop(pid, end) {
                StopAt::Exec => {
                    execs += 1;
                    let sig = patch_exec(state, out, node, pid);
                    if execs >= MAX_EXECS || !is_wrapper(pid) {
                        let_go(pid, sig);
                        break;
                    }
                    resume(pid, sig);
                }
                StopAt::Signal(sig) => resume(pid, sig),
                StopAt::Group => listen(pid),
                StopAt::Other => resume(pid, 0),
                StopAt::Gone => break,
                StopAt::Late => {
                    interrupt_and_let_go(pid);
                    break;
                }
            }
        }
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = s.nodes.get_mut(node) {
        n.following.remove(&pid);
    }
}

/// Patches a process stopped at its exec, under the freeze lock; returns
/// a signal to deliver.
fn patch_exec(state: &Mutex<State>, out: &Out, node: &str, pid: u32) -> i32 {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let s = &mut *s;
    let _held = s.lock.as_ref().map(Flock::new);
    let ticks = crate::contain::start_ticks(pid).unwrap_or(0);
    let n = s.nodes.entry(node.into()).or_default();
    match vdso::patch_at_exec(pid, n.offset_ns) {
        Ok((p, sig)) => {
            n.patched.insert(pid, (ticks, p.data));
            let speed = if p.fast { "fast" } else { "slow" };
            say(
                out,
                &format!("attached {node} {pid} {speed} {} at-exec", comm(pid)),
            );
            sig
        }
        Err(e) => {
            say(
                out,
                &format!("failed {node} {pid} {} at its exec: {e}", comm(pid)),
            );
            0
        }
    }
}

fn is_wrapper(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| Some(p.file_name()?.to_str()?.to_string()))
        .is_some_and(|name| WRAPPERS.contains(&name.as_str()))
}

/// The ptrace requests of following one process through its execs.
mod ptrace_follow {
    use std::time::{Duration, Instant};

    fn call(req: libc::c_uint, pid: u32, data: u64) -> std::io::Result<()> {
        // SAFETY: requests on a process this thread traces; `data` is a
        // number (options or a signal), never a pointer.
        let r = unsafe {
            libc::ptrace(
                req,
                pid as i32,
                std::ptr::null_mut::<libc::c_void>(),
                data as *mut libc::c_void,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn seize_for_exec(pid: u32) -> std::io::Result<()> {
        call(libc::PTRACE_SEIZE, pid, libc::PTRACE_O_TRACEEXEC as u64)
    }

    pub enum StopAt {
        Exec,
        Signal(i32),
        /// A group stop (SIGSTOP and the like): kept stopped.
        Group,
        Other,
        Gone,
        Late,
    }

    pub fn next_stop(pid: u32, end: Instant) -> StopAt {
        loop {
            let mut status = 0;
            // SAFETY: waitpid into a local.
            let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::__WALL | libc::WNOHANG) };
            if r < 0 {
                return StopAt::Gone;
            }
            if r == pid as i32 {
                if !libc::WIFSTOPPED(status) {
                    return StopAt::Gone;
                }
                let (sig, event) = (libc::WSTOPSIG(status), status >> 16);
                return match event {
                    0 => StopAt::Signal(sig),
                    libc::PTRACE_EVENT_EXEC => StopAt::Exec,
                    libc::PTRACE_EVENT_STOP
                        if matches!(
                            sig,
                            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                        ) =>
                    {
                        StopAt::Group
                    }
                    _ => StopAt::Other,
                };
            }
            if Instant::now() > end {
                return StopAt::Late;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn resume(pid: u32, sig: i32) {
        let _ = call(libc::PTRACE_CONT, pid, sig as u64);
    }

    pub fn listen(pid: u32) {
        let _ = call(libc::PTRACE_LISTEN, pid, 0);
    }

    /// How long a tracee that cannot be let go (frozen by a pause while
    /// we held it: a frozen task takes no ptrace request) is retried.
    const LET_GO_MS: u64 = 120_000;

    /// Detaches a stopped tracee, retrying while it is frozen.
    pub fn let_go(pid: u32, sig: i32) {
        let end = Instant::now() + Duration::from_millis(LET_GO_MS);
        while call(libc::PTRACE_DETACH, pid, sig as u64).is_err()
            && std::path::Path::new(&format!("/proc/{pid}")).exists()
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops a running tracee and lets it go (a detach needs a stop); a
    /// frozen one stops once thawed.
    pub fn interrupt_and_let_go(pid: u32) {
        if call(libc::PTRACE_INTERRUPT, pid, 0).is_err() {
            return;
        }
        match next_stop(pid, Instant::now() + Duration::from_millis(LET_GO_MS)) {
            StopAt::Signal(sig) => let_go(pid, sig),
            // Still traced if it never stops: the agent's exit lets it go.
            StopAt::Gone | StopAt::Late => {}
            _ => let_go(pid, 0),
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
    /// Who waits for the answer about a gated pid.
    gates: Arc<Mutex<BTreeMap<u32, std::sync::mpsc::Sender<String>>>>,
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
    #[error("creating the clock agent's log {path}: {cause}")]
    Log { path: String, cause: std::io::Error },
    #[error("the clock agent is gone ({0})")]
    Gone(String),
    #[error("the clock agent did not answer {0:?} within {ms} ms", ms = REPLY_TIMEOUT.as_millis())]
    Silent(String),
}

impl Agent {
    /// Starts `program __clock-agent`; `lock` is the freeze lock file;
    /// what it patched and what it could not goes to `log`, a line each.
    pub fn start(program: &Path, lock: &Path, log: &Path) -> Result<Agent, AgentError> {
        let mut log = std::fs::File::create(log).map_err(|cause| AgentError::Log {
            path: log.display().to_string(),
            cause,
        })?;
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
        let gates: Arc<Mutex<BTreeMap<u32, std::sync::mpsc::Sender<String>>>> = Default::default();
        let waiting = gates.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(f) = line.strip_prefix("failed ") {
                    let _ = writeln!(log, "{line}");
                    eprintln!("faultline: warning: a clock cannot be skewed: {f}");
                    let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
                    if k.len() < MAX_FAILURES_KEPT {
                        k.push(f.to_string());
                    }
                } else if let Some(pid) = gated_pid(&line) {
                    let to = waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&pid);
                    if let Some(to) = to {
                        let _ = to.send(line);
                    }
                } else if line.starts_with("attached ") {
                    let _ = writeln!(log, "{line}");
                } else if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let agent = Agent {
            child,
            stdin: Mutex::new(Some(stdin)),
            replies: Mutex::new(rx),
            gates,
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

/// The pid an answer about a gated process names.
fn gated_pid(line: &str) -> Option<u32> {
    let rest = line
        .strip_prefix("seized ")
        .or_else(|| line.strip_prefix("unseized "))?;
    rest.split(' ').next()?.parse().ok()
}

/// How long a gated process waits for the agent before it runs anyway
/// (unpatched until the agent finds it by its group).
const GATE_TIMEOUT: Duration = Duration::from_secs(2);

/// The parent's copies of a gated child's pipe ends: closed once the
/// child has been spawned (or failed to be).
pub struct Gate {
    _child_ends: [std::os::fd::OwnedFd; 2],
}

fn cloexec_pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just made and are owned once each.
    unsafe {
        Ok((
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        ))
    }
}

impl Agent {
    /// Makes `cmd`'s process, once forked, tell us its pid and wait (at
    /// most `GATE_TIMEOUT`) until the agent holds it, so that the program
    /// it executes is patched before its first instruction. Keep the
    /// returned gate until `cmd` is spawned.
    pub fn gate(
        self: &Arc<Self>,
        cmd: &mut tokio::process::Command,
        node: &str,
    ) -> std::io::Result<Gate> {
        use std::os::fd::AsRawFd;
        let (pid_r, pid_w) = cloexec_pipe()?;
        let (go_r, go_w) = cloexec_pipe()?;
        let (pid_w_fd, go_r_fd) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
        let (pid_r_fd, go_w_fd) = (pid_r.as_raw_fd(), go_w.as_raw_fd());
        // SAFETY: only async-signal-safe calls (close, getpid, write, read)
        // between fork and exec; every fd is CLOEXEC, so none outlives the
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                // Our copies of the parent's ends: the go pipe must see EOF
                // if the gatekeeper goes away.
                libc::close(pid_r_fd);
                libc::close(go_w_fd);
                let pid = libc::getpid();
                libc::write(pid_w_fd, (&pid as *const i32).cast(), 4);
                let mut byte = 0u8;
                while libc::read(go_r_fd, (&mut byte as *mut u8).cast(), 1) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
                Ok(())
            });
        }
        let (agent, node) = (self.clone(), node.to_string());
        std::thread::spawn(move || agent.keep_gate(&node, pid_r, go_w));
        Ok(Gate {
            _child_ends: [pid_w, go_r],
        })
    }

    /// Reads the gated child's pid, has the agent seize it, opens the gate.
    fn keep_gate(&self, node: &str, pid_r: std::os::fd::OwnedFd, go_w: std::os::fd::OwnedFd) {
        use std::os::fd::AsRawFd;
        let mut poll = libc::pollfd {
            fd: pid_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one fd we own.
        let ready = unsafe { libc::poll(&mut poll, 1, GATE_TIMEOUT.as_millis() as i32) };
        let mut pid = [0u8; 4];
        let read = ready == 1 && std::fs::File::from(pid_r).read_exact(&mut pid).is_ok();
        if read {
            let pid = u32::from_le_bytes(pid);
            let (tx, rx) = std::sync::mpsc::channel();
            self.gates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pid, tx);
            if self.send(&format!("exec {node} {pid}")).is_ok() {
                let _ = rx.recv_timeout(GATE_TIMEOUT);
            }
            self.gates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&pid);
        }
        let _ = std::fs::File::from(go_w).write_all(b"g");
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
