//! Registration of the `outlier_detection` cluster extension.

use std::sync::Arc;

use proxy_core::{cluster::ClusterExtension, Registry};

use super::{detector::OutlierDetection, metrics::OutlierMetrics, OutlierConfig};
use crate::healing::HealingSink;

/// Registers the `outlier_detection` cluster extension
/// (`clusters[].extensions: [{typed: outlier_detection, config: {...}}]`). Ejections
/// go to the section's `healing.webhook`, if any.
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::outlier::register(&mut registry);
/// ```
pub fn register(registry: &mut Registry) {
    register_factory(registry, None);
}

/// Registers `outlier_detection` with every ejection reported to `sink` (an
/// in-process healer, a message queue), whatever the sections say about a webhook.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_lb::healing::{EjectionReport, HealingAction, HealingSink, ReportFuture};
///
/// #[derive(Debug)]
/// struct LogSink;
/// impl HealingSink for LogSink {
///     fn report(&self, report: EjectionReport) -> ReportFuture {
///         Box::pin(async move {
///             eprintln!("{} {} ejected: {}", report.cluster, report.endpoint, report.reason);
///             Ok(HealingAction::Keep)
///         })
///     }
/// }
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::outlier::register_with_sink(&mut registry, Arc::new(LogSink));
/// ```
pub fn register_with_sink(registry: &mut Registry, sink: Arc<dyn HealingSink>) {
    register_factory(registry, Some(sink));
}

fn register_factory(registry: &mut Registry, sink: Option<Arc<dyn HealingSink>>) {
    registry.register_cluster_extension("outlier_detection", move |cfg, ctx| {
        let cfg: OutlierConfig = cfg.parse()?;
        let cluster = ctx.cluster.unwrap_or_default();
        let counters = ctx.metrics::<OutlierMetrics>("lb/outlier").cluster(cluster);
        let detection = OutlierDetection::new(cfg, cluster, counters, sink.clone())?;
        Ok(Arc::new(detection) as Arc<dyn ClusterExtension>)
    });
}
