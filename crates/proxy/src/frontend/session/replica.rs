//! Reads on replicas (`replica_reads`, with shared connections): which reads may run on a
//! replica, and how one runs there on a connection borrowed for that statement alone.
//!
//! The consistency rule is [`crate::config::ProxyConfig::replica_reads`]'s: the monitor
//! names replicas within `max_replica_lag` ([`crate::router::replica_for_read`]), and
//! the replica itself says whether it has applied the session's last write
//! (`MASTER_GTID_WAIT(last_gtid, 0)`, which answers at once). Anything else — no replica,
//! one behind, one unreachable, one lost before any of the reply reached the client, one
//! that answers with an error (read-only for a function that writes, a table it does not
//! have yet) — runs the read on the writer, as without `replica_reads`: a replica never
//! costs a read an error it would not have had, and errors are the writer's.
//!
//! Only a read whose result does not depend on the connection or the server it runs on
//! goes: see [`reads_the_same_anywhere`]. The session's own bookkeeping of its writer
//! connection (thread ids, start times, the target) is left alone: the replica's
//! connection is never the session's backend between commands.

use super::*;
use crate::backend::pool::{PoolKey, Wants};
use crate::frontend::state;

impl Session {
    /// Whether this command may run on a replica: a read that reads the same anywhere (a
    /// query, or the execute of a prepared statement without a cursor), by a session that
    /// holds no connection (nothing of it lives in one: no transaction, no pin, no
    /// follow-up owed to the last statement's connection).
    pub(super) fn replica_read_allowed(
        &self,
        cmd: u8,
        packets: &[Packet],
        sql: Option<&str>,
    ) -> bool {
        let config = &self.gen.config;
        if !config.replica_reads {
            return false;
        }
        let anywhere = match cmd {
            com::QUERY => sql.is_some_and(reads_the_same_anywhere),
            // COM_STMT_EXECUTE: statement id (4 bytes), then the cursor flags.
            com::STMT_EXECUTE => {
                packets.len() == 1
                    && packets[0].payload.get(5) == Some(&0)
                    && statement_id(&packets[0].payload)
                        .and_then(|id| self.state.statements.get(&id))
                        .is_some_and(|st| st.reads_anywhere)
            }
            _ => false,
        };
        anywhere
            && config.multiplex
            && self.backend.is_none()
            && !self.hold_next
            && !self.state.in_transaction
            && !self.state.autocommit_off
            && self.state.pinned.is_empty()
            && self.failed_tx.is_none()
            && self.lost.is_none()
            && self.cursors.is_empty()
            && self.long_data.is_empty()
    }

