//! Real servers as the system under test: how one is described and run,
//! and the clients that reach it.
//!
//! - `system`: a system file (TOML: binary, placeholders, ports, probes,
//!   stop, sidecar processes), checked with line numbers, and each node's
//!   plan with every placeholder filled in; `etcd.toml` is bundled;
//! - `server`: a planned cluster laid out for a run (its loopback slot,
//!   each node's private /etc/hosts, its processes) and its readiness
//!   probes;
//! - `client`: the traits every built-in client implements, and
//!   `registry` the kinds a system file may name;
//! - `leader`: asking a node who leads (an HTTP answer or a command);
//! - `etcd`: the built-in etcd client, on etcd-client (etcd's v3 gRPC API);
//! - `nats`: the built-in NATS JetStream client of the `kafka` workload;
//! - `sql`: the built-in SQL client of the transaction workloads, with
//!   its dialects `postgres` (PostgreSQL) and `mysql` (MariaDB, Galera);
//! - `adapter`: the generic client, a user's program speaking Maelstrom's
//!   client protocol on stdio. A further built-in client is a module
//!   beside these and a line in `registry::Registry::builtin`.
//!
//! It starts processes through `faultline_process` and writes logs where
//! `faultline_rundir` says; it knows nothing of the nemesis or checkers.

pub mod adapter;
pub mod answer;
pub mod client;
pub mod etcd;
pub mod http;
pub mod leader;
pub mod members;
pub mod mysql;
pub mod nats;
pub mod own_user;
pub mod postgres;
pub mod registry;
pub mod server;
pub mod sql;
pub mod system;
