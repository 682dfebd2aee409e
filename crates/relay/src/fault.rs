//! The faults the relay can inject, and the one text parser the CLI flags and the control interface share.
//!
//! The text forms, which [`Fault`]'s `Display` writes back exactly:
//!
//! | text | fault |
//! |---|---|
//! | `blackhole-idle 10s` | [`Fault::BlackholeIdle`] |
//! | `reset-after 4096` | [`Fault::ResetAfterBytes`] |
//! | `latency 50ms` | [`Fault::Latency`] |
//! | `refuse` | [`Fault::RefuseNew`] |
//! | `blackhole-new` | [`Fault::BlackholeNew`] |
//! | `4031-idle 5s` | [`Fault::Inject4031Idle`] |
//!
//! Durations are a whole number followed by a unit: `ns`, `us`, `ms`, `s`, `m` or `h`
//! (`500ms`, `10s`, `2m`). Byte counts are a whole number of bytes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::Error;

/// One fault, armed with [`Relay::set`](crate::Relay::set) and disarmed with
/// [`Relay::remove`](crate::Relay::remove) or [`Relay::clear`](crate::Relay::clear).
///
/// At most one fault of each [`FaultKind`] is armed at a time: setting a kind again
/// replaces its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Behave like a NAT gateway or a firewall that forgot the flow: once a flow has been
    /// idle (no bytes either way) for this long, nothing more is forwarded in either
    /// direction and nothing is closed. The client hangs until its own timeouts fire.
    ///
    /// A flow already idle that long when the fault is set is blackholed at once. A
    /// blackholed flow stays blackholed when the fault is removed: the gateway's mapping
    /// is gone for good. When the client gives up, the server's side stays open until the
    /// server closes it (its `wait_timeout`), so the server's log shows what it shows
    /// behind a real gateway.
    BlackholeIdle(Duration),

    /// Cut each flow with a TCP reset once this many bytes of server→client data have been
    /// forwarded on it, counted per flow from the moment the fault is set (for flows that
    /// open later, from their first byte). The client receives exactly this many bytes,
    /// then a reset: a "Lost connection during query" in the middle of a result.
    ResetAfterBytes(u64),

    /// Delay every chunk of data, in both directions, by this much before forwarding it.
    /// A request and its reply therefore take at least twice this longer. The delay is a
    /// delay line, not a throttle: chunks in flight overlap, so throughput is kept.
    Latency(Duration),

    /// Accept new connections and reset them at once. Connections already open are
    /// untouched. Wins over [`Fault::BlackholeNew`] when both are set.
    RefuseNew,

    /// Accept new connections and then never forward anything and never close them: the
    /// client hangs waiting for the server's greeting. Connections already open are
    /// untouched.
    BlackholeNew,

    /// Do what MySQL 8.0.24+ does when `wait_timeout` expires: once a flow has been idle
    /// this long, send the client an `ER_CLIENT_INTERACTION_TIMEOUT` (4031) error packet,
    /// then close the connection to the client (FIN) and the one to the server. See
    /// [`mysql`](crate::mysql) for the exact bytes.
    Inject4031Idle(Duration),
}

/// Which fault, without its value: what [`Relay::remove`](crate::Relay::remove) takes.
///
/// Parses from and displays as the fault's name: `blackhole-idle`, `reset-after`,
/// `latency`, `refuse`, `blackhole-new`, `4031-idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultKind {
    /// [`Fault::BlackholeIdle`].
    BlackholeIdle,
    /// [`Fault::ResetAfterBytes`].
    ResetAfterBytes,
    /// [`Fault::Latency`].
    Latency,
    /// [`Fault::RefuseNew`].
    RefuseNew,
    /// [`Fault::BlackholeNew`].
    BlackholeNew,
    /// [`Fault::Inject4031Idle`].
    Inject4031Idle,
}

/// The grammar, shown in parse errors and in the control interface's `help`.
pub const FAULT_SYNTAX: &str = "blackhole-idle <duration> | reset-after <bytes> | \
     latency <duration> | refuse | blackhole-new | 4031-idle <duration> \
     (durations like 500ms, 10s, 2m)";

