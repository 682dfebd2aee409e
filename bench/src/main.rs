//! Point-select throughput and latency on one throwaway MariaDB, at 1, 8 and 32 concurrent
//! tasks, and the time from a server restart to the first successful query.
//!
//! Configurations (every pool may open at most `MAX_SIZE` connections, and every pool is
//! pre-warmed before measuring: `tasks` connections checked out at once, the statement run
//! on each):
//!
//! - raw `mysql_async::Conn`s, one owned by each task, no pool: the ceiling any pool can
//!   reach on this machine.
//! - mysql_async's `Pool` with `PoolConstraints(32, 32)` and `reset_connection(false)`: the
//!   like-for-like baseline (idle connections are kept, prepared statements survive a
//!   return), the denominator of the target.
//! - mysql_async's `Pool` with `PoolConstraints(32, 32)` and its default
//!   `reset_connection(true)`: a `COM_RESET_CONNECTION` on every return, which also clears
//!   the statement cache, so every query prepares again.
//! - mysql_async's `Pool` with `PoolConstraints(0, 32)` and the default
//!   `inactive_connection_ttl` of 0: what this benchmark measured before. With a TTL of 0
//!   the pool keeps at most `min` idle connections, so every returned connection is closed
//!   and every checkout connects anew.
//! - goneaway's `Pool` (max 32; validation when idle over 1 s, keepalive, retry) through
//!   its retrying `exec_first`.
//! - sqlx's `MySqlPool` 0.8 with its defaults but `max_connections(32)`
//!   (`test_before_acquire`: a `COM_PING` on every checkout).
//!
//! The machine this runs on is shared and noisy, so each cell is measured in `BENCH_ROUNDS`
//! rounds (default 5) interleaved across the configurations (round 1 of every
//! configuration, then round 2 of every configuration, …): a burst of load from elsewhere
//! hits neighbours alike. A cell shows the median and the best of its rounds (the best is
//! the least disturbed), latencies over all rounds, and ratios that are the median over
//! rounds of the ratio to the baseline's round next to it (paired, so load from elsewhere
//! largely cancels).
//!
//! `cargo run --release`; `BENCH_SECONDS` sets the measuring time per cell (default 5,
//! split across `BENCH_ROUNDS`, default 10), `BENCH_RUNTIME=current_thread` runs everything on a
//! single-threaded Tokio runtime.

use std::time::{Duration, Instant};

use anyhow::Context;
use goneaway_harness::Server;
use mysql_async::prelude::Queryable;

const ROWS: u32 = 1000;
const TASKS: [usize; 3] = [1, 8, 32];
const MAX_SIZE: usize = 32;
const SQL: &str = "SELECT v FROM bench WHERE id = ?";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Raw,
    MysqlAsync,
    MysqlAsyncReset,
    MysqlAsyncMin0,
    Goneaway,
    Sqlx,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw Conn per task (ceiling)",
            Kind::MysqlAsync => "mysql_async Pool (32/32, no reset)",
            Kind::MysqlAsyncReset => "mysql_async Pool (32/32, reset on return)",
            Kind::MysqlAsyncMin0 => "mysql_async Pool (0/32, ttl 0: old bench)",
            Kind::Goneaway => "goneaway Pool",
            Kind::Sqlx => "sqlx MySqlPool (defaults)",
        }
    }
}

/// What one benchmark task queries through: a pool handle, or its own connection.
enum Client {
    Raw(mysql_async::Conn),
    MysqlAsync(mysql_async::Pool),
    Goneaway(goneaway::Pool),
    Sqlx(sqlx::MySqlPool),
}

/// A pool shared by the tasks, or the URL each task connects to on its own.
#[derive(Clone)]
enum Shared {
    Raw(String),
    MysqlAsync(mysql_async::Pool),
    Goneaway(goneaway::Pool),
    Sqlx(sqlx::MySqlPool),
}

impl Shared {
    fn build(kind: Kind, url: &str) -> anyhow::Result<Shared> {
        let mysql_async_pool = |min: usize, reset: bool| -> anyhow::Result<Shared> {
            let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
                .pool_opts(
                    mysql_async::PoolOpts::default()
                        .with_constraints(mysql_async::PoolConstraints::new(min, MAX_SIZE).unwrap())
                        .with_reset_connection(reset),
                );
            Ok(Shared::MysqlAsync(mysql_async::Pool::new(opts)))
        };
        Ok(match kind {
            Kind::Raw => Shared::Raw(url.to_owned()),
            Kind::MysqlAsync => mysql_async_pool(MAX_SIZE, false)?,
            Kind::MysqlAsyncReset => mysql_async_pool(MAX_SIZE, true)?,
            Kind::MysqlAsyncMin0 => mysql_async_pool(0, false)?,
            Kind::Goneaway => Shared::Goneaway(goneaway::Pool::with_options(
                url,
                goneaway::PoolOptions::new().max_size(MAX_SIZE),
            )?),
            Kind::Sqlx => Shared::Sqlx(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(MAX_SIZE as u32)
                    .connect_lazy(&url.replace("?prefer_socket=false", ""))?,
            ),
        })
    }

