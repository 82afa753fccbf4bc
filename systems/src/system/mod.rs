//! A real server as a system under test, described in a small TOML file
//! (`systems/etcd.toml` is bundled): the binary, each node's arguments and
//! environment with placeholders, its named ports, which of them carry
//! node-to-node traffic (those pass through faultline's proxies), how to
//! tell that a node is ready, how clients talk to it, and how it stops.
//!
//! Placeholders: `{node_id}`, `{data_dir}`, `{ip}` (the node's own
//! loopback address, where it listens), `{host}` (the name its peers dial
//! it by, which each node resolves to the proxy of that link), `{port.NAME}`,
//! `{node_count}`, `{system_dir}` (the folder of the system file),
//! `{nodes}` (every node as `n1=IP,n2=IP,...`: where a client finds the
//! whole cluster, and what each peer's `fl-nK` name stands for outside the
//! nodes' private hosts files), and `{join}`: the `join` template filled in
//! for every node and joined with `join_separator` (etcd's
//! `--initial-cluster`).
//! `{var.NAME}` is a variable of `[vars]` (set with `--var`), and
//! `{timeout_ms}` the run's client timeout. `[[init]]` steps run before a
//! node's first start, `[[setup]]` steps once every node is ready,
//! `[defaults]` default `faultline test` options, `data_files` names
//! where the data is (disk faults choose among those files), and
//! `[leader]` says how to ask a node who leads.
//! `[[process]]` entries add processes each node runs beside its server
//! (a failover monitor): same placeholders, own probe, stop and log, and a
//! name that faults may aim at (`kill:process=monitor`).
//! A file with an unknown key or placeholder is refused, naming the line.
//!
//! By concern: the file's schema and the plans' types are here, with the
//! accessors; `validate` checks a parsed file, `plan` makes it a
//! cluster's plan, `template` fills placeholders.

mod plan;
mod template;
mod validate;

use template::*;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

use crate::client::{ClientSettings, Endpoint};
use crate::registry::Registry;

/// The systems bundled with faultline, by name.
const BUNDLED: &[(&str, &str)] = &[
    ("etcd", ETCD),
    // etcd whose reads are served by any member from its own state: fast,
    // and stale under a partition (what its docs warn of).
    ("etcd-serializable", ETCD),
    // NATS with JetStream, for the kafka workload.
    ("nats", NATS),
    // PostgreSQL, for the transaction workloads.
    ("postgres", POSTGRES),
    // MariaDB with Galera, for the transaction workloads.
    ("galera", GALERA),
];
const ETCD: &str = include_str!("../../etcd.toml");
const NATS: &str = include_str!("../../nats.toml");
const POSTGRES: &str = include_str!("../../postgres.toml");
const GALERA: &str = include_str!("../../galera.toml");

/// A node's scratch directory, beside its data directory: never under the
/// durability layer (so it can hold sockets, which FUSE cannot, and
/// helper scripts a power loss must not take), and emptied with the run.
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".scratch");
    data_dir.with_file_name(name)
}

