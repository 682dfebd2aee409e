//! Transaction replay: a transaction whose backend is lost before COMMIT runs again on a
//! fresh backend, checked reply by reply against what the client got; the rules of what
//! cannot be replayed (frontend/txlog.rs), each proved here.

use std::time::Duration;

use goneaway_harness::Server;
use mysql_async::prelude::*;

use crate::common::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Restart,
    Crash,
}

async fn inflict(server: &Server, fault: Fault, backend: u32) {
    match fault {
        Fault::Kill => server.kill_connection(backend).await.unwrap(),
        Fault::Restart => server.restart().await.unwrap(),
        Fault::Crash => server.crash_and_restart().await.unwrap(),
    }
}

fn replays(proxy: &goneaway_proxy::Proxy, outcome: &str) -> u64 {
    proxy.stats().replays().get(outcome).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_transaction_lost_between_or_during_statements_is_replayed_whole() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    let mut n = 0;
    for begin in ["BEGIN", "SET autocommit = 0"] {
        for fault in [Fault::Kill, Fault::Restart, Fault::Crash] {
            for during in [false, true] {
                n += 1;
                let label = format!("{begin} / {fault:?} / during {during}");
                let t = format!("r{n}");
                // Generated ids are kept across a KILL; a restarted server may hand them
                // out again, so those transactions use their own keys (see the rules test).
                let auto = fault == Fault::Kill;
                let key = if auto {
                    "id INT AUTO_INCREMENT PRIMARY KEY"
                } else {
                    "id INT PRIMARY KEY"
                };
                // The row with key `n` and value `v`: a generated key, or `n`.
                let insert = |n: u32, v: &str| {
                    if auto {
                        format!("INSERT INTO {t} (v) VALUES ('{v}')")
                    } else {
                        format!("INSERT INTO {t} (id, v) VALUES ({n}, '{v}')")
                    }
                };
                conn.query_drop(format!(
                    "CREATE TABLE {t} ({key}, v VARCHAR(10)) ENGINE=InnoDB"
                ))
                .await
                .unwrap();
                // The server thread behind the session, read before the transaction: a
                // CONNECTION_ID() inside it would differ on the replay (and so stop it).
                let id = backend_id(&mut conn).await;
                conn.query_drop(begin).await.unwrap();
                conn.query_drop(insert(1, "a")).await.unwrap();
                let first_id = if auto {
                    conn.last_insert_id().unwrap()
                } else {
                    1
                };
                let seen: Option<i64> = conn
                    .query_first(format!("SELECT COUNT(*) FROM {t}"))
                    .await
                    .unwrap();
                assert_eq!(seen, Some(1), "{label}");
                if during {
                    let fault_later = async {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        inflict(&server, fault, id).await;
                    };
                    let (r, ()) = tokio::join!(
                        conn.query_drop(format!(
                            "{} WHERE SLEEP(1.5) = 0",
                            insert(2, "b")
                                .replace("VALUES (", "SELECT ")
                                .replace("')", "' FROM DUAL")
                        )),
                        fault_later
                    );
                    r.unwrap_or_else(|e| panic!("{label}: {e}"));
                } else {
                    inflict(&server, fault, id).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    conn.query_drop(insert(2, "b"))
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                }
                conn.query_drop(insert(3, "c"))
                    .await
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                conn.query_drop("COMMIT")
                    .await
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                if begin != "BEGIN" {
                    conn.query_drop("SET autocommit = 1").await.unwrap();
                }
                let rows: Vec<(u64, String)> = conn
                    .query(format!("SELECT id, v FROM {t} ORDER BY id"))
                    .await
                    .unwrap();
                let values: Vec<&str> = rows.iter().map(|(_, v)| v.as_str()).collect();
                assert_eq!(values, ["a", "b", "c"], "{label}: all of it, once");
                assert_eq!(rows[0].0, first_id, "{label}: the id the client was told");
            }
        }
    }
    assert_eq!(
        replays(&proxy, "replayed"),
        12,
        "{:?}",
        proxy.stats().replays()
    );
}

