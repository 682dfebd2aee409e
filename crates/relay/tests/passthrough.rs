//! Bytes go through unchanged, half-closes pass, and flows are counted.

use std::io::ErrorKind;
use std::time::Duration;

use goneaway_relay::{FlowState, Relay, RelayConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::*;

#[tokio::test]
async fn large_transfer_is_byte_identical() {
    let relay = echo_relay().await;
    let client = connect(&relay).await;
    let data = pattern(4 * 1024 * 1024);
    let (mut rd, mut wr) = client.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move { wr.write_all(&sent).await.map(|()| wr) });
    let mut back = vec![0u8; data.len()];
    bounded(rd.read_exact(&mut back)).await.expect("read back");
    assert!(back == data, "the echoed bytes differ from the sent ones");
    let _wr = bounded(writer).await.expect("join").expect("write");

    let flows = relay.status().flows;
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].bytes_to_server, data.len() as u64);
    assert_eq!(flows[0].bytes_to_client, data.len() as u64);
    assert_eq!(flows[0].state, FlowState::Forwarding);
}

#[tokio::test]
async fn half_close_reaches_the_server_and_its_close_comes_back() {
    let relay = echo_relay().await;
    let mut client = connect(&relay).await;
    bounded(client.write_all(b"last words"))
        .await
        .expect("write");
    // The echo server closes only after it sees our FIN: an end of stream here proves
    // the FIN went through the relay and the server's came back.
    bounded(client.shutdown()).await.expect("shutdown");
    let (got, end) = read_to_end_or_error(&mut client).await;
    assert_eq!(got, b"last words");
    end.expect("clean end of stream");
    eventually("the flow is gone", || relay.status().flow_count == 0).await;
}

#[tokio::test]
async fn status_counts_flows_and_idle_time() {
    let relay = echo_relay().await;
    let mut a = connect(&relay).await;
    let mut b = connect(&relay).await;
    roundtrip(&mut a, b"a").await;
    roundtrip(&mut b, b"bb").await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let status = relay.status();
    assert_eq!(status.flow_count, 2);
    assert_eq!(status.accepted_total, 2);
    let flow_b = flow_of(&relay, &b).expect("b listed");
    assert_eq!(flow_b.bytes_to_client, 2);
    assert!(flow_b.idle_ms >= 50, "idle {} ms", flow_b.idle_ms);
    drop(a);
    eventually("one flow left", || relay.status().flow_count == 1).await;
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    // A port that was just free: nothing listens there.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        probe.local_addr().expect("addr")
    };
    let relay = Relay::start(RelayConfig::new("127.0.0.1:0", port))
        .await
        .expect("start");
    let mut client = connect(&relay).await;
    let (got, _end) = read_to_end_or_error(&mut client).await;
    assert!(got.is_empty());
}

#[tokio::test]
async fn shutdown_closes_flows_and_stops_accepting() {
    let relay = echo_relay().await;
    let addr = relay.local_addr();
    let mut client = connect(&relay).await;
    roundtrip(&mut client, b"hi").await;
    bounded(relay.shutdown()).await;
    let (got, end) = read_to_end_or_error(&mut client).await;
    assert!(got.is_empty());
    end.expect("a clean close (FIN), not a reset");
    let refused = TcpStream::connect(addr)
        .await
        .expect_err("nobody listens any more");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_relay() {
    let relay = echo_relay().await;
    let addr = relay.local_addr();
    let second = relay.clone();
    drop(relay);
    // Another handle keeps it running.
    let mut client = connect(&second).await;
    roundtrip(&mut client, b"still here").await;
    drop(second);
    let (_got, end) = read_to_end_or_error(&mut client).await;
    end.expect("a clean close");
    let deadline = tokio::time::Instant::now() + STEP;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay still accepting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
