//! What survives a lost backend: autocommit writes wrapped in a marked transaction, the
//! commit marks and the resolution of a lost COMMIT, the open transaction's log and its
//! replay on a fresh backend (the rules are in [`crate::frontend::txlog`]).

use super::*;

impl Session {
    /// Whether this command is an autocommit write to run as a marked one-statement
    /// transaction (see [`crate::ProxyConfig::autocommit_write_marks`]).
    pub(super) fn wraps_write(&self, cmd: u8, packets: &[Packet], sql: Option<&str>) -> bool {
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
    pub(super) async fn wrapped_write(
        &mut self,
        cmd: u8,
        to_send: &[Packet],
        sql: Option<&str>,
    ) -> Wrapped {
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
            Err(Failure::Backend(BackendLoss {
                cause,
                detail,
                server_err,
                ..
            })) => {
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
                // A switchover made this server read-only between the write and its
                // COMMIT: nothing committed, and the write runs again on the new writer
                // once this connection (and with it the transaction) is given up.
                if e.code == goneaway_core::codes::ER_OPTION_PREVENTS_STATEMENT
                    && crate::router::refused_by_old_writer(&self.shared, &self.target, &e).await
                {
                    self.forget_backend();
                    end_transaction(self);
                    return Wrapped::Retry;
                }
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

    /// Gives up a backend lost during a command (see [`Session::forget_backend`]); the
    /// client is told what died with it, so the pinned state is forgotten too.
    pub(super) fn drop_lost_backend(&mut self) {
        self.forget_backend();
        self.state.forget_pinned();
    }

    /// Counts a loss an autocommit write's retry absorbs.
    pub(super) fn wrapped_absorbed(&mut self, cause: Result<Cause, Unexplained>, detail: &str) {
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
    pub(super) async fn insert_commit_mark(&mut self) -> Result<Option<[u8; 16]>, ProxyError> {
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
    pub(super) async fn resolve_commit(&mut self, token: [u8; 16]) -> Option<bool> {
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
            // On a Galera node the read is causal (wsrep_sync_wait): the node first applies
            // every write set the cluster ordered before it, so a mark the lost writer
            // replicated before it died is seen. A plain read could miss it, call the
            // committed transaction lost, and run it again (a duplicate, or a 1213 when
            // the node's applier then brute-force aborts the second run).
            let causal = if self.shared.monitor.view().kind == crate::config::ClusterKind::Galera {
                "SET STATEMENT wsrep_sync_wait = 1 FOR "
            } else {
                ""
            };
            let backend = self.backend.as_mut().expect("connected");
            let sql = format!(
                "{causal}SELECT COUNT(*) FROM `{schema}`.commit_marks WHERE token = X'{}'",
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
    pub(super) fn follow_tx_log(&mut self, cmd: u8, packets: &[Packet], sql: Option<&str>) {
        if !self.state.in_transaction {
            self.tx_wrote = false;
        } else if !self.tx_wrote {
            let read_only = match cmd {
                com::QUERY => self.query_read_only,
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
    pub(super) async fn replay_transaction(&mut self) -> Result<(), String> {
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

    pub(super) async fn replay_once(
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
    pub(super) async fn end_old_thread(
        &mut self,
        id: u32,
        opened: i64,
    ) -> Result<bool, ProxyError> {
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
    pub(super) async fn replay_statement(
        &mut self,
        cmd: u8,
        packets: &[Packet],
    ) -> Result<u64, ProxyError> {
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
}
