//! The listener: accepts clients, runs one session task each, reloads its configuration
//! without dropping sessions, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
use crate::monitor::Monitor;
use crate::net::packet::caps;
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

/// What a reload replaces: the configuration and what is built from it. A session takes
/// the current one at login and again before each command ([`Shared::current`]).
#[derive(Debug)]
pub(crate) struct Generation {
    /// Counts reloads (0 at start).
    pub number: u64,
    pub config: ProxyConfig,
    pub accounts: Accounts,
    /// Set when TLS towards clients is configured: the greeting then offers it.
    pub tls: Option<Arc<ServerConfig>>,
}

/// State every session shares.
#[derive(Debug)]
pub(crate) struct Shared {
    current: RwLock<Arc<Generation>>,
    /// The number of the current generation, readable without the lock: a session
    /// compares it before each command.
    pub generation: AtomicU64,
    /// The backend slots there are now ([`ProxyConfig::max_backends`] of the last reload).
    max_backends: Mutex<usize>,
    pub gate: Arc<Gate>,
    pub stats: Arc<Stats>,
    pub server_info: Mutex<ServerInfo>,
    /// One permit per backend connection (see [`ProxyConfig::max_backends`]).
    pub backend_slots: Arc<Semaphore>,
    pub next_session: AtomicU64,
    /// Whether the commit-marks table is ready.
    pub marks_ready: std::sync::atomic::AtomicBool,
    /// When making the table last failed (tried again 30 s later).
    pub marks_failed: Mutex<Option<std::time::Instant>>,
    /// Held while the table is made.
    pub marks_making: tokio::sync::Mutex<()>,
    /// Random bytes naming this proxy's run in commit tokens, so that two proxies in front
    /// of the same server never make the same token.
    pub instance: [u8; 8],
    /// Server connections shared between sessions (see [`ProxyConfig::multiplex`]).
    pub pool: crate::backend::BackendPool,
    /// The cluster's writer, as the monitor names it (the backend itself for a single
    /// server); see [`crate::monitor`] and [`crate::router`].
    pub monitor: Arc<Monitor>,
}

impl Shared {
    /// The configuration in force.
    pub fn current(&self) -> Arc<Generation> {
        self.current.read().unwrap().clone()
    }
}

/// What [`Proxy::reload`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The settings that changed and took effect.
    pub changed: Vec<&'static str>,
    /// Settings that changed but need a restart (the listening addresses); the old ones
    /// stay in force.
    pub need_restart: Vec<&'static str>,
}

/// A running proxy. Dropping it stops accepting but leaves sessions to end on their own;
/// call [`Proxy::shutdown`] to drain them.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    metrics_task: Option<JoinHandle<()>>,
    /// Removes old commit marks.
    sweeper: JoinHandle<()>,
    /// Closes shared connections left unused too long.
    pool_sweeper: JoinHandle<()>,
    /// Polls the cluster's servers and names the writer (idle for a single server).
    monitor_task: JoinHandle<()>,
    /// Stops the metrics listener: sent after the sessions drained, so that `/metrics` and
    /// `/health` ("draining") stay readable during a graceful shutdown.
    metrics_stop: watch::Sender<bool>,
    /// Closed when every session has ended (each session holds a sender).
    done: mpsc::Receiver<()>,
    grace: Duration,
    /// Lets the session threads end (once their sessions have): sent when the proxy is
    /// dropped, after [`Proxy::shutdown`] closed the pooled connections, whose sockets
    /// live in those threads' runtimes.
    threads_stop: watch::Sender<bool>,
}

