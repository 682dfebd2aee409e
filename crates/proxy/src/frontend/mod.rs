//! Client sessions: the login against the proxy's accounts and the command loop.

pub mod handshake;
pub mod session;
pub mod state;
pub mod txlog;

pub use session::Session;
pub use state::SessionState;
