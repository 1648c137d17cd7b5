//! The `zone_routing` HTTP filter: a tower layer over `BoxHttp`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, HeaderName, HeaderValue};
use proxy_core::{cluster::Cluster, BoxError, BoxHttp, Endpoint, HttpRequest, HttpResponse};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    config::UidSource,
    config::ZoneRoutingConfig,
    decide::{cookie_value, decide, query_value, ZoneInputs, ZoneSource},
    metrics::ZoneCounters,
    topology::{invalid, Topology},
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

#[derive(Debug)]
struct Shared {
    topo: Topology,
    zones: Vec<ZoneRuntime>,
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
    /// Decides the request's zone and marks the request; returns the `Set-Cookie`
    /// value to add to the response, if any.
    fn route(&self, req: &mut HttpRequest) -> Option<HeaderValue> {
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
        let d = decide(
            &self.topo,
            &inputs,
            self.cookie_over_uid,
            fastrand::u64(..),
            |z| self.zones[z].available(),
        );
        let set_cookie = (d.source != ZoneSource::Forwarded
            && cookie != Some(&*self.topo.zones()[d.preferred].name))
        .then(|| self.zones[d.preferred].set_cookie.clone());
        self.counters.record(d.source, d.step, d.served.is_some());
        let served = d.served.unwrap_or(d.preferred);
        let zone = &self.zones[served];
        match &zone.remote {
            Some((_, over)) if d.source != ZoneSource::Forwarded => {
                req.headers_mut()
                    .insert(self.forward_header.clone(), zone.header.clone());
                req.extensions_mut().insert(over.clone());
            }
            _ => {
                req.headers_mut().remove(&self.forward_header);
                req.extensions_mut().insert(zone.fact.clone());
            }
        }
        set_cookie
    }
}

impl<S> Service<HttpRequest> for ZoneRouting<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        let set_cookie = self.shared.route(&mut req);
        ResponseFuture {
            inner: self.inner.call(req),
            set_cookie,
        }
    }
}

pin_project_lite::pin_project! {
    /// Adds the zone cookie to the response.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        set_cookie: Option<HeaderValue>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<HttpResponse, BoxError>>,
{
    type Output = Result<HttpResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(v) = this.set_cookie.take() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        Poll::Ready(Ok(resp))
    }
}

/// Wraps a boxed service in the layer (for the registry).
pub(crate) fn boxed(layer: &ZoneRoutingLayer, inner: BoxHttp) -> BoxHttp {
    BoxHttp::new(layer.layer(inner))
}
