//! Per-route hash policies (Envoy's `RouteAction.hash_policy`): the `route_hash`
//! route filter computes the request's key with the route's own policy and leaves
//! it in the request ([`RouteHashKey`]); a ring hash or Maglev cluster whose
//! `hash_policy` lists `route` uses it. A request whose route computed no key falls
//! to the cluster's next key source, else a weighted random endpoint, as in Envoy.

use std::task::{Context, Poll};

use http::Request;
use serde::{Deserialize, Serialize};

use crate::{
    hash_policy::{HashPolicy, HashPolicyConfig, RouteHashKey},
    ConfigError,
};

/// `{typed: route_hash, config: {...}}` in a route's `filters`.
///
/// ```yaml
/// filters:
///   - typed: route_hash
///     config: {hash_policy: [{header: {name: x-user}}, source_ip]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteHashConfig {
    /// Where the key comes from; the first source the request carries gives it.
    pub hash_policy: Vec<HashPolicyConfig>,
}

/// Computes each request's key with a route's hash policy.
///
/// # Example
/// ```
/// use http::HeaderName;
/// use proxy_lb::{hash_policy::{HashPolicyConfig, RouteHashKey}, route_hash::{RouteHashConfig, RouteHashLayer}};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let layer = RouteHashLayer::try_from(&RouteHashConfig {
///     hash_policy: vec![HashPolicyConfig::header(HeaderName::from_static("x-user"))],
/// })?;
/// let svc = ServiceBuilder::new().layer(layer).service(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.extensions().get::<RouteHashKey>().copied())
/// }));
/// let req = http::Request::builder().header("x-user", "ann").body(())?;
/// assert!(svc.clone().oneshot(req).await?.is_some());
/// assert!(svc.oneshot(http::Request::new(())).await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RouteHashLayer {
    policy: std::sync::Arc<HashPolicy>,
}

impl TryFrom<&RouteHashConfig> for RouteHashLayer {
    type Error = ConfigError;

    /// Validates the policy.
    ///
    /// # Errors
    /// An empty policy, a bad name, or a `route` source (which would read itself).
    fn try_from(cfg: &RouteHashConfig) -> Result<Self, ConfigError> {
        if let Some(i) = cfg
            .hash_policy
            .iter()
            .position(|c| *c == HashPolicyConfig::Route)
        {
            return Err(ConfigError::invalid(
                format!("hash_policy[{i}]"),
                "route is a cluster's key source, not a route's",
            ));
        }
        Ok(Self {
            policy: std::sync::Arc::new(HashPolicy::try_new(&cfg.hash_policy, "hash_policy")?),
        })
    }
}

impl RouteHashLayer {
    /// Whether the policy hashes the client address (the route then needs the
    /// connection's facts in the request).
    pub fn needs_conn_info(&self) -> bool {
        self.policy.needs_conn_info()
    }
}

impl<S> tower_layer::Layer<S> for RouteHashLayer {
    type Service = RouteHash<S>;

    fn layer(&self, inner: S) -> RouteHash<S> {
        RouteHash {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`RouteHashLayer`].
#[derive(Debug, Clone)]
pub struct RouteHash<S> {
    inner: S,
    policy: std::sync::Arc<HashPolicy>,
}

impl<S, B> tower_service::Service<Request<B>> for RouteHash<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        let (mut parts, body) = req.into_parts();
        match self.policy.hash(&parts) {
            Some(key) => {
                parts.extensions.insert(RouteHashKey(key));
            }
            // A key from an earlier pass (a retried or re-entered request) is not
            // this route's.
            None => {
                parts.extensions.remove::<RouteHashKey>();
            }
        }
        self.inner.call(Request::from_parts(parts, body))
    }
}

/// Registers the `route_hash` route filter.
pub(crate) fn register(registry: &mut proxy_core::Registry) {
    registry.register_filter("route_hash", |cfg, _ctx| {
        let cfg: RouteHashConfig = cfg.parse()?;
        let layer = RouteHashLayer::try_from(&cfg)?;
        Ok(std::sync::Arc::new(move |inner: proxy_core::BoxHttp| {
            proxy_core::BoxHttp::new(tower_layer::Layer::layer(&layer, inner))
        }))
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderName;
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::{
        ring_hash::{RingHash, RingHashConfig},
        StaticBackend,
    };

    /// The request head after the route's filter ran.
    async fn through_route(layer: &RouteHashLayer, user: Option<&str>) -> http::request::Parts {
        let svc = tower_layer::Layer::layer(
            layer,
            service_fn(|req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.into_parts().0)
            }),
        );
        let mut req = Request::builder();
        if let Some(u) = user {
            req = req.header("x-user", u);
        }
        let req = req.body(()).unwrap();
        match svc.oneshot(req).await {
            Ok(parts) => parts,
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn a_ring_hash_cluster_hashes_on_the_route_key() {
        let layer = RouteHashLayer::try_from(&RouteHashConfig {
            hash_policy: vec![HashPolicyConfig::header(HeaderName::from_static("x-user"))],
        })
        .unwrap();
        let ring = RingHash::new(&RingHashConfig {
            hash_policy: vec![HashPolicyConfig::Route],
            min_ring_size: 1024,
            max_ring_size: 8 * 1024,
        })
        .unwrap();
        let backends: Arc<[StaticBackend]> = (0..8)
            .map(|i| StaticBackend::new(format!("10.0.0.{i}:80"), 1))
            .collect();
        ring.prepare(&backends);
        let mut owners = std::collections::BTreeSet::new();
        for user in ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"] {
            let parts = through_route(&layer, Some(user)).await;
            assert_eq!(
                parts.extensions.get::<RouteHashKey>(),
                HashPolicy::try_new(
                    &[HashPolicyConfig::header(HeaderName::from_static("x-user"))],
                    "p"
                )
                .unwrap()
                .hash(&parts)
                .map(RouteHashKey)
                .as_ref()
            );
            let first = ring.pick_from(&backends, &parts);
            for _ in 0..5 {
                assert_eq!(ring.pick_from(&backends, &parts), first, "{user}");
            }
            owners.insert(first);
        }
        assert!(owners.len() > 1, "keys spread over the endpoints");
        // No key from the route: no RouteHashKey, a random endpoint.
        let parts = through_route(&layer, None).await;
        assert!(parts.extensions.get::<RouteHashKey>().is_none());
        assert!(ring.pick_from(&backends, &parts).is_some());
    }

    #[test]
    fn a_route_policy_may_not_read_the_route_key() {
        let err = RouteHashLayer::try_from(&RouteHashConfig {
            hash_policy: vec![HashPolicyConfig::SourceIp, HashPolicyConfig::Route],
        })
        .unwrap_err();
        assert_eq!(err.field(), "hash_policy[1]");
        let err = RouteHashLayer::try_from(&RouteHashConfig {
            hash_policy: vec![],
        })
        .unwrap_err();
        assert_eq!(err.field(), "hash_policy");
    }
}
