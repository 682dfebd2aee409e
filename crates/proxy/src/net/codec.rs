//! The tokio codec for MySQL packet framing: a 3-byte little-endian length, a sequence id.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The largest payload one physical packet carries. A payload of exactly this length is
/// followed by a continuation packet (possibly empty): that is how MySQL sends 16 MiB+.
pub const MAX_PAYLOAD: usize = 0xff_ff_ff;

/// One physical packet as it travelled: its sequence id and its payload.
///
/// A logical packet larger than [`MAX_PAYLOAD`] arrives as several of these; the codec does
/// not join them, so the proxy can forward (or drain) a huge packet without holding it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The sequence id, which the receiver checks.
    pub seq: u8,
    /// The payload, without the 4-byte header.
    pub payload: Bytes,
}

impl Packet {
    /// A packet with this sequence id and payload.
    pub fn new(seq: u8, payload: impl Into<Bytes>) -> Packet {
        Packet {
            seq,
            payload: payload.into(),
        }
    }

    /// Whether another physical packet of the same logical packet follows this one.
    pub fn continues(&self) -> bool {
        self.payload.len() == MAX_PAYLOAD
    }

    /// The first payload byte (the packet's kind: 0x00 OK, 0xff ERR, 0xfe EOF…).
    pub fn first(&self) -> Option<u8> {
        self.payload.first().copied()
    }

    /// Whether this is an ERR packet.
    pub fn is_err(&self) -> bool {
        self.first() == Some(0xff)
    }

    /// Appends the packet, header included, to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(4 + self.payload.len());
        let len = self.payload.len() as u32;
        out.put_u8(len as u8);
        out.put_u8((len >> 8) as u8);
        out.put_u8((len >> 16) as u8);
        out.put_u8(self.seq);
        out.extend_from_slice(&self.payload);
    }
}

/// Frames bytes into [`Packet`]s and back.
///
/// [`PacketCodec::default`] is for the server's side: it trusts the announced length and
/// reserves the whole packet at once. [`PacketCodec::for_client`] is for clients, who may
/// be anyone: the buffer grows with the bytes that actually arrived (never with the length
/// a header announces), and a packet announced longer than [`PacketCodec::max_packet`]
/// is an error before any of it is buffered (the login budget; lifted after login).
#[derive(Debug, Clone, Copy)]
pub struct PacketCodec {
    /// Longer packets are refused with an `InvalidData` error (see [`PacketTooLong`]).
    pub max_packet: usize,
    /// At most this much buffer is reserved ahead of the bytes received.
    reserve_ahead: usize,
}

impl Default for PacketCodec {
    fn default() -> PacketCodec {
        PacketCodec {
            max_packet: usize::MAX,
            reserve_ahead: usize::MAX,
        }
    }
}

/// The largest login packet a client may send before it has authenticated. Real ones are
/// a few hundred bytes (capabilities, user, auth data, database, plugin, connection
/// attributes); MySQL bounds the attributes at 64 KiB, drivers send well under 1 KiB.
pub const LOGIN_PACKET_LIMIT: usize = 16 << 10;

/// Buffer reserved ahead of a client's bytes at most: large packets grow the buffer as
/// they arrive.
const CLIENT_RESERVE_AHEAD: usize = 64 << 10;

impl PacketCodec {
    /// For a client connection that has not logged in: packets of at most
    /// [`LOGIN_PACKET_LIMIT`] bytes, buffer growth that follows the bytes received.
    pub fn for_client() -> PacketCodec {
        PacketCodec {
            max_packet: LOGIN_PACKET_LIMIT,
            reserve_ahead: CLIENT_RESERVE_AHEAD,
        }
    }
}

/// The error a [`PacketCodec`] returns for a packet announced longer than its
/// [`PacketCodec::max_packet`] (inside an `io::Error` of kind `InvalidData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a packet of {announced} bytes, more than the {limit} allowed here")]
pub struct PacketTooLong {
    pub announced: usize,
    pub limit: usize,
    /// The packet's sequence id, so that an answer can follow it.
    pub seq: u8,
}

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, Self::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = src[0] as usize | (src[1] as usize) << 8 | (src[2] as usize) << 16;
        if len > self.max_packet {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                PacketTooLong {
                    announced: len,
                    limit: self.max_packet,
                    seq: src[3],
                },
            ));
        }
        if src.len() < 4 + len {
            // Reserve once for the whole packet instead of growing step by step, up to
            // what this side may reserve ahead of the bytes received.
            src.reserve((4 + len - src.len()).min(self.reserve_ahead));
            return Ok(None);
        }
        let seq = src[3];
        src.advance(4);
        let payload = src.split_to(len).freeze();
        Ok(Some(Packet { seq, payload }))
    }
}

impl Encoder<Packet> for PacketCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), Self::Error> {
        if item.payload.len() > MAX_PAYLOAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a physical packet cannot exceed 16 MiB - 1; split it first",
            ));
        }
        item.write_to(dst);
        Ok(())
    }
}

/// Splits one logical payload into physical packets starting at `seq`; returns the packets.
pub fn split_logical(seq: u8, payload: &[u8]) -> Vec<Packet> {
    let mut out = Vec::new();
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.push(Packet::new(seq, Bytes::copy_from_slice(&rest[..n])));
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_input() {
        let mut buf = BytesMut::new();
        PacketCodec::default()
            .encode(Packet::new(3, &b"\x03SELECT 1"[..]), &mut buf)
            .unwrap();
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..6]);
        assert_eq!(PacketCodec::default().decode(&mut partial).unwrap(), None);
        partial.extend_from_slice(&whole[6..]);
        let p = PacketCodec::default()
            .decode(&mut partial)
            .unwrap()
            .unwrap();
        assert_eq!(p.seq, 3);
        assert_eq!(&p.payload[..], b"\x03SELECT 1");
        assert!(partial.is_empty());
    }

    #[test]
    fn a_clients_buffer_follows_the_bytes_that_arrived() {
        // A header announcing 16 MiB - 1 and a few bytes of it.
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0, 1, 2, 3][..]);
        let mut after_login = PacketCodec::for_client();
        after_login.max_packet = usize::MAX;
        assert_eq!(after_login.decode(&mut src).unwrap(), None);
        assert!(src.capacity() <= 128 << 10, "{}", src.capacity());
        // Before login the same header is refused before anything is reserved.
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0, 1, 2, 3][..]);
        let e = PacketCodec::for_client().decode(&mut src).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let inner = e.get_ref().and_then(|e| e.downcast_ref::<PacketTooLong>());
        assert_eq!(
            inner,
            Some(&PacketTooLong {
                announced: MAX_PAYLOAD,
                limit: LOGIN_PACKET_LIMIT,
                seq: 0
            })
        );
        // The server's side reserves the whole packet at once.
        let mut src = BytesMut::from(&[0x00, 0x00, 0x10, 0, 1][..]);
        assert_eq!(PacketCodec::default().decode(&mut src).unwrap(), None);
        assert!(src.capacity() >= 1 << 20);
    }

    #[test]
    fn huge_payload_splits_with_an_empty_tail() {
        let payload = vec![7u8; MAX_PAYLOAD];
        let packets = split_logical(0, &payload);
        assert_eq!(packets.len(), 2);
        assert!(packets[0].continues());
        assert_eq!(packets[1].payload.len(), 0);
        assert_eq!(packets[1].seq, 1);
    }
}
