//! MySQL and MariaDB error numbers that matter when connections go away, as named constants.
//!
//! Client errors (2000–2999) come from the client library (libmysqlclient, MariaDB
//! Connector/C, and the pure drivers that reuse the numbers: PyMySQL, mysqljs, Connector/J);
//! server errors (1000–1999, 3000+) come in an error packet from the server. A few numbers
//! mean different things on MySQL and MariaDB; [`ServerError::is_mysql_inactivity`] shows how
//! the message breaks such a clash, as sqlx does for 4025.

use std::fmt;

use serde::Serialize;

// ---- client errors (libmysqlclient `errmsg.h`, MariaDB Connector/C `ma_errmsg.c`) ----

/// 2002: "Can't connect to local MySQL server through socket '%s' (%d)" — no Unix socket
/// (server down, wrong path) or, on some clients, a TCP connect failure.
pub const CR_CONNECTION_ERROR: u16 = 2002;
/// 2003: "Can't connect to MySQL server on '%s' (%d)" — TCP connect failed; the errno in
/// parentheses says why (111 refused, 110 timed out, 113 no route).
pub const CR_CONN_HOST_ERROR: u16 = 2003;
/// 2005: "Unknown MySQL server host '%s' (%d)" — the name did not resolve.
pub const CR_UNKNOWN_HOST: u16 = 2005;
/// 2006: "MySQL server has gone away" (MariaDB Connector/C 3.x: "Server has gone away") —
/// the client could not send the command: the connection was already closed.
pub const CR_SERVER_GONE_ERROR: u16 = 2006;
/// 2012: "Error in server handshake".
pub const CR_SERVER_HANDSHAKE_ERR: u16 = 2012;
/// 2013: "Lost connection to MySQL server during query" — the command was sent but no
/// (complete) answer came back: the outcome is unknown.
pub const CR_SERVER_LOST: u16 = 2013;
/// 2014: "Commands out of sync; you can't run this command now".
pub const CR_COMMANDS_OUT_OF_SYNC: u16 = 2014;
/// 2020: "Got packet bigger than 'max_allowed_packet' bytes" (client side limit).
pub const CR_NET_PACKET_TOO_LARGE: u16 = 2020;
/// 2026: "SSL connection error: %s".
pub const CR_SSL_CONNECTION_ERROR: u16 = 2026;
/// 2027: "Malformed packet".
pub const CR_MALFORMED_PACKET: u16 = 2027;
/// 2055: "Lost connection to MySQL server at '%s', system error: %d" — 2013 with the stage
/// (for example 'reading initial communication packet') and the OS errno.
pub const CR_SERVER_LOST_EXTENDED: u16 = 2055;

// ---- server errors (MySQL `share/messages_to_clients.txt`, MariaDB `errmsg-utf8.txt`) ----

