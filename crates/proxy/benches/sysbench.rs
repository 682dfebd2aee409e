//! The proxy's benchmark: sysbench `oltp_point_select` and `oltp_read_only` against one
//! throwaway server four ways, interleaved — directly, through HAProxy in TCP mode (a byte
//! relay that parses nothing: the floor any proxy can reach on this machine), through
//! goneaway proxy, and through goneaway proxy without transaction replay and commit marks
//! (what they cost; `GONEAWAY_BENCH_WORKLOADS=oltp_read_write,oltp_write_only` shows it)
//! — and with server connections shared (`multiplex`), at 1, 8, 32 and 128 threads. Prints throughput, p95 latency, the ratios
//! goneaway/HAProxy and goneaway/direct, and the CPU each proxy process used.
//!
//! Run with `cargo bench -p goneaway-proxy --bench sysbench` (part of `make bench`).
//! `GONEAWAY_BENCH_SECS` sets each run's length (default 5 s), `GONEAWAY_BENCH_ROUNDS` the
//! interleaved rounds averaged (default 3), `GONEAWAY_BENCH_THREADS` the thread counts
//! (default `1,8,32,128`; empty: only the many-clients part), `GONEAWAY_BENCH_WORKLOADS` the sysbench tests. Needs `sysbench` and `haproxy` (`make bench-deps`).
//!
//! The proxy runs in its own process (this binary, re-executed with
//! `GONEAWAY_PROXY_BENCH_CHILD` set), so that its CPU use can be read from `/proc` apart
//! from the harness's and sysbench's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use goneaway_harness::Server;

const CHILD_ENV: &str = "GONEAWAY_PROXY_BENCH_CHILD";
/// Set in the child that runs without transaction replay and commit marks.
const PLAIN_ENV: &str = "GONEAWAY_PROXY_BENCH_PLAIN";
/// The child's max_clients and max_backends (defaults 200 and 150).
const MAX_CLIENTS_ENV: &str = "GONEAWAY_PROXY_BENCH_MAX_CLIENTS";
const MAX_BACKENDS_ENV: &str = "GONEAWAY_PROXY_BENCH_MAX_BACKENDS";
/// Set in the child that shares server connections between sessions.
const MULTIPLEX_ENV: &str = "GONEAWAY_PROXY_BENCH_MULTIPLEX";
const USER: &str = "goneaway";
const PASSWORD: &str = "goneaway-test-password";
const TABLES: u32 = 4;
const TABLE_SIZE: u32 = 10_000;

fn main() {
    if let Ok(backend) = std::env::var(CHILD_ENV) {
        run_child(&backend);
        return;
    }
    // `cargo bench` passes `--bench`; a filter that is not ours (another bench's name)
    // means this bench was not asked for.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "sysbench".contains(f.as_str())) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("proxy benchmark failed: {e}");
        std::process::exit(1);
    }
}

