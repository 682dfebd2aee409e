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
        moved_from: Option<String>,
    ) -> bool {
        // The statement that ends the transaction decides its fate itself: a lost
        // ROLLBACK rolled back (the server rolls back a connection it loses), a lost
        // COMMIT may or may not have committed.
        let ending = (in_tx && ends_transaction(sql))
            .then(|| sql.map(first_word).is_some_and(|w| w == "rollback"));
        let refusal = self.replay_refusal.take();
        if let (Some(old), Some(e)) = (moved_from, &server_err) {
            return self.answer_moved(old, e, refusal, ending.is_some()).await;
        }
        if in_tx && ending.is_none() {
            let how = match &refusal {
                Some(why) => format!("during a statement (not replayed: {why})"),
                None => "during a statement".to_owned(),
            };
            self.failed_tx = Some((TxEnd::Lost(Some(cause)), how));
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

    /// A transaction moved off an old writer and not replayed on the new one: the old
    /// writer refused this statement with `refused` (its 1290), and the proxy gave that
    /// connection up, which rolled the transaction back. The client is told so in words,
    /// and the session enters the failed-transaction state (unless this statement ended
    /// the transaction). Not a lost connection: no cause of the vocabulary is named.
    async fn answer_moved(
        &mut self,
        old: String,
        refused: &ErrInfo,
        refusal: Option<String>,
        ending: bool,
    ) -> bool {
        let not_replayed = refusal
            .map(|w| format!("it could not be replayed on the new writer: {w}"))
            .unwrap_or_else(|| "it was not replayed on the new writer".to_owned());
        tracing::info!(session = self.id, server = %old, not_replayed, "a transaction moved off the old writer was rolled back");
        let after = if ending {
            "The transaction has ended; run it again from its start"
        } else {
            self.failed_tx = Some((
                TxEnd::Moved(old.clone()),
                format!("refused a statement of it ({not_replayed})"),
            ));
            "This statement was not run; every statement is refused until the client sends ROLLBACK, then run the transaction again from its start"
        };
        let msg = format!(
            "MySQL server has gone away (Connection was killed by goneaway proxy: the writer moved: a switchover made {old}, the server this transaction ran on, read-only, \
             and it refused this statement ({}: {}); goneaway gave that connection up, so the server rolled the open transaction back and nothing of it was committed, \
             and {not_replayed}. {after})",
            refused.code, refused.message
        );
        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_moved", &msg)
            .await
    }

    /// A command in the failed-transaction state: ROLLBACK ends it with OK, COMMIT ends it
    /// with an error, anything else is refused and runs nowhere.
    pub(super) async fn refuse_in_failed_tx(&mut self, sql: Option<&str>) -> bool {
        let Some((end, mut how)) = self.failed_tx.take() else {
            return true;
        };
        self.tx_log = None;
        if let Some(why) = self.replay_refusal.take() {
            how = format!("{how} (not replayed: {why})");
        }
        let (what, end) = match end {
            TxEnd::Lost(cause) => {
                let cause = match cause {
                    Some(c) => c,
                    None => self.explain_loss().await,
                };
                (
                    format!("the connection to the server was lost {how} (cause: {cause})"),
                    TxEnd::Lost(Some(cause)),
                )
            }
            TxEnd::Moved(old) => (
                format!(
                    "the writer moved: a switchover made {old}, the server the transaction ran on, read-only, and it {how}; goneaway gave that connection up"
                ),
                TxEnd::Moved(old),
            ),
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
                "MySQL server has gone away (Connection was killed by goneaway proxy: {what}, and the server rolled the open transaction back: \
                 this COMMIT committed nothing. The transaction has ended; run it again from its start)"
            );
            return self
                .send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
                .await;
        }
        let msg = format!(
            "MySQL server has gone away (Connection was killed by goneaway proxy: {what}, and the server rolled the open transaction back; \
             nothing of it was committed. This statement was not run: send ROLLBACK to end the lost transaction, then start it again)"
        );
        self.failed_tx = Some((end, how));
        self.send_err(1, LOST_CODE, SQLSTATE_LOST, "transaction_lost", &msg)
            .await
    }
}
