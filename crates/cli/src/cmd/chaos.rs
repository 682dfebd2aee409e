//! `goneaway chaos`: a fault-injecting relay in front of a server, to reproduce gone-away on purpose.

use std::process::ExitCode;

use anyhow::Context;
use goneaway_relay::{control, Fault, Relay, RelayConfig};

/// Exit code when a control command was refused or could not be delivered.
const EXIT_CONTROL_FAILED: u8 = 1;

/// Reproduce "server has gone away" on purpose: a fault-injecting TCP relay.
///
/// Point your application at --listen instead of the server. Faults are armed with --fault
/// at start and switched while it runs through the control interface (`goneaway chaos ctl`,
/// or any line-based client such as `nc`).
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Faults (for --fault and `ctl set`):
  blackhole-idle 350s   silently drop flows idle that long (AWS NAT/NLB: 350 s)
  reset-after 4096      TCP reset after N bytes of server->client data on each flow
  latency 50ms          delay every chunk each way
  refuse                reset new connections at once
  blackhole-new         accept new connections, never answer
  4031-idle 10s         MySQL 8.0.24+ inactivity error (4031) to flows idle that long, then close

Control commands (`goneaway chaos ctl COMMAND`):
  status | set <fault> | remove <fault name> | clear | reset | 4031 | help

Examples:
  goneaway chaos --upstream 127.0.0.1:3306 --listen 127.0.0.1:3307 --fault 'blackhole-idle 30s'
  goneaway chaos ctl set reset-after 100000
  goneaway chaos ctl reset

Exit codes:
  0  stopped cleanly (Ctrl-C or SIGTERM), or the control command was accepted
  1  the control command was refused or the control interface was unreachable
  64 bad arguments (an unknown fault, say)
  70 the relay could not start (address in use, bad address)"
)]
pub struct Args {
    #[command(subcommand)]
    ctl: Option<Ctl>,
    /// The MySQL/MariaDB server to relay to (`host:port`).
    #[arg(long, required = true)]
    upstream: Option<String>,
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:3307")]
    listen: String,
    /// Where the control interface listens (loopback only: it has no authentication).
    #[arg(long, default_value = "127.0.0.1:3308")]
    control: String,
    /// A fault armed from the start; repeat for several.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
}

#[derive(Debug, clap::Subcommand)]
enum Ctl {
    /// Send one command to a running relay's control interface and print its answer.
    Ctl {
        /// The control interface's address.
        #[arg(long, default_value = "127.0.0.1:3308")]
        control: String,
        /// The command, e.g. `status`, `set latency 100ms`, `reset`.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Ctl::Ctl { control, command }) = args.ctl {
        return ctl(&control, &command.join(" ")).await;
    }
    let upstream = args.upstream.context("--upstream is required")?;
    let mut config = RelayConfig::new(&args.listen, &upstream);
    for fault in &args.faults {
        config = config.fault(*fault);
    }
    let relay = Relay::start(config)
        .await
        .with_context(|| format!("starting the relay on {}", args.listen))?;
    let control = control::serve(&relay, args.control.as_str())
        .await
        .with_context(|| format!("starting the control interface on {}", args.control))?;
    println!(
        "goneaway chaos: relaying {} -> {upstream}; control on {}",
        relay.local_addr(),
        control.local_addr()
    );
    for fault in &args.faults {
        println!("  armed: {fault}");
    }
    println!("  Ctrl-C to stop");
    shutdown_signal().await;
    control.shutdown().await;
    relay.shutdown().await;
    eprintln!("goneaway chaos: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn ctl(addr: &str, command: &str) -> anyhow::Result<ExitCode> {
    match control::send(addr, command).await {
        Ok(answer) => {
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("goneaway chaos ctl: {e}");
            Ok(ExitCode::from(EXIT_CONTROL_FAILED))
        }
    }
}

/// Ctrl-C or SIGTERM (what `kill`, systemd and Kubernetes send).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
