//! The control interface: a line-based TCP protocol to drive a running relay, usable with `nc`.
//!
//! One command per line; every command gets exactly one line back, `OK ...` or
//! `ERR ...`. A connection may send as many commands as it likes.
//!
//! | command | answer |
//! |---|---|
//! | `status` | `OK {json}`: the [`Status`](crate::Status), on one line |
//! | `set <fault>` | `OK set <fault>` (faults as in [`Fault`]'s text form, e.g. `set latency 50ms`) |
//! | `remove <kind>` | `OK removed <kind>` or `OK <kind> was not set` |
//! | `clear` | `OK cleared` |
//! | `reset` | `OK reset <n> flows` |
//! | `4031` | `OK sent 4031 to <n> flows` |
//! | `blackhole` | `OK blackholed <n> flows` |
//! | `help` | `OK ...` the grammar |
//! | `quit` | `OK bye`, then the relay closes the connection |
//!
//! ```text
//! $ echo 'set blackhole-idle 10s' | nc -q1 127.0.0.1 7070
//! OK set blackhole-idle 10s
//! ```
//!
//! **Invariant:** the control interface listens on loopback only, unless
//! [`ControlConfig::allow_remote`] is set: whoever reaches it can cut every connection
//! through the relay, and there is no authentication.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::fault::FAULT_SYNTAX;
use crate::relay::{stopped, Shared};
use crate::{Error, Fault, FaultKind, Relay};

/// The longest command line accepted. Commands are a few dozen bytes; this only keeps
/// a stray client from growing the buffer without end.
const MAX_COMMAND_LINE: usize = 4096;

/// The longest answer [`send`] reads: a status line with many flows is large, but not
/// this large.
const MAX_ANSWER_LINE: usize = 16 * 1024 * 1024;

/// How long [`send`] waits for the whole exchange.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of `help`.
const HELP: &str =
    "commands: status | set <fault> | remove <kind> | clear | reset | 4031 | blackhole | help | quit";

/// Where and how to serve the control interface.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// `host:port`; port 0 picks a free one (read it back with
    /// [`ControlServer::local_addr`]).
    addr: String,
    /// Off by default: see the module's invariant.
    allow_remote: bool,
}

impl ControlConfig {
    /// Serve on `addr` (`host:port`), which must resolve to loopback addresses only.
    pub fn new(addr: impl ToString) -> Self {
        ControlConfig {
            addr: addr.to_string(),
            allow_remote: false,
        }
    }

    /// Allow an address other machines can reach. The protocol has no authentication:
    /// anyone who can connect can reset every flow. Meant for a relay in a container
    /// whose port is published to the host only.
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.allow_remote = allow;
        self
    }
}

impl From<SocketAddr> for ControlConfig {
    fn from(addr: SocketAddr) -> Self {
        ControlConfig::new(addr)
    }
}

impl From<&str> for ControlConfig {
    fn from(addr: &str) -> Self {
        ControlConfig::new(addr)
    }
}

impl From<String> for ControlConfig {
    fn from(addr: String) -> Self {
        ControlConfig::new(addr)
    }
}

/// A running control interface. It stops when this handle is dropped, on
/// [`ControlServer::shutdown`], or when the relay stops.
#[derive(Debug)]
pub struct ControlServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// The address the control interface listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening, closes the control connections and waits for that.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Serves the control interface of `relay` on `config` (a `SocketAddr`, a `"host:port"`
/// string, or a [`ControlConfig`]).
///
/// Refuses ([`Error::NonLoopbackControl`]) any address that resolves to a non-loopback
/// address unless [`ControlConfig::allow_remote`] is set. The control interface does not
/// keep the relay alive: when the relay stops, so does its control interface.
pub async fn serve(
    relay: &Relay,
    config: impl Into<ControlConfig>,
) -> Result<ControlServer, Error> {
    let config = config.into();
    let bind_error = |source| Error::Bind {
        addr: config.addr.clone(),
        source,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(config.addr.as_str())
        .await
        .map_err(bind_error)?
        .collect();
    if !config.allow_remote {
        if let Some(addr) = addrs.iter().find(|a| !a.ip().to_canonical().is_loopback()) {
            return Err(Error::NonLoopbackControl { addr: *addr });
        }
    }
    let listener = TcpListener::bind(addrs.as_slice())
        .await
        .map_err(bind_error)?;
    let local_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let shared = relay.shared().clone();
    info!(control = %local_addr, relay = %shared.local_addr, "control interface listening");
    let task = tokio::spawn(accept_loop(shared, listener, stop_rx));
    Ok(ControlServer {
        local_addr,
        stop,
        task: Some(task),
    })
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut relay_stopping = shared.shutdown.subscribe();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = stopped(&mut relay_stopping) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    debug!(%peer, "control connection");
                    sessions.spawn(session(shared.clone(), socket));
                }
                Err(error) => {
                    warn!(%error, "control accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    // Dropping the set aborts the sessions: their sockets close.
    sessions.abort_all();
    debug!("control interface stopped");
}

/// One control connection: commands in, one answer line each.
async fn session(shared: Arc<Shared>, socket: TcpStream) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        let limit = (MAX_COMMAND_LINE + 1) as u64;
        let n = match (&mut read).take(limit).read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(error) => {
                debug!(%error, "control connection failed");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let (answer, close) = if line.len() > MAX_COMMAND_LINE {
            (
                format!("ERR command longer than {MAX_COMMAND_LINE} bytes"),
                true,
            )
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => execute(&shared, text.trim()),
                Err(_) => ("ERR the command is not UTF-8 text".to_owned(), false),
            }
        };
        let written = async {
            write.write_all(answer.as_bytes()).await?;
            write.write_all(b"\n").await
        };
        if written.await.is_err() || close {
            return;
        }
    }
}

