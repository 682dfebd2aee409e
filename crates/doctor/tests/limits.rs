//! Connection limits staged for real: a full server (1040); a blocked host (1129) cannot be
//! staged over loopback.

use std::time::Duration;

use goneaway_connect::Target;
use goneaway_core::Cause;
use goneaway_doctor::{diagnose, Options, Report};
use goneaway_harness::Server;
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;

use crate::quick;

/// A monitoring-style account without SUPER (or CONNECTION ADMIN): it gets no extra
/// connection slot when the server is full.
async fn limited_user(server: &Server) -> Target {
    server
        .admin("CREATE USER 'limited'@'%' IDENTIFIED BY 'pw'")
        .await
        .unwrap();
    server
        .admin("GRANT SELECT, PROCESS ON *.* TO 'limited'@'%'")
        .await
        .unwrap();
    Target::from_url(&format!(
        "mysql://limited:pw@127.0.0.1:{}/?prefer_socket=false",
        server.port()
    ))
    .unwrap()
}

fn evidence(report: &Report, cause: Cause) -> Vec<String> {
    report
        .findings
        .iter()
        .find(|f| f.cause == cause)
        .map(|f| {
            f.evidence
                .iter()
                .filter(|e| e.weight > 0.0)
                .map(|e| format!("{}: {}", e.source, e.detail))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn full_server_is_too_many_connections() {
    let server = Server::builder()
        // MariaDB's smallest max_connections.
        .var("max_connections", 10)
        .start()
        .await
        .unwrap();
    let limited = limited_user(&server).await;
    // The application holds every slot.
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
        c.query_drop("SELECT 1").await.unwrap();
        held.push(c);
    }

    // The doctor as the limited account cannot get in: the refusal is the diagnosis.
    let report = diagnose(&limited, &quick()).await;
    let text = report.render_text(false);
    assert_eq!(report.exit_code, 2, "{text}");
    assert_eq!(
        report.findings[0].cause,
        Cause::TooManyConnections,
        "{text}"
    );
    let failure = report.connection_error.as_ref().unwrap();
    assert_eq!(failure.code, Some(1040), "{failure:?}");
    let app_error = failure.message.clone();

    // An administrator gets the extra slot MariaDB keeps for SUPER: with the application's
    // 1040, the server's own counters back it up.
    let root = Target::from_url(&server.root_url()).unwrap();
    let report = diagnose(
        &root,
        &Options {
            app_text: vec![app_error],
            ..quick()
        },
    )
    .await;
    let text = report.render_text(false);
    assert_eq!(report.exit_code, 1, "{text}");
    assert_eq!(
        report.findings[0].cause,
        Cause::TooManyConnections,
        "{text}"
    );
    let ev = evidence(&report, Cause::TooManyConnections).join("\n");
    assert!(
        ev.contains("Max_used_connections = 11 reached max_connections = 10")
            || ev.contains("reached max_connections = 10"),
        "{ev}"
    );
    // Connection_errors_max_connections stays 0 here: MariaDB refuses an account in the
    // slot kept for SUPER after authentication, which that counter does not count.
    assert!(ev.contains("application: "), "{ev}");
    assert!(
        report.recommendations.my_cnf.contains("max_connections"),
        "{}",
        report.recommendations.my_cnf
    );
    drop(held);
}

/// Opens a TCP connection and closes it in the middle of the handshake: one connect error
/// for this host.
async fn botched_handshake(addr: std::net::SocketAddr) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Read the server's greeting, answer with garbage, and go.
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        use tokio::io::AsyncReadExt;
        let _ = s.read(&mut buf).await;
    })
    .await;
    let _ = s.write_all(b"\x01\x00\x00\x01\xff").await;
    let _ = s.shutdown().await;
}

/// Regression: MariaDB never blocks a loopback client (the host cache skips 127.0.0.1 and
/// ::1, whatever `skip_name_resolve` says), so host_blocked cannot be staged on this machine;
/// the doctor must not claim it either.
#[tokio::test]
async fn loopback_is_never_host_blocked() {
    let server = Server::builder()
        .var("max_connect_errors", 1)
        .var("skip_name_resolve", "OFF")
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        botched_handshake(server.addr()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = diagnose(&crate::target(&server), &quick()).await;
    let text = report.render_text(false);
    assert_ne!(report.exit_code, 2, "{text}");
    assert_eq!(
        report.facts.as_ref().unwrap().counter("Aborted_connects"),
        Some(3)
    );
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.cause != Cause::HostBlocked),
        "{text}"
    );
}
