//! Integration tests of the checker crate: the shared Porcupine benchmark
//! set, generated histories (property tests), malformed input and Raft
//! traces.

mod bench_set;
mod maelstrom;
mod malformed;
mod properties;
mod sim;
mod traces;
mod txn;
mod txn_properties;
