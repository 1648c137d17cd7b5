//! The continued record layer against rustls itself: a rustls client and server
//! complete a handshake in memory, the server's secrets are extracted mid-session, and
//! the client goes on talking to a [`ContinuedTlsStream`] over a tokio duplex pipe.

use std::{io::Read, io::Write, sync::Arc};

use rustls::{
    crypto::ring::{cipher_suite, default_provider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    SupportedCipherSuite,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{ContinuedSecrets, ContinuedTlsStream, SecretsError};

const SUITES: [SupportedCipherSuite; 3] = [
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

fn configs(suite: SupportedCipherSuite) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let pki = proxy_test_support::pki::Pki::new("continued");
    let leaf = pki.server("server", &["a.test"]);
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    });
    let certs = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    server.enable_secret_extraction = true;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_cert_der()))
        .expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(client), Arc::new(server))
}

/// Moves every pending TLS byte from `from` to `to`.
fn pump(from: &mut dyn TlsSide, to: &mut dyn TlsSide) {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).expect("write_tls");
    }
    let mut slice = &bytes[..];
    while !slice.is_empty() {
        to.read_tls(&mut slice).expect("read_tls");
        to.process().expect("process");
    }
}

trait TlsSide {
    fn wants_write(&self) -> bool;
    fn write_tls(&mut self, w: &mut dyn Write) -> std::io::Result<usize>;
    fn read_tls(&mut self, r: &mut dyn Read) -> std::io::Result<usize>;
    fn process(&mut self) -> Result<(), rustls::Error>;
}

macro_rules! tls_side {
    ($t:ty) => {
        impl TlsSide for $t {
            fn wants_write(&self) -> bool {
                (**self).wants_write()
            }
            fn write_tls(&mut self, w: &mut dyn Write) -> std::io::Result<usize> {
                (**self).write_tls(w)
            }
            fn read_tls(&mut self, r: &mut dyn Read) -> std::io::Result<usize> {
                (**self).read_tls(r)
            }
            fn process(&mut self) -> Result<(), rustls::Error> {
                (**self).process_new_packets().map(|_| ())
            }
        }
    };
}
tls_side!(ClientConnection);
tls_side!(ServerConnection);

/// A handshake and one request/response in memory; returns the client and the
/// server's extracted secrets.
fn established(suite: SupportedCipherSuite) -> (ClientConnection, ContinuedSecrets) {
    let (client_config, server_config) = configs(suite);
    let name = ServerName::try_from("a.test").expect("name");
    let mut client = ClientConnection::new(client_config, name).expect("client");
    let mut server = ServerConnection::new(server_config).expect("server");
    while client.is_handshaking() || server.is_handshaking() {
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
    }
    client.writer().write_all(b"before").expect("client write");
    pump(&mut client, &mut server);
    let mut got = [0u8; 6];
    server.reader().read_exact(&mut got).expect("server read");
    assert_eq!(&got, b"before");
    server.writer().write_all(b"reply").expect("server write");
    pump(&mut server, &mut client);
    let mut got = [0u8; 5];
    client.reader().read_exact(&mut got).expect("client read");
    assert_eq!(&got, b"reply");
    assert!(!server.wants_write());
    let extracted = server.dangerous_extract_secrets().expect("extract");
    let secrets = ContinuedSecrets::from_extracted(extracted).expect("continue");
    // Through the hand-over encoding, as the new process gets them.
    let secrets = ContinuedSecrets::decode(&secrets.encode()).expect("decode");
    (client, secrets)
}

/// Sends the client's pending records into `wire`.
async fn client_send(client: &mut ClientConnection, wire: &mut DuplexStream) {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes).expect("write_tls");
    }
    wire.write_all(&bytes).await.expect("wire write");
}

/// Reads from `wire` into the client until it has `n` plaintext bytes (or fails).
async fn client_recv(
    client: &mut ClientConnection,
    wire: &mut DuplexStream,
    n: usize,
) -> Result<Vec<u8>, rustls::Error> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    while out.len() < n {
        let read = wire.read(&mut buf).await.expect("wire read");
        assert!(read > 0, "wire closed after {} of {n} bytes", out.len());
        let mut slice = &buf[..read];
        while !slice.is_empty() {
            client.read_tls(&mut slice).expect("read_tls");
            client.process_new_packets()?;
        }
        let _ = client.reader().read_to_end(&mut out);
    }
    Ok(out)
}

