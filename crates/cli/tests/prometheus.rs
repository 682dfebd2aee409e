//! Prometheus for real: Debian's `prometheus` scrapes the real `goneaway watch` and
//! `goneaway proxy` while a harness server restarts, clients vanish, connections idle past
//! `wait_timeout`, logins fail and the proxy loses backends to KILL and to the restart; a
//! second one watches a real replica and a two-node Galera cluster, and a `goneaway proxy`
//! in front of the replication pair reading on the replica, healthy, then with the
//! replica's SQL thread broken (the proxy's reads go to the writer), a node killed and the
//! primary made read-only (the proxy has no writer). The shipped alert rules
//! (`dist/prometheus/goneaway-rules.yml`) run in both, and every query of the Grafana
//! dashboard (`dist/grafana/goneaway.json`) runs against what they stored: each returns data
//! in one of them. `promtool` checks the rules and runs their unit tests
//! (`goneaway-rules.test.yml`).
//!
//! Nothing is skipped: without `prometheus` and `promtool` (Debian's `prometheus` package)
//! the tests fail and say to run `make deps`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use goneaway_harness::{Galera, Replication, Server};
use mysql_async::prelude::*;
use serde_json::Value;

/// The password clients log in to the proxy with; it must never be printed.
const CLIENT_PASSWORD: &str = "prometheus-client-secret-41c9";
/// The account the cluster test's proxy logs in to the replication pair with: what
/// `dist/goneaway-proxy-cluster.toml` asks for (SLAVE MONITOR, no READ ONLY ADMIN).
const PROXY_BACKEND_USER: &str = "goneaway_proxy";
/// Its password, which must never be printed either.
const PROXY_BACKEND_PASSWORD: &str = "prometheus-backend-secret-7e2d";
/// Reads each of the cluster test's two proxy sessions runs on the healthy replica; three
/// times as many go to the writer once the replica's SQL thread is broken, so that most
/// replica-eligible reads are declined.
const REPLICA_READS: usize = 5;

/// Idle connections opened straight to the server: they reach 80 % of `wait_timeout` (the
/// watcher's "near" threshold), fill most of `max_connections`, and end as aborted clients
/// when the server closes them at `wait_timeout`.
const IDLE: usize = 22;
/// Short enough to expire within the test, long enough that the band between 80 % and 100 %
/// (two seconds) spans two scrapes at one a second.
const WAIT_TIMEOUT: u64 = 10;
/// With [`IDLE`] connections plus the proxy's and the watcher's, more than 80 % in use.
const MAX_CONNECTIONS: u64 = 30;
/// Logins refused for a wrong password: each counts in `Aborted_connects`.
const BAD_LOGINS: usize = 10;

/// What `$__rate_interval`, `$__range` and `$__interval` stand for when the dashboard's
/// queries run here: the test's whole history fits in the range.
const RATE_INTERVAL: &str = "1m";
const RANGE: &str = "5m";
const INTERVAL: &str = "15s";

/// Metric families only cluster nodes, or a proxy in front of a cluster, export: the
/// standalone test leaves them to [`prometheus_sees_replication_and_galera_trouble`], which
/// watches a replica and Galera nodes and runs a proxy in front of the replication pair,
/// and every dashboard query that reads them must return data there.
const CLUSTER_FAMILIES: &[(&str, &str)] = &[
    (
        "goneaway_galera_",
        "exported only for a Galera node: run against data by the cluster test",
    ),
    (
        "goneaway_replica_",
        "exported only for a replica: run against data by the cluster test",
    ),
    (
        "goneaway_proxy_server_",
        "exported only by a proxy in front of a cluster, a series per member: run against \
         data by the cluster test",
    ),
    (
        "goneaway_proxy_replica_lag_",
        "exported only by a proxy in front of a replicated cluster, a series per replica \
         whose lag is known: run against data by the cluster test",
    ),
];

fn cluster_family(expr: &str) -> Option<&'static str> {
    CLUSTER_FAMILIES
        .iter()
        .find(|(prefix, _)| expr.contains(prefix))
        .map(|(_, why)| *why)
}

/// Metric families the rules use that no released component exports yet.
const NOT_YET_EXPORTED: &[(&str, &str)] = &[];

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// Finds a command of Debian's `prometheus` package, or fails saying how to install it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run `make deps` (it installs Debian's `prometheus` \
                 package, which provides prometheus and promtool)"
            )
        })
}

/// Kills a child process when the test ends, however it ends.
struct Process {
    child: Child,
    what: &'static str,
}

impl Process {
    /// Spawns `command`; it also dies if this test process dies without unwinding.
    fn spawn(mut command: Command, what: &'static str) -> Process {
        // SAFETY: prctl in the forked child before exec touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Process { child, what }
    }

    fn assert_running(&mut self, log: &Path) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}):\n{}",
                self.what,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked): the status and the body.
fn http(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What Grafana's Prometheus data source writes for a multi-value variable inside `=~"…"`:
/// each value with regex metacharacters escaped (doubled backslashes, for the string
/// literal), joined as `(a|b)`.
fn grafana_regex(values: &[&str]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            let mut out = String::new();
            for c in v.chars() {
                if "\\$^*{}[]'+?.()|".contains(c) {
                    out.push_str("\\\\");
                }
                out.push(c);
            }
            out
        })
        .collect();
    format!("({})", escaped.join("|"))
}

