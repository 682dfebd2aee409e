//! One client session: login, then the command loop that keeps a healthy backend under it.
//!
//! # What the client is told, and in which numbers
//!
//! A server error that ends the connection (`1927` for a KILL, `1053` for a shutdown,
//! MySQL 8's `4031`) reaches the client as the server sent it, number, SQLSTATE and text,
//! whenever the proxy cannot absorb it. Where the proxy itself must speak about a lost
//! backend it uses one number, `1927 ER_CONNECTION_KILLED` (MariaDB's own "Connection
//! was killed", what a KILLed session gets), with SQLSTATE `08S01` and a text that starts
//! with the phrase a direct client would show:
//!
//! | situation | message starts with |
//! |---|---|
//! | the statement was not run: state was lost (an open transaction, user variables…) | `MySQL server has gone away (Connection was killed by goneaway proxy: …` |
//! | the statement may have run (outcome unknown), or its reply was cut | `Lost connection to MySQL server during query (Connection was killed by goneaway proxy: …` |
//!
//! Why: the client-side numbers 2006 and 2013 cannot be sent: libmariadb (the `mariadb`
//! client, Ruby mysql2, Python mysqlclient) rejects an ERR packet carrying a client error
//! number as "2027 Received malformed packet". 1927 is a server number that the disconnect
//! logic of drivers and frameworks already knows: HikariCP and the JDBC drivers evict a
//! connection on SQLSTATE class `08`; Rails maps 1927 to `ConnectionFailed`; SQLAlchemy's
//! PyMySQL dialect looks for "connection was killed"; Laravel's `DetectsLostConnections`
//! looks for "server has gone away" and "Lost connection"; go-sql-driver hands a server
//! ERR back as a `*mysql.MySQLError` (never `driver.ErrBadConn`), so `database/sql` does
//! not replay a statement whose outcome is unknown. A driver that closes its connection on
//! it loses nothing: what the error reports lost is lost on a new connection too. The
//! proxy's other errors (a command it does not forward, a limit) keep `1105`/`1040`.
//!
//! # A lost transaction
//!
//! A backend lost while the session had a transaction open (`BEGIN`, or autocommit off
//! and a write run since the last COMMIT or ROLLBACK) leaves the session in the
//! *failed-transaction state*: the server rolled the transaction back, and nothing the
//! client sends runs until the client has ended it. `ROLLBACK` ends it with OK; `COMMIT`
//! ends it with an error (nothing was committed); every other statement is refused with
//! 1927 and runs nowhere. The session then goes on with a fresh backend.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use goneaway_core::codes::{
    CR_SERVER_LOST, ER_ACCESS_DENIED_ERROR, ER_CLIENT_INTERACTION_TIMEOUT, ER_CONNECTION_KILLED,
    ER_CON_COUNT_ERROR, ER_HOST_IS_BLOCKED, ER_NET_PACKET_TOO_LARGE, ER_NEW_ABORTING_CONNECTION,
    ER_SERVER_SHUTDOWN,
};
use goneaway_core::Cause;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::accounts::Verified;
use crate::backend::{
    Backend, Carried, ConnectOptions, Expect, Fit, IdleEvent, PoolKey, ReplyTracker, StallWatch,
    Step, Taken,
};
use crate::frontend::handshake::{self, Login, LoginError};
use goneaway_core::sql::is_read_only;

use crate::config::BackendTarget;
use crate::frontend::state::{ends_transaction, first_word, SessionState, Statement};
use crate::frontend::txlog::{self, ReplyDigest, TxEntry, TxLog};
use crate::net::packet::{self, caps, com, status, Reader};
use crate::net::{ClientStream, ErrInfo, Packet, PacketCodec};
use crate::server::{Generation, ServerInfo, Shared};
use crate::ProxyError;

/// The error number of errors the proxy itself sends (`ER_UNKNOWN_ERROR`): clients show
/// the message, which says what happened. A connection-level SQLSTATE (08xxx) is avoided on
/// purpose: many drivers close the connection on one, and this one stays usable.
const ER_PROXY: u16 = 1105;
/// The number of the proxy's lost-connection errors (see the module docs for why not 2006
/// or 2013).
const LOST_CODE: u16 = ER_CONNECTION_KILLED;
/// Their SQLSTATE (JDBC's "communication link failure").
const SQLSTATE_LOST: &str = "08S01";
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
    /// `cause`: known, or what the reconnection must complete. `server_err`: the
    /// server's own error packet, when it sent one.
    Backend {
        flushed: bool,
        not_run: bool,
        seq: u8,
        cause: Result<Cause, Unexplained>,
        detail: String,
        server_err: Option<ErrInfo>,
    },
    /// The client went away.
    ClientGone,
}

/// What is known of a backend lost without an error packet, until the reconnection adds
/// whether the server restarted.
#[derive(Debug, Clone, Copy)]
struct Unexplained {
    /// How long the backend had been idle, when it was lost between commands.
    idle: Option<Duration>,
    /// Reset rather than closed.
    reset: bool,
    /// Nothing was lost with it: count it as absorbed once the cause is known.
    absorbed: bool,
}

impl Unexplained {
    /// The cause, given whether the server restarted meanwhile (refused the reconnection,
    /// or came back with a later start time).
    fn cause(&self, restarted: bool, wait_timeout: Duration) -> Cause {
        match (restarted, self.idle) {
            // MariaDB closes its connections without a word on a shutdown as on a crash,
            // idle or running a statement: the evidence proves the server restarted, not
            // how it went down.
            (true, _) => Cause::ServerRestart,
            (false, Some(idle)) if idle + Duration::from_millis(500) >= wait_timeout => {
                Cause::IdleTimeout
            }
            (false, _) if self.reset => Cause::NetworkDrop,
            (false, _) => Cause::ConnectionKilled,
        }
    }
}

enum Event {
    Shutdown,
    Client(Option<Packet>),
    BackendIdle(IdleEvent),
    Keepalive,
    ClientIdle,
}

/// A client session.
pub struct Session {
    id: u64,
    client: Framed<ClientStream, PacketCodec>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// The capabilities the client negotiated.
    client_caps: u32,
    /// MariaDB extended capabilities agreed with the client.
    client_mariadb_caps: u32,
    charset: u8,
    backend: Option<Backend>,
    state: SessionState,
    /// Unrestorable state lost with a backend that died while the session was idle, and
    /// the cause: the next command is answered with an error that says so.
    lost: Option<(String, Cause)>,
    /// The size from which the server refuses a command packet, as the last backend read
    /// it ([`Backend::packet_limit`]).
    packet_limit: usize,
    /// The server's `wait_timeout` for this session, as last read.
    wait_timeout: Duration,
    /// A backend lost without the server saying why (MariaDB closes silently on KILL and
    /// on shutdown): the cause is told by the reconnection.
    unexplained: Option<Unexplained>,
    /// The cause of the last unexplained loss, once the reconnection told it.
    explained: Option<Cause>,
    /// When the last backend was opened, on the proxy's clock (seconds since the epoch): a
    /// server that started after it restarted since.
    last_backend_opened: Option<i64>,
    /// The server's thread id of the last backend.
    last_thread_id: Option<u32>,
    /// The failed-transaction state: the open transaction was lost with its backend (see
    /// the module docs), with the cause (`None` until the reconnection tells it) and what
    /// happened.
    failed_tx: Option<(Option<Cause>, String)>,
    /// The nonce of the client's login, which `COM_CHANGE_USER` scrambles with again.
    scramble: Vec<u8>,
    /// The server and the account this session logs in to it with (see
    /// [`crate::accounts`]).
    target: BackendTarget,
    /// Whether [`Session::target`] is the server's own account of the client (whose
    /// password changes the session follows), not the backend URL's.
    server_account: bool,
    /// Who the client proved to be (the target is derived from it and the backend).
    verified: Verified,
    /// The configuration this session follows: the current one, taken again before each
    /// command when a reload made a newer one.
    gen: Arc<Generation>,
    /// A reload moved the backend, or the cluster has a new writer: the session's server
    /// connection is to the old server and is given up at the next command that can move.
    backend_moved: bool,
    /// The cluster writer generation last compared before a command (see
    /// [`crate::router::writer_moved`]).
    writer_generation: u64,
    /// The open transaction's statements, for a replay (see [`txlog`]).
    tx_log: Option<TxLog>,
    /// The digest of the reply being relayed, when the command is recorded.
    digest: Option<ReplyDigest>,
    /// Set while relaying a reply that makes its transaction impossible to replay.
    reply_unreplayable: Option<&'static str>,
    /// Why the last lost transaction could not be replayed, for the client's error.
    replay_refusal: Option<String>,
    /// The open transaction wrote: its COMMIT gets a commit mark.
    tx_wrote: bool,
    /// The commit mark added to the COMMIT being forwarded.
    pending_mark: Option<[u8; 16]>,
    /// Commit marks made by this session (half of each token).
    commits: u32,
    /// The server thread id and opening time of the last backend lost: the thread a
    /// replay or a COMMIT's resolution must see gone first.
    lost_backend: (Option<u32>, Option<i64>),
    /// While set, [`Session::forward`] keeps the reply in [`Session::held`] instead of
    /// sending it (an autocommit write waiting for its COMMIT).
    holding: bool,
    held: Option<BytesMut>,
    /// For the next backend only: limits it need not read again (see
    /// [`ConnectOptions::known_limits`]).
    known_limits: Option<(Duration, usize)>,
    /// The reply buffer, kept between commands (when small) so that a reply costs no
    /// allocation.
    reply_buf: BytesMut,
    /// The next backend is opened, not taken from the shared pool: at login, and after a
    /// loss (a new connection's thread id and the server's start are the evidence that
    /// explains the loss, and a replay must see the old thread end first).
    after_loss: bool,
    /// Keep the backend through the next command too: the reply had warnings (`SHOW
    /// WARNINGS` reads them on the same connection), an auto-increment id, or the
    /// statement asked for `SQL_CALC_FOUND_ROWS`.
    hold_next: bool,
    /// Prepared statements (client ids) with an open cursor, and those sent long data
    /// not yet executed: both live in the backend.
    cursors: std::collections::HashSet<u32>,
    long_data: std::collections::HashSet<u32>,
    /// Pin reasons this session has counted and logged.
    pins_told: std::collections::BTreeSet<&'static str>,
    /// The statement that last pinned state (for the pin's log line).
    pin_statement: Option<String>,
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
        let mut client = Framed::new(ClientStream::Plain(stream), PacketCodec::for_client());
        let too_many = |shared: &Shared| {
            shared.stats.error_sent("too_many_clients");
            let msg = format!(
                "Too many connections (goneaway proxy: max_clients = {})",
                shared.current().config.max_clients
            );
            packet::err_payload(ER_CON_COUNT_ERROR, "08004", &msg)
        };
        if over_limit {
            let _ = client.send(Packet::new(0, too_many(&shared))).await;
            return;
        }
        // Until it has logged in, the connection holds one of the pending-login places
        // (the oldest is closed when a new one needs room) and has login_timeout.
        let mut pending = shared.gate.enter(id, peer.ip());
        let gen = shared.current();
        let login = tokio::select! {
            login = accept_login(client, id, peer, &shared, &gen) => login,
            _ = pending.evicted() => {
                tracing::debug!(session = id, %peer, "pending login closed to make room for a newer one");
                None
            }
        };
        drop(pending);
        let Some((mut client, login)) = login else {
            return;
        };
        // Logged in: from here on the session counts against max_clients, and its packets
        // may be as long as the server takes (the 1153 path bounds what is buffered).
        if shared.stats.clients.fetch_add(1, Ordering::Relaxed)
            >= shared.current().config.max_clients as i64
        {
            shared.stats.clients.fetch_sub(1, Ordering::Relaxed);
            let _ = client
                .send(Packet::new(login.next_seq, too_many(&shared)))
                .await;
            return;
        }
        let _counted = ClientCount(shared.clone());
        client.codec_mut().max_packet = usize::MAX;
        let mut session = Session {
            id,
            client,
            peer,
            client_caps: login.response.capabilities & caps::PROXY_SUPPORTED,
            client_mariadb_caps: login.response.mariadb_capabilities
                & caps::mariadb::PROXY_SUPPORTED,
            charset: login.response.charset,
            backend: None,
            state: SessionState {
                // No database unless the client names one, as directly: DATABASE() is
                // NULL. (The backend URL's database is only the proxy's own.)
                database: login.response.database.clone(),
                ..SessionState::default()
            },
            lost: None,
            packet_limit: 16 << 20,
            wait_timeout: Duration::from_secs(28800),
            unexplained: None,
            explained: None,
            last_backend_opened: None,
            last_thread_id: None,
            failed_tx: None,
            scramble: login.scramble.clone(),
            target: login.verified.target(&gen.config.backend),
            verified: login.verified.clone(),
            gen,
            backend_moved: false,
            writer_generation: 0,
            tx_log: None,
            digest: None,
            reply_unreplayable: None,
            replay_refusal: None,
            tx_wrote: false,
            pending_mark: None,
            commits: 0,
            lost_backend: (None, None),
            holding: false,
            held: None,
            server_account: matches!(login.verified, Verified::Server { .. }),
            known_limits: None,
            reply_buf: BytesMut::with_capacity(16 << 10),
            // The login's backend is opened, never taken from the pool: it is the server's
            // own check of the client's password and database, and a new connection gets
            // the server's current limits, as a direct login would.
            after_loss: true,
            hold_next: false,
            cursors: Default::default(),
            long_data: Default::default(),
            pins_told: Default::default(),
            pin_statement: None,
            shared,
        };
        // Log in to the server now, so that a wrong database or an unreachable server is
        // reported at login, as a direct connection would.
        match session.fresh_backend().await {
            Ok(()) => {}
            // The server accepted the login, then failed its init_connect on the first
            // command and closed: directly, the client's login succeeds and its first
            // command gets the server's 1184 (MariaDB's main.init_connect), so the same here.
            Err(ProxyError::Server(e)) if e.code == ER_NEW_ABORTING_CONNECTION => {
                session.init_connect_failed(login.next_seq, e).await;
                return;
            }
            Err(e) => {
                let (code, state, msg) =
                    backend_error_for_client(&e, &session.gen.config.backend.addr());
                session
                    .send_err(login.next_seq, code, &state, "backend_unavailable", &msg)
                    .await;
                return;
            }
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
        // An idle client holds no server connection.
        session.release_backend();
        session.serve(&mut shutdown).await;
        session.release_backend();
        if let Some(b) = session.backend.take() {
            b.quit().await;
        }
    }

