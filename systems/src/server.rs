//! Real servers as cluster nodes: each runs in its own mount namespace,
//! where a private /etc/hosts resolves every peer's name (`fl-nJ`) to the
//! proxy of the link between them, so peers keep one set of URLs while
//! faultline tells each directed link apart. No root needed: unprivileged
//! users get a user namespace too. A node is up when its readiness probe
//! answers; it stops with its system's signal, and is SIGKILLed after its
//! grace period. A node may run sidecars beside its server (a failover
//! monitor): each its own process group in the same namespace setup, with
//! its own log, probe and stop, started once the server is ready.

use anyhow::{bail, Context};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Endpoint;
use crate::system::{ProcessPlan, RunAs, RunSettings, StepPlan, System};
use faultline_process::node::{NodeHandle, NodeSpec};
use faultline_rundir::RunDir;

/// How often a readiness probe is tried.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How a server node shows it is up.
#[derive(Debug, Clone)]
pub struct Readiness {
    tcp: Option<String>,
    http: Option<String>,
}

/// What a cluster of servers needs besides its node specs.
#[derive(Debug, Clone)]
pub struct ServerMode {
    pub ready: Vec<Readiness>,
    pub ready_timeout: Duration,
    pub stop_signal: nix::sys::signal::Signal,
    pub stop_grace: Duration,
    pub clients: Vec<std::sync::Arc<dyn Endpoint>>,
    pub peer_ports: Vec<u16>,
    pub peer_source: faultline_net::tcp::PeerSource,
    /// The run's address slot (see `System::node_ip`).
    pub slot: u8,
    /// What faults call each node's server (`kill:process=server`).
    pub process_name: String,
    /// Each node's sidecars, in start order.
    pub sidecars: Vec<Vec<Sidecar>>,
    /// Each node's steps before its first start, run in its namespace.
    pub init: Vec<Vec<Step>>,
    /// The steps run once every node is ready.
    pub setup: Vec<Step>,
    /// Where its data is: the files disk faults choose among.
    pub data_files: Vec<String>,
    /// Processes whose clocks clock faults leave alone.
    pub clock_exempt: Vec<String>,
    /// How to ask each node who leads (none: the nodes' traces say, or
    /// nothing does).
    pub leader: Option<Vec<crate::leader::LeaderProbe>>,
    /// Each node's address, for mapping a leader's name to it.
    pub ips: Vec<String>,
    /// The uid and gid its nodes run as, when not faultline's own.
    pub run_as: Option<RunAs>,
    /// How membership changes, when the system file says
    /// (`[membership]`).
    pub membership: Option<crate::members::ServerMembers>,
}

/// Hands `path` to the system's user, when it runs as one.
pub fn give(path: &Path, run_as: Option<RunAs>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("giving {} to uid {uid}", path.display()))?;
    }
    Ok(())
}

/// A setup step ready to run: program, arguments, bound and log.
#[derive(Debug, Clone)]
pub struct Step {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
    /// As the system file wrote it, for messages.
    pub command: Vec<String>,
    pub timeout: Duration,
    pub log: std::path::PathBuf,
}

/// How much of a failed step's output an error shows.
const STEP_TAIL_LINES: usize = 20;

/// A process a node runs beside its server.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub spec: NodeSpec,
    /// `None`: up once started.
    pub ready: Option<Readiness>,
    pub ready_timeout: Duration,
    pub stop_signal: nix::sys::signal::Signal,
    pub stop_grace: Duration,
}

/// node i's /etc/hosts: itself at its own address, every peer at the proxy
/// of link i -> j.
fn hosts_file(slot: u8, i: usize, n: usize) -> String {
    let mut h = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for j in 1..=n {
        let ip = if j == i {
            System::node_ip(slot, j)
        } else {
            System::proxy_ip(slot, i, j)
        };
        h += &format!("{ip} fl-n{j}\n");
    }
    h
}

