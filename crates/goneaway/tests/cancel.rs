//! Cancellation is a fault like any other: futures dropped mid-statement, mid-transaction,
//! while waiting and while validating leave the pool exactly consistent. Each test is
//! named after what it reproduces.

use std::time::Duration;

use goneaway::mysql_async::prelude::Queryable;
use goneaway::{BulkInsert, Error, Validation};
use goneaway_harness::{Server, APP_USER};
use goneaway_relay::Fault;

use crate::common::{create_table, opts, pool, relay, scalar, server, warm};

/// The server's own count of the application account's connections.
pub async fn server_side_connections(server: &Server) -> i64 {
    scalar(
        server,
        &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{APP_USER}'"),
    )
    .await
}

/// Waits (bounded) until the background work of the pool (closing, rolling back) is done
/// and the server agrees with `status().size`.
async fn settle(server: &Server, pool: &goneaway::Pool) {
    for _ in 0..50 {
        if server_side_connections(server).await == pool.status().size as i64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the pool says {} connections, the server sees {}",
        pool.status().size,
        server_side_connections(server).await
    );
}

/// Finding 1: `timeout(50ms, SELECT SLEEP(2))`, then 100 queries. Before: all 100 got the
/// SLEEP's result. Now every query gets its own, at `max_size` 1 and 4.
#[tokio::test]
async fn regression_cancelled_statement_poisons_its_connection() {
    let server = server(60).await;
    for max_size in [1, 4] {
        let pool = pool(&server.url(), opts().max_size(max_size));
        warm(&pool, max_size).await;
        for _ in 0..max_size {
            let cut = tokio::time::timeout(
                Duration::from_millis(50),
                pool.query::<i64>("SELECT SLEEP(2)"),
            )
            .await;
            assert!(cut.is_err(), "the timeout fired");
        }
        for i in 0..100i64 {
            let v: Option<i64> = pool
                .query_first(format!("SELECT {i} + 1000"))
                .await
                .unwrap();
            assert_eq!(v, Some(i + 1000), "max_size {max_size}: query {i}");
        }
        let st = pool.status();
        assert!(st.closed >= max_size as u64, "{st:?}");
        assert_eq!(st.in_use, 0, "{st:?}");
        drop(pool);
    }
}

/// The same through the driver connection itself (`PooledConn::conn`), which the pool
/// does not wrap: the driver's own busy flag tells the pool a reply is unread.
#[tokio::test]
async fn cancelled_raw_statement_is_not_reused() {
    let server = server(60).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let mut pc = pool.get().await.unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        pc.conn().query_drop("SELECT SLEEP(2)"),
    )
    .await;
    assert!(cut.is_err());
    assert!(pc.is_broken());
    drop(pc);
    let v: Option<i64> = pool.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));
}

/// Finding 2: a `Pool::transaction` cancelled between its statements. Before: the next
/// caller's autocommit INSERT ran inside the open transaction, and the next transaction's
/// START TRANSACTION committed 2 of its 3 rows. Now none of it is ever committed.
#[tokio::test]
async fn regression_cancelled_transaction_leaves_it_open() {
    let server = server(60).await;
    create_table(&server).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        pool.transaction(|tx| {
            Box::pin(async move {
                tx.exec_drop("INSERT INTO t (v) VALUES ('cancelled-1')", ())
                    .await?;
                tx.exec_drop("INSERT INTO t (v) VALUES ('cancelled-2')", ())
                    .await?;
                // The application awaits something else; the caller gives up here.
                tokio::time::sleep(Duration::from_secs(5)).await;
                tx.exec_drop("INSERT INTO t (v) VALUES ('cancelled-3')", ())
                    .await?;
                Ok(())
            })
        }),
    )
    .await;
    assert!(cut.is_err());
    let n = pool
        .exec_drop("INSERT INTO t (v) VALUES ('autocommit')", ())
        .await
        .unwrap();
    assert_eq!(n, 1);
    pool.transaction(|tx| {
        Box::pin(async move {
            tx.exec_drop("INSERT INTO t (v) VALUES ('next')", ())
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    // Read by another account's connection: only what was committed.
    assert_eq!(
        scalar(
            &server,
            "SELECT COUNT(*) FROM goneaway.t WHERE v LIKE 'cancelled%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &server,
            "SELECT COUNT(*) FROM goneaway.t WHERE v IN ('autocommit', 'next')"
        )
        .await,
        2
    );
}

/// A transaction cancelled in the middle of one of its statements, and a `Transaction`
/// guard dropped open: nothing of either is committed, and the connection is either
/// closed or rolled back before reuse.
#[tokio::test]
async fn cancelled_mid_statement_and_dropped_guard_commit_nothing() {
    let server = server(60).await;
    create_table(&server).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        pool.transaction(|tx| {
            Box::pin(async move {
                tx.exec_drop("INSERT INTO t (v) VALUES ('mid')", ()).await?;
                tx.query_drop("SELECT SLEEP(3)").await?;
                Ok(())
            })
        }),
    )
    .await;
    assert!(cut.is_err());

    let mut tx = pool.begin().await.unwrap();
    tx.exec_drop("INSERT INTO t (v) VALUES ('guard')", ())
        .await
        .unwrap();
    drop(tx);

    // An error inside a guard, then an early return: the same.
    let mut tx = pool.begin().await.unwrap();
    tx.exec_drop("INSERT INTO t (v) VALUES ('guard-error')", ())
        .await
        .unwrap();
    assert!(tx.query_drop("SELECT * FROM no_such_table").await.is_err());
    drop(tx);

    let mut tx = pool.begin().await.unwrap();
    tx.exec_drop("INSERT INTO t (v) VALUES ('committed')", ())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = pool.begin().await.unwrap();
    tx.rollback().await.unwrap();

    let in_tx: Option<(i64, i64)> = pool
        .query_first("SELECT @@in_transaction, @@autocommit")
        .await
        .unwrap();
    assert_eq!(in_tx, Some((0, 1)));
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 1);
    assert_eq!(
        scalar(
            &server,
            "SELECT COUNT(*) FROM goneaway.t WHERE v = 'committed'"
        )
        .await,
        1
    );
    settle(&server, &pool).await;
}

/// A caller that turned autocommit off and gave the connection back: the next caller's
/// write must not sit in an implicit transaction nobody commits.
#[tokio::test]
async fn connection_returned_with_autocommit_off_is_not_reused() {
    let server = server(60).await;
    create_table(&server).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let mut pc = pool.get().await.unwrap();
    pc.query_drop("SET autocommit = 0").await.unwrap();
    drop(pc);
    pool.exec_drop("INSERT INTO t (v) VALUES ('durable')", ())
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &server,
            "SELECT COUNT(*) FROM goneaway.t WHERE v = 'durable'"
        )
        .await,
        1
    );
    let autocommit: Option<i64> = pool.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(autocommit, Some(1));
}

