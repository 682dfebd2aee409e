//! Findings: a cause, the evidence for and against it, and a confidence computed from it.

use std::collections::BTreeMap;

use goneaway_core::Cause;
use serde::Serialize;

/// One fact or log line that supports (positive weight) or argues against (negative weight)
/// a cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Where it comes from: `error_log`, `kernel_log`, `status`, `rate`, `variable`,
    /// `process_list`, `uptime`, `application`, `pool_settings`, `probe`, `connection`.
    pub source: &'static str,
    /// What was seen, in words.
    pub detail: String,
    /// How strongly it supports the cause (0 to 1), against it (negative), or is only
    /// context (0).
    pub weight: f64,
}

/// A probable cause with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The cause, from the shared vocabulary.
    pub cause: Cause,
    /// The cause in a few words.
    pub title: &'static str,
    /// Between 0 and 1: every supporting item combined (each can alone make the case,
    /// so they combine as independent witnesses), reduced by every item against.
    pub confidence: f64,
    /// Supporting items first, then context, then items against.
    pub evidence: Vec<Evidence>,
}

/// How bad a [`ClusterFinding`] is for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Clients work, with a risk or a degradation (stale reads, one failure from an
    /// outage).
    Warning,
    /// Clients get errors or lose connections now.
    Critical,
}

/// Something wrong with the cluster or the replication this server is part of: evidence,
/// and what it means for clients (which errors they get, on which member).
///
/// A cause (`Finding`) says why a connection went away; a cluster finding says what state
/// the topology is in that makes connections go away or fail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterFinding {
    /// A stable identifier: `galera_members_missing`, `galera_non_primary`,
    /// `galera_not_ready`, `galera_not_synced`, `galera_flow_control`, `replica_lag`,
    /// `replica_io_stopped`, `replica_sql_stopped`, `primary_read_only`,
    /// `replica_writable`.
    pub check: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong, in one line.
    pub title: String,
    /// What was read on the server (`status`, `variable`, `replication`, `process_list`).
    pub evidence: Vec<Evidence>,
    /// What clients see because of it.
    pub consequence: String,
    /// What to do.
    pub action: String,
}

/// Collects evidence per cause and turns it into ranked findings.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    items: BTreeMap<Cause, Vec<Evidence>>,
}

impl Ledger {
    pub(crate) fn add(
        &mut self,
        cause: Cause,
        source: &'static str,
        weight: f64,
        detail: impl Into<String>,
    ) {
        self.items.entry(cause).or_default().push(Evidence {
            source,
            detail: detail.into(),
            weight,
        });
    }

    /// Whether some evidence supports `cause`.
    pub(crate) fn supports(&self, cause: Cause) -> bool {
        self.items
            .get(&cause)
            .is_some_and(|v| v.iter().any(|e| e.weight > 0.0))
    }

    /// Whether evidence from `source` supports `cause`.
    pub(crate) fn supports_from(&self, cause: Cause, source: &str) -> bool {
        self.items
            .get(&cause)
            .is_some_and(|v| v.iter().any(|e| e.weight > 0.0 && e.source == source))
    }

    /// The strongest supporting weight for `cause` from any of `sources`.
    pub(crate) fn strongest(&self, cause: Cause, sources: &[&str]) -> f64 {
        self.items.get(&cause).map_or(0.0, |v| {
            v.iter()
                .filter(|e| sources.contains(&e.source))
                .map(|e| e.weight)
                .fold(0.0, f64::max)
        })
    }

    /// Moves `from`'s supporting evidence out of `source` to `to`, saying why: the same
    /// observation, read as a symptom of `to` rather than a cause of its own.
    pub(crate) fn reattribute(&mut self, from: Cause, source: &str, to: Cause, why: &str) {
        let Some(items) = self.items.get_mut(&from) else {
            return;
        };
        let (moved, kept): (Vec<Evidence>, Vec<Evidence>) = std::mem::take(items)
            .into_iter()
            .partition(|e| e.source == source && e.weight > 0.0);
        *items = kept;
        for mut e in moved {
            e.detail = format!("{} — {why}", e.detail);
            self.items.entry(to).or_default().push(e);
        }
    }

    /// Findings for every cause with supporting evidence, most confident first.
    pub(crate) fn findings(self) -> Vec<Finding> {
        let mut out: Vec<Finding> = self
            .items
            .into_iter()
            .filter(|(_, ev)| ev.iter().any(|e| e.weight > 0.0))
            .map(|(cause, mut evidence)| {
                let not_for: f64 = evidence
                    .iter()
                    .filter(|e| e.weight > 0.0)
                    .map(|e| 1.0 - e.weight.min(0.99))
                    .product();
                let against: f64 = evidence
                    .iter()
                    .filter(|e| e.weight < 0.0)
                    .map(|e| 1.0 + e.weight.max(-0.99))
                    .product();
                let confidence = ((1.0 - not_for) * against * 100.0).round() / 100.0;
                evidence.sort_by(|a, b| {
                    let rank = |w: f64| {
                        if w > 0.0 {
                            0
                        } else if w == 0.0 {
                            1
                        } else {
                            2
                        }
                    };
                    rank(a.weight)
                        .cmp(&rank(b.weight))
                        .then(b.weight.abs().total_cmp(&a.weight.abs()))
                });
                Finding {
                    cause,
                    title: cause.title(),
                    confidence,
                    evidence,
                }
            })
            .collect();
        out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_and_ranks() {
        let mut l = Ledger::default();
        l.add(Cause::IdleTimeout, "error_log", 0.75, "a");
        l.add(Cause::IdleTimeout, "status", 0.2, "b");
        l.add(Cause::ServerRestart, "uptime", 0.5, "c");
        l.add(Cause::ServerRestart, "error_log", -0.5, "d");
        l.add(Cause::NetTimeout, "variable", 0.0, "context only");
        let f = l.findings();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].cause, Cause::IdleTimeout);
        assert_eq!(f[0].confidence, 0.8);
        assert_eq!(f[1].confidence, 0.25);
        assert_eq!(f[1].evidence[1].weight, -0.5);
    }
}
