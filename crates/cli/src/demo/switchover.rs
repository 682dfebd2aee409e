//! Demo step: a client writes through goneaway proxy in front of a replication pair while
//! an operator switches the primary over; the client sees no error and loses no row.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use goneaway_harness::{Replication, Server};
use goneaway_proxy::{Account, BackendTarget, ClusterKind, Proxy, ProxyConfig, ServerAddr};
use mysql_async::prelude::Queryable;

/// The account the proxy and the client use. Not the harness's own account: that one has
/// every privilege, READ ONLY ADMIN among them, and `read_only` would not stop it as it
/// stops an application's account on a real old primary.
const USER: &str = "demo_app";
/// A throwaway password on a throwaway pair on loopback, never printed.
const PASSWORD: &str = "demo-app-password";

/// One statement waits at most this long (the proxy's own `switchover_wait` is 30 s): a
/// demo that hangs is worse than one that says it failed.
const STATEMENT_BOUND: Duration = Duration::from_secs(40);

/// What the writing client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Ids of the rows whose INSERT was answered OK.
    acked: Vec<i64>,
    /// Every error, with its statement.
    errors: Vec<String>,
    /// The longest INSERT, from sending it to its answer.
    longest: Duration,
}

/// Starts a replication pair and a proxy in front of both, runs a writing client through
/// the proxy, switches the primary over under it, and prints what the client saw and what
/// the new primary holds.
pub async fn run() -> anyhow::Result<()> {
    println!(
        "Starting a throwaway replication pair on 127.0.0.1 (a GTID primary and its replica) …"
    );
    let set = Replication::builder()
        .replicas(1)
        .start()
        .await
        .context("the replication pair")?;
    let (old, new) = (set.member(0), set.member(1));
    old.admin(&format!(
        "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL ON goneaway.* TO '{USER}'@'%';
         GRANT ALL ON goneaway_proxy.* TO '{USER}'@'%';
         GRANT SLAVE MONITOR ON *.* TO '{USER}'@'%';
         CREATE TABLE goneaway.demo_switchover (id BIGINT PRIMARY KEY, written DATETIME(6) NOT NULL)"
    ))
    .await?;
    set.wait_caught_up().await?;
    let proxy = start_proxy(&set).await?;
    wait_writer(&proxy, old).await?;
    println!(
        "goneaway proxy listening on {} in front of both (servers = [\"{}\", \"{}\"], cluster = \"replication\"); \
         its monitor names the writer: {}",
        proxy.local_addr(),
        old.addr(),
        new.addr(),
        old.addr()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(client(proxy.local_addr().port(), stop.clone()));
    println!(
        "A client writes one row at a time through the proxy (autocommit INSERTs, 10 ms apart) …"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    println!(
        "An operator switches over: SET GLOBAL read_only = ON on {}, waits for the replica to catch up, \
         promotes {} (read_only = OFF, replication stopped), and {} follows it as a replica …",
        old.addr(),
        new.addr(),
        old.addr()
    );
    let switch = Instant::now();
    set.switchover(1).await?;
    let switched = switch.elapsed();
    wait_writer(&proxy, new).await?;
    let seen_after = switch.elapsed();
    // Writes go on on the new primary for a while before the client stops.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = writer.await.context("the writing client")??;

    let stats = proxy.stats();
    println!(
        "  the writer moved: {} -> {} (no server was writable for {:.0} ms; the proxy's monitor saw the new \
         writer {:.0} ms after the switchover began)",
        old.addr(),
        new.addr(),
        switched.as_secs_f64() * 1000.0,
        seen_after.as_secs_f64() * 1000.0
    );
    println!(
        "  the client wrote {} rows and saw {} errors across the switchover",
        seen.acked.len(),
        seen.errors.len()
    );
    for e in seen.errors.iter().take(5) {
        println!("    {e}");
    }
    println!(
        "  longest statement wait: {:.0} ms ({} writes the old primary refused as read-only ran on the new one instead)",
        seen.longest.as_secs_f64() * 1000.0,
        stats.read_only_redirects.load(Ordering::Relaxed)
    );
    let rows = ids_on(new).await?;
    let acked: BTreeSet<i64> = seen.acked.iter().copied().collect();
    let present = acked.intersection(&rows).count();
    let extra = rows.difference(&acked).count();
    if present == acked.len() && extra == 0 {
        println!(
            "  every acknowledged row is on the new primary: {present} of {}, each once",
            acked.len()
        );
    } else {
        println!(
            "  on the new primary: {present} of {} acknowledged rows, {extra} rows never acknowledged",
            acked.len()
        );
    }
    proxy.shutdown().await;
    Ok(())
}

/// A proxy in front of every member of `set`, the demo account configured on it.
async fn start_proxy(set: &Replication) -> anyhow::Result<Proxy> {
    let backend = BackendTarget::from_url(&format!(
        "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/goneaway",
        set.member(0).port()
    ))?;
    let mut config = ProxyConfig::new("127.0.0.1:0".parse()?, backend);
    config.servers = set
        .members()
        .iter()
        .map(|s| ServerAddr {
            host: "127.0.0.1".into(),
            port: s.port(),
        })
        .collect();
    config.cluster = ClusterKind::Replication;
    config.accounts = vec![Account {
        user: USER.into(),
        password: PASSWORD.into(),
    }];
    config.server_accounts = false;
    Ok(Proxy::start(config).await?)
}

/// Waits (at most 20 s) until the proxy's monitor names `server` the writer.
async fn wait_writer(proxy: &Proxy, server: &Server) -> anyhow::Result<()> {
    let started = Instant::now();
    while proxy
        .cluster()
        .writer
        .as_ref()
        .is_none_or(|w| w.port != server.port())
    {
        if started.elapsed() > Duration::from_secs(20) {
            anyhow::bail!(
                "the proxy's monitor never named {} the writer: {}",
                server.addr(),
                proxy.cluster().describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One plain client (no pool, no retry) through the proxy on `port`: an INSERT with a new id
/// every 10 ms until `stop`, at most 10 000 (about two minutes).
async fn client(port: u16, stop: Arc<AtomicBool>) -> anyhow::Result<Seen> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(USER))
        .pass(Some(PASSWORD))
        .db_name(Some("goneaway"))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    let mut seen = Seen::default();
    for id in 1..=10_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let insert = conn.query_drop(format!(
            "INSERT INTO demo_switchover (id, written) VALUES ({id}, NOW(6))"
        ));
        let result = tokio::time::timeout(STATEMENT_BOUND, insert).await;
        seen.longest = seen.longest.max(started.elapsed());
        match result {
            Ok(Ok(())) => seen.acked.push(id),
            Ok(Err(e)) => seen.errors.push(format!("INSERT {id}: {e}")),
            Err(_) => seen
                .errors
                .push(format!("INSERT {id}: no answer in {STATEMENT_BOUND:?}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = conn.disconnect().await;
    Ok(seen)
}

/// Every row id on `server`, read as root.
async fn ids_on(server: &Server) -> anyhow::Result<BTreeSet<i64>> {
    let mut conn = server.admin_conn().await?;
    let ids: Vec<i64> = conn
        .query("SELECT id FROM goneaway.demo_switchover")
        .await?;
    conn.disconnect().await?;
    Ok(ids.into_iter().collect())
}