/// 1040: "Too many connections" (SQLSTATE 08004).
pub const ER_CON_COUNT_ERROR: u16 = 1040;
/// 1043: "Bad handshake" (SQLSTATE 08S01).
pub const ER_HANDSHAKE_ERROR: u16 = 1043;
/// 1045: "Access denied for user '%s'@'%s' (using password: %s)" (SQLSTATE 28000).
pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
/// 1053: "Server shutdown in progress" (SQLSTATE 08S01).
pub const ER_SERVER_SHUTDOWN: u16 = 1053;
/// 1077: "%s: Normal shutdown" (written to the server error log).
pub const ER_NORMAL_SHUTDOWN: u16 = 1077;
/// 1079: "%s: Shutdown complete" (written to the server error log).
pub const ER_SHUTDOWN_COMPLETE: u16 = 1079;
/// 1080: "Forcing close of thread %ld user: '%s'" (during shutdown, SQLSTATE 08S01).
pub const ER_FORCING_CLOSE: u16 = 1080;
/// 1129: "Host '%s' is blocked because of many connection errors; unblock with
/// 'mysqladmin flush-hosts'".
pub const ER_HOST_IS_BLOCKED: u16 = 1129;
/// 1130: "Host '%s' is not allowed to connect to this MySQL server".
pub const ER_HOST_NOT_PRIVILEGED: u16 = 1130;
/// 1152: "Aborted connection %ld to db: '%s' user: '%s' (%s)" (SQLSTATE 08S01).
pub const ER_ABORTING_CONNECTION: u16 = 1152;
/// 1153: "Got a packet bigger than 'max_allowed_packet' bytes" (SQLSTATE 08S01).
pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
/// 1158: "Got an error reading communication packets" (SQLSTATE 08S01).
pub const ER_NET_READ_ERROR: u16 = 1158;
/// 1159: "Got timeout reading communication packets" (SQLSTATE 08S01).
pub const ER_NET_READ_INTERRUPTED: u16 = 1159;
/// 1160: "Got an error writing communication packets" (SQLSTATE 08S01).
pub const ER_NET_ERROR_ON_WRITE: u16 = 1160;
/// 1161: "Got timeout writing communication packets" (SQLSTATE 08S01).
pub const ER_NET_WRITE_INTERRUPTED: u16 = 1161;
/// 1184: "Aborted connection %u to db: '%s' user: '%s' host: '%s' (%s)" (SQLSTATE 08S01).
pub const ER_NEW_ABORTING_CONNECTION: u16 = 1184;
/// 1203: "User %s already has more than 'max_user_connections' active connections".
pub const ER_TOO_MANY_USER_CONNECTIONS: u16 = 1203;
/// 1205: "Lock wait timeout exceeded; try restarting transaction".
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// 1213: "Deadlock found when trying to get lock; try restarting transaction" (SQLSTATE 40001).
pub const ER_LOCK_DEADLOCK: u16 = 1213;
/// 1290: "The MySQL server is running with the %s option so it cannot execute this
/// statement" — with `--read-only` after a failover the application still talks to the old
/// primary.
pub const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
/// 1317: "Query execution was interrupted" (SQLSTATE 70100) — KILL QUERY, or a shutdown.
pub const ER_QUERY_INTERRUPTED: u16 = 1317;
/// 1461: "Can't create more than max_prepared_stmt_count statements" — the server-wide
/// limit of prepared statements, which statements a proxy keeps for reuse count against.
pub const ER_MAX_PREPARED_STMT_COUNT_REACHED: u16 = 1461;
/// 1820: "You must SET PASSWORD before executing this statement" — an account whose
/// password expired, logged in in sandbox mode.
pub const ER_MUST_CHANGE_PASSWORD: u16 = 1820;
/// 1927: "Connection was killed" (MariaDB only, SQLSTATE 70100).
pub const ER_CONNECTION_KILLED: u16 = 1927;
/// 1969: "Query execution was interrupted (max_statement_time exceeded)" (MariaDB only).
pub const ER_STATEMENT_TIMEOUT: u16 = 1969;
/// 3024: "Query execution was interrupted, maximum statement execution time exceeded"
/// (MySQL 5.7.8+ only).
pub const ER_QUERY_TIMEOUT: u16 = 3024;
/// 3032: "The server is currently in offline mode" (MySQL only).
pub const ER_SERVER_OFFLINE_MODE: u16 = 3032;
/// 4031 on MySQL 8.0.24+: "The client was disconnected by the server because of inactivity.
/// See wait_timeout and interactive_timeout for configuring this behavior." (SQLSTATE HY000),
/// sent just before the server closes an idle connection.
///
/// **Clash:** on MariaDB 10.x, 4031 is [`MARIADB_ER_REFERENCED_TRG_DOES_NOT_EXIST`].
pub const ER_CLIENT_INTERACTION_TIMEOUT: u16 = 4031;
/// 4031 on MariaDB: "Referenced trigger '%s' for the given action time and event type does
/// not exist" — nothing to do with connections. (Verified in Boost.MySQL's generated
/// `mariadb_server_errc.hpp` and mariadb-connector-nodejs' error table.)
pub const MARIADB_ER_REFERENCED_TRG_DOES_NOT_EXIST: u16 = 4031;

