//! One throwaway `mariadbd`: start, restart, crash, kill a connection, stop, clean up.

use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::{Binaries, HarnessError};

/// The application account every harness server has, with all privileges on [`DATABASE`].
pub const APP_USER: &str = "goneaway";
/// The application account's password. A throwaway server on loopback: not a secret, but
/// still never printed by the harness (see [`Server::url_redacted`]).
pub const APP_PASSWORD: &str = "goneaway-test-password";
/// The database every harness server has.
pub const DATABASE: &str = "goneaway";

/// How long a server may take to accept connections. MariaDB on a small machine is ready in
/// well under a second; the bound is generous for a loaded CI machine running tests in
/// parallel, and it is what turns a broken install into an error rather than a hang.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before the harness reports it.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Chooses the server variables of a [`Server`], then starts it.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    /// Server variables passed as `--name=value`, in order; later values win.
    vars: Vec<(String, String)>,
    /// See [`DEFAULT_READY_TIMEOUT`].
    ready_timeout: Duration,
    /// A port chosen by the caller (clusters configure their members with each other's
    /// ports before starting them); `None` picks a free one, retried on a clash.
    port: Option<u16>,
    /// Whether to run `mariadb-install-db`. A Galera joiner starts from an empty data
    /// directory and receives its data from a donor (state transfer).
    install: bool,
    /// Whether to create the application account and database after the start. A Galera
    /// joiner gets them from the cluster.
    bootstrap: bool,
    /// Whether the server's directory is opened to every user: the rsync daemon of a
    /// Galera state transfer runs as `nobody` and must reach and write the data directory.
    open_to_all: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            vars: vec![
                // Small buffers: many servers run side by side on a two-core test machine.
                ("innodb_buffer_pool_size".into(), "16M".into()),
                ("innodb_log_file_size".into(), "8M".into()),
                ("innodb_flush_log_at_trx_commit".into(), "2".into()),
                // No DNS: every client is on 127.0.0.1, and a lookup could only add delay.
                ("skip_name_resolve".into(), "ON".into()),
                // Aborted connections ("Got timeout reading communication packets") reach the
                // error log only from log_warnings 3 on in MariaDB; the doctor reads them.
                ("log_warnings".into(), "4".into()),
                ("max_connections".into(), "200".into()),
            ],
            ready_timeout: DEFAULT_READY_TIMEOUT,
            port: None,
            install: true,
            bootstrap: true,
            open_to_all: false,
        }
    }
}

