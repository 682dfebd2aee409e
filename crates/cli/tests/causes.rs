//! Every cause made to happen for real, and the classifier naming what mysql_async got.
//!
//! Each test starts its own throwaway server (harness) and, where the fault lives on the
//! network, puts the relay in front of it. The assertions are about what a user depends on:
//! the cause named, whether the connection must be discarded, and whether a retry is safe.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use goneaway_core::{classify_io, classify_mysql_async, Cause, Diagnosis, Retry};
use goneaway_harness::Server;
use goneaway_relay::{Fault, Relay, RelayConfig};

async fn connect(url: &str) -> mysql_async::Conn {
    mysql_async::Conn::from_url(url).await.expect("connects")
}

/// Runs `sql` and returns the error it must fail with, classified.
async fn failing(conn: &mut mysql_async::Conn, sql: &str) -> (mysql_async::Error, Diagnosis) {
    let error = tokio::time::timeout(Duration::from_secs(20), conn.query_drop(sql))
        .await
        .expect("the client gets an answer within 20 s")
        .expect_err("the statement fails");
    let diagnosis = classify_mysql_async(&error);
    (error, diagnosis)
}

async fn relay_to(server: &Server) -> Relay {
    Relay::start(RelayConfig::new("127.0.0.1:0", server.addr().to_string()))
        .await
        .unwrap()
}

#[tokio::test]
async fn idle_past_wait_timeout() {
    let server = Server::builder()
        .var("wait_timeout", 1)
        .start()
        .await
        .unwrap();
    let mut conn = connect(&server.url()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (error, diagnosis) = failing(&mut conn, "SELECT 1").await;
    assert!(diagnosis.is_disconnect(), "{error}");
    assert!(
        diagnosis.mentions(Cause::IdleTimeout),
        "{error}: {diagnosis:?}"
    );
    assert_ne!(diagnosis.retry, Retry::DoNotRetry);
    // The server's side of the story, which the doctor reads.
    assert!(server
        .error_log_text()
        .contains("Got timeout reading communication packets"));
}

#[tokio::test]
async fn kill_connection() {
    let server = Server::start_default().await.unwrap();
    let mut conn = connect(&server.url()).await;
    server.kill_connection(conn.id()).await.unwrap();
    let (error, diagnosis) = failing(&mut conn, "SELECT 1").await;
    // MariaDB closes an idle victim without an error packet: from the client's side a KILL
    // looks like any other close, so the classifier must keep it among the candidates and
    // say how to tell (the process list, who ran KILL).
    assert!(diagnosis.is_disconnect(), "{error}");
    assert!(
        diagnosis.mentions(Cause::ConnectionKilled),
        "{error}: {diagnosis:?}"
    );
}

#[tokio::test]
async fn kill_connection_mid_statement() {
    let server = Server::start_default().await.unwrap();
    let mut conn = connect(&server.url()).await;
    let id = conn.id();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill_connection(id).await.unwrap();
    };
    let (result, ()) = tokio::join!(conn.query_drop("SELECT SLEEP(10)"), killer);
    let error = result.expect_err("the statement is killed");
    let diagnosis = classify_mysql_async(&error);
    // Even a busy victim just sees the connection close (MariaDB 10.11 sends no 1927 over
    // TCP before closing): the KILL shows only on the server's side.
    assert!(diagnosis.is_disconnect(), "{error}");
    assert!(
        diagnosis.mentions(Cause::ConnectionKilled),
        "{error}: {diagnosis:?}"
    );
    // The statement was running: its outcome is unknown, so no blind retry.
    assert_ne!(diagnosis.retry, Retry::SafeToRetry);
    assert_ne!(diagnosis.retry, Retry::ReconnectThenRetry);
}

