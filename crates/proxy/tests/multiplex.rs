//! Shared server connections (`multiplex = true`): more clients than the server has connections, session state
//! that moves with its session, pins counted, and a client gone mid-statement whose
//! connection is never handed to another session.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use goneaway_harness::Server;
use mysql_async::prelude::*;

use crate::common::*;

async fn server_with_connections(max_connections: u32) -> Server {
    Server::builder()
        .var("max_connections", max_connections)
        .start()
        .await
        .expect("a harness server")
}

/// A proxy in front of `server` that shares `max_backends` server connections.
async fn shared_proxy(server: &Server, max_backends: usize) -> goneaway_proxy::Proxy {
    proxy_with(server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = max_backends;
    })
    .await
}

fn pins(proxy: &goneaway_proxy::Proxy, reason: &str) -> u64 {
    proxy.stats().pins().get(reason).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_ten_server_connections_without_an_error() {
    let server = server_with_connections(20).await;
    let proxy = shared_proxy(&server, 10).await;
    let mut setup = connect(&proxy).await;
    setup
        .query_drop("CREATE TABLE m (id INT AUTO_INCREMENT PRIMARY KEY, who INT) ENGINE=InnoDB")
        .await
        .unwrap();
    drop(setup);

    // Directly, the server refuses most of 40 connections.
    let mut direct = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match server.admin_conn().await {
            Ok(c) => direct.push(c),
            Err(_) => refused += 1,
        }
    }
    assert!(refused >= 15, "max_connections = 20 refuses: {refused}");
    drop(direct);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for who in 0..200 {
        let opts = opts(&proxy);
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            for i in 0..10 {
                conn.query_drop(format!("INSERT INTO m (who) VALUES ({who})"))
                    .await?;
                let n: Option<i64> = conn
                    .query_first(format!("SELECT COUNT(*) FROM m WHERE who = {who}"))
                    .await?;
                assert_eq!(n, Some(i + 1), "client {who} reads its own writes");
            }
            conn.disconnect().await?;
            Ok::<_, mysql_async::Error>(())
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            errors.push(e.to_string());
        }
    }
    eprintln!(
        "multiplex: 200 clients x 20 statements over 10 connections in {:?}; takes own/same/reset {}/{}/{}",
        started.elapsed(),
        proxy.stats().pool_own.load(Ordering::Relaxed),
        proxy.stats().pool_same_state.load(Ordering::Relaxed),
        proxy.stats().pool_reset.load(Ordering::Relaxed),
    );
    assert!(errors.is_empty(), "client errors: {errors:#?}");
    let mut admin = server.admin_conn().await.unwrap();
    let rows: Option<i64> = admin
        .query_first("SELECT COUNT(*) FROM goneaway.m")
        .await
        .unwrap();
    assert_eq!(rows, Some(2000));
    assert!(
        proxy.stats().backends.load(Ordering::Relaxed) <= 10,
        "never more than max_backends"
    );
}

