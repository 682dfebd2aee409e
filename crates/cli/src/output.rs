//! What every subcommand's output shares: the format flag and whether to use colour.

use std::io::IsTerminal;

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

/// Colours only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
