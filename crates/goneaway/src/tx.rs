//! A transaction guard: `Pool::begin` → `Transaction`, committed or rolled back by the
//! caller, rolled back (or its connection closed) when dropped open.

use std::ops::{Deref, DerefMut};

use goneaway_core::Cause;
use mysql_async::prelude::Queryable;

use crate::conn::PooledConn;
use crate::{Error, Pool};

/// An open transaction on a checked-out connection, from [`Pool::begin`].
///
/// Statements run through the [`PooledConn`] it dereferences to. End it with
/// [`Transaction::commit`] or [`Transaction::rollback`]. Dropped open — an early `?`, a
/// panic, a cancelled future — it is never half applied: its connection gets a `ROLLBACK`
/// before anyone else may use it (or is closed, which makes the server roll it back), and
/// nothing of it is committed.
///
/// Unlike [`Pool::transaction`], a `Transaction` is not rerun after a connection loss:
/// the caller holds the work, so the caller decides. A statement that fails with
/// [`Error::is_disconnect`] means the transaction is gone (rolled back by the server).
///
/// ```no_run
/// # async fn f(pool: goneaway::Pool) -> Result<(), goneaway::Error> {
/// let mut tx = pool.begin().await?;
/// tx.exec_drop("UPDATE account SET balance = balance - 10 WHERE id = ?", (1,)).await?;
/// tx.exec_drop("UPDATE account SET balance = balance + 10 WHERE id = ?", (2,)).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Transaction {
    conn: PooledConn,
}

impl Pool {
    /// Checks out a connection and starts a transaction on it.
    ///
    /// A connection lost before `START TRANSACTION` was answered is replaced (nothing ran),
    /// within the retry policy.
    ///
    /// Cancel safety: dropping the future leaves no transaction open; a connection left
    /// mid-statement is closed.
    pub async fn begin(&self) -> Result<Transaction, Error> {
        let policy = self.inner.cfg.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.get().await?;
            conn.in_transaction = true;
            match conn.run(|c| c.query_drop("START TRANSACTION")).await {
                Ok(()) => return Ok(Transaction { conn }),
                Err(f) => {
                    let e = f.into_error(attempt, false);
                    if !e.is_disconnect() || attempt >= policy.max_attempts {
                        return Err(e);
                    }
                    self.inner.note_retry(e.cause().unwrap_or(Cause::Unknown));
                }
            }
        }
    }
}

impl Transaction {
    /// Commits. A connection lost during `COMMIT` is [`Error::CommitOutcomeUnknown`]:
    /// whether it committed cannot be known from here, and it is not replayed.
    ///
    /// Cancel safety: dropped while `COMMIT` is in flight, the connection is closed and
    /// the outcome is unknown, as for a lost connection.
    pub async fn commit(mut self) -> Result<(), Error> {
        match self.conn.run(|c| c.query_drop("COMMIT")).await {
            Ok(()) => {
                self.conn.in_transaction = false;
                Ok(())
            }
            Err(f) => {
                let e = f.into_error(1, true);
                if e.is_disconnect() {
                    tracing::warn!(error = %e, "connection lost during COMMIT: outcome unknown");
                    return Err(Error::CommitOutcomeUnknown {
                        cause: e.cause().unwrap_or(Cause::Unknown),
                        source: Box::new(e),
                    });
                }
                // COMMIT refused (a deadlock found at commit, say): the server rolled back
                // or will on the ROLLBACK the check-in sends.
                Err(e)
            }
        }
    }

    /// Rolls back. On a lost connection the server has rolled back already, so only an
    /// error on a live connection is returned.
    ///
    /// Cancel safety: dropped mid-way, the connection is closed and the server rolls back.
    pub async fn rollback(mut self) -> Result<(), Error> {
        match self.conn.run(|c| c.query_drop("ROLLBACK")).await {
            Ok(()) => {
                self.conn.in_transaction = false;
                Ok(())
            }
            Err(f) => {
                let e = f.into_error(1, false);
                if e.is_disconnect() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

impl Deref for Transaction {
    type Target = PooledConn;

    fn deref(&self) -> &PooledConn {
        &self.conn
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut PooledConn {
        &mut self.conn
    }
}
