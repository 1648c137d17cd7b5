//! The terminal request service and its parts: route, pick an endpoint, forward,
//! retry, time out, and answer locally (with a metric) when the proxy itself must.
//!
//! [`Proxy`] is the fused fast path a config-built listener runs: routing, a small
//! request body read whole, the route's timeout and retries within the cluster's
//! budget, and forwarding, written as one future, which each worker writes into a
//! box kept from an earlier request: a request costs no allocation for it. The same
//! steps are also separate tower pieces for stacks assembled in code:
//! [`ClusterService`] (forward to a cluster), [`BodyBufferLayer`] (small bodies read
//! whole first), [`RetryLayer`] (retries within a budget), [`LocalReplyLayer`]
//! (errors to 408/502/503/504 answers), with `tower::timeout::TimeoutLayer` for
//! timeouts.

mod authority;
mod body_buffer;
mod body_buffer_layer;
mod body_rate;
mod cluster_service;
mod final_recipient;
mod forward;
mod local_reply;
mod pooled;
mod prepare;
mod retry;
mod via;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use http::HeaderValue;

pub use self::authority::{check_authority, AuthorityError};
pub(crate) use self::body_buffer::client_body_error;
pub use self::body_buffer::BodyBuffer;
pub use self::body_buffer_layer::{BodyBufferLayer, BodyBufferService};
pub use self::cluster_service::ClusterService;
pub(crate) use self::forward::RouteTerminal;
pub use self::local_reply::{
    local_reply, reply_for_error, LocalReply, LocalReplyLayer, PROXY_ERROR_DETAIL_HEADER,
    PROXY_ERROR_HEADER,
};
pub(crate) use self::prepare::{
    connection_listed, prepare_for_cluster, request_authority, strip_hop_by_hop,
};
pub use self::retry::{Retry, RetryLayer};
pub use self::via::{InvalidVia, Via};
use crate::{
    informational::Informational, router::Route, snapshot::Routing, HttpRequest, HttpResponse,
};

#[doc(no_inline)]
pub use crate::connection::ConnInfo;

/// What `x-forwarded-for` / `x-forwarded-proto` need of the connection.
#[derive(Debug, Clone)]
struct Forwarded {
    peer_ip: Option<HeaderValue>,
    tls: bool,
}

impl ConnInfo {
    fn forwarded(&self) -> Forwarded {
        Forwarded {
            peer_ip: self.peer_ip.clone(),
            tls: self.tls,
        }
    }
}

/// The route a request matched, put in the response extensions (for access logs).
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub Arc<Route>);

/// The terminal service of a listener's request stack.
///
/// Every call reads the listener's current [`Routing`] from an `ArcSwap`, so a config
/// reload takes effect on the next request without a lock.
#[derive(Debug, Clone)]
pub struct Proxy {
    routing: Arc<ArcSwap<Routing>>,
}

impl Proxy {
    /// A proxy reading its routing from `routing`.
    pub fn new(routing: Arc<ArcSwap<Routing>>) -> Self {
        Self { routing }
    }
}

impl Proxy {
    /// A proxy over fixed routing built in code (see [`Routing::new`]).
    pub fn from_routing(routing: Routing) -> Self {
        Self::new(Arc::new(ArcSwap::from_pointee(routing)))
    }
}

impl Routing {
    /// Routing over `routes` to `clusters`, built in code: `x-forwarded-for` set,
    /// small request bodies read whole first and longer ones held to a minimum rate
    /// as a listener's defaults do (16 KiB within 10 s, 240 bytes a second; set
    /// `body_buffer` to change that), fresh request stats. Every
    /// cluster a route names must be among `clusters` (build the table with that
    /// check), else its requests answer 503.
    ///
    /// # Example
    /// ```
    /// use proxy_core::{cluster::Cluster, config::{RouteConfig, VirtualHostConfig},
    ///                  proxy::Proxy, router::RouteTable, snapshot::Routing};
    ///
    /// let app = Cluster::builder("app").endpoint("127.0.0.1:9000".parse().unwrap()).build().unwrap();
    /// let vhost = VirtualHostConfig::new("all", ["*"]).route(RouteConfig::new("app"));
    /// let routes = RouteTable::build("", &[vhost], &|c| c == "app").unwrap();
    /// let proxy = Proxy::from_routing(Routing::new(routes, [app]));
    /// # let _ = proxy;
    /// ```
    pub fn new(
        routes: crate::router::RouteTable,
        clusters: impl IntoIterator<Item = Arc<crate::cluster::Cluster>>,
    ) -> Self {
        Self {
            routes,
            clusters: Arc::new(clusters.into_iter().map(|c| (c.name.clone(), c)).collect()),
            xff: true,
            via: None,
            body_buffer: BodyBuffer::listener_default(),
            stats: Arc::default(),
            record_route: true,
        }
    }
}

impl tower_service::Service<HttpRequest> for Proxy {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        ProxyFuture(pooled::Forwarding::start(
            self.routing.load_full(),
            req,
            None,
        ))
    }
}

/// The future of a [`Proxy`] call: the request's forwarding, written into a box the
/// worker thread kept from an earlier request, so a call allocates none for it (the
/// future is a couple of KiB). Dropping it gives the request up and the box back.
pub struct ProxyFuture(pooled::Forwarding);

impl Future for ProxyFuture {
    type Output = Result<HttpResponse, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(Ok)
    }
}

impl std::fmt::Debug for ProxyFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyFuture").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Forwards a request whose connection facts come with it rather than in the
    /// extensions: the connection loop's path when a listener has no filters. Awaited
    /// in place by the connection task, so the request's future is neither boxed nor
    /// allocated per request, and no extension map is made.
    pub(crate) async fn forward_direct(
        &self,
        req: HttpRequest,
        conn: &ConnInfo,
        informational: Option<&Informational>,
    ) -> HttpResponse {
        let routing = self.routing.load_full();
        match forward::forward(routing, req, Some(conn), informational).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// [`Proxy::forward_direct`] for the HTTP/1.1 connection loop: the request's
    /// future is written into a box the worker kept from an earlier request
    /// (`pooled`), so a request costs no allocation for it.
    pub(crate) fn forward_pooled(
        &self,
        req: HttpRequest,
        conn: &ConnInfo,
        informational: Option<Informational>,
    ) -> pooled::Forwarding {
        pooled::Forwarding::start(
            self.routing.load_full(),
            req,
            Some((conn.clone(), informational)),
        )
    }
}

/// The routing of a listener `a` with no route, for unit tests of the forward path.
#[cfg(test)]
pub(crate) fn routing_without_routes() -> std::sync::Arc<crate::snapshot::Routing> {
    let cfg = crate::config::Config::from_yaml(
        "listeners:\n  - name: a\n    address: 127.0.0.1:1\n    virtual_hosts: []\n",
    )
    .unwrap();
    let snap = crate::snapshot::Snapshot::build(cfg, &crate::Registry::default(), None).unwrap();
    snap.routing("a").unwrap().clone()
}

#[cfg(test)]
mod size_probe {
    #[test]
    fn request_future_stays_small() {
        let routing = super::routing_without_routes();
        let f = super::forward::forward(
            routing,
            crate::HttpRequest::new(crate::Body::empty()),
            None,
            None,
        );
        let size = std::mem::size_of_val(&f);
        // Boxed and copied once per request: a regression guard (streaming bodies,
        // connecting and HTTP/2 are boxed separately to keep this small).
        assert!(size <= 2400, "the per-request future grew to {size} bytes");
    }
}
