//! Bytes on the wire: the packet codec, the packet structures the proxy reads, and the
//! client stream (plain or TLS).

pub mod codec;
pub mod packet;
pub mod tls;

pub use codec::{
    split_logical, Packet, PacketCodec, PacketTooLong, LOGIN_PACKET_LIMIT, MAX_PAYLOAD,
};
pub use packet::{ErrInfo, Greeting, HandshakeResponse, OkInfo, StateChange};
pub use tls::ClientStream;
