//! The classifier: from an error number, an I/O error kind or a driver error to a [`Diagnosis`].

use std::io::ErrorKind;

use serde::Serialize;

use crate::cause::{Cause, Retry};
use crate::codes::{self, ServerError};

/// One candidate cause and how likely it is, between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    /// The cause.
    pub cause: Cause,
    /// How likely this cause is given only the evidence in the error, between 0 and 1.
    /// The likelihoods of one diagnosis add up to at most 1; they are a ranking with a sense
    /// of scale, not measured probabilities.
    pub likelihood: f64,
}

/// What an error means: the likely causes, whether a retry is safe, and what fixes it.
///
/// Serialises with these stable field names: `causes` (list of `{cause, likelihood}`,
/// most likely first), `retry`, `explanation`, `fixes`, `tell_apart`, `code`, `sqlstate`,
/// `symbol`, `connection_lost`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// Candidate causes, most likely first; never empty (falls back to `unknown`).
    pub causes: Vec<Candidate>,
    /// What the caller may safely do about the failed statement.
    pub retry: Retry,
    /// One paragraph: what happened, in words.
    pub explanation: String,
    /// Concrete fixes: server settings, pool options, code changes.
    pub fixes: Vec<String>,
    /// Which facts would tell the candidate causes apart.
    pub tell_apart: Vec<String>,
    /// The MySQL/MariaDB error number, when one was seen.
    pub code: Option<u16>,
    /// The SQLSTATE, when one was seen.
    pub sqlstate: Option<String>,
    /// The symbol of the error number (`CR_SERVER_GONE_ERROR`), when known.
    pub symbol: Option<&'static str>,
    /// Whether the connection the error came from is dead and must be discarded.
    /// `false` for errors on a healthy connection (deadlock, lock wait, statement timeout)
    /// and for connections that were never made.
    pub connection_lost: bool,
}

impl Diagnosis {
    /// The most likely cause.
    pub fn primary(&self) -> Cause {
        self.causes.first().map_or(Cause::Unknown, |c| c.cause)
    }

    /// The likelihood of the most likely cause.
    pub fn confidence(&self) -> f64 {
        self.causes.first().map_or(0.0, |c| c.likelihood)
    }

    /// Whether `cause` is among the candidates.
    pub fn mentions(&self, cause: Cause) -> bool {
        self.causes.iter().any(|c| c.cause == cause)
    }

    /// Whether the connection went away (it must be discarded and a new one opened).
    pub fn is_disconnect(&self) -> bool {
        self.connection_lost
    }

    /// Whether no connection could be made at all (unreachable, refused, denied, blocked).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self.primary(),
            Cause::ServerUnreachable
                | Cause::TooManyConnections
                | Cause::HostBlocked
                | Cause::AccessDenied
        ) && !self.connection_lost
    }

    /// Whether trying again may succeed without fixing anything (any advice but
    /// `do_not_retry`).
    pub fn is_transient(&self) -> bool {
        self.retry != Retry::DoNotRetry
    }

    /// Whether a statement may be retried even if it is not idempotent.
    pub fn is_safe_to_retry(&self) -> bool {
        matches!(self.retry, Retry::SafeToRetry | Retry::ReconnectThenRetry)
    }

    /// Re-ranks a lost connection's causes with what its owner knows and the error alone
    /// cannot tell: how long the connection sat idle before the failing statement, and the
    /// session's `wait_timeout`.
    ///
    /// Idle at least `wait_timeout`: the server closed it before the statement arrived, so
    /// `idle_timeout` comes first and nothing ran (`reconnect_then_retry`). Idle clearly
    /// less: the server's idle timeout cannot have fired, so `idle_timeout` is dropped from
    /// the candidates. Errors on a live connection are returned unchanged.
    ///
    /// ```
    /// use std::time::Duration;
    /// use goneaway_core::{classify_io, Cause, Retry};
    ///
    /// let eof = classify_io(std::io::ErrorKind::UnexpectedEof);
    /// let after_long_idle = eof.clone().given_idle(Duration::from_secs(30), Duration::from_secs(20));
    /// assert_eq!(after_long_idle.primary(), Cause::IdleTimeout);
    /// assert_eq!(after_long_idle.retry, Retry::ReconnectThenRetry);
    /// let while_busy = eof.given_idle(Duration::from_millis(5), Duration::from_secs(20));
    /// assert!(!while_busy.mentions(Cause::IdleTimeout));
    /// ```
    pub fn given_idle(
        mut self,
        idle: std::time::Duration,
        wait_timeout: std::time::Duration,
    ) -> Diagnosis {
        if !self.connection_lost || wait_timeout.is_zero() {
            return self;
        }
        if idle >= wait_timeout {
            let rest: f64 = self
                .causes
                .iter()
                .filter(|c| c.cause != IdleTimeout)
                .map(|c| c.likelihood)
                .sum();
            // The idle timeout explains the loss on its own; the others keep their
            // proportions in what is left.
            let scale = if rest > 0.0 { 0.1 / rest } else { 0.0 };
            self.causes.retain(|c| c.cause != IdleTimeout);
            for c in &mut self.causes {
                c.likelihood *= scale;
            }
            self.causes.insert(
                0,
                Candidate {
                    cause: IdleTimeout,
                    likelihood: 0.9,
                },
            );
            self.retry = Retry::ReconnectThenRetry;
            self.tell_apart.insert(
                0,
                format!(
                    "The connection sat idle {:.1} s, at or past wait_timeout ({} s): the server had closed it before this statement arrived",
                    idle.as_secs_f64(),
                    wait_timeout.as_secs()
                ),
            );
        } else if idle < wait_timeout.mul_f64(0.9) && self.causes.len() > 1 {
            let before = self.causes.len();
            self.causes.retain(|c| c.cause != IdleTimeout);
            if self.causes.len() < before {
                let total: f64 = self.causes.iter().map(|c| c.likelihood).sum();
                if total > 0.0 {
                    for c in &mut self.causes {
                        c.likelihood /= total;
                    }
                }
                self.tell_apart.insert(
                    0,
                    format!(
                        "The connection had been idle only {:.1} s, under wait_timeout ({} s): not the server's idle timeout",
                        idle.as_secs_f64(),
                        wait_timeout.as_secs()
                    ),
                );
            }
        }
        self
    }
}

/// Shared knowledge about one cause: the paragraph, the fixes and the distinguishing facts
/// that every diagnosis naming it can use.
struct Knowledge {
    explanation: &'static str,
    fixes: &'static [&'static str],
    tell_apart: &'static [&'static str],
}

