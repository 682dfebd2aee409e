//! The one error type of the relay: starting it, parsing faults, and talking to its control interface.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything that can go wrong in this crate.
///
/// Faults the relay injects are not errors: they are what it is for. These are the
/// failures of the relay itself and of the people and programs driving it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The relay or its control interface could not listen on the address asked for.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as it was given.
        addr: String,
        /// Why the operating system said no.
        #[source]
        source: io::Error,
    },

    /// The control interface was asked to listen on an address other machines can reach.
    ///
    /// Anyone who can reach the control port can break every connection through the relay,
    /// so it stays on loopback unless [`ControlConfig::allow_remote`](crate::control::ControlConfig::allow_remote)
    /// says otherwise.
    #[error(
        "refusing to serve the control interface on {addr}: not a loopback address \
         (anyone who can reach it can break every connection; set allow_remote to do it anyway)"
    )]
    NonLoopbackControl {
        /// The first resolved address that is not loopback.
        addr: SocketAddr,
    },

    /// A fault (or a fault kind) could not be parsed from text.
    #[error("invalid fault `{input}`: {reason}")]
    ParseFault {
        /// The text as given, trimmed.
        input: String,
        /// What was wrong with it, and what would have been right.
        reason: String,
    },

    /// A control command could not be parsed from text.
    #[error("invalid control command `{input}`: {reason}")]
    ParseCommand {
        /// The text as given, trimmed.
        input: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The control interface could not be reached, or the connection to it failed.
    #[error("control connection failed: {0}")]
    Control(#[source] io::Error),

    /// The control interface did not answer in time.
    #[error("no answer from the control interface within {0:?}")]
    ControlTimeout(Duration),

    /// The control interface answered `ERR ...`: the message is what follows `ERR `.
    #[error("the relay refused the command: {0}")]
    Rejected(String),

    /// The control interface answered something that is neither `OK ...` nor `ERR ...`.
    #[error("unexpected answer from the control interface: {0:?}")]
    BadAnswer(String),

    /// Any other I/O failure of the relay itself.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether the error is about text that could not be parsed (a fault, a kind or a
    /// command): the user should fix what they typed, retrying will not help.
    pub fn is_parse(&self) -> bool {
        matches!(self, Error::ParseFault { .. } | Error::ParseCommand { .. })
    }

    /// Whether the control interface answered but refused the command.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Error::Rejected(_))
    }

    /// Whether the control interface could not be reached or did not answer: the relay
    /// is probably not running at that address.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Control(_) | Error::ControlTimeout(_))
    }
}
