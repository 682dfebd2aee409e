//! The harness's error type.

use std::path::PathBuf;

/// Why the harness could not start, stop or operate a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// `mariadbd` (or `mariadb-install-db`) is not installed.
    #[error(
        "{binary} not found (looked in PATH, /usr/sbin, /usr/local/sbin): install Debian's \
         mariadb-server package (`apt-get install mariadb-server mariadb-client`), or set \
         {env_var} to its path"
    )]
    MariadbNotFound {
        /// The binary that is missing.
        binary: &'static str,
        /// The environment variable that can point at it.
        env_var: &'static str,
    },
    /// A process could not be spawned or a file could not be written.
    #[error("{action}: {source}")]
    Io {
        /// What the harness was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `mariadb-install-db` failed.
    #[error("mariadb-install-db failed ({status}); its output:\n{output}")]
    InstallDb {
        /// The exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The server exited or never became ready.
    #[error(
        "mariadbd did not become ready within {seconds} s: {reason}; error log {log}:\n{tail}"
    )]
    NotReady {
        /// How long the harness waited.
        seconds: u64,
        /// What was seen.
        reason: String,
        /// The error log's path.
        log: PathBuf,
        /// The last lines of the error log.
        tail: String,
    },
    /// The server did not stop within the bound.
    #[error("mariadbd (pid {pid}) did not stop within {seconds} s")]
    StopTimeout {
        /// The process id.
        pid: u32,
        /// How long the harness waited.
        seconds: u64,
    },
    /// The operation needs a running server.
    #[error("the server is not running")]
    NotRunning,
    /// An administrative statement failed.
    #[error("administrative statement failed: {0}")]
    Admin(#[from] mysql_async::Error),
}

impl HarnessError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            action: action.into(),
            source,
        }
    }
}