/// A control command, parsed from one line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `status`
    Status,
    /// `set <fault>`
    Set(Fault),
    /// `remove <kind>`
    Remove(FaultKind),
    /// `clear`
    Clear,
    /// `reset`
    Reset,
    /// `4031`
    Inject4031,
    /// `blackhole`
    Blackhole,
    /// `help`
    Help,
    /// `quit`
    Quit,
}

impl FromStr for Command {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let input = s.trim();
        let fail = |reason: String| Error::ParseCommand {
            input: input.to_owned(),
            reason,
        };
        let (word, rest) = match input.split_once(char::is_whitespace) {
            Some((word, rest)) => (word, rest.trim()),
            None => (input, ""),
        };
        let word = word.to_ascii_lowercase();
        let command = match word.as_str() {
            "set" if rest.is_empty() => {
                return Err(fail(format!("`set` needs a fault: {FAULT_SYNTAX}")))
            }
            "set" => Command::Set(rest.parse()?),
            "remove" if rest.is_empty() => {
                return Err(fail(format!(
                    "`remove` needs a fault kind: {}",
                    kind_names()
                )))
            }
            "remove" => Command::Remove(rest.parse()?),
            "status" => Command::Status,
            "clear" => Command::Clear,
            "reset" => Command::Reset,
            "4031" => Command::Inject4031,
            "blackhole" => Command::Blackhole,
            "help" => Command::Help,
            "quit" | "exit" => Command::Quit,
            "" => return Err(fail("empty command; try `help`".to_owned())),
            other => return Err(fail(format!("unknown command `{other}`; {HELP}"))),
        };
        let takes_argument = matches!(command, Command::Set(_) | Command::Remove(_));
        if !takes_argument && !rest.is_empty() {
            return Err(fail(format!("`{word}` takes no argument")));
        }
        Ok(command)
    }
}

fn kind_names() -> String {
    FaultKind::ALL.map(FaultKind::name).join(", ")
}

/// Runs one command line; returns the answer line and whether to close the connection.
fn execute(shared: &Shared, line: &str) -> (String, bool) {
    let command = match line.parse::<Command>() {
        Ok(command) => command,
        Err(error) => return (format!("ERR {error}"), false),
    };
    debug!(?command, "control command");
    let answer = match command {
        Command::Status => match serde_json::to_string(&shared.status()) {
            Ok(json) => format!("OK {json}"),
            Err(error) => format!("ERR cannot encode the status: {error}"),
        },
        Command::Set(fault) => {
            shared.set(fault);
            format!("OK set {fault}")
        }
        Command::Remove(kind) => {
            if shared.remove(kind) {
                format!("OK removed {kind}")
            } else {
                format!("OK {kind} was not set")
            }
        }
        Command::Clear => {
            shared.clear();
            "OK cleared".to_owned()
        }
        Command::Reset => format!("OK reset {} flows", shared.reset_all()),
        Command::Inject4031 => format!("OK sent 4031 to {} flows", shared.inject_4031_all()),
        Command::Blackhole => format!("OK blackholed {} flows", shared.blackhole_all()),
        Command::Help => format!("OK {HELP}; faults: {FAULT_SYNTAX}"),
        Command::Quit => return ("OK bye".to_owned(), true),
    };
    (answer, false)
}

/// Sends one command line to the control interface at `addr` and returns its answer:
/// the text after `OK ` (for `status`, the JSON), or [`Error::Rejected`] with the text
/// after `ERR `. This is what `goneaway chaos ctl` uses.
///
/// The whole exchange is bounded by a few seconds ([`Error::ControlTimeout`]).
pub async fn send(addr: impl ToSocketAddrs, line: &str) -> Result<String, Error> {
    let line = line.trim();
    if line.contains(['\n', '\r']) {
        return Err(Error::ParseCommand {
            input: line.to_owned(),
            reason: "a command is a single line".to_owned(),
        });
    }
    let exchange = async {
        let mut socket = TcpStream::connect(addr).await.map_err(Error::Control)?;
        socket
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(Error::Control)?;
        let mut answer = Vec::new();
        BufReader::new(socket)
            .take(MAX_ANSWER_LINE as u64)
            .read_until(b'\n', &mut answer)
            .await
            .map_err(Error::Control)?;
        Ok::<_, Error>(answer)
    };
    let answer = tokio::time::timeout(SEND_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::ControlTimeout(SEND_TIMEOUT))??;
    let answer = String::from_utf8_lossy(&answer);
    let answer = answer.trim_end_matches(['\r', '\n']);
    if answer == "OK" {
        Ok(String::new())
    } else if let Some(rest) = answer.strip_prefix("OK ") {
        Ok(rest.to_owned())
    } else if let Some(rest) = answer.strip_prefix("ERR ") {
        Err(Error::Rejected(rest.to_owned()))
    } else {
        Err(Error::BadAnswer(answer.to_owned()))
    }
}
