//! The endpoint: accepts QUIC connections, proxies each bidirectional stream.

use std::{
    future::Future, net::SocketAddr, num::NonZeroU32, sync::atomic::Ordering::Relaxed, sync::Arc,
    time::Duration,
};

use proxy_core::cluster::Cluster;
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;

use super::{copy, stats::Active, StreamProxyError, StreamProxyStats};
use crate::CidGenerator;

/// Default idle timeout of a stream (as the TCP proxy's): one hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default bound on the bidirectional streams a connection has open at once.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default copy buffer per direction of a stream.
pub const DEFAULT_BUFFER_BYTES: usize = 16 * 1024;
/// Default time a drain gives streams in flight.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest QUIC connection idle timeout the proxy offers (quinn's default).
const MIN_CONNECTION_IDLE: Duration = Duration::from_secs(30);

/// What every connection and stream of a proxy shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) cluster: Arc<Cluster>,
    pub(super) idle_timeout: Duration,
    pub(super) buffer_bytes: usize,
    pub(super) stats: Arc<StreamProxyStats>,
}

/// Builds a [`StreamProxy`]; see [the module](super) for an example.
#[derive(Debug)]
pub struct StreamProxyBuilder {
    name: Arc<str>,
    tls: rustls::ServerConfig,
    cluster: Arc<Cluster>,
    alpn: Vec<Vec<u8>>,
    idle_timeout: Duration,
    max_concurrent_streams: NonZeroU32,
    buffer_bytes: usize,
    drain_timeout: Duration,
    cid_generator: Option<CidGenerator>,
    max_connections: Option<NonZeroU32>,
}

impl StreamProxyBuilder {
    /// A proxy named `name` (in logs) serving TLS `tls` (TLS 1.3; its ALPN list is
    /// replaced by [`alpn`](Self::alpn)'s) and proxying every stream to `cluster`.
    pub fn new(
        name: impl Into<Arc<str>>,
        tls: rustls::ServerConfig,
        cluster: Arc<Cluster>,
    ) -> Self {
        Self {
            name: name.into(),
            tls,
            cluster,
            alpn: Vec::new(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_concurrent_streams: NonZeroU32::new(DEFAULT_MAX_CONCURRENT_STREAMS)
                .unwrap_or(NonZeroU32::MIN),
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            cid_generator: None,
            max_connections: None,
        }
    }

    /// The ALPN protocols clients must offer one of (at least one; a handshake
    /// with none in common fails).
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Vec<u8>>,
    {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// A stream with no byte moving either way for this long is reset (both
    /// directions, [`codes::IDLE_TIMEOUT`](super::codes::IDLE_TIMEOUT)). The QUIC
    /// connection's idle timeout is this or 30 s, whichever is longer, so a
    /// silent stream is reset by its own timer before its connection times out
    /// (the client's own idle timeout, if shorter, still applies). Default
    /// [`DEFAULT_IDLE_TIMEOUT`]; zero is refused by [`bind`](Self::bind).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The bidirectional streams a client may have open at once per connection
    /// (QUIC `initial_max_streams_bidi`; the client waits for more credit past
    /// it). Default [`DEFAULT_MAX_CONCURRENT_STREAMS`].
    pub fn max_concurrent_streams(mut self, streams: NonZeroU32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// The copy buffer per direction of a stream, clamped to 512 B - 1 MiB.
    /// Default [`DEFAULT_BUFFER_BYTES`].
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes.clamp(512, 1 << 20);
        self
    }

    /// How long a drain lets streams in flight go on. Default
    /// [`DEFAULT_DRAIN_TIMEOUT`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// At most this many connections at once (handshaking or open); a client
    /// past it is refused (`CONNECTION_REFUSED`) and counted. With
    /// [`max_concurrent_streams`](Self::max_concurrent_streams) it bounds the
    /// streams (and upstream connections) of the whole proxy. Default: no limit.
    pub fn max_connections(mut self, max: Option<NonZeroU32>) -> Self {
        self.max_connections = max;
        self
    }

    /// Issues QUIC-LB connection IDs from `generator`, so the proxy can stand behind
    /// the [`lb`](crate::lb) forwarder.
    pub fn cid_generator(mut self, generator: CidGenerator) -> Self {
        self.cid_generator = Some(generator);
        self
    }

    /// Binds `address` (UDP) and starts the endpoint; must be called within a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`StreamProxyError::NoRuntime`] outside a tokio runtime,
    /// [`StreamProxyError::NoAlpn`] without ALPN protocols,
    /// [`StreamProxyError::ZeroIdleTimeout`], [`StreamProxyError::CipherSuite`] when
    /// the TLS config does not suit QUIC, [`StreamProxyError::Bind`] when the socket
    /// cannot be bound.
    pub fn bind(self, address: SocketAddr) -> Result<StreamProxy, StreamProxyError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StreamProxyError::NoRuntime);
        }
        let mut tls = self.tls.clone();
        if self.alpn.is_empty() || self.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
            return Err(StreamProxyError::NoAlpn);
        }
        if self.idle_timeout.is_zero() {
            return Err(StreamProxyError::ZeroIdleTimeout);
        }
        tls.alpn_protocols = self.alpn.clone();
        tls.max_early_data_size = 0;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(StreamProxyError::CipherSuite)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(self.max_concurrent_streams.get().into())
            .max_concurrent_uni_streams(0u32.into())
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(self.idle_timeout.max(MIN_CONNECTION_IDLE))
                    .unwrap_or_else(|_| quinn::VarInt::MAX.into()),
            ));
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport));
        let mut endpoint_config = quinn::EndpointConfig::default();
        if let Some(generator) = self.cid_generator {
            endpoint_config.cid_generator(generator.into_quinn_factory());
        }
        let socket =
            std::net::UdpSocket::bind(address).map_err(|source| StreamProxyError::Bind {
                addr: address,
                source,
            })?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(StreamProxyError::Socket)?;
        let local = endpoint.local_addr().map_err(StreamProxyError::Socket)?;
        Ok(StreamProxy {
            endpoint,
            local,
            name: self.name,
            drain_timeout: self.drain_timeout,
            max_connections: self.max_connections,
            shared: Arc::new(Shared {
                cluster: self.cluster,
                idle_timeout: self.idle_timeout,
                buffer_bytes: self.buffer_bytes,
                stats: Arc::default(),
            }),
        })
    }
}

