//! Start, restart, crash, stop and clean up.

use mysql_async::prelude::Queryable;

use goneaway_harness::Server;

async fn var(url: &str, name: &str) -> String {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let value: Option<String> = conn
        .query_first(format!("SELECT CAST(@@GLOBAL.{name} AS CHAR)"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    value.unwrap()
}

#[tokio::test]
async fn starts_with_chosen_variables() {
    let server = Server::builder()
        .var("wait_timeout", 2)
        .var("max_allowed_packet", "1M")
        .var("net_read_timeout", 5)
        .start()
        .await
        .unwrap();
    assert_eq!(var(&server.url(), "wait_timeout").await, "2");
    assert_eq!(var(&server.url(), "max_allowed_packet").await, "1048576");
    assert_eq!(var(&server.url(), "net_read_timeout").await, "5");
    assert!(server.error_log().exists());
    assert!(server.error_log_text().contains("ready for connections"));
    assert!(!server
        .url_redacted()
        .contains(goneaway_harness::APP_PASSWORD));
}

#[tokio::test]
async fn restart_keeps_port_and_data() {
    let server = Server::start_default().await.unwrap();
    let url = server.url();
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    conn.query_drop("CREATE TABLE kept (id INT PRIMARY KEY); INSERT INTO kept VALUES (7)")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let port = server.port();
    let pid = server.pid().unwrap();

    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid().unwrap(), pid, "a restart is a new process");
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    let kept: Option<i32> = conn.query_first("SELECT id FROM kept").await.unwrap();
    assert_eq!(kept, Some(7));
    conn.disconnect().await.unwrap();
    assert!(server.error_log_text().contains("Shutdown complete"));
}

#[tokio::test]
async fn crash_then_start_recovers() {
    let server = Server::start_default().await.unwrap();
    let pid = server.pid().unwrap();
    server.crash().await.unwrap();
    assert!(!server.is_running());
    // The process is really gone, not just forgotten.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(mysql_async::Conn::from_url(server.url().as_str())
        .await
        .is_err());
    server.start().await.unwrap();
    assert!(server.is_running());
    let mut conn = mysql_async::Conn::from_url(server.url().as_str())
        .await
        .unwrap();
    conn.ping().await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn drop_kills_the_process_and_removes_the_directory() {
    let server = Server::start_default().await.unwrap();
    let pid = server.pid().unwrap();
    let dir = server.data_dir();
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}

#[tokio::test]
async fn servers_run_side_by_side() {
    let (a, b) = tokio::join!(Server::start_default(), Server::start_default());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    a.stop().await.unwrap();
    // b is unaffected by a's shutdown.
    let mut conn = mysql_async::Conn::from_url(b.url().as_str()).await.unwrap();
    conn.ping().await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn missing_mariadbd_is_a_clear_error() {
    // Run in a child process: the variable must not leak into the other tests of this binary.
    if std::env::var_os("GONEAWAY_HARNESS_CHILD").is_some() {
        let error = Server::start_default().await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("mariadbd not found"), "{message}");
        assert!(
            message.contains("apt-get install mariadb-server"),
            "{message}"
        );
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "lifecycle::missing_mariadbd_is_a_clear_error",
            "--exact",
            "--nocapture",
        ])
        .env("GONEAWAY_HARNESS_CHILD", "1")
        .env("GONEAWAY_MARIADBD", "/nonexistent/mariadbd")
        .status()
        .unwrap();
    assert!(status.success());
}
