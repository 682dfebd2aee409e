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

/// Whether the text before "Got timeout reading communication packets" (or one of its
/// siblings, errors 1158-1161) shows a client that received the server's error — a driver
/// exception, the error number, a SQLSTATE — rather than a line of the server's own error
/// log. The difference matters: the server sends no error packet when it closes an idle
/// connection, so a client that received 1159/1161 was stalled mid-transfer
/// (`net_timeout`), while the log line is also what `wait_timeout` leaves behind.
fn received_by_client(before: &str) -> bool {
    // The number or symbol as drivers print it: "ERROR 1159 (08S01): …" (mysql CLI),
    // "Error 1159 (08S01): …" (go-sql-driver), "(1159, '…')" (PyMySQL), "(1159) (ER_NET_…)"
    // (MyXQL), "[1159]" / "SQLSTATE[08S01]" (PDO), "errno: 1159" (Node), "1159 (08S01): …".
    static NUMBERED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&ascii_boundaries(
            r"(?i)\berror:? 11(?:58|59|60|61)\b|\(11(?:58|59|60|61)[,)]|\b11(?:58|59|60|61) \(|\[11(?:58|59|60|61)\]|\berrno:? 11(?:58|59|60|61)\b|\bER_NET_(?:READ|WRITE|ERROR)|\bSQLSTATE\b|\b08S01\b",
        ))
        .expect("valid regex")
    });
    // MySQL 8 and MariaDB error log lines: "[Note] [MY-010914] [Server] Got an error …",
    // "[Warning] …"; a thread id there may look like an error number, hence NUMBERED first.
    static SERVER_LOG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\[(?:Note|Warning|ERROR|System)\]|\[MY-\d+\]|\[Server\]").expect("valid regex")
    });
    // "Mysql2::Error: …", "java.sql.SQLException: …", "MySqlException (0x80004005): …",
    // "DBD::mysql::st execute failed: …", an application log's "ERROR" level.
    static DRIVER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&ascii_boundaries(r"(?i)(?:error|exception|failed)\b")).expect("valid regex")
    });
    NUMBERED.is_match(before) || (!SERVER_LOG.is_match(before) && DRIVER.is_match(before))
}

/// Errors a driver raises only while opening a connection, wrapping the real one: the wrapped
/// message decides when goneaway knows it as a failure to connect (refused, unknown host, too
/// many connections, access denied); otherwise the connection was never made, so nothing ran.
fn while_connecting(wrapped: &str, fallback: Verdict) -> Diagnosis {
    match classify_known(wrapped) {
        Some(d)
            if matches!(d.retry, Retry::SafeToRetry | Retry::DoNotRetry)
                && d.primary() != Unknown =>
        {
            d
        }
        _ => fallback.finish(),
    }
}

/// No connection could be opened, and the message does not say why.
fn could_not_connect(note: &'static str) -> Verdict {
    Verdict::new(
        &[
            (ServerUnreachable, 0.6),
            (ServerRestart, 0.15),
            (NetworkDrop, 0.15),
            (TooManyConnections, 0.1),
        ],
        Retry::SafeToRetry,
    )
    .note(note)
    .tell("The error the driver wraps (its cause, or the lines after it) says which: refused, timed out, unknown host, too many connections, access denied")
}

/// A pool that could not hand out a connection in time because every one was in use.
fn pool_exhausted(note: &'static str) -> Verdict {
    Verdict::new(
        &[(TooManyConnections, 0.75), (ServerUnreachable, 0.15), (Unknown, 0.1)],
        Retry::SafeToRetry,
    )
    .note(note)
    .tell("Compare the busy connections with the pool's maximum: all in use means slow queries, leaked connections or transactions left open; fewer means new connections cannot be opened (look for the connect error logged before this)")
}

/// A driver- or framework-side statement timeout: the client gave up on the statement (and
/// usually cancelled it with KILL QUERY), which may still have finished on the server.
fn statement_timeout(note: &'static str) -> Verdict {
    Verdict::new(
        &[(QueryTimeout, 0.7), (NetworkDrop, 0.2), (NetTimeout, 0.1)],
        Retry::RetryIfIdempotent,
    )
    .note(note)
    .tell("A statement that is slow every time exceeds the timeout every time (EXPLAIN it); one that waited on a row lock shows in information_schema.INNODB_TRX or sys.innodb_lock_waits at that moment")
    .tell("The statement may have finished on the server just before the client gave up: retry only what is safe to run twice")
}

/// The driver's socket read timeout expired: nothing came back in time, and the driver
/// closed the connection.
fn read_timeout(note: &'static str) -> Verdict {
    Verdict::new(
        &[(QueryTimeout, 0.45), (NetworkDrop, 0.35), (NetTimeout, 0.2)],
        Retry::RetryIfIdempotent,
    )
    .note(note)
    .tell(
        "A slow statement exceeds the read timeout every time; a dropped connection only sometimes",
    )
    .lost(true)
}

