//! Which process a connection belongs to, read off its connection ID: every
//! connection ID a listener issues carries its process's [`Generation`] in the
//! lowest bit of its last byte, and the generation alternates from one process to
//! the next.

use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};

/// The generation of the connection IDs a process issues: alternates at each hot
/// upgrade, so the new process tells the old process's connections apart from its
/// own by one bit of a packet's destination connection ID.
///
/// ```
/// use proxy_quic::handoff::Generation;
/// let first = Generation::default();
/// assert_eq!(first.next().next(), first);
/// assert_eq!(Generation::of_cid(&[0x40, 7, 3]), Some(Generation::from_bit(1).unwrap()));
/// assert_eq!(Generation::of_cid(&[]), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Generation {
    /// Connection IDs whose last byte is even (the first process's).
    #[default]
    Even,
    /// Connection IDs whose last byte is odd.
    Odd,
}

impl Generation {
    /// The generation of the process after this one.
    #[must_use]
    pub fn next(self) -> Self {
        match self {
            Self::Even => Self::Odd,
            Self::Odd => Self::Even,
        }
    }

    /// The bit on the wire (0 even, 1 odd).
    pub fn bit(self) -> u8 {
        match self {
            Self::Even => 0,
            Self::Odd => 1,
        }
    }

    /// The generation of bit `bit`; `None` for anything but 0 and 1.
    pub fn from_bit(bit: u8) -> Option<Self> {
        match bit {
            0 => Some(Self::Even),
            1 => Some(Self::Odd),
            _ => None,
        }
    }

    /// The generation a connection ID carries; `None` for an empty one.
    pub fn of_cid(cid: &[u8]) -> Option<Self> {
        cid.last()
            .map(|b| if b & 1 == 0 { Self::Even } else { Self::Odd })
    }
}

/// QUIC version 1 (RFC 9000) and its drafts' long header packet types.
const V1_HANDSHAKE: u8 = 2;
/// QUIC version 2 (RFC 9369) moves the types: Handshake is 3.
const V2: u32 = 0x6b33_43cf;
const V2_HANDSHAKE: u8 = 3;

/// The generation of the connection a datagram's first packet is for, read off
/// its destination connection ID: a short header packet's, `short_cid_len` bytes
/// after the first byte, or a Handshake packet's. `None` for what starts or may
/// start a connection (Initial, 0-RTT), for other versions and for what is too
/// short to tell: those stay with the process that read them.
pub(crate) fn of_datagram(datagram: &[u8], short_cid_len: usize) -> Option<Generation> {
    let first = *datagram.first()?;
    if first & 0x80 == 0 {
        return Generation::of_cid(datagram.get(1..1 + short_cid_len)?);
    }
    let version = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
    let kind = (first >> 4) & 0x03;
    let handshake = match version {
        1 => kind == V1_HANDSHAKE,
        v if v >> 8 == 0x00ff_0000 => kind == V1_HANDSHAKE,
        V2 => kind == V2_HANDSHAKE,
        _ => false,
    };
    if !handshake {
        return None;
    }
    let len = usize::from(*datagram.get(5)?);
    Generation::of_cid(datagram.get(6..6 + len)?)
}

/// The most connection IDs drawn to find one of the generation: each is of either
/// generation with even odds, so missing 64 times in a row does not happen.
const MAX_DRAWS: usize = 64;

/// Issues the connection IDs of `inner` that carry `generation` (drawing until
/// one does: about two per ID, which halves a QUIC-LB nonce space's life).
pub(crate) struct MarkedCids {
    inner: Box<dyn ConnectionIdGenerator>,
    generation: Generation,
}

impl MarkedCids {
    pub(crate) fn new(inner: Box<dyn ConnectionIdGenerator>, generation: Generation) -> Self {
        Self { inner, generation }
    }
}

