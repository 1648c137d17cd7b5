//! Guomi through the public API: rustls handshakes between our own client and
//! server (both RFC 8998 suites, mutual TLS, ALPN), the SM2 certificate checks
//! (good and bad chains), config errors, and Guomi next to international
//! suites in one listener. The standards' known-answer vectors are unit tests
//! in `src/guomi/kat.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

use crate::test_pki;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proxy_tls::guomi::{
    self, load_sm2_key, offers_guomi, GuomiClientBuilder, GuomiError, GuomiServerBuilder,
    Sm2ClientVerifier, Sm2RootStore, Sm2ServerVerifier, Sm2SigningKey, CURVE_SM2_GROUP,
    SM4_CCM_SM3, SM4_GCM_SM3,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::Acceptor;
use rustls::{CertificateError, ClientConfig, Error, ServerConfig};
use test_pki::{issue, Issued, Spec, CLIENT_AUTH, SERVER_AUTH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TIMEOUT: Duration = Duration::from_secs(20);

fn key_of(issued: &Issued) -> Sm2SigningKey {
    load_sm2_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        issued.key_pkcs8(),
    )))
    .unwrap()
}

fn roots(ca: &Issued) -> Arc<Sm2RootStore> {
    let mut roots = Sm2RootStore::new();
    roots.add(&ca.der).unwrap();
    Arc::new(roots)
}

fn name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_string()).unwrap()
}

fn verify_server(ca: &Issued, chain: &[&Issued], host: &str) -> Result<(), Error> {
    let verifier = Sm2ServerVerifier::new(roots(ca));
    let ders: Vec<CertificateDer<'static>> = chain.iter().map(|c| c.der.clone()).collect();
    verifier
        .verify_server_cert(&ders[0], &ders[1..], &name(host), &[], UnixTime::now())
        .map(|_| ())
}

/// One handshake over an in-memory pipe; the server echoes one message.
/// Returns (suite, group, ALPN) as the client saw them.
async fn handshake(
    server: ServerConfig,
    client: ClientConfig,
    host: &str,
) -> Result<(rustls::CipherSuite, rustls::NamedGroup, Option<Vec<u8>>), std::io::Error> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await?;
        let mut buf = [0u8; 32];
        let n = tls.read(&mut buf).await?;
        tls.write_all(&buf[..n]).await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let connector = TlsConnector::from(Arc::new(client));
    let result = async {
        let mut tls = connector.connect(name(host), a).await?;
        tls.write_all(b"guomi").await?;
        let mut buf = [0u8; 32];
        let n = tls.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"guomi");
        let (_, conn) = tls.get_ref();
        Ok((
            conn.negotiated_cipher_suite().unwrap().suite(),
            conn.negotiated_key_exchange_group().unwrap().name(),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        ))
    }
    .await;
    let _ = server_task.await;
    result
}

struct Setup {
    ca: Issued,
    server: Issued,
    client: Issued,
}

fn setup() -> Setup {
    let ca = issue(&Spec::ca("Root"), None);
    let server = issue(
        &Spec::leaf("svc", &["svc.example", "*.mesh.local"], SERVER_AUTH),
        Some(&ca),
    );
    let client = issue(&Spec::leaf("client", &[], CLIENT_AUTH), Some(&ca));
    Setup { ca, server, client }
}

#[tokio::test]
async fn handshake_gcm_with_mutual_tls_and_alpn() {
    let s = setup();
    let server = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.server))
        .unwrap()
        .client_auth(roots(&s.ca), true)
        .alpn(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .unwrap();
    let client = GuomiClientBuilder::new(roots(&s.ca))
        .client_cert(vec![s.client.der.clone()], key_of(&s.client))
        .unwrap()
        .alpn(vec![b"h2".to_vec()])
        .build()
        .unwrap();
    let (suite, group, alpn) =
        tokio::time::timeout(TIMEOUT, handshake(server, client, "svc.example"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(suite, SM4_GCM_SM3);
    assert_eq!(group, CURVE_SM2_GROUP);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn handshake_ccm_when_the_client_only_offers_ccm() {
    let s = setup();
    let server = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.server))
        .unwrap()
        .build()
        .unwrap();
    let mut provider = guomi::provider();
    provider.cipher_suites.retain(|c| c.suite() == SM4_CCM_SM3);
    let client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Sm2ServerVerifier::new(roots(&s.ca))))
        .with_no_client_auth();
    let (suite, _, _) = tokio::time::timeout(TIMEOUT, handshake(server, client, "a.mesh.local"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suite, SM4_CCM_SM3);
}