#[tokio::test]
async fn data_both_ways_for_every_suite() {
    for suite in SUITES {
        let (mut client, secrets) = established(suite);
        let (server_io, mut wire) = tokio::io::duplex(1 << 20);
        let mut server = ContinuedTlsStream::new(server_io, &secrets, &[]).expect("stream");

        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .expect("write");
        client_send(&mut client, &mut wire).await;
        let mut got = [0u8; 18];
        server.read_exact(&mut got).await.expect("server read");
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n", "{suite:?}");

        // Over several records (2^14 bytes each at most).
        let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        server.write_all(&body).await.expect("server write");
        server.flush().await.expect("flush");
        let got = client_recv(&mut client, &mut wire, body.len())
            .await
            .expect("client");
        assert_eq!(got, body, "{suite:?}");
        let (sent, received) = server.sequence_numbers();
        assert!(sent >= 3 && received >= 1, "{suite:?}: {sent} {received}");
    }
}

#[tokio::test]
async fn unread_ciphertext_is_read_first() {
    let (mut client, secrets) = established(SUITES[0]);
    client.writer().write_all(b"first").expect("write");
    let mut unread = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut unread).expect("write_tls");
    }
    let (server_io, mut wire) = tokio::io::duplex(1 << 16);
    // Half a record was read by the old process, the rest is still in the socket.
    let (old, rest) = unread.split_at(unread.len() / 2);
    wire.write_all(rest).await.expect("wire");
    client.writer().write_all(b"second").expect("write");
    client_send(&mut client, &mut wire).await;
    let mut server = ContinuedTlsStream::new(server_io, &secrets, old).expect("stream");
    let mut got = [0u8; 11];
    server.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"firstsecond");
}

#[tokio::test]
async fn close_notify_is_answered_and_ends_the_stream() {
    let (mut client, secrets) = established(SUITES[2]);
    let (server_io, mut wire) = tokio::io::duplex(1 << 16);
    let mut server = ContinuedTlsStream::new(server_io, &secrets, &[]).expect("stream");
    client.send_close_notify();
    client_send(&mut client, &mut wire).await;
    let mut buf = Vec::new();
    assert_eq!(server.read_to_end(&mut buf).await.expect("eof"), 0);
    server.shutdown().await.expect("shutdown");
    // The client sees the server's close_notify: a clean end of stream.
    let mut raw = Vec::new();
    wire.read_to_end(&mut raw).await.expect("wire");
    let mut slice = &raw[..];
    while !slice.is_empty() {
        client.read_tls(&mut slice).expect("read_tls");
    }
    let state = client.process_new_packets().expect("process");
    assert!(state.peer_has_closed());
    assert!(server.write_all(b"late").await.is_err());
}

#[tokio::test]
async fn server_shutdown_sends_close_notify() {
    let (mut client, secrets) = established(SUITES[1]);
    let (server_io, mut wire) = tokio::io::duplex(1 << 16);
    let mut server = ContinuedTlsStream::new(server_io, &secrets, &[]).expect("stream");
    server.write_all(b"bye").await.expect("write");
    server.shutdown().await.expect("shutdown");
    drop(server);
    let mut raw = Vec::new();
    wire.read_to_end(&mut raw).await.expect("wire");
    let mut slice = &raw[..];
    while !slice.is_empty() {
        client.read_tls(&mut slice).expect("read_tls");
    }
    let state = client.process_new_packets().expect("process");
    assert!(state.peer_has_closed());
    let mut got = Vec::new();
    client.reader().read_to_end(&mut got).expect("read");
    assert_eq!(got, b"bye");
}

/// Feeds `records` to a fresh continued stream and returns the read error and the
/// alert the client gets back.
async fn refused(
    client: &mut ClientConnection,
    secrets: &ContinuedSecrets,
    records: &[u8],
) -> (std::io::Error, rustls::Error) {
    let (server_io, mut wire) = tokio::io::duplex(1 << 16);
    let mut server = ContinuedTlsStream::new(server_io, secrets, &[]).expect("stream");
    wire.write_all(records).await.expect("wire");
    let mut buf = [0u8; 16];
    let err = server.read(&mut buf).await.expect_err("refused");
    // Every later call fails the same way.
    assert!(server.read(&mut buf).await.is_err());
    assert!(server.write_all(b"x").await.is_err());
    drop(server);
    let mut raw = Vec::new();
    wire.read_to_end(&mut raw).await.expect("wire");
    let mut slice = &raw[..];
    while !slice.is_empty() {
        client.read_tls(&mut slice).expect("read_tls");
    }
    let alert = client.process_new_packets().expect_err("alert");
    (err, alert)
}

fn alert_received(err: &rustls::Error) -> rustls::AlertDescription {
    match err {
        rustls::Error::AlertReceived(a) => *a,
        other => panic!("not an alert: {other:?}"),
    }
}

