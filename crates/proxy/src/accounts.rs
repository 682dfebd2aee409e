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
//! client that cannot prove the password gets 1045: never an open relay. Accounts of the
//! deprecated `mysql_old_password` are checked and logged in with the stored hash, which
//! is all that plugin ever needs (the login asks the client for that plugin). Accounts with
//! any other plugin (`unix_socket`, `ed25519`, `caching_sha2_password`) cannot be checked
//! this way and are refused with a message that says so; configured accounts cover them.
//!
//! The table is read when a login first needs it and again when a login names a user it
//! does not know, a password that does not match or a locked account (a `CREATE USER`, a
//! `SET PASSWORD` or an `ACCOUNT UNLOCK` since the last read), at most every [`RELOAD_INTERVAL`]: a burst of wrong passwords
//! costs the server a few reads a second, and is slowed down by them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::backend::conn::{self, Backend, ConnectOptions};
use crate::config::{Account, BackendTarget, Credential, ProxyConfig};
use crate::stats::Stats;

/// Re-reads of the server's accounts are at least this far apart.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(100);

const NATIVE: &str = "mysql_native_password";
/// The pre-4.1 plugin; the server accepts it only with `secure_auth = OFF`.
pub const OLD: &str = "mysql_old_password";

/// The account a client proved it may use, and so the one its session logs in to the
/// server with.
#[derive(Clone, PartialEq, Eq)]
pub enum Verified {
    /// A configured account: the session logs in to the server with the backend URL's
    /// account.
    Configured,
    /// The server's own account `user`: the session logs in as it, with what the client
    /// proved (`None`: the account has no password).
    Server {
        user: String,
        credential: Option<Credential>,
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
            Verified::Server { user, credential } => BackendTarget {
                user: user.clone(),
                password: String::new(),
                credential: *credential,
                ..backend.clone()
            },
        }
    }
}

/// Why a login was refused: the error the client gets, as the server words it, and the
/// proxy's own reason, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: u16,
    pub sqlstate: &'static str,
    pub message: String,
    /// Empty when the server would say no more either (a wrong password, no such account).
    pub why: String,
}

/// One row of the server's `mysql.user`.
#[derive(Clone)]
struct ServerAccount {
    /// Empty for an anonymous account, which admits any user name.
    user: String,
    host: String,
    /// `ACCOUNT LOCK`: the right password gets 4151 instead of a session.
    locked: bool,
    plugin: String,
    /// `*` and 40 hex digits for `mysql_native_password`, 16 hex digits for
    /// `mysql_old_password`; empty for no password.
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
    /// The server's `skip_name_resolve`: without it, the server calls a loopback client
    /// `localhost` in its messages.
    skip_name_resolve: bool,
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

