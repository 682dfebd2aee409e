//! Server connections shared between client sessions (multiplexing).
//!
//! A session holds a server connection only while it needs one: for a statement in
//! autocommit mode, for a whole transaction, or while something lives only in that
//! connection (see [`crate::frontend::session`] for what pins it). Between those it hands
//! the connection to this pool, keyed by what makes connections interchangeable — the
//! server, the account, and the protocol shape the client negotiated (capabilities and
//! character set) — and takes one back for its next statement.
//!
//! Which connection a session gets, best first:
//!
//! 1. [`Fit::Own`]: the one it used last, if nobody else used it since and the session's
//!    database and variables are still what it left there (a `COM_CHANGE_USER` changes
//!    them). Nothing to do:
//!    its prepared statements and variables are still there. With as many connections as
//!    busy clients, sessions keep their own and multiplexing costs nothing.
//! 2. [`Fit::SameState`]: one whose current database and session variables are the
//!    session's, holding fewer than [`SAME_STATE_MAX_PREPARED`] statements of single
//!    sessions (cursors, long data). Nothing to do either: the session's prepared
//!    statements are those the connection keeps by text ([`super::statements`]), prepared
//!    on it at the first execute of a text it lacks.
//! 3. [`Fit::Reset`]: any other, most recently used first (its pages are warm). The
//!    session resets it (`COM_RESET_CONNECTION`) and sets its own state on it.
//!
//! Among connections that fit alike, one opened on the session's own thread comes first
//! (see `ProxyConfig::session_threads`): its socket wakes that thread.
//!
//! **Invariants:** a connection in the pool has no reply pending, no transaction open and
//! nothing pinned (the session checks before putting it back); a connection found closed
//! or speaking unasked (the server's `wait_timeout`, a KILL, a restart) when taken is
//! dropped, never handed out; connections idle longer than the pool's limit (below the
//! server's `wait_timeout`) are closed politely by [`BackendPool::sweep`], so the server
//! never counts them as aborted. A connection that closed while it waited is counted where
//! a session finds it, under the cause its reconnection proves, as a session's own idle
//! backend would be.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::stats::Stats;

use super::conn::{Backend, IdleEvent};

/// What makes two server connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// `host:port` of the server.
    pub server: String,
    /// The account the connection is logged in as.
    pub user: String,
    /// The capabilities agreed with the server (reply shapes depend on them).
    pub capabilities: u32,
    /// MariaDB extended capabilities forwarded from the client.
    pub mariadb_capabilities: u32,
    /// The character set given at login.
    pub charset: u8,
    /// The account's privileges when the connection logged in (see
    /// [`Backend::grants`]): after a `REVOKE`, a `SET PASSWORD` or a change of roles, a
    /// session that logs in gets connections that logged in after it too, as a direct
    /// client would, never one that still holds what was taken away. Sessions already
    /// in keep what they had, as direct clients do.
    pub grants: u64,
}

/// The state a pooled connection carries from its last user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Its current database.
    pub database: Option<String>,
    /// The session variables its last user had changed, with their values.
    pub variables: BTreeMap<String, String>,
    /// Prepared statements living in it (its users', not closed since it opened or was
    /// last reset).
    pub prepared: usize,
}

/// A connection waiting in the pool.
#[derive(Debug)]
struct Idle {
    backend: Backend,
    /// The session that used it last.
    owner: u64,
    carried: Carried,
    since: Instant,
    /// What it said when the sweeper found it closed: kept for the session that takes it.
    dead: Option<IdleEvent>,
}

/// The state a session wants a shared connection in, borrowed from the session (a take
/// copies nothing).
#[derive(Debug, Clone, Copy)]
pub struct Wants<'a> {
    /// Its current database.
    pub database: Option<&'a str>,
    /// The session variables it changed.
    pub variables: &'a BTreeMap<String, String>,
}

/// What [`BackendPool::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// Nothing for this key.
    None,
    /// A live connection, and how it fits.
    Live(Backend, Fit),
    /// A connection that closed while it waited, what it said, and how long it waited.
    Dead(Backend, IdleEvent, Duration),
}

/// How well a connection taken from the pool fits the session that takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The session's own connection: nothing to do.
    Own,
    /// Another session's, in the same database with the same variables: nothing to do
    /// (statements it lacks are prepared at their first execute).
    SameState,
    /// Anything else: reset it, then set the session's state.
    Reset,
}

/// A session waiting for a backend slot; dropping it (the wait ended, or was cancelled)
/// stops the count.
#[derive(Debug)]
pub struct SlotWait<'a>(&'a BackendPool);

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        self.0.slot_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection handed over to a waiting session: the backend, its last user and what it
/// carries.
pub type Handover = (Backend, u64, Carried);

/// A session waiting for a connection of its key to be put back
/// ([`BackendPool::wait_for`]). Dropping it ends the wait, wherever that happens (the wait
/// was served, gave up, or its future was dropped): a connection handed over meanwhile and
/// not received goes back to the pool for the next session, never closed with the wait.
#[derive(Debug)]
pub struct HandoverWait<'a> {
    pool: &'a BackendPool,
    key: PoolKey,
    rx: oneshot::Receiver<Handover>,
}

