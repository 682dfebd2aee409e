//! The proxy in front of a cluster: a planned switchover and an unplanned failover of a
//! real GTID replication pair, two proxies in front of one pair through a switchover, the
//! Galera node that serves as writer killed, a moved transaction that cannot be replayed
//! told so in words, a single read-only server that still answers 1290 as it does
//! directly, a replica's lag as the monitor reads it, and reads on replicas (where they
//! go, a session reading its own writes, a replica crashed under readers).
//!
//! Clients are real (mysql_async connections, text and prepared, and the `mariadb`
//! client); every write carries a unique id, so that what the clients were told is checked
//! against what the new writer holds: every acknowledged write exactly once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use goneaway_harness::{Galera, Replication, Server};
use goneaway_proxy::{Account, BackendTarget, ClusterKind, Proxy, ProxyConfig, ServerAddr};
use mysql_async::prelude::*;
use tokio::io::AsyncWriteExt;

use crate::common::{mariadb_as, wait_for_marks};

/// The account the proxy logs in to the servers with: everything on the test's schemas and
/// the right to read replication state, but not READ ONLY ADMIN, so that `read_only`
/// applies to it as to a real application account.
const APP: &str = "app";
const APP_PASSWORD: &str = "app-password";
/// The account clients log in to the proxy with.
const CLIENT: &str = "client";
const CLIENT_PASSWORD: &str = "client-password";

/// Every test here is bounded: a hang is a failure, not a stuck CI run.
const TEST_BOUND: Duration = Duration::from_secs(240);
/// One client statement, at most (switchover_wait is 30 s).
const STATEMENT_BOUND: Duration = Duration::from_secs(45);

/// Creates the application account on `server` (on a primary or a Galera node it
/// replicates to the other members).
async fn app_account(server: &Server) {
    server
        .admin(&format!(
            "CREATE USER '{APP}'@'%' IDENTIFIED BY '{APP_PASSWORD}';
             GRANT ALL ON goneaway.* TO '{APP}'@'%';
             GRANT ALL ON goneaway_proxy.* TO '{APP}'@'%';
             GRANT SLAVE MONITOR ON *.* TO '{APP}'@'%';"
        ))
        .await
        .expect("the application account");
}

/// A primary and a replica with the application account and an empty ledger, the replica
/// caught up.
async fn ledger_pair() -> Replication {
    let set = Replication::builder()
        .replicas(1)
        .start()
        .await
        .expect("a replication pair");
    app_account(set.member(0)).await;
    set.member(0)
        .admin("CREATE TABLE goneaway.ledger (id BIGINT PRIMARY KEY, worker INT NOT NULL)")
        .await
        .unwrap();
    set.wait_caught_up().await.unwrap();
    set
}

/// A proxy with the defaults in front of `set`, once it names the primary the writer and
/// has made its commit marks' table there.
async fn pair_proxy(set: &Replication) -> Proxy {
    let proxy = cluster_proxy(
        &[set.member(0), set.member(1)],
        ClusterKind::Replication,
        |_| {},
    )
    .await;
    wait_writer(&proxy, set.member(0)).await;
    wait_for_marks(&proxy).await;
    proxy
}

/// The code, SQLSTATE and message of the error packet a statement got.
fn server_error(e: mysql_async::Error) -> (u16, String, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.state, s.message),
        other => panic!("expected an error packet, got {other}"),
    }
}

fn addr(server: &Server) -> ServerAddr {
    ServerAddr {
        host: "127.0.0.1".into(),
        port: server.port(),
    }
}

/// A proxy whose backend URL names `members[0]` and whose servers are all `members`.
async fn cluster_proxy(
    members: &[&Server],
    kind: ClusterKind,
    adjust: impl FnOnce(&mut ProxyConfig),
) -> Proxy {
    let backend = BackendTarget::from_url(&format!(
        "mysql://{APP}:{APP_PASSWORD}@127.0.0.1:{}/goneaway",
        members[0].port()
    ))
    .unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.servers = members.iter().map(|s| addr(s)).collect();
    config.cluster = kind;
    config.accounts = vec![Account {
        user: CLIENT.into(),
        password: CLIENT_PASSWORD.into(),
    }];
    config.server_accounts = false;
    config.connect_timeout = Duration::from_secs(3);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    adjust(&mut config);
    Proxy::start(config).await.expect("proxy starts")
}

/// Waits until the proxy's monitor names `server` the writer.
async fn wait_writer(proxy: &Proxy, server: &Server) {
    let started = Instant::now();
    loop {
        let view = proxy.cluster();
        if view
            .writer
            .as_ref()
            .is_some_and(|w| w.port == server.port())
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the monitor never named {} the writer: {}",
            server.port(),
            view.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client_opts(proxy: &Proxy) -> mysql_async::OptsBuilder {
    client_opts_at(proxy.local_addr().port())
}

/// A client's options towards whatever listens on `port` (a proxy, a load balancer).
fn client_opts_at(port: u16) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(CLIENT))
        .pass(Some(CLIENT_PASSWORD))
        .db_name(Some("goneaway"))
        .prefer_socket(false)
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Ids of the writes answered OK.
    acked: Vec<i64>,
    /// Every error, with the statement.
    errors: Vec<String>,
    /// The longest statement, from sending it to its answer.
    longest: Duration,
    statements: u64,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.acked.extend(other.acked);
        self.errors.extend(other.errors);
        self.longest = self.longest.max(other.longest);
        self.statements += other.statements;
    }
}