impl ServerBuilder {
    /// Sets a server variable, such as `wait_timeout` to `2` or `max_allowed_packet` to `1M`.
    pub fn var(mut self, name: &str, value: impl Display) -> Self {
        let name = name.replace('-', "_");
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value.to_string()));
        self
    }

    /// How long to wait for the server to accept connections (default 60 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Listens on this port instead of a free one the harness picks (no retry on a clash).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts from an empty data directory, without `mariadb-install-db` and without the
    /// application account (a Galera joiner receives both from its donor).
    pub(crate) fn empty_data(mut self) -> Self {
        self.install = false;
        self.bootstrap = false;
        self
    }

    /// Opens the server's directory to every user (see the field).
    pub(crate) fn open_to_all(mut self) -> Self {
        self.open_to_all = true;
        self
    }

    /// Creates the data directory, starts `mariadbd` and waits until it accepts connections.
    pub async fn start(self) -> Result<Server, HarnessError> {
        // A free port can be taken by another test between our probe and mariadbd's bind:
        // try a few ports (each with a fresh directory, installed in well under a second)
        // before giving up. A port the caller chose gets one try.
        let mut last_error = None;
        for _ in 0..5 {
            let server = self.create().await?;
            match server.start().await {
                Ok(()) => {
                    if self.bootstrap {
                        server.bootstrap().await?;
                    }
                    return Ok(server);
                }
                Err(e) if !server.fixed_port && server.port_was_taken() => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Creates the directory (and the data, unless [`ServerBuilder::empty_data`]) of a
    /// server that is not started yet, so that a cluster can start its members together.
    pub(crate) async fn create(&self) -> Result<Server, HarnessError> {
        let binaries = Binaries::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("goneaway-mariadb-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the server's temporary directory", e))?;
        if self.install {
            install_db(&binaries, dir.path()).await?;
        } else {
            for sub in ["data", "tmp"] {
                std::fs::create_dir_all(dir.path().join(sub))
                    .map_err(|e| HarnessError::io("creating the server's directories", e))?;
            }
        }
        if self.open_to_all {
            open_to_all(dir.path())?;
        }
        Ok(Server {
            dir,
            binaries,
            port: self.port.map_or_else(free_port, Ok)?,
            fixed_port: self.port.is_some(),
            vars: Mutex::new(self.vars.clone()),
            ready_timeout: self.ready_timeout,
            child: Mutex::new(None),
        })
    }
}

/// A running throwaway MariaDB server.
///
/// Methods take `&self`, so tests can share a server between tasks (`Arc<Server>`).
#[derive(Debug)]
pub struct Server {
    /// Data directory, socket, pid file and error log; removed on drop.
    dir: tempfile::TempDir,
    binaries: Binaries,
    /// Kept across restarts so clients and relays can reconnect to the same address.
    port: u16,
    /// Whether the caller chose the port (a clash is then an error, not a retry).
    fixed_port: bool,
    /// Passed as `--name=value` at every start; [`Server::set_var`] changes them for the
    /// next one.
    vars: Mutex<Vec<(String, String)>>,
    ready_timeout: Duration,
    /// `None` while stopped or crashed.
    child: Mutex<Option<Child>>,
}

impl Server {
    /// Chooses variables for a new server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with the default variables.
    pub async fn start_default() -> Result<Server, HarnessError> {
        ServerBuilder::default().start().await
    }

    /// The server's TCP address (always on 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The application account's URL, for mysql_async and goneaway.
    ///
    /// `prefer_socket=false` keeps mysql_async on TCP: otherwise it would switch to the Unix
    /// socket it finds in `@@socket`, past any relay placed in front of the server.
    pub fn url(&self) -> String {
        self.url_for(self.addr())
    }

    /// The application account's URL through another address, such as a relay's.
    pub fn url_for(&self, addr: SocketAddr) -> String {
        format!(
            "mysql://{APP_USER}:{APP_PASSWORD}@{}:{}/{DATABASE}?prefer_socket=false",
            addr.ip(),
            addr.port()
        )
    }

    /// The URL with the password masked, for anything a person reads.
    pub fn url_redacted(&self) -> String {
        self.url().replace(APP_PASSWORD, "****")
    }

    /// The administrator's URL (root, no password, loopback only).
    pub fn root_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/?prefer_socket=false", self.port)
    }

    /// The server's error log.
    pub fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sets a server variable for the next [`Server::start`] (the running server keeps its
    /// values; use `SET GLOBAL` through [`Server::admin`] for those).
    pub fn set_var(&self, name: &str, value: impl Display) {
        let name = name.replace('-', "_");
        let mut vars = self.vars.lock().unwrap();
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value.to_string()));
    }

    /// Removes a server variable from the next [`Server::start`]'s command line.
    pub fn remove_var(&self, name: &str) {
        let name = name.replace('-', "_");
        self.vars.lock().unwrap().retain(|(n, _)| *n != name);
    }

    /// A variable's value on the command line of the next start, if set.
    pub fn var(&self, name: &str) -> Option<String> {
        let name = name.replace('-', "_");
        self.vars
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// Starts the server again after [`Server::stop`] or [`Server::crash`], on the same port
    /// with the same data, and waits until it accepts connections.
    pub async fn start(&self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mariadbd.out"))
            .map_err(|e| HarnessError::io("opening the server's output file", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| HarnessError::io("opening the server's output file", e))?;
        let mut command = Command::new(&self.binaries.mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("pid").display()
            ))
            .arg(format!("--log-error={}", self.error_log().display()))
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .args(
                self.vars
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(n, v)| format!("--{n}={v}")),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if is_root() {
            command.arg("--user=root");
        }
        // If the test process dies without unwinding (SIGKILL, abort), take the server with
        // it instead of leaving an orphan listening on a port.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| HarnessError::io("starting mariadbd", e))?;
        tracing::debug!(pid = child.id(), port = self.port, "mariadbd started");
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready().await
    }

    /// Shuts the server down gracefully (SIGTERM) and waits for it to exit.
    pub async fn stop(&self) -> Result<(), HarnessError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if self.reap() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill_process();
                return Err(HarnessError::StopTimeout {
                    pid,
                    seconds: STOP_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A graceful restart: shutdown, then start on the same port with the same data.
    pub async fn restart(&self) -> Result<(), HarnessError> {
        self.stop().await?;
        self.start().await
    }

    /// Kills the server with SIGKILL, as a crash or the OOM killer would, and waits for the
    /// process to be gone. Call [`Server::start`] to bring it back (with crash recovery).
    pub async fn crash(&self) -> Result<(), HarnessError> {
        if self.pid().is_none() {
            return Err(HarnessError::NotRunning);
        }
        self.kill_process();
        Ok(())
    }

    /// [`Server::crash`], then [`Server::start`].
    pub async fn crash_and_restart(&self) -> Result<(), HarnessError> {
        self.crash().await?;
        self.start().await
    }

    /// Runs `KILL CONNECTION id` as the administrator: the victim's next read sees the
    /// connection closed (MariaDB sends it error 1927 first when it is between commands).
    pub async fn kill_connection(&self, id: u32) -> Result<(), HarnessError> {
        self.admin(&format!("KILL CONNECTION {id}")).await
    }

    /// Runs `KILL QUERY id`: the victim's running statement fails with 1317, the connection
    /// stays.
    pub async fn kill_query(&self, id: u32) -> Result<(), HarnessError> {
        self.admin(&format!("KILL QUERY {id}")).await
    }

    /// Opens an administrator connection.
    pub async fn admin_conn(&self) -> Result<mysql_async::Conn, HarnessError> {
        let opts =
            mysql_async::Opts::from_url(&self.root_url()).expect("the harness builds a valid URL");
        Ok(mysql_async::Conn::new(opts).await?)
    }

    /// Runs one administrative statement as root.
    pub async fn admin(&self, statement: &str) -> Result<(), HarnessError> {
        let mut conn = self.admin_conn().await?;
        conn.query_drop(statement).await?;
        conn.disconnect().await?;
        Ok(())
    }

    /// The error log's text (empty when it does not exist yet).
    pub fn error_log_text(&self) -> String {
        std::fs::read_to_string(self.error_log()).unwrap_or_default()
    }

    /// Whether the last start failed because the port was taken (by another test).
    pub(crate) fn port_was_taken(&self) -> bool {
        let tail = self.log_tail();
        tail.contains("Bind on TCP/IP port") || tail.contains("Address already in use")
    }

    /// Empties the data directory of a stopped server, so that its next start begins from
    /// nothing (a Galera node rejoining with a full state transfer).
    pub(crate) fn wipe_data(&self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Err(HarnessError::Running);
        }
        let data = self.data_dir();
        std::fs::remove_dir_all(&data)
            .map_err(|e| HarnessError::io("emptying the data directory", e))?;
        std::fs::create_dir(&data)
            .map_err(|e| HarnessError::io("emptying the data directory", e))?;
        open_to_all(&data)
    }

    /// A global status value (`information_schema.GLOBAL_STATUS`), read as root.
    pub async fn status(&self, name: &str) -> Result<Option<String>, HarnessError> {
        let mut conn = self.admin_conn().await?;
        let value: Option<String> = conn
            .exec_first(
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?",
                (name,),
            )
            .await?;
        conn.disconnect().await?;
        Ok(value)
    }

    /// A global variable's value (`information_schema.GLOBAL_VARIABLES`), read as root.
    pub async fn global(&self, name: &str) -> Result<Option<String>, HarnessError> {
        let mut conn = self.admin_conn().await?;
        let value: Option<String> = conn
            .exec_first(
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = ?",
                (name,),
            )
            .await?;
        conn.disconnect().await?;
        Ok(value)
    }

    fn log_tail(&self) -> String {
        let text = self.error_log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Whether the child has exited; reaps it if so.
    fn reap(&self) -> bool {
        let mut guard = self.child.lock().unwrap();
        match guard.as_mut() {
            None => true,
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => {
                    tracing::debug!(%status, port = self.port, "mariadbd exited");
                    *guard = None;
                    true
                }
                Ok(None) => false,
                Err(_) => {
                    *guard = None;
                    true
                }
            },
        }
    }

    fn kill_process(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&self) -> Result<(), HarnessError> {
        let started = Instant::now();
        let opts =
            mysql_async::Opts::from_url(&self.root_url()).expect("the harness builds a valid URL");
        loop {
            if self.reap() {
                return Err(self.not_ready(started, "mariadbd exited"));
            }
            if started.elapsed() > self.ready_timeout {
                self.kill_process();
                return Err(self.not_ready(started, "timed out"));
            }
            // Only real logins: a bare TCP probe would be logged as an aborted connection
            // and counted in Aborted_connects, evidence the doctor must not be fed.
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let mut conn = mysql_async::Conn::new(opts.clone()).await?;
                conn.query_drop("SELECT 1").await?;
                conn.disconnect().await
            })
            .await;
            if let Ok(Ok(())) = attempt {
                tracing::debug!(port = self.port, elapsed = ?started.elapsed(), "mariadbd ready");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn not_ready(&self, started: Instant, reason: &str) -> HarnessError {
        HarnessError::NotReady {
            seconds: started.elapsed().as_secs(),
            reason: reason.to_string(),
            log: self.error_log(),
            tail: self.log_tail(),
        }
    }

    /// Creates the application account and database on a new server.
    pub(crate) async fn bootstrap(&self) -> Result<(), HarnessError> {
        let mut conn = self.admin_conn().await?;
        conn.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS {DATABASE};
             CREATE USER IF NOT EXISTS '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}';
             GRANT ALL PRIVILEGES ON *.* TO '{APP_USER}'@'%' WITH GRANT OPTION;"
        ))
        .await?;
        conn.disconnect().await?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL, not a graceful stop: drop runs while a failing test unwinds, and the data
        // is thrown away with the directory anyway.
        self.kill_process();
    }
}

