//! What the server says about itself: version, variables at both scopes, counters, the
//! process list — read-only queries a monitoring account may run.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;

use crate::time::{format_utc, now_unix};

/// The variables the doctor reads at GLOBAL and SESSION scope.
pub const VARIABLES: &[&str] = &[
    "version",
    "version_comment",
    "version_compile_os",
    "version_compile_machine",
    "basedir",
    "hostname",
    "wait_timeout",
    "interactive_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "connect_timeout",
    "max_allowed_packet",
    "max_connections",
    "max_user_connections",
    "max_connect_errors",
    "max_statement_time",
    "max_execution_time",
    "thread_handling",
    "thread_pool_size",
    "thread_pool_idle_timeout",
    "idle_transaction_timeout",
    "idle_readonly_transaction_timeout",
    "idle_write_transaction_timeout",
    "log_error",
    "log_error_verbosity",
    "log_warnings",
    "skip_networking",
    "skip_name_resolve",
    "aurora_version",
    "aurora_server_id",
    "rds_version",
    "cloudsql_iam_authentication",
    "azure_server_name",
    "wsrep_on",
    "wsrep_provider",
    "wsrep_cluster_address",
    "wsrep_cluster_name",
    "wsrep_sst_method",
    "read_only",
    "super_read_only",
    "log_bin",
    "group_replication_group_name",
    "performance_schema",
];

/// The counters the doctor reads (plus every `Connection_errors_*` and `wsrep_*` one).
pub const STATUS: &[&str] = &[
    "Uptime",
    "Aborted_clients",
    "Aborted_connects",
    "Max_used_connections",
    "Threads_connected",
    "Threads_running",
    "Connections",
    "Bytes_received",
    "Bytes_sent",
];

/// One variable at both scopes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scoped {
    /// The server-wide value new connections start from.
    pub global: Option<String>,
    /// The value in the doctor's own session (differs when `init_connect` or the account
    /// changes it).
    pub session: Option<String>,
}

/// Which server this is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerInfo {
    /// `@@version`, such as `10.11.6-MariaDB-0+deb12u1`.
    pub version: String,
    /// `mariadb`, `mysql` or `percona`.
    pub flavour: String,
    /// `@@version_comment`.
    pub version_comment: String,
    /// A managed service, when recognised: `aws_rds`, `aws_aurora`, `google_cloud_sql`,
    /// `azure`.
    pub managed: Option<String>,
    /// A cluster technology, when recognised: `galera`, `group_replication`.
    pub cluster: Option<String>,
}

/// A connection in the process list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    /// Connection id.
    pub id: u64,
    /// Account.
    pub user: String,
    /// Client host and port.
    pub host: String,
    /// `Sleep`, `Query`, `Killed`…
    pub command: String,
    /// Seconds in the current state.
    pub time: u64,
    /// Thread state.
    pub state: String,
    /// The statement's first 200 characters, if any.
    pub info: String,
}

/// What the process list shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Processes {
    /// Client connections seen (background threads and the doctor's own excluded).
    pub total: usize,
    /// Of those, idle (`Sleep`).
    pub sleeping: usize,
    /// Idle for at least half of `wait_timeout`: the server will close them if they stay idle.
    pub near_wait_timeout: Vec<Process>,
    /// Statements running longer than 60 s.
    pub long_running: Vec<Process>,
    /// Threads marked killed.
    pub killed: Vec<Process>,
    /// Whether only the doctor's own account's connections could be seen (no PROCESS
    /// privilege).
    pub own_only: bool,
    /// Replicas reading this server's binary log now (`Binlog Dump` threads): this server
    /// is somebody's primary.
    pub replicas_connected: usize,
}

/// One replication channel of a replica (`SHOW ALL SLAVES STATUS` on MariaDB, `SHOW
/// REPLICA STATUS` on MySQL).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicaChannel {
    /// The channel (`Connection_name`, `Channel_Name`); empty for the default one.
    pub name: String,
    /// The primary it replicates from, `host:port`.
    pub source: String,
    /// `Slave_IO_Running`: `Yes`, `No` or `Connecting`.
    pub io_running: String,
    /// `Slave_SQL_Running`: `Yes` or `No`.
    pub sql_running: String,
    /// `Seconds_Behind_Master`; `None` when the server says NULL (a thread stopped, or not
    /// connected to its primary).
    pub seconds_behind: Option<u64>,
    /// `SQL_Delay`: a deliberate delay (`MASTER_DELAY`), in seconds.
    pub sql_delay: u64,
    /// `Last_IO_Errno`.
    pub last_io_errno: u64,
    /// `Last_IO_Error`.
    pub last_io_error: String,
    /// `Last_SQL_Errno`.
    pub last_sql_errno: u64,
    /// `Last_SQL_Error`.
    pub last_sql_error: String,
}

