//! Throwaway real MariaDB servers, and the faults that make their connections go away.
//!
//! Every integration test of goneaway and `goneaway demo` talk to real servers started here,
//! never to a mock. A [`Server`] is a `mariadbd` process bound to `127.0.0.1` on a free port,
//! with its data directory and error log in a private temporary directory, configured with
//! the server variables a test chooses through [`ServerBuilder`]. Its operations cause each
//! kind of gone-away on purpose: [`Server::restart`] (graceful shutdown, same port and data),
//! [`Server::crash`] (SIGKILL) followed by [`Server::start`], [`Server::kill_connection`]
//! (`KILL CONNECTION`), and [`Server::stop`]. Dropping a `Server` kills the process and
//! removes the directory, also when a test panics.
//!
//! Real clusters on 127.0.0.1, for the doctor, the watcher and the proxy:
//! [`Replication`] is a GTID primary with replicas (lag, a broken SQL thread, a promotion),
//! [`Galera`] a Galera cluster of three nodes by default (kill, stop, rejoin). Their members
//! are [`Server`]s with the same guarantees.
//!
//! The binaries are found on `PATH`, in `/usr/sbin` and `/usr/local/sbin`, or through the
//! `GONEAWAY_MARIADBD` and `GONEAWAY_MARIADB_INSTALL_DB` environment variables; a missing
//! `mariadbd` is a [`HarnessError::MariadbNotFound`] that says what to install.
//!
//! ```no_run
//! # async fn example() -> Result<(), goneaway_harness::HarnessError> {
//! use goneaway_harness::Server;
//!
//! let server = Server::builder().var("wait_timeout", 2).start().await?;
//! let pool = mysql_async::Pool::new(server.url().as_str());
//! // ... idle for three seconds, and the server closes the connection ...
//! server.restart().await?;
//! # drop(pool);
//! # Ok(())
//! # }
//! ```

mod binaries;
mod error;
mod galera;
mod join;
mod replication;
mod server;

pub use binaries::Binaries;
pub use error::HarnessError;
pub use galera::{Galera, GaleraBuilder, WsrepStatus, GALERA_PROVIDER};
pub use replication::{
    ReplicaStatus, Replication, ReplicationBuilder, SqlThreadHold, REPLICATION_USER,
};
pub use server::{Server, ServerBuilder, APP_PASSWORD, APP_USER, DATABASE};
