//! `goneaway man`: manual pages in roff, generated from the argument parser.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Print the goneaway(1) manual page, or write one page per subcommand.
///
/// Without --out-dir, prints goneaway(1) (every subcommand listed) on standard output; with
/// it, writes goneaway.1 and goneaway-<subcommand>.1 (goneaway-chaos-ctl.1 and so on) there.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  goneaway man | man -l -
  goneaway man --out-dir /usr/local/share/man/man1 && mandb

Exit codes:
  0  printed or written
  64 bad arguments
  70 the pages could not be written")]
pub struct Args {
    /// Write every page into this directory instead of printing goneaway(1).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Renders the pages of `command` (the whole `goneaway` parser).
pub fn run(args: Args, command: clap::Command) -> anyhow::Result<ExitCode> {
    match args.out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::output::print_bytes(&page).context("writing the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
