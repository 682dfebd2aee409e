//! The few packet structures the proxy must read or write: handshakes, OK, ERR, EOF.
//!
//! Everything else is forwarded as raw bytes; these parsers read only what the proxy needs
//! to follow a session's state.

use bytes::{BufMut, Bytes, BytesMut};

/// Capability flags (`CLIENT_*`).
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy can offer clients: no compression, no MySQL 8 query attributes, no
    /// MariaDB extensions (the proxy must parse what it forwards). `SSL` is not here: the
    /// greeting adds it only when a certificate is configured, and it never reaches the
    /// server (the proxy's backend connections are plain text).
    pub const PROXY_SUPPORTED: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// What the proxy's own connections (the startup probe, the reads of the server's
    /// accounts) ask for: none of the flags that change how SQL is parsed (`NO_SCHEMA`
    /// makes `mysql.user` a table of the current database, `IGNORE_SPACE`, `ODBC`) or
    /// which timeout applies (`INTERACTIVE`).
    pub const INTERNAL: u32 = PROXY_SUPPORTED & !(NO_SCHEMA | IGNORE_SPACE | ODBC | INTERACTIVE);

    /// MariaDB's extended capabilities (`MARIADB_CLIENT_*`, the upper 32 bits of its 64-bit
    /// flags), carried in the last 4 filler bytes of the greeting and of the handshake
    /// response when `CLIENT_MYSQL` (= [`LONG_PASSWORD`]) is clear.
    pub mod mariadb {
        /// Column definitions carry the data type's name and format (`json`, `uuid`, …).
        pub const EXTENDED_METADATA: u32 = 1 << 3;
        /// What the proxy forwards. Extended metadata only adds a string to each column
        /// definition, which the proxy counts but never parses. Not `PROGRESS` (a new
        /// packet type in the middle of a reply), `COM_MULTI`, `STMT_BULK_OPERATIONS` or
        /// `CACHE_METADATA` (replies whose shape depends on what the connection executed
        /// before, which a replaced backend does not know).
        pub const PROXY_SUPPORTED: u32 = EXTENDED_METADATA;
    }
}

/// Server status flags (`SERVER_*`).
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Command bytes (`COM_*`).
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// The charset id `utf8mb4_general_ci`, used when a client sends none.
pub const DEFAULT_CHARSET: u8 = 45;

/// A cursor over a payload with MySQL's integer and string encodings. Reads past the end
/// return `None` instead of panicking: the proxy must survive any bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A length-encoded integer.
    pub fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xfa => Some(n as u64),
            0xfc => self.u16().map(u64::from),
            0xfd => self
                .take(3)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]) as u64),
            0xfe => self
                .take(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap())),
            _ => None,
        }
    }
    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.take(usize::try_from(n).ok()?)
    }
    /// A NUL-terminated string (or the rest, if there is no NUL).
    pub fn nul_bytes(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                &rest[..i]
            }
            None => {
                self.pos = self.buf.len();
                rest
            }
        }
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut BytesMut, n: u64) {
    if n < 0xfb {
        out.put_u8(n as u8);
    } else if n < 1 << 16 {
        out.put_u8(0xfc);
        out.put_u16_le(n as u16);
    } else if n < 1 << 24 {
        out.put_u8(0xfd);
        out.put_uint_le(n, 3);
    } else {
        out.put_u8(0xfe);
        out.put_u64_le(n);
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(out: &mut BytesMut, s: &[u8]) {
    put_lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// One change reported in an OK packet's session-state information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// `SESSION_TRACK_SYSTEM_VARIABLES`: a session variable and its new value.
    SystemVariable(String, String),
    /// `SESSION_TRACK_SCHEMA`: the new current database.
    Schema(String),
    /// `SESSION_TRACK_STATE_CHANGE`: some session state changed (user variables, temporary
    /// tables, prepared statements, locks… as well as the tracked variables).
    StateChanged,
    /// Any other tracker (GTIDs, transaction characteristics), ignored.
    Other(u8),
}

/// What the proxy reads from an OK packet (or an EOF, which carries only the flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkInfo {
    pub affected_rows: u64,
    /// The first auto-increment value the statement generated (0: none).
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub changes: Vec<StateChange>,
}

/// Parses an OK packet (header 0x00, or 0xfe when it ends a result set under
/// `CLIENT_DEPRECATE_EOF`). `session_track` is whether the connection negotiated
/// `CLIENT_SESSION_TRACK`.
pub fn parse_ok(payload: &[u8], session_track: bool) -> Option<OkInfo> {
    let mut r = Reader::new(payload);
    r.u8()?;
    let affected_rows = r.lenenc()?;
    let last_insert_id = r.lenenc()?;
    let status = r.u16()?;
    let warnings = r.u16()?;
    let mut info = OkInfo {
        affected_rows,
        last_insert_id,
        status,
        warnings,
        changes: Vec::new(),
    };
    if session_track && r.remaining() > 0 {
        let _message = r.lenenc_bytes()?;
        if status & status::SESSION_STATE_CHANGED != 0 {
            let data = r.lenenc_bytes()?;
            info.changes = parse_state_changes(data);
        }
    }
    Some(info)
}

fn parse_state_changes(data: &[u8]) -> Vec<StateChange> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let Some(kind) = r.u8() else { break };
        let Some(entry) = r.lenenc_bytes() else { break };
        let mut e = Reader::new(entry);
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        out.push(match kind {
            0 => {
                let name = text(e.lenenc_bytes());
                let value = text(e.lenenc_bytes());
                StateChange::SystemVariable(name, value)
            }
            1 => StateChange::Schema(text(e.lenenc_bytes())),
            2 => StateChange::StateChanged,
            other => StateChange::Other(other),
        });
    }
    out
}

