//! Integration tests of the relay's mechanics, against plain loopback TCP upstreams
//! written here (an echo server). Tests through a real MariaDB live in the project-wide
//! tests. Every await that could hang is bounded (see `util::bounded`).
//!
//! Modules:
//! - `util`: the echo upstream, relay start-up, bounded reads and writes.
//! - `passthrough`: bytes arrive identical, half-closes pass, flows are counted.
//! - `faults`: reset, reset-after-bytes, blackholes, refuse, latency, shutdown.
//! - `mysql_4031`: the inactivity error packet, byte for byte, then end of stream.
//! - `control`: the line protocol, its client, and its loopback-only rule.
//! - `parse`: the fault grammar and its error messages.

mod control;
mod faults;
mod mysql_4031;
mod parse;
mod passthrough;
mod util;
