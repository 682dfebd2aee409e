//! Telling a read-only statement from one that may change something, conservatively.
//!
//! The pool and the proxy both ask this before replaying a statement whose outcome is
//! unknown: only a statement that cannot have changed anything may run twice.

/// Whether `sql` only reads, so running it twice cannot change anything.
///
/// It must start (after comments and opening parentheses) with `SELECT`, `SHOW`,
/// `DESCRIBE`, `DESC`, `EXPLAIN`, `HELP` or `CHECKSUM`; be one statement (a second one
/// after a `;` could be anything); write no file or variable (`INTO`, `:=`); take no lock
/// (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`, `GET_LOCK`, `RELEASE_LOCK`) and move no
/// sequence (`NEXTVAL`, `SETVAL`, `NEXT VALUE`). When in doubt it answers `false`.
///
/// A `SELECT` that calls a stored function which writes cannot be told apart from one that
/// does not; callers that run such statements must not rely on this.
///
/// ```
/// use goneaway_core::sql::is_read_only;
///
/// assert!(is_read_only("/* app */ SELECT name FROM users WHERE id = ?"));
/// assert!(!is_read_only("SELECT * FROM jobs FOR UPDATE"));
/// assert!(!is_read_only("SELECT 1; DELETE FROM jobs"));
/// ```
pub fn is_read_only(sql: &str) -> bool {
    let body = strip_leading(sql);
    let first = body
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if !matches!(
        first.as_str(),
        "SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "HELP" | "CHECKSUM"
    ) {
        return false;
    }
    let upper = body.trim_end().trim_end_matches(';').to_ascii_uppercase();
    if upper.contains(';') || upper.contains(":=") {
        return false;
    }
    const SIDE_EFFECTS: [&str; 11] = [
        "INTO",
        "FOR UPDATE",
        "FOR SHARE",
        "LOCK IN SHARE MODE",
        "GET_LOCK",
        "RELEASE_LOCK",
        "RELEASE_ALL_LOCKS",
        "NEXTVAL",
        "NEXT VALUE",
        "SETVAL",
        "LASTVAL",
    ];
    !SIDE_EFFECTS.iter().any(|w| contains_word(&upper, w))
}

