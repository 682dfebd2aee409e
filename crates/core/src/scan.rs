//! Scanning a whole pasted log: every error found, repeats grouped, each diagnosed.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cause::{Cause, Retry};
use crate::classify::Diagnosis;
use crate::patterns::{match_text, Context};

/// The largest input [`scan_bytes`] accepts: 16 MiB. Pasted logs are far smaller; a larger
/// input is almost certainly a mistake (a binary, a whole log directory), and scanning it
/// would take seconds.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// How many lines after a finding a continuation line (a Java "The last packet …" line, a
/// crash banner's next line) may come and still belong to it.
const CONTEXT_WINDOW: usize = 4;

/// How many line numbers a [`Finding`] lists; `count` still counts them all.
const MAX_LINE_NUMBERS: usize = 100;

/// How many characters of the example line a [`Finding`] keeps.
const MAX_EXAMPLE_CHARS: usize = 400;

/// Why an input could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Nothing but whitespace.
    #[error("the input is empty")]
    Empty,
    /// A NUL byte: this is a binary file, not a log.
    #[error("the input looks binary (a NUL byte at offset {offset}); paste a text log")]
    Binary {
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// Too much of the input is not UTF-8 text.
    #[error("the input is not UTF-8 text (invalid byte at offset {offset})")]
    NotText {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// Larger than [`MAX_INPUT_BYTES`].
    #[error("the input is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The input's size in bytes.
        size: usize,
        /// The limit, [`MAX_INPUT_BYTES`].
        limit: usize,
    },
}

/// The result of scanning a log: one [`Finding`] per distinct error.
///
/// JSON field names are stable: `findings`, `lines_scanned`. An input with no recognised
/// error gives an empty `findings` list (not an error): the caller decides what that means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Distinct errors, in the order of their first appearance.
    pub findings: Vec<Finding>,
    /// How many lines the input had.
    pub lines_scanned: usize,
}

/// One distinct error, with every line it appeared on.
///
/// Lines with the same cause, error number and kind of message are one finding.
/// JSON field names are stable: `cause`, `title`, `code`, `sqlstate`, `symbol`, `retry`,
/// `count`, `first_line`, `lines`, `example`, `source`, `diagnosis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The most likely cause (the diagnosis's primary cause).
    pub cause: Cause,
    /// The cause in a few words.
    pub title: &'static str,
    /// The MySQL/MariaDB error number, if the lines carried or implied one.
    pub code: Option<u16>,
    /// The SQLSTATE, if the lines carried one.
    pub sqlstate: Option<String>,
    /// The symbol of the error number, such as `CR_SERVER_GONE_ERROR`.
    pub symbol: Option<&'static str>,
    /// What a caller may safely do about the failed statement.
    pub retry: Retry,
    /// How many lines reported this error. A chained exception repeats its message on
    /// several lines (a Python traceback, Java's "Caused by:"), so one event may count more
    /// than once.
    pub count: usize,
    /// The 1-based number of the first line.
    pub first_line: usize,
    /// The 1-based numbers of the lines (the first 100).
    pub lines: Vec<usize>,
    /// The first line, trimmed, with passwords in URLs masked.
    pub example: String,
    /// Which ecosystem prints this kind of line.
    pub source: &'static str,
    /// The full diagnosis.
    pub diagnosis: Diagnosis,
}

/// Scans a pasted log given as bytes. See [`scan`].
pub fn scan_bytes(input: &[u8]) -> Result<Report, InputError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge {
            size: input.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    if let Some(offset) = input.iter().position(|&b| b == 0) {
        return Err(InputError::Binary { offset });
    }
    match std::str::from_utf8(input) {
        Ok(text) => scan(text),
        Err(e) => {
            // A few stray Latin-1 bytes (a server log with a non-ASCII name) are tolerated;
            // a mostly non-UTF-8 input is not a log.
            let text = String::from_utf8_lossy(input);
            let bad = text.chars().filter(|&c| c == '\u{FFFD}').count();
            if bad * 100 > text.chars().count() {
                return Err(InputError::NotText {
                    offset: e.valid_up_to(),
                });
            }
            scan(&text)
        }
    }
}

