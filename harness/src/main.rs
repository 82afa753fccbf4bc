//! The `faultline` binary: CLI parsing, exit codes and signal handling
//! around the library.

use faultline::options::TestOptions;
use faultline::{check, run, EXIT_HARNESS, EXIT_USAGE};
use faultline_process::hygiene;
use faultline_rundir::RunDir;
use faultline_rundir::TestConfig;

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

// Parsed once at start and matched once: the size of `Test`'s options
// costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
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
    /// Check what this host offers (clock skew, FUSE, unshare, loopback
    /// addresses, each bundled system, a browser) and say what each missing
    /// thing leaves out and how to get it.
    Doctor,
    /// From a failing run, find a smaller configuration that fails the
    /// same way (fewer faults, shorter, fewer clients, keys and nodes).
    Shrink(ShrinkArgs),
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
    /// Ends and removes a run's control groups once stdin closes (the run
    /// ended, however it ended). Started by `test`.
    #[command(name = "__reaper", hide = true)]
    Reaper { path: PathBuf, backend: String },
    /// Patches every process of every node so its wall clock can be
    /// skewed; commands on stdin. Started by `test` with a clock nemesis.
    #[command(name = "__clock-agent", hide = true)]
    ClockAgent,
    /// Run the bundled target node on stdin/stdout (used by `test`).
    #[command(name = "__target-node", hide = true)]
    TargetNode {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SuiteArgs {
    #[command(subcommand)]
    merge: Option<SuiteCmd>,
    /// The suite file.
    #[arg(required = true)]
    file: Option<PathBuf>,
    /// Runs at a time.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run only shard K of N (`K/N`, 1-based), balanced by expected run
    /// time; `auto` reads FAULTLINE_SHARD=K/N or the CI system's variables
    /// (GitLab CI_NODE_INDEX/CI_NODE_TOTAL, Buildkite
    /// BUILDKITE_PARALLEL_JOB/_COUNT, CircleCI CIRCLE_NODE_INDEX/_TOTAL,
    /// a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with
    /// FAULTLINE_SHARD_COUNT).
    #[arg(long)]
    shard: Option<String>,
    #[command(flatten)]
    out: SuiteOutput,
}

/// Where a suite's summaries go.
#[derive(Args)]
struct SuiteOutput {
    /// Write JUnit XML here (one testcase per run).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the JSON summary here (default: RESULTS_DIR/suite-NAME.json).
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

#[derive(Subcommand)]
enum SuiteCmd {
    /// Merge the JSON summaries of every shard of one suite into one
    /// summary, JUnit file and table; exits 1 when an expectation failed.
    Merge {
        #[arg(required = true)]
        summaries: Vec<PathBuf>,
        #[command(flatten)]
        out: SuiteOutput,
    },
}

fn suite(a: SuiteArgs) -> ExitCode {
    let outcome = match (a.merge, a.file) {
        (Some(SuiteCmd::Merge { summaries, out }), _) => {
            let opts = suite_options(1, None, out);
            match faultline::suite::merge(&summaries, &opts) {
                Ok(Err(e)) => return usage(format!("suite merge: {e}")),
                Ok(Ok(passed)) => Ok(passed),
                Err(e) => Err(e),
            }
        }
        (None, Some(file)) => {
            if !(1..=64).contains(&a.jobs) {
                return usage(format!("--jobs must be between 1 and 64, got {}", a.jobs));
            }
            let shard = match a.shard.as_deref() {
                None => None,
                Some("auto") => {
                    match faultline::suite::shard::Shard::from_env(|k| std::env::var(k).ok()) {
                        Ok(s) => Some(s),
                        Err(e) => return usage(e),
                    }
                }
                Some(s) => match faultline::suite::shard::Shard::parse(s) {
                    Ok(s) => Some(s),
                    Err(e) => return usage(e),
                },
            };
            let suite = match faultline::suite::load(&file) {
                Ok(s) => s,
                Err(e) => return usage(format!("{e:#}")),
            };
            faultline::suite::run(&suite, &suite_options(a.jobs, shard, a.out))
        }
        (None, None) => return usage("suite: a suite file, or `merge SUMMARY.json...`".into()),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            ExitCode::from(EXIT_HARNESS)
        }
    }
}

fn suite_options(
    jobs: usize,
    shard: Option<faultline::suite::shard::Shard>,
    out: SuiteOutput,
) -> faultline::suite::Options {
    faultline::suite::Options {
        jobs,
        junit: out.junit,
        json: out.json,
        results_dir: out.results_dir,
        shard,
    }
}

#[derive(Args)]
struct ShrinkArgs {
    /// The failing run's directory.
    run_dir: PathBuf,
    /// Runs of each candidate before it is judged to pass (runs are not
    /// fully deterministic).
    #[arg(long, default_value_t = 2)]
    tries: usize,
    /// Seconds the whole search may take.
    #[arg(long, default_value_t = 600.0)]
    time_budget: f64,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

fn shrink(a: ShrinkArgs) -> ExitCode {
    if !(1..=20).contains(&a.tries) {
        return usage(format!("--tries must be between 1 and 20, got {}", a.tries));
    }
    if !(1.0..=86_400.0).contains(&a.time_budget) {
        return usage(format!(
            "--time-budget must be between 1 and 86400 seconds, got {}",
            a.time_budget
        ));
    }
    if !a.run_dir.join(faultline_rundir::CONFIG).is_file() {
        return usage(format!(
            "{} is not a run directory (no test.json)",
            a.run_dir.display()
        ));
    }
    let opts = faultline::shrink::ShrinkOptions {
        run_dir: a.run_dir,
        tries: a.tries,
        budget: std::time::Duration::from_secs_f64(a.time_budget),
        results_dir: a.results_dir,
    };
    match faultline::shrink::run(opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline: shrink: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[derive(Args)]
struct TestArgs {
    #[command(flatten)]
    options: TestOptions,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Run in this directory, whose test.json is already written (how a
    /// suite runs its entries).
    #[arg(long, hide = true)]
    prepared: Option<PathBuf>,
    /// The options typed on the command line (a system file's defaults
    /// fill in the rest).
    #[arg(skip)]
    given: faultline::options::Given,
}

/// The test options given on the command line, by suite key.
fn given_on_command_line(m: &clap::ArgMatches) -> faultline::options::Given {
    let keys = faultline::options::keys();
    m.ids()
        .filter(|id| keys.iter().any(|k| k == id.as_str()))
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| (id.to_string(), "command line".to_string()))
        .collect()
}

use faultline::usage;

/// The run's configuration and directory: a prepared one, or one made
/// from the options (after refusing what cannot work).
fn prepare(a: TestArgs) -> Result<(TestConfig, RunDir, bool), ExitCode> {
    if let Some(dir) = a.prepared {
        let dir = RunDir::open(&dir);
        let cfg = faultline::options::load_config(&dir)
            .map_err(|e| usage(format!("--prepared: {e:#}")))?;
        let clocks = run::preflight(&cfg).map_err(harness_error)?;
        return Ok((cfg, dir, clocks));
    }
    let cfg = a
        .options
        .validate_given(Some(&a.given))
        .map_err(|e| usage(e.as_flag()))?;
    let clocks = run::preflight(&cfg).map_err(harness_error)?;
    let dir = RunDir::create(&a.results_dir, &cfg.name).map_err(harness_error)?;
    dir.store_config(&cfg).map_err(harness_error)?;
    Ok((cfg, dir, clocks))
}

fn harness_error(e: anyhow::Error) -> ExitCode {
    eprintln!("faultline: error: {e:#}");
    ExitCode::from(EXIT_HARNESS)
}

/// Cancels the run on the first SIGINT/SIGTERM/SIGHUP; on a second one,
/// kills every node and exits at once.
fn watch_signals(cancel: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = [
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
                if let Some(s) = faultline_process::contain::Session::current() {
                    s.end();
                }
                faultline::output::finish();
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
    // Durability layers a killed harness left mounted go first.
    for m in faultline_durable::remove_stale_mounts() {
        eprintln!(
            "faultline: removed a durability layer left mounted at {}",
            m.display()
        );
    }
    for d in faultline::run::cluster::remove_stale_data_roots() {
        eprintln!(
            "faultline: removed a dead run's data directory {}",
            d.display()
        );
    }
    let (cfg, dir, clocks) = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    eprintln!("faultline: run directory {}", dir.path().display());
    for r in &cfg.nemesis_refused {
        eprintln!("faultline: left out of `all`: {r}");
    }
    contain_nodes();
    // After the reaper started (it keeps the real stderr): a closed pipe
    // from here on loses only output.
    faultline::output::guard();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(async {
        let cancel = CancellationToken::new();
        watch_signals(cancel.clone())?;
        run::run(&cfg, &dir, clocks, cancel).await
    });
    // Whatever happened, no node outlives the harness.
    hygiene::kill_all();
    if let Some(s) = faultline_process::contain::Session::current() {
        s.end();
    }
    let results = match outcome {
        Ok(r) => r,
        Err(e) => return harness_error(e),
    };
    let (seed, path) = (cfg.seed, dir.path().display());
    match results.verdict {
        Some(v) => println!(
            "{}: {} (seed {seed})\nexercised: {}\nresults: {path}",
            v.as_str().to_uppercase(),
            results.summary,
            results.ops.exercised()
        ),
        None => eprintln!(
            "faultline: {} (seed {seed}); partial results in {path}",
            results.summary
        ),
    }
    ExitCode::from(results.exit_code())
}

/// Puts every process of every node in a control group of its own
/// (`faultline_process::contain`), watched by a reaper that ends them if
/// faultline dies; says so when that cannot be had.
fn contain_nodes() {
    use faultline_process::contain::Session;
    match Session::start() {
        Ok(s) => {
            let spawned = std::env::current_exe().and_then(|exe| {
                faultline_process::contain::spawn_reaper(&exe, &["__reaper"])
            });
            if let Err(e) = spawned {
                eprintln!(
                    "faultline: warning: no reaper for {} ({e}): if faultline is killed, the next run ends what it left",
                    s.root.path.display()
                );
            }
        }
        Err(why) => eprintln!(
            "faultline: note: node processes are contained by process group only ({why}); a process a node starts in a session of its own escapes kill, pause and crash"
        ),
    }
}

/// Runs a command whose output may go to a pipe that closes early.
fn guarded(f: impl FnOnce() -> ExitCode) -> ExitCode {
    faultline::output::guard();
    let code = f();
    faultline::output::finish();
    code
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (mut cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let (Cmd::Test(a), Some(m)) = (&mut cli.cmd, matches.subcommand_matches("test")) {
        a.given = given_on_command_line(m);
    }
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
        Cmd::ClockAgent => faultline_process::clock_agent::run(),
        Cmd::Reaper { path, backend } => match backend.parse() {
            Ok(b) => {
                faultline_process::contain::reap_when_orphaned(&path, b);
                ExitCode::SUCCESS
            }
            Err(e) => usage(e),
        },
        Cmd::Test(a) => {
            hygiene::install_panic_hook();
            let code = test(a);
            faultline::output::finish();
            code
        }
        Cmd::Check(a) => guarded(|| check::run(a)),
        Cmd::Suite(a) => guarded(|| suite(a)),
        Cmd::Shrink(a) => guarded(|| shrink(a)),
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
        Cmd::Doctor => {
            print!(
                "{}",
                faultline::doctor::render(&faultline::doctor::checks())
            );
            ExitCode::SUCCESS
        }
        Cmd::Report { run_dir } => match faultline_report::write(&RunDir::open(&run_dir)) {
            Ok(()) => {
                println!("{}", run_dir.join(faultline_rundir::REPORT).display());
                ExitCode::SUCCESS
            }
            // An unreadable run is not a usage mistake: the harness failed.
            Err(e) => harness_error(e),
        },
    }
}
