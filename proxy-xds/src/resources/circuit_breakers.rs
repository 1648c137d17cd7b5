//! CDS: a cluster's `circuit_breakers` onto the cluster's own budgets and connection
//! cap (`proxy_core::config::CircuitBreakersConfig`).

use envoy_types::pb::{
    envoy::config::{cluster::v3::CircuitBreakers, core::v3::RoutingPriority},
    google::protobuf::UInt32Value,
};
use proxy_core::config::CircuitBreakersConfig;

use super::{fields, refuse_leftover};
use crate::Refusal;

/// Envoy's `max_requests` when the DEFAULT thresholds do not give it.
const ENVOY_MAX_REQUESTS: u32 = 1024;
/// Envoy's `max_retries` when the DEFAULT thresholds do not give it.
const ENVOY_MAX_RETRIES: u32 = 3;
/// Envoy's `max_connections` when the DEFAULT thresholds do not give it.
const ENVOY_MAX_CONNECTIONS: u32 = 1024;
/// Envoy's `max_pending_requests` when the DEFAULT thresholds do not give it.
const ENVOY_MAX_PENDING_REQUESTS: u32 = 1024;

/// Translates `circuit_breakers` (absent: Envoy's defaults, 1024 requests, 3
/// retries, 1024 connections and 1024 pending requests).
///
/// The DEFAULT thresholds' `max_requests`, `max_retries`, `max_connections` and
/// `max_pending_requests` become the cluster's limits, 4294967295 meaning unlimited.
/// Envoy's implicit values apply when they are absent, as for `max_requests`: the
/// control plane writes its clusters for Envoy's semantics (a cluster without
/// thresholds is capped at 1024 connections there, requests queue past it), and the
/// cap costs nothing on the request path here (it is counted when connections open
/// and close); Istio sends 4294967295 for what a DestinationRule does not set, so
/// its clusters are capped only as asked. HIGH thresholds are accepted and have no
/// effect: routes here are all of DEFAULT priority (RDS refuses HIGH).
/// `max_connection_pools` is accepted only unlimited (connection pools here are one
/// per endpoint and worker, fixed by the config, not created on demand); a
/// `retry_budget` and `per_host_thresholds` are refused.
pub(super) fn circuit_breakers(
    cb: Option<&CircuitBreakers>,
) -> Result<CircuitBreakersConfig, Refusal> {
    let mut out = CircuitBreakersConfig {
        max_requests: Some(ENVOY_MAX_REQUESTS),
        max_retries: Some(ENVOY_MAX_RETRIES),
        max_connections: Some(ENVOY_MAX_CONNECTIONS),
        max_pending_requests: Some(ENVOY_MAX_PENDING_REQUESTS),
    };
    let Some(cb) = cb else { return Ok(out) };
    let limit = |v: &Option<UInt32Value>, default: u32| match v {
        None => Some(default),
        Some(v) if v.value == u32::MAX => None,
        Some(v) => Some(v.value),
    };
    let unlimited = |v: &Option<UInt32Value>| v.as_ref().is_none_or(|v| v.value == u32::MAX);
    let mut seen_default = false;
    for (i, t) in cb.thresholds.iter().enumerate() {
        let path = format!("circuit_breakers.thresholds[{i}]");
        let default = match RoutingPriority::try_from(t.priority) {
            Ok(RoutingPriority::Default) => true,
            Ok(RoutingPriority::High) => false,
            Err(_) => {
                return Err(Refusal::new(
                    "",
                    format!("{path}.priority"),
                    format!("unknown priority {}", t.priority),
                ))
            }
        };
        if default && !unlimited(&t.max_connection_pools) {
            return Err(Refusal::new(
                "",
                format!("{path}.max_connection_pools"),
                "only 4294967295 (unlimited) is supported: connection pools are one per \
                 endpoint and worker here, not created on demand",
            ));
        }
        let mut rest = *t;
        rest.priority = 0;
        rest.track_remaining = false;
        rest.max_connections = None;
        rest.max_pending_requests = None;
        rest.max_requests = None;
        rest.max_retries = None;
        rest.max_connection_pools = None;
        refuse_leftover(&rest, fields::THRESHOLDS).map_err(|r| r.within(&path))?;
        if default {
            if seen_default {
                return Err(Refusal::new(
                    "",
                    format!("{path}.priority"),
                    "DEFAULT thresholds given twice",
                ));
            }
            seen_default = true;
            out.max_requests = limit(&t.max_requests, ENVOY_MAX_REQUESTS);
            out.max_retries = limit(&t.max_retries, ENVOY_MAX_RETRIES);
            out.max_connections = limit(&t.max_connections, ENVOY_MAX_CONNECTIONS);
            out.max_pending_requests = limit(&t.max_pending_requests, ENVOY_MAX_PENDING_REQUESTS);
        }
    }
    if !cb.per_host_thresholds.is_empty() {
        return Err(Refusal::new(
            "",
            "circuit_breakers.per_host_thresholds",
            "not supported: it would change behaviour",
        ));
    }
    Ok(out)
}
