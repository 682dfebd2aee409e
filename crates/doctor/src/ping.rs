//! `goneaway ping`: connect, ping, optionally query, within a time limit — a health check
//! whose exit code says what is wrong.

use std::time::{Duration, Instant};

use goneaway_connect::Target;
use goneaway_core::Cause;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::time::{format_utc, now_unix};

/// What a ping found. Each has its own exit code ([`PingStatus::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PingStatus {
    /// Connected, pinged (and queried): exit 0.
    Up,
    /// Something else failed (the query, an unexpected error): exit 1.
    Error,
    /// The address cannot be reached: no route, DNS failure, `skip_networking`: exit 3.
    Unreachable,
    /// The host answered but refused: port closed, too many connections, host blocked,
    /// shutting down: exit 4.
    Refused,
    /// The server refused the account: access denied: exit 5.
    Auth,
    /// No answer within the time limit: exit 6.
    Timeout,
}

impl PingStatus {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            PingStatus::Up => 0,
            PingStatus::Error => 1,
            PingStatus::Unreachable => 3,
            PingStatus::Refused => 4,
            PingStatus::Auth => 5,
            PingStatus::Timeout => 6,
        }
    }

    /// The status as it appears in JSON: `up`, `error`, `unreachable`, `refused`, `auth`,
    /// `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            PingStatus::Up => "up",
            PingStatus::Error => "error",
            PingStatus::Unreachable => "unreachable",
            PingStatus::Refused => "refused",
            PingStatus::Auth => "auth",
            PingStatus::Timeout => "timeout",
        }
    }

    /// Whether waiting (`--wait`) may turn this into `Up`.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            PingStatus::Unreachable | PingStatus::Refused | PingStatus::Timeout
        )
    }
}

/// How to ping.
#[derive(Debug, Clone)]
pub struct PingOptions {
    /// The limit for one attempt: connect, ping and query.
    pub timeout: Duration,
    /// A statement to run after the ping; its first value is reported.
    pub query: Option<String>,
    /// Keep trying transient failures this long (for a server that is starting).
    pub wait: Option<Duration>,
    /// Where waiting reports progress (one message per failed attempt).
    pub progress: crate::Progress,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            timeout: Duration::from_secs(5),
            query: None,
            wait: None,
            progress: crate::Progress::default(),
        }
    }
}

/// The outcome. JSON field names are stable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingReport {
    /// The target, password redacted.
    pub target: String,
    /// What was found.
    pub status: PingStatus,
    /// The exit code.
    pub exit_code: u8,
    /// Milliseconds the last attempt took.
    pub elapsed_ms: u64,
    /// Attempts made (more than one with `wait`).
    pub attempts: u32,
    /// `@@version`, when connected.
    pub server_version: Option<String>,
    /// `Uptime` in seconds, when connected.
    pub uptime_seconds: Option<u64>,
    /// The query's first value, when one ran.
    pub query_result: Option<String>,
    /// The error, when one happened.
    pub error: Option<String>,
    /// The error's cause, classified.
    pub cause: Option<Cause>,
    /// When the ping finished, UTC.
    pub at: String,
}

impl PingReport {
    /// One line for a terminal.
    pub fn render_text(&self) -> String {
        match self.status {
            PingStatus::Up => format!(
                "{} is up: {} ms, {}, up {} s{}",
                self.target,
                self.elapsed_ms,
                self.server_version.as_deref().unwrap_or("?"),
                self.uptime_seconds.unwrap_or(0),
                self.query_result
                    .as_deref()
                    .map(|r| format!(", query returned {r}"))
                    .unwrap_or_default()
            ),
            status => format!(
                "{} is not healthy ({}, exit {}): {}{}",
                self.target,
                status.as_str(),
                self.exit_code,
                self.error.as_deref().unwrap_or("?"),
                self.cause.map(|c| format!(" [{c}]")).unwrap_or_default()
            ),
        }
    }
}

struct Attempt {
    status: PingStatus,
    version: Option<String>,
    uptime: Option<u64>,
    result: Option<String>,
    error: Option<String>,
    cause: Option<Cause>,
}

