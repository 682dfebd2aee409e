//! Helpers: an echo upstream, a relay in front of it, and bounded I/O.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use goneaway_relay::{FlowStatus, Relay, RelayConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bound on any single step of a test: far above what loopback needs, far below
/// "the test hangs".
pub const STEP: Duration = Duration::from_secs(3);

/// Awaits `future`, failing the test if it takes longer than [`STEP`].
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .expect("step did not finish within the test bound")
}

/// An upstream that echoes every byte back and closes when the client does.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = socket.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    addr
}

/// A relay in front of a fresh echo upstream.
pub async fn echo_relay() -> Relay {
    let upstream = echo_upstream().await;
    Relay::start(RelayConfig::new("127.0.0.1:0", upstream))
        .await
        .expect("start relay")
}

/// A client connected through `relay`.
pub async fn connect(relay: &Relay) -> TcpStream {
    let stream = bounded(TcpStream::connect(relay.local_addr()))
        .await
        .expect("connect to relay");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Writes `message` and reads back as many bytes; asserts they are identical.
pub async fn roundtrip(stream: &mut TcpStream, message: &[u8]) {
    bounded(stream.write_all(message)).await.expect("write");
    let mut back = vec![0u8; message.len()];
    bounded(stream.read_exact(&mut back))
        .await
        .expect("read echo");
    assert_eq!(back, message);
}

/// Reads until end of stream or an error; returns the bytes and how it ended.
pub async fn read_to_end_or_error(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match bounded(stream.read(&mut buf)).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(error) => return (got, Err(error)),
        }
    }
}

/// A recognisable byte pattern of length `n`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The flow whose client is `stream`, if the relay lists it.
pub fn flow_of(relay: &Relay, stream: &TcpStream) -> Option<FlowStatus> {
    let me = stream.local_addr().expect("local addr");
    relay.status().flows.into_iter().find(|f| f.client == me)
}

/// Polls `condition` every 10 ms until it holds, failing after [`STEP`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that a read on `stream` is still waiting after `wait`: the flow hangs.
pub async fn assert_hangs(stream: &mut TcpStream, wait: Duration) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(wait, stream.read(&mut buf)).await;
    assert!(read.is_err(), "expected a hang, got {read:?}");
}