#[tokio::test]
async fn mandatory_client_auth_refuses_a_client_without_certificate() {
    let s = setup();
    let server = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.server))
        .unwrap()
        .client_auth(roots(&s.ca), true)
        .build()
        .unwrap();
    let client = GuomiClientBuilder::new(roots(&s.ca)).build().unwrap();
    let result = tokio::time::timeout(TIMEOUT, handshake(server, client, "svc.example"))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "handshake without a client certificate must fail"
    );
}

#[tokio::test]
async fn client_refuses_a_server_from_another_root() {
    let s = setup();
    let other = issue(&Spec::ca("Other Root"), None);
    let server = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.server))
        .unwrap()
        .build()
        .unwrap();
    let client = GuomiClientBuilder::new(roots(&other)).build().unwrap();
    let err = tokio::time::timeout(TIMEOUT, handshake(server, client, "svc.example"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

/// A session resumes (TLS 1.3 PSK with the SM3 key schedule), and a client
/// whose first key share is X25519 is sent a HelloRetryRequest for curveSM2.
#[tokio::test]
async fn resumption_and_hello_retry_for_curve_sm2() {
    let s = setup();
    let server = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.server))
        .unwrap()
        .build()
        .unwrap();
    let client = GuomiClientBuilder::new(roots(&s.ca)).build().unwrap();

    async fn kind(server: ServerConfig, client: Arc<ClientConfig>) -> rustls::HandshakeKind {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let server_task = tokio::spawn(async move {
            let mut tls = acceptor.accept(b).await.unwrap();
            let mut buf = [0u8; 8];
            let n = tls.read(&mut buf).await.unwrap();
            tls.write_all(&buf[..n]).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let mut tls = TlsConnector::from(client)
            .connect(name("svc.example"), a)
            .await
            .unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        // Reading past the echo lets the client take in the session ticket.
        let _ = tls.read(&mut buf).await.unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        server_task.await.unwrap();
        tls.get_ref().1.handshake_kind().unwrap()
    }

    let client = Arc::new(client);
    let first = tokio::time::timeout(TIMEOUT, kind(server.clone(), client.clone()))
        .await
        .unwrap();
    assert_eq!(first, rustls::HandshakeKind::Full);
    let second = tokio::time::timeout(TIMEOUT, kind(server.clone(), client))
        .await
        .unwrap();
    assert_eq!(second, rustls::HandshakeKind::Resumed);

    // X25519 first: the server only has curveSM2 and asks again.
    let mut provider = guomi::provider_with(rustls::crypto::ring::default_provider());
    provider.kx_groups.rotate_left(1);
    assert_ne!(provider.kx_groups[0].name(), CURVE_SM2_GROUP);
    let hrr_client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Sm2ServerVerifier::new(roots(&s.ca))))
        .with_no_client_auth();
    let kind = tokio::time::timeout(TIMEOUT, kind(server.clone(), Arc::new(hrr_client)))
        .await
        .unwrap();
    assert_eq!(kind, rustls::HandshakeKind::FullWithHelloRetryRequest);
}

// --- certificate checks ---

#[test]
fn chain_through_an_intermediate_and_null_parameters() {
    let ca = issue(&Spec::ca("Root"), None);
    let mut inter_spec = Spec::ca("Intermediate");
    inter_spec.null_params = true; // SM2-with-SM3 written with explicit NULL parameters
    let inter = issue(&inter_spec, Some(&ca));
    let leaf = issue(
        &Spec::leaf("svc", &["svc.example"], SERVER_AUTH),
        Some(&inter),
    );
    verify_server(&ca, &[&leaf, &inter], "svc.example").unwrap();
    // Without the intermediate the issuer is unknown.
    assert_eq!(
        verify_server(&ca, &[&leaf], "svc.example"),
        Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
    );
}

