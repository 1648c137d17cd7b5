//! The forwarder's `encapsulated` return path on real sockets (127.0.0.1): quinn
//! servers on `behind_load_balancer` sockets behind it, quinn clients in front.
//!
//! - each connection's streams are echoed by the server its 4-tuple hashes to, and
//!   the server sees the client's real address (its `remote_address()` is the
//!   client socket's local address);
//! - a client rebinds to a new port (one that hashes to the other server): the
//!   same server, on the same connection, now sees the new address;
//! - a client talking to a server directly still works (direct clients pass);
//! - a stateless reset from a restarted server reaches the client;
//! - on the wire (plain UDP peers): the header the server receives byte for byte,
//!   the reply unwrapped to the client from the forwarder's address, a wrapped
//!   datagram from a non-server and an unwrapped one from a server dropped and
//!   counted;
//! - on a server's socket, a wrapped datagram from a stranger is not unwrapped,
//!   and with direct clients off a direct client gets no handshake.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use proxy_core::metrics::RenderMetrics;
use proxy_quic::lb::{
    BehindLb, EncapHeader, EncapsulatedSocket, Forwarder, ForwarderBuilder, ReturnPath, Routes,
};
use proxy_quic::{
    CidFormatConfig, Decoder, DecoderConfig, NonceSpace, QuicLbConfig, QuicLbServer, ServerId,
};
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TokioRuntime};
use quinn_proto::crypto::{CryptoError, HmacKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::UdpSocket;

const KEY: &str = "8f95f09245765f80256934e50c66207f";

fn format() -> CidFormatConfig {
    serde_json::from_str(&format!(
        r#"{{"config_id": 0, "server_id_length": 2, "nonce_length": 6, "cid_key": "{KEY}",
            "first_octet_encodes_cid_length": true}}"#
    ))
    .expect("format config")
}

fn routes(servers: &[(ServerId, SocketAddr)]) -> Routes {
    let decoder = Decoder::try_from(&DecoderConfig {
        configs: vec![format()],
    })
    .expect("decoder");
    Routes::new(decoder, servers.iter().copied()).expect("routes")
}

fn id(hex: &str) -> ServerId {
    ServerId::from_hex(hex).expect("server id")
}

/// A stateless reset key shared by a server and its restarted self (a toy MAC).
struct ResetKey(u64);

impl HmacKey for ResetKey {
    fn sign(&self, data: &[u8], out: &mut [u8]) {
        let mut h = self.0;
        for (i, o) in out.iter_mut().enumerate() {
            for &b in data {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            h ^= i as u64;
            *o = (h >> 24) as u8;
        }
    }
    fn signature_len(&self) -> usize {
        16
    }
    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let mut expected = [0u8; 16];
        self.sign(data, &mut expected);
        if expected[..] == *signature {
            Ok(())
        } else {
            Err(CryptoError)
        }
    }
}

struct Tls {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Tls {
    fn new() -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        Self {
            cert: CertificateDer::from(cert.cert.der().to_vec()),
            key: PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).expect("root");
        ClientConfig::with_root_certificates(Arc::new(roots)).expect("client tls")
    }
}

/// A quinn server on `socket` behind the load balancer at `lb`, with QUIC-LB
/// connection IDs of `server_id`, answering each stream with `NAME|PEER|DATA`,
/// PEER being the address it sees the client at.
fn server(
    tls: &Tls,
    name: &'static str,
    server_id: &str,
    part: u32,
    socket: StdUdpSocket,
    lb: SocketAddr,
) -> (Endpoint, Arc<EncapsulatedSocket>) {
    let config: QuicLbConfig = serde_json::from_str(&format!(
        r#"{{"config_id": 0, "server_id": "{server_id}", "nonce_length": 6, "cid_key": "{KEY}",
            "first_octet_encodes_cid_length": true}}"#
    ))
    .expect("server config");
    let generator = QuicLbServer::try_from(&config)
        .expect("server")
        .generator(NonceSpace::new(part, 2).expect("space"))
        .expect("generator");
    let mut endpoint_config = EndpointConfig::new(Arc::new(ResetKey(0x5eed)));
    endpoint_config.cid_generator(generator.into_quinn_factory());
    let key = PrivateKeyDer::Pkcs8(tls.key.clone_key());
    let server_tls = ServerConfig::with_single_cert(vec![tls.cert.clone()], key).expect("tls");
    let wrapped = BehindLb::new([lb]).wrap(socket).expect("wrap");
    let endpoint = Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(server_tls),
        wrapped.clone(),
        Arc::new(TokioRuntime),
    )
    .expect("server endpoint");
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let Ok(data) = recv.read_to_end(1024).await else {
                        return;
                    };
                    let mut reply = format!("{name}|{}|", conn.remote_address()).into_bytes();
                    reply.extend_from_slice(&data);
                    let _ = send.write_all(&reply).await;
                    let _ = send.finish();
                }
            });
        }
    });
    (endpoint, wrapped)
}

