//! Faults while a command runs, injected by the relay between the proxy and the server.

use std::time::Duration;

use mysql_async::prelude::*;

use crate::common::*;

/// A server, a relay in front of it, the proxy in front of that, a client, and a table `t`
/// with an auto-increment id.
async fn behind_a_relay_with_a_table() -> (
    goneaway_harness::Server,
    goneaway_relay::Relay,
    goneaway_proxy::Proxy,
    mysql_async::Conn,
) {
    let server = server().await;
    let relay = relay(&server).await;
    let proxy = proxy_to(&server, relay.local_addr()).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    (server, relay, proxy, conn)
}

#[tokio::test]
async fn read_only_select_is_replayed_and_insert_is_not() {
    let (_server, relay, proxy, mut conn) = behind_a_relay_with_a_table().await;

    // A reset while a read runs: replayed, the client sees only the result.
    let reset = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.reset_all();
    };
    let (v, _) = tokio::join!(one(&mut conn, "SELECT CONCAT('slept ', SLEEP(1))"), reset);
    assert_eq!(v.unwrap(), "slept 0");
    assert!(
        proxy
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // A reset while a write runs: the outcome is unknown, so an error, never a replay.
    let reset = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.reset_all();
    };
    let (r, _) = tokio::join!(conn.query_drop("INSERT INTO t (v) SELECT SLEEP(1)"), reset);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("outcome is unknown"), "{e}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert!(n.unwrap() <= 1, "never two rows");
}

#[tokio::test]
async fn a_select_that_calls_a_stored_function_is_not_replayed() {
    // A stored function may write: `SELECT bump()` is a write to the proxy, and one
    // lost in flight is an error, as an INSERT's is. Replayed, the row would be there twice.
    let (_server, relay, _proxy, mut conn) = behind_a_relay_with_a_table().await;
    conn.query_drop(
        "CREATE FUNCTION bump() RETURNS INT MODIFIES SQL DATA \
         BEGIN INSERT INTO t (v) VALUES (1); RETURN SLEEP(1); END",
    )
    .await
    .unwrap();
    let reset = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.reset_all();
    };
    let (r, _) = tokio::join!(one(&mut conn, "SELECT bump()"), reset);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("outcome is unknown"), "{e}");
    // The server ran it to its end; it was not run again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(1), "the function ran once");
}

#[tokio::test]
async fn oversized_packet_gets_1153_and_the_session_continues() {
    let server = server().await;
    let proxy = proxy(&server).await;
    // The client believes 16 MiB is fine; the server takes 1 MiB.
    let mut conn = mysql_async::Conn::new(opts(&proxy).max_allowed_packet(Some(16 << 20)))
        .await
        .unwrap();
    let big = format!("SELECT LENGTH('{}')", "x".repeat(2 << 20));
    let e = conn.query_drop(big).await.unwrap_err();
    assert_eq!(code(&e), 1153, "{e}");
    assert!(e.to_string().contains("max_allowed_packet"));
    assert_eq!(
        one(&mut conn, "SELECT 'still here'").await.unwrap(),
        "still here"
    );
}

/// A `COM_QUERY` payload of exactly `n` bytes.
fn query_of(n: usize) -> String {
    let frame = "SELECT ''".len() + 1;
    format!("SELECT '{}'", "a".repeat(n - frame))
}

/// The server refuses a command packet from max(max_allowed_packet, net_buffer_length) on,
/// that size included; the proxy draws the line at the same byte, with the limit of the
/// backend the command runs on, even when the global value changed since the session's
/// last one.
#[tokio::test]
async fn the_packet_limit_is_the_servers_to_the_byte() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut direct = mysql_async::Conn::new(
        mysql_async::Opts::from_url(&server.url())
            .map(mysql_async::OptsBuilder::from_opts)
            .unwrap()
            .max_allowed_packet(Some(16 << 20)),
    )
    .await
    .unwrap();
    let mut conn = mysql_async::Conn::new(opts(&proxy).max_allowed_packet(Some(16 << 20)))
        .await
        .unwrap();
    let limit = 1 << 20; // the harness server's max_allowed_packet
    for conn in [&mut direct, &mut conn] {
        conn.query_drop(query_of(limit - 1)).await.unwrap();
    }
    // Directly the server answers 1153 and closes; a client still writing the packet may
    // see the reset before it reads the error (seen under load).
    let e = direct.query_drop(query_of(limit)).await.unwrap_err();
    assert!(
        matches!(&e, mysql_async::Error::Server(s) if s.code == 1153)
            || matches!(e, mysql_async::Error::Io(_)),
        "directly: {e}"
    );
    let id = backend_id(&mut conn).await;
    let e = conn.query_drop(query_of(limit)).await.unwrap_err();
    assert_eq!(code(&e), 1153, "through the proxy: {e}");
    assert_eq!(one(&mut conn, "SELECT 'usable'").await.unwrap(), "usable");
    assert_eq!(
        backend_id(&mut conn).await,
        id,
        "the proxy refused it itself; the server never closed the backend"
    );

    // Below net_buffer_length (16 KiB) a lower max_allowed_packet changes nothing.
    server
        .admin("SET GLOBAL max_allowed_packet = 1024")
        .await
        .unwrap();
    let mut small = mysql_async::Conn::new(opts(&proxy).max_allowed_packet(Some(16 << 20)))
        .await
        .unwrap();
    small.query_drop(query_of(16383)).await.unwrap();
    let e = small.query_drop(query_of(16384)).await.unwrap_err();
    assert_eq!(code(&e), 1153, "{e}");

    // A raised global: a session whose backend was released (idle past the 2 s
    // wait_timeout) gets the new limit with its next backend.
    server
        .admin("SET GLOBAL max_allowed_packet = 4194304")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    small.query_drop(query_of(2 << 20)).await.unwrap();
}

