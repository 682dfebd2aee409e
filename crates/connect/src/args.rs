//! The connection flags shared by `doctor`, `ping` and `watch`, and how they are layered.

use std::path::{Path, PathBuf};

use crate::{mycnf, ConnectError, Password, Target};

/// Where to connect: a URL, the mysql CLI's flags, or an option file.
///
/// Precedence, lowest first: the option file (`--defaults-file`, else `~/.my.cnf` when no URL
/// is given), the URL (`--url`, else `MYSQL_URL`, else a `mysql://` `DATABASE_URL`), then the
/// flags. `MYSQL_PWD` supplies a password when nothing else does.
///
/// A password on the command line is visible to other users in the process list: prefer
/// `MYSQL_PWD`, a URL in `MYSQL_URL`, or an option file readable only by you.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// Server URL, mysql://user:password@host:port/db [env: MYSQL_URL, then DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Host name or IP address (mysql -h).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,
    /// TCP port (mysql -P).
    #[arg(short = 'P', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Account name (mysql -u).
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Password (mysql -pSECRET); prefer MYSQL_PWD or an option file.
    #[arg(short = 'p', long, value_name = "PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Unix socket to connect through instead of TCP (mysql -S).
    #[arg(short = 'S', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Default database (mysql -D).
    #[arg(short = 'D', long, value_name = "DB")]
    pub database: Option<String>,
    /// Read the [client] section of this option file.
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
    /// Do not read ~/.my.cnf.
    #[arg(long)]
    pub no_defaults: bool,
}

impl ConnectArgs {
    /// A `ConnectArgs` with only a URL, as a library caller or a test would build it.
    pub fn from_url(url: impl Into<String>) -> ConnectArgs {
        ConnectArgs {
            url: Some(url.into()),
            no_defaults: true,
            ..ConnectArgs::default()
        }
    }

    /// Layers the option file, the URL and the flags into one target, reading the process
    /// environment and `$HOME/.my.cnf`.
    pub fn resolve(&self) -> Result<Target, ConnectError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// [`ConnectArgs::resolve`] with the environment given by `env` (for tests).
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Target, ConnectError> {
        let (url, url_from) = match &self.url {
            Some(u) => (Some(u.clone()), Some("--url")),
            None => match env("MYSQL_URL").filter(|u| !u.is_empty()) {
                Some(u) => (Some(u), Some("MYSQL_URL")),
                // DATABASE_URL is shared with other databases: only a MySQL URL is ours.
                None => match env("DATABASE_URL")
                    .filter(|u| u.starts_with("mysql://") || u.starts_with("mariadb://"))
                {
                    Some(u) => (Some(u), Some("DATABASE_URL")),
                    None => (None, None),
                },
            },
        };
        let defaults_path: Option<PathBuf> = match &self.defaults_file {
            Some(p) => Some(p.clone()),
            None if self.no_defaults || url.is_some() => None,
            None => env("HOME")
                .map(|h| Path::new(&h).join(".my.cnf"))
                .filter(|p| p.is_file()),
        };

        let mut target = match &url {
            Some(u) => Target::from_url(u)?,
            None => Target::default(),
        };
        target.source.url_from = url_from;
        if let Some(path) = defaults_path {
            let opts = mycnf::read(&path)?;
            let get = |k: &str| opts.get(k).filter(|v| !v.is_empty()).cloned();
            if target.host.is_none() {
                target.host = get("host");
            }
            if target.port.is_none() {
                if let Some(p) = get("port") {
                    target.port = Some(p.parse().map_err(|_| ConnectError::InvalidValue {
                        name: format!("port in {}", path.display()),
                        reason: format!("{p:?} is not a port number"),
                    })?);
                }
            }
            if target.user.is_none() {
                target.user = get("user");
            }
            if target.password.is_none() {
                target.password = opts.get("password").map(Password::new);
            }
            if target.socket.is_none() {
                target.socket = get("socket").map(PathBuf::from);
            }
            if target.database.is_none() {
                target.database = get("database");
            }
            target.source.defaults_file = Some(path);
        }

        let mut flags = false;
        if let Some(h) = &self.host {
            target.host = Some(h.clone());
            flags = true;
        }
        if let Some(p) = self.port {
            target.port = Some(p);
            flags = true;
        }
        if let Some(u) = &self.user {
            target.user = Some(u.clone());
            flags = true;
        }
        if let Some(p) = &self.password {
            target.password = Some(Password::new(p.clone()));
            flags = true;
        }
        if let Some(s) = &self.socket {
            target.socket = Some(s.clone());
            flags = true;
        }
        if let Some(d) = &self.database {
            target.database = Some(d.clone());
            flags = true;
        }
        target.source.flags = flags;
        if target.password.is_none() {
            target.password = env("MYSQL_PWD").map(Password::new);
        }
        Ok(target)
    }
}
