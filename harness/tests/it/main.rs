//! Integration tests of the faultline binary with real processes. Every
//! test bounds its waits, uses temporary directories and loopback only, and
//! checks that no node it started survives.

mod support;

mod clients;
mod clock;
mod clock_runtimes;
mod contain;
mod contracts;
mod failover;
mod faults;
mod hygiene;
mod layout;
mod maelstrom;
mod report;
mod robust;
mod runs;
mod serve;
mod servers;
mod suites;
mod triggers;
