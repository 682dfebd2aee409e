//! One diagnosis from start to end: connect, read, sample, scan the logs, probe, judge.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use goneaway_connect::Target;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::advice::{recommend, Recommendations};
use crate::chain::{self, ChainInputs, ProxyLayer};
use crate::facts::{gather, read_status, Facts};
use crate::finding::Ledger;
use crate::logs::{read_log, scan_error_log, scan_kernel_log, ErrorLogScan, LogSource, LogText};
use crate::report::{
    ConnectionFailure, Probes, Report, Status, EXIT_FAILED, EXIT_FINDINGS, EXIT_HEALTHY, SCHEMA,
};
use crate::rules::{cluster_checks, evaluate, Inputs};
use crate::time::{format_utc, now_unix};
use crate::{probe, sample, Progress};

/// What the doctor should do beyond reading the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read the counters twice this far apart for rates (zero: once).
    pub sample: Duration,
    /// An error log to scan instead of the server's own `log_error`, read beforehand with
    /// [`read_log`](crate::logs::read_log) (so that an unusable one is refused before
    /// connecting).
    pub error_log: Option<LogText>,
    /// Whether to read the server's `log_error` file when no `error_log` is given (it is
    /// readable only on the server's host).
    pub read_server_log: bool,
    /// Kernel log text (`journalctl -k`, `dmesg`).
    pub kernel_log: Option<String>,
    /// Only log events at or after this Unix time.
    pub since: Option<i64>,
    /// Application error text (`--error`, `--app-log`).
    pub app_text: Vec<String>,
    /// The application pool's idle timeout.
    pub app_timeout: Option<Duration>,
    /// The application pool's connection lifetime.
    pub pool_lifetime: Option<Duration>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Hold idle connections this long to see when they die.
    pub probe_idle: Option<Duration>,
    /// Send growing packets to find the limit.
    pub probe_packet: bool,
    /// A known idle limit of a NAT gateway, load balancer or firewall between the
    /// application and the server (AWS NAT gateway and NLB: 350 s; Azure LB: 4 min by
    /// default; GCP Cloud NAT: 1200 s for established TCP).
    pub middlebox_idle: Option<Duration>,
    /// The goneaway proxy the application connects through, as its configuration says.
    pub proxy: Option<ProxyLayer>,
    /// A replica at least this far behind its primary is a finding (default 30 s).
    pub replica_lag: Duration,
    /// Where progress goes.
    pub progress: Progress,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Short by default: enough to see whether counters move right now, short enough
            // for a command someone runs by hand. `--sample 30s` for a busy server.
            sample: Duration::from_secs(2),
            error_log: None,
            read_server_log: true,
            kernel_log: None,
            since: None,
            app_text: Vec::new(),
            app_timeout: None,
            pool_lifetime: None,
            connect_timeout: Duration::from_secs(10),
            probe_idle: None,
            probe_packet: false,
            middlebox_idle: None,
            proxy: None,
            replica_lag: Duration::from_secs(crate::rules::DEFAULT_REPLICA_LAG),
            progress: Progress::default(),
        }
    }
}

fn empty_report(target: &Target) -> Report {
    Report {
        schema: SCHEMA,
        target: target.redacted(),
        generated_at: format_utc(now_unix()),
        status: Status::Healthy,
        exit_code: EXIT_HEALTHY,
        connection_error: None,
        facts: None,
        rates_since_start: Default::default(),
        sample: None,
        error_log: None,
        kernel_log: None,
        application: None,
        probes: Probes::default(),
        findings: Vec::new(),
        timeout_chain: Vec::new(),
        transfer_limits: Vec::new(),
        cluster: Vec::new(),
        recommendations: Recommendations::default(),
        notes: Vec::new(),
    }
}

/// Connects with a time limit; the error is classified by the core.
pub(crate) async fn connect(opts: &Opts, timeout: Duration) -> Result<Conn, ConnectionFailure> {
    match tokio::time::timeout(timeout, Conn::new(opts.clone())).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let d = goneaway_core::classify_mysql_async(&e);
            Err(ConnectionFailure {
                message: e.to_string(),
                code: d.code,
                cause: d.primary(),
                retry: d.retry,
                explanation: d.explanation,
            })
        }
        Err(_) => Err(ConnectionFailure {
            message: format!("no answer within {}", goneaway_connect::format_duration(timeout)),
            code: None,
            cause: goneaway_core::Cause::ServerUnreachable,
            retry: goneaway_core::Retry::SafeToRetry,
            explanation: "The server did not complete the handshake in time: a firewall silently dropping packets, a wrong address, or a server too overloaded to accept connections.".into(),
        }),
    }
}

