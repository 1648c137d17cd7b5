//! Registration of this crate's balancers in a [`proxy_core::Registry`].

use std::sync::Arc;

use proxy_core::{Balancer, BuildContext, Registry};

use crate::{
    least_request::LeastRequest,
    maglev::Maglev,
    metrics::{BalancerMetrics, HashPickCounters},
    random::Random,
    ring_hash::RingHash,
    round_robin::RoundRobin,
    ConfigError,
};

/// Registers everything proxy-lb offers: the balancers as `clusters[].lb.policy`
/// values (`random`, `round_robin` (smooth weighted; replaces proxy-core's unweighted
/// one), `least_request`, `ring_hash`, `maglev`), zone routing (`zone_routing` filter,
/// `zone_aware` policy), traffic steering (`traffic_steering` filter, `subset`
/// policy), and the `outlier_detection` and `health_check` cluster extensions.
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::register(&mut registry);
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_balancer("random", |cfg, _| boxed(Random::from_yaml(cfg)));
    registry.register_balancer("round_robin", |cfg, _| boxed(RoundRobin::from_yaml(cfg)));
    registry.register_balancer("least_request", |cfg, _| {
        boxed(LeastRequest::from_yaml(cfg))
    });
    registry.register_balancer("ring_hash", |cfg, ctx| {
        boxed(RingHash::from_yaml(cfg).map(|b| b.with_counters(counters(ctx, "ring_hash"))))
    });
    registry.register_balancer("maglev", |cfg, ctx| {
        boxed(Maglev::from_yaml(cfg).map(|b| b.with_counters(counters(ctx, "maglev"))))
    });
    crate::zone::register(registry);
    crate::steering::register(registry);
    crate::outlier::register(registry);
    crate::health::register(registry);
}

/// Pick counters of a hash balancer being built for `ctx.cluster`.
fn counters(ctx: &BuildContext<'_>, policy: &'static str) -> Arc<HashPickCounters> {
    ctx.metrics::<BalancerMetrics>(BalancerMetrics::KEY)
        .register(ctx.cluster.unwrap_or_default(), policy)
}

fn boxed<B: Balancer>(b: Result<B, ConfigError>) -> Result<Arc<dyn Balancer>, String> {
    b.map(|b| Arc::new(b) as Arc<dyn Balancer>)
        .map_err(|e| e.to_string())
}
