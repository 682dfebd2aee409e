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
/// sequence (`NEXTVAL`, `SETVAL`, `NEXT VALUE`); and call no function but a built-in one
/// (see [`calls_only_builtins`]): a stored function may write, and a `SELECT bump()` run
/// twice would write twice. When in doubt it answers `false`.
///
/// What a view or a trigger does is not in the text: a `SELECT` from a view that calls a
/// writing stored function is still taken for a read.
///
/// ```
/// use goneaway_core::sql::is_read_only;
///
/// assert!(is_read_only("/* app */ SELECT name FROM users WHERE id = ?"));
/// assert!(!is_read_only("SELECT * FROM jobs FOR UPDATE"));
/// assert!(!is_read_only("SELECT 1; DELETE FROM jobs"));
/// assert!(!is_read_only("SELECT app.next_invoice_number()"));
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
    !SIDE_EFFECTS.iter().any(|w| contains_word(&upper, w)) && calls_only_builtins(body)
}

/// Whether every call in `sql` is of a built-in function (or of a keyword a parenthesis
/// may follow: `IN (…)`, `OVER (…)`, `CAST(x AS DECIMAL(10, 2))`). A call of any other
/// name, a qualified one (`app.f(…)`) or a quoted one (`` `f`(…) ``) is taken for a stored
/// function, which may write: unknown names count as stored functions, so a mistake costs
/// a replay or a replica read, never a write run twice. Literals and comments are skipped;
/// executable comments (`/*! … */`, `/*M! … */`) are read, since the server runs them.
///
/// ```
/// use goneaway_core::sql::calls_only_builtins;
///
/// assert!(calls_only_builtins("SELECT COUNT(*), IFNULL(MAX(v), 0) FROM t WHERE id IN (1, 2)"));
/// assert!(calls_only_builtins("SELECT 'bump()' FROM t"));
/// assert!(!calls_only_builtins("SELECT bump()"));
/// assert!(!calls_only_builtins("SELECT v FROM t WHERE app.allowed (v)"));
/// ```
pub fn calls_only_builtins(sql: &str) -> bool {
    let mut before: Option<Token<'_>> = None;
    let mut callee: Option<Token<'_>> = None;
    for token in tokens(sql) {
        if token.kind == TokenKind::Punct && token.text == "(" {
            if let Some(name) = callee.take() {
                let qualified = before
                    .as_ref()
                    .is_some_and(|b| b.kind == TokenKind::Punct && b.text == ".");
                let builtin = name.kind == TokenKind::Word
                    && !qualified
                    && BUILTIN_CALLS
                        .iter()
                        .chain(CONNECTION_HISTORY_CALLS)
                        .any(|b| b.eq_ignore_ascii_case(name.text));
                if !builtin {
                    return false;
                }
            }
        } else if matches!(token.kind, TokenKind::Word | TokenKind::QuotedIdentifier) {
            before = callee.replace(token);
            continue;
        } else {
            callee = None;
        }
        before = Some(token);
    }
    true
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
    let tokens: Vec<Token<'_>> = tokens(sql).collect();
    tokens.windows(2).any(|w| {
        let (limit, value) = (&w[0], &w[1]);
        limit.depth == 0
            && limit.kind == TokenKind::Word
            && limit.text.eq_ignore_ascii_case("LIMIT")
            && (value.kind == TokenKind::Placeholder
                || (value.kind == TokenKind::Word
                    && value.text.bytes().all(|b| b.is_ascii_digit())))
    })
}

/// One token of SQL, with the parenthesis depth it stands at (a `(` at the depth outside
/// it, the tokens inside one deeper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// The token as written; a quoted identifier or literal without its quotes.
    pub text: &'a str,
    /// What it is.
    pub kind: TokenKind,
    /// How many parentheses it stands in.
    pub depth: u32,
}

/// The kinds of [`Token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword, an unquoted identifier or a number.
    Word,
    /// A `` `…` `` identifier.
    QuotedIdentifier,
    /// A `'…'` or `"…"` literal.
    Literal,
    /// A `?` placeholder.
    Placeholder,
    /// Any other character but whitespace: `(`, `)`, `.`, `,`, `=`, `@`, `:`…
    Punct,
}