/// Parses the status flags of a pre-4.1-style EOF packet (0xfe, warnings, status).
pub fn parse_eof_status(payload: &[u8]) -> Option<u16> {
    let mut r = Reader::new(payload);
    r.u8()?;
    r.u16()?;
    r.u16()
}

/// Whether a packet ending rows or column definitions is an EOF/OK terminator: 0xfe and
/// shorter than a row could be (a row starting 0xfe would be at least 16 MiB long).
pub fn is_terminator(payload: &[u8]) -> bool {
    payload.first() == Some(&0xfe) && payload.len() < crate::net::MAX_PAYLOAD
}

/// Reads the status flags of a terminator, whichever form it takes.
pub fn terminator_status(
    payload: &[u8],
    deprecate_eof: bool,
    session_track: bool,
) -> Option<OkInfo> {
    if deprecate_eof {
        parse_ok(payload, session_track)
    } else {
        parse_eof_status(payload).map(|status| OkInfo {
            status,
            ..OkInfo::default()
        })
    }
}

/// A server error as an ERR packet carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrInfo {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

impl std::fmt::Display for ErrInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.sqlstate, self.message)
    }
}

/// Parses an ERR packet (0xff, code, optional `#` + SQLSTATE, message).
pub fn parse_err(payload: &[u8]) -> Option<ErrInfo> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xff {
        return None;
    }
    let code = r.u16()?;
    let mut sqlstate = String::from("HY000");
    if r.buf.get(r.pos) == Some(&b'#') {
        r.u8();
        sqlstate = String::from_utf8_lossy(r.take(5)?).into_owned();
    }
    let message = String::from_utf8_lossy(r.rest()).into_owned();
    Some(ErrInfo {
        code,
        sqlstate,
        message,
    })
}

/// Builds an ERR packet payload.
pub fn err_payload(code: u16, sqlstate: &str, message: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + message.len());
    out.put_u8(0xff);
    out.put_u16_le(code);
    out.put_u8(b'#');
    let mut state = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in state.iter_mut().zip(sqlstate.bytes()) {
        *d = s;
    }
    out.extend_from_slice(&state);
    out.extend_from_slice(message.as_bytes());
    out.freeze()
}

/// Builds an OK packet payload with these status flags and no session-state data.
pub fn ok_payload(status: u16) -> Bytes {
    let mut out = BytesMut::with_capacity(7);
    out.put_u8(0);
    out.put_u8(0);
    out.put_u8(0);
    out.put_u16_le(status);
    out.put_u16_le(0);
    out.freeze()
}