impl HandoverWait<'_> {
    /// The next connection put back for this key. Cancel-safe: one handed over and not
    /// yet received is put back when the wait is dropped.
    pub async fn handed(&mut self) -> Option<Handover> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for HandoverWait<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok((backend, owner, carried)) = self.rx.try_recv() {
            self.pool.put(self.key.clone(), backend, owner, carried);
        }
    }
}

/// How a connection that `owner` used last, carrying `carried`, fits session `session`
/// that wants `wants`; `None` when it cannot serve it at all (it is in a database and the
/// session in none, which no statement can undo).
pub fn fit(owner: u64, carried: &Carried, session: u64, wants: Wants<'_>) -> Option<Fit> {
    let same =
        carried.database.as_deref() == wants.database && &carried.variables == wants.variables;
    if owner == session && same {
        Some(Fit::Own)
    } else if carried.database.is_some() && wants.database.is_none() {
        None
    } else if same && carried.prepared < SAME_STATE_MAX_PREPARED {
        Some(Fit::SameState)
    } else {
        Some(Fit::Reset)
    }
}

/// Closes `backend` politely (`COM_QUIT`) in a task of its own. Outside a runtime (a
/// [`HandoverWait`] dropped as the runtime shuts down) it is only dropped: the socket
/// closes and the slot frees all the same.
fn close_off_path(backend: Backend) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(backend.quit());
    }
}

/// How long a connection found closed waits for a session to take it and count its loss.
const DEAD_KEPT: Duration = Duration::from_secs(600);

/// A connection that holds this many prepared statements of single earlier users (not
/// those it shares by text, which [`super::statements`] bounds) is reset before another
/// session uses it, which releases them: they would otherwise pile up towards the
/// server's `max_prepared_stmt_count`.
pub const SAME_STATE_MAX_PREPARED: usize = 64;

/// Idle server connections by [`PoolKey`], and the sessions waiting for one.
#[derive(Debug)]
pub struct BackendPool {
    idle: Mutex<HashMap<PoolKey, VecDeque<Idle>>>,
    /// Sessions waiting for a connection of their key, oldest first: a connection put back
    /// goes to the first of them before the pool, so that no session starves while
    /// others take their own connection back between statements. Lock order: `waiters`
    /// before `idle`, never the other way.
    waiters: Mutex<HashMap<PoolKey, VecDeque<oneshot::Sender<Handover>>>>,
    /// Sessions waiting for a backend slot to open a new connection (a login): while
    /// there are any, a connection put back is closed to free its slot, so that logins
    /// are not starved by sessions that take connections back between statements.
    slot_waiters: AtomicUsize,
    /// Connections in the pool now (all keys): the `goneaway_proxy_pool_idle_connections`
    /// gauge.
    stats: Arc<Stats>,
}

impl BackendPool {
    /// An empty pool, counted in `stats`.
    pub fn new(stats: Arc<Stats>) -> BackendPool {
        BackendPool {
            idle: Mutex::default(),
            waiters: Mutex::default(),
            slot_waiters: AtomicUsize::new(0),
            stats,
        }
    }

    fn count(&self, delta: i64) {
        self.stats.pool_idle.fetch_add(delta, Ordering::Relaxed);
    }

