//! The rules: each turns facts, rates, log events, application errors and probe results
//! into evidence for or against a cause.

use std::time::Duration;

use goneaway_core::Cause;

use crate::facts::Facts;
use crate::finding::{Finding, Ledger};
use crate::logs::{ErrorLogScan, LogEvent};
use crate::probe::{IdleProbe, PacketProbe};
use crate::sample::Sample;

/// Everything the rules look at.
#[derive(Debug, Default)]
pub(crate) struct Inputs<'a> {
    pub facts: Option<&'a Facts>,
    pub sample: Option<&'a Sample>,
    pub error_log: Option<&'a ErrorLogScan>,
    pub kernel_log: Option<&'a [LogEvent]>,
    pub app: Option<&'a goneaway_core::Report>,
    pub pool_lifetime: Option<Duration>,
    pub app_timeout: Option<Duration>,
    pub idle_probe: Option<&'a IdleProbe>,
    pub packet_probe: Option<&'a PacketProbe>,
}

/// How long ago a start counts as recent enough to explain present errors.
const RECENT: u64 = 3600;

fn secs(d: Duration) -> String {
    goneaway_connect::format_duration(d)
}

/// Runs every rule.
pub(crate) fn evaluate(inputs: &Inputs<'_>) -> Vec<Finding> {
    let mut l = Ledger::default();
    if let Some(f) = inputs.facts {
        server_rules(&mut l, f, inputs);
    }
    // The application's errors first: they decide what ambiguous server lines mean.
    if let Some(app) = inputs.app {
        app_rules(&mut l, app, inputs);
    }
    if let Some(log) = inputs.error_log {
        log_rules(&mut l, log);
    }
    if let Some(kernel) = inputs.kernel_log {
        if let Some(last) = kernel.last() {
            l.add(
                Cause::OutOfMemory,
                "kernel_log",
                0.95,
                format!(
                    "{} OOM kill(s) of the server; last: line {}: {}",
                    kernel.len(),
                    last.line,
                    last.text
                ),
            );
            if l.supports(Cause::ServerCrash) {
                l.add(Cause::ServerCrash, "kernel_log", -0.6, "the kernel log shows the OOM killer ending the server: the unclean stop is out_of_memory, not a bug");
            }
        }
    }
    pool_rules(&mut l, inputs);
    probe_rules(&mut l, inputs);
    server_closed_it(&mut l);
    l.findings()
}

/// The server's own words for closing connections, by the cause they prove.
const SERVER_SIDE: &[Cause] = &[
    Cause::IdleTimeout,
    Cause::ConnectionKilled,
    Cause::ServerRestart,
    Cause::ServerCrash,
    Cause::OutOfMemory,
];

/// A client whose connection the server closed sees a reset or an end of stream — the same
/// errors a network drop gives. When the server's log, Uptime or the kernel log shows the
/// server closing connections, and nothing but those application errors points at the
/// network, the errors are the server's close seen from the client: they support that
/// cause, and the report does not advise fixing a network that did nothing.
fn server_closed_it(l: &mut Ledger) {
    const PROOF: &[&str] = &["error_log", "uptime", "kernel_log"];
    let network_only_from_app = l.supports_from(Cause::NetworkDrop, "application")
        && !["error_log", "probe", "rate", "status", "variable"]
            .iter()
            .any(|s| l.supports_from(Cause::NetworkDrop, s));
    if !network_only_from_app {
        return;
    }
    let best = SERVER_SIDE
        .iter()
        .map(|c| (*c, l.strongest(*c, PROOF)))
        .filter(|(_, w)| *w >= 0.5)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((cause, _)) = best {
        let why = format!(
            "the server's own evidence shows it closing connections ({}), which a client sees as this same error",
            cause.as_str()
        );
        l.reattribute(Cause::NetworkDrop, "application", cause, &why);
    }
}

