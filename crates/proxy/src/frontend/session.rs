//! One client session: login, then the command loop that keeps a healthy backend under it.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use goneaway_core::codes::{
    CR_CONN_HOST_ERROR, CR_SERVER_LOST, ER_CLIENT_INTERACTION_TIMEOUT, ER_CONNECTION_KILLED,
    ER_CON_COUNT_ERROR, ER_HOST_IS_BLOCKED, ER_NET_PACKET_TOO_LARGE, ER_SERVER_SHUTDOWN,
};
use goneaway_core::Cause;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::backend::{Backend, ConnectOptions, Expect, IdleEvent, ReplyTracker, Step};
use crate::frontend::handshake::{self, Login, LoginError};
use goneaway_core::sql::is_read_only;

use crate::frontend::state::{SessionState, Statement};
use crate::net::packet::{self, caps, com, status, Reader};
use crate::net::{ClientStream, ErrInfo, Packet, PacketCodec};
use crate::server::{ServerInfo, Shared};
use crate::ProxyError;

/// The error number of errors the proxy itself sends (`ER_UNKNOWN_ERROR`): clients show
/// the message, which says what happened. A connection-level SQLSTATE (08xxx) is avoided on
/// purpose: many drivers close the connection on one, and this one stays usable.
const ER_PROXY: u16 = 1105;
const ER_UNKNOWN_STMT_HANDLER: u16 = 1243;
/// MySQL's answer under `require_secure_transport`; the proxy's under `require_tls`.
const ER_SECURE_TRANSPORT_REQUIRED: u16 = 3159;

/// Server errors that mean "this connection is closing" rather than "your command failed",
/// and whether they prove the command did not run.
fn fatal_error(e: &ErrInfo) -> Option<bool> {
    match e.code {
        // MySQL 8 sends ER_CLIENT_INTERACTION_TIMEOUT when wait_timeout ends the session,
        // and ER_SERVER_SHUTDOWN, instead of running anything. MariaDB's 4031 is an
        // ordinary trigger error: the message tells them apart.
        ER_CLIENT_INTERACTION_TIMEOUT
            if goneaway_core::ServerError::new(e.code, Some(&e.sqlstate), e.message.as_str())
                .is_mysql_inactivity() =>
        {
            Some(true)
        }
        ER_SERVER_SHUTDOWN => Some(true),
        // The command may have been running when the KILL came.
        ER_CONNECTION_KILLED => Some(false),
        _ => None,
    }
}

/// How a command attempt failed.
#[derive(Debug)]
enum Failure {
    /// The backend failed. `flushed`: part of the reply already reached the client (then
    /// `seq` is the next sequence id). `not_run`: the server proved it ran nothing.
    Backend {
        flushed: bool,
        not_run: bool,
        seq: u8,
        cause: Cause,
        detail: String,
    },
    /// The client went away.
    ClientGone,
}

enum Event {
    Shutdown,
    Client(Option<Packet>),
    BackendIdle(IdleEvent),
    Keepalive,
}

/// A client session.
pub struct Session {
    id: u64,
    client: Framed<ClientStream, PacketCodec>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// The capabilities the client negotiated.
    client_caps: u32,
    charset: u8,
    backend: Option<Backend>,
    state: SessionState,
    /// Unrestorable state lost with a backend that died while the session was idle, and
    /// the cause: the next command is answered with an error that says so.
    lost: Option<(String, Cause)>,
    /// The server's `max_allowed_packet`, as last read.
    max_allowed_packet: usize,
    /// The server's `wait_timeout` for this session, as last read.
    wait_timeout: Duration,
    /// An idle backend closed without saying why (MariaDB closes silently on KILL and on
    /// shutdown): the cause is told by the reconnection — refused for a while means a
    /// restart, accepted at once means the connection alone was killed.
    unexplained_loss: bool,
    /// The nonce of the client's login, which `COM_CHANGE_USER` scrambles with again.
    scramble: Vec<u8>,
    /// The reply buffer, kept between commands (when small) so that a reply costs no
    /// allocation.
    reply_buf: BytesMut,
}

