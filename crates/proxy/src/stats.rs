//! Counters the proxy keeps, rendered as Prometheus text and served with a health check.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the per-command latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The proxy's counters, shared by every session. Cheap to update: atomics, and a mutex
/// only for the labelled counters, which move on rare events.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections open now.
    pub clients: AtomicI64,
    /// Backend connections open now.
    pub backends: AtomicI64,
    /// Client logins accepted.
    pub logins: AtomicU64,
    /// Client logins refused (wrong account or password).
    pub login_failures: AtomicU64,
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
    labelled: Mutex<Labelled>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_micros: AtomicU64,
}

#[derive(Debug, Default)]
struct Labelled {
    /// Backend losses the client never saw, by cause.
    absorbed: BTreeMap<&'static str, u64>,
    /// Errors the proxy itself sent to clients, by kind.
    errors: BTreeMap<&'static str, u64>,
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
        self.labelled.lock().unwrap().absorbed.clone()
    }

    /// Errors sent to clients so far, by kind.
    pub fn errors_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.labelled.lock().unwrap().errors.clone()
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
            "goneaway_proxy_backends_recycled_total",
            "counter",
            "Idle backends released before wait_timeout.",
            c(&self.recycled).to_string(),
        );
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

/// Serves `GET /metrics` and `GET /health` on `listener` until the task is dropped. A
/// minimal HTTP/1.0 responder: the endpoint is for Prometheus and probes on loopback, and
/// a web framework would cost more than it brings.
pub(crate) async fn serve(listener: TcpListener, stats: Arc<Stats>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/metrics" => ("200 OK", stats.render()),
                "/health" | "/healthz" => ("200 OK", "ok\n".to_owned()),
                _ => ("404 Not Found", "try /metrics or /health\n".to_owned()),
            };
            let resp = format!(
                "HTTP/1.0 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Binds the metrics address.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
