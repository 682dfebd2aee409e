//! What a client session has set up on its backend, and which of it a fresh backend can get
//! back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::net::StateChange;

/// Read-only session variables the server sets itself and reports through tracking:
/// not state a session set up (never restored, no part of what makes connections
/// interchangeable). `last_gtid` changes with every write; a session that reads it reads
/// it on the connection that wrote (see `Session::forward`'s `hold_next`).
pub const SERVER_SET: [&str; 1] = ["last_gtid"];

/// Session variables the proxy sets itself on every backend; never restored from the
/// client's changes.
const PROXY_OWNED: [&str; 3] = [
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
];

/// A prepared statement as the client knows it.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The client's `COM_STMT_PREPARE` payload, to prepare it again on a fresh backend.
    pub prepare: Bytes,
    /// The id of the session's own statement on the current backend; `None` after a
    /// replacement until it is prepared again, and with `multiplex` while the statement
    /// is one the connection shares (see [`crate::backend::statements`]).
    pub backend_id: Option<u32>,
    /// The database and variables it was prepared under: a server statement prepared
    /// again is prepared there, where its text means what it meant to the client.
    pub origin: Arc<Origin>,
    /// Parameter count.
    pub params: u16,
    /// The parameter types the client last bound (`2 × params` bytes), which a fresh
    /// backend needs when the client executes with "new params bound" = 0.
    pub types: Option<Bytes>,
    /// The parameter types the session's own server statement was last bound with.
    pub backend_types: Option<Bytes>,
    /// Whether executing it is safe to replay (a read-only statement).
    pub read_only: bool,
    /// Whether it reads the same on any server, so that `replica_reads` may run it on a
    /// replica (see `session::replica::reads_the_same_anywhere`).
    pub reads_anywhere: bool,
    /// When it is transaction control (a driver may prepare BEGIN and COMMIT, as sysbench
    /// does): its keyword, for the decisions a COM_QUERY's text makes (see
    /// [`crate::frontend::txlog::control_word`]).
    pub control: Option<&'static str>,
}

/// A client session's state, as followed through the server's session tracking.
#[derive(Debug, Default)]
pub struct SessionState {
    /// The current database.
    pub database: Option<String>,
    /// Session variables the client changed, with their current values.
    pub variables: BTreeMap<String, String>,
    /// Whether a transaction is open: the server reported one, or the session runs with
    /// autocommit off and has run a statement since its last COMMIT or ROLLBACK (with
    /// autocommit off every statement belongs to a transaction, even one the server does
    /// not flag yet).
    pub in_transaction: bool,
    /// Whether autocommit is off, as the server's status flags last said.
    pub autocommit_off: bool,
    /// State a fresh backend cannot get back (user variables, temporary tables…).
    pub pinned: BTreeSet<&'static str>,
    /// Prepared statements by the id the client was given.
    pub statements: HashMap<u32, Statement>,
    /// The next statement id handed to the client.
    pub next_statement: u32,
    /// With autocommit off: a statement ran since the last COMMIT or ROLLBACK.
    pub autocommit_off_work: bool,
    /// A `SET TRANSACTION …` (no `SESSION`, no `GLOBAL`) for the next transaction, not run
    /// yet: it lives in the connection and the server reports nothing of it. A fresh
    /// connection gets it again (see [`SessionState::restore_statements`]); the next
    /// statement other than a `SET` consumes it.
    pub next_transaction: Option<String>,
    /// The `SET TRANSACTION …` the open transaction began under: a replay of the
    /// transaction on a fresh connection begins under it too.
    pub transaction_characteristics: Option<String>,
}

