//! `goneaway ping`: a health check for scripts and Kubernetes probes.

use std::process::ExitCode;
use std::time::Duration;

use goneaway_connect::{parse_duration, ConnectArgs};
use goneaway_doctor::{ping, PingOptions};

use crate::output::Format;

/// Check that a MySQL/MariaDB server accepts connections and answers.
///
/// Connects, pings and optionally runs a query, all within --timeout. With --wait, keeps
/// trying failures that may pass (unreachable, refused, timeout) until the server is up or
/// the time is over — for a script waiting for a server that is starting.
#[derive(Debug, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "\
Connection: --url, else MYSQL_URL, else a mysql:// DATABASE_URL; -h -P -u -p -S -D override it;
--defaults-file or ~/.my.cnf ([client]) fill in the rest.

Examples:
  goneaway ping --url mysql://monitor@db:3306
  goneaway ping -h 127.0.0.1 -u app --wait 30s --query 'SELECT COUNT(*) FROM app.jobs'
  # Kubernetes: exec: { command: [goneaway, ping, --timeout, 2s] }, with MYSQL_URL in env

Exit codes:
  0  healthy
  1  other failure (the --query failed, an unexpected error)
  2  an unusable connection target
  3  unreachable (no route, DNS failure)
  4  refused (port closed, too many connections, host blocked, shutting down)
  5  access denied (user, password or host not allowed)
  6  timeout (no answer within --timeout)
  64 bad arguments
  70 internal error"
)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Output format (markdown prints text).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Time limit for one attempt: connect, ping and query.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Keep retrying transient failures this long, e.g. 30s (progress on standard error when
    /// it is a terminal).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    wait: Option<Duration>,
    /// A statement to run after the ping; its first value is printed.
    #[arg(long, value_name = "SQL")]
    query: Option<String>,
    /// Print nothing; only the exit code tells.
    #[arg(short, long)]
    quiet: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = match args.connect.resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("goneaway ping: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let options = PingOptions {
        timeout: args.timeout,
        query: args.query.clone(),
        wait: args.wait,
        // Only a wait takes long enough to need it.
        progress: if args.quiet {
            goneaway_doctor::Progress::default()
        } else {
            crate::cmd::doctor::progress()
        },
    };
    let report = ping(&target, &options).await;
    if !args.quiet {
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            _ => println!("{}", report.render_text()),
        }
    }
    Ok(ExitCode::from(report.exit_code))
}
