//! target-node tests: the Raft core in deterministic simulation and
//! scripted scenarios, the storage's crash recovery, and the server's
//! handling of bad input.

mod scenarios;
mod server;
mod sim;
mod storage;
