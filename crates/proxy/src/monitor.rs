//! The cluster monitor: one task that polls every server the proxy fronts and names the
//! writer, the server new backends go to (see [`crate::router`]).
//!
//! Every [`ProxyConfig::monitor_interval`] the monitor asks each member of
//! [`ProxyConfig::members`] at once, each on its own connection (the backend URL's account,
//! [`ConnectOptions::internal`], kept open between polls), each within a bound, so that one
//! server that hangs does not hold the others' news back:
//!
//! - `SHOW GLOBAL VARIABLES` for `read_only` and `wsrep_on`;
//! - on a Galera node (`wsrep_on = ON`), `wsrep_local_state` (4 = Synced), `wsrep_ready`
//!   and `wsrep_cluster_status` (`Primary`);
//! - otherwise `SHOW SLAVE STATUS`: a row means the server replicates from another, and
//!   its `Seconds_Behind_Master` is the replica's lag (logged with each change of writer,
//!   named in the error of a session that found no writer, and exported as
//!   `goneaway_proxy_replica_lag_seconds`). Without the privilege to ask (`SLAVE MONITOR`,
//!   or `REPLICATION CLIENT` before MariaDB 10.5), `read_only` alone decides.
//!
//! The writer, for replication: the one reachable server with `read_only = OFF` that
//! replicates from nobody. Two such servers are a split brain: the current writer is kept
//! (and the situation logged loudly) or, when neither is the current one, there is no
//! writer, since guessing would send writes to both sides. For Galera: a node that is
//! Synced, ready, in the primary component and not `read_only`; the current one is kept
//! while it stays so, so that every session writes to the same node (Galera certifies
//! concurrent writes to one row on two nodes by aborting one of them, error 1213).
//!
//! The verdict is published on a `tokio::sync::watch` channel as a [`ClusterView`]; its
//! `generation` changes on every change of writer, and a copy is kept in an atomic, so that
//! a session compares one number before each command. Each change is logged once, with
//! what every server said.
//!
//! With a single server (no [`ProxyConfig::servers`]) the monitor polls nothing: the
//! backend is the writer, as before clusters existed, and the session's paths are
//! unchanged (a read-only server's 1290 reaches the client as it does directly).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::backend::{Backend, ConnectOptions};
use crate::config::{BackendTarget, ClusterKind, ProxyConfig, ServerAddr};
use crate::server::Shared;
use crate::stats::{ServerGauge, Stats};
use crate::ProxyError;

/// A Galera node's state, as `SHOW GLOBAL STATUS` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaleraView {
    /// `wsrep_local_state`: 1 joining, 2 donor, 3 joined, 4 synced.
    pub local_state: u64,
    /// `wsrep_ready`: the node accepts queries.
    pub ready: bool,
    /// `wsrep_cluster_status`: `Primary`, `non-Primary` or `Disconnected`.
    pub cluster_status: String,
}

impl GaleraView {
    /// Synced, ready and in the primary component: writes there commit cluster-wide.
    pub fn healthy(&self) -> bool {
        self.local_state == 4 && self.ready && self.cluster_status == "Primary"
    }
}

/// What one server said at the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub addr: ServerAddr,
    /// Reached, logged in to and answered.
    pub up: bool,
    /// `@@read_only`; `None` when unknown (down).
    pub read_only: Option<bool>,
    /// Whether `SHOW SLAVE STATUS` has a row; `None` when not asked (Galera, down) or not
    /// allowed.
    pub replica: Option<bool>,
    /// A replica's `Seconds_Behind_Master`; `None` when it is no replica or the server
    /// cannot tell (`NULL`: a replication thread stopped, or not connected to its primary).
    /// How far a switchover to it would wait for it to catch up.
    pub lag: Option<u64>,
    /// For a Galera node (`wsrep_on = ON`), its state.
    pub galera: Option<GaleraView>,
    /// What the server said, in words, for the log and for the error a client gets when
    /// there is no writer. Never holds a password (the proxy's errors name accounts only).
    pub evidence: String,
}

