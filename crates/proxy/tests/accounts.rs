//! The server's own accounts log in through the proxy as themselves: the server's
//! passwords, host rules and privileges apply, password changes are seen at once, and a
//! session keeps its account across a lost backend.

use std::process::Stdio;
use std::time::Duration;

use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
use mysql_async::prelude::*;
use tokio::process::Command;

use crate::common::*;

async fn proxy_with_accounts(server: &goneaway_harness::Server, server_accounts: bool) -> Proxy {
    let backend = BackendTarget::from_url(&server.url()).unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.server_wait = Duration::from_secs(30);
    config.connect_timeout = Duration::from_secs(3);
    config.server_accounts = server_accounts;
    Proxy::start(config).await.expect("proxy starts")
}

fn as_account(proxy: &Proxy, user: &str, password: &str) -> mysql_async::OptsBuilder {
    opts(proxy)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("goneaway"))
}

#[tokio::test]
async fn server_accounts_log_in_as_themselves() {
    let server = server().await;
    server
        .admin(
            "CREATE USER 'reader'@'%' IDENTIFIED BY 'first-pw'; \
             GRANT SELECT ON goneaway.* TO 'reader'@'%'; \
             CREATE USER 'elsewhere'@'10.9.9.9' IDENTIFIED BY 'pw'; \
             GRANT ALL ON *.* TO 'elsewhere'@'10.9.9.9'; \
             CREATE USER 'open'@'%'; GRANT SELECT ON goneaway.* TO 'open'@'%'; \
             CREATE TABLE goneaway.accounts_t (id INT PRIMARY KEY); \
             INSERT INTO goneaway.accounts_t VALUES (1)",
        )
        .await
        .unwrap();
    let proxy = proxy_with_accounts(&server, true).await;

    // The account is the server's: CURRENT_USER() and its privileges, the server's own
    // 1142 for what it may not do.
    let mut reader = mysql_async::Conn::new(as_account(&proxy, "reader", "first-pw"))
        .await
        .expect("a server account logs in through the proxy");
    assert_eq!(
        one(&mut reader, "SELECT CURRENT_USER()").await.unwrap(),
        "reader@%"
    );
    let n: Option<i64> = reader
        .query_first("SELECT COUNT(*) FROM accounts_t")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let e = reader
        .query_drop("INSERT INTO accounts_t VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1142, "{e}");

    // Across a lost backend the session logs in again as the same account (the proxy
    // never saw the password, only the proof of it).
    let id = backend_id(&mut reader).await;
    server.kill_connection(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        one(&mut reader, "SELECT CURRENT_USER()").await.unwrap(),
        "reader@%"
    );
    assert_ne!(backend_id(&mut reader).await, id);

    // A wrong password, an unknown user, a host the account does not admit: 1045.
    for (user, pw) in [
        ("reader", "guess"),
        ("nobody", "x"),
        ("elsewhere", "pw"),
        ("open", "x"),
    ] {
        let e = mysql_async::Conn::new(as_account(&proxy, user, pw))
            .await
            .unwrap_err();
        assert_eq!(code(&e), 1045, "{user}: {e}");
        assert!(e.to_string().contains("Access denied"), "{e}");
    }
    // An account without a password logs in without one.
    let mut open = mysql_async::Conn::new(as_account(&proxy, "open", ""))
        .await
        .unwrap();
    assert_eq!(
        one(&mut open, "SELECT CURRENT_USER()").await.unwrap(),
        "open@%"
    );

    // A new password works at once, the old one no longer does; a new account too.
    server
        .admin(
            "SET PASSWORD FOR 'reader'@'%' = PASSWORD('second-pw'); \
             CREATE USER 'newcomer'@'%' IDENTIFIED BY 'hello'",
        )
        .await
        .unwrap();
    let e = mysql_async::Conn::new(as_account(&proxy, "reader", "first-pw"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    mysql_async::Conn::new(as_account(&proxy, "reader", "second-pw"))
        .await
        .expect("the new password");
    mysql_async::Conn::new(as_account(&proxy, "newcomer", "hello").db_name(None::<String>))
        .await
        .expect("an account created after the proxy started");

    // COM_CHANGE_USER to a server account, and back to the configured one.
    let mut conn = connect(&proxy).await;
    conn.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("reader".into()))
            .with_pass(Some("second-pw".into())),
    )
    .await
    .unwrap();
    assert_eq!(
        one(&mut conn, "SELECT CURRENT_USER()").await.unwrap(),
        "reader@%"
    );
    let e = conn
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("reader".into()))
                .with_pass(Some("first-pw".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    assert_eq!(
        one(&mut conn, "SELECT CURRENT_USER()").await.unwrap(),
        "reader@%",
        "a refused change of user leaves the session as it was"
    );
    conn.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(USER.into()))
            .with_pass(Some(PASSWORD.into())),
    )
    .await
    .unwrap();
    assert!(one(&mut conn, "SELECT CURRENT_USER()")
        .await
        .unwrap()
        .starts_with("goneaway@"));
    assert!(
        proxy
            .stats()
            .server_account_reads
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2,
        "the accounts were read again after the change"
    );

    // The mariadb client, as a user runs it.
    let out = Command::new("/usr/bin/mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .args(["--skip-ssl", "-N", "-B", "-ureader", "-psecond-pw"])
        .arg(format!("-P{}", proxy.local_addr().port()))
        .args([
            "-e",
            "SELECT CURRENT_USER(), COUNT(*) FROM goneaway.accounts_t",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reader@%\t1\n");
}

#[tokio::test]
async fn without_server_accounts_only_the_configured_account_logs_in() {
    let server = server().await;
    server
        .admin("CREATE USER 'reader'@'%' IDENTIFIED BY 'pw'")
        .await
        .unwrap();
    let proxy = proxy_with_accounts(&server, false).await;
    let e = mysql_async::Conn::new(as_account(&proxy, "reader", "pw").db_name(None::<String>))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    connect(&proxy).await;
    assert_eq!(
        proxy
            .stats()
            .server_account_reads
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// An account whose password expired logs in to its sandbox, as directly (the `mariadb`
/// client with --connect-expired-password): statements are refused with the server's 1820
/// until the client sets a password, and from then on the session is an ordinary one (it
/// survives a lost backend, logging in with the new password).
#[tokio::test]
async fn an_expired_password_gets_the_servers_sandbox() {
    use tokio::io::AsyncWriteExt;
    let server = server().await;
    server
        .admin(
            "SET GLOBAL disconnect_on_expired_password = OFF; \
             CREATE USER 'late'@'%' IDENTIFIED BY 'old-pw' PASSWORD EXPIRE; \
             GRANT SELECT ON goneaway.* TO 'late'@'%'",
        )
        .await
        .unwrap();
    let proxy = proxy_with_accounts(&server, true).await;
    let mut child = Command::new("/usr/bin/mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .args([
            "--skip-ssl",
            "-N",
            "-B",
            "--force",
            "--connect-expired-password",
        ])
        .args(["-ulate", "-pold-pw"])
        .arg(format!("-P{}", proxy.local_addr().port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"SELECT 'refused';\nSET PASSWORD = PASSWORD('new-pw');\nSELECT CURRENT_USER();\n",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The backend goes away; the next statement runs on a fresh one.
    let mut admin = server.admin_conn().await.unwrap();
    let ids: Vec<u64> = admin
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'late'")
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "one backend for the session");
    admin.query_drop(format!("KILL {}", ids[0])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stdin
        .write_all(b"SELECT CONCAT('again ', CURRENT_USER());\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1820"), "{stderr}");
    assert_eq!(stdout, "late@%\nagain late@%\n", "{stderr}");
    mysql_async::Conn::new(as_account(&proxy, "late", "new-pw").db_name(None::<String>))
        .await
        .expect("the new password");
}

/// `mysql_old_password` accounts (with `secure_auth = OFF`) log in through the proxy with
/// the real `mariadb` client, which the proxy asks for that plugin.
#[tokio::test]
async fn old_password_accounts_log_in_with_the_mariadb_client() {
    let server = server().await;
    server
        .admin(
            "SET GLOBAL secure_auth = OFF; \
             CREATE USER 'legacy'@'%' IDENTIFIED BY PASSWORD '09301740536db389'; \
             GRANT SELECT ON goneaway.* TO 'legacy'@'%'",
        )
        .await
        .unwrap();
    let proxy = proxy_with_accounts(&server, true).await;
    let run = |password: &'static str| {
        Command::new("/usr/bin/mariadb")
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
            .args(["--skip-ssl", "-N", "-B", "-ulegacy"])
            .arg(format!("-p{password}"))
            .arg(format!("-P{}", proxy.local_addr().port()))
            .args(["-e", "SELECT CURRENT_USER()"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
    };
    let out = run("oldpw").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "legacy@%\n");
    let out = run("wrong").await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERROR 1045"), "{err}");
}

/// The server's rules for which account a login gets, as directly: an anonymous account
/// (`''@'%'`) admits any user name that has no account of its own, and a locked account
/// gets the server's 4151 for the right password (1045 for a wrong one).
#[tokio::test]
async fn anonymous_and_locked_accounts_as_the_server_has_them() {
    let server = server().await;
    server
        .admin(
            "CREATE USER ''@'%'; GRANT SELECT ON goneaway.* TO ''@'%'; \
             CREATE USER 'shut'@'%' IDENTIFIED BY 'pw' ACCOUNT LOCK",
        )
        .await
        .unwrap();
    let proxy = proxy_with_accounts(&server, true).await;
    let mut anyone = mysql_async::Conn::new(as_account(&proxy, "whoever", ""))
        .await
        .expect("the anonymous account admits an unknown user name");
    assert_eq!(
        one(&mut anyone, "SELECT CURRENT_USER()").await.unwrap(),
        "@%"
    );
    let e = mysql_async::Conn::new(as_account(&proxy, "shut", "pw").db_name(None::<String>))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 4151, "{e}");
    let e = mysql_async::Conn::new(as_account(&proxy, "shut", "nope").db_name(None::<String>))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045, "{e}");
    match e {
        mysql_async::Error::Server(e) => assert_eq!(
            e.message, "Access denied for user 'shut'@'127.0.0.1' (using password: YES)",
            "the server's words"
        ),
        other => panic!("{other}"),
    }
    // Unlocked, it logs in at once, as directly (the lock the proxy read last is older).
    server
        .admin("ALTER USER 'shut'@'%' ACCOUNT UNLOCK")
        .await
        .unwrap();
    let mut shut = mysql_async::Conn::new(as_account(&proxy, "shut", "pw").db_name(None::<String>))
        .await
        .expect("an unlocked account logs in");
    assert_eq!(
        one(&mut shut, "SELECT CURRENT_USER()").await.unwrap(),
        "shut@%"
    );
}

/// What the `mariadb` CLI prints for `-e` as `plain`@`%` through `port`.
async fn cli_as_plain(port: u16, sql: &str) -> (bool, String, String) {
    let out = Command::new("/usr/bin/mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .args(["--skip-ssl", "-N", "-B", "-uplain", "-ppw", "--force"])
        .arg(format!("-P{port}"))
        .args(["-e", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_failing_init_connect_fails_the_first_statement_as_directly() {
    let server = server().await;
    server
        .admin(
            "CREATE USER 'plain'@'%' IDENTIFIED BY 'pw'; \
             GRANT SELECT ON goneaway.* TO 'plain'@'%'; \
             SET GLOBAL init_connect = 'no such statement'",
        )
        .await
        .unwrap();
    let proxy = proxy_with_accounts(&server, true).await;
    // Directly: the login succeeds (init_connect runs after it, for accounts without
    // SUPER), the first statement gets 1184 and the connection is gone, so the second
    // gets the client library's own lost-connection error.
    let two = "SELECT 'first'; SELECT 'second'";
    let (ok, out, direct) = cli_as_plain(server.port(), two).await;
    assert!(!ok && out.is_empty(), "{direct}");
    assert!(direct.contains("ERROR 1184 (08S01)"), "{direct}");
    // Through the proxy: the same error for the first statement, then a closed connection.
    let (ok, out, proxied) = cli_as_plain(proxy.local_addr().port(), two).await;
    assert!(!ok && out.is_empty(), "{proxied}");
    assert!(proxied.contains("ERROR 1184 (08S01)"), "{proxied}");
    assert!(proxied.contains("init_connect command failed"), "{proxied}");
    let second = |s: &str| {
        s.lines()
            .nth(1)
            .map(|l| l[..l.find(" at line").unwrap_or(l.len())].to_owned())
    };
    assert_eq!(
        second(&proxied),
        second(&direct),
        "direct: {direct}\nproxied: {proxied}"
    );
    // Once the server's init_connect works again, so does the proxy.
    server.admin("SET GLOBAL init_connect = ''").await.unwrap();
    let (ok, out, err) = cli_as_plain(proxy.local_addr().port(), "SELECT 'ok'").await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ok");
}