impl Proxy {
    /// Binds the listener (and the metrics address), probes the server for its version, and
    /// starts accepting clients. An unreachable server is not an error: sessions wait for it.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        config.check()?;
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
            current: RwLock::new(Arc::new(Generation {
                number: 0,
                accounts: Accounts::new(&config, stats.clone()),
                config: config.clone(),
                tls,
            })),
            generation: AtomicU64::new(0),
            max_backends: Mutex::new(config.max_backends),
            gate: Arc::new(Gate::new(&config, stats.clone())),
            backend_slots: Arc::new(Semaphore::new(config.max_backends)),
            stats: stats.clone(),
            server_info: Mutex::new(info),
            next_session: AtomicU64::new(1),
            marks_ready: std::sync::atomic::AtomicBool::new(false),
            marks_failed: Mutex::new(None),
            marks_making: tokio::sync::Mutex::new(()),
            instance: {
                let n = crate::frontend::handshake::nonce();
                let mut b = [0u8; 8];
                b.copy_from_slice(&n[..8]);
                b
            },
            pool: crate::backend::BackendPool::new(stats.clone()),
            monitor: Arc::new(Monitor::new(&config)),
        });
        let monitor_task =
            tokio::spawn(crate::monitor::run(shared.monitor.clone(), shared.clone()));
        if config.commit_marks {
            // Made at start, so that the first COMMIT does not wait for it.
            let s = shared.clone();
            tokio::spawn(async move { commit_marks_ready(&s).await });
        }
        let sweeper = tokio::spawn(sweep_commit_marks(shared.clone()));
        let pool_sweeper = tokio::spawn(sweep_pool(shared.clone()));
        let (done_tx, done) = mpsc::channel::<()>(1);
        let (threads_stop, threads_stop_rx) = watch::channel(false);
        let runners = session_threads(config.session_threads, threads_stop_rx)
            .map_err(|e| ProxyError::io("starting the session threads", e))?;
        let accept_task = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            shutdown_rx,
            done_tx,
            runners,
        ));
        tracing::info!(%local_addr, backend = %config.backend.addr(), tls = config.tls_cert.is_some(), "goneaway proxy listening");
        Ok(Proxy {
            local_addr,
            metrics_addr,
            shared,
            stats,
            shutdown,
            accept_task,
            metrics_task,
            sweeper,
            pool_sweeper,
            monitor_task,
            metrics_stop,
            done,
            grace: config.shutdown_grace,
            threads_stop,
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

    /// The monitor's latest verdict on the cluster: the writer and what each server said
    /// (see [`crate::monitor`]).
    pub fn cluster(&self) -> Arc<crate::monitor::ClusterView> {
        self.shared.monitor.view()
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Whether commit marks are in use: their table exists (see
    /// [`ProxyConfig::commit_marks`]).
    pub fn commit_marks_ready(&self) -> bool {
        self.shared.marks_ready.load(Ordering::Acquire)
    }

    /// The configuration in force (the last one [`Proxy::reload`] accepted).
    pub fn config(&self) -> ProxyConfig {
        self.shared.current().config.clone()
    }

    /// Puts `config` in force without dropping a session: accounts (new logins are
    /// checked against the new list; logged-in sessions go on), limits, timeouts and
    /// replay settings (each session from its next command), the TLS certificate (new
    /// logins), and the backend (new sessions, and each session's next server connection:
    /// an idle session with nothing that lives only in its connection moves to the new
    /// server before its next command, with its state restored there; one in a
    /// transaction finishes it where it is). The listening addresses cannot change
    /// without a restart: they are reported in [`Reloaded::need_restart`] and kept.
    ///
    /// An invalid configuration (TLS files that do not load) is refused as a whole, and
    /// the old one stays in force.
    pub fn reload(&self, mut config: ProxyConfig) -> Result<Reloaded, ProxyError> {
        let tls = config
            .check()
            .and_then(|()| match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => crate::net::tls::server_config(cert, key).map(Some),
                _ => Ok(None),
            });
        let tls = match tls {
            Ok(tls) => tls,
            Err(e) => {
                self.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let old = self.shared.current();
        let mut report = Reloaded::default();
        if config.listen != old.config.listen {
            report.need_restart.push("listen");
            config.listen = old.config.listen;
        }
        if config.metrics_listen != old.config.metrics_listen {
            report.need_restart.push("metrics_listen");
            config.metrics_listen = old.config.metrics_listen;
        }
        if config.session_threads != old.config.session_threads {
            report.need_restart.push("threads");
            config.session_threads = old.config.session_threads;
        }
        report.changed = changed_settings(&old.config, &config);
        // Certificates are re-read even when their paths did not change: a reload is how a
        // renewed certificate is put in force.
        if tls.is_some() && !report.changed.contains(&"tls") {
            report.changed.push("tls");
        }
        self.shared.gate.configure(&config);
        self.resize_backend_slots(config.max_backends);
        let number = old.number + 1;
        *self.shared.current.write().unwrap() = Arc::new(Generation {
            number,
            accounts: Accounts::new(&config, self.stats.clone()),
            config,
            tls,
        });
        self.shared.generation.store(number, Ordering::Release);
        // The servers may have changed: the monitor looks at them now.
        self.shared.monitor.poll_now();
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Makes the backend slots `n`: more at once; fewer as connections in use end (the
    /// slots taken back are forgotten when they come free).
    fn resize_backend_slots(&self, n: usize) {
        let mut now = self.shared.max_backends.lock().unwrap();
        let slots = &self.shared.backend_slots;
        if n > *now {
            slots.add_permits(n - *now);
        } else if n < *now {
            let excess = *now - n;
            let taken = slots.forget_permits(excess);
            if taken < excess {
                let slots = slots.clone();
                let rest = (excess - taken) as u32;
                tokio::spawn(async move {
                    if let Ok(p) = slots.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
        *now = n;
    }

    /// Stops accepting, lets every session finish the command it runs (idle sessions get
    /// an ERR saying the proxy is shutting down), and waits up to the configured grace.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
        let _ = tokio::time::timeout(self.grace, self.done.recv()).await;
        self.pool_sweeper.abort();
        for b in self.shared.pool.drain() {
            b.quit().await;
        }
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
        let _ = self.threads_stop.send(true);
        self.accept_task.abort();
        let _ = self.metrics_stop.send(true);
        if let Some(t) = self.metrics_task.take() {
            t.abort();
        }
        self.sweeper.abort();
        self.pool_sweeper.abort();
        self.monitor_task.abort();
    }
}

/// Every second, closes (politely, so the server counts no aborted client) the shared
/// connections unused for [`ProxyConfig::pool_idle_limit`] or half their `wait_timeout`,
/// and those found closed.
async fn sweep_pool(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let limit = shared.current().config.pool_idle_limit;
        for b in shared.pool.sweep(limit) {
            b.quit().await;
        }
    }
}

/// Whether commit marks can be used: the table is made (with the backend URL's account)
/// when it is not known to exist, at most every 30 s after a failure.
pub(crate) async fn commit_marks_ready(shared: &Shared) -> bool {
    if shared.marks_ready.load(Ordering::Acquire) {
        return true;
    }
    let recent_failure = |s: &Shared| {
        s.marks_failed
            .lock()
            .unwrap()
            .is_some_and(|t| t.elapsed() < Duration::from_secs(30))
    };
    if recent_failure(shared) {
        return false;
    }
    let _making = shared.marks_making.lock().await;
    if shared.marks_ready.load(Ordering::Acquire) {
        return true;
    }
    if recent_failure(shared) {
        return false;
    }
    match make_commit_marks(shared).await {
        Ok(()) => {
            shared.marks_ready.store(true, Ordering::Release);
            true
        }
        Err(_) => {
            *shared.marks_failed.lock().unwrap() = Some(std::time::Instant::now());
            false
        }
    }
}

/// Creates the commit-marks table with the backend URL's account: `Err` says why marks
/// are off for now.
async fn make_commit_marks(shared: &Shared) -> Result<(), String> {
    let gen = shared.current();
    let config = &gen.config;
    let schema = config.commit_marks_schema.replace('`', "``");
    let opts = ConnectOptions::internal(config.connect_timeout);
    let result = async {
        // In front of a cluster, on the writer: a replica is read-only, and a write there
        // (by an account allowed to) would break its replication.
        let target = shared
            .monitor
            .wait_writer_target(&config.backend, config.connect_timeout)
            .await
            .ok_or_else(|| {
                ProxyError::NoWriter("the cluster has no writer to create the table on".into())
            })?;
        let mut b = Backend::connect(&target, &opts, shared.stats.clone()).await?;
        b.simple(&format!("CREATE DATABASE IF NOT EXISTS `{schema}`"))
            .await?;
        b.simple(&format!(
            "CREATE TABLE IF NOT EXISTS `{schema}`.commit_marks (token BINARY(16) NOT NULL PRIMARY KEY,              created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), KEY (created)) ENGINE=InnoDB"
        ))
        .await?;
        b.quit().await;
        Ok::<(), ProxyError>(())
    }
    .await
    .map_err(|e| e.to_string());
    match &result {
        Ok(()) => tracing::info!(schema = %config.commit_marks_schema, "commit marks ready"),
        Err(e) => {
            tracing::warn!(error = %e, "commit marks are off for now: their table could not be created (tried again in 30 s); meanwhile a lost COMMIT stays \"outcome unknown\"")
        }
    }
    result
}

/// Every ten minutes, removes commit marks older than an hour (a lost COMMIT is resolved
/// within seconds; the hour leaves room for a long server restart).
async fn sweep_commit_marks(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    tick.tick().await;
    loop {
        tick.tick().await;
        if !shared.marks_ready.load(Ordering::Relaxed) {
            continue;
        }
        let gen = shared.current();
        let config = &gen.config;
        let opts = ConnectOptions::internal(config.connect_timeout);
        let schema = config.commit_marks_schema.replace('`', "``");
        // On the writer only (see make_commit_marks); the next sweep catches up.
        let Some(target) = shared.monitor.writer_target(&config.backend) else {
            continue;
        };
        if let Ok(mut b) = Backend::connect(&target, &opts, shared.stats.clone()).await {
            let sql = format!(
                "DELETE FROM `{schema}`.commit_marks WHERE created < NOW(6) - INTERVAL 1 HOUR LIMIT 100000"
            );
            if let Err(e) = b.simple(&sql).await {
                tracing::debug!(error = %e, "could not remove old commit marks");
            }
            b.quit().await;
        }
    }
}

/// Logs in once to learn the server's version; falls back to a neutral greeting.
async fn probe(config: &ProxyConfig, stats: &Arc<Stats>) -> ServerInfo {
    let opts = ConnectOptions::internal(config.connect_timeout);
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

/// A session to run, sent to a session thread.
type SessionJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts `n` session threads ([`ProxyConfig::session_threads`]), each a single-threaded
/// runtime that runs the sessions sent to it. A thread ends when the accept loop is gone
/// (its sender dropped), every session of every thread has ended and the proxy is
/// dropped (`stop`): a server connection lives in the runtime that opened it, and with
/// shared connections (`multiplex`) a session on one thread may be using a connection
/// another thread opened, or the pool may hold it until the shutdown closes it.
fn session_threads(
    n: usize,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<mpsc::UnboundedSender<SessionJob>>> {
    let draining = Arc::new(watch::Sender::new(n));
    let mut senders = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<SessionJob>();
        let draining = draining.clone();
        let mut stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("goneaway-sessions-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut running = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some(job) => {
                                    running.spawn(job);
                                }
                                None => break,
                            },
                            // Reaps ended sessions, so that the set holds only live ones.
                            Some(_) = running.join_next(), if !running.is_empty() => {}
                        }
                    }
                    while running.join_next().await.is_some() {}
                    draining.send_modify(|n| *n -= 1);
                    let _ = draining.subscribe().wait_for(|n| *n == 0).await;
                    let _ = stop.wait_for(|stopped| *stopped).await;
                });
            })?;
        senders.push(tx);
    }
    Ok(senders)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
    runners: Vec<mpsc::UnboundedSender<SessionJob>>,
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
        let over_limit = shared.stats.clients.load(Ordering::Relaxed)
            >= shared.current().config.max_clients as i64;
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        // The socket is registered with the runtime that runs the session (see
        // ProxyConfig::session_threads): its readiness then wakes the session on its own
        // thread, not this one's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a client connection to its session");
                continue;
            }
        };
        let session: SessionJob = Box::pin(async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => {
                    Session::run(id, stream, peer, shared.clone(), shutdown, over_limit).await
                }
                Err(e) => tracing::warn!(error = %e, "could not register a client connection"),
            }
            drop(done);
        });
        if runners.is_empty() {
            tokio::spawn(session);
        } else if let Err(mpsc::error::SendError(session)) =
            runners[id as usize % runners.len()].send(session)
        {
            // Its thread is gone (it panicked): the session runs here instead.
            tokio::spawn(session);
        }
    }
}