async fn install_db(binaries: &Binaries, dir: &Path) -> Result<(), HarnessError> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| HarnessError::io("creating the server's tmpdir", e))?;
    let mut command = tokio::process::Command::new(&binaries.install_db);
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        // A private tmpdir: bootstraps running side by side otherwise clash over temporary
        // table files in the shared /tmp.
        .arg(format!("--tmpdir={}", tmp.display()))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if is_root() {
        command.arg("--user=root");
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .map_err(|_| HarnessError::InstallDb {
            status: "timed out after 120 s".into(),
            output: String::new(),
        })?
        .map_err(|e| HarnessError::io("running mariadb-install-db", e))?;
    if !output.status.success() {
        return Err(HarnessError::InstallDb {
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

/// Makes `dir` and everything under it readable and writable by every user (see
/// `ServerBuilder::open_to_all`).
fn open_to_all(dir: &Path) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| HarnessError::io("opening the server's directory", e))?;
        let mode = if meta.is_dir() { 0o777 } else { 0o666 };
        if meta.file_type().is_symlink() {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| HarnessError::io("opening the server's directory", e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)
                .map_err(|e| HarnessError::io("opening the server's directory", e))?
            {
                stack.push(
                    entry
                        .map_err(|e| HarnessError::io("opening the server's directory", e))?
                        .path(),
                );
            }
        }
    }
    Ok(())
}

/// `n` distinct free ports on 127.0.0.1 (all probed at once, so they differ).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, HarnessError> {
    let listeners = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| HarnessError::io("finding a free port", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| HarnessError::io("finding a free port", e))
        })
        .collect()
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError::io("finding a free port", e))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