impl SessionState {
    /// A description of what a lost backend takes with it, or `None` if a fresh backend can
    /// restore everything.
    pub fn unrestorable(&self) -> Option<String> {
        let mut parts: Vec<&str> = Vec::new();
        if self.in_transaction {
            parts.push(
                "an open transaction (the server rolled it back; nothing of it was committed)",
            );
        }
        parts.extend(self.pinned.iter().copied());
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Forgets the state that died with a backend (after the client was told).
    pub fn forget_pinned(&mut self) {
        self.in_transaction = false;
        self.autocommit_off_work = false;
        self.pinned.clear();
    }

    /// A backend was replaced: statements must be prepared again.
    pub fn backend_replaced(&mut self) {
        for s in self.statements.values_mut() {
            s.backend_id = None;
            s.backend_types = None;
        }
    }

    /// A hash of the database and the session variables, which decide how the server
    /// resolves and parses a statement prepared now.
    pub fn statement_context(&self) -> u64 {
        context_of(self.database.as_deref(), &self.variables)
    }

    /// Where a statement prepared now is prepared (see [`Statement::origin`]).
    pub fn origin(&self) -> Arc<Origin> {
        Arc::new(Origin {
            context: self.statement_context(),
            database: self.database.clone(),
            variables: self.variables.clone(),
        })
    }

    /// The statements that take a connection in this session's state to `origin`'s
    /// database and variables, and those that bring it back (both empty when they are
    /// the same). `login`: the connection's variables as it logged in (see
    /// `Backend::login_state`), which a variable the session has not changed goes back to.
    pub fn switch_to(
        &self,
        origin: &Origin,
        login: &BTreeMap<String, String>,
    ) -> (Vec<String>, Vec<String>) {
        let mut there = variable_changes(&self.variables, &origin.variables, login);
        let mut back = variable_changes(&origin.variables, &self.variables, login);
        if origin.database != self.database {
            // A database cannot be left for none: such a statement is prepared where the
            // session is.
            if let (Some(then), Some(now)) = (&origin.database, &self.database) {
                there.push(use_statement(then));
                back.push(use_statement(now));
            }
        }
        (there, back)
    }

    /// `COM_RESET_CONNECTION` or `COM_CHANGE_USER` succeeded: the server forgot everything.
    pub fn reset(&mut self) {
        self.variables.clear();
        self.in_transaction = false;
        self.autocommit_off = false;
        self.autocommit_off_work = false;
        self.pinned.clear();
        self.statements.clear();
    }

    /// Applies a reply's tracked changes and status; `writes` says whether the command may
    /// have changed data (a query that is not read-only, any execute: with autocommit off it
    /// opens the transaction even when the server does not flag one), `sql` is its text when
    /// it was a query, to tell which unrestorable state a "state changed" note means.
    pub fn apply(
        &mut self,
        changes: &[StateChange],
        status: Option<u16>,
        writes: bool,
        sql: Option<&str>,
    ) {
        use crate::net::packet::status::{AUTOCOMMIT, IN_TRANS};
        if let Some(status) = status {
            let flagged = status & IN_TRANS != 0;
            self.autocommit_off = status & AUTOCOMMIT == 0;
            if !self.autocommit_off || (!flagged && ends_transaction(sql)) {
                self.autocommit_off_work = false;
            } else if flagged || (writes && sql.is_none_or(|s| first_word(s) != "set")) {
                self.autocommit_off_work = true;
            }
            self.in_transaction = flagged || self.autocommit_off_work;
        }
        let mut explained = false;
        let mut state_changed = false;
        let first = sql.map(first_word_as_written).unwrap_or_default();
        // The word after SET, which tells `SET STATEMENT`, `SET TRANSACTION` and
        // `SET ROLE` apart; empty for any other statement.
        let after_set = match sql {
            Some(s) if first.eq_ignore_ascii_case("set") => {
                first_word_as_written(after_first_word(s))
            }
            _ => "",
        };
        // SET TRANSACTION is for the next transaction: the statement after it (other than
        // another SET) starts that one, and consumes it.
        if let Some(s) = sql {
            if after_set.eq_ignore_ascii_case("transaction") {
                self.next_transaction = Some(s.trim().to_owned());
            } else if !first.eq_ignore_ascii_case("set") {
                if let Some(next) = self.next_transaction.take() {
                    if self.in_transaction {
                        self.transaction_characteristics = Some(next);
                    }
                }
            }
        }
        if !self.in_transaction {
            self.transaction_characteristics = None;
        }
        // Values a statement sets for itself alone, which the server reports as changes all
        // the same (and their end with some later reply): `SET STATEMENT … FOR`, and the
        // lock timeouts of a `WAIT n` / `NOWAIT` clause. Recorded, they would be set on
        // every connection the session moves to.
        let set_statement = after_set.eq_ignore_ascii_case("statement");
        let waits = |s: &str| {
            s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| w.eq_ignore_ascii_case("wait") || w.eq_ignore_ascii_case("nowait"))
        };
        let statement_scoped = |name: &str| {
            set_statement
                || (matches!(name, "lock_wait_timeout" | "innodb_lock_wait_timeout")
                    && !first.eq_ignore_ascii_case("set")
                    && sql.is_some_and(waits))
        };
        for c in changes {
            match c {
                StateChange::SystemVariable(name, value) => {
                    explained = true;
                    let name = name.to_ascii_lowercase();
                    if !PROXY_OWNED.contains(&name.as_str())
                        && !SERVER_SET.contains(&name.as_str())
                        && !statement_scoped(&name)
                    {
                        self.variables.insert(name, value.clone());
                    }
                }
                StateChange::Schema(db) => {
                    explained = true;
                    self.database = (!db.is_empty()).then(|| db.clone());
                }
                StateChange::StateChanged => state_changed = true,
                StateChange::Other(_) => {}
            }
        }
        // A named lock lives in the connection, and the server does not flag it as a state
        // change: found by its name (without allocating; most statements are short).
        if let Some(s) = sql {
            if !self.pinned.contains(NAMED_LOCKS)
                && s.as_bytes()
                    .windows(8)
                    .any(|w| w.eq_ignore_ascii_case(b"get_lock"))
            {
                self.pinned.insert(NAMED_LOCKS);
            }
        }
        // A user variable assigned inside a statement (`SELECT @x := …`, `… INTO @x`)
        // lives in the connection as one `SET @x` makes does, but the server flags no
        // state change for it: found by its text (a byte search first: most statements
        // name no variable).
        if let Some(s) = sql {
            if !self.pinned.contains(USER_VARIABLES)
                && s.as_bytes().contains(&b'@')
                && assigns_user_variable(s)
            {
                self.pinned.insert(USER_VARIABLES);
            }
        }
        // LOCK TABLES, which the server flags as a state change only with a WAIT clause,
        // a global read lock (FLUSH TABLES … WITH READ LOCK, FLUSH TABLES … FOR EXPORT)
        // and backup locks live in the connection too, unflagged, until UNLOCK TABLES
        // (below) or BACKUP STAGE END / BACKUP UNLOCK. Lost silently, a backup tool would
        // copy files it believes locked.
        if first.eq_ignore_ascii_case("lock") {
            self.pinned.insert(LOCK_TABLES);
        }
        // SET ROLE (and SET ROLE NONE): the role is the connection's, and the server flags
        // only a state change, which a SET does not pin (below). Lost silently, the session
        // would go on with the default role's privileges, more or fewer.
        if after_set.eq_ignore_ascii_case("role") {
            self.pinned.insert(ROLE);
        }
        if let Some(s) = sql {
            let flush = first.eq_ignore_ascii_case("flush");
            let backup = first.eq_ignore_ascii_case("backup");
            if flush || backup {
                let lower = s.to_ascii_lowercase();
                if flush && (lower.contains("read lock") || lower.contains("for export")) {
                    self.pinned.insert(LOCK_TABLES);
                } else if backup {
                    if lower.contains("unlock") || lower.split_whitespace().any(|w| w == "end") {
                        self.pinned.remove(BACKUP_LOCKS);
                    } else {
                        self.pinned.insert(BACKUP_LOCKS);
                    }
                }
            }
        }
        // Most replies change nothing: the text is only looked at when it can matter.
        if !state_changed && !self.pinned.contains(LOCK_TABLES) {
            return;
        }
        let lower = sql.map(str::to_ascii_lowercase);
        if let Some(sql) = lower.as_deref() {
            if sql.contains("unlock tables") {
                self.pinned.remove(LOCK_TABLES);
            }
        }
        if !state_changed {
            return;
        }
        let before = self.pinned.len();
        if let Some(sql) = lower.as_deref() {
            if mentions_user_variable(sql) {
                self.pinned.insert(USER_VARIABLES);
            }
            if sql.contains("temporary") {
                self.pinned.insert(TEMP_TABLES);
            }
            if sql.contains("get_lock") {
                self.pinned.insert(NAMED_LOCKS);
            }
            if sql.contains("lock table") && !sql.contains("unlock table") {
                self.pinned.insert(LOCK_TABLES);
            }
            if first_word(sql) == "prepare" {
                self.pinned.insert(SQL_PREPARED);
            }
        }
        // Transaction control changes state the status flags already follow.
        let transactional = lower.as_deref().map(first_word).is_some_and(|w| {
            matches!(
                w.as_str(),
                "begin" | "start" | "commit" | "rollback" | "savepoint" | "release" | "set" | "use"
            )
        });
        if self.pinned.len() == before && !explained && !transactional && sql.is_some() {
            self.pinned.insert(UNKNOWN_STATE);
        }
    }

