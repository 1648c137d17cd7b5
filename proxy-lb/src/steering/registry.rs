//! Registration of `traffic_steering` (filter) and `subset` (balancer).

use std::sync::Arc;

use proxy_core::{Balancer, BoxHttp, Registry};

use super::{
    filter::{boxed, TrafficSteeringLayer},
    handle::SteeringHandle,
    metrics::SteeringCounters,
    rules::RuleSet,
    subset::{InnerPolicy, Subset, SubsetConfig},
    SteeringConfig,
};
use crate::{
    least_request::LeastRequest, maglev::Maglev, random::Random, ring_hash::RingHash,
    round_robin::RoundRobin,
};

/// Registers the `traffic_steering` HTTP filter and the `subset` balancer.
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::register(&mut registry);
/// proxy_lb::steering::register(&mut registry);
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_filter("traffic_steering", |cfg, ctx| {
        let cfg: SteeringConfig = crate::config::parse(cfg).map_err(|e| e.to_string())?;
        let counters = ctx.metrics::<SteeringCounters>("lb/steering");
        let rules = RuleSet::new(&cfg, |c| ctx.clusters.contains_key(c))
            .map_err(|e| e.to_string())?
            .count_in(&counters);
        let layer = TrafficSteeringLayer::new(SteeringHandle::new(rules), counters);
        Ok(Arc::new(move |inner: BoxHttp| boxed(&layer, inner)))
    });
    registry.register_balancer("subset", |cfg, _ctx| subset_balancer(cfg));
}

/// Builds a subset balancer from `lb.config`.
pub(crate) fn subset_balancer(cfg: &serde_yaml::Value) -> Result<Arc<dyn Balancer>, String> {
    let cfg: SubsetConfig = crate::config::parse(cfg).map_err(|e| e.to_string())?;
    if cfg.zone_label.is_empty() {
        return Err("zone_label: must not be empty".into());
    }
    if cfg.group_label.is_empty() {
        return Err("group_label: must not be empty".into());
    }
    // Built once here so that a bad inner config is refused at load.
    inner_balancer(&cfg.inner).map_err(|e| format!("inner.{e}"))?;
    let inner = cfg.inner.clone();
    Ok(Arc::new(Subset::new(&cfg, move || {
        inner_balancer(&inner)
            .unwrap_or_else(|_| Arc::new(proxy_core::cluster::RoundRobin::default()))
    })))
}

/// A balancer of this crate by policy name.
fn inner_balancer(p: &InnerPolicy) -> Result<Arc<dyn Balancer>, String> {
    fn arc<B: Balancer>(b: Result<B, crate::ConfigError>) -> Result<Arc<dyn Balancer>, String> {
        b.map(|b| Arc::new(b) as Arc<dyn Balancer>)
            .map_err(|e| format!("config.{e}"))
    }
    match p.policy.as_str() {
        "round_robin" => arc(RoundRobin::from_yaml(&p.config)),
        "random" => arc(Random::from_yaml(&p.config)),
        "least_request" => arc(LeastRequest::from_yaml(&p.config)),
        "ring_hash" => arc(RingHash::from_yaml(&p.config)),
        "maglev" => arc(Maglev::from_yaml(&p.config)),
        other => Err(format!(
            "policy: unknown inner policy {other:?} (round_robin, random, least_request, ring_hash, maglev)"
        )),
    }
}
