//! Step: the same idle workload survives `wait_timeout` through the goneaway pool.

use std::time::Duration;

use goneaway::{Pool, PoolOptions, Validation};
use goneaway_harness::Server;

/// Runs an idle workload through three pools and prints what each one did about the
/// connections the server closed: keepalive kept them, validation caught them, retry
/// covered for them. The caller never sees an error.
pub async fn run(server: &Server) -> anyhow::Result<()> {
    // The defaults: recycling and keepalive derived from the server's wait_timeout.
    let defaults = Pool::new(&server.url())?;
    // Validation only: no background pings, no recycling — dead connections pile up and
    // must be caught at checkout.
    let validating = Pool::with_options(
        &server.url(),
        PoolOptions::new()
            .keepalive_interval(Duration::ZERO)
            .max_idle(Duration::from_secs(3600)),
    )?;
    // Like mysql_async's own pool: no ping at all. Only the retry stands between the
    // caller and the 2006.
    let bare = Pool::with_options(
        &server.url(),
        PoolOptions::new()
            .validation(Validation::Never)
            .keepalive_interval(Duration::ZERO)
            .max_idle(Duration::from_secs(3600)),
    )?;
    bare.exec_drop(
        "CREATE TABLE IF NOT EXISTS demo_library (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64))",
        (),
    )
    .await?;

    let mut first_ids = Vec::new();
    for pool in [&defaults, &validating] {
        let mut conn = pool.get().await?;
        let _: Option<i64> = conn.query_first("SELECT 1").await?;
        first_ids.push(conn.id());
    }
    let limits = defaults
        .status()
        .limits
        .expect("a connection has been opened");
    println!(
        "The pool read wait_timeout={}s from the session and derived: recycle after {:.1}s of silence, \
         keepalive ping every {:.1}s, max_allowed_packet {} bytes.",
        limits.wait_timeout.as_secs(),
        limits.max_idle.as_secs_f64(),
        limits.keepalive_interval.unwrap_or_default().as_secs_f64(),
        limits.max_allowed_packet
    );
    let idle = limits.wait_timeout + Duration::from_millis(1500);
    println!(
        "Three pools run one query each, then sit idle for {:.1}s — past wait_timeout …",
        idle.as_secs_f64()
    );
    tokio::time::sleep(idle).await;

    // 1. Defaults: the connection never died.
    let mut conn = defaults.get().await?;
    let _: Option<i64> = conn.query_first("SELECT 1").await?;
    let same = conn.id() == first_ids[0];
    drop(conn);
    let s = defaults.status();
    println!(
        "  defaults:        SELECT 1 ok — {} ({} keepalive pings kept it under wait_timeout; {} stale)",
        if same { "same connection" } else { "new connection" },
        s.keepalive_pings,
        s.stale_caught_by_keepalive + s.stale_caught_by_validation
    );

    // 2. Validation: the server closed it; the checkout ping noticed and opened another.
    let mut conn = validating.get().await?;
    let _: Option<i64> = conn.query_first("SELECT 1").await?;
    let replaced = conn.id() != first_ids[1];
    drop(conn);
    let s = validating.status();
    println!(
        "  validation only: SELECT 1 ok — {} ({} stale connection(s) caught by the checkout ping, never handed out)",
        if replaced { "on a new connection" } else { "same connection" },
        s.stale_caught_by_validation
    );

    // 3. No validation: the INSERT meets the dead connection and is retried, because a
    // connection silent past wait_timeout proves the INSERT never ran.
    bare.exec_drop("INSERT INTO demo_library (note) VALUES ('after idle')", ())
        .await?;
    let s = bare.status();
    println!(
        "  no validation:   INSERT ok — retried {} time(s) on a fresh connection ({} dead connection(s) met); exactly one row written",
        s.retries, s.gone_away
    );
    println!("No caller saw \"MySQL server has gone away\".");
    for pool in [defaults, validating, bare] {
        pool.close().await;
    }
    Ok(())
}
