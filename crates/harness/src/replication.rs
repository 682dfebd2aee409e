//! A real MariaDB GTID replication set on 127.0.0.1: one primary, replicas, and the faults
//! of replication (a replica lagging, its SQL thread broken, its primary gone, a promotion).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::join::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::Row;

use crate::{HarnessError, Server, ServerBuilder, DATABASE};

/// The account replicas log in to their primary with (REPLICATION SLAVE only). It exists on
/// every member, so that any replica can become the primary of the others.
pub const REPLICATION_USER: &str = "goneaway_repl";
/// Its password: a throwaway server on loopback, still never printed by the harness.
const REPLICATION_PASSWORD: &str = "goneaway-repl-password";

/// How long a replica may take to apply what its primary has (a few writes of a test).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Chooses the number of replicas and the server variables, then starts the set.
#[derive(Debug, Clone)]
pub struct ReplicationBuilder {
    /// How many replicas (1 by default).
    replicas: usize,
    /// Server variables for every member, on top of the replication settings.
    vars: Vec<(String, String)>,
}

impl Default for ReplicationBuilder {
    fn default() -> Self {
        ReplicationBuilder {
            replicas: 1,
            vars: Vec::new(),
        }
    }
}

impl ReplicationBuilder {
    /// The number of replicas (at least 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Sets a server variable on every member.
    pub fn var(mut self, name: &str, value: impl Display) -> Self {
        let name = name.replace('-', "_");
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value.to_string()));
        self
    }

    /// Starts every member at once, makes member 0 the primary and the others its replicas
    /// (`MASTER_USE_GTID=slave_pos`), and waits until every replica has caught up.
    pub async fn start(self) -> Result<Replication, HarnessError> {
        let started = Instant::now();
        let members = join_all((0..=self.replicas).map(|i| {
            let mut b = ServerBuilder::default()
                .var("server_id", i + 1)
                .var("log_bin", "mariadb-bin")
                .var("log_slave_updates", "ON")
                .var("binlog_format", "ROW")
                .var("relay_log", "relay-bin")
                // A replica is read-only for everyone but the replication threads and SUPER.
                .var("read_only", if i == 0 { "OFF" } else { "ON" });
            for (name, value) in &self.vars {
                b = b.var(name, value);
            }
            b.start()
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<Server>, _>>()?;
        let set = Replication {
            members,
            primary: Mutex::new(0),
            broken: Mutex::new(BTreeMap::new()),
            conflicts: AtomicU32::new(0),
        };
        let primary = &set.members[0];
        // Each member made its own application account and database at its start; the
        // replicas start from the primary's position as it is now, so those are not
        // replayed. The replication account is made after, so it replicates everywhere.
        let mut conn = primary.admin_conn().await?;
        let position: String = conn
            .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
            .await?
            .unwrap_or_default();
        conn.query_drop(format!(
            "CREATE USER '{REPLICATION_USER}'@'%' IDENTIFIED BY '{REPLICATION_PASSWORD}';
             GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'%';"
        ))
        .await?;
        conn.disconnect().await?;
        for replica in &set.members[1..] {
            let mut conn = replica.admin_conn().await?;
            // The replica's own start-up writes leave its binary log: once promoted, it
            // must serve its replicas only what came from the primary.
            conn.query_drop("RESET MASTER").await?;
            conn.exec_drop("SET GLOBAL gtid_slave_pos = ?", (position.as_str(),))
                .await?;
            conn.query_drop(change_master(primary.port())).await?;
            conn.query_drop("START SLAVE").await?;
            conn.disconnect().await?;
        }
        set.wait_caught_up().await?;
        tracing::debug!(replicas = self.replicas, elapsed = ?started.elapsed(), "replication set up");
        Ok(set)
    }
}

/// `CHANGE MASTER TO` a primary on 127.0.0.1, by GTID, retrying a lost primary every second
/// (the default, 60 s, would make every restart test wait a minute).
fn change_master(port: u16) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, \
         MASTER_USER='{REPLICATION_USER}', MASTER_PASSWORD='{REPLICATION_PASSWORD}', \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
    )
}

