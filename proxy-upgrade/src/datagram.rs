//! QUIC's UDP sockets in an upgrade (version 4): what the old process hands over
//! ([`DatagramSource`], [`HandedOffDatagram`]) and what the new one receives
//! ([`InheritedDatagram`]). The crate knows nothing of QUIC: a UDP socket, the
//! channel on which the new process forwards the datagrams of the old process's
//! connections, and the generation that tells those apart travel as they are; the
//! QUIC listener (`proxy_quic::h3`) gives and takes them.

use std::{net::SocketAddr, os::fd::OwnedFd};

use crate::wire::DatagramRecord;

/// The old process's UDP sockets to hand over, and the moment it must stop
/// reading them.
///
/// ```
/// use std::os::fd::OwnedFd;
/// use proxy_upgrade::{DatagramSource, HandedOffDatagram};
///
/// /// A UDP socket handed over without forwarding: the old process has no
/// /// connections on it to keep.
/// struct Plain(std::net::UdpSocket);
///
/// impl DatagramSource for Plain {
///     fn datagram_sockets(&self) -> std::io::Result<Vec<HandedOffDatagram>> {
///         Ok(vec![HandedOffDatagram {
///             name: "h3".into(),
///             worker: 0,
///             socket: OwnedFd::from(self.0.try_clone()?),
///             forward: None,
///         }])
///     }
///     fn hand_off_datagrams(&self) {}
/// }
/// let plain = Plain(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
/// assert_eq!(plain.datagram_sockets().unwrap().len(), 1);
/// ```
pub trait DatagramSource: Send + Sync + 'static {
    /// Duplicates of the UDP sockets, each with the new process's end of its
    /// forwarding channel (made for this upgrade). Called once per upgrade, after
    /// the listening sockets.
    ///
    /// # Errors
    /// When they cannot be duplicated; the upgrade is refused.
    fn datagram_sockets(&self) -> std::io::Result<Vec<HandedOffDatagram>>;

    /// The new process reads the sockets: stop reading them, read the datagrams it
    /// forwards instead, tell the clients to go away (HTTP/3 GOAWAY) and drain.
    fn hand_off_datagrams(&self);

    /// The upgrade was abandoned before the new process was ready: the forwarding
    /// channels made for it are of no use (this process reads its sockets on).
    fn keep_datagrams(&self) {}
}

/// A UDP socket the old process hands over.
#[derive(Debug)]
pub struct HandedOffDatagram {
    /// The listener's name.
    pub name: String,
    /// Its place in the listener's `SO_REUSEPORT` group.
    pub worker: u16,
    /// The UDP socket (a duplicate: the old process keeps sending on its own).
    pub socket: OwnedFd,
    /// The new process's end of the forwarding channel (a connected Unix
    /// `SOCK_SEQPACKET` socket) and the generation of the old process's
    /// connection IDs; `None` when nothing is to be forwarded.
    pub forward: Option<(OwnedFd, u8)>,
}

/// A UDP socket received by the new process, with its forwarding channel.
#[derive(Debug)]
pub struct InheritedDatagram {
    /// The listener name, address and worker it had in the old process.
    pub record: DatagramRecord,
    /// The UDP socket, bound, close-on-exec.
    pub socket: OwnedFd,
    /// The channel to the old process for the datagrams of its connections, and
    /// the generation their connection IDs carry; `None` when it sent none.
    pub forward: Option<ForwardChannel>,
}

impl InheritedDatagram {
    /// The UDP address the socket is bound to.
    pub fn address(&self) -> SocketAddr {
        self.record.address
    }
}

/// The new process's end of a forwarding channel (see [`InheritedDatagram`]).
#[derive(Debug)]
pub struct ForwardChannel {
    /// A connected Unix `SOCK_SEQPACKET` socket, close-on-exec.
    pub socket: OwnedFd,
    /// The generation (0 or 1) of the old process's connection IDs.
    pub generation: u8,
}
