//! Registration of `zone_routing` (filter) and `zone_aware` (balancer).

use std::sync::Arc;

use proxy_core::{BoxHttp, Registry};

use super::{
    filter::{boxed, ZoneRoutingLayer},
    metrics::ZoneCounters,
    ZoneRoutingConfig,
};

/// Registers the `zone_routing` HTTP filter and the `zone_aware` balancer (the subset
/// balancer: it honours the zone the filter chose, and steering groups too).
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::zone::register(&mut registry);
/// assert!(registry.has_filter("zone_routing"));
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_filter("zone_routing", |cfg, ctx| {
        let cfg: ZoneRoutingConfig = cfg.parse()?;
        let counters = ctx.metrics::<ZoneCounters>("lb/zone");
        let layer = ZoneRoutingLayer::new(&cfg, |name| ctx.clusters.get(name).cloned(), counters)?;
        Ok(Arc::new(move |inner: BoxHttp| boxed(&layer, inner)))
    });
    registry.register_balancer("zone_aware", |cfg, _ctx| {
        crate::steering::subset_balancer(cfg)
    });
}
