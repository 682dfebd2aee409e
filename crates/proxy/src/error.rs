//! The proxy's error type.

use crate::net::ErrInfo;

/// What can go wrong in the proxy itself (a client's or a server's error is forwarded to
/// the client, not returned here).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A socket could not be bound or used.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The server refused the proxy's login or a setup statement.
    #[error("the server answered {0}")]
    Server(ErrInfo),
    /// The server sent something the proxy cannot follow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Every backend connection the proxy may hold (`max_backends`) stayed in use.
    #[error("{0}")]
    Busy(String),
    /// The server could not be reached in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A reply stayed silent and the server, asked on a second connection, showed that it
    /// will never come (see [`crate::backend::stall`]). `not_run`: the server never
    /// received the statement.
    #[error("{detail}")]
    Stalled { not_run: bool, detail: String },
    /// In front of a cluster, no server qualified as the writer within
    /// `switchover_wait`: the message names every server and what it said (see
    /// [`crate::monitor`]).
    #[error("{0}")]
    NoWriter(String),
}

impl ProxyError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ProxyError {
        ProxyError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the failure is the connection itself (reset, EOF, timeout), as opposed to an
    /// answer from a live server.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            ProxyError::Io { .. }
                | ProxyError::Timeout(_)
                | ProxyError::Protocol(_)
                | ProxyError::Stalled { .. }
        )
    }

    /// The server's error, if the server answered with one.
    pub fn server_error(&self) -> Option<&ErrInfo> {
        match self {
            ProxyError::Server(e) => Some(e),
            _ => None,
        }
    }
}
