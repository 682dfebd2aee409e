//! Telling a long statement from a reply that will never come.
//!
//! A backend connection can die without a reset or an end of stream: a firewall or NAT
//! gateway that lost its state table (or a partition) swallows the request or the reply
//! and closes nothing, and the kernel's retransmission timeout, if it ever fires, takes
//! a quarter of an hour. Reading harder cannot tell that from a statement that simply
//! runs long, so when a reply stays silent for [`StallWatch::every`] the proxy asks the
//! server itself, on a second connection, what the connection's thread is doing
//! (`information_schema.PROCESSLIST`, with MariaDB's millisecond `TIME_MS`):
//!
//! - **running** (any command but `Sleep`): a long statement or a lock wait; keep waiting,
//!   and look again after the same silence;
//! - **idle for longer than the request has been out**: the server never received the
//!   statement, so it did not run — a write may be sent again
//!   ([`Stalled::not_run`]). The proof: had it arrived, the thread would have become
//!   idle after it was sent;
//! - **idle since after the request was sent**, twice in a row with a short pause (a
//!   reply just written may still be on its way): the statement ran and its reply is
//!   lost;
//! - **gone**: the server ended the connection and the end never arrived either.
//!
//! In the last three cases the thread is killed (so a sleeping transaction releases its
//! locks and nothing of it can commit later) and the read fails with
//! [`ProxyError::Stalled`], which the session treats as any lost connection (replay,
//! commit resolution). When the server cannot be reached on a new connection either, the
//! read keeps waiting up to [`StallWatch::give_up`] from the first failed look, then fails
//! the same way with the outcome unknown.
//!
//! A result too large for the socket buffers stalls with the thread still writing it
//! (`Query`): that case ends when the server's own `net_write_timeout` closes the
//! connection and its thread disappears.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::BackendTarget;
use crate::error::ProxyError;
use crate::stats::Stats;

use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::net::{Packet, PacketCodec};

use super::conn::{read_packet, Backend, ConnectOptions};

/// How a backend connection's reads are watched; see the module docs.
#[derive(Debug, Clone)]
pub struct StallWatch {
    /// Who to log in as on the second connection: the session's own account, which can
    /// see and kill its own threads without the PROCESS privilege.
    pub target: BackendTarget,
    /// The silence after which the server is asked.
    pub every: Duration,
    /// Bound on each second connection (connect, login and setup).
    pub connect_timeout: Duration,
    /// How long the server may stay unreachable on new connections while the reply is
    /// silent before the read fails.
    pub give_up: Duration,
    pub stats: Arc<Stats>,
}

/// What the server says of a connection's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Thread {
    Running,
    Idle { ms: u64 },
    Gone,
}

/// The verdicts counted in `goneaway_proxy_stalled_replies_total{verdict}`.
pub const VERDICTS: [&str; 4] = [
    "never_received",
    "reply_lost",
    "thread_gone",
    "server_unreachable",
];

impl StallWatch {
    /// Asks the server about thread `id` on a new connection and, when `kill`, kills it.
    /// Boxed: it logs in with a [`Backend`], whose reads are this module's callers.
    fn look(
        &self,
        id: u32,
    ) -> Pin<Box<dyn Future<Output = Result<Thread, ProxyError>> + Send + '_>> {
        Box::pin(async move {
            let opts = ConnectOptions::internal(self.connect_timeout);
            let mut side = Backend::connect(&self.target, &opts, self.stats.clone()).await?;
            self.stats
                .stall_checks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let rows = side
                .simple(&format!(
                    "SELECT COMMAND, TIME_MS FROM information_schema.PROCESSLIST WHERE ID = {id}"
                ))
                .await?;
            let thread = match rows.first() {
                None => Thread::Gone,
                Some(row) if row.first().cloned().flatten().as_deref() == Some("Sleep") => {
                    let ms = row
                        .get(1)
                        .cloned()
                        .flatten()
                        .and_then(|t| t.split('.').next().and_then(|ms| ms.parse().ok()))
                        .unwrap_or(0);
                    Thread::Idle { ms }
                }
                Some(_) => Thread::Running,
            };
            side.quit().await;
            Ok(thread)
        })
    }

    /// Kills thread `id` on a new connection; a failure is only logged (the session's
    /// replacement of the connection ends the old thread before anything depends on it).
    fn kill(&self, id: u32) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let opts = ConnectOptions::internal(self.connect_timeout);
            match Backend::connect(&self.target, &opts, self.stats.clone()).await {
                Ok(mut side) => {
                    if let Err(e) = side.simple(&format!("KILL CONNECTION {id}")).await {
                        tracing::debug!(thread = id, error = %e, "could not kill a stalled connection's thread");
                    }
                    side.quit().await;
                }
                Err(e) => {
                    tracing::debug!(thread = id, error = %e, "could not kill a stalled connection's thread")
                }
            }
        })
    }
}