/// One client through the proxy until `stop`: an autocommit insert with a unique id, then
/// a read of its own rows (checked to hold every acknowledged write when `read_your_writes`),
/// as text queries or, with `prepared`, as prepared statements.
async fn client(
    proxy_opts: mysql_async::OptsBuilder,
    worker: i64,
    prepared: bool,
    read_your_writes: bool,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut conn = mysql_async::Conn::new(proxy_opts)
        .await
        .expect("a client connects through the proxy");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < 100_000 {
        i += 1;
        let id = worker * 1_000_000 + i;
        let started = Instant::now();
        let write = if prepared {
            tokio::time::timeout(
                STATEMENT_BOUND,
                conn.exec_drop(
                    "INSERT INTO ledger (id, worker) VALUES (?, ?)",
                    (id, worker),
                ),
            )
            .await
        } else {
            tokio::time::timeout(
                STATEMENT_BOUND,
                conn.query_drop(format!(
                    "INSERT INTO ledger (id, worker) VALUES ({id}, {worker})"
                )),
            )
            .await
        };
        seen.longest = seen.longest.max(started.elapsed());
        seen.statements += 1;
        match write {
            Ok(Ok(())) => seen.acked.push(id),
            Ok(Err(e)) => seen.errors.push(format!("insert {id}: {e}")),
            Err(_) => seen
                .errors
                .push(format!("insert {id}: no answer in {STATEMENT_BOUND:?}")),
        }
        let started = Instant::now();
        let sql = format!("SELECT COUNT(*) FROM ledger WHERE worker = {worker}");
        let read: Result<Result<Option<i64>, _>, _> = if prepared {
            tokio::time::timeout(STATEMENT_BOUND, conn.exec_first(sql, ())).await
        } else {
            tokio::time::timeout(STATEMENT_BOUND, conn.query_first(sql)).await
        };
        seen.longest = seen.longest.max(started.elapsed());
        seen.statements += 1;
        match read {
            Ok(Ok(Some(n))) if read_your_writes && (n as usize) < seen.acked.len() => {
                seen.errors.push(format!(
                    "a read saw {n} rows of {} acknowledged",
                    seen.acked.len()
                ))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => seen.errors.push(format!("read: {e}")),
            Err(_) => seen
                .errors
                .push(format!("read: no answer in {STATEMENT_BOUND:?}")),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = conn.disconnect().await;
    seen
}

/// One client through the proxy until `stop`, as sysbench's read-write test: transactions
/// of prepared statements only (BEGIN, a read, a write with a unique id, COMMIT, all
/// executed as prepared statements), so that it never sends a text query.
async fn transaction_client(
    proxy_opts: mysql_async::OptsBuilder,
    worker: i64,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut conn = mysql_async::Conn::new(proxy_opts)
        .await
        .expect("a client connects through the proxy");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < 100_000 {
        i += 1;
        let id = worker * 1_000_000 + i;
        let started = Instant::now();
        let tx = async {
            conn.exec_drop("BEGIN", ()).await?;
            let _: Option<i64> = conn
                .exec_first("SELECT COUNT(*) FROM ledger WHERE worker = ?", (worker,))
                .await?;
            conn.exec_drop(
                "INSERT INTO ledger (id, worker) VALUES (?, ?)",
                (id, worker),
            )
            .await?;
            conn.exec_drop("COMMIT", ()).await
        };
        let r = tokio::time::timeout(STATEMENT_BOUND * 4, tx).await;
        seen.longest = seen.longest.max(started.elapsed());
        seen.statements += 4;
        match r {
            Ok(Ok(())) => seen.acked.push(id),
            Ok(Err(e)) => {
                seen.errors.push(format!("transaction {id}: {e}"));
                let _ = conn.query_drop("ROLLBACK").await;
            }
            Err(_) => {
                seen.errors
                    .push(format!("transaction {id}: no answer in time"));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = conn.disconnect().await;
    seen
}

/// Several clients, half of them with prepared statements.
fn clients(
    proxy: &Proxy,
    n: i64,
    read_your_writes: bool,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (1..=n)
        .map(|w| {
            tokio::spawn(client(
                client_opts(proxy),
                w,
                w % 2 == 0,
                read_your_writes,
                stop.clone(),
            ))
        })
        .collect()
}

/// The worker id of the `mariadb` client's rows.
const CLI_WORKER: i64 = 100;

/// The real `mariadb` client running `rows` autocommit inserts, 20 ms apart, in one
/// session; it stops at the first error, as it does in batch mode.
fn mariadb_client(proxy: &Proxy, rows: i64) -> tokio::process::Child {
    let mut child = mariadb_as(proxy, CLIENT, CLIENT_PASSWORD)
        .kill_on_drop(true)
        .spawn()
        .expect("the mariadb client runs");
    let mut script = String::new();
    for i in 1..=rows {
        let id = CLI_WORKER * 1_000_000 + i;
        script.push_str(&format!(
            "INSERT INTO ledger (id, worker) VALUES ({id}, {CLI_WORKER});\nDO SLEEP(0.02);\n"
        ));
    }
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(script.as_bytes()).await;
    });
    child
}

/// Waits for the `mariadb` client and returns what it printed when it failed.
async fn mariadb_result(child: tokio::process::Child) -> Result<(), String> {
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .map_err(|_| "the mariadb client did not finish in 90 s".to_owned())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Every row id of the ledger on `server`, read as root (with Galera's causality wait,
/// so that a node shows every write certified before the read).
async fn ledger(server: &Server, galera: bool) -> Vec<i64> {
    let mut conn = server.admin_conn().await.unwrap();
    if galera {
        conn.query_drop("SET SESSION wsrep_sync_wait = 1")
            .await
            .unwrap();
    }
    let ids: Vec<i64> = conn
        .query("SELECT id FROM goneaway.ledger ORDER BY id")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    ids
}

/// Every write the clients were told succeeded is there once, and nothing else.
fn check_ledger(rows: &[i64], acked: &[i64]) {
    let rows_set: BTreeSet<i64> = rows.iter().copied().collect();
    assert_eq!(rows_set.len(), rows.len(), "a row twice");
    let acked_set: BTreeSet<i64> = acked.iter().copied().collect();
    assert_eq!(acked_set.len(), acked.len(), "an id acknowledged twice");
    let missing: Vec<_> = acked_set.difference(&rows_set).take(10).collect();
    let extra: Vec<_> = rows_set.difference(&acked_set).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "acknowledged but missing: {missing:?}; present but never acknowledged: {extra:?}"
    );
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Seen>>) -> Seen {
    let mut all = Seen::default();
    for h in handles {
        all.merge(h.await.expect("a client task"));
    }
    all
}

/// Clients write and read through the proxy while an operator switches the primary over:
/// the old one read-only, the replica caught up and promoted, the old one following it.
/// No client sees an error; every acknowledged write is on the new primary once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_switchover_is_invisible_to_clients() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        let proxy = pair_proxy(&set).await;

        let stop = Arc::new(AtomicBool::new(false));
        let workers = clients(&proxy, 4, true, &stop);
        let cli = mariadb_client(&proxy, 250);
        tokio::time::sleep(Duration::from_secs(1)).await;

        // What an operator does.
        let switch = Instant::now();
        set.switchover(1).await.unwrap();
        let switched = switch.elapsed();
        wait_writer(&proxy, set.member(1)).await;

        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let mut seen = collect(workers).await;
        let cli = mariadb_result(cli).await;
        let stats = proxy.stats();
        println!(
            "planned switchover: {} statements, {} acknowledged writes, {} errors, longest statement {:?} \
             (the switchover took {switched:?}); writer changes {}, backends that waited {} ({:.3} s in all), \
             read-only refusals redirected {}",
            seen.statements,
            seen.acked.len(),
            seen.errors.len(),
            seen.longest,
            stats.writer_changes.load(Ordering::Relaxed),
            stats.switchover_waits.load(Ordering::Relaxed),
            stats.switchover_wait_seconds(),
            stats.read_only_redirects.load(Ordering::Relaxed),
        );
        assert!(seen.errors.is_empty(), "clients saw errors: {:?}", seen.errors);
        assert_eq!(cli, Ok(()), "the mariadb client");
        seen.acked.extend((1..=250).map(|i| CLI_WORKER * 1_000_000 + i));
        check_ledger(&ledger(set.member(1), false).await, &seen.acked);
        assert!(stats.writer_changes.load(Ordering::Relaxed) >= 1);
        // Writes went on after the switchover, on the new primary.
        let after: Option<i64> = set
            .member(1)
            .admin_conn()
            .await
            .unwrap()
            .query_first("SELECT COUNT(*) FROM goneaway.ledger WHERE id < 100000000")
            .await
            .unwrap();
        assert!(after.unwrap_or(0) > 0);
        // The metrics say where the writer is.
        let metrics = crate::common::http_get(proxy.metrics_addr().unwrap(), "/metrics").await;
        let writer = format!(
            "goneaway_proxy_server_role{{server=\"127.0.0.1:{}\",role=\"writer\"}} 1",
            set.member(1).port()
        );
        assert!(metrics.contains(&writer), "{metrics}");
        assert!(metrics.contains("goneaway_proxy_writer_changes_total"));
    })
    .await
    .expect("the test finished in time");
}

/// A planned switchover under clients that only execute prepared statements, in
/// transactions (sysbench's read-write pattern): they move to the new writer at their next
/// BEGIN, and a transaction the old writer refuses as read-only (1290 at its write or its
/// COMMIT) is replayed on the new writer instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_moves_transactions_of_prepared_statements() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        let proxy = pair_proxy(&set).await;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (1..=4)
            .map(|w| tokio::spawn(transaction_client(client_opts(&proxy), w, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        set.switchover(1).await.unwrap();
        let mut new = set.member(1).admin_conn().await.unwrap();
        let at_switch: Option<i64> = new
            .query_first("SELECT COUNT(*) FROM goneaway.ledger")
            .await
            .unwrap();
        wait_writer(&proxy, set.member(1)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let seen = collect(workers).await;
        let stats = proxy.stats();
        println!(
            "switchover under prepared transactions: {} acknowledged, {} errors, longest transaction {:?}; \
             read-only refusals redirected {}, absorbed {:?}, commits resolved {:?}",
            seen.acked.len(),
            seen.errors.len(),
            seen.longest,
            stats.read_only_redirects.load(Ordering::Relaxed),
            stats.absorbed_by_cause(),
            stats.commits_resolved(),
        );
        assert!(seen.errors.is_empty(), "clients saw errors: {:?}", seen.errors);
        check_ledger(&ledger(set.member(1), false).await, &seen.acked);
        // The sessions moved: transactions committed on the new primary after the switch.
        assert!(
            seen.acked.len() as i64 > at_switch.unwrap_or(0) + 20,
            "{} acknowledged, {at_switch:?} at the switch",
            seen.acked.len()
        );
        assert!(
            !stats.absorbed_by_cause().contains_key("unknown"),
            "a redirect is no loss: {:?}",
            stats.absorbed_by_cause()
        );
    })
    .await
    .expect("the test finished in time");
}

/// The primary crashes under the clients; the replica is promoted once it has applied what
/// it received. The clients' statements wait for the new writer and go on there: reads
/// replayed, autocommit writes resolved by their commit marks (so none is "outcome
/// unknown"), and every acknowledged write is on the new primary once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplanned_failover_continues_on_the_promoted_replica() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = Replication::builder().replicas(1).start().await.expect("a replication pair");
        app_account(set.member(0)).await;
        set.member(0)
            .admin("CREATE TABLE goneaway.ledger (id BIGINT PRIMARY KEY, worker INT NOT NULL)")
            .await
            .unwrap();
        set.semi_sync(1).await.unwrap();
        set.wait_caught_up().await.unwrap();
        let proxy = cluster_proxy(
            &[set.member(0), set.member(1)],
            ClusterKind::Replication,
            |c| c.autocommit_write_marks = true,
        )
        .await;
        wait_writer(&proxy, set.member(0)).await;
        // The marks' table exists before the crash (made at start, on the writer).
        wait_for_marks(&proxy).await;

        let stop = Arc::new(AtomicBool::new(false));
        let workers = clients(&proxy, 4, true, &stop);
        tokio::time::sleep(Duration::from_secs(1)).await;

        let crash = Instant::now();
        set.member(0).crash().await.unwrap();
        // A failover tool's detection time, then the promotion.
        tokio::time::sleep(Duration::from_secs(1)).await;
        set.apply_relay_log(1).await.unwrap();
        set.promote(1).await.unwrap();
        let promoted = crash.elapsed();
        wait_writer(&proxy, set.member(1)).await;

        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let seen = collect(workers).await;
        let stats = proxy.stats();
        println!(
            "unplanned failover: {} statements, {} acknowledged writes, {} errors, longest statement {:?} \
             (promoted {promoted:?} after the crash); writer changes {}, backends that waited {} ({:.3} s in all), \
             absorbed {:?}, commits resolved {:?}, errors sent {:?}",
            seen.statements,
            seen.acked.len(),
            seen.errors.len(),
            seen.longest,
            stats.writer_changes.load(Ordering::Relaxed),
            stats.switchover_waits.load(Ordering::Relaxed),
            stats.switchover_wait_seconds(),
            stats.absorbed_by_cause(),
            stats.commits_resolved(),
            stats.errors_by_kind(),
        );
        assert!(seen.errors.is_empty(), "clients saw errors: {:?}", seen.errors);
        check_ledger(&ledger(set.member(1), false).await, &seen.acked);
        assert!(stats.switchover_waits.load(Ordering::Relaxed) >= 1);
    })
    .await
    .expect("the test finished in time");
}

