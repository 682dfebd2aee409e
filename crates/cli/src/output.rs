//! What every subcommand's output shares: the format flag, whether to use colour, and how
//! diagnostics are logged.

use std::io::{IsTerminal, Write};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Human text (the default).
    #[default]
    Text,
    /// JSON with stable field names, for scripts.
    Json,
    /// Markdown, to paste into a ticket.
    Markdown,
}

/// Writes `bytes` to standard output; a reader that went away (`| head`) is not an error.
pub fn print_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// How log lines on standard error are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// One human line per event (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the event's
    /// fields), for log shippers.
    Json,
}

/// Colours on standard output: only on a terminal, and never with `NO_COLOR` set
/// (https://no-color.org).
pub fn use_color() -> bool {
    color_on(&std::io::stdout())
}

/// Colours on standard error (log lines, progress): the same rule for that stream, so
/// `goneaway watch 2>watch.log` writes plain text.
pub fn use_color_stderr() -> bool {
    color_on(&std::io::stderr())
}

fn color_on(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && !no_color()
}

/// `NO_COLOR` set to anything but the empty string.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Sends `tracing` events to standard error, filtered by `filter` (`RUST_LOG` syntax), in
/// `format`. A filter that does not parse is reported and replaced by `warn`.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("goneaway: --log {filter:?} is not a valid filter ({e}); using warn");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(use_color_stderr()).init(),
        // Flattened, so that `message` sits beside `level` where shippers look for it.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}
