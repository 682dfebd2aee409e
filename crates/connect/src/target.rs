//! One server and account to connect to, and how it is shown without its password.

use std::fmt;
use std::path::PathBuf;

use mysql_async::{Opts, OptsBuilder};

use crate::ConnectError;

/// The port MySQL and MariaDB listen on unless told otherwise.
pub const DEFAULT_PORT: u16 = 3306;

/// A password that never prints: `Debug` and `Display` show `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(secret: impl Into<String>) -> Password {
        Password(secret.into())
    }

    /// The password itself, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Where the target's settings came from, for reports ("from ~/.my.cnf").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Source {
    /// The option file read, if any.
    pub defaults_file: Option<PathBuf>,
    /// Where the URL came from: `--url`, `MYSQL_URL` or `DATABASE_URL`.
    pub url_from: Option<&'static str>,
    /// Whether command-line flags changed anything.
    pub flags: bool,
}

/// One server and account: where to connect and as whom.
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address; `None` means `localhost` (127.0.0.1 over TCP).
    pub host: Option<String>,
    /// TCP port; `None` means 3306.
    pub port: Option<u16>,
    /// The Unix socket; when set, it is used instead of TCP.
    pub socket: Option<PathBuf>,
    /// The account; `None` lets the driver choose (`root`-less servers will refuse).
    pub user: Option<String>,
    /// The password, kept out of every display.
    pub password: Option<Password>,
    /// The default database.
    pub database: Option<String>,
    /// Whether mysql_async may switch from TCP to the server's Unix socket when it finds one.
    /// Off unless the URL asks for it: a diagnosis must test the path the user named (a
    /// relay, a proxy, a load balancer), not a local shortcut around it.
    pub prefer_socket: bool,
    /// Driver options from the URL's query string, other than `prefer_socket`.
    pub params: Vec<(String, String)>,
    /// Where the settings came from.
    pub source: Source,
}

impl Target {
    /// Parses `mysql://user:password@host:port/db?opt=value` (also `mariadb://`).
    /// Percent-escapes in the user and password are decoded.
    pub fn from_url(url: &str) -> Result<Target, ConnectError> {
        let invalid = |reason: &str| ConnectError::InvalidUrl {
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .or_else(|| url.strip_prefix("mysqlx://").map(|_| ""))
            .ok_or_else(|| invalid("the scheme must be mysql:// or mariadb://"))?;
        if rest.is_empty() && url.starts_with("mysqlx://") {
            return Err(invalid(
                "mysqlx:// (the X protocol) is not supported; use mysql://",
            ));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let mut target = Target::default();
        let host_port = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (user, pass) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if !user.is_empty() {
                    target.user = Some(percent_decode(user).map_err(|r| invalid(&r))?);
                }
                if let Some(p) = pass {
                    target.password =
                        Some(Password::new(percent_decode(p).map_err(|r| invalid(&r))?));
                }
                hp
            }
            None => authority,
        };
        let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
            // [::1]:3306
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs a closing ]"))?;
            (h, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        if !host.is_empty() {
            target.host = Some(percent_decode(host).map_err(|r| invalid(&r))?);
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            target.port = Some(p.parse().map_err(|_| invalid("the port is not a number"))?);
        }
        if let Some(db) = path.filter(|p| !p.is_empty()) {
            target.database = Some(percent_decode(db).map_err(|r| invalid(&r))?);
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "prefer_socket" => target.prefer_socket = v == "true" || v == "1",
                "socket" => {
                    target.socket = Some(PathBuf::from(percent_decode(v).map_err(|r| invalid(&r))?))
                }
                _ => target.params.push((k.to_string(), v.to_string())),
            }
        }
        // Let the driver check the remaining options now, not at connect time.
        target.opts()?;
        Ok(target)
    }

    /// The host connected to over TCP.
    pub fn host_or_default(&self) -> &str {
        self.host.as_deref().unwrap_or("127.0.0.1")
    }

    /// The TCP port connected to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// The `mysql_async` options for this target.
    pub fn opts(&self) -> Result<Opts, ConnectError> {
        // Driver options from the query string go through the driver's own URL parser (with
        // a placeholder host), so every option it knows keeps working.
        let base = if self.params.is_empty() {
            Opts::default()
        } else {
            let query: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Opts::from_url(&format!("mysql://localhost/?{}", query.join("&"))).map_err(|e| {
                ConnectError::InvalidUrl {
                    reason: e.to_string(),
                }
            })?
        };
        let host = match self.host.as_deref() {
            // The mysql CLI treats "localhost" as "use the socket"; goneaway connects over TCP
            // unless a socket is named, so localhost means the loopback address.
            None | Some("localhost") => "127.0.0.1".to_string(),
            Some(h) => h.to_string(),
        };
        let builder = OptsBuilder::from_opts(base)
            .ip_or_hostname(host)
            .tcp_port(self.port_or_default())
            .user(self.user.clone())
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(self.database.clone())
            .socket(self.socket.as_ref().map(|s| s.display().to_string()))
            .prefer_socket(self.prefer_socket);
        Ok(builder.into())
    }

    /// The target as a URL with the password replaced by `****` (or a `socket:` form).
    pub fn redacted(&self) -> String {
        let mut out = String::from("mysql://");
        if let Some(user) = &self.user {
            out.push_str(user);
            if self.password.is_some() {
                out.push_str(":****");
            }
            out.push('@');
        }
        if let Some(socket) = &self.socket {
            out.push_str(&format!("(socket {})", socket.display()));
        } else {
            let host = self.host_or_default();
            if host.contains(':') {
                out.push_str(&format!("[{host}]"));
            } else {
                out.push_str(host);
            }
            out.push_str(&format!(":{}", self.port_or_default()));
        }
        if let Some(db) = &self.database {
            out.push('/');
            out.push_str(db);
        }
        out
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.redacted())
            .field("prefer_socket", &self.prefer_socket)
            .field("params", &self.params)
            .field("source", &self.source)
            .finish()
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a % escape is not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a % escape decodes to invalid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let t = Target::from_url("mysql://app:p%40ss@db:3307/shop?prefer_socket=false").unwrap();
        assert_eq!(t.user.as_deref(), Some("app"));
        assert_eq!(t.password.as_ref().map(Password::expose), Some("p@ss"));
        assert_eq!(t.port, Some(3307));
        assert_eq!(t.redacted(), "mysql://app:****@db:3307/shop");
        assert!(!format!("{t:?} {t}").contains("p@ss"));
    }

    #[test]
    fn rejects_other_schemes_without_echoing() {
        let e = Target::from_url("postgres://u:secret@h/db").unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn ipv6_and_defaults() {
        let t = Target::from_url("mysql://[::1]:3310").unwrap();
        assert_eq!(t.host.as_deref(), Some("::1"));
        assert_eq!(t.redacted(), "mysql://[::1]:3310");
        let t = Target::from_url("mysql://localhost").unwrap();
        assert_eq!(t.opts().unwrap().tcp_port(), 3306);
    }
}
