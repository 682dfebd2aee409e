//! The one MySQL packet the relay writes itself: the server's inactivity error, 4031.
//!
//! # How MySQL sends it
//!
//! From 8.0.24, when a connection has sat idle past `wait_timeout` (or
//! `interactive_timeout`), mysqld does not just close it. Its read of the next command
//! times out in `net_read_raw_loop` (`sql-common/net_serv.cc`); because that was the
//! first packet of a command (`net->pkt_nr == 0`: `do_command` in `sql/sql_parse.cc`
//! calls `net_new_transaction`, which resets the counter, before every command), the
//! error is turned into `ER_CLIENT_INTERACTION_TIMEOUT` and sent — unsolicited, "although
//! the client won't be expecting messages" as the source says — and then the
//! connection is closed.
//!
//! So the packet carries **sequence id 0**: the server's counter was reset for the
//! command that never came. A client that then sends a command (sequence 0) expects the
//! reply at sequence 1 and finds 0 instead. What it reports depends on the client:
//!
//! - libmysqlclient 8.0.24+ (`net_read_packet_header`): when it expects sequence 1 and
//!   gets another, it assumes "the server may have sent an error before it received our
//!   new command, perhaps due to wait_timeout", reads the packet and reports **4031**,
//!   then marks the socket unusable.
//! - Node's `mysql2` reports `ER_CLIENT_INTERACTION_TIMEOUT` (its test suite expects it).
//!   Connector/J 5.1 only checked read sequence ids when asked (`checkPacketSequence`
//!   was off), so it reads the error; later Connector/J versions were not checked here.
//! - `mysql_async` 0.37 (with `mysql_common` 0.38) checks the sequence id and reports an
//!   I/O error, "Packets out of sync", instead of 4031: still a dead connection, but the
//!   reason is lost.
//!
//! The payload is the usual `ERR_Packet` of the 4.1 protocol: `0xFF`, the error number
//! as a little-endian `u16`, the SQLSTATE marker `#`, the five-character SQLSTATE
//! `HY000`, then the message without a terminator. MariaDB never sends it (it just
//! closes the socket), and MariaDB's own 4031 is a different error, which is why the
//! SQLSTATE and the message matter when telling them apart.

/// MySQL's `ER_CLIENT_INTERACTION_TIMEOUT`: the server disconnected an idle client.
/// Sent by MySQL 8.0.24 and later; MariaDB uses 4031 for an unrelated error. The number is
/// named once, in the core's table of error numbers.
pub use goneaway_core::codes::ER_CLIENT_INTERACTION_TIMEOUT;

/// The SQLSTATE MySQL sends with [`ER_CLIENT_INTERACTION_TIMEOUT`].
pub const INTERACTION_TIMEOUT_SQLSTATE: &str = "HY000";

/// The message MySQL sends with [`ER_CLIENT_INTERACTION_TIMEOUT`]
/// (`share/messages_to_clients.txt`).
pub const INTERACTION_TIMEOUT_MESSAGE: &str =
    "The client was disconnected by the server because of inactivity. \
     See wait_timeout and interactive_timeout for configuring this behavior.";

/// The sequence id the server gives the packet: 0, because its packet counter was
/// reset while it waited for the command that never came.
pub const INTERACTION_TIMEOUT_SEQUENCE_ID: u8 = 0;

/// The same packet with another sequence id. 1 is what a client that has just sent a
/// command (sequence 0) expects, so every client — `mysql_async` included — reads it as
/// the reply and reports 4031; but it is not what mysqld sends. See
/// [`RelayConfig::sequence_id_4031`](crate::RelayConfig::sequence_id_4031).
pub fn interaction_timeout_packet_with_sequence_id(sequence_id: u8) -> Vec<u8> {
    err_packet(
        sequence_id,
        ER_CLIENT_INTERACTION_TIMEOUT,
        INTERACTION_TIMEOUT_SQLSTATE,
        INTERACTION_TIMEOUT_MESSAGE,
    )
}

/// The marker byte that opens every MySQL `ERR_Packet` payload.
const ERR_HEADER: u8 = 0xFF;

/// The complete packet — 4-byte header (length, sequence id) and payload — exactly as
/// MySQL 8.0.24+ writes it before closing an idle connection.
pub fn interaction_timeout_packet() -> Vec<u8> {
    interaction_timeout_packet_with_sequence_id(INTERACTION_TIMEOUT_SEQUENCE_ID)
}

/// An `ERR_Packet` (protocol 4.1 form) with its header. The message is cut so the
/// payload fits one packet; the callers here pass short constants.
fn err_packet(sequence_id: u8, code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    // One packet holds at most 2^24 - 1 payload bytes; 9 go to the fixed fields.
    const MAX_MESSAGE: usize = 0xFF_FFFF - 9;
    let message = &message.as_bytes()[..message.len().min(MAX_MESSAGE)];
    let mut payload = Vec::with_capacity(9 + message.len());
    payload.push(ERR_HEADER);
    payload.extend_from_slice(&code.to_le_bytes());
    payload.push(b'#');
    // The SQLSTATE is exactly five bytes on the wire, whatever was passed.
    let mut state = [b'0'; 5];
    for (slot, byte) in state.iter_mut().zip(sqlstate.bytes()) {
        *slot = byte;
    }
    payload.extend_from_slice(&state);
    payload.extend_from_slice(message);

    let length = u32::try_from(payload.len())
        .unwrap_or(0xFF_FFFF)
        .to_le_bytes();
    let mut packet = Vec::with_capacity(4 + payload.len());
    packet.extend_from_slice(&length[..3]);
    packet.push(sequence_id);
    packet.extend_from_slice(&payload);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_layout() {
        let p = interaction_timeout_packet();
        let len = usize::from(p[0]) | usize::from(p[1]) << 8 | usize::from(p[2]) << 16;
        assert_eq!(len, p.len() - 4);
        assert_eq!(p[3], 0);
        assert_eq!(&p[4..7], &[0xFF, 0xBF, 0x0F]);
        assert_eq!(&p[7..13], b"#HY000");
        assert_eq!(&p[13..], INTERACTION_TIMEOUT_MESSAGE.as_bytes());
    }
}
