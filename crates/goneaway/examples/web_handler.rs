//! A web-style handler: many short requests share one pool; reads are retried after a
//! connection loss, writes only when safe, and a transaction is rerun whole.
//!
//! Run against any server: `MYSQL_URL=mysql://user:pass@127.0.0.1:3306/db?prefer_socket=false
//! cargo run -p goneaway --example web_handler`

use goneaway::{Error, Pool, PoolOptions, Statement};

/// One "request": read a user, record a visit, move credit in a transaction.
async fn handle(pool: &Pool, user: u32) -> Result<String, Error> {
    // Read-only: retried on a fresh connection if the connection dies mid-result.
    let name: Option<String> = pool
        .exec_first("SELECT name FROM users WHERE id = ?", (user,))
        .await?;
    // Idempotent by construction: safe to send twice.
    pool.exec_drop(
        Statement::new("UPDATE users SET last_seen = NOW() WHERE id = ?").idempotent(),
        (user,),
    )
    .await?;
    // Rerun whole on a deadlock or a loss before COMMIT; a loss during COMMIT is
    // reported as CommitOutcomeUnknown, never replayed.
    pool.transaction(move |tx| {
        Box::pin(async move {
            tx.exec_drop("UPDATE users SET credit = credit - 1 WHERE id = ?", (user,))
                .await?;
            tx.exec_drop("UPDATE users SET credit = credit + 1 WHERE id = 1", ())
                .await?;
            Ok(())
        })
    })
    .await?;
    Ok(name.unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MYSQL_URL")?;
    let pool = Pool::with_options(&url, PoolOptions::new().max_size(16))?;
    pool.exec_drop(
        "CREATE TABLE IF NOT EXISTS users (id INT PRIMARY KEY, name VARCHAR(50), credit INT NOT NULL DEFAULT 100, last_seen DATETIME)",
        (),
    )
    .await?;
    pool.exec_drop(
        "INSERT IGNORE INTO users (id, name) VALUES (1, 'bank'), (2, 'ada'), (3, 'grace')",
        (),
    )
    .await?;
    let mut tasks = Vec::new();
    for request in 0..100u32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(
            async move { handle(&pool, 2 + request % 2).await },
        ));
    }
    for t in tasks {
        match t.await? {
            Ok(_) => {}
            // Only these reach a handler: answer 503 and let the client retry.
            Err(e) if e.is_outcome_unknown() => eprintln!("outcome unknown: {e}"),
            Err(e) => eprintln!("request failed: {e}"),
        }
    }
    println!("{:?}", pool.status());
    Ok(())
}
