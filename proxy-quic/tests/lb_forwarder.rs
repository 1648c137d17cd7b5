//! The QUIC-LB forwarder on real sockets (127.0.0.1): quinn servers issuing QUIC-LB
//! connection IDs behind it, quinn clients in front.
//!
//! - two servers; each client socket is chosen so that its 4-tuple hashes to a known
//!   server, and each connection's streams are echoed by that server;
//! - a client rebinds its socket to one whose 4-tuple hashes to the *other* server:
//!   its next stream is still served by its server, on the same connection (the
//!   server sees a new peer address: it migrated the path);
//! - a third server is added: established connections stay, a new 4-tuple that
//!   hashes to it lands on it;
//! - a stateless reset from a server reaches the client through the forwarder.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use proxy_quic::lb::{Forwarder, ForwarderBuilder, Routes};
use proxy_quic::{
    CidFormatConfig, Decoder, DecoderConfig, NonceSpace, QuicLbConfig, QuicLbServer, ServerId,
};
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TokioRuntime};
use quinn_proto::crypto::{CryptoError, HmacKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const KEY: &str = "8f95f09245765f80256934e50c66207f";

/// The load balancer's view of the servers' config: config 0, 2-octet server IDs,
/// 6-octet nonces (four-pass), the length self-encoded.
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

/// A stateless reset key shared by a server and its restarted self (a toy MAC:
/// tests only).
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

/// A quinn server with QUIC-LB connection IDs of `server_id` (nonce space `part`
/// of 2) that answers each stream with `NAME|PEER|DATA`, PEER being the address it
/// sees the client at.
fn server(tls: &Tls, name: &'static str, server_id: &str, part: u32) -> (Endpoint, SocketAddr) {
    let config: QuicLbConfig = serde_json::from_str(&format!(
        r#"{{"config_id": 0, "server_id": "{server_id}", "nonce_length": 6, "cid_key": "{KEY}",
            "first_octet_encodes_cid_length": true}}"#
    ))
    .expect("server config");
    let quic_lb = QuicLbServer::try_from(&config).expect("server");
    let generator = quic_lb
        .generator(NonceSpace::new(part, 2).expect("space"))
        .expect("generator");
    let mut endpoint_config = EndpointConfig::new(Arc::new(ResetKey(0x5eed)));
    endpoint_config.cid_generator(generator.into_quinn_factory());
    let key = PrivateKeyDer::Pkcs8(tls.key.clone_key());
    let server_tls = ServerConfig::with_single_cert(vec![tls.cert.clone()], key).expect("tls");
    let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind server");
    let endpoint = Endpoint::new(
        endpoint_config,
        Some(server_tls),
        socket,
        Arc::new(TokioRuntime),
    )
    .expect("server endpoint");
    let addr = endpoint.local_addr().expect("server addr");
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
    (endpoint, addr)
}