/// How many nodes a system may have: node k listens on 127.0.S.k and the
/// proxy of link i -> j on 127.(100+i).j.S, S being the run's slot.
pub const MAX_NODES: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    binary: Spanned<String>,
    /// How to install the binary, said when it is missing.
    #[serde(default)]
    install: Option<String>,
    /// Further programs (looked up on PATH) or files (paths) the system
    /// needs, checked with the binary: a server started through a shell
    /// wrapper, its plugins.
    #[serde(default)]
    requires: Vec<Spanned<String>>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    ports: BTreeMap<String, u16>,
    #[serde(default)]
    peer_ports: Vec<Spanned<String>>,
    /// Where a proxied connection arrives from: `node` (the dialer's own
    /// address) or `proxy` (the address the receiver reaches it back on).
    #[serde(default)]
    peer_source: Option<Spanned<String>>,
    #[serde(default)]
    join: Option<Spanned<String>>,
    #[serde(default = "comma")]
    join_separator: String,
    ready: ReadyFile,
    client: ClientFile,
    #[serde(default)]
    stop: StopFile,
    /// What faults call the process above (`kill:process=server`).
    #[serde(default = "server")]
    process_name: Spanned<String>,
    /// More processes each node runs beside it (a failover monitor, a
    /// proxy), each started once the server is ready, in this order.
    #[serde(default, rename = "process")]
    processes: Vec<ProcessFile>,
    /// Processes (by name) whose clock stays true under clock faults (a
    /// monitor that must judge the others by real time).
    #[serde(default)]
    clock_exempt: Vec<Spanned<String>>,
    /// Variables and their defaults (`{var.NAME}`), set with `--var`.
    #[serde(default)]
    vars: BTreeMap<String, Spanned<toml::Value>>,
    /// `faultline test` options this system runs best with; the command
    /// line and suites override them.
    #[serde(default)]
    defaults: BTreeMap<String, Spanned<toml::Value>>,
    /// Steps each node runs before its first start (initdb).
    #[serde(default)]
    init: Vec<StepFile>,
    /// Steps run once every node is ready (create a table, a stream).
    #[serde(default)]
    setup: Vec<StepFile>,
    /// Where the data is, as patterns relative to the data directory
    /// (`**/*.blk`): disk faults choose among these files only.
    #[serde(default)]
    data_files: Vec<Spanned<String>>,
    /// How to ask a node who leads, for a server without trace events.
    #[serde(default)]
    leader: Option<LeaderFile>,
    /// How the cluster's membership changes (the membership nemesis).
    #[serde(default)]
    membership: Option<MembershipFile>,
    /// The user (and group) each node runs as, owning its data directory;
    /// faultline must be root to switch, else nodes run as its own user.
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    group: Option<Spanned<String>>,
}

/// `[membership]`: commands run on faultline's host, with the placeholders
/// of the member asked (`{ip}`, `{port.NAME}`, ...) and of the node
/// changed (`{member.node_id}`, `{member.host}`, `{member.ip}`). Each
/// exits 0 when done; `list` prints one line per member, naming its id or
/// host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipFile {
    add: Vec<Spanned<String>>,
    remove: Vec<Spanned<String>>,
    list: Vec<Spanned<String>>,
    /// The new node starts once it was added (etcd), not before.
    #[serde(default)]
    start_after_add: bool,
    #[serde(default = "step_timeout")]
    timeout_ms: u64,
}

/// One membership change as commands to run, placeholders filled.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberCommands {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub list: Vec<String>,
    pub start_after_add: bool,
    pub timeout_ms: u64,
}

/// Who a node runs as: uid and gid.
pub type RunAs = (u32, u32);

/// `[leader]`: an HTTP GET and where the name is in its JSON answer, or a
/// command that prints it; asked of one node after another.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaderFile {
    #[serde(default)]
    http_get: Option<Spanned<String>>,
    #[serde(default)]
    json_pointer: Option<String>,
    #[serde(default)]
    command: Vec<Spanned<String>>,
    #[serde(default = "leader_every")]
    every_ms: u64,
}

fn leader_every() -> u64 {
    500
}

/// One setup step: a command and how long it may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    command: Vec<Spanned<String>>,
    #[serde(default = "step_timeout")]
    timeout_ms: u64,
}

fn step_timeout() -> u64 {
    60_000
}

fn comma() -> String {
    ",".into()
}

fn server() -> Spanned<String> {
    Spanned::new(0..0, "server".into())
}

/// A sidecar: `[[process]]`. Its templates take the node's placeholders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessFile {
    name: Spanned<String>,
    binary: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    /// Without one, it counts as up once started.
    #[serde(default)]
    ready: Option<ReadyFile>,
    #[serde(default)]
    stop: StopFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyFile {
    /// `IP:PORT` that must accept a TCP connection.
    #[serde(default)]
    tcp: Option<Spanned<String>>,
    /// A URL that must answer 2xx.
    #[serde(default)]
    http_get: Option<Spanned<String>>,
    #[serde(default = "ready_timeout")]
    timeout_ms: u64,
}

