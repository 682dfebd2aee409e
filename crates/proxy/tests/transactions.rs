//! The transaction contract through the proxy, with real clients (PyMySQL and the `mariadb`
//! command-line client): a transaction whose backend is lost — KILL, restart or crash,
//! between statements or during one — is replayed on a fresh backend and checked, or, when
//! it cannot be (here: replay turned off, which is also what every unreplayable transaction
//! gets), never continues on a fresh backend: the session stays in the failed-transaction
//! state until the client ends it; its COMMIT commits nothing; nothing it sends meanwhile
//! runs.

use std::process::Stdio;
use std::time::Duration;

use goneaway_harness::Server;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::*;
use crate::python::Worker;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Restart,
    Crash,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    Between,
    During,
}

async fn inflict(server: &Server, fault: Fault, backend: u32) {
    match fault {
        Fault::Kill => server.kill_connection(backend).await.unwrap(),
        Fault::Restart => server.restart().await.unwrap(),
        Fault::Crash => server.crash_and_restart().await.unwrap(),
    }
}

/// The cause the proxy must name for each fault.
fn cause_of(fault: Fault, when: When) -> &'static [&'static str] {
    match (fault, when) {
        (Fault::Kill, _) => &["connection_killed"],
        (Fault::Restart, _) => &["server_restart"],
        // MariaDB closes its connections silently on a shutdown as on a crash: what the
        // proxy can prove is that the server restarted (it came back with a later start
        // and smaller thread ids).
        (Fault::Crash, _) => &["server_restart"],
    }
}

fn is_err(line: &str, codes: &[u16]) -> bool {
    line.starts_with("err") && codes.iter().any(|c| line.contains(&format!("({c},")))
}