impl Session {
    /// Runs a session to its end.
    pub(crate) async fn run(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        shared: Arc<Shared>,
        mut shutdown: watch::Receiver<bool>,
        over_limit: bool,
    ) {
        let mut client = Framed::new(ClientStream::Plain(stream), PacketCodec);
        if over_limit {
            shared.stats.error_sent("too_many_clients");
            let msg = format!(
                "Too many connections (goneaway proxy: max_clients = {})",
                shared.config.max_clients
            );
            let _ = client
                .send(Packet::new(
                    0,
                    packet::err_payload(ER_CON_COUNT_ERROR, "08004", &msg),
                ))
                .await;
            return;
        }
        let Some((client, login)) = accept_login(client, id, peer, &shared).await else {
            return;
        };
        let mut session = Session {
            id,
            client,
            peer,
            client_caps: login.response.capabilities & caps::PROXY_SUPPORTED,
            charset: login.response.charset,
            backend: None,
            state: SessionState {
                database: login
                    .response
                    .database
                    .clone()
                    .or_else(|| shared.config.backend.database.clone()),
                ..SessionState::default()
            },
            lost: None,
            max_allowed_packet: 16 << 20,
            wait_timeout: Duration::from_secs(28800),
            unexplained_loss: false,
            scramble: login.scramble.clone(),
            reply_buf: BytesMut::with_capacity(16 << 10),
            shared,
        };
        // Log in to the server now, so that a wrong database or an unreachable server is
        // reported at login, as a direct connection would.
        if session.fresh_backend_or_tell(login.next_seq).await.is_err() {
            return;
        }
        session.shared.stats.logins.fetch_add(1, Ordering::Relaxed);
        if session.client.get_ref().is_tls() {
            session
                .shared
                .stats
                .tls_logins
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(session = id, peer = %session.peer, user = %login.response.user, "client logged in");
        if session
            .client
            .send(Packet::new(
                login.next_seq,
                packet::ok_payload(status::AUTOCOMMIT),
            ))
            .await
            .is_err()
        {
            return;
        }
        session.serve(&mut shutdown).await;
        if let Some(b) = session.backend.take() {
            b.quit().await;
        }
    }

    fn keepalive_interval(&self) -> Duration {
        self.shared
            .config
            .keepalive_interval
            .unwrap_or_else(|| (self.wait_timeout / 2).min(Duration::from_secs(60)))
            .max(Duration::from_millis(100))
    }

    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) {
        // One timer for the session, re-armed only when it fires (not after every
        // command): timer-wheel updates on every command cost measurable throughput.
        let mut timer = Box::pin(tokio::time::sleep(self.keepalive_interval()));
        // Likewise one shutdown waiter for the session's life, not one per command.
        let mut shutdown = Box::pin(shutdown.wait_for(|s| *s));
        // The backend is watched before the client: when a command and the backend's death
        // are both ready, the death is taken first and the command goes to a fresh backend.
        // This watch is the only liveness check; none is added before each command.
        loop {
            let event = {
                let has_backend = self.backend.is_some();
                let backend = self.backend.as_mut();
                tokio::select! {
                    biased;
                    _ = shutdown.as_mut() => Event::Shutdown,
                    ev = async { match backend { Some(b) => b.idle_event().await, None => std::future::pending().await } } => Event::BackendIdle(ev),
                    p = self.client.next() => Event::Client(p.and_then(Result::ok)),
                    _ = timer.as_mut(), if has_backend => Event::Keepalive,
                }
            };
            if let Event::Keepalive = event {
                let interval = self.keepalive_interval();
                let due = self.backend.as_ref().map(|b| b.last_used + interval);
                match due {
                    Some(t) if t > Instant::now() => {
                        timer.as_mut().reset(t.into());
                        continue;
                    }
                    _ => timer.as_mut().reset((Instant::now() + interval).into()),
                }
            }
            match event {
                Event::Shutdown => {
                    self.shared.stats.error_sent("shutdown");
                    let _ = self
                        .client
                        .send(Packet::new(0, packet::err_payload(ER_SERVER_SHUTDOWN, "08S01", "Server shutdown in progress (goneaway proxy is shutting down; reconnect)")))
                        .await;
                    return;
                }
                Event::Client(None) => return,
                Event::Client(Some(p)) => {
                    if !self.command(p).await {
                        return;
                    }
                }
                Event::BackendIdle(ev) => self.backend_lost_idle(ev),
                Event::Keepalive => self.keepalive().await,
            }
        }
    }

