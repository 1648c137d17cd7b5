//! The terminal request service: route, pick an endpoint, forward, retry, time out,
//! and answer locally (with a metric) when the proxy itself must.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, Uri, Version};
use tokio::time::Instant;

use crate::{
    cluster::Cluster,
    config::{RetryOn, UpstreamProtocol},
    router::Route,
    snapshot::Routing,
    Body, HttpRequest, HttpResponse, ProxyError,
};

/// Facts about the downstream connection, put in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer address (`None` for Unix sockets).
    pub peer: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The peer IP as a header value, made once per connection for `x-forwarded-for`.
    peer_ip: Option<HeaderValue>,
}

impl ConnInfo {
    /// Facts about a connection from `peer`.
    pub fn new(peer: Option<SocketAddr>, tls: bool) -> Self {
        let peer_ip = peer.and_then(|p| HeaderValue::from_str(&p.ip().to_string()).ok());
        Self { peer, tls, peer_ip }
    }

    fn forwarded(&self) -> Forwarded {
        Forwarded {
            peer_ip: self.peer_ip.clone(),
            tls: self.tls,
        }
    }
}

/// What `x-forwarded-for` / `x-forwarded-proto` need of the connection.
#[derive(Debug, Clone)]
struct Forwarded {
    peer_ip: Option<HeaderValue>,
    tls: bool,
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

impl tower_service::Service<HttpRequest> for Proxy {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let routing = self.routing.load_full();
        Box::pin(forward(routing, req, None))
    }
}