fn knowledge(cause: Cause) -> Knowledge {
    match cause {
        Cause::IdleTimeout => Knowledge {
            explanation: "The server closes a connection that has sat idle longer than wait_timeout (interactive_timeout for interactive clients); the client only finds out on its next use. MySQL 8.0.24+ sends error 4031 just before closing; MariaDB and older MySQL close silently, so the client sees 2006, 2013, a reset or an unexpected EOF instead. Pools that keep connections longer than the server does hand out dead ones.",
            fixes: &[
                "Recycle pooled connections before the server's timeout: a max lifetime / idle timeout a little below wait_timeout (SQLAlchemy pool_recycle, HikariCP maxLifetime and idleTimeout, Go db.SetConnMaxLifetime/SetConnMaxIdleTime, mysql2 pool idleTimeout, Django CONN_MAX_AGE)",
                "Validate connections before use (SQLAlchemy pool_pre_ping=True, Django CONN_HEALTH_CHECKS=True, HikariCP's default isValid check, Laravel's reconnect on a lost connection)",
                "Read the server's limits: SELECT @@GLOBAL.wait_timeout, @@GLOBAL.interactive_timeout; managed databases often set them to minutes, not the default 8 hours",
                "Long-running workers and cron jobs: open a connection per job, or close it between jobs, instead of keeping one for the life of the process",
            ],
            tell_apart: &[
                "How long the connection sat idle before the failing statement: at or above wait_timeout points here; well below it (but above ~240-350 s) points to a middlebox (network_drop)",
                "The server error log has 'Aborted connection … (Got timeout reading communication packets)' for that connection, and Aborted_clients rises",
            ],
        },
        Cause::NetTimeout => Knowledge {
            explanation: "A transfer stalled in the middle of a packet for longer than net_read_timeout (the server reading from the client, default 30 s) or net_write_timeout (the server writing a result the client is slow to read, default 60 s), and the server dropped the connection. Big LOAD DATA or multi-row INSERTs over a slow link, and clients that pause while streaming a large result, cause it.",
            fixes: &[
                "Raise the limits for the session that does bulk transfers: SET SESSION net_read_timeout = 600, net_write_timeout = 600",
                "Read large results promptly and completely; don't do slow work per row while an unbuffered (streaming) result is open",
                "Split huge statements and result sets into chunks",
            ],
            tell_apart: &[
                "A stall in the middle of a large transfer points here; an idle gap before the statement points to idle_timeout — the server logs the same 'Got timeout reading communication packets' for both",
                "Server errors 1159/1161 and Aborted_clients rising while the connection was busy",
            ],
        },
        Cause::PacketTooLarge => Knowledge {
            explanation: "One packet — a statement, a row or a BLOB — was larger than max_allowed_packet on the side receiving it. The server answers 1153 and closes the connection, so many clients report only 2006 or 2013; a client library reports 2020 when a result exceeds its own limit.",
            fixes: &[
                "Raise max_allowed_packet on the server (SET GLOBAL max_allowed_packet = 268435456, and in my.cnf so it survives a restart) and in the client (mysql --max_allowed_packet, Connector/J maxAllowedPacket)",
                "Chunk large batched INSERTs so that each statement stays well under the limit",
                "Keep very large blobs out of single statements: store them outside the database or write them in pieces",
            ],
            tell_apart: &[
                "It fails the same way every time, at once, with the same large statement, whatever the idle time before it",
                "The server log says 'Got a packet bigger than 'max_allowed_packet' bytes'; compare the statement's size with SELECT @@max_allowed_packet",
            ],
        },
        Cause::ServerRestart => Knowledge {
            explanation: "The server was shut down or restarted — an upgrade, a configuration change, a failover, a container or host restart — and every open connection was closed with it.",
            fixes: &[
                "Make clients reconnect and retry with backoff (pool validation, retry on 2006/2013/4031 for idempotent work)",
                "Plan restarts: drain connections first, or put a proxy in front that keeps client sessions across the restart",
                "Compare SHOW GLOBAL STATUS LIKE 'Uptime' with the time of the error",
            ],
            tell_apart: &[
                "Uptime smaller than the age of the failed connection; 'Normal shutdown' … 'Shutdown complete' then 'ready for connections' in the error log",
                "A clean shutdown line before the restart separates a restart from a crash or an OOM kill",
            ],
        },
        Cause::ServerCrash => Knowledge {
            explanation: "The server process died abnormally — a signal such as 11 (segfault) or 6 (abort after an assertion) — and was restarted by its supervisor; every connection dropped and open transactions were rolled back by crash recovery.",
            fixes: &[
                "Read the crash banner and stack trace in the server error log and look for the bug in your server version; upgrade to a fixed minor release",
                "Check tables after recovery (CHECK TABLE, mariadb-check/mysqlcheck)",
                "Make clients reconnect and retry with backoff while the server recovers",
            ],
            tell_apart: &[
                "'got signal', 'Assertion failure' or 'Starting crash recovery' in the error log, and no 'Normal shutdown' before the restart",
                "If the kernel log shows the OOM killer at that moment, it is out_of_memory instead",
            ],
        },
        Cause::OutOfMemory => Knowledge {
            explanation: "The Linux OOM killer ended mysqld/mariadbd because the host or the container's cgroup ran out of memory; the server restarted without a shutdown message of its own, and every connection dropped.",
            fixes: &[
                "Lower the server's memory use: innodb_buffer_pool_size, and per-connection buffers (sort_buffer_size, join_buffer_size, tmp_table_size) multiplied by max_connections",
                "Give the host or container more memory, or lower max_connections",
                "Make the kernel spare the server: OOMScoreAdjust=-600 in the mysqld/mariadbd systemd unit",
            ],
            tell_apart: &[
                "The kernel log (dmesg, journalctl -k) shows 'Out of memory: Killed process … (mysqld)' or 'oom-kill: … task=mariadbd' at the time of the error",
                "The server log shows crash recovery at startup but no crash banner of its own",
            ],
        },
        Cause::ConnectionKilled => Knowledge {
            explanation: "Someone or something ended the connection or its statement with KILL: an administrator, pt-kill, a monitoring or 'kill long queries' job, or a proxy. The victim sees 1927 (MariaDB) or 1317 on its running statement, or 2006/2013 when it next uses the connection.",
            fixes: &[
                "Find who kills: KILL statements in the general or audit log, pt-kill and monitoring configuration, a cloud provider's long-query killer",
                "Make long statements faster rather than letting a killer end them",
                "Retry on a new connection only if the statement is idempotent",
            ],
            tell_apart: &[
                "No timeout, restart or crash in the server log at that moment; an audit log or the process list shows the KILL",
                "1317 alone means only the statement was killed (KILL QUERY): the connection still works",
            ],
        },
        Cause::NetworkDrop => Knowledge {
            explanation: "Something between client and server — a NAT gateway, a load balancer, a firewall, a flaky link — dropped or reset the TCP flow. Middleboxes forget idle flows silently (AWS NAT gateway and NLB after 350 s, Azure load balancer after 4 minutes), so the next use hangs or is reset while the server may still believe the connection is open.",
            fixes: &[
                "Enable TCP keepalive with an idle time below the middlebox's timeout (net.ipv4.tcp_keepalive_time=60 on the client host, or the driver's keepalive option such as Connector/J tcpKeepAlive=true)",
                "Recycle idle pooled connections below the middlebox's idle timeout, not only below wait_timeout",
                "Ping idle pooled connections periodically (a keepalive query) so the flow never goes idle",
            ],
            tell_apart: &[
                "No 'Aborted connection' line on the server at that moment, or one only much later when the server's own timeout fires",
                "Idle gaps shorter than wait_timeout but longer than ~240-350 s point to a middlebox; failures across many clients at once point to the network",
            ],
        },
        Cause::ServerUnreachable => Knowledge {
            explanation: "No connection could be made: the server is down or still starting, it does not listen on that address, port or socket (bind_address, skip_networking, a different socket path), the host name does not resolve, or a firewall blocks the port.",
            fixes: &[
                "Check that the server runs and listens: systemctl status mariadb (or mysql); ss -ltnp | grep 3306",
                "Check the host, port and socket path the client uses against bind_address, port, socket and skip_networking on the server",
                "Check DNS and firewalls between client and server",
                "Retry the connection with backoff while a server restarts",
            ],
            tell_apart: &[
                "The errno in parentheses says which: (2) the socket file is missing, (111) connection refused — nothing listens there, (110) timed out — a firewall drops the packets, (113) no route to host, (-2)/(11001) the name did not resolve",
                "If it worked a moment ago and the server's Uptime is small now, it was a restart",
            ],
        },
        Cause::TooManyConnections => Knowledge {
            explanation: "The server refused a new connection because max_connections (or the account's max_user_connections) was reached — usually leaked connections, or pools whose maximum sizes, added over every application instance, exceed the server's limit. A pool reporting that it timed out waiting for a connection is the same squeeze seen from the application.",
            fixes: &[
                "Size pools so that the sum of all pools' maximum sizes stays below max_connections",
                "Find leaks: SHOW PROCESSLIST full of 'Sleep' connections; always return connections to the pool",
                "Lower wait_timeout so abandoned connections are reaped, or raise max_connections if memory allows",
            ],
            tell_apart: &[
                "Threads_connected near max_connections (SHOW GLOBAL STATUS LIKE 'Threads_connected'; Max_used_connections)",
                "Many 'Sleep' connections in the process list mean leaks; many running ones mean load",
            ],
        },
        Cause::HostBlocked => Knowledge {
            explanation: "The server blocked the client's host after max_connect_errors consecutive interrupted connection attempts — often health checks or port scanners that open a TCP connection and drop it without a handshake.",
            fixes: &[
                "Unblock it: FLUSH HOSTS (mysqladmin flush-hosts; on MySQL 8.0.23+ TRUNCATE TABLE performance_schema.host_cache)",
                "Raise max_connect_errors, and make health checks complete a real login instead of a bare TCP connect",
                "Find what fails to connect from that host",
            ],
            tell_apart: &[
                "The message 'Host … is blocked because of many connection errors' and the host's counters in performance_schema.host_cache",
            ],
        },
        Cause::AccessDenied => Knowledge {
            explanation: "The server rejected the login: wrong credentials, or no account matches the user at the host the client connects from.",
            fixes: &[
                "Check the user, password and host part of the account: SELECT user, host, plugin FROM mysql.user",
                "Create or grant the account for the client's host",
                "Check that the client supports the account's authentication plugin (caching_sha2_password, mysql_native_password, ed25519)",
            ],
            tell_apart: &[
                "1045 means a matching account refused the credentials; 1130 means no account matches this host at all",
            ],
        },
        Cause::QueryTimeout => Knowledge {
            explanation: "A statement time limit ended the query: max_execution_time or the MAX_EXECUTION_TIME hint on MySQL (3024), max_statement_time on MariaDB (1969), or a client-side read/socket timeout.",
            fixes: &[
                "Make the statement faster (EXPLAIN, indexes, smaller batches) or move it out of latency-sensitive paths",
                "Raise the limit only for the session that needs it (SET SESSION max_execution_time = …; SET STATEMENT max_statement_time = … FOR …), or the client's read/socket timeout",
            ],
            tell_apart: &[
                "A server-side limit leaves the connection usable; a client-side read timeout closes it (2013 '(timed out)', SocketTimeoutException)",
                "Compare the statement's run time with the session's max_execution_time/max_statement_time and the client's timeout",
            ],
        },
        Cause::Deadlock => Knowledge {
            explanation: "InnoDB found a cycle of lock waits between transactions and rolled this transaction back as the victim; the connection is still fine.",
            fixes: &[
                "Retry the whole transaction from its start: deadlocks are expected under concurrency",
                "Lock rows in a consistent order, keep transactions short, and index the columns you filter on so fewer rows are locked",
                "Inspect SHOW ENGINE INNODB STATUS (LATEST DETECTED DEADLOCK)",
            ],
            tell_apart: &["1213 always means the transaction was rolled back"],
        },
        Cause::LockWaitTimeout => Knowledge {
            explanation: "A statement waited longer than innodb_lock_wait_timeout (default 50 s) for a row lock another transaction held. Only the statement is rolled back unless innodb_rollback_on_timeout is ON; the connection is still fine.",
            fixes: &[
                "Roll back and retry the transaction",
                "Find the blocker: sys.innodb_lock_waits (MySQL) or information_schema.INNODB_TRX and INNODB_LOCK_WAITS; long-open, forgotten transactions are the usual culprit",
                "Keep transactions short; commit before slow work outside the database",
            ],
            tell_apart: &[
                "innodb_rollback_on_timeout decides whether the whole transaction or only the statement was rolled back",
            ],
        },
        Cause::OutOfSync => Knowledge {
            explanation: "Client and server disagree about where they are in the protocol: one connection used by two threads or tasks at once, a connection inherited across fork(), a result not read to its end before the next command, or an unexpected packet.",
            fixes: &[
                "Never share a connection between threads, tasks or forked processes; after fork, create fresh connections (SQLAlchemy engine.dispose() in the child, uWSGI lazy-apps, Celery worker_process_init)",
                "Read or discard each result completely before the next command; close cursors",
                "Use a pool that hands each task its own connection",
            ],
            tell_apart: &[
                "It happens under concurrency or after fork, not after idle periods",
                "PHP's 'Packets out of order' right after an idle gap is MySQL 8's inactivity error (4031) arriving unexpectedly: idle_timeout",
            ],
        },
        _ => Knowledge {
            explanation: "The error does not say enough to tell the cause.",
            fixes: &[
                "Read the server error log around the time of the error, and SHOW GLOBAL STATUS (Uptime, Aborted_clients, Aborted_connects)",
                "Run goneaway doctor against the server",
            ],
            tell_apart: &[],
        },
    }
}

