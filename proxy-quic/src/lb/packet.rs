//! The load balancer's view of a QUIC datagram: the first packet's header, read
//! without allocating (RFC 9000 section 17, RFC 8999 for versions it does not know).
//!
//! Only what routing needs is read: the header form, for a long header the version,
//! the packet type and both connection IDs. A short header's destination connection
//! ID has no length on the wire; its bytes are returned from the second octet on and
//! the [`Decoder`](crate::Decoder) reads the length its config gives (or the first
//! octet, when the config self-encodes the length).

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;

/// The smallest datagram that may carry a client's Initial packet (RFC 9000
/// section 14.1): smaller ones are dropped, as a server must.
pub const MIN_INITIAL_DATAGRAM: usize = 1200;

/// The smallest short-header packet that can be processed: the first octet, then
/// the header protection sample needs 4 octets of packet number and 16 of sample
/// (RFC 9001 section 5.4.2), before any connection ID.
pub const MIN_SHORT_PACKET: usize = 21;

/// The longest connection ID in QUIC versions 1 and 2.
const MAX_V1_CID: usize = 20;

/// A long header's packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LongType {
    /// Initial: the destination connection ID may be the client's own choice.
    Initial,
    /// 0-RTT: as for Initial.
    ZeroRtt,
    /// Handshake.
    Handshake,
    /// A version this parser does not know: only the invariant fields are read.
    UnknownVersion,
}

/// The header of a datagram's first packet.
///
/// # Example
/// ```
/// use proxy_quic::lb::{parse, Header};
/// let mut short = vec![0x40, 0x07, 0xc4, 0x60, 0x5e, 0x45, 0x04, 0xcc, 0x4f];
/// short.resize(40, 0);
/// match parse(&short).unwrap() {
///     Header::Short { dcid_and_rest } => assert_eq!(dcid_and_rest[0], 0x07),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header<'a> {
    /// A long header (RFC 9000 section 17.2).
    Long {
        /// The packet type.
        kind: LongType,
        /// The version field.
        version: u32,
        /// The destination connection ID.
        dcid: &'a [u8],
        /// The source connection ID.
        scid: &'a [u8],
    },
    /// A short header (RFC 9000 section 17.3): the bytes after the first octet,
    /// which begin with the destination connection ID.
    Short {
        /// The destination connection ID and the rest of the packet.
        dcid_and_rest: &'a [u8],
    },
}

impl<'a> Header<'a> {
    /// The bytes the destination connection ID starts at (for a short header, the
    /// rest of the packet too: the decoder reads only its config's length).
    ///
    /// # Example
    /// ```
    /// let mut initial = vec![0xc0, 0, 0, 0, 1, 2, 0xaa, 0xbb, 0];
    /// initial.resize(1200, 0);
    /// assert_eq!(proxy_quic::lb::parse(&initial).unwrap().dcid(), &[0xaa, 0xbb]);
    /// ```
    pub fn dcid(&self) -> &'a [u8] {
        match self {
            Self::Long { dcid, .. } => dcid,
            Self::Short { dcid_and_rest } => dcid_and_rest,
        }
    }
}

/// Why a datagram is dropped without being forwarded.
///
/// # Example
/// ```
/// use proxy_quic::lb::{parse, ParseError};
/// assert_eq!(parse(&[]), Err(ParseError::Empty));
/// assert_eq!(parse(&[0xc0, 0, 0, 0, 1, 30]), Err(ParseError::Truncated));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A zero-length datagram.
    #[error("empty datagram")]
    Empty,
    /// The header runs past the end of the datagram, or a short-header packet too
    /// short to carry a header protection sample.
    #[error("truncated packet header")]
    Truncated,
    /// A connection ID longer than 20 octets in a version-1 or version-2 packet.
    #[error("connection ID longer than 20 octets")]
    CidTooLong,
    /// A client sent a packet only a server sends (Version Negotiation, Retry).
    #[error("a server-only packet type from a client")]
    ServerOnly,
    /// An Initial packet in a datagram shorter than 1200 octets.
    #[error("initial packet in a datagram shorter than 1200 octets")]
    SmallInitial,
}

impl ParseError {
    /// A metric label.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::lb::ParseError::SmallInitial.as_str(), "small_initial");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Truncated => "truncated",
            Self::CidTooLong => "cid_too_long",
            Self::ServerOnly => "server_only",
            Self::SmallInitial => "small_initial",
        }
    }
}