fn server_rules(l: &mut Ledger, f: &Facts, inputs: &Inputs<'_>) {
    let wait = f.global_u64("wait_timeout");
    if let Some(w) = wait {
        let detail = format!("wait_timeout = {w} s (GLOBAL); idle connections older than this are closed by the server");
        l.add(Cause::IdleTimeout, "variable", 0.0, detail);
        if let Some(s) = f
            .variables
            .get("wait_timeout")
            .and_then(|v| v.session.as_deref())
        {
            if Some(s) != f.global("wait_timeout") {
                l.add(Cause::IdleTimeout, "variable", 0.0, format!("this session's wait_timeout is {s} s, unlike the global value: init_connect or the account changes it"));
            }
        }
    }

    // Aborted_clients: a client connection ended without COM_QUIT. Idle timeouts are the
    // usual reason, but not the only one: a log that gives other reasons takes precedence.
    let log_other_reasons = inputs
        .error_log
        .is_some_and(|log| !log.aborted.is_empty() && log.aborted_count(Cause::IdleTimeout) == 0);
    if !log_other_reasons {
        if let Some(s) = inputs.sample.filter(|s| !s.restarted) {
            if let Some(&d) = s.deltas.get("Aborted_clients").filter(|d| **d > 0) {
                l.add(Cause::IdleTimeout, "rate", 0.35, format!(
                    "Aborted_clients rose by {d} during the {:.0} s sample ({:.0}/h): connections are being closed without the client saying goodbye now",
                    s.seconds, s.per_hour["Aborted_clients"]
                ));
            }
        }
        if let Some(total) = f.counter("Aborted_clients").filter(|t| *t > 0) {
            let rate = total as f64 * 3600.0 / f.uptime_seconds.max(1) as f64;
            l.add(
                Cause::IdleTimeout,
                "status",
                0.15,
                format!(
                    "Aborted_clients = {total} since the server started {} ago ({rate:.1}/h)",
                    secs(Duration::from_secs(f.uptime_seconds))
                ),
            );
        }
    }

    if let Some(p) = f.global_u64("max_allowed_packet") {
        l.add(
            Cause::PacketTooLarge,
            "variable",
            0.0,
            format!(
                "max_allowed_packet = {p} bytes ({:.1} MiB){}",
                p as f64 / 1048576.0,
                if p < 16 * 1024 * 1024 {
                    ": below the 16 MiB most clients assume"
                } else {
                    ""
                }
            ),
        );
    }
    let near = &f.processes.near_wait_timeout;
    if !near.is_empty() {
        let ids: Vec<String> = near
            .iter()
            .take(5)
            .map(|p| format!("{} ({}@{}, idle {} s)", p.id, p.user, p.host, p.time))
            .collect();
        l.add(
            Cause::IdleTimeout,
            "process_list",
            0.2,
            format!(
                "{} connection(s) idle for at least half of wait_timeout: {}",
                near.len(),
                ids.join(", ")
            ),
        );
    }
    if !f.processes.killed.is_empty() {
        l.add(
            Cause::ConnectionKilled,
            "process_list",
            0.3,
            format!(
                "{} thread(s) marked Killed in the process list",
                f.processes.killed.len()
            ),
        );
    }
    if !f.processes.long_running.is_empty() {
        l.add(
            Cause::NetTimeout,
            "process_list",
            0.0,
            format!(
                "{} statement(s) running longer than 60 s",
                f.processes.long_running.len()
            ),
        );
    }

    // Restarts: Uptime going down during the sample is proof; a recent start is evidence,
    // for a restart or a crash depending on what the log says about that start.
    if let Some(s) = inputs.sample.filter(|s| s.restarted) {
        l.add(Cause::ServerRestart, "uptime", 0.95, format!(
            "Uptime went from {} s to {} s during the sample: the server restarted while the doctor watched",
            s.uptime_before, s.uptime_after
        ));
    }
    if f.uptime_seconds < 24 * 3600 {
        let latest = inputs.error_log.and_then(|log| log.starts.last());
        let cause = match latest.map(|s| s.after.as_str()) {
            Some("unclean") => Some(Cause::ServerCrash),
            // The first start in the log is the server's first ever: nothing to blame.
            Some("first") => None,
            _ => Some(Cause::ServerRestart),
        };
        if let Some(cause) = cause {
            let weight = if f.uptime_seconds < RECENT { 0.5 } else { 0.2 };
            l.add(cause, "uptime", weight, format!(
                "Uptime = {} s: the server started {} ago, at {}; every connection open before then was closed",
                f.uptime_seconds, secs(Duration::from_secs(f.uptime_seconds)), f.started_at
            ));
        }
    }

    // Connection limits.
    let max_conn = f.global_u64("max_connections");
    let rising = |name: &str| {
        inputs
            .sample
            .and_then(|s| s.deltas.get(name).copied())
            .unwrap_or(0)
    };
    if let Some(n) = f
        .counter("Connection_errors_max_connections")
        .filter(|n| *n > 0)
    {
        let d = rising("Connection_errors_max_connections");
        let weight = if d > 0 { 0.75 } else { 0.4 };
        l.add(
            Cause::TooManyConnections,
            "status",
            weight,
            format!(
                "Connection_errors_max_connections = {n}{}: connections were refused with 1040",
                if d > 0 {
                    format!(" (+{d} during the sample)")
                } else {
                    String::new()
                }
            ),
        );
    }
    if let (Some(max), Some(used)) = (max_conn, f.counter("Max_used_connections")) {
        if max > 0 && used >= max {
            l.add(
                Cause::TooManyConnections,
                "status",
                0.5,
                format!("Max_used_connections = {used} reached max_connections = {max}"),
            );
        }
        if let Some(now) = f.counter("Threads_connected") {
            if max > 0 && now * 10 >= max * 9 {
                l.add(
                    Cause::TooManyConnections,
                    "status",
                    0.3,
                    format!("{now} of max_connections = {max} connections in use now"),
                );
            }
        }
    }
    if let Some(n) = f
        .counter("Connection_errors_peer_address")
        .filter(|n| *n > 0)
    {
        l.add(
            Cause::HostBlocked,
            "status",
            0.0,
            format!("Connection_errors_peer_address = {n}"),
        );
    }
    let aborted_connects = rising("Aborted_connects");
    if aborted_connects > 0 {
        let detail = format!(
            "Aborted_connects rose by {aborted_connects} during the sample: connection attempts are failing (bad passwords, handshakes cut short, probes)"
        );
        l.add(Cause::AccessDenied, "rate", 0.2, detail.clone());
        if f.global_u64("max_connect_errors").is_some_and(|m| m < 1000) {
            l.add(
                Cause::HostBlocked,
                "rate",
                0.2,
                format!(
                    "{detail}; max_connect_errors = {} is low enough for a host to be blocked",
                    f.global("max_connect_errors").unwrap_or_default()
                ),
            );
        }
    }
    if f.global("skip_networking")
        .is_some_and(|v| v.eq_ignore_ascii_case("ON"))
    {
        l.add(
            Cause::ServerUnreachable,
            "variable",
            0.6,
            "skip_networking = ON: the server accepts no TCP connections",
        );
    }

    // Managed and clustered servers bring their own ways to drop connections.
    match f.server.managed.as_deref() {
        Some(m @ ("aws_rds" | "aws_aurora")) => l.add(Cause::NetworkDrop, "variable", 0.0, format!(
            "{m}: AWS NAT gateways and NLBs drop idle flows after 350 s, independently of wait_timeout"
        )),
        Some("azure") => l.add(Cause::NetworkDrop, "variable", 0.0, "Azure: the load balancer drops idle flows after 4 minutes"),
        Some("google_cloud_sql") => l.add(Cause::NetworkDrop, "variable", 0.0, "Cloud SQL: maintenance restarts and the Auth Proxy end connections; Google's VPC drops idle flows after 10 minutes"),
        _ => {}
    }
    if f.server.cluster.as_deref() == Some("galera") {
        if let Some(state) = f
            .status_text
            .get("wsrep_cluster_status")
            .filter(|s| *s != "Primary")
        {
            l.add(Cause::ServerUnreachable, "status", 0.6, format!(
                "wsrep_cluster_status = {state}: this Galera node is not part of the primary component and refuses queries"
            ));
        }
        if f.status_text.get("wsrep_ready").is_some_and(|s| s != "ON") {
            l.add(
                Cause::ServerUnreachable,
                "status",
                0.5,
                "wsrep_ready is not ON: the node does not accept queries",
            );
        }
    }
}

