//! One client connection through the relay: the two pumps, the fault checks, and every way a flow can end.
//!
//! A flow is one task. It borrows both sockets into two pumps (client→server and
//! server→client) and waits on them, on commands from the relay (`reset`, `4031`), on
//! its idle deadline and on shutdown. Whatever ends the loop, the pumps are dropped
//! first, so the task owns the sockets again and can end them the way the fault asks:
//! a reset, a blackhole, the 4031 packet, or a plain close.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::relay::{millis, stopped, Shared};
use crate::{mysql, FlowState, FlowStatus};

/// Bytes read per chunk. MySQL packets are often smaller; large results fill it.
const CHUNK: usize = 16 * 1024;

/// Chunks a direction may hold between reading and writing (its delay line). Bounded so
/// that a slow reader still pushes back on the sender, as it would without the relay;
/// large enough that a latency fault does not collapse throughput.
const QUEUE_CHUNKS: usize = 16;

/// How long the 4031 packet may take to write before the flow gives up on the client.
const WRITE_BOUND: Duration = Duration::from_secs(2);

/// After the 4031 packet and FIN, how long to keep reading (and discarding) what the
/// client still sends. Closing with unread data would turn the FIN into a reset, and the
/// client would lose the packet it has not read yet.
const LINGER_AFTER_4031: Duration = Duration::from_secs(2);

/// How long a `reset-after` cut waits for the client's kernel to acknowledge the bytes
/// already written, so the reset does not destroy them in our send buffer.
const CUT_DRAIN_BOUND: Duration = Duration::from_secs(1);

/// Orders from the relay to one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowCmd {
    /// Reset both sides now.
    Reset,
    /// Send the 4031 packet to the client and close.
    Inject4031,
    /// Stop forwarding now, whether idle or not, and never close.
    Blackhole,
}

/// What the relay (status, commands, faults) can see of a flow while its task runs.
pub(crate) struct FlowHandle {
    id: u64,
    client: SocketAddr,
    /// When the flow was accepted; the clock `last_activity_us` counts from.
    opened: Instant,
    /// Microseconds from `opened` to the last byte read or written either way.
    last_activity_us: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    swallowed: AtomicU64,
    state: AtomicU8,
    /// The server→client byte count at which to cut the flow (`reset-after`);
    /// `u64::MAX` when not armed. Absolute, so arming it is one store.
    cut_at: AtomicU64,
    commands: mpsc::UnboundedSender<FlowCmd>,
}

impl FlowHandle {
    pub(crate) fn new(
        id: u64,
        client: SocketAddr,
        state: FlowState,
        commands: mpsc::UnboundedSender<FlowCmd>,
    ) -> Self {
        FlowHandle {
            id,
            client,
            opened: Instant::now(),
            last_activity_us: AtomicU64::new(0),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            swallowed: AtomicU64::new(0),
            state: AtomicU8::new(state.to_u8()),
            cut_at: AtomicU64::new(u64::MAX),
            commands,
        }
    }

    fn touch(&self) {
        let us = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_activity_us.store(us, Ordering::Relaxed);
    }

    fn last_activity(&self) -> Instant {
        self.opened + Duration::from_micros(self.last_activity_us.load(Ordering::Relaxed))
    }

    fn idle(&self) -> Duration {
        self.last_activity().elapsed()
    }

    pub(crate) fn state(&self) -> FlowState {
        FlowState::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, state: FlowState) {
        self.state.store(state.to_u8(), Ordering::Relaxed);
    }

    /// Cut after `limit` more server→client bytes from now.
    pub(crate) fn arm_cut(&self, limit: u64) {
        let sent = self.to_client.load(Ordering::Relaxed);
        self.cut_at
            .store(sent.saturating_add(limit), Ordering::Relaxed);
    }

    pub(crate) fn disarm_cut(&self) {
        self.cut_at.store(u64::MAX, Ordering::Relaxed);
    }

    /// Sends `command` to the flow's task; false if the task has already ended.
    pub(crate) fn command(&self, command: FlowCmd) -> bool {
        self.commands.send(command).is_ok()
    }

