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
#[derive(Debug, Default, Clone, Copy)]
pub struct PacketCodec;

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, Self::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = src[0] as usize | (src[1] as usize) << 8 | (src[2] as usize) << 16;
        if src.len() < 4 + len {
            // Reserve once for the whole packet instead of growing step by step.
            src.reserve(4 + len - src.len());
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
        PacketCodec
            .encode(Packet::new(3, &b"\x03SELECT 1"[..]), &mut buf)
            .unwrap();
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..6]);
        assert_eq!(PacketCodec.decode(&mut partial).unwrap(), None);
        partial.extend_from_slice(&whole[6..]);
        let p = PacketCodec.decode(&mut partial).unwrap().unwrap();
        assert_eq!(p.seq, 3);
        assert_eq!(&p.payload[..], b"\x03SELECT 1");
        assert!(partial.is_empty());
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