#[tokio::test]
async fn injected_4031_and_blackholed_idle_flows_are_absorbed() {
    use goneaway_relay::Fault;
    let server = server().await;
    let relay = relay(&server).await;
    let proxy = proxy_to(&server, relay.local_addr()).await;
    let mut conn = connect(&proxy).await;
    // A pinned session keeps its backend (pings), so the fault hits a live backend.
    conn.query_drop("SET @keep = 1").await.unwrap();
    // MySQL 8's inactivity error on the idle backend: the session's state is lost (a user
    // variable), so the next statement says so; the one after works.
    relay.inject_4031_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = conn.query_drop("SELECT @keep").await.unwrap_err();
    assert!(
        e.to_string().contains("cause: idle_timeout") && e.to_string().contains("user variables"),
        "{e}"
    );
    assert_eq!(
        one(&mut conn, "SELECT 'after 4031'").await.unwrap(),
        "after 4031"
    );

    // An unpinned session: the 4031 is absorbed without a word.
    relay.inject_4031_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        one(&mut conn, "SELECT 'absorbed'").await.unwrap(),
        "absorbed"
    );
    assert!(
        proxy
            .stats()
            .absorbed_by_cause()
            .contains_key("idle_timeout"),
        "{:?}",
        proxy.stats().absorbed_by_cause()
    );

    // A middlebox that silently forgets idle flows: the idle backend is released or found
    // dead by a ping, never used.
    relay.set(Fault::BlackholeIdle(Duration::from_millis(1500)));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let v = tokio::time::timeout(
        Duration::from_secs(10),
        one(&mut conn, "SELECT 'through the blackhole'"),
    )
    .await;
    assert_eq!(v.expect("no hang").unwrap(), "through the blackhole");
}

#[tokio::test]
async fn a_kill_of_a_long_read_stops_it_and_one_of_a_short_read_is_absorbed() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;

    // An operator KILLs a runaway read after 2 s: MariaDB closes the connection without
    // an error packet, as on a shutdown. Directly the client gets 2013; through the proxy
    // it gets 1927 at once, and the statement does not start again on a fresh backend.
    let id = backend_id(&mut conn).await;
    let started = std::time::Instant::now();
    let kill = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.kill_connection(id).await.unwrap();
    };
    let (r, _) = tokio::join!(one(&mut conn, "SELECT SLEEP(60)"), kill);
    let e = r.unwrap_err();
    assert_eq!(code(&e), 1927, "{e}");
    assert!(e.to_string().contains("killed"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not replayed: {:?}",
        started.elapsed()
    );
    // Nothing runs SLEEP on the server any more, and the session goes on.
    let mut admin = server.admin_conn().await.unwrap();
    let sleeping: Option<i64> = admin
        .query_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(60)'",
        )
        .await
        .unwrap();
    assert_eq!(sleeping, Some(0));
    assert_eq!(one(&mut conn, "SELECT 'after'").await.unwrap(), "after");

    // A KILL of the connection that hits a short read is collateral: replayed, no error.
    let id = backend_id(&mut conn).await;
    let kill = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.kill_connection(id).await.unwrap();
    };
    let (r, _) = tokio::join!(one(&mut conn, "SELECT CONCAT('slept ', SLEEP(0.5))"), kill);
    assert_eq!(r.unwrap(), "slept 0");
}
