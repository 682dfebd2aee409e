//! Server error logs and kernel logs: read with a bound, then scanned for restarts, crashes,
//! OOM kills and aborted connections, with their times. Each line's cause comes from the core
//! classifier.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use goneaway_core::{classify_text, Cause};
use regex::Regex;
use serde::Serialize;

use crate::time::{format_utc, parse_log_timestamp};

/// How many example lines a group keeps.
const MAX_EXAMPLES: usize = 3;

/// The most of a log the doctor holds: the last 16 MiB of a regular file. A pipe, standard
/// input or a device cannot be tailed, so it must give less. Older lines rarely explain
/// present errors, and a never-rotated log can be gigabytes.
pub const MAX_LOG_BYTES: usize = 16 * 1024 * 1024;

/// How much of the start of a pipe or device decides whether it is text, before the rest is
/// read: an endless device (`/dev/zero`, `/dev/urandom`) is refused after this much.
const SNIFF_BYTES: usize = 64 * 1024;

/// The share of bytes (in percent) that may be NUL, other control characters or not UTF-8
/// in a text log. Real logs have a few (a Latin-1 host name, a run of NULs where a crash cut
/// a block short); binary data has far more (random bytes: about 60%).
const MAX_NON_TEXT_PERCENT: usize = 10;

/// Where a log is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// A file: a regular file is tailed, anything else (a FIFO, a device, a /proc file) is
    /// read like a pipe.
    File(PathBuf),
    /// Standard input (`-` on the command line).
    Stdin,
}

impl LogSource {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: &Path) -> LogSource {
        if arg.as_os_str() == "-" {
            LogSource::Stdin
        } else {
            LogSource::File(arg.to_path_buf())
        }
    }

    /// Whether this reads standard input.
    pub fn is_stdin(&self) -> bool {
        matches!(self, LogSource::Stdin)
    }

    /// The name a report gives it: the path, or `stdin`.
    pub fn name(&self) -> String {
        match self {
            LogSource::File(p) => p.display().to_string(),
            LogSource::Stdin => "stdin".into(),
        }
    }
}

/// A log's text, read by [`read_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogText {
    /// Where it came from: a path or `stdin` ([`LogSource::name`]).
    pub source: String,
    /// The text (at most [`MAX_LOG_BYTES`]; bytes that are not UTF-8 replaced).
    pub text: String,
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogReadError {
    /// Opening or reading failed.
    #[error("cannot read {name}: {error}")]
    Unreadable {
        /// The source's name.
        name: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// A pipe, standard input or a device gave more than [`MAX_LOG_BYTES`].
    #[error(
        "{name} gives more than {limit} bytes (16 MiB), the most the doctor reads from a pipe \
         or a device: pass a regular file (its last 16 MiB are read) or pipe only the recent \
         part (tail -c 16M, journalctl --since)"
    )]
    TooLarge {
        /// The source's name.
        name: String,
        /// The limit, [`MAX_LOG_BYTES`].
        limit: usize,
    },
    /// Mostly binary: NUL bytes, control characters or bytes that are not UTF-8.
    #[error(
        "{name} is not a text log: {percent}% of the {sampled} bytes read are NUL, control \
         characters or not UTF-8"
    )]
    NotText {
        /// The source's name.
        name: String,
        /// The share of bytes that are not text, in percent.
        percent: usize,
        /// How many bytes were judged.
        sampled: usize,
    },
}

impl LogReadError {
    /// Whether the source could not be opened or read at all (rather than read and refused).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, LogReadError::Unreadable { .. })
    }
}

/// Reads a log with a bound on the bytes actually read, whatever the source says of its
/// size: a regular file's last [`MAX_LOG_BYTES`]; from standard input, a pipe or a device at
/// most [`MAX_LOG_BYTES`], or [`LogReadError::TooLarge`] after one byte more. Binary data is
/// refused ([`LogReadError::NotText`]); a pipe or device is judged on its first 64 KiB, before
/// the rest is read.
pub fn read_log(source: &LogSource) -> Result<LogText, LogReadError> {
    // Messages say "standard input"; the report says `stdin`.
    let shown = match source {
        LogSource::File(path) => path.display().to_string(),
        LogSource::Stdin => "standard input".into(),
    };
    let unreadable = |error| LogReadError::Unreadable {
        name: shown.clone(),
        error,
    };
    let file = match source {
        LogSource::File(path) => File::open(path).map_err(unreadable)?,
        // A descriptor of its own, so a redirected file (`< error.log`) is tailed like one.
        LogSource::Stdin => {
            use std::os::fd::AsFd;
            File::from(
                std::io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(unreadable)?,
            )
        }
    };
    let bytes = read_bounded(file, &shown).map_err(|e| match e {
        Bounded::Io(error) => unreadable(error),
        Bounded::Refused(e) => e,
    })?;
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(LogText {
        source: source.name(),
        text,
    })
}

