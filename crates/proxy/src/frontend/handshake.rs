//! The client side of the login: the greeting (offering TLS when configured), the password
//! check (against [`crate::accounts`]), the plugin switch. The TLS upgrade itself is
//! [`crate::net::ClientStream::upgrade`], called by the session between the two.

use std::io::Read;
use std::net::IpAddr;

use futures_util::{SinkExt, StreamExt};
use goneaway_core::codes::{ER_ACCESS_DENIED_ERROR, ER_HANDSHAKE_ERROR, ER_NET_PACKET_TOO_LARGE};
use tokio_util::codec::Framed;

use crate::accounts::{Accounts, Denied, Verified};
use crate::net::packet::{self, caps, status, Greeting, HandshakeResponse};
use crate::net::{ClientStream, Packet, PacketCodec, PacketTooLong};

const NATIVE: &str = "mysql_native_password";
const SHA2: &str = "caching_sha2_password";

/// A client that proved who it is.
#[derive(Debug)]
pub struct Login {
    pub response: HandshakeResponse,
    /// The sequence id for the packet that ends the login (OK or ERR).
    pub next_seq: u8,
    /// The nonce the client was greeted with: `COM_CHANGE_USER` scrambles with it again.
    pub scramble: Vec<u8>,
    /// The account the session logs in to the server with.
    pub verified: Verified,
}

/// A `COM_CHANGE_USER` whose password checked out against the proxy's accounts.
#[derive(Debug)]
pub struct ChangeUser {
    /// The sequence id of the packet that ends the exchange (OK or ERR).
    pub next_seq: u8,
    pub user: String,
    pub database: Option<String>,
    /// The client's new character set, when it sent one.
    pub charset: Option<u8>,
    /// Whether the client used `caching_sha2_password` (it then expects "fast auth OK").
    pub sha2: bool,
    /// The account the session logs in to the server with from now on.
    pub verified: Verified,
}

/// Checks a `COM_CHANGE_USER` payload (command byte included) against the accounts, with
/// the nonce of the session's login, asking the client to switch plugins when the account
/// needs another one. `Err` is the ERR to answer with, at its sequence id.
pub async fn change_user(
    client: &mut Framed<ClientStream, PacketCodec>,
    payload: &[u8],
    client_caps: u32,
    scramble: &[u8],
    accounts: &Accounts,
    peer: IpAddr,
) -> Result<ChangeUser, (u8, u16, &'static str, String)> {
    let mut seq = 1u8;
    let refuse = |seq: u8, (code, state, msg): (u16, &'static str, String)| (seq, code, state, msg);
    let unreadable = || {
        (
            ER_HANDSHAKE_ERROR,
            "08S01",
            "goneaway proxy: unreadable COM_CHANGE_USER".to_owned(),
        )
    };
    let mut r = packet::Reader::new(
        payload
            .get(1..)
            .ok_or_else(unreadable)
            .map_err(|e| refuse(seq, e))?,
    );
    let user = String::from_utf8_lossy(r.nul_bytes()).into_owned();
    let mut auth = if client_caps & caps::SECURE_CONNECTION != 0 {
        let n = r.u8().ok_or_else(unreadable).map_err(|e| refuse(seq, e))? as usize;
        r.take(n)
            .ok_or_else(unreadable)
            .map_err(|e| refuse(seq, e))?
            .to_vec()
    } else {
        r.nul_bytes().to_vec()
    };
    let db = String::from_utf8_lossy(r.nul_bytes()).into_owned();
    let charset = if r.remaining() >= 2 {
        r.u16().map(|c| c as u8)
    } else {
        None
    };
    let mut plugin = if client_caps & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
        String::from_utf8_lossy(r.nul_bytes()).into_owned()
    } else {
        NATIVE.to_owned()
    };
    if let Some(wanted) = wanted_plugin(accounts, &user, &plugin, peer).await {
        if client_caps & caps::PLUGIN_AUTH == 0 {
            return Err(refuse(
                seq,
                (
                    ER_ACCESS_DENIED_ERROR,
                    "28000",
                    format!("goneaway proxy checks this account with {wanted}, and the client cannot switch plugins"),
                ),
            ));
        }
        let gone = || {
            (
                ER_HANDSHAKE_ERROR,
                "08S01",
                "goneaway proxy: the client did not answer the plugin switch".to_owned(),
            )
        };
        client
            .send(Packet::new(
                seq,
                packet::auth_switch_payload(wanted, scramble),
            ))
            .await
            .map_err(|_| refuse(seq, gone()))?;
        let p = tokio::time::timeout(std::time::Duration::from_secs(10), next(client))
            .await
            .map_err(|_| refuse(seq, gone()))?
            .map_err(|_| refuse(seq, gone()))?;
        auth = p.payload.to_vec();
        seq = p.seq.wrapping_add(1);
        plugin = wanted.to_owned();
    }
    let verified = accounts
        .check(&user, &plugin, scramble, &auth, peer)
        .await
        .map_err(|d| refuse(seq, refused(d, peer)))?;
    Ok(ChangeUser {
        next_seq: seq,
        user,
        database: (!db.is_empty()).then_some(db),
        charset,
        sha2: plugin == SHA2,
        verified,
    })
}