/// Pings `target`; with `wait`, retries transient failures until it is up or time runs out.
pub async fn ping(target: &Target, options: &PingOptions) -> PingReport {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt_start = Instant::now();
        let a =
            match tokio::time::timeout(options.timeout, attempt(target, options.query.as_deref()))
                .await
            {
                Ok(a) => a,
                Err(_) => Attempt {
                    status: PingStatus::Timeout,
                    version: None,
                    uptime: None,
                    result: None,
                    error: Some(format!(
                        "no answer within {}",
                        goneaway_connect::format_duration(options.timeout)
                    )),
                    cause: Some(Cause::ServerUnreachable),
                },
            };
        let elapsed = attempt_start.elapsed();
        let retry = a.status.is_transient()
            && options
                .wait
                .is_some_and(|w| started.elapsed() + Duration::from_millis(250) < w);
        if !retry {
            options.progress.done();
            return PingReport {
                target: target.redacted(),
                status: a.status,
                exit_code: a.status.exit_code(),
                elapsed_ms: elapsed.as_millis() as u64,
                attempts,
                server_version: a.version,
                uptime_seconds: a.uptime,
                query_result: a.result,
                error: a.error,
                cause: a.cause,
                at: format_utc(now_unix()),
            };
        }
        if let Some(w) = options.wait {
            let left = w.saturating_sub(started.elapsed());
            options.progress.report(&format!(
                "waiting for the server ({}, attempt {attempts}): {} left",
                a.status.as_str(),
                goneaway_connect::format_duration(Duration::from_secs(left.as_secs() + 1))
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn attempt(target: &Target, query: Option<&str>) -> Attempt {
    let fail = |status, error: String, cause| Attempt {
        status,
        version: None,
        uptime: None,
        result: None,
        error: Some(error),
        cause,
    };
    let opts = match target.opts() {
        Ok(o) => o,
        Err(e) => return fail(PingStatus::Error, e.to_string(), None),
    };
    let mut conn = match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => {
            let cause = goneaway_core::classify_mysql_async(&e).primary();
            return fail(connect_status(&e, cause), error_chain(&e), Some(cause));
        }
    };
    if let Err(e) = conn.ping().await {
        let cause = goneaway_core::classify_mysql_async(&e).primary();
        return fail(PingStatus::Error, error_chain(&e), Some(cause));
    }
    let info: Option<(String, String)> = conn
        .query_first("SELECT @@version, (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME')")
        .await
        .ok()
        .flatten();
    let (version, uptime) = match info {
        Some((v, u)) => (Some(v), u.parse().ok()),
        None => (None, None),
    };
    let mut result = None;
    if let Some(q) = query {
        match conn.query_first::<mysql_async::Row, _>(q).await {
            Ok(row) => {
                result = Some(
                    row.and_then(|r| r.as_ref(0).cloned())
                        .map(|v| match v {
                            mysql_async::Value::Bytes(b) => {
                                String::from_utf8_lossy(&b).into_owned()
                            }
                            mysql_async::Value::NULL => "NULL".into(),
                            other => other.as_sql(true),
                        })
                        .unwrap_or_else(|| "(no rows)".into()),
                )
            }
            Err(e) => {
                let cause = goneaway_core::classify_mysql_async(&e).primary();
                let _ = conn.disconnect().await;
                return Attempt {
                    status: PingStatus::Error,
                    version,
                    uptime,
                    result: None,
                    error: Some(format!("the query failed: {}", error_chain(&e))),
                    cause: Some(cause),
                };
            }
        }
    }
    let _ = conn.disconnect().await;
    Attempt {
        status: PingStatus::Up,
        version,
        uptime,
        result,
        error: None,
        cause: None,
    }
}

/// An error and its sources as one line, `outer: inner: root`, each distinct layer once.
///
/// Many errors print their source inside their own message as well as returning it from
/// [`std::error::Error::source`] — mysql_async's `Io` does, twice over, so its plain
/// `Display` reads "Input/output error: Input/output error: Connection refused (os error
/// 111)". Here a layer's text loses a trailing copy of its source's text, and a layer whose
/// remaining words were already said is skipped: "Input/output error: Connection refused
/// (os error 111)".
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
/// let e = mysql_async::Error::from(io);
/// assert_eq!(e.to_string().matches("Input/output error").count(), 2);
/// assert_eq!(
///     goneaway_doctor::ping::error_chain(&e),
///     "Input/output error: Connection refused"
/// );
/// ```
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut texts = Vec::new();
    let mut layer = Some(err);
    while let Some(e) = layer {
        texts.push(e.to_string());
        layer = e.source();
    }
    let mut said: Vec<&str> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let own = match texts.get(i + 1) {
            Some(source) if !source.is_empty() && text.ends_with(source.as_str()) => text
                [..text.len() - source.len()]
                .trim_end_matches(|c: char| c == ':' || c.is_whitespace()),
            _ => text.as_str(),
        };
        if !own.is_empty() && !said.iter().any(|s| s.contains(own)) {
            said.push(own);
        }
    }
    said.join(": ")
}

fn connect_status(e: &mysql_async::Error, cause: Cause) -> PingStatus {
    if let mysql_async::Error::Io(mysql_async::IoError::Io(io)) = e {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => PingStatus::Refused,
            std::io::ErrorKind::TimedOut => PingStatus::Timeout,
            _ => PingStatus::Unreachable,
        };
    }
    match cause {
        Cause::AccessDenied => PingStatus::Auth,
        Cause::TooManyConnections | Cause::HostBlocked | Cause::ServerRestart => {
            PingStatus::Refused
        }
        Cause::ServerUnreachable => PingStatus::Unreachable,
        _ => PingStatus::Error,
    }
}
