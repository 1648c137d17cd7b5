//! [`extract`] over real sockets: a tokio-rustls client keeps one TCP connection and
//! one TLS session while the server side is extracted, its socket passed on as a
//! file descriptor and the session continued; TLS 1.2 is refused and served on.

use std::{os::fd::OwnedFd, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{extract, ExtractError, Refusal, TlsHandover};
use crate::continued::RecordBoundary;

struct Setup {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn setup(versions: &[&'static rustls::SupportedProtocolVersion]) -> Setup {
    let pki = proxy_test_support::pki::Pki::new("handover");
    let leaf = pki.server("server", &["a.test"]);
    let client_leaf = pki.client("client", "client-1", &["spiffe://test/client-1"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_cert_der()))
        .expect("root");
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .expect("client verifier");
    let pem_certs = |pem: &str| vec![CertificateDer::from_pem_slice(pem.as_bytes()).expect("cert")];
    let pem_key = |pem: &str| PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("key");
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem_certs(&leaf.cert_pem), pem_key(&leaf.key_pem))
        .expect("server config");
    server.enable_secret_extraction = true;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            pem_certs(&client_leaf.cert_pem),
            pem_key(&client_leaf.key_pem),
        )
        .expect("client config");
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Setup {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// Connects a client, and accepts it through a [`RecordBoundary`].
async fn connect(
    setup: &Setup,
) -> (
    tokio_rustls::client::TlsStream<TcpStream>,
    tokio_rustls::server::TlsStream<RecordBoundary<TcpStream>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connector = tokio_rustls::TlsConnector::from(setup.client.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(setup.server.clone());
    let client = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("a.test").expect("name");
        connector
            .connect(name, tcp)
            .await
            .expect("client handshake")
    };
    let server = async {
        let (tcp, _) = listener.accept().await.expect("accept");
        acceptor
            .accept(RecordBoundary::new(tcp))
            .await
            .expect("server handshake")
    };
    tokio::join!(client, server)
}

/// One request and its response over the client's session and `server`.
async fn round_trip<S>(
    client: &mut tokio_rustls::client::TlsStream<TcpStream>,
    server: &mut S,
    n: u8,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET /{n} HTTP/1.1\r\n\r\n");
    client.write_all(request.as_bytes()).await.expect("send");
    let mut got = vec![0u8; request.len()];
    server.read_exact(&mut got).await.expect("server read");
    assert_eq!(got, request.as_bytes());
    let response = format!("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{n}");
    server.write_all(response.as_bytes()).await.expect("reply");
    server.flush().await.expect("flush");
    let mut got = vec![0u8; response.len()];
    client.read_exact(&mut got).await.expect("client read");
    assert_eq!(got, response.as_bytes());
}

/// The transport as the new process gets it: a file descriptor.
fn pass_socket(tcp: TcpStream) -> TcpStream {
    let fd: OwnedFd = tcp.into_std().expect("into_std").into();
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true).expect("nonblocking");
    TcpStream::from_std(std).expect("from_std")
}

#[tokio::test]
async fn a_tls13_session_goes_on_over_the_same_connection_twice() {
    let setup = setup(&[&rustls::version::TLS13]);
    let (mut client, mut server) = connect(&setup).await;
    round_trip(&mut client, &mut server, 1).await;

    let Ok((tcp, handover)) = extract(server) else {
        panic!("an idle TLS 1.3 session is refused");
    };
    let encoded = handover.encode();
    drop(handover);
    let handover = TlsHandover::decode(&encoded).expect("decode");
    let negotiated = handover.negotiated();
    assert_eq!(negotiated.sni.as_deref(), Some("a.test"));
    assert_eq!(negotiated.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(negotiated.version, "TLSv1.3");
    let peer = negotiated.peer.expect("client identity");
    assert_eq!(peer.subject.as_deref(), Some("CN=client-1"));
    assert_eq!(peer.uri_sans, ["spiffe://test/client-1"]);
    let mut continued = handover.continue_on(pass_socket(tcp)).expect("continue");
    for n in 2..5 {
        round_trip(&mut client, &mut continued, n).await;
    }

    // The second upgrade: the client's next request is already in flight, part of
    // it read by the second owner, and goes to the third with the session.
    client
        .write_all(b"GET /5 HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    client.flush().await.expect("flush");
    let (seq_tx, seq_rx) = continued.sequence_numbers();
    assert!(seq_tx >= 3 && seq_rx >= 3, "{seq_tx} {seq_rx}");
    let Ok((tcp, handover)) = continued.into_handover() else {
        panic!("an idle continued session is refused");
    };
    let handover = TlsHandover::decode(&handover.encode()).expect("decode");
    assert_eq!(handover.secrets().tx().seq(), seq_tx);
    assert_eq!(handover.negotiated().sni.as_deref(), Some("a.test"));
    let mut third = handover.continue_on(pass_socket(tcp)).expect("continue");
    let mut got = [0u8; 19];
    third.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"GET /5 HTTP/1.1\r\n\r\n");
    third
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .expect("reply");
    third.flush().await.expect("flush");
    let mut got = [0u8; 27];
    client.read_exact(&mut got).await.expect("client read");
    assert_eq!(&got, b"HTTP/1.1 204 No Content\r\n\r\n");
    round_trip(&mut client, &mut third, 6).await;
    third.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).await.expect("clean end"), 0);
}

#[tokio::test]
async fn tls12_is_refused_and_served_on() {
    let setup = setup(&[&rustls::version::TLS12]);
    let (mut client, server) = connect(&setup).await;
    let mut server = match extract(server) {
        Err(ExtractError::Refused(stream, Refusal::NotTls13)) => *stream,
        Err(other) => panic!("refused for another reason: {other:?}"),
        Ok(_) => panic!("a TLS 1.2 session was extracted"),
    };
    round_trip(&mut client, &mut server, 1).await;
}

#[tokio::test]
async fn unread_plaintext_is_refused() {
    let setup = setup(&[&rustls::version::TLS13]);
    let (mut client, mut server) = connect(&setup).await;
    client.write_all(b"early").await.expect("send");
    let mut one = [0u8; 1];
    server.read_exact(&mut one).await.expect("read");
    let mut server = match extract(server) {
        Err(ExtractError::Refused(stream, Refusal::BufferedPlaintext)) => *stream,
        Err(other) => panic!("refused for another reason: {other:?}"),
        Ok(_) => panic!("a session with unread plaintext was extracted"),
    };
    let mut rest = [0u8; 4];
    server.read_exact(&mut rest).await.expect("read on");
    assert_eq!(&rest, b"arly");
}

#[test]
fn malformed_handovers_are_refused() {
    for bad in [
        &b""[..],
        &[2],
        &[1, 0],
        &[1, 1, 0, 0, 0, 9, 1],
        &[1, 7],
        &[1, 1, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(TlsHandover::decode(bad).is_err(), "{bad:?}");
    }
}
