//! A protocol served on a listener ([`RpcServer`], a core `ProtocolServer`) and
//! spoken to upstream endpoints ([`RpcUpstream`], a core `ProtocolUpstream`): the
//! generic machinery bound to one [`Protocol`] and its options.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use proxy_core::{
    protocol::{
        self as core, BoxFuture, ProtocolClient, ProtocolServer, ProtocolUpstream, ServeContext,
    },
    proxy::ConnInfo,
    upstream::Connector,
    BoxHttp, Connection, HttpRequest, HttpResponse, ProxyError, Stream,
};

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
    options: Arc<ServerOptions>,
    metrics: Arc<CodecMetrics>,
}

impl<P> Clone for RpcServer<P> {
    fn clone(&self) -> Self {
        Self {
            protocol: self.protocol.clone(),
            options: self.options.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Timeouts of one served connection.
#[derive(Debug, Clone, Copy, Default)]
struct Timeouts {
    idle: Option<Duration>,
    frame: Option<Duration>,
}

impl<P: Protocol> RpcServer<P> {
    /// A server for `protocol` with `options`, counting into `metrics`.
    pub fn new(protocol: P, options: ServerOptions, metrics: Arc<CodecMetrics>) -> Self {
        Self {
            protocol: Arc::new(protocol),
            options: Arc::new(options),
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
    /// read from it. Every request goes through `service` (a request stack) with the
    /// connection's facts ([`ConnInfo`] and what connection layers put in
    /// `conn.extensions`) in its extensions.
    pub async fn serve(
        &self,
        mut conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        drain: impl Future<Output = ()>,
    ) {
        let info = ConnInfo::new(conn.peer, conn.secure);
        conn.extensions.insert(info);
        self.run(conn, prefix, service, drain, Timeouts::default())
            .await
    }

    async fn run(
        &self,
        conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        drain: impl Future<Output = ()>,
        timeouts: Timeouts,
    ) {
        let params = || ServeParams {
            protocol: &*self.protocol,
            options: &self.options,
            counters: self.metrics.protocol(self.protocol.name()),
            extensions: conn.extensions,
            idle_timeout: timeouts.idle,
            frame_timeout: timeouts.frame,
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

impl<P: Protocol> ProtocolServer for RpcServer<P> {
    fn sniff(&self, prefix: &[u8]) -> core::Sniff {
        match self.protocol.sniff(prefix) {
            Sniff::Match => core::Sniff::Match,
            Sniff::NoMatch => core::Sniff::NoMatch,
            Sniff::NeedMore => core::Sniff::NeedMore,
        }
    }

    fn serve(
        &self,
        mut conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        ctx: ServeContext,
    ) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            // The core's service already carries the connection facts.
            conn.extensions = http::Extensions::new();
            let timeouts = Timeouts {
                idle: Some(ctx.limits.idle_timeout.max(crate::config::DEFAULT_IDLE)),
                frame: Some(ctx.limits.header_read_timeout),
            };
            let mut drain = ctx.drain;
            this.run(conn, prefix, service, drain.signaled(), timeouts)
                .await
        })
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

impl<P: Protocol> ProtocolUpstream for RpcUpstream<P> {
    fn client(&self, connector: Connector) -> Arc<dyn ProtocolClient> {
        let connect = move || {
            let connector = connector.clone();
            async move { connector.connect().await }
        };
        Arc::new(RpcUpstream::client(self, connect))
    }
}

impl<P: Protocol> ProtocolClient for MuxClient<P> {
    fn send(&self, req: HttpRequest) -> BoxFuture<Result<HttpResponse, ProxyError>> {
        let this = self.clone();
        Box::pin(async move { MuxClient::send(&this, req).await })
    }
}
