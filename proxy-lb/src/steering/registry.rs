//! Registration of `traffic_steering` (filter) and `subset` (balancer).

use std::sync::Arc;

use proxy_core::{config::Section, Balancer, BoxHttp, ConfigError, Registry};

use super::{
    filter::{boxed, TrafficSteeringLayer},
    handle::SteeringHandle,
    metrics::SteeringCounters,
    rules::RuleSet,
    subset::{Subset, SubsetConfig},
    SteeringConfig,
};

/// Registers the `traffic_steering` HTTP filter and the `subset` balancer.
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::steering::register(&mut registry);
/// assert!(registry.has_filter("traffic_steering"));
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_filter("traffic_steering", |cfg, ctx| {
        let cfg: SteeringConfig = cfg.parse()?;
        let counters = ctx.metrics::<SteeringCounters>("lb/steering");
        let rules = RuleSet::new(&cfg, |c| ctx.clusters.contains_key(c))?.count_in(&counters);
        let layer = TrafficSteeringLayer::new(SteeringHandle::new(rules), counters);
        Ok(Arc::new(move |inner: BoxHttp| boxed(&layer, inner)))
    });
    registry.register_balancer("subset", |cfg, _ctx| subset_balancer(cfg));
}

/// Builds a subset balancer from `lb.config` (`subset` and `zone_aware`).
pub(crate) fn subset_balancer(cfg: &Section) -> Result<Arc<dyn Balancer>, ConfigError> {
    let cfg: SubsetConfig = cfg.parse()?;
    Ok(Arc::new(Subset::try_from(&cfg)?))
}