/// A TCP round-robin in front of several proxies, as any load balancer in front of a fleet of
/// them: each new client connection goes to the next proxy, its bytes copied both ways.
struct RoundRobin {
    addr: std::net::SocketAddr,
    /// Connections each upstream got, in the order of `upstreams`.
    counts: Arc<Vec<std::sync::atomic::AtomicU64>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    async fn start(upstreams: Vec<std::net::SocketAddr>) -> RoundRobin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Vec<_>> = Arc::new(
            upstreams
                .iter()
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        );
        let task = {
            let counts = counts.clone();
            tokio::spawn(async move {
                // A test opens a handful of connections; the bound is for a runaway client.
                for n in 0..1000 {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    let i = n % upstreams.len();
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    let upstream = upstreams[i];
                    tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            })
        };
        RoundRobin { addr, counts, task }
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The newest id each worker has on `server`.
async fn newest_by_worker(server: &Server) -> std::collections::BTreeMap<i64, i64> {
    let mut conn = server.admin_conn().await.unwrap();
    let rows: Vec<(i64, i64)> = conn
        .query("SELECT worker, MAX(id) FROM goneaway.ledger GROUP BY worker")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    rows.into_iter().collect()
}

/// Two goneaway proxies front the same replication pair behind a TCP round-robin, each
/// with its own monitor, while an operator switches the primary over. No client sees an error, every acknowledged write is on the new primary exactly
/// once, both proxies name the new writer, and every client, whichever proxy it went
/// through, goes on writing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_follow_one_switchover() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        let members = [set.member(0), set.member(1)];
        // With autocommit_write_marks, a wrapped write whose COMMIT the old primary
        // refuses (read_only set between the INSERT and the COMMIT) runs again on the new
        // writer: each proxy's marks are its own (a per-run id in every token).
        let marks = |c: &mut ProxyConfig| c.autocommit_write_marks = true;
        let a = cluster_proxy(&members, ClusterKind::Replication, marks).await;
        let b = cluster_proxy(&members, ClusterKind::Replication, marks).await;
        for proxy in [&a, &b] {
            wait_writer(proxy, set.member(0)).await;
            wait_for_marks(proxy).await;
        }
        let balancer = RoundRobin::start(vec![a.local_addr(), b.local_addr()]).await;

        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 1..=6 {
            workers.push(tokio::spawn(client(
                client_opts_at(balancer.addr.port()),
                w,
                w % 2 == 0,
                true,
                stop.clone(),
            )));
            // One login at a time, so that the round-robin alternates the proxies in order.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        let switch = Instant::now();
        set.switchover(1).await.unwrap();
        let switched = switch.elapsed();
        for proxy in [&a, &b] {
            wait_writer(proxy, set.member(1)).await;
        }
        let at_switch = newest_by_worker(set.member(1)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let seen = collect(workers).await;
        for (name, proxy) in [("a", &a), ("b", &b)] {
            let stats = proxy.stats();
            println!(
                "two proxies, proxy {name}: {} clients, writer changes {}, backends that waited {} ({:.3} s), \
                 read-only refusals redirected {}, errors sent {:?} (the switchover took {switched:?})",
                stats.logins.load(Ordering::Relaxed),
                stats.writer_changes.load(Ordering::Relaxed),
                stats.switchover_waits.load(Ordering::Relaxed),
                stats.switchover_wait_seconds(),
                stats.read_only_redirects.load(Ordering::Relaxed),
                stats.errors_by_kind(),
            );
            assert!(stats.writer_changes.load(Ordering::Relaxed) >= 1, "proxy {name}");
        }
        println!(
            "two proxies: {} statements, {} acknowledged writes, {} errors, longest statement {:?}",
            seen.statements,
            seen.acked.len(),
            seen.errors.len(),
            seen.longest
        );
        let counts: Vec<u64> = balancer
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [3, 3], "the round-robin gave each proxy half the clients");
        assert!(seen.errors.is_empty(), "clients saw errors: {:?}", seen.errors);
        check_ledger(&ledger(set.member(1), false).await, &seen.acked);
        // Every client wrote on the new primary after the switchover, through either proxy.
        let at_end = newest_by_worker(set.member(1)).await;
        for w in 1..=6 {
            assert!(
                at_end.get(&w) > at_switch.get(&w),
                "worker {w} wrote nothing after the switchover: {:?} then {:?}",
                at_switch.get(&w),
                at_end.get(&w)
            );
        }
        drop(balancer);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

/// The Galera node that serves as the writer is killed: sessions continue on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galera_writer_killed_sessions_continue_on_another_node() {
    tokio::time::timeout(TEST_BOUND, async {
        let cluster = Galera::start().await.expect("a Galera cluster");
        app_account(cluster.node(0)).await;
        cluster
            .node(0)
            .admin("CREATE TABLE goneaway.ledger (id BIGINT PRIMARY KEY, worker INT NOT NULL)")
            .await
            .unwrap();
        let nodes: Vec<&Server> = cluster.nodes().iter().collect();
        // Auto-detected: the nodes say wsrep_on = ON.
        let proxy = cluster_proxy(&nodes, ClusterKind::Auto, |c| {
            c.autocommit_write_marks = true;
        })
        .await;
        wait_writer(&proxy, cluster.node(0)).await;
        assert_eq!(proxy.cluster().kind, ClusterKind::Galera);
        wait_for_marks(&proxy).await;

        let stop = Arc::new(AtomicBool::new(false));
        // Another node may not have applied a write certified a moment ago (Galera's reads
        // are not causal by default), so a read of one's own rows is not checked here.
        let workers = clients(&proxy, 4, false, &stop);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let kill = Instant::now();
        cluster.kill(0).await.unwrap();
        let departed = kill.elapsed();
        let view = proxy.cluster();
        assert!(
            view.writer.as_ref().is_some_and(|w| w.port != cluster.node(0).port()),
            "{}",
            view.describe()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let seen = collect(workers).await;
        let stats = proxy.stats();
        println!(
            "galera writer killed: {} statements, {} acknowledged writes, {} errors, longest statement {:?} \
             (the cluster saw the node gone after {departed:?}); writer changes {}, absorbed {:?}, commits resolved {:?}",
            seen.statements,
            seen.acked.len(),
            seen.errors.len(),
            seen.longest,
            stats.writer_changes.load(Ordering::Relaxed),
            stats.absorbed_by_cause(),
            stats.commits_resolved(),
        );
        assert!(seen.errors.is_empty(), "clients saw errors: {:?}", seen.errors);
        let writer = proxy.cluster().writer.clone().unwrap();
        let node = cluster
            .nodes()
            .iter()
            .find(|n| n.port() == writer.port)
            .unwrap();
        check_ledger(&ledger(node, true).await, &seen.acked);
    })
    .await
    .expect("the test finished in time");
}

/// One read-only server, no cluster: a write gets the server's own 1290, as directly.
#[tokio::test]
async fn single_read_only_server_answers_1290_as_directly() {
    tokio::time::timeout(TEST_BOUND, async {
        let server = Server::start_default().await.expect("a harness server");
        app_account(&server).await;
        server
            .admin("CREATE TABLE goneaway.ledger (id BIGINT PRIMARY KEY, worker INT NOT NULL); SET GLOBAL read_only = ON")
            .await
            .unwrap();
        let backend = BackendTarget::from_url(&format!(
            "mysql://{APP}:{APP_PASSWORD}@127.0.0.1:{}/goneaway",
            server.port()
        ))
        .unwrap();
        let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
        config.accounts = vec![Account {
            user: CLIENT.into(),
            password: CLIENT_PASSWORD.into(),
        }];
        config.server_accounts = false;
        let proxy = Proxy::start(config).await.unwrap();
        let mut direct = mysql_async::Conn::new(
            mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(server.port())
                .user(Some(APP))
                .pass(Some(APP_PASSWORD))
                .db_name(Some("goneaway"))
                .prefer_socket(false),
        )
        .await
        .unwrap();
        let mut through = mysql_async::Conn::new(client_opts(&proxy)).await.unwrap();
        let insert = "INSERT INTO ledger (id, worker) VALUES (1, 1)";
        let d = server_error(direct.query_drop(insert).await.unwrap_err());
        let started = Instant::now();
        let p = server_error(through.query_drop(insert).await.unwrap_err());
        assert_eq!(d.0, 1290, "{d:?}");
        assert_eq!(p, d, "through the proxy as directly");
        assert!(started.elapsed() < Duration::from_secs(1), "answered at once, no waiting");
        // Prepared, too; and the session goes on.
        let p = server_error(through.exec_drop(insert, ()).await.unwrap_err());
        assert_eq!(p.0, 1290);
        let n: Option<i64> = through.query_first("SELECT COUNT(*) FROM ledger").await.unwrap();
        assert_eq!(n, Some(0));
        assert_eq!(proxy.stats().read_only_redirects.load(Ordering::Relaxed), 0);
        assert!(proxy.cluster().servers.is_empty(), "a single server is not polled");
    })
    .await
    .expect("the test finished in time");
}

/// A transaction a switchover moves that cannot be replayed on the new writer (it read
/// `@@server_id`, which differs there): the client is told in words that the writer moved
/// and that the transaction was rolled back, not a bare 1290 nor a lost connection of
/// unknown cause; every statement is refused until ROLLBACK, and the next transaction runs
/// on the new writer. Nothing of the moved transaction is anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_transaction_that_cannot_be_replayed_is_told_the_writer_moved() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        let proxy = pair_proxy(&set).await;
        let mut conn = mysql_async::Conn::new(client_opts(&proxy)).await.unwrap();
        conn.query_drop("BEGIN").await.unwrap();
        let old_id: Option<u32> = conn.query_first("SELECT @@server_id").await.unwrap();
        conn.query_drop("INSERT INTO ledger (id, worker) VALUES (1, 1)")
            .await
            .unwrap();
        // A second session whose COMMIT is the statement the old writer refuses.
        let mut committing = mysql_async::Conn::new(client_opts(&proxy)).await.unwrap();
        committing.query_drop("BEGIN").await.unwrap();
        let _: Option<u32> = committing.query_first("SELECT @@server_id").await.unwrap();
        committing
            .query_drop("INSERT INTO ledger (id, worker) VALUES (4, 2)")
            .await
            .unwrap();
        set.switchover(1).await.unwrap();
        wait_writer(&proxy, set.member(1)).await;
        let (code, state, message) = server_error(
            conn.query_drop("INSERT INTO ledger (id, worker) VALUES (2, 1)")
                .await
                .unwrap_err(),
        );
        println!("the moved transaction: {code} ({state}) {message}");
        assert_eq!((code, state.as_str()), (1927, "08S01"), "{message}");
        let old = format!("127.0.0.1:{}", set.member(0).port());
        for words in [
            "switchover",
            old.as_str(),
            "read-only",
            "rolled the open transaction back",
            "@@server_id",
            "until the client sends ROLLBACK",
        ] {
            assert!(message.contains(words), "{words:?} missing from: {message}");
        }
        assert!(!message.contains("cause: unknown"), "{message}");
        // The failed-transaction state says the same, until ROLLBACK ends it.
        let (code, _, refused) = server_error(conn.query_drop("SELECT 1").await.unwrap_err());
        assert_eq!(code, 1927, "{refused}");
        assert!(refused.contains("switchover"), "{refused}");
        assert!(!refused.contains("cause: unknown"), "{refused}");
        conn.query_drop("ROLLBACK").await.unwrap();
        let (code, _, commit) = server_error(committing.query_drop("COMMIT").await.unwrap_err());
        println!("the moved COMMIT: {code} {commit}");
        assert_eq!(code, 1927, "{commit}");
        for words in [
            "switchover",
            old.as_str(),
            "refused this COMMIT",
            "nothing of the transaction was committed",
        ] {
            assert!(commit.contains(words), "{words:?} missing from: {commit}");
        }
        assert!(!commit.contains("cause: unknown"), "{commit}");
        // The COMMIT ended the transaction: the session goes on outside one.
        let n: Option<i64> = committing
            .query_first("SELECT COUNT(*) FROM ledger")
            .await
            .unwrap();
        assert_eq!(
            n,
            Some(0),
            "nothing of either moved transaction is on the new writer"
        );
        committing.disconnect().await.unwrap();
        // The next transaction runs on the new writer.
        conn.query_drop("BEGIN").await.unwrap();
        let new_id: Option<u32> = conn.query_first("SELECT @@server_id").await.unwrap();
        assert_ne!(new_id, old_id, "the session moved to the new writer");
        conn.query_drop("INSERT INTO ledger (id, worker) VALUES (3, 1)")
            .await
            .unwrap();
        conn.query_drop("COMMIT").await.unwrap();
        assert_eq!(ledger(set.member(1), false).await, vec![3]);
        let stats = proxy.stats();
        assert!(stats.read_only_redirects.load(Ordering::Relaxed) >= 1);
        assert!(
            !stats.absorbed_by_cause().contains_key("unknown"),
            "a redirect is no loss: {:?}",
            stats.absorbed_by_cause()
        );
        conn.disconnect().await.unwrap();
    })
    .await
    .expect("the test finished in time");
}

