//! What running goneaway in production rests on: logs fit for files and shippers, the
//! version naming its commit, shell completions and manual pages, the systemd units, and the
//! example proxy configuration, started for real.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, goneaway, stderr, stdout};

/// Runs `goneaway ARGS` for `secs` seconds then stops it with SIGINT (`timeout(1)`), with
/// `NO_COLOR` as given (the usual test helper sets it; these tests decide it themselves).
fn run_for(secs: u32, no_color: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("timeout");
    command
        .args([
            "-s",
            "INT",
            &secs.to_string(),
            env!("CARGO_BIN_EXE_goneaway"),
        ])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("GONEAWAY_LOG")
        .env_remove("GONEAWAY_LOG_FORMAT")
        .stdin(Stdio::null());
    match no_color {
        Some(v) => command.env("NO_COLOR", v),
        None => command.env_remove("NO_COLOR"),
    };
    command.output().expect("timeout(1) runs")
}

/// `goneaway watch` against a port nobody listens on: it logs a warning at its first poll.
fn watch_args(port: u16, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "watch",
            "--url",
            &format!("mysql://monitor:not-a-secret@127.0.0.1:{port}"),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "200ms",
        ]
        .map(String::from),
    );
    args
}

#[test]
fn logs_to_a_pipe_have_no_colour_and_json_lines_parse() {
    let port = free_port();
    // A pipe, NO_COLOR unset: plain text all the same.
    let args = watch_args(port, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_for(3, None, &args);
    let log = stderr(&out);
    assert!(
        log.contains("WARN") && log.contains("server does not answer"),
        "{log}"
    );
    assert!(
        !out.stderr.contains(&0x1b),
        "escape codes on a pipe:\n{log}"
    );

    let args = watch_args(port, &["--log-format", "json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_for(3, None, &args);
    let log = stderr(&out);
    assert!(!out.stderr.contains(&0x1b), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty(), "no log line");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(
            v["timestamp"].is_string() && v["target"].is_string(),
            "{line}"
        );
    }
    let warning: serde_json::Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.contains("server does not answer"))
            .unwrap_or_else(|| panic!("no warning logged:\n{log}")),
    )
    .unwrap();
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["message"], "server does not answer");
    assert_eq!(warning["cause"], "server_unreachable");
    assert_eq!(
        warning["server"],
        format!("mysql://monitor:****@127.0.0.1:{port}")
    );
    assert!(!log.contains("not-a-secret"), "{log}");

    // The environment variable, for units and containers.
    let args = watch_args(port, &[]);
    let mut command = Command::new("timeout");
    let out = command
        .args(["-s", "INT", "3", env!("CARGO_BIN_EXE_goneaway")])
        .args(&args)
        .env("GONEAWAY_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let first = stderr(&out).lines().next().map(str::to_owned);
    let first = first.unwrap_or_else(|| panic!("no log line: {}", stderr(&out)));
    assert!(
        serde_json::from_str::<serde_json::Value>(&first).is_ok(),
        "{first}"
    );
}

