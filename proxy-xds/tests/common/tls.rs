//! The TLS side of the SDS tests: the leaf certificate a proxy's TLS listener
//! presents on a full handshake, checked against the test PKI's CA.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, sync::Arc};

use proxy_test_support::pki::{Issued, Pki};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

/// The leaf certificate served at `addr` for `a.test` (no session resumption: a
/// resumed session would report the certificate of the session it resumes).
pub async fn served(addr: SocketAddr, pki: &Pki) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca_pem).expect("CA");
    for c in proxy_tls::material::parse_certs(&pem, "ca").expect("CA parses") {
        roots.add(c).expect("CA added");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = connector
        .connect(ServerName::try_from("a.test").expect("name"), tcp)
        .await
        .expect("handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("certificates")[0].clone();
    leaf.into_owned()
}

/// The DER of `i`'s certificate.
pub fn der(i: &Issued) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(i.cert_pem.as_bytes()).expect("PEM")
}
