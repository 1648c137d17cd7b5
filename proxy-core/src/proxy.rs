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
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The peer address (`None` for Unix sockets).
    pub peer: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
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
        Box::pin(async move { Ok(forward(routing, req).await) })
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

async fn forward(routing: Arc<Routing>, mut req: HttpRequest) -> HttpResponse {
    let started = Instant::now();
    let listener_stats = &routing.stats;
    listener_stats.start();
    let authority = request_authority(&req);
    let route = routing
        .routes
        .find(
            authority.as_deref(),
            req.method(),
            req.uri().path(),
            req.headers(),
        )
        .cloned();
    let Some(route) = route else {
        let err = ProxyError::NoRoute;
        listener_stats.local_errors.add(err.reason());
        listener_stats.finish(err.status().as_u16(), started.elapsed());
        return local_reply(&err);
    };
    route.stats.start();
    let resp = match routing.clusters.get(&*route.cluster) {
        Some(cluster) => {
            prepare_upstream_request(&mut req, &route, routing.xff, authority, cluster);
            forward_to_cluster(cluster, &route, req).await
        }
        None => Err(ProxyError::NoEndpoints {
            cluster: route.cluster.clone(),
        }),
    };
    let mut resp = match resp {
        Ok(mut resp) => {
            let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            strip_hop_by_hop(resp.headers_mut(), switching);
            route.response_headers.apply(resp.headers_mut());
            resp
        }
        Err(err) => {
            tracing::debug!(route = %route.name, error = %err, "local reply");
            route.stats.local_errors.add(err.reason());
            listener_stats.local_errors.add(err.reason());
            local_reply(&err)
        }
    };
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    route.stats.finish(status, elapsed);
    listener_stats.finish(status, elapsed);
    resp.extensions_mut().insert(MatchedRoute(route));
    resp
}

fn request_authority(req: &HttpRequest) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
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
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or_default().split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
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
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    if let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

fn prepare_upstream_request(
    req: &mut HttpRequest,
    route: &Route,
    xff: bool,
    authority: Option<String>,
    cluster: &Cluster,
) {
    let upgrade = req.headers().contains_key(header::UPGRADE)
        && req.version() == Version::HTTP_11
        && cluster.config.protocol == UpstreamProtocol::Http1;
    let te_trailers = req.headers().get(header::TE).is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    });
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    if te_trailers && cluster.config.protocol == UpstreamProtocol::Http2 {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if xff {
        let info = req.extensions().get::<ConnInfo>().copied();
        let headers = req.headers_mut();
        if let Some(peer) = info.and_then(|i| i.peer) {
            append_xff(headers, peer);
        }
        let proto = if info.is_some_and(|i| i.tls) {
            "https"
        } else {
            "http"
        };
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(proto),
        );
    }
    let host = route
        .host_rewrite
        .clone()
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(&a).ok()));
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let rewritten = route.rewrite_path(path_and_query);
    let target = rewritten.as_deref().unwrap_or(path_and_query);
    let uri = match cluster.config.protocol {
        UpstreamProtocol::Http1 => Uri::try_from(target).ok(),
        UpstreamProtocol::Http2 => {
            let auth = host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            Uri::builder()
                .scheme("http")
                .authority(auth)
                .path_and_query(target)
                .build()
                .ok()
        }
    };
    if let Some(uri) = uri {
        *req.uri_mut() = uri;
    }
    let headers = req.headers_mut();
    match (cluster.config.protocol, host) {
        (UpstreamProtocol::Http1, Some(h)) => {
            headers.insert(header::HOST, h);
        }
        (UpstreamProtocol::Http2, _) => {
            headers.remove(header::HOST);
        }
        _ => {}
    }
    route.request_headers.apply(headers);
    *req.version_mut() = match cluster.config.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::Http2 => Version::HTTP_2,
    };
}

fn append_xff(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

async fn forward_to_cluster(
    cluster: &Arc<Cluster>,
    route: &Route,
    req: HttpRequest,
) -> Result<HttpResponse, ProxyError> {
    cluster.retry_budget.deposit();
    let deadline = route.timeout.map(|t| Instant::now() + t);
    let attempts = route.retry.as_ref().map_or(0, |r| r.attempts);
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
        let per_try = route.retry.as_ref().and_then(|r| r.per_try_timeout);
        let result = attempt_once(cluster, &parts, this_body, per_try, deadline).await;
        let retry_on = match &result {
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
        };
        let may_retry = retry_on.is_some_and(|conds| {
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
        return match result {
            Ok(resp) => Ok(resp),
            Err(AttemptError::Proxy(e)) => Err(e),
            Err(AttemptError::PerTry | AttemptError::Deadline) => Err(ProxyError::Timeout),
        };
    }
}

enum AttemptError {
    Proxy(ProxyError),
    PerTry,
    Deadline,
}

async fn attempt_once(
    cluster: &Arc<Cluster>,
    parts: &http::request::Parts,
    body: Body,
    per_try: Option<Duration>,
    deadline: Option<Instant>,
) -> Result<HttpResponse, AttemptError> {
    let Some(index) = cluster.balancer.pick(&cluster.endpoints, parts) else {
        return Err(AttemptError::Proxy(ProxyError::NoEndpoints {
            cluster: cluster.name.clone(),
        }));
    };
    let endpoint = &cluster.endpoints[index];
    let started = Instant::now();
    endpoint.stats.start();
    cluster.stats.start();
    let send = endpoint.upstream.send(parts, body);
    let per_try_deadline = per_try.map(|t| started + t);
    let limit = match (per_try_deadline, deadline) {
        (Some(a), Some(b)) => Some((a.min(b), a <= b)),
        (Some(a), None) => Some((a, true)),
        (None, Some(b)) => Some((b, false)),
        (None, None) => None,
    };
    let result = match limit {
        None => send.await.map_err(AttemptError::Proxy),
        Some((at, is_per_try)) => match tokio::time::timeout_at(at, send).await {
            Ok(r) => r.map_err(AttemptError::Proxy),
            Err(_) if is_per_try => Err(AttemptError::PerTry),
            Err(_) => Err(AttemptError::Deadline),
        },
    };
    let status = match &result {
        Ok(r) => r.status(),
        Err(AttemptError::Proxy(e)) => {
            endpoint.stats.local_errors.add(e.reason());
            cluster.stats.local_errors.add(e.reason());
            e.status()
        }
        Err(_) => {
            endpoint.stats.local_errors.add("upstream_timeout");
            cluster.stats.local_errors.add("upstream_timeout");
            http::StatusCode::GATEWAY_TIMEOUT
        }
    };
    let elapsed = started.elapsed();
    endpoint.stats.finish(status.as_u16(), elapsed);
    cluster.stats.finish(status.as_u16(), elapsed);
    result
}
