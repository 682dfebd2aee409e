//! Each fault does what it says, and only to the flows it should.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use goneaway_relay::{Fault, FaultKind, FlowState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

#[tokio::test]
async fn reset_all_gives_the_client_connection_reset() {
    let relay = echo_relay().await;
    let mut client = connect(&relay).await;
    roundtrip(&mut client, b"before").await;
    assert_eq!(relay.reset_all(), 1);
    let mut buf = [0u8; 16];
    let error = bounded(client.read(&mut buf))
        .await
        .expect_err("a reset, not data or EOF");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    eventually("the flow is gone", || relay.status().flow_count == 0).await;
    // The relay itself carries on.
    let mut next = connect(&relay).await;
    roundtrip(&mut next, b"after").await;
}

#[tokio::test]
async fn blackhole_all_hangs_busy_flows_and_spares_new_ones() {
    let relay = echo_relay().await;
    let mut busy = connect(&relay).await;
    roundtrip(&mut busy, b"before").await;
    assert_eq!(relay.blackhole_all(), 1);
    eventually("the flow is blackholed", || {
        relay
            .status()
            .flows
            .iter()
            .all(|f| f.state == FlowState::Blackholed)
    })
    .await;
    // A request in flight gets no answer and no end of stream.
    bounded(busy.write_all(b"lost")).await.expect("write");
    assert_hangs(&mut busy, Duration::from_millis(300)).await;
    // A new flow goes through.
    let mut next = connect(&relay).await;
    roundtrip(&mut next, b"after").await;
}

#[tokio::test]
async fn reset_after_bytes_counts_from_arming_and_cuts_exactly() {
    const LIMIT: usize = 5000;
    let relay = echo_relay().await;
    let mut client = connect(&relay).await;
    // 1000 server→client bytes before the fault: they must not count.
    roundtrip(&mut client, &[7u8; 1000]).await;
    relay.set(Fault::ResetAfterBytes(LIMIT as u64));

    let data = pattern(64 * 1024);
    let (mut rd, mut wr) = client.into_split();
    let sent = data.clone();
    // The write may itself be cut by the reset: that is fine.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&sent).await;
        wr
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match bounded(rd.read(&mut buf)).await {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(error) => break Some(error),
        }
    };
    assert_eq!(got.len(), LIMIT, "the client must get exactly the limit");
    assert!(got == data[..LIMIT], "and exactly the first bytes");
    let error = end.expect("a reset, not a clean end of stream");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    drop(bounded(writer).await);

    // Still armed: a new flow counts from its first byte.
    let mut next = connect(&relay).await;
    bounded(next.write_all(&pattern(LIMIT + 10)))
        .await
        .expect("write");
    let mut got = vec![0u8; LIMIT];
    bounded(next.read_exact(&mut got))
        .await
        .expect("the first LIMIT bytes");
    let error = bounded(next.read(&mut buf))
        .await
        .expect_err("then a reset");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    // Removed: flows are left alone.
    assert!(relay.remove(FaultKind::ResetAfterBytes));
    let mut free = connect(&relay).await;
    roundtrip(&mut free, &pattern(3 * LIMIT)).await;
}

