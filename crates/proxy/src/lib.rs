//! goneaway proxy: a MySQL-protocol proxy that keeps client sessions alive across idle
//! timeouts, kills, restarts and network drops, for applications in any language.
//!
//! - [`Proxy`] listens for clients ([`Proxy::start`]), runs one [`frontend::Session`] per
//!   client and shuts down gracefully ([`Proxy::shutdown`]).
//! - [`ProxyConfig`] says where to listen, which server to front ([`BackendTarget`]) and
//!   who may log in ([`Account`]); it reads TOML ([`ProxyConfig::from_toml`]).
//!   [`accounts`] checks logins against those and against the server's own accounts;
//!   [`gate`] bounds what connections that have not logged in may cost (pending logins,
//!   login deadline, delays after failed logins).
//! - [`net`] frames packets ([`net::PacketCodec`]), reads the few packet structures the
//!   proxy needs, and carries a client's bytes in plain TCP or TLS ([`net::ClientStream`]);
//!   [`backend`] logs in to the server and follows replies; [`stats`] counts what the proxy
//!   absorbed and serves it, as Prometheus text on `/metrics` and as `/health` (200 "ok",
//!   503 "draining" during a graceful shutdown), from a small axum router on its own
//!   address ([`ProxyConfig::metrics_listen`]; keep it on loopback).
//! - In front of a cluster ([`ProxyConfig::servers`]), [`monitor`] polls every member and
//!   names the writer; new backends go there, statements wait while there is none
//!   ([`ProxyConfig::switchover_wait`]), and sessions follow a switchover or a failover.
//! - TLS towards clients is opt-in: with [`ProxyConfig::tls_cert`] and
//!   [`ProxyConfig::tls_key`] (PEM) the greeting offers `CLIENT_SSL`, a client's SSLRequest
//!   upgrades its connection (rustls, ring provider, TLS 1.2 and 1.3) and the login goes
//!   on inside TLS; [`ProxyConfig::require_tls`] refuses plain-text logins with ERR 3159.
//!   The connection to the server stays plain text.
//!
//! Commands are forwarded as raw packets. The proxy parses only what it needs to follow a
//! session: status flags (open transaction), session-state tracking (database, session
//! variables), reply boundaries and prepared statement ids. When a backend dies, the
//! session gets a fresh one with its state restored; what cannot be restored (an open
//! transaction, user variables, temporary tables, locks) is reported in a clear error, and
//! only commands that are safe to run twice are replayed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), goneaway_proxy::ProxyError> {
//! use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
//!
//! let backend = BackendTarget::from_url("mysql://app:secret@127.0.0.1:3306/app")?;
//! let proxy = Proxy::start(ProxyConfig::new("127.0.0.1:6033".parse().unwrap(), backend)).await?;
//! println!("point the application at {}", proxy.local_addr());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod backend;
pub mod config;
mod error;
pub mod frontend;
pub mod gate;
pub mod monitor;
pub mod net;
mod router;
mod server;
pub mod stats;

pub use config::{Account, BackendTarget, ClusterKind, Credential, ProxyConfig, ServerAddr};
pub use error::ProxyError;
pub use server::{Proxy, Reloaded};
pub use stats::Stats;

/// How many session threads ([`ProxyConfig::session_threads`]) a proxy runs by default:
/// one per core, as an event-loop proxy runs one loop per core (HAProxy's `nbthread`). A
/// session keeps its thread, so a second thread costs no wake-up across threads and lets
/// one half of the sessions go on while the kernel preempts the other's thread (measured
/// with sysbench on two cores: one multi-threaded runtime worker relayed 0.75–0.97 of
/// HAProxy's throughput, two session threads 0.93–1.03; see BENCHMARKS.md).
pub fn default_session_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1)
}