    /// Keeps an idle backend from reaching the server's `wait_timeout`: a session with
    /// nothing to lose releases it (a fresh one comes with the next command); a pinned one
    /// pings it.
    async fn keepalive(&mut self) {
        let Some(mut backend) = self.backend.take() else {
            return;
        };
        if self.state.unrestorable().is_none() {
            self.shared.stats.recycled.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                session = self.id,
                "releasing an idle backend before wait_timeout"
            );
            self.state.backend_replaced();
            backend.quit().await;
            return;
        }
        self.shared.stats.pings.fetch_add(1, Ordering::Relaxed);
        match backend.ping(self.shared.config.connect_timeout).await {
            Ok(()) => self.backend = Some(backend),
            Err(e) => {
                let cause = cause_of_error(&e);
                self.mark_lost(cause, &e.to_string());
            }
        }
    }

    /// The idle backend said something or closed: it is gone.
    fn backend_lost_idle(&mut self, ev: IdleEvent) {
        let idle = self
            .backend
            .as_ref()
            .map(|b| b.last_used.elapsed())
            .unwrap_or_default();
        let (cause, detail) = match ev {
            IdleEvent::Packet(p) => match packet::parse_err(&p.payload) {
                Some(e) => (
                    cause_of_code(e.code, &e.sqlstate, &e.message),
                    e.to_string(),
                ),
                None => (Cause::OutOfSync, "an unsolicited packet".to_owned()),
            },
            IdleEvent::Eof if idle + Duration::from_millis(500) >= self.wait_timeout => {
                (Cause::IdleTimeout, "closed after wait_timeout".into())
            }
            IdleEvent::Eof => (
                Cause::Unknown,
                "the server closed the connection without a reason".into(),
            ),
            IdleEvent::Error(e) => (
                goneaway_core::classify_io(e.kind()).primary(),
                e.to_string(),
            ),
        };
        self.mark_lost(cause, &detail);
    }

    /// Records a lost backend: absorbed if nothing is lost with it, else remembered for
    /// the next command's error.
    fn mark_lost(&mut self, cause: Cause, detail: &str) {
        self.backend = None;
        self.state.backend_replaced();
        match self.state.unrestorable() {
            Some(what) => {
                tracing::info!(
                    session = self.id,
                    %cause,
                    detail,
                    "backend lost with unrestorable state: {what}"
                );
                self.lost = Some((what, cause));
                self.state.forget_pinned();
            }
            None if cause == Cause::Unknown => {
                tracing::debug!(
                    session = self.id,
                    detail,
                    "idle backend closed; will be replaced"
                );
                self.unexplained_loss = true;
            }
            None => {
                tracing::debug!(
                    session = self.id,
                    %cause,
                    detail,
                    "idle backend lost; will be replaced"
                );
                self.shared.stats.absorbed(cause.as_str());
            }
        }
    }

    /// Connects a backend for this session and restores its state, waiting for a
    /// restarting server up to the configured time.
    async fn fresh_backend(&mut self) -> Result<(), ProxyError> {
        let config = &self.shared.config;
        let deadline = Instant::now() + config.server_wait;
        let permit = tokio::time::timeout(
            config.backend_slot_wait,
            self.shared.backend_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            ProxyError::Busy(format!(
                "Too many connections (goneaway proxy: all max_backends = {} server connections stayed in use for {:?}; \
                 raise max_backends or lower the number of clients)",
                config.max_backends, config.backend_slot_wait
            ))
        })?
        .map_err(|_| ProxyError::Timeout("the proxy is shutting down".into()))?;
        let opts = ConnectOptions {
            client_capabilities: self.client_caps,
            charset: self.charset,
            database: self.state.database.clone(),
            timeout: config.connect_timeout,
        };
        let mut delay = Duration::from_millis(50);
        let mut refused = false;
        let mut backend = loop {
            match Backend::connect(&config.backend, &opts, self.shared.stats.clone()).await {
                Ok(b) => break b,
                Err(e) if !is_transient(&e) || Instant::now() + delay >= deadline => return Err(e),
                Err(e) => {
                    refused = true;
                    tracing::debug!(session = self.id, error = %e, "server not reachable yet; waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        };
        backend.attach_permit(permit);
        if std::mem::take(&mut self.unexplained_loss) {
            let cause = if refused {
                Cause::ServerRestart
            } else {
                Cause::ConnectionKilled
            };
            self.shared.stats.absorbed(cause.as_str());
        }
        for sql in self.state.restore_statements() {
            if let Err(e) = backend.simple(&sql).await {
                if e.is_disconnect() {
                    return Err(e);
                }
                tracing::warn!(session = self.id, error = %e, "could not restore `{sql}`");
            }
        }
        self.max_allowed_packet = backend.max_allowed_packet;
        self.wait_timeout = backend.wait_timeout;
        *self.shared.server_info.lock().unwrap() = ServerInfo {
            version: backend.server_version.clone(),
            capabilities: backend.server_capabilities,
        };
        self.state.backend_replaced();
        self.backend = Some(backend);
        Ok(())
    }

    /// [`Session::fresh_backend`], telling the client (at `seq`) why when no backend could
    /// be had: `Err(alive)`, where `alive` says whether the client got the error.
    async fn fresh_backend_or_tell(&mut self, seq: u8) -> Result<(), bool> {
        let Err(e) = self.fresh_backend().await else {
            return Ok(());
        };
        let (code, state, msg) = backend_error_for_client(&e, &self.shared.config.backend.addr());
        Err(self
            .send_err(seq, code, &state, "backend_unavailable", &msg)
            .await)
    }

    async fn send_err(
        &mut self,
        seq: u8,
        code: u16,
        sqlstate: &str,
        kind: &'static str,
        message: &str,
    ) -> bool {
        self.shared.stats.error_sent(kind);
        self.client
            .send(Packet::new(
                seq,
                packet::err_payload(code, sqlstate, message),
            ))
            .await
            .is_ok()
    }

    /// Handles one command; `false` ends the session.
    async fn command(&mut self, first: Packet) -> bool {
        let started = Instant::now();
        // The whole logical packet, or, past max_allowed_packet, only its size.
        let mut packets = vec![first];
        let mut total = packets[0].payload.len();
        let mut last_seq = packets[0].seq;
        let mut continues = packets[0].continues();
        while continues {
            let Some(Ok(p)) = self.client.next().await else {
                return false;
            };
            total += p.payload.len();
            last_seq = p.seq;
            continues = p.continues();
            if total <= self.max_allowed_packet {
                packets.push(p);
            }
        }
        let reply_seq = last_seq.wrapping_add(1);
        if total > self.max_allowed_packet {
            self.shared
                .stats
                .oversize_rejections
                .fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "Got a packet bigger than 'max_allowed_packet' bytes: the statement is {total} bytes, the server accepts {}; \
                 goneaway proxy did not send it and the connection stays usable. Send smaller statements (chunk bulk writes) or raise max_allowed_packet on the server",
                self.max_allowed_packet
            );
            return self
                .send_err(
                    reply_seq,
                    ER_NET_PACKET_TOO_LARGE,
                    "HY000",
                    "packet_too_large",
                    &msg,
                )
                .await;
        }
        let Some(&cmd) = packets[0].payload.first() else {
            return self
                .send_err(
                    reply_seq,
                    ER_PROXY,
                    "HY000",
                    "protocol",
                    "goneaway proxy: empty command packet",
                )
                .await;
        };
        match cmd {
            com::QUIT => return false,
            com::CHANGE_USER => return self.change_user(&packets[0].payload).await,
            com::STMT_CLOSE | com::STMT_SEND_LONG_DATA => {
                self.statement_no_reply(cmd, &packets).await;
                return true;
            }
            _ => {}
        }
        if let Some((what, cause)) = self.lost.take() {
            let msg = format!(
                "goneaway proxy: the connection to the server was lost while this session was idle (cause: {cause}), and with it {what}. \
                 This statement was not run; the session goes on with a fresh connection, so run it again after restoring that state"
            );
            return self
                .send_err(1, ER_PROXY, "HY000", "state_lost", &msg)
                .await;
        }
        let sql = (cmd == com::QUERY).then(|| String::from_utf8_lossy(&packets[0].payload[1..]));
        let mut attempts = 0u32;
        let max_attempts = self.shared.config.max_attempts;
        loop {
            attempts += 1;
            if attempts > max_attempts + 2 {
                return self
                    .send_err(1, ER_PROXY, "HY000", "gave_up", "goneaway proxy: the server connection failed on every attempt; the statement was not run")
                    .await;
            }
            if self.backend.is_none() {
                if let Err(alive) = self.fresh_backend_or_tell(1).await {
                    return alive;
                }
            }
            let (to_send, replayable) =
                match self.prepare_packets(cmd, &packets, sql.as_deref()).await {
                    Ok(x) => x,
                    Err(PrepareError::Reply(code, state, msg)) => {
                        return self.send_err(1, code, &state, "statement", &msg).await
                    }
                    Err(PrepareError::Backend(e)) => {
                        // Nothing of the client's command was sent yet: safe to try again.
                        let cause = cause_of_error(&e);
                        self.mark_lost(cause, &e.to_string());
                        continue;
                    }
                };
            match self.forward(cmd, &to_send, sql.as_deref()).await {
                Ok(()) => {
                    self.shared.stats.command_latency(started.elapsed());
                    return true;
                }
                Err(Failure::ClientGone) => return false,
                Err(Failure::Backend {
                    flushed,
                    not_run,
                    seq,
                    cause,
                    detail,
                }) => {
                    let lost = self.state.unrestorable();
                    self.backend = None;
                    self.state.backend_replaced();
                    self.state.forget_pinned();
                    tracing::info!(
                        session = self.id,
                        %cause,
                        detail,
                        flushed,
                        not_run,
                        "backend lost during a command"
                    );
                    if flushed {
                        let msg = format!(
                            "goneaway proxy: the connection to the server was lost in the middle of the reply (cause: {cause}); the reply above is incomplete{}. The session goes on with a fresh connection",
                            lost.map(|w| format!(", and {w} was lost")).unwrap_or_default()
                        );
                        return self
                            .send_err(seq, ER_PROXY, "HY000", "reply_cut", &msg)
                            .await;
                    }
                    if let Some(what) = lost {
                        let ran = if not_run {
                            "This statement was not run"
                        } else {
                            "Whether this statement ran is unknown"
                        };
                        let msg = format!(
                            "goneaway proxy: the connection to the server was lost (cause: {cause}), and with it {what}. {ran}; the session goes on with a fresh connection"
                        );
                        return self
                            .send_err(1, ER_PROXY, "HY000", "state_lost", &msg)
                            .await;
                    }
                    if not_run || replayable {
                        self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                        self.shared.stats.absorbed(cause.as_str());
                        continue;
                    }
                    let msg = format!(
                        "goneaway proxy: the connection to the server was lost while this statement ran (cause: {cause}); the outcome is unknown: \
                         it may or may not have been applied, so goneaway did not run it again. Check before retrying; the session goes on with a fresh connection"
                    );
                    return self
                        .send_err(1, ER_PROXY, "HY000", "outcome_unknown", &msg)
                        .await;
                }
            }
        }
    }

    /// `COM_CHANGE_USER`: the client logs in again against the proxy's accounts; its
    /// session then starts afresh on a fresh backend (the proxy always logs in to the
    /// server with its own account, so nothing of the old session may leak into the new
    /// one). A refused change ends the connection, as the server does.
    async fn change_user(&mut self, payload: &[u8]) -> bool {
        let checked = handshake::change_user(
            payload,
            self.client_caps,
            &self.scramble,
            &self.shared.accounts,
            &self.peer.ip().to_string(),
        );
        let change = match checked {
            Ok(c) => c,
            Err((code, state, msg)) => {
                self.shared
                    .stats
                    .login_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.send_err(1, code, state, "access_denied", &msg).await;
                return false;
            }
        };
        tracing::debug!(session = self.id, user = %change.user, "COM_CHANGE_USER");
        if let Some(b) = self.backend.take() {
            b.quit().await;
        }
        let next_statement = self.state.next_statement;
        self.state = SessionState {
            database: change
                .database
                .or_else(|| self.shared.config.backend.database.clone()),
            next_statement,
            ..SessionState::default()
        };
        self.lost = None;
        self.unexplained_loss = false;
        if let Some(c) = change.charset {
            self.charset = c;
        }
        if let Err(alive) = self.fresh_backend_or_tell(1).await {
            return alive;
        }
        let mut seq = 1;
        if change.sha2 {
            // caching_sha2_password "fast authentication succeeded"; the OK follows.
            if self
                .client
                .feed(Packet::new(seq, &[0x01u8, 0x03][..]))
                .await
                .is_err()
            {
                return false;
            }
            seq += 1;
        }
        self.client
            .send(Packet::new(seq, packet::ok_payload(status::AUTOCOMMIT)))
            .await
            .is_ok()
    }

    /// `COM_STMT_CLOSE` and `COM_STMT_SEND_LONG_DATA`: no reply; forwarded to the backend
    /// that holds the statement, if it still does.
    async fn statement_no_reply(&mut self, cmd: u8, packets: &[Packet]) {
        let Some(client_id) = statement_id(&packets[0].payload) else {
            return;
        };
        let stmt = if cmd == com::STMT_CLOSE {
            self.state.statements.remove(&client_id)
        } else {
            self.state.statements.get(&client_id).cloned()
        };
        let (Some(stmt), Some(backend)) = (stmt, self.backend.as_mut()) else {
            return;
        };
        let Some(backend_id) = stmt.backend_id else {
            return;
        };
        let packets = rewrite_statement_id(packets, backend_id);
        if backend.send(&packets).await.is_err() {
            // Found dead at the next command.
            tracing::debug!(
                session = self.id,
                "backend failed while forwarding a statement command"
            );
        }
    }

    /// The packets to send for this command on the current backend (statement ids mapped,
    /// statements prepared again where needed), and whether the command may be replayed.
    async fn prepare_packets<'p>(
        &mut self,
        cmd: u8,
        packets: &'p [Packet],
        sql: Option<&str>,
    ) -> Result<(Cow<'p, [Packet]>, bool), PrepareError> {
        let outside_tx = !self.state.in_transaction;
        match cmd {
            com::QUERY => Ok((
                Cow::Borrowed(packets),
                outside_tx && sql.is_some_and(is_read_only),
            )),
            com::STMT_PREPARE
            | com::PING
            | com::INIT_DB
            | com::STATISTICS
            | com::FIELD_LIST
            | com::RESET_CONNECTION => Ok((
                Cow::Borrowed(packets),
                outside_tx || cmd == com::PING || cmd == com::STMT_PREPARE,
            )),
            com::STMT_EXECUTE | com::STMT_RESET | com::STMT_FETCH => {
                let client_id = statement_id(&packets[0].payload).unwrap_or(u32::MAX);
                let Some(stmt) = self.state.statements.get(&client_id).cloned() else {
                    return Err(PrepareError::Reply(
                        ER_UNKNOWN_STMT_HANDLER,
                        "HY000".into(),
                        format!("Unknown prepared statement handler ({client_id}) given to mysqld_stmt_execute"),
                    ));
                };
                if cmd == com::STMT_FETCH && stmt.backend_id.is_none() {
                    return Err(PrepareError::Reply(ER_PROXY, "HY000".into(), "goneaway proxy: the cursor was lost with the server connection; execute the statement again".into()));
                }
                let backend = self
                    .backend
                    .as_mut()
                    .expect("a backend is connected before prepare_packets");
                let backend_id = match stmt.backend_id {
                    Some(id) => id,
                    None => match backend.prepare(&stmt.prepare).await {
                        Ok(id) => {
                            if let Some(s) = self.state.statements.get_mut(&client_id) {
                                s.backend_id = Some(id);
                            }
                            id
                        }
                        Err(ProxyError::Server(e)) => {
                            return Err(PrepareError::Reply(e.code, e.sqlstate, e.message))
                        }
                        Err(e) => return Err(PrepareError::Backend(e)),
                    },
                };
                let mut out = rewrite_statement_id(packets, backend_id);
                if cmd == com::STMT_EXECUTE && stmt.params > 0 && out.len() == 1 {
                    if let Some(typed) = self.fix_param_types(client_id, &stmt, &out[0]) {
                        out.to_mut()[0] = typed;
                    }
                }
                Ok((out, outside_tx && stmt.read_only && cmd != com::STMT_FETCH))
            }
            com::SET_OPTION | com::PROCESS_KILL | com::DEBUG => Ok((Cow::Borrowed(packets), false)),
            _ => Err(PrepareError::Reply(
                ER_PROXY,
                "HY000".into(),
                format!("goneaway proxy does not forward command 0x{cmd:02x}"),
            )),
        }
    }

    /// Remembers bound parameter types, and supplies them to a fresh backend when the
    /// client executes with "new params bound" = 0: the packet to send instead, if any.
    fn fix_param_types(&mut self, client_id: u32, stmt: &Statement, p: &Packet) -> Option<Packet> {
        let n = stmt.params as usize;
        let flag_at = 1 + 4 + 1 + 4 + n.div_ceil(8);
        let &bound = p.payload.get(flag_at)?;
        let types_at = flag_at + 1;
        if bound == 1 {
            if let (Some(types), Some(s)) = (
                p.payload.get(types_at..types_at + 2 * n),
                self.state.statements.get_mut(&client_id),
            ) {
                s.types = Some(Bytes::copy_from_slice(types));
                s.typed = true;
            }
            return None;
        }
        match (&stmt.types, stmt.typed) {
            (Some(types), false) => {
                let mut out = BytesMut::with_capacity(p.payload.len() + types.len());
                out.extend_from_slice(&p.payload[..flag_at]);
                out.put_u8(1);
                out.extend_from_slice(types);
                out.extend_from_slice(&p.payload[types_at..]);
                if let Some(s) = self.state.statements.get_mut(&client_id) {
                    s.typed = true;
                }
                Some(Packet::new(p.seq, out.freeze()))
            }
            _ => None,
        }
    }

    /// Sends the command and relays the reply, holding it back (up to the reply buffer)
    /// so that a backend dying mid-reply can be retried invisibly.
    async fn forward(
        &mut self,
        cmd: u8,
        packets: &[Packet],
        sql: Option<&str>,
    ) -> Result<(), Failure> {
        let reply_buffer = self.shared.config.reply_buffer;
        let client_tracks = self.client_caps & caps::SESSION_TRACK != 0;
        let backend = self
            .backend
            .as_mut()
            .expect("a backend is connected before forward");
        let io_failure = |e: &ProxyError, flushed: bool, seq: u8| Failure::Backend {
            flushed,
            not_run: false,
            seq,
            cause: cause_of_error(e),
            detail: e.to_string(),
        };
        if let Err(e) = backend.send(packets).await {
            return Err(io_failure(&e, false, 1));
        }
        let expect = Expect::of(cmd);
        if expect == Expect::Nothing {
            return Ok(());
        }
        let mut tracker = ReplyTracker::new(expect, backend.capabilities);
        let mut buf = std::mem::take(&mut self.reply_buf);
        buf.clear();
        let mut flushed = false;
        let mut next_seq = 1u8;
        let mut new_statement = None;
        loop {
            let p = match backend.recv().await {
                Ok(p) => p,
                Err(e) => return Err(io_failure(&e, flushed, next_seq)),
            };
            let step = tracker.feed(&p);
            // An ERR in place of the reply may say that the connection is closing.
            if let (1, Some(e)) = (tracker.packets, &tracker.err) {
                if let Some(not_run) = fatal_error(e) {
                    return Err(Failure::Backend {
                        flushed: false,
                        not_run,
                        seq: 1,
                        cause: cause_of_code(e.code, &e.sqlstate, &e.message),
                        detail: e.to_string(),
                    });
                }
            }
            next_seq = p.seq.wrapping_add(1);
            let mut p = p;
            if cmd == com::STMT_PREPARE
                && tracker.packets == 1
                && p.first() == Some(0)
                && p.payload.len() >= 5
            {
                self.state.next_statement = self.state.next_statement.wrapping_add(1).max(1);
                let client_id = self.state.next_statement;
                let mut payload = BytesMut::from(&p.payload[..]);
                payload[1..5].copy_from_slice(&client_id.to_le_bytes());
                p = Packet::new(p.seq, payload.freeze());
                new_statement = Some(client_id);
            }
            if !client_tracks && tracker.ok_packet {
                p = Packet::new(p.seq, strip_session_track(&p.payload));
            }
            p.write_to(&mut buf);
            if buf.len() >= reply_buffer {
                if self.client.get_mut().write_all(&buf).await.is_err() {
                    return Err(Failure::ClientGone);
                }
                buf.clear();
                flushed = true;
            }
            match step {
                Step::More => {}
                Step::Done => break,
                Step::LocalInfile => {
                    if self.client.get_mut().write_all(&buf).await.is_err() {
                        return Err(Failure::ClientGone);
                    }
                    buf.clear();
                    flushed = true;
                    // Relay the file until the client's empty packet.
                    loop {
                        let Some(Ok(up)) = self.client.next().await else {
                            return Err(Failure::ClientGone);
                        };
                        let last = up.payload.is_empty();
                        if let Err(e) = backend.send(std::slice::from_ref(&up)).await {
                            return Err(io_failure(&e, true, up.seq.wrapping_add(1)));
                        }
                        if last {
                            break;
                        }
                    }
                    tracker.infile_sent();
                }
            }
        }
        if !buf.is_empty() && self.client.get_mut().write_all(&buf).await.is_err() {
            return Err(Failure::ClientGone);
        }
        if buf.capacity() <= 64 << 10 {
            buf.clear();
            self.reply_buf = buf;
        }
        backend.last_used = Instant::now();
        // Follow the session's state.
        if let Some((backend_id, params)) = tracker.prepared.filter(|_| tracker.err.is_none()) {
            if let Some(client_id) = new_statement {
                let text = String::from_utf8_lossy(&packets[0].payload[1..]);
                self.state.statements.insert(
                    client_id,
                    Statement {
                        prepare: packets[0].payload.clone(),
                        backend_id: Some(backend_id),
                        params,
                        types: None,
                        typed: false,
                        read_only: is_read_only(&text),
                    },
                );
            }
        }
        if tracker.err.is_none() {
            match cmd {
                com::RESET_CONNECTION => {
                    self.state.reset();
                    if let Some(b) = self.backend.as_mut() {
                        if let Err(e) = b.retrack().await {
                            tracing::warn!(session = self.id, error = %e, "could not re-enable session tracking after a reset");
                        }
                    }
                }
                com::INIT_DB => {
                    self.state.database =
                        Some(String::from_utf8_lossy(&packets[0].payload[1..]).into_owned());
                }
                _ => {}
            }
        }
        self.state.apply(&tracker.changes, tracker.status, sql);
        Ok(())
    }
}

