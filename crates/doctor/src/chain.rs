//! The timeout chain: every layer between the application and the server that ends an idle
//! connection or keeps it alive, in the order they act on it, and the layer that must change.
//!
//! Gone-away most often comes from two layers whose timeouts disagree. The rule is one: a
//! layer closer to the application must recycle or ping a connection before any layer
//! farther away cuts it, by the margin of [`recycle_before`] (10 % of the limit, at least
//! 2 s). The application's pool faces the server's `wait_timeout` and any middlebox; behind
//! the goneaway proxy it faces the proxy's `client_idle_timeout` and the middlebox instead,
//! and the proxy's keepalive faces `wait_timeout` and the middlebox (where the middlebox
//! sits is not known, so it is taken to be on both hops).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::advice::{pool_limits, recycle_before, Recommendations};
use crate::facts::Facts;
use crate::probe::IdleProbe;

/// The proxy between the application and the server, as its own configuration describes it
/// (the CLI reads the proxy's TOML; the doctor takes plain durations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyLayer {
    /// The proxy closes a client session idle this long (`client_idle_timeout_secs`);
    /// `None`: never.
    pub client_idle_timeout: Option<Duration>,
    /// The proxy pings an idle session's backend this often (`keepalive_interval_secs`);
    /// `None`: the proxy derives it from the server's `wait_timeout` (half of it, at most
    /// 60 s).
    pub keepalive_interval: Option<Duration>,
    /// Where the settings come from, as the report names it (the configuration file).
    pub source: String,
}

/// What a layer does to an idle connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Closes and replaces it (a pool's lifetime or idle timeout).
    Recycles,
    /// Sends traffic on it so that nothing farther away sees it idle (a keepalive).
    Pings,
    /// Ends it (a server timeout, a middlebox's idle limit).
    Cuts,
}

/// The judgement on one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// Acts in time, or nothing closer depends on it.
    Ok,
    /// Ends idle connections before a closer layer recycles or pings them, and is the first
    /// to: this is where the application's connections die.
    CutsFirst,
    /// Also ends idle connections before a closer layer acts, after the one that cuts first.
    CutsEarly,
    /// Recycles or pings too late for a layer farther away: the layer to change.
    TooLate,
    /// Not stated (the pool without `--pool-lifetime`): what it must be is in the fix.
    Unknown,
    /// Applies only to some connections (interactive clients, idle transactions, a
    /// transfer): see the note.
    Note,
}

impl Verdict {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::CutsFirst => "cuts first",
            Verdict::CutsEarly => "cuts early",
            Verdict::TooLate => "too late",
            Verdict::Unknown => "unknown",
            Verdict::Note => "note",
        }
    }
}

/// One layer of the chain. JSON field names are stable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    /// Stable name: `pool`, `proxy_client_idle_timeout`, `proxy_keepalive`, `middlebox`,
    /// `middlebox_measured`, `wait_timeout`, `wait_timeout_session`, `interactive_timeout`,
    /// `interactive_timeout_session`, `idle_transaction_timeout`, `idle_readonly_transaction_timeout`,
    /// `idle_write_transaction_timeout`, `net_read_timeout`, `net_write_timeout`.
    pub layer: &'static str,
    /// What a person calls it.
    pub label: String,
    /// What it does to an idle connection.
    pub role: Role,
    /// After how many seconds it acts; `None` when not known.
    pub limit_secs: Option<f64>,
    /// Who set the limit: a flag, a server variable, the proxy's file, a measurement.
    pub source: String,
    /// The judgement.
    pub verdict: Verdict,
    /// What to change, and to what, when something must.
    pub fix: Option<String>,
    /// What the limit applies to, when not every idle connection.
    pub note: Option<String>,
}

/// Everything the chain is built from.
#[derive(Debug, Default)]
pub(crate) struct ChainInputs<'a> {
    pub facts: Option<&'a Facts>,
    pub pool_lifetime: Option<Duration>,
    pub app_timeout: Option<Duration>,
    pub proxy: Option<&'a ProxyLayer>,
    pub middlebox_idle: Option<Duration>,
    pub idle_probe: Option<&'a IdleProbe>,
    /// Whether a network drop is among the findings (the advice's pool ceiling).
    pub network_drop: bool,
    pub recommendations: Option<&'a Recommendations>,
}

