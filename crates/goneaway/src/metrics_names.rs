//! The names of the metrics the pool records through the `metrics` facade, and the reasons
//! used as labels. Install any `metrics` recorder (such as metrics-exporter-prometheus) to
//! collect them; without one they cost nothing.
//!
//! The gauges carry a `pool` label (see [`PoolOptions::name`](crate::PoolOptions::name)) and
//! are registered when the pool is built: install the recorder before building the pool.

/// Counter: connections opened.
pub const OPENED: &str = "goneaway_pool_connections_opened_total";
/// Counter: connections closed, by `reason` (one of the `REASON_*` values).
pub const CLOSED: &str = "goneaway_pool_connections_closed_total";
/// Counter: dead connections caught before use, by `by` (`validation`, `socket` or
/// `keepalive`).
pub const STALE_CAUGHT: &str = "goneaway_pool_stale_caught_total";
/// Counter: background keepalive pings sent.
pub const KEEPALIVE_PINGS: &str = "goneaway_pool_keepalive_pings_total";
/// Counter: retries of statements and transactions, by `cause`.
pub const RETRIES: &str = "goneaway_pool_retries_total";
/// Counter: connections that went away while in use, by `cause`.
pub const GONE_AWAY: &str = "goneaway_pool_gone_away_total";
/// Counter: idle connections found dead at checkout by a look at their socket (the server
/// closed it or wrote an error to it), by `cause` (`connection_killed` for MariaDB's 1927,
/// `idle_timeout` for MySQL's 4031, `unknown` for a bare close).
pub const GONE_AWAY_IDLE: &str = "goneaway_pool_idle_gone_away_total";
/// Counter: connections whose socket got the keepalive interval, probe count and
/// `TCP_USER_TIMEOUT` (Linux).
pub const TCP_TUNED: &str = "goneaway_pool_tcp_tuned_total";
/// Counter: connections whose socket could not be tuned, by `reason`
/// (see [`TcpSkip::as_str`](crate::TcpSkip::as_str)).
pub const TCP_TUNING_SKIPPED: &str = "goneaway_pool_tcp_tuning_skipped_total";
/// Counter: checkouts refused because the wait queue was full.
pub const QUEUE_FULL: &str = "goneaway_pool_queue_full_total";
/// Histogram: seconds a checkout waited (validation and connecting included).
pub const CHECKOUT_WAIT: &str = "goneaway_pool_checkout_wait_seconds";
/// Gauge: connections open (idle, in use, or being pinged or opened), by `pool`.
pub const OPEN: &str = "goneaway_pool_connections_open";
/// Gauge: connections idle in the pool, by `pool`.
pub const IDLE: &str = "goneaway_pool_connections_idle";
/// Gauge: connections checked out by callers, by `pool`.
pub const IN_USE: &str = "goneaway_pool_connections_in_use";
/// Gauge: callers waiting for a connection, by `pool`.
pub const WAITERS: &str = "goneaway_pool_waiters";

/// Closed because it was found dead (failed ping, lost mid-statement, timed out).
pub const REASON_DEAD: &str = "dead";
/// Closed because it reached its maximum lifetime.
pub const REASON_LIFETIME: &str = "max_lifetime";
/// Closed because it was silent longer than the limit derived from `wait_timeout`.
pub const REASON_MAX_IDLE: &str = "max_idle";
/// Closed because it was a surplus connection unused for `idle_timeout`.
pub const REASON_IDLE_TIMEOUT: &str = "idle_timeout";
/// Closed because the pool was closed.
pub const REASON_POOL_CLOSED: &str = "pool_closed";
/// Closed because its caller was cancelled (the future dropped) while a statement or a
/// ping was in flight: its reply would be read by the next caller, so it is never reused.
pub const REASON_CANCELLED: &str = "cancelled";
/// Closed because it came back in a state nobody asked for — a transaction left open,
/// `autocommit` off, a session setting changed by the pool not yet restored — and a
/// `ROLLBACK` did not make it clean.
pub const REASON_UNCLEAN: &str = "unclean";

/// Counter: connections that came back with a transaction possibly open (a dropped
/// transaction guard, an error in the last statement) and were rolled back before reuse.
pub const ROLLED_BACK: &str = "goneaway_pool_rollbacks_on_return_total";