/// Whether `sql` ends its `UPDATE`/`DELETE` with a `LIMIT n` (or `LIMIT ?`) clause of its
/// own: the word `LIMIT` as SQL, outside string literals, quoted identifiers and
/// comments, outside parentheses (a subquery's `LIMIT` bounds the subquery, not the
/// change), followed by a number or a placeholder.
///
/// ```
/// use goneaway_core::sql::has_limit_clause;
///
/// assert!(has_limit_clause("DELETE FROM log WHERE at < ? LIMIT 1000"));
/// assert!(!has_limit_clause("DELETE FROM log WHERE grp = 3 OR 'LIMIT' = ?"));
/// assert!(!has_limit_clause("DELETE FROM t WHERE id IN (SELECT id FROM u LIMIT 5)"));
/// ```
pub fn has_limit_clause(sql: &str) -> bool {
    let tokens = tokens(sql);
    tokens.windows(2).any(|w| {
        let (limit, value) = (&w[0], &w[1]);
        limit.depth == 0
            && limit.text.eq_ignore_ascii_case("LIMIT")
            && (value.text == "?" || value.text.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// One token of SQL outside literals and comments, with its parenthesis depth.
#[derive(Debug, PartialEq, Eq)]
struct Token<'a> {
    text: &'a str,
    depth: u32,
}

/// The words, numbers and `?` placeholders of `sql`, skipping `'…'` and `"…"` literals,
/// `` `…` `` identifiers (all with doubled-quote and backslash escapes) and `/* … */`,
/// `-- …` and `# …` comments. Other punctuation only moves the depth or separates.
fn tokens(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\\' && c != b'`' {
                        i += 2;
                    } else if bytes[i] == c {
                        // A doubled quote stands for itself.
                        if bytes.get(i + 1) == Some(&c) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |j| i + 2 + j + 2);
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |j| i + j + 1);
            }
            b'#' => {
                i = sql[i..].find('\n').map_or(bytes.len(), |j| i + j + 1);
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'?' => {
                out.push(Token {
                    text: &sql[i..i + 1],
                    depth,
                });
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                out.push(Token {
                    text: &sql[start..i],
                    depth,
                });
            }
            _ => i += 1,
        }
    }
    out
}

/// Skips whitespace, `(`, and `/* … */`, `-- …` and `# …` comments at the start.
fn strip_leading(mut s: &str) -> &str {
    loop {
        let t = s.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(rest) = t.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else if t.starts_with("--") || t.starts_with('#') {
            s = t.find('\n').map_or("", |i| &t[i + 1..]);
        } else {
            return t;
        }
    }
}

/// Whether `word` stands in `upper` as a whole word (not inside an identifier).
fn contains_word(upper: &str, word: &str) -> bool {
    upper.match_indices(word).any(|(i, _)| {
        let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !is_ident(upper[..i].chars().next_back())
            && !is_ident(upper[i + word.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::{has_limit_clause, is_read_only};

    #[test]
    fn limit_clause_table() {
        let cases = [
            ("DELETE FROM t WHERE a < 5 LIMIT 1000", true),
            ("update t set done = 1 where done = 0 limit ?", true),
            ("DELETE FROM t LIMIT 10;", true),
            ("DELETE FROM t WHERE grp = 3 OR 'LIMIT' = ?", false),
            ("DELETE FROM t WHERE grp = 3 OR \"LIMIT 5\" = ?", false),
            ("DELETE FROM `limit` WHERE x = 1", false),
            ("DELETE FROM t WHERE v = 'it''s LIMIT 5'", false),
            ("DELETE FROM t WHERE v = 'a\\' LIMIT 5'", false),
            ("DELETE FROM t /* LIMIT 5 */ WHERE x = 1", false),
            ("DELETE FROM t WHERE x = 1 -- LIMIT 5", false),
            ("DELETE FROM t WHERE x = 1 # LIMIT 5", false),
            (
                "DELETE FROM t WHERE id IN (SELECT id FROM u LIMIT 5)",
                false,
            ),
            ("DELETE FROM t WHERE limit_col = 1", false),
            ("DELETE FROM t LIMIT", false),
            ("", false),
        ];
        for (sql, expected) in cases {
            assert_eq!(has_limit_clause(sql), expected, "{sql}");
        }
    }

    #[test]
    fn read_only_table() {
        let cases = [
            ("SELECT 1", true),
            ("  select * from t where id = ?", true),
            ("/* app */ SELECT a FROM t", true),
            ("  /* hi */ select * from t where id = 1", true),
            ("-- c\nSHOW VARIABLES", true),
            ("(SELECT 1) UNION (SELECT 2)", true),
            ("EXPLAIN SELECT 1", true),
            ("SELECT 1;", true),
            ("SELECT SLEEP(1)", true),
            ("SELECT into_count FROM t", true),
            ("SELECT a INTO @x FROM t", false),
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", false),
            ("SELECT GET_LOCK('x', 1)", false),
            ("SELECT * FROM t FOR UPDATE", false),
            ("SELECT * FROM t LOCK IN SHARE MODE", false),
            ("SELECT @a := 1", false),
            ("SELECT NEXTVAL(s)", false),
            ("SELECT 1; DELETE FROM t", false),
            ("INSERT INTO t VALUES (1)", false),
            ("UPDATE t SET a = 1", false),
            ("WITH x AS (SELECT 1) DELETE FROM t", false),
            ("", false),
        ];
        for (sql, expected) in cases {
            assert_eq!(is_read_only(sql), expected, "{sql}");
        }
    }
}
