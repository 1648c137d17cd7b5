//! The `zone_routing` HTTP filter: a tower layer over `BoxHttp`.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::{header, HeaderName, HeaderValue};
use proxy_core::{
    cluster::Cluster, proxy::PROXY_ERROR_HEADER, BoxError, BoxHttp, Endpoint, HttpRequest,
    HttpResponse, ProxyError,
};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    config::UidSource,
    config::ZoneRoutingConfig,
    decide::{cookie_value, decide, fail_over, query_value, ZoneInputs, ZoneSource},
    metrics::ZoneCounters,
    topology::{invalid, Topology, ZoneId},
    TargetZone,
};
use crate::ConfigError;

#[derive(Debug)]
enum Uid {
    Header(HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
}

/// What a zone needs at request time.
#[derive(Debug)]
struct ZoneRuntime {
    fact: TargetZone,
    /// Local zone: its endpoints in the local cluster.
    local: Option<Box<[Arc<Endpoint>]>>,
    /// Remote zone: its data centre's proxy cluster.
    remote: Option<(Arc<Cluster>, proxy_core::ClusterOverride)>,
    /// The zone name as a header value (forward header).
    header: HeaderValue,
    /// `Set-Cookie` value naming this zone.
    set_cookie: HeaderValue,
}

impl ZoneRuntime {
    fn available(&self) -> bool {
        match (&self.local, &self.remote) {
            (Some(eps), _) => eps.iter().any(|e| e.is_healthy()),
            (None, Some((cluster, _))) => cluster.endpoints.iter().any(|e| e.is_healthy()),
            (None, None) => false,
        }
    }
}

/// Consecutive connect failures after which a zone is held out of the failover chain.
const HOLD_DOWN_AFTER: u32 = 3;
/// How long a zone is held out once its connect failures repeat; the first request
/// after that tries it again (one more failure holds it again, a success clears it).
const HOLD_DOWN: Duration = Duration::from_secs(5);

/// Connect failures of one zone, seen by the requests sent to it.
#[derive(Debug, Default)]
struct ConnectState {
    /// Consecutive connect failures (reset by a success).
    failures: AtomicU32,
    /// Held out until this many milliseconds after `Shared::epoch`; 0: not held.
    held_until_ms: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    topo: Topology,
    zones: Vec<ZoneRuntime>,
    connect: Vec<ConnectState>,
    epoch: Instant,
    uid: Option<Uid>,
    cookie: Box<str>,
    forward_header: HeaderName,
    cookie_over_uid: bool,
    counters: Arc<ZoneCounters>,
}

/// The `zone_routing` layer, built from a validated config; cheap to clone.
///
/// # Example
/// Two zones of one data centre, served by the endpoints of cluster `app` labelled
/// `zone`: a request carrying the zone cookie stays in its zone (a [`TargetZone`] the
/// `zone_aware` balancer honours); a first request gets a zone by weight and the
/// cookie naming it.
/// ```
/// use std::{num::NonZeroU32, sync::Arc};
/// use proxy_core::cluster::Cluster;
/// use proxy_lb::zone::{TargetZone, ZoneConfig, ZoneRoutingConfig, ZoneRoutingLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// let app = Cluster::builder("app")
///     .weighted_endpoint("10.0.0.1:8080".parse()?, NonZeroU32::MIN, [("zone", "z1")])
///     .weighted_endpoint("10.0.0.2:8080".parse()?, NonZeroU32::MIN, [("zone", "z2")])
///     .build()?;
/// let cfg = ZoneRoutingConfig::new(
///     "dc1",
///     "app",
///     vec![ZoneConfig::new("z1", "dc1", "hangzhou"), ZoneConfig::new("z2", "dc1", "hangzhou")],
/// );
/// let layer = ZoneRoutingLayer::new(&cfg, |name| (name == "app").then(|| app.clone()), Arc::default())?;
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|req: proxy_core::HttpRequest| async move {
///         let zone = req.extensions().get::<TargetZone>().map_or(String::new(), |z| z.0.to_string());
///         Ok::<_, proxy_core::BoxError>(http::Response::new(proxy_core::Body::from(zone)))
///     });
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use http_body_util::BodyExt;
/// let req = http::Request::builder().header("cookie", "zone=z2").body(proxy_core::Body::empty())?;
/// let resp = svc.clone().oneshot(req).await?;
/// assert!(resp.headers().get("set-cookie").is_none(), "already in its zone");
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "z2");
///
/// let resp = svc.oneshot(http::Request::new(proxy_core::Body::empty())).await?;
/// let cookie = resp.headers()["set-cookie"].to_str()?.to_owned();
/// let zone = resp.into_body().collect().await?.to_bytes();
/// assert!(cookie.starts_with(&format!("zone={}", String::from_utf8_lossy(&zone))));
/// # Ok::<(), proxy_core::BoxError>(())
/// # })?;
/// # Ok::<(), proxy_core::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ZoneRoutingLayer {
    shared: Arc<Shared>,
}