/// Runs `goneaway ARGS` on a terminal (script(1) gives it a pseudo-terminal) and returns
/// what the terminal showed.
fn on_a_terminal(no_color: Option<&str>, args: &[String]) -> Vec<u8> {
    let inner = std::iter::once(env!("CARGO_BIN_EXE_goneaway").to_owned())
        .chain(args.iter().cloned())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    command
        .args([
            "-q",
            "-e",
            "-c",
            &format!("timeout -s INT 3 {inner}"),
            "/dev/null",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    match no_color {
        Some(v) => command.env("NO_COLOR", v),
        None => command.env_remove("NO_COLOR"),
    };
    let out = command
        .output()
        .expect("script(1) runs (util-linux: apt-get install bsdutils)");
    out.stdout
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color() {
    let args = watch_args(free_port(), &[]);
    let shown = on_a_terminal(None, &args);
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("server does not answer"), "{text}");
    assert!(shown.contains(&0x1b), "no colour on a terminal: {text}");
    // An empty NO_COLOR is as good as none (https://no-color.org).
    assert!(on_a_terminal(Some(""), &args).contains(&0x1b));

    let shown = on_a_terminal(Some("1"), &args);
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("server does not answer"), "{text}");
    assert!(!shown.contains(&0x1b), "colour despite NO_COLOR: {text}");
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = crate::util::run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let line = stdout(&out);
    let line = line.trim();
    let rest = line
        .strip_prefix(&format!("goneaway {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `goneaway VERSION (COMMIT)`: {line}"));
    let hash = rest.strip_suffix("-dirty").unwrap_or(rest);
    assert!(
        hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{line}"
    );
    // A commit of this repository, at or before HEAD (others may commit while tests run).
    let git = Command::new("git")
        .args(["merge-base", "--is-ancestor", hash, "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("git runs");
    assert!(git.success(), "{hash} is not HEAD or before it");
    // Subcommands say the same, under their own name.
    assert_eq!(
        stdout(&crate::util::run(&["ping", "--version"])).trim(),
        line.replacen("goneaway", "goneaway-ping", 1)
    );
}

/// The subcommands `goneaway help` lists (help itself aside).
fn subcommands() -> Vec<String> {
    let help = stdout(&crate::util::run(&["help"]));
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    for expected in [
        "explain", "doctor", "proxy", "ping", "watch", "chaos", "demo",
    ] {
        assert!(names.iter().any(|n| n == expected), "{help}");
    }
    names
}

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    let subcommands = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = crate::util::run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for sub in &subcommands {
            assert!(script.contains(sub.as_str()), "{shell} lacks {sub}");
        }
    }
    let bash = stdout(&crate::util::run(&["completions", "bash"]));
    assert!(bash.contains("complete -F _goneaway"), "{bash}");
    // Options of a subcommand complete too.
    assert!(bash.contains("--log-format") && bash.contains("--wait"));
    // bash itself accepts the script.
    let check = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .expect("bash runs");
    assert!(check.success());
    assert_eq!(
        crate::util::run(&["completions", "tcsh"]).status.code(),
        Some(64)
    );
}

/// Checks `page` (roff) with groff's warnings on, and renders it with man(1): the text, with
/// runs of white space (justification) made single spaces.
fn check_page(page: &Path) -> String {
    let groff = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("groff runs (apt-get install groff-base)");
    assert!(
        groff.status.success() && groff.stderr.is_empty(),
        "{}: {}",
        page.display(),
        stderr(&groff)
    );
    let man = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "200")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man runs (apt-get install man-db)");
    assert!(man.status.success(), "{}: {}", page.display(), stderr(&man));
    assert!(
        man.stderr.is_empty(),
        "{}: {}",
        page.display(),
        stderr(&man)
    );
    stdout(&man)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn man_page_is_valid_roff_naming_every_subcommand() {
    let out = crate::util::run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let roff = stdout(&out);
    assert!(roff.contains(".TH goneaway 1"), "{roff}");
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS"] {
        assert!(roff.contains(&format!(".SH {section}")), "no {section}");
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("goneaway.1");
    std::fs::write(&page, &roff).unwrap();
    let shown = check_page(&page);
    assert!(
        shown.contains("goneaway - MySQL connections that don't go away"),
        "{shown}"
    );
    assert!(shown.contains("--log-format"), "{shown}");
    for sub in subcommands() {
        assert!(
            shown.contains(&format!("goneaway-{sub}(1)")),
            "no {sub}:\n{shown}"
        );
    }

    // One page a subcommand, nested ones too, each valid.
    let pages = dir.path().join("man1");
    let out = crate::util::run(&["man", "--out-dir", pages.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for sub in subcommands() {
        let shown = check_page(&pages.join(format!("goneaway-{sub}.1")));
        assert!(shown.contains(&format!("goneaway-{sub} - ")), "{shown}");
    }
    let shown = check_page(&pages.join("goneaway-chaos-ctl.1"));
    assert!(shown.contains("goneaway-chaos-ctl"), "{shown}");
    let ping = check_page(&pages.join("goneaway-ping.1"));
    assert!(ping.contains("Exit codes:"), "{ping}");
}

/// The repository's `dist/` directory.
fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// Where each unit runs goneaway from once installed.
const INSTALLED_BINARY: &str = "/usr/local/bin/goneaway";

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    // verify also checks that each Documentation=man: page exists: install ours where man
    // looks (MANPATH), as a package would.
    let man = dir.path().join("man");
    let out = crate::util::run(&["man", "--out-dir", man.join("man1").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for name in [
        "goneaway-proxy.service",
        "goneaway-proxy@.service",
        "goneaway-watch.service",
    ] {
        let unit = std::fs::read_to_string(dist().join("systemd").join(name)).unwrap();
        // Passwords come from a file, never from the command line.
        for line in unit.lines().filter(|l| l.starts_with("Exec")) {
            assert!(
                !line.contains("password") && !line.contains("://"),
                "{name}: {line}"
            );
        }
        for setting in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "LockPersonality=yes",
            "MemoryDenyWriteExecute=yes",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=\n",
            "Restart=on-failure",
        ] {
            assert!(unit.contains(setting), "{name} lacks {setting:?}");
        }
        assert!(
            unit.contains(&format!("ExecStart={INSTALLED_BINARY} ")),
            "{name}"
        );
        // verify needs the binary to exist: the one under test stands in for it. A template
        // is checked as one of its instances, the way systemd loads it.
        let copy = dir.path().join(name.replace("@.", "@example."));
        std::fs::write(
            &copy,
            unit.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_goneaway")),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .env("MANPATH", &man)
            .output()
            .expect("systemd-analyze runs (apt-get install systemd)");
        // Not under systemd as PID 1, verify has said nothing else on this machine; any
        // line (an unknown key, a bad value, a missing file) fails.
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{name}: exit {:?}\n{}{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        // The sandbox as systemd itself rates it (0 safest, 10 unprotected).
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&copy)
            .output()
            .unwrap();
        let report = stdout(&out);
        let exposure: f64 = report
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no exposure level:\n{report}{}", stderr(&out)));
        assert!(exposure <= 1.5, "{name}: exposure {exposure}\n{report}");
    }
    let proxy = std::fs::read_to_string(dist().join("systemd/goneaway-proxy.service")).unwrap();
    assert!(proxy.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(proxy.contains("LimitNOFILE=65536"));
    assert!(proxy.contains("--config /etc/goneaway/proxy.toml"));
    // The template: one instance per configuration file, otherwise the same unit.
    let template = std::fs::read_to_string(dist().join("systemd/goneaway-proxy@.service")).unwrap();
    assert!(template.contains("--config /etc/goneaway/%i.toml"));
    let settings = |unit: &str| -> Vec<String> {
        unit.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter(|l| !l.starts_with("Description=") && !l.starts_with("ExecStart="))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        settings(&template),
        settings(&proxy),
        "goneaway-proxy@.service differs from goneaway-proxy.service beyond the instance"
    );
    let watch = std::fs::read_to_string(dist().join("systemd/goneaway-watch.service")).unwrap();
    assert!(watch.contains("EnvironmentFile=/etc/goneaway/watch.env"));

    // The proxy's user, as systemd-sysusers would create it.
    let out = Command::new("systemd-sysusers")
        .arg("--dry-run")
        .arg(dist().join("systemd/goneaway.sysusers.conf"))
        .output()
        .expect("systemd-sysusers runs");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The keys `goneaway proxy` reads from TOML, from the source that reads them (its
/// `FileConfig`), so that a new key without a line in the example fails here.
fn proxy_config_keys() -> Vec<String> {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/src/config.rs"),
    )
    .unwrap();
    let body = source
        .split("struct FileConfig {")
        .nth(1)
        .and_then(|s| s.split("\n}").next())
        .expect("config.rs has FileConfig");
    let keys: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_owned()))
        .collect();
    assert!(keys.len() > 10, "{keys:?}");
    keys
}

#[test]
fn example_proxy_config_documents_every_key_and_parses() {
    let example = std::fs::read_to_string(dist().join("goneaway-proxy.toml")).unwrap();
    let config = goneaway_proxy::ProxyConfig::from_toml(&example).expect("the example parses");
    assert_eq!(config.listen.to_string(), "127.0.0.1:6033");
    assert_eq!(
        config.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9633")
    );
    assert_eq!(config.effective_accounts()[0].user, "app");
    for key in proxy_config_keys() {
        let key = if key == "accounts" {
            "[[accounts]]".to_owned()
        } else {
            format!("{key} =")
        };
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&key)),
            "the example does not show {key}"
        );
    }
    // Every commented-out key, switched on, still parses and shows the default (apart from
    // the TLS files and the keepalive interval, which have none to show).
    let all_on: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(key, _)| {
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let on =
        goneaway_proxy::ProxyConfig::from_toml(&all_on).unwrap_or_else(|e| panic!("{e}\n{all_on}"));
    let default = goneaway_proxy::ProxyConfig::new(config.listen, config.backend.clone());
    assert!(on.tls_cert.is_some() && on.tls_key.is_some() && !on.require_tls);
    assert_eq!(
        (
            on.max_clients,
            on.max_backends,
            on.max_pending_logins,
            on.max_pending_logins_per_address
        ),
        (
            default.max_clients,
            default.max_backends,
            default.max_pending_logins,
            default.max_pending_logins_per_address
        )
    );
    assert_eq!(
        (
            on.server_wait,
            on.connect_timeout,
            on.login_timeout,
            on.failed_login_max_delay,
            on.shutdown_grace
        ),
        (
            default.server_wait,
            default.connect_timeout,
            default.login_timeout,
            default.failed_login_max_delay,
            default.shutdown_grace
        )
    );
    assert_eq!(
        (
            on.reply_buffer,
            on.max_attempts,
            on.failed_login_threshold,
            on.client_idle_timeout
        ),
        (
            default.reply_buffer,
            default.max_attempts,
            default.failed_login_threshold,
            default.client_idle_timeout
        )
    );
    assert_eq!(on.server_accounts, default.server_accounts);
}

/// The example for a cluster (`dist/goneaway-proxy-cluster.toml`, one instance of
/// `goneaway-proxy@.service`) parses, names a replication pair, and sets only keys the proxy
/// reads (the parser refuses unknown ones).
#[test]
fn example_cluster_config_parses() {
    let example = std::fs::read_to_string(dist().join("goneaway-proxy-cluster.toml")).unwrap();
    let config =
        goneaway_proxy::ProxyConfig::from_toml(&example).expect("the cluster example parses");
    let members: Vec<String> = config.members().iter().map(ToString::to_string).collect();
    assert_eq!(members, ["db1.example:3306", "db2.example:3306"]);
    assert!(config.is_cluster());
    assert_eq!(config.cluster, goneaway_proxy::ClusterKind::Replication);
    assert_eq!(config.switchover_wait, Duration::from_secs(30));
    assert_eq!(config.monitor_interval, Duration::from_millis(500));
    assert_eq!(config.listen.to_string(), "127.0.0.1:6033");
    assert_eq!(
        config.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9633")
    );
    assert!(!config.server_accounts);
    assert_eq!(config.effective_accounts()[0].user, "app");
    // Every key it sets is one the proxy reads (config.rs's FileConfig).
    let keys = proxy_config_keys();
    for line in example.lines().filter(|l| !l.starts_with('#')) {
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                keys.iter().any(|k| k == key) || ["user", "password"].contains(&key),
                "{key}"
            );
        }
    }
}

