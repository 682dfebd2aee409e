//! `goneaway doctor`: why does my application get 2006/2013 from this server, and what
//! exactly do I change?

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use goneaway_connect::{parse_duration, ConnectArgs};
use goneaway_doctor::{diagnose, read_log, LogReadError, LogSource, Options, Progress, ProxyLayer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{use_color, Format};

/// Diagnose lost connections on a live MySQL/MariaDB server.
///
/// Connects read-only (a monitoring account is enough) and reads the timeout and packet
/// settings at GLOBAL and SESSION scope, Uptime, Aborted_clients/Aborted_connects,
/// Connection_errors_*, the process list, the error log and, on a Galera node or a replica,
/// the cluster's or the replication's state; samples the counters for rates;
/// classifies the application's own errors; then ranks the causes with their evidence and
/// prints the server settings (my.cnf and SET statements) and the pool settings for
/// SQLAlchemy, Django, HikariCP, Node mysql2, PHP PDO, Go, sqlx, mysql_async and goneaway.
///
/// It changes nothing on the server. Probes (--probe-idle, --probe-packet) open extra
/// connections but change no setting.
#[derive(Debug, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "\
Connection: --url, else MYSQL_URL, else a mysql:// DATABASE_URL; the mysql CLI's -h -P -u -p -S -D
flags override it; --defaults-file or ~/.my.cnf ([client]) fill in the rest; MYSQL_PWD supplies
a missing password. Passwords never appear in the output.

Long steps (--sample, --probe-idle, --probe-packet) show progress on standard error when it is
a terminal; the report alone goes to standard output.

Logs (--error-log, --kernel-log, --app-log) are read before connecting, at most 16 MiB each: the
last 16 MiB of a regular file; a pipe, standard input (`-`, for one of them) or a device must
give less. Binary data is refused.

Timeout chain: the report lists every layer that ends or keeps alive an idle connection, the
first to act first: the pool (--pool-lifetime, --app-timeout), the goneaway proxy
(--proxy-config), a NAT gateway or load balancer (--middlebox-idle, or measured by --probe-idle),
and the server (wait_timeout at both scopes, interactive_timeout, MariaDB's
idle_*_transaction_timeout); net_read_timeout/net_write_timeout apart, as mid-transfer limits.
A layer closer to the application must act before the next one out cuts, by a margin of 10 %
(at least 2 s); the table says which layer must change and to what.

Examples:
  goneaway doctor --url mysql://monitor@db:3306
  goneaway doctor --url mysql://monitor@db:3306 --pool-lifetime 30m --middlebox-idle 350
  goneaway doctor -h db -u monitor --pool-lifetime 30m --error \"(2006, 'MySQL server has gone away')\"
  journalctl -k | goneaway doctor --kernel-log - --since 24h --format markdown

Exit codes:
  0  nothing found
  1  findings (causes of lost connections, a Galera cluster or replication in a state that
     makes clients fail, or a timeout chain in which a layer recycles or pings too late)
  2  could not diagnose: the connection failed (the failure itself is diagnosed: unreachable,
     access denied, too many connections, host blocked)
  64 bad arguments
  65 unusable log: not a text log, or more than 16 MiB from a pipe or device; a --proxy-config
     the proxy would refuse
  66 a log cannot be opened or read (or the --proxy-config file)
  70 internal error"
)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Read the counters twice this far apart and report rates (0 to read once), e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    sample: Duration,
    /// The server's error log (`-` reads standard input); without it, the server's own
    /// log_error is read when this host can read it.
    #[arg(long, value_name = "PATH")]
    error_log: Option<PathBuf>,
    /// Do not read the server's log_error file.
    #[arg(long, conflicts_with = "error_log")]
    no_server_log: bool,
    /// Only consider log events since then: a duration back (24h) or a date (2024-05-01).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// A kernel log (dmesg, journalctl -k) to scan for OOM kills; `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    kernel_log: Option<PathBuf>,
    /// An error the application saw, pasted (repeatable).
    #[arg(long = "error", value_name = "TEXT")]
    errors: Vec<String>,
    /// An application log to classify (repeatable; `-` reads standard input).
    #[arg(long, value_name = "PATH")]
    app_log: Vec<PathBuf>,
    /// The pool's idle timeout: how long the application keeps an idle connection.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    app_timeout: Option<Duration>,
    /// The pool's maximum connection lifetime (HikariCP maxLifetime, SQLAlchemy pool_recycle,
    /// Go SetConnMaxLifetime).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pool_lifetime: Option<Duration>,
    /// How long connecting may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Hold connections idle this long and report when they die (finds NAT gateways and load
    /// balancers that drop flows before wait_timeout).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    probe_idle: Option<Duration>,
    /// Send growing packets to measure the effective max_allowed_packet both ways.
    #[arg(long)]
    probe_packet: bool,
    /// A known idle limit of a NAT gateway, load balancer or firewall between the application
    /// and the server, e.g. 350 (AWS NAT gateway and NLB: 350 s), 4m (Azure load balancer's
    /// default), 1200 (GCP Cloud NAT, established TCP). Joins the timeout chain.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    middlebox_idle: Option<Duration>,
    /// The configuration (TOML) of the goneaway proxy the application connects through: its
    /// client_idle_timeout_secs and keepalive_interval_secs join the timeout chain.
    #[arg(long, value_name = "FILE")]
    proxy_config: Option<PathBuf>,
    /// Report a replica this far behind its primary (Seconds_Behind_Master).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    replica_lag: Duration,
}

