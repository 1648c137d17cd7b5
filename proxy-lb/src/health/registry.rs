//! Registration of the `health_check` cluster extension.

use std::sync::Arc;

use proxy_core::{cluster::ClusterExtension, Registry};

use super::{checker::HealthCheck, metrics::HealthMetrics, HealthCheckConfig};

/// Registers the `health_check` cluster extension
/// (`clusters[].extensions: [{typed: health_check, config: {...}}]`).
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::health::register(&mut registry);
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_cluster_extension("health_check", |cfg, ctx| {
        let cfg: HealthCheckConfig = cfg.parse()?;
        let cluster = ctx.cluster.unwrap_or_default();
        let counters = ctx.metrics::<HealthMetrics>("lb/health").cluster(cluster);
        let check = HealthCheck::new(cfg, cluster, counters)?;
        Ok(Arc::new(check) as Arc<dyn ClusterExtension>)
    });
}
