//! faultline's network: everything between the nodes, and between the
//! nodes and their clients, that a fault can reach.
//!
//! - `links`: the seam the nemesis acts through (one typed value of faults
//!   per directed link, and a single `heal`);
//! - `router`: the stdio network of Maelstrom-protocol nodes, where every
//!   message passes and each link's faults apply;
//! - `services`: Maelstrom's `lin-kv`, `seq-kv`, `lww-kv` and `lin-tso`,
//!   answered inside the router;
//! - `tcp`: one proxy per directed link of real servers, the same seam
//!   over byte streams.
//!
//! - `recorder`: traces, the message journal and protocol moments, as
//!   the network sees them.
//!
//! It writes the run directory through `faultline_rundir` and knows
//! nothing of processes or systems.

pub mod links;
pub mod recorder;
pub mod router;
pub mod services;
pub mod tcp;
