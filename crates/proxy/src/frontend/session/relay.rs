//! Relaying one command: prepared statements mapped to the backend's ids (prepared again
//! where needed), the reply followed packet by packet to the client, and the session state
//! it changes (see [`crate::backend::reply`]).

use super::*;
use crate::frontend::state;

impl Session {
    /// `COM_STMT_CLOSE` and `COM_STMT_SEND_LONG_DATA`: no reply; forwarded to the backend
    /// that holds the statement, if it still does.
    pub(super) async fn statement_no_reply(&mut self, cmd: u8, packets: &[Packet]) {
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
        let Some(stmt) = stmt else {
            return;
        };
        let mut own_id = stmt.backend_id;
        if cmd == com::STMT_SEND_LONG_DATA && own_id.is_none() {
            // Long data lives in one server statement until the execute: the session's own
            // (never one the connection shares), on a connection the data pins. A session
            // that holds none between statements (shared connections) takes one now. If
            // that fails, the execute is refused rather than run without the data
            // (prepare_packets).
            if self.gen.config.multiplex && self.backend.is_none() {
                if let Err(e) = self.fresh_backend().await {
                    tracing::debug!(session = self.id, error = %e, "no server connection for long data");
                    return;
                }
            }
            if self.backend.is_some() {
                own_id = match self.prepare_own(client_id, &stmt).await {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::debug!(session = self.id, error = %e, "could not prepare a statement for its long data");
                        None
                    }
                };
            }
        }
        let (Some(backend_id), Some(backend)) = (own_id, self.backend.as_mut()) else {
            // A statement the connection shares is closed only when evicted.
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

    /// Prepares the session's own server statement for `client_id` on the current backend
    /// (see [`Session::prepare_in_origin`]) and returns its id.
    async fn prepare_own(&mut self, client_id: u32, stmt: &Statement) -> Result<u32, ProxyError> {
        let id = self.prepare_in_origin(stmt).await?;
        let backend = self.backend.as_mut().expect("prepared on it");
        backend.prepared += 1;
        if let Some(s) = self.state.statements.get_mut(&client_id) {
            s.backend_id = Some(id);
            s.backend_types = None;
        }
        Ok(id)
    }

    /// Prepares `stmt` again on the current backend where the client prepared it: in the
    /// database and under the variables of then (a text can mean another table in another
    /// database, or parse otherwise under another `sql_mode`), the session's own state
    /// set back afterwards. Returns the server's statement id.
    pub(super) async fn prepare_in_origin(&mut self, stmt: &Statement) -> Result<u32, ProxyError> {
        let backend = self.backend.as_mut().ok_or(ProxyError::Protocol(
            "no server connection to prepare on".into(),
        ))?;
        let (there, back) = if stmt.origin.context == self.state.statement_context() {
            Default::default()
        } else {
            self.state.switch_to(&stmt.origin, &backend.login_state)
        };
        for sql in &there {
            if let Err(e) = backend.simple(sql).await {
                if e.is_disconnect() {
                    return Err(e);
                }
                tracing::debug!(session = self.id, error = %e, "could not set `{sql}` to prepare a statement where it was prepared");
            }
        }
        let mut prepared = backend.prepare(&stmt.prepare).await;
        if matches!(&prepared, Err(ProxyError::Server(e)) if e.code == ER_MAX_PREPARED_STMT_COUNT_REACHED)
            && backend.close_kept_statements().await?
        {
            // As for the client's own prepare (see `Session::forward`).
            prepared = backend.prepare(&stmt.prepare).await;
        }
        for sql in &back {
            // As when a fresh backend is given the session's state: a value the server
            // will not take again is logged, the connection used on.
            if let Err(e) = backend.simple(sql).await {
                if e.is_disconnect() {
                    return Err(e);
                }
                tracing::warn!(session = self.id, error = %e, "could not set `{sql}` back after preparing a statement where it was prepared");
            }
        }
        prepared
    }

    /// The packets to send for this command on the current backend (statement ids mapped,
    /// statements prepared again where needed), and whether the command may be replayed.
    pub(super) async fn prepare_packets<'p>(
        &mut self,
        cmd: u8,
        packets: &'p [Packet],
        sql: Option<&str>,
    ) -> Result<(Cow<'p, [Packet]>, bool), PrepareError> {
        let outside_tx = !self.state.in_transaction;
        self.executing = None;
        match cmd {
            // Outside a transaction a read, or the BEGIN that opens one, runs again safely.
            com::QUERY => {
                self.query_read_only = sql.is_some_and(is_read_only);
                Ok((
                    Cow::Borrowed(packets),
                    outside_tx
                        && (self.query_read_only
                            || sql.is_some_and(txlog::statement_opens_transaction)),
                ))
            }
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
                self.executing = Some(client_id);
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
                if self.long_data.contains(&client_id) && stmt.backend_id.is_none() {
                    // Run without it, the statement would write NULLs in its place.
                    self.long_data.remove(&client_id);
                    return Err(PrepareError::Reply(ER_PROXY, "HY000".into(), "goneaway proxy: the long data sent for this statement was lost with the server connection; the statement was not run. Send the data again, then execute".into()));
                }
                // COM_STMT_EXECUTE: statement id (4 bytes), then the cursor flags.
                let cursor = cmd == com::STMT_EXECUTE
                    && packets[0].payload.get(5).is_some_and(|&flags| flags != 0);
                let multiplex = self.gen.config.multiplex;
                let backend = self
                    .backend
                    .as_mut()
                    .expect("a backend is connected before prepare_packets");
                // The server statement to run: the session's own, or with shared
                // connections one the connection shares by text (crate::backend::statements)
                // — never for a cursor, which lives in its statement.
                let key = StatementKey {
                    context: stmt.origin.context,
                    prepare: stmt.prepare.clone(),
                };
                let as_reply = |e: ProxyError| match e {
                    ProxyError::Server(e) => PrepareError::Reply(e.code, e.sqlstate, e.message),
                    e => PrepareError::Backend(e),
                };
                let found = match stmt.backend_id {
                    None if multiplex && !cursor => backend.statements.get(&key).map(|e| e.id),
                    _ => None,
                };
                let shared = match (found, stmt.backend_id) {
                    (Some(id), _) => Some(id),
                    (None, None) if multiplex && !cursor => {
                        let id = self.prepare_in_origin(&stmt).await.map_err(as_reply)?;
                        let backend = self.backend.as_mut().expect("prepared on it");
                        if let Some(evicted) = backend.statements.insert(key.clone(), id) {
                            backend
                                .close_statement(evicted)
                                .await
                                .map_err(PrepareError::Backend)?;
                        }
                        Some(id)
                    }
                    _ => None,
                };
                let backend_id = match (shared, stmt.backend_id) {
                    (Some(id), _) | (None, Some(id)) => id,
                    (None, None) => self.prepare_own(client_id, &stmt).await.map_err(as_reply)?,
                };
                let mut out = rewrite_statement_id(packets, backend_id);
                if cmd == com::STMT_EXECUTE && stmt.params > 0 && out.len() == 1 {
                    // The types the server statement saw last: its own, or the shared one's.
                    let (Some(s), Some(b)) = (
                        self.state.statements.get_mut(&client_id),
                        self.backend.as_mut(),
                    ) else {
                        unreachable!("the statement and backend were found above")
                    };
                    let server_types = match shared {
                        Some(_) => {
                            &mut b
                                .statements
                                .get(&key)
                                .expect("prepared or found above")
                                .types
                        }
                        None => &mut s.backend_types,
                    };
                    if let Some(typed) =
                        bind_types(&out[0], stmt.params, &mut s.types, server_types)
                    {
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

    /// Sends the command and relays the reply, holding it back (up to the reply buffer)
    /// so that a backend dying mid-reply can be retried invisibly.
    pub(super) async fn forward(
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
        let io_failure = |e: &ProxyError, flushed: bool, seq: u8| {
            Failure::Backend(BackendLoss {
                flushed,
                // The server showed that it never received the command; `seq` 1: nothing of
                // the reply (nor a LOCAL INFILE request) had come.
                not_run: seq == 1 && matches!(e, ProxyError::Stalled { not_run: true, .. }),
                seq,
                cause: loss_of(e, None),
                detail: e.to_string(),
                server_err: None,
            })
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
        let mut retried_prepare = false;
        loop {
            let p = match backend.recv().await {
                Ok(p) => p,
                Err(e) => return Err(io_failure(&e, flushed, next_seq)),
            };
            let step = tracker.feed(&p);
            // With shared connections the statements a connection keeps for reuse count
            // against the server's max_prepared_stmt_count, which a direct client would
            // not reach: a prepare refused for it ran nothing, and is sent again once
            // after they are closed.
            if let (1, Some(e), false) = (tracker.packets, &tracker.err, retried_prepare) {
                let prepare = cmd == com::STMT_PREPARE
                    || (cmd == com::QUERY
                        && sql.is_some_and(|s| {
                            state::first_word_as_written(s).eq_ignore_ascii_case("prepare")
                        }));
                if e.code == ER_MAX_PREPARED_STMT_COUNT_REACHED && prepare {
                    retried_prepare = true;
                    let sent = match backend.close_kept_statements().await {
                        Ok(true) => backend.send(packets).await.map(|()| true),
                        other => other,
                    };
                    match sent {
                        Ok(true) => {
                            tracing::debug!(session = self.id, "closed the statements kept for reuse to stay within max_prepared_stmt_count");
                            tracker = ReplyTracker::new(expect, backend.capabilities);
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => return Err(io_failure(&e, false, 1)),
                    }
                }
            }
            // An ERR in place of the reply may say that the connection is closing.
            if let (1, Some(e)) = (tracker.packets, &tracker.err) {
                if let Some(not_run) = fatal_error(e) {
                    return Err(Failure::Backend(BackendLoss {
                        flushed: false,
                        not_run,
                        seq: 1,
                        cause: Ok(cause_of_code(e.code, &e.sqlstate, &e.message)),
                        detail: e.to_string(),
                        server_err: Some(e.clone()),
                    }));
                }
                // A read on a replica refused (read-only for a function that writes, a
                // table or column the replica does not have yet): it ran nowhere, and the
                // writer's answer is the one the client gets (crate::frontend::session::replica).
                if self.reading_on_replica {
                    return Err(ran_elsewhere(e));
                }
                // In front of a cluster: a 1290 --read-only from a server that a
                // switchover took the writer's place from ran nowhere. With nothing that
                // lives only in this connection, the statement runs again on the new
                // writer (taken as a backend proven not to have run it) instead of
                // reaching the client (crate::router). Inside a transaction that can be
                // replayed, the transaction moves with it: the old server rolls it back
                // with its connection, and it is replayed on the new writer before the
                // statement — a COMMIT refused so included (it committed nothing).
                let movable_tx = !(self.state.in_transaction || self.state.autocommit_off)
                    || self
                        .tx_log
                        .as_ref()
                        .is_some_and(|l| l.unreplayable.is_none());
                if e.code == goneaway_core::codes::ER_OPTION_PREVENTS_STATEMENT
                    && self.state.pinned.is_empty()
                    && movable_tx
                    && crate::router::refused_by_old_writer(&self.shared, &self.target, e).await
                {
                    // The 1290 itself: a redirect, counted as such, not as a loss.
                    return Err(ran_elsewhere(e));
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
        // What the next command may read from this connection only (it matters only when
        // connections are shared; the text is not searched otherwise).
        if self.gen.config.multiplex
            && (tracker.warnings > 0
                || tracker.last_insert_id != 0
                || tracker.changes.iter().any(|c| {
                    matches!(c, crate::net::StateChange::SystemVariable(name, _)
                        if crate::frontend::state::SERVER_SET.iter().any(|v| name.eq_ignore_ascii_case(v)))
                })
                || sql.is_some_and(|s| {
                    s.as_bytes()
                        .windows(19)
                        .any(|w| w.eq_ignore_ascii_case(b"sql_calc_found_rows"))
                }))
        {
            self.hold_next = true;
        }
        if matches!(cmd, com::STMT_EXECUTE | com::STMT_RESET | com::STMT_FETCH) {
            // The client's id: the packets carry the server's.
            if let Some(id) = self.executing {
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
                let origin = self.state.origin();
                // With shared connections, the statement becomes the connection's, for
                // every session that prepares the same text (crate::backend::statements);
                // otherwise the session's own.
                let mut own = Some(backend_id);
                if let Some(b) = self.backend.as_mut() {
                    if self.gen.config.multiplex {
                        own = None;
                        let key = StatementKey {
                            context: origin.context,
                            prepare: packets[0].payload.clone(),
                        };
                        if let Some(close) = b.statements.insert(key, backend_id) {
                            if let Err(e) = b.close_statement(close).await {
                                // Found dead at the next command.
                                tracing::debug!(session = self.id, error = %e, "could not close a statement");
                            }
                        }
                    } else {
                        b.prepared += 1;
                    }
                }
                self.state.statements.insert(
                    client_id,
                    Statement {
                        prepare: packets[0].payload.clone(),
                        backend_id: own,
                        origin,
                        params,
                        types: None,
                        backend_types: None,
                        read_only: is_read_only(&text),
                        reads_anywhere: self.gen.config.replica_reads
                            && super::replica::reads_the_same_anywhere(&text),
                        control: txlog::control_word(&text),
                    },
                );
            }
        }
        // The statement's text: the query's, or the text of the prepared statement an
        // execute runs (a prepared `SET @x = …`, `SELECT GET_LOCK(…)` or `LOCK TABLES`
        // leaves state in the connection as the query does, a prepared `ALTER USER` sets a
        // password). Not for a read-only one, in which nothing of that can be: reads are
        // the executes of the hot path, and they are spared the lookup and the scans.
        let prepared = match cmd {
            com::STMT_EXECUTE => self
                .executing
                .and_then(|id| self.state.statements.get(&id))
                .filter(|st| !st.read_only)
                .map(|st| st.prepare.clone()),
            _ => None,
        };
        let prepared_text = prepared
            .as_ref()
            .map(|p| String::from_utf8_lossy(p.get(1..).unwrap_or_default()));
        let text = sql.or(prepared_text.as_deref());
        if tracker.err.is_none() {
            match cmd {
                com::RESET_CONNECTION => {
                    self.state.reset();
                    self.failed_tx = None;
                    if let Some(b) = self.backend.as_mut() {
                        b.forget_statements();
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
                // password_change looks at the first word before anything else.
                let change =
                    text.and_then(|t| crate::accounts::password_change(t, &self.target.user));
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
            com::QUERY => !self.query_read_only,
            com::STMT_EXECUTE => true,
            _ => false,
        };
        let pins = self.state.pinned.len();
        self.state
            .apply(&tracker.changes, tracker.status, writes, text);
        if tracker.err.is_some() && self.state.next_transaction.as_deref() == text.map(str::trim) {
            // A SET TRANSACTION the server refused sets nothing.
            self.state.next_transaction = None;
        }
        // The next transaction's characteristics live in this connection: the statement
        // that starts it runs here (a fresh connection would get them again).
        if self.gen.config.multiplex && self.state.next_transaction.is_some() {
            self.hold_next = true;
        }
        self.read_back_unreported(
            text,
            tracker.err.is_none(),
            tracker.warnings > 0 || tracker.err.is_some(),
        )
        .await;
        if self.gen.config.replica_reads {
            self.note_last_gtid(&tracker.changes);
        }
        if self.state.pinned.len() > pins {
            self.pin_statement = text.map(|s| s.chars().take(200).collect());
        }
        Ok(())
    }
}

impl Session {
    /// Remembers the GTID of the session's last commit from a reply's tracked changes
    /// (see `Session::last_gtid`); only a well-formed one (`domain-server-sequence`, a
    /// list of them), since it goes into the text of a statement.
    fn note_last_gtid(&mut self, changes: &[crate::net::StateChange]) {
        for c in changes {
            if let crate::net::StateChange::SystemVariable(name, v) = c {
                if name.eq_ignore_ascii_case("last_gtid")
                    && !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
                {
                    self.last_gtid = Some(v.clone());
                }
            }
        }
    }

    /// After a `SET` the server does not fully report (see
    /// [`state::unreported_assignments`]), reads the values it set back on the same
    /// connection, as tracked changes, so that they move with the session. The read
    /// clears the server's diagnostics, so after a statement with warnings (or an error)
    /// it waits for the first statement without (the client has read them, or cleared
    /// them itself), the session pinned meanwhile: its connection alone has the values,
    /// and a connection lost before says so. `text`: the statement's (a query's or an
    /// execute's); `ran`: the command succeeded; `diagnostics`: its reply left warnings or
    /// an error to read.
    async fn read_back_unreported(&mut self, text: Option<&str>, ran: bool, diagnostics: bool) {
        if !self.state.pinned.contains(state::UNREPORTED_VARIABLES) {
            // Read back, or lost with a connection and told (the pin is gone then).
            self.unreported.clear();
        }
        let mut names = text
            .filter(|_| ran)
            .map(state::unreported_assignments)
            .unwrap_or_default();
        if names.is_empty() && self.unreported.is_empty() {
            return;
        }
        for n in std::mem::take(&mut self.unreported) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        if diagnostics {
            self.unreported = names;
            self.state.pinned.insert(state::UNREPORTED_VARIABLES);
            return;
        }
        let read = match self.backend.as_mut() {
            Some(b) => b.tracked(&state::report_statement(&names)).await,
            None => Err(ProxyError::Protocol("no server connection".into())),
        };
        match read {
            Ok(changes) => {
                self.state.apply(&changes, None, false, None);
                self.state.pinned.remove(state::UNREPORTED_VARIABLES);
            }
            Err(e) => {
                // A lost connection is found at the next command; until then the values are
                // the connection's alone.
                tracing::debug!(session = self.id, error = %e, variables = ?names, "could not read back session variables the server does not report");
                self.state.pinned.insert(state::UNREPORTED_VARIABLES);
            }
        }
    }
}

/// A command a server refused with `e` before running anything, to run on another server
/// instead (the new writer, or the writer in place of a replica): a "loss" of a connection
/// still sound, with the refusal as its evidence.
fn ran_elsewhere(e: &ErrInfo) -> Failure {
    Failure::Backend(BackendLoss {
        flushed: false,
        not_run: true,
        seq: 1,
        cause: Ok(Cause::Unknown),
        detail: e.to_string(),
        server_err: Some(e.clone()),
    })
}

/// Remembers the parameter types an execute binds (`client`: the session's, `server`: the
/// server statement's), and supplies the session's to a server statement that last saw
/// others (a fresh backend, or another session's execute of a shared statement) when the
/// execute binds none ("new params bound" = 0): the packet to send instead, if any.
fn bind_types(
    p: &Packet,
    params: u16,
    client: &mut Option<Bytes>,
    server: &mut Option<Bytes>,
) -> Option<Packet> {
    let n = params as usize;
    let flag_at = 1 + 4 + 1 + 4 + n.div_ceil(8);
    let &bound = p.payload.get(flag_at)?;
    let types_at = flag_at + 1;
    if bound == 1 {
        if let Some(types) = p.payload.get(types_at..types_at + 2 * n) {
            let types = Bytes::copy_from_slice(types);
            *client = Some(types.clone());
            *server = Some(types);
        }
        return None;
    }
    let types = client.as_ref()?;
    if server.as_ref() == Some(types) {
        return None;
    }
    let mut out = BytesMut::with_capacity(p.payload.len() + types.len());
    out.extend_from_slice(&p.payload[..flag_at]);
    out.put_u8(1);
    out.extend_from_slice(types);
    out.extend_from_slice(&p.payload[types_at..]);
    *server = Some(types.clone());
    Some(Packet::new(p.seq, out.freeze()))
}
