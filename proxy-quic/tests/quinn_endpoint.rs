//! A real quinn client and server on 127.0.0.1, the server issuing QUIC-LB connection
//! IDs from a `CidGenerator`. A UDP relay between them plays the load balancer: it
//! reads the destination connection ID of every client packet, and once the handshake
//! has given the client the server's connection IDs, each one must decode to the
//! server's ID.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_quic::{Decoded, Decoder, DecoderConfig, NonceSpace, QuicLbConfig, QuicLbServer};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig, TokioRuntime};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::UdpSocket;

/// The (long header?, destination connection ID) of every client packet.
type Seen = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

const KEY: &str = "8f95f09245765f80256934e50c66207f";

/// The destination connection ID of a client packet: a long header says its length,
/// a short header's is the server's length, `cid_len`.
fn dcid(packet: &[u8], cid_len: usize) -> Option<(bool, Vec<u8>)> {
    let first = *packet.first()?;
    if first & 0x80 != 0 {
        let len = usize::from(*packet.get(5)?);
        Some((true, packet.get(6..6 + len)?.to_vec()))
    } else {
        Some((false, packet.get(1..1 + cid_len)?.to_vec()))
    }
}

/// Relays datagrams between one client and `server`; records every client packet's
/// (long header?, destination connection ID).
async fn relay(server: SocketAddr, cid_len: usize, seen: Seen) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").await.expect("bind front");
    let back = UdpSocket::bind("127.0.0.1:0").await.expect("bind back");
    back.connect(server).await.expect("connect back");
    let addr = front.local_addr().expect("front addr");
    tokio::spawn(async move {
        let mut client = None;
        let (mut up, mut down) = ([0u8; 2048], [0u8; 2048]);
        loop {
            tokio::select! {
                r = front.recv_from(&mut up) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    if let Some(d) = dcid(&up[..n], cid_len) {
                        seen.lock().expect("lock").push(d);
                    }
                    let _ = back.send(&up[..n]).await;
                }
                r = back.recv(&mut down) => {
                    let Ok(n) = r else { return };
                    if let Some(to) = client {
                        let _ = front.send_to(&down[..n], to).await;
                    }
                }
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quinn_server_issues_routable_connection_ids() {
    tokio::time::timeout(Duration::from_secs(20), run())
        .await
        .expect("test timed out");
}

async fn run() {
    let server_config: QuicLbConfig = serde_json::from_str(&format!(
        r#"{{"config_id": 2, "server_id": "5e17", "nonce_length": 6, "cid_key": "{KEY}",
            "first_octet_encodes_cid_length": true}}"#
    ))
    .expect("server config");
    let lb_config: DecoderConfig = serde_json::from_str(&format!(
        r#"{{"configs": [{{"config_id": 2, "server_id_length": 2, "nonce_length": 6,
            "cid_key": "{KEY}", "first_octet_encodes_cid_length": true}}]}}"#
    ))
    .expect("lb config");
    let lb = Decoder::try_from(&lb_config).expect("decoder");
    let quic_lb = QuicLbServer::try_from(&server_config).expect("server");
    let cid_len = quic_lb.format().cid_len();
    let generator = quic_lb
        .generator(NonceSpace::new(0, 4).expect("space"))
        .expect("generator");

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let server_tls = ServerConfig::with_single_cert(vec![cert_der.clone()], key).expect("tls");
    let mut endpoint_config = EndpointConfig::default();
    endpoint_config.cid_generator(generator.into_quinn_factory());
    let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind server");
    let server = Endpoint::new(
        endpoint_config,
        Some(server_tls),
        socket,
        Arc::new(TokioRuntime),
    )
    .expect("server endpoint");
    let server_addr = server.local_addr().expect("server addr");

    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let Ok(data) = recv.read_to_end(1024).await else {
                        return;
                    };
                    let _ = send.write_all(&data).await;
                    let _ = send.finish();
                }
            });
        }
    });

    let seen = Arc::new(Mutex::new(Vec::new()));
    let front = relay(server_addr, cid_len, seen.clone()).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).expect("root");
    let client_config = ClientConfig::with_root_certificates(Arc::new(roots)).expect("client tls");
    let mut client = Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client.set_default_client_config(client_config);
    let conn = client
        .connect(front, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    for i in 0..4u8 {
        if i == 2 {
            // A new client address: the client moves on to a connection ID that the
            // server issued in a NEW_CONNECTION_ID frame.
            let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind client");
            client.rebind(socket).expect("rebind");
        }
        let (mut send, mut recv) = conn.open_bi().await.expect("open");
        send.write_all(&[b'p', i]).await.expect("write");
        send.finish().expect("finish");
        assert_eq!(recv.read_to_end(64).await.expect("read"), vec![b'p', i]);
    }
    conn.close(0u32.into(), b"done");
    client.wait_idle().await;

    let seen = seen.lock().expect("lock").clone();
    // The client's first Initial carries its own random connection ID; every packet
    // after the server's first answer carries one the server issued.
    let issued: Vec<_> = seen
        .iter()
        .skip_while(|(_, d)| d.len() != cid_len || lb.server_id(d).is_none())
        .collect();
    assert!(
        issued.iter().any(|(long, _)| !long),
        "no short header packet: {seen:?}"
    );
    for (long, d) in &issued {
        match lb.decode(d) {
            Decoded::Routable {
                config_id,
                server_id,
            } => {
                assert_eq!(config_id.get(), 2);
                assert_eq!(server_id, quic_lb.server_id(), "{d:02x?}");
            }
            other => panic!("client packet (long header: {long}) to {d:02x?}: {other:?}"),
        }
        assert_eq!(d[0] & 0x1f, (cid_len - 1) as u8);
    }
    let distinct: std::collections::HashSet<_> = issued.iter().map(|(_, d)| d).collect();
    assert!(
        distinct.len() >= 2,
        "the client never changed connection ID: {seen:?}"
    );
    let first_initial = &seen[0];
    assert!(first_initial.0, "the first client packet is an Initial");
}