    /// A client for one task (a raw connection is opened here, before measuring).
    async fn client(&self) -> anyhow::Result<Client> {
        Ok(match self {
            Shared::Raw(url) => Client::Raw(mysql_async::Conn::from_url(url.as_str()).await?),
            Shared::MysqlAsync(p) => Client::MysqlAsync(p.clone()),
            Shared::Goneaway(p) => Client::Goneaway(p.clone()),
            Shared::Sqlx(p) => Client::Sqlx(p.clone()),
        })
    }

    /// Opens `n` connections at once and runs the statement on each, so no cell measures
    /// connecting or a first prepare.
    async fn prewarm(&self, n: usize) -> anyhow::Result<()> {
        match self {
            Shared::Raw(_) => {}
            Shared::MysqlAsync(p) => {
                let mut held = Vec::new();
                for i in 0..n {
                    let mut c = p.get_conn().await?;
                    let _: Option<String> = c.exec_first(SQL, (i as u32 + 1,)).await?;
                    held.push(c);
                }
            }
            Shared::Goneaway(p) => {
                let mut held = Vec::new();
                for i in 0..n {
                    let mut c = p.get().await?;
                    let _: Option<String> = c.exec_first(SQL, (i as u32 + 1,)).await?;
                    held.push(c);
                }
            }
            Shared::Sqlx(p) => {
                let mut held = Vec::new();
                for i in 0..n {
                    let mut c = p.acquire().await?;
                    sqlx::query_scalar::<_, String>(SQL)
                        .bind(i as u32 + 1)
                        .fetch_optional(&mut *c)
                        .await?;
                    held.push(c);
                }
            }
        }
        // Let mysql_async's recycler put the returned connections back.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }

    async fn close(self) {
        match self {
            Shared::Raw(_) => {}
            Shared::MysqlAsync(p) => {
                let _ = p.disconnect().await;
            }
            Shared::Goneaway(p) => p.close().await,
            Shared::Sqlx(p) => p.close().await,
        }
    }
}

impl Client {
    /// One point select: checkout, prepared statement (cached per connection), return.
    async fn point_select(&mut self, id: u32) -> anyhow::Result<String> {
        let v: Option<String> = match self {
            Client::Raw(c) => c.exec_first(SQL, (id,)).await?,
            Client::MysqlAsync(p) => p.get_conn().await?.exec_first(SQL, (id,)).await?,
            Client::Goneaway(p) => p.exec_first(SQL, (id,)).await?,
            Client::Sqlx(p) => {
                sqlx::query_scalar::<_, String>(SQL)
                    .bind(id)
                    .fetch_optional(&*p)
                    .await?
            }
        };
        v.context("row missing")
    }

