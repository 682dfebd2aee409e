//! A bulk import: rows packed into multi-row INSERTs by bytes against the server's
//! max_allowed_packet, with progress, then a batched cleanup.
//!
//! `MYSQL_URL=mysql://… cargo run -p goneaway --example bulk_import` imports 50,000 rows and
//! deletes half of them in batches, printing progress. The test suite runs [`run`] against a
//! server with a small `max_allowed_packet` (`tests/examples.rs`).

use goneaway::mysql_async::Value;
use goneaway::{BulkInsert, Pool, Progress};

/// Imports `rows` rows (ids 0..rows, ~210 bytes each) into `import`, then deletes the even
/// ids 5,000 at a time. Returns the progress of both.
pub async fn run(url: &str, rows: u32) -> Result<(Progress, Progress), Box<dyn std::error::Error>> {
    let pool = Pool::new(url)?;
    pool.exec_drop(
        "CREATE TABLE IF NOT EXISTS import (id INT PRIMARY KEY, payload TEXT)",
        (),
    )
    .await?;
    let data = (0..rows).map(|i| {
        vec![
            Value::from(i),
            Value::from(format!("row {i} {}", "x".repeat(200))),
        ]
    });
    let inserted = pool
        .bulk_insert(
            // INSERT IGNORE on a keyed table: a batch whose outcome is unknown can be resent.
            BulkInsert::new("import", &["id", "payload"])
                .ignore_duplicates()
                .on_progress(|p| eprintln!("{} rows, {} statements", p.rows, p.statements)),
            data,
        )
        .await?;
    println!(
        "imported {} rows in {} statements",
        inserted.rows, inserted.statements
    );
    let removed = pool
        .batched("DELETE FROM import WHERE id % 2 = 0 LIMIT 5000", (), |p| {
            eprintln!("deleted {} so far", p.rows)
        })
        .await?;
    println!(
        "deleted {} rows in {} statements",
        removed.rows, removed.statements
    );
    pool.close().await;
    Ok((inserted, removed))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MYSQL_URL")?;
    run(&url, 50_000).await?;
    Ok(())
}
