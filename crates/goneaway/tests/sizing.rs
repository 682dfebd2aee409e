//! Sizing and back-pressure, init statements, status.

use std::time::Duration;

use goneaway::Error;

use crate::common::{opts, pool, server};

#[tokio::test]
async fn full_pool_times_out_and_full_queue_fails_fast() {
    let server = server(60).await;
    let pool = pool(
        &server.url(),
        opts()
            .max_size(2)
            .max_waiters(1)
            .checkout_timeout(Duration::from_millis(400)),
    );
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.status().waiters, 1);
    let err = pool.get().await.expect_err("the queue is full");
    assert!(matches!(err, Error::QueueFull { limit: 1 }), "{err:?}");
    let err = waiter.await.unwrap().expect_err("no connection frees up");
    assert!(matches!(err, Error::CheckoutTimeout { .. }), "{err:?}");
    let st = pool.status();
    assert_eq!((st.size, st.idle, st.max_size), (2, 0, 2), "{st:?}");
    drop((a, b));
    assert_eq!(pool.status().idle, 2);
    // A waiter is served as soon as a connection is returned.
    let c = pool.get().await.unwrap();
    let held = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|c| c.id()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = c.id();
    drop(c);
    assert_eq!(waiter.await.unwrap().unwrap(), id);
    drop(held);
}

/// Init statements run on every new connection, including the replacement of a killed one.
#[tokio::test]
async fn init_statements_survive_replacement() {
    let server = server(60).await;
    let pool = pool(
        &server.url(),
        opts().init_statement("SET SESSION time_zone = '+05:00'"),
    );
    let mut c = pool.get().await.unwrap();
    let tz: Option<String> = c.query_first("SELECT @@session.time_zone").await.unwrap();
    assert_eq!(tz.as_deref(), Some("+05:00"));
    let id = c.id();
    drop(c);
    server.kill_connection(id).await.unwrap();
    let tz: Vec<String> = pool.query("SELECT @@session.time_zone").await.unwrap();
    assert_eq!(tz, vec!["+05:00".to_string()]);
}

/// An access-denied connect error is reported at once, not retried until the timeout.
#[tokio::test]
async fn access_denied_fails_fast() {
    let server = server(60).await;
    let url = server
        .url()
        .replace(goneaway_harness::APP_PASSWORD, "wrong");
    let pool = pool(&url, opts());
    let started = std::time::Instant::now();
    let err = pool.get().await.expect_err("wrong password");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