impl FaultKind {
    /// Every kind, in the order status reports list them.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::BlackholeIdle,
        FaultKind::ResetAfterBytes,
        FaultKind::Latency,
        FaultKind::RefuseNew,
        FaultKind::BlackholeNew,
        FaultKind::Inject4031Idle,
    ];

    /// The name used in the text forms.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BlackholeIdle => "blackhole-idle",
            FaultKind::ResetAfterBytes => "reset-after",
            FaultKind::Latency => "latency",
            FaultKind::RefuseNew => "refuse",
            FaultKind::BlackholeNew => "blackhole-new",
            FaultKind::Inject4031Idle => "4031-idle",
        }
    }

    /// What the argument is, for error messages; `None` for kinds without one.
    fn argument(self) -> Option<&'static str> {
        match self {
            FaultKind::BlackholeIdle | FaultKind::Latency | FaultKind::Inject4031Idle => {
                Some("a duration")
            }
            FaultKind::ResetAfterBytes => Some("a byte count"),
            FaultKind::RefuseNew | FaultKind::BlackholeNew => None,
        }
    }

    /// An example of the full text form, for error messages.
    fn example(self) -> &'static str {
        match self {
            FaultKind::BlackholeIdle => "blackhole-idle 10s",
            FaultKind::ResetAfterBytes => "reset-after 4096",
            FaultKind::Latency => "latency 50ms",
            FaultKind::RefuseNew => "refuse",
            FaultKind::BlackholeNew => "blackhole-new",
            FaultKind::Inject4031Idle => "4031-idle 5s",
        }
    }

    /// The kind named `name` (case-insensitive), accepting a few obvious aliases.
    fn lookup(name: &str) -> Option<FaultKind> {
        let name = name.to_ascii_lowercase();
        let kind = match name.as_str() {
            "blackhole-idle" => FaultKind::BlackholeIdle,
            "reset-after" | "reset-after-bytes" => FaultKind::ResetAfterBytes,
            "latency" => FaultKind::Latency,
            "refuse" | "refuse-new" => FaultKind::RefuseNew,
            "blackhole-new" => FaultKind::BlackholeNew,
            "4031-idle" | "inject-4031-idle" => FaultKind::Inject4031Idle,
            _ => return None,
        };
        Some(kind)
    }
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::BlackholeIdle(_) => FaultKind::BlackholeIdle,
            Fault::ResetAfterBytes(_) => FaultKind::ResetAfterBytes,
            Fault::Latency(_) => FaultKind::Latency,
            Fault::RefuseNew => FaultKind::RefuseNew,
            Fault::BlackholeNew => FaultKind::BlackholeNew,
            Fault::Inject4031Idle(_) => FaultKind::Inject4031Idle,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.kind().name();
        match self {
            Fault::BlackholeIdle(d) | Fault::Latency(d) | Fault::Inject4031Idle(d) => {
                write!(f, "{name} {}", DisplayDuration(*d))
            }
            Fault::ResetAfterBytes(n) => write!(f, "{name} {n}"),
            Fault::RefuseNew | Fault::BlackholeNew => f.write_str(name),
        }
    }
}

// Status reports and the control interface show faults in their text form, so a user
// can paste what they see back into `set`.
impl Serialize for Fault {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for FaultKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let input = s.trim();
        FaultKind::lookup(input).ok_or_else(|| Error::ParseFault {
            input: input.to_owned(),
            reason: unknown_kind(input),
        })
    }
}

impl FromStr for Fault {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let input = s.trim();
        let fail = |reason: String| Error::ParseFault {
            input: input.to_owned(),
            reason,
        };
        let mut words = input.split_whitespace();
        let Some(name) = words.next() else {
            return Err(fail(format!("no fault given; expected {FAULT_SYNTAX}")));
        };
        let kind = FaultKind::lookup(name).ok_or_else(|| fail(unknown_kind(name)))?;
        let argument = words.next();
        if let Some(extra) = words.next() {
            return Err(fail(format!(
                "unexpected `{extra}`: `{}` takes {}, e.g. `{}`",
                kind.name(),
                kind.argument().unwrap_or("no argument"),
                kind.example()
            )));
        }
        let argument = match (kind.argument(), argument) {
            (Some(what), None) => {
                return Err(fail(format!(
                    "`{}` needs {what}, e.g. `{}`",
                    kind.name(),
                    kind.example()
                )))
            }
            (None, Some(arg)) => {
                return Err(fail(format!(
                    "`{}` takes no argument, but `{arg}` was given",
                    kind.name()
                )))
            }
            (_, argument) => argument.unwrap_or_default(),
        };
        let fault = match kind {
            FaultKind::BlackholeIdle => {
                Fault::BlackholeIdle(parse_duration(argument).map_err(fail)?)
            }
            FaultKind::ResetAfterBytes => {
                Fault::ResetAfterBytes(parse_bytes(argument).map_err(fail)?)
            }
            FaultKind::Latency => Fault::Latency(parse_duration(argument).map_err(fail)?),
            FaultKind::RefuseNew => Fault::RefuseNew,
            FaultKind::BlackholeNew => Fault::BlackholeNew,
            FaultKind::Inject4031Idle => {
                Fault::Inject4031Idle(parse_duration(argument).map_err(fail)?)
            }
        };
        Ok(fault)
    }
}

