//! Transactions: rerun whole on a loss before COMMIT and on deadlock; a loss during
//! COMMIT is reported, never replayed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use goneaway::Error;
use goneaway_relay::Fault;

use crate::common::{create_table, opts, pool, relay, scalar, server};

/// The connection is killed in the middle of the first attempt: the transaction is rerun
/// from its start on a fresh connection, and its effect lands exactly once.
#[tokio::test]
async fn transaction_rerun_after_kill_before_commit() {
    let server = Arc::new(server(60).await);
    create_table(&server).await;
    let pool = pool(&server.url(), opts());
    let attempts = Arc::new(AtomicU32::new(0));
    let result = pool
        .transaction(|tx| {
            let server = server.clone();
            let attempts = attempts.clone();
            Box::pin(async move {
                let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                tx.exec_drop("INSERT INTO t (v) VALUES ('txn')", ()).await?;
                if n == 1 {
                    server
                        .kill_connection(tx.id())
                        .await
                        .map_err(Error::other)?;
                }
                tx.exec_drop("UPDATE t SET n = n + 1 WHERE v = 'txn'", ())
                    .await?;
                Ok(n)
            })
        })
        .await
        .expect("the transaction is rerun, not failed");
    assert_eq!(result, 2);
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 1);
    assert_eq!(scalar(&server, "SELECT SUM(n) FROM goneaway.t").await, 1);
}

/// Two transactions take two row locks in opposite orders; InnoDB kills one with 1213,
/// which is rerun; both effects land.
#[tokio::test]
async fn deadlock_is_rerun() {
    let server = server(60).await;
    create_table(&server).await;
    server
        .admin("INSERT INTO goneaway.t (id, v) VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let pool = pool(&server.url(), opts());
    let run = |first: u32, second: u32| {
        let pool = pool.clone();
        async move {
            pool.transaction(move |tx| {
                Box::pin(async move {
                    tx.exec_drop("UPDATE t SET n = n + 1 WHERE id = ?", (first,))
                        .await?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    tx.exec_drop("UPDATE t SET n = n + 1 WHERE id = ?", (second,))
                        .await?;
                    Ok(())
                })
            })
            .await
        }
    };
    let (a, b) = tokio::join!(run(1, 2), run(2, 1));
    a.expect("no error reaches the caller");
    b.expect("no error reaches the caller");
    assert_eq!(scalar(&server, "SELECT SUM(n) FROM goneaway.t").await, 4);
    assert!(pool.status().retries >= 1);
}

/// The connection is reset as COMMIT's answer comes back: the server committed, the
/// client cannot know. The pool says "outcome unknown" and does not replay it.
#[tokio::test]
async fn lost_during_commit_is_outcome_unknown_and_not_replayed() {
    let server = server(60).await;
    create_table(&server).await;
    let relay = Arc::new(relay(&server).await);
    let pool = pool(&server.url_for(relay.local_addr()), opts());
    let err = pool
        .transaction(|tx| {
            let relay = relay.clone();
            Box::pin(async move {
                tx.exec_drop("INSERT INTO t (v) VALUES ('commit')", ())
                    .await?;
                // The next byte from the server is COMMIT's OK: cut the flow there.
                relay.set(Fault::ResetAfterBytes(0));
                Ok(())
            })
        })
        .await
        .expect_err("a loss during COMMIT is reported");
    assert!(matches!(err, Error::CommitOutcomeUnknown { .. }), "{err:?}");
    assert!(err.is_outcome_unknown());
    relay.clear();
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 1);
    assert_eq!(pool.status().retries, 0);
}
