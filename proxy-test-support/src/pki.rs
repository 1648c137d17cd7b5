//! A test PKI (rcgen, ECDSA P-256): a CA issuing server and client certificates,
//! each as PEM text and as files in a temporary directory.

use std::{path::PathBuf, sync::Arc};

use crate::temp::TempDir;

/// A CA that issues leaf certificates; its certificate is written to `ca.pem` in its
/// directory. The directory lives as long as the PKI or any certificate it issued.
pub struct Pki {
    /// The directory the files are written to.
    pub dir: PathBuf,
    guard: Arc<TempDir>,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    /// The CA certificate's file.
    pub ca_pem: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate and its key, as PEM text and files.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The key's PEM file (PKCS#8).
    pub key: PathBuf,
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The key as PEM.
    pub key_pem: String,
    _dir: Arc<TempDir>,
}

impl Pki {
    /// A new CA named `<name> test CA`, in a directory of its own.
    ///
    /// # Panics
    /// When a key or certificate cannot be made or written.
    pub fn new(name: &str) -> Self {
        let guard = Arc::new(TempDir::new(&format!("pki-{name}")));
        let dir = guard.path().to_owned();
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).expect("write ca.pem");
        Self {
            dir,
            guard,
            ca_cert,
            ca_key,
            ca_pem,
        }
    }

    /// The CA certificate as DER (for a rustls root store).
    pub fn ca_cert_der(&self) -> Vec<u8> {
        self.ca_cert.der().to_vec()
    }

    /// A server certificate for DNS `names` (CN = the first), in `<file>.pem` and
    /// `<file>.key`.
    pub fn server(&self, file: &str, names: &[&str]) -> Issued {
        self.issue(file, names, &[], new_key(), None)
    }

    /// A client certificate with CN `cn` and URI SANs `uris`.
    pub fn client(&self, file: &str, cn: &str, uris: &[&str]) -> Issued {
        self.issue(file, &[], uris, new_key(), Some(cn))
    }

    /// A client certificate that expired in 2002.
    ///
    /// # Panics
    /// When it cannot be made or written.
    pub fn expired_client(&self, file: &str) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("leaf parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "expired client");
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = new_key();
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign the leaf");
        self.write(file, &cert, &key)
    }

    /// A leaf for DNS `names` and URI SANs `uris` with `key`, CN `cn` (else the first
    /// name, else `leaf`), good for server and client auth.
    ///
    /// # Panics
    /// When a name is not valid, or the files cannot be written.
    pub fn issue(
        &self,
        file: &str,
        names: &[&str],
        uris: &[&str],
        key: rcgen::KeyPair,
        cn: Option<&str>,
    ) -> Issued {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("leaf names");
        let cn = cn.or(names.first().copied()).unwrap_or("leaf");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for u in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().expect("a URI SAN")));
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign the leaf");
        self.write(file, &cert, &key)
    }

    fn write(&self, file: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Issued {
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        Issued {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            _dir: self.guard.clone(),
        }
    }
}

/// A new ECDSA P-256 key, for [`Pki::issue`].
///
#[cfg(feature = "tls")]
impl Issued {
    /// A TLS acceptor presenting this certificate (rustls on `ring`, its safe default
    /// versions, no client authentication), for a test server.
    ///
    /// # Panics
    /// When the PEM text cannot be read or the key does not fit the certificate.
    pub fn tls_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("the key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server certificate and its key");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// # Panics
/// When the key cannot be made.
pub fn new_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate().expect("a key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outlive_the_pki_while_a_leaf_is_held() {
        let leaf = Pki::new("pki-test").server("srv", &["a.test"]);
        let text = std::fs::read_to_string(&leaf.cert).expect("the certificate file");
        assert_eq!(text, leaf.cert_pem);
        assert!(std::fs::read_to_string(&leaf.key)
            .expect("the key file")
            .contains("PRIVATE KEY"));
    }
}
