//! Key material and in-memory handshakes shared by the TLS benches.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub, missing_docs)]

use std::{process::Command, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
};

/// A self-signed server certificate and key (PEM) for `a.test`.
pub struct Material {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn ecdsa_p256() -> Material {
    let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
    Material {
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
    }
}

/// RSA-2048: the key from the `openssl` command (ring cannot generate RSA keys), the
/// certificate from rcgen; `None` when openssl is missing.
pub fn rsa_2048() -> Option<Material> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let key_pem = String::from_utf8(out.stdout).ok()?;
    let key = rcgen::KeyPair::from_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).ok()?;
    let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
        .ok()?
        .self_signed(&key)
        .ok()?;
    Some(Material {
        cert_pem: cert.pem(),
        key_pem,
    })
}

pub fn server_config(m: &Material) -> Arc<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes()).unwrap();
    let mut c =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    c.send_tls13_tickets = 0;
    Arc::new(c)
}

pub fn client_config(m: &Material) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(m.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

/// One full handshake between `client` and `server`, in memory.
pub fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let mut c =
        ClientConnection::new(client.clone(), ServerName::try_from("a.test").unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
        }
    }
}
