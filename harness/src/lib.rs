//! The `faultline` binary's library: options, the phases of a run, the
//! nemesis's executor and the commands. Everything a run is made of lives
//! in the crates below it (docs/layout.md has the map):
//! `faultline_rundir` (the run directory and test.json), `faultline_net`
//! (links, the stdio router, TCP proxies, Maelstrom's services),
//! `faultline_process` (node processes, clocks), `faultline_systems`
//! (system files, real servers and their clients) and `faultline_report`.
//!
//! - `options`: the settings of a test (CLI and suite alike), validated
//!   into the run's configuration;
//! - `run`: `faultline test` in phases (cluster, load, liveness, judge);
//! - `nemesis`: executes fault actions through narrow handles;
//! - `client`: the clients of a run, whatever they reach a node through;
//! - `check`, `suite`, `serve`, `shrink`: the other commands; `detect`:
//!   when a failing run first failed; `progress`: the live status line.
//!
//! Exit codes (docs/protocol.md): 0 valid, 1 invalid, 2 unknown, 254 bad usage,
//! 255 the harness itself failed.

pub mod check;
pub mod client;
pub mod detect;
pub mod doctor;
pub mod nemesis;
pub mod options;
pub mod output;
pub mod progress;
pub mod run;
pub mod serve;
pub mod shrink;
pub mod suite;

pub use faultline_rundir::{EXIT_HARNESS, EXIT_USAGE};

/// Prints a usage error and returns its exit code.
pub fn usage(msg: String) -> std::process::ExitCode {
    eprintln!("faultline: {msg}");
    std::process::ExitCode::from(EXIT_USAGE)
}
