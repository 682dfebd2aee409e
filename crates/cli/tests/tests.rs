//! The `goneaway` binary and the classifier against real servers and real faults.
//!
//! Modules:
//! - `util`: running the built binary.
//! - `causes`: every cause made to happen for real (harness + relay), and the classifier
//!   naming what a real client (mysql_async) got.
//! - `explain`: `goneaway explain` on pasted text, files, stdin, JSON, and bad input.
//! - `chaos`: `goneaway chaos` relaying to a real server, switched through `chaos ctl`.
//! - `demo`: `goneaway demo` end to end.

mod causes;
mod chaos;
mod demo;
mod explain;
mod util;
