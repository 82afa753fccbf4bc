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

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

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
const ETCD: &str = include_str!("../etcd.toml");
const NATS: &str = include_str!("../nats.toml");
const POSTGRES: &str = include_str!("../postgres.toml");
const GALERA: &str = include_str!("../galera.toml");

/// A node's scratch directory, beside its data directory: never under the
/// durability layer (so it can hold sockets, which FUSE cannot, and
/// helper scripts a power loss must not take), and emptied with the run.
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".scratch");
    data_dir.with_file_name(name)
}

/// The clients faultline carries for `[client] adapter`.
const BUILTIN_CLIENTS: &[&str] = &["etcd", "nats", "postgres", "mysql"];

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

/// How clients reach a node.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientKind {
    /// The built-in etcd v3 JSON-gateway client, at this address.
    Etcd { address: String, serializable: bool },
    /// The built-in NATS JetStream client, at this address, creating
    /// streams with this many replicas.
    Nats { address: String, replicas: usize },
    /// The built-in SQL client (PostgreSQL, or the MySQL protocol), at this
    /// address and isolation level.
    Sql {
        dialect: crate::sql::Dialect,
        address: String,
        isolation: String,
        /// With `target_session_attrs = "read-write"`: every node's id and
        /// address, this node's first; the client uses the first that
        /// accepts writes. Empty: `address` only.
        candidates: Vec<(String, String)>,
    },
    /// A Maelstrom-protocol adapter: program and arguments.
    Command(Vec<String>),
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
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    pub id: String,
    pub ip: String,
    pub host: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ready_tcp: Option<String>,
    pub ready_http: Option<String>,
    pub client: ClientKind,
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
        };
        sys.check()
            .map_err(|(span, m)| err(span.map(|s| line_of(text, s)), m))?;
        Ok(sys)
    }

    /// Every template names known placeholders and ports, and the
    /// description is complete.
    fn check(&self) -> Result<(), (Option<usize>, String)> {
        let f = &self.file;
        let mut templates: Vec<&Spanned<String>> = vec![&f.binary];
        templates.extend(&f.args);
        templates.extend(f.env.values());
        templates.extend(f.join.iter());
        templates.extend(f.ready.tcp.iter().chain(f.ready.http_get.iter()));
        templates.extend(f.client.address.iter().chain(&f.client.command));
        templates.extend(f.client.isolation.iter());
        for step in f.init.iter().chain(&f.setup) {
            templates.extend(&step.command);
        }
        if let Some(l) = &f.leader {
            templates.extend(l.http_get.iter().chain(&l.command));
        }
        let member_templates: Vec<&Spanned<String>> = f
            .membership
            .iter()
            .flat_map(|m| m.add.iter().chain(&m.remove).chain(&m.list))
            .collect();
        templates.extend(member_templates.iter().copied());
        for p in &f.processes {
            templates.push(&p.binary);
            templates.extend(&p.args);
            templates.extend(p.env.values());
            if let Some(r) = &p.ready {
                templates.extend(r.tcp.iter().chain(r.http_get.iter()));
            }
        }
        self.check_process_names()?;
        self.check_steps_and_vars()?;
        for t in templates {
            for p in placeholders(t.get_ref()) {
                let of_member = member_templates.iter().any(|m| std::ptr::eq(*m, t));
                let known = PLACEHOLDERS.contains(&p)
                    || (of_member && MEMBER_PLACEHOLDERS.contains(&p))
                    || p.strip_prefix("port.")
                        .is_some_and(|n| f.ports.contains_key(n))
                    || p.strip_prefix("var.")
                        .is_some_and(|n| f.vars.contains_key(n));
                if !known {
                    return Err((
                        Some(t.span().start),
                        format!("unknown placeholder {{{p}}} in {:?}", t.get_ref()),
                    ));
                }
                let proxied = f
                    .peer_source
                    .as_ref()
                    .is_some_and(|s| s.get_ref() == "proxy");
                if p == "proxy" && !proxied {
                    return Err((
                        Some(t.span().start),
                        "{proxy} is the one address peers reach a node at with \
                         peer_source = \"proxy\", which this file does not set"
                            .into(),
                    ));
                }
            }
        }
        for p in &f.peer_ports {
            if !f.ports.contains_key(p.get_ref()) {
                return Err((
                    Some(p.span().start),
                    format!("peer port {:?} is not among [ports]", p.get_ref()),
                ));
            }
        }
        if let Some(p) = &f.peer_source {
            if !["node", "proxy"].contains(&p.get_ref().as_str()) {
                return Err((
                    Some(p.span().start),
                    format!(
                        "peer_source {:?} is neither \"node\" nor \"proxy\"",
                        p.get_ref()
                    ),
                ));
            }
        }
        let stops = std::iter::once(&f.stop).chain(f.processes.iter().map(|p| &p.stop));
        if let Some(bad) = stops.into_iter().find(|s| !s.known()) {
            return Err((
                None,
                format!(
                    "[stop] signal {:?}: use TERM, INT, QUIT, HUP or KILL",
                    bad.signal.as_deref().unwrap_or("")
                ),
            ));
        }
        if f.ready.tcp.is_none() && f.ready.http_get.is_none() {
            return Err((None, "[ready] needs tcp or http_get".into()));
        }
        let readies =
            std::iter::once(&f.ready).chain(f.processes.iter().filter_map(|p| p.ready.as_ref()));
        for url in readies.filter_map(|r| r.http_get.as_ref()) {
            if let Err(why) = check_http_url(url.get_ref()) {
                return Err((
                    Some(url.span().start),
                    format!("[ready] http_get {:?}: {why}", url.get_ref()),
                ));
            }
        }
        let builtin = |a: &str| BUILTIN_CLIENTS.contains(&a);
        match (&f.client.adapter, f.client.command.is_empty()) {
            (Some(a), true) if builtin(a) && f.client.address.is_some() => Ok(()),
            (Some(a), true) if builtin(a) => {
                Err((None, format!("[client] adapter = {a:?} needs address")))
            }
            (Some(a), _) if !builtin(a) => Err((
                None,
                format!(
                    "unknown [client] adapter {a:?} (available: {})",
                    BUILTIN_CLIENTS.join(", ")
                ),
            )),
            (None, false) => Ok(()),
            _ => Err((None, "[client] needs adapter or command, not both".into())),
        }
    }

    /// Process names are plain (they appear in file names and in
    /// `kill:process=NAME`) and distinct, and a sidecar's probe is whole.
    fn check_process_names(&self) -> Result<(), (Option<usize>, String)> {
        let f = &self.file;
        let mut seen = vec![f.process_name.get_ref().as_str()];
        let names = std::iter::once(&f.process_name).chain(f.processes.iter().map(|p| &p.name));
        for (i, name) in names.enumerate() {
            let at = (!name.span().is_empty()).then(|| name.span().start);
            let n = name.get_ref();
            let plain = !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !plain {
                return Err((
                    at,
                    format!("process name {n:?} must be letters, digits, - or _"),
                ));
            }
            if i > 0 && seen.contains(&n.as_str()) {
                return Err((at, format!("two processes are named {n:?}")));
            }
            seen.push(n);
        }
        for p in &f.processes {
            if p.ready
                .as_ref()
                .is_some_and(|r| r.tcp.is_none() && r.http_get.is_none())
            {
                return Err((
                    Some(p.name.span().start),
                    format!(
                        "[process.ready] of {:?} needs tcp or http_get",
                        p.name.get_ref()
                    ),
                ));
            }
        }
        let names = self.process_names();
        for e in &f.clock_exempt {
            if !names.contains(e.get_ref()) {
                return Err((
                    Some(e.span().start),
                    format!(
                        "clock_exempt names {:?}, which is not a process (processes: {})",
                        e.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Processes whose clock clock faults leave alone (`clock_exempt`).
    pub fn clock_exempt(&self) -> Vec<String> {
        self.file
            .clock_exempt
            .iter()
            .map(|n| n.get_ref().clone())
            .collect()
    }

    /// Steps have a command; variables are plain names with plain values.
    fn check_steps_and_vars(&self) -> Result<(), (Option<usize>, String)> {
        let f = &self.file;
        if let Some(l) = &f.leader {
            if l.http_get.is_some() != l.command.is_empty() {
                return Err((None, "[leader] needs http_get or command, not both".into()));
            }
            if let Some(p) = l.json_pointer.as_deref().filter(|p| !p.starts_with('/')) {
                return Err((
                    None,
                    format!("[leader] json_pointer {p:?} must start with /"),
                ));
            }
        }
        if let Some(t) = &f.client.target_session_attrs {
            let sql = matches!(f.client.adapter.as_deref(), Some("postgres" | "mysql"));
            if !sql || !["any", "read-write"].contains(&t.get_ref().as_str()) {
                return Err((
                    Some(t.span().start),
                    format!(
                        "[client] target_session_attrs {:?}: \"any\" or \"read-write\", for adapter \"postgres\" or \"mysql\"",
                        t.get_ref()
                    ),
                ));
            }
        }
        for (what, steps) in [("init", &f.init), ("setup", &f.setup)] {
            if let Some(i) = steps.iter().position(|s| s.command.is_empty()) {
                return Err((None, format!("[[{what}]] step {} has no command", i + 1)));
            }
        }
        for (name, v) in &f.vars {
            if value_text(v.get_ref()).is_none() {
                return Err((
                    Some(v.span().start),
                    format!("variable {name:?} must be a string, number or boolean"),
                ));
            }
        }
        Ok(())
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

    /// Every node of an `n`-node cluster, planned; `data_dir(id)` is where
    /// each keeps its data.
    pub fn plan(
        &self,
        n: usize,
        slot: u8,
        data_dir: impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> Result<Vec<NodePlan>, SystemError> {
        if !(1..=MAX_NODES).contains(&n) {
            return Err(SystemError {
                source_name: self.source.clone(),
                line: None,
                message: format!("{n} nodes: a system runs 1 to {MAX_NODES}"),
            });
        }
        let first: Vec<usize> = (1..=run.members.unwrap_or(n).min(n)).collect();
        let join = self.join_of(&first, n, slot, &data_dir, run);
        let mut plans: Vec<NodePlan> = (1..=n)
            .map(|k| self.plan_node(self.node_vars(k, n, slot, &data_dir, run), &join, "new"))
            .collect::<Result<_, _>>()?;
        if self.follows_primary()? {
            let all: Vec<(String, String)> = plans
                .iter()
                .filter_map(|p| match &p.client {
                    ClientKind::Sql { address, .. } => Some((p.id.clone(), address.clone())),
                    _ => None,
                })
                .collect();
            for (k, p) in plans.iter_mut().enumerate() {
                if let ClientKind::Sql { candidates, .. } = &mut p.client {
                    *candidates = all[k..].iter().chain(&all[..k]).cloned().collect();
                }
            }
        }
        Ok(plans)
    }

    /// Whether the SQL client looks for the server that accepts writes
    /// (`target_session_attrs = "read-write"`).
    fn follows_primary(&self) -> Result<bool, SystemError> {
        let Some(t) = &self.file.client.target_session_attrs else {
            return Ok(false);
        };
        match t.get_ref().as_str() {
            "any" => Ok(false),
            "read-write" => Ok(true),
            other => Err(SystemError {
                source_name: self.source.clone(),
                line: Some(line_of(&self.text, t.span().start)),
                message: format!(
                    "[client] target_session_attrs {other:?} is neither \"any\" nor \"read-write\""
                ),
            }),
        }
    }

    /// Node `k` planned to join the cluster of `members` (1-based; the
    /// membership nemesis adds it): `{join}` names them and it, and
    /// `{cluster_state}` is `existing`.
    pub fn plan_joiner(
        &self,
        k: usize,
        members: &[usize],
        n: usize,
        slot: u8,
        data_dir: impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> Result<NodePlan, SystemError> {
        let mut with: Vec<usize> = members.iter().copied().chain([k]).collect();
        with.sort_unstable();
        with.dedup();
        let join = self.join_of(&with, n, slot, &data_dir, run);
        self.plan_node(
            self.node_vars(k, n, slot, &data_dir, run),
            &join,
            "existing",
        )
    }

    /// The `[membership]` commands for changing node `member` through node
    /// `via` (both 1-based); `None` when the file has no such section.
    pub fn member_commands(
        &self,
        via: usize,
        member: usize,
        n: usize,
        slot: u8,
        data_dir: impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> Option<MemberCommands> {
        let m = self.file.membership.as_ref()?;
        let mut v = self.node_vars(via, n, slot, &data_dir, run);
        let of = self.node_vars(member, n, slot, &data_dir, run);
        for k in ["node_id", "host", "ip"] {
            v.insert(format!("member.{k}"), of[k].clone());
        }
        let fill_all = |c: &[Spanned<String>]| c.iter().map(|t| fill(t.get_ref(), &v)).collect();
        Some(MemberCommands {
            add: fill_all(&m.add),
            remove: fill_all(&m.remove),
            list: fill_all(&m.list),
            start_after_add: m.start_after_add,
            timeout_ms: m.timeout_ms,
        })
    }

    /// Whether a new node starts only once it was added (etcd).
    pub fn starts_after_add(&self) -> bool {
        self.file
            .membership
            .as_ref()
            .is_some_and(|m| m.start_after_add)
    }

    /// Whether the file says how to change membership.
    pub fn changes_membership(&self) -> bool {
        self.file.membership.is_some()
    }

    /// The `join` template filled for each of `ks`, joined.
    fn join_of(
        &self,
        ks: &[usize],
        n: usize,
        slot: u8,
        data_dir: &impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> String {
        let Some(t) = &self.file.join else {
            return String::new();
        };
        let filled: Vec<String> = ks
            .iter()
            .map(|&k| fill(t.get_ref(), &self.node_vars(k, n, slot, data_dir, run)))
            .collect();
        filled.join(&self.file.join_separator)
    }

    /// Every placeholder's value for node `k` of `n`.
    fn node_vars(
        &self,
        k: usize,
        n: usize,
        slot: u8,
        data_dir: &impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> BTreeMap<String, String> {
        let nodes: Vec<String> = (1..=n)
            .map(|k| format!("n{k}={}", System::node_ip(slot, k)))
            .collect();
        let nodes = nodes.join(",");
        {
            let id = format!("n{k}");
            let mut v = BTreeMap::new();
            v.insert("nodes".into(), nodes.clone());
            v.insert("data_dir".into(), data_dir(&id).display().to_string());
            v.insert(
                "scratch_dir".into(),
                scratch_dir(&data_dir(&id)).display().to_string(),
            );
            v.insert("ip".into(), System::node_ip(slot, k));
            v.insert("host".into(), format!("fl-{id}"));
            v.insert("proxy".into(), System::proxy_ip(slot, k, k));
            v.insert("node_count".into(), n.to_string());
            v.insert("system_dir".into(), self.dir.display().to_string());
            v.insert("node_id".into(), id);
            v.insert("timeout_ms".into(), run.timeout_ms.to_string());
            for (name, port) in &self.file.ports {
                v.insert(format!("port.{name}"), port.to_string());
            }
            for (name, value) in self.vars().into_iter().chain(run.vars.clone()) {
                v.insert(format!("var.{name}"), value);
            }
            v
        }
    }

    fn plan_node(
        &self,
        mut v: BTreeMap<String, String>,
        join: &str,
        cluster_state: &str,
    ) -> Result<NodePlan, SystemError> {
        v.insert("join".into(), join.to_string());
        v.insert("cluster_state".into(), cluster_state.to_string());
        let f = &self.file;
        let program = self.resolve(&f.binary, &v)?;
        let sidecars = f
            .processes
            .iter()
            .map(|p| self.plan_process(p, &v))
            .collect::<Result<_, _>>()?;
        let address = fill(
            f.client
                .address
                .as_ref()
                .map(|a| a.get_ref().as_str())
                .unwrap_or(""),
            &v,
        );
        let client = match f.client.adapter.as_deref() {
            Some("nats") => ClientKind::Nats {
                address,
                replicas: v["node_count"].parse().unwrap_or(1),
            },
            Some(a @ ("postgres" | "mysql")) => {
                let isolation = f
                    .client
                    .isolation
                    .as_ref()
                    .map_or("serializable".into(), |i| fill(i.get_ref(), &v));
                if crate::sql::isolation_sql(&isolation).is_none() {
                    let line = f.client.isolation.as_ref();
                    return Err(SystemError {
                        source_name: self.source.clone(),
                        line: line.map(|i| line_of(&self.text, i.span().start)),
                        message: format!(
                            "[client] isolation {isolation:?} is none of serializable, \
                             repeatable-read, read-committed, read-uncommitted"
                        ),
                    });
                }
                ClientKind::Sql {
                    dialect: if a == "mysql" {
                        crate::sql::Dialect::Mysql
                    } else {
                        crate::sql::Dialect::Postgres
                    },
                    address,
                    isolation,
                    candidates: Vec::new(),
                }
            }
            Some(_) => ClientKind::Etcd {
                address,
                serializable: f.client.serializable_reads,
            },
            None => ClientKind::Command(
                f.client
                    .command
                    .iter()
                    .map(|c| fill(c.get_ref(), &v))
                    .collect(),
            ),
        };
        Ok(NodePlan {
            program,
            args: f.args.iter().map(|a| fill(a.get_ref(), &v)).collect(),
            env: f
                .env
                .iter()
                .map(|(k, t)| (k.clone(), fill(t.get_ref(), &v)))
                .collect(),
            ready_tcp: f.ready.tcp.as_ref().map(|t| fill(t.get_ref(), &v)),
            ready_http: f.ready.http_get.as_ref().map(|t| fill(t.get_ref(), &v)),
            client,
            ip: v["ip"].clone(),
            host: v["host"].clone(),
            id: v["node_id"].clone(),
            process_name: f.process_name.get_ref().clone(),
            sidecars,
            init: steps(&f.init, &v),
            setup: steps(&f.setup, &v),
            leader: f.leader.as_ref().map(|l| crate::leader::LeaderProbe {
                http_get: l.http_get.as_ref().map(|u| fill(u.get_ref(), &v)),
                json_pointer: l.json_pointer.clone(),
                command: l.command.iter().map(|c| fill(c.get_ref(), &v)).collect(),
                every: std::time::Duration::from_millis(l.every_ms.max(50)),
            }),
        })
    }

    /// A binary template filled in and looked up as exec would.
    fn resolve(
        &self,
        binary: &Spanned<String>,
        v: &BTreeMap<String, String>,
    ) -> Result<PathBuf, SystemError> {
        let program = fill(binary.get_ref(), v);
        // A user that does not exist is refused when the file is checked
        // (`check_binary`) and when nodes are laid out (`run_as`).
        if let Some(who) = self.identity().ok().flatten() {
            return who.resolve(&program).map_err(|why| SystemError {
                source_name: self.source.clone(),
                line: Some(line_of(&self.text, binary.span().start)),
                message: format!("binary {program:?} cannot run as user {}: {why}", who.name),
            });
        }
        faultline_process::clock::which(&program)
            .ok_or_else(|| self.missing(&program, binary.span().start))
    }

    fn plan_process(
        &self,
        p: &ProcessFile,
        v: &BTreeMap<String, String>,
    ) -> Result<ProcessPlan, SystemError> {
        let (stop_signal, stop_grace_ms) = p.stop.resolve();
        let ready = p.ready.as_ref();
        let probe = |t: Option<&Spanned<String>>| t.map(|t| fill(t.get_ref(), v));
        Ok(ProcessPlan {
            name: p.name.get_ref().clone(),
            program: self.resolve(&p.binary, v)?,
            args: p.args.iter().map(|a| fill(a.get_ref(), v)).collect(),
            env: p
                .env
                .iter()
                .map(|(k, t)| (k.clone(), fill(t.get_ref(), v)))
                .collect(),
            ready_tcp: probe(ready.and_then(|r| r.tcp.as_ref())),
            ready_http: probe(ready.and_then(|r| r.http_get.as_ref())),
            ready_timeout_ms: ready.map_or(ready_timeout(), |r| r.timeout_ms),
            stop_signal,
            stop_grace_ms,
        })
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

/// Steps with every placeholder filled in.
fn steps(list: &[StepFile], v: &BTreeMap<String, String>) -> Vec<StepPlan> {
    list.iter()
        .map(|s| StepPlan {
            command: s.command.iter().map(|c| fill(c.get_ref(), v)).collect(),
            timeout_ms: s.timeout_ms,
        })
        .collect()
}

/// A variable's value as placeholders spell it.
fn value_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
            Some(v.to_string())
        }
        _ => None,
    }
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The `{name}` placeholders in a template.
fn placeholders(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

/// A template with every placeholder replaced (all were checked to exist).
fn fill(t: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = t.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A readiness URL as the probe reads it: `http://HOST:PORT[/PATH]`
/// (placeholders stand for the host and port until a node is planned).
fn check_http_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("must start with http:// (https is not probed)".into());
    };
    let authority = rest.split('/').next().unwrap_or("");
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.is_empty() => Ok(()),
        _ => Err("must name host:port after http://".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_etcd_plans_a_joined_cluster() {
        let sys = System::load("etcd").unwrap();
        assert_eq!(sys.peer_ports(), vec![2380]);
        if faultline_process::clock::which("etcd").is_none() {
            return; // planning resolves the binary
        }
        let plan = sys
            .plan(
                3,
                1,
                |id| PathBuf::from(format!("/tmp/d/{id}")),
                &RunSettings::default(),
            )
            .unwrap();
        assert_eq!(plan[1].ip, "127.0.1.2");
        let args = plan[1].args.join(" ");
        assert!(
            args.contains(
                "--initial-cluster n1=http://fl-n1:2380,n2=http://fl-n2:2380,n3=http://fl-n3:2380"
            ),
            "{args}"
        );
        assert!(args.contains("--data-dir /tmp/d/n2"), "{args}");
        assert_eq!(
            plan[1].client,
            ClientKind::Etcd {
                address: "127.0.1.2:2379".into(),
                serializable: false
            }
        );
    }

    #[test]
    fn the_bundled_etcd_plans_members_and_joiners_and_its_membership_commands() {
        let sys = System::load("etcd").unwrap();
        assert!(sys.changes_membership());
        if faultline_process::clock::which("etcd").is_none() {
            return; // planning resolves the binary
        }
        let dir = |id: &str| PathBuf::from(format!("/tmp/d/{id}"));
        let run = RunSettings {
            members: Some(3),
            ..RunSettings::default()
        };
        let plan = sys.plan(6, 1, dir, &run).unwrap();
        let args = plan[4].args.join(" ");
        assert!(
            args.contains("--initial-cluster n1=http://fl-n1:2380,n2=http://fl-n2:2380,n3=http://fl-n3:2380 --initial-cluster-state new"),
            "{args}"
        );
        let joiner = sys.plan_joiner(5, &[1, 3, 4], 6, 1, dir, &run).unwrap();
        let args = joiner.args.join(" ");
        assert!(
            args.contains("--initial-cluster n1=http://fl-n1:2380,n3=http://fl-n3:2380,n4=http://fl-n4:2380,n5=http://fl-n5:2380 --initial-cluster-state existing"),
            "{args}"
        );
        let c = sys.member_commands(2, 5, 6, 1, dir, &run).unwrap();
        assert!(c.start_after_add);
        assert_eq!(
            c.add.join(" "),
            "etcdctl --endpoints=http://127.0.1.2:2379 --command-timeout=5s member add n5 --peer-urls=http://fl-n5:2380"
        );
        assert!(
            c.remove[2].contains("grep -F ' http://fl-n5:2380,'"),
            "{:?}",
            c.remove
        );
    }

    #[test]
    fn member_placeholders_belong_to_the_membership_commands() {
        let base = r#"name = "x"
binary = "sh"
ports = { p = 1 }
ready = { tcp = "{ip}:{port.p}" }
client = { command = ["true"] }
"#;
        let bad = format!("{base}args = [\"{{member.node_id}}\"]\n");
        let e = System::parse("t.toml", &bad).unwrap_err();
        assert!(
            e.message.contains("unknown placeholder {member.node_id}"),
            "{e}"
        );
        let ok = format!("{base}[membership]\nadd = [\"a\", \"{{member.host}}\"]\nremove = [\"r\"]\nlist = [\"l\"]\n");
        let sys = System::parse("t.toml", &ok).unwrap();
        assert!(sys
            .membership_missing()
            .is_some_and(|m| m.contains("a, which")));
        let typo = format!("{base}[membership]\nadd = [\"a\", \"{{member.name}}\"]\nremove = [\"r\"]\nlist = [\"l\"]\n");
        assert!(System::parse("t.toml", &typo).is_err());
        let none = System::parse("t.toml", base).unwrap();
        assert!(none
            .membership_missing()
            .is_some_and(|m| m.contains("no [membership]")));
    }

    #[test]
    fn the_bundled_galera_plans_sql_clients_and_proxy_sources() {
        let sys = System::load("galera").unwrap();
        assert_eq!(sys.peer_ports(), vec![4567, 4444, 4568]);
        assert_eq!(sys.peer_source(), faultline_net::tcp::PeerSource::Proxy);
        let plan = sys
            .plan(
                3,
                1,
                |id| PathBuf::from(format!("/tmp/d/{id}")),
                &RunSettings::default(),
            )
            .unwrap();
        let args = plan[1].args.join(" ");
        assert!(
            args.contains(
                "--wsrep-cluster-address=gcomm://127.101.1.1:4567,127.102.2.1:4567,127.103.3.1:4567"
            ),
            "{args}"
        );
        assert!(
            args.contains("--socket=/tmp/d/n2.scratch/mysqld.sock"),
            "{args}"
        );
        assert_eq!(
            plan[1].client,
            ClientKind::Sql {
                dialect: crate::sql::Dialect::Mysql,
                address: "127.0.1.2:3306".into(),
                isolation: "repeatable-read".into(),
                candidates: Vec::new(),
            }
        );
        let mut run = RunSettings::default();
        run.vars.insert("isolation".into(), "snapshot".into());
        let e = sys
            .plan(3, 1, |id| PathBuf::from(format!("/tmp/d/{id}")), &run)
            .unwrap_err();
        assert!(
            e.message.contains("isolation \"snapshot\" is none of"),
            "{e}"
        );
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn what_a_system_requires_is_checked_with_its_binary() {
        let base = "name = \"x\"\nbinary = \"true\"\ninstall = \"apt-get install x\"\nrequires = [\"sh\", \"/nonexistent/plugin.so\"]\n[ports]\np = 1\n[ready]\ntcp = \"{ip}:{port.p}\"\n[client]\ncommand = [\"a\"]\n";
        let sys = System::parse("f.toml", base).unwrap();
        let e = sys.check_binary().unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(
            e.message.contains(
                "\"/nonexistent/plugin.so\" does not exist; install it: apt-get install x"
            ),
            "{e}"
        );
        let ok =
            System::parse("f.toml", &base.replace(", \"/nonexistent/plugin.so\"", "")).unwrap();
        assert!(ok.check_binary().is_ok());
    }

    #[test]
    fn bad_files_name_the_line() {
        let base = "name = \"x\"\nbinary = \"true\"\n[ports]\npeer = 1\n[ready]\ntcp = \"{ip}:{port.peer}\"\n[client]\ncommand = [\"a\"]\n";
        assert!(System::parse("f.toml", base).is_ok());
        let e = System::parse(
            "f.toml",
            &base.replace("name = \"x\"\n", "name = \"x\"\nargz = []\n"),
        )
        .unwrap_err();
        assert_eq!((e.line, e.source_name.as_str()), (Some(2), "f.toml"));
        assert!(e.message.contains("argz"), "{e}");
        let e = System::parse("f.toml", &base.replace("{port.peer}", "{port.peeer}")).unwrap_err();
        assert_eq!(e.line, Some(6));
        assert!(
            e.to_string().contains("unknown placeholder {port.peeer}"),
            "{e}"
        );
        let e = System::parse(
            "f.toml",
            &base.replace("command = [\"a\"]", "command = [\"a\", \"{nodeid}\"]"),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        let e = System::parse(
            "f.toml",
            &base.replace("[ports]", "peer_source = \"peer\"\n[ports]"),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("neither \"node\" nor \"proxy\""), "{e}");
        let e = System::parse("f.toml", &base.replace("{ip}:", "{proxy}:")).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("peer_source = \"proxy\""), "{e}");
    }

    #[test]
    fn a_leader_probe_is_one_way_of_asking_with_its_placeholders_filled() {
        let base = "name = \"x\"\nbinary = \"true\"\n[ports]\nhttp = 8222\n[ready]\ntcp = \"{ip}:{port.http}\"\n[client]\ncommand = [\"a\"]\n";
        let probe = "[leader]\nhttp_get = \"http://{ip}:{port.http}/jsz\"\njson_pointer = \"/meta_cluster/leader\"\n";
        let sys = System::parse("f.toml", &format!("{base}{probe}")).unwrap();
        let plan = sys
            .plan(
                2,
                4,
                |id| PathBuf::from(format!("/tmp/d/{id}")),
                &RunSettings::default(),
            )
            .unwrap();
        let p = plan[1].leader.as_ref().unwrap();
        assert_eq!(p.http_get.as_deref(), Some("http://127.0.4.2:8222/jsz"));
        assert_eq!(p.every, std::time::Duration::from_millis(500));
        let both = format!("{base}{probe}command = [\"echo\", \"n1\"]\n");
        let e = System::parse("f.toml", &both).unwrap_err();
        assert!(e.message.contains("http_get or command"), "{e}");
        let e = System::parse("f.toml", &format!("{base}[leader]\n")).unwrap_err();
        assert!(e.message.contains("http_get or command"), "{e}");
        let e = System::parse(
            "f.toml",
            &format!("{base}{}", probe.replace("\"/meta", "\"meta")),
        )
        .unwrap_err();
        assert!(e.message.contains("must start with /"), "{e}");
    }

    #[test]
    fn sidecars_are_planned_beside_the_server_and_checked_like_it() {
        let base = "name = \"x\"\nbinary = \"true\"\n[ports]\npeer = 1\n[ready]\ntcp = \"{ip}:{port.peer}\"\n[client]\ncommand = [\"a\"]\n";
        let side = "[[process]]\nname = \"monitor\"\nbinary = \"true\"\nargs = [\"--node\", \"{node_id}\", \"{ip}:{port.peer}\"]\n[process.ready]\ntcp = \"{ip}:{port.peer}\"\n[process.stop]\nsignal = \"INT\"\ngrace_ms = 100\n";
        let sys = System::parse("f.toml", &format!("{base}{side}")).unwrap();
        assert_eq!(sys.process_names(), ["server", "monitor"]);
        let plan = sys
            .plan(
                2,
                3,
                |id| PathBuf::from(format!("/tmp/d/{id}")),
                &RunSettings::default(),
            )
            .unwrap();
        let m = &plan[1].sidecars[0];
        assert_eq!(
            (plan[1].process_name.as_str(), m.name.as_str()),
            ("server", "monitor")
        );
        assert_eq!(m.args, ["--node", "n2", "127.0.3.2:1"]);
        assert_eq!(m.ready_tcp.as_deref(), Some("127.0.3.2:1"));
        assert_eq!(
            (m.stop_signal, m.stop_grace_ms),
            (nix::sys::signal::Signal::SIGINT, 100)
        );
        let named = format!("process_name = \"db\"\n{base}{side}");
        let sys = System::parse("f.toml", &named).unwrap();
        assert_eq!(sys.process_names(), ["db", "monitor"]);
        // A process kept on true time must be one of them.
        let exempt = format!("clock_exempt = [\"monitor\"]\n{base}{side}");
        let sys = System::parse("f.toml", &exempt).unwrap();
        assert_eq!(sys.clock_exempt(), ["monitor"]);
        let e =
            System::parse("f.toml", &exempt.replace("[\"monitor\"]", "[\"monitr\"]")).unwrap_err();
        assert!(e.message.contains("clock_exempt names \"monitr\", which is not a process (processes: server, monitor)"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        let bad = |text: String, want: &str, line: Option<usize>| {
            let e = System::parse("f.toml", &text).unwrap_err();
            assert!(e.message.contains(want), "{e}");
            assert_eq!(e.line, line, "{e}");
        };
        bad(
            format!("{base}{}", side.replace("\"monitor\"", "\"server\"")),
            "two processes are named \"server\"",
            Some(10),
        );
        bad(
            format!("{base}{}", side.replace("\"monitor\"", "\"mon itor\"")),
            "letters, digits",
            Some(10),
        );
        bad(
            format!("{base}{}", side.replace("{node_id}", "{nodeid}")),
            "unknown placeholder {nodeid}",
            Some(12),
        );
        bad(
            format!("{base}{}", side.replace("INT", "USR1")),
            "signal \"USR1\"",
            None,
        );
        let missing = format!(
            "{base}{}",
            side.replace("binary = \"true\"", "binary = \"no-such-monitor\"")
        );
        let e = System::parse("f.toml", &missing)
            .unwrap()
            .check_binary()
            .unwrap_err();
        assert!(e.message.contains("no-such-monitor"), "{e}");
        assert_eq!(e.line, Some(11), "{e}");
    }
}
