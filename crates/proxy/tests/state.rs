//! Session state across backend replacements.

use std::time::Duration;

use mysql_async::prelude::*;

use crate::common::*;

#[tokio::test]
async fn session_state_survives_a_backend_replacement() {
    let server = server().await;
    server.admin("CREATE DATABASE other").await.unwrap();
    server
        .admin("GRANT ALL ON other.* TO 'goneaway'@'%'")
        .await
        .ok();
    server
        .admin("GRANT ALL ON other.* TO 'goneaway'@'localhost'")
        .await
        .ok();
    server
        .admin("GRANT ALL ON other.* TO 'goneaway'@'127.0.0.1'")
        .await
        .ok();
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("USE other").await.unwrap();
    conn.query_drop("SET time_zone = '+03:00', sql_mode = 'ANSI_QUOTES', autocommit = 0")
        .await
        .unwrap();
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    let stmt = conn.prep("SELECT ? + 1").await.unwrap();
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let row: (String, String, String, i64, String, i32) = conn
        .query_first("SELECT DATABASE(), @@time_zone, @@sql_mode, @@autocommit, @@tx_isolation, CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&row.0, "other");
    assert_eq!(&row.1, "+03:00");
    assert_eq!(&row.2, "ANSI_QUOTES");
    assert_eq!(row.3, 0);
    assert_eq!(&row.4, "READ-COMMITTED");
    assert_ne!(row.5 as u32, id);
    // The prepared statement was prepared again on the fresh backend.
    let v: Option<i64> = conn.exec_first(&stmt, (41,)).await.unwrap();
    assert_eq!(v, Some(42));
}

#[tokio::test]
async fn pinned_sessions_get_a_clear_error_then_continue() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();

    // An open transaction.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = conn.query_drop("COMMIT").await.unwrap_err();
    assert!(e.to_string().contains("open transaction"), "{e}");
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(0), "nothing of the lost transaction was committed");

    // A user variable.
    conn.query_drop("SET @x = 42").await.unwrap();
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = conn.query_drop("SELECT @x").await.unwrap_err();
    assert!(e.to_string().contains("user variables"), "{e}");
    assert_eq!(one(&mut conn, "SELECT 'usable'").await.unwrap(), "usable");
    // Assigned inside a statement, which the server does not flag as a state change
    // (MariaDB's main.insert_update: SELECT @stamp1 := f2 FROM t1): the same.
    for assign in ["SELECT @z := 42", "SELECT 43 INTO @z"] {
        conn.query_drop(assign).await.unwrap();
        let id = backend_id(&mut conn).await;
        server.kill_connection(id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let e = conn.query_drop("SELECT @z").await.unwrap_err();
        assert!(e.to_string().contains("user variables"), "{assign}: {e}");
    }

    // A pinned session idle past wait_timeout keeps its backend (pings).
    conn.query_drop("SET @y = 7").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let y: Option<i64> = conn.query_first("SELECT @y").await.unwrap();
    assert_eq!(y, Some(7));
}

#[tokio::test]
async fn variables_set_in_forms_the_server_does_not_report_survive_a_backend_replacement() {
    // MariaDB's session tracking reports neither `SET @@name = …` nor the collation that
    // `SET NAMES … COLLATE` sets: the proxy reads them back, so that a fresh backend gets
    // them, as it gets `SET SESSION name = …`.
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("SET @@sql_mode = 'NO_BACKSLASH_ESCAPES'")
        .await
        .unwrap();
    conn.query_drop("SET NAMES latin1 COLLATE latin1_bin")
        .await
        .unwrap();
    // The same through the binary protocol.
    conn.exec_drop("SET @@local.time_zone = '+04:00'", ())
        .await
        .unwrap();
    let check = "SELECT @@sql_mode, @@collation_connection, @@time_zone, HEX('\\n')";
    let before: (String, String, String, String) = conn.query_first(check).await.unwrap().unwrap();
    assert_eq!(before.0, "NO_BACKSLASH_ESCAPES");
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after: (String, String, String, String) = conn.query_first(check).await.unwrap().unwrap();
    assert_eq!(after, before, "the same settings on the fresh backend");
    assert_ne!(backend_id(&mut conn).await, id);
    // A character set and a collation in one statement: the collation stays.
    conn.query_drop("SET NAMES utf8mb4, @@collation_connection = utf8mb4_bin")
        .await
        .unwrap();
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        one(&mut conn, "SELECT @@collation_connection")
            .await
            .unwrap(),
        "utf8mb4_bin"
    );

    // With warnings, reading the values back would clear them: the read waits for the
    // next statement without any, here the client's SHOW WARNINGS.
    conn.query_drop("SET @@max_sort_length = 1").await.unwrap();
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "the client sees its statement's warning");
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "and sees it again, as directly");
    let _: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    let sort: Option<i64> = conn.query_first("SELECT @@max_sort_length").await.unwrap();
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after: Option<i64> = conn.query_first("SELECT @@max_sort_length").await.unwrap();
    assert_eq!(after, sort, "read back after the warnings were read");
    // Lost before a statement without warnings came: the session is told.
    let id = backend_id(&mut conn).await;
    conn.query_drop("SET @@max_sort_length = 2").await.unwrap();
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = conn.query_drop("SELECT 1").await.unwrap_err();
    assert!(e.to_string().contains("SET @@name"), "{e}");
    assert_eq!(one(&mut conn, "SELECT 'usable'").await.unwrap(), "usable");
}

