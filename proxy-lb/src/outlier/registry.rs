//! Registration of the `outlier_detection` cluster extension.

use std::sync::Arc;

use proxy_core::{cluster::ClusterExtension, Registry};

use super::{detector::OutlierDetection, metrics::OutlierMetrics, OutlierConfig};

/// Registers the `outlier_detection` cluster extension
/// (`clusters[].extensions: [{typed: outlier_detection, config: {...}}]`).
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::outlier::register(&mut registry);
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_cluster_extension("outlier_detection", |cfg, ctx| {
        let cfg: OutlierConfig = crate::config::parse(cfg).map_err(|e| e.to_string())?;
        let cluster = ctx.cluster.unwrap_or_default();
        let counters = ctx.metrics::<OutlierMetrics>("lb/outlier").cluster(cluster);
        let detection =
            OutlierDetection::new(cfg, cluster, counters, None).map_err(|e| e.to_string())?;
        Ok(Arc::new(detection) as Arc<dyn ClusterExtension>)
    });
}
