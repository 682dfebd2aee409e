//! TLS towards clients: the real `mariadb` client over TLS, plain text still accepted
//! unless `require_tls`, and a clear refusal when it is.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
use tokio::process::Command;

use crate::common::*;

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("proxy.crt"), dir.join("proxy.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

async fn tls_proxy(server: &goneaway_harness::Server, dir: &Path, require_tls: bool) -> Proxy {
    let (cert, key) = self_signed(dir);
    let backend = BackendTarget::from_url(&server.url()).unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.connect_timeout = Duration::from_secs(3);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    config.require_tls = require_tls;
    Proxy::start(config).await.expect("proxy starts with TLS")
}

/// `mariadb` with `ssl` flags, running `sql`; (success, stdout, stderr).
async fn mariadb(proxy: &Proxy, ssl: &[&str], sql: &str) -> (bool, String, String) {
    let mut c = Command::new("/usr/bin/mariadb");
    c.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .args(ssl)
        .arg(format!("-P{}", proxy.local_addr().port()))
        .arg(format!("-u{USER}"))
        .arg(format!("-p{PASSWORD}"))
        .args(["goneaway", "-e", sql])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(20), c.output())
        .await
        .expect("mariadb ends within 20 s")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TLS: &[&str] = &["--ssl", "--ssl-verify-server-cert=0"];

#[tokio::test]
async fn mariadb_client_logs_in_over_tls() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = tls_proxy(&server, dir.path(), false).await;

    // The client's own view of its connection: `status` names the cipher in use.
    let (ok, stdout, stderr) = mariadb(&proxy, TLS, "status; SELECT 40 + 2 AS answer").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Cipher in use is"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");
    assert_eq!(proxy.stats().tls_logins.load(Ordering::Relaxed), 1);

    // Without TLS, the same proxy still takes plain-text logins.
    let (ok, stdout, stderr) = mariadb(&proxy, &["--skip-ssl"], "status; SELECT 7").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Not in use"), "{stdout}");
    let mut conn = connect(&proxy).await;
    assert_eq!(one(&mut conn, "SELECT 'plain'").await.unwrap(), "plain");
    assert_eq!(proxy.stats().tls_logins.load(Ordering::Relaxed), 1);
    let metrics = http_get(proxy.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("goneaway_proxy_tls_logins_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn require_tls_refuses_plain_text_logins() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = tls_proxy(&server, dir.path(), true).await;

    let (ok, _, stderr) = mariadb(&proxy, &["--skip-ssl"], "SELECT 1").await;
    assert!(!ok);
    assert!(
        stderr.contains("3159") && stderr.contains("requires TLS"),
        "{stderr}"
    );
    let e = mysql_async::Conn::new(opts(&proxy)).await.unwrap_err();
    assert_eq!(code(&e), 3159, "{e}");
    assert_eq!(proxy.stats().errors_by_kind().get("tls_required"), Some(&2));

    let (ok, stdout, stderr) = mariadb(&proxy, TLS, "SELECT 'over tls'").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("over tls"), "{stdout}");
}

#[tokio::test]
async fn unreadable_certificate_fails_at_start() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = BackendTarget::from_url(&server.url()).unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.tls_cert = Some(dir.path().join("missing.crt"));
    config.tls_key = Some(dir.path().join("missing.key"));
    let e = Proxy::start(config.clone()).await.unwrap_err();
    assert!(e.to_string().contains("missing.crt"), "{e}");
    config.tls_key = None;
    let e = Proxy::start(config).await.unwrap_err();
    assert!(e.to_string().contains("tls_key"), "{e}");
}