fn ready_timeout() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    /// A built-in client: `etcd` or `nats`.
    #[serde(default)]
    adapter: Option<String>,
    /// The address the built-in client talks to, e.g. `{ip}:{port.client}`.
    #[serde(default)]
    address: Option<Spanned<String>>,
    /// Or a program speaking Maelstrom's client protocol on stdio, started
    /// per client with the node's placeholders substituted.
    #[serde(default)]
    command: Vec<Spanned<String>>,
    /// The built-in client reads without a quorum (etcd: `serializable`).
    #[serde(default)]
    serializable_reads: bool,
    /// The built-in SQL client's isolation level (`{var.isolation}`).
    #[serde(default)]
    isolation: Option<Spanned<String>>,
    /// The built-in SQL client's choice of server, as libpq's
    /// `target_session_attrs`: `any` (its node's `address`, the default)
    /// or `read-write` (every node's `address`, its own first, and it
    /// uses whichever accepts writes, again after each failure).
    #[serde(default)]
    target_session_attrs: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopFile {
    /// `TERM` (default), `INT`, `QUIT`, `HUP` or `KILL`, sent at the end
    /// of a run.
    #[serde(default)]
    signal: Option<String>,
    /// How long it may take before it is killed.
    #[serde(default)]
    grace_ms: Option<u64>,
}

/// A process beside a node's server, every placeholder filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessPlan {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ready_tcp: Option<String>,
    pub ready_http: Option<String>,
    pub ready_timeout_ms: u64,
    pub stop_signal: nix::sys::signal::Signal,
    pub stop_grace_ms: u64,
}

/// A setup step with every placeholder filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub command: Vec<String>,
    pub timeout_ms: u64,
}

/// What a run sets beyond the cluster's shape: the system's variables
/// (defaults with `--var` over them) and the client timeout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSettings {
    pub vars: BTreeMap<String, String>,
    pub timeout_ms: u64,
    /// The starting members, when fewer than the nodes laid out (the
    /// membership nemesis adds the others later): `{join}` names these.
    pub members: Option<usize>,
}

/// One node of a system, every placeholder filled in.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub id: String,
    pub ip: String,
    pub host: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ready_tcp: Option<String>,
    pub ready_http: Option<String>,
    /// How clients reach it.
    pub client: Arc<dyn Endpoint>,
    /// The server's name among the node's processes.
    pub process_name: String,
    /// What runs beside the server, in start order.
    pub sidecars: Vec<ProcessPlan>,
    /// Run before the node's first start.
    pub init: Vec<StepPlan>,
    /// Run once every node is ready, with this node's placeholders (the
    /// run uses the first node's).
    pub setup: Vec<StepPlan>,
    /// How to ask this node who leads.
    pub leader: Option<crate::leader::LeaderProbe>,
}

/// A parsed, checked system description.
#[derive(Debug, Clone)]
pub struct System {
    pub name: String,
    /// Where it came from (a path, or `bundled:NAME`).
    pub source: String,
    /// The folder of its file (`{system_dir}`), for scripts beside it.
    pub dir: PathBuf,
    file: File,
    text: String,
    /// The built-in clients `[client] adapter` may name.
    clients: Registry,
}

/// A bad system file, with where.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SystemError {
    pub source_name: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The placeholders a node's strings may use (besides `port.NAME`).
const PLACEHOLDERS: &[&str] = &[
    "node_id",
    "data_dir",
    "scratch_dir",
    "ip",
    "host",
    "proxy",
    "node_count",
    "nodes",
    "join",
    "system_dir",
    "timeout_ms",
    "cluster_state",
];

/// What `[membership]` commands may name of the node they change.
const MEMBER_PLACEHOLDERS: &[&str] = &["member.node_id", "member.host", "member.ip"];

