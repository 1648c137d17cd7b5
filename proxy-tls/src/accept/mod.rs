//! TLS termination: the `tls` network filter.
//!
//! For each accepted connection: a handshake under `handshake_timeout` (ClientHello
//! read with rustls's `Acceptor`; the Guomi config when configured and the client
//! offers an RFC 8998 suite, the international one otherwise; the signing step on an
//! offload engine when configured), then `conn.stream` becomes the decrypted
//! [`Stream::Boxed`], `conn.secure` is set and the negotiated facts go into
//! `conn.extensions` ([`Negotiated`] and core's `TlsInfo`). A failed handshake ends
//! only that connection, after the proper alert, and counts
//! `proxy_tls_handshake_failures_total{reason}`.

mod early_data;
mod handshake;
mod server_config;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use proxy_core::{BoxConn, Connection, Stream};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

pub use handshake::Negotiated;
pub use server_config::SessionState;
pub(crate) use server_config::{certificate_source, versions};

use self::{
    early_data::{Closed, Prefixed},
    server_config::{ServerConfigs, ServerSpec},
};
use crate::{
    config::TerminationConfig,
    error::{ConfigBuildError, HandshakeError},
    metrics::TlsMetrics,
    offload::Dispatcher,
    rotation::{serve_with_drain, Reloadable, RetireOnRead, Retirement, SecretSource},
};

/// The `tls` network filter: terminates TLS on a listener's connections. Cheap to
/// clone; material rotates underneath it.
#[derive(Debug, Clone)]
pub struct TerminationLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    material: Arc<Reloadable<ServerConfigs>>,
    handshake_timeout: Duration,
    drain: Duration,
    offload: Option<Dispatcher>,
    metrics: Arc<TlsMetrics>,
}

impl TerminationLayer {
    /// Validates `cfg`, loads its material and starts watching it.
    ///
    /// # Errors
    /// A bad setting (naming the field) or refused material (naming the file).
    pub fn new(
        cfg: &TerminationConfig,
        secrets: Arc<dyn SecretSource>,
        offload: Option<Dispatcher>,
        metrics: Arc<TlsMetrics>,
    ) -> Result<Self, ConfigBuildError> {
        Self::with_sessions(cfg, secrets, offload, metrics, SessionState::new(cfg)?)
    }

    /// As [`TerminationLayer::new`], resuming sessions from `sessions` (kept from a
    /// previous layer of the same listener, so tickets stay valid across a reload).
    ///
    /// # Errors
    /// A bad setting (naming the field) or refused material (naming the file).
    pub fn with_sessions(
        cfg: &TerminationConfig,
        secrets: Arc<dyn SecretSource>,
        offload: Option<Dispatcher>,
        metrics: Arc<TlsMetrics>,
        sessions: SessionState,
    ) -> Result<Self, ConfigBuildError> {
        let spec = ServerSpec::from_config(cfg, secrets.clone(), sessions)?;
        let files = spec.files();
        let watch_secrets = spec.uses_secrets().then_some(&secrets);
        let material = Reloadable::start(
            format!("tls listener certificates ({} entries)", spec.certs.len()),
            files,
            watch_secrets,
            cfg.rotation.poll_interval,
            metrics.clone(),
            Box::new(move || spec.build()),
        )?;
        Ok(Self {
            shared: Arc::new(Shared {
                material,
                handshake_timeout: cfg.handshake_timeout,
                drain: cfg.rotation.drain,
                offload,
                metrics,
            }),
        })
    }

    /// Re-reads the material now (files and secrets), as a poll or secret change
    /// would: validated first, swapped on success, refused otherwise.
    ///
    /// # Errors
    /// Why the new material was refused; the running material stays.
    pub fn reload(&self) -> Result<(), ConfigBuildError> {
        self.shared.material.reload()
    }

    /// The layer's counters.
    pub fn metrics(&self) -> &Arc<TlsMetrics> {
        &self.shared.metrics
    }

    /// Wraps `inner`: it receives connections whose stream is decrypted.
    pub fn layer(&self, inner: BoxConn) -> BoxConn {
        let shared = self.shared.clone();
        BoxConn::new(tower::service_fn(move |conn: Connection| {
            let span =
                tracing::debug_span!("tls_accept", peer = ?conn.peer, listener = %conn.listener);
            serve(shared.clone(), inner.clone(), conn).instrument(span)
        }))
    }
}

async fn serve(
    shared: Arc<Shared>,
    inner: BoxConn,
    mut conn: Connection,
) -> Result<(), proxy_core::BoxError> {
    let generation = shared.material.current();
    let mut io = std::mem::replace(&mut conn.stream, Stream::Boxed(Box::new(Closed)));
    let configs = &generation.value;
    let result = tokio::time::timeout(
        shared.handshake_timeout,
        handshake::accept(&mut io, configs, shared.offload.as_ref()),
    )
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
    conn.stream = if early {
        let stream = Prefixed::new(Bytes::from(early_data), stream);
        Stream::Boxed(Box::new(RetireOnRead::new(stream, retirement.clone())))
    } else {
        Stream::Boxed(Box::new(RetireOnRead::new(stream, retirement.clone())))
    };
    conn.secure = true;
    conn.extensions.insert(retire);
    crate::identity::insert_tls_info(&mut conn.extensions, &facts);
    conn.extensions.insert(facts);
    serve_with_drain(
        inner,
        conn,
        &generation,
        shared.drain,
        retirement,
        multiplexed,
    )
    .await
}