/// One transaction lost to `fault`, driven by PyMySQL; `begin` is `BEGIN` or
/// `SET autocommit = 0`; `end` is the client's answer to the loss (`COMMIT` or `ROLLBACK`).
async fn pymysql_scenario(
    server: &Server,
    port: u16,
    table: &str,
    begin: &str,
    fault: Fault,
    when: When,
    end: &str,
) {
    let label = format!("{begin} / {fault:?} {when:?} / {end}");
    let mut w = Worker::start(port);
    assert_eq!(
        w.run(&format!(
            "CREATE TABLE {table} (v VARCHAR(10) PRIMARY KEY) ENGINE=InnoDB"
        ))
        .await,
        "ok ",
        "{label}"
    );
    let id: u32 = w
        .run("SELECT CONNECTION_ID()")
        .await
        .strip_prefix("ok ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(w.run(begin).await, "ok ", "{label}");
    assert_eq!(
        w.run(&format!("INSERT INTO {table} VALUES ('a')")).await,
        "ok ",
        "{label}"
    );
    let lost = match when {
        When::Between => {
            inflict(server, fault, id).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            w.run(&format!("INSERT INTO {table} VALUES ('b')")).await
        }
        When::During => {
            let statement = format!("INSERT INTO {table} SELECT 'b' FROM DUAL WHERE SLEEP(3) = 0");
            w.send(&statement).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            inflict(server, fault, id).await;
            w.answer(&statement).await
        }
    };
    // The server's own error where it sent one (1927 KILL, 1053 shutdown), else the
    // numbers a direct client gets.
    assert!(is_err(&lost, &[1927, 1053]), "{label}: {lost}");
    // Nothing runs until the client ends the transaction it thinks it is in.
    let refused = w.run(&format!("INSERT INTO {table} VALUES ('c')")).await;
    assert!(is_err(&refused, &[1927]), "{label}: {refused}");
    assert!(refused.contains("ROLLBACK"), "{label}: {refused}");
    assert!(
        cause_of(fault, when)
            .iter()
            .any(|c| refused.contains(&format!("cause: {c}"))),
        "{label}: expected cause {:?}: {refused}",
        cause_of(fault, when)
    );
    let refused = w.run("SET autocommit = 1").await;
    assert!(
        is_err(&refused, &[1927]),
        "{label}: an implicit commit is refused too: {refused}"
    );
    let ended = w.run(end).await;
    if end == "COMMIT" {
        assert!(is_err(&ended, &[1927]), "{label}: {ended}");
        assert!(ended.contains("committed nothing"), "{label}: {ended}");
    } else {
        assert_eq!(ended, "ok ", "{label}");
    }
    // Nothing of the lost transaction, nor of what was sent after the loss, exists.
    assert_eq!(
        w.run(&format!("SELECT COUNT(*) FROM {table}")).await,
        "ok 0",
        "{label}"
    );
    // The session goes on: a new transaction commits whole.
    if begin == "BEGIN" {
        assert_eq!(w.run("BEGIN").await, "ok ", "{label}");
    }
    assert_eq!(
        w.run(&format!("INSERT INTO {table} VALUES ('d')")).await,
        "ok ",
        "{label}"
    );
    assert_eq!(w.run("COMMIT").await, "ok ", "{label}");
    assert_eq!(
        w.run(&format!("SELECT GROUP_CONCAT(v) FROM {table}")).await,
        "ok d",
        "{label}"
    );
}

#[tokio::test]
async fn pymysql_lost_transactions_never_commit_in_part() {
    let server = server().await;
    let proxy = proxy_without_replay(&server).await;
    let port = proxy.local_addr().port();
    let scenarios = [
        ("BEGIN", Fault::Kill, When::Between, "COMMIT"),
        ("BEGIN", Fault::Restart, When::Between, "ROLLBACK"),
        ("BEGIN", Fault::Crash, When::During, "COMMIT"),
        ("SET autocommit = 0", Fault::Kill, When::During, "COMMIT"),
        (
            "SET autocommit = 0",
            Fault::Restart,
            When::During,
            "ROLLBACK",
        ),
        ("SET autocommit = 0", Fault::Crash, When::Between, "COMMIT"),
    ];
    for (i, (begin, fault, when, end)) in scenarios.into_iter().enumerate() {
        pymysql_scenario(&server, port, &format!("t{i}"), begin, fault, when, end).await;
    }
}

/// Runs a script through the `mariadb` client, a line every 200 ms, with `--force` (go on
/// after errors) and `--skip-reconnect` (so the session is the proxy's, not a new one); the
/// fault is inflicted after the line `-- fault`. Returns stdout and stderr.
async fn mariadb_cli(server: &Server, port: u16, script: &str, fault: Fault) -> (String, String) {
    let mut child = Command::new("mariadb")
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            &format!("--user={USER}"),
            &format!("--password={PASSWORD}"),
            "--database=goneaway",
            "--batch",
            "--force",
            "--skip-reconnect",
            "--skip-ssl",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the mariadb client runs (make deps installs mariadb-client)");
    let mut stdin = child.stdin.take().unwrap();
    for line in script.lines() {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if line.trim() == "-- fault" {
            let backend = newest_backend(server).await;
            inflict(server, fault, backend).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the mariadb client ends")
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The server thread of the newest connection of the proxy's account.
async fn newest_backend(server: &Server) -> u32 {
    use mysql_async::prelude::*;
    let mut admin = server.admin_conn().await.unwrap();
    let id: Option<u32> = admin
        .query_first(format!(
            "SELECT MAX(ID) FROM information_schema.PROCESSLIST WHERE USER = '{USER}'"
        ))
        .await
        .unwrap();
    id.expect("the proxy's backend is connected")
}

#[tokio::test]
async fn mariadb_cli_lost_transaction_never_commits_in_part() {
    let server = server().await;
    let proxy = proxy_without_replay(&server).await;
    let port = proxy.local_addr().port();
    for (i, (begin, fault)) in [
        ("BEGIN;", Fault::Kill),
        ("SET autocommit = 0;", Fault::Restart),
    ]
    .into_iter()
    .enumerate()
    {
        let t = format!("cli{i}");
        let script = format!(
            "CREATE TABLE {t} (v VARCHAR(10) PRIMARY KEY) ENGINE=InnoDB;\n\
             {begin}\n\
             INSERT INTO {t} VALUES ('a');\n\
             -- fault\n\
             INSERT INTO {t} VALUES ('b');\n\
             INSERT INTO {t} VALUES ('c');\n\
             COMMIT;\n\
             SELECT CONCAT('rows=', COUNT(*)) FROM {t};\n"
        );
        let (out, err) = mariadb_cli(&server, port, &script, fault).await;
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("ERROR")).collect();
        assert_eq!(errors.len(), 3, "{begin} {fault:?}: {err}");
        assert!(
            errors.iter().all(|l| l.starts_with("ERROR 1927 (08S01)")),
            "{begin} {fault:?}: {err}"
        );
        assert!(errors[2].contains("committed nothing"), "{err}");
        assert!(out.contains("rows=0"), "{begin} {fault:?}: {out} {err}");
    }
}

#[tokio::test]
async fn server_errors_keep_their_numbers_and_causes_come_from_evidence() {
    use mysql_async::prelude::*;
    let server = server().await;
    let proxy = proxy(&server).await;
    let mut conn = connect(&proxy).await;
    // KILL CONNECTION_ID() behaves as it does directly: the server's own 1927.
    let e = conn.query_drop("KILL CONNECTION_ID()").await.unwrap_err();
    assert_eq!(code(&e), 1927, "{e}");
    assert_eq!(one(&mut conn, "SELECT 'after'").await.unwrap(), "after");

    // Losses between statements are absorbed, each under the cause the evidence shows.
    let absorbed = |cause: &str| {
        proxy
            .stats()
            .absorbed_by_cause()
            .get(cause)
            .copied()
            .unwrap_or(0)
    };
    let id = backend_id(&mut conn).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(one(&mut conn, "SELECT 'k'").await.unwrap(), "k");
    assert_eq!(
        absorbed("connection_killed"),
        1,
        "{:?}",
        proxy.stats().absorbed_by_cause()
    );
    // The proof of a restart is a server that started later (Uptime has whole seconds, so
    // at least 2 s later) or thread ids that went down; a throwaway server has few
    // threads, so give each life its 2 s, busy so that the backend is not released idle.
    async fn age(conn: &mut mysql_async::Conn) {
        for _ in 0..5 {
            one(conn, "SELECT 1").await.unwrap();
            tokio::time::sleep(Duration::from_millis(450)).await;
        }
    }
    age(&mut conn).await;
    server.restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(one(&mut conn, "SELECT 'r'").await.unwrap(), "r");
    age(&mut conn).await;
    server.crash_and_restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(one(&mut conn, "SELECT 'c'").await.unwrap(), "c");
    assert_eq!(
        absorbed("server_restart"),
        2,
        "{:?}",
        proxy.stats().absorbed_by_cause()
    );
    assert_eq!(
        absorbed("connection_killed"),
        1,
        "a restart is not a KILL: {:?}",
        proxy.stats().absorbed_by_cause()
    );
    assert_eq!(
        absorbed("idle_timeout"),
        0,
        "{:?}",
        proxy.stats().absorbed_by_cause()
    );
    let _: Vec<i32> = conn.query("SELECT 1").await.unwrap();
}