/// Scans a pasted log — many lines, stack traces, several ecosystems mixed — for every
/// MySQL/MariaDB connection error it contains, groups repeats and diagnoses each.
pub fn scan(text: &str) -> Result<Report, InputError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge {
            size: text.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    if let Some(offset) = text.bytes().position(|b| b == 0) {
        return Err(InputError::Binary { offset });
    }
    if text.trim().is_empty() {
        return Err(InputError::Empty);
    }

    // Only the latest occurrence can still change (a continuation line within
    // CONTEXT_WINDOW refines or absorbs into it); every earlier one is folded into its
    // finding at once. Keeping a diagnosis per matching line instead made memory grow with
    // the number of error lines: about 27 times the input for a log of 2006 lines.
    let mut groups = Grouping::default();
    let mut pending: Option<Occurrence<'_>> = None;
    let mut lines_scanned = 0;
    for (index, line) in text.lines().enumerate() {
        lines_scanned = index + 1;
        let Some(hit) = match_text(line) else {
            continue;
        };
        let near = pending.as_mut().filter(|o| o.line + CONTEXT_WINDOW > index);
        match (hit.context, near) {
            (Context::Absorb, Some(_)) => continue,
            (Context::Refine, Some(prev)) => {
                prev.diagnosis = hit.diagnosis;
                continue;
            }
            _ => {}
        }
        let next = Occurrence {
            line: index + 1,
            text: line,
            group: hit.group,
            source: hit.source,
            diagnosis: hit.diagnosis,
        };
        if let Some(done) = pending.replace(next) {
            groups.add(done);
        }
    }
    if let Some(done) = pending {
        groups.add(done);
    }
    Ok(Report {
        findings: groups.findings,
        lines_scanned,
    })
}

/// One recognised line, until no later line can refine it.
struct Occurrence<'a> {
    line: usize,
    text: &'a str,
    group: &'static str,
    source: &'static str,
    diagnosis: Diagnosis,
}

/// Findings in order of first appearance, and where each key's finding is.
#[derive(Default)]
struct Grouping {
    findings: Vec<Finding>,
    by_key: HashMap<(Cause, Option<u16>, Retry, &'static str), usize>,
}

impl Grouping {
    /// Counts `o` in its finding, or starts one; a repeat's diagnosis is dropped here.
    fn add(&mut self, o: Occurrence<'_>) {
        let key = (
            o.diagnosis.primary(),
            o.diagnosis.code,
            o.diagnosis.retry,
            o.group,
        );
        match self.by_key.get(&key) {
            Some(&i) => {
                let f = &mut self.findings[i];
                f.count += 1;
                if f.lines.len() < MAX_LINE_NUMBERS {
                    f.lines.push(o.line);
                }
            }
            None => {
                self.by_key.insert(key, self.findings.len());
                let d = o.diagnosis;
                self.findings.push(Finding {
                    cause: d.primary(),
                    title: d.primary().title(),
                    code: d.code,
                    sqlstate: d.sqlstate.clone(),
                    symbol: d.symbol,
                    retry: d.retry,
                    count: 1,
                    first_line: o.line,
                    lines: vec![o.line],
                    example: example(o.text),
                    source: o.source,
                    diagnosis: d,
                });
            }
        }
    }
}

/// The line as shown in a report: trimmed, shortened, passwords in URLs masked.
fn example(line: &str) -> String {
    let line = mask_passwords(line.trim());
    if line.chars().count() <= MAX_EXAMPLE_CHARS {
        return line;
    }
    let mut s: String = line.chars().take(MAX_EXAMPLE_CHARS).collect();
    s.push('…');
    s
}

/// Masks `user:password@` in URLs and `password=…` pairs.
fn mask_passwords(line: &str) -> String {
    use std::sync::LazyLock;
    static URL: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"(://[^/:@\s]+:)[^@\s]+@").expect("valid regex"));
    static PAIR: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r#"(?i)\b((?:password|passwd|pwd)\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&)]+)"#,
        )
        .expect("valid regex")
    });
    let line = URL.replace_all(line, "${1}***@");
    PAIR.replace_all(&line, "${1}***").into_owned()
}

/// Retry advice in words.
fn retry_words(retry: Retry) -> &'static str {
    match retry {
        Retry::SafeToRetry => "safe to retry: nothing reached the server",
        Retry::ReconnectThenRetry => "open a new connection, then retry: the statement never ran",
        Retry::RetryIfIdempotent => {
            "retry only if the statement is idempotent: the server may have run it"
        }
        Retry::RetryTransaction => "rerun the whole transaction from its start",
        Retry::DoNotRetry => "do not retry: it fails the same way until the cause is fixed",
        #[allow(unreachable_patterns)]
        _ => "see the explanation",
    }
}

fn code_label(f: &Finding) -> Option<String> {
    let code = f.code?;
    let mut s = code.to_string();
    if let Some(state) = &f.sqlstate {
        let _ = write!(s, " ({state})");
    }
    if let Some(sym) = f.symbol {
        let _ = write!(s, " {sym}");
    }
    Some(s)
}

