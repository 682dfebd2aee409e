//! A queue worker that idles between jobs. Each job runs on a connection that has just
//! answered a ping (`with_conn`), so the idle gap never surfaces as "gone away".
//!
//! `MYSQL_URL=mysql://… cargo run -p goneaway --example idle_worker` runs three jobs three
//! seconds apart and prints each one with the pool's status. The test suite runs [`run`]
//! against a server with `wait_timeout=2` (`tests/examples.rs`).

use std::time::Duration;

use goneaway::{Pool, PoolOptions, Status};

/// Runs `jobs` jobs, idling `idle` after each; returns what each job saw and the pool's
/// status at the end.
pub async fn run(
    url: &str,
    jobs: u32,
    idle: Duration,
) -> Result<(Vec<String>, Status), Box<dyn std::error::Error>> {
    // A worker needs one connection; keep none open while idle if the server is far away.
    let pool = Pool::with_options(url, PoolOptions::new().max_size(1).min_idle(0))?;
    let mut done = Vec::new();
    for job in 0..jobs {
        let line = pool
            .with_conn(move |conn| {
                Box::pin(async move {
                    let row: Option<(u32, String)> =
                        conn.query_first("SELECT CONNECTION_ID(), NOW()").await?;
                    let (id, now) = row.unwrap_or_default();
                    Ok(format!("job {job} on connection {id} at {now}"))
                })
            })
            .await?;
        println!("{line}; {:?}", pool.status());
        done.push(line);
        // In a real worker: hours. Here: long enough to pass a short wait_timeout.
        if job + 1 < jobs {
            tokio::time::sleep(idle).await;
        }
    }
    let status = pool.status();
    pool.close().await;
    Ok((done, status))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MYSQL_URL")?;
    run(&url, 3, Duration::from_secs(3)).await?;
    Ok(())
}