/// Why a login did not succeed.
#[derive(Debug)]
pub enum LoginError {
    /// The client went away or spoke nonsense: nothing to answer.
    Gone,
    /// Refuse with this ERR (code, SQLSTATE, message) at this sequence id.
    Refuse(u8, u16, &'static str, String),
}

/// A 20-byte nonce of printable characters, as servers send.
pub fn nonce() -> Vec<u8> {
    let mut raw = [0u8; 20];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .is_err()
    {
        // No /dev/urandom: fall back to the standard library's randomly keyed hasher.
        use std::hash::{BuildHasher, Hasher};
        for (i, b) in raw.iter_mut().enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            *b = h.finish() as u8;
        }
    }
    raw.iter().map(|b| b % 94 + 33).collect()
}

/// Whether a client's first packet is an SSLRequest: the 32-byte head of a handshake
/// response with `CLIENT_SSL`, after which the client starts TLS.
pub fn is_ssl_request(p: &Packet) -> bool {
    p.payload.len() == 32
        && packet::Reader::new(&p.payload)
            .u32()
            .is_some_and(|c| c & caps::SSL != 0)
}

/// Sends the greeting with `scramble` as the nonce; `offer_tls` adds `CLIENT_SSL`.
pub async fn greet(
    client: &mut Framed<ClientStream, PacketCodec>,
    connection_id: u32,
    server_version: &str,
    server_capabilities: u32,
    server_mariadb_capabilities: u32,
    scramble: &[u8],
    offer_tls: bool,
) -> Result<(), LoginError> {
    let tls = if offer_tls { caps::SSL } else { 0 };
    // A MariaDB server clears CLIENT_MYSQL and offers its extended capabilities; so does
    // the proxy in front of one, so that MariaDB clients ask for extended metadata.
    let mariadb = server_capabilities & caps::LONG_PASSWORD == 0;
    let mariadb_capabilities = if mariadb {
        server_mariadb_capabilities & caps::mariadb::PROXY_SUPPORTED
    } else {
        0
    };
    let greeting = Greeting {
        server_version: server_version.to_owned(),
        connection_id,
        scramble: scramble.to_vec(),
        capabilities: caps::PROXY_SUPPORTED & server_capabilities
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | if mariadb { 0 } else { caps::LONG_PASSWORD }
            | tls,
        mariadb_capabilities,
        charset: packet::DEFAULT_CHARSET,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE.into(),
    };
    client
        .send(Packet::new(0, greeting.encode()))
        .await
        .map_err(|_| LoginError::Gone)
}

