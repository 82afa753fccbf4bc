//! A node is every process it starts. Each process the harness starts for
//! a node (its server, sidecars, init steps) is put into a control group
//! of that node before it executes, so whatever it starts later (a child
//! that calls `setsid`, a double-forked daemon, a process that changes
//! user) stays in the group. Kill, pause and power loss act on the group,
//! not on a process group, and teardown empties it before any data is
//! removed.
//!
//! Layout, under the cgroup faultline itself runs in:
//! `faultline/<pid>-<start ticks>/<cluster>/<node>/<process>`. Pausing a
//! node freezes its directory (every process at once, as a frozen machine
//! would); a named process is frozen alone through its leaf.
//!
//! Two kernels' interfaces: the cgroup v1 `freezer` hierarchy where it is
//! mounted (frozen tasks show state D in /proc, and a kill is freeze, SIGKILL
//! every member, thaw, so nothing forks away meanwhile), else cgroup2
//! (`cgroup.freeze`, `cgroup.kill`). Without a writable hierarchy (not
//! root, no delegation) `Session::start` says why and nodes fall back to
//! process groups, which a `setsid` child escapes (docs/nemesis.md).
//!
//! Nothing outlives a run, however the harness ends: a reaper process
//! (the harness's own binary, reading a pipe) empties and removes the
//! session's groups when the pipe closes, and every session first removes
//! what dead sessions left.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a freeze or a kill may take before it is an error.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_EVERY: Duration = Duration::from_millis(5);
/// A kill's freeze/SIGKILL/thaw rounds before giving up (v1).
const KILL_ROUNDS: usize = 50;
/// How long a kill's round waits for its freeze (v1).
const KILL_FREEZE_TIMEOUT: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{path}: {what} did not settle within {ms} ms ({left} processes: {pids:?})", ms = SETTLE_TIMEOUT.as_millis())]
    Stuck {
        path: String,
        what: &'static str,
        left: usize,
        pids: Vec<u32>,
    },
}

impl ContainError {
    /// Whether the group was gone already (removed at teardown).
    pub fn is_gone(&self) -> bool {
        matches!(self, ContainError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
    }
}

fn io(path: &Path, cause: std::io::Error) -> ContainError {
    ContainError::Io {
        path: path.display().to_string(),
        cause,
    }
}

/// Which kernel interface holds the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// cgroup v1's freezer hierarchy.
    V1Freezer,
    /// The unified hierarchy (cgroup.freeze, cgroup.kill).
    V2,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::V1Freezer => "cgroup-v1-freezer",
            Backend::V2 => "cgroup2",
        }
    }
}

/// One control group: a directory of a hierarchy.
#[derive(Debug, Clone)]
pub struct Cell {
    pub path: PathBuf,
    pub backend: Backend,
}

impl Cell {
    /// The group this process runs in, in `backend`'s hierarchy, if it is
    /// mounted.
    pub fn own(backend: Backend) -> Option<Cell> {
        Some(Cell {
            path: own_group(backend)?,
            backend,
        })
    }