fn unknown_kind(name: &str) -> String {
    format!("unknown fault `{name}`; expected {FAULT_SYNTAX}")
}

/// Parses `500ms`, `10s`, `2m`, ...: a whole number, then a unit.
///
/// Fractions are refused rather than rounded: `1.5s` says to write `1500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "invalid duration `{text}`: expected a whole number and a unit, e.g. 500ms, 10s, 2m"
        ));
    }
    if unit.starts_with('.') || unit.starts_with(',') {
        return Err(format!(
            "invalid duration `{text}`: fractions are not supported; use a smaller unit (1500ms, not 1.5s)"
        ));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: the number is too large"))?;
    let too_large = || format!("invalid duration `{text}`: too large");
    let duration = match unit.to_ascii_lowercase().as_str() {
        "" => {
            return Err(format!(
                "invalid duration `{text}`: a unit is needed (ms, s, m or h), e.g. `{text}s`"
            ))
        }
        "ns" => Duration::from_nanos(value),
        "us" | "µs" => Duration::from_micros(value),
        "ms" => Duration::from_millis(value),
        "s" | "sec" | "secs" => Duration::from_secs(value),
        "m" | "min" | "mins" => Duration::from_secs(value.checked_mul(60).ok_or_else(too_large)?),
        "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(too_large)?),
        other => {
            return Err(format!(
                "invalid duration `{text}`: unknown unit `{other}`; use ns, us, ms, s, m or h"
            ))
        }
    };
    Ok(duration)
}

/// Parses a whole number of bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid byte count `{text}`: expected a whole number of bytes, e.g. 4096"
        ));
    }
    text.parse()
        .map_err(|_| format!("invalid byte count `{text}`: too large"))
}

/// Writes a duration in the largest unit that keeps it exact, so the parser reads back
/// the same value.
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        const UNITS: [(u128, &str); 5] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in UNITS {
            if nanos % size == 0 {
                return write!(f, "{}{unit}", nanos / size);
            }
        }
        write!(f, "{nanos}ns")
    }
}

/// The faults armed at one moment: one slot per kind.
///
/// Flows read it through a `watch` channel, so every change wakes them to re-check
/// their idle deadlines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FaultSet {
    pub(crate) blackhole_idle: Option<Duration>,
    pub(crate) reset_after: Option<u64>,
    pub(crate) latency: Option<Duration>,
    pub(crate) refuse_new: bool,
    pub(crate) blackhole_new: bool,
    pub(crate) inject_4031_idle: Option<Duration>,
}

impl FaultSet {
    pub(crate) fn insert(&mut self, fault: Fault) {
        match fault {
            Fault::BlackholeIdle(d) => self.blackhole_idle = Some(d),
            Fault::ResetAfterBytes(n) => self.reset_after = Some(n),
            Fault::Latency(d) => self.latency = Some(d),
            Fault::RefuseNew => self.refuse_new = true,
            Fault::BlackholeNew => self.blackhole_new = true,
            Fault::Inject4031Idle(d) => self.inject_4031_idle = Some(d),
        }
    }

    /// Disarms `kind`; returns whether it was armed.
    pub(crate) fn remove(&mut self, kind: FaultKind) -> bool {
        match kind {
            FaultKind::BlackholeIdle => self.blackhole_idle.take().is_some(),
            FaultKind::ResetAfterBytes => self.reset_after.take().is_some(),
            FaultKind::Latency => self.latency.take().is_some(),
            FaultKind::RefuseNew => std::mem::take(&mut self.refuse_new),
            FaultKind::BlackholeNew => std::mem::take(&mut self.blackhole_new),
            FaultKind::Inject4031Idle => self.inject_4031_idle.take().is_some(),
        }
    }

    /// The armed faults, in [`FaultKind::ALL`] order.
    pub(crate) fn to_vec(&self) -> Vec<Fault> {
        let mut out = Vec::new();
        out.extend(self.blackhole_idle.map(Fault::BlackholeIdle));
        out.extend(self.reset_after.map(Fault::ResetAfterBytes));
        out.extend(self.latency.map(Fault::Latency));
        if self.refuse_new {
            out.push(Fault::RefuseNew);
        }
        if self.blackhole_new {
            out.push(Fault::BlackholeNew);
        }
        out.extend(self.inject_4031_idle.map(Fault::Inject4031Idle));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_through_display() {
        for text in ["0s", "500ms", "10s", "2m", "1h", "1500us", "7ns", "90s"] {
            let d = parse_duration(text).expect(text);
            let shown = DisplayDuration(d).to_string();
            assert_eq!(parse_duration(&shown), Ok(d), "{text} -> {shown}");
        }
        assert_eq!(DisplayDuration(Duration::from_secs(120)).to_string(), "2m");
    }
}