/// What `SHOW SLAVE STATUS` says on a replica.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaStatus {
    /// `Slave_IO_Running`: `Yes`, `No` or `Connecting`.
    pub io_running: String,
    /// `Slave_SQL_Running`: `Yes` or `No`.
    pub sql_running: String,
    /// `Seconds_Behind_Master`; `None` when NULL (a thread stopped or not connected).
    pub seconds_behind_master: Option<u64>,
    /// `Last_IO_Errno` and `Last_IO_Error`.
    pub last_io_errno: u64,
    /// See `last_io_errno`.
    pub last_io_error: String,
    /// `Last_SQL_Errno` and `Last_SQL_Error`.
    pub last_sql_errno: u64,
    /// See `last_sql_errno`.
    pub last_sql_error: String,
    /// `Master_Port`: which member it replicates from.
    pub master_port: u16,
    /// `SQL_Delay`: the configured `MASTER_DELAY`.
    pub sql_delay: u64,
}

impl ReplicaStatus {
    fn from_row(row: &Row) -> ReplicaStatus {
        let text = |name: &str| -> String {
            row.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_default()
        };
        let num = |name: &str| -> Option<u64> { text(name).parse().ok() };
        ReplicaStatus {
            io_running: text("Slave_IO_Running"),
            sql_running: text("Slave_SQL_Running"),
            seconds_behind_master: num("Seconds_Behind_Master"),
            last_io_errno: num("Last_IO_Errno").unwrap_or(0),
            last_io_error: text("Last_IO_Error"),
            last_sql_errno: num("Last_SQL_Errno").unwrap_or(0),
            last_sql_error: text("Last_SQL_Error"),
            master_port: num("Master_Port").unwrap_or(0) as u16,
            sql_delay: num("SQL_Delay").unwrap_or(0),
        }
    }

    /// Both threads running.
    pub fn is_running(&self) -> bool {
        self.io_running == "Yes" && self.sql_running == "Yes"
    }
}

/// A running replication set: member 0 starts as the primary, members 1.. as its replicas.
/// Every member is a [`Server`] (killed on drop, killed with the test process, ready only
/// after real logins); stop, crash and restart them through [`Replication::member`].
///
/// Every member has `log_bin` and `log_slave_updates`, so any replica can be promoted.
#[derive(Debug)]
pub struct Replication {
    members: Vec<Server>,
    /// The index of the current primary (changed by [`Replication::promote`]).
    primary: Mutex<usize>,
    /// Tables with a row written on a replica alone by [`Replication::break_sql_thread`], by
    /// member.
    broken: Mutex<BTreeMap<usize, String>>,
    /// Numbers the conflicting tables.
    conflicts: AtomicU32,
}

impl Replication {
    /// Chooses the number of replicas and the variables.
    pub fn builder() -> ReplicationBuilder {
        ReplicationBuilder::default()
    }

    /// A primary and `replicas` replicas with the default variables.
    pub async fn start(replicas: usize) -> Result<Replication, HarnessError> {
        ReplicationBuilder::default()
            .replicas(replicas)
            .start()
            .await
    }