/// Everything read from the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts {
    /// Which server this is.
    pub server: ServerInfo,
    /// `Uptime` in seconds.
    pub uptime_seconds: u64,
    /// When the server last started (now minus `Uptime`), UTC.
    pub started_at: String,
    /// The variables in [`VARIABLES`] the server has, at both scopes.
    pub variables: BTreeMap<String, Scoped>,
    /// The counters in [`STATUS`], `Connection_errors_*` and `wsrep_*` (numbers only).
    pub status: BTreeMap<String, u64>,
    /// Text-valued cluster status (`wsrep_cluster_status`, `wsrep_ready`…).
    pub status_text: BTreeMap<String, String>,
    /// The process list.
    pub processes: Processes,
    /// Where this server replicates from: one entry per channel, empty when it is no
    /// replica (or the account may not read it: see `unreadable`).
    pub replication: Vec<ReplicaChannel>,
    /// What could not be read, and why (missing privileges).
    pub unreadable: Vec<String>,
}

#[cfg(test)]
impl Facts {
    /// Facts with these variables, the same in the global and the session scope.
    pub(crate) fn with_variables(vars: &[(&str, &str)]) -> Facts {
        let mut f = Facts::default();
        for (k, v) in vars {
            f.variables.insert(
                k.to_string(),
                Scoped {
                    global: Some(v.to_string()),
                    session: Some(v.to_string()),
                },
            );
        }
        f
    }
}

impl Facts {
    /// A variable's global value.
    pub fn global(&self, name: &str) -> Option<&str> {
        self.variables.get(name)?.global.as_deref()
    }

    /// A variable's global value as a number.
    pub fn global_u64(&self, name: &str) -> Option<u64> {
        self.global(name)?.parse().ok()
    }

    /// A counter.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.status.get(name).copied()
    }

    /// Whether this is MariaDB.
    pub fn is_mariadb(&self) -> bool {
        self.server.flavour == "mariadb"
            || self
                .global("version")
                .is_some_and(|v| v.to_ascii_lowercase().contains("mariadb"))
    }

    /// Whether a variable is `ON` (or `1`) globally.
    pub fn global_on(&self, name: &str) -> bool {
        self.global(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1")
    }

    /// A text status value (`wsrep_cluster_status`…) or a number's text.
    pub fn status_str(&self, name: &str) -> Option<String> {
        self.status_text
            .get(name)
            .cloned()
            .or_else(|| self.counter(name).map(|n| n.to_string()))
    }

    /// Whether this server is a Galera node.
    pub fn is_galera(&self) -> bool {
        self.server.cluster.as_deref() == Some("galera")
    }

    /// The nodes `wsrep_cluster_address` lists (`gcomm://a,b,c?opts`): `None` when it lists
    /// none (`gcomm://` alone bootstraps a new cluster) or is not set.
    pub fn galera_address_nodes(&self) -> Option<usize> {
        let address = self.global("wsrep_cluster_address")?;
        let list = address.strip_prefix("gcomm://")?;
        let list = list.split('?').next().unwrap_or_default();
        let n = list.split(',').filter(|n| !n.trim().is_empty()).count();
        (n > 0).then_some(n)
    }

    /// Whether `SET PERSIST` exists (MySQL 8.0+).
    pub fn has_set_persist(&self) -> bool {
        !self.is_mariadb()
            && self
                .global("version")
                .unwrap_or(&self.server.version)
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| m >= 8)
    }
}

fn in_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the variables and counters (without the process list).
pub async fn read_status(
    conn: &mut Conn,
) -> Result<(BTreeMap<String, u64>, BTreeMap<String, String>), mysql_async::Error> {
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ({}) OR Variable_name LIKE 'Connection_errors_%' OR Variable_name LIKE 'wsrep_%'",
            in_list(STATUS)
        ))
        .await?;
    let mut numbers = BTreeMap::new();
    let mut text = BTreeMap::new();
    for (name, value) in rows {
        match value.parse::<u64>() {
            Ok(n) => {
                numbers.insert(name, n);
            }
            Err(_) => {
                text.insert(name, value);
            }
        }
    }
    Ok((numbers, text))
}

