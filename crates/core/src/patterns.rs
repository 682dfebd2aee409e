//! The table of error strings that drivers, frameworks, servers and kernels really print.
//!
//! Each rule names where its string comes from (driver and file). Rules are tried in order;
//! the first that matches and accepts the text wins, so specific strings come before
//! generic ones.

use std::io::ErrorKind;
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};

use crate::cause::{Cause, Retry};
use crate::classify::{aborted_connection, classify_code, io_verdict, Diagnosis, Verdict};
use crate::codes;

use Cause::*;

type Handler = Box<dyn Fn(&Captures<'_>, &str) -> Option<Diagnosis> + Send + Sync>;

/// How a rule relates to the lines before it when scanning a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// A finding of its own.
    Own,
    /// A continuation line that adds nothing: folded into a finding just before it.
    Absorb,
    /// A continuation line that sharpens the finding just before it (its diagnosis wins).
    Refine,
}

pub(crate) struct Rule {
    /// Groups findings: lines of the same cause, code and group are one finding.
    pub group: &'static str,
    /// Which ecosystem prints this (for the report).
    pub source: &'static str,
    pub context: Context,
    pattern: &'static str,
    handler: Handler,
}

/// A rule that matched, with its diagnosis.
pub(crate) struct Hit {
    pub group: &'static str,
    pub source: &'static str,
    pub context: Context,
    pub diagnosis: Diagnosis,
}

struct Table {
    rules: Vec<Rule>,
    regexes: Vec<Regex>,
    set: RegexSet,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let rules = rules();
    let regexes = rules
        .iter()
        .map(|r| Regex::new(&ascii_boundaries(r.pattern)).expect("valid rule pattern"))
        .collect();
    let set =
        RegexSet::new(rules.iter().map(|r| ascii_boundaries(r.pattern))).expect("valid rule set");
    Table {
        rules,
        regexes,
        set,
    }
});

/// A rule's pattern with ASCII word boundaries (`(?-u:\b)`). On a line holding any non-ASCII
/// character, a Unicode `\b` makes the regex engine leave its DFA for a slow fallback that
/// runs the whole set: about 100 µs a line instead of 0.4 µs, minutes for a 16 MiB log of
/// such lines. The words the rules look for are ASCII; the one difference is that a
/// non-ASCII letter next to one of them now counts as a boundary.
fn ascii_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

/// The first rule that recognises `text`, if any.
pub(crate) fn match_text(text: &str) -> Option<Hit> {
    let table = &*TABLE;
    for i in table.set.matches(text).iter() {
        let Some(caps) = table.regexes[i].captures(text) else {
            continue;
        };
        let rule = &table.rules[i];
        if let Some(diagnosis) = (rule.handler)(&caps, text) {
            return Some(Hit {
                group: rule.group,
                source: rule.source,
                context: rule.context,
                diagnosis,
            });
        }
    }
    None
}

/// Classifies one message if any rule recognises it.
pub(crate) fn classify_known(text: &str) -> Option<Diagnosis> {
    match_text(text).map(|h| h.diagnosis)
}

/// Classifies one error message as pasted from any ecosystem.
///
/// Falls back to a diagnosis with cause `unknown` (and `do_not_retry`) when nothing in the
/// text is recognised.
pub fn classify_text(text: &str) -> Diagnosis {
    classify_known(text).unwrap_or_else(|| {
        Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
            .note("goneaway found no MySQL/MariaDB connection error it knows in this text.")
            .finish()
    })
}

// ---- rule constructors ----

