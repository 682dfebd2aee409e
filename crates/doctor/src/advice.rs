//! What to change: server settings (a my.cnf snippet and SQL), pool settings per framework,
//! and other actions — derived from the findings and this server's own values.
//!
//! Advice never contradicts itself: each server variable gets at most one recommendation,
//! only ever raised above its current value, and every pool setting is derived from the one
//! `wait_timeout` the server will have once the server advice is followed.

use std::collections::BTreeMap;

use goneaway_core::Cause;
use serde::Serialize;

use crate::facts::Facts;
use crate::finding::Finding;

/// One server variable to change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSetting {
    /// The variable.
    pub variable: String,
    /// Its value now, if read.
    pub current: Option<String>,
    /// The value to set.
    pub recommended: String,
    /// Why.
    pub reason: String,
}

/// The pool limits every framework's settings are derived from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolLimits {
    /// The `wait_timeout` the limits are derived from (after the server advice).
    pub wait_timeout: u64,
    /// Retire connections older than this (seconds).
    pub max_lifetime: u64,
    /// Close connections idle longer than this (seconds).
    pub max_idle: u64,
    /// Ping idle connections this often (seconds), when worthwhile.
    pub keepalive: Option<u64>,
    /// Why these numbers.
    pub reason: String,
}

/// One framework's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSnippet {
    /// `sqlalchemy`, `django`, `hikaricp`, `node_mysql2`, `php_pdo`, `go_database_sql`,
    /// `sqlx`, `mysql_async`, `goneaway`.
    pub framework: &'static str,
    /// The settings, as code or configuration.
    pub settings: String,
}

/// Everything the report recommends (the default: nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recommendations {
    /// Server variables to raise.
    pub server: Vec<ServerSetting>,
    /// The same as a `my.cnf` snippet (empty when nothing is to change).
    pub my_cnf: String,
    /// The same as SQL: `SET PERSIST` on MySQL 8, `SET GLOBAL` elsewhere.
    pub statements: Vec<String>,
    /// How to change settings on a managed service, when that is one.
    pub managed: Option<String>,
    /// The pool limits.
    pub pool: Option<PoolLimits>,
    /// The pool limits in each framework's terms.
    pub frameworks: Vec<PoolSnippet>,
    /// Other things to do, most important first.
    pub actions: Vec<String>,
}

const MIB: u64 = 1024 * 1024;

