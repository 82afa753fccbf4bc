//! The node processes of a run and what is done to them outside the
//! network: containing every process a node starts in a control group of
//! its own (`contain`); starting one with its log, watching
//! it end, pausing and killing it (`node`); killing every group the
//! harness started on any way out (`hygiene`); and skewing a node's wall
//! clock (`clock`: what a skew is; `vdso`: patching one process;
//! `clock_agent`: the process that patches every process of every node).
//!
//! A routed node's stdio is attached to `faultline_net`'s router; what
//! happens to a node is recorded through `faultline_rundir::record`.

pub mod clock;
pub mod clock_agent;
pub mod contain;
pub mod hygiene;
pub mod node;
pub mod vdso;
