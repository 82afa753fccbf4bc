//! The `faultline` binary: CLI parsing, exit codes and signal handling
//! around the library.

use faultline::{check, hygiene, net, run, EXIT_HARNESS, EXIT_USAGE};

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "faultline",
    version,
    about = "Jepsen-style fault injection for any stdio node binary"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a test: start nodes, drive clients, record, check.
    Test(TestArgs),
    /// Check existing histories (faultline JSONL, Porcupine logs, Jepsen EDN)
    /// or run directories.
    Check(check::CheckArgs),
    /// Run a suite (a TOML matrix with expected verdicts); JUnit output.
    Suite(SuiteArgs),
    /// (Re)generate RUN_DIR/report.html.
    Report { run_dir: PathBuf },
    /// Serve the results directory: runs newest first, and their files.
    Serve {
        #[arg(default_value = "results")]
        dir: PathBuf,
        /// Address to bind; loopback unless you mean otherwise.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// 0 picks a free port (printed on start).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run the bundled target node on stdin/stdout (used by `test`).
    #[command(name = "__target-node", hide = true)]
    TargetNode {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
struct SuiteArgs {
    /// The suite file.
    file: PathBuf,
    /// Runs at a time.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Write JUnit XML here (one testcase per run).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the JSON summary here (default: RESULTS_DIR/suite-NAME.json).
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

fn suite(a: SuiteArgs) -> ExitCode {
    if !(1..=64).contains(&a.jobs) {
        return usage(format!("--jobs must be between 1 and 64, got {}", a.jobs));
    }
    if let Err(e) = faultline::suite::load(&a.file) {
        return usage(format!("{e:#}"));
    }
    let opts = faultline::suite::Options {
        jobs: a.jobs,
        junit: a.junit,
        json: a.json,
        results_dir: a.results_dir,
    };
    match faultline::suite::run(&a.file, &opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            ExitCode::from(EXIT_HARNESS)
        }
    }
}

#[derive(Args)]
struct TestArgs {
    /// The node binary; without it, the bundled target node.
    #[arg(long)]
    bin: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    node_count: usize,
    #[arg(long, default_value = "lin-kv")]
    workload: String,
    /// Comma list of faults (partition, pause, kill, messages, clock,
    /// overload), `all` or `none`. A fault can be narrowed to variants
    /// joined by `+`: `partition:isolate-leader`, `kill:all`,
    /// `clock:strobe+leader`, `messages:corrupt`.
    #[arg(long, default_value = "none")]
    nemesis: String,
    /// Seconds between the start of one fault and the next (each fault
    /// lasts this long).
    #[arg(long, default_value_t = 2.0)]
    nemesis_interval: f64,
    /// Seconds to wait after healing before the liveness reads.
    #[arg(long, default_value_t = 2.0)]
    recovery_time: f64,
    /// Seconds within which every key must be readable again after healing.
    #[arg(long, default_value_t = 15.0)]
    liveness_timeout: f64,
    /// Rerun a recorded run: its configuration, seed and fault schedule.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Seconds of client load.
    #[arg(long, default_value_t = 10.0)]
    time_limit: f64,
    /// Total client ops per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Number of clients (default: twice the node count).
    #[arg(long)]
    concurrency: Option<usize>,
    #[arg(long, default_value_t = 5)]
    key_count: u64,
    /// Seed for every random choice (default: random, recorded in test.json).
    #[arg(long)]
    seed: Option<u64>,
    /// Mean one-way latency of node-to-node links, in ms.
    #[arg(long, default_value_t = 0.0)]
    latency: f64,
    #[arg(long, value_enum, default_value_t = net::LatencyDist::Constant)]
    latency_dist: net::LatencyDist,
    /// Client request timeout; a timed-out op is recorded as `info`.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// How long each node may take to answer `init`.
    #[arg(long, default_value_t = 10_000)]
    init_timeout_ms: u64,
    /// Seconds the checker may take before answering `unknown`.
    #[arg(long, default_value_t = 60.0)]
    check_time_limit: f64,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Test name (the results sub-directory); default from the workload.
    #[arg(long)]
    name: Option<String>,
    /// Most network-journal entries written to messages.jsonl.
    #[arg(long, default_value_t = 200_000)]
    journal_limit: u64,
    /// Arguments for the node binary; `{node_id}` and `{data_dir}` are
    /// substituted.
    #[arg(last = true)]
    args: Vec<String>,
}

use faultline::usage;

fn build_config(a: TestArgs) -> Result<run::TestConfig, String> {
    let workload: faultline_workloads::Workload =
        a.workload.parse().map_err(|e| format!("--workload: {e}"))?;
    if let Some(dir) = &a.replay {
        let path = dir.join("test.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("--replay: cannot read {}: {e}", path.display()))?;
        let mut cfg: run::TestConfig = serde_json::from_str(&text).map_err(|e| {
            format!(
                "--replay: {} is not a faultline test.json: {e}",
                path.display()
            )
        })?;
        cfg.results_dir = a.results_dir;
        return Ok(cfg);
    }
    let nemesis =
        faultline_nemesis::parse_specs(&a.nemesis).map_err(|e| format!("--nemesis: {e}"))?;
    if !(a.nemesis_interval > 0.0 && a.nemesis_interval <= 3600.0) {
        return Err(format!(
            "--nemesis-interval must be in (0, 3600] seconds, got {}",
            a.nemesis_interval
        ));
    }
    if !(a.recovery_time >= 0.0 && a.recovery_time <= 3600.0)
        || !(a.liveness_timeout > 0.0 && a.liveness_timeout <= 3600.0)
    {
        return Err(
            "--recovery-time must be in [0, 3600] and --liveness-timeout in (0, 3600] seconds"
                .into(),
        );
    }
    if !(1..=64).contains(&a.node_count) {
        return Err(format!(
            "--node-count must be between 1 and 64, got {}",
            a.node_count
        ));
    }
    let concurrency = a.concurrency.unwrap_or(2 * a.node_count);
    if !(1..=1024).contains(&concurrency) {
        return Err(format!(
            "--concurrency must be between 1 and 1024, got {concurrency}"
        ));
    }
    if !(a.time_limit > 0.0 && a.time_limit <= 86_400.0) {
        return Err(format!(
            "--time-limit must be in (0, 86400] seconds, got {}",
            a.time_limit
        ));
    }
    if !(a.rate > 0.0 && a.rate <= 1e6) {
        return Err(format!(
            "--rate must be in (0, 1000000] ops/s, got {}",
            a.rate
        ));
    }
    if !(1..=1_000_000).contains(&a.key_count) {
        return Err(format!(
            "--key-count must be between 1 and 1000000, got {}",
            a.key_count
        ));
    }
    if !(a.latency >= 0.0 && a.latency <= 60_000.0) {
        return Err(format!(
            "--latency must be in [0, 60000] ms, got {}",
            a.latency
        ));
    }
    if a.timeout_ms == 0 || a.init_timeout_ms == 0 {
        return Err("--timeout-ms and --init-timeout-ms must be positive".into());
    }
    if let Some(bin) = &a.bin {
        if !bin.exists() {
            return Err(format!("--bin {}: no such file", bin.display()));
        }
    }
    let name = a.name.unwrap_or_else(|| a.workload.clone());
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("--name {name:?} must be a plain directory name"));
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    let schedule = faultline_nemesis::schedule(
        &nemesis,
        a.node_count,
        seed,
        (a.nemesis_interval * 1000.0) as u64,
        (a.time_limit * 1000.0) as u64,
    );
    Ok(run::TestConfig {
        name,
        bin: a.bin,
        args: a.args,
        node_count: a.node_count,
        workload,
        nemesis,
        nemesis_interval_s: a.nemesis_interval,
        recovery_s: a.recovery_time,
        liveness_timeout_s: a.liveness_timeout,
        schedule,
        time_limit_s: a.time_limit,
        rate: a.rate,
        concurrency,
        key_count: a.key_count,
        seed,
        latency_ms: a.latency,
        latency_dist: a.latency_dist,
        timeout_ms: a.timeout_ms,
        init_timeout_ms: a.init_timeout_ms,
        check_time_limit_s: a.check_time_limit,
        results_dir: a.results_dir,
        journal_limit: a.journal_limit,
    })
}

/// Cancels the run on the first SIGINT/SIGTERM/SIGHUP; on a second one,
/// kills every node and exits at once.
fn watch_signals(cancel: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = vec![
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::hangup())?,
    ];
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let any =
                futures::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv()))).await;
            drop(any);
            seen += 1;
            if seen == 1 {
                // Cancel first: when the parent that reads our stderr (a
                // suite) is gone, printing fails, and eprintln! would panic.
                cancel.cancel();
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!(
                        "faultline: interrupted; stopping clients and nodes (again to force)\n"
                    ),
                );
            } else {
                hygiene::kill_all();
                std::process::exit(EXIT_HARNESS as i32);
            }
        }
    });
    Ok(())
}

