//! The doctor's report and its three renderings: text, JSON and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use goneaway_core::{Cause, Retry};
use serde::Serialize;

use crate::advice::Recommendations;
use crate::chain::{self, Link};
use crate::facts::Facts;
use crate::finding::Finding;
pub use crate::finding::{ClusterFinding, Severity};
use crate::logs::{ErrorLogScan, LogEvent};
use crate::probe::{IdleProbe, PacketProbe};
use crate::sample::Sample;

/// The version of the JSON layout; bumped only when a field is renamed or removed.
pub const SCHEMA: &str = "goneaway.doctor/1";

/// Exit code: the doctor found nothing.
pub const EXIT_HEALTHY: u8 = 0;
/// Exit code: the doctor has findings.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: the doctor could not diagnose (the connection failed; the connection error is
/// itself diagnosed in the report).
pub const EXIT_FAILED: u8 = 2;

/// The overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Nothing found.
    Healthy,
    /// Something found.
    Findings,
    /// Could not connect or read the server.
    Failed,
}

/// Why the doctor could not connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionFailure {
    /// The error as the driver reported it.
    pub message: String,
    /// The MySQL error number, when there is one.
    pub code: Option<u16>,
    /// The classified cause.
    pub cause: Cause,
    /// Whether trying again may help.
    pub retry: Retry,
    /// The classifier's explanation.
    pub explanation: String,
}

/// The probes that ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Probes {
    /// `--probe-idle`.
    pub idle: Option<IdleProbe>,
    /// `--probe-packet`.
    pub packet: Option<PacketProbe>,
}

