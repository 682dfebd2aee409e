//! What the watcher knows about each server, and how one poll updates it.

use std::collections::BTreeMap;

use goneaway_core::Cause;
use goneaway_doctor::Report;

/// One poll's readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `Uptime`.
    pub uptime: u64,
    /// Counters: `Aborted_clients`, `Aborted_connects`, `Connection_errors_*`,
    /// `Threads_connected`, `Max_used_connections`.
    pub status: BTreeMap<String, u64>,
    /// `max_connections`.
    pub max_connections: Option<u64>,
    /// `wait_timeout`.
    pub wait_timeout: Option<u64>,
    /// Idle connections at or past [`NEAR_FRACTION`] of `wait_timeout`.
    pub near_wait_timeout: usize,
    /// The doctor's findings: cause and confidence.
    pub findings: Vec<(Cause, f64)>,
    /// `@@read_only` (`None` when not read).
    pub read_only: Option<bool>,
    /// The Galera state, for a Galera node only.
    pub galera: Option<GaleraSnapshot>,
    /// One entry per replication channel, empty when the server replicates from nobody.
    pub replication: Vec<ReplicaSnapshot>,
}

/// A Galera node's view of its cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GaleraSnapshot {
    /// `wsrep_cluster_size`.
    pub cluster_size: Option<u64>,
    /// The nodes `wsrep_cluster_address` lists (`None` for a bare `gcomm://`).
    pub address_nodes: Option<usize>,
    /// `wsrep_cluster_status` is `Primary`.
    pub primary: bool,
    /// `wsrep_ready` is `ON`.
    pub ready: bool,
    /// `wsrep_local_state` (4 is Synced).
    pub local_state: Option<u64>,
    /// `wsrep_flow_control_paused`: the share of time replication was paused (0 to 1).
    pub flow_control_paused: Option<f64>,
}

/// One replication channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaSnapshot {
    /// The channel's name; empty for the default one.
    pub channel: String,
    /// `Seconds_Behind_Master`; `None` when NULL.
    pub lag_seconds: Option<u64>,
    /// `Slave_IO_Running` is `Yes`.
    pub io_running: bool,
    /// `Slave_SQL_Running` is `Yes`.
    pub sql_running: bool,
}

/// An idle connection counts as near `wait_timeout` from this share of it on.
pub const NEAR_FRACTION: f64 = 0.8;

impl Snapshot {
    /// Reads a snapshot out of a doctor report (`None` when the server could not be read).
    pub fn from_report(report: &Report) -> Option<Snapshot> {
        let facts = report.facts.as_ref()?;
        let wait_timeout = facts.global_u64("wait_timeout");
        // The doctor lists idle connections past half of wait_timeout; the watcher's
        // threshold is stricter.
        let near = facts
            .processes
            .near_wait_timeout
            .iter()
            .filter(|p| wait_timeout.is_some_and(|w| p.time as f64 >= w as f64 * NEAR_FRACTION))
            .count();
        Some(Snapshot {
            uptime: facts.uptime_seconds,
            status: facts.status.clone(),
            max_connections: facts.global_u64("max_connections"),
            wait_timeout,
            near_wait_timeout: near,
            findings: report
                .findings
                .iter()
                .map(|f| (f.cause, f.confidence))
                .collect(),
            read_only: facts
                .global("read_only")
                .map(|_| facts.global_on("read_only")),
            galera: facts.is_galera().then(|| GaleraSnapshot {
                cluster_size: facts.counter("wsrep_cluster_size"),
                address_nodes: facts.galera_address_nodes(),
                primary: facts.status_str("wsrep_cluster_status").as_deref() == Some("Primary"),
                ready: facts.status_str("wsrep_ready").as_deref() == Some("ON"),
                local_state: facts.counter("wsrep_local_state"),
                flow_control_paused: facts
                    .status_str("wsrep_flow_control_paused")
                    .and_then(|v| v.parse().ok()),
            }),
            replication: facts
                .replication
                .iter()
                .map(|c| ReplicaSnapshot {
                    channel: c.name.clone(),
                    lag_seconds: c.seconds_behind,
                    io_running: c.io_running == "Yes",
                    sql_running: c.sql_running == "Yes",
                })
                .collect(),
        })
    }
}

