//! The relay: its configuration, the handle callers hold, the listener, and the fault switchboard the flows watch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};

use crate::fault::FaultSet;
use crate::flow::{self, FlowCmd, FlowHandle};
use crate::{Error, Fault, FaultKind, FlowState, FlowStatus, Status};

/// How long a new flow waits for the upstream's TCP handshake. A real MySQL client's
/// `connect_timeout` is of the same order; the relay should not be the one to give up first.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Relay::shutdown`] waits for flows to close before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Pause after a failed `accept` (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How to start a [`Relay`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where clients connect: `127.0.0.1:0` picks a free port (read it back with
    /// [`Relay::local_addr`]).
    listen: String,
    /// The MySQL/MariaDB server, `host:port`. Resolved again for every flow, so a name
    /// that moves (a container restart) is followed.
    upstream: String,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    connect_timeout: Duration,
    /// Faults armed from the first connection on (the CLI's `--fault` flags).
    faults: Vec<Fault>,
    /// The sequence id of the 4031 packet: 0, as mysqld sends it, unless changed.
    sequence_id_4031: u8,
}

impl RelayConfig {
    /// Listen on `listen` and relay to `upstream`; both are `host:port` (a `SocketAddr`
    /// works too).
    pub fn new(listen: impl ToString, upstream: impl ToString) -> Self {
        RelayConfig {
            listen: listen.to_string(),
            upstream: upstream.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            faults: Vec::new(),
            sequence_id_4031: crate::mysql::INTERACTION_TIMEOUT_SEQUENCE_ID,
        }
    }

    /// How long a new flow waits to connect to the upstream before closing the client
    /// (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The sequence id of the 4031 packet. The default, 0, is what mysqld sends, and how
    /// clients react to it differs (see [`mysql`](crate::mysql)): libmysqlclient 8.0.24+
    /// reports 4031, `mysql_async` reports "Packets out of sync". 1 makes every client
    /// that has just sent a command read it as its reply and report 4031 — useful to
    /// test a client's handling of the error itself, but not what a server does.
    pub fn sequence_id_4031(mut self, sequence_id: u8) -> Self {
        self.sequence_id_4031 = sequence_id;
        self
    }

    /// Arms `fault` from the start, as if [`Relay::set`] were called before the first
    /// connection.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }
}

/// A running relay: a cheap-to-clone handle.
///
/// The relay runs on the Tokio runtime it was started on. It stops — stops accepting and
/// closes every flow — on [`Relay::shutdown`], or when the last handle is dropped.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

/// Owned by the handles only, never by the tasks, so dropping the last handle is what
/// tells the tasks to stop.
struct Inner {
    shared: Arc<Shared>,
    /// The accept loop, awaited by the first [`Relay::shutdown`].
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// The state the accept loop, the flows and the control interface share.
pub(crate) struct Shared {
    pub(crate) local_addr: SocketAddr,
    pub(crate) upstream: String,
    pub(crate) connect_timeout: Duration,
    /// See [`RelayConfig::sequence_id_4031`].
    pub(crate) sequence_id_4031: u8,
    /// The armed faults. A `watch` channel so that flows waiting on an idle deadline
    /// wake when the faults change.
    pub(crate) faults: watch::Sender<FaultSet>,
    /// The open flows. Also the lock that orders fault changes against flow
    /// registration, so a flow opening while `reset-after` is armed counts its bytes
    /// from exactly one baseline.
    flows: Mutex<HashMap<u64, Arc<FlowHandle>>>,
    next_flow_id: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// `true` once the relay is stopping; every task watches it.
    pub(crate) shutdown: watch::Sender<bool>,
}

/// Locks a mutex even if a panicking thread poisoned it: the data here (a map of
/// handles) stays consistent whatever a panic interrupted.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relay {
    /// Binds the listener and starts relaying. The upstream is not contacted until a
    /// client connects, so the relay can start before the server does.
    pub async fn start(config: RelayConfig) -> Result<Relay, Error> {
        let listener = TcpListener::bind(config.listen.as_str())
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        let local_addr = listener.local_addr()?;
        let mut faults = FaultSet::default();
        for fault in &config.faults {
            faults.insert(*fault);
        }
        let shared = Arc::new(Shared {
            local_addr,
            upstream: config.upstream,
            connect_timeout: config.connect_timeout,
            sequence_id_4031: config.sequence_id_4031,
            faults: watch::Sender::new(faults),
            flows: Mutex::new(HashMap::new()),
            next_flow_id: AtomicU64::new(1),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
        });
        info!(listen = %local_addr, upstream = %shared.upstream, faults = ?config.faults, "relay started");
        let accept_task = tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(Relay {
            inner: Arc::new(Inner {
                shared,
                accept_task: Mutex::new(Some(accept_task)),
            }),
        })
    }

