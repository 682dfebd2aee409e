//! Demo step: a plain client through goneaway proxy survives an idle past wait_timeout and
//! a KILL of its server connection.

use std::sync::atomic::Ordering;
use std::time::Duration;

use goneaway_harness::Server;
use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
use mysql_async::prelude::Queryable;

/// Starts a proxy in front of `server`, idles a plain client through it past wait_timeout,
/// kills its backend, and prints what the proxy absorbed.
pub async fn run(server: &Server) -> anyhow::Result<()> {
    let backend = BackendTarget::from_url(&server.url())?;
    let proxy = Proxy::start(ProxyConfig::new("127.0.0.1:0".parse()?, backend)).await?;
    let url = server.url_for(proxy.local_addr());
    println!(
        "goneaway proxy listening on {} in front of {}",
        proxy.local_addr(),
        server.addr()
    );
    let mut conn = mysql_async::Conn::from_url(&url).await?;
    let wait: u64 = conn
        .query_first("SELECT @@wait_timeout")
        .await?
        .unwrap_or(2);
    let idle = Duration::from_secs(wait) + Duration::from_millis(1500);
    println!("A plain client (no pool, no retry) connects through the proxy and idles {:.1}s (wait_timeout = {wait}s) …", idle.as_secs_f64());
    tokio::time::sleep(idle).await;
    let v: Option<String> = conn.query_first("SELECT 'still alive'").await?;
    println!(
        "  after the idle: SELECT -> {:?}: no error",
        v.unwrap_or_default()
    );
    let id: u32 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await?
        .unwrap_or(0);
    println!("Now an administrator runs KILL {id} on the server connection behind the client …");
    server.kill_connection(id).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id2: u32 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await?
        .unwrap_or(0);
    println!("  next statement: no error; it ran on a fresh server connection ({id2}), same client session");
    conn.disconnect().await?;
    let stats = proxy.stats();
    println!("What the proxy absorbed so the client never saw it:");
    println!(
        "  idle backends recycled before wait_timeout: {}",
        stats.recycled.load(Ordering::Relaxed)
    );
    for (cause, n) in stats.absorbed_by_cause() {
        println!("  backend lost while idle, replaced: {n} × {cause}");
    }
    println!(
        "  errors the client saw: {}",
        stats.errors_by_kind().values().sum::<u64>()
    );
    proxy.shutdown().await;
    Ok(())
}
