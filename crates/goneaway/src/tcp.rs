//! Per-socket TCP keepalive interval, probe count and `TCP_USER_TIMEOUT`, set on Linux on
//! the socket mysql_async opened, which it does not expose: the socket is found through
//! `/proc` from the endpoint the server reports for the connection.
//!
//! # How the socket is found
//!
//! 1. The server's view of the connection (`information_schema.PROCESSLIST.HOST`, read in
//!    the same query as `wait_timeout`) is our socket's local endpoint, `127.0.0.1:54321`.
//! 2. Of the descriptors of this process that `/proc/self/fd` links to `socket:[…]`, the
//!    one whose `getsockname` is that endpoint and whose `getpeername` has the server's
//!    port is ours. Exactly one must match.
//!
//! Matching the inode against `/proc/self/net/tcp{,6}` instead was measured at about
//! 10 ms per lookup on an idle machine and 40 ms with 4,500 sockets in the namespace (the
//! kernel walks its whole socket table for every read): too slow for every connection
//! opened. The process's own descriptors are few; this lookup took 0.7 ms (debug build).
//!
//! # Why this is safe
//!
//! The socket belongs to this process (mysql_async opened it here); `setsockopt` only
//! changes options of it and the descriptor is borrowed for the calls, never closed or
//! duplicated. The lookup runs right after the connection was opened, while the pool holds
//! the `Conn` exclusively: the socket cannot be closed in between, so its descriptor cannot
//! be reused by another socket — and a last `getsockname`/`getpeername` on the borrowed
//! descriptor would catch it if it were. Other descriptors are only asked for their
//! endpoints, which changes nothing.
//!
//! # When it does not apply
//!
//! Not Linux; a Unix socket (the process list says `localhost`, no port to match); a proxy
//! or relay between us and the server (the server sees the proxy's endpoint, which matches
//! no socket of ours with the server's port); more than one candidate. Then nothing is set,
//! the connection is used as it is, and the skip is counted ([`TcpSkip`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the pool set on one connection's socket, read back from the socket after setting
/// (see [`PooledConn::tcp_tuning`](crate::PooledConn::tcp_tuning)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpTuning {
    /// Our end of the connection (what the server's process list shows).
    pub local: SocketAddr,
    /// The server's end.
    pub peer: SocketAddr,
    /// `TCP_KEEPIDLE`: silence before the first keepalive probe (`None`: keepalive off).
    pub keepalive_idle: Option<Duration>,
    /// `TCP_KEEPINTVL`: time between unanswered probes (`None`: keepalive off).
    pub keepalive_interval: Option<Duration>,
    /// `TCP_KEEPCNT`: unanswered probes before the connection is dropped.
    pub keepalive_probes: Option<u32>,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged (`None`: the
    /// kernel's default, about 15 minutes of retransmissions).
    pub user_timeout: Option<Duration>,
}

/// Why the socket options could not be set on a connection (the connection is used
/// anyway, with mysql_async's keepalive idle time and the host's other defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TcpSkip {
    /// Not Linux: the descriptor cannot be found without `/proc`.
    NotLinux,
    /// The server reports no TCP endpoint for the connection (a Unix socket, or a host
    /// name instead of an address and port).
    NotTcp,
    /// No socket of this process has the endpoint the server reports: a proxy or relay
    /// is in between.
    NotFound,
    /// More than one descriptor matches; setting options on the wrong one is not an option.
    Ambiguous,
    /// `/proc/self/fd` could not be read or `setsockopt` failed.
    Failed,
}

impl TcpSkip {
    /// A short name, used as the `reason` label of
    /// [`TCP_TUNING_SKIPPED`](crate::metrics_names::TCP_TUNING_SKIPPED).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpSkip::NotLinux => "not_linux",
            TcpSkip::NotTcp => "not_tcp",
            TcpSkip::NotFound => "not_found",
            TcpSkip::Ambiguous => "ambiguous",
            TcpSkip::Failed => "failed",
        }
    }
}