#[tokio::test]
async fn kill_query_mid_statement() {
    let server = Server::start_default().await.unwrap();
    let mut conn = connect(&server.url()).await;
    let id = conn.id();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill_query(id).await.unwrap();
    };
    let (result, ()) = tokio::join!(conn.query_drop("SELECT SLEEP(10)"), killer);
    // MariaDB reports a killed SLEEP as its result (1) rather than an error; a statement
    // that is not SLEEP gets 1317. Either way the connection stays usable.
    if let Err(error) = result {
        let diagnosis = classify_mysql_async(&error);
        assert_eq!(diagnosis.primary(), Cause::ConnectionKilled, "{error}");
        assert!(!diagnosis.is_disconnect());
    }
    conn.query_drop("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn graceful_restart() {
    let server = Server::start_default().await.unwrap();
    let mut conn = connect(&server.url()).await;
    server.restart().await.unwrap();
    let (error, diagnosis) = failing(&mut conn, "SELECT 1").await;
    assert!(diagnosis.is_disconnect(), "{error}");
    assert!(
        diagnosis.mentions(Cause::ServerRestart),
        "{error}: {diagnosis:?}"
    );
}

#[tokio::test]
async fn crash() {
    let server = Server::start_default().await.unwrap();
    let mut conn = connect(&server.url()).await;
    server.crash().await.unwrap();
    let (error, diagnosis) = failing(&mut conn, "SELECT 1").await;
    assert!(diagnosis.is_disconnect(), "{error}");
    assert!(
        diagnosis.mentions(Cause::ServerCrash),
        "{error}: {diagnosis:?}"
    );
    // And no new connection can be made until it is back.
    let refused = mysql_async::Conn::from_url(server.url().as_str())
        .await
        .unwrap_err();
    let refused = classify_mysql_async(&refused);
    assert_eq!(refused.primary(), Cause::ServerUnreachable);
    assert_eq!(refused.retry, Retry::SafeToRetry);
    server.start().await.unwrap();
}

#[tokio::test]
async fn packet_over_max_allowed_packet() {
    let server = Server::builder()
        .var("max_allowed_packet", "1M")
        .start()
        .await
        .unwrap();
    let mut conn = connect(&server.url()).await;
    conn.query_drop("CREATE TABLE blobs (b LONGBLOB)")
        .await
        .unwrap();
    let payload = "x".repeat(2 * 1024 * 1024);
    let (error, diagnosis) = failing(
        &mut conn,
        &format!("INSERT INTO blobs VALUES ('{payload}')"),
    )
    .await;
    assert_eq!(
        diagnosis.primary(),
        Cause::PacketTooLarge,
        "{error}: {diagnosis:?}"
    );
    assert_eq!(diagnosis.retry, Retry::DoNotRetry);
    let mut check = connect(&server.url()).await;
    let rows: Option<i64> = check
        .query_first("SELECT COUNT(*) FROM blobs")
        .await
        .unwrap();
    assert_eq!(rows, Some(0), "nothing was written");
}

#[tokio::test]
async fn reset_mid_result() {
    let server = Server::start_default().await.unwrap();
    let relay = relay_to(&server).await;
    let mut conn = connect(&server.url_for(relay.local_addr())).await;
    relay.set(Fault::ResetAfterBytes(2000));
    let (error, diagnosis) = failing(&mut conn, "SELECT REPEAT('x', 100) FROM seq_1_to_1000").await;
    assert!(diagnosis.is_disconnect(), "{error}");
    assert!(
        diagnosis.mentions(Cause::NetworkDrop),
        "{error}: {diagnosis:?}"
    );
    // The statement reached the server: the outcome is unknown, so no blind retry.
    assert_eq!(diagnosis.retry, Retry::RetryIfIdempotent, "{error}");
}

