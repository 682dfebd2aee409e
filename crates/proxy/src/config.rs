//! The proxy's configuration: where it listens, which server it fronts, who may log in, and
//! its limits; read from TOML or built in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ProxyError;

/// The server the proxy logs in to, and the account it logs in with.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Never printed: [`BackendTarget`]'s `Debug` masks it.
    pub password: String,
    /// The database a session starts in when its client names none.
    pub database: Option<String>,
    /// In place of the password: what a server account's client proved it knows (see
    /// [`crate::accounts`]). Never printed.
    pub credential: Option<Credential>,
}

/// What answers a server's nonce for a server account, without its password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `SHA1(password)`, recovered from a `mysql_native_password` answer.
    Native([u8; 20]),
    /// The `mysql_old_password` hash, as `mysql.user` stores it.
    Old([u32; 2]),
}

/// Masked: which kind only, never the bytes.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Native(_) => f.write_str("Native(****)"),
            Credential::Old(_) => f.write_str("Old(****)"),
        }
    }
}

impl std::fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"****")
            .field("database", &self.database)
            .field("credential", &self.credential.map(|_| "****"))
            .finish()
    }
}

impl BackendTarget {
    /// Parses `mysql://user:password@host:port/db` (query parameters are ignored).
    pub fn from_url(url: &str) -> Result<BackendTarget, ProxyError> {
        let bad = |why: &str| ProxyError::Config(format!("backend URL: {why}"));
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or_else(|| bad("must start with mysql://"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (percent_decode(u), percent_decode(p)),
                None => (percent_decode(a), String::new()),
            },
            None => ("root".to_owned(), String::new()),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, d)) => (h, (!d.is_empty()).then(|| percent_decode(d))),
            None => (hostpart, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            None => (hostport.to_owned(), 3306),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(BackendTarget {
            host,
            port,
            user,
            password,
            database: db,
            credential: None,
        })
    }