impl Proxy {
    /// Forwards a request whose connection facts come with it rather than in the
    /// extensions: the connection loop's path when a listener has no filters. Awaited
    /// in place by the connection task, so the request's future is neither boxed nor
    /// allocated per request, and no extension map is made.
    pub(crate) async fn forward_direct(&self, req: HttpRequest, conn: &ConnInfo) -> HttpResponse {
        let routing = self.routing.load_full();
        match forward(routing, req, Some(conn)).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// A locally generated answer: the status of `err`, a short body, and the
/// `x-proxy-error` header naming the reason.
pub fn local_reply(err: &ProxyError) -> HttpResponse {
    let reason = err.reason();
    let mut resp = Response::new(Body::from(format!("{err}\n")));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(
        HeaderName::from_static("x-proxy-error"),
        HeaderValue::from_static(reason),
    );
    resp
}

async fn forward(
    routing: Arc<Routing>,
    mut req: HttpRequest,
    conn: Option<&ConnInfo>,
) -> Result<HttpResponse, Infallible> {
    let listener_stats = &routing.stats;
    // Back from a route's own filters (`RouteTerminal`): the route is chosen and
    // counted already, and the caller finishes the counts.
    let reentry = req.extensions_mut().remove::<RouteTarget>();
    let (route, started, reentered) = match reentry {
        Some(t) => (t.route, t.started, true),
        None => {
            let started = Instant::now();
            listener_stats.start();
            let route = routing
                .routes
                .find(
                    request_authority(&req),
                    req.method(),
                    req.uri().path(),
                    req.headers(),
                )
                .cloned();
            let route = route.filter(|_| req.method() != http::Method::CONNECT);
            let Some(route) = route else {
                // CONNECT (from HTTP/2; HTTP/1.1 refuses it while parsing) is not offered.
                let err = if req.method() == http::Method::CONNECT {
                    ProxyError::BadRequest("CONNECT is not supported")
                } else {
                    ProxyError::NoRoute
                };
                listener_stats.local_errors.add(err.reason());
                listener_stats.finish(err.status().as_u16(), started.elapsed());
                return Ok(local_reply(&err));
            };
            route.stats.start();
            if let Some(filters) = route.filters.get() {
                // The rare path, boxed so that it does not grow every request's future.
                let filters = filters.0.clone();
                let conn = conn.cloned();
                return Ok(Box::pin(through_route_filters(
                    routing.clone(),
                    route,
                    filters,
                    req,
                    conn,
                    started,
                ))
                .await);
            }
            (route, started, false)
        }
    };
    let chosen = req
        .extensions()
        .get::<crate::ClusterOverride>()
        .map(|o| o.0.clone());
    let cluster_name = chosen.as_deref().unwrap_or(&*route.cluster);
    let resp = match routing.clusters.get(cluster_name) {
        Some(cluster) => {
            if cluster.balancer.needs_conn_info() {
                with_conn_info(&mut req, conn);
            }
            prepare_upstream_request(
                &mut req,
                Some(&route),
                routing.xff,
                conn.map(ConnInfo::forwarded),
                cluster,
            );
            // Sending, with retries within the route's policy and the cluster's budget,
            // is written out here rather than in an `async fn` of its own: a nested
            // future is copied into its caller's state, on every request.
            'send: {
                cluster.retry_budget.deposit();
                let deadline = route.timeout.map(|t| started + t);
                let attempts = route.retry.as_ref().map_or(0, |r| r.attempts);
                let per_try = route.retry.as_ref().and_then(|r| r.per_try_timeout);
                let (parts, body) = req.into_parts();
                let replay = if attempts > 0 { body.try_clone() } else { None };
                let mut first_body = Some(body);
                let mut attempt = 0;
                loop {
                    // A retry only happens with a replayable body, so `replay` is there for it.
                    let this_body = first_body
                        .take()
                        .or_else(|| replay.as_ref().and_then(Body::try_clone))
                        .unwrap_or_default();
                    let attempt_start = if attempt == 0 {
                        started
                    } else {
                        Instant::now()
                    };
                    let limit = attempt_limit(per_try.map(|t| attempt_start + t), deadline);
                    let result = match cluster.balancer.pick(&cluster.endpoints, &parts) {
                        None => Err(AttemptError::Proxy(ProxyError::NoEndpoints {
                            cluster: cluster.name.clone(),
                        })),
                        Some(index) => {
                            let endpoint = &cluster.endpoints[index];
                            endpoint.stats.start();
                            cluster.stats.start();
                            let sent = Deadline::new(
                                endpoint.upstream.send(&parts, this_body),
                                limit.map(|(at, _)| at),
                            )
                            .await;
                            let result = match sent {
                                Some(r) => r.map_err(AttemptError::Proxy),
                                None if limit.is_some_and(|(_, per_try)| per_try) => {
                                    Err(AttemptError::PerTry)
                                }
                                None => Err(AttemptError::Deadline),
                            };
                            count_attempt(cluster, endpoint, &result, attempt_start.elapsed());
                            result
                        }
                    };
                    let may_retry = retry_condition(&result).is_some_and(|conds| {
                        attempt < attempts
                            && replay.is_some()
                            && route
                                .retry
                                .as_ref()
                                .is_some_and(|r| conds.iter().any(|c| r.retries_on(*c)))
                            && deadline.is_none_or(|d| Instant::now() < d)
                    });
                    if may_retry && cluster.retry_budget.withdraw() {
                        attempt += 1;
                        tracing::debug!(route = %route.name, attempt, "retrying");
                        continue;
                    }
                    break 'send match result {
                        Ok(resp) => Ok(resp),
                        Err(AttemptError::Proxy(e)) => Err(e),
                        Err(AttemptError::PerTry | AttemptError::Deadline) => {
                            Err(ProxyError::Timeout)
                        }
                    };
                }
            }
        }
        None => Err(ProxyError::NoEndpoints {
            cluster: cluster_name.into(),
        }),
    };
    let mut resp = match resp {
        Ok(mut resp) => {
            let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            strip_hop_by_hop(resp.headers_mut(), switching);
            if !route.response_headers.is_empty() {
                route.response_headers.apply(resp.headers_mut());
            }
            resp
        }
        Err(err) => {
            tracing::debug!(route = %route.name, error = %err, "local reply");
            route.stats.local_errors.add(err.reason());
            listener_stats.local_errors.add(err.reason());
            local_reply(&err)
        }
    };
    if !reentered {
        finish_route(&routing, route, &mut resp, started);
    }
    Ok(resp)
}

/// Counts a routed request's end and records its route for the access log.
fn finish_route(routing: &Routing, route: Arc<Route>, resp: &mut HttpResponse, started: Instant) {
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    route.stats.finish(status, elapsed);
    routing.stats.finish(status, elapsed);
    if routing.record_route {
        resp.extensions_mut().insert(MatchedRoute(route));
    }
}

/// Runs a request through its route's own filters, which end in [`RouteTerminal`]
/// and so back in [`forward`].
async fn through_route_filters(
    routing: Arc<Routing>,
    route: Arc<Route>,
    filters: crate::BoxHttp,
    mut req: HttpRequest,
    conn: Option<ConnInfo>,
    started: Instant,
) -> HttpResponse {
    with_conn_info(&mut req, conn.as_ref());
    req.extensions_mut().insert(RouteTarget {
        routing: routing.clone(),
        route: route.clone(),
        started,
    });
    let mut resp = match tower::ServiceExt::oneshot(filters, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(route = %route.name, error = %crate::DisplayChain(&*e), "route filter failed");
            let err = ProxyError::Internal;
            route.stats.local_errors.add(err.reason());
            routing.stats.local_errors.add(err.reason());
            local_reply(&err)
        }
    };
    finish_route(&routing, route, &mut resp, started);
    resp
}

