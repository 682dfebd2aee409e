//! One connection to the server: login as a client, session tracking, internal statements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Framed;

use goneaway_core::codes::ER_MUST_CHANGE_PASSWORD;

use crate::backend::reply::{Expect, ReplyTracker, Step};
use crate::backend::stall::StallWatch;
use crate::config::BackendTarget;
use crate::net::packet::{self, caps, com, ErrInfo, Greeting, HandshakeResponse, Reader};
use crate::net::{Packet, PacketCodec, StateChange};
use crate::stats::Stats;
use crate::ProxyError;

/// What a session asks of its backend connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The client's capabilities, so that replies have the shape the client expects.
    pub client_capabilities: u32,
    /// The client's MariaDB extended capabilities (forwarded where the proxy supports them).
    pub client_mariadb_capabilities: u32,
    /// The client's character set id.
    pub charset: u8,
    /// The database to start in.
    pub database: Option<String>,
    /// Bound on connect plus login plus setup.
    pub timeout: Duration,
    /// The server's limits the session already knows (`wait_timeout`, the packet limit),
    /// when they need not be read again: a `COM_CHANGE_USER` keeps them, as the server's
    /// own change of user does, and leaves the server's Com_select alone (MariaDB's
    /// main.change_user checks that).
    pub known_limits: Option<(Duration, usize)>,
    /// Read what the server's `init_connect` set on the connection at login (see
    /// [`Backend::login_state`]): for connections that are reset for other sessions.
    pub login_state: bool,
}

impl ConnectOptions {
    /// The proxy's own connections (the server probe, reading accounts, commit marks):
    /// the internal capabilities, no database, no client behind them.
    pub fn internal(timeout: Duration) -> ConnectOptions {
        ConnectOptions {
            client_capabilities: caps::INTERNAL,
            client_mariadb_capabilities: 0,
            charset: crate::net::packet::DEFAULT_CHARSET,
            database: None,
            timeout,
            known_limits: None,
            login_state: false,
        }
    }
}

/// What happened to an idle backend connection.
#[derive(Debug)]
pub enum IdleEvent {
    /// The server sent an unsolicited packet (an ERR such as 4031 or 1927) — it is closing.
    Packet(Packet),
    /// The server closed the connection.
    Eof,
    /// The connection failed.
    Error(std::io::Error),
}

/// A logged-in connection to the server, with session tracking on.
#[derive(Debug)]
pub struct Backend {
    framed: Framed<TcpStream, PacketCodec>,
    /// The session variables the server's `init_connect` left other than their global
    /// values when this connection logged in (lower-case names; read only with
    /// [`ConnectOptions::login_state`] and a non-empty `init_connect`). A
    /// `COM_RESET_CONNECTION` sets variables back to the global values without running
    /// `init_connect` again: [`Backend::reset_connection`] sets these back, so that a
    /// reset connection is as it was logged in, as a direct client's connection is.
    pub login_state: std::collections::BTreeMap<String, String>,
    /// A fingerprint of the account's privileges when this connection logged in (its
    /// `SHOW GRANTS`; read only with [`ConnectOptions::login_state`], 0 otherwise). The
    /// server applies a change of global or database privileges, or of the password, to
    /// connections that log in after it, never to those already in: a shared connection is
    /// handed only to sessions that logged in under the same privileges (see
    /// [`crate::backend::pool::PoolKey::grants`]).
    pub grants: u64,
    /// The server's thread id for this connection (what `KILL` takes).
    pub connection_id: u32,
    /// Capabilities in effect on this connection.
    pub capabilities: u32,
    /// The server's greeting version string.
    pub server_version: String,
    /// The server's capabilities, from the greeting.
    pub server_capabilities: u32,
    /// The server's MariaDB extended capabilities, from the greeting (0 for MySQL).
    pub server_mariadb_capabilities: u32,
    /// The session's `wait_timeout` as the server reported it at login.
    pub wait_timeout: Duration,
    /// The size from which the server refuses a command packet with 1153 (and closes the
    /// connection): the session's `max_allowed_packet` or `net_buffer_length`, whichever
    /// is larger, as the server's `my_net_init` sets `max_packet_size`; a packet of exactly
    /// this size is already refused (measured on MariaDB 10.11).
    pub packet_limit: usize,
    /// When the server started (Unix seconds: its clock minus its `Uptime`), read at
    /// login. A later backend with a later start proves the server restarted in between;
    /// the same start proves it did not.
    pub server_started: Option<i64>,
    /// When the connection was opened.
    pub opened: Instant,
    /// The thread that opened it: its socket wakes that thread's runtime (see
    /// `ProxyConfig::session_threads`), so a session on the same thread uses it without
    /// a wake-up across threads.
    pub home: std::thread::ThreadId,
    /// The same, on the proxy's clock (seconds since the epoch), to compare with the
    /// server's start ([`Backend::server_started`]).
    pub opened_unix: i64,
    /// When the last command finished: the server's idle clock starts here.
    pub last_used: Instant,
    stats: Arc<Stats>,
    /// Counts against the proxy's backend limit while the connection lives.
    /// The account's password expired and the server let it in in sandbox mode: it refuses
    /// everything but `SET PASSWORD`/`ALTER USER` with 1820, the proxy's own setup
    /// included, which [`Backend::leave_sandbox`] retries once the client changed it.
    pub sandboxed: bool,
    /// Set by [`Backend::watch_stalls`]: a silent reply is checked on a second connection.
    stall: Option<StallWatch>,
    /// When the last request went out (what a silent reply is measured from).
    sent_at: Instant,
    /// Statements prepared on this connection for one session only (and not closed)
    /// since it opened or was reset: a shared connection is reset before they pile up.
    pub prepared: usize,
    /// Statements prepared on this connection for every session that uses it, by text
    /// (with `multiplex`; see [`crate::backend::statements`]).
    pub statements: super::StatementCache,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stats
            .backends
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> ProxyError + '_ {
    move |e| ProxyError::io(context, e)
}