/// The password the test's client logs in to the proxy with, in place of the example's.
const CLIENT_PASSWORD: &str = "packaging-client-secret-41c9";

/// Stops the proxy if the test ends before it did.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `mariadb -e SQL` through the proxy on `port` as `app`, password in the environment.
fn mariadb(port: u16, sql: &str) -> Output {
    Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uapp",
            "--skip-ssl",
            "-N",
            "-B",
            "-e",
            sql,
        ])
        // Through the environment, not argv, where `ps` would show it.
        .env("MYSQL_PWD", CLIENT_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("the mariadb client runs (apt-get install mariadb-client)")
}

/// Replaces the one occurrence of `from` in `text`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in the example");
    text.replacen(from, to, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_started_from_the_example_config_serves_the_mariadb_client() {
    let server = goneaway_harness::Server::start_default()
        .await
        .expect("a harness server");
    let (port, metrics_port) = (free_port(), free_port());
    let example = std::fs::read_to_string(dist().join("goneaway-proxy.toml")).unwrap();
    // The addresses and secrets of this machine; everything else as shipped.
    let config = replace_once(
        &example,
        "\"mysql://goneaway_proxy:CHANGE-ME@127.0.0.1:3306/app\"",
        &format!("\"{}\"", server.url()),
    );
    let config = replace_once(
        &config,
        "listen = \"127.0.0.1:6033\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let config = replace_once(
        &config,
        "metrics_listen = \"127.0.0.1:9633\"",
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    let config = replace_once(
        &config,
        "password = \"CHANGE-ME-TOO\"",
        &format!("password = \"{CLIENT_PASSWORD}\""),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();

    let child = goneaway()
        .args(["proxy", "--config", path.to_str().unwrap()])
        .env_remove("MYSQL_URL")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the goneaway binary runs");
    let mut running = Running(Some(child));

    // Ready when the real client gets in (bounded: 20 s).
    let started = Instant::now();
    let out = loop {
        let out = tokio::task::spawn_blocking(move || mariadb(port, "SELECT 1"))
            .await
            .unwrap();
        if out.status.success() {
            break out;
        }
        let exited = running.0.as_mut().unwrap().try_wait().unwrap();
        assert!(exited.is_none(), "the proxy exited: {exited:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the proxy never accepted the mariadb client: {}",
            stderr(&out)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stdout(&out), "1\n");
    let health = crate::util::http_get(&format!("127.0.0.1:{metrics_port}"), "/health");
    assert!(health.ends_with("ok\n"), "{health}");

    // SIGTERM, as `systemctl stop` sends it: drained, exit 0.
    let mut child = running.0.take().unwrap();
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            running.0 = Some(child);
            panic!("the proxy did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(&format!("listening on 127.0.0.1:{port}")),
        "{said}"
    );
    for secret in [CLIENT_PASSWORD, goneaway_harness::APP_PASSWORD] {
        assert!(!said.contains(secret), "a password was printed:\n{said}");
    }
}
