//! The size gauges through the `metrics` facade, read back with a small in-process recorder
//! (gauges only), and compared with `status()`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use goneaway::metrics_names as m;
use metrics::{
    Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

use crate::common;

/// One gauge's value, as f64 bits.
#[derive(Default)]
struct Cell(AtomicU64);

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        self.set(self.get() + v);
    }
    fn decrement(&self, v: f64) {
        self.set(self.get() - v);
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

impl Cell {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Records gauges by `name{pool}`; counters and histograms are dropped.
#[derive(Default)]
struct Gauges(Mutex<HashMap<String, Arc<Cell>>>);

impl Recorder for Gauges {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let pool = key
            .labels()
            .find(|l| l.key() == "pool")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        let cell = self
            .0
            .lock()
            .unwrap()
            .entry(format!("{}{{{pool}}}", key.name()))
            .or_default()
            .clone();
        Gauge::from_arc(cell)
    }
}

/// The process-wide recorder (one per test binary), installed on first use.
fn recorder() -> &'static Gauges {
    static RECORDER: OnceLock<&'static Gauges> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r: &'static Gauges = Box::leak(Box::default());
        metrics::set_global_recorder(r).expect("no other recorder in this test binary");
        r
    })
}

/// `[open, idle, in_use, waiters]` of the pool named `pool`.
fn read(pool: &str) -> [f64; 4] {
    let map = recorder().0.lock().unwrap();
    [m::OPEN, m::IDLE, m::IN_USE, m::WAITERS].map(|name| {
        map.get(&format!("{name}{{{pool}}}"))
            .map_or(-1.0, |c| c.get())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_gauges_follow_checkouts_and_waiters() {
    recorder();
    let server = common::server(30).await;
    let pool = common::pool(
        &server.url(),
        common::opts().max_size(2).name("gauges-test"),
    );
    let held = common::warm(&pool, 2).await;
    assert_eq!(held.len(), 2);
    // `warm` returned both: two open, both idle.
    assert_eq!(read("gauges-test"), [2.0, 2.0, 0.0, 0.0]);

    let a = pool.get().await.expect("checkout");
    let b = pool.get().await.expect("checkout");
    assert_eq!(read("gauges-test"), [2.0, 0.0, 2.0, 0.0]);
    let st = pool.status();
    assert_eq!((st.size, st.idle, st.in_use, st.waiters), (2, 0, 2, 0));

    // A third caller waits for one of them.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|c| c.id()) }
    });
    let mut waited = false;
    for _ in 0..100 {
        if read("gauges-test")[3] == 1.0 {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        waited,
        "the waiter shows in the gauge: {:?}",
        read("gauges-test")
    );
    assert_eq!(pool.status().waiters, 1);

    drop(a);
    let id = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter got the returned connection")
        .unwrap()
        .expect("checkout");
    assert!(held.contains(&id));
    drop(b);
    assert_eq!(read("gauges-test"), [2.0, 2.0, 0.0, 0.0]);

    pool.close().await;
    assert_eq!(read("gauges-test"), [0.0, 0.0, 0.0, 0.0]);
}
