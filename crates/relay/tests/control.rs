//! The control protocol, its client, and the loopback rule.

use std::time::Duration;

use goneaway_relay::control::{self, Command};
use goneaway_relay::{Error, Fault, FaultKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::util::*;

#[tokio::test]
async fn commands_round_trip() {
    let relay = echo_relay().await;
    let ctl = control::serve(&relay, "127.0.0.1:0").await.expect("serve");
    let addr = ctl.local_addr();
    let send = |line: &'static str| bounded(control::send(addr, line));

    assert_eq!(
        send("set latency 10ms").await.expect("set"),
        "set latency 10ms"
    );
    assert_eq!(
        send("SET blackhole-idle 2m").await.expect("set"),
        "set blackhole-idle 2m"
    );
    assert_eq!(
        relay.faults(),
        [
            Fault::BlackholeIdle(Duration::from_secs(120)),
            Fault::Latency(Duration::from_millis(10))
        ]
    );

    let mut client = connect(&relay).await;
    roundtrip(&mut client, b"abc").await;
    let status: serde_json::Value =
        serde_json::from_str(&send("status").await.expect("status")).expect("status is JSON");
    assert_eq!(status["listen"], relay.local_addr().to_string());
    assert_eq!(status["flow_count"], 1);
    assert_eq!(
        status["faults"],
        serde_json::json!(["blackhole-idle 2m", "latency 10ms"])
    );
    assert_eq!(status["flows"][0]["bytes_to_client"], 3);
    assert_eq!(status["flows"][0]["state"], "forwarding");

    assert_eq!(
        send("remove latency").await.expect("remove"),
        "removed latency"
    );
    assert_eq!(
        send("remove latency").await.expect("remove"),
        "latency was not set"
    );
    assert_eq!(send("clear").await.expect("clear"), "cleared");
    assert!(relay.faults().is_empty());
    assert_eq!(send("4031").await.expect("4031"), "sent 4031 to 1 flows");
    assert_eq!(send("reset").await.expect("reset"), "reset 0 flows");
    assert!(send("help").await.expect("help").contains("set <fault>"));

    let error = send("set bogus 1s").await.expect_err("unknown fault");
    assert!(error.is_rejected(), "{error}");
    assert!(
        error.to_string().contains("unknown fault `bogus`"),
        "{error}"
    );
    let error = send("frobnicate").await.expect_err("unknown command");
    assert!(
        error.to_string().contains("unknown command `frobnicate`"),
        "{error}"
    );
    let error = send("reset now").await.expect_err("no argument");
    assert!(error.to_string().contains("takes no argument"), "{error}");
}

#[tokio::test]
async fn one_connection_many_commands_like_nc() {
    let relay = echo_relay().await;
    let ctl = control::serve(&relay, "127.0.0.1:0").await.expect("serve");
    let stream = bounded(TcpStream::connect(ctl.local_addr()))
        .await
        .expect("connect");
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    // Blank lines are ignored; every command gets one line.
    bounded(wr.write_all(b"set refuse\n\n  \r\nremove refuse\r\nquit\n"))
        .await
        .expect("write");
    let mut answers = Vec::new();
    while let Some(line) = bounded(lines.next_line()).await.expect("read") {
        answers.push(line);
    }
    assert_eq!(answers, ["OK set refuse", "OK removed refuse", "OK bye"]);
}

#[tokio::test]
async fn an_overlong_line_is_refused_and_closed() {
    let relay = echo_relay().await;
    let ctl = control::serve(&relay, "127.0.0.1:0").await.expect("serve");
    let stream = bounded(TcpStream::connect(ctl.local_addr()))
        .await
        .expect("connect");
    let (rd, mut wr) = stream.into_split();
    let _ = bounded(wr.write_all(&vec![b'a'; 10_000])).await;
    let mut lines = BufReader::new(rd).lines();
    let line = bounded(lines.next_line())
        .await
        .expect("read")
        .expect("an answer");
    assert!(line.starts_with("ERR command longer than"), "{line}");
    assert_eq!(bounded(lines.next_line()).await.ok().flatten(), None);
}

#[tokio::test]
async fn refuses_a_non_loopback_address() {
    let relay = echo_relay().await;
    let error = control::serve(&relay, "0.0.0.0:0")
        .await
        .expect_err("not loopback");
    assert!(matches!(error, Error::NonLoopbackControl { .. }), "{error}");
    assert!(error.to_string().contains("allow_remote"), "{error}");
}

#[tokio::test]
async fn stops_with_the_relay() {
    let relay = echo_relay().await;
    let ctl = control::serve(&relay, "127.0.0.1:0").await.expect("serve");
    let addr = ctl.local_addr();
    bounded(relay.shutdown()).await;
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match control::send(addr, "status").await {
            Err(error) if error.is_unreachable() => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "still answering: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn send_reports_an_absent_relay() {
    let addr = {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        probe.local_addr().expect("addr")
    };
    let error = bounded(control::send(addr, "status"))
        .await
        .expect_err("nobody there");
    assert!(error.is_unreachable(), "{error}");
}

#[test]
fn commands_parse() {
    let check = |line: &str, expected: Command| {
        assert_eq!(line.parse::<Command>().expect(line), expected, "{line}");
    };
    check("status", Command::Status);
    check(
        "  set  4031-idle 5s ",
        Command::Set(Fault::Inject4031Idle(Duration::from_secs(5))),
    );
    check(
        "remove blackhole-new",
        Command::Remove(FaultKind::BlackholeNew),
    );
    check("clear", Command::Clear);
    check("reset", Command::Reset);
    check("4031", Command::Inject4031);
    check("blackhole", Command::Blackhole);
    check("help", Command::Help);
    let error = "remove".parse::<Command>().expect_err("needs a kind");
    assert!(error.is_parse());
    assert!(
        error.to_string().contains("blackhole-idle, reset-after"),
        "{error}"
    );
}
