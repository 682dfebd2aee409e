//! Telling a read-only statement from one that changes data, conservatively.

/// Whether `sql` only reads: it starts with `SELECT`, `SHOW`, `DESCRIBE`, `DESC`,
/// `EXPLAIN` or `DO`-less read keywords, and writes no file or variable (`INTO`), takes no
/// lock that outlives it (`GET_LOCK`) and calls no sequence (`NEXTVAL`).
///
/// A `SELECT` that calls a stored function which writes cannot be told apart; mark such
/// statements yourself by not relying on this (they are rare, and the docs say so).
pub(crate) fn is_read_only(sql: &str) -> bool {
    let body = strip_leading(sql);
    let first: String = body
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if !matches!(
        first.as_str(),
        "SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN"
    ) {
        return false;
    }
    let upper = body.to_ascii_uppercase();
    !["INTO", "GET_LOCK", "NEXTVAL", "NEXT VALUE", "SETVAL"]
        .iter()
        .any(|w| contains_word(&upper, w))
}

/// Skips whitespace, `(`, and `/* … */` and `-- …`/`# …` comments at the start.
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

fn contains_word(upper: &str, word: &str) -> bool {
    upper.match_indices(word).any(|(i, _)| {
        let before = upper[..i].chars().next_back();
        let after = upper[i + word.len()..].chars().next();
        let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !is_ident(before) && (word.ends_with('(') || !is_ident(after))
    })
}

#[cfg(test)]
mod tests {
    use super::is_read_only;

    #[test]
    fn read_only_table() {
        let cases = [
            ("SELECT 1", true),
            ("  select * from t where id = ?", true),
            ("/* app */ SELECT a FROM t", true),
            ("-- c\nSHOW VARIABLES", true),
            ("(SELECT 1) UNION (SELECT 2)", true),
            ("EXPLAIN SELECT 1", true),
            ("SELECT a INTO @x FROM t", false),
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", false),
            ("SELECT GET_LOCK('x', 1)", false),
            ("SELECT SLEEP(1)", true),
            ("SELECT into_count FROM t", true),
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
