//! Registration of this crate's balancers in a [`proxy_core::Registry`].

use std::sync::Arc;

use proxy_core::{Balancer, BuildContext, Registry};

use crate::{
    least_request::{LeastRequest, LeastRequestConfig},
    maglev::{Maglev, MaglevConfig},
    metrics::{BalancerMetrics, HashPickCounters},
    random::{Random, RandomConfig},
    ring_hash::{RingHash, RingHashConfig},
    round_robin::{RoundRobin, RoundRobinConfig},
};

/// Registers everything proxy-lb offers: the balancers as `clusters[].lb.typed`
/// values (`random`, `round_robin`, `least_request`, `ring_hash`, `maglev`), zone
/// routing (`zone_routing` filter, `zone_aware` balancer), traffic steering
/// (`traffic_steering` filter, `subset` balancer), per-route hash keys (`route_hash`
/// route filter), and the `outlier_detection` and `health_check` cluster extensions.
///
/// `round_robin` is this crate's smooth weighted round robin: it replaces the
/// unweighted one a default [`Registry`] starts with, so a cluster without an `lb`
/// section follows its endpoints' weights once proxy-lb is registered.
///
/// Each factory only parses its section
/// ([`proxy_core::config::Section::parse`]) and calls the constructor code uses
/// (`Maglev::new(&MaglevConfig)`, ...), so a bad section fails with the same error
/// either way.
///
/// # Example
/// ```
/// use proxy_core::config::{Config, TypedConfig};
/// use proxy_lb::{hash_policy::HashPolicyConfig, maglev::MaglevConfig};
///
/// let mut registry = proxy_core::Registry::default();
/// proxy_lb::register(&mut registry);
///
/// let mut config: Config = proxy_core::config::from_yaml(concat!(
///     "listeners: [{name: web, address: 127.0.0.1:0, virtual_hosts: []}]\n",
///     "clusters: [{name: users, endpoints: [127.0.0.1:8080]}]",
/// ))?;
/// config.clusters[0].lb = TypedConfig::with(
///     "maglev",
///     &MaglevConfig { hash_policy: vec![HashPolicyConfig::SourceIp], table_size: 65537 },
/// )?;
/// let snapshot = proxy_core::snapshot::Snapshot::build(config, &registry, None)?;
/// assert!(snapshot.clusters.contains_key("users"));
/// # Ok::<(), proxy_core::ConfigError>(())
/// ```
pub fn register(registry: &mut Registry) {
    registry.register_balancer("random", |cfg, _| {
        let cfg: RandomConfig = cfg.parse()?;
        Ok(arc(Random::new(&cfg)))
    });
    registry.register_balancer("round_robin", |cfg, _| {
        let cfg: RoundRobinConfig = cfg.parse()?;
        Ok(arc(RoundRobin::new(&cfg)))
    });
    registry.register_balancer("least_request", |cfg, _| {
        let cfg: LeastRequestConfig = cfg.parse()?;
        Ok(arc(LeastRequest::new(&cfg)?))
    });
    registry.register_balancer("ring_hash", |cfg, ctx| {
        let cfg: RingHashConfig = cfg.parse()?;
        Ok(arc(
            RingHash::new(&cfg)?.with_counters(counters(ctx, "ring_hash"))
        ))
    });
    registry.register_balancer("maglev", |cfg, ctx| {
        let cfg: MaglevConfig = cfg.parse()?;
        Ok(arc(
            Maglev::new(&cfg)?.with_counters(counters(ctx, "maglev"))
        ))
    });
    crate::zone::register(registry);
    crate::steering::register(registry);
    crate::route_hash::register(registry);
    crate::outlier::register(registry);
    crate::health::register(registry);
}

/// Pick counters of a hash balancer being built for `ctx.cluster`.
fn counters(ctx: &BuildContext<'_>, policy: &'static str) -> Arc<HashPickCounters> {
    ctx.metrics::<BalancerMetrics>(BalancerMetrics::KEY)
        .register(ctx.cluster.unwrap_or_default(), policy)
}

fn arc<B: Balancer>(b: B) -> Arc<dyn Balancer> {
    Arc::new(b)
}
