//! The `traffic_steering` HTTP filter: a tower layer over `BoxHttp`.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use proxy_core::{rpc::RpcInfo, BoxError, BoxHttp, ClusterOverride, HttpRequest, HttpResponse};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    handle::SteeringHandle,
    metrics::SteeringCounters,
    rules::{RequestView, SteeringTarget},
    TargetGroup,
};

/// The `traffic_steering` layer; cheap to clone. Every service it makes reads the
/// handle's current rules per request, so [`SteeringHandle::store`] swaps them live.
///
/// # Example
/// Requests with `type: transfer` go to endpoint group `Group_2` (a [`TargetGroup`]
/// the `subset` balancer honours), then, after a live swap, to `Group_1`:
/// ```
/// use std::sync::Arc;
/// use http::HeaderName;
/// use proxy_lb::steering::{
///     HeaderMatch, MatchConfig, RuleConfig, RuleSet, SteeringConfig, SteeringHandle,
///     StringMatch, TargetConfig, TargetGroup, TrafficSteeringLayer,
/// };
/// use tower::{ServiceBuilder, ServiceExt};
///
/// let rules = |group: &str| {
///     let cfg = SteeringConfig {
///         rules: vec![RuleConfig {
///             name: Some("transfers".into()),
///             matches: MatchConfig {
///                 headers: vec![HeaderMatch::new(
///                     HeaderName::from_static("type"),
///                     StringMatch::Exact("transfer".into()),
///                 )],
///                 ..MatchConfig::default()
///             },
///             to: TargetConfig::Group(group.into()),
///         }],
///     };
///     RuleSet::new(&cfg, |_cluster| false)
/// };
/// let handle = SteeringHandle::new(rules("Group_2")?);
/// let svc = ServiceBuilder::new()
///     .layer(TrafficSteeringLayer::new(handle.clone(), Arc::default()))
///     .service_fn(|req: proxy_core::HttpRequest| async move {
///         let group = req.extensions().get::<TargetGroup>().map_or(String::new(), |g| g.0.to_string());
///         Ok::<_, proxy_core::BoxError>(http::Response::new(proxy_core::Body::from(group)))
///     });
/// let transfer = || http::Request::builder().header("type", "transfer").body(proxy_core::Body::empty());
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use http_body_util::BodyExt;
/// let resp = svc.clone().oneshot(transfer()?).await?;
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "Group_2");
/// handle.store(rules("Group_1")?); // live: the next request sees the new rules
/// let resp = svc.oneshot(transfer()?).await?;
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "Group_1");
/// # Ok::<(), proxy_core::BoxError>(())
/// # })?;
/// # Ok::<(), proxy_core::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrafficSteeringLayer {
    handle: SteeringHandle,
    counters: Arc<SteeringCounters>,
}

impl TrafficSteeringLayer {
    /// A layer over the rules of `handle`, counting in `counters`.
    pub fn new(handle: SteeringHandle, counters: Arc<SteeringCounters>) -> Self {
        Self { handle, counters }
    }

    /// The handle that swaps this layer's rules live.
    pub fn handle(&self) -> &SteeringHandle {
        &self.handle
    }
}

impl<S> Layer<S> for TrafficSteeringLayer {
    type Service = TrafficSteering<S>;

    fn layer(&self, inner: S) -> TrafficSteering<S> {
        TrafficSteering {
            inner,
            handle: self.handle.clone(),
            counters: self.counters.clone(),
        }
    }
}

/// The `traffic_steering` service.
#[derive(Debug, Clone)]
pub struct TrafficSteering<S> {
    inner: S,
    handle: SteeringHandle,
    counters: Arc<SteeringCounters>,
}

impl<S> TrafficSteering<S> {
    fn steer(&self, req: &mut HttpRequest) {
        let rules = self.handle.load();
        let rpc = req
            .extensions()
            .get::<RpcInfo>()
            .map(|r| (&*r.service, &*r.method));
        let view = RequestView {
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
            authority: req.uri().authority().map(|a| a.as_str()),
            rpc,
        };
        let Some(i) = rules.find(&view) else {
            self.counters.unmatched();
            return;
        };
        let rule = &rules.rules()[i];
        rule.hit();
        match rule.target(fastrand::u64(..)) {
            SteeringTarget::Group(g) => {
                req.extensions_mut().insert(TargetGroup(g.clone()));
            }
            SteeringTarget::Cluster(c) => {
                req.extensions_mut().insert(ClusterOverride(c.clone()));
            }
        }
    }
}

impl<S> Service<HttpRequest> for TrafficSteering<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> S::Future {
        self.steer(&mut req);
        self.inner.call(req)
    }
}

/// Wraps a boxed service in the layer (for the registry).
pub(crate) fn boxed(layer: &TrafficSteeringLayer, inner: BoxHttp) -> BoxHttp {
    BoxHttp::new(layer.layer(inner))
}