impl ServerView {
    fn down(addr: ServerAddr, why: String) -> ServerView {
        ServerView {
            addr,
            up: false,
            read_only: None,
            replica: None,
            lag: None,
            galera: None,
            evidence: format!("down ({why})"),
        }
    }

    /// Whether this server may be the writer of a cluster of `kind`.
    fn can_write(&self, kind: ClusterKind) -> bool {
        match kind {
            ClusterKind::Galera => {
                self.up
                    && self.galera.as_ref().is_some_and(GaleraView::healthy)
                    && self.read_only != Some(true)
            }
            _ => self.up && self.read_only == Some(false) && self.replica != Some(true),
        }
    }

    /// Its role, for the metrics: `writer`, `replica`, `read_only`, `galera_synced` (a
    /// node that could take the writer's place), `galera_not_synced`, `down`.
    pub fn role(&self, writer: bool) -> &'static str {
        if writer {
            "writer"
        } else if !self.up {
            "down"
        } else if let Some(g) = &self.galera {
            if g.healthy() {
                "galera_synced"
            } else {
                "galera_not_synced"
            }
        } else if self.replica == Some(true) {
            "replica"
        } else {
            "read_only"
        }
    }
}

/// The roles [`ServerView::role`] names, each exported for every server (0 or 1).
pub const ROLES: [&str; 6] = [
    "writer",
    "replica",
    "read_only",
    "galera_synced",
    "galera_not_synced",
    "down",
];

/// The monitor's verdict after a poll round.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Changes on every change of writer (to another server, or to none).
    pub generation: u64,
    /// Where new backends go; `None` while no server qualifies (a switchover between the
    /// old primary turning read-only and the new one writable; a crashed primary before
    /// a replica is promoted).
    pub writer: Option<ServerAddr>,
    /// Every member as last polled (empty for a single server, which is not polled).
    pub servers: Vec<ServerView>,
    /// The poll round this view came from (0: none yet).
    pub round: u64,
    /// Replication or Galera, as the configuration says or the servers showed.
    pub kind: ClusterKind,
}

impl ClusterView {
    /// Each server and what it said, for logs and errors.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let _ = write!(out, "{}: {}", s.addr, s.evidence);
        }
        if out.is_empty() {
            out.push_str("not polled yet");
        }
        out
    }
}

/// The handle sessions and the listener hold: the latest [`ClusterView`], and a way to ask
/// for a fresh one.
#[derive(Debug)]
pub struct Monitor {
    view: watch::Sender<Arc<ClusterView>>,
    /// [`ClusterView::generation`], readable without a lock: a session compares it before
    /// each command.
    generation: AtomicU64,
    /// Whether more than one server is configured now (changes with a reload).
    cluster: AtomicBool,
    /// Poll rounds started: a round numbered above a reading of this began after it.
    rounds_started: AtomicU64,
    /// Wakes the task for a round now (a session saw a sign of a switchover).
    wake: Notify,
}

