//! One module a subcommand: its arguments and its `run`.

pub mod chaos;
pub mod completions;
pub mod doctor;
pub mod explain;
pub mod man;
pub mod ping;
pub mod proxy;
pub mod watch;

/// Exit code for bad arguments (a usage error), for every subcommand: sysexits' EX_USAGE.
pub const EXIT_USAGE: u8 = 64;

/// Exit code for input that was read but cannot be used (a binary file given as a log, a
/// pipe over the size limit): sysexits' EX_DATAERR.
pub const EXIT_DATA_ERR: u8 = 65;

/// Exit code for an input file that cannot be opened or read: sysexits' EX_NOINPUT.
pub const EXIT_NO_INPUT: u8 = 66;

/// Exit code for a failure of goneaway itself.
pub const EXIT_INTERNAL: u8 = 70;