    /// Runs the read `packets` (command `cmd`, its text `sql` for a query) on a replica.
    /// `None`: it did not run there, and nothing of it reached the client; the caller runs
    /// it on the writer. `Some(alive)`: it was answered, from the replica (or with the
    /// error of a reply cut off by the replica's loss).
    pub(super) async fn read_on_replica(
        &mut self,
        cmd: u8,
        packets: &[Packet],
        sql: Option<&str>,
    ) -> Option<bool> {
        let config = self.gen.config.clone();
        self.replica_turn = self.replica_turn.wrapping_add(1);
        let turn = (self.id as usize).wrapping_add(self.replica_turn);
        let Some(addr) =
            crate::router::replica_for_read(&self.shared, config.max_replica_lag, turn)
        else {
            self.decline_replica_read("no replica within max_replica_lag");
            return None;
        };
        let mut target = self.target.clone();
        target.host.clone_from(&addr.host);
        target.port = addr.port;
        let key = PoolKey {
            server: target.addr(),
            ..self.pool_key()
        };
        let mut b = match self.replica_connection(&target, &key).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                self.decline_replica_read("no server connection free for the replica");
                return None;
            }
            Err(e) => {
                tracing::debug!(session = self.id, replica = %target.addr(), error = %e, "a replica's connection could not be had; the read runs on the writer");
                self.decline_replica_read("the replica could not be reached");
                return None;
            }
        };
        // Read your writes: the replica must have applied the session's last transaction.
        if let Some(gtid) = self.last_gtid.clone() {
            let applied = b
                .simple(&format!("SELECT MASTER_GTID_WAIT('{gtid}', 0)"))
                .await
                .ok()
                .and_then(|rows| rows.into_iter().next())
                .and_then(|row| row.into_iter().next().flatten());
            if applied.as_deref() != Some("0") {
                self.put_replica_connection(key, b);
                self.decline_replica_read("the replica has not applied the session's last write");
                return None;
            }
        }
        self.run_on_replica(key, target, b, cmd, packets, sql).await
    }

    /// Before a command, with a replica connection kept after a read that left warnings
    /// (see [`Session::run_on_replica`]): a diagnostics statement (`SHOW WARNINGS`, `SHOW
    /// ERRORS`, their `COUNT(*)`, `@@warning_count`, `@@error_count`) runs on it, as it
    /// would on a direct client's one connection; anything else gives it back to the pool
    /// and goes where it would have. `None`: the command was not run.
    pub(super) async fn follow_replica_read(
        &mut self,
        cmd: u8,
        packets: &[Packet],
        sql: Option<&str>,
    ) -> Option<bool> {
        let (key, target, b) = self.replica_held.take()?;
        if cmd == com::QUERY && sql.is_some_and(state::reads_diagnostics) {
            return self.run_on_replica(key, target, b, cmd, packets, sql).await;
        }
        self.put_replica_connection(key, b);
        None
    }

    /// Gives back the replica connection kept for a diagnostics statement, unless
    /// `first`, the next command's first packet, is one (called before anything else of
    /// a command runs, and when the session ends).
    pub(super) fn give_back_replica(&mut self, first: Option<&Packet>) {
        let diagnostics = first.is_some_and(|p| {
            p.first() == Some(com::QUERY)
                && std::str::from_utf8(&p.payload[1..]).is_ok_and(state::reads_diagnostics)
        });
        if diagnostics {
            return;
        }
        if let Some((key, _, b)) = self.replica_held.take() {
            self.put_replica_connection(key, b);
        }
    }

    /// Runs `packets` on `b`, a connection to the replica `target` (of pool key `key`), in
    /// the session's state, through the session's own relay path. The connection goes back
    /// to the pool after it, or, when the read left warnings, stays for the next statement
    /// ([`Session::follow_replica_read`]). As [`Session::read_on_replica`] returns.
    async fn run_on_replica(
        &mut self,
        key: PoolKey,
        target: BackendTarget,
        b: Backend,
        cmd: u8,
        packets: &[Packet],
        sql: Option<&str>,
    ) -> Option<bool> {
        // The read runs through the session's own relay path, on the borrowed connection:
        // a prepared statement is found in, or prepared again on, the replica's connection.
        self.digest = None;
        self.backend = Some(b);
        let to_send = match self.prepare_packets(cmd, packets, sql).await {
            Ok((to_send, _)) => to_send,
            Err(e) => {
                // The writer's path gives the client the same answer, or runs it there. A
                // connection that failed is not shared again.
                let b = self.backend.take();
                if let (Some(b), PrepareError::Reply(..)) = (b, e) {
                    self.put_replica_connection(key, b);
                }
                self.decline_replica_read("the statement could not be prepared on the replica");
                return None;
            }
        };
        self.reading_on_replica = true;
        let result = self.forward(cmd, &to_send, sql).await;
        self.reading_on_replica = false;
        let b = self.backend.take();
        // What the next statement may read from this connection only: with warnings, a
        // SHOW WARNINGS finds them here; anything else goes where it would have (the
        // writer's follow-ups, a generated id or FOUND_ROWS(), never come from a read that
        // may run on a replica).
        let keep = std::mem::take(&mut self.hold_next);
        match result {
            Ok(()) => {
                if let Some(b) = b {
                    if keep {
                        self.replica_held = Some((key, target, b));
                    } else {
                        self.put_replica_connection(key, b);
                    }
                }
                self.shared
                    .stats
                    .replica_reads
                    .fetch_add(1, Ordering::Relaxed);
                Some(true)
            }
            Err(Failure::ClientGone) => Some(false),
            Err(Failure::Backend(loss)) if !loss.flushed => {
                let refused = loss
                    .server_err
                    .as_ref()
                    .is_some_and(|e| fatal_error(e).is_none());
                match (b, refused) {
                    // The replica answered with an error that leaves its connection sound.
                    (Some(b), true) => {
                        tracing::debug!(session = self.id, replica = %target.addr(), error = %loss.detail, "a replica refused a read; it runs on the writer");
                        self.put_replica_connection(key, b);
                        self.decline_replica_read("the replica refused the read");
                    }
                    _ => {
                        tracing::debug!(session = self.id, replica = %target.addr(), detail = %loss.detail, "a replica's connection failed before its reply; the read runs on the writer");
                        self.decline_replica_read("the replica's connection failed");
                    }
                }
                None
            }
            Err(Failure::Backend(loss)) => {
                let msg = format!(
                    "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the replica {} was lost in the middle of the reply; the reply above is incomplete. The session goes on)",
                    target.addr()
                );
                tracing::debug!(session = self.id, detail = %loss.detail, "a replica's connection failed in the middle of a reply");
                Some(
                    self.send_err(loss.seq, LOST_CODE, SQLSTATE_LOST, "reply_cut", &msg)
                        .await,
                )
            }
        }
    }

    fn decline_replica_read(&self, why: &str) {
        self.shared
            .stats
            .replica_reads_declined
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = self.id, why, "a read runs on the writer");
    }

    /// Gives back a replica's connection borrowed for a read, for the next read there.
    fn put_replica_connection(&mut self, key: PoolKey, b: Backend) {
        let carried = self.carried(b.prepared);
        let key = PoolKey {
            grants: b.grants,
            ..key
        };
        self.shared.pool.put(key, b, self.id, carried);
    }

    /// A connection to the replica `target`, in this session's state: a shared one of
    /// `key`, or a new one when a server connection slot is free now (a read never waits
    /// for one: the writer serves it instead). `Ok(None)`: none to be had.
    async fn replica_connection(
        &mut self,
        target: &BackendTarget,
        key: &PoolKey,
    ) -> Result<Option<Backend>, ProxyError> {
        loop {
            let wants = Wants {
                database: self.state.database.as_deref(),
                variables: &self.state.variables,
            };
            match self.shared.pool.take(key, self.id, wants) {
                Taken::Live(mut b, fit) => {
                    self.fit_state(&mut b, fit).await?;
                    // The session's own statement ids (of a cursor's statement) name
                    // statements of a writer's connection: prepared again here if run.
                    self.state.backend_replaced();
                    return Ok(Some(b));
                }
                // Closed while it waited: counted as the writer's are (see
                // `Session::take_pooled`), then the next one, or a new one.
                Taken::Dead(..) => {
                    self.shared
                        .stats
                        .pool_closed
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Taken::None => break,
            }
        }
        let Ok(permit) = self.shared.backend_slots.clone().try_acquire_owned() else {
            return Ok(None);
        };
        // A replica's limits are its own: read at its login.
        let opts = self.connect_options(None);
        let mut b = Backend::connect(target, &opts, self.shared.stats.clone()).await?;
        b.attach_permit(permit);
        self.restore_variables(&mut b).await?;
        self.state.backend_replaced();
        Ok(Some(b))
    }
}