/// The smallest idle limit known for a middlebox, in whole seconds, and where it comes
/// from: `--middlebox-idle`, or the idle probe's connection that a middlebox (not the
/// server) ended — at the last time it was seen alive, the safe side of the interval.
pub(crate) fn middlebox_limit(
    stated: Option<Duration>,
    probe: Option<&IdleProbe>,
) -> Option<(u64, &'static str)> {
    let stated = stated.map(|d| (d.as_secs(), "--middlebox-idle"));
    let measured = measured_cut(probe).map(|s| (s as u64, "--probe-idle"));
    match (stated, measured) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// When a middlebox ended the idle probe's connection: after the last silence it survived
/// (the one it died after when it survived none).
fn measured_cut(probe: Option<&IdleProbe>) -> Option<f64> {
    let p = probe?;
    match (p.died_between_seconds, p.server_closed) {
        (Some((lo, hi)), Some(false)) => Some(if lo > 0.0 { lo } else { hi }),
        _ => None,
    }
}

fn secs_f(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Whole seconds of a limit that may be fractional, rounded towards the safe side.
fn floor(limit: f64) -> u64 {
    limit.floor().max(0.0) as u64
}

/// A number of seconds as text: `5 s`, `2.5 s`.
pub fn format_secs(limit: Option<f64>) -> String {
    match limit {
        Some(v) => format!("{v} s"),
        None => "—".into(),
    }
}

/// Which recycling layers a cutting layer faces.
#[derive(Clone, Copy, Default)]
struct Faces {
    pool: bool,
    proxy: bool,
}

fn link(layer: &'static str, label: &str, role: Role, limit: Option<f64>, source: String) -> Link {
    Link {
        layer,
        label: label.to_string(),
        role,
        limit_secs: limit,
        source,
        verdict: Verdict::Ok,
        fix: None,
        note: None,
    }
}

/// The server variable at both scopes as chain links: the global value, and the doctor's
/// own session's when it differs (`init_connect`, or the account, set it).
fn server_var(f: &Facts, name: &'static str, session_layer: &'static str) -> Vec<Link> {
    let Some(v) = f.variables.get(name) else {
        return Vec::new();
    };
    let global = v.global.as_deref().and_then(|g| g.parse::<f64>().ok());
    let session = v.session.as_deref().and_then(|g| g.parse::<f64>().ok());
    let mut out = Vec::new();
    if let Some(g) = global {
        out.push(link(
            name,
            &format!("server {name}"),
            Role::Cuts,
            Some(g),
            format!("server variable @@GLOBAL.{name}"),
        ));
    }
    if let Some(s) = session.filter(|s| Some(*s) != global) {
        out.push(link(
            session_layer,
            &format!("server {name} (session)"),
            Role::Cuts,
            Some(s),
            format!("server variable @@SESSION.{name} of the doctor's own connection"),
        ));
    }
    out
}

/// Builds the chain, ordered by which layer acts on an idle connection first, and the
/// mid-transfer limits apart (they end a statement or a result that stalls, not an idle
/// connection).
pub(crate) fn build(i: &ChainInputs<'_>) -> (Vec<Link>, Vec<Link>) {
    let mut links: Vec<(Link, Faces)> = Vec::new();
    let behind_proxy = i.proxy.is_some();
    let server_faces = Faces {
        pool: !behind_proxy,
        proxy: behind_proxy,
    };
    let both = Faces {
        pool: true,
        proxy: true,
    };

    // Cutting layers, from the application outwards.
    if let Some(p) = i.proxy {
        if let Some(c) = p.client_idle_timeout {
            let mut l = link(
                "proxy_client_idle_timeout",
                "proxy client_idle_timeout",
                Role::Cuts,
                Some(secs_f(c)),
                format!("{}: client_idle_timeout_secs", p.source),
            );
            l.note = Some("the proxy closes a client session idle this long (4031)".into());
            links.push((
                l,
                Faces {
                    pool: true,
                    proxy: false,
                },
            ));
        }
    }
    if let Some(m) = i.middlebox_idle {
        links.push((
            link(
                "middlebox",
                "NAT / load balancer idle limit",
                Role::Cuts,
                Some(secs_f(m)),
                "--middlebox-idle".into(),
            ),
            both,
        ));
    }
    if let Some(p) = i.idle_probe {
        let held = p.held_seconds;
        match measured_cut(Some(p)) {
            Some(cut) => {
                let mut l = link(
                    "middlebox_measured",
                    "middlebox (measured)",
                    Role::Cuts,
                    Some(cut),
                    "measured by --probe-idle".into(),
                );
                if let Some((lo, hi)) = p.died_between_seconds {
                    l.note = Some(format!(
                        "an idle connection died after {lo}–{hi} s of silence and the server did not close it"
                    ));
                }
                links.push((l, both));
            }
            None if p.died_between_seconds.is_none() => {
                let mut l = link(
                    "middlebox_measured",
                    "middlebox (measured)",
                    Role::Cuts,
                    None,
                    "measured by --probe-idle".into(),
                );
                l.note = Some(format!(
                    "no idle connection was cut within {held} s of silence"
                ));
                links.push((l, Faces::default()));
            }
            // The server closed it: that is wait_timeout, already in the chain.
            None => {}
        }
    }
    let mut wait_limits = Vec::new();
    if let Some(f) = i.facts {
        for l in server_var(f, "wait_timeout", "wait_timeout_session") {
            wait_limits.push(l.limit_secs.unwrap_or(f64::MAX));
            links.push((l, server_faces));
        }
        for mut l in server_var(f, "interactive_timeout", "interactive_timeout_session") {
            l.verdict = Verdict::Note;
            l.note = Some("replaces wait_timeout for clients that connect as interactive (the mysql CLI); pools do not".into());
            links.push((l, Faces::default()));
        }
        for (name, what) in [
            ("idle_transaction_timeout", "any transaction"),
            (
                "idle_readonly_transaction_timeout",
                "a read-only transaction",
            ),
            ("idle_write_transaction_timeout", "a transaction that wrote"),
        ] {
            let Some(v) = f.global_u64(name).filter(|v| *v > 0) else {
                continue;
            };
            let mut l = link(
                name,
                &format!("server {name}"),
                Role::Cuts,
                Some(v as f64),
                format!("server variable @@GLOBAL.{name}"),
            );
            l.verdict = Verdict::Note;
            l.note = Some(format!(
                "ends a connection left idle inside {what} this long: no pool setting helps; commit or roll back sooner"
            ));
            links.push((l, Faces::default()));
        }
    }
    let wait_now = wait_limits
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, w| Some(m.map_or(w, |m| m.min(w))));

    // The first cut each recycling layer faces.
    let ceiling = |who: fn(&Faces) -> bool, links: &[(Link, Faces)]| {
        links
            .iter()
            .filter(|(l, f)| who(f) && l.limit_secs.is_some())
            .map(|(l, _)| (l.limit_secs.unwrap_or(f64::MAX), l.label.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    let pool_ceiling = ceiling(|f| f.pool, &links);
    let proxy_ceiling = ceiling(|f| f.proxy, &links);
    let middlebox = middlebox_limit(i.middlebox_idle, i.idle_probe).map(|(m, _)| m);

    // The pool: its target is the advice's own pool lifetime for the limits it faces.
    let pool_limit = match (i.pool_lifetime, i.app_timeout) {
        (Some(a), Some(b)) => Some((
            a.min(b),
            if a <= b {
                "--pool-lifetime"
            } else {
                "--app-timeout"
            },
        )),
        (Some(a), None) => Some((a, "--pool-lifetime")),
        (None, Some(b)) => Some((b, "--app-timeout")),
        (None, None) => None,
    };
    // (the most the pool may let a connection idle, what to set it to, why)
    let pool_target = pool_ceiling.as_ref().map(|(c, label)| {
        let c = floor(*c);
        let (room, margin) = recycle_before(c);
        match (behind_proxy, wait_now) {
            (false, Some(w)) => {
                let p = pool_limits(floor(w), i.facts, i.network_drop, middlebox);
                (room, p.max_lifetime.min(room), p.reason)
            }
            _ => (
                room,
                room,
                format!("{label} = {c} s less a margin of {margin} s"),
            ),
        }
    });
    let mut pool = link(
        "pool",
        "application pool lifetime",
        Role::Recycles,
        pool_limit.map(|(d, _)| secs_f(d)),
        pool_limit.map_or("not given (--pool-lifetime)".into(), |(_, s)| s.to_string()),
    );
    let mut too_late: Vec<(&'static str, f64, u64)> = Vec::new();
    match (&pool_target, pool.limit_secs) {
        (Some((room, t, why)), Some(limit)) if limit > *room as f64 => {
            pool.verdict = Verdict::TooLate;
            let mut fix = format!("set it to {t} s or less ({why})");
            if let Some(r) = i.recommendations.filter(|_| !behind_proxy) {
                let raised = r.server.iter().find(|s| s.variable == "wait_timeout");
                if let (Some(w), Some(p)) = (raised, &r.pool) {
                    let _ = write!(
                        fix,
                        "; or raise wait_timeout to {} s as advised below, then {} s",
                        w.recommended, p.max_lifetime
                    );
                }
            }
            pool.fix = Some(fix);
            too_late.push(("pool", limit, *t));
        }
        (Some((_, t, why)), None) => {
            pool.verdict = Verdict::Unknown;
            pool.fix = Some(format!("give the pool a lifetime of at most {t} s ({why})"));
        }
        _ => {}
    }
    links.push((pool, Faces::default()));

    // The proxy's keepalive.
    if let Some(p) = i.proxy {
        let (limit, source) = match p.keepalive_interval {
            Some(k) => (
                Some(secs_f(k)),
                format!("{}: keepalive_interval_secs", p.source),
            ),
            None => (
                wait_now.map(|w| (w / 2.0).min(60.0)),
                format!(
                    "{}: the proxy's default, half of wait_timeout, at most 60 s",
                    p.source
                ),
            ),
        };
        let mut l = link(
            "proxy_keepalive",
            "proxy keepalive_interval",
            Role::Pings,
            limit,
            source,
        );
        if let (Some((c, label)), Some(k)) = (&proxy_ceiling, limit) {
            let (t, margin) = recycle_before(floor(*c));
            if k > t as f64 {
                l.verdict = Verdict::TooLate;
                l.fix = Some(format!(
                    "set keepalive_interval_secs = {t} in {} ({label} = {} s less a margin of {margin} s)",
                    p.source,
                    floor(*c)
                ));
                too_late.push(("proxy_keepalive", k, t));
            }
        }
        links.push((l, Faces::default()));
    }

    // A cutting layer is early when a recycling layer it faces is later than the margin
    // before it allows; the earliest of them cuts first.
    let label_of = |layer: &str| match layer {
        "pool" => "the pool lifetime",
        _ => "the proxy's keepalive_interval_secs",
    };
    for (l, faces) in links.iter_mut() {
        let Some(limit) = l.limit_secs.filter(|_| l.role == Role::Cuts) else {
            continue;
        };
        let (room, _) = recycle_before(floor(limit));
        let late: Vec<String> = too_late
            .iter()
            .filter(|(who, acts, _)| {
                let faced = if *who == "pool" {
                    faces.pool
                } else {
                    faces.proxy
                };
                faced && *acts > room as f64
            })
            .map(|(who, _, to)| format!("lower {} to {to} s", label_of(who)))
            .collect();
        if !late.is_empty() {
            l.verdict = Verdict::CutsEarly;
            l.fix = Some(late.join("; "));
        }
    }
    links.sort_by(|(a, _), (b, _)| {
        let key = |l: &Link| (l.limit_secs.is_none(), l.limit_secs.unwrap_or(0.0));
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            // On a tie the cut wins: it happens first.
            .then((a.role != Role::Cuts).cmp(&(b.role != Role::Cuts)))
    });
    if let Some((l, _)) = links
        .iter_mut()
        .find(|(l, _)| l.verdict == Verdict::CutsEarly)
    {
        l.verdict = Verdict::CutsFirst;
    }
    let chain = links.into_iter().map(|(l, _)| l).collect();

    let mut transfer = Vec::new();
    if let Some(f) = i.facts {
        for (name, what) in [
            ("net_read_timeout", "the server waits this long for the rest of a statement or a LOAD DATA the client is sending"),
            ("net_write_timeout", "the server waits this long for the client to take the next part of a result"),
        ] {
            for mut l in server_var(f, name, name) {
                l.verdict = Verdict::Note;
                l.note = Some(format!("{what}, then ends the connection (2013)"));
                transfer.push(l);
            }
        }
    }
    (chain, transfer)
}

/// Whether a layer must change.
pub(crate) fn needs_change(chain: &[Link]) -> bool {
    chain.iter().any(|l| l.verdict == Verdict::TooLate)
}

/// The chain as an aligned text table (no colours: the verdict words carry it).
pub(crate) fn render_text(chain: &[Link], transfer: &[Link], o: &mut String) {
    let rows: Vec<[String; 4]> = chain
        .iter()
        .map(|l| {
            let verdict = match (&l.fix, &l.note) {
                (Some(fix), _) => format!("{}: {fix}", l.verdict.as_str()),
                (None, Some(note)) if l.verdict == Verdict::Note => note.clone(),
                (None, Some(note)) => format!("{}; {note}", l.verdict.as_str()),
                (None, None) => l.verdict.as_str().to_string(),
            };
            [
                l.label.clone(),
                format_secs(l.limit_secs),
                l.source.clone(),
                verdict,
            ]
        })
        .collect();
    let header = ["layer", "limit", "set by", "verdict"].map(String::from);
    let width = |c: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(o, "  {:<w0$}  {:>w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    if !transfer.is_empty() {
        let parts: Vec<String> = transfer
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l.label.trim_start_matches("server "),
                    format_secs(l.limit_secs)
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  mid-transfer limits (a stalled statement or result, not idleness): {}",
            parts.join(", ")
        );
    }
}

/// The chain as a Markdown table.
pub(crate) fn render_markdown(chain: &[Link], transfer: &[Link], o: &mut String) {
    let _ = writeln!(
        o,
        "| layer | limit | set by | verdict | fix |\n|---|---|---|---|---|"
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for l in chain.iter().chain(transfer) {
        let _ = writeln!(
            o,
            "| {} (`{}`) | {} | {} | {} | {} |",
            cell(&l.label),
            l.layer,
            format_secs(l.limit_secs),
            cell(&l.source),
            l.verdict.as_str(),
            cell(l.fix.as_deref().or(l.note.as_deref()).unwrap_or(""))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(vars: &[(&str, &str)]) -> Facts {
        Facts::with_variables(vars)
    }

    fn layers(chain: &[Link]) -> Vec<(&'static str, Verdict)> {
        chain.iter().map(|l| (l.layer, l.verdict)).collect()
    }

    #[test]
    fn the_server_cuts_before_a_long_pool_lifetime() {
        let f = facts(&[("wait_timeout", "5"), ("interactive_timeout", "28800")]);
        let (chain, _) = build(&ChainInputs {
            facts: Some(&f),
            pool_lifetime: Some(Duration::from_secs(30)),
            ..ChainInputs::default()
        });
        assert_eq!(
            layers(&chain),
            [
                ("wait_timeout", Verdict::CutsFirst),
                ("pool", Verdict::TooLate),
                ("interactive_timeout", Verdict::Note),
            ]
        );
        assert_eq!(
            chain[0].fix.as_deref(),
            Some("lower the pool lifetime to 3 s")
        );
        assert!(chain[1]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("set it to 3 s or less (wait_timeout = 5 s less a margin of 2 s"));
    }

    #[test]
    fn behind_the_proxy_the_pool_faces_the_proxy_and_the_keepalive_the_server() {
        let f = facts(&[("wait_timeout", "5")]);
        let proxy = ProxyLayer {
            client_idle_timeout: Some(Duration::from_secs(600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            source: "proxy.toml".into(),
        };
        let (chain, _) = build(&ChainInputs {
            facts: Some(&f),
            pool_lifetime: Some(Duration::from_secs(300)),
            proxy: Some(&proxy),
            ..ChainInputs::default()
        });
        assert_eq!(
            layers(&chain),
            [
                ("wait_timeout", Verdict::CutsFirst),
                ("proxy_keepalive", Verdict::TooLate),
                ("pool", Verdict::Ok),
                ("proxy_client_idle_timeout", Verdict::Ok),
            ]
        );
        assert!(chain[1]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("set keepalive_interval_secs = 3 in proxy.toml"));
        // Without a keepalive in the file, the proxy's own default (half of wait_timeout) fits.
        let proxy = ProxyLayer {
            keepalive_interval: None,
            ..proxy
        };
        let (chain, _) = build(&ChainInputs {
            facts: Some(&f),
            pool_lifetime: Some(Duration::from_secs(300)),
            proxy: Some(&proxy),
            ..ChainInputs::default()
        });
        assert!(chain.iter().all(|l| l.verdict == Verdict::Ok), "{chain:?}");
        assert_eq!(chain[0].limit_secs, Some(2.5));
    }

    #[test]
    fn a_measured_middlebox_and_a_session_value() {
        let mut f = facts(&[("wait_timeout", "600")]);
        f.variables.get_mut("wait_timeout").unwrap().session = Some("100".into());
        let probe = IdleProbe {
            held_seconds: 120.0,
            checkpoints: vec![],
            died_between_seconds: Some((30.0, 60.0)),
            server_closed: Some(false),
        };
        let (chain, _) = build(&ChainInputs {
            facts: Some(&f),
            pool_lifetime: Some(Duration::from_secs(90)),
            idle_probe: Some(&probe),
            ..ChainInputs::default()
        });
        assert_eq!(
            layers(&chain),
            [
                ("middlebox_measured", Verdict::CutsFirst),
                ("pool", Verdict::TooLate),
                ("wait_timeout_session", Verdict::Ok),
                ("wait_timeout", Verdict::Ok),
            ]
        );
        assert_eq!(
            middlebox_limit(None, Some(&probe)),
            Some((30, "--probe-idle"))
        );
        assert!(chain[1]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("set it to 27 s or less"));
    }
}
