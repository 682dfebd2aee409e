//! `goneaway proxy`: a MySQL-protocol proxy that keeps application sessions alive.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use goneaway_proxy::{Account, BackendTarget, ClusterKind, Proxy, ProxyConfig, ServerAddr};

/// A MySQL-protocol proxy: applications in any language, unchanged, stop seeing "server has
/// gone away".
///
/// Point the application at --listen instead of the server. The proxy keeps backend
/// connections healthy (it reads the server's wait_timeout and recycles or pings below it),
/// replaces a backend that died while the client was idle (timeout, KILL, restart, crash,
/// 4031), restores the session's database and variables and prepared statements on the
/// fresh one, replays only statements that are safe to run twice, and answers oversized
/// packets with ERR 1153 instead of a dead connection. State it cannot restore (an open
/// transaction, user variables, temporary tables, locks) is reported in a clear error, and
/// the session goes on.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Who may log in: the server's own accounts (mysql_native_password), checked against
mysql.user, which the proxy reads with the backend URL's account (it needs SELECT on
mysql.user); such a session logs in to the server as its own account, so the server's
privileges apply. Besides, --user with the password from --password-env or --password-file
(or, without --user, the backend URL's own account) logs in with any plugin, and its
sessions use the backend URL's account on the server. --no-server-accounts admits only
those.

With --tls-cert and --tls-key the proxy offers TLS (1.2 and 1.3) to clients, and
--require-tls refuses clients that do not use it. The connection to the server stays plain
text: keep the proxy next to the server.

Examples:
  goneaway proxy --backend mysql://app:secret@127.0.0.1:3306/app
  APP_PW=s3cret goneaway proxy --listen 127.0.0.1:6033 --backend \"$DATABASE_URL\" \\
      --user app --password-env APP_PW --metrics 127.0.0.1:9633
  goneaway proxy --config /etc/goneaway/proxy.toml
  goneaway proxy --backend mysql://app:secret@db1:3306/app --server db2:3306 --cluster replication
  goneaway proxy --backend \"$DATABASE_URL\" --tls-cert proxy.crt --tls-key proxy.key --require-tls

Exit codes:
  0  stopped cleanly (Ctrl-C or SIGTERM), sessions drained
  64 bad arguments
  70 the proxy could not start (address in use, bad configuration)")]
pub struct Args {
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:6033")]
    listen: String,
    /// The server behind the proxy, as mysql://user:password@host:port/db (also
    /// MYSQL_URL / DATABASE_URL).
    #[arg(long, env = "MYSQL_URL", hide_env_values = true)]
    backend: Option<String>,
    /// A member of the cluster behind the proxy, as host:port (repeat for each); each uses
    /// the --backend URL's account and database, and the backend's own address is a
    /// member too. New server connections go to the writer the proxy's monitor names, and
    /// sessions follow it through switchovers and failovers.
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// How the writer among the --server members is told: replication (the one writable
    /// server that replicates from nobody), galera (a Synced node in the primary
    /// component), or auto (galera when the servers say wsrep_on; the default).
    #[arg(long, value_name = "KIND")]
    cluster: Option<String>,
    /// How long a statement waits while the cluster has no writer, in seconds (default
    /// 30).
    #[arg(long, value_name = "SECS")]
    switchover_wait: Option<f64>,
    /// How often the monitor polls each --server, in seconds (default 0.5).
    #[arg(long, value_name = "SECS")]
    monitor_interval: Option<f64>,
    /// A TOML configuration file; flags given on the command line win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The account clients log in to the proxy with.
    #[arg(long)]
    user: Option<String>,
    /// The environment variable holding --user's password.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    password_env: Option<String>,
    /// A file holding --user's password (its first line).
    #[arg(long, value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics (/metrics) and a health check (/health) here; keep it on
    /// loopback.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// A certificate chain (PEM) to offer clients TLS with; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Refuse clients that log in without TLS (they get error 3159).
    #[arg(long)]
    require_tls: bool,
    /// Admit only the configured account (--user, or the backend URL's), not the
    /// server's own accounts.
    #[arg(long)]
    no_server_accounts: bool,
    /// No commit marks: a COMMIT lost with its connection stays "outcome unknown", and the
    /// server holds nothing of the proxy's (no goneaway_proxy schema, no extra insert per
    /// write transaction).
    #[arg(long)]
    no_commit_marks: bool,
    /// Share server connections between client sessions: a session holds one only for a
    /// statement, a transaction, or state that lives in it (pins are counted and logged),
    /// so idle clients cost none and more clients than the server allows are served.
    #[arg(long)]
    multiplex: bool,
    /// In front of a replicated cluster, with --multiplex: send SELECTs (text or prepared)
    /// outside transactions to a replica that is at most --max-replica-lag behind and has
    /// applied the session's own last write; other reads and writes go to the writer.
    #[arg(long, requires = "multiplex")]
    replica_reads: bool,
    /// How far behind a replica may be and still serve reads, in seconds (default 10).
    #[arg(long, value_name = "SECS")]
    max_replica_lag: Option<f64>,
    /// With --multiplex: how long a shared server connection may stay unused before it is
    /// closed, in seconds (default 60, at most half the server's wait_timeout).
    #[arg(long, value_name = "SECS")]
    pool_idle_limit: Option<f64>,
    /// Never replay a transaction lost before its COMMIT: the session goes to the
    /// failed-transaction state at once.
    #[arg(long)]
    no_transaction_replay: bool,
    /// How long a command waits for a restarting server, in seconds.
    #[arg(long, value_name = "SECS")]
    server_wait: Option<f64>,
    /// Logged-in client sessions at most (default 1000).
    #[arg(long)]
    max_clients: Option<usize>,
    /// Connections still logging in, at most (default 1024, and 256 per client address,
    /// max_pending_logins_per_address in TOML); at a bound the oldest pending login is
    /// closed to make room.
    #[arg(long, value_name = "N")]
    max_pending_logins: Option<usize>,
    /// Seconds from connect to the end of the login, TLS included (default 10).
    #[arg(long, value_name = "SECS")]
    login_timeout: Option<f64>,
    /// Failed logins (per address and user) after which each attempt is delayed, 500 ms
    /// doubling up to 10 s (default 3; 0 turns it off).
    #[arg(long, value_name = "N")]
    failed_login_threshold: Option<u32>,
    /// Close client sessions idle this many seconds, with error 4031 (default: never).
    #[arg(long, value_name = "SECS")]
    client_idle_timeout: Option<f64>,
    /// Backend connections at most.
    #[arg(long)]
    max_backends: Option<usize>,
    /// A read-only statement killed on the server after running this many seconds is not
    /// run again (a KILL of a long query is aimed at it; default 1).
    #[arg(long, value_name = "SECS")]
    killed_read_replay_limit: Option<f64>,
    /// A reply silent this many seconds makes the proxy ask the server, on a second
    /// connection, whether the statement still runs; a reply lost in the network (a
    /// firewall or NAT that dropped the flow) then counts as a lost connection (default 5;
    /// 0 waits as long as the connection stays open).
    #[arg(long, value_name = "SECS")]
    stall_check: Option<f64>,
    /// Threads that relay client sessions, each session staying on one (default: one per
    /// core, as HAProxy's nbthread).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// The configuration the flags and the `--config` file describe (read again on SIGHUP).
fn build_config(args: &Args) -> anyhow::Result<ProxyConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Flags win over the file; the environment fills in what the file leaves out.
            let fallback = args
                .backend
                .clone()
                .or_else(|| std::env::var("DATABASE_URL").ok())
                .map(|u| BackendTarget::from_url(&u))
                .transpose()?;
            ProxyConfig::from_toml_or(&text, fallback)?
        }
        None => {
            let url = args
                .backend
                .clone()
                .or_else(|| std::env::var("DATABASE_URL").ok())
                .context("--backend URL is required (or MYSQL_URL / DATABASE_URL, or --config)")?;
            ProxyConfig::new("127.0.0.1:6033".parse()?, BackendTarget::from_url(&url)?)
        }
    };
    if args.config.is_none() || args.listen != "127.0.0.1:6033" {
        config.listen = args
            .listen
            .parse()
            .with_context(|| format!("--listen: not an address: {}", args.listen))?;
    }
    if let (Some(url), Some(_)) = (&args.backend, &args.config) {
        config.backend = BackendTarget::from_url(url)?;
    }
    if let Some(user) = &args.user {
        let password = if let Some(var) = &args.password_env {
            std::env::var(var).with_context(|| format!("--password-env: ${var} is not set"))?
        } else if let Some(path) = &args.password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        } else {
            anyhow::bail!("--user needs --password-env or --password-file (passwords never go on the command line)");
        };
        config.accounts = vec![Account {
            user: user.clone(),
            password,
        }];
    }
    if let Some(m) = &args.metrics {
        config.metrics_listen = Some(
            m.parse()
                .with_context(|| format!("--metrics: not an address: {m}"))?,
        );
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    }
    if args.require_tls {
        config.require_tls = true;
    }
    if args.no_server_accounts {
        config.server_accounts = false;
    }
    if args.no_commit_marks {
        config.commit_marks = false;
    }
    if args.multiplex {
        config.multiplex = true;
    }
    if args.replica_reads {
        config.replica_reads = true;
    }
    if let Some(s) = args.max_replica_lag {
        config.max_replica_lag = Duration::from_secs_f64(s.max(0.0));
    }
    if let Some(s) = args.pool_idle_limit {
        config.pool_idle_limit = Duration::from_secs_f64(s.max(0.0));
    }
    if args.no_transaction_replay {
        config.transaction_replay = false;
    }
    if !args.servers.is_empty() {
        config.servers = args
            .servers
            .iter()
            .map(|s| ServerAddr::parse(s))
            .collect::<Result<_, _>>()?;
    }
    if let Some(kind) = &args.cluster {
        config.cluster = ClusterKind::parse(kind)?;
    }
    if let Some(s) = args.switchover_wait {
        config.switchover_wait = Duration::from_secs_f64(s.max(0.0));
    }
    if let Some(s) = args.monitor_interval {
        config.monitor_interval = Duration::from_secs_f64(s.max(0.05));
    }
    if let Some(s) = args.server_wait {
        config.server_wait = Duration::from_secs_f64(s.max(0.0));
    }
    if let Some(n) = args.max_clients {
        config.max_clients = n;
    }
    if let Some(n) = args.max_backends {
        config.max_backends = n;
    }
    if let Some(n) = args.max_pending_logins {
        config.max_pending_logins = n.max(1);
    }
    if let Some(s) = args.login_timeout {
        config.login_timeout = Duration::from_secs_f64(s.max(0.1));
    }
    if let Some(n) = args.failed_login_threshold {
        config.failed_login_threshold = n;
    }
    if let Some(s) = args.client_idle_timeout {
        config.client_idle_timeout = (s > 0.0).then(|| Duration::from_secs_f64(s));
    }
    if let Some(n) = args.threads {
        config.session_threads = n.max(1);
    }
    if let Some(s) = args.stall_check {
        config.stall_check = (s > 0.0).then(|| Duration::from_secs_f64(s));
    }
    if let Some(s) = args.killed_read_replay_limit {
        config.killed_read_replay_limit = Duration::from_secs_f64(s.max(0.0));
    }
    Ok(config)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = build_config(&args)?;
    raise_open_files_limit();
    // The proxy runs on its own runtime: one worker accepts clients and runs the monitor,
    // the sessions run on their own threads (--threads, config.session_threads); this
    // runtime only waits for the signal.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("goneaway-proxy")
        .enable_all()
        .build()
        .context("starting the proxy's runtime")?;
    let proxy = runtime.spawn(Proxy::start(config.clone())).await??;
    eprintln!(
        "goneaway proxy: listening on {}{} for {}{} (server{}){}",
        proxy.local_addr(),
        match (&config.tls_cert, config.require_tls) {
            (Some(_), true) => " (TLS required)",
            (Some(_), false) => " (TLS offered)",
            (None, _) => "",
        },
        config
            .effective_accounts()
            .iter()
            .map(|a| a.user.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if config.server_accounts {
            " and the server's accounts"
        } else {
            ""
        },
        if config.is_cluster() {
            format!(
                "s {}, cluster {}",
                config
                    .members()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                config.cluster.as_str()
            )
        } else {
            format!(" {}", config.backend.addr())
        },
        proxy
            .metrics_addr()
            .map(|a| format!("; metrics on http://{a}/metrics"))
            .unwrap_or_default()
    );
    // SIGHUP reads the configuration again and puts it in force without dropping sessions
    // (systemd's ExecReload); a configuration that does not read or check is refused and
    // the old one stays.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let shutdown = crate::cmd::chaos::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => reload(&proxy, &args),
        }
    }
    eprintln!("goneaway proxy: shutting down, draining sessions …");
    let stats = proxy.stats();
    runtime.spawn(proxy.shutdown()).await?;
    // Dropping a runtime blocks; this one has nothing left to wait for.
    runtime.shutdown_background();
    let absorbed = stats.absorbed_by_cause();
    if !absorbed.is_empty() {
        eprintln!("goneaway proxy: backend losses absorbed: {absorbed:?}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the configuration again and puts it in force, saying what changed.
fn reload(proxy: &Proxy, args: &Args) {
    let result = match build_config(args) {
        Ok(c) => proxy.reload(c).map_err(anyhow::Error::from),
        Err(e) => {
            // (Proxy::reload counts the configurations it refuses itself.)
            proxy
                .stats()
                .reload_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(e)
        }
    };
    match result {
        Ok(r) => {
            tracing::info!(changed = ?r.changed, "configuration reloaded");
            let changed = if r.changed.is_empty() {
                "nothing changed".to_owned()
            } else {
                format!("changed: {}", r.changed.join(", "))
            };
            eprintln!("goneaway proxy: configuration reloaded ({changed})");
            if !r.need_restart.is_empty() {
                eprintln!(
                    "goneaway proxy: {} changed but need a restart; the old values stay in force",
                    r.need_restart.join(", ")
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "configuration not reloaded");
            eprintln!(
                "goneaway proxy: configuration not reloaded, the old one stays in force: {e:#}"
            );
        }
    }
}

/// Raises the soft limit on open files to the hard one: every client and every backend is a
/// descriptor, and the common soft default (1024) is below max_clients + max_backends +
/// max_pending_logins, so a flood of connections would otherwise exhaust descriptors before
/// any of the proxy's own limits applies. (nginx's worker_rlimit_nofile, Go's runtime do
/// the same.)
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::debug!("could not raise the open-files limit");
            }
        }
    }
}
