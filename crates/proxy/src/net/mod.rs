//! Bytes on the wire: the packet codec and the packet structures the proxy reads.

pub mod codec;
pub mod packet;

pub use codec::{split_logical, Packet, PacketCodec, MAX_PAYLOAD};
pub use packet::{ErrInfo, Greeting, HandshakeResponse, OkInfo, StateChange};
