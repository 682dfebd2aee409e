//! The listener: accepts clients, runs one session task each, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;

use crate::accounts::Accounts;
use crate::backend::{Backend, ConnectOptions};
use crate::config::ProxyConfig;
use crate::frontend::Session;
use crate::gate::Gate;
use crate::net::packet::{caps, DEFAULT_CHARSET};
use crate::stats::Stats;
use crate::ProxyError;

/// What the proxy last learnt about the server, for the greeting it shows clients.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    pub version: String,
    pub capabilities: u32,
    /// MariaDB's extended capabilities (0 for MySQL).
    pub mariadb_capabilities: u32,
}

/// State every session shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub accounts: Accounts,
    pub gate: Arc<Gate>,
    pub stats: Arc<Stats>,
    pub server_info: Mutex<ServerInfo>,
    /// One permit per backend connection (see [`ProxyConfig::max_backends`]).
    pub backend_slots: Arc<Semaphore>,
    pub next_session: AtomicU64,
    /// Set when TLS towards clients is configured: the greeting then offers it.
    pub tls: Option<Arc<ServerConfig>>,
}

/// A running proxy. Dropping it stops accepting but leaves sessions to end on their own;
/// call [`Proxy::shutdown`] to drain them.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    metrics_task: Option<JoinHandle<()>>,
    /// Stops the metrics listener: sent after the sessions drained, so that `/metrics` and
    /// `/health` ("draining") stay readable during a graceful shutdown.
    metrics_stop: watch::Sender<bool>,
    /// Closed when every session has ended (each session holds a sender).
    done: mpsc::Receiver<()>,
    grace: Duration,
}

impl Proxy {
    /// Binds the listener (and the metrics address), probes the server for its version, and
    /// starts accepting clients. An unreachable server is not an error: sessions wait for it.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        config.check_tls()?;
        // Read the certificate before binding anything: a bad file is a start-up error.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::net::tls::server_config(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ProxyError::io(format!("binding {}", config.listen), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ProxyError::io("reading the local address", e))?;
        let stats = Arc::new(Stats::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (metrics_stop, metrics_stop_rx) = watch::channel(false);
        let (metrics_addr, metrics_task) = match config.metrics_listen {
            Some(addr) => {
                let l = crate::stats::bind(addr)
                    .await
                    .map_err(|e| ProxyError::io(format!("binding {addr}"), e))?;
                let a = l.local_addr().ok();
                let task = tokio::spawn(crate::stats::serve(
                    l,
                    stats.clone(),
                    shutdown_rx.clone(),
                    metrics_stop_rx,
                ));
                (a, Some(task))
            }
            None => (None, None),
        };
        let info = probe(&config, &stats).await;
        let shared = Arc::new(Shared {
            accounts: Accounts::new(&config, stats.clone()),
            gate: Arc::new(Gate::new(&config, stats.clone())),
            backend_slots: Arc::new(Semaphore::new(config.max_backends)),
            config: config.clone(),
            stats: stats.clone(),
            server_info: Mutex::new(info),
            next_session: AtomicU64::new(1),
            tls,
        });
        let (done_tx, done) = mpsc::channel::<()>(1);
        let accept_task = tokio::spawn(accept_loop(listener, shared, shutdown_rx, done_tx));
        tracing::info!(%local_addr, backend = %config.backend.addr(), tls = config.tls_cert.is_some(), "goneaway proxy listening");
        Ok(Proxy {
            local_addr,
            metrics_addr,
            stats,
            shutdown,
            accept_task,
            metrics_task,
            metrics_stop,
            done,
            grace: config.shutdown_grace,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics and health address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Stops accepting, lets every session finish the command it runs (idle sessions get
    /// an ERR saying the proxy is shutting down), and waits up to the configured grace.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
        let _ = tokio::time::timeout(self.grace, self.done.recv()).await;
        let _ = self.metrics_stop.send(true);
        if let Some(t) = self.metrics_task.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(crate::stats::HTTP_DRAIN, t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
        let _ = self.metrics_stop.send(true);
        if let Some(t) = self.metrics_task.take() {
            t.abort();
        }
    }
}

/// Logs in once to learn the server's version; falls back to a neutral greeting.
async fn probe(config: &ProxyConfig, stats: &Arc<Stats>) -> ServerInfo {
    let opts = ConnectOptions {
        client_capabilities: caps::INTERNAL,
        client_mariadb_capabilities: 0,
        charset: DEFAULT_CHARSET,
        database: None,
        timeout: config.connect_timeout,
        known_limits: None,
    };
    match Backend::connect(&config.backend, &opts, stats.clone()).await {
        Ok(b) => {
            let info = ServerInfo {
                version: b.server_version.clone(),
                capabilities: b.server_capabilities,
                mariadb_capabilities: b.server_mariadb_capabilities,
            };
            b.quit().await;
            info
        }
        Err(e) => {
            tracing::warn!(error = %e, "the server is not reachable yet; sessions will wait for it");
            ServerInfo {
                version: "8.0.0-goneaway-proxy".into(),
                capabilities: caps::PROXY_SUPPORTED,
                mariadb_capabilities: 0,
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
        let over_limit =
            shared.stats.clients.load(Ordering::Relaxed) >= shared.config.max_clients as i64;
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            Session::run(id, stream, peer, shared.clone(), shutdown, over_limit).await;
            drop(done);
        });
    }
}
