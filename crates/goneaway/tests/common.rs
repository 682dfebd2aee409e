//! Helpers shared by the test modules: servers, relays, pools with short timeouts.

use std::time::Duration;

use goneaway::mysql_async::prelude::Queryable;
use goneaway::{Pool, PoolOptions, RetryPolicy};
use goneaway_harness::Server;
use goneaway_relay::{Relay, RelayConfig};

/// A server whose idle connections die after `wait_timeout` seconds.
pub async fn server(wait_timeout: u32) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    Server::builder()
        .var("wait_timeout", wait_timeout)
        .start()
        .await
        .expect("start a MariaDB server (is mariadb-server installed?)")
}

/// A relay in front of `server`.
pub async fn relay(server: &Server) -> Relay {
    Relay::start(RelayConfig::new("127.0.0.1:0", server.addr()))
        .await
        .expect("start the relay")
}

/// Options with test-sized timeouts: every fault ends within seconds.
pub fn opts() -> PoolOptions {
    PoolOptions::new()
        .min_idle(0)
        .checkout_timeout(Duration::from_secs(20))
        .ping_timeout(Duration::from_millis(500))
        .statement_timeout(Some(Duration::from_secs(5)))
        .connect_timeout(Duration::from_secs(3))
        .retry(RetryPolicy {
            max_attempts: 6,
            deadline: Duration::from_secs(20),
            ..RetryPolicy::default()
        })
}

pub fn pool(url: &str, opts: PoolOptions) -> Pool {
    Pool::with_options(url, opts).expect("valid URL")
}

/// Checks out `n` connections at once (so `n` distinct ones exist), returns their ids.
pub async fn warm(pool: &Pool, n: usize) -> Vec<u32> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut c = pool.get().await.expect("checkout");
        let one: Option<i64> = c.query_first("SELECT 1").await.expect("select");
        assert_eq!(one, Some(1));
        held.push(c);
    }
    held.iter().map(|c| c.id()).collect()
}

/// Runs a statement as root and returns the first column of the first row.
pub async fn scalar(server: &Server, sql: &str) -> i64 {
    let mut conn = server.admin_conn().await.expect("admin connection");
    let v: Option<i64> = conn.query_first(sql).await.expect("admin query");
    conn.disconnect().await.ok();
    v.unwrap_or(0)
}

/// Creates `goneaway.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))`.
pub async fn create_table(server: &Server) {
    server
        .admin("CREATE TABLE goneaway.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100), n INT NOT NULL DEFAULT 0) ENGINE=InnoDB")
        .await
        .expect("create table");
}
