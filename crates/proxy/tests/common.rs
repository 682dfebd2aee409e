//! A server with a 2 s wait_timeout and a proxy in front of it.

use std::time::Duration;

use goneaway_harness::Server;
use goneaway_proxy::{BackendTarget, Proxy, ProxyConfig};
use mysql_async::prelude::*;

pub const USER: &str = "goneaway";
pub const PASSWORD: &str = "goneaway-test-password";

pub async fn server() -> Server {
    Server::builder()
        .var("wait_timeout", 2)
        .var("max_allowed_packet", "1M")
        .start()
        .await
        .expect("a harness server")
}

/// A fault-injecting relay in front of `server`.
pub async fn relay(server: &Server) -> goneaway_relay::Relay {
    goneaway_relay::Relay::start(goneaway_relay::RelayConfig::new(
        "127.0.0.1:0",
        server.addr().to_string(),
    ))
    .await
    .expect("relay")
}

/// A proxy in front of `upstream` (the server's own address, or a relay's).
pub async fn proxy_to(server: &Server, upstream: std::net::SocketAddr) -> Proxy {
    proxy_with(server, upstream, |_| {}).await
}

/// [`proxy_to`], with the configuration adjusted by `adjust`.
pub async fn proxy_with(
    server: &Server,
    upstream: std::net::SocketAddr,
    adjust: impl FnOnce(&mut ProxyConfig),
) -> Proxy {
    let backend = BackendTarget::from_url(&server.url_for(upstream)).unwrap();
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backend);
    config.server_wait = Duration::from_secs(30);
    config.connect_timeout = Duration::from_secs(3);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    adjust(&mut config);
    Proxy::start(config).await.expect("proxy starts")
}

/// A proxy that never replays a lost transaction: the failed-transaction state, which
/// also holds for every transaction that cannot be replayed.
pub async fn proxy_without_replay(server: &Server) -> Proxy {
    proxy_with(server, server.addr(), |c| c.transaction_replay = false).await
}

pub async fn proxy(server: &Server) -> Proxy {
    proxy_to(server, server.addr()).await
}

pub fn opts(proxy: &Proxy) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.local_addr().port())
        .user(Some(USER))
        .pass(Some(PASSWORD))
        .db_name(Some("goneaway"))
        .prefer_socket(false)
}

pub async fn connect(proxy: &Proxy) -> mysql_async::Conn {
    mysql_async::Conn::new(opts(proxy))
        .await
        .expect("connects through the proxy")
}

/// The server-side connection id behind the client's session.
pub async fn backend_id(conn: &mut mysql_async::Conn) -> u32 {
    conn.query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap()
}

pub async fn one(conn: &mut mysql_async::Conn, sql: &str) -> Result<String, mysql_async::Error> {
    let v: Option<String> = conn.query_first(sql).await?;
    Ok(v.unwrap_or_default())
}

/// The server error code of a failed statement.
pub fn code(e: &mysql_async::Error) -> u16 {
    match e {
        mysql_async::Error::Server(s) => s.code,
        other => panic!("expected a server error, got {other}"),
    }
}

/// A whole HTTP response (status line, headers, body) for `GET path`. `Connection: close`
/// makes the server end the response with a close, as hyper otherwise keeps it alive.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("the HTTP response within 5 s")
        .unwrap();
    out
}

/// Waits (at most 20 s) until the proxy's commit marks are in use.
pub async fn wait_for_marks(proxy: &Proxy) {
    let started = std::time::Instant::now();
    while !proxy.commit_marks_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the commit marks' table was never made"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real `mariadb` client in batch mode (`-N -B`), through `proxy` as `user`, in the
/// `goneaway` database, its standard streams piped.
pub fn mariadb_as(proxy: &Proxy, user: &str, password: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("/usr/bin/mariadb");
    c.args([
        "--no-defaults",
        "--protocol=TCP",
        "-h",
        "127.0.0.1",
        "--skip-ssl",
        "-N",
        "-B",
    ])
    .arg(format!("-P{}", proxy.local_addr().port()))
    .arg(format!("-u{user}"))
    .arg(format!("-p{password}"))
    .arg("goneaway")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    c
}