    /// `SET SESSION` statements that give a fresh backend the client's variables.
    pub fn restore_statements(&self) -> Vec<String> {
        self.variables
            .iter()
            .map(|(name, value)| set_statement(name, value))
            .chain(self.next_transaction.clone())
            .chain(self.transaction_characteristics.clone())
            .collect()
    }
}

/// Where a prepared statement was prepared: the session's database and changed variables
/// then, and their hash (the key of a statement a connection shares, see
/// [`crate::backend::statements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// A hash of the other two.
    pub context: u64,
    /// The current database.
    pub database: Option<String>,
    /// The session variables changed from the server's defaults.
    pub variables: BTreeMap<String, String>,
}

fn context_of(database: Option<&str>, variables: &BTreeMap<String, String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    database.hash(&mut h);
    variables.hash(&mut h);
    h.finish()
}

/// Session variables a login sets other than their global values whatever `init_connect`
/// does: the character set the handshake chose (the session restores it itself) and the
/// proxy's own tracking.
pub(crate) fn set_by_login(name: &str) -> bool {
    name.starts_with("character_set_")
        || name == "collation_connection"
        || PROXY_OWNED.contains(&name)
        || SERVER_SET.contains(&name)
}

pub(crate) fn set_statement(name: &str, value: &str) -> String {
    let value = if value.is_empty() && name.starts_with("character_set_") {
        "NULL".to_owned()
    } else if value.parse::<f64>().is_ok() {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    };
    format!("SET SESSION {name} = {value}")
}

