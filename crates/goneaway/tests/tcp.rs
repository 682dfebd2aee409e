//! TCP keepalive interval, probe count and `TCP_USER_TIMEOUT` on the live sockets (Linux).
//!
//! The socket is found here independently of the pool's `/proc/net/tcp` lookup: every
//! descriptor of the process is asked for its own endpoints (`getsockname`,
//! `getpeername`), and the one matching the server's view of the connection is read with
//! `getsockopt`.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::common::{opts, pool, relay, server};

/// The options as set on the kernel socket: keepalive on, idle, interval, probes, user
/// timeout (ms).
#[derive(Debug, PartialEq, Eq)]
struct Kernel {
    keepalive: bool,
    idle_s: i32,
    interval_s: i32,
    probes: i32,
    user_timeout_ms: i32,
}

#[tokio::test]
async fn options_reach_the_live_socket() {
    let server = server(60).await;
    let custom = pool(
        &server.url(),
        opts()
            .tcp_keepalive(Some(Duration::from_secs(7)))
            .tcp_keepalive_interval(Duration::from_secs(3))
            .tcp_keepalive_probes(4),
    );
    let mut c = custom.get().await.expect("checkout");
    let tuning = c.tcp_tuning().expect("the socket was found and tuned");
    assert_eq!(tuning.peer.port(), server.port());
    assert_eq!(tuning.keepalive_idle, Some(Duration::from_secs(7)));
    assert_eq!(tuning.keepalive_interval, Some(Duration::from_secs(3)));
    assert_eq!(tuning.keepalive_probes, Some(4));
    // Derived: 7 + 3 × 4.
    assert_eq!(tuning.user_timeout, Some(Duration::from_secs(19)));

    // The server agrees on which socket this is...
    let host: Option<String> = c
        .query_first("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
        .await
        .unwrap();
    assert_eq!(host, Some(tuning.local.to_string()));
    // ...and the kernel has the values on it.
    let fd = find_socket(tuning.local, tuning.peer);
    let expected = Kernel {
        keepalive: true,
        idle_s: 7,
        interval_s: 3,
        probes: 4,
        user_timeout_ms: 19_000,
    };
    assert_eq!(kernel_options(fd), expected);
    // Still a working connection.
    let v: Option<i64> = c.query_first("SELECT 42").await.unwrap();
    assert_eq!(v, Some(42));
    assert_eq!(
        (
            custom.status().tcp_tuned,
            custom.status().tcp_tuning_skipped
        ),
        (1, 0)
    );

    // The defaults, and an explicit user timeout.
    let defaults = pool(
        &server.url(),
        opts().tcp_user_timeout(Duration::from_millis(4500)),
    );
    let d = defaults.get().await.expect("checkout");
    let tuning = d.tcp_tuning().expect("tuned");
    let expected = Kernel {
        keepalive: true,
        idle_s: 30,
        interval_s: 10,
        probes: 3,
        user_timeout_ms: 4500,
    };
    assert_eq!(
        kernel_options(find_socket(tuning.local, tuning.peer)),
        expected
    );
}

/// Through a relay the server sees the relay's endpoint, which is no socket of ours with
/// the server's port: nothing is set, the skip is counted, and the connection works.
#[tokio::test]
async fn through_a_relay_the_socket_is_left_alone() {
    let server = server(60).await;
    let relay = relay(&server).await;
    let pool = pool(&server.url_for(relay.local_addr()), opts());
    let mut c = pool.get().await.expect("checkout");
    assert_eq!(c.tcp_tuning(), None);
    let v: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(v, Some(1));
    let st = pool.status();
    assert_eq!((st.tcp_tuned, st.tcp_tuning_skipped), (0, 1), "{st:?}");
}

/// The one descriptor of this process connected from `local` to `peer`.
fn find_socket(local: SocketAddr, peer: SocketAddr) -> RawFd {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if sockaddr(fd, libc::getsockname) == Some(local)
            && sockaddr(fd, libc::getpeername) == Some(peer)
        {
            found.push(fd);
        }
    }
    assert_eq!(found.len(), 1, "sockets {local} -> {peer}: {found:?}");
    found[0]
}

fn kernel_options(fd: RawFd) -> Kernel {
    Kernel {
        keepalive: get(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE) != 0,
        idle_s: get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        interval_s: get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        probes: get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        user_timeout_ms: get(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    }
}

fn get(fd: RawFd, level: i32, name: i32) -> i32 {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: reads an int option into an int of the length passed; the socket is held
    // open by the checked-out connection.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    assert_eq!(
        r,
        0,
        "getsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
    value
}

type NameFn = unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// `getsockname`/`getpeername` of an IPv4 or IPv6 socket; `None` for anything else.
fn sockaddr(fd: RawFd, f: NameFn) -> Option<SocketAddr> {
    // SAFETY: plain data, valid when zeroed; the call writes at most `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe {
        f(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let a: &libc::sockaddr_in =
                unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into(),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}
