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

fn pins(proxy: &goneaway_proxy::Proxy, reason: &str) -> u64 {
    proxy.stats().pins().get(reason).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_ten_server_connections_without_an_error() {
    let server = server_with_connections(20).await;
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = 10;
    })
    .await;
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
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = 1;
    })
    .await;
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
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = 2;
    })
    .await;
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
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.multiplex = true;
        c.max_backends = 1;
    })
    .await;
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
    let mut admin = server.admin_conn().await.unwrap();
    let open: Option<i64> = admin
        .query_first("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
        .await
        .unwrap();
    assert_eq!(open, Some(0), "no transaction left open");
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
