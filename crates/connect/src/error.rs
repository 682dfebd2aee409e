//! Why a connection target could not be built.

use std::path::PathBuf;

/// Why a connection target could not be built. Nothing here has touched the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL could not be parsed (its text is not repeated: it may hold a password).
    #[error("invalid connection URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// An option file could not be read.
    #[error("cannot read the option file {}: {source}", path.display())]
    DefaultsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A value in an option file or flag is not valid.
    #[error("invalid value for {name}: {reason}")]
    InvalidValue {
        /// The option's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}
