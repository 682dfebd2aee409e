//! Counter rates: the status read twice, so an old total does not pass for a present problem.

use std::collections::BTreeMap;

use serde::Serialize;

/// The counters whose rates the report shows.
pub const RATED: &[&str] = &["Aborted_clients", "Aborted_connects", "Connections"];

/// Whether `name` is a counter whose rate is reported: [`RATED`] and `Connection_errors_*`.
fn is_rated(name: &str) -> bool {
    RATED.contains(&name) || name.starts_with("Connection_errors_")
}

/// Two reads of the counters some seconds apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds between the two reads.
    pub seconds: f64,
    /// How much each counter rose (only counters that exist; `Connection_errors_*` included).
    pub deltas: BTreeMap<String, u64>,
    /// The same per hour.
    pub per_hour: BTreeMap<String, f64>,
    /// `Uptime` at the first and second read.
    pub uptime_before: u64,
    /// `Uptime` at the second read.
    pub uptime_after: u64,
    /// Whether `Uptime` went down between the reads: the server restarted during the sample
    /// (the deltas are then meaningless and left empty).
    pub restarted: bool,
}

/// Per-hour rates since the server started, from one read.
pub fn since_start(status: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let uptime = status.get("Uptime").copied().unwrap_or(0).max(1) as f64;
    status
        .iter()
        .filter(|(k, _)| is_rated(k))
        .map(|(k, v)| (k.clone(), round2(*v as f64 * 3600.0 / uptime)))
        .collect()
}

/// Compares two reads taken `seconds` apart.
pub fn compare(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    seconds: f64,
) -> Sample {
    let uptime_before = before.get("Uptime").copied().unwrap_or(0);
    let uptime_after = after.get("Uptime").copied().unwrap_or(0);
    let mut sample = Sample {
        seconds: round2(seconds),
        uptime_before,
        uptime_after,
        restarted: uptime_after < uptime_before,
        ..Sample::default()
    };
    if sample.restarted {
        return sample;
    }
    for (name, &a) in after {
        if !is_rated(name) {
            continue;
        }
        let d = a.saturating_sub(before.get(name).copied().unwrap_or(0));
        sample.deltas.insert(name.clone(), d);
        sample
            .per_hour
            .insert(name.clone(), round2(d as f64 * 3600.0 / seconds.max(0.001)));
    }
    sample
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_restart() {
        let a: BTreeMap<String, u64> =
            [("Uptime".into(), 100), ("Aborted_clients".into(), 5)].into();
        let b: BTreeMap<String, u64> =
            [("Uptime".into(), 110), ("Aborted_clients".into(), 7)].into();
        let s = compare(&a, &b, 10.0);
        assert_eq!(s.deltas["Aborted_clients"], 2);
        assert_eq!(s.per_hour["Aborted_clients"], 720.0);
        let c: BTreeMap<String, u64> = [("Uptime".into(), 3), ("Aborted_clients".into(), 0)].into();
        assert!(compare(&b, &c, 10.0).restarted);
    }
}