/// What [`read_bounded`] ran into.
enum Bounded {
    Io(std::io::Error),
    Refused(LogReadError),
}

impl From<std::io::Error> for Bounded {
    fn from(e: std::io::Error) -> Bounded {
        Bounded::Io(e)
    }
}

fn read_bounded(mut file: File, name: &str) -> Result<Vec<u8>, Bounded> {
    let max = MAX_LOG_BYTES as u64;
    // The size only says where the tail starts; the bound is on what is read. Pipes and
    // devices have no size, and /proc files say 0: those are read as streams.
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .filter(|&len| len > 0);
    if let Some(len) = size.filter(|&len| len > max) {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut bytes = Vec::with_capacity(size.map_or(SNIFF_BYTES, |len| len.min(max) as usize + 1));
    let mut reader = file.take(max + 1);
    if size.is_none() {
        (&mut reader)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut bytes)?;
        check_text(&bytes, name)?;
    }
    reader.read_to_end(&mut bytes)?;
    if bytes.len() > MAX_LOG_BYTES {
        if size.is_none() {
            return Err(Bounded::Refused(LogReadError::TooLarge {
                name: name.to_string(),
                limit: MAX_LOG_BYTES,
            }));
        }
        // The file grew while it was read: its last MAX_LOG_BYTES still.
        bytes.drain(..bytes.len() - MAX_LOG_BYTES);
    }
    check_text(&bytes, name)?;
    Ok(bytes)
}

/// Refuses `bytes` when more than [`MAX_NON_TEXT_PERCENT`] of them are not text.
fn check_text(bytes: &[u8], name: &str) -> Result<(), Bounded> {
    if bytes.is_empty() {
        return Ok(());
    }
    let percent = non_text_bytes(bytes) * 100 / bytes.len();
    if percent > MAX_NON_TEXT_PERCENT {
        return Err(Bounded::Refused(LogReadError::NotText {
            name: name.to_string(),
            percent,
            sampled: bytes.len(),
        }));
    }
    Ok(())
}

/// How many bytes are NUL, control characters other than tab, line ends, form feed and
/// escape (colours), or not UTF-8.
fn non_text_bytes(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|chunk| {
            let control = chunk
                .valid()
                .bytes()
                .filter(|&b| {
                    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1b))
                        || b == 0x7f
                })
                .count();
            control + chunk.invalid().len()
        })
        .sum()
}

/// One event with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEvent {
    /// 1-based line number.
    pub line: usize,
    /// UTC time, when the line carries one.
    pub time: Option<String>,
    /// The line, trimmed (at most 300 characters).
    pub text: String,
}

/// A server start seen in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Start {
    /// The "ready for connections" line.
    pub event: LogEvent,
    /// `clean` (after a completed shutdown), `unclean` (no completed shutdown before it: a
    /// crash, SIGKILL or the OOM killer) or `first` (the first start in the log).
    pub after: String,
}

/// Aborted connections with the same cause, reason, user and host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbortedGroup {
    /// The cause the classifier gives the reason.
    pub cause: Cause,
    /// The reason in parentheses, such as `Got timeout reading communication packets`.
    pub reason: String,
    /// The account.
    pub user: String,
    /// The client host.
    pub host: String,
    /// How many lines.
    pub count: usize,
    /// First and last time seen.
    pub first: Option<String>,
    /// Last time seen.
    pub last: Option<String>,
    /// A few of the lines.
    pub examples: Vec<LogEvent>,
}

