//! The open transaction, as the client ran it: each statement and a digest of what the
//! client was sent for it, so that a transaction whose backend was lost before COMMIT can
//! be run again on a fresh one and proved to have gone the same way.
//!
//! # What is replayed, and what is not
//!
//! A replay runs the transaction's statements again, in order, on a fresh backend whose
//! session state was restored, and compares each reply with the digest of the one the
//! client got. Identical: the client goes on as if nothing had happened. Different
//! (another writer changed what the transaction read, a value such as `NOW()` or `RAND()`
//! that the client saw came out otherwise): the session enters the failed-transaction
//! state, with the reason. The rules:
//!
//! - **Results the client saw are compared**, byte for byte (rows, column definitions,
//!   errors), and OK packets by affected rows, generated id and warnings. Status flags and
//!   session-tracking data are not: they describe the connection, not the statement.
//! - **Generated ids come back the same**: a statement whose OK carried an auto-increment
//!   id is replayed after `SET insert_id = <that id>`, as the server's own binary log
//!   replays it; if another writer took the id meanwhile, the replay fails on the
//!   duplicate key and the transaction is not continued.
//! - **Values the client never saw** (a `DEFAULT CURRENT_TIMESTAMP`, `UUID()` inside an
//!   `INSERT`) take the replay's values, as if the transaction had run those seconds later:
//!   nothing the client was told differs. A value the client did see (`SELECT NOW()`) makes
//!   the replay differ, and the transaction is not continued.
//! - **Not replayable**: `LOAD DATA LOCAL INFILE` (the file came from the client and is
//!   gone), prepared statements with long data, cursors, XA transactions, a transaction
//!   over the byte budget ([`crate::ProxyConfig::transaction_replay_budget`]), and a
//!   transaction whose session also held state a fresh backend cannot get back
//!   (temporary tables, `GET_LOCK`'s named locks, user variables). These keep today's
//!   failed-transaction state, whose error says why.
//! - **Implicit commits** end the transaction, and with it the log.
//! - Before a replay the old server thread is killed (when the server did not restart:
//!   thread ids only name one connection within a server's life), so that a transaction
//!   still open on a connection the server has not yet noticed is gone cannot hold the
//!   replay's locks.

use std::hash::{DefaultHasher, Hasher};

use crate::net::packet;
use crate::net::Packet;

/// One statement of the transaction.
#[derive(Debug, Clone)]
pub struct TxEntry {
    /// `COM_QUERY` or `COM_STMT_EXECUTE`.
    pub cmd: u8,
    /// The client's packets, as it sent them (statement ids are the client's).
    pub packets: Vec<Packet>,
    /// What the client was sent.
    pub digest: u64,
    /// The auto-increment id the statement generated, if any.
    pub insert_id: u64,
}

/// The open transaction's statements, or why it cannot be replayed.
#[derive(Debug, Default)]
pub struct TxLog {
    pub entries: Vec<TxEntry>,
    /// Bytes of statements held.
    pub bytes: usize,
    /// Set when something made the transaction impossible to replay.
    pub unreplayable: Option<&'static str>,
}

impl TxLog {
    /// Adds a statement, unless the log is over `budget` bytes (then it is dropped and the
    /// transaction marked unreplayable).
    pub fn push(&mut self, entry: TxEntry, budget: usize) {
        if self.unreplayable.is_some() {
            return;
        }
        self.bytes += entry.packets.iter().map(|p| p.payload.len()).sum::<usize>();
        if self.bytes > budget {
            self.entries.clear();
            self.unreplayable = Some("the transaction is larger than transaction_replay_budget");
            return;
        }
        self.entries.push(entry);
    }

    /// Why a replay cannot be tried, or `None` when it can.
    pub fn refusal(&self) -> Option<&'static str> {
        self.unreplayable
    }
}

/// A digest of a reply, fed packet by packet.
#[derive(Debug, Default)]
pub struct ReplyDigest {
    hasher: DefaultHasher,
    /// The first auto-increment id an OK packet carried.
    pub insert_id: u64,
}

