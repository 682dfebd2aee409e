//! The watcher serves metrics and notices a restart.

use std::time::{Duration, Instant};

use goneaway_connect::Target;
use goneaway_harness::Server;
use goneaway_watch::{WatchConfig, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // One request per connection, as a scraper that does not keep connections alive.
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `/metrics` until `check` holds, for at most 20 s.
async fn until(addr: std::net::SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let m = get(addr, "/metrics").await;
        if check(&m) {
            return m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} never happened:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_and_notices_a_restart() {
    let server = Server::builder()
        .var("wait_timeout", 3)
        .start()
        .await
        .unwrap();
    let mut config = WatchConfig::new(vec![Target::from_url(&server.url()).unwrap()]);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.interval = Duration::from_millis(300);
    let watcher = Watcher::bind(config).await.unwrap();
    let addr = watcher.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(watcher.run(async {
        let _ = stopped.await;
    }));

    let m = until(addr, "first poll", |m| value(m, "goneaway_up") == Some(1.0)).await;
    assert!(m.starts_with("HTTP/1.1 200 OK"));
    assert!(
        m.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{m}"
    );
    assert_eq!(value(&m, "goneaway_wait_timeout_seconds"), Some(3.0));
    assert!(value(&m, "goneaway_connection_headroom").is_some());
    assert!(!m.contains(goneaway_harness::APP_PASSWORD));
    let health = get(addr, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200 OK") && health.contains("\r\n\r\nok\nup "),
        "{health}"
    );
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

    // Let Uptime grow past what a fresh start shows, then restart.
    until(addr, "uptime to grow", |m| {
        value(m, "goneaway_uptime_seconds").is_some_and(|u| u >= 2.0)
    })
    .await;
    server.stop().await.unwrap();
    until(addr, "down", |m| value(m, "goneaway_up") == Some(0.0)).await;
    server.start().await.unwrap();
    let m = until(addr, "restart detection", |m| {
        value(m, "goneaway_restarts_detected_total") == Some(1.0)
            && value(m, "goneaway_up") == Some(1.0)
    })
    .await;
    assert!(m.contains("goneaway_poll_errors_total{server="), "{m}");
    let _ = stop.send(());
    task.await.unwrap();
}
