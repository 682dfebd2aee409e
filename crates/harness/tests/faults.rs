//! Each harness operation makes a real client's connection go away.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use goneaway_harness::Server;

#[tokio::test]
async fn kill_connection_ends_the_victims_session() {
    let server = Server::start_default().await.unwrap();
    let mut victim = mysql_async::Conn::from_url(server.url().as_str())
        .await
        .unwrap();
    server.kill_connection(victim.id()).await.unwrap();
    let error = victim.query_drop("SELECT 1").await.unwrap_err();
    // Whatever the exact form, the victim's connection is unusable afterwards.
    assert!(victim.ping().await.is_err(), "after {error}");
}

#[tokio::test]
async fn wait_timeout_closes_an_idle_connection() {
    let server = Server::builder()
        .var("wait_timeout", 1)
        .start()
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url().as_str())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(conn.query_drop("SELECT 1").await.is_err());
}
