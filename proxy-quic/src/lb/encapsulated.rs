//! The forwarder's `encapsulated` return path: one socket, no flow table. A client
//! datagram goes to its server with an [`EncapHeader`] naming the client in front;
//! a datagram from a server carries a header naming the client it goes to, and
//! leaves toward that client, without the header, from the same socket.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::{debug, trace};

use super::encap::{for_socket, is_encapsulated, EncapHeader, MAX_ENCAP_HEADER};
use super::forwarder::{send_now, Shared, MAX_DATAGRAM};
use super::packet::parse;
use super::table::canonical;

/// Room kept in front of a received client datagram for its header, so the
/// header and the datagram go out in one `sendto` without a copy.
const ROOM: usize = MAX_ENCAP_HEADER;

/// The receive loop of an encapsulated forwarder. One buffer, allocated once.
pub(super) async fn run(socket: UdpSocket, local: SocketAddr, shared: Arc<Shared>) {
    // The load balancer's own address goes in the header when it is a specific
    // one; a wildcard bind does not know which of its addresses a client used.
    let advertised = (!local.ip().is_unspecified()).then(|| canonical(local));
    let mut buf = vec![0u8; ROOM + MAX_DATAGRAM + MAX_ENCAP_HEADER + 1];
    loop {
        let received = match buf.get_mut(ROOM..) {
            Some(room) => socket.recv_from(room).await,
            None => return,
        };
        let (n, from) = match received {
            Ok(received) => received,
            Err(err) => {
                debug!(?err, "receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if shared.routes.load().is_server(from) {
            let datagram = buf.get(ROOM..ROOM + n).unwrap_or_default();
            from_server(datagram, from, &socket, local, &shared);
        } else {
            to_server(&mut buf, n, from, &socket, local, advertised, &shared);
        }
    }
}

/// A client datagram (at `buf[ROOM..ROOM + n]`): routed, wrapped in place and sent.
fn to_server(
    buf: &mut [u8],
    n: usize,
    client: SocketAddr,
    socket: &UdpSocket,
    local: SocketAddr,
    advertised: Option<SocketAddr>,
    shared: &Shared,
) {
    let stats = &shared.stats;
    stats.received();
    if n > MAX_DATAGRAM {
        return stats.oversize();
    }
    let datagram = buf.get(ROOM..ROOM + n).unwrap_or_default();
    if is_encapsulated(datagram) {
        // Only servers may send wrapped datagrams: a client sending one tries to
        // make the load balancer send for it to an address of its choosing.
        trace!(%client, "encapsulated datagram from a non-server dropped");
        return stats.spoofed();
    }
    let header = match parse(datagram) {
        Ok(header) => header,
        Err(err) => return stats.parse_error(err),
    };
    let routes = shared.routes.load();
    let Some(route) = routes.route(&header, client, local) else {
        return;
    };
    let encap = EncapHeader {
        client: canonical(client),
        lb: advertised,
    };
    let start = ROOM - encap.wire_len();
    let Some(wrapped) = buf.get_mut(start..ROOM + n) else {
        return stats.send_failed();
    };
    if encap.write(wrapped).is_err() {
        return stats.send_failed();
    }
    stats.routed(route.by);
    if send_now(socket, wrapped, for_socket(route.server, local)).is_err() {
        stats.send_failed();
    }
}

/// A datagram from a server: unwrapped and sent to the client it names.
fn from_server(
    datagram: &[u8],
    server: SocketAddr,
    socket: &UdpSocket,
    local: SocketAddr,
    shared: &Shared,
) {
    let stats = &shared.stats;
    if datagram.len() > MAX_DATAGRAM + MAX_ENCAP_HEADER {
        return stats.oversize();
    }
    let (header, payload) = match EncapHeader::decode(datagram) {
        Ok(decoded) => decoded,
        Err(err) => {
            trace!(%server, ?err, "datagram from a server without a valid header");
            return stats.bad_encapsulation();
        }
    };
    if payload.len() > MAX_DATAGRAM {
        return stats.oversize();
    }
    match send_now(socket, payload, for_socket(header.client, local)) {
        Ok(()) => stats.reply(),
        Err(_) => stats.send_failed(),
    }
}
