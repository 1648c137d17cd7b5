//! CDS: a cluster's `lb_policy` and its settings onto a balancer of the config.

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{LbConfig, LbPolicy, RingHashLbConfig},
    Cluster,
};
use proxy_core::config::TypedConfig;
use serde_json::json;

use super::{fields, refuse_leftover};
use crate::Refusal;

pub(super) fn balancer(c: &Cluster) -> Result<TypedConfig, Refusal> {
    let policy = LbPolicy::try_from(c.lb_policy)
        .map_err(|_| Refusal::new("", "lb_policy", format!("unknown policy {}", c.lb_policy)))?;
    let mismatch = |field: &str| {
        Refusal::new(
            "",
            field,
            format!("given with lb_policy {}", policy.as_str_name()),
        )
    };
    let typed = |name: &str, cfg: serde_json::Value| {
        TypedConfig::with(name, &cfg).map_err(|e| Refusal::new("", "lb_policy", e))
    };
    match (policy, &c.lb_config) {
        (LbPolicy::RoundRobin, None) => Ok(TypedConfig::named("round_robin")),
        (LbPolicy::RoundRobin, Some(LbConfig::RoundRobinLbConfig(rr))) => {
            refuse_leftover(rr, fields::ROUND_ROBIN_LB_CONFIG)
                .map_err(|r| r.within("round_robin_lb_config"))?;
            Ok(TypedConfig::named("round_robin"))
        }
        (LbPolicy::Random, None) => Ok(TypedConfig::named("random")),
        (LbPolicy::LeastRequest, None) => typed("least_request", json!({})),
        (LbPolicy::LeastRequest, Some(LbConfig::LeastRequestLbConfig(lr))) => {
            let mut rest = lr.clone();
            rest.choice_count = None;
            if rest
                .active_request_bias
                .as_ref()
                .is_some_and(|b| b.default_value == 1.0)
            {
                rest.active_request_bias = None;
            }
            refuse_leftover(&rest, fields::LEAST_REQUEST_LB_CONFIG)
                .map_err(|r| r.within("least_request_lb_config"))?;
            let choices = lr.choice_count.as_ref().map_or(2, |c| c.value);
            typed("least_request", json!({ "choice_count": choices }))
        }
        // Envoy hashes on the key of the request's route (RDS `hash_policy`, the
        // `route_hash` route filter) and picks a random endpoint (by weight) for a
        // request without one: the cluster's only key source is the route's.
        (LbPolicy::RingHash, None) => typed("ring_hash", ring_hash(&RingHashLbConfig::default())?),
        (LbPolicy::RingHash, Some(LbConfig::RingHashLbConfig(rh))) => typed(
            "ring_hash",
            ring_hash(rh).map_err(|r| r.within("ring_hash_lb_config"))?,
        ),
        (LbPolicy::Maglev, None) => typed("maglev", maglev(None)),
        (LbPolicy::Maglev, Some(LbConfig::MaglevLbConfig(m))) => {
            let mut rest = *m;
            rest.table_size = None;
            refuse_leftover(&rest, fields::MAGLEV_LB_CONFIG)
                .map_err(|r| r.within("maglev_lb_config"))?;
            typed("maglev", maglev(m.table_size.as_ref().map(|t| t.value)))
        }
        (_, Some(LbConfig::OriginalDstLbConfig(_))) => Err(mismatch("original_dst_lb_config")),
        (_, Some(LbConfig::RoundRobinLbConfig(_))) => Err(mismatch("round_robin_lb_config")),
        (_, Some(LbConfig::LeastRequestLbConfig(_))) => Err(mismatch("least_request_lb_config")),
        (_, Some(LbConfig::RingHashLbConfig(_))) => Err(mismatch("ring_hash_lb_config")),
        (_, Some(LbConfig::MaglevLbConfig(_))) => Err(mismatch("maglev_lb_config")),
        (other, None) => Err(Refusal::new(
            "",
            "lb_policy",
            format!("{} is not supported", other.as_str_name()),
        )),
    }
}

/// Envoy's ring sizes when absent.
const ENVOY_MIN_RING: u64 = 1024;
const ENVOY_MAX_RING: u64 = 8 * 1024 * 1024;
/// Envoy's Maglev table size when absent.
const ENVOY_MAGLEV_TABLE: u64 = 65537;

/// proxy-lb's `ring_hash` config: xxHash (the only function), the ring sizes
/// (Envoy's 1024 and 8M when absent), keys from the route.
fn ring_hash(rh: &RingHashLbConfig) -> Result<serde_json::Value, Refusal> {
    if rh.hash_function != 0 {
        return Err(Refusal::new(
            "",
            "hash_function",
            "only XX_HASH is supported",
        ));
    }
    let mut rest = *rh;
    rest.minimum_ring_size = None;
    rest.maximum_ring_size = None;
    refuse_leftover(&rest, fields::RING_HASH_LB_CONFIG)?;
    Ok(json!({
        "hash_policy": ["route"],
        "min_ring_size": rh.minimum_ring_size.as_ref().map_or(ENVOY_MIN_RING, |v| v.value),
        "max_ring_size": rh.maximum_ring_size.as_ref().map_or(ENVOY_MAX_RING, |v| v.value),
    }))
}

/// proxy-lb's `maglev` config: the table size (Envoy's 65537 when absent), keys from
/// the route.
fn maglev(table_size: Option<u64>) -> serde_json::Value {
    json!({
        "hash_policy": ["route"],
        "table_size": table_size.unwrap_or(ENVOY_MAGLEV_TABLE),
    })
}
