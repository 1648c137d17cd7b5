//! The `quic` section in a hot upgrade: the listeners of a new process start on the
//! UDP sockets the old process handed over ([`Prepared::inherit`]), and a running
//! section hands its own over ([`Running::handoffs`]).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use super::{Prepared, Running};
use crate::handoff::{Generation, Handoff};

/// A UDP socket of a QUIC listener, handed over by the old process.
#[derive(Debug)]
pub struct InheritedUdp {
    /// The listener's name.
    pub name: String,
    /// The UDP socket, bound.
    pub socket: OwnedFd,
    /// The channel to forward the old process's datagrams on, and the generation
    /// of its connection IDs; `None`: nothing to forward.
    pub forward: Option<(OwnedFd, Generation)>,
}

impl InheritedUdp {
    /// The address the socket is bound to.
    fn local_addr(&self) -> Option<SocketAddr> {
        socket2::SockRef::from(&self.socket)
            .local_addr()
            .ok()?
            .as_socket()
    }
}

impl Prepared {
    /// Starts each listener on the inherited socket of its name, when it is bound
    /// to the listener's address (taking over the old process's connections on
    /// it), and binds the others; sockets no listener takes are closed.
    ///
    /// ```
    /// # fn f(prepared: proxy_quic::section::Prepared) {
    /// // In a new process: `sockets` received in the upgrade.
    /// let sockets = Vec::new();
    /// let prepared = prepared.inherit(sockets);
    /// # }
    /// ```
    #[must_use]
    pub fn inherit(mut self, sockets: Vec<InheritedUdp>) -> Self {
        self.inherited = sockets;
        self
    }

    /// The inherited socket for the listener `name` on `address` (for port 0, the
    /// port the old process's listener was given), if any.
    pub(super) fn take_inherited(
        &mut self,
        name: &str,
        address: SocketAddr,
    ) -> Option<InheritedUdp> {
        let fits = |bound: SocketAddr| {
            bound == address || (address.port() == 0 && bound.ip() == address.ip())
        };
        let at = self
            .inherited
            .iter()
            .position(|s| s.name == name && s.local_addr().is_some_and(fits))?;
        Some(self.inherited.swap_remove(at))
    }
}

impl Running {
    /// The hand-over of each listener to a new process, by listener name (see
    /// [`Handoff`]).
    pub fn handoffs(&self) -> Vec<(String, Handoff)> {
        self.handoffs
            .iter()
            .map(|(name, h)| (name.to_string(), h.clone()))
            .collect()
    }
}
