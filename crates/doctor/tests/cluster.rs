//! The doctor on real clusters (the harness's Galera cluster and replication set): each
//! state of the cluster staged for real, found with its evidence.

use std::time::{Duration, Instant};

use goneaway_doctor::report::{ClusterFinding, Severity};
use goneaway_doctor::{diagnose, Options, Report};
use goneaway_harness::{Galera, Replication, Server};
use mysql_async::prelude::Queryable;

use crate::{quick, target};

fn check<'a>(report: &'a Report, check: &str) -> Option<&'a ClusterFinding> {
    report.cluster.iter().find(|c| c.check == check)
}

fn checks(report: &Report) -> Vec<&'static str> {
    report.cluster.iter().map(|c| c.check).collect()
}

/// The finding, or a panic that shows the whole report.
fn expect<'a>(report: &'a Report, name: &str) -> &'a ClusterFinding {
    check(report, name)
        .unwrap_or_else(|| panic!("no {name} finding:\n{}", report.render_text(false)))
}

fn has_evidence(finding: &ClusterFinding, text: &str) -> bool {
    finding.evidence.iter().any(|e| e.detail.contains(text))
}

async fn doctor(server: &Server) -> Report {
    diagnose(&target(server), &quick()).await
}

#[tokio::test]
async fn galera_survivors_report_the_missing_node_then_the_lost_quorum() {
    let cluster = Galera::start().await.unwrap();
    let mut conn = mysql_async::Conn::from_url(cluster.node(0).url())
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let healthy = doctor(cluster.node(0)).await;
    assert!(healthy.cluster.is_empty(), "{}", healthy.render_text(false));

    // One of three killed: the survivors keep quorum, and say a member is missing.
    cluster.kill(2).await.unwrap();
    let report = doctor(cluster.node(0)).await;
    let missing = expect(&report, "galera_members_missing");
    assert_eq!(missing.severity, Severity::Warning);
    assert!(
        has_evidence(missing, "wsrep_cluster_size = 2"),
        "{missing:?}"
    );
    assert!(
        has_evidence(
            missing,
            &format!(
                "wsrep_cluster_address = {}: 3 nodes",
                cluster.cluster_address()
            )
        ),
        "{missing:?}"
    );
    assert!(missing.consequence.contains("2006"), "{missing:?}");
    assert!(
        missing.consequence.contains("1 of 2, no majority"),
        "{missing:?}"
    );
    assert_eq!(checks(&report), ["galera_members_missing"]);
    // A survivor's own log holds Galera's "Synchronized with group, ready for connections"
    // lines: they are no server start, so no crash is read into them.
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.cause == goneaway_core::Cause::ServerCrash),
        "{}",
        report.render_text(false)
    );
    assert_eq!(report.exit_code, 1);
    let text = report.render_text(false);
    assert!(text.contains("2 of the 3 Galera nodes"), "{text}");
    assert!(!text.contains(goneaway_harness::APP_PASSWORD));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["cluster"][0]["check"], "galera_members_missing");
    assert_eq!(json["cluster"][0]["severity"], "warning");
    assert!(report
        .render_markdown()
        .contains("`galera_members_missing`"));

    // A second one killed: the last node has no majority, and refuses queries with 1047.
    cluster.node(1).crash().await.unwrap();
    let started = Instant::now();
    let refused = loop {
        // A statement that reads a table (MariaDB answers SELECT 1 even without quorum).
        match conn.query_drop("SELECT id FROM t").await {
            Err(mysql_async::Error::Server(e)) => break e,
            Ok(()) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node 0 never lost quorum"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.code, 1047, "{refused:?}");
    let report = doctor(cluster.node(0)).await;
    let lost = expect(&report, "galera_non_primary");
    assert_eq!(lost.severity, Severity::Critical);
    assert!(
        has_evidence(lost, "wsrep_cluster_status = non-Primary"),
        "{lost:?}"
    );
    assert!(lost.consequence.contains("1047"), "{lost:?}");
    let not_ready = expect(&report, "galera_not_ready");
    assert!(
        has_evidence(not_ready, "wsrep_ready = OFF"),
        "{not_ready:?}"
    );
    expect(&report, "galera_members_missing");
    // The existing cause-level reading still holds: clients cannot use this node.
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.cause == goneaway_core::Cause::ServerUnreachable),
        "{}",
        report.render_text(false)
    );
}

