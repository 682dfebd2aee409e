//! The shared vocabulary: why a connection went away, and what a caller may do about it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a MySQL/MariaDB connection failed.
///
/// Every face of goneaway (explain, doctor, the pool, the proxy, watch) speaks of causes with
/// these identifiers; `as_str` gives the stable string used in JSON output.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The server closed a connection idle past `wait_timeout`/`interactive_timeout`.
    IdleTimeout,
    /// A transfer stalled past `net_read_timeout`/`net_write_timeout`.
    NetTimeout,
    /// A packet exceeded `max_allowed_packet` (server or client side).
    PacketTooLarge,
    /// The server was shut down or restarted.
    ServerRestart,
    /// The server died abnormally (signal, assertion).
    ServerCrash,
    /// The server was killed for memory (kernel OOM killer).
    OutOfMemory,
    /// Someone or something ran `KILL`.
    ConnectionKilled,
    /// Something between client and server dropped the flow.
    NetworkDrop,
    /// No connection could be made.
    ServerUnreachable,
    /// The server refused for `max_connections`.
    TooManyConnections,
    /// The host is blocked after too many connection errors.
    HostBlocked,
    /// The account or host is not allowed.
    AccessDenied,
    /// A statement time limit ended the query.
    QueryTimeout,
    /// The transaction was rolled back by deadlock.
    Deadlock,
    /// A lock wait timed out.
    LockWaitTimeout,
    /// The protocol was used wrongly (shared connection, fork, unsolicited packet).
    OutOfSync,
    /// None of the above could be told.
    Unknown,
}

impl Cause {
    /// Every cause, in the order of the vocabulary table.
    pub const ALL: [Cause; 17] = [
        Cause::IdleTimeout,
        Cause::NetTimeout,
        Cause::PacketTooLarge,
        Cause::ServerRestart,
        Cause::ServerCrash,
        Cause::OutOfMemory,
        Cause::ConnectionKilled,
        Cause::NetworkDrop,
        Cause::ServerUnreachable,
        Cause::TooManyConnections,
        Cause::HostBlocked,
        Cause::AccessDenied,
        Cause::QueryTimeout,
        Cause::Deadlock,
        Cause::LockWaitTimeout,
        Cause::OutOfSync,
        Cause::Unknown,
    ];

    /// The stable identifier used in JSON output and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::IdleTimeout => "idle_timeout",
            Cause::NetTimeout => "net_timeout",
            Cause::PacketTooLarge => "packet_too_large",
            Cause::ServerRestart => "server_restart",
            Cause::ServerCrash => "server_crash",
            Cause::OutOfMemory => "out_of_memory",
            Cause::ConnectionKilled => "connection_killed",
            Cause::NetworkDrop => "network_drop",
            Cause::ServerUnreachable => "server_unreachable",
            Cause::TooManyConnections => "too_many_connections",
            Cause::HostBlocked => "host_blocked",
            Cause::AccessDenied => "access_denied",
            Cause::QueryTimeout => "query_timeout",
            Cause::Deadlock => "deadlock",
            Cause::LockWaitTimeout => "lock_wait_timeout",
            Cause::OutOfSync => "out_of_sync",
            Cause::Unknown => "unknown",
        }
    }

    /// A few words for human output.
    pub fn title(self) -> &'static str {
        match self {
            Cause::IdleTimeout => "idle connection closed by the server (wait_timeout)",
            Cause::NetTimeout => "transfer stalled past net_read_timeout/net_write_timeout",
            Cause::PacketTooLarge => "packet larger than max_allowed_packet",
            Cause::ServerRestart => "server shut down or restarted",
            Cause::ServerCrash => "server crashed",
            Cause::OutOfMemory => "server killed for memory (OOM killer)",
            Cause::ConnectionKilled => "connection killed (KILL)",
            Cause::NetworkDrop => "network dropped the connection",
            Cause::ServerUnreachable => "server unreachable",
            Cause::TooManyConnections => "too many connections (max_connections)",
            Cause::HostBlocked => "host blocked (max_connect_errors)",
            Cause::AccessDenied => "access denied",
            Cause::QueryTimeout => "statement time limit reached",
            Cause::Deadlock => "deadlock: transaction rolled back",
            Cause::LockWaitTimeout => "lock wait timeout",
            Cause::OutOfSync => "protocol out of sync (connection shared or misused)",
            Cause::Unknown => "unknown cause",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when parsing an unknown cause or retry identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown identifier {0:?}")]
#[non_exhaustive]
pub struct UnknownIdentifier(pub String);

impl FromStr for Cause {
    type Err = UnknownIdentifier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cause::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownIdentifier(s.to_string()))
    }
}

/// What a caller may safely do after an error.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Nothing reached the server: retrying cannot run anything twice.
    SafeToRetry,
    /// The connection is gone but the statement never ran: open a new connection, then retry.
    ReconnectThenRetry,
    /// The server may have run it (outcome unknown): retry only an idempotent statement.
    RetryIfIdempotent,
    /// The whole transaction was rolled back: rerun it from its start.
    RetryTransaction,
    /// It will fail the same way: fix the cause first.
    DoNotRetry,
}

impl Retry {
    /// Every retry advice, safest first.
    pub const ALL: [Retry; 5] = [
        Retry::SafeToRetry,
        Retry::ReconnectThenRetry,
        Retry::RetryIfIdempotent,
        Retry::RetryTransaction,
        Retry::DoNotRetry,
    ];

    /// The stable identifier used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::SafeToRetry => "safe_to_retry",
            Retry::ReconnectThenRetry => "reconnect_then_retry",
            Retry::RetryIfIdempotent => "retry_if_idempotent",
            Retry::RetryTransaction => "retry_transaction",
            Retry::DoNotRetry => "do_not_retry",
        }
    }
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Retry {
    type Err = UnknownIdentifier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Retry::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownIdentifier(s.to_string()))
    }
}
