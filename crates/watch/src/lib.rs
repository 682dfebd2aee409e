//! Watches MySQL/MariaDB servers and serves what it sees as Prometheus metrics: up/down,
//! uptime and detected restarts, Aborted_* and Connection_errors_* rates, connection
//! headroom, connections idle close to `wait_timeout`, and the doctor's findings as
//! labelled gauges.
//!
//! - [`WatchConfig`] names the servers, the listen address (loopback by default) and the
//!   poll interval.
//! - [`Watcher::bind`] opens the HTTP listener; [`Watcher::run`] polls every server and
//!   serves `/metrics` (Prometheus text format 0.0.4) and `/healthz` until the shutdown
//!   future completes. It survives servers going away and coming back, and logs a line
//!   (through `tracing`) when something changes.
//! - [`metrics`] renders the state; [`state`] holds it and detects changes.
//!
//! ```no_run
//! # async fn example() -> Result<(), goneaway_watch::WatchError> {
//! use goneaway_connect::Target;
//! use goneaway_watch::{WatchConfig, Watcher};
//!
//! let target = Target::from_url("mysql://monitor:secret@db:3306").unwrap();
//! let watcher = Watcher::bind(WatchConfig::new(vec![target])).await?;
//! println!("metrics on http://{}/metrics", watcher.local_addr());
//! watcher.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod metrics;
pub mod state;
mod watcher;

pub use state::{GaleraSnapshot, ReplicaSnapshot, ServerState, Snapshot};
pub use watcher::{WatchConfig, WatchError, Watcher};
