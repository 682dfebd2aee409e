//! Finds why MySQL/MariaDB connections go away on a live server, and says exactly what to
//! change.
//!
//! - [`diagnose`] connects to a [`Target`](goneaway_connect::Target) read-only, gathers
//!   [`Facts`] (variables at both scopes, counters, the process list, managed/cluster
//!   recognition), samples counter rates ([`Sample`]), scans the error log and a kernel log
//!   ([`ErrorLogScan`]), classifies the application's own errors with the core, runs opt-in
//!   probes, and returns a [`Report`]: [`Finding`]s ranked by confidence with their
//!   [`Evidence`], the timeout chain ([`chain`]: pool, proxy, middlebox and server limits in
//!   the order they end an idle connection, and which must change), and
//!   [`Recommendations`] (a my.cnf snippet, `SET` statements, pool settings for nine
//!   frameworks) that never contradict each other.
//! - A report renders as text, Markdown ([`Report::render_markdown`]) or JSON
//!   ([`Report::to_json`], stable names under [`report::SCHEMA`]); its `exit_code` is 0
//!   (nothing found), 1 (findings) or 2 (could not diagnose — the connection error itself is
//!   then the finding).
//! - [`ping`] is the health check behind `goneaway ping`, with an exit code per failure kind.
//! - [`logs`] parses MySQL 5.7, 8.0 and MariaDB error logs on their own; [`read_log`] reads a
//!   log file, pipe or standard input with a bound on the bytes read ([`MAX_LOG_BYTES`]) and
//!   refuses binary data.
//!
//! ```no_run
//! # async fn example() {
//! use goneaway_connect::Target;
//! use goneaway_doctor::{diagnose, Options};
//!
//! let target = Target::from_url("mysql://monitor:secret@db:3306").unwrap();
//! let report = diagnose(&target, &Options::default()).await;
//! println!("{}", report.render_text(false));
//! std::process::exit(report.exit_code.into());
//! # }
//! ```

pub mod advice;
pub mod chain;
mod doctor;
pub mod facts;
mod finding;
pub mod logs;
pub mod ping;
pub mod probe;
pub mod report;
mod rules;
pub mod sample;
pub mod time;

use std::sync::Arc;

pub use advice::{PoolLimits, PoolSnippet, Recommendations, ServerSetting};
pub use chain::ProxyLayer;
pub use doctor::{diagnose, Options};
pub use facts::Facts;
pub use finding::{Evidence, Finding};
pub use logs::{
    read_log, scan_error_log, scan_kernel_log, ErrorLogScan, LogReadError, LogSource, LogText,
    MAX_LOG_BYTES,
};
pub use ping::{ping, PingOptions, PingReport, PingStatus};
pub use report::{Report, Status};
pub use sample::Sample;

/// The callback behind [`Progress`].
type ProgressSink = dyn Fn(Option<&str>) + Send + Sync;

/// Where long operations (sampling, probes) report progress: a callback given a message, or
/// `None` when the operation finished. The default reports nowhere.
#[derive(Clone, Default)]
pub struct Progress {
    sink: Option<Arc<ProgressSink>>,
}

impl Progress {
    /// Progress sent to `sink`.
    pub fn new(sink: impl Fn(Option<&str>) + Send + Sync + 'static) -> Progress {
        Progress {
            sink: Some(Arc::new(sink)),
        }
    }

    pub(crate) fn report(&self, message: &str) {
        if let Some(s) = &self.sink {
            s(Some(message));
        }
    }

    pub(crate) fn done(&self) {
        if let Some(s) = &self.sink {
            s(None);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.sink.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}
