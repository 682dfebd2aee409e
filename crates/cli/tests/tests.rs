//! The `goneaway` binary and the classifier against real servers and real faults.
//!
//! Modules:
//! - `util`: running the built binary.
//! - `causes`: every cause made to happen for real (harness + relay), and the classifier
//!   naming what a real client (mysql_async) got.
//! - `explain`: `goneaway explain` on pasted text, files, stdin, JSON, and bad input.
//! - `chaos`: `goneaway chaos` relaying to a real server, switched through `chaos ctl`.
//! - `demo`: `goneaway demo` end to end.
//! - `doctor`: `goneaway doctor` on staged causes, flags and option files, failed connections.
//! - `packaging`: running in production: logs on pipes and terminals (text, JSON),
//!   `--version`, shell completions, man pages, the systemd units (`systemd-analyze`), the
//!   example proxy configuration started for real and used by the `mariadb` client.
//! - `ping`: `goneaway ping` exit codes, JSON, `--wait` across a start.
//! - `prometheus`: a real Prometheus scraping watch and proxy through real faults, and a
//!   replica and a Galera cluster in trouble, with a proxy reading on that replica; the shipped alert rules (promtool unit tests
//!   too) and every dashboard query checked on what it stored.
//! - `proxy`: `goneaway proxy` in front of a real server: an idle session, /metrics, SIGTERM.
//! - `proxy_abuse`: `goneaway proxy` under floods that never log in, oversized login
//!   packets, password guessing and idle sessions.
//! - `proxy_reload`: SIGHUP under load: accounts, limits and the backend change with no
//!   session dropped and no client-visible error; a bad file leaves the old one in force.
//! - `watch`: `goneaway watch` serving /metrics and logging a restart.

mod causes;
mod chaos;
mod demo;
mod doctor;
mod explain;
mod packaging;
mod ping;
mod prometheus;
mod proxy;
mod proxy_abuse;
mod proxy_reload;
mod util;
mod watch;
