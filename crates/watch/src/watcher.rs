//! The poll loop and the HTTP listener (axum: `/metrics` and `/healthz`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use goneaway_connect::Target;
use goneaway_core::Cause;
use tokio::net::TcpListener;

use crate::state::{Change, ServerState, Snapshot};

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// What to watch and where to serve.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The servers.
    pub targets: Vec<Target>,
    /// Where `/metrics` and `/healthz` are served. Loopback by default: metrics name
    /// servers and accounts, so exposing them is a decision (`0.0.0.0:9106`).
    pub listen: SocketAddr,
    /// Time between polls of one server (default 15 s, Prometheus's usual scrape interval).
    pub interval: Duration,
    /// The limit for one poll (connect and read).
    pub timeout: Duration,
}

impl WatchConfig {
    /// Watches `targets`, serving on 127.0.0.1:9106 and polling every 15 s.
    pub fn new(targets: Vec<Target>) -> WatchConfig {
        WatchConfig {
            targets,
            listen: SocketAddr::from(([127, 0, 0, 1], 9106)),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A bound watcher, ready to run.
#[derive(Debug)]
pub struct Watcher {
    config: WatchConfig,
    listener: TcpListener,
    states: Arc<Mutex<Vec<ServerState>>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Watcher {
    /// Binds the listen address.
    pub async fn bind(config: WatchConfig) -> Result<Watcher, WatchError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| WatchError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let states = config
            .targets
            .iter()
            .map(|t| ServerState::new(t.redacted()))
            .collect();
        Ok(Watcher {
            config,
            listener,
            states: Arc::new(Mutex::new(states)),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The current metrics text.
    pub fn metrics(&self) -> String {
        crate::metrics::render(&self.states.lock().unwrap())
    }

    /// Polls and serves until `shutdown` completes; then stops polling and lets scrapes in
    /// flight finish (for at most [`DRAIN`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut polls = tokio::task::JoinSet::new();
        for (index, target) in self.config.targets.iter().cloned().enumerate() {
            let states = self.states.clone();
            let (interval, timeout) = (self.config.interval, self.config.timeout);
            polls.spawn(poll_loop(index, target, states, interval, timeout));
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut stopped_http = stopped.clone();
        let server = axum::serve(self.listener, router(self.states.clone()))
            .with_graceful_shutdown(async move {
                let _ = stopped_http.wait_for(|s| *s).await;
            });
        let http = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
        shutdown.await;
        let _ = stop.send(true);
        drop(stopped);
        polls.shutdown().await;
        // A scraper that keeps its connection open must not hold the watcher up forever.
        let abort = http.abort_handle();
        if tokio::time::timeout(DRAIN, http).await.is_err() {
            abort.abort();
        }
    }
}

/// How long shutdown waits for HTTP connections in flight.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Prometheus's text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

type States = Arc<Mutex<Vec<ServerState>>>;

/// `/metrics` and `/healthz`; anything else is a 404 that names them.
fn router(states: States) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, PLAIN_TEXT)],
                "not found: try /metrics or /healthz\n",
            )
        })
        .with_state(states)
}

async fn metrics(State(states): State<States>) -> impl IntoResponse {
    let body = crate::metrics::render(&states.lock().unwrap());
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], body)
}

/// The watcher itself is healthy as long as it answers; the servers' health is in the body
/// and in goneaway_up, so one down database does not get the watcher restarted.
async fn healthz(State(states): State<States>) -> impl IntoResponse {
    let body: String = states
        .lock()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}\n", if s.up { "up" } else { "down" }, s.name))
        .collect();
    ([(header::CONTENT_TYPE, PLAIN_TEXT)], format!("ok\n{body}"))
}

async fn poll_loop(
    index: usize,
    target: Target,
    states: Arc<Mutex<Vec<ServerState>>>,
    interval: Duration,
    timeout: Duration,
) {
    // A poll is a short doctor run: no sampling (the rates come from consecutive polls),
    // no log reading (it would be re-read every interval).
    let options = goneaway_doctor::Options {
        sample: Duration::ZERO,
        read_server_log: false,
        connect_timeout: timeout,
        ..goneaway_doctor::Options::default()
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let report =
            tokio::time::timeout(timeout * 2, goneaway_doctor::diagnose(&target, &options)).await;
        let snapshot = report.as_ref().ok().and_then(Snapshot::from_report);
        let cause = match &report {
            Ok(r) => r
                .connection_error
                .as_ref()
                .map_or(Cause::Unknown, |e| e.cause),
            Err(_) => Cause::ServerUnreachable,
        };
        let (name, changes) = {
            let mut states = states.lock().unwrap();
            let state = &mut states[index];
            let changes = match snapshot {
                Some(s) => state.observed(s, now()),
                None => state.failed(cause),
            };
            (state.name.clone(), changes)
        };
        for change in changes {
            match change {
                Change::Up => tracing::warn!(server = %name, "server answers again"),
                Change::Down(cause) => {
                    tracing::warn!(server = %name, %cause, "server does not answer")
                }
                Change::Restarted { before, after } => {
                    tracing::warn!(server = %name, uptime_before = before, uptime_now = after, "server restarted")
                }
                Change::RateJump { counter, per_hour } => {
                    tracing::warn!(server = %name, %counter, per_hour = per_hour.round(), "rate jumped")
                }
                #[allow(unreachable_patterns)]
                other => tracing::info!(server = %name, ?other, "change"),
            }
        }
    }
}
