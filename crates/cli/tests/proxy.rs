//! `goneaway proxy` end to end: the real binary in front of a real server, a session idle
//! past the server's wait_timeout, /metrics, and a clean exit on SIGTERM.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use goneaway_harness::Server;
use mysql_async::prelude::*;

/// The password clients log in to the proxy with; it must never be printed.
const CLIENT_PASSWORD: &str = "proxy-client-secret-7f3a";

/// Kills the proxy if the test ends before it did.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_binary_keeps_an_idle_session_and_exits_cleanly_on_sigterm() {
    let server = Server::builder()
        .var("wait_timeout", 2)
        .start()
        .await
        .expect("a harness server");
    let (port, metrics_port) = (crate::util::free_port(), crate::util::free_port());
    let child = crate::util::goneaway()
        .args([
            "--log",
            "info",
            "proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--backend",
            &server.url(),
            "--user",
            "app",
            "--password-env",
            "GONEAWAY_TEST_PROXY_PW",
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("GONEAWAY_TEST_PROXY_PW", CLIENT_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the goneaway binary runs");
    let mut guard = Guard(Some(child));

    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some(CLIENT_PASSWORD))
        .db_name(Some(goneaway_harness::DATABASE))
        .prefer_socket(false);
    // The proxy is ready when a login succeeds (bounded: 20 s).
    let started = Instant::now();
    let mut conn = loop {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                let exited = guard.0.as_mut().unwrap().try_wait().unwrap();
                assert!(exited.is_none(), "the proxy exited: {exited:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the proxy never accepted a login: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    // Idle past the server's 2 s wait_timeout: the proxy replaced the backend unseen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answer: Option<i64> = conn
        .query_first("SELECT 40 + 2")
        .await
        .expect("the idle session still works through the proxy");
    assert_eq!(answer, Some(42));

    let metrics = crate::util::http_get(&format!("127.0.0.1:{}", metrics_port), "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("goneaway_proxy_logins_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("goneaway_proxy_client_connections 1"),
        "{metrics}"
    );
    assert!(
        crate::util::http_get(&format!("127.0.0.1:{}", metrics_port), "/health").ends_with("ok\n")
    );
    drop(conn);

    // SIGTERM: a graceful shutdown, exit code 0, well within a bound.
    let mut child = guard.0.take().unwrap();
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid this test spawned and still owns (not yet reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(15) {
            guard.0 = Some(child);
            panic!("the proxy did not exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(stderr.contains("listening on"), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    for secret in [CLIENT_PASSWORD, goneaway_harness::APP_PASSWORD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a password was printed:\n{stdout}\n{stderr}"
        );
    }
}
