//! Every checker's name: the key its result is stored under in
//! results.json (docs/report.md), and how every crate looks it up.

pub const LINEARIZABILITY: &str = "linearizability";
pub const RAFT_INVARIANTS: &str = "raft-invariants";
pub const TRANSACTIONS: &str = "transactions";
/// Judged by the harness: did the cluster answer again once healed.
pub const LIVENESS: &str = "liveness";
pub const SET_FULL: &str = "set-full";
pub const COUNTER: &str = "counter";
pub const ECHO: &str = "echo";
pub const UNIQUE_IDS: &str = "unique-ids";
pub const KAFKA: &str = "kafka";