/// The login: greeting, TLS when the client asks for it (and the proxy has a
/// certificate), the password check. `None` when the client went away or was refused
/// (it was then told why).
async fn accept_login(
    mut client: Framed<ClientStream, PacketCodec>,
    id: u64,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(Framed<ClientStream, PacketCodec>, Login)> {
    let info: ServerInfo = shared.server_info.lock().unwrap().clone();
    let scramble = handshake::nonce();
    handshake::greet(
        &mut client,
        id as u32,
        &info.version,
        info.capabilities,
        &scramble,
        shared.tls.is_some(),
    )
    .await
    .ok()?;
    let mut first = handshake::next(&mut client).await.ok()?;
    if let (true, Some(acceptor)) = (handshake::is_ssl_request(&first), &shared.tls) {
        // The client starts TLS right after its SSLRequest; whatever the packet reader
        // already holds is the beginning of the TLS handshake.
        let parts = client.into_parts();
        match parts.io.upgrade(acceptor, parts.read_buf.freeze()).await {
            Ok(stream) => client = Framed::new(stream, PacketCodec),
            Err(e) => {
                shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = id, %peer, error = %e, "TLS handshake with the client failed");
                return None;
            }
        }
        first = handshake::next(&mut client).await.ok()?;
    }
    let login = if shared.config.require_tls && !client.get_ref().is_tls() {
        Err(LoginError::Refuse(
            first.seq.wrapping_add(1),
            ER_SECURE_TRANSPORT_REQUIRED,
            "HY000",
            "Connections using insecure transport are prohibited: goneaway proxy requires TLS \
             (require_tls); connect with TLS (mariadb --ssl, mysql --ssl-mode=REQUIRED)"
                .into(),
        ))
    } else {
        handshake::authenticate(
            &mut client,
            first,
            scramble,
            &shared.accounts,
            &peer.ip().to_string(),
        )
        .await
    };
    match login {
        Ok(l) => Some((client, l)),
        Err(LoginError::Gone) => None,
        Err(LoginError::Refuse(seq, code, state, msg)) => {
            shared.stats.login_failures.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .error_sent(if code == ER_SECURE_TRANSPORT_REQUIRED {
                    "tls_required"
                } else {
                    "access_denied"
                });
            tracing::info!(session = id, %peer, "login refused: {msg}");
            let _ = client
                .send(Packet::new(seq, packet::err_payload(code, state, &msg)))
                .await;
            None
        }
    }
}