/// The tokens of `sql`: words and numbers, `` `…` `` identifiers, `'…'` and `"…"` literals
/// (all with doubled-quote and backslash escapes), `?` placeholders and single punctuation
/// characters. Whitespace and `/* … */`, `-- …` and `# …` comments are skipped; the
/// content of an executable comment (`/*! … */`, `/*M!100100 … */`) is read, since the
/// server runs it.
pub fn tokens(sql: &str) -> impl Iterator<Item = Token<'_>> {
    Lexer {
        sql,
        at: 0,
        depth: 0,
    }
}

struct Lexer<'a> {
    sql: &'a str,
    at: usize,
    depth: u32,
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let sql = self.sql;
        let bytes = sql.as_bytes();
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        loop {
            let i = self.at;
            let c = *bytes.get(i)?;
            let token = |kind, start: usize, end: usize, depth| Token {
                text: &sql[start..end],
                kind,
                depth,
            };
            match c {
                b'\'' | b'"' | b'`' => {
                    let mut j = i + 1;
                    while j < bytes.len() {
                        if bytes[j] == b'\\' && c != b'`' {
                            j += 2;
                        } else if bytes[j] == c {
                            // A doubled quote stands for itself.
                            if bytes.get(j + 1) == Some(&c) {
                                j += 2;
                            } else {
                                break;
                            }
                        } else {
                            j += 1;
                        }
                    }
                    let end = j.min(bytes.len());
                    self.at = (j + 1).min(bytes.len());
                    let kind = if c == b'`' {
                        TokenKind::QuotedIdentifier
                    } else {
                        TokenKind::Literal
                    };
                    return Some(token(kind, i + 1, end, self.depth));
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    let rest = &sql[i + 2..];
                    let marker = if rest.starts_with('!') {
                        1
                    } else if rest.starts_with("M!") {
                        2
                    } else {
                        0
                    };
                    if marker > 0 {
                        // An executable comment: its version, then code; its `*/` is
                        // skipped below.
                        let digits = rest[marker..]
                            .bytes()
                            .take_while(u8::is_ascii_digit)
                            .count();
                        self.at = i + 2 + marker + digits;
                    } else {
                        self.at = rest.find("*/").map_or(bytes.len(), |j| i + 2 + j + 2);
                    }
                }
                b'*' if bytes.get(i + 1) == Some(&b'/') => self.at = i + 2,
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    self.at = sql[i..].find('\n').map_or(bytes.len(), |j| i + j + 1);
                }
                b'#' => {
                    self.at = sql[i..].find('\n').map_or(bytes.len(), |j| i + j + 1);
                }
                c if c.is_ascii_whitespace() => self.at = i + 1,
                c if is_word(c) => {
                    let end = bytes[i..]
                        .iter()
                        .position(|&b| !is_word(b))
                        .map_or(bytes.len(), |n| i + n);
                    self.at = end;
                    return Some(token(TokenKind::Word, i, end, self.depth));
                }
                _ => {
                    self.at = i + 1;
                    let depth = self.depth;
                    let kind = match c {
                        b'?' => TokenKind::Placeholder,
                        b'(' => {
                            self.depth += 1;
                            TokenKind::Punct
                        }
                        b')' => {
                            self.depth = self.depth.saturating_sub(1);
                            return Some(token(TokenKind::Punct, i, i + 1, self.depth));
                        }
                        _ => TokenKind::Punct,
                    };
                    return Some(token(kind, i, i + 1, depth));
                }
            }
        }
    }
}

/// Built-in functions that read the connection's own history or wait on it: read-only, but
/// not the same on every connection (`LAST_INSERT_ID()`, `FOUND_ROWS()`, named locks held,
/// GTID waits). They count as built-ins for [`calls_only_builtins`]; a caller that moves
/// reads between connections (the proxy's reads on replicas) keeps them where they began.
pub const CONNECTION_HISTORY_CALLS: &[&str] = &[
    "last_insert_id",
    "found_rows",
    "row_count",
    "connection_id",
    "is_used_lock",
    "is_free_lock",
    "master_gtid_wait",
    "master_pos_wait",
    "binlog_gtid_pos",
];