/// Builds a [`Diagnosis`] from ranked causes plus what the particular evidence says.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    causes: Vec<(Cause, f64)>,
    retry: Retry,
    note: Option<String>,
    tell: Vec<String>,
    fix: Vec<String>,
    error: Option<ServerError>,
    symbol: Option<&'static str>,
    lost: bool,
}

impl Verdict {
    pub(crate) fn new(causes: &[(Cause, f64)], retry: Retry) -> Self {
        Verdict {
            causes: causes.to_vec(),
            retry,
            note: None,
            tell: Vec::new(),
            fix: Vec::new(),
            error: None,
            symbol: None,
            lost: false,
        }
    }

    /// A sentence about this very error, placed before the cause's general explanation.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// A distinguishing fact particular to this error, placed first.
    pub(crate) fn tell(mut self, fact: impl Into<String>) -> Self {
        self.tell.push(fact.into());
        self
    }

    /// A fix particular to this error, placed first.
    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix.push(fix.into());
        self
    }

    pub(crate) fn lost(mut self, lost: bool) -> Self {
        self.lost = lost;
        self
    }

    pub(crate) fn error(mut self, error: &ServerError) -> Self {
        self.symbol = error.symbol();
        self.error = Some(error.clone());
        self
    }

    pub(crate) fn finish(self) -> Diagnosis {
        let mut causes: Vec<Candidate> = self
            .causes
            .iter()
            .map(|&(cause, likelihood)| Candidate { cause, likelihood })
            .collect();
        causes.sort_by(|a, b| b.likelihood.total_cmp(&a.likelihood));
        if causes.is_empty() {
            causes.push(Candidate {
                cause: Cause::Unknown,
                likelihood: 1.0,
            });
        }
        let primary = knowledge(causes[0].cause);
        let explanation = match &self.note {
            Some(note) => format!("{note} {}", primary.explanation),
            None => primary.explanation.to_string(),
        };
        let mut fixes = self.fix.clone();
        fixes.extend(primary.fixes.iter().map(|s| s.to_string()));
        let mut tell_apart = self.tell.clone();
        tell_apart.extend(primary.tell_apart.iter().map(|s| s.to_string()));
        // A strong runner-up contributes its first fix and its first distinguishing fact.
        for runner in causes.iter().skip(1).filter(|c| c.likelihood >= 0.2) {
            let k = knowledge(runner.cause);
            if let Some(fix) = k.fixes.first() {
                fixes.push(fix.to_string());
            }
            if let Some(fact) = k.tell_apart.first() {
                tell_apart.push(fact.to_string());
            }
        }
        dedup(&mut fixes);
        dedup(&mut tell_apart);
        Diagnosis {
            causes,
            retry: self.retry,
            explanation,
            fixes,
            tell_apart,
            code: self.error.as_ref().map(|e| e.code),
            sqlstate: self.error.as_ref().and_then(|e| e.sqlstate.clone()),
            symbol: self.symbol,
            connection_lost: self.lost,
        }
    }
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

