//! Retry that is correct: statements retried only when safe, transactions rerun whole,
//! `COMMIT` never replayed.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use goneaway_core::{Cause, Retry};
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Params};

use crate::conn::{Failure, PooledConn};
use crate::{Error, Pool};

/// A boxed future, as returned by the closures given to [`Pool::transaction`] and
/// [`Pool::with_conn`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// SQL text and what the caller knows about retrying it.
///
/// A plain `&str` or `String` converts into a statement whose safety the pool judges
/// itself: read-only statements (`SELECT`, `SHOW`, …) may be retried after a connection
/// loss; anything else only when the classifier says nothing reached the server. A
/// `SELECT` that calls a stored function counts as a write, since the function may write.
/// [`Statement::idempotent`] tells the pool that running it twice is harmless.
#[derive(Debug, Clone)]
pub struct Statement {
    sql: String,
    idempotent: bool,
}

impl Statement {
    /// A statement whose safety the pool judges from its text.
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            idempotent: false,
        }
    }

    /// Marks the statement idempotent (`UPDATE t SET a = 1 WHERE id = 7`, `INSERT …
    /// ON DUPLICATE KEY UPDATE` with fixed values, `DELETE … WHERE id = 7`): it may be
    /// retried even when the server may have run it.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Whether it may be retried when its outcome is unknown.
    pub fn retry_when_outcome_unknown(&self) -> bool {
        self.idempotent || goneaway_core::sql::is_read_only(&self.sql)
    }
}

impl From<&str> for Statement {
    fn from(sql: &str) -> Self {
        Statement::new(sql)
    }
}

impl From<String> for Statement {
    fn from(sql: String) -> Self {
        Statement::new(sql)
    }
}

/// What to do after a failed attempt.
pub(crate) enum Verdict {
    /// Safe to run again; the error is what the caller gets if attempts run out.
    Retry(Cause, Error),
    Fail(Error),
}

