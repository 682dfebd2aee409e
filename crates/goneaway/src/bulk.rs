//! Bulk writes that fit the packet limit: multi-row `INSERT`s packed by bytes against the
//! session's `max_allowed_packet`, and `UPDATE/DELETE … LIMIT n` run until done.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value};

use crate::conn::PooledConn;
use crate::retry::{judge, Verdict};
use crate::{Error, Pool, Statement};

/// Room left in every packet for the packet header and the driver's framing.
const PACKET_SLACK: usize = 1024;

/// How far a bulk operation has got, reported to the progress callback after every
/// statement and returned at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Rows written (inserted, or affected for [`Pool::batched`]).
    pub rows: u64,
    /// Bytes of SQL sent.
    pub bytes: u64,
    /// Statements run.
    pub statements: u64,
}

/// A bulk insert: the table, its columns and how to run it. See [`Pool::bulk_insert`].
pub struct BulkInsert {
    /// Table name, quoted with backticks when the statement is built.
    table: String,
    /// Column names, in the order of each row's values.
    columns: Vec<String>,
    /// Whether a batch whose outcome is unknown may be sent again (the table has a key
    /// that makes duplicates fail harmlessly, or the caller uses `INSERT IGNORE`).
    idempotent: bool,
    /// `INSERT` or `INSERT IGNORE` or `REPLACE`.
    verb: &'static str,
    /// `net_read_timeout`/`net_write_timeout` for the session while the bulk work runs
    /// (default 600 s), restored after: a large packet on a slow link must not hit the
    /// server's 30 s/60 s defaults.
    net_timeout: Duration,
    /// Called after every statement.
    progress: Option<ProgressFn>,
}

/// A progress callback.
type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

impl std::fmt::Debug for BulkInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkInsert")
            .field("table", &self.table)
            .field("columns", &self.columns)
            .field("verb", &self.verb)
            .finish()
    }
}

impl BulkInsert {
    /// Inserts into `table`, each row giving values for `columns` in order.
    pub fn new(table: impl Into<String>, columns: &[&str]) -> Self {
        BulkInsert {
            table: table.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            idempotent: false,
            verb: "INSERT",
            net_timeout: Duration::from_secs(600),
            progress: None,
        }
    }

    /// Uses `INSERT IGNORE`, which makes a resent batch harmless on a keyed table, and
    /// marks batches idempotent.
    pub fn ignore_duplicates(mut self) -> Self {
        self.verb = "INSERT IGNORE";
        self.idempotent = true;
        self
    }

    /// Marks batches idempotent: a batch lost mid-flight is sent again.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Session `net_read_timeout`/`net_write_timeout` during the work (default 600 s).
    pub fn net_timeout(mut self, d: Duration) -> Self {
        self.net_timeout = d;
        self
    }

    /// Called after every statement with the running totals.
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}

/// Session settings saved before bulk work, restored after.
struct Saved {
    net_read_timeout: u64,
    net_write_timeout: u64,
    no_backslash_escapes: bool,
}

impl Pool {
    /// Inserts `rows` with as few statements as the packet limit allows: rows are packed
    /// into multi-row `INSERT`s by their size as SQL text against the session's
    /// `max_allowed_packet` (not by a fixed row count), so a payload many times the limit
    /// lands whole. Each statement commits on its own (autocommit).
    ///
    /// A batch lost before the server saw it is resent on a fresh connection; one whose
    /// outcome is unknown is resent only if [`BulkInsert::idempotent`] — otherwise the
    /// error says so and the progress callback has told how many rows landed.
    ///
    /// Cancel safety: dropped mid-way, the batches already answered are committed and the one in flight is unknown; the connection (its timeouts raised) is closed, never reused.
    pub async fn bulk_insert<I>(&self, mut spec: BulkInsert, rows: I) -> Result<Progress, Error>
    where
        I: IntoIterator<Item = Vec<Value>>,
    {
        if spec.columns.is_empty() {
            return Err(Error::Invalid(
                "bulk_insert needs at least one column".into(),
            ));
        }
        let mut pc = self.get().await?;
        let mut saved = raise_net_timeouts(&mut pc, spec.net_timeout).await?;
        let result = self.insert_rows(&mut spec, rows, &mut pc, &mut saved).await;
        // On failure too: a pooled connection must not keep settings nobody asked for
        // (if this never runs — a cancelled future — `session_changed` closes it).
        restore_net_timeouts(&mut pc, &saved).await;
        result
    }

