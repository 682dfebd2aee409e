//! One module a subcommand: its arguments and its `run`.

pub mod chaos;
pub mod doctor;
pub mod explain;
pub mod ping;
pub mod proxy;
pub mod watch;

/// Exit code for bad arguments (a usage error), for every subcommand: sysexits' EX_USAGE.
pub const EXIT_USAGE: u8 = 64;

/// Exit code for a failure of goneaway itself.
pub const EXIT_INTERNAL: u8 = 70;