/// The server's greeting (`Protocol::HandshakeV10`), as far as the proxy needs it.
#[derive(Debug, Clone)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte nonce for the authentication plugins.
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities; 0 when the server is MySQL (`CLIENT_MYSQL` set).
    pub mariadb_capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    /// Parses a greeting payload.
    pub fn parse(payload: &[u8]) -> Option<Greeting> {
        let mut r = Reader::new(payload);
        if r.u8()? != 10 {
            return None;
        }
        let server_version = String::from_utf8_lossy(r.nul_bytes()).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = r.take(8)?.to_vec();
        r.u8()?;
        let low = r.u16()? as u32;
        let charset = r.u8()?;
        let status = r.u16()?;
        let high = r.u16()? as u32;
        let capabilities = low | high << 16;
        let auth_len = r.u8()? as usize;
        let filler = r.take(10)?;
        let mariadb_capabilities = if capabilities & caps::LONG_PASSWORD == 0 {
            u32::from_le_bytes([filler[6], filler[7], filler[8], filler[9]])
        } else {
            0
        };
        if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = auth_len.saturating_sub(8).max(13);
            let part = r.take(n.min(r.remaining()))?;
            // The second part ends with a NUL that is not part of the nonce.
            let part = part.strip_suffix(&[0]).unwrap_or(part);
            scramble.extend_from_slice(part);
        }
        let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(r.nul_bytes()).into_owned()
        } else {
            "mysql_native_password".to_owned()
        };
        Some(Greeting {
            server_version,
            connection_id,
            scramble,
            capabilities,
            mariadb_capabilities,
            charset,
            status,
            auth_plugin,
        })
    }

    /// Encodes the greeting.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        out.put_u8(10);
        out.extend_from_slice(self.server_version.as_bytes());
        out.put_u8(0);
        out.put_u32_le(self.connection_id);
        out.extend_from_slice(&self.scramble[..8]);
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.charset);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8(self.scramble.len() as u8 + 1);
        out.extend_from_slice(&[0; 6]);
        out.put_u32_le(self.mariadb_capabilities);
        out.extend_from_slice(&self.scramble[8..]);
        out.put_u8(0);
        out.extend_from_slice(self.auth_plugin.as_bytes());
        out.put_u8(0);
        out.freeze()
    }
}

/// The client's `HandshakeResponse41`.
#[derive(Debug, Clone, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    /// MariaDB's extended capabilities (0 unless `CLIENT_MYSQL` is clear).
    pub mariadb_capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// The raw connection attributes (lenenc-prefixed block), forwarded to the server.
    pub attributes: Option<Vec<u8>>,
}

impl HandshakeResponse {
    /// Parses a handshake response; `None` for pre-4.1 clients, which are not supported.
    pub fn parse(payload: &[u8]) -> Option<HandshakeResponse> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return None;
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        let filler = r.take(23)?;
        let mariadb_capabilities = if capabilities & caps::LONG_PASSWORD == 0 {
            u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]])
        } else {
            0
        };
        let user = String::from_utf8_lossy(r.nul_bytes()).into_owned();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.nul_bytes().to_vec()
        };
        let mut database = None;
        if capabilities & caps::CONNECT_WITH_DB != 0 && r.remaining() > 0 {
            let db = String::from_utf8_lossy(r.nul_bytes()).into_owned();
            if !db.is_empty() {
                database = Some(db);
            }
        }
        let mut auth_plugin = None;
        if capabilities & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
            auth_plugin = Some(String::from_utf8_lossy(r.nul_bytes()).into_owned());
        }
        let mut attributes = None;
        if capabilities & caps::CONNECT_ATTRS != 0 && r.remaining() > 0 {
            let start = r.pos;
            if r.lenenc_bytes().is_some() {
                attributes = Some(r.buf[start..r.pos].to_vec());
            }
        }
        Some(HandshakeResponse {
            capabilities,
            mariadb_capabilities,
            max_packet,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        })
    }

    /// Encodes the response (as the proxy sends it to a server).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.extend_from_slice(&[0; 19]);
        out.put_u32_le(self.mariadb_capabilities);
        out.extend_from_slice(self.user.as_bytes());
        out.put_u8(0);
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else {
            out.put_u8(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            out.extend_from_slice(self.database.as_deref().unwrap_or("").as_bytes());
            out.put_u8(0);
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            out.extend_from_slice(self.auth_plugin.as_deref().unwrap_or("").as_bytes());
            out.put_u8(0);
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            match &self.attributes {
                Some(a) => out.extend_from_slice(a),
                None => out.put_u8(0),
            }
        }
        out.freeze()
    }
}

