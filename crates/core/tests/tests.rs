//! The integration tests of goneaway-core, one binary.
//!
//! Modules:
//! - `corpus`: real error strings from every ecosystem, each checked for cause and retry
//!   advice through one helper, `check`.
//! - `seen_on_the_harness`: lines MariaDB 10.11 and its client printed on harness servers.
//! - `logs`: whole pasted logs under `tests/corpus/`, scanned: findings, grouping, counts.
//! - `input`: what `scan_bytes` refuses (empty, binary, not text, too large).
//! - `json`: the JSON field names other programs rely on.
//! - `render`: text and Markdown output.
//! - `clash`: MySQL's and MariaDB's different 4031.

use goneaway_core::{classify_text, Cause, Retry};

/// Classifies `input` as one message and checks the primary cause and the retry advice.
#[track_caller]
fn check(input: &str, expected_cause: Cause, expected_retry: Retry) {
    let d = classify_text(input);
    assert_eq!(
        (d.primary(), d.retry),
        (expected_cause, expected_retry),
        "\ninput: {input}\ndiagnosis: {d:#?}"
    );
}

fn corpus_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

mod corpus {
    use super::check;
    use goneaway_core::Cause::*;
    use goneaway_core::Retry::*;

    #[test]
    fn python() {
        // PyMySQL connections.py _write_bytes
        check(
            r#"pymysql.err.OperationalError: (2006, "MySQL server has gone away (BrokenPipeError(32, 'Broken pipe'))")"#,
            IdleTimeout,
            ReconnectThenRetry,
        );
        // PyMySQL connections.py _read_bytes
        check(
            "pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query')",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query (timed out)')",
            QueryTimeout,
            RetryIfIdempotent,
        );
        // SQLAlchemy wrapping PyMySQL
        check(
            r#"sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (2006, "MySQL server has gone away (ConnectionResetError(104, 'Connection reset by peer'))")"#,
            IdleTimeout,
            ReconnectThenRetry,
        );
        // Django with mysqlclient
        check(
            "django.db.utils.OperationalError: (2006, 'MySQL server has gone away')",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "MySQLdb.OperationalError: (2013, 'Lost connection to MySQL server during query')",
            IdleTimeout,
            RetryIfIdempotent,
        );
        // mysqlclient built against MariaDB Connector/C 3.x
        check(
            "MySQLdb.OperationalError: (2006, 'Server has gone away')",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "django.db.utils.OperationalError: (1040, 'Too many connections')",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "pymysql.err.OperationalError: (2003, \"Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)\")",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "pymysql.err.OperationalError: (1213, 'Deadlock found when trying to get lock; try restarting transaction')",
            Deadlock,
            RetryTransaction,
        );
        check(
            "pymysql.err.InterfaceError: (0, '')",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "pymysql.err.OperationalError: (4031, 'The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.')",
            IdleTimeout,
            ReconnectThenRetry,
        );
    }

    #[test]
    fn node() {
        // mysqljs lib/protocol/Protocol.js
        check(
            "Error: Connection lost: The server closed the connection.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "  code: 'PROTOCOL_CONNECTION_LOST'",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "Error: Cannot enqueue Query after fatal error.",
            IdleTimeout,
            ReconnectThenRetry,
        );
        // mysql2 lib/connection.js
        check(
            "Error: Can't add new command when connection is in closed state",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Error: ER_NET_PACKET_TOO_LARGE: Got a packet bigger than 'max_allowed_packet' bytes",
            PacketTooLarge,
            DoNotRetry,
        );
        check(
            "Error: ER_CON_COUNT_ERROR: Too many connections",
            TooManyConnections,
            SafeToRetry,
        );
        check("  code: 'ER_LOCK_DEADLOCK',", Deadlock, RetryTransaction);
        check("Error: read ECONNRESET", NetworkDrop, RetryIfIdempotent);
        check(
            "Error: connect ECONNREFUSED 127.0.0.1:3306",
            ServerUnreachable,
            SafeToRetry,
        );
        check("Error: connect ETIMEDOUT", NetworkDrop, RetryIfIdempotent);
        check("Error: write EPIPE", IdleTimeout, ReconnectThenRetry);
        check(
            "Error: getaddrinfo ENOTFOUND mysql",
            ServerUnreachable,
            SafeToRetry,
        );
    }