/// The child: a goneaway proxy in front of `backend`; prints its address, runs until its
/// stdin closes.
fn run_child(backend: &str) {
    // As `goneaway proxy` runs it: one worker for the accept loop and the monitor, the
    // sessions on their own threads (config.session_threads), unless
    // GONEAWAY_BENCH_PROXY_WORKERS says otherwise (0: a current-thread runtime).
    let workers = std::env::var("GONEAWAY_BENCH_PROXY_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("a runtime");
    rt.block_on(async {
        let target = goneaway_proxy::BackendTarget::from_url(backend).expect("backend URL");
        let mut config = goneaway_proxy::ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target);
        let env = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        config.max_clients = env(MAX_CLIENTS_ENV, 200);
        config.max_backends = env(MAX_BACKENDS_ENV, 150);
        config.multiplex = std::env::var_os(MULTIPLEX_ENV).is_some();
        // GONEAWAY_BENCH_SESSION_THREADS: 0 runs the sessions on the runtime above.
        config.session_threads = env(
            "GONEAWAY_BENCH_SESSION_THREADS",
            goneaway_proxy::default_session_threads(),
        );
        if std::env::var_os(PLAIN_ENV).is_some() {
            config.transaction_replay = false;
            config.commit_marks = false;
        }
        let proxy = goneaway_proxy::Proxy::start(config).await.expect("proxy");
        println!("{}", proxy.local_addr());
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        proxy.shutdown().await;
    });
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run() -> Result<(), BoxError> {
    let secs: u64 = env_or("GONEAWAY_BENCH_SECS", "5").parse()?;
    let rounds: u32 = env_or("GONEAWAY_BENCH_ROUNDS", "3").parse::<u32>()?.max(1);
    // An empty list skips this part (to run only the many-clients part).
    let threads: Vec<u32> = env_or("GONEAWAY_BENCH_THREADS", "1,8,32,128")
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().parse())
        .collect::<Result<_, _>>()?;
    let server = Server::builder()
        .var("max_connections", 600)
        .var("innodb_buffer_pool_size", "64M")
        .start()
        .await?;
    let load_start = loadavg();
    let direct = server.addr();
    eprintln!("server on {direct}; preparing {TABLES} tables of {TABLE_SIZE} rows");
    sysbench(direct, "oltp_read_only", 4, 0, &["prepare"])?;

    let haproxy = HaProxy::start(direct)?;
    let goneaway = GoneawayChild::start(&server.url(), false)?;
    // The same proxy without transaction replay and commit marks: what they cost.
    let plain = GoneawayChild::start(&server.url(), true)?;
    // The defaults with server connections shared between sessions (`multiplex`).
    let shared = GoneawayChild::start_with(&server.url(), false, &[(MULTIPLEX_ENV, "1")])?;
    let targets = [
        ("direct", direct, None),
        ("haproxy", haproxy.addr, Some(haproxy.child.id())),
        ("goneaway", goneaway.addr, Some(goneaway.child.id())),
        ("plain", plain.addr, Some(plain.child.id())),
        ("shared", shared.addr, Some(shared.child.id())),
    ];
    // Warm the buffer pool and every path once, briefly.
    for (_, addr, _) in &targets {
        sysbench(*addr, "oltp_read_only", 4, 2, &["run"])?;
    }
    let mut results = Vec::new();
    let workloads = env_or(
        "GONEAWAY_BENCH_WORKLOADS",
        "oltp_point_select,oltp_read_only",
    );
    for workload in workloads.split(',') {
        for &n in &threads {
            // Rounds of direct, HAProxy, goneaway in turn: other load on the machine drifts,
            // and interleaving spreads that drift over the three alike.
            let mut sums = [(0.0, 0.0, 0u64, 0.0); 5];
            for round in 1..=rounds {
                for (i, (name, addr, pid)) in targets.iter().enumerate() {
                    let cpu_before = pid.map(cpu_ticks).transpose()?;
                    let started = Instant::now();
                    let out = sysbench(*addr, workload, n, secs, &["run"])?;
                    let wall = started.elapsed().as_secs_f64();
                    let cpu = match (pid, cpu_before) {
                        (Some(pid), Some(before)) => {
                            (cpu_ticks(*pid)? - before) as f64 / 100.0 / wall * 100.0
                        }
                        _ => 0.0,
                    };
                    let r = Outcome::parse(&out)?;
                    eprintln!(
                        "{workload:18} {n:>2} threads round {round} {name:9} {:>9.1} tps {:>7.2} ms p95 {} errors, proxy CPU {cpu:.0}%",
                        r.tps, r.p95_ms, r.errors,
                    );
                    sums[i].0 += r.tps;
                    sums[i].1 += r.p95_ms;
                    sums[i].2 += r.errors;
                    sums[i].3 += cpu;
                }
            }
            let k = f64::from(rounds);
            let row: Vec<(Outcome, f64)> = sums
                .iter()
                .map(|(tps, p95, errors, cpu)| {
                    (
                        Outcome {
                            tps: tps / k,
                            p95_ms: p95 / k,
                            errors: *errors,
                        },
                        cpu / k,
                    )
                })
                .collect();
            results.push((workload, n, row));
        }
    }
    drop(goneaway);
    drop(plain);
    drop(shared);
    drop(haproxy);

    println!();
    println!("load average at start / end: {load_start} / {}", loadavg());
    println!("sysbench {TABLES} tables × {TABLE_SIZE} rows, means of {rounds} interleaved rounds of {secs} s, MariaDB from the harness, {} cores", cores());
    println!();
    println!("goneaway: the defaults (transaction replay and commit marks on); without: both off; shared: the defaults with multiplex on");
    println!();
    println!("| workload | threads | direct tps | HAProxy tps | goneaway tps | without tps | shared tps | goneaway/HAProxy | shared/HAProxy | goneaway/direct | goneaway/without | p95 ms direct / HAProxy / goneaway / shared | proxy CPU HAProxy / goneaway / shared | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|");
    for (workload, n, row) in &results {
        let (d, h, g, w, m) = (&row[0].0, &row[1].0, &row[2].0, &row[3].0, &row[4].0);
        println!(
            "| {workload} | {n} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | **{:.2}** | **{:.2}** | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} / {:.2} | {:.0}% / {:.0}% / {:.0}% | {} |",
            d.tps,
            h.tps,
            g.tps,
            w.tps,
            m.tps,
            g.tps / h.tps,
            m.tps / h.tps,
            g.tps / d.tps,
            g.tps / w.tps,
            d.p95_ms,
            h.p95_ms,
            g.p95_ms,
            m.p95_ms,
            row[1].1,
            row[2].1,
            row[4].1,
            d.errors + h.errors + g.errors + w.errors + m.errors,
        );
    }
    many_clients(&server, secs, rounds).await
}