    /// The login succeeded but the server's init_connect failed: OK to the login, the
    /// server's error to the first command, then the connection closes, as the server does.
    async fn init_connect_failed(&mut self, login_seq: u8, e: ErrInfo) {
        self.shared.stats.logins.fetch_add(1, Ordering::Relaxed);
        if self
            .client
            .send(Packet::new(
                login_seq,
                packet::ok_payload(status::AUTOCOMMIT),
            ))
            .await
            .is_err()
        {
            return;
        }
        let first = tokio::time::timeout(self.gen.config.login_timeout, self.client.next());
        if let Ok(Some(Ok(p))) = first.await {
            if p.first() != Some(com::QUIT) {
                self.send_err(
                    p.seq.wrapping_add(1),
                    e.code,
                    &e.sqlstate,
                    "server_error",
                    &e.message,
                )
                .await;
            }
        }
    }

    fn keepalive_interval(&self) -> Duration {
        self.gen
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
        // The client's own idle limit, re-armed the same lazy way.
        let idle_limit = self.gen.config.client_idle_timeout;
        let mut idle_timer = Box::pin(tokio::time::sleep(
            idle_limit.unwrap_or(Duration::from_secs(86_400)),
        ));
        let mut last_command = Instant::now();
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
                    _ = idle_timer.as_mut(), if idle_limit.is_some() => Event::ClientIdle,
                }
            };
            if let (Event::ClientIdle, Some(limit)) = (&event, idle_limit) {
                let due = last_command + limit;
                if due > Instant::now() {
                    idle_timer.as_mut().reset(due.into());
                    continue;
                }
            }
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
                    self.release_backend();
                    last_command = Instant::now();
                }
                Event::ClientIdle => {
                    // As MySQL 8 tells a client that wait_timeout disconnected: 4031,
                    // which drivers know as a lost connection.
                    self.shared
                        .stats
                        .client_idle_closed
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.stats.error_sent("client_idle_timeout");
                    let limit = idle_limit.unwrap_or_default();
                    tracing::info!(session = self.id, peer = %self.peer, ?limit, "closing a client session idle past client_idle_timeout");
                    let msg = format!(
                        "The client was disconnected by the server because of inactivity (goneaway proxy: client_idle_timeout = {}s)",
                        limit.as_secs_f64()
                    );
                    let _ = self
                        .client
                        .send(Packet::new(
                            0,
                            packet::err_payload(ER_CLIENT_INTERACTION_TIMEOUT, "HY000", &msg),
                        ))
                        .await;
                    return;
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
        if self.gen.config.multiplex && self.keep_reason(&backend).is_none() {
            // Held for a follow-up that did not come: shared again.
            self.hold_next = false;
            self.backend = Some(backend);
            self.release_backend();
            return;
        }
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
        match backend.ping(self.gen.config.connect_timeout).await {
            Ok(()) => self.backend = Some(backend),
            Err(e) => {
                let idle = backend.last_used.elapsed();
                self.mark_lost(loss_of(&e, Some(idle)), &e.to_string());
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
        let silent = |reset: bool| Unexplained {
            idle: Some(idle),
            reset,
            absorbed: false,
        };
        let (cause, detail) = match ev {
            IdleEvent::Packet(p) => match packet::parse_err(&p.payload) {
                Some(e) => (
                    Ok(cause_of_code(e.code, &e.sqlstate, &e.message)),
                    e.to_string(),
                ),
                None => (Ok(Cause::OutOfSync), "an unsolicited packet".to_owned()),
            },
            IdleEvent::Eof if idle + Duration::from_millis(500) >= self.wait_timeout => {
                (Ok(Cause::IdleTimeout), "closed after wait_timeout".into())
            }
            IdleEvent::Eof => (
                Err(silent(false)),
                "the server closed the connection without a reason".into(),
            ),
            IdleEvent::Error(e) => (
                Err(silent(e.kind() == std::io::ErrorKind::ConnectionReset)),
                e.to_string(),
            ),
        };
        self.mark_lost(cause, &detail);
    }

    /// Records a lost backend: absorbed if nothing is lost with it, else remembered for
    /// the next command's error (a lost transaction: the failed-transaction state). The
    /// cause is known, or `Err` with what the reconnection must complete.
    fn mark_lost(&mut self, cause: Result<Cause, Unexplained>, detail: &str) {
        self.lost_backend = (self.last_thread_id, self.last_backend_opened);
        self.backend = None;
        self.after_loss = true;
        self.cursors.clear();
        self.long_data.clear();
        self.state.backend_replaced();
        let in_tx = self.state.in_transaction;
        let what = self.state.unrestorable();
        match (cause, what) {
            (cause, Some(what)) => {
                tracing::info!(
                    session = self.id,
                    cause = cause
                        .map(Cause::as_str)
                        .unwrap_or("to be told by the reconnection"),
                    detail,
                    "backend lost with unrestorable state: {what}"
                );
                let known = match cause {
                    Ok(c) => Some(c),
                    Err(u) => {
                        self.unexplained = Some(u);
                        None
                    }
                };
                if !self.state.pinned.is_empty() {
                    self.tx_log = None;
                }
                if in_tx {
                    self.failed_tx = Some((
                        known,
                        format!("while the session was idle, and with it {what}"),
                    ));
                } else {
                    self.lost = Some((what, known.unwrap_or(Cause::Unknown)));
                }
                self.state.forget_pinned();
            }
            (Err(mut u), None) => {
                tracing::debug!(
                    session = self.id,
                    detail,
                    "idle backend closed; will be replaced"
                );
                u.absorbed = true;
                self.unexplained = Some(u);
            }
            (Ok(cause), None) => {
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

    /// The cause of the last unexplained loss: told by the reconnection if there was one,
    /// else by one attempt to reconnect now (refused right after the loss: the server went
    /// down).
    async fn explain_loss(&mut self) -> Cause {
        if self.unexplained.is_some() && self.backend.is_none() {
            let _ = self.fresh_backend_within(Duration::ZERO).await;
        }
        if let Some(u) = self.unexplained.take() {
            return u.cause(true, self.wait_timeout);
        }
        self.explained.take().unwrap_or(Cause::Unknown)
    }

    /// Connects a backend for this session and restores its state, waiting for a
    /// restarting server up to the configured time.
    async fn fresh_backend(&mut self) -> Result<(), ProxyError> {
        self.fresh_backend_within(self.gen.config.server_wait).await
    }

    /// [`Session::fresh_backend`], waiting for the server at most `wait`.
    async fn fresh_backend_within(&mut self, wait: Duration) -> Result<(), ProxyError> {
        let gen = self.gen.clone();
        let config = &gen.config;
        // In front of a cluster a backend may also wait for the writer (crate::router).
        let wait = if self.shared.monitor.is_cluster() && !wait.is_zero() {
            wait.max(config.switchover_wait)
        } else {
            wait
        };
        let deadline = Instant::now() + wait;
        let pooled = config.multiplex && !self.after_loss;
        if pooled {
            // The pool is keyed by server: in front of a cluster, the writer's first.
            self.aim_at_writer(deadline).await?;
            if self.take_pooled(None).await? {
                return Ok(());
            }
        }
        // A shared connection found closed: the next one is opened, as after any loss.
        let pooled = pooled && !self.after_loss;
        let slots = self.shared.backend_slots.clone();
        let slot_deadline = tokio::time::Instant::now() + config.backend_slot_wait;
        let permit = loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                break p;
            }
            if config.multiplex {
                // A connection of another account or shape, unused: its slot serves better.
                if let Some(old) = self.shared.pool.evict_oldest() {
                    old.quit().await;
                    continue;
                }
            }
            // Wait for a slot, or (sharing) for a connection of this key put back. A session
            // that must open a new one (a login) has connections put back closed for it.
            let mut handover = pooled.then(|| self.shared.pool.wait_for(&self.pool_key()));
            let shared = self.shared.clone();
            let _slot_wait = (config.multiplex && !pooled).then(|| shared.pool.wait_for_slot());
            let got = tokio::select! {
                p = slots.clone().acquire_owned() => Some(p),
                h = async { match handover.as_mut() { Some(rx) => rx.await.ok(), None => std::future::pending().await } }, if pooled => {
                    handover = None;
                    if self.take_pooled(h).await? {
                        return Ok(());
                    }
                    None
                }
                () = tokio::time::sleep_until(slot_deadline) => {
                    return Err(ProxyError::Busy(format!(
                        "Too many connections (goneaway proxy: all max_backends = {} server connections stayed in use for {:?}; \
                         raise max_backends or lower the number of clients)",
                        config.max_backends, config.backend_slot_wait
                    )));
                }
            };
            // No longer waiting: a connection handed over meanwhile goes back.
            if let Some(mut rx) = handover {
                rx.close();
                if let Ok((b, owner, carried)) = rx.try_recv() {
                    self.shared.pool.put(self.pool_key(), b, owner, carried);
                }
            }
            if let Some(p) = got {
                break p.map_err(|_| ProxyError::Timeout("the proxy is shutting down".into()))?;
            }
        };
        let opts = ConnectOptions {
            client_capabilities: self.client_caps,
            client_mariadb_capabilities: self.client_mariadb_caps,
            charset: self.charset,
            database: self.state.database.clone(),
            timeout: config.connect_timeout,
            known_limits: self.known_limits.take(),
        };
        let mut delay = Duration::from_millis(50);
        let mut refused = false;
        let mut backend = loop {
            // Each attempt asks where the writer is now: a crashed one is replaced by the
            // monitor's next verdict.
            self.aim_at_writer(deadline).await?;
            match Backend::connect(&self.target, &opts, self.shared.stats.clone()).await {
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
        backend.watch_stalls(self.stall_watch());
        self.after_loss = false;
        // The evidence of a restart: refused for a while, or a server that started later
        // than the one behind the previous backend (its Uptime is shorter than the time
        // since that start).
        // Thread ids only grow during a server's life, so a smaller one proves a restart
        // too (the Uptime rule alone cannot see a restart within a second or two).
        // The replacement of a lost backend reads the server's start time (its Uptime) as
        // evidence; other new backends (the first, after an idle release, for a change of
        // user) leave the server's counters alone.
        if self.last_backend_opened.is_some() && self.unexplained.is_some() {
            if let Err(e) = backend.read_server_started().await {
                if e.is_disconnect() {
                    return Err(e);
                }
            }
        }
        let restarted = refused
            || matches!((self.last_backend_opened, backend.server_started), (Some(opened), Some(started)) if started > opened + 1)
            || self
                .last_thread_id
                .is_some_and(|id| backend.connection_id < id);
        self.last_backend_opened = Some(crate::backend::conn::unix_now());
        self.last_thread_id = Some(backend.connection_id);
        if let Some(u) = self.unexplained.take() {
            let cause = u.cause(restarted, self.wait_timeout);
            if u.absorbed {
                self.shared.stats.absorbed(cause.as_str());
            } else {
                self.explained = Some(cause);
            }
        }
        for sql in self.state.restore_statements() {
            if let Err(e) = backend.simple(&sql).await {
                if e.is_disconnect() {
                    return Err(e);
                }
                tracing::warn!(session = self.id, error = %e, "could not restore `{sql}`");
            }
        }
        self.packet_limit = backend.packet_limit;
        self.wait_timeout = backend.wait_timeout;
        *self.shared.server_info.lock().unwrap() = ServerInfo {
            version: backend.server_version.clone(),
            capabilities: backend.server_capabilities,
            mariadb_capabilities: backend.server_mariadb_capabilities,
        };
        self.state.backend_replaced();
        self.backend = Some(backend);
        self.backend_moved = false;
        Ok(())
    }

    /// What makes a shared connection usable by this session (see [`PoolKey`]).
    fn pool_key(&self) -> PoolKey {
        PoolKey {
            server: self.target.addr(),
            user: self.target.user.clone(),
            capabilities: self.client_caps,
            mariadb_capabilities: self.client_mariadb_caps,
            charset: self.charset,
        }
    }

    /// The state this session's connection carries, or wants a shared one to carry.
    fn carried(&self, prepared: usize) -> Carried {
        Carried {
            database: self.state.database.clone(),
            variables: self.state.variables.clone(),
            prepared,
        }
    }

    /// Takes a shared connection for this session: `handed`, one handed over while the
    /// session waited, else the best in the pool (see [`crate::backend::pool`]), and
    /// gives it the session's state. `Ok(false)`: none to be had; `Err`: the server
    /// refused the session's state (its database is gone, say), as it would a login.
    async fn take_pooled(
        &mut self,
        mut handed: Option<crate::backend::pool::Handover>,
    ) -> Result<bool, ProxyError> {
        let key = self.pool_key();
        let wants = self.carried(0);
        loop {
            let (mut b, fit) = match handed.take() {
                Some((b, owner, carried)) => {
                    match crate::backend::pool::fit(owner, &carried, self.id, &wants) {
                        Some(fit) => (b, fit),
                        None => {
                            // It cannot serve this session; another may take it.
                            self.shared.pool.put(key.clone(), b, owner, carried);
                            continue;
                        }
                    }
                }
                None => match self.shared.pool.take(&key, self.id, &wants) {
                    Taken::Live(b, fit) => (b, fit),
                    Taken::None => return Ok(false),
                    Taken::Dead(b, ev, _) => {
                        // A loss like that of the session's own idle backend, explained
                        // the same way (a fresh connection is the evidence), never seen
                        // by the client.
                        self.shared
                            .stats
                            .pool_closed
                            .fetch_add(1, Ordering::Relaxed);
                        self.last_thread_id = Some(b.connection_id);
                        self.last_backend_opened = Some(b.opened_unix);
                        self.backend = Some(b);
                        self.backend_lost_idle(ev);
                        return Ok(false);
                    }
                },
            };
            match self.adopt(&mut b, fit).await {
                Ok(()) => {
                    self.backend = Some(b);
                    return Ok(true);
                }
                Err(ProxyError::Server(e))
                    if fit == Fit::Reset && e.code != ER_CONNECTION_KILLED =>
                {
                    b.quit().await;
                    return Err(ProxyError::Server(e));
                }
                Err(e) => {
                    tracing::debug!(session = self.id, error = %e, "a shared connection failed when taken; trying another");
                    self.shared
                        .stats
                        .pool_closed
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Makes a shared connection this session's: as it is when it was the session's own,
    /// otherwise reset and given the session's variables and database (see [`Fit`]).
    async fn adopt(&mut self, b: &mut Backend, fit: Fit) -> Result<(), ProxyError> {
        let stats = self.shared.stats.clone();
        match fit {
            Fit::Own => {
                stats.pool_own.fetch_add(1, Ordering::Relaxed);
            }
            Fit::SameState => {
                stats.pool_same_state.fetch_add(1, Ordering::Relaxed);
                self.state.backend_replaced();
            }
            Fit::Reset => {
                stats.pool_reset.fetch_add(1, Ordering::Relaxed);
                b.reset_connection().await?;
                for sql in self.state.restore_statements() {
                    if let Err(e) = b.simple(&sql).await {
                        if e.is_disconnect() {
                            return Err(e);
                        }
                        tracing::warn!(session = self.id, error = %e, "could not restore `{sql}`");
                    }
                }
                if let Some(db) = &self.state.database {
                    b.simple(&format!("USE `{}`", db.replace('`', "``")))
                        .await?;
                }
                self.state.backend_replaced();
            }
        }
        b.watch_stalls(self.stall_watch());
        self.last_thread_id = Some(b.connection_id);
        self.last_backend_opened = Some(b.opened_unix);
        self.packet_limit = b.packet_limit;
        self.wait_timeout = b.wait_timeout;
        self.backend_moved = false;
        Ok(())
    }

    /// What keeps this session's connection from being shared now, if anything:
    /// `Some(None)` for work in progress (a transaction, a lost state to report),
    /// `Some(Some(reason))` for a pin (counted under that reason).
    fn keep_reason(&self, b: &Backend) -> Option<Option<&'static str>> {
        if self.state.in_transaction
            || self.failed_tx.is_some()
            || self.lost.is_some()
            || self.holding
            || self.backend_moved
        {
            return Some(None);
        }
        if let Some(p) = self.state.pinned.iter().next() {
            return Some(Some(crate::frontend::state::pin_reason(p)));
        }
        if !self.cursors.is_empty() {
            return Some(Some("cursor"));
        }
        if !self.long_data.is_empty() {
            return Some(Some("long_data"));
        }
        if b.sandboxed {
            return Some(Some("sandboxed_password"));
        }
        None
    }

    /// After a command: gives the connection back to the shared pool when nothing keeps
    /// it (see [`Session::keep_reason`]); a pin is counted and logged once per session and
    /// reason, with the statement that made it and how to avoid it.
    fn release_backend(&mut self) {
        if !self.gen.config.multiplex {
            return;
        }
        let Some(b) = self.backend.as_ref() else {
            return;
        };
        if std::mem::take(&mut self.hold_next) {
            return;
        }
        match self.keep_reason(b) {
            None => {}
            Some(None) => return,
            Some(Some(reason)) => {
                if self.pins_told.insert(reason) {
                    self.shared.stats.pinned(reason);
                    tracing::info!(
                        session = self.id,
                        reason,
                        statement = self.pin_statement.as_deref().unwrap_or(""),
                        "this session keeps its server connection to itself from now on: {}",
                        crate::frontend::state::pin_advice(reason)
                    );
                }
                return;
            }
        }
        let b = self.backend.take().expect("checked above");
        let carried = self.carried(b.prepared);
        self.shared.pool.put(self.pool_key(), b, self.id, carried);
    }

    /// In front of a cluster, points the session's target at the writer (waiting for one
    /// until `deadline`; see [`crate::router::aim`]).
    async fn aim_at_writer(&mut self, deadline: Instant) -> Result<(), ProxyError> {
        if crate::router::aim(&self.shared, &mut self.target, deadline).await? {
            // Thread ids and start times name connections within one server's life: the
            // old server's say nothing here, and its lost thread cannot be killed or
            // waited for on this one (end_old_thread checks lost_backend).
            self.last_backend_opened = None;
            self.last_thread_id = None;
            self.lost_backend = (None, None);
        }
        Ok(())
    }

    /// How this session's backend reads are watched for replies that will never come.
    fn stall_watch(&self) -> Option<StallWatch> {
        let config = &self.gen.config;
        config.stall_check.map(|every| StallWatch {
            target: self.target.clone(),
            every,
            connect_timeout: config.connect_timeout,
            give_up: config.server_wait,
            stats: self.shared.stats.clone(),
        })
    }

    /// [`Session::fresh_backend`], telling the client (at `seq`) why when no backend could
    /// be had: `Err(alive)`, where `alive` says whether the client got the error.
    async fn fresh_backend_or_tell(&mut self, seq: u8) -> Result<(), bool> {
        let Err(e) = self.fresh_backend().await else {
            return Ok(());
        };
        let (code, state, msg) = backend_error_for_client(&e, &self.gen.config.backend.addr());
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

    /// Takes the configuration a reload put in force. When the backend moved to another
    /// server, later connections go there, and the one in use is given up at the next
    /// command that can move ([`Session::follow_backend_move`]).
    fn follow_reload(&mut self) {
        let gen = self.shared.current();
        let (old, new) = (&self.gen.config.backend, &gen.config.backend);
        if old != new {
            self.target = if self.server_account {
                BackendTarget {
                    host: new.host.clone(),
                    port: new.port,
                    database: new.database.clone(),
                    ..self.target.clone()
                }
            } else {
                self.verified.target(new)
            };
            if (&old.host, old.port) != (&new.host, new.port) && self.backend.is_some() {
                self.backend_moved = true;
            }
        }
        self.gen = gen;
    }

    /// After a reload moved the backend: gives up the connection to the old server before
    /// a command that does not depend on it, when nothing lives only in that connection
    /// (no transaction, temporary table, lock, pending long data…). The state is restored
    /// on the new server as after any replacement.
    async fn follow_backend_move(&mut self, cmd: u8) {
        let movable = matches!(
            cmd,
            com::QUERY | com::PING | com::INIT_DB | com::STMT_PREPARE | com::FIELD_LIST
        );
        if !movable || self.failed_tx.is_some() || self.state.unrestorable().is_some() {
            return;
        }
        self.backend_moved = false;
        if let Some(b) = self.backend.take() {
            tracing::info!(
                session = self.id,
                backend = %self.target.addr(),
                "the backend moved (a reload, or the cluster's new writer); the session follows it"
            );
            self.state.backend_replaced();
            // The new server's thread ids and start time say nothing about the old one.
            self.last_backend_opened = None;
            self.last_thread_id = None;
            b.quit().await;
        }
    }

    /// Handles one command; `false` ends the session.
    async fn command(&mut self, first: Packet) -> bool {
        let started = Instant::now();
        if self.shared.generation.load(Ordering::Acquire) != self.gen.number {
            self.follow_reload();
        }
        // In front of a cluster, a new writer: a backend on the old one is given up at the
        // next command that can move, as after a reload (crate::router).
        let writer_generation = self.shared.monitor.generation();
        if writer_generation != self.writer_generation {
            self.writer_generation = writer_generation;
            if self.backend.is_some() && crate::router::writer_moved(&self.shared, &self.target) {
                self.backend_moved = true;
            }
        }
        // A large command on a session without a backend: the limit is the one of the
        // backend it will run on (the global max_allowed_packet may have changed since the
        // last one was set up), so that backend comes first. Failing that, the last limit
        // stands and the command's own path reports the lost server.
        if self.backend.is_none()
            && self.failed_tx.is_none()
            && (first.continues() || first.payload.len() >= self.packet_limit.min(16 << 10))
        {
            let _ = self.fresh_backend_within(Duration::ZERO).await;
        }
        // The whole logical packet, or, from the server's limit on, only its size.
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
            if total < self.packet_limit {
                packets.push(p);
            }
        }
        let reply_seq = last_seq.wrapping_add(1);
        if total >= self.packet_limit {
            self.shared
                .stats
                .oversize_rejections
                .fetch_add(1, Ordering::Relaxed);
            // The server's own words and SQLSTATE; the explanation goes to the log. Unlike
            // the server, the proxy did not send it, so the connection stays usable.
            tracing::info!(
                session = self.id,
                bytes = total,
                limit = self.packet_limit,
                "refused a statement over the server's max_allowed_packet (ERR 1153); the session goes on. \
                 Send smaller statements (chunk bulk writes) or raise max_allowed_packet on the server"
            );
            return self
                .send_err(
                    reply_seq,
                    ER_NET_PACKET_TOO_LARGE,
                    "08S01",
                    "packet_too_large",
                    "Got a packet bigger than 'max_allowed_packet' bytes",
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
        let sql = (cmd == com::QUERY).then(|| String::from_utf8_lossy(&packets[0].payload[1..]));
        // The text the transaction-control decisions read: the query's, or for a prepared
        // BEGIN, COMMIT or ROLLBACK (drivers such as sysbench prepare them) its keyword.
        let tx_sql: Option<Cow<'_, str>> = match cmd {
            com::STMT_EXECUTE => statement_id(&packets[0].payload)
                .and_then(|id| self.state.statements.get(&id))
                .and_then(|st| st.control)
                .map(Cow::Borrowed),
            _ => sql.clone(),
        };
        let waits_for_tx = !matches!(
            cmd,
            com::PING | com::STMT_PREPARE | com::RESET_CONNECTION | com::STATISTICS
        );
        // A transaction lost while the session was idle: run it again before this command,
        // unless the command is the ROLLBACK that gives it up anyway.
        if self.failed_tx.is_some()
            && waits_for_tx
            && self.tx_log.is_some()
            && !(ends_transaction(tx_sql.as_deref())
                && tx_sql
                    .as_deref()
                    .is_some_and(|s| first_word(s) == "rollback"))
        {
            match self.replay_transaction().await {
                Ok(()) => {
                    let (cause, _) = self.failed_tx.take().expect("checked above");
                    let c = cause
                        .or_else(|| self.explained.take())
                        .unwrap_or(Cause::Unknown);
                    self.shared.stats.absorbed(c.as_str());
                }
                Err(why) => self.replay_refusal = Some(why),
            }
        }
        if self.failed_tx.is_some() && waits_for_tx {
            return self.refuse_in_failed_tx(tx_sql.as_deref()).await;
        }
        if let Some((what, cause)) = self.lost.take() {
            let cause = if cause == Cause::Unknown {
                self.explain_loss().await
            } else {
                cause
            };
            let msg = format!(
                "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost while this session was idle (cause: {cause}), and with it {what}. \
                 This statement was not run; the session goes on with a fresh connection, so run it again after restoring that state)"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "state_lost", &msg)
                .await;
        }
        if self.backend_moved {
            self.follow_backend_move(cmd).await;
        }
        let mut attempts = 0u32;
        let max_attempts = self.gen.config.max_attempts;
        loop {
            attempts += 1;
            if attempts > max_attempts + 2 {
                return self
                    .send_err(1, LOST_CODE, SQLSTATE_LOST, "gave_up", "MySQL server has gone away (Connection was killed by goneaway proxy: the server connection failed on every attempt; the statement was not run)")
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
                        self.mark_lost(loss_of(&e, None), &e.to_string());
                        if self.failed_tx.is_some() {
                            return self.refuse_in_failed_tx(tx_sql.as_deref()).await;
                        }
                        continue;
                    }
                };
            let sent = Instant::now();
            let record = self.gen.config.transaction_replay
                && matches!(cmd, com::QUERY | com::STMT_EXECUTE)
                && (self.state.in_transaction
                    || self.state.autocommit_off
                    || tx_sql
                        .as_deref()
                        .is_some_and(txlog::statement_opens_transaction));
            self.digest = record.then(ReplyDigest::default);
            // The COMMIT of a transaction that wrote carries a commit mark (see
            // ProxyConfig::commit_marks); a connection lost adding it lost the transaction
            // before its COMMIT was sent.
            self.pending_mark = None;
            let mut mark_failure = None;
            if self.state.in_transaction
                && self.tx_wrote
                && self.gen.config.commit_marks
                && tx_sql.as_deref().is_some_and(|s| first_word(s) == "commit")
            {
                match self.insert_commit_mark().await {
                    Ok(token) => self.pending_mark = token,
                    Err(e) => {
                        mark_failure = Some(Failure::Backend {
                            flushed: false,
                            not_run: true,
                            seq: 1,
                            cause: loss_of(&e, None),
                            detail: e.to_string(),
                            server_err: None,
                        })
                    }
                }
            }
            if mark_failure.is_none() && self.wraps_write(cmd, &packets, sql.as_deref()) {
                match self.wrapped_write(cmd, &to_send, sql.as_deref()).await {
                    Wrapped::Done(alive) => {
                        self.shared.stats.command_latency(started.elapsed());
                        return alive;
                    }
                    Wrapped::Retry => {
                        self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Wrapped::Unknown(cause) => {
                        return self
                            .answer_loss(
                                sql.as_deref(),
                                false,
                                None,
                                (false, false, 1),
                                cause,
                                None,
                            )
                            .await;
                    }
                    Wrapped::NotRun(cause) => {
                        return self
                            .answer_loss(sql.as_deref(), false, None, (false, true, 1), cause, None)
                            .await;
                    }
                    Wrapped::Plain => {}
                }
            }
            let result = match mark_failure {
                Some(f) => Err(f),
                None => self.forward(cmd, &to_send, sql.as_deref()).await,
            };
            match result {
                Ok(()) => {
                    self.follow_tx_log(cmd, &packets, sql.as_deref());
                    self.shared.stats.command_latency(started.elapsed());
                    return true;
                }
                // The reply may be half read: that connection is not shared again.
                Err(Failure::ClientGone) => {
                    self.backend = None;
                    return false;
                }
                Err(Failure::Backend {
                    flushed,
                    not_run,
                    seq,
                    cause,
                    detail,
                    server_err,
                }) => {
                    let mut cause = cause;
                    let in_tx = self.state.in_transaction;
                    let lost = self.state.unrestorable();
                    let pinned_free = self.state.pinned.is_empty();
                    self.drop_lost_backend();
                    self.digest = None;
                    self.reply_unreplayable = None;
                    // A KILL that hit the running statement was aimed at it (a runaway
                    // query stopped by an operator): it is never run again.
                    let killed = server_err
                        .as_ref()
                        .is_some_and(|e| e.code == ER_CONNECTION_KILLED);
                    // A transaction lost before its end: the server rolled all of it back,
                    // this statement included, so all of it can run again (see txlog).
                    // Not a statement that ends the transaction or may have committed it.
                    let is_commit =
                        in_tx && tx_sql.as_deref().is_some_and(|s| first_word(s) == "commit");
                    if is_commit && !flushed {
                        if let Err(u) = cause {
                            self.unexplained = Some(u);
                        }
                        let outcome = if not_run {
                            Some(false)
                        } else if let Some(token) = self.pending_mark.take() {
                            self.resolve_commit(token).await
                        } else {
                            None
                        };
                        let known = |s: &mut Self| match cause {
                            Ok(c) => c,
                            Err(_) => s.explained.take().unwrap_or(Cause::Unknown),
                        };
                        match outcome {
                            Some(true) => {
                                let c = known(self);
                                self.shared.stats.commit_resolved("committed");
                                self.shared.stats.absorbed(c.as_str());
                                tracing::info!(session = self.id, cause = %c, "a COMMIT lost with its connection had committed (its mark is there)");
                                self.tx_log = None;
                                self.tx_wrote = false;
                                return self.send_ok(1).await;
                            }
                            Some(false) => {
                                self.shared.stats.commit_resolved("not_committed");
                                if pinned_free && !killed {
                                    match self.replay_transaction().await {
                                        Ok(()) => {
                                            let c = known(self);
                                            self.shared.stats.absorbed(c.as_str());
                                            self.shared
                                                .stats
                                                .retries
                                                .fetch_add(1, Ordering::Relaxed);
                                            continue;
                                        }
                                        Err(why) => self.replay_refusal = Some(why),
                                    }
                                }
                                let c = known(self);
                                self.tx_log = None;
                                self.tx_wrote = false;
                                let why = self
                                    .replay_refusal
                                    .take()
                                    .map(|w| format!(" (it could not be replayed: {w})"))
                                    .unwrap_or_default();
                                let msg = format!(
                                    "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost during this COMMIT (cause: {c}); \
                                     goneaway checked that it did not commit: nothing of the transaction was committed{why}. The transaction has ended; run it again from its start)"
                                );
                                return self
                                    .send_err(
                                        1,
                                        LOST_CODE,
                                        SQLSTATE_LOST,
                                        "commit_not_committed",
                                        &msg,
                                    )
                                    .await;
                            }
                            None => {
                                cause = match (self.unexplained.take(), self.explained.take()) {
                                    (Some(u), _) => Err(u),
                                    (None, Some(c)) => Ok(c),
                                    (None, None) => cause,
                                };
                            }
                        }
                    }
                    let ends = ends_transaction(tx_sql.as_deref())
                        || tx_sql
                            .as_deref()
                            .is_some_and(|s| txlog::commits_implicitly(&first_word(s)));
                    if in_tx && !flushed && pinned_free && !killed && !ends {
                        if let Err(u) = cause {
                            self.unexplained = Some(u);
                        }
                        match self.replay_transaction().await {
                            Ok(()) => {
                                let c = match cause {
                                    Ok(c) => c,
                                    Err(_) => self.explained.take().unwrap_or(Cause::Unknown),
                                };
                                self.shared.stats.absorbed(c.as_str());
                                self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Err(why) => self.replay_refusal = Some(why),
                        }
                    } else {
                        self.tx_log = None;
                    }
                    // The server closes a KILLed connection without a word, as it does on a
                    // shutdown: a statement that had run long is replayed only once the
                    // reconnection proves it was not a KILL (see killed_read_replay_limit).
                    if let Err(u) = cause {
                        if !flushed
                            && !not_run
                            && replayable
                            && lost.is_none()
                            && !u.reset
                            && sent.elapsed() >= self.gen.config.killed_read_replay_limit
                        {
                            self.unexplained = Some(u);
                            let c = self.explain_loss().await;
                            if c == Cause::ConnectionKilled {
                                tracing::info!(session = self.id, ran = ?sent.elapsed(), "a long read-only statement was killed; not running it again");
                                let msg = format!(
                                    "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the server connection was killed while this read-only statement ran (cause: {c}); \
                                     it had run {:.1} s, and a statement killed after running {:?} or more is not run again. The session goes on with a fresh connection)",
                                    sent.elapsed().as_secs_f64(),
                                    self.gen.config.killed_read_replay_limit,
                                );
                                return self
                                    .send_err(1, LOST_CODE, SQLSTATE_LOST, "statement_killed", &msg)
                                    .await;
                            }
                            cause = Ok(c);
                        }
                    }
                    if !flushed && lost.is_none() && !killed && (not_run || replayable) {
                        self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                        match cause {
                            Ok(c) => self.shared.stats.absorbed(c.as_str()),
                            Err(mut u) => {
                                u.absorbed = true;
                                self.unexplained = Some(u);
                            }
                        }
                        continue;
                    }
                    let cause = match cause {
                        Ok(c) => c,
                        Err(u) => {
                            self.unexplained = Some(u);
                            self.explain_loss().await
                        }
                    };
                    tracing::info!(
                        session = self.id,
                        %cause,
                        detail,
                        flushed,
                        not_run,
                        in_transaction = in_tx,
                        "backend lost during a command"
                    );
                    return self
                        .answer_loss(
                            tx_sql.as_deref(),
                            in_tx,
                            lost,
                            (flushed, not_run, seq),
                            cause,
                            server_err,
                        )
                        .await;
                }
            }
        }
    }

    /// Whether this command is an autocommit write to run as a marked one-statement
    /// transaction (see [`crate::ProxyConfig::autocommit_write_marks`]).
    fn wraps_write(&self, cmd: u8, packets: &[Packet], sql: Option<&str>) -> bool {
        if !self.gen.config.autocommit_write_marks
            || self.state.in_transaction
            || self.state.autocommit_off
            || self.state.unrestorable().is_some()
            || !self.shared.marks_ready.load(Ordering::Relaxed)
        {
            return false;
        }
        let text: Option<Cow<'_, str>> = match cmd {
            com::QUERY => sql.map(Cow::Borrowed),
            com::STMT_EXECUTE => packets
                .first()
                .and_then(|p| statement_id(&p.payload))
                .and_then(|id| self.state.statements.get(&id))
                .map(|st| String::from_utf8_lossy(&st.prepare[1..])),
            _ => None,
        };
        // One plain DML statement: no multi-statements, no RETURNING result set.
        text.is_some_and(|t| {
            matches!(
                first_word(&t).as_str(),
                "insert" | "update" | "delete" | "replace"
            ) && !t.contains(';')
                && !t.to_ascii_lowercase().contains("returning")
        })
    }

    /// An autocommit write as `BEGIN`, the statement (its reply held), its commit mark and
    /// `COMMIT`; the client gets the reply once it committed. A loss before the COMMIT
    /// rolled the statement back: it runs again. A loss during the COMMIT is resolved by
    /// the mark.
    async fn wrapped_write(&mut self, cmd: u8, to_send: &[Packet], sql: Option<&str>) -> Wrapped {
        let backend = self.backend.as_mut().expect("connected");
        match backend.simple("BEGIN").await {
            Ok(_) => {}
            Err(e) if e.is_disconnect() => {
                self.mark_lost(loss_of(&e, None), &e.to_string());
                return Wrapped::Retry;
            }
            Err(_) => return Wrapped::Plain,
        }
        self.holding = true;
        let r = self.forward(cmd, to_send, sql).await;
        self.holding = false;
        let held = self.held.take();
        match r {
            Ok(()) => {}
            Err(Failure::ClientGone) => {
                if let Some(b) = self.backend.as_mut() {
                    let _ = b.simple("ROLLBACK").await;
                }
                self.backend = None;
                return Wrapped::Done(false);
            }
            Err(Failure::Backend {
                cause,
                detail,
                server_err,
                ..
            }) => {
                // Inside the transaction: rolled back with the connection, never applied.
                self.drop_lost_backend();
                // A KILL aimed at the running statement: not run again.
                if server_err.is_some_and(|e| e.code == ER_CONNECTION_KILLED) {
                    return Wrapped::NotRun(Cause::ConnectionKilled);
                }
                self.wrapped_absorbed(cause, &detail);
                return Wrapped::Retry;
            }
        }
        let held = held.unwrap_or_default();
        let end_transaction = |s: &mut Self| {
            s.state.in_transaction = false;
            s.tx_log = None;
            s.tx_wrote = false;
        };
        // An error (or anything but an OK): nothing to commit; the client gets it as is.
        if held.get(4) != Some(&0x00) {
            if let Some(b) = self.backend.as_mut() {
                if let Err(e) = b.simple("ROLLBACK").await {
                    if e.is_disconnect() {
                        self.mark_lost(loss_of(&e, None), &e.to_string());
                    }
                }
            }
            end_transaction(self);
            return Wrapped::Done(self.client.get_mut().write_all(&held).await.is_ok());
        }
        let token = match self.insert_commit_mark().await {
            Ok(t) => t,
            Err(e) => {
                self.drop_lost_backend();
                self.wrapped_absorbed(loss_of(&e, None), &e.to_string());
                return Wrapped::Retry;
            }
        };
        let backend = self.backend.as_mut().expect("connected");
        match backend.simple("COMMIT").await {
            Ok(_) => {}
            Err(ProxyError::Server(e)) => {
                end_transaction(self);
                let alive = self
                    .send_err(1, e.code, &e.sqlstate, "server_closed", &e.message)
                    .await;
                return Wrapped::Done(alive);
            }
            Err(e) => {
                let cause = loss_of(&e, None);
                self.drop_lost_backend();
                if let Err(u) = cause {
                    self.unexplained = Some(u);
                }
                let outcome = match token {
                    Some(t) => self.resolve_commit(t).await,
                    None => None,
                };
                let known = match cause {
                    Ok(c) => c,
                    Err(_) => self
                        .explained
                        .take()
                        .or_else(|| {
                            self.unexplained
                                .take()
                                .map(|u| u.cause(false, self.wait_timeout))
                        })
                        .unwrap_or(Cause::Unknown),
                };
                match outcome {
                    Some(true) => {
                        self.shared.stats.commit_resolved("write_committed");
                        self.shared.stats.absorbed(known.as_str());
                    }
                    Some(false) => {
                        self.shared.stats.commit_resolved("write_not_committed");
                        self.shared.stats.absorbed(known.as_str());
                        return Wrapped::Retry;
                    }
                    None => return Wrapped::Unknown(known),
                }
            }
        }
        end_transaction(self);
        let mut held = held;
        set_autocommit_status(&mut held);
        Wrapped::Done(self.client.get_mut().write_all(&held).await.is_ok())
    }

    /// Gives up a backend lost during a command: remembers its server thread (the one a
    /// replay or a COMMIT's resolution must see gone), and forgets what died with it.
    fn drop_lost_backend(&mut self) {
        self.lost_backend = (self.last_thread_id, self.last_backend_opened);
        self.backend = None;
        self.after_loss = true;
        self.cursors.clear();
        self.long_data.clear();
        self.state.backend_replaced();
        self.state.forget_pinned();
    }

    /// Counts a loss an autocommit write's retry absorbs.
    fn wrapped_absorbed(&mut self, cause: Result<Cause, Unexplained>, detail: &str) {
        tracing::debug!(
            session = self.id,
            detail,
            "a wrapped autocommit write lost its connection before COMMIT; it runs again"
        );
        match cause {
            Ok(c) => self.shared.stats.absorbed(c.as_str()),
            Err(mut u) => {
                u.absorbed = true;
                self.unexplained = Some(u);
            }
        }
    }

    /// Adds this COMMIT's mark to the open transaction: `Ok(None)` when marks are off
    /// (their table could not be made, or this account may not write it); `Err` when the
    /// connection failed.
    async fn insert_commit_mark(&mut self) -> Result<Option<[u8; 16]>, ProxyError> {
        let shared = self.shared.clone();
        if !crate::server::commit_marks_ready(&shared).await {
            return Ok(None);
        }
        self.commits = self.commits.wrapping_add(1);
        let mut token = [0u8; 16];
        token[..8].copy_from_slice(&shared.instance);
        token[8..12].copy_from_slice(&(self.id as u32).to_le_bytes());
        token[12..].copy_from_slice(&self.commits.to_le_bytes());
        let sql = format!(
            "INSERT INTO `{}`.commit_marks (token) VALUES (X'{}')",
            self.gen.config.commit_marks_schema.replace('`', "``"),
            hex(&token)
        );
        let backend = self.backend.as_mut().expect("connected");
        match backend.simple(&sql).await {
            Ok(_) => Ok(Some(token)),
            Err(ProxyError::Server(e)) => {
                tracing::debug!(session = self.id, error = %e, "no commit mark for this COMMIT");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// After a COMMIT lost with its connection: waits until the old server thread can no
    /// longer commit (it is gone, or the server restarted), then looks for the commit's
    /// mark. `Some(true)`: committed; `Some(false)`: not; `None`: still unknown (no
    /// server to ask within server_wait, or the old thread would not end).
    async fn resolve_commit(&mut self, token: [u8; 16]) -> Option<bool> {
        let old = self.lost_backend;
        let schema = self.gen.config.commit_marks_schema.replace('`', "``");
        for _ in 0..3 {
            if self.backend.is_none() && self.fresh_backend().await.is_err() {
                continue;
            }
            if let (Some(id), Some(opened)) = old {
                match self.end_old_thread(id, opened).await {
                    Ok(_) => {}
                    Err(e) if e.is_disconnect() => {
                        self.backend = None;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(session = self.id, error = %e, "a lost COMMIT cannot be resolved");
                        return None;
                    }
                }
            }
            let backend = self.backend.as_mut().expect("connected");
            let sql = format!(
                "SELECT COUNT(*) FROM `{schema}`.commit_marks WHERE token = X'{}'",
                hex(&token)
            );
            match backend.simple(&sql).await {
                Ok(rows) => {
                    let n = rows.first().and_then(|r| r.first().cloned().flatten());
                    return Some(n.is_some_and(|n| n != "0"));
                }
                Err(e) if e.is_disconnect() => self.backend = None,
                Err(e) => {
                    tracing::warn!(session = self.id, error = %e, "a lost COMMIT cannot be resolved");
                    return None;
                }
            }
        }
        None
    }

    /// After a command that succeeded: keeps the open transaction's log (see [`txlog`]).
    fn follow_tx_log(&mut self, cmd: u8, packets: &[Packet], sql: Option<&str>) {
        if !self.state.in_transaction {
            self.tx_wrote = false;
        } else if !self.tx_wrote {
            let read_only = match cmd {
                com::QUERY => sql.is_some_and(is_read_only),
                com::STMT_EXECUTE => packets
                    .first()
                    .and_then(|p| statement_id(&p.payload))
                    .and_then(|id| self.state.statements.get(&id))
                    .is_some_and(|st| st.read_only),
                _ => true,
            };
            self.tx_wrote = !read_only;
        }
        let digest = self.digest.take();
        let unreplayable = self.reply_unreplayable.take();
        if !self.state.in_transaction {
            self.tx_log = None;
            return;
        }
        let replay_on = self.gen.config.transaction_replay;
        let log = self.tx_log.get_or_insert_with(|| TxLog {
            // Recording starts with the statement that opens the transaction; a
            // transaction that opened otherwise has statements the log does not hold.
            unreplayable: digest.is_none().then_some(if replay_on {
                "it began with a command goneaway does not record (a prepared BEGIN)"
            } else {
                "transaction_replay is off"
            }),
            ..TxLog::default()
        });
        let Some(d) = digest else {
            return;
        };
        let cursor = cmd == com::STMT_EXECUTE
            && packets
                .first()
                .and_then(|p| p.payload.get(5))
                .is_some_and(|&f| f != 0);
        let why = unreplayable
            .or_else(|| sql.and_then(|s| txlog::unreplayable_statement(&first_word(s))))
            .or_else(|| cursor.then_some("it read through a cursor"));
        if let Some(why) = why {
            log.entries.clear();
            log.unreplayable.get_or_insert(why);
            return;
        }
        log.push(
            TxEntry {
                cmd,
                packets: packets.to_vec(),
                digest: d.finish(),
                insert_id: d.insert_id,
            },
            self.gen.config.transaction_replay_budget,
        );
    }

    /// Runs the lost transaction again on a fresh backend and checks every reply against
    /// the client's. `Ok`: the session is in the transaction again, as the client believes.
    /// `Err`: why not (the backend is then given up: whatever ran of the replay is rolled
    /// back with it).
    async fn replay_transaction(&mut self) -> Result<(), String> {
        let Some(log) = self.tx_log.take() else {
            self.shared.stats.replay("unreplayable");
            return Err(if self.gen.config.transaction_replay {
                "goneaway held no record of it".to_owned()
            } else {
                "transaction_replay is off".to_owned()
            });
        };
        if let Some(why) = log.refusal() {
            self.shared.stats.replay("unreplayable");
            return Err(why.to_owned());
        }
        let old = self.lost_backend;
        let mut last = String::new();
        for _attempt in 0..2 {
            match self.replay_once(&log, old).await {
                Ok(()) => {
                    self.state.in_transaction = true;
                    self.state.autocommit_off_work = self.state.autocommit_off;
                    tracing::info!(
                        session = self.id,
                        statements = log.entries.len(),
                        "transaction replayed on a fresh backend"
                    );
                    self.tx_log = Some(log);
                    self.shared.stats.replay("replayed");
                    return Ok(());
                }
                Err(ReplayError::Mismatch(why)) => {
                    if let Some(b) = self.backend.take() {
                        b.quit().await;
                    }
                    self.state.backend_replaced();
                    tracing::info!(session = self.id, why, "transaction not replayed");
                    self.shared.stats.replay("mismatch");
                    return Err(why);
                }
                Err(ReplayError::Lost(e)) => {
                    self.backend = None;
                    self.state.backend_replaced();
                    last = e;
                }
            }
        }
        self.shared.stats.replay("failed");
        Err(format!(
            "the replay lost its server connection too ({last})"
        ))
    }

    async fn replay_once(
        &mut self,
        log: &TxLog,
        (old_id, old_opened): (Option<u32>, Option<i64>),
    ) -> Result<(), ReplayError> {
        let lost = |e: ProxyError| ReplayError::Lost(e.to_string());
        if self.backend.is_none() {
            self.fresh_backend().await.map_err(lost)?;
        }
        let same_server = match (old_id, old_opened) {
            (Some(id), Some(opened)) => self.end_old_thread(id, opened).await.map_err(lost)?,
            _ => false,
        };
        // Forcing a generated id is safe only while the server's counter is still past it
        // (a rollback never moves it back); after a restart the counter may hand the id
        // out again, to another session whose insert would then collide.
        if !same_server && log.entries.iter().any(|e| e.insert_id > 0) {
            return Err(ReplayError::Mismatch(
                "it generated auto-increment ids, which the restarted server may hand out again to other sessions".into(),
            ));
        }
        let n = log.entries.len();
        for (i, entry) in log.entries.iter().enumerate() {
            let backend = self.backend.as_mut().expect("connected above");
            if entry.insert_id > 0 {
                // The id the client was told, as the binary log replays it.
                backend
                    .simple(&format!("SET insert_id = {}", entry.insert_id))
                    .await
                    .map_err(lost)?;
            }
            let sql = (entry.cmd == com::QUERY)
                .then(|| String::from_utf8_lossy(&entry.packets[0].payload[1..]).into_owned());
            let to_send = match self
                .prepare_packets(entry.cmd, &entry.packets, sql.as_deref())
                .await
            {
                Ok((p, _)) => p.into_owned(),
                Err(PrepareError::Backend(e)) => return Err(lost(e)),
                Err(PrepareError::Reply(code, _, msg)) => {
                    return Err(ReplayError::Mismatch(format!(
                        "statement {} of {n} could not be prepared again ({code}: {msg})",
                        i + 1
                    )))
                }
            };
            let digest = self
                .replay_statement(entry.cmd, &to_send)
                .await
                .map_err(lost)?;
            if digest != entry.digest {
                let what = sql
                    .as_deref()
                    .map(|s| format!(" (`{}`)", s.chars().take(80).collect::<String>()))
                    .unwrap_or_default();
                return Err(ReplayError::Mismatch(format!(
                    "statement {} of {n}{what} gave another result on the fresh connection than the client got (another session changed what the transaction read, or it returned a value such as NOW() or RAND() that came out otherwise)",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// Ends the lost backend's server thread, if it may still be alive (the server did not
    /// restart: thread ids name one connection within a server's life only), and waits
    /// until it is gone, so that its transaction holds no lock the replay needs.
    /// `Ok(true)` when the server is the one the old connection was to (no restart).
    async fn end_old_thread(&mut self, id: u32, opened: i64) -> Result<bool, ProxyError> {
        // The session moved to another server of a cluster since (aim_at_writer forgot the
        // lost thread): that thread id names some other connection here.
        if self.lost_backend != (Some(id), Some(opened)) {
            return Ok(false);
        }
        let backend = self.backend.as_mut().expect("connected");
        if backend.server_started.is_none() {
            backend.read_server_started().await?;
        }
        let same_life =
            backend.server_started.is_some_and(|s| s <= opened + 1) && backend.connection_id > id;
        if !same_life {
            return Ok(false);
        }
        match backend.simple(&format!("KILL CONNECTION {id}")).await {
            Ok(_) | Err(ProxyError::Server(_)) => {}
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = backend
                .simple(&format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"
                ))
                .await?;
            let alive = rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .is_some_and(|v| v != "0");
            if !alive {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Err(ProxyError::Timeout(format!(
                    "the lost connection's server thread {id} did not end within 10 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends one statement of a replay and digests its reply; nothing reaches the client.
    async fn replay_statement(&mut self, cmd: u8, packets: &[Packet]) -> Result<u64, ProxyError> {
        let backend = self.backend.as_mut().expect("connected");
        backend.send(packets).await?;
        let mut tracker = ReplyTracker::new(Expect::of(cmd), backend.capabilities);
        let tracks = backend.capabilities & caps::SESSION_TRACK != 0;
        let mut digest = ReplyDigest::default();
        loop {
            let p = backend.recv().await?;
            let step = tracker.feed(&p);
            digest.feed(&p.payload, tracker.ok_packet, tracks);
            match step {
                Step::More => {}
                Step::Done => break,
                Step::LocalInfile => {
                    return Err(ProxyError::Protocol(
                        "a replayed statement asked for a local file".into(),
                    ))
                }
            }
        }
        backend.last_used = Instant::now();
        Ok(digest.finish())
    }

    /// Tells the client about a backend lost during its command (which was not retried),
    /// and enters the failed-transaction state when a transaction was lost with it.
    #[allow(clippy::too_many_arguments)]
    async fn answer_loss(
        &mut self,
        sql: Option<&str>,
        in_tx: bool,
        lost: Option<String>,
        (flushed, not_run, seq): (bool, bool, u8),
        cause: Cause,
        server_err: Option<ErrInfo>,
    ) -> bool {
        // The statement that ends the transaction decides its fate itself: a lost
        // ROLLBACK rolled back (the server rolls back a connection it loses), a lost
        // COMMIT may or may not have committed.
        let ending = (in_tx && ends_transaction(sql))
            .then(|| sql.map(first_word).is_some_and(|w| w == "rollback"));
        let refusal = self.replay_refusal.take();
        if in_tx && ending.is_none() {
            let how = match &refusal {
                Some(why) => format!("during a statement (not replayed: {why})"),
                None => "during a statement".to_owned(),
            };
            self.failed_tx = Some((Some(cause), how));
        }
        if ending == Some(true) && !flushed {
            return self.send_ok(1).await;
        }
        if let Some(e) = server_err {
            // The server's own words, number and SQLSTATE: what a direct client gets.
            self.shared.stats.error_sent("server_closed");
            return self
                .client
                .send(Packet::new(
                    1,
                    packet::err_payload(e.code, &e.sqlstate, &e.message),
                ))
                .await
                .is_ok();
        }
        let tx_note = if ending.is_some() {
            ". This COMMIT's outcome is unknown: the transaction may or may not have been committed; check before running it again"
        } else if in_tx {
            ". The server rolled the open transaction back and nothing of it was committed; every statement is refused until the client sends ROLLBACK"
        } else {
            ""
        };
        let tx_note = match (&refusal, in_tx && ending.is_none()) {
            (Some(why), true) => format!("{tx_note} (goneaway could not replay it: {why})"),
            _ => tx_note.to_owned(),
        };
        let what = lost
            .filter(|_| !in_tx)
            .map(|w| format!(", and with it {w}"))
            .unwrap_or_default();
        if flushed {
            let msg = format!(
                "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the server was lost in the middle of the reply (cause: {cause}); the reply above is incomplete{what}{tx_note}. The session goes on with a fresh connection)"
            );
            return self
                .send_err(seq, LOST_CODE, SQLSTATE_LOST, "reply_cut", &msg)
                .await;
        }
        if not_run {
            let msg = format!(
                "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost (cause: {cause}){what}; this statement was not run{tx_note})"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "state_lost", &msg)
                .await;
        }
        if in_tx && ending.is_none() {
            // Not unknown: the server rolls back the transaction of a connection it loses,
            // this statement with it.
            let refusal = refusal
                .map(|w| format!(" (goneaway could not replay it: {w})"))
                .unwrap_or_default();
            let msg = format!(
                "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the server was lost while this statement ran (cause: {cause}); \
                 the server rolled the open transaction back with it, this statement included, and nothing of it was committed{refusal}. \
                 Every statement is refused until the client sends ROLLBACK)"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
                .await;
        }
        let msg = format!(
            "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the server was lost while this statement ran (cause: {cause}){what}; the outcome is unknown: \
             it may or may not have been applied, so goneaway did not run it again{tx_note}. Check before retrying; the session goes on with a fresh connection)"
        );
        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "outcome_unknown", &msg)
            .await
    }

    /// A command in the failed-transaction state: ROLLBACK ends it with OK, COMMIT ends it
    /// with an error, anything else is refused and runs nowhere.
    async fn refuse_in_failed_tx(&mut self, sql: Option<&str>) -> bool {
        let Some((cause, mut how)) = self.failed_tx.take() else {
            return true;
        };
        self.tx_log = None;
        if let Some(why) = self.replay_refusal.take() {
            how = format!("{how} (not replayed: {why})");
        }
        let cause = match cause {
            Some(c) => c,
            None => self.explain_loss().await,
        };
        if ends_transaction(sql) {
            if sql.map(first_word).is_some_and(|w| w == "rollback") {
                tracing::debug!(
                    session = self.id,
                    "ROLLBACK ends the failed-transaction state"
                );
                return self.send_ok(1).await;
            }
            let msg = format!(
                "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost {how} (cause: {cause}) and the server rolled the open transaction back: \
                 this COMMIT committed nothing. The transaction has ended; run it again from its start)"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
                .await;
        }
        let msg = format!(
            "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost {how} (cause: {cause}) and the server rolled the open transaction back; \
             nothing of it was committed. This statement was not run: send ROLLBACK to end the lost transaction, then start it again)"
        );
        self.failed_tx = Some((Some(cause), how));
        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
            .await
    }

    /// An OK for a command the proxy answers itself, with the session's status flags.
    async fn send_ok(&mut self, seq: u8) -> bool {
        let status = if self.state.autocommit_off {
            0
        } else {
            status::AUTOCOMMIT
        };
        self.client
            .send(Packet::new(seq, packet::ok_payload(status)))
            .await
            .is_ok()
    }

    /// `COM_CHANGE_USER`: the client logs in again (see [`crate::accounts`]); its session
    /// then starts afresh on a fresh backend logged in as the new account, so nothing of
    /// the old session leaks into the new one. A refused change (by the proxy, or by the
    /// server when the fresh backend logs in) is answered with the error and the session
    /// goes on unchanged, as on the server.
    async fn change_user(&mut self, payload: &[u8]) -> bool {
        // The same delay after repeated failures as at login: a logged-in client must not
        // guess other accounts' passwords faster than a new connection could.
        let user = payload
            .get(1..)
            .map(|rest| {
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                String::from_utf8_lossy(&rest[..end]).into_owned()
            })
            .unwrap_or_default();
        let delay = self.shared.gate.delay_for(self.peer.ip(), &user);
        if !delay.is_zero() {
            self.shared
                .stats
                .login_throttled
                .fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
        let checked = handshake::change_user(
            &mut self.client,
            payload,
            self.client_caps,
            &self.scramble,
            &self.gen.accounts,
            self.peer.ip(),
        )
        .await;
        let change = match checked {
            Ok(c) => c,
            Err((seq, code, state, msg)) => {
                self.shared
                    .stats
                    .login_failures
                    .fetch_add(1, Ordering::Relaxed);
                if code == ER_ACCESS_DENIED_ERROR {
                    self.shared.gate.failed(self.peer.ip(), &user);
                }
                tracing::info!(session = self.id, peer = %self.peer, "COM_CHANGE_USER refused: {msg}");
                return self.send_err(seq, code, state, "access_denied", &msg).await;
            }
        };
        let seq = change.next_seq;
        tracing::debug!(session = self.id, user = %change.user, "COM_CHANGE_USER");
        // The new session is set up beside the old one, which comes back if the server
        // refuses the new account.
        let next_statement = self.state.next_statement;
        let old = OldSession {
            backend: self.backend.take(),
            state: std::mem::replace(
                &mut self.state,
                SessionState {
                    database: change.database,
                    next_statement,
                    ..SessionState::default()
                },
            ),
            lost: self.lost.take(),
            failed_tx: self.failed_tx.take(),
            unexplained: self.unexplained.take(),
            charset: self.charset,
            target: std::mem::replace(
                &mut self.target,
                change.verified.target(&self.gen.config.backend),
            ),
            server_account: std::mem::replace(
                &mut self.server_account,
                matches!(change.verified, Verified::Server { .. }),
            ),
        };
        if let Some(c) = change.charset {
            self.charset = c;
        }
        if old.backend.is_some() {
            self.known_limits = Some((self.wait_timeout, self.packet_limit));
        }
        // A new login: on a new server connection, the server's own check (as at login).
        self.after_loss = true;
        let fresh = self.fresh_backend().await;
        self.known_limits = None;
        if let Err(e) = fresh {
            // Back to the old session, as the server leaves it after a refused change.
            self.backend = old.backend;
            self.state = old.state;
            self.lost = old.lost;
            self.failed_tx = old.failed_tx;
            self.unexplained = old.unexplained;
            self.charset = old.charset;
            self.target = old.target;
            self.server_account = old.server_account;
            let (code, state, msg) = backend_error_for_client(&e, &self.gen.config.backend.addr());
            if code == ER_ACCESS_DENIED_ERROR {
                self.shared
                    .stats
                    .login_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            return self
                .send_err(seq, code, &state, "backend_unavailable", &msg)
                .await;
        }
        if let Some(b) = old.backend {
            b.quit().await;
        }
        let mut seq = seq;
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
        if cmd == com::STMT_SEND_LONG_DATA {
            // Long data lives in the connection until the execute; a replay cannot send it.
            self.reply_unreplayable = Some("a prepared statement was sent long data");
            if let Some(log) = self.tx_log.as_mut() {
                log.entries.clear();
                log.unreplayable
                    .get_or_insert("a prepared statement was sent long data");
            }
        }
        let Some(client_id) = statement_id(&packets[0].payload) else {
            return;
        };
        if cmd == com::STMT_SEND_LONG_DATA {
            self.long_data.insert(client_id);
        } else {
            self.long_data.remove(&client_id);
            self.cursors.remove(&client_id);
        }
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
        if cmd == com::STMT_CLOSE {
            backend.prepared = backend.prepared.saturating_sub(1);
        }
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
            // Outside a transaction a read, or the BEGIN that opens one, runs again safely.
            com::QUERY => Ok((
                Cow::Borrowed(packets),
                outside_tx
                    && sql
                        .is_some_and(|s| is_read_only(s) || txlog::statement_opens_transaction(s)),
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
        let reply_buffer = self.gen.config.reply_buffer;
        let client_tracks = self.client_caps & caps::SESSION_TRACK != 0;
        let backend = self
            .backend
            .as_mut()
            .expect("a backend is connected before forward");
        let io_failure = |e: &ProxyError, flushed: bool, seq: u8| Failure::Backend {
            flushed,
            // The server showed that it never received the command; `seq` 1: nothing of
            // the reply (nor a LOCAL INFILE request) had come.
            not_run: seq == 1 && matches!(e, ProxyError::Stalled { not_run: true, .. }),
            seq,
            cause: loss_of(e, None),
            detail: e.to_string(),
            server_err: None,
        };
        if let Err(e) = backend.send(packets).await {
            return Err(io_failure(&e, false, 1));
        }
        let expect = Expect::of(cmd);
        if expect == Expect::Nothing {
            return Ok(());
        }
        // COM_STMT_EXECUTE: statement id (4 bytes), then the cursor flags.
        let cursor = expect == Expect::Execute
            && packets
                .first()
                .and_then(|p| p.payload.get(5))
                .is_some_and(|&flags| flags != 0);
        let mut tracker = ReplyTracker::new(expect, backend.capabilities).with_cursor(cursor);
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
                        cause: Ok(cause_of_code(e.code, &e.sqlstate, &e.message)),
                        detail: e.to_string(),
                        server_err: Some(e.clone()),
                    });
                }
                // In front of a cluster: a 1290 --read-only from a server that a
                // switchover took the writer's place from ran nowhere. Outside a
                // transaction, with nothing that lives only in this connection, the
                // statement runs again on the new writer (taken as a backend proven not to
                // have run it) instead of reaching the client (crate::router).
                if e.code == goneaway_core::codes::ER_OPTION_PREVENTS_STATEMENT
                    && !self.state.autocommit_off
                    && self.state.unrestorable().is_none()
                    && crate::router::refused_by_old_writer(&self.shared, &self.target, e).await
                {
                    return Err(Failure::Backend {
                        flushed: false,
                        not_run: true,
                        seq: 1,
                        cause: Ok(Cause::Unknown),
                        detail: e.to_string(),
                        server_err: None,
                    });
                }
            }
            next_seq = p.seq.wrapping_add(1);
            if let Some(d) = self.digest.as_mut() {
                d.feed(
                    &p.payload,
                    tracker.ok_packet,
                    backend.capabilities & caps::SESSION_TRACK != 0,
                );
            }
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
            if buf.len() >= reply_buffer && !self.holding {
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
                    self.reply_unreplayable =
                        Some("LOAD DATA LOCAL INFILE (the file came from the client and is gone)");
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
        if self.holding {
            self.held = Some(buf);
        } else {
            if !buf.is_empty() && self.client.get_mut().write_all(&buf).await.is_err() {
                return Err(Failure::ClientGone);
            }
            if buf.capacity() <= 64 << 10 {
                buf.clear();
                self.reply_buf = buf;
            }
        }
        backend.last_used = Instant::now();
        if new_statement.is_some() && tracker.err.is_none() {
            backend.prepared += 1;
        }
        // What the next command may read from this connection only.
        if tracker.warnings > 0
            || tracker.last_insert_id != 0
            || sql.is_some_and(|s| {
                s.as_bytes()
                    .windows(19)
                    .any(|w| w.eq_ignore_ascii_case(b"sql_calc_found_rows"))
            })
        {
            self.hold_next = true;
        }
        if matches!(cmd, com::STMT_EXECUTE | com::STMT_RESET | com::STMT_FETCH) {
            if let Some(id) = statement_id(&packets[0].payload) {
                use crate::net::packet::status::{CURSOR_EXISTS, LAST_ROW_SENT};
                let status = tracker.status.unwrap_or(0);
                if cmd != com::STMT_FETCH {
                    self.long_data.remove(&id);
                }
                if cmd == com::STMT_RESET
                    || (cmd == com::STMT_FETCH && status & LAST_ROW_SENT != 0)
                    || tracker.err.is_some()
                {
                    self.cursors.remove(&id);
                } else if cursor && status & CURSOR_EXISTS != 0 {
                    self.cursors.insert(id);
                }
            }
        }
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
                        control: txlog::control_word(&text),
                    },
                );
            }
        }
        if tracker.err.is_none() {
            match cmd {
                com::RESET_CONNECTION => {
                    self.state.reset();
                    self.failed_tx = None;
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
            // The session's own account set a new password: fresh backends log in with it.
            if self.server_account {
                // Borrowed, not copied: this runs after every command of such a session,
                // and password_change looks at the first word before anything else.
                let text = match cmd {
                    com::QUERY => sql.map(std::borrow::Cow::Borrowed),
                    com::STMT_EXECUTE => packets[0]
                        .payload
                        .get(1..5)
                        .map(|id| u32::from_le_bytes(id.try_into().unwrap()))
                        .and_then(|id| self.state.statements.get(&id))
                        .map(|st| String::from_utf8_lossy(&st.prepare[1..])),
                    _ => None,
                };
                let change =
                    text.and_then(|t| crate::accounts::password_change(&t, &self.target.user));
                if let Some(credential) = change {
                    tracing::info!(session = self.id, user = %self.target.user, "the session's account set a new password; its next server logins use it");
                    self.target.credential = credential;
                    let watch = self.stall_watch();
                    if let Some(b) = self.backend.as_mut() {
                        b.watch_stalls(watch);
                    }
                }
            }
            // An expired password's sandbox: once the server accepts other statements
            // (the client changed the password), the proxy's setup runs.
            if let Some(b) = self.backend.as_mut().filter(|b| b.sandboxed) {
                if let Err(e) = b.leave_sandbox().await {
                    tracing::warn!(session = self.id, error = %e, "could not set up the backend after the password change");
                }
            }
        }
        let writes = match cmd {
            com::QUERY => !sql.is_some_and(is_read_only),
            com::STMT_EXECUTE => true,
            _ => false,
        };
        let pins = self.state.pinned.len();
        self.state
            .apply(&tracker.changes, tracker.status, writes, sql);
        if self.state.pinned.len() > pins {
            self.pin_statement = sql.map(|s| s.chars().take(200).collect());
        }
        Ok(())
    }
}

/// The login: greeting, TLS when the client asks for it (and the proxy has a
/// certificate), the password check. `None` when the client went away, was refused (it was
/// then told why) or missed the deadline: [`ProxyConfig::login_timeout`] from accept to
/// the end of authentication, plus the delay after repeated failed logins.
///
/// [`ProxyConfig::login_timeout`]: crate::ProxyConfig::login_timeout
async fn accept_login(
    mut client: Framed<ClientStream, PacketCodec>,
    id: u64,
    peer: SocketAddr,
    shared: &Shared,
    gen: &Generation,
) -> Option<(Framed<ClientStream, PacketCodec>, Login)> {
    let mut deadline = tokio::time::Instant::now() + gen.config.login_timeout;
    let timed_out = || {
        shared.stats.login_timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = id, %peer, "login deadline passed; closing");
    };
    let info: ServerInfo = shared.server_info.lock().unwrap().clone();
    let scramble = handshake::nonce();
    let greeted = async {
        handshake::greet(
            &mut client,
            id as u32,
            &info.version,
            info.capabilities,
            info.mariadb_capabilities,
            &scramble,
            gen.tls.is_some(),
        )
        .await?;
        let mut first = read_or_refuse(&mut client, id, peer).await?;
        if let (true, Some(acceptor)) = (handshake::is_ssl_request(&first), &gen.tls) {
            // The client starts TLS right after its SSLRequest; whatever the packet reader
            // already holds is the beginning of the TLS handshake.
            let parts = client.into_parts();
            match parts.io.upgrade(acceptor, parts.read_buf.freeze()).await {
                Ok(stream) => client = Framed::new(stream, PacketCodec::for_client()),
                Err(e) => {
                    shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(session = id, %peer, error = %e, "TLS handshake with the client failed");
                    return Err(LoginError::Gone);
                }
            }
            first = read_or_refuse(&mut client, id, peer).await?;
        }
        Ok((client, first))
    };
    let (mut client, first) = match tokio::time::timeout_at(deadline, greeted).await {
        Ok(Ok(x)) => x,
        Ok(Err(_)) => return None,
        Err(_) => {
            timed_out();
            return None;
        }
    };
    // Repeated failures for this address and user: the attempt waits before it is
    // checked, outside the client's own deadline.
    let user = packet::HandshakeResponse::parse(&first.payload)
        .map(|r| r.user)
        .unwrap_or_default();
    let delay = shared.gate.delay_for(peer.ip(), &user);
    if !delay.is_zero() {
        shared.stats.login_throttled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = id, %peer, user, ?delay, "delaying a login after repeated failures");
        tokio::time::sleep(delay).await;
        deadline += delay;
    }
    let login = if gen.config.require_tls && !client.get_ref().is_tls() {
        Err(LoginError::Refuse(
            first.seq.wrapping_add(1),
            ER_SECURE_TRANSPORT_REQUIRED,
            "HY000",
            "Connections using insecure transport are prohibited: goneaway proxy requires TLS \
             (require_tls); connect with TLS (mariadb --ssl, mysql --ssl-mode=REQUIRED)"
                .into(),
        ))
    } else {
        let checked =
            handshake::authenticate(&mut client, first, scramble, &gen.accounts, peer.ip());
        match tokio::time::timeout_at(deadline, checked).await {
            Ok(r) => r,
            Err(_) => {
                timed_out();
                return None;
            }
        }
    };
    match login {
        Ok(l) => {
            shared.gate.succeeded(peer.ip(), &user);
            Some((client, l))
        }
        Err(LoginError::Gone) => None,
        Err(LoginError::Refuse(seq, code, state, msg)) => {
            shared.stats.login_failures.fetch_add(1, Ordering::Relaxed);
            if code == ER_ACCESS_DENIED_ERROR {
                shared.gate.failed(peer.ip(), &user);
            }
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

/// The client's next login packet; a packet over the login budget is answered (1153) here.
async fn read_or_refuse(
    client: &mut Framed<ClientStream, PacketCodec>,
    id: u64,
    peer: SocketAddr,
) -> Result<Packet, LoginError> {
    match handshake::next(client).await {
        Err(LoginError::Refuse(seq, code, state, msg)) => {
            tracing::info!(session = id, %peer, "login refused: {msg}");
            let _ = client
                .send(Packet::new(seq, packet::err_payload(code, state, &msg)))
                .await;
            Err(LoginError::Gone)
        }
        r => r,
    }
}

/// Keeps a logged-in session counted in `clients` for as long as it lives.
struct ClientCount(Arc<Shared>);

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What `COM_CHANGE_USER` puts aside while the new account logs in.
struct OldSession {
    backend: Option<Backend>,
    state: SessionState,
    lost: Option<(String, Cause)>,
    failed_tx: Option<(Option<Cause>, String)>,
    unexplained: Option<Unexplained>,
    charset: u8,
    target: BackendTarget,
    server_account: bool,
}

/// What became of a wrapped autocommit write.
enum Wrapped {
    /// The client got its reply (`false`: the client is gone).
    Done(bool),
    /// It never committed: run it again.
    Retry,
    /// The COMMIT's outcome could not be resolved.
    Unknown(Cause),
    /// Not wrapped after all: run it the ordinary way.
    Plain,
    /// Rolled back and not to be run again (a KILL aimed at it).
    NotRun(Cause),
}

/// In a held OK packet (header included) of a statement run inside the proxy's own
/// transaction: the status the client expects in autocommit mode.
fn set_autocommit_status(packet: &mut BytesMut) {
    let lenenc = |b: Option<&u8>| match b {
        Some(0xfc) => 3,
        Some(0xfd) => 4,
        Some(0xfe) => 9,
        Some(_) => 1,
        None => 0,
    };
    let mut at = 5;
    at += lenenc(packet.get(at));
    at += lenenc(packet.get(at));
    if let Some(flags) = packet.get_mut(at..at + 2) {
        let status = u16::from_le_bytes([flags[0], flags[1]]);
        let status = (status & !status::IN_TRANS) | status::AUTOCOMMIT;
        flags.copy_from_slice(&status.to_le_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a replay stopped.
enum ReplayError {
    /// A reply differed, or a statement could not run again: the transaction is lost.
    Mismatch(String),
    /// The fresh connection failed as well.
    Lost(String),
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

/// A lost backend's cause, or what the reconnection must complete when the server did not
/// say (`idle`: how long it had been idle, `None` during a command).
fn loss_of(e: &ProxyError, idle: Option<Duration>) -> Result<Cause, Unexplained> {
    match e {
        ProxyError::Io { source, .. } => Err(Unexplained {
            idle,
            reset: source.kind() == std::io::ErrorKind::ConnectionReset,
            absorbed: false,
        }),
        other => Ok(cause_of_error(other)),
    }
}

fn cause_of_error(e: &ProxyError) -> Cause {
    match e {
        ProxyError::Io { source, .. } => goneaway_core::classify_io(source.kind()).primary(),
        ProxyError::Server(s) => cause_of_code(s.code, &s.sqlstate, &s.message),
        ProxyError::Timeout(_) | ProxyError::Stalled { .. } => Cause::NetworkDrop,
        _ => Cause::Unknown,
    }
}

/// The ERR a client gets when no backend could be had.
fn backend_error_for_client(e: &ProxyError, addr: &str) -> (u16, String, String) {
    match e {
        // The server's own error, word for word, as a direct client would get it.
        ProxyError::Server(s) => (s.code, s.sqlstate.clone(), s.message.clone()),
        ProxyError::Busy(msg) => (ER_CON_COUNT_ERROR, "08004".into(), msg.clone()),
        // The cluster had no writer for switchover_wait: what each server said.
        ProxyError::NoWriter(msg) => (
            ER_PROXY,
            SQLSTATE_LOST.into(),
            format!("goneaway proxy: {msg}"),
        ),
        // Not 2003 CR_CONN_HOST_ERROR: libmariadb rejects a client number from a server as
        // a malformed packet (see the module docs). SQLSTATE 08S01 marks it a connection
        // failure for the drivers that classify by SQLSTATE.
        other => (
            ER_PROXY,
            SQLSTATE_LOST.into(),
            format!("Can't connect to MySQL server on '{addr}' through goneaway proxy: {other}"),
        ),
    }
}