/// The command that runs `program` with its own /etc/hosts: `unshare`
/// makes a private mount namespace (and, for a non-root user, a user
/// namespace), and a shell bind-mounts the file and execs it in place.
/// Node `i`'s spec to join `members` (both 0-based; the membership
/// nemesis adds it): `old` with the program and arguments of a joiner.
pub fn joiner_spec(
    mode: &ServerMode,
    i: usize,
    members: &[usize],
    old: &NodeSpec,
) -> anyhow::Result<NodeSpec> {
    let Some(m) = &mode.membership else {
        bail!("the system file has no [membership] section");
    };
    let (plan, hosts) = m.joiner_plan(mode.slot, i, members)?;
    let (program, args) = wrapped(&plan.program, &plan.args, &hosts, mode.run_as);
    // What the run added to the environment stays.
    let mut env = user_env(&plan.env, mode.run_as);
    env.extend(
        old.env
            .iter()
            .filter(|(k, _)| !env.iter().any(|(p, _)| p == k))
            .cloned()
            .collect::<Vec<_>>(),
    );
    Ok(NodeSpec {
        program,
        args,
        env,
        ..old.clone()
    })
}

/// A process's environment as the system's user: with a PATH that user
/// can search (`own_user`), unless the system file sets one.
fn user_env(env: &[(String, String)], run_as: Option<RunAs>) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    if let Some((uid, gid)) = run_as {
        if !env.iter().any(|(k, _)| k == "PATH") {
            let who = crate::own_user::Identity::of(uid, gid);
            env.push(("PATH".into(), who.path()));
        }
    }
    env
}

fn wrapped(
    program: &Path,
    plan_args: &[String],
    hosts: &Path,
    run_as: Option<RunAs>,
) -> (std::path::PathBuf, Vec<String>) {
    let ns = if nix::unistd::Uid::effective().is_root() {
        "-m"
    } else {
        "-Urm"
    };
    // The mount needs root in the namespace; the switch to the system's
    // user comes after it, just before the server itself.
    let exec = match run_as {
        Some((uid, gid)) => {
            format!("exec setpriv --reuid={uid} --regid={gid} --init-groups -- \"$@\"")
        }
        None => "exec \"$@\"".to_string(),
    };
    let mut args: Vec<String> = vec![
        ns.into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("mount --bind \"$0\" /etc/hosts && {exec}"),
        hosts.display().to_string(),
        program.display().to_string(),
    ];
    args.extend(plan_args.iter().cloned());
    ("unshare".into(), args)
}

/// Refuses to start on an address that is taken: another program listens
/// there, and our nodes would talk to it instead.
fn check_free(ip: &str, ports: &[(String, u16)]) -> anyhow::Result<()> {
    for (name, port) in ports {
        let at = format!("{ip}:{port}");
        if let Err(e) = std::net::TcpListener::bind(&at) {
            bail!("{at} (port {name}) is not free: {e}; another process listens there");
        }
    }
    Ok(())
}

/// A slot whose every node address has the system's ports free, so runs
/// on one machine (a suite's jobs, a user's other runs) never collide.
fn free_slot(sys: &System, n: usize) -> anyhow::Result<u8> {
    let start = (std::process::id() % 200) as u8;
    for step in 0..=250u8 {
        let slot = 1 + (start.wrapping_add(step) % 250);
        if (1..=n).all(|k| check_free(&System::node_ip(slot, k), &sys.ports()).is_ok()) {
            return Ok(slot);
        }
    }
    bail!(
        "no free loopback slot for {} nodes on the ports of {} ({:?})",
        n,
        sys.name,
        sys.ports()
    )
}

