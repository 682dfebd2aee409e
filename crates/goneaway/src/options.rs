//! Pool options: every knob, its default, and the advice it implements.

use std::time::Duration;

/// When a connection is validated (pinged with `COM_PING`) before it is handed out.
///
/// Advice implemented: SQLAlchemy's `pool_pre_ping`, HikariCP's `connectionTestQuery`/
/// `isValid()` — but only when it is due, so a busy service pays no extra round trip.
///
/// A connection not pinged still gets a look at its socket (a non-blocking peek, one
/// system call, no round trip) in every mode but [`Validation::Always`]: a close or an
/// error the server sent (a `KILL`, a restart, an idle timeout) keeps it from being handed
/// out. That look needs the socket, which the pool finds on Linux over TCP straight to
/// the server — not through a proxy or relay, nor over a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validation {
    /// Ping on every checkout (what sqlx does): one extra round trip per checkout.
    Always,
    /// Ping a connection that sat unused longer than this (the default, with 1 s). A
    /// connection used a moment ago is handed out after the look at its socket.
    WhenIdleOver(Duration),
    /// Never ping at checkout (what mysql_async's own pool does). The look at the socket,
    /// statement retry and keepalive still apply.
    Never,
}

impl Validation {
    /// Ping a connection idle longer than `d`.
    pub fn when_idle_over(d: Duration) -> Self {
        Validation::WhenIdleOver(d)
    }
}

impl Default for Validation {
    fn default() -> Self {
        // One second: a connection in steady use is never pinged, and anything that sat
        // long enough for a timeout, a restart or a middlebox to intervene is.
        Validation::WhenIdleOver(Duration::from_secs(1))
    }
}

