//! Server connections: login as a client, replies followed packet by packet, health.

pub mod conn;
pub mod pool;
pub mod reply;
pub mod stall;
pub mod statements;

pub use conn::{Backend, ConnectOptions, IdleEvent};
pub use pool::{BackendPool, Carried, Fit, PoolKey, Taken};
pub use reply::{Expect, ReplyTracker, Step};
pub use stall::StallWatch;
pub use statements::{StatementCache, StatementKey};
