//! Per-API and per-consumer request metrics (`typed: api_metrics`): a counter by
//! status class and a latency histogram (to the response headers) for each API and
//! consumer, on `/stats/prometheus`:
//!
//! ```text
//! proxy_filters_api_requests_total{api="echo",consumer="alice",status_class="2xx"} 12
//! proxy_filters_api_request_duration_seconds_bucket{api="echo",consumer="alice",le="0.005"} 9
//! ```
//!
//! The API is the matched route's name when the response carries it (a listener's
//! filter), else the route's own name (a route's filter, `routes[].filters`), else
//! `unmatched`. The consumer is the one an auth filter put on the request
//! ([`crate::auth::Consumer`]), so place this filter after `jwt_auth` /
//! `api_key_auth`; requests without one count as `anonymous`. Label cardinality is
//! bounded: past `max_consumers` distinct consumers per API (default 1000,
//! `anonymous` included), requests count under `consumer="other"`.
//!
//! The request path reads the API's and the consumers' maps through `arc-swap` and
//! updates atomics; only the first request of a new consumer copies its API's map,
//! under a mutex. The series survive reloads (they live in the server's metrics
//! registry). The filter also copies the request's consumer to the response
//! extensions, so that the filters before the auth filter (a listener's
//! `trace_context`) can record it.
//!
//! ```yaml
//! routes:
//!   - name: echo
//!     filters:
//!       - typed: jwt_auth
//!         config: { ... }
//!       - typed: api_metrics
//!         config: { max_consumers: 500 }
//! ```

mod service;
mod store;

use std::{num::NonZeroUsize, sync::Arc};

use serde::{Deserialize, Serialize};
use tower_layer::Layer;

pub use service::{ApiMetricsService, ResponseFuture};
pub use store::{
    ApiMetrics, ApiSeries, Series, SeriesRef, ANONYMOUS_CONSUMER, LATENCY_BUCKETS, OTHER_CONSUMER,
    UNMATCHED_API,
};

/// The registered name.
pub const NAME: &str = "api_metrics";

/// The `api_metrics` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiMetricsConfig {
    /// Distinct consumers counted per API at most; the rest count as
    /// `consumer="other"` (default 1000).
    #[serde(default = "default_max_consumers")]
    pub max_consumers: NonZeroUsize,
    /// The API label of requests whose response carries no matched route (default:
    /// the route's name for a route's filter, else `unmatched`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

impl Default for ApiMetricsConfig {
    fn default() -> Self {
        Self {
            max_consumers: default_max_consumers(),
            api: None,
        }
    }
}

fn default_max_consumers() -> NonZeroUsize {
    NonZeroUsize::new(1000).unwrap_or(NonZeroUsize::MIN)
}

/// Applies [`ApiMetricsService`] to a service.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::{
///     api_metrics::{ApiMetrics, ApiMetricsConfig, ApiMetricsLayer},
///     auth::Consumer,
/// };
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let metrics = Arc::new(ApiMetrics::default());
/// let cfg = ApiMetricsConfig { api: Some("echo".into()), ..Default::default() };
/// let svc = ServiceBuilder::new()
///     .layer(ApiMetricsLayer::new(&cfg, metrics.clone()))
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let mut req = http::Request::new(Body::empty());
/// req.extensions_mut().insert(Consumer::new("alice"));
/// svc.oneshot(req).await?;
/// assert_eq!(metrics.api("echo").series(Some("alice"), 10).requests("2xx"), 1);
/// let mut text = String::new();
/// metrics.render_into(&mut text);
/// assert!(text.contains(
///     r#"proxy_filters_api_requests_total{api="echo",consumer="alice",status_class="2xx"} 1"#
/// ));
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ApiMetricsLayer {
    settings: Arc<Settings>,
}

/// What every clone of the layer shares.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) metrics: Arc<ApiMetrics>,
    /// The series of the configured API, for responses without a matched route.
    pub(crate) fallback: Arc<ApiSeries>,
    pub(crate) max_consumers: usize,
}

impl ApiMetricsLayer {
    /// A layer counting into `metrics` (the server's, from the build context, or
    /// one of its own).
    pub fn new(cfg: &ApiMetricsConfig, metrics: Arc<ApiMetrics>) -> Self {
        let fallback = match &cfg.api {
            Some(api) => metrics.api(api),
            None => metrics.unmatched(),
        };
        Self {
            settings: Arc::new(Settings {
                metrics,
                fallback,
                max_consumers: cfg.max_consumers.get(),
            }),
        }
    }
}

impl<S> Layer<S> for ApiMetricsLayer {
    type Service = ApiMetricsService<S>;

    fn layer(&self, inner: S) -> ApiMetricsService<S> {
        ApiMetricsService::new(inner, self.settings.clone())
    }
}
