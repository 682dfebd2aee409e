//! goneaway-connect: layering of URLs, environment, option files and flags.
//!
//! Modules:
//! - `layering`: precedence between `~/.my.cnf`, `--defaults-file`, URLs and flags, with
//!   real temporary option files; passwords never shown.

mod layering;