#[tokio::test]
async fn silent_blackhole_of_an_idle_flow() {
    let server = Server::start_default().await.unwrap();
    let relay = relay_to(&server).await;
    let mut conn = connect(&server.url_for(relay.local_addr())).await;
    relay.set(Fault::BlackholeIdle(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Nothing comes back and nothing is closed: only the client's own timeout ends it.
    let waited = tokio::time::timeout(Duration::from_secs(2), conn.query_drop("SELECT 1")).await;
    assert!(
        waited.is_err(),
        "a blackholed flow must hang, got {waited:?}"
    );
    let diagnosis = classify_io(std::io::ErrorKind::TimedOut);
    assert!(diagnosis.mentions(Cause::NetworkDrop), "{diagnosis:?}");
    assert!(relay
        .status()
        .flows
        .iter()
        .any(|f| format!("{:?}", f.state).contains("Blackhole")));
}

#[tokio::test]
async fn injected_mysql8_inactivity_error() {
    let server = Server::start_default().await.unwrap();
    let relay = relay_to(&server).await;
    let mut conn = connect(&server.url_for(relay.local_addr())).await;
    relay.set(Fault::Inject4031Idle(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (error, diagnosis) = failing(&mut conn, "SELECT 1").await;
    // mysqld sends 4031 with sequence id 0, which mysql_async reports as "Packets out of
    // sync"; with mysql_async that can only be an unsolicited packet, so idleness ranks first.
    assert!(diagnosis.is_disconnect(), "{error}");
    assert_eq!(
        diagnosis.primary(),
        Cause::IdleTimeout,
        "{error}: {diagnosis:?}"
    );
}

#[tokio::test]
async fn injected_4031_read_as_a_reply() {
    let server = Server::start_default().await.unwrap();
    let relay = Relay::start(
        RelayConfig::new("127.0.0.1:0", server.addr().to_string()).sequence_id_4031(1),
    )
    .await
    .unwrap();
    let mut conn = connect(&server.url_for(relay.local_addr())).await;
    relay.set(Fault::Inject4031Idle(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (error, diagnosis) = failing(&mut conn, "SELECT 1").await;
    // A client that reads the packet as its reply (libmysqlclient 8.0.24+ does) gets 4031.
    assert_eq!(diagnosis.code, Some(4031), "{error}");
    assert_eq!(
        diagnosis.primary(),
        Cause::IdleTimeout,
        "{error}: {diagnosis:?}"
    );
    assert!(diagnosis.is_disconnect());
    assert_eq!(diagnosis.retry, Retry::ReconnectThenRetry, "{error}");
}

#[tokio::test]
async fn wrong_password() {
    let server = Server::start_default().await.unwrap();
    let url = server
        .url()
        .replace(goneaway_harness::APP_PASSWORD, "not-the-password");
    let error = mysql_async::Conn::from_url(url.as_str()).await.unwrap_err();
    let diagnosis = classify_mysql_async(&error);
    assert_eq!(diagnosis.primary(), Cause::AccessDenied, "{error}");
    assert_eq!(diagnosis.retry, Retry::DoNotRetry);
}

#[tokio::test]
async fn deadlock() {
    let server = Server::start_default().await.unwrap();
    let mut setup = connect(&server.url()).await;
    setup
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO t VALUES (1,0),(2,0)")
        .await
        .unwrap();
    let mut a = connect(&server.url()).await;
    let mut b = connect(&server.url()).await;
    a.query_drop("START TRANSACTION; UPDATE t SET v=1 WHERE id=1")
        .await
        .unwrap();
    b.query_drop("START TRANSACTION; UPDATE t SET v=1 WHERE id=2")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.query_drop("UPDATE t SET v=2 WHERE id=2"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.query_drop("UPDATE t SET v=2 WHERE id=1").await
    });
    let error = ra
        .err()
        .or(rb.err())
        .expect("one side is the deadlock victim");
    let diagnosis = classify_mysql_async(&error);
    assert_eq!(diagnosis.primary(), Cause::Deadlock, "{error}");
    assert_eq!(diagnosis.retry, Retry::RetryTransaction);
    assert!(!diagnosis.is_disconnect());
}
