//! The timeout chain against real servers: the pool, the proxy's settings and a middlebox's
//! idle limit put beside the server's own timeouts, in the order they end an idle connection.

use std::time::Duration;

use goneaway_core::Cause;
use goneaway_doctor::chain::{Link, Verdict};
use goneaway_doctor::{diagnose, Options, ProxyLayer, Report};
use goneaway_harness::Server;

use crate::{quick, target};

fn order(report: &Report) -> Vec<(&'static str, Verdict)> {
    report
        .timeout_chain
        .iter()
        .map(|l| (l.layer, l.verdict))
        .collect()
}

fn layer<'a>(report: &'a Report, name: &str) -> &'a Link {
    report
        .timeout_chain
        .iter()
        .find(|l| l.layer == name)
        .unwrap_or_else(|| panic!("no {name} layer:\n{}", report.render_text(false)))
}

fn fix(link: &Link) -> &str {
    link.fix.as_deref().unwrap_or_default()
}

async fn short_wait_server() -> Server {
    Server::builder()
        .var("wait_timeout", 5)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pool_lifetime_past_wait_timeout_is_cut_by_the_server_first_then_by_a_middlebox() {
    let server = short_wait_server().await;
    let pool = Options {
        pool_lifetime: Some(Duration::from_secs(30)),
        ..quick()
    };
    let report = diagnose(&target(&server), &pool).await;
    let text = report.render_text(false);
    assert_eq!(
        order(&report),
        [
            ("wait_timeout", Verdict::CutsFirst),
            ("pool", Verdict::TooLate),
            ("interactive_timeout", Verdict::Note),
        ],
        "{text}"
    );
    let server_row = layer(&report, "wait_timeout");
    assert_eq!(server_row.limit_secs, Some(5.0));
    assert_eq!(server_row.source, "server variable @@GLOBAL.wait_timeout");
    // 5 s less the margin rule's 2 s (10 %, at least 2 s).
    assert_eq!(fix(server_row), "lower the pool lifetime to 3 s");
    let pool_row = layer(&report, "pool");
    assert_eq!(
        (pool_row.limit_secs, pool_row.source.as_str()),
        (Some(30.0), "--pool-lifetime")
    );
    assert!(
        fix(pool_row)
            .starts_with("set it to 3 s or less (wait_timeout = 5 s less a margin of 2 s)"),
        "{text}"
    );
    // The other way out agrees with the advice below it: a longer wait_timeout, then the
    // advice's own pool lifetime.
    let advised = report.recommendations.pool.as_ref().unwrap().max_lifetime;
    assert!(
        fix(pool_row).ends_with(&format!(
            "or raise wait_timeout to 600 s as advised below, then {advised} s"
        )),
        "{text}"
    );
    assert_eq!(report.findings[0].cause, Cause::IdleTimeout, "{text}");
    assert!(text.contains("Timeout chain"), "{text}");
    assert!(text.contains("mid-transfer limits"), "{text}");
    let transfer: Vec<&str> = report.transfer_limits.iter().map(|l| l.layer).collect();
    assert_eq!(transfer, ["net_read_timeout", "net_write_timeout"]);

    // A NAT gateway that drops idle flows after 3 s cuts before the server.
    let natted = Options {
        middlebox_idle: Some(Duration::from_secs(3)),
        ..pool
    };
    let report = diagnose(&target(&server), &natted).await;
    let text = report.render_text(false);
    assert_eq!(
        order(&report)[..3],
        [
            ("middlebox", Verdict::CutsFirst),
            ("wait_timeout", Verdict::CutsEarly),
            ("pool", Verdict::TooLate),
        ],
        "{text}"
    );
    // 3 s less 2 s.
    assert_eq!(
        fix(layer(&report, "middlebox")),
        "lower the pool lifetime to 1 s"
    );
    assert!(
        fix(layer(&report, "pool")).starts_with("set it to 1 s or less"),
        "{text}"
    );
    assert!(
        report.findings.iter().any(|f| f.cause == Cause::NetworkDrop
            && f.evidence.iter().any(|e| e.source == "pool_settings")),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["timeout_chain"][0]["layer"], "middlebox");
    assert_eq!(json["timeout_chain"][0]["limit_secs"], 3.0);
    assert_eq!(json["timeout_chain"][0]["source"], "--middlebox-idle");
    assert_eq!(json["timeout_chain"][0]["verdict"], "cuts_first");
    assert_eq!(
        json["timeout_chain"][0]["fix"],
        "lower the pool lifetime to 1 s"
    );
    let md = report.render_markdown();
    assert!(
        md.contains("| NAT / load balancer idle limit (`middlebox`) | 3 s | --middlebox-idle | cuts first | lower the pool lifetime to 1 s |"),
        "{md}"
    );
}

#[tokio::test]
async fn a_proxy_keepalive_longer_than_wait_timeout_is_flagged() {
    let server = short_wait_server().await;
    let proxy = ProxyLayer {
        client_idle_timeout: None,
        keepalive_interval: Some(Duration::from_secs(10)),
        source: "proxy.toml".into(),
    };
    let options = Options {
        // Behind the proxy, a long pool lifetime is no problem: the proxy keeps the
        // server's side alive, so it is the proxy's keepalive that must beat wait_timeout.
        pool_lifetime: Some(Duration::from_secs(30)),
        proxy: Some(proxy),
        ..quick()
    };
    let report = diagnose(&target(&server), &options).await;
    let text = report.render_text(false);
    assert_eq!(
        order(&report)[..3],
        [
            ("wait_timeout", Verdict::CutsFirst),
            ("proxy_keepalive", Verdict::TooLate),
            ("pool", Verdict::Ok),
        ],
        "{text}"
    );
    assert_eq!(
        fix(layer(&report, "wait_timeout")),
        "lower the proxy's keepalive_interval_secs to 3 s"
    );
    assert!(
        fix(layer(&report, "proxy_keepalive"))
            .starts_with("set keepalive_interval_secs = 3 in proxy.toml"),
        "{text}"
    );
    let idle = report
        .findings
        .iter()
        .find(|f| f.cause == Cause::IdleTimeout)
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        idle.evidence.iter().any(|e| e.source == "proxy_settings"),
        "{text}"
    );
    assert!(
        !idle.evidence.iter().any(|e| e.source == "pool_settings"),
        "the pool talks to the proxy, not to the server: {text}"
    );
    assert_eq!(report.exit_code, 1);
}

#[tokio::test]
async fn a_consistent_chain_is_all_ok() {
    let server = Server::builder()
        .var("wait_timeout", 600)
        .var("idle_transaction_timeout", 900)
        .start()
        .await
        .unwrap();
    let options = Options {
        pool_lifetime: Some(Duration::from_secs(300)),
        middlebox_idle: Some(Duration::from_secs(350)),
        proxy: Some(ProxyLayer {
            client_idle_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            source: "proxy.toml".into(),
        }),
        ..quick()
    };
    let report = diagnose(&target(&server), &options).await;
    let text = report.render_text(false);
    assert_eq!(
        order(&report),
        [
            ("proxy_keepalive", Verdict::Ok),
            ("pool", Verdict::Ok),
            ("middlebox", Verdict::Ok),
            ("wait_timeout", Verdict::Ok),
            ("idle_transaction_timeout", Verdict::Note),
            ("proxy_client_idle_timeout", Verdict::Ok),
            ("interactive_timeout", Verdict::Note),
        ],
        "{text}"
    );
    assert!(
        report.timeout_chain.iter().all(|l| l.fix.is_none()),
        "{text}"
    );
    assert!(report.findings.is_empty(), "{text}");
    assert_eq!(report.exit_code, 0, "{text}");
}
