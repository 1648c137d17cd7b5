//! Builders for Guomi `rustls::ServerConfig` and `ClientConfig`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use x509_cert::der::Decode;

use super::chain::{sm2_public_key, Sm2RootStore};
use super::error::GuomiError;
use super::provider::{offers_guomi, provider, provider_with};
use super::sign::{load_sm2_key, Sm2SigningKey};
use super::verify::{Sm2ClientVerifier, Sm2ServerVerifier};
use super::{CERT_SM2_ID, SM2SIG_SM3};

/// Builds a Guomi `ServerConfig`: TLS 1.3 only, the RFC 8998 suites,
/// curveSM2, an SM2 certificate chain and key; optionally client
/// certificates checked against SM2 roots, ALPN, and an international
/// certificate for clients that do not offer Guomi.
pub struct GuomiServerBuilder {
    key: Arc<CertifiedKey>,
    client_roots: Option<(Arc<Sm2RootStore>, bool)>,
    alpn: Vec<Vec<u8>>,
    international: Option<(Arc<CertifiedKey>, CryptoProvider)>,
}

impl fmt::Debug for GuomiServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuomiServerBuilder")
            .field("chain_len", &self.key.cert.len())
            .field("client_auth", &self.client_roots.is_some())
            .field("alpn", &self.alpn)
            .field("international", &self.international.is_some())
            .finish()
    }
}

impl GuomiServerBuilder {
    /// From a chain (end entity first) and its SM2 key.
    ///
    /// # Errors
    /// [`GuomiError::Certificate`] if the chain is empty, the end-entity
    /// certificate has no SM2 key, or the key does not match it.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: Sm2SigningKey,
    ) -> Result<Self, GuomiError> {
        check_key_matches(&chain, &key)?;
        Ok(Self {
            key: Arc::new(CertifiedKey::new(chain, Arc::new(key))),
            client_roots: None,
            alpn: Vec::new(),
            international: None,
        })
    }

    /// From PEM text: the certificate chain and the SM2 private key
    /// (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    ///
    /// # Errors
    /// As [`GuomiServerBuilder::new`], plus [`GuomiError::Pem`] if either
    /// holds no certificate or key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, GuomiError> {
        let chain = certs_from_pem(cert_pem, Path::new("<certificate PEM>"))?;
        let key = key_from_pem(key_pem, Path::new("<key PEM>"))?;
        Self::new(chain, key)
    }

    /// From PEM files.
    ///
    /// # Errors
    /// As [`GuomiServerBuilder::from_pem`], plus [`GuomiError::Io`]; errors name the file.
    pub fn from_pem_files(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, GuomiError> {
        let chain = read_certs(cert_path.as_ref())?;
        let key_pem = read(key_path.as_ref())?;
        let key = key_from_pem(&key_pem, key_path.as_ref())?;
        Self::new(chain, key)
    }

    /// Asks clients for an SM2 certificate chaining to `roots`; refuses
    /// clients without one when `mandatory`.
    pub fn client_auth(mut self, roots: Arc<Sm2RootStore>, mandatory: bool) -> Self {
        self.client_roots = Some((roots, mandatory));
        self
    }

    /// ALPN protocols, most preferred first.
    pub fn alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Serves Guomi and international clients from one config: `base`'s
    /// suites (TLS 1.2 and 1.3) are offered after the Guomi ones, and a
    /// client that offers an RFC 8998 suite and `sm2sig_sm3` gets the SM2
    /// chain, any other client gets `certified` (an RSA or ECDSA key loaded
    /// with `base`). A [`client_auth`](Self::client_auth) verifier applies to
    /// every client, so with it international clients also need an SM2
    /// client certificate; keep two configs (see [`offers_guomi`]) when the
    /// families need different client roots.
    pub fn with_international(
        mut self,
        certified: Arc<CertifiedKey>,
        base: CryptoProvider,
    ) -> Self {
        self.international = Some((certified, base));
        self
    }

    /// The `ServerConfig`.
    ///
    /// # Errors
    /// [`GuomiError::Rustls`] if rustls refuses the combination.
    pub fn build(self) -> Result<ServerConfig, GuomiError> {
        let (provider, versions, resolver): (_, &[_], Arc<dyn ResolvesServerCert>) =
            match self.international {
                None => (
                    provider(),
                    &[&rustls::version::TLS13],
                    Arc::new(Fixed(self.key)),
                ),
                Some((international, base)) => (
                    provider_with(base),
                    &[&rustls::version::TLS13, &rustls::version::TLS12],
                    Arc::new(SideBySide {
                        guomi: self.key,
                        international,
                    }),
                ),
            };
        let builder = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .map_err(GuomiError::Rustls)?;
        let builder = match self.client_roots {
            Some((roots, mandatory)) => {
                let verifier = Sm2ClientVerifier::new(roots);
                let verifier = if mandatory {
                    verifier
                } else {
                    verifier.optional()
                };
                builder.with_client_cert_verifier(Arc::new(verifier))
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = self.alpn;
        Ok(config)
    }
}

/// Always the one SM2 chain.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The SM2 chain for Guomi clients, the other one for the rest.
#[derive(Debug)]
struct SideBySide {
    guomi: Arc<CertifiedKey>,
    international: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SideBySide {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if offers_guomi(&hello) && hello.signature_schemes().contains(&SM2SIG_SM3) {
            Some(self.guomi.clone())
        } else {
            Some(self.international.clone())
        }
    }
}

/// Builds a Guomi `ClientConfig`: TLS 1.3, the RFC 8998 suites, curveSM2
/// as the first (and only) key share, the server checked against SM2 roots.
pub struct GuomiClientBuilder {
    roots: Arc<Sm2RootStore>,
    client_cert: Option<Arc<CertifiedKey>>,
    alpn: Vec<Vec<u8>>,
    international: Option<(CryptoProvider, Arc<dyn ServerCertVerifier>)>,
}

impl fmt::Debug for GuomiClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuomiClientBuilder")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("alpn", &self.alpn)
            .field("international", &self.international.is_some())
            .finish()
    }
}

