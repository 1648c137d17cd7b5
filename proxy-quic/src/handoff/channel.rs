//! The forwarding channel between the two processes of a hot upgrade: a connected
//! pair of Unix `SOCK_SEQPACKET` sockets (each message arrives whole, and the end of
//! the peer is seen), one datagram per message, after a small header that says
//! where it came from.
//!
//! Header: `flags: u8` (bit 0 the client's address is IPv6, bit 1 the local address
//! follows, bit 2 it is IPv6), `ecn: u8` (0 none, else the codepoint's bits), the
//! client's port (`u16`, big-endian) and address (4 or 16 bytes), then the local
//! address the datagram was sent to (0, 4 or 16 bytes), then the datagram.

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use quinn::udp::EcnCodepoint;
use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// The longest header.
pub(crate) const MAX_HEADER: usize = 4 + 16 + 16;

const PEER_V6: u8 = 1;
const HAS_LOCAL: u8 = 2;
const LOCAL_V6: u8 = 4;

/// Where a forwarded datagram came from and was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) peer: SocketAddr,
    pub(crate) local_ip: Option<IpAddr>,
    pub(crate) ecn: Option<EcnCodepoint>,
}

impl Origin {
    /// Writes the header into `out`; returns its length.
    pub(crate) fn write(&self, out: &mut [u8; MAX_HEADER]) -> usize {
        let mut flags = 0;
        if self.peer.is_ipv6() {
            flags |= PEER_V6;
        }
        match self.local_ip {
            Some(IpAddr::V6(_)) => flags |= HAS_LOCAL | LOCAL_V6,
            Some(IpAddr::V4(_)) => flags |= HAS_LOCAL,
            None => {}
        }
        out[0] = flags;
        out[1] = self.ecn.map_or(0, |e| e as u8);
        out[2..4].copy_from_slice(&self.peer.port().to_be_bytes());
        let mut at = 4;
        for ip in std::iter::once(self.peer.ip()).chain(self.local_ip) {
            at += match ip {
                IpAddr::V4(v4) => put(&mut out[at..], &v4.octets()),
                IpAddr::V6(v6) => put(&mut out[at..], &v6.octets()),
            };
        }
        at
    }

    /// Reads a header off the front of `message`; returns it and its length, or
    /// `None` when the message does not start with one.
    pub(crate) fn read(message: &[u8]) -> Option<(Self, usize)> {
        let flags = *message.first()?;
        if flags & !(PEER_V6 | HAS_LOCAL | LOCAL_V6) != 0 {
            return None;
        }
        let ecn = match *message.get(1)? {
            0 => None,
            bits @ 1..=3 => Some(EcnCodepoint::from_bits(bits)?),
            _ => return None,
        };
        let port = u16::from_be_bytes(message.get(2..4)?.try_into().ok()?);
        let mut at = 4;
        let mut ip = |v6: bool| -> Option<IpAddr> {
            let len = if v6 { 16 } else { 4 };
            let bytes = message.get(at..at + len)?;
            at += len;
            Some(if v6 {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))
            } else {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))
            })
        };
        let peer = SocketAddr::new(ip(flags & PEER_V6 != 0)?, port);
        let local_ip = if flags & HAS_LOCAL != 0 {
            Some(ip(flags & LOCAL_V6 != 0)?)
        } else {
            None
        };
        let origin = Self {
            peer,
            local_ip,
            ecn,
        };
        Some((origin, at))
    }
}

fn put(out: &mut [u8], bytes: &[u8]) -> usize {
    out[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

/// A new channel: (the old process's end, non-blocking, the new process's end),
/// both close-on-exec.
///
/// # Errors
/// When the sockets cannot be made.
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

/// Sends one datagram after its header, without waiting.
///
/// # Errors
/// `WouldBlock` when the channel is full, `BrokenPipe` (or another error) when the
/// old process's end is closed.
pub(crate) fn send(fd: impl AsFd, origin: &Origin, datagram: &[u8]) -> io::Result<()> {
    let mut header = [0u8; MAX_HEADER];
    let len = origin.write(&mut header);
    let iov = [IoSlice::new(&header[..len]), IoSlice::new(datagram)];
    net::sendmsg(
        fd,
        &iov,
        &mut Default::default(),
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    Ok(())
}

/// Receives one message into `buf`, without waiting: its length, 0 when the new
/// process's end is closed.
///
/// # Errors
/// `WouldBlock` when there is none.
pub(crate) fn recv(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let (n, _) = net::recv(fd, buf, RecvFlags::DONTWAIT)?;
    Ok(n)
}

/// Whether the other end of the channel is still open (a peek without waiting
/// that does not see its end).
pub(crate) fn peer_open(fd: impl AsFd) -> bool {
    let mut byte = [0u8; 1];
    match net::recv(fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((0, _)) => false,
        Ok(_) => true,
        Err(e) => e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let cases = [
            Origin {
                peer: "192.0.2.1:443".parse().unwrap(),
                local_ip: None,
                ecn: None,
            },
            Origin {
                peer: "[2001:db8::1]:1".parse().unwrap(),
                local_ip: Some("::1".parse().unwrap()),
                ecn: Some(EcnCodepoint::Ce),
            },
            Origin {
                peer: "[::ffff:10.0.0.1]:65535".parse().unwrap(),
                local_ip: Some("127.0.0.1".parse().unwrap()),
                ecn: Some(EcnCodepoint::Ect0),
            },
        ];
        for origin in cases {
            let mut buf = [0u8; MAX_HEADER];
            let len = origin.write(&mut buf);
            assert_eq!(Origin::read(&buf[..len]), Some((origin, len)));
            for cut in 0..len {
                assert_eq!(Origin::read(&buf[..cut]), None, "cut at {cut}");
            }
        }
        assert_eq!(Origin::read(&[0x80, 0, 0, 1, 1, 2, 3, 4]), None, "flags");
        assert_eq!(Origin::read(&[0, 9, 0, 1, 1, 2, 3, 4]), None, "ecn");
    }

    #[test]
    fn a_datagram_goes_over_whole_and_the_end_is_seen() {
        let (old, new) = pair().unwrap();
        let origin = Origin {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local_ip: None,
            ecn: None,
        };
        send(&new, &origin, b"quic packet").unwrap();
        let mut buf = [0u8; 128];
        let n = recv(&old, &mut buf).unwrap();
        let (got, at) = Origin::read(&buf[..n]).unwrap();
        assert_eq!((got, &buf[at..n]), (origin, &b"quic packet"[..]));
        let nothing = recv(&old, &mut buf).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        assert!(peer_open(&old) && peer_open(&new));
        drop(new);
        assert!(!peer_open(&old));
        assert_eq!(recv(&old, &mut buf).unwrap(), 0);
        let (old, new) = pair().unwrap();
        drop(old);
        assert!(send(&new, &origin, b"x").is_err());
    }
}
