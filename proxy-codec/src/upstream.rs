//! [`RpcUpstream`]: a protocol spoken to upstream endpoints, one pooled multiplexed
//! [`MuxClient`] per endpoint (a core `ProtocolUpstream` on clusters, or driven from
//! code).

use std::sync::Arc;

use proxy_core::{
    protocol::{BoxFuture, ProtocolClient, ProtocolUpstream},
    upstream::Connector,
    HttpRequest, HttpResponse, ProxyError,
};

use crate::{
    config::UpstreamOptions,
    error::OptionsError,
    metrics::CodecMetrics,
    mux::client::{Connect, MuxClient},
    protocol::Protocol,
};

/// Speaks a [`Protocol`] to upstream endpoints: [`RpcUpstream::client`] gives the
/// multiplexed client of one endpoint, a `tower` service of `http::Request`s.
///
/// Built from code with [`RpcUpstream::new`] and typed [`UpstreamOptions`]; a cluster
/// with `protocol: dubbo` builds the same from its `protocol_options` section
/// ([`crate::register`]).
///
/// # Example
///
/// A Bolt client behind a `ServiceBuilder` stack, calling an in-memory Bolt endpoint
/// (an [`crate::RpcServer`]; each connection the client opens is a fresh
/// `tokio::io::duplex`). A [`std::net::SocketAddr`] connects over TCP instead.
///
/// ```
/// use std::time::Duration;
///
/// use http_body_util::BodyExt;
/// use proxy_codec::{
///     config::{ServerOptions, UpstreamOptions}, Bolt, RpcServer, RpcUpstream,
/// };
/// use proxy_core::{BoxError, BoxHttp, HttpRequest, HttpResponse, Stream};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // The endpoint: a Bolt server answering with the caller's header and path.
/// let endpoint = RpcServer::new(Bolt, ServerOptions::default())?;
/// let app = BoxHttp::new(service_fn(|req: HttpRequest| async move {
///     let caller = req.headers()["x-caller"].to_str()?.to_owned();
///     Ok::<_, BoxError>(HttpResponse::new(format!("{caller} called {}", req.uri().path()).into()))
/// }));
/// let connect = move || {
///     let (endpoint, app) = (endpoint.clone(), app.clone());
///     async move {
///         let (near, far) = tokio::io::duplex(64 * 1024);
///         tokio::spawn(async move { endpoint.serve_stream(far, app, std::future::pending()).await });
///         Ok(Stream::Boxed(Box::new(near)))
///     }
/// };
///
/// let upstream = RpcUpstream::new(
///     Bolt,
///     UpstreamOptions {
///         request_timeout: Some(Duration::from_secs(2)),
///         heartbeat_interval: Some(Duration::from_secs(30)),
///         ..UpstreamOptions::default()
///     },
/// )?;
/// let client = ServiceBuilder::new()
///     .map_request(|mut req: HttpRequest| {
///         // Headers travel in the Bolt header map.
///         req.headers_mut().insert("x-caller", http::HeaderValue::from_static("docs"));
///         req
///     })
///     .service(upstream.client(connect));
///
/// let req = http::Request::post("/com.example.Echo:1.0/echo").body("hi".into())?;
/// let resp = client.oneshot(req).await?;
/// assert_eq!(resp.status(), 200);
/// let body = resp.into_body().collect().await?.to_bytes();
/// assert_eq!(body, "docs called /com.example.Echo:1.0/echo");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RpcUpstream<P> {
    protocol: Arc<P>,
    options: UpstreamOptions,
    metrics: Arc<CodecMetrics>,
}

impl<P> Clone for RpcUpstream<P> {
    fn clone(&self) -> Self {
        Self {
            protocol: self.protocol.clone(),
            options: self.options.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

// === impl RpcUpstream ===

impl<P: Protocol> RpcUpstream<P> {
    /// An upstream side for `protocol` with `options`, counting into counters of its
    /// own (share them with [`RpcUpstream::with_metrics`]).
    ///
    /// # Errors
    /// An option serde accepts but the client cannot use (a zero size or duration),
    /// naming the field.
    pub fn new(protocol: P, options: UpstreamOptions) -> Result<Self, OptionsError> {
        options.validate()?;
        Ok(Self {
            protocol: Arc::new(protocol),
            options,
            metrics: Arc::default(),
        })
    }

    /// The same upstream side counting into `metrics` (shared by every server and
    /// upstream of a proxy, rendered on its admin page).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<CodecMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The options.
    pub fn options(&self) -> &UpstreamOptions {
        &self.options
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<CodecMetrics> {
        &self.metrics
    }

    /// A client for the endpoint `connect` opens streams to: an address (plain TCP),
    /// or a closure returning a stream.
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
        Box::pin(self.clone().send_owned(req))
    }
}
