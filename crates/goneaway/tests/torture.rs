//! The torture test: seeded random schedules of work, cancellations and real faults,
//! checked by an oracle of the pool's contract.
//!
//! Workers on two pools (one straight to the server, one through the relay) run reads,
//! autocommit writes, closure transactions, `Transaction` guards, bulk inserts and session
//! checks; any call may be cancelled (wrapped in a short timeout). A fault task KILLs
//! connections, restarts and crashes the server, and has the relay reset or blackhole
//! flows. Every value written carries a unique token, so the oracle can check at the end:
//!
//! - every read returned its own token (no result from another statement);
//! - every acknowledged write is present exactly once, every write refused with an error
//!   that is not "outcome unknown" is absent, and no write is present twice;
//! - every transaction is all or nothing (exactly all when committed, none when refused);
//! - reads never fail with "outcome unknown";
//! - every connection handed out had a clean session (no transaction, autocommit on, the
//!   server's `net_read_timeout`);
//! - when the work is over, the pools' counts equal what the server's process list shows,
//!   with nothing in use and nobody waiting.
//!
//! The seed is printed; `GONEAWAY_TORTURE_SEED=<seed>` reruns that schedule (the choices
//! of work, cancellation points and faults come from the seed; the real server's timing
//! still varies). `GONEAWAY_TORTURE_SCHEDULES` and `GONEAWAY_TORTURE_SECS` size the run:
//! `make test` runs a bounded one, `make torture` a long one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goneaway::mysql_async::prelude::Queryable;
use goneaway::mysql_async::Value;
use goneaway::{BulkInsert, Error, Pool, RetryPolicy};
use goneaway_harness::{Server, APP_USER};
use goneaway_relay::{Fault, Relay};

use crate::common::{relay, server};

/// SplitMix64: small, seedable, good enough to choose work and faults.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the client was told about one write (a row, or a transaction's rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// OK: must be present exactly once (all rows of a transaction).
    Acked,
    /// An error that says it did not happen: must be absent.
    Refused,
    /// Outcome unknown or cancelled: present at most once (a transaction: all or none).
    Unknown,
}

#[derive(Default)]
struct Ledger {
    /// Token → (rows it should have, what the client was told).
    writes: Mutex<HashMap<String, (u64, Told)>>,
    violations: Mutex<Vec<String>>,
    ops: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
    unknown: AtomicU64,
}

impl Ledger {
    fn record(&self, token: String, rows: u64, told: Told) {
        if told == Told::Unknown {
            self.unknown.fetch_add(1, Ordering::Relaxed);
        }
        self.writes.lock().unwrap().insert(token, (rows, told));
    }
    fn violation(&self, what: String) {
        eprintln!("torture: VIOLATION: {what}");
        self.violations.lock().unwrap().push(what);
    }
}

fn told_by(result: &Result<impl Sized, Error>) -> Told {
    match result {
        Ok(_) => Told::Acked,
        Err(e) if e.is_outcome_unknown() => Told::Unknown,
        Err(_) => Told::Refused,
    }
}

fn pool_opts(name: &str) -> goneaway::PoolOptions {
    goneaway::PoolOptions::new()
        .name(name)
        .max_size(4)
        .min_idle(1)
        .checkout_timeout(Duration::from_secs(15))
        .ping_timeout(Duration::from_millis(500))
        .statement_timeout(Some(Duration::from_secs(3)))
        .connect_timeout(Duration::from_secs(2))
        .retry(RetryPolicy {
            max_attempts: 8,
            deadline: Duration::from_secs(15),
            ..RetryPolicy::default()
        })
}