    /// Makes (or reuses) the child group `name`.
    pub fn child(&self, name: &str) -> Result<Cell, ContainError> {
        let path = self.path.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path, e)),
        }
        Ok(Cell {
            path,
            backend: self.backend,
        })
    }

    /// The file a process writes "0" into to join this group (v1 and
    /// cgroup2 both read 0 as "the writer").
    pub fn procs_file(&self) -> CString {
        let p = self.path.join("cgroup.procs");
        CString::new(p.as_os_str().as_encoded_bytes()).expect("a cgroup path has no NUL")
    }

    /// Every process in this group and the groups below it.
    pub fn pids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        collect_pids(&self.path, &mut out, 0);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Freezes every process below at once and waits until the kernel says
    /// they are frozen. Returns who was frozen.
    pub fn freeze(&self) -> Result<Vec<u32>, ContainError> {
        self.freeze_within(SETTLE_TIMEOUT)?;
        Ok(self.pids())
    }

    fn freeze_within(&self, limit: Duration) -> Result<(), ContainError> {
        self.set_frozen(true)?;
        self.settle("freeze", limit, || self.is_frozen())
    }

    /// Freezes or thaws without waiting for the kernel (a CPU duty cycle).
    pub fn set_frozen(&self, frozen: bool) -> Result<(), ContainError> {
        // Never while the clock agent has a process of ours stopped half
        // patched (see `set_freeze_lock`).
        let _held = frozen.then(freeze_lock);
        match (self.backend, frozen) {
            (Backend::V1Freezer, true) => write(&self.path.join("freezer.state"), "FROZEN"),
            (Backend::V2, true) => write(&self.path.join("cgroup.freeze"), "1"),
            (_, false) => self.thaw(),
        }
    }

    /// Thaws this group and every group below it that was frozen on its own.
    pub fn thaw(&self) -> Result<(), ContainError> {
        let (file, value) = match self.backend {
            Backend::V1Freezer => ("freezer.state", "THAWED"),
            Backend::V2 => ("cgroup.freeze", "0"),
        };
        for dir in subtree(&self.path) {
            write(&dir.join(file), value)?;
        }
        Ok(())
    }

    /// Whether the kernel has this group frozen (by itself or an ancestor).
    pub fn is_frozen(&self) -> bool {
        match self.backend {
            Backend::V1Freezer => read(&self.path.join("freezer.state")).trim() == "FROZEN",
            Backend::V2 => events(&self.path, "frozen") == Some(1),
        }
    }

    /// SIGKILLs every process below and waits until none is left. Returns
    /// who was killed.
    pub fn kill(&self) -> Result<Vec<u32>, ContainError> {
        let victims = self.pids();
        if victims.is_empty() {
            return Ok(victims);
        }
        match self.backend {
            Backend::V2 if self.path.join("cgroup.kill").exists() => {
                write(&self.path.join("cgroup.kill"), "1")?;
            }
            _ => self.kill_frozen()?,
        }
        self.settle("kill", SETTLE_TIMEOUT, || self.pids().is_empty())?;
        Ok(victims)
    }

    /// Freeze, SIGKILL each member, thaw, until empty: a frozen process
    /// cannot fork a new one between the listing and the signal.
    fn kill_frozen(&self) -> Result<(), ContainError> {
        for _ in 0..KILL_ROUNDS {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            // A freeze that does not settle soon (a task already exiting
            // holds v1's freezer in FREEZING) must not hold up the kill:
            // signal anyway, and the next round catches a fork.
            let _ = self.freeze_within(KILL_FREEZE_TIMEOUT);
            for pid in self.pids() {
                // SAFETY: kill(2) with a pid read from the group.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            self.thaw()?;
            std::thread::sleep(POLL_EVERY);
        }
        Ok(())
    }

    /// Kills what is left and removes this group and those below it.
    pub fn remove(&self) -> Result<(), ContainError> {
        if !self.path.exists() {
            return Ok(());
        }
        self.kill()?;
        let mut dirs = subtree(&self.path);
        dirs.reverse();
        for d in dirs {
            // An empty group's directory holds only kernel files: rmdir.
            if let Err(e) = std::fs::remove_dir(&d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(io(&d, e));
                }
            }
        }
        Ok(())
    }

    fn settle(
        &self,
        what: &'static str,
        limit: Duration,
        done: impl Fn() -> bool,
    ) -> Result<(), ContainError> {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > limit {
                let pids = self.pids();
                return Err(ContainError::Stuck {
                    path: self.path.display().to_string(),
                    what,
                    left: pids.len(),
                    pids,
                });
            }
            std::thread::sleep(POLL_EVERY);
        }
        Ok(())
    }
}

