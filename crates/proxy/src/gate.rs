//! The door before authentication: what a connection that has not logged in may cost, and
//! how fast anyone may guess passwords.
//!
//! - **Pending logins** are bounded by [`ProxyConfig::max_pending_logins`], apart from
//!   `max_clients` (which counts only sessions that logged in), and per client address by
//!   [`ProxyConfig::max_pending_logins_per_address`]. When a bound is reached, a new
//!   connection does not wait and is not refused: the *oldest* pending login (of the same
//!   address, for the per-address bound) is closed to make room. A real client logs in
//!   within milliseconds, so it is never the oldest; connections that connect and say
//!   nothing (or park in a TLS handshake) are. So a flood from one address churns through
//!   that address's places and leaves everyone else's alone, and a flood from many
//!   addresses can only close logins older than the newest thousand. Each pending login
//!   also has a deadline ([`ProxyConfig::login_timeout`]) from accept to the end of
//!   authentication, TLS handshake included.
//! - **Failed logins** are counted per client address and user, as MySQL's
//!   `connection_control` plugin does: from [`ProxyConfig::failed_login_threshold`]
//!   consecutive failures on, each new attempt for that address and user waits before the
//!   proxy even greets it, 500 ms doubling up to [`ProxyConfig::failed_login_max_delay`].
//!   A successful login clears the count; the right password always works, after the
//!   delay. The counts are forgotten ten minutes after the last failure.
//!
//! [`ProxyConfig::max_pending_logins`]: crate::ProxyConfig::max_pending_logins
//! [`ProxyConfig::max_pending_logins_per_address`]: crate::ProxyConfig::max_pending_logins_per_address
//! [`ProxyConfig::login_timeout`]: crate::ProxyConfig::login_timeout
//! [`ProxyConfig::failed_login_threshold`]: crate::ProxyConfig::failed_login_threshold
//! [`ProxyConfig::failed_login_max_delay`]: crate::ProxyConfig::failed_login_max_delay

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::ProxyConfig;
use crate::stats::Stats;

/// The first delay once the threshold is reached; it doubles with each further failure.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Failure counts older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses (with users) remembered at most; past this, the oldest counts go first.
const MAX_REMEMBERED: usize = 100_000;

/// Pending logins and failure counts, shared by the accept loop and the sessions.
#[derive(Debug)]
pub struct Gate {
    // The limits a reload may change ([`Gate::configure`]).
    max_pending: AtomicUsize,
    max_per_address: AtomicUsize,
    threshold: AtomicU32,
    max_delay_ms: AtomicU64,
    stats: Arc<Stats>,
    pending: Mutex<PendingLogins>,
    failures: Mutex<HashMap<(IpAddr, String), Failures>>,
}

#[derive(Debug, Default)]
struct PendingLogins {
    /// By session id (ids grow with accept order: the first is the oldest): the client's
    /// address and the way to close the login.
    by_id: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    per_address: HashMap<IpAddr, usize>,
}