#[test]
fn names_are_checked() {
    let s = setup();
    verify_server(&s.ca, &[&s.server], "svc.example").unwrap();
    verify_server(&s.ca, &[&s.server], "SVC.Example").unwrap();
    verify_server(&s.ca, &[&s.server], "x.mesh.local").unwrap();
    for wrong in ["other.example", "a.b.mesh.local", "mesh.local"] {
        assert_eq!(
            verify_server(&s.ca, &[&s.server], wrong),
            Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
            "{wrong}"
        );
    }
}

#[test]
fn expired_and_not_yet_valid_are_refused() {
    let ca = issue(&Spec::ca("Root"), None);
    let mut old = Spec::leaf("svc", &["svc.example"], SERVER_AUTH);
    old.not_before = SystemTime::now() - Duration::from_secs(7200);
    old.not_after = SystemTime::now() - Duration::from_secs(3600);
    let old = issue(&old, Some(&ca));
    assert_eq!(
        verify_server(&ca, &[&old], "svc.example"),
        Err(Error::InvalidCertificate(CertificateError::Expired))
    );
    let mut future = Spec::leaf("svc", &["svc.example"], SERVER_AUTH);
    future.not_before = SystemTime::now() + Duration::from_secs(3600);
    let future = issue(&future, Some(&ca));
    assert_eq!(
        verify_server(&ca, &[&future], "svc.example"),
        Err(Error::InvalidCertificate(CertificateError::NotValidYet))
    );
}

#[test]
fn purpose_and_ca_flag_are_enforced() {
    let s = setup();
    // A client certificate presented by a server.
    let mut as_server = Spec::leaf("c", &["svc.example"], CLIENT_AUTH);
    as_server.eku = Some(CLIENT_AUTH);
    let c = issue(&as_server, Some(&s.ca));
    assert_eq!(
        verify_server(&s.ca, &[&c], "svc.example"),
        Err(Error::InvalidCertificate(CertificateError::InvalidPurpose))
    );
    // A leaf (not a CA) used as an issuer.
    let fake_inter = issue(&Spec::leaf("not a ca", &[], SERVER_AUTH), Some(&s.ca));
    let leaf = issue(
        &Spec::leaf("svc", &["svc.example"], SERVER_AUTH),
        Some(&fake_inter),
    );
    assert!(verify_server(&s.ca, &[&leaf, &fake_inter], "svc.example").is_err());
    // Path length 0 on the intermediate forbids another intermediate below it.
    let mut inter0 = Spec::ca("Inter0");
    inter0.path_len = Some(0);
    let inter0 = issue(&inter0, Some(&s.ca));
    let inter1 = issue(&Spec::ca("Inter1"), Some(&inter0));
    let leaf = issue(
        &Spec::leaf("svc", &["svc.example"], SERVER_AUTH),
        Some(&inter1),
    );
    assert!(verify_server(&s.ca, &[&leaf, &inter1, &inter0], "svc.example").is_err());
}

#[test]
fn tampered_certificate_signature_is_refused() {
    let s = setup();
    let mut bytes = s.server.der.to_vec();
    // One flipped bit inside the signed part (the serial number).
    bytes[15] ^= 0x01;
    let tampered = CertificateDer::from(bytes);
    let verifier = Sm2ServerVerifier::new(roots(&s.ca));
    let err = verifier
        .verify_server_cert(&tampered, &[], &name("svc.example"), &[], UnixTime::now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCertificate(
                CertificateError::BadSignature | CertificateError::BadEncoding
            )
        ),
        "{err:?}"
    );
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert_eq!(
        verifier
            .verify_server_cert(&garbage, &[], &name("svc.example"), &[], UnixTime::now())
            .unwrap_err(),
        Error::InvalidCertificate(CertificateError::BadEncoding)
    );
}