/// BEGIN, `setup`, then the backend KILLed; returns what the next statement got.
async fn lose_after(
    server: &Server,
    conn: &mut mysql_async::Conn,
    setup: &[&str],
    between: Option<&str>,
) -> Result<(), mysql_async::Error> {
    let id = backend_id(conn).await;
    conn.query_drop("BEGIN").await.unwrap();
    for s in setup {
        conn.query_drop(*s).await.unwrap();
    }
    if let Some(other) = between {
        server.admin(other).await.unwrap();
    }
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.query_drop("INSERT INTO rules (v) VALUES ('after')")
        .await
}

#[tokio::test]
async fn what_the_client_saw_must_come_back_the_same_and_what_cannot_be_replayed_is_not() {
    let server = server().await;
    let proxy = proxy_with(&server, server.addr(), |c| {
        c.transaction_replay_budget = 4096
    })
    .await;
    let mut conn = connect(&proxy).await;
    conn.query_drop(
        "CREATE TABLE rules (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    conn.query_drop("INSERT INTO rules (v) VALUES ('seed')")
        .await
        .unwrap();
    let refused = |r: Result<(), mysql_async::Error>, why: &str| {
        let e = r.expect_err("not replayed");
        assert_eq!(code(&e), 1927, "{e}");
        assert!(e.to_string().contains(why), "expected {why:?}: {e}");
    };

    // Another writer changed a row the transaction had read: the replay reads otherwise.
    let r = lose_after(
        &server,
        &mut conn,
        &["SELECT v FROM rules WHERE id = 1"],
        Some("UPDATE goneaway.rules SET v = 'changed' WHERE id = 1"),
    )
    .await;
    refused(r, "gave another result");
    conn.query_drop("ROLLBACK").await.unwrap();

    // A value the client saw, NOW(6), comes out otherwise on the replay.
    let r = lose_after(&server, &mut conn, &["SELECT NOW(6)"], None).await;
    refused(r, "NOW()");
    conn.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(count(&mut conn).await, 0);

    // Values the client never saw take the replay's: UUID() inside an INSERT. And the id
    // it was told (LAST_INSERT_ID()) comes back the same.
    let id = backend_id(&mut conn).await;
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO rules (v) VALUES (UUID())")
        .await
        .unwrap();
    let told: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(again, told);
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(count(&mut conn).await, 1);
    assert_eq!(replays(&proxy, "replayed"), 1);

    // After a restart the server may hand a lost transaction's generated ids out again:
    // such a transaction is not replayed (forcing the ids could collide with others).
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO rules (v) VALUES ('generated')")
        .await
        .unwrap();
    server.restart().await.unwrap();
    let r = conn
        .query_drop("INSERT INTO rules (v) VALUES ('after')")
        .await;
    refused(r, "auto-increment");
    conn.query_drop("ROLLBACK").await.unwrap();

    // A temporary table lives in the lost connection only: not replayed.
    let r = lose_after(
        &server,
        &mut conn,
        &[
            "CREATE TEMPORARY TABLE scratch (x INT)",
            "INSERT INTO scratch VALUES (1)",
        ],
        None,
    )
    .await;
    refused(r, "temporary table");
    conn.query_drop("ROLLBACK").await.unwrap();

    // A transaction over transaction_replay_budget (4096 bytes here) is not held.
    let big = format!("INSERT INTO rules (v) VALUES ('{}')", "x".repeat(60));
    let setup: Vec<&str> = std::iter::repeat_n(big.as_str(), 80).collect();
    let r = lose_after(&server, &mut conn, &setup, None).await;
    refused(r, "transaction_replay_budget");
    conn.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(
        count(&mut conn).await,
        1,
        "nothing of the refused transactions"
    );
    assert!(
        replays(&proxy, "mismatch") >= 2,
        "{:?}",
        proxy.stats().replays()
    );
    assert!(
        replays(&proxy, "unreplayable") >= 1,
        "{:?}",
        proxy.stats().replays()
    );
}

async fn count(conn: &mut mysql_async::Conn) -> i64 {
    conn.query_first("SELECT COUNT(*) FROM rules WHERE id > 1")
        .await
        .unwrap()
        .unwrap()
}

/// A COMMIT whose connection is lost: through a relay with `latency` each way, the
/// connection is reset `reset_after` into the client's COMMIT. The commit mark's insert
/// takes one round trip, so the COMMIT reaches the server 3 × latency in, and its reply
/// would reach the proxy 4 × latency in.
async fn commit_cut(
    replay: bool,
    reset_after: Duration,
    stop_server_for: Option<Duration>,
) -> (
    Result<(), mysql_async::Error>,
    i64,
    Duration,
    goneaway_proxy::Proxy,
) {
    commit_cut_as(false, replay, reset_after, stop_server_for).await
}

/// [`commit_cut`], with BEGIN, the INSERT and COMMIT as prepared statements when
/// `prepared` (as sysbench sends them).
async fn commit_cut_as(
    prepared: bool,
    replay: bool,
    reset_after: Duration,
    stop_server_for: Option<Duration>,
) -> (
    Result<(), mysql_async::Error>,
    i64,
    Duration,
    goneaway_proxy::Proxy,
) {
    use goneaway_relay::{Fault as RelayFault, FaultKind};
    let server = server().await;
    let relay = relay(&server).await;
    let proxy = proxy_with(&server, relay.local_addr(), |c| {
        c.transaction_replay = replay
    })
    .await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE c (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    // The commit marks' table is made at start, before the faults.
    wait_for_marks(&proxy).await;
    if prepared {
        // Prepared once before (mysql_async caches them): the COMMIT below is one execute.
        conn.exec_drop("BEGIN", ()).await.unwrap();
        conn.exec_drop("COMMIT", ()).await.unwrap();
        conn.exec_drop("BEGIN", ()).await.unwrap();
        conn.exec_drop("INSERT INTO c VALUES (?), (?)", (1, 2))
            .await
            .unwrap();
    } else {
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop("INSERT INTO c VALUES (1), (2)")
            .await
            .unwrap();
    }
    let latency = Duration::from_millis(500);
    relay.set(RelayFault::Latency(latency));
    let started = std::time::Instant::now();
    let cut = async {
        if let Some(stop) = stop_server_for {
            // The server stops before the COMMIT reaches it, and its thread stays alive
            // (stalled) while the proxy resolves the COMMIT: the proxy must wait for it.
            tokio::time::sleep(latency * 3 - Duration::from_millis(100)).await;
            signal(&server, "-STOP");
            tokio::time::sleep(reset_after - (latency * 3 - Duration::from_millis(100))).await;
            relay.reset_all();
            relay.remove(FaultKind::Latency);
            tokio::time::sleep(stop).await;
            signal(&server, "-CONT");
        } else {
            tokio::time::sleep(reset_after).await;
            relay.reset_all();
            relay.remove(FaultKind::Latency);
        }
    };
    let commit = async {
        if prepared {
            conn.exec_drop("COMMIT", ()).await
        } else {
            conn.query_drop("COMMIT").await
        }
    };
    let (r, ()) = tokio::join!(commit, cut);
    let took = started.elapsed();
    let mut admin = server.admin_conn().await.unwrap();
    let rows: Option<i64> = admin
        .query_first("SELECT COUNT(*) FROM goneaway.c")
        .await
        .unwrap();
    (r, rows.unwrap(), took, proxy)
}

fn signal(server: &Server, sig: &str) {
    let pid = server.pid().expect("the server runs").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn resolved(proxy: &goneaway_proxy::Proxy, outcome: &str) -> u64 {
    proxy
        .stats()
        .commits_resolved()
        .get(outcome)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_commit_lost_after_the_server_committed_is_answered_ok() {
    // The COMMIT reached the server (1.5 s), its reply was lost (reset at 1.75 s).
    let (r, rows, _, proxy) = commit_cut(true, Duration::from_millis(1750), None).await;
    r.expect("the commit mark proves the COMMIT committed");
    assert_eq!(rows, 2, "committed, once");
    assert_eq!(resolved(&proxy, "committed"), 1);
}

#[tokio::test]
async fn a_commit_lost_before_the_server_had_it_is_replayed_or_definitely_not_committed() {
    // The COMMIT never reached the server (reset at 1.25 s, it would arrive at 1.5 s):
    // no mark, so not committed; the transaction is replayed and committed.
    let (r, rows, _, proxy) = commit_cut(true, Duration::from_millis(1250), None).await;
    r.expect("replayed, then committed");
    assert_eq!(rows, 2, "committed, once");
    assert_eq!(resolved(&proxy, "not_committed"), 1);
    assert_eq!(replays(&proxy, "replayed"), 1);
    // Without replay the client hears the definite outcome: nothing was committed.
    let (r, rows, _, _) = commit_cut(false, Duration::from_millis(1250), None).await;
    let e = r.expect_err("not committed");
    assert_eq!(code(&e), 1927, "{e}");
    assert!(e.to_string().contains("did not commit"), "{e}");
    assert!(!e.to_string().contains("outcome is unknown"), "{e}");
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_commit_lost_while_the_old_thread_is_stalled_waits_rather_than_guesses() {
    // SIGSTOP before the COMMIT reaches the server, the connection reset, SIGCONT 3 s
    // later: the proxy cannot ask a stopped server, and must not guess.
    let stall = Duration::from_secs(3);
    let (r, rows, took, _) = commit_cut(true, Duration::from_millis(1750), Some(stall)).await;
    assert!(
        took >= Duration::from_millis(1750) + stall,
        "answered after the server resumed: {took:?}"
    );
    match r {
        Ok(()) => assert_eq!(rows, 2, "OK means committed, once"),
        Err(e) => {
            assert!(
                e.to_string().contains("did not commit"),
                "a definite answer: {e}"
            );
            assert_eq!(rows, 0);
        }
    }
}

/// An autocommit write under `autocommit_write_marks`, its connection reset
/// `reset_after` into it through a relay with 400 ms latency each way: BEGIN, the
/// statement and its mark take three round trips, so its COMMIT reaches the server at
/// 2.8 s and the reply would come back at 3.2 s.
async fn write_cut(
    reset_after: Duration,
) -> (Result<(), mysql_async::Error>, i64, goneaway_proxy::Proxy) {
    use goneaway_relay::{Fault as RelayFault, FaultKind};
    let server = server().await;
    let relay = relay(&server).await;
    let proxy = proxy_with(&server, relay.local_addr(), |c| {
        c.autocommit_write_marks = true
    })
    .await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    wait_for_marks(&proxy).await;
    conn.query_drop("INSERT INTO w (v) VALUES (0)")
        .await
        .unwrap();
    relay.set(RelayFault::Latency(Duration::from_millis(400)));
    let cut = async {
        tokio::time::sleep(reset_after).await;
        relay.reset_all();
        relay.remove(FaultKind::Latency);
    };
    let (r, ()) = tokio::join!(conn.query_drop("INSERT INTO w (v) VALUES (1)"), cut);
    let mut admin = server.admin_conn().await.unwrap();
    let rows: Option<i64> = admin
        .query_first("SELECT COUNT(*) FROM goneaway.w WHERE v = 1")
        .await
        .unwrap();
    // The client sees autocommit as it left it.
    let ac: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(ac, Some(1));
    (r, rows.unwrap(), proxy)
}

#[tokio::test]
async fn an_autocommit_write_cut_in_its_commit_is_resolved_not_unknown() {
    // Reset at 3.0 s, after the COMMIT reached the server (2.8 s), and at 2.6 s, before:
    // resolved by the mark either way (which one depends on the machine's timing), the
    // client gets its OK, and the row exists once.
    for reset in [3000, 2600] {
        let (r, rows, proxy) = write_cut(Duration::from_millis(reset)).await;
        r.unwrap_or_else(|e| panic!("reset at {reset} ms: {e}"));
        assert_eq!(rows, 1, "reset at {reset} ms: once");
        let resolved =
            resolved(&proxy, "write_committed") + resolved(&proxy, "write_not_committed");
        assert_eq!(
            resolved,
            1,
            "reset at {reset} ms: {:?}",
            proxy.stats().commits_resolved()
        );
    }
}

#[tokio::test]
async fn named_locks_xa_and_local_files_are_not_replayed() {
    use futures_util::StreamExt;
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop(
        "CREATE TABLE rules (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    let refused = |r: Result<(), mysql_async::Error>, why: &str| {
        let e = r.expect_err("not replayed");
        assert_eq!(code(&e), 1927, "{e}");
        assert!(e.to_string().contains(why), "expected {why:?}: {e}");
    };
    // A named lock lives in the lost connection (and outlives the transaction): pinned,
    // never replayed; the client is told.
    let r = lose_after(&server, &mut conn, &["SELECT GET_LOCK('replay', 0)"], None).await;
    refused(r, "GET_LOCK");
    conn.query_drop("ROLLBACK").await.unwrap();
    // Outside a transaction too: the next statement says the lock was lost.
    conn.query_drop("DO GET_LOCK('idle', 0)").await.unwrap();
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = conn.query_drop("SELECT 1").await.unwrap_err();
    assert!(e.to_string().contains("GET_LOCK"), "{e}");

    // The file of a LOAD DATA LOCAL came from the client and is gone.
    conn.set_infile_handler(async move {
        Ok(
            futures_util::stream::iter([bytes::Bytes::from("from-a-file\n")])
                .map(Ok)
                .boxed(),
        )
    });
    let r = lose_after(
        &server,
        &mut conn,
        &["LOAD DATA LOCAL INFILE 'rows.txt' INTO TABLE rules (v)"],
        None,
    )
    .await;
    refused(r, "LOAD DATA LOCAL");
    conn.query_drop("ROLLBACK").await.unwrap();

    // An XA transaction.
    let id = backend_id(&mut conn).await;
    conn.query_drop("XA START 'replay'").await.unwrap();
    conn.query_drop("INSERT INTO rules (v) VALUES ('xa')")
        .await
        .unwrap();
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = conn
        .query_drop("INSERT INTO rules (v) VALUES ('after')")
        .await;
    refused(r, "XA");
    conn.query_drop("ROLLBACK").await.unwrap();
    let n: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM rules")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "nothing of them");
}

#[tokio::test]
async fn a_prepared_commit_lost_after_the_server_committed_is_answered_ok_not_replayed() {
    // COMMIT as a prepared statement (sysbench, Connector/J with server-side prepares):
    // the same resolution as a text COMMIT; above all never a replay of a transaction
    // that may have committed.
    let (r, rows, _, proxy) = commit_cut_as(true, true, Duration::from_millis(1750), None).await;
    r.expect("the commit mark proves the COMMIT committed");
    assert_eq!(rows, 2, "committed, once");
    assert_eq!(
        resolved(&proxy, "committed"),
        1,
        "{:?}",
        proxy.stats().commits_resolved()
    );
    assert_eq!(replays(&proxy, "replayed"), 0);
}

#[tokio::test]
async fn an_implicit_commit_ends_the_recorded_transaction() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    conn.query_drop("CREATE TABLE ic (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    let id = backend_id(&mut conn).await;
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO ic VALUES (1)").await.unwrap();
    // DDL commits the open transaction before it runs: the INSERT is durable, and nothing
    // of that transaction may run again.
    conn.query_drop("CREATE TABLE ic2 (x INT)").await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO ic VALUES (2)").await.unwrap();
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only the transaction begun after the implicit commit is replayed (a replay of the
    // first INSERT would hit its own committed row and be refused).
    conn.query_drop("INSERT INTO ic VALUES (3)")
        .await
        .expect("the transaction since the implicit commit is replayed");
    conn.query_drop("COMMIT").await.unwrap();
    let mut admin = server.admin_conn().await.unwrap();
    let ids: Vec<i32> = admin
        .query("SELECT id FROM goneaway.ic ORDER BY id")
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(proxy.stats().replays().get("replayed").copied(), Some(1));
}