    /// The login's answer to the server's `nonce` with `plugin`: from the password, or
    /// from [`BackendTarget::credential`].
    pub fn auth_response(&self, plugin: &str, nonce: &[u8]) -> Result<Vec<u8>, ProxyError> {
        use crate::backend::conn::{native_scramble, old_scramble};
        match (self.credential, plugin) {
            (None, _) => crate::backend::conn::scramble(plugin, nonce, &self.password),
            (Some(Credential::Native(h1)), "mysql_native_password" | "") => {
                Ok(native_scramble(nonce, &h1))
            }
            (Some(Credential::Old(hash)), "mysql_old_password") => {
                let mut answer = old_scramble(nonce, hash).to_vec();
                answer.push(0);
                Ok(answer)
            }
            // The greeting names the server's default plugin. The server asks for the old
            // plugin's answer only after one of the new length (20 bytes): any will do.
            (Some(Credential::Old(_)), "mysql_native_password" | "") => Ok(vec![0; 20]),
            (Some(_), other) => Err(ProxyError::Protocol(format!(
                "the server asks for {other} for '{}', but this account logged in to the proxy with another plugin",
                self.user
            ))),
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One member of the cluster the proxy fronts: a server's address. The account, password
/// and database are the backend URL's (see [`ProxyConfig::servers`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    /// Parses `host:port`, or `host` (port 3306); an IPv6 address goes in brackets
    /// (`[::1]:3306`).
    pub fn parse(text: &str) -> Result<ServerAddr, ProxyError> {
        let bad = |why: &str| ProxyError::Config(format!("servers: {text:?}: {why}"));
        let text = text.trim();
        if text.contains("://") || text.contains('@') {
            return Err(bad(
                "give host:port only; the account, password and database are the backend URL's",
            ));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (text.trim_start_matches('[').trim_end_matches(']'), 3306),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(ServerAddr {
            host: host.to_owned(),
            port,
        })
    }

    /// The backend URL's account on this server.
    pub fn target(&self, backend: &BackendTarget) -> BackendTarget {
        BackendTarget {
            host: self.host.clone(),
            port: self.port,
            ..backend.clone()
        }
    }

    /// Whether `target` points at this server.
    pub fn is(&self, target: &BackendTarget) -> bool {
        self.port == target.port && self.host == target.host
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the monitor tells the writer among [`ProxyConfig::servers`] (see [`crate::monitor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterKind {
    /// Galera when a server says `wsrep_on = ON`, else replication.
    #[default]
    Auto,
    /// Primary and replicas: the writer is the one reachable server with `read_only = OFF`
    /// that replicates from nobody.
    Replication,
    /// Galera: the writer is one node that is Synced, ready and in the primary component,
    /// kept while it stays so.
    Galera,
}

impl ClusterKind {
    /// `auto`, `replication` or `galera`.
    pub fn parse(text: &str) -> Result<ClusterKind, ProxyError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ClusterKind::Auto),
            "replication" => Ok(ClusterKind::Replication),
            "galera" => Ok(ClusterKind::Galera),
            other => Err(ProxyError::Config(format!(
                "cluster: {other:?} is not one of auto, replication, galera"
            ))),
        }
    }

    /// The name [`ClusterKind::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Auto => "auto",
            ClusterKind::Replication => "replication",
            ClusterKind::Galera => "galera",
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One account clients may log in to the proxy with.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub user: String,
    /// Never printed: [`Account`]'s `Debug` masks it.
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("password", &"****")
            .finish()
    }
}

/// Everything the proxy needs to run. Build with [`ProxyConfig::new`] and adjust the public
/// fields; every default is commented where it is set.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The server behind the proxy, and the account sessions of configured accounts (and
    /// the proxy itself) log in with.
    pub backend: BackendTarget,
    /// The members of the cluster behind the proxy, when there is more than one server:
    /// new backends go to the one the monitor names the writer ([`crate::monitor`]), and
    /// sessions follow it through switchovers and failovers. Each is `host:port` and uses
    /// the backend URL's account and database; the backend URL's own address is a member
    /// too (put first when this list lacks it). Empty (the default): the backend alone,
    /// with no monitor.
    pub servers: Vec<ServerAddr>,
    /// How the monitor tells the writer of [`ProxyConfig::servers`].
    pub cluster: ClusterKind,
    /// How long a command waits while the cluster has no writer (a switchover between the
    /// old primary turning read-only and the new one writable, a failover until the
    /// replica is promoted), before it fails with an error naming each server's state.
    pub switchover_wait: Duration,
    /// How often the monitor polls each member of [`ProxyConfig::servers`].
    pub monitor_interval: Duration,
    /// Send reads to replicas (with [`ProxyConfig::multiplex`], in front of a replicated
    /// cluster; off by default). The consistency rule: a `SELECT` (a query, or an execute
    /// without a cursor) outside a transaction, by a session with nothing pinned, that
    /// reads the same on any server, runs on a replica that is up,
    /// replicating, at most [`ProxyConfig::max_replica_lag`] behind, and has applied the
    /// last transaction this session committed (`MASTER_GTID_WAIT` of the session's
    /// `last_gtid`, without waiting); otherwise on the writer. A session so reads its own
    /// writes; other sessions' writes may show up to `max_replica_lag` late, and two
    /// reads of a session may see two replicas. See [`crate::router::replica_for_read`].
    pub replica_reads: bool,
    /// How far behind (`Seconds_Behind_Master`) a replica may be and still serve reads.
    pub max_replica_lag: Duration,
    /// Who may log in to the proxy. Empty means "the backend URL's own account", so that
    /// `--listen` and `--backend` are enough to start; never an open relay.
    pub accounts: Vec<Account>,
    /// Where `/metrics` (Prometheus text) and `/health` are served; `None` serves nothing.
    pub metrics_listen: Option<SocketAddr>,
    /// Logged-in client sessions at most; a connection beyond this is answered with ERR
    /// 1040 and closed. Connections still logging in do not count (see
    /// [`ProxyConfig::max_pending_logins`]).
    pub max_clients: usize,
    /// Connections that have not finished logging in, at most. When a new one arrives at
    /// the bound, the oldest pending one is closed (see [`crate::gate`]): silent or stalled
    /// connections cannot lock real clients out.
    pub max_pending_logins: usize,
    /// Connections from one client address that have not finished logging in, at most;
    /// beyond, that address's oldest pending login is closed.
    pub max_pending_logins_per_address: usize,
    /// From accept to the end of authentication (TLS handshake included), at most.
    pub login_timeout: Duration,
    /// Consecutive failed logins (per client address and user) after which each new
    /// attempt waits (500 ms, doubling, at most [`ProxyConfig::failed_login_max_delay`]);
    /// 0 turns the delay off.
    pub failed_login_threshold: u32,
    /// The longest delay for repeated failed logins.
    pub failed_login_max_delay: Duration,
    /// A client session that sends nothing for this long gets ERR 4031 (as MySQL's
    /// `wait_timeout` disconnect says it) and is closed. `None` (the default): never.
    pub client_idle_timeout: Option<Duration>,
    /// Backend connections the proxy holds at most (one per active session).
    pub max_backends: usize,
    /// How long a command waits for an unreachable (restarting) server before it fails.
    pub server_wait: Duration,
    /// How long a session waits for a backend connection when all `max_backends` are in
    /// use, before it gets ERR 1040 ("Too many connections").
    pub backend_slot_wait: Duration,
    /// Bound on one TCP connect plus login to the server.
    pub connect_timeout: Duration,
    /// An idle session's backend is pinged this often, or, when the session holds no
    /// state that a fresh backend could not get back, released. `None`: derived from the
    /// server's `wait_timeout` (half of it, at most 60 s).
    pub keepalive_interval: Option<Duration>,
    /// A reply silent this long makes the proxy ask the server, on a second connection,
    /// whether the statement still runs or its reply is lost in the network (see
    /// `backend::stall`); `None` waits for as long as the connection stays open.
    pub stall_check: Option<Duration>,
    /// Replies up to this size are held until complete, so that a backend dying mid-reply
    /// can still be replayed without the client noticing; larger ones stream.
    pub reply_buffer: usize,
    /// Attempts for one command, the first included.
    pub max_attempts: u32,
    /// A read-only statement whose backend was killed (closed by the server with no word,
    /// the server not restarted) after it had run this long is not run again: a KILL of
    /// a long statement is aimed at it (an operator or a query killer stopping a runaway
    /// query), one of a short statement is collateral of killing the connection.
    pub killed_read_replay_limit: Duration,
    /// Run a transaction whose backend was lost before COMMIT again on a fresh backend,
    /// checking every reply against what the client got (see
    /// `frontend::txlog` for the rules).
    pub transaction_replay: bool,
    /// Bytes of statements a session's open transaction may hold for a replay; a larger
    /// transaction is not replayed.
    pub transaction_replay_budget: usize,
    /// Before forwarding the COMMIT of a transaction that wrote, add a row with a unique
    /// token to `<commit_marks_schema>.commit_marks` in the same transaction, so that a
    /// COMMIT whose connection is lost is resolved (the token committed with it, or not)
    /// instead of "outcome unknown". Off by itself where the table cannot be created or
    /// the session's account cannot write it.
    pub commit_marks: bool,
    /// The schema of the `commit_marks` table (created when first needed, with the
    /// backend URL's account).
    pub commit_marks_schema: String,
    /// Run each autocommit write (`INSERT`, `UPDATE`, `DELETE`, `REPLACE`) as a one-statement
    /// transaction with a commit mark, its reply held until it committed: a write whose
    /// connection is lost is then resolved (committed: the client gets its reply; not:
    /// it runs again) instead of "outcome unknown". Costs three round trips to the server
    /// per write (BEGIN, the mark, COMMIT); off by default.
    pub autocommit_write_marks: bool,
    /// Share server connections between client sessions: a session holds one only while
    /// it runs a statement, a transaction, or holds state that lives in that connection
    /// (temporary tables, locks, user variables…; each such pin is counted and logged), so
    /// idle clients cost no server connection (see `backend::pool`). Off by default.
    pub multiplex: bool,
    /// Threads that run client sessions, each its own single-threaded runtime; a session
    /// (its client and its own server connection) stays on one thread for its whole
    /// life, as an event-loop proxy's does (HAProxy's `nbthread`), so that relaying takes
    /// no wake-up across threads. Default: one per core ([`crate::default_session_threads`]);
    /// 0: sessions run on the runtime that called [`crate::Proxy::start`]. Takes effect at
    /// start only.
    pub session_threads: usize,
    /// How long a shared server connection may wait unused before it is closed (at most
    /// half the server's `wait_timeout`).
    pub pool_idle_limit: Duration,
    /// How long a graceful shutdown waits for sessions to finish their command.
    pub shutdown_grace: Duration,
    /// The certificate chain (PEM) the proxy shows clients that ask for TLS. With
    /// [`ProxyConfig::tls_key`], the greeting offers TLS; without, clients connect in
    /// plain text. Only the client side: the proxy talks to the server in plain text
    /// (a real deployment keeps the proxy next to the server, or on a trusted network).
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of [`ProxyConfig::tls_cert`].
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that log in without TLS (ERR 3159). Needs a certificate.
    pub require_tls: bool,
    /// Let every account of the server log in with its own password (read from
    /// `mysql.user` with the backend URL's account; `mysql_native_password` accounts), as
    /// well as [`ProxyConfig::accounts`]. Such a session logs in to the server as its own
    /// account. See [`crate::accounts`].
    pub server_accounts: bool,
}

impl ProxyConfig {
    /// A configuration with the defaults for everything but the addresses.
    pub fn new(listen: SocketAddr, backend: BackendTarget) -> ProxyConfig {
        ProxyConfig {
            listen,
            backend,
            servers: Vec::new(),
            cluster: ClusterKind::Auto,
            // A planned switchover takes seconds (the replica catches up, is promoted); a
            // failover as long as the tool or person that promotes takes. Thirty seconds,
            // as server_wait, before a client is told there is no writer.
            switchover_wait: Duration::from_secs(30),
            // A poll is three small queries per server; twice a second keeps a switchover's
            // extra wait under a second, at a cost no server notices.
            monitor_interval: Duration::from_millis(500),
            replica_reads: false,
            // Ten seconds: a replica an application reads from is one that keeps up; the
            // monitor's own reading of the lag is a poll old at most.
            max_replica_lag: Duration::from_secs(10),
            accounts: Vec::new(),
            metrics_listen: None,
            // Plenty for an application fleet on one host; each costs one task and buffers.
            max_clients: 1000,
            session_threads: crate::default_session_threads(),
            // A login takes milliseconds and a pending one costs a task and a few KiB; a
            // thousand covers any burst of reconnecting pools, and past it the oldest
            // pending login makes room for a newer one.
            max_pending_logins: 1024,
            // A whole pool starting at once from one host fits; a flood from one address
            // churns through its own places.
            max_pending_logins_per_address: 256,
            // As the login part of MariaDB's connect_timeout (10 s).
            login_timeout: Duration::from_secs(10),
            // MySQL's connection_control defaults: from the third failure on.
            failed_login_threshold: 3,
            failed_login_max_delay: Duration::from_secs(10),
            // Off, as an idle application connection is normal; the server's wait_timeout
            // does not apply to the client side of the proxy.
            client_idle_timeout: None,
            // Below MariaDB's default max_connections (151) so the proxy leaves room for
            // administrators.
            max_backends: 140,
            // A MariaDB restart on a small machine takes a few seconds; a crash recovery
            // longer. Thirty seconds covers both without hanging clients for ever.
            server_wait: Duration::from_secs(30),
            // Idle sessions give their backend back within half a wait_timeout, so a short
            // wait often finds one; longer would look like a hang to the client.
            backend_slot_wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: None,
            // A point select answers in microseconds, a slow report in minutes: after 5 s
            // of silence one small query on a second connection costs nothing next to
            // the statement, and a blackholed connection is found within about 6 s.
            stall_check: Some(Duration::from_secs(5)),
            // Most replies (point selects, OKs) are far smaller; 1 MiB keeps memory bounded
            // at max_clients × 1 MiB in the worst case.
            reply_buffer: 1 << 20,
            max_attempts: 3,
            // Query killers (pt-kill --busy-time, an operator's KILL of a runaway query)
            // act on statements that ran for seconds; the kills of connections that hit a
            // statement by chance land on ones of milliseconds.
            killed_read_replay_limit: Duration::from_secs(1),
            transaction_replay: true,
            // Application transactions are a few statements of a few hundred bytes; 1 MiB
            // covers batch writers too, at most max_clients × 1 MiB in all.
            transaction_replay_budget: 1 << 20,
            // One small insert per write transaction buys a COMMIT that is never ambiguous.
            commit_marks: true,
            commit_marks_schema: "goneaway_proxy".into(),
            // Off: it slows every autocommit write (see BENCHMARKS.md); for applications that
            // cannot check a write whose outcome is unknown.
            autocommit_write_marks: false,
            // Off: a session's own connection is what a direct client has, to the last
            // observable detail (CONNECTION_ID(), the server's process list and session
            // counts). Sharing is the choice of who runs more clients than the server takes.
            multiplex: false,
            pool_idle_limit: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            // TLS is opt-in: a certificate is a deployment decision.
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            // As directly: whoever has an account on the server can use it.
            server_accounts: true,
        }
    }

    /// The accounts clients are checked against (see [`ProxyConfig::accounts`]).
    pub fn effective_accounts(&self) -> Vec<Account> {
        if self.accounts.is_empty() {
            vec![Account {
                user: self.backend.user.clone(),
                password: self.backend.password.clone(),
            }]
        } else {
            self.accounts.clone()
        }
    }

    /// The servers the proxy routes between: [`ProxyConfig::servers`] with the backend
    /// URL's address first when the list lacks it; the backend alone when it is empty.
    pub fn members(&self) -> Vec<ServerAddr> {
        let own = ServerAddr {
            host: self.backend.host.clone(),
            port: self.backend.port,
        };
        let mut out = Vec::with_capacity(self.servers.len() + 1);
        if !self.servers.contains(&own) {
            out.push(own);
        }
        for s in &self.servers {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// Whether the proxy fronts more than one server (and runs the monitor).
    pub fn is_cluster(&self) -> bool {
        self.members().len() > 1
    }

    /// Reads a TOML file's contents:
    ///
    /// ```toml
    /// listen = "127.0.0.1:6033"
    /// backend = "mysql://app:secret@127.0.0.1:3306/app"
    /// metrics_listen = "127.0.0.1:9633"
    /// server_wait_secs = 30
    /// # a cluster: the writer among these (the backend's account on each)
    /// servers = ["127.0.0.1:3306", "127.0.0.1:3307"]
    /// cluster = "replication"
    /// # TLS towards clients (optional; require_tls refuses plain-text logins)
    /// tls_cert = "/etc/goneaway/proxy.crt"
    /// tls_key = "/etc/goneaway/proxy.key"
    /// require_tls = false
    /// # the server's own accounts may log in too (default true)
    /// server_accounts = true
    /// [[accounts]]
    /// user = "app"
    /// password = "secret"
    /// ```
    pub fn from_toml(text: &str) -> Result<ProxyConfig, ProxyError> {
        ProxyConfig::from_toml_or(text, None)
    }

    /// [`ProxyConfig::from_toml`], with `backend` when the file names none (the
    /// `--backend` flag or `MYSQL_URL` of the command line).
    pub fn from_toml_or(
        text: &str,
        backend: Option<BackendTarget>,
    ) -> Result<ProxyConfig, ProxyError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ProxyError::Config(e.to_string()))?;
        let listen = file.listen.as_deref().unwrap_or("127.0.0.1:6033");
        let listen = listen
            .parse()
            .map_err(|_| ProxyError::Config(format!("listen: not an address: {listen}")))?;
        let backend = match (file.backend.as_deref(), backend) {
            (Some(url), _) => BackendTarget::from_url(url)?,
            (None, Some(b)) => b,
            (None, None) => {
                return Err(ProxyError::Config(
                    "backend is required (in the file, or --backend / MYSQL_URL)".into(),
                ))
            }
        };
        let mut c = ProxyConfig::new(listen, backend);
        c.accounts = file.accounts;
        c.servers = file
            .servers
            .iter()
            .map(|s| ServerAddr::parse(s))
            .collect::<Result<_, _>>()?;
        if let Some(kind) = file.cluster.as_deref() {
            c.cluster = ClusterKind::parse(kind)?;
        }
        if let Some(m) = file.metrics_listen {
            c.metrics_listen =
                Some(m.parse().map_err(|_| {
                    ProxyError::Config(format!("metrics_listen: not an address: {m}"))
                })?);
        }
        let secs = |v: f64| Duration::from_secs_f64(v.max(0.0));
        if let Some(v) = file.max_clients {
            c.max_clients = v;
        }
        if let Some(v) = file.threads {
            c.session_threads = v.max(1);
        }
        if let Some(v) = file.max_backends {
            c.max_backends = v;
        }
        if let Some(v) = file.max_pending_logins {
            c.max_pending_logins = v.max(1);
        }
        if let Some(v) = file.max_pending_logins_per_address {
            c.max_pending_logins_per_address = v.max(1);
        }
        if let Some(v) = file.login_timeout_secs {
            c.login_timeout = secs(v);
        }
        if let Some(v) = file.failed_login_threshold {
            c.failed_login_threshold = v;
        }
        if let Some(v) = file.failed_login_max_delay_secs {
            c.failed_login_max_delay = secs(v);
        }
        if let Some(v) = file.client_idle_timeout_secs {
            c.client_idle_timeout = (v > 0.0).then(|| secs(v));
        }
        if let Some(v) = file.server_wait_secs {
            c.server_wait = secs(v);
        }
        if let Some(v) = file.switchover_wait_secs {
            c.switchover_wait = secs(v);
        }
        if let Some(v) = file.replica_reads {
            c.replica_reads = v;
        }
        if let Some(v) = file.max_replica_lag_secs {
            c.max_replica_lag = secs(v);
        }
        if let Some(v) = file.monitor_interval_secs {
            // A poll every few milliseconds would be load, not vigilance.
            c.monitor_interval = secs(v).max(Duration::from_millis(50));
        }
        if let Some(v) = file.connect_timeout_secs {
            c.connect_timeout = secs(v);
        }
        if let Some(v) = file.keepalive_interval_secs {
            c.keepalive_interval = Some(secs(v));
        }
        if let Some(v) = file.stall_check_secs {
            c.stall_check = (v > 0.0).then(|| secs(v));
        }
        if let Some(v) = file.reply_buffer {
            c.reply_buffer = v;
        }
        if let Some(v) = file.max_attempts {
            c.max_attempts = v.max(1);
        }
        if let Some(v) = file.killed_read_replay_limit_secs {
            c.killed_read_replay_limit = secs(v);
        }
        if let Some(v) = file.transaction_replay {
            c.transaction_replay = v;
        }
        if let Some(v) = file.transaction_replay_budget {
            c.transaction_replay_budget = v;
        }
        if let Some(v) = file.commit_marks {
            c.commit_marks = v;
        }
        if let Some(v) = file.commit_marks_schema {
            c.commit_marks_schema = v;
        }
        if let Some(v) = file.autocommit_write_marks {
            c.autocommit_write_marks = v;
        }
        if let Some(v) = file.multiplex {
            c.multiplex = v;
        }
        if let Some(v) = file.pool_idle_limit_secs {
            c.pool_idle_limit = secs(v);
        }
        if let Some(v) = file.shutdown_grace_secs {
            c.shutdown_grace = secs(v);
        }
        c.tls_cert = file.tls_cert;
        c.tls_key = file.tls_key;
        c.require_tls = file.require_tls.unwrap_or(false);
        if let Some(v) = file.server_accounts {
            c.server_accounts = v;
        }
        c.check()?;
        Ok(c)
    }

    /// Checks that the settings go together: [`ProxyConfig::check_tls`], and reads on
    /// replicas only with shared connections (a read borrows a replica's connection for
    /// one statement).
    pub fn check(&self) -> Result<(), ProxyError> {
        self.check_tls()?;
        if self.replica_reads && !self.multiplex {
            return Err(ProxyError::Config(
                "replica_reads needs multiplex = true (a read borrows a shared connection to a replica for one statement)".into(),
            ));
        }
        Ok(())
    }

    /// Checks that the TLS settings go together: a certificate and a key, or neither;
    /// `require_tls` only with both.
    pub fn check_tls(&self) -> Result<(), ProxyError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err(ProxyError::Config(
                "tls_cert is set but tls_key is not".into(),
            )),
            (None, Some(_)) => Err(ProxyError::Config(
                "tls_key is set but tls_cert is not".into(),
            )),
            (None, None) if self.require_tls => Err(ProxyError::Config(
                "require_tls needs tls_cert and tls_key".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    backend: Option<String>,
    #[serde(default)]
    servers: Vec<String>,
    cluster: Option<String>,
    switchover_wait_secs: Option<f64>,
    monitor_interval_secs: Option<f64>,
    replica_reads: Option<bool>,
    max_replica_lag_secs: Option<f64>,
    #[serde(default)]
    accounts: Vec<Account>,
    metrics_listen: Option<String>,
    max_clients: Option<usize>,
    threads: Option<usize>,
    max_backends: Option<usize>,
    max_pending_logins: Option<usize>,
    max_pending_logins_per_address: Option<usize>,
    login_timeout_secs: Option<f64>,
    failed_login_threshold: Option<u32>,
    failed_login_max_delay_secs: Option<f64>,
    client_idle_timeout_secs: Option<f64>,
    server_wait_secs: Option<f64>,
    connect_timeout_secs: Option<f64>,
    keepalive_interval_secs: Option<f64>,
    stall_check_secs: Option<f64>,
    reply_buffer: Option<usize>,
    max_attempts: Option<u32>,
    killed_read_replay_limit_secs: Option<f64>,
    transaction_replay: Option<bool>,
    transaction_replay_budget: Option<usize>,
    commit_marks: Option<bool>,
    commit_marks_schema: Option<String>,
    autocommit_write_marks: Option<bool>,
    multiplex: Option<bool>,
    pool_idle_limit_secs: Option<f64>,
    shutdown_grace_secs: Option<f64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    require_tls: Option<bool>,
    server_accounts: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let t =
            BackendTarget::from_url("mysql://app:p%40ss@127.0.0.1:3307/shop?prefer_socket=false")
                .unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.user.as_str(),
                t.password.as_str()
            ),
            ("127.0.0.1", 3307, "app", "p@ss")
        );
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert!(!format!("{t:?}").contains("p@ss"));
    }

    #[test]
    fn toml_file() {
        let c = ProxyConfig::from_toml(
            "listen = \"127.0.0.1:7000\"\nbackend = \"mysql://a:b@h:1/\"\nserver_wait_secs = 2.5\n[[accounts]]\nuser = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.server_wait, Duration::from_millis(2500));
        assert_eq!(c.effective_accounts()[0].user, "u");
        assert!(c.tls_cert.is_none() && !c.require_tls);
    }

    #[test]
    fn replica_reads_need_shared_connections() {
        let base = "backend = \"mysql://a:b@h1:3306/db\"\nservers = [\"h2:3307\"]\nreplica_reads = true\nmax_replica_lag_secs = 3\n";
        let e = ProxyConfig::from_toml(base).unwrap_err();
        assert!(e.to_string().contains("needs multiplex"), "{e}");
        let c = ProxyConfig::from_toml(&format!("{base}multiplex = true\n")).unwrap();
        assert!(c.replica_reads);
        assert_eq!(c.max_replica_lag, Duration::from_secs(3));
    }

    #[test]
    fn servers_share_the_backend_account() {
        let c = ProxyConfig::from_toml(
            "backend = \"mysql://a:b@h1:3306/db\"\nservers = [\"h2:3307\", \"h1\", \"[::1]:3308\"]\ncluster = \"galera\"\nswitchover_wait_secs = 5\nmonitor_interval_secs = 0.25\n",
        )
        .unwrap();
        let members: Vec<String> = c.members().iter().map(ToString::to_string).collect();
        assert_eq!(members, ["h2:3307", "h1:3306", "[::1]:3308"]);
        assert!(c.is_cluster());
        assert_eq!(c.cluster, ClusterKind::Galera);
        assert_eq!(c.switchover_wait, Duration::from_secs(5));
        assert_eq!(c.monitor_interval, Duration::from_millis(250));
        let t = c.members()[0].target(&c.backend);
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("h2", 3307, "a")
        );
        // The backend alone: no cluster.
        let single = ProxyConfig::from_toml("backend = \"mysql://a:b@h1:3306/\"\n").unwrap();
        assert_eq!(single.members().len(), 1);
        assert!(!single.is_cluster());
        for bad in [
            "servers = [\"mysql://a:b@h2/\"]",
            "servers = [\"h2:x\"]",
            "cluster = \"mesh\"",
        ] {
            let e = ProxyConfig::from_toml(&format!("backend = \"mysql://a:b@h1/\"\n{bad}\n"))
                .unwrap_err();
            assert!(
                e.to_string().contains("servers") || e.to_string().contains("cluster"),
                "{e}"
            );
        }
    }

    #[test]
    fn tls_settings_must_go_together() {
        let base = "backend = \"mysql://a:b@h:1/\"\n";
        let c = ProxyConfig::from_toml(&format!(
            "{base}tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nrequire_tls = true\n"
        ))
        .unwrap();
        assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("/k.pem")));
        assert!(c.require_tls);
        for bad in ["tls_cert = \"/c.pem\"\n", "require_tls = true\n"] {
            let e = ProxyConfig::from_toml(&format!("{base}{bad}")).unwrap_err();
            assert!(e.to_string().contains("tls"), "{e}");
        }
    }
}
