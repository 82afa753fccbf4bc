//! target-node: the system faultline tests by default, a Raft replicated
//! key-value store. It speaks the protocol of DESIGN §2-3 over stdio like
//! any foreign binary, emits the trace events, and depends on no other crate
//! of the workspace.
//!
//! - `raft`: the pure consensus core (messages and ticks in; persistence,
//!   messages, commits and reads out).
//! - `storage`: the checksummed write-ahead log and snapshots.
//! - `server`: the thin IO loop: stdin/stdout, ticks, fsync batching, the
//!   key-value state machine, client replies and forwarding.
//!
//! `--bug NAME` plants a classic consensus mistake; see README.md.

pub mod raft;
pub mod server;
pub mod storage;

pub use server::run;