    fn counter(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }

    pub(crate) fn status(&self) -> FlowStatus {
        FlowStatus {
            id: self.id,
            client: self.client,
            state: self.state(),
            bytes_to_server: self.to_server.load(Ordering::Relaxed),
            bytes_to_client: self.to_client.load(Ordering::Relaxed),
            bytes_swallowed: self.swallowed.load(Ordering::Relaxed),
            idle_ms: millis(self.idle()),
            age_ms: millis(self.opened.elapsed()),
        }
    }
}

/// Removes the flow from the registry however its task ends (even if it is aborted).
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
}

/// Resets a connection: `SO_LINGER` 0 makes the close send RST instead of FIN.
pub(crate) fn reset(stream: TcpStream) {
    if let Err(error) = SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
        // The socket still closes, with a FIN: worth knowing, not worth failing.
        debug!(%error, "cannot set SO_LINGER 0; closing normally");
    }
    drop(stream);
}

/// The task of one accepted connection. `blackhole` is [`Fault::BlackholeNew`]
/// (`crate::Fault`) as it was when the connection was accepted.
pub(crate) async fn run(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, blackhole: bool) {
    let mut shutdown = shared.shutdown.subscribe();
    let upstream = if blackhole {
        None
    } else {
        let connect = tokio::time::timeout(
            shared.connect_timeout,
            TcpStream::connect(shared.upstream.as_str()),
        );
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            connected = connect => match connected {
                Ok(Ok(upstream)) => Some(upstream),
                Ok(Err(error)) => {
                    warn!(client = %peer, upstream = %shared.upstream, %error, "cannot reach the upstream; closing the client");
                    return;
                }
                Err(_) => {
                    warn!(client = %peer, upstream = %shared.upstream, timeout = ?shared.connect_timeout, "upstream connect timed out; closing the client");
                    return;
                }
            }
        }
    };

    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let state = if upstream.is_some() {
        FlowState::Forwarding
    } else {
        FlowState::Blackholed
    };
    let flow = shared.register(peer, state, commands_tx);
    let _registration = Registration {
        shared: &shared,
        id: flow.id,
    };
    let mut ctx = Ctx {
        shared: &shared,
        flow: &flow,
        commands: &mut commands,
        shutdown: &mut shutdown,
    };
    match upstream {
        None => {
            info!(flow = flow.id, client = %peer, "fault: blackholing new connection");
            ctx.hold(client, None).await;
        }
        Some(upstream) => {
            let _ = upstream.set_nodelay(true);
            info!(flow = flow.id, client = %peer, upstream = %shared.upstream, "flow opened");
            ctx.forward(client, upstream).await;
        }
    }
    let status = flow.status();
    info!(
        flow = flow.id,
        client = %peer,
        bytes_to_server = status.bytes_to_server,
        bytes_to_client = status.bytes_to_client,
        age_ms = status.age_ms,
        "flow closed"
    );
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    /// The side bytes are read from.
    fn source(self) -> &'static str {
        match self {
            Direction::ToServer => "client",
            Direction::ToClient => "server",
        }
    }

    /// The side bytes are written to.
    fn sink(self) -> &'static str {
        match self {
            Direction::ToServer => "server",
            Direction::ToClient => "client",
        }
    }
}

/// How a pump finished without an error.
enum PumpEnd {
    /// Its source closed; the end of stream was passed on (FIN) to the sink.
    Eof,
    /// `reset-after` reached its count: the flow must be reset.
    Cut,
}

/// A pump's I/O failure, with the side it happened on.
#[derive(Debug)]
struct PumpError {
    side: &'static str,
    error: io::Error,
}

/// Why the forwarding loop stopped.
enum Ending {
    /// Both directions reached end of stream.
    Closed,
    /// `reset_all`.
    Reset,
    /// `reset-after` reached its count.
    Cut,
    /// One side failed (often: it reset); the other is reset too.
    Broken(PumpError),
    /// `blackhole-idle` fired, or `blackhole_all`.
    Blackhole,
    /// `4031-idle` fired, or `inject_4031_all`.
    Inject4031,
    /// The relay is stopping.
    Shutdown,
}

