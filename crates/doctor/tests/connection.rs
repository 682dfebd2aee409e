//! Connection failures are themselves diagnosed; reports keep stable names and no passwords.

use goneaway_core::Cause;
use goneaway_doctor::diagnose;
use goneaway_harness::Server;

use crate::{quick, target};

#[tokio::test]
async fn wrong_password_is_access_denied_exit_2() {
    let server = Server::start_default().await.unwrap();
    let mut t = target(&server);
    t.password = Some(goneaway_connect::Password::new("wrong-secret-123"));
    let report = diagnose(&t, &quick()).await;
    assert_eq!(report.exit_code, 2);
    assert_eq!(report.findings[0].cause, Cause::AccessDenied);
    assert_eq!(report.connection_error.as_ref().unwrap().code, Some(1045));
    let json = report.to_json();
    assert!(!json.contains("wrong-secret-123"));
    assert!(!report.render_text(false).contains("wrong-secret-123"));
    assert!(!report.render_markdown().contains("wrong-secret-123"));
}

#[tokio::test]
async fn closed_port_is_server_unreachable_exit_2() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t =
        goneaway_connect::Target::from_url(&format!("mysql://app:pw@127.0.0.1:{port}/x")).unwrap();
    let report = diagnose(&t, &quick()).await;
    assert_eq!(report.exit_code, 2);
    assert_eq!(
        report.findings[0].cause,
        Cause::ServerUnreachable,
        "{}",
        report.render_text(false)
    );
    assert!(!report.recommendations.actions.is_empty());
}

#[tokio::test]
async fn json_field_names_are_stable() {
    let server = Server::builder()
        .var("wait_timeout", 2)
        .start()
        .await
        .unwrap();
    let opts = goneaway_doctor::Options {
        pool_lifetime: Some(std::time::Duration::from_secs(60)),
        ..quick()
    };
    let report = diagnose(&target(&server), &opts).await;
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "application",
            "cluster",
            "connection_error",
            "error_log",
            "exit_code",
            "facts",
            "findings",
            "generated_at",
            "kernel_log",
            "notes",
            "probes",
            "rates_since_start",
            "recommendations",
            "sample",
            "schema",
            "status",
            "target",
            "timeout_chain",
            "transfer_limits"
        ]
    );
    assert_eq!(
        keys(&v["timeout_chain"][0]),
        [
            "fix",
            "label",
            "layer",
            "limit_secs",
            "note",
            "role",
            "source",
            "verdict"
        ]
    );
    assert_eq!(v["timeout_chain"][0]["layer"], "wait_timeout");
    assert_eq!(v["schema"], "goneaway.doctor/1");
    assert_eq!(v["status"], "findings");
    let f = &v["findings"][0];
    assert_eq!(keys(f), ["cause", "confidence", "evidence", "title"]);
    assert_eq!(f["cause"], "idle_timeout");
    assert_eq!(keys(&f["evidence"][0]), ["detail", "source", "weight"]);
    assert_eq!(
        keys(&v["recommendations"]),
        [
            "actions",
            "frameworks",
            "managed",
            "my_cnf",
            "pool",
            "server",
            "statements"
        ]
    );
    assert_eq!(
        keys(&v["facts"]),
        [
            "processes",
            "replication",
            "server",
            "started_at",
            "status",
            "status_text",
            "unreadable",
            "uptime_seconds",
            "variables"
        ]
    );
    assert_eq!(v["facts"]["variables"]["wait_timeout"]["global"], "2");
    assert_eq!(v["facts"]["variables"]["wait_timeout"]["session"], "2");
}