impl Monitor {
    /// The handle for `config`, before any poll: a single server is the writer at once; a
    /// cluster has none until the first round.
    pub(crate) fn new(config: &ProxyConfig) -> Monitor {
        let members = config.members();
        let cluster = members.len() > 1;
        let view = ClusterView {
            generation: 0,
            writer: (!cluster).then(|| members[0].clone()),
            servers: Vec::new(),
            round: 0,
            kind: config.cluster,
        };
        Monitor {
            view: watch::channel(Arc::new(view)).0,
            generation: AtomicU64::new(0),
            cluster: AtomicBool::new(cluster),
            rounds_started: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    /// Whether the proxy fronts more than one server.
    pub fn is_cluster(&self) -> bool {
        self.cluster.load(Ordering::Acquire)
    }

    /// The writer generation (see [`ClusterView::generation`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest verdict.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// A receiver of every new verdict.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.subscribe()
    }

    /// Asks for a poll round now (coalesced with any pending request).
    pub fn poll_now(&self) {
        self.wake.notify_one();
    }

    /// A verdict from a round that began after this call, waiting for it at most `bound`
    /// (then the latest one). Cancel-safe: it only reads.
    pub async fn fresh_view(&self, bound: Duration) -> Arc<ClusterView> {
        let after = self.rounds_started.load(Ordering::Acquire);
        let mut rx = self.subscribe();
        self.poll_now();
        let fresh = tokio::time::timeout(bound, rx.wait_for(|v| v.round > after)).await;
        match fresh {
            Ok(Ok(v)) => v.clone(),
            _ => self.view(),
        }
    }

    /// The backend URL's account on the writer, for the proxy's own writes (the commit
    /// marks' table); `None` while a cluster has no writer.
    pub fn writer_target(&self, backend: &BackendTarget) -> Option<BackendTarget> {
        self.view().writer.as_ref().map(|w| w.target(backend))
    }

    /// [`Monitor::writer_target`], waiting up to `bound` for a writer (the first poll
    /// round right after the start, a switchover). Cancel-safe: it only reads.
    pub async fn wait_writer_target(
        &self,
        backend: &BackendTarget,
        bound: Duration,
    ) -> Option<BackendTarget> {
        let mut rx = self.subscribe();
        let found = tokio::time::timeout(bound, rx.wait_for(|v| v.writer.is_some())).await;
        match found {
            Ok(Ok(v)) => v.writer.as_ref().map(|w| w.target(backend)),
            _ => None,
        }
    }

    fn publish(&self, view: ClusterView) {
        self.generation.store(view.generation, Ordering::Release);
        self.view.send_replace(Arc::new(view));
    }
}

/// The monitor's task: polls, decides and publishes until aborted (when the [`Proxy`] is
/// dropped). Follows reloads: the servers, the account and the intervals are read from
/// the configuration in force at each round.
///
/// [`Proxy`]: crate::Proxy
pub(crate) async fn run(monitor: Arc<Monitor>, shared: Arc<Shared>) {
    // The monitor's connections are not the sessions': counting them in
    // goneaway_proxy_backend_connections would hide what the sessions hold.
    let own_stats = Arc::new(Stats::default());
    let mut conns: HashMap<ServerAddr, Backend> = HashMap::new();
    let mut last_warning: Option<String> = None;
    loop {
        let gen = shared.current();
        let config = &gen.config;
        let members = config.members();
        if members.len() <= 1 {
            single(&monitor, &members[0], config.cluster);
            conns.clear();
            shared.stats.set_servers(Vec::new());
        } else {
            monitor.cluster.store(true, Ordering::Release);
            let round = monitor.rounds_started.fetch_add(1, Ordering::AcqRel) + 1;
            let bound = (config.monitor_interval * 4).clamp(
                Duration::from_secs(1),
                config.connect_timeout.max(Duration::from_secs(1)),
            );
            let polls = members.iter().map(|m| {
                poll(
                    m.clone(),
                    conns.remove(m),
                    m.target(&config.backend),
                    bound,
                    own_stats.clone(),
                    config.cluster,
                )
            });
            let mut servers = Vec::with_capacity(members.len());
            for (conn, view) in futures_util::future::join_all(polls).await {
                if let Some(c) = conn {
                    conns.insert(view.addr.clone(), c);
                }
                servers.push(view);
            }
            // Connections to servers a reload removed end here.
            conns.retain(|addr, _| members.contains(addr));
            decide(
                &monitor,
                &shared.stats,
                servers,
                round,
                config.cluster,
                &mut last_warning,
            );
        }
        let interval = config.monitor_interval.max(Duration::from_millis(50));
        drop(gen);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = monitor.wake.notified() => {}
        }
    }
}

/// A single server: the writer by definition, never polled.
fn single(monitor: &Monitor, only: &ServerAddr, kind: ClusterKind) {
    monitor.cluster.store(false, Ordering::Release);
    let view = monitor.view();
    if view.writer.as_ref() == Some(only) && view.servers.is_empty() {
        return;
    }
    monitor.publish(ClusterView {
        generation: view.generation + 1,
        writer: Some(only.clone()),
        servers: Vec::new(),
        round: view.round,
        kind,
    });
}