impl System {
    /// A bundled system by name, or a TOML file.
    pub fn load(name_or_path: &str) -> Result<System, SystemError> {
        if let Some((name, text)) = BUNDLED.iter().find(|(n, _)| *n == name_or_path) {
            let mut sys = System::parse(&format!("bundled:{name}"), text)?;
            sys.file.client.serializable_reads |= name.ends_with("-serializable");
            return Ok(sys);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| SystemError {
            source_name: name_or_path.into(),
            line: None,
            message: format!(
                "{e} (not a file, nor a bundled system: {})",
                BUNDLED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        System::parse(name_or_path, &text)
    }

    pub fn parse(source: &str, text: &str) -> Result<System, SystemError> {
        System::parse_with(source, text, Registry::builtin())
    }

    /// A system file whose `[client] adapter` may name any of `clients`.
    pub fn parse_with(source: &str, text: &str, clients: Registry) -> Result<System, SystemError> {
        let err = |line, message| SystemError {
            source_name: source.into(),
            line,
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(line, e.message().trim().to_string())
        })?;
        let dir = Path::new(source)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let sys = System {
            name: file.name.clone(),
            source: source.into(),
            dir,
            file,
            text: text.into(),
            clients,
        };
        sys.check()
            .map_err(|(span, m)| err(span.map(|s| line_of(text, s)), m))?;
        Ok(sys)
    }

    /// Processes whose clock clock faults leave alone (`clock_exempt`).
    pub fn clock_exempt(&self) -> Vec<String> {
        self.file
            .clock_exempt
            .iter()
            .map(|n| n.get_ref().clone())
            .collect()
    }

    /// The uid and gid nodes run as: the file's `user` (and `group`, else
    /// the user's own group) when faultline is root; `None` when it names
    /// none or faultline is not root (nodes then run as faultline's user).
    pub fn run_as(&self) -> Result<Option<RunAs>, SystemError> {
        let Some(user) = &self.file.user else {
            return Ok(None);
        };
        let err = |at: usize, message: String| SystemError {
            source_name: self.source.clone(),
            line: Some(line_of(&self.text, at)),
            message,
        };
        let u = nix::unistd::User::from_name(user.get_ref())
            .ok()
            .flatten()
            .ok_or_else(|| {
                err(
                    user.span().start,
                    format!("no user {:?} on this machine", user.get_ref()),
                )
            })?;
        let gid = match &self.file.group {
            Some(g) => {
                nix::unistd::Group::from_name(g.get_ref())
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        err(
                            g.span().start,
                            format!("no group {:?} on this machine", g.get_ref()),
                        )
                    })?
                    .gid
            }
            None => u.gid,
        };
        if !nix::unistd::Uid::effective().is_root() {
            return Ok(None);
        }
        Ok(Some((u.uid.as_raw(), gid.as_raw())))
    }

    /// Who its processes run as, when that is not faultline's own user.
    pub fn identity(&self) -> Result<Option<crate::own_user::Identity>, SystemError> {
        Ok(self
            .run_as()?
            .map(|(uid, gid)| crate::own_user::Identity::of(uid, gid)))
    }