    /// Member `i` (0 is the first primary).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn member(&self, i: usize) -> &Server {
        &self.members[i]
    }

    /// Every member.
    pub fn members(&self) -> &[Server] {
        &self.members
    }

    /// The index of the current primary.
    pub fn primary_index(&self) -> usize {
        *self.primary.lock().unwrap()
    }

    /// The current primary.
    pub fn primary(&self) -> &Server {
        &self.members[self.primary_index()]
    }

    /// The indexes of the current replicas (every member but the primary).
    pub fn replica_indexes(&self) -> Vec<usize> {
        let p = self.primary_index();
        (0..self.members.len()).filter(|i| *i != p).collect()
    }

    /// The first replica (member 1 until a promotion).
    pub fn replica(&self) -> &Server {
        &self.members[self.replica_indexes()[0]]
    }

    /// `SHOW SLAVE STATUS` on member `i`; `None` when it replicates from nobody.
    pub async fn replica_status(&self, i: usize) -> Result<Option<ReplicaStatus>, HarnessError> {
        let mut conn = self.get(i)?.admin_conn().await?;
        let row: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await?;
        conn.disconnect().await?;
        Ok(row.as_ref().map(ReplicaStatus::from_row))
    }

    /// Waits until every running replica runs both threads and has applied everything the
    /// primary has written so far.
    pub async fn wait_caught_up(&self) -> Result<(), HarnessError> {
        let mut conn = self.primary().admin_conn().await?;
        let position: String = conn
            .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
            .await?
            .unwrap_or_default();
        conn.disconnect().await?;
        for i in self.replica_indexes() {
            if self.members[i].is_running() {
                self.wait_position(i, &position, CATCH_UP_TIMEOUT).await?;
            }
        }
        Ok(())
    }

    async fn wait_position(
        &self,
        i: usize,
        position: &str,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let started = Instant::now();
        let mut conn = self.members[i].admin_conn().await?;
        // MASTER_GTID_WAIT returns 0 once the position is applied, -1 on its own timeout.
        let reached: Option<i64> = conn
            .exec_first(
                "SELECT MASTER_GTID_WAIT(?, ?)",
                (position, timeout.as_secs_f64()),
            )
            .await?;
        conn.disconnect().await?;
        let status = self.replica_status(i).await?;
        match (reached, &status) {
            (Some(0), Some(s)) if s.is_running() => Ok(()),
            _ => Err(HarnessError::Cluster {
                what: format!("replica {i} did not apply the primary's position {position}"),
                seconds: started.elapsed().as_secs(),
                seen: format!("{status:?}"),
            }),
        }
    }

    /// Stops both replication threads on member `i` (`STOP SLAVE`).
    pub async fn stop_replication(&self, i: usize) -> Result<(), HarnessError> {
        self.get(i)?.admin("STOP SLAVE").await
    }

    /// Starts both replication threads on member `i` (`START SLAVE`).
    pub async fn start_replication(&self, i: usize) -> Result<(), HarnessError> {
        self.get(i)?.admin("START SLAVE").await
    }

    /// Makes replica `i` apply every event `seconds` after the primary wrote it
    /// (`MASTER_DELAY`), writes on the primary, and waits until the replica reports the
    /// lag (`Seconds_Behind_Master` ≥ 1). `lag(i, 0)` ends the delay.
    pub async fn lag(&self, i: usize, seconds: u64) -> Result<(), HarnessError> {
        let replica = self.get(i)?;
        let mut conn = replica.admin_conn().await?;
        conn.query_drop("STOP SLAVE").await?;
        conn.query_drop(format!("CHANGE MASTER TO MASTER_DELAY={seconds}"))
            .await?;
        conn.query_drop("START SLAVE").await?;
        conn.disconnect().await?;
        if seconds == 0 {
            return self.wait_caught_up().await;
        }
        self.heartbeat().await?;
        let started = Instant::now();
        loop {
            let status = self.replica_status(i).await?;
            if status
                .as_ref()
                .and_then(|s| s.seconds_behind_master)
                .is_some_and(|s| s >= 1)
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(seconds + 30) {
                return Err(HarnessError::Cluster {
                    what: format!("replica {i} never reported a lag"),
                    seconds: started.elapsed().as_secs(),
                    seen: format!("{status:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes replica `i` fall behind the way a real one does: a transaction on the replica
    /// holds a row lock that the next replicated update needs, so the SQL thread waits and
    /// `Seconds_Behind_Master` grows by a second every second. Returns once the lag shows
    /// (≥ 1 s); the lag lasts until [`SqlThreadHold::release`] or the guard is dropped (the
    /// holding connection closes and its transaction rolls back). The SQL thread gives up
    /// waiting after `innodb_lock_wait_timeout` (50 s) and retries.
    pub async fn hold_sql_thread(&self, i: usize) -> Result<SqlThreadHold, HarnessError> {
        let replica = self.get(i)?;
        let n = self.conflicts.fetch_add(1, Ordering::Relaxed);
        let table = format!("{DATABASE}.harness_hold_{n}");
        self.primary()
            .admin(&format!(
                "CREATE TABLE {table} (id INT PRIMARY KEY, n INT); INSERT INTO {table} VALUES (1, 0)"
            ))
            .await?;
        self.wait_caught_up().await?;
        let mut holder = replica.admin_conn().await?;
        holder.query_drop("BEGIN").await?;
        holder
            .query_drop(format!("SELECT n FROM {table} WHERE id = 1 FOR UPDATE"))
            .await?;
        self.primary()
            .admin(&format!("UPDATE {table} SET n = n + 1 WHERE id = 1"))
            .await?;
        let started = Instant::now();
        loop {
            let status = self.replica_status(i).await?;
            if status
                .as_ref()
                .and_then(|s| s.seconds_behind_master)
                .is_some_and(|s| s >= 1)
            {
                return Ok(SqlThreadHold { conn: holder });
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(HarnessError::Cluster {
                    what: format!("replica {i} never reported a lag"),
                    seconds: started.elapsed().as_secs(),
                    seen: format!("{status:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A write on the primary (a row in `goneaway.harness_heartbeat`), so that replicas have
    /// something to apply.
    pub async fn heartbeat(&self) -> Result<(), HarnessError> {
        self.primary()
            .admin(&format!(
                "CREATE TABLE IF NOT EXISTS {DATABASE}.harness_heartbeat (id INT PRIMARY KEY, at DATETIME(6));
                 REPLACE INTO {DATABASE}.harness_heartbeat VALUES (1, NOW(6))"
            ))
            .await
    }

    /// Breaks replica `i`'s SQL thread the way real drift does: a row written on the replica
    /// alone, then the same key written on the primary, which the replica cannot apply
    /// (error 1062; a DDL clash would not do, since MariaDB replicas apply DDL idempotently).
    /// Waits until `Slave_SQL_Running` is `No`; returns the status, with its
    /// `Last_SQL_Error`.
    pub async fn break_sql_thread(&self, i: usize) -> Result<ReplicaStatus, HarnessError> {
        let replica = self.get(i)?;
        let n = self.conflicts.fetch_add(1, Ordering::Relaxed);
        let table = format!("{DATABASE}.harness_conflict_{n}");
        self.primary()
            .admin(&format!("CREATE TABLE {table} (id INT PRIMARY KEY)"))
            .await?;
        self.wait_caught_up().await?;
        replica
            .admin(&format!(
                "SET SESSION sql_log_bin = 0; INSERT INTO {table} VALUES (1)"
            ))
            .await?;
        self.broken.lock().unwrap().insert(i, table.clone());
        self.primary()
            .admin(&format!("INSERT INTO {table} VALUES (1)"))
            .await?;
        let started = Instant::now();
        loop {
            let status = self.replica_status(i).await?;
            if let Some(s) = status.as_ref().filter(|s| s.sql_running == "No") {
                return Ok(s.clone());
            }
            if started.elapsed() > CATCH_UP_TIMEOUT {
                return Err(HarnessError::Cluster {
                    what: format!("replica {i}'s SQL thread did not stop"),
                    seconds: started.elapsed().as_secs(),
                    seen: format!("{status:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Undoes [`Replication::break_sql_thread`]: deletes the replica's own row, restarts its
    /// SQL thread and waits until it has caught up.
    pub async fn repair_sql_thread(&self, i: usize) -> Result<(), HarnessError> {
        let replica = self.get(i)?;
        let table = self.broken.lock().unwrap().remove(&i);
        if let Some(table) = table {
            replica
                .admin(&format!(
                    "SET SESSION sql_log_bin = 0; DELETE FROM {table} WHERE id = 1"
                ))
                .await?;
        }
        replica.admin("START SLAVE").await?;
        self.wait_caught_up().await
    }

    /// Promotes replica `i` to primary, as a failover does: it stops replicating and
    /// becomes writable (`read_only=OFF`); every other running member, the old primary
    /// included, follows it ([`Replication::follow`]). Does not wait for replica `i` to
    /// catch up first: call [`Replication::wait_caught_up`] for a planned switchover. A
    /// member that is down (a crashed old primary) can follow later, once started.
    pub async fn promote(&self, i: usize) -> Result<(), HarnessError> {
        let new = self.get(i)?;
        if i == self.primary_index() {
            return Ok(());
        }
        new.admin("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
            .await?;
        *self.primary.lock().unwrap() = i;
        for j in self.replica_indexes() {
            if self.members[j].is_running() {
                self.follow(j).await?;
            }
        }
        Ok(())
    }

    /// A planned switchover to replica `i`, as an operator runs one: the primary turns
    /// read-only (`SET GLOBAL read_only = ON` waits for the commits in progress, and no
    /// write commits after it), every running replica applies what it wrote, and replica `i`
    /// is promoted ([`Replication::promote`]); the old primary follows it. No acknowledged
    /// write is lost, and the time between the first step and the last is the time with
    /// no writable server.
    pub async fn switchover(&self, i: usize) -> Result<(), HarnessError> {
        self.get(i)?;
        if i == self.primary_index() {
            return Ok(());
        }
        self.primary().admin("SET GLOBAL read_only = ON").await?;
        self.wait_caught_up().await?;
        self.promote(i).await
    }

    /// Makes replica `i` acknowledge every transaction of the current primary before the
    /// primary answers its COMMIT (lossless semi-synchronous replication, the
    /// `AFTER_SYNC` wait point), so that a crash of the primary loses no acknowledged
    /// write once `i` is promoted after [`Replication::apply_relay_log`]. Waits (at most
    /// 20 s) until the primary counts the replica as a semi-synchronous client. The
    /// primary waits up to 10 s (MariaDB's default, set explicitly) for an acknowledgement
    /// before it falls back to asynchronous replication: far longer than a replica on
    /// loopback takes, so a test never sees the fallback.
    pub async fn semi_sync(&self, i: usize) -> Result<(), HarnessError> {
        let replica = self.get(i)?;
        let primary = self.primary();
        primary
            .admin(
                "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC, \
                 GLOBAL rpl_semi_sync_master_timeout = 10000, \
                 GLOBAL rpl_semi_sync_master_enabled = ON",
            )
            .await?;
        // The replica announces itself as semi-synchronous when its IO thread connects:
        // restart that thread (the SQL thread goes on).
        replica
            .admin("SET GLOBAL rpl_semi_sync_slave_enabled = ON; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")
            .await?;
        let started = Instant::now();
        loop {
            let clients = primary.status("Rpl_semi_sync_master_clients").await?;
            if clients
                .as_deref()
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|n| n >= 1)
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(HarnessError::Cluster {
                    what: format!("replica {i} never acknowledged semi-synchronously"),
                    seconds: started.elapsed().as_secs(),
                    seen: format!("Rpl_semi_sync_master_clients = {clients:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 60 s) until replica `i` has applied every event it received
    /// (`Gtid_IO_Pos`), as a failover tool does before it promotes a replica whose primary
    /// is gone: with [`Replication::semi_sync`], that is every acknowledged write.
    pub async fn apply_relay_log(&self, i: usize) -> Result<(), HarnessError> {
        let started = Instant::now();
        let mut conn = self.get(i)?.admin_conn().await?;
        let status: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await?;
        let received: String = status
            .as_ref()
            .and_then(|r| r.get_opt::<Option<String>, _>("Gtid_IO_Pos"))
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default();
        let reached: Option<i64> = conn
            .exec_first(
                "SELECT MASTER_GTID_WAIT(?, ?)",
                (received.as_str(), CATCH_UP_TIMEOUT.as_secs_f64()),
            )
            .await?;
        conn.disconnect().await?;
        if reached == Some(0) {
            Ok(())
        } else {
            Err(HarnessError::Cluster {
                what: format!("replica {i} did not apply its relay log up to {received:?}"),
                seconds: started.elapsed().as_secs(),
                seen: format!("MASTER_GTID_WAIT returned {reached:?}"),
            })
        }
    }

    /// Makes member `j` a read-only replica of the current primary, from where it stands:
    /// a replica keeps its applied position; a member that has never replicated (an old
    /// primary back after a failover) starts after its own last write.
    pub async fn follow(&self, j: usize) -> Result<(), HarnessError> {
        let member = self.get(j)?;
        let primary = self.primary();
        let mut conn = member.admin_conn().await?;
        let replicating: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await?;
        conn.query_drop("STOP SLAVE; SET GLOBAL read_only = ON")
            .await?;
        if replicating.is_none() {
            conn.query_drop("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")
                .await?;
        }
        conn.query_drop(change_master(primary.port())).await?;
        conn.query_drop("START SLAVE").await?;
        conn.disconnect().await?;
        Ok(())
    }

    fn get(&self, i: usize) -> Result<&Server, HarnessError> {
        self.members.get(i).ok_or(HarnessError::NoMember {
            index: i,
            len: self.members.len(),
        })
    }
}

/// A replica's SQL thread held back by a row lock (see [`Replication::hold_sql_thread`]).
#[derive(Debug)]
pub struct SqlThreadHold {
    /// The replica connection whose open transaction holds the lock.
    conn: mysql_async::Conn,
}

impl SqlThreadHold {
    /// Releases the lock (ROLLBACK): the SQL thread goes on and the replica catches up.
    pub async fn release(mut self) -> Result<(), HarnessError> {
        self.conn.query_drop("ROLLBACK").await?;
        self.conn.disconnect().await?;
        Ok(())
    }
}
