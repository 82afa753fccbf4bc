//! The settings of a test, spelled once: `TestOptions` is what a user
//! writes, on the command line (clap) or in a suite entry (serde, from
//! TOML), and `validate` turns it into the run's `TestConfig` (test.json),
//! refusing a bad value with the name of its key. Each default is one
//! constant that both readers use.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use faultline_nemesis::{Named, Spec, Step};
use faultline_rundir::stats::LatencyDist;
use faultline_rundir::{RunDir, TestConfig};

pub use faultline_rundir::config::defaults;

macro_rules! default_fns {
    ($($f:ident: $t:ty = $c:expr),* $(,)?) => { $(fn $f() -> $t { $c.into() })* };
}
default_fns!(
    node_count: usize = defaults::NODE_COUNT,
    workload: String = defaults::WORKLOAD,
    nemesis: String = defaults::NEMESIS,
    nemesis_interval: f64 = defaults::NEMESIS_INTERVAL_S,
    recovery_time: f64 = defaults::RECOVERY_TIME_S,
    liveness_timeout: f64 = defaults::LIVENESS_TIMEOUT_S,
    time_limit: f64 = defaults::TIME_LIMIT_S,
    rate: f64 = defaults::RATE,
    key_count: u64 = defaults::KEY_COUNT,
    latency: f64 = defaults::LATENCY_MS,
    latency_dist: LatencyDist = LatencyDist::Constant,
    timeout_ms: u64 = defaults::TIMEOUT_MS,
    init_timeout_ms: u64 = defaults::INIT_TIMEOUT_MS,
    check_time_limit: f64 = defaults::CHECK_TIME_LIMIT_S,
    journal_limit: u64 = defaults::JOURNAL_LIMIT,
    topology: String = defaults::TOPOLOGY,
    node_names: String = defaults::NODE_NAMES,
    consistency_model: String = defaults::CONSISTENCY_MODEL,
);