use Cause::*;

/// What a lost connection usually means when nothing else is known, most likely first.
const DISCONNECT_2006: &[(Cause, f64)] = &[
    (IdleTimeout, 0.45),
    (PacketTooLarge, 0.12),
    (ServerRestart, 0.1),
    (NetworkDrop, 0.1),
    (ConnectionKilled, 0.08),
    (ServerCrash, 0.08),
    (OutOfMemory, 0.07),
];

const DISCONNECT_2013: &[(Cause, f64)] = &[
    (IdleTimeout, 0.25),
    (NetTimeout, 0.2),
    (NetworkDrop, 0.15),
    (ConnectionKilled, 0.1),
    (ServerCrash, 0.1),
    (PacketTooLarge, 0.1),
    (OutOfMemory, 0.05),
    (ServerRestart, 0.05),
];

/// Classifies an error by its MySQL/MariaDB number, with the SQLSTATE and message when
/// known (they refine the answer and break number clashes such as 4031).
pub fn classify_code(code: u16, sqlstate: Option<&str>, message: Option<&str>) -> Diagnosis {
    let err = ServerError::new(code, sqlstate, message.unwrap_or(""));
    verdict_for_code(&err).error(&err).finish()
}

/// Classifies a [`ServerError`] (number, SQLSTATE and message).
pub fn classify_error(err: &ServerError) -> Diagnosis {
    verdict_for_code(err).error(err).finish()
}