/// Reads every fact. Failing queries are noted in [`Facts::unreadable`], not fatal, except
/// for the variables and counters without which there is no diagnosis.
pub async fn gather(conn: &mut Conn) -> Result<Facts, mysql_async::Error> {
    let mut facts = Facts::default();
    let names = in_list(VARIABLES);
    let global: Vec<(String, String)> = conn
        .query(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"
        ))
        .await?;
    for (name, value) in global {
        facts.variables.entry(name).or_default().global = Some(value);
    }
    let session: Vec<(String, String)> = conn
        .query(format!(
            "SHOW SESSION VARIABLES WHERE Variable_name IN ({names})"
        ))
        .await?;
    for (name, value) in session {
        facts.variables.entry(name).or_default().session = Some(value);
    }
    let (status, status_text) = read_status(conn).await?;
    facts.status = status;
    facts.status_text = status_text;
    facts.uptime_seconds = facts.counter("Uptime").unwrap_or(0);
    facts.started_at = format_utc(now_unix() - facts.uptime_seconds as i64);
    facts.server = recognise(&facts);
    match read_processes(conn, facts.global_u64("wait_timeout")).await {
        Ok(p) => {
            if p.own_only {
                facts.unreadable.push(
                    "the process list shows only this account's connections (grant PROCESS to see all)".into(),
                );
            }
            facts.processes = p;
        }
        Err(e) => facts.unreadable.push(format!("the process list: {e}")),
    }
    match read_replication(conn, facts.is_mariadb()).await {
        Ok(channels) => facts.replication = channels,
        Err(e) => facts.unreadable.push(format!(
            "the replication status (grant REPLICATION CLIENT, or SLAVE MONITOR on MariaDB): {e}"
        )),
    }
    Ok(facts)
}

/// Reads every replication channel: MariaDB's `SHOW ALL SLAVES STATUS` (multi-source),
/// MySQL 8.0.22+'s `SHOW REPLICA STATUS`, older MySQL's `SHOW SLAVE STATUS`.
async fn read_replication(
    conn: &mut Conn,
    mariadb: bool,
) -> Result<Vec<ReplicaChannel>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = if mariadb {
        conn.query("SHOW ALL SLAVES STATUS").await?
    } else {
        match conn.query("SHOW REPLICA STATUS").await {
            Ok(rows) => rows,
            Err(_) => conn.query("SHOW SLAVE STATUS").await?,
        }
    };
    Ok(rows.iter().map(channel).collect())
}

/// One row of the replication status, by the column names of either vocabulary.
fn channel(row: &mysql_async::Row) -> ReplicaChannel {
    let text = |names: &[&str]| -> String {
        names
            .iter()
            .find_map(|n| {
                row.get_opt::<Option<String>, _>(*n)
                    .and_then(Result::ok)
                    .flatten()
            })
            .unwrap_or_default()
    };
    let num = |names: &[&str]| -> Option<u64> { text(names).trim().parse().ok() };
    let host = text(&["Master_Host", "Source_Host"]);
    let port = text(&["Master_Port", "Source_Port"]);
    ReplicaChannel {
        name: text(&["Connection_name", "Channel_Name", "Channel_name"]),
        source: format!("{host}:{port}"),
        io_running: text(&["Slave_IO_Running", "Replica_IO_Running"]),
        sql_running: text(&["Slave_SQL_Running", "Replica_SQL_Running"]),
        seconds_behind: num(&["Seconds_Behind_Master", "Seconds_Behind_Source"]),
        sql_delay: num(&["SQL_Delay"]).unwrap_or(0),
        last_io_errno: num(&["Last_IO_Errno"]).unwrap_or(0),
        last_io_error: text(&["Last_IO_Error"]),
        last_sql_errno: num(&["Last_SQL_Errno"]).unwrap_or(0),
        last_sql_error: text(&["Last_SQL_Error"]),
    }
}

