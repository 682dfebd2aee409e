//! `goneaway completions`: a shell completion script, generated from the argument parser.

use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

/// Print a completion script for a shell on standard output.
///
/// Generated from the same definitions as the arguments themselves, so it never falls
/// behind a release.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install:
  bash:        goneaway completions bash > /etc/bash_completion.d/goneaway
               (or ~/.local/share/bash-completion/completions/goneaway)
  zsh:         goneaway completions zsh > \"${fpath[1]}/_goneaway\"
  fish:        goneaway completions fish > ~/.config/fish/completions/goneaway.fish
  elvish:      goneaway completions elvish >> ~/.config/elvish/rc.elv
  powershell:  goneaway completions powershell >> $PROFILE

Exit codes:
  0  printed
  64 bad arguments")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script for `command` (the whole `goneaway` parser) to standard output.
pub fn run(args: Args, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_owned();
    // Into memory first: clap_complete panics on a failed write (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    crate::output::print_bytes(&script).context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}
