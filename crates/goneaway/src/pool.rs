//! The pool: checkout with validation when due, recycling, sizing, keepalive, `status()`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn::{PooledConn, Return};
use crate::options::{Limits, PoolOptions, Validation};
use crate::tcp::{TcpSkip, TcpTuning};
use crate::{metrics_names as m, Error};

/// What the pool knows about one live connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// The server's connection id (what `KILL` and the process list show).
    pub(crate) id: u32,
    /// When it was opened; with `lifetime`, when it is recycled.
    pub(crate) opened: Instant,
    /// The last time bytes went either way (statement or ping): the server's idle clock
    /// started no earlier than this.
    pub(crate) last_active: Instant,
    /// The last time it was returned by a caller; surplus idle connections are closed by it.
    pub(crate) last_used: Instant,
    /// The session's `wait_timeout`, read on connect.
    pub(crate) wait_timeout: Duration,
    /// The session's `max_allowed_packet`, read on connect.
    pub(crate) max_allowed_packet: usize,
    /// Silence after which this connection is recycled (jittered per connection).
    pub(crate) idle_limit: Duration,
    /// Age after which this connection is recycled (jittered per connection).
    pub(crate) lifetime: Duration,
    /// The socket options set on it (`None`: not set, see [`TcpSkip`]).
    pub(crate) tcp: Option<TcpTuning>,
    /// Its socket's descriptor, when found (Linux, TCP straight to the server): checkout
    /// peeks at it for a close or an unasked error before handing the connection out.
    pub(crate) fd: Option<i32>,
    /// Whether the connection uses TLS (its bytes cannot be judged by a peek).
    pub(crate) tls: bool,
}

/// An idle connection and what the pool knows about it.
pub(crate) struct Idle {
    pub(crate) conn: Conn,
    pub(crate) session: Session,
}

/// Running totals, kept as atomics so `status()` needs no metrics recorder.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) opened: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) stale_by_validation: AtomicU64,
    pub(crate) stale_by_keepalive: AtomicU64,
    pub(crate) keepalive_pings: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) gone_away: AtomicU64,
    pub(crate) checkouts: AtomicU64,
    pub(crate) tcp_tuned: AtomicU64,
    pub(crate) tcp_tuning_skipped: AtomicU64,
}

pub(crate) struct Inner {
    /// Driver options: the URL's, plus TCP keepalive and no per-connection socket lookup.
    opts: Opts,
    pub(crate) cfg: PoolOptions,
    /// Idle connections, most recently returned last: checkout takes from the end so hot
    /// connections stay hot and cold ones age out.
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection handed out (or being pinged by keepalive): this is what
    /// bounds the pool at `max_size`, because a connection is opened only by a permit
    /// holder that found no idle connection.
    permits: Arc<Semaphore>,
    /// Callers currently waiting for a permit (bounded by `max_waiters`).
    waiters: AtomicUsize,
    /// Connections open (idle, handed out, being pinged).
    live: AtomicUsize,
    /// After a connection is found dead, every idle connection last active before that
    /// moment is validated at checkout even if recently used: one death (a restart, a
    /// kill-all, a middlebox flush) usually means more.
    suspect_before: Mutex<Option<Instant>>,
    /// The limits derived from the last connection opened.
    limits: Mutex<Option<Limits>>,
    pub(crate) counters: Counters,
    /// Connections checked out by callers (live minus idle minus those being pinged or
    /// opened), for the `in_use` gauge and `status()`.
    in_use: AtomicUsize,
    /// The size gauges, registered once so publishing them costs an atomic store each.
    gauges: Gauges,
    closed: AtomicBool,
    /// Returned connections getting their `ROLLBACK` in the background (they hold a
    /// permit and count in `live`, but are neither idle nor in use).
    cleaning: AtomicUsize,
}

/// Handles to the pool's size gauges (see [`m::OPEN`] and its neighbours).
struct Gauges {
    open: metrics::Gauge,
    idle: metrics::Gauge,
    in_use: metrics::Gauge,
    waiters: metrics::Gauge,
}

impl Gauges {
    fn register(pool: &str) -> Gauges {
        let label = [("pool", pool.to_owned())];
        Gauges {
            open: metrics::gauge!(m::OPEN, &label),
            idle: metrics::gauge!(m::IDLE, &label),
            in_use: metrics::gauge!(m::IN_USE, &label),
            waiters: metrics::gauge!(m::WAITERS, &label),
        }
    }
}