/// More clients than the server has connections: `GONEAWAY_BENCH_MANY` client threads
/// (default `512,1000`; empty skips this part) of `oltp_point_select` against a server with
/// `max_connections = 100` directly (refused) and through goneaway (`max_backends = 90`,
/// connections shared), and directly against `server` with room for all of them (the
/// baseline: as many server connections as clients).
async fn many_clients(server: &Server, secs: u64, rounds: u32) -> Result<(), BoxError> {
    let counts: Vec<u32> = env_or("GONEAWAY_BENCH_MANY", "512,1000")
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().parse())
        .collect::<Result<_, _>>()?;
    if counts.is_empty() {
        return Ok(());
    }
    let small = Server::builder()
        .var("max_connections", 100)
        .var("innodb_buffer_pool_size", "64M")
        .start()
        .await?;
    sysbench(small.addr(), "oltp_read_only", 4, 0, &["prepare"])?;
    server.admin("SET GLOBAL max_connections = 1200").await?;
    let shared = GoneawayChild::start_with(
        &small.url(),
        false,
        &[
            (MAX_CLIENTS_ENV, "1200"),
            (MAX_BACKENDS_ENV, "90"),
            (MULTIPLEX_ENV, "1"),
        ],
    )?;
    sysbench(shared.addr, "oltp_point_select", 8, 2, &["run"])?;
    // A proxy hop's cost without sharing: HAProxy in front of the server that allows
    // every client a connection of its own.
    let relay = HaProxy::start(server.addr())?;
    let mut rows = Vec::new();
    for &n in &counts {
        let refused = match sysbench(small.addr(), "oltp_point_select", n, 2, &["run"]) {
            Ok(_) => "served".to_owned(),
            Err(e) => {
                let text = e.to_string();
                if text.contains("Too many connections") {
                    "refused (1040 Too many connections)".to_owned()
                } else {
                    format!("failed: {}", text.lines().next().unwrap_or(""))
                }
            }
        };
        let (mut g, mut d, mut h) = ((0.0, 0.0, 0u64), (0.0, 0.0, 0u64), (0.0, 0.0, 0u64));
        for round in 1..=rounds {
            let cpu_before = cpu_ticks(shared.child.id())?;
            let started = Instant::now();
            let out = Outcome::parse(&sysbench(
                shared.addr,
                "oltp_point_select",
                n,
                secs,
                &["run"],
            )?)?;
            let cpu = (cpu_ticks(shared.child.id())? - cpu_before) as f64
                / 100.0
                / started.elapsed().as_secs_f64()
                * 100.0;
            let direct = Outcome::parse(&sysbench(
                server.addr(),
                "oltp_point_select",
                n,
                secs,
                &["run"],
            )?)?;
            let hop = Outcome::parse(&sysbench(
                relay.addr,
                "oltp_point_select",
                n,
                secs,
                &["run"],
            )?)?;
            eprintln!(
                "many clients {n} round {round}: goneaway (100-connection server) {:.1} tps {:.2} ms p95 {} errors, proxy CPU {cpu:.0}%; direct ({n} connections) {:.1} tps {:.2} ms p95 {} errors; HAProxy ({n} connections) {:.1} tps {:.2} ms p95 {} errors",
                out.tps, out.p95_ms, out.errors, direct.tps, direct.p95_ms, direct.errors, hop.tps, hop.p95_ms, hop.errors
            );
            g = (g.0 + out.tps, g.1 + out.p95_ms, g.2 + out.errors);
            d = (d.0 + direct.tps, d.1 + direct.p95_ms, d.2 + direct.errors);
            h = (h.0 + hop.tps, h.1 + hop.p95_ms, h.2 + hop.errors);
        }
        let k = f64::from(rounds);
        rows.push((
            n,
            refused,
            (g.0 / k, g.1 / k, g.2),
            (d.0 / k, d.1 / k, d.2),
            (h.0 / k, h.1 / k, h.2),
        ));
    }
    drop(shared);
    drop(relay);
    println!();
    println!("More clients than server connections: oltp_point_select, server max_connections = 100, goneaway max_backends = 90; baselines: the same clients directly, and through HAProxy, on a server that allows them all");
    println!();
    println!("| threads | directly, max_connections = 100 | goneaway tps | direct tps (one connection per thread) | HAProxy tps (one connection per thread) | goneaway/direct | goneaway/HAProxy | p95 ms goneaway / direct / HAProxy | errors goneaway / direct / HAProxy |");
    println!("|---:|---|---:|---:|---:|---:|---:|---|---|");
    for (n, refused, g, d, h) in rows {
        println!(
            "| {n} | {refused} | {:.0} | {:.0} | {:.0} | **{:.2}** | **{:.2}** | {:.2} / {:.2} / {:.2} | {} / {} / {} |",
            g.0,
            d.0,
            h.0,
            g.0 / d.0,
            g.0 / h.0,
            g.1,
            d.1,
            h.1,
            g.2,
            d.2,
            h.2
        );
    }
    Ok(())
}

