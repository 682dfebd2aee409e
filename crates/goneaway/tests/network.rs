//! Faults between the pool and the server, through the relay.

use std::time::{Duration, Instant};

use goneaway::{Error, RetryPolicy, Validation};
use goneaway_relay::{Fault, Relay, RelayConfig};

use crate::common::{create_table, opts, pool, relay, scalar, server, warm};

/// A NAT gateway silently forgets idle flows: nothing is closed, nothing answers. The
/// validation ping times out (500 ms), the connection is dropped and a new one opened;
/// the caller gets its rows within seconds, not after the kernel's 15 minutes.
#[tokio::test]
async fn blackholed_idle_flows_are_replaced() {
    let server = server(60).await;
    let relay = relay(&server).await;
    let pool = pool(
        &server.url_for(relay.local_addr()),
        opts().keepalive_interval(Duration::ZERO),
    );
    let ids = warm(&pool, 2).await;
    relay.set(Fault::BlackholeIdle(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let started = Instant::now();
    let mut c = pool.get().await.expect("checkout survives a blackhole");
    let v: Option<i64> = c.query_first("SELECT 5").await.unwrap();
    assert_eq!(v, Some(5));
    assert!(!ids.contains(&c.id()));
    drop(c);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pool.status().stale_caught_by_validation, 2);
}

/// The same blackhole with background keepalive on: the keepalive ping is what finds
/// the dead flows, before any caller asks.
#[tokio::test]
async fn blackholed_idle_flows_are_found_by_keepalive() {
    let server = server(60).await;
    let relay = relay(&server).await;
    let pool = pool(
        &server.url_for(relay.local_addr()),
        opts().keepalive_interval(Duration::from_millis(700)),
    );
    warm(&pool, 2).await;
    relay.set(Fault::BlackholeIdle(Duration::from_millis(400)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let st = pool.status();
    assert_eq!(st.stale_caught_by_keepalive, 2, "{st:?}");
    relay.clear();
    let v: Vec<i64> = pool.query("SELECT 1").await.unwrap();
    assert_eq!(v, vec![1]);
}

/// MySQL 8's inactivity error (4031) and close, injected by the relay. With validation
/// the ping finds it; without, the INSERT that meets it is retried because it never ran.
#[tokio::test]
async fn injected_4031_never_reaches_the_caller() {
    let server = server(60).await;
    create_table(&server).await;
    let relay = relay(&server).await;
    relay.set(Fault::Inject4031Idle(Duration::from_millis(600)));
    let url = server.url_for(relay.local_addr());

    let validated = pool(&url, opts().keepalive_interval(Duration::ZERO));
    warm(&validated, 2).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    validated
        .exec_drop("INSERT INTO t (v) VALUES ('validated')", ())
        .await
        .expect("4031 caught by validation");
    assert!(validated.status().stale_caught_by_validation >= 1);

    // mysql_async reads the server's sequence-id-0 packet as "Packets out of sync"; a
    // relay sending it with sequence id 1 lets the driver report 4031 itself, which the
    // classifier knows means nothing ran.
    let relay1 = Relay::start(
        RelayConfig::new("127.0.0.1:0", server.addr())
            .sequence_id_4031(1)
            .fault(Fault::Inject4031Idle(Duration::from_millis(600))),
    )
    .await
    .unwrap();
    let unvalidated = pool(
        &server.url_for(relay1.local_addr()),
        opts()
            .validation(Validation::Never)
            .keepalive_interval(Duration::ZERO)
            .max_idle(Duration::from_secs(3600)),
    );
    warm(&unvalidated, 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    unvalidated
        .exec_drop("INSERT INTO t (v) VALUES ('unvalidated')", ())
        .await
        .expect("4031 means nothing ran: retried");
    assert_eq!(unvalidated.status().retries, 1);
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 2);
}

/// Waits for the first flow reset, then disarms the fault so the retry can succeed.
async fn clear_after_first_reset(relay: &goneaway_relay::Relay) {
    let before = relay.status().flow_count;
    for _ in 0..2000 {
        if relay.status().flow_count < before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    relay.clear();
}

/// A reset in the middle of a SELECT's result: the read is retried on a fresh
/// connection and the caller gets every row.
#[tokio::test]
async fn reset_mid_result_select_is_retried() {
    let server = server(60).await;
    let relay = std::sync::Arc::new(relay(&server).await);
    let pool = pool(
        &server.url_for(relay.local_addr()),
        opts().retry(RetryPolicy {
            initial_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        }),
    );
    warm(&pool, 1).await;
    relay.set(Fault::ResetAfterBytes(3000));
    let watcher = {
        let relay = relay.clone();
        tokio::spawn(async move { clear_after_first_reset(&relay).await })
    };
    let rows: Vec<String> = pool
        .query("SELECT REPEAT('x', 200000)")
        .await
        .expect("the SELECT is retried");
    watcher.await.unwrap();
    assert_eq!(rows[0].len(), 200000);
    assert!(pool.status().retries >= 1, "{:?}", pool.status());
}

/// A reset while an INSERT's answer is on its way: the server may have written the row,
/// so the INSERT is not retried; the error says the outcome is unknown, and the table has
/// exactly one row or none — never two.
#[tokio::test]
async fn reset_mid_result_insert_is_not_retried() {
    let server = server(60).await;
    create_table(&server).await;
    let relay = relay(&server).await;
    let pool = pool(&server.url_for(relay.local_addr()), opts());
    warm(&pool, 1).await;
    relay.set(Fault::ResetAfterBytes(0));
    let err = pool
        .exec_drop("INSERT INTO t (v) VALUES ('once')", ())
        .await
        .expect_err("an INSERT lost mid-flight is not retried");
    assert!(err.is_outcome_unknown(), "{err}");
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("outcome unknown"), "{err}");
    relay.clear();
    let rows = scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await;
    assert!(rows <= 1, "{rows} rows: the INSERT ran twice");
    assert_eq!(pool.status().retries, 0);
    // The pool itself is fine afterwards.
    let v: Vec<i64> = pool.query("SELECT 1").await.unwrap();
    assert_eq!(v, vec![1]);
}
