//! TLS termination: the `tls` network filter, a [`tower::Layer`] over the connection
//! stack ([`proxy_core::connection`]).
//!
//! For each accepted connection: a handshake under `handshake_timeout` (ClientHello
//! read with rustls's `Acceptor`; the Guomi config when configured and the client
//! offers an RFC 8998 suite, the international one otherwise; a slot of the worker's
//! `max_handshakes_in_progress` taken, when set, until the server's flight is sent;
//! the signing step on an offload engine when configured), then `conn.stream` becomes the decrypted
//! [`Stream::Boxed`], `conn.secure` is set and the negotiated facts go into
//! `conn.extensions` ([`Negotiated`] and core's `TlsInfo`). A failed handshake ends
//! only that connection, after the proper alert, and counts
//! `proxy_tls_handshake_failures_total{reason}`.

mod early_data;
mod handover;
mod handshake;
mod server_config;
mod session;
mod slots;
mod stream;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use proxy_core::{BoxError, Connection, Stream};
use tokio::io::AsyncWriteExt;
use tower::{Layer, Service};
use tracing::Instrument;

pub use handshake::Negotiated;
pub(crate) use server_config::versions;
pub use session::SessionState;

use self::{
    server_config::{ServerConfigs, ServerSpec},
    slots::HandshakeSlots,
    stream::{Closed, Decrypted},
};
#[cfg(feature = "offload")]
use crate::offload::Dispatcher;
use crate::{
    config::TerminationConfig,
    error::{ConfigBuildError, HandshakeError},
    metrics::TlsMetrics,
    rotation::{serve_with_drain, Reloadable, Retirement},
    runtime::TlsRuntime,
};

/// The `tls` network filter: terminates TLS on a listener's connections, as a
/// [`Layer`] over any connection service `S: Service<Connection>`. Built once from a
/// validated [`TerminationConfig`]; cheap to clone (shared state in an `Arc`), and the
/// material rotates underneath it.
///
/// # Example
///
/// A layer built in code from a typed config (a test certificate handed over as a
/// secret; [`CertificateConfig::files`](crate::config::CertificateConfig::files)
/// reads PEM files instead), composed with `ServiceBuilder` around a connection
/// service that echoes, and one connection served over an in-memory pipe:
///
/// ```
/// use std::sync::Arc;
/// use proxy_core::{BoxError, Connection, Stream};
/// use proxy_tls::{
///     config::{CertificateConfig, TerminationConfig},
///     rotation::{MemorySecrets, Secret},
///     TerminationLayer, TlsRuntime,
/// };
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let test = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()])?;
/// let secrets = Arc::new(MemorySecrets::default());
/// secrets.set("web", Secret::key_pair(test.cert.pem(), test.key_pair.serialize_pem()));
/// let runtime = TlsRuntime::with_secrets(secrets);
///
/// let cfg = TerminationConfig::new(vec![CertificateConfig::secret("web")]);
/// let tls = TerminationLayer::new(&cfg, &runtime)?;
///
/// let echo = ServiceBuilder::new()
///     .layer(tls)
///     .service(tower::service_fn(|mut conn: Connection| async move {
///         assert!(conn.secure); // conn.stream is the decrypted stream
///         let mut word = [0u8; 5];
///         conn.stream.read_exact(&mut word).await?;
///         conn.stream.write_all(&word).await?;
///         conn.stream.shutdown().await?;
///         Ok::<_, BoxError>(())
///     }));
///
/// let (client_io, server_io) = tokio::io::duplex(64 * 1024);
/// let conn = Connection {
///     stream: Stream::Boxed(Box::new(server_io)),
///     peer: None,
///     listener: "web".into(),
///     secure: false,
///     extensions: Default::default(),
/// };
/// let served = tokio::spawn(echo.oneshot(conn));
///
/// // A client trusting the test certificate.
/// let mut roots = rustls::RootCertStore::empty();
/// roots.add(test.cert.der().clone())?;
/// let client = rustls::ClientConfig::builder_with_provider(Arc::new(
///     rustls::crypto::ring::default_provider(),
/// ))
/// .with_safe_default_protocol_versions()?
/// .with_root_certificates(roots)
/// .with_no_client_auth();
/// let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
/// let mut tls = connector.connect("a.test".try_into()?, client_io).await?;
/// tls.write_all(b"hello").await?;
/// let mut echoed = Vec::new();
/// tls.read_to_end(&mut echoed).await?;
/// assert_eq!(echoed, b"hello");
/// served.await??;
/// assert_eq!(runtime.metrics().handshakes(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TerminationLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    material: Arc<Reloadable<ServerConfigs>>,
    handshake_timeout: Duration,
    slots: Option<HandshakeSlots>,
    drain: Duration,
    #[cfg(feature = "offload")]
    offload: Option<Dispatcher>,
    metrics: Arc<TlsMetrics>,
    /// The hot upgrade hook put in each TLS 1.3 connection's extensions (one
    /// allocation per layer, a reference count per connection).
    hand_over: proxy_core::LayerHandOver,
}