/// Everything the doctor found. JSON field names are stable (see [`SCHEMA`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The target, password redacted.
    pub target: String,
    /// When the report was made, UTC.
    pub generated_at: String,
    /// The outcome.
    pub status: Status,
    /// The process exit code the outcome maps to.
    pub exit_code: u8,
    /// Why the connection failed, when it did.
    pub connection_error: Option<ConnectionFailure>,
    /// What the server says about itself.
    pub facts: Option<Facts>,
    /// Counter rates per hour since the server started.
    pub rates_since_start: BTreeMap<String, f64>,
    /// Counter rates per hour during the sample.
    pub sample: Option<Sample>,
    /// What the server's error log says.
    pub error_log: Option<ErrorLogScan>,
    /// OOM kills found in the kernel log.
    pub kernel_log: Option<Vec<LogEvent>>,
    /// The application's errors, classified.
    pub application: Option<goneaway_core::Report>,
    /// Active probes.
    pub probes: Probes,
    /// Probable causes, most confident first.
    pub findings: Vec<Finding>,
    /// Every layer that ends or keeps alive an idle connection (pool, proxy, middlebox,
    /// server), in the order they act on it, each with its verdict and fix.
    pub timeout_chain: Vec<Link>,
    /// The limits on a transfer that stalls (`net_read_timeout`, `net_write_timeout`),
    /// apart from the idle chain.
    pub transfer_limits: Vec<Link>,
    /// What is wrong with the cluster or the replication the server is part of, most
    /// severe first (empty for a healthy or standalone server).
    pub cluster: Vec<ClusterFinding>,
    /// What to change.
    pub recommendations: Recommendations,
    /// What could not be read and other remarks.
    pub notes: Vec<String>,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    fn var(&self, name: &str) -> String {
        let Some(f) = &self.facts else {
            return "?".into();
        };
        match f.variables.get(name) {
            Some(v) => {
                let g = v.global.as_deref().unwrap_or("?");
                match v.session.as_deref() {
                    Some(s) if s != g => format!("{g} (session {s})"),
                    _ => g.to_string(),
                }
            }
            None => "n/a".into(),
        }
    }

    /// Human text; `color` adds ANSI colours.
    pub fn render_text(&self, color: bool) -> String {
        let (bold, dim, red, green, yellow, reset) = if color {
            (
                "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m",
            )
        } else {
            ("", "", "", "", "", "")
        };
        let mut o = String::new();
        let _ = writeln!(o, "{bold}goneaway doctor{reset} — {}", self.target);
        if let Some(e) = &self.connection_error {
            let _ = writeln!(
                o,
                "\n{red}{bold}Could not connect: {}{reset} [{}]",
                e.cause.title(),
                e.cause
            );
            let _ = writeln!(o, "  error: {}", e.message);
            let _ = writeln!(o, "  why:   {}", e.explanation);
        }
        if let Some(f) = &self.facts {
            let _ = writeln!(o, "\n{bold}Server{reset}");
            let _ = writeln!(
                o,
                "  {} ({}){}{}",
                f.server.version,
                f.server.flavour,
                f.server
                    .managed
                    .as_deref()
                    .map(|m| format!(", managed: {m}"))
                    .unwrap_or_default(),
                f.server
                    .cluster
                    .as_deref()
                    .map(|c| format!(", cluster: {c}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(o, "  up {} s, since {}", f.uptime_seconds, f.started_at);
            let _ = writeln!(o, "\n{bold}Settings{reset}");
            for name in [
                "wait_timeout",
                "interactive_timeout",
                "net_read_timeout",
                "net_write_timeout",
                "connect_timeout",
                "max_allowed_packet",
                "max_connections",
                "max_connect_errors",
            ] {
                let _ = writeln!(o, "  {name:<22} {}", self.var(name));
            }
            let _ = writeln!(o, "\n{bold}Counters{reset}");
            for name in [
                "Aborted_clients",
                "Aborted_connects",
                "Threads_connected",
                "Max_used_connections",
            ] {
                let total = f.counter(name).map_or("?".into(), |v| v.to_string());
                let since = self
                    .rates_since_start
                    .get(name)
                    .map(|r| format!(", {r}/h since start"))
                    .unwrap_or_default();
                let now = self
                    .sample
                    .as_ref()
                    .and_then(|s| s.per_hour.get(name))
                    .map(|r| format!(", {r}/h now"))
                    .unwrap_or_default();
                let _ = writeln!(o, "  {name:<22} {total}{since}{now}");
            }
            let p = &f.processes;
            let _ = writeln!(
                o,
                "  {:<22} {} ({} idle, {} near wait_timeout, {} long-running, {} killed)",
                "connections",
                p.total,
                p.sleeping,
                p.near_wait_timeout.len(),
                p.long_running.len(),
                p.killed.len()
            );
        }
        if !self.timeout_chain.is_empty() {
            let _ = writeln!(
                o,
                "\n{bold}Timeout chain{reset} {dim}(first to act on an idle connection first){reset}"
            );
            chain::render_text(&self.timeout_chain, &self.transfer_limits, &mut o);
        }
        if let Some(log) = &self.error_log {
            let _ = writeln!(
                o,
                "\n{bold}Error log{reset} {dim}{} ({} lines){reset}",
                log.source, log.lines_scanned
            );
            let _ = writeln!(
                o,
                "  starts: {} ({} clean, {} unclean), aborted connections: {}, crash lines: {}",
                log.starts.len(),
                log.clean_starts().count(),
                log.unclean_starts().count(),
                log.aborted.iter().map(|g| g.count).sum::<usize>(),
                log.crashes.len()
            );
        }
        if !self.cluster.is_empty() {
            let _ = writeln!(o, "\n{bold}Cluster and replication{reset}");
            for c in &self.cluster {
                let colour = match c.severity {
                    Severity::Critical => red,
                    _ => yellow,
                };
                let _ = writeln!(
                    o,
                    "  {colour}{bold}{}{reset} {} {dim}[{}]{reset}",
                    severity_word(c.severity),
                    c.title,
                    c.check
                );
                for e in &c.evidence {
                    let mark = if e.weight > 0.0 { "+" } else { "·" };
                    let _ = writeln!(o, "     {mark} {dim}{}:{reset} {}", e.source, e.detail);
                }
                let _ = writeln!(o, "     clients: {}", c.consequence);
                let _ = writeln!(o, "     do:      {}", c.action);
            }
        }
        let _ = writeln!(o, "\n{bold}Verdict{reset}");
        if self.findings.is_empty() && !self.cluster.is_empty() {
            let _ = writeln!(
                o,
                "  no cause of lost connections on this server beyond the cluster's state above."
            );
        } else if self.findings.is_empty() && chain::needs_change(&self.timeout_chain) {
            let _ = writeln!(
                o,
                "  no cause of lost connections yet beyond the timeout chain above: a layer acts too late."
            );
        } else if self.findings.is_empty() {
            let _ = writeln!(
                o,
                "  {green}nothing found{reset}: no sign of a cause of lost connections."
            );
        }
        for (i, f) in self.findings.iter().enumerate() {
            let c = if f.confidence >= 0.7 { red } else { yellow };
            let _ = writeln!(
                o,
                "  {bold}{}. {}{reset} [{}] {c}{:.0}%{reset}",
                i + 1,
                f.title,
                f.cause,
                f.confidence * 100.0
            );
            for e in &f.evidence {
                let mark = if e.weight > 0.0 {
                    "+"
                } else if e.weight < 0.0 {
                    "-"
                } else {
                    "·"
                };
                let _ = writeln!(o, "     {mark} {dim}{}:{reset} {}", e.source, e.detail);
            }
        }
        let r = &self.recommendations;
        if !r.actions.is_empty() || !r.my_cnf.is_empty() {
            let _ = writeln!(o, "\n{bold}What to do{reset}");
            for a in &r.actions {
                let _ = writeln!(o, "  - {a}");
            }
        }
        if !r.my_cnf.is_empty() {
            let _ = writeln!(o, "\n{bold}Server settings{reset}");
            for s in &r.server {
                let _ = writeln!(
                    o,
                    "  {} {} → {}: {}",
                    s.variable,
                    s.current.as_deref().unwrap_or("?"),
                    s.recommended,
                    s.reason
                );
            }
            let _ = writeln!(o, "\n  my.cnf:");
            for line in r.my_cnf.lines() {
                let _ = writeln!(o, "    {line}");
            }
            let _ = writeln!(o, "\n  now:");
            for s in &r.statements {
                let _ = writeln!(o, "    {s}");
            }
            if let Some(m) = &r.managed {
                let _ = writeln!(o, "  {m}");
            }
        }
        if let Some(p) = &r.pool {
            let _ = writeln!(
                o,
                "\n{bold}Pool settings{reset} {dim}(max idle {} s, lifetime {} s{}; {}){reset}",
                p.max_idle,
                p.max_lifetime,
                p.keepalive
                    .map(|k| format!(", keepalive {k} s"))
                    .unwrap_or_default(),
                p.reason
            );
            for s in &r.frameworks {
                let _ = writeln!(o, "  {}:", s.framework);
                for line in s.settings.lines() {
                    let _ = writeln!(o, "    {line}");
                }
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\n{bold}Notes{reset}");
            for n in &self.notes {
                let _ = writeln!(o, "  - {n}");
            }
        }
        o
    }

    /// Markdown for a ticket: the verdict, then what the MySQL manual's bug-report checklist
    /// asks for (version, platform, settings, counters, the relevant log lines).
    pub fn render_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# goneaway doctor report\n");
        let _ = writeln!(o, "- **Target:** `{}`", self.target);
        let _ = writeln!(o, "- **Generated:** {}", self.generated_at);
        let _ = writeln!(
            o,
            "- **Status:** `{}` (exit code {})",
            match self.status {
                Status::Healthy => "healthy",
                Status::Findings => "findings",
                Status::Failed => "failed",
            },
            self.exit_code
        );
        if let Some(e) = &self.connection_error {
            let _ = writeln!(
                o,
                "\n## Connection failed: {} (`{}`)\n\n```\n{}\n```\n\n{}",
                e.cause.title(),
                e.cause,
                e.message,
                e.explanation
            );
        }
        if !self.cluster.is_empty() {
            let _ = writeln!(o, "\n## Cluster and replication\n");
            for c in &self.cluster {
                let _ = writeln!(
                    o,
                    "- **{}** {} (`{}`)",
                    severity_word(c.severity),
                    c.title.replace('|', "\\|"),
                    c.check
                );
                for e in &c.evidence {
                    let mark = if e.weight > 0.0 {
                        "evidence"
                    } else {
                        "context"
                    };
                    let _ = writeln!(o, "  - *{mark}* ({}): {}", e.source, e.detail);
                }
                let _ = writeln!(o, "  - *clients:* {}", c.consequence);
                let _ = writeln!(o, "  - *do:* {}", c.action);
            }
        }
        let _ = writeln!(o, "\n## Verdict\n");
        if self.findings.is_empty() {
            let _ = writeln!(o, "Nothing found: no sign of a cause of lost connections.");
        } else {
            let _ = writeln!(o, "| # | cause | confidence |\n|---|---|---|");
            for (i, f) in self.findings.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "| {} | `{}` {} | {:.0}% |",
                    i + 1,
                    f.cause,
                    f.title,
                    f.confidence * 100.0
                );
            }
            for (i, f) in self.findings.iter().enumerate() {
                let _ = writeln!(o, "\n### {}. {} (`{}`)\n", i + 1, f.title, f.cause);
                for e in &f.evidence {
                    let mark = if e.weight > 0.0 {
                        "supports"
                    } else if e.weight < 0.0 {
                        "against"
                    } else {
                        "context"
                    };
                    let _ = writeln!(
                        o,
                        "- *{mark}* ({}): {}",
                        e.source,
                        e.detail.replace('|', "\\|")
                    );
                }
            }
        }
        if !self.timeout_chain.is_empty() {
            let _ = writeln!(
                o,
                "\n## Timeout chain\n\nFirst to act on an idle connection first.\n"
            );
            chain::render_markdown(&self.timeout_chain, &self.transfer_limits, &mut o);
        }
        let r = &self.recommendations;
        if !r.actions.is_empty() {
            let _ = writeln!(o, "\n## What to do\n");
            for a in &r.actions {
                let _ = writeln!(o, "- {a}");
            }
        }
        if !r.my_cnf.is_empty() {
            let _ = writeln!(
                o,
                "\n### Server settings\n\n```ini\n{}```\n\n```sql\n{}\n```",
                r.my_cnf,
                r.statements.join("\n")
            );
            if let Some(m) = &r.managed {
                let _ = writeln!(o, "\n{m}");
            }
        }
        if let Some(p) = &r.pool {
            let _ = writeln!(
                o,
                "\n### Pool settings\n\nMax idle {} s, lifetime {} s ({}).\n",
                p.max_idle, p.max_lifetime, p.reason
            );
            for s in &r.frameworks {
                let _ = writeln!(o, "**{}**\n\n```\n{}\n```\n", s.framework, s.settings);
            }
        }
        if let Some(f) = &self.facts {
            let _ = writeln!(o, "\n## Server (for a bug report)\n");
            let _ = writeln!(
                o,
                "- **Version:** {} ({}; {})",
                f.server.version, f.server.version_comment, f.server.flavour
            );
            let _ = writeln!(
                o,
                "- **Platform:** {} {}",
                self.var("version_compile_os"),
                self.var("version_compile_machine")
            );
            let _ = writeln!(
                o,
                "- **Uptime:** {} s (started {})",
                f.uptime_seconds, f.started_at
            );
            if let Some(m) = &f.server.managed {
                let _ = writeln!(o, "- **Managed service:** {m}");
            }
            if let Some(c) = &f.server.cluster {
                let _ = writeln!(o, "- **Cluster:** {c}");
            }
            let _ = writeln!(o, "\n| variable | global | session |\n|---|---|---|");
            for (name, v) in &f.variables {
                let _ = writeln!(
                    o,
                    "| `{name}` | {} | {} |",
                    v.global.as_deref().unwrap_or(""),
                    v.session.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(
                o,
                "\n| counter | value | per hour since start | per hour now |\n|---|---|---|---|"
            );
            for (name, v) in &f.status {
                let since = self
                    .rates_since_start
                    .get(name)
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                let now = self
                    .sample
                    .as_ref()
                    .and_then(|s| s.per_hour.get(name))
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                let _ = writeln!(o, "| `{name}` | {v} | {since} | {now} |");
            }
        }
        if let Some(log) = &self.error_log {
            let _ = writeln!(
                o,
                "\n## Error log\n\nFrom `{}` ({} lines).\n",
                log.source, log.lines_scanned
            );
            let mut lines: Vec<&LogEvent> = Vec::new();
            lines.extend(log.crashes.iter().take(10));
            lines.extend(log.shutdowns.iter().rev().take(3));
            lines.extend(log.starts.iter().rev().take(3).map(|s| &s.event));
            for g in log.aborted.iter().take(5) {
                lines.extend(g.examples.iter().take(1));
            }
            lines.sort_by_key(|e| e.line);
            lines.dedup_by_key(|e| e.line);
            if !lines.is_empty() {
                let _ = writeln!(o, "```");
                for e in lines {
                    let _ = writeln!(o, "{:>6}: {}", e.line, e.text.replace("```", "'''"));
                }
                let _ = writeln!(o, "```");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
        }
        o
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical:",
        _ => "warning:",
    }
}
