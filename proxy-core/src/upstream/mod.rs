//! Upstream connections: TCP connect with a timeout, pooled HTTP/1.1 connections and
//! multiplexed HTTP/2 connections per endpoint.

mod connector;
pub(crate) mod h1;
mod h2;
pub(crate) mod pool;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};

pub use connector::{Connector, TransportError, UpstreamTransport};
pub use h1::UpgradedUpstream;

use crate::{
    config::{ClusterConfig, UpstreamProtocol},
    http1::head::Framing,
    Body, ProxyError,
};

/// How requests reach one endpoint.
#[derive(Debug)]
pub(crate) struct Upstream {
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    stream_idle_timeout: Duration,
    max_connections: u32,
    idle_timeout: Duration,
    max_idle: u32,
    pub(crate) open: Arc<pool::OpenCount>,
    pub(crate) connector: Connector,
    h1: Arc<pool::H1Pool>,
    h2: h2::H2Client,
    custom: Option<Arc<dyn crate::protocol::ProtocolClient>>,
}

impl Upstream {
    pub(crate) fn new(
        addr: SocketAddr,
        cluster: &ClusterConfig,
        transport: Option<Arc<dyn UpstreamTransport>>,
        protocol: Option<&Arc<dyn crate::protocol::ProtocolUpstream>>,
    ) -> Self {
        let pool = &cluster.pool;
        let connector = Connector::new(addr, cluster.connect_timeout, transport);
        let open: Arc<pool::OpenCount> = Arc::default();
        Self {
            addr,
            protocol: cluster.protocol.clone(),
            // Protocol plug-ins open their own connections: they count in this
            // endpoint's connection and byte stats through the connector.
            custom: protocol.map(|p| p.client(connector.clone().counting(open.clone()))),
            connector,
            connect_timeout: cluster.connect_timeout,
            stream_idle_timeout: cluster.stream_idle_timeout,
            max_connections: pool.max_connections,
            idle_timeout: pool.idle_timeout,
            max_idle: pool.max_idle,
            open,
            h1: Arc::new(pool::H1Pool::new(pool.max_idle, pool.idle_timeout)),
            h2: h2::H2Client::default(),
        }
    }

    /// Whether this upstream (with its pooled connections) can be kept across a config
    /// swap to `cluster`.
    pub(crate) fn same_settings(&self, cluster: &ClusterConfig) -> bool {
        self.protocol == cluster.protocol
            && self.connect_timeout == cluster.connect_timeout
            && self.stream_idle_timeout == cluster.stream_idle_timeout
            && self.max_connections == cluster.pool.max_connections
            && self.idle_timeout == cluster.pool.idle_timeout
            && self.max_idle == cluster.pool.max_idle
    }

    pub(crate) fn protocol(&self) -> &UpstreamProtocol {
        &self.protocol
    }

    /// Idle pooled connections.
    pub(crate) fn idle_connections(&self) -> usize {
        self.h1.idle_len()
    }

    /// Closes expired idle connections.
    pub(crate) fn evict_expired(&self) {
        self.h1.evict_expired();
    }

    /// A pooled connection, or a new one. Connecting is the rare path, so its (large)
    /// future is boxed to keep every request's future small.
    async fn checkout_h1(&self, fresh: bool) -> Result<Box<h1::H1Conn>, ProxyError> {
        if !fresh {
            if let Some(conn) = self.h1.take() {
                return Ok(conn.reuse());
            }
        }
        Box::pin(self.connect_h1()).await
    }

    async fn connect_h1(&self) -> Result<Box<h1::H1Conn>, ProxyError> {
        let guard = self
            .open
            .try_open(self.max_connections)
            .ok_or(ProxyError::Overflow { addr: self.addr })?;
        let stream = self.connector.connect().await?;
        Ok(Box::new(h1::H1Conn::new(stream, self.h1.clone(), guard)))
    }

    /// Sends a request whose head is already prepared for the upstream (hop-by-hop
    /// headers removed, Host set, the URI's path and query as the target).
    pub(crate) async fn send(
        &self,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<Response<Body>, ProxyError> {
        if let Some(client) = &self.custom {
            return client
                .send(Request::from_parts(clone_parts(parts), body))
                .await;
        }
        if self.protocol == UpstreamProtocol::Http2 {
            return Box::pin(self.send_h2(clone_parts(parts), body)).await;
        }
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let framing = request_framing(parts, &body);
        let mut replay = body.try_clone();
        let mut body = Some(body);
        let mut fresh = false;
        loop {
            let conn = self.checkout_h1(fresh).await?;
            let reused = conn.reused;
            let this_body = body.take().or_else(|| replay.take()).unwrap_or_default();
            match conn
                .exchange(parts, target, this_body, framing, self.stream_idle_timeout)
                .await
            {
                Ok(resp) => return Ok(resp),
                // A pooled connection the upstream had already closed: the request never
                // reached the application, so send it once more on a fresh connection.
                Err(h1::ExchangeError::NoResponse { .. }) if reused && replay.is_some() => {
                    fresh = true;
                }
                Err(e) => return Err(exchange_error(e)),
            }
        }
    }

    async fn send_h2(
        &self,
        parts: http::request::Parts,
        body: Body,
    ) -> Result<Response<Body>, ProxyError> {
        let mut sender = self.h2.sender(&self.connector, &self.open).await?;
        let req = Request::from_parts(parts, body);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ProxyError::Upstream {
                request_sent: true,
                source: e.into(),
            })?;
        Ok(resp.map(Body::from))
    }
}

fn exchange_error(e: h1::ExchangeError) -> ProxyError {
    // The client's body failed (cut short, too slow): the client's fault, not the
    // upstream's.
    if let h1::ExchangeError::RequestBody(_) = e {
        return ProxyError::BadRequest("request body incomplete or too slow");
    }
    let request_sent = !matches!(e, h1::ExchangeError::NoResponse { .. });
    ProxyError::Upstream {
        request_sent,
        source: e.into(),
    }
}

fn request_framing(parts: &http::request::Parts, body: &Body) -> Framing {
    use http_body::Body as _;
    if body.is_end_stream() {
        return if parts.method == http::Method::CONNECT {
            Framing::Close
        } else {
            Framing::Empty
        };
    }
    match body.size_hint().exact() {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut p = Request::new(()).into_parts().0;
    p.method = parts.method.clone();
    p.uri = parts.uri.clone();
    p.version = parts.version;
    p.headers = parts.headers.clone();
    p.extensions = parts.extensions.clone();
    p
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.h1.close();
    }
}