impl ReplyDigest {
    /// Feeds one packet of the reply; `ok` says the reply tracker saw an OK packet.
    pub fn feed(&mut self, payload: &[u8], ok: bool, session_track: bool) {
        match payload.first() {
            Some(0x00 | 0xfe) if ok => {
                if let Some(info) = packet::parse_ok(payload, session_track) {
                    self.hasher.write_u8(0);
                    self.hasher.write_u64(info.affected_rows);
                    self.hasher.write_u64(info.last_insert_id);
                    self.hasher.write_u16(info.warnings);
                    if self.insert_id == 0 {
                        self.insert_id = info.last_insert_id;
                    }
                    return;
                }
                self.hasher.write(payload);
            }
            // An EOF: its warnings; the status flags describe the connection.
            Some(0xfe) if payload.len() < 9 => {
                self.hasher.write_u8(0xfe);
                self.hasher.write(payload.get(1..3).unwrap_or_default());
            }
            _ => {
                self.hasher.write_usize(payload.len());
                self.hasher.write(payload);
            }
        }
    }

    pub fn finish(&self) -> u64 {
        self.hasher.finish()
    }
}

/// Whether a statement's (lowercase) first word opens a transaction (`BEGIN`, `START
/// TRANSACTION`).
pub fn opens_transaction(first_word: &str) -> bool {
    OPENING.contains(&first_word)
}

/// [`opens_transaction`] for a whole statement, without allocating: it runs on every
/// command outside a transaction.
pub fn statement_opens_transaction(sql: &str) -> bool {
    let word = crate::frontend::state::first_word_as_written(sql);
    OPENING.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// `XA START` too: recorded, so that the log says why it is not replayed.
const OPENING: [&str; 3] = ["begin", "start", "xa"];

/// The keyword that stands for a statement's transaction control, if it is any: `begin`
/// (also for `START TRANSACTION` and `XA`), `commit`, `rollback` (not `ROLLBACK TO
/// SAVEPOINT`), or `create` for any statement that commits implicitly. Kept for prepared
/// statements, whose executes carry no text.
pub fn control_word(sql: &str) -> Option<&'static str> {
    let word = crate::frontend::state::first_word(sql);
    if crate::frontend::state::ends_transaction(Some(sql)) {
        return Some(if word == "commit" {
            "commit"
        } else {
            "rollback"
        });
    }
    if opens_transaction(&word) {
        return Some("begin");
    }
    commits_implicitly(&word).then_some("create")
}

/// Whether a statement ends the open transaction by committing it implicitly (DDL and the
/// administrative statements MariaDB lists): a loss during one may have committed.
pub fn commits_implicitly(first_word: &str) -> bool {
    matches!(
        first_word,
        "create"
            | "alter"
            | "drop"
            | "rename"
            | "truncate"
            | "grant"
            | "revoke"
            | "lock"
            | "unlock"
            | "analyze"
            | "optimize"
            | "repair"
            | "flush"
            | "install"
            | "uninstall"
    )
}

/// Why a statement makes the transaction impossible to replay, if it does.
pub fn unreplayable_statement(first_word: &str) -> Option<&'static str> {
    match first_word {
        "xa" => Some("an XA transaction"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(affected: u8, insert_id: u8, status: u16) -> Vec<u8> {
        let mut v = vec![0, affected, insert_id];
        v.extend_from_slice(&status.to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[test]
    fn digests_ignore_status_flags_but_not_rows_or_ids() {
        let digest = |packets: &[(&[u8], bool)]| {
            let mut d = ReplyDigest::default();
            for (p, ok) in packets {
                d.feed(p, *ok, false);
            }
            (d.finish(), d.insert_id)
        };
        let a = digest(&[(&ok(1, 7, 0x0003), true)]);
        let b = digest(&[(&ok(1, 7, 0x0001), true)]);
        assert_eq!(
            a, b,
            "in-transaction and autocommit flags are the connection's"
        );
        assert_eq!(a.1, 7);
        assert_ne!(a, digest(&[(&ok(1, 8, 0x0003), true)]), "another id");
        assert_ne!(a, digest(&[(&ok(2, 7, 0x0003), true)]), "other rows");
        let row1 = digest(&[(b"\x01", false), (b"\x03def", false), (b"\x011", false)]);
        let row2 = digest(&[(b"\x01", false), (b"\x03def", false), (b"\x012", false)]);
        assert_ne!(row1, row2);
    }

    #[test]
    fn the_budget_drops_the_log() {
        let entry = || TxEntry {
            cmd: 3,
            packets: vec![Packet::new(0, bytes::Bytes::from_static(b"\x03INSERT 1"))],
            digest: 0,
            insert_id: 0,
        };
        let mut log = TxLog::default();
        log.push(entry(), 20);
        log.push(entry(), 20);
        assert_eq!(log.entries.len(), 2);
        log.push(entry(), 20);
        assert!(log.entries.is_empty());
        assert!(log.refusal().unwrap().contains("transaction_replay_budget"));
    }
}