/// Puts the connection's facts in the request extensions unless they are there (the
/// filterless path passes them beside the request).
fn with_conn_info(req: &mut HttpRequest, conn: Option<&ConnInfo>) {
    if let Some(c) = conn {
        if req.extensions().get::<ConnInfo>().is_none() {
            req.extensions_mut().insert(c.clone());
        }
    }
}

/// Where a request with route filters goes once they pass it on.
#[derive(Clone)]
struct RouteTarget {
    routing: Arc<Routing>,
    route: Arc<Route>,
    started: Instant,
}

/// The end of a route's filter stack: forwards the request to the route's cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteTerminal;

impl tower_service::Service<HttpRequest> for RouteTerminal {
    type Response = HttpResponse;
    type Error = crate::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, crate::BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), crate::BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let routing = req
            .extensions()
            .get::<RouteTarget>()
            .map(|t| t.routing.clone());
        Box::pin(async move {
            let Some(routing) = routing else {
                return Err("a route filter stack was called outside a routed request".into());
            };
            match forward(routing, req, None).await {
                Ok(resp) => Ok(resp),
                Err(never) => match never {},
            }
        })
    }
}

fn request_authority(req: &HttpRequest) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and those named in `Connection`. With `upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair is kept so that the upgrade passes through.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass to see which are there: usually none, or only `connection`.
    let mut present = 0u8;
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Tokens naming other headers; the usual `close`, `keep-alive` and `upgrade`
        // need no lookup (the latter two are removed below anyway).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or_default().split(','))
            .map(str::trim)
            .filter(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(h);
        }
    }
    if let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Prepares a request for a cluster outside any route: hop-by-hop headers removed,
/// the URI form and version of the cluster's protocol, Host kept.
pub(crate) fn prepare_for_cluster(req: &mut HttpRequest, cluster: &Cluster) {
    prepare_upstream_request(req, None, false, None, cluster);
}

fn prepare_upstream_request(
    req: &mut HttpRequest,
    route: Option<&Route>,
    xff: bool,
    conn: Option<Forwarded>,
    cluster: &Cluster,
) {
    let protocol = &cluster.config.protocol;
    let upgrade = *protocol == UpstreamProtocol::Http1
        && req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE);
    let te_trailers = *protocol == UpstreamProtocol::Http2
        && req.headers().get(header::TE).is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    // The authority sent upstream: the rewrite, else the request's own.
    let host = match route.and_then(|r| r.host_rewrite.as_ref()) {
        Some(h) => Some(h.clone()),
        None => match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        },
    };
    let rewritten =
        route.and_then(|r| r.rewrite_path(req.uri().path_and_query().map_or("/", |p| p.as_str())));
    match protocol {
        UpstreamProtocol::Http1 | UpstreamProtocol::Named(_) => {
            if let Some(path) = rewritten {
                if let Ok(uri) = Uri::try_from(path) {
                    *req.uri_mut() = uri;
                }
            } else if req.uri().scheme().is_some() {
                // Absolute-form (or an h2 downstream): HTTP/1.1 upstreams get origin-form.
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = Some(
                    req.uri()
                        .path_and_query()
                        .cloned()
                        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                );
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        UpstreamProtocol::Http2 => {
            let auth = host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let path = rewritten
                .as_deref()
                .unwrap_or_else(|| req.uri().path_and_query().map_or("/", |p| p.as_str()));
            if let Ok(uri) = Uri::builder()
                .scheme("http")
                .authority(auth)
                .path_and_query(path)
                .build()
            {
                *req.uri_mut() = uri;
            }
        }
    }
    let forwarded = match (xff, conn) {
        (false, _) => None,
        (true, Some(f)) => Some(f),
        (true, None) => req.extensions().get::<ConnInfo>().map(ConnInfo::forwarded),
    };
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(Forwarded { peer_ip, tls }) = forwarded {
        if let Some(ip) = peer_ip {
            append_xff(headers, ip);
        }
        let proto = if tls { "https" } else { "http" };
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(proto),
        );
    }
    match (protocol, host) {
        (UpstreamProtocol::Http1, Some(h)) => {
            headers.insert(header::HOST, h);
        }
        (UpstreamProtocol::Http2, _) => {
            headers.remove(header::HOST);
        }
        _ => {}
    }
    if let Some(route) = route.filter(|r| !r.request_headers.is_empty()) {
        route.request_headers.apply(headers);
    }
    match protocol {
        UpstreamProtocol::Http1 => *req.version_mut() = Version::HTTP_11,
        UpstreamProtocol::Http2 => *req.version_mut() = Version::HTTP_2,
        UpstreamProtocol::Named(_) => {}
    }
}

fn append_xff(headers: &mut HeaderMap, ip: HeaderValue) {
    let name = HeaderName::from_static("x-forwarded-for");
    match headers.get(&name) {
        None => {
            headers.insert(name, ip);
        }
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.insert(name, v);
            }
        }
    }
}

enum AttemptError {
    Proxy(ProxyError),
    PerTry,
    Deadline,
}

/// The earlier of the per-try and overall deadlines, and whether it is the per-try one.
fn attempt_limit(per_try: Option<Instant>, overall: Option<Instant>) -> Option<(Instant, bool)> {
    match (per_try, overall) {
        (Some(a), Some(b)) => Some((a.min(b), a <= b)),
        (Some(a), None) => Some((a, true)),
        (None, Some(b)) => Some((b, false)),
        (None, None) => None,
    }
}

/// The retry conditions an attempt's outcome meets, if any.
fn retry_condition(result: &Result<HttpResponse, AttemptError>) -> Option<[RetryOn; 2]> {
    match result {
        Ok(resp) if resp.status().is_server_error() => {
            Some(if matches!(resp.status().as_u16(), 502..=504) {
                [RetryOn::ServerError, RetryOn::GatewayError]
            } else {
                [RetryOn::ServerError, RetryOn::ServerError]
            })
        }
        Ok(_) => None,
        Err(AttemptError::PerTry) => Some([RetryOn::PerTryTimeout, RetryOn::PerTryTimeout]),
        Err(AttemptError::Proxy(ProxyError::Connect { .. } | ProxyError::Overflow { .. })) => {
            Some([RetryOn::ConnectFailure, RetryOn::ConnectFailure])
        }
        Err(AttemptError::Proxy(ProxyError::Upstream { .. })) => {
            Some([RetryOn::Reset, RetryOn::Reset])
        }
        Err(AttemptError::Proxy(_)) | Err(AttemptError::Deadline) => None,
    }
}

fn count_attempt(
    cluster: &Cluster,
    endpoint: &Arc<crate::cluster::Endpoint>,
    result: &Result<HttpResponse, AttemptError>,
    elapsed: Duration,
) {
    let result = match result {
        Ok(r) => Ok(r.status()),
        Err(AttemptError::Proxy(e)) => Err(e),
        Err(AttemptError::PerTry | AttemptError::Deadline) => Err(&ProxyError::Timeout),
    };
    cluster.record_attempt(endpoint, result, elapsed);
}

pin_project_lite::pin_project! {
    /// A future with an optional deadline; `None` when the deadline passed first. The
    /// timer is boxed and made only when there is a deadline, so a request without a
    /// timeout neither touches the timer wheel nor grows its future.
    struct Deadline<F> {
        #[pin]
        inner: F,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> Deadline<F> {
    fn new(inner: F, at: Option<Instant>) -> Self {
        Self {
            inner,
            sleep: at.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match this.sleep {
            Some(sleep) => sleep.as_mut().poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod size_probe {
    #[test]
    fn request_future_stays_small() {
        let cfg = crate::config::Config::from_yaml(
            "listeners:\n  - name: a\n    address: 127.0.0.1:1\n    virtual_hosts: []\n",
        )
        .unwrap();
        let snap =
            crate::snapshot::Snapshot::build(cfg, &crate::Registry::default(), None).unwrap();
        let routing = snap.routing("a").unwrap().clone();
        let f = super::forward(routing, crate::HttpRequest::new(crate::Body::empty()), None);
        let size = std::mem::size_of_val(&f);
        // Boxed and copied once per request: a regression guard (streaming bodies,
        // connecting and HTTP/2 are boxed separately to keep this small).
        assert!(size <= 2400, "the per-request future grew to {size} bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn keeps_the_upgrade_pair_when_upgrading() {
        let mut h = map(&[
            ("connection", "Upgrade, x-a"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("x-a"));
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }
}