/// Finding 3: callers cancelled while waiting for a connection. Before: each leaked a
/// waiter, and after `max_waiters` of them every waiting checkout failed with QueueFull.
#[tokio::test]
async fn regression_cancelled_waiters_leak() {
    let server = server(60).await;
    let pool = pool(&server.url(), opts().max_size(1).max_waiters(2));
    let held = pool.get().await.unwrap();
    for _ in 0..10 {
        let cut = tokio::time::timeout(Duration::from_millis(20), pool.get()).await;
        assert!(cut.is_err());
    }
    assert_eq!(pool.status().waiters, 0);
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.query_first::<i64>("SELECT 3").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.status().waiters, 1);
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), Some(3));
    assert_eq!(pool.status().waiters, 0);
}

/// Finding 4: a checkout cancelled during its validation ping. Before: the connection was
/// dropped without being counted closed, so `size` said one more than the server saw.
#[tokio::test]
async fn regression_cancelled_validation_leaks_the_open_count() {
    let server = server(60).await;
    let relay = relay(&server).await;
    let pool = pool(
        &server.url_for(relay.local_addr()),
        opts()
            .validation(Validation::Always)
            .ping_timeout(Duration::from_secs(5))
            .keepalive_interval(Duration::ZERO),
    );
    warm(&pool, 2).await;
    assert_eq!(pool.status().size, 2);
    // Idle flows go silent: the validation ping gets no answer.
    relay.set(Fault::BlackholeIdle(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cut = tokio::time::timeout(Duration::from_millis(300), pool.get()).await;
    assert!(cut.is_err(), "the ping hangs, the caller gives up");
    let st = pool.status();
    assert_eq!(st.size, 1, "{st:?}");
    assert_eq!(st.opened - st.closed, 1, "{st:?}");
    assert_eq!(st.in_use, 0, "{st:?}");
}

/// Finding 5: a failed `bulk_insert` left `net_read_timeout`/`net_write_timeout` at 600 on
/// the pooled connection.
#[tokio::test]
async fn regression_failed_bulk_insert_keeps_raised_timeouts() {
    let server = server(60).await;
    create_table(&server).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let before: Option<(u64, u64)> = pool
        .query_first("SELECT @@session.net_read_timeout, @@session.net_write_timeout")
        .await
        .unwrap();
    let rows = vec![
        vec![goneaway::mysql_async::Value::from("ok")],
        vec![
            goneaway::mysql_async::Value::from("too"),
            goneaway::mysql_async::Value::from("many"),
        ],
    ];
    let e = pool
        .bulk_insert(BulkInsert::new("t", &["v"]), rows)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let after: Option<(u64, u64)> = pool
        .query_first("SELECT @@session.net_read_timeout, @@session.net_write_timeout")
        .await
        .unwrap();
    assert_eq!(after, before);

    // Cancelled between raising and restoring: the connection is closed, not reused.
    let many = (0..200_000).map(|i| vec![goneaway::mysql_async::Value::from(i)]);
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        pool.bulk_insert(BulkInsert::new("t", &["n"]), many),
    )
    .await;
    assert!(cut.is_err());
    let after: Option<(u64, u64)> = pool
        .query_first("SELECT @@session.net_read_timeout, @@session.net_write_timeout")
        .await
        .unwrap();
    assert_eq!(after, before);
}

/// Finding 6: `batched` took `… OR 'LIMIT' = ?` for a LIMIT clause and would have deleted
/// the whole group at once.
#[tokio::test]
async fn regression_batched_limit_in_a_string_is_not_a_limit() {
    let server = server(60).await;
    create_table(&server).await;
    let pool = pool(&server.url(), opts());
    server
        .admin("INSERT INTO goneaway.t (v, n) VALUES ('a', 3), ('b', 3), ('c', 3)")
        .await
        .unwrap();
    let e = pool
        .batched("DELETE FROM t WHERE n = 3 OR 'LIMIT' = ?", ("x",), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 3);
    let done = pool
        .batched("DELETE FROM t WHERE n = ? LIMIT 2", (3,), |_| {})
        .await
        .unwrap();
    assert_eq!(done.rows, 3);
}

/// Finding 7: right after every pooled connection was KILLed (used less than a second
/// ago, so not due for a ping), concurrent INSERTs met the dead connections and got
/// OutcomeUnknown. The look at the socket at checkout catches them: no write is retried,
/// none is lost, none is unknown.
#[tokio::test]
async fn regression_killed_recently_used_connections_are_handed_out() {
    let server = server(60).await;
    create_table(&server).await;
    let pool = pool(&server.url(), opts().max_size(4));
    let ids = warm(&pool, 4).await;
    for id in &ids {
        server.kill_connection(*id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            pool.exec_drop("INSERT INTO t (v) VALUES (?)", (format!("after-kill-{i}"),))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().expect("no error after KILL"), 1);
    }
    let st = pool.status();
    assert_eq!(st.retries, 0, "no write met a dead connection: {st:?}");
    assert_eq!(st.stale_caught_by_validation, 4, "{st:?}");
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 4);
}