/// A client socket on 127.0.0.1 whose 4-tuple toward `lb` hashes to `target`.
fn socket_hashing_to(routes: &Routes, lb: SocketAddr, target: ServerId) -> StdUdpSocket {
    for _ in 0..200 {
        let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind client");
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

async fn connect(endpoint: &Endpoint, lb: &Forwarder) -> Connection {
    endpoint
        .connect(lb.local_addr(), "localhost")
        .expect("connect")
        .await
        .expect("handshake through the forwarder")
}

/// Sends `data` on a new stream; returns (server name, the peer address the server
/// saw).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_cid_through_migration_and_a_new_server() {
    tokio::time::timeout(Duration::from_secs(30), migration())
        .await
        .expect("test timed out");
}

async fn migration() {
    let tls = Tls::new();
    let (a, b, c) = (
        ServerId::from_hex("0a01").expect("id"),
        ServerId::from_hex("0a02").expect("id"),
        ServerId::from_hex("0a03").expect("id"),
    );
    let (_sa, addr_a) = server(&tls, "A", "0a01", 0);
    let (_sb, addr_b) = server(&tls, "B", "0a02", 0);
    let two = routes(&[(a, addr_a), (b, addr_b)]);
    let lb = ForwarderBuilder::new(two.clone())
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("forwarder");
    let lb_addr = lb.local_addr();

    // Two clients whose 4-tuples hash to A and to B: the handshake goes by hash,
    // the rest by connection ID, all to the same server.
    let client_a = client(socket_hashing_to(&two, lb_addr, a), &tls);
    let client_b = client(socket_hashing_to(&two, lb_addr, b), &tls);
    let conn_a = connect(&client_a, &lb).await;
    let conn_b = connect(&client_b, &lb).await;
    let (name, peer_a) = echo(&conn_a, "one").await.expect("echo");
    assert_eq!(name, "A");
    assert_eq!(echo(&conn_b, "two").await.expect("echo").0, "B");
    // Per-flow sockets: the server sees the forwarder's flow socket, not the client.
    assert_ne!(peer_a, client_a.local_addr().expect("addr").to_string());
    let before = lb.stats().snapshot();
    assert!(before.routed_by_cid > 0, "{before:?}");
    assert!(before.routed_by_hash > 0, "{before:?}");
    assert_eq!(before.flows_opened, 2);

    // Client A moves to a port whose 4-tuple hashes to B: the connection ID keeps
    // it on A, on the same connection; A validates the new path.
    let moved = socket_hashing_to(&two, lb_addr, b);
    client_a.rebind(moved).expect("rebind");
    let (name, peer_after) = echo(&conn_a, "three").await.expect("echo after rebind");
    assert_eq!(name, "A", "migration moved the connection");
    assert_ne!(peer_after, peer_a, "the server saw no new path");
    assert_eq!(lb.stats().snapshot().flows_opened, 3);
    assert!(conn_a.close_reason().is_none());

    // A third server: established connections stay; a 4-tuple that now hashes to
    // C starts there.
    let (_sc, addr_c) = server(&tls, "C", "0a03", 0);
    let three = routes(&[(a, addr_a), (b, addr_b), (c, addr_c)]);
    lb.update(three.clone());
    assert_eq!(echo(&conn_a, "four").await.expect("echo").0, "A");
    assert_eq!(echo(&conn_b, "five").await.expect("echo").0, "B");
    let client_c = client(socket_hashing_to(&three, lb_addr, c), &tls);
    let conn_c = connect(&client_c, &lb).await;
    assert_eq!(echo(&conn_c, "six").await.expect("echo").0, "C");

    let after = lb.stats().snapshot();
    assert_eq!(after.dropped_total(), 0, "{after:?}");
    assert!(after.replies > 0);
    for conn in [&conn_a, &conn_b, &conn_c] {
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
    let a = ServerId::from_hex("0a01").expect("id");
    let (_old, addr_old) = server(&tls, "A", "0a01", 0);
    let lb = ForwarderBuilder::new(routes(&[(a, addr_old)]))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("forwarder");
    let endpoint = client(StdUdpSocket::bind("127.0.0.1:0").expect("bind"), &tls);
    let conn = connect(&endpoint, &lb).await;
    assert_eq!(echo(&conn, "hello").await.expect("echo").0, "A");

    // Server A "restarts" at another address with the same server ID and reset key
    // and no state: it answers the connection's next packet with a stateless reset,
    // which the forwarder passes back to the client.
    let (_new, addr_new) = server(&tls, "A2", "0a01", 1);
    lb.update(routes(&[(a, addr_new)]));
    let replies = lb.stats().snapshot().replies;
    let err = echo(&conn, "again")
        .await
        .expect_err("the connection was reset");
    assert_eq!(err, quinn::ConnectionError::Reset);
    // The relay task counts a reply after sending it: the client may see the reset
    // first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lb.stats().snapshot().replies <= replies {
        assert!(tokio::time::Instant::now() < deadline, "no reply counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
