//! The `goneaway` command: argument parsing and glue; the work happens in the library crates.
//!
//! Each subcommand lives in `cmd/<name>.rs` as a clap `Args` struct and a `run` function that
//! returns the process's exit code; `demo/` is the guided tour, one file a step.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod demo;
mod output;

/// MySQL connections that don't go away.
///
/// goneaway makes "MySQL server has gone away" (2006) and "Lost connection to MySQL server
/// during query" (2013) a solved problem: it explains them from any ecosystem's logs,
/// diagnoses a live server, keeps applications' sessions alive through its proxy, watches
/// servers for Prometheus, and reproduces the errors on purpose. Start with `goneaway demo`.
/// Every subcommand's --help documents its exit codes.
#[derive(Debug, Parser)]
#[command(name = "goneaway", version = VERSION, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter for diagnostics on stderr (`RUST_LOG` syntax), e.g. `debug` or
    /// `goneaway_relay=trace`.
    #[arg(long, global = true, env = "GONEAWAY_LOG", default_value = "warn")]
    log: String,
    /// How log lines on stderr are written: text (coloured only on a terminal, never with
    /// NO_COLOR) or json (one object per line: timestamp, level, target, message, fields).
    #[arg(
        long,
        global = true,
        env = "GONEAWAY_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT",
        default_value_t
    )]
    log_format: output::LogFormat,
}

/// `0.1.0 (1a2b3c4d5e)`: the version and the commit built from (`-dirty` when the tree had
/// changes); the version alone outside a git checkout. See `build.rs`.
const VERSION: &str = if env!("GONEAWAY_GIT_REV").is_empty() {
    env!("CARGO_PKG_VERSION")
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("GONEAWAY_GIT_REV"),
        ")"
    )
};

#[derive(Debug, Subcommand)]
enum Command {
    Explain(cmd::explain::Args),
    Chaos(cmd::chaos::Args),
    Proxy(cmd::proxy::Args),
    Doctor(cmd::doctor::Args),
    Ping(cmd::ping::Args),
    Watch(cmd::watch::Args),
    Demo(demo::Args),
    Completions(cmd::completions::Args),
    Man(cmd::man::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Usage errors get their own code (sysexits' EX_USAGE), so that 2 can keep the
        // meaning the subcommands give it (doctor: "could not diagnose").
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(cmd::EXIT_USAGE);
        }
    };
    // Generated from the parser itself; no runtime, no logging.
    let command = match cli.command {
        Command::Completions(args) => return report(cmd::completions::run(args, Cli::command())),
        Command::Man(args) => return report(cmd::man::run(args, Cli::command())),
        command => command,
    };
    output::init_logging(&cli.log, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("goneaway: cannot start the async runtime: {e}");
            return ExitCode::from(cmd::EXIT_INTERNAL);
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Explain(args) => cmd::explain::run(args).await,
            Command::Chaos(args) => cmd::chaos::run(args).await,
            Command::Proxy(args) => cmd::proxy::run(args).await,
            Command::Doctor(args) => cmd::doctor::run(args).await,
            Command::Ping(args) => cmd::ping::run(args).await,
            Command::Watch(args) => cmd::watch::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
        }
    });
    report(result)
}

/// A subcommand's exit code, or its error printed and [`cmd::EXIT_INTERNAL`].
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            // Each layer of the chain once (see `error_chain`).
            eprintln!(
                "goneaway: {}",
                goneaway_doctor::ping::error_chain(e.as_ref())
            );
            ExitCode::from(cmd::EXIT_INTERNAL)
        }
    }
}
