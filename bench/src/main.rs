//! Point-select throughput and latency of three pools on one throwaway MariaDB, at 1, 8 and
//! 32 concurrent tasks, and the time from a server restart to the first successful query.
//!
//! The pools: goneaway (defaults: validation when idle over 1 s, keepalive, retry),
//! mysql_async's own `Pool` (defaults), and sqlx's `MySqlPool` (defaults:
//! `test_before_acquire`, i.e. a ping on every checkout). All get the same maximum size, so
//! only the pool's own work differs. `cargo run --release`; `BENCH_SECONDS` sets the
//! measuring time per cell (default 3).

use std::time::{Duration, Instant};

use anyhow::Context;
use goneaway_harness::Server;
use mysql_async::prelude::Queryable;

const ROWS: u32 = 1000;
const TASKS: [usize; 3] = [1, 8, 32];
const MAX_SIZE: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    MysqlAsync,
    MysqlAsyncNoReset,
    Goneaway,
    Sqlx,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::MysqlAsync => "mysql_async Pool (defaults)",
            Kind::MysqlAsyncNoReset => "mysql_async Pool (reset_connection off)",
            Kind::Goneaway => "goneaway Pool",
            Kind::Sqlx => "sqlx MySqlPool",
        }
    }
}

#[derive(Clone)]
enum AnyPool {
    MysqlAsync(mysql_async::Pool),
    Goneaway(goneaway::Pool),
    Sqlx(sqlx::MySqlPool),
}

impl AnyPool {
    async fn build(kind: Kind, url: &str) -> anyhow::Result<AnyPool> {
        Ok(match kind {
            Kind::MysqlAsync | Kind::MysqlAsyncNoReset => {
                let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
                    .pool_opts(
                        mysql_async::PoolOpts::default()
                            .with_constraints(
                                mysql_async::PoolConstraints::new(0, MAX_SIZE).unwrap(),
                            )
                            // Its default resets every connection on return (one more round
                            // trip, and prepared statements are lost); off is like-for-like.
                            .with_reset_connection(kind == Kind::MysqlAsync),
                    );
                AnyPool::MysqlAsync(mysql_async::Pool::new(opts))
            }
            Kind::Goneaway => AnyPool::Goneaway(goneaway::Pool::with_options(
                url,
                goneaway::PoolOptions::new().max_size(MAX_SIZE),
            )?),
            Kind::Sqlx => AnyPool::Sqlx(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(MAX_SIZE as u32)
                    .connect_lazy(&url.replace("?prefer_socket=false", ""))?,
            ),
        })
    }

    /// One point select through the pool: checkout, prepared statement, return.
    async fn point_select(&self, id: u32) -> anyhow::Result<String> {
        const SQL: &str = "SELECT v FROM bench WHERE id = ?";
        let v: Option<String> = match self {
            AnyPool::MysqlAsync(p) => p.get_conn().await?.exec_first(SQL, (id,)).await?,
            AnyPool::Goneaway(p) => p.exec_first(SQL, (id,)).await?,
            AnyPool::Sqlx(p) => {
                sqlx::query_scalar::<_, String>(SQL)
                    .bind(id)
                    .fetch_optional(p)
                    .await?
            }
        };
        v.context("row missing")
    }

    async fn close(self) {
        match self {
            AnyPool::MysqlAsync(p) => {
                let _ = p.disconnect().await;
            }
            AnyPool::Goneaway(p) => p.close().await,
            AnyPool::Sqlx(p) => p.close().await,
        }
    }
}

struct Cell {
    qps: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(pool: &AnyPool, tasks: usize, seconds: Duration) -> anyhow::Result<Cell> {
    // Warm up: open the connections, fill statement caches.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let end_at = warm_until + seconds;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut id = (t as u32 * 97) % ROWS + 1;
            loop {
                let now = Instant::now();
                if now >= end_at {
                    break;
                }
                pool.point_select(id).await?;
                if now >= warm_until {
                    lat.push(now.elapsed());
                }
                id = id % ROWS + 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok(Cell {
        qps: all.len() as f64 / seconds.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
    })
}

/// Restarts the server under an idle pool and measures, from the moment the server
/// accepts connections again, the time to the first successful query and the errors the
/// caller saw on the way.
async fn restart_to_first_query(
    server: &Server,
    pool: &AnyPool,
) -> anyhow::Result<(Duration, u32)> {
    // Eight connections in the pool, then idle.
    let mut warm = Vec::new();
    for i in 0..8 {
        let pool = pool.clone();
        warm.push(tokio::spawn(async move { pool.point_select(i + 1).await }));
    }
    for w in warm {
        w.await??;
    }
    server.restart().await?;
    let start = Instant::now();
    let mut errors = 0;
    for _ in 0..1000 {
        match pool.point_select(1).await {
            Ok(_) => return Ok((start.elapsed(), errors)),
            Err(_) => errors += 1,
        }
    }
    anyhow::bail!("no successful query after 1000 attempts")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let server = Server::builder().start().await?;
    let url = server.url();
    {
        let mut conn = mysql_async::Conn::from_url(url.as_str()).await?;
        conn.query_drop("CREATE TABLE bench (id INT PRIMARY KEY, v VARCHAR(32))")
            .await?;
        conn.exec_batch(
            "INSERT INTO bench (id, v) VALUES (?, ?)",
            (1..=ROWS).map(|i| (i, format!("value {i}"))),
        )
        .await?;
        conn.disconnect().await?;
    }
    println!(
        "Point select (SELECT v FROM bench WHERE id = ?), {} s per cell, max {} connections per pool, MariaDB on 127.0.0.1",
        seconds.as_secs(),
        MAX_SIZE
    );
    println!();
    println!("| pool | tasks | queries/s | p50 µs | p99 µs | vs mysql_async defaults | vs mysql_async no reset |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let kinds = [
        Kind::MysqlAsync,
        Kind::MysqlAsyncNoReset,
        Kind::Goneaway,
        Kind::Sqlx,
    ];
    for tasks in TASKS {
        let mut cells = Vec::new();
        for kind in kinds {
            let pool = AnyPool::build(kind, &url).await?;
            cells.push((kind, measure(&pool, tasks, seconds).await?));
            pool.close().await;
        }
        let (defaults, no_reset) = (cells[0].1.qps, cells[1].1.qps);
        for (kind, cell) in cells {
            println!(
                "| {} | {} | {:.0} | {} | {} | {:.3} | {:.3} |",
                kind.name(),
                tasks,
                cell.qps,
                cell.p50.as_micros(),
                cell.p99.as_micros(),
                cell.qps / defaults,
                cell.qps / no_reset
            );
        }
    }
    println!();
    println!("Restart (graceful) under an idle pool of 8 connections: from the server accepting connections again to the first successful query.");
    println!();
    println!("| pool | time to first success | errors the caller saw |");
    println!("|---|---:|---:|");
    for kind in kinds {
        let pool = AnyPool::build(kind, &url).await?;
        let (took, errors) = restart_to_first_query(&server, &pool).await?;
        pool.close().await;
        println!(
            "| {} | {:.1} ms | {} |",
            kind.name(),
            took.as_secs_f64() * 1e3,
            errors
        );
    }
    server.stop().await?;
    Ok(())
}