/// Derives the recommendations. `middlebox_idle` is a known idle limit of something between
/// the application and the server (`--middlebox-idle`, or measured by the idle probe), in
/// seconds: the pool limits stay below it.
pub fn recommend(
    facts: Option<&Facts>,
    findings: &[Finding],
    middlebox_idle: Option<u64>,
) -> Recommendations {
    let has = |c: Cause| findings.iter().any(|f| f.cause == c);
    let mut server: BTreeMap<&'static str, (u64, String)> = BTreeMap::new();
    let mut actions = Vec::new();
    let get = |name: &str| facts.and_then(|f| f.global_u64(name));
    let mut raise = |name: &'static str, to: u64, reason: &str| {
        let current = get(name);
        if current.is_none_or(|c| to > c) {
            let entry = server.entry(name).or_insert((to, reason.to_string()));
            if to > entry.0 {
                *entry = (to, reason.to_string());
            }
        }
    };

    for f in findings {
        match f.cause {
            Cause::IdleTimeout => {
                if get("wait_timeout").is_some_and(|w| w < 60) {
                    raise("wait_timeout", 600, "a few seconds is shorter than any pool can reliably recycle; with the pool settings below, 10 minutes is safe");
                    raise("interactive_timeout", 600, "kept equal to wait_timeout, so interactive clients get the same limit");
                }
                actions.push("Make the pool retire idle connections before the server's wait_timeout (settings below) and validate a connection that sat idle before using it.".into());
            }
            Cause::NetTimeout => {
                raise("net_read_timeout", 120, "large writes and LOAD DATA from slow clients need longer than the default 30 s");
                raise("net_write_timeout", 120, "large results read slowly by the client need longer than the default 60 s");
                actions.push("Read large results promptly (stream them, do not process row by row while the server waits) and chunk large writes.".into());
            }
            Cause::PacketTooLarge => {
                let current = get("max_allowed_packet").unwrap_or(16 * MIB);
                let to = [64 * MIB, 256 * MIB, 1024 * MIB]
                    .into_iter()
                    .find(|v| *v > current)
                    .unwrap_or(1024 * MIB);
                raise("max_allowed_packet", to, "the largest statement or row must fit in one packet; the client's own max_allowed_packet must be raised too");
                actions.push("Chunk bulk inserts so each statement stays well below max_allowed_packet (the goneaway library does this).".into());
            }
            Cause::TooManyConnections => {
                let used = facts.and_then(|f| f.counter("Max_used_connections")).unwrap_or(0);
                let current = get("max_connections").unwrap_or(151);
                raise("max_connections", (current.max(used) * 3 / 2).max(current + 50), "headroom above the peak; size each pool so their sum stays below it");
                actions.push("Cap each application pool (max size × instances < max_connections) and make pools release idle connections.".into());
            }
            Cause::HostBlocked => {
                raise("max_connect_errors", 100_000, "a host is blocked after this many interrupted connection attempts; health checks alone can reach a low limit");
                let flush = if facts.is_some_and(|f| f.has_set_persist()) {
                    "TRUNCATE TABLE performance_schema.host_cache"
                } else {
                    "FLUSH HOSTS"
                };
                actions.push(format!("Unblock the host now with {flush}; find what opens connections without logging in (load-balancer health checks: use a MySQL-aware check)."));
            }
            Cause::AccessDenied => actions.push("Check the account, its password and its allowed host (`SELECT user, host FROM mysql.user`); the host part must match the address the server sees.".into()),
            Cause::ServerRestart => actions.push("Find who restarts the server (deploys, package upgrades, maintenance windows); pools must validate connections after a restart (pre-ping) and retry safe statements.".into()),
            Cause::ServerCrash => actions.push("Read the crash lines in the error log around the unclean start; upgrade to the latest minor release; report a bug with the Markdown report (`--format markdown`).".into()),
            Cause::OutOfMemory => actions.push("The OOM killer ended the server: lower innodb_buffer_pool_size and per-connection buffers, cap max_connections, or give the host more memory.".into()),
            Cause::ConnectionKilled => actions.push("Find who runs KILL: pt-kill, a DBA script, max_execution_time/max_statement_time, a failover tool; the process list and general log name the account.".into()),
            Cause::NetworkDrop => actions.push("Something between client and server drops idle flows: keep connections busier than its idle limit (pool keepalive below, TCP keepalive `net.ipv4.tcp_keepalive_time` < 300) or raise the middlebox's idle timeout.".into()),
            Cause::ServerUnreachable => actions.push("Check that the server runs, listens on this address (bind_address, skip_networking = OFF, port) and that no firewall or security group blocks the port.".into()),
            _ => {}
        }
    }
    actions.dedup();

    let managed = facts.and_then(|f| f.server.managed.as_deref()).map(|m| match m {
        "aws_rds" | "aws_aurora" => "A managed AWS server: set these in the DB (cluster) parameter group; SET GLOBAL/PERSIST is not allowed for the master user.".to_string(),
        "google_cloud_sql" => "Cloud SQL: set these as database flags (gcloud sql instances patch --database-flags=…).".to_string(),
        "azure" => "Azure Database: set these as server parameters (az mysql flexible-server parameter set).".to_string(),
        other => format!("A managed server ({other}): change these through the provider's parameter settings."),
    });

    let persist = facts.is_some_and(|f| f.has_set_persist());
    let mut settings = Vec::new();
    let mut my_cnf = String::new();
    let mut statements = Vec::new();
    if !server.is_empty() {
        my_cnf.push_str("[mysqld]\n");
    }
    for (name, (value, reason)) in &server {
        let shown = if *name == "max_allowed_packet" && value % MIB == 0 {
            format!("{}M", value / MIB)
        } else {
            value.to_string()
        };
        my_cnf.push_str(&format!("{name} = {shown}\n"));
        statements.push(format!(
            "SET {} {name} = {value};",
            if persist { "PERSIST" } else { "GLOBAL" }
        ));
        settings.push(ServerSetting {
            variable: name.to_string(),
            current: facts.and_then(|f| f.global(name)).map(str::to_string),
            recommended: shown,
            reason: reason.clone(),
        });
    }
    if !statements.is_empty() && !persist {
        statements.push("-- SET GLOBAL is lost at restart: add the my.cnf lines too. It applies to new connections only.".into());
    }

    let wait = server
        .get("wait_timeout")
        .map(|(v, _)| *v)
        .or_else(|| get("wait_timeout"));
    let pool = wait.map(|w| pool_limits(w, facts, has(Cause::NetworkDrop), middlebox_idle));
    let frameworks = pool.as_ref().map(frameworks).unwrap_or_default();
    Recommendations {
        server: settings,
        my_cnf,
        statements,
        managed,
        pool,
        frameworks,
        actions,
    }
}

