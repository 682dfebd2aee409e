//! Each cause staged for real; the doctor must rank it first, with its evidence.

use std::time::Duration;

use goneaway_core::Cause;
use goneaway_doctor::{diagnose, Options, Report};
use goneaway_harness::Server;
use mysql_async::prelude::Queryable;

use crate::{quick, target};

fn sources(report: &Report, cause: Cause) -> Vec<&'static str> {
    report
        .findings
        .iter()
        .find(|f| f.cause == cause)
        .map(|f| {
            f.evidence
                .iter()
                .filter(|e| e.weight > 0.0)
                .map(|e| e.source)
                .collect()
        })
        .unwrap_or_default()
}

fn first(report: &Report) -> Cause {
    report.findings.first().map_or(Cause::Unknown, |f| f.cause)
}

#[tokio::test]
async fn idle_timeout_is_found_from_aborted_clients_and_the_error_log() {
    let server = Server::builder()
        .var("wait_timeout", 2)
        .start()
        .await
        .unwrap();
    // A client idles past wait_timeout: the server closes it.
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    conn.query_drop("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let err = conn
        .query_drop("SELECT 1")
        .await
        .expect_err("the server should have closed it");

    // The client's own error ("Connection reset by peer") reads like a network drop; the
    // server's log says it closed the connection itself, so the report must not blame (or
    // advise fixing) the network.
    let report = diagnose(
        &target(&server),
        &Options {
            sample: Duration::from_secs(1),
            app_text: vec![format!("mysql_async error: {err}")],
            ..quick()
        },
    )
    .await;
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.cause != Cause::NetworkDrop),
        "{}",
        report.render_text(false)
    );
    assert!(report
        .recommendations
        .actions
        .iter()
        .all(|a| !a.contains("between client and server")));
    assert_eq!(
        first(&report),
        Cause::IdleTimeout,
        "{}",
        report.render_text(false)
    );
    let src = sources(&report, Cause::IdleTimeout);
    assert!(src.contains(&"error_log"), "{src:?}");
    assert!(src.contains(&"status"), "Aborted_clients: {src:?}");
    assert!(src.contains(&"application"), "the client's error: {src:?}");
    assert_eq!(report.exit_code, 1);
    // Advice: raise the tiny wait_timeout, and pools derived from the raised value.
    let rec = &report.recommendations;
    assert!(rec.my_cnf.contains("wait_timeout = 600"), "{}", rec.my_cnf);
    assert!(rec
        .statements
        .iter()
        .any(|s| s.starts_with("SET GLOBAL wait_timeout = 600")));
    assert_eq!(rec.frameworks.len(), 9);
    assert!(report
        .render_markdown()
        .contains("| `wait_timeout` | 2 | 2 |"));
    // The sample ran, and the doctor's own connection survived it without adding evidence.
    assert!(report.sample.is_some());
}

#[tokio::test]
async fn graceful_restart_is_server_restart() {
    let server = Server::start_default().await.unwrap();
    server.restart().await.unwrap();
    let report = diagnose(&target(&server), &quick()).await;
    assert_eq!(
        first(&report),
        Cause::ServerRestart,
        "{}",
        report.render_text(false)
    );
    let src = sources(&report, Cause::ServerRestart);
    assert!(
        src.contains(&"uptime") && src.contains(&"error_log"),
        "{src:?}"
    );
    assert!(report
        .findings
        .iter()
        .all(|f| f.cause != Cause::ServerCrash));
}

#[tokio::test]
async fn kill_and_start_is_server_crash() {
    let server = Server::start_default().await.unwrap();
    server.crash_and_restart().await.unwrap();
    let report = diagnose(&target(&server), &quick()).await;
    assert_eq!(
        first(&report),
        Cause::ServerCrash,
        "{}",
        report.render_text(false)
    );
    assert!(sources(&report, Cause::ServerCrash).contains(&"error_log"));
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.cause != Cause::ServerRestart),
        "an unclean start is not a clean restart: {}",
        report.render_text(false)
    );
}

#[tokio::test]
async fn oversized_packet_is_packet_too_large() {
    let server = Server::builder()
        .var("max_allowed_packet", "1M")
        .start()
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let big = "x".repeat(2 * 1024 * 1024);
    let err = conn
        .query_drop(format!("SELECT LENGTH('{big}')"))
        .await
        .expect_err("the server refuses a packet over max_allowed_packet");
    drop(conn);
    // MariaDB logs this as "Got an error reading communication packets", the same words as
    // a vanished client; the application's error (as a user would paste it) tells them apart.
    let opts = Options {
        app_text: vec![format!("mysql_async error: {err}")],
        ..quick()
    };
    let report = diagnose(&target(&server), &opts).await;
    assert_eq!(
        first(&report),
        Cause::PacketTooLarge,
        "{}",
        report.render_text(false)
    );
    assert!(report
        .recommendations
        .my_cnf
        .contains("max_allowed_packet = 64M"));
}

#[tokio::test]
async fn pool_lifetime_longer_than_wait_timeout() {
    let server = Server::builder()
        .var("wait_timeout", 20)
        .start()
        .await
        .unwrap();
    let opts = Options {
        pool_lifetime: Some(Duration::from_secs(1800)),
        app_text: vec!["pymysql.err.OperationalError: (2006, 'MySQL server has gone away')".into()],
        ..quick()
    };
    let report = diagnose(&target(&server), &opts).await;
    assert_eq!(
        first(&report),
        Cause::IdleTimeout,
        "{}",
        report.render_text(false)
    );
    let f = &report.findings[0];
    assert!(f
        .evidence
        .iter()
        .any(|e| e.source == "pool_settings" && e.detail.contains("wait_timeout = 20 s")));
    assert!(f.confidence >= 0.85);
    // A pool already below wait_timeout argues against it.
    let ok = Options {
        pool_lifetime: Some(Duration::from_secs(10)),
        ..quick()
    };
    let report = diagnose(&target(&server), &ok).await;
    assert!(report
        .findings
        .iter()
        .all(|f| f.cause != Cause::IdleTimeout || f.confidence < 0.5));
}

#[tokio::test]
async fn healthy_server_exits_zero() {
    let server = Server::start_default().await.unwrap();
    // A server started before the test is a first start, not a restart.
    let report = diagnose(&target(&server), &quick()).await;
    assert_eq!(report.exit_code, 0, "{}", report.render_text(false));
    assert!(report.findings.is_empty());
    let facts = report.facts.as_ref().unwrap();
    assert_eq!(facts.server.flavour, "mariadb");
    assert!(facts.global("wait_timeout").is_some());
    assert!(
        report.error_log.is_some(),
        "the harness log is on this host: {:?}",
        report.notes
    );
}

#[tokio::test]
async fn kill_is_connection_killed() {
    let server = Server::start_default().await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let id = conn.id();
    server.kill_connection(id).await.unwrap();
    assert!(conn.query_drop("SELECT 1").await.is_err());
    let report = diagnose(&target(&server), &quick()).await;
    assert_eq!(
        first(&report),
        Cause::ConnectionKilled,
        "{}",
        report.render_text(false)
    );
    assert!(sources(&report, Cause::ConnectionKilled).contains(&"error_log"));
}
