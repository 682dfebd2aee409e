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
/// Session state you change (`SET @x`, `SET SESSION …`) stays with the connection and
/// is not reset when it returns: put per-session settings in
/// [`PoolOptions::init_statement`](crate::PoolOptions::init_statement) instead.
pub struct PooledConn {
    /// `None` only inside `Drop`.
    conn: Option<Conn>,
    pub(crate) session: Session,
    /// Set when the connection is known dead or in an unknown protocol state.
    discard: bool,
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
    pub async fn query<T: FromRow + Send + 'static>(&mut self, sql: &str) -> Result<Vec<T>, Error> {
        self.run(|c| c.query(sql))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Runs a text-protocol query and returns its first row.
    pub async fn query_first<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
    ) -> Result<Option<T>, Error> {
        self.run(|c| c.query_first(sql))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Runs a text-protocol statement and discards its result.
    pub async fn query_drop(&mut self, sql: &str) -> Result<(), Error> {
        self.run(|c| c.query_drop(sql))
            .await
            .map_err(|f| f.into_error(1, true))
    }

    /// Prepares (cached) and executes a statement, collecting its rows.
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

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.check_in(
                Idle {
                    conn,
                    session: self.session,
                },
                self.discard,
            );
        }
        // After the check-in, so a waiter woken by this permit finds the connection idle.
        drop(self.permit.take());
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
