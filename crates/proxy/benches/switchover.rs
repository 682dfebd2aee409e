//! The proxy across a planned switchover and across a primary crash: sysbench
//! `oltp_read_write`, `oltp_read_write` with a ROLLBACK after a failed statement (as an
//! application's error handling does; sysbench's own script starts again with BEGIN) and
//! `oltp_point_select` (8 threads, ~20 s, `--report-interval=1`,
//! `--mysql-ignore-errors=all`) against a real GTID replication pair from the harness,
//! through a goneaway proxy in front of both servers and, as the baseline, against the
//! primary directly, while ~6 s in (a) an operator switches the primary over (old primary
//! read-only, replica caught up and promoted, old primary following it) or (b) the primary
//! is SIGKILLed and the replica, semi-synchronous, is promoted once it applied its relay log.
//! Prints, per run, sysbench's errors and reconnects, the transactions per second before,
//! during and after the event, the longest event latency, the proxy's counters, and which
//! statements the servers refused (MariaDB's `sql_errlog` plugin), as Markdown.
//!
//! Run with `cargo bench -p goneaway-proxy --bench switchover`. Knobs: `GONEAWAY_BENCH_SECS`
//! (each run's length, default 20, at least 12), `GONEAWAY_BENCH_EVENT_AT` (seconds into the
//! run, default 6), `GONEAWAY_BENCH_THREADS` (default 8), `GONEAWAY_BENCH_WORKLOADS`
//! (default `oltp_read_write,oltp_read_write+rollback,oltp_point_select`), `GONEAWAY_BENCH_EVENTS` (default
//! `switchover,crash`), `GONEAWAY_BENCH_TARGETS` (default `goneaway,direct`),
//! `GONEAWAY_BENCH_DETECT` (a failover tool's detection time after the crash, default 1 s),
//! `GONEAWAY_BENCH_IGNORE` (sysbench's `--mysql-ignore-errors`, default `all`: without it
//! sysbench stops at its first error), `GONEAWAY_BENCH_PS_MODE` (sysbench's `--db-ps-mode`,
//! default `auto`: server-side prepared statements; `disable`: text queries),
//! `GONEAWAY_BENCH_LOG` (a tracing filter for the proxy's log on standard error, such as
//! `goneaway_proxy=debug`; default `warn`). Needs `sysbench` (`make bench-deps`).
//!
//! The proxy runs in this process with its defaults (transaction replay and commit marks
//! on, `switchover_wait` 30 s, the monitor polling every 0.5 s); every run gets a fresh
//! replication pair and a fresh proxy, so no run inherits another's state or counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use goneaway_harness::{Replication, Server};
use goneaway_proxy::{Account, BackendTarget, ClusterKind, Proxy, ProxyConfig, ServerAddr};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// The account sysbench uses, directly and through the proxy (there a configured proxy
/// account, whose sessions log in to the servers with the same one). Not the harness's
/// own account: that one has every privilege, READ ONLY ADMIN among them, so `read_only`
/// would not apply to it as it does to a real application's.
const APP: &str = "app";
const APP_PASSWORD: &str = "app-password";
/// sysbench's data: as in the `sysbench` bench, small enough to prepare in seconds.
const TABLES: u32 = 4;
const TABLE_SIZE: u32 = 10_000;
/// How long sysbench may go on after `--time` (a thread waiting on a statement, or stuck
/// reconnecting to a dead address) before `--forced-shutdown` ends it.
const FORCED_SHUTDOWN_SECS: u64 = 10;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours (another bench's name)
    // means this bench was not asked for.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "switchover".contains(f.as_str())) {
        return;
    }
    let log = tracing_subscriber::EnvFilter::try_from_env("GONEAWAY_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(log)
        .with_writer(std::io::stderr)
        .init();
    // The proxy's sessions run on their own threads (ProxyConfig::session_threads, as
    // `goneaway proxy` runs them); two workers for its monitor, the harness and reading
    // sysbench.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("switchover benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn list(name: &str, default: &str) -> Vec<String> {
    env_or(name, default)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What happens to the primary ~6 s in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Old primary read-only, the replica caught up and promoted, the old primary follows.
    Switchover,
    /// SIGKILL of the primary; the replica promoted once it applied its relay log.
    Crash,
}