/// The monitor reads each replica's lag: a replica whose SQL thread waits on a row lock (as
/// a real one behind a long transaction does) shows a growing
/// `goneaway_proxy_replica_lag_seconds` and "N s behind" in the cluster view (which a
/// session that finds no writer is told); a replica with its replication stopped shows no
/// figure at all ("lag unknown"), never a reassuring 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_lag_is_read_by_the_monitor_and_exported() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        let proxy = pair_proxy(&set).await;
        let replica = format!("127.0.0.1:{}", set.member(1).port());
        let series = format!("goneaway_proxy_replica_lag_seconds{{server=\"{replica}\"}} ");
        let metrics_addr = proxy.metrics_addr().unwrap();
        let lag = || async {
            let metrics = crate::common::http_get(metrics_addr, "/metrics").await;
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let evidence = |proxy: &Proxy| {
            proxy
                .cluster()
                .servers
                .iter()
                .find(|s| s.addr.to_string() == replica)
                .map(|s| s.evidence.clone())
                .unwrap_or_default()
        };
        let until = |what: &str, started: Instant| {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: {}",
                proxy.cluster().describe()
            );
        };
        // Caught up.
        let started = Instant::now();
        while lag().await != Some(0) {
            until("a caught-up replica shows lag 0", started);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Falling behind, a second every second.
        let hold = set.hold_sql_thread(1).await.unwrap();
        let started = Instant::now();
        while lag().await.is_none_or(|s| s < 2) {
            until("a held replica's lag reaches 2 s", started);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            evidence(&proxy).contains(" s behind"),
            "{}",
            evidence(&proxy)
        );
        assert_eq!(
            proxy.cluster().writer.as_ref().map(|w| w.port),
            Some(set.member(0).port()),
            "a lagging replica changes nothing about the writer"
        );
        hold.release().await.unwrap();
        let started = Instant::now();
        while lag().await != Some(0) {
            until("the released replica catches up", started);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Replication stopped: the server cannot tell, and neither does the proxy.
        set.stop_replication(1).await.unwrap();
        let started = Instant::now();
        while lag().await.is_some() || !evidence(&proxy).contains("lag unknown") {
            until("a stopped replica shows no lag figure", started);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        set.start_replication(1).await.unwrap();
    })
    .await
    .expect("the test finished in time");
}

