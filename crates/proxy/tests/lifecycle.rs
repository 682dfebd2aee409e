//! The session's life around the commands: COM_CHANGE_USER, COM_RESET_CONNECTION, the
//! client and backend limits, graceful shutdown, a transaction cut before its COMMIT.

use std::time::Duration;

use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
use mysql_async::prelude::*;

use crate::common::*;

async fn proxy_with(
    server: &goneaway_harness::Server,
    adjust: impl FnOnce(&mut ProxyConfig),
) -> Proxy {
    let backend = BackendTarget::from_url(&server.url()).unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.connect_timeout = Duration::from_secs(3);
    adjust(&mut config);
    Proxy::start(config).await.expect("proxy starts")
}

#[tokio::test]
async fn change_user_and_reset_connection_start_a_clean_session() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("SET @x = 1, time_zone = '+05:00'")
        .await
        .unwrap();
    let stmt = conn.prep("SELECT ? * 2").await.unwrap();
    let before = backend_id(&mut conn).await;

    // COM_RESET_CONNECTION: variables gone, same backend, the session goes on.
    assert!(
        conn.reset().await.unwrap(),
        "the proxy supports COM_RESET_CONNECTION"
    );
    let row: (Option<i64>, String) = conn
        .query_first("SELECT @x, @@time_zone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (None, "SYSTEM".to_owned()));
    assert_eq!(backend_id(&mut conn).await, before);
    // The session is no longer pinned by @x: a KILL of its backend is absorbed.
    server.kill_connection(before).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        one(&mut conn, "SELECT 'after reset'").await.unwrap(),
        "after reset"
    );

    // COM_CHANGE_USER, checked against the proxy's accounts: a fresh session.
    conn.query_drop("SET @y = 2").await.unwrap();
    conn.change_user(Default::default()).await.unwrap();
    let row: (Option<i64>, String) = conn
        .query_first("SELECT @y, DATABASE()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (None, "goneaway".to_owned()));
    let v: Option<i64> = conn.exec_first("SELECT ? * 2", (21,)).await.unwrap();
    assert_eq!(v, Some(42));
    drop(stmt);

    // A wrong password or an unknown user is refused with 1045, and the session goes on as
    // the user it was, as on the server.
    let mut other = connect(&proxy).await;
    let e = other
        .change_user(mysql_async::ChangeUserOpts::default().with_pass(Some("wrong".into())))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    assert!(e.to_string().contains("Access denied"), "{e}");
    let e = other
        .change_user(mysql_async::ChangeUserOpts::default().with_user(Some("nobody".into())))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    let user = one(&mut other, "SELECT CURRENT_USER()").await.unwrap();
    assert!(user.starts_with("goneaway@"), "{user}");

    // A client that names no database has none, as directly.
    let mut bare = mysql_async::Conn::new(opts(&proxy).db_name(None::<String>))
        .await
        .unwrap();
    let db: Option<Option<String>> = bare.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db, Some(None));
}

#[tokio::test]
async fn client_and_backend_limits_answer_1040() {
    let server = server().await;
    let proxy = proxy_with(&server, |c| {
        c.max_clients = 5;
        c.max_backends = 1;
        // One server connection per client, as with --no-multiplex (tests/multiplex.rs
        // has the limits of shared connections).
        c.multiplex = false;
        c.backend_slot_wait = Duration::from_millis(300);
    })
    .await;
    let mut first = connect(&proxy).await;
    // Logged in to the proxy, but no backend left for it: 1040 after a short wait.
    let e = mysql_async::Conn::new(opts(&proxy)).await.unwrap_err();
    assert_eq!(code(&e), 1040, "{e}");
    assert!(e.to_string().contains("max_backends"), "{e}");
    assert_eq!(
        one(&mut first, "SELECT 'first still works'").await.unwrap(),
        "first still works"
    );

    // max_clients counts logged-in sessions only: a connection that has not logged in
    // does not take the place of one that does; past the limit, a new connection gets
    // 1040 at once, instead of a greeting.
    let proxy = proxy_with(&server, |c| c.max_clients = 1).await;
    let mut silent = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let mut greeting = [0u8; 5];
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(&mut silent, &mut greeting),
    )
    .await
    .expect("a pending login gets its greeting")
    .unwrap();
    assert_eq!(greeting[4], 10, "protocol 10 greeting, not an error");
    let mut only = connect(&proxy).await;
    let e = tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(opts(&proxy)))
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(code(&e), 1040, "{e}");
    assert!(e.to_string().contains("max_clients"), "{e}");
    assert_eq!(
        one(&mut only, "SELECT 'still works'").await.unwrap(),
        "still works"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_running_statements_finish() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut busy = connect(&proxy).await;
    let mut idle = connect(&proxy).await;
    let running =
        tokio::spawn(async move { one(&mut busy, "SELECT CONCAT('done ', SLEEP(1))").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = proxy.metrics_addr().unwrap();
    let started = std::time::Instant::now();
    let draining = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While sessions drain, the health check tells load balancers to stop sending clients.
    let health = http_get(metrics, "/health").await;
    assert!(
        health.starts_with("HTTP/1.1 503") && health.ends_with("draining\n"),
        "{health}"
    );
    draining.await.unwrap();
    // Then the metrics listener is gone too.
    assert!(tokio::net::TcpStream::connect(metrics).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained well within the grace"
    );
    assert_eq!(
        running.await.unwrap().unwrap(),
        "done 0",
        "the running statement finished"
    );
    // The idle session was told why before the close.
    let e = idle.query_drop("SELECT 1").await.unwrap_err();
    assert!(
        e.to_string().contains("shutting down") || matches!(e, mysql_async::Error::Io(_)),
        "{e}"
    );
}

#[tokio::test]
async fn transaction_cut_before_commit_loses_it_whole() {
    let server = server().await;
    let relay = relay(&server).await;
    // Without replay (what an unreplayable transaction gets).
    let proxy = crate::common::proxy_with(&server, relay.local_addr(), |c| {
        c.transaction_replay = false
    })
    .await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let reset = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.reset_all();
    };
    let (r, ()) = tokio::join!(
        conn.query_drop("INSERT INTO t SELECT 2 FROM DUAL WHERE SLEEP(1) = 0"),
        reset
    );
    let e = r.unwrap_err();
    assert!(e.to_string().contains("open transaction"), "{e}");
    assert_eq!(code(&e), 1927, "{e}");
    assert!(
        e.to_string().contains("rolled the open transaction back"),
        "{e}"
    );
    // The session is in the failed-transaction state: nothing runs outside the
    // transaction the client thinks it is in, and its COMMIT commits nothing.
    let e = conn
        .query_drop("INSERT INTO t VALUES (4)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1927, "{e}");
    assert!(e.to_string().contains("ROLLBACK"), "{e}");
    let e = conn.query_drop("COMMIT").await.unwrap_err();
    assert_eq!(code(&e), 1927, "{e}");
    assert!(e.to_string().contains("committed nothing"), "{e}");
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(0), "no partial commit");
    // And a new transaction works on the same session.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (3)").await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    let ids: Vec<i32> = conn.query("SELECT id FROM t").await.unwrap();
    assert_eq!(ids, vec![3]);
}