/// A bound QUIC stream to TCP proxy; run it with [`serve`](Self::serve).
#[derive(Debug)]
pub struct StreamProxy {
    endpoint: quinn::Endpoint,
    local: SocketAddr,
    name: Arc<str>,
    drain_timeout: Duration,
    max_connections: Option<NonZeroU32>,
    shared: Arc<Shared>,
}

impl StreamProxy {
    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The proxy's counters, shared with it (they go on counting while it serves).
    pub fn stats(&self) -> Arc<StreamProxyStats> {
        self.shared.stats.clone()
    }

    /// The counters in the Prometheus text format under the proxy's name.
    pub fn metrics(&self) -> super::StreamProxyMetrics {
        super::StreamProxyMetrics::new(self.name.to_string(), self.stats())
    }

    /// Serves until `shutdown` resolves, then drains: no new connections or
    /// streams, the streams in flight get the drain timeout, then every connection
    /// is closed (application code 0).
    pub async fn serve<F>(self, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        let (stop, stopped) = watch::channel(());
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    while connections.try_join_next().is_some() {}
                    if self
                        .max_connections
                        .is_some_and(|max| connections.len() >= max.get() as usize)
                    {
                        self.shared.stats.connections_refused.fetch_add(1, Relaxed);
                        incoming.refuse();
                        continue;
                    }
                    let span = tracing::debug_span!(
                        "quic_stream_proxy", listener = %self.name, peer = %incoming.remote_address()
                    );
                    let shared = self.shared.clone();
                    let stopped = stopped.clone();
                    connections.spawn(connection(shared, incoming, stopped).instrument(span));
                }
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(listener = %self.name, "quic stream proxy draining");
        self.endpoint.set_server_config(None);
        drop(stop);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain_timeout, drained)
            .await
            .is_err()
        {
            connections.abort_all();
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// One connection: its streams each in a task, until the client closes it or the
/// proxy drains (`stopped` sees its sender dropped).
async fn connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    mut stopped: watch::Receiver<()>,
) {
    let stats = &shared.stats;
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            stats
                .handshake_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    };
    stats
        .handshakes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _active = Active::new(&stats.connections_active);
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let shared = shared.clone();
                    // Read per stream: after a migration, the new address.
                    let peer = conn.remote_address();
                    streams.spawn(async move { copy::stream(&shared, send, recv, peer).await }.in_current_span());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    break;
                }
            },
            _ = stopped.changed() => break,
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    while streams.join_next().await.is_some() {}
    conn.close(0u32.into(), b"");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn builder() -> StreamProxyBuilder {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let tls = crate::h3::server_config(
            cert.cert.pem().as_bytes(),
            cert.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        let cluster = Cluster::builder("b")
            .endpoint("127.0.0.1:9".parse().unwrap())
            .build()
            .unwrap();
        StreamProxyBuilder::new("s", tls, cluster)
    }

    #[test]
    fn binding_outside_a_runtime_is_an_error() {
        let err = builder()
            .alpn([b"x".to_vec()])
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, StreamProxyError::NoRuntime), "{err:?}");
    }

    #[tokio::test]
    async fn bad_settings_and_a_busy_address_are_refused() {
        let addr = "127.0.0.1:0".parse().unwrap();
        let err = builder().bind(addr).unwrap_err();
        assert!(matches!(err, StreamProxyError::NoAlpn), "{err:?}");
        let err = builder().alpn([Vec::new()]).bind(addr).unwrap_err();
        assert!(matches!(err, StreamProxyError::NoAlpn), "{err:?}");
        let err = builder()
            .alpn([b"x".to_vec()])
            .idle_timeout(Duration::ZERO)
            .bind(addr)
            .unwrap_err();
        assert!(matches!(err, StreamProxyError::ZeroIdleTimeout), "{err:?}");
        let proxy = builder().alpn([b"x".to_vec()]).bind(addr).unwrap();
        let busy = proxy.local_addr();
        let err = builder().alpn([b"x".to_vec()]).bind(busy).unwrap_err();
        assert!(
            matches!(err, StreamProxyError::Bind { addr, .. } if addr == busy),
            "{err:?}"
        );
    }
}