fn bind() -> StdUdpSocket {
    StdUdpSocket::bind("127.0.0.1:0").expect("bind")
}

/// A client socket whose 4-tuple toward `lb` hashes to `target`.
fn socket_hashing_to(routes: &Routes, lb: SocketAddr, target: ServerId) -> StdUdpSocket {
    for _ in 0..200 {
        let socket = bind();
        let local = socket.local_addr().expect("client addr");
        if routes.hash_route(local, lb) == Some(target) {
            return socket;
        }
    }
    panic!("no client port hashes to {target}");
}

fn client(socket: StdUdpSocket, tls: &Tls) -> Endpoint {
    let mut endpoint = Endpoint::new(
        EndpointConfig::default(),
        None,
        socket,
        Arc::new(TokioRuntime),
    )
    .expect("client endpoint");
    endpoint.set_default_client_config(tls.client());
    endpoint
}

async fn connect(endpoint: &Endpoint, to: SocketAddr) -> Connection {
    endpoint
        .connect(to, "localhost")
        .expect("connect")
        .await
        .expect("handshake")
}

/// Sends `data` on a new stream; returns (server name, peer address it saw).
async fn echo(conn: &Connection, data: &str) -> Result<(String, String), quinn::ConnectionError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(data.as_bytes()).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => e,
        other => panic!("write: {other}"),
    })?;
    let _ = send.finish();
    let reply = recv.read_to_end(1024).await.map_err(|e| match e {
        quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e)) => e,
        other => panic!("read: {other}"),
    })?;
    let reply = String::from_utf8(reply).expect("utf-8");
    let mut parts = reply.splitn(3, '|');
    let (name, peer, echoed) = (parts.next(), parts.next(), parts.next());
    assert_eq!(echoed, Some(data), "{reply}");
    Ok((
        name.unwrap_or_default().into(),
        peer.unwrap_or_default().into(),
    ))
}

