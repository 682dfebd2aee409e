//! `goneaway explain`: which cause is behind a pasted error, whether a retry is safe, what fixes it.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::output::{use_color, Format};

/// Exit code when at least one error was explained.
pub const EXIT_EXPLAINED: u8 = 0;
/// Exit code when the input holds no error goneaway recognises.
pub const EXIT_NOTHING_FOUND: u8 = 1;
/// Exit code when the input cannot be read as a log: empty, binary, not UTF-8, too large,
/// or an unreadable file.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Explain MySQL/MariaDB errors pasted from any ecosystem.
///
/// Reads the error text from the arguments, from --file, or from standard input (a whole log
/// may be piped in). Finds every error in it, groups repeats, and prints for each: the cause,
/// whether a retry is safe, why, the fixes, and which facts would tell candidate causes
/// apart.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  goneaway explain 'ERROR 2006 (HY000): MySQL server has gone away'
  kubectl logs deploy/api | goneaway explain --format json
  goneaway explain --file /var/log/mysql/error.log --format markdown

Exit codes:
  0  at least one error explained
  1  no MySQL/MariaDB error found in the input
  2  unusable input (empty, binary, not UTF-8, over 16 MiB, unreadable file)
  64 bad arguments
  70 internal error")]
pub struct Args {
    /// The error text; several arguments are joined with spaces. Without it (or with `-`),
    /// standard input is read.
    text: Vec<String>,
    /// Read the log from this file instead.
    #[arg(short, long, conflicts_with = "text")]
    file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = match read_input(&args) {
        Ok(input) => input,
        Err(message) => {
            eprintln!("goneaway explain: {message}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let report = match goneaway_core::scan_bytes(&input) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("goneaway explain: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialising the report")?
        ),
        Format::Markdown => print!("{}", report.render_markdown()),
        Format::Text => print!("{}", report.render_text(use_color())),
    }
    if report.findings.is_empty() {
        if args.format == Format::Text {
            eprintln!(
                "goneaway explain: no MySQL/MariaDB error recognised in {} line(s); paste the \
                 whole error line or stack trace",
                report.lines_scanned
            );
        }
        return Ok(ExitCode::from(EXIT_NOTHING_FOUND));
    }
    Ok(ExitCode::from(EXIT_EXPLAINED))
}

/// The raw input, read with a bound so a huge pipe is refused rather than held in memory.
fn read_input(args: &Args) -> Result<Vec<u8>, String> {
    if let Some(path) = &args.file {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let size = || regular_size(file.metadata());
        return read_bounded(&file, size).map_err(|e| match e {
            BoundedError::Io(e) => format!("cannot read {}: {e}", path.display()),
            e => format!("{}: {e}", path.display()),
        });
    }
    if !args.text.is_empty() && args.text != ["-"] {
        return Ok(args.text.join(" ").into_bytes());
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("goneaway explain: paste the error or log, then press Ctrl-D");
    }
    read_bounded(std::io::stdin().lock(), stdin_size).map_err(|e| match e {
        BoundedError::Io(e) => format!("cannot read standard input: {e}"),
        e => format!("standard input: {e}"),
    })
}

/// Why [`read_bounded`] gave up.
#[derive(Debug)]
enum BoundedError {
    /// Over the scanner's limit; `size` when the source is a regular file, whose size is
    /// known.
    TooLarge { size: Option<u64> },
    /// Reading failed.
    Io(std::io::Error),
}

impl std::fmt::Display for BoundedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limit = goneaway_core::MAX_INPUT_BYTES;
        let advice = "pass the part around the error (tail -c 1M, grep -C 20)";
        match self {
            BoundedError::TooLarge { size: Some(size) } => write!(
                f,
                "the input is {size} bytes; the limit is {limit} bytes (16 MiB): {advice}"
            ),
            BoundedError::TooLarge { size: None } => write!(
                f,
                "the input is more than {limit} bytes, the limit (16 MiB): {advice}"
            ),
            BoundedError::Io(e) => e.fmt(f),
        }
    }
}

/// The size of a regular file; `None` for pipes, devices, sockets (and /proc files, which
/// say 0 but are read with the same bound).
fn regular_size(metadata: std::io::Result<std::fs::Metadata>) -> Option<u64> {
    metadata.ok().filter(|m| m.is_file()).map(|m| m.len())
}

/// The size of standard input when it is a redirected regular file (`< app.log`).
fn stdin_size() -> Option<u64> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    regular_size(std::fs::File::from(fd).metadata())
}

/// Reads the input, refusing one over the scanner's limit without holding more than one
/// byte over it. `size` (called before and, when the limit is passed, after reading) names
/// the real size of a regular file; anything else is "more than the limit".
fn read_bounded(
    reader: impl Read,
    size: impl Fn() -> Option<u64>,
) -> Result<Vec<u8>, BoundedError> {
    let limit = goneaway_core::MAX_INPUT_BYTES as u64;
    let too_large = || BoundedError::TooLarge {
        size: size().filter(|&len| len > limit),
    };
    // The size only refuses early and sizes the buffer; the read itself is what is bounded.
    let known = size();
    if known.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    // One byte more than the file says, so its end is seen without the buffer doubling.
    let mut input = Vec::with_capacity(known.map_or(64 * 1024, |len| len as usize + 1));
    reader
        .take(limit + 1)
        .read_to_end(&mut input)
        .map_err(BoundedError::Io)?;
    if input.len() as u64 > limit {
        // A file that grew while it was read says its new size.
        return Err(too_large());
    }
    Ok(input)
}