    #[test]
    fn php() {
        check(
            "SQLSTATE[HY000]: General error: 2006 MySQL server has gone away",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Warning: PDO::query(): MySQL server has gone away in /var/www/index.php on line 12",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Warning: PDO::query(): Packets out of order. Expected 1 received 0. Packet size=145",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Warning: PDOStatement::execute(): Error while sending QUERY packet. PID=3241",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "mysqli_sql_exception: MySQL server has gone away",
            IdleTimeout,
            ReconnectThenRetry,
        );
        // Laravel 10+ QueryException
        check(
            "Illuminate\\Database\\QueryException: SQLSTATE[HY000]: General error: 2013 Lost connection to MySQL server during query (Connection: mysql, SQL: select * from users)",
            IdleTimeout,
            RetryIfIdempotent,
        );
        // Laravel 8 and older
        check(
            "SQLSTATE[HY000]: General error: 1205 Lock wait timeout exceeded; try restarting transaction (SQL: update jobs set reserved = 1)",
            LockWaitTimeout,
            RetryTransaction,
        );
        check(
            "SQLSTATE[08S01]: Communication link failure: 1153 Got a packet bigger than 'max_allowed_packet' bytes",
            PacketTooLarge,
            DoNotRetry,
        );
        check(
            "SQLSTATE[HY000] [2002] Connection refused",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "SQLSTATE[HY000] [2002] No such file or directory",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "SQLSTATE[HY000] [1045] Access denied for user 'app'@'10.0.0.3' (using password: YES)",
            AccessDenied,
            DoNotRetry,
        );
        check(
            "SQLSTATE[08004] [1040] Too many connections",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "SQLSTATE[HY000]: General error: 4031 The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.",
            IdleTimeout,
            ReconnectThenRetry,
        );
    }

    #[test]
    fn java() {
        check(
            "com.mysql.cj.jdbc.exceptions.CommunicationsException: Communications link failure",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "The last packet successfully received from the server was 123,456 milliseconds ago.  The last packet sent successfully to the server was 123,458 milliseconds ago.",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "The last packet successfully received from the server was 5 milliseconds ago.  The last packet sent successfully to the server was 4 milliseconds ago.",
            NetworkDrop,
            RetryIfIdempotent,
        );
        check(
            "The last packet sent successfully to the server was 0 milliseconds ago. The driver has not received any packets from the server.",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "java.sql.SQLNonTransientConnectionException: No operations allowed after connection closed.",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "HikariPool-1 - Failed to validate connection com.mysql.cj.jdbc.ConnectionImpl@5f1c3e2a (No operations allowed after connection closed.). Possibly consider using a shorter maxLifetime value.",
            IdleTimeout,
            SafeToRetry,
        );
        check(
            "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "com.mysql.cj.jdbc.exceptions.PacketTooBigException: Packet for query is too large (4,739,923 > 1,048,576). You can change this value on the server by setting the 'max_allowed_packet' variable.",
            PacketTooLarge,
            DoNotRetry,
        );
        check(
            "Caused by: java.io.EOFException: Can not read response from server. Expected to read 4 bytes, read 0 bytes before connection was unexpectedly lost.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "Caused by: java.net.SocketException: Connection reset",
            NetworkDrop,
            RetryIfIdempotent,
        );
        check(
            "Caused by: java.net.SocketTimeoutException: Read timed out",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "com.mysql.cj.jdbc.exceptions.MySQLTransactionRollbackException: Deadlock found when trying to get lock; try restarting transaction",
            Deadlock,
            RetryTransaction,
        );
    }

