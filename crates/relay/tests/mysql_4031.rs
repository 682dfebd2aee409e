//! The 4031 inactivity error: the exact bytes MySQL 8.0.24+ sends, then end of stream.

use std::time::{Duration, Instant};

use goneaway_relay::{mysql, Fault, Relay, RelayConfig};

use crate::util::*;

const MESSAGE: &str = "The client was disconnected by the server because of inactivity. \
                       See wait_timeout and interactive_timeout for configuring this behavior.";

/// The packet spelled out by hand, independently of the crate's builder.
fn expected_packet() -> Vec<u8> {
    let payload_len = 1 + 2 + 1 + 5 + MESSAGE.len();
    assert!(payload_len < 256);
    let mut packet = vec![payload_len as u8, 0, 0, /* sequence id */ 0];
    packet.extend_from_slice(&[0xFF, 0xBF, 0x0F]); // ERR, 4031 little-endian
    packet.extend_from_slice(b"#HY000");
    packet.extend_from_slice(MESSAGE.as_bytes());
    packet
}

#[test]
fn the_packet_is_what_mysql_sends() {
    assert_eq!(mysql::interaction_timeout_packet(), expected_packet());
    assert_eq!(mysql::ER_CLIENT_INTERACTION_TIMEOUT, 4031);
    assert_eq!(mysql::INTERACTION_TIMEOUT_MESSAGE, MESSAGE);
}

#[tokio::test]
async fn inject_4031_all_sends_the_packet_then_closes() {
    let relay = echo_relay().await;
    let mut client = connect(&relay).await;
    roundtrip(&mut client, b"SELECT 1").await;
    assert_eq!(relay.inject_4031_all(), 1);
    let (got, end) = read_to_end_or_error(&mut client).await;
    assert_eq!(got, expected_packet());
    end.expect("a clean end of stream (FIN), not a reset");
    // The relay keeps reading until the client closes its side too.
    drop(client);
    eventually("the flow is gone", || relay.status().flow_count == 0).await;
}

#[tokio::test]
async fn idle_4031_hits_idle_flows_only() {
    let relay = echo_relay().await;
    let mut idle = connect(&relay).await;
    let mut active = connect(&relay).await;
    roundtrip(&mut idle, b"x").await;
    relay.set(Fault::Inject4031Idle(Duration::from_millis(300)));
    let busy_until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < busy_until {
        roundtrip(&mut active, b"ping").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (got, end) = read_to_end_or_error(&mut idle).await;
    assert_eq!(got, expected_packet());
    end.expect("clean end of stream");
    roundtrip(&mut active, b"still fine").await;
}

#[tokio::test]
async fn the_sequence_id_can_be_changed() {
    let upstream = echo_upstream().await;
    let config = RelayConfig::new("127.0.0.1:0", upstream).sequence_id_4031(1);
    let relay = Relay::start(config).await.expect("start");
    let mut client = connect(&relay).await;
    roundtrip(&mut client, b"x").await;
    assert_eq!(relay.inject_4031_all(), 1);
    let (got, _end) = read_to_end_or_error(&mut client).await;
    let mut expected = expected_packet();
    expected[3] = 1;
    assert_eq!(got, expected);
}