enum PrepareError {
    /// Answer the client with this error.
    Reply(u16, String, String),
    /// The backend failed before the command was sent.
    Backend(ProxyError),
}

fn statement_id(payload: &[u8]) -> Option<u32> {
    let mut r = Reader::new(payload);
    r.u8()?;
    r.u32()
}

fn rewrite_statement_id(packets: &[Packet], id: u32) -> Cow<'_, [Packet]> {
    // Client and server ids usually agree (both count from 1 per connection): no copy then.
    if packets[0].payload.len() < 5 || statement_id(&packets[0].payload) == Some(id) {
        return Cow::Borrowed(packets);
    }
    let mut out = packets.to_vec();
    let mut payload = BytesMut::from(&out[0].payload[..]);
    payload[1..5].copy_from_slice(&id.to_le_bytes());
    out[0] = Packet::new(out[0].seq, payload.freeze());
    Cow::Owned(out)
}

/// An OK packet for a client that did not negotiate `CLIENT_SESSION_TRACK`: the info as a
/// plain string, no session-state data. The common OK with neither is passed on as it is.
fn strip_session_track(payload: &Bytes) -> Bytes {
    let mut r = Reader::new(payload);
    let parsed = (|| {
        let header = r.u8()?;
        let affected = r.lenenc()?;
        let last_id = r.lenenc()?;
        let status = r.u16()?;
        let warnings = r.u16()?;
        let info = if r.remaining() > 0 {
            r.lenenc_bytes()?
        } else if status & status::SESSION_STATE_CHANGED == 0 {
            // Nothing after the warnings: already the plain form.
            return None;
        } else {
            &[][..]
        };
        Some((header, affected, last_id, status, warnings, info))
    })();
    // Unreadable, or nothing to strip: passed on as it is.
    let Some((header, affected, last_id, status, warnings, info)) = parsed else {
        return payload.clone();
    };
    let mut out = BytesMut::with_capacity(payload.len());
    out.put_u8(header);
    packet::put_lenenc(&mut out, affected);
    packet::put_lenenc(&mut out, last_id);
    out.put_u16_le(status & !status::SESSION_STATE_CHANGED);
    out.put_u16_le(warnings);
    out.extend_from_slice(info);
    out.freeze()
}