    /// The body of [`Pool::bulk_insert`], between raising and restoring the timeouts.
    async fn insert_rows<I>(
        &self,
        spec: &mut BulkInsert,
        rows: I,
        pc: &mut PooledConn,
        saved: &mut Saved,
    ) -> Result<Progress, Error>
    where
        I: IntoIterator<Item = Vec<Value>>,
    {
        let budget = pc.max_allowed_packet().saturating_sub(PACKET_SLACK);
        let prefix = format!(
            "{} INTO {} ({}) VALUES ",
            spec.verb,
            quote_ident(&spec.table),
            spec.columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut progress = Progress::default();
        let mut sql = String::new();
        let mut batch_rows = 0u64;
        for (index, row) in rows.into_iter().enumerate() {
            if row.len() != spec.columns.len() {
                return Err(Error::Invalid(format!(
                    "row {index} has {} values for {} columns",
                    row.len(),
                    spec.columns.len()
                )));
            }
            let literal = row_literal(&row, saved.no_backslash_escapes);
            if prefix.len() + literal.len() > budget {
                return Err(Error::RowTooLarge {
                    row: index,
                    bytes: prefix.len() + literal.len(),
                    limit: budget,
                });
            }
            if batch_rows > 0 && sql.len() + 1 + literal.len() > budget {
                self.send_batch(pc, saved, (spec.idempotent, spec.net_timeout), &sql)
                    .await?;
                progress.rows += batch_rows;
                progress.bytes += sql.len() as u64;
                progress.statements += 1;
                if let Some(f) = spec.progress.as_mut() {
                    f(&progress);
                }
                sql.clear();
                batch_rows = 0;
            }
            if batch_rows == 0 {
                sql.push_str(&prefix);
            } else {
                sql.push(',');
            }
            sql.push_str(&literal);
            batch_rows += 1;
        }
        if batch_rows > 0 {
            self.send_batch(pc, saved, (spec.idempotent, spec.net_timeout), &sql)
                .await?;
            progress.rows += batch_rows;
            progress.bytes += sql.len() as u64;
            progress.statements += 1;
            if let Some(f) = spec.progress.as_mut() {
                f(&progress);
            }
        }
        Ok(progress)
    }

    /// Sends one batch, replacing the connection and resending when that is safe.
    async fn send_batch(
        &self,
        pc: &mut PooledConn,
        saved: &mut Saved,
        // The batch's retry rule and the timeouts to raise on a fresh connection (not the
        // whole spec: its progress callback is not `Sync`, and the future must be `Send`).
        (idempotent, net_timeout): (bool, Duration),
        sql: &str,
    ) -> Result<(), Error> {
        let policy = self.inner.cfg.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match pc.run(|c| c.query_drop(sql)).await {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            match judge(failure, attempt, idempotent) {
                Verdict::Retry(cause, _) if attempt < policy.max_attempts => {
                    self.inner.note_retry(cause);
                    tracing::info!(attempt, %cause, "resending bulk batch on a fresh connection");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    *pc = self.get().await?;
                    *saved = raise_net_timeouts(pc, net_timeout).await?;
                }
                Verdict::Retry(_, e) | Verdict::Fail(e) => return Err(e),
            }
        }
    }

    /// Runs an `UPDATE … LIMIT n` or `DELETE … LIMIT n` again and again until it affects
    /// no row, so a large change runs as many small transactions that never hold locks
    /// long or build a huge undo log. Returns the total; `progress` is called after each
    /// statement.
    ///
    /// Each statement is treated as idempotent and retried after a connection loss, which
    /// is right only if it converges: its `WHERE` must exclude rows already changed (as
    /// `DELETE … WHERE created < ? LIMIT 1000` or `UPDATE … SET done = 1 WHERE done = 0
    /// LIMIT 1000` do).
    ///
    /// Cancel safety: as [`Pool::exec_drop`]; the statements already answered are committed.
    pub async fn batched(
        &self,
        sql: &str,
        params: impl Into<Params>,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Progress, Error> {
        if !goneaway_core::sql::has_limit_clause(sql) {
            return Err(Error::Invalid(
                "batched needs a statement with LIMIT n, or it would change everything at once"
                    .into(),
            ));
        }
        let params: Params = params.into();
        let statement = Statement::new(sql).idempotent();
        let mut done = Progress::default();
        // A bound, so a statement that never converges cannot loop for ever.
        for _ in 0..10_000_000u64 {
            let affected = self.exec_drop(statement.clone(), params.clone()).await?;
            done.statements += 1;
            done.bytes += sql.len() as u64;
            done.rows += affected;
            progress(&done);
            if affected == 0 {
                return Ok(done);
            }
        }
        Err(Error::Invalid(
            "batched ran 10 million statements without reaching 0 rows: does the WHERE exclude rows already changed?"
                .into(),
        ))
    }
}

async fn raise_net_timeouts(pc: &mut PooledConn, to: Duration) -> Result<Saved, Error> {
    let (r, w, mode): (u64, u64, String) = pc
        .query_first(
            "SELECT @@session.net_read_timeout, @@session.net_write_timeout, @@session.sql_mode",
        )
        .await?
        .unwrap_or((30, 60, String::new()));
    let secs = to.as_secs().max(1);
    // Set before the statement is sent: from then on the session may have the raised
    // values, and a connection dropped before the restore must be closed, not reused.
    pc.session_changed = true;
    pc.query_drop(&format!(
        "SET SESSION net_read_timeout = {}, net_write_timeout = {}",
        secs.max(r),
        secs.max(w)
    ))
    .await?;
    Ok(Saved {
        net_read_timeout: r,
        net_write_timeout: w,
        no_backslash_escapes: mode.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES"),
    })
}

async fn restore_net_timeouts(pc: &mut PooledConn, saved: &Saved) {
    let sql = format!(
        "SET SESSION net_read_timeout = {}, net_write_timeout = {}",
        saved.net_read_timeout, saved.net_write_timeout
    );
    if !pc.session_changed {
        return;
    }
    match pc.query_drop(&sql).await {
        Ok(()) => pc.session_changed = false,
        // Better a new connection than one with settings nobody asked for.
        Err(_) => pc.discard(),
    }
}

fn quote_ident(name: &str) -> String {
    // A dotted name is database.table.
    name.split('.')
        .map(|part| format!("`{}`", part.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

fn row_literal(row: &[Value], no_backslash_escapes: bool) -> String {
    let mut s = String::from("(");
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&v.as_sql(no_backslash_escapes));
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers() {
        let row = vec![Value::from(1), Value::from("it's"), Value::NULL];
        assert_eq!(row_literal(&row, false), "(1,'it\\'s',NULL)");
        assert_eq!(quote_ident("db.t`x"), "`db`.`t``x`");
    }
}
