//! Faults while clients query: sysbench through KILLs and a graceful restart, and
//! mysql_async readers and writers through a crash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::common::*;

fn sysbench(port: u16, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("/usr/bin/sysbench");
    c.arg("oltp_read_only")
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-user={USER}"))
        .arg(format!("--mysql-password={PASSWORD}"))
        .arg("--mysql-db=goneaway")
        .args(["--tables=1", "--table-size=1000"])
        .args(args)
        .kill_on_drop(true);
    c
}

/// Kills every connection of the application account: the proxy's backends.
async fn kill_backends(server: &goneaway_harness::Server) -> usize {
    let mut admin = server.admin_conn().await.unwrap();
    let ids: Vec<u64> = admin
        .query("SELECT id FROM information_schema.processlist WHERE user = 'goneaway'")
        .await
        .unwrap();
    for id in &ids {
        let _ = admin.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    ids.len()
}

/// sysbench's read-only workload in autocommit mode (`--skip_trx`): every statement is a
/// read outside a transaction, so every fault below can be shielded and sysbench must
/// report no error at all. (With its default BEGIN…COMMIT, a backend lost mid-transaction
/// is an error by design: the transaction is gone — see `transaction_cut_before_commit`.)
#[tokio::test]
async fn sysbench_reads_through_kills_and_a_restart_without_errors() {
    let server = server().await;
    let prepare = sysbench(server.port(), &["prepare"])
        .output()
        .await
        .unwrap();
    assert!(
        prepare.status.success(),
        "{}",
        String::from_utf8_lossy(&prepare.stderr)
    );
    let proxy = proxy(&server).await;
    let run = sysbench(
        proxy.local_addr().port(),
        &[
            "--threads=4",
            "--time=7",
            "--skip_trx=on",
            "--mysql-ignore-errors=none",
            "run",
        ],
    )
    .output();
    let faults = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed = kill_backends(&server).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.restart().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        killed + kill_backends(&server).await
    };
    let (out, killed) = tokio::join!(
        async { tokio::time::timeout(Duration::from_secs(40), run).await },
        faults
    );
    let out = out.expect("sysbench ends").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sysbench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        killed >= 4,
        "the faults hit the proxy's backends ({killed} killed)"
    );
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in\n{stdout}"))
            .to_owned()
    };
    assert!(line("ignored errors:").contains(" 0 "), "{stdout}");
    assert!(line("reconnects:").contains(" 0 "), "{stdout}");
    let absorbed: u64 = proxy.stats().absorbed_by_cause().values().sum();
    assert!(absorbed >= 1, "{:?}", proxy.stats().absorbed_by_cause());
}

/// Readers and a writer query while the server crashes and comes back: every read
/// succeeds (replayed), every write either succeeded or got "outcome is unknown", and no
/// write is applied twice.
#[tokio::test]
async fn crash_while_querying_replays_reads_and_never_doubles_writes() {
    let server = Arc::new(server().await);
    let proxy = proxy(&server).await;
    let mut setup = connect(&proxy).await;
    setup
        .query_drop(
            "CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, n INT UNIQUE) ENGINE=InnoDB",
        )
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut conn = connect(&proxy).await;
        let reads = reads.clone();
        readers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let v: Option<i64> = conn
                    .exec_first("SELECT ? + COUNT(*) * 0 FROM w", (i,))
                    .await
                    .map_err(|e| format!("reader {i}: {e}"))?;
                assert_eq!(v, Some(i));
                reads.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, String>(())
        }));
    }
    let mut writer = connect(&proxy).await;
    let writes = tokio::spawn(async move {
        let (mut ok, mut unknown) = (Vec::new(), Vec::new());
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            match writer.exec_drop("INSERT INTO w (n) VALUES (?)", (n,)).await {
                Ok(()) => ok.push(n),
                Err(e) if e.to_string().contains("outcome is unknown") => unknown.push(n),
                Err(e) => panic!("write {n}: unexpected error {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, unknown)
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.crash().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.start().await.unwrap();
    for r in readers {
        r.await.unwrap().unwrap();
    }
    let (ok, unknown) = writes.await.unwrap();
    let rows: Vec<i32> = setup.query("SELECT n FROM w ORDER BY n").await.unwrap();
    for n in &ok {
        assert!(rows.contains(n), "acknowledged write {n} is there");
    }
    for n in &rows {
        assert!(
            ok.contains(n) || unknown.contains(n),
            "row {n} was written by the client"
        );
    }
    // No doubles: a retried write would have hit the UNIQUE key or left two rows.
    let total: Option<i64> = setup.query_first("SELECT COUNT(*) FROM w").await.unwrap();
    assert_eq!(total, Some(rows.len() as i64));
    assert!(reads.load(Ordering::Relaxed) > 10);
}
