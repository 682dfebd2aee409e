//! One module a subcommand: its arguments and its `run`.

pub mod chaos;
pub mod doctor;
pub mod explain;
pub mod ping;
pub mod proxy;
pub mod watch;

/// Exit code for a failure of goneaway itself (bad arguments exit 2, as clap does).
pub const EXIT_INTERNAL: u8 = 70;