/// The symbol of a known error number, such as `"CR_SERVER_GONE_ERROR"` for 2006.
///
/// For 4031 this returns the MySQL symbol; see [`ServerError::symbol`] for the clash-aware
/// answer.
pub fn symbol(code: u16) -> Option<&'static str> {
    Some(match code {
        CR_CONNECTION_ERROR => "CR_CONNECTION_ERROR",
        CR_CONN_HOST_ERROR => "CR_CONN_HOST_ERROR",
        CR_UNKNOWN_HOST => "CR_UNKNOWN_HOST",
        CR_SERVER_GONE_ERROR => "CR_SERVER_GONE_ERROR",
        CR_SERVER_HANDSHAKE_ERR => "CR_SERVER_HANDSHAKE_ERR",
        CR_SERVER_LOST => "CR_SERVER_LOST",
        CR_COMMANDS_OUT_OF_SYNC => "CR_COMMANDS_OUT_OF_SYNC",
        CR_NET_PACKET_TOO_LARGE => "CR_NET_PACKET_TOO_LARGE",
        CR_SSL_CONNECTION_ERROR => "CR_SSL_CONNECTION_ERROR",
        CR_MALFORMED_PACKET => "CR_MALFORMED_PACKET",
        CR_SERVER_LOST_EXTENDED => "CR_SERVER_LOST_EXTENDED",
        ER_CON_COUNT_ERROR => "ER_CON_COUNT_ERROR",
        ER_HANDSHAKE_ERROR => "ER_HANDSHAKE_ERROR",
        ER_ACCESS_DENIED_ERROR => "ER_ACCESS_DENIED_ERROR",
        ER_SERVER_SHUTDOWN => "ER_SERVER_SHUTDOWN",
        ER_NORMAL_SHUTDOWN => "ER_NORMAL_SHUTDOWN",
        ER_SHUTDOWN_COMPLETE => "ER_SHUTDOWN_COMPLETE",
        ER_FORCING_CLOSE => "ER_FORCING_CLOSE",
        ER_HOST_IS_BLOCKED => "ER_HOST_IS_BLOCKED",
        ER_HOST_NOT_PRIVILEGED => "ER_HOST_NOT_PRIVILEGED",
        ER_ABORTING_CONNECTION => "ER_ABORTING_CONNECTION",
        ER_NET_PACKET_TOO_LARGE => "ER_NET_PACKET_TOO_LARGE",
        ER_NET_READ_ERROR => "ER_NET_READ_ERROR",
        ER_NET_READ_INTERRUPTED => "ER_NET_READ_INTERRUPTED",
        ER_NET_ERROR_ON_WRITE => "ER_NET_ERROR_ON_WRITE",
        ER_NET_WRITE_INTERRUPTED => "ER_NET_WRITE_INTERRUPTED",
        ER_NEW_ABORTING_CONNECTION => "ER_NEW_ABORTING_CONNECTION",
        ER_TOO_MANY_USER_CONNECTIONS => "ER_TOO_MANY_USER_CONNECTIONS",
        ER_LOCK_WAIT_TIMEOUT => "ER_LOCK_WAIT_TIMEOUT",
        ER_LOCK_DEADLOCK => "ER_LOCK_DEADLOCK",
        ER_OPTION_PREVENTS_STATEMENT => "ER_OPTION_PREVENTS_STATEMENT",
        ER_QUERY_INTERRUPTED => "ER_QUERY_INTERRUPTED",
        ER_CONNECTION_KILLED => "ER_CONNECTION_KILLED",
        ER_STATEMENT_TIMEOUT => "ER_STATEMENT_TIMEOUT",
        ER_QUERY_TIMEOUT => "ER_QUERY_TIMEOUT",
        ER_SERVER_OFFLINE_MODE => "ER_SERVER_OFFLINE_MODE",
        ER_CLIENT_INTERACTION_TIMEOUT => "ER_CLIENT_INTERACTION_TIMEOUT",
        _ => return None,
    })
}

/// The number of an error symbol as Node's mysql/mysql2 put it in `err.code`
/// (`"ER_CON_COUNT_ERROR"`), the inverse of [`symbol`] over the known numbers.
pub fn from_symbol(name: &str) -> Option<u16> {
    const KNOWN: [u16; 37] = [
        CR_CONNECTION_ERROR,
        CR_CONN_HOST_ERROR,
        CR_UNKNOWN_HOST,
        CR_SERVER_GONE_ERROR,
        CR_SERVER_HANDSHAKE_ERR,
        CR_SERVER_LOST,
        CR_COMMANDS_OUT_OF_SYNC,
        CR_NET_PACKET_TOO_LARGE,
        CR_SSL_CONNECTION_ERROR,
        CR_MALFORMED_PACKET,
        CR_SERVER_LOST_EXTENDED,
        ER_CON_COUNT_ERROR,
        ER_HANDSHAKE_ERROR,
        ER_ACCESS_DENIED_ERROR,
        ER_SERVER_SHUTDOWN,
        ER_NORMAL_SHUTDOWN,
        ER_SHUTDOWN_COMPLETE,
        ER_FORCING_CLOSE,
        ER_HOST_IS_BLOCKED,
        ER_HOST_NOT_PRIVILEGED,
        ER_ABORTING_CONNECTION,
        ER_NET_PACKET_TOO_LARGE,
        ER_NET_READ_ERROR,
        ER_NET_READ_INTERRUPTED,
        ER_NET_ERROR_ON_WRITE,
        ER_NET_WRITE_INTERRUPTED,
        ER_NEW_ABORTING_CONNECTION,
        ER_TOO_MANY_USER_CONNECTIONS,
        ER_LOCK_WAIT_TIMEOUT,
        ER_LOCK_DEADLOCK,
        ER_OPTION_PREVENTS_STATEMENT,
        ER_QUERY_INTERRUPTED,
        ER_CONNECTION_KILLED,
        ER_STATEMENT_TIMEOUT,
        ER_QUERY_TIMEOUT,
        ER_SERVER_OFFLINE_MODE,
        ER_CLIENT_INTERACTION_TIMEOUT,
    ];
    KNOWN.into_iter().find(|&c| symbol(c) == Some(name))
}

