//! CDS: a cluster's `circuit_breakers` onto the cluster's own budgets
//! (`proxy_core::config::CircuitBreakersConfig`).

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

/// Translates `circuit_breakers` (absent: Envoy's defaults, 1024 requests and 3
/// retries in flight).
///
/// The DEFAULT thresholds' `max_requests` and `max_retries` become the cluster's
/// limits, 4294967295 meaning unlimited. HIGH thresholds are accepted and have no
/// effect: routes here are all of DEFAULT priority (RDS refuses HIGH).
/// `max_connections` and `max_pending_requests` are accepted only unlimited (there is
/// no cluster-wide connection limit nor a queue of requests waiting for one), as is
/// `max_connection_pools`; a `retry_budget` and `per_host_thresholds` are refused.
/// Envoy's implicit 1024 connections and pending requests when they are absent are
/// not enforced.
pub(super) fn circuit_breakers(
    cb: Option<&CircuitBreakers>,
) -> Result<CircuitBreakersConfig, Refusal> {
    let mut out = CircuitBreakersConfig {
        max_requests: Some(ENVOY_MAX_REQUESTS),
        max_retries: Some(ENVOY_MAX_RETRIES),
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
        for (name, v) in [
            ("max_connections", &t.max_connections),
            ("max_pending_requests", &t.max_pending_requests),
            ("max_connection_pools", &t.max_connection_pools),
        ] {
            if default && !unlimited(v) {
                return Err(Refusal::new(
                    "",
                    format!("{path}.{name}"),
                    "only 4294967295 (unlimited) is supported: requests never wait for a \
                     connection here and there is no cluster-wide connection limit",
                ));
            }
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