/// A pool of MySQL/MariaDB connections that never hands out a dead one. Cheap to clone:
/// clones share one pool.
///
/// See the [crate documentation](crate) for an overview.
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish()
    }
}

/// A snapshot of the pool, from [`Pool::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Connections open.
    pub size: usize,
    /// Of which idle in the pool.
    pub idle: usize,
    /// Of which checked out by callers (the rest are being pinged or opened).
    pub in_use: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// The configured maximum.
    pub max_size: usize,
    /// Limits in force (known once a connection has been opened).
    pub limits: Option<Limits>,
    /// Connections opened since the pool was built.
    pub opened: u64,
    /// Connections closed since the pool was built (any reason).
    pub closed: u64,
    /// Dead connections caught by validation at checkout (never handed out).
    pub stale_caught_by_validation: u64,
    /// Dead connections caught by background keepalive pings.
    pub stale_caught_by_keepalive: u64,
    /// Background keepalive pings sent.
    pub keepalive_pings: u64,
    /// Statements or transactions retried after a failure.
    pub retries: u64,
    /// Connections seen going away while in use.
    pub gone_away: u64,
    /// Checkouts served.
    pub checkouts: u64,
    /// Connections whose socket got the keepalive interval, probe count and
    /// `TCP_USER_TIMEOUT` (Linux; see the crate docs).
    pub tcp_tuned: u64,
    /// Connections whose socket could not be tuned (a proxy in between, a Unix socket, not
    /// Linux…): they run with the host's defaults. See [`TcpSkip`].
    pub tcp_tuning_skipped: u64,
}

impl Pool {
    /// Builds a pool for a `mysql://user:password@host:port/db` URL with default options.
    ///
    /// No connection is opened here (the background task fills `min_idle`); the first
    /// checkout connects. Must be called inside a Tokio runtime.
    pub fn new(url: &str) -> Result<Pool, Error> {
        Pool::with_options(url, PoolOptions::default())
    }

    /// Builds a pool with options. Must be called inside a Tokio runtime.
    pub fn with_options(url: &str, cfg: PoolOptions) -> Result<Pool, Error> {
        let opts = Opts::from_url(url).map_err(|e| Error::Invalid(format!("bad URL: {e}")))?;
        Ok(Pool::from_opts(opts, cfg))
    }

    /// Builds a pool from mysql_async options. Must be called inside a Tokio runtime.
    pub fn from_opts(opts: impl Into<Opts>, cfg: PoolOptions) -> Pool {
        let opts: Opts = opts.into();
        let opts: Opts = OptsBuilder::from_opts(opts)
            .tcp_keepalive(cfg.tcp_keepalive)
            .into();
        let gauges = Gauges::register(&cfg.name);
        let inner = Arc::new(Inner {
            opts,
            permits: Arc::new(Semaphore::new(cfg.max_size)),
            cfg,
            idle: Mutex::new(Vec::new()),
            waiters: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            suspect_before: Mutex::new(None),
            limits: Mutex::new(None),
            counters: Counters::default(),
            in_use: AtomicUsize::new(0),
            gauges,
            closed: AtomicBool::new(false),
            cleaning: AtomicUsize::new(0),
        });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Pool { inner }
    }

    /// Checks out a connection, validated if it is due (see [`Validation`]). A dead
    /// connection is discarded and another tried; the caller never sees it.
    ///
    /// Cancel safety: dropped while waiting or validating, it leaves the queue and the counts exact; a connection being pinged is closed.
    pub async fn get(&self) -> Result<PooledConn, Error> {
        self.inner.checkout(self.inner.cfg.validation).await
    }

    /// Checks out a connection that has just answered a ping (or was just opened),
    /// whatever the validation mode: for work after a long pause.
    ///
    /// Cancel safety: as [`Pool::get`].
    pub async fn get_validated(&self) -> Result<PooledConn, Error> {
        self.inner.checkout(Validation::Always).await
    }

