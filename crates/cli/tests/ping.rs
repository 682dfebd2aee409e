//! `goneaway ping` end to end: each outcome's exit code, JSON, and --wait across a start.

use std::sync::Arc;
use std::time::Duration;

use goneaway_harness::Server;

use crate::doctor::isolated;

fn ping(home: &std::path::Path, env_url: &str, args: &[&str]) -> std::process::Output {
    isolated(home)
        .env("MYSQL_URL", env_url)
        .arg("ping")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_exit_codes_and_json() {
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = server.url();

    let out = ping(
        home.path(),
        &url,
        &["--format", "json", "--query", "SELECT 6 * 7"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", crate::util::stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "up");
    assert_eq!(v["query_result"], "42");
    assert!(!crate::util::stdout(&out).contains(goneaway_harness::APP_PASSWORD));

    let wrong = url.replace(goneaway_harness::APP_PASSWORD, "wrong");
    let out = ping(home.path(), &wrong, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "auth");
    assert_eq!(v["cause"], "access_denied");

    server.stop().await.unwrap();
    let out = ping(home.path(), &url, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", crate::util::stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_wait_rides_out_a_restart() {
    let server = Arc::new(Server::start_default().await.unwrap());
    let home = tempfile::tempdir().unwrap();
    server.stop().await.unwrap();
    let starter = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            server.start().await.unwrap();
        })
    };
    let url = server.url();
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        ping(&home_path, &url, &["--wait", "30s", "--format", "json"])
    })
    .await
    .unwrap();
    starter.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", crate::util::stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["attempts"].as_u64().unwrap() > 1);
    // Progress is for terminals only: a pipe gets no spinner.
    assert!(
        !crate::util::stderr(&out).contains("waiting for the server"),
        "{}",
        crate::util::stderr(&out)
    );
}

/// Regression: mysql_async prints its I/O error's source inside its own message, and the
/// chain was printed layer by layer on top: "Input/output error: Input/output error:
/// Connection refused".
#[test]
fn ping_to_a_closed_port_says_connection_refused_once() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("mysql://app:secret@127.0.0.1:{}/", crate::util::free_port());
    let out = ping(home.path(), &url, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", crate::util::stdout(&out));
    let text = crate::util::stdout(&out);
    assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    assert_eq!(text.matches("Input/output error").count(), 1, "{text}");

    let out = ping(home.path(), &url, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = v["error"].as_str().unwrap();
    assert_eq!(error.matches("Connection refused").count(), 1, "{error}");
    assert_eq!(v["status"], "refused");
}