/// Chooses the writer from a round's views, publishes the verdict and logs a change.
fn decide(
    monitor: &Monitor,
    stats: &Stats,
    servers: Vec<ServerView>,
    round: u64,
    configured: ClusterKind,
    last_warning: &mut Option<String>,
) {
    let kind = match configured {
        ClusterKind::Auto if servers.iter().any(|s| s.galera.is_some()) => ClusterKind::Galera,
        ClusterKind::Auto => ClusterKind::Replication,
        k => k,
    };
    let previous = monitor.view();
    let (writer, warning) = choose(kind, &servers, previous.writer.as_ref());
    let mut view = ClusterView {
        generation: previous.generation,
        writer,
        servers,
        round,
        kind,
    };
    if warning != *last_warning {
        if let Some(w) = &warning {
            tracing::error!(servers = %view.describe(), "{w}");
        }
        *last_warning = warning;
    }
    if view.writer != previous.writer {
        view.generation += 1;
        stats.writer_changes.fetch_add(1, Ordering::Relaxed);
        let from = previous
            .writer
            .as_ref()
            .map_or("none".to_owned(), ToString::to_string);
        match &view.writer {
            Some(w) => tracing::info!(
                writer = %w,
                previous = %from,
                cluster = kind.as_str(),
                servers = %view.describe(),
                "the cluster's writer is {w}; sessions move to it at their next command that can"
            ),
            None => tracing::warn!(
                previous = %from,
                cluster = kind.as_str(),
                servers = %view.describe(),
                "the cluster has no writer; statements that need a new backend wait for one (switchover_wait)"
            ),
        }
    }
    stats.set_servers(
        view.servers
            .iter()
            .map(|s| ServerGauge {
                server: s.addr.to_string(),
                up: s.up,
                role: s.role(view.writer.as_ref() == Some(&s.addr)),
                lag: s.lag,
            })
            .collect(),
    );
    monitor.publish(view);
}

/// The writer among `servers` for a cluster of `kind`, given the current one, and a
/// warning when servers disagree about who writes.
fn choose(
    kind: ClusterKind,
    servers: &[ServerView],
    current: Option<&ServerAddr>,
) -> (Option<ServerAddr>, Option<String>) {
    let candidates: Vec<&ServerAddr> = servers
        .iter()
        .filter(|s| s.can_write(kind))
        .map(|s| &s.addr)
        .collect();
    let current = current.filter(|c| candidates.contains(c));
    if kind == ClusterKind::Galera {
        // Any healthy node will do; the current one as long as it stays healthy.
        return (current.or(candidates.first().copied()).cloned(), None);
    }
    match candidates.as_slice() {
        [] => (None, None),
        [one] => (Some((*one).clone()), None),
        many => {
            let names = many
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match current {
                Some(c) => (
                    Some(c.clone()),
                    Some(format!(
                        "split brain: {names} are all writable primaries (read_only = OFF, replicating from nobody); \
                         sessions keep writing to {c} only. Make every server but one read_only"
                    )),
                ),
                None => (
                    None,
                    Some(format!(
                        "split brain: {names} are all writable primaries (read_only = OFF, replicating from nobody) \
                         and none was the writer before; no writer until only one is. Make every server but one read_only"
                    )),
                ),
            }
        }
    }
}