impl std::fmt::Display for TcpSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values to set, from [`PoolOptions`](crate::PoolOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSettings {
    /// Keepalive idle time, interval and probe count; `None` leaves keepalive off.
    pub(crate) keepalive: Option<(Duration, Duration, u32)>,
    /// `None` leaves the kernel default.
    pub(crate) user_timeout: Option<Duration>,
}

/// The port, and the address when it is one, of an endpoint as the server's process list
/// shows it: `127.0.0.1:54321`, `::1:54321`, `[::1]:54321`, `::ffff:127.0.0.1:54321`.
/// `None` for `localhost` (a Unix socket) or anything without a port.
pub(crate) fn parse_endpoint(host: &str) -> Option<(Option<IpAddr>, u16)> {
    let (addr, port) = host.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    // A host name (without skip_name_resolve) still gives the port; the address check is
    // then left out.
    Some((addr.parse::<IpAddr>().ok().map(|a| a.to_canonical()), port))
}

/// Finds this connection's socket from the endpoint the server reports (`server_view`)
/// and the server's port, and sets `want` on it. Blocking (reads `/proc/self/fd`).
///
/// With `want` `None` nothing is set: the socket is only found, for [`peer_signal`].
/// Returns what the socket now has and its descriptor.
pub(crate) fn tune(
    server_view: &str,
    server_port: u16,
    want: Option<TcpSettings>,
) -> Result<(TcpTuning, i32), TcpSkip> {
    let (addr, port) = parse_endpoint(server_view).ok_or(TcpSkip::NotTcp)?;
    imp::tune(addr, port, server_port, want)
}

/// What an idle connection's socket shows without reading from it: the server closed it
/// or wrote to it unasked. An idle MySQL connection has nothing to read: anything there
/// is the server's goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerSignal {
    /// End of stream or a reset: the server (or something between) closed it.
    Closed,
    /// An error packet with this number (1927 to a killed connection, 4031 MySQL's
    /// inactivity close, 1053 a shutdown).
    Error(u16),
    /// Bytes that are not an error packet (or cannot be read: TLS).
    Data,
}

impl PeerSignal {
    /// The cause the evidence names; a bare close does not tell which.
    pub(crate) fn cause(self) -> goneaway_core::Cause {
        use goneaway_core::Cause;
        match self {
            PeerSignal::Error(1927) => Cause::ConnectionKilled,
            PeerSignal::Error(4031) => Cause::IdleTimeout,
            PeerSignal::Error(1053) => Cause::ServerRestart,
            _ => Cause::Unknown,
        }
    }
}

