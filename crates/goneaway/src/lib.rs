//! A pool of `mysql_async` connections that never hands out a dead connection and retries
//! only what is safe — so "MySQL server has gone away" (2006) and "Lost connection to MySQL
//! server during query" (2013) never reach your users when they need not.
//!
//! - [`Pool`] is a cheap-to-clone handle. [`Pool::get`] checks out a [`PooledConn`],
//!   pinging it first when it has been idle (see [`Validation`]); a dead one is discarded
//!   and another tried, invisibly. Dropping the `PooledConn` returns it.
//! - Recycling, keepalive and sizing are in [`PoolOptions`]. The time limits are derived
//!   from the server's own `wait_timeout`, read on every new connection (see [`Limits`]).
//! - [`Pool::query`], [`Pool::exec`], [`Pool::exec_drop`] retry on a fresh connection when
//!   it is safe: nothing reached the server, or the [`Statement`] is read-only or marked
//!   idempotent. [`Pool::transaction`] reruns a whole transaction on a connection loss
//!   before `COMMIT` or a deadlock, and reports a loss during `COMMIT` as
//!   [`Error::CommitOutcomeUnknown`].
//! - [`Pool::bulk_insert`] packs rows into multi-row `INSERT`s by bytes against
//!   `max_allowed_packet`; [`Pool::batched`] runs `UPDATE/DELETE … LIMIT n` until done.
//! - [`Pool::begin`] gives a [`Transaction`] guard: `commit()`, `rollback()`, and a
//!   rollback when dropped open. [`Pool::query_each`]/[`Pool::exec_each`] stream large
//!   results row by row.
//! - [`Pool::with_conn`] runs one unit of work on a connection known good, for workers.
//!
//! # Cancellation
//!
//! Every future the crate returns may be dropped at any await (a `tokio::time::timeout`,
//! a `select!`, a client gone) and leaves the pool exactly consistent: a connection left
//! mid-statement is closed, never returned with its reply unread; one left in a
//! transaction is rolled back before reuse; the counters (`size`, `waiters`, `closed`) stay
//! exact. What a dropped *write* did is unknown, as for a lost connection. See
//! "What comes back to the pool" on [`PooledConn`].
//! - [`Pool::status`] is a snapshot; counters, histograms and the size gauges (open, idle,
//!   in use, waiters) go through the `metrics` facade under the names in
//!   [`metrics_names`], events through `tracing`.
//!
//! # TCP keepalive, and its limitation
//!
//! mysql_async 0.37 sets only the keepalive *idle time* on its sockets
//! ([`PoolOptions::tcp_keepalive`], default 30 s) and exposes neither the socket nor a
//! connect hook (`OptsBuilder::after_connect` gets the `Conn`, whose stream is private).
//! On Linux the pool sets the rest itself, without forking the driver: right after a
//! connection is opened it reads the server's view of our endpoint
//! (`information_schema.PROCESSLIST`, in the query that reads `wait_timeout` anyway), finds
//! the one descriptor of this process whose socket has that local endpoint and the
//! server's port (`/proc/self/fd`, `getsockname`, `getpeername`), and sets
//! [`PoolOptions::tcp_keepalive_interval`] (10 s), [`PoolOptions::tcp_keepalive_probes`]
//! (3) and [`PoolOptions::tcp_user_timeout`] (derived: 60 s) on it.
//! [`PooledConn::tcp_tuning`] reports what was set.
//!
//! It does not apply — and the connection is used as it is, with the host's
//! `net.ipv4.tcp_keepalive_intvl` and `tcp_keepalive_probes` (75 s × 9 by default) and no
//! user timeout — when not on Linux, over a Unix socket, through a proxy or relay (the
//! server sees the proxy's endpoint, not ours), or when more than one socket matches;
//! [`Status::tcp_tuning_skipped`] and the `reason` label of
//! [`metrics_names::TCP_TUNING_SKIPPED`] count those ([`TcpSkip`]). Whatever the sockets,
//! what bounds a silently dropped flow is also the pool itself:
//! [`PoolOptions::statement_timeout`] on every statement, and [`PoolOptions::ping_timeout`]
//! on validation and keepalive pings, which are sent after
//! [`PoolOptions::keepalive_interval`] of silence.
//!
//! ```no_run
//! use std::time::Duration;
//! use goneaway::{Pool, PoolOptions, Statement, Validation};
//!
//! # async fn run() -> Result<(), goneaway::Error> {
//! let pool = Pool::with_options(
//!     "mysql://app:secret@127.0.0.1:3306/app",
//!     PoolOptions::new()
//!         .max_size(20)
//!         .validation(Validation::when_idle_over(Duration::from_secs(1)))
//!         .init_statement("SET time_zone = '+00:00'"),
//! )?;
//!
//! // Read-only: retried on a fresh connection if the connection is lost mid-result.
//! let names: Vec<String> = pool.query("SELECT name FROM users ORDER BY id").await?;
//!
//! // A write: retried only if the server never saw it; otherwise `OutcomeUnknown`.
//! pool.exec_drop("INSERT INTO audit (what) VALUES (?)", ("login",)).await?;
//!
//! // Idempotent by the caller's word: retried after any connection loss.
//! pool.exec_drop(Statement::new("UPDATE users SET seen = 1 WHERE id = ?").idempotent(), (7,))
//!     .await?;
//!
//! println!("{:?} {:?}", names, pool.status());
//! # Ok(()) }
//! ```
mod bulk;
mod conn;
mod error;
mod jitter;
pub mod metrics_names;
mod options;
mod pool;
mod retry;
mod tcp;
mod tx;

pub use bulk::{BulkInsert, Progress};
pub use conn::PooledConn;
pub use error::Error;
pub use options::{Limits, PoolOptions, RetryPolicy, Validation};
pub use pool::{Pool, Status};
pub use retry::{BoxFuture, Statement};
pub use tcp::{TcpSkip, TcpTuning};
pub use tx::Transaction;

/// `params! { "id" => 7, "name" => name }` (with `use goneaway::params;`): named parameters for
/// [`Pool::exec`]/[`Pool::exec_drop`] and their kin, from the driver.
pub use mysql_async::params;

/// A row type: `#[derive(FromRow)]` on a struct whose fields are the columns, by name, and
/// the trait itself. The derive looks for the driver by name, so bring it into scope from
/// here and name it (no direct dependency on mysql_async needed):
///
/// ```no_run
/// use goneaway::{mysql_async, params, FromRow};
///
/// #[derive(Debug, FromRow)]
/// #[mysql(crate_name = "mysql_async")]
/// struct User {
///     id: u64,
///     name: String,
/// }
///
/// # async fn f(pool: goneaway::Pool) -> Result<(), goneaway::Error> {
/// let users: Vec<User> = pool
///     .exec("SELECT id, name FROM users WHERE team = :team", params! { "team" => 7 })
///     .await?;
/// let count = pool.exec_first::<i64>("SELECT COUNT(*) FROM users WHERE team = ?", (7,)).await?;
/// let first = pool.query_first::<User>("SELECT id, name FROM users LIMIT 1").await?;
/// # let _ = (users, count, first); Ok(()) }
/// ```
pub use mysql_async::prelude::FromRow;

/// The driver, re-exported so callers use the same version (`goneaway::mysql_async::Value`).
pub use mysql_async;