#[tokio::test]
async fn state_moves_with_its_session_across_shared_connections() {
    let server = server().await;
    // One server connection for two clients: every statement of one runs on the
    // connection the other just used.
    let proxy = shared_proxy(&server, 1).await;
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    a.query_drop("SET time_zone = '+02:00'").await.unwrap();
    b.query_drop("SET sql_mode = 'ANSI_QUOTES'").await.unwrap();
    a.query_drop("CREATE TABLE s (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    let stmt_a = a.prep("SELECT v FROM s WHERE id = ?").await.unwrap();
    let stmt_b = b.prep("SELECT COUNT(*) FROM s WHERE v >= ?").await.unwrap();
    for i in 0..5 {
        assert_eq!(one(&mut a, "SELECT @@time_zone").await.unwrap(), "+02:00");
        assert_eq!(one(&mut b, "SELECT @@time_zone").await.unwrap(), "SYSTEM");
        assert_eq!(
            one(&mut b, "SELECT @@sql_mode").await.unwrap(),
            "ANSI_QUOTES"
        );
        assert_ne!(
            one(&mut a, "SELECT @@sql_mode").await.unwrap(),
            "ANSI_QUOTES"
        );
        // The insert id is read on the connection that made it.
        a.query_drop(format!("INSERT INTO s (v) VALUES ({i})"))
            .await
            .unwrap();
        let id: i64 = a
            .query_first("SELECT LAST_INSERT_ID()")
            .await
            .unwrap()
            .unwrap();
        // Prepared statements run wherever the session is, ids mapped.
        let v: Option<i64> = a.exec_first(&stmt_a, (id,)).await.unwrap();
        assert_eq!(v, Some(i));
        let n: Option<i64> = b.exec_first(&stmt_b, (0,)).await.unwrap();
        assert_eq!(n, Some(i + 1));
    }
    // Warnings are read where they were made.
    a.query_drop("SELECT CAST('x' AS SIGNED)").await.unwrap();
    let warnings: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // A database of its own.
    b.query_drop("CREATE DATABASE other").await.unwrap();
    b.query_drop("USE other").await.unwrap();
    assert_eq!(one(&mut b, "SELECT DATABASE()").await.unwrap(), "other");
    assert_eq!(one(&mut a, "SELECT DATABASE()").await.unwrap(), "goneaway");
    assert!(
        proxy.stats().pool_reset.load(Ordering::Relaxed) > 0,
        "the sessions took turns on the one connection"
    );
    assert!(proxy.stats().pins().is_empty(), "nothing pinned");
}

#[tokio::test]
async fn a_pinned_session_keeps_its_connection_and_the_pin_is_counted() {
    let server = server().await;
    let proxy = shared_proxy(&server, 2).await;
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    // Logged in while connections are free; it holds none while idle.
    let mut c = connect(&proxy).await;
    a.query_drop("SET @mine = 41").await.unwrap();
    let id = backend_id(&mut a).await;
    for _ in 0..5 {
        // b works meanwhile, on the other connection.
        assert_eq!(one(&mut b, "SELECT 1").await.unwrap(), "1");
        assert_eq!(one(&mut a, "SELECT @mine + 1").await.unwrap(), "42");
        assert_eq!(backend_id(&mut a).await, id, "a keeps its connection");
    }
    assert_eq!(pins(&proxy, "user_variables"), 1, "counted once");
    b.query_drop("CREATE TEMPORARY TABLE t (x INT)")
        .await
        .unwrap();
    b.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    assert_eq!(one(&mut b, "SELECT COUNT(*) FROM t").await.unwrap(), "1");
    assert_eq!(pins(&proxy, "temporary_tables"), 1);
    // The third client: both connections are pinned, so it waits for max_backends…
    // and gets an error that says so, as without sharing.
    let r = one(&mut c, "SELECT 1").await;
    assert!(r.is_err(), "no connection to be had: {r:?}");
    drop(a);
    // a is gone: its connection is closed (its user variable dies with it), and c
    // gets a fresh one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mine: Option<Option<i64>> = c.query_first("SELECT @mine").await.unwrap();
    assert_eq!(mine, Some(None));
}

#[tokio::test]
async fn a_client_gone_mid_statement_leaves_no_reply_for_the_next_session() {
    let server = server().await;
    let proxy = shared_proxy(&server, 1).await;
    // The client reaches the proxy through a relay, which resets it mid-statement.
    let relay = goneaway_relay::Relay::start(goneaway_relay::RelayConfig::new(
        "127.0.0.1:0",
        proxy.local_addr().to_string(),
    ))
    .await
    .unwrap();
    let mut a = mysql_async::Conn::new(opts(&proxy).tcp_port(relay.local_addr().port()))
        .await
        .unwrap();
    a.query_drop("CREATE TABLE g (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO g VALUES (1)").await.unwrap();
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.reset_all();
    };
    let (r, ()) = tokio::join!(a.query_drop("SELECT SLEEP(1)"), cut);
    assert!(r.is_err());
    drop(a);
    // The next session gets its own reply, on a clean connection, and the cancelled
    // transaction left nothing.
    let mut b = connect(&proxy).await;
    assert_eq!(one(&mut b, "SELECT 42").await.unwrap(), "42");
    assert_eq!(one(&mut b, "SELECT COUNT(*) FROM g").await.unwrap(), "0");
    // The proxy closed the cancelled session's connection; the server rolls its
    // transaction back once its thread sees the close (after the SLEEP), not at once.
    let mut admin = server.admin_conn().await.unwrap();
    let started = Instant::now();
    loop {
        let open: Option<i64> = admin
            .query_first("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
            .await
            .unwrap();
        if open == Some(0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let trx: Vec<(String, String, Option<String>)> = admin
                .query("SELECT trx_state, CAST(trx_mysql_thread_id AS CHAR), trx_query FROM information_schema.INNODB_TRX")
                .await
                .unwrap();
            let threads: Vec<(String, String, String, Option<String>)> = admin
                .query("SELECT CAST(ID AS CHAR), USER, COMMAND, INFO FROM information_schema.PROCESSLIST")
                .await
                .unwrap();
            panic!("a transaction left open: {trx:?}; server threads {threads:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    while proxy.stats().clients.load(Ordering::Relaxed) != 1 {
        assert!(started.elapsed() < Duration::from_secs(5), "client count");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shared_connections_lost_while_unused_are_counted_under_their_cause() {
    let server = server().await;
    let proxy = proxy_with(&server, server.addr(), |c| c.multiplex = true).await;
    let mut conn = connect(&proxy).await;
    // Old enough that the restart's later start time shows (Uptime has whole seconds).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(one(&mut conn, "SELECT 1").await.unwrap(), "1");
    server.restart().await.unwrap();
    assert_eq!(one(&mut conn, "SELECT 2").await.unwrap(), "2");
    assert_eq!(
        proxy
            .stats()
            .absorbed_by_cause()
            .get("server_restart")
            .copied(),
        Some(1),
        "{:?}",
        proxy.stats().absorbed_by_cause()
    );
}

/// Reads `Prepared_stmt_count`, `Com_stmt_prepare` and `Com_stmt_execute` from the server.
async fn statement_counts(server: &Server) -> (i64, i64, i64) {
    let mut admin = server.admin_conn().await.unwrap();
    let rows: Vec<(String, i64)> = admin
        .query(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME IN ('PREPARED_STMT_COUNT', 'COM_STMT_PREPARE', 'COM_STMT_EXECUTE')",
        )
        .await
        .unwrap();
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .unwrap_or_default()
    };
    (
        get("PREPARED_STMT_COUNT"),
        get("COM_STMT_PREPARE"),
        get("COM_STMT_EXECUTE"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_connection_prepares_each_statement_once_for_every_session() {
    let server = server().await;
    let proxy = shared_proxy(&server, 2).await;
    let mut setup = connect(&proxy).await;
    setup
        .query_drop("CREATE TABLE p (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    setup
        .query_drop("INSERT INTO p SELECT seq, seq * 10 FROM seq_1_to_100")
        .await
        .unwrap();
    drop(setup);
    let (_, prepares_before, executes_before) = statement_counts(&server).await;
    let stats = proxy.stats();
    let opened_before = stats.backend_connects.load(Ordering::Relaxed);
    let resets_before = stats.pool_reset.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for who in 0..20i64 {
        let opts = opts(&proxy);
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let stmt = conn.prep("SELECT v FROM p WHERE id = ?").await?;
            for i in 0..25i64 {
                let id = 1 + (who * 25 + i) % 100;
                let v: Option<i64> = conn.exec_first(&stmt, (id,)).await?;
                assert_eq!(v, Some(id * 10), "client {who}, row {id}");
            }
            Ok::<_, mysql_async::Error>(conn)
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.unwrap().expect("no client error"));
    }
    // Counted while the clients are still connected (a statement the connection shares
    // outlives its session's close).
    let (live, prepares_after, executes_after) = statement_counts(&server).await;
    let (prepares, executes) = (
        prepares_after - prepares_before,
        executes_after - executes_before,
    );
    eprintln!(
        "20 sessions x 25 executes over 2 connections: {prepares} prepares, {executes} executes, {live} statements live; takes own/same/reset {}/{}/{}",
        proxy.stats().pool_own.load(Ordering::Relaxed),
        proxy.stats().pool_same_state.load(Ordering::Relaxed),
        proxy.stats().pool_reset.load(Ordering::Relaxed),
    );
    assert_eq!(executes, 500, "every execute ran once");
    // Each client's own prepare reaches the server (a duplicate is closed at once); the
    // executes then find the statement on whichever connection they run, so a text is
    // prepared again only on a connection new since (each login opens one, in place of
    // an idle one) or reset since. Not once per session and execute.
    let lives = (stats.backend_connects.load(Ordering::Relaxed) - opened_before)
        + (stats.pool_reset.load(Ordering::Relaxed) - resets_before);
    assert!(
        prepares <= 20 + lives as i64,
        "prepares: {prepares}, connection lives: {lives}"
    );
    assert!(prepares < 100, "prepares: {prepares}");
    assert!(
        live <= 2,
        "one statement per connection, not one per session: {live}"
    );
    for c in conns {
        c.disconnect().await.unwrap();
    }
}

/// The same statements, in the same order, directly and through the proxy: one session
/// prepares the same text in two databases and under two `sql_mode`s, on a connection it
/// shares with another session.
#[tokio::test]
async fn the_same_text_prepared_in_another_database_or_sql_mode_is_another_statement() {
    let server = server().await;
    let mut admin = server.admin_conn().await.unwrap();
    admin
        .query_drop(
            "CREATE DATABASE IF NOT EXISTS other; \
             CREATE TABLE goneaway.c (v VARCHAR(10)); INSERT INTO goneaway.c VALUES ('home'); \
             CREATE TABLE other.c (v VARCHAR(10)); INSERT INTO other.c VALUES ('other'); \
             GRANT ALL ON other.* TO goneaway",
        )
        .await
        .unwrap();
    let proxy = shared_proxy(&server, 1).await;
    async fn run(a: &mut mysql_async::Conn, b: &mut mysql_async::Conn) -> Vec<String> {
        let mut seen = Vec::new();
        let home = a.prep("SELECT v FROM c").await.unwrap();
        let quoted = a.prep(r#"SELECT "v" FROM c"#).await.unwrap();
        // The other session uses the connection in between.
        let _: Option<i64> = b.query_first("SELECT 1").await.unwrap();
        a.query_drop("USE other").await.unwrap();
        a.query_drop("SET sql_mode = 'ANSI_QUOTES'").await.unwrap();
        // mysql_async caches statements by text: a new connection-side statement needs a
        // new client-side one.
        a.query_drop("SELECT 1").await.unwrap();
        let there = a.prep("SELECT v FROM c /* again */").await.unwrap();
        let quoted_there = a.prep(r#"SELECT "v" FROM c /* again */"#).await.unwrap();
        for _ in 0..2 {
            for s in [&home, &quoted, &there, &quoted_there] {
                let v: Option<String> = a.exec_first(s, ()).await.unwrap();
                seen.push(v.unwrap_or_default());
            }
            let _: Option<i64> = b.query_first("SELECT 2").await.unwrap();
        }
        seen
    }
    let direct_opts = mysql_async::OptsBuilder::from_opts(opts(&proxy))
        .ip_or_hostname(server.addr().ip().to_string())
        .tcp_port(server.addr().port());
    let mut da = mysql_async::Conn::new(direct_opts.clone()).await.unwrap();
    let mut db = mysql_async::Conn::new(direct_opts).await.unwrap();
    let direct = run(&mut da, &mut db).await;
    let mut pa = connect(&proxy).await;
    let mut pb = connect(&proxy).await;
    let proxied = run(&mut pa, &mut pb).await;
    assert_eq!(proxied, direct, "same results as direct");
    assert!(direct.contains(&"other".to_owned()) && direct.contains(&"home".to_owned()));
}

#[tokio::test]
async fn long_data_reaches_its_statement_on_a_shared_connection() {
    let server = Server::builder()
        .var("max_allowed_packet", "64M")
        .start()
        .await
        .expect("a harness server");
    let proxy = shared_proxy(&server, 1).await;
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    a.query_drop("CREATE TABLE l (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB")
        .await
        .unwrap();
    let insert = a.prep("INSERT INTO l VALUES (?, ?)").await.unwrap();
    // The other session uses the one connection between the prepare and the execute.
    let _: Option<i64> = b.query_first("SELECT 1").await.unwrap();
    // Over 16 MB: the driver sends the value as long data before the execute.
    let blob: Vec<u8> = b"abcdefgh".repeat(17 << 17);
    a.exec_drop(&insert, (1, blob.clone())).await.unwrap();
    let _: Option<i64> = b.query_first("SELECT 2").await.unwrap();
    let ok: Option<(i64, i64)> = b
        .query_first(format!(
            "SELECT LENGTH(b), b = REPEAT('abcdefgh', {}) FROM l WHERE id = 1",
            blob.len() / 8
        ))
        .await
        .unwrap();
    assert_eq!(ok, Some((blob.len() as i64, 1)), "the value arrived whole");
    assert_eq!(
        pins(&proxy, "long_data"),
        1,
        "the long data pinned its connection"
    );
    // Afterwards the connection is shared again.
    let _: Option<i64> = a.query_first("SELECT 3").await.unwrap();
    let _: Option<i64> = b.query_first("SELECT 4").await.unwrap();
}

/// Regression: a session that found the pool empty, then registered its wait, missed a
/// connection put back in between by a session on another thread, and waited out
/// `backend_slot_wait` with the one connection idle in the pool, then told its client
/// 1040 (seen in CI as `long_data_reaches_its_statement_on_a_shared_connection` failing at
/// its second client's first statement). Clients taking turns on one connection hit that
/// window at every turn: each statement follows the other session's reply by microseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_taking_turns_on_one_shared_connection_never_wait_for_it() {
    if let Ok(path) = std::env::var("DBG_LOG") {
        let file = std::fs::File::create(&path).unwrap();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("goneaway_proxy=debug")
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_thread_ids(true)
            .try_init();
    }
    // A wait_timeout long enough that the pool's sweeper, which closes connections idle
    // for half of it, never frees the slot a missed hand-over waits for.
    let server = Server::builder()
        .var("wait_timeout", 600)
        .start()
        .await
        .expect("a harness server");
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = 1;
        c.session_threads = 2;
        // A missed hand-over shows as a 1040 after this wait, not as a slow test.
        c.backend_slot_wait = Duration::from_secs(2);
    })
    .await;
    // Turns between two clients, then six clients at once: each statement is asked for
    // while another session puts the connection back, on the other session thread.
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    let started = Instant::now();
    for turn in 0..500i64 {
        let x: Option<i64> = a
            .query_first(format!("SELECT {turn}"))
            .await
            .unwrap_or_else(|e| panic!("turn {turn}, first client: {e}"));
        let y: Option<i64> = b
            .query_first(format!("SELECT {turn} + 1"))
            .await
            .unwrap_or_else(|e| panic!("turn {turn}, second client: {e}"));
        assert_eq!((x, y), (Some(turn), Some(turn + 1)));
    }
    drop((a, b));
    let clients: Vec<_> = (0..6i64)
        .map(|who| {
            let proxy_opts = opts(&proxy);
            tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(proxy_opts).await.unwrap();
                for turn in 0..250i64 {
                    let x: Option<i64> = c
                        .query_first(format!("SELECT {who} * 1000 + {turn}"))
                        .await
                        .unwrap_or_else(|e| panic!("client {who}, turn {turn}: {e}"));
                    assert_eq!(x, Some(who * 1000 + turn));
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let stats = proxy.stats();
    assert!(
        stats.pool_same_state.load(Ordering::Relaxed) + stats.pool_reset.load(Ordering::Relaxed)
            >= 1000,
        "the clients shared the one connection"
    );
    eprintln!(
        "2,500 statements of clients taking turns on one connection in {:?}",
        started.elapsed()
    );
}

/// The server connections of the proxy's account (the application's; the harness's admin
/// logs in as root).
async fn proxy_connections(server: &Server) -> i64 {
    let mut admin = server.admin_conn().await.unwrap();
    let n: Option<i64> = admin
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}'",
            goneaway_harness::APP_USER
        ))
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    n.unwrap_or(0)
}

async fn aborted_clients(server: &Server) -> i64 {
    let mut admin = server.admin_conn().await.unwrap();
    let (_, n): (String, i64) = admin
        .query_first("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
        .await
        .unwrap()
        .unwrap();
    admin.disconnect().await.unwrap();
    n
}

/// Sessions run on the session threads (`session_threads`), each on one; with shared
/// connections a session may take one another thread opened. Every client is served, the
/// connections stay within `max_backends`, and the shutdown closes each of them politely
/// (the server counts no aborted client) although their sockets live in the threads'
/// runtimes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_every_session_thread_share_connections_and_a_shutdown_closes_them_politely() {
    let server = server_with_connections(30).await;
    let aborted_before = aborted_clients(&server).await;
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = 4;
        c.session_threads = 3;
    })
    .await;
    let mut tasks = Vec::new();
    for who in 0..12i64 {
        let opts = opts(&proxy);
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            for i in 0..30i64 {
                let got: Option<i64> = conn
                    .query_first(format!("SELECT {who} * 100 + {i}"))
                    .await?;
                assert_eq!(got, Some(who * 100 + i), "client {who} gets its own result");
                let stmt = conn.prep("SELECT ? + 1").await?;
                let got: Option<i64> = conn.exec_first(&stmt, (who,)).await?;
                assert_eq!(got, Some(who + 1), "client {who} gets its own result");
            }
            conn.disconnect().await?;
            Ok::<_, mysql_async::Error>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every client is served");
    }
    let opened = proxy_connections(&server).await;
    assert!(
        opened <= 4,
        "at most max_backends server connections: {opened}"
    );

    proxy.shutdown().await;
    // The server ends each connection's thread after its COM_QUIT; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = proxy_connections(&server).await;
        if left == 0 || Instant::now() > deadline {
            assert_eq!(left, 0, "the shutdown closed every server connection");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        aborted_clients(&server).await,
        aborted_before,
        "every server connection was closed with COM_QUIT"
    );
}

/// `init_connect` runs when a server connection logs in, not when the proxy resets that
/// connection for another session (`COM_RESET_CONNECTION` sets variables back to their
/// global values): a shared connection gets back what `init_connect` set after each reset,
/// so that every session reads what a direct client of the same account reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_connect_settings_survive_the_reset_of_a_shared_connection() {
    let server = server().await;
    // init_connect applies to accounts without SUPER, as applications' accounts are.
    server
        .admin(
            r#"CREATE USER 'limited'@'%' IDENTIFIED BY 'limited-password';
               GRANT ALL ON goneaway.* TO 'limited'@'%';
               SET GLOBAL init_connect = 'SET SESSION sql_mode = ''ANSI_QUOTES'', SESSION time_zone = ''+03:00''';"#,
        )
        .await
        .unwrap();
    let limited = |port: u16| {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("limited"))
            .pass(Some("limited-password"))
            .db_name(Some("goneaway"))
            .prefer_socket(false)
    };
    let mut direct = mysql_async::Conn::new(limited(server.port()))
        .await
        .unwrap();
    // The harness server's wait_timeout is 2 s: the direct client must outlive the test.
    direct
        .query_drop("SET SESSION wait_timeout = 600")
        .await
        .unwrap();
    let direct_mode = one(&mut direct, "SELECT @@sql_mode").await.unwrap();
    assert_eq!(
        direct_mode, "ANSI_QUOTES",
        "init_connect ran for the account"
    );
    assert_eq!(
        one(&mut direct, "SELECT @@time_zone").await.unwrap(),
        "+03:00"
    );
    // One server connection for two clients: each turn of one follows a turn of the other,
    // whose own time zone makes the connection reset between them.
    let proxy = shared_proxy(&server, 1).await;
    let mut a = mysql_async::Conn::new(limited(proxy.local_addr().port()))
        .await
        .unwrap();
    let mut b = mysql_async::Conn::new(limited(proxy.local_addr().port()))
        .await
        .unwrap();
    a.query_drop("SET time_zone = '+05:00'").await.unwrap();
    for _ in 0..3 {
        assert_eq!(one(&mut b, "SELECT @@sql_mode").await.unwrap(), direct_mode);
        assert_eq!(one(&mut b, "SELECT @@time_zone").await.unwrap(), "+03:00");
        assert_eq!(one(&mut a, "SELECT @@time_zone").await.unwrap(), "+05:00");
        assert_eq!(one(&mut a, "SELECT @@sql_mode").await.unwrap(), direct_mode);
    }
    // A variable set back to DEFAULT is the global value, through the proxy as directly.
    direct.query_drop("SET sql_mode = DEFAULT").await.unwrap();
    b.query_drop("SET sql_mode = DEFAULT").await.unwrap();
    let global_mode = one(&mut direct, "SELECT @@sql_mode").await.unwrap();
    assert_ne!(global_mode, direct_mode);
    assert_eq!(one(&mut a, "SELECT @@sql_mode").await.unwrap(), direct_mode);
    assert_eq!(one(&mut b, "SELECT @@sql_mode").await.unwrap(), global_mode);
    assert_eq!(one(&mut b, "SELECT @@time_zone").await.unwrap(), "+03:00");
    assert!(
        proxy.stats().pool_reset.load(Ordering::Relaxed) >= 3,
        "the sessions took turns on the one connection, reset between them"
    );
    for c in [direct, a, b] {
        c.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn settings_the_server_does_not_report_and_statements_prepared_again_match_direct() {
    let server = server().await;
    server
        .admin("GRANT ALL ON *.* TO goneaway WITH GRANT OPTION")
        .await
        .unwrap();
    let proxy = shared_proxy(&server, 1).await;
    // The client closes each statement after it runs and prepares it again next time, as
    // mysqltest --ps-protocol does: what the server prepares now is what runs.
    async fn run(a: &mut mysql_async::Conn, b: &mut mysql_async::Conn) -> Vec<String> {
        let mut seen = Vec::new();
        let insert = "INSERT INTO esc (v) VALUES ('a\\\\b')";
        let create = "CREATE TABLE esc AS SELECT REPEAT('a', 3) AS c1 LIMIT 0";
        for (set, label) in [
            ("SET NAMES latin1", "plain"),
            ("SET NAMES latin1 COLLATE latin1_bin", "bin"),
        ] {
            a.query_drop(set).await.unwrap();
            a.exec_drop(create, ()).await.unwrap();
            // The other session uses the connection in between.
            let _: Option<i64> = b.exec_first("SELECT 1", ()).await.unwrap();
            let ddl: Option<(String, String)> =
                a.query_first("SHOW CREATE TABLE esc").await.unwrap();
            seen.push(format!("{label}: {}", ddl.unwrap().1));
            a.query_drop("DROP TABLE esc").await.unwrap();
        }
        a.query_drop("CREATE TABLE esc (v VARCHAR(10))")
            .await
            .unwrap();
        for mode in ["''", "'NO_BACKSLASH_ESCAPES'"] {
            a.query_drop(format!("SET @@SQL_MODE = {mode}"))
                .await
                .unwrap();
            let _: Option<i64> = b.exec_first("SELECT 2", ()).await.unwrap();
            a.exec_drop(insert, ()).await.unwrap();
        }
        let rows: Vec<String> = a.query("SELECT HEX(v) FROM esc").await.unwrap();
        seen.extend(rows);
        a.query_drop("DROP TABLE esc").await.unwrap();
        // A routine takes its database's character set when it is prepared: the same text
        // prepared after the database was made again with another one is another routine.
        let routine = "CREATE FUNCTION f (s CHAR(20)) RETURNS VARCHAR(30) RETURN s";
        for charset in ["utf8mb3", "latin1"] {
            a.query_drop(format!(
                "DROP DATABASE IF EXISTS r; CREATE DATABASE r CHARACTER SET {charset}; USE r"
            ))
            .await
            .unwrap();
            a.exec_drop(routine, ()).await.unwrap();
            let _: Option<i64> = b.exec_first("SELECT 3", ()).await.unwrap();
            let cs: Option<String> = a
                .query_first("SELECT CHARACTER_SET_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'r'")
                .await
                .unwrap();
            seen.push(format!("routine in {charset}: {}", cs.unwrap_or_default()));
        }
        a.query_drop("DROP DATABASE r; USE goneaway").await.unwrap();
        seen
    }
    let direct_opts = mysql_async::OptsBuilder::from_opts(opts(&proxy))
        .ip_or_hostname(server.addr().ip().to_string())
        .tcp_port(server.addr().port())
        .stmt_cache_size(0);
    let proxy_opts = opts(&proxy).stmt_cache_size(0);
    let mut da = mysql_async::Conn::new(direct_opts.clone()).await.unwrap();
    let mut db = mysql_async::Conn::new(direct_opts).await.unwrap();
    let direct = run(&mut da, &mut db).await;
    let mut pa = mysql_async::Conn::new(proxy_opts.clone()).await.unwrap();
    let mut pb = mysql_async::Conn::new(proxy_opts).await.unwrap();
    let proxied = run(&mut pa, &mut pb).await;
    assert_eq!(proxied, direct, "same results as direct");
    assert!(
        direct.iter().any(|s| s.contains("latin1_bin")),
        "{direct:?}"
    );
    assert!(direct.contains(&"615C5C62".to_owned()), "{direct:?}");
    assert!(
        direct.contains(&"routine in latin1: latin1".to_owned()),
        "{direct:?}"
    );
}

#[tokio::test]
async fn statements_kept_for_reuse_never_exhaust_max_prepared_stmt_count() {
    // The server's limit is the client's: the statements a shared connection keeps for
    // reuse are closed when a prepare would be refused for them.
    let server = Server::builder()
        .var("max_prepared_stmt_count", 4)
        .start()
        .await
        .expect("a harness server");
    let proxy = shared_proxy(&server, 1).await;
    let mut conn = mysql_async::Conn::new(opts(&proxy).stmt_cache_size(0))
        .await
        .unwrap();
    for i in 0..20 {
        let v: Option<i64> = conn
            .exec_first(format!("SELECT {i} + ?"), (1,))
            .await
            .unwrap();
        assert_eq!(v, Some(i + 1));
        // Run again on the kept statement, prepared again by the proxy if it was closed.
        let again: Option<i64> = conn
            .exec_first(format!("SELECT {i} + ? /* again */"), (2,))
            .await
            .unwrap();
        assert_eq!(again, Some(i + 2));
    }
    // SQL-level PREPARE counts against the same limit.
    conn.query_drop("PREPARE s FROM 'SELECT 42'").await.unwrap();
    let v: Option<i64> = conn.query_first("EXECUTE s").await.unwrap();
    assert_eq!(v, Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_read_lock_keeps_its_connection_until_unlock_tables() {
    let server = server().await;
    server
        .admin("GRANT RELOAD ON *.* TO goneaway")
        .await
        .unwrap();
    let proxy = shared_proxy(&server, 3).await;
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    a.query_drop("CREATE TABLE g (v INT)").await.unwrap();
    a.query_drop("FLUSH TABLES WITH READ LOCK").await.unwrap();
    // Other sessions run on other connections meanwhile; A's lock stays where it was taken.
    for _ in 0..5 {
        let _: Option<i64> = b.query_first("SELECT 1").await.unwrap();
        let _: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    }
    let write = tokio::spawn(async move {
        b.query_drop("INSERT INTO g VALUES (1)").await.unwrap();
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the global read lock holds writes");
    a.query_drop("UNLOCK TABLES").await.unwrap();
    let mut b = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("UNLOCK TABLES, on the connection that holds the lock, lets the write go")
        .unwrap();
    let n: Option<i64> = b.query_first("SELECT COUNT(*) FROM g").await.unwrap();
    assert_eq!(n, Some(1));
    assert_eq!(pins(&proxy, "table_locks"), 1);
}

#[tokio::test]
async fn a_session_that_logs_in_after_a_revoke_never_gets_a_connection_that_still_holds_it() {
    // MariaDB applies a REVOKE of global privileges to connections that log in after it;
    // a shared connection that logged in before still holds them. A session that logs in
    // after the REVOKE is refused what a direct client would be refused.
    let server = server().await;
    server
        .admin(
            "CREATE USER 'auditor'@'%' IDENTIFIED BY 'pw'; \
             GRANT SELECT ON *.* TO 'auditor'@'%'; \
             CREATE TABLE goneaway.ledger (id INT PRIMARY KEY); \
             INSERT INTO goneaway.ledger VALUES (1)",
        )
        .await
        .unwrap();
    let proxy = shared_proxy(&server, 2).await;
    let as_auditor = || {
        opts(&proxy)
            .user(Some("auditor"))
            .pass(Some("pw"))
            .db_name(None::<String>)
    };
    let read = "SELECT COUNT(*) FROM goneaway.ledger";

    // Before: the old session's connection is shared, idle in the pool.
    let mut before = mysql_async::Conn::new(as_auditor()).await.unwrap();
    let n: Option<i64> = before.query_first(read).await.unwrap();
    assert_eq!(n, Some(1));
    server
        .admin("REVOKE SELECT ON *.* FROM 'auditor'@'%'")
        .await
        .unwrap();
    // Directly, a new login no longer reads the table.
    let direct = mysql_async::Conn::new(as_auditor().tcp_port(server.addr().port())).await;
    let e = direct.unwrap().query_drop(read).await.unwrap_err();
    assert_eq!(code(&e), 1142, "{e}");

    // Through the proxy: the new session's own connection is evicted by a third login
    // (the oldest idle one), the third session holds its own in a transaction, and the
    // old session's connection, used last, is the only one idle.
    let mut after = mysql_async::Conn::new(as_auditor()).await.unwrap();
    before.query_drop("DO 1").await.unwrap();
    let mut third = connect(&proxy).await;
    third.query_drop("BEGIN").await.unwrap();
    let e = after.query_drop(read).await.unwrap_err();
    assert_eq!(code(&e), 1142, "as directly: {e}");
    third.query_drop("COMMIT").await.unwrap();
}
