//! `goneaway doctor` end to end: the real binary against real servers.

use std::process::{Command, Output};
use std::time::Duration;

use goneaway_harness::Server;
use mysql_async::prelude::Queryable;

/// The binary with a clean environment: no inherited URLs, no ~/.my.cnf.
pub fn isolated(home: &std::path::Path) -> Command {
    let mut c = crate::util::goneaway();
    c.env("HOME", home)
        .env_remove("MYSQL_URL")
        .env_remove("DATABASE_URL")
        .env_remove("MYSQL_PWD");
    c
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            crate::util::stdout(output),
            crate::util::stderr(output)
        )
    })
}

#[tokio::test]
async fn doctor_finds_idle_timeout_in_all_three_formats() {
    let server = Server::builder()
        .var("wait_timeout", 2)
        .start()
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    conn.query_drop("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(conn.query_drop("SELECT 1").await.is_err());
    let home = tempfile::tempdir().unwrap();
    let url = server.url();

    let out = isolated(home.path())
        .args(["doctor", "--url", &url, "--sample", "0", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let v = json(&out);
    assert_eq!(v["findings"][0]["cause"], "idle_timeout");
    assert!(v["findings"][0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["source"] == "error_log"));
    assert!(!crate::util::stdout(&out).contains(goneaway_harness::APP_PASSWORD));

    let out = isolated(home.path())
        .args(["doctor", "--url", &url, "--sample", "1s"])
        .output()
        .unwrap();
    let text = crate::util::stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("1. idle connection closed by the server"),
        "{text}"
    );
    assert!(text.contains("wait_timeout = 600"), "{text}");
    assert!(text.contains("pool_recycle="), "{text}");
    assert!(!text.contains(goneaway_harness::APP_PASSWORD));

    let out = isolated(home.path())
        .args([
            "doctor", "--url", &url, "--sample", "0", "--format", "markdown",
        ])
        .output()
        .unwrap();
    let md = crate::util::stdout(&out);
    assert!(md.starts_with("# goneaway doctor report"));
    assert!(
        md.contains("## Server (for a bug report)") && md.contains("```ini"),
        "{md}"
    );
}

#[tokio::test]
async fn doctor_with_mysql_flags_and_defaults_file() {
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let cnf = home.path().join("client.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nuser = {}\npassword = \"{}\"\n",
            goneaway_harness::APP_USER,
            goneaway_harness::APP_PASSWORD
        ),
    )
    .unwrap();
    let port = server.port().to_string();
    let out = isolated(home.path())
        .args(["doctor", "-h", "127.0.0.1", "-P", &port, "--defaults-file"])
        .arg(&cnf)
        .args(["--sample", "0", "--format", "json"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["status"], "healthy");
    assert_eq!(
        v["target"],
        format!("mysql://goneaway:****@127.0.0.1:{port}")
    );
}

#[tokio::test]
async fn doctor_diagnoses_a_failed_connection_with_exit_2() {
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let port = server.port().to_string();
    let out = isolated(home.path())
        .args([
            "doctor",
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "goneaway",
            "-pnot-the-password",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["findings"][0]["cause"], "access_denied");
    assert!(!crate::util::stdout(&out).contains("not-the-password"));

    server.stop().await.unwrap();
    let out = isolated(home.path())
        .args(["doctor", "-h", "127.0.0.1", "-P", &port, "-u", "goneaway"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::util::stdout(&out).contains("[server_unreachable]"),
        "{}",
        crate::util::stdout(&out)
    );
}

#[test]
fn doctor_help_documents_options_and_exit_codes() {
    let out = crate::util::run(&["doctor", "--help"]);
    let help = crate::util::stdout(&out);
    for needle in [
        "--url",
        "-h, --host",
        "-P, --port",
        "-u, --user",
        "-p, --password",
        "-S, --socket",
        "--defaults-file",
        "--format",
        "--sample",
        "--error-log",
        "--since",
        "--kernel-log",
        "--error",
        "--app-log",
        "--app-timeout",
        "--pool-lifetime",
        "--probe-idle",
        "--probe-packet",
        "Exit codes",
        "could not diagnose",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[tokio::test]
async fn doctor_reads_a_kernel_log_from_stdin() {
    let server = Server::start_default().await.unwrap();
    let kernel = "2026-01-01T10:00:00+0000 db1 kernel: Out of memory: Killed process 4242 (mariadbd) total-vm:8000000kB, anon-rss:7000000kB\n";
    let out = crate::util::run_with_stdin(
        &[
            "doctor",
            "--url",
            &server.url(),
            "--sample",
            "0",
            "--kernel-log",
            "-",
            "--format",
            "json",
        ],
        kernel.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let v = json(&out);
    assert_eq!(v["findings"][0]["cause"], "out_of_memory");
    assert_eq!(v["kernel_log"][0]["line"], 1);
    // --since after the kill leaves nothing to report.
    let out = crate::util::run_with_stdin(
        &[
            "doctor",
            "--url",
            &server.url(),
            "--sample",
            "0",
            "--kernel-log",
            "-",
            "--since",
            "2026-06-01",
            "--format",
            "json",
        ],
        kernel.as_bytes(),
    );
    assert_eq!(json(&out)["kernel_log"].as_array().map(Vec::len), Some(0));
}
