//! A Python application (PyMySQL, Debian's python3-pymysql) through the proxy: the worker that
//! connects once and idles between jobs, the classic victim of "MySQL server has gone away".

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::common::*;

/// A long-lived PyMySQL connection driven line by line: each input line is a statement (or
/// `sleep SECONDS`), each output line `ok VALUE` or `err REPR`.
const WORKER: &str = r#"
import sys, time, pymysql
host, port, user, password = sys.argv[1:5]
conn = pymysql.connect(host=host, port=int(port), user=user, password=password,
                       database="goneaway", autocommit=True, connect_timeout=10)
for line in sys.stdin:
    command = line.strip()
    try:
        if command.startswith("sleep "):
            time.sleep(float(command[6:]))
            print("ok slept", flush=True)
        else:
            with conn.cursor() as cursor:
                cursor.execute(command)
                row = cursor.fetchone()
            print("ok", row[0] if row else "", flush=True)
    except Exception as e:
        print("err", repr(e), flush=True)
"#;

pub(crate) struct Worker {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    pub(crate) fn start(port: u16) -> Worker {
        // Debian's python3: the one python3-pymysql is installed for (`make deps`).
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", WORKER, "127.0.0.1", &port.to_string(), USER, PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("/usr/bin/python3 runs (make deps installs python3-pymysql)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Worker {
            _child: child,
            stdin,
            lines,
        }
    }

    /// Sends one command and returns the worker's answer line.
    pub(crate) async fn run(&mut self, command: &str) -> String {
        self.send(command).await;
        self.answer(command).await
    }

    /// Sends one command without waiting for its answer.
    pub(crate) async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The answer to the command sent last.
    pub(crate) async fn answer(&mut self, command: &str) -> String {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command:?} within 60 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("the Python worker exited on {command:?}"));
        line
    }
}

#[tokio::test]
async fn pymysql_worker_gets_gone_away_directly_but_not_through_the_proxy() {
    let server = server().await;

    // Directly: the worker's connection dies while it idles past wait_timeout.
    let mut direct = Worker::start(server.port());
    assert_eq!(direct.run("SELECT 1").await, "ok 1");
    direct.run("sleep 3").await;
    let lost = direct.run("SELECT 1").await;
    assert!(
        lost.starts_with("err") && (lost.contains("2006") || lost.contains("2013")),
        "{lost}"
    );
    // And goneaway explains what the Python application printed.
    let d = goneaway_core::classify_text(&lost);
    assert!(
        d.mentions(goneaway_core::Cause::IdleTimeout),
        "{lost}: {d:?}"
    );

    // Through the proxy, the same worker, unchanged, sees nothing of it.
    let proxy = proxy(&server).await;
    let mut worker = Worker::start(proxy.local_addr().port());
    assert_eq!(
        worker
            .run("CREATE TABLE jobs (id INT AUTO_INCREMENT PRIMARY KEY, job VARCHAR(20))")
            .await,
        "ok "
    );
    worker.run("sleep 3").await;
    assert_eq!(
        worker
            .run("INSERT INTO jobs (job) VALUES ('after idle')")
            .await,
        "ok "
    );

    // An administrator kills its server connection while it idles.
    let id: u32 = worker
        .run("SELECT CONNECTION_ID()")
        .await
        .strip_prefix("ok ")
        .unwrap()
        .parse()
        .unwrap();
    server.kill_connection(id).await.unwrap();
    assert_eq!(
        worker
            .run("INSERT INTO jobs (job) VALUES ('after kill')")
            .await,
        "ok "
    );

    // The server restarts while it idles.
    server.restart().await.unwrap();
    assert_eq!(
        worker
            .run("INSERT INTO jobs (job) VALUES ('after restart')")
            .await,
        "ok "
    );

    // Every write landed exactly once.
    assert_eq!(worker.run("SELECT COUNT(*) FROM jobs").await, "ok 3");
    assert_eq!(
        worker.run("SELECT COUNT(DISTINCT job) FROM jobs").await,
        "ok 3"
    );
}
