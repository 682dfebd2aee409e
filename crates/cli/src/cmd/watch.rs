//! `goneaway watch`: poll servers and serve what is seen as Prometheus metrics.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use goneaway_connect::{parse_duration, ConnectArgs, Target};
use goneaway_watch::{WatchConfig, Watcher};

/// Watch servers for restarts, aborted connections, connections near wait_timeout, and the
/// state of their Galera cluster or replication.
///
/// Polls each server every --interval and serves /metrics (Prometheus text format) and
/// /healthz on --listen. Logs a line on standard error when something changes: a server
/// stops answering or answers again, restarts (Uptime went down), or its Aborted_* rate
/// jumps. Keeps running while servers go away and come back; stops on Ctrl-C or SIGTERM.
#[derive(Debug, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "\
The first server comes from --url / MYSQL_URL / DATABASE_URL / -h -P -u -p -S / my.cnf, as for
doctor; --also adds more by URL.

Metrics (label server=URL without password): goneaway_up, goneaway_uptime_seconds,
goneaway_restarts_detected_total, goneaway_aborted_clients_total,
goneaway_aborted_connects_total, goneaway_aborted_clients_per_hour,
goneaway_aborted_connects_per_hour, goneaway_connection_errors_per_hour{kind},
goneaway_threads_connected, goneaway_max_connections, goneaway_connection_headroom,
goneaway_wait_timeout_seconds, goneaway_connections_near_wait_timeout, goneaway_read_only,
goneaway_finding_confidence{cause}, goneaway_poll_errors_total{cause}.
Galera nodes only: goneaway_galera_cluster_size, goneaway_galera_cluster_address_nodes,
goneaway_galera_primary, goneaway_galera_ready, goneaway_galera_local_state (4 = Synced),
goneaway_galera_flow_control_paused_ratio.
Replicas only: goneaway_replica_lag_seconds (absent while NULL), goneaway_replica_io_running,
goneaway_replica_sql_running (a channel label for named channels).

Exit codes:
  0  stopped by a signal
  2  an unusable connection target, or the listen address is taken
  64 bad arguments
  70 internal error"
)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Another server to watch, as a URL (repeatable).
    #[arg(long, value_name = "URL")]
    also: Vec<String>,
    /// Where to serve /metrics and /healthz (loopback by default: metrics name servers).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9106")]
    listen: SocketAddr,
    /// Time between polls of each server.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    interval: Duration,
    /// Time limit for one poll.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut targets = Vec::new();
    match args.connect.resolve() {
        Ok(t) => targets.push(t),
        Err(e) => {
            eprintln!("goneaway watch: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    for url in &args.also {
        match Target::from_url(url) {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("goneaway watch: --also: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let config = WatchConfig {
        listen: args.listen,
        interval: args.interval.max(Duration::from_millis(100)),
        timeout: args.timeout,
        ..WatchConfig::new(targets)
    };
    let watcher = match Watcher::bind(config).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("goneaway watch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    println!(
        "goneaway watch: serving http://{}/metrics and /healthz",
        watcher.local_addr()
    );
    let _ = std::io::stdout().flush();
    watcher.run(crate::cmd::chaos::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}
