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

mod login;
use login::accept_login;
mod loss;
mod recovery;
mod relay;
mod replica;
mod sharing;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use goneaway_core::codes::{
    CR_SERVER_LOST, ER_ACCESS_DENIED_ERROR, ER_CLIENT_INTERACTION_TIMEOUT, ER_CONNECTION_KILLED,
    ER_CON_COUNT_ERROR, ER_HOST_IS_BLOCKED, ER_MAX_PREPARED_STMT_COUNT_REACHED,
    ER_NET_PACKET_TOO_LARGE, ER_NEW_ABORTING_CONNECTION, ER_OPTION_PREVENTS_STATEMENT,
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
    StatementKey, Step, Taken,
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
    /// The backend failed (see [`BackendLoss`]).
    Backend(BackendLoss),
    /// The client went away.
    ClientGone,
}

/// A backend lost during a command. `flushed`: part of the reply already reached the
/// client (then `seq` is the next sequence id). `not_run`: the server proved it ran
/// nothing. `cause`: known, or what the reconnection must complete. `server_err`: the
/// server's own error packet, when it sent one.
#[derive(Debug)]
struct BackendLoss {
    flushed: bool,
    not_run: bool,
    seq: u8,
    cause: Result<Cause, Unexplained>,
    detail: String,
    server_err: Option<ErrInfo>,
}

/// How a transaction in the failed-transaction state ended (see the module docs).
enum TxEnd {
    /// Its server connection was lost: the cause, `None` until the reconnection tells it.
    Lost(Option<Cause>),
    /// A switchover made the server it ran on (this address) read-only: the old writer
    /// refused a statement of it, the proxy gave that connection up (which rolled it back),
    /// and it could not be replayed on the new writer.
    Moved(String),
}

/// What `Session::command` does after a failure is dealt with.
enum Next {
    /// Send the command again (on a fresh backend).
    Retry,
    /// The command is answered; `false` when the client is gone.
    Done(bool),
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
    /// the module docs), with how it ended and what happened.
    failed_tx: Option<(TxEnd, String)>,
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
    /// The client's id of the prepared statement the command being relayed runs (the
    /// packets sent carry the server's).
    executing: Option<u32>,
    /// Pin reasons this session has counted and logged.
    pins_told: std::collections::BTreeSet<&'static str>,
    /// The statement that last pinned state (for the pin's log line).
    pin_statement: Option<String>,
    /// With `replica_reads`: the GTID of the last transaction this session committed, as
    /// the server reported it (`last_gtid`), which a replica must have applied before it
    /// serves the session's reads.
    last_gtid: Option<String>,
    /// Reads sent to replicas so far, to spread them over several.
    replica_turn: usize,
    /// A read is being relayed from a replica: an error in place of its reply sends it to
    /// the writer instead (see `Session::read_on_replica`).
    reading_on_replica: bool,
    /// Whether the query the last `prepare_packets` prepared is read-only
    /// (`goneaway_core::sql::is_read_only`, which lexes the text): judged once there, for
    /// its replay, and read again after its reply (`writes`) and by the transaction log,
    /// since `forward` always relays what `prepare_packets` prepared last.
    query_read_only: bool,
    /// The replica connection the last read ran on, kept for the next statement when that
    /// read left warnings: a `SHOW WARNINGS` then runs where they are (see
    /// `Session::read_on_replica`); any other statement gives it back first.
    replica_held: Option<(PoolKey, BackendTarget, Backend)>,
    /// Session variables set in a form the server does not report, not read back yet:
    /// their statement left warnings the read would have cleared (see
    /// `Session::read_back_unreported`).
    unreported: Vec<String>,
    /// The privileges of the last connection this session opened (see
    /// [`Backend::grants`]): it takes shared connections that hold the same.
    grants: u64,
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
            executing: None,
            long_data: Default::default(),
            pins_told: Default::default(),
            pin_statement: None,
            last_gtid: None,
            replica_turn: 0,
            reading_on_replica: false,
            query_read_only: false,
            replica_held: None,
            unreported: Vec::new(),
            grants: 0,
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
        session.give_back_replica(None);
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

    /// Gives up a lost backend: remembers its server thread (the one a replay or a
    /// COMMIT's resolution must see gone), and forgets what lived only in it.
    fn forget_backend(&mut self) {
        self.lost_backend = (self.last_thread_id, self.last_backend_opened);
        self.backend = None;
        self.after_loss = true;
        self.cursors.clear();
        self.long_data.clear();
        self.state.backend_replaced();
    }