fn verdict_for_code(err: &ServerError) -> Verdict {
    let m = err.message.to_ascii_lowercase();
    let v = Verdict::new;
    match err.code {
        codes::CR_SERVER_GONE_ERROR => gone_away(&m),
        codes::CR_SERVER_LOST | codes::CR_SERVER_LOST_EXTENDED => lost_connection(&m),
        codes::ER_CLIENT_INTERACTION_TIMEOUT if err.is_mysql_inactivity() => {
            v(&[(IdleTimeout, 0.95), (NetworkDrop, 0.05)], Retry::ReconnectThenRetry)
                .note("MySQL 8.0.24+ said why it closed the connection: it sat idle past wait_timeout (or interactive_timeout), and the statement was never run.")
                .tell("Error 4031 is sent only for inactivity: this is certain to be idle_timeout")
                .lost(true)
        }
        codes::ER_CLIENT_INTERACTION_TIMEOUT => v(&[(Unknown, 1.0)], Retry::DoNotRetry)
            .note("On MariaDB, error 4031 is ER_REFERENCED_TRG_DOES_NOT_EXIST (a trigger definition problem), not MySQL's inactivity disconnect; it has nothing to do with the connection.")
            .tell("MySQL's 4031 says 'disconnected by the server because of inactivity'; MariaDB's mentions a trigger"),
        codes::CR_NET_PACKET_TOO_LARGE | codes::ER_NET_PACKET_TOO_LARGE => {
            v(&[(PacketTooLarge, 0.95), (Unknown, 0.05)], Retry::DoNotRetry)
                .note(if err.code == codes::ER_NET_PACKET_TOO_LARGE {
                    "The server received a packet larger than its max_allowed_packet and closed the connection."
                } else {
                    "The client library received a packet larger than its own max_allowed_packet."
                })
                .lost(true)
        }
        // A client that received 1159 was cut off mid-transfer: when wait_timeout closes an
        // idle connection the server sends no error packet (the client sees 2006, 2013, 4031 or
        // a reset), so the idle timeout is only a remote candidate here. In the server's error
        // log the same words cover both (`aborted_connection`).
        codes::ER_NET_READ_INTERRUPTED => v(&[(NetTimeout, 0.8), (NetworkDrop, 0.15), (IdleTimeout, 0.05)], Retry::RetryIfIdempotent)
            .note("The server gave up reading a packet the client was in the middle of sending (net_read_timeout, default 30 s) and said so with error 1159. A connection closed for sitting idle (wait_timeout) gets no error packet, so a client that received 1159 was stalled mid-transfer: a large statement or LOAD DATA LOCAL over a slow link, or a client that paused while sending.")
            .tell("A statement split over several packets that never fully arrived did not run; a LOAD DATA LOCAL INFILE that stalled while sending its file had started: InnoDB rolled it back, non-transactional tables keep the rows already loaded")
            .tell("The same words in the server's error log ('Aborted connection … (Got timeout reading communication packets)') also cover an idle connection closed at wait_timeout; received by a client they do not")
            .lost(true),
        codes::ER_NET_READ_ERROR => v(&[(NetworkDrop, 0.55), (PacketTooLarge, 0.15), (NetTimeout, 0.15), (OutOfSync, 0.15)], Retry::ReconnectThenRetry)
            .note("The server got an error reading from the client: the client went away without closing the connection, or the link broke.")
            .tell("Clients that exit or drop pooled sockets without COM_QUIT produce this too; it is harmless when nobody saw an error")
            .lost(true),
        codes::ER_NET_WRITE_INTERRUPTED => v(&[(NetTimeout, 0.7), (NetworkDrop, 0.3)], Retry::RetryIfIdempotent)
            .note("The server timed out writing a result to a client that did not read it (net_write_timeout, default 60 s); the statement had run.")
            .tell("A client that reads a large result slowly (streaming, slow work per row) hits net_write_timeout every time; a network that stops carrying packets only sometimes")
            .lost(true),
        codes::ER_NET_ERROR_ON_WRITE => v(&[(NetworkDrop, 0.6), (NetTimeout, 0.4)], Retry::RetryIfIdempotent)
            .note("The server failed to write a result to the client; the statement had run.")
            .lost(true),
        codes::ER_SERVER_SHUTDOWN | codes::ER_FORCING_CLOSE => v(&[(ServerRestart, 0.9), (ServerCrash, 0.1)], Retry::ReconnectThenRetry)
            .note("The server is shutting down and ended this connection; reconnect once it is back.")
            .lost(true),
        codes::ER_NORMAL_SHUTDOWN | codes::ER_SHUTDOWN_COMPLETE => v(&[(ServerRestart, 0.95), (Unknown, 0.05)], Retry::ReconnectThenRetry)
            .note("The server log records a shutdown.")
            .lost(true),
        codes::ER_CONNECTION_KILLED => v(&[(ConnectionKilled, 0.85), (ServerRestart, 0.15)], Retry::RetryIfIdempotent)
            .note("MariaDB reports that this connection was killed (KILL CONNECTION, or a shutdown); any open transaction was rolled back, and a statement in flight may have partly run on non-transactional tables.")
            .lost(true),
        codes::ER_QUERY_INTERRUPTED => v(&[(ConnectionKilled, 0.65), (ServerRestart, 0.2), (QueryTimeout, 0.15)], Retry::RetryIfIdempotent)
            .note("The running statement was interrupted — usually KILL QUERY, sometimes a server shutdown; the statement was rolled back on transactional tables.")
            .tell("If the connection still answers afterwards only the query was killed; if it is gone, a KILL CONNECTION or shutdown ended it"),
        codes::ER_QUERY_TIMEOUT => v(&[(QueryTimeout, 0.95), (Unknown, 0.05)], Retry::DoNotRetry)
            .note("MySQL ended the statement at max_execution_time (or a MAX_EXECUTION_TIME hint); the connection is still usable."),
        codes::ER_STATEMENT_TIMEOUT => v(&[(QueryTimeout, 0.95), (Unknown, 0.05)], Retry::DoNotRetry)
            .note("MariaDB ended the statement at max_statement_time; the connection is still usable."),
        codes::ER_LOCK_DEADLOCK => v(&[(Deadlock, 1.0)], Retry::RetryTransaction),
        codes::ER_LOCK_WAIT_TIMEOUT => v(&[(LockWaitTimeout, 1.0)], Retry::RetryTransaction),
        codes::ER_CON_COUNT_ERROR | codes::ER_TOO_MANY_USER_CONNECTIONS => v(&[(TooManyConnections, 1.0)], Retry::SafeToRetry)
            .note(if err.code == codes::ER_TOO_MANY_USER_CONNECTIONS {
                "The account reached its max_user_connections limit; nothing ran, so retry after a backoff."
            } else {
                "The server refused the connection at max_connections; nothing ran, so retry after a backoff."
            }),
        codes::ER_HOST_IS_BLOCKED => v(&[(HostBlocked, 1.0)], Retry::DoNotRetry),
        codes::ER_ACCESS_DENIED_ERROR | codes::ER_HOST_NOT_PRIVILEGED => v(&[(AccessDenied, 1.0)], Retry::DoNotRetry),
        codes::CR_CONNECTION_ERROR | codes::CR_CONN_HOST_ERROR | codes::CR_UNKNOWN_HOST => connect_failure(err.code, &m),
        codes::ER_SERVER_OFFLINE_MODE => v(&[(ServerUnreachable, 0.7), (ServerRestart, 0.3)], Retry::SafeToRetry)
            .note("MySQL is in offline_mode (maintenance): it refuses ordinary clients and closed their connections.")
            .lost(true),
        codes::CR_COMMANDS_OUT_OF_SYNC => v(&[(OutOfSync, 0.9), (Unknown, 0.1)], Retry::DoNotRetry)
            .note("The client issued a command while the previous result was still unread, or two threads used one connection."),
        codes::CR_MALFORMED_PACKET => v(&[(OutOfSync, 0.6), (NetworkDrop, 0.2), (Unknown, 0.2)], Retry::DoNotRetry)
            .note("The client received a packet it could not parse: a shared or forked connection, a broken proxy, or a driver bug.")
            .lost(true),
        codes::ER_HANDSHAKE_ERROR | codes::CR_SERVER_HANDSHAKE_ERR => v(&[(ServerUnreachable, 0.4), (OutOfSync, 0.3), (NetworkDrop, 0.3)], Retry::SafeToRetry)
            .note("The connection handshake failed: something that is not a MySQL client or server (a health check, a port scanner, a misconfigured proxy or TLS terminator) is on one end, or the link broke during login."),
        codes::CR_SSL_CONNECTION_ERROR => v(&[(ServerUnreachable, 0.6), (NetworkDrop, 0.2), (Unknown, 0.2)], Retry::SafeToRetry)
            .note("The TLS handshake failed. A TLS configuration mismatch fails every time; an SSL error with an empty reason is often the server closing the connection during login (overload, max_connections, a restart).")
            .tell("Does it fail on every connection (configuration: certificates, tls_version, require_secure_transport) or only sometimes (the server dropping connections during login)?"),
        codes::ER_OPTION_PREVENTS_STATEMENT if m.contains("read-only") || m.contains("read_only") => {
            v(&[(Unknown, 0.7), (ServerRestart, 0.3)], Retry::ReconnectThenRetry)
                .note("The server is read-only. After a failover, connections opened before it still point at the old primary, now a replica; new connections (after DNS or the proxy moves) reach the new primary.")
                .tell("Check @@read_only/@@super_read_only on the server this connection reached, and whether a failover happened just before")
        }
        codes::ER_ABORTING_CONNECTION | codes::ER_NEW_ABORTING_CONNECTION => aborted_connection(&m),
        _ => v(&[(Unknown, 1.0)], Retry::DoNotRetry)
            .note(format!("Error {} is not one that goneaway recognises as connection-related.", err.code)),
    }
}

/// 2006: the client could not send: the connection was already gone, so nothing ran.
fn gone_away(m: &str) -> Verdict {
    let mut v = Verdict::new(DISCONNECT_2006, Retry::ReconnectThenRetry)
        .note("The client could not send the statement because the connection was already closed, so the statement did not run: reconnect, then retry.")
        .tell("2006 on sending means nothing ran; the same statement failing at once every time, even on a fresh connection, means packet_too_large")
        .lost(true);
    if m.contains("broken pipe") || m.contains("brokenpipe") || m.contains("errno 32") {
        v = v.tell("The write failed with a broken pipe: the peer had already closed the socket, as the server does after wait_timeout");
    } else if m.contains("connection reset") || m.contains("connectionreset") || m.contains("104") {
        v.causes = vec![
            (IdleTimeout, 0.35),
            (NetworkDrop, 0.3),
            (ServerRestart, 0.1),
            (ServerCrash, 0.1),
            (ConnectionKilled, 0.08),
            (OutOfMemory, 0.07),
        ];
        v = v.tell("A reset rather than a clean close suggests a middlebox forgot the flow, or the server vanished abruptly");
    }
    v
}

