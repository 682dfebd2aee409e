//! `goneaway watch` end to end: the real binary serves /metrics and logs a restart; on a
//! real Galera cluster and a real replication pair it exports the cluster's state.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use goneaway_harness::{Galera, Replication, Server};

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
    // The server's own counters, named as Prometheus counters; no cluster series for a
    // standalone server.
    let m = crate::util::http_get(&addr, "/metrics");
    for name in [
        "goneaway_aborted_clients_total",
        "goneaway_aborted_connects_total",
    ] {
        assert!(m.contains(&format!("# TYPE {name} counter\n")), "{m}");
        assert!(value(&m, name, server.port()).is_some(), "{name}: {m}");
    }
    assert!(!m.contains("goneaway_aborted_clients{"), "{m}");
    assert_eq!(value(&m, "goneaway_read_only", server.port()), Some(0.0));
    assert!(
        !m.lines()
            .any(|l| l.starts_with("goneaway_galera_") || l.starts_with("goneaway_replica_")),
        "{m}"
    );

    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("server restarted"), "{log}");
    assert!(!log.contains(goneaway_harness::APP_PASSWORD));
}

/// The value of `name` for the server on `port`, if exported.
fn value(metrics: &str, name: &str, port: u16) -> Option<f64> {
    let at = format!(":{port}/");
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{server=")) && l.contains(&at))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Starts `goneaway watch` on these servers (the first by --url, the others by --also),
/// polling every 300 ms; returns the child and the metrics address.
fn watch(servers: &[&Server], home: &std::path::Path) -> (Child, String) {
    let mut args = vec![
        "watch".to_string(),
        "--url".into(),
        servers[0].url(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--interval".into(),
        "300ms".into(),
    ];
    for s in &servers[1..] {
        args.push("--also".into());
        args.push(s.url());
    }
    let mut child = crate::doctor::isolated(home)
        .args(&args)
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
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exports_the_galera_cluster_state() {
    let cluster = Galera::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (n0, n2) = (cluster.node(0).port(), cluster.node(2).port());
    let (mut child, addr) = watch(&[cluster.node(0), cluster.node(2)], home.path());

    until(&addr, "the whole cluster", |m| {
        value(m, "goneaway_galera_cluster_size", n0) == Some(3.0)
            && value(m, "goneaway_galera_cluster_size", n2) == Some(3.0)
    })
    .await;
    let m = crate::util::http_get(&addr, "/metrics");
    for port in [n0, n2] {
        assert_eq!(
            value(&m, "goneaway_galera_cluster_address_nodes", port),
            Some(3.0),
            "{m}"
        );
        assert_eq!(value(&m, "goneaway_galera_primary", port), Some(1.0), "{m}");
        assert_eq!(value(&m, "goneaway_galera_ready", port), Some(1.0), "{m}");
        assert_eq!(
            value(&m, "goneaway_galera_local_state", port),
            Some(4.0),
            "{m}"
        );
        let paused = value(&m, "goneaway_galera_flow_control_paused_ratio", port);
        assert!(paused.is_some_and(|p| (0.0..=1.0).contains(&p)), "{m}");
        assert_eq!(value(&m, "goneaway_read_only", port), Some(0.0), "{m}");
    }
    assert!(
        m.contains("# TYPE goneaway_galera_cluster_size gauge\n"),
        "{m}"
    );
    // A Galera node replicates from nobody by the binary log: no replica series.
    assert!(
        !m.lines().any(|l| l.starts_with("goneaway_replica_")),
        "{m}"
    );

    // One node killed: the survivor counts two members of the three listed; the dead one
    // is down and exports no cluster state.
    cluster.kill(2).await.unwrap();
    until(&addr, "the survivor at size 2", |m| {
        value(m, "goneaway_galera_cluster_size", n0) == Some(2.0)
            && value(m, "goneaway_up", n2) == Some(0.0)
    })
    .await;
    let m = crate::util::http_get(&addr, "/metrics");
    assert_eq!(value(&m, "goneaway_galera_cluster_size", n2), None, "{m}");
    assert_eq!(
        value(&m, "goneaway_galera_cluster_address_nodes", n0),
        Some(3.0),
        "{m}"
    );
    assert_eq!(value(&m, "goneaway_galera_primary", n0), Some(1.0), "{m}");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&output.stderr).contains(goneaway_harness::APP_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exports_replica_lag_threads_and_read_only() {
    let set = Replication::start(1).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (p, r) = (set.primary().port(), set.replica().port());
    let (mut child, addr) = watch(&[set.primary(), set.replica()], home.path());

    until(&addr, "the replica running", |m| {
        value(m, "goneaway_replica_io_running", r) == Some(1.0)
            && value(m, "goneaway_replica_sql_running", r) == Some(1.0)
            && value(m, "goneaway_read_only", p).is_some()
    })
    .await;
    let m = crate::util::http_get(&addr, "/metrics");
    assert_eq!(
        value(&m, "goneaway_replica_lag_seconds", r),
        Some(0.0),
        "{m}"
    );
    assert_eq!(value(&m, "goneaway_read_only", r), Some(1.0), "{m}");
    assert_eq!(value(&m, "goneaway_read_only", p), Some(0.0), "{m}");
    // The primary replicates from nobody: no replica series for it; no Galera series at all.
    for name in [
        "goneaway_replica_lag_seconds",
        "goneaway_replica_io_running",
        "goneaway_replica_sql_running",
    ] {
        assert_eq!(value(&m, name, p), None, "{name}: {m}");
    }
    assert!(!m.lines().any(|l| l.starts_with("goneaway_galera_")), "{m}");

    // Lag behind a lock on the replica.
    let hold = set.hold_sql_thread(1).await.unwrap();
    until(&addr, "the lag", |m| {
        value(m, "goneaway_replica_lag_seconds", r).is_some_and(|l| l >= 1.0)
    })
    .await;
    hold.release().await.unwrap();
    set.wait_caught_up().await.unwrap();

    // The SQL thread broken: it stops, and the lag is NULL, so its series is absent.
    set.break_sql_thread(1).await.unwrap();
    until(&addr, "the SQL thread stopped", |m| {
        value(m, "goneaway_replica_sql_running", r) == Some(0.0)
            && value(m, "goneaway_replica_lag_seconds", r).is_none()
    })
    .await;
    let m = crate::util::http_get(&addr, "/metrics");
    assert_eq!(
        value(&m, "goneaway_replica_io_running", r),
        Some(1.0),
        "{m}"
    );
    child.kill().unwrap();
    let _ = child.wait();
}