/// A non-blocking look (`MSG_PEEK | MSG_DONTWAIT`) at the socket of an idle connection:
/// `None` when it is quiet (or its descriptor is not known), otherwise what the server
/// did. One system call, no round trip. With `tls`, bytes cannot be judged (a session
/// ticket may be waiting), so only a close counts.
///
/// The descriptor is the one [`tune`] found and is valid while the pool holds the idle
/// `Conn`: nothing runs on an idle connection, so mysql_async cannot have closed it.
pub(crate) fn peer_signal(fd: Option<i32>, tls: bool) -> Option<PeerSignal> {
    let signal = imp::peek(fd?)?;
    match signal {
        PeerSignal::Closed => Some(signal),
        _ if tls => None,
        _ => Some(signal),
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(super) fn tune(
        _addr: Option<IpAddr>,
        _port: u16,
        _server_port: u16,
        _want: Option<TcpSettings>,
    ) -> Result<(TcpTuning, i32), TcpSkip> {
        Err(TcpSkip::NotLinux)
    }

    pub(super) fn peek(_fd: i32) -> Option<PeerSignal> {
        None
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

    use super::*;

    pub(super) fn tune(
        addr: Option<IpAddr>,
        port: u16,
        server_port: u16,
        want: Option<TcpSettings>,
    ) -> Result<(TcpTuning, i32), TcpSkip> {
        let ours = |local: SocketAddr, peer: SocketAddr| {
            local.port() == port
                && peer.port() == server_port
                && addr.is_none_or(|a| a == local.ip().to_canonical())
        };
        let (fd, local, peer) = find(ours)?;
        // SAFETY: the descriptor is the connection's socket (its endpoints are the ones
        // the server reports, unique in the network namespace), which this process owns
        // through a `Conn` the pool holds exclusively for the duration of this call: it
        // stays open. It is only borrowed here, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // The same socket once more, through the borrowed descriptor.
        match (
            sockaddr(fd.as_raw_fd(), libc::getsockname),
            sockaddr(fd.as_raw_fd(), libc::getpeername),
        ) {
            (Ok(l), Ok(p)) if (l, p) == (local, peer) => {}
            _ => return Err(TcpSkip::NotFound),
        }
        if let Some(want) = want {
            apply(fd, want).map_err(|e| {
                tracing::debug!(error = %e, "setsockopt on the connection's socket failed");
                TcpSkip::Failed
            })?;
        }
        let tuning = read_back(fd, local, peer).map_err(|_| TcpSkip::Failed)?;
        Ok((tuning, fd.as_raw_fd()))
    }

    pub(super) fn peek(fd: RawFd) -> Option<PeerSignal> {
        let mut buf = [0u8; 8];
        // SAFETY: a buffer of the length passed; MSG_PEEK leaves the bytes for the driver
        // and MSG_DONTWAIT never blocks. The descriptor is the idle connection's socket
        // (see `peer_signal`); on any other it fails or reads nothing, and changes nothing.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => Some(PeerSignal::Closed),
            n if n > 0 => {
                let n = n as usize;
                // A MySQL packet: 3 bytes of length, a sequence id, then 0xff for an error
                // followed by its number, little-endian.
                if n >= 7 && buf[4] == 0xff {
                    Some(PeerSignal::Error(u16::from_le_bytes([buf[5], buf[6]])))
                } else {
                    Some(PeerSignal::Data)
                }
            }
            _ => match io::Error::last_os_error().raw_os_error() {
                Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ETIMEDOUT) => {
                    Some(PeerSignal::Closed)
                }
                // EAGAIN: quiet, alive as far as the kernel knows. Anything else says
                // nothing about the peer.
                _ => None,
            },
        }
    }

    /// The one descriptor of this process that is a TCP socket with endpoints that are
    /// `ours`, and those endpoints.
    ///
    /// Only descriptors linked to `socket:[…]` are asked, with `getsockname` and
    /// `getpeername` on the raw number: read-only calls that change nothing. Another thread
    /// may close (and reuse) one of them meanwhile; the calls then fail or describe another
    /// socket, which does not match.
    fn find(
        ours: impl Fn(SocketAddr, SocketAddr) -> bool,
    ) -> Result<(RawFd, SocketAddr, SocketAddr), TcpSkip> {
        let dir = std::fs::read_dir("/proc/self/fd").map_err(|_| TcpSkip::Failed)?;
        let mut found = None;
        for entry in dir.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue; // closed since the directory was listed
            };
            if !link.to_str().is_some_and(|l| l.starts_with("socket:[")) {
                continue;
            }
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let (Ok(local), Ok(peer)) = (
                sockaddr(fd, libc::getsockname),
                sockaddr(fd, libc::getpeername),
            ) else {
                continue; // not an IP socket, not connected, or closed
            };
            // Two descriptors for one socket (a `dup`) are refused too: whatever made the
            // copy may rely on the options, and it is not ours to decide.
            if ours(local, peer) && found.replace((fd, local, peer)).is_some() {
                return Err(TcpSkip::Ambiguous);
            }
        }
        found.ok_or(TcpSkip::NotFound)
    }

    fn apply(fd: BorrowedFd<'_>, want: TcpSettings) -> io::Result<()> {
        if let Some((idle, interval, probes)) = want.keepalive {
            set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
            // Whole seconds, 1..=32767 (the kernel's MAX_TCP_KEEPIDLE/KEEPINTVL).
            set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(idle))?;
            set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(interval))?;
            // 1..=127 (MAX_TCP_KEEPCNT).
            set(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPCNT,
                probes.clamp(1, 127) as i32,
            )?;
        }
        if let Some(t) = want.user_timeout {
            let ms = t.as_millis().min(i32::MAX as u128) as i32;
            set(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)?;
        }
        Ok(())
    }

    fn secs(d: Duration) -> i32 {
        d.as_secs().clamp(1, 32767) as i32
    }

    fn read_back(fd: BorrowedFd<'_>, local: SocketAddr, peer: SocketAddr) -> io::Result<TcpTuning> {
        let on = get(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0;
        let secs = |opt| -> io::Result<Option<Duration>> {
            Ok(on.then_some(Duration::from_secs(get(fd, libc::IPPROTO_TCP, opt)? as u64)))
        };
        let user_ms = get(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?;
        Ok(TcpTuning {
            local,
            peer,
            keepalive_idle: secs(libc::TCP_KEEPIDLE)?,
            keepalive_interval: secs(libc::TCP_KEEPINTVL)?,
            keepalive_probes: match on {
                true => Some(get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)? as u32),
                false => None,
            },
            user_timeout: (user_ms > 0).then(|| Duration::from_millis(user_ms as u64)),
        })
    }

    fn set(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: a valid descriptor and a pointer to an int of the length passed.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn get(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
        let mut value: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: a valid descriptor and a pointer to an int with its length.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        };
        if r == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    type NameFn =
        unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

    /// `getsockname` or `getpeername` as a `SocketAddr`.
    fn sockaddr(fd: RawFd, f: NameFn) -> io::Result<SocketAddr> {
        // SAFETY: sockaddr_storage is plain data, valid when zeroed.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: a buffer of the length passed; on a descriptor that is not (or no
        // longer) a socket the call fails with EBADF/ENOTSOCK and writes nothing.
        let r = unsafe {
            f(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        match storage.ss_family as i32 {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a: &libc::sockaddr_in =
                    unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
                let ip = std::net::Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                Ok(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a: &libc::sockaddr_in6 =
                    unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Ok(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IP socket",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(parse_endpoint("127.0.0.1:54321"), Some((Some(v4), 54321)));
        assert_eq!(parse_endpoint("::1:54321"), Some((Some(v6), 54321)));
        assert_eq!(parse_endpoint("[::1]:54321"), Some((Some(v6), 54321)));
        // A v4-mapped address compares as the IPv4 address.
        assert_eq!(
            parse_endpoint("::ffff:127.0.0.1:54321"),
            Some((Some(v4), 54321))
        );
        assert_eq!(parse_endpoint("app.example:54321"), Some((None, 54321)));
        assert_eq!(parse_endpoint("localhost"), None);
        assert_eq!(parse_endpoint(""), None);
    }

    /// Tuning a socket of our own: found, set, read back; a duplicate descriptor makes it
    /// ambiguous; a wrong server port finds nothing.
    #[test]
    #[cfg(target_os = "linux")]
    fn tunes_our_own_socket_and_refuses_ambiguity() {
        use std::os::fd::{AsFd, AsRawFd};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server_port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _accepted = listener.accept().unwrap();
        let view = client.local_addr().unwrap().to_string();
        let want = Some(TcpSettings {
            keepalive: Some((Duration::from_secs(11), Duration::from_secs(2), 5)),
            user_timeout: Some(Duration::from_millis(21_500)),
        });
        let (t, found) = tune(&view, server_port, want).expect("tuned");
        assert_eq!(found, client.as_raw_fd());
        assert_eq!(t.local, client.local_addr().unwrap());
        assert_eq!(t.peer, client.peer_addr().unwrap());
        assert_eq!(t.keepalive_idle, Some(Duration::from_secs(11)));
        assert_eq!(t.keepalive_interval, Some(Duration::from_secs(2)));
        assert_eq!(t.keepalive_probes, Some(5));
        assert_eq!(t.user_timeout, Some(Duration::from_millis(21_500)));
        let fd = client.as_fd();
        assert_eq!(
            imp::get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL).unwrap(),
            2
        );
        assert_eq!(
            imp::get(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT).unwrap(),
            21_500
        );

        assert_eq!(
            tune(&view, server_port.wrapping_add(1), want),
            Err(TcpSkip::NotFound)
        );
        assert_eq!(tune("localhost", server_port, want), Err(TcpSkip::NotTcp));
        let dup = fd.try_clone_to_owned().unwrap();
        assert_eq!(tune(&view, server_port, want), Err(TcpSkip::Ambiguous));
        drop(dup);
    }

    /// The look at an idle socket: quiet while the peer is, then what the peer did — an
    /// error packet with its number, a close — without consuming a byte.
    #[cfg(target_os = "linux")]
    #[test]
    fn peer_signal_sees_what_the_peer_did() {
        use std::io::Write;
        use std::os::fd::AsRawFd;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let fd = Some(client.as_raw_fd());
        assert_eq!(peer_signal(fd, false), None);
        // MariaDB's goodbye to a killed connection: ERR 1927, then the close.
        server
            .write_all(&[0x07, 0, 0, 0, 0xff, 0x87, 0x07, b'#', b'7', b'0'])
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(peer_signal(fd, false), Some(PeerSignal::Error(1927)));
        assert_eq!(
            peer_signal(fd, false).unwrap().cause(),
            goneaway_core::Cause::ConnectionKilled
        );
        assert_eq!(
            peer_signal(fd, true),
            None,
            "bytes on a TLS socket are not judged"
        );
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        // The bytes are still there for the driver: peeking consumed nothing.
        assert_eq!(peer_signal(fd, false), Some(PeerSignal::Error(1927)));

        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            peer_signal(Some(client.as_raw_fd()), true),
            Some(PeerSignal::Closed)
        );
        assert_eq!(peer_signal(None, false), None);
    }
}