fn use_statement(database: &str) -> String {
    format!("USE `{}`", database.replace('`', "``"))
}

/// `SET SESSION` statements that take a connection with variables `from` to `to`; a
/// variable `to` leaves as it was goes back to its value at `login`, or its default.
fn variable_changes(
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
    login: &BTreeMap<String, String>,
) -> Vec<String> {
    let set = to
        .iter()
        .filter(|(name, value)| from.get(*name) != Some(*value))
        .map(|(name, value)| set_statement(name, value));
    let reverted = from
        .keys()
        .filter(|name| !to.contains_key(*name))
        .map(|name| match login.get(name) {
            Some(value) => set_statement(name, value),
            None => format!("SET SESSION {name} = DEFAULT"),
        });
    set.chain(reverted).collect()
}

const USER_VARIABLES: &str = "user variables";
const TEMP_TABLES: &str = "temporary tables";
const NAMED_LOCKS: &str = "named locks (GET_LOCK)";
const LOCK_TABLES: &str = "table locks (LOCK TABLES)";
const BACKUP_LOCKS: &str = "backup locks (BACKUP STAGE, BACKUP LOCK)";
const SQL_PREPARED: &str = "SQL-level prepared statements (PREPARE)";
const ROLE: &str = "the role SET ROLE set";
const UNKNOWN_STATE: &str = "session state the proxy cannot restore";
/// Variables set in a form the server does not report, whose values are not read back
/// yet, or could not be (see [`unreported_assignments`]).
pub const UNREPORTED_VARIABLES: &str = "session variables set with SET @@name";

/// The `goneaway_proxy_pins_total` reason of a pinned state (see [`SessionState::pinned`]).
pub fn pin_reason(pinned: &str) -> &'static str {
    match pinned {
        USER_VARIABLES => "user_variables",
        TEMP_TABLES => "temporary_tables",
        NAMED_LOCKS => "named_locks",
        LOCK_TABLES => "table_locks",
        BACKUP_LOCKS => "backup_locks",
        SQL_PREPARED => "sql_prepare",
        ROLE => "role",
        UNREPORTED_VARIABLES => "unreported_variables",
        _ => "unknown_state",
    }
}

/// What a pin means and how an application avoids it, for the pin's log line.
pub fn pin_advice(reason: &str) -> &'static str {
    match reason {
        "user_variables" => "it set a user variable (@name), which lives in one server connection; pass the value as a parameter, or select it where it is used",
        "temporary_tables" => "it created a temporary table, which lives in one server connection; use a regular table, a derived table or a CTE",
        "named_locks" => "GET_LOCK holds a lock in one server connection; the connection stays with the session for the rest of its life",
        "table_locks" => "LOCK TABLES and FLUSH TABLES … WITH READ LOCK hold locks in one server connection until UNLOCK TABLES",
        "backup_locks" => "BACKUP STAGE and BACKUP LOCK hold locks in one server connection until BACKUP STAGE END or BACKUP UNLOCK",
        "role" => "SET ROLE gives one server connection a role's privileges (or, SET ROLE NONE, takes the default role's away); make the role the account's default (SET DEFAULT ROLE), which every connection gets at login",
        "sql_prepare" => "SQL-level PREPARE lives in one server connection; use the driver's server-side prepared statements (the binary protocol), which the proxy moves between connections",
        "unreported_variables" => "it set a session variable as SET @@name (or a collation with SET NAMES), which the server does not report, and the proxy could not read the value back; write SET SESSION name = …",
        "cursor" => "a prepared statement opened a cursor (fetch size / useCursorFetch); the connection is kept until the statement is closed, reset or read to its end",
        "long_data" => "a prepared statement was sent long data; the connection is kept until the statement runs",
        "sandboxed_password" => "the account's password has expired; the connection is kept until it is changed",
        _ => "a statement changed session state the proxy cannot restore on another connection",
    }
}

