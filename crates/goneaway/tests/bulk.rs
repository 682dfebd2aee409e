//! Bulk writes against a 1 MB `max_allowed_packet`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use goneaway::mysql_async::Value;
use goneaway::{BulkInsert, Error};
use goneaway_harness::Server;

use crate::common::{opts, pool, scalar};

/// 8 MB of rows — eight times max_allowed_packet — land whole, in statements that each
/// fit the limit; the session's net timeouts are raised during the work and restored.
#[tokio::test]
async fn bulk_insert_lands_a_payload_many_times_max_allowed_packet() {
    let server = Server::builder()
        .var("max_allowed_packet", "1M")
        .start()
        .await
        .unwrap();
    server
        .admin("CREATE TABLE goneaway.blobs (id INT PRIMARY KEY, body MEDIUMTEXT)")
        .await
        .unwrap();
    let pool = pool(&server.url(), opts().max_size(1));
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let rows = (0..400).map(|i| vec![Value::from(i), Value::from("y".repeat(20_000))]);
    let done = pool
        .bulk_insert(
            BulkInsert::new("blobs", &["id", "body"]).on_progress(move |p| {
                seen.store(p.statements, Ordering::SeqCst);
            }),
            rows,
        )
        .await
        .expect("the bulk insert fits the packet limit");
    assert_eq!(done.rows, 400);
    assert!(done.statements >= 8, "{done:?}");
    assert!(done.bytes > 8_000_000, "{done:?}");
    assert_eq!(calls.load(Ordering::SeqCst), done.statements);
    assert_eq!(
        scalar(&server, "SELECT COUNT(*) FROM goneaway.blobs").await,
        400
    );
    assert_eq!(
        scalar(&server, "SELECT SUM(LENGTH(body)) FROM goneaway.blobs").await,
        8_000_000
    );
    // max_size(1): the same connection, whose timeouts must be back to the defaults.
    let t: Vec<(u64, u64)> = pool
        .query("SELECT @@session.net_read_timeout, @@session.net_write_timeout")
        .await
        .unwrap();
    assert_eq!(t, vec![(30, 60)]);

    // One row that can never fit is refused before anything is sent.
    let err = pool
        .bulk_insert(
            BulkInsert::new("blobs", &["id", "body"]),
            vec![vec![Value::from(1000), Value::from("z".repeat(2_000_000))]],
        )
        .await
        .expect_err("a 2 MB row cannot fit in 1 MB");
    assert!(matches!(err, Error::RowTooLarge { row: 0, .. }), "{err:?}");

    // Batched delete: 100 rows at a time until none is left.
    let mut steps = 0;
    let deleted = pool
        .batched("DELETE FROM blobs WHERE id >= ? LIMIT 100", (0,), |_| {
            steps += 1
        })
        .await
        .unwrap();
    assert_eq!(deleted.rows, 400);
    assert_eq!(deleted.statements, 5);
    assert_eq!(steps, 5);
    assert_eq!(
        scalar(&server, "SELECT COUNT(*) FROM goneaway.blobs").await,
        0
    );
}