/// Waits until the lag of the replica on `port`, as the proxy's monitor last read it,
/// meets `ok`.
async fn wait_lag(proxy: &Proxy, port: u16, ok: impl Fn(Option<u64>) -> bool) {
    let started = Instant::now();
    loop {
        let view = proxy.cluster();
        let lag = view
            .servers
            .iter()
            .find(|s| s.addr.port == port)
            .and_then(|s| s.lag);
        if ok(lag) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            view.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which server ran a read of `here`, the table that names its server.
async fn where_ran(c: &mut mysql_async::Conn) -> String {
    let v: Option<String> = c.query_first("SELECT name FROM here").await.unwrap();
    v.unwrap_or_default()
}

/// [`where_ran`], as a prepared statement.
async fn where_ran_prepared(c: &mut mysql_async::Conn) -> String {
    let v: Option<String> = c
        .exec_first("SELECT name FROM here WHERE name <> ?", ("",))
        .await
        .unwrap();
    v.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_fresh_replica_and_a_session_reads_its_own_writes() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        // The same table on both servers with a row that names the server, written on
        // each alone (not replicated): a read's answer says where it ran.
        set.member(0)
            .admin(
                "SET SESSION sql_log_bin = 0; \
                 CREATE TABLE goneaway.here (name VARCHAR(10)); \
                 INSERT INTO goneaway.here VALUES ('primary')",
            )
            .await
            .unwrap();
        set.member(1)
            .admin(
                "CREATE TABLE goneaway.here (name VARCHAR(10)); \
                 INSERT INTO goneaway.here VALUES ('replica')",
            )
            .await
            .unwrap();
        let proxy = cluster_proxy(
            &[set.member(0), set.member(1)],
            ClusterKind::Replication,
            |c| {
                c.multiplex = true;
                c.replica_reads = true;
                c.max_replica_lag = Duration::from_secs(1);
                c.monitor_interval = Duration::from_millis(100);
            },
        )
        .await;
        wait_writer(&proxy, set.member(0)).await;
        let replica_port = set.member(1).port();
        wait_lag(&proxy, replica_port, |lag| lag == Some(0)).await;
        let mut reader = mysql_async::Conn::new(client_opts(&proxy)).await.unwrap();
        let mut writer = mysql_async::Conn::new(client_opts(&proxy)).await.unwrap();
        assert_eq!(where_ran(&mut reader).await, "replica");
        assert_eq!(where_ran_prepared(&mut reader).await, "replica");
        assert_eq!(where_ran_prepared(&mut reader).await, "replica");
        // A read with warnings: SHOW WARNINGS after it shows the replica's, as directly
        // (it runs on the connection the read ran on); the statement after that goes where
        // it would have.
        let (name, v): (String, i64) = reader
            .query_first("SELECT name, CAST('7x' AS SIGNED) FROM here")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((name.as_str(), v), ("replica", 7));
        let warnings: Vec<(String, u32, String)> =
            reader.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].1, 1292, "{warnings:?}");
        assert_eq!(where_ran(&mut reader).await, "replica");
        // A table the replica does not have (yet): the replica's error is not the answer,
        // the writer's is.
        set.member(0)
            .admin(
                "SET SESSION sql_log_bin = 0; CREATE TABLE goneaway.only_primary (v INT); \
                 INSERT INTO goneaway.only_primary VALUES (7)",
            )
            .await
            .unwrap();
        let v: Option<i64> = reader
            .query_first("SELECT v FROM only_primary")
            .await
            .unwrap();
        assert_eq!(v, Some(7));
        // A stored function may write: its call runs on the writer, and the replica gets
        // its row by replication, once. (The proxy never sends it to a replica, where an
        // account with READ ONLY ADMIN, root say, would write; this one's the replica's
        // read_only would refuse, and the writer would run it then.)
        set.member(0)
            .admin(
                "CREATE USER owner@'%'; GRANT ALL ON *.* TO owner@'%'; GRANT READ_ONLY ADMIN ON *.* TO owner@'%'; \
                 CREATE DEFINER = owner@'%' FUNCTION goneaway.bump() RETURNS INT \
                 DETERMINISTIC MODIFIES SQL DATA BEGIN INSERT INTO goneaway.ledger VALUES (500, 5); RETURN 1; END",
            )
            .await
            .unwrap();
        set.wait_caught_up().await.unwrap();
        let v: Option<i64> = reader.query_first("SELECT bump()").await.unwrap();
        assert_eq!(v, Some(1));
        set.wait_caught_up().await.unwrap();
        for member in [set.member(0), set.member(1)] {
            let mut c = member.admin_conn().await.unwrap();
            let n: Option<i64> = c
                .query_first("SELECT COUNT(*) FROM goneaway.ledger WHERE id = 500")
                .await
                .unwrap();
            assert_eq!(n, Some(1), "the function's row, once, on {}", member.port());
        }
        reader
            .query_drop("DELETE FROM ledger WHERE id = 500")
            .await
            .unwrap();
        // Reads that depend on the server or the connection stay on the writer.
        let ro: Option<i64> = reader.query_first("SELECT @@read_only").await.unwrap();
        assert_eq!(ro, Some(0), "the application asked the writer");
        // In a transaction every statement goes to the writer.
        reader.query_drop("BEGIN").await.unwrap();
        assert_eq!(where_ran(&mut reader).await, "primary");
        reader.query_drop("COMMIT").await.unwrap();
        // The statement after a COMMIT runs on the connection that committed (its
        // @@last_gtid is there); this one, then, and the next read is a candidate again.
        reader.query_drop("DO 1").await.unwrap();
        // Read your writes: with the replica's SQL thread held, the session that wrote
        // reads on the writer, where its write is.
        let hold = set.hold_sql_thread(1).await.unwrap();
        writer
            .query_drop("INSERT INTO ledger (id, worker) VALUES (1, 1)")
            .await
            .unwrap();
        let n: Option<i64> = writer
            .query_first("SELECT COUNT(*) FROM ledger WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(n, Some(1), "a session reads its own write");
        assert_eq!(where_ran(&mut writer).await, "primary");
        assert_eq!(where_ran_prepared(&mut writer).await, "primary");
        // A replica past max_replica_lag (1 s) serves no one.
        wait_lag(&proxy, replica_port, |lag| lag.is_some_and(|l| l >= 2)).await;
        assert_eq!(where_ran(&mut reader).await, "primary");
        hold.release().await.unwrap();
        wait_lag(&proxy, replica_port, |lag| lag == Some(0)).await;
        // Caught up with the session's write: its reads go to the replica again.
        let started = Instant::now();
        while where_ran(&mut writer).await != "replica" {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the writing session never read on the replica again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n: Option<i64> = writer
            .query_first("SELECT COUNT(*) FROM ledger WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(n, Some(1));
        // Replication stopped: no figure, no reads there.
        set.stop_replication(1).await.unwrap();
        let started = Instant::now();
        while where_ran(&mut reader).await != "primary" {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a stopped replica still served reads"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stats = proxy.stats();
        // At least: the first three reads (one text, two prepared) and two after the
        // catch-up; the writing session's two reads, the reader's past max_replica_lag and
        // the stopped replica's.
        assert!(
            stats.replica_reads.load(Ordering::Relaxed) >= 5
                && stats.replica_reads_declined.load(Ordering::Relaxed) >= 4,
            "reads {} declined {}",
            stats.replica_reads.load(Ordering::Relaxed),
            stats.replica_reads_declined.load(Ordering::Relaxed)
        );
        set.start_replication(1).await.unwrap();
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_crashed_under_reads_costs_the_clients_nothing() {
    tokio::time::timeout(TEST_BOUND, async {
        let set = ledger_pair().await;
        set.member(0)
            .admin("INSERT INTO goneaway.ledger VALUES (1, 1), (2, 1), (3, 1)")
            .await
            .unwrap();
        set.wait_caught_up().await.unwrap();
        let proxy = cluster_proxy(
            &[set.member(0), set.member(1)],
            ClusterKind::Replication,
            |c| {
                c.multiplex = true;
                c.replica_reads = true;
            },
        )
        .await;
        wait_writer(&proxy, set.member(0)).await;
        wait_lag(&proxy, set.member(1).port(), |lag| lag == Some(0)).await;
        // Readers, text and prepared, until told to stop; every answer must be the ledger.
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let opts = client_opts(&proxy);
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut c = mysql_async::Conn::new(opts).await.unwrap();
                    let mut seen = Seen::default();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let n: Result<Option<i64>, _> = if i % 2 == 0 {
                            c.query_first("SELECT COUNT(*) FROM ledger").await
                        } else {
                            c.exec_first("SELECT COUNT(*) FROM ledger WHERE worker = ?", (1,))
                                .await
                        };
                        seen.statements += 1;
                        seen.longest = seen.longest.max(started.elapsed());
                        match n {
                            Ok(Some(3)) => {}
                            other => seen.errors.push(format!("reader {i}: {other:?}")),
                        }
                    }
                    seen
                })
            })
            .collect();
        let reads_on_replica = || proxy.stats().replica_reads.load(Ordering::Relaxed);
        let started = Instant::now();
        while reads_on_replica() < 50 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no reads reached the replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        set.member(1).crash().await.unwrap();
        let at_crash = reads_on_replica();
        tokio::time::sleep(Duration::from_secs(2)).await;
        set.member(1).start().await.unwrap();
        // Back and caught up: reads go there again.
        let started = Instant::now();
        while reads_on_replica() < at_crash + 50 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reads never returned to the restarted replica: {}",
                proxy.cluster().describe()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let seen = collect(readers).await;
        assert!(seen.errors.is_empty(), "client errors: {:?}", seen.errors);
        assert!(seen.statements > 200, "{} reads", seen.statements);
        assert!(
            proxy.stats().replica_reads_declined.load(Ordering::Relaxed) > 0,
            "reads ran on the writer while the replica was down"
        );
        eprintln!(
            "{} reads, none failed; longest {:?}",
            seen.statements, seen.longest
        );
    })
    .await
    .expect("the test finished in time");
}
