//! Properties of the forwarder's packet path (no sockets): the header parser and
//! the router never panic on any datagram and stay inside it; a packet whose
//! connection ID a server issued routes to that server in every mode, from a short
//! or a long header; everything else goes by the 4-tuple hash. The encapsulation
//! header of the `encapsulated` return path round-trips and never panics.

use std::net::SocketAddr;
use std::sync::OnceLock;

use proptest::prelude::*;
use proxy_quic::lb::{
    is_encapsulated, parse, EncapHeader, Header, RouteBy, Routes, MAX_ENCAP_HEADER,
    MIN_ENCAP_HEADER,
};
use proxy_quic::{CidFormat, CidKey, ConfigId, Decoder, Nonce, ServerId};

/// Routes over 8 servers under `formats()[mode]`, built once (a Maglev table of
/// 65537 slots is slow to build in a debug build).
fn routes(mode: usize) -> &'static Routes {
    static ROUTES: OnceLock<Vec<Routes>> = OnceLock::new();
    &ROUTES.get_or_init(|| formats().iter().map(build_routes).collect())[mode]
}

/// Routes over 8 servers with 3-octet IDs under one format.
fn build_routes(format: &CidFormat) -> Routes {
    let mut decoder = Decoder::new();
    decoder.insert(format.clone());
    let servers = (1..=8u8).map(|i| {
        (
            ServerId::new(&[0xc0, 0xde, i]).expect("id"),
            SocketAddr::from(([10, 0, 0, i], 4433)),
        )
    });
    Routes::new(decoder, servers).expect("routes")
}

/// Plaintext, single pass (3 + 13 = 16 octets), four pass.
fn formats() -> [CidFormat; 3] {
    let key = CidKey::new([0x42; 16]);
    let id = ConfigId::new(2).expect("id");
    [
        CidFormat::new(id, 3, 5, None, true).expect("plaintext"),
        CidFormat::new(id, 3, 13, Some(&key), false).expect("single pass"),
        CidFormat::new(id, 3, 7, Some(&key), true).expect("four pass"),
    ]
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)))
}

proptest! {
    #[test]
    fn parse_and_route_never_panic(
        datagram in prop::collection::vec(any::<u8>(), 0..1400),
        first in any::<u8>(),
        client in addr(),
        local in addr(),
    ) {
        let mut datagram = datagram;
        if let Some(b) = datagram.first_mut() {
            *b = first;
        }
        let routes = routes(2);
        if let Ok(header) = parse(&datagram) {
            let range = datagram.as_ptr_range();
            let dcid = header.dcid().as_ptr_range();
            prop_assert!(range.start <= dcid.start && dcid.end <= range.end);
            if let Header::Long { dcid, .. } = header {
                prop_assert_eq!(dcid.len(), usize::from(datagram[5]));
            }
            let route = routes.route(&header, client, local);
            prop_assert!(route.is_some());
        }
    }

    #[test]
    fn issued_connection_ids_route_to_their_server(
        mode in 0usize..3,
        server in 1u8..=8,
        nonce in any::<[u8; 13]>(),
        long in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 20..60),
        client in addr(),
    ) {
        let format = &formats()[mode];
        let routes = routes(mode);
        let sid = ServerId::new(&[0xc0, 0xde, server]).expect("id");
        let nonce = Nonce::new(&nonce[..format.nonce_len()]).expect("nonce");
        let cid = format.encode(&sid, &nonce, 0x1f).expect("cid");
        let mut packet = if long {
            // A Handshake packet: DCID the server's, SCID the client's.
            let mut p = vec![0xe0, 0, 0, 0, 1, cid.len() as u8];
            p.extend_from_slice(cid.as_bytes());
            p.extend_from_slice(&[8, 1, 2, 3, 4, 5, 6, 7, 8]);
            p
        } else {
            let mut p = vec![0x40];
            p.extend_from_slice(cid.as_bytes());
            p
        };
        packet.extend_from_slice(&tail);
        let local = "203.0.113.1:443".parse().expect("addr");
        let route = routes.route(&parse(&packet).expect("parse"), client, local).expect("route");
        prop_assert_eq!(route.by, RouteBy::Cid);
        prop_assert_eq!(route.server_id, sid);
        prop_assert_eq!(route.server, SocketAddr::from(([10, 0, 0, server], 4433)));
    }

    #[test]
    fn unroutable_ids_go_by_the_tuple_hash(
        first in 0xe0u8..=0xff,
        rest in prop::collection::vec(any::<u8>(), 30..60),
        client in addr(),
    ) {
        // Config rotation bits 0b111: the unroutable codepoint.
        let mut packet = vec![0x40, first];
        packet.extend_from_slice(&rest);
        let routes = routes(0);
        let local = "203.0.113.1:443".parse().expect("addr");
        let route = routes.route(&parse(&packet).expect("parse"), client, local).expect("route");
        prop_assert!(matches!(route.by, RouteBy::Hash(_)));
        prop_assert_eq!(Some(route.server_id), routes.hash_route(client, local));
    }
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        addr(),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

proptest! {
    /// The encapsulation header: decode of encode is the identity for every
    /// address family and with or without the load balancer's address, and the
    /// datagram after it comes back unchanged.
    #[test]
    fn encap_header_round_trips(
        client in any_addr(),
        lb in prop::option::of(any_addr()),
        payload in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let header = EncapHeader { client, lb };
        let mut wire = vec![0u8; MAX_ENCAP_HEADER];
        let n = header.write(&mut wire).expect("fits");
        prop_assert_eq!(n, header.wire_len());
        prop_assert!((MIN_ENCAP_HEADER..=MAX_ENCAP_HEADER).contains(&n));
        wire.truncate(n);
        prop_assert!(is_encapsulated(&wire));
        wire.extend_from_slice(&payload);
        prop_assert_eq!(EncapHeader::decode(&wire), Ok((header, &payload[..])));
        // Every prefix short of the payload is refused, never a panic.
        for cut in 0..=n {
            prop_assert!(EncapHeader::decode(&wire[..cut]).is_err());
        }
    }

    /// Decoding arbitrary bytes never panics; what decodes re-encodes to the same
    /// header bytes, and the rest is a suffix of the input.
    #[test]
    fn encap_decode_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..80),
        magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 5 {
            bytes[..5].copy_from_slice(&[0xd1, 0, 0, 0, 0]);
        }
        if let Ok((header, rest)) = EncapHeader::decode(&bytes) {
            let n = bytes.len() - rest.len();
            prop_assert_eq!(n, header.wire_len());
            let mut again = vec![0u8; n];
            header.write(&mut again).expect("fits");
            prop_assert_eq!(&again[..], &bytes[..n]);
            prop_assert!(!rest.is_empty());
        }
    }
}
