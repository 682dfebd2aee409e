//! The Prometheus text exposition (format 0.0.4) of the watcher's state.

use std::fmt::Write as _;

use crate::state::{GaleraSnapshot, ReplicaSnapshot, ServerState, Snapshot};

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A Galera node's state from its last poll, while it answers (a node that is down exports
/// goneaway_up 0, not the cluster it saw before it went away).
fn galera(s: &ServerState) -> Option<&GaleraSnapshot> {
    current(s)?.galera.as_ref()
}

/// The last snapshot, while the server answers.
fn current(s: &ServerState) -> Option<&Snapshot> {
    s.last.as_ref().filter(|_| s.up)
}

/// Escapes a label value: backslash, double quote and newline.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
    }
}

/// Renders every server's state.
pub fn render(servers: &[ServerState]) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    type Getter = fn(&ServerState) -> Option<f64>;
    let gauges: &[(&str, &str, &str, Getter)] = &[
        ("goneaway_up", "gauge", "Whether the last poll of the server succeeded (1) or not (0).", |s| Some(if s.up { 1.0 } else { 0.0 })),
        ("goneaway_polls_total", "counter", "Polls made.", |s| Some(s.polls as f64)),
        ("goneaway_uptime_seconds", "gauge", "The server's Uptime at the last successful poll.", |s| s.last.as_ref().map(|l| l.uptime as f64)),
        ("goneaway_restarts_detected_total", "counter", "Restarts detected: Uptime lower than at the previous poll.", |s| Some(s.restarts as f64)),
        ("goneaway_last_success_timestamp_seconds", "gauge", "Unix time of the last successful poll.", |s| s.last_success),
        // The server's own counters (they restart from zero with the server, which
        // Prometheus's rate() treats as a counter reset).
        ("goneaway_aborted_clients_total", "counter", "The server's Aborted_clients counter (connections closed without COM_QUIT: idle timeouts, vanished clients).", |s| s.last.as_ref().and_then(|l| l.status.get("Aborted_clients")).map(|v| *v as f64)),
        ("goneaway_aborted_connects_total", "counter", "The server's Aborted_connects counter (failed connection attempts).", |s| s.last.as_ref().and_then(|l| l.status.get("Aborted_connects")).map(|v| *v as f64)),
        ("goneaway_aborted_clients_per_hour", "gauge", "Aborted_clients per hour between the last two polls.", |s| s.rates.get("Aborted_clients").copied()),
        ("goneaway_aborted_connects_per_hour", "gauge", "Aborted_connects per hour between the last two polls.", |s| s.rates.get("Aborted_connects").copied()),
        ("goneaway_threads_connected", "gauge", "Connections open now.", |s| s.last.as_ref().and_then(|l| l.status.get("Threads_connected")).map(|v| *v as f64)),
        ("goneaway_max_connections", "gauge", "The server's max_connections.", |s| s.last.as_ref().and_then(|l| l.max_connections).map(|v| v as f64)),
        ("goneaway_connection_headroom", "gauge", "max_connections minus the connections open now.", |s| {
            let l = s.last.as_ref()?;
            Some(l.max_connections? as f64 - *l.status.get("Threads_connected")? as f64)
        }),
        ("goneaway_wait_timeout_seconds", "gauge", "The server's global wait_timeout.", |s| s.last.as_ref().and_then(|l| l.wait_timeout).map(|v| v as f64)),
        ("goneaway_connections_near_wait_timeout", "gauge", "Idle connections at 80 % or more of wait_timeout: the server closes them soon unless used (needs the PROCESS privilege to see other accounts).", |s| s.last.as_ref().map(|l| l.near_wait_timeout as f64)),
        ("goneaway_read_only", "gauge", "Whether the server is read-only (@@read_only): 1 or 0.", |s| current(s)?.read_only.map(flag)),
        // Galera nodes only.
        ("goneaway_galera_cluster_size", "gauge", "Galera members in this node's component (wsrep_cluster_size).", |s| galera(s)?.cluster_size.map(|v| v as f64)),
        ("goneaway_galera_cluster_address_nodes", "gauge", "Galera nodes listed in wsrep_cluster_address: the size the cluster should have.", |s| galera(s)?.address_nodes.map(|v| v as f64)),
        ("goneaway_galera_primary", "gauge", "Whether this Galera node is in the primary component (wsrep_cluster_status = Primary): 1 or 0. At 0 every query fails with 1047.", |s| galera(s).map(|g| flag(g.primary))),
        ("goneaway_galera_ready", "gauge", "Whether this Galera node accepts queries (wsrep_ready = ON): 1 or 0.", |s| galera(s).map(|g| flag(g.ready))),
        ("goneaway_galera_local_state", "gauge", "wsrep_local_state: 1 joining, 2 donor/desynced, 3 joined, 4 synced.", |s| galera(s)?.local_state.map(|v| v as f64)),
        ("goneaway_galera_flow_control_paused_ratio", "gauge", "wsrep_flow_control_paused: the share of time replication was paused by flow control (0 to 1).", |s| galera(s)?.flow_control_paused),
    ];
    for (name, kind, help, get) in gauges {
        f.head(name, kind, help);
        for s in servers {
            if let Some(v) = get(s) {
                f.sample(name, &[("server", &s.name)], v);
            }
        }
    }
    // Replicas only: one series per replication channel (a `channel` label for named
    // channels of multi-source replication).
    type ChannelGetter = fn(&ReplicaSnapshot) -> Option<f64>;
    let channels: &[(&str, &str, ChannelGetter)] = &[
        ("goneaway_replica_lag_seconds", "Seconds_Behind_Master; absent while it is NULL (a replication thread stopped or not connected).", |c| c.lag_seconds.map(|v| v as f64)),
        ("goneaway_replica_io_running", "Whether the replica's IO thread runs (Slave_IO_Running = Yes): 1 or 0.", |c| Some(flag(c.io_running))),
        ("goneaway_replica_sql_running", "Whether the replica's SQL thread runs (Slave_SQL_Running = Yes): 1 or 0.", |c| Some(flag(c.sql_running))),
    ];
    for (name, help, get) in channels {
        f.head(name, "gauge", help);
        for s in servers {
            for c in current(s).iter().flat_map(|l| &l.replication) {
                if let Some(v) = get(c) {
                    if c.channel.is_empty() {
                        f.sample(name, &[("server", &s.name)], v);
                    } else {
                        f.sample(name, &[("server", &s.name), ("channel", &c.channel)], v);
                    }
                }
            }
        }
    }
    f.head(
        "goneaway_connection_errors_per_hour",
        "gauge",
        "Connection_errors_* per hour between the last two polls, by kind.",
    );
    for s in servers {
        for (k, v) in s
            .rates
            .iter()
            .filter(|(k, _)| k.starts_with("Connection_errors_"))
        {
            let kind = k
                .trim_start_matches("Connection_errors_")
                .to_ascii_lowercase();
            f.sample(
                "goneaway_connection_errors_per_hour",
                &[("server", &s.name), ("kind", &kind)],
                *v,
            );
        }
    }
    f.head(
        "goneaway_poll_errors_total",
        "counter",
        "Failed polls, by the classified cause of the failure.",
    );
    for s in servers {
        for (cause, n) in &s.poll_errors {
            f.sample(
                "goneaway_poll_errors_total",
                &[("server", &s.name), ("cause", cause.as_str())],
                *n as f64,
            );
        }
    }
    f.head(
        "goneaway_finding_confidence",
        "gauge",
        "The doctor's findings at the last successful poll: cause and confidence (0 to 1).",
    );
    for s in servers {
        if let Some(l) = &s.last {
            for (cause, c) in &l.findings {
                f.sample(
                    "goneaway_finding_confidence",
                    &[("server", &s.name), ("cause", cause.as_str())],
                    *c,
                );
            }
        }
    }
    out
}