/// Recognises the flavour, managed services and clusters from variables.
fn recognise(facts: &Facts) -> ServerInfo {
    let version = facts.global("version").unwrap_or_default().to_string();
    let comment = facts
        .global("version_comment")
        .unwrap_or_default()
        .to_string();
    let lower = format!("{version} {comment}").to_ascii_lowercase();
    let flavour = if lower.contains("mariadb") {
        "mariadb"
    } else if lower.contains("percona") {
        "percona"
    } else {
        "mysql"
    };
    let basedir = facts.global("basedir").unwrap_or_default();
    let has = |n: &str| facts.global(n).is_some_and(|v| !v.is_empty());
    let managed = if has("aurora_version") || has("aurora_server_id") {
        Some("aws_aurora")
    } else if basedir.starts_with("/rdsdbbin") || has("rds_version") {
        Some("aws_rds")
    } else if has("cloudsql_iam_authentication") || lower.contains("google") {
        Some("google_cloud_sql")
    } else if has("azure_server_name") || lower.contains("azure") {
        Some("azure")
    } else {
        None
    };
    let cluster = if facts
        .global("wsrep_on")
        .is_some_and(|v| v.eq_ignore_ascii_case("ON"))
    {
        Some("galera")
    } else if has("group_replication_group_name") {
        Some("group_replication")
    } else {
        None
    };
    ServerInfo {
        version,
        flavour: flavour.into(),
        version_comment: comment,
        managed: managed.map(Into::into),
        cluster: cluster.map(Into::into),
    }
}

async fn read_processes(
    conn: &mut Conn,
    wait_timeout: Option<u64>,
) -> Result<Processes, mysql_async::Error> {
    let own_id: u64 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await?
        .unwrap_or_default();
    let rows: Vec<(u64, String, String, String, u64, String, String)> = conn
        .query(
            "SELECT ID, COALESCE(USER,''), COALESCE(HOST,''), COALESCE(COMMAND,''), COALESCE(TIME,0), \
             COALESCE(STATE,''), LEFT(COALESCE(INFO,''), 200) FROM information_schema.PROCESSLIST",
        )
        .await?;
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap_or_default();
    let can_see_all = grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        g.contains(" ON *.*") && (g.contains("ALL PRIVILEGES") || g.contains("PROCESS"))
    });
    let mut p = Processes {
        own_only: !can_see_all,
        ..Processes::default()
    };
    for (id, user, host, command, time, state, info) in rows {
        if command.starts_with("Binlog Dump") {
            p.replicas_connected += 1;
        }
        // Background threads have no host (MariaDB) or are `system user`/`event_scheduler`.
        if id == own_id || host.is_empty() || user == "system user" || user == "event_scheduler" {
            continue;
        }
        let proc_ = Process {
            id,
            user,
            host,
            command,
            time,
            state,
            info,
        };
        p.total += 1;
        let killed = proc_.command.eq_ignore_ascii_case("Killed")
            || proc_.state.to_ascii_lowercase().contains("killed");
        if killed {
            p.killed.push(proc_);
        } else if proc_.command == "Sleep" {
            p.sleeping += 1;
            if let Some(wt) = wait_timeout {
                if wt > 0 && proc_.time * 2 >= wt {
                    p.near_wait_timeout.push(proc_);
                }
            }
        } else if proc_.command == "Query" && proc_.time > 60 {
            p.long_running.push(proc_);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(vars: &[(&str, &str)]) -> Facts {
        let mut f = Facts::default();
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

    #[test]
    fn recognises_managed_and_clustered_servers() {
        let r = recognise(&facts(&[
            ("version", "8.0.28"),
            ("aurora_version", "3.02.0"),
        ]));
        assert_eq!(
            (r.flavour.as_str(), r.managed.as_deref()),
            ("mysql", Some("aws_aurora"))
        );
        let r = recognise(&facts(&[
            ("version", "8.0.35"),
            ("basedir", "/rdsdbbin/mysql-8.0.35/"),
        ]));
        assert_eq!(r.managed.as_deref(), Some("aws_rds"));
        let r = recognise(&facts(&[
            ("version", "8.0.31-google"),
            ("cloudsql_iam_authentication", "OFF"),
        ]));
        assert_eq!(r.managed.as_deref(), Some("google_cloud_sql"));
        let r = recognise(&facts(&[
            ("version", "10.11.6-MariaDB"),
            ("wsrep_on", "ON"),
        ]));
        assert_eq!(
            (r.flavour.as_str(), r.cluster.as_deref()),
            ("mariadb", Some("galera"))
        );
        let r = recognise(&facts(&[
            ("version", "8.0.36"),
            ("group_replication_group_name", "aaaa-bbbb"),
        ]));
        assert_eq!(r.cluster.as_deref(), Some("group_replication"));
        let r = recognise(&facts(&[
            ("version", "8.0.36"),
            ("version_comment", "MySQL Community Server - GPL"),
        ]));
        assert_eq!((r.managed, r.cluster), (None, None));
        assert!(facts(&[("version", "8.0.36")]).has_set_persist());
        assert!(!facts(&[("version", "10.11.6-MariaDB")]).has_set_persist());
    }
}