/// Builds an `AuthSwitchRequest` asking the client to use `plugin` with this nonce.
pub fn auth_switch_payload(plugin: &str, scramble: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + plugin.len() + scramble.len() + 1);
    out.put_u8(0xfe);
    out.extend_from_slice(plugin.as_bytes());
    out.put_u8(0);
    out.extend_from_slice(scramble);
    out.put_u8(0);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_with_session_state() {
        // OK, 0 rows, id 0, status SESSION_STATE_CHANGED|AUTOCOMMIT, 0 warnings, info "",
        // state: sysvar time_zone=+02:00, schema "db", state-change "1".
        let mut state = BytesMut::new();
        let mut var = BytesMut::new();
        put_lenenc_bytes(&mut var, b"time_zone");
        put_lenenc_bytes(&mut var, b"+02:00");
        state.put_u8(0);
        put_lenenc_bytes(&mut state, &var);
        let mut schema = BytesMut::new();
        put_lenenc_bytes(&mut schema, b"db");
        state.put_u8(1);
        put_lenenc_bytes(&mut state, &schema);
        state.put_u8(2);
        put_lenenc_bytes(&mut state, b"\x011");
        let mut ok = BytesMut::new();
        ok.extend_from_slice(&[0, 0, 0]);
        ok.put_u16_le(status::SESSION_STATE_CHANGED | status::AUTOCOMMIT);
        ok.put_u16_le(0);
        put_lenenc_bytes(&mut ok, b"");
        put_lenenc_bytes(&mut ok, &state);
        let info = parse_ok(&ok, true).unwrap();
        assert_eq!(
            info.changes,
            vec![
                StateChange::SystemVariable("time_zone".into(), "+02:00".into()),
                StateChange::Schema("db".into()),
                StateChange::StateChanged
            ]
        );
    }

    #[test]
    fn err_round_trip() {
        let p = err_payload(1153, "08S01", "too big");
        let e = parse_err(&p).unwrap();
        assert_eq!(
            (e.code, e.sqlstate.as_str(), e.message.as_str()),
            (1153, "08S01", "too big")
        );
        assert_eq!(e.to_string(), "1153 (08S01): too big");
    }

    #[test]
    fn greeting_round_trip() {
        let g = Greeting {
            server_version: "10.11.6-MariaDB".into(),
            connection_id: 7,
            scramble: (1..=20).collect(),
            capabilities: caps::PROXY_SUPPORTED,
            mariadb_capabilities: 0,
            charset: 45,
            status: status::AUTOCOMMIT,
            auth_plugin: "mysql_native_password".into(),
        };
        let back = Greeting::parse(&g.encode()).unwrap();
        assert_eq!(back.scramble, g.scramble);
        assert_eq!(back.capabilities, g.capabilities);
        assert_eq!(back.auth_plugin, g.auth_plugin);
        assert_eq!(
            back.mariadb_capabilities, 0,
            "CLIENT_MYSQL set: a MySQL greeting"
        );
    }

    #[test]
    fn mariadb_extended_capabilities_round_trip() {
        let g = Greeting {
            server_version: "5.5.5-10.11.6-MariaDB".into(),
            connection_id: 7,
            scramble: (1..=20).collect(),
            capabilities: caps::PROXY_SUPPORTED & !caps::LONG_PASSWORD,
            mariadb_capabilities: 0x1f,
            charset: 45,
            status: status::AUTOCOMMIT,
            auth_plugin: "mysql_native_password".into(),
        };
        let back = Greeting::parse(&g.encode()).unwrap();
        assert_eq!(back.mariadb_capabilities, 0x1f);
        assert_eq!(back.scramble, g.scramble);
        let r = HandshakeResponse {
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
            mariadb_capabilities: caps::mariadb::EXTENDED_METADATA,
            user: "app".into(),
            auth_plugin: Some("mysql_native_password".into()),
            ..Default::default()
        };
        let back = HandshakeResponse::parse(&r.encode()).unwrap();
        assert_eq!(back.mariadb_capabilities, caps::mariadb::EXTENDED_METADATA);
        assert_eq!(back.user, "app");
        let mysql = HandshakeResponse {
            capabilities: r.capabilities | caps::LONG_PASSWORD,
            ..r
        };
        assert_eq!(
            HandshakeResponse::parse(&mysql.encode())
                .unwrap()
                .mariadb_capabilities,
            0
        );
    }
}