async fn encapsulated_lb(routes: Routes) -> Forwarder {
    ForwarderBuilder::new(routes)
        .return_path(ReturnPath::Encapsulated)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("forwarder")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_see_the_client_through_migration() {
    tokio::time::timeout(Duration::from_secs(30), migration())
        .await
        .expect("test timed out");
}

async fn migration() {
    let tls = Tls::new();
    let (a, b) = (id("0a01"), id("0a02"));
    let (socket_a, socket_b) = (bind(), bind());
    let addr_a = socket_a.local_addr().expect("addr");
    let two = routes(&[(a, addr_a), (b, socket_b.local_addr().expect("addr"))]);
    let lb = encapsulated_lb(two.clone()).await;
    let lb_addr = lb.local_addr();
    let (_sa, wrap_a) = server(&tls, "A", "0a01", 0, socket_a, lb_addr);
    let (_sb, wrap_b) = server(&tls, "B", "0a02", 0, socket_b, lb_addr);

    let client_a = client(socket_hashing_to(&two, lb_addr, a), &tls);
    let client_b = client(socket_hashing_to(&two, lb_addr, b), &tls);
    let conn_a = connect(&client_a, lb_addr).await;
    let conn_b = connect(&client_b, lb_addr).await;
    let local_a = client_a.local_addr().expect("addr").to_string();
    assert_eq!(
        echo(&conn_a, "one").await.expect("echo"),
        ("A".into(), local_a)
    );
    let local_b = client_b.local_addr().expect("addr").to_string();
    assert_eq!(
        echo(&conn_b, "two").await.expect("echo"),
        ("B".into(), local_b)
    );
    let before = lb.stats().snapshot();
    assert!(
        before.routed_by_cid > 0 && before.routed_by_hash > 0,
        "{before:?}"
    );
    assert_eq!(before.flows_opened, 0, "one socket, no flows");

    // Client A moves to a port that hashes to B: its connection ID keeps it on A,
    // which sees the new address on the same connection.
    client_a
        .rebind(socket_hashing_to(&two, lb_addr, b))
        .expect("rebind");
    let moved = client_a.local_addr().expect("addr").to_string();
    let (name, peer) = echo(&conn_a, "three").await.expect("echo after rebind");
    assert_eq!((name.as_str(), peer), ("A", moved.clone()));
    assert_eq!(conn_a.remote_address(), lb_addr);
    assert!(conn_a.close_reason().is_none());
    assert_eq!(echo(&conn_a, "four").await.expect("echo").1, moved);

    // A client that talks to server A directly is served as before.
    let direct = client(bind(), &tls);
    let conn_direct = connect(&direct, addr_a).await;
    let local_direct = direct.local_addr().expect("addr").to_string();
    assert_eq!(
        echo(&conn_direct, "five").await.expect("echo"),
        ("A".into(), local_direct)
    );

    let after = lb.stats().snapshot();
    assert_eq!(after.dropped_total(), 0, "{after:?}");
    assert_eq!(after.dropped_bad_encapsulation, 0, "{after:?}");
    assert!(after.replies > 0);
    let (sa, sb) = (wrap_a.stats(), wrap_b.stats());
    assert!(
        sa.unwrapped > 0 && sa.wrapped > 0 && sa.direct > 0,
        "{sa:?}"
    );
    assert!(
        sb.unwrapped > 0 && sb.wrapped > 0 && sb.direct == 0,
        "{sb:?}"
    );
    assert_eq!(sa.dropped_bad_header + sb.dropped_bad_header, 0);
    for conn in [&conn_a, &conn_b, &conn_direct] {
        conn.close(0u32.into(), b"done");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_reset_reaches_the_client() {
    tokio::time::timeout(Duration::from_secs(30), reset())
        .await
        .expect("test timed out");
}

async fn reset() {
    let tls = Tls::new();
    let a = id("0a01");
    let socket_old = bind();
    let lb = encapsulated_lb(routes(&[(a, socket_old.local_addr().expect("addr"))])).await;
    let (_old, _) = server(&tls, "A", "0a01", 0, socket_old, lb.local_addr());
    let endpoint = client(bind(), &tls);
    let conn = connect(&endpoint, lb.local_addr()).await;
    assert_eq!(echo(&conn, "hello").await.expect("echo").0, "A");

    // Server A restarts at another address with the same ID and reset key and no
    // state: its stateless reset goes back wrapped, through the forwarder.
    // (The client may still send an ACK after its echo: count replies from before
    // the restart, so that a reset answering it counts too.)
    let socket_new = bind();
    let replies = lb.stats().snapshot().replies;
    lb.update(routes(&[(a, socket_new.local_addr().expect("addr"))]));
    let (_new, wrap_new) = server(&tls, "A2", "0a01", 1, socket_new, lb.local_addr());
    let err = echo(&conn, "again").await.expect_err("reset");
    assert_eq!(err, quinn::ConnectionError::Reset);
    // The server and the forwarder count a datagram after sending it: the client
    // may see the reset first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while wrap_new.stats().wrapped == 0 || lb.stats().snapshot().replies <= replies {
        assert!(tokio::time::Instant::now() < deadline, "no reset counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_wire_and_what_is_dropped() {
    tokio::time::timeout(Duration::from_secs(10), wire())
        .await
        .expect("test timed out");
}

async fn wire() {
    let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let lb = encapsulated_lb(routes(&[(id("0a01"), server.local_addr().expect("addr"))])).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let client_addr = client.local_addr().expect("addr");
    let mut buf = [0u8; 4096];

    // A short-header packet: the server gets the header, then the packet unchanged.
    let mut packet = vec![0x40];
    packet.resize(40, 0x33);
    client
        .send_to(&packet, lb.local_addr())
        .await
        .expect("send");
    let (n, from) = server.recv_from(&mut buf).await.expect("recv");
    assert_eq!(from, lb.local_addr(), "one socket both ways");
    let header = EncapHeader {
        client: client_addr,
        lb: Some(lb.local_addr()),
    };
    let mut want = vec![0xd1, 0, 0, 0, 0, 0x02, 127, 0, 0, 1];
    want.extend(client_addr.port().to_be_bytes());
    want.extend([127, 0, 0, 1]);
    want.extend(lb.local_addr().port().to_be_bytes());
    want.extend(&packet);
    assert_eq!(&buf[..n], &want[..]);
    assert_eq!(EncapHeader::decode(&buf[..n]), Ok((header, &packet[..])));

    // The server answers wrapped: the client gets the datagram alone, from the LB.
    let reply = wrap(client_addr, b"answer");
    server.send_to(&reply, lb.local_addr()).await.expect("send");
    let (n, from) = client.recv_from(&mut buf).await.expect("recv");
    assert_eq!((&buf[..n], from), (&b"answer"[..], lb.local_addr()));

    // A stranger sends a wrapped datagram naming a victim: dropped, counted, and
    // the victim gets nothing. A server's unwrapped datagram: dropped, counted.
    let victim = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let spoof = wrap(victim.local_addr().expect("addr"), b"flood");
    stranger
        .send_to(&spoof, lb.local_addr())
        .await
        .expect("send");
    server
        .send_to(b"bare", lb.local_addr())
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = lb.stats().snapshot();
        if s.dropped_spoofed == 1 && s.dropped_bad_encapsulation == 1 {
            assert_eq!(
                (s.replies, s.routed_by_hash + s.routed_by_cid),
                (1, 1),
                "{s:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = tokio::time::timeout(Duration::from_millis(200), victim.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the victim received {got:?}");
}

fn wrap(client: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let header = EncapHeader { client, lb: None };
    let mut out = vec![0; header.wire_len()];
    header.write(&mut out).expect("header");
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_load_balancers_deliver_wrapped_datagrams() {
    tokio::time::timeout(Duration::from_secs(10), server_rules())
        .await
        .expect("test timed out");
}

/// The server's socket: a wrapped datagram from a stranger is not unwrapped (the
/// stranger cannot claim another address); with direct clients off, a direct
/// QUIC client gets no handshake and its datagrams are counted as dropped.
async fn server_rules() {
    let tls = Tls::new();
    let lb: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let (open_endpoint, open) = server(&tls, "open", "0a01", 0, bind(), lb);
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let victim: SocketAddr = "192.0.2.77:443".parse().expect("addr");
    let open_addr = open_endpoint.local_addr().expect("addr");
    stranger
        .send_to(&wrap(victim, &[0x40; 40]), open_addr)
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open.stats().direct == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", open.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!((open.stats().unwrapped, open.stats().wrapped), (0, 0));

    let socket = bind();
    let closed_addr = socket.local_addr().expect("addr");
    let closed = BehindLb::new([lb])
        .direct_clients(false)
        .wrap(socket)
        .expect("wrap");
    let key = PrivateKeyDer::Pkcs8(tls.key.clone_key());
    let server_tls = ServerConfig::with_single_cert(vec![tls.cert.clone()], key).expect("tls");
    let _closed_endpoint = Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        Some(server_tls),
        closed.clone(),
        Arc::new(TokioRuntime),
    )
    .expect("endpoint");
    let direct = client(bind(), &tls);
    let connecting = direct.connect(closed_addr, "localhost").expect("connect");
    let attempt = tokio::time::timeout(Duration::from_millis(500), connecting).await;
    assert!(attempt.is_err(), "a direct client got through: {attempt:?}");
    let s = closed.stats();
    assert!(
        s.dropped_direct > 0 && s.direct == 0 && s.wrapped == 0,
        "{s:?}"
    );
    // The client may still be retransmitting its Initial: the page shows a count
    // between the ones read just before and just after it was rendered.
    let before = closed.stats().dropped_direct;
    let mut page = String::new();
    closed.metrics("closed").render(&mut page);
    let after = closed.stats().dropped_direct;
    let series = r#"proxy_quic_lb_encap_dropped_total{listener="closed",reason="direct"} "#;
    let shown: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in\n{page}"));
    assert!(
        (before..=after).contains(&shown),
        "{before}..={after}: {page}"
    );
}
