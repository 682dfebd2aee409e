//! The three programs in `examples/`, run against real servers: each example's `main` is a
//! thin wrapper around a `run` function, which these tests call and check.

use std::time::Duration;

use crate::common;

#[path = "../examples/bulk_import.rs"]
#[allow(dead_code)] // its `main` is for `cargo run --example`
mod bulk_import;
#[path = "../examples/idle_worker.rs"]
#[allow(dead_code)]
mod idle_worker;
#[path = "../examples/web_handler.rs"]
#[allow(dead_code)]
mod web_handler;

/// Bounds each example so a hang fails the test instead of stalling the suite.
const LIMIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_handler_serves_every_request_and_conserves_credit() {
    let server = common::server(2).await;
    let outcome = tokio::time::timeout(LIMIT, web_handler::run(&server.url(), 60))
        .await
        .expect("example finished in time")
        .expect("example ran");
    assert_eq!((outcome.served, outcome.failed), (60, 0), "{outcome:?}");
    // Three users with 100 each; transfers only move credit.
    assert_eq!(outcome.total_credit, 300, "{outcome:?}");
    assert!(outcome.status.checkouts >= 180, "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_survives_idling_past_wait_timeout() {
    let server = common::server(2).await;
    let (jobs, status) = tokio::time::timeout(
        LIMIT,
        idle_worker::run(&server.url(), 2, Duration::from_millis(2500)),
    )
    .await
    .expect("example finished in time")
    .expect("no job saw an error");
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.contains(" at 20")), "{jobs:?}");
    // The worker idled longer than the server's 2 s wait_timeout; the pool's keepalive
    // (derived from wait_timeout: every ~0.7 s) kept its connection alive, so the second
    // job ran on the same connection, without a reconnect or an error.
    assert!(status.keepalive_pings >= 1, "{status:?}");
    assert_eq!(status.gone_away, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_packs_rows_by_max_allowed_packet() {
    let server = goneaway_harness::Server::builder()
        .var("max_allowed_packet", "64K")
        .start()
        .await
        .expect("start a MariaDB server");
    let (inserted, removed) = tokio::time::timeout(LIMIT, bulk_import::run(&server.url(), 3000))
        .await
        .expect("example finished in time")
        .expect("example ran");
    assert_eq!(inserted.rows, 3000);
    // ~650 KB of rows against a 64 KiB packet: many statements, none too big.
    assert!(inserted.statements >= 10, "{inserted:?}");
    assert!(
        inserted.bytes / inserted.statements <= 64 * 1024,
        "{inserted:?}"
    );
    assert_eq!(removed.rows, 1500);
    let left = common::scalar(&server, "SELECT COUNT(*) FROM goneaway.import").await;
    assert_eq!(left, 1500);
}
