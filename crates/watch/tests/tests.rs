//! goneaway-watch against real servers.
//!
//! Modules:
//! - `serve`: `/metrics` and `/healthz` over real HTTP; a restart between polls is detected.

mod serve;