/// Every setting of `faultline test`; a suite entry takes the same keys
/// (snake_case: `node_count` for `--node-count`).
#[derive(Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOptions {
    /// The node binary; without it, the bundled target node.
    #[arg(long)]
    #[serde(default)]
    pub bin: Option<PathBuf>,
    /// A real server instead of a stdio node: a bundled system (`etcd`,
    /// `etcd-serializable`) or a system TOML file.
    #[arg(long)]
    #[serde(default)]
    pub system: Option<String>,
    #[arg(long, default_value_t = defaults::NODE_COUNT)]
    #[serde(default = "node_count")]
    pub node_count: usize,
    /// With the membership nemesis: the fewest and most members the
    /// cluster keeps, `MIN..MAX` (default: the node count to two more).
    #[arg(long)]
    #[serde(default)]
    pub cluster_size: Option<String>,
    #[arg(long, default_value = defaults::WORKLOAD)]
    #[serde(default = "workload")]
    pub workload: String,
    /// Comma list of faults (partition, pause, kill, messages, clock,
    /// overload, crash, disk, strand, membership), `all` (every kind but
    /// disk; crash only where FUSE mounts, membership only for the bundled
    /// target node) or `none`. A fault can be narrowed to variants
    /// joined by `+`: `partition:isolate-leader`, `kill:all`,
    /// `clock:strobe+leader`, `messages:corrupt`.
    #[arg(long, default_value = defaults::NEMESIS)]
    #[serde(default = "nemesis")]
    pub nemesis: String,
    /// Seconds each fault lasts (a calm of 0.5-1.5 times as long follows).
    #[arg(long, default_value_t = defaults::NEMESIS_INTERVAL_S)]
    #[serde(default = "nemesis_interval")]
    pub nemesis_interval: f64,
    /// Seconds to wait after healing before the liveness reads.
    #[arg(long, default_value_t = defaults::RECOVERY_TIME_S)]
    #[serde(default = "recovery_time")]
    pub recovery_time: f64,
    /// Seconds within which every key must be readable again after healing.
    #[arg(long, default_value_t = defaults::LIVENESS_TIMEOUT_S)]
    #[serde(default = "liveness_timeout")]
    pub liveness_timeout: f64,
    /// Rerun a recorded run: its configuration, seed and fault schedule.
    #[arg(long)]
    #[serde(default)]
    pub replay: Option<PathBuf>,
    /// A fault schedule from a file instead of one drawn from the seed:
    /// a JSON list of steps as test.json records them (a scripted
    /// scenario, or what `faultline shrink` leaves).
    #[arg(long)]
    #[serde(default)]
    pub schedule: Option<PathBuf>,
    /// Seconds of client load.
    #[arg(long, default_value_t = defaults::TIME_LIMIT_S)]
    #[serde(default = "time_limit")]
    pub time_limit: f64,
    /// Total client ops per second.
    #[arg(long, default_value_t = defaults::RATE)]
    #[serde(default = "rate")]
    pub rate: f64,
    /// Number of clients (default: four per node).
    #[arg(long)]
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[arg(long, default_value_t = defaults::KEY_COUNT)]
    #[serde(default = "key_count")]
    pub key_count: u64,
    /// Seed for every random choice (default: random, recorded in test.json).
    #[arg(long)]
    #[serde(default)]
    pub seed: Option<u64>,
    /// Mean one-way latency of node-to-node links, in ms.
    #[arg(long, default_value_t = defaults::LATENCY_MS)]
    #[serde(default = "latency")]
    pub latency: f64,
    /// How latency varies around its mean: constant, uniform or exponential.
    #[arg(long, default_value_t = LatencyDist::Constant, value_parser = str::parse::<LatencyDist>)]
    #[serde(default = "latency_dist")]
    pub latency_dist: LatencyDist,
    /// Client request timeout; a timed-out op is recorded as `info`.
    #[arg(long, default_value_t = defaults::TIMEOUT_MS)]
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// How long each node may take to answer `init`.
    #[arg(long, default_value_t = defaults::INIT_TIMEOUT_MS)]
    #[serde(default = "init_timeout_ms")]
    pub init_timeout_ms: u64,
    /// Seconds the checker may take before answering `unknown`.
    #[arg(long, default_value_t = defaults::CHECK_TIME_LIMIT_S)]
    #[serde(default = "check_time_limit")]
    pub check_time_limit: f64,
    /// Test name (the results sub-directory); default from the workload.
    #[arg(long)]
    #[serde(default)]
    pub name: Option<String>,
    /// Most network-journal entries written to messages.jsonl.
    #[arg(long, default_value_t = defaults::JOURNAL_LIMIT)]
    #[serde(default = "journal_limit")]
    pub journal_limit: u64,
    /// Broadcast's topology, as Maelstrom's: grid, line, tree2, tree3,
    /// tree4 or total.
    #[arg(long, default_value = defaults::TOPOLOGY)]
    #[serde(default = "topology")]
    pub topology: String,
    /// Node ids: `n1` (n1..nN) or `n0` (n0..nN-1, as Maelstrom names
    /// them; some solutions hard-code n0).
    #[arg(long, default_value = defaults::NODE_NAMES)]
    #[serde(default = "node_names")]
    pub node_names: String,
    /// What transactions (txn-list-append) are held to: strict-serializable,
    /// serializable, snapshot-isolation, repeatable-read, read-committed,
    /// read-uncommitted, strong-session-serializable, ...
    #[arg(long, default_value = defaults::CONSISTENCY_MODEL)]
    #[serde(default = "consistency_model")]
    pub consistency_model: String,
    /// Seconds of client load before the first fault, for a server that
    /// needs to warm up (faults are drawn over the rest of the run).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub warmup: f64,
    /// Keep each node's data directory after the run (the path is
    /// printed), to look at what a crashed server left.
    #[arg(long)]
    #[serde(default)]
    pub keep_data: bool,
    /// Sets a variable the system file declares: NAME=VALUE (repeatable;
    /// in a suite, `var = ["NAME=VALUE"]`).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    #[serde(default)]
    pub var: Vec<String>,
    /// Arguments for the node binary; `{node_id}` and `{data_dir}` are
    /// substituted.
    #[arg(last = true)]
    #[serde(default)]
    pub args: Vec<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every option has a default")
    }
}

/// A run's test.json, checked as the command line's options are.
pub fn load_config(dir: &RunDir) -> anyhow::Result<TestConfig> {
    let cfg = dir.read_config()?;
    cfg.check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.file(faultline_rundir::CONFIG).display()))?;
    Ok(cfg)
}

/// What the harness knows of a configuration beyond its file: how to
/// check it as options are checked, and the options that give it.
pub trait ConfigExt {
    fn check(&self) -> Result<(), OptionError>;
    fn options(&self) -> TestOptions;
}

