//! Opt-in active probes: hold connections idle to see when they die, and send growing
//! packets to find the effective limit.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde::Serialize;

use crate::Progress;

/// How many idle connections the idle probe holds; each is checked once, at its own point
/// in time, because a check is traffic that resets the idle clock.
const IDLE_CHECKPOINTS: u32 = 4;

/// The largest packet the packet probe sends, whatever the server allows: bounded work.
const PACKET_PROBE_CAP: u64 = 64 * 1024 * 1024;

/// How long a check on an idle connection may wait for an answer. A flow a middlebox has
/// dropped never answers; a live server answers `SELECT 1` in milliseconds.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the idle probe saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleProbe {
    /// How long the probe held connections idle, in seconds.
    pub held_seconds: f64,
    /// Each connection: how long it sat idle, whether it still answered, and the error if not.
    pub checkpoints: Vec<IdleCheckpoint>,
    /// When the first connection had died, in seconds of silence: after the last live
    /// checkpoint and by this one.
    pub died_between_seconds: Option<(f64, f64)>,
    /// Whether the server closed it (`Aborted_clients` rose); `None` when unknown.
    pub server_closed: Option<bool>,
}

/// One idle connection checked after some silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleCheckpoint {
    /// Seconds of silence before the check.
    pub idle_seconds: f64,
    /// Whether `SELECT 1` succeeded.
    pub alive: bool,
    /// The error, classified, when it failed.
    pub error: Option<String>,
}

/// What the packet probe saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PacketProbe {
    /// The largest statement (bytes) the server accepted.
    pub server_limit: Option<u64>,
    /// The smallest statement (bytes) that failed.
    pub first_rejected: Option<u64>,
    /// The largest result (bytes) the server sent back.
    pub result_limit: Option<u64>,
    /// How the first rejection looked.
    pub detail: String,
}

fn round1(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

async fn aborted_clients(opts: &Opts) -> Option<u64> {
    let mut conn = Conn::new(opts.clone()).await.ok()?;
    let row: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
        .await
        .ok()?;
    let _ = conn.disconnect().await;
    row.map(|(_, v)| v)
}

/// Holds [`IDLE_CHECKPOINTS`] connections idle for up to `duration`, checking one at each
/// quarter, and reports when they died and whether the server was the one to close them.
pub async fn probe_idle(
    opts: &Opts,
    duration: Duration,
    progress: &Progress,
) -> Result<IdleProbe, mysql_async::Error> {
    let before = aborted_clients(opts).await;
    let mut conns = Vec::new();
    for _ in 0..IDLE_CHECKPOINTS {
        conns.push(Conn::new(opts.clone()).await?);
    }
    let started = Instant::now();
    let mut checkpoints = Vec::new();
    let mut died_between = None;
    let mut last_alive = Duration::ZERO;
    for (i, conn) in conns.iter_mut().enumerate() {
        let at = duration * (i as u32 + 1) / IDLE_CHECKPOINTS;
        while started.elapsed() < at {
            let left = at - started.elapsed();
            progress.report(&format!(
                "idle probe: {} of {} silent",
                goneaway_connect::format_duration(Duration::from_secs(started.elapsed().as_secs())),
                goneaway_connect::format_duration(duration)
            ));
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        let idle = started.elapsed();
        let result = tokio::time::timeout(CHECK_TIMEOUT, conn.query_drop("SELECT 1")).await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                let d = goneaway_core::classify_mysql_async(&e);
                Some(format!("{e} [{}]", d.primary()))
            }
            Err(_) => Some(format!(
                "no answer within {} s [network_drop]",
                CHECK_TIMEOUT.as_secs()
            )),
        };
        let alive = error.is_none();
        checkpoints.push(IdleCheckpoint {
            idle_seconds: round1(idle),
            alive,
            error,
        });
        if alive {
            last_alive = idle;
        } else {
            died_between = Some((round1(last_alive), round1(idle)));
            break;
        }
    }
    progress.done();
    // Read the counter while every probe connection is still open: closing a dead one
    // could itself count as an aborted client.
    let server_closed = match (died_between, before, aborted_clients(opts).await) {
        (Some(_), Some(b), Some(a)) => Some(a > b),
        _ => None,
    };
    for (conn, checkpoint) in conns
        .into_iter()
        .zip(checkpoints.iter().map(Some).chain(std::iter::repeat(None)))
    {
        if checkpoint.is_some_and(|c| c.alive) {
            let _ = conn.disconnect().await;
        }
    }
    Ok(IdleProbe {
        held_seconds: round1(started.elapsed()),
        checkpoints,
        died_between_seconds: died_between,
        server_closed,
    })
}

/// Sends statements of doubling size (1 KiB up to twice `max_allowed_packet`, at most
/// 64 MiB) and asks for results of doubling size, to find the limits in both directions.
pub async fn probe_packet(
    opts: &Opts,
    max_allowed_packet: u64,
    progress: &Progress,
) -> Result<PacketProbe, mysql_async::Error> {
    let mut probe = PacketProbe::default();
    let cap = (max_allowed_packet.saturating_mul(2)).clamp(1024, PACKET_PROBE_CAP);
    let mut conn = Conn::new(opts.clone()).await?;
    let mut size: u64 = 1024;
    while size <= cap {
        progress.report(&format!("packet probe: sending {size} bytes"));
        let sql = format!("SELECT LENGTH('{}')", "x".repeat(size as usize));
        match conn.query_first::<u64, _>(sql).await {
            Ok(_) => probe.server_limit = Some(size + 17),
            Err(e) => {
                probe.first_rejected = Some(size + 17);
                let d = goneaway_core::classify_mysql_async(&e);
                probe.detail = format!("{e} [{}]", d.primary());
                break;
            }
        }
        size *= 2;
    }
    // The connection may be gone after a rejection: open a fresh one for the results.
    let mut conn = Conn::new(opts.clone()).await?;
    let mut size: u64 = 1024;
    while size <= cap {
        progress.report(&format!("packet probe: receiving {size} bytes"));
        // REPEAT returns NULL (with a warning) when the result would exceed max_allowed_packet.
        match conn
            .query_first::<Option<u64>, _>(format!("SELECT LENGTH(REPEAT('x', {size}))"))
            .await
        {
            Ok(Some(Some(_))) => probe.result_limit = Some(size),
            _ => break,
        }
        size *= 2;
    }
    let _ = conn.disconnect().await;
    progress.done();
    if probe.detail.is_empty() {
        probe.detail = "no statement up to the probe's limit was rejected".into();
    }
    Ok(probe)
}
