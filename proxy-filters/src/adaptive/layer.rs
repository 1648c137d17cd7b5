//! The tower layer of the adaptive concurrency limiter.

use std::sync::Arc;

use tower_layer::Layer;

use super::{
    config::AdaptiveConfig,
    control,
    limiter::{AdaptiveConcurrency, Shared},
    metrics::{AdaptiveMetrics, LimiterStats},
};
use crate::ConfigError;

/// Builds [`AdaptiveConcurrency`] services that share one gate and one control loop.
///
/// Cheap to clone. Building it starts nothing (so `--validate` has no side effects):
/// the control loop starts when the layer wraps a service inside a tokio runtime, or
/// at the first request, and stops once the layer and every service made from it are
/// dropped.
///
/// # Example
/// ```
/// use proxy_core::{config::Percent, Body, BoxError, HttpRequest};
/// use proxy_filters::adaptive::{AdaptiveConcurrencyLayer, AdaptiveConfig, CpuConfig};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cfg = AdaptiveConfig {
///     name: Some("api".into()),
///     cpu: Some(CpuConfig { target_percent: Percent::try_from(60.0)?, ..Default::default() }),
///     ..Default::default()
/// };
/// let layer = AdaptiveConcurrencyLayer::try_from(&cfg)?;
/// let svc = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let resp = svc.oneshot(http::Request::new(Body::empty())).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(layer.stats().admitted(), 1);
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrencyLayer {
    shared: Arc<Shared>,
}

impl AdaptiveConcurrencyLayer {
    /// A limiter with its own metrics.
    ///
    /// # Errors
    /// When the config is refused (the error names the field).
    pub fn new(config: &AdaptiveConfig) -> Result<Self, ConfigError> {
        Self::with_metrics(config, &AdaptiveMetrics::default())
    }

    /// A limiter whose figures go to `metrics` under `config.name` (`default` if unset).
    ///
    /// # Errors
    /// When the config is refused (the error names the field).
    pub fn with_metrics(
        config: &AdaptiveConfig,
        metrics: &AdaptiveMetrics,
    ) -> Result<Self, ConfigError> {
        let settings = config.validated()?;
        for w in &settings.warnings {
            tracing::warn!(filter = "adaptive_concurrency", warning = %w, "config value clamped");
        }
        let stats = metrics.limiter(config.name.as_deref().unwrap_or("default"));
        Ok(Self {
            shared: Arc::new(Shared::new(settings, stats)),
        })
    }

    /// This limiter's figures.
    pub fn stats(&self) -> &Arc<LimiterStats> {
        &self.shared.stats
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.shared.gate.limit()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.shared.gate.in_flight()
    }

    /// Warnings for config values that were clamped (also logged), naming the field.
    pub fn warnings(&self) -> &[String] {
        &self.shared.settings.warnings
    }
}

impl TryFrom<&AdaptiveConfig> for AdaptiveConcurrencyLayer {
    type Error = ConfigError;

    /// [`AdaptiveConcurrencyLayer::new`]: a limiter with its own metrics.
    fn try_from(config: &AdaptiveConfig) -> Result<Self, ConfigError> {
        Self::new(config)
    }
}

impl<S> Layer<S> for AdaptiveConcurrencyLayer {
    type Service = AdaptiveConcurrency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        control::start(&self.shared);
        AdaptiveConcurrency::new(inner, self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use bytes::Bytes;
    use http::{Request, Response};
    use tower::{service_fn, Layer, Service, ServiceExt};

    use super::*;

    fn config(yaml: &str) -> AdaptiveConfig {
        proxy_core::config::from_yaml(yaml).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn control_loop_runs_and_stops_with_the_layer() {
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let layer = AdaptiveConcurrencyLayer::new(&config("{cpu: null}")).unwrap();
        assert_eq!(
            tasks(),
            before,
            "not started before the layer wraps a service"
        );
        let svc = layer.layer(service_fn(|_r: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Bytes::new()))
        }));
        let _second = layer.layer(service_fn(|_r: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Bytes::new()))
        }));
        assert_eq!(tasks(), before + 1, "one loop per layer");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            layer
                .stats()
                .steps
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 3
        );
        drop((svc, _second, layer));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(tasks(), before, "the control task ended with the layer");
    }

    #[tokio::test]
    async fn rejections_carry_the_overload_answer() {
        let pending =
            |_r: Request<()>| std::future::pending::<Result<Response<Bytes>, Infallible>>();
        for (yaml, grpc, status) in [
            ("{cpu: null, min_limit: 1, max_limit: 1, headroom: null}", false, 503),
            ("{cpu: null, min_limit: 1, max_limit: 1, headroom: null, reject: {status: 429, retry_after: 3s}}", false, 429),
            ("{cpu: null, min_limit: 1, max_limit: 1, headroom: null}", true, 200),
        ] {
            let layer = AdaptiveConcurrencyLayer::new(&config(yaml)).unwrap();
            let mut holder = layer.layer(service_fn(pending));
            let _held = holder.call(Request::new(()));
            assert_eq!(layer.in_flight(), 1);
            let mut req = Request::new(());
            if grpc {
                req.headers_mut()
                    .insert("content-type", "application/grpc+proto".parse().unwrap());
            }
            let resp = layer.layer(service_fn(pending)).oneshot(req).await.unwrap();
            assert_eq!(resp.status(), status, "{yaml}");
            let h = resp.headers();
            assert_eq!(h["x-proxy-error"], "overloaded");
            assert_eq!(h["retry-after"], if status == 429 { "3" } else { "1" });
            if grpc {
                assert_eq!(h["grpc-status"], "8");
                assert_eq!(h["content-type"], "application/grpc");
            }
            assert_eq!(layer.stats().rejected_limit(), 1);
            assert_eq!(layer.stats().admitted(), 1);
        }
    }

    #[tokio::test]
    async fn dropped_requests_release_their_place() {
        let layer = AdaptiveConcurrencyLayer::new(&config(
            "{cpu: null, min_limit: 2, max_limit: 2, headroom: null}",
        ))
        .unwrap();
        let mut svc = layer.layer(service_fn(|_r: Request<()>| {
            std::future::pending::<Result<Response<Bytes>, Infallible>>()
        }));
        let a = svc.call(Request::new(()));
        let b = svc.call(Request::new(()));
        assert_eq!(layer.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(layer.in_flight(), 0);
    }
}