/// 2013/2055: sent but no answer: outcome unknown, unless it failed while connecting.
fn lost_connection(m: &str) -> Verdict {
    let stage = [
        "initial communication packet",
        "handshake",
        "authorization packet",
        "sending authentication",
    ];
    if stage.iter().any(|s| m.contains(s)) {
        return Verdict::new(
            &[(ServerUnreachable, 0.45), (NetworkDrop, 0.25), (ServerRestart, 0.15), (TooManyConnections, 0.15)],
            Retry::SafeToRetry,
        )
        .note("The connection was lost while logging in (before any statement was sent), so nothing ran: the server accepted TCP but closed it during the handshake.")
        .tell("A proxy or port-forward with no healthy backend, TCP wrappers or a firewall that accepts then resets, a server overloaded past connect_timeout, or slow reverse DNS (skip_name_resolve) all look like this")
        .tell("'system error: 0' or '(104)' at 'reading initial communication packet' often means something in front of the server accepted the connection without a server behind it");
    }
    if m.contains("timed out") || m.contains("timeout") {
        return Verdict::new(
            &[(QueryTimeout, 0.45), (NetworkDrop, 0.3), (NetTimeout, 0.15), (ServerCrash, 0.1)],
            Retry::RetryIfIdempotent,
        )
        .note("The client's own read timeout expired while waiting for the answer (PyMySQL read_timeout, MYSQL_OPT_READ_TIMEOUT, a socket timeout); the statement may still be running or may have completed.")
        .tell("A slow statement exceeds the client's read timeout every time; a hung network only sometimes")
        .lost(true);
    }
    Verdict::new(DISCONNECT_2013, Retry::RetryIfIdempotent)
        .note("The statement was sent, but the connection closed before a complete answer arrived: the server may or may not have run it.")
        .tell("2013 mid-query means the outcome is unknown: only retry a statement that is safe to run twice")
        .tell("If the connection had sat idle before this statement, MariaDB and older MySQL had closed it silently (idle_timeout); if it was busy streaming a large result or upload, net_read_timeout/net_write_timeout (net_timeout)")
        .lost(true)
}

/// 2002/2003/2005: no connection could be made; the errno tells why.
fn connect_failure(code: u16, m: &str) -> Verdict {
    let errno = errno_in_parens(m);
    let base = Verdict::new(
        &[(ServerUnreachable, 0.75), (ServerRestart, 0.25)],
        Retry::SafeToRetry,
    );
    match (code, errno) {
        (codes::CR_UNKNOWN_HOST, _) => Verdict::new(&[(ServerUnreachable, 0.9), (NetworkDrop, 0.1)], Retry::SafeToRetry)
            .note("The server's host name did not resolve (DNS).")
            .tell("Resolve the name from the client host (getent hosts NAME); container networks resolve service names only inside their own network"),
        (_, Some(2)) => Verdict::new(&[(ServerUnreachable, 0.6), (ServerRestart, 0.4)], Retry::SafeToRetry)
            .note("The Unix socket file does not exist (errno 2): the server is not running, or it uses another socket path.")
            .tell("Compare the client's socket path with SELECT @@socket on the server; on Debian, MariaDB uses /run/mysqld/mysqld.sock"),
        (_, Some(111)) | (_, Some(10061)) => Verdict::new(&[(ServerUnreachable, 0.6), (ServerRestart, 0.4)], Retry::SafeToRetry)
            .note("Connection refused (errno 111): nothing listens on that address and port — the server is down or restarting, listens elsewhere (bind_address, port), or has skip_networking.")
            .tell("Refused while the server was up a moment ago suggests a restart; refused always suggests bind_address/port/skip_networking"),
        (_, Some(110)) | (_, Some(10060)) => Verdict::new(&[(ServerUnreachable, 0.6), (NetworkDrop, 0.4)], Retry::SafeToRetry)
            .note("The connection attempt timed out (errno 110): packets to the server are dropped — a firewall, a security group, a wrong address, or a host that is down.")
            .tell("A timeout (not a refusal) means nothing answered at all: look at firewalls and routes first"),
        (_, Some(113)) => Verdict::new(&[(ServerUnreachable, 0.7), (NetworkDrop, 0.3)], Retry::SafeToRetry)
            .note("No route to the server's host (errno 113): the host is down or a firewall rejects the traffic."),
        (_, Some(13)) => Verdict::new(&[(ServerUnreachable, 0.9), (AccessDenied, 0.1)], Retry::DoNotRetry)
            .note("Permission denied on the socket (errno 13): the client user may not open the server's socket file."),
        _ => base.note("No connection could be made, so nothing ran."),
    }
}

/// The number in the last parentheses of a message, as in "… on '127.0.0.1' (111)".
pub(crate) fn errno_in_parens(m: &str) -> Option<i64> {
    let end = m.rfind(')')?;
    let start = m[..end].rfind('(')?;
    let inner = m[start + 1..end].trim();
    // "(111 \"Connection refused\")" as printed by newer libmysqlclient.
    let number = inner.split_whitespace().next()?;
    number.parse().ok()
}

/// The server's "Aborted connection … (reason)" line: the reason decides.
pub(crate) fn aborted_connection(m: &str) -> Verdict {
    if m.contains("got timeout reading communication packets") {
        Verdict::new(&[(IdleTimeout, 0.6), (NetTimeout, 0.3), (NetworkDrop, 0.1)], Retry::ReconnectThenRetry)
            .note("The server closed a connection after a read timed out. The same words cover two causes: a connection idle past wait_timeout/interactive_timeout, and a transfer stalled mid-packet past net_read_timeout.")
            .tell("'Got timeout reading communication packets' is both idle timeout and net_read_timeout: if the client was idle (between statements) it is wait_timeout; if it was in the middle of sending a statement or LOAD DATA, net_read_timeout")
            .lost(true)
    } else if m.contains("got a packet bigger than") {
        Verdict::new(&[(PacketTooLarge, 0.95), (Unknown, 0.05)], Retry::DoNotRetry)
            .note("The server closed a connection that sent a packet larger than max_allowed_packet; the client will have seen 1153, 2006 or 2013.")
            .lost(true)
    } else if m.contains("got an error reading communication packets") {
        Verdict::new(&[(NetworkDrop, 0.5), (NetTimeout, 0.15), (PacketTooLarge, 0.15), (Unknown, 0.2)], Retry::ReconnectThenRetry)
            .note("The server failed to read from a client: the client closed its socket without saying goodbye (a process that exited, a pool dropping sockets, a killed worker), or something in between reset the connection.")
            .tell("Clients that exit without closing connections produce this line with no error on their side: harmless unless a client saw 2006/2013 at that moment")
            // Seen on MariaDB 10.11: a statement over max_allowed_packet is logged this way,
            // not as "Got a packet bigger than 'max_allowed_packet' bytes".
            .tell("MariaDB logs a packet over max_allowed_packet with these same words: if the client got 1153 or failed on one large statement every time, it is packet_too_large")
            .lost(true)
    } else if m.trim() == "killed" {
        // MariaDB, sql/sql_connect.cc: the reason is "KILLED" when the thread was killed.
        Verdict::new(&[(ConnectionKilled, 0.95), (ServerRestart, 0.05)], Retry::RetryIfIdempotent)
            .note("The server ended this connection because it was killed: KILL CONNECTION by an administrator or a tool (pt-kill, a failover script), or the server killing it during shutdown.")
            .tell("A shutdown also kills connections: a 'Normal shutdown' or 'Shutdown complete' line at the same time means server_restart")
            .lost(true)
    } else if m.contains("got an error writing communication packets")
        || m.contains("got timeout writing communication packets")
    {
        Verdict::new(&[(NetworkDrop, 0.5), (NetTimeout, 0.5)], Retry::RetryIfIdempotent)
            .note("The server failed to send a result to a client (net_write_timeout, or the client went away while the result was being sent).")
            .lost(true)
    } else if m.contains("closed normally without authentication") {
        Verdict::new(&[(Unknown, 0.7), (HostBlocked, 0.3)], Retry::SafeToRetry)
            .note("A client opened a TCP connection and closed it without logging in — typically a load-balancer health check, a port scan or a connectivity probe. No client saw an error. Many of these from one host count towards max_connect_errors.")
            .tell("The host in the line tells who probes; Aborted_connects rises with each")
    } else {
        Verdict::new(
            &[(NetworkDrop, 0.4), (IdleTimeout, 0.3), (Unknown, 0.3)],
            Retry::ReconnectThenRetry,
        )
        .note("The server aborted a client connection.")
        .lost(true)
    }
}

