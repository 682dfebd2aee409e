//! `goneaway chaos` relaying to a real server, with faults switched while it runs.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use goneaway_harness::Server;

use crate::util::{free_port, goneaway, run, stderr, stdout};

/// The relay process; killed when the test ends, pass or fail.
struct Chaos(Child);

impl Drop for Chaos {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_control(control: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if goneaway_relay::control::send(control, "status")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("goneaway chaos did not start its control interface on {control}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_a_real_server_and_resets_on_command() {
    let server = Server::start_default().await.unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let control = format!("127.0.0.1:{}", free_port());
    let _chaos = Chaos(
        goneaway()
            .args([
                "chaos",
                "--upstream",
                &server.addr().to_string(),
                "--listen",
                &listen,
                "--control",
                &control,
                "--fault",
                "latency 1ms",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_control(&control).await;

    let url = server.url_for(listen.parse().unwrap());
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    let answer: Option<i64> = conn.query_first("SELECT 40 + 2").await.unwrap();
    assert_eq!(answer, Some(42));

    let status = run(&["chaos", "ctl", "--control", &control, "status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(status["flow_count"], 1, "{status:#}");

    let reset = run(&["chaos", "ctl", "--control", &control, "reset"]);
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    let error = conn.query_drop("SELECT 1").await.unwrap_err();
    let diagnosis = goneaway_core::classify_mysql_async(&error);
    assert!(diagnosis.is_disconnect(), "{error}: {diagnosis:?}");
    assert!(
        diagnosis.mentions(goneaway_core::Cause::NetworkDrop),
        "{error}"
    );
}

#[test]
fn a_bad_fault_is_a_clear_error() {
    let output = run(&[
        "chaos",
        "--upstream",
        "127.0.0.1:1",
        "--fault",
        "explode 5s",
    ]);
    // A usage error: its own exit code, apart from every subcommand's own meanings.
    assert_eq!(output.status.code(), Some(64));
    assert!(stderr(&output).contains("explode"), "{}", stderr(&output));
}

#[test]
fn ctl_without_a_relay_fails_clearly() {
    let port = free_port();
    let output = run(&[
        "chaos",
        "ctl",
        "--control",
        &format!("127.0.0.1:{port}"),
        "status",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!stderr(&output).is_empty());
}