/// One call, perhaps cancelled: `None` when the timeout dropped it.
async fn maybe_cancel<T>(
    rng: &mut Rng,
    ledger: &Ledger,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    if rng.chance(25) {
        // Most calls take a few milliseconds on loopback: cut them anywhere in there.
        let after = Duration::from_micros(rng.below(8_000));
        match tokio::time::timeout(after, fut).await {
            Ok(v) => Some(v),
            Err(_) => {
                ledger.cancelled.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    } else {
        Some(fut.await)
    }
}

async fn worker(pool: Pool, mut rng: Rng, id: usize, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        ledger.ops.fetch_add(1, Ordering::Relaxed);
        let token = format!("w{id}-{n}");
        match rng.below(100) {
            // A read that must come back with its own token, text and binary protocol.
            0..=24 => {
                let binary = rng.chance(50);
                let got = maybe_cancel(&mut rng, &ledger, async {
                    if binary {
                        pool.exec_first::<String>("SELECT ?", (token.clone(),))
                            .await
                    } else {
                        pool.query_first::<String>(format!("SELECT '{token}'"))
                            .await
                    }
                })
                .await;
                match got {
                    Some(Ok(v)) if v.as_deref() != Some(token.as_str()) => {
                        ledger.violation(format!("read {token} returned {v:?}"))
                    }
                    Some(Err(e)) if e.is_outcome_unknown() => {
                        ledger.violation(format!("read {token} reported outcome unknown: {e}"))
                    }
                    Some(Err(_)) => {
                        ledger.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            // An autocommit write.
            25..=54 => {
                let r = maybe_cancel(
                    &mut rng,
                    &ledger,
                    pool.exec_drop(
                        "INSERT INTO w (token, part) VALUES (?, 0)",
                        (token.clone(),),
                    ),
                )
                .await;
                let told = r.as_ref().map_or(Told::Unknown, told_by);
                if let Some(Ok(affected)) = r {
                    if affected != 1 {
                        ledger.violation(format!("insert {token} affected {affected} rows"));
                    }
                }
                ledger.record(token, 1, told);
            }
            // A closure transaction of 1–4 rows.
            55..=69 => {
                let parts = 1 + rng.below(4);
                let t = token.clone();
                let r = maybe_cancel(
                    &mut rng,
                    &ledger,
                    pool.transaction(move |tx| {
                        let t = t.clone();
                        Box::pin(async move {
                            for part in 0..parts {
                                tx.exec_drop(
                                    "INSERT INTO w (token, part) VALUES (?, ?)",
                                    (t.clone(), part),
                                )
                                .await?;
                            }
                            Ok(())
                        })
                    }),
                )
                .await;
                let told = r.as_ref().map_or(Told::Unknown, told_by);
                ledger.record(token, parts, told);
            }
            // A Transaction guard: committed, rolled back, or dropped open.
            70..=79 => {
                let parts = 1 + rng.below(3);
                let ending = rng.below(3);
                let t = token.clone();
                let r = maybe_cancel(&mut rng, &ledger, async {
                    let mut tx = pool.begin().await?;
                    for part in 0..parts {
                        tx.exec_drop(
                            "INSERT INTO w (token, part) VALUES (?, ?)",
                            (t.clone(), part),
                        )
                        .await?;
                    }
                    match ending {
                        0 => tx.commit().await.map(|()| true),
                        1 => tx.rollback().await.map(|()| false),
                        _ => Ok(false),
                    }
                })
                .await;
                let told = match r {
                    Some(Ok(true)) => Told::Acked,
                    // Rolled back or dropped: nothing may be there.
                    Some(Ok(false)) => Told::Refused,
                    Some(Err(e)) if e.is_outcome_unknown() => Told::Unknown,
                    // A statement failed before COMMIT: the guard rolled back.
                    Some(Err(_)) => Told::Refused,
                    None => Told::Unknown,
                };
                ledger.record(token, parts, told);
            }
            // A bulk insert of a few hundred rows, each its own token.
            80..=84 => {
                let rows = 50 + rng.below(300);
                let tokens: Vec<String> = (0..rows).map(|i| format!("{token}-b{i}")).collect();
                let values: Vec<Vec<Value>> = tokens
                    .iter()
                    .map(|t| vec![Value::from(t.as_str()), Value::from(0)])
                    .collect();
                let r = maybe_cancel(
                    &mut rng,
                    &ledger,
                    pool.bulk_insert(BulkInsert::new("w", &["token", "part"]), values),
                )
                .await;
                // Batches commit one by one: after a failure each row is at most once.
                let told = match &r {
                    Some(Ok(_)) => Told::Acked,
                    _ => Told::Unknown,
                };
                if told == Told::Unknown {
                    ledger.unknown.fetch_add(1, Ordering::Relaxed);
                }
                let mut writes = ledger.writes.lock().unwrap();
                for t in tokens {
                    writes.insert(t, (1, told));
                }
            }
            // A session check: every connection handed out is clean.
            _ => {
                let r = maybe_cancel(&mut rng, &ledger, async {
                    let mut pc = pool.get().await?;
                    pc.query_first::<(i64, i64, i64)>(
                        "SELECT @@in_transaction, @@autocommit, @@session.net_read_timeout = @@global.net_read_timeout",
                    )
                    .await
                })
                .await;
                match r {
                    Some(Ok(Some(state))) if state != (0, 1, 1) => ledger.violation(format!(
                        "a connection was handed out unclean (in_transaction, autocommit, default net_read_timeout) = {state:?}"
                    )),
                    Some(Err(_)) => {
                        ledger.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
        // Sometimes a pause, so connections sit idle and keepalive and validation work.
        if rng.chance(5) {
            tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
        }
    }
}

#[derive(Default, Debug)]
struct FaultCounts {
    kill_one: u64,
    kill_all: u64,
    restart: u64,
    crash: u64,
    reset: u64,
    blackhole: u64,
}

impl FaultCounts {
    fn total(&self) -> u64 {
        self.kill_one + self.kill_all + self.restart + self.crash + self.reset + self.blackhole
    }
}

async fn app_connection_ids(server: &Server) -> Vec<u32> {
    let Ok(mut c) = server.admin_conn().await else {
        return Vec::new();
    };
    let ids = c
        .query::<u32, _>(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{APP_USER}'"
        ))
        .await
        .unwrap_or_default();
    c.disconnect().await.ok();
    ids
}

async fn faults(
    server: Arc<Server>,
    relay: Arc<Relay>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> FaultCounts {
    let mut counts = FaultCounts::default();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match rng.below(100) {
            0..=34 => {
                let ids = app_connection_ids(&server).await;
                if !ids.is_empty() {
                    let id = ids[rng.below(ids.len() as u64) as usize];
                    let _ = server.kill_connection(id).await;
                    counts.kill_one += 1;
                }
            }
            35..=49 => {
                for id in app_connection_ids(&server).await {
                    let _ = server.kill_connection(id).await;
                }
                counts.kill_all += 1;
            }
            50..=59 => {
                server.restart().await.expect("restart the server");
                counts.restart += 1;
            }
            60..=67 => {
                server.crash().await.expect("crash the server");
                server.start().await.expect("start the server again");
                counts.crash += 1;
            }
            68..=84 => {
                relay.reset_all();
                counts.reset += 1;
            }
            _ => {
                relay.set(Fault::BlackholeIdle(Duration::from_millis(200)));
                tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
                relay.clear();
                counts.blackhole += 1;
            }
        }
    }
    counts
}

/// Checks the table against the ledger; returns (rows checked, unknown writes that landed).
async fn check_writes(server: &Server, ledger: &Ledger) -> (u64, u64) {
    let mut c = server.admin_conn().await.expect("admin connection");
    let rows: Vec<(String, u64, u64)> = c
        .query("SELECT token, COUNT(*), COUNT(DISTINCT part) FROM goneaway.w GROUP BY token")
        .await
        .expect("read the table");
    c.disconnect().await.ok();
    let present: HashMap<String, (u64, u64)> =
        rows.into_iter().map(|(t, n, d)| (t, (n, d))).collect();
    let writes = ledger.writes.lock().unwrap();
    let mut landed_unknown = 0;
    for (token, &(want, told)) in writes.iter() {
        let (n, distinct) = present.get(token).copied().unwrap_or((0, 0));
        if n != distinct {
            ledger.violation(format!(
                "{token}: a row written twice ({n} rows, {distinct} parts)"
            ));
        }
        match told {
            Told::Acked if n != want => {
                ledger.violation(format!("{token}: acknowledged, {n} of {want} rows present"))
            }
            Told::Refused if n != 0 => {
                ledger.violation(format!("{token}: refused, yet {n} rows present"))
            }
            Told::Unknown if n != 0 && n != want => ledger.violation(format!(
                "{token}: outcome unknown, {n} of {want} rows present (half a transaction)"
            )),
            Told::Unknown if n == want => landed_unknown += 1,
            _ => {}
        }
    }
    for token in present.keys() {
        if !writes.contains_key(token) {
            ledger.violation(format!("{token}: present but never written"));
        }
    }
    (writes.len() as u64, landed_unknown)
}

/// After the work: the pools' own counts against the server's process list.
async fn check_counts(server: &Server, pools: &[Pool], ledger: &Ledger) {
    let mut last = (0, 0);
    for _ in 0..100 {
        let ours: usize = pools.iter().map(|p| p.status().size).sum();
        let theirs = app_connection_ids(server).await.len();
        if ours == theirs {
            for p in pools {
                let st = p.status();
                if st.in_use != 0 || st.waiters != 0 || st.size > st.max_size {
                    ledger.violation(format!("pool counters after the work: {st:?}"));
                }
            }
            return;
        }
        last = (ours, theirs);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger.violation(format!(
        "the pools count {} connections, the server shows {}",
        last.0, last.1
    ));
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_pool_under_cancellation_and_faults() {
    let seed = std::env::var("GONEAWAY_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let schedules = env_u64("GONEAWAY_TORTURE_SCHEDULES", 3);
    let secs = env_u64("GONEAWAY_TORTURE_SECS", 15);
    eprintln!("torture: seed {seed} ({schedules} schedules of {secs} s); rerun with GONEAWAY_TORTURE_SEED={seed}");

    let server = Arc::new(server(4).await);
    let relay = Arc::new(relay(&server).await);
    let mut seeds = Rng(seed);
    let mut all_faults = FaultCounts::default();
    let (mut ops, mut cancelled, mut rows, mut unknown, mut landed, mut errors) =
        (0, 0, 0, 0, 0, 0);
    let mut violations = Vec::new();
    for schedule in 0..schedules {
        let schedule_seed = seeds.next();
        server
            .admin("DROP TABLE IF EXISTS goneaway.w")
            .await
            .expect("drop the table");
        server
            .admin("CREATE TABLE goneaway.w (id BIGINT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64) NOT NULL, part INT NOT NULL, KEY (token)) ENGINE=InnoDB")
            .await
            .expect("create the table");
        let direct = Pool::with_options(&server.url(), pool_opts("direct")).unwrap();
        let relayed =
            Pool::with_options(&server.url_for(relay.local_addr()), pool_opts("relayed")).unwrap();
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut rng = Rng(schedule_seed);
        let mut tasks = Vec::new();
        for id in 0..6 {
            let pool = if id % 2 == 0 { &direct } else { &relayed };
            tasks.push(tokio::spawn(worker(
                pool.clone(),
                Rng(rng.next()),
                id,
                ledger.clone(),
                stop.clone(),
            )));
        }
        let fault_task = tokio::spawn(faults(
            server.clone(),
            relay.clone(),
            Rng(rng.next()),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let fault_counts = fault_task.await.expect("fault task");
        relay.clear();
        // Bounded: every call has its own timeouts; a worker stuck past this is a bug.
        let deadline = Instant::now() + Duration::from_secs(60);
        for t in tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, t)
                .await
                .expect("a worker did not finish within 60 s after the stop")
                .expect("worker panicked");
        }
        if !server.is_running() {
            server.start().await.expect("server back up");
        }
        let (checked, landed_unknown) = check_writes(&server, &ledger).await;
        check_counts(&server, &[direct.clone(), relayed.clone()], &ledger).await;
        let st = (direct.status(), relayed.status());
        eprintln!(
            "torture: schedule {schedule} (seed {schedule_seed}): {} ops, {} cancelled, {} errors, {checked} writes checked, {} outcome unknown ({landed_unknown} of them landed), faults {fault_counts:?}; direct {:?}; relayed {:?}",
            ledger.ops.load(Ordering::Relaxed),
            ledger.cancelled.load(Ordering::Relaxed),
            ledger.errors.load(Ordering::Relaxed),
            ledger.unknown.load(Ordering::Relaxed),
            st.0,
            st.1,
        );
        ops += ledger.ops.load(Ordering::Relaxed);
        cancelled += ledger.cancelled.load(Ordering::Relaxed);
        errors += ledger.errors.load(Ordering::Relaxed);
        unknown += ledger.unknown.load(Ordering::Relaxed);
        rows += checked;
        landed += landed_unknown;
        all_faults.kill_one += fault_counts.kill_one;
        all_faults.kill_all += fault_counts.kill_all;
        all_faults.restart += fault_counts.restart;
        all_faults.crash += fault_counts.crash;
        all_faults.reset += fault_counts.reset;
        all_faults.blackhole += fault_counts.blackhole;
        violations.extend(
            ledger
                .violations
                .lock()
                .unwrap()
                .iter()
                .map(|v| format!("schedule {schedule} (seed {schedule_seed}): {v}")),
        );
        direct.close().await;
        relayed.close().await;
    }
    eprintln!(
        "torture: seed {seed}: {schedules} schedules, {ops} operations, {cancelled} cancelled, {errors} errors, {rows} writes checked, {unknown} outcome unknown ({landed} landed), {} faults {all_faults:?}, {} violations",
        all_faults.total(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations (rerun with GONEAWAY_TORTURE_SEED={seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