    /// A snapshot of sizes and counters.
    pub fn status(&self) -> Status {
        let i = &self.inner;
        let c = &i.counters;
        Status {
            size: i.live.load(Ordering::Relaxed),
            idle: i.idle.lock().unwrap().len(),
            in_use: i.in_use.load(Ordering::Relaxed),
            waiters: i.waiters.load(Ordering::Relaxed),
            max_size: i.cfg.max_size,
            limits: *i.limits.lock().unwrap(),
            opened: c.opened.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
            stale_caught_by_validation: c.stale_by_validation.load(Ordering::Relaxed),
            stale_caught_by_keepalive: c.stale_by_keepalive.load(Ordering::Relaxed),
            keepalive_pings: c.keepalive_pings.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            gone_away: c.gone_away.load(Ordering::Relaxed),
            checkouts: c.checkouts.load(Ordering::Relaxed),
            tcp_tuned: c.tcp_tuned.load(Ordering::Relaxed),
            tcp_tuning_skipped: c.tcp_tuning_skipped.load(Ordering::Relaxed),
        }
    }

    /// Closes idle connections gracefully and refuses new checkouts; connections in use
    /// are closed when returned.
    ///
    /// Cancel safety: the pool is closed from the first poll; dropping the future only skips the polite goodbyes of the remaining idle connections (they are closed without COM_QUIT).
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.permits.close();
        let idle: Vec<Idle> = std::mem::take(&mut *self.inner.idle.lock().unwrap());
        for i in idle {
            self.inner.forget(m::REASON_POOL_CLOSED);
            let _ = tokio::time::timeout(Duration::from_secs(1), i.conn.disconnect()).await;
        }
        self.inner.publish();
    }
}