/// A change worth a log line.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// The server answered again after failures.
    Up,
    /// The server stopped answering.
    Down(Cause),
    /// `Uptime` went down: the server restarted.
    Restarted {
        /// Uptime before.
        before: u64,
        /// Uptime now.
        after: u64,
    },
    /// A counter's rate jumped.
    RateJump {
        /// The counter.
        counter: String,
        /// The new rate per hour.
        per_hour: f64,
    },
}

/// Everything known about one server.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    /// The target, password redacted (the `server` label).
    pub name: String,
    /// Whether the last poll succeeded.
    pub up: bool,
    /// Polls made.
    pub polls: u64,
    /// Failed polls, by cause.
    pub poll_errors: BTreeMap<Cause, u64>,
    /// Restarts detected (Uptime going down between polls).
    pub restarts: u64,
    /// The last successful snapshot.
    pub last: Option<Snapshot>,
    /// Per-hour rates between the last two successful polls.
    pub rates: BTreeMap<String, f64>,
    /// Unix time of the last successful poll, in seconds.
    pub last_success: Option<f64>,
}

/// The counters whose rates are exported.
pub const RATED: &[&str] = &["Aborted_clients", "Aborted_connects"];

impl ServerState {
    /// A state for a new server.
    pub fn new(name: String) -> ServerState {
        ServerState {
            name,
            ..ServerState::default()
        }
    }

    /// Records a failed poll.
    pub fn failed(&mut self, cause: Cause) -> Vec<Change> {
        self.polls += 1;
        *self.poll_errors.entry(cause).or_default() += 1;
        let was_up = std::mem::replace(&mut self.up, false);
        if was_up || self.polls == 1 {
            vec![Change::Down(cause)]
        } else {
            Vec::new()
        }
    }

    /// Records a successful poll at Unix time `now` and returns what changed.
    pub fn observed(&mut self, snap: Snapshot, now: f64) -> Vec<Change> {
        self.polls += 1;
        let mut changes = Vec::new();
        if !self.up && self.polls > 1 {
            changes.push(Change::Up);
        }
        self.up = true;
        if let (Some(prev), Some(then)) = (&self.last, self.last_success) {
            if snap.uptime < prev.uptime {
                self.restarts += 1;
                changes.push(Change::Restarted {
                    before: prev.uptime,
                    after: snap.uptime,
                });
                // Counters restarted from zero: no rate across a restart.
                self.rates.clear();
            } else {
                let secs = (now - then).max(0.001);
                let errors = snap
                    .status
                    .keys()
                    .map(String::as_str)
                    .filter(|k| k.starts_with("Connection_errors_"));
                for name in RATED.iter().copied().chain(errors) {
                    let (Some(a), Some(b)) = (prev.status.get(name), snap.status.get(name)) else {
                        continue;
                    };
                    let rate = b.saturating_sub(*a) as f64 * 3600.0 / secs;
                    let old = self.rates.insert(name.to_string(), rate).unwrap_or(0.0);
                    // A jump: at least 10 an hour, and at least three times the last rate.
                    if rate >= 10.0 && rate >= old * 3.0 && rate > old {
                        changes.push(Change::RateJump {
                            counter: name.to_string(),
                            per_hour: rate,
                        });
                    }
                }
            }
        }
        self.last = Some(snap);
        self.last_success = Some(now);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(uptime: u64, aborted: u64) -> Snapshot {
        Snapshot {
            uptime,
            status: [("Aborted_clients".to_string(), aborted)].into(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn restarts_rates_and_outages() {
        let mut s = ServerState::new("t".into());
        assert!(s.observed(snap(100, 0), 0.0).is_empty());
        let c = s.observed(snap(110, 10), 10.0);
        assert_eq!(
            c,
            vec![Change::RateJump {
                counter: "Aborted_clients".into(),
                per_hour: 3600.0
            }]
        );
        assert_eq!(
            s.failed(Cause::ServerUnreachable),
            vec![Change::Down(Cause::ServerUnreachable)]
        );
        assert!(
            s.failed(Cause::ServerUnreachable).is_empty(),
            "one line per outage"
        );
        let c = s.observed(snap(3, 0), 30.0);
        assert_eq!(c[0], Change::Up);
        assert_eq!(
            c[1],
            Change::Restarted {
                before: 110,
                after: 3
            }
        );
        assert_eq!(s.restarts, 1);
        assert!(s.rates.is_empty());
    }
}