/// Built-in functions, and keywords a parenthesis may follow, none of which writes (the
/// lock and sequence functions are refused by [`is_read_only`] on their own). Names not
/// here count as stored functions (see [`calls_only_builtins`]).
const BUILTIN_CALLS: &[&str] = &[
    // Keywords.
    "select",
    "index",
    "key",
    "straight_join",
    "columns",
    "path",
    "nested",
    "returns",
    // Types, in CAST(… AS DECIMAL(10, 2)) and the like.
    "decimal",
    "dec",
    "numeric",
    "int",
    "integer",
    "signed",
    "unsigned",
    "float",
    "double",
    "real",
    "varchar",
    "nchar",
    "varbinary",
    "datetime",
    "json",
    "in",
    "exists",
    "and",
    "or",
    "not",
    "on",
    "using",
    "from",
    "join",
    "where",
    "values",
    "over",
    "as",
    "any",
    "all",
    "some",
    "having",
    "when",
    "then",
    "else",
    "by",
    "union",
    "row",
    "with",
    "interval",
    "match",
    "against",
    "between",
    "is",
    "like",
    "xor",
    "div",
    "case",
    "distinct",
    "limit",
    "offset",
    "group",
    "order",
    "partition",
    "lateral",
    "intersect",
    "except",
    "escape",
    "rlike",
    "regexp",
    "to",
    "for",
    // Aggregates and windows.
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "group_concat",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var_pop",
    "var_samp",
    "variance",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_arrayagg",
    "json_objectagg",
    "row_number",
    "rank",
    "dense_rank",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "percent_rank",
    "cume_dist",
    // Strings.
    "concat",
    "concat_ws",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "lower",
    "upper",
    "lcase",
    "ucase",
    "substring",
    "substr",
    "substring_index",
    "left",
    "right",
    "trim",
    "ltrim",
    "rtrim",
    "lpad",
    "rpad",
    "replace",
    "reverse",
    "repeat",
    "instr",
    "locate",
    "position",
    "format",
    "hex",
    "unhex",
    "md5",
    "sha1",
    "sha2",
    "crc32",
    "ascii",
    "ord",
    "char",
    "space",
    "strcmp",
    "soundex",
    "elt",
    "field",
    "find_in_set",
    "quote",
    "insert",
    "mid",
    "regexp_replace",
    "regexp_substr",
    "regexp_instr",
    "from_base64",
    "to_base64",
    "weight_string",
    "natural_sort_key",
    // Numbers.
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "truncate",
    "mod",
    "pow",
    "power",
    "sqrt",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "sign",
    "rand",
    "pi",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "cot",
    "degrees",
    "radians",
    "greatest",
    "least",
    "conv",
    "bin",
    "oct",
    "crc32c",
    // Dates and times.
    "now",
    "curdate",
    "curtime",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "sysdate",
    "date",
    "time",
    "timestamp",
    "year",
    "month",
    "day",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "hour",
    "minute",
    "second",
    "week",
    "weekday",
    "weekofyear",
    "yearweek",
    "date_add",
    "date_sub",
    "adddate",
    "subdate",
    "addtime",
    "subtime",
    "datediff",
    "timediff",
    "timestampdiff",
    "timestampadd",
    "date_format",
    "time_format",
    "str_to_date",
    "unix_timestamp",
    "from_unixtime",
    "utc_timestamp",
    "utc_date",
    "utc_time",
    "last_day",
    "makedate",
    "maketime",
    "extract",
    "monthname",
    "dayname",
    "quarter",
    "to_days",
    "from_days",
    "to_seconds",
    "sec_to_time",
    "time_to_sec",
    "convert_tz",
    "microsecond",
    "period_add",
    "period_diff",
    // Control flow, types.
    "if",
    "ifnull",
    "nullif",
    "coalesce",
    "isnull",
    "cast",
    "convert",
    "binary",
    "nvl",
    "nvl2",
    "decode_oracle",
    // JSON.
    "json_extract",
    "json_value",
    "json_unquote",
    "json_object",
    "json_array",
    "json_contains",
    "json_contains_path",
    "json_length",
    "json_keys",
    "json_valid",
    "json_query",
    "json_search",
    "json_set",
    "json_insert",
    "json_replace",
    "json_remove",
    "json_merge",
    "json_merge_patch",
    "json_merge_preserve",
    "json_type",
    "json_depth",
    "json_exists",
    "json_table",
    "json_quote",
    "json_compact",
    "json_detailed",
    "json_array_append",
    "json_array_insert",
    "json_overlaps",
    // (And CONNECTION_HISTORY_CALLS.)
    "sleep",
    "benchmark",
    // Other.
    "uuid",
    "sys_guid",
    "current_role",
    "password",
    "random_bytes",
    "sformat",
    "bit_count",
    "get_format",
    "column_get",
    "column_json",
    "column_exists",
    "column_list",
    "value",
    "st_x",
    "st_y",
    "st_srid",
    "st_asgeojson",
    "st_geomfromgeojson",
    "st_intersects",
    "st_buffer",
    "st_length",
    "st_area",
    "uuid_short",
    "inet_aton",
    "inet_ntoa",
    "inet6_aton",
    "inet6_ntoa",
    "is_ipv4",
    "is_ipv6",
    "database",
    "schema",
    "user",
    "current_user",
    "session_user",
    "system_user",
    "version",
    "charset",
    "collation",
    "coercibility",
    "default",
    "compress",
    "uncompress",
    "uncompressed_length",
    "aes_encrypt",
    "aes_decrypt",
    "point",
    "st_distance",
    "st_contains",
    "st_within",
    "st_astext",
    "st_geomfromtext",
];

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
    use super::{calls_only_builtins, has_limit_clause, is_read_only, tokens, TokenKind};

    #[test]
    fn calls_table() {
        let cases = [
            ("SELECT c FROM sbtest1 WHERE id = 10", true),
            (
                "SELECT NOW(), DATABASE(), CAST(v AS DECIMAL(10, 2)) FROM t",
                true,
            ),
            (
                "SELECT * FROM t FORCE INDEX (PRIMARY) WHERE id IN (SELECT 1)",
                true,
            ),
            ("SELECT CONCAT(a, '`x`(') , ifnull(b, 0) FROM t", true),
            ("SELECT 'f(x)', \"g(y)\" FROM t -- h(z)\n", true),
            ("SELECT v /* f(x) */ FROM t # g(y)", true),
            ("SELECT COUNT(*) OVER (PARTITION BY a) FROM t", true),
            ("SELECT bump()", false),
            ("SELECT app.bump(1) FROM t", false),
            ("SELECT `bump` (1)", false),
            ("SELECT `count`(1)", false),
            ("SELECT COUNT(*) FROM t WHERE v = my_func (id)", false),
            ("SELECT 1 /*! + bump() */", false),
            ("SELECT 1 /*M!100100 + bump() */", false),
            ("SELECT 1 FROM t WHERE x = 'it''s' AND f(x)", false),
        ];
        for (sql, expected) in cases {
            assert_eq!(calls_only_builtins(sql), expected, "{sql}");
        }
    }

    #[test]
    fn tokens_of_literals_identifiers_and_punctuation() {
        let got: Vec<(&str, TokenKind, u32)> =
            tokens("SELECT `a``b`, 'it''s' FROM t WHERE (x = ?) -- c")
                .map(|t| (t.text, t.kind, t.depth))
                .collect();
        use TokenKind::*;
        assert_eq!(
            got,
            [
                ("SELECT", Word, 0),
                ("a``b", QuotedIdentifier, 0),
                (",", Punct, 0),
                ("it''s", Literal, 0),
                ("FROM", Word, 0),
                ("t", Word, 0),
                ("WHERE", Word, 0),
                ("(", Punct, 0),
                ("x", Word, 1),
                ("=", Punct, 1),
                ("?", Placeholder, 1),
                (")", Punct, 0),
            ]
        );
        // An unterminated literal ends the text; nothing panics.
        assert_eq!(tokens("SELECT 'abc").count(), 2);
        assert_eq!(tokens("SELECT 'ab\\").count(), 2);
        assert_eq!(tokens("SELECT é(1)").count(), 5);
    }

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
            // A stored function may write: run twice, it would write twice.
            ("SELECT bump()", false),
            ("SELECT id FROM t WHERE app.allowed(id)", false),
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
