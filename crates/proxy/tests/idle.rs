//! Sessions that idle past the server's wait_timeout, or lose their backend while idle.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn idle_past_wait_timeout_keeps_working() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    assert_eq!(one(&mut conn, "SELECT 'before'").await.unwrap(), "before");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(one(&mut conn, "SELECT 'after'").await.unwrap(), "after");
}

#[tokio::test]
async fn kill_restart_and_crash_while_idle() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id2 = backend_id(&mut conn).await;
    assert_ne!(id, id2, "a fresh backend");

    server.restart().await.unwrap();
    assert_eq!(
        one(&mut conn, "SELECT 'after restart'").await.unwrap(),
        "after restart"
    );

    server.crash().await.unwrap();
    // The session waits for the server instead of failing.
    let restart = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.start().await.unwrap();
    };
    let (value, ()) = tokio::join!(one(&mut conn, "SELECT 'after crash'"), restart);
    assert_eq!(value.unwrap(), "after crash");
    let absorbed: u64 = proxy.stats().absorbed_by_cause().values().sum();
    assert!(absorbed >= 2, "{:?}", proxy.stats().absorbed_by_cause());
}
