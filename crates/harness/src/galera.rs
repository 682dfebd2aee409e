//! A real Galera cluster of throwaway MariaDB nodes on 127.0.0.1: form, kill, stop, rejoin.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::join::join_all;
use mysql_async::prelude::Queryable;

use crate::server::free_ports;
use crate::{HarnessError, Server, ServerBuilder};

/// Where Debian's `galera-4` package installs the provider.
pub const GALERA_PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// How long a cluster may take to form. Three nodes on a two-core machine form in about
/// 10 s (two rsync state transfers, one after the other); the bound leaves room for a
/// loaded CI machine.
const DEFAULT_FORM_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the survivors may take to see a member gone. Galera suspects a silent member
/// after `evs.suspect_timeout` (3 s here, see [`GaleraBuilder::default`]) and evicts it
/// when all agree.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Chooses the size and the server variables of a [`Galera`] cluster, then forms it.
#[derive(Debug, Clone)]
pub struct GaleraBuilder {
    /// How many nodes (at least 1; 3 by default, the smallest cluster that keeps quorum when
    /// one node is lost).
    nodes: usize,
    /// Server variables for every node, on top of the harness's defaults and the wsrep
    /// settings the cluster needs.
    vars: Vec<(String, String)>,
    /// Extra `wsrep_provider_options`, appended to the harness's (later ones win).
    provider_options: Vec<String>,
    /// See [`DEFAULT_FORM_TIMEOUT`].
    form_timeout: Duration,
}

impl Default for GaleraBuilder {
    fn default() -> Self {
        GaleraBuilder {
            nodes: 3,
            vars: Vec::new(),
            provider_options: vec![
                // A small write-set cache: enough for a rejoin by IST after the writes a
                // test makes, without 128 MiB of preallocated file per node.
                "gcache.size=16M".into(),
                // A killed member is suspected after 3 s of silence instead of 5 s: tests
                // that kill a node wait less. Loopback has no packet loss to mistake for
                // death; 3 s is still far above a loaded machine's scheduling delays.
                "evs.suspect_timeout=PT3S".into(),
                "evs.inactive_timeout=PT10S".into(),
            ],
            form_timeout: DEFAULT_FORM_TIMEOUT,
        }
    }
}