/// Whether a read gives the same result on any server of the cluster that has the same
/// data, from any connection in the session's state: a `SELECT` without side effects
/// (see [`is_read_only`]) that names no user variable (`@x`, which lives in one
/// connection), no system variable (`@@read_only`, `@@hostname`, `@@server_id` are the
/// server's own; an application checks them to find the primary), no server-local
/// schema (the process list, status, locks) and no function of the connection's own
/// history (`LAST_INSERT_ID()`, `FOUND_ROWS()` and the `SQL_CALC_FOUND_ROWS` it reads,
/// `ROW_COUNT()`, `CONNECTION_ID()`, named locks, GTID waits). [`is_read_only`] also
/// keeps out every call of a stored function: one may write, and on a replica it would run
/// with its definer's rights, which `read_only` does not stop for an account with `SUPER`
/// (the replica would diverge). A read's warnings are on the replica: a `SHOW WARNINGS`
/// right after it runs there (see [`Session::follow_replica_read`]).
pub fn reads_the_same_anywhere(sql: &str) -> bool {
    // Besides the functions of the connection's history (FOUND_ROWS() covers
    // SQL_CALC_FOUND_ROWS too): what is the server's own.
    const SERVER_LOCAL: [&str; 4] = ["information_schema", "performance_schema", "sys.", "@@"];
    if !state::first_word_as_written(sql).eq_ignore_ascii_case("select") || !is_read_only(sql) {
        return false;
    }
    let lower = sql.to_ascii_lowercase();
    !goneaway_core::sql::CONNECTION_HISTORY_CALLS
        .iter()
        .chain(&SERVER_LOCAL)
        .any(|w| lower.contains(w))
        && !state::mentions_user_variable(&lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_that_read_the_same_anywhere_go_to_replicas() {
        for sql in [
            "SELECT c FROM sbtest1 WHERE id = 10",
            "select count(*) from t join u using (id)",
            "/* app */ SELECT NOW(), DATABASE()",
            "SELECT COUNT(*), MAX(v) FROM t WHERE id IN (1, 2) AND name = 'f(x)'",
            "SELECT c FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id) AND `t`.v > 0",
            "SELECT CONCAT(a, '`x`(') , IFNULL(b, 0) FROM t",
        ] {
            assert!(reads_the_same_anywhere(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "SELECT * FROM t FOR UPDATE",
            "SELECT @@read_only",
            "SELECT @x",
            "SELECT LAST_INSERT_ID()",
            "SELECT FOUND_ROWS()",
            "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
            "SELECT * FROM information_schema.PROCESSLIST",
            "SELECT GET_LOCK('a', 1)",
            "SELECT 1 INTO @x",
            "SHOW SLAVE STATUS",
            "SELECT 1; DELETE FROM t",
            // Stored functions may write (and on a replica, with their definer's rights).
            "SELECT bump()",
            "SELECT app.bump(1) FROM t",
            "SELECT `bump` (1)",
            "SELECT COUNT(*) FROM t WHERE v = my_func (id)",
        ] {
            assert!(!reads_the_same_anywhere(sql), "{sql}");
        }
    }
}