impl Pool {
    /// The retry loop for one statement: checkout (never failing on a dead connection),
    /// run `op` with the statement's SQL, and on failure retry on a fresh connection when
    /// it is safe.
    pub(crate) async fn run_statement<T, F>(&self, stmt: Statement, op: F) -> Result<T, Error>
    where
        F: for<'c> Fn(&'c mut Conn, &'c str) -> BoxFuture<'c, Result<T, mysql_async::Error>>,
    {
        let may_repeat = stmt.retry_when_outcome_unknown();
        let policy = self.inner.cfg.retry;
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut pc = self.get().await?;
            let failure = match pc.run(|c| op(c, &stmt.sql)).await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            drop(pc);
            match judge(failure, attempt, may_repeat) {
                Verdict::Retry(cause, _)
                    if attempt < policy.max_attempts && start.elapsed() < policy.deadline =>
                {
                    self.inner.note_retry(cause);
                    tracing::info!(attempt, %cause, "retrying statement on a fresh connection");
                    // The first retry after a dead connection goes at once: it runs on
                    // another connection (validated, since the pool is now suspicious),
                    // and the server is not the one in trouble. Later ones back off.
                    if attempt > 1 {
                        tokio::time::sleep(policy.backoff(attempt - 1)).await;
                    }
                }
                // Out of attempts or time: the last failure, as it was.
                Verdict::Retry(_, e) | Verdict::Fail(e) => return Err(e),
            }
        }
    }

    /// Runs a query and collects its rows, retrying on a fresh connection when safe
    /// (always when nothing reached the server; after a loss mid-statement only if it is
    /// read-only or [`Statement::idempotent`]).
    ///
    /// Cancel safety: dropped mid-statement, the connection is closed, never reused; a write's outcome is then unknown.
    pub async fn query<T>(&self, stmt: impl Into<Statement>) -> Result<Vec<T>, Error>
    where
        T: FromRow + Send + 'static,
    {
        self.run_statement(stmt.into(), |c, sql| c.query(sql)).await
    }

    /// Runs a query and returns its first row, retrying like [`Pool::query`].
    ///
    /// Cancel safety: as [`Pool::query`].
    pub async fn query_first<T>(&self, stmt: impl Into<Statement>) -> Result<Option<T>, Error>
    where
        T: FromRow + Send + 'static,
    {
        self.run_statement(stmt.into(), |c, sql| c.query_first(sql))
            .await
    }

    /// Executes a prepared statement with parameters and collects its rows, retrying like
    /// [`Pool::query`].
    ///
    /// Cancel safety: as [`Pool::query`].
    pub async fn exec<T>(
        &self,
        stmt: impl Into<Statement>,
        params: impl Into<Params>,
    ) -> Result<Vec<T>, Error>
    where
        T: FromRow + Send + 'static,
    {
        let params: Params = params.into();
        self.run_statement(stmt.into(), |c, sql| c.exec(sql, params.clone()))
            .await
    }

    /// Executes a prepared statement and returns its first row, retrying like
    /// [`Pool::query`].
    ///
    /// Cancel safety: as [`Pool::query`].
    pub async fn exec_first<T>(
        &self,
        stmt: impl Into<Statement>,
        params: impl Into<Params>,
    ) -> Result<Option<T>, Error>
    where
        T: FromRow + Send + 'static,
    {
        let params: Params = params.into();
        self.run_statement(stmt.into(), |c, sql| c.exec_first(sql, params.clone()))
            .await
    }

    /// Executes a statement and returns the rows it affected, retrying like
    /// [`Pool::query`]. An `INSERT` lost mid-flight fails with
    /// [`Error::OutcomeUnknown`] instead of risking a second row.
    ///
    /// Cancel safety: as [`Pool::query`].
    pub async fn exec_drop(
        &self,
        stmt: impl Into<Statement>,
        params: impl Into<Params>,
    ) -> Result<u64, Error> {
        let params: Params = params.into();
        self.run_statement(stmt.into(), |c, sql| {
            let params = params.clone();
            Box::pin(async move {
                c.exec_drop(sql, params).await?;
                Ok(c.affected_rows())
            })
        })
        .await
    }

    /// Runs a text-protocol query and hands each row to `each` as it arrives, without
    /// collecting the result: for results too large to hold. Returns the rows delivered.
    ///
    /// Retried like [`Pool::query`] only until the first row has reached `each`; a loss
    /// after that is returned (the rows already delivered cannot be taken back), with
    /// [`Error::is_disconnect`] true. An error from `each` stops the stream and is
    /// returned; the rest of the result is drained (or the connection closed).
    ///
    /// Cancel safety: dropped mid-stream, the connection is closed, never reused.
    ///
    /// ```no_run
    /// # async fn f(pool: goneaway::Pool) -> Result<(), goneaway::Error> {
    /// let mut total = 0i64;
    /// pool.query_each("SELECT amount FROM payments", |amount: i64| {
    ///     total += amount;
    ///     Ok(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn query_each<T, F>(&self, stmt: impl Into<Statement>, each: F) -> Result<u64, Error>
    where
        T: FromRow + Send + 'static,
        F: FnMut(T) -> Result<(), Error> + Send,
    {
        self.stream_rows(stmt.into(), None, each).await
    }

    /// [`Pool::query_each`] for a prepared statement with parameters.
    ///
    /// Cancel safety: as [`Pool::query_each`].
    pub async fn exec_each<T, F>(
        &self,
        stmt: impl Into<Statement>,
        params: impl Into<Params>,
        each: F,
    ) -> Result<u64, Error>
    where
        T: FromRow + Send + 'static,
        F: FnMut(T) -> Result<(), Error> + Send,
    {
        self.stream_rows(stmt.into(), Some(params.into()), each)
            .await
    }

    async fn stream_rows<T, F>(
        &self,
        stmt: Statement,
        params: Option<Params>,
        mut each: F,
    ) -> Result<u64, Error>
    where
        T: FromRow + Send + 'static,
        F: FnMut(T) -> Result<(), Error> + Send,
    {
        let may_repeat = stmt.retry_when_outcome_unknown();
        let policy = self.inner.cfg.retry;
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut pc = self.get().await?;
            let mut delivered = 0u64;
            // The caller's own error, kept apart from the driver's.
            let mut refused: Option<Error> = None;
            let sql = stmt.sql();
            let outcome = pc
                .run(|c| async {
                    match &params {
                        None => {
                            let result = c.query_iter(sql).await?;
                            deliver(result, &mut each, &mut delivered, &mut refused).await
                        }
                        Some(p) => {
                            let result = c.exec_iter(sql, p.clone()).await?;
                            deliver(result, &mut each, &mut delivered, &mut refused).await
                        }
                    }
                })
                .await;
            let failure = match (outcome, refused) {
                (_, Some(e)) => return Err(e),
                (Ok(()), None) => return Ok(delivered),
                (Err(f), None) => f,
            };
            drop(pc);
            if delivered > 0 {
                // Rows reached the caller: running it again would deliver them twice.
                return Err(failure.into_error(attempt, true));
            }
            match judge(failure, attempt, may_repeat) {
                Verdict::Retry(cause, _)
                    if attempt < policy.max_attempts && start.elapsed() < policy.deadline =>
                {
                    self.inner.note_retry(cause);
                    if attempt > 1 {
                        tokio::time::sleep(policy.backoff(attempt - 1)).await;
                    }
                }
                Verdict::Retry(_, e) | Verdict::Fail(e) => return Err(e),
            }
        }
    }

    /// Runs `work` inside a transaction and commits it. The whole transaction is rerun on a
    /// fresh connection when the connection is lost before `COMMIT`, on deadlock (1213) and
    /// whenever the classifier advises `retry_transaction`; bounded by the retry policy.
    ///
    /// A connection lost *during* `COMMIT` is [`Error::CommitOutcomeUnknown`]: it is never
    /// replayed. An error from `work` rolls the transaction back and is returned.
    ///
    /// `work` may run more than once, so it must not have effects outside the database
    /// that cannot be repeated.
    ///
    /// ```no_run
    /// # async fn f(pool: goneaway::Pool) -> Result<(), goneaway::Error> {
    /// let moved = pool
    ///     .transaction(|tx| Box::pin(async move {
    ///         tx.exec_drop("UPDATE account SET balance = balance - 10 WHERE id = 1", ()).await?;
    ///         tx.exec_drop("UPDATE account SET balance = balance + 10 WHERE id = 2", ()).await?;
    ///         Ok(10)
    ///     }))
    ///     .await?;
    /// # let _: i32 = moved; Ok(()) }
    /// ```
    ///
    /// Cancel safety: dropped at any point before `COMMIT` is answered, nothing of the transaction is committed by the pool: a connection left mid-statement is closed (the server rolls back), one left between statements gets a `ROLLBACK` before reuse. Dropped while `COMMIT` is in flight, the outcome is unknown.
    pub async fn transaction<T, F>(&self, mut work: F) -> Result<T, Error>
    where
        F: for<'t> FnMut(&'t mut PooledConn) -> BoxFuture<'t, Result<T, Error>>,
    {
        let policy = self.inner.cfg.retry;
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut pc = self.get().await?;
            // Until COMMIT or ROLLBACK is answered: if this future is dropped, the check-in
            // rolls back (or closes a connection left mid-statement).
            pc.in_transaction = true;
            // The attempt's error; success returns from inside.
            let e: Error = match pc.run(|c| c.query_drop("START TRANSACTION")).await {
                // Nothing ran yet: a lost connection here is always safe to retry.
                Err(f) => f.into_error(attempt, false),
                Ok(()) => match work(&mut pc).await {
                    Err(e) => e,
                    Ok(value) => match pc.run(|c| c.query_drop("COMMIT")).await {
                        Ok(()) => {
                            pc.in_transaction = false;
                            return Ok(value);
                        }
                        Err(f) => {
                            let e = f.into_error(attempt, true);
                            if e.is_disconnect() {
                                tracing::warn!(error = %e, "connection lost during COMMIT: outcome unknown, not replayed");
                                return Err(Error::CommitOutcomeUnknown {
                                    cause: e.cause().unwrap_or(Cause::Unknown),
                                    source: Box::new(e),
                                });
                            }
                            e
                        }
                    },
                },
            };
            // Work that used the driver connection directly may have lost it without an
            // error of ours saying so: the driver's own state tells.
            let lost = e.is_disconnect() || pc.is_broken();
            let rerun =
                lost || matches!(
                    e,
                    Error::Statement {
                        retry: Retry::RetryTransaction,
                        ..
                    }
                ) || e.cause() == Some(Cause::Deadlock);
            if lost {
                pc.discard();
            } else if pc.query_drop("ROLLBACK").await.is_ok() {
                // The connection is healthy and the transaction ended before it goes back.
                pc.in_transaction = false;
            } else {
                pc.discard();
            }
            drop(pc);
            if rerun && attempt < policy.max_attempts && start.elapsed() < policy.deadline {
                let cause = e.cause().unwrap_or(Cause::Unknown);
                self.inner.note_retry(cause);
                tracing::info!(attempt, %cause, error = %e, "rerunning transaction");
                tokio::time::sleep(policy.backoff(attempt)).await;
                continue;
            }
            return Err(e);
        }
    }

    /// Runs one unit of work on a connection that has just proved alive (pinged, or just
    /// opened), whatever the validation mode: for workers and cron jobs that idle for
    /// hours between units. The work runs once; it is not retried.
    ///
    /// Cancel safety: as [`Pool::get`] and the statements `work` runs.
    pub async fn with_conn<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: for<'c> FnOnce(&'c mut PooledConn) -> BoxFuture<'c, Result<T, Error>>,
    {
        let mut pc = self.get_validated().await?;
        work(&mut pc).await
    }
}