/// Classifies a bare I/O error kind seen on a MySQL connection.
pub fn classify_io(kind: ErrorKind) -> Diagnosis {
    io_verdict(kind).finish()
}

pub(crate) fn io_verdict(kind: ErrorKind) -> Verdict {
    let v = Verdict::new;
    match kind {
        ErrorKind::UnexpectedEof => v(&[(IdleTimeout, 0.45), (ServerRestart, 0.12), (ConnectionKilled, 0.1), (NetworkDrop, 0.1), (ServerCrash, 0.08), (PacketTooLarge, 0.08), (OutOfMemory, 0.07)], Retry::RetryIfIdempotent)
            .note("The server closed the connection (end of stream) without an error packet — this is what a client gets from MariaDB's (and pre-8.0.24 MySQL's) wait_timeout, which closes silently.")
            .tell("If the connection had sat idle longer than wait_timeout before this statement, the server closed it before the statement arrived and nothing ran (reconnect_then_retry); otherwise the outcome is unknown")
            .lost(true),
        ErrorKind::ConnectionReset => v(&[(NetworkDrop, 0.35), (IdleTimeout, 0.3), (ServerRestart, 0.1), (ServerCrash, 0.1), (ConnectionKilled, 0.08), (OutOfMemory, 0.07)], Retry::RetryIfIdempotent)
            .note("The peer reset the TCP connection: a middlebox that forgot the flow, or a server that had already closed the socket (idle timeout, restart, crash) answering a write with RST.")
            .tell("A reset on the first use after an idle period points to idle_timeout or a middlebox; a reset in the middle of a busy statement points to the server dying or a network fault")
            .lost(true),
        ErrorKind::BrokenPipe => v(&[(IdleTimeout, 0.45), (NetworkDrop, 0.2), (ServerRestart, 0.12), (ConnectionKilled, 0.08), (ServerCrash, 0.08), (OutOfMemory, 0.07)], Retry::ReconnectThenRetry)
            .note("Writing to the connection failed with a broken pipe: the other end had already closed it, so the statement was not delivered.")
            .lost(true),
        ErrorKind::ConnectionAborted => v(&[(NetworkDrop, 0.5), (IdleTimeout, 0.2), (ServerRestart, 0.15), (ServerCrash, 0.15)], Retry::RetryIfIdempotent)
            .note("The connection was aborted locally (the OS gave up on it).")
            .lost(true),
        ErrorKind::NotConnected => v(&[(NetworkDrop, 0.4), (IdleTimeout, 0.4), (ServerRestart, 0.2)], Retry::ReconnectThenRetry)
            .note("The socket is no longer connected, so nothing was sent.")
            .lost(true),
        ErrorKind::ConnectionRefused => connect_failure(codes::CR_CONN_HOST_ERROR, "(111)"),
        ErrorKind::TimedOut => v(&[(NetworkDrop, 0.45), (ServerUnreachable, 0.3), (NetTimeout, 0.25)], Retry::RetryIfIdempotent)
            .note("An operation on the connection timed out: packets are being dropped (a middlebox, a dead host), or the server is too slow to answer within the client's timeout.")
            .tell("A timeout while connecting means unreachable; a timeout on an established, idle connection means a middlebox dropped it")
            .lost(true),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable | ErrorKind::AddrNotAvailable => {
            v(&[(ServerUnreachable, 0.7), (NetworkDrop, 0.3)], Retry::SafeToRetry)
                .note("The server's address cannot be reached from this host.")
        }
        _ => v(&[(Unknown, 1.0)], Retry::DoNotRetry)
            .note(format!("The I/O error kind {kind:?} is not one that goneaway recognises as connection-related.")),
    }
}

