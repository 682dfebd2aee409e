//! The cause vocabulary and the error classifier of goneaway: why a MySQL/MariaDB
//! connection went away, whether a retry is safe, and what fixes it. This crate does no I/O.
//!
//! - [`Cause`] and [`Retry`] are the shared vocabulary of every goneaway face.
//! - [`classify_code`], [`classify_io`], [`classify_text`] (and, with the `mysql_async`
//!   feature, `classify_mysql_async`) turn one error into a [`Diagnosis`]: ranked causes,
//!   retry advice, an explanation, fixes and the facts that tell the causes apart.
//! - [`scan`] / [`scan_bytes`] find every error in a pasted log and group repeats into a
//!   [`Report`] of [`Finding`]s, rendered with [`Report::render_text`] or
//!   [`Report::render_markdown`], or serialised to JSON.
//! - [`sql::is_read_only`] tells a statement that may safely run twice.
//! - [`codes`] names the error numbers; [`ServerError`] displays as `number (SQLSTATE): message`.
//!
//! ```
//! use goneaway_core::{classify_code, scan, Cause, Retry};
//!
//! // One error from a driver:
//! let d = classify_code(2006, Some("HY000"), Some("MySQL server has gone away"));
//! assert_eq!(d.primary(), Cause::IdleTimeout);
//! assert_eq!(d.retry, Retry::ReconnectThenRetry); // nothing ran: reconnect, then retry
//!
//! // A whole pasted log:
//! let log = "\
//! pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query')
//! 2024-05-01T10:00:00.123456Z 42 [Note] [MY-010914] [Server] Aborted connection 42 to db: 'app' user: 'app' host: '10.0.0.7' (Got timeout reading communication packets).
//! ";
//! let report = scan(log).unwrap();
//! assert_eq!(report.findings.len(), 2);
//! assert_eq!(report.findings[0].retry, Retry::RetryIfIdempotent); // outcome unknown
//! println!("{}", report.render_text(false));
//! ```
pub mod cause;
pub mod classify;
pub mod codes;
mod patterns;
pub mod scan;
pub mod sql;

pub use cause::{Cause, Retry, UnknownIdentifier};
#[cfg(feature = "mysql_async")]
pub use classify::classify_mysql_async;
pub use classify::{classify_code, classify_error, classify_io, Candidate, Diagnosis};
pub use codes::ServerError;
pub use patterns::classify_text;
pub use scan::{scan, scan_bytes, Finding, InputError, Report, MAX_INPUT_BYTES};
