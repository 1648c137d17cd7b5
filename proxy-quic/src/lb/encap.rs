//! The encapsulation header of the forwarder's `encapsulated` return path: the
//! load balancer puts it in front of each client datagram it forwards to a server,
//! naming the client, and a server puts it in front of each datagram it sends back
//! through the load balancer, naming the client to deliver it to.
//!
//! | octets | field |
//! |---|---|
//! | 1 | `0xD0 \| version` (version 1): the long header form bit set |
//! | 4 | `00 00 00 00`: QUIC version 0, a Version Negotiation packet, which no client sends |
//! | 1 | flags: `0x01` client is IPv6, `0x02` a load balancer address follows, `0x04` it is IPv6; other bits zero |
//! | 4 or 16, 2 | the client's IP address and UDP port (network order) |
//! | 4 or 16, 2 | optional: the load balancer's listening IP address and port |
//!
//! Then the datagram, unchanged. Decoding reads only within the given bytes and
//! never panics; encoding writes into a caller's buffer (no allocation).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The header's version.
pub const ENCAP_VERSION: u8 = 1;

/// The first octet of a version-1 header: `0xD0 | 1`.
const FIRST: u8 = 0xD0 | ENCAP_VERSION;
const FLAG_CLIENT_V6: u8 = 0x01;
const FLAG_LB: u8 = 0x02;
const FLAG_LB_V6: u8 = 0x04;
const FIXED: usize = 6;

/// The shortest header: an IPv4 client and no load balancer address (12 octets).
pub const MIN_ENCAP_HEADER: usize = FIXED + 6;
/// The longest header: IPv6 client and IPv6 load balancer address (42 octets).
pub const MAX_ENCAP_HEADER: usize = FIXED + 18 + 18;

/// Why a datagram does not carry a valid encapsulation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncapError {
    /// It does not begin with the header's magic (`0xD?` then four zero octets).
    #[error("not an encapsulated datagram")]
    NotEncapsulated,
    /// The magic, with a version other than 1.
    #[error("encapsulation header version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Flag bits that version 1 does not define are set.
    #[error("reserved flag bits set")]
    ReservedFlags,
    /// The header runs past the end of the datagram.
    #[error("truncated encapsulation header")]
    Truncated,
    /// No datagram after the header.
    #[error("nothing after the encapsulation header")]
    Empty,
    /// The output buffer is shorter than the header.
    #[error("buffer too short for the encapsulation header")]
    BufferTooShort,
}

impl EncapError {
    /// A metric label.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::lb::EncapError::Truncated.as_str(), "truncated");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotEncapsulated => "not_encapsulated",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::ReservedFlags => "reserved_flags",
            Self::Truncated => "truncated",
            Self::Empty => "empty",
            Self::BufferTooShort => "buffer_too_short",
        }
    }
}

/// An encapsulation header: the client a datagram comes from (load balancer to
/// server) or goes to (server to load balancer), and optionally the address the
/// load balancer received it on.
///
/// # Example
/// ```
/// use proxy_quic::lb::EncapHeader;
/// let header = EncapHeader { client: "192.0.2.7:5555".parse().unwrap(), lb: None };
/// let mut buf = [0u8; 64];
/// let n = header.write(&mut buf).unwrap();
/// assert_eq!(&buf[..n], &[0xd1, 0, 0, 0, 0, 0x00, 192, 0, 2, 7, 0x15, 0xb3]);
/// buf[n] = 0x40; // the datagram
/// assert_eq!(EncapHeader::decode(&buf[..n + 1]), Ok((header, &[0x40][..])));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapHeader {
    /// The client's address.
    pub client: SocketAddr,
    /// The load balancer's listening address, when it sends it.
    pub lb: Option<SocketAddr>,
}

impl EncapHeader {
    /// The header's length on the wire.
    pub fn wire_len(&self) -> usize {
        FIXED + addr_len(self.client) + self.lb.map_or(0, addr_len)
    }

