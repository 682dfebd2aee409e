//! One module a subcommand: its arguments and its `run`.

pub mod chaos;
pub mod explain;

/// Exit code for a failure of goneaway itself (bad arguments exit 2, as clap does).
pub const EXIT_INTERNAL: u8 = 70;