/// How failed work is retried.
///
/// Advice implemented: "retry with a fresh connection, but only what is safe", bounded,
/// with exponential backoff and jitter so a restarting server is not stampeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 4). `1` disables retry.
    pub max_attempts: u32,
    /// The first backoff (default 25 ms); each further one doubles.
    pub initial_backoff: Duration,
    /// The longest backoff (default 1 s).
    pub max_backoff: Duration,
    /// No new attempt starts after this much time since the first (default 30 s).
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1` (attempt counts from 1): exponential with
    /// "full jitter" between half and all of the nominal value.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let nominal = exp.min(self.max_backoff);
        nominal / 2 + nominal.mul_f64(crate::jitter::unit() / 2.0)
    }
}

/// Options of a [`Pool`](crate::Pool). Build with [`PoolOptions::new`] and the setters; every
/// value has a default, and the three time limits that depend on the server (`max_idle`,
/// `keepalive_interval`, `max_lifetime`) are derived from the session's own `wait_timeout`
/// unless set.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections kept open even when unused (default 1). HikariCP `minimumIdle`.
    pub(crate) min_idle: usize,
    /// Connections open at most, in use or idle (default 10). HikariCP `maximumPoolSize`;
    /// keep the sum over all application instances below the server's `max_connections`.
    pub(crate) max_size: usize,
    /// How long a checkout may wait for a connection, connecting included (default 30 s).
    /// HikariCP `connectionTimeout`.
    pub(crate) checkout_timeout: Duration,
    /// Callers that may wait at once for a busy pool before checkouts fail fast with
    /// [`Error::QueueFull`](crate::Error::QueueFull) (default 1024). mysql2's `queueLimit`:
    /// an unbounded queue turns an overload into a latency collapse.
    pub(crate) max_waiters: usize,
    /// See [`Validation`] (default `WhenIdleOver(1 s)`).
    pub(crate) validation: Validation,
    /// How long a validation or keepalive ping may take before the connection is declared
    /// dead (default 2 s). A silently dropped flow never answers; this is what ends it.
    pub(crate) ping_timeout: Duration,
    /// How long one statement may wait for the server (default 60 s; `None` for no limit).
    /// The per-query read timeout that turns a blackholed flow into an error in seconds
    /// instead of the kernel's 15 minutes of retransmissions.
    pub(crate) statement_timeout: Option<Duration>,
    /// How long opening a connection may take (default 10 s).
    pub(crate) connect_timeout: Duration,
    /// Recycle a connection idle (no traffic at all) longer than this. Default derived:
    /// `wait_timeout` minus a margin of 10 % (at least 1 s), less up to 10 % jitter — so
    /// the pool never hands out a connection the server has already closed. SQLAlchemy
    /// `pool_recycle` below `wait_timeout`; HikariCP `idleTimeout`.
    pub(crate) max_idle: Option<Duration>,
    /// Ping idle connections in the background after this much silence. Default derived:
    /// a third of `wait_timeout`, at most 2 minutes — below AWS NAT/NLB's 350 s and Azure
    /// LB's 4 min idle limits. HikariCP `keepaliveTime`. `Some(Duration::ZERO)` disables.
    pub(crate) keepalive_interval: Option<Duration>,
    /// Close a connection this long after it was opened, once it is returned. Default
    /// 30 minutes less up to 2.5 % jitter, so connections do not all expire at once.
    /// HikariCP `maxLifetime`: "several seconds shorter than any infrastructure limit".
    pub(crate) max_lifetime: Option<Duration>,
    /// Close connections above `min_idle` unused this long (default 10 minutes).
    pub(crate) idle_timeout: Duration,
    /// Statements run on every new connection, in order (`SET NAMES utf8mb4`,
    /// `SET time_zone = '+00:00'`), so a replacement is indistinguishable from the original.
    pub(crate) init: Vec<String>,
    /// TCP keepalive idle time on every socket (default 30 s; `None` turns keepalive off):
    /// the kernel probes a silent flow so a dead peer is noticed and middleboxes see
    /// traffic. Set by mysql_async on every platform.
    pub(crate) tcp_keepalive: Option<Duration>,
    /// Time between unanswered keepalive probes (default 10 s). Linux only, set on the
    /// socket found through `/proc` (see the crate docs); elsewhere the host's
    /// `tcp_keepalive_intvl` (75 s by default) applies.
    pub(crate) tcp_keepalive_interval: Duration,
    /// Unanswered keepalive probes before the kernel drops the connection (default 3).
    /// Linux only, like `tcp_keepalive_interval`; the host default is 9.
    pub(crate) tcp_keepalive_probes: u32,
    /// Linux's `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the
    /// kernel drops the connection. `None` (the default) derives it from keepalive, as
    /// idle plus interval × probes (60 s with the defaults), so a dead peer is noticed in
    /// the same bound whether the connection was silent or had data in flight; `Some(ZERO)`
    /// leaves the kernel's default (about 15 minutes of retransmissions).
    pub(crate) tcp_user_timeout: Option<Duration>,
    /// See [`RetryPolicy`].
    pub(crate) retry: RetryPolicy,
    /// The `pool` label on the pool's gauges (default `"default"`), so a service with
    /// several pools (a primary and a replica) can tell their sizes apart.
    pub(crate) name: String,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            min_idle: 1,
            max_size: 10,
            checkout_timeout: Duration::from_secs(30),
            max_waiters: 1024,
            validation: Validation::default(),
            ping_timeout: Duration::from_secs(2),
            statement_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(10),
            max_idle: None,
            keepalive_interval: None,
            max_lifetime: None,
            idle_timeout: Duration::from_secs(600),
            init: Vec::new(),
            tcp_keepalive: Some(Duration::from_secs(30)),
            // The seed's advice (`tcp_keepalive_intvl=10`, `tcp_keepalive_probes=3`), per
            // socket instead of host-wide: a dead peer is noticed 30 s after it went silent.
            tcp_keepalive_interval: Duration::from_secs(10),
            tcp_keepalive_probes: 3,
            tcp_user_timeout: None,
            retry: RetryPolicy::default(),
            name: "default".to_owned(),
        }
    }
}