#[test]
fn client_verifier_checks_chain_and_purpose() {
    let s = setup();
    let verifier = Sm2ClientVerifier::new(roots(&s.ca));
    assert!(verifier.client_auth_mandatory());
    assert_eq!(verifier.root_hint_subjects().len(), 1);
    verifier
        .verify_client_cert(&s.client.der, &[], UnixTime::now())
        .unwrap();
    assert_eq!(
        verifier
            .verify_client_cert(&s.server.der, &[], UnixTime::now())
            .unwrap_err(),
        Error::InvalidCertificate(CertificateError::InvalidPurpose)
    );
    assert!(!Sm2ClientVerifier::new(roots(&s.ca))
        .optional()
        .client_auth_mandatory());
}

// --- config errors ---

#[test]
fn mismatched_key_and_bad_pem_are_refused() {
    let s = setup();
    let err = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.client)).unwrap_err();
    assert!(
        matches!(err, GuomiError::Certificate(ref m) if m.contains("does not match")),
        "{err}"
    );
    assert!(GuomiServerBuilder::new(vec![], key_of(&s.client)).is_err());
    let err = GuomiServerBuilder::from_pem(b"not pem", s.server.key_pem().as_bytes()).unwrap_err();
    assert!(matches!(err, GuomiError::Pem { .. }), "{err}");
    let err = GuomiServerBuilder::from_pem_files("/nonexistent/sm2.crt", "/nonexistent/sm2.key")
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/sm2.crt"), "{err}");
    // PEM text round trip works.
    GuomiServerBuilder::from_pem(
        s.server.cert_pem().as_bytes(),
        s.server.key_pem().as_bytes(),
    )
    .unwrap()
    .build()
    .unwrap();
    // An ECDSA P-256 key is not an SM2 key.
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p256.serialize_der()));
    assert!(matches!(load_sm2_key(&der), Err(GuomiError::Key(_))));
}

// --- Guomi and international side by side ---

fn international_cert() -> (Arc<rustls::sign::CertifiedKey>, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["svc.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(
        vec![der.clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        &provider,
    )
    .unwrap();
    (Arc::new(certified), der)
}

#[tokio::test]
async fn one_config_serves_guomi_and_international_clients() {
    let s = setup();
    let (intl, intl_der) = international_cert();
    let server = GuomiServerBuilder::new(vec![s.server.der.clone()], key_of(&s.server))
        .unwrap()
        .with_international(intl, rustls::crypto::ring::default_provider())
        .build()
        .unwrap();

    let guomi_client = GuomiClientBuilder::new(roots(&s.ca)).build().unwrap();
    let (suite, group, _) = tokio::time::timeout(
        TIMEOUT,
        handshake(server.clone(), guomi_client, "svc.example"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((suite, group), (SM4_GCM_SM3, CURVE_SM2_GROUP));

    let mut intl_roots = rustls::RootCertStore::empty();
    intl_roots.add(intl_der).unwrap();
    let plain_client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(intl_roots)
            .with_no_client_auth();
    let (suite, _, _) =
        tokio::time::timeout(TIMEOUT, handshake(server, plain_client, "svc.example"))
            .await
            .unwrap()
            .unwrap();
    assert_ne!(suite, SM4_GCM_SM3);
    assert_ne!(suite, SM4_CCM_SM3);
}

/// The per-connection choice: `offers_guomi` on the ClientHello read by rustls' Acceptor.
#[test]
fn offers_guomi_sees_the_client_suites() {
    fn hello_offers_guomi(client: ClientConfig) -> bool {
        let mut conn =
            rustls::ClientConnection::new(Arc::new(client), name("svc.example")).unwrap();
        let mut wire = Vec::new();
        conn.write_tls(&mut wire).unwrap();
        let mut acceptor = Acceptor::default();
        acceptor.read_tls(&mut wire.as_slice()).unwrap();
        let accepted = acceptor.accept().unwrap().unwrap();
        let hello = accepted.client_hello();
        offers_guomi(&hello)
    }
    let s = setup();
    assert!(hello_offers_guomi(
        GuomiClientBuilder::new(roots(&s.ca)).build().unwrap()
    ));
    let plain =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
    assert!(!hello_offers_guomi(plain));
}
