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
    /// A Galera cluster needs what is not installed.
    #[error(
        "{missing} not found: install Debian's galera-4 and rsync packages (`apt-get install \
         galera-4 rsync`, or `make deps`), or set GONEAWAY_GALERA_PROVIDER to the provider's path"
    )]
    GaleraNotFound {
        /// What is missing.
        missing: String,
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
    /// The operation needs a stopped server.
    #[error("the server is running")]
    Running,
    /// A cluster did not reach the state a test waits for (formed, caught up, a member
    /// seen gone) within the bound.
    #[error("{what} within {seconds} s: {seen}")]
    Cluster {
        /// What was awaited, such as "the Galera cluster did not reach 3 members".
        what: String,
        /// How long the harness waited.
        seconds: u64,
        /// What was seen last, with the members' error log tails where they help.
        seen: String,
    },
    /// A member index out of range.
    #[error("no member {index}: the cluster has {len}")]
    NoMember {
        /// The index asked for.
        index: usize,
        /// How many members there are.
        len: usize,
    },
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