/// Diagnoses one server. Never changes anything on it. The report's `exit_code` is 0 when
/// nothing was found, 1 with findings, 2 when the server could not be read.
pub async fn diagnose(target: &Target, options: &Options) -> Report {
    let mut report = empty_report(target);
    let app = app_report(options, &mut report);
    let opts = match target.opts() {
        Ok(o) => o,
        Err(e) => {
            report.notes.push(e.to_string());
            return failed(report, None, app.as_ref(), options);
        }
    };
    options.progress.report("connecting");
    let mut conn = match connect(&opts, options.connect_timeout).await {
        Ok(c) => c,
        Err(failure) => {
            options.progress.done();
            return failed(report, Some(failure), app.as_ref(), options);
        }
    };
    let mut facts = match gather(&mut conn).await {
        Ok(f) => f,
        Err(e) => {
            options.progress.done();
            report
                .notes
                .push(format!("the server's variables could not be read: {e}"));
            return failed(report, None, app.as_ref(), options);
        }
    };
    report.rates_since_start = sample::since_start(&facts.status);

    if !options.sample.is_zero() {
        let started = Instant::now();
        while started.elapsed() < options.sample {
            let left = options.sample - started.elapsed();
            options.progress.report(&format!(
                "sampling counters: {} left",
                goneaway_connect::format_duration(Duration::from_secs(left.as_secs() + 1))
            ));
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            // Traffic keeps the doctor's own connection from idling out on a server with a
            // tiny wait_timeout — which would add an aborted connection to the evidence.
            let _ = conn.ping().await;
        }
        // The first connection may not survive a long sample (or a restart during it).
        let second = match read_status(&mut conn).await {
            Ok(s) => Some(s),
            Err(_) => match connect(&opts, options.connect_timeout).await {
                Ok(mut c) => {
                    let s = read_status(&mut c).await.ok();
                    conn = c;
                    s
                }
                Err(_) => None,
            },
        };
        match second {
            Some((after, _)) => {
                report.sample = Some(sample::compare(
                    &facts.status,
                    &after,
                    started.elapsed().as_secs_f64(),
                ))
            }
            None => report
                .notes
                .push("the second counter read failed: no rates".into()),
        }
    }

    options.progress.report("reading the error log");
    report.error_log = read_error_log(&mut conn, &facts, options, &mut report.notes).await;
    report.kernel_log = options
        .kernel_log
        .as_deref()
        .map(|text| scan_kernel_log(text, options.since));

    if let Some(d) = options.probe_idle {
        match probe::probe_idle(&opts, d, &options.progress).await {
            Ok(p) => report.probes.idle = Some(p),
            Err(e) => report
                .notes
                .push(format!("the idle probe could not run: {e}")),
        }
    }
    if options.probe_packet {
        let limit = facts
            .global_u64("max_allowed_packet")
            .unwrap_or(16 * 1024 * 1024);
        match probe::probe_packet(&opts, limit, &options.progress).await {
            Ok(p) => report.probes.packet = Some(p),
            Err(e) => report
                .notes
                .push(format!("the packet probe could not run: {e}")),
        }
    }
    options.progress.done();
    let _ = conn.disconnect().await;

    let middlebox = chain::middlebox_limit(options.middlebox_idle, report.probes.idle.as_ref());
    let inputs = Inputs {
        facts: Some(&facts),
        sample: report.sample.as_ref(),
        error_log: report.error_log.as_ref(),
        kernel_log: report.kernel_log.as_deref(),
        app: app.as_ref(),
        pool_lifetime: options.pool_lifetime,
        app_timeout: options.app_timeout,
        idle_probe: report.probes.idle.as_ref(),
        packet_probe: report.probes.packet.as_ref(),
        proxy: options.proxy.as_ref(),
        middlebox,
    };
    report.findings = evaluate(&inputs);
    report.cluster = cluster_checks(&facts, options.replica_lag.as_secs());
    report.recommendations = recommend(Some(&facts), &report.findings, middlebox.map(|(m, _)| m));
    (report.timeout_chain, report.transfer_limits) = timeout_chain(options, Some(&facts), &report);
    report.notes.append(&mut facts.unreadable);
    if let Some(m) = &facts.server.managed {
        report.notes.push(format!("managed server recognised: {m}"));
    }
    if let Some(c) = &facts.server.cluster {
        report.notes.push(format!("cluster recognised: {c}"));
    }
    report.facts = Some(facts);
    report.application = app;
    let found = !report.findings.is_empty()
        || !report.cluster.is_empty()
        || chain::needs_change(&report.timeout_chain);
    report.status = if found {
        Status::Findings
    } else {
        Status::Healthy
    };
    report.exit_code = if found { EXIT_FINDINGS } else { EXIT_HEALTHY };
    report
}

/// The timeout chain of the report made so far.
fn timeout_chain(
    options: &Options,
    facts: Option<&Facts>,
    report: &Report,
) -> (Vec<chain::Link>, Vec<chain::Link>) {
    chain::build(&ChainInputs {
        facts,
        pool_lifetime: options.pool_lifetime,
        app_timeout: options.app_timeout,
        proxy: options.proxy.as_ref(),
        middlebox_idle: options.middlebox_idle,
        idle_probe: report.probes.idle.as_ref(),
        network_drop: report
            .findings
            .iter()
            .any(|f| f.cause == goneaway_core::Cause::NetworkDrop),
        recommendations: Some(&report.recommendations),
    })
}

