//! `goneaway watch` end to end: the real binary serves /metrics and logs a restart.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use goneaway_harness::Server;

async fn until(addr: &str, what: &str, check: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        let m = crate::util::http_get(addr, "/metrics");
        if check(&m) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} never happened:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_serves_metrics_and_logs_a_restart() {
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::doctor::isolated(home.path())
        .args([
            "watch",
            "--url",
            &server.url(),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "300ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();

    until(&addr, "up", |m| {
        m.contains("goneaway_up{server=") && m.contains("} 1\n")
    })
    .await;
    until(&addr, "uptime", |m| {
        m.lines().any(|l| {
            l.starts_with("goneaway_uptime_seconds{") && !l.ends_with(" 0") && !l.ends_with(" 1")
        })
    })
    .await;
    server.restart().await.unwrap();
    until(&addr, "restart", |m| {
        m.lines()
            .any(|l| l.starts_with("goneaway_restarts_detected_total{") && l.ends_with(" 1"))
    })
    .await;
    assert!(crate::util::http_get(&addr, "/healthz").contains("\r\n\r\nok\n"));

    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("server restarted"), "{log}");
    assert!(!log.contains(goneaway_harness::APP_PASSWORD));
}