/// Checks the client's handshake response `p` (read after the greeting, or after the TLS
/// handshake) against the accounts, switching the client's auth plugin if needed.
pub async fn authenticate(
    client: &mut Framed<ClientStream, PacketCodec>,
    p: Packet,
    scramble: Vec<u8>,
    accounts: &Accounts,
    peer: IpAddr,
) -> Result<Login, LoginError> {
    let Some(response) = HandshakeResponse::parse(&p.payload) else {
        let why = if is_ssl_request(&p) {
            "TLS is not configured on goneaway proxy (--tls-cert/--tls-key); connect without TLS (--ssl=0)"
        } else {
            "unreadable login packet"
        };
        return Err(LoginError::Refuse(
            p.seq.wrapping_add(1),
            ER_HANDSHAKE_ERROR,
            "08S01",
            why.into(),
        ));
    };
    let mut seq = p.seq.wrapping_add(1);
    let plugin = response
        .auth_plugin
        .clone()
        .unwrap_or_else(|| NATIVE.into());
    let mut auth = response.auth_response.clone();
    let mut used = plugin.as_str();
    let wanted = wanted_plugin(accounts, &response.user, &plugin, peer).await;
    if let Some(wanted) = wanted {
        // Ask the client to switch to the plugin the proxy checks.
        client
            .send(Packet::new(
                seq,
                packet::auth_switch_payload(wanted, &scramble),
            ))
            .await
            .map_err(|_| LoginError::Gone)?;
        let p = next(client).await?;
        auth = p.payload.to_vec();
        seq = p.seq.wrapping_add(1);
        used = wanted;
    }
    let verified = accounts
        .check(&response.user, used, &scramble, &auth, peer)
        .await
        .map_err(|d| {
            let (code, state, msg) = refused(d, peer);
            LoginError::Refuse(seq, code, state, msg)
        })?;
    if used == SHA2 {
        // caching_sha2_password "fast authentication succeeded"; the OK follows.
        client
            .send(Packet::new(seq, &[0x01u8, 0x03][..]))
            .await
            .map_err(|_| LoginError::Gone)?;
        seq = seq.wrapping_add(1);
    }
    Ok(Login {
        response,
        next_seq: seq,
        scramble,
        verified,
    })
}

/// The ERR for a refused login, the proxy's reason (if the server's words do not say it
/// all) logged.
fn refused(d: Denied, peer: IpAddr) -> (u16, &'static str, String) {
    if !d.why.is_empty() {
        tracing::info!(%peer, "login refused: {}: {}", d.message, d.why);
    }
    (d.code, d.sqlstate, d.message)
}

/// The plugin the client must switch to before its answer can be checked, if not the one
/// it used: configured accounts are checked with mysql_native_password or
/// caching_sha2_password, the server's accounts with their own plugin,
/// mysql_native_password or mysql_old_password (see crate::accounts).
async fn wanted_plugin(
    accounts: &Accounts,
    user: &str,
    used: &str,
    peer: IpAddr,
) -> Option<&'static str> {
    match accounts.server_plugin(user, peer).await {
        Some(p) if p == used => None,
        Some(p) => Some(p),
        None if accounts.is_configured(user) && (used == NATIVE || used == SHA2) => None,
        None => (used != NATIVE).then_some(NATIVE),
    }
}

/// The client's next login packet (the login's deadline is the caller's). A packet
/// announced longer than the login budget is refused with 1153 before any of it is read.
pub async fn next(client: &mut Framed<ClientStream, PacketCodec>) -> Result<Packet, LoginError> {
    match client.next().await {
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => match e.get_ref().and_then(|e| e.downcast_ref::<PacketTooLong>()) {
            Some(too_long) => Err(LoginError::Refuse(
                too_long.seq.wrapping_add(1),
                ER_NET_PACKET_TOO_LARGE,
                "08S01",
                format!(
                    "Got a packet bigger than 'max_allowed_packet' bytes: goneaway proxy takes login packets of at most {} bytes, \
                     this one announced {}",
                    too_long.limit, too_long.announced
                ),
            )),
            None => Err(LoginError::Gone),
        },
        None => Err(LoginError::Gone),
    }
}