/// The multi-threaded tokio runtime, or the exit code for failing to make one.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("faultline: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_HARNESS)
        })
}

fn test(args: TestArgs) -> ExitCode {
    let cfg = match build_config(args) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let seed = cfg.seed;
    let outcome = rt.block_on(async move {
        let cancel = CancellationToken::new();
        watch_signals(cancel.clone())?;
        run::run(cfg, cancel).await
    });
    // Whatever happened, no node outlives the harness.
    hygiene::kill_all();
    match outcome {
        Ok(o) => {
            let report = o.dir.display();
            match o.verdict {
                Some(v) => {
                    println!(
                        "{}: {} (seed {seed})\nresults: {report}",
                        v.as_str().to_uppercase(),
                        o.summary
                    );
                    ExitCode::from(v.exit_code() as u8)
                }
                None => {
                    eprintln!(
                        "faultline: {} (seed {seed}); partial results in {report}",
                        o.summary
                    );
                    ExitCode::from(EXIT_HARNESS)
                }
            }
        }
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            ExitCode::from(EXIT_HARNESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.cmd {
        Cmd::TargetNode { args } => {
            let stdin = std::io::BufReader::new(std::io::stdin());
            let stdout = std::io::BufWriter::new(std::io::stdout().lock());
            match target_node::run(stdin, stdout, &args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("target-node: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Test(a) => {
            hygiene::install_panic_hook();
            test(a)
        }
        Cmd::Check(a) => check::run(a),
        Cmd::Suite(a) => suite(a),
        Cmd::Serve { dir, bind, port } => {
            if !dir.is_dir() {
                return usage(format!("{} is not a directory", dir.display()));
            }
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(faultline::serve::serve(dir, &bind, port)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("faultline: error: {e:#}");
                    ExitCode::from(EXIT_HARNESS)
                }
            }
        }
        Cmd::Report { run_dir } => match faultline::report::write(&run_dir) {
            Ok(()) => {
                println!("{}", run_dir.join("report.html").display());
                ExitCode::SUCCESS
            }
            Err(e) => usage(format!("{e:#}")),
        },
    }
}