impl Inner {
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        validation: Validation,
    ) -> Result<PooledConn, Error> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + self.cfg.checkout_timeout);
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(Error::Invalid("the pool is closed".into()))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let Some(waiting) = Waiting::enter(self) else {
                    metrics::counter!(m::QUEUE_FULL).increment(1);
                    return Err(Error::QueueFull {
                        limit: self.cfg.max_waiters,
                    });
                };
                let r =
                    tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await;
                // Also on cancellation: `Waiting`'s `Drop` leaves the queue.
                drop(waiting);
                match r {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Error::Invalid("the pool is closed".into())),
                    Err(_) => {
                        return Err(Error::CheckoutTimeout {
                            waited: start.elapsed(),
                            last: None,
                        })
                    }
                }
            }
        };
        let mut last_error: Option<mysql_async::Error> = None;
        let mut connect_failures = 0u32;
        loop {
            let (candidate, idle_left) = {
                let mut idle = self.idle.lock().unwrap();
                (idle.pop(), idle.len())
            };
            let now = Instant::now();
            if let Some(idle) = candidate {
                if let Some(reason) = self.expired(&idle.session, now) {
                    self.close_graceful(idle.conn, reason);
                    continue;
                }
                if !self.needs_ping(&idle.session, validation, now) {
                    // Not due for a ping: a look at the socket, which costs no round trip,
                    // still catches a peer that closed it (a KILL, a restart) or wrote to
                    // it unasked (MariaDB's 1927 to a killed connection, MySQL's 4031).
                    if let Some(signal) = crate::tcp::peer_signal(idle.session.fd, idle.session.tls)
                    {
                        self.caught_by_socket(idle, signal);
                        continue;
                    }
                    return Ok(self.hand_out(idle, permit, start, idle_left));
                }
                {
                    match self.ping(idle).await {
                        Some(idle) => {
                            let idle_left = self.idle.lock().unwrap().len();
                            return Ok(self.hand_out(idle, permit, start, idle_left));
                        }
                        None => {
                            self.counters
                                .stale_by_validation
                                .fetch_add(1, Ordering::Relaxed);
                            metrics::counter!(m::STALE_CAUGHT, "by" => "validation").increment(1);
                            tracing::info!("stale connection caught by validation; trying another");
                            continue;
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::CheckoutTimeout {
                    waited: start.elapsed(),
                    last: last_error.map(Box::new),
                });
            }
            match tokio::time::timeout_at(deadline, self.open()).await {
                Ok(Ok(idle)) => {
                    let idle_left = self.idle.lock().unwrap().len();
                    return Ok(self.hand_out(idle, permit, start, idle_left));
                }
                Ok(Err(e)) => {
                    let d = goneaway_core::classify_mysql_async(&e);
                    if !d.is_transient() {
                        return Err(Error::Connect {
                            cause: d.primary(),
                            source: e,
                        });
                    }
                    // The server is restarting, refusing or unreachable: keep trying
                    // until the checkout deadline, backing off.
                    tracing::debug!(error = %e, "connect failed; retrying");
                    connect_failures += 1;
                    last_error = Some(e);
                    let pause = self.cfg.retry.backoff(connect_failures);
                    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + pause))
                        .await;
                }
                Err(_) => {
                    return Err(Error::CheckoutTimeout {
                        waited: start.elapsed(),
                        last: last_error.map(Box::new),
                    })
                }
            }
        }
    }

    /// `idle_left`: the idle connections left, read under the lock that last changed them
    /// (so the hot path takes the idle lock once, not again to publish).
    fn hand_out(
        self: &Arc<Self>,
        idle: Idle,
        permit: OwnedSemaphorePermit,
        start: Instant,
        idle_left: usize,
    ) -> PooledConn {
        self.counters.checkouts.fetch_add(1, Ordering::Relaxed);
        self.in_use.fetch_add(1, Ordering::Relaxed);
        self.publish_sizes(idle_left);
        metrics::histogram!(m::CHECKOUT_WAIT).record(start.elapsed().as_secs_f64());
        PooledConn::new(idle, permit, self.clone())
    }

    /// Sets the size gauges from the pool's state. Called after every change; without a
    /// recorder the gauges are no-ops, with one each is an atomic store.
    pub(crate) fn publish(&self) {
        self.publish_sizes(self.idle.lock().unwrap().len());
    }

    /// [`Inner::publish`] with the idle count already read by a caller that held the lock.
    fn publish_sizes(&self, idle: usize) {
        self.gauges
            .open
            .set(self.live.load(Ordering::Relaxed) as f64);
        self.gauges.idle.set(idle as f64);
        self.gauges
            .in_use
            .set(self.in_use.load(Ordering::Relaxed) as f64);
        self.gauges
            .waiters
            .set(self.waiters.load(Ordering::Relaxed) as f64);
    }

    /// Why a connection must be recycled rather than handed out, if it must.
    fn expired(&self, s: &Session, now: Instant) -> Option<&'static str> {
        if now.duration_since(s.opened) >= s.lifetime {
            Some(m::REASON_LIFETIME)
        } else if now.duration_since(s.last_active) >= s.idle_limit {
            Some(m::REASON_MAX_IDLE)
        } else {
            None
        }
    }

    fn needs_ping(&self, s: &Session, validation: Validation, now: Instant) -> bool {
        match validation {
            Validation::Always => true,
            Validation::Never => false,
            Validation::WhenIdleOver(d) => {
                now.duration_since(s.last_active) > d
                    || self
                        .suspect_before
                        .lock()
                        .unwrap()
                        .is_some_and(|t| s.last_active <= t)
            }
        }
    }

    /// An idle connection whose socket showed the peer closed it or wrote to it unasked:
    /// never handed out.
    fn caught_by_socket(&self, idle: Idle, signal: crate::tcp::PeerSignal) {
        let cause = signal.cause();
        tracing::info!(connection_id = idle.session.id, %cause, ?signal, "idle connection found dead by a look at its socket");
        self.counters
            .stale_by_validation
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::STALE_CAUGHT, "by" => "socket").increment(1);
        metrics::counter!(m::GONE_AWAY_IDLE, "cause" => cause.as_str()).increment(1);
        self.suspect_now();
        self.forget(m::REASON_DEAD);
        drop(idle.conn);
    }

    /// Pings with `ping_timeout`; returns the connection if it answered.
    ///
    /// Cancel-safe: dropped mid-ping, the connection (its reply unread) is closed and
    /// accounted for as closed.
    async fn ping(&self, mut idle: Idle) -> Option<Idle> {
        let guard = Forget::armed(self, m::REASON_CANCELLED);
        let outcome = tokio::time::timeout(self.cfg.ping_timeout, idle.conn.ping()).await;
        guard.disarm();
        match outcome {
            Ok(Ok(())) => {
                idle.session.last_active = Instant::now();
                Some(idle)
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.cfg.ping_timeout),
                };
                tracing::info!(connection_id = idle.session.id, %why, "ping failed: connection is dead");
                self.suspect_now();
                self.forget(m::REASON_DEAD);
                // Dropping closes the socket; a dead peer needs no goodbye.
                drop(idle.conn);
                None
            }
        }
    }

    /// Opens one connection: connect, run the init statements, read the session's limits.
    pub(crate) async fn open(&self) -> Result<Idle, mysql_async::Error> {
        let mut conn = match tokio::time::timeout(
            self.cfg.connect_timeout,
            Conn::new(self.opts.clone()),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.cfg.connect_timeout),
                )
                .into())
            }
        };
        for sql in &self.cfg.init {
            conn.query_drop(sql.as_str()).await?;
        }
        // After the init statements, which may set them. The process list's view of our
        // endpoint rides along (no extra round trip) when the socket is to be tuned.
        // The socket is looked for even with nothing to set: checkout peeks at it.
        let want = self.cfg.tcp_settings();
        let (wait, packet, host) = self
            .read_session(&mut conn, cfg!(target_os = "linux"))
            .await?;
        let (tcp, fd) = match (want, host) {
            (want, Some(host)) => match self.tune_socket(&conn, host, want).await {
                Some((t, fd)) => (want.map(|_| t), Some(fd)),
                None => (None, None),
            },
            (Some(_), None) => (self.tcp_skipped(&conn, TcpSkip::NotTcp), None),
            (None, None) => (None, None),
        };
        let wait_timeout = Duration::from_secs(wait);
        let limits = Limits::derive(&self.cfg, wait_timeout, packet as usize);
        *self.limits.lock().unwrap() = Some(limits);
        let now = Instant::now();
        let session = Session {
            id: conn.id(),
            opened: now,
            last_active: now,
            last_used: now,
            wait_timeout,
            max_allowed_packet: packet as usize,
            idle_limit: limits.jittered_idle(self.cfg.max_idle.is_none()),
            lifetime: limits.jittered_lifetime(),
            tcp,
            fd,
            tls: self.opts.ssl_opts().is_some(),
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        self.publish();
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::OPENED).increment(1);
        tracing::debug!(
            connection_id = session.id,
            ?wait_timeout,
            max_allowed_packet = packet,
            "connection opened"
        );
        Ok(Idle { conn, session })
    }

    /// Reads the session's `wait_timeout` and `max_allowed_packet`, and with `host` the
    /// process list's view of the connection's client endpoint (`127.0.0.1:54321`).
    async fn read_session(
        &self,
        conn: &mut Conn,
        host: bool,
    ) -> Result<(u64, u64, Option<String>), mysql_async::Error> {
        const LIMITS: &str = "SELECT @@session.wait_timeout, @@session.max_allowed_packet";
        const DEFAULTS: (u64, u64) = (28800, 4 << 20);
        if host {
            let sql = format!(
                "{LIMITS}, (SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID())"
            );
            match conn.query_first::<(u64, u64, Option<String>), _>(sql).await {
                Ok(row) => {
                    return Ok(row.unwrap_or((DEFAULTS.0, DEFAULTS.1, None)));
                }
                // A server (or something posing as one) that refuses the process list
                // must not cost us the connection: the limits alone, socket untuned.
                Err(mysql_async::Error::Server(e)) => {
                    tracing::debug!(error = %e, "process list not readable; socket not tuned");
                }
                Err(e) => return Err(e),
            }
        }
        let (wait, packet) = conn
            .query_first::<(u64, u64), _>(LIMITS)
            .await?
            .unwrap_or(DEFAULTS);
        Ok((wait, packet, None))
    }

    /// Sets the keepalive interval, probe count and `TCP_USER_TIMEOUT` on the socket of
    /// `conn`, found from `host` (see the `tcp` module). Runs while `conn` is held
    /// exclusively, so its socket stays open throughout. Never fails the connection.
    async fn tune_socket(
        &self,
        conn: &Conn,
        host: String,
        want: Option<crate::tcp::TcpSettings>,
    ) -> Option<(TcpTuning, i32)> {
        let port = self.opts.tcp_port();
        // Reading /proc is blocking file I/O, and /proc/net/tcp grows with the sockets of
        // the whole network namespace.
        let tuned = tokio::task::spawn_blocking(move || crate::tcp::tune(&host, port, want))
            .await
            .unwrap_or(Err(TcpSkip::Failed));
        match tuned {
            Ok((t, fd)) => {
                if want.is_some() {
                    self.counters.tcp_tuned.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::TCP_TUNED).increment(1);
                    tracing::debug!(connection_id = conn.id(), tuning = ?t, "socket tuned");
                }
                Some((t, fd))
            }
            Err(why) => {
                if want.is_some() {
                    self.tcp_skipped(conn, why);
                }
                None
            }
        }
    }

    fn tcp_skipped(&self, conn: &Conn, why: TcpSkip) -> Option<TcpTuning> {
        self.counters
            .tcp_tuning_skipped
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::TCP_TUNING_SKIPPED, "reason" => why.as_str()).increment(1);
        tracing::debug!(connection_id = conn.id(), reason = %why, "socket not tuned");
        None
    }

    /// Takes back a connection from a caller, with the permit it was handed out under.
    ///
    /// Runs inside `Drop`, so it never awaits: a connection that needs a `ROLLBACK` first
    /// gets it in a spawned task that keeps the permit until it is done.
    pub(crate) fn check_in(
        self: &Arc<Self>,
        idle: Idle,
        how: Return,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        match how {
            Return::Close(reason) => {
                if reason == m::REASON_CANCELLED {
                    tracing::debug!(
                        connection_id = idle.session.id,
                        "returned mid-statement (cancelled): closed, never reused"
                    );
                }
                self.forget(reason);
                drop(idle.conn);
            }
            Return::Clean => self.put_back(idle),
            Return::RollBack => match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    self.cleaning.fetch_add(1, Ordering::SeqCst);
                    let inner = self.clone();
                    handle.spawn(async move {
                        inner.roll_back_and_put_back(idle).await;
                        inner.cleaning.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    });
                    return;
                }
                // No runtime to send the ROLLBACK on: closing is what ends the
                // transaction.
                Err(_) => {
                    self.forget(m::REASON_UNCLEAN);
                    drop(idle.conn);
                }
            },
        }
        drop(permit);
    }

    /// Back to the idle list, or closed if the pool is closed or the connection is due.
    fn put_back(&self, mut idle: Idle) {
        let now = Instant::now();
        idle.session.last_used = now;
        if self.closed.load(Ordering::SeqCst) {
            self.close_graceful(idle.conn, m::REASON_POOL_CLOSED);
        } else if let Some(reason) = self.expired(&idle.session, now) {
            self.close_graceful(idle.conn, reason);
        } else {
            let idle_left = {
                let mut list = self.idle.lock().unwrap();
                list.push(idle);
                list.len()
            };
            self.publish_sizes(idle_left);
        }
    }

    /// Ends whatever transaction a returned connection may have open, and reuses it only
    /// if the server then reports it clean (`autocommit` on, no transaction).
    async fn roll_back_and_put_back(&self, mut idle: Idle) {
        metrics::counter!(m::ROLLED_BACK).increment(1);
        let rolled_back =
            tokio::time::timeout(self.cfg.ping_timeout, idle.conn.query_drop("ROLLBACK")).await;
        match rolled_back {
            Ok(Ok(())) if crate::conn::session_is_clean(&idle.conn) => {
                idle.session.last_active = Instant::now();
                self.put_back(idle);
            }
            Ok(Ok(())) => {
                // autocommit = 0: every later statement would run in a transaction the
                // next caller did not open.
                tracing::debug!(
                    connection_id = idle.session.id,
                    "returned with autocommit off: closed"
                );
                self.close_graceful(idle.conn, m::REASON_UNCLEAN);
            }
            _ => {
                self.forget(m::REASON_DEAD);
                drop(idle.conn);
            }
        }
    }

    /// Notes that a connection in use went away.
    pub(crate) fn note_gone_away(&self, cause: goneaway_core::Cause) {
        self.counters.gone_away.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::GONE_AWAY, "cause" => cause.as_str()).increment(1);
        self.suspect_now();
    }

    pub(crate) fn note_retry(&self, cause: goneaway_core::Cause) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::RETRIES, "cause" => cause.as_str()).increment(1);
    }

    fn suspect_now(&self) {
        *self.suspect_before.lock().unwrap() = Some(Instant::now());
    }

    /// Accounts for a connection leaving the pool.
    fn forget(&self, reason: &'static str) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.counters.closed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::CLOSED, "reason" => reason).increment(1);
        self.publish();
    }

    /// Closes a healthy connection with COM_QUIT in the background, so the server logs no
    /// aborted connection (which would pollute the doctor's `Aborted_clients` evidence).
    fn close_graceful(&self, conn: Conn, reason: &'static str) {
        self.forget(reason);
        tracing::debug!(connection_id = conn.id(), reason, "connection recycled");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
            });
        }
    }
}