/// Plans a system's nodes: specs (wrapped for their own /etc/hosts), how
/// each shows it is ready, and how clients reach it.
pub fn layout(
    sys: &System,
    n: usize,
    run_dir: &RunDir,
    data_root: &Path,
    run: &RunSettings,
) -> anyhow::Result<(Vec<NodeSpec>, ServerMode)> {
    let slot = free_slot(sys, n)?;
    let plans = sys.plan(n, slot, |id| data_root.join(id), run)?;
    let run_as = sys.run_as()?;
    if run_as.is_some() {
        // The system's user must reach its data directory inside ours.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_root, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("opening {} to the system's user", data_root.display()))?;
    }
    let hosts_dir = data_root.join("hosts");
    std::fs::create_dir_all(&hosts_dir)
        .with_context(|| format!("creating {}", hosts_dir.display()))?;
    let mut specs = Vec::new();
    let mut sidecars = Vec::new();
    let mut init = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        let hosts = hosts_dir.join(&plan.id);
        std::fs::write(&hosts, hosts_file(slot, index + 1, n))
            .with_context(|| format!("writing {}", hosts.display()))?;
        let data_dir = data_root.join(&plan.id);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        // Servers such as etcd refuse a data directory others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", data_dir.display()))?;
        give(&data_dir, run_as)?;
        let scratch = crate::system::scratch_dir(&data_dir);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        give(&scratch, run_as)?;
        let (program, args) = wrapped(&plan.program, &plan.args, &hosts, run_as);
        let spec = NodeSpec {
            setup: None,
            id: plan.id.clone(),
            index,
            program,
            args,
            data_dir,
            log_path: run_dir.node_log(&plan.id),
            env: user_env(&plan.env, run_as),
            routed: false,
            process: None,
            members: None,
            cell: None,
        };
        let init_log = run_dir.process_log(&plan.id, "init");
        init.push(
            plan.init
                .iter()
                .map(|s| step(s, Some((&hosts, run_as)), init_log.clone()))
                .collect::<anyhow::Result<_>>()?,
        );
        sidecars.push(
            plan.sidecars
                .iter()
                .map(|p| sidecar(&spec, p, (&hosts, run_as), run_dir))
                .collect(),
        );
        specs.push(spec);
    }
    let (stop_signal, grace_ms) = sys.stop();
    let mode = ServerMode {
        ready: plans
            .iter()
            .map(|p| Readiness {
                tcp: p.ready_tcp.clone(),
                http: p.ready_http.clone(),
            })
            .collect(),
        ready_timeout: Duration::from_millis(sys.ready_timeout_ms()),
        stop_signal,
        stop_grace: Duration::from_millis(grace_ms),
        process_name: plans
            .first()
            .map(|p| p.process_name.clone())
            .unwrap_or_default(),
        setup: plans
            .first()
            .map(|p| {
                let log = run_dir.nodes_dir().join("setup.log");
                p.setup.iter().map(|s| step(s, None, log.clone())).collect()
            })
            .transpose()?
            .unwrap_or_default(),
        init,
        data_files: sys.data_files(),
        clock_exempt: sys.clock_exempt(),
        leader: plans.iter().map(|p| p.leader.clone()).collect(),
        ips: plans.iter().map(|p| p.ip.clone()).collect(),
        run_as,
        clients: plans.into_iter().map(|p| p.client).collect(),
        peer_ports: sys.peer_ports(),
        peer_source: sys.peer_source(),
        slot,
        sidecars,
        membership: sys
            .changes_membership()
            .then(|| crate::members::ServerMembers {
                system: sys.clone(),
                nodes: n,
                data_root: data_root.to_path_buf(),
                hosts_dir: hosts_dir.clone(),
                run: run.clone(),
                log: run_dir.nodes_dir().join("membership.log"),
            }),
    };
    Ok((specs, mode))
}

/// A step ready to run: in a node's namespace when `hosts` is its hosts
/// file (an init step sees what the node sees), else as a client would.
fn step(
    s: &StepPlan,
    hosts: Option<(&Path, Option<RunAs>)>,
    log: std::path::PathBuf,
) -> anyhow::Result<Step> {
    let Some((first, rest)) = s.command.split_first() else {
        bail!("a setup step has no command");
    };
    let program = faultline_process::clock::which(first)
        .with_context(|| format!("setup step {:?}: {first:?} not found on PATH", s.command))?;
    let (program, args) = match hosts {
        Some((h, run_as)) => wrapped(&program, rest, h, run_as),
        None => (program, rest.to_vec()),
    };
    Ok(Step {
        program,
        args,
        command: s.command.clone(),
        timeout: Duration::from_millis(s.timeout_ms),
        log,
    })
}

