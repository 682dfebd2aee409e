//! A queue worker that idles for hours between jobs. Each job runs on a connection that has
//! just answered a ping (`with_conn`), so the idle gap never surfaces as "gone away".
//!
//! `MYSQL_URL=mysql://… cargo run -p goneaway --example idle_worker`

use std::time::Duration;

use goneaway::{Pool, PoolOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MYSQL_URL")?;
    // A worker needs one connection; keep none open while idle if the server is far away.
    let pool = Pool::with_options(&url, PoolOptions::new().max_size(1).min_idle(0))?;
    for job in 0..3 {
        let done = pool
            .with_conn(move |conn| {
                Box::pin(async move {
                    let now: Option<String> = conn.query_first("SELECT NOW()").await?;
                    Ok(format!("job {job} at {}", now.unwrap_or_default()))
                })
            })
            .await?;
        println!("{done}; {:?}", pool.status());
        // In a real worker: hours. Here: long enough to pass a short wait_timeout.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(())
}