impl PoolOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// The `pool` label on the gauges in [`metrics_names`](crate::metrics_names)
    /// (default `"default"`): give each pool of a service its own name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Connections kept open even when unused (default 1). HikariCP `minimumIdle`.
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }
    /// Connections open at most, in use or idle (default 10). HikariCP `maximumPoolSize`;
    /// keep the sum over all application instances below the server's `max_connections`.
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n.max(1);
        self
    }
    /// How long a checkout may wait for a connection, connecting included (default 30 s).
    /// HikariCP `connectionTimeout`.
    pub fn checkout_timeout(mut self, d: Duration) -> Self {
        self.checkout_timeout = d;
        self
    }
    /// Callers that may wait at once for a busy pool before checkouts fail fast with
    /// [`Error::QueueFull`](crate::Error::QueueFull) (default 1024). mysql2's `queueLimit`:
    /// an unbounded queue turns an overload into a latency collapse.
    pub fn max_waiters(mut self, n: usize) -> Self {
        self.max_waiters = n;
        self
    }
    /// See [`Validation`] (default `WhenIdleOver(1 s)`).
    pub fn validation(mut self, v: Validation) -> Self {
        self.validation = v;
        self
    }
    /// How long a validation or keepalive ping may take before the connection is declared
    /// dead (default 2 s). A silently dropped flow never answers; this is what ends it.
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }
    /// How long one statement may wait for the server (default 60 s; `None` for no limit).
    /// The per-query read timeout that turns a blackholed flow into an error in seconds
    /// instead of the kernel's 15 minutes of retransmissions.
    pub fn statement_timeout(mut self, d: Option<Duration>) -> Self {
        self.statement_timeout = d;
        self
    }
    /// How long opening a connection may take (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Recycle a connection idle (no traffic at all) longer than this. Default derived:
    /// `wait_timeout` minus a margin of 10 % (at least 1 s), less up to 10 % jitter — so
    /// the pool never hands out a connection the server has already closed. SQLAlchemy
    /// `pool_recycle` below `wait_timeout`; HikariCP `idleTimeout`.
    pub fn max_idle(mut self, d: Duration) -> Self {
        self.max_idle = Some(d);
        self
    }
    /// Ping idle connections in the background after this much silence. Default derived:
    /// a third of `wait_timeout`, at most 2 minutes — below AWS NAT/NLB's 350 s and Azure
    /// LB's 4 min idle limits. HikariCP `keepaliveTime`. `Some(Duration::ZERO)` disables.
    pub fn keepalive_interval(mut self, d: Duration) -> Self {
        self.keepalive_interval = Some(d);
        self
    }
    /// Close a connection this long after it was opened, once it is returned. Default
    /// 30 minutes less up to 2.5 % jitter, so connections do not all expire at once.
    /// HikariCP `maxLifetime`: "several seconds shorter than any infrastructure limit".
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = Some(d);
        self
    }
    /// Close connections above `min_idle` unused this long (default 10 minutes).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// Statements run on every new connection, in order (`SET NAMES utf8mb4`,
    /// `SET time_zone = '+00:00'`), so a replacement is indistinguishable from the original.
    pub fn init_statement(mut self, sql: impl Into<String>) -> Self {
        self.init.push(sql.into());
        self
    }
    /// TCP keepalive idle time on every socket (default 30 s; `None` turns keepalive off):
    /// the kernel probes a silent flow so a dead peer is noticed and middleboxes (NAT,
    /// firewalls, load balancers with idle limits of minutes) see traffic. Set by
    /// mysql_async on every platform; whole seconds.
    ///
    /// Advice implemented: "OS-level keepalive not configured to detect dead TCP
    /// connections before MySQL's own timeout fires" — with
    /// [`tcp_keepalive_interval`](Self::tcp_keepalive_interval) and
    /// [`tcp_keepalive_probes`](Self::tcp_keepalive_probes), per socket rather than through
    /// the host's `sysctl`.
    pub fn tcp_keepalive(mut self, d: Option<Duration>) -> Self {
        self.tcp_keepalive = d;
        self
    }
    /// Time between unanswered keepalive probes (default 10 s, whole seconds, 1 s at
    /// least). Linux only: set on the socket found through `/proc` (see the crate docs,
    /// and [`PooledConn::tcp_tuning`](crate::PooledConn::tcp_tuning) for what was set);
    /// elsewhere, or when the socket cannot be found, the host's `tcp_keepalive_intvl`
    /// (75 s by default) applies. The seed's advice: `tcp_keepalive_intvl=10`.
    pub fn tcp_keepalive_interval(mut self, d: Duration) -> Self {
        self.tcp_keepalive_interval = d;
        self
    }
    /// Unanswered keepalive probes before the kernel drops the connection (default 3, at
    /// most 127). Linux only, like [`tcp_keepalive_interval`](Self::tcp_keepalive_interval);
    /// the host default is 9. The seed's advice: `tcp_keepalive_probes=3`.
    pub fn tcp_keepalive_probes(mut self, n: u32) -> Self {
        self.tcp_keepalive_probes = n;
        self
    }
    /// Linux's `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the
    /// kernel drops the connection. Default derived from keepalive: idle + interval ×
    /// probes (60 s with the defaults), so a dead peer is noticed in the same bound
    /// whether the connection was silent (keepalive) or had a statement in flight
    /// (retransmissions, 15 minutes by default); not set when keepalive is off.
    /// `Duration::ZERO` leaves the kernel's default. It never cuts a slow statement short:
    /// a server that is computing has acknowledged the statement's bytes.
    pub fn tcp_user_timeout(mut self, d: Duration) -> Self {
        self.tcp_user_timeout = Some(d);
        self
    }
    /// What to set on each socket beyond mysql_async's idle time; `None` for nothing.
    pub(crate) fn tcp_settings(&self) -> Option<crate::tcp::TcpSettings> {
        let keepalive = self
            .tcp_keepalive
            .map(|idle| (idle, self.tcp_keepalive_interval, self.tcp_keepalive_probes));
        let user_timeout = match self.tcp_user_timeout {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => keepalive.map(|(idle, interval, probes)| idle + interval * probes),
        };
        (keepalive.is_some() || user_timeout.is_some()).then_some(crate::tcp::TcpSettings {
            keepalive,
            user_timeout,
        })
    }
    /// See [`RetryPolicy`].
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
}

