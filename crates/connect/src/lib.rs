//! Connection targets for goneaway's commands: where to connect and as whom, from the places
//! MySQL users already keep that — with the password never shown.
//!
//! - [`Target`] is one server and account; [`Target::opts`] turns it into `mysql_async`
//!   options, [`Target::redacted`] (and `Display`/`Debug`) show it without the password.
//! - [`ConnectArgs`] is the clap argument group shared by `doctor`, `ping` and `watch`:
//!   `--url`, `MYSQL_URL`/`DATABASE_URL`, the mysql CLI's `-h -P -u -p -S -D`,
//!   `--defaults-file` and `~/.my.cnf`. [`ConnectArgs::resolve`] layers them.
//! - [`mycnf`] reads the `[client]` section of an option file.
//! - [`parse_duration`] reads `30s`, `500ms`, `2m`, `1h` (a bare number is seconds).
//!
//! ```
//! use goneaway_connect::Target;
//!
//! let target = Target::from_url("mysql://app:s3cret@db.internal:3307/shop").unwrap();
//! assert_eq!(target.redacted(), "mysql://app:****@db.internal:3307/shop");
//! assert!(!format!("{target:?}").contains("s3cret"));
//! let opts = target.opts().unwrap();
//! assert_eq!(opts.tcp_port(), 3307);
//! assert_eq!(opts.pass(), Some("s3cret"));
//! ```

mod args;
mod duration;
mod error;
pub mod mycnf;
mod target;

pub use args::ConnectArgs;
pub use duration::{format_duration, parse_duration};
pub use error::ConnectError;
pub use target::{Password, Source, Target};