/// The longest a layer may let a connection idle when the next layer out cuts idle ones
/// after `limit` seconds, and the margin kept: 10 % of the limit, at least 2 s, so clock
/// skew and a statement in flight never meet a closed connection. At least 1 s.
pub(crate) fn recycle_before(limit: u64) -> (u64, u64) {
    let margin = (limit / 10).max(2);
    (limit.saturating_sub(margin).max(1), margin)
}

/// The pool limits for a server that closes idle connections after `wait` seconds, below
/// the idle limits of the managed service's or a known middlebox's network.
pub(crate) fn pool_limits(
    wait: u64,
    facts: Option<&Facts>,
    network_drop: bool,
    middlebox_idle: Option<u64>,
) -> PoolLimits {
    // Retire connections a margin before the server would.
    let (mut idle, margin) = recycle_before(wait);
    let mut reason = format!("wait_timeout = {wait} s less a margin of {margin} s");
    // HikariCP's 30 minutes is a good upper bound: longer buys nothing and keeps
    // connections through more infrastructure changes.
    if idle > 1800 {
        idle = 1800;
        reason.push_str(", at most 30 minutes");
    }
    // A middlebox that drops idle flows sets a lower ceiling than the server.
    let ceiling = match facts.and_then(|f| f.server.managed.as_deref()) {
        Some("aws_rds" | "aws_aurora") => Some((300, "below AWS NAT/NLB's 350 s idle limit")),
        Some("azure") => Some((200, "below the Azure load balancer's 4-minute idle limit")),
        _ if network_drop => Some((
            300,
            "below the 350 s idle limit of common NAT gateways and load balancers",
        )),
        _ => None,
    };
    if let Some((c, why)) = ceiling {
        if idle > c {
            idle = c;
            reason.push_str(&format!(", capped at {c} s {why}"));
        }
    }
    // A middlebox whose idle limit is known (stated or measured) sets the ceiling by the
    // same margin rule.
    if let Some(m) = middlebox_idle {
        let (c, margin) = recycle_before(m);
        if idle > c {
            idle = c;
            reason.push_str(&format!(
                ", capped at {c} s: the middlebox's {m} s idle limit less a margin of {margin} s"
            ));
        }
    }
    // The lifetime equals the idle limit: a longer lifetime would let a connection that goes
    // quiet late in its life outlive wait_timeout, the classic cause this advice prevents.
    let lifetime = idle;
    let keepalive = (idle >= 60).then(|| (idle / 2).max(30));
    PoolLimits {
        wait_timeout: wait,
        max_lifetime: lifetime,
        max_idle: idle,
        keepalive,
        reason,
    }
}

