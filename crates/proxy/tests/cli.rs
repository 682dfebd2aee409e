//! The `mariadb` command-line client through the proxy.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::*;

fn mariadb(proxy: &goneaway_proxy::Proxy) -> Command {
    mariadb_as(proxy, USER, PASSWORD)
}

#[tokio::test]
async fn mariadb_client_queries_and_survives_idle() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let out = mariadb(&proxy)
        .arg("-e")
        .arg("SELECT 40 + 2; SHOW DATABASES")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("42\n") && stdout.contains("goneaway"),
        "{stdout}"
    );

    // One session: a query, an idle longer than wait_timeout, a query.
    let mut child = mariadb(&proxy).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SELECT 'first';\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stdin.write_all(b"SELECT 'second';\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "first\nsecond\n");
}

#[tokio::test]
async fn mariadb_client_load_data_local_infile() {
    let server = server().await;
    let proxy = proxy(&server).await;
    let dir = std::env::temp_dir().join(format!("goneaway-proxy-infile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rows.tsv");
    let rows: String = (1..=500).map(|i| format!("{i}\trow {i}\n")).collect();
    std::fs::write(&file, rows).unwrap();
    let sql = format!(
        "CREATE TABLE f (id INT PRIMARY KEY, v VARCHAR(20)); \
         LOAD DATA LOCAL INFILE '{}' INTO TABLE f; \
         SELECT COUNT(*), SUM(id), MAX(v) FROM f; SELECT 'after'",
        file.display()
    );
    let out = mariadb(&proxy)
        .arg("--local-infile=1")
        .arg("-e")
        .arg(sql)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "500\t125250\trow 99\nafter\n");
}

/// A server that cannot be reached: the `mariadb` client is told so at login in words it
/// can read (a client-range number such as 2003 would be "2027 Received malformed packet").
#[tokio::test]
async fn mariadb_client_is_told_when_the_server_is_unreachable() {
    use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = BackendTarget::from_url(&format!(
        "mysql://{USER}:{PASSWORD}@127.0.0.1:{port}/goneaway"
    ))
    .unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.server_wait = Duration::from_millis(500);
    let proxy = Proxy::start(config).await.expect("proxy starts");
    let out = Command::new("/usr/bin/mariadb")
        .args([
            "--host=127.0.0.1",
            &format!("--port={}", proxy.local_addr().port()),
            &format!("--user={USER}"),
            &format!("--password={PASSWORD}"),
            "--skip-ssl",
            "-e",
            "SELECT 1",
        ])
        .output()
        .await
        .expect("the mariadb client runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ERROR 1105 (08S01)"), "{err}");
    assert!(err.contains("Can't connect to MySQL server"), "{err}");
}
