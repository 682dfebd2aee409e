//! The integration tests of goneaway-core, one binary.
//!
//! Modules:
//! - `corpus`: real error strings from every ecosystem, each checked for cause and retry
//!   advice through one helper, `check`.
//! - `drivers`: the strings of Prisma, .NET (MySqlConnector, MySql.Data), Connector/J and
//!   MariaDB Connector/J timeouts and cancellation, Perl DBI, Ruby mysql2 and Active Record,
//!   Elixir MyXQL and DBConnection, Knex, Sequelize and TypeORM, each with its source.
//! - `net_timeout_received`: errors 1159/1161 received by a client against the same words in
//!   the server's error log.
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

/// The drivers of issue 13: each string as its driver prints it, with the file it comes from.
mod drivers {
    use super::check;
    use goneaway_core::Cause::*;
    use goneaway_core::Retry::*;

    #[test]
    fn prisma() {
        // prisma-engines libs/user-facing-errors/src/common.rs P1001; quaint maps a reset
        // in use to it too, so the outcome is unknown.
        check(
            "Error: P1001: Can't reach database server at `db.internal`:`3306`",
            ServerUnreachable,
            RetryIfIdempotent,
        );
        check(
            "PrismaClientInitializationError: Can't reach database server at `localhost`:`3306` Please make sure your database server is running at `localhost`:`3306`.",
            ServerUnreachable,
            RetryIfIdempotent,
        );
        // common.rs P1017 (quaint: end of stream)
        check(
            "PrismaClientKnownRequestError: Server has closed the connection.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        // query_engine/mod.rs P2024
        check(
            "Timed out fetching a new connection from the connection pool. More info: http://pris.ly/d/connection-pool (Current connection pool timeout: 10, connection limit: 5)",
            TooManyConnections,
            SafeToRetry,
        );
        // common.rs P1008 with quaint.rs's socket-timeout context
        check(
            "Operations timed out after `5s`. Context: Socket timeout (the database failed to respond to a query within the configured timeout — see https://pris.ly/d/mysql-connector for more details.).",
            QueryTimeout,
            RetryIfIdempotent,
        );
        // query_engine/mod.rs P2034 (MySQL 1213)
        check(
            "Transaction failed due to a write conflict or a deadlock. Please retry your transaction",
            Deadlock,
            RetryTransaction,
        );
    }

    #[test]
    fn dotnet_mysqlconnector() {
        // MySqlConnection.cs CreateSessionAsync
        check(
            "MySqlConnector.MySqlException (0x80004005): Connect Timeout expired. All pooled connections are in use.",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "MySqlConnector.MySqlException (0x80004005): Connect Timeout expired.",
            ServerUnreachable,
            SafeToRetry,
        );
        // ServerSession.cs
        check(
            "MySqlConnector.MySqlException (0x80004005): Unable to connect to any of the specified MySQL hosts.",
            ServerUnreachable,
            SafeToRetry,
        );
        // MySqlException.cs CreateForTimeout
        check(
            "MySqlConnector.MySqlException (0x80004005): The Command Timeout expired before the operation completed.",
            QueryTimeout,
            RetryIfIdempotent,
        );
        // MySqlDataReader.cs ActivateResultSet
        check(
            "MySqlConnector.MySqlException (0x80004005): Failed to read the result set.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        // Protocol/Serialization/ProtocolUtility.cs
        check(
            " ---> System.IO.EndOfStreamException: Expected to read 4 header bytes but only received 0.",
            IdleTimeout,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn dotnet_mysql_data() {
        // MySQL.Data/src/Resources.resx
        check(
            "MySql.Data.MySqlClient.MySqlException (0x80004005): Unable to connect to any of the specified MySQL hosts.",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "MySql.Data.MySqlClient.MySqlException (0x80004005): Timeout expired.  The timeout period elapsed prior to completion of the operation or the server is not responding.",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "MySql.Data.MySqlClient.MySqlException (0x80004005): error connecting: Timeout expired.  The timeout period elapsed prior to obtaining a connection from the pool.  This may have occurred because all pooled connections were in use and max pool size was reached.",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "MySql.Data.MySqlClient.MySqlException (0x80004005): Fatal error encountered during command execution. ---> MySql.Data.MySqlClient.MySqlException (0x80004005): Reading from the stream has failed. ---> System.IO.EndOfStreamException: Attempted to read past the end of the stream.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "MySql.Data.MySqlClient.MySqlException (0x80004005): Connection unexpectedly terminated.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "MySql.Data.MySqlClient.MySqlException (0x80004005): Writing to the stream failed.",
            IdleTimeout,
            ReconnectThenRetry,
        );
    }

    #[test]
    fn mysql_connector_j() {
        // src/main/resources/com/mysql/cj/LocalizedErrorMessages.properties
        check(
            "com.mysql.cj.jdbc.exceptions.MySQLTimeoutException: Statement cancelled due to timeout or client request",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "com.mysql.cj.jdbc.exceptions.MySQLStatementCancelledException: Statement cancelled due to client request",
            Unknown,
            RetryIfIdempotent,
        );
        check(
            r#"com.mysql.cj.jdbc.exceptions.CommunicationsException: Connection closed to due to statement timeout being reached and "queryTimeoutKillsConnection" being set to "true"."#,
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "java.sql.SQLException: Communications link failure during commit(). Transaction resolution unknown.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "java.sql.SQLException: Communications link failure during rollback(). Transaction resolution unknown.",
            IdleTimeout,
            RetryTransaction,
        );
        check(
            "Application was streaming results when the connection failed. Consider raising value of 'net_write_timeout' on the server.",
            NetTimeout,
            RetryIfIdempotent,
        );
        check(
            "java.sql.SQLTimeoutException: Connection attempt exceeded defined timeout.",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "java.sql.SQLNonTransientConnectionException: Could not create connection to database server. Attempted reconnect 3 times. Giving up.",
            ServerUnreachable,
            SafeToRetry,
        );
        // The server's own 1317, as Connector/J relays it after KILL QUERY.
        check(
            "java.sql.SQLException: Query execution was interrupted",
            ConnectionKilled,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn mariadb_connector_j() {
        // client/impl/MultiPrimaryClient.java readStreamingResults
        check(
            "java.sql.SQLException: (conn=5) Socket error during result streaming",
            NetTimeout,
            RetryIfIdempotent,
        );
        // client/impl/StandardClient.java readPacket ("timout" sic)
        check(
            "java.sql.SQLNonTransientConnectionException: (conn=1234) Socket timout error",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "java.sql.SQLNonTransientConnectionException: (conn=1234) Socket error",
            IdleTimeout,
            RetryIfIdempotent,
        );
        // client/socket/impl/PacketReader.java
        check(
            "Caused by: java.io.EOFException: unexpected end of stream, read 0 bytes from 4 (socket was closed by server)",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "java.sql.SQLNonTransientConnectionException: (conn=17) Connection is closed",
            IdleTimeout,
            ReconnectThenRetry,
        );
        // StandardClient.java handleIOError / handleTimeoutError: while connecting
        check(
            "java.sql.SQLNonTransientConnectionException: Could not connect to address=(host=db)(port=3306)(type=primary) : Connection refused",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "java.sql.SQLNonTransientConnectionException: Could not connect to address=(host=db)(port=3306)(type=primary) : unexpected end of stream, read 0 bytes from 4 (socket was closed by server)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "java.sql.SQLNonTransientConnectionException: Could not connect to address=(host=db)(port=3306)(type=primary) : (conn=9) Too many connections",
            TooManyConnections,
            SafeToRetry,
        );
        check(
            "java.sql.SQLTimeoutException: Socket timeout when connecting to address=(host=db)(port=3306)(type=primary). Connect timed out",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "java.sql.SQLTransientConnectionException: (conn=12) Packet too big for current server max_allowed_packet value",
            PacketTooLarge,
            DoNotRetry,
        );
        // export/ExceptionFactory.java: 70100 → SQLTimeoutException
        check(
            "java.sql.SQLTimeoutException: (conn=8) Query execution was interrupted",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "java.sql.SQLTimeoutException: (conn=8) Query execution was interrupted (max_statement_time exceeded)",
            QueryTimeout,
            DoNotRetry,
        );
    }

    #[test]
    fn perl_dbi() {
        // DBD::mysql and DBD::MariaDB pass the client library's message through (DBD-mysql
        // t/rt85919-fetch-lost-connection.t: 2006 'MySQL server has gone away' after
        // wait_timeout); DBI prefixes "DBD::mysql::st execute failed: " and Perl appends " at
        // FILE line N."
        check(
            "DBD::mysql::st execute failed: MySQL server has gone away at /app/lib/Job.pm line 42.",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "DBD::mysql::db do failed: Lost connection to MySQL server during query at ./worker.pl line 17.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "DBD::MariaDB::st execute failed: Server has gone away at script.pl line 9.",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "DBI connect('database=app;host=db','app',...) failed: Can't connect to MySQL server on 'db' (111) at ./x.pl line 5.",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "DBD::mysql::st execute failed: Lock wait timeout exceeded; try restarting transaction at ./x.pl line 8.",
            LockWaitTimeout,
            RetryTransaction,
        );
        check(
            "DBD::mysql::st execute failed: Got timeout reading communication packets at ./load.pl line 88.",
            NetTimeout,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn ruby_mysql2_and_active_record() {
        // Active Record wraps the mysql2 message: the wrapped message decides.
        check(
            "ActiveRecord::StatementInvalid: Mysql2::Error: MySQL server has gone away: SELECT `users`.* FROM `users`",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "ActiveRecord::ConnectionFailed: Mysql2::Error::ConnectionError: Lost connection to MySQL server during query",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "ActiveRecord::ConnectionFailed: Mysql2::Error::ConnectionError: Connection was killed",
            ConnectionKilled,
            RetryIfIdempotent,
        );
        check(
            "ActiveRecord::ConnectionNotEstablished: Mysql2::Error::ConnectionError: Can't connect to MySQL server on 'db' (111)",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "ActiveRecord::Deadlocked: Mysql2::Error: Deadlock found when trying to get lock; try restarting transaction",
            Deadlock,
            RetryTransaction,
        );
        // mysql2 ext/mysql2/client.c REQUIRE_CONNECTED; mysql2_adapter.rb translate_exception
        check(
            "ActiveRecord::ConnectionNotEstablished: MySQL client is not connected",
            IdleTimeout,
            ReconnectThenRetry,
        );
        check(
            "Mysql2::Error::ConnectionError: MySQL client is not connected",
            IdleTimeout,
            ReconnectThenRetry,
        );
        // client.c read_timeout
        check(
            "ActiveRecord::AdapterTimeout: Mysql2::Error::TimeoutError: Timeout waiting for a response from the last query. (waited 5 seconds)",
            QueryTimeout,
            RetryIfIdempotent,
        );
        // client.c rb_mysql_client_async_result / busy checks
        check(
            "Mysql2::Error: This connection is in use by: #<Thread:0x000055d5c0a1b2c8 run>",
            OutOfSync,
            DoNotRetry,
        );
        check(
            "Mysql2::Error: This connection is still waiting for a result, try again once you have the result",
            OutOfSync,
            DoNotRetry,
        );
        // connection_pool/queue.rb wait_poll
        check(
            "ActiveRecord::ConnectionTimeoutError: could not obtain a connection from the pool within 5.000 seconds (waited 5.001 seconds); all pooled connections were in use",
            TooManyConnections,
            SafeToRetry,
        );
        // Class names alone (the message said nothing more)
        check(
            "ActiveRecord::ConnectionFailed",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "ActiveRecord::ConnectionNotEstablished",
            ServerUnreachable,
            ReconnectThenRetry,
        );
        check(
            "ActiveRecord::AdapterTimeout",
            QueryTimeout,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn elixir_db_connection_and_myxql() {
        // db_connection lib/db_connection/connection_pool.ex drop/2
        check(
            "** (DBConnection.ConnectionError) connection not available and request was dropped from queue after 2000ms. This means requests are coming in and your connection pool cannot serve them fast enough.",
            TooManyConnections,
            SafeToRetry,
        );
        // holder.ex checkout_result
        check(
            "** (DBConnection.ConnectionError) connection not available because deadline reached while in queue",
            TooManyConnections,
            SafeToRetry,
        );
        // connection_pool.ex handle_info({:timeout, …})
        check(
            "[error] MyXQL.Connection (#PID<0.345.0>) disconnected: ** (DBConnection.ConnectionError) client #PID<0.600.0> timed out because it queued and checked out the connection for longer than 15000ms",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "** (DBConnection.ConnectionError) client #PID<0.74.0> timed out because it checked out the connection for longer than 30000ms",
            QueryTimeout,
            RetryIfIdempotent,
        );
        // holder.ex handle_or_cleanup
        check(
            "** (DBConnection.ConnectionError) connection is closed because of an error, disconnect or timeout",
            IdleTimeout,
            ReconnectThenRetry,
        );
        // myxql lib/myxql/connection.ex format_reason(:closed)
        check(
            "[error] MyXQL.Connection (#PID<0.312.0>) disconnected: ** (DBConnection.ConnectionError) socket closed",
            IdleTimeout,
            RetryIfIdempotent,
        );
        // myxql connection.ex error/1: "(code) (NAME) message"
        check(
            "** (MyXQL.Error) (1205) (ER_LOCK_WAIT_TIMEOUT) Lock wait timeout exceeded; try restarting transaction",
            LockWaitTimeout,
            RetryTransaction,
        );
        check(
            "** (MyXQL.Error) (1927) (ER_CONNECTION_KILLED) Connection was killed",
            ConnectionKilled,
            RetryIfIdempotent,
        );
        check(
            "** (MyXQL.Error) (4031) (ER_CLIENT_INTERACTION_TIMEOUT) The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.",
            IdleTimeout,
            ReconnectThenRetry,
        );
        // MyXQL's connect errors: "(host:port) reason - :atom"
        check(
            "** (DBConnection.ConnectionError) (db:3306) connection refused - :econnrefused",
            ServerUnreachable,
            SafeToRetry,
        );
    }

    #[test]
    fn knex() {
        // knex lib/client.js acquireConnection
        check(
            "KnexTimeoutError: Knex: Timeout acquiring a connection. The pool is probably full. Are you missing a .transacting(trx) call?",
            TooManyConnections,
            SafeToRetry,
        );
        // lib/execution/runner.js
        check(
            "KnexTimeoutError: Defined query timeout of 5000ms exceeded when running query.",
            QueryTimeout,
            RetryIfIdempotent,
        );
        check(
            "Error: After query timeout of 5000ms exceeded, cancelling of query failed.",
            QueryTimeout,
            RetryIfIdempotent,
        );
    }

    #[test]
    fn sequelize() {
        // src/errors/connection/connection-acquire-timeout-error.ts
        check(
            "SequelizeConnectionAcquireTimeoutError: Operation timeout",
            TooManyConnections,
            SafeToRetry,
        );
        // src/dialects/mysql/connection-manager.js connect(): only while connecting
        check(
            "SequelizeConnectionRefusedError: connect ECONNREFUSED 127.0.0.1:3306",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "SequelizeHostNotFoundError: getaddrinfo ENOTFOUND db.internal",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "SequelizeHostNotReachableError: connect EHOSTUNREACH 10.0.0.9:3306",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "SequelizeAccessDeniedError: Access denied for user 'app'@'10.0.0.4' (using password: YES)",
            AccessDenied,
            DoNotRetry,
        );
        // The wrapped message decides when it is a connect failure goneaway knows ...
        check(
            "SequelizeConnectionError: Too many connections",
            TooManyConnections,
            SafeToRetry,
        );
        // ... and a timeout or reset while connecting still means nothing ran.
        check(
            "SequelizeConnectionError: connect ETIMEDOUT",
            ServerUnreachable,
            SafeToRetry,
        );
        check(
            "SequelizeConnectionError: read ECONNRESET",
            ServerUnreachable,
            SafeToRetry,
        );
        // src/errors/connection/connection-timed-out-error.ts
        check(
            "SequelizeConnectionTimedOutError: connect ETIMEDOUT 10.0.0.9:3306",
            ServerUnreachable,
            SafeToRetry,
        );
        // Query errors are the driver's own words.
        check(
            "SequelizeDatabaseError: Lock wait timeout exceeded; try restarting transaction",
            LockWaitTimeout,
            RetryTransaction,
        );
    }

    #[test]
    fn typeorm() {
        // src/error/QueryFailedError.ts: the driver's message without "Error: "
        check(
            "QueryFailedError: Connection lost: The server closed the connection.",
            IdleTimeout,
            RetryIfIdempotent,
        );
        check(
            "QueryFailedError: read ECONNRESET",
            NetworkDrop,
            RetryIfIdempotent,
        );
        // src/error/CannotExecuteNotConnectedError.ts (TypeORM 0.3)
        check(
            r#"CannotExecuteNotConnectedError: Cannot execute operation on "default" connection because connection is not yet established."#,
            Unknown,
            DoNotRetry,
        );
        // src/error/TransactionCommitFailedError.ts
        check(
            "TransactionCommitFailedError: Transaction commit failed",
            IdleTimeout,
            RetryIfIdempotent,
        );
    }
}

/// Errors 1159/1161 received by a client mean a transfer stalled past
/// net_read_timeout/net_write_timeout: the server sends no error packet when it closes an idle
/// connection. The same words in the server's own error log stay ambiguous.
mod net_timeout_received {
    use super::check;
    use goneaway_core::Cause::*;
    use goneaway_core::Retry::*;
    use goneaway_core::{classify_text, scan};

    const SERVER_LOG: &str = "MySQL/MariaDB server error log";

    #[track_caller]
    fn source_of(line: &str) -> &'static str {
        let report = scan(line).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        report.findings[0].source
    }

    #[test]
    fn numbered_1159_is_net_timeout_and_not_a_server_log() {
        for line in [
            "ERROR 1159 (08S01): Got timeout reading communication packets",
            "ERROR 1159 (08S01) at line 1: Got timeout reading communication packets",
            "Error 1159 (08S01): Got timeout reading communication packets",
            "pymysql.err.OperationalError: (1159, 'Got timeout reading communication packets')",
            "SQLSTATE[08S01]: Communication link failure: 1159 Got timeout reading communication packets",
            "mysql.connector.errors.OperationalError: 1159 (08S01): Got timeout reading communication packets",
            "** (MyXQL.Error) (1159) (ER_NET_READ_INTERRUPTED) Got timeout reading communication packets",
            "2024-05-01 [ERROR] worker: Error 1159 (08S01): Got timeout reading communication packets",
        ] {
            check(line, NetTimeout, RetryIfIdempotent);
            let d = classify_text(line);
            assert_eq!(d.code, Some(1159), "{line}");
            assert!(d.is_disconnect(), "{line}");
            assert_ne!(source_of(line), SERVER_LOG, "{line}");
        }
    }

    #[test]
    fn numbered_1161_is_net_timeout() {
        for line in [
            "ERROR 1161 (08S01): Got timeout writing communication packets",
            "Error 1161 (08S01): Got timeout writing communication packets",
        ] {
            check(line, NetTimeout, RetryIfIdempotent);
            assert_eq!(classify_text(line).code, Some(1161), "{line}");
            assert_ne!(source_of(line), SERVER_LOG, "{line}");
        }
    }

    #[test]
    fn driver_exceptions_carrying_the_words_are_the_error_number() {
        for (line, code) in [
            ("java.sql.SQLException: Got timeout reading communication packets", 1159),
            ("Mysql2::Error: Got timeout reading communication packets", 1159),
            ("Error: Got timeout reading communication packets", 1159),
            ("MySqlConnector.MySqlException (0x80004005): Got timeout reading communication packets", 1159),
            ("mysqli_sql_exception: Got timeout writing communication packets", 1161),
            ("2024-05-01 10:00:01 ERROR app: Got timeout reading communication packets", 1159),
            ("DBD::mysql::st execute failed: Got timeout writing communication packets at x.pl line 3.", 1161),
        ] {
            check(line, NetTimeout, RetryIfIdempotent);
            assert_eq!(classify_text(line).code, Some(code), "{line}");
            assert_ne!(source_of(line), SERVER_LOG, "{line}");
        }
        // The read-error siblings: the server's 1158, received.
        let d = classify_text("java.sql.SQLException: Got an error reading communication packets");
        assert_eq!(d.code, Some(1158));
        assert_eq!(d.primary(), NetworkDrop);
    }

    #[test]
    fn the_same_words_in_the_server_log_keep_their_ranking() {
        for line in [
            "2024-05-01T10:00:00.000000Z 12 [Warning] Aborted connection 12 to db: 'shop' user: 'app' host: '10.0.0.7' (Got timeout reading communication packets)",
            "2024-04-01  3:02:11 27 [Warning] Aborted connection 27 to db: 'shop' user: 'shop' host: '10.0.3.15' (Got timeout reading communication packets)",
            // A thread id that looks like the error number is still a log line.
            "2024-05-01T10:00:00.000000Z 1159 [Note] [MY-010914] [Server] Aborted connection 1159 to db: 'shop' user: 'app' host: '10.0.0.7' (Got timeout reading communication packets).",
            // Bare words: no sign of a client, so read as the log line they usually are.
            "Got timeout reading communication packets",
        ] {
            let d = classify_text(line);
            assert_eq!(
                (d.primary(), d.retry),
                (IdleTimeout, ReconnectThenRetry),
                "{line}: {d:#?}"
            );
            assert!(d.mentions(NetTimeout), "still ambiguous: {line}");
            assert_eq!(source_of(line), SERVER_LOG, "{line}");
        }
        let line = "2024-05-06T09:15:02.411029Z 1159 [Note] [MY-010914] [Server] Got an error reading communication packets";
        check(line, NetworkDrop, ReconnectThenRetry);
        assert_eq!(source_of(line), SERVER_LOG);
    }

    #[test]
    fn a_client_1159_says_why_idle_is_unlikely() {
        let d = classify_text("ERROR 1159 (08S01): Got timeout reading communication packets");
        assert!(d.explanation.contains("net_read_timeout"), "{d:#?}");
        assert!(
            d.tell_apart.iter().any(|t| t.contains("LOAD DATA")),
            "{d:#?}"
        );
        // The idle timeout stays a remote candidate, below the network.
        let idle = d.causes.iter().find(|c| c.cause == IdleTimeout).unwrap();
        assert!(idle.likelihood < 0.1, "{d:#?}");
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
    fn dotnet_stack_trace_folds_the_inner_exception() {
        let report = scan(&corpus_file("dotnet_mysqlconnector.txt")).unwrap();
        let found: Vec<(Cause, usize, Vec<usize>)> = report
            .findings
            .iter()
            .map(|f| (f.cause, f.count, f.lines.clone()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Cause::IdleTimeout, 1, vec![1]),
                (Cause::TooManyConnections, 2, vec![9, 10]),
            ],
            "{report:#?}"
        );
        assert_eq!(report.findings[0].source, "MySqlConnector (.NET)");
    }

    #[test]
    fn connector_j_streaming_hint_sharpens_the_link_failure() {
        let report = scan(&corpus_file("java_streaming_stacktrace.txt")).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert_eq!((f.cause, f.first_line), (Cause::NetTimeout, 1));
        assert!(f
            .diagnosis
            .fixes
            .iter()
            .any(|x| x.contains("net_write_timeout")));
    }

    #[test]
    fn elixir_log() {
        let report = scan(&corpus_file("elixir.log")).unwrap();
        let found: Vec<(Cause, usize)> =
            report.findings.iter().map(|f| (f.cause, f.count)).collect();
        assert_eq!(
            found,
            vec![
                (Cause::IdleTimeout, 1),
                (Cause::QueryTimeout, 1),
                (Cause::TooManyConnections, 2),
                (Cause::Deadlock, 1),
            ],
            "{report:#?}"
        );
        assert_eq!(report.findings[3].code, Some(1213));
    }

    #[test]
    fn rails_log() {
        let report = scan(&corpus_file("rails.log")).unwrap();
        let found: Vec<(Cause, Retry)> =
            report.findings.iter().map(|f| (f.cause, f.retry)).collect();
        assert_eq!(
            found,
            vec![
                (Cause::IdleTimeout, Retry::RetryIfIdempotent),
                (Cause::IdleTimeout, Retry::ReconnectThenRetry),
                (Cause::TooManyConnections, Retry::SafeToRetry),
                (Cause::QueryTimeout, Retry::RetryIfIdempotent),
            ],
            "{report:#?}"
        );
        assert_eq!(report.findings[0].code, Some(2013));
    }

    #[test]
    fn net_timeout_received_by_a_client_next_to_the_server_log() {
        let report = scan(&corpus_file("net_timeout_client_and_server.log")).unwrap();
        let found: Vec<(Cause, Option<u16>, &str)> = report
            .findings
            .iter()
            .map(|f| (f.cause, f.code, f.source))
            .collect();
        assert_eq!(
            found,
            vec![
                (Cause::IdleTimeout, None, "MySQL/MariaDB server error log"),
                (
                    Cause::NetTimeout,
                    Some(1159),
                    "mysql CLI / mysql_async / go-sql-driver"
                ),
                (
                    Cause::NetTimeout,
                    Some(1161),
                    "Python (PyMySQL / MySQLdb / SQLAlchemy / Django)"
                ),
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
