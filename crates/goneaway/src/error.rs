//! The pool's error type: what went wrong, and whether the work may have run.

use std::time::Duration;

use goneaway_core::{Cause, Diagnosis, Retry};

/// An error from the pool. Questions about it are methods: [`Error::cause`],
/// [`Error::is_disconnect`], [`Error::is_outcome_unknown`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be handed out within the checkout timeout: every connection was
    /// busy, or the server could not be reached (the last connect error is kept).
    #[error("no connection within {waited:?}{}", match last { Some(e) => format!(" (last connect error: {e})"), None => " (all connections busy)".to_string() })]
    CheckoutTimeout {
        /// How long the caller waited.
        waited: Duration,
        /// The last error from opening a connection, if any attempt failed.
        last: Option<Box<mysql_async::Error>>,
    },

    /// Too many callers were already waiting for a connection; this one failed fast.
    #[error("the pool's wait queue is full ({limit} callers already waiting): the pool is overloaded; raise max_size or max_waiters, or shed load")]
    QueueFull {
        /// The configured `max_waiters`.
        limit: usize,
    },

    /// A connection could not be opened and trying again will not help (access denied,
    /// unknown database, bad options).
    #[error("could not connect ({cause}): {source}")]
    Connect {
        /// The cause the classifier gave.
        cause: Cause,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },

    /// A statement failed and was not (or no longer) retried.
    #[error("{source} [cause: {cause}, advice: {retry}, after {attempts} attempt(s)]")]
    Statement {
        /// The cause the classifier gave.
        cause: Cause,
        /// The classifier's retry advice.
        retry: Retry,
        /// Whether the connection died (it was discarded).
        connection_lost: bool,
        /// Attempts made.
        attempts: u32,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },

    /// The connection was lost while a statement that is not read-only and not marked
    /// idempotent was running: the server may or may not have applied it. It was not
    /// retried, because a retry could apply it twice.
    #[error("connection lost while the statement ran ({cause}): it may or may not have been applied (outcome unknown); not retried because it is neither read-only nor marked idempotent: {source}")]
    OutcomeUnknown {
        /// The cause the classifier gave.
        cause: Cause,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },

    /// The connection was lost during `COMMIT`: the transaction may or may not have been
    /// committed. It is never replayed; the application must check.
    #[error("connection lost during COMMIT ({cause}): the transaction may or may not have been committed (outcome unknown); it was not replayed: {source}")]
    CommitOutcomeUnknown {
        /// The cause the classifier gave.
        cause: Cause,
        /// The error COMMIT got.
        #[source]
        source: Box<Error>,
    },

    /// A statement got no answer within `statement_timeout`: the flow is probably
    /// blackholed. The connection was discarded.
    #[error("no answer from the server within {0:?} (statement_timeout): the connection was discarded as dead")]
    StatementTimeout(Duration),

    /// A single row of a bulk insert does not fit in `max_allowed_packet` on its own.
    #[error("row {row} needs {bytes} bytes, more than max_allowed_packet ({limit} bytes) allows in one statement: raise max_allowed_packet on the server")]
    RowTooLarge {
        /// Index of the row in the input.
        row: usize,
        /// Its size as SQL text.
        bytes: usize,
        /// The packet budget.
        limit: usize,
    },

    /// The arguments of a helper were invalid.
    #[error("invalid use: {0}")]
    Invalid(String),

    /// Work passed to [`Pool::transaction`](crate::Pool::transaction) or
    /// [`Pool::with_conn`](crate::Pool::with_conn) failed with an error of its own.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps an application error returned from a transaction or unit of work.
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Other(e.into())
    }

    /// The cause, when the error came from the server or the connection.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Error::Connect { cause, .. }
            | Error::Statement { cause, .. }
            | Error::OutcomeUnknown { cause, .. }
            | Error::CommitOutcomeUnknown { cause, .. } => Some(*cause),
            Error::StatementTimeout(_) => Some(Cause::NetworkDrop),
            Error::RowTooLarge { .. } => Some(Cause::PacketTooLarge),
            _ => None,
        }
    }

    /// Whether a connection went away.
    pub fn is_disconnect(&self) -> bool {
        match self {
            Error::Statement {
                connection_lost, ..
            } => *connection_lost,
            Error::OutcomeUnknown { .. }
            | Error::CommitOutcomeUnknown { .. }
            | Error::StatementTimeout(_) => true,
            _ => false,
        }
    }

    /// Whether the work may or may not have been applied.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::OutcomeUnknown { .. }
                | Error::CommitOutcomeUnknown { .. }
                | Error::StatementTimeout(_)
        )
    }

    /// The driver's error, if there is one.
    pub fn mysql_error(&self) -> Option<&mysql_async::Error> {
        match self {
            Error::Connect { source, .. }
            | Error::Statement { source, .. }
            | Error::OutcomeUnknown { source, .. } => Some(source),
            Error::CommitOutcomeUnknown { source, .. } => source.mysql_error(),
            Error::CheckoutTimeout { last, .. } => last.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn statement(d: &Diagnosis, source: mysql_async::Error, attempts: u32) -> Self {
        Error::Statement {
            cause: d.primary(),
            retry: d.retry,
            connection_lost: d.connection_lost,
            attempts,
            source,
        }
    }
}

impl From<mysql_async::Error> for Error {
    /// A driver error seen outside the retry machinery (on a checked-out connection).
    fn from(e: mysql_async::Error) -> Self {
        let d = goneaway_core::classify_mysql_async(&e);
        Error::statement(&d, e, 1)
    }
}
