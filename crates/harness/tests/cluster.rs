//! Real clusters on 127.0.0.1: a GTID replication set and a three-node Galera cluster.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use goneaway_harness::{Galera, Replication, Server};

async fn conn(server: &Server) -> mysql_async::Conn {
    mysql_async::Conn::from_url(server.url().as_str())
        .await
        .unwrap()
}

/// A connection whose reads wait until the node has applied every earlier commit of the
/// cluster (Galera applies write sets on other nodes shortly after the commit returns).
async fn causal(server: &Server) -> mysql_async::Conn {
    let mut c = conn(server).await;
    c.query_drop("SET SESSION wsrep_sync_wait = 1")
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn replication_pair_replicates_a_write_and_reports_its_faults() {
    let started = Instant::now();
    let set = Replication::start(1).await.unwrap();
    eprintln!("replication pair up in {:?}", started.elapsed());
    let (primary, replica) = (set.primary(), set.replica());
    assert_eq!(
        replica.global("read_only").await.unwrap().as_deref(),
        Some("ON")
    );
    assert_eq!(
        primary.global("read_only").await.unwrap().as_deref(),
        Some("OFF")
    );

    // A write on the primary, read on the replica.
    let mut p = conn(primary).await;
    p.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    set.wait_caught_up().await.unwrap();
    let mut r = conn(replica).await;
    let v: Option<String> = r.query_first("SELECT v FROM t WHERE id = 1").await.unwrap();
    assert_eq!(v.as_deref(), Some("one"));
    let status = set.replica_status(1).await.unwrap().unwrap();
    assert!(status.is_running(), "{status:?}");
    assert_eq!(status.master_port, primary.port());
    assert_eq!(set.replica_status(0).await.unwrap(), None);

    // A lagging replica.
    // lag() returns once the replica reported a lag; the figure moves between reads (the
    // SQL thread waiting out MASTER_DELAY reports 0 at moments), so read it until it shows
    // again, for at most 10 s.
    set.lag(1, 30).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let lag = set.replica_status(1).await.unwrap().unwrap();
        if lag.seconds_behind_master.is_some_and(|s| s >= 1) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{lag:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    set.lag(1, 0).await.unwrap();

    // A replica held back by a lock on its side, then released.
    let hold = set.hold_sql_thread(1).await.unwrap();
    let held = set.replica_status(1).await.unwrap().unwrap();
    assert!(
        held.seconds_behind_master.is_some_and(|s| s >= 1),
        "{held:?}"
    );
    hold.release().await.unwrap();
    set.wait_caught_up().await.unwrap();

    // A broken SQL thread, then repaired.
    let broken = set.break_sql_thread(1).await.unwrap();
    assert_eq!(broken.sql_running, "No");
    assert_eq!(broken.last_sql_errno, 1062, "{broken:?}");
    assert!(
        broken.last_sql_error.contains("Duplicate entry"),
        "{broken:?}"
    );
    set.repair_sql_thread(1).await.unwrap();

    // The primary restarted: the replica reconnects by itself and catches up.
    primary.restart().await.unwrap();
    p = conn(primary).await;
    p.query_drop("INSERT INTO t VALUES (3, 'three')")
        .await
        .unwrap();
    set.wait_caught_up().await.unwrap();

    // The primary killed: the replica's IO thread cannot reach it.
    primary.crash().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = set.replica_status(1).await.unwrap().unwrap();
        if s.io_running != "Yes" {
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Failover: the replica becomes a writable primary.
    set.promote(1).await.unwrap();
    assert_eq!(set.primary_index(), 1);
    assert_eq!(set.replica_status(1).await.unwrap(), None);
    r = conn(set.primary()).await;
    r.query_drop("INSERT INTO t VALUES (4, 'four')")
        .await
        .unwrap();
    // The old primary comes back and follows the new one.
    set.member(0).start().await.unwrap();
    set.follow(0).await.unwrap();
    set.wait_caught_up().await.unwrap();
    let mut old = conn(set.member(0)).await;
    let v: Option<String> = old
        .query_first("SELECT v FROM t WHERE id = 4")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("four"));
    assert_eq!(
        set.member(0).global("read_only").await.unwrap().as_deref(),
        Some("ON")
    );
    drop((p, r));
}

#[tokio::test]
async fn a_promotion_repoints_the_other_replicas() {
    let set = Replication::start(2).await.unwrap();
    let mut p = conn(set.primary()).await;
    p.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    set.wait_caught_up().await.unwrap();
    set.promote(1).await.unwrap();
    let mut new = conn(set.primary()).await;
    new.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    set.wait_caught_up().await.unwrap();
    for i in [0, 2] {
        let s = set.replica_status(i).await.unwrap().unwrap();
        assert_eq!(s.master_port, set.member(1).port(), "{s:?}");
        let mut c = conn(set.member(i)).await;
        let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(n, Some(2), "member {i}");
    }
    assert_eq!(
        set.member(0).global("read_only").await.unwrap().as_deref(),
        Some("ON")
    );
}

/// A planned switchover and, with semi-synchronous replication, a crash of the new primary
/// and a promotion once the other member applied its relay log: each time every
/// acknowledged write is on the new primary, and the old one follows it read-only.
#[tokio::test]
async fn a_switchover_and_a_failover_keep_every_acknowledged_write() {
    let set = Replication::start(1).await.unwrap();
    let mut p = conn(set.primary()).await;
    p.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    drop(p);
    set.switchover(1).await.unwrap();
    assert_eq!(set.primary_index(), 1);
    assert_eq!(
        set.member(0).global("read_only").await.unwrap().as_deref(),
        Some("ON")
    );
    let s = set.replica_status(0).await.unwrap().unwrap();
    assert_eq!(s.master_port, set.member(1).port(), "{s:?}");

    // Lossless semi-synchronous replication towards the old primary, writes, a crash.
    set.semi_sync(0).await.unwrap();
    let mut new = conn(set.primary()).await;
    for id in 2..=50 {
        new.query_drop(format!("INSERT INTO t VALUES ({id})"))
            .await
            .unwrap();
    }
    drop(new);
    set.member(1).crash().await.unwrap();
    set.apply_relay_log(0).await.unwrap();
    set.promote(0).await.unwrap();
    let mut back = conn(set.member(0)).await;
    let n: Option<u64> = back.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(50), "every acknowledged write after the failover");
    back.query_drop("INSERT INTO t VALUES (51)").await.unwrap();
}

#[tokio::test]
async fn galera_cluster_forms_replicates_and_survives_a_killed_node() {
    let started = Instant::now();
    let cluster = Galera::start().await.unwrap();
    eprintln!("Galera cluster up in {:?}", started.elapsed());
    for i in 0..3 {
        let s = cluster.status(i).await.unwrap();
        assert!(s.is_synced_in(3), "node {i}: {s:?}");
    }
    assert_eq!(
        cluster
            .node(1)
            .global("wsrep_cluster_address")
            .await
            .unwrap()
            .as_deref(),
        Some(cluster.cluster_address())
    );

    // A write on one node is read on another.
    let mut a = conn(cluster.node(0)).await;
    a.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    let mut c = causal(cluster.node(2)).await;
    let v: Option<String> = c.query_first("SELECT v FROM t WHERE id = 1").await.unwrap();
    assert_eq!(v.as_deref(), Some("one"));

    // Kill a node: the survivors form a primary component of two.
    let killed = Instant::now();
    cluster.kill(2).await.unwrap();
    eprintln!("survivors at size 2 in {:?}", killed.elapsed());
    for i in 0..2 {
        let s = cluster.status(i).await.unwrap();
        assert!(s.is_synced_in(2), "node {i}: {s:?}");
    }
    a.query_drop("INSERT INTO t VALUES (2, 'two')")
        .await
        .unwrap();

    // It rejoins with a full state transfer and has the write made while it was down.
    let rejoin = Instant::now();
    cluster.rejoin(2).await.unwrap();
    eprintln!("rejoined in {:?}", rejoin.elapsed());
    let mut c = causal(cluster.node(2)).await;
    let v: Option<String> = c.query_first("SELECT v FROM t WHERE id = 2").await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));

    // A graceful stop and a rejoin by IST.
    cluster.stop(0).await.unwrap();
    a = conn(cluster.node(1)).await;
    a.query_drop("INSERT INTO t VALUES (3, 'three')")
        .await
        .unwrap();
    cluster.rejoin(0).await.unwrap();
    let mut n0 = causal(cluster.node(0)).await;
    let v: Option<String> = n0
        .query_first("SELECT v FROM t WHERE id = 3")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("three"));
    assert!(
        cluster.node(0).error_log_text().contains("IST"),
        "rejoined without IST"
    );
}
