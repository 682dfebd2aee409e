//! A bulk import: rows packed into multi-row INSERTs by bytes against the server's
//! max_allowed_packet, with progress, then a batched cleanup.
//!
//! `MYSQL_URL=mysql://… cargo run -p goneaway --example bulk_import`

use goneaway::mysql_async::Value;
use goneaway::{BulkInsert, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MYSQL_URL")?;
    let pool = Pool::new(&url)?;
    pool.exec_drop(
        "CREATE TABLE IF NOT EXISTS import (id INT PRIMARY KEY, payload TEXT)",
        (),
    )
    .await?;
    let rows = (0..50_000).map(|i| {
        vec![
            Value::from(i),
            Value::from(format!("row {i} {}", "x".repeat(200))),
        ]
    });
    let done = pool
        .bulk_insert(
            // INSERT IGNORE on a keyed table: a batch whose outcome is unknown can be resent.
            BulkInsert::new("import", &["id", "payload"])
                .ignore_duplicates()
                .on_progress(|p| eprintln!("{} rows, {} statements", p.rows, p.statements)),
            rows,
        )
        .await?;
    println!(
        "imported {} rows in {} statements",
        done.rows, done.statements
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
    Ok(())
}