    /// The address clients should connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.shared.local_addr
    }

    /// The upstream address, as configured.
    pub fn upstream(&self) -> &str {
        &self.inner.shared.upstream
    }

    /// Arms `fault`, replacing any fault of the same kind. Takes effect at once: idle
    /// faults re-check every flow, `reset-after` starts counting on every open flow.
    pub fn set(&self, fault: Fault) {
        self.inner.shared.set(fault);
    }

    /// Disarms the fault of `kind`; returns whether one was armed.
    pub fn remove(&self, kind: FaultKind) -> bool {
        self.inner.shared.remove(kind)
    }

    /// Disarms every fault. Flows already blackholed stay blackholed.
    pub fn clear(&self) {
        self.inner.shared.clear();
    }

    /// The armed faults, in [`FaultKind::ALL`] order.
    pub fn faults(&self) -> Vec<Fault> {
        self.inner.shared.faults.borrow().to_vec()
    }

    /// Resets (TCP RST, both sides) every open flow now, blackholed ones included.
    /// Returns how many flows were told to reset; each does within microseconds.
    pub fn reset_all(&self) -> usize {
        self.inner.shared.reset_all()
    }

    /// Sends the MySQL 4031 inactivity error to every forwarding flow now and closes
    /// them, whether idle or not. Returns how many flows were told to.
    pub fn inject_4031_all(&self) -> usize {
        self.inner.shared.inject_4031_all()
    }

    /// Blackholes every forwarding flow now, whether idle or not, as a firewall or NAT
    /// gateway that lost its state table does: a statement in flight gets no reply, ever,
    /// and nothing is closed. New flows are untouched. Returns how many flows were told to.
    pub fn blackhole_all(&self) -> usize {
        self.inner.shared.blackhole_all()
    }

    /// A snapshot of the flows and the armed faults.
    pub fn status(&self) -> Status {
        self.inner.shared.status()
    }

    /// Stops accepting, closes every flow (FIN to both sides) and waits for them, at
    /// most a couple of seconds. Other handles see a stopped relay afterwards.
    pub async fn shutdown(&self) {
        self.inner.shared.shutdown.send_replace(true);
        let task = lock(&self.inner.accept_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("listen", &self.inner.shared.local_addr)
            .field("upstream", &self.inner.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn set(&self, fault: Fault) {
        let flows = lock(&self.flows);
        self.faults.send_modify(|faults| faults.insert(fault));
        if let Fault::ResetAfterBytes(limit) = fault {
            for flow in flows.values() {
                flow.arm_cut(limit);
            }
        }
        info!(%fault, "fault set");
    }

    pub(crate) fn remove(&self, kind: FaultKind) -> bool {
        let flows = lock(&self.flows);
        let mut was_set = false;
        self.faults.send_if_modified(|faults| {
            was_set = faults.remove(kind);
            was_set
        });
        if kind == FaultKind::ResetAfterBytes {
            for flow in flows.values() {
                flow.disarm_cut();
            }
        }
        if was_set {
            info!(%kind, "fault removed");
        }
        was_set
    }

    pub(crate) fn clear(&self) {
        let flows = lock(&self.flows);
        self.faults.send_replace(FaultSet::default());
        for flow in flows.values() {
            flow.disarm_cut();
        }
        info!("faults cleared");
    }

    pub(crate) fn latency(&self) -> Duration {
        self.faults.borrow().latency.unwrap_or_default()
    }

    pub(crate) fn reset_all(&self) -> usize {
        let flows = lock(&self.flows);
        let count = flows
            .values()
            .filter(|flow| flow.state() != FlowState::Closing)
            .filter(|flow| flow.command(FlowCmd::Reset))
            .count();
        info!(flows = count, "resetting all flows");
        count
    }

    pub(crate) fn inject_4031_all(&self) -> usize {
        let flows = lock(&self.flows);
        let count = flows
            .values()
            .filter(|flow| flow.state() == FlowState::Forwarding)
            .filter(|flow| flow.command(FlowCmd::Inject4031))
            .count();
        info!(flows = count, "sending 4031 to all flows");
        count
    }

    pub(crate) fn blackhole_all(&self) -> usize {
        let flows = lock(&self.flows);
        let count = flows
            .values()
            .filter(|flow| flow.state() == FlowState::Forwarding)
            .filter(|flow| flow.command(FlowCmd::Blackhole))
            .count();
        info!(flows = count, "blackholing all flows");
        count
    }

    pub(crate) fn status(&self) -> Status {
        let mut flows: Vec<FlowStatus> = lock(&self.flows).values().map(|f| f.status()).collect();
        flows.sort_by_key(|f| f.id);
        Status {
            listen: self.local_addr,
            upstream: self.upstream.clone(),
            flow_count: flows.len(),
            accepted_total: self.accepted.load(Ordering::Relaxed),
            refused_total: self.refused.load(Ordering::Relaxed),
            faults: self.faults.borrow().to_vec(),
            flows,
        }
    }

    /// Adds a flow to the registry, its `reset-after` baseline taken under the same
    /// lock [`Shared::set`] holds.
    pub(crate) fn register(
        &self,
        client: SocketAddr,
        state: FlowState,
        commands: mpsc::UnboundedSender<FlowCmd>,
    ) -> Arc<FlowHandle> {
        let mut flows = lock(&self.flows);
        let id = self.next_flow_id.fetch_add(1, Ordering::Relaxed);
        let flow = Arc::new(FlowHandle::new(id, client, state, commands));
        if let Some(limit) = self.faults.borrow().reset_after {
            flow.arm_cut(limit);
        }
        flows.insert(id, flow.clone());
        flow
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.flows).remove(&id);
    }
}

/// Accepts clients until shutdown, then waits (bounded) for the flows to close.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut flows = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            // Reap finished flows so the set does not grow with the relay's lifetime.
            Some(_) = flows.join_next(), if !flows.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    let (refuse, blackhole) = {
                        let faults = shared.faults.borrow();
                        (faults.refuse_new, faults.blackhole_new)
                    };
                    if refuse {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                        info!(client = %peer, "fault: refusing new connection (reset)");
                        flow::reset(socket);
                        continue;
                    }
                    // MySQL traffic is small request/reply packets: don't let Nagle
                    // add delays the fault did not ask for.
                    let _ = socket.set_nodelay(true);
                    flows.spawn(flow::run(shared.clone(), socket, peer, blackhole));
                }
                Err(error) => {
                    warn!(%error, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // Closing the listener first makes new connections fail at once (refused by the
    // kernel) while the open flows wind down.
    drop(listener);
    let open = flows.len();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while flows.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            flows = flows.len(),
            "flows did not close in time; abandoning them"
        );
        flows.abort_all();
    }
    info!(listen = %shared.local_addr, closed_flows = open, "relay stopped");
}

/// Waits until `signal` turns `true` (or its sender is gone, which means the same).
/// Returns nothing, so no lock guard is held across the caller's next `.await`.
pub(crate) async fn stopped(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

/// Milliseconds in `d`, saturating, for status reports.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