/// One sample of an instant vector: its labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// A real Prometheus in a temporary directory, scraping every second.
struct Prometheus {
    process: Process,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it on a free loopback port with `scrape_configs` for `jobs` (a job and its
    /// targets' addresses) and the shipped rules, and waits until it is ready.
    fn start(jobs: &[(&str, Vec<String>)]) -> Prometheus {
        let binary = tool("prometheus");
        let rules = dist()
            .join("prometheus/goneaway-rules.yml")
            .canonicalize()
            .unwrap();
        let dir = tempfile::Builder::new()
            .prefix("goneaway-prometheus-")
            .tempdir()
            .unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = dir.path().join("prometheus.log");
        // A free port can be taken between the probe and Prometheus's bind: a few tries.
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", crate::util::free_port());
            let out = File::create(&log).unwrap();
            let mut command = Command::new(&binary);
            command
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let mut process = Process::spawn(command, "prometheus");
            let started = Instant::now();
            loop {
                if process.child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(&addr).is_ok() && http(&addr, "/-/ready").0 == 200 {
                    return Prometheus {
                        process,
                        addr,
                        log,
                        _dir: dir,
                    };
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "prometheus was not ready within 30 s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("address already in use"),
                "prometheus exited:\n{text}"
            );
        }
        panic!("prometheus found no free port in three tries");
    }

    /// `GET /api/v1/...`: the `data` of a successful answer.
    fn api(&mut self, path: &str) -> Value {
        self.process.assert_running(&self.log);
        let (status, body) = http(&self.addr, path);
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status}, not JSON ({e}): {body}"));
        assert_eq!(
            v["status"],
            "success",
            "GET {path}: {status} {body}\nprometheus log:\n{}",
            self.log_text()
        );
        v["data"].clone()
    }

    /// An instant query (`/api/v1/query`) whose result is a vector.
    fn query(&mut self, expr: &str) -> Vec<Sample> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The one value of `expr` (NaN when it has none), for assertion messages and checks.
    fn value(&mut self, expr: &str) -> f64 {
        let v = self.query(expr);
        assert!(v.len() <= 1, "{expr}: more than one series: {v:?}");
        v.first().map_or(f64::NAN, |(_, v)| *v)
    }