    /// The variables and their defaults.
    pub fn vars(&self) -> BTreeMap<String, String> {
        self.file
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v.get_ref()).unwrap_or_default()))
            .collect()
    }

    /// The `faultline test` options the file defaults, each with its line.
    pub fn defaults(&self) -> Vec<(String, toml::Value, usize)> {
        self.file
            .defaults
            .iter()
            .map(|(k, v)| {
                let line = line_of(&self.text, v.span().start);
                (k.clone(), v.get_ref().clone(), line)
            })
            .collect()
    }

    /// The patterns naming its data files (empty: every file).
    pub fn data_files(&self) -> Vec<String> {
        self.file
            .data_files
            .iter()
            .map(|p| p.get_ref().clone())
            .collect()
    }

    /// Every process a node runs: the server first, then its sidecars.
    pub fn process_names(&self) -> Vec<String> {
        std::iter::once(&self.file.process_name)
            .chain(self.file.processes.iter().map(|p| &p.name))
            .map(|n| n.get_ref().clone())
            .collect()
    }

    /// Why this system cannot change membership, if it cannot: no
    /// `[membership]` section, or a program its commands run is missing.
    pub fn membership_missing(&self) -> Option<String> {
        let Some(m) = &self.file.membership else {
            return Some(format!("{} has no [membership] section", self.source));
        };
        for cmd in [&m.add, &m.remove, &m.list] {
            let Some(first) = cmd.first().map(|c| c.get_ref()) else {
                return Some("a [membership] command is empty".into());
            };
            if !first.contains('{') && faultline_process::clock::which(first).is_none() {
                return Some(format!(
                    "{first}, which its [membership] commands run, is not installed"
                ));
            }
        }
        None
    }

    /// The server's executable, looked up as exec would.
    pub fn program(&self) -> Option<PathBuf> {
        faultline_process::clock::which(self.file.binary.get_ref())
    }

    /// Refuses a binary that is not there, before anything starts: one
    /// without placeholders is looked up now (one with them when each
    /// node is planned).
    pub fn check_binary(&self) -> Result<(), SystemError> {
        let binaries =
            std::iter::once(&self.file.binary).chain(self.file.processes.iter().map(|p| &p.binary));
        let who = self.identity()?;
        for b in binaries {
            let name = b.get_ref();
            if name.contains('{') {
                continue;
            }
            if faultline_process::clock::which(name).is_none() {
                return Err(self.missing(name, b.span().start));
            }
            if let Some(who) = &who {
                who.resolve(name).map_err(|why| SystemError {
                    source_name: self.source.clone(),
                    line: Some(line_of(&self.text, b.span().start)),
                    message: format!("binary {name:?} cannot run as user {}: {why}", who.name),
                })?;
            }
        }
        for r in &self.file.requires {
            let name = r.get_ref();
            let found = if name.contains('/') {
                Path::new(name).exists()
            } else {
                faultline_process::clock::which(name).is_some()
            };
            if !found {
                return Err(self.missing(name, r.span().start));
            }
        }
        Ok(())
    }

    /// How to install what the system needs, as its file says.
    pub fn install_hint(&self) -> Option<&str> {
        self.file.install.as_deref()
    }

    /// The names of the bundled systems.
    pub fn bundled() -> Vec<&'static str> {
        BUNDLED.iter().map(|(n, _)| *n).collect()
    }

    fn missing(&self, program: &str, at: usize) -> SystemError {
        let hint = match &self.file.install {
            Some(how) => format!("; install it: {how}"),
            None => String::from("; install it, or give binary as a path"),
        };
        SystemError {
            source_name: self.source.clone(),
            line: Some(line_of(&self.text, at)),
            message: if program.contains('/') {
                format!("{program:?} does not exist{hint}")
            } else {
                format!("binary {program:?} not found on PATH{hint}")
            },
        }
    }

    /// Where proxied connections arrive from (checked when parsed).
    pub fn peer_source(&self) -> faultline_net::tcp::PeerSource {
        match self.file.peer_source.as_ref().map(|p| p.get_ref().as_str()) {
            Some("proxy") => faultline_net::tcp::PeerSource::Proxy,
            _ => faultline_net::tcp::PeerSource::Node,
        }
    }

    /// The proxied (node-to-node) ports.
    pub fn peer_ports(&self) -> Vec<u16> {
        self.file
            .peer_ports
            .iter()
            .map(|p| self.file.ports[p.get_ref()])
            .collect()
    }

    /// Every port of a node.
    pub fn ports(&self) -> Vec<(String, u16)> {
        self.file
            .ports
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn ready_timeout_ms(&self) -> u64 {
        self.file.ready.timeout_ms
    }

    /// The stop signal and grace period.
    pub fn stop(&self) -> (nix::sys::signal::Signal, u64) {
        self.file.stop.resolve()
    }

    /// The address node `k` (1-based) of the run in address `slot`
    /// listens on. Runs on one machine take different slots, so they can
    /// use the same ports at once.
    pub fn node_ip(slot: u8, k: usize) -> String {
        format!("127.0.{slot}.{k}")
    }

    /// The address of the proxy carrying link i -> j (1-based); with i = j,
    /// the one address every peer reaches node j at when the system sets
    /// `peer_source = "proxy"`.
    pub fn proxy_ip(slot: u8, i: usize, j: usize) -> String {
        format!("127.{}.{j}.{slot}", 100 + i)
    }
}

impl StopFile {
    /// The signal (TERM unless said) and the grace period (5 s unless said).
    fn resolve(&self) -> (nix::sys::signal::Signal, u64) {
        use nix::sys::signal::Signal;
        let sig = match self.signal.as_deref() {
            Some("INT") => Signal::SIGINT,
            Some("QUIT") => Signal::SIGQUIT,
            Some("HUP") => Signal::SIGHUP,
            Some("KILL") => Signal::SIGKILL,
            _ => Signal::SIGTERM,
        };
        (sig, self.grace_ms.unwrap_or(5_000))
    }

    /// A signal the file may name.
    fn known(&self) -> bool {
        self.signal
            .as_deref()
            .is_none_or(|s| ["TERM", "INT", "QUIT", "HUP", "KILL"].contains(&s))
    }
}

#[cfg(test)]
mod tests;
