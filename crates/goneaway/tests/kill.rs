//! `KILL` of pooled connections.

use std::time::Duration;

use crate::common::{opts, pool, server, warm};

/// Every pooled connection killed while idle (just used, so not due for validation):
/// the first statement finds one dead and is retried; the kill marks the pool suspect,
/// so the others are pinged and replaced before anyone gets them.
#[tokio::test]
async fn killed_idle_connections_are_replaced_invisibly() {
    let server = server(60).await;
    let pool = pool(&server.url(), opts());
    let ids = warm(&pool, 3).await;
    for id in &ids {
        server.kill_connection(*id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let v: Vec<i64> = pool
            .query("SELECT 1")
            .await
            .expect("no error reaches the caller");
        assert_eq!(v, vec![1]);
    }
    let mut c = pool.get().await.unwrap();
    assert!(!ids.contains(&c.id()));
    let _: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    drop(c);
    let st = pool.status();
    assert!(st.retries <= 1, "{st:?}");
    assert_eq!(st.retries + st.stale_caught_by_validation, 3, "{st:?}");
}

/// A connection killed in the middle of a read-only statement: the statement is rerun.
#[tokio::test]
async fn killed_busy_read_is_retried() {
    let server = std::sync::Arc::new(server(60).await);
    let pool = pool(&server.url(), opts());
    let ids = warm(&pool, 1).await;
    let killer = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.kill_connection(ids[0]).await.unwrap();
        })
    };
    let v: Vec<String> = pool
        .query("SELECT CONCAT('done', SLEEP(1))")
        .await
        .expect("a read is retried after KILL");
    assert_eq!(v, vec!["done0".to_string()]);
    killer.await.unwrap();
    assert!(pool.status().retries >= 1);
}