/// Whether the statement ends a transaction (COMMIT, ROLLBACK; not ROLLBACK TO SAVEPOINT).
pub fn ends_transaction(sql: Option<&str>) -> bool {
    let Some(sql) = sql else {
        return false;
    };
    match first_word(sql).as_str() {
        "commit" => true,
        "rollback" => !is_rollback_to_savepoint(sql),
        _ => false,
    }
}

/// `ROLLBACK [WORK] TO [SAVEPOINT] x`, which keeps the transaction open.
pub fn is_rollback_to_savepoint(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(3)
        .any(|w| w == "to")
}

/// Session variables a `SET` statement assigns that the server does not report through
/// session tracking, to be read back with [`report_statement`] while the connection is at
/// hand: MariaDB 10.11 reports `SET SESSION x = …` and `SET x = …` but not `SET @@x = …`
/// (nor `@@local.x`), and reports none of the collation a `SET NAMES … COLLATE`, a
/// `SET CHARACTER SET` or a change of one of `character_set_connection` and
/// `collation_connection` sets implicitly. Unreported, such a change would not move with
/// the session to another connection (a shared one, or a fresh one after a restart): the
/// statement would then run under other rules, with no error to say so. Empty for any
/// other statement, without allocating (this runs after every command).
pub fn unreported_assignments(sql: &str) -> Vec<String> {
    // `SET STATEMENT … FOR` changes nothing that stays.
    if !first_word_as_written(sql).eq_ignore_ascii_case("set") || is_set_statement(sql) {
        return Vec::new();
    }
    let rest = after_first_word(sql);
    let mut names: Vec<String> = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    let mut charset = false;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'\'' | b'"' | b'`' => quote = Some(c),
            b'@' if b.get(i + 1) == Some(&b'@') => {
                let mut j = i + 2;
                let word = |j: usize| {
                    let end = b[j..]
                        .iter()
                        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
                        .map_or(b.len(), |n| j + n);
                    (end, &rest[j..end])
                };
                let (mut end, mut name) = word(j);
                let mut scope = None;
                if b.get(end) == Some(&b'.') {
                    scope = Some(name);
                    j = end + 1;
                    (end, name) = word(j);
                }
                let after = rest[end..].trim_start();
                let assigned = after.starts_with('=') || after.starts_with(":=");
                let unreported_scope = scope.is_none_or(|s| s.eq_ignore_ascii_case("local"));
                let name = name.to_ascii_lowercase();
                if assigned
                    && unreported_scope
                    && !name.is_empty()
                    && !NOT_READ_BACK.contains(&name.as_str())
                    && !names.contains(&name)
                {
                    names.push(name);
                }
                i = end;
                continue;
            }
            _ => {
                if !charset && (c == b'n' || c == b'N' || c == b'c' || c == b'C') {
                    let tail = &b[i..];
                    let starts =
                        |w: &[u8]| tail.len() >= w.len() && tail[..w.len()].eq_ignore_ascii_case(w);
                    let word_start =
                        i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
                    charset = word_start
                        && (starts(b"names")
                            || starts(b"character")
                            || starts(b"charset")
                            || starts(b"collation_connection"));
                }
            }
        }
        i += 1;
    }
    if charset {
        for name in ["character_set_connection", "collation_connection"] {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    // Character sets before collations: setting one sets its collation to the default,
    // and the collation set after it puts the session's own back (see `report_statement`).
    names.sort_by_key(|n| n.starts_with("collation_"));
    names
}

/// Whether the statement only reads the last statement's diagnostics: `SHOW WARNINGS`,
/// `SHOW ERRORS` (with `LIMIT`, or as `SHOW COUNT(*) …`), or a `SELECT` of nothing but
/// `@@warning_count` and `@@error_count`. It must run on the connection the statement ran
/// on.
pub fn reads_diagnostics(sql: &str) -> bool {
    use goneaway_core::sql::{tokens, TokenKind};
    let mut words = tokens(sql).filter(|t| t.kind == TokenKind::Word);
    let Some(first) = words.next() else {
        return false;
    };
    if first.text.eq_ignore_ascii_case("show") {
        return words.next().is_some_and(|w| {
            ["warnings", "errors", "count"]
                .iter()
                .any(|d| w.text.eq_ignore_ascii_case(d))
        });
    }
    first.text.eq_ignore_ascii_case("select")
        && tokens(sql).any(|t| {
            t.text.eq_ignore_ascii_case("warning_count")
                || t.text.eq_ignore_ascii_case("error_count")
        })
        && words.all(|w| {
            ["warning_count", "error_count", "session", "local", "as"]
                .iter()
                .any(|d| w.text.eq_ignore_ascii_case(d))
        })
}

/// The text after the first keyword (see [`first_word_as_written`]).
fn after_first_word(sql: &str) -> &str {
    let first = first_word_as_written(sql);
    // `first` is a slice of `sql`: its end is where the rest begins.
    let end = first.as_ptr() as usize - sql.as_ptr() as usize + first.len();
    &sql[end..]
}

/// `SET STATEMENT … FOR …`: variables set for that one statement.
fn is_set_statement(sql: &str) -> bool {
    first_word_as_written(sql).eq_ignore_ascii_case("set")
        && first_word_as_written(after_first_word(sql)).eq_ignore_ascii_case("statement")
}

/// Variables never read back and set again: reading `timestamp` after `SET @@timestamp =
/// DEFAULT` gives the time now, which set again would stop the session's clock.
const NOT_READ_BACK: [&str; 3] = ["timestamp", "rand_seed1", "rand_seed2"];

/// A statement that sets each of `names` to its own value, in the scope the server reports:
/// run right after the client's statement, its reply carries their values as tracked
/// changes. All values are read before any is set, so the order of `names` is the order
/// the server applies them in (see [`unreported_assignments`]).
pub fn report_statement(names: &[String]) -> String {
    let sets: Vec<String> = names
        .iter()
        .map(|n| format!("@@session.{n} = @@session.{n}"))
        .collect();
    format!("SET {}", sets.join(", "))
}

/// Whether a statement assigns a user variable in a form the server does not flag as a
/// state change: `@x := …` anywhere, or `INTO @x` (`SELECT … INTO @x`, `FETCH … INTO`).
pub(crate) fn assigns_user_variable(sql: &str) -> bool {
    use goneaway_core::sql::{tokens, TokenKind};
    let t: Vec<_> = tokens(sql).collect();
    let is = |i: usize, text: &str| {
        t.get(i)
            .is_some_and(|x| x.kind == TokenKind::Punct && x.text == text)
    };
    // A user variable starts at `@` not preceded by another `@` (`@@x` is a system one).
    let variable_at = |i: usize| is(i, "@") && !(i > 0 && is(i - 1, "@")) && !is(i + 1, "@");
    (0..t.len()).any(|i| {
        if !variable_at(i) {
            return false;
        }
        // `@x := …`: the name, then `:` and `=`.
        let assigned = is(i + 2, ":") && is(i + 3, "=");
        // `INTO @x` (and `INTO @x, @y`: the first is enough).
        let into =
            i > 0 && t[i - 1].kind == TokenKind::Word && t[i - 1].text.eq_ignore_ascii_case("into");
        assigned || into
    })
}

/// Whether the text names a user variable (`@x`, not `@@x`).
pub(crate) fn mentions_user_variable(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'@'
            && (i == 0 || b[i - 1] != b'@')
            && b.get(i + 1).is_some_and(|&n| {
                n != b'@'
                    && (n.is_ascii_alphanumeric()
                        || n == b'_'
                        || n == b'`'
                        || n == b'\''
                        || n == b'"')
            })
    })
}