fn lines_label(f: &Finding) -> String {
    let shown: Vec<String> = f.lines.iter().map(usize::to_string).collect();
    let more = if f.count > f.lines.len() { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

impl Report {
    /// Whether no error was recognised.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// Human-readable text; `color` adds ANSI colours (the caller decides: a terminal,
    /// and no `NO_COLOR`).
    pub fn render_text(&self, color: bool) -> String {
        let (bold, dim, red, green, yellow, reset) = if color {
            (
                "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m",
            )
        } else {
            ("", "", "", "", "", "")
        };
        let mut out = String::new();
        if self.findings.is_empty() {
            let _ = writeln!(
                out,
                "No MySQL/MariaDB connection error recognised in {} line(s).",
                self.lines_scanned
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{bold}{} error(s) found{reset} in {} line(s).",
            self.findings.len(),
            self.lines_scanned
        );
        for (i, f) in self.findings.iter().enumerate() {
            let d = &f.diagnosis;
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{bold}{}. {}{reset} [{}]",
                i + 1,
                f.title,
                f.cause.as_str()
            );
            if let Some(code) = code_label(f) {
                let _ = writeln!(out, "   code:   {code}");
            }
            let times = if f.count == 1 { "time" } else { "times" };
            let _ = writeln!(
                out,
                "   seen:   {} {times}, line {} {dim}({}){reset}",
                f.count,
                lines_label(f),
                f.source
            );
            let _ = writeln!(out, "   {dim}> {}{reset}", f.example);
            let retry_color = match f.retry {
                Retry::SafeToRetry | Retry::ReconnectThenRetry => green,
                Retry::DoNotRetry => red,
                _ => yellow,
            };
            let _ = writeln!(
                out,
                "   retry:  {retry_color}{}{reset} ({})",
                retry_words(f.retry),
                f.retry.as_str()
            );
            if d.causes.len() > 1 {
                let ranked: Vec<String> = d
                    .causes
                    .iter()
                    .map(|c| format!("{} {:.0}%", c.cause.as_str(), c.likelihood * 100.0))
                    .collect();
                let _ = writeln!(out, "   causes: {}", ranked.join(", "));
            }
            let _ = writeln!(out, "   why:    {}", d.explanation);
            if !d.fixes.is_empty() {
                let _ = writeln!(out, "   fixes:");
                for fix in &d.fixes {
                    let _ = writeln!(out, "     - {fix}");
                }
            }
            if !d.tell_apart.is_empty() {
                let _ = writeln!(out, "   tell apart:");
                for fact in &d.tell_apart {
                    let _ = writeln!(out, "     - {fact}");
                }
            }
        }
        out
    }

    /// Markdown, for pasting into a ticket.
    pub fn render_markdown(&self) -> String {
        let mut out = String::from("# goneaway explain\n\n");
        if self.findings.is_empty() {
            let _ = writeln!(
                out,
                "No MySQL/MariaDB connection error recognised in {} line(s).",
                self.lines_scanned
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{} error(s) found in {} line(s).\n",
            self.findings.len(),
            self.lines_scanned
        );
        let _ = writeln!(out, "| # | cause | code | count | retry |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for (i, f) in self.findings.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | `{}` |",
                i + 1,
                f.cause.as_str(),
                code_label(f).unwrap_or_else(|| "–".into()),
                f.count,
                f.retry.as_str()
            );
        }
        for (i, f) in self.findings.iter().enumerate() {
            let d = &f.diagnosis;
            let _ = writeln!(
                out,
                "\n## {}. {} (`{}`)\n",
                i + 1,
                f.title,
                f.cause.as_str()
            );
            if let Some(code) = code_label(f) {
                let _ = writeln!(out, "- **Code:** {code}");
            }
            let _ = writeln!(
                out,
                "- **Seen:** {} time(s), line {} ({})",
                f.count,
                lines_label(f),
                f.source
            );
            let _ = writeln!(
                out,
                "- **Retry:** {} (`{}`)",
                retry_words(f.retry),
                f.retry.as_str()
            );
            if d.causes.len() > 1 {
                let ranked: Vec<String> = d
                    .causes
                    .iter()
                    .map(|c| format!("`{}` {:.0}%", c.cause.as_str(), c.likelihood * 100.0))
                    .collect();
                let _ = writeln!(out, "- **Candidate causes:** {}", ranked.join(", "));
            }
            let fence = if f.example.contains("```") {
                "~~~"
            } else {
                "```"
            };
            let _ = writeln!(out, "\n{fence}\n{}\n{fence}\n", f.example);
            let _ = writeln!(out, "{}\n", d.explanation);
            if !d.fixes.is_empty() {
                let _ = writeln!(out, "**Fixes**\n");
                for fix in &d.fixes {
                    let _ = writeln!(out, "- {fix}");
                }
                out.push('\n');
            }
            if !d.tell_apart.is_empty() {
                let _ = writeln!(out, "**How to tell the causes apart**\n");
                for fact in &d.tell_apart {
                    let _ = writeln!(out, "- {fact}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_passwords("mysql://app:s3cret@db:3306/x password=hunter2"),
            "mysql://app:***@db:3306/x password=***"
        );
    }

    #[test]
    fn long_examples_are_cut() {
        let long = "x".repeat(1000);
        assert!(example(&long).chars().count() <= MAX_EXAMPLE_CHARS + 1);
    }
}