/// Reads the next packet of a reply from `framed` under `watch`; `id` is the connection's
/// thread, `sent` when the request went out.
pub(super) async fn watched(
    watch: &StallWatch,
    framed: &mut Framed<TcpStream, PacketCodec>,
    id: u32,
    sent: Instant,
) -> Result<Packet, ProxyError> {
    // Most packets of a reply are already buffered: those cost no timer.
    if let Some(r) = futures_util::FutureExt::now_or_never(read_packet(framed)) {
        return r;
    }
    // A reply just written may still be on its way when the thread is seen idle: look
    // again after this much before calling it lost.
    let confirm = watch.every.min(Duration::from_millis(500));
    let mut idle_seen = false;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let wait = if idle_seen { confirm } else { watch.every };
        if let Ok(r) = tokio::time::timeout(wait, read_packet(framed)).await {
            return r;
        }
        let looked = watch.look(id).await;
        // Measured once the answer is in: the server's idle time was taken before that, so
        // "idle for longer than the request has been out" cannot be an artefact of the
        // time the look itself took.
        let out = sent.elapsed();
        let verdict = match looked {
            Ok(Thread::Running) => {
                idle_seen = false;
                unreachable_since = None;
                continue;
            }
            Ok(Thread::Idle { ms }) if u128::from(ms) > out.as_millis() => Stalled {
                not_run: true,
                verdict: "never_received",
                detail: format!(
                    "no reply for {out:.1?}, and the server never received the statement: \
                     its thread {id} has been idle for {ms} ms, since before it was sent"
                ),
            },
            Ok(Thread::Idle { ms }) if idle_seen => Stalled {
                not_run: false,
                verdict: "reply_lost",
                detail: format!(
                    "no reply for {out:.1?}: the server finished the statement (its thread {id} \
                     has been idle for {ms} ms) but the reply never arrived"
                ),
            },
            Ok(Thread::Idle { .. }) => {
                idle_seen = true;
                continue;
            }
            Ok(Thread::Gone) => {
                // The end of the connection may be arriving just now: a killed thread's
                // 1927 says more than a guess.
                if let Ok(r) = tokio::time::timeout(confirm, read_packet(framed)).await {
                    return r;
                }
                Stalled {
                    not_run: false,
                    verdict: "thread_gone",
                    detail: format!(
                        "no reply for {out:.1?}, and the server no longer has the connection \
                         (thread {id}); its end never arrived"
                    ),
                }
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() < watch.give_up {
                    tracing::debug!(thread = id, error = %e, "a silent reply, and the server cannot be asked about it yet");
                    continue;
                }
                Stalled {
                    not_run: false,
                    verdict: "server_unreachable",
                    detail: format!(
                        "no reply for {out:.1?}, and the server could not be reached on a new \
                         connection for {:.1?} either: {e}",
                        since.elapsed()
                    ),
                }
            }
        };
        if verdict.verdict != "thread_gone" {
            watch.kill(id).await;
        }
        watch.stats.stalled(verdict.verdict);
        tracing::info!(thread = id, verdict = verdict.verdict, "{}", verdict.detail);
        return Err(ProxyError::Stalled {
            not_run: verdict.not_run,
            detail: verdict.detail,
        });
    }
}

struct Stalled {
    not_run: bool,
    verdict: &'static str,
    detail: String,
}