impl Event {
    fn parse(s: &str) -> Result<Event, BoxError> {
        match s {
            "switchover" => Ok(Event::Switchover),
            "crash" => Ok(Event::Crash),
            other => Err(format!("GONEAWAY_BENCH_EVENTS: unknown event {other:?}").into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Event::Switchover => "planned switchover",
            Event::Crash => "primary crash",
        }
    }
}

/// Where sysbench connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A goneaway proxy in front of both servers.
    Goneaway,
    /// The first primary's own address, as an application without a proxy has it.
    Direct,
}

impl Target {
    fn parse(s: &str) -> Result<Target, BoxError> {
        match s {
            "goneaway" => Ok(Target::Goneaway),
            "direct" => Ok(Target::Direct),
            other => Err(format!("GONEAWAY_BENCH_TARGETS: unknown target {other:?}").into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Goneaway => "goneaway",
            Target::Direct => "direct",
        }
    }
}

/// The run's schedule, from the environment.
struct Settings {
    secs: u64,
    event_at: u64,
    threads: u32,
    detect: Duration,
    /// sysbench's `--mysql-ignore-errors`.
    ignore: String,
    /// sysbench's `--db-ps-mode`: `auto` (server-side prepared statements, its default) or
    /// `disable` (text queries).
    ps_mode: String,
}

async fn run() -> Result<(), BoxError> {
    let mut secs: u64 = env_or("GONEAWAY_BENCH_SECS", "20").parse()?;
    let event_at: u64 = env_or("GONEAWAY_BENCH_EVENT_AT", "6").parse()?;
    // A before, a during and an after need room: the event itself takes 1–3 s.
    let shortest = event_at + 6;
    if secs < shortest {
        eprintln!("GONEAWAY_BENCH_SECS={secs} leaves no time after the event at {event_at} s: running {shortest} s");
        secs = shortest;
    }
    let settings = Settings {
        secs,
        event_at,
        threads: env_or("GONEAWAY_BENCH_THREADS", "8").parse()?,
        detect: Duration::from_secs_f64(env_or("GONEAWAY_BENCH_DETECT", "1").parse()?),
        ignore: env_or("GONEAWAY_BENCH_IGNORE", "all"),
        ps_mode: env_or("GONEAWAY_BENCH_PS_MODE", "auto"),
    };
    let workloads = list(
        "GONEAWAY_BENCH_WORKLOADS",
        "oltp_read_write,oltp_read_write+rollback,oltp_point_select",
    );
    let events = list("GONEAWAY_BENCH_EVENTS", "switchover,crash")
        .iter()
        .map(|e| Event::parse(e))
        .collect::<Result<Vec<_>, _>>()?;
    let targets = list("GONEAWAY_BENCH_TARGETS", "goneaway,direct")
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let load_start = loadavg();
    let mut results = Vec::new();
    for workload in &workloads {
        for &event in &events {
            for &target in &targets {
                eprintln!("== {workload}, {}, {} ==", event.name(), target.name());
                let r = one_run(&settings, workload, event, target).await?;
                eprintln!("{}", r.row());
                results.push(r);
            }
        }
    }

    println!();
    println!(
        "load average at start / end: {load_start} / {}; {} cores; sysbench {TABLES} tables × {TABLE_SIZE} rows, {} threads, {} s, the event at {} s, --mysql-ignore-errors={} --db-ps-mode={}",
        loadavg(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        settings.threads,
        settings.secs,
        settings.event_at,
        settings.ignore,
        settings.ps_mode,
    );
    println!();
    println!("| workload | event | through | sysbench errors | reconnects | tps before | tps during (lowest 1 s) | tps after | max latency ms | event took s | statements after the event, old / new primary | writer changes | switchover waits (s) | absorbed | proxy errors sent |");
    println!("|---|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|---|---|---|");
    for r in &results {
        println!("{}", r.row());
    }
    println!();
    println!("Statements the servers refused (sql_errlog, both members; digits shown as N):");
    println!();
    for r in &results {
        list_counts(
            &r.refused,
            &format!("{}, {}, {}", r.workload, r.event.name(), r.target.name()),
        );
    }
    Ok(())
}

/// A Markdown list of the most frequent entries of `counts`, under `title`.
fn list_counts(counts: &BTreeMap<String, u64>, title: &str) {
    if counts.is_empty() {
        return;
    }
    println!("- {title}:");
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1));
    for (what, n) in sorted.iter().take(8) {
        println!("  - {n} × {what}");
    }
    if sorted.len() > 8 {
        println!("  - … and {} other kinds", sorted.len() - 8);
    }
}