    /// Records a lost backend: absorbed if nothing is lost with it, else remembered for
    /// the next command's error (a lost transaction: the failed-transaction state). The
    /// cause is known, or `Err` with what the reconnection must complete.
    fn mark_lost(&mut self, cause: Result<Cause, Unexplained>, detail: &str) {
        self.forget_backend();
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
                        TxEnd::Lost(known),
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
        let mut pooled = pooled && !self.after_loss;
        let slots = self.shared.backend_slots.clone();
        let slot_deadline = tokio::time::Instant::now() + config.backend_slot_wait;
        let permit = loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                break p;
            }
            // Wait for a slot, or (sharing) for a connection of this key put back. A session
            // that must open a new one (a login) has connections put back closed for it.
            // The wait is registered before the pool is looked at again: a connection put
            // back by a session on another thread between this session's last look and its
            // registration would otherwise sit in the pool while this session waits for a
            // slot that never frees. Both waits end with their guards, on every way out of
            // this iteration (a connection handed over and not taken goes back to the pool).
            let shared = self.shared.clone();
            let mut handover = pooled.then(|| shared.pool.wait_for(&self.pool_key()));
            let _slot_wait = (config.multiplex && !pooled).then(|| shared.pool.wait_for_slot());
            if pooled {
                if self.take_pooled(None).await? {
                    return Ok(());
                }
                if self.after_loss {
                    // It found one closed: the next is opened, as after any loss.
                    pooled = false;
                    continue;
                }
            }
            if config.multiplex {
                // A connection of another account or shape, unused: its slot serves better.
                if let Some(old) = self.shared.pool.evict_oldest() {
                    drop(handover);
                    old.quit().await;
                    continue;
                }
            }
            let got = tokio::select! {
                p = slots.clone().acquire_owned() => Some(p),
                h = async { match handover.as_mut() { Some(w) => w.handed().await, None => std::future::pending().await } }, if pooled => {
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
            if let Some(p) = got {
                break p.map_err(|_| ProxyError::Timeout("the proxy is shutting down".into()))?;
            }
        };
        let known_limits = self.known_limits.take();
        let opts = self.connect_options(known_limits);
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
        // The privileges of a connection this session opened are the account's now: the
        // shared connections it takes from here on hold the same.
        self.grants = backend.grants;
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
        self.restore_variables(&mut backend).await?;
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

    /// How this session's new server connections log in: with the client's capabilities
    /// and character set, into its database; `known_limits`, the server's limits when a
    /// connection of the same server has read them.
    fn connect_options(&self, known_limits: Option<(Duration, usize)>) -> ConnectOptions {
        let config = &self.gen.config;
        ConnectOptions {
            client_capabilities: self.client_caps,
            client_mariadb_capabilities: self.client_mariadb_caps,
            charset: self.charset,
            database: self.state.database.clone(),
            timeout: config.connect_timeout,
            known_limits,
            login_state: config.multiplex,
        }
    }

    /// Gives a new or reset server connection the session's variables. A value the
    /// server will not take again is logged and the connection used on; a lost
    /// connection is an error.
    async fn restore_variables(&self, b: &mut Backend) -> Result<(), ProxyError> {
        for sql in self.state.restore_statements() {
            if let Err(e) = b.simple(&sql).await {
                if e.is_disconnect() {
                    return Err(e);
                }
                tracing::warn!(session = self.id, error = %e, "could not restore `{sql}`");
            }
        }
        Ok(())
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
        // A prepared statement moves too (prepared again on the new server), unless a
        // cursor or long data of the session lives in the old one. Clients that only
        // execute prepared statements (sysbench prepares even BEGIN and COMMIT) would
        // otherwise never move.
        let movable = matches!(
            cmd,
            com::QUERY
                | com::PING
                | com::INIT_DB
                | com::STMT_PREPARE
                | com::FIELD_LIST
                | com::STMT_EXECUTE
                | com::STMT_RESET
        ) && self.cursors.is_empty()
            && self.long_data.is_empty();
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
        if self.replica_held.is_some() {
            self.give_back_replica(Some(&first));
        }
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
                    let (end, _) = self.failed_tx.take().expect("checked above");
                    // A moved transaction is counted as a redirect (crate::router).
                    if let TxEnd::Lost(cause) = end {
                        let c = cause
                            .or_else(|| self.explained.take())
                            .unwrap_or(Cause::Unknown);
                        self.shared.stats.absorbed(c.as_str());
                    }
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
        // The replica connection a read with warnings ran on: a diagnostics statement runs
        // there; anything else finds it given back.
        if let Some(alive) = self
            .follow_replica_read(cmd, &packets, sql.as_deref())
            .await
        {
            self.shared.stats.command_latency(started.elapsed());
            return alive;
        }
        // A read that may run on a replica runs there when one is fresh enough; otherwise
        // (or when that fails before the client got anything) on the writer, below.
        if self.replica_read_allowed(cmd, &packets, sql.as_deref()) {
            if let Some(alive) = self.read_on_replica(cmd, &packets, sql.as_deref()).await {
                self.shared.stats.command_latency(started.elapsed());
                return alive;
            }
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
                        mark_failure = Some(Failure::Backend(BackendLoss {
                            flushed: false,
                            not_run: true,
                            seq: 1,
                            cause: loss_of(&e, None),
                            detail: e.to_string(),
                            server_err: None,
                        }))
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
                                None,
                            )
                            .await;
                    }
                    Wrapped::NotRun(cause) => {
                        return self
                            .answer_loss(
                                sql.as_deref(),
                                false,
                                None,
                                (false, true, 1),
                                cause,
                                None,
                                None,
                            )
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
                Err(Failure::Backend(loss)) => {
                    match self
                        .after_backend_failure(loss, replayable, sent, tx_sql.as_deref())
                        .await
                    {
                        Next::Retry => continue,
                        Next::Done(alive) => return alive,
                    }
                }
            }
        }
    }

    /// A backend failed during the command (see [`Failure::Backend`]): the COMMIT resolved
    /// by its mark, the transaction replayed, the statement run again where that is safe
    /// (`Next::Retry`), or the client told what was lost (`Next::Done`). `replayable`: the
    /// command may run again; `sent`: when it went out; `tx_sql`: the text the
    /// transaction-control decisions read.
    async fn after_backend_failure(
        &mut self,
        loss: BackendLoss,
        replayable: bool,
        sent: Instant,
        tx_sql: Option<&str>,
    ) -> Next {
        let BackendLoss {
            flushed,
            not_run,
            seq,
            cause,
            detail,
            server_err,
        } = loss;
        let mut cause = cause;
        // A statement refused by an old writer goes to the new one: counted in
        // read_only_redirects_total (crate::router), not as a loss.
        let redirected = server_err
            .as_ref()
            .is_some_and(|e| e.code == ER_OPTION_PREVENTS_STATEMENT);
        let absorbed = |s: &Self, c: Cause| {
            if !redirected {
                s.shared.stats.absorbed(c.as_str());
            }
        };
        let in_tx = self.state.in_transaction;
        // A transaction moved off the old writer: if it is not replayed, the client is
        // told that, in words, with the server it ran on (it was not a lost connection).
        let moved_from = (redirected && in_tx).then(|| self.target.addr().to_string());
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
        let is_commit = in_tx && tx_sql.is_some_and(|s| first_word(s) == "commit");
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
                    absorbed(self, c);
                    tracing::info!(session = self.id, cause = %c, "a COMMIT lost with its connection had committed (its mark is there)");
                    self.tx_log = None;
                    self.tx_wrote = false;
                    return Next::Done(self.send_ok(1).await);
                }
                Some(false) => {
                    self.shared.stats.commit_resolved("not_committed");
                    if pinned_free && !killed {
                        match self.replay_transaction().await {
                            Ok(()) => {
                                let c = known(self);
                                absorbed(self, c);
                                self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                                return Next::Retry;
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
                    let msg = match &moved_from {
                        Some(old) => format!(
                            "MySQL server has gone away (Connection was killed by goneaway proxy: the writer moved: a switchover made {old}, the server this transaction ran on, read-only, and it refused this COMMIT; \
                             goneaway gave that connection up, so nothing of the transaction was committed{why}. The transaction has ended; run it again from its start)"
                        ),
                        None => format!(
                            "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost during this COMMIT (cause: {c}); \
                             goneaway checked that it did not commit: nothing of the transaction was committed{why}. The transaction has ended; run it again from its start)"
                        ),
                    };
                    return Next::Done(
                        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "commit_not_committed", &msg)
                            .await,
                    );
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
        let ends = ends_transaction(tx_sql)
            || tx_sql.is_some_and(|s| txlog::commits_implicitly(&first_word(s)));
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
                    absorbed(self, c);
                    self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                    return Next::Retry;
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
                    return Next::Done(
                        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "statement_killed", &msg)
                            .await,
                    );
                }
                cause = Ok(c);
            }
        }
        if !flushed && lost.is_none() && !killed && (not_run || replayable) {
            self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
            match cause {
                Ok(c) => absorbed(self, c),
                Err(mut u) => {
                    u.absorbed = true;
                    self.unexplained = Some(u);
                }
            }
            return Next::Retry;
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
        return Next::Done(
            self.answer_loss(
                tx_sql,
                in_tx,
                lost,
                (flushed, not_run, seq),
                cause,
                server_err,
                moved_from,
            )
            .await,
        );
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
    failed_tx: Option<(TxEnd, String)>,
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
