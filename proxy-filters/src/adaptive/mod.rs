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
//! admitted only below a share of the limit (`cost.high_cost_limit_percent`), so they
//! are shed first.
//! Registered as `adaptive_concurrency`; see [`AdaptiveConfig`] for the fields and
//! [`metrics`] for the metric names.
//!
//! ```yaml
//! http_filters:
//!   - typed: adaptive_concurrency
//!     config: { name: api, cpu: { target_percent: 70 }, latency: { percentile: 99 } }
//! ```

mod config;
mod control;
pub mod controller;
mod cost;
mod layer;
mod limiter;
pub mod metrics;
mod probe;
mod signals;
mod step;
mod validate;

use std::sync::Arc;

pub use config::{
    AdaptiveConfig, CostConfig, CpuConfig, HeadroomConfig, LatencyConfig, PidConfig, ProbeConfig,
    RejectConfig, ThroughputFloorConfig,
};
pub use layer::AdaptiveConcurrencyLayer;
pub use limiter::{AdaptiveConcurrency, ResponseFuture};
pub use metrics::{AdaptiveMetrics, LimiterStats};
pub use validate::{MAX_KD, MAX_KI, MAX_KP};

use proxy_core::{BoxHttp, Registry};

/// The name this filter is registered under.
pub const FILTER_NAME: &str = "adaptive_concurrency";

/// Registers `adaptive_concurrency` (an HTTP filter, per listener or per route) in
/// `registry`. Its metrics are kept under [`metrics::METRICS_KEY`]; a limiter without a
/// `name` is named after its route (a route's own filter), else its listener.
pub fn register(registry: &mut Registry) {
    registry.register_filter(FILTER_NAME, |cfg, ctx| {
        let mut config: AdaptiveConfig = cfg.parse()?;
        if config.name.is_none() {
            config.name = Some(ctx.route.or(ctx.listener).unwrap_or("default").to_owned());
        }
        let metrics = ctx.metrics::<AdaptiveMetrics>(metrics::METRICS_KEY);
        let layer = AdaptiveConcurrencyLayer::with_metrics(&config, &metrics)?;
        Ok(Arc::new(move |inner: BoxHttp| {
            BoxHttp::new(tower_layer::Layer::layer(&layer, inner))
        }))
    });
}
