//! `goneaway doctor` end to end: the real binary against real servers.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use goneaway_harness::Server;
use mysql_async::prelude::Queryable;

/// The binary with a clean environment: no inherited URLs, no ~/.my.cnf.
pub fn isolated(home: &std::path::Path) -> Command {
    let mut c = crate::util::goneaway();
    c.env("HOME", home)
        .env_remove("MYSQL_URL")
        .env_remove("DATABASE_URL")
        .env_remove("MYSQL_PWD");
    c
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            crate::util::stdout(output),
            crate::util::stderr(output)
        )
    })
}

#[tokio::test]
async fn doctor_finds_idle_timeout_in_all_three_formats() {
    let server = Server::builder()
        .var("wait_timeout", 2)
        .start()
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    conn.query_drop("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(conn.query_drop("SELECT 1").await.is_err());
    let home = tempfile::tempdir().unwrap();
    let url = server.url();

    let out = isolated(home.path())
        .args(["doctor", "--url", &url, "--sample", "0", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let v = json(&out);
    assert_eq!(v["findings"][0]["cause"], "idle_timeout");
    assert!(v["findings"][0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["source"] == "error_log"));
    assert!(!crate::util::stdout(&out).contains(goneaway_harness::APP_PASSWORD));

    let out = isolated(home.path())
        .args(["doctor", "--url", &url, "--sample", "1s"])
        .output()
        .unwrap();
    let text = crate::util::stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("1. idle connection closed by the server"),
        "{text}"
    );
    assert!(text.contains("wait_timeout = 600"), "{text}");
    assert!(text.contains("pool_recycle="), "{text}");
    assert!(!text.contains(goneaway_harness::APP_PASSWORD));

    let out = isolated(home.path())
        .args([
            "doctor", "--url", &url, "--sample", "0", "--format", "markdown",
        ])
        .output()
        .unwrap();
    let md = crate::util::stdout(&out);
    assert!(md.starts_with("# goneaway doctor report"));
    assert!(
        md.contains("## Server (for a bug report)") && md.contains("```ini"),
        "{md}"
    );
}

#[tokio::test]
async fn doctor_with_mysql_flags_and_defaults_file() {
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let cnf = home.path().join("client.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nuser = {}\npassword = \"{}\"\n",
            goneaway_harness::APP_USER,
            goneaway_harness::APP_PASSWORD
        ),
    )
    .unwrap();
    let port = server.port().to_string();
    let out = isolated(home.path())
        .args(["doctor", "-h", "127.0.0.1", "-P", &port, "--defaults-file"])
        .arg(&cnf)
        .args(["--sample", "0", "--format", "json"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["status"], "healthy");
    assert_eq!(
        v["target"],
        format!("mysql://goneaway:****@127.0.0.1:{port}")
    );
}

#[tokio::test]
async fn doctor_diagnoses_a_failed_connection_with_exit_2() {
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let port = server.port().to_string();
    let out = isolated(home.path())
        .args([
            "doctor",
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "goneaway",
            "-pnot-the-password",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["findings"][0]["cause"], "access_denied");
    assert!(!crate::util::stdout(&out).contains("not-the-password"));

    server.stop().await.unwrap();
    let out = isolated(home.path())
        .args(["doctor", "-h", "127.0.0.1", "-P", &port, "-u", "goneaway"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::util::stdout(&out).contains("[server_unreachable]"),
        "{}",
        crate::util::stdout(&out)
    );
}

#[test]
fn doctor_help_documents_options_and_exit_codes() {
    let out = crate::util::run(&["doctor", "--help"]);
    let help = crate::util::stdout(&out);
    for needle in [
        "--url",
        "-h, --host",
        "-P, --port",
        "-u, --user",
        "-p, --password",
        "-S, --socket",
        "--defaults-file",
        "--format",
        "--sample",
        "--error-log",
        "--since",
        "--kernel-log",
        "--error",
        "--app-log",
        "--app-timeout",
        "--pool-lifetime",
        "--probe-idle",
        "--probe-packet",
        "--middlebox-idle",
        "AWS NAT gateway and NLB: 350 s",
        "--proxy-config",
        "Timeout chain",
        "Exit codes",
        "could not diagnose",
        "65 unusable log",
        "66 a log cannot be opened",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[tokio::test]
async fn doctor_reads_a_kernel_log_from_stdin() {
    let server = Server::start_default().await.unwrap();
    let kernel = "2026-01-01T10:00:00+0000 db1 kernel: Out of memory: Killed process 4242 (mariadbd) total-vm:8000000kB, anon-rss:7000000kB\n";
    let out = crate::util::run_with_stdin(
        &[
            "doctor",
            "--url",
            &server.url(),
            "--sample",
            "0",
            "--kernel-log",
            "-",
            "--format",
            "json",
        ],
        kernel.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let v = json(&out);
    assert_eq!(v["findings"][0]["cause"], "out_of_memory");
    assert_eq!(v["kernel_log"][0]["line"], 1);
    // --since after the kill leaves nothing to report.
    let out = crate::util::run_with_stdin(
        &[
            "doctor",
            "--url",
            &server.url(),
            "--sample",
            "0",
            "--kernel-log",
            "-",
            "--since",
            "2026-06-01",
            "--format",
            "json",
        ],
        kernel.as_bytes(),
    );
    assert_eq!(json(&out)["kernel_log"].as_array().map(Vec::len), Some(0));
}

const MIB: u64 = 1024 * 1024;

/// A doctor run that must end before it connects: nothing listens on the port.
fn doctor_without_server(home: &std::path::Path, args: &[&str]) -> Command {
    let url = format!("mysql://goneaway@127.0.0.1:{}", crate::util::free_port());
    let mut c = isolated(home);
    c.args(["doctor", "--url", &url, "--sample", "0"])
        .args(args);
    c
}

#[test]
fn doctor_refuses_endless_devices_as_logs_promptly() {
    // The regression: --error-log /dev/urandom grew to 13 GB, /dev/zero to 9.6 GB in 18 s.
    let home = tempfile::tempdir().unwrap();
    for flag in ["--error-log", "--kernel-log", "--app-log"] {
        for device in ["/dev/zero", "/dev/urandom"] {
            let mut c = doctor_without_server(home.path(), &[flag, device]);
            c.stdin(Stdio::null());
            let m = crate::util::run_measured(c, Duration::from_secs(20), 512 * MIB);
            assert_eq!(m.killed, None, "{flag} {device}");
            let err = crate::util::stderr(&m.output);
            assert_eq!(m.output.status.code(), Some(65), "{flag} {device}: {err}");
            assert!(
                err.contains(&format!("{flag}: {device} is not a text log")),
                "{err}"
            );
            assert!(
                m.elapsed < Duration::from_secs(5),
                "{flag} {device}: {:?}",
                m.elapsed
            );
            assert!(
                m.peak_rss < 64 * MIB,
                "{flag} {device}: peak RSS {} bytes",
                m.peak_rss
            );
        }
    }
}

#[test]
fn doctor_refuses_more_than_16_mib_from_a_pipe() {
    let home = tempfile::tempdir().unwrap();
    let mut c = doctor_without_server(home.path(), &["--kernel-log", "-"]);
    // An endless text stream (`yes`): only the bound can end it.
    let mut yes = Command::new("yes")
        .arg("2026-01-01T10:00:00+0000 db1 kernel: nothing to see")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin(yes.stdout.take().unwrap());
    let m = crate::util::run_measured(c, Duration::from_secs(20), 512 * MIB);
    let _ = yes.kill();
    let _ = yes.wait();
    assert_eq!(m.killed, None);
    let err = crate::util::stderr(&m.output);
    assert_eq!(m.output.status.code(), Some(65), "{err}");
    assert!(
        err.contains("--kernel-log: standard input gives more than 16777216 bytes"),
        "{err}"
    );
    assert!(m.elapsed < Duration::from_secs(10), "{:?}", m.elapsed);
    assert!(
        m.peak_rss < 16 * MIB + 64 * MIB,
        "peak RSS {} bytes",
        m.peak_rss
    );
}

#[test]
fn doctor_exits_66_for_a_log_it_cannot_open() {
    let home = tempfile::tempdir().unwrap();
    for flag in ["--error-log", "--kernel-log", "--app-log"] {
        let out = doctor_without_server(home.path(), &[flag, "/nonexistent/mysql.log"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = crate::util::stderr(&out);
        assert_eq!(out.status.code(), Some(66), "{flag}: {err}");
        assert!(
            err.contains(&format!("{flag}: cannot read /nonexistent/mysql.log")),
            "{err}"
        );
    }
    // Standard input can feed one log only.
    let out = doctor_without_server(home.path(), &["--error-log", "-", "--app-log", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", crate::util::stderr(&out));
}

#[tokio::test]
async fn doctor_tails_a_large_error_log_and_reads_one_from_stdin() {
    // A real log over the limit is still read: its last 16 MiB, in bounded memory. The
    // aborted connection at its very end must be found; the crash at its start is outside
    // the tail.
    let server = Server::start_default().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("error.log");
    let aborted = "2026-01-01 10:05:00 31 [Warning] Aborted connection 31 to db: 'shop' user: 'app' host: '10.0.0.7' (Got timeout reading communication packets)\n";
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"2026-01-01 09:00:00 0 [ERROR] mariadbd got signal 11 ;\n")
            .unwrap();
        let note = "2026-01-01 09:30:00 0 [Note] InnoDB: Buffer pool(s) load completed\n";
        for _ in 0..(40 * MIB as usize / note.len()) {
            f.write_all(note.as_bytes()).unwrap();
        }
        f.write_all(aborted.as_bytes()).unwrap();
    }
    let url = server.url();
    let mut c = isolated(home.path());
    c.args(["doctor", "--url", &url, "--sample", "0", "--format", "json"])
        .arg("--error-log")
        .arg(&path)
        .stdin(Stdio::null());
    let m = crate::util::run_measured(c, Duration::from_secs(60), 1024 * MIB);
    assert_eq!(m.killed, None);
    assert_eq!(
        m.output.status.code(),
        Some(1),
        "{}",
        crate::util::stderr(&m.output)
    );
    let v = json(&m.output);
    let log = &v["error_log"];
    assert_eq!(log["aborted"][0]["count"], 1, "{log:#}");
    assert_eq!(log["crashes"].as_array().map(Vec::len), Some(0), "{log:#}");
    let tail_lines = log["lines_scanned"].as_u64().unwrap();
    assert!(tail_lines > 100_000 && tail_lines < 300_000, "{tail_lines}");
    assert!(
        m.peak_rss < 16 * MIB * 4 + 64 * MIB,
        "peak RSS {} bytes",
        m.peak_rss
    );

    // `--error-log -`: the log through a pipe.
    let out = crate::util::run_with_stdin(
        &[
            "doctor",
            "--url",
            &url,
            "--sample",
            "0",
            "--error-log",
            "-",
            "--format",
            "json",
        ],
        aborted.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let v = json(&out);
    assert_eq!(v["error_log"]["source"], "stdin");
    assert_eq!(v["error_log"]["aborted"][0]["count"], 1);
}

#[tokio::test]
async fn doctor_prints_the_timeout_chain_as_a_table_and_as_json() {
    let server = Server::builder()
        .var("wait_timeout", 5)
        .start()
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = server.url();
    let chain = [
        "doctor",
        "--url",
        &url,
        "--sample",
        "0",
        "--pool-lifetime",
        "30s",
        "--middlebox-idle",
        "350",
    ];

    let out = isolated(home.path()).args(chain).output().unwrap();
    let text = crate::util::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Timeout chain"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        table[0].starts_with("  layer") && table[0].contains("limit  set by"),
        "{text}"
    );
    // One row per layer, the first to end an idle connection first, columns aligned.
    let rows = &table[1..table.len() - 1];
    let firsts: Vec<&str> = rows
        .iter()
        .map(|r| r.split("  ").find(|c| !c.is_empty()).unwrap().trim())
        .collect();
    assert_eq!(
        firsts,
        [
            "server wait_timeout",
            "application pool lifetime",
            "NAT / load balancer idle limit",
            "server interactive_timeout"
        ],
        "{text}"
    );
    let column = table[0].find("set by").unwrap();
    assert!(
        rows.iter()
            .all(|r| r[column..].starts_with(|c: char| c != ' ') && r[..column].ends_with("  ")),
        "{text}"
    );
    assert!(
        rows[0].contains("5 s  server variable @@GLOBAL.wait_timeout")
            && rows[0].ends_with("cuts first: lower the pool lifetime to 3 s"),
        "{text}"
    );
    assert!(
        rows[1].contains("30 s  --pool-lifetime")
            && rows[1].contains(
                "too late: set it to 3 s or less (wait_timeout = 5 s less a margin of 2 s"
            ),
        "{text}"
    );
    assert!(rows[2].contains("350 s  --middlebox-idle"), "{text}");
    assert!(
        table[table.len() - 1].contains("net_read_timeout 30 s, net_write_timeout 60 s"),
        "{text}"
    );
    assert!(!text.contains(goneaway_harness::APP_PASSWORD));

    let out = isolated(home.path())
        .args(chain)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let v = json(&out);
    let layers: Vec<&str> = v["timeout_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        ["wait_timeout", "pool", "middlebox", "interactive_timeout"]
    );
    let first = &v["timeout_chain"][0];
    assert_eq!(first["limit_secs"], 5.0);
    assert_eq!(first["source"], "server variable @@GLOBAL.wait_timeout");
    assert_eq!(first["verdict"], "cuts_first");
    assert_eq!(first["role"], "cuts");
    assert_eq!(first["fix"], "lower the pool lifetime to 3 s");
    assert_eq!(v["timeout_chain"][1]["verdict"], "too_late");
    assert_eq!(v["timeout_chain"][2]["verdict"], "ok");
    assert!(v["timeout_chain"][2]["fix"].is_null());
    assert_eq!(v["transfer_limits"][0]["layer"], "net_read_timeout");

    // The proxy's own file: a keepalive past wait_timeout is the layer to change.
    let toml = home.path().join("proxy.toml");
    std::fs::write(
        &toml,
        format!(
            "listen = \"127.0.0.1:6033\"\nbackend = \"{url}\"\nkeepalive_interval_secs = 10\nclient_idle_timeout_secs = 3600\n"
        ),
    )
    .unwrap();
    let out = isolated(home.path())
        .args(["doctor", "--url", &url, "--sample", "0", "--format", "json"])
        .arg("--proxy-config")
        .arg(&toml)
        .output()
        .unwrap();
    let v = json(&out);
    let keepalive = v["timeout_chain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "proxy_keepalive")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(keepalive["limit_secs"], 10.0);
    assert_eq!(keepalive["verdict"], "too_late");
    assert_eq!(
        keepalive["source"],
        format!("{}: keepalive_interval_secs", toml.display())
    );
    assert!(keepalive["fix"]
        .as_str()
        .unwrap()
        .starts_with("set keepalive_interval_secs = 3 in"));

    // A file the proxy would refuse: exit 65, and its text (the password) never shown.
    std::fs::write(
        &toml,
        format!(
            "backend = \"{url}\"\nkeepalive_interval_secs = \"ten {}\"\n",
            goneaway_harness::APP_PASSWORD
        ),
    )
    .unwrap();
    let out = isolated(home.path())
        .args(["doctor", "--url", &url, "--sample", "0"])
        .arg("--proxy-config")
        .arg(&toml)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", crate::util::stderr(&out));
    assert!(crate::util::stderr(&out).contains("--proxy-config"));
    assert!(!crate::util::stderr(&out).contains(goneaway_harness::APP_PASSWORD));
    assert!(crate::util::stdout(&out).is_empty());
}
