//! Integration tests of the goneaway pool against real MariaDB servers (the harness) and
//! real network faults (the relay). No mocks: a test that cannot start a server fails.
//!
//! Modules:
//! - `idle`: connections idle past a 2 s `wait_timeout` (validation, keepalive, retry).
//! - `kill`: `KILL` of pooled connections.
//! - `restart`: graceful restart and crash, with idle and busy connections.
//! - `network`: silent blackhole of idle flows, 4031 injection, resets mid-result.
//! - `txn`: transactions rerun on loss and deadlock; a loss during COMMIT is not replayed.
//! - `bulk`: bulk insert past `max_allowed_packet`, batched deletes.
//! - `sizing`: wait queue, checkout timeout, init statements, status.
//! - `tcp`: keepalive interval, probes and `TCP_USER_TIMEOUT` on the live sockets (Linux).
//! - `gauges`: the size gauges through the `metrics` facade.
//! - `examples`: the programs in `examples/`, run and checked.
//! - `cancel`: futures dropped mid-statement, mid-transaction, waiting and validating.
//! - `torture`: seeded random schedules of work, cancellations and faults, checked by an
//!   oracle of the contract.

mod bulk;
mod cancel;
mod common;
mod examples;
mod gauges;
mod idle;
mod kill;
mod network;
mod restart;
mod sizing;
mod tcp;
mod torture;
mod txn;