#[tokio::test]
async fn replication_lag_stopped_threads_and_read_only_mistakes() {
    let set = Replication::start(1).await.unwrap();
    let healthy = doctor(set.replica()).await;
    assert!(healthy.cluster.is_empty(), "{}", healthy.render_text(false));
    let facts = healthy.facts.as_ref().unwrap();
    assert_eq!(facts.replication.len(), 1);
    assert_eq!(
        facts.replication[0].source,
        format!("127.0.0.1:{}", set.primary().port())
    );
    let primary = doctor(set.primary()).await;
    assert!(primary.cluster.is_empty(), "{}", primary.render_text(false));
    assert_eq!(
        primary.facts.as_ref().unwrap().processes.replicas_connected,
        1
    );

    // Lag: a lock on the replica holds its SQL thread back.
    let hold = set.hold_sql_thread(1).await.unwrap();
    let started = Instant::now();
    let report = loop {
        let r = diagnose(
            &target(set.replica()),
            &Options {
                replica_lag: Duration::from_secs(2),
                ..quick()
            },
        )
        .await;
        if check(&r, "replica_lag").is_some() {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            r.render_text(false)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let lag = expect(&report, "replica_lag");
    assert!(has_evidence(lag, "Seconds_Behind_Master = "), "{lag:?}");
    // Below the default bound (30 s), the same lag is no finding.
    assert!(check(&doctor(set.replica()).await, "replica_lag").is_none());
    hold.release().await.unwrap();
    set.wait_caught_up().await.unwrap();

    // The SQL thread stopped by a row written on the replica alone.
    set.break_sql_thread(1).await.unwrap();
    let report = doctor(set.replica()).await;
    let stopped = expect(&report, "replica_sql_stopped");
    assert!(
        has_evidence(stopped, "Slave_SQL_Running = No"),
        "{stopped:?}"
    );
    assert!(
        has_evidence(stopped, "Last_SQL_Error (1062)"),
        "{stopped:?}"
    );
    assert!(has_evidence(stopped, "Duplicate entry"), "{stopped:?}");
    set.repair_sql_thread(1).await.unwrap();

    // A writable replica.
    set.replica()
        .admin("SET GLOBAL read_only = OFF")
        .await
        .unwrap();
    let report = doctor(set.replica()).await;
    let writable = expect(&report, "replica_writable");
    assert!(has_evidence(writable, "read_only = OFF"), "{writable:?}");
    set.replica()
        .admin("SET GLOBAL read_only = ON")
        .await
        .unwrap();

    // A primary left read-only, with its replica attached.
    set.primary()
        .admin("SET GLOBAL read_only = ON")
        .await
        .unwrap();
    let report = doctor(set.primary()).await;
    let ro = expect(&report, "primary_read_only");
    assert_eq!(ro.severity, Severity::Critical);
    assert!(
        has_evidence(ro, "1 replica(s) read this server's binary log"),
        "{ro:?}"
    );
    assert!(ro.consequence.contains("1290"), "{ro:?}");
    set.primary()
        .admin("SET GLOBAL read_only = OFF")
        .await
        .unwrap();

    // The primary gone: the replica's IO thread cannot reach it.
    set.primary().crash().await.unwrap();
    let started = Instant::now();
    let report = loop {
        let r = doctor(set.replica()).await;
        if check(&r, "replica_io_stopped").is_some() {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            r.render_text(false)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let io = expect(&report, "replica_io_stopped");
    assert!(has_evidence(io, "Slave_IO_Running = Connecting"), "{io:?}");
    assert!(has_evidence(io, "Last_IO_Error"), "{io:?}");
}