/// The time limits in force, derived from the server's `wait_timeout` where not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The session `wait_timeout` the pool read from the server.
    pub wait_timeout: Duration,
    /// The session `max_allowed_packet` in bytes.
    pub max_allowed_packet: usize,
    /// Connections silent longer than this are recycled, not handed out.
    pub max_idle: Duration,
    /// Idle connections are pinged after this much silence (`None`: keepalive off).
    pub keepalive_interval: Option<Duration>,
    /// Nominal maximum age of a connection (each connection gets its own jittered value).
    pub max_lifetime: Duration,
}

impl Limits {
    pub(crate) fn derive(opts: &PoolOptions, wait_timeout: Duration, max_packet: usize) -> Self {
        let margin = (wait_timeout / 10).max(Duration::from_secs(1));
        let max_idle = opts
            .max_idle
            .unwrap_or_else(|| wait_timeout.saturating_sub(margin).max(wait_timeout / 2));
        let keepalive = match opts.keepalive_interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => {
                Some((wait_timeout / 3).clamp(Duration::from_millis(200), Duration::from_secs(120)))
            }
        };
        Limits {
            wait_timeout,
            max_allowed_packet: max_packet,
            max_idle,
            keepalive_interval: keepalive,
            max_lifetime: opts.max_lifetime.unwrap_or(Duration::from_secs(1800)),
        }
    }

    /// The idle limit of one connection: `max_idle` less up to 10 % jitter when derived.
    pub(crate) fn jittered_idle(&self, derived: bool) -> Duration {
        if derived {
            self.max_idle.mul_f64(1.0 - 0.1 * crate::jitter::unit())
        } else {
            self.max_idle
        }
    }

    pub(crate) fn jittered_lifetime(&self) -> Duration {
        self.max_lifetime
            .mul_f64(1.0 - 0.025 * crate::jitter::unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_wait_timeout() {
        let l = Limits::derive(&PoolOptions::new(), Duration::from_secs(60), 1 << 20);
        assert_eq!(l.max_idle, Duration::from_secs(54));
        assert_eq!(l.keepalive_interval, Some(Duration::from_secs(20)));
        let l = Limits::derive(&PoolOptions::new(), Duration::from_secs(28800), 1 << 20);
        assert_eq!(l.keepalive_interval, Some(Duration::from_secs(120)));
        let l = Limits::derive(&PoolOptions::new(), Duration::from_secs(2), 1 << 20);
        assert_eq!(l.max_idle, Duration::from_secs(1));
        let l = Limits::derive(
            &PoolOptions::new().keepalive_interval(Duration::ZERO),
            Duration::from_secs(2),
            1,
        );
        assert_eq!(l.keepalive_interval, None);
    }

    #[test]
    fn tcp_settings_derive_the_user_timeout() {
        let s = PoolOptions::new().tcp_settings().unwrap();
        let (idle, interval, probes) = (Duration::from_secs(30), Duration::from_secs(10), 3);
        assert_eq!(s.keepalive, Some((idle, interval, probes)));
        assert_eq!(s.user_timeout, Some(Duration::from_secs(60)));
        let s = PoolOptions::new()
            .tcp_user_timeout(Duration::from_secs(7))
            .tcp_settings()
            .unwrap();
        assert_eq!(s.user_timeout, Some(Duration::from_secs(7)));
        let s = PoolOptions::new()
            .tcp_user_timeout(Duration::ZERO)
            .tcp_settings()
            .unwrap();
        assert_eq!(s.user_timeout, None);
        assert_eq!(PoolOptions::new().tcp_keepalive(None).tcp_settings(), None);
        let s = PoolOptions::new()
            .tcp_keepalive(None)
            .tcp_user_timeout(Duration::from_secs(5))
            .tcp_settings()
            .unwrap();
        assert_eq!(
            (s.keepalive, s.user_timeout),
            (None, Some(Duration::from_secs(5)))
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 1..20 {
            let b = p.backoff(attempt);
            assert!(b <= p.max_backoff, "{b:?}");
        }
        assert!(p.backoff(1) >= Duration::from_millis(12));
    }
}