/// What a server error log says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorLogScan {
    /// Where it was read from: a path, `performance_schema.error_log` or `stdin`.
    pub source: String,
    /// Lines read.
    pub lines_scanned: usize,
    /// Lines at or after `--since` (all lines without it).
    pub lines_in_window: usize,
    /// Every start ("ready for connections").
    pub starts: Vec<Start>,
    /// Completed shutdowns.
    pub shutdowns: Vec<LogEvent>,
    /// Crash banners, assertion failures and crash recovery.
    pub crashes: Vec<LogEvent>,
    /// Aborted connections, grouped, most frequent first.
    pub aborted: Vec<AbortedGroup>,
    /// Other lines the classifier recognised (host blocked, access denied, OOM…), with cause.
    pub other: Vec<(Cause, LogEvent)>,
}

impl ErrorLogScan {
    /// Starts not preceded by a completed shutdown.
    pub fn unclean_starts(&self) -> impl Iterator<Item = &Start> {
        self.starts.iter().filter(|s| s.after == "unclean")
    }

    /// Starts after a completed shutdown.
    pub fn clean_starts(&self) -> impl Iterator<Item = &Start> {
        self.starts.iter().filter(|s| s.after == "clean")
    }

    /// Aborted-connection lines whose cause is `cause`.
    pub fn aborted_count(&self, cause: Cause) -> usize {
        self.aborted
            .iter()
            .filter(|g| g.cause == cause)
            .map(|g| g.count)
            .sum()
    }
}

static ABORTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"Aborted connection \d+ to db: '(?P<db>[^']*)' user: '(?P<user>[^']*)' host: '(?P<host>[^']*)'.*\((?P<reason>[^()]*)\)\s*\.?\s*$",
    )
    .expect("valid regex")
});
static READY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bready for connections\b").expect("valid regex"));
/// The server program's own start line: `/usr/sbin/mariadbd: ready for connections.` (the
/// `Version:` follows on the next line on MariaDB and MySQL 5.7, on the same line on 8.0).
static SERVER_READY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:mysqld|mariadbd)[\w.-]*: ready for connections\b").expect("valid regex")
});

/// Whether `line` (followed by `next`) is a server start: the server's own "ready for
/// connections" line with its `Version:`, never Galera's "WSREP: Synchronized with group,
/// ready for connections", which a node prints each time it is Synced again (after a state
/// transfer, or when a member joins or leaves) without restarting.
fn is_server_start(line: &str, next: Option<&str>) -> bool {
    if !READY.is_match(line) || line.contains("WSREP:") {
        return false;
    }
    SERVER_READY.is_match(line)
        || line.contains("Version:")
        || next.is_some_and(|n| n.trim_start().starts_with("Version:"))
}
static SHUTDOWN_COMPLETE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bShutdown complete\b").expect("valid regex"));
static CRASH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:mysqld|mariadbd)\b.*got signal \d+|Assertion failure|Starting crash recovery|was not shut ?down normally")
        .expect("valid regex")
});

fn event(line: usize, time: Option<i64>, text: &str) -> LogEvent {
    let trimmed = text.trim();
    let text = if trimmed.chars().count() > 300 {
        let mut s: String = trimmed.chars().take(300).collect();
        s.push('…');
        s
    } else {
        trimmed.to_string()
    };
    LogEvent {
        line,
        time: time.map(format_utc),
        text,
    }
}

