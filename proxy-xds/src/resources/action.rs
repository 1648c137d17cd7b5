//! RDS: a `RouteAction` into the action part of a route: the cluster or weighted
//! clusters, the timeout, the retry policy and the rewrites.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::{
    core::v3::RoutingPriority,
    route::v3::{
        route_action::{ClusterSpecifier, HostRewriteSpecifier},
        RetryPolicy, RouteAction, WeightedCluster,
    },
};
use proxy_core::config::{RetryOn, RetryPolicyConfig, RouteConfig, TypedConfig};
use serde_json::json;

use super::{duration, fields_http as fields, refuse_leftover, route::not_supported};
use crate::Refusal;

/// Envoy's route timeout when `timeout` is absent.
const ENVOY_ROUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// The most retries proxy-core allows.
const MAX_RETRIES: u32 = 10;
/// The HTTP filter (proxy-lb's `traffic_steering`) that carries `weighted_clusters`:
/// register it (`proxy_lb::steering::register`) to accept them.
pub const WEIGHTED_CLUSTERS_FILTER: &str = "traffic_steering";

pub(super) fn route_action(
    a: &RouteAction,
    vhost_retry: Option<&RetryPolicy>,
    out: &mut RouteConfig,
    clusters: &mut BTreeSet<String>,
) -> Result<(), Refusal> {
    let mut rest = a.clone();
    rest.cluster_specifier = None;
    rest.timeout = None;
    rest.retry_policy = None;
    rest.prefix_rewrite.clear();
    rest.host_rewrite_specifier = None;
    rest.hash_policy.clear();
    if rest.priority == RoutingPriority::Default as i32 {
        rest.priority = 0;
    }
    refuse_leftover(&rest, fields::ROUTE_ACTION)?;
    match &a.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => {
            out.cluster.clone_from(c);
            clusters.insert(c.clone());
        }
        Some(ClusterSpecifier::Cluster(_)) => {
            return Err(Refusal::new("", "cluster", "must not be empty"))
        }
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            weighted(w, out, clusters).map_err(|e| e.within("weighted_clusters"))?;
        }
        Some(ClusterSpecifier::ClusterHeader(_)) => return Err(not_supported("cluster_header")),
        Some(ClusterSpecifier::ClusterSpecifierPlugin(_)) => {
            return Err(not_supported("cluster_specifier_plugin"))
        }
        Some(ClusterSpecifier::InlineClusterSpecifierPlugin(_)) => {
            return Err(not_supported("inline_cluster_specifier_plugin"))
        }
        None => {
            return Err(Refusal::new(
                "",
                "cluster_specifier",
                "a cluster is required",
            ))
        }
    }
    out.filters
        .extend(super::route_hash::route_hash(&a.hash_policy)?);
    out.timeout = match &a.timeout {
        None => Some(ENVOY_ROUTE_TIMEOUT),
        Some(d) => {
            let d = duration(d).map_err(|e| Refusal::new("", "timeout", e))?;
            (!d.is_zero()).then_some(d)
        }
    };
    if let Some(p) = a.retry_policy.as_ref().or(vhost_retry) {
        out.retry = Some(retry(p).map_err(|e| e.within("retry_policy"))?);
    }
    if !a.prefix_rewrite.is_empty() {
        if !matches!(
            out.matcher.path,
            Some(proxy_core::config::PathMatchConfig::Prefix(_))
        ) {
            return Err(Refusal::new(
                "",
                "prefix_rewrite",
                "only supported on a route with a non-empty prefix match",
            ));
        }
        out.prefix_rewrite = Some(a.prefix_rewrite.clone());
    }
    match &a.host_rewrite_specifier {
        None => {}
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => out.host_rewrite = Some(h.clone()),
        Some(HostRewriteSpecifier::AutoHostRewrite(b)) if !b.value => {}
        Some(HostRewriteSpecifier::AutoHostRewrite(_)) => {
            return Err(not_supported("auto_host_rewrite"))
        }
        Some(HostRewriteSpecifier::HostRewriteHeader(_)) => {
            return Err(not_supported("host_rewrite_header"))
        }
        Some(HostRewriteSpecifier::HostRewritePathRegex(_)) => {
            return Err(not_supported("host_rewrite_path_regex"))
        }
        Some(HostRewriteSpecifier::HostRewrite(_)) => return Err(not_supported("host_rewrite")),
    }
    Ok(())
}