/// Finding 8a: keepalive pings running while callers hammer the pool never take it past
/// `max_size` (the keepalive takes its permit before taking a connection off the list).
#[tokio::test]
async fn keepalive_never_exceeds_max_size() {
    let server = server(60).await;
    let pool = pool(
        &server.url(),
        opts()
            .max_size(2)
            .keepalive_interval(Duration::from_millis(100)),
    );
    warm(&pool, 2).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                let _: Option<i64> = pool.query_first("SELECT 1").await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }
    let mut most = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        most = most.max(server_side_connections(&server).await);
        assert!(pool.status().size <= 2, "{:?}", pool.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most <= 2, "the server saw {most} connections");
}

/// Finding 8b: `close()` while keepalive pings are in flight: no connection comes back
/// into the closed pool, and the server ends with none of ours.
#[tokio::test]
async fn close_during_keepalive_leaves_nothing_open() {
    let server = server(60).await;
    let pool = pool(
        &server.url(),
        opts()
            .max_size(4)
            .keepalive_interval(Duration::from_millis(50)),
    );
    warm(&pool, 4).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.status().size, 0, "{:?}", pool.status());
    assert_eq!(pool.status().idle, 0);
    settle(&server, &pool).await;
}

/// Finding 8c: work inside `Pool::transaction` that uses the driver connection directly
/// and loses it: the connection is not reused, and the transaction is rerun whole.
#[tokio::test]
async fn transaction_work_losing_the_raw_connection_is_rerun() {
    let server = std::sync::Arc::new(server(60).await);
    create_table(&server).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let result = {
        let attempts = attempts.clone();
        let server = server.clone();
        pool.transaction(move |tx| {
            let attempts = attempts.clone();
            let server = server.clone();
            Box::pin(async move {
                let first = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                tx.exec_drop("INSERT INTO t (v) VALUES ('raw')", ()).await?;
                if first {
                    let id = tx.id();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        server.kill_connection(id).await.unwrap();
                    });
                    tx.conn()
                        .query_drop("SELECT SLEEP(3)")
                        .await
                        .map_err(Error::from)?;
                }
                Ok(())
            })
        })
        .await
    };
    result.expect("rerun after the raw connection was lost");
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 1);
}

/// The streaming query: rows as they come, retried only before the first row reached
/// the caller.
#[tokio::test]
async fn query_each_streams_and_is_cancel_safe() {
    let server = server(60).await;
    let pool = pool(&server.url(), opts().max_size(1));
    let mut sum = 0i64;
    let n = pool
        .query_each("SELECT seq FROM seq_1_to_10000", |v: i64| {
            sum += v;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!((n, sum), (10_000, 50_005_000));
    let mut seen = 0;
    let e = pool
        .exec_each(
            "SELECT seq FROM seq_1_to_10000 WHERE seq > ?",
            (10,),
            |_: i64| {
                seen += 1;
                if seen == 5 {
                    Err(Error::other("enough"))
                } else {
                    Ok(())
                }
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "enough");
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        pool.query_each(
            "SELECT seq, SLEEP(0.01) FROM seq_1_to_1000",
            |_: (i64, i64)| Ok(()),
        ),
    )
    .await;
    assert!(cut.is_err());
    let v: Option<i64> = pool.query_first("SELECT 42").await.unwrap();
    assert_eq!(v, Some(42));
}