impl ConfigExt for TestConfig {
    /// What `TestOptions::validate` makes sure of, for a configuration
    /// read back from a file (a replay, a prepared run): the same ranges,
    /// a known workload, and a well-formed schedule for its nodes.
    fn check(&self) -> Result<(), OptionError> {
        let options = self.options();
        options.check_ranges()?;
        options.check_system()?;
        faultline_workloads::find(&self.workload).map_err(|message| OptionError {
            key: "workload",
            message,
        })?;
        check(plain_name(&self.name), "name", || {
            format!("{:?} must be a plain directory name", self.name)
        })?;
        faultline_nemesis::check_schedule(&self.schedule, self.node_count).map_err(|e| {
            OptionError {
                key: "schedule",
                message: e,
            }
        })?;
        options.check_processes(&self.nemesis, &self.schedule)
    }

    /// The options that give this configuration, but for the schedule
    /// (drawn again from the seed unless `schedule` is set).
    fn options(&self) -> TestOptions {
        let nemesis: Vec<String> = self.nemesis.iter().map(|s| s.to_string()).collect();
        TestOptions {
            bin: self.bin.clone(),
            system: self.system.clone(),
            node_count: self.node_count,
            cluster_size: self.cluster_size.map(|[a, b]| format!("{a}..{b}")),
            workload: self.workload.clone(),
            nemesis: if nemesis.is_empty() {
                "none".into()
            } else {
                nemesis.join(",")
            },
            nemesis_interval: self.nemesis_interval_s,
            recovery_time: self.recovery_s,
            liveness_timeout: self.liveness_timeout_s,
            replay: None,
            schedule: None,
            time_limit: self.time_limit_s,
            rate: self.rate,
            concurrency: Some(self.concurrency),
            key_count: self.key_count,
            seed: Some(self.seed),
            latency: self.latency_ms,
            latency_dist: self.latency_dist,
            timeout_ms: self.timeout_ms,
            init_timeout_ms: self.init_timeout_ms,
            check_time_limit: self.check_time_limit_s,
            name: Some(self.name.clone()),
            journal_limit: self.journal_limit,
            topology: self.topology.clone(),
            node_names: self.node_names.clone(),
            consistency_model: self.consistency_model.clone(),
            warmup: self.warmup_s,
            keep_data: self.keep_data,
            var: self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            args: self.args.clone(),
        }
    }
}

/// The options a user gave, and where (`command line`, `suite`): a system
/// file's defaults fill in the rest.
pub type Given = std::collections::BTreeMap<String, String>;

/// A setting that cannot be used, with the key it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct OptionError {
    /// The suite key (`node_count`); the flag is `--node-count`.
    pub key: &'static str,
    pub message: String,
}

impl OptionError {
    /// As the command line spells it: `--node-count must be ...`.
    pub fn as_flag(&self) -> String {
        format!("--{}: {}", self.key.replace('_', "-"), self.message)
    }
}

pub use faultline_rundir::config::node_ids;

