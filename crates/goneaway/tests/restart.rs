//! Graceful restarts and crashes, with idle and busy connections.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{create_table, opts, pool, scalar, server, warm};

async fn survives(crash: bool) {
    let server = Arc::new(server(60).await);
    create_table(&server).await;
    let pool = pool(&server.url(), opts());
    warm(&pool, 3).await;

    // A busy read-only statement, in flight while the server goes down.
    let busy = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.query::<i64>("SELECT SLEEP(2)").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    if crash {
        server.crash_and_restart().await.unwrap();
    } else {
        server.restart().await.unwrap();
    }
    let busy = busy.await.unwrap().expect("the busy read sees no error");
    assert_eq!(busy.len(), 1);

    // The idle connections all died with the server: a write must not see that.
    for i in 0..3 {
        pool.exec_drop("INSERT INTO t (v) VALUES (?)", (format!("row {i}"),))
            .await
            .expect("writes after a restart see no error");
    }
    assert_eq!(scalar(&server, "SELECT COUNT(*) FROM goneaway.t").await, 3);
    let st = pool.status();
    assert!(st.stale_caught_by_validation + st.retries >= 1, "{st:?}");
}

#[tokio::test]
async fn graceful_restart_with_idle_and_busy_connections() {
    survives(false).await;
}

#[tokio::test]
async fn crash_with_idle_and_busy_connections() {
    survives(true).await;
}
