//! The opt-in probes against a real server, and through a relay that drops idle flows.

use std::time::Duration;

use goneaway_core::Cause;
use goneaway_doctor::{diagnose, Options};
use goneaway_harness::Server;
use goneaway_relay::{Fault, Relay, RelayConfig};

use crate::quick;

#[tokio::test]
async fn idle_probe_finds_a_middlebox_that_drops_idle_flows() {
    let server = Server::start_default().await.unwrap();
    let relay = Relay::start(RelayConfig::new("127.0.0.1:0", server.addr()))
        .await
        .unwrap();
    // A NAT gateway forgetting flows idle for a second; the server's wait_timeout is hours.
    relay.set(Fault::BlackholeIdle(Duration::from_secs(1)));
    let target = goneaway_connect::Target::from_url(&server.url_for(relay.local_addr())).unwrap();
    let opts = Options {
        probe_idle: Some(Duration::from_secs(3)),
        ..quick()
    };
    let report = diagnose(&target, &opts).await;
    let probe = report.probes.idle.as_ref().expect("the probe ran");
    let (lo, hi) = probe.died_between_seconds.expect("a connection died");
    assert!(lo < 1.5 && hi <= 2.0, "died after {lo}..{hi} s: {probe:?}");
    assert_eq!(probe.server_closed, Some(false));
    assert_eq!(
        report.findings[0].cause,
        Cause::NetworkDrop,
        "{}",
        report.render_text(false)
    );
    assert!(report.findings[0]
        .evidence
        .iter()
        .any(|e| e.source == "probe"));
}

#[tokio::test]
async fn packet_probe_measures_max_allowed_packet() {
    let server = Server::builder()
        .var("max_allowed_packet", "1M")
        .start()
        .await
        .unwrap();
    let opts = Options {
        probe_packet: true,
        ..quick()
    };
    let report = diagnose(&crate::target(&server), &opts).await;
    let p = report.probes.packet.as_ref().expect("the probe ran");
    let accepted = p.server_limit.unwrap();
    let rejected = p
        .first_rejected
        .expect("a statement over 1 MiB is rejected");
    assert!(
        accepted < 1024 * 1024 && rejected > 1024 * 1024 - 64,
        "{p:?}"
    );
    assert!(p.result_limit.unwrap() <= 1024 * 1024, "{p:?}");
}
