//! Backends blackholed mid-statement (a firewall or NAT that lost the flow: no reset, no
//! end, no reply): the proxy asks the server on a second connection and tells a long
//! statement from a lost request or a lost reply.

use std::time::{Duration, Instant};

use goneaway_harness::Server;
use goneaway_relay::{Fault as RelayFault, FaultKind};
use mysql_async::prelude::*;

use crate::common::*;

/// A server whose idle sessions stay (so that the verdicts do not race its
/// `wait_timeout`), a relay in front of it, and a proxy through the relay that looks at a
/// reply silent for 1 s.
async fn setup() -> (Server, goneaway_relay::Relay, goneaway_proxy::Proxy) {
    let server = Server::builder()
        .var("wait_timeout", 60)
        .start()
        .await
        .expect("a harness server");
    let relay = relay(&server).await;
    let proxy = proxy_with(&server, relay.local_addr(), |c| {
        c.stall_check = Some(Duration::from_secs(1))
    })
    .await;
    (server, relay, proxy)
}

fn stalls(proxy: &goneaway_proxy::Proxy, verdict: &str) -> u64 {
    proxy.stats().stalls().get(verdict).copied().unwrap_or(0)
}

async fn rows(server: &Server, sql: &str) -> i64 {
    let mut admin = server.admin_conn().await.unwrap();
    admin.query_first(sql).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_long_statement_is_waited_for_and_a_request_lost_in_a_blackhole_is_run_again() {
    let (server, relay, proxy) = setup().await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();

    // A statement that runs 2.5 s is asked about twice and left alone.
    let v: Option<i64> = conn.query_first("SELECT SLEEP(2.5)").await.unwrap();
    assert_eq!(v, Some(0));
    assert!(
        proxy
            .stats()
            .stall_checks
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2,
        "the long statement was looked at"
    );
    assert!(
        proxy.stats().stalls().is_empty(),
        "and never taken for a stall"
    );

    // The flow is blackholed while the session is idle: its next statement (a write)
    // never reaches the server, whose thread stays idle since before it was sent — the
    // proof that it did not run, so it runs again on a fresh connection.
    let first = backend_id(&mut conn).await;
    assert_eq!(relay.blackhole_all(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    conn.query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect("a write that never reached the server is sent again");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "found in {took:?}");
    assert_eq!(stalls(&proxy, "never_received"), 1);
    assert_eq!(rows(&server, "SELECT COUNT(*) FROM goneaway.t").await, 1);
    assert_ne!(backend_id(&mut conn).await, first, "on a fresh connection");
    // The old thread was killed, not left for wait_timeout.
    let old: i64 = rows(
        &server,
        &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {first}"),
    )
    .await;
    assert_eq!(old, 0, "the blackholed connection's thread is gone");
}

#[tokio::test]
async fn a_reply_lost_in_a_blackhole_inside_a_transaction_is_replayed() {
    let (server, relay, proxy) = setup().await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    // The statement reaches the server and runs 0.5 s; the flow is blackholed at 0.2 s,
    // so its reply is lost. The proxy finds the thread idle since after the statement
    // was sent, twice: the reply is lost; the transaction runs again on a new connection.
    let blackhole = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        relay.blackhole_all();
    };
    let (r, ()) = tokio::join!(conn.query_drop("DO SLEEP(0.5)"), blackhole);
    r.expect("the lost reply is absorbed by the replay");
    assert_eq!(stalls(&proxy, "reply_lost"), 1);
    assert_eq!(proxy.stats().replays().get("replayed").copied(), Some(1));
    conn.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(rows(&server, "SELECT COUNT(*) FROM goneaway.t").await, 2);
}

#[tokio::test]
async fn a_commit_whose_reply_is_lost_in_a_blackhole_is_resolved_by_its_mark() {
    let (server, relay, proxy) = setup().await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    wait_for_marks(&proxy).await;
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    // 400 ms each way: the mark's insert is one round trip, so the COMMIT reaches the
    // server 1.2 s in and its reply would be back at 1.6 s. The flow is blackholed at
    // 1.4 s: the server committed, the client hears nothing.
    let latency = Duration::from_millis(400);
    relay.set(RelayFault::Latency(latency));
    let blackhole = async {
        tokio::time::sleep(Duration::from_millis(1400)).await;
        relay.blackhole_all();
        relay.remove(FaultKind::Latency);
    };
    let (r, ()) = tokio::join!(conn.query_drop("COMMIT"), blackhole);
    r.expect("the commit mark proves the COMMIT committed");
    assert_eq!(
        proxy.stats().commits_resolved().get("committed").copied(),
        Some(1)
    );
    assert_eq!(stalls(&proxy, "reply_lost"), 1);
    assert_eq!(rows(&server, "SELECT COUNT(*) FROM goneaway.t").await, 2);
    // The session goes on.
    assert_eq!(one(&mut conn, "SELECT 1").await.unwrap(), "1");
}
