//! A checked-out connection: runs statements with the read timeout, remembers whether the
//! connection died, and returns itself to the pool on `Drop`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use goneaway_core::{Diagnosis, Retry};
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Params};
use tokio::sync::OwnedSemaphorePermit;

use crate::pool::{Idle, Inner, Session};
use crate::tcp::TcpTuning;
use crate::Error;

/// A connection checked out of a [`Pool`](crate::Pool). It goes back to the pool when
/// dropped — or is closed, if it died or is due for recycling.
///
/// Its statement methods return [`Error`] and never retry (the pool's own
/// [`query`](crate::Pool::query)/[`exec_drop`](crate::Pool::exec_drop) do). For
/// anything else, [`PooledConn::conn`] gives the `mysql_async::Conn` itself; after a
/// connection error there, call [`PooledConn::discard`].
///
/// # What comes back to the pool
///
/// A connection is reused only if it is provably clean when it returns:
///
/// - **No unread reply.** Dropped while a statement or a ping was in flight (a cancelled
///   future, a timeout around a call, a panic), it is closed, never reused: the next
///   caller would read this statement's reply. This holds for statements run through
///   [`PooledConn::conn`] too (the driver marks a connection busy for the whole command).
/// - **No open transaction, `autocommit` on.** When the last reply the server sent says a
///   transaction is open or `autocommit` is off — or there is no such reply because the
///   last statement failed — the pool sends `ROLLBACK` in the background (the connection
///   still counts against `max_size`) and reuses it only if the server then reports it
///   clean; otherwise it is closed.
/// - **The pool's own session changes undone** (the raised `net_*_timeout`s of
///   [`Pool::bulk_insert`](crate::Pool::bulk_insert)): if the restore did not run, the
///   connection is closed.
///
/// Session state *you* change (`SET @x`, `SET SESSION …`, temporary tables, `GET_LOCK`)
/// stays with the connection and is not reset when it returns: put per-session settings in
/// [`PoolOptions::init_statement`](crate::PoolOptions::init_statement) instead.
pub struct PooledConn {
    /// `None` only inside `Drop`.
    conn: Option<Conn>,
    pub(crate) session: Session,
    /// Set when the connection is known dead or in an unknown protocol state.
    discard: bool,
    /// Set while [`PooledConn::run`] has an operation in flight: still set in `Drop` means
    /// the future was dropped mid-operation, and a reply (or the rest of a result) may be
    /// unread.
    in_flight: bool,
    /// Set while the pool has changed a session setting it has not yet restored (bulk
    /// work's `net_*_timeout`): still set in `Drop` means the restore never ran.
    pub(crate) session_changed: bool,
    /// Set while a transaction the pool opened is neither committed nor rolled back: a
    /// `ROLLBACK` before reuse whatever the server's last status flags said.
    pub(crate) in_transaction: bool,
    /// Released after the connection is back in the pool, so a waiter finds it there.
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Inner>,
}

/// Why one statement failed.
pub(crate) enum Failure {
    /// No answer within `statement_timeout`.
    Timeout(Duration),
    /// The driver's error and what the classifier made of it.
    Driver(mysql_async::Error, Box<Diagnosis>),
}

impl Failure {
    /// The error a caller sees when this failure is not retried.
    pub(crate) fn into_error(self, attempts: u32, may_have_run: bool) -> Error {
        match self {
            Failure::Timeout(d) => Error::StatementTimeout(d),
            Failure::Driver(e, d) => {
                if d.connection_lost && d.retry == Retry::RetryIfIdempotent && may_have_run {
                    Error::OutcomeUnknown {
                        cause: d.primary(),
                        source: e,
                    }
                } else {
                    Error::statement(&d, e, attempts)
                }
            }
        }
    }
}

impl PooledConn {
    pub(crate) fn new(idle: Idle, permit: OwnedSemaphorePermit, pool: Arc<Inner>) -> Self {
        PooledConn {
            conn: Some(idle.conn),
            session: idle.session,
            discard: false,
            in_flight: false,
            session_changed: false,
            in_transaction: false,
            permit: Some(permit),
            pool,
        }
    }

