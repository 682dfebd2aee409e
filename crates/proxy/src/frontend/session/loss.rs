//! What a client is told when its backend was lost and the proxy could not absorb it, and
//! the failed-transaction state (see the module docs of [`super`]).

use super::*;

impl Session {
    /// Tells the client about a backend lost during its command (which was not retried),
    /// and enters the failed-transaction state when a transaction was lost with it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn answer_loss(
        &mut self,
        sql: Option<&str>,
        in_tx: bool,
        lost: Option<String>,
        (flushed, not_run, seq): (bool, bool, u8),
        cause: Cause,
        server_err: Option<ErrInfo>,
    ) -> bool {
        // The statement that ends the transaction decides its fate itself: a lost
        // ROLLBACK rolled back (the server rolls back a connection it loses), a lost
        // COMMIT may or may not have committed.
        let ending = (in_tx && ends_transaction(sql))
            .then(|| sql.map(first_word).is_some_and(|w| w == "rollback"));
        let refusal = self.replay_refusal.take();
        if in_tx && ending.is_none() {
            let how = match &refusal {
                Some(why) => format!("during a statement (not replayed: {why})"),
                None => "during a statement".to_owned(),
            };
            self.failed_tx = Some((Some(cause), how));
        }
        if ending == Some(true) && !flushed {
            return self.send_ok(1).await;
        }
        if let Some(e) = server_err {
            // The server's own words, number and SQLSTATE: what a direct client gets.
            self.shared.stats.error_sent("server_closed");
            return self
                .client
                .send(Packet::new(
                    1,
                    packet::err_payload(e.code, &e.sqlstate, &e.message),
                ))
                .await
                .is_ok();
        }
        let tx_note = if ending.is_some() {
            ". This COMMIT's outcome is unknown: the transaction may or may not have been committed; check before running it again"
        } else if in_tx {
            ". The server rolled the open transaction back and nothing of it was committed; every statement is refused until the client sends ROLLBACK"
        } else {
            ""
        };
        let tx_note = match (&refusal, in_tx && ending.is_none()) {
            (Some(why), true) => format!("{tx_note} (goneaway could not replay it: {why})"),
            _ => tx_note.to_owned(),
        };
        let what = lost
            .filter(|_| !in_tx)
            .map(|w| format!(", and with it {w}"))
            .unwrap_or_default();
        if flushed {
            let msg = format!(
                "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the server was lost in the middle of the reply (cause: {cause}); the reply above is incomplete{what}{tx_note}. The session goes on with a fresh connection)"
            );
            return self
                .send_err(seq, LOST_CODE, SQLSTATE_LOST, "reply_cut", &msg)
                .await;
        }
        if not_run {
            let msg = format!(
                "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost (cause: {cause}){what}; this statement was not run{tx_note})"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "state_lost", &msg)
                .await;
        }
        if in_tx && ending.is_none() {
            // Not unknown: the server rolls back the transaction of a connection it loses,
            // this statement with it.
            let refusal = refusal
                .map(|w| format!(" (goneaway could not replay it: {w})"))
                .unwrap_or_default();
            let msg = format!(
                "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the server was lost while this statement ran (cause: {cause}); \
                 the server rolled the open transaction back with it, this statement included, and nothing of it was committed{refusal}. \
                 Every statement is refused until the client sends ROLLBACK)"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
                .await;
        }
        let msg = format!(
            "Lost connection to MySQL server during query (Connection was killed by goneaway proxy: the connection to the server was lost while this statement ran (cause: {cause}){what}; the outcome is unknown: \
             it may or may not have been applied, so goneaway did not run it again{tx_note}. Check before retrying; the session goes on with a fresh connection)"
        );
        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "outcome_unknown", &msg)
            .await
    }

    /// A command in the failed-transaction state: ROLLBACK ends it with OK, COMMIT ends it
    /// with an error, anything else is refused and runs nowhere.
    pub(super) async fn refuse_in_failed_tx(&mut self, sql: Option<&str>) -> bool {
        let Some((cause, mut how)) = self.failed_tx.take() else {
            return true;
        };
        self.tx_log = None;
        if let Some(why) = self.replay_refusal.take() {
            how = format!("{how} (not replayed: {why})");
        }
        let cause = match cause {
            Some(c) => c,
            None => self.explain_loss().await,
        };
        if ends_transaction(sql) {
            if sql.map(first_word).is_some_and(|w| w == "rollback") {
                tracing::debug!(
                    session = self.id,
                    "ROLLBACK ends the failed-transaction state"
                );
                return self.send_ok(1).await;
            }
            let msg = format!(
                "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost {how} (cause: {cause}) and the server rolled the open transaction back: \
                 this COMMIT committed nothing. The transaction has ended; run it again from its start)"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
                .await;
        }
        let msg = format!(
            "MySQL server has gone away (Connection was killed by goneaway proxy: the connection to the server was lost {how} (cause: {cause}) and the server rolled the open transaction back; \
             nothing of it was committed. This statement was not run: send ROLLBACK to end the lost transaction, then start it again)"
        );
        self.failed_tx = Some((Some(cause), how));
        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
            .await
    }
}
