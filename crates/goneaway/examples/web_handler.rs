//! A web-style handler: many short requests share one pool; reads are retried after a
//! connection loss, writes only when safe, and a transaction is rerun whole.
//!
//! Run against any server: `MYSQL_URL=mysql://user:pass@127.0.0.1:3306/db?prefer_socket=false
//! cargo run -p goneaway --example web_handler`. It prints how many requests were served and
//! checks that the transfers conserved the total credit. The test suite runs [`run`]
//! (`tests/examples.rs`).

use goneaway::{Error, Pool, PoolOptions, Statement, Status};

/// What a run of the example did.
#[derive(Debug)]
pub struct Outcome {
    /// Requests answered without an error.
    pub served: u32,
    /// Requests that failed (each printed to stderr).
    pub failed: u32,
    /// The sum of all users' credit afterwards: transfers move credit, never create it.
    pub total_credit: i64,
    /// The pool's counters after the run.
    pub status: Status,
}

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

/// Serves `requests` concurrent requests against `url` and reports what happened.
pub async fn run(url: &str, requests: u32) -> Result<Outcome, Box<dyn std::error::Error>> {
    let pool = Pool::with_options(url, PoolOptions::new().max_size(16))?;
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
    for request in 0..requests {
        let pool = pool.clone();
        tasks.push(tokio::spawn(
            async move { handle(&pool, 2 + request % 2).await },
        ));
    }
    let (mut served, mut failed) = (0, 0);
    for t in tasks {
        match t.await? {
            Ok(_) => served += 1,
            // Only these reach a handler: answer 503 and let the client retry.
            Err(e) => {
                failed += 1;
                if e.is_outcome_unknown() {
                    eprintln!("outcome unknown: {e}");
                } else {
                    eprintln!("request failed: {e}");
                }
            }
        }
    }
    let total: Option<i64> = pool
        .query_first("SELECT CAST(SUM(credit) AS SIGNED) FROM users")
        .await?;
    let status = pool.status();
    pool.close().await;
    Ok(Outcome {
        served,
        failed,
        total_credit: total.unwrap_or(0),
        status,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MYSQL_URL")?;
    let outcome = run(&url, 100).await?;
    println!(
        "served {} requests, {} failed; total credit {}; {:?}",
        outcome.served, outcome.failed, outcome.total_credit, outcome.status
    );
    Ok(())
}