/// The first keyword, after whitespace and comments.
pub fn first_word(sql: &str) -> String {
    first_word_as_written(sql).to_ascii_lowercase()
}

/// [`first_word`] as the statement spells it, without allocating (for checks on every
/// command, with `eq_ignore_ascii_case`).
pub fn first_word_as_written(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            s = rest
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if s.starts_with("--") || s.starts_with('#') {
            s = s
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            break;
        }
    }
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_variables_assigned_inside_statements_are_found() {
        for sql in [
            "SELECT @stamp1:=f2 FROM t1",
            "select @a := 1, @b := 2",
            "SELECT f2 INTO @x FROM t1",
            "SELECT a, b INTO @x, @y FROM t",
            "UPDATE t SET c = @n := @n + 1",
            "SELECT @`quoted name` := 3",
        ] {
            assert!(assigns_user_variable(sql), "{sql}");
        }
        for sql in [
            "SELECT @x",
            "SELECT @@sql_mode",
            "SELECT @@session.x := 1",
            "SELECT a FROM t WHERE b = ':='",
            "SELECT '@x := 1'",
            "INSERT INTO t VALUES (@x)",
            "SELECT 1",
        ] {
            assert!(!assigns_user_variable(sql), "{sql}");
        }
    }

    #[test]
    fn diagnostics_statements_are_told_from_reads() {
        for sql in [
            "SHOW WARNINGS",
            "show warnings limit 1",
            "SHOW ERRORS",
            "SHOW COUNT(*) WARNINGS",
            "SELECT @@warning_count",
            "select @@session.warning_count, @@error_count",
        ] {
            assert!(reads_diagnostics(sql), "{sql}");
        }
        for sql in [
            "SHOW VARIABLES",
            "SELECT 1",
            "SELECT @@warning_count, name FROM t",
            "SELECT warning_count FROM t",
            "",
        ] {
            assert!(!reads_diagnostics(sql), "{sql}");
        }
    }

    #[test]
    fn pinning_follows_state_changes() {
        let mut s = SessionState::default();
        s.apply(
            &[StateChange::SystemVariable(
                "time_zone".into(),
                "+02:00".into(),
            )],
            Some(2),
            true,
            Some("SET time_zone='+02:00'"),
        );
        assert!(s.unrestorable().is_none());
        assert_eq!(
            s.restore_statements(),
            vec!["SET SESSION time_zone = '+02:00'"]
        );
        s.apply(
            &[StateChange::StateChanged],
            Some(2),
            true,
            Some("SET @x = 1"),
        );
        assert_eq!(s.unrestorable().as_deref(), Some("user variables"));
        s.apply(&[], Some(3), true, Some("BEGIN"));
        assert!(s.unrestorable().unwrap().starts_with("an open transaction"));
    }

    #[test]
    fn values_a_statement_sets_for_itself_are_not_the_sessions() {
        let mut s = SessionState::default();
        let var = |n: &str, v: &str| StateChange::SystemVariable(n.into(), v.into());
        s.apply(
            &[var("sort_buffer_size", "100000")],
            Some(2),
            true,
            Some("SET STATEMENT sort_buffer_size = 100000 FOR SELECT 1"),
        );
        s.apply(
            &[
                var("lock_wait_timeout", "5"),
                var("innodb_lock_wait_timeout", "5"),
            ],
            Some(2),
            true,
            Some("DROP TABLE t WAIT 5"),
        );
        s.apply(
            &[var("lock_wait_timeout", "0")],
            Some(2),
            true,
            Some("ALTER TABLE t NOWAIT ADD c INT"),
        );
        s.apply(
            &[var("sort_buffer_size", "100000")],
            Some(2),
            true,
            Some("/* app */ SET STATEMENT sort_buffer_size = 100000 FOR SELECT 1"),
        );
        assert!(s.variables.is_empty(), "{:?}", s.variables);
        s.apply(
            &[var("lock_wait_timeout", "5")],
            Some(2),
            true,
            Some("SET lock_wait_timeout = 5"),
        );
        assert_eq!(
            s.variables.get("lock_wait_timeout").map(String::as_str),
            Some("5")
        );
        // LOCK TABLES pins whether or not the server flags a state change.
        s.apply(&[], Some(2), true, Some("LOCK TABLES t WRITE"));
        assert!(s.unrestorable().unwrap().contains("LOCK TABLES"));
        s.apply(&[], Some(2), true, Some("UNLOCK TABLES"));
        assert!(s.unrestorable().is_none());
    }

    #[test]
    fn global_read_locks_and_backup_locks_pin_until_released() {
        let mut s = SessionState::default();
        s.apply(&[], Some(2), false, Some("FLUSH TABLES WITH READ LOCK"));
        assert_eq!(
            s.unrestorable().as_deref(),
            Some("table locks (LOCK TABLES)")
        );
        s.apply(&[], Some(2), false, Some("UNLOCK TABLES"));
        assert!(s.unrestorable().is_none());
        s.apply(&[], Some(2), false, Some("flush tables t1 for export"));
        assert!(s.unrestorable().is_some());
        s.apply(&[], Some(2), false, Some("unlock tables"));
        s.apply(&[], Some(2), false, Some("FLUSH TABLES"));
        assert!(s.unrestorable().is_none(), "a plain FLUSH holds nothing");
        s.apply(&[], Some(2), false, Some("BACKUP STAGE START"));
        s.apply(&[], Some(2), false, Some("BACKUP STAGE BLOCK_COMMIT"));
        assert!(s.unrestorable().unwrap().contains("backup locks"));
        s.apply(&[], Some(2), false, Some("BACKUP STAGE END"));
        assert!(s.unrestorable().is_none());
        s.apply(&[], Some(2), false, Some("BACKUP LOCK t1"));
        assert!(s.unrestorable().is_some());
        s.apply(&[], Some(2), false, Some("BACKUP UNLOCK"));
        assert!(s.unrestorable().is_none());
    }

    #[test]
    fn set_forms_the_server_does_not_report_are_read_back() {
        let names = |sql: &str| unreported_assignments(sql);
        // Reported by the server itself: nothing to read back.
        assert!(names("SET SESSION sql_mode = 'ANSI'").is_empty());
        assert!(names("SET sql_mode = 'ANSI', time_zone = '+01:00'").is_empty());
        assert!(names("set @@session.sql_mode='ANSI'").is_empty());
        assert!(names("SET @x = 1").is_empty());
        assert!(names("SELECT @@sql_mode = 'ANSI'").is_empty());
        assert!(names("SET STATEMENT sql_mode = '' FOR SELECT 1").is_empty());
        assert!(names("/* SET */ SET STATEMENT sql_mode = '' FOR SELECT @@x = 1").is_empty());
        assert!(names("SET @@global.sql_mode = 'ANSI'").is_empty());
        // Not reported: `@@name`, `@@local.name`, written any way, assigned with = or :=.
        assert_eq!(names("SET @@SQL_MODE='NO_BACKSLASH_ESCAPES'"), ["sql_mode"]);
        assert_eq!(
            names("/* app */ SET @@local.time_zone := '+02:00', @x = @@sql_mode, @@Sql_Mode = CONCAT(@@sql_mode, ',ANSI')"),
            ["time_zone", "sql_mode"]
        );
        // `@@name` inside a string is text.
        assert!(names("SET @x = '@@sql_mode = 1'").is_empty());
        // Read back, the session's clock would stop: never.
        assert!(names("SET @@timestamp = DEFAULT").is_empty());
        // The collation a character set change sets implicitly.
        let charset = ["character_set_connection", "collation_connection"];
        assert_eq!(names("SET NAMES latin1 COLLATE latin1_bin"), charset);
        assert_eq!(names("set character set utf8mb4"), charset);
        assert_eq!(names("SET CHARSET latin1"), charset);
        assert_eq!(names("SET character_set_connection = latin1"), charset);
        assert_eq!(names("SET collation_connection = latin1_bin"), charset);
        assert_eq!(
            names("SET NAMES utf8, @@collation_connection = utf16le_bin"),
            charset
        );
        assert_eq!(
            report_statement(&names("SET @@sql_mode = '', NAMES utf8mb4")),
            "SET @@session.sql_mode = @@session.sql_mode, \
             @@session.character_set_connection = @@session.character_set_connection, \
             @@session.collation_connection = @@session.collation_connection"
        );
    }

    #[test]
    fn autocommit_off_is_a_transaction_from_the_first_statement() {
        let mut s = SessionState::default();
        // SET autocommit = 0: status without AUTOCOMMIT, nothing run yet.
        s.apply(&[], Some(0), true, Some("SET autocommit = 0"));
        assert!(s.autocommit_off && !s.in_transaction);
        // A read that touched no table loses nothing.
        s.apply(&[], Some(0), false, Some("SELECT 1"));
        assert!(!s.in_transaction);
        // A write the server does not flag (a non-transactional table) still counts.
        s.apply(&[], Some(0), true, Some("INSERT INTO myisam_t VALUES (1)"));
        assert!(s.in_transaction);
        s.apply(&[], Some(0), true, Some("COMMIT"));
        assert!(!s.in_transaction);
        s.apply(&[], Some(1), true, Some("INSERT INTO t VALUES (1)"));
        assert!(s.in_transaction);
        s.apply(&[], Some(1), true, Some("ROLLBACK TO SAVEPOINT a"));
        assert!(s.in_transaction);
        s.apply(&[], Some(0), true, Some("rollback work"));
        assert!(!s.in_transaction);
        // Autocommit back on: nothing open.
        s.apply(&[], Some(2), true, Some("SET autocommit = 1"));
        assert!(!s.in_transaction && !s.autocommit_off);
    }
}