/// The names (as in the TOML file) of the settings that differ between `a` and `b`.
fn changed_settings(a: &ProxyConfig, b: &ProxyConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! compare {
        ($($field:ident $(as $name:literal)?),* $(,)?) => {
            $(
                if a.$field != b.$field {
                    out.push(compare!(@name $field $($name)?));
                }
            )*
        };
        (@name $field:ident) => { stringify!($field) };
        (@name $field:ident $name:literal) => { $name };
    }
    compare!(
        backend,
        servers,
        cluster,
        switchover_wait as "switchover_wait_secs",
        monitor_interval as "monitor_interval_secs",
        accounts,
        max_clients,
        max_pending_logins,
        max_pending_logins_per_address,
        login_timeout as "login_timeout_secs",
        failed_login_threshold,
        failed_login_max_delay as "failed_login_max_delay_secs",
        client_idle_timeout as "client_idle_timeout_secs",
        max_backends,
        server_wait as "server_wait_secs",
        backend_slot_wait as "backend_slot_wait_secs",
        connect_timeout as "connect_timeout_secs",
        keepalive_interval as "keepalive_interval_secs",
        stall_check as "stall_check_secs",
        reply_buffer,
        max_attempts,
        killed_read_replay_limit as "killed_read_replay_limit_secs",
        transaction_replay,
        transaction_replay_budget,
        commit_marks,
        commit_marks_schema,
        autocommit_write_marks,
        multiplex,
        pool_idle_limit as "pool_idle_limit_secs",
        shutdown_grace as "shutdown_grace_secs",
        require_tls,
        server_accounts,
    );
    if a.tls_cert != b.tls_cert || a.tls_key != b.tls_key {
        out.push("tls");
    }
    out
}