fn is_transient(e: &ProxyError) -> bool {
    match e {
        ProxyError::Server(s) => matches!(
            s.code,
            ER_CON_COUNT_ERROR
                | ER_SERVER_SHUTDOWN
                | ER_CONNECTION_KILLED
                | ER_HOST_IS_BLOCKED
                | CR_SERVER_LOST
        ),
        _ => e.is_disconnect(),
    }
}

fn cause_of_code(code: u16, sqlstate: &str, message: &str) -> Cause {
    goneaway_core::classify_code(code, Some(sqlstate), Some(message)).primary()
}

fn cause_of_error(e: &ProxyError) -> Cause {
    match e {
        ProxyError::Io { source, .. } => goneaway_core::classify_io(source.kind()).primary(),
        ProxyError::Server(s) => cause_of_code(s.code, &s.sqlstate, &s.message),
        ProxyError::Timeout(_) => Cause::NetworkDrop,
        _ => Cause::Unknown,
    }
}

/// The ERR a client gets when no backend could be had.
fn backend_error_for_client(e: &ProxyError, addr: &str) -> (u16, String, String) {
    match e {
        ProxyError::Server(s) => (
            s.code,
            s.sqlstate.clone(),
            format!("{} (from the server behind goneaway proxy)", s.message),
        ),
        ProxyError::Busy(msg) => (ER_CON_COUNT_ERROR, "08004".into(), msg.clone()),
        other => (
            CR_CONN_HOST_ERROR,
            "HY000".into(),
            format!("Can't connect to MySQL server on '{addr}' through goneaway proxy: {other}"),
        ),
    }
}