    #[test]
    fn go() {
        check(
            "[mysql] 2024/06/01 12:00:00 packets.go:37: unexpected EOF",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "[mysql] 2024/06/01 12:00:00 packets.go:122: closing bad idle connection: connection reset by peer",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check("driver: bad connection", IdleTimeout, RetryIfIdempotent);
        check(
            "[mysql] 2024/06/01 12:00:00 connection.go:173: invalid connection",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check("busy buffer", OutOfSync, DoNotRetry);
        check(
            "commands out of sync. You can't run this command now",
            OutOfSync,
            DoNotRetry,
        );
        check(
            "Error 1205 (HY000): Lock wait timeout exceeded; try restarting transaction",
            LockWaitTimeout,
            RetryTransaction,
        );
        check(
            "Error 1040: Too many connections",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "packet for query is too large. Try adjusting the `Config.MaxAllowedPacket`",
            PacketTooLarge,
            DoNotRetry,
        );
        check(
            "dial tcp 10.0.0.9:3306: connect: connection refused",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "read tcp 10.0.0.5:51234->10.0.0.9:3306: i/o timeout",
            NetworkDrop,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn rust() {
        // mysql_async 0.37 error/mod.rs Display strings
        check(
            "Input/output error: Input/output error: connection closed",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "Driver error: `Connection to the server is closed.'",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Server error: `ERROR 4031 (HY000): The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.'",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Server error: `ERROR 1927 (70100): Connection was killed'",
            ConnectionKilled,
            RetryIfIdempotent,
        );
        check(
            "Input/output error: Input/output error: broken pipe",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Driver error: `Packet too large.'",
            PacketTooLarge,
            DoNotRetry,
        );
        check(
            "Driver error: `Packet out of order.'",
            OutOfSync,
            DoNotRetry,
        );
        // sqlx
        check(
            "error communicating with database: Connection reset by peer (os error 104)",
            NetworkDrop,
            RetryIfIdempotent,
        );
        check(
            "error returned from database: 1213 (40001): Deadlock found when trying to get lock; try restarting transaction",
            Deadlock,
            RetryTransaction,
        );
        check(
            "pool timed out while waiting for an open connection",
            TooManyConnections,
            SafeToRetry,
        );
        // diesel (libmysqlclient message)
        check(
            "DatabaseError(UnableToSendCommand, \"MySQL server has gone away\")",
            IdleTimeout,
            ReconnectThenRetry,
        );
    }

    #[test]
    fn mysql_cli() {
        check(
            "ERROR 2006 (HY000): MySQL server has gone away",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "ERROR 2006 (HY000): Server has gone away",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "No connection. Trying to reconnect...",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial communication packet', system error: 0",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 2013 (HY000): Lost connection to server at 'handshake: reading initial communication packet', system error: 11",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 2002 (HY000): Can't connect to local MySQL server through socket '/run/mysqld/mysqld.sock' (2)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 2002 (HY000): Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 2003 (HY000): Can't connect to MySQL server on '127.0.0.1' (111)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 2003 (HY000): Can't connect to MySQL server on '10.1.2.3:3306' (110)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 2005 (HY000): Unknown MySQL server host 'db.internal' (-2)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ERROR 1129 (HY000): Host '10.0.0.8' is blocked because of many connection errors; unblock with 'mysqladmin flush-hosts'",
            HostBlocked,
            DoNotRetry,
        );
        check(
            "ERROR 1130 (HY000): Host '10.0.0.8' is not allowed to connect to this MariaDB server",
            AccessDenied,
            DoNotRetry,
        );
        check(
            "ERROR 3024 (HY000): Query execution was interrupted, maximum statement execution time exceeded",
            QueryTimeout,
            DoNotRetry,
        );
        check(
            "ERROR 1969 (70100): Query execution was interrupted (max_statement_time exceeded)",
            QueryTimeout,
            DoNotRetry,
        );
        check(
            "ERROR 1317 (70100): Query execution was interrupted",
            ConnectionKilled,
            RetryIfIdempotent,
        );
        check(
            "ERROR 1053 (08S01): Server shutdown in progress",
            ServerRestart,
            ReconnectThenRetry,
        );
        check(
            "ERROR 2013 (HY000) at line 3: Lost connection to MySQL server during query",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "ERROR 1290 (HY000): The MySQL server is running with the --read-only option so it cannot execute this statement",
            Unknown,
            ReconnectThenRetry,
        );
        check(
            "ERROR 2014 (HY000): Commands out of sync; you can't run this command now",
            OutOfSync,
            DoNotRetry,
        );
    }

    #[test]
    fn server_logs() {
        check(
            "2024-05-06T09:12:44.015531Z 118 [Note] [MY-010914] [Server] Aborted connection 118 to db: 'app' user: 'app' host: '172.18.0.5' (Got timeout reading communication packets).",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "2019-01-01T00:00:00.000000Z 7 [Note] Aborted connection 7 to db: 'x' user: 'y' host: 'z' (Got an error reading communication packets)",
            NetworkDrop,
            ReconnectThenRetry,
        );
        check(
            "[Warning] Aborted connection 9 to db: 'x' user: 'y' host: 'z' (Got an error writing communication packets)",
            NetworkDrop,
            RetryIfIdempotent,
        );
        check(
            "[Warning] Aborted connection 33 to db: 'shop' user: 'shop' host: '10.0.3.16' (Got a packet bigger than 'max_allowed_packet' bytes)",
            PacketTooLarge,
            DoNotRetry,
        );
        check(
            "[Warning] Aborted connection 0 to db: 'unconnected' user: 'unauthenticated' host: '10.0.0.2' (This connection closed normally without authentication)",
            Unknown,
            SafeToRetry,
        );
        check(
            "[Note] /usr/sbin/mariadbd (initiated by: unknown): Normal shutdown",
            ServerRestart,
            ReconnectThenRetry,
        );
        check(
            "[Note] /usr/sbin/mysqld: Shutdown complete",
            ServerRestart,
            ReconnectThenRetry,
        );
        check(
            "[Note] /usr/sbin/mariadbd: ready for connections.",
            ServerRestart,
            ReconnectThenRetry,
        );
        check(
            "09:13:44 UTC - mysqld got signal 11 ;",
            ServerCrash,
            RetryIfIdempotent,
        );
        check(
            "2024-04-01  5:13:44 0 [ERROR] mariadbd got signal 6 ;",
            ServerCrash,
            RetryIfIdempotent,
        );
        check(
            "InnoDB: Assertion failure in file btr0cur.cc line 336",
            ServerCrash,
            RetryIfIdempotent,
        );
        check(
            "InnoDB: Starting crash recovery.",
            ServerCrash,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn kernel() {
        check(
            "[1203445.124012] Out of memory: Killed process 812 (mariadbd) total-vm:8123456kB, anon-rss:6234567kB",
            OutOfMemory,
            RetryIfIdempotent,
        );
        check(
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=mysqld,pid=812,uid=106",
            OutOfMemory,
            RetryIfIdempotent,
        );
        check(
            "Memory cgroup out of memory: Killed process 4321 (mysqld)",
            OutOfMemory,
            RetryIfIdempotent,
        );
        // Another process killed for memory is not the database's problem.
        check(
            "Out of memory: Killed process 4242 (java) total-vm:4123456kB",
            Unknown,
            DoNotRetry,
        );
    }
}

/// Lines that MariaDB 10.11 and its client really printed on this project's harness servers.
mod seen_on_the_harness {
    use super::check;
    use goneaway_core::Cause::*;
    use goneaway_core::Retry::*;

    #[test]
    fn mariadb_client_says_server_has_gone_away() {
        // The mariadb 10.11 CLI after idling past wait_timeout (demo step one).
        check(
            "ERROR 2006 (HY000) at line 2: Server has gone away",
            IdleTimeout,
            ReconnectThenRetry,
        );
    }

    #[test]
    fn mariadb_logs_a_kill_as_killed() {
        check(
            "2026-11-21 17:43:11 15 [Warning] Aborted connection 15 to db: 'goneaway' user: 'goneaway' host: '127.0.0.1' (KILLED)",
            ConnectionKilled,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn mariadb_could_not_read_packet_after_wait_timeout() {
        // log_warnings=4: the line before "Aborted connection … (Got timeout reading …)".
        check(
            "2026-11-21 17:21:49 3 [Warning] Could not read packet: fd: 43  state: 1  read_length: 4  errno: 110  vio_errno: 1159  length: -1",
            IdleTimeout,
            ReconnectThenRetry,
        );
    }

    #[test]
    fn mariadb_logs_an_oversized_packet_as_a_read_error() {
        let d = goneaway_core::classify_text(
            "2026-11-21 17:43:11 9 [Warning] Aborted connection 9 to db: 'goneaway' user: 'goneaway' host: '127.0.0.1' (Got an error reading communication packets)",
        );
        assert!(d.mentions(PacketTooLarge), "{d:?}");
        assert!(d.tell_apart.iter().any(|t| t.contains("1153")), "{d:?}");
    }
}

mod logs {
    use super::corpus_file;
    use goneaway_core::{scan, Cause, Retry};

    #[test]
    fn python_traceback_is_one_finding() {
        let report = scan(&corpus_file("python_sqlalchemy_traceback.txt")).unwrap();
        // The BrokenPipeError line, then PyMySQL's and SQLAlchemy's 2006 lines (grouped).
        let gone: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.code == Some(2006))
            .collect();
        assert_eq!(gone.len(), 1, "{report:#?}");
        assert_eq!(gone[0].count, 2);
        assert_eq!(gone[0].retry, Retry::ReconnectThenRetry);
        assert_eq!(gone[0].cause, Cause::IdleTimeout);
    }

    #[test]
    fn java_stack_trace_uses_the_last_packet_time() {
        let report = scan(&corpus_file("java_hikari_stacktrace.txt")).unwrap();
        let hikari = &report.findings[0];
        assert_eq!(hikari.source, "HikariCP");
        assert_eq!(hikari.count, 2);
        assert_eq!(hikari.lines, vec![1, 2]);
        let link = report
            .findings
            .iter()
            .find(|f| {
                f.source == "MySQL Connector/J"
                    && f.cause == Cause::IdleTimeout
                    && f.retry == Retry::ReconnectThenRetry
            })
            .expect("link failure refined by its 'last packet' line");
        assert_eq!(link.count, 2, "{report:#?}");
        assert!(link.diagnosis.explanation.contains("612 s"));
    }

    #[test]
    fn laravel_log() {
        let report = scan(&corpus_file("laravel.log")).unwrap();
        let causes: Vec<(Cause, Option<u16>, usize)> = report
            .findings
            .iter()
            .map(|f| (f.cause, f.code, f.count))
            .collect();
        assert_eq!(
            causes,
            vec![
                (Cause::IdleTimeout, Some(2006), 3),
                (Cause::Deadlock, Some(1213), 1),
                (Cause::ServerUnreachable, Some(2002), 2),
            ],
            "{report:#?}"
        );
        assert_eq!(report.findings[0].sqlstate.as_deref(), Some("HY000"));
    }

    #[test]
    fn mariadb_error_log() {
        let report = scan(&corpus_file("mariadb_error.log")).unwrap();
        let idle = &report.findings[0];
        assert_eq!(
            (idle.cause, idle.count, idle.first_line),
            (Cause::IdleTimeout, 2, 1)
        );
        assert!(
            idle.diagnosis.mentions(Cause::NetTimeout),
            "timeout reading is ambiguous"
        );
        let find = |c: Cause| report.findings.iter().find(|f| f.cause == c);
        assert_eq!(find(Cause::PacketTooLarge).unwrap().count, 1);
        let restart = find(Cause::ServerRestart).unwrap();
        assert_eq!(
            restart.count, 4,
            "shutdown, complete, ready, ready: {report:#?}"
        );
        let crash = report
            .findings
            .iter()
            .filter(|f| f.cause == Cause::ServerCrash)
            .map(|f| f.count)
            .sum::<usize>();
        assert_eq!(
            crash, 2,
            "signal line and crash recovery; banner lines absorbed"
        );
        assert_eq!(report.lines_scanned, 16);
    }

    #[test]
    fn mysql8_error_log() {
        let report = scan(&corpus_file("mysql8_error.log")).unwrap();
        let causes: Vec<Cause> = report.findings.iter().map(|f| f.cause).collect();
        assert!(causes.contains(&Cause::ServerRestart));
        assert!(causes.contains(&Cause::NetworkDrop));
        assert!(causes.contains(&Cause::ServerCrash));
        let net = report
            .findings
            .iter()
            .find(|f| f.cause == Cause::NetworkDrop)
            .unwrap();
        assert_eq!(net.count, 2);
    }

    #[test]
    fn kernel_log() {
        let report = scan(&corpus_file("kernel.log")).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        assert_eq!(report.findings[0].cause, Cause::OutOfMemory);
        assert_eq!(report.findings[0].lines, vec![2, 3]);
    }

    #[test]
    fn node_log() {
        let report = scan(&corpus_file("node.log")).unwrap();
        let causes: Vec<Cause> = report.findings.iter().map(|f| f.cause).collect();
        assert!(causes.contains(&Cause::TooManyConnections));
        assert!(causes.contains(&Cause::NetworkDrop));
        let lost = &report.findings[0];
        assert_eq!(
            (lost.cause, lost.count),
            (Cause::IdleTimeout, 2),
            "{report:#?}"
        );
    }

    #[test]
    fn go_log() {
        let report = scan(&corpus_file("go.log")).unwrap();
        let causes: Vec<Cause> = report.findings.iter().map(|f| f.cause).collect();
        assert_eq!(
            causes,
            vec![
                Cause::IdleTimeout,
                Cause::IdleTimeout,
                Cause::IdleTimeout,
                Cause::LockWaitTimeout,
                Cause::OutOfSync,
                Cause::NetworkDrop
            ],
            "{report:#?}"
        );
    }

    #[test]
    fn repeats_are_counted_with_line_numbers() {
        let mut log = String::new();
        for i in 0..150 {
            log.push_str(&format!("INFO request {i} ok\n"));
            log.push_str("ERROR 2006 (HY000): MySQL server has gone away\n");
        }
        let report = goneaway_core::scan(&log).unwrap();
        assert_eq!(report.findings.len(), 1);
        let f = &report.findings[0];
        assert_eq!(f.count, 150);
        assert_eq!(f.first_line, 2);
        assert_eq!(f.lines.len(), 100, "line numbers are capped");
        assert_eq!(f.lines[1], 4);
    }

    #[test]
    fn no_error_is_an_empty_report() {
        let report = scan("all good\nnothing to see\n").unwrap();
        assert!(report.is_empty());
        assert_eq!(report.lines_scanned, 2);
    }

    #[test]
    fn passwords_are_masked_in_examples() {
        let report =
            scan("connect to mysql://app:s3cret@db:3306/app failed: ERROR 2003 (HY000): Can't connect to MySQL server on 'db' (111)").unwrap();
        assert!(!report.findings[0].example.contains("s3cret"));
    }
}

mod input {
    use goneaway_core::{scan, scan_bytes, InputError, MAX_INPUT_BYTES};

    #[test]
    fn empty() {
        assert_eq!(scan_bytes(b""), Err(InputError::Empty));
        assert_eq!(scan(" \n\t\n"), Err(InputError::Empty));
    }

    #[test]
    fn binary() {
        assert_eq!(
            scan_bytes(b"\x7fELF\x02\x01\x01\x00\x00"),
            Err(InputError::Binary { offset: 7 })
        );
    }

    #[test]
    fn not_text() {
        let junk: Vec<u8> = (0..200u8).map(|i| 0x80 | (i % 0x40)).collect();
        assert!(matches!(
            scan_bytes(&junk),
            Err(InputError::NotText { offset: 0 })
        ));
    }

    #[test]
    fn a_stray_latin1_byte_is_tolerated() {
        let mut log = b"ERROR 2006 (HY000): MySQL server has gone away -- caf".to_vec();
        log.push(0xe9); // Latin-1 e-acute
        log.extend_from_slice(b" database, plenty of ordinary ASCII text around it\n");
        assert_eq!(scan_bytes(&log).unwrap().findings.len(), 1);
    }

    #[test]
    fn huge() {
        let big = vec![b'a'; MAX_INPUT_BYTES + 1];
        assert_eq!(
            scan_bytes(&big),
            Err(InputError::TooLarge {
                size: MAX_INPUT_BYTES + 1,
                limit: MAX_INPUT_BYTES
            })
        );
    }

    #[test]
    fn errors_display() {
        assert_eq!(InputError::Empty.to_string(), "the input is empty");
    }
}

mod json {
    use goneaway_core::{classify_code, scan};
    use serde_json::Value;

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn report_field_names_are_stable() {
        let report =
            scan("ERROR 2013 (HY000): Lost connection to MySQL server during query").unwrap();
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(keys(&v), ["findings", "lines_scanned"]);
        let f = &v["findings"][0];
        assert_eq!(
            keys(f),
            [
                "cause",
                "code",
                "count",
                "diagnosis",
                "example",
                "first_line",
                "lines",
                "retry",
                "source",
                "sqlstate",
                "symbol",
                "title"
            ]
        );
        assert_eq!(f["cause"], "idle_timeout");
        assert_eq!(f["retry"], "retry_if_idempotent");
        assert_eq!(f["code"], 2013);
        assert_eq!(f["symbol"], "CR_SERVER_LOST");
        assert_eq!(
            keys(&f["diagnosis"]),
            [
                "causes",
                "code",
                "connection_lost",
                "explanation",
                "fixes",
                "retry",
                "sqlstate",
                "symbol",
                "tell_apart"
            ]
        );
        assert_eq!(keys(&f["diagnosis"]["causes"][0]), ["cause", "likelihood"]);
    }

    #[test]
    fn pretty_json_round_trips_through_serde_json() {
        let d = classify_code(1213, Some("40001"), None);
        let text = serde_json::to_string_pretty(&d).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["retry"], "retry_transaction");
        assert_eq!(v["causes"][0]["cause"], "deadlock");
        assert_eq!(v["sqlstate"], "40001");
    }
}

mod render {
    use goneaway_core::scan;

    const LOG: &str = "pymysql.err.OperationalError: (2006, \"MySQL server has gone away (BrokenPipeError(32, 'Broken pipe'))\")\nERROR 1213 (40001): Deadlock found when trying to get lock; try restarting transaction\n";

    #[test]
    fn text_has_every_part() {
        let text = scan(LOG).unwrap().render_text(false);
        for part in [
            "2 error(s) found",
            "idle connection closed by the server",
            "2006 CR_SERVER_GONE_ERROR",
            "seen:   1 time, line 1",
            "open a new connection, then retry",
            "why:",
            "fixes:",
            "tell apart:",
            "rerun the whole transaction",
        ] {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }
        assert!(!text.contains('\x1b'));
        assert!(scan(LOG).unwrap().render_text(true).contains("\x1b[1m"));
    }

    #[test]
    fn markdown_has_a_table_and_sections() {
        let md = scan(LOG).unwrap().render_markdown();
        assert!(md.contains("| # | cause | code | count | retry |"));
        assert!(md.contains("## 1. idle connection closed by the server"));
        assert!(md.contains("**Fixes**"));
        assert!(md.contains("```\npymysql.err.OperationalError"));
    }

    #[test]
    fn nothing_found() {
        let report = scan("hello\n").unwrap();
        assert!(report
            .render_text(false)
            .contains("No MySQL/MariaDB connection error"));
        assert!(report
            .render_markdown()
            .contains("No MySQL/MariaDB connection error"));
    }
}

mod clash {
    use goneaway_core::{classify_code, classify_text, Cause, Retry, ServerError};

    #[test]
    fn mysql_4031_is_idle_timeout() {
        let d = classify_code(
            4031,
            Some("HY000"),
            Some("The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior."),
        );
        assert_eq!(
            (d.primary(), d.retry),
            (Cause::IdleTimeout, Retry::ReconnectThenRetry)
        );
        assert!(d.is_disconnect());
        assert_eq!(d.symbol, Some("ER_CLIENT_INTERACTION_TIMEOUT"));
    }

    #[test]
    fn mariadb_4031_is_a_trigger_error() {
        let d = classify_text(
            "ERROR 4031 (HY000): Referenced trigger 'trg1' for the given action time and event type does not exist",
        );
        assert_eq!((d.primary(), d.retry), (Cause::Unknown, Retry::DoNotRetry));
        assert!(!d.is_disconnect());
        let e = ServerError::new(
            4031,
            Some("HY000"),
            "Referenced trigger 'trg1' for the given action time and event type does not exist",
        );
        assert_eq!(e.symbol(), Some("ER_REFERENCED_TRG_DOES_NOT_EXIST"));
        assert_eq!(e.to_string(), "4031 (HY000): Referenced trigger 'trg1' for the given action time and event type does not exist");
    }

    #[test]
    fn bare_4031_defaults_to_mysql() {
        assert_eq!(
            classify_code(4031, None, None).primary(),
            Cause::IdleTimeout
        );
    }
}

#[cfg(feature = "mysql_async")]
mod mysql_async_errors {
    use goneaway_core::{classify_mysql_async, Cause, Retry};
    use mysql_async::{DriverError, Error, IoError, ServerError};
    use std::io;

    #[test]
    fn eof_after_idle_is_idle_timeout() {
        // What mysql_async 0.37 returns after MariaDB's wait_timeout closed the socket.
        let err = Error::Io(IoError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        )));
        let d = classify_mysql_async(&err);
        assert_eq!(d.primary(), Cause::IdleTimeout);
        assert!(d.is_disconnect());
    }

    #[test]
    fn driver_and_server_errors() {
        let d = classify_mysql_async(&Error::Driver(DriverError::ConnectionClosed));
        assert_eq!(d.retry, Retry::ReconnectThenRetry);
        let d = classify_mysql_async(&Error::Driver(DriverError::PacketTooLarge));
        assert_eq!(
            (d.primary(), d.retry),
            (Cause::PacketTooLarge, Retry::DoNotRetry)
        );
        let d = classify_mysql_async(&Error::Driver(DriverError::PoolDisconnected));
        assert_eq!(d.retry, Retry::DoNotRetry);
        let server = ServerError {
            code: 1213,
            message: "Deadlock found when trying to get lock; try restarting transaction".into(),
            state: "40001".into(),
        };
        let d = classify_mysql_async(&Error::Server(server));
        assert_eq!(
            (d.primary(), d.retry),
            (Cause::Deadlock, Retry::RetryTransaction)
        );
        assert_eq!(d.sqlstate.as_deref(), Some("40001"));
        let reset = Error::Io(IoError::Io(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert_eq!(classify_mysql_async(&reset).retry, Retry::RetryIfIdempotent);
    }
}