/// The file the clock agent holds (flock) while it attaches to a process:
/// freezing that process then would leave it stopped with the agent's
/// registers in it. Set once the agent runs.
static FREEZE_LOCK: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// Makes every freeze wait for the clock agent's lock on `path`.
pub fn set_freeze_lock(path: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    *FREEZE_LOCK.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

/// Holds the freeze lock (and, across threads, the mutex) until dropped.
struct FreezeGuard(std::sync::MutexGuard<'static, Option<std::fs::File>>);

fn freeze_lock() -> FreezeGuard {
    use std::os::fd::AsRawFd;
    let guard = FREEZE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = guard.as_ref() {
        // SAFETY: flock on an fd the guard keeps open.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    }
    FreezeGuard(guard)
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(f) = self.0.as_ref() {
            // SAFETY: as above.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// Whether `pid`'s group, or one above it, is frozen or freezing: the
/// kernel will not let a ptrace stop through then.
pub fn pid_frozen(pid: u32) -> bool {
    let Ok(groups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    for backend in [Backend::V1Freezer, Backend::V2] {
        let Some(root) = mount_point(backend) else {
            continue;
        };
        let Some(rel) = groups.lines().find_map(|l| group_of(l, backend)) else {
            continue;
        };
        let dir = root.join(rel);
        let frozen = match backend {
            Backend::V1Freezer => {
                let state = read(&dir.join("freezer.state"));
                !state.is_empty() && state.trim() != "THAWED"
            }
            Backend::V2 => dir
                .ancestors()
                .take_while(|d| d.starts_with(&root))
                .any(|d| read(&d.join("cgroup.freeze")).trim() == "1"),
        };
        if frozen {
            return true;
        }
    }
    false
}

fn write(path: &Path, value: &str) -> Result<(), ContainError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| io(path, e))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A key of cgroup2's `cgroup.events`.
fn events(dir: &Path, key: &str) -> Option<u64> {
    read(&dir.join("cgroup.events"))
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// How deep a node's groups go (session/cluster/node/process): a bound on
/// the walk, not a limit anyone meets.
const MAX_DEPTH: usize = 8;

/// `dir` and every group directory below it, parents first.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() && out.len() < 10_000 {
        if out[i].components().count() <= dir.components().count() + MAX_DEPTH {
            if let Ok(entries) = std::fs::read_dir(&out[i]) {
                let kids: Vec<PathBuf> = entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect();
                out.extend(kids);
            }
        }
        i += 1;
    }
    out
}

fn collect_pids(dir: &Path, out: &mut Vec<u32>, depth: usize) {
    out.extend(
        read(&dir.join("cgroup.procs"))
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok()),
    );
    if depth >= MAX_DEPTH {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&e.path(), out, depth + 1);
        }
    }
}

/// Where a hierarchy is mounted.
fn mount_point(backend: Backend) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        let (fstype, _src, opts) = (post.next()?, post.next()?, post.next().unwrap_or(""));
        let point = pre.split(' ').nth(4)?;
        let wanted = match backend {
            Backend::V2 => fstype == "cgroup2",
            Backend::V1Freezer => fstype == "cgroup" && opts.split(',').any(|o| o == "freezer"),
        };
        wanted.then(|| PathBuf::from(point))
    })
}

/// The group a line of /proc/PID/cgroup names in `backend`'s hierarchy,
/// relative to its mount point.
fn group_of(line: &str, backend: Backend) -> Option<String> {
    let mut parts = line.splitn(3, ':');
    let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
    let ours = match backend {
        Backend::V2 => controllers.is_empty(),
        Backend::V1Freezer => controllers.split(',').any(|c| c == "freezer"),
    };
    ours.then(|| path.trim_start_matches('/').to_string())
}

/// Where a hierarchy is mounted, and the group this process is in there.
fn own_group(backend: Backend) -> Option<PathBuf> {
    let mount = mount_point(backend)?;
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = groups.lines().find_map(|l| group_of(l, backend))?;
    Some(mount.join(own))
}

/// The start time of a process, in clock ticks since boot (field 22 of
/// /proc/PID/stat): with the pid, it names one process for good.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_field(pid, 19)
}

/// The children of `parent` (field 4 of /proc/PID/stat), from a scan of
/// /proc.
pub fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 1) == Some(parent as u64))
        .collect()
}

/// Field `k` after the command name of /proc/PID/stat (0: the state).
fn stat_field(pid: u32, k: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(k)?.parse().ok()
}

/// The groups of one faultline process: made at its start, removed at its
/// end or by the reaper or the next session.
#[derive(Debug)]
pub struct Session {
    pub root: Cell,
    clusters: std::sync::atomic::AtomicU32,
}

static SESSION: OnceLock<Result<Session, String>> = OnceLock::new();

