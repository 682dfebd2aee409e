//! Counters the proxy keeps, rendered as Prometheus text and served (with a health check)
//! by a small axum router on a separate, loopback-by-default address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Upper bounds (seconds) of the per-command latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The proxy's counters, shared by every session. Cheap to update: atomics, and a mutex
/// only for the labelled counters, which move on rare events.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client sessions logged in now.
    pub clients: AtomicI64,
    /// Client connections still logging in now (see [`crate::gate`]).
    pub pending_logins: AtomicI64,
    /// Pending logins closed to make room for newer ones.
    pub pending_evicted: AtomicU64,
    /// Pending logins closed at the login deadline.
    pub login_timeouts: AtomicU64,
    /// Login attempts delayed after repeated failures.
    pub login_throttled: AtomicU64,
    /// Client sessions closed after `client_idle_timeout` without a command.
    pub client_idle_closed: AtomicU64,
    /// Configurations put in force by a reload (SIGHUP).
    pub reloads: AtomicU64,
    /// Reloads refused (an unreadable or invalid configuration; the old one stays).
    pub reload_failures: AtomicU64,
    /// Backend connections open now.
    pub backends: AtomicI64,
    /// Client logins accepted.
    pub logins: AtomicU64,
    /// Client logins refused (wrong account or password, or plain text under `require_tls`).
    pub login_failures: AtomicU64,
    /// Reads of the server's accounts (`mysql.user`), see [`crate::accounts`].
    pub server_account_reads: AtomicU64,
    /// Client logins accepted over TLS (a subset of `logins`).
    pub tls_logins: AtomicU64,
    /// TLS handshakes with clients that failed (bad ClientHello, no common cipher…).
    pub tls_failures: AtomicU64,
    /// Backend connections opened, replacements included.
    pub backend_connects: AtomicU64,
    /// Commands forwarded.
    pub commands: AtomicU64,
    /// Commands replayed on a fresh backend after the first one failed.
    pub retries: AtomicU64,
    /// Client packets over the server's `max_allowed_packet`, answered with ERR 1153.
    pub oversize_rejections: AtomicU64,
    /// Keepalive pings sent to idle backends.
    pub pings: AtomicU64,
    /// Idle backends released before the server's `wait_timeout` could end them.
    pub recycled: AtomicU64,
    /// Second connections opened to ask the server about a silent reply.
    pub stall_checks: AtomicU64,
    /// Server connections waiting in the shared pool now.
    pub pool_idle: AtomicI64,
    /// Shared connections taken from the pool, by how well they fitted: own, same_state,
    /// reset (see `backend::pool`).
    pub pool_own: AtomicU64,
    pub pool_same_state: AtomicU64,
    pub pool_reset: AtomicU64,
    /// Shared connections found closed when taken, or closed unused by the sweeper.
    pub pool_closed: AtomicU64,
    /// Changes of the cluster's writer the monitor saw (to another server, or to none).
    pub writer_changes: AtomicU64,
    /// Backends that had to wait for the cluster to have a writer.
    pub switchover_waits: AtomicU64,
    /// Their waits, summed.
    switchover_wait_micros: AtomicU64,
    /// Statements refused with 1290 by a server that had stopped being the writer, run
    /// on the new writer instead of reaching the client.
    pub read_only_redirects: AtomicU64,
    /// Reads run on a replica (`replica_reads`).
    pub replica_reads: AtomicU64,
    /// Reads that could have run on a replica and ran on the writer: no replica fresh
    /// enough, none had applied the session's last write, or none could be reached.
    pub replica_reads_declined: AtomicU64,
    /// Each cluster member as the monitor last saw it (empty for a single server).
    servers: Mutex<Vec<ServerGauge>>,
    labelled: Mutex<Labelled>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_micros: AtomicU64,
}

/// One cluster member, as the monitor last saw it (see [`crate::monitor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGauge {
    /// `host:port`.
    pub server: String,
    /// Reached and answered at the last poll.
    pub up: bool,
    /// One of [`crate::monitor::ROLES`].
    pub role: &'static str,
    /// A replica's `Seconds_Behind_Master`, when the server tells it.
    pub lag: Option<u64>,
}

