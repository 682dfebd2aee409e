//! The protocol through the proxy.

use mysql_async::prelude::*;

use crate::common::*;

#[tokio::test]
async fn queries_multi_results_and_prepared_statements() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    assert_eq!(one(&mut conn, "SELECT 1 + 1").await.unwrap(), "2");
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    conn.exec_drop("INSERT INTO t VALUES (?, ?)", (1, "one"))
        .await
        .unwrap();
    conn.exec_drop("INSERT INTO t VALUES (?, ?)", (2, "two"))
        .await
        .unwrap();
    let rows: Vec<(i32, String)> = conn
        .exec("SELECT id, v FROM t WHERE id >= ? ORDER BY id", (1,))
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, "one".into()), (2, "two".into())]);
    // Two statements, two result sets.
    let mut result = conn.query_iter("SELECT 1; SELECT 2, 3").await.unwrap();
    let first: Vec<i32> = result.collect().await.unwrap();
    let second: Vec<(i32, i32)> = result.collect().await.unwrap();
    assert_eq!((first, second), (vec![1], vec![(2, 3)]));
    // A server error is forwarded as is, and the session goes on.
    let e = conn
        .query_drop("SELECT * FROM missing_table")
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1146);
    conn.ping().await.unwrap();
    conn.disconnect().await.unwrap();
    assert!(
        proxy
            .stats()
            .logins
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn wrong_password_is_refused_by_the_proxy() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let e = mysql_async::Conn::new(opts(&proxy).pass(Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    let e = mysql_async::Conn::new(opts(&proxy).user(Some("nobody")))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    // Metrics and health are served on their own address.
    let addr = proxy.metrics_addr().unwrap();
    let body = http_get(addr, "/metrics").await;
    assert!(
        body.contains("goneaway_proxy_login_failures_total 2"),
        "{body}"
    );
    assert!(
        body.contains("content-type: text/plain; version=0.0.4"),
        "{body}"
    );
    let health = http_get(addr, "/health").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let other = http_get(addr, "/").await;
    assert!(
        other.starts_with("HTTP/1.1 404") && other.contains("/metrics"),
        "{other}"
    );
}