impl GaleraBuilder {
    /// The number of nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes.max(1);
        self
    }

    /// Sets a server variable on every node.
    pub fn var(mut self, name: &str, value: impl Display) -> Self {
        let name = name.replace('-', "_");
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value.to_string()));
        self
    }

    /// Adds a Galera provider option (`name=value`, such as `gcs.fc_limit=16`).
    pub fn provider_option(mut self, option: &str) -> Self {
        self.provider_options.push(option.to_string());
        self
    }

    /// How long forming the cluster may take (default 120 s).
    pub fn form_timeout(mut self, timeout: Duration) -> Self {
        self.form_timeout = timeout;
        self
    }

    /// Starts the nodes and waits until every one is Synced in a primary component of all of
    /// them and the application account logs in on each.
    pub async fn start(self) -> Result<Galera, HarnessError> {
        let provider = provider()?;
        if crate::binaries::find_command("rsync").is_none() {
            return Err(HarnessError::GaleraNotFound {
                missing: "rsync (the state transfer between nodes)".into(),
            });
        }
        // Galera's ports are probed free, then bound by mariadbd a moment later: another
        // test may take one in between. A clash shows in a node's log; form again on fresh
        // ports.
        let mut last_error = None;
        for _ in 0..3 {
            match self.try_start(&provider).await {
                Ok(cluster) => return Ok(cluster),
                Err((e, clash)) if clash => last_error = Some(e),
                Err((e, _)) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    async fn try_start(&self, provider: &Path) -> Result<Galera, (HarnessError, bool)> {
        let started = Instant::now();
        let n = self.nodes;
        let ports = free_ports(4 * n).map_err(|e| (e, false))?;
        let (client, rest) = ports.split_at(n);
        let (gcomm, rest) = rest.split_at(n);
        let (ist, sst) = rest.split_at(n);
        let address = format!(
            "gcomm://{}",
            gcomm
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mut options = vec![
                format!("base_port={}", gcomm[i]),
                format!("gmcast.listen_addr=tcp://127.0.0.1:{}", gcomm[i]),
                format!("ist.recv_addr=127.0.0.1:{}", ist[i]),
            ];
            options.extend(self.provider_options.iter().cloned());
            let mut b = ServerBuilder::default()
                .port(client[i])
                .open_to_all()
                .var("wsrep_on", "ON")
                .var("wsrep_provider", provider.display())
                .var("wsrep_cluster_name", "goneaway")
                .var("wsrep_cluster_address", &address)
                .var("wsrep_provider_options", options.join(";"))
                .var("wsrep_node_name", format!("node{}", i + 1))
                .var("wsrep_node_address", format!("127.0.0.1:{}", gcomm[i]))
                .var(
                    "wsrep_node_incoming_address",
                    format!("127.0.0.1:{}", client[i]),
                )
                .var("wsrep_sst_receive_address", format!("127.0.0.1:{}", sst[i]))
                // rsync: the fastest state transfer for a data directory of a few MiB, and
                // the only one needing no extra package beyond rsync itself.
                .var("wsrep_sst_method", "rsync")
                .var("binlog_format", "ROW")
                .var("innodb_autoinc_lock_mode", 2)
                .var("default_storage_engine", "InnoDB");
            for (name, value) in &self.vars {
                b = b.var(name, value);
            }
            if i == 0 {
                // The first node creates the cluster; the others receive its data.
                b = b.var("wsrep_new_cluster", "ON");
            } else {
                b = b.empty_data();
            }
            nodes.push(b.create().await.map_err(|e| (e, false))?);
        }
        let cluster = Galera {
            nodes,
            address,
            timeout: self.form_timeout,
        };
        let clash = |cluster: &Galera| cluster.nodes.iter().any(Server::port_was_taken);
        if let Err(e) = cluster.nodes[0].start().await {
            let c = clash(&cluster);
            return Err((e, c));
        }
        // Every later start of the first node (a rejoin) joins the cluster it made.
        cluster.nodes[0].remove_var("wsrep_new_cluster");
        let joiners = join_all(cluster.nodes[1..].iter().map(Server::start)).await;
        if let Some(e) = joiners.into_iter().find_map(Result::err) {
            let c = clash(&cluster);
            return Err((e, c));
        }
        // The application account and database, made once and replicated to every node.
        cluster.nodes[0].bootstrap().await.map_err(|e| (e, false))?;
        let all: Vec<usize> = (0..n).collect();
        cluster
            .wait_synced(&all, n, self.form_timeout)
            .await
            .map_err(|e| {
                let c = clash(&cluster);
                (e, c)
            })?;
        tracing::debug!(nodes = n, elapsed = ?started.elapsed(), "Galera cluster formed");
        Ok(cluster)
    }
}

/// What a node's `wsrep_%` status says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WsrepStatus {
    /// `wsrep_cluster_size`: members of the component this node is in.
    pub cluster_size: u64,
    /// `wsrep_cluster_status`: `Primary`, `non-Primary` or `Disconnected`.
    pub cluster_status: String,
    /// `wsrep_ready`: whether the node accepts queries.
    pub ready: bool,
    /// `wsrep_local_state`: 1 joining, 2 donor, 3 joined, 4 synced.
    pub local_state: u64,
    /// `wsrep_local_state_comment`, such as `Synced`.
    pub local_state_comment: String,
    /// Every `wsrep_%` status variable.
    pub all: BTreeMap<String, String>,
}

impl WsrepStatus {
    /// Synced, ready, in a primary component of `size` members.
    pub fn is_synced_in(&self, size: u64) -> bool {
        self.ready
            && self.local_state == 4
            && self.cluster_status == "Primary"
            && self.cluster_size == size
    }
}

/// A running Galera cluster of throwaway nodes on 127.0.0.1, each a [`Server`] (the same
/// invariants: killed on drop, killed with the test process, ready only after real logins).
///
/// Node `i` is `node(i)`; its client port, Galera port, IST port and state-transfer port
/// are distinct and fixed for the cluster's life, so clients reconnect to a rejoined node
/// at the same address.
#[derive(Debug)]
pub struct Galera {
    nodes: Vec<Server>,
    /// `wsrep_cluster_address`, listing every node.
    address: String,
    /// The bound for a rejoin (the same as for forming).
    timeout: Duration,
}

impl Galera {
    /// Chooses the cluster's size and variables.
    pub fn builder() -> GaleraBuilder {
        GaleraBuilder::default()
    }

    /// Forms a cluster of three nodes with the default variables.
    pub async fn start() -> Result<Galera, HarnessError> {
        GaleraBuilder::default().start().await
    }

    /// Node `i` (0-based; node 0 formed the cluster).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    /// Every node.
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// The number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `wsrep_cluster_address` as every node has it: `gcomm://127.0.0.1:p1,…`.
    pub fn cluster_address(&self) -> &str {
        &self.address
    }

    /// Node `i`'s wsrep status, read as root.
    pub async fn status(&self, i: usize) -> Result<WsrepStatus, HarnessError> {
        let node = self.get(i)?;
        let mut conn = node.admin_conn().await?;
        let rows: Vec<(String, String)> = conn.query("SHOW GLOBAL STATUS LIKE 'wsrep_%'").await?;
        conn.disconnect().await?;
        let all: BTreeMap<String, String> = rows.into_iter().collect();
        let num = |k: &str| all.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(WsrepStatus {
            cluster_size: num("wsrep_cluster_size"),
            cluster_status: all.get("wsrep_cluster_status").cloned().unwrap_or_default(),
            ready: all.get("wsrep_ready").is_some_and(|v| v == "ON"),
            local_state: num("wsrep_local_state"),
            local_state_comment: all
                .get("wsrep_local_state_comment")
                .cloned()
                .unwrap_or_default(),
            all,
        })
    }

    /// Kills node `i` with SIGKILL (a crash, the OOM killer) and waits until every other
    /// running node sees the cluster without it.
    pub async fn kill(&self, i: usize) -> Result<(), HarnessError> {
        self.get(i)?.crash().await?;
        self.wait_departed().await
    }

    /// Shuts node `i` down gracefully (it says goodbye to the cluster) and waits until every
    /// other running node sees the cluster without it.
    pub async fn stop(&self, i: usize) -> Result<(), HarnessError> {
        self.get(i)?.stop().await?;
        self.wait_departed().await
    }

    /// Starts node `i` again and waits until it is Synced and every running node sees it.
    ///
    /// After [`Galera::stop`] the node keeps its data and catches up by incremental state
    /// transfer (IST). After [`Galera::kill`] its position is unknown (`seqno: -1` in
    /// `grastate.dat`), so, as a real crashed node would, it receives a full state transfer
    /// (rsync): the harness empties its data directory first. At least one other node must
    /// be running.
    pub async fn rejoin(&self, i: usize) -> Result<(), HarnessError> {
        let node = self.get(i)?;
        if node.is_running() {
            return Ok(());
        }
        if !self.nodes.iter().any(Server::is_running) {
            return Err(HarnessError::Cluster {
                what: "a rejoin needs a running node to join".into(),
                seconds: 0,
                seen: "every node is down".into(),
            });
        }
        if !position_known(&node.data_dir()) {
            node.wipe_data()?;
        }
        node.start().await?;
        let running = self.running();
        self.wait_synced(&running, running.len(), self.timeout)
            .await
    }

    /// The indexes of the nodes whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_running())
            .collect()
    }

    /// Waits until every running node is Synced in a primary component of exactly the
    /// running nodes.
    pub async fn wait_departed(&self) -> Result<(), HarnessError> {
        let running = self.running();
        self.wait_synced(&running, running.len(), LEAVE_TIMEOUT)
            .await
    }

    /// Waits until each of `nodes` is Synced and ready in a primary component of `size`
    /// members, and the application account logs in on it.
    pub async fn wait_synced(
        &self,
        nodes: &[usize],
        size: usize,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let started = Instant::now();
        let mut seen;
        loop {
            let mut all = true;
            let mut parts = Vec::new();
            for &i in nodes {
                match self.status(i).await {
                    Ok(s) if s.is_synced_in(size as u64) => {
                        // A real login of the account tests use, as for a single server.
                        if let Err(e) = app_login(&self.nodes[i]).await {
                            all = false;
                            parts.push(format!("node {i}: application login failed: {e}"));
                        }
                    }
                    Ok(s) => {
                        all = false;
                        parts.push(format!(
                            "node {i}: size {} {} ready={} state {} ({})",
                            s.cluster_size,
                            s.cluster_status,
                            s.ready,
                            s.local_state,
                            s.local_state_comment
                        ));
                    }
                    Err(e) => {
                        all = false;
                        parts.push(format!("node {i}: {e}"));
                    }
                }
            }
            if all {
                return Ok(());
            }
            seen = parts.join("; ");
            if started.elapsed() > timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let tails: Vec<String> = nodes
            .iter()
            .map(|&i| {
                format!(
                    "\n--- node {i} error log {}:\n{}",
                    self.nodes[i].error_log().display(),
                    tail(&self.nodes[i].error_log_text(), 12)
                )
            })
            .collect();
        Err(HarnessError::Cluster {
            what: format!(
                "the Galera nodes {nodes:?} were not all Synced in a primary component of {size}"
            ),
            seconds: started.elapsed().as_secs(),
            seen: format!("{seen}{}", tails.concat()),
        })
    }

    fn get(&self, i: usize) -> Result<&Server, HarnessError> {
        self.nodes.get(i).ok_or(HarnessError::NoMember {
            index: i,
            len: self.nodes.len(),
        })
    }
}

/// Whether a stopped node's `grastate.dat` records its position (a clean shutdown), so that
/// it can rejoin by IST.
fn position_known(data: &Path) -> bool {
    std::fs::read_to_string(data.join("grastate.dat")).is_ok_and(|text| {
        text.lines().any(|l| {
            l.strip_prefix("seqno:")
                .map(str::trim)
                .and_then(|s| s.parse::<i64>().ok())
                .is_some_and(|s| s >= 0)
        })
    })
}

async fn app_login(server: &Server) -> Result<(), mysql_async::Error> {
    let opts = mysql_async::Opts::from_url(&server.url()).expect("the harness builds a valid URL");
    let mut conn = mysql_async::Conn::new(opts).await?;
    conn.query_drop("SELECT 1").await?;
    conn.disconnect().await
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The Galera provider: `GONEAWAY_GALERA_PROVIDER`, else Debian's path.
fn provider() -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os("GONEAWAY_GALERA_PROVIDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(GALERA_PROVIDER));
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::GaleraNotFound {
            missing: format!("the Galera provider {}", path.display()),
        })
    }
}