/// Scans a server error log (MySQL 5.7, 8.0 or MariaDB). Only events at or after `since`
/// (Unix seconds) are reported; earlier lines still tell whether a later start was clean.
pub fn scan_error_log(text: &str, source: &str, since: Option<i64>) -> ErrorLogScan {
    #[derive(PartialEq)]
    enum Last {
        Nothing,
        Started,
        CleanShutdown,
        Crashed,
    }
    let mut scan = ErrorLogScan {
        source: source.to_string(),
        ..ErrorLogScan::default()
    };
    let mut last = Last::Nothing;
    let mut current_time: Option<i64> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let n = index + 1;
        scan.lines_scanned = n;
        // Continuation lines (stack traces) carry no time: they belong to the last stamped line.
        if let Some(t) = parse_log_timestamp(line) {
            current_time = Some(t);
        }
        let in_window = match (since, current_time) {
            (Some(s), Some(t)) => t >= s,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if in_window {
            scan.lines_in_window += 1;
        }
        if is_server_start(line, lines.peek().map(|(_, next)| *next)) {
            let after = match last {
                Last::Nothing => "first",
                Last::CleanShutdown => "clean",
                Last::Started | Last::Crashed => "unclean",
            };
            last = Last::Started;
            if in_window {
                scan.starts.push(Start {
                    event: event(n, current_time, line),
                    after: after.into(),
                });
            }
            continue;
        }
        if SHUTDOWN_COMPLETE.is_match(line) {
            last = Last::CleanShutdown;
            if in_window {
                scan.shutdowns.push(event(n, current_time, line));
            }
            continue;
        }
        if CRASH.is_match(line) {
            last = Last::Crashed;
            if in_window {
                scan.crashes.push(event(n, current_time, line));
            }
            continue;
        }
        if !in_window {
            continue;
        }
        if let Some(c) = ABORTED.captures(line) {
            let (reason, user, host) = (&c["reason"], &c["user"], &c["host"]);
            let cause = classify_text(line).primary();
            let ev = event(n, current_time, line);
            match scan.aborted.iter_mut().find(|g| {
                g.cause == cause && g.reason == reason && g.user == user && g.host == host
            }) {
                Some(g) => {
                    g.count += 1;
                    g.last = ev.time.clone();
                    if g.examples.len() < MAX_EXAMPLES {
                        g.examples.push(ev);
                    }
                }
                None => scan.aborted.push(AbortedGroup {
                    cause,
                    reason: reason.to_string(),
                    user: user.to_string(),
                    host: host.to_string(),
                    count: 1,
                    first: ev.time.clone(),
                    last: ev.time.clone(),
                    examples: vec![ev],
                }),
            }
            continue;
        }
        // Anything else the classifier knows (host blocked, access denied, packet errors).
        if line.contains("[ERROR]") || line.contains("[Warning]") || line.contains("[Note]") {
            let d = classify_text(line);
            let cause = d.primary();
            if cause != Cause::Unknown && scan.other.len() < 200 {
                scan.other.push((cause, event(n, current_time, line)));
            }
        }
    }
    scan.aborted.sort_by_key(|g| std::cmp::Reverse(g.count));
    scan
}