/// Classifies the application's errors, if any were given.
fn app_report(options: &Options, report: &mut Report) -> Option<goneaway_core::Report> {
    if options.app_text.is_empty() {
        return None;
    }
    match goneaway_core::scan(&options.app_text.join("\n")) {
        Ok(r) => Some(r),
        Err(e) => {
            report
                .notes
                .push(format!("the application's errors could not be read: {e}"));
            None
        }
    }
}

/// A report for a server that could not be read; the connection error is the finding.
fn failed(
    mut report: Report,
    failure: Option<ConnectionFailure>,
    app: Option<&goneaway_core::Report>,
    options: &Options,
) -> Report {
    let mut l = Ledger::default();
    if let Some(f) = &failure {
        l.add(
            f.cause,
            "connection",
            0.9,
            format!("connecting failed: {}", f.message),
        );
    }
    let mut findings = l.findings();
    // The application's errors and the pool settings need no server to be judged.
    let middlebox = chain::middlebox_limit(options.middlebox_idle, None);
    let app_findings = evaluate(&Inputs {
        app,
        pool_lifetime: options.pool_lifetime,
        app_timeout: options.app_timeout,
        proxy: options.proxy.as_ref(),
        middlebox,
        ..Inputs::default()
    });
    let failed_cause = failure.as_ref().map(|f| f.cause);
    findings.extend(
        app_findings
            .into_iter()
            .filter(|f| Some(f.cause) != failed_cause),
    );
    report.recommendations = recommend(None, &findings, middlebox.map(|(m, _)| m));
    report.findings = findings;
    (report.timeout_chain, report.transfer_limits) = timeout_chain(options, None, &report);
    report.connection_error = failure;
    report.application = app.cloned();
    report.status = Status::Failed;
    report.exit_code = EXIT_FAILED;
    report
}

async fn read_error_log(
    conn: &mut Conn,
    facts: &Facts,
    options: &Options,
    notes: &mut Vec<String>,
) -> Option<ErrorLogScan> {
    if let Some(log) = &options.error_log {
        return Some(scan_error_log(&log.text, &log.source, options.since));
    }
    if !options.read_server_log {
        return None;
    }
    let log_error = facts.global("log_error").unwrap_or_default();
    if !log_error.is_empty() && log_error != "stderr" {
        let mut path = PathBuf::from(log_error);
        if path.is_relative() {
            // A relative log_error is relative to the data directory.
            let datadir: Option<String> = conn.query_first("SELECT @@datadir").await.ok().flatten();
            if let Some(d) = datadir {
                path = PathBuf::from(d).join(path);
            }
        }
        // Only a regular file: a log_error naming a FIFO or a terminal would block the doctor.
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_file() => notes.push(format!(
                "the server's error log {} is not a regular file; pass its contents with --error-log",
                path.display()
            )),
            Err(e) => notes.push(format!(
                "the server's error log {} is not readable here ({e}); run the doctor on the server's host or pass --error-log",
                path.display()
            )),
            Ok(_) => match read_log(&LogSource::File(path.clone())) {
                Ok(log) => return Some(scan_error_log(&log.text, &log.source, options.since)),
                Err(e) => notes.push(format!(
                    "the server's error log was not scanned: {e}; run the doctor on the server's host or pass --error-log"
                )),
            },
        }
    } else {
        notes.push(
            "the server logs to stderr (log_error is empty): pass its output with --error-log"
                .into(),
        );
    }
    // MySQL 8.0.22+ keeps the recent log in a table readable over the connection.
    if !facts.is_mariadb() {
        let rows: Result<Vec<ErrorLogRow>, _> = conn
            .query("SELECT DATE_FORMAT(LOGGED, '%Y-%m-%dT%H:%i:%s.000000Z'), PRIO, ERROR_CODE, SUBSYSTEM, DATA FROM performance_schema.error_log ORDER BY LOGGED")
            .await;
        match rows {
            Ok(rows) if !rows.is_empty() => {
                let text: Vec<String> = rows
                    .into_iter()
                    .map(|(t, prio, code, sub, data)| {
                        format!("{t} 0 [{prio}] [{code}] [{sub}] {data}")
                    })
                    .collect();
                return Some(scan_error_log(
                    &text.join("\n"),
                    "performance_schema.error_log",
                    options.since,
                ));
            }
            Ok(_) => {}
            Err(e) => notes.push(format!(
                "performance_schema.error_log could not be read: {e}"
            )),
        }
    }
    None
}

/// A row of `performance_schema.error_log`: time, priority, code, subsystem, message.
type ErrorLogRow = (String, String, String, String, String);