    /// The server's id for this connection (as in `SHOW PROCESSLIST` and `KILL`).
    pub fn id(&self) -> u32 {
        self.session.id
    }

    /// The session's `max_allowed_packet`, read when the connection was opened.
    pub fn max_allowed_packet(&self) -> usize {
        self.session.max_allowed_packet
    }

    /// The session's `wait_timeout`, read when the connection was opened.
    pub fn wait_timeout(&self) -> Duration {
        self.session.wait_timeout
    }

    /// The keepalive interval, probe count and `TCP_USER_TIMEOUT` set on this connection's
    /// socket when it was opened, as read back from the socket; `None` when they could
    /// not be set (not Linux, a Unix socket, a proxy in between — see [`TcpSkip`]) or
    /// there was nothing to set.
    ///
    /// [`TcpSkip`]: crate::TcpSkip
    pub fn tcp_tuning(&self) -> Option<TcpTuning> {
        self.session.tcp
    }

    /// The driver connection, for anything the methods here do not cover.
    pub fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }

    /// Marks the connection dead: it is closed instead of returned to the pool.
    pub fn discard(&mut self) {
        self.discard = true;
    }

    /// Whether the connection is known dead or was left mid-command (for example by an
    /// error or a cancellation while using [`PooledConn::conn`] directly): it will be
    /// closed, not reused.
    pub fn is_broken(&self) -> bool {
        self.discard || self.in_flight || self.conn.as_ref().is_none_or(|c| c.is_disconnected())
    }

    /// Runs one driver operation with the statement timeout, marking the connection
    /// dead when it is lost or times out.
    ///
    /// A loss is judged with how long the connection sat silent before the statement
    /// ([`Diagnosis::given_idle`]): silent past the server's `wait_timeout`, the server had
    /// closed it, so the statement never ran and the advice becomes
    /// `reconnect_then_retry` — which is what lets even a write be retried.
    pub(crate) async fn run<'c, T, Fut>(
        &'c mut self,
        op: impl FnOnce(&'c mut Conn) -> Fut,
    ) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, mysql_async::Error>> + 'c,
    {
        let timeout = self.pool.cfg.statement_timeout;
        // How long the connection was silent before this statement: the fact that tells a
        // server idle timeout from the other ways a connection is lost.
        let idle = self.session.last_active.elapsed();
        // Cleared only when the operation has finished: if this future is dropped at any
        // await below, `Drop` sees it set and closes the connection.
        self.in_flight = true;
        let fut = op(self.conn.as_mut().expect("present until drop"));
        let result = match timeout {
            Some(d) => match tokio::time::timeout(d, fut).await {
                Ok(r) => r,
                Err(_) => {
                    // The protocol state is unknown mid-statement: never reuse it.
                    self.discard = true;
                    self.pool.note_gone_away(goneaway_core::Cause::NetworkDrop);
                    tracing::warn!(
                        connection_id = self.session.id,
                        ?d,
                        "statement timed out; connection discarded"
                    );
                    return Err(Failure::Timeout(d));
                }
            },
            None => fut.await,
        };
        self.in_flight = false;
        match result {
            Ok(v) => {
                self.session.last_active = Instant::now();
                Ok(v)
            }
            Err(e) => {
                let d = goneaway_core::classify_mysql_async(&e)
                    .given_idle(idle, self.session.wait_timeout);
                if d.connection_lost {
                    self.discard = true;
                    self.pool.note_gone_away(d.primary());
                    tracing::info!(connection_id = self.session.id, cause = %d.primary(), retry = %d.retry, error = %e, "connection lost");
                } else {
                    self.session.last_active = Instant::now();
                }
                Err(Failure::Driver(e, Box::new(d)))
            }
        }
    }

    /// Runs a text-protocol query and collects its rows.
    ///
    /// Cancel safety: dropped mid-statement, the connection is closed when this `PooledConn` is dropped, never reused.
    pub async fn query<T: FromRow + Send + 'static>(&mut self, sql: &str) -> Result<Vec<T>, Error> {
        self.run(|c| c.query(sql))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Runs a text-protocol query and returns its first row.
    ///
    /// Cancel safety: as [`PooledConn::query`].
    pub async fn query_first<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
    ) -> Result<Option<T>, Error> {
        self.run(|c| c.query_first(sql))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Runs a text-protocol statement and discards its result.
    ///
    /// Cancel safety: as [`PooledConn::query`].
    pub async fn query_drop(&mut self, sql: &str) -> Result<(), Error> {
        self.run(|c| c.query_drop(sql))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Prepares (cached) and executes a statement, collecting its rows.
    ///
    /// Cancel safety: as [`PooledConn::query`].
    pub async fn exec<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        params: impl Into<Params> + Send,
    ) -> Result<Vec<T>, Error> {
        self.run(|c| c.exec(sql, params))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Prepares (cached) and executes a statement, returning its first row.
    ///
    /// Cancel safety: as [`PooledConn::query`].
    pub async fn exec_first<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        params: impl Into<Params> + Send,
    ) -> Result<Option<T>, Error> {
        self.run(|c| c.exec_first(sql, params))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Prepares (cached) and executes a statement; returns the rows affected.
    ///
    /// Cancel safety: as [`PooledConn::query`].
    pub async fn exec_drop(
        &mut self,
        sql: &str,
        params: impl Into<Params> + Send,
    ) -> Result<u64, Error> {
        self.run(|c| async move {
            c.exec_drop(sql, params).await?;
            Ok(c.affected_rows())
        })
        .await
        .map_err(|f| f.into_error(1, true))
    }
}

/// How a connection comes back to the pool (see "What comes back to the pool" on
/// [`PooledConn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    /// Clean: straight back to the idle list.
    Clean,
    /// A transaction may be open or `autocommit` is off: `ROLLBACK` first, then judge.
    RollBack,
    /// Never reuse it; the reason is the `closed` metric's label.
    Close(&'static str),
}

impl PooledConn {
    /// Judges the connection as it comes back, from what the pool and the driver know
    /// without a round trip.
    fn disposition(&self, conn: &Conn) -> Return {
        use crate::metrics_names as m;
        if self.discard {
            Return::Close(m::REASON_DEAD)
        } else if self.in_flight || conn.is_disconnected() {
            // The driver sets `is_disconnected` for the whole of every command and clears
            // it when the reply has been read: still set, a reply is unread (or the
            // connection died).
            Return::Close(m::REASON_CANCELLED)
        } else if self.session_changed {
            Return::Close(m::REASON_UNCLEAN)
        } else if !self.in_transaction && session_is_clean(conn) {
            Return::Clean
        } else {
            Return::RollBack
        }
    }
}

/// Whether the server's last reply says no transaction is open and `autocommit` is on.
/// After an error there is no such reply (`last_ok_packet` is `None`), so it is not known.
pub(crate) fn session_is_clean(conn: &Conn) -> bool {
    use mysql_async::consts::StatusFlags;
    conn.last_ok_packet().is_some_and(|ok| {
        let flags = ok.status_flags();
        flags.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT)
            && !flags.contains(StatusFlags::SERVER_STATUS_IN_TRANS)
    })
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let permit = self.permit.take();
        if let Some(conn) = self.conn.take() {
            let how = self.disposition(&conn);
            // The permit goes with the connection: released once it is back in the idle
            // list (so a waiter it wakes finds it there) or closed.
            self.pool.check_in(
                Idle {
                    conn,
                    session: self.session,
                },
                how,
                permit,
            );
        }
    }
}

impl std::fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConn")
            .field("id", &self.session.id)
            .field("discard", &self.discard)
            .finish()
    }
}