/// A schedule file: a list of steps (or test.json's `schedule`). Nodes
/// may be named as test.json and the history name them (`"n2"`) or by
/// 0-based index.
fn read_schedule(file: &Path, ids: &[String]) -> Result<Vec<faultline_nemesis::Step>, OptionError> {
    let n = ids.len();
    let err = |message: String| OptionError {
        key: "schedule",
        message: format!("{}: {message}", file.display()),
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let mut list = match value {
        serde_json::Value::Object(mut o) => o.remove("schedule").unwrap_or_default(),
        v => v,
    };
    names_to_indices(&mut list, ids, false).map_err(err)?;
    let steps: Vec<faultline_nemesis::Step> =
        serde_json::from_value(list).map_err(|e| err(format!("not a list of steps: {e}")))?;
    faultline_nemesis::check_schedule(&steps, n).map_err(err)?;
    Ok(steps)
}

/// Replaces each node name under a `cut` or `nodes` key with its index;
/// a name that is no node's is an error naming the nodes there are.
fn names_to_indices(v: &mut serde_json::Value, ids: &[String], nodes: bool) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::Object(m) => m
            .iter_mut()
            .try_for_each(|(k, v)| names_to_indices(v, ids, k == "cut" || k == "nodes")),
        Value::Array(a) => a
            .iter_mut()
            .try_for_each(|v| names_to_indices(v, ids, nodes)),
        Value::String(s) if nodes => {
            let i = ids.iter().position(|id| id == s).ok_or_else(|| {
                format!(
                    "{s:?} is not a node: nodes are {} (by name) or 0 to {} (by index)",
                    ids.join(", "),
                    ids.len().saturating_sub(1)
                )
            })?;
            *v = Value::from(i);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check(ok: bool, key: &'static str, message: impl FnOnce() -> String) -> Result<(), OptionError> {
    if ok {
        Ok(())
    } else {
        Err(OptionError {
            key,
            message: message(),
        })
    }
}

impl TestOptions {
    /// The run's configuration, or the first setting that is out of range.
    /// With `replay`, the recorded configuration (every other setting is
    /// ignored). A relative `bin` is taken relative to `base`.
    /// Every option counts as given: a system file's defaults apply only
    /// through `validate_given`.
    pub fn validate(&self) -> Result<TestConfig, OptionError> {
        self.validate_given(None)
    }

    /// `validate`, with a system file's defaults filling in each option
    /// not in `given`; test.json records where each value came from.
    pub fn validate_given(&self, given: Option<&Given>) -> Result<TestConfig, OptionError> {
        if let Some(dir) = &self.replay {
            return load_config(&RunDir::open(dir)).map_err(|e| OptionError {
                key: "replay",
                message: format!("{e:#}"),
            });
        }
        let (this, sources) = self.with_system_defaults(given)?;
        let mut cfg = this.validate_here()?;
        cfg.sources = sources;
        Ok(cfg)
    }

    /// These options with the system file's `[defaults]` applied to every
    /// key not given, and where each value came from.
    fn with_system_defaults(
        &self,
        given: Option<&Given>,
    ) -> Result<(TestOptions, Given), OptionError> {
        let (Some(given), Some(system)) = (given, &self.system) else {
            return Ok((self.clone(), given.cloned().unwrap_or_default()));
        };
        let sys = faultline_systems::system::System::load(system).map_err(|e| OptionError {
            key: "system",
            message: e.to_string(),
        })?;
        let mut sources = given.clone();
        let mut value = serde_json::to_value(self).expect("options serialize");
        let keys = keys();
        for (key, v, line) in sys.defaults() {
            let at = format!("{}:{line}", sys.source);
            check(
                keys.contains(&key) && !NOT_DEFAULTED.contains(&key.as_str()),
                "system",
                || {
                    format!("{at}: [defaults] cannot set {key:?} (it sets options of faultline test: {})",
                    keys.iter().filter(|k| !NOT_DEFAULTED.contains(&k.as_str())).cloned().collect::<Vec<_>>().join(", "))
                },
            )?;
            if given.contains_key(&key) {
                continue;
            }
            value[&key] = serde_json::to_value(&v).expect("TOML values convert");
            sources.insert(key, "system file".into());
        }
        let this = serde_json::from_value(value).map_err(|e| OptionError {
            key: "system",
            message: format!("{}: [defaults]: {e}", sys.source),
        })?;
        Ok((this, sources))
    }

    fn validate_here(&self) -> Result<TestConfig, OptionError> {
        self.check_ranges()?;
        let nemesis =
            faultline_nemesis::parse_specs(&self.nemesis).map_err(|message| OptionError {
                key: "nemesis",
                message,
            })?;
        let (nemesis, too_small) =
            faultline_nemesis::fit_to_size(nemesis, self.node_count, |k| self.names(k)).map_err(
                |message| OptionError {
                    key: "nemesis",
                    message,
                },
            )?;
        let (nemesis, mut nemesis_refused) = self.clock_that_acts(nemesis)?;
        nemesis_refused.extend(too_small);
        let nemesis = self.crash_that_acts(nemesis, &mut nemesis_refused)?;
        let (nemesis, cluster_size) = self.membership_that_acts(nemesis, &mut nemesis_refused)?;
        faultline_workloads::find(&self.workload).map_err(|message| OptionError {
            key: "workload",
            message,
        })?;
        if let Some(bin) = &self.bin {
            check(bin.exists(), "bin", || {
                format!("{}: no such file", bin.display())
            })?;
        }
        self.check_system()?;
        let name = self.name.clone().unwrap_or_else(|| self.workload.clone());
        check(plain_name(&name), "name", || {
            format!("{name:?} must be a plain directory name")
        })?;
        let seed = self.seed.unwrap_or_else(rand::random);
        let schedule = match &self.schedule {
            Some(file) => read_schedule(file, &node_ids(&self.node_names, self.node_count))?,
            None => {
                // Drawn over the load after the warm-up, then moved past it.
                let warmup_ms = (self.warmup * 1000.0) as u64;
                let mut s = faultline_nemesis::schedule(
                    &nemesis,
                    self.node_count,
                    seed,
                    (self.nemesis_interval * 1000.0) as u64,
                    (self.time_limit * 1000.0) as u64 - warmup_ms,
                );
                for step in &mut s {
                    step.at_ms += warmup_ms;
                }
                if self.system.is_some() {
                    streams_uncorrupted(&mut s, &nemesis);
                }
                s
            }
        };
        self.check_processes(&nemesis, &schedule)?;
        Ok(TestConfig {
            name,
            bin: self.bin.clone(),
            system: self.system.clone(),
            args: self.args.clone(),
            node_count: self.node_count,
            cluster_size,
            workload: self.workload.clone(),
            nemesis,
            nemesis_refused,
            nemesis_interval_s: self.nemesis_interval,
            recovery_s: self.recovery_time,
            liveness_timeout_s: self.liveness_timeout,
            schedule,
            schedule_given: self.schedule.is_some(),
            time_limit_s: self.time_limit,
            rate: self.rate,
            concurrency: self.concurrency(),
            key_count: self.key_count,
            seed,
            latency_ms: self.latency,
            latency_dist: self.latency_dist,
            timeout_ms: self.timeout_ms,
            init_timeout_ms: self.init_timeout_ms,
            check_time_limit_s: self.check_time_limit,
            journal_limit: self.journal_limit,
            topology: self.topology.clone(),
            node_names: self.node_names.clone(),
            consistency_model: self.consistency_model.clone(),
            warmup_s: self.warmup,
            keep_data: self.keep_data,
            vars: self.vars()?,
            sources: Given::new(),
        })
    }

    /// The system's variables: its defaults, then each `--var NAME=VALUE`.
    fn vars(&self) -> Result<std::collections::BTreeMap<String, String>, OptionError> {
        let Some(system) = &self.system else {
            check(self.var.is_empty(), "var", || {
                "variables belong to a system file (--system)".into()
            })?;
            return Ok(Default::default());
        };
        let sys = faultline_systems::system::System::load(system).map_err(|e| OptionError {
            key: "system",
            message: e.to_string(),
        })?;
        let mut vars = sys.vars();
        for v in &self.var {
            let Some((name, value)) = v.split_once('=') else {
                return Err(OptionError {
                    key: "var",
                    message: format!("{v:?} is not NAME=VALUE"),
                });
            };
            check(vars.contains_key(name), "var", || {
                let known: Vec<&String> = vars.keys().collect();
                format!(
                    "{system} has no variable {name:?} (it declares: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            })?;
            vars.insert(name.to_string(), value.to_string());
        }
        Ok(vars)
    }

    /// A clock fault must change what the nodes see. Named outright, one
    /// they cannot feel is refused; brought in by `all`, it is left out,
    /// with the reason kept in test.json and said at the start.
    fn clock_that_acts(&self, specs: Vec<Spec>) -> Result<(Vec<Spec>, Vec<String>), OptionError> {
        if !specs.iter().any(|s| s.kind.moves_clocks()) {
            return Ok((specs, Vec::new()));
        }
        let why = faultline_process::clock::support();
        let Err(reason) = why else {
            return Ok((specs, Vec::new()));
        };
        let (moving, kept): (Vec<Spec>, Vec<Spec>) =
            specs.into_iter().partition(|s| s.kind.moves_clocks());
        for s in &moving {
            let kind = s.kind.name();
            check(!self.names(s.kind), "nemesis", || {
                format!("{kind} refused: {reason}")
            })?;
        }
        let refused = moving
            .iter()
            .map(|s| format!("{}: {reason}", s.kind.name()))
            .collect();
        Ok((kept, refused))
    }

    /// Whether `--nemesis` names `kind` itself (not only through `all`).
    fn names(&self, kind: faultline_nemesis::Kind) -> bool {
        self.nemesis
            .split(',')
            .any(|p| p.split(':').next().map(str::trim) == Some(kind.name()))
    }

    /// A crash needs the durability layer (FUSE). Named outright, the run
    /// fails when it cannot mount; brought in by `all`, it is left out
    /// where it cannot, with the reason kept in test.json.
    fn crash_that_acts(
        &self,
        specs: Vec<Spec>,
        refused: &mut Vec<String>,
    ) -> Result<Vec<Spec>, OptionError> {
        let named = self.names(faultline_nemesis::Kind::Crash);
        let crashes = specs
            .iter()
            .any(|s| s.kind == faultline_nemesis::Kind::Crash);
        if named || !crashes {
            return Ok(specs);
        }
        match faultline_durable::probe() {
            Ok(()) => Ok(specs),
            Err(e) => {
                refused.push(format!("crash: {e}"));
                Ok(specs
                    .into_iter()
                    .filter(|s| s.kind != faultline_nemesis::Kind::Crash)
                    .collect())
            }
        }
    }

    /// Membership changes need a node that can make them: the bundled
    /// target node (which answers `member_add` and the rest). Named
    /// outright for another, the run is refused; brought in by `all`, it
    /// is left out with the reason. Returns the size range it keeps.
    fn membership_that_acts(
        &self,
        specs: Vec<Spec>,
        refused: &mut Vec<String>,
    ) -> Result<(Vec<Spec>, Option<[usize; 2]>), OptionError> {
        use faultline_nemesis::Kind::Membership;
        let wanted = specs.iter().any(|s| s.kind == Membership);
        if !wanted {
            check(self.cluster_size.is_none(), "cluster_size", || {
                "a size range needs the membership nemesis (--nemesis membership or all)".into()
            })?;
            return Ok((specs, None));
        }
        let unsupported = match (&self.bin, &self.system) {
            (Some(bin), _) => Some(format!(
                "{} is not known to answer member_add/member_remove (the bundled target node does)",
                bin.display()
            )),
            (_, Some(system)) => faultline_systems::system::System::load(system)
                .map_err(|e| e.to_string())
                .and_then(|s| s.membership_missing().map_or(Ok(()), Err))
                .err(),
            (None, None) => None,
        };
        if let Some(why) = unsupported {
            check(!self.names(Membership), "nemesis", || {
                format!("membership refused: {why}")
            })?;
            refused.push(format!("membership: {why}"));
            let kept = specs.into_iter().filter(|s| s.kind != Membership).collect();
            return Ok((kept, None));
        }
        let n = self.node_count;
        let [min, max] = match &self.cluster_size {
            None => [n, n + 2],
            Some(text) => parse_size_range(text).ok_or_else(|| OptionError {
                key: "cluster_size",
                message: format!("{text:?} is not MIN..MAX (e.g. 3..5)"),
            })?,
        };
        check(
            min >= 1 && min <= n && n <= max && max < 64,
            "cluster_size",
            || format!("{min}..{max} must hold the node count {n}, with 1 <= MIN and MAX < 64"),
        )?;
        Ok((specs, Some([min, max])))
    }

    /// A system is a whole description: no binary or arguments beside it.
    fn check_system(&self) -> Result<(), OptionError> {
        let Some(name) = &self.system else {
            return Ok(());
        };
        check(self.bin.is_none() && self.args.is_empty(), "system", || {
            "a system names its own binary and arguments: leave out --bin and the arguments after --".into()
        })?;
        let system = faultline_systems::system::System::load(name).map_err(|e| OptionError {
            key: "system",
            message: e.to_string(),
        })?;
        system.check_binary().map_err(|e| OptionError {
            key: "system",
            message: e.to_string(),
        })?;
        system.run_as().map_err(|e| OptionError {
            key: "system",
            message: e.to_string(),
        })?;
        check(
            self.node_count <= faultline_systems::system::MAX_NODES,
            "node_count",
            || {
                format!(
                    "a system runs at most {} nodes",
                    faultline_systems::system::MAX_NODES
                )
            },
        )?;
        Ok(())
    }

    /// A fault aimed at one process names one the system runs.
    fn check_processes(&self, specs: &[Spec], schedule: &[Step]) -> Result<(), OptionError> {
        use faultline_nemesis::Action;
        let named = specs
            .iter()
            .filter_map(|s| s.process.as_deref().map(|p| ("nemesis", p)))
            .chain(schedule.iter().filter_map(|s| match &s.action {
                Action::Pause { process, .. } | Action::Kill { process, .. } => {
                    process.as_deref().map(|p| ("schedule", p))
                }
                _ => None,
            }));
        let mut processes = None;
        for (key, p) in named {
            let Some(system) = &self.system else {
                return Err(OptionError {
                    key,
                    message: format!(
                        "process={p}: only a system's nodes run named processes (--system with [[process]] entries); a node program is one process"
                    ),
                });
            };
            if processes.is_none() {
                let sys =
                    faultline_systems::system::System::load(system).map_err(|e| OptionError {
                        key: "system",
                        message: e.to_string(),
                    })?;
                processes = Some(sys.process_names());
            }
            let names = processes.as_ref().expect("just loaded");
            check(names.iter().any(|n| n == p), key, || {
                format!(
                    "process={p}: {system} runs no process of that name (each node runs: {})",
                    names.join(", ")
                )
            })?;
        }
        Ok(())
    }

    /// Four clients per node (Maelstrom has two): under faults a client
    /// waits out its timeout at a cut-off or paused node, and with two per
    /// node `--nemesis all` issued under half its rate; stale leaders then
    /// answered too few reads to be caught (see docs/nemesis.md, "Finding bugs").
    fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(4 * self.node_count)
    }

    fn check_ranges(&self) -> Result<(), OptionError> {
        let within = |v: f64, lo: f64, hi: f64| v >= lo && v <= hi;
        let s = self;
        check(
            within(s.nemesis_interval, 1e-3, 3600.0),
            "nemesis_interval",
            || format!("must be in (0, 3600] seconds, got {}", s.nemesis_interval),
        )?;
        check(within(s.time_limit, 1e-3, 86_400.0), "time_limit", || {
            format!("must be in (0, 86400] seconds, got {}", s.time_limit)
        })?;
        // After the time limit: a warmup is judged against a valid one.
        check(s.warmup >= 0.0 && s.warmup < s.time_limit, "warmup", || {
            format!(
                "must be at least 0 and under --time-limit ({} s), got {}",
                s.time_limit, s.warmup
            )
        })?;
        check(
            within(s.recovery_time, 0.0, 3600.0),
            "recovery_time",
            || format!("must be in [0, 3600] seconds, got {}", s.recovery_time),
        )?;
        check(
            within(s.liveness_timeout, 1e-3, 3600.0),
            "liveness_timeout",
            || format!("must be in (0, 3600] seconds, got {}", s.liveness_timeout),
        )?;
        check((1..=64).contains(&s.node_count), "node_count", || {
            format!("must be between 1 and 64, got {}", s.node_count)
        })?;
        check((1..=1024).contains(&s.concurrency()), "concurrency", || {
            format!("must be between 1 and 1024, got {}", s.concurrency())
        })?;
        check(within(s.rate, 1e-3, 1e6), "rate", || {
            format!("must be in (0, 1000000] ops/s, got {}", s.rate)
        })?;
        check((1..=1_000_000).contains(&s.key_count), "key_count", || {
            format!("must be between 1 and 1000000, got {}", s.key_count)
        })?;
        check(within(s.latency, 0.0, 60_000.0), "latency", || {
            format!("must be in [0, 60000] ms, got {}", s.latency)
        })?;
        check(s.timeout_ms > 0, "timeout_ms", || "must be positive".into())?;
        faultline_workloads::sets::Topology::parse(&s.topology).map_err(|message| OptionError {
            key: "topology",
            message,
        })?;
        check(
            ["n0", "n1"].contains(&s.node_names.as_str()),
            "node_names",
            || {
                format!(
                    "must be n1 (n1..nN) or n0 (n0..nN-1, as Maelstrom), got {:?}",
                    s.node_names
                )
            },
        )?;
        check(s.init_timeout_ms > 0, "init_timeout_ms", || {
            "must be positive".into()
        })?;
        check(
            within(s.check_time_limit, 1e-3, 86_400.0),
            "check_time_limit",
            || format!("must be in (0, 86400] seconds, got {}", s.check_time_limit),
        )
    }

    /// A relative `bin` or system file resolved against `base` (a suite
    /// file's folder).
    pub fn resolve_bin(&mut self, base: &Path) {
        if let Some(b) = &self.bin {
            if b.is_relative() {
                self.bin = Some(base.join(b));
            }
        }
        if let Some(s) = &self.system {
            if s.ends_with(".toml") && Path::new(s).is_relative() {
                self.system = Some(base.join(s).display().to_string());
            }
        }
    }
}

/// A name usable as one directory: not empty, no `/`, no leading dot.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
}

/// Every key a suite entry may set: the same names as the fields above.
/// Options a system file may not default: what names the system and the
/// run itself, and what only a user can mean.
const NOT_DEFAULTED: &[&str] = &[
    "system",
    "bin",
    "args",
    "replay",
    "schedule",
    "name",
    "seed",
    "var",
    "keep_data",
];

pub fn keys() -> Vec<String> {
    let v = serde_json::to_value(TestOptions::default()).expect("options serialize");
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A real server's links are TCP streams, whose checksum stops a bit
/// flipped in flight in practice, and servers rely on it (etcd panics with
/// "Was the raft log corrupted, truncated, or lost?" on a flipped bit in a
/// raft message). So there, unnarrowed message faults do not corrupt;
/// naming `messages:corrupt` still does.
fn streams_uncorrupted(schedule: &mut [Step], specs: &[Spec]) {
    let unnarrowed = specs
        .iter()
        .any(|s| s.kind == faultline_nemesis::Kind::Messages && s.messages.is_empty());
    if !unnarrowed {
        return;
    }
    for step in schedule {
        if let faultline_nemesis::Action::StartMessages { rates } = &mut step.action {
            rates.corrupt_probability = 0.0;
        }
    }
}

/// `MIN..MAX`, as `--cluster-size` spells a size range.
fn parse_size_range(text: &str) -> Option<[usize; 2]> {
    let (a, b) = text.split_once("..")?;
    Some([a.trim().parse().ok()?, b.trim().parse().ok()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_corrupted_only_when_corruption_is_named() {
        let corrupts = |nemesis: &str| {
            let specs = faultline_nemesis::parse_specs(nemesis).unwrap();
            let mut s = faultline_nemesis::schedule(&specs, 3, 1, 1000, 20_000);
            streams_uncorrupted(&mut s, &specs);
            s.iter().any(|st| {
                matches!(&st.action, faultline_nemesis::Action::StartMessages { rates }
                    if rates.corrupt_probability > 0.0)
            })
        };
        assert!(!corrupts("all"));
        assert!(!corrupts("messages"));
        assert!(corrupts("messages:corrupt"));
        assert!(corrupts("messages:corrupt+drop"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let o = TestOptions {
            node_count: 0,
            ..Default::default()
        };
        let e = o.validate().unwrap_err();
        assert_eq!(e.key, "node_count");
        assert!(e
            .as_flag()
            .starts_with("--node-count: must be between 1 and 64"));
        let o = TestOptions {
            nemesis: "kill:sideways".into(),
            ..Default::default()
        };
        assert_eq!(o.validate().unwrap_err().key, "nemesis");
        let o = TestOptions {
            workload: "frob".into(),
            ..Default::default()
        };
        assert_eq!(o.validate().unwrap_err().key, "workload");
    }

    #[test]
    fn the_same_options_give_the_same_configuration() {
        let o = TestOptions {
            seed: Some(3),
            nemesis: "all".into(),
            ..Default::default()
        };
        let (a, b) = (o.validate().unwrap(), o.validate().unwrap());
        assert_eq!(a.schedule, b.schedule);
        assert_eq!(a.concurrency, 20, "four clients per node");
        assert!(keys().contains(&"liveness_timeout".to_string()));
    }

    #[test]
    fn a_system_files_defaults_fill_in_what_was_not_given() {
        let system = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pykv_setup.toml"
        );
        let o = TestOptions {
            system: Some(system.into()),
            node_count: 3,
            rate: 70.0,
            timeout_ms: 500,
            var: vec!["level=strict".into()],
            ..Default::default()
        };
        let given: Given = [
            ("rate", "suite"),
            ("node_count", "suite"),
            ("system", "suite"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let cfg = o.validate_given(Some(&given)).unwrap();
        // Given: kept; not given: the system's (its 1500 over our 500).
        assert_eq!(
            (cfg.rate, cfg.timeout_ms, cfg.nemesis_interval_s),
            (70.0, 1500, 2.0)
        );
        assert_eq!(cfg.sources["rate"], "suite");
        assert_eq!(cfg.sources["timeout_ms"], "system file");
        assert_eq!(cfg.vars["level"], "strict");
        // Without `given` (a rebuilt configuration), nothing is defaulted.
        let cfg = o.validate().unwrap();
        assert_eq!((cfg.timeout_ms, cfg.sources.len()), (500, 0));
        let bad = TestOptions {
            var: vec!["levl=x".into()],
            ..o.clone()
        };
        let e = bad.validate().unwrap_err();
        assert!(
            e.key == "var" && e.message.contains("greeting, level"),
            "{e}"
        );
        let e = TestOptions {
            var: vec!["x".into()],
            ..o.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.message.contains("NAME=VALUE"), "{e}");
        let e = TestOptions { system: None, ..o }.validate().unwrap_err();
        assert_eq!(e.key, "var", "{e}");
    }

    #[test]
    fn a_recorded_configuration_is_checked_like_options() {
        let o = TestOptions {
            seed: Some(1),
            nemesis: "kill".into(),
            ..Default::default()
        };
        let mut cfg = o.validate().unwrap();
        assert_eq!(cfg.check(), Ok(()));
        cfg.workload = "frob".into();
        assert_eq!(cfg.check().unwrap_err().key, "workload");
        cfg.workload = "lin-kv".into();
        cfg.concurrency = 0;
        assert_eq!(cfg.check().unwrap_err().key, "concurrency");
        cfg.concurrency = 10;
        cfg.schedule.insert(
            0,
            faultline_nemesis::Step::at(
                0,
                faultline_nemesis::Action::Kill {
                    target: faultline_nemesis::Target::Nodes(vec![9]),
                    process: None,
                },
            ),
        );
        let e = cfg.check().unwrap_err();
        assert!(
            e.key == "schedule" && e.message.contains("beyond the 5 nodes"),
            "{e}"
        );
    }
}