#[tokio::test]
async fn client_key_update_ends_with_internal_error() {
    let (mut client, secrets) = established(SUITES[0]);
    client.refresh_traffic_keys().expect("key update");
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).expect("write_tls");
    }
    let (err, alert) = refused(&mut client, &secrets, &records).await;
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        alert_received(&alert),
        rustls::AlertDescription::InternalError
    );
}

#[tokio::test]
async fn tampered_record_gets_bad_record_mac() {
    let (mut client, secrets) = established(SUITES[2]);
    client.writer().write_all(b"data").expect("write");
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).expect("write_tls");
    }
    let last = records.len() - 1;
    records[last] ^= 1;
    let (_, alert) = refused(&mut client, &secrets, &records).await;
    assert_eq!(
        alert_received(&alert),
        rustls::AlertDescription::BadRecordMac
    );
}

#[tokio::test]
async fn oversized_record_gets_record_overflow() {
    let (mut client, secrets) = established(SUITES[0]);
    let len = u16::try_from((1 << 14) + 257).expect("len");
    let mut records = vec![23, 3, 3];
    records.extend_from_slice(&len.to_be_bytes());
    let (_, alert) = refused(&mut client, &secrets, &records).await;
    assert_eq!(
        alert_received(&alert),
        rustls::AlertDescription::RecordOverflow
    );
}

#[tokio::test]
async fn plaintext_record_gets_unexpected_message() {
    let (mut client, secrets) = established(SUITES[0]);
    let records = [22u8, 3, 3, 0, 4, 1, 0, 0, 0];
    let (_, alert) = refused(&mut client, &secrets, &records).await;
    assert_eq!(
        alert_received(&alert),
        rustls::AlertDescription::UnexpectedMessage
    );
}

#[tokio::test]
async fn eof_without_close_notify_is_an_error() {
    let (_client, secrets) = established(SUITES[0]);
    let (server_io, wire) = tokio::io::duplex(1 << 16);
    let mut server = ContinuedTlsStream::new(server_io, &secrets, &[1, 2]).expect("stream");
    drop(wire);
    let mut buf = [0u8; 4];
    let err = server.read(&mut buf).await.expect_err("truncated");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn encoding_round_trips_and_refuses_garbage() {
    let (_client, secrets) = established(SUITES[1]);
    let encoded = secrets.encode();
    let decoded = ContinuedSecrets::decode(&encoded).expect("decode");
    assert_eq!(*decoded.encode(), *encoded);
    assert_eq!(decoded.tx().seq(), secrets.tx().seq());
    assert_eq!(
        ContinuedSecrets::decode(&encoded[..encoded.len() - 1]).unwrap_err(),
        SecretsError::Malformed
    );
    let mut bad_suite = encoded.to_vec();
    bad_suite[1] = 9;
    assert_eq!(
        ContinuedSecrets::decode(&bad_suite).unwrap_err(),
        SecretsError::Malformed
    );
    let mut bad_version = encoded.to_vec();
    bad_version[0] = 0;
    assert!(ContinuedSecrets::decode(&bad_version).is_err());
}

#[test]
fn fuzz_seed_decodes_and_garbage_does_not_panic() {
    use super::{cipher::DirectionCipher, record::Inbound, record::RecordLayer};
    let seed = super::zero_secrets_records(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let secrets = ContinuedSecrets::decode(&super::zero_secrets_encoding()).expect("secrets");
    let rx = DirectionCipher::new(secrets.suite(), secrets.rx()).expect("rx");
    let tx = DirectionCipher::new(secrets.suite(), secrets.tx()).expect("tx");
    let mut layer = RecordLayer::new(rx, tx);
    let mut buf = bytes::BytesMut::from(&seed[..]);
    let Ok(Some(Inbound::Data(data))) = layer.read(&mut buf) else {
        panic!("the seed's first record is not application data");
    };
    assert_eq!(&data[..], b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(layer.read(&mut buf), Ok(Some(Inbound::CloseNotify)));
    assert!(buf.is_empty());

    super::fuzz_records(&seed);
    for garbage in [
        &b""[..],
        &[23, 3, 3, 0, 17],
        &[23, 3, 3, 0xff, 0xff],
        &seed[..9],
    ] {
        super::fuzz_records(garbage);
    }
    let mut flipped = seed.clone();
    for i in 0..flipped.len() {
        flipped[i] ^= 0x80;
        super::fuzz_records(&flipped);
        flipped[i] ^= 0x80;
    }
    if std::env::var_os("PROXY_TLS_WRITE_FUZZ_SEEDS").is_some() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/continued_record");
        std::fs::create_dir_all(&dir).expect("seed dir");
        std::fs::write(dir.join("request_then_close_notify"), &seed).expect("seed");
    }
}
