//! The built-in clients behind one trait: how a system file's `[client]`
//! names one (`ClientKind`), how a node is reached once planned
//! (`Endpoint`), and one client's connection to it (`Connection`).
//!
//! Adding a built-in client is a module that implements `ClientKind` and
//! one line in `registry::Registry::builtin`. The harness sees only these
//! traits: it connects each client to its node's endpoint and, while that
//! node is out of the cluster, to the endpoint of the member standing in
//! for it (every server client can follow, since any member of a server
//! cluster takes any request).

use futures::future::BoxFuture;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::answer::Answer;

/// One node's `[client]` settings, every placeholder filled in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSettings {
    /// `address`: where the client connects, e.g. `127.0.1.2:2379`.
    pub address: String,
    /// `isolation`, for clients that read it.
    pub isolation: Option<String>,
    /// `serializable_reads`: reads need not go through a quorum.
    pub serializable_reads: bool,
    /// How many nodes the cluster was laid out with.
    pub node_count: usize,
    /// With `target_session_attrs = "read-write"`: every node's id and
    /// address, this node's first, to find the one that accepts writes.
    /// Empty otherwise.
    pub candidates: Vec<(String, String)>,
}

/// A setting a client kind cannot use, and which `[client]` key holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadSetting {
    pub key: &'static str,
    pub message: String,
}

/// A kind of built-in client, named by `[client] adapter = NAME`.
pub trait ClientKind: Send + Sync {
    /// Its name in system files.
    fn name(&self) -> &'static str;
    /// The optional `[client]` keys it reads besides `address`
    /// (`isolation`, `target_session_attrs`): a file that sets another is
    /// refused, naming the key.
    fn keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// How clients reach a node with these settings.
    fn plan(&self, settings: ClientSettings) -> Result<Arc<dyn Endpoint>, BadSetting>;
}

/// Who is connecting: the client's id, the node it asks, and the folder
/// for a client's own log (an adapter's stderr).
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// `c3`.
    pub client: String,
    /// `n2`: the node this connection asks.
    pub node: String,
    pub log_dir: PathBuf,
}

/// How clients reach one planned node; shared by all its clients.
pub trait Endpoint: Send + Sync + std::fmt::Debug {
    /// A new connection of `caller` to this node. Connecting does nothing
    /// yet: the first call opens it, so a node that is down fails that
    /// call as not sent.
    fn connect(&self, caller: &Caller) -> Box<dyn Connection>;
}

/// One client's connection to one node.
pub trait Connection: Send {
    /// Performs one Maelstrom request (`body`, its `msg_id` given) within
    /// `timeout`. `Answer::NotSent` only when the request certainly never
    /// reached the server; an answer lost after sending is an indefinite
    /// error reply. A reply may name the node that served it
    /// (`served_by`) when the client followed a primary elsewhere.
    fn call<'a>(
        &'a mut self,
        body: &'a Value,
        msg_id: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Answer>;
}