#[derive(Debug)]
struct Labelled {
    /// Backend losses the client never saw, by cause.
    absorbed: BTreeMap<&'static str, u64>,
    /// Errors the proxy itself sent to clients, by kind.
    errors: BTreeMap<&'static str, u64>,
    /// Transactions run again on a fresh backend: `replayed`, or why not.
    replays: BTreeMap<&'static str, u64>,
    /// COMMITs lost with their connection and resolved by their mark, by outcome.
    commits: BTreeMap<&'static str, u64>,
    /// Silent replies found never to come, by verdict (see [`crate::backend::stall`]).
    stalls: BTreeMap<&'static str, u64>,
    /// Sessions that kept a server connection to themselves, by the reason.
    pins: BTreeMap<&'static str, u64>,
}

/// Why a session keeps a server connection between its statements (the
/// `goneaway_proxy_pins_total` label).
pub const PIN_REASONS: [&str; 13] = [
    "user_variables",
    "temporary_tables",
    "named_locks",
    "table_locks",
    "backup_locks",
    "sql_prepare",
    "role",
    "unknown_state",
    "cursor",
    "long_data",
    "autocommit_off",
    "sandboxed_password",
    "unreported_variables",
];

/// Every label value is exported from the start, at 0: a series that appears at its
/// first event already at 1 is invisible to Prometheus's `increase()` and `rate()`.
impl Default for Labelled {
    fn default() -> Self {
        let zeros = |keys: &[&'static str]| keys.iter().map(|k| (*k, 0)).collect();
        Labelled {
            absorbed: zeros(&[
                "connection_killed",
                "idle_timeout",
                "network_drop",
                "server_restart",
                "unknown",
            ]),
            errors: zeros(&[
                "access_denied",
                "backend_unavailable",
                "client_idle_timeout",
                "commit_not_committed",
                "gave_up",
                "outcome_unknown",
                "reply_cut",
                "server_closed",
                "shutdown",
                "state_lost",
                "statement",
                "statement_killed",
                "too_many_clients",
                "transaction_lost",
                "transaction_moved",
            ]),
            replays: zeros(&["failed", "mismatch", "replayed", "unreplayable"]),
            commits: zeros(&[
                "committed",
                "not_committed",
                "write_committed",
                "write_not_committed",
            ]),
            stalls: zeros(&crate::backend::stall::VERDICTS),
            pins: zeros(&PIN_REASONS),
        }
    }
}

fn nonzero(m: &BTreeMap<&'static str, u64>) -> BTreeMap<&'static str, u64> {
    m.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (*k, *n))
        .collect()
}

impl Stats {
    /// Counts a backend loss that no client saw, under its cause identifier.
    pub fn absorbed(&self, cause: &'static str) {
        *self
            .labelled
            .lock()
            .unwrap()
            .absorbed
            .entry(cause)
            .or_default() += 1;
    }

    /// Counts a transaction replay: `replayed`, or the reason it was not (`mismatch`,
    /// `unreplayable`, `failed`).
    pub fn replay(&self, outcome: &'static str) {
        *self
            .labelled
            .lock()
            .unwrap()
            .replays
            .entry(outcome)
            .or_default() += 1;
    }

    /// Counts a lost COMMIT resolved by its mark: `committed` or `not_committed`.
    pub fn commit_resolved(&self, outcome: &'static str) {
        *self
            .labelled
            .lock()
            .unwrap()
            .commits
            .entry(outcome)
            .or_default() += 1;
    }

    /// Counts a silent reply found never to come, under its verdict.
    pub fn stalled(&self, verdict: &'static str) {
        *self
            .labelled
            .lock()
            .unwrap()
            .stalls
            .entry(verdict)
            .or_default() += 1;
    }

    /// Counts a session that began to keep its server connection for `reason`.
    pub fn pinned(&self, reason: &'static str) {
        *self
            .labelled
            .lock()
            .unwrap()
            .pins
            .entry(reason)
            .or_default() += 1;
    }

    /// Pins so far, by reason.
    pub fn pins(&self) -> BTreeMap<&'static str, u64> {
        nonzero(&self.labelled.lock().unwrap().pins)
    }