/// Reads the header of the first packet of a datagram a client sent. Allocation-
/// free; no input panics.
///
/// # Errors
/// A [`ParseError`] for datagrams a server would drop as well: empty, truncated
/// headers, over-long connection IDs, server-only packet types, and Initial packets
/// in datagrams under 1200 octets.
///
/// # Example
/// ```
/// use proxy_quic::lb::{parse, Header, LongType, ParseError, VERSION_1};
/// // Initial, version 1, DCID 0102, SCID 03, padded to 1200 octets.
/// let mut initial = vec![0xc3, 0, 0, 0, 1, 2, 1, 2, 1, 3];
/// initial.resize(1200, 0);
/// assert_eq!(parse(&initial), Ok(Header::Long {
///     kind: LongType::Initial, version: VERSION_1, dcid: &[1, 2], scid: &[3],
/// }));
/// assert_eq!(parse(&initial[..1199]), Err(ParseError::SmallInitial));
/// ```
pub fn parse(datagram: &[u8]) -> Result<Header<'_>, ParseError> {
    let Some(&first) = datagram.first() else {
        return Err(ParseError::Empty);
    };
    if first & 0x80 == 0 {
        if datagram.len() < MIN_SHORT_PACKET {
            return Err(ParseError::Truncated);
        }
        return Ok(Header::Short {
            dcid_and_rest: datagram.get(1..).unwrap_or_default(),
        });
    }
    let version = match datagram.get(1..5) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => return Err(ParseError::Truncated),
    };
    if version == 0 {
        return Err(ParseError::ServerOnly);
    }
    let (dcid, rest) = cid_at(datagram, 5)?;
    let (scid, _) = cid_at(datagram, rest)?;
    let type_bits = (first >> 4) & 0b11;
    let kind = match version {
        VERSION_1 => [
            Some(LongType::Initial),
            Some(LongType::ZeroRtt),
            Some(LongType::Handshake),
            None,
        ][usize::from(type_bits)],
        VERSION_2 => [
            None,
            Some(LongType::Initial),
            Some(LongType::ZeroRtt),
            Some(LongType::Handshake),
        ][usize::from(type_bits)],
        _ => Some(LongType::UnknownVersion),
    };
    let Some(kind) = kind else {
        return Err(ParseError::ServerOnly);
    };
    let known = kind != LongType::UnknownVersion;
    if known && (dcid.len() > MAX_V1_CID || scid.len() > MAX_V1_CID) {
        return Err(ParseError::CidTooLong);
    }
    if kind == LongType::Initial && datagram.len() < MIN_INITIAL_DATAGRAM {
        return Err(ParseError::SmallInitial);
    }
    Ok(Header::Long {
        kind,
        version,
        dcid,
        scid,
    })
}

/// The length-prefixed connection ID at `at`, and the offset after it.
fn cid_at(datagram: &[u8], at: usize) -> Result<(&[u8], usize), ParseError> {
    let len = usize::from(*datagram.get(at).ok_or(ParseError::Truncated)?);
    let end = at + 1 + len;
    let cid = datagram.get(at + 1..end).ok_or(ParseError::Truncated)?;
    Ok((cid, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(first: u8, version: u32, dcid: &[u8], scid: &[u8], len: usize) -> Vec<u8> {
        let mut p = vec![first];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(dcid.len() as u8);
        p.extend_from_slice(dcid);
        p.push(scid.len() as u8);
        p.extend_from_slice(scid);
        p.resize(len.max(p.len()), 0);
        p
    }

    #[test]
    fn long_header_types_per_version() {
        let hs = long(0xe0, VERSION_1, &[1; 8], &[2; 4], 50);
        assert_eq!(
            parse(&hs),
            Ok(Header::Long {
                kind: LongType::Handshake,
                version: VERSION_1,
                dcid: &[1; 8],
                scid: &[2; 4]
            })
        );
        let zero_rtt = long(0xd0, VERSION_1, &[1; 8], &[], 50);
        assert!(matches!(
            parse(&zero_rtt),
            Ok(Header::Long {
                kind: LongType::ZeroRtt,
                ..
            })
        ));
        // Retry and Version Negotiation come only from servers.
        assert_eq!(
            parse(&long(0xf0, VERSION_1, &[1; 8], &[], 50)),
            Err(ParseError::ServerOnly)
        );
        assert_eq!(
            parse(&long(0x80, 0, &[1; 8], &[], 50)),
            Err(ParseError::ServerOnly)
        );
        // Version 2 numbers the types differently: 0b01 is Initial, 0b00 Retry.
        let v2 = long(0xd0, VERSION_2, &[1; 8], &[], 1200);
        assert!(matches!(
            parse(&v2),
            Ok(Header::Long {
                kind: LongType::Initial,
                ..
            })
        ));
        assert_eq!(
            parse(&long(0xc0, VERSION_2, &[1; 8], &[], 1200)),
            Err(ParseError::ServerOnly)
        );
    }

    #[test]
    fn bad_long_headers_are_refused() {
        assert_eq!(parse(&[0xc0, 0, 0]), Err(ParseError::Truncated));
        assert_eq!(parse(&[0xc0, 0, 0, 0, 1]), Err(ParseError::Truncated));
        assert_eq!(
            parse(&[0xe0, 0, 0, 0, 1, 2, 1, 2]),
            Err(ParseError::Truncated),
            "no SCID length"
        );
        assert_eq!(
            parse(&long(0xe0, VERSION_1, &[1; 21], &[], 60)),
            Err(ParseError::CidTooLong)
        );
        assert_eq!(
            parse(&long(0xc0, VERSION_1, &[1; 8], &[], 1199)),
            Err(ParseError::SmallInitial)
        );
    }

    #[test]
    fn unknown_versions_keep_long_connection_ids() {
        let p = long(0xc0, 0x1a2a_3a4a, &[9; 40], &[8; 3], 60);
        assert_eq!(
            parse(&p),
            Ok(Header::Long {
                kind: LongType::UnknownVersion,
                version: 0x1a2a_3a4a,
                dcid: &[9; 40],
                scid: &[8; 3]
            })
        );
    }

    #[test]
    fn short_headers_need_room_for_a_sample() {
        assert_eq!(parse(&[0x40; 20]), Err(ParseError::Truncated));
        let p = [0x41; 21];
        assert_eq!(parse(&p).map(|h| h.dcid().len()), Ok(20));
    }
}