/// What an idle deadline, once reached, turns into.
#[derive(Clone, Copy)]
enum IdleAction {
    Blackhole,
    Inject4031,
}

/// Everything a flow's task works with besides its sockets.
struct Ctx<'a> {
    shared: &'a Shared,
    flow: &'a FlowHandle,
    commands: &'a mut mpsc::UnboundedReceiver<FlowCmd>,
    shutdown: &'a mut watch::Receiver<bool>,
}

impl Ctx<'_> {
    /// Forwards until something ends the flow, then ends it that way.
    async fn forward(&mut self, mut client: TcpStream, mut upstream: TcpStream) {
        let mut faults = self.shared.faults.subscribe();
        let flow = self.flow;
        let ending = {
            let (client_rd, client_wr) = client.split();
            let (upstream_rd, upstream_wr) = upstream.split();
            let to_server = pump(
                client_rd,
                upstream_wr,
                Direction::ToServer,
                flow,
                self.shared,
            );
            let to_client = pump(
                upstream_rd,
                client_wr,
                Direction::ToClient,
                flow,
                self.shared,
            );
            tokio::pin!(to_server, to_client);
            let (mut to_server_open, mut to_client_open) = (true, true);
            loop {
                let deadline = idle_deadline(self.shared, flow);
                tokio::select! {
                    end = &mut to_server, if to_server_open => match end {
                        Ok(PumpEnd::Eof) if to_client_open => to_server_open = false,
                        Ok(PumpEnd::Eof) => break Ending::Closed,
                        Ok(PumpEnd::Cut) => break Ending::Cut,
                        Err(error) => break Ending::Broken(error),
                    },
                    end = &mut to_client, if to_client_open => match end {
                        Ok(PumpEnd::Eof) if to_server_open => to_client_open = false,
                        Ok(PumpEnd::Eof) => break Ending::Closed,
                        Ok(PumpEnd::Cut) => break Ending::Cut,
                        Err(error) => break Ending::Broken(error),
                    },
                    command = self.commands.recv() => match command {
                        Some(FlowCmd::Reset) => break Ending::Reset,
                        Some(FlowCmd::Inject4031) => break Ending::Inject4031,
                        Some(FlowCmd::Blackhole) => break Ending::Blackhole,
                        // The handle holds the sender as long as this task runs.
                        None => break Ending::Shutdown,
                    },
                    changed = faults.changed() => if changed.is_err() {
                        break Ending::Shutdown;
                    },
                    () = sleep_until(deadline) => match idle_action(self.shared, flow) {
                        Some(IdleAction::Blackhole) => break Ending::Blackhole,
                        Some(IdleAction::Inject4031) => break Ending::Inject4031,
                        None => {}
                    },
                    _ = stopped(self.shutdown) => break Ending::Shutdown,
                }
            }
        };
        // The pumps are gone: the sockets are ours again.
        let id = flow.id;
        match ending {
            Ending::Closed => debug!(flow = id, "both sides closed"),
            Ending::Shutdown => {
                debug!(flow = id, "relay stopping; closing flow");
                let _ = client.shutdown().await;
                let _ = upstream.shutdown().await;
            }
            Ending::Reset => {
                info!(flow = id, "fault: reset");
                reset(client);
                reset(upstream);
            }
            Ending::Cut => {
                // Let the bytes already written reach the client, or the reset would
                // discard them from our send buffer and the count would be short.
                let _ = tokio::time::timeout(CUT_DRAIN_BOUND, wait_sent(&client)).await;
                info!(
                    flow = id,
                    bytes_to_client = flow.to_client.load(Ordering::Relaxed),
                    "fault: reset after bytes"
                );
                reset(client);
                reset(upstream);
            }
            Ending::Broken(PumpError { side, error }) => {
                info!(flow = id, side, %error, "connection failed on one side; resetting the other");
                reset(client);
                reset(upstream);
            }
            Ending::Blackhole => {
                info!(
                    flow = id,
                    idle_ms = millis(flow.idle()),
                    "fault: blackholing flow"
                );
                flow.set_state(FlowState::Blackholed);
                self.hold(client, Some(upstream)).await;
            }
            Ending::Inject4031 => {
                info!(
                    flow = id,
                    idle_ms = millis(flow.idle()),
                    "fault: sending 4031 and closing"
                );
                flow.set_state(FlowState::Closing);
                self.send_4031(client, upstream).await;
            }
        }
    }

    /// A blackholed flow: forward nothing, close nothing. Reads from both sides are
    /// thrown away — only so the relay notices when either side gives up; a gateway would
    /// drop the packets instead of acknowledging them, but the client sees the same thing:
    /// no answer, ever.
    ///
    /// When the client gives up, the server's side stays open, as it does behind a gateway
    /// that forgot the flow: the server learns nothing until its own `wait_timeout` closes
    /// the session ("Got timeout reading communication packets"), which is the trace a real
    /// middlebox drop leaves in the server's log. The flow ends when both sides are gone.
    async fn hold(&mut self, client: TcpStream, mut upstream: Option<TcpStream>) {
        let flow = self.flow;
        let mut client = Some(client);
        let mut client_buf = vec![0u8; CHUNK];
        let mut upstream_buf = vec![0u8; CHUNK];
        while client.is_some() || upstream.is_some() {
            tokio::select! {
                read = read_opt(client.as_mut(), &mut client_buf) => match read {
                    Ok(0) | Err(_) => {
                        debug!(flow = flow.id, "blackholed client went away; the server's side stays open");
                        client = None;
                    }
                    Ok(n) => swallow(flow, n),
                },
                read = read_opt(upstream.as_mut(), &mut upstream_buf) => match read {
                    // The server gave up on the session (its wait_timeout, say). The
                    // client is not told: that is the point.
                    Ok(0) | Err(_) => upstream = None,
                    Ok(n) => swallow(flow, n),
                },
                command = self.commands.recv() => match command {
                    Some(FlowCmd::Reset) => {
                        info!(flow = flow.id, "fault: reset (blackholed flow)");
                        if let Some(client) = client {
                            reset(client);
                        }
                        if let Some(upstream) = upstream {
                            reset(upstream);
                        }
                        return;
                    }
                    // Nothing reaches a blackholed client, the 4031 packet included.
                    Some(FlowCmd::Inject4031 | FlowCmd::Blackhole) => {}
                    None => break,
                },
                _ = stopped(self.shutdown) => {
                    if let Some(client) = client.as_mut() {
                        let _ = client.shutdown().await;
                    }
                    break;
                }
            }
        }
    }

    /// What mysqld 8.0.24+ does to an idle connection: the 4031 packet, then close.
    async fn send_4031(&mut self, mut client: TcpStream, upstream: TcpStream) {
        let packet =
            mysql::interaction_timeout_packet_with_sequence_id(self.shared.sequence_id_4031);
        match tokio::time::timeout(WRITE_BOUND, client.write_all(&packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(flow = self.flow.id, %error, "could not send 4031"),
            Err(_) => debug!(
                flow = self.flow.id,
                "client did not take the 4031 packet in time"
            ),
        }
        // FIN right behind the packet, as mysqld closes the socket after it.
        let _ = client.shutdown().await;
        drop(upstream);
        let drain = async {
            let mut buf = [0u8; 4096];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(LINGER_AFTER_4031, drain) => {}
            _ = stopped(self.shutdown) => {}
        }
    }
}