/// Hands the rows of `result` to `each` one by one, counting them in `delivered`; an
/// error from `each` stops the delivery and lands in `refused`. The rest of the result is
/// drained either way, so the connection goes back with nothing unread.
async fn deliver<T, F, P>(
    mut result: mysql_async::QueryResult<'_, '_, P>,
    each: &mut F,
    delivered: &mut u64,
    refused: &mut Option<Error>,
) -> Result<(), mysql_async::Error>
where
    T: FromRow + Send + 'static,
    F: FnMut(T) -> Result<(), Error> + Send,
    P: mysql_async::prelude::Protocol,
{
    while let Some(row) = result.next().await? {
        let value = mysql_async::from_row_opt::<T>(row)
            .map_err(|e| mysql_async::DriverError::FromRow { row: e.0 })?;
        *delivered += 1;
        if let Err(e) = each(value) {
            *refused = Some(e);
            break;
        }
    }
    result.drop_result().await
}

/// Decides whether a failed statement may run again.
///
/// `may_repeat`: read-only or marked idempotent. Whether a loss proves the statement never
/// ran is the diagnosis's to say: `PooledConn::run` has already judged it with how long
/// the connection sat idle.
pub(crate) fn judge(failure: Failure, attempt: u32, may_repeat: bool) -> Verdict {
    match failure {
        Failure::Timeout(d) => {
            if may_repeat {
                Verdict::Retry(Cause::NetworkDrop, Error::StatementTimeout(d))
            } else {
                Verdict::Fail(Error::StatementTimeout(d))
            }
        }
        Failure::Driver(e, d) => {
            let nothing_ran = d.is_safe_to_retry();
            let allowed = match d.retry {
                Retry::SafeToRetry | Retry::ReconnectThenRetry => true,
                // Outside a transaction, a statement rolled back alone is safe to rerun.
                Retry::RetryTransaction => true,
                Retry::RetryIfIdempotent => may_repeat,
                _ => false,
            };
            // Errors on a healthy connection that are not about the connection or
            // rollback (syntax, constraint) are the caller's.
            let relevant = d.connection_lost || d.retry == Retry::RetryTransaction;
            let cause = d.primary();
            let error = Failure::Driver(e, d).into_error(attempt, !nothing_ran);
            if allowed && relevant {
                Verdict::Retry(cause, error)
            } else {
                Verdict::Fail(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Statement;

    #[test]
    fn reads_are_retried_and_stored_function_calls_are_not() {
        assert!(Statement::new("SELECT name FROM users WHERE id = ?").retry_when_outcome_unknown());
        assert!(!Statement::new("SELECT next_invoice_number()").retry_when_outcome_unknown());
        assert!(Statement::new("SELECT next_invoice_number()")
            .idempotent()
            .retry_when_outcome_unknown());
        assert!(!Statement::new("INSERT INTO t VALUES (1)").retry_when_outcome_unknown());
    }
}