fn eof(context: &str) -> ProxyError {
    ProxyError::io(
        context,
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ),
    )
}

/// The next packet from the server, or why there is none. Cancel-safe: a partial packet
/// stays buffered in `framed`.
pub(super) async fn read_packet(
    framed: &mut Framed<TcpStream, PacketCodec>,
) -> Result<Packet, ProxyError> {
    match framed.next().await {
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => Err(ProxyError::io("reading from the server", e)),
        None => Err(eof("reading from the server")),
    }
}

/// The session variables a fresh connection gets so that the proxy can follow the state
/// the client sets.
const TRACKING_SETUP: &str = "SET SESSION session_track_system_variables='*', session_track_schema=ON, session_track_state_change=ON";

impl Backend {
    /// Connects, logs in and turns session tracking on, within `opts.timeout`. The
    /// connection counts against no limit until [`Backend::attach_permit`].
    pub async fn connect(
        target: &BackendTarget,
        opts: &ConnectOptions,
        stats: Arc<Stats>,
    ) -> Result<Backend, ProxyError> {
        let addr = target.addr();
        tokio::time::timeout(
            opts.timeout,
            Self::connect_inner(&addr, target, opts, stats),
        )
        .await
        .map_err(|_| ProxyError::Timeout(format!("connecting to {addr}")))?
    }