    /// Writes the header at the start of `out`; returns its length.
    ///
    /// # Errors
    /// [`EncapError::BufferTooShort`] when `out` is shorter than [`wire_len`](Self::wire_len).
    pub fn write(&self, out: &mut [u8]) -> Result<usize, EncapError> {
        let len = self.wire_len();
        let out = out.get_mut(..len).ok_or(EncapError::BufferTooShort)?;
        let mut flags = 0;
        if self.client.is_ipv6() {
            flags |= FLAG_CLIENT_V6;
        }
        if let Some(lb) = self.lb {
            flags |= FLAG_LB;
            if lb.is_ipv6() {
                flags |= FLAG_LB_V6;
            }
        }
        let (fixed, rest) = out.split_at_mut(FIXED);
        fixed.copy_from_slice(&[FIRST, 0, 0, 0, 0, flags]);
        let rest = put_addr(rest, self.client);
        if let Some(lb) = self.lb {
            put_addr(rest, lb);
        }
        Ok(len)
    }

    /// Reads the header at the start of `datagram`; returns it and the datagram
    /// after it. Bounds-checked: no input panics.
    ///
    /// # Errors
    /// An [`EncapError`] naming what is wrong.
    pub fn decode(datagram: &[u8]) -> Result<(Self, &[u8]), EncapError> {
        let Some(&[first, 0, 0, 0, 0, flags]) = datagram.first_chunk::<FIXED>() else {
            return Err(EncapError::NotEncapsulated);
        };
        if first & 0xF0 != FIRST & 0xF0 {
            return Err(EncapError::NotEncapsulated);
        }
        if first != FIRST {
            return Err(EncapError::UnsupportedVersion(first & 0x0F));
        }
        if flags & !(FLAG_CLIENT_V6 | FLAG_LB | FLAG_LB_V6) != 0
            || (flags & FLAG_LB == 0 && flags & FLAG_LB_V6 != 0)
        {
            return Err(EncapError::ReservedFlags);
        }
        let rest = datagram.get(FIXED..).unwrap_or_default();
        let (client, rest) = get_addr(rest, flags & FLAG_CLIENT_V6 != 0)?;
        let (lb, rest) = if flags & FLAG_LB != 0 {
            let (lb, rest) = get_addr(rest, flags & FLAG_LB_V6 != 0)?;
            (Some(lb), rest)
        } else {
            (None, rest)
        };
        if rest.is_empty() {
            return Err(EncapError::Empty);
        }
        Ok((Self { client, lb }, rest))
    }
}

/// Whether `datagram` begins with the header's magic (any version): the load
/// balancer drops such datagrams from anyone but its servers.
///
/// # Example
/// ```
/// assert!(proxy_quic::lb::is_encapsulated(&[0xd1, 0, 0, 0, 0, 0]));
/// assert!(!proxy_quic::lb::is_encapsulated(&[0xc0, 0, 0, 0, 1, 8]));
/// ```
pub fn is_encapsulated(datagram: &[u8]) -> bool {
    matches!(datagram.first_chunk::<5>(), Some(&[first, 0, 0, 0, 0]) if first & 0xF0 == 0xD0)
}

fn addr_len(addr: SocketAddr) -> usize {
    if addr.is_ipv6() {
        18
    } else {
        6
    }
}

/// Writes `addr` (IP then port) at the start of `out`, which the caller sized;
/// returns the rest.
fn put_addr(out: &mut [u8], addr: SocketAddr) -> &mut [u8] {
    let n = addr_len(addr);
    let (mine, rest) = out.split_at_mut(n.min(out.len()));
    let port = addr.port().to_be_bytes();
    match addr.ip() {
        IpAddr::V4(ip) => copy(mine, &ip.octets(), &port),
        IpAddr::V6(ip) => copy(mine, &ip.octets(), &port),
    }
    rest
}