#[tokio::test]
async fn prepared_statements_that_leave_state_in_the_connection_pin_it_like_queries() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    for (prepared, lost) in [
        ("SET @p = 5", "user variables"),
        ("SELECT GET_LOCK('prepared', 0)", "named locks"),
    ] {
        conn.exec_drop(prepared, ()).await.unwrap();
        let id = backend_id(&mut conn).await;
        server.kill_connection(id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let e = conn.query_drop("SELECT 1").await.unwrap_err();
        assert!(e.to_string().contains(lost), "{prepared}: {e}");
        assert_eq!(one(&mut conn, "SELECT 'usable'").await.unwrap(), "usable");
    }
}

#[tokio::test]
async fn a_role_set_with_set_role_is_never_lost_silently() {
    // SET ROLE lives in the server connection: after a KILL the client is told, as for a
    // user variable (before, the session went on without the role, silently).
    let server = server().await;
    server
        .admin(
            "CREATE ROLE auditor_role; GRANT SELECT ON mysql.* TO auditor_role; \
             GRANT auditor_role TO 'goneaway'@'%'",
        )
        .await
        .unwrap();
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("SET ROLE auditor_role").await.unwrap();
    let role = "SELECT IFNULL(CURRENT_ROLE(), 'none')";
    assert_eq!(one(&mut conn, role).await.unwrap(), "auditor_role");
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = one(&mut conn, role).await.unwrap_err();
    assert!(e.to_string().contains("SET ROLE"), "{e}");
    // The session goes on, with the account's default role, as a new connection has it.
    assert_eq!(one(&mut conn, role).await.unwrap(), "none");
}

#[tokio::test]
async fn set_transaction_reaches_the_transaction_it_is_for() {
    // SET TRANSACTION (no SESSION) sets the next transaction's isolation level and access
    // mode, in the server connection (Go's go-sql-driver sends it before START TRANSACTION
    // for BeginTx with an isolation level). A connection lost in between, or with sharing
    // another connection for the START TRANSACTION, must not run it at the default level.
    let server = server().await;
    for multiplex in [false, true] {
        let proxy = proxy_with(&server, server.addr(), |c| {
            c.multiplex = multiplex;
            c.pool_idle_limit = Duration::from_millis(300);
        })
        .await;
        let mut conn = connect(&proxy).await;
        conn.query_drop("CREATE TABLE IF NOT EXISTS iso (id INT PRIMARY KEY) ENGINE=InnoDB")
            .await
            .unwrap();
        // (Before: a statement in between would be the next transaction itself.)
        let id = backend_id(&mut conn).await;
        conn.query_drop("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .await
            .unwrap();
        if multiplex {
            // The connection idles past the pool's limit: closed, if it went back.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        } else {
            server.kill_connection(id).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            transaction_isolation(&mut conn).await,
            "SERIALIZABLE",
            "multiplex = {multiplex}"
        );
        // A transaction replayed on a fresh connection runs under them again.
        if !multiplex {
            let id = backend_id(&mut conn).await;
            conn.query_drop("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .await
                .unwrap();
            conn.query_drop("START TRANSACTION").await.unwrap();
            conn.query_drop("SELECT COUNT(*) FROM iso").await.unwrap();
            server.kill_connection(id).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(isolation_now(&mut conn).await, "SERIALIZABLE", "replayed");
            conn.query_drop("COMMIT").await.unwrap();
        }
        // Only that one transaction.
        assert_eq!(
            transaction_isolation(&mut conn).await,
            "REPEATABLE READ",
            "multiplex = {multiplex}"
        );
    }
}

/// The isolation level of a transaction started now (one read in it, then COMMIT).
async fn transaction_isolation(conn: &mut mysql_async::Conn) -> String {
    conn.query_drop("START TRANSACTION").await.unwrap();
    let level = isolation_now(conn).await;
    conn.query_drop("COMMIT").await.unwrap();
    level
}

/// The isolation level of the open transaction, after a read in it.
async fn isolation_now(conn: &mut mysql_async::Conn) -> String {
    conn.query_drop("SELECT COUNT(*) FROM iso").await.unwrap();
    // INNODB_TRX is a cache InnoDB refreshes at most every 100 ms.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let level: Option<String> = conn
        .query_first(
            "SELECT trx_isolation_level FROM information_schema.INNODB_TRX \
             WHERE trx_mysql_thread_id = CONNECTION_ID()",
        )
        .await
        .unwrap();
    level.unwrap_or_default()
}