    async fn connect_inner(
        addr: &str,
        target: &BackendTarget,
        opts: &ConnectOptions,
        stats: Arc<Stats>,
    ) -> Result<Backend, ProxyError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(io_err("connecting to the server"))?;
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, PacketCodec::default());
        let greeting_packet = framed
            .next()
            .await
            .ok_or_else(|| eof("reading the greeting"))?
            .map_err(io_err("reading the greeting"))?;
        if greeting_packet.is_err() {
            return Err(ProxyError::Server(
                packet::parse_err(&greeting_packet.payload).unwrap_or_else(unknown_err),
            ));
        }
        let greeting = Greeting::parse(&greeting_packet.payload)
            .ok_or_else(|| ProxyError::Protocol("unreadable server greeting".into()))?;
        let wanted = (opts.client_capabilities & caps::PROXY_SUPPORTED & !caps::CONNECT_ATTRS)
            | caps::LONG_PASSWORD
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::TRANSACTIONS
            | caps::SESSION_TRACK;
        let mut capabilities = wanted & greeting.capabilities;
        let mariadb_capabilities = opts.client_mariadb_capabilities
            & caps::mariadb::PROXY_SUPPORTED
            & greeting.mariadb_capabilities;
        if mariadb_capabilities != 0 {
            // A MariaDB server reads extended capabilities only from a client that clears
            // CLIENT_MYSQL, as MariaDB's own clients do.
            capabilities &= !caps::LONG_PASSWORD;
        }
        if opts.database.is_some() {
            capabilities |= caps::CONNECT_WITH_DB & greeting.capabilities;
        } else {
            capabilities &= !caps::CONNECT_WITH_DB;
        }
        let plugin = greeting.auth_plugin.clone();
        let response = HandshakeResponse {
            capabilities,
            mariadb_capabilities,
            max_packet: 1 << 30,
            charset: opts.charset,
            user: target.user.clone(),
            auth_response: target.auth_response(&plugin, &greeting.scramble)?,
            database: opts.database.clone(),
            auth_plugin: Some(plugin),
            attributes: None,
        };
        framed
            .send(Packet::new(1, response.encode()))
            .await
            .map_err(io_err("sending the login"))?;
        // The authentication exchange: OK, ERR, a switch to another plugin, or more data.
        for _ in 0..4 {
            let p = framed
                .next()
                .await
                .ok_or_else(|| eof("logging in"))?
                .map_err(io_err("logging in"))?;
            match p.first() {
                Some(0x00) => {
                    let mut backend = Backend {
                        framed,
                        connection_id: greeting.connection_id,
                        capabilities,
                        server_version: greeting.server_version.clone(),
                        server_capabilities: greeting.capabilities,
                        server_mariadb_capabilities: greeting.mariadb_capabilities,
                        wait_timeout: Duration::from_secs(28800),
                        packet_limit: 16 << 20,
                        server_started: None,
                        opened: Instant::now(),
                        home: std::thread::current().id(),
                        opened_unix: unix_now(),
                        last_used: Instant::now(),
                        stats: stats.clone(),
                        sandboxed: false,
                        stall: None,
                        sent_at: Instant::now(),
                        prepared: 0,
                        statements: Default::default(),
                        login_state: Default::default(),
                        grants: 0,
                        _permit: None,
                    };
                    stats
                        .backends
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    stats
                        .backend_connects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    backend.setup(opts.known_limits, opts.login_state).await?;
                    return Ok(backend);
                }
                Some(0xff) => {
                    return Err(ProxyError::Server(
                        packet::parse_err(&p.payload).unwrap_or_else(unknown_err),
                    ));
                }
                // A bare 0xfe is the pre-plugin "send the old password's answer" request,
                // to the greeting's nonce.
                Some(0xfe) if p.payload.len() == 1 => {
                    let data = target.auth_response("mysql_old_password", &greeting.scramble)?;
                    framed
                        .send(Packet::new(p.seq.wrapping_add(1), data))
                        .await
                        .map_err(io_err("logging in"))?;
                }
                Some(0xfe) => {
                    let mut r = Reader::new(&p.payload[1..]);
                    let plugin = String::from_utf8_lossy(r.nul_bytes()).into_owned();
                    let nonce = r.rest();
                    let nonce = nonce.strip_suffix(&[0]).unwrap_or(nonce);
                    let data = target.auth_response(&plugin, nonce)?;
                    framed
                        .send(Packet::new(p.seq.wrapping_add(1), data))
                        .await
                        .map_err(io_err("logging in"))?;
                }
                Some(0x01) if p.payload.get(1) == Some(&0x03) => {
                    // caching_sha2_password fast authentication succeeded; OK follows.
                }
                Some(0x01) => {
                    return Err(ProxyError::Protocol(
                        "the server wants caching_sha2_password full authentication, which needs TLS; \
                         log in once with the mysql client to fill the server's cache, or use mysql_native_password"
                            .into(),
                    ));
                }
                _ => {
                    return Err(ProxyError::Protocol(
                        "unexpected packet during login".into(),
                    ))
                }
            }
        }
        Err(ProxyError::Protocol(
            "the login exchange did not end".into(),
        ))
    }

    /// Turns session tracking on and reads the limits the proxy works within. A session
    /// in the sandbox of an expired password refuses that with 1820 (`SET` is allowed
    /// there, `SELECT` is not): the connection is marked [`Backend::sandboxed`] and
    /// serves the client all the same.
    async fn setup(
        &mut self,
        known_limits: Option<(Duration, usize)>,
        login_state: bool,
    ) -> Result<(), ProxyError> {
        match self.read_setup(known_limits, login_state).await {
            Err(ProxyError::Server(e)) if e.code == ER_MUST_CHANGE_PASSWORD => {
                self.sandboxed = true;
                Ok(())
            }
            r => {
                self.sandboxed = false;
                r
            }
        }
    }

    async fn read_setup(
        &mut self,
        known_limits: Option<(Duration, usize)>,
        login_state: bool,
    ) -> Result<(), ProxyError> {
        self.simple(TRACKING_SETUP).await?;
        if login_state {
            self.read_grants().await?;
        }
        if let Some((wait_timeout, packet_limit)) = known_limits {
            self.wait_timeout = wait_timeout;
            self.packet_limit = packet_limit;
            return Ok(());
        }
        // Variables only: a SELECT of @@ variables creates no temporary table and reads no
        // status, so the server's counters move as little as a statement can (MariaDB's
        // main.status counts temporary tables and SHOW STATUS; the server's start time is
        // read only when it is evidence, see `read_server_started`).
        let rows = self
            .simple(if login_state {
                "SELECT @@wait_timeout, @@max_allowed_packet, @@net_buffer_length, @@global.init_connect <> ''"
            } else {
                "SELECT @@wait_timeout, @@max_allowed_packet, @@net_buffer_length"
            })
            .await?;
        let row = rows.first();
        let num = |i: usize| {
            row.and_then(|r| r.get(i))
                .and_then(|v| v.as_deref())
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let Some(w) = num(0) {
            self.wait_timeout = Duration::from_secs_f64(w.max(1.0));
        }
        if let Some(m) = num(1) {
            self.packet_limit = (m as usize).max(num(2).unwrap_or(0.0) as usize);
        }
        if num(3) == Some(1.0) {
            self.read_login_state().await?;
        }
        Ok(())
    }

    /// Reads the fingerprint of the account's privileges (see [`Backend::grants`]). An
    /// account that may not read its own grants (none such in MariaDB) gets 0, which
    /// only makes its connections shared as before.
    async fn read_grants(&mut self) -> Result<(), ProxyError> {
        use std::hash::{Hash, Hasher};
        match self.simple("SHOW GRANTS").await {
            Ok(rows) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                rows.hash(&mut h);
                self.grants = h.finish();
                Ok(())
            }
            Err(ProxyError::Server(e)) if e.code != ER_MUST_CHANGE_PASSWORD => {
                tracing::debug!(error = %e, "SHOW GRANTS refused; connections of this account are shared regardless of privilege changes");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reads what `init_connect` set (see [`Backend::login_state`]): the session variables
    /// whose values differ from the global ones, but for the character set the handshake
    /// chose and the tracking the proxy turned on. Only when the server has an
    /// `init_connect`: the query reads `information_schema`, which costs a temporary
    /// table per login.
    async fn read_login_state(&mut self) -> Result<(), ProxyError> {
        let rows = self
            .simple(
                "SELECT LOWER(s.VARIABLE_NAME), s.VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES s \
                 JOIN information_schema.GLOBAL_VARIABLES g USING (VARIABLE_NAME) \
                 WHERE NOT (s.VARIABLE_VALUE <=> g.VARIABLE_VALUE)",
            )
            .await?;
        self.login_state = rows
            .into_iter()
            .filter_map(|r| {
                let mut r = r.into_iter();
                Some((r.next()??, r.next()?.unwrap_or_default()))
            })
            .filter(|(name, _)| !crate::frontend::state::set_by_login(name))
            .collect();
        if !self.login_state.is_empty() {
            tracing::debug!(variables = ?self.login_state, "init_connect set session variables at login");
        }
        Ok(())
    }

    /// Reads when the server started (`Uptime`), on the proxy's clock, into
    /// [`Backend::server_started`]: the evidence of a restart when this connection replaces
    /// one that was lost.
    pub async fn read_server_started(&mut self) -> Result<(), ProxyError> {
        let uptime = self
            .simple("SHOW GLOBAL STATUS LIKE 'Uptime'")
            .await?
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .and_then(|v| v.parse::<i64>().ok());
        self.server_started = uptime.map(|u| unix_now() - u);
        Ok(())
    }

    /// On a sandboxed connection, after a command the server accepted: if the password
    /// has been changed, the setup the sandbox refused runs now.
    pub async fn leave_sandbox(&mut self) -> Result<(), ProxyError> {
        if self.sandboxed {
            self.setup(None, false).await?;
        }
        Ok(())
    }

    /// Makes the connection count against the proxy's backend limit while it lives.
    pub fn attach_permit(&mut self, permit: OwnedSemaphorePermit) {
        self._permit = Some(permit);
    }

    /// Re-applies session tracking after `COM_RESET_CONNECTION` reset it.
    pub async fn retrack(&mut self) -> Result<(), ProxyError> {
        self.simple(TRACKING_SETUP).await.map(|_| ())
    }

    /// `COM_RESET_CONNECTION`, then session tracking on again: the connection is as
    /// freshly logged in (variables, user variables, temporary tables, prepared statements
    /// and locks gone), for another session of the same account to set its own state.
    pub async fn reset_connection(&mut self) -> Result<(), ProxyError> {
        self.send(&[Packet::new(0, Bytes::from_static(&[com::RESET_CONNECTION]))])
            .await?;
        let p = self.recv().await?;
        if p.is_err() {
            return Err(ProxyError::Server(
                packet::parse_err(&p.payload).unwrap_or_else(unknown_err),
            ));
        }
        self.forget_statements();
        self.retrack().await?;
        let login: Vec<String> = self
            .login_state
            .iter()
            .map(|(name, value)| crate::frontend::state::set_statement(name, value))
            .collect();
        for sql in login {
            if let Err(e) = self.simple(&sql).await {
                if e.is_disconnect() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "could not set `{sql}` back after a reset");
            }
        }
        Ok(())
    }

    /// What an idle connection has said unasked or how it closed (the server's
    /// `wait_timeout`, a KILL, a shutdown), if it has: such a connection is not to be
    /// used. Never waits.
    pub fn idle_event_now(&mut self) -> Option<IdleEvent> {
        use futures_util::FutureExt;
        self.framed.next().now_or_never().map(|ev| match ev {
            Some(Ok(p)) => IdleEvent::Packet(p),
            Some(Err(e)) => IdleEvent::Error(e),
            None => IdleEvent::Eof,
        })
    }

    /// Sends one command (all its physical packets).
    pub async fn send(&mut self, packets: &[Packet]) -> Result<(), ProxyError> {
        for p in packets {
            self.framed
                .feed(p.clone())
                .await
                .map_err(io_err("sending to the server"))?;
        }
        self.sent_at = Instant::now();
        self.framed
            .flush()
            .await
            .map_err(io_err("sending to the server"))
    }

    /// From now on, a reply that stays silent is checked on a second connection (see
    /// [`stall`](super::stall)); `None` stops that.
    pub fn watch_stalls(&mut self, watch: Option<StallWatch>) {
        self.stall = watch;
    }

    /// The next packet of a reply. Under [`Backend::watch_stalls`], fails with
    /// [`ProxyError::Stalled`] when the reply is known never to come.
    pub async fn recv(&mut self) -> Result<Packet, ProxyError> {
        match &self.stall {
            None => read_packet(&mut self.framed).await,
            Some(watch) => {
                super::stall::watched(watch, &mut self.framed, self.connection_id, self.sent_at)
                    .await
            }
        }
    }

    /// Completes when an idle connection shows a sign of life it should not: a packet, EOF
    /// or an error. Cancel-safe: a partial packet stays buffered.
    pub async fn idle_event(&mut self) -> IdleEvent {
        match self.framed.next().await {
            Some(Ok(p)) => IdleEvent::Packet(p),
            Some(Err(e)) => IdleEvent::Error(e),
            None => IdleEvent::Eof,
        }
    }

    /// Runs one internal statement and returns the session-state changes its reply
    /// reports (a statement the session's state depends on; see
    /// [`crate::frontend::state::report_statement`]).
    pub async fn tracked(&mut self, sql: &str) -> Result<Vec<StateChange>, ProxyError> {
        let (_, tracker) = self.run_simple(sql).await?;
        Ok(tracker.changes)
    }

    /// Sends one internal statement and reads its whole reply: its packets and what they
    /// said, or the server's error.
    async fn run_simple(&mut self, sql: &str) -> Result<(Vec<Packet>, ReplyTracker), ProxyError> {
        let mut payload = BytesMut::with_capacity(1 + sql.len());
        payload.put_u8(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.send(&[Packet::new(0, payload.freeze())]).await?;
        let mut tracker = ReplyTracker::new(Expect::Query, self.capabilities);
        let mut packets = Vec::new();
        loop {
            let p = self.recv().await?;
            let step = tracker.feed(&p);
            packets.push(p);
            match step {
                Step::More => {}
                Step::Done => break,
                Step::LocalInfile => {
                    return Err(ProxyError::Protocol(
                        "LOCAL INFILE in an internal statement".into(),
                    ))
                }
            }
        }
        self.last_used = Instant::now();
        if let Some(e) = tracker.err.take() {
            return Err(ProxyError::Server(e));
        }
        Ok((packets, tracker))
    }

    /// Runs one internal statement and returns its text rows (empty for OK).
    pub async fn simple(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ProxyError> {
        let (packets, _) = self.run_simple(sql).await?;
        let mut out = Vec::new();
        let Some(first) = packets.first() else {
            return Ok(out);
        };
        if first.first() == Some(0) {
            return Ok(out);
        }
        // Column count, definitions, (EOF,) rows, terminator: keep the first result's rows.
        let columns = Reader::new(&first.payload).lenenc().unwrap_or(0) as usize;
        let deprecate = self.capabilities & caps::DEPRECATE_EOF != 0;
        for p in packets.iter().skip(1 + columns + usize::from(!deprecate)) {
            if packet::is_terminator(&p.payload) || p.is_err() {
                break;
            }
            let mut r = Reader::new(&p.payload);
            let mut row = Vec::with_capacity(columns);
            for _ in 0..columns {
                if r.remaining() > 0 && p.payload[p.payload.len() - r.remaining()] == 0xfb {
                    r.u8();
                    row.push(None);
                } else {
                    row.push(
                        r.lenenc_bytes()
                            .map(|b| String::from_utf8_lossy(b).into_owned()),
                    );
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// The server closed every statement of this connection (`COM_RESET_CONNECTION`).
    pub fn forget_statements(&mut self) {
        self.prepared = 0;
        self.statements.clear();
    }

    /// Closes every statement the connection keeps for reuse ([`Backend::statements`]),
    /// which the server counts against `max_prepared_stmt_count`: sessions prepare them
    /// again when they next run them. Returns whether there were any.
    pub async fn close_kept_statements(&mut self) -> Result<bool, ProxyError> {
        let ids = self.statements.take_ids();
        for id in &ids {
            self.close_statement(*id).await?;
        }
        Ok(!ids.is_empty())
    }

    /// Sends `COM_STMT_CLOSE` for the server's statement `id` (no reply comes).
    pub async fn close_statement(&mut self, id: u32) -> Result<(), ProxyError> {
        let mut payload = BytesMut::with_capacity(5);
        payload.put_u8(com::STMT_CLOSE);
        payload.put_u32_le(id);
        self.send(&[Packet::new(0, payload.freeze())]).await
    }

    /// Prepares a statement (the raw `COM_STMT_PREPARE` payload) and returns the server's
    /// statement id. The caller counts it: in [`Backend::prepared`] or
    /// [`Backend::statements`].
    pub async fn prepare(&mut self, payload: &Bytes) -> Result<u32, ProxyError> {
        self.send(&[Packet::new(0, payload.clone())]).await?;
        let mut tracker = ReplyTracker::new(Expect::Prepare, self.capabilities);
        loop {
            let p = self.recv().await?;
            if tracker.feed(&p) != Step::More {
                break;
            }
        }
        self.last_used = Instant::now();
        if let Some(e) = tracker.err {
            return Err(ProxyError::Server(e));
        }
        tracker
            .prepared
            .map(|(id, _)| id)
            .ok_or_else(|| ProxyError::Protocol("no statement id".into()))
    }

    /// Sends `COM_PING` and waits for the reply, within `timeout`.
    pub async fn ping(&mut self, timeout: Duration) -> Result<(), ProxyError> {
        let fut = async {
            self.send(&[Packet::new(0, Bytes::from_static(&[com::PING]))])
                .await?;
            let p = self.recv().await?;
            if p.is_err() {
                return Err(ProxyError::Server(
                    packet::parse_err(&p.payload).unwrap_or_else(unknown_err),
                ));
            }
            Ok(())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ProxyError::Timeout("ping".into()))??;
        self.last_used = Instant::now();
        Ok(())
    }

    /// Says goodbye politely (so the server does not log an aborted connection).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            self.send(&[Packet::new(0, Bytes::from_static(&[com::QUIT]))]),
        )
        .await;
    }
}

fn unknown_err() -> ErrInfo {
    ErrInfo {
        code: 1105,
        sqlstate: "HY000".into(),
        message: "unreadable error packet".into(),
    }
}

/// The auth response for `plugin` with this nonce and password (empty for no password).
pub fn scramble(plugin: &str, nonce: &[u8], password: &str) -> Result<Vec<u8>, ProxyError> {
    use sha1::{Digest, Sha1};
    use sha2::Sha256;
    let nonce = &nonce[..nonce.len().min(20)];
    let pw = password.as_bytes();
    if pw.is_empty() {
        return Ok(Vec::new());
    }
    let xor = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| x ^ y).collect::<Vec<u8>>();
    match plugin {
        "mysql_native_password" | "" => Ok(native_scramble(nonce, &Sha1::digest(pw).into())),
        "mysql_old_password" => {
            let mut answer = old_scramble(nonce, old_hash(pw)).to_vec();
            answer.push(0);
            Ok(answer)
        }
        // SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)
        "caching_sha2_password" => {
            let h1 = Sha256::digest(pw);
            let h2 = Sha256::digest(h1);
            let mut h = Sha256::new();
            h.update(h2);
            h.update(nonce);
            Ok(xor(&h1, &h.finalize()))
        }
        other => Err(ProxyError::Protocol(format!(
            "the server asks for the {other} authentication plugin, which the proxy does not speak"
        ))),
    }
}

/// `mysql_old_password`'s hash of a password (or of a nonce): spaces and tabs skipped, two
/// 31-bit halves, as the server's `hash_password` computes them (its 64-bit arithmetic
/// keeps the same low bits as this 32-bit one).
pub fn old_hash(bytes: &[u8]) -> [u32; 2] {
    let (mut nr, mut add, mut nr2) = (1_345_345_333u32, 7u32, 0x1234_5671u32);
    for &b in bytes.iter().filter(|&&b| b != b' ' && b != b'\t') {
        let tmp = u32::from(b);
        nr ^= ((nr & 63).wrapping_add(add))
            .wrapping_mul(tmp)
            .wrapping_add(nr << 8);
        nr2 = nr2.wrapping_add((nr2 << 8) ^ nr);
        add = add.wrapping_add(tmp);
    }
    [nr & 0x7fff_ffff, nr2 & 0x7fff_ffff]
}

/// `mysql_old_password`'s answer to `nonce` (its first 8 bytes) for a password whose
/// hash is `hash`: the server's `scramble_323`.
pub fn old_scramble(nonce: &[u8], hash: [u32; 2]) -> [u8; 8] {
    const MAX: u64 = 0x3FFF_FFFF;
    let message = old_hash(&nonce[..nonce.len().min(8)]);
    let mut seed1 = u64::from(hash[0] ^ message[0]) % MAX;
    let mut seed2 = u64::from(hash[1] ^ message[1]) % MAX;
    let mut rnd = || {
        seed1 = (seed1 * 3 + seed2) % MAX;
        seed2 = (seed1 + seed2 + 33) % MAX;
        seed1 as f64 / MAX as f64
    };
    let mut out = [0u8; 8];
    for b in out.iter_mut() {
        *b = (rnd() * 31.0).floor() as u8 + 64;
    }
    let extra = (rnd() * 31.0).floor() as u8;
    for b in out.iter_mut() {
        *b ^= extra;
    }
    out
}

/// `mysql_native_password`'s answer from `SHA1(password)`:
/// `SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))`.
pub fn native_scramble(nonce: &[u8], h1: &[u8; 20]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let nonce = &nonce[..nonce.len().min(20)];
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(Sha1::digest(h1));
    h1.iter().zip(h.finalize()).map(|(x, y)| x ^ y).collect()
}

/// Seconds since the epoch on the proxy's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
