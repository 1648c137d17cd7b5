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
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;

use crate::{
    config::{KeyPair, OriginationConfig, Roots},
    error::{ConfigBuildError, HandshakeError},
    material,
    metrics::TlsMetrics,
    rotation::{Reloadable, SecretSource},
    runtime::TlsRuntime,
};

/// A TLS client stream to an upstream endpoint.
pub type UpstreamTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The `tls` upstream transport: secures fresh TCP connections to a cluster's
/// endpoints. A [`proxy_core::upstream::UpstreamTransport`] (a policy the cluster's
/// connector calls), built once from a validated [`OriginationConfig`]; cheap to
/// clone, and the roots and client certificate rotate underneath it.
///
/// # Example
/// ```
/// use proxy_tls::{config::{OriginationConfig, Roots}, OriginationTransport};
///
/// let mut cfg = OriginationConfig::new(Roots::Webpki);
/// cfg.server_name = Some("example.com".into());
/// cfg.alpn = vec!["h2".into()];
/// let transport = OriginationTransport::try_from(&cfg).unwrap();
/// # let _ = transport;
///
/// cfg.alpn = vec![String::new()];
/// let err = OriginationTransport::try_from(&cfg).unwrap_err();
/// assert_eq!(err.field(), "alpn[0]");
/// ```
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
    roots: Roots,
    verify: bool,
    client_cert: Option<KeyPair>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    sni: bool,
    provider: Arc<CryptoProvider>,
    secrets: Arc<dyn SecretSource>,
    resumption: rustls::client::Resumption,
}

impl TryFrom<&OriginationConfig> for OriginationTransport {
    type Error = ConfigBuildError;

    /// A transport with its own [`TlsRuntime`] (no secrets).
    fn try_from(cfg: &OriginationConfig) -> Result<Self, ConfigBuildError> {
        Self::new(cfg, &TlsRuntime::default())
    }
}

impl OriginationTransport {
    /// Validates `cfg`, loads its material (secrets from `runtime`'s source) and
    /// starts watching it. Relative paths are read from the working directory:
    /// resolve them first ([`OriginationConfig::resolve_paths`]) to read them from
    /// elsewhere.
    ///
    /// # Errors
    /// A bad setting or refused material, naming its field
    /// ([`ConfigBuildError::field`]): `server_name`, `roots.files[0]`, `client_cert.key`.
    pub fn new(cfg: &OriginationConfig, runtime: &TlsRuntime) -> Result<Self, ConfigBuildError> {
        cfg.validate()?;
        let server_name = match &cfg.server_name {
            None => None,
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| ConfigBuildError::invalid("server_name", e))?,
            ),
        };
        let secrets = runtime.secrets().clone();
        let metrics = runtime.metrics().clone();
        let spec = ClientSpec {
            roots: cfg.roots.clone(),
            verify: cfg.verify,
            client_cert: cfg.client_cert.clone(),
            alpn: cfg.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            versions: crate::accept::versions(&cfg.versions),
            sni: cfg.sni,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            secrets: secrets.clone(),
            resumption: rustls::client::Resumption::in_memory_sessions(256),
        };
        let mut files: Vec<std::path::PathBuf> = match &cfg.roots {
            Roots::Files(f) if cfg.verify => f.clone(),
            _ => Vec::new(),
        };
        if let Some(KeyPair::Files { cert, key }) = &cfg.client_cert {
            files.push(cert.clone());
            files.push(key.clone());
        }
        let uses_secrets = (cfg.verify && matches!(cfg.roots, Roots::Secret(_)))
            || matches!(cfg.client_cert, Some(KeyPair::Secret(_)));
        let material = Reloadable::start(
            "tls upstream roots and client certificate".into(),
            files,
            uses_secrets.then_some(&secrets),
            cfg.rotation
                .watch_files
                .then_some(cfg.rotation.poll_interval),
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
    fn build(&self) -> Result<ClientConfig, ConfigBuildError> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|source| ConfigBuildError::Rustls {
                field: "versions".into(),
                source,
            })?;
        let builder = if self.verify {
            let roots = material::load_roots(&self.roots, "roots", &*self.secrets)?;
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(self.provider.clone())))
        };
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(pair) => {
                let ck =
                    material::load_key_pair(pair, "client_cert", &*self.secrets, &self.provider)?;
                builder.with_client_cert_resolver(Arc::new(ClientCert(Arc::new(ck))))
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
