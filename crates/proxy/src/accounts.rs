//! Who may log in to the proxy: the accounts of its configuration, and every account of the
//! server itself, read from `mysql.user` with the backend URL's account (as MariaDB
//! MaxScale reads the server's users with its monitor account).
//!
//! A configured account logs in to the server as the backend URL's account. A server
//! account logs in to the server as itself, so the server's privileges, host rules and
//! account locks apply as they would directly. The proxy can do that without knowing the
//! password because of how `mysql_native_password` works: the server stores
//! `SHA1(SHA1(password))`, the client proves it knows `SHA1(password)` by sending
//! `SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))`, so the proxy recovers
//! `SHA1(password)` from a correct answer, checks it against the stored hash, and keeps it
//! for the session's later logins to the server, each with the server's own nonce. A
//! client that cannot prove the password gets 1045: never an open relay. Accounts with any
//! other plugin (`unix_socket`, `ed25519`, `caching_sha2_password`) cannot be checked
//! this way and are refused with a message that says so; configured accounts cover them.
//!
//! The table is read when a login first needs it and again when a login names a user it
//! does not know or a password that does not match (a `CREATE USER` or `SET PASSWORD`
//! since the last read), at most every [`RELOAD_INTERVAL`]: a burst of wrong passwords
//! costs the server a few reads a second, and is slowed down by them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::backend::conn::{self, Backend, ConnectOptions};
use crate::config::{Account, BackendTarget, ProxyConfig};
use crate::net::packet;
use crate::stats::Stats;

/// Re-reads of the server's accounts are at least this far apart.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(100);

const NATIVE: &str = "mysql_native_password";

/// The account a client proved it may use, and so the one its session logs in to the
/// server with.
#[derive(Clone, PartialEq, Eq)]
pub enum Verified {
    /// A configured account: the session logs in to the server with the backend URL's
    /// account.
    Configured,
    /// The server's own account `user`: the session logs in as it, with `SHA1(password)`
    /// (`None`: the account has no password).
    Server {
        user: String,
        hash: Option<[u8; 20]>,
    },
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verified::Configured => f.write_str("Configured"),
            Verified::Server { user, .. } => write!(f, "Server({user})"),
        }
    }
}

impl Verified {
    /// The account a session logs in to the server with.
    pub fn target(&self, backend: &BackendTarget) -> BackendTarget {
        match self {
            Verified::Configured => backend.clone(),
            Verified::Server { user, hash } => BackendTarget {
                user: user.clone(),
                password: String::new(),
                native_hash: *hash,
                ..backend.clone()
            },
        }
    }
}

/// One row of the server's `mysql.user`.
#[derive(Clone)]
struct ServerAccount {
    host: String,
    plugin: String,
    /// `*` and 40 hex digits for `mysql_native_password`; empty for no password.
    auth: String,
}

/// The proxy's accounts and, unless turned off, the server's.
#[derive(Debug)]
pub struct Accounts {
    configured: Vec<Account>,
    server: Option<ServerAccounts>,
}

struct ServerAccounts {
    /// The backend URL's account, which reads `mysql.user`.
    monitor: BackendTarget,
    connect_timeout: Duration,
    stats: Arc<Stats>,
    users: RwLock<Table>,
    /// Held while the table is read: concurrent logins wait for one read.
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ServerAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAccounts")
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    users: HashMap<String, Vec<ServerAccount>>,
    /// When the last read ended (successful or not).
    read: Option<Instant>,
    /// Why the last read failed, so that the same failure is logged once.
    error: Option<String>,
}

