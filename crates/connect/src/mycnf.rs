//! Option files (`my.cnf`, `~/.my.cnf`): the `[client]` section, as the mysql CLI reads it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ConnectError;

/// The sections goneaway reads, in order; later sections win, as with the mysql CLI where
/// `[client]` applies to every client program and a program's own section refines it.
pub const SECTIONS: [&str; 2] = ["client", "goneaway"];

/// Reads an option file and returns the options of its [`SECTIONS`].
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, ConnectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectError::DefaultsFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&text))
}

/// Parses option-file text and returns the options of its [`SECTIONS`].
///
/// Names are normalised as the server does: `-` and `_` are the same and a `loose-` prefix
/// is dropped. Values may be quoted; a `#` or `;` starts a comment outside quotes.
/// `!include` directives are ignored: a diagnostic tool should not wander the file system.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_section = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('!')
        {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = SECTIONS.contains(&name.trim().to_ascii_lowercase().as_str());
            continue;
        }
        if !in_section {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n.trim(), unquote(v.trim())),
            None => (line, String::new()),
        };
        let mut name = name.to_ascii_lowercase().replace('-', "_");
        if let Some(stripped) = name.strip_prefix("loose_") {
            name = stripped.to_string();
        }
        out.insert(name, value);
    }
    out
}

/// A value without its quotes and trailing comment, escapes resolved.
fn unquote(value: &str) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(q @ ('"' | '\'')) => {
            let mut out = String::new();
            let mut escaped = false;
            for c in chars {
                if escaped {
                    out.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    break;
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => {
            // An unquoted value ends at a comment that follows whitespace.
            let cut = value
                .find(" #")
                .or_else(|| value.find("\t#"))
                .unwrap_or(value.len());
            value[..cut].trim_end().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_section_only() {
        let opts = parse(
            "[mysqld]\nport=1\n[client]\nuser = app\npassword=\"p#ss word\"\nloose-port=3307 # comment\n[mysqldump]\nuser=dump\n",
        );
        assert_eq!(opts.get("user").map(String::as_str), Some("app"));
        assert_eq!(opts.get("password").map(String::as_str), Some("p#ss word"));
        assert_eq!(opts.get("port").map(String::as_str), Some("3307"));
        assert_eq!(opts.len(), 3);
    }
}