fn log_rules(l: &mut Ledger, log: &ErrorLogScan) {
    for group in log.aborted.iter().take(8) {
        // "Got an error reading communication packets" is what MariaDB logs for an oversized
        // packet as well as for a client that vanished: when the application's own errors
        // name one of the line's candidate causes, that cause is the reading.
        let candidates = group
            .examples
            .first()
            .map(|e| goneaway_core::classify_text(&e.text).causes)
            .unwrap_or_default();
        // Only an ambiguous reading is open to reinterpretation: the classifier's own first
        // choice, held with less than 60 % (not a reason the log scanner already settled).
        let ambiguous = candidates
            .first()
            .is_some_and(|c| c.cause == group.cause && c.likelihood < 0.6);
        let seen = format!(
            "{}× \"Aborted connection … ({})\" for {}@{}, last at {} (line {})",
            group.count,
            group.reason,
            group.user,
            group.host,
            group.last.as_deref().unwrap_or("an unknown time"),
            group.examples.last().map_or(0, |e| e.line),
        );
        if let Some(c) = candidates
            .iter()
            .skip(1)
            .filter(|_| ambiguous)
            .find(|c| c.cause != Cause::Unknown && l.supports_from(c.cause, "application"))
        {
            l.add(c.cause, "error_log", 0.6, format!(
                "{seen}: the server's words for this cause too, and the application's errors name it"
            ));
            continue;
        }
        let weight = match group.cause {
            Cause::IdleTimeout | Cause::PacketTooLarge => 0.75,
            Cause::NetTimeout => 0.6,
            Cause::NetworkDrop => 0.35,
            Cause::Unknown => 0.0,
            _ => 0.4,
        };
        l.add(group.cause, "error_log", weight, seen);
    }
    if let Some(start) = log.clean_starts().last() {
        let n = log.clean_starts().count();
        l.add(Cause::ServerRestart, "error_log", 0.8, format!(
            "{n} clean restart(s) in the log (\"Shutdown complete\", then \"ready for connections\"); last at {} (line {})",
            start.event.time.as_deref().unwrap_or("an unknown time"), start.event.line
        ));
    }
    if let Some(start) = log.unclean_starts().last() {
        let n = log.unclean_starts().count();
        l.add(Cause::ServerCrash, "error_log", 0.8, format!(
            "{n} start(s) without a completed shutdown before them (crash, SIGKILL or the OOM killer); last at {} (line {})",
            start.event.time.as_deref().unwrap_or("an unknown time"), start.event.line
        ));
    }
    if let Some(c) = log.crashes.last() {
        l.add(
            Cause::ServerCrash,
            "error_log",
            0.85,
            format!(
                "{} crash line(s) (signal, assertion, crash recovery); last: line {}: {}",
                log.crashes.len(),
                c.line,
                c.text
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (cause, ev) in &log.other {
        if seen.insert(*cause) {
            let n = log.other.iter().filter(|(c, _)| c == cause).count();
            l.add(
                *cause,
                "error_log",
                0.5,
                format!("{n} line(s) like line {}: {}", ev.line, ev.text),
            );
        }
    }
}

fn app_rules(l: &mut Ledger, app: &goneaway_core::Report, inputs: &Inputs<'_>) {
    let mut disconnects = 0;
    for f in &app.findings {
        let label = match f.code {
            Some(code) => format!("{code} "),
            None => String::new(),
        };
        let weight = if f.cause == Cause::Unknown { 0.0 } else { 0.4 };
        l.add(
            f.cause,
            "application",
            weight,
            format!(
                "the application reported {label}{}× (line {}): {}",
                f.count, f.first_line, f.example
            ),
        );
        if f.diagnosis.connection_lost {
            disconnects += f.count;
        }
    }
    // The application lost connections, but the server has no trace of closing them: the
    // log is readable and shows no aborted connection and no restart, and Aborted_clients
    // did not rise. Something between the two ends dropped them.
    if disconnects > 0 {
        let log_silent = inputs.error_log.is_some_and(|log| {
            log.aborted.is_empty()
                && log.starts.iter().all(|s| s.after == "first")
                && log.crashes.is_empty()
        });
        let counters_silent = inputs
            .facts
            .is_some_and(|f| f.counter("Aborted_clients") == Some(0))
            || inputs
                .sample
                .is_some_and(|s| s.deltas.get("Aborted_clients") == Some(&0));
        // A restart must not explain the application's errors: either the server has been up
        // long enough to have seen them, or the log shows that its current run is its first
        // ever (so no restart can have closed anything). A pool that outlives wait_timeout
        // is the likelier story, too.
        let long_up = inputs.facts.is_some_and(|f| f.uptime_seconds >= RECENT);
        let first_run = inputs
            .error_log
            .and_then(|log| log.starts.last())
            .is_some_and(|s| s.after == "first");
        let pool_explains = pool_outlives_wait(inputs);
        if log_silent && counters_silent && (long_up || first_run) && !pool_explains {
            l.add(Cause::NetworkDrop, "application", 0.6, format!(
                "the application lost {disconnects} connection(s), yet the server logged no aborted connection, restart or crash and Aborted_clients did not rise: something between client and server dropped them"
            ));
            l.add(
                Cause::IdleTimeout,
                "error_log",
                -0.6,
                "the server logged no idle timeout and Aborted_clients did not rise",
            );
        }
    }
}

/// How long a pooled connection can sit idle: until the first of the stated pool limits
/// ends it.
fn pool_idle_limit(inputs: &Inputs<'_>) -> Option<Duration> {
    match (inputs.pool_lifetime, inputs.app_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the stated pool settings let a connection idle past `wait_timeout`.
fn pool_outlives_wait(inputs: &Inputs<'_>) -> bool {
    let Some(wait) = inputs.facts.and_then(|f| f.global_u64("wait_timeout")) else {
        return false;
    };
    pool_idle_limit(inputs).is_some_and(|l| l.as_secs() >= wait)
}

fn pool_rules(l: &mut Ledger, inputs: &Inputs<'_>) {
    let Some(wait) = inputs.facts.and_then(|f| f.global_u64("wait_timeout")) else {
        return;
    };
    let Some(limit) = pool_idle_limit(inputs) else {
        return;
    };
    let what = match (inputs.pool_lifetime, inputs.app_timeout) {
        (Some(_), Some(_)) => "the pool's lifetime and idle timeout let",
        (Some(_), None) => "the pool's lifetime lets",
        _ => "the pool's idle timeout lets",
    };
    if limit.as_secs() >= wait {
        l.add(Cause::IdleTimeout, "pool_settings", 0.85, format!(
            "{what} a connection sit idle for up to {}, but the server closes it after wait_timeout = {wait} s: the pool will hand out connections the server has already closed",
            secs(limit)
        ));
    } else {
        l.add(
            Cause::IdleTimeout,
            "pool_settings",
            -0.3,
            format!(
                "{what} a connection sit idle for at most {}, below wait_timeout = {wait} s",
                secs(limit)
            ),
        );
    }
}

fn probe_rules(l: &mut Ledger, inputs: &Inputs<'_>) {
    if let Some(p) = inputs.idle_probe {
        match (p.died_between_seconds, p.server_closed) {
            (Some((lo, hi)), Some(false)) => l.add(Cause::NetworkDrop, "probe", 0.9, format!(
                "an idle connection died after {lo:.0}–{hi:.0} s of silence, and the server did not close it (Aborted_clients unchanged): a middlebox dropped the flow"
            )),
            (Some((lo, hi)), _) => l.add(Cause::IdleTimeout, "probe", 0.8, format!(
                "an idle connection died after {lo:.0}–{hi:.0} s of silence, closed by the server"
            )),
            (None, _) => l.add(Cause::NetworkDrop, "probe", -0.5, format!(
                "an idle connection survived {:.0} s of silence", p.held_seconds
            )),
        }
    }
    if let Some(p) = inputs.packet_probe {
        if let Some(limit) = p.server_limit {
            l.add(
                Cause::PacketTooLarge,
                "probe",
                0.0,
                format!(
                    "the largest statement the server accepted: {} bytes ({})",
                    limit, p.detail
                ),
            );
        }
    }
}
