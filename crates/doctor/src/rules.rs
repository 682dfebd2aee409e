//! The rules: each turns facts, rates, log events, application errors and probe results
//! into evidence for or against a cause.

use std::time::Duration;

use goneaway_core::Cause;

use crate::chain::ProxyLayer;
use crate::facts::Facts;
use crate::finding::{ClusterFinding, Evidence, Finding, Ledger, Severity};
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
    /// The proxy the application connects through, if one was described.
    pub proxy: Option<&'a ProxyLayer>,
    /// A known middlebox idle limit (seconds) and where it comes from.
    pub middlebox: Option<(u64, &'static str)>,
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
        && ![
            "error_log",
            "probe",
            "rate",
            "status",
            "variable",
            "pool_settings",
        ]
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
    // Behind the proxy the pool's connections end at the proxy, which keeps the server's
    // side alive.
    if inputs.proxy.is_some() {
        return false;
    }
    let Some(wait) = inputs.facts.and_then(|f| f.global_u64("wait_timeout")) else {
        return false;
    };
    pool_idle_limit(inputs).is_some_and(|l| l.as_secs() >= wait)
}

fn pool_rules(l: &mut Ledger, inputs: &Inputs<'_>) {
    let wait = inputs.facts.and_then(|f| f.global_u64("wait_timeout"));
    if let (Some(p), Some(wait)) = (inputs.proxy, wait) {
        // The proxy pings its backends; one that waits longer than wait_timeout finds them
        // closed and must reconnect (an idle transaction is lost then).
        if let Some(k) = p.keepalive_interval.filter(|k| k.as_secs() >= wait) {
            l.add(Cause::IdleTimeout, "proxy_settings", 0.6, format!(
                "the proxy pings idle backends every {} ({}: keepalive_interval_secs), but the server closes them after wait_timeout = {wait} s",
                secs(k),
                p.source
            ));
        }
    }
    let Some(limit) = pool_idle_limit(inputs) else {
        return;
    };
    let what = match (inputs.pool_lifetime, inputs.app_timeout) {
        (Some(_), Some(_)) => "the pool's lifetime and idle timeout let",
        (Some(_), None) => "the pool's lifetime lets",
        _ => "the pool's idle timeout lets",
    };
    if let Some((m, source)) = inputs.middlebox {
        if limit.as_secs() >= m {
            l.add(Cause::NetworkDrop, "pool_settings", 0.7, format!(
                "{what} a connection sit idle for up to {}, but a middlebox drops idle flows after {m} s ({source})",
                secs(limit)
            ));
        }
    }
    if let Some(p) = inputs.proxy {
        // Behind the proxy the pool faces the proxy's client side, not wait_timeout.
        if let Some(c) = p.client_idle_timeout.filter(|c| limit >= *c) {
            l.add(Cause::IdleTimeout, "pool_settings", 0.85, format!(
                "{what} a connection sit idle for up to {}, but the proxy closes client sessions idle for {} ({}: client_idle_timeout_secs)",
                secs(limit),
                secs(c),
                p.source
            ));
        }
        return;
    }
    let Some(wait) = wait else {
        return;
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

/// Replication lag below this is not a finding (seconds), unless a caller chooses another
/// bound ([`crate::Options::replica_lag`]): a few seconds of lag are routine on a busy
/// replica; half a minute is stale data for any application that reads there.
pub(crate) const DEFAULT_REPLICA_LAG: u64 = 30;

/// Flow control paused replication for at least this share of the time: writers stall.
const FLOW_CONTROL_PAUSED: f64 = 0.1;

fn evidence(source: &'static str, detail: impl Into<String>) -> Evidence {
    Evidence {
        source,
        detail: detail.into(),
        weight: 1.0,
    }
}

fn context(source: &'static str, detail: impl Into<String>) -> Evidence {
    Evidence {
        source,
        detail: detail.into(),
        weight: 0.0,
    }
}

/// The state of the cluster or the replication this server is part of.
pub(crate) fn cluster_checks(f: &Facts, replica_lag: u64) -> Vec<ClusterFinding> {
    let mut out = Vec::new();
    if f.is_galera() {
        galera_checks(f, &mut out);
    }
    replication_checks(f, replica_lag, &mut out);
    out.sort_by_key(|c| std::cmp::Reverse(c.severity));
    out
}

/// What 1047 means to a client, said once.
const ER_1047: &str = "error 1047 \"WSREP has not yet prepared node for application use\"";

fn galera_checks(f: &Facts, out: &mut Vec<ClusterFinding>) {
    let status = |n: &str| f.status_str(n);
    let cluster_status = status("wsrep_cluster_status");
    let primary = cluster_status.as_deref() == Some("Primary");
    let size = f.counter("wsrep_cluster_size");
    let members = status("wsrep_incoming_addresses").filter(|a| !a.is_empty());
    let address = f.global("wsrep_cluster_address").unwrap_or_default();

    if let Some(state) = cluster_status.as_deref().filter(|s| *s != "Primary") {
        let mut ev = vec![evidence(
            "status",
            format!("wsrep_cluster_status = {state}"),
        )];
        if let Some(n) = size {
            ev.push(evidence(
                "status",
                format!(
                    "wsrep_cluster_size = {n}: the component this node sees{}",
                    f.galera_address_nodes()
                        .map(|a| format!(", of {a} nodes in wsrep_cluster_address"))
                        .unwrap_or_default()
                ),
            ));
        }
        out.push(ClusterFinding {
            check: "galera_non_primary",
            severity: Severity::Critical,
            title: format!("this Galera node is in a {state} component: it lost quorum"),
            evidence: ev,
            consequence: format!(
                "Every query on this node fails with {ER_1047}, and transactions open on it were rolled back; a pool that validates with a ping keeps handing out these connections, since COM_PING still succeeds. Clients must go to a node of the primary component."
            ),
            action: "Find the primary component (the nodes whose wsrep_cluster_status is Primary) and send clients there; once the lost nodes are back this node rejoins by itself. If no primary component is left, bootstrap one from the most advanced node (SET GLOBAL wsrep_provider_options='pc.bootstrap=YES' on it). Health checks should test wsrep_ready, not a ping.".into(),
        });
    }

    if let (Some(size), Some(listed)) = (size, f.galera_address_nodes()) {
        if (size as usize) < listed {
            let missing = listed - size as usize;
            let mut ev = vec![
                evidence(
                    "status",
                    format!(
                        "wsrep_cluster_size = {size}: the members this node is in a component with"
                    ),
                ),
                evidence(
                    "variable",
                    format!("wsrep_cluster_address = {address}: {listed} nodes"),
                ),
            ];
            if let Some(m) = &members {
                ev.push(context(
                    "status",
                    format!("wsrep_incoming_addresses = {m}: the members' client addresses"),
                ));
            }
            // Quorum is a majority of the last primary component: one more crash among
            // `size` members leaves `size - 1`.
            let here = if !primary {
                format!("Clients here get {ER_1047} too: this component has no quorum.")
            } else if size >= 3 {
                format!(
                    "Clients here keep working while this component keeps quorum; one more crash leaves {} of {size}, still a majority.",
                    size - 1
                )
            } else if size == 2 {
                format!("Clients here keep working while this component keeps quorum; one more crash leaves 1 of 2, no majority: the survivor goes non-Primary and refuses every query with {ER_1047}.")
            } else {
                "Clients here keep working, but this node is the last one: when it fails, no node is left.".to_string()
            };
            out.push(ClusterFinding {
                check: "galera_members_missing",
                severity: if primary {
                    Severity::Warning
                } else {
                    Severity::Critical
                },
                title: format!(
                    "this node's component has {size} of the {listed} Galera nodes in wsrep_cluster_address: {missing} missing"
                ),
                evidence: ev,
                consequence: format!(
                    "Clients of the missing node(s) lost their connections when it left (2006 \"MySQL server has gone away\" / 2013 \"Lost connection\") and cannot connect, or get {ER_1047}, until it rejoins. {here}"
                ),
                action: "Bring the missing node(s) back (they rejoin by IST or a full state transfer); point clients at every node through a proxy or a driver list of hosts, so a lost node costs a reconnect, not an outage.".into(),
            });
        }
    }

    let ready = status("wsrep_ready");
    let state = f.counter("wsrep_local_state");
    let comment = status("wsrep_local_state_comment").unwrap_or_default();
    if ready.as_deref().is_some_and(|r| r != "ON") {
        let mut ev = vec![evidence(
            "status",
            format!("wsrep_ready = {}", ready.unwrap_or_default()),
        )];
        if let Some(s) = state {
            ev.push(evidence(
                "status",
                format!("wsrep_local_state = {s} ({comment}); 4 is Synced"),
            ));
        }
        out.push(ClusterFinding {
            check: "galera_not_ready",
            severity: Severity::Critical,
            title: "this Galera node does not accept queries (wsrep_ready = OFF)".into(),
            evidence: ev,
            consequence: format!(
                "Clients can log in, but every statement fails with {ER_1047}; their pools see live connections that fail every query."
            ),
            action: "Wait for the node to finish joining or to regain a primary component (its error log says which); keep clients off it meanwhile: health checks must test wsrep_ready = ON and wsrep_local_state = 4.".into(),
        });
    } else if let Some(s) = state.filter(|s| *s != 4) {
        let what = match s {
            1 => "joining the cluster: not ready for queries yet",
            2 => "a donor or desynced: serving a state transfer, or taken out of flow control on purpose",
            3 => "joined and catching up on the write sets it missed",
            _ => "not in a state clients should use",
        };
        let rsync_donor = s == 2
            && f.global("wsrep_sst_method")
                .is_some_and(|m| m.starts_with("rsync"));
        out.push(ClusterFinding {
            check: "galera_not_synced",
            severity: Severity::Warning,
            title: format!("this Galera node is not Synced: wsrep_local_state = {s} ({comment})"),
            evidence: vec![
                evidence("status", format!("wsrep_local_state = {s} ({comment}): {what}; 4 is Synced")),
                context("variable", format!(
                    "wsrep_sst_method = {}",
                    f.global("wsrep_sst_method").unwrap_or("?")
                )),
            ],
            consequence: if rsync_donor {
                "With the rsync state transfer a donor is locked while it sends: clients' writes (and many reads) wait until the transfer ends, and clients with short timeouts give up with 2013 \"Lost connection during query\".".into()
            } else {
                "Reads here may miss the latest writes of the cluster, and the node may refuse queries with 1047 until it is Synced.".into()
            },
            action: "Keep clients on Synced nodes (health checks test wsrep_local_state = 4); for donors, prefer wsrep_sst_method = mariabackup, which does not block the donor.".into(),
        });
    }

    if let Some(paused) = status("wsrep_flow_control_paused").and_then(|p| p.parse::<f64>().ok()) {
        if paused >= FLOW_CONTROL_PAUSED {
            let mut ev = vec![evidence(
                "status",
                format!(
                    "wsrep_flow_control_paused = {paused:.3}: replication was paused {:.0} % of the time",
                    paused * 100.0
                ),
            )];
            for name in [
                "wsrep_flow_control_sent",
                "wsrep_flow_control_recv",
                "wsrep_local_recv_queue_avg",
            ] {
                if let Some(v) = status(name) {
                    ev.push(context("status", format!("{name} = {v}")));
                }
            }
            out.push(ClusterFinding {
                check: "galera_flow_control",
                severity: Severity::Warning,
                title: format!("flow control paused the Galera cluster {:.0} % of the time", paused * 100.0),
                evidence: ev,
                consequence: "Every commit in the cluster waits while flow control is on: statements stall, and clients whose read timeout is shorter than the stall (a driver's socket timeout, a proxy's) give up with 2013 \"Lost connection during query\".".into(),
                action: "Find the slow node (the one with the highest wsrep_flow_control_sent and wsrep_local_recv_queue_avg): raise its wsrep_slave_threads, fix its disk, or take it out; gcs.fc_limit sets how far it may fall behind.".into(),
            });
        }
    }
}

fn replication_checks(f: &Facts, replica_lag: u64, out: &mut Vec<ClusterFinding>) {
    // Group Replication runs its own channels and keeps its secondaries super_read_only:
    // neither is a mistake to report with the rules of classic replication.
    if f.server.cluster.as_deref() == Some("group_replication") {
        return;
    }
    let read_only = f.global_on("read_only") || f.global_on("super_read_only");
    for ch in &f.replication {
        let name = if ch.name.is_empty() {
            String::new()
        } else {
            format!(" (channel {})", ch.name)
        };
        let source = context(
            "replication",
            format!("replicates from {}{name}", ch.source),
        );
        if ch.io_running != "Yes" {
            let mut ev = vec![evidence(
                "replication",
                format!("Slave_IO_Running = {}", ch.io_running),
            )];
            if !ch.last_io_error.is_empty() {
                ev.push(evidence(
                    "replication",
                    format!(
                        "Last_IO_Error ({}) = {}",
                        ch.last_io_errno, ch.last_io_error
                    ),
                ));
            }
            ev.push(source.clone());
            out.push(ClusterFinding {
                check: "replica_io_stopped",
                severity: Severity::Warning,
                title: if ch.io_running == "Connecting" {
                    format!("this replica cannot reach its primary {}{name}", ch.source)
                } else {
                    format!("this replica's IO thread is stopped{name}")
                },
                evidence: ev,
                consequence: "The replica receives nothing: its data ages by the second while Seconds_Behind_Master shows NULL, so lag alarms on it stay silent; applications reading here get stale data, and a failover to it would lose what it never received.".into(),
                action: "Fix what Last_IO_Error names (the primary down or unreachable, the replication account, a purged binary log), then START SLAVE IO_THREAD.".into(),
            });
        }
        if ch.sql_running != "Yes" {
            let mut ev = vec![evidence(
                "replication",
                format!("Slave_SQL_Running = {}", ch.sql_running),
            )];
            if !ch.last_sql_error.is_empty() {
                ev.push(evidence(
                    "replication",
                    format!(
                        "Last_SQL_Error ({}) = {}",
                        ch.last_sql_errno, ch.last_sql_error
                    ),
                ));
            }
            ev.push(source.clone());
            out.push(ClusterFinding {
                check: "replica_sql_stopped",
                severity: Severity::Warning,
                title: format!("this replica's SQL thread is stopped{name}: it applies nothing"),
                evidence: ev,
                consequence: "Nothing the primary writes reaches this replica's tables; it will not resume by itself. Applications reading here get ever staler data.".into(),
                action: "Fix what Last_SQL_Error names (a row written on the replica alone: remove the difference), then START SLAVE SQL_THREAD; keep replicas read_only so it does not happen again.".into(),
            });
        }
        if let Some(lag) = ch.seconds_behind {
            let delayed = ch.sql_delay > 0 && lag <= ch.sql_delay + replica_lag;
            if lag >= replica_lag && !delayed {
                let mut ev = vec![evidence(
                    "replication",
                    format!("Seconds_Behind_Master = {lag}"),
                )];
                if ch.sql_delay > 0 {
                    ev.push(context(
                        "replication",
                        format!("SQL_Delay = {} s (MASTER_DELAY)", ch.sql_delay),
                    ));
                }
                ev.push(source.clone());
                out.push(ClusterFinding {
                    check: "replica_lag",
                    severity: Severity::Warning,
                    title: format!("this replica is {lag} s behind its primary{name}"),
                    evidence: ev,
                    consequence: format!(
                        "Reads here miss the last {lag} s of writes (an application does not read its own writes); a failover to this replica now would have to wait for it or lose those writes."
                    ),
                    action: "Look for what holds the SQL thread (a long transaction or lock on the replica, a big write on the primary, slow disk); raise slave_parallel_threads; send reads that must be fresh to the primary.".into(),
                });
            }
        }
    }
    if !f.replication.is_empty() && !read_only && f.global("read_only").is_some() {
        out.push(ClusterFinding {
            check: "replica_writable",
            severity: Severity::Warning,
            title: "this replica is writable (read_only = OFF) while it replicates".into(),
            evidence: vec![
                evidence("variable", "read_only = OFF"),
                evidence(
                    "replication",
                    format!(
                        "replicates from {}",
                        f.replication
                            .iter()
                            .map(|c| c.source.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            ],
            consequence: "Writes sent here (a pool pointed at the wrong host, a failover done in the wrong order) succeed on this server alone: the data diverges from the primary, and the next replicated change to the same rows stops the SQL thread (1062, 1032).".into(),
            action: "SET GLOBAL read_only = ON on every replica (and in its my.cnf); only the primary is writable.".into(),
        });
    }
    if f.replication.is_empty() && read_only {
        let attached = f.processes.replicas_connected;
        let mut ev = vec![evidence(
            "variable",
            format!(
                "read_only = {}{}",
                f.global("read_only").unwrap_or("?"),
                f.global("super_read_only")
                    .map(|s| format!(", super_read_only = {s}"))
                    .unwrap_or_default()
            ),
        )];
        ev.push(evidence(
            "replication",
            "replicates from nobody (no replication channel)",
        ));
        if attached > 0 {
            ev.push(evidence(
                "process_list",
                format!("{attached} replica(s) read this server's binary log (Binlog Dump threads): it is their primary"),
            ));
        }
        out.push(ClusterFinding {
            check: "primary_read_only",
            severity: if attached > 0 { Severity::Critical } else { Severity::Warning },
            title: if attached > 0 {
                "this primary is read-only: its replicas follow it, but nobody can write to it".into()
            } else {
                "this server replicates from nobody and is read-only".into()
            },
            evidence: ev,
            consequence: "Every write of the application fails with 1290 \"The MariaDB server is running with the --read-only option so it cannot execute this statement\" (accounts with SUPER or READ_ONLY ADMIN are let through, which hides it from administrators). Typical after a failover that promoted this server but did not switch read_only off.".into(),
            action: "If this is the primary: SET GLOBAL read_only = OFF (and in its my.cnf). If it is a replica that lost its configuration, point it at its primary again.".into(),
        });
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use crate::facts::{ReplicaChannel, Scoped};

    fn galera(status: &[(&str, &str)], vars: &[(&str, &str)]) -> Facts {
        let mut f = Facts::default();
        f.server.cluster = Some("galera".into());
        for (k, v) in status {
            if let Ok(n) = v.parse::<u64>() {
                f.status.insert(k.to_string(), n);
            } else {
                f.status_text.insert(k.to_string(), v.to_string());
            }
        }
        for (k, v) in vars {
            f.variables.insert(
                k.to_string(),
                Scoped {
                    global: Some(v.to_string()),
                    session: None,
                },
            );
        }
        f
    }

    const SYNCED: &[(&str, &str)] = &[
        ("wsrep_cluster_status", "Primary"),
        ("wsrep_cluster_size", "3"),
        ("wsrep_ready", "ON"),
        ("wsrep_local_state", "4"),
        ("wsrep_local_state_comment", "Synced"),
        ("wsrep_flow_control_paused", "0.000000"),
    ];

    fn names(f: &Facts) -> Vec<&'static str> {
        cluster_checks(f, DEFAULT_REPLICA_LAG)
            .iter()
            .map(|c| c.check)
            .collect()
    }

    #[test]
    fn a_synced_galera_node_of_a_whole_cluster_is_no_finding() {
        let f = galera(SYNCED, &[("wsrep_cluster_address", "gcomm://a,b,c")]);
        assert!(names(&f).is_empty());
        // `gcomm://` alone (a bootstrap node) lists no nodes: nothing to compare.
        let f = galera(
            &[
                ("wsrep_cluster_size", "1"),
                ("wsrep_cluster_status", "Primary"),
            ],
            &[("wsrep_cluster_address", "gcomm://")],
        );
        assert_eq!(f.galera_address_nodes(), None);
        assert!(names(&f).is_empty());
        let f = galera(
            &[],
            &[("wsrep_cluster_address", "gcomm://a:4567,b?pc.wait_prim=no")],
        );
        assert_eq!(f.galera_address_nodes(), Some(2));
    }

    #[test]
    fn flow_control_and_a_rsync_donor() {
        let mut status = SYNCED.to_vec();
        status.retain(|(k, _)| *k != "wsrep_flow_control_paused" && *k != "wsrep_local_state");
        status.push(("wsrep_flow_control_paused", "0.350000"));
        status.push(("wsrep_flow_control_sent", "12"));
        status.push(("wsrep_local_state", "2"));
        let f = galera(
            &status,
            &[
                ("wsrep_cluster_address", "gcomm://a,b,c"),
                ("wsrep_sst_method", "rsync"),
            ],
        );
        let found = cluster_checks(&f, DEFAULT_REPLICA_LAG);
        let fc = found
            .iter()
            .find(|c| c.check == "galera_flow_control")
            .unwrap();
        assert!(fc.evidence[0].detail.contains("35 %"), "{fc:?}");
        assert!(fc.consequence.contains("2013"));
        let donor = found
            .iter()
            .find(|c| c.check == "galera_not_synced")
            .unwrap();
        assert!(donor.consequence.contains("locked"), "{donor:?}");
    }

    #[test]
    fn a_deliberate_delay_is_not_lag() {
        let mut f = Facts::default();
        f.replication.push(ReplicaChannel {
            source: "db1:3306".into(),
            io_running: "Yes".into(),
            sql_running: "Yes".into(),
            seconds_behind: Some(3000),
            sql_delay: 3600,
            ..ReplicaChannel::default()
        });
        f.variables.insert(
            "read_only".into(),
            Scoped {
                global: Some("ON".into()),
                session: None,
            },
        );
        assert!(names(&f).is_empty());
        f.replication[0].sql_delay = 0;
        assert_eq!(names(&f), ["replica_lag"]);
        f.replication[0].seconds_behind = None;
        f.replication[0].io_running = "No".into();
        f.replication[0].last_io_error = "Got fatal error 1236".into();
        assert_eq!(names(&f), ["replica_io_stopped"]);
    }
}