impl PendingLogins {
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<()>> {
        let (ip, tx) = self.by_id.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
        Some(tx)
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// A connection that has not logged in yet. Dropping it (login done or failed) frees its
/// place.
#[derive(Debug)]
pub struct Pending {
    gate: Arc<Gate>,
    id: u64,
    closed: Option<oneshot::Receiver<()>>,
}

impl Pending {
    /// Completes when the gate closes this login to make room for a newer one.
    pub async fn evicted(&mut self) {
        match self.closed.as_mut() {
            Some(rx) => {
                // An error means the sender was dropped without a send: that only happens
                // when this login was removed, which Drop does; never wake for it.
                if rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.gate.pending.lock().unwrap().remove(self.id).is_some() {
            self.gate
                .stats
                .pending_logins
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Gate {
    pub fn new(config: &ProxyConfig, stats: Arc<Stats>) -> Gate {
        let gate = Gate {
            max_pending: AtomicUsize::new(1),
            max_per_address: AtomicUsize::new(1),
            threshold: AtomicU32::new(0),
            max_delay_ms: AtomicU64::new(0),
            stats,
            pending: Mutex::new(PendingLogins::default()),
            failures: Mutex::new(HashMap::new()),
        };
        gate.configure(config);
        gate
    }

    /// Puts the limits of `config` in force (pending logins over a lowered bound are
    /// closed, oldest first, as new ones arrive; failure counts are kept).
    pub fn configure(&self, config: &ProxyConfig) {
        let set = |a: &AtomicUsize, v: usize| a.store(v.max(1), Ordering::Relaxed);
        set(&self.max_pending, config.max_pending_logins);
        set(&self.max_per_address, config.max_pending_logins_per_address);
        self.threshold
            .store(config.failed_login_threshold, Ordering::Relaxed);
        self.max_delay_ms.store(
            config.failed_login_max_delay.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    fn threshold(&self) -> u32 {
        self.threshold.load(Ordering::Relaxed)
    }

    fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms.load(Ordering::Relaxed))
    }

    /// Registers the login of session `id` from `ip`, closing the oldest pending one (of
    /// `ip`, when that address is at its bound) to make room.
    pub fn enter(self: &Arc<Gate>, id: u64, ip: IpAddr) -> Pending {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap();
        let evict = |pending: &mut PendingLogins, victim: u64| {
            if let Some(tx) = pending.remove(victim) {
                self.stats.pending_logins.fetch_sub(1, Ordering::Relaxed);
                self.stats.pending_evicted.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(());
            }
        };
        if pending.per_address.get(&ip).copied().unwrap_or(0)
            >= self.max_per_address.load(Ordering::Relaxed)
        {
            let oldest_here = pending
                .by_id
                .iter()
                .find(|(_, (from, _))| *from == ip)
                .map(|(id, _)| *id);
            if let Some(victim) = oldest_here {
                evict(&mut pending, victim);
            }
        }
        while pending.by_id.len() >= self.max_pending.load(Ordering::Relaxed) {
            let Some(victim) = pending.by_id.keys().next().copied() else {
                break;
            };
            evict(&mut pending, victim);
        }
        pending.by_id.insert(id, (ip, tx));
        *pending.per_address.entry(ip).or_default() += 1;
        self.stats.pending_logins.fetch_add(1, Ordering::Relaxed);
        Pending {
            gate: self.clone(),
            id,
            closed: Some(rx),
        }
    }

    /// How long an attempt by `user` from `ip` waits before it is checked.
    pub fn delay_for(&self, ip: IpAddr, user: &str) -> Duration {
        if self.threshold() == 0 {
            return Duration::ZERO;
        }
        let failures = self.failures.lock().unwrap();
        let Some(f) = failures.get(&(ip, user.to_owned())) else {
            return Duration::ZERO;
        };
        if f.count < self.threshold() || f.last.elapsed() > FORGET_AFTER {
            return Duration::ZERO;
        }
        let doublings = (f.count - self.threshold()).min(16);
        (FIRST_DELAY * 2u32.pow(doublings)).min(self.max_delay())
    }

    /// Counts a refused login (or `COM_CHANGE_USER`) by `user` from `ip`.
    pub fn failed(&self, ip: IpAddr, user: &str) {
        if self.threshold() == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap();
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, f| f.last.elapsed() < FORGET_AFTER);
            if failures.len() >= MAX_REMEMBERED {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                {
                    failures.remove(&oldest);
                }
            }
        }
        let f = failures.entry((ip, user.to_owned())).or_insert(Failures {
            count: 0,
            last: Instant::now(),
        });
        if f.last.elapsed() > FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = Instant::now();
        if f.count == self.threshold() {
            tracing::warn!(
                peer = %ip,
                user,
                failures = f.count,
                "repeated failed logins: further attempts from this address for this user are delayed \
                 (from {FIRST_DELAY:?}, doubling, at most {:?}) until one succeeds",
                self.max_delay()
            );
        }
    }

    /// Clears the failure count of `user` from `ip` after a successful login.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        if self.threshold() == 0 {
            return;
        }
        self.failures.lock().unwrap().remove(&(ip, user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendTarget;

    fn gate(max_pending: usize, per_address: usize) -> Arc<Gate> {
        let mut config = ProxyConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            BackendTarget::from_url("mysql://u@127.0.0.1:1/").unwrap(),
        );
        config.max_pending_logins = max_pending;
        config.max_pending_logins_per_address = per_address;
        Arc::new(Gate::new(&config, Arc::new(Stats::default())))
    }

    #[tokio::test]
    async fn the_oldest_pending_login_makes_room() {
        let g = gate(2, 2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut first = g.enter(1, ip);
        let mut second = g.enter(2, ip);
        let third = g.enter(3, ip);
        // The first is closed; the others are not.
        tokio::time::timeout(Duration::from_secs(1), first.evicted())
            .await
            .expect("the oldest is evicted");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.evicted())
                .await
                .is_err()
        );
        assert_eq!(g.stats.pending_logins.load(Ordering::Relaxed), 2);
        assert_eq!(g.stats.pending_evicted.load(Ordering::Relaxed), 1);
        drop(third);
        drop(second);
        drop(first);
        assert_eq!(g.stats.pending_logins.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_flood_from_one_address_only_closes_its_own_logins() {
        let g = gate(10, 2);
        let (real, flood): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let mut mine = g.enter(1, real);
        let attackers: Vec<_> = (2..50).map(|id| g.enter(id, flood)).collect();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), mine.evicted())
                .await
                .is_err(),
            "another address's flood left this login alone"
        );
        assert_eq!(g.stats.pending_logins.load(Ordering::Relaxed), 3);
        assert_eq!(g.stats.pending_evicted.load(Ordering::Relaxed), 46);
        drop(attackers);
    }

    #[test]
    fn failed_logins_delay_the_next_ones_until_one_succeeds() {
        let g = gate(10, 10);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..2 {
            g.failed(ip, "app");
        }
        assert_eq!(g.delay_for(ip, "app"), Duration::ZERO);
        g.failed(ip, "app");
        assert_eq!(g.delay_for(ip, "app"), FIRST_DELAY);
        g.failed(ip, "app");
        assert_eq!(g.delay_for(ip, "app"), FIRST_DELAY * 2);
        for _ in 0..20 {
            g.failed(ip, "app");
        }
        assert_eq!(g.delay_for(ip, "app"), Duration::from_secs(10));
        // Another user or another address is not slowed down.
        assert_eq!(g.delay_for(ip, "other"), Duration::ZERO);
        assert_eq!(
            g.delay_for("127.0.0.2".parse().unwrap(), "app"),
            Duration::ZERO
        );
        g.succeeded(ip, "app");
        assert_eq!(g.delay_for(ip, "app"), Duration::ZERO);
    }
}
