//! `ping`: each outcome has its exit code; `wait` rides out a server that is starting.

use std::sync::Arc;
use std::time::Duration;

use goneaway_doctor::{ping, PingOptions, PingStatus};
use goneaway_harness::Server;

use crate::target;

#[tokio::test]
async fn up_down_and_wrong_password() {
    let server = Server::start_default().await.unwrap();
    let opts = PingOptions {
        query: Some("SELECT 40 + 2".into()),
        ..PingOptions::default()
    };
    let up = ping(&target(&server), &opts).await;
    assert_eq!(up.status, PingStatus::Up, "{}", up.render_text());
    assert_eq!(up.exit_code, 0);
    assert_eq!(up.query_result.as_deref(), Some("42"));
    assert!(up.server_version.as_deref().unwrap().contains("MariaDB"));

    let mut bad = target(&server);
    bad.password = Some(goneaway_connect::Password::new("nope"));
    let denied = ping(&bad, &PingOptions::default()).await;
    assert_eq!((denied.status, denied.exit_code), (PingStatus::Auth, 5));

    server.stop().await.unwrap();
    let down = ping(&target(&server), &PingOptions::default()).await;
    assert_eq!(
        (down.status, down.exit_code),
        (PingStatus::Refused, 4),
        "{}",
        down.render_text()
    );
}

#[tokio::test]
async fn wait_rides_out_a_starting_server() {
    let server = Arc::new(Server::start_default().await.unwrap());
    server.stop().await.unwrap();
    let starter = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            server.start().await.unwrap();
        })
    };
    let opts = PingOptions {
        wait: Some(Duration::from_secs(30)),
        timeout: Duration::from_secs(3),
        ..PingOptions::default()
    };
    let report = ping(&target(&server), &opts).await;
    starter.await.unwrap();
    assert_eq!(report.status, PingStatus::Up, "{}", report.render_text());
    assert!(report.attempts > 1);
}
