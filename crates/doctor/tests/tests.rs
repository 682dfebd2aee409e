//! goneaway-doctor against real throwaway MariaDB servers (the harness), each cause staged
//! for real.
//!
//! Modules:
//! - `chain`: the timeout chain — a pool lifetime past a short `wait_timeout` (the server
//!   cuts first), then a middlebox shorter still, a proxy keepalive past `wait_timeout`, and
//!   a consistent chain of pool, proxy, middlebox and server.
//! - `cluster`: real clusters from the harness — a Galera node killed (the survivors report
//!   the missing member), then a second (quorum lost, 1047); a replica lagging behind a
//!   lock, its SQL thread broken, writable, its primary left read-only, then killed.
//! - `causes`: idle timeout, restart, crash, oversized packet and a pool lifetime longer
//!   than `wait_timeout` — the doctor must put the staged cause first, with its evidence.
//! - `connection`: connection failures diagnosed (access denied, unreachable), exit codes,
//!   JSON field names, passwords never in a report.
//! - `limits`: a full server (1040) seen by an account without SUPER and by root with the
//!   application's error; loopback clients are never host-blocked (so 1129 cannot be staged).
//! - `network`: a flow reset in the network mid-query (the relay): the application's real
//!   error plus the server's silence make network_drop.
//! - `ping`: up, refused, wrong password, waiting for a server that is starting.
//! - `probes`: `--probe-idle` through a relay that drops idle flows (network_drop, which the
//!   server never sees), `--probe-packet` against a small `max_allowed_packet`.

mod causes;
mod chain;
mod cluster;
mod connection;
mod limits;
mod network;
mod ping;
mod probes;

use std::time::Duration;

use goneaway_connect::Target;
use goneaway_doctor::Options;

/// The doctor's options for tests: no sampling (tests that want it say so).
pub fn quick() -> Options {
    Options {
        sample: Duration::ZERO,
        ..Options::default()
    }
}

/// The harness server's application account as a target.
pub fn target(server: &goneaway_harness::Server) -> Target {
    Target::from_url(&server.url()).expect("the harness URL parses")
}