/// Classifies an error from the `mysql_async` driver (0.37).
///
/// Server errors go through [`classify_code`]; I/O errors through [`classify_io`] (an
/// `UnexpectedEof` after idling is what MariaDB's `wait_timeout` looks like); driver errors
/// by variant.
#[cfg(feature = "mysql_async")]
pub fn classify_mysql_async(err: &mysql_async::Error) -> Diagnosis {
    use mysql_async::{DriverError, Error, IoError};
    match err {
        Error::Server(e) => classify_code(e.code, Some(&e.state), Some(&e.message)),
        Error::Io(IoError::Io(io)) => {
            // mysql_async wraps packet-codec failures as `io::Error::other(PacketCodecError)`.
            let text = io.to_string();
            if io.kind() == ErrorKind::Other && text.contains("Packets out of sync") {
                // Safe Rust cannot share one `Conn` between tasks, so the usual cause of an
                // out-of-sync packet (two users of one connection) is out of reach. What is
                // left is an unsolicited packet: MySQL 8.0.24+'s 4031 inactivity error, sent
                // with sequence id 0 just before the server closes an idle connection.
                return Verdict::new(&[(IdleTimeout, 0.6), (OutOfSync, 0.25), (NetworkDrop, 0.15)], Retry::RetryIfIdempotent)
                    .note("mysql_async received a packet with an unexpected sequence number. With mysql_async this is almost always MySQL 8.0.24+'s ER_CLIENT_INTERACTION_TIMEOUT (4031), which the server sends unsolicited, with sequence id 0, just before it closes a connection idle past wait_timeout; mysql_async reports it as 'Packets out of sync' instead of 4031.")
                    .tell("If the connection had been idle at least wait_timeout (interactive_timeout for interactive sessions), this is the 4031 inactivity close and the statement never ran")
                    .tell("The server's general log or performance_schema.error_log (MySQL 8) shows the inactivity disconnects")
                    .lost(true)
                    .finish();
            }
            if io.kind() == ErrorKind::Other {
                if let Some(d) = crate::patterns::classify_known(&text) {
                    return d;
                }
            }
            io_verdict(io.kind()).finish()
        }
        #[allow(unreachable_patterns)]
        Error::Io(other) => Verdict::new(&[(ServerUnreachable, 0.5), (NetworkDrop, 0.3), (Unknown, 0.2)], Retry::SafeToRetry)
            .note(format!("A TLS error on the connection: {other}."))
            .lost(true)
            .finish(),
        Error::Driver(d) => match d {
            DriverError::ConnectionClosed => Verdict::new(DISCONNECT_2006, Retry::ReconnectThenRetry)
                .note("mysql_async found the connection already closed before sending, so nothing ran.")
                .lost(true)
                .finish(),
            DriverError::PacketTooLarge => Verdict::new(&[(PacketTooLarge, 1.0)], Retry::DoNotRetry)
                .note("mysql_async refused to send a packet larger than max_allowed_packet.")
                .finish(),
            DriverError::PacketOutOfOrder | DriverError::UnexpectedPacket { .. } => {
                Verdict::new(&[(OutOfSync, 0.6), (IdleTimeout, 0.2), (NetworkDrop, 0.2)], Retry::DoNotRetry)
                    .note("mysql_async received a packet it did not expect; the connection's protocol state is broken.")
                    .tell("Right after an idle period, an unexpected packet can be MySQL 8's 4031 inactivity error: idle_timeout")
                    .lost(true)
                    .finish()
            }
            DriverError::PoolDisconnected => Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
                .note("The application disconnected the mysql_async pool (Pool::disconnect) and then tried to use it; this is the application shutting down, not the server.")
                .finish(),
            other => Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
                .note(format!("mysql_async driver error: {other}."))
                .finish(),
        },
        Error::Other(e) => crate::patterns::classify_known(&e.to_string()).unwrap_or_else(|| {
            Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
                .note(format!("mysql_async error: {e}."))
                .finish()
        }),
        Error::Url(_) => Verdict::new(&[(Unknown, 1.0)], Retry::DoNotRetry)
            .note("The connection URL is invalid; this is configuration, not a lost connection.")
            .finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_away_means_nothing_ran() {
        let d = classify_code(2006, Some("HY000"), Some("MySQL server has gone away"));
        assert_eq!(d.primary(), Cause::IdleTimeout);
        assert_eq!(d.retry, Retry::ReconnectThenRetry);
        assert!(d.is_disconnect());
        assert_eq!(d.symbol, Some("CR_SERVER_GONE_ERROR"));
        assert!(d.mentions(Cause::PacketTooLarge));
    }

    #[test]
    fn lost_mid_query_outcome_unknown() {
        let d = classify_code(
            2013,
            None,
            Some("Lost connection to MySQL server during query"),
        );
        assert_eq!(d.retry, Retry::RetryIfIdempotent);
        assert!(d
            .tell_apart
            .iter()
            .any(|t| t.contains("outcome is unknown")));
    }

    #[test]
    fn lost_during_handshake_is_safe() {
        let d = classify_code(
            2013,
            Some("HY000"),
            Some("Lost connection to MySQL server at 'reading initial communication packet', system error: 0"),
        );
        assert_eq!(d.primary(), Cause::ServerUnreachable);
        assert_eq!(d.retry, Retry::SafeToRetry);
    }

    #[test]
    fn clash_4031() {
        let mysql = classify_code(4031, Some("HY000"), Some("The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior."));
        assert_eq!(mysql.primary(), Cause::IdleTimeout);
        assert_eq!(mysql.retry, Retry::ReconnectThenRetry);
        let mariadb = classify_code(
            4031,
            Some("HY000"),
            Some(
                "Referenced trigger 'trg' for the given action time and event type does not exist",
            ),
        );
        assert_eq!(mariadb.primary(), Cause::Unknown);
        assert_eq!(mariadb.retry, Retry::DoNotRetry);
        assert_eq!(mariadb.symbol, Some("ER_REFERENCED_TRG_DOES_NOT_EXIST"));
    }

    #[test]
    fn codes_table() {
        let cases: &[(u16, Cause, Retry)] = &[
            (1040, TooManyConnections, Retry::SafeToRetry),
            (1045, AccessDenied, Retry::DoNotRetry),
            (1053, ServerRestart, Retry::ReconnectThenRetry),
            (1129, HostBlocked, Retry::DoNotRetry),
            (1130, AccessDenied, Retry::DoNotRetry),
            (1153, PacketTooLarge, Retry::DoNotRetry),
            (1159, NetTimeout, Retry::RetryIfIdempotent),
            (1161, NetTimeout, Retry::RetryIfIdempotent),
            (1205, LockWaitTimeout, Retry::RetryTransaction),
            (1213, Deadlock, Retry::RetryTransaction),
            (1317, ConnectionKilled, Retry::RetryIfIdempotent),
            (1927, ConnectionKilled, Retry::RetryIfIdempotent),
            (1969, QueryTimeout, Retry::DoNotRetry),
            (2014, OutOfSync, Retry::DoNotRetry),
            (2020, PacketTooLarge, Retry::DoNotRetry),
            (3024, QueryTimeout, Retry::DoNotRetry),
            (9999, Unknown, Retry::DoNotRetry),
        ];
        for &(code, cause, retry) in cases {
            let d = classify_code(code, None, None);
            assert_eq!((code, d.primary(), d.retry), (code, cause, retry));
        }
    }

    #[test]
    fn connect_errno_decides() {
        let d = classify_code(
            2003,
            Some("HY000"),
            Some("Can't connect to MySQL server on '127.0.0.1' (111)"),
        );
        assert_eq!(d.primary(), ServerUnreachable);
        assert!(d.explanation.contains("refused"));
        let d = classify_code(
            2003,
            None,
            Some("Can't connect to MySQL server on '10.0.0.5' (110)"),
        );
        assert!(d.mentions(NetworkDrop));
        assert_eq!(
            errno_in_parens("on 'x' (111 \"Connection refused\")"),
            Some(111)
        );
    }

    #[test]
    fn io_kinds() {
        assert_eq!(classify_io(ErrorKind::UnexpectedEof).primary(), IdleTimeout);
        assert_eq!(
            classify_io(ErrorKind::BrokenPipe).retry,
            Retry::ReconnectThenRetry
        );
        assert_eq!(
            classify_io(ErrorKind::ConnectionReset).retry,
            Retry::RetryIfIdempotent
        );
        assert_eq!(
            classify_io(ErrorKind::ConnectionRefused).retry,
            Retry::SafeToRetry
        );
        assert!(classify_io(ErrorKind::ConnectionRefused).is_connect_failure());
        assert_eq!(classify_io(ErrorKind::InvalidData).primary(), Unknown);
    }

    #[test]
    fn likelihoods_sorted_and_bounded() {
        for code in [2006u16, 2013, 1159, 1927, 2003] {
            let d = classify_code(code, None, None);
            let sum: f64 = d.causes.iter().map(|c| c.likelihood).sum();
            assert!(sum <= 1.0 + 1e-9, "{code}: {sum}");
            assert!(d
                .causes
                .windows(2)
                .all(|w| w[0].likelihood >= w[1].likelihood));
            assert!(!d.fixes.is_empty());
        }
    }
}