    async fn close(self) {
        if let Client::Raw(c) = self {
            let _ = c.disconnect().await;
        }
    }
}

/// One configuration at one concurrency, over all its rounds.
#[derive(Default)]
struct Cell {
    /// Queries per second of each round.
    rounds: Vec<f64>,
    /// Every query's latency, over all rounds.
    latencies: Vec<Duration>,
}

impl Cell {
    fn qps(&self) -> f64 {
        let mut r = self.rounds.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }
    fn best(&self) -> f64 {
        self.rounds.iter().copied().fold(0.0, f64::max)
    }
    /// The median over rounds of this round's throughput / the baseline's same round.
    fn paired_ratio(&self, baseline: &Cell) -> f64 {
        let mut r: Vec<f64> = self
            .rounds
            .iter()
            .zip(&baseline.rounds)
            .map(|(a, b)| a / b.max(1.0))
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }
    fn latency(&mut self, q: f64) -> Duration {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        self.latencies[((n as f64 * q) as usize).min(n - 1)]
    }
}

/// Builds the configuration, pre-warms it, measures one round and closes it.
async fn round(
    kind: Kind,
    url: &str,
    tasks: usize,
    seconds: Duration,
    cell: &mut Cell,
) -> anyhow::Result<()> {
    let shared = Shared::build(kind, url)?;
    let (qps, lat) = measure(&shared, tasks, seconds).await?;
    shared.close().await;
    cell.rounds.push(qps);
    cell.latencies.extend(lat);
    Ok(())
}

/// Queries per second and every latency of one round.
async fn measure(
    shared: &Shared,
    tasks: usize,
    seconds: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    shared.prewarm(tasks).await?;
    let mut clients = Vec::new();
    for _ in 0..tasks {
        clients.push(shared.client().await?);
    }
    // A further 0.2 s of unmeasured queries: caches, branch predictors, the scheduler.
    let warm_until = Instant::now() + Duration::from_millis(200);
    let end_at = warm_until + seconds;
    let mut handles = Vec::new();
    for (t, mut client) in clients.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut id = (t as u32 * 97) % ROWS + 1;
            loop {
                let now = Instant::now();
                if now >= end_at {
                    break;
                }
                client.point_select(id).await?;
                if now >= warm_until {
                    lat.push(now.elapsed());
                }
                id = id % ROWS + 1;
            }
            client.close().await;
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok((all.len() as f64 / seconds.as_secs_f64(), all))
}

/// Restarts the server under an idle pool and measures, from the moment the server
/// accepts connections again, the time to the first successful query and the errors the
/// caller saw on the way.
async fn restart_to_first_query(
    server: &Server,
    shared: &Shared,
) -> anyhow::Result<(Duration, u32)> {
    shared.prewarm(8).await?;
    let mut client = shared.client().await?;
    server.restart().await?;
    let start = Instant::now();
    let mut errors = 0;
    for _ in 0..1000 {
        match client.point_select(1).await {
            Ok(_) => return Ok((start.elapsed(), errors)),
            Err(_) => errors += 1,
        }
    }
    anyhow::bail!("no successful query after 1000 attempts")
}

fn main() -> anyhow::Result<()> {
    let flavor = std::env::var("BENCH_RUNTIME").unwrap_or_else(|_| "multi_thread".into());
    let rt = match flavor.as_str() {
        "current_thread" => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    rt.block_on(run(&flavor))
}

async fn run(flavor: &str) -> anyhow::Result<()> {
    let seconds = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .max(1);
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
        "Point select (SELECT v FROM bench WHERE id = ?), {} s per cell in {} interleaved rounds, max {} connections per pool, Tokio {} runtime, MariaDB on 127.0.0.1",
        seconds.as_secs(),
        rounds,
        MAX_SIZE,
        flavor
    );
    println!();
    println!("| configuration | tasks | queries/s (median round) | best round | p50 µs | p99 µs | vs mysql_async Pool (no reset) | vs raw conns |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let kinds = [
        Kind::Raw,
        Kind::MysqlAsync,
        Kind::MysqlAsyncReset,
        Kind::MysqlAsyncMin0,
        Kind::Goneaway,
        Kind::Sqlx,
    ];
    for tasks in TASKS {
        let mut cells: Vec<Cell> = kinds.iter().map(|_| Cell::default()).collect();
        for _ in 0..rounds {
            for (kind, cell) in kinds.iter().zip(cells.iter_mut()) {
                round(*kind, &url, tasks, seconds / rounds, cell).await?;
            }
        }
        let ratios: Vec<(f64, f64)> = cells
            .iter()
            .map(|c| (c.paired_ratio(&cells[1]), c.paired_ratio(&cells[0])))
            .collect();
        for ((kind, mut cell), (vs_pool, vs_raw)) in kinds.into_iter().zip(cells).zip(ratios) {
            println!(
                "| {} | {} | {:.0} | {:.0} | {} | {} | {:.2} | {:.2} |",
                kind.name(),
                tasks,
                cell.qps(),
                cell.best(),
                cell.latency(0.50).as_micros(),
                cell.latency(0.99).as_micros(),
                vs_pool,
                vs_raw
            );
        }
    }
    println!();
    println!("Restart (graceful) under an idle pool of 8 connections: from the server accepting connections again to the first successful query; 3 restarts per pool, interleaved.");
    println!();
    println!("| pool | time to first success (median of 3) | slowest | errors the caller saw |");
    println!("|---|---:|---:|---:|");
    let restart_kinds = [
        Kind::MysqlAsync,
        Kind::MysqlAsyncReset,
        Kind::Goneaway,
        Kind::Sqlx,
    ];
    let mut results: Vec<(Vec<Duration>, u32)> =
        restart_kinds.iter().map(|_| (Vec::new(), 0)).collect();
    for _ in 0..3 {
        for (kind, (times, errors)) in restart_kinds.iter().zip(results.iter_mut()) {
            let shared = Shared::build(*kind, &url)?;
            let (took, e) = restart_to_first_query(&server, &shared).await?;
            shared.close().await;
            times.push(took);
            *errors += e;
        }
    }
    for (kind, (mut times, errors)) in restart_kinds.into_iter().zip(results) {
        times.sort();
        println!(
            "| {} | {:.1} ms | {:.1} ms | {} |",
            kind.name(),
            times[1].as_secs_f64() * 1e3,
            times[2].as_secs_f64() * 1e3,
            errors
        );
    }
    server.stop().await?;
    Ok(())
}