impl ConnectionIdGenerator for MarkedCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut cid = self.inner.generate_cid();
        if self.inner.cid_len() == 0 {
            return cid;
        }
        for _ in 1..MAX_DRAWS {
            if Generation::of_cid(&cid) == Some(self.generation) {
                break;
            }
            cid = self.inner.generate_cid();
        }
        cid
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        self.inner.validate(cid)
    }

    fn cid_len(&self) -> usize {
        self.inner.cid_len()
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        self.inner.cid_lifetime()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::HashedConnectionIdGenerator;

    #[test]
    fn marked_ids_all_carry_the_generation_and_still_validate() {
        for generation in [Generation::Even, Generation::Odd] {
            let mut g = MarkedCids::new(Box::<HashedConnectionIdGenerator>::default(), generation);
            for _ in 0..1000 {
                let cid = g.generate_cid();
                assert_eq!(Generation::of_cid(&cid), Some(generation));
                assert!(g.validate(&cid).is_ok());
            }
        }
    }

    #[test]
    fn marked_quic_lb_ids_still_decode_to_the_server_id() {
        use crate::{CidFormat, CidKey, ConfigId, NonceSpace, QuicLbServer, ServerId};
        let key = CidKey::new([7u8; 16]);
        let formats = [
            CidFormat::new(ConfigId::new(1).unwrap(), 2, 6, None, false).unwrap(),
            CidFormat::new(ConfigId::new(2).unwrap(), 3, 5, Some(&key), true).unwrap(),
            CidFormat::new(ConfigId::new(0).unwrap(), 8, 8, Some(&key), false).unwrap(),
        ];
        for format in formats {
            let sid = ServerId::new(&[0x0a, 0x0b, 0x0c, 1, 2, 3, 4, 5][..format.server_id_len()])
                .unwrap();
            let server = QuicLbServer::new(format.clone(), sid).unwrap();
            for generation in [Generation::Even, Generation::Odd] {
                let inner = server.generator(NonceSpace::WHOLE).unwrap();
                let mut g = MarkedCids::new(Box::new(inner), generation);
                for _ in 0..200 {
                    let cid = g.generate_cid();
                    assert_eq!(Generation::of_cid(&cid), Some(generation));
                    assert_eq!(format.server_id(&cid), Some(sid), "{format:?}");
                    assert!(g.validate(&cid).is_ok());
                }
            }
        }
    }

    #[test]
    fn short_and_handshake_packets_name_their_generation_initials_do_not() {
        // Short header: DCID of 4 bytes after the first byte.
        assert_eq!(
            of_datagram(&[0x40, 9, 9, 9, 3, 0xaa], 4),
            Some(Generation::Odd)
        );
        assert_eq!(of_datagram(&[0x40, 9, 9, 9, 2], 4), Some(Generation::Even));
        assert_eq!(of_datagram(&[0x40, 9, 9], 4), None, "too short");
        assert_eq!(of_datagram(&[], 4), None);
        // Long headers: first byte, version, DCID length, DCID.
        let long = |first: u8, version: u32, dcid: &[u8]| {
            let mut p = vec![first];
            p.extend_from_slice(&version.to_be_bytes());
            p.push(dcid.len() as u8);
            p.extend_from_slice(dcid);
            p.extend_from_slice(&[0, 1, 2]);
            p
        };
        let handshake_v1 = 0xc0 | (V1_HANDSHAKE << 4);
        assert_eq!(
            of_datagram(&long(handshake_v1, 1, &[5, 7]), 4),
            Some(Generation::Odd)
        );
        assert_eq!(
            of_datagram(&long(handshake_v1, 1, &[5, 6]), 4),
            Some(Generation::Even)
        );
        assert_eq!(
            of_datagram(&long(0xc0 | (V2_HANDSHAKE << 4), V2, &[1]), 4),
            Some(Generation::Odd)
        );
        // Initial (type 0 in v1) and 0-RTT (type 1) start connections; v2's
        // Initial is type 1; unknown versions and an empty DCID tell nothing.
        assert_eq!(of_datagram(&long(0xc0, 1, &[1]), 4), None);
        assert_eq!(of_datagram(&long(0xd0, 1, &[1]), 4), None);
        assert_eq!(of_datagram(&long(0xd0, V2, &[1]), 4), None);
        assert_eq!(of_datagram(&long(handshake_v1, 0x0a0a_0a0a, &[1]), 4), None);
        assert_eq!(of_datagram(&long(handshake_v1, 1, &[]), 4), None);
        // A DCID length past the datagram.
        let mut cut = long(handshake_v1, 1, &[1, 2, 3]);
        cut[5] = 200;
        assert_eq!(of_datagram(&cut, 4), None);
    }
}