    /// Connections waiting in the pool now.
    pub fn len(&self) -> usize {
        self.stats.pool_idle.load(Ordering::Relaxed).max(0) as usize
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts back a connection that `owner` used last and that carries `carried`: to the
    /// longest-waiting session of its key, or into the pool.
    pub fn put(&self, key: PoolKey, backend: Backend, owner: u64, carried: Carried) {
        if self.slot_waiters.load(Ordering::Acquire) > 0 {
            // Its slot serves a login better; closed politely, off the caller's path.
            close_off_path(backend);
            return;
        }
        let mut handover = (backend, owner, carried);
        // The waiters stay locked until the connection is in the pool: a session that
        // registers its wait ([`BackendPool::wait_for`]) then looks into the pool either
        // is handed this connection or finds it there, never neither (a session on another
        // thread would otherwise wait out `backend_slot_wait` beside an idle connection).
        let mut waiters = self.waiters.lock().unwrap();
        if let Some(queue) = waiters.get_mut(&key) {
            while let Some(waiter) = queue.pop_front() {
                match waiter.send(handover) {
                    Ok(()) => return,
                    // That session stopped waiting.
                    Err(back) => handover = back,
                }
            }
            waiters.remove(&key);
        }
        let (backend, owner, carried) = handover;
        let mut idle = self.idle.lock().unwrap();
        // Asked again under the pool's lock, which a login takes to evict after it counts
        // itself ([`BackendPool::wait_for_slot`]): it either is counted here or finds this
        // connection to evict.
        if self.slot_waiters.load(Ordering::Acquire) > 0 {
            drop(idle);
            drop(waiters);
            close_off_path(backend);
            return;
        }
        idle.entry(key).or_default().push_back(Idle {
            backend,
            owner,
            carried,
            since: Instant::now(),
            dead: None,
        });
        self.count(1);
        drop(idle);
        drop(waiters);
    }

    /// Takes the connection that fits session `session` best (see the module docs).
    /// `wants` is the session's database and variables. A connection found closed is
    /// returned as [`Taken::Dead`], with what it said: the caller counts the loss under
    /// its cause.
    pub fn take(&self, key: &PoolKey, session: u64, wants: Wants<'_>) -> Taken {
        let mut idle = self.idle.lock().unwrap();
        let Some(queue) = idle.get_mut(key) else {
            return Taken::None;
        };
        {
            // Best fit; among equals one opened on this thread (its socket wakes this
            // thread), then the most recently used (the back of the queue).
            let here = std::thread::current().id();
            let Some((index, fit, _)) = queue
                .iter()
                .enumerate()
                .rev()
                .filter_map(|(i, e)| {
                    Some((
                        i,
                        fit(e.owner, &e.carried, session, wants)?,
                        e.backend.home != here,
                    ))
                })
                .min_by_key(|(_, f, elsewhere)| {
                    let rank = match f {
                        Fit::Own => 0,
                        Fit::SameState => 1,
                        Fit::Reset => 2,
                    };
                    (rank, *elsewhere)
                })
            else {
                return Taken::None;
            };
            let mut entry = queue.remove(index).expect("index from the queue");
            self.count(-1);
            if let Some(ev) = entry.dead.take().or_else(|| entry.backend.idle_event_now()) {
                return Taken::Dead(entry.backend, ev, entry.since.elapsed());
            }
            Taken::Live(entry.backend, fit)
        }
    }

    /// Removes the connection idle longest (any key), to free its backend slot for
    /// another key; `None` when the pool is empty.
    pub fn evict_oldest(&self) -> Option<Backend> {
        let mut idle = self.idle.lock().unwrap();
        let key = idle
            .iter()
            .filter_map(|(k, q)| q.front().map(|e| (k, e.since)))
            .min_by_key(|(_, since)| *since)
            .map(|(k, _)| k.clone())?;
        let entry = idle.get_mut(&key)?.pop_front()?;
        self.count(-1);
        Some(entry.backend)
    }

    /// Removes the connections idle for `max_idle` (or half their `wait_timeout`) or
    /// longer, for the caller to close politely.
    pub fn sweep(&self, max_idle: Duration) -> Vec<Backend> {
        let mut idle = self.idle.lock().unwrap();
        let mut out = Vec::new();
        for queue in idle.values_mut() {
            let mut kept = VecDeque::with_capacity(queue.len());
            for mut e in queue.drain(..) {
                let expired = e.since.elapsed() >= max_idle.min(e.backend.wait_timeout / 2);
                if expired && e.dead.is_none() {
                    e.dead = e.backend.idle_event_now();
                }
                // One found closed stays (for DEAD_KEPT at most) for the next session to
                // take: its loss is explained and counted there, as that of a session's own
                // backend would be; a restart is then seen in the metrics even by sessions
                // that were idle through it.
                let keep = !expired || (e.dead.is_some() && e.since.elapsed() < DEAD_KEPT);
                if keep {
                    kept.push_back(e);
                } else {
                    out.push(e.backend);
                }
            }
            *queue = kept;
        }
        idle.retain(|_, q| !q.is_empty());
        self.count(-(out.len() as i64));
        out
    }

    /// Removes every connection (shutdown, or a backend change by a reload).
    pub fn drain(&self) -> Vec<Backend> {
        let mut idle = self.idle.lock().unwrap();
        let out: Vec<Backend> = idle
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|e| e.backend))
            .collect();
        self.count(-(out.len() as i64));
        out
    }

    /// Counts the caller as waiting for a slot while the guard lives (see
    /// [`BackendPool::slot_waiters`]). Evict ([`BackendPool::evict_oldest`]) after this,
    /// not before: a connection put back in between is then closed for the caller or
    /// found.
    pub fn wait_for_slot(&self) -> SlotWait<'_> {
        self.slot_waiters.fetch_add(1, Ordering::AcqRel);
        SlotWait(self)
    }

    /// Queues the caller for the next connection of `key` put back, until the returned
    /// guard is dropped. Look into the pool ([`BackendPool::take`]) after this, not
    /// before: a connection put back in between is then handed over or found.
    pub fn wait_for(&self, key: &PoolKey) -> HandoverWait<'_> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap();
        let queue = waiters.entry(key.clone()).or_default();
        // Waits that ended without a connection put back (a slot came free, the wait
        // timed out) leave their closed senders behind: dropped here, so that the queue
        // holds no more than the sessions waiting now even when nothing is put back.
        queue.retain(|w| !w.is_closed());
        queue.push_back(tx);
        HandoverWait {
            pool: self,
            key: key.clone(),
            rx,
        }
    }
}