/// Whether a number is a client-library error (2000–2999) rather than one the server sent.
pub fn is_client_error(code: u16) -> bool {
    (2000..3000).contains(&code)
}

/// One error as a server or client library reports it: number, SQLSTATE and message.
///
/// Displays as `number (SQLSTATE): message`, or `number: message` without a SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerError {
    /// The MySQL/MariaDB error number, e.g. 2006.
    pub code: u16,
    /// The five-character SQLSTATE, when the source gave one (`HY000`, `08S01`, …).
    pub sqlstate: Option<String>,
    /// The message text as the source printed it.
    pub message: String,
}

impl ServerError {
    /// An error from its parts.
    pub fn new(code: u16, sqlstate: Option<&str>, message: impl Into<String>) -> Self {
        ServerError {
            code,
            sqlstate: sqlstate.map(str::to_string),
            message: message.into(),
        }
    }

    /// For 4031: whether this is MySQL's inactivity disconnect rather than MariaDB's
    /// unrelated trigger error. The SQLSTATE cannot tell them apart (both `HY000`), so the
    /// message decides; with no message, the gone-away context makes MySQL's meaning the
    /// likely one. Always `false` for other numbers.
    pub fn is_mysql_inactivity(&self) -> bool {
        if self.code != ER_CLIENT_INTERACTION_TIMEOUT {
            return false;
        }
        let m = self.message.to_ascii_lowercase();
        if m.contains("trigger") {
            return false;
        }
        m.is_empty() || m.contains("inactivity") || m.contains("disconnected by the server")
    }

    /// The symbol for this error, taking the MySQL/MariaDB clash on 4031 into account.
    pub fn symbol(&self) -> Option<&'static str> {
        if self.code == ER_CLIENT_INTERACTION_TIMEOUT && !self.is_mysql_inactivity() {
            return Some("ER_REFERENCED_TRG_DOES_NOT_EXIST");
        }
        symbol(self.code)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlstate {
            Some(state) => write!(f, "{} ({}): {}", self.code, state, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for ServerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_code_state_message() {
        let e = ServerError::new(2006, Some("HY000"), "MySQL server has gone away");
        assert_eq!(e.to_string(), "2006 (HY000): MySQL server has gone away");
        let e = ServerError::new(2013, None, "Lost connection");
        assert_eq!(e.to_string(), "2013: Lost connection");
    }

    #[test]
    fn symbols_round_trip() {
        assert_eq!(symbol(2006), Some("CR_SERVER_GONE_ERROR"));
        assert_eq!(from_symbol("ER_CON_COUNT_ERROR"), Some(1040));
        assert_eq!(from_symbol("ER_NO_SUCH_THING"), None);
        assert!(is_client_error(2013));
        assert!(!is_client_error(1040));
    }

    #[test]
    fn clash_4031_is_broken_by_the_message() {
        let mysql = ServerError::new(
            4031,
            Some("HY000"),
            "The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.",
        );
        assert!(mysql.is_mysql_inactivity());
        assert_eq!(mysql.symbol(), Some("ER_CLIENT_INTERACTION_TIMEOUT"));
        let mariadb = ServerError::new(
            4031,
            Some("HY000"),
            "Referenced trigger 'tr1' for the given action time and event type does not exist",
        );
        assert!(!mariadb.is_mysql_inactivity());
        assert_eq!(mariadb.symbol(), Some("ER_REFERENCED_TRG_DOES_NOT_EXIST"));
    }
}
