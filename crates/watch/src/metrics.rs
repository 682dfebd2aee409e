//! The Prometheus text exposition (format 0.0.4) of the watcher's state.

use std::fmt::Write as _;

use crate::state::ServerState;

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
        ("goneaway_aborted_clients", "gauge", "The server's Aborted_clients counter (connections closed without COM_QUIT: idle timeouts, vanished clients).", |s| s.last.as_ref().and_then(|l| l.status.get("Aborted_clients")).map(|v| *v as f64)),
        ("goneaway_aborted_connects", "gauge", "The server's Aborted_connects counter (failed connection attempts).", |s| s.last.as_ref().and_then(|l| l.status.get("Aborted_connects")).map(|v| *v as f64)),
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
    ];
    for (name, kind, help, get) in gauges {
        f.head(name, kind, help);
        for s in servers {
            if let Some(v) = get(s) {
                f.sample(name, &[("server", &s.name)], v);
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
