//! faultline's harness: the controller behind the `faultline` binary.
//!
//! It owns process supervision (`node`, `hygiene`), the network that every
//! node-to-node message passes through (`net`), the client drivers
//! (`client`), the recorder of history, traces and messages (`recorder`),
//! the results store (`results`), the `test` orchestration (`run`) and the
//! `check` command. Exit codes (DESIGN §6): 0 valid, 1 invalid, 2 unknown,
//! 254 bad usage, 255 the harness itself failed.

pub mod check;
pub mod client;
pub mod clock;
pub mod hygiene;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod results;
pub mod run;
pub mod serve;
pub mod suite;

pub const EXIT_USAGE: u8 = 254;
pub const EXIT_HARNESS: u8 = 255;

/// Prints a usage error and returns its exit code.
pub fn usage(msg: String) -> std::process::ExitCode {
    eprintln!("faultline: {msg}");
    std::process::ExitCode::from(EXIT_USAGE)
}