impl TerminationLayer {
    /// Validates `cfg`, loads its material (secrets from `runtime`'s source, offload
    /// engines from its engines) and starts watching it. Relative paths are read from
    /// the working directory: resolve them first
    /// ([`TerminationConfig::resolve_paths`]) to read them from elsewhere.
    ///
    /// # Errors
    /// A bad setting or refused material, naming its field
    /// ([`ConfigBuildError::field`]): `certificates[1].cert`, `client_auth.roots`.
    pub fn new(cfg: &TerminationConfig, runtime: &TlsRuntime) -> Result<Self, ConfigBuildError> {
        Self::for_listener(cfg, runtime, None)
    }

    /// As [`TerminationLayer::new`] for listener `listener`, whose resumption state
    /// `runtime` keeps while its `session` and `early_data` settings stay the same
    /// (so tickets stay valid across a config reload).
    ///
    /// # Errors
    /// As [`TerminationLayer::new`].
    pub fn for_listener(
        cfg: &TerminationConfig,
        runtime: &TlsRuntime,
        listener: Option<&str>,
    ) -> Result<Self, ConfigBuildError> {
        cfg.validate()?;
        let sessions = runtime.sessions(listener, cfg)?;
        Self::build(cfg, runtime, sessions)
    }

    /// As [`TerminationLayer::new`], resuming sessions from `sessions` (kept from a
    /// previous layer, so tickets stay valid across a rebuild).
    ///
    /// # Errors
    /// As [`TerminationLayer::new`].
    pub fn with_sessions(
        cfg: &TerminationConfig,
        runtime: &TlsRuntime,
        sessions: SessionState,
    ) -> Result<Self, ConfigBuildError> {
        cfg.validate()?;
        Self::build(cfg, runtime, sessions)
    }

    /// The layer of a validated `cfg`.
    fn build(
        cfg: &TerminationConfig,
        runtime: &TlsRuntime,
        sessions: SessionState,
    ) -> Result<Self, ConfigBuildError> {
        #[cfg(feature = "offload")]
        let offload = match &cfg.offload {
            Some(o) => Some(runtime.dispatcher(o)?),
            None => None,
        };
        let secrets = runtime.secrets().clone();
        let spec = ServerSpec::new(cfg, secrets.clone(), sessions);
        let files = spec.files();
        let watch_secrets = spec.uses_secrets().then_some(&secrets);
        let metrics = runtime.metrics().clone();
        let material = Reloadable::start(
            format!("tls listener certificates ({} entries)", spec.certs.len()),
            files,
            watch_secrets,
            cfg.rotation
                .watch_files
                .then_some(cfg.rotation.poll_interval),
            metrics.clone(),
            Box::new(move || spec.build()),
        )?;
        Ok(Self {
            shared: Arc::new(Shared {
                material,
                handshake_timeout: cfg.handshake_timeout,
                slots: cfg
                    .max_handshakes_in_progress
                    .map(|cap| HandshakeSlots::new(cap, metrics.clone())),
                drain: cfg.rotation.drain,
                #[cfg(feature = "offload")]
                offload,
                metrics,
                hand_over: handover::hook(),
            }),
        })
    }

    /// Re-reads the material now (files and secrets), as a poll or secret change
    /// would: validated first, swapped on success, refused otherwise.
    ///
    /// # Errors
    /// Why the new material was refused, naming the field; the running material stays.
    pub fn reload(&self) -> Result<(), ConfigBuildError> {
        self.shared.material.reload()
    }

    /// The layer's counters.
    pub fn metrics(&self) -> &Arc<TlsMetrics> {
        &self.shared.metrics
    }
}

impl TryFrom<&TerminationConfig> for TerminationLayer {
    type Error = ConfigBuildError;

    /// A layer with its own [`TlsRuntime`] (no secrets, software offload engines).
    fn try_from(cfg: &TerminationConfig) -> Result<Self, ConfigBuildError> {
        Self::new(cfg, &TlsRuntime::default())
    }
}

impl<S> Layer<S> for TerminationLayer {
    type Service = Termination<S>;

