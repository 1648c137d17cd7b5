//! Adaptive concurrency limiting: no hand-set limit.
//!
//! A control loop measures the system every `interval` (process CPU use, a latency
//! percentile of completed requests, requests in flight), compares the most loaded
//! signal with its target (CPU 70%, latency `tolerance` times a baseline learned while
//! healthy, or a fixed latency) and moves the admitted concurrency with a PID
//! controller ([`controller`]). Admission is one compare-and-swap on an in-flight
//! counter against the current limit; a refused request is answered at once with 503
//! (or 429), `retry-after` and `x-proxy-error: overloaded` (gRPC: `grpc-status: 8`).
//! Interfaces (RPC method or path prefix) whose learned baseline latency is high are
//! admitted only below a fraction of the limit, so they are shed first.
//! Registered as `adaptive_concurrency`; see [`AdaptiveConfig`] for the fields and
//! [`metrics`] for the metric names.
//!
//! ```
//! use proxy_filters::adaptive::{AdaptiveConcurrencyLayer, AdaptiveConfig};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = AdaptiveConcurrencyLayer::new(&AdaptiveConfig::default())?;
//! let svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn(
//!     |_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::from("ok")))
//!     },
//! ));
//! let resp = svc.oneshot(http::Request::new(())).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(layer.stats().admitted(), 1);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod config;
mod control;
pub mod controller;
mod cost;
mod layer;
mod limiter;
pub mod metrics;
mod signals;

use std::sync::Arc;

pub use config::{
    AdaptiveConfig, AdaptiveConfigError, CostConfig, CpuConfig, HeadroomConfig, LatencyConfig,
    PidConfig, RejectConfig, ThroughputFloorConfig, MAX_KD, MAX_KI, MAX_KP,
};
pub use layer::AdaptiveConcurrencyLayer;
pub use limiter::{AdaptiveConcurrency, ResponseFuture};
pub use metrics::{AdaptiveMetrics, LimiterStats};

use proxy_core::{BoxHttp, Registry};

/// The name this filter is registered under.
pub const FILTER_NAME: &str = "adaptive_concurrency";

/// Registers `adaptive_concurrency` (an HTTP filter, per listener or per route) in
/// `registry`. Its metrics are kept under [`metrics::METRICS_KEY`]; a limiter without a
/// `name` is named after its listener.
pub fn register(registry: &mut Registry) {
    registry.register_filter(FILTER_NAME, |cfg, ctx| {
        let mut config = AdaptiveConfig::from_yaml(cfg).map_err(|e| e.to_string())?;
        if config.name.is_none() {
            config.name = Some(ctx.route.or(ctx.listener).unwrap_or("default").to_owned());
        }
        let metrics = ctx.metrics::<AdaptiveMetrics>(metrics::METRICS_KEY);
        let layer =
            AdaptiveConcurrencyLayer::with_metrics(&config, &metrics).map_err(|e| e.to_string())?;
        Ok(Arc::new(move |inner: BoxHttp| {
            BoxHttp::new(tower_layer::Layer::layer(&layer, inner))
        }))
    });
}