#[tokio::test]
async fn blackhole_idle_hangs_idle_flows_while_active_ones_work() {
    let relay = echo_relay().await;
    let mut idle = connect(&relay).await;
    let mut active = connect(&relay).await;
    roundtrip(&mut idle, b"hello").await;
    roundtrip(&mut active, b"hello").await;
    relay.set(Fault::BlackholeIdle(Duration::from_millis(400)));

    // Keep one flow busy well past the threshold.
    let busy_until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < busy_until {
        roundtrip(&mut active, b"ping").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(
        flow_of(&relay, &idle).expect("idle listed").state,
        FlowState::Blackholed
    );
    assert_eq!(
        flow_of(&relay, &active).expect("active listed").state,
        FlowState::Forwarding
    );

    // The idle client's query goes nowhere and nothing comes back, not even a close.
    bounded(idle.write_all(b"SELECT 1"))
        .await
        .expect("the write itself succeeds");
    // Wait in short slices, keeping the active flow busy so it stays under the threshold.
    for _ in 0..6 {
        assert_hangs(&mut idle, Duration::from_millis(50)).await;
        roundtrip(&mut active, b"still fine").await;
    }

    // Clearing the fault does not bring a forgotten flow back.
    relay.clear();
    assert_hangs(&mut idle, Duration::from_millis(100)).await;
    let swallowed = flow_of(&relay, &idle).expect("idle listed").bytes_swallowed;
    assert_eq!(swallowed, b"SELECT 1".len() as u64);

    // When the client gives up, the server's side stays open, as behind a gateway that
    // forgot the flow: the server only finds out through its own timeout.
    let idle_addr = idle.local_addr().expect("addr");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        relay.status().flows.iter().any(|f| f.client == idle_addr),
        "the server's side of a blackholed flow is held open"
    );
    // A reset lets go of it.
    relay.reset_all();
    eventually("the blackholed flow is freed", || {
        relay.status().flows.iter().all(|f| f.client != idle_addr)
    })
    .await;
}

#[tokio::test]
async fn refuse_resets_new_connections_only() {
    let relay = echo_relay().await;
    let mut old = connect(&relay).await;
    roundtrip(&mut old, b"old").await;
    relay.set("refuse".parse().expect("parse"));

    let mut new = bounded(TcpStream::connect(relay.local_addr()))
        .await
        .expect("the handshake itself completes");
    let mut buf = [0u8; 8];
    let error = bounded(new.read(&mut buf)).await.expect_err("then a reset");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    roundtrip(&mut old, b"old still works").await;
    assert_eq!(relay.status().refused_total, 1);

    assert!(relay.remove(FaultKind::RefuseNew));
    let mut later = connect(&relay).await;
    roundtrip(&mut later, b"welcome back").await;
}

#[tokio::test]
async fn blackhole_new_hangs_new_connections_only() {
    let relay = echo_relay().await;
    let mut old = connect(&relay).await;
    roundtrip(&mut old, b"old").await;
    relay.set(Fault::BlackholeNew);

    let mut new = connect(&relay).await;
    bounded(new.write_all(b"hello?")).await.expect("write");
    assert_hangs(&mut new, Duration::from_millis(300)).await;
    roundtrip(&mut old, b"old still works").await;
    let flow = flow_of(&relay, &new).expect("listed");
    assert_eq!(flow.state, FlowState::Blackholed);
    assert_eq!(flow.bytes_to_server, 0);

    // A reset still reaches a blackholed connection.
    assert_eq!(relay.reset_all(), 2);
    let error = bounded(new.read(&mut [0u8; 8])).await.expect_err("reset");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn latency_delays_each_direction() {
    const DELAY: Duration = Duration::from_millis(100);
    let relay = echo_relay().await;
    let mut client = connect(&relay).await;
    relay.set(Fault::Latency(DELAY));
    let started = Instant::now();
    roundtrip(&mut client, b"ping").await;
    let took = started.elapsed();
    assert!(
        took >= 2 * DELAY,
        "a round trip took {took:?}, expected at least {:?}",
        2 * DELAY
    );

    relay.remove(FaultKind::Latency);
    let started = Instant::now();
    roundtrip(&mut client, b"ping").await;
    assert!(
        started.elapsed() < DELAY,
        "latency still applied after removal"
    );
}

#[tokio::test]
async fn latency_keeps_throughput() {
    // A delay line, not a throttle: 1 MiB in 16 KiB chunks at 50 ms each would take
    // over 3 s if every chunk waited its turn.
    let relay = echo_relay().await;
    relay.set(Fault::Latency(Duration::from_millis(50)));
    let client = connect(&relay).await;
    let data = pattern(1024 * 1024);
    let (mut rd, mut wr) = client.into_split();
    let sent = data.clone();
    let started = Instant::now();
    let writer = tokio::spawn(async move { wr.write_all(&sent).await.map(|()| wr) });
    let mut back = vec![0u8; data.len()];
    bounded(rd.read_exact(&mut back)).await.expect("read back");
    assert!(back == data);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let _wr = bounded(writer).await.expect("join").expect("write");
}