impl Accounts {
    pub fn new(config: &ProxyConfig, stats: Arc<Stats>) -> Accounts {
        Accounts {
            configured: config.effective_accounts(),
            server: config.server_accounts.then(|| ServerAccounts {
                monitor: config.backend.clone(),
                connect_timeout: config.connect_timeout,
                stats,
                users: RwLock::new(Table::default()),
                reload: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Whether `user` is one of the configured accounts (those are checked with whatever
    /// plugin the client used; the server's only with `mysql_native_password`).
    pub fn is_configured(&self, user: &str) -> bool {
        self.configured.iter().any(|a| a.user == user)
    }

    /// Checks `auth`, the client's answer to `nonce` with `plugin`, for `user` connecting
    /// from `peer`. `Err` is the "Access denied" message.
    pub async fn check(
        &self,
        user: &str,
        plugin: &str,
        nonce: &[u8],
        auth: &[u8],
        peer: IpAddr,
    ) -> Result<Verified, String> {
        let denied = |why: &str| {
            let using = if auth.is_empty() { "NO" } else { "YES" };
            format!(
                "Access denied for user '{user}'@'{}' (using password: {using}) (goneaway proxy{why})",
                peer_text(peer)
            )
        };
        if let Some(a) = self.configured.iter().find(|a| a.user == user) {
            let expected = conn::scramble(plugin, nonce, &a.password).unwrap_or_default();
            return if constant_time_eq(&expected, auth) {
                Ok(Verified::Configured)
            } else {
                Err(denied(""))
            };
        }
        let Some(server) = &self.server else {
            return Err(denied(""));
        };
        if user.is_empty() {
            return Err(denied(
                ": anonymous accounts cannot log in through the proxy",
            ));
        }
        if plugin != NATIVE {
            return Err(denied(&format!(
                ": the server's accounts are checked with {NATIVE}, not {plugin}"
            )));
        }
        let asked = Instant::now();
        let mut why = String::new();
        // The table as last read, then, if that does not let the client in, a fresh read
        // (the account or its password may be newer than the last read).
        for fresh in [false, true] {
            if fresh || server.never_read() {
                server.read_after(asked).await;
            }
            match server.verify(user, nonce, auth, peer) {
                Ok(hash) => {
                    return Ok(Verified::Server {
                        user: user.to_owned(),
                        hash,
                    })
                }
                Err(w) => why = w,
            }
        }
        Err(denied(&why))
    }
}

impl ServerAccounts {
    fn never_read(&self) -> bool {
        self.users.read().unwrap().read.is_none()
    }

    /// Reads the table unless a read ended after `asked`; reads are at least
    /// [`RELOAD_INTERVAL`] apart.
    async fn read_after(&self, asked: Instant) {
        let _one = self.reload.lock().await;
        let last = self.users.read().unwrap().read;
        if last.is_some_and(|t| t >= asked) {
            return; // another login read it meanwhile
        }
        if let Some(t) = last {
            tokio::time::sleep_until((t + RELOAD_INTERVAL).into()).await;
        }
        let result = self.load().await;
        let mut table = self.users.write().unwrap();
        table.read = Some(Instant::now());
        match result {
            Ok(users) => {
                if table.error.take().is_some() {
                    tracing::info!("the server's accounts are readable again");
                }
                table.users = users;
            }
            Err(e) => {
                if table.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(
                        account = %self.monitor.user,
                        "cannot read the server's accounts (mysql.user): {e}; \
                         only the configured accounts can log in (grant SELECT ON mysql.* to the backend URL's account, \
                         or list the accounts in the configuration)"
                    );
                }
                table.error = Some(e);
            }
        }
    }

    async fn load(&self) -> Result<HashMap<String, Vec<ServerAccount>>, String> {
        let opts = ConnectOptions {
            client_capabilities: packet::caps::INTERNAL,
            charset: packet::DEFAULT_CHARSET,
            database: None,
            timeout: self.connect_timeout,
        };
        let mut b = Backend::connect(&self.monitor, &opts, self.stats.clone())
            .await
            .map_err(|e| e.to_string())?;
        let rows = b
            .simple("SELECT User, Host, plugin, authentication_string FROM mysql.user")
            .await;
        b.quit().await;
        self.stats
            .server_account_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut users: HashMap<String, Vec<ServerAccount>> = HashMap::new();
        for row in rows.map_err(|e| e.to_string())? {
            let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            users.entry(col(0)).or_default().push(ServerAccount {
                host: col(1),
                plugin: col(2),
                auth: col(3),
            });
        }
        Ok(users)
    }

    /// Checks the client's answer against the most specific row for `user` whose host
    /// matches `peer`, as the server picks the row it checks; `Ok` carries
    /// `SHA1(password)` (`None` for an account without one).
    fn verify(
        &self,
        user: &str,
        nonce: &[u8],
        auth: &[u8],
        peer: IpAddr,
    ) -> Result<Option<[u8; 20]>, String> {
        let table = self.users.read().unwrap();
        if let Some(e) = &table.error {
            if table.users.is_empty() {
                return Err(format!(": the server's accounts could not be read: {e}"));
            }
        }
        let Some(rows) = table.users.get(user) else {
            return Err(String::new());
        };
        let Some(row) = rows
            .iter()
            .filter(|r| host_matches(&r.host, peer))
            .max_by_key(|r| host_specificity(&r.host))
        else {
            return Err(String::new());
        };
        if !row.plugin.is_empty() && row.plugin != NATIVE {
            return Err(format!(
                ": the account uses {}, which the proxy cannot check; list it in the proxy's accounts",
                row.plugin
            ));
        }
        if row.auth.is_empty() {
            return if auth.is_empty() {
                Ok(None)
            } else {
                Err(String::new())
            };
        }
        let stored = row
            .auth
            .strip_prefix('*')
            .and_then(hex20)
            .ok_or_else(|| ": the account has no usable password hash".to_owned())?;
        native_recover(nonce, auth, &stored)
            .map(Some)
            .ok_or_else(String::new)
    }
}

/// From a client's `mysql_native_password` answer, `SHA1(password)`, if it matches the
/// stored `SHA1(SHA1(password))`.
fn native_recover(nonce: &[u8], auth: &[u8], stored: &[u8; 20]) -> Option<[u8; 20]> {
    if auth.len() != 20 {
        return None;
    }
    let nonce = &nonce[..nonce.len().min(20)];
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stored);
    let mask = h.finalize();
    let mut stage1 = [0u8; 20];
    for i in 0..20 {
        stage1[i] = auth[i] ^ mask[i];
    }
    constant_time_eq(&Sha1::digest(stage1), stored).then_some(stage1)
}

fn hex20(s: &str) -> Option<[u8; 20]> {
    if s.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The client's address as the server would show it (IPv4-mapped IPv6 as IPv4).
fn peer_text(peer: IpAddr) -> String {
    match peer {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_else(|| v6.to_string()),
        v4 => v4.to_string(),
    }
}

/// Whether an account's host part admits a client at `peer`: `%` and `_` wildcards over
/// the address, `net/mask`, `localhost` for loopback. Host names other than `localhost`
/// would need name resolution, which the proxy does not do: they match nothing.
fn host_matches(pattern: &str, peer: IpAddr) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let ip = peer_text(peer);
    let loopback = ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
    if pattern == "localhost" {
        return loopback;
    }
    if let Some((net, mask)) = pattern.split_once('/') {
        return match (
            net.parse::<std::net::Ipv4Addr>(),
            mask.parse::<std::net::Ipv4Addr>(),
            ip.parse::<std::net::Ipv4Addr>(),
        ) {
            (Ok(n), Ok(m), Ok(a)) => u32::from(a) & u32::from(m) == u32::from(n),
            _ => false,
        };
    }
    like(pattern.as_bytes(), ip.as_bytes())
}

/// SQL `LIKE` with `%` and `_` (and `\` escaping them), as host patterns use it.
fn like(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'%') => (0..=s.len()).any(|i| like(&p[1..], &s[i..])),
        Some(b'_') => !s.is_empty() && like(&p[1..], &s[1..]),
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && like(&p[2..], &s[1..]),
        Some(c) => s.first() == Some(c) && like(&p[1..], &s[1..]),
    }
}

/// How specific a host pattern is, as the server orders its account rows: exact hosts
/// first, then wildcards by how much comes before the first one, `%` last.
fn host_specificity(pattern: &str) -> (u8, usize) {
    match pattern.find(['%', '_']) {
        None => (2, pattern.len()),
        Some(at) => (1, at),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_answers_are_recovered_only_with_the_right_password() {
        let nonce = b"abcdefghij0123456789";
        let h1: [u8; 20] = Sha1::digest(b"s3cret").into();
        let stored: [u8; 20] = Sha1::digest(h1).into();
        let answer = conn::scramble(NATIVE, nonce, "s3cret").unwrap();
        assert_eq!(native_recover(nonce, &answer, &stored), Some(h1));
        let wrong = conn::scramble(NATIVE, nonce, "guess").unwrap();
        assert_eq!(native_recover(nonce, &wrong, &stored), None);
        assert_eq!(native_recover(nonce, &[], &stored), None);
        // The recovered hash answers the server's next nonce as the password would.
        let other = b"ZYXWVUTSRQPONMLKJIHG";
        let target = BackendTarget {
            native_hash: Some(h1),
            ..BackendTarget::from_url("mysql://u@h:1/").unwrap()
        };
        assert_eq!(
            target.auth_response(NATIVE, other).unwrap(),
            conn::scramble(NATIVE, other, "s3cret").unwrap()
        );
    }

    #[test]
    fn host_patterns() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(host_matches("%", lo));
        assert!(host_matches("localhost", lo));
        assert!(host_matches("LOCALHOST", "::1".parse().unwrap()));
        assert!(!host_matches("localhost", mapped));
        assert!(host_matches("10.1.2.%", mapped));
        assert!(host_matches("10.1._.3", mapped));
        assert!(!host_matches("10.1.3.%", mapped));
        assert!(host_matches("10.1.0.0/255.255.0.0", mapped));
        assert!(!host_matches("10.2.0.0/255.255.0.0", mapped));
        assert!(!host_matches("db.example.com", mapped));
        let mut hosts = ["%", "10.1.%", "10.1.2.3", "10.%"];
        hosts.sort_by_key(|h| std::cmp::Reverse(host_specificity(h)));
        assert_eq!(hosts, ["10.1.2.3", "10.1.%", "10.%", "%"]);
    }
}