impl ZoneRoutingLayer {
    /// Validates `cfg` against the clusters of the snapshot being built.
    /// `cluster(name)` finds a cluster.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: a bad topology, an unknown
    /// `local_cluster` or remote cluster, a local zone with no endpoint in the local
    /// cluster, a bad cookie name.
    pub fn new(
        cfg: &ZoneRoutingConfig,
        cluster: impl Fn(&str) -> Option<Arc<Cluster>>,
        counters: Arc<ZoneCounters>,
    ) -> Result<Self, ConfigError> {
        let topo = Topology::new(cfg)?;
        let local = cluster(&cfg.local_cluster).ok_or_else(|| {
            invalid(
                "local_cluster",
                format!("unknown cluster {}", cfg.local_cluster),
            )
        })?;
        if cfg.cookie.is_empty()
            || !cfg
                .cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(invalid(
                "cookie",
                format!("{:?} is not a cookie name", cfg.cookie),
            ));
        }
        let forward_header = cfg.forward_header.0.clone();
        for e in local.endpoints.iter() {
            if let Some(z) = e.label("zone") {
                let known = topo.zone_id(z).is_some_and(|id| topo.zones()[id].local);
                if !known {
                    return Err(invalid(
                        "local_cluster",
                        format!(
                            "endpoint {} of cluster {} has metadata.zone {z}, not a zone of data centre {}",
                            e.address, cfg.local_cluster, cfg.local_data_centre
                        ),
                    ));
                }
            }
        }
        let mut zones = Vec::with_capacity(topo.zones().len());
        for (i, z) in topo.zones().iter().enumerate() {
            let (local_eps, remote) = if z.local {
                let eps: Box<[Arc<Endpoint>]> = local
                    .endpoints
                    .iter()
                    .filter(|e| e.label("zone") == Some(&*z.name))
                    .cloned()
                    .collect();
                if eps.is_empty() {
                    return Err(invalid(
                        format!("zones[{i}]"),
                        format!(
                            "local zone {} has no endpoint with metadata.zone: {} in cluster {}",
                            z.name, z.name, cfg.local_cluster
                        ),
                    ));
                }
                (Some(eps), None)
            } else {
                let name = z.remote_cluster.clone().unwrap_or_else(|| "".into());
                let c = cluster(&name).ok_or_else(|| {
                    invalid(
                        format!("remote_clusters.{}", z.data_centre),
                        format!("unknown cluster {name}"),
                    )
                })?;
                (None, Some((c, proxy_core::ClusterOverride(name))))
            };
            let header = HeaderValue::from_str(&z.name)
                .map_err(|_| invalid(format!("zones[{i}].name"), "not a valid header value"))?;
            let set_cookie =
                HeaderValue::from_str(&format!("{}={}; Path=/; HttpOnly", cfg.cookie, z.name))
                    .map_err(|_| invalid(format!("zones[{i}].name"), "not a valid cookie value"))?;
            zones.push(ZoneRuntime {
                fact: TargetZone(z.name.clone()),
                local: local_eps,
                remote,
                header,
                set_cookie,
            });
        }
        let uid = cfg.uid.as_ref().map(|u| match &u.source {
            UidSource::Header(h) => Uid::Header(h.0.clone()),
            UidSource::Cookie(c) => Uid::Cookie(c.as_str().into()),
            UidSource::Query(q) => Uid::Query(q.as_str().into()),
        });
        Ok(Self {
            shared: Arc::new(Shared {
                topo,
                connect: zones.iter().map(|_| ConnectState::default()).collect(),
                epoch: Instant::now(),
                zones,
                uid,
                cookie: cfg.cookie.as_str().into(),
                forward_header,
                cookie_over_uid: cfg.cookie_over_uid,
                counters,
            }),
        })
    }
}