/// One server's poll: on the kept connection, or a new one when there is none or it
/// failed. Returns the connection to keep (none after a failure) and the view.
async fn poll(
    addr: ServerAddr,
    conn: Option<Backend>,
    target: BackendTarget,
    bound: Duration,
    stats: Arc<Stats>,
    kind: ClusterKind,
) -> (Option<Backend>, ServerView) {
    let started = Instant::now();
    let attempt = async {
        if let Some(mut b) = conn {
            match read(&addr, &mut b, kind).await {
                Ok(v) => return Ok((b, v)),
                // The kept connection may have died (a restart, a KILL): a new one says
                // whether the server did.
                Err(e) if e.is_disconnect() => {}
                Err(e) => return Err(e),
            }
        }
        let left = bound.saturating_sub(started.elapsed());
        let mut b = Backend::connect(&target, &ConnectOptions::internal(left), stats).await?;
        let v = read(&addr, &mut b, kind).await?;
        Ok::<_, ProxyError>((b, v))
    };
    match tokio::time::timeout(bound, attempt).await {
        Ok(Ok((b, v))) => (Some(b), v),
        Ok(Err(e)) => (None, ServerView::down(addr, e.to_string())),
        Err(_) => (
            None,
            ServerView::down(addr, format!("no answer within {bound:?}")),
        ),
    }
}

/// The column of `Seconds_Behind_Master` in a `SHOW SLAVE STATUS` row.
const SECONDS_BEHIND_MASTER: usize = 32;

