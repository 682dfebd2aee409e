//! Step one: a plain connection idles past `wait_timeout` and gets the real error, explained.

use std::process::Stdio;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;

use goneaway_harness::Server;

use super::Tour;

pub async fn run(
    tour: &Tour,
    server: &Server,
    wait_timeout: u64,
    idle: Duration,
) -> anyhow::Result<()> {
    tour.heading("1. A plain connection goes away");
    tour.say("A Rust client (mysql_async, no pool) connects and runs a query:");
    let mut conn = mysql_async::Conn::from_url(server.url().as_str()).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    tour.quote(&format!("SELECT 1 -> {}", one.unwrap_or_default()));
    tour.wait("It sits idle", idle).await;
    let error = match conn.query_drop("SELECT 1").await {
        Ok(()) => anyhow::bail!("the server did not close the idle connection"),
        Err(e) => e,
    };
    tour.say("Its next query fails:");
    tour.quote(&error.to_string());

    let cli = cli_error(server, idle).await;
    if let Some(text) = &cli {
        tour.say("The mariadb command-line client, idle just as long, says:");
        tour.quote(text);
    }

    tour.heading("2. goneaway explains it");
    let diagnosis = goneaway_core::classify_mysql_async(&error);
    let candidates = |d: &goneaway_core::Diagnosis| {
        d.causes
            .iter()
            .map(|c| format!("{} {:.0}%", c.cause, c.likelihood * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    tour.say(&format!(
        "The Rust error alone: candidates {}; retry advice {}.",
        candidates(&diagnosis),
        diagnosis.retry
    ));
    // What the pool knows and the error does not: how long the connection sat idle.
    let known = diagnosis
        .clone()
        .given_idle(idle, Duration::from_secs(wait_timeout));
    tour.say(&format!(
        "Knowing it sat idle {} s with wait_timeout={} s: {}; retry advice {} (the server \
         closed it before the statement arrived, so nothing ran).",
        idle.as_secs_f32(),
        wait_timeout,
        candidates(&known),
        known.retry
    ));
    if let Some(text) = &cli {
        tour.say("`goneaway explain` on the mariadb client's line:");
        let report = goneaway_core::scan(text)?;
        print!("{}", report.render_text(crate::output::use_color()));
    } else {
        tour.say(&diagnosis.explanation);
    }

    tour.say("The server's error log recorded it too:");
    let log = server.error_log_text();
    let aborted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Aborted connection"))
        .take(2)
        .collect();
    tour.quote(&aborted.join("\n"));
    Ok(())
}

/// Runs the real `mariadb` client: one query, an idle pause, a second query. Returns what it
/// printed on the failure, or `None` when the client is not installed.
async fn cli_error(server: &Server, idle: Duration) -> Option<String> {
    let mut child = tokio::process::Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{}", server.port()),
            &format!("-u{}", goneaway_harness::APP_USER),
            "--skip-ssl",
            goneaway_harness::DATABASE,
        ])
        // The password through the environment, not argv: it would show in `ps`.
        .env("MYSQL_PWD", goneaway_harness::APP_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(b"SELECT 1;\n").await.ok()?;
    tokio::time::sleep(idle).await;
    stdin.write_all(b"SELECT 2;\n").await.ok()?;
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find(|l| l.starts_with("ERROR"))
        .map(str::to_string)
}