/// The 1-minute load average: on a shared machine, other work skews every number.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// One sysbench invocation against `addr`; its stdout. A zero `secs` runs the command
/// without a time bound (prepare).
fn sysbench(
    addr: SocketAddr,
    workload: &str,
    threads: u32,
    secs: u64,
    command: &[&str],
) -> Result<String, BoxError> {
    let mut cmd = Command::new("sysbench");
    cmd.arg(workload)
        .arg("--db-driver=mysql")
        .arg(format!("--mysql-host={}", addr.ip()))
        .arg(format!("--mysql-port={}", addr.port()))
        .arg(format!("--mysql-user={USER}"))
        .arg(format!("--mysql-password={PASSWORD}"))
        .arg("--mysql-db=goneaway")
        .arg(format!("--tables={TABLES}"))
        .arg(format!("--table-size={TABLE_SIZE}"))
        .arg(format!("--threads={threads}"))
        .arg("--percentile=95");
    if secs > 0 {
        cmd.arg(format!("--time={secs}"));
    }
    let out = cmd.args(command).stdin(Stdio::null()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "sysbench {workload} {command:?} against {addr} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(stdout)
}

/// What one sysbench run reported.
struct Outcome {
    tps: f64,
    p95_ms: f64,
    errors: u64,
}

impl Outcome {
    fn parse(out: &str) -> Result<Outcome, BoxError> {
        let field = |label: &str| -> Option<&str> {
            out.lines()
                .find_map(|l| l.trim_start().strip_prefix(label))
                .map(str::trim)
        };
        let per_sec = |label: &str| -> Option<f64> {
            let v = field(label)?;
            let inner = v.split('(').nth(1)?;
            inner.split_whitespace().next()?.parse().ok()
        };
        let count =
            |label: &str| -> Option<u64> { field(label)?.split_whitespace().next()?.parse().ok() };
        Ok(Outcome {
            tps: per_sec("transactions:").ok_or("no transactions line")?,
            p95_ms: field("95th percentile:")
                .and_then(|v| v.parse().ok())
                .ok_or("no 95th percentile line")?,
            errors: count("ignored errors:").unwrap_or(0) + count("reconnects:").unwrap_or(0),
        })
    }
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn free_addr() -> Result<SocketAddr, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_listening(addr: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on {addr}").into())
}

/// HAProxy in TCP mode, in the foreground, configured in a temporary directory.
struct HaProxy {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile_dir::Dir,
}

impl HaProxy {
    fn start(upstream: SocketAddr) -> Result<HaProxy, BoxError> {
        let addr = free_addr()?;
        let dir = tempfile_dir::Dir::new("goneaway-haproxy")?;
        let cfg = dir.path.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 2500\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\n\
                 listen mysql\n  bind {addr}\n  server db {upstream}\n"
            ),
        )?;
        let child = Command::new(haproxy_path())
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting haproxy (make bench-deps installs it): {e}"))?;
        let h = HaProxy {
            addr,
            child,
            _dir: dir,
        };
        wait_listening(addr)?;
        Ok(h)
    }
}

fn haproxy_path() -> &'static str {
    if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This binary, re-executed as a goneaway proxy.
struct GoneawayChild {
    addr: SocketAddr,
    child: Child,
}

impl GoneawayChild {
    fn start(backend_url: &str, plain: bool) -> Result<GoneawayChild, BoxError> {
        Self::start_with(backend_url, plain, &[])
    }

    /// [`GoneawayChild::start`], with more environment for the child.
    fn start_with(
        backend_url: &str,
        plain: bool,
        env: &[(&str, &str)],
    ) -> Result<GoneawayChild, BoxError> {
        let mut command = Command::new(std::env::current_exe()?);
        if plain {
            command.env(PLAIN_ENV, "1");
        }
        command.envs(env.iter().copied());
        let mut child = command
            .env(CHILD_ENV, backend_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let addr = line.trim().parse()?;
        wait_listening(addr)?;
        Ok(GoneawayChild { addr, child })
    }
}

impl Drop for GoneawayChild {
    fn drop(&mut self) {
        // Closing stdin asks for a graceful shutdown; kill if it takes too long.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop (the harness's tempfile is not a dependency here).
mod tempfile_dir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new(prefix: &str) -> std::io::Result<Dir> {
            let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
            std::fs::create_dir_all(&path)?;
            Ok(Dir { path })
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
