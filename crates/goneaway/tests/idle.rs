//! Connections idle past the server's 2 s `wait_timeout`.

use std::time::Duration;

use goneaway::Validation;

use crate::common::{create_table, opts, pool, scalar, server, warm};

/// Validation alone (no keepalive, no recycling): every connection the server closed is
/// caught by its ping at checkout and replaced; the caller sees rows, not 2006.
#[tokio::test]
async fn idle_past_wait_timeout_is_caught_by_validation() {
    let server = server(2).await;
    let pool = pool(
        &server.url(),
        opts()
            .keepalive_interval(Duration::ZERO)
            .max_idle(Duration::from_secs(3600)),
    );
    let before = warm(&pool, 3).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;

    let mut handles = Vec::new();
    for _ in 0..3 {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut c = pool
                .get()
                .await
                .expect("checkout never fails on a dead connection");
            let v: Option<i64> = c
                .query_first("SELECT 42")
                .await
                .expect("query on a live connection");
            (v, c.id())
        }));
    }
    for h in handles {
        let (v, id) = h.await.unwrap();
        assert_eq!(v, Some(42));
        assert!(
            !before.contains(&id),
            "a dead connection ({id}) was handed out"
        );
    }
    let st = pool.status();
    assert_eq!(st.stale_caught_by_validation, 3, "{st:?}");
    assert_eq!(st.limits.unwrap().wait_timeout, Duration::from_secs(2));
}

/// The defaults: keepalive and recycling derived from wait_timeout=2 keep the same
/// connection alive through 5 s of idling, with no stale connection ever found.
#[tokio::test]
async fn defaults_keep_an_idle_connection_alive() {
    let server = server(2).await;
    let pool = pool(&server.url(), opts());
    let ids = warm(&pool, 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut c = pool.get().await.unwrap();
    let v: Option<i64> = c.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));
    assert_eq!(
        c.id(),
        ids[0],
        "keepalive should have kept the same connection"
    );
    drop(c);
    let st = pool.status();
    let limits = st.limits.unwrap();
    assert!(
        limits.keepalive_interval.unwrap() < Duration::from_secs(1),
        "{limits:?}"
    );
    assert!(limits.max_idle < Duration::from_secs(2), "{limits:?}");
    assert!(st.keepalive_pings >= 3, "{st:?}");
    assert_eq!(
        st.stale_caught_by_validation + st.stale_caught_by_keepalive,
        0,
        "{st:?}"
    );
    assert_eq!(st.gone_away, 0, "{st:?}");
}

/// No validation, no keepalive, no recycling (mysql_async's pool behaviour), through a
/// relay (so the pool cannot peek at the server's socket): the first statement on a
/// connection the server closed fails, and the pool retries it on a fresh connection —
/// even an INSERT, because a connection silent past wait_timeout proves the statement
/// never reached a live session. Exactly one row.
#[tokio::test]
async fn idle_past_wait_timeout_statement_is_retried_without_validation() {
    let server = server(2).await;
    create_table(&server).await;
    let relay = crate::common::relay(&server).await;
    let pool = pool(
        &server.url_for(relay.local_addr()),
        opts()
            .validation(Validation::Never)
            .keepalive_interval(Duration::ZERO)
            .max_idle(Duration::from_secs(3600)),
    );
    warm(&pool, 1).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let affected = pool
        .exec_drop("INSERT INTO t (v) VALUES (?)", ("after idle",))
        .await
        .expect("the caller sees no error");
    assert_eq!(affected, 1);
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 1);

    tokio::time::sleep(Duration::from_millis(2600)).await;
    let rows: Vec<String> = pool.query("SELECT v FROM t").await.expect("read retried");
    assert_eq!(rows, vec!["after idle".to_string()]);
    let st = pool.status();
    assert_eq!(st.retries, 2, "{st:?}");
}

/// The same straight to the server: even with validation off, the look at the socket at
/// checkout (no round trip) sees the server's close, so no statement meets a dead
/// connection and nothing needs a retry.
#[tokio::test]
async fn idle_past_wait_timeout_is_caught_by_the_socket_without_validation() {
    let server = server(2).await;
    create_table(&server).await;
    let pool = pool(
        &server.url(),
        opts()
            .validation(Validation::Never)
            .keepalive_interval(Duration::ZERO)
            .max_idle(Duration::from_secs(3600)),
    );
    warm(&pool, 1).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let affected = pool
        .exec_drop("INSERT INTO t (v) VALUES (?)", ("after idle",))
        .await
        .expect("the caller sees no error");
    assert_eq!(affected, 1);
    let st = pool.status();
    assert_eq!(
        (st.retries, st.stale_caught_by_validation),
        (0, 1),
        "{st:?}"
    );
}
