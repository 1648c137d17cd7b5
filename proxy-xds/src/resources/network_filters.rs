//! Network filters of a listener's filter chain into the config model's
//! `network_filters`: this proxy's own by `TypedStruct`, and Envoy's TCP proxy and
//! connection limit where they mean the same.
//!
//! `envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy` becomes proxy-filters'
//! `tcp_proxy` (terminal: the listener then has no HTTP connection manager):
//! `cluster`, `idle_timeout` (Envoy's 1 h when absent; 0, "none", as a day) and
//! `max_connect_attempts` (`connect_attempts`, at most 255). Refused by their
//! path: weighted clusters, metadata match, per-side idle timeouts, access logs,
//! hash policy, tunneling, connection duration limits, PROXY protocol TLVs, early
//! data, on-demand clusters, back-off and connect modes.
//!
//! `envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit` becomes
//! `connection_limit` with `max_connections` (per filter chain in Envoy, per
//! listener here: one filter chain per listener is what LDS accepts). Envoy closes
//! a connection past the limit after `delay`; this proxy closes it at once, so a
//! `delay` other than 0 is refused, and so is `runtime_enabled` (no runtime here).

use std::time::Duration;

use envoy_types::pb::{
    envoy::extensions::filters::network::{
        connection_limit::v3::ConnectionLimit,
        tcp_proxy::v3::{tcp_proxy::ClusterSpecifier, TcpProxy},
    },
    google::protobuf::Any,
};
use proxy_core::config::{Section, TypedConfig};
use serde_json::json;

use super::{decode, duration, fields::Fields, refuse_leftover, typed_struct};
use crate::Refusal;

/// The type URL of Envoy's TCP proxy config.
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/// The type URL of Envoy's connection limit config.
pub const CONNECTION_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit";

/// What a day is for Envoy's "0: no idle timeout".
const NO_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Envoy's TCP proxy idle timeout when absent.
const ENVOY_TCP_IDLE: Duration = Duration::from_secs(3600);

const TCP_PROXY: Fields = &[
    (1, "stat_prefix"),
    (2, "cluster"),
    (3, "downstream_idle_timeout"),
    (4, "upstream_idle_timeout"),
    (5, "access_log"),
    (7, "max_connect_attempts"),
    (8, "idle_timeout"),
    (9, "metadata_match"),
    (10, "weighted_clusters"),
    (11, "hash_policy"),
    (12, "tunneling_config"),
    (13, "max_downstream_connection_duration"),
    (14, "on_demand"),
    (15, "access_log_flush_interval"),
    (16, "flush_access_log_on_connected"),
    (17, "access_log_options"),
    (18, "backoff_options"),
    (19, "proxy_protocol_tlvs"),
    (20, "max_downstream_connection_duration_jitter_percentage"),
    (21, "upstream_connect_mode"),
    (22, "max_early_data_bytes"),
    (23, "proxy_protocol_tlv_merge_policy"),
    (24, "check_drain_close"),
];
const CONNECTION_LIMIT: Fields = &[
    (1, "stat_prefix"),
    (2, "max_connections"),
    (3, "delay"),
    (4, "runtime_enabled"),
];

/// A network filter before the last one (or the last, when it is a TCP proxy):
/// `Ok(None)` when `any` is none this proxy implements. A refusal's path is
/// relative to the `typed_config`.
pub(crate) fn network_filter(any: &Any) -> Result<Option<TypedConfig>, Refusal> {
    if let Some(own) = typed_struct::own_filter(any)? {
        return Ok(Some(own));
    }
    let entry = |name: &str, v: serde_json::Value| {
        Some(TypedConfig {
            typed: name.to_owned(),
            config: Section::from_value(v),
        })
    };
    Ok(match any.type_url.as_str() {
        TCP_PROXY_TYPE => entry("tcp_proxy", tcp_proxy(&decode(any, TCP_PROXY_TYPE, "")?)?),
        CONNECTION_LIMIT_TYPE => entry(
            "connection_limit",
            connection_limit(&decode(any, CONNECTION_LIMIT_TYPE, "")?)?,
        ),
        _ => None,
    })
}

/// The cluster a TCP proxy config sends to, if `any` is one (for the listener's
/// cluster set).
pub(crate) fn tcp_proxy_cluster(f: &TypedConfig) -> Option<String> {
    (f.typed == "tcp_proxy")
        .then(|| f.config.as_value()["cluster"].as_str().map(str::to_owned))
        .flatten()
}

fn tcp_proxy(t: &TcpProxy) -> Result<serde_json::Value, Refusal> {
    let mut rest = t.clone();
    rest.stat_prefix.clear();
    rest.idle_timeout = None;
    rest.max_connect_attempts = None;
    if matches!(rest.cluster_specifier, Some(ClusterSpecifier::Cluster(_))) {
        rest.cluster_specifier = None;
    }
    refuse_leftover(&rest, TCP_PROXY)?;
    let cluster = match &t.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => c.clone(),
        _ => return Err(Refusal::new("", "cluster", "is required")),
    };
    let idle = match &t.idle_timeout {
        None => ENVOY_TCP_IDLE,
        Some(d) => {
            let d = duration(d).map_err(|e| Refusal::new("", "idle_timeout", e))?;
            if d.is_zero() {
                NO_TIMEOUT
            } else {
                d
            }
        }
    };
    let attempts = t.max_connect_attempts.as_ref().map_or(1, |a| a.value);
    if !(1..=255).contains(&attempts) {
        return Err(Refusal::new(
            "",
            "max_connect_attempts",
            "must be from 1 to 255",
        ));
    }
    Ok(json!({
        "cluster": cluster,
        "idle_timeout": super::http_filters::human(idle),
        "connect_attempts": attempts,
    }))
}

fn connection_limit(c: &ConnectionLimit) -> Result<serde_json::Value, Refusal> {
    let mut rest = c.clone();
    rest.stat_prefix.clear();
    rest.max_connections = None;
    if rest
        .delay
        .as_ref()
        .is_some_and(|d| d.seconds == 0 && d.nanos == 0)
    {
        rest.delay = None;
    }
    refuse_leftover(&rest, CONNECTION_LIMIT)?;
    let max = c
        .max_connections
        .as_ref()
        .map(|m| m.value)
        .ok_or_else(|| Refusal::new("", "max_connections", "is required"))?;
    let max = u32::try_from(max)
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| Refusal::new("", "max_connections", "must be from 1 to 4294967295"))?;
    Ok(json!({ "max_connections": max }))
}