fn frameworks(p: &PoolLimits) -> Vec<PoolSnippet> {
    let (life, idle) = (p.max_lifetime, p.max_idle);
    let hikari_note = if life < 30 {
        "\n# HikariCP refuses maxLifetime below 30000 ms: raise wait_timeout first"
    } else {
        ""
    };
    let hikari_keepalive = p
        .keepalive
        .filter(|k| *k >= 30 && *k < life)
        .map(|k| format!("\nkeepaliveTime={}", k * 1000))
        .unwrap_or_default();
    vec![
        PoolSnippet {
            framework: "sqlalchemy",
            settings: format!("create_engine(url, pool_recycle={idle}, pool_pre_ping=True)"),
        },
        PoolSnippet {
            framework: "django",
            settings: format!("DATABASES[\"default\"][\"CONN_MAX_AGE\"] = {idle}\nDATABASES[\"default\"][\"CONN_HEALTH_CHECKS\"] = True  # Django 4.1+"),
        },
        PoolSnippet {
            framework: "hikaricp",
            settings: format!(
                "maxLifetime={}\nidleTimeout={}{hikari_keepalive}{hikari_note}",
                life.max(30) * 1000,
                (idle.max(10) * 1000).min(life.max(30) * 1000 - 1000).max(10_000)
            ),
        },
        PoolSnippet {
            framework: "node_mysql2",
            settings: format!("mysql.createPool({{ /* … */ idleTimeout: {}, maxIdle: 10, enableKeepAlive: true, keepAliveInitialDelay: 10000 }})", idle * 1000),
        },
        PoolSnippet {
            framework: "php_pdo",
            settings: format!("new PDO($dsn, $user, $pass, [PDO::ATTR_PERSISTENT => false, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);\n// long-running workers: reconnect when the connection has been idle more than {idle} s"),
        },
        PoolSnippet {
            framework: "go_database_sql",
            settings: format!("db.SetConnMaxLifetime({life} * time.Second)\ndb.SetConnMaxIdleTime({idle} * time.Second)"),
        },
        PoolSnippet {
            framework: "sqlx",
            settings: format!("MySqlPoolOptions::new()\n    .max_lifetime(Duration::from_secs({life}))\n    .idle_timeout(Duration::from_secs({idle}))\n    .test_before_acquire(true)"),
        },
        PoolSnippet {
            framework: "mysql_async",
            settings: format!("OptsBuilder::from_opts(opts)\n    .conn_ttl(Duration::from_secs({idle}))\n    .pool_opts(PoolOpts::default().with_abs_conn_ttl(Some(Duration::from_secs({life}))))"),
        },
        PoolSnippet {
            framework: "goneaway",
            settings: "goneaway::Pool::new(url)  // reads the session's wait_timeout and derives max_idle and keepalive from it; nothing to set".to_string(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(vars: &[(&str, &str)]) -> Facts {
        Facts::with_variables(vars)
    }

    fn finding(cause: Cause) -> Finding {
        Finding {
            cause,
            title: cause.title(),
            confidence: 0.9,
            evidence: vec![],
        }
    }

    #[test]
    fn never_contradicts_and_only_raises() {
        let f = facts(&[
            ("wait_timeout", "2"),
            ("interactive_timeout", "28800"),
            ("max_allowed_packet", "1048576"),
            ("version", "10.11.6-MariaDB"),
        ]);
        let all: Vec<Finding> = Cause::ALL
            .iter()
            .map(|c| finding(*c))
            .chain(Cause::ALL.iter().map(|c| finding(*c)))
            .collect();
        let r = recommend(Some(&f), &all, None);
        let mut names: Vec<&str> = r.server.iter().map(|s| s.variable.as_str()).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "one recommendation per variable");
        assert!(!names.contains(&"interactive_timeout"), "never lowered");
        let wt = r
            .server
            .iter()
            .find(|s| s.variable == "wait_timeout")
            .unwrap();
        assert_eq!(wt.recommended, "600");
        assert_eq!(
            r.pool.as_ref().unwrap().wait_timeout,
            600,
            "pools follow the recommended server value"
        );
        assert!(r.pool.as_ref().unwrap().max_idle < 600);
        assert!(r.my_cnf.contains("max_allowed_packet = 64M"));
        assert!(
            r.statements.iter().all(|s| !s.contains("PERSIST")),
            "MariaDB has no SET PERSIST"
        );
        assert_eq!(r.frameworks.len(), 9);
    }

    #[test]
    fn healthy_server_changes_nothing() {
        let f = facts(&[("wait_timeout", "28800")]);
        let r = recommend(Some(&f), &[], None);
        assert!(r.server.is_empty() && r.my_cnf.is_empty());
        assert_eq!(r.pool.unwrap().max_idle, 1800);
    }

    #[test]
    fn a_known_middlebox_caps_the_pool_by_the_same_margin() {
        assert_eq!(recycle_before(5), (3, 2));
        assert_eq!(recycle_before(350), (315, 35));
        assert_eq!(recycle_before(1), (1, 2));
        let f = facts(&[("wait_timeout", "28800")]);
        let p = recommend(Some(&f), &[], Some(350)).pool.unwrap();
        assert_eq!((p.max_idle, p.max_lifetime), (315, 315));
        assert!(
            p.reason.contains("middlebox's 350 s idle limit"),
            "{}",
            p.reason
        );
    }
}