fn copy(out: &mut [u8], ip: &[u8], port: &[u8; 2]) {
    for (o, b) in out.iter_mut().zip(ip.iter().chain(port)) {
        *o = *b;
    }
}

fn get_addr(bytes: &[u8], v6: bool) -> Result<(SocketAddr, &[u8]), EncapError> {
    if v6 {
        let (&a, rest) = bytes
            .split_first_chunk::<18>()
            .ok_or(EncapError::Truncated)?;
        let (ip, port) = a.split_at(16);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(ip);
        let port = u16::from_be_bytes([port[0], port[1]]);
        Ok((SocketAddr::from((Ipv6Addr::from(octets), port)), rest))
    } else {
        let (&[a, b, c, d, p, q], rest) = bytes
            .split_first_chunk::<6>()
            .ok_or(EncapError::Truncated)?;
        let addr = SocketAddr::from((Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p, q])));
        Ok((addr, rest))
    }
}

/// `addr` in the family of a socket bound at `local`: an IPv4 address as
/// IPv4-mapped IPv6 for an IPv6 socket (dual stack), else as it is.
pub(crate) fn for_socket(addr: SocketAddr, local: SocketAddr) -> SocketAddr {
    match (addr.ip(), local.is_ipv6()) {
        (IpAddr::V4(ip), true) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port()),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_family_combination() {
        let v4: SocketAddr = "198.51.100.9:443".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:61000".parse().unwrap();
        for client in [v4, v6] {
            for lb in [None, Some(v4), Some(v6)] {
                let h = EncapHeader { client, lb };
                let mut buf = [0u8; MAX_ENCAP_HEADER + 3];
                let n = h.write(&mut buf).unwrap();
                assert_eq!(n, h.wire_len());
                assert!((MIN_ENCAP_HEADER..=MAX_ENCAP_HEADER).contains(&n));
                assert!(is_encapsulated(&buf[..n]));
                buf[n..n + 3].copy_from_slice(b"abc");
                assert_eq!(EncapHeader::decode(&buf[..n + 3]), Ok((h, &b"abc"[..])));
                assert_eq!(EncapHeader::decode(&buf[..n]), Err(EncapError::Empty));
                assert_eq!(
                    EncapHeader::decode(&buf[..n - 1]),
                    Err(EncapError::Truncated)
                );
                assert_eq!(h.write(&mut buf[..n - 1]), Err(EncapError::BufferTooShort));
            }
        }
    }

    #[test]
    fn refuses_other_bytes() {
        let d = |b: &[u8]| EncapHeader::decode(b).map(|(h, _)| h);
        assert_eq!(d(&[]), Err(EncapError::NotEncapsulated));
        assert_eq!(d(&[0xc0, 0, 0, 0, 1, 0]), Err(EncapError::NotEncapsulated));
        assert_eq!(
            d(&[0xd2, 0, 0, 0, 0, 0, 1]),
            Err(EncapError::UnsupportedVersion(2))
        );
        assert_eq!(d(&[0xd1, 0, 0, 0, 0, 0x08]), Err(EncapError::ReservedFlags));
        assert_eq!(d(&[0xd1, 0, 0, 0, 0, 0x04]), Err(EncapError::ReservedFlags));
        assert_eq!(
            d(&[0xd1, 0, 0, 0, 0, 0x02, 1, 2, 3, 4, 5, 6]),
            Err(EncapError::Truncated)
        );
    }

    #[test]
    fn maps_ipv4_for_a_dual_stack_socket() {
        let v4: SocketAddr = "192.0.2.1:9".parse().unwrap();
        let any6: SocketAddr = "[::]:443".parse().unwrap();
        assert_eq!(
            for_socket(v4, any6),
            "[::ffff:192.0.2.1]:9".parse().unwrap()
        );
        assert_eq!(for_socket(v4, "0.0.0.0:443".parse().unwrap()), v4);
    }
}