impl Session {
    /// Makes this process's session group (once), after removing those of
    /// dead sessions. `Err` says why processes are contained by process
    /// group only.
    pub fn start() -> Result<&'static Session, &'static str> {
        SESSION
            .get_or_init(|| {
                let mut why = Vec::new();
                for backend in [Backend::V1Freezer, Backend::V2] {
                    match Self::make(backend) {
                        Ok(s) => return Ok(s),
                        Err(e) => why.push(format!("{}: {e}", backend.name())),
                    }
                }
                Err(why.join("; "))
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The session, if one was started in this process.
    pub fn current() -> Option<&'static Session> {
        SESSION.get()?.as_ref().ok()
    }

    fn make(backend: Backend) -> Result<Session, String> {
        let own = own_group(backend).ok_or("not mounted")?;
        let base = own.join("faultline");
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        sweep_stale(&base, backend);
        let me = std::process::id();
        let name = format!("{me}-{}", start_ticks(me).unwrap_or(0));
        let root = Cell {
            path: base.clone(),
            backend,
        }
        .child(&name)
        .map_err(|e| e.to_string())?;
        // Prove it works before trusting it: this thread's own write is
        // what every node's pre-exec step does.
        if let Err(e) = std::fs::metadata(root.path.join("cgroup.procs")) {
            let _ = std::fs::remove_dir(&root.path);
            return Err(format!("{}: {e}", root.path.display()));
        }
        Ok(Session {
            root,
            clusters: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// A fresh group for one cluster's nodes.
    pub fn cluster(&self) -> Result<Cell, ContainError> {
        let n = self
            .clusters
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.root.child(&format!("c{n}"))
    }

    /// Empties and removes every group of this session.
    pub fn end(&self) {
        if let Err(e) = self.root.remove() {
            eprintln!("faultline: warning: removing the node groups: {e}");
        }
    }
}

/// Removes the groups of sessions whose faultline process is gone.
fn sweep_stale(base: &Path, backend: Backend) {
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some((pid, ticks)) = name.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
            continue;
        };
        if start_ticks(pid) == Some(ticks) {
            continue; // alive: another run of faultline
        }
        let cell = Cell {
            path: e.path(),
            backend,
        };
        let left = cell.pids().len();
        match cell.remove() {
            Ok(()) if left > 0 => eprintln!(
                "faultline: ended {left} processes a dead faultline (pid {pid}) left running"
            ),
            Ok(()) => {}
            Err(e) => eprintln!("faultline: warning: a dead run's groups: {e}"),
        }
    }
}

/// How often the reaper looks whether its harness still lives.
const REAPER_POLL: Duration = Duration::from_secs(1);

/// The reaper's whole life: waits until its stdin closes or the harness
/// that owns the session (named by the group's `<pid>-<ticks>`) is gone,
/// however it ended, then empties and removes the session group at
/// `path`. (A child forked but not yet executed holds a copy of the pipe,
/// so the pipe alone could keep the reaper waiting.) Run as
/// `faultline __reaper PATH BACKEND`.
pub fn reap_when_orphaned(path: &Path, backend: Backend) {
    let owner = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('-'))
        .and_then(|(p, t)| Some((p.parse::<u32>().ok()?, t.parse::<u64>().ok()?)));
    let mut pfd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: poll on our own stdin with a bounded timeout.
        let ready = unsafe { libc::poll(&mut pfd, 1, REAPER_POLL.as_millis() as i32) };
        if ready > 0 {
            let mut buf = [0u8; 64];
            // SAFETY: read into a buffer we own.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        } else if ready < 0
            && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            break;
        }
        if let Some((pid, ticks)) = owner {
            if start_ticks(pid) != Some(ticks) {
                break;
            }
        }
    }
    let cell = Cell {
        path: path.to_path_buf(),
        backend,
    };
    let left = cell.pids().len();
    if let Err(e) = cell.remove() {
        eprintln!("faultline reaper: {e}");
    } else if left > 0 {
        eprintln!("faultline reaper: the harness ended; killed {left} processes it left");
    }
}

/// Starts the reaper of the current session: `program args... PATH
/// BACKEND`, in a process group of its own (a terminal's Ctrl-C does not
/// reach it first), holding the read end of a pipe this process never
/// closes until it exits. Returns its pid.
pub fn spawn_reaper(program: &Path, args: &[&str]) -> std::io::Result<u32> {
    let Some(s) = Session::current() else {
        return Err(std::io::Error::other("no session"));
    };
    let child = std::process::Command::new(program)
        .args(args)
        .arg(&s.root.path)
        .arg(s.root.backend.name())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    // The write end lives as long as this process: leaked on purpose.
    std::mem::forget(child);
    Ok(pid)
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cgroup-v1-freezer" => Ok(Backend::V1Freezer),
            "cgroup2" => Ok(Backend::V2),
            _ => Err(format!("unknown cgroup backend {s:?}")),
        }
    }
}