/// A caller in the wait queue: counted in `waiters` from `enter` until dropped, however
/// the wait ends (a permit, a timeout, or the caller's future dropped).
struct Waiting<'a> {
    inner: &'a Inner,
}

impl<'a> Waiting<'a> {
    /// Joins the queue, or `None` when `max_waiters` are already waiting.
    fn enter(inner: &'a Inner) -> Option<Waiting<'a>> {
        if inner.waiters.fetch_add(1, Ordering::SeqCst) >= inner.cfg.max_waiters {
            inner.waiters.fetch_sub(1, Ordering::SeqCst);
            inner.publish();
            return None;
        }
        inner.publish();
        Some(Waiting { inner })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner.waiters.fetch_sub(1, Ordering::SeqCst);
        self.inner.publish();
    }
}

/// Accounts for a connection as closed if dropped while armed: held across an await on a
/// connection the pool owns (a ping), so a cancelled future cannot leave `live` too high.
struct Forget<'a> {
    inner: &'a Inner,
    reason: &'static str,
    armed: bool,
}

impl<'a> Forget<'a> {
    fn armed(inner: &'a Inner, reason: &'static str) -> Forget<'a> {
        Forget {
            inner,
            reason,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.forget(self.reason);
        }
    }
}

/// The background task: keepalive pings, recycling, and keeping `min_idle` connections.
/// Holds only a weak reference, so it ends when the last `Pool` handle is dropped.
async fn maintain(weak: Weak<Inner>) {
    loop {
        let tick = match weak.upgrade() {
            Some(inner) => {
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                maintain_once(&inner).await;
                let limits = *inner.limits.lock().unwrap();
                limits
                    .and_then(|l| l.keepalive_interval)
                    .map(|k| (k / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)))
                    // Until the first connection reports its wait_timeout, look often: the
                    // limits may turn out to be short.
                    .unwrap_or(Duration::from_millis(100))
            }
            None => return,
        };
        tokio::time::sleep(tick).await;
    }
}

