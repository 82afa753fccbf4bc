//! faultline's harness: the controller behind the `faultline` binary.
//!
//! - `options`: the settings of a test (CLI and suite alike), validated
//!   into the run's configuration;
//! - `rundir`: the typed run directory every command reads and writes;
//! - `run`: `faultline test` in phases (cluster, load, liveness, judge);
//! - `node`, `hygiene`: process supervision; `clock`: libfaketime skew;
//! - `links`: the network seam; `net`: the stdio router behind it; `tcp`:
//!   the proxies real servers' peers talk through;
//! - `system`: a real server described in TOML; `etcd`, `adapter`: the
//!   clients that reach one;
//! - `nemesis`: executes fault actions through narrow handles;
//! - `client`, `recorder`: clients and the recording of what happened;
//! - `check`, `report`, `suite`, `serve`: the other commands; `detect`:
//!   when a failing run first failed;
//!
//! Exit codes (DESIGN §6): 0 valid, 1 invalid, 2 unknown, 254 bad usage,
//! 255 the harness itself failed.

pub mod adapter;
pub mod check;
pub mod client;
pub mod clock;
pub mod detect;
pub mod etcd;
pub mod hygiene;
pub mod links;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod options;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod run;
pub mod rundir;
pub mod serve;
pub mod services;
pub mod shrink;
pub mod suite;
pub mod system;
pub mod tcp;

pub const EXIT_USAGE: u8 = 254;
pub const EXIT_HARNESS: u8 = 255;

/// Prints a usage error and returns its exit code.
pub fn usage(msg: String) -> std::process::ExitCode {
    eprintln!("faultline: {msg}");
    std::process::ExitCode::from(EXIT_USAGE)
}