/// Progress on standard error while something slow runs (sampling, probes, `ping --wait`):
/// an indicatif spinner with the operation's own message, only when standard error is a
/// terminal, so scripts and pipes get clean output.
pub(crate) fn progress() -> Progress {
    if !std::io::stderr().is_terminal() {
        return Progress::default();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    // A later step (the probes after the sample) may report after an earlier one is done:
    // the spinner restarts then, rather than once per message.
    let ticking = AtomicBool::new(false);
    Progress::new(move |message| match message {
        Some(m) => {
            bar.set_message(m.to_string());
            if !ticking.swap(true, Ordering::Relaxed) {
                bar.reset();
                bar.enable_steady_tick(Duration::from_millis(120));
            }
        }
        None => {
            ticking.store(false, Ordering::Relaxed);
            bar.finish_and_clear();
        }
    })
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = match args.connect.resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("goneaway doctor: {e}");
            return Ok(ExitCode::from(goneaway_doctor::report::EXIT_FAILED));
        }
    };
    let now = goneaway_doctor::time::now_unix();
    let since = match &args.since {
        Some(s) => match goneaway_doctor::time::parse_since(s, now) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("goneaway doctor: --since: {e}");
                return Ok(ExitCode::from(goneaway_doctor::report::EXIT_FAILED));
            }
        },
        None => None,
    };
    let logs = match read_logs(&args) {
        Ok(logs) => logs,
        Err(code) => return Ok(ExitCode::from(code)),
    };
    let proxy = match args
        .proxy_config
        .as_deref()
        .map(read_proxy_config)
        .transpose()
    {
        Ok(p) => p,
        Err(code) => return Ok(ExitCode::from(code)),
    };
    let mut app_text = args.errors.clone();
    app_text.extend(logs.app);
    let options = Options {
        sample: args.sample,
        error_log: logs.error,
        read_server_log: !args.no_server_log,
        kernel_log: logs.kernel,
        since,
        app_text,
        app_timeout: args.app_timeout,
        pool_lifetime: args.pool_lifetime,
        connect_timeout: args.connect_timeout,
        probe_idle: args.probe_idle,
        probe_packet: args.probe_packet,
        middlebox_idle: args.middlebox_idle,
        proxy,
        replica_lag: args.replica_lag,
        progress: progress(),
    };
    let report = diagnose(&target, &options).await;
    let out = match args.format {
        Format::Text => report.render_text(use_color()),
        Format::Json => report.to_json() + "\n",
        Format::Markdown => report.render_markdown(),
    };
    print!("{out}");
    Ok(ExitCode::from(report.exit_code))
}

/// The proxy's idle-relevant settings from its own configuration file, read with the
/// proxy's own parser; an unusable file ends the run with its exit code (the error).
/// The proxy's metrics state none of these settings, so its file is the source.
fn read_proxy_config(path: &std::path::Path) -> Result<ProxyLayer, u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("goneaway doctor: --proxy-config: {}: {e}", path.display());
        super::EXIT_NO_INPUT
    })?;
    let config = goneaway_proxy::ProxyConfig::from_toml(&text).map_err(|e| {
        // Only the error's first line: a parse error quotes the file's text, and the file
        // holds the backend's password.
        let e = e.to_string();
        eprintln!(
            "goneaway doctor: --proxy-config: {}: {} (the file's lines are not shown: it holds passwords)",
            path.display(),
            e.lines().next().unwrap_or_default()
        );
        super::EXIT_DATA_ERR
    })?;
    Ok(ProxyLayer {
        client_idle_timeout: config.client_idle_timeout,
        keepalive_interval: config.keepalive_interval,
        source: path.display().to_string(),
    })
}

/// The logs named on the command line, read.
struct Logs {
    error: Option<goneaway_doctor::LogText>,
    kernel: Option<String>,
    app: Vec<String>,
}

/// Reads every log named on the command line, each with the library's bound, before
/// anything connects; a log that cannot be used ends the run with its exit code, which is
/// returned as the error.
fn read_logs(args: &Args) -> Result<Logs, u8> {
    let error = args.error_log.as_deref().map(LogSource::from_arg);
    let kernel = args.kernel_log.as_deref().map(LogSource::from_arg);
    let app: Vec<LogSource> = args
        .app_log
        .iter()
        .map(|p| LogSource::from_arg(p))
        .collect();
    let stdin_users = error
        .iter()
        .chain(&kernel)
        .chain(&app)
        .filter(|s| s.is_stdin())
        .count();
    if stdin_users > 1 {
        eprintln!(
            "goneaway doctor: only one of --error-log, --kernel-log and --app-log can read standard input (-)"
        );
        return Err(super::EXIT_USAGE);
    }
    let read = |flag: &str, source: &LogSource| {
        read_log(source).map_err(|e: LogReadError| {
            eprintln!("goneaway doctor: {flag}: {e}");
            if e.is_unreadable() {
                super::EXIT_NO_INPUT
            } else {
                super::EXIT_DATA_ERR
            }
        })
    };
    Ok(Logs {
        error: error.map(|s| read("--error-log", &s)).transpose()?,
        kernel: kernel
            .map(|s| read("--kernel-log", &s).map(|log| log.text))
            .transpose()?,
        app: app
            .iter()
            .map(|s| read("--app-log", s).map(|log| log.text))
            .collect::<Result<_, _>>()?,
    })
}
