//! `goneaway proxy --config FILE` reloads the file on SIGHUP, under load: accounts, limits
//! and the backend change without a dropped session or a client-visible error, and a file
//! that does not read is refused with the old configuration left in force.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goneaway_harness::{Server, DATABASE};
use mysql_async::prelude::*;

/// Kills the proxy if the test ends before it did.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(port: u16, backend: &Server, accounts: &[(&str, &str)], max_clients: usize) -> String {
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\nbackend = \"{}\"\nserver_accounts = false\nmax_clients = {max_clients}\n",
        backend.url()
    );
    for (user, password) in accounts {
        text.push_str(&format!(
            "\n[[accounts]]\nuser = \"{user}\"\npassword = \"{password}\"\n"
        ));
    }
    text
}

fn opts(port: u16, user: &str, password: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(DATABASE))
        .prefer_socket(false)
}

async fn port_of(conn: &mut mysql_async::Conn) -> Result<u16, mysql_async::Error> {
    Ok(conn.query_first("SELECT @@port").await?.unwrap_or(0))
}

fn hangup(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (at most 10 s) until the proxy's standard error has said `what` `n` times.
async fn said(log: &Mutex<String>, what: &str, n: usize) {
    let started = Instant::now();
    while log.lock().unwrap().matches(what).count() < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the proxy did not say {what:?}:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_accounts_limits_and_the_backend_under_load_without_errors() {
    let (a, b) = tokio::join!(Server::start_default(), Server::start_default());
    let (a, b) = (a.expect("server a"), b.expect("server b"));
    for s in [&a, &b] {
        s.admin("CREATE TABLE goneaway.reload_t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let port = crate::util::free_port();
    std::fs::write(&file, config(port, &a, &[("app", "app-pw-1")], 50)).unwrap();
    let mut child = crate::util::goneaway()
        .args(["--log", "info", "proxy", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the goneaway binary runs");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let child = Guard(child);
    said(&log, "listening on", 1).await;

    // Load: four sessions, each with its own time zone (state the move must carry), running
    // statements back to back until told to stop (bounded: 4,000 statements or 60 s each).
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let on_b = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..4u32 {
        let (stop, errors, on_b) = (stop.clone(), errors.clone(), on_b.clone());
        let (opts, b_port) = (opts(port, "app", "app-pw-1"), b.port());
        load.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.expect("logs in");
            let zone = format!("+0{i}:00");
            conn.query_drop(format!("SET time_zone = '{zone}'"))
                .await
                .unwrap();
            let started = Instant::now();
            let mut moved = false;
            for _ in 0..4000 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                match conn
                    .query_first::<(u16, String), _>("SELECT @@port, @@time_zone")
                    .await
                {
                    Ok(Some((p, mine))) => {
                        assert_eq!(mine, zone, "the session's own time zone, on either server");
                        if p == b_port && !moved {
                            moved = true;
                            on_b.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => errors.lock().unwrap().push("no row".into()),
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            conn.disconnect().await.unwrap();
        }));
    }
    // A session in a transaction when the backend moves: it finishes it on the old
    // server, then follows.
    let mut tx = mysql_async::Conn::new(opts(port, "app", "app-pw-1"))
        .await
        .unwrap();
    tx.query_drop("BEGIN").await.unwrap();
    tx.query_drop("INSERT INTO reload_t VALUES (1, 1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new configuration: another server, one more account, another limit.
    std::fs::write(
        &file,
        config(port, &b, &[("app", "app-pw-1"), ("ops", "ops-pw-2")], 60),
    )
    .unwrap();
    hangup(&child.0);
    said(&log, "goneaway proxy: configuration reloaded", 1).await;
    assert!(
        log.lock()
            .unwrap()
            .contains("changed: backend, accounts, max_clients"),
        "{}",
        log.lock().unwrap()
    );
    // The new account logs in, and new sessions go to the new server.
    let mut ops = mysql_async::Conn::new(opts(port, "ops", "ops-pw-2"))
        .await
        .expect("an account added by the reload logs in");
    assert_eq!(port_of(&mut ops).await.unwrap(), b.port());
    // The transaction goes on where it began, and commits there.
    assert_eq!(port_of(&mut tx).await.unwrap(), a.port());
    tx.query_drop("INSERT INTO reload_t VALUES (2, 2)")
        .await
        .unwrap();
    tx.query_drop("COMMIT").await.unwrap();
    assert_eq!(port_of(&mut tx).await.unwrap(), b.port(), "then it follows");
    let mut direct_a = a.admin_conn().await.unwrap();
    let n: Option<i64> = direct_a
        .query_first("SELECT COUNT(*) FROM goneaway.reload_t")
        .await
        .unwrap();
    assert_eq!(
        n,
        Some(2),
        "all of the transaction, on the server it ran on"
    );

    // Every loaded session moves to the new server, with its time zone, and sees no error.
    let started = Instant::now();
    while on_b.load(Ordering::Relaxed) < 4 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        on_b.load(Ordering::Relaxed),
        4,
        "every session followed the backend"
    );

    // A file that does not read is refused; the old configuration stays in force.
    std::fs::write(&file, "listen = [this is not toml").unwrap();
    hangup(&child.0);
    said(&log, "goneaway proxy: configuration not reloaded", 1).await;
    let mut again = mysql_async::Conn::new(opts(port, "ops", "ops-pw-2"))
        .await
        .expect("the last good configuration is still in force");
    assert_eq!(port_of(&mut again).await.unwrap(), b.port());

    // An account removed by a reload cannot log in any more; its open session goes on.
    std::fs::write(&file, config(port, &b, &[("app", "app-pw-1")], 60)).unwrap();
    hangup(&child.0);
    said(&log, "goneaway proxy: configuration reloaded", 2).await;
    let refused = mysql_async::Conn::new(opts(port, "ops", "ops-pw-2"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(refused.to_string().contains("Access denied"), "{refused}");
    assert_eq!(port_of(&mut ops).await.unwrap(), b.port());

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    let text = log.lock().unwrap().clone();
    for secret in ["app-pw-1", "ops-pw-2", goneaway_harness::APP_PASSWORD] {
        assert!(!text.contains(secret), "a password reached the log");
    }
}