fn rule(
    group: &'static str,
    source: &'static str,
    pattern: &'static str,
    handler: impl Fn(&Captures<'_>, &str) -> Option<Diagnosis> + Send + Sync + 'static,
) -> Rule {
    Rule {
        group,
        source,
        context: Context::Own,
        pattern,
        handler: Box::new(handler),
    }
}

fn context(mut r: Rule, context: Context) -> Rule {
    r.context = context;
    r
}

/// The message is a known error whose number the text does not print.
fn fixed(source: &'static str, pattern: &'static str, code: u16) -> Rule {
    rule("code", source, pattern, move |c, _| {
        let msg = c.get(0).map_or("", |m| m.as_str());
        Some(classify_code(code, None, Some(msg)))
    })
}

/// The text prints the number (named groups `code`, optional `state`, `msg`/`msg1`/`msg2`).
fn coded(source: &'static str, pattern: &'static str) -> Rule {
    rule("code", source, pattern, |c, _| {
        let code: u16 = c.name("code")?.as_str().parse().ok()?;
        let state = c.name("state").map(|m| m.as_str());
        let msg = ["msg", "msg1", "msg2"]
            .iter()
            .find_map(|n| c.name(n))
            .map_or("", |m| m.as_str());
        Some(classify_code(
            code,
            state,
            Some(strip_framework_suffix(msg)),
        ))
    })
}

/// A plain I/O failure.
fn io(group: &'static str, source: &'static str, pattern: &'static str, kind: ErrorKind) -> Rule {
    rule(group, source, pattern, move |_, _| {
        Some(io_verdict(kind).finish())
    })
}

fn verdict(
    group: &'static str,
    source: &'static str,
    pattern: &'static str,
    make: fn() -> Verdict,
) -> Rule {
    rule(group, source, pattern, move |_, _| Some(make().finish()))
}

/// Laravel appends " (Connection: mysql, SQL: …)" (10+) or " (SQL: …)" (older) to the PDO
/// message (`Illuminate/Database/QueryException.php`); SQLAlchemy appends
/// "[SQL: …]" and "(Background on this error at: …)".
fn strip_framework_suffix(msg: &str) -> &str {
    let cut = [
        " (Connection: ",
        " (SQL: ",
        " [SQL: ",
        " (Background on this error",
    ]
    .iter()
    .filter_map(|s| msg.find(s))
    .min();
    cut.map_or(msg, |i| &msg[..i]).trim()
}

fn parse_number(s: &str) -> Option<u64> {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The causes of a connection found dead on use, when nothing more is known.
const DEAD_ON_USE: &[(Cause, f64)] = &[
    (IdleTimeout, 0.5),
    (NetworkDrop, 0.15),
    (ServerRestart, 0.1),
    (ConnectionKilled, 0.1),
    (ServerCrash, 0.08),
    (OutOfMemory, 0.07),
];

fn rules() -> Vec<Rule> {
    vec![
        // ---------------- server error logs ----------------
        // MySQL 5.7/8.0 and MariaDB, sql/sql_connect.cc (ER_NEW_ABORTING_CONNECTION 1184;
        // MySQL 8 logs it as [MY-010914]):
        // "Aborted connection 123 to db: 'x' user: 'y' host: 'z' (Got timeout reading communication packets)"
        rule(
            "aborted-connection",
            "MySQL/MariaDB server error log",
            r"Aborted connection \d+ to db:.*?\((?P<reason>[^()]*)\)\s*\.?\s*$",
            |c, _| Some(aborted_connection(&c["reason"].to_ascii_lowercase()).finish()),
        ),
        // MySQL 8 logs unauthenticated failures as "[MY-010914] [Server] Got an error reading
        // communication packets" without "Aborted connection".
        rule(
            "aborted-connection",
            "MySQL/MariaDB server error log",
            r"(?i)Got (?:an error|timeout) (?:reading|writing) communication packets\s*\.?\s*$",
            |_, t| Some(aborted_connection(&t.to_ascii_lowercase()).finish()),
        ),
        // MariaDB with log_warnings >= 4, sql/net_serv.cc (my_real_read):
        // "Could not read packet: fd: 43  state: 1  read_length: 4  errno: 110  vio_errno: 1159  length: -1"
        // vio_errno is the error the read ended with: 1159 a timeout (as "Got timeout reading
        // communication packets"), 1153 a packet over max_allowed_packet, 1158 a read error.
        rule(
            "could-not-read-packet",
            "MariaDB server error log",
            r"Could not read packet:.*vio_errno:\s*(?P<vio>\d+)",
            |c, _| {
                let reason = match &c["vio"] {
                    "1159" => "got timeout reading communication packets",
                    "1153" => "got a packet bigger than 'max_allowed_packet' bytes",
                    _ => "got an error reading communication packets",
                };
                Some(aborted_connection(reason).finish())
            },
        ),
        // Crash banner, sql/signal_handler.cc (MySQL) / sql/signal_handler.cc (MariaDB):
        // "mysqld got signal 11 ;" / "[ERROR] mariadbd got signal 6 ;"
        verdict(
            "server-crash",
            "MySQL/MariaDB server error log",
            r"(?i)\b(?:mysqld|mariadbd|mysqld-debug|mariadbd-debug)\b[^\n]*got signal \d+",
            || {
                Verdict::new(
                    &[(ServerCrash, 0.9), (OutOfMemory, 0.1)],
                    Retry::RetryIfIdempotent,
                )
                .note("The server error log shows the server process crashing on a signal.")
                .lost(true)
            },
        ),
        // InnoDB assertion: "InnoDB: Assertion failure in file …" (5.7, MariaDB) and
        // "[ERROR] [MY-013183] [InnoDB] Assertion failure: …" (8.0).
        verdict(
            "server-crash",
            "MySQL/MariaDB server error log",
            r"Assertion failure",
            || {
                Verdict::new(&[(ServerCrash, 0.95), (Unknown, 0.05)], Retry::RetryIfIdempotent)
                    .note("The server error log shows a failed internal assertion, after which the server aborts.")
                    .lost(true)
            },
        ),
        // The lines after the banner: "This could be because you hit a bug. It is also
        // possible that this binary or one of the libraries it was linked against is corrupt"
        // (MySQL 5.7), "Most likely, you have hit a bug" (MySQL 8), "Sorry, we probably made a
        // mistake, and this is a bug." (MariaDB 10.5+).
        context(
            verdict(
                "server-crash",
                "MySQL/MariaDB server error log",
                r"This could be because you hit a bug|you have hit a bug|we probably made a mistake, and this is a bug",
                || {
                    Verdict::new(
                        &[(ServerCrash, 0.9), (OutOfMemory, 0.1)],
                        Retry::RetryIfIdempotent,
                    )
                    .note("The server error log shows the crash banner.")
                    .lost(true)
                },
            ),
            Context::Absorb,
        ),
        // Restart after a crash: InnoDB "Starting crash recovery" (MySQL 5.7, MariaDB),
        // "Database was not shutdown normally!".
        verdict(
            "crash-recovery",
            "MySQL/MariaDB server error log",
            r"(?i)InnoDB:? (?:\[\w+\] )?(?:Starting crash recovery|Database was not shut ?down normally)",
            || {
                Verdict::new(&[(ServerCrash, 0.55), (OutOfMemory, 0.35), (Unknown, 0.1)], Retry::RetryIfIdempotent)
                    .note("The server started after an unclean stop (crash recovery): it crashed or was killed, for example by the OOM killer.")
                    .tell("A crash banner ('got signal') before it means a crash; none, with an OOM line in the kernel log, means out_of_memory")
                    .lost(true)
            },
        ),
        // Kernel OOM killer (mm/oom_kill.c): "Out of memory: Killed process 1234 (mysqld)
        // total-vm:…", "oom-kill:constraint=…,task=mariadbd,pid=…", "Memory cgroup out of
        // memory: Killed process 1234 (mysqld)".
        verdict(
            "oom-kill",
            "Linux kernel log",
            r"(?i)(?:Kill(?:ed)? process \d+ \((?:mysqld|mariadbd|mysqld_safe|mariadbd-safe)\)|oom-kill:.*\btask=(?:mysqld|mariadbd)\b)",
            || {
                Verdict::new(
                    &[(OutOfMemory, 0.95), (Unknown, 0.05)],
                    Retry::RetryIfIdempotent,
                )
                .note("The kernel log shows the OOM killer ending the database server.")
                .lost(true)
            },
        ),
        // Shutdown and startup (sql/mysqld.cc): "Normal shutdown" (ER_NORMAL_SHUTDOWN),
        // "mysqld: Shutdown complete" (ER_SHUTDOWN_COMPLETE), "ready for connections",
        // "Forcing close of thread" (ER_FORCING_CLOSE), "Received SHUTDOWN from user".
        verdict(
            "server-restart",
            "MySQL/MariaDB server error log",
            r"(?i)(?:\bNormal shutdown\b|\bShutdown complete\b|ready for connections|Received SHUTDOWN from user|Forcing close of thread \d+)",
            || {
                Verdict::new(&[(ServerRestart, 0.95), (Unknown, 0.05)], Retry::ReconnectThenRetry)
                    .note("The server error log records a shutdown or a (re)start; every connection open at the time was closed.")
                    .lost(true)
            },
        ),
        // ---------------- Java: Connector/J and HikariCP ----------------
        // HikariCP PoolBase.isConnectionAlive: "HikariPool-1 - Failed to validate connection
        // com.mysql.cj.jdbc.ConnectionImpl@1a2b3c (No operations allowed after connection
        // closed.). Possibly consider using a shorter maxLifetime value."
        verdict(
            "hikari-validate",
            "HikariCP",
            r"Failed to validate connection",
            || {
                Verdict::new(&[(IdleTimeout, 0.75), (NetworkDrop, 0.15), (ServerRestart, 0.1)], Retry::SafeToRetry)
                    .note("HikariCP found a pooled connection dead when it validated it, discarded it and handed out another: the application itself saw no error, but maxLifetime is longer than the server (or a middlebox) keeps idle connections.")
                    .fix("Set HikariCP maxLifetime (and idleTimeout) a few seconds below wait_timeout and below any middlebox idle timeout, and keepaliveTime below both")
                    .lost(true)
            },
        ),
        // HikariPool.createTimeoutException: "Connection is not available, request timed out
        // after 30000ms." — sqlx: "pool timed out while waiting for an open connection".
        verdict(
            "pool-timeout",
            "HikariCP / sqlx pool",
            r"(?i)(?:Connection is not available, request timed out after|pool timed out while waiting for an open connection)",
            || {
                Verdict::new(&[(TooManyConnections, 0.45), (ServerUnreachable, 0.35), (Unknown, 0.2)], Retry::SafeToRetry)
                    .note("The application's pool could not hand out a connection in time: all were busy or leaked, or new ones could not be opened. Nothing was sent to the server.")
                    .tell("If the pool is at its maximum with every connection in use, it is exhaustion (slow queries, leaks); if it is below its maximum, opening connections fails: look for the connect error logged before this")
            },
        ),
        // Connector/J CommunicationsException (ExceptionFactory.createLinkFailureMessageBasedOnHeuristics,
        // LocalizedErrorMessages.properties CommunicationsException.*):
        // "The last packet sent successfully to the server was 0 milliseconds ago. The driver
        // has not received any packets from the server."
        context(
            verdict(
                "jdbc-link-failure",
                "MySQL Connector/J",
                r"The driver has not received any packets from the server",
                || {
                    Verdict::new(&[(ServerUnreachable, 0.8), (NetworkDrop, 0.2)], Retry::SafeToRetry)
                        .note("Connector/J could not open the connection: it never received a packet from the server.")
                },
            ),
            Context::Refine,
        ),
        // "… is longer than the server configured value of 'wait_timeout'. You should
        // consider either expiring and/or testing connection validity before use …"
        context(
            verdict(
                "jdbc-link-failure",
                "MySQL Connector/J",
                r"longer than the server configured value of\s+'wait_timeout'",
                || {
                    Verdict::new(&[(IdleTimeout, 0.9), (NetworkDrop, 0.1)], Retry::ReconnectThenRetry)
                        .note("Connector/J noticed the connection had been idle longer than the server's wait_timeout.")
                        .lost(true)
                },
            ),
            Context::Refine,
        ),
        // "The last packet successfully received from the server was 123,456 milliseconds
        // ago. The last packet sent successfully to the server was 0 milliseconds ago."
        context(
            rule(
                "jdbc-link-failure",
                "MySQL Connector/J",
                r"The last packet successfully received from the server was (?P<recv>[\d,.\s]+?) milliseconds ago",
                |c, _| Some(jdbc_last_packet(parse_number(&c["recv"])?).finish()),
            ),
            Context::Refine,
        ),
        // com.mysql.cj.jdbc.exceptions.CommunicationsException: Communications link failure
        // (SQLSTATE 08S01); also Caused by: com.mysql.cj.exceptions.CJCommunicationsException.
        verdict(
            "jdbc-link-failure",
            "MySQL Connector/J",
            r"Communications link failure",
            || {
                Verdict::new(&[(IdleTimeout, 0.35), (NetworkDrop, 0.25), (ServerUnreachable, 0.12), (ServerRestart, 0.1), (ServerCrash, 0.1), (OutOfMemory, 0.08)], Retry::RetryIfIdempotent)
                    .note("Connector/J lost (or could not make) the connection. The lines after it ('The last packet successfully received from the server was … milliseconds ago') tell how long it had been quiet.")
                    .tell("A long 'last packet received' time (minutes or hours) means the connection sat idle and was closed (idle_timeout, or a middlebox); a short one means it broke while in use")
                    .lost(true)
            },
        ),
        // Connector/J: "No operations allowed after connection closed." (Connection.23 /
        // SQLError.createSQLException in ConnectionImpl.checkClosed)
        verdict(
            "jdbc-closed",
            "MySQL Connector/J",
            r"No operations allowed after (?:connection|statement) closed",
            || {
                Verdict::new(DEAD_ON_USE, Retry::ReconnectThenRetry)
                    .note("The application used a JDBC connection that had already been closed after an earlier communications failure; the statement was not sent.")
                    .tell("Look for the first CommunicationsException on that connection: it tells why it closed")
                    .lost(true)
            },
        ),
        // Connector/J: "Can not read response from server. Expected to read 4 bytes, read 0
        // bytes before connection was unexpectedly lost." (java.io.EOFException)
        rule(
            "unexpected-eof",
            "MySQL Connector/J",
            r"Can ?not read response from server\. Expected to read \d+ bytes, read \d+ bytes before connection was unexpectedly lost",
            |_, _| Some(io_verdict(ErrorKind::UnexpectedEof).finish()),
        ),
        // Connector/J PacketTooBigException: "Packet for query is too large (4,739,923 >
        // 1,048,576). You can change this value on the server by setting the
        // 'max_allowed_packet' variable." — go-sql-driver errors.go ErrPktTooLarge: "packet
        // for query is too large. Try adjusting the `Config.MaxAllowedPacket`".
        verdict(
            "packet-too-large",
            "Connector/J / go-sql-driver",
            r"(?i)(?:PacketTooBigException|packet for query is too large)",
            || {
                Verdict::new(&[(PacketTooLarge, 1.0)], Retry::DoNotRetry)
                    .note("The driver refused to send a statement larger than max_allowed_packet.")
            },
        ),
        // java.net.SocketTimeoutException: Read timed out (Connector/J socketTimeout)
        verdict(
            "client-read-timeout",
            "Java (java.net)",
            r"SocketTimeoutException: Read timed out",
            || {
                Verdict::new(&[(QueryTimeout, 0.45), (NetworkDrop, 0.35), (NetTimeout, 0.2)], Retry::RetryIfIdempotent)
                    .note("The client's socket read timeout (Connector/J socketTimeout) expired while waiting for an answer; the statement may still be running or may have finished.")
                    .tell("A slow statement exceeds socketTimeout every time; a dropped connection only sometimes")
                    .lost(true)
            },
        ),
        // ---------------- PHP: mysqlnd, PDO, mysqli, Laravel ----------------
        // mysqlnd mysqlnd_protocol_frame_codec.c: "Packets out of order. Expected %u received
        // %u. Packet size=%zu" — php-src bug #81335: this is what MySQL 8's 4031 inactivity
        // error looks like to older mysqlnd.
        verdict(
            "php-packets-out-of-order",
            "PHP mysqlnd",
            r"Packets out of order\. Expected \d+ received \d+",
            || {
                Verdict::new(&[(IdleTimeout, 0.55), (OutOfSync, 0.35), (NetworkDrop, 0.1)], Retry::ReconnectThenRetry)
                    .note("mysqlnd received a packet it did not expect. After an idle period this is MySQL 8.0.24+'s inactivity error (4031) arriving on a connection the server closed (php-src bug #81335); under concurrency it is a connection shared between processes.")
                    .lost(true)
            },
        ),
        // mysqlnd mysqlnd_wireprotocol.c: "Error while sending %s packet. PID=%d"
        rule(
            "code",
            "PHP mysqlnd",
            r"Error while sending \w+ packet\. PID=\d+",
            |c, _| {
                Some(classify_code(
                    codes::CR_SERVER_GONE_ERROR,
                    None,
                    Some(&c[0]),
                ))
            },
        ),
        // PDO / Laravel: "SQLSTATE[HY000]: General error: 2006 MySQL server has gone away
        // (Connection: mysql, SQL: select …)"
        coded(
            "PHP PDO / Laravel",
            r"SQLSTATE\[(?P<state>[0-9A-Z]{5})\]: [^:]{1,60}: (?P<code>\d{4}) (?P<msg>.*)",
        ),
        // PDO connect errors: "SQLSTATE[HY000] [2002] Connection refused"
        coded(
            "PHP PDO / Laravel",
            r"SQLSTATE\[(?P<state>[0-9A-Z]{5})\] \[(?P<code>\d{4})\] (?P<msg>.*)",
        ),
        // ---------------- numbered errors, any client ----------------
        // mysql/mariadb CLI: "ERROR 2006 (HY000): MySQL server has gone away";
        // "ERROR 2013 (HY000) at line 12: Lost connection …"; mysql_async ServerError
        // Display "ERROR {code} ({state}): {message}"; go-sql-driver errors.go MySQLError:
        // "Error 1205 (HY000): Lock wait timeout exceeded …" / "Error 1205: …".
        coded(
            "mysql CLI / mysql_async / go-sql-driver",
            r"(?i)\bERROR:? (?P<code>\d{4})(?: \((?P<state>[0-9A-Z]{5})\))?(?: at line \d+)?: (?P<msg>.*)",
        ),
        // Python DB-API (PyMySQL err.py, mysqlclient/MySQLdb, SQLAlchemy and Django wrappers):
        // "pymysql.err.OperationalError: (2006, \"MySQL server has gone away (BrokenPipeError(32, 'Broken pipe'))\")"
        coded(
            "Python (PyMySQL / MySQLdb / SQLAlchemy / Django)",
            r#"\((?P<code>\d{4}), ?(?:"(?P<msg1>[^"]*)"|'(?P<msg2>[^']*)')\)"#,
        ),
        // PyMySQL connections.py _execute_command on a closed connection: InterfaceError(0, '')
        verdict(
            "pymysql-closed",
            "Python (PyMySQL)",
            r#"InterfaceError: \(0, (?:''|"")\)"#,
            || {
                Verdict::new(DEAD_ON_USE, Retry::ReconnectThenRetry)
                    .note("PyMySQL was asked to use a connection that it had already closed after an earlier error; nothing was sent.")
                    .tell("Look for the first OperationalError on that connection; with SQLAlchemy, pool_pre_ping=True replaces such connections")
                    .lost(true)
            },
        ),
        // sqlx (sqlx-core error.rs "error returned from database: {0}", sqlx-mysql
        // MySqlDatabaseError) and goneaway's own ServerError Display: "1205 (HY000): …"
        coded(
            "sqlx / goneaway",
            r"\b(?P<code>[1-4]\d{3}) \((?P<state>[0-9A-Z]{5})\): (?P<msg>.*)",
        ),
        // ---------------- Node.js: mysqljs/mysql and mysql2 ----------------
        // mysqljs lib/protocol/Protocol.js and mysql2 lib/connection.js:
        // "Error: Connection lost: The server closed the connection." code PROTOCOL_CONNECTION_LOST
        verdict(
            "node-connection-lost",
            "Node.js mysql / mysql2",
            r"Connection lost: The server closed the connection|\bPROTOCOL_CONNECTION_LOST\b",
            || {
                Verdict::new(DEAD_ON_USE, Retry::RetryIfIdempotent)
                    .note("The server (or something in between) closed the socket. If a query was in flight its outcome is unknown; if the connection was idle, the next query fails with 'Cannot enqueue Query after fatal error'.")
                    .fix("Use a pool (mysql.createPool, or mysql2 createPool with idleTimeout below wait_timeout and enableKeepAlive: true) instead of one long-lived connection")
                    .lost(true)
            },
        ),
        // mysqljs Protocol.js _validateEnqueue: "Cannot enqueue Query after fatal error."
        // (PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR); mysql2 lib/connection.js: "Can't add new
        // command when connection is in closed state".
        verdict(
            "node-dead-connection",
            "Node.js mysql / mysql2",
            r"Cannot enqueue \w+ after fatal error|PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR|Can't add new command when connection is in closed state",
            || {
                Verdict::new(DEAD_ON_USE, Retry::ReconnectThenRetry)
                    .note("The application queued a query on a connection that had already died (an earlier fatal error, usually 'Connection lost'); the query was never sent.")
                    .fix("Use a pool rather than one global connection: a pool replaces dead connections")
                    .lost(true)
            },
        ),
        // mysqljs Protocol.js: "Cannot enqueue Query after invoking quit." / "after being destroyed."
        verdict(
            "node-used-after-close",
            "Node.js mysql",
            r"Cannot enqueue \w+ after (?:invoking quit|being destroyed)",
            || {
                Verdict::new(&[(Unknown, 1.0)], Retry::ReconnectThenRetry)
                    .note("The application used a connection after it closed it itself (end() or destroy()); the query was never sent. This is a bug in the application's connection handling, not the server.")
            },
        ),
        // mysqljs lib/protocol/sequences/Sequence.js: "Query inactivity timeout" /
        // "Handshake inactivity timeout" (PROTOCOL_SEQUENCE_TIMEOUT)
        verdict(
            "client-read-timeout",
            "Node.js mysql",
            r"Query inactivity timeout",
            || {
                Verdict::new(
                    &[(QueryTimeout, 0.5), (NetworkDrop, 0.35), (NetTimeout, 0.15)],
                    Retry::RetryIfIdempotent,
                )
                .note("The query's client-side timeout expired with no data from the server.")
                .lost(true)
            },
        ),
        rule(
            "code",
            "Node.js mysql",
            r"Handshake inactivity timeout",
            |_, _| {
                Some(classify_code(
                    codes::CR_SERVER_LOST,
                    None,
                    Some("Lost connection at 'handshake: reading initial communication packet' (timed out)"),
                ))
            },
        ),
        // mysqljs/mysql2 put the server's symbol in err.code and the message as
        // "Error: ER_CON_COUNT_ERROR: Too many connections" or "code: 'ER_LOCK_DEADLOCK'".
        rule(
            "code",
            "Node.js mysql / mysql2",
            r"\b(?P<sym>(?:ER|CR)_[A-Z0-9_]+)\b(?::\s*(?P<msg>.*))?",
            |c, _| {
                let code = codes::from_symbol(&c["sym"])?;
                let msg = c.name("msg").map_or("", |m| m.as_str());
                Some(classify_code(code, None, Some(msg)))
            },
        ),
        // util.inspect of a mysql2 error: "errno: 1040,"
        rule(
            "code",
            "Node.js mysql / mysql2",
            r"\berrno: (?P<code>[1-4]\d{3})\b",
            |c, _| {
                let code: u16 = c["code"].parse().ok()?;
                codes::symbol(code)?;
                Some(classify_code(code, None, None))
            },
        ),
        // ---------------- Go: go-sql-driver/mysql and database/sql ----------------
        // packets.go writePacket / connection.go: mc.log("closing bad idle connection: ", err)
        verdict(
            "go-bad-idle",
            "Go (go-sql-driver/mysql)",
            r"closing bad idle connection",
            || {
                Verdict::new(&[(IdleTimeout, 0.6), (NetworkDrop, 0.25), (ServerRestart, 0.08), (ConnectionKilled, 0.07)], Retry::ReconnectThenRetry)
                    .note("go-sql-driver found a pooled connection already closed by the other end before sending anything, closed it and returned driver.ErrBadConn, so database/sql retried on another connection.")
                    .fix("Set db.SetConnMaxLifetime / SetConnMaxIdleTime below wait_timeout (and below any middlebox idle timeout) to stop these")
                    .lost(true)
            },
        ),
        // errors.go ErrBusyBuffer "busy buffer"; ErrPktSync "commands out of sync. You can't
        // run this command now"; ErrPktSyncMul "commands out of sync. Did you run multiple
        // statements at once?"
        verdict(
            "out-of-sync",
            "Go (go-sql-driver/mysql)",
            r"\bbusy buffer\b",
            || {
                Verdict::new(&[(OutOfSync, 0.9), (Unknown, 0.1)], Retry::DoNotRetry)
                    .note("go-sql-driver was asked to send while the previous result was still being read: rows not closed, or one connection (sql.Conn/Tx) used by several goroutines.")
            },
        ),
        // database/sql driver.ErrBadConn: "driver: bad connection"; errors.go ErrInvalidConn:
        // "invalid connection"
        verdict(
            "go-bad-conn",
            "Go (database/sql / go-sql-driver/mysql)",
            r"driver: bad connection|\binvalid connection\b",
            || {
                Verdict::new(DEAD_ON_USE, Retry::RetryIfIdempotent)
                    .note("The Go driver found the connection broken (closed by the server or the network) while using it.")
                    .tell("Look for the '[mysql] … packets.go' line logged just before: 'unexpected EOF' means the server closed it")
                    .lost(true)
            },
        ),
        // packets.go readPacket: mc.log(err) prints "[mysql] 2024/01/01 12:00:00
        // packets.go:37: unexpected EOF" (io.ErrUnexpectedEOF); Rust std: "unexpected end of
        // file"; mysql_async io/read_packet.rs: io::Error(UnexpectedEof, "connection closed")
        // displayed as "Input/output error: Input/output error: connection closed".
        io(
            "unexpected-eof",
            "Go / Rust (mysql_async, sqlx)",
            r"(?i)\bunexpected EOF\b|unexpected end of file|Input/output error: (?:Input/output error: )?connection closed",
            ErrorKind::UnexpectedEof,
        ),
        // ---------------- Rust: mysql_async (0.37 error/mod.rs) ----------------
        // DriverError::ConnectionClosed "Connection to the server is closed."
        verdict(
            "mysql-async-closed",
            "Rust (mysql_async)",
            r"Connection to the server is closed\.",
            || {
                Verdict::new(DEAD_ON_USE, Retry::ReconnectThenRetry)
                    .note("mysql_async found the connection already closed before sending, so nothing ran.")
                    .lost(true)
            },
        ),
        // DriverError::PacketOutOfOrder "Packet out of order."; mysql_common
        // PacketCodecError::PacketsOutOfSync "Packets out of sync"
        verdict(
            "out-of-sync",
            "Rust (mysql_async)",
            r"Packet out of order\.|Packets out of sync",
            || {
                Verdict::new(&[(OutOfSync, 0.6), (IdleTimeout, 0.2), (NetworkDrop, 0.2)], Retry::DoNotRetry)
                    .note("The driver received a packet with an unexpected sequence number; the connection's protocol state is broken.")
                    .lost(true)
            },
        ),
        // DriverError::PacketTooLarge "Packet too large."; PacketCodecError::PacketTooLarge
        // "Packet is larger than max_allowed_packet"
        verdict(
            "packet-too-large",
            "Rust (mysql_async)",
            r"Packet too large\.|Packet is larger than max_allowed_packet",
            || {
                Verdict::new(&[(PacketTooLarge, 1.0)], Retry::DoNotRetry)
                    .note("The driver refused a packet larger than max_allowed_packet.")
            },
        ),
        // DriverError::PoolDisconnected "Pool was disconnected."
        verdict(
            "mysql-async-pool-disconnected",
            "Rust (mysql_async)",
            r"Pool was disconnected\.",
            || {
                Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
                    .note("The application disconnected its mysql_async pool and then used it: application shutdown, not the server.")
            },
        ),
        // ---------------- bare messages (libmysqlclient errmsg, server errmsg) ----------------
        fixed(
            "MySQL/MariaDB client library",
            r"(?i)\b(?:MySQL )?server has gone away\b.*",
            codes::CR_SERVER_GONE_ERROR,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"(?i)Lost connection to (?:MySQL |MariaDB )?server (?:at '[^']*'|during query).*",
            codes::CR_SERVER_LOST,
        ),
        fixed(
            "MySQL 8 server",
            r"disconnected by the server because of inactivity",
            codes::ER_CLIENT_INTERACTION_TIMEOUT,
        ),
        // mysql CLI client/mysql.cc reconnect: "No connection. Trying to reconnect..."
        context(
            fixed(
                "mysql CLI",
                r"No connection\. Trying to reconnect",
                codes::CR_SERVER_GONE_ERROR,
            ),
            Context::Absorb,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"(?i)\bToo many connections\b",
            codes::ER_CON_COUNT_ERROR,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"already has more than 'max_user_connections' active connections",
            codes::ER_TOO_MANY_USER_CONNECTIONS,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"is blocked because of many connection errors",
            codes::ER_HOST_IS_BLOCKED,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"is not allowed to connect to this (?:MySQL|MariaDB) server",
            codes::ER_HOST_NOT_PRIVILEGED,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"Access denied for user",
            codes::ER_ACCESS_DENIED_ERROR,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"Deadlock found when trying to get lock",
            codes::ER_LOCK_DEADLOCK,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"Lock wait timeout exceeded",
            codes::ER_LOCK_WAIT_TIMEOUT,
        ),
        fixed(
            "MySQL server",
            r"maximum statement execution time exceeded",
            codes::ER_QUERY_TIMEOUT,
        ),
        fixed(
            "MariaDB server",
            r"max_statement_time exceeded",
            codes::ER_STATEMENT_TIMEOUT,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"Query execution was interrupted",
            codes::ER_QUERY_INTERRUPTED,
        ),
        fixed(
            "MariaDB server",
            r"\bConnection was killed\b",
            codes::ER_CONNECTION_KILLED,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"Server shutdown in progress",
            codes::ER_SERVER_SHUTDOWN,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"Got a packet bigger than 'max_allowed_packet' bytes",
            codes::ER_NET_PACKET_TOO_LARGE,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"Got packet bigger than 'max_allowed_packet'",
            codes::CR_NET_PACKET_TOO_LARGE,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"(?i)commands out of sync",
            codes::CR_COMMANDS_OUT_OF_SYNC,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"Can't connect to local (?:MySQL |MariaDB )?server through socket '[^']*'(?: \(-?\d+[^)]*\))?",
            codes::CR_CONNECTION_ERROR,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"Can't connect to (?:MySQL |MariaDB )?server on '[^']*'(?::\d+)?(?: \(-?\d+[^)]*\))?",
            codes::CR_CONN_HOST_ERROR,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"Unknown (?:MySQL |MariaDB )?server host '[^']*'",
            codes::CR_UNKNOWN_HOST,
        ),
        fixed(
            "MySQL/MariaDB client library",
            r"SSL connection error",
            codes::CR_SSL_CONNECTION_ERROR,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"(?:MySQL|MariaDB) server is running with the --(?:super-)?read-only option",
            codes::ER_OPTION_PREVENTS_STATEMENT,
        ),
        fixed(
            "MySQL server",
            r"server is currently in offline mode",
            codes::ER_SERVER_OFFLINE_MODE,
        ),
        fixed(
            "MySQL/MariaDB server",
            r"\bBad handshake\b",
            codes::ER_HANDSHAKE_ERROR,
        ),
        // ---------------- generic socket errors (any ecosystem) ----------------
        // Node: "read ECONNRESET", Python: "ConnectionResetError: [Errno 104] Connection reset
        // by peer", Java: "java.net.SocketException: Connection reset", Go: "read: connection
        // reset by peer", Rust: "Connection reset by peer (os error 104)".
        io(
            "socket-reset",
            "socket error",
            r"(?i)\bECONNRESET\b|connection reset by peer|SocketException: Connection reset|ConnectionResetError",
            ErrorKind::ConnectionReset,
        ),
        io(
            "socket-broken-pipe",
            "socket error",
            r"(?i)\bEPIPE\b|\bbroken pipe\b|BrokenPipeError",
            ErrorKind::BrokenPipe,
        ),
        io(
            "socket-refused",
            "socket error",
            r"(?i)\bECONNREFUSED\b|connection refused|ConnectionRefusedError",
            ErrorKind::ConnectionRefused,
        ),
        rule(
            "code",
            "socket error",
            r"(?i)\b(?:ENOTFOUND|EAI_AGAIN)\b|getaddrinfo failed|no such host|Name or service not known",
            |c, _| Some(classify_code(codes::CR_UNKNOWN_HOST, None, Some(&c[0]))),
        ),
        io(
            "socket-timeout",
            "socket error",
            r"(?i)\bETIMEDOUT\b|connection timed out|\bi/o timeout\b",
            ErrorKind::TimedOut,
        ),
    ]
}

/// Connector/J says how long the connection had been quiet; that tells idle from busy.
fn jdbc_last_packet(received_ms: u64) -> Verdict {
    let secs = received_ms / 1000;
    if received_ms >= 28_800_000 {
        Verdict::new(&[(IdleTimeout, 0.85), (NetworkDrop, 0.1), (ServerRestart, 0.05)], Retry::ReconnectThenRetry)
            .note(format!("Connector/J reports that the connection had received nothing for {secs} s — longer than MySQL's default wait_timeout of 8 hours — so the server had closed it before this statement, which never ran."))
            .lost(true)
    } else if received_ms >= 60_000 {
        Verdict::new(&[(IdleTimeout, 0.5), (NetworkDrop, 0.35), (ServerRestart, 0.15)], Retry::ReconnectThenRetry)
            .note(format!("Connector/J reports that the connection had received nothing for {secs} s before failing: it sat idle and was closed while idle, so the statement most likely never ran."))
            .tell(format!("Compare {secs} s with SELECT @@wait_timeout: at or above it means idle_timeout; below it (but above ~240-350 s) means a NAT gateway, load balancer or firewall dropped the idle flow"))
            .lost(true)
    } else {
        Verdict::new(&[(NetworkDrop, 0.3), (ServerCrash, 0.15), (ServerRestart, 0.15), (ConnectionKilled, 0.15), (NetTimeout, 0.15), (OutOfMemory, 0.1)], Retry::RetryIfIdempotent)
            .note(format!("Connector/J reports that the connection had received data only {secs} s before failing: it broke while in use, not because it sat idle."))
            .tell("Check the server's error log and Uptime at that moment for a restart or crash; with no trace there, the network dropped it")
            .lost(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles() {
        assert!(TABLE.rules.len() > 40);
    }

    #[test]
    fn framework_suffixes_are_stripped() {
        assert_eq!(
            strip_framework_suffix("MySQL server has gone away (Connection: mysql, SQL: select 1)"),
            "MySQL server has gone away"
        );
        assert_eq!(strip_framework_suffix("x (SQL: select 1)"), "x");
    }

    #[test]
    fn unknown_text() {
        let d = classify_text("everything is fine");
        assert_eq!(d.primary(), Unknown);
        assert_eq!(d.retry, Retry::DoNotRetry);
    }

    #[test]
    fn non_ascii_lines_are_recognised() {
        // The same errors in a log line holding non-ASCII text (an accented user name, a
        // Latin-1 byte replaced by U+FFFD) as in an ASCII one.
        for line in [
            "2024-05-01 app José: (2006, 'MySQL server has gone away')",
            "2024-05-01 app caf\u{FFFD}: ERROR 2013 (HY000): Lost connection to MySQL server during query",
            "Out of memory: Killed process 1234 (mariadbd) — total-vm:4000000kB",
        ] {
            let ascii: String = line.chars().map(|c| if c.is_ascii() { c } else { 'x' }).collect();
            assert_eq!(classify_text(line), classify_text(&ascii), "{line}");
            assert_ne!(classify_text(line).primary(), Unknown, "{line}");
        }
    }

    #[test]
    fn jdbc_idle_hours() {
        let d = classify_text("The last packet successfully received from the server was 86,400,000 milliseconds ago.  The last packet sent successfully to the server was 0 milliseconds ago.");
        assert_eq!(d.primary(), IdleTimeout);
        assert_eq!(d.retry, Retry::ReconnectThenRetry);
    }
}
