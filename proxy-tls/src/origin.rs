//! TLS origination: the `tls` upstream transport secures fresh TCP connections to
//! endpoints (SNI, roots, ALPN, client certificate, verification on by default).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        ResolvesClientCert,
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    sign::CertifiedKey,
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;

use crate::{
    config::OriginationConfig,
    error::{ConfigBuildError, HandshakeError, MaterialError},
    material::{KeyPairSource, RootsSource},
    metrics::TlsMetrics,
    rotation::{Reloadable, SecretSource},
};

/// A TLS client stream to an upstream endpoint.
pub type UpstreamTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The `tls` upstream transport. Cheap to clone; roots and client certificate
/// rotate underneath it.
#[derive(Debug, Clone)]
pub struct OriginationTransport {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    material: Arc<Reloadable<Arc<ClientConfig>>>,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
    metrics: Arc<TlsMetrics>,
}

struct ClientSpec {
    roots: Vec<RootsSource>,
    system: bool,
    webpki: bool,
    verify: bool,
    client_cert: Option<KeyPairSource>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    sni: bool,
    provider: Arc<CryptoProvider>,
    secrets: Arc<dyn SecretSource>,
    resumption: rustls::client::Resumption,
}

impl OriginationTransport {
    /// Validates `cfg`, loads its material and starts watching it.
    ///
    /// # Errors
    /// A bad setting (naming the field) or refused material (naming the file).
    pub fn new(
        cfg: &OriginationConfig,
        secrets: Arc<dyn SecretSource>,
        metrics: Arc<TlsMetrics>,
    ) -> Result<Self, ConfigBuildError> {
        cfg.validate()?;
        let server_name = match &cfg.server_name {
            None => None,
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                ConfigBuildError::Invalid(format!(
                    "server_name: {n:?} is not a DNS name or IP address"
                ))
            })?),
        };
        let mut roots: Vec<RootsSource> = cfg
            .roots
            .files
            .iter()
            .cloned()
            .map(RootsSource::File)
            .collect();
        if let Some(s) = &cfg.roots.secret {
            roots.push(RootsSource::Secret(s.clone()));
        }
        let client_cert = match &cfg.client_cert {
            None => None,
            Some(c) => Some(crate::accept::certificate_source(c, "client_cert")?),
        };
        let spec = ClientSpec {
            roots,
            system: cfg.roots.system || cfg.roots.is_empty(),
            webpki: cfg.roots.webpki,
            verify: cfg.verify,
            client_cert,
            alpn: cfg.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            versions: crate::accept::versions(&cfg.versions),
            sni: cfg.sni,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            secrets: secrets.clone(),
            resumption: rustls::client::Resumption::in_memory_sessions(256),
        };
        let mut files: Vec<std::path::PathBuf> = cfg.roots.files.clone();
        if let Some(KeyPairSource::Files { cert, key }) = &spec.client_cert {
            files.push(cert.clone());
            files.push(key.clone());
        }
        let uses_secrets = cfg.roots.secret.is_some()
            || matches!(spec.client_cert, Some(KeyPairSource::Secret(_)));
        let material = Reloadable::start(
            "tls upstream roots and client certificate".into(),
            files,
            uses_secrets.then_some(&secrets),
            cfg.rotation.poll_interval,
            metrics.clone(),
            Box::new(move || spec.build().map(Arc::new)),
        )?;
        Ok(Self {
            shared: Arc::new(Shared {
                material,
                server_name,
                handshake_timeout: cfg.handshake_timeout,
                metrics,
            }),
        })
    }

    /// Re-reads the roots and client certificate now.
    ///
    /// # Errors
    /// Why the new material was refused; the running material stays.
    pub fn reload(&self) -> Result<(), ConfigBuildError> {
        self.shared.material.reload()
    }

    /// Handshakes over `tcp` to `endpoint` within the handshake timeout.
    ///
    /// # Errors
    /// [`HandshakeError`] (also counted in
    /// `proxy_tls_upstream_handshake_failures_total{reason}`).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        endpoint: SocketAddr,
    ) -> Result<UpstreamTlsStream, HandshakeError> {
        let shared = &self.shared;
        let name = shared
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(endpoint.ip().into()));
        let config = shared.material.current().value.clone();
        let connector = tokio_rustls::TlsConnector::from(config);
        let result = match tokio::time::timeout(
            shared.handshake_timeout,
            connector.connect(name, tcp),
        )
        .await
        {
            Err(_) => Err(HandshakeError::Timeout),
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(classify_io(e)),
        };
        match &result {
            Ok(_) => shared.metrics.upstream_handshake(),
            Err(e) => {
                shared.metrics.failure(e.reason(), true);
                tracing::debug!(%endpoint, reason = e.reason(), error = %crate::error_chain(e), "upstream tls handshake failed");
            }
        }
        result
    }
}

impl proxy_core::upstream::UpstreamTransport for OriginationTransport {
    fn wrap(
        &self,
        tcp: TcpStream,
        endpoint: SocketAddr,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<proxy_core::Stream, proxy_core::BoxError>>
                + Send,
        >,
    > {
        let this = self.clone();
        Box::pin(async move {
            let tls = this.connect(tcp, endpoint).await?;
            Ok(proxy_core::Stream::Boxed(Box::new(tls)))
        })
    }
}

/// tokio-rustls reports rustls errors inside `io::Error`; recover the typed one.
fn classify_io(e: std::io::Error) -> HandshakeError {
    let kind = e.kind();
    match e.into_inner() {
        Some(inner) => match inner.downcast::<rustls::Error>() {
            Ok(tls) => HandshakeError::from_rustls(*tls, false),
            Err(other) => HandshakeError::Io(std::io::Error::new(kind, other)),
        },
        None if matches!(
            kind,
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ) =>
        {
            HandshakeError::Closed(kind.into())
        }
        None => HandshakeError::Io(kind.into()),
    }
}

impl ClientSpec {
    fn root_store(&self) -> Result<RootCertStore, MaterialError> {
        let mut store = RootCertStore::empty();
        for src in &self.roots {
            store.roots.extend(src.load(&*self.secrets)?.roots);
        }
        if self.webpki {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.system {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(native.certs);
            if added == 0 && store.is_empty() {
                return Err(MaterialError::Roots {
                    source_name: "system trust store".into(),
                    reason: native
                        .errors
                        .first()
                        .map_or_else(|| "empty".to_owned(), ToString::to_string),
                });
            }
        }
        Ok(store)
    }

    fn build(&self) -> Result<ClientConfig, ConfigBuildError> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|source| ConfigBuildError::Rustls {
                what: "versions".into(),
                source,
            })?;
        let builder = if self.verify {
            builder.with_root_certificates(self.root_store()?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(self.provider.clone())))
        };
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(src) => {
                let ck = Arc::new(src.load(&*self.secrets, &self.provider)?);
                builder.with_client_cert_resolver(Arc::new(ClientCert(ck)))
            }
        };
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.sni;
        config.resumption = self.resumption.clone();
        Ok(config)
    }
}

/// Presents one client certificate whenever the server asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0
            .key
            .choose_scheme(schemes)
            .is_some()
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `verify: false`: any server certificate is accepted (the handshake signatures are
/// still checked, so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
