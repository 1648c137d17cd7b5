//! Serving a request stack built in code on a listener: no config file, no registry.

use std::{future::Future, net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::listen::{self, Bound, ListenerRuntime, ListenerSettings};
use crate::{
    config::{ConnectionLimits, ListenAddress, ListenerProtocol},
    connection::{BoxConn, ConnLayerFn, Connection},
    metrics::{ConnStats, RequestStats},
    router::RouteTable,
    snapshot::Routing,
    BoxHttp,
};

/// A listener serving a request stack assembled in code: the same accept loop,
/// HTTP/1.1 codec, HTTP/2, protocol detection, limits and network layers as a
/// config-built server, around any `tower` service over the one request type.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxHttp, HttpListener, HttpRequest, HttpResponse};
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hello = tower::service_fn(|_req: HttpRequest| async {
///     Ok::<_, proxy_core::BoxError>(HttpResponse::new(Body::from("hello\n")))
/// });
/// let stack = BoxHttp::new(
///     ServiceBuilder::new()
///         .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
///             http::header::SERVER,
///             http::HeaderValue::from_static("my-proxy"),
///         ))
///         .service(hello),
/// );
/// let listener = HttpListener::builder("web").bind("127.0.0.1:0".parse()?)?;
/// let addr = listener.local_addr();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(listener.serve(stack, async { let _ = stopped.await; }));
///
/// let mut tcp = tokio::net::TcpStream::connect(addr).await?;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
/// let mut answer = String::new();
/// tcp.read_to_string(&mut answer).await?;
/// assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
/// assert!(answer.contains("server: my-proxy"), "{answer}");
/// let _ = stop.send(());
/// server.await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct HttpListenerBuilder {
    name: String,
    protocol: ListenerProtocol,
    limits: ConnectionLimits,
    network_layers: Vec<ConnLayerFn>,
    protocols: Vec<Arc<dyn crate::protocol::ProtocolServer>>,
}

impl std::fmt::Debug for HttpListenerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListenerBuilder")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("network_layers", &self.network_layers.len())
            .finish_non_exhaustive()
    }
}

/// A bound listener, ready to serve (see [`HttpListenerBuilder`]).
#[derive(Debug)]
pub struct HttpListener {
    bound: Bound,
    local: SocketAddr,
    settings: HttpListenerBuilder,
}

impl HttpListener {
    /// A builder for a listener named `name` (its metrics label).
    pub fn builder(name: impl Into<String>) -> HttpListenerBuilder {
        HttpListenerBuilder {
            name: name.into(),
            protocol: ListenerProtocol::Auto,
            limits: ConnectionLimits::default(),
            network_layers: Vec::new(),
            protocols: Vec::new(),
        }
    }

    /// The bound address (the port chosen when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves `service` on this listener until `shutdown` completes, then stops
    /// accepting; open connections finish their current request and close.
    pub async fn serve<F>(self, service: BoxHttp, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        let b = self.settings;
        let empty = RouteTable::build("", &[], &|_| false).ok();
        let Some(routes) = empty else {
            return;
        };
        let routing = Arc::new(ArcSwap::from_pointee(Routing {
            routes,
            clusters: Arc::default(),
            xff: false,
            via: None,
            body_buffer: crate::proxy::BodyBuffer::default(),
            stats: Arc::new(RequestStats::default()),
            record_route: false,
        }));
        let settings = ListenerSettings {
            protocol: b.protocol,
            protocols: b.protocols.into(),
            limits: Arc::new(b.limits),
            service,
            direct: None,
            conn_layers: b.network_layers,
        };
        let runtime = Arc::new(ListenerRuntime {
            name: b.name.into(),
            address: ListenAddress::Tcp(self.local),
            local: Some(self.local),
            routing,
            settings: ArcSwap::from_pointee(settings),
            stats: Arc::new(ConnStats::default()),
            stop: watch::channel(false).0,
        });
        let (drain_tx, drain_rx) = watch::channel(false);
        let accept = listen::accept_loop(
            self.bound,
            runtime.clone(),
            drain_rx,
            Arc::new(ArcSwap::from_pointee(None)),
        );
        tokio::pin!(accept);
        tokio::select! {
            () = &mut accept => {}
            () = shutdown => {
                let _ = runtime.stop.send(true);
                let _ = drain_tx.send(true);
                accept.await;
            }
        }
    }
}

impl HttpListenerBuilder {
    /// What to serve: `Auto` (HTTP/1.1, h2c and the added protocols, told apart by
    /// their first bytes; the default), `Http1` or `Http2`.
    pub fn protocol(mut self, protocol: ListenerProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Protective limits for each connection (header sizes, timeouts, streams).
    pub fn limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a layer over the connection stack (TLS termination, connection limits),
    /// outermost first.
    pub fn network_layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<BoxConn> + Send + Sync + 'static,
        L::Service: tower_service::Service<Connection, Response = (), Error = crate::BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<Connection>>::Future: Send + 'static,
    {
        self.network_layers.push(Arc::new(move |inner: BoxConn| {
            BoxConn::new(layer.layer(inner))
        }));
        self
    }

    /// Adds a plug-in protocol (Bolt, Dubbo) served on this listener, detected by its
    /// first bytes when the protocol is `Auto`.
    pub fn serve_protocol(mut self, protocol: Arc<dyn crate::protocol::ProtocolServer>) -> Self {
        self.protocols.push(protocol);
        self
    }

    /// Binds `address`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(self, address: SocketAddr) -> std::io::Result<HttpListener> {
        let mut bound = listen::bind(&ListenAddress::Tcp(address), 1, false)?;
        let b = bound
            .pop()
            .ok_or_else(|| std::io::Error::other("nothing was bound"))?;
        let local = b
            .local_addr()
            .ok_or_else(|| std::io::Error::other("no local address"))?;
        Ok(HttpListener {
            bound: b,
            local,
            settings: self,
        })
    }
}
