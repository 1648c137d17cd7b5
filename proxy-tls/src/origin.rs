//! TLS origination: the `tls` upstream transport secures fresh TCP connections to
//! endpoints (SNI, roots, ALPN, client certificate, verification on by default).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{
    client::ResolvesClientCert, crypto::CryptoProvider, pki_types::ServerName, sign::CertifiedKey,
    ClientConfig, SignatureScheme,
};
use tokio::net::TcpStream;

use crate::{
    config::{KeyPair, OriginationConfig, Roots},
    error::{ConfigBuildError, HandshakeError},
    material,
    metrics::TlsMetrics,
    rotation::{Reloadable, SecretSource},
    runtime::TlsRuntime,
    upstream_verifier::UpstreamCertVerifier,
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
    subject_alt_names: Arc<[crate::san::SanMatch]>,
    client_cert: Option<KeyPair>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    sni: bool,
    provider: Arc<CryptoProvider>,
    secrets: Arc<dyn SecretSource>,
    resumption: rustls::client::Resumption,
    #[cfg(feature = "guomi")]
    guomi: Option<crate::config::GuomiOriginationConfig>,
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
            subject_alt_names: cfg.subject_alt_names.clone().into(),
            client_cert: cfg.client_cert.clone(),
            alpn: cfg.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            versions: crate::accept::versions(&cfg.versions),
            sni: cfg.sni,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            secrets: secrets.clone(),
            resumption: rustls::client::Resumption::in_memory_sessions(256),
            #[cfg(feature = "guomi")]
            guomi: cfg.guomi.clone(),
        };
        let mut files: Vec<std::path::PathBuf> = match &cfg.roots {
            Roots::Files(f) if cfg.verify => f.clone(),
            _ => Vec::new(),
        };
        if let Some(KeyPair::Files { cert, key }) = &cfg.client_cert {
            files.push(cert.clone());
            files.push(key.clone());
        }
        let mut uses_secrets = (cfg.verify && matches!(cfg.roots, Roots::Secret(_)))
            || matches!(cfg.client_cert, Some(KeyPair::Secret(_)));
        if let Some(g) = &cfg.guomi {
            match &g.roots {
                Roots::Files(f) => files.extend(f.iter().cloned()),
                Roots::Secret(_) => uses_secrets = true,
                Roots::System | Roots::Webpki => {}
            }
            match &g.client_cert {
                Some(KeyPair::Files { cert, key }) => {
                    files.push(cert.clone());
                    files.push(key.clone());
                }
                Some(KeyPair::Secret(_)) => uses_secrets = true,
                None => {}
            }
        }
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
            let tls = this.connect(tcp, endpoint).await.map_err(|e| {
                // The class tells the operator why (`tls_unknown_issuer`, ...) in the
                // local reply and the proxy's log.
                proxy_core::BoxError::from(proxy_core::upstream::TransportError::new(e.class(), e))
            })?;
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
        #[cfg(feature = "guomi")]
        if let Some(g) = &self.guomi {
            return self.build_guomi(g);
        }
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|source| ConfigBuildError::Rustls {
                field: "versions".into(),
                source,
            })?;
        let builder = if self.verify && !self.subject_alt_names.is_empty() {
            let roots = material::load_roots(&self.roots, "roots", &*self.secrets)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UpstreamCertVerifier::sans(
                    roots,
                    self.provider.clone(),
                    self.subject_alt_names.clone(),
                )))
        } else if self.verify {
            let roots = material::load_roots(&self.roots, "roots", &*self.secrets)?;
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UpstreamCertVerifier::accept_any(
                    self.provider.clone(),
                )))
        };
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(pair) => {
                let ck =
                    material::load_key_pair(pair, "client_cert", &*self.secrets, &self.provider)?;
                builder.with_client_cert_resolver(Arc::new(ClientCert(vec![Arc::new(ck)])))
            }
        };
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.sni;
        config.resumption = self.resumption.clone();
        Ok(config)
    }
}

#[cfg(feature = "guomi")]
impl ClientSpec {
    /// The Guomi client config: the RFC 8998 suites, curveSM2 and `sm2sig_sm3` (the
    /// same provider termination uses), alone or before the international ones.
    fn build_guomi(
        &self,
        g: &crate::config::GuomiOriginationConfig,
    ) -> Result<ClientConfig, ConfigBuildError> {
        use crate::{config::GuomiSuites, guomi};
        let sm2_roots = Arc::new(material::load_sm2_roots(
            &g.roots,
            "guomi.roots",
            &*self.secrets,
        )?);
        let mut certs = Vec::new();
        if let Some(pair) = &g.client_cert {
            let ck = material::load_key_pair(
                pair,
                "guomi.client_cert",
                &*self.secrets,
                &guomi::provider(),
            )?;
            certs.push(Arc::new(ck));
        }
        let (provider, versions, verifier) = match g.suites {
            GuomiSuites::Only => (
                guomi::provider(),
                vec![&rustls::version::TLS13],
                guomi::Sm2ServerVerifier::new(sm2_roots),
            ),
            GuomiSuites::SideBySide => {
                let roots = material::load_roots(&self.roots, "roots", &*self.secrets)?;
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| ConfigBuildError::invalid("roots", e))?;
                if let Some(pair) = &self.client_cert {
                    let ck = material::load_key_pair(
                        pair,
                        "client_cert",
                        &*self.secrets,
                        &self.provider,
                    )?;
                    certs.push(Arc::new(ck));
                }
                (
                    guomi::provider_with((*self.provider).clone()),
                    self.versions.clone(),
                    guomi::Sm2ServerVerifier::with_fallback(sm2_roots, webpki),
                )
            }
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|source| ConfigBuildError::Rustls {
                field: "versions".into(),
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = if certs.is_empty() {
            builder.with_no_client_auth()
        } else {
            builder.with_client_cert_resolver(Arc::new(ClientCert(certs)))
        };
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.sni;
        config.resumption = self.resumption.clone();
        Ok(config)
    }
}

/// Presents the first client certificate whose key can sign with a scheme the server
/// accepts (the SM2 one first when Guomi is configured) whenever the server asks.
#[derive(Debug)]
struct ClientCert(Vec<Arc<CertifiedKey>>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0
            .iter()
            .find(|ck| ck.key.choose_scheme(schemes).is_some())
            .cloned()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