/// Weighted clusters as a `traffic_steering` route filter with one rule sending
/// every request to one of the clusters by weight; the route's own cluster is the
/// first. Clusters of weight 0 get nothing, as in Envoy.
fn weighted(
    w: &WeightedCluster,
    out: &mut RouteConfig,
    clusters: &mut BTreeSet<String>,
) -> Result<(), Refusal> {
    #[allow(deprecated)]
    let mut rest = w.clone();
    rest.clusters.clear();
    #[allow(deprecated)]
    {
        rest.total_weight = None;
    }
    refuse_leftover(&rest, fields::WEIGHTED_CLUSTER)?;
    let mut targets = Vec::new();
    let mut sum: u64 = 0;
    for (i, c) in w.clusters.iter().enumerate() {
        let at = format!("clusters[{i}]");
        let mut rest = c.clone();
        rest.name.clear();
        rest.weight = None;
        refuse_leftover(&rest, fields::CLUSTER_WEIGHT).map_err(|r| r.within(&at))?;
        if c.name.is_empty() {
            return Err(Refusal::new("", format!("{at}.name"), "must not be empty"));
        }
        let weight = c.weight.as_ref().map_or(0, |w| w.value);
        sum += u64::from(weight);
        clusters.insert(c.name.clone());
        if weight > 0 {
            targets.push(json!({ "name": c.name, "weight": weight }));
        }
    }
    #[allow(deprecated)]
    if let Some(total) = &w.total_weight {
        if u64::from(total.value) != sum {
            return Err(Refusal::new(
                "",
                "total_weight",
                format!("{} is not the sum of the weights ({sum})", total.value),
            ));
        }
    }
    let Some(first) = w
        .clusters
        .iter()
        .find(|c| c.weight.as_ref().is_some_and(|w| w.value > 0))
    else {
        return Err(Refusal::new(
            "",
            "clusters",
            "at least one cluster needs a weight above 0",
        ));
    };
    out.cluster.clone_from(&first.name);
    let config = json!({
        "rules": [{ "name": "weighted_clusters", "to": { "clusters": targets } }]
    });
    let filter = TypedConfig::with(WEIGHTED_CLUSTERS_FILTER, &config)
        .map_err(|e| Refusal::new("", "clusters", e))?;
    out.filters.push(filter);
    Ok(())
}

/// A retry policy: `retry_on` conditions that map to the proxy's (`5xx`,
/// `gateway-error`, `reset`, `connect-failure`, with Envoy's meaning: `5xx`,
/// `gateway-error` and `reset` also retry connect failures, resets and per-try
/// timeouts), `num_retries` (1 when absent, at most 10) and `per_try_timeout`.
fn retry(p: &RetryPolicy) -> Result<RetryPolicyConfig, Refusal> {
    let mut rest = p.clone();
    rest.retry_on.clear();
    rest.num_retries = None;
    rest.per_try_timeout = None;
    refuse_leftover(&rest, fields::RETRY_POLICY)?;
    let mut on: Vec<RetryOn> = Vec::new();
    let mut add = |c: &[RetryOn]| {
        for c in c {
            if !on.contains(c) {
                on.push(*c);
            }
        }
    };
    for cond in p
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        use RetryOn::{ConnectFailure, GatewayError, PerTryTimeout, Reset, ServerError};
        match cond {
            "5xx" => add(&[ServerError, ConnectFailure, Reset, PerTryTimeout]),
            "gateway-error" => add(&[GatewayError, ConnectFailure, Reset, PerTryTimeout]),
            "reset" => add(&[Reset, ConnectFailure, PerTryTimeout]),
            "connect-failure" => add(&[ConnectFailure]),
            other => {
                return Err(Refusal::new(
                    "",
                    "retry_on",
                    format!(
                        "{other:?} is not supported (5xx, gateway-error, reset and connect-failure are)"
                    ),
                ))
            }
        }
    }
    let attempts = p.num_retries.as_ref().map_or(1, |n| n.value);
    if attempts > MAX_RETRIES {
        return Err(Refusal::new(
            "",
            "num_retries",
            format!("{attempts} is above the maximum of {MAX_RETRIES}"),
        ));
    }
    let per_try_timeout = match &p.per_try_timeout {
        None => None,
        Some(d) => {
            let d = duration(d).map_err(|e| Refusal::new("", "per_try_timeout", e))?;
            (!d.is_zero()).then_some(d)
        }
    };
    Ok(RetryPolicyConfig {
        attempts: if on.is_empty() { 0 } else { attempts },
        retry_on: on,
        per_try_timeout,
    })
}