    /// The plugin a client logging in as `user` from `peer` must answer with, when `user`
    /// is one of the server's accounts: [`OLD`] for a `mysql_old_password` account,
    /// otherwise `mysql_native_password`. `None` for configured accounts (any plugin the
    /// proxy speaks) and when server accounts are off. An unknown user makes the table be
    /// read again.
    pub async fn server_plugin(&self, user: &str, peer: IpAddr) -> Option<&'static str> {
        if self.is_configured(user) {
            return None;
        }
        let server = self.server.as_ref()?;
        let asked = Instant::now();
        for fresh in [false, true] {
            if fresh || server.never_read() {
                server.read_after(asked).await;
            }
            if let Some(plugin) = server.plugin_of(user, peer) {
                return Some(if plugin == OLD { OLD } else { NATIVE });
            }
        }
        Some(NATIVE)
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
    ) -> Result<Verified, Denied> {
        let names_resolved = self
            .server
            .as_ref()
            .is_some_and(|s| !s.users.read().unwrap().skip_name_resolve);
        let denied = |why: &str| {
            let using = if auth.is_empty() { "NO" } else { "YES" };
            let host = match peer_text(peer) {
                ip if names_resolved && ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()) => {
                    "localhost".to_owned()
                }
                ip => ip,
            };
            // As the server words it: ER_ACCESS_DENIED_ERROR.
            Denied {
                code: 1045,
                sqlstate: "28000",
                message: format!(
                    "Access denied for user '{user}'@'{host}' (using password: {using})"
                ),
                why: why.trim_start_matches(": ").to_owned(),
            }
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
        if plugin != NATIVE && plugin != OLD {
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
            match server.verify(user, plugin, nonce, auth, peer) {
                // The lock may be older than the last read (an `ACCOUNT UNLOCK` since):
                // checked again on a fresh read, as a wrong password is.
                Ok((_, true)) if !fresh => {}
                Ok((_, true)) => {
                    // As the server answers the right password of a locked account.
                    return Err(Denied {
                        code: 4151,
                        sqlstate: "HY000",
                        message: "Access denied, this account is locked".into(),
                        why: String::new(),
                    });
                }
                Ok((credential, false)) => {
                    return Ok(Verified::Server {
                        user: user.to_owned(),
                        credential,
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
            Ok((users, skip_name_resolve)) => {
                if table.error.take().is_some() {
                    tracing::info!("the server's accounts are readable again");
                }
                table.users = users;
                table.skip_name_resolve = skip_name_resolve;
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

    async fn load(&self) -> Result<(HashMap<String, Vec<ServerAccount>>, bool), String> {
        let opts = ConnectOptions::internal(self.connect_timeout);
        let mut b = Backend::connect(&self.monitor, &opts, self.stats.clone())
            .await
            .map_err(|e| e.to_string())?;
        // MariaDB keeps ACCOUNT LOCK and roles in mysql.global_priv; MySQL has no such
        // table and its mysql.user has account_locked: each gets the query it answers.
        let mut rows = b
            .simple(
                "SELECT u.User, u.Host, u.plugin, u.authentication_string, \
                 IFNULL(JSON_VALUE(g.Priv, '$.account_locked'), 0), @@skip_name_resolve \
                 FROM mysql.user u LEFT JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host \
                 WHERE u.is_role <> 'Y'",
            )
            .await;
        if matches!(&rows, Err(e) if !e.is_disconnect()) {
            rows = b
                .simple(
                    "SELECT User, Host, plugin, authentication_string, account_locked = 'Y', \
                     @@skip_name_resolve FROM mysql.user",
                )
                .await;
        }
        b.quit().await;
        self.stats
            .server_account_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut users: HashMap<String, Vec<ServerAccount>> = HashMap::new();
        let mut skip_name_resolve = false;
        for row in rows.map_err(|e| e.to_string())? {
            let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let yes = |v: String| matches!(v.as_str(), "1" | "Y" | "y" | "ON" | "true");
            skip_name_resolve = yes(col(5));
            users.entry(col(0)).or_default().push(ServerAccount {
                user: col(0),
                host: col(1),
                locked: yes(col(4)),
                plugin: col(2),
                auth: col(3),
            });
        }
        Ok((users, skip_name_resolve))
    }

    /// Checks the client's answer against the most specific row for `user` whose host
    /// matches `peer`, as the server picks the row it checks; `Ok` carries
    /// `SHA1(password)` (`None` for an account without one).
    /// The plugin of the row for `user` that admits `peer`, if there is one.
    fn plugin_of(&self, user: &str, peer: IpAddr) -> Option<String> {
        let table = self.users.read().unwrap();
        pick(&table.users, user, peer, !table.skip_name_resolve).map(|r| r.plugin.clone())
    }

    fn verify(
        &self,
        user: &str,
        plugin: &str,
        nonce: &[u8],
        auth: &[u8],
        peer: IpAddr,
    ) -> Result<(Option<Credential>, bool), String> {
        let table = self.users.read().unwrap();
        if let Some(e) = &table.error {
            if table.users.is_empty() {
                return Err(format!(": the server's accounts could not be read: {e}"));
            }
        }
        let Some(row) = pick(&table.users, user, peer, !table.skip_name_resolve) else {
            return Err(String::new());
        };
        let locked = row.locked;
        let row_plugin = if row.plugin.is_empty() {
            NATIVE
        } else {
            row.plugin.as_str()
        };
        if row_plugin != NATIVE && row_plugin != OLD {
            return Err(format!(
                ": the account uses {}, which the proxy cannot check; list it in the proxy's accounts",
                row.plugin
            ));
        }
        // The old plugin's answer ends with a NUL.
        let auth = auth.strip_suffix(&[0]).unwrap_or(auth);
        if row.auth.is_empty() {
            return if auth.is_empty() {
                Ok((None, locked))
            } else {
                Err(String::new())
            };
        }
        if row_plugin == OLD {
            if plugin != OLD {
                return Err(format!(": the account uses {OLD}"));
            }
            let hash = old_hash_of(&row.auth)
                .ok_or_else(|| ": the account has no usable password hash".to_owned())?;
            let expected = conn::old_scramble(nonce, hash);
            return if constant_time_eq(&expected, auth) {
                Ok((Some(Credential::Old(hash)), locked))
            } else {
                Err(String::new())
            };
        }
        if plugin != NATIVE {
            return Err(format!(": the account uses {NATIVE}"));
        }
        let stored = row
            .auth
            .strip_prefix('*')
            .and_then(hex20)
            .ok_or_else(|| ": the account has no usable password hash".to_owned())?;
        native_recover(nonce, auth, &stored)
            .map(|h1| (Some(Credential::Native(h1)), locked))
            .ok_or_else(String::new)
    }
}

/// The row the server checks for `user` at `peer`, as the server orders its accounts:
/// the most specific host that admits the client first, and for the same host the named
/// account before the anonymous one (`''@host`, which admits any user name).
fn pick<'a>(
    users: &'a HashMap<String, Vec<ServerAccount>>,
    user: &str,
    peer: IpAddr,
    names_resolved: bool,
) -> Option<&'a ServerAccount> {
    let named = users.get(user).into_iter().flatten();
    let anonymous = users.get("").into_iter().flatten();
    named
        .chain(anonymous)
        .filter(|r| host_matches(&r.host, peer, names_resolved))
        .max_by_key(|r| (host_specificity(&r.host), !r.user.is_empty()))
}

/// A `mysql_old_password` hash as stored: 16 hex digits, two 32-bit halves.
fn old_hash_of(s: &str) -> Option<[u32; 2]> {
    if s.len() != 16 {
        return None;
    }
    Some([
        u32::from_str_radix(s.get(..8)?, 16).ok()?,
        u32::from_str_radix(s.get(8..)?, 16).ok()?,
    ])
}

/// The credential a statement the session ran sets for its own account `user`, when it sets
/// one the proxy can log in with: `SET PASSWORD [FOR CURRENT_USER() | FOR user] =
/// PASSWORD('…')` (or `OLD_PASSWORD('…')`), `ALTER USER {CURRENT_USER() | user} IDENTIFIED BY
/// '…'`. After it, the session's fresh backends log in with the new password, as the
/// application would when it reconnects. `Some(None)`: the password was removed.
pub fn password_change(sql: &str, user: &str) -> Option<Option<Credential>> {
    // Almost every statement is neither SET nor ALTER: no tokenizing for those.
    let head = sql.trim_start().as_bytes();
    let starts =
        |word: &[u8]| head.len() > word.len() && head[..word.len()].eq_ignore_ascii_case(word);
    if !starts(b"set") && !starts(b"alter") {
        return None;
    }
    let mut t = Tokens::new(sql);
    let for_user = |t: &mut Tokens| -> Option<bool> {
        // CURRENT_USER, CURRENT_USER(), or 'user'@'host' / user@host / user
        let first = t.next()?;
        if first.eq_ignore_ascii_case("current_user") {
            if t.peek() == Some("(") {
                t.next();
                (t.next()? == ")").then_some(())?;
            }
            return Some(true);
        }
        let name = unquote(&first)?;
        if t.peek() == Some("@") {
            t.next();
            t.next()?;
        }
        Some(name == user)
    };
    let literal = |t: &mut Tokens| t.next().and_then(|s| unquote_string(&s));
    let first = t.next()?;
    if first.eq_ignore_ascii_case("set") {
        (t.next()?.eq_ignore_ascii_case("password")).then_some(())?;
        let mut mine = true;
        if t.peek().is_some_and(|w| w.eq_ignore_ascii_case("for")) {
            t.next();
            mine = for_user(&mut t)?;
        }
        (t.next()? == "=").then_some(())?;
        let func = t.next()?;
        let old = if func.eq_ignore_ascii_case("password") {
            false
        } else if func.eq_ignore_ascii_case("old_password") {
            true
        } else {
            return None; // a hash: the proxy cannot log in with it
        };
        (t.next()? == "(").then_some(())?;
        let password = literal(&mut t)?;
        (t.next()? == ")").then_some(())?;
        t.next().is_none().then_some(())?;
        return mine.then(|| credential_of(&password, old));
    }
    if first.eq_ignore_ascii_case("alter") {
        (t.next()?.eq_ignore_ascii_case("user")).then_some(())?;
        if t.peek().is_some_and(|w| w.eq_ignore_ascii_case("if")) {
            return None;
        }
        let mine = for_user(&mut t)?;
        (t.next()?.eq_ignore_ascii_case("identified")).then_some(())?;
        (t.next()?.eq_ignore_ascii_case("by")).then_some(())?;
        let password = literal(&mut t)?;
        // Anything else (a second user, account options) and the proxy does not guess.
        t.next().is_none().then_some(())?;
        return mine.then(|| credential_of(&password, false));
    }
    None
}

fn credential_of(password: &str, old: bool) -> Option<Credential> {
    if password.is_empty() {
        None
    } else if old {
        Some(Credential::Old(conn::old_hash(password.as_bytes())))
    } else {
        Some(Credential::Native(Sha1::digest(password.as_bytes()).into()))
    }
}

/// The words, punctuation and quoted strings of a statement (quotes kept), no comments.
struct Tokens {
    tokens: std::collections::VecDeque<String>,
}

impl Tokens {
    fn new(sql: &str) -> Tokens {
        let mut tokens = std::collections::VecDeque::new();
        let chars: Vec<char> = sql.trim().trim_end_matches(';').chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '\'' || c == '"' || c == '`' {
                let start = i;
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\\' && c != '`' {
                        i += 2;
                        continue;
                    }
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(chars.len());
                tokens.push_back(chars[start..i].iter().collect());
            } else if c.is_alphanumeric() || c == '_' || c == '$' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == '$'
                        || chars[i] == '.')
                {
                    i += 1;
                }
                tokens.push_back(chars[start..i].iter().collect());
            } else {
                tokens.push_back(c.to_string());
                i += 1;
            }
        }
        Tokens { tokens }
    }

    fn next(&mut self) -> Option<String> {
        self.tokens.pop_front()
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.front().map(String::as_str)
    }
}

/// A user name: bare, or quoted with ', " or `.
fn unquote(token: &str) -> Option<String> {
    match token.chars().next()? {
        '\'' | '"' | '`' => unquote_string(token),
        _ => Some(token.to_owned()),
    }
}

/// A quoted string's value (backslash escapes and doubled quotes resolved).
fn unquote_string(token: &str) -> Option<String> {
    let q = token.chars().next()?;
    if !matches!(q, '\'' | '"' | '`') || token.len() < 2 || !token.ends_with(q) {
        return None;
    }
    let inner: Vec<char> = token[1..token.len() - 1].chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c == '\\' && q != '`' && i + 1 < inner.len() {
            out.push(match inner[i + 1] {
                'n' => '\n',
                't' => '\t',
                '0' => '\0',
                'r' => '\r',
                other => other,
            });
            i += 2;
        } else if c == q && inner.get(i + 1) == Some(&q) {
            out.push(q);
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
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
/// the address, `net/mask`, `localhost` for loopback. When the server resolves names
/// (`skip_name_resolve` off, `names_resolved`), a loopback client is also `localhost` to
/// the patterns (`local%`, `local_ost`), as the server matches it. Other host names would
/// need name resolution, which the proxy does not do: they match nothing.
fn host_matches(pattern: &str, peer: IpAddr, names_resolved: bool) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let ip = peer_text(peer);
    let loopback = ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
    if pattern == "localhost" {
        return loopback;
    }
    if loopback && names_resolved && like(pattern.as_bytes(), b"localhost") {
        return true;
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
            credential: Some(Credential::Native(h1)),
            ..BackendTarget::from_url("mysql://u@h:1/").unwrap()
        };
        assert_eq!(
            target.auth_response(NATIVE, other).unwrap(),
            conn::scramble(NATIVE, other, "s3cret").unwrap()
        );
    }

    #[test]
    fn old_password_answers() {
        // From MariaDB's main.change_user: PASSWORD 'oldpw' is stored as 09301740536db389.
        assert_eq!(conn::old_hash(b"oldpw"), [0x0930_1740, 0x536d_b389]);
        assert_eq!(
            old_hash_of("09301740536db389"),
            Some([0x0930_1740, 0x536d_b389])
        );
        let nonce = b"abcdefghij0123456789";
        let answer = conn::scramble(OLD, nonce, "oldpw").unwrap();
        assert_eq!(answer.len(), 9, "8 bytes and a NUL, as libmariadb sends");
        let hash = conn::old_hash(b"oldpw");
        assert_eq!(&answer[..8], &conn::old_scramble(nonce, hash));
        assert_ne!(
            conn::old_scramble(nonce, hash),
            conn::old_scramble(b"ABCDEFGH", hash)
        );
        let target = BackendTarget {
            credential: Some(Credential::Old(hash)),
            ..BackendTarget::from_url("mysql://u@h:1/").unwrap()
        };
        assert_eq!(target.auth_response(OLD, nonce).unwrap(), answer);
    }

    #[test]
    fn password_changes_of_the_sessions_own_account() {
        let native = |pw: &str| Some(Some(Credential::Native(Sha1::digest(pw.as_bytes()).into())));
        assert_eq!(
            password_change("SET PASSWORD = PASSWORD('n3w')", "app"),
            native("n3w")
        );
        assert_eq!(
            password_change(
                "set password for current_user() = password(\"it's\");",
                "app"
            ),
            native("it's")
        );
        assert_eq!(
            password_change("SET PASSWORD FOR 'app'@'%' = PASSWORD('a''b\\\\c')", "app"),
            native("a'b\\c")
        );
        assert_eq!(
            password_change("ALTER USER CURRENT_USER IDENTIFIED BY 'x y'", "app"),
            native("x y")
        );
        assert_eq!(
            password_change("ALTER USER `app`@`localhost` IDENTIFIED BY 'z'", "app"),
            native("z")
        );
        assert_eq!(
            password_change("SET PASSWORD = OLD_PASSWORD('oldpw')", "app"),
            Some(Some(Credential::Old([0x0930_1740, 0x536d_b389])))
        );
        assert_eq!(
            password_change("SET PASSWORD = PASSWORD('')", "app"),
            Some(None)
        );
        // Another account, a hash, or options the proxy does not follow: not a change of
        // this session's credential.
        for sql in [
            "SET PASSWORD FOR 'other'@'%' = PASSWORD('x')",
            "ALTER USER other IDENTIFIED BY 'x'",
            "SET PASSWORD = '*0123456789ABCDEF0123456789ABCDEF01234567'",
            "ALTER USER app IDENTIFIED BY 'x' PASSWORD EXPIRE",
            "SELECT PASSWORD('x')",
        ] {
            assert_eq!(password_change(sql, "app"), None, "{sql}");
        }
    }

    #[test]
    fn host_patterns() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(host_matches("%", lo, false));
        assert!(host_matches("localhost", lo, false));
        assert!(host_matches("LOCALHOST", "::1".parse().unwrap(), false));
        assert!(!host_matches("localhost", mapped, false));
        assert!(host_matches("10.1.2.%", mapped, false));
        assert!(host_matches("10.1._.3", mapped, false));
        assert!(!host_matches("10.1.3.%", mapped, false));
        assert!(host_matches("10.1.0.0/255.255.0.0", mapped, false));
        assert!(!host_matches("10.2.0.0/255.255.0.0", mapped, false));
        assert!(!host_matches("db.example.com", mapped, false));
        // A loopback client is `localhost` to wildcard patterns when the server resolves
        // names, and only then.
        assert!(host_matches("local_ost", lo, true));
        assert!(!host_matches("local_ost", lo, false));
        assert!(!host_matches("local\\_ost", lo, true));
        let mut hosts = ["%", "10.1.%", "10.1.2.3", "10.%"];
        hosts.sort_by_key(|h| std::cmp::Reverse(host_specificity(h)));
        assert_eq!(hosts, ["10.1.2.3", "10.1.%", "10.%", "%"]);
    }
}
