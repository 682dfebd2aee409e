//! Sharing server connections between sessions (`multiplex`): which connection a session
//! takes from the pool and how it is made the session's, what keeps one from going back,
//! and the pins that are counted and logged (see [`crate::backend::pool`]).

use super::*;
use crate::backend::pool::Wants;

impl Session {
    /// What makes a shared connection usable by this session (see [`PoolKey`]).
    pub(super) fn pool_key(&self) -> PoolKey {
        PoolKey {
            server: self.target.addr(),
            user: self.target.user.clone(),
            capabilities: self.client_caps,
            mariadb_capabilities: self.client_mariadb_caps,
            charset: self.charset,
            grants: self.grants,
        }
    }

    /// The state this session's connection carries when it goes back to the pool.
    pub(super) fn carried(&self, prepared: usize) -> Carried {
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
    pub(super) async fn take_pooled(
        &mut self,
        mut handed: Option<crate::backend::pool::Handover>,
    ) -> Result<bool, ProxyError> {
        let key = self.pool_key();
        loop {
            // What the session wants, borrowed for the choice only (a take copies nothing).
            let wants = Wants {
                database: self.state.database.as_deref(),
                variables: &self.state.variables,
            };
            let taken = match handed.take() {
                Some((b, owner, carried)) => {
                    match crate::backend::pool::fit(owner, &carried, self.id, wants) {
                        Some(fit) => Taken::Live(b, fit),
                        None => {
                            // It cannot serve this session; another may take it.
                            self.shared.pool.put(key.clone(), b, owner, carried);
                            continue;
                        }
                    }
                }
                None => self.shared.pool.take(&key, self.id, wants),
            };
            let (mut b, fit) = match taken {
                Taken::Live(b, fit) => (b, fit),
                Taken::None => return Ok(false),
                Taken::Dead(b, ev, _) => {
                    // A loss like that of the session's own idle backend, explained the
                    // same way (a fresh connection is the evidence), never seen by the
                    // client.
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
    pub(super) async fn adopt(&mut self, b: &mut Backend, fit: Fit) -> Result<(), ProxyError> {
        self.fit_state(b, fit).await?;
        b.watch_stalls(self.stall_watch());
        self.last_thread_id = Some(b.connection_id);
        self.last_backend_opened = Some(b.opened_unix);
        self.packet_limit = b.packet_limit;
        self.wait_timeout = b.wait_timeout;
        self.backend_moved = false;
        Ok(())
    }

    /// Gives a shared connection this session's database and variables, as `fit` says
    /// (counted by fit): the part of [`Session::adopt`] that a connection borrowed for a
    /// read on a replica needs too.
    pub(super) async fn fit_state(&mut self, b: &mut Backend, fit: Fit) -> Result<(), ProxyError> {
        let stats = self.shared.stats.clone();
        match fit {
            Fit::Own => {
                stats.pool_own.fetch_add(1, Ordering::Relaxed);
                // The session's own statement ids name statements of the connection it
                // used last: on this one, its own from before, they would name others.
                if self.last_thread_id != Some(b.connection_id) {
                    self.state.backend_replaced();
                }
            }
            Fit::SameState => {
                stats.pool_same_state.fetch_add(1, Ordering::Relaxed);
                self.state.backend_replaced();
            }
            Fit::Reset => {
                stats.pool_reset.fetch_add(1, Ordering::Relaxed);
                b.reset_connection().await?;
                self.restore_variables(b).await?;
                if let Some(db) = &self.state.database {
                    b.simple(&format!("USE `{}`", db.replace('`', "``")))
                        .await?;
                }
                self.state.backend_replaced();
            }
        }
        Ok(())
    }

    /// What keeps this session's connection from being shared now, if anything:
    /// `Some(None)` for work in progress (a transaction, a lost state to report),
    /// `Some(Some(reason))` for a pin (counted under that reason).
    pub(super) fn keep_reason(&self, b: &Backend) -> Option<Option<&'static str>> {
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
    pub(super) fn release_backend(&mut self) {
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
        let key = PoolKey {
            grants: b.grants,
            ..self.pool_key()
        };
        self.shared.pool.put(key, b, self.id, carried);
    }
}