    /// Waits (at most `limit`) until `expr` has a sample whose value satisfies `ok`.
    async fn wait_for(
        &mut self,
        what: &str,
        expr: &str,
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) {
        let started = Instant::now();
        loop {
            let v = self.query(expr);
            if v.iter().any(|(_, v)| ok(*v)) {
                return;
            }
            if started.elapsed() >= limit {
                // The whole family, to show what was seen instead.
                let family = metric_names(expr).into_iter().next().unwrap_or_else(|| {
                    expr.split(['{', '[', ' '])
                        .next()
                        .unwrap_or(expr)
                        .to_owned()
                });
                let all = self.query(&family);
                panic!("{what}: not seen by Prometheus within {limit:?}: {expr} = {v:?}; {family} = {all:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A `goneaway` subcommand with its output in a file (a pipe nobody reads could fill up).
fn goneaway(dir: &Path, name: &'static str, args: &[&str], env: &[(&str, &str)]) -> Process {
    let log = File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut command = crate::doctor::isolated(dir);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    Process::spawn(command, name)
}

/// Logs in through the proxy, waiting for it to accept logins (bounded: 20 s).
async fn proxy_login(port: u16, proxy: &mut Process, log: &Path) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some(CLIENT_PASSWORD))
        .db_name(Some(goneaway_harness::DATABASE))
        .prefer_socket(false);
    let started = Instant::now();
    loop {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(c) => return c,
            Err(e) => {
                proxy.assert_running(log);
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the proxy never accepted a login: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The server's thread running `sql` right now (bounded: 10 s).
async fn thread_running(server: &Server, sql: &str) -> u32 {
    let mut admin = server.admin_conn().await.unwrap();
    let started = Instant::now();
    loop {
        let id: Option<u32> = admin
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = ?",
                (sql,),
            )
            .await
            .unwrap();
        if let Some(id) = id {
            admin.disconnect().await.unwrap();
            return id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{sql} never ran on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connections of the application account open on the server now.
async fn app_connections(server: &Server) -> u64 {
    let mut admin = server.admin_conn().await.unwrap();
    let n: Option<u64> = admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (goneaway_harness::APP_USER,),
        )
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    n.unwrap_or(0)
}

/// A client that vanishes without COM_QUIT: the real `mariadb` client, connected, then
/// SIGKILLed. The server counts it in `Aborted_clients`.
async fn vanishing_client(server: &Server) {
    let before = app_connections(server).await;
    let mut command = Command::new("mariadb");
    command
        .args([
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-P",
            &server.port().to_string(),
            "-u",
            goneaway_harness::APP_USER,
            goneaway_harness::DATABASE,
        ])
        // The password through the environment, never on a command line.
        .env("MYSQL_PWD", goneaway_harness::APP_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = Process::spawn(command, "mariadb");
    let started = Instant::now();
    while app_connections(server).await <= before {
        assert!(
            client.child.try_wait().unwrap().is_none(),
            "the mariadb client exited before connecting"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the mariadb client never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.child.kill().unwrap();
    client.child.wait().unwrap();
}

/// The alerts Prometheus has pending or firing now: (alertname, state, labels).
fn active_alerts(prom: &mut Prometheus) -> Vec<(String, String, BTreeMap<String, String>)> {
    prom.api("/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let labels: BTreeMap<String, String> = a["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (
                labels["alertname"].clone(),
                a["state"].as_str().unwrap().to_owned(),
                labels,
            )
        })
        .collect()
}

/// Every `expr` of the dashboard's panels (rows' nested panels included).
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((p["title"].as_str().unwrap_or("").to_owned(), e.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The `goneaway_*` metric names an expression or a rule file uses.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("goneaway_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `goneaway_rules.yml`-like words in comments are not metrics: metrics are followed
        // by a selector, a range, a space, a parenthesis or an operator.
        let name = &tail[..end];
        if rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/'))
        {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Runs every dashboard query with its variables filled in as Grafana does; each must be
/// valid, and those `needs_data` picks must return data. Returns how many needed data.
fn run_dashboard(
    prom: &mut Prometheus,
    exprs: &[(String, String)],
    server_var: &str,
    proxy_var: &str,
    needs_data: impl Fn(&str) -> bool,
) -> usize {
    let mut empty = Vec::new();
    let mut checked = 0;
    for (title, expr) in exprs {
        let q = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__range", RANGE)
            .replace("$__interval", INTERVAL)
            .replace("${server}", server_var)
            .replace("$server", server_var)
            .replace("${proxy}", proxy_var)
            .replace("$proxy", proxy_var);
        assert!(
            !q.contains('$'),
            "{title}: a variable the test does not know: {expr}"
        );
        // `query` asserts that Prometheus accepted it.
        let result = prom.query(&q);
        if needs_data(expr) {
            checked += 1;
            if result.is_empty() {
                empty.push(format!("{title}: {q}"));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries with no data:\n{}",
        empty.join("\n")
    );
    checked
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let promtool = tool("promtool");
    let dir = dist().join("prometheus");
    for args in [
        ["check", "rules", "goneaway-rules.yml"],
        ["test", "rules", "goneaway-rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a unit test in which it fires (a test that expects it to stay silent
    // is not enough on its own).
    let rules = std::fs::read_to_string(dir.join("goneaway-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("goneaway-rules.test.yml")).unwrap();
    let alerts: BTreeSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::trim)
        .collect();
    let fired: BTreeSet<&str> = tests
        .split("alertname: ")
        .skip(1)
        .filter(|chunk| chunk.contains("- exp_labels:"))
        .filter_map(|chunk| chunk.split_whitespace().next())
        .collect();
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts with no promtool test that fires them: {untested:?}"
    );
    assert!(alerts.len() >= 10, "{alerts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_watch_and_proxy_through_real_faults() {
    let began = Instant::now();
    // Before anything starts: a missing Prometheus fails here, with what to install.
    tool("prometheus");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(dist().join("grafana/goneaway.json")).unwrap(),
    )
    .expect("the dashboard is JSON");

    let server = Server::builder()
        .var("wait_timeout", WAIT_TIMEOUT)
        .var("max_connections", MAX_CONNECTIONS)
        .start()
        .await
        .expect("a harness server");
    let url = server.url();
    // The watcher names a server by its URL with the password masked and no parameters.
    let server_label = format!(
        "mysql://{}:****@127.0.0.1:{}/{}",
        goneaway_harness::APP_USER,
        server.port(),
        goneaway_harness::DATABASE
    );
    // A second watched server that never answers: a server down, and poll errors by cause.
    let down_label = format!(
        "mysql://{}@127.0.0.1:{}/{}",
        goneaway_harness::APP_USER,
        crate::util::free_port(),
        goneaway_harness::DATABASE
    );
    let work = tempfile::tempdir().unwrap();
    let (watch_port, proxy_port, metrics_port) = (
        crate::util::free_port(),
        crate::util::free_port(),
        crate::util::free_port(),
    );
    let watch_addr = format!("127.0.0.1:{watch_port}");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    // Server URLs with a password go through the environment, never on a command line.
    let mut watch = goneaway(
        work.path(),
        "watch",
        &[
            "--log",
            "info",
            "watch",
            "--also",
            &down_label,
            "--listen",
            &watch_addr,
            "--interval",
            "250ms",
            "--timeout",
            "2s",
        ],
        &[("MYSQL_URL", &url)],
    );
    let proxy_listen = format!("127.0.0.1:{proxy_port}");
    // A configuration file for SIGHUP to reload. It names the backend, which the proxy
    // requires of a file even when --backend or MYSQL_URL gives it; the flags carry the rest.
    let proxy_config = work.path().join("proxy.toml");
    std::fs::write(&proxy_config, format!("backend = \"{url}\"\n")).unwrap();
    let proxy_config_arg = proxy_config.display().to_string();
    let mut proxy = goneaway(
        work.path(),
        "proxy",
        &[
            "--log",
            "info",
            "proxy",
            "--config",
            &proxy_config_arg,
            "--listen",
            &proxy_listen,
            "--user",
            "app",
            "--password-env",
            "GONEAWAY_TEST_PROXY_PW",
            "--metrics",
            &metrics_addr,
        ],
        &[
            ("MYSQL_URL", &url),
            ("GONEAWAY_TEST_PROXY_PW", CLIENT_PASSWORD),
        ],
    );
    let (watch_log, proxy_log) = (work.path().join("watch.log"), work.path().join("proxy.log"));
    let mut prom = Prometheus::start(&[
        ("goneaway-watch", vec![watch_addr.clone()]),
        ("goneaway-proxy", vec![metrics_addr.clone()]),
    ]);
    let sel = format!("server=\"{server_label}\"");
    let down_sel = format!("server=\"{down_label}\"");
    let limit = Duration::from_secs(20);

    // Both targets scraped, the server seen up, the down one down.
    for job in ["goneaway-watch", "goneaway-proxy"] {
        prom.wait_for(job, &format!("up{{job=\"{job}\"}}"), limit, |v| v == 1.0)
            .await;
    }
    prom.wait_for(
        "the server up",
        &format!("goneaway_up{{{sel}}}"),
        limit,
        |v| v == 1.0,
    )
    .await;
    watch.assert_running(&watch_log);
    let aborted_clients_before = prom.value(&format!("goneaway_aborted_clients_total{{{sel}}}"));
    let aborted_connects_before = prom.value(&format!("goneaway_aborted_connects_total{{{sel}}}"));
    assert!(
        aborted_clients_before.is_finite() && aborted_connects_before.is_finite(),
        "goneaway_aborted_*_total missing for {server_label}"
    );

    // Sessions through the proxy, and a table for the transaction that will be lost.
    server
        .admin("CREATE TABLE goneaway.prom_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let mut killed = proxy_login(proxy_port, &mut proxy, &proxy_log).await;
    let mut in_tx = proxy_login(proxy_port, &mut proxy, &proxy_log).await;
    let mut idle = proxy_login(proxy_port, &mut proxy, &proxy_log).await;
    for conn in [&mut killed, &mut in_tx, &mut idle] {
        for i in 0..20 {
            let n: Option<i64> = conn.query_first(format!("SELECT {i}")).await.unwrap();
            assert_eq!(n, Some(i));
        }
    }

    // KILL of the backend while a write runs: the client hears it (an error it can tell
    // apart, not a hang and not a silent retry).
    let write = "DO SLEEP(5)";
    let running = tokio::spawn(async move {
        let r = killed.query_drop(write).await;
        (killed, r)
    });
    let victim = thread_running(&server, write).await;
    server.kill_connection(victim).await.unwrap();
    let (mut killed, r) = running.await.unwrap();
    assert!(r.is_err(), "a write whose backend was killed succeeded");
    // KILL of the backend while a read runs: the proxy replays it unseen.
    let read = "SELECT SLEEP(2)";
    let running = tokio::spawn(async move {
        let r: mysql_async::Result<Option<i64>> = killed.query_first(read).await;
        (killed, r)
    });
    let victim = thread_running(&server, read).await;
    server.kill_connection(victim).await.unwrap();
    let (killed, r) = running.await.unwrap();
    assert_eq!(r.expect("the proxy replays a killed read"), Some(0));

    // Aborted clients: one that vanishes, then idle ones that the server closes at
    // wait_timeout. Aborted connects: wrong passwords.
    vanishing_client(&server).await;
    let mut idlers = Vec::new();
    for _ in 0..IDLE {
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        idlers.push(mysql_async::Conn::new(opts).await.unwrap());
    }
    let idle_since = Instant::now();
    for _ in 0..BAD_LOGINS {
        let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).unwrap())
            .pass(Some("not-the-password"));
        assert!(mysql_async::Conn::new(opts).await.is_err());
    }

    let window = Duration::from_secs(WAIT_TIMEOUT + 15);
    prom.wait_for(
        "connections near wait_timeout",
        &format!("goneaway_connections_near_wait_timeout{{{sel}}}"),
        window,
        |v| v >= IDLE as f64,
    )
    .await;
    prom.wait_for(
        "idle connections closed at wait_timeout, counted as aborted clients",
        &format!("goneaway_aborted_clients_total{{{sel}}}"),
        window,
        |v| v >= aborted_clients_before + IDLE as f64 + 1.0,
    )
    .await;
    assert!(idle_since.elapsed() >= Duration::from_secs(WAIT_TIMEOUT - 1));
    drop(idlers);

    // A restart, with one proxy session idle and one inside a transaction. Both used their
    // backends just before: the proxy closes a shared connection unused for half of
    // wait_timeout, and a session whose connection was closed so loses nothing in a restart.
    in_tx.query_drop("BEGIN").await.unwrap();
    // The client saw a value a replay would not give again: the transaction cannot be
    // continued on a fresh backend, whatever the proxy's replay rules.
    let _: Option<String> = in_tx.query_first("SELECT NOW(6)").await.unwrap();
    in_tx
        .query_drop("INSERT INTO prom_t VALUES (1)")
        .await
        .unwrap();
    // Last, so that the connection it hands back to the proxy's shared pool (the one in
    // the transaction keeps its own) is there when the server restarts.
    let one: Option<i64> = idle.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    server.restart().await.unwrap();
    let two: Option<i64> = idle
        .query_first("SELECT 2")
        .await
        .expect("an idle session survives the restart through the proxy");
    assert_eq!(two, Some(2));
    assert!(
        in_tx
            .query_drop("INSERT INTO prom_t VALUES (2)")
            .await
            .is_err(),
        "a transaction lost in the restart went on"
    );
    in_tx.query_drop("ROLLBACK").await.unwrap();

    prom.wait_for(
        "the restart",
        &format!("goneaway_restarts_detected_total{{{sel}}}"),
        limit,
        |v| v == 1.0,
    )
    .await;
    prom.wait_for(
        "the lost transaction",
        "goneaway_proxy_client_errors_total{kind=\"transaction_lost\"}",
        limit,
        |v| v >= 1.0,
    )
    .await;
    prom.wait_for(
        "the restart absorbed",
        "goneaway_proxy_absorbed_total{cause=\"server_restart\"}",
        limit,
        |v| v >= 1.0,
    )
    .await;
    // A reload of a file that does not read: refused, the proxy goes on as it was.
    std::fs::write(&proxy_config, "listen = [this is not toml").unwrap();
    // SAFETY: kill(2) with a pid this test spawned and still owns (not yet reaped).
    assert_eq!(
        unsafe { libc::kill(proxy.child.id() as libc::pid_t, libc::SIGHUP) },
        0
    );
    prom.wait_for(
        "the refused reload",
        "goneaway_proxy_config_reload_failures_total",
        limit,
        |v| v == 1.0,
    )
    .await;
    let three: Option<i64> = idle.query_first("SELECT 3").await.unwrap();
    assert_eq!(three, Some(3));
    prom.wait_for(
        "the server up again",
        &format!("goneaway_up{{{sel}}}"),
        limit,
        |v| v == 1.0,
    )
    .await;

    // The series, with their labels.
    let series = prom.api(&format!(
        "/api/v1/series?match[]={}",
        encode("{__name__=~\"goneaway_.+\"}")
    ));
    let mut by_name: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for s in series.as_array().unwrap() {
        let labels: BTreeMap<String, String> = s
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        by_name
            .entry(labels["__name__"].clone())
            .or_default()
            .push(labels);
    }
    let rules_text = std::fs::read_to_string(dist().join("prometheus/goneaway-rules.yml")).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    let mut used = metric_names(&rules_text);
    for (_, e) in &exprs {
        used.extend(metric_names(e));
    }
    let exempt = |name: &str| {
        CLUSTER_FAMILIES
            .iter()
            .chain(NOT_YET_EXPORTED)
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|(_, why)| *why)
    };
    for name in &used {
        if exempt(name).is_some() {
            continue;
        }
        let found = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{name} is used by the rules or the dashboard but Prometheus has no such series; it has {:?}", by_name.keys().collect::<Vec<_>>()));
        let job = if name.starts_with("goneaway_proxy_") {
            "goneaway-proxy"
        } else {
            "goneaway-watch"
        };
        for labels in found {
            assert_eq!(labels["job"], job, "{labels:?}");
            if job == "goneaway-watch" {
                assert!(
                    labels["server"] == server_label || labels["server"] == down_label,
                    "{labels:?}"
                );
            } else {
                assert_eq!(labels["instance"], metrics_addr, "{labels:?}");
            }
        }
    }
    for (name, label) in [
        ("goneaway_poll_errors_total", "cause"),
        ("goneaway_connection_errors_per_hour", "kind"),
        ("goneaway_finding_confidence", "cause"),
        ("goneaway_proxy_client_errors_total", "kind"),
        ("goneaway_proxy_absorbed_total", "cause"),
        ("goneaway_proxy_command_seconds_bucket", "le"),
    ] {
        let all = by_name.get(name).map(Vec::as_slice).unwrap_or_default();
        assert!(
            !all.is_empty() && all.iter().all(|l| l.contains_key(label)),
            "{name} should carry {label}: {all:?}"
        );
    }
    // Grafana's variables: label_values(goneaway_up, server) and the proxies' instances.
    let servers = prom.api(&format!(
        "/api/v1/label/server/values?match[]={}",
        encode("goneaway_up")
    ));
    let servers: BTreeSet<&str> = servers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        servers,
        BTreeSet::from([server_label.as_str(), down_label.as_str()])
    );
    let proxies = prom.api(&format!(
        "/api/v1/label/instance/values?match[]={}",
        encode("goneaway_proxy_client_connections")
    ));
    assert_eq!(proxies, serde_json::json!([metrics_addr]));

    // The values an alert or a panel reads.
    let v = |prom: &mut Prometheus, e: &str| prom.value(e);
    assert_eq!(
        v(
            &mut prom,
            &format!("goneaway_restarts_detected_total{{{sel}}}")
        ),
        1.0
    );
    assert_eq!(v(&mut prom, &format!("goneaway_up{{{down_sel}}}")), 0.0);
    assert_eq!(
        v(&mut prom, &format!("goneaway_max_connections{{{sel}}}")),
        MAX_CONNECTIONS as f64
    );
    assert_eq!(
        v(
            &mut prom,
            &format!("goneaway_wait_timeout_seconds{{{sel}}}")
        ),
        WAIT_TIMEOUT as f64
    );
    assert!(v(&mut prom, &format!("goneaway_uptime_seconds{{{sel}}}")) < 60.0);
    let unreachable = prom.query(&format!("goneaway_poll_errors_total{{{down_sel}}}"));
    assert!(
        unreachable
            .iter()
            .any(|(l, v)| l["cause"] == "server_unreachable" && *v >= 1.0),
        "{unreachable:?}"
    );
    // Aborted connections rose, across the counter reset of the restart: the idle ones, the
    // vanished one, the wrong passwords.
    let clients = v(
        &mut prom,
        &format!("increase(goneaway_aborted_clients_total{{{sel}}}[{RANGE}])"),
    );
    assert!(
        clients >= (IDLE + 1) as f64,
        "aborted clients rose by {clients}"
    );
    let connects = v(
        &mut prom,
        &format!("increase(goneaway_aborted_connects_total{{{sel}}}[{RANGE}])"),
    );
    assert!(
        connects >= BAD_LOGINS as f64,
        "aborted connects rose by {connects}"
    );
    assert!(
        v(
            &mut prom,
            &format!("max_over_time(rate(goneaway_aborted_clients_total{{{sel}}}[{RATE_INTERVAL}])[{RANGE}:1s])"),
        ) > 0.0
    );
    assert!(
        v(
            &mut prom,
            &format!("max_over_time(goneaway_connections_near_wait_timeout{{{sel}}}[{RANGE}])"),
        ) >= IDLE as f64
    );
    let used_share = v(
        &mut prom,
        &format!("max_over_time((goneaway_threads_connected{{{sel}}} / goneaway_max_connections{{{sel}}})[{RANGE}:1s])"),
    );
    assert!(
        used_share > 0.8,
        "at most {used_share} of max_connections seen in use"
    );
    // The proxy: errors by kind, losses absorbed by cause, the replay, latency.
    let errors = prom.query("goneaway_proxy_client_errors_total");
    let kinds: BTreeMap<&str, f64> = errors
        .iter()
        .map(|(l, v)| (l["kind"].as_str(), *v))
        .collect();
    assert!(
        kinds.get("transaction_lost").is_some_and(|v| *v >= 1.0),
        "{kinds:?}"
    );
    assert!(
        kinds.get("outcome_unknown").is_some_and(|v| *v >= 1.0),
        "the killed write: {kinds:?}"
    );
    let absorbed = prom.query("goneaway_proxy_absorbed_total");
    let causes: BTreeMap<&str, f64> = absorbed
        .iter()
        .map(|(l, v)| (l["cause"].as_str(), *v))
        .collect();
    assert!(
        causes.get("server_restart").is_some_and(|v| *v >= 1.0),
        "{causes:?}"
    );
    assert!(
        causes.get("connection_killed").is_some_and(|v| *v >= 1.0),
        "{causes:?}"
    );
    assert!(v(&mut prom, "goneaway_proxy_retries_total") >= 1.0);
    assert!(v(&mut prom, "goneaway_proxy_logins_total") >= 3.0);
    assert!(v(&mut prom, "goneaway_proxy_command_seconds_count") >= 60.0);
    // The killed write ran about a second before the KILL, the read two seconds after: the
    // slowest buckets are not empty.
    assert!(
        v(&mut prom, "goneaway_proxy_command_seconds_count - ignoring(le) goneaway_proxy_command_seconds_bucket{le=\"0.5\"}") >= 1.0
    );
    let p99 = v(
        &mut prom,
        &format!("histogram_quantile(0.99, sum by (le) (rate(goneaway_proxy_command_seconds_bucket[{RANGE}])))"),
    );
    assert!(p99.is_finite() && p99 > 0.0, "p99 {p99}");

    // The rules: all loaded, all evaluating without error.
    let groups = prom.api("/api/v1/rules")["groups"].clone();
    let mut loaded = BTreeSet::new();
    for g in groups.as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap().to_owned();
            assert_eq!(r["health"], "ok", "rule {name}: {r}");
            loaded.insert(name);
        }
    }
    let in_file: BTreeSet<String> = rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|s| s.trim().to_owned())
        .collect();
    assert_eq!(loaded, in_file);
    // The alerts these faults raise, for the right server or proxy; `for` keeps most of
    // them pending within a test this short.
    let expected: Vec<(&str, &str, &str)> = vec![
        ("GoneawayServerRestarted", "server", &server_label),
        ("GoneawayServerDown", "server", &down_label),
        ("GoneawayAbortedClientsRising", "server", &server_label),
        ("GoneawayAbortedConnectsRising", "server", &server_label),
        (
            "GoneawayConnectionsNearWaitTimeout",
            "server",
            &server_label,
        ),
        ("GoneawayProxyClientErrors", "kind", "transaction_lost"),
        ("GoneawayProxyClientErrors", "kind", "outcome_unknown"),
        ("GoneawayProxyReloadFailed", "instance", &metrics_addr),
    ];
    let started = Instant::now();
    let alerts = loop {
        let alerts = active_alerts(&mut prom);
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, label, value)| {
                !alerts
                    .iter()
                    .any(|(n, _, l)| n == name && l.get(*label).map(String::as_str) == Some(value))
            })
            .collect();
        if missing.is_empty() {
            break alerts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "alerts not active: {missing:?}; active: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for (name, state, labels) in &alerts {
        if [
            "GoneawayServerRestarted",
            "GoneawayProxyClientErrors",
            "GoneawayProxyReloadFailed",
        ]
        .contains(&name.as_str())
        {
            assert_eq!(state, "firing", "{name} has no `for`: {labels:?}");
        }
        assert!(
            !(*name == "GoneawayServerDown" && labels["server"] == server_label),
            "the restarted server is not down: {labels:?}"
        );
        assert!(
            ![
                "GoneawayProxyRefusingClients",
                "GoneawayReadOnlyNotReplica",
                // A proxy in front of one server: no cluster, no replica reads.
                "GoneawayProxyNoWriter",
                "GoneawayProxyReplicaReadsDeclined",
            ]
            .contains(&name.as_str()),
            "{name} has no cause here: {labels:?}"
        );
        assert!(!labels["severity"].is_empty(), "{name}: no severity");
    }
    // Near max_connections lasted only while the idle connections were open: it was
    // pending then.
    let near_max = prom.query(&format!(
        "max_over_time(ALERTS{{alertname=\"GoneawayConnectionsNearMax\",{sel}}}[{RANGE}])"
    ));
    assert_eq!(
        near_max.len(),
        1,
        "GoneawayConnectionsNearMax was never active"
    );

    // Every query of the dashboard, with its variables as Grafana would fill them: valid,
    // and with data, except those reading cluster families (the cluster test's part).
    assert!(
        exprs.len() >= 30,
        "{} queries in the dashboard",
        exprs.len()
    );
    let server_var = grafana_regex(&[&server_label, &down_label]);
    let proxy_var = grafana_regex(&[&metrics_addr]);
    run_dashboard(&mut prom, &exprs, &server_var, &proxy_var, |e| {
        cluster_family(e).is_none()
    });

    // Nothing printed a password.
    for log in [&watch_log, &proxy_log] {
        let text = std::fs::read_to_string(log).unwrap();
        for secret in [CLIENT_PASSWORD, goneaway_harness::APP_PASSWORD] {
            assert!(!text.contains(secret), "a password in {}", log.display());
        }
    }
    watch.assert_running(&watch_log);
    proxy.assert_running(&proxy_log);
    drop(killed);
    eprintln!("prometheus test took {:?}", began.elapsed());
}

/// The watcher's `server` label for a harness server: its URL, password masked, no
/// parameters.
fn label_of(server: &Server) -> String {
    format!(
        "mysql://{}:****@127.0.0.1:{}/{}",
        goneaway_harness::APP_USER,
        server.port(),
        goneaway_harness::DATABASE
    )
}

/// The active alerts named `name` whose label `label` is `value` (`server` for the
/// watcher's, `instance` for the proxy's).
fn active_for(
    alerts: &[(String, String, BTreeMap<String, String>)],
    name: &str,
    label: &str,
    value: &str,
) -> usize {
    alerts
        .iter()
        .filter(|(n, _, l)| n == name && l.get(label).map(String::as_str) == Some(value))
        .count()
}

/// Counts the three rows of `prom_reads` `n` times on `conn` (a proxy session): reads a
/// proxy with `replica_reads` may run on a replica.
async fn count_reads(conn: &mut mysql_async::Conn, n: usize) {
    for _ in 0..n {
        let rows: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM prom_reads")
            .await
            .unwrap();
        assert_eq!(rows, Some(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_replication_and_galera_trouble() {
    let began = Instant::now();
    tool("prometheus");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(dist().join("grafana/goneaway.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    // A primary and a replica; a Galera cluster of two, so that one node lost costs the
    // other its quorum.
    let (set, cluster) = tokio::join!(Replication::start(1), Galera::builder().nodes(2).start());
    let (set, cluster) = (
        set.expect("a replication set"),
        cluster.expect("a Galera cluster"),
    );
    let work = tempfile::tempdir().unwrap();
    // The proxy's account, made on the primary (it replicates), and a table to read.
    set.primary()
        .admin(&format!(
            "CREATE USER '{PROXY_BACKEND_USER}'@'%' IDENTIFIED BY '{PROXY_BACKEND_PASSWORD}';
             GRANT ALL ON goneaway.* TO '{PROXY_BACKEND_USER}'@'%';
             GRANT ALL ON goneaway_proxy.* TO '{PROXY_BACKEND_USER}'@'%';
             GRANT SLAVE MONITOR ON *.* TO '{PROXY_BACKEND_USER}'@'%';
             CREATE TABLE goneaway.prom_reads (id INT PRIMARY KEY);
             INSERT INTO goneaway.prom_reads VALUES (1), (2), (3)"
        ))
        .await
        .unwrap();
    set.wait_caught_up().await.unwrap();
    // One watcher per server, each URL through the environment (never a command line).
    let watched: [(&'static str, &Server); 3] = [
        ("watch-replica", set.replica()),
        ("watch-galera0", cluster.node(0)),
        ("watch-galera1", cluster.node(1)),
    ];
    let mut watchers = Vec::new();
    let mut addrs = Vec::new();
    for (name, server) in watched {
        let addr = format!("127.0.0.1:{}", crate::util::free_port());
        watchers.push(goneaway(
            work.path(),
            name,
            &[
                "watch",
                "--listen",
                &addr,
                "--interval",
                "500ms",
                "--timeout",
                "2s",
            ],
            &[("MYSQL_URL", &server.url())],
        ));
        addrs.push(addr);
    }
    // A proxy in front of the replication pair, sharing server connections and reading on
    // the replica; the backend URL and the client's password through the environment.
    let (primary_addr, replica_addr) = (
        set.primary().addr().to_string(),
        set.replica().addr().to_string(),
    );
    let proxy_port = crate::util::free_port();
    let proxy_listen = format!("127.0.0.1:{proxy_port}");
    let proxy_metrics = format!("127.0.0.1:{}", crate::util::free_port());
    let backend = format!(
        "mysql://{PROXY_BACKEND_USER}:{PROXY_BACKEND_PASSWORD}@{primary_addr}/{}?prefer_socket=false",
        goneaway_harness::DATABASE
    );
    let mut proxy = goneaway(
        work.path(),
        "proxy",
        &[
            "--log",
            "info",
            "proxy",
            "--listen",
            &proxy_listen,
            "--server",
            &primary_addr,
            "--server",
            &replica_addr,
            "--cluster",
            "replication",
            "--monitor-interval",
            "0.25",
            "--multiplex",
            "--replica-reads",
            "--no-server-accounts",
            "--user",
            "app",
            "--password-env",
            "GONEAWAY_TEST_PROXY_PW",
            "--metrics",
            &proxy_metrics,
        ],
        &[
            ("MYSQL_URL", &backend),
            ("GONEAWAY_TEST_PROXY_PW", CLIENT_PASSWORD),
        ],
    );
    let proxy_log = work.path().join("proxy.log");
    let mut prom = Prometheus::start(&[
        ("goneaway-watch", addrs.clone()),
        ("goneaway-proxy", vec![proxy_metrics.clone()]),
    ]);
    let (replica, node0, node1) = (
        label_of(set.replica()),
        label_of(cluster.node(0)),
        label_of(cluster.node(1)),
    );
    let limit = Duration::from_secs(30);

    // Healthy: both replication threads, no lag; both Galera nodes Synced in a primary
    // component of two.
    for (what, expr, want) in [
        (
            "the IO thread",
            format!("goneaway_replica_io_running{{server=\"{replica}\"}}"),
            1.0,
        ),
        (
            "the SQL thread",
            format!("goneaway_replica_sql_running{{server=\"{replica}\"}}"),
            1.0,
        ),
        (
            "no lag",
            format!("goneaway_replica_lag_seconds{{server=\"{replica}\"}}"),
            0.0,
        ),
        (
            "the replica read-only",
            format!("goneaway_read_only{{server=\"{replica}\"}}"),
            1.0,
        ),
        (
            "node 0 in a cluster of 2",
            format!("goneaway_galera_cluster_size{{server=\"{node0}\"}}"),
            2.0,
        ),
        (
            "node 1 in a cluster of 2",
            format!("goneaway_galera_cluster_size{{server=\"{node1}\"}}"),
            2.0,
        ),
        (
            "node 0 Synced",
            format!("goneaway_galera_local_state{{server=\"{node0}\"}}"),
            4.0,
        ),
        (
            "node 1 Synced",
            format!("goneaway_galera_local_state{{server=\"{node1}\"}}"),
            4.0,
        ),
        (
            "the primary the proxy's writer",
            format!("goneaway_proxy_server_role{{server=\"{primary_addr}\",role=\"writer\"}}"),
            1.0,
        ),
        (
            "the replica a replica to the proxy",
            format!("goneaway_proxy_server_role{{server=\"{replica_addr}\",role=\"replica\"}}"),
            1.0,
        ),
        (
            "the replica up for the proxy",
            format!("goneaway_proxy_server_up{{server=\"{replica_addr}\"}}"),
            1.0,
        ),
        (
            "no lag as the proxy sees it",
            format!("goneaway_proxy_replica_lag_seconds{{server=\"{replica_addr}\"}}"),
            0.0,
        ),
    ] {
        prom.wait_for(what, &expr, limit, |v| v == want).await;
    }
    proxy.assert_running(&proxy_log);
    // Reads through the proxy from two sessions that never wrote: on the replica.
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(proxy_login(proxy_port, &mut proxy, &proxy_log).await);
    }
    for reader in &mut readers {
        count_reads(reader, REPLICA_READS).await;
    }
    prom.wait_for(
        "reads on the replica",
        "goneaway_proxy_replica_reads_total",
        limit,
        |v| v >= (2 * REPLICA_READS) as f64,
    )
    .await;
    for node in [&node0, &node1] {
        for (name, want) in [
            ("goneaway_galera_cluster_address_nodes", 2.0),
            ("goneaway_galera_primary", 1.0),
            ("goneaway_galera_ready", 1.0),
            ("goneaway_read_only", 0.0),
        ] {
            assert_eq!(
                prom.value(&format!("{name}{{server=\"{node}\"}}")),
                want,
                "{name} {node}"
            );
        }
        let paused = prom.value(&format!(
            "goneaway_galera_flow_control_paused_ratio{{server=\"{node}\"}}"
        ));
        assert!((0.0..=1.0).contains(&paused), "{paused}");
    }
    // Every cluster family the rules and the dashboard read, with the watcher's labels.
    let rules_text = std::fs::read_to_string(dist().join("prometheus/goneaway-rules.yml")).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    let mut used = metric_names(&rules_text);
    for (_, e) in &exprs {
        used.extend(metric_names(e));
    }
    let cluster_metrics: Vec<&String> = used
        .iter()
        .filter(|n| cluster_family(n).is_some())
        .collect();
    assert!(cluster_metrics.len() >= 9, "{cluster_metrics:?}");
    for name in cluster_metrics {
        let series = prom.api(&format!("/api/v1/series?match[]={}", encode(name)));
        let series = series.as_array().unwrap();
        assert!(!series.is_empty(), "no series of {name}");
        for s in series {
            let server = s["server"].as_str().unwrap_or_default();
            // The proxy names members host:port; the watcher, by URL.
            let (job, expected): (&str, &[&str]) =
                if name.starts_with("goneaway_proxy_replica_lag_") {
                    ("goneaway-proxy", &[&replica_addr])
                } else if name.starts_with("goneaway_proxy_") {
                    ("goneaway-proxy", &[&primary_addr, &replica_addr])
                } else if name.starts_with("goneaway_replica_") {
                    ("goneaway-watch", &[&replica])
                } else {
                    ("goneaway-watch", &[&node0, &node1])
                };
            assert_eq!(s["job"], job, "{s}");
            assert!(expected.contains(&server), "{name}: {s}");
            if job == "goneaway-proxy" {
                assert_eq!(s["instance"], proxy_metrics.as_str(), "{s}");
            }
            if name == "goneaway_proxy_server_role" {
                let role = s["role"].as_str().unwrap_or_default();
                assert!(goneaway_proxy::monitor::ROLES.contains(&role), "{s}");
            }
        }
    }
    // The dashboard's cluster panels (and read_only) with data, and every proxy panel: the
    // proxy here fronts a cluster, so its cluster families have series too.
    let server_var = grafana_regex(&[&replica, &node0, &node1]);
    let proxy_var = grafana_regex(&[&proxy_metrics]);
    let ran = run_dashboard(&mut prom, &exprs, &server_var, &proxy_var, |e| {
        cluster_family(e).is_some()
            || e.contains("goneaway_read_only")
            || e.contains("goneaway_proxy_")
    });
    assert!(
        ran >= 30,
        "{ran} cluster and proxy queries in the dashboard"
    );
    // A healthy cluster raises nothing: a read-only replica is no "read-only, not a
    // replica". (Two evaluations after the data, at one a second.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = active_alerts(&mut prom);
    assert!(quiet.is_empty(), "alerts on a healthy cluster: {quiet:?}");
    let before_trouble = prom.value("goneaway_proxy_replica_reads_total");

    // Trouble: the replica's SQL thread breaks on a duplicate key; a Galera node is
    // SIGKILLed, and the other, alone of two, loses its quorum.
    set.break_sql_thread(1).await.unwrap();
    cluster.node(1).crash().await.unwrap();
    for (what, expr, want) in [
        (
            "the SQL thread stopped",
            format!("goneaway_replica_sql_running{{server=\"{replica}\"}}"),
            0.0,
        ),
        (
            "node 0 out of the primary component",
            format!("goneaway_galera_primary{{server=\"{node0}\"}}"),
            0.0,
        ),
        (
            "node 1 down",
            format!("goneaway_up{{server=\"{node1}\"}}"),
            0.0,
        ),
        // Seconds_Behind_Master is NULL with the SQL thread stopped: the series goes.
        (
            "the replica's lag unknown to the proxy",
            format!("absent(goneaway_proxy_replica_lag_seconds{{server=\"{replica_addr}\"}})"),
            1.0,
        ),
    ] {
        prom.wait_for(what, &expr, limit, |v| v == want).await;
    }
    // The same reads again, three times as many: none may run on the replica now, and
    // most replica-eligible reads of the last minutes were declined.
    for reader in &mut readers {
        count_reads(reader, 3 * REPLICA_READS).await;
    }
    prom.wait_for(
        "reads declined",
        "goneaway_proxy_replica_reads_declined_total",
        limit,
        |v| v >= (6 * REPLICA_READS) as f64,
    )
    .await;
    assert_eq!(
        prom.value("goneaway_proxy_replica_reads_total"),
        before_trouble,
        "a read ran on the replica whose SQL thread is broken"
    );
    for reader in readers {
        reader.disconnect().await.unwrap();
    }
    // No writer at all: the primary made read-only (a switchover's first step) with no
    // replica promoted.
    set.primary()
        .admin("SET GLOBAL read_only = ON")
        .await
        .unwrap();
    prom.wait_for(
        "no writer for the proxy",
        "sum(goneaway_proxy_server_role{role=\"writer\"})",
        limit,
        |v| v == 0.0,
    )
    .await;
    let expected = [
        ("GoneawayReplicaStopped", "server", &replica),
        ("GoneawayGaleraNotPrimary", "server", &node0),
        ("GoneawayGaleraNotReady", "server", &node0),
        ("GoneawayGaleraClusterShrunk", "server", &node0),
        ("GoneawayServerDown", "server", &node1),
        ("GoneawayProxyNoWriter", "instance", &proxy_metrics),
        (
            "GoneawayProxyReplicaReadsDeclined",
            "instance",
            &proxy_metrics,
        ),
    ];
    let started = Instant::now();
    let alerts = loop {
        let alerts = active_alerts(&mut prom);
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, label, value)| active_for(&alerts, name, label, value) == 0)
            .collect();
        if missing.is_empty() {
            break alerts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "alerts not active: {missing:?}; active: {alerts:?}\nnode 0 now: {:?}",
            prom.query(&format!(
                "{{__name__=~\"goneaway_galera_.+\",server=\"{node0}\"}}"
            ))
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        active_for(&alerts, "GoneawayReadOnlyNotReplica", "server", &replica),
        0,
        "{alerts:?}"
    );
    for (_, _, labels) in &alerts {
        assert!(!labels["severity"].is_empty(), "{labels:?}");
    }
    for (i, mut w) in watchers.into_iter().enumerate() {
        let log = work.path().join(format!("{}.log", watched[i].0));
        w.assert_running(&log);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains(goneaway_harness::APP_PASSWORD),
            "a password in {}",
            log.display()
        );
    }
    proxy.assert_running(&proxy_log);
    let text = std::fs::read_to_string(&proxy_log).unwrap();
    for secret in [CLIENT_PASSWORD, PROXY_BACKEND_PASSWORD] {
        assert!(
            !text.contains(secret),
            "a password in {}",
            proxy_log.display()
        );
    }
    eprintln!("prometheus cluster test took {:?}", began.elapsed());
}
