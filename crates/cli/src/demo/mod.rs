//! `goneaway demo`: a guided tour on a throwaway local MariaDB that goneaway starts itself.
//!
//! One file a step. Each step takes the running [`Server`] and prints what happens, so a
//! newcomer sees the real error, its explanation, and the same work surviving.

use std::process::ExitCode;
use std::time::Duration;

use goneaway_harness::Server;

mod doctor;
mod library;
mod plain;
mod proxy;
mod switchover;

/// See "MySQL server has gone away" happen, explained, on a throwaway local MariaDB.
///
/// Starts a private MariaDB on 127.0.0.1 with a short wait_timeout (nothing outside a
/// temporary directory is touched, and everything is removed at the end), lets a plain
/// connection idle past it, shows the real error a client gets, and explains it; then runs
/// the same idle work through the goneaway pool and through goneaway proxy without an
/// error, switches a replication pair's primary over under a client writing through the
/// proxy, and ends with the doctor's report on the server.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes:
  0  the tour ran
  3  MariaDB is not installed (the message says what to install)
  64 bad arguments
  70 a step failed unexpectedly")]
pub struct Args {
    /// The throwaway server's wait_timeout, in seconds: how long an idle connection lives.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
    wait_timeout: u64,
    /// Keep the server running at the end (until Ctrl-C) so you can try things on it.
    #[arg(long)]
    keep: bool,
}

/// Exit code when the server binaries are missing.
const EXIT_NO_MARIADB: u8 = 3;

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tour = Tour::new();
    tour.heading("goneaway demo");
    tour.say(&format!(
        "Starting a throwaway MariaDB on 127.0.0.1 with wait_timeout={}s …",
        args.wait_timeout
    ));
    let server = match Server::builder()
        .var("wait_timeout", args.wait_timeout)
        .var("interactive_timeout", args.wait_timeout)
        .start()
        .await
    {
        Ok(server) => server,
        Err(e @ goneaway_harness::HarnessError::MariadbNotFound { .. }) => {
            eprintln!("goneaway demo: {e}");
            return Ok(ExitCode::from(EXIT_NO_MARIADB));
        }
        Err(e) => return Err(e.into()),
    };
    tour.say(&format!("Server ready at {}", server.url_redacted()));
    let idle = Duration::from_secs(args.wait_timeout) + Duration::from_millis(1500);

    plain::run(&tour, &server, args.wait_timeout, idle).await?;
    tour.heading("3. The goneaway library: the same idle work survives");
    library::run(&server).await?;
    tour.heading("4. goneaway proxy: a plain client, unchanged, survives");
    proxy::run(&server).await?;
    tour.heading(
        "5. goneaway proxy in front of a replication pair: a switchover under a running client",
    );
    switchover::run().await?;
    tour.heading("6. goneaway doctor: what happened on this server?");
    doctor::run(&server).await?;

    tour.heading("Done");
    if args.keep {
        tour.say(&format!(
            "The server stays up at {} (user {}, password {}). Ctrl-C to stop and remove it.",
            server.addr(),
            goneaway_harness::APP_USER,
            goneaway_harness::APP_PASSWORD
        ));
        crate::cmd::chaos::shutdown_signal().await;
    }
    server.stop().await?;
    tour.say("The throwaway server is stopped and its directory removed.");
    Ok(ExitCode::SUCCESS)
}

/// How the tour prints: headings, narration, and waits with a visible countdown.
pub struct Tour {
    color: bool,
}

impl Tour {
    fn new() -> Tour {
        Tour {
            color: crate::output::use_color(),
        }
    }

    /// A section title.
    pub fn heading(&self, title: &str) {
        if self.color {
            println!("\n\x1b[1;36m== {title} ==\x1b[0m");
        } else {
            println!("\n== {title} ==");
        }
    }

    /// One line of narration.
    pub fn say(&self, line: &str) {
        println!("{line}");
    }

    /// What a program printed, indented so it stands apart from the narration.
    pub fn quote(&self, text: &str) {
        for line in text.lines() {
            if self.color {
                println!("    \x1b[33m{line}\x1b[0m");
            } else {
                println!("    {line}");
            }
        }
    }

    /// Waits, showing the seconds as they pass (a wait is the longest part of the tour).
    pub async fn wait(&self, what: &str, duration: Duration) {
        use std::io::Write;
        let mut left = duration;
        let step = Duration::from_secs(1);
        print!("{what}:");
        let _ = std::io::stdout().flush();
        while !left.is_zero() {
            let nap = left.min(step);
            tokio::time::sleep(nap).await;
            left -= nap;
            print!(" {}s", (duration - left).as_secs_f32().round());
            let _ = std::io::stdout().flush();
        }
        println!();
    }
}