async fn maintain_once(inner: &Arc<Inner>) {
    let now = Instant::now();
    let keepalive = inner
        .limits
        .lock()
        .unwrap()
        .and_then(|l| l.keepalive_interval);
    let mut due = Vec::new();
    let mut recycle = Vec::new();
    {
        let mut idle = inner.idle.lock().unwrap();
        let mut i = 0;
        while i < idle.len() {
            let s = &idle[i].session;
            let surplus = idle.len() > inner.cfg.min_idle
                && now.duration_since(s.last_used) >= inner.cfg.idle_timeout;
            if let Some(reason) = inner.expired(s, now) {
                recycle.push((idle.remove(i), reason));
            } else if surplus {
                recycle.push((idle.remove(i), m::REASON_IDLE_TIMEOUT));
            } else if keepalive.is_some_and(|k| now.duration_since(s.last_active) >= k) {
                // The permit first, so the connection counts against max_size the whole
                // time it is off the idle list; none free: it waits for the next tick.
                match inner.permits.clone().try_acquire_owned() {
                    Ok(permit) => due.push((idle.remove(i), permit)),
                    Err(_) => i += 1,
                }
            } else {
                i += 1;
            }
        }
    }
    for (i, reason) in recycle {
        inner.close_graceful(i.conn, reason);
    }
    for (idle, permit) in due {
        let inner = inner.clone();
        tokio::spawn(async move {
            inner
                .counters
                .keepalive_pings
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::KEEPALIVE_PINGS).increment(1);
            match inner.ping(idle).await {
                // The pool was closed while the ping ran: `close` has already emptied the
                // idle list, so this one must not go back into it.
                Some(idle) if inner.closed.load(Ordering::SeqCst) => {
                    inner.close_graceful(idle.conn, m::REASON_POOL_CLOSED);
                }
                Some(idle) => {
                    // Most recently used first: put it under the others.
                    inner.idle.lock().unwrap().insert(0, idle);
                    inner.publish();
                }
                None => {
                    inner
                        .counters
                        .stale_by_keepalive
                        .fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::STALE_CAUGHT, "by" => "keepalive").increment(1);
                }
            }
            drop(permit);
        });
    }
    // Keep min_idle connections open, one per tick so a down server is not hammered.
    let live = inner.live.load(Ordering::SeqCst);
    if live < inner.cfg.min_idle {
        if let Ok(permit) = inner.permits.clone().try_acquire_owned() {
            if let Ok(idle) = inner.open().await {
                if inner.closed.load(Ordering::SeqCst) {
                    inner.close_graceful(idle.conn, m::REASON_POOL_CLOSED);
                } else {
                    inner.idle.lock().unwrap().insert(0, idle);
                }
            }
            drop(permit);
        }
    }
    inner.publish();
}
