//! Where a session's backend goes in front of a cluster: to the writer the monitor names
//! ([`crate::monitor`]). The session calls these at three narrow points:
//!
//! - before it opens a backend ([`aim`]): the target becomes the writer, and while the
//!   cluster has none (a switchover, a failover before the promotion) the session waits
//!   for one, up to `switchover_wait`, instead of failing;
//! - before each command ([`writer_moved`]): when the writer changed, the backend on the
//!   old one is given up at the next command that can move, the path a reload's backend
//!   change takes (`Session::follow_backend_move`), and the state is restored on the new
//!   writer;
//! - when a server refuses a statement with 1290 `--read-only` ([`refused_by_old_writer`]):
//!   the refusal proves the statement ran nowhere, so when the monitor, asked again after
//!   the refusal, no longer names that server the writer, the statement waits for the new
//!   writer and runs there; the client never sees the 1290 of a switchover. A server that
//!   is still the writer (or a single server) keeps answering 1290, as it does directly.
//!
//! A backend lost with a crashed writer is replaced by the session's usual replay and
//! retry rules; [`aim`] only decides where the replacement goes.
//!
//! With `replica_reads`, a fourth point: before a read that may run anywhere, the session
//! asks [`replica_for_read`] for a replica that is fresh enough (see
//! [`crate::config::ProxyConfig::replica_reads`] for the consistency rule); with none, the
//! read goes to the writer like every other statement.

use std::time::{Duration, Instant};

use crate::config::{BackendTarget, ServerAddr};
use crate::net::ErrInfo;
use crate::server::Shared;
use crate::ProxyError;

/// Points `target` at the cluster's writer, waiting until `deadline` while it has none.
/// `Ok(true)` when the target now names another server than before (the session then
/// forgets what named connections of the old one). A single server: `Ok(false)` at once.
/// Cancel-safe: it only reads the monitor's verdicts.
pub(crate) async fn aim(
    shared: &Shared,
    target: &mut BackendTarget,
    deadline: Instant,
) -> Result<bool, ProxyError> {
    let monitor = &shared.monitor;
    if !monitor.is_cluster() {
        return Ok(false);
    }
    let started = Instant::now();
    let mut rx = monitor.subscribe();
    let mut waited = false;
    loop {
        let view = rx.borrow_and_update().clone();
        if let Some(w) = &view.writer {
            if waited {
                shared.stats.switchover_wait(started.elapsed());
                tracing::debug!(writer = %w, waited = ?started.elapsed(), "a backend waited for the cluster's writer");
            }
            if w.is(target) {
                return Ok(false);
            }
            target.host.clone_from(&w.host);
            target.port = w.port;
            return Ok(true);
        }
        waited = true;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            let view = monitor.view();
            let waited = started.elapsed();
            shared.stats.switchover_wait(waited);
            return Err(ProxyError::NoWriter(format!(
                "no server of the cluster ({}) is the writer after {:.1} s of waiting (switchover_wait = {:?}): {}",
                view.kind.as_str(),
                waited.as_secs_f64(),
                shared.current().config.switchover_wait,
                view.describe()
            )));
        }
    }
}

/// Whether the cluster's writer is now another server than `target` (the server the
/// session's backend is on). `false` while there is no writer: a backend on the old one
/// still serves reads, and moving would only wait.
pub(crate) fn writer_moved(shared: &Shared, target: &BackendTarget) -> bool {
    shared.monitor.is_cluster()
        && shared
            .monitor
            .view()
            .writer
            .as_ref()
            .is_some_and(|w| !w.is(target))
}

/// A statement refused with `err` by the server `target` names: whether it is the 1290
/// `--read-only` of a server that is no longer the writer, so that the statement, which
/// ran nowhere, goes to the new writer instead. The monitor is asked for a round that
/// began after the refusal, so a switchover it had not seen yet counts too.
pub(crate) async fn refused_by_old_writer(
    shared: &Shared,
    target: &BackendTarget,
    err: &ErrInfo,
) -> bool {
    use goneaway_core::codes::ER_OPTION_PREVENTS_STATEMENT;
    if err.code != ER_OPTION_PREVENTS_STATEMENT
        || !err.message.contains("read-only")
        || !shared.monitor.is_cluster()
    {
        return false;
    }
    let bound = shared.current().config.connect_timeout;
    let view = shared.monitor.fresh_view(bound).await;
    let moved = !view.writer.as_ref().is_some_and(|w| w.is(target));
    if moved {
        shared
            .stats
            .read_only_redirects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            server = %target.addr(),
            writer = ?view.writer.as_ref().map(ToString::to_string),
            "a statement refused as read-only by the old writer goes to the new one"
        );
    }
    moved
}

/// A replica a read may run on, as far as the monitor can tell: up, replicating (both
/// threads running, so its lag is known), at most `max_lag` behind, and not the writer.
/// `turn` picks among several (the session's count of its reads, from a start of its own:
/// reads spread over the replicas). `None` in front of a single server, a Galera cluster,
/// while there is no writer, or when no replica qualifies. Whether the replica has
/// applied the session's own last write the session asks the replica itself.
pub(crate) fn replica_for_read(
    shared: &Shared,
    max_lag: Duration,
    turn: usize,
) -> Option<ServerAddr> {
    if !shared.monitor.is_cluster() {
        return None;
    }
    let view = shared.monitor.view();
    let writer = view.writer.as_ref()?;
    let fresh: Vec<&ServerAddr> = view
        .servers
        .iter()
        .filter(|s| {
            s.up && s.replica == Some(true)
                && &s.addr != writer
                && s.lag.is_some_and(|lag| lag <= max_lag.as_secs())
        })
        .map(|s| &s.addr)
        .collect();
    (!fresh.is_empty()).then(|| fresh[turn % fresh.len()].clone())
}