/// What a pre-exec step needs to put the new process into `cell`.
pub fn join_before_exec(cmd: &mut tokio::process::Command, cell: &Cell) {
    let file = cell.procs_file();
    // SAFETY: open/write/close are async-signal-safe; the path was made
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of the test's own, or `None` where it cannot be made (not
    /// root, hierarchy not mounted): nothing to test there.
    fn scratch(backend: Backend, name: &str) -> Option<Cell> {
        let cell = Cell::own(backend)?;
        cell.child(&format!("faultline-test-{}-{name}", std::process::id()))
            .ok()
    }

    /// A shell in `cell` that starts a sleeper in a session of its own and
    /// a double-forked one, then sleeps; returns once all three run.
    fn family(cell: &Cell) -> Vec<u32> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args([
            "-c",
            "setsid sleep 60 & (setsid sh -c 'sleep 60 &' &) ; exec sleep 60",
        ]);
        join_before_exec(&mut cmd, cell);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let child = rt.block_on(async { cmd.spawn().unwrap() });
        std::mem::forget(child);
        // Settled once three sleeps are all there is: the shells in between
        // exec or exit on their own time, and a set read while one of them
        // lived was not the set a freeze found a moment later.
        let comm = |p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        for _ in 0..500 {
            let pids = cell.pids();
            if pids.len() == 3 && pids.iter().all(|p| comm(p).trim() == "sleep") {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the family did not start: {:?}", cell.pids());
    }

    fn state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .and_then(|(_, r)| r.chars().next())
            .unwrap_or('?')
    }

    fn freeze_and_kill_reach_every_process(backend: Backend) {
        let Some(cell) = scratch(backend, backend.name()) else {
            eprintln!("skipped: no writable {} hierarchy here", backend.name());
            return;
        };
        let pids = family(&cell);
        let frozen = cell.freeze().unwrap();
        assert_eq!(frozen, pids);
        assert!(cell.is_frozen());
        if backend == Backend::V1Freezer {
            for &p in &pids {
                assert_eq!(state(p), 'D', "pid {p} is frozen");
            }
        }
        cell.thaw().unwrap();
        assert!(!cell.is_frozen());
        // Killed while frozen too: a kill must not wait for a thaw.
        cell.freeze().unwrap();
        let killed = cell.kill().unwrap();
        assert_eq!(killed, pids);
        assert!(cell.pids().is_empty());
        for &p in &pids {
            assert!(matches!(state(p), '?' | 'Z'), "pid {p} is gone");
        }
        cell.remove().unwrap();
        assert!(!cell.path.exists());
    }

    #[test]
    fn the_v1_freezer_freezes_and_kills_a_setsid_child_and_a_daemon() {
        freeze_and_kill_reach_every_process(Backend::V1Freezer);
    }

    #[test]
    fn cgroup2_freezes_and_kills_a_setsid_child_and_a_daemon() {
        freeze_and_kill_reach_every_process(Backend::V2);
    }

    #[test]
    fn a_dead_sessions_groups_are_swept() {
        let Some(own) = Cell::own(Backend::V2).or_else(|| Cell::own(Backend::V1Freezer)) else {
            return;
        };
        let Ok(base) = own.child(&format!("faultline-test-{}-sweep", std::process::id())) else {
            return;
        };
        // pid 1 did not start that late: a dead session's name.
        let stale = base.child("1-999999999999").unwrap().child("c0").unwrap();
        let pids = family(&stale);
        assert_eq!(pids.len(), 3);
        sweep_stale(&base.path, base.backend);
        assert!(!base.path.join("1-999999999999").exists());
        for &p in &pids {
            assert!(matches!(state(p), '?' | 'Z'), "pid {p} is gone");
        }
        base.remove().unwrap();
    }

    #[test]
    fn start_ticks_name_this_process() {
        let me = std::process::id();
        assert!(start_ticks(me).is_some_and(|t| t > 0));
        assert_eq!(start_ticks(me), start_ticks(me));
    }
}