impl<S> Layer<S> for ZoneRoutingLayer {
    type Service = ZoneRouting<S>;

    fn layer(&self, inner: S) -> ZoneRouting<S> {
        ZoneRouting {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The `zone_routing` service.
#[derive(Debug, Clone)]
pub struct ZoneRouting<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Whether zone `z` can take a request now: an endpoint is healthy and its
    /// connect failures have not held it out.
    fn available(&self, z: ZoneId) -> bool {
        self.zones[z].available() && self.connect[z].held_until_ms.load(Relaxed) <= self.now_ms()
    }

    /// Records how an attempt in zone `z` went.
    fn attempt_done(&self, z: ZoneId, connect_failed: bool) {
        let c = &self.connect[z];
        if connect_failed {
            let n = c.failures.fetch_add(1, Relaxed).saturating_add(1);
            if n >= HOLD_DOWN_AFTER {
                let until = self
                    .now_ms()
                    .saturating_add(u64::try_from(HOLD_DOWN.as_millis()).unwrap_or(u64::MAX));
                if c.held_until_ms.swap(until, Relaxed) <= self.now_ms() {
                    tracing::warn!(zone = %self.zones[z].fact.0, failures = n, "zone held out after repeated connect failures");
                }
            }
        } else if c.failures.load(Relaxed) != 0 {
            c.failures.store(0, Relaxed);
            c.held_until_ms.store(0, Relaxed);
        }
    }

    /// Decides the request's preferred zone; returns it, where it came from and the
    /// `Set-Cookie` value to add to the response, if any.
    fn prefer(&self, req: &HttpRequest) -> (ZoneId, ZoneSource, Option<HeaderValue>) {
        let headers = req.headers();
        let forwarded = headers
            .get(&self.forward_header)
            .and_then(|v| v.to_str().ok());
        let cookie = cookie_value(headers, &self.cookie);
        let uid = match &self.uid {
            Some(Uid::Header(h)) => headers.get(h).and_then(|v| v.to_str().ok()),
            Some(Uid::Cookie(c)) => cookie_value(headers, c),
            Some(Uid::Query(q)) => query_value(req.uri().query(), q),
            None => None,
        };
        let inputs = ZoneInputs {
            forwarded,
            uid,
            cookie,
        };
        // Availability is decided by `fail_over` below, per attempt.
        let d = decide(
            &self.topo,
            &inputs,
            self.cookie_over_uid,
            fastrand::u64(..),
            |_| true,
        );
        let set_cookie = (d.source != ZoneSource::Forwarded
            && cookie != Some(&*self.topo.zones()[d.preferred].name))
        .then(|| self.zones[d.preferred].set_cookie.clone());
        (d.preferred, d.source, set_cookie)
    }

    /// Marks the request for zone `z`.
    fn apply(&self, req: &mut HttpRequest, z: ZoneId, source: ZoneSource) {
        let zone = &self.zones[z];
        match &zone.remote {
            Some((_, over)) if source != ZoneSource::Forwarded => {
                req.headers_mut()
                    .insert(self.forward_header.clone(), zone.header.clone());
                req.extensions_mut().insert(over.clone());
            }
            _ => {
                req.headers_mut().remove(&self.forward_header);
                req.extensions_mut().insert(zone.fact.clone());
            }
        }
    }
}

/// A copy of the request to send again, if its body can be replayed.
fn replayable(req: &HttpRequest) -> Option<HttpRequest> {
    let mut copy = http::Request::new(req.body().try_clone()?);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

/// Whether an attempt failed to connect to the zone's upstream: the typed error, or
/// the local reply it became.
fn is_connect_failure(result: &Result<HttpResponse, BoxError>) -> bool {
    match result {
        Ok(resp) => resp
            .headers()
            .get(PROXY_ERROR_HEADER)
            .is_some_and(|v| v.as_bytes() == b"connect_failure"),
        Err(e) => matches!(ProxyError::find(&**e), Some(ProxyError::Connect { .. })),
    }
}

impl<S> Service<HttpRequest> for ZoneRouting<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        let shared = self.shared.clone();
        let (preferred, source, set_cookie) = shared.prefer(&req);
        let (served, step) = fail_over(&shared.topo, preferred, source, |z| shared.available(z));
        let Some(served) = served else {
            // No zone may take it: the preferred zone answers (503 no_endpoints).
            shared.counters.record(source, step, false);
            shared.apply(&mut req, preferred, source);
            let first = self.inner.call(req);
            return ResponseFuture::new(async move {
                let mut resp = first.await?;
                if let Some(v) = set_cookie {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
                Ok(resp)
            });
        };
        shared.counters.record_decision(source);
        // A copy to send again after a connect failure, only when the chain has a zone
        // to send it to: the usual request (no failure, or no other zone) copies
        // nothing.
        let has_next = fail_over(&shared.topo, preferred, source, |z| {
            z != served && shared.available(z)
        })
        .0
        .is_some();
        let can_replay = req.body().try_clone().is_some();
        let template = if has_next && can_replay {
            replayable(&req)
        } else {
            None
        };
        shared.apply(&mut req, served, source);
        let first = self.inner.call(req);
        let inner = self.inner.clone();
        ResponseFuture::new(async move {
            let (mut zone, mut step) = (served, step);
            let mut result = first.await;
            let mut failed = is_connect_failure(&result);
            shared.attempt_done(zone, failed);
            // Made on the first failure only.
            let mut tried = Vec::new();
            while failed {
                let Some(template) = &template else { break };
                if tried.is_empty() {
                    tried = vec![false; shared.zones.len()];
                    tried[served] = true;
                }
                let (next, next_step) = fail_over(&shared.topo, preferred, source, |z| {
                    !tried[z] && shared.available(z)
                });
                let Some(next) = next else { break };
                tracing::debug!(
                    from = %shared.zones[zone].fact.0,
                    to = %shared.zones[next].fact.0,
                    "connect failure: request sent to the next zone"
                );
                shared.counters.record_connect_retry();
                tried[next] = true;
                (zone, step) = (next, next_step);
                let Some(mut req) = replayable(template) else {
                    break;
                };
                shared.apply(&mut req, zone, source);
                let mut svc = inner.clone();
                std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                result = svc.call(req).await;
                failed = is_connect_failure(&result);
                shared.attempt_done(zone, failed);
            }
            // Counted by the zone that answered; a connect failure in every zone it
            // could go to counts as unavailable.
            shared
                .counters
                .record_outcome(step, !(failed && can_replay));
            let mut resp = result?;
            if let Some(v) = set_cookie {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(resp)
        })
    }
}

/// The response future of [`ZoneRouting`]: the attempts (the first zone, and the next
/// ones of the failover chain after a connect failure) and the zone cookie.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>,
}

impl ResponseFuture {
    fn new(f: impl Future<Output = Result<HttpResponse, BoxError>> + Send + 'static) -> Self {
        Self { inner: Box::pin(f) }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<HttpResponse, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Wraps a boxed service in the layer (for the registry).
pub(crate) fn boxed(layer: &ZoneRoutingLayer, inner: BoxHttp) -> BoxHttp {
    BoxHttp::new(layer.layer(inner))
}
