//! Network drops staged through the relay, with a real mysql_async client on the other side.

use std::time::Duration;

use goneaway_core::Cause;
use goneaway_doctor::{diagnose, Options};
use goneaway_harness::Server;
use goneaway_relay::{Relay, RelayConfig};
use mysql_async::prelude::Queryable;

use crate::{quick, target};

#[tokio::test]
async fn reset_in_the_network_is_network_drop() {
    let server = Server::start_default().await.unwrap();
    let relay = Relay::start(RelayConfig::new("127.0.0.1:0", server.addr()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url_for(relay.local_addr()))
        .await
        .unwrap();
    conn.query_drop("SELECT 1").await.unwrap();
    let id = conn.id();
    // A firewall resets the flow while a query runs. The server, busy with the statement,
    // does not read the socket until the statement ends: it sees nothing while the doctor
    // looks, as with a NAT gateway that forgets a flow.
    let query = tokio::spawn(async move { conn.query_drop("SELECT SLEEP(5)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.reset_all(), 1);
    let err = query
        .await
        .unwrap()
        .expect_err("the reset breaks the query");
    let app = format!("mysql_async error: {err}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = diagnose(
        &target(&server),
        &Options {
            app_text: vec![app.clone()],
            ..quick()
        },
    )
    .await;
    let text = report.render_text(false);
    let first = &report.findings[0];
    assert_eq!(first.cause, Cause::NetworkDrop, "{text}");
    assert!(first.confidence >= 0.7, "{text}");
    // The evidence: the application's own error, and the server's silence.
    assert!(first
        .evidence
        .iter()
        .any(|e| e.source == "application" && e.detail.contains("Connection reset by peer")));
    assert!(
        first.evidence.iter().any(|e| e.weight > 0.0
            && e.detail
                .contains("the server logged no aborted connection, restart or crash")),
        "{text}"
    );
    assert!(report.error_log.as_ref().unwrap().aborted.is_empty());
    let facts = report.facts.as_ref().unwrap();
    assert_eq!(facts.counter("Aborted_clients"), Some(0));
    assert!(report
        .findings
        .iter()
        .all(|f| f.cause != Cause::IdleTimeout));
    // The statement would hold the server's shutdown for its full length.
    server.kill_query(id).await.unwrap();
}
