//! A protocol served on a listener ([`RpcServer`]) and spoken to upstream endpoints
//! ([`RpcUpstream`]): the generic machinery bound to one [`Protocol`] and its options.

use std::{future::Future, sync::Arc};

use bytes::Bytes;
use proxy_core::{proxy::ConnInfo, BoxHttp, Connection, Stream};

use crate::{
    config::{ServerOptions, UpstreamOptions},
    metrics::CodecMetrics,
    mux::{
        client::{Connect, MuxClient},
        server::{serve_connection, ServeParams},
    },
    protocol::Protocol,
    sniff::Sniff,
};

/// Serves a protocol on downstream connections.
#[derive(Debug)]
pub struct RpcServer<P> {
    protocol: Arc<P>,
    options: ServerOptions,
    metrics: Arc<CodecMetrics>,
}

impl<P: Protocol> RpcServer<P> {
    /// A server for `protocol` with `options`, counting into `metrics`.
    pub fn new(protocol: P, options: ServerOptions, metrics: Arc<CodecMetrics>) -> Self {
        Self {
            protocol: Arc::new(protocol),
            options,
            metrics,
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Whether a connection starting with `prefix` speaks this protocol.
    pub fn sniff(&self, prefix: &[u8]) -> Sniff {
        self.protocol.sniff(prefix)
    }

    /// Serves `conn` until it closes or `drain` resolves; `prefix` holds bytes already
    /// read from it. Every request goes through `service` (the listener's request
    /// stack) with the connection's facts ([`ConnInfo`] and what connection layers
    /// put in `conn.extensions`) in its extensions.
    pub async fn serve(
        &self,
        conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        drain: impl Future<Output = ()>,
    ) {
        let mut extensions = conn.extensions;
        extensions.insert(ConnInfo::new(conn.peer, conn.secure));
        let params = || ServeParams {
            protocol: &*self.protocol,
            options: &self.options,
            counters: self.metrics.protocol(self.protocol.name()),
            extensions,
        };
        match conn.stream {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                serve_connection(params(), r, w, prefix, service, drain).await
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                serve_connection(params(), r, w, prefix, service, drain).await
            }
            Stream::Boxed(s) => {
                let (r, w) = tokio::io::split(s);
                serve_connection(params(), r, w, prefix, service, drain).await
            }
        }
    }
}

/// Speaks a protocol to upstream endpoints: one [`MuxClient`] per endpoint.
#[derive(Debug)]
pub struct RpcUpstream<P> {
    protocol: Arc<P>,
    options: UpstreamOptions,
    metrics: Arc<CodecMetrics>,
}

impl<P: Protocol> RpcUpstream<P> {
    /// An upstream side for `protocol` with `options`, counting into `metrics`.
    pub fn new(protocol: P, options: UpstreamOptions, metrics: Arc<CodecMetrics>) -> Self {
        Self {
            protocol: Arc::new(protocol),
            options,
            metrics,
        }
    }

    /// A client for the endpoint `connect` opens streams to.
    pub fn client(&self, connect: impl Connect) -> MuxClient<P> {
        MuxClient::new(
            self.protocol.clone(),
            connect,
            self.options.clone(),
            self.metrics.clone(),
        )
    }
}
