//! Prepared statements kept on a shared server connection, by text, for every session
//! that uses the connection (`multiplex`).
//!
//! With connections shared, a session's next statement often runs on a connection another
//! session used last. Without this cache each such execute would first prepare the
//! statement again on that connection (a second round trip), and the statements of every
//! earlier user would pile up in it. With it, a connection prepares each statement text
//! once, and every session that executes that text on it uses the same server statement:
//! after the first few statements a shared connection costs one round trip per execute,
//! as the session's own would.
//!
//! A key is the statement's text together with the *context* it was prepared in (a hash
//! of the database and the session variables in force): the server resolves table names
//! and parses by `sql_mode` at prepare time, so the same text prepared in another database
//! is another statement. A session prepares a statement missing from the cache only in the
//! context it was first prepared in; otherwise it prepares a statement of its own (see
//! [`crate::frontend::session`]), as it does for cursors and long data, which live in one
//! server statement and so are never shared.
//!
//! Each entry also remembers the parameter types the server statement last saw: an execute
//! that binds none ("new params bound" = 0) is given its session's types whenever another
//! session's execute bound different ones.
//!
//! **Invariant:** every id in the cache is a statement prepared on this connection and not
//! closed; [`StatementCache::insert`] returns the id it evicts, for the caller to close, and
//! a reset of the connection clears the cache with the server's statements.

use std::collections::HashMap;

use bytes::Bytes;

/// How many statements one connection keeps: with the default `max_backends` this stays
/// below the server's default `max_prepared_stmt_count` (16,382).
pub const STATEMENT_CACHE_LIMIT: usize = 64;

/// What identifies a shared server statement: where it was prepared and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatementKey {
    /// A hash of the database and session variables it was prepared under.
    pub context: u64,
    /// The `COM_STMT_PREPARE` payload (its command byte and text).
    pub prepare: Bytes,
}

/// A statement prepared on the connection.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The server's statement id.
    pub id: u32,
    /// The parameter types the server statement was last bound with.
    pub types: Option<Bytes>,
    used: u64,
}

/// The statements prepared on one server connection, by [`StatementKey`].
#[derive(Debug, Default)]
pub struct StatementCache {
    entries: HashMap<StatementKey, Cached>,
    clock: u64,
}

impl StatementCache {
    /// The statement for `key`, if the connection has it (marked as just used).
    pub fn get(&mut self, key: &StatementKey) -> Option<&mut Cached> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.get_mut(key)?;
        e.used = clock;
        Some(e)
    }

    /// Records the statement `id` just prepared for `key`. Returns an id for the caller to
    /// close on the server: the one `key` had before, or the one evicted to stay within
    /// [`STATEMENT_CACHE_LIMIT`] (the least recently used).
    ///
    /// A statement just prepared replaces the one kept: the server resolved it against
    /// the tables, routines and database defaults of now. An older statement of the same
    /// text can be one prepared before a DDL changed what it means (the server re-prepares
    /// a query whose tables changed, but a `CREATE FUNCTION` keeps the database's character
    /// set of its prepare), and a client that prepares again expects what it prepares now.
    pub fn insert(&mut self, key: StatementKey, id: u32) -> Option<u32> {
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(&key) {
            e.types = None;
            e.used = self.clock;
            return Some(std::mem::replace(&mut e.id, id));
        }
        let mut evicted = None;
        if self.entries.len() >= STATEMENT_CACHE_LIMIT {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                evicted = self.entries.remove(&k).map(|e| e.id);
            }
        }
        self.entries.insert(
            key,
            Cached {
                id,
                types: None,
                used: self.clock,
            },
        );
        evicted
    }

    /// Forgets every statement and returns their ids, for the caller to close.
    pub fn take_ids(&mut self) -> Vec<u32> {
        self.entries.drain().map(|(_, e)| e.id).collect()
    }

    /// Forgets everything: the server closed the connection's statements (a reset).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Statements kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &'static str) -> StatementKey {
        StatementKey {
            context: 7,
            prepare: Bytes::from_static(text.as_bytes()),
        }
    }

    #[test]
    fn the_least_recently_used_statement_is_evicted_for_the_caller_to_close() {
        let mut cache = StatementCache::default();
        let texts: Vec<String> = (0..=STATEMENT_CACHE_LIMIT)
            .map(|i| format!("SELECT {i}"))
            .collect();
        let keys: Vec<StatementKey> = texts
            .iter()
            .map(|t| StatementKey {
                context: 1,
                prepare: Bytes::copy_from_slice(t.as_bytes()),
            })
            .collect();
        for (i, k) in keys.iter().take(STATEMENT_CACHE_LIMIT).enumerate() {
            assert_eq!(cache.insert(k.clone(), i as u32), None);
        }
        // Statement 0 is used again, so 1 is the oldest.
        assert_eq!(cache.get(&keys[0]).map(|e| e.id), Some(0));
        let last = STATEMENT_CACHE_LIMIT as u32;
        assert_eq!(
            cache.insert(keys[STATEMENT_CACHE_LIMIT].clone(), last),
            Some(1)
        );
        assert_eq!(cache.len(), STATEMENT_CACHE_LIMIT);
        assert!(cache.get(&keys[1]).is_none());
        assert_eq!(cache.get(&keys[0]).map(|e| e.id), Some(0));
    }

    #[test]
    fn a_statement_prepared_again_replaces_the_one_kept() {
        let mut cache = StatementCache::default();
        assert_eq!(cache.insert(key("SELECT ?"), 3), None);
        cache.get(&key("SELECT ?")).expect("kept").types = Some(Bytes::from_static(b"\x03\x00"));
        assert_eq!(
            cache.insert(key("SELECT ?"), 4),
            Some(3),
            "the older is closed"
        );
        let kept = cache.get(&key("SELECT ?")).expect("kept");
        assert_eq!(kept.id, 4);
        assert_eq!(kept.types, None, "the new statement has seen no types yet");
        let other = StatementKey {
            context: 8,
            ..key("SELECT ?")
        };
        assert!(
            cache.get(&other).is_none(),
            "another context is another statement"
        );
        cache.clear();
        assert!(cache.is_empty());
    }
}
