//! The fused request path: route, prepare, send with retries and deadlines, count.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::time::Instant;

use super::{
    local_reply,
    prepare::{prepare_upstream_request, request_authority, strip_hop_by_hop},
    retry::{attempt_limit, count_attempt, retry_condition, AttemptError, Deadline},
    ConnInfo, MatchedRoute,
};
use crate::{
    informational::Informational, metrics::InFlight, router::Route, snapshot::Routing, Body,
    HttpRequest, HttpResponse, ProxyError,
};

pub(super) async fn forward(
    routing: Arc<Routing>,
    mut req: HttpRequest,
    conn: Option<&ConnInfo>,
    informational: Option<&Informational>,
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
            // With only the `*` domain, the Host field is not looked up.
            let host = if routing.routes.host_agnostic() {
                None
            } else {
                request_authority(&req)
            };
            let route = routing
                .routes
                .find(host, req.method(), req.uri().path(), req.headers())
                .cloned();
            let route = route.filter(|_| req.method() != http::Method::CONNECT);
            let Some(route) = route else {
                if let Some(answer) = super::final_recipient::server_wide_options(&req) {
                    listener_stats.finish(answer.status().as_u16(), started.elapsed());
                    return Ok(answer);
                }
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
                let route_stats = route.stats.clone();
                let listener_guard = InFlight::adopt(listener_stats);
                let route_guard = InFlight::adopt(&route_stats);
                let resp = Box::pin(through_route_filters(
                    routing.clone(),
                    route,
                    filters,
                    req,
                    conn,
                    started,
                ))
                .await;
                listener_guard.done();
                route_guard.done();
                return Ok(resp);
            }
            (route, started, false)
        }
    };
    // Started above unless re-entered; a dropped future ends them as cancelled.
    let listener_guard = InFlight::adopt_if(!reentered, listener_stats);
    let route_guard = InFlight::adopt_if(!reentered, &route.stats);
    let chosen = req
        .extensions()
        .get::<crate::ClusterOverride>()
        .map(|o| o.0.clone());
    let cluster_name = chosen.as_deref().unwrap_or(&*route.cluster);
    let resp = match routing.clusters.get(cluster_name) {
        Some(cluster) => 'cluster: {
            // `OPTIONS` or `TRACE` with `Max-Forwards: 0` stops here (RFC 9110 7.6.2).
            if let Some(answer) = super::final_recipient::answer_or_count_down(&mut req) {
                break 'cluster Ok(answer);
            }
            // A request that has passed this proxy before would only come round again.
            if routing
                .via
                .as_ref()
                .is_some_and(|v| v.seen_in(req.headers()))
            {
                break 'cluster Err(ProxyError::ForwardingLoop);
            }
            // A small body arrives whole before any upstream resource is taken; a
            // longer one must keep arriving.
            if !req.body().in_memory() {
                if let Err(e) = routing.body_buffer.prepare(&mut req).await {
                    break 'cluster Err(e);
                }
            }
            if cluster.balancer.needs_conn_info() {
                with_conn_info(&mut req, conn);
            }
            // Read before the version becomes the upstream's.
            let head_slab = crate::bufs::Slab::for_answer_head(req.version());
            prepare_upstream_request(
                &mut req,
                Some(&route),
                routing.xff,
                conn.map(ConnInfo::forwarded),
                routing.via.as_ref(),
                cluster,
            );
            // Sending, with retries within the route's policy and the cluster's budget,
            // is written out here rather than in an `async fn` of its own: a nested
            // future is copied into its caller's state, on every request.
            'send: {
                // The cluster-wide budget of requests in flight: one branch without
                // circuit breakers, one atomic each way with them.
                let _request_permit = match &cluster.breakers {
                    None => None,
                    Some(b) => match b.admit_request(&cluster.name) {
                        Ok(p) => p,
                        Err(e) => break 'send Err(e),
                    },
                };
                let mut _retry_permit = None;
                cluster.retry_budget.deposit();
                let deadline = route.timeout.map(|t| started + t);
                let attempts = route.retry.as_ref().map_or(0, |r| r.attempts);
                let per_try = route.retry.as_ref().and_then(|r| r.per_try_timeout);
                let (mut parts, body) = req.into_parts();
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
                    // The last attempt hands the head over rather than copying it.
                    let retry_may_follow = attempt < attempts && replay.is_some();
                    let result = match cluster.balancer.pick(&cluster.endpoints, &parts) {
                        None => Err(AttemptError::Proxy(ProxyError::NoEndpoints {
                            cluster: cluster.name.clone(),
                        })),
                        Some(index) => {
                            let endpoint = &cluster.endpoints[index];
                            let endpoint_guard = InFlight::start(&endpoint.stats);
                            let cluster_guard = InFlight::start(&cluster.stats);
                            let sent = Deadline::new(
                                endpoint.upstream.send(
                                    &mut parts,
                                    retry_may_follow,
                                    this_body,
                                    head_slab,
                                    informational,
                                ),
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
                            endpoint_guard.done();
                            cluster_guard.done();
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
                    // A retry over the breakers' `max_retries` is not attempted; the
                    // previous retry's place is given back first.
                    _retry_permit = None;
                    let admitted = may_retry
                        && match &cluster.breakers {
                            None => true,
                            Some(b) => b.admit_retry().map(|p| _retry_permit = p).is_some(),
                        };
                    if admitted && cluster.retry_budget.withdraw() {
                        attempt += 1;
                        tracing::debug!(route = %route.name, attempt, "retrying");
                        continue;
                    }
                    // The request head has gone out: its map is kept for the next head
                    // this worker parses.
                    crate::http1::header_maps::give_back(&mut parts.headers);
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
            if let Some(via) = &routing.via {
                // The protocol the upstream answered in (RFC 9110 7.6.3).
                let entry = via.entry(resp.version());
                super::prepare::append_to_list(resp.headers_mut(), http::header::VIA, entry);
            }
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
    listener_guard.done();
    route_guard.done();
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
            match forward(routing, req, None, None).await {
                Ok(resp) => Ok(resp),
                Err(never) => match never {},
            }
        })
    }
}