/// The connection broke while a statement was in flight: its outcome is unknown.
fn lost_in_use(note: &'static str) -> Verdict {
    Verdict::new(DEAD_ON_USE, Retry::RetryIfIdempotent)
        .note(note)
        .tell("If the connection had sat idle longer than wait_timeout (or a middlebox's idle limit) before this statement, it had been closed while idle and the statement never ran; otherwise its outcome is unknown")
        .lost(true)
}

/// The driver refused to use a connection it already knew to be closed: nothing was sent.
fn closed_before_send(note: &'static str) -> Verdict {
    Verdict::new(DEAD_ON_USE, Retry::ReconnectThenRetry)
        .note(note)
        .tell("Look for the first error on that connection: it tells why it closed")
        .lost(true)
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
        // Declines the same words received by a client ("ERROR 1159 (08S01): Got timeout
        // reading communication packets", "Mysql2::Error: Got timeout …"): the client rules
        // below read them as the error number they are.
        rule(
            "aborted-connection",
            "MySQL/MariaDB server error log",
            r"(?i)Got (?:an error|timeout) (?:reading|writing) communication packets\s*\.?\s*$",
            |c, t| {
                if received_by_client(&t[..c.get(0)?.start()]) {
                    return None;
                }
                Some(aborted_connection(&t.to_ascii_lowercase()).finish())
            },
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
        // ---------------- wrappers raised only while connecting ----------------
        // Sequelize src/dialects/mysql/connection-manager.js connect(): mysql2's error while
        // opening a connection, by err.code, as ConnectionRefusedError (ECONNREFUSED),
        // AccessDeniedError (ER_ACCESS_DENIED_ERROR), HostNotFoundError (ENOTFOUND),
        // HostNotReachableError (EHOSTUNREACH), InvalidConnectionError (EINVAL), else
        // ConnectionError; names from src/errors/connection/*.ts ("SequelizeConnectionRefusedError",
        // "SequelizeConnectionTimedOutError", …). Printed "SequelizeConnectionError: <mysql2 message>".
        rule(
            "sequelize-connect",
            "Sequelize",
            r"\bSequelize(?P<kind>ConnectionRefused|HostNotFound|HostNotReachable|InvalidConnection|ConnectionTimedOut|AccessDenied|Connection)Error\b:?\s*(?P<rest>.*)",
            |c, _| {
                let rest = c.name("rest").map_or("", |m| m.as_str());
                let fallback = match &c["kind"] {
                    "ConnectionRefused" => io_verdict(ErrorKind::ConnectionRefused),
                    "HostNotFound" => Verdict::new(&[(ServerUnreachable, 0.9), (NetworkDrop, 0.1)], Retry::SafeToRetry)
                        .note("Sequelize could not resolve the database host name (ENOTFOUND)."),
                    "HostNotReachable" => io_verdict(ErrorKind::HostUnreachable),
                    "ConnectionTimedOut" => Verdict::new(&[(ServerUnreachable, 0.6), (NetworkDrop, 0.4)], Retry::SafeToRetry)
                        .note("Sequelize timed out opening a connection: nothing answered in time (a firewall dropping packets, a wrong address, a host that is down)."),
                    "AccessDenied" => return Some(classify_code(codes::ER_ACCESS_DENIED_ERROR, None, Some(rest))),
                    _ => could_not_connect("Sequelize raises this while opening a connection (its MySQL connection manager's connect()), so no statement was sent."),
                };
                Some(while_connecting(rest, fallback))
            },
        ),
        // MariaDB Connector/J src/main/java/org/mariadb/jdbc/client/impl/StandardClient.java
        // handleIOError: "Could not connect to %s : %s" (the host printed as
        // "address=(host=db)(port=3306)(type=primary)") and handleTimeoutError:
        // "Socket timeout when connecting to %s. %s".
        rule(
            "mariadb-connector-j-connect",
            "MariaDB Connector/J",
            r"Could not connect to \S+ : (?P<rest>.*)",
            |c, _| {
                Some(while_connecting(
                    &c["rest"],
                    could_not_connect("MariaDB Connector/J could not open the connection, so no statement was sent."),
                ))
            },
        ),
        verdict(
            "mariadb-connector-j-connect",
            "MariaDB Connector/J",
            r"Socket timeout when connecting to",
            || {
                Verdict::new(&[(ServerUnreachable, 0.6), (NetworkDrop, 0.4)], Retry::SafeToRetry)
                    .note("MariaDB Connector/J timed out while opening the connection (connectTimeout), so nothing was sent.")
                    .tell("A timeout (not a refusal) means nothing answered at all: look at firewalls, security groups and routes first")
            },
        ),
        // ---------------- Prisma (prisma/prisma-engines) ----------------
        // quaint/src/connector/mysql/native/error.rs: a mysql_async I/O error is UnexpectedEof →
        // ErrorKind::ConnectionClosed, any other (reset, broken pipe, timeout) →
        // ConnectionError; libs/user-facing-errors/src/quaint.rs renders ConnectionError as P1001
        // and ConnectionClosed as P1017 (texts in libs/user-facing-errors/src/common.rs).
        // P1001: "Can't reach database server at `db`:`3306`\n\nPlease make sure your database
        // server is running at `db`:`3306`." — also for a connection reset in the middle of use.
        verdict(
            "prisma-unreachable",
            "Prisma",
            r"Can't reach database server at",
            || {
                Verdict::new(&[(ServerUnreachable, 0.5), (NetworkDrop, 0.25), (IdleTimeout, 0.1), (ServerRestart, 0.15)], Retry::RetryIfIdempotent)
                    .note("Prisma (P1001) reports every I/O error other than an end of stream this way: a connection that could not be opened, but also a pooled connection reset while a query was on it, whose outcome is then unknown.")
                    .tell("At startup or on every request it is unreachable (host, port, firewall, server down): safe to retry; intermittent on a running application it is a pooled connection dropped by the server or a middlebox")
                    .lost(true)
            },
        ),
        // P1017 ConnectionClosed: "Server has closed the connection." (end of stream)
        rule(
            "prisma-unexpected-eof",
            "Prisma",
            r"Server has closed the connection\.",
            |_, _| {
                Some(
                    io_verdict(ErrorKind::UnexpectedEof)
                        .note("Prisma (P1017) read an end of stream from the server: the server (or something in between) closed the connection without an error packet, which is what MariaDB's and older MySQL's wait_timeout looks like.")
                        .finish(),
                )
            },
        ),
        // libs/user-facing-errors/src/query_engine/mod.rs P2024 PoolTimeout: "Timed out fetching
        // a new connection from the connection pool. More info: http://pris.ly/d/connection-pool
        // (Current connection pool timeout: 10, connection limit: 5)"
        verdict(
            "prisma-pool-timeout",
            "Prisma",
            r"Timed out fetching a new connection from the connection pool",
            || {
                pool_exhausted("Prisma's query engine could not get a connection from its pool within pool_timeout (P2024): every connection was busy, or new ones could not be opened. Nothing was sent to the server.")
            },
        ),
        // libs/user-facing-errors/src/common.rs P1008 DatabaseOperationTimeout: "Operations
        // timed out after `5s`. Context: Socket timeout (the database failed to respond to a
        // query within the configured timeout …)" (quaint.rs, ErrorKind::SocketTimeout).
        verdict(
            "prisma-client-read-timeout",
            "Prisma",
            r"Operations timed out after",
            || {
                read_timeout("Prisma's socket_timeout expired while waiting for the database to answer (P1008); the statement may still be running or may have finished.")
            },
        ),
        // libs/user-facing-errors/src/query_engine/mod.rs P2034 TransactionWriteConflict:
        // "Transaction failed due to a write conflict or a deadlock. Please retry your
        // transaction" — quaint maps MySQL's 1213 to it (quaint/src/connector/mysql/error.rs).
        fixed(
            "Prisma",
            r"Transaction failed due to a write conflict or a deadlock",
            codes::ER_LOCK_DEADLOCK,
        ),
        // ---------------- .NET: MySqlConnector and MySql.Data (Connector/NET) ----------------
        // MySqlConnector src/MySqlConnector/MySqlConnection.cs CreateSessionAsync: "Connect
        // Timeout expired." + " All pooled connections are in use." when the pool is empty.
        verdict(
            "mysqlconnector-pool-timeout",
            "MySqlConnector (.NET)",
            r"Connect Timeout expired\. All pooled connections are in use",
            || {
                pool_exhausted("MySqlConnector's pool had no free connection within Connect Timeout: every pooled connection was in use (Maximum Pool Size). Nothing was sent to the server.")
            },
        ),
        // Same file (and src/MySqlConnector/Core/ServerSession.cs): "Connect Timeout expired."
        verdict(
            "mysqlconnector-connect-timeout",
            "MySqlConnector (.NET)",
            r"Connect Timeout expired\.",
            || {
                Verdict::new(&[(ServerUnreachable, 0.6), (NetworkDrop, 0.25), (TooManyConnections, 0.15)], Retry::SafeToRetry)
                    .note("MySqlConnector could not open a connection within Connect Timeout (default 15 s): the server did not answer in time. Nothing was sent.")
                    .tell("A timeout (not a refusal) means nothing answered at all: a firewall, a wrong address, or a server too busy to accept connections")
            },
        ),
        // MySqlConnector src/MySqlConnector/Core/ServerSession.cs and MySqlConnection.cs
        // (UnableToConnectToHost); Connector/NET MySQL.Data/src/Resources.resx
        // UnableToConnectToHost: "Unable to connect to any of the specified MySQL hosts."
        verdict(
            "dotnet-connect-failure",
            ".NET (MySqlConnector / MySql.Data)",
            r"Unable to connect to any of the specified MySQL hosts",
            || {
                could_not_connect("The .NET driver could not open a connection to any host in the connection string, so nothing was sent.")
            },
        ),
        // MySqlConnector src/MySqlConnector/MySqlException.cs CreateForTimeout: "The Command
        // Timeout expired before the operation completed." (MySqlConnector then runs KILL
        // QUERY from a second connection, MySqlConnection.cs Cancel).
        verdict(
            "mysqlconnector-command-timeout",
            "MySqlConnector (.NET)",
            r"The Command Timeout expired before the operation completed",
            || {
                statement_timeout("The command ran longer than CommandTimeout (default 30 s, less than innodb_lock_wait_timeout's 50 s): MySqlConnector cancelled it with KILL QUERY (the inner error is 1317 'Query execution was interrupted').")
            },
        ),
        // Connector/NET MySQL.Data/src/Resources.resx Timeout: "Timeout expired.  The timeout
        // period elapsed prior to completion of the operation or the server is not responding"
        verdict(
            "mysql-data-command-timeout",
            "MySql.Data (Connector/NET)",
            r"The timeout period elapsed prior to completion of the operation",
            || {
                statement_timeout("The command ran longer than CommandTimeout (default 30 s): Connector/NET gave up on it and tried to cancel it.")
            },
        ),
        // Resources.resx TimeoutGettingConnection: "error connecting: Timeout expired.  The
        // timeout period elapsed prior to obtaining a connection from the pool.  This may have
        // occurred because all pooled connections were in use and max pool size was reached"
        verdict(
            "mysql-data-pool-timeout",
            "MySql.Data (Connector/NET)",
            r"The timeout period elapsed prior to obtaining a connection from the pool",
            || {
                pool_exhausted("Connector/NET's pool had no free connection in time: all pooled connections were in use (Max Pool Size). Nothing was sent to the server.")
            },
        ),
        // MySqlConnector src/MySqlConnector/MySqlDataReader.cs ActivateResultSet: "Failed to
        // read the result set." for any error that is not the server's (end of stream, reset).
        verdict(
            "mysqlconnector-read-failed",
            "MySqlConnector (.NET)",
            r"Failed to read the result set\.",
            || {
                lost_in_use("MySqlConnector sent the command but the connection failed before the result arrived (the inner exception is an end of stream or a socket error).")
            },
        ),
        // Resources.resx ReadFromStreamFailed "Reading from the stream has failed",
        // ConnectionBroken "Connection unexpectedly terminated".
        verdict(
            "mysql-data-read-failed",
            "MySql.Data (Connector/NET)",
            r"Reading from the stream has failed|Connection unexpectedly terminated",
            || {
                lost_in_use("Connector/NET sent the command but reading the answer failed: the server or the network closed the connection.")
            },
        ),
        // Resources.resx WriteToStreamFailed "Writing to the stream failed"
        rule(
            "mysql-data-socket-broken-pipe",
            "MySql.Data (Connector/NET)",
            r"Writing to the stream failed",
            |_, _| {
                Some(
                    io_verdict(ErrorKind::BrokenPipe)
                        .note("Connector/NET could not write the command: the connection had already been closed, so the statement was not delivered.")
                        .finish(),
                )
            },
        ),
        // MySqlConnector src/MySqlConnector/Protocol/Serialization/ProtocolUtility.cs:
        // EndOfStreamException "Expected to read 4 header bytes but only received 0." /
        // "Expected to read {0} payload bytes but only received {1}." — the inner exception of
        // "Failed to read the result set.", folded into it.
        context(
            io(
                "unexpected-eof",
                "MySqlConnector (.NET)",
                r"Expected to read \d+ (?:header|payload) bytes but only received \d+",
                ErrorKind::UnexpectedEof,
            ),
            Context::Absorb,
        ),
        // ---------------- Java: Connector/J timeouts, cancellation, link failures ----------------
        // mysql-connector-j src/main/resources/com/mysql/cj/LocalizedErrorMessages.properties
        // MySQLTimeoutException.0: "Statement cancelled due to timeout or client request"
        // (Statement.setQueryTimeout: Connector/J sends KILL QUERY from a second connection).
        verdict(
            "connector-j-command-timeout",
            "MySQL Connector/J",
            r"Statement cancelled due to timeout or client request",
            || {
                statement_timeout("The statement ran past its JDBC query timeout (Statement.setQueryTimeout, a framework's transaction or query timeout): Connector/J cancelled it with KILL QUERY. The connection is still usable.")
            },
        ),
        // MySQLStatementCancelledException.0: "Statement cancelled due to client request"
        verdict(
            "connector-j-statement-cancelled",
            "MySQL Connector/J",
            r"Statement cancelled due to client request",
            || {
                Verdict::new(&[(Unknown, 0.6), (QueryTimeout, 0.4)], Retry::RetryIfIdempotent)
                    .note("The application (or a framework timer) called Statement.cancel(), and Connector/J killed the running statement with KILL QUERY; the server did not fail. The statement may have partly run on non-transactional tables.")
                    .tell("Find who cancels: an explicit cancel(), a request that was abandoned, or a framework timeout")
            },
        ),
        // Statement.ConnectionKilledDueToTimeout: "Connection closed to due to statement timeout
        // being reached and \"queryTimeoutKillsConnection\" being set to \"true\"."
        verdict(
            "connector-j-command-timeout",
            "MySQL Connector/J",
            r#"statement timeout being reached and "?queryTimeoutKillsConnection"#,
            || {
                Verdict::new(&[(QueryTimeout, 0.9), (Unknown, 0.1)], Retry::RetryIfIdempotent)
                    .note("The statement ran past its query timeout and, with queryTimeoutKillsConnection=true, Connector/J closed the whole connection; the statement may have finished or partly run.")
                    .lost(true)
            },
        ),
        // Connection.4: "Communications link failure during commit(). Transaction resolution
        // unknown."
        verdict(
            "connector-j-commit-unknown",
            "MySQL Connector/J",
            r"Communications link failure during commit\(\)",
            || {
                Verdict::new(DEAD_ON_USE, Retry::RetryIfIdempotent)
                    .note("The connection failed while COMMIT was on its way: the transaction may or may not have been committed. Check whether its writes are there before running it again.")
                    .tell("Only a transaction that is safe to apply twice (or one whose effect you can look up first) may be rerun")
                    .lost(true)
            },
        ),
        // Connection.21 / Connection.23: "Communications link failure during rollback().
        // Transaction resolution unknown."
        verdict(
            "connector-j-rollback-lost",
            "MySQL Connector/J",
            r"Communications link failure during rollback\(\)",
            || {
                Verdict::new(DEAD_ON_USE, Retry::RetryTransaction)
                    .note("The connection failed while ROLLBACK was being sent. The transaction had not been committed, and the server rolls back the open transaction of a connection it loses, so none of its work remains.")
                    .tell("The server holds the transaction's locks until it notices the connection is gone: a rerun may wait on them for a while")
                    .lost(true)
            },
        ),
        // CommunicationsException.ClientWasStreaming: "Application was streaming results when
        // the connection failed. Consider raising value of 'net_write_timeout' on the server."
        // Appended to a "Communications link failure": it sharpens that finding.
        context(
            verdict(
                "jdbc-link-failure",
                "MySQL Connector/J",
                r"Application was streaming results when the connection failed",
                || {
                    Verdict::new(&[(NetTimeout, 0.6), (NetworkDrop, 0.2), (ServerRestart, 0.1), (ConnectionKilled, 0.1)], Retry::RetryIfIdempotent)
                        .note("Connector/J was streaming a result (fetchSize Integer.MIN_VALUE or useCursorFetch) when the connection failed: the server gives up writing to a client that reads too slowly after net_write_timeout (default 60 s).")
                        .fix("Raise net_write_timeout for the streaming session (SET SESSION net_write_timeout = 600), or read the rows without slow work in between")
                        .lost(true)
                },
            ),
            Context::Refine,
        ),
        // Connection.LoginTimeout: "Connection attempt exceeded defined timeout."
        verdict(
            "connector-j-connect-timeout",
            "MySQL Connector/J",
            r"Connection attempt exceeded defined timeout",
            || {
                Verdict::new(&[(ServerUnreachable, 0.6), (NetworkDrop, 0.4)], Retry::SafeToRetry)
                    .note("Connector/J could not open the connection within the login timeout, so nothing was sent.")
            },
        ),
        // Connection.UnableToConnect: "Could not create connection to database server."
        verdict(
            "connector-j-connect-failure",
            "MySQL Connector/J",
            r"Could not create connection to database server",
            || {
                could_not_connect("Connector/J could not open the connection, so nothing was sent; the 'Caused by:' below says why.")
            },
        ),
        // MariaDB Connector/J src/main/java/org/mariadb/jdbc/client/impl/MultiPrimaryClient.java
        // readStreamingResults: "Socket error during result streaming" (failover modes)
        verdict(
            "mariadb-connector-j-socket-error",
            "MariaDB Connector/J",
            r"Socket error during result streaming",
            || {
                Verdict::new(&[(NetTimeout, 0.4), (NetworkDrop, 0.3), (ServerRestart, 0.1), (ServerCrash, 0.1), (ConnectionKilled, 0.1)], Retry::RetryIfIdempotent)
                    .note("The connection failed while a streaming result was being read: the server gives up writing to a client that reads slowly after net_write_timeout, and restarts or network faults cut streams too.")
                    .lost(true)
            },
        ),
        // StandardClient.java readPacket on SocketTimeoutException: "Socket timout error"
        // (sic), with the thread id prefix from export/ExceptionFactory.java "(conn=123) ".
        verdict(
            "mariadb-connector-j-client-read-timeout",
            "MariaDB Connector/J",
            r"Socket timo?ut error",
            || {
                read_timeout("MariaDB Connector/J's socketTimeout expired while waiting for the answer, and it closed the connection; the statement may still be running or may have finished.")
            },
        ),
        // StandardClient.java sendQuery / readPacket on IOException: "Socket error" (08000)
        verdict(
            "mariadb-connector-j-socket-error",
            "MariaDB Connector/J",
            r"(?:\(conn=-?\d+\) |SQLNonTransientConnectionException: )Socket error\b",
            || {
                lost_in_use("MariaDB Connector/J failed to write the command or read its answer (the cause below is a reset or an end of stream); with pipelined commands some of them may have reached the server.")
            },
        ),
        // StandardClient.java checkNotClosed, MultiPrimaryClient.java: "Connection is closed"
        // (08000, 1220)
        verdict(
            "mariadb-connector-j-closed",
            "MariaDB Connector/J",
            r"(?:\(conn=-?\d+\) |SQLNonTransientConnectionException: )Connection is closed\b",
            || {
                closed_before_send("MariaDB Connector/J was asked to use a connection it had already closed after an earlier error; nothing was sent.")
            },
        ),
        // StandardClient.java sendQuery (MaxAllowedPacketException): "Packet too big for
        // current server max_allowed_packet value"
        verdict(
            "mariadb-connector-j-packet-too-large",
            "MariaDB Connector/J",
            r"Packet too big for current server max_allowed_packet value",
            || {
                Verdict::new(&[(PacketTooLarge, 1.0)], Retry::DoNotRetry)
                    .note("MariaDB Connector/J refused to send a statement larger than the server's max_allowed_packet.")
            },
        ),
        // export/ExceptionFactory.java: every SQLSTATE 70100 (ER_QUERY_INTERRUPTED) becomes
        // java.sql.SQLTimeoutException — the driver's queryTimeout (KILL QUERY on MySQL; SET
        // STATEMENT max_statement_time on MariaDB) as well as someone else's KILL QUERY.
        rule(
            "mariadb-connector-j-interrupted",
            "MariaDB Connector/J",
            r"SQLTimeoutException: (?:\(conn=-?\d+\) )?Query execution was interrupted",
            |_, t| {
                if t.contains("max_statement_time") {
                    return Some(classify_code(codes::ER_STATEMENT_TIMEOUT, None, Some(t)));
                }
                Some(
                    Verdict::new(&[(QueryTimeout, 0.5), (ConnectionKilled, 0.4), (ServerRestart, 0.1)], Retry::RetryIfIdempotent)
                        .note("The running statement was interrupted (1317). MariaDB Connector/J reports every interruption as SQLTimeoutException: its own queryTimeout (KILL QUERY) and a KILL QUERY by someone else look the same.")
                        .tell("If the statement had a query timeout and ran about that long, it is query_timeout; otherwise look for who ran KILL QUERY")
                        .finish(),
                )
            },
        ),
        // MariaDB Connector/J src/main/java/org/mariadb/jdbc/client/socket/impl/PacketReader.java:
        // EOFException "unexpected end of stream, read 0 bytes from 4 (socket was closed by
        // server)" — the cause of a "Socket error", folded into it.
        context(
            io(
                "unexpected-eof",
                "MariaDB Connector/J",
                r"unexpected end of stream, read \d+ bytes from \d+",
                ErrorKind::UnexpectedEof,
            ),
            Context::Absorb,
        ),
        // ---------------- Ruby: mysql2 and Active Record ----------------
        // mysql2 ext/mysql2/client.c REQUIRE_CONNECTED: "MySQL client is not connected";
        // rails activerecord/lib/active_record/connection_adapters/mysql2_adapter.rb
        // translate_exception turns it into ActiveRecord::ConnectionNotEstablished.
        verdict(
            "ruby-not-connected",
            "Ruby (mysql2 / Active Record)",
            r"MySQL client is not connected",
            || {
                closed_before_send("mysql2 refused to run the query on a client whose connection was already closed (an earlier error, or Mysql2::Client#close); nothing was sent. Active Record reports this as ActiveRecord::ConnectionNotEstablished and reconnects on the next checkout.")
            },
        ),
        // client.c: Mysql2::Error::TimeoutError "Timeout waiting for a response from the last
        // query. (waited 5 seconds)" (read_timeout); Active Record: ActiveRecord::AdapterTimeout.
        verdict(
            "ruby-client-read-timeout",
            "Ruby (mysql2 / Active Record)",
            r"Timeout waiting for a response from the last query",
            || {
                read_timeout("mysql2's read_timeout expired while waiting for the answer; the statement may still be running or may have finished, and the connection must be discarded.")
            },
        ),
        // client.c: "This connection is in use by: #<Thread …>" and "This connection is still
        // waiting for a result, try again once you have the result"
        verdict(
            "ruby-out-of-sync",
            "Ruby (mysql2)",
            r"This connection is in use by: |This connection is still waiting for a result",
            || {
                Verdict::new(&[(OutOfSync, 0.9), (Unknown, 0.1)], Retry::DoNotRetry)
                    .note("Two threads or fibers used one Mysql2::Client at once (or a query was issued before the previous result was read): a connection shared outside a pool.")
                    .fix("Give each thread its own connection (Active Record's pool, a connection_pool gem); with async queries, disable ActiveRecord's async_query_executor or use one connection per fiber")
            },
        ),
        // rails activerecord/lib/active_record/connection_adapters/abstract/connection_pool/queue.rb
        // wait_poll: ActiveRecord::ConnectionTimeoutError "could not obtain a connection from
        // the pool within 5.000 seconds (waited 5.001 seconds); all pooled connections were in use"
        verdict(
            "ruby-pool-timeout",
            "Ruby (Active Record)",
            r"could not obtain a connection from the pool within",
            || {
                pool_exhausted("Active Record's pool had no free connection within checkout_timeout: every connection was checked out (more threads than the pool's size, or connections held too long). Nothing was sent to the server.")
            },
        ),
        // ---------------- Elixir: DBConnection and MyXQL ----------------
        // elixir-ecto/db_connection lib/db_connection/connection_pool.ex drop/2: "connection not
        // available and request was dropped from queue after 2000ms. This means requests are
        // coming in and your connection pool cannot serve them fast enough."
        verdict(
            "elixir-pool-timeout",
            "Elixir (DBConnection)",
            r"connection not available and request was dropped from queue after",
            || {
                pool_exhausted("DBConnection's pool could not serve the request before the queue target expired: all connections were busy. Nothing was sent to the server.")
            },
        ),
        // lib/db_connection/holder.ex checkout_result: "connection not available because
        // deadline reached while in queue"
        verdict(
            "elixir-pool-timeout",
            "Elixir (DBConnection)",
            r"connection not available because deadline reached while in queue",
            || {
                pool_exhausted("The caller's deadline passed while it waited in DBConnection's queue for a connection. Nothing was sent to the server.")
            },
        ),
        // connection_pool.ex handle_info({:timeout, …}): "client #PID<0.1.0> timed out because
        // it queued and checked out the connection for longer than 15000ms" (older
        // db_connection: "… because it checked out the connection for longer than …")
        verdict(
            "elixir-command-timeout",
            "Elixir (DBConnection)",
            r"timed out because it (?:queued and )?checked out the connection for longer than",
            || {
                statement_timeout("The caller held its connection longer than the :timeout option (default 15 s, queueing included), so DBConnection disconnected that connection under it; the query may still have run on the server.")
                    .lost(true)
            },
        ),
        // holder.ex handle_or_cleanup: "connection is closed because of an error, disconnect or
        // timeout"
        verdict(
            "elixir-closed",
            "Elixir (DBConnection)",
            r"connection is closed because of an error, disconnect or timeout",
            || {
                closed_before_send("DBConnection refused to use a connection that an earlier error, disconnect or timeout had already closed; nothing was sent.")
            },
        ),
        // elixir-ecto/myxql lib/myxql/connection.ex format_reason(:closed): "socket closed",
        // raised as DBConnection.ConnectionError ("** (DBConnection.ConnectionError) socket closed").
        verdict(
            "elixir-socket-closed",
            "Elixir (MyXQL)",
            r"DBConnection\.ConnectionError\)?:? socket closed",
            || {
                lost_in_use("MyXQL found the socket closed by the other end. DBConnection pings idle connections, so an idle close is usually only logged ('disconnected: … socket closed') and replaced; raised to a caller, a query was on the connection.")
            },
        ),
        // ---------------- Node.js ORMs and query builders: TypeORM, Knex, Sequelize ----------------
        // knex lib/client.js acquireConnection: KnexTimeoutError "Knex: Timeout acquiring a
        // connection. The pool is probably full. Are you missing a .transacting(trx) call?"
        verdict(
            "knex-pool-timeout",
            "Knex",
            r"Knex: Timeout acquiring a connection",
            || {
                Verdict::new(&[(TooManyConnections, 0.6), (ServerUnreachable, 0.3), (Unknown, 0.1)], Retry::SafeToRetry)
                    .note("Knex's pool (tarn) could not hand out a connection within acquireConnectionTimeout: all connections were in use — often a query run outside its transaction while the transaction holds the only free connection — or new connections could not be opened. Nothing was sent to the server.")
                    .tell("With pool.max connections all busy it is exhaustion (missing .transacting(trx), slow queries, leaks); otherwise opening connections fails or hangs: look for the connect error logged before this")
            },
        ),
        // knex lib/execution/runner.js query(): "Defined query timeout of 1000ms exceeded when
        // running query." and "After query timeout of 1000ms exceeded, cancelling of query failed."
        verdict(
            "knex-command-timeout",
            "Knex",
            r"Defined query timeout of \d+ms exceeded when running query|After query timeout of \d+ms exceeded, cancelling of query failed",
            || {
                statement_timeout("The query ran past Knex's .timeout(ms); with { cancel: true } Knex killed it (KILL QUERY), without it the query keeps running on the server.")
            },
        ),
        // sequelize src/errors/connection/connection-acquire-timeout-error.ts:
        // "SequelizeConnectionAcquireTimeoutError" (the pool's acquire timeout)
        verdict(
            "sequelize-pool-timeout",
            "Sequelize",
            r"\bSequelizeConnectionAcquireTimeoutError\b",
            || {
                pool_exhausted("Sequelize's pool could not hand out a connection within pool.acquire: all connections were in use, or new ones could not be opened. Nothing was sent to the server.")
            },
        ),
        // TypeORM 0.3 src/error/CannotExecuteNotConnectedError.ts: "Cannot execute operation on
        // \"default\" connection because connection is not yet established." (the text as
        // published; the stored typeorm/typeorm copy has it only in forks and builds)
        verdict(
            "typeorm-not-initialized",
            "TypeORM",
            r#"Cannot execute operation on "[^"]*" connection because connection is not yet established"#,
            || {
                Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
                    .note("TypeORM was used before DataSource.initialize() finished, or after destroy(): an application start-up or shutdown ordering problem, not the database. Nothing was sent.")
                    .fix("Await dataSource.initialize() before serving requests, and stop work before dataSource.destroy()")
            },
        ),
        // typeorm src/error/TransactionCommitFailedError.ts: "Transaction commit failed"
        verdict(
            "typeorm-commit-unknown",
            "TypeORM",
            r"TransactionCommitFailedError",
            || {
                Verdict::new(DEAD_ON_USE, Retry::RetryIfIdempotent)
                    .note("TypeORM's COMMIT failed (the cause property holds the driver's error). If the connection was lost, the transaction may or may not have been committed: check before running it again.")
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
        // MyXQL (elixir-ecto/myxql lib/myxql/connection.ex error/1): the server's error as
        // "(1205) (ER_LOCK_WAIT_TIMEOUT) Lock wait timeout exceeded; try restarting transaction"
        coded(
            "Elixir (MyXQL)",
            r"\((?P<code>\d{4})\) \((?:ER|CR)_[A-Z0-9_]+\) (?P<msg>.*)",
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
        // The server's errors 1158-1161 (ER_NET_READ_ERROR, ER_NET_READ_INTERRUPTED,
        // ER_NET_ERROR_ON_WRITE, ER_NET_WRITE_INTERRUPTED; MySQL/MariaDB errmsg) received by a
        // client that prints no number: "Mysql2::Error: Got timeout reading communication
        // packets", "java.sql.SQLException: …", "DBD::mysql::st execute failed: … at x.pl line 3."
        // Server log lines with the same words are the server-log rules' (`received_by_client`).
        rule(
            "code",
            "MySQL/MariaDB client (server error received)",
            r"(?i)Got (?P<what>an error|timeout) (?P<dir>reading|writing) communication packets",
            |c, t| {
                let m = c.get(0)?;
                if !received_by_client(&t[..m.start()]) {
                    return None;
                }
                let timeout = c["what"].eq_ignore_ascii_case("timeout");
                let code = match (timeout, c["dir"].eq_ignore_ascii_case("reading")) {
                    (true, true) => codes::ER_NET_READ_INTERRUPTED,
                    (true, false) => codes::ER_NET_WRITE_INTERRUPTED,
                    (false, true) => codes::ER_NET_READ_ERROR,
                    (false, false) => codes::ER_NET_ERROR_ON_WRITE,
                };
                Some(classify_code(code, None, Some(m.as_str())))
            },
        ),
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
        // ---------------- framework wrappers whose message said nothing more ----------------
        // Tried last: "ActiveRecord::ConnectionFailed: Mysql2::Error::ConnectionError: Lost
        // connection …" is the wrapped message's. rails activerecord/lib/active_record/
        // connection_adapters/abstract_mysql_adapter.rb translate_exception: 1927, 1053, 2006,
        // 2013, 4031 → ActiveRecord::ConnectionFailed; mysql2_adapter.rb: Mysql2::Error::
        // ConnectionError → ConnectionFailed ("MySQL client is not connected" →
        // ConnectionNotEstablished), Mysql2::Error::TimeoutError → ActiveRecord::AdapterTimeout.
        verdict(
            "rails-connection-failed",
            "Ruby (Active Record)",
            r"\bActiveRecord::ConnectionFailed\b",
            || {
                lost_in_use("Active Record lost the connection while a query was on it (2006, 2013, 1927, 1053 or 4031 underneath); it retries on a fresh connection only where that is safe (outside a transaction, with retries configured).")
            },
        ),
        verdict(
            "rails-not-established",
            "Ruby (Active Record)",
            r"\bActiveRecord::ConnectionNotEstablished\b",
            || {
                Verdict::new(&[(ServerUnreachable, 0.5), (IdleTimeout, 0.2), (ServerRestart, 0.15), (NetworkDrop, 0.15)], Retry::ReconnectThenRetry)
                    .note("Active Record had no usable connection: opening one failed, or the client's connection was already closed ('MySQL client is not connected'). No query was sent.")
                    .tell("The message after the class name says which: a connect error (refused, unknown host, access denied) or a connection closed earlier")
            },
        ),
        verdict(
            "ruby-client-read-timeout",
            "Ruby (Active Record)",
            r"\bActiveRecord::AdapterTimeout\b",
            || {
                read_timeout("mysql2's read_timeout expired while waiting for the answer (Active Record's AdapterTimeout); the statement may still be running or may have finished.")
            },
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