/// Scans a kernel log (`dmesg`, `journalctl -k`) for OOM kills of mysqld or mariadbd.
pub fn scan_kernel_log(text: &str, since: Option<i64>) -> Vec<LogEvent> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        // Only the classifier's OOM-killer rule (kills of the server's processes) gives
        // out_of_memory as the first cause.
        if classify_text(line).primary() != Cause::OutOfMemory {
            continue;
        }
        // journalctl -k prints "May 01 10:00:00 host kernel: …" (no year); dmesg -T prints
        // "[Wed May  1 10:00:00 2024]"; raw dmesg has seconds since boot. Only ISO times
        // (journalctl -o short-iso) can be compared with --since.
        let time = parse_log_timestamp(line);
        if let (Some(s), Some(t)) = (since, time) {
            if t < s {
                continue;
            }
        }
        out.push(event(index + 1, time, line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARIADB: &str = "\
2024-05-01 10:00:00 0 [Note] /usr/sbin/mariadbd: ready for connections.
Version: '10.11.6-MariaDB-0+deb12u1'  socket: '/run/mysqld/mysqld.sock'  port: 3306  Debian 12
2024-05-01 10:05:00 31 [Warning] Aborted connection 31 to db: 'shop' user: 'app' host: '10.0.0.7' real ip: '10.0.0.7' (Got timeout reading communication packets)
2024-05-01 10:06:00 32 [Warning] Aborted connection 32 to db: 'shop' user: 'app' host: '10.0.0.7' (Got timeout reading communication packets)
2024-05-01 10:07:00 33 [Warning] Aborted connection 33 to db: 'shop' user: 'app' host: '10.0.0.8' (Got a packet bigger than 'max_allowed_packet' bytes)
2024-05-01 10:08:00 34 [Warning] Aborted connection 34 to db: 'shop' user: 'app' host: '10.0.0.8' real ip: '10.0.0.8' (KILLED)
2024-05-01 11:00:00 0 [Note] /usr/sbin/mariadbd (initiated by: unknown): Normal shutdown
2024-05-01 11:00:01 0 [Note] /usr/sbin/mariadbd: Shutdown complete
2024-05-01 11:00:05 0 [Note] /usr/sbin/mariadbd: ready for connections.
2024-05-01 12:00:05 0 [Note] /usr/sbin/mariadbd: ready for connections.
";

    #[test]
    fn mariadb_lifecycle_and_aborted() {
        let s = scan_error_log(MARIADB, "t", None);
        let afters: Vec<&str> = s.starts.iter().map(|s| s.after.as_str()).collect();
        assert_eq!(afters, ["first", "clean", "unclean"]);
        assert_eq!(s.aborted_count(Cause::IdleTimeout), 2);
        assert_eq!(s.aborted_count(Cause::PacketTooLarge), 1);
        assert_eq!(s.aborted_count(Cause::ConnectionKilled), 1);
        assert_eq!(s.aborted[0].count, 2);
        assert_eq!(s.aborted[0].user, "app");
        assert_eq!(s.aborted[0].last.as_deref(), Some("2024-05-01T10:06:00Z"));
    }

    #[test]
    fn since_keeps_history_for_cleanliness() {
        let since = parse_log_timestamp("2024-05-01 11:00:02").unwrap();
        let s = scan_error_log(MARIADB, "t", Some(since));
        let afters: Vec<&str> = s.starts.iter().map(|s| s.after.as_str()).collect();
        assert_eq!(afters, ["clean", "unclean"]);
        assert!(s.aborted.is_empty());
    }

    #[test]
    fn mysql_8_and_5_7_lines() {
        let log = "\
2024-05-01T10:00:00.000000Z 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections. Version: '8.0.36'  socket: '/var/run/mysqld/mysqld.sock'  port: 3306  MySQL Community Server - GPL.
2024-05-01T10:10:00.000000Z 12 [Note] [MY-010914] [Server] Aborted connection 12 to db: 'app' user: 'app' host: '172.17.0.1' (Got timeout reading communication packets).
2024-05-01T10:20:00.000000Z 0 [ERROR] [MY-013183] [InnoDB] Assertion failure: btr0cur.cc:336 thread 140
2024-05-01T10:20:05.000000Z 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections.
2017-01-01T10:00:00.000000Z 5 [Note] Aborted connection 5 to db: 'x' user: 'y' host: 'localhost' (Got an error reading communication packets)
";
        let s = scan_error_log(log, "t", None);
        assert_eq!(s.starts.len(), 2);
        assert_eq!(s.starts[1].after, "unclean");
        assert_eq!(s.crashes.len(), 1);
        assert_eq!(s.aborted_count(Cause::IdleTimeout), 1);
        assert_eq!(s.aborted_count(Cause::NetworkDrop), 1);
    }

    /// A Galera node's log (a harness cluster's first node, MariaDB 10.11): the server
    /// starts once, then is Synced again as each member joins and after a member is killed.
    const GALERA: &str = "\
2026-12-03 12:16:07 2 [Note] WSREP: Server node1 synced with group
2026-12-03 12:16:07 2 [Note] WSREP: Server status change joined -> synced
2026-12-03 12:16:07 2 [Note] WSREP: Synchronized with group, ready for connections
2026-12-03 12:16:07 2 [Note] WSREP: wsrep_notify_cmd is not defined, skipping notification.
2026-12-03 12:16:07 0 [Note] Reading of all Master_info entries succeeded
2026-12-03 12:16:07 0 [Note] Added new Master_info '' to hash table
2026-12-03 12:16:07 0 [Note] /usr/sbin/mariadbd: ready for connections.
Version: '10.11.19-MariaDB-0+deb12u1'  socket: '/tmp/goneaway-mariadb-GzJgBU/sock'  port: 44647  Debian 12
2026-12-03 12:16:07 0 [Note] Using PAUSE multiplier 100
2026-12-03 12:16:11 0 [Note] WSREP: Shifting JOINED -> SYNCED (TO: 2)
2026-12-03 12:16:11 2 [Note] WSREP: Server node1 synced with group
2026-12-03 12:16:11 2 [Note] WSREP: Server status change joined -> synced
2026-12-03 12:16:11 2 [Note] WSREP: Synchronized with group, ready for connections
2026-12-03 12:16:11 2 [Note] WSREP: wsrep_notify_cmd is not defined, skipping notification.
WSREP_SST: [INFO] rsync SST completed on donor (20261203 12:16:11.060)
2026-12-03 12:16:17 0 [Note] WSREP: Shifting JOINED -> SYNCED (TO: 3)
2026-12-03 12:16:17 2 [Note] WSREP: Synchronized with group, ready for connections
2026-12-03 12:16:31 2 [Note] WSREP: Synchronized with group, ready for connections
";

    #[test]
    fn galera_synced_again_is_no_server_start() {
        let s = scan_error_log(GALERA, "t", None);
        assert_eq!(s.starts.len(), 1, "{:?}", s.starts);
        assert_eq!(s.starts[0].event.line, 7);
        assert_eq!(s.starts[0].after, "first");
        assert_eq!(s.unclean_starts().count(), 0);
        // MySQL 8.0 says Version: on the same line; 5.7 and MariaDB on the next.
        assert!(is_server_start(
            "2024-05-01T10:00:00.000000Z 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections. Version: '8.0.36'  socket: '/var/run/mysqld/mysqld.sock'  port: 3306",
            None
        ));
        assert!(is_server_start(
            "2017-01-01T10:00:00.000000Z 0 [Note] mysqld: ready for connections.",
            Some("Version: '5.7.44'  socket: '/var/run/mysqld/mysqld.sock'  port: 3306")
        ));
        assert!(!is_server_start(
            "2026-12-03 12:16:17 2 [Note] WSREP: Synchronized with group, ready for connections",
            Some("Version: '10.11.19-MariaDB-0+deb12u1'")
        ));
    }

    #[test]
    fn text_and_binary() {
        assert_eq!(
            non_text_bytes(b"2024-05-01 10:00:00 0 [Note] ready\n\tat x\r\n"),
            0
        );
        assert_eq!(non_text_bytes(b"\x1b[31mred\x1b[0m"), 0);
        assert_eq!(non_text_bytes(b"caf\xe9 \x00\x01"), 3);
        assert!(check_text(&[0; 100], "t").is_err());
        // A few stray bytes (a Latin-1 name) are still a text log.
        let mut latin = b"host caf\xe9 aborted connection\n".repeat(10);
        latin.extend_from_slice(&[0; 8]);
        assert!(check_text(&latin, "t").is_ok());
    }

    #[test]
    fn endless_devices_are_refused_after_a_sniff() {
        for device in ["/dev/zero", "/dev/urandom"] {
            match read_log(&LogSource::File(device.into())) {
                Err(LogReadError::NotText { sampled, .. }) => assert_eq!(sampled, SNIFF_BYTES),
                other => panic!("{device}: {other:?}"),
            }
        }
        let e = read_log(&LogSource::File("/nonexistent/error.log".into())).unwrap_err();
        assert!(e.is_unreadable(), "{e}");
    }

    #[test]
    fn a_regular_file_over_the_limit_is_tailed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        let line = "2024-05-01 10:00:00 0 [Note] InnoDB: Buffer pool(s) load completed\n";
        let mut text = line.repeat(MAX_LOG_BYTES / line.len() + 1000);
        text.push_str("the last line\n");
        std::fs::write(&path, &text).unwrap();
        let log = read_log(&LogSource::File(path.clone())).unwrap();
        assert_eq!(log.text.len(), MAX_LOG_BYTES);
        assert!(log.text.ends_with("the last line\n"));
        assert_eq!(log.source, path.display().to_string());
        // A small one is read whole, stray non-UTF-8 bytes replaced.
        std::fs::write(&path, b"host caf\xe9: ready for connections\n").unwrap();
        let log = read_log(&LogSource::File(path)).unwrap();
        assert_eq!(log.text, "host caf\u{FFFD}: ready for connections\n");
    }

    #[test]
    fn kernel_oom() {
        let log = "2024-05-01T10:00:00+0000 host kernel: Out of memory: Killed process 1234 (mariadbd) total-vm:4000000kB\nkernel: Killed process 99 (python3)\n";
        let ev = scan_kernel_log(log, None);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].line, 1);
    }
}