/// Creates the account sysbench and the proxy use (on the primary; it replicates):
/// everything on the test schemas and the right to read replication state, and not READ
/// ONLY ADMIN, so that `read_only` applies to it.
async fn app_account(server: &Server) -> Result<(), BoxError> {
    server
        .admin(&format!(
            "CREATE USER '{APP}'@'%' IDENTIFIED BY '{APP_PASSWORD}';
             GRANT ALL ON goneaway.* TO '{APP}'@'%';
             GRANT ALL ON goneaway_proxy.* TO '{APP}'@'%';
             GRANT SLAVE MONITOR ON *.* TO '{APP}'@'%';"
        ))
        .await?;
    Ok(())
}

fn addr(server: &Server) -> ServerAddr {
    ServerAddr {
        host: "127.0.0.1".into(),
        port: server.port(),
    }
}

/// A goneaway proxy with its defaults in front of every member of `set` (as
/// `servers = [...]`, `cluster = "replication"` in its TOML), sysbench's account configured
/// on it.
async fn cluster_proxy(set: &Replication) -> Result<Proxy, BoxError> {
    let backend = BackendTarget::from_url(&format!(
        "mysql://{APP}:{APP_PASSWORD}@127.0.0.1:{}/goneaway",
        set.member(0).port()
    ))?;
    let mut config = ProxyConfig::new("127.0.0.1:0".parse()?, backend);
    config.servers = set.members().iter().map(addr).collect();
    config.cluster = ClusterKind::Replication;
    config.accounts = vec![Account {
        user: APP.into(),
        password: APP_PASSWORD.into(),
    }];
    config.server_accounts = false;
    let proxy = Proxy::start(config).await?;
    // Ready when the monitor names the primary and the commit marks' table is there.
    let started = Instant::now();
    while !(proxy
        .cluster()
        .writer
        .as_ref()
        .is_some_and(|w| w.port == set.member(0).port())
        && proxy.commit_marks_ready())
    {
        if started.elapsed() > Duration::from_secs(20) {
            return Err(
                format!("the proxy never got ready: {}", proxy.cluster().describe()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(proxy)
}

/// What the proxy counted in one run.
#[derive(Debug, Default)]
struct ProxyCounts {
    writer_changes: u64,
    switchover_waits: u64,
    switchover_wait_secs: f64,
    read_only_redirects: u64,
    absorbed: BTreeMap<&'static str, u64>,
    replays: BTreeMap<&'static str, u64>,
    commits: BTreeMap<&'static str, u64>,
    errors: BTreeMap<&'static str, u64>,
}

impl ProxyCounts {
    fn of(proxy: &Proxy) -> ProxyCounts {
        let s = proxy.stats();
        ProxyCounts {
            writer_changes: s.writer_changes.load(Ordering::Relaxed),
            switchover_waits: s.switchover_waits.load(Ordering::Relaxed),
            switchover_wait_secs: s.switchover_wait_seconds(),
            read_only_redirects: s.read_only_redirects.load(Ordering::Relaxed),
            absorbed: s.absorbed_by_cause(),
            replays: s.replays(),
            commits: s.commits_resolved(),
            errors: s.errors_by_kind(),
        }
    }
}

/// `{a: 1, b: 2}` as `3 (a 1, b 2)`; `0` when empty.
fn counted(m: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = m.values().sum();
    if total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

/// One sysbench report line, `[ Ns ] … tps: … err/s: … reconn/s: …`.
#[derive(Debug, Clone, Copy)]
struct Interval {
    /// Seconds since the threads started, at the end of this interval.
    end: f64,
    tps: f64,
    errors: f64,
    reconnects: f64,
}

impl Interval {
    fn parse(line: &str) -> Option<Interval> {
        let rest = line.trim_start().strip_prefix('[')?;
        let (at, rest) = rest.split_once(']')?;
        let end: f64 = at.trim().strip_suffix('s')?.trim().parse().ok()?;
        let after = |label: &str| -> Option<f64> {
            rest.split(label)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        Some(Interval {
            end,
            tps: after("tps:")?,
            errors: after("err/s:").unwrap_or(0.0),
            reconnects: after("reconn/s:").unwrap_or(0.0),
        })
    }
}

/// sysbench's final report, when it printed one.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    errors: Option<u64>,
    reconnects: Option<u64>,
    max_ms: Option<f64>,
}

impl Summary {
    fn parse(out: &[String]) -> Summary {
        let field = |label: &str| -> Option<&str> {
            out.iter()
                .find_map(|l| l.trim_start().strip_prefix(label))
                .map(str::trim)
        };
        let count =
            |label: &str| -> Option<u64> { field(label)?.split_whitespace().next()?.parse().ok() };
        Summary {
            errors: count("ignored errors:"),
            reconnects: count("reconnects:"),
            max_ms: field("max:").and_then(|v| v.parse().ok()),
        }
    }
}

/// What sysbench printed, kept small: a run that fails in a tight loop may print an
/// "Ignoring error" line per failure, hundreds of thousands of them.
#[derive(Debug, Default)]
struct Output {
    intervals: Vec<Interval>,
    /// Every other line (the final report, warnings), the first 2000.
    other: Vec<String>,
}

impl Output {
    /// Reads sysbench's standard output to its end; sends the moment its threads started.
    async fn read(
        stdout: tokio::process::ChildStdout,
        started: oneshot::Sender<Instant>,
    ) -> Output {
        let mut started = Some(started);
        let mut output = Output::default();
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(i) = Interval::parse(&line) {
                output.intervals.push(i);
            } else if line.contains("Ignoring error ") {
                // Printed for some of the errors only (around a forced shutdown), so not
                // counted: the totals are sysbench's own.
            } else {
                if line.contains("Threads started!") {
                    if let Some(tx) = started.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
                if output.other.len() < 2000 {
                    output.other.push(line);
                }
            }
        }
        output
    }
}

/// The sysbench script of a workload: a bundled one by name, or `oltp_read_write+rollback`,
/// a wrapper (in a temporary directory) that sends ROLLBACK after a failed statement
/// before it starts the transaction again. sysbench's own scripts do not: they restart the
/// event with BEGIN, whose implicit commit ends a transaction the server still has, but
/// never one that a proxy holds as failed (see the results).
struct Script {
    name: String,
    dir: Option<tempfile::TempDir>,
}

impl Script {
    const ROLLBACK: &'static str = "oltp_read_write+rollback";

    fn new(workload: &str) -> Result<Script, BoxError> {
        if workload != Script::ROLLBACK {
            return Ok(Script {
                name: workload.to_owned(),
                dir: None,
            });
        }
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("oltp_read_write_rollback.lua"),
            "-- oltp_read_write; after an error, ROLLBACK before the transaction starts again,\n\
             -- as an application's error handling does.\n\
             dofile(\"/usr/share/sysbench/oltp_read_write.lua\")\n\
             local restart = sysbench.hooks.before_restart_event\n\
             function sysbench.hooks.before_restart_event(errdesc)\n\
             \x20 if restart then restart(errdesc) end\n\
             \x20 pcall(function() con:query(\"ROLLBACK\") end)\n\
             end\n",
        )?;
        Ok(Script {
            name: workload.to_owned(),
            dir: Some(dir),
        })
    }

    /// sysbench's first argument.
    fn arg(&self) -> std::ffi::OsString {
        match &self.dir {
            Some(dir) => dir.path().join("oltp_read_write_rollback.lua").into(),
            None => self.name.clone().into(),
        }
    }

    /// The bundled script that prepares its tables.
    fn prepare_name(workload: &str) -> &str {
        if workload == Script::ROLLBACK {
            "oltp_read_write"
        } else {
            workload
        }
    }
}

/// `text` with every run of digits as `N`, at most `max` characters: the same statement
/// or message with other values counts once.
fn shape(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out.chars().take(max).collect()
}

/// How a sysbench run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// By itself, at `--time`, with its final report.
    Finished,
    /// By `--forced-shutdown`: threads still busy (or stuck) after `--time`.
    Forced,
    /// Killed by a signal (sysbench itself crashed).
    Signal(i32),
    /// Another exit status.
    Exit(i32),
    /// Still running long after `--forced-shutdown`, and killed here.
    Hung,
}

impl Ending {
    fn of(status: Option<std::process::ExitStatus>, lines: &[String]) -> Ending {
        use std::os::unix::process::ExitStatusExt;
        let forced = lines.iter().any(|l| l.contains("forcing shutdown"));
        match status {
            None => Ending::Hung,
            Some(_) if forced => Ending::Forced,
            Some(s) if s.success() => Ending::Finished,
            Some(s) => match (s.signal(), s.code()) {
                (Some(sig), _) => Ending::Signal(sig),
                (None, code) => Ending::Exit(code.unwrap_or(-1)),
            },
        }
    }

    /// What the table says after the error count.
    fn note(self) -> String {
        match self {
            Ending::Finished => String::new(),
            Ending::Forced => " (sysbench forced to stop)".into(),
            Ending::Signal(11) => " (sysbench died: SIGSEGV)".into(),
            Ending::Signal(n) => format!(" (sysbench died: signal {n})"),
            Ending::Exit(n) => format!(" (sysbench exited {n})"),
            Ending::Hung => " (sysbench hung, killed)".into(),
        }
    }
}

/// One run's outcome.
struct RunResult {
    workload: String,
    event: Event,
    target: Target,
    intervals: Vec<Interval>,
    summary: Summary,
    /// How sysbench ended.
    ending: Ending,
    /// Seconds since the threads started.
    event_start: f64,
    event_end: f64,
    proxy: Option<ProxyCounts>,
    /// `member: user code statement` (digits as N) → how many, from both members'
    /// `sql_errlog`.
    refused: BTreeMap<String, u64>,
    /// Statements each member served from the event's end to sysbench's (`Questions`);
    /// `None` for a member that was down.
    after_event: Vec<Option<u64>>,
}

impl RunResult {
    fn phase_tps(&self, keep: impl Fn(&Interval) -> bool) -> Option<(f64, f64)> {
        let picked: Vec<f64> = self
            .intervals
            .iter()
            .filter(|i| keep(i))
            .map(|i| i.tps)
            .collect();
        if picked.is_empty() {
            return None;
        }
        let mean = picked.iter().sum::<f64>() / picked.len() as f64;
        let lowest = picked.iter().copied().fold(f64::INFINITY, f64::min);
        Some((mean, lowest))
    }

    /// The table row. Before: intervals that ended by the event's start; during: those
    /// that overlap the event or the 2 s after it; after: the rest.
    fn row(&self) -> String {
        let (start, end) = (self.event_start, self.event_end + 2.0);
        let before = self.phase_tps(|i| i.end <= start);
        let during = self.phase_tps(|i| i.end > start && i.end - 1.0 < end);
        let after = self.phase_tps(|i| i.end - 1.0 >= end);
        let mean = |p: Option<(f64, f64)>| p.map_or("–".into(), |(m, _)| format!("{m:.0}"));
        let errors = self
            .summary
            .errors
            .unwrap_or_else(|| self.intervals.iter().map(|i| i.errors).sum::<f64>() as u64);
        let reconnects = self
            .summary
            .reconnects
            .unwrap_or_else(|| self.intervals.iter().map(|i| i.reconnects).sum::<f64>() as u64);
        let max = match (self.summary.max_ms, self.ending) {
            (Some(m), Ending::Finished) => format!("{m:.0}"),
            (Some(m), _) => format!("{m:.0} (cut off)"),
            (None, _) => "–".into(),
        };
        let (changes, waits, absorbed, sent) = match &self.proxy {
            Some(p) => (
                p.writer_changes.to_string(),
                format!("{} ({:.1})", p.switchover_waits, p.switchover_wait_secs),
                counted(&p.absorbed),
                counted(&p.errors),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        format!(
            "| {} | {} | {} | {errors}{} | {reconnects} | {} | {} ({}) | {} | {max} | {:.1} | {} | {changes} | {waits} | {absorbed} | {sent} |",
            self.workload,
            self.event.name(),
            self.target.name(),
            self.ending.note(),
            mean(before),
            mean(during),
            during.map_or("–".into(), |(_, l)| format!("{l:.0}")),
            mean(after),
            self.event_end - self.event_start,
            self.after_event
                .iter()
                .map(|n| n.map_or("down".into(), |n| n.to_string()))
                .collect::<Vec<_>>()
                .join(" / "),
        )
    }
}

/// A fresh pair, the proxy (for [`Target::Goneaway`]), tables prepared through the target,
/// then sysbench with the event at `event_at`.
async fn one_run(
    settings: &Settings,
    workload: &str,
    event: Event,
    target: Target,
) -> Result<RunResult, BoxError> {
    let set = Replication::builder()
        .replicas(1)
        .var("max_connections", 300)
        .var("innodb_buffer_pool_size", "64M")
        // Logs every statement a server refused, with its text: which statements failed,
        // directly or through the proxy, is then read from the servers themselves.
        .var("plugin_load_add", "sql_errlog")
        .start()
        .await?;
    app_account(set.member(0)).await?;
    if event == Event::Crash {
        set.semi_sync(1).await?;
    }
    set.wait_caught_up().await?;
    let proxy = match target {
        Target::Goneaway => Some(cluster_proxy(&set).await?),
        Target::Direct => None,
    };
    let addr = proxy
        .as_ref()
        .map_or_else(|| set.member(0).addr(), Proxy::local_addr);
    sysbench_prepare(addr, Script::prepare_name(workload)).await?;
    // The replica has the tables before the run, so that the switchover's catch-up is the
    // run's writes only.
    set.wait_caught_up().await?;
    // Only what the run itself makes servers refuse.
    for member in set.members() {
        let _ = std::fs::write(member.data_dir().join("sql_errors.log"), b"");
    }

    let script = Script::new(workload)?;
    let mut child = tokio::process::Command::new("sysbench")
        .arg(script.arg())
        .args(sysbench_args(addr, settings.threads))
        .arg(format!("--time={}", settings.secs))
        .arg("--report-interval=1")
        .arg(format!("--mysql-ignore-errors={}", settings.ignore))
        .arg(format!("--db-ps-mode={}", settings.ps_mode))
        .arg(format!("--forced-shutdown={FORCED_SHUTDOWN_SECS}"))
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting sysbench (make bench-deps installs it): {e}"))?;
    let (started_tx, started_rx) = oneshot::channel::<Instant>();
    let reader = {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        tokio::spawn(Output::read(stdout, started_tx))
    };
    let stderr = {
        let err = child.stderr.take().ok_or("no stderr")?;
        tokio::spawn(async move {
            let mut text = Vec::new();
            let mut out = BufReader::new(err).lines();
            while let Ok(Some(line)) = out.next_line().await {
                text.push(line);
            }
            text
        })
    };
    let t0 = tokio::time::timeout(Duration::from_secs(30), started_rx)
        .await
        .map_err(|_| "sysbench did not start its threads in 30 s")?
        .map_err(|_| "sysbench ended before it started its threads")?;
    tokio::time::sleep_until((t0 + Duration::from_secs(settings.event_at)).into()).await;
    let event_start = t0.elapsed().as_secs_f64();
    match event {
        Event::Switchover => set.switchover(1).await?,
        Event::Crash => {
            set.member(0).crash().await?;
            // A failover tool's detection time, then the promotion.
            tokio::time::sleep(settings.detect).await;
            set.apply_relay_log(1).await?;
            set.promote(1).await?;
        }
    }
    let event_end = t0.elapsed().as_secs_f64();
    let questions_at_event = questions(&set).await;
    if let Some(proxy) = &proxy {
        let seen = Instant::now();
        while proxy
            .cluster()
            .writer
            .as_ref()
            .is_none_or(|w| w.port != set.member(1).port())
        {
            if seen.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "the proxy never named the new primary: {}",
                    proxy.cluster().describe()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "event {:.1}–{event_end:.1} s; the proxy named the new writer at {:.1} s",
            event_start,
            t0.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("event {event_start:.1}–{event_end:.1} s");
    }
    // --forced-shutdown ends sysbench FORCED_SHUTDOWN_SECS after --time; this bound is
    // for a sysbench that does not even do that.
    let bound = Duration::from_secs(settings.secs + FORCED_SHUTDOWN_SECS + 30);
    let status = match tokio::time::timeout(bound, child.wait()).await {
        Ok(status) => Some(status?),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let questions_at_end = questions(&set).await;
    let output = reader.await?;
    let stderr = stderr.await.unwrap_or_default();
    let ending = Ending::of(status, &output.other);
    if ending != Ending::Finished {
        let tail: Vec<&String> = output.other.iter().rev().take(25).collect();
        eprintln!(
            "sysbench did not end by itself ({status:?}); last lines: {tail:?}; stderr: {:?}",
            stderr.iter().rev().take(5).collect::<Vec<_>>()
        );
    }
    let counts = proxy.as_ref().map(ProxyCounts::of);
    if let Some(p) = &counts {
        eprintln!(
            "proxy: writer changes {}, switchover waits {} ({:.1} s), read-only redirects {}, absorbed {:?}, replays {:?}, commits resolved {:?}, errors sent {:?}",
            p.writer_changes,
            p.switchover_waits,
            p.switchover_wait_secs,
            p.read_only_redirects,
            p.absorbed,
            p.replays,
            p.commits,
            p.errors
        );
    }
    if let Some(proxy) = proxy {
        proxy.shutdown().await;
    }
    let mut refused = BTreeMap::new();
    for (i, member) in set.members().iter().enumerate() {
        let log =
            std::fs::read_to_string(member.data_dir().join("sql_errors.log")).unwrap_or_default();
        for (what, n) in refused_statements(&log) {
            *refused.entry(format!("member {i}: {what}")).or_insert(0) += n;
        }
    }
    Ok(RunResult {
        workload: workload.to_owned(),
        event,
        target,
        summary: Summary::parse(&output.other),
        intervals: output.intervals,
        ending,
        event_start,
        event_end,
        proxy: counts,
        refused,
        after_event: questions_at_event
            .iter()
            .zip(&questions_at_end)
            .map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
            .collect(),
    })
}

/// sysbench's connection and data options.
fn sysbench_args(addr: SocketAddr, threads: u32) -> Vec<String> {
    vec![
        "--db-driver=mysql".into(),
        format!("--mysql-host={}", addr.ip()),
        format!("--mysql-port={}", addr.port()),
        format!("--mysql-user={APP}"),
        format!("--mysql-password={APP_PASSWORD}"),
        "--mysql-db=goneaway".into(),
        format!("--tables={TABLES}"),
        format!("--table-size={TABLE_SIZE}"),
        format!("--threads={threads}"),
    ]
}

/// Each member's `Questions` (statements served since its start), `None` when it is down.
async fn questions(set: &Replication) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for member in set.members() {
        let n = if member.is_running() {
            member
                .status("Questions")
                .await
                .ok()
                .flatten()
                .and_then(|v| v.parse().ok())
        } else {
            None
        };
        out.push(n);
    }
    out
}

async fn sysbench_prepare(addr: SocketAddr, workload: &str) -> Result<(), BoxError> {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("sysbench")
            .arg(workload)
            .args(sysbench_args(addr, 4))
            .arg("prepare")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "sysbench prepare took over 300 s")??;
    if !out.status.success() {
        return Err(format!(
            "sysbench prepare against {addr} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// The `sql_errlog` lines (`<time> user[user] @ host [ip] ERROR <code>: <message> : <query>`)
/// grouped by user, code and statement, digits as N; lines without a statement left out.
fn refused_statements(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some((head, rest)) = line.split_once(" ERROR ") else {
            continue;
        };
        // The time is two words; the account the third.
        let user = head.split_whitespace().nth(2).unwrap_or("?");
        let user = user.split('[').next().unwrap_or(user);
        let code = rest.split(':').next().unwrap_or("?").trim();
        let query = rest.rsplit_once(" : ").map_or("", |(_, q)| q);
        // A connection's end (1158 and the like, the replica's own link to a crashed
        // primary among them) carries no statement: not a refusal of the client's.
        if query.trim() == "(null)" {
            continue;
        }
        *out.entry(format!("{user} {code} `{}`", shape(query, 70)))
            .or_insert(0) += 1;
    }
    out
}

/// The 1-minute load average: on a shared machine, other work skews every number.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