/// Runs one step to its end, its output appended to its log, within its
/// bound; an error names the command, how it ended and the tail of what
/// it printed. In `cell` (its node's group) whatever it starts is ended
/// with it: a step that leaves a daemon would hold the server's ports
/// and files.
pub async fn run_step(
    s: &Step,
    env: &[(String, String)],
    cell: Option<&faultline_process::contain::Cell>,
) -> anyhow::Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&s.log)
        .with_context(|| format!("opening {}", s.log.display()))?;
    let mut cmd = tokio::process::Command::new(&s.program);
    cmd.args(&s.args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    faultline_process::node::supervise(&mut cmd);
    if let Some(cell) = cell {
        faultline_process::contain::join_before_exec(&mut cmd, cell);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("setup step {:?} could not start", s.command))?;
    let pid = child.id().map(|p| p as i32);
    if let Some(pid) = pid {
        faultline_process::hygiene::register(pid);
    }
    let ended = tokio::time::timeout(s.timeout, child.wait()).await;
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait().await;
        faultline_process::hygiene::unregister(pid);
    }
    if let Some(cell) = cell.cloned() {
        let killed = tokio::task::spawn_blocking(move || cell.kill()).await?;
        let left = killed.with_context(|| format!("ending what step {:?} left", s.command))?;
        if !left.is_empty() {
            eprintln!(
                "faultline: step {:?} left {} processes running; ended them",
                s.command,
                left.len()
            );
        }
    }
    let how = match ended {
        Ok(Ok(status)) if status.success() => return Ok(()),
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with code {c}"),
            (_, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "failed".to_string(),
        },
        Ok(Err(e)) => format!("could not be waited for: {e}"),
        Err(_) => format!("did not finish within {} ms", s.timeout.as_millis()),
    };
    let tail = faultline_process::node::log_tail(&s.log, STEP_TAIL_LINES);
    bail!(
        "setup step {:?} {how}; the last lines of {}:\n{tail}",
        s.command,
        s.log.display()
    )
}

/// A sidecar of `server`'s node: the same namespace setup and data
/// directory, its own log (`nodes/n1.monitor.log`), probe and stop.
fn sidecar(
    server: &NodeSpec,
    p: &ProcessPlan,
    (hosts, run_as): (&Path, Option<RunAs>),
    run_dir: &RunDir,
) -> Sidecar {
    let (program, args) = wrapped(&p.program, &p.args, hosts, run_as);
    let ready = (p.ready_tcp.is_some() || p.ready_http.is_some()).then(|| Readiness {
        tcp: p.ready_tcp.clone(),
        http: p.ready_http.clone(),
    });
    Sidecar {
        spec: NodeSpec {
            program,
            args,
            env: user_env(&p.env, run_as),
            log_path: run_dir.process_log(&server.id, &p.name),
            process: Some(p.name.clone()),
            members: None,
            ..server.clone()
        },
        ready,
        ready_timeout: Duration::from_millis(p.ready_timeout_ms),
        stop_signal: p.stop_signal,
        stop_grace: Duration::from_millis(p.stop_grace_ms),
    }
}

impl Readiness {
    /// Only that the node listens again (the TCP part of the probe): what a
    /// restart mid-run waits for, since a whole-cluster probe (etcd's
    /// /health wants a leader) may not pass while other faults last.
    pub fn listening(&self) -> Readiness {
        let http_host = self
            .http
            .as_deref()
            .map(|u| crate::http::split_url(u).0.to_string());
        Readiness {
            tcp: self.tcp.clone().or(http_host),
            http: None,
        }
    }
}

/// One probe: a TCP connect, or an HTTP GET that answers 2xx.
/// Whether a node answers its probe: both of them when the file gives
/// both (a port that accepts and a URL that answers 2xx).
async fn probe(r: &Readiness) -> bool {
    if let Some(at) = &r.tcp {
        if TcpStream::connect(at).await.is_err() {
            return false;
        }
    }
    let Some(url) = &r.http else { return true };
    let (host, path) = crate::http::split_url(url);
    let Ok(mut s) = TcpStream::connect(host).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

/// Waits until `node` answers its probe, or fails naming why: it exited,
/// or it did not become ready in time.
pub async fn wait_ready(
    node: &mut NodeHandle,
    r: &Readiness,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if !node.is_running() {
            let status = node
                .exit
                .borrow()
                .as_ref()
                .map(|e| e.status.clone())
                .unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(50)).await;
            bail!(
                "node {} exited ({status}) before it was ready. {}",
                node.spec.label(),
                faultline_process::node::tail_note(node)
            );
        }
        if matches!(
            tokio::time::timeout(PROBE_TIMEOUT, probe(r)).await,
            Ok(true)
        ) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "node {} was not ready within {} ms (probe: {}). {}",
                node.spec.label(),
                timeout.as_millis(),
                r.http.as_deref().or(r.tcp.as_deref()).unwrap_or("none"),
                faultline_process::node::tail_note(node)
            );
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}