/// When the nearest armed idle fault fires for this flow, if any is armed.
fn idle_deadline(shared: &Shared, flow: &FlowHandle) -> Option<tokio::time::Instant> {
    let threshold = {
        let faults = shared.faults.borrow();
        match (faults.blackhole_idle, faults.inject_4031_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }?;
    Some(tokio::time::Instant::from_std(flow.last_activity()) + threshold)
}

/// Which idle fault the flow's idle time has reached. When both have, the one with
/// the shorter threshold, as it would have fired first; on a tie, the 4031.
fn idle_action(shared: &Shared, flow: &FlowHandle) -> Option<IdleAction> {
    let idle = flow.idle();
    let faults = shared.faults.borrow();
    let candidates = [
        (faults.inject_4031_idle, IdleAction::Inject4031),
        (faults.blackhole_idle, IdleAction::Blackhole),
    ];
    candidates
        .into_iter()
        .filter_map(|(threshold, action)| threshold.map(|t| (t, action)))
        .filter(|(threshold, _)| idle >= *threshold)
        .min_by_key(|(threshold, _)| *threshold)
        .map(|(_, action)| action)
}

/// Copies one direction through a delay line: a reader stamps each chunk with the time
/// it may leave (now + latency), a writer waits for that time and writes it. Returns when
/// the source ends (after passing the FIN on), on `reset-after`, or on an I/O error.
async fn pump(
    mut source: ReadHalf<'_>,
    mut sink: WriteHalf<'_>,
    direction: Direction,
    flow: &FlowHandle,
    shared: &Shared,
) -> Result<PumpEnd, PumpError> {
    let (queue, mut chunks) = mpsc::channel::<(tokio::time::Instant, Bytes)>(QUEUE_CHUNKS);
    let reader = async move {
        let result = loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match source.read_buf(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(_) => {
                    flow.touch();
                    let due = tokio::time::Instant::now() + shared.latency();
                    if queue.send((due, buf.freeze())).await.is_err() {
                        break Ok(());
                    }
                }
                Err(error) => {
                    break Err(PumpError {
                        side: direction.source(),
                        error,
                    })
                }
            }
        };
        // Closing the queue tells the writer the stream has ended.
        drop(queue);
        result
    };
    let writer = async move {
        let fail = |error| PumpError {
            side: direction.sink(),
            error,
        };
        while let Some((due, chunk)) = chunks.recv().await {
            // Only sleep when there is a delay: a timer costs up to a millisecond even
            // for a deadline already past.
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            let counter = flow.counter(direction);
            if direction == Direction::ToClient {
                let sent = counter.load(Ordering::Relaxed);
                let cut_at = flow.cut_at.load(Ordering::Relaxed);
                if sent.saturating_add(chunk.len() as u64) >= cut_at {
                    let keep = usize::try_from(cut_at.saturating_sub(sent))
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    sink.write_all(&chunk[..keep]).await.map_err(fail)?;
                    counter.fetch_add(keep as u64, Ordering::Relaxed);
                    return Ok(PumpEnd::Cut);
                }
            }
            sink.write_all(&chunk).await.map_err(fail)?;
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            flow.touch();
        }
        // Pass the half-close on: the client's COM_QUIT and FIN, or the server's FIN.
        sink.shutdown().await.map_err(fail)?;
        Ok(PumpEnd::Eof)
    };
    tokio::pin!(reader, writer);
    let mut reading = true;
    loop {
        tokio::select! {
            read = &mut reader, if reading => {
                read?;
                reading = false;
            }
            written = &mut writer => return written,
        }
    }
}

/// Counts bytes a blackholed flow threw away.
fn swallow(flow: &FlowHandle, n: usize) {
    flow.swallowed.fetch_add(n as u64, Ordering::Relaxed);
}

/// Reads from `stream`, or waits forever if there is none.
async fn read_opt(stream: Option<&mut TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    match stream {
        Some(stream) => stream.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits until every byte written to `stream` has been acknowledged by the peer (Linux:
/// `SIOCOUTQ`). Elsewhere returns at once.
async fn wait_sent(stream: &TcpStream) {
    while unacknowledged(stream).is_some_and(|n| n > 0) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(target_os = "linux")]
fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut pending: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ for TCP sockets) writes one c_int through the pointer,
    // which points at `pending`, alive for the whole call; the descriptor belongs to
    // `stream`, which outlives the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut pending) };
    (rc == 0).then(|| usize::try_from(pending).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_stream: &TcpStream) -> Option<usize> {
    None
}