    fn layer(&self, inner: S) -> Termination<S> {
        Termination {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`TerminationLayer`]: handshakes, then calls `S` with the
/// decrypted connection.
#[derive(Debug, Clone)]
pub struct Termination<S> {
    inner: S,
    shared: Arc<Shared>,
}

// === impl Termination ===

impl<S> Service<Connection> for Termination<S>
where
    S: Service<Connection, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    // The handshake (key exchange and signatures) dwarfs one allocation.
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, conn: Connection) -> Self::Future {
        // The instance made ready is the one called, after the handshake.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let span = tracing::debug_span!("tls_accept", peer = ?conn.peer, listener = %conn.listener);
        Box::pin(serve(self.shared.clone(), inner, conn).instrument(span))
    }
}

async fn serve<S>(shared: Arc<Shared>, mut inner: S, mut conn: Connection) -> Result<(), BoxError>
where
    S: Service<Connection, Response = ()>,
    S::Error: Into<BoxError>,
{
    let generation = shared.material.current();
    let io = std::mem::replace(&mut conn.stream, Stream::Boxed(Box::new(Closed)));
    if let Some(state) = conn.extensions.remove::<proxy_core::LayerState>() {
        // Handed in by the process before a hot upgrade: no handshake, the session goes on.
        let (continued, facts) = match handover::adopt(io, &state) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "tls session handed in cannot be continued");
                return Ok(());
            }
        };
        drop(state);
        tracing::debug!(alpn = ?facts.alpn.as_deref().map(String::from_utf8_lossy), "tls session handed in");
        let multiplexed = facts.alpn.as_deref() == Some(b"h2");
        let (retirement, retire) = Retirement::new();
        conn.stream = Stream::Boxed(Box::new(Decrypted::new(
            Bytes::new(),
            continued,
            retirement.clone(),
        )));
        conn.secure = true;
        conn.extensions.insert(retire);
        conn.extensions.insert(shared.hand_over.clone());
        crate::identity::insert_tls_info(&mut conn.extensions, &facts);
        conn.extensions.insert(facts);
        let served = async move { inner.call(conn).await.map_err(Into::into) };
        return serve_with_drain(served, &generation, shared.drain, retirement, multiplexed).await;
    }
    // Watched for record boundaries from the first byte: a session goes over in a hot
    // upgrade only when rustls holds no part of a record.
    let mut io = crate::continued::RecordBoundary::new(io);
    let configs = &generation.value;
    let slots = shared.slots.as_ref();
    #[cfg(feature = "offload")]
    let accept = handshake::accept(&mut io, configs, slots, shared.offload.as_ref());
    #[cfg(not(feature = "offload"))]
    let accept = handshake::accept(&mut io, configs, slots);
    let result = tokio::time::timeout(shared.handshake_timeout, accept)
        .await
        .unwrap_or(Err(HandshakeError::Timeout));
    let established = match result {
        Ok(e) => e,
        Err(err) => {
            shared.metrics.failure(err.reason(), false);
            tracing::debug!(reason = err.reason(), error = %crate::error_chain(&err), "tls handshake failed");
            return Ok(());
        }
    };
    let handshake::Established {
        conn: tls,
        early_data,
        facts,
    } = established;
    let early = !early_data.is_empty();
    let mut stream = match handshake::into_stream(io, tls, configs.international.clone()).await {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.failure("io", false);
            tracing::debug!(error = %e, "tls stream setup failed");
            return Ok(());
        }
    };
    if early && !early_data::allowed(&early_data) {
        shared
            .metrics
            .failure(HandshakeError::EarlyDataRefused.reason(), false);
        if early_data::looks_like_http1(&early_data) {
            let _ = stream.write_all(early_data::TOO_EARLY).await;
        }
        let _ = stream.shutdown().await;
        return Ok(());
    }
    shared.metrics.handshake(
        facts.version == "TLSv1.3",
        facts.resumed,
        facts.guomi,
        early,
    );
    tracing::debug!(version = facts.version, alpn = ?facts.alpn.as_deref().map(String::from_utf8_lossy), resumed = facts.resumed, guomi = facts.guomi, "tls handshake done");
    let (retirement, retire) = Retirement::new();
    let multiplexed = facts.alpn.as_deref() == Some(b"h2");
    conn.stream = Stream::Boxed(Box::new(Decrypted::new(
        Bytes::from(early_data),
        stream,
        retirement.clone(),
    )));
    conn.secure = true;
    conn.extensions.insert(retire);
    if facts.version == "TLSv1.3" && !facts.guomi {
        conn.extensions.insert(shared.hand_over.clone());
    }
    crate::identity::insert_tls_info(&mut conn.extensions, &facts);
    conn.extensions.insert(facts);
    let served = async move { inner.call(conn).await.map_err(Into::into) };
    serve_with_drain(served, &generation, shared.drain, retirement, multiplexed).await
}