/// The queries of one poll (see the module docs).
async fn read(
    addr: &ServerAddr,
    b: &mut Backend,
    kind: ClusterKind,
) -> Result<ServerView, ProxyError> {
    let vars = b
        .simple("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'wsrep_on')")
        .await?;
    let var = |rows: &[Vec<Option<String>>], name: &str| -> Option<String> {
        rows.iter()
            .find(|r| r.first().and_then(|v| v.as_deref()) == Some(name))
            .and_then(|r| r.get(1).cloned().flatten())
    };
    // MariaDB says ON or OFF; 0 and 1 are MySQL's older spellings.
    let read_only = var(&vars, "read_only").map(|v| !matches!(v.as_str(), "OFF" | "0"));
    let wsrep = var(&vars, "wsrep_on").is_some_and(|v| v == "ON");
    let ro = match read_only {
        Some(true) => "read_only=ON",
        Some(false) => "read_only=OFF",
        None => "read_only unknown",
    };
    if wsrep && kind != ClusterKind::Replication {
        let status = b
            .simple(
                "SHOW GLOBAL STATUS WHERE Variable_name IN \
                 ('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status', 'wsrep_local_state_comment')",
            )
            .await?;
        let g = GaleraView {
            local_state: var(&status, "wsrep_local_state")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            ready: var(&status, "wsrep_ready").is_some_and(|v| v == "ON"),
            cluster_status: var(&status, "wsrep_cluster_status").unwrap_or_default(),
        };
        let evidence = format!(
            "{ro}, wsrep_local_state {} ({}), wsrep_ready {}, wsrep_cluster_status {}",
            g.local_state,
            var(&status, "wsrep_local_state_comment").unwrap_or_default(),
            if g.ready { "ON" } else { "OFF" },
            g.cluster_status
        );
        return Ok(ServerView {
            addr: addr.clone(),
            up: true,
            read_only,
            replica: None,
            lag: None,
            galera: Some(g),
            evidence,
        });
    }
    let (replica, lag, evidence) = match b.simple("SHOW SLAVE STATUS").await {
        Ok(rows) => match rows.first() {
            None => (Some(false), None, format!("{ro}, replicates from nobody")),
            Some(r) => {
                let col = |i: usize| r.get(i).cloned().flatten();
                let text = |i: usize| col(i).unwrap_or_default();
                // Master_Host, Master_Port, Slave_IO_Running, Slave_SQL_Running and
                // Seconds_Behind_Master: the same places in MariaDB's and MySQL's rows.
                let lag = col(SECONDS_BEHIND_MASTER).and_then(|v| v.parse::<u64>().ok());
                let behind = match lag {
                    Some(s) => format!("{s} s behind"),
                    None => "lag unknown".to_owned(),
                };
                (
                    Some(true),
                    lag,
                    format!(
                        "{ro}, replica of {}:{} (IO {}, SQL {}, {behind})",
                        text(1),
                        text(3),
                        text(10),
                        text(11)
                    ),
                )
            }
        },
        Err(ProxyError::Server(e)) => (
            None,
            None,
            format!("{ro}, replication state unreadable ({e}; grant SLAVE MONITOR to the backend account)"),
        ),
        Err(e) => return Err(e),
    };
    Ok(ServerView {
        addr: addr.clone(),
        up: true,
        read_only,
        replica,
        lag,
        galera: None,
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(port: u16, up: bool, read_only: bool, replica: bool) -> ServerView {
        ServerView {
            addr: ServerAddr {
                host: "127.0.0.1".into(),
                port,
            },
            up,
            read_only: up.then_some(read_only),
            replica: up.then_some(replica),
            lag: None,
            galera: None,
            evidence: String::new(),
        }
    }

    fn node(port: u16, state: u64) -> ServerView {
        ServerView {
            galera: Some(GaleraView {
                local_state: state,
                ready: true,
                cluster_status: "Primary".into(),
            }),
            replica: None,
            ..server(port, true, false, false)
        }
    }

    fn port(w: &(Option<ServerAddr>, Option<String>)) -> Option<u16> {
        w.0.as_ref().map(|a| a.port)
    }

    #[test]
    fn replication_writer_is_the_one_writable_primary() {
        let r = ClusterKind::Replication;
        let primary = server(1, true, false, false);
        let replica = server(2, true, true, true);
        assert_eq!(
            port(&choose(r, &[primary.clone(), replica.clone()], None)),
            Some(1)
        );
        // A planned switchover: the old primary read-only, the replica not promoted yet.
        let old = server(1, true, true, false);
        assert_eq!(
            port(&choose(r, &[old.clone(), replica.clone()], None)),
            None
        );
        // Promoted: writable and replicating from nobody.
        let new = server(2, true, false, false);
        assert_eq!(port(&choose(r, &[old, new.clone()], None)), Some(2));
        // A writable replica is still a replica.
        let writable_replica = server(2, true, false, true);
        assert_eq!(port(&choose(r, &[writable_replica], None)), None);
        // A crashed primary.
        assert_eq!(
            port(&choose(r, &[server(1, false, false, false), replica], None)),
            None
        );
        // Two writable primaries: the current one is kept, loudly; none when neither was.
        let both = [primary, new];
        let current = both[1].addr.clone();
        let kept = choose(r, &both, Some(&current));
        assert_eq!(port(&kept), Some(2));
        assert!(kept.1.unwrap().contains("split brain"));
        let none = choose(r, &both, None);
        assert_eq!(port(&none), None);
        assert!(none.1.is_some());
    }

    #[test]
    fn galera_writer_sticks_while_healthy() {
        let g = ClusterKind::Galera;
        let nodes = [node(1, 4), node(2, 4), node(3, 4)];
        assert_eq!(port(&choose(g, &nodes, None)), Some(1));
        let current = nodes[1].addr.clone();
        assert_eq!(port(&choose(g, &nodes, Some(&current))), Some(2));
        // Node 2 becomes a donor: another node takes over.
        let nodes = [node(1, 4), node(2, 2), node(3, 4)];
        assert_eq!(port(&choose(g, &nodes, Some(&current))), Some(1));
        let mut alone = node(1, 4);
        alone.galera.as_mut().unwrap().cluster_status = "non-Primary".into();
        assert_eq!(port(&choose(g, &[alone], None)), None);
    }

    #[test]
    fn roles_name_what_the_server_is() {
        assert_eq!(server(1, true, false, false).role(true), "writer");
        assert_eq!(server(1, true, true, true).role(false), "replica");
        assert_eq!(server(1, true, true, false).role(false), "read_only");
        assert_eq!(server(1, false, false, false).role(false), "down");
        assert_eq!(node(1, 4).role(false), "galera_synced");
        assert_eq!(node(1, 2).role(false), "galera_not_synced");
        for r in ["writer", "replica", "read_only", "down"] {
            assert!(ROLES.contains(&r));
        }
    }
}
