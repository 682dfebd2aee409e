//! A fault-injecting TCP relay for MySQL traffic: put it between a client and a
//! MySQL/MariaDB server, then make the connection "go away" on command.
//!
//! It is the library behind `goneaway chaos`. Every way a connection dies in
//! production can be reproduced on purpose, at runtime, while the client is connected:
//! a NAT gateway silently forgetting an idle flow, a reset in the middle of a result,
//! latency, refused or blackholed new connections, and MySQL 8's own inactivity error
//! (4031) followed by a close.
//!
//! # Overview
//!
//! - [`Relay`] is a running relay, started from a [`RelayConfig`]. It accepts clients,
//!   opens one upstream connection per client (a *flow*) and copies bytes both ways,
//!   counting them and tracking how long each flow has been idle.
//! - [`Fault`] is what to break, armed with [`Relay::set`] and disarmed by
//!   [`FaultKind`] with [`Relay::remove`] or all at once with [`Relay::clear`]. Faults
//!   parse from text (`"blackhole-idle 10s"`), so CLI flags and the control interface
//!   share one grammar. [`Relay::reset_all`] and [`Relay::inject_4031_all`] act at once.
//! - [`Status`] (with one [`FlowStatus`] per flow) is what [`Relay::status`] reports.
//! - [`control`] serves a line protocol (`status`, `set <fault>`, `reset`, ...) on
//!   loopback so another process — or `nc` — can drive the relay, and [`control::send`]
//!   is its client.
//! - [`mysql`] holds the one MySQL packet the relay writes itself, and why it looks
//!   the way it does.
//! - [`Error`] is the crate's error type.
//!
//! **Invariant:** the relay does not parse the MySQL protocol. It sees bytes, chunks
//! and idle time; the only MySQL it speaks is the 4031 packet it writes.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use goneaway_relay::{control, Fault, FaultKind, Relay, RelayConfig};
//!
//! # async fn demo() -> Result<(), goneaway_relay::Error> {
//! let relay = Relay::start(RelayConfig::new("127.0.0.1:0", "127.0.0.1:3306")).await?;
//! println!("point the client at {}", relay.local_addr());
//!
//! // A NAT gateway with a 10-second idle timeout, and 50 ms each way.
//! relay.set(Fault::BlackholeIdle(Duration::from_secs(10)));
//! relay.set("latency 50ms".parse()?);
//!
//! // Let `goneaway chaos ctl` (or `nc`) drive it too.
//! let ctl = control::serve(&relay, "127.0.0.1:0").await?;
//! let answer = control::send(ctl.local_addr(), "set reset-after 4096").await?;
//! assert_eq!(answer, "set reset-after 4096");
//!
//! relay.remove(FaultKind::Latency);
//! let reset = relay.reset_all();
//! println!("reset {reset} flows; {} open", relay.status().flow_count);
//! relay.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod control;
mod error;
mod fault;
mod flow;
pub mod mysql;
mod relay;
mod status;

pub use error::Error;
pub use fault::{Fault, FaultKind, FAULT_SYNTAX};
pub use relay::{Relay, RelayConfig};
pub use status::{FlowState, FlowStatus, Status};