impl GuomiClientBuilder {
    /// Trusting `roots`.
    pub fn new(roots: Arc<Sm2RootStore>) -> Self {
        Self {
            roots,
            client_cert: None,
            alpn: Vec::new(),
            international: None,
        }
    }

    /// Trusting the SM2 roots of a PEM file.
    ///
    /// # Errors
    /// See [`Sm2RootStore::from_pem_file`].
    pub fn from_root_pem_file(path: impl AsRef<Path>) -> Result<Self, GuomiError> {
        Ok(Self::new(Arc::new(Sm2RootStore::from_pem_file(path)?)))
    }

    /// Presents this SM2 chain when the server asks for a client certificate.
    ///
    /// # Errors
    /// [`GuomiError::Certificate`] if the chain is empty or does not match the key.
    pub fn client_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: Sm2SigningKey,
    ) -> Result<Self, GuomiError> {
        check_key_matches(&chain, &key)?;
        self.client_cert = Some(Arc::new(CertifiedKey::new(chain, Arc::new(key))));
        Ok(self)
    }

    /// ALPN protocols, most preferred first.
    pub fn alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Also reaches international servers: `base`'s suites follow the
    /// Guomi ones, and non-SM2 server certificates go to `verifier`
    /// (typically a webpki verifier over `base`).
    pub fn with_international(
        mut self,
        base: CryptoProvider,
        verifier: Arc<dyn ServerCertVerifier>,
    ) -> Self {
        self.international = Some((base, verifier));
        self
    }

    /// The `ClientConfig`.
    ///
    /// # Errors
    /// [`GuomiError::Rustls`] if rustls refuses the combination.
    pub fn build(self) -> Result<ClientConfig, GuomiError> {
        let (provider, versions, verifier): (_, &[_], _) = match self.international {
            None => (
                provider(),
                &[&rustls::version::TLS13],
                Sm2ServerVerifier::new(self.roots),
            ),
            Some((base, fallback)) => (
                provider_with(base),
                &[&rustls::version::TLS13, &rustls::version::TLS12],
                Sm2ServerVerifier::with_fallback(self.roots, fallback),
            ),
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .map_err(GuomiError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match self.client_cert {
            Some(certified) => builder.with_client_cert_resolver(Arc::new(ClientCert(certified))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        Ok(config)
    }
}

/// Offers the SM2 client chain when the server accepts `sm2sig_sm3`.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes.contains(&SM2SIG_SM3).then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The end-entity certificate must carry the public half of `key`.
fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &Sm2SigningKey,
) -> Result<(), GuomiError> {
    let ee = chain
        .first()
        .ok_or_else(|| GuomiError::Certificate("the certificate chain is empty".into()))?;
    let cert = x509_cert::Certificate::from_der(ee.as_ref())
        .map_err(|e| GuomiError::Certificate(format!("end-entity certificate: {e}")))?;
    let cert_key = sm2_public_key(&cert, CERT_SM2_ID).ok_or_else(|| {
        GuomiError::Certificate("the end-entity certificate has no SM2 public key".into())
    })?;
    if cert_key.as_affine() != &key.public_point() {
        return Err(GuomiError::Certificate(
            "the private key does not match the end-entity certificate".into(),
        ));
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, GuomiError> {
    std::fs::read(path).map_err(|source| GuomiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, GuomiError> {
    certs_from_pem(&read(path)?, path)
}

pub(crate) fn certs_from_pem(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, GuomiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GuomiError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(GuomiError::Pem {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], path: &Path) -> Result<Sm2SigningKey, GuomiError> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| GuomiError::Pem {
        path: path.to_owned(),
        reason: format!("no usable private key: {e}"),
    })?;
    load_sm2_key(&der)
}