    /// Silent replies found never to come so far, by verdict.
    pub fn stalls(&self) -> BTreeMap<&'static str, u64> {
        nonzero(&self.labelled.lock().unwrap().stalls)
    }

    /// Lost COMMITs resolved so far, by outcome.
    pub fn commits_resolved(&self) -> BTreeMap<&'static str, u64> {
        nonzero(&self.labelled.lock().unwrap().commits)
    }

    /// Transaction replays so far, by outcome.
    pub fn replays(&self) -> BTreeMap<&'static str, u64> {
        nonzero(&self.labelled.lock().unwrap().replays)
    }

    /// Counts an error the proxy sent to a client.
    pub fn error_sent(&self, kind: &'static str) {
        *self
            .labelled
            .lock()
            .unwrap()
            .errors
            .entry(kind)
            .or_default() += 1;
    }

    /// Backend losses absorbed so far, by cause.
    pub fn absorbed_by_cause(&self) -> BTreeMap<&'static str, u64> {
        nonzero(&self.labelled.lock().unwrap().absorbed)
    }

    /// Errors sent to clients so far, by kind.
    pub fn errors_by_kind(&self) -> BTreeMap<&'static str, u64> {
        nonzero(&self.labelled.lock().unwrap().errors)
    }

    /// Records a backend's wait for the cluster to have a writer.
    pub fn switchover_wait(&self, d: Duration) {
        self.switchover_waits.fetch_add(1, Ordering::Relaxed);
        self.switchover_wait_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The seconds backends waited for a writer, summed.
    pub fn switchover_wait_seconds(&self) -> f64 {
        self.switchover_wait_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The cluster's members as the monitor saw them (set after each poll round).
    pub fn set_servers(&self, servers: Vec<ServerGauge>) {
        *self.servers.lock().unwrap() = servers;
    }

    /// The cluster's members as the monitor last saw them.
    pub fn servers(&self) -> Vec<ServerGauge> {
        self.servers.lock().unwrap().clone()
    }

    /// Records one command's latency.
    pub fn command_latency(&self, d: Duration) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        // One atomic add per command on the hot path: the smallest bucket that holds it;
        // the cumulative counts Prometheus wants are summed when rendering.
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |v: &AtomicI64| v.load(Ordering::Relaxed);
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "goneaway_proxy_client_connections",
            "gauge",
            "Client connections open.",
            g(&self.clients).to_string(),
        );
        metric(
            "goneaway_proxy_backend_connections",
            "gauge",
            "Backend connections open.",
            g(&self.backends).to_string(),
        );
        metric(
            "goneaway_proxy_pending_logins",
            "gauge",
            "Client connections still logging in.",
            g(&self.pending_logins).to_string(),
        );
        metric(
            "goneaway_proxy_pending_logins_evicted_total",
            "counter",
            "Pending logins closed to make room for newer ones (max_pending_logins).",
            c(&self.pending_evicted).to_string(),
        );
        metric(
            "goneaway_proxy_login_timeouts_total",
            "counter",
            "Pending logins closed at the login deadline (login_timeout).",
            c(&self.login_timeouts).to_string(),
        );
        metric(
            "goneaway_proxy_login_throttled_total",
            "counter",
            "Login attempts delayed after repeated failures from the same address and user.",
            c(&self.login_throttled).to_string(),
        );
        metric(
            "goneaway_proxy_client_idle_closed_total",
            "counter",
            "Client sessions closed after client_idle_timeout without a command.",
            c(&self.client_idle_closed).to_string(),
        );
        metric(
            "goneaway_proxy_config_reloads_total",
            "counter",
            "Configurations put in force by a reload (SIGHUP).",
            c(&self.reloads).to_string(),
        );
        metric(
            "goneaway_proxy_config_reload_failures_total",
            "counter",
            "Reloads refused: the configuration did not read or check; the old one stays in force.",
            c(&self.reload_failures).to_string(),
        );
        metric(
            "goneaway_proxy_logins_total",
            "counter",
            "Client logins accepted.",
            c(&self.logins).to_string(),
        );
        metric(
            "goneaway_proxy_login_failures_total",
            "counter",
            "Client logins refused.",
            c(&self.login_failures).to_string(),
        );
        metric(
            "goneaway_proxy_server_account_reads_total",
            "counter",
            "Reads of the server's accounts (mysql.user) to check client logins.",
            c(&self.server_account_reads).to_string(),
        );
        metric(
            "goneaway_proxy_tls_logins_total",
            "counter",
            "Client logins accepted over TLS.",
            c(&self.tls_logins).to_string(),
        );
        metric(
            "goneaway_proxy_tls_handshake_failures_total",
            "counter",
            "TLS handshakes with clients that failed.",
            c(&self.tls_failures).to_string(),
        );
        metric(
            "goneaway_proxy_backend_connects_total",
            "counter",
            "Backend connections opened.",
            c(&self.backend_connects).to_string(),
        );
        metric(
            "goneaway_proxy_retries_total",
            "counter",
            "Commands replayed on a fresh backend.",
            c(&self.retries).to_string(),
        );
        metric(
            "goneaway_proxy_oversize_rejections_total",
            "counter",
            "Client packets over max_allowed_packet.",
            c(&self.oversize_rejections).to_string(),
        );
        metric(
            "goneaway_proxy_keepalive_pings_total",
            "counter",
            "Pings sent to idle backends.",
            c(&self.pings).to_string(),
        );
        metric(
            "goneaway_proxy_pool_idle_connections",
            "gauge",
            "Server connections waiting in the shared pool.",
            g(&self.pool_idle).to_string(),
        );
        metric(
            "goneaway_proxy_pool_closed_total",
            "counter",
            "Shared server connections found closed when taken, or closed after pool_idle_limit unused.",
            c(&self.pool_closed).to_string(),
        );
        metric(
            "goneaway_proxy_stall_checks_total",
            "counter",
            "Second connections opened to ask the server about a reply that stayed silent for stall_check.",
            c(&self.stall_checks).to_string(),
        );
        metric(
            "goneaway_proxy_backends_recycled_total",
            "counter",
            "Idle backends released before wait_timeout.",
            c(&self.recycled).to_string(),
        );
        metric(
            "goneaway_proxy_writer_changes_total",
            "counter",
            "Changes of the cluster's writer the monitor saw (to another server, or to none).",
            c(&self.writer_changes).to_string(),
        );
        metric(
            "goneaway_proxy_switchover_waits_total",
            "counter",
            "Backends that waited for the cluster to have a writer (switchover_wait).",
            c(&self.switchover_waits).to_string(),
        );
        metric(
            "goneaway_proxy_switchover_wait_seconds_total",
            "counter",
            "Seconds backends waited for the cluster to have a writer, summed.",
            self.switchover_wait_seconds().to_string(),
        );
        metric(
            "goneaway_proxy_read_only_redirects_total",
            "counter",
            "Statements refused with 1290 by a server that had stopped being the writer, run on the new writer instead.",
            c(&self.read_only_redirects).to_string(),
        );
        metric(
            "goneaway_proxy_replica_reads_total",
            "counter",
            "Reads run on a replica (replica_reads).",
            c(&self.replica_reads).to_string(),
        );
        metric(
            "goneaway_proxy_replica_reads_declined_total",
            "counter",
            "Reads that could have run on a replica and ran on the writer: no replica within max_replica_lag, none had applied the session's last write, or none could be reached.",
            c(&self.replica_reads_declined).to_string(),
        );
        let servers = self.servers.lock().unwrap().clone();
        let _ = writeln!(out, "# HELP goneaway_proxy_server_up Whether the monitor reached each cluster member at its last poll (no series for a single server).\n# TYPE goneaway_proxy_server_up gauge");
        for s in &servers {
            let _ = writeln!(
                out,
                "goneaway_proxy_server_up{{server=\"{}\"}} {}",
                s.server,
                u8::from(s.up)
            );
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_server_role Each cluster member's role at the monitor's last poll: 1 for its role, 0 for the others (writer, replica, read_only, galera_synced, galera_not_synced, down).\n# TYPE goneaway_proxy_server_role gauge");
        for s in &servers {
            for role in crate::monitor::ROLES {
                let _ = writeln!(
                    out,
                    "goneaway_proxy_server_role{{server=\"{}\",role=\"{role}\"}} {}",
                    s.server,
                    u8::from(s.role == role)
                );
            }
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_replica_lag_seconds Each replica's Seconds_Behind_Master at the monitor's last poll (no series while the server cannot tell: a replication thread stopped).\n# TYPE goneaway_proxy_replica_lag_seconds gauge");
        for s in &servers {
            if let Some(lag) = s.lag {
                let _ = writeln!(
                    out,
                    "goneaway_proxy_replica_lag_seconds{{server=\"{}\"}} {lag}",
                    s.server
                );
            }
        }
        let labelled = self.labelled.lock().unwrap();
        let _ = writeln!(out, "# HELP goneaway_proxy_absorbed_total Backend losses no client saw, by cause.\n# TYPE goneaway_proxy_absorbed_total counter");
        for (cause, n) in &labelled.absorbed {
            let _ = writeln!(
                out,
                "goneaway_proxy_absorbed_total{{cause=\"{cause}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_client_errors_total Errors the proxy sent to clients, by kind.\n# TYPE goneaway_proxy_client_errors_total counter");
        for (kind, n) in &labelled.errors {
            let _ = writeln!(
                out,
                "goneaway_proxy_client_errors_total{{kind=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_transaction_replays_total Transactions whose backend was lost, run again on a fresh one: outcome replayed, or mismatch (a reply differed), unreplayable (see the proxy's replay rules), failed (the replay lost its connection too).\n# TYPE goneaway_proxy_transaction_replays_total counter");
        for (outcome, n) in &labelled.replays {
            let _ = writeln!(
                out,
                "goneaway_proxy_transaction_replays_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_commits_resolved_total COMMITs whose connection was lost, resolved by their commit mark: committed, or not_committed.\n# TYPE goneaway_proxy_commits_resolved_total counter");
        for (outcome, n) in &labelled.commits {
            let _ = writeln!(
                out,
                "goneaway_proxy_commits_resolved_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_pool_takes_total Shared server connections taken by a session, by fit: own (its last one), same_state, reset (reset and given the session's state).\n# TYPE goneaway_proxy_pool_takes_total counter");
        for (fit, v) in [
            ("own", &self.pool_own),
            ("same_state", &self.pool_same_state),
            ("reset", &self.pool_reset),
        ] {
            let _ = writeln!(
                out,
                "goneaway_proxy_pool_takes_total{{fit=\"{fit}\"}} {}",
                c(v)
            );
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_pins_total Sessions that began to keep a server connection to themselves between statements, by reason (see the proxy's log for the statement).\n# TYPE goneaway_proxy_pins_total counter");
        for (reason, n) in &labelled.pins {
            let _ = writeln!(out, "goneaway_proxy_pins_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP goneaway_proxy_stalled_replies_total Silent replies the server showed would never come, by verdict: never_received (the statement did not run), reply_lost, thread_gone, server_unreachable.\n# TYPE goneaway_proxy_stalled_replies_total counter");
        for (verdict, n) in &labelled.stalls {
            let _ = writeln!(
                out,
                "goneaway_proxy_stalled_replies_total{{verdict=\"{verdict}\"}} {n}"
            );
        }
        drop(labelled);
        let _ = writeln!(out, "# HELP goneaway_proxy_command_seconds Latency of forwarded commands.\n# TYPE goneaway_proxy_command_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += c(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "goneaway_proxy_command_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = c(&self.commands);
        let _ = writeln!(
            out,
            "goneaway_proxy_command_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "goneaway_proxy_command_seconds_sum {}",
            c(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "goneaway_proxy_command_seconds_count {count}");
        out
    }
}

/// Prometheus's text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// How long the metrics listener waits, at shutdown, for HTTP requests in flight: a
/// scraper that keeps its connection open must not hold the proxy's exit up.
pub(crate) const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// What the HTTP handlers read: the counters, and whether the proxy is draining.
#[derive(Clone)]
struct HttpState {
    stats: Arc<Stats>,
    draining: watch::Receiver<bool>,
}

/// `/metrics` (Prometheus text) and `/health` (also `/healthz`); anything else is a 404
/// that names them.
fn router(stats: Arc<Stats>, draining: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/healthz", get(health))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, PLAIN_TEXT)],
                "not found: try /metrics or /health\n",
            )
        })
        .with_state(HttpState { stats, draining })
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], s.stats.render())
}

/// 200 "ok" while the proxy accepts clients; 503 "draining" once a graceful shutdown has
/// begun, so that a load balancer stops sending new clients before the listener closes.
async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    let (code, body) = if *s.draining.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    };
    (code, [(header::CONTENT_TYPE, PLAIN_TEXT)], body)
}

/// Serves the metrics router on `listener` until `stop` turns true, then finishes the
/// requests in flight. `draining` turns true first, when the proxy stops accepting clients.
pub(crate) async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    draining: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let server =
        axum::serve(listener, router(stats, draining)).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

/// Binds the metrics address.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
